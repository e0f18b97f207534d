//! The streams a control instance serves, for `/debug/streams` and the metrics: who is
//! connected, which version each was sent and acknowledged, and the last NACK.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use shardcar_config_api::pb;

use crate::api::ControlMetrics;

/// One stream's status.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub cluster: String,
    pub cell: String,
    pub namespace: String,
    pub pod: String,
    pub role: &'static str,
    pub keyspace: String,
    pub shard: String,
    /// Seconds since the Unix epoch.
    pub connected_at: u64,
    pub sent_version: u64,
    pub acked_version: u64,
    /// The last NACK: its version and error; cleared by a later ACK.
    pub nack: Option<(u64, String)>,
}

/// The connected streams.
#[derive(Debug)]
pub struct Streams {
    next_id: AtomicU64,
    live: Mutex<BTreeMap<u64, StreamStatus>>,
    metrics: Arc<ControlMetrics>,
}

impl Streams {
    pub fn new(metrics: Arc<ControlMetrics>) -> Self {
        Streams {
            next_id: AtomicU64::new(1),
            live: Mutex::new(BTreeMap::new()),
            metrics,
        }
    }

    /// Registers a stream; it is removed when the handle drops.
    pub fn open(
        self: &Arc<Self>,
        identity: &pb::Identity,
        peer: Option<SocketAddr>,
    ) -> StreamHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let role = role_name(identity.role());
        let status = StreamStatus {
            id,
            peer,
            cluster: identity.cluster.clone(),
            cell: identity.cell.clone(),
            namespace: identity.namespace.clone(),
            pod: identity.pod.clone(),
            role,
            keyspace: identity.keyspace.clone(),
            shard: identity.shard.clone(),
            connected_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            sent_version: 0,
            acked_version: 0,
            nack: None,
        };
        self.lock().insert(id, status);
        self.metrics.config_stream(role, 1);
        StreamHandle {
            id,
            role,
            streams: self.clone(),
        }
    }

    /// Every stream's status, oldest first.
    pub fn list(&self) -> Vec<StreamStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, StreamStatus>> {
        crate::lock(&self.live)
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut StreamStatus)) {
        if let Some(s) = self.lock().get_mut(&id) {
            change(s);
        }
    }
}

fn role_name(role: pb::Role) -> &'static str {
    match role {
        pb::Role::App => "app",
        pb::Role::Db => "db",
        pb::Role::Unspecified => "unspecified",
    }
}

/// A registered stream; unregisters on drop.
#[derive(Debug)]
pub struct StreamHandle {
    id: u64,
    role: &'static str,
    streams: Arc<Streams>,
}

impl StreamHandle {
    pub fn sent(&self, update: &pb::ConfigUpdate) {
        self.streams.metrics.config_update(update.full);
        self.streams
            .update(self.id, |s| s.sent_version = update.version);
    }

    pub fn acked(&self, version: u64) {
        self.streams.metrics.config_response(true);
        self.streams.update(self.id, |s| {
            s.acked_version = version;
            s.nack = None;
        });
    }

    pub fn nacked(&self, version: u64, error: String) {
        self.streams.metrics.config_response(false);
        self.streams
            .update(self.id, |s| s.nack = Some((version, error)));
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
        self.streams.metrics.config_stream(self.role, -1);
    }
}
