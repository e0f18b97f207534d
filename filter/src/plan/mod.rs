//! The planner: from a statement's text and the session's context to a [`Plan`] that says
//! which shards run what and how the sidecar combines their answers. Pure: no I/O, no
//! clock; the sidecar executes plans.
//!
//! Statements that a sharded deployment cannot answer exactly as one MySQL would are
//! refused with [`PlanError::Unsupported`] (ERR 1235) naming the construct, never answered
//! wrongly.

pub mod cache;
pub mod decimal;
mod dml;
mod error;
mod in_list;
mod lookup;
pub mod materialize;
pub mod merge;
pub mod params;
mod route;
pub mod schema;
mod select;
mod session;
mod vindex_func;

use sqlparser::ast::Statement;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserOptions};

pub use dml::{InsertPlan, SequenceNeed};
pub use error::PlanError;
pub use lookup::{LookupInsert, LookupStep, LookupWrites, OwnerRows, Takeover};
pub use materialize::Materialize;
pub use merge::{MergeSpec, Merger};
pub use schema::{KeyspaceRouting, RoutingSchema, SchemaError};
pub use session::{Transaction, UseTarget};

use crate::vindex::Value;

/// What the planner needs to know about the session.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanContext<'a> {
    /// The keyspace of `USE ks` (or the database named at login).
    pub default_keyspace: Option<&'a str>,
}

/// Statements sent to shards of one keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub keyspace: String,
    /// Indices into the keyspace's shard list, ascending.
    pub shards: Vec<usize>,
    /// The statement every shard runs; `None` means the client's text unchanged.
    pub query: Option<String>,
    /// How to combine several shards' result sets; `None` concatenates them (and sums the
    /// OK packets of DML).
    pub merge: Option<MergeSpec>,
    /// The statement writes.
    pub write: bool,
    /// Every shard holds the same rows (a reference table): one shard's OK is the answer.
    pub replicated: bool,
    /// Read a lookup table first and run only on the shards it names.
    pub lookup: Option<Box<LookupStep>>,
    /// An UPDATE or DELETE of an owner table: read its rows first, to keep their lookup
    /// rows.
    pub owner_rows: Option<Box<OwnerRows>>,
    /// Statements for particular shards (by index) in place of `query`: an IN-list on the
    /// primary vindex column cut down to the values each shard holds.
    pub shard_queries: Vec<(usize, String)>,
}

impl Route {
    /// The client's statement, unchanged, on `shards`.
    pub fn pass(keyspace: &str, shards: Vec<usize>) -> Route {
        Route {
            keyspace: keyspace.to_string(),
            shards,
            query: None,
            merge: None,
            write: false,
            replicated: false,
            lookup: None,
            owner_rows: None,
            shard_queries: Vec::new(),
        }
    }

    /// This route, marked as writing a table every shard holds a copy of.
    pub fn replicated(self) -> Route {
        Route {
            replicated: true,
            ..self
        }
    }

    /// Runs on exactly one shard with the client's text: the response can be relayed raw.
    pub fn is_passthrough(&self) -> bool {
        self.shards.len() == 1
            && self.query.is_none()
            && self.merge.is_none()
            && self.lookup.is_none()
            && self.owner_rows.is_none()
            && self.shard_queries.is_empty()
    }

    /// Keeps only the shards in `found` (what a [`LookupStep`] read). When it found none,
    /// the first shard still runs the statement: its WHERE clause matches no row there,
    /// and the client gets the empty answer, with its columns, that one MySQL gives.
    pub fn narrow(&mut self, found: &std::collections::BTreeSet<usize>) {
        let first = self.shards.first().copied();
        self.shards.retain(|s| found.contains(s));
        if self.shards.is_empty() {
            self.shards.extend(first);
        }
        self.lookup = None;
    }
}

/// What to do with one statement.
// A plan lives for one statement; boxing the common `Route` would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Route(Route),
    /// Per-shard INSERT statements, possibly waiting for sequence values first.
    Insert(Box<InsertPlan>),
    Transaction(Transaction),
    /// A SET statement: replayed on every shard connection the session uses.
    Set {
        /// `SET autocommit = ...` seen in the statement.
        autocommit: Option<bool>,
    },
    /// `SET transaction_mode = '...'`: how the session's transactions commit across
    /// shards, kept by the sidecar (the mode as written, lower-cased).
    TransactionMode(String),
    Use(UseTarget),
    /// `SHOW DATABASES`: the keyspaces.
    ShowDatabases,
    /// Run one part of the statement first and plan the rest with its rows.
    Materialize(Materialize),
    /// A result the sidecar computes itself (vindex functions).
    Answer {
        columns: Vec<crate::protocol::column::ColumnDefinition>,
        rows: Vec<merge::Row>,
    },
    /// `SELECT LAST_INSERT_ID()`, `SELECT DATABASE()` or `SELECT @@transaction_mode`:
    /// answered from the session.
    SessionValue {
        function: SessionFunction,
        /// The column name, as the client wrote the expression or its alias.
        column: String,
    },
    /// DDL and other statements that every shard of a keyspace must run.
    AllShards {
        keyspace: String,
    },
}

/// Session values the sidecar knows better than any one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFunction {
    LastInsertId,
    Database,
    /// `@@transaction_mode`, the session's multi-shard transaction mode (Vitess's).
    TransactionMode,
}

/// `SELECT LAST_INSERT_ID()` / `SELECT DATABASE()` (or `SCHEMA()`) /
/// `SELECT @@transaction_mode`, alone.
fn session_function(statement: &Statement) -> Option<Plan> {
    use sqlparser::ast::{FunctionArguments, SelectItem, SetExpr};
    let Statement::Query(q) = statement else {
        return None;
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if !s.from.is_empty()
        || s.selection.is_some()
        || q.order_by.is_some()
        || q.limit_clause.is_some()
    {
        return None;
    }
    let [item] = s.projection.as_slice() else {
        return None;
    };
    let (expr, alias) = match item {
        SelectItem::UnnamedExpr(e) => (e, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
        _ => return None,
    };
    let f = match expr {
        sqlparser::ast::Expr::Function(f) => f,
        variable @ (sqlparser::ast::Expr::Identifier(_)
        | sqlparser::ast::Expr::CompoundIdentifier(_)) => {
            let name = variable.to_string().to_ascii_lowercase();
            return matches!(
                name.as_str(),
                "@@transaction_mode" | "@@session.transaction_mode"
            )
            .then(|| Plan::SessionValue {
                function: SessionFunction::TransactionMode,
                column: alias.unwrap_or_else(|| variable.to_string()),
            });
        }
        _ => return None,
    };
    let empty = match &f.args {
        FunctionArguments::List(l) => l.args.is_empty(),
        FunctionArguments::None => true,
        FunctionArguments::Subquery(_) => false,
    };
    let name = f.name.to_string().to_ascii_lowercase();
    let function = match name.as_str() {
        "last_insert_id" if empty => SessionFunction::LastInsertId,
        "database" | "schema" if empty => SessionFunction::Database,
        _ => return None,
    };
    Some(Plan::SessionValue {
        function,
        column: alias.unwrap_or_else(|| expr.to_string()),
    })
}

/// Plans `sql` against `schema`.
pub fn plan(schema: &RoutingSchema, sql: &str, ctx: &PlanContext<'_>) -> Result<Plan, PlanError> {
    plan_with_params(schema, sql, ctx, &[])
}

/// Plans `sql` whose `?` placeholders stand for `params` (a prepared statement's values).
pub fn plan_with_params(
    schema: &RoutingSchema,
    sql: &str,
    ctx: &PlanContext<'_>,
    params: &[Value],
) -> Result<Plan, PlanError> {
    if let Some(plan) = session::classify(schema, sql, ctx)? {
        return Ok(plan);
    }
    let statement = parse(sql)?;
    let positions = placeholder_positions(&statement);
    let params_fn = |e: &sqlparser::ast::Expr| -> Option<Value> {
        let sqlparser::ast::Expr::Value(v) = e else {
            return None;
        };
        if !matches!(v.value, sqlparser::ast::Value::Placeholder(_)) {
            return None;
        }
        let at = (v.span.start.line, v.span.start.column);
        let i = positions.binary_search(&at).ok()?;
        params.get(i).cloned()
    };
    match &statement {
        Statement::Query(_) if session_function(&statement).is_some() => {
            session_function(&statement).ok_or(PlanError::NoDatabase)
        }
        Statement::Query(q) if vindex_func::plan(schema, q, ctx).is_some() => {
            vindex_func::plan(schema, q, ctx).unwrap_or(Err(PlanError::NoDatabase))
        }
        Statement::Query(q) => match select::plan_query(schema, &statement, q, ctx, &params_fn) {
            Err(PlanError::Unsupported(why)) if q.locks.is_empty() => {
                match materialize::fallback(schema, &statement, ctx)? {
                    Some(m) => Ok(Plan::Materialize(m)),
                    None => Err(PlanError::Unsupported(why)),
                }
            }
            other => other.map(|mut route| {
                in_list::split(schema, &statement, ctx, &mut route);
                Plan::Route(route)
            }),
        },
        Statement::Insert(insert) => dml::plan_insert(schema, insert, ctx, &params_fn),
        Statement::Update(_) | Statement::Delete(_) => {
            dml::plan_update_delete(schema, &statement, ctx, &params_fn).map(|mut route| {
                in_list::split(schema, &statement, ctx, &mut route);
                Plan::Route(route)
            })
        }
        Statement::Explain { .. } | Statement::ExplainTable { .. } => {
            let ks = route::default_keyspace(schema, ctx)?;
            Ok(Plan::Route(Route::pass(&ks.name, vec![0])))
        }
        _ => {
            let ks = route::default_keyspace(schema, ctx)?;
            if ks.sharded {
                Ok(Plan::AllShards {
                    keyspace: ks.name.clone(),
                })
            } else {
                Ok(Plan::Route(Route::pass(&ks.name, vec![0])))
            }
        }
    }
}

/// Parses exactly one statement with MySQL's rules; string literals keep their escapes
/// so that a statement re-written for the shards reads back byte for byte.
pub fn parse(sql: &str) -> Result<Statement, PlanError> {
    check_nesting(sql)?;
    let parse_text = |text: &str| {
        let options = ParserOptions::new().with_unescape(false);
        Parser::new(&MySqlDialect {})
            .with_options(options)
            .try_with_sql(text)
            .and_then(|mut p| p.parse_statements())
    };
    let mut statements = match parse_text(sql) {
        Ok(statements) => statements,
        // sqlparser does not read the `a MOD b` operator; `a % b` means the same.
        Err(e) => mod_as_percent(sql)
            .and_then(|text| parse_text(&text).ok())
            .ok_or_else(|| PlanError::Syntax(syntax_message(sql, &e.to_string())))?,
    };
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(PlanError::Syntax("Query was empty".into())),
        _ => Err(PlanError::unsupported("several statements in one query")),
    }
}

/// `sql` with every `MOD` word that is not a `MOD(...)` call written as `%` (MySQL gives
/// both the same precedence and meaning), or `None` when there is none. Only tried when
/// the statement does not parse as it is, so a column named `mod` is never touched.
fn mod_as_percent(sql: &str) -> Option<String> {
    use crate::sql::lexer::{Lexer, Token};
    let mut lexer = Lexer::new(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    while let Some(token) = lexer.next() {
        let Token::Word(word) = token else {
            continue;
        };
        let call = matches!(lexer.clone().next(), Some(Token::Other("(")));
        if !word.eq_ignore_ascii_case("MOD") || call {
            continue;
        }
        // The lexer stands right after the word.
        let start = lexer.position() - word.len();
        out.push_str(&sql[copied..start]);
        out.push('%');
        copied = start + word.len();
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// Set operations and parentheses nest the parser's recursion (and the AST's drop): a
/// statement deeper than this is refused before parsing, so no input can exhaust the stack.
const MAX_NESTING: usize = 64;

fn check_nesting(sql: &str) -> Result<(), PlanError> {
    use crate::sql::lexer::{Lexer, Token};
    let (mut depth, mut max_depth, mut set_ops) = (0usize, 0usize, 0usize);
    for t in Lexer::new(sql) {
        match t {
            Token::Other("(") => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            Token::Other(")") => depth = depth.saturating_sub(1),
            Token::Word(w)
                if w.eq_ignore_ascii_case("UNION")
                    || w.eq_ignore_ascii_case("INTERSECT")
                    || w.eq_ignore_ascii_case("EXCEPT") =>
            {
                set_ops += 1
            }
            _ => {}
        }
    }
    if max_depth > MAX_NESTING || set_ops > MAX_NESTING {
        return Err(PlanError::unsupported(format!(
            "statements nested more than {MAX_NESTING} levels deep (parentheses or UNION)"
        )));
    }
    Ok(())
}

fn syntax_message(sql: &str, parser: &str) -> String {
    let near: String = sql.chars().take(60).collect();
    format!("check the manual that corresponds to your MariaDB server version for the right syntax to use near '{near}' ({parser})")
}

/// Where each `?` starts, in text order: the n-th is parameter n.
pub(crate) fn placeholder_positions(statement: &Statement) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let _ = sqlparser::ast::visit_expressions(statement, |e| {
        if let sqlparser::ast::Expr::Value(v) = e {
            if matches!(v.value, sqlparser::ast::Value::Placeholder(_)) {
                out.push((v.span.start.line, v.span.start.column));
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out.sort_unstable();
    out
}

#[cfg(test)]
pub(crate) mod tests;
