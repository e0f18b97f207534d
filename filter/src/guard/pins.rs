//! When a multiplexed session must keep its backend connection. The db role lends a
//! backend connection to a session for one statement at a time; the session keeps it
//! while any reason below holds, and gives it back as soon as none does.
//!
//! The rule list (also in docs/db-role.md):
//! - an open transaction (mysqld's `SERVER_STATUS_IN_TRANS` flag, which also covers
//!   `autocommit=0`), and XA transactions from XA START to XA COMMIT/ROLLBACK;
//! - `SET TRANSACTION` without a scope, until the transaction it applies to ends;
//! - LOCK TABLES and FLUSH TABLES WITH READ LOCK, until UNLOCK TABLES;
//! - for the rest of the session: named locks (GET_LOCK), temporary tables, user
//!   variables the session assigned, SQL-level PREPARE, HANDLER .. OPEN, and SET forms
//!   the tracker cannot replay;
//! - prepared statements (COM_STMT_PREPARE) until each is closed;
//! - for the next statement only: after SQL_CALC_FOUND_ROWS (for FOUND_ROWS()), and
//!   after a statement that left warnings (for SHOW WARNINGS).
//!
//! Not reasons: SET of session variables (replayed), the default database (re-selected),
//! LAST_INSERT_ID(), ROW_COUNT(), FOUND_ROWS() and CONNECTION_ID() (answered from values
//! the session tracked).

use super::statement::{Kind, Statement};
use super::vars::SetEffect;
use crate::protocol::constants::status;

/// Why a session holds its backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinReason {
    Transaction,
    XaTransaction,
    NextTransaction,
    LockedTables,
    NamedLock,
    TemporaryTable,
    UserVariable,
    SqlPrepare,
    Handler,
    UntrackedSet,
    PreparedStatement,
    /// For the next statement only (FOUND_ROWS(), SHOW WARNINGS).
    NextStatement,
}

impl PinReason {
    /// The name used in metrics and `/debug` pages.
    pub fn name(self) -> &'static str {
        match self {
            PinReason::Transaction => "transaction",
            PinReason::XaTransaction => "xa",
            PinReason::NextTransaction => "set_transaction",
            PinReason::LockedTables => "lock_tables",
            PinReason::NamedLock => "get_lock",
            PinReason::TemporaryTable => "temporary_table",
            PinReason::UserVariable => "user_variable",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::Handler => "handler",
            PinReason::UntrackedSet => "untracked_set",
            PinReason::PreparedStatement => "prepared_statement",
            PinReason::NextStatement => "next_statement",
        }
    }

    /// Whether the reason lasts until the session ends (the connection is then reset
    /// before anyone else uses it).
    pub fn sticky(self) -> bool {
        matches!(
            self,
            PinReason::NamedLock
                | PinReason::TemporaryTable
                | PinReason::UserVariable
                | PinReason::SqlPrepare
                | PinReason::Handler
                | PinReason::UntrackedSet
        )
    }
}

/// How a statement ended, as read from its response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Status flags of the final OK/EOF.
    pub status: u16,
    pub warnings: u16,
    /// The statement failed (ERR).
    pub failed: bool,
}

/// The pin state of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    in_transaction: bool,
    xa: bool,
    next_transaction: bool,
    /// Whether the transaction that `SET TRANSACTION` applies to has started.
    next_transaction_started: bool,
    locked_tables: bool,
    sticky: Option<PinReason>,
    prepared: u32,
    next_statement: bool,
}

impl Pins {
    /// The first reason the session must keep its connection, if any.
    pub fn reason(&self) -> Option<PinReason> {
        if let Some(r) = self.sticky {
            return Some(r);
        }
        if self.in_transaction {
            return Some(PinReason::Transaction);
        }
        if self.xa {
            return Some(PinReason::XaTransaction);
        }
        if self.locked_tables {
            return Some(PinReason::LockedTables);
        }
        if self.next_transaction {
            return Some(PinReason::NextTransaction);
        }
        if self.prepared > 0 {
            return Some(PinReason::PreparedStatement);
        }
        if self.next_statement {
            return Some(PinReason::NextStatement);
        }
        None
    }

    /// Whether an XA transaction is open (started and not yet committed or rolled back;
    /// it may be prepared).
    pub fn in_xa(&self) -> bool {
        self.xa
    }

    /// Whether a transaction is open (as of the last response).
    pub fn in_transaction(&self) -> bool {
        self.in_transaction || self.xa
    }

    /// Updates the state after a COM_QUERY statement finished. `set` is the SET analysis
    /// for SET statements.
    pub fn after_query(&mut self, st: &Statement, set: Option<&SetEffect>, outcome: Outcome) {
        self.after_command(outcome);
        if outcome.failed {
            return;
        }
        let e = &st.effects;
        let sticky = if e.named_lock {
            Some(PinReason::NamedLock)
        } else if e.temporary_table {
            Some(PinReason::TemporaryTable)
        } else if e.sets_user_variable {
            Some(PinReason::UserVariable)
        } else if st.kind == Kind::Prepare {
            Some(PinReason::SqlPrepare)
        } else if e.handler_open {
            Some(PinReason::Handler)
        } else {
            match set {
                Some(SetEffect::UserVariable) => Some(PinReason::UserVariable),
                Some(SetEffect::Untracked) => Some(PinReason::UntrackedSet),
                _ => None,
            }
        };
        if self.sticky.is_none() {
            self.sticky = sticky;
        }
        if matches!(set, Some(SetEffect::NextTransaction)) {
            self.next_transaction = true;
            self.next_transaction_started = false;
        }
        if e.xa_open {
            self.xa = true;
        }
        if e.xa_close {
            self.xa = false;
        }
        match st.kind {
            Kind::LockTables => self.locked_tables = true,
            Kind::UnlockTables => self.locked_tables = false,
            _ if e.global_read_lock => self.locked_tables = true,
            _ => {}
        }
        self.next_statement = e.calc_found_rows || outcome.warnings > 0;
    }

    /// After any command: follows the transaction flag mysqld reported, and ends the
    /// next-statement hold (a statement that needs one sets it again).
    pub fn after_command(&mut self, outcome: Outcome) {
        let was_in_transaction = self.in_transaction;
        self.in_transaction = outcome.status & status::IN_TRANS != 0;
        self.next_statement = false;
        if self.next_transaction {
            if self.in_transaction {
                self.next_transaction_started = true;
            } else if self.next_transaction_started || was_in_transaction {
                self.next_transaction = false;
                self.next_transaction_started = false;
            }
        }
    }

    /// After a successful COM_STMT_PREPARE.
    pub fn prepared(&mut self) {
        self.prepared = self.prepared.saturating_add(1);
    }

    /// After COM_STMT_CLOSE of a statement this session prepared.
    pub fn closed(&mut self) {
        self.prepared = self.prepared.saturating_sub(1);
    }

    /// Makes the session pin for the rest of its life (a SET the tracker could not keep).
    pub fn pin_for_session(&mut self, reason: PinReason) {
        self.sticky.get_or_insert(reason);
    }

    /// The next-statement pin lapses (the session stayed idle).
    pub fn drop_next_statement(&mut self) {
        self.next_statement = false;
    }

    /// After COM_RESET_CONNECTION or COM_CHANGE_USER: a fresh session.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}
