//! `shardcar local` end to end: the demo keyspace comes up behind the sidecars (app role in
//! front, db role beside every mariadbd), answers through them, and everything stops and is
//! cleaned up on shutdown.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use shardcar::local::{run_until, LocalArgs};
use shardcar_tests::client::opts;
use shardcar_tests::{free_port, workspace_root};

async fn connect(port: u16, db: &str) -> mysql_async::Conn {
    mysql_async::Conn::new(opts(port, "app", "app").db_name(Some(db)))
        .await
        .expect("connecting through the local sidecar")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_demo_serves_the_dog_ratings_and_stops_cleanly() {
    let data = tempfile::tempdir().expect("temp dir");
    let (port, admin_port) = (free_port(), free_port());
    let args = LocalArgs {
        port,
        admin_port,
        data_dir: Some(data.path().join("cluster")),
        ..LocalArgs::default()
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(run_until(args, shutdown));
    shardcar_tests::wait_for_local(port, &mut task, Duration::from_secs(60)).await;

    let mut conn = connect(port, "demo").await;
    // The demo rows are loaded through the sidecar once it is up: wait for them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts: Vec<(u64, u64, u64)> = conn
            .query(
                "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM dogs), \
                 (SELECT COUNT(*) FROM ratings)",
            )
            .await
            .expect("counting the demo rows across shards");
        if counts == vec![(10, 12, 40)] || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(counts, vec![(10, 12, 40)]);
    // Sharded by user: a user's dogs are on one shard, a join across shards is merged.
    let top: Vec<(String, u64)> = conn
        .query(
            "SELECT d.name, COUNT(*) AS n FROM dogs d JOIN ratings r ON r.dog_id = d.id \
             GROUP BY d.id, d.name ORDER BY n DESC, d.name LIMIT 2",
        )
        .await
        .expect("a join across shards");
    assert_eq!(top.len(), 2);
    // Every shard's mariadbd has a db-role sidecar in front: its built-in rule refuses a
    // DELETE without WHERE, and nothing was deleted.
    let e = conn
        .query_drop("DELETE FROM ratings")
        .await
        .expect_err("the db role refuses DELETE without WHERE");
    assert_eq!(shardcar_tests::client::server_code(&e), Some(1148), "{e}");
    let left: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM ratings")
        .await
        .expect("counting");
    assert_eq!(left, Some(40));
    conn.disconnect().await.expect("disconnect");

    stop.send(true).expect("signalling shutdown");
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("shardcar local stops within 60 s")
        .expect("the task does not panic")
        .expect("shardcar local exits cleanly");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the sidecar port is closed after shutdown"
    );
}

const ITEMS: &str = "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20));\n";

/// A schema dir with keyspace `shop` holding `files` (name, SQL).
fn shop_schema(files: &[(&str, &str)]) -> tempfile::TempDir {
    let schema = tempfile::tempdir().expect("temp dir");
    let ks_dir = schema.path().join("shop");
    std::fs::create_dir_all(&ks_dir).expect("mkdir");
    for (name, sql) in files {
        std::fs::write(ks_dir.join(name), sql).expect("write");
    }
    schema
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_applies_a_schema_dir_in_name_order() {
    let schema = shop_schema(&[
        ("02_data.sql", "INSERT INTO items VALUES (1, 'bone');\n"),
        ("01_schema.sql", ITEMS),
    ]);
    let (port, admin_port) = (free_port(), free_port());
    let args = LocalArgs {
        keyspaces: vec!["shop".parse().expect("keyspace")],
        schema_dir: Some(schema.path().to_path_buf()),
        port,
        admin_port,
        user: "shopper".to_string(),
        password: "s3cret".to_string(),
        ..LocalArgs::default()
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(run_until(args, shutdown));
    shardcar_tests::wait_for_local(port, &mut task, Duration::from_secs(60)).await;
    let mut conn = mysql_async::Conn::new(opts(port, "shopper", "s3cret").db_name(Some("shop")))
        .await
        .expect("connect");
    let names: Vec<String> = conn.query("SELECT name FROM items").await.expect("select");
    assert_eq!(names, vec!["bone".to_string()]);
    drop(conn);
    stop.send(true).expect("signalling shutdown");
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_with_replicas_and_the_embedded_topology_reads_from_a_replica() {
    let schema = shop_schema(&[("01_schema.sql", ITEMS)]);
    let (port, admin_port) = (free_port(), free_port());
    let args = LocalArgs {
        keyspaces: vec!["shop".parse().expect("keyspace")],
        schema_dir: Some(schema.path().to_path_buf()),
        port,
        admin_port,
        replicas: 1,
        ..LocalArgs::default()
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(run_until(args, shutdown));
    shardcar_tests::wait_for_local(port, &mut task, Duration::from_secs(60)).await;
    let mut conn = connect(port, "shop").await;
    conn.query_drop("INSERT INTO items VALUES (1, 'bone')")
        .await
        .expect("a write to the primary (uid 100)");
    let primary: Option<u32> = conn.query_first("SELECT @@server_id").await.expect("id");
    assert_eq!(primary, Some(100));
    conn.query_drop("USE shop@replica")
        .await
        .expect("use shop@replica");
    // The replica (uid 101) serves once its health is published and it has the row.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row: Option<(u32, Option<String>)> = conn
            .query_first("SELECT @@server_id, (SELECT name FROM items WHERE id = 1)")
            .await
            .expect("a replica read");
        if row == Some((101, Some("bone".to_string()))) {
            break;
        }
        assert!(Instant::now() < deadline, "no replica read: {row:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = conn
        .query_drop("INSERT INTO items VALUES (2, 'ball')")
        .await;
    assert!(
        refused.is_ok(),
        "writes still go to the primary: {refused:?}"
    );
    drop(conn);
    stop.send(true).expect("signalling shutdown");
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("clean exit");
}

#[tokio::test]
async fn local_refuses_a_sharded_keyspace_without_a_vschema() {
    let args = LocalArgs {
        keyspaces: vec!["shop:2".parse().expect("keyspace")],
        port: free_port(),
        admin_port: free_port(),
        ..LocalArgs::default()
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let err = run_until(args, shutdown)
        .await
        .expect_err("a sharded keyspace needs --vschema");
    assert!(err.to_string().contains("--vschema"), "{err}");
}

#[test]
fn the_demo_schema_dir_in_the_repository_matches_the_built_in_one() {
    let dir = workspace_root().join("examples/demo/demo");
    assert!(dir.join("001_schema.sql").is_file());
    assert!(dir.join("002_data.data.sql").is_file());
    assert!(workspace_root()
        .join("examples/demo/lookup/001_sequences.sql")
        .is_file());
    assert!(workspace_root()
        .join("examples/demo/vschema.json")
        .is_file());
}
