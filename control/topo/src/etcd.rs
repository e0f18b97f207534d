//! The production topology store: etcd through its v3 API (etcd-client). Versions are
//! etcd's `mod_revision`; compare-and-set is a transaction comparing it; leased keys use an
//! etcd lease renewed at a third of its TTL; locks are etcd's lock service under a lease,
//! so a holder that dies releases its lock when the lease expires.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LockOptions, PutOptions,
    Txn, TxnOp, WatchOptions,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::store::{Entry, Lease, LockGuard, Store, TopoError, Version, Watch, WatchEvent};

const WATCH_BUFFER: usize = 4_096;
/// How long a call keeps retrying while members are unreachable or a leader is being
/// elected (the client moves to another endpoint meanwhile).
const RETRY_FOR: Duration = Duration::from_secs(15);
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// How long one attempt may take before it is abandoned and sent again: a proposal that
/// reached a leader which then died hangs until etcd's own request timeout (about 5 s plus
/// two election timeouts), while the new leader answers a fresh attempt at once.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// A member that is down or unreachable: another may answer. `Cancelled` is what a call
/// in flight gets when the member it went to dies (the connection is torn down under it)
/// or drops the proposal in a leader change.
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled
        ),
        _ => false,
    }
}

/// What [`retry`] got back, and whether an earlier attempt may have taken effect unseen
/// (it failed or was abandoned after it had been sent).
struct Answer<T> {
    value: T,
    retried: bool,
}

/// Runs `op` again while it fails with a transient error or takes longer than
/// [`ATTEMPT_TIMEOUT`], for up to [`RETRY_FOR`]. Every operation retried is idempotent or
/// conditional; callers of conditional ones use [`Answer::retried`] to recognise their own
/// earlier write.
async fn retry<T, F, Fut>(op: F) -> Result<Answer<T>, TopoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    retry_within(ATTEMPT_TIMEOUT, op).await
}

/// [`retry`] with another limit per attempt (a lock request legitimately waits for the
/// holder).
async fn retry_within<T, F, Fut>(attempt: Duration, mut op: F) -> Result<Answer<T>, TopoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut retried = false;
    loop {
        let failure = match tokio::time::timeout(attempt, op()).await {
            Ok(Ok(value)) => return Ok(Answer { value, retried }),
            Ok(Err(e)) if transient(&e) => TopoError::Backend(e.to_string()),
            Ok(Err(e)) => return Err(backend(e)),
            Err(_) => TopoError::Backend(format!(
                "etcd did not answer within {} ms",
                attempt.as_millis()
            )),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(failure);
        }
        debug!(error = %failure, "etcd call failed; retrying");
        retried = true;
        tokio::time::sleep(RETRY_DELAY).await;
    }
}

/// [`retry`] for calls whose repetition is harmless.
async fn idempotent<T, F, Fut>(op: F) -> Result<T, TopoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    Ok(retry(op).await?.value)
}

/// A connection to an etcd cluster (any member; the client fails over between them).
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// Keys per page of a listing: well under gRPC's 4 MiB message limit for our records.
const LIST_PAGE: i64 = 1_000;

/// The end of the range of keys starting with `prefix` (etcd's convention: the prefix
/// with its last byte below 0xff incremented; `[0]` for every key).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Every key under `prefix` as of one revision, which it returns too. Read in pages
    /// at that revision, so a large topology never exceeds a response's size limit and
    /// the pages agree with each other.
    async fn list_at(&self, prefix: &str) -> Result<(Vec<Entry>, Version), TopoError> {
        let end = prefix_end(prefix.as_bytes());
        let mut out = Vec::new();
        let mut from = prefix.as_bytes().to_vec();
        let mut revision = 0;
        loop {
            let page = idempotent(|| {
                let mut c = self.client.clone();
                let mut options = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(LIST_PAGE);
                if revision > 0 {
                    options = options.with_revision(revision);
                }
                let from = from.clone();
                async move { c.get(from, Some(options)).await }
            })
            .await?;
            if revision == 0 {
                revision = page.header().map_or(0, |h| h.revision());
            }
            out.extend(page.kvs().iter().map(entry));
            match page.kvs().last() {
                Some(last) if page.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((out, revision)),
            }
        }
    }
}

fn backend(e: etcd_client::Error) -> TopoError {
    TopoError::Backend(e.to_string())
}

fn entry(kv: &etcd_client::KeyValue) -> Entry {
    Entry {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        version: kv.mod_revision(),
    }
}

/// Whole seconds for an etcd TTL, at least 1.
fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://127.0.0.1:2379`, ...).
    pub async fn connect(endpoints: &[String]) -> Result<Self, TopoError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(backend)?;
        Ok(EtcdStore {
            client,
            endpoints: endpoints.to_vec(),
        })
    }

    /// A conditional transaction; `retried` says an earlier attempt may have committed.
    async fn txn(&self, txn: Txn) -> Result<Answer<etcd_client::TxnResponse>, TopoError> {
        retry(|| {
            let mut c = self.client.clone();
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Puts `value` at `key` if `compare` holds. When the compare fails after a retried
    /// attempt and the key holds `value` with `ours` true of it, that attempt committed
    /// unseen: the put succeeded.
    async fn put_if(
        &self,
        compare: Compare,
        key: &str,
        value: Vec<u8>,
        ours: impl Fn(&etcd_client::KeyValue) -> bool,
    ) -> Result<Version, TopoError> {
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let Answer { value: r, retried } = self.txn(txn).await?;
        if r.succeeded() {
            return Ok(r.header().map_or(0, |h| h.revision()));
        }
        match current(&r) {
            Some(kv) if retried && kv.value() == value.as_slice() && ours(&kv) => {
                Ok(kv.mod_revision())
            }
            _ => Err(missing_or_changed(key, &r)),
        }
    }

    /// Writes `key` bound to lease `id`; returns the new revision.
    async fn put_with_lease(
        &self,
        id: i64,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Version, TopoError> {
        let r = idempotent(|| {
            let mut c = self.client.clone();
            let value = value.clone();
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(id)))
                    .await
            }
        })
        .await?;
        Ok(r.header().map_or(0, |h| h.revision()))
    }

    /// Grants a lease and renews it in the background until `stop` is sent.
    async fn lease(&self, ttl: Duration) -> Result<Renewal, TopoError> {
        let mut client = self.client.clone();
        let sent = tokio::time::Instant::now();
        let id = idempotent(|| {
            let mut c = client.clone();
            async move { c.lease_grant(ttl_seconds(ttl), None).await }
        })
        .await?
        .id();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (alive_tx, alive) = watch::channel(true);
        let (good_until_tx, good_until) = watch::channel(Some(sent + ttl));
        let period =
            Duration::from_millis(u64::try_from(ttl.as_millis() / 3).unwrap_or(1000).max(100));
        let done = tokio::spawn(async move {
            let mut keeper = None;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(period) => {}
                }
                let sent = tokio::time::Instant::now();
                // A renewal that does not come back within a period is as good as failed
                // (a partition drops packets rather than refusing them).
                let renewed = tokio::time::timeout(period, async {
                    if keeper.is_none() {
                        keeper = client.lease_keep_alive(id).await.ok();
                    }
                    match keeper.as_mut() {
                        Some((k, stream)) => match k.keep_alive().await {
                            Ok(()) => {
                                matches!(stream.message().await, Ok(Some(r)) if r.ttl() > 0)
                            }
                            Err(_) => false,
                        },
                        None => false,
                    }
                })
                .await
                .unwrap_or(false);
                if renewed {
                    let _ = good_until_tx.send(Some(sent + ttl));
                } else {
                    keeper = None;
                    let expired = (*good_until_tx.borrow())
                        .is_some_and(|until| tokio::time::Instant::now() >= until);
                    if expired {
                        warn!(lease = id, "topology lease lost");
                        let _ = alive_tx.send(false);
                        break;
                    }
                }
            }
            if let Err(e) = client.lease_revoke(id).await {
                debug!(lease = id, error = %e, "revoking a topology lease failed (it expires by itself)");
            }
        });
        Ok(Renewal {
            id,
            stop,
            alive,
            good_until,
            done,
        })
    }
}

/// A granted lease and the task renewing it.
struct Renewal {
    id: i64,
    stop: oneshot::Sender<()>,
    alive: watch::Receiver<bool>,
    good_until: watch::Receiver<Option<tokio::time::Instant>>,
    done: tokio::task::JoinHandle<()>,
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, TopoError> {
        let r = idempotent(|| {
            let mut c = self.client.clone();
            async move { c.get(key, None).await }
        })
        .await?;
        Ok(r.kvs().first().map(entry))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, TopoError> {
        Ok(self.list_at(prefix).await?.0)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Version, TopoError> {
        // After an unseen commit of our own the key holds our value, unmodified since.
        self.put_if(
            Compare::version(key, CompareOp::Equal, 0),
            key,
            value,
            |kv| kv.version() == 1,
        )
        .await
        .map_err(|e| match e {
            TopoError::BadVersion(_) => TopoError::Exists(key.to_string()),
            e => e,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> Result<Version, TopoError> {
        let Some(expected) = expected else {
            let r = idempotent(|| {
                let mut c = self.client.clone();
                let value = value.clone();
                async move { c.put(key, value, None).await }
            })
            .await?;
            return Ok(r.header().map_or(0, |h| h.revision()));
        };
        // After an unseen commit of our own the key holds our value, written after the
        // expected version (a concurrent writer would have failed its own compare).
        self.put_if(
            Compare::mod_revision(key, CompareOp::Equal, expected),
            key,
            value,
            |kv| kv.mod_revision() > expected,
        )
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Version>) -> Result<(), TopoError> {
        let compare = match expected {
            Some(v) => Compare::mod_revision(key, CompareOp::Equal, v),
            None => Compare::version(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(key, None)]);
        let Answer { value: r, retried } = self.txn(txn).await?;
        if r.succeeded() {
            return Ok(());
        }
        match missing_or_changed(key, &r) {
            // Gone after an attempt that may have committed: our own delete.
            TopoError::NoNode(_) if retried => Ok(()),
            e => Err(e),
        }
    }

    async fn put_leased(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Lease, TopoError> {
        let r = self.lease(ttl).await?;
        if let Err(e) = self.put_with_lease(r.id, key, value).await {
            let _ = r.stop.send(());
            return Err(e);
        }
        Ok(Lease {
            id: r.id,
            alive: r.alive,
            good_until: r.good_until,
            stop: Some(r.stop),
            done: Some(r.done),
        })
    }

    async fn put_in_lease(
        &self,
        lease: &Lease,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Version, TopoError> {
        self.put_with_lease(lease.id, key, value).await
    }

    async fn watch(&self, prefix: &str) -> Result<Watch, TopoError> {
        let (initial, revision) = self.list_at(prefix).await?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let (watcher, mut stream) = idempotent(|| {
            let mut c = self.client.clone();
            let options = options.clone();
            async move { c.watch(prefix, Some(options)).await }
        })
        .await?;
        let (tx, events) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            // The watcher cancels the etcd watch when dropped: keep it for the stream's life.
            let _watcher = watcher;
            while let Ok(Some(response)) = stream.message().await {
                if response.canceled() {
                    break;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let out = match event.event_type() {
                        EventType::Put => WatchEvent::Put(entry(kv)),
                        EventType::Delete => WatchEvent::Delete {
                            key: String::from_utf8_lossy(kv.key()).into_owned(),
                            version: kv.mod_revision(),
                        },
                    };
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Watch {
            initial,
            revision,
            events,
        })
    }

    async fn lock(
        &self,
        name: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<LockGuard, TopoError> {
        let Renewal { id, stop, done, .. } = self.lease(ttl).await?;
        let mut client = self.client.clone();
        let locked = tokio::time::timeout(
            timeout,
            retry_within(timeout, || {
                let mut c = self.client.clone();
                async move { c.lock(name, Some(LockOptions::new().with_lease(id))).await }
            }),
        )
        .await;
        let key = match locked {
            Ok(Ok(r)) => r.value.key().to_vec(),
            Ok(Err(e)) => {
                let _ = stop.send(());
                return Err(e);
            }
            Err(_) => {
                let _ = stop.send(());
                return Err(TopoError::LockTimeout(name.to_string()));
            }
        };
        Ok(LockGuard {
            name: name.to_string(),
            release: Some(Box::new(move || {
                Some(tokio::spawn(async move {
                    if let Err(e) = client.unlock(key).await {
                        debug!(error = %e, "unlocking failed; the lease revocation releases it");
                    }
                    let _ = stop.send(());
                    let _ = done.await;
                }))
            })),
        })
    }
}

/// The key as the failure branch of a transaction read it.
fn current(r: &etcd_client::TxnResponse) -> Option<etcd_client::KeyValue> {
    r.op_responses().into_iter().find_map(|op| match op {
        etcd_client::TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

/// After a failed compare: the key is gone, or it has another version.
fn missing_or_changed(key: &str, r: &etcd_client::TxnResponse) -> TopoError {
    if current(r).is_some() {
        TopoError::BadVersion(key.to_string())
    } else {
        TopoError::NoNode(key.to_string())
    }
}
