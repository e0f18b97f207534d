//! The db role's health probe and tablet registration. A connection of its own checks
//! mysqld every interval (1 s by default): a ping, and with a `topology` section also the
//! read-only flag, the GTID position and replication state. `/ready` turns 503 (and
//! `shardcar_upstream_up` 0) while mysqld does not answer, then recovers by itself; with
//! a topology the tablet's record is registered under a lease and rewritten with each
//! measurement, and revoked at shutdown so the tablet leaves the topology at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shardcar_filter::plan::merge::Row;
use shardcar_filter::protocol::packet::write_packet;
use shardcar_filter::protocol::Command;
use shardcar_topo::{EtcdStore, Layout, Lease, TabletHealth, TabletRecord, Topology};
use tokio::sync::watch;
use tracing::{info, warn};

use super::pooled::backend;
use super::router::{read_result, ShardResult};
use super::tablet::Tablet;
use super::upstream::{self, LoginParams, Upstream};
use super::Shared;
use crate::admin::Health;

/// Time between probes without a topology section.
const INTERVAL: Duration = Duration::from_secs(1);
/// A probe that takes longer counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The heartbeat a writable tablet refreshes at every measurement and its replicas read
/// back (as Vitess's heartbeat table): replication lag below a second.
const HEARTBEAT_SETUP: &str = "CREATE DATABASE IF NOT EXISTS `_shardcar`";
const HEARTBEAT_TABLE: &str = "CREATE TABLE IF NOT EXISTS `_shardcar`.heartbeat \
     (id INT PRIMARY KEY, ts_us BIGINT NOT NULL) ENGINE=InnoDB";
const HEARTBEAT_READ: &str = "SELECT ts_us FROM `_shardcar`.heartbeat WHERE id = 1";

/// Probes mysqld until `shutdown`, keeping `health`, the gauge and the tablet record in
/// step. `addrs` are the bound MySQL and admin addresses, for the tablet record.
pub(super) async fn watch(
    shared: Arc<Shared>,
    health: Arc<Health>,
    addrs: (SocketAddr, SocketAddr),
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<Upstream> = None;
    let mut up = true;
    shared.metrics.upstream_up(true);
    let mut tablet = shared
        .tablet
        .clone()
        .map(|t| Registration::new(t, shared.topology.clone(), addrs));
    // Stopped before the tablet leaves the topology (a revoked lease is no reason to fence).
    let guard = shared.tablet.clone().map(|t| tokio::spawn(t.guard()));
    let interval = shared
        .config
        .topology
        .as_ref()
        .map_or(INTERVAL, |t| Duration::from_millis(t.health_interval_ms));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => break,
        }
        let detailed = tablet.is_some();
        let measured =
            tokio::time::timeout(PROBE_TIMEOUT, probe(&shared, &mut conn, detailed)).await;
        let state = match measured {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                if up {
                    warn!(error = %e, "mysqld does not answer the health probe; not ready");
                }
                conn = None;
                TabletHealth {
                    error: Some(e.to_string()),
                    ..TabletHealth::default()
                }
            }
            Err(_) => {
                if up {
                    warn!("the mysqld health probe timed out; not ready");
                }
                conn = None;
                TabletHealth {
                    error: Some("health probe timed out".to_string()),
                    ..TabletHealth::default()
                }
            }
        };
        if state.serving != up {
            if state.serving {
                info!("mysqld answers the health probe again; ready");
            }
            up = state.serving;
            health.set_upstream_down(!up);
            shared.metrics.upstream_up(up);
        }
        if let Some(t) = tablet.as_mut() {
            t.publish(state).await;
        }
    }
    if let Some(g) = guard {
        g.abort();
    }
    if let Some(t) = tablet {
        t.leave().await;
    }
    if let Some(c) = conn {
        c.quit().await;
    }
}

/// One measurement, on the kept connection or a new one: a ping, and with `detailed`
/// the read-only flag, GTID position and replication state.
async fn probe(
    shared: &Shared,
    conn: &mut Option<Upstream>,
    detailed: bool,
) -> anyhow::Result<TabletHealth> {
    if conn.is_none() {
        *conn = Some(Upstream::connect(&shared.upstream, LoginParams::default()).await?);
    }
    let Some(c) = conn.as_mut() else {
        anyhow::bail!("no probe connection");
    };
    let caps = c.session.capabilities;
    backend(c, &[Command::Ping as u8], caps)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut health = TabletHealth {
        serving: true,
        ..TabletHealth::default()
    };
    if !detailed {
        return Ok(health);
    }
    let mariadb = c.session.server_version.contains("MariaDB");
    let position = if mariadb {
        "SELECT @@global.gtid_current_pos, @@global.read_only, \
         @@global.rpl_semi_sync_master_enabled, @@global.rpl_semi_sync_slave_enabled"
    } else {
        "SELECT @@global.gtid_executed, @@global.read_only, \
         @@global.rpl_semi_sync_source_enabled, @@global.rpl_semi_sync_replica_enabled"
    };
    let (_, rows) = query(c, position).await?;
    let cell = |row: &Row, i: usize| -> String {
        row.get(i)
            .and_then(|v| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    if let Some(row) = rows.first() {
        health.gtid_position = cell(row, 0);
        health.read_only = cell(row, 1) == "1";
        health.semi_sync_primary = cell(row, 2) == "1";
        health.semi_sync_replica = cell(row, 3) == "1";
    }
    let status = if mariadb {
        "SHOW ALL SLAVES STATUS"
    } else {
        "SHOW REPLICA STATUS"
    };
    let (names, rows) = query(c, status).await?;
    if let Some(row) = rows.first() {
        let column = |wanted: &[&str]| -> String {
            names
                .iter()
                .position(|n| wanted.contains(&n.as_str()))
                .map(|i| cell(row, i))
                .unwrap_or_default()
        };
        let io = column(&["Slave_IO_Running", "Replica_IO_Running"]);
        let sql = column(&["Slave_SQL_Running", "Replica_SQL_Running"]);
        health.replicating = io == "Yes" && sql == "Yes";
        health.replication_error = [column(&["Last_IO_Errno"]), column(&["Last_SQL_Errno"])]
            .iter()
            .filter_map(|n| n.parse::<u32>().ok())
            .find(|&n| n != 0);
        health.replication_lag_seconds =
            column(&["Seconds_Behind_Master", "Seconds_Behind_Source"])
                .parse::<u64>()
                .ok();
    }
    // Heartbeat failures (no privilege on _shardcar, say) only lose the sub-second lag.
    if let Err(e) = heartbeat(c, &mut health).await {
        tracing::debug!(error = %e, "heartbeat failed");
    }
    if !health.read_only {
        // The heartbeat just wrote a transaction: report the position that includes it,
        // or replicas would always look one ahead of their primary.
        let (_, rows) = query(c, position).await?;
        if let Some(row) = rows.first() {
            health.gtid_position = cell(row, 0);
        }
    }
    Ok(health)
}

/// Microseconds since the Unix epoch.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A writable tablet writes the heartbeat; a replica measures how old its copy is.
async fn heartbeat(c: &mut Upstream, health: &mut TabletHealth) -> anyhow::Result<()> {
    if !health.read_only {
        let write = || {
            format!(
                "REPLACE INTO `_shardcar`.heartbeat (id, ts_us) VALUES (1, {})",
                now_us()
            )
        };
        // Create the table only when it is missing: DDL at every beat would fill the
        // binary log.
        if query(c, &write()).await.is_err() {
            query(c, HEARTBEAT_SETUP).await?;
            query(c, HEARTBEAT_TABLE).await?;
            query(c, &write()).await?;
        }
        return Ok(());
    }
    let (_, rows) = query(c, HEARTBEAT_READ).await?;
    let written = rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok());
    health.heartbeat_lag_ms =
        written.map(|ts| u64::try_from((now_us() - ts).max(0) / 1000).unwrap_or(0));
    Ok(())
}

/// Runs a statement on the probe connection; its column names and rows.
pub(super) async fn query(c: &mut Upstream, sql: &str) -> anyhow::Result<(Vec<String>, Vec<Row>)> {
    query_rows(c, sql, 64).await
}

/// [`query`] for results of up to `max_rows` rows.
pub(super) async fn query_rows(
    c: &mut Upstream,
    sql: &str,
    max_rows: usize,
) -> anyhow::Result<(Vec<String>, Vec<Row>)> {
    let mut payload = vec![Command::Query as u8];
    payload.extend_from_slice(sql.as_bytes());
    let mut out = Vec::new();
    let mut seq = 0;
    write_packet(&mut out, &mut seq, &payload);
    upstream::write_flush(&mut c.stream, &out).await?;
    let caps = c.session.capabilities;
    match read_result(c, caps, max_rows).await? {
        ShardResult::Rows { columns, rows, .. } => Ok((
            columns
                .iter()
                .map(|c| String::from_utf8_lossy(&c.name).into_owned())
                .collect(),
            rows,
        )),
        ShardResult::Ok(_) => Ok((Vec::new(), Vec::new())),
        ShardResult::Err(e) => anyhow::bail!("{sql}: {}", e.message),
    }
}

/// Whether the server on `stream` starts a MySQL greeting: protocol version 10, or an
/// error packet (too many connections, host blocked) — alive either way.
pub(crate) async fn sends_greeting<S: tokio::io::AsyncRead + Unpin>(mut stream: S) -> bool {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).await.is_ok() && (header[4] == 10 || header[4] == 0xff)
}

/// The tablet's record in the topology and the lease it lives under.
struct Registration {
    tablet: Arc<Tablet>,
    record: TabletRecord,
    topology: Option<Topology>,
    lease: Option<Lease>,
}

impl Registration {
    fn new(
        tablet: Arc<Tablet>,
        topology: Option<Topology>,
        (addr, admin): (SocketAddr, SocketAddr),
    ) -> Self {
        let config = &tablet.config;
        let (mysqld_host, mysqld_port) = tablet.mysqld_address().unwrap_or_default();
        let record = TabletRecord {
            alias: TabletRecord::alias_of(&config.cell, config.uid),
            cell: config.cell.clone(),
            keyspace: config.keyspace.clone(),
            shard: config.shard.clone(),
            tablet_type: config.tablet_type,
            hostname: config
                .hostname
                .clone()
                .unwrap_or_else(|| addr.ip().to_string()),
            mysql_port: addr.port(),
            admin_port: admin.port(),
            mysqld_host,
            mysqld_port,
            ..TabletRecord::default()
        };
        Registration {
            tablet,
            record,
            topology,
            lease: None,
        }
    }

    /// Writes the record with `health`, connecting and registering first when needed.
    /// Failures are logged and retried at the next measurement: serving never depends on
    /// the topology being reachable.
    async fn publish(&mut self, health: TabletHealth) {
        self.record.health = health;
        let config = &self.tablet.config;
        if self.topology.is_none() {
            match EtcdStore::connect(&config.etcd_endpoints).await {
                Ok(store) => {
                    self.topology = Some(Topology::new(Arc::new(store), Layout::new(&config.root)));
                }
                Err(e) => {
                    warn!(error = %e, "cannot reach the topology; retrying");
                    return;
                }
            }
        }
        let Some(topology) = &self.topology else {
            return;
        };
        if let Err(e) = self.tablet.reconcile(topology, &self.record.health).await {
            warn!(tablet = %self.record.alias, error = %e, "reading the shard record failed");
        }
        let identity = self.tablet.identity();
        self.record.tablet_type = identity.tablet_type;
        self.record.primary_term = identity.primary_term;
        if self.lease.as_ref().is_some_and(Lease::lost) {
            warn!(tablet = %self.record.alias, "the tablet's topology lease was lost; registering again");
            self.lease = None;
        }
        let result = match &self.lease {
            Some(lease) => topology.update_tablet(lease, &self.record).await,
            None => {
                let ttl = Duration::from_millis(config.lease_ttl_ms);
                match topology.register_tablet(&self.record, ttl).await {
                    Ok(lease) => {
                        info!(tablet = %self.record.alias, keyspace = %self.record.keyspace, shard = %self.record.shard, "tablet registered in the topology");
                        self.tablet.set_lease(lease.good_until_watch());
                        self.lease = Some(lease);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            warn!(tablet = %self.record.alias, error = %e, "publishing the tablet's health failed");
        }
    }

    /// Takes the tablet out of the topology (revokes its lease).
    async fn leave(self) {
        if let Some(lease) = self.lease {
            lease.revoke().await;
            info!(tablet = %self.record.alias, "tablet left the topology");
        }
    }
}
