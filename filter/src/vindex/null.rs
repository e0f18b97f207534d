//! `null`: every value, NULL included, maps to the keyspace id `00`, so always to the first
//! shard; cost 100 so that the planner uses it only when nothing else routes (Vitess
//! `null.go`).

use super::{Destination, KeyspaceId, Value};

/// The `null` vindex.
#[derive(Debug, Clone, Copy, Default)]
pub struct Null;

impl Null {
    /// Always the keyspace id `00`.
    pub fn map(&self, _id: &Value) -> Destination {
        Destination::KeyspaceId(KeyspaceId::new(vec![0]))
    }
}
