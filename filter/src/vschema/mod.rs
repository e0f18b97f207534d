//! Vitess-compatible VSchema: parsing (as Vitess's protojson does), validation and table lookup.
//!
//! Users bring the VSchema JSON they use with Vitess unchanged: a single-keyspace document
//! ([`Keyspace::from_json`]) or the cell-wide form with every keyspace and the routing rules
//! ([`SrvVSchema::from_json`]). [`Keyspace::validate`] and [`SrvVSchema::validate`] apply the
//! rules vtgate applies when it builds its VSchema, and [`SrvVSchema::find_table`] resolves a
//! table name the way vtgate does (routing rules, then keyspace, then global routing).
//!
//! The format is described in `shared/vitess/VSCHEMA.md`.

mod catalog;
mod error;
mod protojson;
mod routing;
mod srv;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use catalog::{VindexKind, VindexTypes};
pub use error::{FindTableError, VSchemaError};
pub use routing::{PrimaryVindex, TableRef, TabletType};
pub use srv::{
    KeyspaceRoutingRule, KeyspaceRoutingRules, MirrorRule, MirrorRules, RoutingRule, RoutingRules,
    ShardRoutingRule, ShardRoutingRules, SrvVSchema,
};
pub use types::{
    AutoIncrement, Column, ColumnVindex, ForeignKeyMode, Keyspace, MultiTenantSpec, Table,
    TableType, Vindex,
};
