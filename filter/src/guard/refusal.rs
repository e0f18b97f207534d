//! The ERR packets a policy refusal sends, shared by the db role and the wasm filter so
//! that a client sees the same code, SQLSTATE and text whichever of them refused.

use super::access::Denied;
use crate::protocol::error_codes;
use crate::protocol::ErrPacket;

/// A query rule with action `deny` matched (1148, as MySQL for a command it refuses).
pub fn rule_denied(rule: &str, message: &str) -> ErrPacket {
    ErrPacket::new(
        error_codes::ER_NOT_ALLOWED_COMMAND,
        format!("{message} (denied by query rule '{rule}')"),
    )
}

/// A `rate_limit` rule ran out of tokens (1203, which drivers treat as retryable).
pub fn rate_limited(rule: &str) -> ErrPacket {
    ErrPacket::new(
        error_codes::ER_TOO_MANY_USER_CONNECTIONS,
        format!("Statement rate limit of query rule '{rule}' exceeded; retry later"),
    )
}

/// The access policy refused the statement: 1142 for a table, as mysqld's own
/// privilege check words it, or 1227 for DDL without `admin`.
pub fn access_denied(denied: &Denied, user: &str, host: &str) -> ErrPacket {
    match denied {
        Denied::Table { command, table } => {
            let name = table.rsplit('.').next().unwrap_or(table);
            ErrPacket::new(
                error_codes::ER_TABLEACCESS_DENIED_ERROR,
                format!(
                    "{command} command denied to user '{user}'@'{host}' for table '{name}' (Shardcar access policy)"
                ),
            )
        }
        Denied::Admin { what } => ErrPacket::new(
            error_codes::ER_SPECIFIC_ACCESS_DENIED_ERROR,
            format!(
                "Access denied; the Shardcar access policy grants no admin to user '{user}' for {what}"
            ),
        ),
    }
}

/// A result went over `max_rows` rows (1104, MySQL's error for SQL_BIG_SELECTS);
/// `field` names the setting and `hint` says how to get past it.
pub fn row_limit(max: u64, field: &str, hint: &str) -> ErrPacket {
    ErrPacket::new(
        error_codes::ER_TOO_BIG_SELECT,
        format!("Row count exceeded {max} ({field}); {hint}"),
    )
}
