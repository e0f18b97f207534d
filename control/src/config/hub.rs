//! The topology as the control service last read it, and the views it publishes: one
//! per [`Scope`] any stream asks for, recomputed after every batch of topology changes
//! and published only when that scope's content changed. Each publication carries the
//! delta from the one before, so streams that are up to date share it instead of
//! diffing the whole view themselves.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardcar_config_api::{convert, pb, View};
use shardcar_topo::{KeyspaceRecord, Layout, ShardRecord, TabletRecord, Topology, WatchEvent};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// The part of the configuration a stream receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every keyspace, shard and tablet (the app role routes to all of them).
    All,
    /// One shard: its keyspace, its record and its tablets (the db role).
    Shard { keyspace: String, shard: String },
}

impl Scope {
    /// What `identity` needs, or why it cannot be served.
    pub fn of(identity: &pb::Identity) -> Result<Scope, String> {
        match identity.role() {
            pb::Role::App => Ok(Scope::All),
            pb::Role::Db if identity.keyspace.is_empty() || identity.shard.is_empty() => {
                Err("a db sidecar must name its keyspace and shard".into())
            }
            pb::Role::Db => Ok(Scope::Shard {
                keyspace: identity.keyspace.clone(),
                shard: identity.shard.clone(),
            }),
            pb::Role::Unspecified => Err("the identity names no role (app or db)".into()),
        }
    }

    fn has_keyspace(&self, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Shard { keyspace, .. } => keyspace == name,
        }
    }

    fn has_shard(&self, ks: &str, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Shard { keyspace, shard } => keyspace == ks && shard == name,
        }
    }
}

/// A view as published, with the delta from the previous publication of its scope.
#[derive(Debug, Default)]
pub struct Published {
    pub view: Arc<View>,
    /// Turns the previous publication (`delta.base_version`) into this one; `None` for
    /// the first.
    pub delta: Option<pb::ConfigUpdate>,
}

/// The records the topology holds, as last read.
#[derive(Debug, Default)]
struct State {
    keyspaces: BTreeMap<String, KeyspaceRecord>,
    shards: BTreeMap<(String, String), ShardRecord>,
    /// By key (a delete carries only the key).
    tablets: BTreeMap<String, TabletRecord>,
    routing_rules: String,
    /// The newest store revision applied.
    revision: u64,
}

impl State {
    fn apply(&mut self, layout: &Layout, event: WatchEvent) {
        match event {
            WatchEvent::Put(entry) => {
                self.revision = self.revision.max(revision(entry.version));
                let key = entry.key.as_str();
                let decoded = if let Some(name) = layout.parse_keyspace(key) {
                    Topology::keyspace_of(&entry).map(|r| {
                        self.keyspaces.insert(name, r);
                    })
                } else if let Some(name) = layout.parse_shard(key) {
                    Topology::shard_of(&entry).map(|r| {
                        self.shards.insert(name, r);
                    })
                } else if layout.is_tablet(key) {
                    Topology::tablet_of(&entry).map(|r| {
                        self.tablets.insert(entry.key.clone(), r);
                    })
                } else if key == layout.routing_rules() {
                    self.routing_rules = String::from_utf8_lossy(&entry.value).into_owned();
                    Ok(())
                } else {
                    Ok(())
                };
                if let Err(e) = decoded {
                    warn!(error = %e, "ignoring an unreadable topology record");
                }
            }
            WatchEvent::Delete { key, version } => {
                self.revision = self.revision.max(revision(version));
                if let Some(name) = layout.parse_keyspace(&key) {
                    self.keyspaces.remove(&name);
                } else if let Some(name) = layout.parse_shard(&key) {
                    self.shards.remove(&name);
                } else if key == layout.routing_rules() {
                    self.routing_rules.clear();
                } else {
                    self.tablets.remove(&key);
                }
            }
        }
    }

    /// What `scope` sees, at the current revision.
    fn view(&self, scope: &Scope) -> View {
        let mut view = View {
            version: self.revision,
            routing_rules_json: self.routing_rules.clone(),
            ..View::default()
        };
        for (name, record) in &self.keyspaces {
            if scope.has_keyspace(name) {
                view.keyspaces
                    .insert(name.clone(), convert::keyspace(name, record));
            }
        }
        for ((keyspace, shard), record) in &self.shards {
            if scope.has_shard(keyspace, shard) {
                view.shards.insert(
                    (keyspace.clone(), shard.clone()),
                    convert::shard(keyspace, shard, record),
                );
            }
        }
        for tablet in self.tablets.values() {
            if scope.has_shard(&tablet.keyspace, &tablet.shard) {
                view.tablets
                    .insert(tablet.alias.clone(), convert::tablet(tablet));
            }
        }
        view
    }
}

fn revision(version: i64) -> u64 {
    u64::try_from(version).unwrap_or(0)
}

/// Publishes the views streams subscribe to.
#[derive(Debug)]
pub struct Hub {
    scopes: Mutex<HashMap<Scope, watch::Sender<Arc<Published>>>>,
    state: Mutex<State>,
    /// True once the topology has been read.
    loaded: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            scopes: Mutex::new(HashMap::new()),
            state: Mutex::new(State::default()),
            loaded: watch::channel(false).0,
        }
    }
}

impl Hub {
    /// The publications of `scope`, starting with the current one.
    pub fn subscribe(&self, scope: &Scope) -> watch::Receiver<Arc<Published>> {
        let mut scopes = lock(&self.scopes);
        if let Some(tx) = scopes.get(scope) {
            return tx.subscribe();
        }
        let view = lock(&self.state).view(scope);
        let (tx, rx) = watch::channel(Arc::new(Published {
            view: Arc::new(view),
            delta: None,
        }));
        scopes.insert(scope.clone(), tx);
        rx
    }

    /// Resolves once the topology has been read (streams wait for it before their first
    /// snapshot, so a control instance that just started sends no empty view).
    pub async fn loaded(&self) {
        let mut rx = self.loaded.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// The newest topology revision read.
    pub fn revision(&self) -> u64 {
        lock(&self.state).revision
    }

    /// Follows `topology` until `shutdown`, rewatching (and keeping the last state)
    /// whenever the watch breaks.
    pub async fn run(&self, topology: Topology, mut shutdown: watch::Receiver<bool>) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.follow(&topology, &mut shutdown).await {
                Ok(()) => return,
                Err(e) => warn!(error = %e, "topology watch ended; serving the last views"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn follow(
        &self,
        topology: &Topology,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut watch = topology.watch_all().await.map_err(|e| e.to_string())?;
        let layout = topology.layout().clone();
        {
            // A fresh listing replaces everything: deletes missed while unwatched vanish.
            let mut fresh = State {
                revision: revision(watch.revision),
                ..State::default()
            };
            for entry in std::mem::take(&mut watch.initial) {
                fresh.apply(&layout, WatchEvent::Put(entry));
            }
            fresh.revision = fresh.revision.max(revision(watch.revision));
            info!(
                revision = fresh.revision,
                keyspaces = fresh.keyspaces.len(),
                shards = fresh.shards.len(),
                tablets = fresh.tablets.len(),
                "configuration source: topology read"
            );
            *lock(&self.state) = fresh;
        }
        self.publish();
        self.loaded.send_replace(true);
        loop {
            let event = tokio::select! {
                e = watch.events.recv() => e.ok_or("the topology watch closed")?,
                _ = shutdown.changed() => return Ok(()),
            };
            {
                let mut state = lock(&self.state);
                state.apply(&layout, event);
                // Whatever else is queued goes into the same publication.
                while let Ok(e) = watch.events.try_recv() {
                    state.apply(&layout, e);
                }
            }
            self.publish();
        }
    }

    /// Recomputes every subscribed scope and publishes those that changed; drops scopes
    /// nobody watches any more.
    fn publish(&self) {
        let state = lock(&self.state);
        let mut scopes = lock(&self.scopes);
        scopes.retain(|_, tx| tx.receiver_count() > 0);
        for (scope, tx) in scopes.iter() {
            let view = state.view(scope);
            let current = tx.borrow().view.clone();
            if view.same_content(&current) {
                continue;
            }
            debug!(?scope, version = view.version, "publishing a view");
            let delta = view.delta(&current);
            tx.send_replace(Arc::new(Published {
                view: Arc::new(view),
                delta: Some(delta),
            }));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcar_topo::{MemoryStore, TabletType};

    fn tablet(cell: &str, uid: u32, shard: &str) -> TabletRecord {
        TabletRecord {
            alias: TabletRecord::alias_of(cell, uid),
            cell: cell.into(),
            keyspace: "user".into(),
            shard: shard.into(),
            tablet_type: TabletType::Replica,
            hostname: "127.0.0.1".into(),
            mysql_port: 3306,
            ..TabletRecord::default()
        }
    }

    #[tokio::test]
    async fn scopes_see_their_part_and_publish_only_changes() {
        let topology = Topology::new(Arc::new(MemoryStore::default()), Layout::default());
        topology
            .create_keyspace("user", &KeyspaceRecord::default())
            .await
            .expect("keyspace");
        for shard in ["-80", "80-"] {
            topology
                .create_shard("user", shard, &ShardRecord::default())
                .await
                .expect("shard");
        }
        let (_stop, shutdown) = watch::channel(false);
        let hub = Arc::new(Hub::default());
        tokio::spawn({
            let hub = hub.clone();
            let topology = topology.clone();
            async move { hub.run(topology, shutdown).await }
        });
        hub.loaded().await;
        let mut all = hub.subscribe(&Scope::All);
        let mut one = hub.subscribe(&Scope::Shard {
            keyspace: "user".into(),
            shard: "-80".into(),
        });
        assert_eq!(all.borrow().view.shards.len(), 2);
        assert_eq!(one.borrow().view.shards.len(), 1);

        let leases = [
            topology
                .register_tablet(&tablet("zone1", 1, "-80"), Duration::from_secs(10))
                .await
                .expect("register"),
            topology
                .register_tablet(&tablet("zone1", 2, "80-"), Duration::from_secs(10))
                .await
                .expect("register"),
        ];
        let published = all
            .wait_for(|p| p.view.tablets.len() == 2)
            .await
            .expect("published")
            .clone();
        let delta = published.delta.as_ref().expect("a delta");
        assert!(!delta.full && delta.version > delta.base_version);
        let mine = one
            .wait_for(|p| !p.view.tablets.is_empty())
            .await
            .expect("published")
            .clone();
        assert_eq!(
            mine.view.tablets.keys().collect::<Vec<_>>(),
            vec!["zone1-0000000001"]
        );

        // A change to the other shard is not news to the one-shard scope.
        topology
            .set_primary("user", "80-", "zone1-0000000002")
            .await
            .expect("primary");
        all.wait_for(|p| p.view.shards[&("user".to_string(), "80-".to_string())].term == 1)
            .await
            .expect("published");
        assert!(!one.has_changed().expect("open"));
        drop(leases);
    }
}
