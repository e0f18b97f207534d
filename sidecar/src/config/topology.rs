//! The `topology` section: where the db role registers its tablet and reports its health.

use std::path::PathBuf;

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
    /// Where replicas reach this tablet's mysqld (`host:port`), for `CHANGE MASTER TO`
    /// after a reparent (default: `upstream.address` when it is TCP).
    pub mysqld_address: Option<String>,
    /// The mysqld account tablet actions use (read-only switching, replication setup);
    /// on MariaDB 10.11 it needs `READ_ONLY ADMIN`, `REPLICATION SLAVE ADMIN` and
    /// `BINLOG ADMIN`. Default: the upstream account. The upstream (serving) account must
    /// lack `READ_ONLY ADMIN` (and `SUPER` on MySQL), or a demoted primary keeps
    /// accepting its writes.
    pub dba_user: Option<String>,
    pub dba_password_file: Option<PathBuf>,
    /// The account replicas log in to their primary with (`REPLICATION SLAVE`).
    pub replication_user: String,
    pub replication_password_file: Option<PathBuf>,
    /// Where the `mariadb-dump` and `mariadb` clients a rebuild runs live (default:
    /// found on `PATH`).
    pub client_dir: Option<PathBuf>,
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
            mysqld_address: None,
            dba_user: None,
            dba_password_file: None,
            replication_user: "repl".to_string(),
            replication_password_file: None,
            client_dir: None,
        }
    }
}

impl TopologyConfig {
    /// The dba account's password, when `dba_password_file` is set.
    pub fn dba_password(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.dba_password_file
            .as_deref()
            .map(|p| super::secrets::read_password_file(p, "topology.dba_password_file"))
            .transpose()
    }

    /// The replication account's password (empty when no file is set).
    pub fn replication_password(&self) -> Result<Vec<u8>, ConfigError> {
        Ok(self
            .replication_password_file
            .as_deref()
            .map(|p| super::secrets::read_password_file(p, "topology.replication_password_file"))
            .transpose()?
            .unwrap_or_default())
    }

    /// Checks every field but `etcd_endpoints`, which may be empty when the topology
    /// store is handed over in-process (the server checks it when binding).
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        if let Some(a) = &self.mysqld_address {
            match super::parse_endpoint(a) {
                Ok(super::Endpoint::Tcp(_)) => {}
                _ => {
                    return Err(ConfigError::invalid(
                        "topology.mysqld_address",
                        "must be host:port (replicas connect over TCP)",
                    ))
                }
            }
        }
        for (field, path) in [
            ("topology.dba_password_file", &self.dba_password_file),
            (
                "topology.replication_password_file",
                &self.replication_password_file,
            ),
        ] {
            if let Some(p) = path {
                super::secrets::read_password_file(p, field)?;
            }
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
