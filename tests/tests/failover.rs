//! Moving primaries under load, end to end: `shardcar local` with 2 shards × (primary + 2
//! GTID replicas), every tablet behind its db sidecar, the topology in a real 3-member etcd
//! cluster, and the app sidecar following it. Planned reparents run while sysbench writes
//! through the app sidecar; reads for replicas follow the lag threshold.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use shardcar::local::mariadb::{MariaDb, MariaDbOptions};
use shardcar::local::{run_until, Durability, LocalArgs, TopoMode};
use shardcar_control::{planned_reparent, ReparentOptions};
use shardcar_tests::client::{opts, run_output};
use shardcar_tests::{etcd_cluster, free_port, http_get, http_post, http_post_as, EtcdCluster};
use shardcar_topo::{EtcdStore, Layout, TabletRecord, TabletType, Topology};

const ROWS: usize = 2_000;
const KEYSPACE: &str = "sb";

const VSCHEMA: &str = r#"{"keyspaces": {"sb": {"sharded": true,
  "vindexes": {"hash": {"type": "hash"}},
  "tables": {"sbtest1": {"column_vindexes": [{"column": "id", "name": "hash"}]},
             "acked": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}}}"#;

/// sysbench's own table.
const SCHEMA: &str = "CREATE TABLE sbtest1 (id INT NOT NULL, k INT NOT NULL DEFAULT 0, \
    c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', PRIMARY KEY (id), \
    KEY k_1 (k)) ENGINE=InnoDB;\n\
    CREATE TABLE acked (id BIGINT NOT NULL PRIMARY KEY) ENGINE=InnoDB;\n";

/// A running local cluster with its topology.
struct Cluster {
    etcd: EtcdCluster,
    dir: tempfile::TempDir,
    topology: Topology,
    port: u16,
    /// The app sidecar's admin port.
    admin_port: u16,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn write_schema(dir: &Path) {
    let ks = dir.join("schema").join(KEYSPACE);
    std::fs::create_dir_all(&ks).expect("schema dir");
    std::fs::write(ks.join("001_sbtest.sql"), SCHEMA).expect("schema file");
    let mut rows = String::new();
    for chunk in (1..=ROWS).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, {}, 'c{i}', 'p{i}')", i % 100))
            .collect();
        rows.push_str(&format!(
            "INSERT INTO sbtest1 (id, k, c, pad) VALUES {};\n",
            values.join(", ")
        ));
    }
    std::fs::write(ks.join("002_rows.data.sql"), rows).expect("data file");
    std::fs::write(dir.join("vschema.json"), VSCHEMA).expect("vschema file");
}

async fn start(replicas: u32, shards: u32, durability: Durability) -> Cluster {
    start_with(replicas, shards, durability, 30_000).await
}

async fn start_with(
    replicas: u32,
    shards: u32,
    durability: Durability,
    max_lag_ms: u64,
) -> Cluster {
    start_tweaked(replicas, shards, durability, max_lag_ms, |_| {}).await
}

async fn start_tweaked(
    replicas: u32,
    shards: u32,
    durability: Durability,
    max_lag_ms: u64,
    tweak: impl FnOnce(&mut LocalArgs),
) -> Cluster {
    let etcd = etcd_cluster(3).await.expect("a 3-member etcd cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    write_schema(dir.path());
    let port = free_port();
    let admin_port = free_port();
    let args = LocalArgs {
        keyspaces: vec![format!("{KEYSPACE}:{shards}")
            .parse()
            .expect("keyspace arg")],
        schema_dir: Some(dir.path().join("schema")),
        vschema: Some(dir.path().join("vschema.json")),
        port,
        admin_port,
        data_dir: Some(dir.path().join("cluster")),
        replicas,
        topo: Some(TopoMode::Etcd),
        etcd: etcd.endpoints(),
        durability,
        max_replica_lag_ms: max_lag_ms,
        ..LocalArgs::default()
    };
    let mut args = args;
    tweak(&mut args);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(run_until(args, shutdown));
    shardcar_tests::wait_for_local(port, &mut task, Duration::from_secs(120)).await;
    let store = EtcdStore::connect(&etcd.endpoints())
        .await
        .expect("connecting to etcd");
    let topology = Topology::new(Arc::new(store), Layout::default());
    let cluster = Cluster {
        etcd,
        dir,
        topology,
        port,
        admin_port,
        stop,
        task,
    };
    // The rows are loaded through the sidecar once it is up.
    let mut conn = cluster.conn(KEYSPACE).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM sbtest1")
            .await
            .ok()
            .flatten();
        if n == Some(ROWS as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "rows not loaded: {n:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster
}

impl Cluster {
    async fn conn(&self, db: &str) -> mysql_async::Conn {
        mysql_async::Conn::new(opts(self.port, "app", "app").db_name(Some(db)))
            .await
            .expect("connecting through the app sidecar")
    }

    /// The db sidecars' admin token, which tablet actions need.
    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cluster/action-token"))
            .expect("the action token")
            .trim()
            .to_string()
    }

    fn reparent_options(&self) -> ReparentOptions {
        ReparentOptions {
            action_token: Some(self.token().into()),
            ..ReparentOptions::default()
        }
    }

    async fn tablets(&self) -> Vec<TabletRecord> {
        self.topology.tablets(None).await.expect("listing tablets")
    }

    /// Waits until every shard has one primary and replicating replicas, then until each
    /// replica has applied everything its primary has (the tablets' own `wait_position`
    /// action); the tablets then.
    async fn wait_converged(&self) -> Vec<TabletRecord> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let tablets = loop {
            let tablets = self.tablets().await;
            let settled = tablets.iter().all(|t| {
                let primaries = tablets
                    .iter()
                    .filter(|p| p.shard == t.shard && p.tablet_type == TabletType::Primary)
                    .count();
                primaries == 1
                    && (t.tablet_type == TabletType::Primary
                        || (t.tablet_type == TabletType::Replica && t.health.replicating))
            });
            if settled {
                break tablets;
            }
            assert!(
                Instant::now() < deadline,
                "tablets did not settle: {tablets:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for primary in tablets
            .iter()
            .filter(|t| t.tablet_type == TabletType::Primary)
        {
            let status = tablet_status(primary.admin_port);
            let position = status["position"].as_str().expect("position").to_string();
            for replica in tablets
                .iter()
                .filter(|t| t.shard == primary.shard && t.alias != primary.alias)
            {
                let path = format!(
                    "/debug/tablet/wait_position?position={}&timeout_ms=4000",
                    position.replace(',', "%2C")
                );
                let (code, body) = http_post_as(replica.admin_port, &path, &self.token())
                    .expect("wait_position request");
                assert_eq!(
                    code, 200,
                    "{} did not reach {position}: {body}",
                    replica.alias
                );
            }
        }
        tablets
    }

    async fn shutdown(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("local stops")
            .expect("local task")
            .expect("local exits cleanly");
    }
}

/// sysbench oltp_write_only through the app sidecar, statements outside transactions, for
/// `seconds`; its report.
fn sysbench(port: u16, seconds: u64) -> String {
    let mut cmd = Command::new("sysbench");
    cmd.args([
        "oltp_write_only",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        &format!("--mysql-port={port}"),
        "--mysql-user=app",
        "--mysql-password=app",
        &format!("--mysql-db={KEYSPACE}"),
        "--tables=1",
        &format!("--table-size={ROWS}"),
        "--threads=8",
        &format!("--time={seconds}"),
        "--report-interval=1",
        "--skip-trx=on",
        "--auto-inc=off",
        // DELETE + INSERT pairs outside transactions collide on duplicate keys (the
        // workload's own race, also against one MariaDB): updates only.
        "--delete_inserts=0",
        "--rand-type=uniform",
        "run",
    ]);
    let out = run_output(cmd, None, Duration::from_secs(seconds + 120), "sysbench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && !stdout.contains("FATAL"),
        "sysbench failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// A `name: N` figure from sysbench's summary.
fn figure(report: &str, name: &str) -> Option<u64> {
    report
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn planned_reparents_under_write_load_cause_no_client_errors() {
    let cluster = start(2, 2, Durability::None).await;
    let before = cluster.wait_converged().await;
    let primaries = |tablets: &[TabletRecord]| -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = tablets
            .iter()
            .filter(|t| t.tablet_type == TabletType::Primary)
            .map(|t| (t.shard.clone(), t.alias.clone()))
            .collect();
        p.sort();
        p
    };
    let first = primaries(&before);
    assert_eq!(first.len(), 2, "{before:#?}");

    let port = cluster.port;
    let load = tokio::task::spawn_blocking(move || sysbench(port, 14));
    let options = cluster.reparent_options();
    let mut reports = Vec::new();
    // One shard, then the other, then both at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    reports.push(
        planned_reparent(&cluster.topology, KEYSPACE, "-80", &options)
            .await
            .expect("reparent -80"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    reports.push(
        planned_reparent(&cluster.topology, KEYSPACE, "80-", &options)
            .await
            .expect("reparent 80-"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (a, b) = tokio::join!(
        planned_reparent(&cluster.topology, KEYSPACE, "-80", &options),
        planned_reparent(&cluster.topology, KEYSPACE, "80-", &options),
    );
    reports.push(a.expect("second reparent of -80"));
    reports.push(b.expect("second reparent of 80-"));
    let report = load.await.expect("sysbench task");

    for r in &reports {
        eprintln!(
            "reparent {}/{}: {} -> {} term {}: writes held {} ms, total {} ms",
            r.keyspace, r.shard, r.old_primary, r.new_primary, r.term, r.write_pause_ms, r.total_ms
        );
        assert!(r.not_repointed.is_empty(), "{r:?}");
        assert_ne!(r.old_primary, r.new_primary);
    }
    eprintln!("{report}");
    assert_eq!(figure(&report, "ignored errors:"), Some(0), "{report}");
    assert_eq!(figure(&report, "reconnects:"), Some(0), "{report}");
    assert!(figure(&report, "write:").unwrap_or(0) > 1_000, "{report}");

    // Every tablet converges on its new primary; the old primaries replicate read-only.
    let after = cluster.wait_converged().await;
    let now = primaries(&after);
    assert_eq!(now.len(), 2);
    for (shard, primary) in &now {
        let last = reports
            .iter()
            .rev()
            .find(|r| &r.shard == shard)
            .expect("a reparent of the shard");
        assert_eq!(primary, &last.new_primary);
        let old = after
            .iter()
            .find(|t| t.alias == last.old_primary)
            .expect("old primary");
        assert_eq!(old.tablet_type, TabletType::Replica);
        assert!(old.health.read_only && old.health.replicating, "{old:?}");
    }
    let terms: Vec<u64> = shard_terms(&cluster.topology).await;
    assert_eq!(terms, vec![3, 3], "two reparents per shard after term 1");

    // Nothing was lost: the row count is what it was (sysbench deletes and re-inserts).
    let mut conn = cluster.conn(KEYSPACE).await;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM sbtest1")
        .await
        .expect("count");
    assert_eq!(n, Some(ROWS as u64));
    drop(conn);
    cluster.shutdown().await;
}

/// A tablet's `/debug/tablet` page.
fn tablet_status(admin_port: u16) -> serde_json::Value {
    let (code, body) = http_get(admin_port, "/debug/tablet").expect("tablet status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("tablet status JSON")
}

async fn shard_terms(topology: &Topology) -> Vec<u64> {
    let mut terms = Vec::new();
    for shard in ["-80", "80-"] {
        let (record, _) = topology
            .shard(KEYSPACE, shard)
            .await
            .expect("shard record")
            .expect("shard exists");
        terms.push(record.term);
    }
    terms
}

/// Inserts unique ids into `acked` from `tasks` connections until `stop`, remembering
/// each id the sidecar acknowledged and each error.
async fn insert_load(
    port: u16,
    tasks: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<u64>, Vec<String>, Duration) {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts(port, "app", "app").db_name(Some(KEYSPACE)))
                .await
                .expect("load connection");
            let (mut acked, mut errors) = (Vec::new(), Vec::new());
            let mut last = Instant::now();
            let mut longest = Duration::ZERO;
            let mut n = 0u64;
            while !*stop.borrow() {
                n += 1;
                let id = task * 1_000_000_000 + n;
                match conn
                    .query_drop(format!("INSERT INTO acked (id) VALUES ({id})"))
                    .await
                {
                    Ok(()) => {
                        acked.push(id);
                        longest = longest.max(last.elapsed());
                        last = Instant::now();
                    }
                    Err(e) => {
                        errors.push(e.to_string());
                        if let Ok(c) =
                            mysql_async::Conn::new(opts(port, "app", "app").db_name(Some(KEYSPACE)))
                                .await
                        {
                            conn = c;
                        }
                    }
                }
            }
            (acked, errors, longest)
        }));
    }
    let (mut acked, mut errors, mut longest) = (Vec::new(), Vec::new(), Duration::ZERO);
    for h in handles {
        let (a, e, l) = h.await.expect("load task");
        acked.extend(a);
        errors.extend(e);
        longest = longest.max(l);
    }
    (acked, errors, longest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_semi_sync_primary_loses_no_acknowledged_write() {
    let cluster = start(2, 2, Durability::SemiSync).await;
    let before = cluster.wait_converged().await;
    let primary = before
        .iter()
        .find(|t| t.shard == "-80" && t.tablet_type == TabletType::Primary)
        .expect("a primary for -80")
        .clone();
    // Semi-sync is on before the load starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster
        .tablets()
        .await
        .iter()
        .any(|t| t.alias == primary.alias && t.health.semi_sync_primary)
    {
        assert!(Instant::now() < deadline, "semi-sync never came on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (stop_load, load_stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(insert_load(cluster.port, 4, load_stopped));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let uid = primary
        .alias
        .rsplit_once('-')
        .expect("alias")
        .1
        .trim_start_matches('0');
    let data = cluster
        .dir
        .path()
        .join("cluster")
        .join(format!("vt_{:0>10}", uid));
    let pid: u32 = std::fs::read_to_string(data.join("mariadbd.pid"))
        .expect("primary pid file")
        .trim()
        .parse()
        .expect("pid");
    let killed = Instant::now();
    assert!(shardcar::local::process::send_signal(pid, libc::SIGKILL));
    // The orchestrator promotes a replica.
    let promoted = loop {
        let (record, _) = cluster
            .topology
            .shard(KEYSPACE, "-80")
            .await
            .expect("shard record")
            .expect("shard");
        if record.term >= 2 && !record.reparenting {
            break (killed.elapsed(), record);
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_load.send(true);
    let (acked, errors, longest) = load.await.expect("load");
    eprintln!(
        "kill -9 of {}: new primary {:?} published after {} ms; longest stall of a writer {} ms; {} writes acknowledged, errors: {errors:?}",
        primary.alias,
        promoted.1.primary_alias,
        promoted.0.as_millis(),
        longest.as_millis(),
        acked.len()
    );
    assert_ne!(
        promoted.1.primary_alias.as_deref(),
        Some(primary.alias.as_str())
    );
    // Only writes in flight when mysqld died may fail (their outcome is unknown).
    assert!(errors.len() <= 4, "{errors:?}");
    assert!(acked.len() > 100);

    // Every acknowledged write is on the new primary.
    let mut conn = cluster.conn(KEYSPACE).await;
    // More rows than the db role lets a statement read by default (max_rows 10,000).
    conn.query_drop("SET workload = 'olap'")
        .await
        .expect("olap");
    let present: Vec<u64> = conn.query("SELECT id FROM acked").await.expect("ids");
    let present: std::collections::HashSet<u64> = present.into_iter().collect();
    let missing: Vec<&u64> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    drop(conn);

    // The old primary, restarted, is fenced and rejoins as a read-only replica.
    let root_password = std::fs::read_to_string(cluster.dir.path().join("cluster/root-password"))
        .expect("root password");
    let restarted = MariaDb::start(MariaDbOptions {
        data_dir: Some(data),
        port: Some(primary.mysqld_port),
        server_id: uid.parse().expect("uid"),
        // As `shardcar local` starts every tablet: read-only until its sidecar decides.
        extra_args: vec![
            "--read-only=ON".to_string(),
            "--rpl-semi-sync-slave-enabled=ON".to_string(),
        ],
        root_password: root_password.trim().to_string(),
        log_bin: true,
        netns: None,
    })
    .await
    .expect("restarting the old primary");
    // Fenced: read-only and no longer the primary, within a few health intervals.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rejoined = loop {
        let t = cluster
            .tablets()
            .await
            .into_iter()
            .find(|t| t.alias == primary.alias);
        if let Some(t) = t.filter(|t| {
            t.tablet_type != TabletType::Primary && t.health.serving && t.health.read_only
        }) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the old primary was not fenced: {:#?}",
            cluster.tablets().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // It rejoins as a replica. If it kept the transaction in flight at the kill that no
    // replica acknowledged (its client got an error; MariaDB 10.11's semi-sync crash
    // recovery does not always drop it), replication refuses it (errant GTID, 1236) and
    // the orchestrator rebuilds it from the new primary. Either way it ends up holding
    // exactly the new primary's rows.
    let new_primary = cluster
        .tablets()
        .await
        .into_iter()
        .find(|t| Some(&t.alias) == promoted.1.primary_alias.as_ref())
        .expect("the new primary's record");
    let mut on_new =
        mysql_async::Conn::new(opts(new_primary.mysqld_port, "root", root_password.trim()))
            .await
            .expect("root on the new primary's mysqld");
    let shard_rows: Option<usize> = on_new
        .query_first(format!("SELECT COUNT(*) FROM {KEYSPACE}.acked"))
        .await
        .expect("the new primary's row count");
    drop(on_new);
    let deadline = Instant::now() + Duration::from_secs(120);
    let count = |out: String| {
        out.lines()
            .last()
            .unwrap_or("")
            .trim()
            .parse::<usize>()
            .ok()
    };
    loop {
        let t = cluster
            .tablets()
            .await
            .into_iter()
            .find(|t| t.alias == primary.alias);
        let rows = restarted
            .exec_in(KEYSPACE, "SELECT COUNT(*) FROM acked")
            .await
            .ok()
            .and_then(count);
        if t.is_some_and(|t| t.health.replicating) && rows == shard_rows {
            break;
        }
        if Instant::now() > deadline {
            let status = restarted
                .exec("SHOW ALL SLAVES STATUS\\G")
                .await
                .unwrap_or_default();
            panic!("the old primary did not rejoin with every row ({rows:?} of {shard_rows:?}): {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, metrics) = http_get(primary.admin_port, "/metrics").expect("old primary's metrics");
    let rebuilt = shardcar_tests::metric_or_zero(
        &metrics,
        "shardcar_tablet_actions_total{action=\"rebuild\",result=\"ok\"}",
    );
    eprintln!("the old primary rejoined as a replica with every row ({rebuilt} rebuilds)");
    assert_eq!(rejoined.primary_term, 1);
    let upstream = std::fs::read_to_string(cluster.dir.path().join("cluster/upstream-password"))
        .expect("upstream password");
    let mut old = mysql_async::Conn::new(
        opts(rejoined.mysql_port, "shardcar", upstream.trim()).db_name(Some(KEYSPACE)),
    )
    .await
    .expect("connecting to the old primary's db sidecar");
    let write = old.query_drop("INSERT INTO acked (id) VALUES (43)").await;
    let code = write
        .as_ref()
        .err()
        .and_then(shardcar_tests::client::server_code);
    assert_eq!(code, Some(1290), "the old primary took a write: {write:?}");
    drop(old);
    cluster.shutdown().await;
    restarted.stop().await;
}

/// The server that answers a read of row 1 (in -80) on `conn`.
async fn read_server(conn: &mut mysql_async::Conn) -> u32 {
    let id: Option<u32> = conn
        .query_first("SELECT @@server_id FROM sbtest1 WHERE id = 1")
        .await
        .expect("replica read");
    id.expect("row 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_cell_durability_waits_for_a_replica_in_another_cell() {
    // The primary and one replica in zone1, the other replica in zone2. No orchestrator:
    // it would repair the replication this test stops.
    let cluster = start_tweaked(2, 1, Durability::CrossCell, 30_000, |a| {
        a.cells = vec!["zone1".into(), "zone2".into()];
        a.no_orchestrator = true;
    })
    .await;
    cluster.wait_converged().await;
    // Only the replica in the other cell acknowledges.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (near, far) = loop {
        let tablets = cluster.tablets().await;
        let primary_ok = tablets.iter().any(|t| {
            t.tablet_type == TabletType::Primary && t.cell == "zone1" && t.health.semi_sync_primary
        });
        let replica = |cell: &str| {
            tablets
                .iter()
                .find(|t| t.tablet_type == TabletType::Replica && t.cell == cell)
                .cloned()
        };
        if let (true, Some(near), Some(far)) = (primary_ok, replica("zone1"), replica("zone2")) {
            if far.health.semi_sync_replica && !near.health.semi_sync_replica {
                break (near, far);
            }
        }
        assert!(
            Instant::now() < deadline,
            "cross_cell semi-sync never applied: {tablets:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let root_password = std::fs::read_to_string(cluster.dir.path().join("cluster/root-password"))
        .expect("root password");
    let root = |port: u16| {
        let password = root_password.trim().to_string();
        async move {
            mysql_async::Conn::new(opts(port, "root", &password))
                .await
                .expect("root on a tablet's mysqld")
        }
    };
    // With the far replica's IO thread stopped, a commit waits: the near replica receives
    // and applies it, but its acknowledgement does not count.
    let mut far_root = root(far.mysqld_port).await;
    far_root
        .query_drop("STOP SLAVE IO_THREAD")
        .await
        .expect("stopping the far replica");
    let port = cluster.port;
    let write = tokio::spawn(async move {
        let mut conn = mysql_async::Conn::new(opts(port, "app", "app").db_name(Some(KEYSPACE)))
            .await
            .expect("connecting through the app sidecar");
        conn.query_drop("INSERT INTO acked (id) VALUES (11)").await
    });
    let mut near_root = root(near.mysqld_port).await;
    wait_for_row(&mut near_root, 11, "the near replica never got the row").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !write.is_finished(),
        "the commit returned with only a same-cell replica holding it: {:?}",
        write.await
    );
    // The far replica back: its acknowledgement releases the commit.
    far_root
        .query_drop("START SLAVE IO_THREAD")
        .await
        .expect("starting the far replica");
    tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .expect("the commit completes once the far replica acknowledges")
        .expect("write task")
        .expect("the insert");
    drop((far_root, near_root));
    cluster.shutdown().await;
}

/// Waits until a mysqld (a root session on it) holds row `id` of `acked`.
async fn wait_for_row(conn: &mut mysql_async::Conn, id: u64, failure: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: Option<u64> = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM {KEYSPACE}.acked WHERE id = {id}"
            ))
            .await
            .expect("a count of acked");
        if n == Some(1) {
            return;
        }
        assert!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `k` of sbtest1's row 5, read from the `target` tablet type.
async fn k_of_row_5(conn: &mut mysql_async::Conn, target: &str) -> u64 {
    let k: Option<u64> = conn
        .query_first(format!(
            "SELECT /* shardcar: target={target} */ k FROM sbtest1 WHERE id = 5"
        ))
        .await
        .expect("a read of k");
    k.expect("row 5")
}

/// Reads row `id` of `acked`, asking for a replica; the server that answered.
async fn read_own_write(conn: &mut mysql_async::Conn, id: u64) -> u32 {
    let read: Option<(u64, u32)> = conn
        .query_first(format!(
            "SELECT /* shardcar: target=replica */ id, @@server_id FROM acked WHERE id = {id}"
        ))
        .await
        .expect("read of the session's write");
    let (got, server) = read.expect("the session's own write is visible");
    assert_eq!(got, id);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_reads_by_hint_and_scatter_with_read_your_writes() {
    let cluster = start_tweaked(1, 2, Durability::None, 30_000, |a| {
        a.read_your_writes = true;
    })
    .await;
    let tablets = cluster.wait_converged().await;
    let admin = cluster.admin_port;
    let replica_reads = |target: &str| {
        let (_, m) = http_get(admin, "/metrics").expect("app sidecar metrics");
        shardcar_tests::metric_or_zero(
            &m,
            &format!("shardcar_replica_reads_total{{target=\"{target}\"}}"),
        )
    };
    let mut conn = cluster.conn(KEYSPACE).await;
    let primary_id = read_server(&mut conn).await;
    // A statement's hint sends it to a replica; the session still reads its primary.
    let hinted: Option<u32> = conn
        .query_first("SELECT /* shardcar: target=replica */ @@server_id FROM sbtest1 WHERE id = 1")
        .await
        .expect("hinted read");
    let replica_id = hinted.expect("row 1");
    assert_ne!(replica_id, primary_id, "the hint did not reach a replica");
    assert_eq!(read_server(&mut conn).await, primary_id);

    // A scatter read goes to one replica per shard and merges as usual.
    let before = replica_reads("replica");
    let n: Option<u64> = conn
        .query_first("SELECT /* shardcar: target=replica */ COUNT(*) FROM sbtest1")
        .await
        .expect("scatter read on replicas");
    assert_eq!(n, Some(ROWS as u64));
    assert_eq!(replica_reads("replica") - before, 2.0);

    // Read-your-writes: with every replica applying 3 s late (MASTER_DELAY), the
    // session's read of its own insert goes to the primary and finds the row; once the
    // replica has applied it, the replica serves the read.
    let root_password = std::fs::read_to_string(cluster.dir.path().join("cluster/root-password"))
        .expect("root password");
    for r in tablets
        .iter()
        .filter(|t| t.tablet_type == TabletType::Replica)
    {
        let mut c = mysql_async::Conn::new(opts(r.mysqld_port, "root", root_password.trim()))
            .await
            .expect("root on a replica");
        c.query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE")
            .await
            .expect("delaying the replica");
    }
    conn.query_drop("INSERT INTO acked (id) VALUES (7)")
        .await
        .expect("a write");
    let behind = |m: &str| shardcar_tests::metric_or_zero(m, "shardcar_replica_reads_behind_total");
    let (_, m) = http_get(admin, "/metrics").expect("metrics");
    let behind_before = behind(&m);
    let server = read_own_write(&mut conn, 7).await;
    let (_, m) = http_get(admin, "/metrics").expect("metrics");
    assert_eq!(
        behind(&m) - behind_before,
        1.0,
        "the replica was not passed over"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if read_own_write(&mut conn, 7).await != server {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the caught-up replica never served the read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A write through a server-side prepared statement relayed to its shard counts too
    // (the replicas are still 3 s late).
    let before = k_of_row_5(&mut conn, "primary").await;
    conn.exec_drop("UPDATE sbtest1 SET k = k + 1 WHERE id = ?", (5,))
        .await
        .expect("a prepared write");
    let after = k_of_row_5(&mut conn, "replica").await;
    assert_eq!(
        after,
        before + 1,
        "the session's prepared write is not visible"
    );
    drop(conn);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_with_errant_transactions_is_rebuilt_from_its_primary() {
    let cluster = start(1, 1, Durability::None).await;
    let tablets = cluster.wait_converged().await;
    let find = |t: TabletType| {
        tablets
            .iter()
            .find(|x| x.tablet_type == t)
            .expect("a primary and a replica")
            .clone()
    };
    let (primary, replica) = (find(TabletType::Primary), find(TabletType::Replica));
    let mut conn = cluster.conn(KEYSPACE).await;
    conn.query_drop("INSERT INTO acked (id) VALUES (1), (2), (3)")
        .await
        .expect("writes through the sidecar");
    drop(conn);

    // A transaction only the replica has (as a root session past read_only would write
    // it), then a repoint: replication now fails with 1236.
    let root_password = std::fs::read_to_string(cluster.dir.path().join("cluster/root-password"))
        .expect("root password");
    let mut root = mysql_async::Conn::new(opts(replica.mysqld_port, "root", root_password.trim()))
        .await
        .expect("root on the replica's mysqld");
    root.query_drop(format!("INSERT INTO {KEYSPACE}.acked (id) VALUES (999)"))
        .await
        .expect("an errant write");
    let repoint = format!(
        "/debug/tablet/replicate?host=127.0.0.1&port={}",
        primary.mysqld_port
    );
    // Tablet actions need the admin token.
    let (code, _) = http_post(replica.admin_port, &repoint).expect("replicate request");
    assert_eq!(code, 401);
    let (code, _) = http_post_as(replica.admin_port, &repoint, "wrong").expect("replicate request");
    assert_eq!(code, 401);
    let (code, body) =
        http_post_as(replica.admin_port, &repoint, &cluster.token()).expect("replicate request");
    assert_eq!(code, 200, "{body}");

    // The orchestrator sees error 1236 and rebuilds the replica from the primary: the
    // errant row is gone, every row of the primary is there, and it replicates again.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut saw_errant = false;
    loop {
        let t = cluster
            .tablets()
            .await
            .into_iter()
            .find(|t| t.alias == replica.alias)
            .expect("the replica's record");
        saw_errant |= t.health.replication_error == Some(1236);
        let rows: Vec<u64> = root
            .query(format!("SELECT id FROM {KEYSPACE}.acked ORDER BY id"))
            .await
            .unwrap_or_default();
        let (_, metrics) = http_get(replica.admin_port, "/metrics").expect("metrics");
        let rebuilt = shardcar_tests::metric_or_zero(
            &metrics,
            "shardcar_tablet_actions_total{action=\"rebuild\",result=\"ok\"}",
        );
        if t.health.replicating && rebuilt >= 1.0 && rows == [1, 2, 3] {
            assert_eq!(t.tablet_type, TabletType::Replica);
            assert!(t.health.read_only);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not rebuilt: rows {rows:?}, rebuilds {rebuilt}, {t:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("rebuilt (1236 seen in the topology: {saw_errant})");
    // It follows the primary again.
    let mut conn = cluster.conn(KEYSPACE).await;
    conn.query_drop("INSERT INTO acked (id) VALUES (4)")
        .await
        .expect("a write after the rebuild");
    wait_for_row(&mut root, 4, "the rebuilt replica does not replicate").await;
    drop((conn, root));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_replicas_get_no_reads_and_etcd_outages_do_not_stop_serving() {
    let cluster = start_with(1, 2, Durability::None, 1_000).await;
    let tablets = cluster.wait_converged().await;
    let replica = tablets
        .iter()
        .find(|t| t.shard == "-80" && t.tablet_type == TabletType::Replica)
        .expect("a replica of -80")
        .clone();
    let primary_uid = 100;
    let replica_uid: u32 = replica
        .alias
        .rsplit_once('-')
        .expect("alias")
        .1
        .parse()
        .expect("uid");

    // Reads for replicas go to the replica (id 1 hashes to -80).
    let mut reads = cluster.conn(KEYSPACE).await;
    reads
        .query_drop("USE sb@replica")
        .await
        .expect("use sb@replica");
    assert_eq!(read_server(&mut reads).await, replica_uid);

    // Delay the replica by 3 s (MASTER_DELAY): above the 1 s threshold it gets no reads.
    let dba = std::fs::read_to_string(cluster.dir.path().join("cluster/dba-password"))
        .expect("dba password");
    let mut on_replica =
        mysql_async::Conn::new(opts(replica.mysqld_port, "shardcar_dba", dba.trim()))
            .await
            .expect("connecting to the replica's mysqld");
    on_replica
        .query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE")
        .await
        .expect("delaying the replica");
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_server(&mut reads).await != primary_uid {
        assert!(
            Instant::now() < deadline,
            "the lagging replica kept its reads"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It catches up and gets the reads back.
    on_replica
        .query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE")
        .await
        .expect("undelaying the replica");
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_server(&mut reads).await != replica_uid {
        assert!(
            Instant::now() < deadline,
            "the replica did not get its reads back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(on_replica);

    // The etcd leader down: serving and reparenting go on.
    let mut cluster = cluster;
    let leader = cluster.etcd.leader().expect("an etcd leader");
    cluster.etcd.members[leader].kill9();
    let mut writes = cluster.conn(KEYSPACE).await;
    writes
        .query_drop("UPDATE sbtest1 SET k = k + 1 WHERE id = 1")
        .await
        .expect("a write with one etcd member down");
    // This reparent goes through the control API, as an operator's would.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("a port for the control API");
    let api_port = listener.local_addr().expect("address").port();
    let (stop_api, api_stopped) = tokio::sync::watch::channel(false);
    let api = tokio::spawn(shardcar_control::api::serve(
        listener,
        shardcar_control::Api {
            topology: cluster.topology.clone(),
            metrics: Default::default(),
            reparent: cluster.reparent_options(),
            config: None,
        },
        api_stopped,
    ));
    let path = format!("/reparent?keyspace={KEYSPACE}&shard=-80");
    let (code, _) = http_post(api_port, &path).expect("reparent request");
    assert_eq!(code, 401, "a reparent without the token");
    let (code, body) = http_post_as(api_port, &path, &cluster.token()).expect("reparent request");
    assert_eq!(code, 200, "a reparent with one etcd member down: {body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("the report");
    assert_eq!(report["not_repointed"], serde_json::json!([]), "{report}");
    let (_, shards) = http_get(api_port, "/debug/shards").expect("/debug/shards");
    let shards: serde_json::Value = serde_json::from_str(&shards).expect("shards JSON");
    let moved = shards
        .as_array()
        .and_then(|a| a.iter().find(|s| s["shard"] == "-80"))
        .expect("-80 listed");
    assert_eq!(
        moved["record"]["primary_alias"], report["new_primary"],
        "{moved}"
    );
    let (_, metrics) = http_get(api_port, "/metrics").expect("/metrics");
    assert_eq!(
        shardcar_tests::metric(
            &metrics,
            "shardcar_control_actions_total{kind=\"planned\",result=\"ok\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let _ = stop_api.send(true);
    let _ = api.await;
    writes
        .query_drop("UPDATE sbtest1 SET k = k + 1 WHERE id = 1")
        .await
        .expect("a write on the new primary");

    // All of etcd down: the app sidecar serves on the last topology it saw.
    for m in &mut cluster.etcd.members {
        m.kill9();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..20 {
        writes
            .query_drop("UPDATE sbtest1 SET k = k + 1 WHERE id = 1")
            .await
            .expect("a write with etcd down");
        let n: Option<u64> = writes
            .query_first("SELECT COUNT(*) FROM sbtest1")
            .await
            .expect("a scatter read with etcd down");
        assert_eq!(n, Some(ROWS as u64));
    }
    let mut fresh = cluster.conn(KEYSPACE).await;
    fresh
        .query_drop("UPDATE sbtest1 SET k = k + 1 WHERE id = 2")
        .await
        .expect("a new connection with etcd down");
    drop((reads, writes, fresh));
    cluster.shutdown().await;
}
