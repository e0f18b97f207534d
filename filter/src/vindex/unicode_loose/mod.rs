//! `unicode_loose_md5` and `unicode_loose_xxhash`: the keyspace id is MD5, or XXH64
//! little-endian, of a collation key that ignores case, accents and width, so `Test`,
//! `TEST`, `Tést` and `Te\u{301}st` share a shard (Vitess `unicodeloosemd5.go`,
//! `unicodeloosexxhash.go`, `unicode.go`).
//!
//! The key is the sequence of primary weights of the root collation of
//! golang.org/x/text (CLDR 23) over the value with its trailing ASCII spaces removed:
//! each non-zero weight as 2 bytes, or 3 bytes with the top bit set above 0x7FFF.

mod contract;
mod iter;
mod norm;
mod table;

use md5::{Digest, Md5};

use super::value::go_quote;
use super::xxhash::vxxhash;
use super::{Value, ValueError};
use iter::Iter;

/// The `unicode_loose_md5` vindex.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnicodeLooseMd5;

impl UnicodeLooseMd5 {
    /// The keyspace id of one value.
    pub fn hash(&self, id: &Value) -> Result<Vec<u8>, ValueError> {
        Ok(Md5::digest(loose_key(&id.to_bytes())?).to_vec())
    }
}

/// The `unicode_loose_xxhash` vindex.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnicodeLooseXxhash;

impl UnicodeLooseXxhash {
    /// The keyspace id of one value.
    pub fn hash(&self, id: &Value) -> Result<Vec<u8>, ValueError> {
        Ok(vxxhash(&loose_key(&id.to_bytes())?).to_vec())
    }
}

/// The collation key Vitess hashes: primary weights of `text` without trailing spaces.
pub fn loose_key(text: &[u8]) -> Result<Vec<u8>, ValueError> {
    let end = text.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let text = &text[..end];
    if std::str::from_utf8(text).is_err() {
        return Err(ValueError::InvalidUtf8(go_quote(text)));
    }
    let mut key = Vec::with_capacity(text.len() * 2);
    let mut iter = Iter::new(text);
    while iter.advance() {
        for elem in &iter.elems[..iter.ready] {
            match elem.primary() {
                0 => {}
                w @ 1..=0x7FFF => key.extend_from_slice(&[(w >> 8) as u8, w as u8]),
                w => key.extend_from_slice(&[(w >> 16) as u8 | 0x80, (w >> 8) as u8, w as u8]),
            }
        }
        iter.discard();
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
