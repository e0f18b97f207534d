//! `shardcar local`: a whole Shardcar cluster on loopback for development and tests, the way
//! Vitess users use vttestserver — a real `mariadbd` per shard, the app sidecar in front.
//!
//! The cluster is planned as keyspaces → shards → tablets before anything starts, so that
//! replicas and etcd slot in later. Each shard has one primary tablet: a mariadbd with a
//! db-role sidecar beside it (unless `--no-db-role`), and one app sidecar routes every
//! keyspace in front of them, all in this process.

pub mod mariadb;
pub mod process;

mod error;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::distributions::{Alphanumeric, DistString};
use shardcar_filter::protocol::auth::{
    format_native_hash, native_password_hash, sha2_password_hash,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::config::{
    AppConfig, KeyspaceConfig, ShardConfig, ShardingConfig, TransactionMode, UpstreamConfig,
    UserConfig,
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
    /// Rows a scatter query may hold while merging.
    #[arg(long, default_value_t = 100_000)]
    pub max_merge_rows: usize,
    /// Connect the app sidecar straight to each mariadbd instead of through a db-role
    /// sidecar beside it (the default runs one per tablet, as in production).
    #[arg(long)]
    pub no_db_role: bool,
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
            max_merge_rows: 100_000,
            no_db_role: false,
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

/// The tablet types a shard will have; only primaries run today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TabletType {
    Primary,
}

#[derive(Debug, Clone)]
struct TabletPlan {
    uid: u32,
    tablet_type: TabletType,
}

impl TabletPlan {
    fn alias(&self) -> String {
        format!("{CELL}-{:010}", self.uid)
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
                let plan = ShardPlan {
                    name,
                    tablets: vec![TabletPlan {
                        uid: next_uid,
                        tablet_type: TabletType::Primary,
                    }],
                };
                next_uid += 100;
                plan
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
    alias: String,
    tablet_type: TabletType,
    db: MariaDb,
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
                    let db = MariaDb::start(MariaDbOptions {
                        data_dir: Some(root.join(format!("vt_{:010}", tablet.uid))),
                        port: None,
                        server_id: tablet.uid,
                        extra_args: Vec::new(),
                        root_password: root_password.clone(),
                        log_bin: true,
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
                        alias,
                        tablet_type: tablet.tablet_type,
                        db,
                    });
                }
            }
        }
        let mut data = Vec::new();
        for ks in &keyspaces {
            let mut created = false;
            for tablet in tablets.iter().filter(|t| t.keyspace == ks.name) {
                created |= create_keyspace_database(tablet, ks).await?;
            }
            if created {
                for (name, sql) in data_files(&ks.schema)? {
                    data.push((ks.name.clone(), name, sql));
                }
            }
        }
        serve(&args, &keyspaces, &tablets, &root, &data, shutdown, started).await
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

/// Starts a db-role sidecar beside every primary (unless `--no-db-role`) and the app
/// sidecar in front of them, in-process, and runs until shutdown.
async fn serve(
    args: &LocalArgs,
    keyspaces: &[KeyspacePlan],
    tablets: &[Tablet],
    root: &Path,
    data: &[(String, String, String)],
    shutdown: watch::Receiver<bool>,
    started: Instant,
) -> anyhow::Result<()> {
    let upstream_password = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
    for tablet in tablets
        .iter()
        .filter(|t| t.tablet_type == TabletType::Primary)
    {
        tablet
            .db
            .create_user(UPSTREAM_USER, &upstream_password, "ALL PRIVILEGES ON *.*")
            .await?;
    }
    let password_file = root.join("upstream-password");
    write_secret(&password_file, &upstream_password)?;

    // Where the app sidecar reaches each primary: its db-role sidecar, or mariadbd itself.
    let mut db_sidecars = Vec::new();
    let mut addresses = std::collections::HashMap::new();
    for tablet in tablets
        .iter()
        .filter(|t| t.tablet_type == TabletType::Primary)
    {
        let address = if args.no_db_role {
            // Every tablet runs on this machine: its Unix socket skips the TCP stack.
            format!("unix:{}", tablet.db.socket().display())
        } else {
            let config = db_config(tablet, &upstream_password, &password_file);
            let server = crate::app::AppServer::bind_role(config, crate::app::Role::Db)
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
    let result = serve_app(
        args,
        keyspaces,
        tablets,
        &addresses,
        root,
        data,
        &password_file,
        shutdown,
        started,
    )
    .await;
    for db in db_sidecars {
        if let Ok(Err(e)) = db.await {
            tracing::warn!(error = %e, "a db sidecar failed");
        }
    }
    result
}

/// Runs the app sidecar in front of the primaries at `addresses` until shutdown.
#[allow(clippy::too_many_arguments)]
async fn serve_app(
    args: &LocalArgs,
    keyspaces: &[KeyspacePlan],
    tablets: &[Tablet],
    addresses: &std::collections::HashMap<String, String>,
    root: &Path,
    data: &[(String, String, String)],
    password_file: &Path,
    mut shutdown: watch::Receiver<bool>,
    started: Instant,
) -> anyhow::Result<()> {
    let (Some(ks), Some(primary)) = (
        keyspaces.first(),
        tablets
            .iter()
            .find(|t| t.tablet_type == TabletType::Primary),
    ) else {
        bail!("no primary tablet to serve");
    };
    let address = |t: &Tablet| {
        addresses
            .get(&t.alias)
            .cloned()
            .unwrap_or_else(|| t.db.address())
    };
    let mut config = app_config(args, address(primary), &ks.name, password_file);
    if keyspaces.len() > 1 || keyspaces.iter().any(|k| k.shards.len() > 1) || args.vschema.is_some()
    {
        let mut sharding = sharding_config(args, tablets, address);
        if sharding.vschema_file.is_none() && demo_mode(args) {
            let path = root.join("demo-vschema.json");
            std::fs::write(&path, DEMO_VSCHEMA)
                .with_context(|| format!("writing {}", path.display()))?;
            sharding.vschema_file = Some(path);
        }
        config.sharding = Some(sharding);
    }
    let mut app = tokio::spawn(crate::app::run(config, shutdown.clone()));

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
/// sidecar's account and logging in to mariadbd with it over the Unix socket.
fn db_config(tablet: &Tablet, upstream_password: &str, password_file: &Path) -> AppConfig {
    AppConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        admin_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        drain_timeout_ms: LOCAL_DRAIN_TIMEOUT_MS,
        users: vec![user(UPSTREAM_USER, upstream_password)],
        upstream: UpstreamConfig {
            address: format!("unix:{}", tablet.db.socket().display()),
            user: UPSTREAM_USER.to_string(),
            password_file: Some(password_file.to_path_buf()),
            ..UpstreamConfig::default()
        },
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
        max_merge_rows: args.max_merge_rows,
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
