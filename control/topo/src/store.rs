//! The [`Store`] interface both backends implement, and the handles it returns.

use std::fmt;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

/// A key's version: the store revision that last changed it (etcd's `mod_revision`).
/// Compare-and-set operations name the version they read.
pub type Version = i64;

/// One key with its value and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub version: Version,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopoError {
    #[error("topology key {0} already exists")]
    Exists(String),
    #[error("topology key {0} does not exist")]
    NoNode(String),
    /// A compare-and-set found another version than the one it was given.
    #[error("topology key {0} changed concurrently (version mismatch)")]
    BadVersion(String),
    #[error("topology record {key} is not valid JSON: {message}")]
    Decode { key: String, message: String },
    #[error("lock {0} was not acquired within its timeout")]
    LockTimeout(String),
    /// The backend could not be reached or failed.
    #[error("topology store: {0}")]
    Backend(String),
}

/// What a prefix watch reports after its initial listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put(Entry),
    Delete { key: String, version: Version },
}

/// A prefix watch: the keys under the prefix when it started, then every change in order.
/// The channel closes when the watch breaks (the store went away); watch again then.
#[derive(Debug)]
pub struct Watch {
    pub initial: Vec<Entry>,
    /// The store revision the initial listing was read at; events follow from the next.
    pub revision: Version,
    pub events: mpsc::Receiver<WatchEvent>,
}

/// A lease that keys are bound to, kept alive in the background while this handle lives.
/// [`Lease::lost`] turns true when renewal failed and the keys may be gone; dropping the
/// handle (or [`Lease::revoke`]) revokes it and deletes its keys.
pub struct Lease {
    /// The backend's lease id.
    pub(crate) id: i64,
    pub(crate) alive: watch::Receiver<bool>,
    /// Until when the backend is certain to keep the lease (its keys) even if no renewal
    /// gets through any more: the send time of the last successful renewal plus the TTL.
    /// `None`: it never expires on its own (the in-memory store).
    pub(crate) good_until: watch::Receiver<Option<tokio::time::Instant>>,
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) done: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("alive", &*self.alive.borrow())
            .finish()
    }
}

impl Lease {
    /// The lease could not be renewed: its keys may have expired.
    pub fn lost(&self) -> bool {
        !*self.alive.borrow()
    }

    /// Until when the lease cannot have expired, whatever happens to the network: a
    /// holder that must stop acting before others may take over (a primary cut off from
    /// the topology) stops before this. `None` for a lease that never expires by itself.
    pub fn good_until(&self) -> Option<tokio::time::Instant> {
        *self.good_until.borrow()
    }

    /// A handle on [`Lease::good_until`] that follows renewals, for a watchdog task.
    pub fn good_until_watch(&self) -> watch::Receiver<Option<tokio::time::Instant>> {
        self.good_until.clone()
    }

    /// Resolves when the lease is lost.
    pub async fn wait_lost(&mut self) {
        let _ = self.alive.wait_for(|alive| !alive).await;
    }

    /// Stops renewing without revoking, as if this process had died: the keys expire
    /// after the TTL (chaos tests use this to stand for a crash).
    pub fn abandon(mut self) {
        if let Some(done) = self.done.take() {
            done.abort();
        }
        // Dropping the sender would tell the renewal task to revoke.
        if let Some(stop) = self.stop.take() {
            std::mem::forget(stop);
        }
    }

    /// Revokes the lease now (its keys are deleted) and waits for that.
    pub async fn revoke(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Releases a lock; returns the task doing it when that takes I/O.
pub(crate) type Release = Box<dyn FnOnce() -> Option<tokio::task::JoinHandle<()>> + Send>;

/// A held named lock; released by [`LockGuard::unlock`] or, best effort, on drop.
pub struct LockGuard {
    pub(crate) name: String,
    pub(crate) release: Option<Release>,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .finish()
    }
}

impl LockGuard {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lock and waits until the store has seen it.
    pub async fn unlock(mut self) {
        if let Some(task) = self.release.take().and_then(|release| release()) {
            let _ = task.await;
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release();
        }
    }
}

/// A versioned key-value store with leases, watches and locks.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    async fn get(&self, key: &str) -> Result<Option<Entry>, TopoError>;

    /// Every key under `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, TopoError>;

    /// Creates `key`; [`TopoError::Exists`] if it is there.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Version, TopoError>;

    /// Writes `key` if its version is `expected` ([`TopoError::BadVersion`] otherwise,
    /// [`TopoError::NoNode`] if it is gone); with `None`, unconditionally.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> Result<Version, TopoError>;

    /// Deletes `key` (if at version `expected`, when given).
    async fn delete(&self, key: &str, expected: Option<Version>) -> Result<(), TopoError>;

    /// Writes `key` bound to a new lease of `ttl`, renewed while the returned handle
    /// lives; the key disappears when the lease expires or is revoked.
    async fn put_leased(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Lease, TopoError>;

    /// Rewrites `key` under an existing lease (a tablet updating its own record).
    async fn put_in_lease(
        &self,
        lease: &Lease,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Version, TopoError>;

    /// Watches every key under `prefix`.
    async fn watch(&self, prefix: &str) -> Result<Watch, TopoError>;

    /// Takes the named lock, waiting up to `timeout`. The lock lives under a lease of
    /// `ttl`, so a holder that dies releases it.
    async fn lock(
        &self,
        name: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<LockGuard, TopoError>;
}
