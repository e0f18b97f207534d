//! `hash`: the keyspace id is the 8-byte big-endian integer encrypted with single DES
//! (ECB, all-zero key), so ids spread evenly and the mapping can be reversed.
//!
//! Signed integer values are taken as two's complement (`-1` → `0xffff_ffff_ffff_ffff`);
//! every other value goes through `ToCastUint64`, and a value that fails it maps to no
//! shard (Vitess `hash.go`: `vhash`, `Hash.Map`).

use std::sync::OnceLock;

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::Des;

use super::{Value, ValueError, VindexError};

/// The `hash` vindex.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hash;

fn cipher() -> &'static Des {
    static CIPHER: OnceLock<Des> = OnceLock::new();
    CIPHER.get_or_init(|| Des::new(&GenericArray::from([0u8; 8])))
}

/// DES-ECB of `BE64(n)` under the zero key (Vitess `vhash`).
pub(crate) fn vhash(n: u64) -> [u8; 8] {
    let mut block = GenericArray::from(n.to_be_bytes());
    cipher().encrypt_block(&mut block);
    block.into()
}

/// The inverse of [`vhash`] (Vitess `vunhash`).
pub(crate) fn vunhash(ksid: &[u8]) -> Result<u64, VindexError> {
    let bytes: [u8; 8] = ksid.try_into().map_err(|_| {
        VindexError::InvalidKeyspaceId(format!("invalid keyspace id: {}", hex::encode(ksid)))
    })?;
    let mut block = GenericArray::from(bytes);
    cipher().decrypt_block(&mut block);
    Ok(u64::from_be_bytes(block.into()))
}

impl Hash {
    /// The integer `hash` encrypts: two's complement for signed values, else
    /// `ToCastUint64`.
    pub fn shard_key(id: &Value) -> Result<u64, ValueError> {
        match id {
            Value::Int(i) => Ok(*i as u64),
            other => other.to_cast_uint64(),
        }
    }

    /// The keyspace id of one value.
    pub fn hash(&self, id: &Value) -> Result<Vec<u8>, ValueError> {
        Ok(vhash(Self::shard_key(id)?).to_vec())
    }

    pub(crate) fn reverse(&self, ksid: &[u8]) -> Result<Value, VindexError> {
        vunhash(ksid).map(Value::Uint)
    }
}
