//! The `db` section: connection protection in front of one mysqld — the backend pool and
//! its budgets, timeouts, result limits and query rules. `shardcar db` applies it; the
//! rules, limits and timeouts reload from the file without dropping connections.

use serde::{Deserialize, Serialize};
use shardcar_filter::guard::access::AccessRule;
use shardcar_filter::guard::rules::{BuiltinRules, RuleConfig, RuleSet};

use super::ConfigError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    pub pool: PoolConfig,
    pub limits: LimitsConfig,
    pub builtin_rules: BuiltinRules,
    /// Evaluated in order after the built-in rules.
    pub rules: Vec<RuleConfig>,
    /// Which identities may read and write which tables; once one rule exists,
    /// everything not granted is denied. Reloads with the rules.
    pub access: Vec<AccessRule>,
    pub hot_rows: HotRowConfig,
    pub consolidation: ConsolidationConfig,
    pub load: LoadConfig,
    /// How often the configuration file is checked for changes to `limits`,
    /// `builtin_rules` and `rules`; 0 disables reloading.
    pub reload_interval_ms: u64,
}

/// Backend connections, split into budgets so that long transactions cannot starve
/// plain statements and the other way round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Connections for statements outside transactions.
    pub statement_connections: usize,
    /// Connections held by sessions in a transaction or otherwise pinned.
    pub transaction_connections: usize,
    /// Connections for streaming (OLAP) reads: `SET workload = 'olap'` or a
    /// `/* shardcar: workload=olap */` comment; no row limit applies to them.
    pub stream_connections: usize,
    /// Sessions that may wait for a budget at once; beyond, a statement fails at once.
    pub max_waiters: usize,
    /// How long a statement waits for a connection before failing.
    pub wait_timeout_ms: u64,
    /// Backend connections are closed after this long (when idle); 0 keeps them.
    pub max_age_ms: u64,
    /// Idle backend connections are closed after this long; 0 keeps them.
    pub idle_timeout_ms: u64,
    /// A session keeps its connection for the next statement after warnings or
    /// SQL_CALC_FOUND_ROWS; it gives it back after this long without one.
    pub hold_next_statement_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            statement_connections: 32,
            transaction_connections: 64,
            stream_connections: 8,
            max_waiters: 1_000,
            wait_timeout_ms: 1_000,
            max_age_ms: 30 * 60_000,
            idle_timeout_ms: 5 * 60_000,
            hold_next_statement_ms: 1_000,
        }
    }
}

/// Hot-row protection: transactions writing (or lock-reading) the same row queue in the
/// sidecar and run one at a time. Applies from the next restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotRowConfig {
    pub enabled: bool,
    /// Transactions that may wait for one row; beyond, ERR 1203 at once.
    pub max_queue_per_row: usize,
    /// Transactions that may wait for any row, in total.
    pub max_queued: usize,
    /// How long one may wait; then ERR 1205 (lock wait timeout), which clients retry.
    pub wait_timeout_ms: u64,
}

impl Default for HotRowConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_queue_per_row: 20,
            max_queued: 1_000,
            wait_timeout_ms: 5_000,
        }
    }
}

/// Consolidation: identical concurrent reads outside transactions share one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsolidationConfig {
    pub enabled: bool,
    /// Largest result shared; a bigger one makes the waiting sessions run their own.
    pub max_result_bytes: usize,
}

impl Default for ConsolidationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_result_bytes: 1024 * 1024,
        }
    }
}

/// Load shedding: statements beyond these limits get ERR 1203 at once (retryable)
/// instead of queueing inside mysqld. 0 disables a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadConfig {
    /// Statements one MySQL user may have running at once.
    pub max_per_user: usize,
    /// Statements with one normalized fingerprint that may run at once.
    pub max_per_fingerprint: usize,
    /// An adaptive limit on all running statements that backs off when mysqld's latency
    /// rises past `latency_tolerance` times its baseline (AIMD).
    pub adaptive: bool,
    pub adaptive_min: usize,
    pub adaptive_max: usize,
    pub latency_tolerance: f64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            max_per_user: 0,
            max_per_fingerprint: 0,
            adaptive: false,
            adaptive_min: 8,
            adaptive_max: 256,
            latency_tolerance: 3.0,
        }
    }
}

/// What happens when a result goes over `max_rows` or `max_result_bytes`: the db role
/// and the wasm filter share the type.
pub use shardcar_filter::stream::policy::RowLimitMode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// A statement running longer is killed (KILL QUERY) and the client gets ERR 3024;
    /// 0 disables.
    pub statement_timeout_ms: u64,
    /// Ceiling for per-statement overrides (`/*+ MAX_EXECUTION_TIME(n) */`,
    /// `/* shardcar: timeout_ms=n */`), which may also lower the timeout.
    pub max_statement_timeout_ms: u64,
    /// A transaction open longer is rolled back; the client's next statement gets an
    /// error. 0 disables.
    pub transaction_timeout_ms: u64,
    /// A transaction left idle (no statement from the client) this long is rolled back;
    /// 0 disables.
    pub idle_in_transaction_timeout_ms: u64,
    /// Rows a SELECT may return outside OLAP; 0 disables.
    pub max_rows: u64,
    pub max_rows_mode: RowLimitMode,
    /// Bytes of rows a result may carry; 0 disables.
    pub max_result_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            statement_timeout_ms: 30_000,
            max_statement_timeout_ms: 600_000,
            transaction_timeout_ms: 60_000,
            idle_in_transaction_timeout_ms: 0,
            max_rows: 10_000,
            max_rows_mode: RowLimitMode::Error,
            max_result_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Upper bound of every protection timeout: one day.
const MAX_MS: u64 = 24 * 3_600_000;

impl DbConfig {
    /// Checks ranges and compiles the rules (errors name `db.<field>`).
    pub fn validate(&self) -> Result<RuleSet, ConfigError> {
        let p = &self.pool;
        for (field, v) in [
            ("db.pool.statement_connections", p.statement_connections),
            ("db.pool.transaction_connections", p.transaction_connections),
            ("db.pool.stream_connections", p.stream_connections),
        ] {
            if v == 0 || v > 100_000 {
                return Err(ConfigError::invalid(field, "must be between 1 and 100000"));
            }
        }
        for (field, v) in [
            ("db.pool.wait_timeout_ms", p.wait_timeout_ms),
            ("db.pool.max_age_ms", p.max_age_ms),
            ("db.pool.idle_timeout_ms", p.idle_timeout_ms),
            ("db.pool.hold_next_statement_ms", p.hold_next_statement_ms),
            (
                "db.limits.statement_timeout_ms",
                self.limits.statement_timeout_ms,
            ),
            (
                "db.limits.max_statement_timeout_ms",
                self.limits.max_statement_timeout_ms,
            ),
            (
                "db.limits.transaction_timeout_ms",
                self.limits.transaction_timeout_ms,
            ),
            (
                "db.limits.idle_in_transaction_timeout_ms",
                self.limits.idle_in_transaction_timeout_ms,
            ),
            ("db.reload_interval_ms", self.reload_interval_ms),
            ("db.hot_rows.wait_timeout_ms", self.hot_rows.wait_timeout_ms),
        ] {
            if v > MAX_MS {
                return Err(ConfigError::invalid(
                    field,
                    format!("must be at most {MAX_MS} (one day)"),
                ));
            }
        }
        for (i, a) in self.access.iter().enumerate() {
            if a.identities.is_empty() {
                return Err(ConfigError::invalid(
                    format!("db.access[{i}].identities"),
                    "must name at least one identity",
                ));
            }
            if let Some(bad) = a
                .identities
                .iter()
                .find(|id| !(id.starts_with("user:") || id.starts_with("cert:")))
            {
                return Err(ConfigError::invalid(
                    format!("db.access[{i}].identities"),
                    format!("{bad:?} must start with user: or cert:"),
                ));
            }
        }
        if !(self.load.latency_tolerance >= 1.1 && self.load.latency_tolerance <= 100.0) {
            return Err(ConfigError::invalid(
                "db.load.latency_tolerance",
                "must be between 1.1 and 100",
            ));
        }
        if self.load.adaptive && self.load.adaptive_min > self.load.adaptive_max {
            return Err(ConfigError::invalid(
                "db.load.adaptive_min",
                "must not exceed db.load.adaptive_max",
            ));
        }
        RuleSet::compile(&self.builtin_rules, &self.rules).map_err(|e| {
            ConfigError::invalid(
                format!("db.rules[{}].{}", e.index, e.field),
                format!("{} (rule {:?})", e.message, e.name),
            )
        })
    }
}
