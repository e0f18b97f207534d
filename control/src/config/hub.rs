//! The topologies the control service follows, as last read, and the views it
//! publishes: one per [`Scope`] any stream asks for, recomputed after every batch of
//! topology changes and published only when that scope's content changed. Each
//! publication carries the delta from the one before, so streams that are up to date
//! share it instead of diffing the whole view themselves.
//!
//! # Federation
//!
//! The hub can follow several clusters ([`Source`]s: each its own etcd, with a region
//! and a cloud) and merges them into one view: every tablet labelled with its cluster,
//! region and cloud; keyspaces and shard records united (for a shard the record with the
//! higher term wins). When two clusters disagree — a keyspace's VSchema or policy, a
//! shard's primary in the same term, one tablet alias in two clusters, the routing
//! rules — the first cluster (by name) wins and the conflict is reported
//! ([`Hub::conflicts`]). A cluster whose topology becomes unreachable keeps its tablets,
//! marked stale, for a grace period; then they are dropped until it answers again.
//!
//! A view's version is the sum of its sources' store revisions, plus one for every
//! change of a source's reachability: it grows with every change, and with a single
//! source it is that etcd's revision, so any control replica can resume any stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::lock;

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
#[derive(Debug)]
pub struct Published {
    pub view: Arc<View>,
    /// Turns the previous publication (`delta.base_version`) into this one; `None` for
    /// the first.
    pub delta: Option<pb::ConfigUpdate>,
    /// The view as a snapshot in parts, built once for every stream that needs it.
    snapshot: std::sync::OnceLock<Arc<[pb::ConfigUpdate]>>,
}

impl Published {
    fn new(view: View, delta: Option<pb::ConfigUpdate>) -> Self {
        Published {
            view: Arc::new(view),
            delta,
            snapshot: std::sync::OnceLock::new(),
        }
    }

    /// The snapshot of this view, in parts of about `PART_BYTES`.
    pub fn snapshot_parts(&self) -> Arc<[pb::ConfigUpdate]> {
        self.snapshot
            .get_or_init(|| {
                shardcar_config_api::split(self.view.snapshot(), shardcar_config_api::PART_BYTES)
                    .into()
            })
            .clone()
    }
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
}

/// One cluster the hub follows.
#[derive(Debug, Clone)]
pub struct Source {
    /// The cluster's name (tablets are labelled with it).
    pub cluster: String,
    pub region: String,
    pub cloud: String,
    pub topology: SourceTopology,
}

/// Where a source's topology is.
#[derive(Debug, Clone)]
pub enum SourceTopology {
    Ready(Topology),
    /// An etcd cluster, connected to (again and again) by the hub: one that is down at
    /// start must not hold up the others.
    Etcd {
        endpoints: Vec<String>,
        root: String,
    },
}

impl SourceTopology {
    async fn connect(&self) -> Result<Topology, String> {
        match self {
            SourceTopology::Ready(t) => Ok(t.clone()),
            SourceTopology::Etcd { endpoints, root } => {
                let store = shardcar_topo::EtcdStore::connect(endpoints)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Topology::new(Arc::new(store), Layout::new(root)))
            }
        }
    }
}

impl Source {
    /// A single cluster's topology, without labels.
    pub fn local(topology: Topology) -> Self {
        Source {
            cluster: String::new(),
            region: String::new(),
            cloud: String::new(),
            topology: SourceTopology::Ready(topology),
        }
    }
}

/// A source as the hub knows it.
#[derive(Debug)]
struct Followed {
    region: String,
    cloud: String,
    state: State,
    /// Read at least once.
    loaded: bool,
    /// Since when its topology is unreachable.
    down_since: Option<Instant>,
    /// Down beyond the grace period: its tablets are dropped.
    expired: bool,
}

/// Every source, by cluster name.
#[derive(Debug, Default)]
struct Sources {
    by_cluster: BTreeMap<String, Followed>,
    /// Changes of reachability so far (part of the version).
    transitions: u64,
}

impl Sources {
    fn version(&self) -> u64 {
        self.by_cluster
            .values()
            .map(|f| f.state.revision)
            .sum::<u64>()
            + self.transitions
    }

    /// What `scope` sees now, and the conflicts between clusters.
    fn view(&self, scope: &Scope) -> (View, Vec<String>) {
        let mut view = View {
            version: self.version(),
            ..View::default()
        };
        let mut conflicts = Vec::new();
        let mut owner: HashMap<String, &str> = HashMap::new();
        let mut rules_from: Option<&str> = None;
        for (cluster, f) in &self.by_cluster {
            let state = &f.state;
            if !state.routing_rules.is_empty() {
                match rules_from {
                    None => {
                        view.routing_rules_json.clone_from(&state.routing_rules);
                        rules_from = Some(cluster);
                    }
                    Some(first) if view.routing_rules_json != state.routing_rules => {
                        conflicts.push(format!(
                            "routing rules: clusters {first} and {cluster} differ ({first}'s serve)"
                        ));
                    }
                    Some(_) => {}
                }
            }
            for (name, record) in &state.keyspaces {
                if !scope.has_keyspace(name) {
                    continue;
                }
                let k = convert::keyspace(name, record);
                match view.keyspaces.get(name) {
                    None => {
                        view.keyspaces.insert(name.clone(), k);
                    }
                    Some(held) if *held != k => conflicts.push(format!(
                        "keyspace {name}: cluster {cluster} has another durability policy or VSchema (the first cluster's serves)"
                    )),
                    Some(_) => {}
                }
            }
            for ((keyspace, shard), record) in &state.shards {
                if !scope.has_shard(keyspace, shard) {
                    continue;
                }
                let s = convert::shard(keyspace, shard, record);
                let id = (keyspace.clone(), shard.clone());
                match view.shards.get(&id) {
                    Some(held) if held.term > s.term => {}
                    Some(held) if held.term == s.term => {
                        if held.primary_alias != s.primary_alias {
                            conflicts.push(format!(
                                "shard {keyspace}/{shard}: cluster {cluster} names primary {:?} in term {}, another cluster {:?}",
                                s.primary_alias, s.term, held.primary_alias
                            ));
                        }
                    }
                    _ => {
                        view.shards.insert(id, s);
                    }
                }
            }
            if f.expired {
                continue;
            }
            for tablet in state.tablets.values() {
                if !scope.has_shard(&tablet.keyspace, &tablet.shard) {
                    continue;
                }
                if let Some(first) = owner.get(&tablet.alias) {
                    conflicts.push(format!(
                        "tablet {}: registered in clusters {first} and {cluster} ({first}'s serves)",
                        tablet.alias
                    ));
                    continue;
                }
                owner.insert(tablet.alias.clone(), cluster);
                let mut t = convert::tablet(tablet);
                t.cluster.clone_from(cluster);
                t.region.clone_from(&f.region);
                t.cloud.clone_from(&f.cloud);
                t.stale = f.down_since.is_some();
                view.tablets.insert(tablet.alias.clone(), t);
            }
        }
        (view, conflicts)
    }
}

fn revision(version: i64) -> u64 {
    u64::try_from(version).unwrap_or(0)
}

/// How long a cluster's tablets stay (stale) after its topology became unreachable.
pub const DEFAULT_STALE_GRACE: Duration = Duration::from_secs(300);

/// How long streams wait for every cluster to be read before they are served what the
/// reachable ones hold.
const LOAD_WAIT: Duration = Duration::from_secs(10);

/// Publishes the views streams subscribe to.
#[derive(Debug)]
pub struct Hub {
    scopes: Mutex<HashMap<Scope, watch::Sender<Arc<Published>>>>,
    sources: Mutex<Sources>,
    conflicts: Mutex<Vec<String>>,
    /// True once the topologies have been read.
    loaded: watch::Sender<bool>,
    stale_grace: Duration,
    metrics: Option<Arc<crate::ControlMetrics>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(DEFAULT_STALE_GRACE)
    }
}

/// A source's status, for `/debug/sources`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceStatus {
    pub cluster: String,
    pub region: String,
    pub cloud: String,
    pub revision: u64,
    pub reachable: bool,
    /// Seconds it has been unreachable.
    pub down_for_s: Option<u64>,
    /// Its tablets were dropped after the grace period.
    pub expired: bool,
    pub keyspaces: usize,
    pub shards: usize,
    pub tablets: usize,
}

impl Hub {
    /// A hub whose unreachable clusters keep their tablets for `stale_grace`.
    pub fn new(stale_grace: Duration) -> Self {
        Hub {
            scopes: Mutex::new(HashMap::new()),
            sources: Mutex::new(Sources::default()),
            conflicts: Mutex::new(Vec::new()),
            loaded: watch::channel(false).0,
            stale_grace,
            metrics: None,
        }
    }

    /// Reports conflicts and sources' reachability in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::ControlMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The publications of `scope`, starting with the current one.
    pub fn subscribe(&self, scope: &Scope) -> watch::Receiver<Arc<Published>> {
        let mut scopes = lock(&self.scopes);
        if let Some(tx) = scopes.get(scope) {
            return tx.subscribe();
        }
        let (view, _) = lock(&self.sources).view(scope);
        let (tx, rx) = watch::channel(Arc::new(Published::new(view, None)));
        scopes.insert(scope.clone(), tx);
        rx
    }

    /// Resolves once the topologies have been read (streams wait for it before their
    /// first snapshot, so a control instance that just started sends no empty view).
    pub async fn loaded(&self) {
        let mut rx = self.loaded.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// The view's version now.
    pub fn revision(&self) -> u64 {
        lock(&self.sources).version()
    }

    /// Whether a stream may resume from the version a sidecar holds: versions name one
    /// content only with a single source (with several, reachability changes are local
    /// to each control instance).
    pub fn resumable(&self) -> bool {
        lock(&self.sources).by_cluster.len() <= 1
    }

    /// The disagreements between clusters found in the last merge.
    pub fn conflicts(&self) -> Vec<String> {
        lock(&self.conflicts).clone()
    }

    /// Every source's status.
    pub fn sources(&self) -> Vec<SourceStatus> {
        let now = Instant::now();
        lock(&self.sources)
            .by_cluster
            .iter()
            .map(|(cluster, f)| SourceStatus {
                cluster: cluster.clone(),
                region: f.region.clone(),
                cloud: f.cloud.clone(),
                revision: f.state.revision,
                reachable: f.down_since.is_none(),
                down_for_s: f
                    .down_since
                    .map(|d| now.saturating_duration_since(d).as_secs()),
                expired: f.expired,
                keyspaces: f.state.keyspaces.len(),
                shards: f.state.shards.len(),
                tablets: f.state.tablets.len(),
            })
            .collect()
    }

    /// Follows `topology` until `shutdown`.
    pub async fn run(&self, topology: Topology, shutdown: watch::Receiver<bool>) {
        self.run_sources(vec![Source::local(topology)], shutdown)
            .await;
    }

    /// Follows every source until `shutdown`, rewatching a source (and keeping what it
    /// last said, stale after a while) whenever its watch breaks.
    pub async fn run_sources(&self, sources: Vec<Source>, shutdown: watch::Receiver<bool>) {
        {
            let mut all = lock(&self.sources);
            for s in &sources {
                all.by_cluster.insert(
                    s.cluster.clone(),
                    Followed {
                        region: s.region.clone(),
                        cloud: s.cloud.clone(),
                        state: State::default(),
                        loaded: false,
                        down_since: None,
                        expired: false,
                    },
                );
            }
        }
        let follows = sources.into_iter().map(|source| {
            let shutdown = shutdown.clone();
            async move { self.follow_source(source, shutdown).await }
        });
        let mut timer_shutdown = shutdown.clone();
        let timers = async {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = timer_shutdown.changed() => return,
                }
                self.expire_and_load(started);
            }
        };
        tokio::join!(join_all(follows), timers);
    }

    /// Drops the tablets of clusters down beyond the grace period, and lets streams in
    /// when the sources that answer have been read and the others had their chance.
    fn expire_and_load(&self, started: Instant) {
        let now = Instant::now();
        let (expired, loaded) = {
            let mut all = lock(&self.sources);
            let mut expired = false;
            let grace = self.stale_grace;
            for (cluster, f) in all.by_cluster.iter_mut() {
                if !f.expired
                    && f.down_since
                        .is_some_and(|d| now.saturating_duration_since(d) >= grace)
                {
                    warn!(%cluster, "cluster unreachable beyond the grace period; its tablets are dropped");
                    f.expired = true;
                    expired = true;
                }
            }
            if expired {
                all.transitions += 1;
            }
            let any = all.by_cluster.values().any(|f| f.loaded);
            let every = all.by_cluster.values().all(|f| f.loaded);
            (
                expired,
                every || (any && now.saturating_duration_since(started) >= LOAD_WAIT),
            )
        };
        if expired {
            self.publish();
        }
        if loaded && !*self.loaded.borrow() {
            self.loaded.send_replace(true);
        }
    }

    async fn follow_source(&self, source: Source, mut shutdown: watch::Receiver<bool>) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.follow(&source, &mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(cluster = %source.cluster, error = %e, "topology watch ended; serving what it last said");
                    self.set_down(&source.cluster);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Marks a cluster unreachable (its tablets stale) unless it is already.
    fn set_down(&self, cluster: &str) {
        let changed = {
            let mut all = lock(&self.sources);
            let changed = match all.by_cluster.get_mut(cluster) {
                Some(f) if f.down_since.is_none() && f.loaded => {
                    f.down_since = Some(Instant::now());
                    true
                }
                _ => false,
            };
            if changed {
                all.transitions += 1;
            }
            changed
        };
        if changed {
            self.publish();
        }
    }

    async fn follow(
        &self,
        source: &Source,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let topology = &source.topology.connect().await?;
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
            info!(
                cluster = %source.cluster,
                revision = fresh.revision,
                keyspaces = fresh.keyspaces.len(),
                shards = fresh.shards.len(),
                tablets = fresh.tablets.len(),
                "configuration source: topology read"
            );
            let mut all = lock(&self.sources);
            let mut back = false;
            if let Some(f) = all.by_cluster.get_mut(&source.cluster) {
                back = f.down_since.is_some() || f.expired;
                // Never below what was served: the version only grows.
                fresh.revision = fresh.revision.max(f.state.revision);
                f.state = fresh;
                f.loaded = true;
                f.down_since = None;
                f.expired = false;
            }
            if back {
                all.transitions += 1;
            }
        }
        self.publish();
        if lock(&self.sources).by_cluster.values().all(|f| f.loaded) {
            self.loaded.send_replace(true);
        }
        loop {
            let event = tokio::select! {
                e = watch.events.recv() => e.ok_or("the topology watch closed")?,
                _ = shutdown.changed() => return Ok(()),
            };
            {
                let mut all = lock(&self.sources);
                if let Some(f) = all.by_cluster.get_mut(&source.cluster) {
                    f.state.apply(&layout, event);
                    // Whatever else is queued goes into the same publication.
                    while let Ok(e) = watch.events.try_recv() {
                        f.state.apply(&layout, e);
                    }
                }
            }
            self.publish();
        }
    }

    /// Recomputes every subscribed scope and publishes those that changed; drops scopes
    /// nobody watches any more.
    fn publish(&self) {
        let sources = lock(&self.sources);
        if let Some(m) = &self.metrics {
            for (cluster, f) in &sources.by_cluster {
                m.config_source(cluster, f.loaded && f.down_since.is_none());
            }
        }
        // The merge of everything finds the conflicts, and serves the `All` scope too.
        let (all, conflicts) = sources.view(&Scope::All);
        let mut all = Some(all);
        if let Some(m) = &self.metrics {
            m.config_conflicts(conflicts.len());
        }
        if conflicts != *lock(&self.conflicts) {
            for c in &conflicts {
                warn!(conflict = %c, "clusters disagree");
            }
            *lock(&self.conflicts) = conflicts;
        }
        let mut scopes = lock(&self.scopes);
        scopes.retain(|_, tx| tx.receiver_count() > 0);
        for (scope, tx) in scopes.iter() {
            let view = match scope {
                Scope::All => all.take().unwrap_or_else(|| sources.view(scope).0),
                Scope::Shard { .. } => sources.view(scope).0,
            };
            let current = tx.borrow().view.clone();
            if view.same_content(&current) {
                continue;
            }
            debug!(?scope, version = view.version, "publishing a view");
            let delta = view.delta(&current);
            tx.send_replace(Arc::new(Published::new(view, Some(delta))));
        }
    }
}

/// Runs every future to its end.
async fn join_all<F: std::future::Future<Output = ()>>(futures: impl IntoIterator<Item = F>) {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(move |cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
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
