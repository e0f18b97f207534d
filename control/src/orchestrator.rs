//! The failover orchestrator: one leader at a time (an etcd lock under a lease), which
//! watches every shard's primary and replaces a dead one with an emergency reparent, and
//! points replicas whose replication broke (a fenced old primary among them) back at
//! their primary.
//!
//! A tablet whose replication fails with error 1236 holds transactions its primary never
//! had (errant GTIDs: an old primary's unacknowledged last write, or what it wrote while
//! cut off); repointing cannot fix it. With `rebuild_errant` the orchestrator rebuilds it
//! from the primary (the db role's `rebuild` action, which discards those transactions);
//! without, it only reports it, and an operator decides.
//!
//! A primary counts as dead only when two vantage points agree, so that a partition
//! between the orchestrator and the primary alone does not trigger a failover:
//! - the topology's: its tablet record is gone (the db sidecar's lease expired), or its
//!   db sidecar reports mysqld down;
//! - the replicas': none of the shard's serving replicas still receives from it.
//!
//! A primary that merely does not answer the orchestrator while its sidecar keeps its
//! lease is not replaced: it may be serving its own cell, and replacing it would make two
//! writable primaries. A primary cut off from the topology and from its replicas turns
//! itself read-only before its lease can expire (the db role's guard), so by the time its
//! record is gone it takes no writes.
//!
//! Both must hold for `confirmations` consecutive checks before a failover starts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcar_topo::{TabletRecord, TabletType, Topology};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::ControlMetrics;
use crate::reparent::{emergency_reparent, EmergencyReport, ReparentOptions};

/// How the orchestrator checks and acts.
#[derive(Debug, Clone)]
pub struct OrchestratorOptions {
    /// Time between checks of every shard.
    pub interval: Duration,
    /// Consecutive checks a primary must look dead before the failover starts.
    pub confirmations: u32,
    /// Time between attempts to repair one tablet's replication.
    pub repair_backoff: Duration,
    /// Rebuild tablets with errant transactions from their primary (module docs).
    pub rebuild_errant: bool,
    /// The longest one rebuild may take.
    pub rebuild_timeout: Duration,
    pub reparent: ReparentOptions,
    /// Where leadership and the actions taken are counted (the control API's metrics).
    pub metrics: Option<Arc<ControlMetrics>>,
}

impl Default for OrchestratorOptions {
    fn default() -> Self {
        OrchestratorOptions {
            interval: Duration::from_millis(500),
            confirmations: 2,
            repair_backoff: Duration::from_secs(5),
            rebuild_errant: false,
            rebuild_timeout: Duration::from_secs(3600),
            metrics: None,
            reparent: ReparentOptions {
                wait_timeout: Duration::from_secs(10),
                ..ReparentOptions::default()
            },
        }
    }
}

impl OrchestratorOptions {
    /// Counts into the metrics, when there are any.
    fn count(&self, f: impl FnOnce(&ControlMetrics)) {
        if let Some(m) = &self.metrics {
            f(m);
        }
    }
}

/// MariaDB's and MySQL's "the primary lacks GTIDs this replica has" (ER_MASTER_FATAL_ERROR_READING_BINLOG).
const ERRANT_GTID: u32 = 1236;

/// The leader lock's name under the topology root.
const LEADER_LOCK: &str = "global/locks/orchestrator";

/// What one orchestrator remembers between checks.
#[derive(Debug, Default)]
struct State {
    /// Consecutive dead-looking checks per shard, and when the first was.
    suspects: HashMap<(String, String), (u32, Instant)>,
    /// When each tablet's replication was last repaired.
    repaired: HashMap<String, Instant>,
    /// Rebuilds under way, by tablet alias; they run beside the checks.
    rebuilds: HashMap<String, tokio::task::JoinHandle<()>>,
}

/// Runs until `shutdown`: waits to become the leader, then checks every shard at each
/// interval. `on_failover` hears of every emergency reparent (for logs and tests).
pub async fn run(
    topology: Topology,
    options: OrchestratorOptions,
    mut shutdown: watch::Receiver<bool>,
    on_failover: impl Fn(&EmergencyReport, Duration) + Send + Sync,
) {
    let lock_name = format!("{}/{LEADER_LOCK}", topology.layout().root());
    loop {
        if *shutdown.borrow() {
            return;
        }
        let lock = tokio::select! {
            l = topology.store().lock(&lock_name, Duration::from_secs(10), Duration::from_secs(2)) => l,
            _ = shutdown.changed() => return,
        };
        let guard = match lock {
            Ok(g) => g,
            Err(_) => continue,
        };
        info!("orchestrator is the leader");
        options.count(|m| m.set_leader(true));
        let mut state = State::default();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(options.interval) => {}
                _ = shutdown.changed() => {
                    guard.unlock().await;
                    options.count(|m| m.set_leader(false));
                    return;
                }
            }
            if let Err(e) = check(&topology, &options, &mut state, &on_failover).await {
                warn!(error = %e, "orchestrator check failed");
            }
        }
    }
}

async fn check(
    topology: &Topology,
    options: &OrchestratorOptions,
    state: &mut State,
    on_failover: &(impl Fn(&EmergencyReport, Duration) + Send + Sync),
) -> Result<(), shardcar_topo::TopoError> {
    let tablets = topology.tablets(None).await?;
    for keyspace in topology.keyspace_names().await? {
        for shard in topology.shard_names(&keyspace).await? {
            let Some((record, _)) = topology.shard(&keyspace, &shard).await? else {
                continue;
            };
            let Some(primary_alias) = record.primary_alias.clone() else {
                continue;
            };
            if record.reparenting {
                continue;
            }
            let members: Vec<&TabletRecord> = tablets
                .iter()
                .filter(|t| t.keyspace == keyspace && t.shard == shard)
                .collect();
            let primary = members.iter().find(|t| t.alias == primary_alias).copied();
            let key = (keyspace.clone(), shard.clone());
            if primary_dead(primary, &members, &primary_alias) {
                let (count, since) = state
                    .suspects
                    .entry(key.clone())
                    .or_insert((0, Instant::now()));
                *count += 1;
                if *count < options.confirmations {
                    continue;
                }
                let detected = since.elapsed();
                state.suspects.remove(&key);
                warn!(%keyspace, %shard, primary = %primary_alias, detected_ms = detected.as_millis() as u64, "the primary is dead; emergency reparent");
                match emergency_reparent(
                    topology,
                    &keyspace,
                    &shard,
                    &primary_alias,
                    &options.reparent,
                )
                .await
                {
                    Ok(report) => {
                        options.count(|m| m.action("emergency", true));
                        on_failover(&report, detected)
                    }
                    Err(e) => {
                        options.count(|m| m.action("emergency", false));
                        warn!(%keyspace, %shard, error = %e, "emergency reparent failed")
                    }
                }
                continue;
            }
            state.suspects.remove(&key);
            if let Some(primary) = primary {
                repair(primary, &members, options, state).await;
            }
        }
    }
    Ok(())
}

/// Both vantage points say the primary is gone (see the module docs).
fn primary_dead(primary: Option<&TabletRecord>, members: &[&TabletRecord], alias: &str) -> bool {
    if primary.is_some_and(|p| p.health.serving) {
        return false;
    }
    let replicas: Vec<&&TabletRecord> = members
        .iter()
        .filter(|t| t.alias != alias && t.tablet_type == TabletType::Replica && t.health.serving)
        .collect();
    !replicas.is_empty() && replicas.iter().all(|t| !t.health.replicating)
}

/// Points serving tablets of the shard that do not replicate (a fenced old primary, a
/// replica whose replication stopped) at the primary, at most once per backoff each.
async fn repair(
    primary: &TabletRecord,
    members: &[&TabletRecord],
    options: &OrchestratorOptions,
    state: &mut State,
) {
    if !primary.health.serving || primary.mysqld_port == 0 {
        return;
    }
    state.rebuilds.retain(|_, task| !task.is_finished());
    let broken: Vec<&TabletRecord> = members
        .iter()
        .filter(|t| {
            t.alias != primary.alias
                && matches!(t.tablet_type, TabletType::Replica | TabletType::Spare)
                && t.health.serving
                && !t.health.replicating
                && !state.rebuilds.contains_key(&t.alias)
        })
        .copied()
        .collect();
    for t in broken {
        let recent = state
            .repaired
            .get(&t.alias)
            .is_some_and(|at| at.elapsed() < options.repair_backoff);
        if recent {
            continue;
        }
        state.repaired.insert(t.alias.clone(), Instant::now());
        let source = format!("host={}&port={}", primary.mysqld_host, primary.mysqld_port);
        if t.health.replication_error == Some(ERRANT_GTID) {
            if !options.rebuild_errant {
                warn!(tablet = %t.alias, primary = %primary.alias, "the tablet has transactions its primary lacks (errant GTIDs, error 1236) and needs a rebuild; rebuild_errant is off");
                continue;
            }
            warn!(tablet = %t.alias, primary = %primary.alias, "the tablet has errant GTIDs (error 1236): rebuilding it from the primary");
            let (tablet, primary_alias, timeout) =
                (t.clone(), primary.alias.clone(), options.rebuild_timeout);
            let reparent = options.reparent.clone();
            let metrics = options.metrics.clone();
            let task = tokio::spawn(async move {
                let path = format!("rebuild?{source}");
                let result = reparent.act_within(&tablet, &path, timeout).await;
                if let Some(m) = &metrics {
                    m.action("rebuild", result.is_ok());
                }
                match result {
                    Ok(report) => {
                        info!(tablet = %tablet.alias, primary = %primary_alias, report = %report["rebuild"], "tablet rebuilt")
                    }
                    Err(e) => warn!(tablet = %tablet.alias, error = %e, "rebuild failed"),
                }
            });
            state.rebuilds.insert(t.alias.clone(), task);
            continue;
        }
        match options
            .reparent
            .act(t, &format!("replicate?{source}"))
            .await
        {
            Ok(_) => {
                options.count(|m| m.action("repair", true));
                info!(tablet = %t.alias, primary = %primary.alias, "replication repaired")
            }
            Err(e) => {
                options.count(|m| m.action("repair", false));
                warn!(tablet = %t.alias, error = %e, "replication repair failed")
            }
        }
    }
}
