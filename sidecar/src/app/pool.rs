//! The db role's backend pool: logged-in connections to mysqld lent to client sessions
//! one statement (or one pinned stretch) at a time.
//!
//! Three budgets bound how many connections are lent at once — plain statements,
//! transactions (and other pinned sessions), streaming reads — each with a bounded wait
//! queue and a wait timeout. Idle connections are shared by all budgets and remember the
//! state they are in (negotiated format, SET replay key, default database, whether a
//! session left state that needs COM_RESET_CONNECTION), so that a session gets one that
//! needs the least preparation. A reaper closes connections past their idle timeout or
//! maximum age.

use super::upstream::{LoginParams, Upstream, UpstreamSettings};
use crate::config::PoolConfig;
use crate::metrics::Metrics;
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::ErrPacket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

/// Which budget a lease counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    Statement,
    Transaction,
    Stream,
}

impl Budget {
    pub fn name(self) -> &'static str {
        match self {
            Budget::Statement => "statement",
            Budget::Transaction => "transaction",
            Budget::Stream => "stream",
        }
    }

    fn index(self) -> usize {
        match self {
            Budget::Statement => 0,
            Budget::Transaction => 1,
            Budget::Stream => 2,
        }
    }

    fn config_field(self) -> &'static str {
        match self {
            Budget::Statement => "db.pool.statement_connections",
            Budget::Transaction => "db.pool.transaction_connections",
            Budget::Stream => "db.pool.stream_connections",
        }
    }
}

/// What a connection's wire format depends on: it only serves sessions that negotiated
/// the same format capabilities and collation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FormatKey {
    pub capabilities: u32,
    pub collation: u8,
}

/// The session-visible state a backend connection is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnState {
    pub format: FormatKey,
    /// [`shardcar_filter::guard::vars::SessionVars::key`] of the SETs replayed on it.
    pub vars_key: u64,
    pub database: Option<String>,
    /// A session left state only COM_RESET_CONNECTION clears (user variables,
    /// temporary tables, named locks, ...).
    pub dirty: bool,
    /// The sidecar connection id of the session that used it last.
    pub last_session: u32,
    /// Statements run on it; with `last_session`, tells a session whether the
    /// connection is still exactly as it left it.
    pub uses: u64,
}

struct Idle {
    conn: Upstream,
    state: ConnState,
    created: Instant,
    since: Instant,
}

/// The pool's side of a connection lent to a session (the connection itself becomes
/// the session's upstream while lent): its state, age and budget permit.
pub struct Ticket {
    pub state: ConnState,
    created: Instant,
    budget: Budget,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("state", &self.state)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Ticket {
    pub fn budget(&self) -> Budget {
        self.budget
    }
}

struct BudgetState {
    permits: Arc<Semaphore>,
    size: usize,
    waiting: AtomicUsize,
}

/// Counters for `/debug/pool`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolSnapshot {
    pub open: usize,
    pub idle: usize,
    pub budgets: Vec<BudgetSnapshot>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BudgetSnapshot {
    pub name: &'static str,
    pub size: usize,
    pub in_use: usize,
    pub waiting: usize,
}

pub struct Pool {
    settings: Arc<UpstreamSettings>,
    config: PoolConfig,
    budgets: [BudgetState; 3],
    idle: Mutex<Vec<Idle>>,
    open: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("upstream", &self.settings.display)
            .finish_non_exhaustive()
    }
}

/// What a session asks of the connection it gets.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    pub format: FormatKey,
    pub vars_key: u64,
    pub database: Option<&'a str>,
    pub session: u32,
}

impl Pool {
    pub fn new(
        settings: Arc<UpstreamSettings>,
        config: PoolConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let budget = |size: usize| BudgetState {
            permits: Arc::new(Semaphore::new(size)),
            size,
            waiting: AtomicUsize::new(0),
        };
        Arc::new(Pool {
            budgets: [
                budget(config.statement_connections),
                budget(config.transaction_connections),
                budget(config.stream_connections),
            ],
            settings,
            config,
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            metrics,
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where the pool's connections go (for KILL QUERY side connections).
    pub fn settings(&self) -> &Arc<UpstreamSettings> {
        &self.settings
    }

    fn capacity(&self) -> usize {
        self.budgets.iter().map(|b| b.size).sum()
    }

    /// Lends a connection from `budget`, waiting up to the wait timeout. The error is
    /// the ERR packet the client gets.
    pub async fn acquire(
        &self,
        budget: Budget,
        want: Want<'_>,
    ) -> Result<(Upstream, Ticket), ErrPacket> {
        let b = &self.budgets[budget.index()];
        let started = Instant::now();
        let permit = match b.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if b.waiting.fetch_add(1, Ordering::AcqRel) >= self.config.max_waiters {
                    b.waiting.fetch_sub(1, Ordering::AcqRel);
                    self.metrics.guard.pool_exhausted(budget.name());
                    return Err(self.exhausted(budget, "its wait queue is full", started));
                }
                let wait = Duration::from_millis(self.config.wait_timeout_ms);
                let r = tokio::time::timeout(wait, b.permits.clone().acquire_owned()).await;
                b.waiting.fetch_sub(1, Ordering::AcqRel);
                match r {
                    Ok(Ok(p)) => p,
                    _ => {
                        self.metrics.guard.pool_exhausted(budget.name());
                        return Err(self.exhausted(budget, "no connection came free", started));
                    }
                }
            }
        };
        self.metrics
            .guard
            .pool_wait(budget.name(), started.elapsed().as_secs_f64());
        let reused = self.take_idle(&want);
        let lease = match reused {
            Some(idle) => (
                idle.conn,
                Ticket {
                    state: idle.state,
                    created: idle.created,
                    budget,
                    _permit: permit,
                },
            ),
            None => {
                let conn = self.connect(want.format).await?;
                let ticket = Ticket {
                    state: ConnState {
                        format: want.format,
                        vars_key: 0,
                        database: self.settings.database.clone(),
                        dirty: false,
                        last_session: 0,
                        uses: 0,
                    },
                    created: Instant::now(),
                    budget,
                    _permit: permit,
                };
                (conn, ticket)
            }
        };
        self.metrics.guard.pool_in_use(budget.name(), 1);
        self.report_sizes();
        Ok(lease)
    }

    fn exhausted(&self, budget: Budget, why: &str, started: Instant) -> ErrPacket {
        let b = &self.budgets[budget.index()];
        ErrPacket::new(
            error_codes::ER_TOO_MANY_USER_CONNECTIONS,
            format!(
                "Shardcar pool '{}' exhausted: all {} connections in use and {why} within {} ms (raise {})",
                budget.name(),
                b.size,
                started.elapsed().as_millis(),
                budget.config_field()
            ),
        )
    }

    /// The best idle connection for `want`: the one the session left untouched, else
    /// one in the same state, else a clean one, else any of the same format. Returns
    /// `None` when a new connection should be opened (evicting an idle one of another
    /// format if the pool is at capacity).
    fn take_idle(&self, want: &Want) -> Option<Idle> {
        let mut idle = self.idle.lock().ok()?;
        let before = idle.len();
        idle.retain_mut(|c| !c.conn.stream.peer_closed());
        for _ in idle.len()..before {
            debug!("dropping an idle connection mysqld closed");
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.metrics.guard.pool_closed("peer_closed");
        }
        let score = |i: &Idle| -> Option<u8> {
            let s = &i.state;
            if s.format != want.format {
                return None;
            }
            let same_db = s.database.as_deref() == want.database;
            Some(
                if s.last_session == want.session && s.vars_key == want.vars_key {
                    0
                } else if !s.dirty && s.vars_key == want.vars_key && same_db {
                    1
                } else if !s.dirty && s.vars_key == want.vars_key {
                    2
                } else if !s.dirty && s.vars_key == 0 {
                    3
                } else {
                    4
                },
            )
        };
        let best = idle
            .iter()
            .enumerate()
            .filter_map(|(i, c)| score(c).map(|s| (s, std::cmp::Reverse(c.since), i)))
            .min()
            .map(|(_, _, i)| i);
        if let Some(i) = best {
            return Some(idle.swap_remove(i));
        }
        if self.open.load(Ordering::Acquire) >= self.capacity() && !idle.is_empty() {
            // At capacity with only other formats idle: close one to make room.
            let evicted = idle.swap_remove(0);
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.metrics.guard.pool_closed("evicted");
            tokio::spawn(evicted.conn.quit());
        }
        None
    }

    async fn connect(&self, format: FormatKey) -> Result<Upstream, ErrPacket> {
        let params = LoginParams {
            capabilities: Some(format.capabilities),
            collation: Some(format.collation),
            database: None,
            connect_attrs: Vec::new(),
        };
        let started = Instant::now();
        let result = Upstream::connect(&self.settings, params).await;
        self.metrics
            .upstream_connect(result.is_ok(), started.elapsed().as_secs_f64());
        let conn = result.map_err(|e| e.to_err_packet())?;
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok(conn)
    }

    /// Takes a lent connection back. `reusable` is false when its state is unknown (a
    /// broken or killed statement); such connections, and those past their maximum age,
    /// are closed.
    pub fn release(&self, conn: Upstream, ticket: Ticket, reusable: bool) {
        self.metrics.guard.pool_in_use(ticket.budget.name(), -1);
        let max_age = Duration::from_millis(self.config.max_age_ms);
        let expired = self.config.max_age_ms > 0 && ticket.created.elapsed() >= max_age;
        if !reusable || expired {
            self.metrics
                .guard
                .pool_closed(if expired { "max_age" } else { "broken" });
            self.open.fetch_sub(1, Ordering::AcqRel);
            tokio::spawn(conn.quit());
        } else if let Ok(mut idle) = self.idle.lock() {
            idle.push(Idle {
                conn,
                state: ticket.state,
                created: ticket.created,
                since: Instant::now(),
            });
        }
        self.report_sizes();
    }

    /// A lent connection was lost (mysqld closed it): forget it.
    pub fn forget(&self, ticket: Ticket) {
        self.metrics.guard.pool_in_use(ticket.budget.name(), -1);
        self.metrics.guard.pool_closed("broken");
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.report_sizes();
    }

    /// Closes idle connections past the idle timeout or the maximum age.
    pub fn reap(&self) {
        let now = Instant::now();
        let idle_limit = Duration::from_millis(self.config.idle_timeout_ms);
        let age_limit = Duration::from_millis(self.config.max_age_ms);
        let mut closing = Vec::new();
        if let Ok(mut idle) = self.idle.lock() {
            let mut i = 0;
            while i < idle.len() {
                let c = &mut idle[i];
                let reason = if c.conn.stream.peer_closed() {
                    Some("peer_closed")
                } else if self.config.idle_timeout_ms > 0 && now - c.since >= idle_limit {
                    Some("idle")
                } else if self.config.max_age_ms > 0 && now - c.created >= age_limit {
                    Some("max_age")
                } else {
                    None
                };
                match reason {
                    Some(r) => {
                        closing.push((idle.swap_remove(i), r));
                    }
                    None => i += 1,
                }
            }
        }
        for (c, reason) in closing {
            debug!(
                reason,
                connection_id = c.conn.session.connection_id,
                "closing pooled connection"
            );
            self.metrics.guard.pool_closed(reason);
            self.open.fetch_sub(1, Ordering::AcqRel);
            tokio::spawn(c.conn.quit());
        }
        self.report_sizes();
    }

    fn report_sizes(&self) {
        let idle = self.idle.lock().map_or(0, |i| i.len());
        self.metrics
            .guard
            .pool_sizes(self.open.load(Ordering::Acquire), idle);
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let budgets = [Budget::Statement, Budget::Transaction, Budget::Stream]
            .into_iter()
            .map(|b| {
                let s = &self.budgets[b.index()];
                BudgetSnapshot {
                    name: b.name(),
                    size: s.size,
                    in_use: s.size - s.permits.available_permits(),
                    waiting: s.waiting.load(Ordering::Acquire),
                }
            })
            .collect();
        PoolSnapshot {
            open: self.open.load(Ordering::Acquire),
            idle: self.idle.lock().map_or(0, |i| i.len()),
            budgets,
        }
    }

    /// Runs [`Pool::reap`] every second until `shutdown`.
    pub async fn reaper(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => self.reap(),
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}
