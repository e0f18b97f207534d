//! The proxy-wasm filter as a real `.wasm` module in the wasmi host (`wasm_host`):
//! byte streams recorded from real MariaDB sessions replayed in every chunking, and the
//! host between real clients (mysql_async, the `mariadb` CLI) and a real mariadbd.

use mysql_async::prelude::*;
use shardcar_tests::client::{cli, opts, run, server_code};
use shardcar_tests::wasm_host::{Direction, RecordingRelay, Variant, WasmHost, WasmRelay};
use shardcar_tests::{temp_dir, MariaDb, MariaDbOptions};
use std::time::Duration;

/// No policy at all: the built-in rules off, no limits.
const NO_POLICY: &str = r#"{"queryPolicy": {"builtinRules": {"update_without_where": "off", "delete_without_where": "off"}}}"#;

async fn mariadb() -> MariaDb {
    let db = MariaDb::start(MariaDbOptions::default())
        .await
        .expect("mariadbd");
    db.exec(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(64), price INT); \
         CREATE TABLE shop.secret (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO shop.secret VALUES (1, 'x'); \
         CREATE USER 'alice'@'%' IDENTIFIED BY 'pw'; \
         GRANT ALL ON *.* TO 'alice'@'%';",
    )
    .await
    .expect("schema");
    db
}

fn pool(port: u16, user: &str, pass: &str) -> mysql_async::Pool {
    mysql_async::Pool::new(opts(port, user, pass).db_name(Some("shop")))
}

/// A session that uses most of the protocol: text and binary results, big results in
/// many reads, errors, multi-statements, prepared statements, LOCAL INFILE refused by
/// the client, ping, reset and change user.
async fn a_busy_session(port: u16, root_password: &str) {
    let p = mysql_async::Pool::new(
        opts(port, "root", root_password)
            .db_name(Some("shop"))
            .client_found_rows(true),
    );
    let mut c = p.get_conn().await.expect("connect");
    c.query_drop("DELETE FROM items").await.expect("clean");
    for chunk in 0..10 {
        let values: Vec<String> = (0..500)
            .map(|i| {
                let id = chunk * 500 + i;
                format!("({id}, 'item {id} {}', {})", "é".repeat(id % 40), id % 97)
            })
            .collect();
        c.query_drop(format!("INSERT INTO items VALUES {}", values.join(",")))
            .await
            .expect("insert");
    }
    let rows: Vec<(i32, String, i32)> = c
        .query("SELECT id, name, price FROM items ORDER BY id")
        .await
        .expect("select");
    assert_eq!(rows.len(), 5000);
    let err = c
        .query_drop("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(1146));
    let stmt = c
        .prep("SELECT name FROM items WHERE id = ? OR price = ?")
        .await
        .expect("prepare");
    for id in [1, 2, 3, 4999] {
        let _: Vec<String> = c.exec(&stmt, (id, 3)).await.expect("execute");
    }
    c.close(stmt).await.expect("close statement");
    c.query_drop("UPDATE items SET price = price + 1 WHERE id < 100")
        .await
        .expect("update");
    let blob = "b".repeat(300_000);
    c.exec_drop("UPDATE items SET name = LEFT(?, 60) WHERE id = 7", (blob,))
        .await
        .expect("long parameter");
    c.ping().await.expect("ping");
    c.reset().await.expect("reset");
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop("INSERT INTO items VALUES (99999, 'tx', 1)")
        .await
        .expect("insert in tx");
    c.query_drop("ROLLBACK").await.expect("rollback");
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some("alice".into()))
            .with_pass(Some("pw".into()))
            .with_db_name(Some("shop".into())),
    )
    .await
    .expect("change user");
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .expect("count as alice");
    assert_eq!(n, Some(5000));
    drop(c);
    p.disconnect().await.expect("disconnect");
}

/// Concatenates the reads of one direction.
fn stream(reads: &[(Direction, Vec<u8>)], d: Direction) -> Vec<u8> {
    reads
        .iter()
        .filter(|(dir, _)| *dir == d)
        .flat_map(|(_, b)| b.iter().copied())
        .collect()
}

/// The server's stream as the client got it: byte for byte what mariadbd sent, except
/// the greeting's capabilities the filter cannot follow (compression; MariaDB's progress
/// reports, COM_MULTI and cached metadata).
fn assert_same_but_greeting(got: &[u8], sent: &[u8], piece: usize) {
    use shardcar_filter::protocol::constants::capabilities as caps;
    use shardcar_filter::protocol::handshake::Greeting;
    let len = |b: &[u8]| 4 + (usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16);
    let (n, m) = (len(sent), len(got));
    assert_eq!(n, m, "the greeting keeps its length");
    assert!(
        got[n..] == sent[n..],
        "server bytes changed after the greeting (piece {piece})"
    );
    let before = Greeting::decode(&sent[4..n]).expect("greeting");
    let after = Greeting::decode(&got[4..m]).expect("greeting");
    assert_ne!(
        before.capabilities & caps::COMPRESS,
        0,
        "mariadbd offers compression"
    );
    assert_eq!(after.capabilities, before.capabilities & !caps::COMPRESS);
    assert_eq!(
        after.mariadb_capabilities,
        before.mariadb_capabilities & !0x13
    );
    assert_eq!(
        (
            after.server_version,
            after.connection_id,
            after.scramble,
            after.auth_plugin
        ),
        (
            before.server_version,
            before.connection_id,
            before.scramble,
            before.auth_plugin
        )
    );
}

/// Replays `reads` through a fresh host, split into pieces of at most `piece` bytes
/// (`usize::MAX`: consecutive reads of one direction merged into one), and returns what
/// the filter handed on in each direction, with the host.
fn replay(
    reads: &[(Direction, Vec<u8>)],
    piece: usize,
    config: &str,
) -> (Vec<u8>, Vec<u8>, WasmHost) {
    let mut host = WasmHost::load(Variant::Full, config).expect("module");
    let ctx = host.open("10.1.2.3:50000", None).expect("open");
    let mut merged: Vec<(Direction, Vec<u8>)> = Vec::new();
    for (d, b) in reads {
        match merged.last_mut() {
            Some((last, bytes)) if piece == usize::MAX && last == d => bytes.extend_from_slice(b),
            _ => merged.push((*d, b.clone())),
        }
    }
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut now = 1_000_000u64;
    for (d, bytes) in &merged {
        for chunk in bytes.chunks(piece.min(bytes.len().max(1))) {
            now += 1_000;
            let out = host.data(ctx, *d, chunk, now).expect("data");
            match d {
                Direction::ClientToServer => to_server.extend(out),
                Direction::ServerToClient => to_client.extend(out),
            }
        }
    }
    host.close(ctx).expect("close");
    (to_server, to_client, host)
}

/// A recorded session replays byte-identical in both directions (but for the greeting's
/// compression and MariaDB-extension bits) however its reads are cut (as recorded, one byte at a time, 7 and 1000 bytes, whole turns), and the metrics
/// count its statements, errors and latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_sessions_pass_unchanged_in_any_chunking() {
    // mysql_async futures are large in debug builds: keep them off the test thread's stack.
    Box::pin(recorded_sessions_pass_unchanged_in_any_chunking_body()).await;
}

async fn recorded_sessions_pass_unchanged_in_any_chunking_body() {
    let db = mariadb().await;
    let recorder = RecordingRelay::start(db.port()).await.expect("recorder");
    a_busy_session(recorder.port, db.root_password()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reads = recorder.take();
    let client = stream(&reads, Direction::ClientToServer);
    let server = stream(&reads, Direction::ServerToClient);
    assert!(
        server.len() > 200_000,
        "a big session: {} bytes",
        server.len()
    );
    let reads_for = |piece| tokio::task::block_in_place(|| replay(&reads, piece, NO_POLICY));
    for piece in [0usize, 1, 7, 1000, usize::MAX] {
        let piece = if piece == 0 { 64 * 1024 } else { piece };
        if piece == 1 {
            // One byte at a time through an interpreter: only the client side and the
            // first 50 kB of the server side, to keep the test quick.
            let cut: Vec<(Direction, Vec<u8>)> = reads
                .iter()
                .scan(0usize, |seen, (d, b)| {
                    if *d == Direction::ServerToClient {
                        *seen += b.len();
                    }
                    Some((*seen, d, b))
                })
                .take_while(|(seen, _, _)| *seen < 50_000)
                .map(|(_, d, b)| (*d, b.clone()))
                .collect();
            let (to_server, to_client, _) =
                tokio::task::block_in_place(|| replay(&cut, 1, NO_POLICY));
            assert_eq!(to_server, stream(&cut, Direction::ClientToServer));
            assert_same_but_greeting(&to_client, &stream(&cut, Direction::ServerToClient), 1);
            continue;
        }
        let (to_server, to_client, host) = reads_for(piece);
        assert_eq!(to_server.len(), client.len(), "piece {piece}");
        assert!(to_server == client, "client bytes changed (piece {piece})");
        assert_same_but_greeting(&to_client, &server, piece);
        // One SELECT, one prepare and its four executes (counted as the prepared
        // statement's kind), and the COUNT(*) after COM_CHANGE_USER.
        assert_eq!(
            host.counter("shardcar.mysql.kind.select.table.items.statements"),
            7,
            "piece {piece}: {:?}",
            host.metrics()
        );
        assert_eq!(
            host.counter("shardcar.mysql.kind.insert.table.items.statements"),
            11
        );
        assert_eq!(
            host.counter("shardcar.mysql.kind.select.table.no_such_table.errors"),
            1
        );
        assert_eq!(
            host.counter("shardcar.mysql.kind.update.table.items.statements"),
            3,
            "an UPDATE, and one prepared and executed"
        );
        assert_eq!(
            host.counter("shardcar.mysql.kind.ping.table.none.statements"),
            1
        );
        assert_eq!(
            host.counter("shardcar.mysql.protocol_errors"),
            0,
            "{:?}",
            host.logs()
        );
        assert!(!host
            .samples("shardcar.mysql.kind.select.latency_us")
            .is_empty());
        assert_eq!(host.counter("shardcar.mysql.connections"), 1);
    }
    db.stop().await;
}

/// Between mysql_async and mariadbd: a statement a rule denies gets ERR 1148, one the
/// access policy denies ERR 1142, each with its SQLSTATE; a denied prepare fails; the
/// connection and its open transaction go on; the row limit errors or truncates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_the_client_as_mysql_errors() {
    // mysql_async futures are large in debug builds: keep them off the test thread's stack.
    Box::pin(refusals_reach_the_client_as_mysql_errors_body()).await;
}

async fn refusals_reach_the_client_as_mysql_errors_body() {
    let db = mariadb().await;
    let config = r#"{
      "queryPolicy": {
        "limits": {"max_rows": 5},
        "rules": [{"name": "no-secret", "match": {"tables": ["secret"]}, "action": "deny",
                   "message": "secret is off limits"}]
      },
      "access": [{"name": "root", "identities": ["user:root"], "read": ["*"], "write": ["*"], "admin": true},
                 {"name": "alice", "identities": ["user:alice"], "read": ["shop.items"]}]
    }"#;
    let host = WasmHost::load(Variant::Full, config).expect("module");
    let relay = WasmRelay::start(host, db.port()).await.expect("relay");
    let root = pool(relay.port, "root", db.root_password());
    let mut c = root.get_conn().await.expect("connect through the filter");
    c.query_drop("INSERT INTO items VALUES (1,'a',1),(2,'b',2),(3,'c',3),(4,'d',4),(5,'e',5),(6,'f',6),(7,'g',7)")
        .await
        .expect("insert");
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop("UPDATE items SET price = 100 WHERE id = 1")
        .await
        .expect("update in tx");
    let err = c.query_drop("SELECT * FROM secret").await.unwrap_err();
    match &err {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1148);
            assert_eq!(e.state, "42000");
            assert!(
                e.message.contains("secret is off limits") && e.message.contains("no-secret"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    let err = c
        .prep("SELECT v FROM secret WHERE id = ?")
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(1148), "{err}");
    // A multi-statement text meets the rules statement by statement.
    let err = c
        .query_drop("SELECT 1; DELETE FROM items")
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(1148), "{err}");
    c.query_drop("COMMIT")
        .await
        .expect("commit after the refusals");
    let price: Option<i32> = c
        .query_first("SELECT price FROM items WHERE id = 1")
        .await
        .expect("the transaction committed");
    assert_eq!(price, Some(100));
    // Row limit: 7 rows, limit 5.
    let err = c.query_drop("SELECT * FROM items").await.unwrap_err();
    match &err {
        mysql_async::Error::Server(e) => {
            assert_eq!((e.code, e.state.as_str()), (1104, "42000"));
            assert!(e.message.contains("Row count exceeded 5"), "{}", e.message);
        }
        other => panic!("expected ERR 1104, got {other:?}"),
    }
    let few: Vec<i32> = c
        .query("SELECT id FROM items ORDER BY id LIMIT 3")
        .await
        .expect("a SELECT within the limit");
    assert_eq!(few, vec![1, 2, 3]);
    // Prepared: the limit is cut in the response stream.
    let err = c
        .exec_drop("SELECT id FROM items WHERE id > ?", (0,))
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(1104), "{err}");
    let one: Vec<i32> = c
        .exec("SELECT id FROM items WHERE id = ?", (2,))
        .await
        .expect("execute after a cut");
    assert_eq!(one, vec![2]);
    drop(c);

    // Access policy: alice may only read shop.items.
    let alice = pool(relay.port, "alice", "pw");
    let mut a = alice.get_conn().await.expect("alice connects");
    let n: Option<i64> = a
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .expect("alice reads items");
    assert_eq!(n, Some(7));
    let err = a
        .query_drop("INSERT INTO items VALUES (50, 'x', 1)")
        .await
        .unwrap_err();
    match &err {
        mysql_async::Error::Server(e) => {
            assert_eq!((e.code, e.state.as_str()), (1142, "42000"));
            assert!(
                e.message.starts_with(
                    "INSERT command denied to user 'alice'@'127.0.0.1' for table 'items'"
                ),
                "{}",
                e.message
            );
        }
        other => panic!("expected ERR 1142, got {other:?}"),
    }
    let err = a.query_drop("DROP TABLE items").await.unwrap_err();
    assert_eq!(server_code(&err), Some(1227), "{err}");
    let still: Option<i64> = a
        .query_first("SELECT COUNT(*) FROM shop.items")
        .await
        .expect("alice's connection still works");
    assert_eq!(still, Some(7));
    drop(a);
    alice.disconnect().await.expect("disconnect");
    root.disconnect().await.expect("disconnect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    {
        let host = relay.host.lock().expect("host");
        assert_eq!(host.counter("shardcar.mysql.refused.reason.no_secret"), 2);
        assert_eq!(
            host.counter("shardcar.mysql.refused.reason.access_policy"),
            2
        );
        assert_eq!(host.counter("shardcar.mysql.rows_limited"), 2);
        assert_eq!(host.counter("shardcar.mysql.protocol_errors"), 0);
    }
    db.stop().await;
}

/// Truncate mode, an oversized statement, and the `mariadb` CLI: the client gets the
/// rows within the limit and a normal end; a statement over maxStatementBytes is refused
/// with 1153 without reaching mysqld and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_oversize_and_the_cli() {
    // mysql_async futures are large in debug builds: keep them off the test thread's stack.
    Box::pin(truncation_oversize_and_the_cli_body()).await;
}

async fn truncation_oversize_and_the_cli_body() {
    let db = mariadb().await;
    let config = r#"{"queryPolicy": {"limits": {"max_rows": 3, "max_rows_mode": "truncate"}},
                     "maxStatementBytes": 65536}"#;
    let host = WasmHost::load(Variant::Lean, config).expect("lean module");
    let relay = WasmRelay::start(host, db.port()).await.expect("relay");
    let p = pool(relay.port, "root", db.root_password());
    let mut c = p.get_conn().await.expect("connect");
    c.query_drop("INSERT INTO items VALUES (1,'a',1),(2,'b',2),(3,'c',3),(4,'d',4),(5,'e',5)")
        .await
        .expect("insert");
    let ids: Vec<i32> = c
        .query("SELECT id FROM items UNION ALL SELECT id FROM items")
        .await
        .expect("truncated");
    assert_eq!(ids.len(), 3, "{ids:?}");
    let big = format!("SELECT '{}'", "x".repeat(100_000));
    let err = c.query_drop(&big).await.unwrap_err();
    assert_eq!(server_code(&err), Some(1153), "{err}");
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM items WHERE id < 3")
        .await
        .expect("after the refusal");
    assert_eq!(n, Some(2));
    drop(c);
    p.disconnect().await.expect("disconnect");
    let (ok, out, err) = run(
        cli(relay.port, "root", db.root_password()),
        Some("SELECT id FROM shop.items ORDER BY id; UPDATE shop.items SET price = 0;\nSELECT 'after';\n"),
        Duration::from_secs(20),
    );
    assert!(!ok, "the CLI stops at the refusal: {out} {err}");
    assert!(out.contains("1\n2\n3\n") && !out.contains("4\n"), "{out}");
    assert!(
        err.contains("ERROR 1148 (42000)") && err.contains("update_without_where"),
        "{err}"
    );
    // A client asking for compression does not get it (the greeting no longer offers
    // it), so its statements stay readable and the policy applies.
    let mut compressed = cli(relay.port, "root", db.root_password());
    compressed.arg("--compress");
    let (ok, out, err) = run(
        compressed,
        Some("SELECT COUNT(*) FROM shop.items;\nDELETE FROM shop.items;\n"),
        Duration::from_secs(20),
    );
    assert!(!ok, "{out} {err}");
    assert!(out.contains('5'), "{out}");
    assert!(
        err.contains("ERROR 1148 (42000)") && err.contains("delete_without_where"),
        "{err}"
    );
    // LOAD DATA LOCAL INFILE: the client's file streams through between the server's
    // request and its OK.
    let dir = temp_dir("shardcar-wasm-infile-");
    let csv = dir.path().join("items.csv");
    let rows: String = (100..3100)
        .map(|i| format!("{i},loaded {i},{}\n", i % 7))
        .collect();
    std::fs::write(&csv, rows).expect("csv");
    let mut load = cli(relay.port, "root", db.root_password());
    load.arg("--local-infile=1");
    let (ok, out, err) = run(
        load,
        Some(&format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE shop.items FIELDS TERMINATED BY ',';\nSELECT COUNT(*) FROM shop.items WHERE id >= 100 LIMIT 1;\n",
            csv.display()
        )),
        Duration::from_secs(30),
    );
    assert!(ok, "{out} {err}");
    assert!(out.contains("3000"), "{out}");
    db.stop().await;
}

/// TLS connections pass through untouched and are counted; the lean module refuses a
/// configuration with an access policy, naming it; a bad configuration is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passes_through_and_bad_configs_are_refused() {
    // mysql_async futures are large in debug builds: keep them off the test thread's stack.
    Box::pin(tls_passes_through_and_bad_configs_are_refused_body()).await;
}

async fn tls_passes_through_and_bad_configs_are_refused_body() {
    let certs = temp_dir("shardcar-wasm-tls-");
    let (cert, key) =
        shardcar::tls::self_signed(certs.path(), &["localhost", "127.0.0.1"]).expect("certificate");
    let db = MariaDb::start(MariaDbOptions {
        extra_args: vec![
            format!("--ssl-cert={}", cert.display()),
            format!("--ssl-key={}", key.display()),
        ],
        ..MariaDbOptions::default()
    })
    .await
    .expect("mariadbd with TLS");
    let host = WasmHost::load(Variant::Full, NO_POLICY).expect("module");
    let relay = WasmRelay::start(host, db.port()).await.expect("relay");
    let p = mysql_async::Pool::new(opts(relay.port, "root", db.root_password()).ssl_opts(Some(
        mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true),
    )));
    let mut c = p.get_conn().await.expect("TLS through the filter");
    let cipher: Option<(String, String)> = c
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .expect("status");
    assert!(
        cipher.is_some_and(|(_, v)| !v.is_empty()),
        "the session is encrypted"
    );
    drop(c);
    p.disconnect().await.expect("disconnect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    {
        let host = relay.host.lock().expect("host");
        assert_eq!(host.counter("shardcar.mysql.tls_connections"), 1);
        assert!(host.counter("shardcar.mysql.opaque_bytes") > 1000);
        assert_eq!(host.counter("shardcar.mysql.protocol_errors"), 0);
    }
    let lean = WasmHost::load(
        Variant::Lean,
        r#"{"accessPolicy": {"grants": [{"keyspaces": ["shop"], "access": ["read"]}]}}"#,
    )
    .unwrap_err();
    assert!(format!("{lean:#}").contains("accessPolicy"), "{lean:#}");
    let bad = WasmHost::load(
        Variant::Full,
        r#"{"queryPolicy": {"rules": [{"name": "r", "action": "rewrite", "pattern": "("}]}}"#,
    )
    .unwrap_err();
    assert!(format!("{bad:#}").contains("rules[0] (r)"), "{bad:#}");
    let unknown = WasmHost::load(Variant::Full, r#"{"queryPolcy": {}}"#).unwrap_err();
    assert!(format!("{unknown:#}").contains("queryPolcy"), "{unknown:#}");
    db.stop().await;
}
