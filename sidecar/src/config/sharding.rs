//! The `sharding` section of the app role: the keyspaces, their shards and where each
//! shard's primary listens, the VSchema file, and the transaction mode.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shardcar_filter::plan::RoutingSchema;
use shardcar_filter::vindex::ParamFileLoader;
use shardcar_filter::vschema::SrvVSchema;

use super::{parse_endpoint, ConfigError};

/// How a transaction that touches several shards commits.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum TransactionMode {
    /// A transaction stays on its first shard; reaching a second one is an error.
    Single,
    /// Shard by shard at COMMIT; a failure after the first shard committed is reported
    /// with a warning and leaves the earlier shards committed (Vitess's `MULTI`).
    #[default]
    Multi,
    /// Atomically across shards with two-phase commit over MariaDB XA: every shard but
    /// the first is prepared, the first records the decision in its own commit, then the
    /// others commit; a resolver finishes branches a crash left prepared.
    Twopc,
}

impl TransactionMode {
    /// The mode a `SET transaction_mode = '...'` names (Vitess's names; `unspecified`
    /// means the configured default).
    pub fn from_session(name: &str, default: TransactionMode) -> Option<TransactionMode> {
        Some(match name {
            "single" => TransactionMode::Single,
            "multi" => TransactionMode::Multi,
            "twopc" => TransactionMode::Twopc,
            "unspecified" => default,
            _ => return None,
        })
    }

    /// The name `SELECT @@transaction_mode` answers (Vitess's enum names).
    pub fn session_name(self) -> &'static str {
        match self {
            TransactionMode::Single => "SINGLE",
            TransactionMode::Multi => "MULTI",
            TransactionMode::Twopc => "TWOPC",
        }
    }
}

/// Two-phase commit (`transaction_mode: twopc`, or sessions that `SET transaction_mode =
/// 'twopc'`): where decisions are kept and how in-doubt branches are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwopcConfig {
    /// Sessions may use twopc and the resolver runs (always so with `transaction_mode:
    /// twopc`).
    pub enabled: bool,
    /// The database, on every shard, of the `twopc_decisions` table (created when
    /// missing).
    pub database: String,
    /// How often the resolver looks for prepared branches on every shard's primary.
    pub resolve_interval_ms: u64,
    /// A branch seen prepared this long with no decision is rolled back (the resolver
    /// records the abort first, so a late coordinator cannot commit it).
    pub abort_after_ms: u64,
}

impl Default for TwopcConfig {
    fn default() -> Self {
        TwopcConfig {
            enabled: false,
            database: "_shardcar".to_string(),
            resolve_interval_ms: 5_000,
            abort_after_ms: 30_000,
        }
    }
}

/// Routing across shards. Without this section the app role forwards to `upstream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardingConfig {
    /// Vitess SrvVSchema JSON (`{"keyspaces": {...}, "routing_rules": {...}}`); without
    /// it every keyspace is unsharded.
    pub vschema_file: Option<PathBuf>,
    /// Keyspaces by name.
    pub keyspaces: BTreeMap<String, KeyspaceConfig>,
    pub transaction_mode: TransactionMode,
    pub twopc: TwopcConfig,
    /// Rows a scatter query may hold in memory while merging (ERR 1104 beyond).
    pub max_merge_rows: usize,
    /// Take primaries and replicas from the topology store instead of the shards'
    /// `address` fields.
    pub topology: Option<TopologySourceConfig>,
    /// How statements wait while a shard changes primary.
    pub failover_buffer: FailoverBufferConfig,
}

/// The topology the app role follows for its shards' primaries and replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopologySourceConfig {
    /// etcd client URLs (leave empty with `control`).
    pub etcd_endpoints: Vec<String>,
    /// Follow the control service's configuration stream instead of etcd: keyspaces,
    /// VSchema, routing rules, shards and tablets all come from it.
    pub control: Option<ControlStreamConfig>,
    /// Key prefix of the topology.
    pub root: String,
    /// This sidecar's cell: replica reads prefer its tablets.
    pub cell: String,
    /// A replica further behind than this receives no reads.
    pub max_replica_lag_ms: u64,
    /// Where reads outside transactions go unless the session (`USE ks@replica`,
    /// `USE ks@primary`) or the statement (`/* shardcar: target=replica */`) says.
    pub reads: ReadTarget,
    /// A replica serves a session's read only once it has applied that session's last
    /// write to the shard (its GTID); otherwise the read goes to the primary.
    pub read_your_writes: bool,
    /// How long a replica may take to reach the session's last write before the read
    /// goes to the primary instead (read_your_writes).
    pub read_your_writes_wait_ms: u64,
}

/// The control service's configuration stream, as the app role follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlStreamConfig {
    /// The control service's gRPC address (`http://host:port`).
    pub address: String,
    /// The last configuration applied is kept here, so the sidecar can start (and
    /// serve) when the control service is unreachable.
    pub cache_file: Option<PathBuf>,
    /// How long startup waits for the control service before it starts from
    /// `cache_file`.
    pub startup_timeout_ms: u64,
    /// This sidecar's identity on the stream; the pod and namespace default to
    /// `SHARDCAR_POD_NAME` and `SHARDCAR_POD_NAMESPACE` (the webhook sets both).
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
}

impl Default for ControlStreamConfig {
    fn default() -> Self {
        ControlStreamConfig {
            address: String::new(),
            cache_file: None,
            startup_timeout_ms: 5_000,
            cluster: String::new(),
            namespace: String::new(),
            pod: String::new(),
        }
    }
}

/// The tablets reads outside transactions go to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadTarget {
    #[default]
    Primary,
    Replica,
}

impl Default for TopologySourceConfig {
    fn default() -> Self {
        TopologySourceConfig {
            etcd_endpoints: Vec::new(),
            control: None,
            root: "/shardcar".to_string(),
            cell: String::new(),
            max_replica_lag_ms: 30_000,
            reads: ReadTarget::Primary,
            read_your_writes: false,
            read_your_writes_wait_ms: 50,
        }
    }
}

/// The failover buffer: while a shard is between primaries (a reparent is announced, or
/// its primary refuses writes or is unreachable), its statements outside transactions
/// wait for the new primary instead of failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverBufferConfig {
    /// The longest a statement waits.
    pub window_ms: u64,
    /// Statements that may wait at once (across shards); beyond, they fail at once.
    pub max_statements: usize,
}

impl Default for FailoverBufferConfig {
    fn default() -> Self {
        FailoverBufferConfig {
            window_ms: 10_000,
            max_statements: 1_000,
        }
    }
}

impl Default for ShardingConfig {
    fn default() -> Self {
        ShardingConfig {
            vschema_file: None,
            keyspaces: BTreeMap::new(),
            transaction_mode: TransactionMode::default(),
            twopc: TwopcConfig::default(),
            max_merge_rows: 100_000,
            topology: None,
            failover_buffer: FailoverBufferConfig::default(),
        }
    }
}

/// One keyspace's shards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyspaceConfig {
    pub shards: Vec<ShardConfig>,
}

/// One shard: its Vitess name and its primary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardConfig {
    /// `-80`, `80-`, or `0` for an unsharded keyspace.
    pub name: String,
    /// `host:port` or `unix:/path` of the shard's primary (leave empty with `topology`).
    pub address: String,
    /// The shard's database on that server; defaults to the keyspace name.
    pub database: Option<String>,
}

/// Reads `json_path`/`region_map` vindex params from the file system.
#[derive(Debug, Clone, Copy)]
struct Files;

impl ParamFileLoader for Files {
    fn load(&self, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("open {path}: {e}"))
    }
}

impl ShardingConfig {
    /// The control stream this section follows, if any.
    pub fn control(&self) -> Option<&ControlStreamConfig> {
        self.topology.as_ref().and_then(|t| t.control.as_ref())
    }

    /// Checks every field; builds the routing schema (VSchema, vindexes, shards) unless
    /// the keyspaces come from the control stream (`None` then).
    pub fn validate(&self) -> Result<Option<RoutingSchema>, ConfigError> {
        let Some(c) = self.control() else {
            return self.routing_schema().map(Some);
        };
        self.check_common()?;
        if !(c.address.starts_with("http://") || c.address.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "sharding.topology.control.address",
                "must be an http:// or https:// URL of the control service",
            ));
        }
        if !self.keyspaces.is_empty() || self.vschema_file.is_some() {
            return Err(ConfigError::invalid(
                "sharding.keyspaces",
                "leave keyspaces and vschema_file out with topology.control: they come from the control service",
            ));
        }
        if !(100..=600_000).contains(&c.startup_timeout_ms) {
            return Err(ConfigError::invalid(
                "sharding.topology.control.startup_timeout_ms",
                "must be between 100 and 600000",
            ));
        }
        Ok(None)
    }

    /// Checks every field and builds the routing schema (VSchema, vindexes, shards).
    pub fn routing_schema(&self) -> Result<RoutingSchema, ConfigError> {
        self.check_common()?;
        if self.keyspaces.is_empty() {
            return Err(ConfigError::invalid(
                "sharding.keyspaces",
                "at least one keyspace is required",
            ));
        }
        let mut shards = BTreeMap::new();
        for (name, ks) in &self.keyspaces {
            if ks.shards.is_empty() {
                return Err(ConfigError::invalid(
                    format!("sharding.keyspaces.{name}.shards"),
                    "at least one shard is required",
                ));
            }
            for (i, s) in ks.shards.iter().enumerate() {
                if self.topology.is_some() && s.address.is_empty() {
                    continue;
                }
                parse_endpoint(&s.address).map_err(|m| {
                    ConfigError::invalid(
                        format!("sharding.keyspaces.{name}.shards[{i}].address"),
                        m,
                    )
                })?;
            }
            shards.insert(
                name.clone(),
                ks.shards.iter().map(|s| s.name.clone()).collect(),
            );
        }
        let vschema = match &self.vschema_file {
            None => SrvVSchema::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    field: "sharding.vschema_file".into(),
                    path: path.clone(),
                    source,
                })?;
                SrvVSchema::from_json(&text)
                    .map_err(|e| ConfigError::invalid("sharding.vschema_file", e.to_string()))?
            }
        };
        Self::schema_of(vschema, &shards)
    }

    /// The routing schema of `vschema` over these shard names per keyspace.
    pub fn schema_of(
        vschema: SrvVSchema,
        shards: &BTreeMap<String, Vec<String>>,
    ) -> Result<RoutingSchema, ConfigError> {
        RoutingSchema::build(vschema, shards, &Files)
            .map_err(|e| ConfigError::invalid("sharding", e.to_string()))
    }

    /// The checks that hold whatever the keyspaces' source.
    /// Whether sessions may commit with two-phase commit.
    pub fn twopc_enabled(&self) -> bool {
        self.twopc.enabled || self.transaction_mode == TransactionMode::Twopc
    }

    fn check_common(&self) -> Result<(), ConfigError> {
        let t = &self.twopc;
        if t.database.is_empty()
            || t.database.len() > 64
            || !t
                .database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        {
            return Err(ConfigError::invalid(
                "sharding.twopc.database",
                "must be a database name of 1 to 64 letters, digits, '_' or '$'",
            ));
        }
        if !(100..=3_600_000).contains(&t.resolve_interval_ms) {
            return Err(ConfigError::invalid(
                "sharding.twopc.resolve_interval_ms",
                "must be between 100 and 3600000",
            ));
        }
        if !(1_000..=86_400_000).contains(&t.abort_after_ms) {
            return Err(ConfigError::invalid(
                "sharding.twopc.abort_after_ms",
                "must be between 1000 and 86400000",
            ));
        }
        if self.max_merge_rows == 0 {
            return Err(ConfigError::invalid(
                "sharding.max_merge_rows",
                "must be at least 1",
            ));
        }
        if let Some(t) = &self.topology {
            if t.cell.is_empty() || t.cell.contains('/') {
                return Err(ConfigError::invalid(
                    "sharding.topology.cell",
                    "must be a non-empty name without '/'",
                ));
            }
            if t.read_your_writes_wait_ms > 10_000 {
                return Err(ConfigError::invalid(
                    "sharding.topology.read_your_writes_wait_ms",
                    "must be at most 10000 (a read waits this long for a replica)",
                ));
            }
        }
        if !(100..=600_000).contains(&self.failover_buffer.window_ms) {
            return Err(ConfigError::invalid(
                "sharding.failover_buffer.window_ms",
                "must be between 100 and 600000",
            ));
        }
        Ok(())
    }
}
