//! Decisions of the db role (the connection-protection sidecar beside mysqld), without
//! I/O: what a statement is and which session state it touches (`statement`), which
//! SET assignments a session carries (`vars`), when a session must keep its backend
//! connection (`pins`), the query rules (`rules`), hot-row keys (`hotrow`), the
//! adaptive concurrency limit (`limiter`) and the ERR packets refusals send (`refusal`).

pub mod access;
pub mod hotrow;
pub mod kill;
pub mod limiter;
pub mod pins;
pub mod refusal;
pub mod rules;
pub mod statement;
pub mod vars;

#[cfg(test)]
mod tests;
