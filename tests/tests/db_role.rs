//! The db role (`shardcar db`) in front of a real mariadbd: client sessions multiplexed
//! over a small pool without losing session semantics (SET, transactions, temporary
//! tables, LAST_INSERT_ID), the pool's budgets and its refusal when exhausted,
//! statement and transaction timeouts, row limits, and query rules with hot reload.
//!
//! Pools are configured tiny (one or two connections) so that sessions really share
//! backend connections. Time bounds are generous "no hang" limits, never performance
//! thresholds.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::Conn;
use shardcar_tests::client::{opts, server_code};
use shardcar_tests::{
    http_get, http_post, metric_or_zero, shared_cluster, Cluster, SidecarProcess,
};

/// A db-role sidecar in front of the shared cluster's MariaDB with `db_yaml` as its
/// `db:` section (indented by two spaces).
fn db_sidecar(c: &Cluster, db_yaml: &str) -> SidecarProcess {
    let mut options = c.sidecar_options(format!("db:\n{db_yaml}"));
    options.role = "db";
    SidecarProcess::start(options).unwrap_or_else(|e| panic!("starting shardcar db: {e:#}"))
}

async fn connect(c: &Cluster, s: &SidecarProcess) -> Conn {
    Conn::new(opts(s.port(), &c.app_user, &c.app_password).db_name(Some(&c.database)))
        .await
        .unwrap_or_else(|e| panic!("connecting through shardcar db: {e}\n{}", s.stderr()))
}

async fn direct(c: &Cluster) -> Conn {
    Conn::new(opts(c.mariadb.port(), &c.app_user, &c.app_password).db_name(Some(&c.database)))
        .await
        .unwrap_or_else(|e| panic!("connecting to MariaDB: {e}"))
}

fn metric(s: &SidecarProcess, series: &str) -> f64 {
    metric_or_zero(&s.metrics().unwrap_or_default(), series)
}

/// Mysqld's connections from the sidecar's account.
async fn backend_connections(c: &Cluster) -> usize {
    let mut d = direct(c).await;
    let n: Option<usize> = d
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            (c.upstream_user.as_str(),),
        )
        .await
        .unwrap();
    n.unwrap_or(0)
}

const TINY: &str = "  pool:\n    statement_connections: 2\n    transaction_connections: 2\n    stream_connections: 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_share_a_few_backend_connections_with_their_own_session_state() {
    let c = shared_cluster();
    let s = db_sidecar(c, TINY);
    let mut sessions = Vec::new();
    for i in 0..40 {
        let mut conn = connect(c, &s).await;
        // Every other session has its own sql_mode and time zone; replayed, not pinned.
        if i % 2 == 0 {
            conn.query_drop(format!(
                "SET sql_mode = 'ANSI_QUOTES', time_zone = '+0{}:00'",
                i % 10
            ))
            .await
            .unwrap();
        }
        sessions.push(conn);
    }
    let mut tasks = Vec::new();
    for (i, mut conn) in sessions.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let (mode, tz): (String, String) = conn
                    .query_first("SELECT @@sql_mode, @@time_zone")
                    .await
                    .unwrap()
                    .unwrap();
                if i % 2 == 0 {
                    assert_eq!(mode, "ANSI_QUOTES", "session {i}");
                    assert_eq!(tz, format!("+0{}:00", i % 10), "session {i}");
                } else {
                    assert_ne!(mode, "ANSI_QUOTES", "session {i} saw another session's SET");
                    assert_eq!(tz, "SYSTEM", "session {i}");
                }
            }
            conn
        }));
    }
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await.unwrap());
    }
    // 40 idle client sessions hold no backend connection; at most the budgets' total
    // was ever open.
    // The budgets (5) plus the health probe.
    assert!(backend_connections(c).await <= 6, "{}", s.stderr());
    assert!(metric(&s, "shardcar_pool_open") <= 5.0);
    assert!(metric(&s, "shardcar_pool_replays_total") > 0.0);
    for conn in conns {
        conn.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_temporary_tables_and_user_variables_keep_their_connection() {
    let c = shared_cluster();
    let s = db_sidecar(c, TINY);
    let mut setup = connect(c, &s).await;
    setup
        .query_drop("CREATE TABLE IF NOT EXISTS pin_t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let mut a = connect(c, &s).await;
    let mut b = connect(c, &s).await;
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO pin_t (v) VALUES (1)")
        .await
        .unwrap();
    // Another session's statements do not see or disturb the open transaction.
    for _ in 0..5 {
        let n: Option<i64> = b
            .query_first("SELECT COUNT(*) FROM pin_t WHERE v = 1")
            .await
            .unwrap();
        assert_eq!(n, Some(0));
    }
    let n: Option<i64> = a
        .query_first("SELECT COUNT(*) FROM pin_t WHERE v = 1")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    a.query_drop("ROLLBACK").await.unwrap();

    a.query_drop("CREATE TEMPORARY TABLE tmp_a (x INT)")
        .await
        .unwrap();
    a.query_drop("INSERT INTO tmp_a VALUES (7)").await.unwrap();
    a.query_drop("SET @mine = 42").await.unwrap();
    for _ in 0..5 {
        b.query_drop("SELECT 1").await.unwrap();
        // B never sees A's user variable or temporary table.
        let v: Option<Option<i64>> = b.query_first("SELECT @mine").await.unwrap();
        assert_eq!(v, Some(None));
    }
    let x: Option<i64> = a.query_first("SELECT x FROM tmp_a").await.unwrap();
    assert_eq!(x, Some(7));
    let v: Option<i64> = a.query_first("SELECT @mine").await.unwrap();
    assert_eq!(v, Some(42));
    assert!(
        metric(
            &s,
            "shardcar_session_pins_total{reason=\"temporary_table\"}"
        ) >= 1.0
    );
    a.disconnect().await.unwrap();
    // The pinned connection was reset before anyone else got it.
    for _ in 0..5 {
        let e = b.query_drop("SELECT x FROM tmp_a").await.unwrap_err();
        assert_eq!(server_code(&e), Some(1146), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_xa_branch_outlives_its_session_without_poisoning_the_pool() {
    let c = shared_cluster();
    let s = db_sidecar(c, TINY);
    let mut setup = connect(c, &s).await;
    setup
        .query_drop("CREATE TABLE IF NOT EXISTS xa_t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    setup
        .query_drop("REPLACE INTO xa_t VALUES (1, 0)")
        .await
        .unwrap();
    let mut a = connect(c, &s).await;
    for sql in [
        "XA START 'db-role-xa'",
        "UPDATE xa_t SET v = 1 WHERE id = 1",
        "XA END 'db-role-xa'",
        "XA PREPARE 'db-role-xa'",
    ] {
        a.query_drop(sql).await.unwrap();
    }
    a.disconnect().await.unwrap();
    // As with mysqld itself, the prepared branch waits for any session to finish it, and
    // the connection it ran on is not handed to anyone in that state.
    for _ in 0..6 {
        let mut b = connect(c, &s).await;
        let v: Option<i64> = b
            .query_first("SELECT v FROM xa_t WHERE id = 1")
            .await
            .unwrap();
        assert_eq!(v, Some(0));
        b.disconnect().await.unwrap();
    }
    let mut b = connect(c, &s).await;
    let listed: Vec<(u32, u32, u32, String)> = b.query("XA RECOVER").await.unwrap();
    assert!(
        listed.iter().any(|(.., data)| data == "db-role-xa"),
        "{listed:?}"
    );
    b.query_drop("XA COMMIT 'db-role-xa'").await.unwrap();
    let v: Option<i64> = b
        .query_first("SELECT v FROM xa_t WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(v, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_insert_id_and_connection_id_follow_the_session_across_connections() {
    let c = shared_cluster();
    let s = db_sidecar(c, "  pool:\n    statement_connections: 1\n");
    let mut setup = connect(c, &s).await;
    setup
        .query_drop("CREATE TABLE IF NOT EXISTS lid_t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let mut a = connect(c, &s).await;
    let mut b = connect(c, &s).await;
    a.query_drop("INSERT INTO lid_t (v) VALUES (1)")
        .await
        .unwrap();
    let a_id = a.last_insert_id().unwrap();
    b.query_drop("INSERT INTO lid_t (v) VALUES (2)")
        .await
        .unwrap();
    b.query_drop("INSERT INTO lid_t (v) VALUES (3)")
        .await
        .unwrap();
    let seen: Option<u64> = a.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(seen, Some(a_id));
    let fresh = connect(c, &s).await;
    let mut fresh = fresh;
    let none: Option<u64> = fresh.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(
        none,
        Some(0),
        "a new session must not see another session's id"
    );
    // CONNECTION_ID() is the id the client was given, not a backend thread's.
    let id: Option<u32> = a.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(id, Some(a.id()));
    let u: Option<i64> = a.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(u, Some(-1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_budget_gives_a_clear_error_naming_the_pool() {
    let c = shared_cluster();
    let s = db_sidecar(
        c,
        "  pool:\n    statement_connections: 1\n    transaction_connections: 1\n    wait_timeout_ms: 200\n",
    );
    let mut a = connect(c, &s).await;
    let mut b = connect(c, &s).await;
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("SELECT 1").await.unwrap();
    let started = Instant::now();
    let e = b.query_drop("BEGIN").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1203), "{e}");
    assert!(
        e.to_string().contains("pool 'transaction' exhausted"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Plain statements still run: their budget is separate.
    b.query_drop("SELECT 1").await.unwrap();
    a.query_drop("COMMIT").await.unwrap();
    b.query_drop("BEGIN").await.unwrap();
    b.query_drop("COMMIT").await.unwrap();
    assert!(metric(&s, "shardcar_pool_exhausted_total{pool=\"transaction\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_past_their_timeout_are_killed_with_error_3024() {
    let c = shared_cluster();
    let s = db_sidecar(c, "  limits:\n    statement_timeout_ms: 300\n");
    let mut a = connect(c, &s).await;
    let started = Instant::now();
    let e = a.query_drop("SELECT SLEEP(20)").await.unwrap_err();
    assert_eq!(server_code(&e), Some(3024), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The session goes on.
    let one: Option<i64> = a.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    // A hint lowers the timeout.
    let e = a
        .query_drop("SELECT /*+ MAX_EXECUTION_TIME(100) */ SLEEP(0.25) FROM DUAL")
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(3024), "{e}");
    // ... and raises it within the policy's ceiling.
    let r: Option<i64> = a
        .query_first("SELECT /* shardcar: timeout_ms=5000 */ SLEEP(0.5)")
        .await
        .unwrap();
    assert_eq!(r, Some(0));
    assert!(metric(&s, "shardcar_guard_timeouts_total{reason=\"statement\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_past_their_timeout_are_rolled_back() {
    let c = shared_cluster();
    let s = db_sidecar(c, "  limits:\n    transaction_timeout_ms: 400\n");
    let mut a = connect(c, &s).await;
    a.query_drop("CREATE TABLE IF NOT EXISTS txt_t (v INT)")
        .await
        .unwrap();
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO txt_t VALUES (99)").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = a.query_drop("COMMIT").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1317), "{e}");
    assert!(e.to_string().contains("transaction_timeout_ms"), "{e}");
    let n: Option<i64> = a
        .query_first("SELECT COUNT(*) FROM txt_t WHERE v = 99")
        .await
        .unwrap();
    assert_eq!(n, Some(0), "the timed-out transaction must be rolled back");
    assert!(metric(&s, "shardcar_guard_timeouts_total{reason=\"transaction\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_limits_refuse_or_truncate_big_results_and_olap_lifts_them() {
    let c = shared_cluster();
    let s = db_sidecar(c, "  limits:\n    max_rows: 5\n");
    let mut a = connect(c, &s).await;
    a.query_drop("CREATE TABLE IF NOT EXISTS rows_t (v INT)")
        .await
        .unwrap();
    a.query_drop("DELETE FROM rows_t WHERE v >= 0")
        .await
        .unwrap();
    a.query_drop("INSERT INTO rows_t VALUES (1),(2),(3),(4),(5),(6),(7),(8),(9),(10)")
        .await
        .unwrap();
    let e = a.query_drop("SELECT * FROM rows_t").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1104), "{e}");
    assert!(e.to_string().contains("Row count exceeded 5"), "{e}");
    // Within the limit, and exactly at it.
    let v: Vec<i64> = a
        .query("SELECT v FROM rows_t ORDER BY v LIMIT 3")
        .await
        .unwrap();
    assert_eq!(v, vec![1, 2, 3]);
    let v: Vec<i64> = a.query("SELECT v FROM rows_t WHERE v <= 5").await.unwrap();
    assert_eq!(v.len(), 5);
    // A UNION cannot take the rewrite; the relay still stops it.
    let e = a
        .query_drop("SELECT v FROM rows_t UNION ALL SELECT v FROM rows_t")
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(1104), "{e}");
    a.query_drop("SET workload = 'olap'").await.unwrap();
    let v: Vec<i64> = a.query("SELECT v FROM rows_t").await.unwrap();
    assert_eq!(v.len(), 10);
    a.query_drop("SET workload = 'oltp'").await.unwrap();
    let one: Option<i64> = a.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));

    let t = db_sidecar(
        c,
        "  limits:\n    max_rows: 4\n    max_rows_mode: truncate\n",
    );
    let mut b = connect(c, &t).await;
    let v: Vec<i64> = b
        .query("SELECT v FROM rows_t UNION ALL SELECT 0")
        .await
        .unwrap();
    assert_eq!(v.len(), 4);
    let v: Vec<i64> = b.query("SELECT v FROM rows_t").await.unwrap();
    assert_eq!(v.len(), 4);
    assert!(metric(&t, "shardcar_row_limit_total{reason=\"truncate\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_rules_deny_and_reload_without_dropping_connections() {
    let c = shared_cluster();
    let s = db_sidecar(c, "  reload_interval_ms: 100\n");
    let mut a = connect(c, &s).await;
    a.query_drop("CREATE TABLE IF NOT EXISTS rules_t (v INT)")
        .await
        .unwrap();
    let e = a.query_drop("DELETE FROM rules_t").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1148), "{e}");
    assert!(
        e.to_string().contains("builtin:delete_without_where"),
        "{e}"
    );
    a.query_drop("DELETE FROM rules_t WHERE v = 1")
        .await
        .unwrap();
    a.query_drop("SELECT * FROM rules_t").await.unwrap();

    // Add a rule to the running sidecar's file.
    let path = s.config_path();
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str(
        "  rules:\n    - name: no-rules-t-reads\n      match:\n        tables: [rules_t]\n        statements: [select]\n      action: deny\n      message: reads of rules_t are closed\n",
    );
    std::fs::write(&path, config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match a.query_drop("SELECT * FROM rules_t").await {
            Err(e) => {
                assert_eq!(server_code(&e), Some(1148), "{e}");
                assert!(e.to_string().contains("no-rules-t-reads"), "{e}");
                break;
            }
            Ok(()) => {
                assert!(
                    Instant::now() < deadline,
                    "the new rule never applied\n{}",
                    s.stderr()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The same connection keeps working for everything else.
    let one: Option<i64> = a.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    assert!(
        metric(
            &s,
            "shardcar_rule_matches_total{rule=\"no-rules-t-reads\",action=\"deny\"}"
        ) >= 1.0
    );
    // A broken file is not applied: the running rules stay.
    std::fs::write(&path, "db:\n  rules: [{name: x, action: nonsense}]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let e = a.query_drop("SELECT * FROM rules_t").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1148), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_on_one_hot_row_queue_instead_of_deadlocking() {
    let c = shared_cluster();
    let s = db_sidecar(c, "");
    let mut setup = connect(c, &s).await;
    setup
        .query_drop("CREATE TABLE IF NOT EXISTS hot_t (id INT PRIMARY KEY, n INT) ENGINE=InnoDB")
        .await
        .unwrap();
    setup
        .query_drop("REPLACE INTO hot_t VALUES (1, 0)")
        .await
        .unwrap();
    // Read with a shared lock, then write: the classic upgrade deadlock when two
    // transactions interleave. Queued per row, they cannot.
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let mut conn = connect(c, &s).await;
        tasks.push(tokio::spawn(async move {
            conn.query_drop("BEGIN").await?;
            let n: Option<i64> = conn
                .query_first("SELECT n FROM hot_t WHERE id = 1 LOCK IN SHARE MODE")
                .await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            conn.query_drop(format!(
                "UPDATE hot_t SET n = {} WHERE id = 1",
                n.unwrap_or(0) + 1
            ))
            .await?;
            conn.query_drop("COMMIT").await?;
            Ok::<_, mysql_async::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .unwrap_or_else(|e| panic!("a hot-row transaction failed: {e}"));
    }
    let n: Option<i64> = setup
        .query_first("SELECT n FROM hot_t WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        n,
        Some(12),
        "every read-modify-write must have seen the previous one"
    );
    assert!(metric(&s, "shardcar_hot_row_waits_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_reads_share_one_execution() {
    let c = shared_cluster();
    let s = db_sidecar(c, "");
    let sql = "SELECT SLEEP(1.5) AS s, 'shared' AS tag";
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut conn = connect(c, &s).await;
        tasks.push(tokio::spawn(async move {
            let row: Option<(i64, String)> = conn.query_first(sql).await.unwrap();
            row
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut d = direct(c).await;
    let running: Option<i64> = d
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE ?",
            ("SELECT SLEEP(1.5) AS s%",),
        )
        .await
        .unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Some((0, "shared".to_owned())));
    }
    assert_eq!(
        running,
        Some(1),
        "mysqld ran the identical reads more than once"
    );
    assert!(metric(&s, "shardcar_consolidated_total{reason=\"follower\"}") >= 7.0);
    // Inside a transaction nothing is shared.
    let mut a = connect(c, &s).await;
    a.query_drop("BEGIN").await.unwrap();
    let _: Option<i64> = a.query_first("SELECT 1").await.unwrap();
    a.query_drop("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_concurrency_limits_shed_load_with_a_retryable_error() {
    let c = shared_cluster();
    let s = db_sidecar(c, "  load:\n    max_per_user: 1\n");
    let mut a = connect(c, &s).await;
    let mut b = connect(c, &s).await;
    // The clients' own connect-time statements must have left the shedder first.
    wait_shedder_idle(&s).await;
    let slow = tokio::spawn(async move {
        a.query_drop("SELECT SLEEP(1.5), 'a'").await.unwrap();
        a
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e = b.query_drop("SELECT 'b'").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1203), "{e}");
    assert!(e.to_string().contains("max_per_user"), "{e}");
    slow.await.unwrap();
    // The slow statement's slot is released just after its result reached the client.
    wait_shedder_idle(&s).await;
    b.query_drop("SELECT 'b'").await.unwrap();
    assert!(metric(&s, "shardcar_load_shed_total{reason=\"per_user\"}") >= 1.0);
}

/// Until `/debug/load` shows no statement holding a load-shedding slot.
async fn wait_shedder_idle(s: &SidecarProcess) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(s.admin_port(), "/debug/load").unwrap();
        let load: serde_json::Value = serde_json::from_str(&body).unwrap();
        if load["inflight"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "statements stay in flight: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes a CA, a server certificate for 127.0.0.1 and a client certificate whose URI SAN
/// is `identity`, all PEM, into `dir`.
fn mtls_files(dir: &std::path::Path, identity: &str) -> [std::path::PathBuf; 5] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "shardcar test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issue = |sans: Vec<SanType>| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans;
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = issue(vec![SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    )]);
    let (client_pem, client_key) = issue(vec![SanType::URI(identity.try_into().unwrap())]);
    let files = [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server_pem),
        ("server.key", server_key),
        ("client.pem", client_pem),
        ("client.key", client_key),
    ];
    files.map(|(name, body)| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_policy_grants_tables_by_user_and_by_client_certificate() {
    use shardcar_tests::client::{cli, run};
    let c = shared_cluster();
    let dir = tempfile::tempdir().unwrap();
    let [ca, server, server_key, client, client_key] =
        mtls_files(dir.path(), "spiffe://test/sa/reporter");
    let mut setup = direct(c).await;
    setup
        .query_drop("CREATE TABLE IF NOT EXISTS acl_public (v INT)")
        .await
        .unwrap();
    setup
        .query_drop("CREATE TABLE IF NOT EXISTS acl_secret (v INT)")
        .await
        .unwrap();
    let mut options = c.sidecar_options(format!(
        "tls:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {}\n\
         db:\n  access:\n    - name: app\n      identities: [\"user:{user}\"]\n      read: [acl_public]\n      write: [acl_public]\n\
         \x20   - name: reporter\n      identities: [\"cert:spiffe://test/sa/*\"]\n      read: [\"acl_*\"]\n",
        server.display(),
        server_key.display(),
        ca.display(),
        user = c.app_user,
    ));
    options.role = "db";
    let s = SidecarProcess::start(options).unwrap();
    let mut a = connect(c, &s).await;
    a.query_drop("INSERT INTO acl_public VALUES (1)")
        .await
        .unwrap();
    let _: Vec<i64> = a.query("SELECT v FROM acl_public").await.unwrap();
    let e = a.query_drop("SELECT * FROM acl_secret").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1142), "{e}");
    assert!(e.to_string().contains("for table 'acl_secret'"), "{e}");
    let e = a
        .query_drop("SELECT * FROM acl_public WHERE v IN (SELECT v FROM acl_secret)")
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(1142), "{e}");
    let e = a.query_drop("DROP TABLE acl_public").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1227), "{e}");
    // Statements without tables are not policed.
    a.query_drop("SET sql_mode = ''").await.unwrap();

    // The same user over mTLS with the reporter's certificate gets the reporter's reads,
    // and still no writes to acl_secret.
    let with_cert = |sql: &str| {
        let mut cmd = cli(s.port(), &c.app_user, &c.app_password);
        cmd.arg(format!("--ssl-ca={}", ca.display()))
            .arg(format!("--ssl-cert={}", client.display()))
            .arg(format!("--ssl-key={}", client_key.display()))
            .arg(&c.database)
            .arg("-N")
            .arg("-e")
            .arg(sql);
        run(cmd, None, Duration::from_secs(30))
    };
    let (ok, out, err) = with_cert("SELECT COUNT(*) FROM acl_secret");
    assert!(ok, "reporter read refused: {err}\n{}", s.stderr());
    assert_eq!(out.trim(), "0");
    let (ok, _, err) = with_cert("INSERT INTO acl_secret VALUES (1)");
    assert!(!ok && err.contains("1142"), "reporter write allowed: {err}");
}

/// The session's running statement as `/debug/queries` lists it, once it shows up.
fn wait_listed(s: &SidecarProcess, id: u32) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(s.admin_port(), "/debug/queries").unwrap();
        assert_eq!(status, 200, "{body}");
        let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        if let Some(q) = list.into_iter().find(|q| q["id"] == id) {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "session {id} never listed running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_reaches_the_session_by_its_sidecar_id_from_sql_and_the_admin_endpoint() {
    let c = shared_cluster();
    let s = db_sidecar(c, TINY);
    let mut victim = connect(c, &s).await;
    let id: u32 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let r = victim.query_drop("SELECT SLEEP(30)").await;
        (victim, r, started.elapsed())
    });
    let listed = wait_listed(&s, id);
    // As sent to mysqld (with the row limit).
    let text = listed["statement"].as_str().unwrap_or_default();
    assert!(text.starts_with("SELECT SLEEP(30)"), "{listed}");
    assert!(
        listed["backend_connection_id"].as_u64().is_some(),
        "{listed}"
    );

    // KILL QUERY with the id the client sees: mysqld's own "interrupted" error, and the
    // session carries on.
    let mut killer = connect(c, &s).await;
    killer.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let (mut victim, r, took) = sleeper.await.unwrap();
    let e = r.unwrap_err();
    assert_eq!(server_code(&e), Some(1317), "{e}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let one: Option<i64> = victim.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    assert!(http_get(s.admin_port(), "/debug/queries").unwrap().1.trim() == "[]");

    let e = killer.query_drop("KILL 999999").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1094), "{e}");
    let e = killer.query_drop("KILL QUERY ID 5").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1235), "{e}");

    // The operator ends the whole session from the admin endpoint.
    let sleeper = tokio::spawn(async move {
        let r = victim.query_drop("SELECT SLEEP(30)").await;
        (victim, r)
    });
    wait_listed(&s, id);
    let (status, _) = http_get(s.admin_port(), &format!("/debug/queries/kill?id={id}")).unwrap();
    assert_eq!(status, 405, "a kill needs POST");
    let (status, body) = http_post(
        s.admin_port(),
        &format!("/debug/queries/kill?id={id}&connection=true"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (mut victim, r) = sleeper.await.unwrap();
    assert!(r.is_err());
    assert!(
        victim.query_drop("SELECT 1").await.is_err(),
        "the session is gone"
    );
    assert_eq!(
        http_post(s.admin_port(), &format!("/debug/queries/kill?id={id}"))
            .unwrap()
            .0,
        404
    );
    assert!(metric(&s, "shardcar_guard_kills_total{reason=\"client\"}") >= 1.0);
    assert!(metric(&s, "shardcar_guard_kills_total{reason=\"admin\"}") >= 1.0);
    // The killed statements' connections were not lent again: the pool still serves.
    let one: Option<i64> = killer.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_mysqld() {
    let c = shared_cluster();
    let s = db_sidecar(c, TINY);
    let ready = || http_get(s.admin_port(), "/ready").unwrap();
    assert_eq!(ready().0, 200);
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(c.mariadb.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    };
    // A hung mysqld: the probe times out and /ready turns 503, then recovers.
    signal("STOP");
    let wait = |want: u16| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = ready();
            if status == want {
                return body;
            }
            if Instant::now() > deadline {
                signal("CONT");
                panic!("/ready stayed {status} ({body})\n{}", s.stderr());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let body = wait(503);
    signal("CONT");
    assert!(body.contains("upstream unreachable"), "{body}");
    assert_eq!(metric(&s, "shardcar_upstream_up"), 0.0);
    wait(200);
    assert_eq!(metric(&s, "shardcar_upstream_up"), 1.0);
}

#[test]
fn two_thousand_sysbench_clients_share_a_pool_of_32() {
    use shardcar_tests::client::run_output;
    use std::process::Command;
    let c = shared_cluster();
    let s = db_sidecar(
        c,
        "  pool:\n    statement_connections: 16\n    transaction_connections: 15\n    stream_connections: 1\n    max_waiters: 4000\n    wait_timeout_ms: 60000\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sysbench = |port: u16, args: &[&str]| {
        let mut cmd = Command::new("sysbench");
        cmd.args([
            "oltp_read_write",
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            &format!("--mysql-user={}", c.app_user),
            &format!("--mysql-password={}", c.app_password),
            &format!("--mysql-db={}", c.database),
            "--tables=1",
            "--table-size=10000",
        ]);
        cmd.args(args);
        let out = run_output(cmd, None, Duration::from_secs(300), "sysbench");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success() && !stdout.contains("FATAL"),
            "sysbench {args:?} failed:\n{stdout}\n{stderr}\n{}",
            s.stderr()
        );
        stdout
    };
    sysbench(c.mariadb.port(), &["prepare"]);

    // Sample mysqld's connections from the sidecar's account while sysbench runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let mut conn = rt.block_on(direct(c));
        let user = c.upstream_user.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            let mut peak = (0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let (ours, all): (usize, usize) = handle.block_on(async {
                    let ours: Option<usize> = conn
                        .exec_first(
                            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
                            (user.as_str(),),
                        )
                        .await
                        .unwrap();
                    let all: Option<(String, usize)> = conn
                        .query_first("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
                        .await
                        .unwrap();
                    (ours.unwrap_or(0), all.map_or(0, |a| a.1))
                });
                peak = (peak.0.max(ours), peak.1.max(all));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let out = sysbench(
        s.port(),
        &[
            "--threads=2000",
            "--time=8",
            // Server-side prepared statements pin their connection (docs/db-role.md), so
            // 2,000 sessions holding them could not share 32 connections.
            "--db-ps-mode=disable",
            "--report-interval=0",
            // InnoDB deadlocks between transactions writing several rows are this
            // workload's own (they happen directly against MariaDB too); they are
            // mysqld's answers relayed, and sysbench retries them. Anything else is
            // fatal.
            "--mysql-ignore-errors=1213,1205",
            "--rand-type=uniform",
            "run",
        ],
    );
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (ours, all) = sampler.join().unwrap();
    eprintln!("{out}");
    let field = |key: &str| -> u64 {
        out.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} line in\n{out}"))
    };
    let transactions = field("transactions:");
    assert!(transactions > 0);
    assert!(field("ignored errors:") * 100 <= transactions, "{out}");
    assert_eq!(field("reconnects:"), 0);
    // The pool (32) plus the health probe; Threads_connected adds this test's own
    // sampling connection.
    assert!(ours <= 33, "{ours} backend connections");
    assert!(all <= 34, "Threads_connected reached {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tablet_registers_in_etcd_with_its_health_and_leaves_with_its_lease() {
    use shardcar_topo::{EtcdStore, Layout, TabletType, Topology};
    let c = shared_cluster();
    let etcd = shardcar_tests::etcd_cluster(1).await.unwrap();
    let topo = Topology::new(
        std::sync::Arc::new(EtcdStore::connect(&etcd.endpoints()).await.unwrap()),
        Layout::default(),
    );
    let start = |uid: u32| {
        let mut options = c.sidecar_options(format!(
            "topology:\n  etcd_endpoints: [\"{}\"]\n  cell: zone1\n  uid: {uid}\n  keyspace: shop\n  shard: \"-80\"\n  tablet_type: primary\n  lease_ttl_ms: 2000\n  health_interval_ms: 200\n",
            etcd.endpoints()[0]
        ));
        options.role = "db";
        SidecarProcess::start(options).unwrap()
    };
    let wait_tablets = |want: usize| {
        let topo = topo.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let tablets = topo.tablets(Some("zone1")).await.unwrap();
                if tablets.len() == want && tablets.iter().all(|t| t.health.serving) {
                    return tablets;
                }
                assert!(
                    Instant::now() < deadline,
                    "expected {want} serving tablets, have {tablets:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let mut a = start(100);
    let tablets = wait_tablets(1).await;
    let t = &tablets[0];
    assert_eq!(t.alias, "zone1-0000000100");
    assert_eq!((t.keyspace.as_str(), t.shard.as_str()), ("shop", "-80"));
    assert_eq!(t.tablet_type, TabletType::Primary);
    assert_eq!(t.mysql_port, a.port());
    assert_eq!(t.admin_port, a.admin_port());
    assert!(!t.health.read_only);
    assert_eq!(
        t.health.replication_lag_seconds, None,
        "a primary has no lag"
    );

    // A clean stop revokes the lease at once; a crash lets it expire after its TTL.
    let b = start(101);
    wait_tablets(2).await;
    a.terminate();
    a.wait_exit(Duration::from_secs(20));
    let left = wait_tablets(1).await;
    assert_eq!(left[0].alias, "zone1-0000000101");
    let killed = std::process::Command::new("kill")
        .args(["-9", &b.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !topo.tablets(Some("zone1")).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "a crashed tablet stayed past its lease"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_tablet_reports_its_replication_and_heartbeat_lag() {
    use shardcar_tests::{start_replica, MariaDb, MariaDbOptions, SidecarOptions};
    use shardcar_topo::{EtcdStore, Layout, TabletType, Topology};
    let etcd = shardcar_tests::etcd_cluster(1).await.unwrap();
    let primary = MariaDb::start(MariaDbOptions {
        log_bin: true,
        server_id: 200,
        ..MariaDbOptions::default()
    })
    .await
    .unwrap();
    primary
        .create_user("repl", "repl", "REPLICATION SLAVE ON *.*")
        .await
        .unwrap();
    // The sidecar's account replicates to the replica with everything else.
    primary
        .create_user("shardcar", "sc-pw", "ALL PRIVILEGES ON *.*")
        .await
        .unwrap();
    let replica = start_replica(&primary, 201, None).await.unwrap();
    let sidecar = |db: &MariaDb, uid: u32, kind: &str| {
        let options = SidecarOptions {
            upstream_address: db.address(),
            upstream_user: "shardcar".into(),
            upstream_password: "sc-pw".into(),
            app_user: "app".into(),
            app_password: "app-pw".into(),
            extra_yaml: format!(
                "topology:\n  etcd_endpoints: [\"{}\"]\n  cell: zone1\n  uid: {uid}\n  keyspace: shop\n  tablet_type: {kind}\n  health_interval_ms: 200\n",
                etcd.endpoints()[0]
            ),
            role: "db",
            ..SidecarOptions::default()
        };
        SidecarProcess::start(options).unwrap()
    };
    let ps = sidecar(&primary, 200, "primary");
    let _r = sidecar(&replica, 201, "replica");
    let topo = Topology::new(
        std::sync::Arc::new(EtcdStore::connect(&etcd.endpoints()).await.unwrap()),
        Layout::default(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let (p, r) = loop {
        let tablets = topo.tablets(Some("zone1")).await.unwrap();
        let find = |t: TabletType| tablets.iter().find(|x| x.tablet_type == t).cloned();
        if let (Some(p), Some(r)) = (find(TabletType::Primary), find(TabletType::Replica)) {
            if r.health.heartbeat_lag_ms.is_some() {
                break (p, r);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat lag reported: {tablets:?}\n{}",
            ps.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!p.health.read_only && r.health.read_only);
    assert!(r.health.replicating, "{r:?}");
    // Seconds_Behind_Master may read 1 while an event is being applied.
    assert!(
        r.health.replication_lag_seconds.is_some_and(|s| s <= 1),
        "{r:?}"
    );
    // Heartbeats every 200 ms, read every 200 ms: a caught-up replica is well under 5 s.
    assert!(
        r.health.heartbeat_lag_ms.is_some_and(|ms| ms < 5_000),
        "{r:?}"
    );
    assert!(!p.health.gtid_position.is_empty());
    assert_eq!(p.health.heartbeat_lag_ms, None);

    // Replication stopped: the replica says so and its heartbeat ages.
    replica.exec("STOP SLAVE;").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tablets = topo.tablets(Some("zone1")).await.unwrap();
        let r = tablets
            .iter()
            .find(|t| t.tablet_type == TabletType::Replica)
            .cloned()
            .unwrap();
        if !r.health.replicating && r.health.heartbeat_lag_ms.is_some_and(|ms| ms >= 1_000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stopped replication not reported: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
