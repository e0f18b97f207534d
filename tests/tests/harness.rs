//! The harness itself: real mariadbd and etcd start, answer, run side by side and leave
//! nothing behind.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use shardcar_tests::{etcd_cluster, Etcd, MariaDb, MariaDbOptions};

#[tokio::test]
async fn mariadb_starts_and_answers_select_1() {
    let started = Instant::now();
    let db = MariaDb::start(MariaDbOptions::default())
        .await
        .expect("mariadbd should start");
    eprintln!("mariadbd ready in {:?}", started.elapsed());
    assert_eq!(db.exec("SELECT 1;").await.expect("SELECT 1").trim(), "1");
    assert!(db.socket().exists(), "socket {:?} exists", db.socket());
    assert_ne!(db.pid(), 0);
    let port = db
        .exec("SELECT @@port, @@bind_address;")
        .await
        .expect("reading @@port");
    assert_eq!(port.trim(), format!("{}\t127.0.0.1", db.port()));
}

#[tokio::test]
async fn two_mariadbs_start_in_parallel_on_different_ports() {
    let (a, b) = tokio::join!(
        MariaDb::start(MariaDbOptions::default()),
        MariaDb::start(MariaDbOptions {
            server_id: 2,
            ..MariaDbOptions::default()
        })
    );
    let (a, b) = (a.expect("first mariadbd"), b.expect("second mariadbd"));
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    assert_eq!(a.exec("SELECT @@server_id;").await.expect("a").trim(), "1");
    assert_eq!(b.exec("SELECT @@server_id;").await.expect("b").trim(), "2");
}

#[tokio::test]
async fn dropping_mariadb_kills_it_and_removes_the_temp_data_dir() {
    let db = MariaDb::start(MariaDbOptions::default())
        .await
        .expect("mariadbd should start");
    let (dir, pid) = (db.data_dir().to_path_buf(), db.pid());
    assert!(dir.join("mysql").is_dir());
    drop(db);
    assert!(!dir.exists(), "{dir:?} should be removed on drop");
    assert!(
        !process_alive(pid),
        "mariadbd pid {pid} should be gone after drop"
    );
}

#[tokio::test]
async fn graceful_stop_removes_the_temp_data_dir() {
    let db = MariaDb::start(MariaDbOptions::default())
        .await
        .expect("mariadbd should start");
    let (dir, pid) = (db.data_dir().to_path_buf(), db.pid());
    db.stop().await;
    assert!(!dir.exists());
    assert!(!process_alive(pid));
}

#[tokio::test]
async fn kill9_stops_the_server_at_once() {
    let mut db = MariaDb::start(MariaDbOptions::default())
        .await
        .expect("mariadbd should start");
    db.kill9();
    assert!(!db.is_running());
    assert!(db.exec("SELECT 1;").await.is_err());
}

#[tokio::test]
async fn exec_errors_carry_the_server_message_and_users_can_log_in_over_tcp() {
    let db = MariaDb::start(MariaDbOptions::default())
        .await
        .expect("mariadbd should start");
    let err = db
        .exec("SELECT * FROM no_such_db.t;")
        .await
        .expect_err("an unknown table must fail");
    assert!(err.to_string().contains("no_such_db"), "{err}");
    db.create_user("alice", "s3cr'et", "SELECT ON *.*")
        .await
        .expect("create_user");
    let out = std::process::Command::new("mariadb")
        .args(["--no-defaults", "-h", "127.0.0.1", "-P"])
        .arg(db.port().to_string())
        .args([
            "-u",
            "alice",
            "-ps3cr'et",
            "--batch",
            "--skip-column-names",
            "-e",
        ])
        .arg("SELECT CURRENT_USER()")
        .output()
        .expect("running the mariadb CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "alice@127.0.0.1"
    );
}

#[tokio::test]
async fn source_file_applies_sql_to_a_database() {
    let db = MariaDb::start(MariaDbOptions::default())
        .await
        .expect("mariadbd should start");
    db.exec("CREATE DATABASE shop;").await.expect("create db");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("schema.sql");
    std::fs::write(
        &file,
        "CREATE TABLE t (id INT PRIMARY KEY);\nINSERT INTO t VALUES (1),(2),(3);\n",
    )
    .expect("writing schema.sql");
    db.source_file(Some("shop"), &file).await.expect("source");
    assert_eq!(
        db.exec("SELECT COUNT(*) FROM shop.t;")
            .await
            .expect("count")
            .trim(),
        "3"
    );
}

#[tokio::test]
async fn a_persistent_data_dir_survives_a_restart() {
    let root = tempfile::tempdir().expect("temp dir");
    let opts = MariaDbOptions {
        data_dir: Some(root.path().join("data")),
        ..MariaDbOptions::default()
    };
    let db = MariaDb::start(opts.clone()).await.expect("first start");
    db.exec("CREATE DATABASE kept;").await.expect("create db");
    db.stop().await;
    let db = MariaDb::start(opts).await.expect("second start");
    assert_eq!(
        db.exec("SHOW DATABASES LIKE 'kept';")
            .await
            .expect("show")
            .trim(),
        "kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_with_a_gtid_replica_replicates() {
    let primary = MariaDb::start(MariaDbOptions {
        log_bin: true,
        server_id: 100,
        ..MariaDbOptions::default()
    })
    .await
    .expect("primary");
    primary
        .create_user("repl", "repl", "REPLICATION SLAVE ON *.*")
        .await
        .expect("repl user");
    let replica = shardcar_tests::start_replica(&primary, 101, None)
        .await
        .expect("replica");
    primary
        .exec(
            "CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY); INSERT INTO r.t VALUES (7);",
        )
        .await
        .expect("write on primary");
    let pos = primary
        .exec("SELECT @@gtid_binlog_pos;")
        .await
        .expect("pos");
    replica
        .exec(&format!("SELECT MASTER_GTID_WAIT('{}', 30);", pos.trim()))
        .await
        .expect("wait");
    assert_eq!(
        replica
            .exec("SELECT id FROM r.t;")
            .await
            .expect("read")
            .trim(),
        "7"
    );
}

#[test]
fn etcd_starts_and_reports_healthy() {
    let etcd = Etcd::start().expect("etcd should start");
    assert!(etcd.is_healthy());
    let (status, body) =
        shardcar_tests::http_get(etcd.client_port(), "/version").expect("GET /version");
    assert_eq!(status, 200);
    assert!(body.contains("etcdserver"), "{body}");
}

#[tokio::test]
async fn a_three_member_etcd_cluster_forms_a_quorum() {
    let cluster = etcd_cluster(3).await.expect("3 members");
    assert_eq!(cluster.members.len(), 3);
    assert!(cluster.members.iter().all(Etcd::is_healthy));
    assert_eq!(cluster.endpoints().len(), 3);
}

fn process_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; look at its state.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
                    .unwrap_or(false)
            })
            .unwrap_or(false);
        if !alive || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
