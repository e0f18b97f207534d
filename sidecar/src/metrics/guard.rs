//! Metrics of connection protection (the db role): the backend pool, pinning, resets and
//! replays, timeouts, row limits, query rules, hot rows, consolidation and load shedding.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
    action: &'static str,
}

/// Pool waits: 10µs doubling up to about 20s.
fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 22))
}

/// The protection series, registered into the sidecar's registry.
pub struct GuardMetrics {
    pool_in_use: Family<PoolLabels, Gauge>,
    pool_open: Gauge,
    pool_idle: Gauge,
    pool_waits: Family<PoolLabels, Histogram, fn() -> Histogram>,
    pool_exhausted: Family<PoolLabels, Counter>,
    pool_closed: Family<ReasonLabels, Counter>,
    resets: Counter,
    replays: Counter,
    pins: Family<ReasonLabels, Counter>,
    timeouts: Family<ReasonLabels, Counter>,
    kills: Family<ReasonLabels, Counter>,
    row_limits: Family<ReasonLabels, Counter>,
    rules: Family<RuleLabels, Counter>,
    shed: Family<ReasonLabels, Counter>,
    reloads: Family<ReasonLabels, Counter>,
    hot_row_waits: Counter,
    consolidated: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for GuardMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardMetrics").finish_non_exhaustive()
    }
}

impl GuardMetrics {
    pub(super) fn register(reg: &mut Registry) -> Self {
        let m = GuardMetrics {
            pool_in_use: Family::default(),
            pool_open: Gauge::default(),
            pool_idle: Gauge::default(),
            pool_waits: Family::new_with_constructor(wait_histogram),
            pool_exhausted: Family::default(),
            pool_closed: Family::default(),
            resets: Counter::default(),
            replays: Counter::default(),
            pins: Family::default(),
            timeouts: Family::default(),
            kills: Family::default(),
            row_limits: Family::default(),
            rules: Family::default(),
            shed: Family::default(),
            reloads: Family::default(),
            hot_row_waits: Counter::default(),
            consolidated: Family::default(),
        };
        reg.register(
            "shardcar_hot_row_waits",
            "Transactions that queued behind another one for the same row",
            m.hot_row_waits.clone(),
        );
        reg.register(
            "shardcar_consolidated",
            "Reads that ran for others (leader), got another's result (follower), or ran alone after a failed share (fallback)",
            m.consolidated.clone(),
        );
        reg.register(
            "shardcar_policy_reloads",
            "Configuration reloads of the protection policy, by result",
            m.reloads.clone(),
        );
        reg.register(
            "shardcar_pool_in_use",
            "Backend connections lent to sessions now, by budget",
            m.pool_in_use.clone(),
        );
        reg.register(
            "shardcar_pool_open",
            "Backend connections open now (lent and idle)",
            m.pool_open.clone(),
        );
        reg.register(
            "shardcar_pool_idle",
            "Idle backend connections now",
            m.pool_idle.clone(),
        );
        reg.register_with_unit(
            "shardcar_pool_wait",
            "Time sessions waited for a backend connection, by budget",
            Unit::Seconds,
            m.pool_waits.clone(),
        );
        reg.register(
            "shardcar_pool_exhausted",
            "Statements refused because a budget stayed full past the wait timeout or its queue was full",
            m.pool_exhausted.clone(),
        );
        reg.register(
            "shardcar_pool_closed",
            "Backend connections closed, by reason (max_age, idle, broken, evicted, pinned_state, peer_closed: mysqld had closed it while idle)",
            m.pool_closed.clone(),
        );
        reg.register(
            "shardcar_pool_resets",
            "COM_RESET_CONNECTION sent before handing a connection to another session",
            m.resets.clone(),
        );
        reg.register(
            "shardcar_pool_replays",
            "Session variables replayed on a backend connection",
            m.replays.clone(),
        );
        reg.register(
            "shardcar_session_pins",
            "Times a session started holding its backend connection, by reason",
            m.pins.clone(),
        );
        reg.register(
            "shardcar_guard_kills",
            "KILL requests applied to sessions, by who asked (client, admin)",
            m.kills.clone(),
        );
        reg.register(
            "shardcar_guard_timeouts",
            "Statements killed and transactions rolled back by timeouts, by kind",
            m.timeouts.clone(),
        );
        reg.register(
            "shardcar_row_limit",
            "Results that went over max_rows or max_result_bytes, by action",
            m.row_limits.clone(),
        );
        reg.register(
            "shardcar_rule_matches",
            "Statements matched by a query rule, by rule and action",
            m.rules.clone(),
        );
        reg.register(
            "shardcar_load_shed",
            "Statements refused by load shedding and hot-row limits, by reason",
            m.shed.clone(),
        );
        m
    }

    pub fn pool_in_use(&self, pool: &'static str, delta: i64) {
        self.pool_in_use
            .get_or_create(&PoolLabels { pool })
            .inc_by(delta);
    }

    pub fn pool_sizes(&self, open: usize, idle: usize) {
        self.pool_open.set(i64::try_from(open).unwrap_or(i64::MAX));
        self.pool_idle.set(i64::try_from(idle).unwrap_or(i64::MAX));
    }

    pub fn pool_wait(&self, pool: &'static str, seconds: f64) {
        self.pool_waits
            .get_or_create(&PoolLabels { pool })
            .observe(seconds);
    }

    pub fn pool_exhausted(&self, pool: &'static str) {
        self.pool_exhausted
            .get_or_create(&PoolLabels { pool })
            .inc();
    }

    pub fn pool_closed(&self, reason: &'static str) {
        self.pool_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn reset(&self) {
        self.resets.inc();
    }

    pub fn replay(&self) {
        self.replays.inc();
    }

    pub fn pinned(&self, reason: &'static str) {
        self.pins.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn timeout(&self, reason: &'static str) {
        self.timeouts.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn killed(&self, reason: &'static str) {
        self.kills.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn row_limit(&self, reason: &'static str) {
        self.row_limits
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn rule(&self, rule: &str, action: &'static str) {
        self.rules
            .get_or_create(&RuleLabels {
                rule: rule.to_owned(),
                action,
            })
            .inc();
    }

    pub fn hot_row_wait(&self) {
        self.hot_row_waits.inc();
    }

    pub fn consolidated(&self, reason: &'static str) {
        self.consolidated
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn reloaded(&self, ok: bool) {
        let reason = if ok { "applied" } else { "rejected" };
        self.reloads.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn shed(&self, reason: &'static str) {
        self.shed.get_or_create(&ReasonLabels { reason }).inc();
    }
}
