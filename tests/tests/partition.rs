//! A network partition, made with a network namespace: one shard whose primary (mysqld and
//! its db sidecar) lives in the cell `zone2`, inside a namespace of our own, and whose two
//! replicas, the etcd cluster and the orchestrator live on this side. Cutting the link must
//! never leave two writable primaries: the cut-off primary turns itself read-only before
//! its lease can expire, the orchestrator promotes a replica only after that, a client in
//! the cut-off cell gets 1290, and once the link heals the old primary stays read-only and
//! rejoins as a replica of the new primary (rebuilt from it when it wrote while cut off).

// Test code: a failed step should stop the test with its message.
#![allow(clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use shardcar::local::etcd::etcd_cluster_also_on;
use shardcar_control::OrchestratorOptions;
use shardcar_tests::netns::NetNs;
use shardcar_tests::{MariaDb, MariaDbOptions, SidecarOptions, SidecarProcess};
use shardcar_topo::{EtcdStore, Layout, TabletType, Topology};

const PASSWORD: &str = "pw";
const LEASE_TTL_MS: u64 = 4_000;

/// One tablet: its mysqld and its db sidecar.
struct Tablet {
    uid: u32,
    db: MariaDb,
    sidecar: SidecarProcess,
    host: IpAddr,
}

async fn start_mysqld(uid: u32, host: IpAddr, netns: Option<&str>) -> MariaDb {
    let db = MariaDb::start(MariaDbOptions {
        server_id: uid,
        log_bin: true,
        extra_args: vec![
            format!("--bind-address={host}"),
            "--read-only=ON".to_string(),
            "--slave-net-timeout=4".to_string(),
        ],
        netns: netns.map(str::to_string),
        ..MariaDbOptions::default()
    })
    .await
    .expect("starting mariadbd");
    db.exec(&format!(
        "SET SESSION sql_log_bin = 0;
         CREATE USER 'shardcar'@'%' IDENTIFIED BY '{PASSWORD}';
         GRANT ALL PRIVILEGES ON *.* TO 'shardcar'@'%';
         REVOKE READ_ONLY ADMIN ON *.* FROM 'shardcar'@'%';
         CREATE USER 'dba'@'%' IDENTIFIED BY '{PASSWORD}';
         GRANT ALL PRIVILEGES ON *.* TO 'dba'@'%';
         CREATE USER 'repl'@'%' IDENTIFIED BY '{PASSWORD}';
         GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';"
    ))
    .await
    .expect("creating the accounts");
    db
}

/// Where a tablet lives and what it starts as.
struct Place<'a> {
    uid: u32,
    cell: &'a str,
    tablet_type: &'a str,
    host: IpAddr,
    netns: Option<&'a str>,
}

fn start_sidecar(
    place: &Place<'_>,
    db: &MariaDb,
    etcd: &[String],
    secrets: &std::path::Path,
) -> SidecarProcess {
    let Place {
        uid,
        cell,
        tablet_type,
        host,
        netns,
    } = *place;
    let secret = secrets.join("pw");
    std::fs::write(&secret, PASSWORD).expect("password file");
    let endpoints: Vec<String> = etcd.iter().map(|e| format!("\"{e}\"")).collect();
    let topology = format!(
        "topology:\n  etcd_endpoints: [{}]\n  cell: {cell}\n  uid: {uid}\n  keyspace: app\n  \
         shard: \"0\"\n  tablet_type: {tablet_type}\n  lease_ttl_ms: {LEASE_TTL_MS}\n  \
         health_interval_ms: 500\n  mysqld_address: \"{host}:{port}\"\n  dba_user: dba\n  \
         dba_password_file: \"{secret}\"\n  replication_user: repl\n  \
         replication_password_file: \"{secret}\"\n",
        endpoints.join(", "),
        port = db.port(),
        secret = secret.display(),
    );
    let mut sidecar = SidecarProcess::start_live(SidecarOptions {
        role: "db",
        upstream_address: format!("{host}:{}", db.port()),
        upstream_user: "shardcar".to_string(),
        upstream_password: PASSWORD.to_string(),
        extra_yaml: topology,
        host,
        netns: netns.map(str::to_string),
        ..SidecarOptions::default()
    })
    .expect("starting the db sidecar");
    sidecar.wait_for("/healthz").expect("db sidecar up");
    sidecar
}

/// `@@global.read_only` of a mysqld, over its unix socket (which no partition cuts).
async fn writable(db: &MariaDb) -> Option<bool> {
    let out = db.exec("SELECT @@global.read_only").await.ok()?;
    match out.trim() {
        "0" => Some(true),
        "1" => Some(false),
        _ => None,
    }
}

/// Writes `sql` through a tablet's db sidecar, as the application account.
async fn write_through(tablet: &Tablet, sql: &str) {
    let mut conn = app_conn(tablet.host, tablet.sidecar.port())
        .await
        .unwrap_or_else(|e| panic!("connecting to tablet {}'s db sidecar: {e}", tablet.uid));
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} on tablet {}: {e}", tablet.uid));
}

async fn app_conn(host: IpAddr, port: u16) -> mysql_async::Result<mysql_async::Conn> {
    mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(host.to_string())
            .tcp_port(port)
            .user(Some("app"))
            .pass(Some("app"))
            .db_name(Some("app"))
            .prefer_socket(false),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_primary_fences_itself_and_is_replaced_without_two_writable_primaries() {
    let ns = NetNs::create().expect("creating a network namespace (needs root)");
    let (outside, inside) = (ns.host_addr(), ns.inner_addr());
    let etcd = etcd_cluster_also_on(3, Some(outside))
        .await
        .expect("a 3-member etcd cluster");
    let endpoints = etcd.endpoints_on(outside);
    let secrets = tempfile::tempdir().expect("temp dir");

    let primary_db = start_mysqld(100, inside, Some(ns.name())).await;
    let mut replica_dbs = Vec::new();
    for uid in [101, 102] {
        let db = start_mysqld(uid, outside, None).await;
        db.exec(&format!(
            "CHANGE MASTER TO MASTER_HOST = '{inside}', MASTER_PORT = {}, MASTER_USER = 'repl', \
             MASTER_PASSWORD = '{PASSWORD}', MASTER_USE_GTID = slave_pos, \
             MASTER_CONNECT_RETRY = 1; START SLAVE;",
            primary_db.port()
        ))
        .await
        .expect("starting replication");
        replica_dbs.push((uid, db));
    }
    primary_db
        .exec("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT)")
        .await
        .expect("schema");

    let primary = Tablet {
        uid: 100,
        sidecar: start_sidecar(
            &Place {
                uid: 100,
                cell: "zone2",
                tablet_type: "primary",
                host: inside,
                netns: Some(ns.name()),
            },
            &primary_db,
            &endpoints,
            secrets.path(),
        ),
        db: primary_db,
        host: inside,
    };
    let mut replicas = Vec::new();
    for (uid, db) in replica_dbs {
        replicas.push(Tablet {
            uid,
            sidecar: start_sidecar(
                &Place {
                    uid,
                    cell: "zone1",
                    tablet_type: "replica",
                    host: outside,
                    netns: None,
                },
                &db,
                &endpoints,
                secrets.path(),
            ),
            db,
            host: outside,
        });
    }

    let store = EtcdStore::connect(&endpoints).await.expect("etcd");
    let topology = Topology::new(Arc::new(store), Layout::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let orchestrator = tokio::spawn(shardcar_control::orchestrator::run(
        topology.clone(),
        OrchestratorOptions {
            rebuild_errant: true,
            ..OrchestratorOptions::default()
        },
        shutdown,
        |report, detected| eprintln!("failover after {detected:?}: {report:?}"),
    ));

    // Converged: the primary writable (its sidecar confirmed it), both replicas replicating.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tablets = topology.tablets(None).await.expect("tablets");
        let primary_ok = tablets.iter().any(|t| {
            t.alias == "zone2-0000000100"
                && t.tablet_type == TabletType::Primary
                && t.health.serving
                && !t.health.read_only
        });
        let replicating = tablets
            .iter()
            .filter(|t| t.tablet_type == TabletType::Replica && t.health.replicating)
            .count();
        if primary_ok && replicating == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shard did not converge: {tablets:#?}\nprimary sidecar:\n{}",
            primary.sidecar.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    write_through(&primary, "INSERT INTO t VALUES (1, 1)").await;

    // Cut zone2 off. Sample every mysqld's read_only until a replica has been promoted
    // and a while after: never two writable at once.
    ns.cut().expect("cutting the link");
    let cut = Instant::now();
    let mut fenced_after = None;
    let mut promoted = None;
    while cut.elapsed() < Duration::from_secs(60) {
        let old = writable(&primary.db).await;
        let mut new = Vec::new();
        for r in &replicas {
            if writable(&r.db).await == Some(true) {
                new.push(r.uid);
            }
        }
        let count = usize::from(old == Some(true)) + new.len();
        assert!(
            count <= 1,
            "two writable primaries {:?} after the cut: old {old:?}, promoted {new:?}",
            cut.elapsed()
        );
        if old == Some(false) && fenced_after.is_none() {
            fenced_after = Some(cut.elapsed());
        }
        if let (Some(&uid), None) = (new.first(), promoted) {
            promoted = Some((uid, cut.elapsed()));
        }
        if promoted.is_some_and(|(_, at)| cut.elapsed() > at + Duration::from_secs(2)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fenced_after = fenced_after.expect("the cut-off primary never turned read-only");
    let (new_uid, promoted_after) = promoted.unwrap_or_else(|| {
        panic!(
            "no replica was promoted; primary sidecar:\n{}",
            primary.sidecar.stderr()
        )
    });
    eprintln!(
        "partition: old primary read-only after {} ms, replica {new_uid} writable after {} ms",
        fenced_after.as_millis(),
        promoted_after.as_millis()
    );
    assert!(fenced_after < promoted_after);

    // The new primary takes writes; a client in the cut-off cell gets 1290 from the old one.
    let new = replicas
        .iter()
        .find(|r| r.uid == new_uid)
        .expect("the promoted tablet");
    write_through(new, "INSERT INTO t VALUES (2, 2)").await;
    let inside_client = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "mariadb", "--no-defaults"])
        .args(["-h", &primary.host.to_string()])
        .args(["-P", &primary.sidecar.port().to_string()])
        .args(["-uapp", "-papp", "app", "-e", "INSERT INTO t VALUES (3, 3)"])
        .output()
        .expect("running the mariadb client in the cut-off cell");
    let stderr = String::from_utf8_lossy(&inside_client.stderr);
    assert!(
        !inside_client.status.success() && stderr.contains("1290"),
        "a write in the cut-off cell: {stderr}"
    );

    // Healed: the old primary learns of the new term, stays read-only and is pointed at the
    // new primary. If it wrote while cut off and before it fenced itself (its heartbeat
    // does, within those ~2 s), MariaDB refuses to replicate (errant GTID, 1236) and the
    // orchestrator rebuilds it from the new primary. Either way it ends up replicating
    // and holding the row written after the promotion.
    ns.heal().expect("healing the link");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let fenced = topology
            .tablets(None)
            .await
            .expect("tablets")
            .into_iter()
            .find(|t| t.alias == "zone2-0000000100")
            .filter(|t| t.tablet_type != TabletType::Primary && t.health.read_only);
        let row_2 = primary
            .db
            .exec("SELECT COUNT(*) FROM app.t WHERE id = 2")
            .await
            .unwrap_or_default();
        if fenced.is_some_and(|t| t.health.replicating) && row_2.trim().ends_with('1') {
            let rebuilt = primary
                .sidecar
                .metrics()
                .unwrap_or_default()
                .contains("action=\"rebuild\",result=\"ok\"");
            eprintln!("the old primary rejoined as a replica (rebuilt: {rebuilt})");
            break;
        }
        if Instant::now() > deadline {
            let status = primary
                .db
                .exec("SHOW ALL SLAVES STATUS\\G")
                .await
                .unwrap_or_default();
            panic!(
                "the old primary did not rejoin: {status}\nits sidecar:\n{}",
                primary.sidecar.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(writable(&primary.db).await, Some(false));

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), orchestrator).await;
    drop((primary, replicas));
}
