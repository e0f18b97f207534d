//! `shardcar local`: a whole Shardcar cluster on loopback for development and tests, the way
//! Vitess users use vttestserver — real `mariadbd` per shard, the sidecar in front.

pub mod mariadb;
pub mod process;

mod error;

pub use error::LocalError;
