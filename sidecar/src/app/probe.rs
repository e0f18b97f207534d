//! The db role's health probe: one connection of its own pings mysqld every second, so
//! that `/ready` turns 503 (and `shardcar_upstream_up` 0) while mysqld does not answer and
//! traffic moves elsewhere, then recovers by itself.

use std::sync::Arc;
use std::time::Duration;

use shardcar_filter::protocol::Command;
use tokio::sync::watch;
use tracing::{info, warn};

use super::pooled::backend;
use super::upstream::{LoginParams, Upstream};
use super::Shared;
use crate::admin::Health;

/// Time between probes.
const INTERVAL: Duration = Duration::from_secs(1);
/// A probe that takes longer counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes mysqld until `shutdown`, keeping `health` and the gauge in step.
pub(super) async fn watch(
    shared: Arc<Shared>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<Upstream> = None;
    let mut up = true;
    shared.metrics.upstream_up(true);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.changed() => break,
        }
        let ok = match tokio::time::timeout(PROBE_TIMEOUT, probe(&shared, &mut conn)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                if up {
                    warn!(error = %e, "mysqld does not answer the health probe; not ready");
                }
                conn = None;
                false
            }
            Err(_) => {
                if up {
                    warn!("the mysqld health probe timed out; not ready");
                }
                conn = None;
                false
            }
        };
        if ok != up {
            if ok {
                info!("mysqld answers the health probe again; ready");
            }
            up = ok;
            health.set_upstream_down(!ok);
            shared.metrics.upstream_up(ok);
        }
    }
    if let Some(c) = conn {
        c.quit().await;
    }
}

/// One COM_PING, on the kept connection or a new one.
async fn probe(shared: &Shared, conn: &mut Option<Upstream>) -> anyhow::Result<()> {
    if conn.is_none() {
        *conn = Some(Upstream::connect(&shared.upstream, LoginParams::default()).await?);
    }
    let Some(c) = conn.as_mut() else {
        anyhow::bail!("no probe connection");
    };
    let caps = c.session.capabilities;
    backend(c, &[Command::Ping as u8], caps)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}
