//! Scale benchmark of the configuration streams (issue 6): a real `shardcar-control serve`
//! process over a real etcd holding `cells × shards × tablets` tablet records, serving
//! `streams` concurrent app-sidecar streams from this process (multiplexed over
//! `connections` HTTP/2 connections, each stream ACKing every update as a sidecar does).
//! Measures the time to deliver every stream its snapshot, then, for `changes` primary
//! changes written to etcd one after another, the time from the write to each stream
//! receiving it (p50/p99 over all streams, and of the last stream per change), and the
//! control process's CPU and RSS.
//!
//! ```sh
//! cargo build --release -p shardcar-control
//! cargo bench -p shardcar-tests --bench config_scale -- --streams 10000
//! ```
//!
//! Options: `--streams N` [10000], `--connections N` [100], `--cells N` [12],
//! `--shards N` [256], `--tablets N` [3, per shard and cell], `--changes N` [20],
//! `--control PATH` [target/release/shardcar-control].

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardcar_config_api::pb::{self, config_discovery_client::ConfigDiscoveryClient};
use shardcar_topo::{
    EtcdStore, KeyspaceRecord, Layout, ShardRecord, Store, TabletHealth, TabletRecord, TabletType,
    Topology,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

struct Options {
    streams: usize,
    connections: usize,
    cells: usize,
    shards: usize,
    tablets: usize,
    changes: usize,
    control: std::path::PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        streams: 10_000,
        connections: 100,
        cells: 12,
        shards: 256,
        tablets: 3,
        changes: 20,
        control: std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/release/shardcar-control"
        )),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let n = || {
            value
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("{}: a number", args[i]))
        };
        match args[i].as_str() {
            "--streams" => o.streams = n(),
            "--connections" => o.connections = n(),
            "--cells" => o.cells = n(),
            "--shards" => o.shards = n(),
            "--tablets" => o.tablets = n(),
            "--changes" => o.changes = n(),
            "--control" => o.control = value.into(),
            // cargo bench passes --bench.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// Vitess names of `n` even shards over the first keyspace-id byte (`n` ≤ 256).
fn shard_names(n: usize) -> Vec<String> {
    let bound = |k: usize| {
        if k == 0 || k == n {
            String::new()
        } else {
            format!("{:02x}", k * 256 / n)
        }
    };
    (0..n)
        .map(|k| format!("{}-{}", bound(k), bound(k + 1)))
        .collect()
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command: state is field 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// (VmRSS, VmHWM) of `pid`, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// What every stream has received: arrival times of its updates after the snapshot.
struct Arrivals {
    per_stream: Vec<Mutex<Vec<Instant>>>,
    /// Set before the control service is stopped: streams end quietly then.
    done: std::sync::atomic::AtomicBool,
    snapshots: AtomicUsize,
    snapshot_bytes: AtomicUsize,
}

async fn run_stream(
    channel: tonic::transport::Channel,
    index: usize,
    arrivals: Arc<Arrivals>,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::SidecarMessage {
        message: Some(pb::sidecar_message::Message::Hello(pb::Hello {
            identity: Some(pb::Identity {
                cluster: "bench".into(),
                cell: "zone1".into(),
                pod: format!("app-{index}"),
                role: pb::Role::App.into(),
                ..Default::default()
            }),
            last_version: 0,
        })),
    };
    tx.send(hello).await.map_err(|e| e.to_string())?;
    let mut inbound = ConfigDiscoveryClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .stream(ReceiverStream::new(rx))
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    let mut parts = shardcar_config_api::Parts::default();
    while let Some(part) = inbound.message().await.map_err(|s| s.to_string())? {
        let Some(update) = parts.push(part).map_err(|e| e.to_string())? else {
            continue;
        };
        let now = Instant::now();
        if update.full {
            if arrivals.snapshots.fetch_add(1, Ordering::Relaxed) == 0 {
                use prost::Message as _;
                arrivals
                    .snapshot_bytes
                    .store(update.encoded_len(), Ordering::Relaxed);
            }
        } else if let Ok(mut a) = arrivals.per_stream[index].lock() {
            a.push(now);
        }
        let ack = pb::SidecarMessage {
            message: Some(pb::sidecar_message::Message::Ack(pb::Ack {
                version: update.version,
            })),
        };
        if tx.send(ack).await.is_err() {
            break;
        }
    }
    Ok(())
}

fn start_control(o: &Options, etcd: &str, port: u16) -> Child {
    Command::new(&o.control)
        .args(["serve", "--etcd", etcd, "--config-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--instance", "bench"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", o.control.display()))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = options();
    let etcd = shardcar::local::etcd::Etcd::start().expect("starting etcd");
    let url = etcd.client_url();
    let store = Arc::new(
        EtcdStore::connect(std::slice::from_ref(&url))
            .await
            .expect("etcd"),
    );
    let topology = Topology::new(store.clone(), Layout::default());
    let names = shard_names(o.shards);
    let vschema = serde_json::json!({"sharded": true, "vindexes": {"hash": {"type": "hash"}},
        "tables": {"t": {"column_vindexes": [{"column": "id", "name": "hash"}]}}});
    topology
        .create_keyspace(
            "user",
            &KeyspaceRecord {
                durability_policy: "semi_sync".into(),
                vschema: Some(vschema),
            },
        )
        .await
        .expect("keyspace");
    let load = Instant::now();
    let cells: Vec<String> = (1..=o.cells).map(|c| format!("zone{c}")).collect();
    let mut writes = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut uid = 0u32;
    for (s, shard) in names.iter().enumerate() {
        let primary = TabletRecord::alias_of(&cells[0], (s * o.tablets) as u32 + 1);
        let record = ShardRecord {
            primary_alias: Some(primary),
            term: 1,
            reparenting: false,
        };
        let (t, shard_name, sem) = (topology.clone(), shard.clone(), limit.clone());
        writes.spawn(async move {
            let _p = sem.acquire_owned().await;
            t.create_shard("user", &shard_name, &record).await
        });
        for cell in &cells {
            for k in 0..o.tablets {
                uid += 1;
                let record = TabletRecord {
                    alias: TabletRecord::alias_of(cell, uid),
                    cell: cell.clone(),
                    keyspace: "user".into(),
                    shard: shard.clone(),
                    tablet_type: if k == 0 && cell == &cells[0] {
                        TabletType::Primary
                    } else {
                        TabletType::Replica
                    },
                    hostname: format!("10.{}.{}.{}", uid >> 16, (uid >> 8) & 255, uid & 255),
                    mysql_port: 3306,
                    admin_port: 15000,
                    primary_term: 1,
                    health: TabletHealth {
                        serving: true,
                        replicating: k != 0,
                        heartbeat_lag_ms: Some(120),
                        gtid_position: format!("0-1-{uid}"),
                        ..TabletHealth::default()
                    },
                    ..TabletRecord::default()
                };
                let key = topology.layout().tablet(cell, &record.alias);
                let value = serde_json::to_vec(&record).expect("json");
                let (store, sem) = (store.clone(), limit.clone());
                writes.spawn(async move {
                    let _p = sem.acquire_owned().await;
                    store.update(&key, value, None).await.map(|_| ())
                });
            }
        }
    }
    while let Some(r) = writes.join_next().await {
        r.expect("task").expect("write");
    }
    let tablets = o.cells * o.shards * o.tablets;
    eprintln!(
        "loaded {tablets} tablets and {} shards in {:.1} s",
        o.shards,
        load.elapsed().as_secs_f64()
    );

    let port = shardcar::local::process::free_loopback_port().expect("port");
    let mut control = start_control(&o, &url, port);
    let pid = control.id();
    let address = format!("http://127.0.0.1:{port}");
    let mut channels = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while channels.len() < o.connections {
        match tonic::transport::Endpoint::from_shared(address.clone())
            .expect("url")
            .connect()
            .await
        {
            Ok(c) => channels.push(c),
            Err(e) => {
                assert!(Instant::now() < deadline, "control never listened: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let (cpu_idle, rss_idle) = (cpu_seconds(pid), rss_mib(pid));

    let arrivals = Arc::new(Arrivals {
        per_stream: (0..o.streams).map(|_| Mutex::new(Vec::new())).collect(),
        done: std::sync::atomic::AtomicBool::new(false),
        snapshots: AtomicUsize::new(0),
        snapshot_bytes: AtomicUsize::new(0),
    });
    let connect = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..o.streams {
        let channel = channels[i % channels.len()].clone();
        let arrivals = arrivals.clone();
        tasks.spawn(async move {
            if let Err(e) = run_stream(channel, i, arrivals.clone()).await {
                if !arrivals.done.load(Ordering::Relaxed) {
                    eprintln!("stream {i}: {e}");
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while arrivals.snapshots.load(Ordering::Relaxed) < o.streams {
        assert!(
            Instant::now() < deadline,
            "only {} snapshots",
            arrivals.snapshots.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected = connect.elapsed();
    let (cpu_connected, rss_connected) = (cpu_seconds(pid), rss_mib(pid));
    eprintln!(
        "{} snapshots in {:.1} s",
        o.streams,
        connected.as_secs_f64()
    );

    let mut all = Vec::new();
    let mut last = Vec::new();
    for change in 0..o.changes {
        let shard = &names[(change * 7) % names.len()];
        let t0 = Instant::now();
        topology
            .update_shard("user", shard, |s| {
                s.term += 1;
                Ok(())
            })
            .await
            .expect("a primary change");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut latencies = loop {
            let got: Vec<Option<Instant>> = arrivals
                .per_stream
                .iter()
                .map(|a| a.lock().ok().and_then(|v| v.get(change).copied()))
                .collect();
            if got.iter().all(Option::is_some) {
                break got
                    .into_iter()
                    .flatten()
                    .map(|t| t.saturating_duration_since(t0))
                    .collect::<Vec<_>>();
            }
            assert!(Instant::now() < deadline, "change {change} not delivered");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.sort();
        last.push(*latencies.last().unwrap_or(&Duration::ZERO));
        all.extend(latencies);
        // Let the ACKs settle before the next change.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (cpu_end, rss_end) = (cpu_seconds(pid), rss_mib(pid));
    all.sort();
    last.sort();
    let updates = (o.streams * o.changes) as f64;
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| topology | {} cells × {} shards × {} tablets = {tablets} tablets |",
        o.cells, o.shards, o.tablets
    );
    println!(
        "| streams | {} app-role streams over {} HTTP/2 connections |",
        o.streams, o.connections
    );
    println!(
        "| snapshot | {:.0} KiB per stream |",
        arrivals.snapshot_bytes.load(Ordering::Relaxed) as f64 / 1024.0
    );
    println!(
        "| every stream's snapshot delivered | {:.1} s (control CPU {:.1} s) |",
        connected.as_secs_f64(),
        cpu_connected - cpu_idle
    );
    println!(
        "| primary change → a stream has it | p50 {} ms, p99 {} ms, max {} ms ({} changes × {} streams) |",
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(percentile(&all, 1.0)),
        o.changes,
        o.streams
    );
    println!(
        "| primary change → the last stream has it | p50 {} ms, p99 {} ms |",
        ms(percentile(&last, 0.5)),
        ms(percentile(&last, 0.99))
    );
    println!(
        "| control CPU per delivered delta | {:.1} µs |",
        (cpu_end - cpu_connected) * 1e6 / updates
    );
    println!(
        "| control RSS | idle {:.0} MiB, with every stream {:.0} MiB, end {:.0} MiB, peak {:.0} MiB |",
        rss_idle.0, rss_connected.0, rss_end.0, rss_end.1
    );
    arrivals.done.store(true, Ordering::Relaxed);
    let _ = control.kill();
    let _ = control.wait();
    tasks.abort_all();
}
