//! `reverse_bits`: the keyspace id is the number with its 64 bits reversed, big-endian, so
//! sequential ids spread over the shards (1 → `80…00`, 2 → `40…00`; Vitess
//! `reverse_bits.go`).

use super::{Value, ValueError, VindexError};

/// The `reverse_bits` vindex.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReverseBits;

impl ReverseBits {
    /// The keyspace id of one value.
    pub fn hash(&self, id: &Value) -> Result<Vec<u8>, ValueError> {
        Ok(id.to_cast_uint64()?.reverse_bits().to_be_bytes().to_vec())
    }

    pub(crate) fn reverse(&self, ksid: &[u8]) -> Result<Value, VindexError> {
        let bytes: [u8; 8] = ksid.try_into().map_err(|_| {
            VindexError::InvalidKeyspaceId(format!("invalid keyspace id: {}", hex::encode(ksid)))
        })?;
        Ok(Value::Uint(u64::from_be_bytes(bytes).reverse_bits()))
    }
}
