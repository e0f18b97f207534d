//! What a relayed response said ([`Response`]) and the protection a relay applies to it
//! ([`RelayGuard`]: deadline, row and byte limits, and the errors they produce).

use crate::config::RowLimitMode;
use shardcar_filter::guard::refusal;
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::exchange::{OkSummary, PreparedInfo, ResponseScanner};
use shardcar_filter::protocol::ErrPacket;
use std::time::Instant;

/// Limits applied while relaying one response; the default applies none.
#[derive(Debug, Clone, Default)]
pub struct RelayGuard {
    /// When the statement is killed (KILL QUERY) and the client gets ERR 3024.
    pub deadline: Option<Instant>,
    /// The timeout the deadline came from, for the error text.
    pub timeout_ms: u64,
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
    pub mode: RowLimitMode,
    /// Hold back a response that says the primary is going away, instead of relaying
    /// it, so the statement can go to the next primary (sharded, outside transactions).
    pub failover: Option<FailoverRetry>,
}

/// Which failures of a primary a statement may be sent again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverRetry {
    /// A write: only errors saying it did not run (read-only, mysqld unreachable).
    NotExecuted,
    /// A read: also a connection that broke while it ran.
    Any,
}

impl FailoverRetry {
    /// Whether an ERR with `code` as the whole response may be retried.
    pub fn allows(self, code: u16) -> bool {
        super::endpoints::not_executed(code)
            || (self == FailoverRetry::Any && super::endpoints::connection_broke(code))
    }

    /// Whether a connection closed before any response may be retried.
    pub fn allows_lost(self) -> bool {
        self == FailoverRetry::Any
    }
}

/// What the first packet of a response in `buf` is, as far as failover cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPacket {
    /// Not all of it is here yet.
    Incomplete,
    Err(u16),
    Other,
}

impl FirstPacket {
    pub fn of(buf: &[u8]) -> FirstPacket {
        let Some(&marker) = buf.get(4) else {
            return FirstPacket::Incomplete;
        };
        if marker != 0xFF {
            return FirstPacket::Other;
        }
        let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
        match buf.get(5..7) {
            Some(code) if buf.len() >= 4 + len => {
                FirstPacket::Err(u16::from_le_bytes([code[0], code[1]]))
            }
            _ => FirstPacket::Incomplete,
        }
    }
}

impl RelayGuard {
    /// The error sent in place of mysqld's "interrupted" after a timeout kill (MySQL's
    /// own error for MAX_EXECUTION_TIME).
    pub fn timeout_error(&self) -> ErrPacket {
        ErrPacket::new(
            error_codes::ER_QUERY_TIMEOUT,
            format!(
                "Query execution was interrupted, maximum statement execution time exceeded ({} ms)",
                self.timeout_ms
            ),
        )
    }

    /// The error for a result over its limit, after `rows` rows.
    pub fn limit_error(&self, rows: u64) -> ErrPacket {
        match self.max_rows {
            Some(max) if rows >= max => refusal::row_limit(
                max,
                "db.limits.max_rows",
                "add a LIMIT or use SET workload = 'olap'",
            ),
            _ => ErrPacket::new(
                error_codes::ER_TOO_BIG_SELECT,
                format!(
                    "Result size exceeded {} bytes (db.limits.max_result_bytes)",
                    self.max_bytes.unwrap_or(0)
                ),
            ),
        }
    }
}

/// The facts of one relayed response the session needs afterwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub warnings: u16,
    pub error_code: Option<u16>,
    pub ok: Option<OkSummary>,
    pub prepared: Option<PreparedInfo>,
    pub rows: u64,
    /// The statement ran past its deadline and was killed.
    pub killed: bool,
    /// The result went over a limit and the client got an error.
    pub limited: bool,
    /// Whether the response had result-set rows (as opposed to an OK).
    pub result_set: bool,
    /// Nothing reached the client: the primary is going away and the statement may be
    /// sent to the next one ([`RelayGuard::failover`]).
    pub failover: bool,
}

impl Response {
    pub fn of(scanner: &ResponseScanner, killed: bool, limited: bool) -> Self {
        Response {
            status: scanner.status(),
            warnings: scanner.warnings(),
            error_code: if limited {
                Some(error_codes::ER_TOO_BIG_SELECT.code)
            } else {
                scanner.error_code()
            },
            ok: scanner.ok(),
            prepared: scanner.prepared(),
            rows: scanner.rows(),
            killed,
            limited,
            result_set: scanner.ok().is_none(),
            failover: false,
        }
    }

    /// The sidecar answered with an error itself (nothing reached mysqld).
    pub fn refused(code: u16) -> Self {
        Response {
            error_code: Some(code),
            ..Default::default()
        }
    }

    /// The primary failed the statement before anything reached the client.
    pub fn failover() -> Self {
        Response {
            failover: true,
            ..Default::default()
        }
    }

    pub fn failed(&self) -> bool {
        self.error_code.is_some()
    }
}
