//! Hot reload of the db role's protection policy: the configuration file is checked for
//! changes and its `db.limits`, `db.builtin_rules` and `db.rules` replace the running
//! policy without touching connections. A file that fails to load or validate leaves
//! the running policy in place (and says why in the log).

use super::pooled::{Guard, Policy};
use crate::config::AppConfig;
use crate::metrics::Metrics;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tracing::{info, warn};

fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Polls `path` every `interval` until `shutdown`.
pub async fn watch(
    path: PathBuf,
    guard: Arc<Guard>,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen = modified(&path);
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match load(&path) {
            Ok(policy) => {
                let rules = policy.rules.names().count();
                guard.set_policy(policy);
                metrics.guard.reloaded(true);
                info!(path = %path.display(), rules, "protection policy reloaded");
            }
            Err(e) => {
                metrics.guard.reloaded(false);
                warn!(path = %path.display(), error = %e, "configuration change not applied; keeping the running policy");
            }
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Policy> {
    let config = AppConfig::load(Some(path))?;
    Ok(Policy::from_config(&config.db)?)
}
