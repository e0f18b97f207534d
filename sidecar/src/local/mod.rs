//! `shardcar local`: a whole Shardcar cluster on loopback for development and tests, the way
//! Vitess users use vttestserver — a real `mariadbd` per shard, the app sidecar in front.
//!
//! The cluster is planned as keyspaces → shards → tablets before anything starts, so that
//! replicas and etcd slot in later. Each shard has one primary tablet: a mariadbd with a
//! db-role sidecar beside it (unless `--no-db-role`), and one app sidecar routes every
//! keyspace in front of them, all in this process.

pub mod etcd;
pub mod http;
pub mod mariadb;
pub mod process;

mod error;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::distributions::{Alphanumeric, DistString};
use shardcar_filter::protocol::auth::{
    format_native_hash, native_password_hash, sha2_password_hash,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use shardcar_topo::{MemoryStore, TabletType, Topology};

use crate::config::{
    AppConfig, KeyspaceConfig, ShardConfig, ShardingConfig, TopologyConfig, TopologySourceConfig,
    TransactionMode, TwopcConfig, UpstreamConfig, UserConfig,
};

pub use error::LocalError;
use mariadb::{MariaDb, MariaDbOptions};

/// The keyspace run when none is given.
pub const DEMO_KEYSPACE: &str = "demo";
/// The demo keyspace's shards.
const DEMO_SHARDS: u32 = 4;
/// The unsharded keyspace holding the demo's sequences.
pub const DEMO_LOOKUP_KEYSPACE: &str = "lookup";
/// The demo schema and data (`examples/demo/`), built in so the binary runs from any
/// directory.
const DEMO_SCHEMA: &[(&str, &str)] = &[
    (
        "001_schema.sql",
        include_str!("../../../examples/demo/demo/001_schema.sql"),
    ),
    (
        "002_data.data.sql",
        include_str!("../../../examples/demo/demo/002_data.data.sql"),
    ),
];
const DEMO_LOOKUP_SCHEMA: &[(&str, &str)] = &[(
    "001_sequences.sql",
    include_str!("../../../examples/demo/lookup/001_sequences.sql"),
)];
const DEMO_VSCHEMA: &str = include_str!("../../../examples/demo/vschema.json");
/// Schema files with this suffix hold rows: they run through the sidecar (so each row goes
/// to its shard), once, when the keyspace is created.
const DATA_SUFFIX: &str = ".data.sql";
/// Vitess's default cell name.
const CELL: &str = "zone1";
/// Tablet uids start here, as in vttestserver.
const FIRST_TABLET_UID: u32 = 100;
/// The sidecar's own MariaDB account.
const UPSTREAM_USER: &str = "shardcar";
/// The account tablet actions use (read-only switching, replication).
const DBA_USER: &str = "shardcar_dba";
/// The account replicas replicate with.
const REPL_USER: &str = "shardcar_repl";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const LOCAL_DRAIN_TIMEOUT_MS: u64 = 5_000;

/// `shardcar local` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// A keyspace to create, `NAME` (unsharded) or `NAME:SHARDS`; repeatable. Without any,
    /// the demo keyspace runs.
    #[arg(long = "keyspace", value_name = "NAME[:SHARDS]")]
    pub keyspaces: Vec<KeyspaceArg>,
    /// Schema files: DIR/<keyspace>/*.sql, applied in name order to every shard of the
    /// keyspace when its database is created.
    #[arg(long, value_name = "DIR")]
    pub schema_dir: Option<PathBuf>,
    /// Where applications connect (127.0.0.1).
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    /// Admin HTTP port (`/metrics`, `/healthz`, `/ready`) on 127.0.0.1.
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// The application account.
    #[arg(long, default_value = "app")]
    pub user: String,
    /// The application account's password.
    #[arg(long, default_value = "app")]
    pub password: String,
    /// Keep MariaDB data here across runs (default: a temp dir removed on exit).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Also run the demo keyspace (the default when no --keyspace is given).
    #[arg(long)]
    pub demo: bool,
    /// Vitess SrvVSchema JSON (`{"keyspaces": {...}, "routing_rules": {...}}`) for the
    /// keyspaces; required when one is sharded.
    #[arg(long, value_name = "FILE")]
    pub vschema: Option<PathBuf>,
    /// How transactions that reach several shards commit.
    #[arg(long, value_enum, default_value_t = TransactionMode::Multi)]
    pub transaction_mode: TransactionMode,
    /// How often the two-phase-commit resolver looks for prepared XA branches (twopc
    /// is always enabled locally, so a session may `SET transaction_mode = 'twopc'`).
    #[arg(long, default_value_t = 5_000, value_name = "MS")]
    pub twopc_resolve_interval_ms: u64,
    /// A prepared branch with no commit decision is rolled back after this long.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub twopc_abort_after_ms: u64,
    /// Rows a scatter query may hold while merging.
    #[arg(long, default_value_t = 100_000)]
    pub max_merge_rows: usize,
    /// Connect the app sidecar straight to each mariadbd instead of through a db-role
    /// sidecar beside it (the default runs one per tablet, as in production).
    #[arg(long)]
    pub no_db_role: bool,
    /// GTID replicas per shard, each with its db sidecar; the app sidecar then follows
    /// the topology for primaries and replicas, and reparents move primaries.
    #[arg(long, default_value_t = 0)]
    pub replicas: u32,
    /// Where the topology lives: `embedded` (in this process; the default with
    /// replicas), `etcd` (the `--etcd` cluster, or an etcd this command starts), or
    /// `none` (static addresses; the default without replicas).
    #[arg(long, value_enum)]
    pub topo: Option<TopoMode>,
    /// etcd client URLs for `--topo etcd` (default: start one etcd member).
    #[arg(long = "etcd", value_name = "URL", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Do not run the failover orchestrator (it runs by default with a topology).
    #[arg(long)]
    pub no_orchestrator: bool,
    /// Replicas further behind get no reads (`USE ks@replica`).
    #[arg(long, default_value_t = 30_000)]
    pub max_replica_lag_ms: u64,
    /// Reads outside transactions go to replicas by default (`topology.reads: replica`).
    #[arg(long)]
    pub replica_reads: bool,
    /// A replica serves a session's read only once it has applied the session's last
    /// write (`topology.read_your_writes`).
    #[arg(long)]
    pub read_your_writes: bool,
    /// The keyspaces' durability policy: `none`, `semi_sync` (a commit waits until a
    /// replica has it) or `cross_cell`.
    #[arg(long, value_enum, default_value_t = Durability::None)]
    pub durability: Durability,
    /// The cells tablets are spread over: a shard's n-th tablet (the primary first) lives
    /// in the n-th cell, round robin; the app sidecar lives in the first.
    #[arg(long, value_delimiter = ',', default_value = "zone1")]
    pub cells: Vec<String>,
    /// Run the control service's configuration streams too, and configure the app
    /// sidecar only through them: keyspaces, VSchema, shards and tablets come from the
    /// stream, as on Kubernetes (needs a topology).
    #[arg(long)]
    pub config_stream: bool,
    /// The control service's gRPC port with `--config-stream` (0: any free port).
    #[arg(long, default_value_t = 15999)]
    pub control_port: u16,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    None,
    SemiSync,
    CrossCell,
}

impl Durability {
    /// The policy's name in the keyspace record.
    fn policy(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::SemiSync => "semi_sync",
            Durability::CrossCell => "cross_cell",
        }
    }
}

/// `--topo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopoMode {
    None,
    Embedded,
    Etcd,
}

impl LocalArgs {
    /// The topology mode after defaults.
    fn topo_mode(&self) -> TopoMode {
        self.topo.unwrap_or(if self.replicas > 0 {
            TopoMode::Embedded
        } else {
            TopoMode::None
        })
    }

    /// The cell of a shard's `i`-th tablet.
    fn cell_of(&self, i: u32) -> &str {
        match self.cells.len() {
            0 => CELL,
            n => &self.cells[i as usize % n],
        }
    }
}

impl Default for LocalArgs {
    fn default() -> Self {
        LocalArgs {
            keyspaces: Vec::new(),
            schema_dir: None,
            port: 3306,
            admin_port: 15000,
            user: "app".to_string(),
            password: "app".to_string(),
            data_dir: None,
            demo: false,
            vschema: None,
            transaction_mode: TransactionMode::Multi,
            twopc_resolve_interval_ms: 5_000,
            twopc_abort_after_ms: 30_000,
            max_merge_rows: 100_000,
            no_db_role: false,
            replicas: 0,
            topo: None,
            etcd: Vec::new(),
            no_orchestrator: false,
            durability: Durability::None,
            max_replica_lag_ms: 30_000,
            replica_reads: false,
            read_your_writes: false,
            cells: vec![CELL.to_string()],
            config_stream: false,
            control_port: 15999,
        }
    }
}

/// `--keyspace NAME[:SHARDS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceArg {
    pub name: String,
    /// 1 = unsharded.
    pub shards: u32,
}

impl FromStr for KeyspaceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, shards) = match s.split_once(':') {
            Some((name, n)) => {
                let shards = n
                    .parse::<u32>()
                    .map_err(|_| format!("keyspace {name:?}: shard count {n:?} is not a number"))?;
                (name, shards)
            }
            None => (s, 1),
        };
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "keyspace name {name:?}: use 1-64 letters, digits or underscores"
            ));
        }
        if shards == 0 {
            return Err(format!("keyspace {name:?}: needs at least one shard"));
        }
        Ok(KeyspaceArg {
            name: name.to_string(),
            shards,
        })
    }
}

impl fmt::Display for KeyspaceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shards == 1 {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}:{}", self.name, self.shards)
        }
    }
}

/// Where a keyspace's schema comes from.
#[derive(Debug, Clone)]
enum SchemaSource {
    None,
    Dir(PathBuf),
    Builtin(&'static [(&'static str, &'static str)]),
}

#[derive(Debug, Clone)]
struct TabletPlan {
    uid: u32,
    cell: String,
    tablet_type: TabletType,
}

impl TabletPlan {
    fn alias(&self) -> String {
        shardcar_topo::TabletRecord::alias_of(&self.cell, self.uid)
    }
}

#[derive(Debug, Clone)]
struct ShardPlan {
    /// Vitess's name for the one shard of an unsharded keyspace.
    name: String,
    tablets: Vec<TabletPlan>,
}

#[derive(Debug, Clone)]
struct KeyspacePlan {
    name: String,
    schema: SchemaSource,
    shards: Vec<ShardPlan>,
}

/// No keyspace given, or `--demo`: the built-in demo runs.
fn demo_mode(args: &LocalArgs) -> bool {
    args.keyspaces.is_empty() || args.demo
}

/// Turns the flags into keyspaces → shards → tablets, refusing what this release cannot run.
fn plan(args: &LocalArgs) -> anyhow::Result<Vec<KeyspacePlan>> {
    if args.topo_mode() != TopoMode::None && args.no_db_role {
        bail!("--no-db-role: the db sidecars register the tablets in the topology; drop --no-db-role or use --topo none");
    }
    if args.replicas > 0 && args.topo_mode() == TopoMode::None {
        bail!("--replicas needs a topology (--topo embedded or etcd) to route reads and reparent");
    }
    if args.replicas > 8 {
        bail!("--replicas {}: at most 8 per shard", args.replicas);
    }
    if let Some(bad) = args
        .cells
        .iter()
        .find(|c| c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
    {
        bail!("--cells: {bad:?} is not a cell name (letters, digits, '_')");
    }
    let mut wanted = args.keyspaces.clone();
    if demo_mode(args) {
        for (name, shards) in [(DEMO_KEYSPACE, DEMO_SHARDS), (DEMO_LOOKUP_KEYSPACE, 1)] {
            if !wanted.iter().any(|k| k.name == name) {
                wanted.push(KeyspaceArg {
                    name: name.to_string(),
                    shards,
                });
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut next_uid = FIRST_TABLET_UID;
    let mut keyspaces = Vec::new();
    for ks in wanted {
        if !seen.insert(ks.name.clone()) {
            bail!("keyspace {} is given twice", ks.name);
        }
        if ks.shards > 1 && args.vschema.is_none() && !demo_mode(args) {
            bail!(
                "--keyspace {ks}: a sharded keyspace needs --vschema FILE naming its vindexes \
                 and tables"
            );
        }
        let shard_names = if ks.shards == 1 {
            vec!["0".to_string()]
        } else {
            shardcar_filter::key::generate_shard_ranges(ks.shards as usize)
                .map_err(|e| anyhow::anyhow!("--keyspace {ks}: {e}"))?
        };
        let schema = match &args.schema_dir {
            Some(dir) if dir.join(&ks.name).is_dir() => SchemaSource::Dir(dir.join(&ks.name)),
            _ if ks.name == DEMO_KEYSPACE && demo_mode(args) => SchemaSource::Builtin(DEMO_SCHEMA),
            _ if ks.name == DEMO_LOOKUP_KEYSPACE && demo_mode(args) => {
                SchemaSource::Builtin(DEMO_LOOKUP_SCHEMA)
            }
            Some(dir) => {
                tracing::warn!(
                    keyspace = %ks.name,
                    "no schema directory {}; the keyspace starts empty",
                    dir.join(&ks.name).display()
                );
                SchemaSource::None
            }
            None => SchemaSource::None,
        };
        let shards = shard_names
            .into_iter()
            .map(|name| {
                let tablets = (0..=args.replicas)
                    .map(|i| TabletPlan {
                        uid: next_uid + i,
                        cell: args.cell_of(i).to_string(),
                        tablet_type: if i == 0 {
                            TabletType::Primary
                        } else {
                            TabletType::Replica
                        },
                    })
                    .collect();
                next_uid += 100;
                ShardPlan { name, tablets }
            })
            .collect();
        keyspaces.push(KeyspacePlan {
            name: ks.name,
            schema,
            shards,
        });
    }
    Ok(keyspaces)
}

/// A running tablet: one mariadbd.
#[derive(Debug)]
struct Tablet {
    keyspace: String,
    shard: String,
    uid: u32,
    cell: String,
    alias: String,
    tablet_type: TabletType,
    db: MariaDb,
}

/// The passwords of the local cluster's MariaDB accounts, kept in files in the data dir.
#[derive(Debug)]
struct Accounts {
    upstream: String,
    upstream_file: PathBuf,
    dba_file: PathBuf,
    repl: String,
    repl_file: PathBuf,
    /// The db sidecars' admin token (tablet actions), shared with the orchestrator.
    action_token: String,
    action_token_file: PathBuf,
}

impl Accounts {
    fn create(root: &Path) -> anyhow::Result<Accounts> {
        let fresh = |name: &str| -> anyhow::Result<(String, PathBuf)> {
            let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
            let path = root.join(name);
            write_secret(&path, &secret)?;
            Ok((secret, path))
        };
        let (upstream, upstream_file) = fresh("upstream-password")?;
        let (_, dba_file) = fresh("dba-password")?;
        let (repl, repl_file) = fresh("repl-password")?;
        let (action_token, action_token_file) = fresh("action-token")?;
        Ok(Accounts {
            upstream,
            upstream_file,
            dba_file,
            repl,
            repl_file,
            action_token,
            action_token_file,
        })
    }

    /// Creates the accounts on every tablet, outside the binary log (each server has its
    /// own, and replicas must not replay them). The serving account lacks READ_ONLY
    /// ADMIN so that a read-only (demoted) server refuses its writes.
    async fn install(&self, tablets: &[Tablet]) -> anyhow::Result<()> {
        let dba = std::fs::read_to_string(&self.dba_file)
            .with_context(|| format!("reading {}", self.dba_file.display()))?;
        for t in tablets {
            t.db.create_local_user(UPSTREAM_USER, &self.upstream, "ALL PRIVILEGES ON *.*")
                .await?;
            t.db.exec(&format!(
                "SET SESSION sql_log_bin = 0;                  REVOKE READ_ONLY ADMIN ON *.* FROM '{UPSTREAM_USER}'@'localhost';                  REVOKE READ_ONLY ADMIN ON *.* FROM '{UPSTREAM_USER}'@'127.0.0.1';"
            ))
            .await?;
            t.db.create_local_user(DBA_USER, &dba, "ALL PRIVILEGES ON *.*")
                .await?;
            t.db.create_local_user(REPL_USER, &self.repl, "REPLICATION SLAVE ON *.*")
                .await?;
        }
        Ok(())
    }
}

/// The `mariadbd` options a tablet needs beyond the defaults.
fn mysqld_args(args: &LocalArgs) -> Vec<String> {
    let mut out = Vec::new();
    if args.topo_mode() != TopoMode::None {
        // Every tablet starts read-only: its db sidecar makes the primary writable once
        // the topology confirms it, so a restarted former primary never takes a write
        // (not even the heartbeat's) before it learns it was replaced.
        out.push("--read-only=ON".to_string());
        // A replica notices a primary that went silent (a partition drops packets)
        // within 4 s (heartbeats every 2 s) instead of MariaDB's default 60 s.
        out.push("--slave-net-timeout=4".to_string());
    }
    if args.replicas > 0 {
        // A restarted former primary drops binary-log transactions no replica
        // acknowledged (MariaDB's semi-sync crash recovery), so it can rejoin as a replica.
        out.push("--rpl-semi-sync-slave-enabled=ON".to_string());
    }
    out
}

/// Points every replica at its shard's primary (GTID, `MASTER_USE_GTID=slave_pos`) and
/// makes it read-only. A replica that already replicates (a kept data dir) is left as is.
async fn start_replication(tablets: &[Tablet], accounts: &Accounts) -> anyhow::Result<()> {
    for r in tablets
        .iter()
        .filter(|t| t.tablet_type == TabletType::Replica)
    {
        let Some(primary) = tablets.iter().find(|t| {
            t.tablet_type == TabletType::Primary && t.keyspace == r.keyspace && t.shard == r.shard
        }) else {
            continue;
        };
        let status = r.db.exec("SHOW ALL SLAVES STATUS;").await?;
        if !status.trim().is_empty() {
            continue;
        }
        r.db.exec(&format!(
            "SET GLOBAL read_only = 1;              CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {},              MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{}',              MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1;              START SLAVE;",
            primary.db.port(),
            accounts.repl
        ))
        .await
        .with_context(|| format!("starting replication on tablet {}", r.alias))?;
        tracing::info!(tablet = %r.alias, primary = %primary.alias, "replicating");
    }
    Ok(())
}

/// Runs the local cluster until SIGINT/SIGTERM, then stops everything.
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    run_until(args, crate::shutdown::install()).await
}

/// Runs the local cluster until `shutdown` turns true (tests drive it this way).
pub async fn run_until(args: LocalArgs, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let keyspaces = plan(&args)?;
    if args.user.is_empty() {
        bail!("--user must not be empty");
    }

    let (root, _temp_root) = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating --data-dir {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("shardcar-local-")
                .tempdir()
                .context("creating a temp data dir")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let root_password = persistent_secret(&root.join("root-password"))?;

    let started = Instant::now();
    let mut tablets = Vec::new();
    let result = async {
        for ks in &keyspaces {
            for shard in &ks.shards {
                for tablet in &shard.tablets {
                    let alias = tablet.alias();
                    let extra_args = mysqld_args(&args);
                    let db = MariaDb::start(MariaDbOptions {
                        data_dir: Some(root.join(format!("vt_{:010}", tablet.uid))),
                        port: None,
                        server_id: tablet.uid,
                        extra_args,
                        root_password: root_password.clone(),
                        log_bin: true,
                        netns: None,
                    })
                    .await
                    .with_context(|| format!("starting mariadbd for tablet {alias}"))?;
                    tracing::info!(
                        keyspace = %ks.name, shard = %shard.name, tablet = %alias,
                        port = db.port(), "mariadbd ready"
                    );
                    tablets.push(Tablet {
                        keyspace: ks.name.clone(),
                        shard: shard.name.clone(),
                        uid: tablet.uid,
                        cell: tablet.cell.clone(),
                        alias,
                        tablet_type: tablet.tablet_type,
                        db,
                    });
                }
            }
        }
        let accounts = Accounts::create(&root)?;
        accounts.install(&tablets).await?;
        start_replication(&tablets, &accounts).await?;
        let mut data = Vec::new();
        for ks in &keyspaces {
            let mut created = false;
            // Replicas get the database and schema through replication.
            for tablet in tablets
                .iter()
                .filter(|t| t.keyspace == ks.name && t.tablet_type == TabletType::Primary)
            {
                created |= create_keyspace_database(tablet, ks).await?;
            }
            if created {
                for (name, sql) in data_files(&ks.schema)? {
                    data.push((ks.name.clone(), name, sql));
                }
            }
        }
        let (topology, _etcd) = start_topology(&args).await?;
        let mut control_address = None;
        if let Some(t) = &topology {
            let t = t.connect().await?;
            for ks in &keyspaces {
                let record = shardcar_topo::KeyspaceRecord {
                    durability_policy: args.durability.policy().to_string(),
                    vschema: None,
                };
                match t.create_keyspace(&ks.name, &record).await {
                    Ok(()) | Err(shardcar_topo::TopoError::Exists(_)) => {}
                    Err(e) => return Err(e).context("creating the keyspace records"),
                }
            }
            t.apply_srv_vschema(&srv_vschema(&args)?)
                .await
                .context("writing the VSchema into the topology")?;
            if args.config_stream {
                control_address = Some(serve_config(&args, t.clone(), shutdown.clone()).await?);
            }
            if !args.no_orchestrator {
                let token = Arc::from(accounts.action_token.as_str());
                tokio::spawn(orchestrate(t, token, shutdown.clone()));
            }
        } else if args.durability != Durability::None {
            bail!("--durability needs replicas (--replicas N)");
        } else if args.config_stream {
            bail!("--config-stream needs a topology (--topo embedded|etcd, or --replicas N)");
        }
        let run = Run {
            args: &args,
            keyspaces: &keyspaces,
            tablets: &tablets,
            root: &root,
            accounts: &accounts,
            topology,
            control_address,
        };
        serve(&run, &data, shutdown, started).await
    }
    .await;

    // Stop the servers whatever happened, in parallel.
    let stops: Vec<_> = tablets
        .into_iter()
        .map(|t| tokio::spawn(async move { t.db.stop().await }))
        .collect();
    for stop in stops {
        let _ = stop.await;
    }
    tracing::info!("local cluster stopped");
    result
}

/// Creates the keyspace's database on a tablet and, when it is new, applies the schema
/// (all but the `.data.sql` files); returns whether it was new.
async fn create_keyspace_database(tablet: &Tablet, ks: &KeyspacePlan) -> anyhow::Result<bool> {
    let exists = tablet
        .db
        .exec(&format!("SHOW DATABASES LIKE '{}';", ks.name))
        .await?;
    if !exists.trim().is_empty() {
        tracing::info!(keyspace = %ks.name, tablet = %tablet.alias, "database exists; schema not re-applied");
        return Ok(false);
    }
    tablet
        .db
        .exec(&format!("CREATE DATABASE `{}`;", ks.name))
        .await?;
    match &ks.schema {
        SchemaSource::None => {}
        SchemaSource::Builtin(files) => {
            for (name, sql) in files.iter().filter(|(n, _)| !n.ends_with(DATA_SUFFIX)) {
                tablet
                    .db
                    .exec_in(&ks.name, sql)
                    .await
                    .with_context(|| format!("applying built-in {name} to keyspace {}", ks.name))?;
            }
        }
        SchemaSource::Dir(dir) => {
            for file in sql_files(dir)?.into_iter().filter(|f| !is_data_file(f)) {
                tablet
                    .db
                    .source_file(Some(&ks.name), &file)
                    .await
                    .with_context(|| {
                        format!("applying {} to keyspace {}", file.display(), ks.name)
                    })?;
                tracing::info!(keyspace = %ks.name, file = %file.display(), "schema applied");
            }
        }
    }
    Ok(true)
}

fn is_data_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(DATA_SUFFIX))
}

/// The `.data.sql` files of a keyspace's schema, in name order, with their text.
fn data_files(schema: &SchemaSource) -> anyhow::Result<Vec<(String, String)>> {
    Ok(match schema {
        SchemaSource::None => Vec::new(),
        SchemaSource::Builtin(files) => files
            .iter()
            .filter(|(n, _)| n.ends_with(DATA_SUFFIX))
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect(),
        SchemaSource::Dir(dir) => {
            let mut out = Vec::new();
            for file in sql_files(dir)?.into_iter().filter(|f| is_data_file(f)) {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                out.push((file.display().to_string(), text));
            }
            out
        }
    })
}

/// Runs `sql` through the sidecar with the `mariadb` client, as the application would.
async fn load_through_sidecar(
    args: &LocalArgs,
    keyspace: &str,
    name: &str,
    sql: &str,
) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "--host=127.0.0.1",
            "--batch",
        ])
        .arg(format!("--port={}", args.port))
        .arg(format!("--user={}", args.user))
        .arg(format!("--password={}", args.password))
        .arg("--default-character-set=utf8mb4")
        .arg(keyspace)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the mariadb client to load data through the sidecar")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(sql.as_bytes())
            .await
            .context("writing data to the mariadb client")?;
    }
    let out = child
        .wait_with_output()
        .await
        .context("waiting for the mariadb client")?;
    if !out.status.success() {
        bail!(
            "loading {name} into keyspace {keyspace} through the sidecar failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    tracing::info!(keyspace, file = name, "data loaded through the sidecar");
    Ok(())
}

/// `*.sql` files of a directory, in name order.
fn sql_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading schema dir {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    Ok(files)
}

/// What a running local cluster is made of, for starting its sidecars.
struct Run<'a> {
    args: &'a LocalArgs,
    keyspaces: &'a [KeyspacePlan],
    tablets: &'a [Tablet],
    root: &'a Path,
    accounts: &'a Accounts,
    topology: Option<LocalTopology>,
    /// The configuration streams' URL, with `--config-stream`.
    control_address: Option<String>,
}

/// The topology of a local cluster: in this process, or in etcd.
#[derive(Debug, Clone)]
enum LocalTopology {
    Embedded(Topology),
    Etcd(Vec<String>),
}

impl LocalTopology {
    /// The store handed to the sidecars in-process (none for etcd: they connect).
    fn store(&self) -> Option<Topology> {
        match self {
            LocalTopology::Embedded(t) => Some(t.clone()),
            LocalTopology::Etcd(_) => None,
        }
    }

    /// A client of the topology.
    async fn connect(&self) -> anyhow::Result<Topology> {
        match self {
            LocalTopology::Embedded(t) => Ok(t.clone()),
            LocalTopology::Etcd(endpoints) => {
                let store = shardcar_topo::EtcdStore::connect(endpoints)
                    .await
                    .context("connecting to etcd")?;
                Ok(Topology::new(
                    std::sync::Arc::new(store),
                    shardcar_topo::Layout::default(),
                ))
            }
        }
    }

    fn endpoints(&self) -> Vec<String> {
        match self {
            LocalTopology::Embedded(_) => Vec::new(),
            LocalTopology::Etcd(e) => e.clone(),
        }
    }
}

/// The SrvVSchema the keyspaces are served with (`--vschema`, the demo's, or none), as
/// JSON with a `keyspaces` object.
fn srv_vschema(args: &LocalArgs) -> anyhow::Result<serde_json::Value> {
    let text = match &args.vschema {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --vschema {}", path.display()))?,
        None if demo_mode(args) => DEMO_VSCHEMA.to_string(),
        None => return Ok(serde_json::json!({"keyspaces": {}})),
    };
    let json: serde_json::Value = serde_json::from_str(&text).context("--vschema is not JSON")?;
    if !json["keyspaces"].is_object() {
        bail!("--vschema: a SrvVSchema needs a \"keyspaces\" object");
    }
    Ok(json)
}

/// Serves the control service's configuration streams on loopback until shutdown;
/// returns their URL.
async fn serve_config(
    args: &LocalArgs,
    topology: Topology,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.control_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} (--control-port)",
                args.control_port
            )
        })?;
    let address = format!("http://{}", listener.local_addr()?);
    let metrics = Arc::new(shardcar_control::ControlMetrics::default());
    let service = shardcar_control::config::service(metrics, "local".to_string());
    tokio::spawn(async move {
        if let Err(e) = shardcar_control::config::serve(listener, topology, service, shutdown).await
        {
            tracing::error!(error = %e, "the configuration streams stopped");
        }
    });
    tracing::info!(%address, "configuration streams");
    Ok(address)
}

/// Runs the failover orchestrator on the local topology until shutdown.
async fn orchestrate(topology: Topology, token: Arc<str>, shutdown: watch::Receiver<bool>) {
    // A local cluster is for development: tablets with errant transactions are rebuilt.
    let defaults = shardcar_control::OrchestratorOptions::default();
    let options = shardcar_control::OrchestratorOptions {
        rebuild_errant: true,
        reparent: shardcar_control::ReparentOptions {
            action_token: Some(token),
            ..defaults.reparent.clone()
        },
        ..defaults
    };
    shardcar_control::orchestrator::run(topology, options, shutdown, |report, detected| {
        tracing::info!(
            keyspace = %report.keyspace, shard = %report.shard,
            from = %report.old_primary, to = %report.new_primary, term = report.term,
            detected_ms = detected.as_millis() as u64, promotion_ms = report.promotion_ms,
            "automatic failover done"
        );
    })
    .await;
}

/// Starts the topology `--topo` asks for; the etcd member (when this command started one)
/// lives as long as the returned handle.
async fn start_topology(
    args: &LocalArgs,
) -> anyhow::Result<(Option<LocalTopology>, Option<etcd::Etcd>)> {
    match args.topo_mode() {
        TopoMode::None => Ok((None, None)),
        TopoMode::Embedded => {
            let store = std::sync::Arc::new(MemoryStore::new());
            let topology = Topology::new(store, shardcar_topo::Layout::default());
            Ok((Some(LocalTopology::Embedded(topology)), None))
        }
        TopoMode::Etcd if !args.etcd.is_empty() => {
            Ok((Some(LocalTopology::Etcd(args.etcd.clone())), None))
        }
        TopoMode::Etcd => {
            // Started on this (runtime) thread, not a blocking-pool one: etcd dies with the
            // thread that spawned it (PR_SET_PDEATHSIG), and pool threads come and go.
            let member = etcd::Etcd::start().context("starting etcd")?;
            tracing::info!(url = %member.client_url(), "etcd ready");
            Ok((
                Some(LocalTopology::Etcd(vec![member.client_url()])),
                Some(member),
            ))
        }
    }
}

/// Starts a db-role sidecar beside every tablet (unless `--no-db-role`; without a
/// topology only primaries serve) and the app sidecar in front of them, in-process, and
/// runs until shutdown.
async fn serve(
    run: &Run<'_>,
    data: &[(String, String, String)],
    shutdown: watch::Receiver<bool>,
    started: Instant,
) -> anyhow::Result<()> {
    let args = run.args;
    // Where the app sidecar reaches each primary: its db-role sidecar, or mariadbd itself.
    let mut db_sidecars = Vec::new();
    let mut addresses = std::collections::HashMap::new();
    for tablet in run
        .tablets
        .iter()
        .filter(|t| t.tablet_type == TabletType::Primary || run.topology.is_some())
    {
        let address = if args.no_db_role {
            // Every tablet runs on this machine: its Unix socket skips the TCP stack.
            format!("unix:{}", tablet.db.socket().display())
        } else {
            let config = db_config(run, tablet);
            let store = run.topology.as_ref().and_then(LocalTopology::store);
            let server = crate::app::AppServer::bind_with(config, crate::app::Role::Db, store)
                .await
                .with_context(|| format!("starting the db sidecar of tablet {}", tablet.alias))?;
            let (addr, admin) = (server.local_addr()?, server.admin_addr()?);
            tracing::info!(
                tablet = %tablet.alias, %addr, %admin,
                "db sidecar in front of mariadbd"
            );
            db_sidecars.push(tokio::spawn(server.serve(shutdown.clone())));
            addr.to_string()
        };
        addresses.insert(tablet.alias.clone(), address);
    }
    let result = serve_app(run, &addresses, data, shutdown, started).await;
    for db in db_sidecars {
        if result.is_err() {
            // The app sidecar failed: nothing will stop the db sidecars otherwise.
            db.abort();
        }
        if let Ok(Err(e)) = db.await {
            tracing::warn!(error = %e, "a db sidecar failed");
        }
    }
    result
}

/// Runs the app sidecar in front of the primaries at `addresses` (or the topology's)
/// until shutdown.
async fn serve_app(
    run: &Run<'_>,
    addresses: &std::collections::HashMap<String, String>,
    data: &[(String, String, String)],
    mut shutdown: watch::Receiver<bool>,
    started: Instant,
) -> anyhow::Result<()> {
    let (args, keyspaces, tablets) = (run.args, run.keyspaces, run.tablets);
    let (Some(ks), Some(primary)) = (
        keyspaces.first(),
        tablets
            .iter()
            .find(|t| t.tablet_type == TabletType::Primary),
    ) else {
        bail!("no primary tablet to serve");
    };
    let address = |t: &Tablet| {
        if run.topology.is_some() {
            // The topology says where each primary is.
            return String::new();
        }
        addresses
            .get(&t.alias)
            .cloned()
            .unwrap_or_else(|| t.db.address())
    };
    let mut config = app_config(
        args,
        address(primary),
        &ks.name,
        &run.accounts.upstream_file,
    );
    if keyspaces.len() > 1
        || keyspaces.iter().any(|k| k.shards.len() > 1)
        || args.vschema.is_some()
        || run.topology.is_some()
    {
        let mut sharding = sharding_config(args, tablets, address);
        if sharding.vschema_file.is_none() && demo_mode(args) {
            let path = run.root.join("demo-vschema.json");
            std::fs::write(&path, DEMO_VSCHEMA)
                .with_context(|| format!("writing {}", path.display()))?;
            sharding.vschema_file = Some(path);
        }
        if let Some(t) = &run.topology {
            sharding.topology = Some(TopologySourceConfig {
                etcd_endpoints: t.endpoints(),
                cell: args.cell_of(0).to_string(),
                max_replica_lag_ms: args.max_replica_lag_ms,
                reads: if args.replica_reads {
                    crate::config::ReadTarget::Replica
                } else {
                    crate::config::ReadTarget::Primary
                },
                read_your_writes: args.read_your_writes,
                control: run.control_address.as_ref().map(|address| {
                    crate::config::ControlStreamConfig {
                        address: address.clone(),
                        cache_file: Some(run.root.join("config-cache.pb")),
                        pod: "local-app".to_string(),
                        ..Default::default()
                    }
                }),
                ..TopologySourceConfig::default()
            });
            if run.control_address.is_some() {
                // Everything the stream says is left out of the file.
                sharding.keyspaces.clear();
                sharding.vschema_file = None;
            }
        }
        config.sharding = Some(sharding);
    }
    let store = run.topology.as_ref().and_then(LocalTopology::store);
    let server = crate::app::AppServer::bind_with(config, crate::app::Role::App, store).await?;
    let mut app = tokio::spawn(server.serve(shutdown.clone()));

    // Ready when /ready answers 200; the app task ending first is a start failure.
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if app.is_finished() {
            return match app.await {
                Ok(Ok(())) if *shutdown.borrow() => Ok(()),
                Ok(Ok(())) => bail!("the sidecar stopped before it was ready"),
                Ok(Err(e)) => Err(e.context("the sidecar failed to start")),
                Err(e) => bail!("the sidecar task failed: {e}"),
            };
        }
        if admin_ready(args.admin_port).await {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the sidecar did not report ready on 127.0.0.1:{}/ready within {READY_TIMEOUT:?}",
                args.admin_port
            );
        }
        if *shutdown.borrow() {
            // Stopped while starting: let the app task drain and finish.
            return match app.await {
                Ok(result) => result,
                Err(e) => bail!("the sidecar task failed: {e}"),
            };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (keyspace, name, sql) in data {
        load_through_sidecar(args, keyspace, name, sql).await?;
    }
    tracing::info!(
        keyspaces = keyspaces.len(),
        tablets = tablets.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "local cluster ready"
    );
    println!(
        "shardcar local ready: mariadb -h 127.0.0.1 -P {} -u {} -p{} {}",
        args.port,
        shell_word(&args.user),
        shell_word(&args.password),
        ks.name
    );

    tokio::select! {
        () = stopped(&mut shutdown) => {
            tracing::info!("shutting down the local cluster");
            match tokio::time::timeout(Duration::from_millis(LOCAL_DRAIN_TIMEOUT_MS * 2), &mut app).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => bail!("the sidecar task failed: {e}"),
                Err(_) => {
                    app.abort();
                    Ok(())
                }
            }
        }
        result = &mut app => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.context("the sidecar stopped")),
            Err(e) => bail!("the sidecar task failed: {e}"),
        },
    }
}

fn app_config(
    args: &LocalArgs,
    primary_address: String,
    database: &str,
    password_file: &Path,
) -> AppConfig {
    AppConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        admin_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, args.admin_port)),
        drain_timeout_ms: LOCAL_DRAIN_TIMEOUT_MS,
        users: vec![user(&args.user, &args.password)],
        upstream: UpstreamConfig {
            address: primary_address,
            user: UPSTREAM_USER.to_string(),
            password_file: Some(password_file.to_path_buf()),
            database: Some(database.to_string()),
            ..UpstreamConfig::default()
        },
        ..AppConfig::default()
    }
}

/// A configured account with both password hashes.
fn user(name: &str, password: &str) -> UserConfig {
    let password = password.as_bytes();
    UserConfig {
        name: name.to_string(),
        native_hash: Some(format_native_hash(&native_password_hash(password))),
        sha2_hash: Some(hex::encode(sha2_password_hash(password))),
        ..UserConfig::default()
    }
}

/// The db-role sidecar of one tablet: on loopback ports of its own, accepting the app
/// sidecar's account and logging in to mariadbd with it over the Unix socket; with a
/// topology it registers the tablet and answers reparent actions.
fn db_config(run: &Run<'_>, tablet: &Tablet) -> AppConfig {
    let accounts = run.accounts;
    let topology = run.topology.as_ref().map(|t| TopologyConfig {
        etcd_endpoints: t.endpoints(),
        cell: tablet.cell.clone(),
        uid: tablet.uid,
        keyspace: tablet.keyspace.clone(),
        shard: tablet.shard.clone(),
        tablet_type: tablet.tablet_type,
        hostname: Some(Ipv4Addr::LOCALHOST.to_string()),
        mysqld_address: Some(tablet.db.address()),
        dba_user: Some(DBA_USER.to_string()),
        dba_password_file: Some(accounts.dba_file.clone()),
        replication_user: REPL_USER.to_string(),
        replication_password_file: Some(accounts.repl_file.clone()),
        ..TopologyConfig::default()
    });
    AppConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        admin_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        admin_token_file: Some(accounts.action_token_file.clone()),
        drain_timeout_ms: LOCAL_DRAIN_TIMEOUT_MS,
        users: vec![user(UPSTREAM_USER, &accounts.upstream)],
        upstream: UpstreamConfig {
            address: format!("unix:{}", tablet.db.socket().display()),
            user: UPSTREAM_USER.to_string(),
            password_file: Some(accounts.upstream_file.clone()),
            ..UpstreamConfig::default()
        },
        topology,
        ..AppConfig::default()
    }
}

/// The `sharding` section for the planned keyspaces: one entry per shard primary, at
/// the address `address` gives.
fn sharding_config(
    args: &LocalArgs,
    tablets: &[Tablet],
    address: impl Fn(&Tablet) -> String,
) -> ShardingConfig {
    let mut keyspaces: std::collections::BTreeMap<String, KeyspaceConfig> = Default::default();
    for t in tablets
        .iter()
        .filter(|t| t.tablet_type == TabletType::Primary)
    {
        keyspaces
            .entry(t.keyspace.clone())
            .or_default()
            .shards
            .push(ShardConfig {
                name: t.shard.clone(),
                address: address(t),
                database: Some(t.keyspace.clone()),
            });
    }
    ShardingConfig {
        vschema_file: args.vschema.clone(),
        keyspaces,
        transaction_mode: args.transaction_mode,
        twopc: TwopcConfig {
            enabled: true,
            resolve_interval_ms: args.twopc_resolve_interval_ms,
            abort_after_ms: args.twopc_abort_after_ms,
            ..TwopcConfig::default()
        },
        max_merge_rows: args.max_merge_rows,
        ..ShardingConfig::default()
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, not across an await.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// `GET /ready` on the admin port answers 200.
async fn admin_ready(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}

/// Reads a secret kept in the data dir, or creates a random one (so a kept `--data-dir`
/// restarts with the same root password).
fn persistent_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
    write_secret(path, &secret)?;
    Ok(secret)
}

fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/@%+=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_arg_parses_name_and_shards() {
        assert_eq!(
            "demo".parse::<KeyspaceArg>(),
            Ok(KeyspaceArg {
                name: "demo".into(),
                shards: 1
            })
        );
        assert_eq!("shop:4".parse::<KeyspaceArg>().map(|k| k.shards), Ok(4));
        assert!("".parse::<KeyspaceArg>().is_err());
        assert!("a-b".parse::<KeyspaceArg>().is_err());
        assert!("shop:x".parse::<KeyspaceArg>().is_err());
        assert!("shop:0".parse::<KeyspaceArg>().is_err());
    }

    #[test]
    fn no_keyspace_plans_the_demo() {
        let keyspaces = plan(&LocalArgs::default()).map_err(|e| e.to_string());
        let keyspaces = keyspaces.as_deref().unwrap_or_default();
        assert_eq!(keyspaces.len(), 2);
        assert_eq!(keyspaces[0].name, DEMO_KEYSPACE);
        assert_eq!(keyspaces[0].shards.len(), DEMO_SHARDS as usize);
        assert_eq!(keyspaces[1].name, DEMO_LOOKUP_KEYSPACE);
        assert!(matches!(keyspaces[0].schema, SchemaSource::Builtin(_)));
        assert_eq!(
            keyspaces[0].shards[0].tablets[0].alias(),
            "zone1-0000000100"
        );
    }

    #[test]
    fn sharded_keyspaces_get_vitess_shard_names_and_need_a_vschema() {
        let mut args = LocalArgs {
            keyspaces: vec!["shop:4".parse().unwrap_or_else(|e: String| panic!("{e}"))],
            ..LocalArgs::default()
        };
        let err = plan(&args).map(|_| ()).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("--vschema"));
        args.vschema = Some(PathBuf::from("vschema.json"));
        let planned = plan(&args).map_err(|e| e.to_string()).unwrap_or_default();
        let names: Vec<&str> = planned[0].shards.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["-40", "40-80", "80-c0", "c0-"]);
        assert_eq!(planned[0].shards[3].tablets[0].alias(), "zone1-0000000400");
    }

    #[test]
    fn shell_word_quotes_only_when_needed() {
        assert_eq!(shell_word("app"), "app");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
