//! Sharded sessions end to end, through a `shardcar local` cluster (keyspace `shop` in
//! shards, keyspace `lookup` unsharded with a sequence): multi-row INSERTs split per shard,
//! auto-increment from the sequence and LAST_INSERT_ID, point selects and scatter merges
//! over text and prepared statements, transactions in `multi` and `single` modes, USE and
//! SHOW DATABASES, and the errors a router gives for what it refuses.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::expect_used)]

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::Conn;
use shardcar::config::TransactionMode;
use shardcar::local::mariadb::{MariaDb, MariaDbOptions};
use shardcar::local::{run_until, LocalArgs};
use shardcar_tests::client::{opts, server_code};
use shardcar_tests::{free_port, http_get, metric_or_zero, temp_dir, workspace_root};

struct Cluster {
    port: u16,
    admin_port: u16,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data: tempfile::TempDir,
}

async fn start(shards: u32, mode: TransactionMode) -> Cluster {
    start_with(shards, |args| args.transaction_mode = mode).await
}

/// A cluster with `shards` shop shards and the arguments `adjust` leaves.
async fn start_with(shards: u32, adjust: impl FnOnce(&mut LocalArgs)) -> Cluster {
    let data = temp_dir("shardcar-sharded-");
    let (port, admin_port) = (free_port(), free_port());
    let dir = workspace_root().join("tests/data/sharded");
    let mut args = LocalArgs {
        keyspaces: vec![
            format!("shop:{shards}").parse().expect("keyspace"),
            "lookup".parse().expect("keyspace"),
        ],
        vschema: Some(dir.join("vschema.json")),
        schema_dir: Some(dir),
        port,
        admin_port,
        data_dir: Some(data.path().join("cluster")),
        max_merge_rows: 1000,
        ..LocalArgs::default()
    };
    adjust(&mut args);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(run_until(args, shutdown));
    shardcar_tests::wait_for_local(port, &mut task, Duration::from_secs(120)).await;
    Cluster {
        port,
        admin_port,
        stop,
        task,
        _data: data,
    }
}

impl Cluster {
    async fn connect(&self, db: Option<&str>) -> Conn {
        Conn::new(opts(self.port, "app", "app").db_name(db))
            .await
            .expect("connecting through the sidecar")
    }

    async fn stop(self) {
        self.stop.send(true).expect("signalling shutdown");
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("stops within 60 s")
            .expect("no panic")
            .expect("clean exit");
    }
}

async fn error_code(conn: &mut Conn, sql: &str) -> Option<u16> {
    match conn.query_drop(sql).await {
        Ok(()) => None,
        Err(e) => server_code(&e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_sessions_route_merge_and_keep_transactions() {
    let cluster = start(4, TransactionMode::Multi).await;
    let mut c = cluster.connect(Some("shop")).await;

    // A multi-row INSERT with explicit ids, split across the shards.
    c.query_drop("INSERT INTO customer (id, name, city) VALUES (1, 'Ann', 'Paris'), (2, 'bob', 'paris'), (3, 'Cy', 'Lyon'), (4, 'Di', NULL), (5, 'Ed', 'Lyon')")
        .await
        .expect("multi-row insert");
    assert_eq!(c.affected_rows(), 5);

    // Auto-increment from the sequence; LAST_INSERT_ID is the first id, as in MySQL.
    c.query_drop("INSERT INTO customer (name, city) VALUES ('Fay', 'Nice'), ('Gus', 'Nice')")
        .await
        .expect("insert from the sequence");
    assert_eq!(c.last_insert_id(), Some(1000));
    let last: Option<u64> = c
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .expect("last insert id");
    assert_eq!(last, Some(1000));
    let db: Option<String> = c
        .query_first("SELECT DATABASE()")
        .await
        .expect("database()");
    assert_eq!(db.as_deref(), Some("shop"));
    // Vindex functions as tables: hash(1) = 166b40b44aba4bd6, in shard -40.
    let f: Option<(String, String)> = c
        .query_first("SELECT hex_keyspace_id, shard FROM hash WHERE id = 1")
        .await
        .expect("vindex function");
    assert_eq!(f, Some(("166b40b44aba4bd6".into(), "-40".into())));
    let ids: Vec<i64> = c
        .query("SELECT id FROM customer WHERE city = 'Nice' ORDER BY id")
        .await
        .expect("select sequence rows");
    assert_eq!(ids, vec![1000, 1001]);

    // Point select, and scatter merges with collation-aware grouping.
    let name: Option<String> = c
        .query_first("SELECT name FROM customer WHERE id = 3")
        .await
        .expect("point select");
    assert_eq!(name.as_deref(), Some("Cy"));
    let groups: Vec<(Option<String>, i64)> = c
        .query("SELECT city, COUNT(*) FROM customer GROUP BY city ORDER BY city")
        .await
        .expect("group by");
    assert_eq!(groups.len(), 4, "{groups:?}");
    assert_eq!(groups[0], (None, 1));
    assert_eq!(
        groups[3].1, 2,
        "'Paris' and 'paris' are one group: {groups:?}"
    );
    let page: Vec<i64> = c
        .query("SELECT id FROM customer ORDER BY name DESC, id LIMIT 2 OFFSET 1")
        .await
        .expect("order by limit offset");
    assert_eq!(page, vec![1000, 5], "names desc: Gus Fay Ed Di Cy bob Ann");

    // Prepared statements: a point select by parameter and a scatter aggregate.
    let by_id: Option<String> = c
        .exec_first("SELECT name FROM customer WHERE id = ?", (5,))
        .await
        .expect("prepared point select");
    assert_eq!(by_id.as_deref(), Some("Ed"));
    let counted: Option<(i64, String)> = c
        .exec_first(
            "SELECT COUNT(*), MAX(name) FROM customer WHERE id > ?",
            (1,),
        )
        .await
        .expect("prepared scatter");
    assert_eq!(counted, Some((6, "Gus".to_string())));

    // A transaction over two shards rolls back on both.
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop("INSERT INTO corder (id, customer_id, amount) VALUES (10, 1, 5.00), (11, 2, 6.50), (12, 3, 1.25)")
        .await
        .expect("insert in a transaction");
    c.query_drop("ROLLBACK").await.expect("rollback");
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM corder")
        .await
        .expect("count");
    assert_eq!(n, Some(0));
    c.query_drop("START TRANSACTION").await.expect("begin");
    c.query_drop("INSERT INTO corder (id, customer_id, amount) VALUES (10, 1, 5.00), (11, 2, 6.50), (12, 3, 1.25)")
        .await
        .expect("insert in a transaction");
    c.query_drop("COMMIT").await.expect("commit");
    let sum: Option<(String, String)> = c
        .query_first("SELECT SUM(amount), AVG(amount) FROM corder")
        .await
        .expect("sum");
    assert_eq!(sum, Some(("12.75".into(), "4.250000".into())));

    // Session targeting and introspection.
    let dbs: Vec<String> = c.query("SHOW DATABASES").await.expect("show databases");
    assert!(
        dbs.contains(&"shop".to_string()) && dbs.contains(&"lookup".to_string()),
        "{dbs:?}"
    );
    assert_eq!(error_code(&mut c, "USE nowhere").await, Some(1049));
    c.query_drop("USE lookup").await.expect("use lookup");
    let next: Option<i64> = c
        .query_first("SELECT next_id FROM customer_seq WHERE id = 0")
        .await
        .expect("sequence row");
    assert_eq!(next, Some(1010), "one block of 10 reserved");
    c.query_drop("USE shop").await.expect("use shop");
    // Shard targeting: statements go to that shard unrouted.
    c.query_drop("USE shop:-40").await.expect("use shop:-40");
    let on_first: Vec<i64> = c
        .query("SELECT id FROM customer ORDER BY id")
        .await
        .expect("targeted");
    assert!(
        on_first.contains(&1) && !on_first.contains(&3),
        "hash(1) is in -40, hash(3) in 40-80: {on_first:?}"
    );
    assert_eq!(error_code(&mut c, "USE shop:40-50").await, Some(1049));
    assert_eq!(error_code(&mut c, "USE shop@bogus").await, Some(1049));
    // Without replicas (no topology), reads for replicas go to the primaries.
    c.query_drop("USE shop@replica")
        .await
        .expect("use shop@replica");
    let everywhere: Vec<i64> = c
        .query("SELECT id FROM customer WHERE id = 3")
        .await
        .expect("a replica read served by the primary");
    assert_eq!(everywhere, vec![3]);
    c.query_drop("USE shop").await.expect("back to routing");

    // Refusals are 1235 and name the construct; nothing was changed.
    assert_eq!(
        error_code(&mut c, "UPDATE customer SET id = 9 WHERE id = 1").await,
        Some(1235)
    );
    assert_eq!(
        error_code(&mut c, "DELETE FROM customer WHERE city = 'Lyon' LIMIT 1").await,
        Some(1235)
    );
    assert_eq!(
        error_code(&mut c, "SELECT * FROM nosuchtable").await,
        Some(1146)
    );
    // The merge row cap (1000 here) gives 1104, not an unbounded buffer.
    let many: String = (0..1100)
        .map(|i| format!("({}, 1, 1.00)", 100 + i))
        .collect::<Vec<_>>()
        .join(", ");
    c.query_drop(format!(
        "INSERT INTO corder (id, customer_id, amount) VALUES {many}"
    ))
    .await
    .expect("bulk insert");
    let capped = c.query_drop("SELECT id FROM corder").await.err();
    assert_eq!(
        capped.as_ref().and_then(server_code),
        Some(1104),
        "{capped:?}"
    );
    // A comment raises the cap for one statement.
    let all: Vec<i64> = c
        .query("SELECT /* shardcar: max_merge_rows=5000 */ id FROM corder")
        .await
        .expect("a raised cap");
    assert_eq!(all.len(), 1103);
    // ... while a point route streams any number of rows raw.
    let rows: Vec<i64> = c
        .query("SELECT id FROM corder WHERE customer_id = 1")
        .await
        .expect("single-shard rows are not capped");
    assert_eq!(rows.len(), 1101);

    drop(c);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_reflects_and_queries_a_sharded_keyspace() {
    let cluster = start(4, TransactionMode::Multi).await;
    let python = workspace_root().join(".venv/bin/python");
    assert!(python.exists(), "run scripts/setup.sh for the Python venv");
    let script = workspace_root().join("tests/python/sharded/reflect.py");
    let port = cluster.port;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg("shop")
            .output()
    })
    .await
    .expect("join")
    .expect("running reflect.py");
    assert!(
        out.status.success(),
        "reflect.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        doc["tables"],
        serde_json::json!(["account", "corder", "customer", "member"])
    );
    assert_eq!(
        doc["columns"]["customer"],
        serde_json::json!(["id", "name", "city"])
    );
    assert_eq!(doc["pk"]["corder"], serde_json::json!(["id"]));
    assert_eq!(doc["count"], serde_json::json!(2));
    assert_eq!(doc["oslo"], serde_json::json!(["Orm", "Rel"]));
    assert_eq!(doc["one"], serde_json::json!("Rel"));
    cluster.stop().await;
}

/// Rows of a lookup table, in order.
async fn lookup_rows(c: &mut Conn, sql: &str) -> Vec<(String, String)> {
    c.query::<(String, String), _>(sql)
        .await
        .expect("reading a lookup table")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_vindexes_route_reads_and_owner_writes_keep_their_rows() {
    let cluster = start(4, TransactionMode::Multi).await;
    let mut c = cluster.connect(Some("shop")).await;
    // hash(1) -> -40, hash(2) -> 40-80 (06e7ea22ce92708f), hash(4) -> c0-.
    c.query_drop(
        "INSERT INTO account (id, email, city) VALUES (1, 'ann@x.io', 'Oslo'), (2, 'bob@x.io', NULL), (4, 'dan@x.io', 'Oslo')",
    )
    .await
    .expect("insert into the owner table");
    let email = "SELECT email, HEX(keyspace_id) FROM lookup.account_email_idx ORDER BY email";
    assert_eq!(
        lookup_rows(&mut c, email).await,
        vec![
            ("ann@x.io".to_string(), "166B40B44ABA4BD6".to_string()),
            ("bob@x.io".to_string(), "06E7EA22CE92708F".to_string()),
            ("dan@x.io".to_string(), "D2FD8867D50D2DFE".to_string()),
        ]
    );
    let city = "SELECT city, CAST(account_id AS CHAR) FROM lookup.account_city_idx ORDER BY city, account_id";
    // ignore_nulls: bob has no city row; lookup_hash stores the id itself.
    assert_eq!(
        lookup_rows(&mut c, city).await,
        vec![
            ("Oslo".to_string(), "1".to_string()),
            ("Oslo".to_string(), "4".to_string())
        ]
    );
    // Reads by a lookup column reach the right rows, in one shard or several.
    let id: Option<i64> = c
        .query_first("SELECT id FROM account WHERE email = 'dan@x.io'")
        .await
        .expect("select by email");
    assert_eq!(id, Some(4));
    let ids: Vec<i64> = c
        .query("SELECT id FROM account WHERE city = 'Oslo' ORDER BY id")
        .await
        .expect("select by city");
    assert_eq!(ids, vec![1, 4]);
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM account WHERE email IN ('nobody@x.io')")
        .await
        .expect("count of nothing");
    assert_eq!(n, Some(0));
    // A duplicate of a unique lookup value is refused before the owner row is written.
    assert_eq!(
        error_code(
            &mut c,
            "INSERT INTO account (id, email) VALUES (3, 'ann@x.io')"
        )
        .await,
        Some(1062)
    );
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM account WHERE id = 3")
        .await
        .expect("count");
    assert_eq!(n, Some(0));
    // A failed owner insert (its own duplicate key) takes its new lookup rows back.
    assert_eq!(
        error_code(
            &mut c,
            "INSERT INTO account (id, email, city) VALUES (4, 'eve@x.io', 'Rome')"
        )
        .await,
        Some(1062)
    );
    assert_eq!(lookup_rows(&mut c, email).await.len(), 3);
    // An UPDATE of a lookup column moves its row; other columns leave the lookup alone.
    c.query_drop("UPDATE account SET email = 'anna@x.io', city = 'Rome' WHERE id = 1")
        .await
        .expect("update the lookup columns");
    c.query_drop("UPDATE account SET city = 'Rome' WHERE email = 'bob@x.io'")
        .await
        .expect("update by a lookup column");
    let id: Option<i64> = c
        .query_first("SELECT id FROM account WHERE email = 'anna@x.io'")
        .await
        .expect("select by the new email");
    assert_eq!(id, Some(1));
    assert_eq!(
        lookup_rows(&mut c, city).await,
        vec![
            ("Oslo".to_string(), "4".to_string()),
            ("Rome".to_string(), "1".to_string()),
            ("Rome".to_string(), "2".to_string())
        ]
    );
    assert_eq!(
        error_code(&mut c, "UPDATE account SET email = CONCAT(email, UUID())").await,
        Some(1235)
    );
    // A DELETE removes the lookup rows of the rows it deleted, and no others.
    c.query_drop("DELETE FROM account WHERE city = 'Rome'")
        .await
        .expect("delete by a lookup column");
    assert_eq!(
        lookup_rows(&mut c, email).await,
        vec![("dan@x.io".to_string(), "D2FD8867D50D2DFE".to_string())]
    );
    assert_eq!(
        lookup_rows(&mut c, city).await,
        vec![("Oslo".to_string(), "4".to_string())]
    );
    // In a transaction the lookup rows commit or roll back with the owner's.
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop("INSERT INTO account (id, email) VALUES (5, 'fay@x.io')")
        .await
        .expect("insert in a transaction");
    c.query_drop("ROLLBACK").await.expect("rollback");
    assert_eq!(lookup_rows(&mut c, email).await.len(), 1);
    // An UPDATE in a transaction reads the rows it changes with FOR UPDATE first.
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop("UPDATE account SET email = 'dana@x.io' WHERE email = 'dan@x.io'")
        .await
        .expect("update a lookup column in a transaction");
    c.query_drop("COMMIT").await.expect("commit");
    assert_eq!(
        lookup_rows(&mut c, email).await,
        vec![("dana@x.io".to_string(), "D2FD8867D50D2DFE".to_string())]
    );
    // A lookup column set from an expression of the row: its new value is read first.
    c.query_drop("UPDATE account SET email = CONCAT('new.', email) WHERE id = 4")
        .await
        .expect("update a lookup column from an expression");
    assert_eq!(
        lookup_rows(&mut c, email).await,
        vec![("new.dana@x.io".to_string(), "D2FD8867D50D2DFE".to_string())]
    );
    // INSERT IGNORE skips a row whose unique lookup value is another shard's row's, as
    // one MySQL would skip the duplicate (hash(1) is in -40, the value's row in c0-).
    c.query_drop(
        "INSERT IGNORE INTO account (id, email) VALUES (1, 'new.dana@x.io'), (2, 'gus@x.io')",
    )
    .await
    .expect("insert ignore");
    assert_eq!(c.affected_rows(), 1);
    let ids: Vec<i64> = c
        .query("SELECT id FROM account ORDER BY id")
        .await
        .expect("ids");
    assert_eq!(ids, vec![2, 4]);
    c.query_drop("INSERT IGNORE INTO account (id, email) VALUES (1, 'gus@x.io')")
        .await
        .expect("insert ignore of a duplicate only");
    assert_eq!(c.affected_rows(), 0);
    assert_eq!(
        error_code(
            &mut c,
            "INSERT INTO account (id, email) VALUES (1, 'gus@x.io') ON DUPLICATE KEY UPDATE city = 'x'"
        )
        .await,
        Some(1235)
    );
    // The same row again: its lookup row names it, the shard ignores the duplicate key.
    c.query_drop("INSERT IGNORE INTO account (id, email) VALUES (2, 'gus@x.io')")
        .await
        .expect("insert ignore of the same row");
    assert_eq!(c.affected_rows(), 0);
    assert_eq!(
        lookup_rows(&mut c, email).await,
        vec![
            ("gus@x.io".to_string(), "06E7EA22CE92708F".to_string()),
            ("new.dana@x.io".to_string(), "D2FD8867D50D2DFE".to_string())
        ]
    );
    drop(c);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_lookups_take_orphan_rows_over() {
    let cluster = start(4, TransactionMode::Multi).await;
    let mut c = cluster.connect(Some("shop")).await;
    let handles = "SELECT handle, HEX(keyspace_id) FROM lookup.member_handle_idx ORDER BY handle";
    // hash(1) -> -40, hash(4) -> c0-.
    c.query_drop("INSERT INTO member (id, handle) VALUES (1, 'ann')")
        .await
        .expect("insert into the owner table");
    // The owner row disappears behind the sidecar's back: its lookup row is an orphan.
    let mut low = cluster.shard_session("-40").await;
    low.query_drop("DELETE FROM member WHERE id = 1")
        .await
        .expect("delete on the shard itself");
    drop(low);
    assert_eq!(
        lookup_rows(&mut c, handles).await,
        vec![("ann".to_string(), "166B40B44ABA4BD6".to_string())]
    );
    // A new owner of 'ann' takes the orphan row over instead of failing with 1062.
    c.query_drop("INSERT INTO member (id, handle) VALUES (4, 'ann')")
        .await
        .expect("the orphan is taken over");
    assert_eq!(
        lookup_rows(&mut c, handles).await,
        vec![("ann".to_string(), "D2FD8867D50D2DFE".to_string())]
    );
    let id: Option<i64> = c
        .query_first("SELECT id FROM member WHERE handle = 'ann'")
        .await
        .expect("select by handle");
    assert_eq!(id, Some(4));
    let takeovers = "shardcar_lookup_vindex_statements_total{kind=\"takeover\"}";
    assert_eq!(cluster.metric(takeovers), 1.0);
    // An owner row that really holds the value keeps it: a duplicate, nothing written.
    assert_eq!(
        error_code(&mut c, "INSERT INTO member (id, handle) VALUES (2, 'ann')").await,
        Some(1062)
    );
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM member WHERE id = 2")
        .await
        .expect("count");
    assert_eq!(n, Some(0));
    // An orphan that already names the new row's shard is kept as it is.
    let mut high = cluster.shard_session("c0-").await;
    high.query_drop("DELETE FROM member WHERE id = 4")
        .await
        .expect("delete on the shard itself");
    drop(high);
    c.query_drop("INSERT INTO member (id, handle) VALUES (4, 'ann')")
        .await
        .expect("the orphan already points here");
    assert_eq!(cluster.metric(takeovers), 1.0);
    assert_eq!(
        lookup_rows(&mut c, handles).await,
        vec![("ann".to_string(), "D2FD8867D50D2DFE".to_string())]
    );
    drop(c);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_mode_refuses_a_transaction_on_a_second_shard() {
    let cluster = start(2, TransactionMode::Single).await;
    let mut c = cluster.connect(Some("shop")).await;
    // hash(1) = 16.. is in -80, hash(4) = d2.. is in 80-.
    c.query_drop("INSERT INTO customer (id, name) VALUES (1, 'a'), (4, 'd')")
        .await
        .expect("autocommit insert may span shards");
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop("UPDATE customer SET name = 'x' WHERE id = 1")
        .await
        .expect("first shard");
    assert_eq!(
        error_code(&mut c, "UPDATE customer SET name = 'y' WHERE id = 4").await,
        Some(1235)
    );
    c.query_drop("COMMIT").await.expect("commit");
    let names: Vec<String> = c
        .query("SELECT name FROM customer ORDER BY id")
        .await
        .expect("names");
    assert_eq!(names, vec!["x".to_string(), "d".to_string()]);
    drop(c);
    cluster.stop().await;
}

/// Shardcar's XA format id, as `XA RECOVER` shows it.
const XA_FORMAT: u32 = 0x5343_4152;

impl Cluster {
    /// The app sidecar's `series` from `/metrics` (0 when absent).
    fn metric(&self, series: &str) -> f64 {
        let (_, body) = http_get(self.admin_port, "/metrics").expect("app sidecar metrics");
        metric_or_zero(&body, series)
    }

    /// A session targeting one shop shard directly (`USE shop:<shard>`).
    async fn shard_session(&self, shard: &str) -> Conn {
        let mut c = self.connect(None).await;
        c.query_drop(format!("USE shop:{shard}"))
            .await
            .expect("shard targeting");
        c
    }
}

/// Polls `check` every 100 ms for up to 30 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gtrids of Shardcar's prepared XA branches on `conn`'s shard.
async fn prepared(conn: &mut Conn) -> Vec<String> {
    let rows: Vec<(u32, u32, u32, Vec<u8>)> = conn.query("XA RECOVER").await.expect("XA RECOVER");
    rows.into_iter()
        .filter(|(format, ..)| *format == XA_FORMAT)
        .map(|(_, gtrid_len, _, data)| {
            String::from_utf8_lossy(&data[..gtrid_len as usize]).into_owned()
        })
        .collect()
}

/// Leaves a prepared branch `gtrid` (decided by shop/-80) on shard 80- running
/// `statement`, as a coordinator that crashed after phase one would.
async fn prepare_branch(cluster: &Cluster, gtrid: &str, statement: &str) {
    let mut c = cluster.shard_session("80-").await;
    let xid = format!("'{gtrid}','shop/-80',{XA_FORMAT}");
    for sql in [
        format!("XA START {xid}"),
        statement.to_string(),
        format!("XA END {xid}"),
        format!("XA PREPARE {xid}"),
    ] {
        c.query_drop(&sql).await.expect(&sql);
    }
    drop(c);
}

async fn customer_name(conn: &mut Conn, id: u32) -> Option<String> {
    conn.query_first(format!("SELECT name FROM customer WHERE id = {id}"))
        .await
        .expect("point select")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twopc_commits_atomically_and_resolves_branches_in_doubt() {
    let cluster = start_with(2, |args| {
        args.twopc_resolve_interval_ms = 200;
        args.twopc_abort_after_ms = 2_000;
    })
    .await;
    let mut c = cluster.connect(Some("shop")).await;
    assert_eq!(
        error_code(&mut c, "SET transaction_mode = 'sometimes'").await,
        Some(1231)
    );
    let mode = "SELECT @@transaction_mode";
    let before: Option<String> = c.query_first(mode).await.expect("mode");
    assert_eq!(before.as_deref(), Some("MULTI"));
    c.query_drop("SET transaction_mode = 'twopc'")
        .await
        .expect("twopc is enabled locally");
    let after: Option<String> = c.query_first(mode).await.expect("mode");
    assert_eq!(after.as_deref(), Some("TWOPC"));

    // hash(1) is in -80, hash(4) in 80-.
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop("INSERT INTO customer (id, name) VALUES (1, 'a')")
        .await
        .expect("first shard");
    c.query_drop("INSERT INTO customer (id, name) VALUES (4, 'd')")
        .await
        .expect("second shard joins the XA transaction");
    assert_eq!(
        error_code(&mut c, "SET transaction_mode = 'multi'").await,
        Some(1568),
        "the mode cannot change inside a transaction"
    );
    let mut other = cluster.connect(Some("shop")).await;
    assert_eq!(
        customer_name(&mut other, 4).await,
        None,
        "not yet committed"
    );
    c.query_drop("COMMIT").await.expect("two-phase commit");
    assert_eq!(customer_name(&mut other, 1).await.as_deref(), Some("a"));
    assert_eq!(customer_name(&mut other, 4).await.as_deref(), Some("d"));
    assert_eq!(
        cluster.metric("shardcar_twopc_commits_total{result=\"committed\"}"),
        1.0
    );

    // One shard: one phase. Rollback: nothing lands anywhere.
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop("UPDATE customer SET name = 'a1' WHERE id = 1")
        .await
        .expect("update");
    c.query_drop("COMMIT").await.expect("one-phase commit");
    assert_eq!(
        cluster.metric("shardcar_twopc_commits_total{result=\"one_phase\"}"),
        1.0
    );
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop("UPDATE customer SET name = 'gone' WHERE id IN (1, 4)")
        .await
        .expect("scatter update inside twopc");
    c.query_drop("ROLLBACK").await.expect("rollback");
    assert_eq!(customer_name(&mut other, 1).await.as_deref(), Some("a1"));
    assert_eq!(customer_name(&mut other, 4).await.as_deref(), Some("d"));
    let mut right = cluster.shard_session("80-").await;
    let mut left = cluster.shard_session("-80").await;
    assert!(
        prepared(&mut right).await.is_empty(),
        "no branch left prepared"
    );
    assert!(
        prepared(&mut left).await.is_empty(),
        "no branch left prepared"
    );

    // A coordinator that died after recording `commit`: the resolver commits the
    // prepared branch it left.
    prepare_branch(
        &cluster,
        "shardcar-test-commit",
        "UPDATE customer SET name = 'decided' WHERE id = 4",
    )
    .await;
    left.query_drop("INSERT INTO _shardcar.twopc_decisions (gtrid, decision) VALUES ('shardcar-test-commit', 'commit')")
        .await
        .expect("decision row");
    eventually("the resolver commits the decided branch", async || {
        customer_name(&mut other, 4).await.as_deref() == Some("decided")
    })
    .await;
    assert!(prepared(&mut right).await.is_empty());
    eventually("the finished decision row is deleted", async || {
        let rows: Vec<String> = left
            .query("SELECT gtrid FROM _shardcar.twopc_decisions")
            .await
            .expect("decision rows");
        rows.is_empty()
    })
    .await;

    // One that died before any decision: rolled back after abort_after, with an
    // `abort` row so that a late COMMIT cannot win.
    prepare_branch(
        &cluster,
        "shardcar-test-abort",
        "UPDATE customer SET name = 'never' WHERE id = 4",
    )
    .await;
    assert_eq!(
        prepared(&mut right).await,
        vec!["shardcar-test-abort".to_string()]
    );
    eventually("the resolver rolls back the undecided branch", async || {
        prepared(&mut right).await.is_empty()
    })
    .await;
    assert_eq!(
        customer_name(&mut other, 4).await.as_deref(),
        Some("decided")
    );
    let decision: Option<String> = left
        .query_first(
            "SELECT decision FROM _shardcar.twopc_decisions WHERE gtrid = 'shardcar-test-abort'",
        )
        .await
        .expect("decision row");
    assert_eq!(decision.as_deref(), Some("abort"));
    assert_eq!(
        cluster.metric("shardcar_twopc_resolved_branches_total{kind=\"commit\"}"),
        1.0
    );
    assert_eq!(
        cluster.metric("shardcar_twopc_resolved_branches_total{kind=\"rollback\"}"),
        1.0
    );

    // mysqld killed with a branch prepared: the branch survives the restart, and the
    // resolver, having lost its connection, finishes it from the decision row.
    prepare_branch(
        &cluster,
        "shardcar-test-crash",
        "UPDATE customer SET name = 'after crash' WHERE id = 4",
    )
    .await;
    let (port, datadir, server_id): (u16, String, u32) = right
        .query_first("SELECT @@port, @@datadir, @@server_id")
        .await
        .expect("shard facts")
        .expect("one row");
    drop(right);
    let datadir = std::path::PathBuf::from(datadir);
    let pid: u32 = std::fs::read_to_string(datadir.join("mariadbd.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(shardcar::local::process::send_signal(pid, libc::SIGKILL));
    eventually("mysqld is gone", async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    let root_password = std::fs::read_to_string(cluster._data.path().join("cluster/root-password"))
        .expect("root password");
    let restarted = MariaDb::start(MariaDbOptions {
        data_dir: Some(datadir),
        port: Some(port),
        server_id,
        extra_args: Vec::new(),
        root_password: root_password.trim().to_string(),
        log_bin: true,
        netns: None,
    })
    .await
    .expect("restarting mysqld");
    left.query_drop("INSERT INTO _shardcar.twopc_decisions (gtrid, decision) VALUES ('shardcar-test-crash', 'commit')")
        .await
        .expect("decision row");
    eventually(
        "the resolver commits the branch that survived the crash",
        async || {
            let mut fresh = cluster.connect(Some("shop")).await;
            customer_name(&mut fresh, 4).await.as_deref() == Some("after crash")
        },
    )
    .await;
    assert_eq!(
        cluster.metric("shardcar_twopc_resolved_branches_total{kind=\"commit\"}"),
        2.0
    );
    drop((c, other, left));
    cluster.stop().await;
    restarted.stop().await;
}
