//! Sans-IO core of Shardcar.
//!
//! Everything that can be decided without I/O lives here: the MySQL wire codec and the
//! connection-phase state machines of both sides, and (in later modules) SQL
//! classification, the VSchema, vindexes and the planner. Bytes and time go in; bytes and
//! decisions come out. Nothing here touches a socket, a clock or an async runtime, so the
//! same code runs in the native sidecar, in unit tests, in fuzz targets and inside Envoy.

pub mod cache;
pub mod guard;
pub mod key;
pub mod plan;
pub mod protocol;
pub mod sql;
pub mod stream;
pub mod vindex;
pub mod vschema;

#[cfg(feature = "wasm")]
mod wasm;
