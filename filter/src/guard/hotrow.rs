//! Hot-row keys: the row a write (or a locking read) is about, as the table and its WHERE
//! clause with literals kept, so that the db role can queue transactions that would
//! otherwise wait on one InnoDB row lock (or deadlock on it) and run them one at a time.
//! Like Vitess's transaction serializer, two statements share a key only when they name
//! the table and write the WHERE clause the same way.

use super::statement::{Kind, Statement};
use crate::sql::lexer::{Lexer, Token};

/// Longest key kept; a longer WHERE clause is not a single-row predicate worth queueing.
pub const MAX_KEY_BYTES: usize = 512;

/// The hot-row key of a single-table UPDATE or DELETE, or of a SELECT ... FOR UPDATE /
/// LOCK IN SHARE MODE, with a top-level WHERE and no subquery in it.
pub fn row_key(text: &str, st: &Statement) -> Option<String> {
    let eligible = match st.kind {
        Kind::Update | Kind::Delete => true,
        Kind::Select => st.effects.locking_read,
        _ => false,
    };
    if !eligible || !st.has_where || st.tables.len() != 1 || st.effects.multi {
        return None;
    }
    let mut key = String::with_capacity(64);
    key.push_str(&st.tables[0]);
    key.push(':');
    let mut depth = 0u32;
    let mut in_where = false;
    let mut prev_open = false;
    for token in Lexer::new(text) {
        let piece = match token {
            Token::Comment(_) => continue,
            Token::Other(o) => o,
            Token::Word(w) | Token::String(w) | Token::Number(w) | Token::Variable(w) => w,
            Token::Quoted(q) => q,
            Token::Placeholder => "?",
        };
        if prev_open && piece.eq_ignore_ascii_case("SELECT") && in_where {
            return None;
        }
        prev_open = piece == "(";
        match piece {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && matches!(token, Token::Word(_)) {
            let upper = piece.to_ascii_uppercase();
            if upper == "WHERE" && !in_where {
                in_where = true;
                continue;
            }
            if in_where && matches!(upper.as_str(), "ORDER" | "LIMIT" | "FOR" | "LOCK" | "GROUP") {
                break;
            }
        }
        if in_where {
            if piece == ";" && depth == 0 {
                break;
            }
            key.push(' ');
            if matches!(token, Token::Word(_)) {
                key.push_str(&piece.to_ascii_lowercase());
            } else {
                key.push_str(piece);
            }
            if key.len() > MAX_KEY_BYTES {
                return None;
            }
        }
    }
    in_where.then_some(key)
}
