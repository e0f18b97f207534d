//! Why a statement cannot be planned, as the MySQL error the client receives.

use crate::protocol::error_codes::{self, ErrorCode};
use crate::protocol::ErrPacket;

/// A statement the planner refuses. Every variant maps to one MySQL error code; the
/// texts follow MySQL's where MySQL has one and name the construct otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A query shape Shardcar cannot run correctly across shards (1235). Never a wrong
    /// result: the statement is refused instead.
    #[error("This version of Shardcar doesn't yet support '{0}'")]
    Unsupported(String),
    /// The statement does not parse (1064).
    #[error("You have an error in your SQL syntax; {0}")]
    Syntax(String),
    /// A table no keyspace serves (1146).
    #[error("Table '{0}' doesn't exist")]
    NoSuchTable(String),
    /// `USE x` or a `x.table` qualifier naming no keyspace (1049).
    #[error("Unknown database '{0}'")]
    UnknownKeyspace(String),
    /// A statement needing a keyspace when none is selected and none can be inferred (1046).
    #[error("No database selected")]
    NoDatabase,
    /// A vindex could not map a value (1105).
    #[error("{0}")]
    Vindex(String),
}

impl PlanError {
    /// A 1235 refusal naming the construct.
    pub fn unsupported(what: impl Into<String>) -> Self {
        PlanError::Unsupported(what.into())
    }

    /// The MySQL error code of this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            PlanError::Unsupported(_) => error_codes::ER_NOT_SUPPORTED_YET,
            PlanError::Syntax(_) => error_codes::ER_PARSE_ERROR,
            PlanError::NoSuchTable(_) => error_codes::ER_NO_SUCH_TABLE,
            PlanError::UnknownKeyspace(_) => error_codes::ER_BAD_DB_ERROR,
            PlanError::NoDatabase => error_codes::ER_NO_DB_ERROR,
            PlanError::Vindex(_) => error_codes::ER_UNKNOWN_ERROR,
        }
    }

    /// The ERR packet a client receives for this refusal.
    pub fn to_err_packet(&self) -> ErrPacket {
        ErrPacket::new(self.code(), self.to_string())
    }
}
