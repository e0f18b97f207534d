//! The Shardcar topology store, after Vitess's: what keyspaces and shards exist, which
//! tablet is each shard's primary (with a term that grows with every reparent, so a
//! stale primary can be fenced), and which tablets are alive (each registered under a
//! lease that expires when its db sidecar stops renewing it).
//!
//! Two layers:
//! - [`Store`]: a small versioned key-value interface — get, list, compare-and-set,
//!   leased keys, prefix watches, named locks — implemented by [`EtcdStore`] (production,
//!   etcd v3 API) and [`MemoryStore`] (`shardcar local` and unit tests). Both pass the same
//!   conformance tests.
//! - [`Topology`]: the typed records over any store, under the key layout below.
//!
//! # Key layout
//!
//! Under a root (default `/shardcar`), values are JSON:
//!
//! | key | value |
//! |---|---|
//! | `<root>/global/keyspaces/<keyspace>/keyspace` | [`KeyspaceRecord`]: durability policy, VSchema |
//! | `<root>/global/routing_rules` | Vitess routing rules JSON (`{"rules": [...]}`) |
//! | `<root>/global/keyspaces/<keyspace>/shards/<shard>/shard` | [`ShardRecord`]: primary alias and term |
//! | `<root>/global/locks/keyspaces/<keyspace>/shards/<shard>` | the lock a reparent holds |
//! | `<root>/cells/<cell>/tablets/<alias>` | [`TabletRecord`], under the tablet's lease |
//!
//! Global records change rarely and only under compare-and-set; per-cell records are
//! written by each cell's tablets, so a cell's churn never touches another cell's keys.

mod etcd;
mod keys;
mod memory;
mod model;
mod store;
mod topology;

pub use etcd::EtcdStore;
pub use keys::Layout;
pub use memory::MemoryStore;
pub use model::{KeyspaceRecord, ShardRecord, TabletHealth, TabletRecord, TabletType};
pub use store::{Entry, Lease, LockGuard, Store, TopoError, Version, Watch, WatchEvent};
pub use topology::Topology;
