//! Statements classified by their leading keywords, without a full parse: transaction
//! control, SET, USE, SHOW, DDL and the other statements that are not routed by vindex.

use super::error::PlanError;
use super::schema::RoutingSchema;
use super::{route, Plan, PlanContext, Route};
use crate::sql::lexer::{leading_words, Lexer, Token};

/// Transaction control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// `BEGIN`, `START TRANSACTION ...`: the text is sent to each shard as it joins.
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT x`, `ROLLBACK TO x`, `RELEASE SAVEPOINT x`: sent to every shard of the
    /// transaction.
    Savepoint,
}

/// `USE ks`, `USE ks:shard`, `USE ks@replica`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseTarget {
    pub keyspace: String,
    pub shard: Option<String>,
    pub tablet_type: Option<String>,
}

impl UseTarget {
    /// Parses the text after `USE`.
    pub fn parse(text: &str) -> Option<UseTarget> {
        let t = text.trim().trim_end_matches(';').trim();
        let t = t.replace('`', "");
        let t = t.as_str();
        if t.is_empty() {
            return None;
        }
        let (rest, tablet_type) = match t.rsplit_once('@') {
            Some((r, ty)) => (r, Some(ty.to_ascii_lowercase())),
            None => (t, None),
        };
        let (keyspace, shard) = match rest.split_once(':') {
            Some((k, s)) => (k, Some(s.to_string())),
            None => (rest, None),
        };
        Some(UseTarget {
            keyspace: keyspace.to_string(),
            shard,
            tablet_type,
        })
    }
}

/// A plan for statements the lexer recognises, or `None` for those needing a full parse.
pub(crate) fn classify(
    schema: &RoutingSchema,
    sql: &str,
    ctx: &PlanContext<'_>,
) -> Result<Option<Plan>, PlanError> {
    let words = leading_words(sql, 2);
    let first = words.first().map(String::as_str).unwrap_or("");
    let second = words.get(1).map(String::as_str).unwrap_or("");
    let plan = match first {
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "WITH" | "VALUES" | "TABLE" => {
            return Ok(None)
        }
        "" if sql.trim_start().starts_with('(') => return Ok(None),
        "" => {
            let ks = route::default_keyspace(schema, ctx)?;
            Plan::Route(Route::pass(&ks.name, vec![0]))
        }
        "BEGIN" => Plan::Transaction(Transaction::Begin),
        "START" if second == "TRANSACTION" => Plan::Transaction(Transaction::Begin),
        "COMMIT" => Plan::Transaction(Transaction::Commit),
        "ROLLBACK" if second == "TO" => Plan::Transaction(Transaction::Savepoint),
        "ROLLBACK" => Plan::Transaction(Transaction::Rollback),
        "SAVEPOINT" | "RELEASE" => Plan::Transaction(Transaction::Savepoint),
        "SET" => match transaction_mode_assignment(sql)? {
            Some(mode) => Plan::TransactionMode(mode),
            None => Plan::Set {
                autocommit: autocommit_assignment(sql),
            },
        },
        "USE" => {
            let rest = sql
                .trim_start()
                .get(3..)
                .ok_or_else(|| PlanError::Syntax("USE needs a database".into()))?;
            let target = UseTarget::parse(rest)
                .ok_or_else(|| PlanError::Syntax("USE needs a database".into()))?;
            if schema.keyspace(&target.keyspace).is_none() {
                return Err(PlanError::UnknownKeyspace(target.keyspace));
            }
            Plan::Use(target)
        }
        "SHOW" if second == "DATABASES" || second == "SCHEMAS" => Plan::ShowDatabases,
        "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "HELP" | "DO" => {
            let ks = route::default_keyspace(schema, ctx)?;
            Plan::Route(Route::pass(&ks.name, vec![0]))
        }
        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "RENAME" | "ANALYZE" | "OPTIMIZE" | "CHECK"
        | "REPAIR" => {
            let name = ctx.default_keyspace.ok_or(PlanError::NoDatabase)?;
            let ks = schema
                .keyspace(name)
                .ok_or_else(|| PlanError::UnknownKeyspace(name.to_string()))?;
            if ks.sharded {
                Plan::AllShards {
                    keyspace: ks.name.clone(),
                }
            } else {
                Plan::Route(Route::pass(&ks.name, vec![0]))
            }
        }
        other => {
            let ks = route::default_keyspace(schema, ctx)?;
            if ks.sharded {
                return Err(PlanError::unsupported(format!(
                    "{other} in a sharded keyspace"
                )));
            }
            Plan::Route(Route::pass(&ks.name, vec![0]))
        }
    };
    Ok(Some(plan))
}

/// The tokens of a statement without its comments.
fn tokens(sql: &str) -> Vec<Token<'_>> {
    Lexer::new(sql)
        .filter(|t| !matches!(t, Token::Comment(_)))
        .collect()
}

/// The position of the value assigned to the system variable `variable` (any of its
/// spellings: `x`, `@@x`, `@@session.x`, `SESSION x`) in a SET statement's tokens.
fn assigned_value(tokens: &[Token<'_>], variable: &str) -> Option<usize> {
    tokens.iter().enumerate().find_map(|(i, t)| {
        let name = match t {
            Token::Word(w) | Token::Variable(w) => w.to_ascii_lowercase(),
            _ => return None,
        };
        let bare = name
            .trim_start_matches('@')
            .trim_start_matches("session.")
            .trim_start_matches("local.");
        (bare == variable && matches!(tokens.get(i + 1), Some(Token::Other("=" | ":="))))
            .then_some(i + 2)
    })
}

/// `Some(on)` when a SET statement assigns `autocommit` (any of its spellings).
fn autocommit_assignment(sql: &str) -> Option<bool> {
    let tokens = tokens(sql);
    match tokens.get(assigned_value(&tokens, "autocommit")?)? {
        Token::Number(n) => Some(*n != "0"),
        Token::Word(w) => match w.to_ascii_lowercase().as_str() {
            "on" | "true" => Some(true),
            "off" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The mode a `SET transaction_mode = 'twopc'` asks for, lower-cased and unquoted (the
/// sidecar knows the modes). Vitess's session variable: it is the statement's only
/// assignment, since the shards know no such variable.
fn transaction_mode_assignment(sql: &str) -> Result<Option<String>, PlanError> {
    let tokens = tokens(sql);
    let Some(at) = assigned_value(&tokens, "transaction_mode") else {
        return Ok(None);
    };
    let rest = &tokens[at.min(tokens.len())..];
    let alone = rest.len() == 1 || (rest.len() == 2 && rest[1] == Token::Other(";"));
    if !alone || tokens.contains(&Token::Other(",")) {
        return Err(PlanError::unsupported(
            "SET transaction_mode together with other variables",
        ));
    }
    let mode = match rest[0] {
        Token::String(s) => s.get(1..s.len().saturating_sub(1)).unwrap_or_default(),
        Token::Word(w) => w,
        _ => "",
    };
    Ok(Some(mode.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_targets() {
        let t = UseTarget::parse(" `user`:-80@replica ;");
        assert_eq!(
            t,
            Some(UseTarget {
                keyspace: "user".into(),
                shard: Some("-80".into()),
                tablet_type: Some("replica".into())
            })
        );
        assert_eq!(UseTarget::parse("  ").map(|t| t.keyspace), None);
    }

    #[test]
    fn autocommit_spellings() {
        assert_eq!(autocommit_assignment("SET autocommit=0"), Some(false));
        assert_eq!(
            autocommit_assignment("set @@session.autocommit = ON"),
            Some(true)
        );
        assert_eq!(autocommit_assignment("SET names utf8mb4"), None);
    }
}
