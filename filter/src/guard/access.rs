//! The access policy: which client identities may read or write which tables. Once any
//! rule exists, everything not granted is denied. Identities are `user:<mysql user>` and
//! `cert:<certificate identity>` (the client certificate's URI SAN, e.g. a SPIFFE id, else
//! its DNS SAN, else its subject CN), with `*` globs. Tables are `table` (any schema) or
//! `schema.table`, with `*` globs.
//!
//! Statements are parsed (sqlparser) to find the tables they read and write: INSERT,
//! REPLACE, UPDATE and DELETE targets are writes, every other table they name is a read.
//! DDL and statements the parser cannot read need `admin`; statements that name no table
//! (SET, SHOW, BEGIN, ...) are allowed.

use super::rules::glob;
use super::statement::{Kind, Statement as Analysis};
use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    visit_relations, FromTable, ObjectName, Statement, TableFactor, TableObject, TableWithJoins,
};
use std::ops::ControlFlow;

/// One grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessRule {
    pub name: String,
    /// `user:<name>` or `cert:<identity>`, `*` globs.
    pub identities: Vec<String>,
    /// Tables the identities may read.
    pub read: Vec<String>,
    /// Tables the identities may write (and read).
    pub write: Vec<String>,
    /// DDL and statements the policy cannot analyse.
    pub admin: bool,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub user: &'a str,
    pub certificate: Option<&'a str>,
}

/// Why a statement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// `command` (SELECT, INSERT, ...) on `table`.
    Table {
        command: &'static str,
        table: String,
    },
    /// DDL or an unanalysable statement without `admin`.
    Admin { what: String },
}

/// The tables one statement reads and writes (`schema.table`, lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableAccess {
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    /// DDL, or a statement the parser could not read.
    pub needs_admin: Option<String>,
}

/// Finds what `text` touches; unqualified tables belong to `database`.
pub fn table_access(text: &str, st: &Analysis, database: Option<&str>) -> TableAccess {
    let mut access = TableAccess::default();
    let no_tables = matches!(
        st.kind,
        Kind::Set
            | Kind::Use
            | Kind::Begin
            | Kind::Commit
            | Kind::Rollback
            | Kind::Savepoint
            | Kind::UnlockTables
            | Kind::Do
    ) && st.tables.is_empty();
    if no_tables || (st.kind == Kind::Show && st.tables.is_empty()) {
        return access;
    }
    if st.kind == Kind::Ddl {
        access.needs_admin = Some("DDL".to_owned());
        return access;
    }
    let statement = match crate::plan::parse(text) {
        Ok(s) => s,
        Err(_) => {
            access.needs_admin = Some(format!(
                "{} statement the access policy cannot analyse",
                st.kind.name().to_ascii_uppercase()
            ));
            return access;
        }
    };
    let qualify = |name: &ObjectName| -> String {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        match parts.as_slice() {
            [t] => format!("{}.{t}", database.unwrap_or("").to_ascii_lowercase()),
            [.., s, t] => format!("{s}.{t}"),
            [] => String::new(),
        }
    };
    let mut writes: Vec<String> = Vec::new();
    let target = |twj: &TableWithJoins, writes: &mut Vec<String>| {
        for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table { name, .. } = f {
                writes.push(qualify(name));
            }
        }
    };
    match &statement {
        Statement::Insert(i) => {
            if let TableObject::TableName(name) = &i.table {
                writes.push(qualify(name));
            }
        }
        Statement::Update(u) => target(&u.table, &mut writes),
        Statement::Delete(d) => {
            if d.tables.is_empty() {
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
                for twj in from {
                    target(twj, &mut writes);
                }
            } else {
                writes.extend(d.tables.iter().map(qualify));
            }
        }
        Statement::Query(_) | Statement::Explain { .. } | Statement::ExplainTable { .. } => {}
        _ if st.kind == Kind::Show => {}
        other
            if st.kind.writes()
                || matches!(
                    st.kind,
                    Kind::Call | Kind::Other | Kind::LockTables | Kind::Handler | Kind::Load
                ) =>
        {
            access.needs_admin = Some(format!("{} statement", statement_word(other)));
            return access;
        }
        _ => {}
    }
    let mut reads = Vec::new();
    let _ = visit_relations(&statement, |name| {
        let q = qualify(name);
        if !writes.contains(&q) && !reads.contains(&q) {
            reads.push(q);
        }
        ControlFlow::<()>::Continue(())
    });
    writes.dedup();
    access.reads = reads;
    access.writes = writes;
    access
}

fn statement_word(s: &Statement) -> String {
    s.to_string()
        .split_whitespace()
        .next()
        .unwrap_or("this")
        .to_ascii_uppercase()
}

/// The tables of statements already seen, by statement shape: the literals of a
/// statement do not change which tables it touches, so each shape is parsed once.
#[derive(Debug)]
pub struct AccessCache {
    shapes: std::sync::RwLock<crate::cache::Generations<std::sync::Arc<TableAccess>>>,
}

impl AccessCache {
    /// A cache of about `capacity` statement shapes.
    pub fn new(capacity: usize) -> Self {
        AccessCache {
            shapes: std::sync::RwLock::new(crate::cache::Generations::new(capacity)),
        }
    }

    /// [`table_access`] of `text`, parsed once per shape and default database.
    pub fn table_access(
        &self,
        text: &str,
        st: &Analysis,
        database: Option<&str>,
    ) -> std::sync::Arc<TableAccess> {
        use std::sync::Arc;
        let Some((mut key, _)) = crate::sql::lexer::normalize(text) else {
            return Arc::new(table_access(text, st, database));
        };
        key.push('\u{0}');
        key.push_str(database.unwrap_or(""));
        let known = match self.shapes.read() {
            Ok(c) => c.get(&key).cloned(),
            Err(poisoned) => poisoned.into_inner().get(&key).cloned(),
        };
        if let Some(hit) = known {
            return hit;
        }
        let access = Arc::new(table_access(text, st, database));
        match self.shapes.write() {
            Ok(mut c) => c.insert(key, Arc::clone(&access)),
            Err(poisoned) => poisoned.into_inner().insert(key, Arc::clone(&access)),
        }
        access
    }
}

/// The compiled policy.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    rules: Vec<AccessRule>,
}

impl AccessPolicy {
    pub fn new(rules: Vec<AccessRule>) -> Self {
        AccessPolicy { rules }
    }

    /// How many rules the policy has.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// No rules: everything is allowed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn applies(rule: &AccessRule, who: Identity) -> bool {
        rule.identities.iter().any(|id| {
            if let Some(u) = id.strip_prefix("user:") {
                glob(u, who.user)
            } else if let Some(c) = id.strip_prefix("cert:") {
                who.certificate.is_some_and(|cert| glob(c, cert))
            } else {
                false
            }
        })
    }

    fn grants(patterns: &[String], table: &str) -> bool {
        let bare = table.split_once('.').map_or(table, |(_, t)| t);
        patterns.iter().any(|p| {
            let p = p.to_ascii_lowercase();
            if p.contains('.') {
                glob(&p, table)
            } else {
                glob(&p, bare)
            }
        })
    }

    /// Allows or refuses `access` for `who`.
    pub fn check(&self, who: Identity, access: &TableAccess, st: &Analysis) -> Result<(), Denied> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let mine: Vec<&AccessRule> = self
            .rules
            .iter()
            .filter(|r| Self::applies(r, who))
            .collect();
        if let Some(what) = &access.needs_admin {
            if mine.iter().any(|r| r.admin) {
                return Ok(());
            }
            return Err(Denied::Admin { what: what.clone() });
        }
        let command = command_name(st.kind);
        for t in &access.writes {
            if !mine.iter().any(|r| Self::grants(&r.write, t)) {
                return Err(Denied::Table {
                    command,
                    table: t.clone(),
                });
            }
        }
        for t in &access.reads {
            if !mine
                .iter()
                .any(|r| Self::grants(&r.read, t) || Self::grants(&r.write, t))
            {
                return Err(Denied::Table {
                    command: if st.kind.writes() { "SELECT" } else { command },
                    table: t.clone(),
                });
            }
        }
        Ok(())
    }
}

fn command_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Insert => "INSERT",
        Kind::Replace => "REPLACE",
        Kind::Update => "UPDATE",
        Kind::Delete => "DELETE",
        Kind::Load => "LOAD",
        Kind::Show => "SHOW",
        _ => "SELECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::statement::analyze;

    fn policy() -> AccessPolicy {
        AccessPolicy::new(vec![
            AccessRule {
                name: "web".into(),
                identities: vec!["user:web".into(), "cert:spiffe://shop/sa/web".into()],
                read: vec!["products".into(), "shop.*".into()],
                write: vec!["orders".into()],
                admin: false,
            },
            AccessRule {
                name: "ops".into(),
                identities: vec!["user:ops-*".into()],
                read: vec!["*".into()],
                write: vec!["*".into()],
                admin: true,
            },
        ])
    }

    fn check(user: &str, cert: Option<&str>, sql: &str) -> Result<(), Denied> {
        let st = analyze(sql);
        let access = table_access(sql, &st, Some("shop"));
        policy().check(
            Identity {
                user,
                certificate: cert,
            },
            &access,
            &st,
        )
    }

    #[test]
    fn reads_and_writes_follow_the_grants() {
        assert_eq!(check("web", None, "SELECT * FROM products"), Ok(()));
        assert_eq!(
            check("web", None, "INSERT INTO orders (id) VALUES (1)"),
            Ok(())
        );
        assert_eq!(
            check("web", None, "INSERT INTO orders SELECT * FROM products"),
            Ok(())
        );
        assert_eq!(
            check("web", None, "DELETE FROM products WHERE id = 1"),
            Err(Denied::Table {
                command: "DELETE",
                table: "shop.products".into()
            })
        );
        assert_eq!(
            check("web", None, "SELECT * FROM other.secrets"),
            Err(Denied::Table {
                command: "SELECT",
                table: "other.secrets".into()
            })
        );
        assert_eq!(
            check(
                "web",
                None,
                "UPDATE orders o JOIN other.x ON o.id = x.id SET o.a = 1"
            ),
            Err(Denied::Table {
                command: "UPDATE",
                table: "other.x".into()
            })
        );
        assert_eq!(
            check(
                "web",
                None,
                "SELECT * FROM orders WHERE id IN (SELECT id FROM other.t)"
            ),
            Err(Denied::Table {
                command: "SELECT",
                table: "other.t".into()
            })
        );
    }

    #[test]
    fn identities_come_from_users_and_certificates() {
        assert_eq!(
            check(
                "someone",
                Some("spiffe://shop/sa/web"),
                "SELECT * FROM products"
            ),
            Ok(())
        );
        assert!(check("someone", None, "SELECT * FROM products").is_err());
        assert!(check(
            "someone",
            Some("spiffe://shop/sa/other"),
            "SELECT 1 FROM products"
        )
        .is_err());
        assert_eq!(check("ops-alice", None, "DROP TABLE orders"), Ok(()));
    }

    #[test]
    fn ddl_and_unparsable_statements_need_admin_and_tableless_ones_pass() {
        assert!(matches!(
            check("web", None, "DROP TABLE orders"),
            Err(Denied::Admin { .. })
        ));
        assert!(matches!(
            check("web", None, "SELECT * FROM products PROCEDURE ANALYSE()"),
            Err(Denied::Admin { .. })
        ));
        assert_eq!(check("web", None, "SET sql_mode = ''"), Ok(()));
        assert_eq!(check("web", None, "BEGIN"), Ok(()));
        assert_eq!(check("web", None, "SELECT 1"), Ok(()));
        assert_eq!(check("web", None, "SHOW WARNINGS"), Ok(()));
        assert_eq!(
            AccessPolicy::default().check(
                Identity {
                    user: "x",
                    certificate: None
                },
                &TableAccess {
                    needs_admin: Some("DDL".into()),
                    ..Default::default()
                },
                &analyze("DROP TABLE t"),
            ),
            Ok(())
        );
    }
}
