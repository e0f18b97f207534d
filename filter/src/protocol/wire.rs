//! Primitive MySQL wire encodings: fixed-width little-endian integers, length-encoded
//! integers and strings, NUL-terminated strings.
//!
//! Decoding works on borrowed slices through [`Reader`] and never panics: every read that
//! would run past the end returns [`DecodeError`]. Encoding appends to a `Vec<u8>`.

use thiserror::Error;

/// A payload could not be decoded; says what was being read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("malformed packet: truncated while reading {0}")]
    Truncated(&'static str),
    #[error("malformed packet: {0}")]
    Invalid(&'static str),
}

/// Result of a decode step.
pub type DecodeResult<T> = Result<T, DecodeError>;

/// A cursor over a borrowed payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn skip(&mut self, n: usize, what: &'static str) -> DecodeResult<()> {
        self.take(n, what).map(|_| ())
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> DecodeResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(DecodeError::Truncated(what))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Everything left, consuming it.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub fn u8(&mut self, what: &'static str) -> DecodeResult<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> DecodeResult<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self, what: &'static str) -> DecodeResult<u32> {
        let b = self.take(3, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    pub fn u32(&mut self, what: &'static str) -> DecodeResult<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> DecodeResult<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-encoded integer. `0xfb` (NULL in rows) is rejected here; use
    /// [`Reader::lenenc_int_or_null`] where NULL is legal.
    pub fn lenenc_int(&mut self, what: &'static str) -> DecodeResult<u64> {
        self.lenenc_int_or_null(what)?.ok_or(DecodeError::Invalid(
            "unexpected NULL length-encoded integer",
        ))
    }

    /// A length-encoded integer where `0xfb` means NULL.
    pub fn lenenc_int_or_null(&mut self, what: &'static str) -> DecodeResult<Option<u64>> {
        match self.u8(what)? {
            n @ 0..=0xfa => Ok(Some(u64::from(n))),
            0xfb => Ok(None),
            0xfc => Ok(Some(u64::from(self.u16(what)?))),
            0xfd => Ok(Some(u64::from(self.u24(what)?))),
            0xfe => self.u64(what).map(Some),
            _ => Err(DecodeError::Invalid("0xff is not a length-encoded integer")),
        }
    }

    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> DecodeResult<&'a [u8]> {
        let len = self.lenenc_int(what)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(what))?;
        self.take(len, what)
    }

    /// A length-encoded string or NULL (`0xfb`), as in text result rows.
    pub fn lenenc_bytes_or_null(&mut self, what: &'static str) -> DecodeResult<Option<&'a [u8]>> {
        match self.lenenc_int_or_null(what)? {
            None => Ok(None),
            Some(len) => {
                let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(what))?;
                self.take(len, what).map(Some)
            }
        }
    }

    /// Bytes up to (not including) the next NUL, consuming the NUL.
    pub fn nul_bytes(&mut self, what: &'static str) -> DecodeResult<&'a [u8]> {
        let rest = self.remaining();
        let n = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(DecodeError::Truncated(what))?;
        let out = &rest[..n];
        self.pos += n + 1;
        Ok(out)
    }

    /// Bytes up to the next NUL, or to the end when there is none (some peers omit the
    /// trailing NUL of the last string in a packet).
    pub fn nul_bytes_or_rest(&mut self) -> &'a [u8] {
        let rest = self.remaining();
        match rest.iter().position(|b| *b == 0) {
            Some(n) => {
                self.pos += n + 1;
                &rest[..n]
            }
            None => self.take_rest(),
        }
    }
}

/// Number of bytes [`put_lenenc_int`] writes for `v`.
pub fn lenenc_int_len(v: u64) -> usize {
    match v {
        0..=0xfa => 1,
        0xfb..=0xffff => 3,
        0x1_0000..=0xff_ffff => 4,
        _ => 9,
    }
}

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes()[..3]);
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xfa => out.push(v as u8),
        0xfb..=0xffff => {
            out.push(0xfc);
            put_u16(out, v as u16);
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            put_u24(out, v as u32);
        }
        _ => {
            out.push(0xfe);
            put_u64(out, v);
        }
    }
}

pub fn put_lenenc_bytes(out: &mut Vec<u8>, v: &[u8]) {
    put_lenenc_int(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// Writes `v` followed by a NUL.
pub fn put_nul_bytes(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(v);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_int_round_trips_at_every_width_boundary() {
        for v in [
            0,
            250,
            251,
            0xffff,
            0x1_0000,
            0xff_ffff,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            assert_eq!(out.len(), lenenc_int_len(v));
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc_int("v"), Ok(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn truncated_reads_are_errors_not_panics() {
        let mut r = Reader::new(&[0xfd, 1]);
        assert_eq!(r.lenenc_int("len"), Err(DecodeError::Truncated("len")));
        let mut r = Reader::new(&[5, b'a']);
        assert!(r.lenenc_bytes("s").is_err());
        let mut r = Reader::new(b"abc");
        assert!(r.nul_bytes("s").is_err());
        assert_eq!(Reader::new(b"abc").nul_bytes_or_rest(), b"abc");
    }

    #[test]
    fn null_is_only_accepted_where_asked_for() {
        assert_eq!(Reader::new(&[0xfb]).lenenc_bytes_or_null("c"), Ok(None));
        assert!(Reader::new(&[0xfb]).lenenc_int("c").is_err());
    }
}
