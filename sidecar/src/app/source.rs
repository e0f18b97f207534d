//! Configuration sources of the app role's endpoints: the `sharding` section's static
//! addresses, or the topology store — each shard's primary from its shard record, every
//! tablet's address and health from the tablet records — followed by watches. When the
//! store is unreachable the last endpoints keep serving and the watches start again.
//!
//! The control service's configuration stream (`control.rs`) is the third source; its
//! views become endpoints through [`endpoints_of`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use shardcar_topo::{ShardRecord, TabletRecord, TabletType, Topology, WatchEvent};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::endpoints::{Directory, Endpoints, ReplicaEndpoint, ShardEndpoints};
use super::router::ShardKey;
use super::upstream::UpstreamSettings;
use crate::config::Endpoint;

/// The routed shards: which key each `(keyspace, shard name)` has, and the database and
/// login every connection to it uses.
#[derive(Debug, Clone)]
pub struct Shape {
    /// By keyspace and lower-cased shard name.
    pub keys: HashMap<(String, String), ShardKey>,
    /// Login and database of each shard's connections (the address is filled in per
    /// tablet).
    pub templates: HashMap<ShardKey, Arc<UpstreamSettings>>,
}

impl Shape {
    /// Static endpoints: each shard's template is its primary, in term 0.
    pub fn static_endpoints(&self) -> Endpoints {
        let shards = self
            .templates
            .iter()
            .map(|(key, settings)| {
                let shard = ShardEndpoints {
                    primary: Some(settings.clone()),
                    ..ShardEndpoints::default()
                };
                (key.clone(), shard)
            })
            .collect();
        Endpoints { shards }
    }

    fn key(&self, keyspace: &str, shard: &str) -> Option<&ShardKey> {
        self.keys
            .get(&(keyspace.to_string(), shard.to_ascii_lowercase()))
    }

    /// The settings for reaching `tablet`'s db sidecar.
    fn settings(&self, key: &ShardKey, tablet: &TabletRecord) -> Option<Arc<UpstreamSettings>> {
        let template = self.templates.get(key)?;
        let address = crate::config::join_host_port(&tablet.hostname, tablet.mysql_port);
        Some(Arc::new(UpstreamSettings {
            endpoint: Endpoint::Tcp(address.clone()),
            display: format!("{} ({address})", tablet.alias),
            ..(**template).clone()
        }))
    }
}

/// What the watches have seen.
#[derive(Debug, Default)]
struct Seen {
    shards: BTreeMap<(String, String), ShardRecord>,
    /// By key, so a delete (which carries only the key) finds its tablet.
    tablets: BTreeMap<String, TabletRecord>,
}

impl Seen {
    fn endpoints(&self, shape: &Shape) -> Endpoints {
        let mut out: HashMap<ShardKey, ShardEndpoints> = shape
            .templates
            .keys()
            .map(|k| (k.clone(), ShardEndpoints::default()))
            .collect();
        for ((keyspace, shard), record) in &self.shards {
            let Some(key) = shape.key(keyspace, shard) else {
                continue;
            };
            let Some(e) = out.get_mut(key) else { continue };
            e.term = record.term;
            e.reparenting = record.reparenting;
            e.primary_alias = record.primary_alias.clone();
        }
        for tablet in self.tablets.values() {
            let Some(key) = shape.key(&tablet.keyspace, &tablet.shard) else {
                continue;
            };
            let (Some(e), Some(settings)) = (out.get_mut(key), shape.settings(key, tablet)) else {
                continue;
            };
            if e.primary_alias.as_deref() == Some(tablet.alias.as_str()) {
                e.primary = Some(settings);
                // A record from before its promotion (an older term) says nothing of the
                // promoted mysqld, which the promotion made writable.
                e.primary_unwritable = tablet.primary_term >= e.term
                    && (!tablet.health.serving || tablet.health.read_only);
            } else if matches!(tablet.tablet_type, TabletType::Replica | TabletType::Rdonly) {
                e.replicas.push(ReplicaEndpoint {
                    alias: tablet.alias.clone(),
                    cell: tablet.cell.clone(),
                    settings,
                    lag_ms: tablet.health.lag_ms(),
                    healthy: tablet.health.serving && tablet.health.replicating,
                });
            }
        }
        Endpoints { shards: out }
    }
}

/// The endpoints a configuration view from the control service describes.
pub fn endpoints_of(view: &shardcar_config_api::View, shape: &Shape) -> Endpoints {
    use shardcar_config_api::convert;
    let seen = Seen {
        shards: view
            .shards
            .iter()
            .map(|(id, s)| (id.clone(), convert::shard_record(s)))
            .collect(),
        tablets: view
            .tablets
            .iter()
            .map(|(alias, t)| {
                let mut record = convert::tablet_record(t);
                // Its health is unknown while its cluster is out of the control
                // service's reach: no reads (a primary keeps its writes).
                record.health.replicating &= !t.stale;
                (alias.clone(), record)
            })
            .collect(),
    };
    seen.endpoints(shape)
}

/// Keeps `directory` in step with the topology until `shutdown`.
pub async fn follow(
    topology: Topology,
    directory: Arc<Directory>,
    shape: Shape,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match follow_once(&topology, &directory, &shape, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "topology watch ended; serving on the last topology and watching again");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// One pair of watches, until they break (`Err`) or `shutdown` (`Ok`).
async fn follow_once(
    topology: &Topology,
    directory: &Directory,
    shape: &Shape,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let mut shards = topology
        .watch_keyspaces()
        .await
        .map_err(|e| e.to_string())?;
    let mut tablets = topology
        .watch_tablets(None)
        .await
        .map_err(|e| e.to_string())?;
    let layout = topology.layout().clone();
    let mut seen = Seen::default();
    for entry in std::mem::take(&mut shards.initial) {
        seen.put(&layout, WatchEvent::Put(entry));
    }
    for entry in std::mem::take(&mut tablets.initial) {
        seen.put(&layout, WatchEvent::Put(entry));
    }
    directory.publish(seen.endpoints(shape));
    info!(
        shards = seen.shards.len(),
        tablets = seen.tablets.len(),
        "following the topology"
    );
    loop {
        let event = tokio::select! {
            e = shards.events.recv() => e.ok_or("the shard watch closed")?,
            e = tablets.events.recv() => e.ok_or("the tablet watch closed")?,
            _ = shutdown.changed() => return Ok(()),
        };
        seen.put(&layout, event);
        // Apply whatever else is already queued before publishing once.
        while let Ok(e) = shards.events.try_recv() {
            seen.put(&layout, e);
        }
        while let Ok(e) = tablets.events.try_recv() {
            seen.put(&layout, e);
        }
        directory.publish(seen.endpoints(shape));
    }
}

impl Seen {
    fn put(&mut self, layout: &shardcar_topo::Layout, event: WatchEvent) {
        match event {
            WatchEvent::Put(entry) => {
                if let Some(name) = layout.parse_shard(&entry.key) {
                    match Topology::shard_of(&entry) {
                        Ok(record) => {
                            debug!(keyspace = %name.0, shard = %name.1, ?record, "shard record");
                            self.shards.insert(name, record);
                        }
                        Err(e) => warn!(error = %e, "ignoring an unreadable shard record"),
                    }
                } else if layout.is_tablet(&entry.key) {
                    match Topology::tablet_of(&entry) {
                        Ok(record) => {
                            self.tablets.insert(entry.key, record);
                        }
                        Err(e) => warn!(error = %e, "ignoring an unreadable tablet record"),
                    }
                }
            }
            WatchEvent::Delete { key, .. } => {
                if let Some(name) = layout.parse_shard(&key) {
                    self.shards.remove(&name);
                } else {
                    self.tablets.remove(&key);
                }
            }
        }
    }
}
