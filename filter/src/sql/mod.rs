//! SQL text helpers that work without a full parse: the lexer, statement classification by
//! leading keywords, and literal decoding shared by the planner.

pub mod lexer;
pub mod literal;
