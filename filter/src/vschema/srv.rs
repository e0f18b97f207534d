//! The cell-wide VSchema (`vschema.SrvVSchema`): every keyspace plus the global routing rules.
//!
//! This is the document vtgate reads, the one `vtexplain --vschema-file` and Vitess's planner
//! tests use, and the one `shardcar local --vschema` takes:
//! `{"keyspaces": {...}, "routing_rules": {...}}`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::VSchemaError;
use super::protojson;
use super::types::Keyspace;

/// `vschema.SrvVSchema`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SrvVSchema {
    /// Keyspaces by name.
    #[serde(deserialize_with = "protojson::keyspace_map")]
    pub keyspaces: BTreeMap<String, Keyspace>,
    /// Table routing rules.
    #[serde(alias = "routingRules", deserialize_with = "protojson::null_default")]
    pub routing_rules: RoutingRules,
    /// Shard routing rules (partial MoveTables).
    #[serde(
        alias = "shardRoutingRules",
        deserialize_with = "protojson::null_default"
    )]
    pub shard_routing_rules: ShardRoutingRules,
    /// Keyspace routing rules (whole-keyspace MoveTables).
    #[serde(
        alias = "keyspaceRoutingRules",
        deserialize_with = "protojson::null_default"
    )]
    pub keyspace_routing_rules: KeyspaceRoutingRules,
    /// Mirror rules (a percentage of traffic copied to another table).
    #[serde(alias = "mirrorRules", deserialize_with = "protojson::null_default")]
    pub mirror_rules: MirrorRules,
}

impl SrvVSchema {
    /// Parses a SrvVSchema JSON document the way Vitess's `json2.UnmarshalPB` does.
    pub fn from_json(text: &str) -> Result<SrvVSchema, VSchemaError> {
        serde_json::from_str(text).map_err(VSchemaError::from_json)
    }
}

impl Keyspace {
    /// Parses a single-keyspace VSchema JSON document (what `ApplyVSchema` takes).
    pub fn from_json(text: &str) -> Result<Keyspace, VSchemaError> {
        serde_json::from_str(text).map_err(VSchemaError::from_json)
    }
}

/// `vschema.RoutingRules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RoutingRules {
    /// The rules, in document order.
    #[serde(deserialize_with = "protojson::null_default")]
    pub rules: Vec<RoutingRule>,
}

/// `vschema.RoutingRule`: `from_table` (`t`, `ks.t`, optionally `@tablet_type`) is served by
/// `to_tables` (one qualified `ks.t`; none disables the table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RoutingRule {
    /// The name queries use.
    #[serde(alias = "fromTable", deserialize_with = "protojson::null_default")]
    pub from_table: String,
    /// The table that serves it.
    #[serde(alias = "toTables", deserialize_with = "protojson::null_default")]
    pub to_tables: Vec<String>,
}

/// `vschema.ShardRoutingRules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ShardRoutingRules {
    /// The rules, in document order.
    #[serde(deserialize_with = "protojson::null_default")]
    pub rules: Vec<ShardRoutingRule>,
}

/// `vschema.ShardRoutingRule`: queries for `shard` of `from_keyspace` go to `to_keyspace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ShardRoutingRule {
    /// Source keyspace.
    #[serde(alias = "fromKeyspace", deserialize_with = "protojson::null_default")]
    pub from_keyspace: String,
    /// Target keyspace.
    #[serde(alias = "toKeyspace", deserialize_with = "protojson::null_default")]
    pub to_keyspace: String,
    /// The shard name (`-80`).
    #[serde(deserialize_with = "protojson::null_default")]
    pub shard: String,
}

/// `vschema.KeyspaceRoutingRules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct KeyspaceRoutingRules {
    /// The rules, in document order.
    #[serde(deserialize_with = "protojson::null_default")]
    pub rules: Vec<KeyspaceRoutingRule>,
}

/// `vschema.KeyspaceRoutingRule`: every table of `from_keyspace` is served by `to_keyspace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct KeyspaceRoutingRule {
    /// Source keyspace (may carry a `@tablet_type` suffix).
    #[serde(alias = "fromKeyspace", deserialize_with = "protojson::null_default")]
    pub from_keyspace: String,
    /// Target keyspace.
    #[serde(alias = "toKeyspace", deserialize_with = "protojson::null_default")]
    pub to_keyspace: String,
}

/// `vschema.MirrorRules`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MirrorRules {
    /// The rules, in document order.
    #[serde(deserialize_with = "protojson::null_default")]
    pub rules: Vec<MirrorRule>,
}

/// `vschema.MirrorRule`: `percent` of the traffic for `from_table` is also sent to `to_table`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MirrorRule {
    /// Source table.
    #[serde(alias = "fromTable", deserialize_with = "protojson::null_default")]
    pub from_table: String,
    /// Mirror table.
    #[serde(alias = "toTable", deserialize_with = "protojson::null_default")]
    pub to_table: String,
    /// Percentage of queries mirrored.
    #[serde(deserialize_with = "protojson::float32")]
    pub percent: f32,
}
