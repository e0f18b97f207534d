//! `binary_md5`: the keyspace id is the 16-byte MD5 of the value's bytes, so it is case-
//! and byte-sensitive; NULL gives md5("") (Vitess `binarymd5.go`).

use md5::{Digest, Md5};

use super::Value;

/// The `binary_md5` vindex.
#[derive(Debug, Clone, Copy, Default)]
pub struct BinaryMd5;

impl BinaryMd5 {
    /// The keyspace id of one value.
    pub fn hash(&self, id: &Value) -> Vec<u8> {
        Md5::digest(id.to_bytes()).to_vec()
    }
}
