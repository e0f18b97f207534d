//! The sidecar's Prometheus metrics: one [`Metrics`] value shared by every connection,
//! with per-command series resolved up front so that recording a command is two atomic
//! updates, and process gauges (RSS, CPU) refreshed when scraped.

mod config;
mod failover;
mod guard;

pub use config::ConfigMetrics;
pub use failover::FailoverMetrics;
pub use guard::GuardMetrics;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use shardcar_filter::protocol::Command;

/// Which way bytes went, seen from the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    FromClient,
    ToClient,
    FromUpstream,
    ToUpstream,
}

impl Direction {
    const ALL: [Direction; 4] = [
        Direction::FromClient,
        Direction::ToClient,
        Direction::FromUpstream,
        Direction::ToUpstream,
    ];

    /// The `direction` label value.
    pub fn name(self) -> &'static str {
        match self {
            Direction::FromClient => "from_client",
            Direction::ToClient => "to_client",
            Direction::FromUpstream => "from_upstream",
            Direction::ToUpstream => "to_upstream",
        }
    }
}

/// Who produced an error sent to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorOrigin {
    /// mysqld (or a db sidecar) sent it; we forwarded it.
    Upstream,
    /// This sidecar refused the request itself.
    Sidecar,
}

impl ErrorOrigin {
    /// The `origin` label value.
    pub fn name(self) -> &'static str {
        match self {
            ErrorOrigin::Upstream => "upstream",
            ErrorOrigin::Sidecar => "sidecar",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    side: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: u16,
    origin: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Command latencies: 50µs doubling up to about 13s (19 buckets).
fn command_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

/// Upstream connect latencies: 100µs doubling up to about 13s.
fn connect_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// Every metric the sidecar exports.
pub struct Metrics {
    registry: Registry,
    connections_active: Gauge,
    connections_total: Counter,
    connections_rejected: Family<ReasonLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    tls_handshakes: Family<SideLabels, Counter>,
    routes: Family<RouteLabels, Counter>,
    plan_cache: Family<ResultLabels, Counter>,
    lookup_statements: Family<KindLabels, Counter>,
    twopc_commits: Family<ResultLabels, Counter>,
    twopc_resolved: Family<KindLabels, Counter>,
    twopc_in_doubt: Gauge,
    shard_queries: Counter,
    /// Indexed by the command byte; unknown bytes share the `unknown` series.
    command_counts: Vec<Counter>,
    command_durations: Vec<Histogram>,
    bytes: [Counter; 4],
    errors: Family<ErrorLabels, Counter>,
    upstream_connect_ok: Counter,
    upstream_connect_err: Counter,
    upstream_connect_duration: Histogram,
    upstream_lost: Counter,
    kills: Counter,
    draining: Gauge,
    upstream_up: Gauge,
    process: Mutex<ProcessMetrics>,
    /// Connection protection (pool, timeouts, rules); zero unless the db role runs.
    pub guard: GuardMetrics,
    /// Failover buffering, replica reads and tablet actions.
    pub failover: FailoverMetrics,
    pub config: ConfigMetrics,
}

struct ProcessMetrics {
    resident_bytes: Gauge,
    virtual_bytes: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    threads: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every series; per-command series exist (at zero) from the start.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let reg = &mut registry;

        let connections_active = Gauge::default();
        reg.register(
            "shardcar_client_connections_active",
            "Client connections open now",
            connections_active.clone(),
        );
        let connections_total = Counter::default();
        reg.register(
            "shardcar_client_connections",
            "Client connections accepted",
            connections_total.clone(),
        );
        let connections_rejected = Family::<ReasonLabels, Counter>::default();
        reg.register(
            "shardcar_client_connections_rejected",
            "Client connections refused before the handshake, by reason",
            connections_rejected.clone(),
        );
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        reg.register(
            "shardcar_handshake_failures",
            "Client connection phases that failed, by reason",
            handshake_failures.clone(),
        );
        let routes = Family::<RouteLabels, Counter>::default();
        reg.register(
            "shardcar_routed_statements",
            "Statements by how they were routed: passthrough (one shard, raw), scatter (merged), multi (several shards), local (answered by the sidecar), refused",
            routes.clone(),
        );
        let plan_cache = Family::<ResultLabels, Counter>::default();
        reg.register(
            "shardcar_plan_cache_lookups",
            "Plan cache lookups of routed statements, by result (hit or miss)",
            plan_cache.clone(),
        );
        let lookup_statements = Family::<KindLabels, Counter>::default();
        reg.register(
            "shardcar_lookup_vindex_statements",
            "Statements the router ran on lookup vindex tables, by kind: read (narrowing a scatter), insert, delete, undo (taking back the rows of a failed write), takeover (a consistent lookup's orphan row pointed at a new owner row)",
            lookup_statements.clone(),
        );
        let twopc_commits = Family::<ResultLabels, Counter>::default();
        reg.register(
            "shardcar_twopc_commits",
            "COMMITs of twopc transactions, by result: one_phase (one shard), committed (two phases), rolled_back (a shard failed before the decision), unknown (the deciding shard was lost while committing; the resolver finishes it)",
            twopc_commits.clone(),
        );
        let twopc_resolved = Family::<KindLabels, Counter>::default();
        reg.register(
            "shardcar_twopc_resolved_branches",
            "Prepared XA branches the twopc resolver finished, by kind (commit or rollback)",
            twopc_resolved.clone(),
        );
        let twopc_in_doubt = Gauge::default();
        reg.register(
            "shardcar_twopc_in_doubt_branches",
            "Prepared XA branches with no decision yet, as of the resolver's last round",
            twopc_in_doubt.clone(),
        );
        let shard_queries = Counter::default();
        reg.register(
            "shardcar_shard_queries",
            "Statements sent to shards by the router (one per shard reached)",
            shard_queries.clone(),
        );
        let tls_handshakes = Family::<SideLabels, Counter>::default();
        reg.register(
            "shardcar_tls_handshakes",
            "Completed TLS handshakes, toward the client or the upstream",
            tls_handshakes.clone(),
        );

        let command_count_family = Family::<CommandLabels, Counter>::default();
        reg.register(
            "shardcar_commands",
            "Commands received from clients, by command",
            command_count_family.clone(),
        );
        let command_duration_family: HistogramFamily<CommandLabels> =
            Family::new_with_constructor(command_histogram);
        reg.register_with_unit(
            "shardcar_command_duration",
            "Time from a command's arrival to the end of its response",
            Unit::Seconds,
            command_duration_family.clone(),
        );
        let (command_counts, command_durations) = (0..=u8::MAX)
            .map(|b| {
                let labels = CommandLabels {
                    command: Command::from_byte(b).map(|c| c.name()).unwrap_or("unknown"),
                };
                (
                    command_count_family.get_or_create(&labels).clone(),
                    command_duration_family.get_or_create(&labels).clone(),
                )
            })
            .unzip();

        let bytes_family = Family::<DirectionLabels, Counter>::default();
        reg.register(
            "shardcar_bytes",
            "Bytes moved, by direction",
            bytes_family.clone(),
        );
        let bytes = Direction::ALL.map(|d| {
            bytes_family
                .get_or_create(&DirectionLabels {
                    direction: d.name(),
                })
                .clone()
        });

        let errors = Family::<ErrorLabels, Counter>::default();
        reg.register(
            "shardcar_errors",
            "ERR packets sent to clients, by MySQL error code and origin",
            errors.clone(),
        );

        let connects = Family::<ResultLabels, Counter>::default();
        reg.register(
            "shardcar_upstream_connects",
            "Connection attempts to the upstream, by result",
            connects.clone(),
        );
        let upstream_connect_ok = connects
            .get_or_create(&ResultLabels { result: "ok" })
            .clone();
        let upstream_connect_err = connects
            .get_or_create(&ResultLabels { result: "error" })
            .clone();
        let upstream_connect_duration = connect_histogram();
        reg.register_with_unit(
            "shardcar_upstream_connect_duration",
            "Time to connect and authenticate to the upstream",
            Unit::Seconds,
            upstream_connect_duration.clone(),
        );
        let upstream_lost = Counter::default();
        reg.register(
            "shardcar_upstream_lost",
            "Upstream connections that broke while in use",
            upstream_lost.clone(),
        );
        let kills = Counter::default();
        reg.register(
            "shardcar_upstream_kills",
            "KILL QUERY statements sent upstream for clients that went away or timed out",
            kills.clone(),
        );
        let draining = Gauge::default();
        reg.register(
            "shardcar_draining",
            "1 while the sidecar drains connections before exiting",
            draining.clone(),
        );
        let upstream_up = Gauge::default();
        reg.register(
            "shardcar_upstream_up",
            "db role: 1 while mysqld answers the health probe",
            upstream_up.clone(),
        );

        let process = ProcessMetrics {
            resident_bytes: Gauge::default(),
            virtual_bytes: Gauge::default(),
            cpu_seconds: Counter::default(),
            threads: Gauge::default(),
        };
        reg.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            process.resident_bytes.clone(),
        );
        reg.register_with_unit(
            "process_virtual_memory",
            "Virtual memory size",
            Unit::Bytes,
            process.virtual_bytes.clone(),
        );
        reg.register_with_unit(
            "process_cpu",
            "User and system CPU time spent",
            Unit::Seconds,
            process.cpu_seconds.clone(),
        );
        reg.register("process_threads", "OS threads", process.threads.clone());
        let guard = GuardMetrics::register(reg);
        let failover = FailoverMetrics::register(reg);
        let config = ConfigMetrics::register(reg);

        Arc::new(Metrics {
            registry,
            connections_active,
            connections_total,
            connections_rejected,
            handshake_failures,
            tls_handshakes,
            routes,
            plan_cache,
            lookup_statements,
            twopc_commits,
            twopc_resolved,
            twopc_in_doubt,
            shard_queries,
            command_counts,
            command_durations,
            bytes,
            errors,
            upstream_connect_ok,
            upstream_connect_err,
            upstream_connect_duration,
            upstream_lost,
            kills,
            draining,
            upstream_up,
            process: Mutex::new(process),
            guard,
            failover,
            config,
        })
    }

    /// The OpenMetrics text exposition of every series, process gauges refreshed.
    pub fn encode(&self) -> String {
        self.refresh_process();
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; a metric's own encoder could only fail on
        // a bug, and a partial scrape is better than none.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    pub fn connection_opened(&self) {
        self.connections_active.inc();
        self.connections_total.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_active.dec();
    }

    /// A client connection refused before the handshake (`max_connections`, draining).
    pub fn connection_rejected(&self, reason: &'static str) {
        self.connections_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A TLS handshake completed; `side` is `"client"` or `"upstream"`.
    pub fn tls_handshake(&self, side: &'static str) {
        self.tls_handshakes
            .get_or_create(&SideLabels { side })
            .inc();
    }

    /// One command (by its `COM_*` byte) and how long it took.
    pub fn command(&self, command: u8, seconds: f64) {
        let i = usize::from(command);
        if let Some(c) = self.command_counts.get(i) {
            c.inc();
        }
        if let Some(h) = self.command_durations.get(i) {
            h.observe(seconds);
        }
    }

    pub fn bytes(&self, direction: Direction, n: u64) {
        let i = match direction {
            Direction::FromClient => 0,
            Direction::ToClient => 1,
            Direction::FromUpstream => 2,
            Direction::ToUpstream => 3,
        };
        self.bytes[i].inc_by(n);
    }

    /// An ERR packet with MySQL error `code` reached a client.
    pub fn error(&self, code: u16, origin: ErrorOrigin) {
        self.errors
            .get_or_create(&ErrorLabels {
                code,
                origin: origin.name(),
            })
            .inc();
    }

    pub fn upstream_connect(&self, ok: bool, seconds: f64) {
        if ok {
            self.upstream_connect_ok.inc();
        } else {
            self.upstream_connect_err.inc();
        }
        self.upstream_connect_duration.observe(seconds);
    }

    pub fn upstream_lost(&self) {
        self.upstream_lost.inc();
    }

    /// One statement routed as `route` (`passthrough`, `scatter`, `multi`, `local`, `refused`).
    pub fn routed(&self, route: &'static str) {
        self.routes.get_or_create(&RouteLabels { route }).inc();
    }

    /// A statement on a lookup vindex's table.
    pub fn lookup_statement(&self, kind: &'static str) {
        self.lookup_statements
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// A twopc COMMIT with this result.
    pub fn twopc_commit(&self, result: &'static str) {
        self.twopc_commits
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// A prepared branch the resolver committed or rolled back.
    pub fn twopc_resolved(&self, kind: &'static str) {
        self.twopc_resolved
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Prepared branches still without a decision.
    pub fn twopc_in_doubt(&self, branches: usize) {
        self.twopc_in_doubt
            .set(i64::try_from(branches).unwrap_or(i64::MAX));
    }

    /// A plan cache lookup.
    pub fn plan_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.plan_cache
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// `n` statements sent to shards.
    pub fn shard_queries(&self, n: u64) {
        self.shard_queries.inc_by(n);
    }

    pub fn kill_sent(&self) {
        self.kills.inc();
    }

    pub fn draining(&self, on: bool) {
        self.draining.set(i64::from(on));
    }

    pub fn upstream_up(&self, up: bool) {
        self.upstream_up.set(i64::from(up));
    }

    fn refresh_process(&self) {
        let Some(stat) = read_proc_stat() else {
            return;
        };
        let p = match self.process.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        p.resident_bytes
            .set(i64::try_from(stat.rss_bytes).unwrap_or(i64::MAX));
        p.virtual_bytes
            .set(i64::try_from(stat.vsize_bytes).unwrap_or(i64::MAX));
        p.threads.set(stat.threads);
        let delta = stat.cpu_seconds - p.cpu_seconds.get();
        if delta > 0.0 {
            p.cpu_seconds.inc_by(delta);
        }
    }
}

/// What `/proc/self/stat` tells about this process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcStat {
    cpu_seconds: f64,
    threads: i64,
    vsize_bytes: u64,
    rss_bytes: u64,
}

/// Clock ticks per second in `/proc` (USER_HZ, 100 on every Linux architecture we run on).
const USER_HZ: f64 = 100.0;
/// Page size for the `rss` field; 4 KiB on x86-64 and on arm64 as configured by the
/// common distributions.
const PAGE_SIZE: u64 = 4096;

fn read_proc_stat() -> Option<ProcStat> {
    parse_proc_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Parses `/proc/<pid>/stat`: fields after the parenthesised command name (which may
/// hold spaces), counted from `state` (field 3).
fn parse_proc_stat(s: &str) -> Option<ProcStat> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field n (1-based, as in proc(5)) is f[n - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let utime = num(14)?;
    let stime = num(15)?;
    let threads = num(20)?;
    let vsize = num(23)?;
    let rss_pages = num(24)?;
    Some(ProcStat {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        threads: i64::try_from(threads).unwrap_or(i64::MAX),
        vsize_bytes: vsize,
        rss_bytes: rss_pages.saturating_mul(PAGE_SIZE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_contains_recorded_series() {
        let m = Metrics::new();
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        m.connection_rejected("max_connections");
        m.handshake_failed("bad_password");
        m.tls_handshake("client");
        m.command(0x03, 0.001);
        m.command(0x03, 0.002);
        m.command(0xee, 0.5);
        m.bytes(Direction::ToClient, 1234);
        m.error(1045, ErrorOrigin::Sidecar);
        m.upstream_connect(true, 0.01);
        m.upstream_connect(false, 0.02);
        m.upstream_lost();
        m.kill_sent();
        m.draining(true);
        let text = m.encode();
        for line in [
            "shardcar_client_connections_active 1",
            "shardcar_client_connections_total 2",
            "shardcar_client_connections_rejected_total{reason=\"max_connections\"} 1",
            "shardcar_handshake_failures_total{reason=\"bad_password\"} 1",
            "shardcar_tls_handshakes_total{side=\"client\"} 1",
            "shardcar_commands_total{command=\"query\"} 2",
            "shardcar_commands_total{command=\"unknown\"} 1",
            "shardcar_commands_total{command=\"ping\"} 0",
            "shardcar_command_duration_seconds_count{command=\"query\"} 2",
            "shardcar_command_duration_seconds_bucket{le=\"0.00005\",command=\"query\"} 0",
            "shardcar_bytes_total{direction=\"to_client\"} 1234",
            "shardcar_errors_total{code=\"1045\",origin=\"sidecar\"} 1",
            "shardcar_upstream_connects_total{result=\"ok\"} 1",
            "shardcar_upstream_connects_total{result=\"error\"} 1",
            "shardcar_upstream_connect_duration_seconds_count 2",
            "shardcar_upstream_lost_total 1",
            "shardcar_upstream_kills_total 1",
            "shardcar_draining 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        m.draining(false);
        assert!(m.encode().lines().any(|l| l == "shardcar_draining 0"));
    }

    #[test]
    fn every_known_command_has_its_own_series() {
        let m = Metrics::new();
        m.command(0x17, 0.0);
        let text = m.encode();
        assert!(text.contains("shardcar_commands_total{command=\"stmt_execute\"} 1"));
        assert!(text.contains("shardcar_commands_total{command=\"stmt_bulk_execute\"} 0"));
        // One `unknown` series, not one per unknown byte.
        assert_eq!(
            text.matches("shardcar_commands_total{command=\"unknown\"}")
                .count(),
            1
        );
    }

    #[test]
    fn proc_stat_parses_a_command_name_with_spaces() {
        let line = "42 (my (odd) proc) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 7 0 \
                    1000 123456789 300 18446744073709551615";
        let s = parse_proc_stat(line);
        assert_eq!(
            s,
            Some(ProcStat {
                cpu_seconds: 3.0,
                threads: 7,
                vsize_bytes: 123_456_789,
                rss_bytes: 300 * 4096,
            })
        );
        assert_eq!(parse_proc_stat("garbage"), None);
    }

    #[test]
    fn process_metrics_are_exported_on_linux() {
        let text = Metrics::new().encode();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(text.contains("process_resident_memory_bytes "), "{text}");
            assert!(text.contains("process_cpu_seconds_total "), "{text}");
        }
    }
}
