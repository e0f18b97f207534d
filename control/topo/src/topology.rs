//! Typed access to the topology records over any [`Store`].

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys::Layout;
use crate::model::{KeyspaceRecord, ShardRecord, TabletRecord};
use crate::store::{Entry, Lease, LockGuard, Store, TopoError, Version, Watch};

/// How often a compare-and-set update is retried when another writer got in between.
const CAS_ATTEMPTS: usize = 16;

/// The topology over one store and layout.
#[derive(Debug, Clone)]
pub struct Topology {
    store: Arc<dyn Store>,
    layout: Layout,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(e: &Entry) -> Result<T, TopoError> {
    serde_json::from_slice(&e.value).map_err(|err| TopoError::Decode {
        key: e.key.clone(),
        message: err.to_string(),
    })
}

impl Topology {
    pub fn new(store: Arc<dyn Store>, layout: Layout) -> Self {
        Topology { store, layout }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn read<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Version)>, TopoError> {
        match self.store.get(key).await? {
            Some(e) => Ok(Some((decode(&e)?, e.version))),
            None => Ok(None),
        }
    }

    /// Reads `key`, applies `change`, and writes it back if nobody changed it meanwhile,
    /// retrying otherwise. `change` may refuse by returning an error.
    async fn modify<T, F>(&self, key: &str, mut change: F) -> Result<T, TopoError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&mut T) -> Result<(), TopoError>,
    {
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut value, version)) = self.read::<T>(key).await? else {
                return Err(TopoError::NoNode(key.to_string()));
            };
            change(&mut value)?;
            match self.store.update(key, encode(&value), Some(version)).await {
                Ok(_) => return Ok(value),
                Err(TopoError::BadVersion(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(TopoError::BadVersion(key.to_string()))
    }

    pub async fn create_keyspace(
        &self,
        name: &str,
        record: &KeyspaceRecord,
    ) -> Result<(), TopoError> {
        self.store
            .create(&self.layout.keyspace(name), encode(record))
            .await
            .map(|_| ())
    }

    pub async fn keyspace(&self, name: &str) -> Result<Option<KeyspaceRecord>, TopoError> {
        Ok(self
            .read(&self.layout.keyspace(name))
            .await?
            .map(|(k, _)| k))
    }

    /// The keyspaces' names, sorted.
    pub async fn keyspace_names(&self) -> Result<Vec<String>, TopoError> {
        self.child_names(&self.layout.keyspaces(), "keyspace").await
    }

    /// The names `<name>` of the keys `<prefix><name>/<leaf>`, sorted.
    async fn child_names(&self, prefix: &str, leaf: &str) -> Result<Vec<String>, TopoError> {
        let mut names: Vec<String> = self
            .store
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|e| {
                let rest = e.key.strip_prefix(prefix)?;
                let (name, last) = rest.split_once('/')?;
                (last == leaf).then(|| name.to_string())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    pub async fn create_shard(
        &self,
        keyspace: &str,
        shard: &str,
        record: &ShardRecord,
    ) -> Result<(), TopoError> {
        self.store
            .create(&self.layout.shard(keyspace, shard), encode(record))
            .await
            .map(|_| ())
    }

    /// A shard's record and its version.
    pub async fn shard(
        &self,
        keyspace: &str,
        shard: &str,
    ) -> Result<Option<(ShardRecord, Version)>, TopoError> {
        self.read(&self.layout.shard(keyspace, shard)).await
    }

    /// The shard names of a keyspace, sorted.
    pub async fn shard_names(&self, keyspace: &str) -> Result<Vec<String>, TopoError> {
        self.child_names(&self.layout.shards(keyspace), "shard")
            .await
    }

    /// Changes a shard's record under compare-and-set.
    pub async fn update_shard<F>(
        &self,
        keyspace: &str,
        shard: &str,
        change: F,
    ) -> Result<ShardRecord, TopoError>
    where
        F: FnMut(&mut ShardRecord) -> Result<(), TopoError>,
    {
        self.modify(&self.layout.shard(keyspace, shard), change)
            .await
    }

    /// Makes `alias` the shard's primary in a new term (the old term plus one) and ends
    /// the reparenting flag; returns the new record.
    pub async fn set_primary(
        &self,
        keyspace: &str,
        shard: &str,
        alias: &str,
    ) -> Result<ShardRecord, TopoError> {
        self.update_shard(keyspace, shard, |s| {
            s.primary_alias = Some(alias.to_string());
            s.term += 1;
            s.reparenting = false;
            Ok(())
        })
        .await
    }

    /// Registers a tablet under a lease of `ttl`; it stays listed while the handle lives
    /// and its process keeps renewing it.
    pub async fn register_tablet(
        &self,
        tablet: &TabletRecord,
        ttl: Duration,
    ) -> Result<Lease, TopoError> {
        self.store
            .put_leased(
                &self.layout.tablet(&tablet.cell, &tablet.alias),
                encode(tablet),
                ttl,
            )
            .await
    }

    /// Rewrites a registered tablet's record (its health) under its lease.
    pub async fn update_tablet(
        &self,
        lease: &Lease,
        tablet: &TabletRecord,
    ) -> Result<(), TopoError> {
        self.store
            .put_in_lease(
                lease,
                &self.layout.tablet(&tablet.cell, &tablet.alias),
                encode(tablet),
            )
            .await
            .map(|_| ())
    }

    /// The live tablets of one cell, or of every cell with `None`.
    pub async fn tablets(&self, cell: Option<&str>) -> Result<Vec<TabletRecord>, TopoError> {
        let prefix = match cell {
            Some(c) => self.layout.tablets(c),
            None => self.layout.cells(),
        };
        self.store
            .list(&prefix)
            .await?
            .iter()
            .filter(|e| e.key.contains("/tablets/"))
            .map(decode)
            .collect()
    }

    /// The tablets of one shard, in every cell.
    pub async fn shard_tablets(
        &self,
        keyspace: &str,
        shard: &str,
    ) -> Result<Vec<TabletRecord>, TopoError> {
        Ok(self
            .tablets(None)
            .await?
            .into_iter()
            .filter(|t| t.keyspace == keyspace && t.shard == shard)
            .collect())
    }

    /// Watches the tablets of one cell (or all cells).
    pub async fn watch_tablets(&self, cell: Option<&str>) -> Result<Watch, TopoError> {
        let prefix = match cell {
            Some(c) => self.layout.tablets(c),
            None => self.layout.cells(),
        };
        self.store.watch(&prefix).await
    }

    /// Takes the shard's lock, as a reparent must before it changes the primary.
    pub async fn lock_shard(
        &self,
        keyspace: &str,
        shard: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<LockGuard, TopoError> {
        self.store
            .lock(&self.layout.shard_lock(keyspace, shard), ttl, timeout)
            .await
    }

    /// Decodes a tablet record from a watch event's entry.
    pub fn tablet_of(entry: &Entry) -> Result<TabletRecord, TopoError> {
        decode(entry)
    }

    /// Decodes a shard record from a watch event's entry.
    pub fn shard_of(entry: &Entry) -> Result<ShardRecord, TopoError> {
        decode(entry)
    }

    /// Changes a keyspace's record under compare-and-set.
    pub async fn update_keyspace<F>(
        &self,
        keyspace: &str,
        change: F,
    ) -> Result<KeyspaceRecord, TopoError>
    where
        F: FnMut(&mut KeyspaceRecord) -> Result<(), TopoError>,
    {
        self.modify(&self.layout.keyspace(keyspace), change).await
    }

    /// Sets a keyspace's VSchema (Vitess JSON), as `vtctl ApplyVSchema` does.
    pub async fn set_vschema(
        &self,
        keyspace: &str,
        vschema: serde_json::Value,
    ) -> Result<KeyspaceRecord, TopoError> {
        self.update_keyspace(keyspace, |k| {
            k.vschema = Some(vschema.clone());
            Ok(())
        })
        .await
    }

    /// Replaces the routing rules (Vitess JSON, `{"rules": [...]}`).
    pub async fn set_routing_rules(&self, rules: &serde_json::Value) -> Result<(), TopoError> {
        self.store
            .update(&self.layout.routing_rules(), encode(rules), None)
            .await
            .map(|_| ())
    }

    /// Applies a Vitess SrvVSchema (`{"keyspaces": {...}, "routing_rules": {...}}`):
    /// every keyspace named gets that VSchema (its record is created, with no durability
    /// policy, when missing) and the routing rules, when given, replace the current ones.
    /// Returns the keyspaces it wrote.
    pub async fn apply_srv_vschema(
        &self,
        srv: &serde_json::Value,
    ) -> Result<Vec<String>, TopoError> {
        let Some(keyspaces) = srv.get("keyspaces").and_then(|k| k.as_object()) else {
            return Err(TopoError::Decode {
                key: "(SrvVSchema)".into(),
                message: "a SrvVSchema needs a \"keyspaces\" object".into(),
            });
        };
        for (name, vschema) in keyspaces {
            let record = KeyspaceRecord {
                vschema: Some(vschema.clone()),
                ..KeyspaceRecord::default()
            };
            match self.create_keyspace(name, &record).await {
                Ok(()) => {}
                Err(TopoError::Exists(_)) => {
                    self.set_vschema(name, vschema.clone()).await?;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(rules) = srv.get("routing_rules") {
            self.set_routing_rules(rules).await?;
        }
        Ok(keyspaces.keys().cloned().collect())
    }

    /// Decodes a keyspace record from a watch event's entry.
    pub fn keyspace_of(entry: &Entry) -> Result<KeyspaceRecord, TopoError> {
        decode(entry)
    }

    /// Watches every key of the topology (the control service's view of it).
    pub async fn watch_all(&self) -> Result<Watch, TopoError> {
        self.store.watch(&self.layout.everything()).await
    }

    /// Watches every keyspace and shard record.
    pub async fn watch_keyspaces(&self) -> Result<Watch, TopoError> {
        self.store.watch(&self.layout.keyspaces()).await
    }
}
