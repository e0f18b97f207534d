//! Generic responses: OK, ERR and EOF packets, decoded and encoded.
//!
//! Which form an OK takes depends on the negotiated capabilities (`PROTOCOL_41`,
//! `SESSION_TRACK`, `DEPRECATE_EOF`), so both directions take the capability flags.

use super::constants::{capabilities, status};
use super::error_codes::ErrorCode;
use super::wire::{self, DecodeError, DecodeResult, Reader};

/// First byte of an OK packet.
pub const OK_HEADER: u8 = 0x00;
/// First byte of an EOF packet, and of an OK packet that ends a result set under
/// `CLIENT_DEPRECATE_EOF`.
pub const EOF_HEADER: u8 = 0xfe;
/// First byte of an ERR packet.
pub const ERR_HEADER: u8 = 0xff;
/// First byte of a LOCAL INFILE request.
pub const LOCAL_INFILE_HEADER: u8 = 0xfb;

/// An OK packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    /// Human-readable info (`Rows matched: 1  Changed: 1  Warnings: 0`).
    pub info: Vec<u8>,
    /// Raw session-state-change block (present when `SERVER_SESSION_STATE_CHANGED`).
    pub session_state: Vec<u8>,
}

impl OkPacket {
    /// Decodes an OK packet (header `0x00`, or `0xfe` when it ends a result set).
    pub fn decode(payload: &[u8], caps: u32) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        let header = r.u8("OK header")?;
        if header != OK_HEADER && header != EOF_HEADER {
            return Err(DecodeError::Invalid("not an OK packet"));
        }
        let affected_rows = r.lenenc_int("affected rows")?;
        let last_insert_id = r.lenenc_int("last insert id")?;
        let mut ok = OkPacket {
            affected_rows,
            last_insert_id,
            ..Default::default()
        };
        if caps & capabilities::PROTOCOL_41 != 0 {
            ok.status = r.u16("status flags")?;
            ok.warnings = r.u16("warnings")?;
        } else if caps & capabilities::TRANSACTIONS != 0 {
            ok.status = r.u16("status flags")?;
        }
        if caps & capabilities::SESSION_TRACK != 0 {
            if !r.is_empty() {
                ok.info = r.lenenc_bytes("info")?.to_vec();
            }
            if ok.status & status::SESSION_STATE_CHANGED != 0 && !r.is_empty() {
                ok.session_state = r.lenenc_bytes("session state")?.to_vec();
            }
        } else {
            ok.info = r.take_rest().to_vec();
        }
        Ok(ok)
    }

    /// Encodes with header `0x00`.
    pub fn encode(&self, caps: u32) -> Vec<u8> {
        self.encode_with_header(OK_HEADER, caps)
    }

    /// Encodes as the OK that ends a result set under `CLIENT_DEPRECATE_EOF`.
    pub fn encode_as_eof(&self, caps: u32) -> Vec<u8> {
        self.encode_with_header(EOF_HEADER, caps)
    }

    fn encode_with_header(&self, header: u8, caps: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.info.len() + self.session_state.len());
        out.push(header);
        wire::put_lenenc_int(&mut out, self.affected_rows);
        wire::put_lenenc_int(&mut out, self.last_insert_id);
        let mut status_flags = self.status;
        if self.session_state.is_empty() {
            status_flags &= !status::SESSION_STATE_CHANGED;
        } else {
            status_flags |= status::SESSION_STATE_CHANGED;
        }
        if caps & capabilities::PROTOCOL_41 != 0 {
            wire::put_u16(&mut out, status_flags);
            wire::put_u16(&mut out, self.warnings);
        } else if caps & capabilities::TRANSACTIONS != 0 {
            wire::put_u16(&mut out, status_flags);
        }
        if caps & capabilities::SESSION_TRACK != 0 {
            if !self.info.is_empty() || !self.session_state.is_empty() {
                wire::put_lenenc_bytes(&mut out, &self.info);
            }
            if !self.session_state.is_empty() {
                wire::put_lenenc_bytes(&mut out, &self.session_state);
            }
        } else {
            out.extend_from_slice(&self.info);
        }
        out
    }
}

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    /// Five-character SQLSTATE.
    pub sqlstate: [u8; 5],
    pub message: String,
}

impl ErrPacket {
    /// An ERR for `code` with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut sqlstate = [b'H', b'Y', b'0', b'0', b'0'];
        if code.sqlstate.len() == 5 {
            sqlstate.copy_from_slice(code.sqlstate.as_bytes());
        }
        Self {
            code: code.code,
            sqlstate,
            message: message.into(),
        }
    }

    pub fn sqlstate_str(&self) -> &str {
        std::str::from_utf8(&self.sqlstate).unwrap_or("HY000")
    }

    /// Decodes an ERR packet. A MariaDB progress report (code `0xffff`) is reported as
    /// an error with that code; callers that enable progress reporting handle it.
    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        if r.u8("ERR header")? != ERR_HEADER {
            return Err(DecodeError::Invalid("not an ERR packet"));
        }
        let code = r.u16("error code")?;
        let mut sqlstate = *b"HY000";
        if r.peek_u8() == Some(b'#') {
            r.skip(1, "sqlstate marker")?;
            sqlstate.copy_from_slice(r.take(5, "sqlstate")?);
        }
        let message = String::from_utf8_lossy(r.take_rest()).into_owned();
        Ok(Self {
            code,
            sqlstate,
            message,
        })
    }

    /// Encodes with the `#SQLSTATE` marker (every 4.1+ client expects it once the
    /// handshake has negotiated `CLIENT_PROTOCOL_41`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.message.len());
        out.push(ERR_HEADER);
        wire::put_u16(&mut out, self.code);
        out.push(b'#');
        out.extend_from_slice(&self.sqlstate);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// Encodes without the SQLSTATE marker, as mysqld does for an error sent in place
    /// of the greeting, before it knows what the client speaks.
    pub fn encode_pre_handshake(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.message.len());
        out.push(ERR_HEADER);
        wire::put_u16(&mut out, self.code);
        out.extend_from_slice(self.message.as_bytes());
        out
    }
}

impl std::fmt::Display for ErrPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            self.sqlstate_str(),
            self.message
        )
    }
}

/// A classic EOF packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EofPacket {
    pub warnings: u16,
    pub status: u16,
}

impl EofPacket {
    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        if r.u8("EOF header")? != EOF_HEADER {
            return Err(DecodeError::Invalid("not an EOF packet"));
        }
        if r.is_empty() {
            // Pre-4.1 EOF: header only.
            return Ok(Self::default());
        }
        Ok(Self {
            warnings: r.u16("warnings")?,
            status: r.u16("status flags")?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5);
        out.push(EOF_HEADER);
        wire::put_u16(&mut out, self.warnings);
        wire::put_u16(&mut out, self.status);
        out
    }
}

/// Whether a payload is an EOF packet rather than a row or an OK that happens to begin
/// with `0xfe`: EOF/OK-as-EOF payloads are shorter than 16 MiB - 1 (a row starting with
/// `0xfe` is a length-encoded string of at least 2^24 bytes).
pub fn is_eof_payload(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER) && payload.len() < super::packet::MAX_PAYLOAD_LEN
}

/// Reads the status flags from an OK or EOF payload, whichever it is. Returns `None`
/// for anything else.
pub fn terminator_status(payload: &[u8], caps: u32) -> Option<u16> {
    match *payload.first()? {
        OK_HEADER => OkPacket::decode(payload, caps).ok().map(|ok| ok.status),
        EOF_HEADER if caps & capabilities::DEPRECATE_EOF != 0 && payload.len() > 5 => {
            OkPacket::decode(payload, caps).ok().map(|ok| ok.status)
        }
        EOF_HEADER => EofPacket::decode(payload).ok().map(|eof| eof.status),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error_codes;

    const CAPS: u32 = capabilities::PROTOCOL_41 | capabilities::TRANSACTIONS;

    #[test]
    fn ok_round_trips_with_and_without_session_track() {
        let ok = OkPacket {
            affected_rows: 300,
            last_insert_id: 7,
            status: status::AUTOCOMMIT,
            warnings: 2,
            info: b"Rows matched: 1".to_vec(),
            session_state: Vec::new(),
        };
        for caps in [CAPS, CAPS | capabilities::SESSION_TRACK] {
            assert_eq!(OkPacket::decode(&ok.encode(caps), caps), Ok(ok.clone()));
        }
        let tracked = OkPacket {
            session_state: vec![0, 5, 4, b'a', b'b', b'c', b'd'],
            status: status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
            ..ok
        };
        let caps = CAPS | capabilities::SESSION_TRACK;
        assert_eq!(OkPacket::decode(&tracked.encode(caps), caps), Ok(tracked));
    }

    #[test]
    fn err_round_trips_and_formats_like_the_cli() {
        let e = ErrPacket::new(
            error_codes::ER_ACCESS_DENIED_ERROR,
            "Access denied for user 'x'@'localhost' (using password: YES)",
        );
        let back = ErrPacket::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert!(back
            .to_string()
            .starts_with("ERROR 1045 (28000): Access denied"));
    }

    #[test]
    fn terminator_status_reads_eof_and_ok_as_eof() {
        let eof = EofPacket {
            warnings: 0,
            status: status::MORE_RESULTS_EXISTS,
        };
        assert_eq!(
            terminator_status(&eof.encode(), CAPS),
            Some(status::MORE_RESULTS_EXISTS)
        );
        let caps = CAPS | capabilities::DEPRECATE_EOF;
        let ok = OkPacket {
            status: status::AUTOCOMMIT,
            ..Default::default()
        };
        assert_eq!(
            terminator_status(&ok.encode_as_eof(caps), caps),
            Some(status::AUTOCOMMIT)
        );
        assert_eq!(terminator_status(&[1, 2, 3], caps), None);
    }
}
