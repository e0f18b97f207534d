//! The embedded topology store: everything in this process's memory, for `shardcar local`
//! and unit tests. Same semantics as etcd for versions, compare-and-set, prefix watches and
//! locks; a lease lives exactly as long as its handle (there is no other process whose
//! death it would have to detect).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{Entry, Lease, LockGuard, Store, TopoError, Version, Watch, WatchEvent};

/// Events a watcher may have queued before it is dropped as too slow.
const WATCH_BUFFER: usize = 4_096;

#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    revision: Version,
    data: BTreeMap<String, Value>,
    watchers: Vec<(String, mpsc::Sender<WatchEvent>)>,
    next_lease: u64,
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

#[derive(Debug, Clone)]
struct Value {
    bytes: Vec<u8>,
    version: Version,
    lease: Option<u64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Inner {
    fn entry(key: &str, v: &Value) -> Entry {
        Entry {
            key: key.to_string(),
            value: v.bytes.clone(),
            version: v.version,
        }
    }

    fn put(&mut self, key: &str, bytes: Vec<u8>, lease: Option<u64>) -> Version {
        self.revision += 1;
        let v = Value {
            bytes,
            version: self.revision,
            lease,
        };
        let event = WatchEvent::Put(Inner::entry(key, &v));
        self.data.insert(key.to_string(), v);
        self.notify(key, event);
        self.revision
    }

    fn remove(&mut self, key: &str) {
        if self.data.remove(key).is_some() {
            self.revision += 1;
            let event = WatchEvent::Delete {
                key: key.to_string(),
                version: self.revision,
            };
            self.notify(key, event);
        }
    }

    fn notify(&mut self, key: &str, event: WatchEvent) {
        // A watcher that is gone or too far behind is dropped; its channel closes.
        self.watchers.retain(|(prefix, tx)| {
            !key.starts_with(prefix.as_str()) || tx.try_send(event.clone()).is_ok()
        });
    }

    fn check(&self, key: &str, expected: Option<Version>) -> Result<(), TopoError> {
        match (self.data.get(key), expected) {
            (None, Some(_)) => Err(TopoError::NoNode(key.to_string())),
            (Some(v), Some(e)) if v.version != e => Err(TopoError::BadVersion(key.to_string())),
            _ => Ok(()),
        }
    }

    fn revoke(&mut self, lease: u64) {
        let keys: Vec<String> = self
            .data
            .iter()
            .filter(|(_, v)| v.lease == Some(lease))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.remove(&k);
        }
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, TopoError> {
        Ok(self.lock().data.get(key).map(|v| Inner::entry(key, v)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, TopoError> {
        let inner = self.lock();
        Ok(inner
            .data
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| Inner::entry(k, v))
            .collect())
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Version, TopoError> {
        let mut inner = self.lock();
        if inner.data.contains_key(key) {
            return Err(TopoError::Exists(key.to_string()));
        }
        Ok(inner.put(key, value, None))
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> Result<Version, TopoError> {
        let mut inner = self.lock();
        inner.check(key, expected)?;
        Ok(inner.put(key, value, None))
    }

    async fn delete(&self, key: &str, expected: Option<Version>) -> Result<(), TopoError> {
        let mut inner = self.lock();
        if !inner.data.contains_key(key) {
            return Err(TopoError::NoNode(key.to_string()));
        }
        inner.check(key, expected)?;
        inner.remove(key);
        Ok(())
    }

    async fn put_leased(
        &self,
        key: &str,
        value: Vec<u8>,
        _ttl: Duration,
    ) -> Result<Lease, TopoError> {
        let id = {
            let mut inner = self.lock();
            inner.next_lease += 1;
            let id = inner.next_lease;
            inner.put(key, value, Some(id));
            id
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (alive_tx, alive) = watch::channel(true);
        let store = self.clone();
        let done = tokio::spawn(async move {
            let _ = stopped.await;
            store.lock().revoke(id);
            drop(alive_tx);
        });
        Ok(Lease {
            id: i64::try_from(id).unwrap_or(i64::MAX),
            alive,
            good_until: watch::channel(None).1,
            stop: Some(stop),
            done: Some(done),
        })
    }

    async fn put_in_lease(
        &self,
        lease: &Lease,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Version, TopoError> {
        let id = u64::try_from(lease.id).unwrap_or(0);
        Ok(self.lock().put(key, value, Some(id)))
    }

    async fn watch(&self, prefix: &str) -> Result<Watch, TopoError> {
        let (tx, events) = mpsc::channel(WATCH_BUFFER);
        let mut inner = self.lock();
        let initial = inner
            .data
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| Inner::entry(k, v))
            .collect();
        inner.watchers.push((prefix.to_string(), tx));
        Ok(Watch {
            initial,
            revision: inner.revision,
            events,
        })
    }

    async fn lock(
        &self,
        name: &str,
        _ttl: Duration,
        timeout: Duration,
    ) -> Result<LockGuard, TopoError> {
        let mutex = self
            .lock()
            .locks
            .entry(name.to_string())
            .or_default()
            .clone();
        let guard = tokio::time::timeout(timeout, mutex.lock_owned())
            .await
            .map_err(|_| TopoError::LockTimeout(name.to_string()))?;
        Ok(LockGuard {
            name: name.to_string(),
            release: Some(Box::new(move || {
                drop(guard);
                None
            })),
        })
    }
}
