//! Overhead of the stream filter (issue 7), per statement and per packet, natively and as
//! the real `.wasm` module in the wasmi test host, on byte streams recorded from a real
//! MariaDB: `points` point selects (one small result each) and `scans` full-table
//! selects (1,000 rows each). The recorded reads are replayed; the time is the filter's
//! (and the host's) only, without sockets. Also the module sizes.
//!
//! wasmi is an interpreter: Envoy runs the module with V8's JIT, so the wasm figures are
//! an upper bound on what Envoy spends.
//!
//! ```sh
//! scripts/build-wasm.sh
//! cargo bench -p shardcar-tests --bench wasm_filter
//! ```

use mysql_async::prelude::*;
use shardcar_filter::stream::policy::StreamPolicy;
use shardcar_filter::stream::{ConnectionFilter, Peer};
use shardcar_tests::client::opts;
use shardcar_tests::wasm_host::{module_path, Direction, Read, RecordingRelay, Variant, WasmHost};
use shardcar_tests::{MariaDb, MariaDbOptions};
use std::sync::Arc;
use std::time::Instant;

const POINTS: usize = 2_000;
const SCANS: usize = 20;
const ROWS: usize = 1_000;

const NO_POLICY: &str = r#"{"queryPolicy": {"builtinRules": {"update_without_where": "off", "delete_without_where": "off"}}}"#;
const POLICY: &str = r#"{"queryPolicy": {"limits": {"max_rows": 100000},
  "rules": [{"name": "no-secret", "match": {"tables": ["secret"]}, "action": "deny"},
            {"name": "audit", "match": {"users": ["nobody"]}, "action": "log"}]}}"#;
const ACCESS: &str = r#"{"queryPolicy": {"limits": {"max_rows": 100000}},
  "access": [{"name": "root", "identities": ["user:root"], "read": ["sbtest.*"], "write": ["sbtest.*"]}]}"#;

async fn record(db: &MariaDb) -> (Vec<Read>, Vec<Read>) {
    db.exec(
        "CREATE DATABASE sbtest; CREATE TABLE sbtest.sbtest1 (id INT PRIMARY KEY, k INT, \
         c CHAR(120), pad CHAR(60));",
    )
    .await
    .expect("schema");
    let values: Vec<String> = (1..=ROWS)
        .map(|i| {
            format!(
                "({i}, {}, '{}', '{}')",
                i * 7 % 1000,
                "c".repeat(119),
                "p".repeat(59)
            )
        })
        .collect();
    db.exec(&format!(
        "INSERT INTO sbtest.sbtest1 VALUES {};",
        values.join(",")
    ))
    .await
    .expect("rows");
    let mut sessions = Vec::new();
    for scans in [false, true] {
        let relay = RecordingRelay::start(db.port()).await.expect("recorder");
        let pool = mysql_async::Pool::new(
            opts(relay.port, "root", db.root_password()).db_name(Some("sbtest")),
        );
        let mut c = pool.get_conn().await.expect("connect");
        if scans {
            for _ in 0..SCANS {
                let rows: Vec<(i32, i32, String, String)> = c
                    .query("SELECT id, k, c, pad FROM sbtest1")
                    .await
                    .expect("scan");
                assert_eq!(rows.len(), ROWS);
            }
        } else {
            for i in 0..POINTS {
                let _: Option<String> = c
                    .query_first(format!("SELECT c FROM sbtest1 WHERE id = {}", i % ROWS + 1))
                    .await
                    .expect("point select");
            }
        }
        drop(c);
        pool.disconnect().await.expect("disconnect");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        sessions.push(relay.take());
    }
    let scans = sessions.pop().unwrap_or_default();
    let points = sessions.pop().unwrap_or_default();
    (points, scans)
}

/// Packets in the server's stream (headers walked).
fn server_packets(reads: &[Read]) -> usize {
    let stream: Vec<u8> = reads
        .iter()
        .filter(|(d, _)| *d == Direction::ServerToClient)
        .flat_map(|(_, b)| b.iter().copied())
        .collect();
    let (mut at, mut n) = (0, 0);
    while at + 4 <= stream.len() {
        let len = usize::from(stream[at])
            | usize::from(stream[at + 1]) << 8
            | usize::from(stream[at + 2]) << 16;
        at += 4 + len;
        n += 1;
    }
    n
}

fn native(reads: &[Read], config: &str, rounds: usize) -> f64 {
    let policy = Arc::new(StreamPolicy::from_json(config.as_bytes()).expect("config"));
    let start = Instant::now();
    for _ in 0..rounds {
        let mut f = ConnectionFilter::new(Arc::clone(&policy), Peer::default());
        for (i, (d, bytes)) in reads.iter().enumerate() {
            let now = i as u64 * 1_000;
            let out = match d {
                Direction::ClientToServer => f.client_data(bytes, now),
                Direction::ServerToClient => f.server_data(bytes, now),
            };
            std::hint::black_box(out);
            f.drain_events().for_each(drop);
        }
    }
    start.elapsed().as_secs_f64() / rounds as f64
}

fn wasm(reads: &[Read], variant: Variant, config: &str, rounds: usize) -> f64 {
    let mut host = WasmHost::load(variant, config).expect("module");
    let start = Instant::now();
    for _ in 0..rounds {
        let ctx = host.open("10.0.0.1:5000", None).expect("open");
        for (i, (d, bytes)) in reads.iter().enumerate() {
            let out = host.data(ctx, *d, bytes, i as u64 * 1_000).expect("data");
            std::hint::black_box(out);
        }
        host.close(ctx).expect("close");
    }
    start.elapsed().as_secs_f64() / rounds as f64
}

/// Copying the reads as a host must (into and out of the module), for scale.
fn copy_only(reads: &[Read], rounds: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..rounds {
        for (_, bytes) in reads {
            std::hint::black_box(bytes.to_vec());
        }
    }
    start.elapsed().as_secs_f64() / rounds as f64
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (points, scans) = runtime.block_on(async {
        let db = MariaDb::start(MariaDbOptions::default())
            .await
            .expect("mariadbd");
        let recorded = record(&db).await;
        db.stop().await;
        recorded
    });
    let point_packets = server_packets(&points);
    let scan_packets = server_packets(&scans);
    println!(
        "recorded: {} point selects in {} reads ({} server packets); {} scans of {ROWS} rows in {} reads ({} server packets)\n",
        POINTS,
        points.len(),
        point_packets,
        SCANS,
        scans.len(),
        scan_packets
    );
    println!("| filter | config | per point select | per scan packet |");
    println!("|---|---|---:|---:|");
    let row = |name: &str, config: &str, p: f64, s: f64| {
        println!(
            "| {name} | {config} | {:.2} µs | {:.0} ns |",
            p * 1e6 / POINTS as f64,
            s * 1e9 / scan_packets as f64
        );
    };
    row(
        "copy only (baseline)",
        "-",
        copy_only(&points, 50),
        copy_only(&scans, 20),
    );
    for (label, config) in [
        ("none", NO_POLICY),
        ("rules + row limit", POLICY),
        ("access policy", ACCESS),
    ] {
        row(
            "native",
            label,
            native(&points, config, 20),
            native(&scans, config, 10),
        );
    }
    for (label, config) in [("none", NO_POLICY), ("rules + row limit", POLICY)] {
        row(
            "wasm lean (wasmi)",
            label,
            wasm(&points, Variant::Lean, config, 3),
            wasm(&scans, Variant::Lean, config, 2),
        );
    }
    for (label, config) in [
        ("none", NO_POLICY),
        ("rules + row limit", POLICY),
        ("access policy", ACCESS),
    ] {
        row(
            "wasm full (wasmi)",
            label,
            wasm(&points, Variant::Full, config, 3),
            wasm(&scans, Variant::Full, config, 2),
        );
    }
    for variant in [Variant::Full, Variant::Lean] {
        let path = module_path(variant).expect("module");
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "\nmodule {}: {size} bytes ({:.2} MiB)",
            path.display(),
            size as f64 / 1048576.0
        );
    }
}
