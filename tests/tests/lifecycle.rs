//! The app sidecar's life around the statements it relays: SIGTERM drains, clients and
//! upstreams that go away, an upstream that never answers, the admin endpoints, and the
//! commands that are not plain queries (COM_CHANGE_USER, COM_PING, COM_INIT_DB,
//! COM_STATISTICS, COM_FIELD_LIST, COM_RESET_CONNECTION, COM_SET_OPTION).
//!
//! Everything runs against real mariadbd and the real `shardcar` binary. Time bounds are
//! generous "no hang" limits, never performance thresholds.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{ChangeUserOpts, Conn};
use shardcar_filter::protocol::handshake::Greeting;
use shardcar_tests::client::{
    cli, client_program, native_login, opts, payload_len, raw_connect, read_packet, run,
    server_code, write_packet,
};
use shardcar_tests::{
    free_port, http_get, metric, metric_or_zero, temp_dir, Cluster, ClusterSpec, MariaDb,
    MariaDbOptions, SidecarOptions, SidecarProcess,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Bound on a client program (`mariadb`, `mariadb-admin`) run by a test.
const CLIENT_PROGRAM_LIMIT: Duration = Duration::from_secs(30);

/// Connects through the sidecar of `c` as the application user, to the test database.
async fn app_conn(c: &Cluster) -> Conn {
    Conn::new(opts(c.sidecar.port(), &c.app_user, &c.app_password).db_name(Some(&c.database)))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connecting through the sidecar: {e}\n{}",
                c.sidecar.stderr()
            )
        })
}

/// Counts statements on `db` whose text starts with `prefix` (as root, directly).
async fn running(db: &MariaDb, prefix: &str) -> u64 {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '{prefix}%' \
         AND ID <> CONNECTION_ID();"
    );
    let out = db.exec(&sql).await.expect("querying PROCESSLIST directly");
    out.trim().parse().expect("a count")
}

/// Waits until `count` statements starting with `prefix` run on `db`.
async fn wait_running(db: &MariaDb, prefix: &str, count: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = running(db, prefix).await;
        if n == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} statements like {prefix:?} on mariadbd within {timeout:?}, \
             saw {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cluster(extra_yaml: &str) -> Cluster {
    Cluster::start(ClusterSpec {
        sidecar_extra_yaml: extra_yaml.to_string(),
        ..ClusterSpec::default()
    })
    .await
    .expect("starting mariadbd and the sidecar")
}

// ---------------------------------------------------------------------------------------
// SIGTERM
// ---------------------------------------------------------------------------------------

/// SIGTERM while a statement runs: the statement finishes and its result reaches the
/// client, idle connections are closed, new connections are refused, and the process exits
/// 0 as soon as the last connection is done (well before the drain timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_statement_finish_then_exits_0() {
    let mut c = cluster("drain_timeout_ms: 30000\n").await;
    let mut busy = app_conn(&c).await;
    let mut idle = app_conn(&c).await;
    idle.ping()
        .await
        .expect("idle connection works before SIGTERM");

    let statement = tokio::spawn(async move {
        let row: Option<(i64, String)> = busy
            .query_first("SELECT SLEEP(3), 'finished'")
            .await
            .expect("the in-flight statement completes during the drain");
        row
    });
    wait_running(&c.mariadb, "SELECT SLEEP(3)", 1, Duration::from_secs(10)).await;

    let signalled = Instant::now();
    c.sidecar.terminate();

    // New connections are refused while the statement still runs.
    let port = c.sidecar.port();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let attempt =
            tokio::time::timeout(Duration::from_secs(5), Conn::new(opts(port, "app", "app"))).await;
        match attempt {
            Ok(Err(_)) => break,
            Err(_) => panic!("a connection attempt during the drain hung"),
            Ok(Ok(conn)) => {
                drop(conn);
                assert!(
                    Instant::now() < deadline,
                    "new connections were still accepted 2 s after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(
        !statement.is_finished(),
        "SLEEP(3) ended before new connections were checked; the test proves nothing"
    );

    // The idle connection is closed by the drain: its next command fails.
    let idle_result = tokio::time::timeout(Duration::from_secs(10), idle.ping()).await;
    assert!(
        matches!(idle_result, Ok(Err(_))),
        "an idle connection should be closed by the drain, got {idle_result:?}"
    );

    let row = tokio::time::timeout(Duration::from_secs(20), statement)
        .await
        .expect("the in-flight statement did not finish")
        .expect("client task");
    assert_eq!(row, Some((0, "finished".to_string())));

    let status = tokio::task::block_in_place(|| c.sidecar.wait_exit(Duration::from_secs(15)))
        .unwrap_or_else(|| {
            panic!(
                "shardcar still running 15 s after SIGTERM with nothing in flight (drain \
                 timeout 30 s):\n{}",
                c.sidecar.stderr()
            )
        });
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        c.sidecar.stderr()
    );
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
}

/// `/ready` answers 503 ("not ready: draining", as docs/configuration.md says) while the
/// sidecar drains, so that load balancers stop sending traffic; `shardcar_draining` is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_answers_503_while_draining() {
    let mut c = cluster("drain_timeout_ms: 30000\n").await;
    let mut busy = app_conn(&c).await;
    let statement = tokio::spawn(async move { busy.query_drop("SELECT SLEEP(4)").await });
    wait_running(&c.mariadb, "SELECT SLEEP(4)", 1, Duration::from_secs(10)).await;
    let (status, body) = http_get(c.sidecar.admin_port(), "/ready").expect("GET /ready");
    assert_eq!((status, body.trim()), (200, "ready"));

    c.sidecar.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!statement.is_finished(), "the statement should still run");
    let ready = http_get(c.sidecar.admin_port(), "/ready");
    let metrics = c.sidecar.metrics();
    let ready = ready.map(|(s, b)| (s, b.trim().to_string()));
    assert_eq!(
        ready.as_ref().map_err(|e| format!("{e:#}")),
        Ok(&(503, "not ready: draining".to_string())),
        "GET /ready during the drain"
    );
    let metrics = metrics.expect("GET /metrics during the drain");
    assert_eq!(
        metric(&metrics, "shardcar_draining"),
        Some(1.0),
        "{metrics}"
    );
    let _ = statement.await;
}

/// With `drain_timeout_ms: 1000`, a 30-second statement does not hold the exit: the process
/// exits about a second after SIGTERM, and the client learns that its connection is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_the_exit() {
    let mut c = cluster("drain_timeout_ms: 1000\n").await;
    let mut busy = app_conn(&c).await;
    let statement = tokio::spawn(async move { busy.query_drop("SELECT SLEEP(30)").await });
    wait_running(&c.mariadb, "SELECT SLEEP(30)", 1, Duration::from_secs(10)).await;

    let signalled = Instant::now();
    c.sidecar.terminate();
    let status = tokio::task::block_in_place(|| c.sidecar.wait_exit(Duration::from_secs(9)))
        .unwrap_or_else(|| {
            panic!(
                "shardcar still running 9 s after SIGTERM with drain_timeout_ms 1000:\n{}",
                c.sidecar.stderr()
            )
        });
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before the drain timeout, with a statement in flight"
    );
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        c.sidecar.stderr()
    );

    let result = tokio::time::timeout(Duration::from_secs(10), statement)
        .await
        .expect("the client hung after the sidecar exited")
        .expect("client task");
    assert!(
        result.is_err(),
        "the cut statement cannot have succeeded: {result:?}"
    );
    eprintln!("exited {took:?} after SIGTERM; client saw {result:?}");
}

// ---------------------------------------------------------------------------------------
// Clients and upstreams that go away
// ---------------------------------------------------------------------------------------

/// A client that disappears while its statement runs: the sidecar kills the statement on
/// mysqld (KILL QUERY) and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_statement_kills_it_upstream() {
    let c = cluster("").await;
    let before = c.sidecar.metrics().expect("metrics");
    let kills_before = metric_or_zero(&before, "shardcar_upstream_kills_total");

    let mut cmd = cli(c.sidecar.port(), &c.app_user, &c.app_password);
    cmd.arg("-e")
        .arg("SELECT SLEEP(20)")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = cmd.spawn().expect("spawning mariadb");
    wait_running(&c.mariadb, "SELECT SLEEP(20)", 1, Duration::from_secs(10)).await;

    // SIGKILL: the client's socket closes without COM_QUIT.
    client.kill().expect("killing the client");
    let _ = client.wait();
    let killed_at = Instant::now();
    wait_running(&c.mariadb, "SELECT SLEEP(20)", 0, Duration::from_secs(5)).await;
    eprintln!("statement gone {:?} after the client", killed_at.elapsed());

    let after = c.sidecar.metrics().expect("metrics");
    let kills_after = metric_or_zero(&after, "shardcar_upstream_kills_total");
    assert_eq!(kills_after, kills_before + 1.0, "{after}");

    // The sidecar is unaffected.
    let mut conn = app_conn(&c).await;
    let one: Option<i64> = conn.query_first("SELECT 1").await.expect("SELECT 1");
    assert_eq!(one, Some(1));
}

/// An upstream that was never reachable: a client gets ERR 1429 in place of the greeting,
/// promptly, and `/ready` says not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refused_gives_err_1429_in_place_of_the_greeting() {
    let dead = free_port();
    let mut sidecar = SidecarProcess::start_live(SidecarOptions {
        upstream_address: format!("127.0.0.1:{dead}"),
        ..SidecarOptions::default()
    })
    .expect("starting a sidecar in front of a closed port");
    let (status, body) = http_get(sidecar.admin_port(), "/ready").expect("GET /ready");
    assert_eq!(status, 503, "/ready with an unreachable upstream: {body}");
    let (status, _) = http_get(sidecar.admin_port(), "/healthz").expect("GET /healthz");
    assert_eq!(status, 200);

    // mysql_async: the ERR arrives where the greeting should be, promptly.
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        Conn::new(opts(sidecar.port(), "app", "app")),
    )
    .await
    .expect("connecting hung with the upstream down");
    let took = started.elapsed();
    let err = match result {
        Ok(_) => panic!("connected with the upstream down"),
        Err(e) => e,
    };
    assert_eq!(server_code(&err), Some(1429), "{err:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // The raw bytes: one ERR packet (0xff, code 1429), sequence id 0, then the close.
    let mut raw = raw_connect(sidecar.port(), Duration::from_secs(10)).expect("connect");
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes)
        .expect("the sidecar closes after the ERR");
    assert!(bytes.len() > 7, "{bytes:?}");
    let len = payload_len(&bytes);
    assert_eq!(bytes.len(), 4 + len, "exactly one packet: {bytes:?}");
    assert_eq!(bytes[3], 0, "sequence id");
    assert_eq!(bytes[4], 0xff, "an ERR packet: {bytes:?}");
    assert_eq!(u16::from_le_bytes([bytes[5], bytes[6]]), 1429);

    assert!(
        sidecar.try_wait().expect("try_wait").is_none(),
        "the sidecar must keep running:\n{}",
        sidecar.stderr()
    );
    let metrics = http_get(sidecar.admin_port(), "/metrics")
        .expect("metrics")
        .1;
    assert!(
        metric_or_zero(
            &metrics,
            "shardcar_errors_total{code=\"1429\",origin=\"sidecar\"}"
        ) >= 2.0,
        "{metrics}"
    );

    // The mariadb CLI prints the sidecar's error as the server's (newer Connector/C wraps
    // any error that arrives before TLS could be set up, mysqld's own included, in 2002
    // "Received error packet before completion of TLS handshake ... 1429 - <message>").
    let (ok, _out, cli_err) = run(
        {
            let mut cmd = cli(sidecar.port(), "app", "app");
            cmd.arg("-e").arg("SELECT 1");
            cmd
        },
        Some(""),
        CLIENT_PROGRAM_LIMIT,
    );
    assert!(!ok);
    assert!(
        (cli_err.contains("ERROR 1429 (HY000)") || cli_err.contains("1429 - "))
            && cli_err.contains("Can't connect to MySQL server on"),
        "{cli_err}"
    );

    // As mysqld does before the greeting (the client's capabilities are not known yet, so
    // there is no CLIENT_PROTOCOL_41), the message follows the code directly, without the
    // `#` SQLSTATE marker; clients parse it that way: mysql_async reports whatever follows
    // the code as the message.
    let message = String::from_utf8_lossy(&bytes[7..]).into_owned();
    assert!(
        message.starts_with(&format!(
            "Can't connect to MySQL server on '127.0.0.1:{dead}'"
        )),
        "ERR before the greeting carries {message:?} after the code; mysql_async shows {err:?}"
    );
}

/// mysqld killed with SIGKILL while a statement runs: the client gets ERR 1158 (08S01) promptly, the
/// sidecar stays up, refuses new work with a connection error while mysqld is down, and
/// serves again once a new mysqld listens on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_lost_mid_query_then_back() {
    let data = temp_dir("shardcar-lifecycle-db-");
    let port = free_port();
    let db_opts = MariaDbOptions {
        data_dir: Some(data.path().join("data")),
        port: Some(port),
        ..MariaDbOptions::default()
    };
    let mut db = MariaDb::start(db_opts.clone()).await.expect("mariadbd");
    let sidecar = SidecarProcess::start(SidecarOptions {
        upstream_address: db.address(),
        ..SidecarOptions::default()
    })
    .expect("sidecar");

    let mut conn = Conn::new(opts(sidecar.port(), "app", "app"))
        .await
        .expect("connect through the sidecar");
    let statement = tokio::spawn(async move { conn.query_drop("SELECT SLEEP(10)").await });
    wait_running(&db, "SELECT SLEEP(10)", 1, Duration::from_secs(10)).await;

    let killed = Instant::now();
    db.kill9();
    let result = tokio::time::timeout(Duration::from_secs(5), statement)
        .await
        .expect("the client hung after mysqld died")
        .expect("client task");
    eprintln!("client saw {result:?} {:?} after kill -9", killed.elapsed());
    match result {
        Err(mysql_async::Error::Server(s)) => {
            assert_eq!(s.code, 1158, "{s:?}");
            assert_eq!(s.state, "08S01", "{s:?}");
            assert_eq!(s.message, "Lost connection to MySQL server during query");
        }
        Err(e) => panic!("expected ERR 1158, got {e:?}"),
        Ok(()) => panic!("SLEEP(10) cannot succeed on a killed server"),
    }

    let (status, _) = http_get(sidecar.admin_port(), "/healthz").expect("GET /healthz");
    assert_eq!(status, 200);
    let metrics = sidecar.metrics().expect("metrics");
    assert_eq!(
        metric(&metrics, "shardcar_upstream_lost_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "shardcar_errors_total{code=\"1158\",origin=\"sidecar\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // mysqld down: a client naming a database learns it at connect, promptly.
    let down = tokio::time::timeout(
        Duration::from_secs(10),
        Conn::new(opts(sidecar.port(), "app", "app").db_name(Some("mysql"))),
    )
    .await
    .expect("connecting hung while mysqld was down");
    match down {
        Err(e) => assert_eq!(server_code(&e), Some(1429), "{e:?}"),
        Ok(_) => panic!("connected to a database while mysqld was down"),
    }
    // A client without a database gets in (the sidecar authenticates it) and its first
    // statement fails with 1429.
    if let Ok(mut c) = Conn::new(opts(sidecar.port(), "app", "app")).await {
        let e = c.query_drop("SELECT 1").await.expect_err("mysqld is down");
        assert_eq!(server_code(&e), Some(1429), "{e:?}");
    }

    // A new mysqld on the same port and data: the sidecar serves again.
    drop(db);
    let db = MariaDb::start(db_opts).await.expect("mariadbd again");
    assert_eq!(db.port(), port);
    let mut conn = Conn::new(opts(sidecar.port(), "app", "app"))
        .await
        .unwrap_or_else(|e| panic!("reconnect after mysqld restart: {e}\n{}", sidecar.stderr()));
    let one: Option<i64> = conn.query_first("SELECT 1").await.expect("SELECT 1");
    assert_eq!(one, Some(1));
    drop(conn);
    drop(sidecar);
    drop(db);
}

// ---------------------------------------------------------------------------------------
// Admin endpoints
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_connections_commands_bytes_latency_and_errors() {
    let c = cluster("").await;
    let (status, body) = http_get(c.sidecar.admin_port(), "/healthz").expect("GET /healthz");
    assert_eq!((status, body.trim()), (200, "ok"));

    let mut conn = app_conn(&c).await;
    for i in 0..5 {
        let v: Option<i64> = conn
            .query_first(format!("SELECT {i}"))
            .await
            .expect("select");
        assert_eq!(v, Some(i));
    }
    conn.ping().await.expect("ping");
    let e = conn
        .query_drop("SELECT * FROM no_such_table")
        .await
        .expect_err("unknown table");
    assert_eq!(server_code(&e), Some(1146));
    let bad = Conn::new(opts(c.sidecar.port(), &c.app_user, "wrong")).await;
    match bad {
        Err(e) => assert_eq!(server_code(&e), Some(1045), "{e:?}"),
        Ok(_) => panic!("logged in with a wrong password"),
    }

    let m = c.sidecar.metrics().expect("metrics");
    let at_least = |series: &str, min: f64| {
        let v = metric(&m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"));
        assert!(v >= min, "{series} = {v}, expected >= {min}\n{m}");
    };
    at_least("shardcar_client_connections_total", 2.0);
    at_least("shardcar_client_connections_active", 1.0);
    at_least("shardcar_commands_total{command=\"query\"}", 6.0);
    at_least("shardcar_commands_total{command=\"ping\"}", 1.0);
    for dir in ["from_client", "to_client", "from_upstream", "to_upstream"] {
        at_least(&format!("shardcar_bytes_total{{direction=\"{dir}\"}}"), 1.0);
    }
    at_least(
        "shardcar_command_duration_seconds_count{command=\"query\"}",
        6.0,
    );
    assert!(
        m.lines().any(
            |l| l.starts_with("shardcar_command_duration_seconds_bucket{")
                && l.contains("command=\"query\"")
                && l.contains("le=\"+Inf\"")
        ),
        "a latency histogram for queries:\n{m}"
    );
    assert_eq!(
        metric(
            &m,
            "shardcar_errors_total{code=\"1045\",origin=\"sidecar\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "shardcar_errors_total{code=\"1146\",origin=\"upstream\"}"
        ),
        Some(1.0),
        "{m}"
    );
    at_least("shardcar_upstream_connects_total{result=\"ok\"}", 1.0);
    assert_eq!(metric(&m, "shardcar_draining"), Some(0.0), "{m}");
}

// ---------------------------------------------------------------------------------------
// Commands other than COM_QUERY
// ---------------------------------------------------------------------------------------

/// COM_CHANGE_USER re-authenticates against the sidecar's users and starts a fresh upstream
/// session; a wrong password is refused with 1045.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_works_and_refuses_a_wrong_password() {
    let c = cluster("").await;
    let mut conn = app_conn(&c).await;
    conn.query_drop("SET @marker = 42").await.expect("set");
    let v: Option<Option<i64>> = conn.query_first("SELECT @marker").await.expect("select");
    assert_eq!(v, Some(Some(42)));

    conn.change_user(
        ChangeUserOpts::new()
            .with_user(Some(c.app_user.clone()))
            .with_pass(Some(c.app_password.clone()))
            .with_db_name(Some(c.database.clone())),
    )
    .await
    .unwrap_or_else(|e| panic!("COM_CHANGE_USER: {e}\n{}", c.sidecar.stderr()));
    let v: Option<Option<i64>> = conn.query_first("SELECT @marker").await.expect("select");
    assert_eq!(v, Some(None), "a changed user starts with a fresh session");
    let db: Option<String> = conn.query_first("SELECT DATABASE()").await.expect("select");
    assert_eq!(db.as_deref(), Some(c.database.as_str()));

    let mut conn2 = app_conn(&c).await;
    let err = conn2
        .change_user(
            ChangeUserOpts::new()
                .with_user(Some(c.app_user.clone()))
                .with_pass(Some("wrong".to_string())),
        )
        .await
        .expect_err("a wrong password in COM_CHANGE_USER");
    assert_eq!(server_code(&err), Some(1045), "{err:?}");
    if let mysql_async::Error::Server(s) = &err {
        assert!(
            s.message
                .starts_with(&format!("Access denied for user '{}'@'", c.app_user)),
            "{s:?}"
        );
    }
    // The count is recorded right after the reply is sent: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = c.sidecar.metrics().expect("metrics");
        if metric_or_zero(&m, "shardcar_commands_total{command=\"change_user\"}") >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two change_user commands counted:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// COM_PING, COM_RESET_CONNECTION (mysql_async), COM_SET_OPTION (multi-statements on and
/// off, raw), COM_INIT_DB, COM_STATISTICS and COM_FIELD_LIST (mariadb CLI and
/// mariadb-admin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_reset_init_db_statistics_field_list_and_set_option_work() {
    let c = cluster("").await;
    c.mariadb
        .exec_in(
            &c.database,
            "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20));",
        )
        .await
        .expect("create table");

    // COM_PING and COM_RESET_CONNECTION.
    let mut conn = app_conn(&c).await;
    conn.ping().await.expect("COM_PING");
    conn.query_drop("SET @marker = 7").await.expect("set");
    let reset = conn.reset().await.expect("COM_RESET_CONNECTION");
    assert!(
        reset,
        "mysql_async should use COM_RESET_CONNECTION with this server version"
    );
    let v: Option<Option<i64>> = conn.query_first("SELECT @marker").await.expect("select");
    assert_eq!(v, Some(None), "COM_RESET_CONNECTION clears user variables");
    conn.ping().await.expect("COM_PING after reset");
    drop(conn);

    // COM_INIT_DB (the CLI's `use`), COM_FIELD_LIST (the CLI rehashes table columns for
    // completion when `--auto-rehash` is on).
    let (ok, out, err) = run(
        {
            let mut cmd = cli(c.sidecar.port(), &c.app_user, &c.app_password);
            cmd.arg("--auto-rehash").arg("--batch");
            cmd
        },
        Some(&format!(
            "use {}\nSELECT DATABASE();\nrehash\nSELECT COUNT(*) FROM t;\n",
            c.database
        )),
        CLIENT_PROGRAM_LIMIT,
    );
    assert!(ok, "mariadb CLI failed: {err}");
    assert_eq!(out, format!("DATABASE()\n{}\nCOUNT(*)\n0\n", c.database));

    // COM_STATISTICS and COM_PING with mariadb-admin.
    let mut admin = client_program(
        "mariadb-admin",
        c.sidecar.port(),
        &c.app_user,
        &c.app_password,
    );
    admin.args(["status", "ping"]);
    let (ok, out, err) = run(admin, None, CLIENT_PROGRAM_LIMIT);
    assert!(ok, "mariadb-admin failed: {err}");
    assert!(
        out.contains("Uptime:") && out.contains("Threads:") && out.contains("Questions:"),
        "{out}"
    );
    assert!(out.contains("mysqld is alive"), "{out}");

    // COM_SET_OPTION, raw: multi-statements off (then a multi-statement query is a syntax
    // error), on again (then it runs).
    raw_set_option_round_trip(c.sidecar.port(), &c.app_user, &c.app_password);

    let m = c.sidecar.metrics().expect("metrics");
    for command in [
        "ping",
        "reset_connection",
        "init_db",
        "statistics",
        "set_option",
    ] {
        assert!(
            metric_or_zero(
                &m,
                &format!("shardcar_commands_total{{command=\"{command}\"}}")
            ) >= 1.0,
            "no {command} counted:\n{m}"
        );
    }
    let field_lists = metric_or_zero(&m, "shardcar_commands_total{command=\"field_list\"}");
    eprintln!("COM_FIELD_LIST commands seen: {field_lists}");
}

const PROTOCOL_41: u32 = 0x200;
const TRANSACTIONS: u32 = 0x2000;
const SECURE_CONNECTION: u32 = 0x8000;
const MULTI_STATEMENTS: u32 = 0x1_0000;
const MULTI_RESULTS: u32 = 0x2_0000;
const PLUGIN_AUTH: u32 = 0x8_0000;

/// A tiny blocking MySQL client over a raw socket: a native-password login with exactly
/// `caps`; returns the socket after the server's OK.
fn raw_login(port: u16, user: &str, password: &str, caps: u32) -> std::net::TcpStream {
    let mut s = raw_connect(port, Duration::from_secs(10)).expect("connect");
    let greeting = read_packet(&mut s).expect("the greeting").1;
    assert_eq!(greeting[0], 10, "protocol 10 greeting: {greeting:?}");
    let g = Greeting::decode(&greeting).expect("a valid greeting");
    let resp = native_login(&g, user.as_bytes(), password.as_bytes(), None, caps);
    write_packet(&mut s, 1, &resp).expect("write");
    let (_, ok) = read_packet(&mut s).expect("the login answer");
    assert_eq!(ok[0], 0, "login OK: {ok:?}");
    s
}

/// COM_SET_OPTION over a raw socket: multi-statements off, then a two-statement query is a
/// syntax error; on again, and it returns two result sets.
fn raw_set_option_round_trip(port: u16, user: &str, password: &str) {
    use std::io::Write;
    let caps = PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PLUGIN_AUTH;
    let mut s = raw_login(port, user, password, caps);
    let multi = |s: &mut std::net::TcpStream| -> Vec<Vec<u8>> {
        write_packet(s, 0, b"\x03SELECT 1; SELECT 2").expect("write");
        // Read until an OK/EOF/ERR without SERVER_MORE_RESULTS_EXISTS at the end of a result
        // or an ERR; return every packet.
        let mut packets = Vec::new();
        let mut eofs = 0;
        loop {
            let (_, p) = read_packet(s).expect("a packet");
            let first = p[0];
            packets.push(p.clone());
            if first == 0xff {
                return packets;
            }
            if first == 0xfe && p.len() < 9 {
                eofs += 1;
                let status = u16::from_le_bytes([p[3], p[4]]);
                if eofs % 2 == 0 && status & 0x0008 == 0 {
                    return packets;
                }
            }
        }
    };
    // Off: MYSQL_OPTION_MULTI_STATEMENTS_OFF = 1.
    write_packet(&mut s, 0, &[0x1b, 1, 0]).expect("write");
    let (_, reply) = read_packet(&mut s).expect("a packet");
    assert_eq!(reply[0], 0xfe, "COM_SET_OPTION answers EOF: {reply:?}");
    let off = multi(&mut s);
    let last = off.last().expect("a reply");
    assert_eq!(last[0], 0xff, "multi-statements off: {off:?}");
    assert_eq!(u16::from_le_bytes([last[1], last[2]]), 1064);
    // On: MYSQL_OPTION_MULTI_STATEMENTS_ON = 0.
    write_packet(&mut s, 0, &[0x1b, 0, 0]).expect("write");
    let (_, reply) = read_packet(&mut s).expect("a packet");
    assert_eq!(reply[0], 0xfe, "COM_SET_OPTION answers EOF: {reply:?}");
    let on = multi(&mut s);
    assert!(
        on.iter().all(|p| p[0] != 0xff),
        "multi-statements on: two result sets, got {on:?}"
    );
    write_packet(&mut s, 0, &[0x01]).expect("write");
    let _ = s.flush();
}

/// A client that speaks protocol 4.1 but does not set CLIENT_TRANSACTIONS (optional with
/// 4.1: status flags are always in OK packets) is served by mysqld; so it must be by the
/// sidecar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_client_transactions_is_served() {
    let c = cluster("").await;
    let caps = PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH;
    for (what, port) in [("mysqld", c.mariadb.port()), ("sidecar", c.sidecar.port())] {
        let mut s = raw_login(port, &c.app_user, &c.app_password, caps);
        write_packet(&mut s, 0, b"\x03SELECT 1").expect("write");
        let (_, first) = read_packet(&mut s).expect("a packet");
        assert_eq!(
            first,
            vec![1],
            "{what}: a one-column result set, got {first:?} ({})",
            String::from_utf8_lossy(&first)
        );
    }
}
