//! A MySQL connection seen from the middle of its two byte streams, as a network filter
//! in Envoy sees it: bytes from the client and bytes from the server arrive in reads of
//! any size, and for each read the filter says what to hand on.
//!
//! [`ConnectionFilter`] follows the handshake (TLS connections pass through untouched
//! and are counted), then each command and its response. Commands that carry SQL
//! (COM_QUERY, COM_STMT_PREPARE) are held until complete and checked against the query
//! rules and the access policy (`crate::guard`), exactly as the db role checks them; a
//! refused one is replaced by a `SIGNAL` (see `signal`) so mysqld itself sends the
//! ERR. SELECTs get the row limit as ` LIMIT max_rows+1`, and a result that still has
//! more rows is cut in the response stream. Everything else is forwarded as it
//! arrives, and responses are only scanned (never copied) unless a limit cuts them.
//! Each finished statement is reported as an [`Event`] for metrics.

mod command;
mod connection;
mod out;
pub mod policy;
mod response;
mod signal;

#[cfg(test)]
mod tests;

pub use connection::{ConnectionFilter, Peer};
pub use out::Forward;
pub use signal::{signal_packet, signal_text};

/// Something a caller counts or logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client logged in (or changed user) as `user`.
    Login { user: String },
    /// The client asked for TLS: the rest of the connection is opaque.
    Tls,
    /// Bytes the filter could not read (TLS, or after a protocol error).
    Opaque { bytes: usize },
    /// A command finished.
    Statement(Statement),
    /// A command was refused; its ERR is on its way to the client.
    Refused { reason: Refusal, kind: &'static str },
    /// A `log` query rule matched.
    RuleLogged { rule: String },
    /// A `rewrite` query rule changed the statement.
    Rewritten,
    /// A result had more rows than the limit and was cut.
    RowLimited { rows: u64 },
    /// The stream broke the protocol; the filter stopped reading it and forwards it.
    ProtocolError { message: String },
}

/// One finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `query`, `prepare`, `execute`, `ping`, ... (the command).
    pub command: &'static str,
    /// `select`, `insert`, ... for SQL; the command otherwise.
    pub kind: &'static str,
    /// The first table the statement names.
    pub table: Option<String>,
    pub latency_ns: u64,
    /// The error code when the response was an ERR.
    pub error: Option<u16>,
    pub rows: u64,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Rule(String),
    RateLimit(String),
    Access,
    TooLarge,
}

impl Refusal {
    /// A metric label.
    pub fn label(&self) -> &str {
        match self {
            Refusal::Rule(r) | Refusal::RateLimit(r) => r,
            Refusal::Access => "access_policy",
            Refusal::TooLarge => "max_statement_bytes",
        }
    }
}
