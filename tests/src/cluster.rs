//! Clusters of real processes: the shape later issues ask for (shards × primary + GTID
//! replicas, an etcd quorum, the sidecar in front) and the one cluster shared by every test of
//! a test binary.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context};
use shardcar::local::mariadb::{MariaDb, MariaDbOptions};

use crate::sidecar::{SidecarOptions, SidecarProcess};
use shardcar::local::etcd::{etcd_cluster, EtcdCluster};

/// What to start. `ClusterSpec { shards: 2, replicas: 2, etcd_members: 3, .. }` is where the
/// sharding and failover issues are headed; today `shards` must be 1.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Shards of the one keyspace (only 1 for now: the app role has one upstream).
    pub shards: usize,
    /// GTID replicas per shard (the primary then runs with a binary log).
    pub replicas: usize,
    /// etcd members (0 = none).
    pub etcd_members: usize,
    /// Raw YAML appended to the sidecar's config.
    pub sidecar_extra_yaml: String,
    /// Where data dirs go; `None` = temp dirs removed on drop.
    pub data_root: Option<PathBuf>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            shards: 1,
            replicas: 0,
            etcd_members: 0,
            sidecar_extra_yaml: String::new(),
            data_root: None,
        }
    }
}

/// One shard: a primary and its replicas.
#[derive(Debug)]
pub struct Shard {
    pub primary: MariaDb,
    pub replicas: Vec<MariaDb>,
}

/// A running cluster: MariaDB (the first shard's primary), the app sidecar in front, and the
/// credentials tests use. The application account exists both in the sidecar and in MariaDB,
/// so a test can run the same statement direct and through the sidecar.
#[derive(Debug)]
pub struct Cluster {
    /// The first shard's primary (what the sidecar forwards to).
    pub mariadb: MariaDb,
    pub sidecar: SidecarProcess,
    pub app_user: String,
    pub app_password: String,
    /// A database created for the tests.
    pub database: String,
    /// The first shard's replicas.
    pub replicas: Vec<MariaDb>,
    /// Shards after the first (empty until sharding lands).
    pub other_shards: Vec<Shard>,
    pub etcd: Option<EtcdCluster>,
    /// The sidecar's own MariaDB account.
    pub upstream_user: String,
    pub upstream_password: String,
}

const SERVER_ID_BASE: u32 = 100;
const REPL_USER: &str = "repl";
const REPL_PASSWORD: &str = "repl";

impl Cluster {
    /// Starts everything `spec` asks for and waits until it is ready.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Cluster> {
        if spec.shards != 1 {
            bail!(
                "ClusterSpec.shards = {}: only 1 shard is supported until the app role routes \
                 to several upstreams",
                spec.shards
            );
        }
        let data_dir = |name: &str| spec.data_root.as_ref().map(|root| root.join(name));
        let primary = MariaDb::start(MariaDbOptions {
            data_dir: data_dir("tablet-100"),
            server_id: SERVER_ID_BASE,
            log_bin: spec.replicas > 0,
            ..MariaDbOptions::default()
        })
        .await
        .context("starting the primary")?;

        let database = "shardcar_test".to_string();
        let (app_user, app_password) = ("app".to_string(), "app".to_string());
        let (upstream_user, upstream_password) =
            ("shardcar".to_string(), "shardcar-upstream".to_string());
        primary
            .exec(&format!("CREATE DATABASE IF NOT EXISTS `{database}`;"))
            .await?;
        primary
            .create_user(&upstream_user, &upstream_password, "ALL PRIVILEGES ON *.*")
            .await?;
        primary
            .create_user(&app_user, &app_password, "ALL PRIVILEGES ON *.*")
            .await?;
        if spec.replicas > 0 {
            primary
                .create_user(REPL_USER, REPL_PASSWORD, "REPLICATION SLAVE ON *.*")
                .await?;
        }

        let mut replicas = Vec::with_capacity(spec.replicas);
        for i in 0..spec.replicas {
            let server_id = SERVER_ID_BASE + 1 + i as u32;
            let replica = start_replica(
                &primary,
                server_id,
                data_dir(&format!("tablet-{server_id}")),
            )
            .await
            .with_context(|| format!("starting replica {server_id}"))?;
            replicas.push(replica);
        }

        let etcd = if spec.etcd_members > 0 {
            Some(etcd_cluster(spec.etcd_members).await?)
        } else {
            None
        };

        let sidecar_parent = spec.data_root.clone().unwrap_or_else(std::env::temp_dir);
        let sidecar = SidecarProcess::start_in(
            SidecarOptions {
                upstream_address: primary.address(),
                upstream_user: upstream_user.clone(),
                upstream_password: upstream_password.clone(),
                app_user: app_user.clone(),
                app_password: app_password.clone(),
                extra_yaml: spec.sidecar_extra_yaml.clone(),
                ..SidecarOptions::default()
            },
            &sidecar_parent,
        )
        .context("starting the app sidecar")?;

        Ok(Cluster {
            mariadb: primary,
            sidecar,
            app_user,
            app_password,
            database,
            replicas,
            other_shards: Vec::new(),
            etcd,
            upstream_user,
            upstream_password,
        })
    }

    /// Options for another sidecar in front of this cluster's MariaDB, with the same accounts
    /// as [`Cluster::sidecar`] and `extra_yaml` appended to its config.
    pub fn sidecar_options(&self, extra_yaml: impl Into<String>) -> SidecarOptions {
        SidecarOptions {
            upstream_address: self.mariadb.address(),
            upstream_user: self.upstream_user.clone(),
            upstream_password: self.upstream_password.clone(),
            app_user: self.app_user.clone(),
            app_password: self.app_password.clone(),
            extra_yaml: extra_yaml.into(),
            ..SidecarOptions::default()
        }
    }

    /// A `mysql://` URL for the application account through the sidecar.
    pub fn sidecar_url(&self) -> String {
        self.url(self.sidecar.port())
    }

    /// The same account, direct to MariaDB.
    pub fn direct_url(&self) -> String {
        self.url(self.mariadb.port())
    }

    /// A `mysql://` URL for the application account and the test database on
    /// 127.0.0.1:`port` (the sidecar's, MariaDB's or another sidecar's in front of it).
    pub fn url(&self, port: u16) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{port}/{}",
            self.app_user, self.app_password, self.database
        )
    }
}

/// Starts a replica of `primary` (which must run with `log_bin`) using GTID
/// (`MASTER_USE_GTID=slave_pos`) and waits until it has caught up.
pub async fn start_replica(
    primary: &MariaDb,
    server_id: u32,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<MariaDb> {
    let replica = MariaDb::start(MariaDbOptions {
        data_dir,
        server_id,
        log_bin: true,
        root_password: primary.root_password().to_string(),
        extra_args: vec!["--read-only=1".to_string()],
        ..MariaDbOptions::default()
    })
    .await?;
    replica
        .exec(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{REPL_USER}', \
             MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, \
             MASTER_CONNECT_RETRY=1;\nSTART SLAVE;",
            primary.port()
        ))
        .await?;
    let pos = primary.exec("SELECT @@gtid_binlog_pos;").await?;
    let waited = replica
        .exec(&format!("SELECT MASTER_GTID_WAIT('{}', 30);", pos.trim()))
        .await?;
    if waited.trim() != "0" {
        let status = replica
            .exec("SHOW SLAVE STATUS\\G")
            .await
            .unwrap_or_default();
        bail!(
            "replica {server_id} did not reach {} within 30 s:\n{status}",
            pos.trim()
        );
    }
    Ok(replica)
}

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static SHARED: OnceLock<Cluster> = OnceLock::new();

/// One MariaDB + one app sidecar for the whole test binary, started on first use.
///
/// The processes are spawned by the worker threads of a runtime kept in a static (they live as
/// long as the binary) and die with the binary through `PR_SET_PDEATHSIG`; data dirs live
/// under `$TMPDIR/shardcar-shared-<pid>` and are swept by the next binary once `<pid>` is gone.
/// Under `cargo nextest` every test is its own process, so "shared" means per test there.
/// Safe to call from sync tests and from inside `#[tokio::test]`.
pub fn shared_cluster() -> &'static Cluster {
    SHARED.get_or_init(|| {
        #[allow(clippy::expect_used)]
        let runtime = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("shared-cluster")
                .enable_all()
                .build()
                .expect("building the shared cluster's runtime")
        });
        sweep_stale_shared_dirs();
        let root = std::env::temp_dir().join(format!("shardcar-shared-{}", std::process::id()));
        let (tx, rx) = mpsc::channel();
        runtime.spawn(async move {
            let spec = ClusterSpec {
                data_root: Some(root),
                ..ClusterSpec::default()
            };
            let _ = tx.send(Cluster::start(spec).await);
        });
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(Ok(cluster)) => cluster,
            Ok(Err(e)) => panic!("starting the shared test cluster failed: {e:#}"),
            Err(e) => panic!("starting the shared test cluster did not finish: {e}"),
        }
    })
}

/// Removes `shardcar-shared-<pid>` dirs of test binaries that are no longer running.
fn sweep_stale_shared_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shardcar-shared-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
