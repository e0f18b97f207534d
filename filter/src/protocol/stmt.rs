//! Prepared statements.
