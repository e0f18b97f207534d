//! Compatibility suite: every case runs DIRECT against MariaDB and THROUGH the app sidecar
//! against the same MariaDB, and the two results must be identical (issue 2, item 6).
//!
//! Clients: the `mariadb` CLI (batch output, sourcing a SQL file), Python PyMySQL and
//! mysql-connector-python in pure-Python mode (scripts in `tests/python/compat/`, run with
//! `<workspace>/.venv/bin/python`), and Rust `mysql_async` (text queries and binary-protocol
//! prepared statements). Fixtures live in `tests/data/`.
//!
//! Each test uses its own database, so the tests can run concurrently against the one
//! shared cluster of the test binary. `sysbench_oltp_read_write_through_sidecar` runs for
//! `SHARDCAR_SYSBENCH_SECONDS` (default 60).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value, WhiteListFsHandler};
use shardcar_tests::client::{block_on, opts, run_output};
use shardcar_tests::{shared_cluster, venv_python, workspace_root, Cluster, SidecarProcess};

const MAX_PACKET: usize = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// helpers

fn data_file(name: &str) -> PathBuf {
    workspace_root().join("tests").join("data").join(name)
}

/// `(label, port)` of the two ways in: direct to MariaDB, and through the shared sidecar.
fn endpoints(c: &Cluster) -> [(&'static str, u16); 2] {
    [("direct", c.mariadb.port()), ("sidecar", c.sidecar.port())]
}

async fn root_exec(c: &Cluster, sql: &str) -> String {
    c.mariadb
        .exec(sql)
        .await
        .unwrap_or_else(|e| panic!("root exec failed: {e}\n{sql}"))
}

/// Drops and recreates database `db`.
async fn fresh_db(c: &Cluster, db: &str) {
    root_exec(
        c,
        &format!("DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` CHARACTER SET utf8mb4;"),
    )
    .await;
}

/// A fresh database `db` holding the `types` / `big` tables and the `multi_rs` procedure.
async fn types_db(c: &Cluster, db: &str) {
    root_exec(c, "SET GLOBAL max_allowed_packet=67108864;").await;
    fresh_db(c, db).await;
    c.mariadb
        .source_file(Some(db), &data_file("compat_types.sql"))
        .await
        .unwrap_or_else(|e| panic!("loading compat_types.sql into {db}: {e}"));
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Shows where two outputs first differ, without dumping megabytes.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let a_s = String::from_utf8_lossy(a);
    let b_s = String::from_utf8_lossy(b);
    let (la, lb): (Vec<&str>, Vec<&str>) = (a_s.lines().collect(), b_s.lines().collect());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i), lb.get(i));
        if x != y {
            let cut = |s: Option<&&str>| -> String {
                s.map(|s| s.chars().take(300).collect())
                    .unwrap_or_else(|| "<none>".into())
            };
            let from = i.saturating_sub(12);
            let ctx: Vec<String> = la[from.min(la.len())..i.min(la.len())]
                .iter()
                .map(|l| format!("    {}", l.chars().take(200).collect::<String>()))
                .collect();
            return format!(
                "first difference at line {} (direct {} lines / {} bytes, sidecar {} lines / {} bytes)\n\
                 context:\n{}\n  direct : {}\n  sidecar: {}",
                i + 1,
                la.len(),
                a.len(),
                lb.len(),
                b.len(),
                ctx.join("\n"),
                cut(x),
                cut(y)
            );
        }
    }
    format!("outputs differ only in bytes: {} vs {}", a.len(), b.len())
}

fn assert_same_output(what: &str, direct: &Output, sidecar: &Output) {
    if direct.stdout != sidecar.stdout || direct.stderr != sidecar.stderr {
        // Keep both sides for a closer look (`diff` them).
        let dir = std::env::temp_dir().join("shardcar-compat-diffs");
        let _ = std::fs::create_dir_all(&dir);
        let stem: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        for (side, o) in [("direct", direct), ("sidecar", sidecar)] {
            let _ = std::fs::write(dir.join(format!("{stem}.{side}.stdout")), &o.stdout);
            let _ = std::fs::write(dir.join(format!("{stem}.{side}.stderr")), &o.stderr);
        }
        eprintln!("{what}: outputs kept in {}/{stem}.*", dir.display());
    }
    assert_eq!(
        direct.status.code(),
        sidecar.status.code(),
        "{what}: exit status differs\n direct stderr: {}\n sidecar stderr: {}",
        String::from_utf8_lossy(&direct.stderr),
        String::from_utf8_lossy(&sidecar.stderr)
    );
    assert!(
        direct.stdout == sidecar.stdout,
        "{what}: stdout differs: {}",
        first_difference(&direct.stdout, &sidecar.stdout)
    );
    assert!(
        direct.stderr == sidecar.stderr,
        "{what}: stderr differs: {}",
        first_difference(&direct.stderr, &sidecar.stderr)
    );
}

/// The `mariadb` CLI as the application user over TCP.
fn cli(c: &Cluster, port: u16, db: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new("mariadb");
    cmd.arg("--no-defaults")
        .arg("-h127.0.0.1")
        .arg(format!("-P{port}"))
        .arg(format!("-u{}", c.app_user))
        .arg(format!("-p{}", c.app_password))
        .arg("--protocol=TCP")
        .arg("--batch")
        .arg("--max-allowed-packet=64M")
        .arg("--default-character-set=utf8mb4")
        .args(args)
        .arg(db)
        .env_remove("MYSQL_PWD")
        .env_remove("MYSQL_HOST");
    let what = format!(
        "mariadb CLI on port {port} {:?} (sidecar log tail: {})",
        args.iter()
            .map(|a| a.chars().take(60).collect::<String>())
            .collect::<Vec<_>>(),
        {
            let logs = c.sidecar.stderr();
            logs.chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        }
    );
    run_output(cmd, stdin, Duration::from_secs(60), &what)
}

async fn connect(c: &Cluster, port: u16, db: &str) -> Conn {
    try_connect(c, port, db, false)
        .await
        .unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}/{db}: {e}"))
}

async fn try_connect(c: &Cluster, port: u16, db: &str, infile: bool) -> mysql_async::Result<Conn> {
    let mut opts = opts(port, &c.app_user, &c.app_password)
        .db_name(Some(db.to_string()))
        .max_allowed_packet(Some(MAX_PACKET));
    if infile {
        opts = opts.local_infile_handler(Some(WhiteListFsHandler::new(infile_whitelist())));
    }
    Conn::new(opts).await
}

// ---------------------------------------------------------------------------------------------
// mysql_async result dumps

/// Everything a client can observe of one result (set).
#[derive(Debug, PartialEq)]
struct ResultDump {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    affected_rows: u64,
    last_insert_id: Option<u64>,
    warnings: u16,
    info: String,
}

type Outcome = Result<Vec<ResultDump>, String>;

fn column_desc(c: &mysql_async::Column) -> String {
    format!(
        "{}.{}.{} (org {}.{}) type={:?} flags={:?} charset={} len={} decimals={}",
        c.schema_str(),
        c.table_str(),
        c.name_str(),
        c.org_table_str(),
        c.org_name_str(),
        c.column_type(),
        c.flags(),
        c.character_set(),
        c.column_length(),
        c.decimals()
    )
}

fn error_desc(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => {
            format!("server error {} ({}): {}", s.code, s.state, s.message)
        }
        other => format!("client error: {other}"),
    }
}

async fn drain<P: mysql_async::prelude::Protocol>(
    mut result: mysql_async::QueryResult<'_, '_, P>,
) -> Outcome {
    let mut sets = Vec::new();
    loop {
        let columns: Vec<String> = result.columns_ref().iter().map(column_desc).collect();
        let rows: Vec<Row> = result.collect().await.map_err(|e| error_desc(&e))?;
        sets.push(ResultDump {
            columns,
            rows: rows.into_iter().map(Row::unwrap).collect(),
            affected_rows: result.affected_rows(),
            last_insert_id: result.last_insert_id(),
            warnings: result.warnings(),
            info: result.info().into_owned(),
        });
        if result.is_empty() {
            return Ok(sets);
        }
    }
}

/// One step of a mysql_async scenario.
#[derive(Debug, Clone)]
enum Step {
    /// COM_QUERY (text protocol; may hold several statements).
    Text(String),
    /// COM_STMT_PREPARE + COM_STMT_EXECUTE (binary protocol).
    Exec(String, Vec<Value>),
}

fn text(sql: &str) -> Step {
    Step::Text(sql.to_string())
}

fn exec(sql: &str, params: Vec<Value>) -> Step {
    Step::Exec(sql.to_string(), params)
}

async fn run_step(conn: &mut Conn, step: &Step) -> Outcome {
    match step {
        Step::Text(sql) => match conn.query_iter(sql.as_str()).await {
            Ok(r) => drain(r).await,
            Err(e) => Err(error_desc(&e)),
        },
        Step::Exec(sql, params) => {
            let stmt = conn.prep(sql.as_str()).await.map_err(|e| error_desc(&e))?;
            let outcome = match conn.exec_iter(&stmt, params.clone()).await {
                Ok(r) => drain(r).await,
                Err(e) => Err(error_desc(&e)),
            };
            conn.close(stmt).await.map_err(|e| error_desc(&e))?;
            outcome
        }
    }
}

fn summarize_value(v: &Value) -> String {
    match v {
        Value::Bytes(b) if b.len() > 200 => {
            format!("Bytes[len {} hash {:016x}]", b.len(), hash_bytes(b))
        }
        Value::Bytes(b) => format!("Bytes({:?})", String::from_utf8_lossy(b)),
        other => format!("{other:?}"),
    }
}

fn summarize(outcome: &Outcome, other: &Outcome) -> String {
    match outcome {
        Err(e) => format!("ERR {e}"),
        Ok(sets) => sets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let same_columns = matches!(other, Ok(o) if o.get(i).map(|x| &x.columns) == Some(&s.columns));
                let columns = if same_columns {
                    format!("(same {} columns on both sides)", s.columns.len())
                } else {
                    format!("{:#?}", s.columns)
                };
                let rows: Vec<String> = s
                    .rows
                    .iter()
                    .map(|r| r.iter().map(summarize_value).collect::<Vec<_>>().join(", "))
                    .collect();
                format!(
                    "  columns: {}\n  rows:\n    {}\n  affected={} last_id={:?} warnings={} info={:?}",
                    columns,
                    rows.join("\n    "),
                    s.affected_rows,
                    s.last_insert_id,
                    s.warnings,
                    s.info
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ----\n"),
    }
}

/// Runs `steps` on one connection per endpoint and returns the outcomes per endpoint.
async fn run_both(c: &Cluster, db: &str, steps: &[Step]) -> Vec<Vec<Outcome>> {
    let mut all = Vec::new();
    for (_, port) in endpoints(c) {
        let mut conn = connect(c, port, db).await;
        let mut outcomes = Vec::new();
        for step in steps {
            outcomes.push(run_step(&mut conn, step).await);
        }
        let _ = conn.disconnect().await;
        all.push(outcomes);
    }
    all
}

/// Asserts each step's outcome is the same direct and through the sidecar; collects every
/// mismatch before failing so one run shows them all.
fn assert_same_outcomes(what: &str, steps: &[Step], direct: &[Outcome], sidecar: &[Outcome]) {
    let mut mismatches = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if direct[i] != sidecar[i] {
            let step_desc: String = format!("{step:?}").chars().take(200).collect();
            mismatches.push(format!(
                "step {i} {step_desc}\n direct:\n{}\n sidecar:\n{}",
                summarize(&direct[i], &sidecar[i]),
                summarize(&sidecar[i], &direct[i])
            ));
        }
    }
    if !mismatches.is_empty() {
        let logs = shared_cluster().sidecar.stderr();
        let tail: String = logs
            .chars()
            .rev()
            .take(4000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        eprintln!("sidecar log tail (set RUST_LOG=debug for more):\n{tail}");
    }
    assert!(
        mismatches.is_empty(),
        "{what}: {} of {} steps differ between direct and sidecar:\n{}",
        mismatches.len(),
        steps.len(),
        mismatches.join("\n\n")
    );
}

/// An integer cell whichever protocol carried it (text rows hold bytes).
fn int(v: &Value) -> i64 {
    mysql_async::from_value_opt::<i64>(v.clone())
        .unwrap_or_else(|e| panic!("not an integer: {e:?}"))
}

fn ints(row: &[Value]) -> Vec<i64> {
    row.iter().map(int).collect()
}

fn rows_of(o: &Outcome) -> &[Vec<Value>] {
    match o {
        Ok(sets) => &sets[0].rows,
        Err(e) => panic!("expected rows, got {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// mariadb CLI

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_batch_output_is_identical() {
    let c = shared_cluster();
    let db = "compat_cli_types";
    types_db(c, db).await;
    let sql = "SELECT * FROM types ORDER BY id; \
               SELECT id, LENGTH(b), SHA2(b, 256) FROM big ORDER BY id; \
               SELECT b FROM big WHERE id = 1; \
               CALL multi_rs(); \
               SELECT 1 AS a; SELECT 2 AS b, 'deux' AS c; \
               SELECT @@in_transaction, @@autocommit, DATABASE();";
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("batch", vec!["-e", sql]),
        ("batch raw", vec!["--raw", "-e", sql]),
        ("column type info", vec!["--column-type-info", "-e", sql]),
        (
            "table",
            vec!["--table", "-e", "SELECT * FROM types ORDER BY id"],
        ),
        (
            "vertical",
            vec!["--vertical", "-e", "SELECT * FROM types WHERE id IN (1, 3)"],
        ),
        (
            "errors with --force",
            vec![
                "--force",
                "-e",
                "SELECT 1; SELECT * FROM no_such_table_compat; SELEKT; SELECT 'after' AS s;",
            ],
        ),
    ];
    for (name, args) in &cases {
        let [direct, sidecar] = endpoints(c).map(|(_, port)| cli(c, port, db, args, None));
        if *name != "errors with --force" {
            assert!(
                direct.status.success(),
                "{name}: direct CLI failed: {}",
                String::from_utf8_lossy(&direct.stderr)
            );
        }
        assert!(
            !direct.stdout.is_empty(),
            "{name}: direct produced no output"
        );
        assert_same_output(&format!("CLI {name}"), &direct, &sidecar);
    }
    // The big blob really came through: 17 MiB + 4 bytes, printed raw by --batch.
    let big = cli(
        c,
        c.sidecar.port(),
        db,
        &[
            "--raw",
            "--skip-column-names",
            "-e",
            "SELECT b FROM big WHERE id = 1",
        ],
        None,
    );
    assert_eq!(
        big.stdout.len(),
        17 * 1024 * 1024 + 4 + 1,
        "blob length through the sidecar"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_sourcing_a_sql_file_is_identical() {
    let c = shared_cluster();
    let db = "compat_cli_source";
    let file = data_file("compat_source.sql");
    let contents = std::fs::read(&file).expect("reading compat_source.sql");
    let source_cmd = format!("source {}", file.display());
    // (name, extra CLI arguments, what to feed on stdin)
    type Mode<'a> = (&'a str, Vec<&'a str>, Option<&'a [u8]>);
    let modes: Vec<Mode> = vec![
        ("stdin redirect", vec![], Some(&contents[..])),
        ("source command", vec!["-e", source_cmd.as_str()], None),
        (
            "stdin redirect -vvv",
            vec!["-vvv", "--skip-column-names"],
            Some(&contents[..]),
        ),
    ];
    for (mode, args, stdin) in modes {
        let mut outs = Vec::new();
        for (_, port) in endpoints(c) {
            fresh_db(c, db).await;
            outs.push(cli(c, port, db, &args, stdin));
        }
        let (direct, sidecar) = (&outs[0], &outs[1]);
        assert!(
            direct.status.success(),
            "{mode}: direct run failed: {}",
            String::from_utf8_lossy(&direct.stderr)
        );
        let stdout = String::from_utf8_lossy(&direct.stdout);
        assert!(
            stdout.contains("crème brûlée"),
            "{mode}: unexpected output:\n{stdout}"
        );
        if mode.contains("-vvv") {
            // -vvv prints timings like "(0.001 sec)"; compare with them masked.
            let mask = |o: &Output| -> Output {
                let re_masked: String = String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(mask_timing)
                    .collect::<Vec<_>>()
                    .join("\n");
                Output {
                    status: o.status,
                    stdout: re_masked.into_bytes(),
                    stderr: o.stderr.clone(),
                }
            };
            assert_same_output(&format!("CLI {mode}"), &mask(direct), &mask(sidecar));
        } else {
            assert_same_output(&format!("CLI {mode}"), direct, sidecar);
        }
    }
}

/// Replaces "(0.001 sec)" timings of the CLI's verbose output.
fn mask_timing(line: &str) -> String {
    match (line.rfind('('), line.rfind(" sec)")) {
        (Some(open), Some(close)) if close > open => {
            format!("{}(<t> sec){}", &line[..open], &line[close + 5..])
        }
        _ => line.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Python drivers

fn run_python(c: &Cluster, script: &str, port: u16, db: &str) -> Output {
    let dir = workspace_root().join("tests").join("python").join("compat");
    let mut cmd = Command::new(venv_python());
    cmd.arg(dir.join(script))
        .args([
            "127.0.0.1",
            &port.to_string(),
            &c.app_user,
            &c.app_password,
            db,
        ])
        .current_dir(&dir)
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run_output(cmd, None, Duration::from_secs(300), script)
}

async fn python_case(script: &str, db: &str) {
    let script = script.to_string();
    {
        let c = shared_cluster();
        types_db(c, db).await;
        let [direct, sidecar] = endpoints(c).map(|(_, port)| run_python(c, &script, port, db));
        assert!(
            direct.status.success(),
            "{script} direct failed:\n{}",
            String::from_utf8_lossy(&direct.stderr)
        );
        // The scenarios really ran: errors exactly where expected, and the data is there.
        let doc: serde_json::Value =
            serde_json::from_slice(&direct.stdout).expect("direct output is JSON");
        let entries = doc.as_array().expect("a JSON array of scenarios");
        assert!(
            entries.len() >= 15,
            "{script}: only {} scenarios",
            entries.len()
        );
        for e in entries {
            let expect_error = e["expect_error"].as_bool().unwrap_or(false);
            assert_eq!(
                e.get("error").is_some(),
                expect_error,
                "{script} direct: scenario {} error state unexpected: {}",
                e["name"],
                e.get("error").map(|v| v.to_string()).unwrap_or_default()
            );
        }
        let types_all = entries
            .iter()
            .find(|e| e["name"].as_str().is_some_and(|n| n.ends_with("types_all")))
            .expect("a types_all scenario");
        assert_eq!(
            types_all["result"]["rows"].as_array().map(Vec::len),
            Some(5)
        );
        assert_same_output(script.as_str(), &direct, &sidecar);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_pymysql_is_identical() {
    python_case("pymysql_compat.py", "compat_py_pymysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mysql_connector_pure_text_and_prepared_is_identical() {
    python_case("connector_compat.py", "compat_py_connector").await;
}

// ---------------------------------------------------------------------------------------------
// Rust mysql_async

fn big_param() -> Vec<u8> {
    (0..(17 * 1024 * 1024 + 7usize))
        .map(|i| (i % 251) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_async_every_type_text_and_binary_is_identical() {
    let c = shared_cluster();
    let db = "compat_rust_types";
    types_db(c, db).await;
    let mut steps = vec![
        text("SELECT * FROM types ORDER BY id"),
        exec("SELECT * FROM types ORDER BY id", vec![]),
        text("SELECT * FROM types WHERE ti IS NULL"),
        text("SELECT id, LENGTH(b), b FROM big ORDER BY id"),
        exec(
            "SELECT id, LENGTH(b), b FROM big WHERE id >= ? ORDER BY id",
            vec![Value::from(1)],
        ),
        exec(
            "SELECT ? AS i, ? AS u, ? AS s, ? AS b, ? AS f, ? AS d, ? AS dt, ? AS tm, ? AS n",
            vec![
                Value::Int(i64::MIN),
                Value::UInt(u64::MAX),
                Value::from("ça va 😀 — ok"),
                Value::Bytes(vec![0, 1, 254, 255]),
                Value::Float(0.5),
                Value::Double(-1.25e300),
                Value::Date(2024, 2, 29, 13, 14, 15, 123_456),
                Value::Time(true, 2, 3, 4, 5, 6),
                Value::NULL,
            ],
        ),
        text(
            "SELECT 18446744073709551615 AS umax, -9223372036854775808 AS imin, \
             CAST('-838:59:59.999999' AS TIME(6)) AS tmin, b'1' AS bit1, X'00FF' AS bin, \
             _utf8mb4'é😀' AS s, NULL AS n, 1e-300 AS tiny, CAST(1 AS DECIMAL(65,30)) AS dec65",
        ),
        exec(
            "SELECT biu, b64, tm, dec65 FROM types WHERE biu = ?",
            vec![Value::UInt(u64::MAX)],
        ),
        exec(
            "SELECT id FROM types WHERE tm < ? ORDER BY id",
            vec![Value::Time(false, 0, 0, 0, 0, 0)],
        ),
        text("SELECT * FROM no_such_table_compat"),
        exec(
            "SELECT * FROM types WHERE no_such_column = ?",
            vec![Value::from(1)],
        ),
        text("SELECT CAST('12abc' AS SIGNED) AS v"),
        text("SHOW WARNINGS"),
        // Client-to-server payloads above 16 MiB, text and binary.
        text("CREATE TEMPORARY TABLE tmp_big (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB)"),
        exec(
            "INSERT INTO tmp_big (b) VALUES (?)",
            vec![Value::Bytes(big_param())],
        ),
        text(&format!(
            "INSERT INTO tmp_big (b) VALUES (X'{}')",
            big_param()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        )),
        text("SELECT id, LENGTH(b), SHA2(b, 256) FROM tmp_big ORDER BY id"),
        exec("SELECT b FROM tmp_big WHERE id = ?", vec![Value::from(1)]),
        text("SELECT b FROM tmp_big WHERE id = 2"),
    ];
    for id in 1..=5 {
        steps.push(exec(
            "SELECT * FROM types WHERE id = ?",
            vec![Value::from(id)],
        ));
    }
    let all = run_both(c, db, &steps).await;
    let (direct, sidecar) = (&all[0], &all[1]);
    // Sanity: the data really is there and the big value made it both ways.
    assert_eq!(rows_of(&direct[0]).len(), 5);
    assert_eq!(rows_of(&direct[1]).len(), 5);
    assert_eq!(int(&rows_of(&direct[3])[0][1]), 17 * 1024 * 1024 + 4);
    assert!(
        direct[9].is_err() && direct[10].is_err(),
        "errors expected for steps 9 and 10"
    );
    assert_eq!(rows_of(&direct[17])[0][0], Value::Bytes(big_param()));
    assert_same_outcomes("mysql_async every type", &steps, direct, sidecar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_async_multi_statements_and_procedure_results_are_identical() {
    let c = shared_cluster();
    let db = "compat_rust_multi";
    types_db(c, db).await;
    let steps = vec![
        text("SELECT 1; SELECT 2"),
        text("SELECT 1 AS a; SELECT 'two' AS b, 2.5 AS c; DO 1; SELECT NULL AS n"),
        text("SET @x = 5; SELECT @x AS x; SELECT @x + 1 AS y"),
        text("SELECT 1; SELECT * FROM no_such_table_compat; SELECT 3"),
        text("SELECT 'still usable' AS s"),
        text("CALL multi_rs()"),
        exec("CALL multi_rs()", vec![]),
        text("CALL multi_rs(); SELECT 'after call' AS s"),
        text("SELECT 'after procedures' AS s"),
    ];
    let all = run_both(c, db, &steps).await;
    let (direct, sidecar) = (&all[0], &all[1]);
    match &direct[0] {
        Ok(sets) => assert_eq!(sets.len(), 2, "SELECT 1; SELECT 2 gives two result sets"),
        Err(e) => panic!("SELECT 1; SELECT 2 failed direct: {e}"),
    }
    match &direct[5] {
        // Three SELECTs plus the final OK of the CALL.
        // mysql_async folds the CALL's final OK into the last set: three sets.
        Ok(sets) => assert_eq!(sets.len(), 3, "CALL multi_rs() sets"),
        Err(e) => panic!("CALL failed direct: {e}"),
    }
    assert_same_outcomes("multi-statements and CALL", &steps, direct, sidecar);
}

// ---------------------------------------------------------------------------------------------
// Transactions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_behave_identically() {
    let c = shared_cluster();
    let db = "compat_tx";
    let steps = vec![
        text("SELECT @@in_transaction AS t, @@autocommit AS a"),
        text("BEGIN"),
        text("INSERT INTO t (v) VALUES ('rolled back')"),
        text("SELECT @@in_transaction AS t"),
        text("ROLLBACK"),
        text("SELECT COUNT(*) FROM t WHERE v = 'rolled back'"),
        text("START TRANSACTION"),
        exec(
            "INSERT INTO t (v) VALUES (?)",
            vec![Value::from("committed")],
        ),
        text("COMMIT"),
        text("SELECT COUNT(*), @@in_transaction FROM t WHERE v = 'committed'"),
        text("SET autocommit = 0"),
        text("INSERT INTO t (v) VALUES ('implicit')"),
        text("SELECT @@in_transaction AS t, @@autocommit AS a"),
        text("ROLLBACK"),
        text("SELECT COUNT(*) FROM t WHERE v = 'implicit'"),
        text("INSERT INTO t (v) VALUES ('implicit commit')"),
        text("COMMIT"),
        text("SET autocommit = 1"),
        text("SELECT @@in_transaction AS t, @@autocommit AS a"),
        text("SELECT id, v FROM t ORDER BY id"),
    ];
    let mut all = Vec::new();
    for (label, port) in endpoints(c) {
        fresh_db(c, db).await;
        root_exec(
            c,
            &format!("CREATE TABLE `{db}`.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB;"),
        )
        .await;
        let mut conn = connect(c, port, db).await;
        let mut outcomes = Vec::new();
        for step in &steps {
            outcomes.push(run_step(&mut conn, step).await);
        }
        drop(conn);
        // What another session sees: only the committed rows.
        let seen = root_exec(c, &format!("SELECT v FROM `{db}`.t ORDER BY id;")).await;
        assert_eq!(
            seen.lines().collect::<Vec<_>>(),
            vec!["committed", "implicit commit"],
            "{label}: rows visible to another session"
        );
        let one = |i: usize| ints(&rows_of(&outcomes[i])[0]);
        assert_eq!(
            one(3),
            vec![1],
            "{label}: in transaction after BEGIN+INSERT"
        );
        assert_eq!(one(5), vec![0], "{label}: ROLLBACK left a row");
        assert_eq!(one(9), vec![1, 0], "{label}: COMMIT kept the row");
        assert_eq!(
            one(12),
            vec![1, 0],
            "{label}: autocommit=0 opens a transaction"
        );
        assert_eq!(one(14), vec![0], "{label}: rollback with autocommit=0");
        all.push(outcomes);
    }
    assert_same_outcomes("transactions", &steps, &all[0], &all[1]);
}

// ---------------------------------------------------------------------------------------------
// LOAD DATA LOCAL INFILE

fn infile_dir() -> PathBuf {
    std::env::temp_dir().join(format!("shardcar-compat-infile-{}", std::process::id()))
}

fn infile_whitelist() -> Vec<PathBuf> {
    vec![
        data_file("compat_infile.csv"),
        infile_dir().join("large.csv"),
    ]
}

/// A generated file above 16 MiB, so the relay has to carry many packets.
fn large_infile() -> PathBuf {
    let dir = infile_dir();
    std::fs::create_dir_all(&dir).expect("creating the infile dir");
    let path = dir.join("large.csv");
    if !path.exists() {
        let mut s = String::with_capacity(20 << 20);
        for i in 0..260_000u32 {
            s.push_str(&format!(
                "{i},\"name-{i}-ünï\",{}.{:02},payload-{:0>32}\n",
                i % 1000,
                i % 100,
                i
            ));
        }
        std::fs::write(&path, s).expect("writing large.csv");
    }
    path
}

fn load_steps(file: &Path) -> Vec<Step> {
    vec![
        text(
            "CREATE TABLE IF NOT EXISTS infile_t (id INT PRIMARY KEY, name VARCHAR(64) CHARACTER SET utf8mb4, \
             amount DECIMAL(10,2), note VARCHAR(64))",
        ),
        text(&format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE infile_t CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n' \
             (id, name, amount, note)",
            file.display()
        )),
        text("SELECT COUNT(*), SUM(amount), MAX(name), SUM(CRC32(CONCAT_WS('|', id, name, amount, note))) FROM infile_t"),
        text("SELECT * FROM infile_t ORDER BY id LIMIT 10"),
        text("SELECT 'connection still usable' AS s"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_local_infile_enabled_loads_the_same_rows() {
    let c = shared_cluster();
    let infile_sidecar = SidecarProcess::start(c.sidecar_options("local_infile: true\n"))
        .expect("starting a sidecar with local_infile: true");
    let db = "compat_infile_on";
    root_exec(c, "SET GLOBAL local_infile = 1;").await;
    for file in [data_file("compat_infile.csv"), large_infile()] {
        let steps = load_steps(&file);
        let mut all = Vec::new();
        for (label, port) in [
            ("direct", c.mariadb.port()),
            ("sidecar", infile_sidecar.port()),
        ] {
            fresh_db(c, db).await;
            let mut conn = try_connect(c, port, db, true)
                .await
                .unwrap_or_else(|e| panic!("{label}: connecting: {e}"));
            let mut outcomes = Vec::new();
            for step in &steps {
                let o = tokio::time::timeout(Duration::from_secs(120), run_step(&mut conn, step))
                    .await
                    .unwrap_or_else(|_| panic!("{label}: {step:?} hung for 120 s"));
                outcomes.push(o);
            }
            all.push(outcomes);
        }
        let loaded = rows_of(&all[0][2])[0][0].clone();
        assert_ne!(
            int(&loaded),
            0,
            "direct loaded no rows from {}",
            file.display()
        );
        assert_same_outcomes(
            &format!("LOAD DATA LOCAL INFILE {}", file.display()),
            &steps,
            &all[0],
            &all[1],
        );
    }
    // The CLI too (it asks for the file itself with --local-infile).
    let file = data_file("compat_infile.csv");
    let sql = load_steps(&file)
        .iter()
        .map(|s| match s {
            Step::Text(t) => format!("{t};"),
            Step::Exec(..) => unreachable!(),
        })
        .collect::<String>();
    let mut outs = Vec::new();
    for port in [c.mariadb.port(), infile_sidecar.port()] {
        fresh_db(c, db).await;
        outs.push(cli(c, port, db, &["--local-infile=1", "-e", &sql], None));
    }
    assert!(
        outs[0].status.success(),
        "direct CLI LOAD DATA: {}",
        String::from_utf8_lossy(&outs[0].stderr)
    );
    assert_same_output("CLI LOAD DATA LOCAL INFILE", &outs[0], &outs[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_local_infile_disabled_gives_a_clear_error() {
    let c = shared_cluster();
    let db = "compat_infile_off";
    fresh_db(c, db).await;
    root_exec(c, "SET GLOBAL local_infile = 1;").await;
    let steps = load_steps(&data_file("compat_infile.csv"));
    // The shared sidecar runs with the default config (local_infile off).
    let mut conn = try_connect(c, c.sidecar.port(), db, true)
        .await
        .expect("connecting through the sidecar");
    let mut outcomes = Vec::new();
    for step in &steps {
        let o = tokio::time::timeout(Duration::from_secs(30), run_step(&mut conn, step))
            .await
            .unwrap_or_else(|_| panic!("{step:?} hung for 30 s through the sidecar"));
        outcomes.push(o);
    }
    let err = outcomes[1]
        .as_ref()
        .expect_err("LOAD DATA LOCAL must be refused with local_infile off");
    assert!(
        err.starts_with("server error 4166") || err.starts_with("server error 1148"),
        "expected a MySQL ERR 4166/1148, got: {err}"
    );
    assert_eq!(int(&rows_of(&outcomes[2])[0][0]), 0, "no rows loaded");
    assert_eq!(
        rows_of(&outcomes[4])[0][0],
        Value::Bytes(b"connection still usable".to_vec()),
        "the connection survives the refusal"
    );
    // The CLI asking for local infile gets the same kind of error, promptly.
    let sql = format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE infile_t FIELDS TERMINATED BY ',';",
        data_file("compat_infile.csv").display()
    );
    let out = cli(
        c,
        c.sidecar.port(),
        db,
        &["--local-infile=1", "-e", &sql],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ERROR 4166") || stderr.contains("ERROR 1148"),
        "CLI error: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// sysbench

fn sysbench_field(out: &str, key: &str) -> Option<u64> {
    out.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn sysbench_oltp_read_write_through_sidecar() {
    let c = shared_cluster();
    let seconds: u64 = std::env::var("SHARDCAR_SYSBENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let db = "compat_sbtest";
    block_on(fresh_db(c, db));
    let common = |cmd: &mut Command| {
        cmd.args([
            "oltp_read_write",
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={}", c.sidecar.port()),
            &format!("--mysql-user={}", c.app_user),
            &format!("--mysql-password={}", c.app_password),
            &format!("--mysql-db={db}"),
            "--tables=4",
            "--table-size=10000",
        ]);
    };
    let mut prepare = Command::new("sysbench");
    common(&mut prepare);
    prepare.arg("prepare");
    let out = run_output(prepare, None, Duration::from_secs(600), "sysbench prepare");
    assert!(
        out.status.success(),
        "sysbench prepare through the sidecar failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = Command::new("sysbench");
    common(&mut run);
    // sysbench aborts (FATAL, non-zero exit) on any error not listed here. The listed
    // ones are InnoDB deadlocks and lock-wait timeouts that this write workload produces
    // against MariaDB directly too; they are mysqld's answers relayed untouched, and
    // the client retries them. Any protocol or sidecar error is fatal.
    run.args([
        "--threads=16",
        &format!("--time={seconds}"),
        "--report-interval=10",
        "--mysql-ignore-errors=1213,1205",
        "run",
    ]);
    let out = run_output(
        run,
        None,
        Duration::from_secs(seconds + 120),
        "sysbench run",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "sysbench run failed:\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("FATAL") && !stderr.contains("FATAL"),
        "sysbench FATAL:\n{stdout}\n{stderr}"
    );
    let transactions = sysbench_field(&stdout, "transactions:").expect("transactions: line");
    let ignored = sysbench_field(&stdout, "ignored errors:").expect("ignored errors: line");
    let reconnects = sysbench_field(&stdout, "reconnects:").expect("reconnects: line");
    assert!(transactions > 0, "no transactions completed:\n{stdout}");
    assert_eq!(reconnects, 0, "sysbench reconnected:\n{stdout}");
    // Deadlock retries stay a small fraction of the work (they are the workload's own).
    assert!(
        ignored * 100 <= transactions,
        "too many deadlock retries ({ignored} for {transactions} transactions):\n{stdout}"
    );
    let mut cleanup = Command::new("sysbench");
    common(&mut cleanup);
    cleanup.arg("cleanup");
    let _ = run_output(cleanup, None, Duration::from_secs(120), "sysbench cleanup");
}
