//! `numeric`: the keyspace id is the number itself, 8 bytes big-endian. Only unsigned
//! decimal values map (`ToCastUint64`), so a negative number maps to no shard (Vitess
//! `numeric.go`).

use super::{Value, ValueError, VindexError};

/// The `numeric` vindex.
#[derive(Debug, Clone, Copy, Default)]
pub struct Numeric;

impl Numeric {
    /// The keyspace id of one value.
    pub fn hash(&self, id: &Value) -> Result<Vec<u8>, ValueError> {
        Ok(id.to_cast_uint64()?.to_be_bytes().to_vec())
    }

    pub(crate) fn reverse(&self, ksid: &[u8]) -> Result<Value, VindexError> {
        let bytes: [u8; 8] = ksid.try_into().map_err(|_| {
            VindexError::InvalidKeyspaceId(format!(
                "Numeric.ReverseMap: length of keyspaceId is not 8: {}",
                ksid.len()
            ))
        })?;
        Ok(Value::Uint(u64::from_be_bytes(bytes)))
    }
}
