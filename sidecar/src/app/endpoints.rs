//! Where each shard's primary and replicas are right now, as the configuration source
//! last said, and the failover buffer: statements for a shard that is between primaries
//! wait here (bounded in time and number) until a primary is announced.
//!
//! The snapshot sits in a `tokio::sync::watch` channel: sessions read it at every shard
//! connection, the source replaces it whole, and waiting statements wake on the change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shardcar_filter::protocol::{error_codes, ErrPacket};
use tokio::sync::watch;
use tokio::time::Instant;

use super::router::ShardKey;
use super::upstream::UpstreamSettings;

/// One shard's endpoints.
#[derive(Debug, Clone, Default)]
pub struct ShardEndpoints {
    /// The primary's address; `None` while the shard has none (its tablet is gone).
    pub primary: Option<Arc<UpstreamSettings>>,
    pub primary_alias: Option<String>,
    /// Grows with every change of primary (0 for a static configuration).
    pub term: u64,
    /// A reparent is moving the primary: statements wait for the new one.
    pub reparenting: bool,
    /// The primary's db sidecar reports its mysqld down or read-only (starting up, or
    /// fenced): statements wait until it is writable or another primary takes over.
    pub primary_unwritable: bool,
    pub replicas: Vec<ReplicaEndpoint>,
}

/// A replica (or rdonly) tablet a read may go to.
#[derive(Debug, Clone)]
pub struct ReplicaEndpoint {
    pub alias: String,
    pub cell: String,
    pub settings: Arc<UpstreamSettings>,
    /// Replication lag as last reported; `None` when unknown.
    pub lag_ms: Option<u64>,
    /// Serving and replicating.
    pub healthy: bool,
}

impl ShardEndpoints {
    /// The primary to send to, unless the shard is between primaries.
    pub fn writable(&self) -> Option<&Arc<UpstreamSettings>> {
        self.primary
            .as_ref()
            .filter(|_| !self.reparenting && !self.primary_unwritable)
    }

    /// A healthy replica at most `max_lag_ms` behind: the least lagging of `cell`'s,
    /// else of any cell's.
    pub fn replica(&self, cell: &str, max_lag_ms: u64) -> Option<&ReplicaEndpoint> {
        let usable = |r: &&ReplicaEndpoint| r.healthy && r.lag_ms.is_some_and(|l| l <= max_lag_ms);
        let best = |local: bool| {
            self.replicas
                .iter()
                .filter(usable)
                .filter(|r| (r.cell == cell) == local)
                .min_by_key(|r| (r.lag_ms, r.alias.clone()))
        };
        best(true).or_else(|| best(false))
    }
}

/// Every shard's endpoints.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub shards: HashMap<ShardKey, ShardEndpoints>,
}

impl Endpoints {
    pub fn shard(&self, key: &ShardKey) -> Option<&ShardEndpoints> {
        self.shards.get(key)
    }
}

/// How long and how many statements the failover buffer holds.
#[derive(Debug, Clone, Copy)]
pub struct BufferLimits {
    pub window: Duration,
    pub max_statements: usize,
}

/// The current endpoints, and statements waiting for a primary.
#[derive(Debug)]
pub struct Directory {
    current: watch::Sender<Arc<Endpoints>>,
    /// Whether a source can announce a new primary (a static configuration cannot: its
    /// statements fail at once instead of waiting).
    dynamic: bool,
    limits: BufferLimits,
    waiting: AtomicUsize,
}

/// Counts a statement as buffered while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a statement left the buffer, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffered {
    /// It did not wait.
    No,
    /// It waited this long and then got a primary.
    Waited(Duration),
}

impl Directory {
    pub fn new(initial: Endpoints, dynamic: bool, limits: BufferLimits) -> Self {
        Directory {
            current: watch::Sender::new(Arc::new(initial)),
            dynamic,
            limits,
            waiting: AtomicUsize::new(0),
        }
    }

    /// The endpoints now.
    pub fn snapshot(&self) -> Arc<Endpoints> {
        self.current.borrow().clone()
    }

    /// Replaces the endpoints (the source's job); waiting statements wake.
    pub fn publish(&self, endpoints: Endpoints) {
        self.current.send_replace(Arc::new(endpoints));
    }

    /// Statements waiting for a primary now.
    pub fn buffered(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The primary of `key` and its term. While the shard is between primaries — being
    /// reparented, without a primary, or (with `after_term`) still in the term whose
    /// primary just failed — waits for the source to announce one, up to the buffer
    /// window and while fewer than the buffer's maximum statements wait.
    pub async fn primary(
        &self,
        key: &ShardKey,
        shard_name: &str,
        after_term: Option<u64>,
    ) -> Result<(Arc<UpstreamSettings>, u64, Buffered), ErrPacket> {
        let mut rx = self.current.subscribe();
        let started = Instant::now();
        let deadline = started + self.limits.window;
        let mut counted: Option<Waiting<'_>> = None;
        loop {
            {
                let now = rx.borrow_and_update();
                let Some(shard) = now.shard(key) else {
                    return Err(ErrPacket::new(
                        error_codes::ER_UNKNOWN_ERROR,
                        format!("no shard {}/{shard_name}", key.0),
                    ));
                };
                let newer = !matches!(after_term, Some(t) if shard.term <= t);
                if let (Some(p), true) = (shard.writable(), newer || !self.dynamic) {
                    let buffered = match counted {
                        Some(_) => Buffered::Waited(started.elapsed()),
                        None => Buffered::No,
                    };
                    return Ok((p.clone(), shard.term, buffered));
                }
                if !self.dynamic {
                    return Err(unavailable(key, shard_name, "it has no primary"));
                }
            }
            if counted.is_none() {
                if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.limits.max_statements {
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                    return Err(unavailable(
                        key,
                        shard_name,
                        &format!(
                            "the failover buffer is full ({} statements wait)",
                            self.limits.max_statements
                        ),
                    ));
                }
                counted = Some(Waiting(&self.waiting));
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(unavailable(key, shard_name, "routing stopped")),
                Err(_) => {
                    return Err(unavailable(
                        key,
                        shard_name,
                        &format!(
                            "no primary within the failover buffer window of {} ms",
                            self.limits.window.as_millis()
                        ),
                    ))
                }
            }
        }
    }

    /// Waits (up to the buffer window) until `found` returns something for the current
    /// endpoints, re-checking on every change.
    pub async fn wait_for<T>(&self, mut found: impl FnMut() -> Option<T>) -> Option<T> {
        let mut rx = self.current.subscribe();
        let deadline = Instant::now() + self.limits.window;
        loop {
            rx.borrow_and_update();
            if let Some(t) = found() {
                return Some(t);
            }
            if !self.dynamic {
                return None;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    /// Whether the source can announce new primaries (statements may wait for one).
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }
}

fn unavailable(key: &ShardKey, shard_name: &str, why: &str) -> ErrPacket {
    ErrPacket::new(
        error_codes::ER_UNKNOWN_ERROR,
        format!(
            "target: {}.{shard_name}.primary: primary is not available: {why}",
            key.0
        ),
    )
}

/// Whether an error from a shard's primary says the statement did not run there because
/// the primary is going away or gone (read-only after a demotion, mysqld unreachable
/// behind its db sidecar): the statement can be sent again to the next primary.
pub fn not_executed(code: u16) -> bool {
    [
        error_codes::ER_OPTION_PREVENTS_STATEMENT.code,
        error_codes::ER_READ_ONLY_MODE.code,
        error_codes::ER_CONNECT_TO_FOREIGN_DATA_SOURCE.code,
    ]
    .contains(&code)
}

/// Whether an error says the connection to the primary broke during the statement: it
/// may or may not have run, so only a read may be sent again.
pub fn connection_broke(code: u16) -> bool {
    [
        error_codes::ER_NET_READ_ERROR.code,
        error_codes::ER_SERVER_SHUTDOWN.code,
        error_codes::ER_CONNECTION_KILLED.code,
    ]
    .contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Endpoint;

    fn settings(addr: &str) -> Arc<UpstreamSettings> {
        Arc::new(UpstreamSettings {
            endpoint: Endpoint::Tcp(addr.to_string()),
            display: addr.to_string(),
            user: String::new(),
            password: Vec::new(),
            database: None,
            connect_timeout: Duration::from_secs(1),
            tls: None,
            max_packet_size: 1 << 24,
        })
    }

    fn key() -> ShardKey {
        ("ks".to_string(), 0)
    }

    fn with_primary(addr: &str, term: u64, reparenting: bool) -> Endpoints {
        let mut e = Endpoints::default();
        e.shards.insert(
            key(),
            ShardEndpoints {
                primary: Some(settings(addr)),
                primary_alias: Some(addr.to_string()),
                term,
                reparenting,
                ..ShardEndpoints::default()
            },
        );
        e
    }

    const LIMITS: BufferLimits = BufferLimits {
        window: Duration::from_secs(10),
        max_statements: 2,
    };

    #[tokio::test]
    async fn a_statement_waits_for_the_new_primary() {
        let d = Arc::new(Directory::new(with_primary("a:1", 1, true), true, LIMITS));
        let waiter = {
            let d = d.clone();
            tokio::spawn(async move { d.primary(&key(), "0", None).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(d.buffered(), 1);
        d.publish(with_primary("b:1", 2, false));
        let (p, term, buffered) = waiter.await.unwrap().unwrap();
        assert_eq!((p.display.as_str(), term), ("b:1", 2));
        assert!(matches!(buffered, Buffered::Waited(_)));
        assert_eq!(d.buffered(), 0);
    }

    #[tokio::test]
    async fn after_a_failure_only_a_newer_term_serves() {
        let d = Arc::new(Directory::new(with_primary("a:1", 1, false), true, LIMITS));
        let (_, term, b) = d.primary(&key(), "0", None).await.unwrap();
        assert_eq!((term, b), (1, Buffered::No));
        let waiter = {
            let d = d.clone();
            tokio::spawn(async move { d.primary(&key(), "0", Some(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        d.publish(with_primary("a:1", 1, false));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        d.publish(with_primary("c:1", 2, false));
        assert_eq!(waiter.await.unwrap().unwrap().0.display, "c:1");
    }

    #[tokio::test]
    async fn the_window_and_the_count_bound_the_buffer() {
        let limits = BufferLimits {
            window: Duration::from_millis(300),
            ..LIMITS
        };
        let d = Arc::new(Directory::new(with_primary("a:1", 1, true), true, limits));
        let spawn = || {
            let d = d.clone();
            tokio::spawn(async move { d.primary(&key(), "-80", None).await })
        };
        let (w1, w2) = (spawn(), spawn());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let full = d.primary(&key(), "-80", None).await.unwrap_err();
        assert!(full.message.contains("buffer is full"), "{}", full.message);
        let expired = w1.await.unwrap().unwrap_err();
        assert!(
            expired.message.contains("window of 300 ms"),
            "{}",
            expired.message
        );
        assert!(expired.message.starts_with("target: ks.-80.primary"));
        assert!(w2.await.unwrap().is_err());
        assert_eq!(d.buffered(), 0);
    }

    #[tokio::test]
    async fn a_static_directory_never_waits() {
        let d = Directory::new(with_primary("a:1", 0, false), false, LIMITS);
        assert!(d.primary(&key(), "0", Some(0)).await.is_ok());
    }

    #[test]
    fn replicas_prefer_the_local_cell_under_the_lag_threshold() {
        let r = |alias: &str, cell: &str, lag: Option<u64>, healthy: bool| ReplicaEndpoint {
            alias: alias.to_string(),
            cell: cell.to_string(),
            settings: settings(alias),
            lag_ms: lag,
            healthy,
        };
        let shard = ShardEndpoints {
            replicas: vec![
                r("far", "zone2", Some(0), true),
                r("near-lagging", "zone1", Some(40_000), true),
                r("near", "zone1", Some(200), true),
                r("near-down", "zone1", Some(0), false),
            ],
            ..ShardEndpoints::default()
        };
        assert_eq!(shard.replica("zone1", 30_000).unwrap().alias, "near");
        assert_eq!(shard.replica("zone3", 30_000).unwrap().alias, "far");
        assert_eq!(shard.replica("zone1", 100).unwrap().alias, "far");
        assert!(ShardEndpoints::default().replica("zone1", 1).is_none());
    }
}
