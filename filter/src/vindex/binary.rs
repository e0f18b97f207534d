//! `binary`: the keyspace id is the value's bytes, unchanged and of any length; NULL gives
//! the empty keyspace id, which sorts first (Vitess `binary.go`).

use super::{Value, VindexError};

/// The `binary` vindex.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binary;

impl Binary {
    /// The keyspace id of one value.
    pub fn hash(&self, id: &Value) -> Vec<u8> {
        id.to_bytes().into_owned()
    }

    pub(crate) fn reverse(&self, ksid: &[u8]) -> Result<Value, VindexError> {
        // Vitess rejects a nil keyspace id ("Binary.ReverseMap: keyspaceId is nil"); an
        // empty one is the closest thing a byte slice has.
        if ksid.is_empty() {
            return Err(VindexError::InvalidKeyspaceId(
                "Binary.ReverseMap: keyspaceId is nil".to_string(),
            ));
        }
        Ok(Value::Bytes(ksid.to_vec()))
    }
}
