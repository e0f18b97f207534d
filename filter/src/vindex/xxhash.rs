//! `xxhash`: the keyspace id is XXH64 (seed 0) of the value's bytes, written
//! little-endian. An integer is hashed as its decimal text (`1` → xxh64("1")) and NULL as
//! the empty string (Vitess `xxhash.go`: `vXXHash`).

use super::Value;

/// The `xxhash` vindex.
#[derive(Debug, Clone, Copy, Default)]
pub struct Xxhash;

/// `LE64(XXH64(seed = 0, bytes))` (Vitess `vXXHash`).
pub(crate) fn vxxhash(bytes: &[u8]) -> [u8; 8] {
    xxhash_rust::xxh64::xxh64(bytes, 0).to_le_bytes()
}

impl Xxhash {
    /// The keyspace id of one value.
    pub fn hash(&self, id: &Value) -> Vec<u8> {
        vxxhash(&id.to_bytes()).to_vec()
    }
}
