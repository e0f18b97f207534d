//! The db role's tablet: its identity in the topology (type and primary term), the
//! actions a reparent drives through the admin API, and fencing.
//!
//! Actions (`POST /debug/tablet/<action>`, answered with JSON when done):
//! - `demote`: `read_only=1`, then the GTID position of everything this primary wrote;
//! - `wait_position?position=P&timeout_ms=N`: until this replica has applied `P`;
//! - `promote?term=N`: replication stopped and forgotten, `read_only=0`, primary of term N;
//! - `replicate?host=H&port=P`: replicate from `H:P` with `MASTER_USE_GTID=slave_pos`
//!   (starting from this server's own GTID position), `read_only=1`;
//! - `stop_replication?timeout_ms=N`: for an emergency reparent — stop receiving from the
//!   (dead) primary, then apply everything already received (the relay log);
//! - `rebuild?host=H&port=P`: replace this server's data with a copy of `H:P` and
//!   replicate from it, discarding errant transactions ([`super::rebuild`]).
//!
//! `GET /debug/tablet` shows the identity and mysqld's state.
//!
//! Fencing keeps a shard to one writable primary:
//! - with every health measurement, a tablet that believes it is the primary but finds
//!   another primary in a term at least its own in the shard record turns mysqld
//!   read-only, so a primary that was cut off and replaced never takes writes again;
//! - a guard task turns a primary read-only when its lease may expire within a quarter
//!   of its TTL (no renewal got through) and none of its shard's other tablets answers
//!   either: it is cut off, and the orchestrator may promote a replica once the lease
//!   is gone. A primary that still reaches its replicas keeps serving through an etcd
//!   outage (nobody can promote without etcd, and the replicas still follow it);
//! - mysqld should start read-only (`read_only=ON`); the tablet makes it writable only
//!   when the topology names it the primary of its term, no reparent is under way and
//!   its lease is good.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use shardcar_topo::{ShardRecord, TabletHealth, TabletRecord, TabletType, TopoError, Topology};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::probe::query;
use super::upstream::{LoginParams, Upstream, UpstreamSettings};
use crate::admin::{DebugReply, DebugRequest};
use crate::config::TopologyConfig;
use crate::metrics::Metrics;

/// The longest `wait_position` may be asked to wait.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// How often the cut-off guard looks at the lease.
const GUARD_INTERVAL: Duration = Duration::from_millis(250);
/// How long the guard waits for a peer's mysqld greeting.
const PEER_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The lease of the tablet's record as the guard sees it: `None` before the first
/// registration; inside, the lease's [`shardcar_topo::Lease::good_until`] (itself `None`
/// for a store whose leases never expire).
type LeaseView = Option<watch::Receiver<Option<Instant>>>;

/// What the tablet is in the topology's eyes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub tablet_type: TabletType,
    /// The term this tablet was promoted in (0 unless it is or was a primary).
    pub primary_term: u64,
}

/// One tablet: its identity and the means to act on its mysqld.
#[derive(Debug)]
pub struct Tablet {
    pub config: TopologyConfig,
    pub alias: String,
    identity: Mutex<Identity>,
    /// mysqld as the dba account.
    dba: Arc<UpstreamSettings>,
    replication_password: Vec<u8>,
    metrics: Arc<Metrics>,
    /// One action at a time.
    busy: tokio::sync::Mutex<()>,
    lease: Mutex<LeaseView>,
    /// mysqld addresses of the shard's other tablets, as last read from the topology.
    peers: Mutex<Vec<(String, u16)>>,
    /// The guard made this primary read-only; cleared when it is made writable again.
    cut_off: AtomicBool,
}

/// An action failed: a message for the operator, and whether the state forbade it (409)
/// rather than the request being malformed (400).
#[derive(Debug)]
enum ActionError {
    Bad(String),
    Failed(String),
}

impl From<anyhow::Error> for ActionError {
    fn from(e: anyhow::Error) -> Self {
        ActionError::Failed(e.to_string())
    }
}

impl Tablet {
    pub fn new(
        config: &TopologyConfig,
        upstream: &Arc<UpstreamSettings>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Tablet>> {
        let dba = match &config.dba_user {
            None => upstream.clone(),
            Some(user) => Arc::new(UpstreamSettings {
                user: user.clone(),
                password: config.dba_password()?.unwrap_or_default(),
                database: None,
                ..(**upstream).clone()
            }),
        };
        Ok(Arc::new(Tablet {
            alias: shardcar_topo::TabletRecord::alias_of(&config.cell, config.uid),
            identity: Mutex::new(Identity {
                tablet_type: config.tablet_type,
                primary_term: 0,
            }),
            dba,
            replication_password: config.replication_password()?,
            metrics,
            busy: tokio::sync::Mutex::new(()),
            lease: Mutex::new(None),
            peers: Mutex::new(Vec::new()),
            cut_off: AtomicBool::new(false),
            config: config.clone(),
        }))
    }

    /// The tablet's record now lives under this lease (its `good_until` watch).
    pub fn set_lease(&self, good_until: watch::Receiver<Option<Instant>>) {
        *lock(&self.lease) = Some(good_until);
    }

    /// A quarter of the lease TTL: the guard acts this long before the lease can expire.
    fn lease_margin(&self) -> Duration {
        Duration::from_millis(self.config.lease_ttl_ms / 4)
    }

    /// The lease's expiry as the guard knows it: `None` before the first registration,
    /// `Some(None)` for a store whose leases never expire.
    fn lease_expiry(&self) -> Option<Option<Instant>> {
        lock(&self.lease).as_ref().map(|until| *until.borrow())
    }

    /// Whether the lease is certain to outlive the margin (or never expires).
    fn lease_good(&self) -> bool {
        let deadline = Instant::now() + self.lease_margin();
        self.lease_expiry()
            .is_some_and(|until| until.is_none_or(|u| u > deadline))
    }

    /// Whether the lease may expire within the margin.
    fn lease_ending(&self) -> bool {
        let deadline = Instant::now() + self.lease_margin();
        self.lease_expiry()
            .is_some_and(|until| until.is_some_and(|u| u <= deadline))
    }

    /// Runs for the process's life: turns a cut-off primary read-only (module docs).
    pub async fn guard(self: Arc<Self>) {
        let mut warned_outage = false;
        loop {
            tokio::time::sleep(GUARD_INTERVAL).await;
            if self.identity().tablet_type != TabletType::Primary
                || self.cut_off.load(Ordering::Relaxed)
                || !self.lease_ending()
            {
                warned_outage = false;
                continue;
            }
            let peers = lock(&self.peers).clone();
            if peers.is_empty() || self.any_peer_answers(&peers).await {
                if !warned_outage {
                    warn!(tablet = %self.alias, "the topology lease is about to expire, but the shard's replicas answer: staying writable");
                    warned_outage = true;
                }
                continue;
            }
            warn!(tablet = %self.alias, "cut off from the topology and from every replica before the lease expires; fencing: mysqld turns read-only");
            match self.fence().await {
                Ok(()) => {
                    self.cut_off.store(true, Ordering::Relaxed);
                    self.metrics.failover.fenced("cut_off");
                }
                Err(e) => warn!(tablet = %self.alias, error = ?e, "fencing failed; retrying"),
            }
        }
    }

    async fn any_peer_answers(&self, peers: &[(String, u16)]) -> bool {
        let mut probes = tokio::task::JoinSet::new();
        for (host, port) in peers.iter().cloned() {
            probes.spawn(async move { greets(&host, port).await });
        }
        while let Some(answer) = probes.join_next().await {
            if matches!(answer, Ok(true)) {
                return true;
            }
        }
        false
    }

    pub fn identity(&self) -> Identity {
        *lock(&self.identity)
    }

    fn set_identity(&self, identity: Identity) {
        *lock(&self.identity) = identity;
    }

    /// `/debug/tablet` and its actions.
    pub fn debug_page(self: &Arc<Self>, request: &DebugRequest<'_>) -> Option<DebugReply> {
        let action = match request.name {
            "tablet" if !request.post => "status",
            "tablet" => return Some(DebugReply::WrongMethod),
            name => name.strip_prefix("tablet/")?,
        };
        if action != "status" && !request.post {
            return Some(DebugReply::WrongMethod);
        }
        let params = Params::of(request);
        let tablet = self.clone();
        let action = action.to_string();
        Some(DebugReply::Later(Box::pin(async move {
            let result = tablet.act(&action, &params).await;
            if action != "status" {
                tablet
                    .metrics
                    .failover
                    .tablet_action(&action, result.is_ok());
            }
            match result {
                Ok(json) => DebugReply::Json(json.to_string()),
                Err(ActionError::Bad(m)) => DebugReply::BadRequest(m),
                Err(ActionError::Failed(m)) => {
                    warn!(tablet = %tablet.alias, %action, error = %m, "tablet action failed");
                    DebugReply::Conflict(m)
                }
            }
        })))
    }

    async fn act(&self, action: &str, p: &Params) -> Result<serde_json::Value, ActionError> {
        let _one = self.busy.lock().await;
        let mut c = self.connect().await?;
        let result = match action {
            "status" => self.status(&mut c).await,
            "demote" => self.demote(&mut c).await,
            "wait_position" => {
                let position = p.position()?;
                let timeout =
                    Duration::from_millis(p.number("timeout_ms")?.unwrap_or(30_000)).min(MAX_WAIT);
                wait_position(&mut c, &position, timeout).await?;
                self.status(&mut c).await
            }
            "promote" => {
                let term = p
                    .number("term")?
                    .ok_or_else(|| ActionError::Bad("term=N is required".into()))?;
                self.promote(&mut c, term).await
            }
            "replicate" => self.replicate(&mut c, &p.host()?, p.port()?).await,
            "rebuild" => self.rebuild(&mut c, &p.host()?, p.port()?).await,
            "stop_replication" => {
                let timeout =
                    Duration::from_millis(p.number("timeout_ms")?.unwrap_or(10_000)).min(MAX_WAIT);
                self.stop_replication(&mut c, timeout).await
            }
            other => Err(ActionError::Bad(format!("unknown tablet action {other}"))),
        };
        c.quit().await;
        result
    }

    async fn connect(&self) -> Result<Upstream, ActionError> {
        Upstream::connect(&self.dba, LoginParams::default())
            .await
            .map_err(|e| ActionError::Failed(format!("cannot reach mysqld: {e}")))
    }

    async fn status(&self, c: &mut Upstream) -> Result<serde_json::Value, ActionError> {
        let (_, rows) = query(
            c,
            "SELECT @@global.read_only, @@global.gtid_binlog_pos, @@global.gtid_current_pos, @@global.gtid_slave_pos",
        )
        .await?;
        let cell = |i: usize| -> String {
            rows.first()
                .and_then(|r| r.get(i))
                .and_then(|v| v.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let id = self.identity();
        Ok(serde_json::json!({
            "alias": self.alias,
            "keyspace": self.config.keyspace,
            "shard": self.config.shard,
            "tablet_type": id.tablet_type,
            "primary_term": id.primary_term,
            "read_only": cell(0) == "1",
            "binlog_position": cell(1),
            "position": cell(2),
            "slave_position": cell(3),
        }))
    }

    /// Stops writes and reports everything this primary wrote.
    async fn demote(&self, c: &mut Upstream) -> Result<serde_json::Value, ActionError> {
        query(c, "SET GLOBAL read_only = 1").await?;
        let id = self.identity();
        self.set_identity(Identity {
            tablet_type: TabletType::Spare,
            ..id
        });
        info!(tablet = %self.alias, "demoted: mysqld is read-only");
        self.status(c).await
    }

    async fn promote(&self, c: &mut Upstream, term: u64) -> Result<serde_json::Value, ActionError> {
        query(c, "STOP ALL SLAVES").await?;
        query(c, "RESET SLAVE ALL").await?;
        query(c, "SET GLOBAL read_only = 0").await?;
        self.set_identity(Identity {
            tablet_type: TabletType::Primary,
            primary_term: term,
        });
        info!(tablet = %self.alias, term, "promoted: mysqld is writable");
        self.status(c).await
    }

    async fn replicate(
        &self,
        c: &mut Upstream,
        host: &str,
        port: u16,
    ) -> Result<serde_json::Value, ActionError> {
        query(c, "SET GLOBAL read_only = 1").await?;
        query(c, "STOP ALL SLAVES").await?;
        // Start from what this server has (its own writes as an old primary included),
        // so nothing is applied twice.
        query(c, "SET GLOBAL gtid_slave_pos = @@global.gtid_current_pos").await?;
        query(c, &self.change_master(host, port)).await?;
        query(c, "START SLAVE").await?;
        let id = self.identity();
        self.set_identity(Identity {
            tablet_type: TabletType::Replica,
            ..id
        });
        info!(tablet = %self.alias, %host, port, "replicating");
        self.status(c).await
    }

    /// `CHANGE MASTER TO` `host:port` with GTID positions from `gtid_slave_pos`.
    fn change_master(&self, host: &str, port: u16) -> String {
        let password = String::from_utf8_lossy(&self.replication_password);
        format!(
            "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {port}, MASTER_USER = {}, \
             MASTER_PASSWORD = {}, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
            quote(host),
            quote(&self.config.replication_user),
            quote(&password),
        )
    }

    /// Replaces this server's data with a copy of `host:port` and replicates from it.
    async fn rebuild(
        &self,
        c: &mut Upstream,
        host: &str,
        port: u16,
    ) -> Result<serde_json::Value, ActionError> {
        warn!(tablet = %self.alias, %host, port, "rebuilding: this server's data is replaced by a copy of the source");
        let clients = super::rebuild::Clients::in_dir(self.config.client_dir.as_deref());
        let report = super::rebuild::rebuild(
            c,
            &self.dba,
            (host, port),
            &clients,
            &self.change_master(host, port),
        )
        .await?;
        let id = self.identity();
        self.set_identity(Identity {
            tablet_type: TabletType::Replica,
            ..id
        });
        warn!(
            tablet = %self.alias, %host, port,
            discarded_position = %report.discarded_position,
            copied_position = %report.copied_position,
            copy_bytes = report.copy_bytes, duration_ms = report.duration_ms,
            "rebuilt from the source; replicating (transactions outside the copied position are gone)"
        );
        let mut status = self.status(c).await?;
        status["rebuild"] = serde_json::to_value(&report).unwrap_or_default();
        Ok(status)
    }

    /// Stops the IO thread and waits until the SQL thread has applied what it received.
    async fn stop_replication(
        &self,
        c: &mut Upstream,
        timeout: Duration,
    ) -> Result<serde_json::Value, ActionError> {
        query(c, "STOP SLAVE IO_THREAD").await?;
        let (names, rows) = query(c, "SHOW ALL SLAVES STATUS").await?;
        let received = names
            .iter()
            .position(|n| n == "Gtid_IO_Pos")
            .and_then(|i| rows.first()?.get(i)?.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        if !received.is_empty() {
            wait_position(c, &received, timeout).await?;
        }
        let mut status = self.status(c).await?;
        status["received_position"] = serde_json::Value::String(received);
        Ok(status)
    }

    /// Compares this tablet's identity with the shard record: claims an unowned shard
    /// when configured as its primary, adopts a promotion recorded while it was away,
    /// and fences itself (read-only) when another tablet is the primary in a term at
    /// least its own.
    pub async fn reconcile(
        &self,
        topology: &Topology,
        health: &TabletHealth,
    ) -> Result<(), TopoError> {
        let (ks, shard) = (&self.config.keyspace, &self.config.shard);
        let record = topology.shard(ks, shard).await?.map(|(r, _)| r);
        self.reconcile_identity(topology, record.clone()).await?;
        // Only a primary's guard probes its peers: replicas skip the listing of every
        // tablet at each measurement.
        if self.identity().tablet_type == TabletType::Primary {
            let peers = topology
                .shard_tablets(ks, shard)
                .await?
                .into_iter()
                .filter(|t| t.alias != self.alias && t.mysqld_port != 0)
                .map(|t: TabletRecord| (t.mysqld_host, t.mysqld_port))
                .collect();
            *lock(&self.peers) = peers;
        }
        if let Some(r) = &record {
            self.unfence(r, health).await;
        }
        if health.serving {
            let policy = topology
                .keyspace(ks)
                .await?
                .map(|k| k.durability_policy)
                .unwrap_or_default();
            let primary_cell = record
                .and_then(|r| r.primary_alias)
                .and_then(|a| a.rsplit_once('-').map(|(cell, _)| cell.to_string()));
            self.apply_durability(&policy, primary_cell.as_deref(), health)
                .await;
        }
        Ok(())
    }

    /// Sets mysqld's semi-sync switches to what the keyspace's durability policy wants
    /// of this tablet: as a primary, wait for an acknowledgement (`semi_sync`,
    /// `cross_cell`); as a replica, acknowledge (`semi_sync`; `cross_cell` only from
    /// another cell than the primary's, so that an acknowledgement always comes from
    /// another cell).
    async fn apply_durability(
        &self,
        policy: &str,
        primary_cell: Option<&str>,
        health: &TabletHealth,
    ) {
        let id = self.identity();
        let durable = matches!(policy, "semi_sync" | "cross_cell");
        let want_primary = durable && id.tablet_type == TabletType::Primary;
        let want_replica = match policy {
            "semi_sync" => id.tablet_type != TabletType::Primary,
            "cross_cell" => {
                id.tablet_type != TabletType::Primary
                    && primary_cell.is_some_and(|c| c != self.config.cell)
            }
            _ => false,
        };
        if want_primary == health.semi_sync_primary && want_replica == health.semi_sync_replica {
            return;
        }
        let on = |b: bool| if b { "ON" } else { "OFF" };
        let mut statements = vec![format!(
            "SET GLOBAL rpl_semi_sync_master_enabled = {}",
            on(want_primary)
        )];
        if want_primary {
            // Lossless: a commit becomes visible only after a replica has it, and the
            // primary never silently falls back to asynchronous replication.
            statements.push("SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC".into());
            statements.push("SET GLOBAL rpl_semi_sync_master_timeout = 4294967295".into());
        }
        if want_replica != health.semi_sync_replica {
            statements.push(format!(
                "SET GLOBAL rpl_semi_sync_slave_enabled = {}",
                on(want_replica)
            ));
            if health.replicating {
                // The IO thread reads the switch when it connects.
                statements.push("STOP SLAVE IO_THREAD".into());
                statements.push("START SLAVE IO_THREAD".into());
            }
        }
        let result = async {
            let mut c = self.connect().await?;
            for sql in &statements {
                query(&mut c, sql).await?;
            }
            c.quit().await;
            Ok::<_, ActionError>(())
        }
        .await;
        match result {
            Ok(()) => {
                info!(tablet = %self.alias, policy, primary = want_primary, replica = want_replica, "durability applied (semi-sync)")
            }
            Err(e) => {
                warn!(tablet = %self.alias, policy, error = ?e, "applying the durability policy failed")
            }
        }
    }

    async fn reconcile_identity(
        &self,
        topology: &Topology,
        record: Option<ShardRecord>,
    ) -> Result<(), TopoError> {
        let (ks, shard) = (&self.config.keyspace, &self.config.shard);
        let id = self.identity();
        match record {
            None if id.tablet_type == TabletType::Primary => {
                if topology.keyspace(ks).await?.is_none() {
                    match topology.create_keyspace(ks, &Default::default()).await {
                        Ok(()) | Err(TopoError::Exists(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                let claimed = ShardRecord {
                    primary_alias: Some(self.alias.clone()),
                    term: 1,
                    reparenting: false,
                };
                match topology.create_shard(ks, shard, &claimed).await {
                    Ok(()) => {
                        info!(tablet = %self.alias, keyspace = %ks, %shard, "claimed the new shard as its primary (term 1)");
                        self.set_identity(Identity {
                            tablet_type: TabletType::Primary,
                            primary_term: 1,
                        });
                    }
                    Err(TopoError::Exists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            None => {}
            Some(r) if r.reparenting => {}
            Some(r)
                if r.primary_alias.as_deref() == Some(self.alias.as_str())
                    && (id.tablet_type != TabletType::Primary || id.primary_term != r.term) =>
            {
                info!(tablet = %self.alias, term = r.term, "the topology names this tablet the primary");
                self.set_identity(Identity {
                    tablet_type: TabletType::Primary,
                    primary_term: r.term,
                });
            }
            Some(r) if r.primary_alias.as_deref() == Some(self.alias.as_str()) => {}
            Some(r) if r.primary_alias.is_none() && id.tablet_type == TabletType::Primary => {
                let r = topology.set_primary(ks, shard, &self.alias).await?;
                self.set_identity(Identity {
                    tablet_type: TabletType::Primary,
                    primary_term: r.term,
                });
            }
            Some(r) if id.tablet_type == TabletType::Primary && r.term >= id.primary_term => {
                warn!(
                    tablet = %self.alias, own_term = id.primary_term, term = r.term,
                    primary = ?r.primary_alias,
                    "another tablet is the primary in a newer term; fencing: mysqld turns read-only"
                );
                match self.fence().await {
                    Ok(()) => {
                        self.metrics.failover.fenced("newer_term");
                        self.set_identity(Identity {
                            tablet_type: TabletType::Spare,
                            ..id
                        });
                    }
                    Err(e) => warn!(tablet = %self.alias, error = ?e, "fencing failed; retrying"),
                }
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Makes a read-only primary writable when the topology confirms it (module docs).
    async fn unfence(&self, record: &ShardRecord, health: &TabletHealth) {
        let id = self.identity();
        let confirmed = id.tablet_type == TabletType::Primary
            && record.primary_alias.as_deref() == Some(self.alias.as_str())
            && record.term == id.primary_term
            && !record.reparenting;
        if !confirmed || !health.serving || !health.read_only || !self.lease_good() {
            return;
        }
        let result = async {
            let mut c = self.connect().await?;
            let r = query(&mut c, "SET GLOBAL read_only = 0").await;
            c.quit().await;
            r.map(drop).map_err(ActionError::from)
        }
        .await;
        match result {
            Ok(()) => {
                self.cut_off.store(false, Ordering::Relaxed);
                self.metrics.failover.unfenced();
                info!(tablet = %self.alias, term = id.primary_term, "the topology confirms this tablet as the primary: mysqld is writable");
            }
            Err(e) => {
                warn!(tablet = %self.alias, error = ?e, "making mysqld writable failed; retrying")
            }
        }
    }

    async fn fence(&self) -> Result<(), ActionError> {
        let mut c = self.connect().await?;
        let r = query(&mut c, "SET GLOBAL read_only = 1").await;
        c.quit().await;
        r.map(drop).map_err(Into::into)
    }

    /// Where replicas reach this mysqld: `topology.mysqld_address`, else the upstream's
    /// TCP address.
    pub fn mysqld_address(&self) -> Option<(String, u16)> {
        let address = match &self.config.mysqld_address {
            Some(a) => a.clone(),
            None => match &self.dba.endpoint {
                crate::config::Endpoint::Tcp(a) => a.clone(),
                crate::config::Endpoint::Unix(_) => return None,
            },
        };
        let (host, port) = address.rsplit_once(':')?;
        Some((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port.parse().ok()?,
        ))
    }
}

/// Waits until mysqld has applied `position` (MariaDB `MASTER_GTID_WAIT`).
async fn wait_position(
    c: &mut Upstream,
    position: &str,
    timeout: Duration,
) -> Result<(), ActionError> {
    let (_, rows) = query(
        c,
        &format!(
            "SELECT MASTER_GTID_WAIT({}, {})",
            quote(position),
            timeout.as_secs_f64()
        ),
    )
    .await?;
    let result = rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned());
    match result.as_deref() {
        Some("0") => Ok(()),
        Some("-1") => Err(ActionError::Failed(format!(
            "position {position} not reached within {} ms",
            timeout.as_millis()
        ))),
        other => Err(ActionError::Failed(format!(
            "MASTER_GTID_WAIT answered {other:?}"
        ))),
    }
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An action's query parameters, checked.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(request: &DebugRequest<'_>) -> Params {
        Params(
            request
                .query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, key: &str) -> Result<Option<u64>, ActionError> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| ActionError::Bad(format!("{key}={v} is not a number")))
            })
            .transpose()
    }

    /// A GTID position: `domain-server-sequence` lists (`%2C` for the comma).
    fn position(&self) -> Result<String, ActionError> {
        let v = self
            .get("position")
            .unwrap_or("")
            .replace("%2C", ",")
            .replace("%2c", ",");
        if v.chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == ',')
        {
            Ok(v)
        } else {
            Err(ActionError::Bad(format!(
                "position={v} is not a GTID position"
            )))
        }
    }

    fn port(&self) -> Result<u16, ActionError> {
        self.number("port")?
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
            .ok_or_else(|| ActionError::Bad("port=N (1-65535) is required".into()))
    }

    fn host(&self) -> Result<String, ActionError> {
        match self.get("host") {
            Some(h)
                if !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c)) =>
            {
                Ok(h.to_string())
            }
            _ => Err(ActionError::Bad(
                "host=H (a name or an IP) is required".into(),
            )),
        }
    }
}

/// The value behind `m`, even if a holder panicked (every value here stays consistent).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether mysqld at `host:port` starts its greeting within [`PEER_PROBE_TIMEOUT`].
async fn greets(host: &str, port: u16) -> bool {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        Some(super::sends_greeting(stream).await)
    };
    matches!(
        tokio::time::timeout(PEER_PROBE_TIMEOUT, attempt).await,
        Ok(Some(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::of(&DebugRequest {
            name: "tablet/x",
            query: q,
            post: true,
        })
    }

    #[test]
    fn parameters_are_checked_before_they_reach_sql() {
        assert_eq!(
            params("position=0-1-5%2C1-2-3").position().unwrap(),
            "0-1-5,1-2-3"
        );
        assert!(params("position=0-1-5'--").position().is_err());
        assert_eq!(params("position=").position().unwrap(), "");
        assert!(params("host=127.0.0.1").host().is_ok());
        assert!(params("host=a'b").host().is_err());
        assert!(params("").host().is_err());
        assert_eq!(params("term=7").number("term").unwrap(), Some(7));
        assert!(params("term=x").number("term").is_err());
        assert_eq!(quote(r"it's\"), r"'it\'s\\'");
    }
}
