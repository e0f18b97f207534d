//! The records the topology holds, as JSON values.

use serde::{Deserialize, Serialize};

/// A keyspace: a logical database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyspaceRecord {
    /// `none` (or empty), `semi_sync` (a commit waits until a replica acknowledged it) or
    /// `cross_cell` (the acknowledgement must come from a replica in another cell).
    pub durability_policy: String,
    /// The keyspace's Vitess VSchema JSON, if it has one.
    pub vschema: Option<serde_json::Value>,
}

/// A shard's global record: who the primary is, and since which term.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardRecord {
    /// The primary tablet's alias (`cell-uid`), when there is one.
    pub primary_alias: Option<String>,
    /// Grows by one with every change of primary; a tablet that finds a higher term than
    /// the one it was promoted in is no longer the primary and must not take writes.
    pub term: u64,
    /// Set while a reparent moves the primary: app sidecars buffer this shard's writes.
    pub reparenting: bool,
}

/// A tablet's type, as in Vitess.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TabletType {
    Primary,
    #[default]
    Replica,
    Rdonly,
    /// Not serving (being restored, repaired, or a fenced old primary).
    Spare,
}

/// One tablet (a mysqld with its db sidecar), as it registers itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TabletRecord {
    /// `cell-uid`, e.g. `zone1-0000000100`.
    pub alias: String,
    pub cell: String,
    pub keyspace: String,
    pub shard: String,
    pub tablet_type: TabletType,
    pub hostname: String,
    /// Where the db sidecar accepts MySQL connections.
    pub mysql_port: u16,
    /// The db sidecar's admin HTTP port (health pages and the tablet actions a reparent
    /// drives).
    pub admin_port: u16,
    /// Where mysqld itself listens, for replicas to replicate from (`CHANGE MASTER TO`).
    pub mysqld_host: String,
    pub mysqld_port: u16,
    /// The term this tablet was promoted in (primaries only).
    pub primary_term: u64,
    /// What the db sidecar last measured; refreshed every second.
    pub health: TabletHealth,
}

/// A tablet's health as its db sidecar reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TabletHealth {
    /// mysqld answers and the sidecar accepts traffic.
    pub serving: bool,
    pub read_only: bool,
    /// Seconds behind the primary (`Seconds_Behind_Master`); `None` on a primary or when
    /// replication is stopped.
    pub replication_lag_seconds: Option<u64>,
    /// Milliseconds since the newest heartbeat the primary's db sidecar wrote (replicas
    /// only): sub-second lag, where `Seconds_Behind_Master` has whole seconds.
    pub heartbeat_lag_ms: Option<u64>,
    /// Replication threads running (replicas only).
    pub replicating: bool,
    /// The replication threads' last error (`Last_IO_Errno`, else `Last_SQL_Errno`),
    /// when replication is configured and has one: 1236 means this server has GTIDs its
    /// primary lacks (errant transactions) and needs a rebuild.
    pub replication_error: Option<u32>,
    /// The GTID position (MariaDB `gtid_current_pos`, MySQL `gtid_executed`).
    pub gtid_position: String,
    /// Semi-sync as a primary (commits wait for a replica's acknowledgement) and as a
    /// replica (acknowledges what it receives), as the durability policy set them.
    pub semi_sync_primary: bool,
    pub semi_sync_replica: bool,
    /// A message when the last check failed.
    pub error: Option<String>,
}

impl TabletHealth {
    /// Replication lag in milliseconds: the heartbeat's when there is one, else
    /// `Seconds_Behind_Master`; `None` when unknown (not replicating).
    pub fn lag_ms(&self) -> Option<u64> {
        self.heartbeat_lag_ms
            .or_else(|| self.replication_lag_seconds.map(|s| s.saturating_mul(1000)))
    }
}

impl TabletRecord {
    /// `cell-uid` with the uid zero-padded to 10 digits, as Vitess prints aliases.
    pub fn alias_of(cell: &str, uid: u32) -> String {
        format!("{cell}-{uid:010}")
    }
}
