//! The fallback for query shapes the scatter merge cannot combine: run one part of the
//! statement on its own (an uncorrelated subquery, a derived table or CTE, one UNION
//! branch, a table of another keyspace, or a sharded table's filtered rows), then put its
//! rows back into the statement as literal rows and plan what is left. The part left
//! usually reaches one shard, where MySQL itself evaluates the rest exactly: window
//! functions, COUNT(DISTINCT), expressions over aggregates, UNION DISTINCT, cross-keyspace
//! joins.
//!
//! [`Materialize`] carries the two statements; [`literal_rows`] writes rows as a SELECT of
//! typed literals (`DATE'…'`, `X'…'`, strings with their column's collation).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, ObjectNamePart, Query, SelectItem, SetExpr, Statement, TableAlias, TableFactor,
    Visit, VisitMut, Visitor, VisitorMut,
};

use super::merge::Row;
use super::route::{self, Placement, Resolved};
use super::schema::RoutingSchema;
use super::{parse, PlanContext, PlanError};
use crate::protocol::column::ColumnDefinition;
use crate::protocol::constants::column_type;
use crate::sql::literal::quote_string;

/// Where the rows go in the outer statement's text.
const MARKER: &str = "SELECT '__shardcar_rows__'";

/// Run `inner`, then plan `outer` with its rows in place of the marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialize {
    pub inner: String,
    outer: String,
}

impl Materialize {
    /// The outer statement with `columns`/`rows` in place.
    pub fn outer_sql(&self, columns: &[ColumnDefinition], rows: &[Row]) -> String {
        self.outer.replacen(MARKER, &literal_rows(columns, rows), 1)
    }
}

/// A SELECT returning exactly `rows` with the columns' names and (as near as literals
/// allow) their types and collations.
pub fn literal_rows(columns: &[ColumnDefinition], rows: &[Row]) -> String {
    let names: Vec<String> = columns
        .iter()
        .map(|c| format!("`{}`", String::from_utf8_lossy(&c.name).replace('`', "``")))
        .collect();
    if rows.is_empty() {
        let cols: Vec<String> = names.iter().map(|n| format!("NULL AS {n}")).collect();
        return format!("SELECT {} FROM DUAL WHERE 0", cols.join(", "));
    }
    // One SELECT names the columns; the other rows follow as a table value constructor,
    // which parses without recursion however many rows there are.
    let mut out = String::from("SELECT ");
    for (j, col) in columns.iter().enumerate() {
        if j > 0 {
            out.push_str(", ");
        }
        out.push_str(&literal(rows[0].get(j).and_then(|c| c.as_deref()), col));
        out.push_str(" AS ");
        out.push_str(&names[j]);
    }
    for (i, row) in rows.iter().enumerate().skip(1) {
        out.push_str(if i == 1 { " UNION ALL VALUES (" } else { ", (" });
        for (j, col) in columns.iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            out.push_str(&literal(row.get(j).and_then(|c| c.as_deref()), col));
        }
        out.push(')');
    }
    out
}

fn literal(cell: Option<&[u8]>, col: &ColumnDefinition) -> String {
    let Some(bytes) = cell else {
        return "NULL".to_string();
    };
    let text = String::from_utf8_lossy(bytes);
    match col.column_type {
        column_type::TINY
        | column_type::SHORT
        | column_type::LONG
        | column_type::INT24
        | column_type::LONGLONG
        | column_type::YEAR
        | column_type::DECIMAL
        | column_type::NEWDECIMAL
        | column_type::FLOAT
        | column_type::DOUBLE
            if text
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.into_owned()
        }
        column_type::DATE | column_type::NEWDATE => format!("DATE{}", quote_string(bytes)),
        column_type::DATETIME
        | column_type::TIMESTAMP
        | column_type::DATETIME2
        | column_type::TIMESTAMP2 => {
            format!("TIMESTAMP{}", quote_string(bytes))
        }
        column_type::TIME | column_type::TIME2 => format!("TIME{}", quote_string(bytes)),
        _ if col.is_binary_collation() => format!("X'{}'", hex::encode(bytes)),
        _ => match collation_name(col.charset) {
            Some(name) if std::str::from_utf8(bytes).is_ok() => {
                let charset = name.split('_').next().unwrap_or("utf8mb4");
                format!("_{charset}{} COLLATE {name}", quote_string(bytes))
            }
            _ => quote_string(bytes),
        },
    }
}

/// Names of the collations result sets commonly carry.
fn collation_name(id: u16) -> Option<&'static str> {
    Some(match id {
        8 => "latin1_swedish_ci",
        33 => "utf8mb3_general_ci",
        45 => "utf8mb4_general_ci",
        46 => "utf8mb4_bin",
        47 => "latin1_bin",
        83 => "utf8mb3_bin",
        192 => "utf8mb3_unicode_ci",
        224 => "utf8mb4_unicode_ci",
        _ => return None,
    })
}

fn marker() -> Result<Query, PlanError> {
    match parse(MARKER)? {
        Statement::Query(q) => Ok(*q),
        _ => Err(PlanError::unsupported("marker")),
    }
}

/// Qualifiers used by column references inside `node`, and table names/aliases defined
/// by its FROM clauses and CTEs.
fn qualifiers<V: Visit>(node: &V) -> (BTreeSet<String>, BTreeSet<String>, bool) {
    struct Q {
        used: BTreeSet<String>,
        defined: BTreeSet<String>,
        relations: bool,
    }
    impl Visitor for Q {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = e {
                if parts.len() >= 2 {
                    let q = &parts[parts.len() - 2];
                    self.used.insert(q.value.to_ascii_lowercase());
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
            match t {
                TableFactor::Table { name, alias, .. } => {
                    self.relations = true;
                    if let Some(ObjectNamePart::Identifier(i)) = name.0.last() {
                        self.defined.insert(i.value.to_ascii_lowercase());
                    }
                    if let Some(a) = alias {
                        self.defined.insert(a.name.value.to_ascii_lowercase());
                    }
                }
                TableFactor::Derived { alias: Some(a), .. } => {
                    self.defined.insert(a.name.value.to_ascii_lowercase());
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    self.defined
                        .insert(cte.alias.name.value.to_ascii_lowercase());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut q = Q {
        used: BTreeSet::new(),
        defined: BTreeSet::new(),
        relations: false,
    };
    let _ = node.visit(&mut q);
    (q.used, q.defined, q.relations)
}

/// Whether `query` can run on its own: it reads tables and refers to no outer alias (a
/// LATERAL derived table that refers to the tables before it fails this test).
fn standalone(query: &Query) -> bool {
    let (used, defined, relations) = qualifiers(query);
    relations && used.is_subset(&defined)
}

/// The first part of `statement` that can be materialized, or `None`.
pub(crate) fn fallback(
    schema: &RoutingSchema,
    statement: &Statement,
    ctx: &PlanContext<'_>,
) -> Result<Option<Materialize>, PlanError> {
    let marker = marker()?;
    // Rewriting changes how unaliased select items print; pin the names the client
    // expects first.
    let mut named = statement.clone();
    if let Statement::Query(q) = &mut named {
        name_columns(&mut q.body);
    }
    let statement = &named;
    // 1. An uncorrelated subquery, derived table or CTE body.
    {
        struct Sub<'m> {
            marker: &'m Query,
            seen: usize,
            inner: Option<String>,
        }
        impl VisitorMut for Sub<'_> {
            type Break = ();
            fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
                self.seen += 1;
                if self.seen > 1 && standalone(q) {
                    self.inner = Some(q.to_string());
                    *q = self.marker.clone();
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
        }
        let mut copy = statement.clone();
        let mut v = Sub {
            marker: &marker,
            seen: 0,
            inner: None,
        };
        let _ = VisitMut::visit(&mut copy, &mut v);
        if let Some(inner) = v.inner {
            return Ok(Some(Materialize {
                inner,
                outer: copy.to_string(),
            }));
        }
    }
    let Statement::Query(query) = statement else {
        return Ok(None);
    };
    // 2. A UNION branch that reads tables.
    if let SetExpr::SetOperation { .. } = query.body.as_ref() {
        let mut copy = (**query).clone();
        let mut stack = vec![copy.body.as_mut()];
        while let Some(e) = stack.pop() {
            match e {
                SetExpr::SetOperation { left, right, .. } => {
                    stack.push(right.as_mut());
                    stack.push(left.as_mut());
                }
                leaf => {
                    let (_, _, relations) = qualifiers(&*leaf);
                    if relations {
                        let inner = leaf.to_string();
                        *leaf = SetExpr::Query(Box::new(marker.clone()));
                        return Ok(Some(Materialize {
                            inner,
                            outer: Statement::Query(Box::new(copy)).to_string(),
                        }));
                    }
                }
            }
        }
        return Ok(None);
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    // 3. A table of a second keyspace (unsharded first) in a join.
    let mut tables = Vec::new();
    for twj in &select.from {
        tables.push(&twj.relation);
        tables.extend(twj.joins.iter().map(|j| &j.relation));
    }
    let mut keyspaces = Vec::new();
    for t in &tables {
        if let TableFactor::Table { name, .. } = t {
            if let Ok(Resolved::Table(ks, placement)) = route::resolve(schema, name, ctx) {
                keyspaces.push((ks.name.clone(), ks.sharded, placement));
            } else {
                keyspaces.push((String::new(), false, Placement::Reference));
            }
        } else {
            keyspaces.push((String::new(), false, Placement::Reference));
        }
    }
    let distinct: BTreeSet<&str> = keyspaces
        .iter()
        .filter(|k| !k.0.is_empty())
        .map(|k| k.0.as_str())
        .collect();
    let pick = if distinct.len() > 1 {
        keyspaces
            .iter()
            .position(|k| !k.0.is_empty() && !k.1)
            .or_else(|| keyspaces.iter().rposition(|k| !k.0.is_empty()))
    } else if tables.len() > 1
        && !route::has_subquery(statement)
        && keyspaces
            .iter()
            .filter(|k| matches!(k.2, Placement::Sharded { .. }))
            .count()
            > 1
    {
        // 4. Sharded tables not joined on their vindex columns: broadcast one side (the
        // last), so the join runs where the other side's rows live.
        keyspaces
            .iter()
            .rposition(|k| matches!(k.2, Placement::Sharded { .. }))
    } else if !route::has_subquery(statement)
        && keyspaces
            .iter()
            .filter(|k| matches!(k.2, Placement::Sharded { .. }))
            .count()
            == 1
    {
        // 5. The filtered rows of the one sharded table (the others are reference tables
        // or literal rows): then nothing sharded is left.
        keyspaces
            .iter()
            .position(|k| matches!(k.2, Placement::Sharded { .. }))
    } else {
        None
    };
    let Some(pick) = pick else {
        return Ok(None);
    };
    let mut copy = (**query).clone();
    let SetExpr::Select(sel) = copy.body.as_mut() else {
        return Ok(None);
    };
    let single = tables.len() == 1;
    let mut slots: Vec<&mut TableFactor> = Vec::new();
    for twj in &mut sel.from {
        slots.push(&mut twj.relation);
        slots.extend(twj.joins.iter_mut().map(|j| &mut j.relation));
    }
    let Some(slot) = slots.into_iter().nth(pick) else {
        return Ok(None);
    };
    let TableFactor::Table { name, alias, .. } = slot else {
        return Ok(None);
    };
    let alias_name = match (alias.as_ref(), name.0.last()) {
        (Some(a), _) => a.name.clone(),
        (None, Some(ObjectNamePart::Identifier(i))) => i.clone(),
        _ => return Ok(None),
    };
    let from = match alias {
        Some(a) => format!("{name} AS {}", a.name),
        None => name.to_string(),
    };
    // Conditions on this table alone narrow what is fetched; only when every join is an
    // inner join, where filtering one side first does not change the result.
    let inner_joins_only = select.from.iter().flat_map(|t| &t.joins).all(|j| {
        matches!(
            j.join_operator,
            sqlparser::ast::JoinOperator::Join(_) | sqlparser::ast::JoinOperator::Inner(_)
        )
    });
    let own: Vec<String> = match &select.selection {
        Some(w) if single => vec![w.to_string()],
        Some(w) if inner_joins_only => route::conjuncts(w)
            .into_iter()
            .filter(|c| only_refers_to(c, &alias_name.value))
            .map(|c| c.to_string())
            .collect(),
        _ => Vec::new(),
    };
    let inner = if own.is_empty() {
        format!("SELECT * FROM {from}")
    } else {
        format!("SELECT * FROM {from} WHERE {}", own.join(" AND "))
    };
    *slot = TableFactor::Derived {
        lateral: false,
        subquery: Box::new(marker),
        alias: Some(TableAlias {
            explicit: true,
            name: alias_name,
            columns: Vec::new(),
            at: None,
        }),
        sample: None,
    };
    Ok(Some(Materialize {
        inner,
        outer: Statement::Query(Box::new(copy)).to_string(),
    }))
}

/// Gives every unaliased expression of the first SELECT of `body` its own text as alias
/// (a bare column keeps its name without one).
fn name_columns(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) = item {
                    if !matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                        let alias = Ident::with_quote('`', e.to_string());
                        *item = SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias,
                        };
                    }
                }
            }
        }
        SetExpr::SetOperation { left, .. } => name_columns(left),
        SetExpr::Query(q) => name_columns(&mut q.body),
        _ => {}
    }
}

/// Whether every column in `e` is qualified with `qualifier` (and `e` has columns).
fn only_refers_to(e: &Expr, qualifier: &str) -> bool {
    let mut columns = 0;
    let mut others = 0;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        match x {
            Expr::CompoundIdentifier(parts)
                if parts.len() >= 2
                    && parts[parts.len() - 2].value.eq_ignore_ascii_case(qualifier) =>
            {
                columns += 1
            }
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Subquery(_)
            | Expr::Exists { .. } => others += 1,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    columns > 0 && others == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_rows_keep_types() {
        let mut d = ColumnDefinition::new("d", column_type::DATE);
        d.charset = 63;
        let mut s = ColumnDefinition::new("s", column_type::VAR_STRING);
        s.charset = 45;
        let n = ColumnDefinition::new("n", column_type::LONGLONG);
        let rows = vec![
            vec![
                Some(b"2020-01-02".to_vec()),
                Some(b"it's".to_vec()),
                Some(b"5".to_vec()),
            ],
            vec![None, None, Some(b"-7".to_vec())],
        ];
        assert_eq!(
            literal_rows(&[d.clone(), s.clone(), n.clone()], &rows),
            "SELECT DATE'2020-01-02' AS `d`, _utf8mb4'it''s' COLLATE utf8mb4_general_ci AS `s`, 5 AS `n` UNION ALL VALUES (NULL, NULL, -7)"
        );
        assert_eq!(
            literal_rows(&[n], &[]),
            "SELECT NULL AS `n` FROM DUAL WHERE 0"
        );
    }
}
