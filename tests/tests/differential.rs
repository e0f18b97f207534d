//! The differential suite for sharded routing: the same statements run through a 4-shard
//! `shardcar local` cluster and directly on one unsharded MariaDB that holds the same data,
//! and the answers must agree.
//!
//! # What it sets up
//! - the cluster, in-process: keyspace `user` in 4 shards (customers by `hash(id)`; orders and
//!   events by `hash(customer_id)`; `countries` a reference table) and the unsharded keyspace
//!   `main` (products, a sequence table), from `tests/differential/vschema.json` and
//!   `tests/differential/schema/<keyspace>/*.sql`. The application connects as `app` with no
//!   default database and uses unqualified table names, which the sidecar resolves globally;
//! - the reference: one `mariadbd` (the same server settings as the cluster's tablets) with
//!   both keyspaces' schema files applied to one database `diff`;
//! - the rows of the sharded tables (`tests/differential/data.sql`, from `gen_data.py`),
//!   loaded statement by statement through both connections: through the sidecar, every
//!   multi-row INSERT has to be split across the shards.
//!
//! # What it checks
//! 1. every statement of `tests/differential/corpus.sql` (read-only, one per line) on both,
//!    over the text protocol: the column count and the rows (rendered as `Option<String>`) must
//!    be equal, in order when the statement has a top-level `ORDER BY` (the corpus makes every
//!    such order total), as multisets otherwise;
//! 2. `tests/differential/dml.sql` in order: each DML statement goes to the sidecar first and,
//!    only when the sidecar accepted it, to the reference, so that both keep the same data;
//!    affected-row counts are compared for DML, answers for the SELECTs between them.
//!
//! Each statement is classified `identical`, `refused` (the sidecar answered ERR 1235 "not
//! supported"), `mismatch` (both answered, differently: a wrong result), `error` (any other
//! failure on the sidecar side) or `corpus_error` (the reference itself failed or did not
//! run: a bug in the corpus). The summary and one line per non-identical statement are
//! printed and written to `target/differential-report.txt`.
//!
//! The test fails on any mismatch, on any corpus error, and when fewer than
//! `SHARDCAR_DIFF_MIN_IDENTICAL` percent (default 95) of the statements are identical.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, Value};
use shardcar::local::{run_until, LocalArgs};
use shardcar_tests::client::{opts, server_code};
use shardcar_tests::{
    free_port, http_get, metric_or_zero, temp_dir, workspace_root, MariaDb, MariaDbOptions,
};

/// The whole suite, set-up and tear-down included.
const WHOLE_SUITE: Duration = Duration::from_secs(600);
/// One statement on one side; a hang is reported as an error and the connection replaced.
const PER_STATEMENT: Duration = Duration::from_secs(60);
/// Until the cluster's port accepts connections (5 mariadbd start first).
const CLUSTER_READY: Duration = Duration::from_secs(180);
/// `ER_NOT_SUPPORTED_YET`: how a router says "I do not do this".
const NOT_SUPPORTED: u16 = 1235;
const MIN_IDENTICAL_ENV: &str = "SHARDCAR_DIFF_MIN_IDENTICAL";
const DEFAULT_MIN_IDENTICAL: f64 = 95.0;
/// The application account of `shardcar local` (its defaults), also created on the reference.
const APP_USER: &str = "app";
const APP_PASSWORD: &str = "app";
const REFERENCE_DB: &str = "diff";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_routing_answers_like_one_unsharded_server() {
    tokio::time::timeout(WHOLE_SUITE, run_suite())
        .await
        .expect("the differential suite finishes within 10 minutes");
}

async fn run_suite() {
    let dir = suite_dir();
    let corpus = read_statements(&dir.join("corpus.sql"), "corpus.sql");
    let dml = read_statements(&dir.join("dml.sql"), "dml.sql");
    let data = read_statements(&dir.join("data.sql"), "data.sql");
    assert!(
        corpus.len() >= 450,
        "the corpus has {} statements",
        corpus.len()
    );

    // The cluster starts in the background while the reference server comes up.
    let cluster_data = temp_dir("shardcar-diff-");
    let (port, admin_port) = (free_port(), free_port());
    let args = LocalArgs {
        keyspaces: vec![
            "user:4".parse().expect("keyspace user:4"),
            "main".parse().expect("keyspace main"),
        ],
        vschema: Some(dir.join("vschema.json")),
        schema_dir: Some(dir.join("schema")),
        port,
        admin_port,
        data_dir: Some(cluster_data.path().join("cluster")),
        ..LocalArgs::default()
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut cluster = tokio::spawn(run_until(args, shutdown));
    let reference = start_reference(&dir.join("schema")).await;
    shardcar_tests::wait_for_local(port, &mut cluster, CLUSTER_READY).await;

    let mut sidecar = Side::connect("sidecar", opts(port, APP_USER, APP_PASSWORD).into()).await;
    let mut direct = Side::connect(
        "direct",
        opts(reference.port(), APP_USER, APP_PASSWORD)
            .db_name(Some(REFERENCE_DB))
            .into(),
    )
    .await;

    let started = Instant::now();
    load(&mut sidecar, &data).await;
    load(&mut direct, &data).await;
    let loaded_in = started.elapsed();

    let mut records = Vec::with_capacity(corpus.len() + dml.len());
    for statement in &corpus {
        records.push(run_read(&mut sidecar, &mut direct, statement).await);
    }
    for statement in &dml {
        let record = if is_read(&statement.sql) {
            run_read(&mut sidecar, &mut direct, statement).await
        } else {
            run_write(&mut sidecar, &mut direct, statement).await
        };
        records.push(record);
    }
    let ran_in = started.elapsed() - loaded_in;

    let summary = Summary::of(&records);
    let report = report(&summary, &records, loaded_in, ran_in);
    println!("{report}");
    write_report(&report);

    // The lookup sections went through the lookup tables, not around them.
    let (_, metrics) = http_get(admin_port, "/metrics").expect("app sidecar metrics");
    let lookup = |kind: &str| {
        metric_or_zero(
            &metrics,
            &format!("shardcar_lookup_vindex_statements_total{{kind=\"{kind}\"}}"),
        )
    };
    let (reads, inserts, deletes) = (lookup("read"), lookup("insert"), lookup("delete"));

    sidecar.close().await;
    direct.close().await;
    stop.send(true).expect("signalling the cluster to stop");
    tokio::time::timeout(Duration::from_secs(60), cluster)
        .await
        .expect("shardcar local stops within 60 s")
        .expect("the cluster task does not panic")
        .expect("shardcar local exits cleanly");
    reference.stop().await;

    assert!(
        reads >= 10.0 && inserts >= 1.0 && deletes >= 1.0,
        "lookup vindex statements: {reads} reads, {inserts} inserts, {deletes} deletes"
    );
    let min_identical = min_identical();
    assert_eq!(
        summary.count(Class::Mismatch),
        0,
        "wrong results through the sidecar:\n{}",
        summary.line()
    );
    assert_eq!(
        summary.count(Class::CorpusError),
        0,
        "statements that fail on plain MariaDB (fix the corpus):\n{}",
        summary.line()
    );
    assert!(
        summary.identical_percent() >= min_identical,
        "{:.1}% of the statements are identical, below the {min_identical}% of \
         {MIN_IDENTICAL_ENV}:\n{}",
        summary.identical_percent(),
        summary.line()
    );
}

// ---------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------

fn suite_dir() -> PathBuf {
    workspace_root().join("tests/differential")
}

/// One unsharded mariadbd with both keyspaces' schema files applied to database `diff`, and
/// the application account.
async fn start_reference(schema_dir: &Path) -> MariaDb {
    // The cluster's tablets run with a binary log (row format, GTID strict mode): so does
    // the reference, so that both behave alike.
    let db = MariaDb::start(MariaDbOptions {
        log_bin: true,
        ..MariaDbOptions::default()
    })
    .await
    .expect("starting the reference mariadbd");
    db.exec(&format!("CREATE DATABASE {REFERENCE_DB};"))
        .await
        .expect("creating the reference database");
    for keyspace in ["main", "user"] {
        for file in sql_files(&schema_dir.join(keyspace)) {
            db.source_file(Some(REFERENCE_DB), &file)
                .await
                .unwrap_or_else(|e| panic!("applying {} to the reference: {e}", file.display()));
        }
    }
    db.create_user(APP_USER, APP_PASSWORD, "ALL PRIVILEGES ON *.*")
        .await
        .expect("creating the application account on the reference");
    db
}

/// `*.sql` files of a directory, in name order (as `shardcar local` applies them).
fn sql_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .sql files in {}", dir.display());
    files
}

/// Runs the rows of `data.sql` on one side; any failure stops the test, since nothing can
/// be compared without the data.
async fn load(side: &mut Side, data: &[Statement]) {
    for statement in data {
        if let Err(failure) = side.run(&statement.sql).await {
            panic!(
                "loading {} through the {} connection: {failure}\n  {}",
                statement.location(),
                side.name,
                abbreviate(&statement.sql, 300)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------

/// One line of a statement file.
#[derive(Debug, Clone)]
struct Statement {
    file: &'static str,
    line: usize,
    /// The last `--` comment above it.
    section: String,
    /// Without the trailing `;`.
    sql: String,
}

impl Statement {
    fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The statements of a file: one per line, `--` lines are comments (the last one names the
/// section), blank lines are skipped, a trailing `;` is dropped.
fn read_statements(path: &Path, file: &'static str) -> Vec<Statement> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut section = String::new();
    let mut statements = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("--") {
            section = comment.trim().to_string();
            continue;
        }
        let sql = line.trim_end_matches(';').trim_end().to_string();
        statements.push(Statement {
            file,
            line: index + 1,
            section: section.clone(),
            sql,
        });
    }
    assert!(
        !statements.is_empty(),
        "{} has no statements",
        path.display()
    );
    statements
}

/// `true` for statements that return rows (compared by answer), `false` for DML and the
/// like (compared by affected rows).
fn is_read(sql: &str) -> bool {
    let first = sql
        .trim_start_matches(|c: char| c == '(' || c.is_whitespace())
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    ["SELECT", "WITH", "SHOW", "EXPLAIN", "DESCRIBE"]
        .iter()
        .any(|keyword| first.eq_ignore_ascii_case(keyword))
}

/// `true` when the statement has an `ORDER BY` outside any parentheses and string literals,
/// i.e. one that orders the final result.
fn has_top_level_order_by(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == b'\\' && q != b'`' {
                i += 2;
                continue;
            }
            if c == q {
                if bytes.get(i + 1) == Some(&q) {
                    i += 2;
                    continue;
                }
                quote = None;
            }
        } else {
            match c {
                b'\'' | b'"' | b'`' => quote = Some(c),
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ if depth == 0 && starts_order_by(bytes, i) => return true,
                _ => {}
            }
        }
        i += 1;
    }
    false
}

/// `ORDER` as a whole word at `i`, followed by whitespace and the word `BY`.
fn starts_order_by(bytes: &[u8], i: usize) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if i > 0 && is_word(bytes[i - 1]) {
        return false;
    }
    let rest = &bytes[i..];
    if rest.len() < 5 || !rest[..5].eq_ignore_ascii_case(b"ORDER") {
        return false;
    }
    let after_order = &rest[5..];
    let spaces = after_order
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    let by = &after_order[spaces..];
    spaces > 0
        && by.len() >= 2
        && by[..2].eq_ignore_ascii_case(b"BY")
        && !by.get(2).is_some_and(|b| is_word(*b))
}

// ---------------------------------------------------------------------------------------
// Running a statement on one side
// ---------------------------------------------------------------------------------------

type Row = Vec<Option<String>>;

/// What a statement returned.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    columns: usize,
    rows: Vec<Row>,
    affected: u64,
}

/// Why a statement failed.
#[derive(Debug, Clone)]
struct Failure {
    /// The server's error code, `None` for client-side failures (I/O, timeouts).
    code: Option<u16>,
    message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "ERROR {code}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// One connection (the sidecar, or the reference server), reopened after a client-side
/// failure so that one broken statement does not take the rest of the corpus with it.
#[derive(Debug)]
struct Side {
    name: &'static str,
    opts: Opts,
    conn: Option<Conn>,
}

impl Side {
    async fn connect(name: &'static str, opts: Opts) -> Side {
        let conn = Conn::new(opts.clone())
            .await
            .unwrap_or_else(|e| panic!("connecting to the {name} side: {e}"));
        Side {
            name,
            opts,
            conn: Some(conn),
        }
    }

    async fn run(&mut self, sql: &str) -> Result<Answer, Failure> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => Conn::new(self.opts.clone()).await.map_err(|e| Failure {
                code: None,
                message: format!("reconnecting: {e}"),
            })?,
        };
        match tokio::time::timeout(PER_STATEMENT, query(&mut conn, sql)).await {
            Ok(Ok(answer)) => {
                self.conn = Some(conn);
                Ok(answer)
            }
            Ok(Err(e)) => {
                let code = server_code(&e);
                // After a server error the connection is still usable; after anything else
                // (I/O, a protocol error) it is not.
                if code.is_some() {
                    self.conn = Some(conn);
                }
                Err(Failure {
                    code,
                    message: match &e {
                        mysql_async::Error::Server(s) => s.message.clone(),
                        other => other.to_string(),
                    },
                })
            }
            Err(_) => Err(Failure {
                code: None,
                message: format!("no answer within {PER_STATEMENT:?}"),
            }),
        }
    }

    async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
    }
}

/// Runs `sql` over the text protocol and collects its first result set (further ones are
/// drained).
async fn query(conn: &mut Conn, sql: &str) -> mysql_async::Result<Answer> {
    let mut result = conn.query_iter(sql).await?;
    let affected = result.affected_rows();
    let columns = result.columns_ref().len();
    let rows: Vec<mysql_async::Row> = result.collect().await?;
    result.drop_result().await?;
    Ok(Answer {
        columns,
        rows: rows.iter().map(render_row).collect(),
        affected,
    })
}

fn render_row(row: &mysql_async::Row) -> Row {
    (0..row.len())
        .map(|i| row.as_ref(i).and_then(render_value))
        .collect()
}

/// NULL is `None`; text-protocol values are bytes (lossy UTF-8); the binary-protocol kinds,
/// which the text protocol does not produce, are rendered anyway.
fn render_value(value: &Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true)),
    }
}

// ---------------------------------------------------------------------------------------
// Comparing and classifying
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Identical,
    Refused,
    Mismatch,
    Error,
    CorpusError,
}

impl Class {
    const ALL: [Class; 5] = [
        Class::Identical,
        Class::Refused,
        Class::Mismatch,
        Class::Error,
        Class::CorpusError,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Identical => "identical",
            Class::Refused => "refused",
            Class::Mismatch => "mismatch",
            Class::Error => "error",
            Class::CorpusError => "corpus_error",
        }
    }
}

/// The outcome of one statement.
#[derive(Debug, Clone)]
struct Record {
    statement: Statement,
    class: Class,
    /// Why it is not identical (empty when it is).
    detail: String,
}

/// A read-only statement: both sides run it, then the answers are compared.
async fn run_read(sidecar: &mut Side, direct: &mut Side, statement: &Statement) -> Record {
    let through_sidecar = sidecar.run(&statement.sql).await;
    let on_direct = direct.run(&statement.sql).await;
    let (class, detail) = match (through_sidecar, on_direct) {
        (sidecar_result, Err(failure)) => (
            Class::CorpusError,
            format!(
                "direct: {failure}; sidecar: {}",
                match sidecar_result {
                    Ok(_) => "ok".to_string(),
                    Err(f) => f.to_string(),
                }
            ),
        ),
        (Err(failure), Ok(_)) => classify_failure(&failure),
        (Ok(s), Ok(d)) => match compare_rows(&s, &d, has_top_level_order_by(&statement.sql)) {
            None => (Class::Identical, String::new()),
            Some(difference) => (Class::Mismatch, difference),
        },
    };
    Record {
        statement: statement.clone(),
        class,
        detail,
    }
}

/// DML and other writes: the sidecar first; the reference only when the sidecar accepted
/// it, so that a refused or failed statement leaves both sides with the same data. Then the
/// affected-row counts are compared.
async fn run_write(sidecar: &mut Side, direct: &mut Side, statement: &Statement) -> Record {
    let (class, detail) = match sidecar.run(&statement.sql).await {
        Err(failure) => classify_failure(&failure),
        Ok(s) => match direct.run(&statement.sql).await {
            Err(failure) => (
                Class::CorpusError,
                format!("direct: {failure}; sidecar: ok, {} affected", s.affected),
            ),
            Ok(d) if s.affected == d.affected => (Class::Identical, String::new()),
            Ok(d) => (
                Class::Mismatch,
                format!(
                    "affected rows: sidecar {}, direct {}",
                    s.affected, d.affected
                ),
            ),
        },
    };
    Record {
        statement: statement.clone(),
        class,
        detail,
    }
}

/// A failure on the sidecar side while the reference succeeded (or was not asked).
fn classify_failure(failure: &Failure) -> (Class, String) {
    let class = if failure.code == Some(NOT_SUPPORTED) {
        Class::Refused
    } else {
        Class::Error
    };
    (class, failure.to_string())
}

/// `None` when the answers agree (as ordered lists when `ordered`, as multisets otherwise);
/// otherwise a description of the first difference.
fn compare_rows(sidecar: &Answer, direct: &Answer, ordered: bool) -> Option<String> {
    if sidecar.columns != direct.columns {
        return Some(format!(
            "columns: sidecar {}, direct {}",
            sidecar.columns, direct.columns
        ));
    }
    let (mut s, mut d) = (sidecar.rows.clone(), direct.rows.clone());
    if !ordered {
        s.sort();
        d.sort();
    }
    if s == d {
        return None;
    }
    let first = s
        .iter()
        .zip(&d)
        .position(|(a, b)| a != b)
        .unwrap_or(s.len().min(d.len()));
    Some(format!(
        "{} rows: sidecar {}, direct {}; first difference at row {first}{}: sidecar {}, direct {}",
        if ordered { "ordered" } else { "unordered" },
        s.len(),
        d.len(),
        if ordered { "" } else { " (sorted)" },
        s.get(first).map_or_else(|| "<none>".to_string(), show_row),
        d.get(first).map_or_else(|| "<none>".to_string(), show_row),
    ))
}

fn show_row(row: &Row) -> String {
    let values: Vec<String> = row
        .iter()
        .map(|v| match v {
            None => "NULL".to_string(),
            Some(s) => format!("{s:?}"),
        })
        .collect();
    format!("({})", values.join(", "))
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// A section of a fixture file: (file, section name).
type SectionKey = (&'static str, String);
/// Statements of a section: (identical, total).
type SectionCounts = (usize, usize);

#[derive(Debug)]
struct Summary {
    total: usize,
    by_class: BTreeMap<Class, usize>,
    /// Per section (in file order): (file, section) → (identical, total).
    by_section: Vec<(SectionKey, SectionCounts)>,
}

impl Summary {
    fn of(records: &[Record]) -> Summary {
        let mut by_class = BTreeMap::new();
        let mut by_section: Vec<(SectionKey, SectionCounts)> = Vec::new();
        for record in records {
            *by_class.entry(record.class).or_insert(0) += 1;
            let key = (record.statement.file, record.statement.section.clone());
            let index = match by_section.iter().position(|(k, _)| *k == key) {
                Some(index) => index,
                None => {
                    by_section.push((key, (0, 0)));
                    by_section.len() - 1
                }
            };
            let counts = &mut by_section[index].1;
            counts.1 += 1;
            if record.class == Class::Identical {
                counts.0 += 1;
            }
        }
        Summary {
            total: records.len(),
            by_class,
            by_section,
        }
    }

    fn count(&self, class: Class) -> usize {
        self.by_class.get(&class).copied().unwrap_or(0)
    }

    fn identical_percent(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        // Counts of a few hundred: exact in f64.
        self.count(Class::Identical) as f64 * 100.0 / self.total as f64
    }

    fn line(&self) -> String {
        format!(
            "differential: {} statements, identical {} ({:.1}%), refused {}, mismatched {}, \
             errors {}, corpus errors {}",
            self.total,
            self.count(Class::Identical),
            self.identical_percent(),
            self.count(Class::Refused),
            self.count(Class::Mismatch),
            self.count(Class::Error),
            self.count(Class::CorpusError),
        )
    }
}

fn report(summary: &Summary, records: &[Record], loaded_in: Duration, ran_in: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", summary.line());
    let _ = writeln!(
        out,
        "(data loaded on both sides in {:.1} s, statements run in {:.1} s)",
        loaded_in.as_secs_f64(),
        ran_in.as_secs_f64()
    );
    let _ = writeln!(out, "\nby section (identical / total):");
    for ((file, section), (identical, total)) in &summary.by_section {
        let _ = writeln!(out, "  {identical:4} / {total:<4} {file}: {section}");
    }
    for class in Class::ALL.iter().skip(1) {
        let of_class: Vec<&Record> = records.iter().filter(|r| r.class == *class).collect();
        if of_class.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} ({}):", class.name(), of_class.len());
        for record in of_class {
            let _ = writeln!(
                out,
                "{:<12} {:<15} {}  -- {}",
                class.name(),
                record.statement.location(),
                record.statement.sql,
                abbreviate(&record.detail, 400)
            );
        }
    }
    out
}

/// `target/differential-report.txt` (or under `CARGO_TARGET_DIR`); failures to write are
/// ignored, the report was printed anyway.
fn write_report(report: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let _ = std::fs::create_dir_all(&target);
    let _ = std::fs::write(target.join("differential-report.txt"), report);
}

fn min_identical() -> f64 {
    match std::env::var(MIN_IDENTICAL_ENV) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{MIN_IDENTICAL_ENV}={value:?} is not a percentage: {e}")),
        Err(_) => DEFAULT_MIN_IDENTICAL,
    }
}

fn abbreviate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars).collect();
    out.push_str("...");
    out
}

// ---------------------------------------------------------------------------------------
// The helpers themselves
// ---------------------------------------------------------------------------------------

#[test]
fn order_by_is_found_only_at_the_top_level() {
    assert!(has_top_level_order_by("SELECT a FROM t ORDER BY a"));
    assert!(has_top_level_order_by(
        "select a from t order\n  by a limit 3"
    ));
    assert!(has_top_level_order_by(
        "SELECT a FROM t WHERE a IN (1, 2) ORDER BY COALESCE(b, 0), a"
    ));
    assert!(has_top_level_order_by(
        "SELECT id FROM a UNION SELECT id FROM b ORDER BY id"
    ));
    assert!(!has_top_level_order_by(
        "SELECT GROUP_CONCAT(a ORDER BY a) FROM t"
    ));
    assert!(!has_top_level_order_by(
        "(SELECT a FROM t ORDER BY a LIMIT 3) UNION ALL (SELECT a FROM u ORDER BY a LIMIT 3)"
    ));
    assert!(!has_top_level_order_by(
        "SELECT a FROM t WHERE note = 'ORDER BY x' AND b = 'it''s'"
    ));
    assert!(!has_top_level_order_by("SELECT reorder_by FROM t"));
    assert!(!has_top_level_order_by("SELECT `order by` FROM t"));
}

#[test]
fn reads_and_writes_are_told_apart() {
    assert!(is_read("SELECT 1"));
    assert!(is_read("(SELECT id FROM t LIMIT 1) UNION (SELECT 2)"));
    assert!(is_read("with x as (select 1) select * from x"));
    assert!(!is_read("INSERT INTO t VALUES (1)"));
    assert!(!is_read("UPDATE t SET a = 1"));
    assert!(!is_read("BEGIN"));
}

#[test]
fn unordered_answers_compare_as_multisets() {
    let answer = |rows: &[&[Option<&str>]]| Answer {
        columns: rows.first().map_or(0, |r| r.len()),
        rows: rows
            .iter()
            .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
            .collect(),
        affected: 0,
    };
    let a = answer(&[&[Some("1")], &[None], &[Some("1")]]);
    let b = answer(&[&[None], &[Some("1")], &[Some("1")]]);
    let c = answer(&[&[None], &[Some("1")]]);
    assert_eq!(compare_rows(&a, &b, false), None);
    assert!(compare_rows(&a, &b, true).is_some());
    let difference = compare_rows(&a, &c, false).expect("a row is missing");
    assert!(difference.contains("sidecar 3, direct 2"), "{difference}");
}

#[test]
fn the_fixture_files_are_consistent() {
    let dir = suite_dir();
    let corpus = read_statements(&dir.join("corpus.sql"), "corpus.sql");
    assert!(corpus.len() >= 450, "{} statements", corpus.len());
    assert!(
        corpus.iter().all(|s| is_read(&s.sql)),
        "the corpus is read-only"
    );
    for statement in &corpus {
        let upper = statement.sql.to_ascii_uppercase();
        // A LIMIT needs a total order to have one right answer (derived tables and UNION
        // members carry their own ORDER BY).
        if upper.contains(" LIMIT ") && !upper.contains("ORDER BY") {
            panic!("{}: LIMIT without ORDER BY", statement.location());
        }
        for banned in [
            "NOW()",
            "RAND(",
            "UUID(",
            "CONNECTION_ID(",
            "DATABASE()",
            "@@",
        ] {
            assert!(
                !upper.contains(banned),
                "{}: {banned} differs between servers",
                statement.location()
            );
        }
    }
    let vschema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("vschema.json")).expect("reading vschema.json"),
    )
    .expect("vschema.json is JSON");
    assert_eq!(vschema["keyspaces"]["user"]["sharded"], true);
    assert_eq!(
        vschema["keyspaces"]["user"]["tables"]["countries"]["type"],
        "reference"
    );
    for keyspace in ["user", "main"] {
        assert!(!sql_files(&dir.join("schema").join(keyspace)).is_empty());
    }
    let data = read_statements(&dir.join("data.sql"), "data.sql");
    assert!(data.iter().all(|s| s.sql.starts_with("INSERT INTO ")));
}
