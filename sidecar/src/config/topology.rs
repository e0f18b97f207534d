//! The `topology` section: where the db role registers its tablet and reports its health.

use serde::{Deserialize, Serialize};
use shardcar_topo::TabletType;

use super::ConfigError;

/// The tablet this db sidecar stands for, and the etcd cluster holding the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopologyConfig {
    /// etcd client URLs (`http://10.0.0.5:2379`, ...).
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of the topology.
    pub root: String,
    /// The tablet's cell (failure domain: zone, region, cluster).
    pub cell: String,
    /// The tablet's uid within the cell; the alias is `cell-uid` (uid zero-padded to 10).
    pub uid: u32,
    pub keyspace: String,
    pub shard: String,
    pub tablet_type: TabletType,
    /// The host others reach this sidecar at (default: the `listen` address's IP).
    pub hostname: Option<String>,
    /// The tablet record's lease; it disappears this long after the sidecar stops
    /// renewing it.
    pub lease_ttl_ms: u64,
    /// How often health (serving, read-only, lag, GTID position) is measured and
    /// published.
    pub health_interval_ms: u64,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            etcd_endpoints: Vec::new(),
            root: "/shardcar".to_string(),
            cell: String::new(),
            uid: 0,
            keyspace: String::new(),
            shard: "0".to_string(),
            tablet_type: TabletType::Replica,
            hostname: None,
            lease_ttl_ms: 10_000,
            health_interval_ms: 1_000,
        }
    }
}

impl TopologyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.etcd_endpoints.is_empty() {
            return Err(ConfigError::invalid(
                "topology.etcd_endpoints",
                "name at least one etcd client URL",
            ));
        }
        for (field, value) in [
            ("topology.cell", &self.cell),
            ("topology.keyspace", &self.keyspace),
            ("topology.shard", &self.shard),
        ] {
            if value.is_empty() || value.contains('/') {
                return Err(ConfigError::invalid(
                    field,
                    "must be a non-empty name without '/'",
                ));
            }
        }
        if !(1_000..=600_000).contains(&self.lease_ttl_ms) {
            return Err(ConfigError::invalid(
                "topology.lease_ttl_ms",
                "must be between 1000 and 600000",
            ));
        }
        if !(100..=60_000).contains(&self.health_interval_ms) {
            return Err(ConfigError::invalid(
                "topology.health_interval_ms",
                "must be between 100 and 60000",
            ));
        }
        Ok(())
    }
}
