//! Refusals by rewriting: a network filter cannot answer the client itself (proxy-wasm
//! has no local response for TCP streams), so a refused command is replaced by a
//! `SIGNAL` statement that makes mysqld send exactly the ERR packet we mean. The
//! server's answer is then a normal response in the normal sequence, the connection and
//! any open transaction stay as they were, and the refused statement never reaches
//! mysqld.

use crate::protocol::packet::write_packet;
use crate::protocol::{Command, ErrPacket};
use std::fmt::Write as _;

/// Longest message carried (mysqld accepts longer, but a refusal needs no more).
const MAX_MESSAGE: usize = 512;

/// The COM_QUERY text that raises `err`. The message travels as a hex literal with a
/// utf8mb4 introducer, so no quoting or `NO_BACKSLASH_ESCAPES` mode can change it, and
/// mysqld converts it to the client's character set.
pub fn signal_text(err: &ErrPacket) -> String {
    let mut message = err.message.as_str();
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message = &message[..end];
    }
    let state: String = err
        .sqlstate_str()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    // SQLSTATE classes 00 (success) and 01 (warning) would not be an error.
    let state = if state.len() == 5 && !state.starts_with("00") && !state.starts_with("01") {
        state
    } else {
        "HY000".to_string()
    };
    let mut text = format!(
        "SIGNAL SQLSTATE '{state}' SET MYSQL_ERRNO = {}, MESSAGE_TEXT = ",
        err.code.max(1)
    );
    if message.is_empty() {
        text.push_str("''");
    } else {
        text.push_str("_utf8mb4 X'");
        for b in message.bytes() {
            let _ = write!(text, "{b:02x}");
        }
        text.push('\'');
    }
    text
}

/// The COM_QUERY packet, with sequence id `seq`, that raises `err`.
pub fn signal_packet(err: &ErrPacket, seq: u8) -> Vec<u8> {
    let text = signal_text(err);
    let mut payload = Vec::with_capacity(text.len() + 1);
    payload.push(Command::Query as u8);
    payload.extend_from_slice(text.as_bytes());
    let mut out = Vec::with_capacity(payload.len() + 4);
    let mut seq = seq;
    write_packet(&mut out, &mut seq, &payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error_codes;

    #[test]
    fn the_message_travels_as_hex() {
        let err = ErrPacket::new(error_codes::ER_TABLEACCESS_DENIED_ERROR, "no 'x' é");
        assert_eq!(
            signal_text(&err),
            "SIGNAL SQLSTATE '42000' SET MYSQL_ERRNO = 1142, MESSAGE_TEXT = _utf8mb4 X'6e6f2027782720c3a9'"
        );
        let long = ErrPacket::new(error_codes::ER_NOT_ALLOWED_COMMAND, "é".repeat(400));
        let text = signal_text(&long);
        assert!(text.len() < 100 + 2 * MAX_MESSAGE, "{}", text.len());
    }

    #[test]
    fn warning_states_become_errors() {
        let mut err = ErrPacket::new(error_codes::ER_NOT_ALLOWED_COMMAND, "");
        err.sqlstate = *b"01000";
        assert!(signal_text(&err).starts_with("SIGNAL SQLSTATE 'HY000'"));
        assert!(signal_text(&err).ends_with("MESSAGE_TEXT = ''"));
    }
}
