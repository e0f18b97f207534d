//! The db role's shared protection state: hot-row queues ([`HotRows`]), in-flight reads
//! that identical ones can join ([`Consolidator`]), and load shedding ([`Shedder`]).
//! Each hands out a guard value whose drop undoes what it took.

use super::relay::Response;
use crate::config::{ConsolidationConfig, HotRowConfig, LoadConfig};
use crate::metrics::Metrics;
use shardcar_filter::guard::limiter::AdaptiveLimit;
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::ErrPacket;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

struct Row {
    turn: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Queues of transactions per hot row.
pub struct HotRows {
    config: HotRowConfig,
    rows: Mutex<HashMap<String, Arc<Row>>>,
    queued: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// A transaction's turn on a row; the next one in the queue runs when it drops.
pub struct RowTurn {
    key: String,
    row: Arc<Row>,
    owner: Arc<HotRows>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for RowTurn {
    fn drop(&mut self) {
        let mut rows = locked(&self.owner.rows);
        // The map and this turn hold the row: nobody else waits for it.
        if Arc::strong_count(&self.row) == 2 && self.row.waiting.load(Ordering::Acquire) == 0 {
            rows.remove(&self.key);
        }
    }
}

impl HotRows {
    pub fn new(config: HotRowConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(HotRows {
            config,
            rows: Mutex::new(HashMap::new()),
            queued: AtomicUsize::new(0),
            metrics,
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Rows with a transaction on them now, for `/debug/hot_rows`.
    pub fn snapshot(&self) -> Vec<(String, usize)> {
        locked(&self.rows)
            .iter()
            .map(|(k, r)| (k.clone(), r.waiting.load(Ordering::Acquire)))
            .collect()
    }

    /// Waits for the row's turn.
    pub async fn turn(self: &Arc<Self>, key: String) -> Result<RowTurn, ErrPacket> {
        let row = {
            let mut rows = locked(&self.rows);
            rows.entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Row {
                        turn: Arc::new(Semaphore::new(1)),
                        waiting: AtomicUsize::new(0),
                    })
                })
                .clone()
        };
        if let Ok(permit) = row.turn.clone().try_acquire_owned() {
            return Ok(self.granted(key, row, permit));
        }
        let waiting = row.waiting.fetch_add(1, Ordering::AcqRel) + 1;
        let queued = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
        let leave = |row: &Row| {
            row.waiting.fetch_sub(1, Ordering::AcqRel);
            self.queued.fetch_sub(1, Ordering::AcqRel);
        };
        if waiting > self.config.max_queue_per_row || queued > self.config.max_queued {
            leave(&row);
            self.metrics.guard.shed("hot_row_queue_full");
            let (n, max, field) = if waiting > self.config.max_queue_per_row {
                (
                    waiting - 1,
                    self.config.max_queue_per_row,
                    "max_queue_per_row",
                )
            } else {
                (queued - 1, self.config.max_queued, "max_queued")
            };
            return Err(ErrPacket::new(
                error_codes::ER_TOO_MANY_USER_CONNECTIONS,
                format!(
                    "Shardcar hot-row protection: {n} transactions already queued for the same row ({key}); limit {max} (db.hot_rows.{field}); retry later"
                ),
            ));
        }
        self.metrics.guard.hot_row_wait();
        let wait = Duration::from_millis(self.config.wait_timeout_ms);
        let got = tokio::time::timeout(wait, row.turn.clone().acquire_owned()).await;
        leave(&row);
        match got {
            Ok(Ok(permit)) => Ok(self.granted(key, row, permit)),
            _ => Err(ErrPacket::new(
                error_codes::ER_LOCK_WAIT_TIMEOUT,
                format!(
                    "Lock wait timeout exceeded; try restarting transaction (Shardcar hot-row queue for {key}, {} ms)",
                    self.config.wait_timeout_ms
                ),
            )),
        }
    }

    fn granted(
        self: &Arc<Self>,
        key: String,
        row: Arc<Row>,
        permit: OwnedSemaphorePermit,
    ) -> RowTurn {
        RowTurn {
            key,
            row,
            owner: self.clone(),
            _permit: permit,
        }
    }
}

/// A finished shared read: the bytes the leader's client got, and what they said.
#[derive(Debug)]
pub struct Shared {
    pub bytes: Vec<u8>,
    pub response: Response,
}

#[derive(Debug, Clone)]
enum Flight {
    Running,
    Done(Arc<Shared>),
    /// The leader could not share (too big, cut, killed, failed): run your own.
    Abandoned,
}

/// Reads in flight that identical reads may join.
pub struct Consolidator {
    config: ConsolidationConfig,
    flights: Mutex<HashMap<Vec<u8>, watch::Receiver<Flight>>>,
}

/// What a read does about an identical one in flight.
pub enum Join {
    /// Run it, and publish the result through the ticket.
    Lead(Lead),
    /// Wait for the leader's result.
    Follow(Follow),
}

pub struct Lead {
    key: Vec<u8>,
    tx: watch::Sender<Flight>,
    owner: Arc<Consolidator>,
    published: bool,
}

pub struct Follow {
    rx: watch::Receiver<Flight>,
}

impl Consolidator {
    pub fn new(config: ConsolidationConfig) -> Arc<Self> {
        Arc::new(Consolidator {
            config,
            flights: Mutex::new(HashMap::new()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The most bytes a leader captures for its followers.
    pub fn max_bytes(&self) -> usize {
        self.config.max_result_bytes
    }

    /// Leads the read `key` or follows the identical one in flight.
    pub fn join(self: &Arc<Self>, key: Vec<u8>) -> Join {
        let mut flights = locked(&self.flights);
        if let Some(rx) = flights.get(&key) {
            if matches!(*rx.borrow(), Flight::Running) {
                return Join::Follow(Follow { rx: rx.clone() });
            }
        }
        let (tx, rx) = watch::channel(Flight::Running);
        flights.insert(key.clone(), rx);
        Join::Lead(Lead {
            key,
            tx,
            owner: self.clone(),
            published: false,
        })
    }
}

impl Lead {
    /// Publishes the result (`None`: followers run their own).
    pub fn finish(mut self, shared: Option<Shared>) {
        self.publish(shared.map_or(Flight::Abandoned, |s| Flight::Done(Arc::new(s))));
    }

    fn publish(&mut self, flight: Flight) {
        if self.published {
            return;
        }
        self.published = true;
        locked(&self.owner.flights).remove(&self.key);
        let _ = self.tx.send(flight);
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.publish(Flight::Abandoned);
    }
}

impl Follow {
    /// The leader's result, or `None` when the follower must run the read itself.
    pub async fn result(mut self) -> Option<Arc<Shared>> {
        loop {
            match &*self.rx.borrow_and_update() {
                Flight::Done(s) => return Some(s.clone()),
                Flight::Abandoned => return None,
                Flight::Running => {}
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// Load shedding: concurrency per user and per fingerprint, and the adaptive limit.
pub struct Shedder {
    config: LoadConfig,
    per_user: Mutex<HashMap<String, usize>>,
    per_fingerprint: Mutex<HashMap<String, usize>>,
    inflight: AtomicUsize,
    adaptive: Option<Mutex<AdaptiveLimit>>,
    metrics: Arc<Metrics>,
}

/// A statement admitted by the [`Shedder`]; report its latency with [`Slot::done`].
pub struct Slot {
    owner: Arc<Shedder>,
    user: Option<String>,
    fingerprint: Option<String>,
}

impl Shedder {
    pub fn new(config: LoadConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let adaptive = config.adaptive.then(|| {
            Mutex::new(AdaptiveLimit::new(
                config.adaptive_min,
                config.adaptive_max,
                config.latency_tolerance,
            ))
        });
        Arc::new(Shedder {
            config,
            per_user: Mutex::new(HashMap::new()),
            per_fingerprint: Mutex::new(HashMap::new()),
            inflight: AtomicUsize::new(0),
            adaptive,
            metrics,
        })
    }

    /// Whether any limit is configured (otherwise statements skip the shedder).
    pub fn active(&self) -> bool {
        self.adaptive.is_some()
            || self.config.max_per_user > 0
            || self.config.max_per_fingerprint > 0
    }

    pub fn wants_fingerprint(&self) -> bool {
        self.config.max_per_fingerprint > 0
    }

    /// The adaptive limit now and mysqld's baseline latency, for `/debug/load`.
    pub fn snapshot(&self) -> (usize, Option<(usize, u64)>) {
        let adaptive = self.adaptive.as_ref().map(|a| {
            let a = locked(a);
            (a.limit(), a.baseline_us())
        });
        (self.inflight.load(Ordering::Acquire), adaptive)
    }

    /// Admits a statement of `user` (with `fingerprint` when per-fingerprint limits are
    /// on) or refuses it.
    pub fn admit(
        self: &Arc<Self>,
        user: &str,
        fingerprint: Option<String>,
    ) -> Result<Slot, ErrPacket> {
        let refuse = |reason: &'static str, message: String| {
            self.metrics.guard.shed(reason);
            Err(ErrPacket::new(
                error_codes::ER_TOO_MANY_USER_CONNECTIONS,
                message,
            ))
        };
        if let Some(a) = &self.adaptive {
            let limit = locked(a).limit();
            let inflight = self.inflight.load(Ordering::Acquire);
            if inflight >= limit {
                return refuse(
                    "adaptive",
                    format!("Shardcar load shedding: {inflight} statements running, adaptive limit {limit} (mysqld latency is rising); retry later"),
                );
            }
        }
        self.inflight.fetch_add(1, Ordering::AcqRel);
        let mut slot = Slot {
            owner: self.clone(),
            user: None,
            fingerprint: None,
        };
        if self.config.max_per_user > 0 {
            let mut users = locked(&self.per_user);
            let n = users.entry(user.to_owned()).or_insert(0);
            if *n >= self.config.max_per_user {
                let n = *n;
                drop(users);
                return refuse(
                    "per_user",
                    format!("Shardcar load shedding: user '{user}' already runs {n} statements (db.load.max_per_user); retry later"),
                );
            }
            *n += 1;
            slot.user = Some(user.to_owned());
        }
        if let Some(fp) = fingerprint.filter(|_| self.config.max_per_fingerprint > 0) {
            let mut fps = locked(&self.per_fingerprint);
            let n = fps.entry(fp.clone()).or_insert(0);
            if *n >= self.config.max_per_fingerprint {
                let n = *n;
                drop(fps);
                return refuse(
                    "per_fingerprint",
                    format!("Shardcar load shedding: {n} statements like this one already run (db.load.max_per_fingerprint); retry later"),
                );
            }
            *n += 1;
            slot.fingerprint = Some(fp);
        }
        Ok(slot)
    }
}

impl Slot {
    /// Reports the statement's latency to the adaptive limit.
    pub fn done(self, latency: Duration) {
        if let Some(a) = &self.owner.adaptive {
            let inflight = self.owner.inflight.load(Ordering::Acquire);
            let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            locked(a).on_sample(us, inflight);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.inflight.fetch_sub(1, Ordering::AcqRel);
        let release = |map: &Mutex<HashMap<String, usize>>, key: &String| {
            let mut m = locked(map);
            if let Some(n) = m.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(key);
                }
            }
        };
        if let Some(u) = &self.user {
            release(&self.owner.per_user, u);
        }
        if let Some(f) = &self.fingerprint {
            release(&self.owner.per_fingerprint, f);
        }
    }
}
