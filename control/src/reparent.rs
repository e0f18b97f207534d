//! Planned reparent (Vitess's PlannedReparentShard): move a shard's primary to a replica
//! with no lost write and, for the applications, a short pause instead of errors.
//!
//! Under the shard's lock: announce the reparent (app sidecars start holding the shard's
//! statements), make the old primary read-only and read its GTID position, wait for the
//! candidate to apply it, promote the candidate in the next term, publish it as the
//! primary (app sidecars release the held statements to it), then point every other
//! tablet — the old primary included — at it. A failure before the promotion puts the
//! old primary back.
//!
//! Emergency reparent (Vitess's EmergencyReparentShard), for a primary that is gone:
//! under the lock, announce the reparent, have every reachable replica stop receiving and
//! apply its relay log, promote the most advanced one (the old primary's cell first among
//! equals) in the next term, publish it, repoint the others, and demote the old primary
//! if its sidecar still answers (otherwise it fences itself when it returns).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use shardcar_topo::{TabletRecord, TabletType, TopoError, Topology};
use tracing::{info, warn};

use crate::http::{self, HttpError};

/// How a reparent runs.
#[derive(Debug, Clone)]
pub struct ReparentOptions {
    /// The replica to promote; by default the healthiest replica, preferring the old
    /// primary's cell, then the lowest lag.
    pub to: Option<String>,
    /// The longest the candidate may take to catch up with the old primary.
    pub wait_timeout: Duration,
    /// The longest to wait for the shard's lock.
    pub lock_timeout: Duration,
    /// Each tablet action's own timeout, beyond the catch-up wait.
    pub action_timeout: Duration,
    /// The bearer token the db sidecars' admin API requires for actions
    /// (`admin_token_file` in their configuration).
    pub action_token: Option<Arc<str>>,
}

impl Default for ReparentOptions {
    fn default() -> Self {
        ReparentOptions {
            to: None,
            wait_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            action_timeout: Duration::from_secs(10),
            action_token: None,
        }
    }
}

/// What a reparent did, with the time each step took.
#[derive(Debug, Clone, Serialize)]
pub struct ReparentReport {
    pub keyspace: String,
    pub shard: String,
    pub old_primary: String,
    pub new_primary: String,
    pub term: u64,
    /// The old primary's GTID position when it stopped writing.
    pub position: String,
    /// From announcing the reparent to publishing the new primary: the longest any
    /// statement of the shard was held.
    pub write_pause_ms: u64,
    pub total_ms: u64,
    /// Tablets that could not be pointed at the new primary (they need repair).
    pub not_repointed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReparentError {
    #[error("topology: {0}")]
    Topology(#[from] TopoError),
    #[error("shard {0}/{1} is not in the topology")]
    NoShard(String, String),
    #[error("shard {0}/{1} has no primary (use an emergency reparent)")]
    NoPrimary(String, String),
    #[error("the primary {0} is not registered (is its db sidecar running?)")]
    PrimaryGone(String),
    #[error("{0}")]
    NoCandidate(String),
    #[error("tablet action failed: {0}")]
    Action(#[from] HttpError),
    #[error("tablet {0} answered unexpectedly: {1}")]
    Answer(String, String),
    #[error("{0}; the old primary was put back")]
    RolledBack(Box<ReparentError>),
}

/// The replica to promote: `wanted`, or the healthiest replica (the primary's cell
/// first, then the lowest lag).
fn candidate<'a>(
    tablets: &'a [TabletRecord],
    primary: &TabletRecord,
    wanted: Option<&str>,
) -> Result<&'a TabletRecord, ReparentError> {
    let usable = |t: &&TabletRecord| {
        t.alias != primary.alias
            && matches!(t.tablet_type, TabletType::Replica)
            && t.health.serving
            && t.health.replicating
            && t.mysqld_port != 0
    };
    if let Some(alias) = wanted {
        let t = tablets.iter().find(|t| t.alias == alias).ok_or_else(|| {
            ReparentError::NoCandidate(format!("tablet {alias} is not in the shard"))
        })?;
        if t.alias == primary.alias {
            return Err(ReparentError::NoCandidate(format!(
                "{alias} is already the primary"
            )));
        }
        if !usable(&t) {
            return Err(ReparentError::NoCandidate(format!(
                "tablet {alias} is not a healthy, replicating replica with a mysqld address"
            )));
        }
        return Ok(t);
    }
    tablets
        .iter()
        .filter(usable)
        .min_by_key(|t| {
            (
                t.cell != primary.cell,
                t.health.lag_ms().unwrap_or(u64::MAX),
                t.alias.clone(),
            )
        })
        .ok_or_else(|| ReparentError::NoCandidate("no healthy replica to promote".to_string()))
}

impl ReparentOptions {
    /// Calls a tablet action (with the action token) within `action_timeout`; its JSON
    /// answer.
    pub(crate) async fn act(
        &self,
        tablet: &TabletRecord,
        path: &str,
    ) -> Result<serde_json::Value, ReparentError> {
        self.act_within(tablet, path, self.action_timeout).await
    }

    /// [`ReparentOptions::act`] for an action that itself waits up to `wait_timeout`.
    async fn act_waiting(
        &self,
        tablet: &TabletRecord,
        path: &str,
    ) -> Result<serde_json::Value, ReparentError> {
        self.act_within(tablet, path, self.wait_timeout + self.action_timeout)
            .await
    }

    /// [`ReparentOptions::act`] within `timeout`.
    pub(crate) async fn act_within(
        &self,
        tablet: &TabletRecord,
        path: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, ReparentError> {
        let body = http::request(
            "POST",
            &tablet.hostname,
            tablet.admin_port,
            &format!("/debug/tablet/{path}"),
            timeout,
            self.action_token.as_deref(),
        )
        .await?;
        serde_json::from_str(&body)
            .map_err(|e| ReparentError::Answer(tablet.alias.clone(), e.to_string()))
    }

    /// Points each of `tablets` at `new`; the aliases of those that could not be.
    async fn repoint<'a>(
        &self,
        tablets: impl Iterator<Item = &'a TabletRecord>,
        new: &TabletRecord,
    ) -> Vec<String> {
        let path = format!(
            "replicate?host={}&port={}",
            new.mysqld_host, new.mysqld_port
        );
        let mut not_repointed = Vec::new();
        for t in tablets {
            if let Err(e) = self.act(t, &path).await {
                warn!(tablet = %t.alias, error = %e, "could not point the tablet at the new primary");
                not_repointed.push(t.alias.clone());
            }
        }
        not_repointed
    }
}

/// Moves the primary of `keyspace/shard` (see the module docs).
pub async fn planned_reparent(
    topology: &Topology,
    keyspace: &str,
    shard: &str,
    options: &ReparentOptions,
) -> Result<ReparentReport, ReparentError> {
    let started = Instant::now();
    let lock = topology
        .lock_shard(
            keyspace,
            shard,
            Duration::from_secs(60),
            options.lock_timeout,
        )
        .await?;
    let result = reparent_locked(topology, keyspace, shard, options, started).await;
    lock.unlock().await;
    result
}

async fn reparent_locked(
    topology: &Topology,
    keyspace: &str,
    shard: &str,
    options: &ReparentOptions,
    started: Instant,
) -> Result<ReparentReport, ReparentError> {
    let (record, _) = topology
        .shard(keyspace, shard)
        .await?
        .ok_or_else(|| ReparentError::NoShard(keyspace.into(), shard.into()))?;
    let old_alias = record
        .primary_alias
        .clone()
        .ok_or_else(|| ReparentError::NoPrimary(keyspace.into(), shard.into()))?;
    let tablets = topology.shard_tablets(keyspace, shard).await?;
    let old = tablets
        .iter()
        .find(|t| t.alias == old_alias)
        .ok_or_else(|| ReparentError::PrimaryGone(old_alias.clone()))?;
    let new = candidate(&tablets, old, options.to.as_deref())?;
    let term = record.term + 1;
    info!(%keyspace, %shard, from = %old.alias, to = %new.alias, term, "planned reparent");

    // From here the app sidecars hold the shard's statements.
    let paused = Instant::now();
    mark_reparenting(topology, keyspace, shard, true).await?;
    let promoted = async {
        let demoted = options.act(old, "demote").await?;
        let position = demoted["binlog_position"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let wait = format!(
            "wait_position?position={}&timeout_ms={}",
            position.replace(',', "%2C"),
            options.wait_timeout.as_millis()
        );
        options.act_waiting(new, &wait).await?;
        options.act(new, &format!("promote?term={term}")).await?;
        Ok::<_, ReparentError>(position)
    }
    .await;
    let position = match promoted {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "reparent failed before the promotion; putting the old primary back");
            let back = options
                .act(old, &format!("promote?term={}", record.term))
                .await;
            if let Err(undo) = &back {
                warn!(error = %undo, "could not make the old primary writable again");
            }
            mark_reparenting(topology, keyspace, shard, false).await?;
            return Err(ReparentError::RolledBack(Box::new(e)));
        }
    };
    let published = topology
        .update_shard(keyspace, shard, |s| {
            s.primary_alias = Some(new.alias.clone());
            s.term = term;
            s.reparenting = false;
            Ok(())
        })
        .await?;
    let write_pause = paused.elapsed();
    info!(%keyspace, %shard, primary = %new.alias, term = published.term, pause_ms = write_pause.as_millis() as u64, "new primary published");

    let not_repointed = options
        .repoint(tablets.iter().filter(|t| t.alias != new.alias), new)
        .await;
    Ok(ReparentReport {
        keyspace: keyspace.to_string(),
        shard: shard.to_string(),
        old_primary: old.alias.clone(),
        new_primary: new.alias.clone(),
        term: published.term,
        position,
        write_pause_ms: write_pause.as_millis() as u64,
        total_ms: started.elapsed().as_millis() as u64,
        not_repointed,
    })
}

/// A GTID position (`domain-server-seq,...`) as the highest sequence per domain.
fn gtid_seqs(position: &str) -> std::collections::BTreeMap<u32, u64> {
    let mut out = std::collections::BTreeMap::new();
    for gtid in position.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let mut parts = gtid.split('-');
        let (Some(d), Some(_), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(d), Ok(n)) = (d.parse::<u32>(), n.parse::<u64>()) {
            let e = out.entry(d).or_insert(0);
            *e = (*e).max(n);
        }
    }
    out
}

/// Whether position `a` contains everything `b` does (every domain at least as far).
fn covers(a: &str, b: &str) -> bool {
    let (a, b) = (gtid_seqs(a), gtid_seqs(b));
    b.iter().all(|(d, n)| a.get(d).is_some_and(|m| m >= n))
}

/// What an emergency reparent did.
#[derive(Debug, Clone, Serialize)]
pub struct EmergencyReport {
    pub keyspace: String,
    pub shard: String,
    pub old_primary: String,
    pub new_primary: String,
    pub term: u64,
    /// The new primary's position when promoted.
    pub position: String,
    /// From taking the lock to the new primary being published.
    pub promotion_ms: u64,
    pub not_repointed: Vec<String>,
}

/// Sets or clears the shard record's `reparenting` flag (tablets leave their identity alone
/// while it is set).
async fn mark_reparenting(
    topology: &Topology,
    keyspace: &str,
    shard: &str,
    reparenting: bool,
) -> Result<(), TopoError> {
    topology
        .update_shard(keyspace, shard, |s| {
            s.reparenting = reparenting;
            Ok(())
        })
        .await
        .map(drop)
}

/// Replaces the dead primary of `keyspace/shard` (see the module docs). Refuses when the
/// shard's primary is no longer `dead_alias` (someone else already moved it).
pub async fn emergency_reparent(
    topology: &Topology,
    keyspace: &str,
    shard: &str,
    dead_alias: &str,
    options: &ReparentOptions,
) -> Result<EmergencyReport, ReparentError> {
    let started = Instant::now();
    let lock = topology
        .lock_shard(
            keyspace,
            shard,
            Duration::from_secs(60),
            options.lock_timeout,
        )
        .await?;
    let result = emergency_locked(topology, keyspace, shard, dead_alias, options, started).await;
    lock.unlock().await;
    result
}

async fn emergency_locked(
    topology: &Topology,
    keyspace: &str,
    shard: &str,
    dead_alias: &str,
    options: &ReparentOptions,
    started: Instant,
) -> Result<EmergencyReport, ReparentError> {
    let (record, _) = topology
        .shard(keyspace, shard)
        .await?
        .ok_or_else(|| ReparentError::NoShard(keyspace.into(), shard.into()))?;
    if record.primary_alias.as_deref() != Some(dead_alias) {
        return Err(ReparentError::NoCandidate(format!(
            "the primary is no longer {dead_alias} (now {:?}); nothing to do",
            record.primary_alias
        )));
    }
    let tablets = topology.shard_tablets(keyspace, shard).await?;
    let old_cell = tablets
        .iter()
        .find(|t| t.alias == dead_alias)
        .map(|t| t.cell.clone())
        .or_else(|| dead_alias.rsplit_once('-').map(|(c, _)| c.to_string()))
        .unwrap_or_default();
    mark_reparenting(topology, keyspace, shard, true).await?;
    // A primary that re-registered as serving before the shard was marked may have made
    // itself writable again (it does so only while the shard is not being reparented):
    // then it is alive, and promoting another would make two writable primaries.
    let back = topology
        .shard_tablets(keyspace, shard)
        .await?
        .into_iter()
        .any(|t| t.alias == dead_alias && t.health.serving);
    if back {
        mark_reparenting(topology, keyspace, shard, false).await?;
        return Err(ReparentError::NoCandidate(format!(
            "the primary {dead_alias} is serving again; nothing to do"
        )));
    }
    // Every reachable replica applies what it received from the dead primary.
    let mut stopped = Vec::new();
    for t in tablets.iter().filter(|t| {
        t.alias != dead_alias
            && t.tablet_type == TabletType::Replica
            && t.health.serving
            && t.mysqld_port != 0
    }) {
        let path = format!(
            "stop_replication?timeout_ms={}",
            options.wait_timeout.as_millis()
        );
        match options.act_waiting(t, &path).await {
            Ok(status) => {
                let position = status["position"].as_str().unwrap_or("").to_string();
                stopped.push((t, position));
            }
            Err(e) => {
                warn!(tablet = %t.alias, error = %e, "replica unusable for the emergency reparent")
            }
        }
    }
    // The most advanced: one whose position covers every other's; among equals the old
    // primary's cell, then the lowest alias.
    let best = stopped
        .iter()
        .filter(|(_, p)| stopped.iter().all(|(_, q)| covers(p, q)))
        .min_by_key(|(t, _)| (t.cell != old_cell, t.alias.clone()))
        .map(|(t, p)| ((*t).clone(), p.clone()));
    let Some((new, position)) = best else {
        mark_reparenting(topology, keyspace, shard, false).await?;
        return Err(ReparentError::NoCandidate(
            "no reachable replica holds every other replica's transactions".to_string(),
        ));
    };
    let term = record.term + 1;
    if let Err(e) = options.act(&new, &format!("promote?term={term}")).await {
        mark_reparenting(topology, keyspace, shard, false).await?;
        return Err(e);
    }
    let published = topology
        .update_shard(keyspace, shard, |s| {
            s.primary_alias = Some(new.alias.clone());
            s.term = term;
            s.reparenting = false;
            Ok(())
        })
        .await?;
    let promotion = started.elapsed();
    info!(%keyspace, %shard, dead = %dead_alias, primary = %new.alias, term = published.term, promotion_ms = promotion.as_millis() as u64, "emergency reparent: new primary published");
    // The dead primary's sidecar may still answer (mysqld died, the sidecar lives):
    // fence it now; otherwise it fences itself from the term when it comes back.
    if let Some(dead) = tablets.iter().find(|t| t.alias == dead_alias) {
        let _ = options.act(dead, "demote").await;
    }
    let not_repointed = options
        .repoint(
            tablets
                .iter()
                .filter(|t| t.alias != new.alias && t.alias != dead_alias),
            &new,
        )
        .await;
    Ok(EmergencyReport {
        keyspace: keyspace.to_string(),
        shard: shard.to_string(),
        old_primary: dead_alias.to_string(),
        new_primary: new.alias.clone(),
        term: published.term,
        position,
        promotion_ms: promotion.as_millis() as u64,
        not_repointed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcar_topo::TabletHealth;

    #[test]
    fn gtid_positions_compare_per_domain() {
        assert!(covers("0-101-50", "0-100-49"));
        assert!(covers("0-101-50", "0-101-50"));
        assert!(!covers("0-101-49", "0-100-50"));
        assert!(covers("0-1-5,1-2-7", "1-2-7"));
        assert!(!covers("0-1-5", "0-1-5,1-2-7"));
        assert!(covers("0-1-5", ""));
    }

    fn tablet(alias: &str, cell: &str, kind: TabletType, lag: u64, ok: bool) -> TabletRecord {
        TabletRecord {
            alias: alias.to_string(),
            cell: cell.to_string(),
            tablet_type: kind,
            mysqld_port: 3306,
            health: TabletHealth {
                serving: ok,
                replicating: ok,
                heartbeat_lag_ms: Some(lag),
                ..TabletHealth::default()
            },
            ..TabletRecord::default()
        }
    }

    #[test]
    fn the_candidate_is_a_healthy_replica_near_the_primary() {
        let tablets = vec![
            tablet("p", "zone1", TabletType::Primary, 0, true),
            tablet("far", "zone2", TabletType::Replica, 0, true),
            tablet("near", "zone1", TabletType::Replica, 500, true),
            tablet("broken", "zone1", TabletType::Replica, 0, false),
            tablet("spare", "zone1", TabletType::Spare, 0, true),
        ];
        let p = &tablets[0];
        assert_eq!(candidate(&tablets, p, None).unwrap().alias, "near");
        assert_eq!(candidate(&tablets, p, Some("far")).unwrap().alias, "far");
        assert!(candidate(&tablets, p, Some("broken")).is_err());
        assert!(candidate(&tablets, p, Some("p")).is_err());
        assert!(candidate(&tablets, p, Some("nobody")).is_err());
        assert!(candidate(&tablets[..1], p, None).is_err());
    }
}
