//! Reading a `KILL` statement: which connection it names and whether it ends the
//! connection or only its running statement, so that the db role can apply it to its own
//! sessions (the ids clients see are the sidecar's, not mysqld's).

use crate::sql::lexer::{Lexer, Token};

/// What a `KILL` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillScope {
    /// `KILL QUERY n`: the running statement; the session carries on.
    Query,
    /// `KILL [CONNECTION] n`: the statement and the session.
    Connection,
}

/// A `KILL` statement the sidecar can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub id: u32,
    pub scope: KillScope,
}

/// Why a `KILL` statement cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    /// MariaDB's `KILL QUERY ID n` and `KILL USER name` forms.
    #[error("KILL {0}")]
    Unsupported(&'static str),
    /// Not `KILL [HARD|SOFT] [CONNECTION|QUERY] <number>`.
    #[error("malformed KILL statement")]
    Malformed,
}

/// Parses `KILL [HARD | SOFT] [CONNECTION | QUERY] <id>` (comments and a trailing `;`
/// allowed).
pub fn parse_kill(text: &str) -> Result<Kill, KillError> {
    let mut tokens = Lexer::new(text).filter(|t| !matches!(t, Token::Comment(_)));
    if !matches!(tokens.next(), Some(Token::Word(w)) if w.eq_ignore_ascii_case("kill")) {
        return Err(KillError::Malformed);
    }
    let mut scope = KillScope::Connection;
    let mut next = tokens.next();
    if let Some(Token::Word(w)) = next {
        if w.eq_ignore_ascii_case("hard") || w.eq_ignore_ascii_case("soft") {
            next = tokens.next();
        }
    }
    if let Some(Token::Word(w)) = next {
        if w.eq_ignore_ascii_case("query") {
            scope = KillScope::Query;
            next = tokens.next();
        } else if w.eq_ignore_ascii_case("connection") {
            next = tokens.next();
        }
    }
    let id = match next {
        Some(Token::Number(n)) => n.parse::<u32>().map_err(|_| KillError::Malformed)?,
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("id") => {
            return Err(KillError::Unsupported("QUERY ID"))
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("user") => {
            return Err(KillError::Unsupported("USER"))
        }
        _ => return Err(KillError::Malformed),
    };
    match tokens.next() {
        None => {}
        Some(Token::Other(";")) if tokens.next().is_none() => {}
        Some(_) => return Err(KillError::Malformed),
    }
    Ok(Kill { id, scope })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(id: u32, scope: KillScope) -> Result<Kill, KillError> {
        Ok(Kill { id, scope })
    }

    #[test]
    fn reads_the_mysql_and_mariadb_forms() {
        assert_eq!(parse_kill("KILL 12"), kill(12, KillScope::Connection));
        assert_eq!(
            parse_kill("kill connection 7;"),
            kill(7, KillScope::Connection)
        );
        assert_eq!(parse_kill("KILL QUERY 3"), kill(3, KillScope::Query));
        assert_eq!(
            parse_kill("/* x */ KILL HARD QUERY 9 -- done"),
            kill(9, KillScope::Query)
        );
        assert_eq!(parse_kill("KILL SOFT 4"), kill(4, KillScope::Connection));
    }

    #[test]
    fn refuses_what_it_cannot_apply() {
        assert_eq!(
            parse_kill("KILL QUERY ID 5"),
            Err(KillError::Unsupported("QUERY ID"))
        );
        assert_eq!(
            parse_kill("KILL USER app"),
            Err(KillError::Unsupported("USER"))
        );
        for bad in [
            "KILL",
            "KILL QUERY",
            "KILL 1 2",
            "KILL -1",
            "KILL 99999999999",
            "KILL CONNECTION_ID()",
            "SELECT 1",
        ] {
            assert_eq!(parse_kill(bad), Err(KillError::Malformed), "{bad}");
        }
    }
}
