//! Per-shard IN-lists: a statement routed to several shards by `col IN (...)` on its
//! table's primary vindex column sends each shard only the values that live there, as
//! Vitess does, instead of the whole list to every shard.
//!
//! Only a single-table block qualifies (one SELECT without subqueries, or an UPDATE or
//! DELETE of one table), and only an IN-list that is a top-level conjunct of its WHERE,
//! with literal values that each map to one keyspace id. Shrinking that one conjunct is
//! safe: a row on shard `s` whose column equals a listed value has that value's keyspace
//! id, which is in `s`, so the value stays in `s`'s list.

use std::collections::BTreeMap;

use sqlparser::ast::{BinaryOperator, Expr, FromTable, InTarget, SetExpr, Statement};

use super::route::{self, Placement};
use super::schema::RoutingSchema;
use super::{PlanContext, Route};
use crate::key::Destination;

/// Gives `route` one statement per shard when its IN-list can be split; leaves it
/// unchanged otherwise. `original` is the client's statement (used when the route runs it
/// unchanged).
pub(crate) fn split(
    schema: &RoutingSchema,
    original: &Statement,
    ctx: &PlanContext<'_>,
    route: &mut Route,
) {
    if route.shards.len() < 2
        || route.lookup.is_some()
        || route.owner_rows.is_some()
        || route.replicated
        || route::has_subquery(original)
    {
        return;
    }
    let mut statement = match &route.query {
        Some(q) => match super::parse(q) {
            Ok(s) => s,
            Err(_) => return,
        },
        None => original.clone(),
    };
    let Some(by_shard) = values_by_shard(schema, &mut statement, ctx) else {
        return;
    };
    let mut queries = Vec::with_capacity(route.shards.len());
    for &shard in &route.shards {
        let Some(values) = by_shard.get(&shard) else {
            // A shard the list does not reach (another predicate routed there): it keeps
            // the whole statement.
            continue;
        };
        let mut per_shard = statement.clone();
        if let Some(list) = in_list_of(&mut per_shard, schema, ctx) {
            *list = values.clone();
            queries.push((shard, per_shard.to_string()));
        }
    }
    route.shard_queries = queries;
}

/// The FROM tables and WHERE clause of a single-block statement.
fn parts(statement: &mut Statement) -> Option<(Vec<sqlparser::ast::TableWithJoins>, &mut Expr)> {
    match statement {
        Statement::Query(q) => match q.body.as_mut() {
            SetExpr::Select(s) => Some((s.from.clone(), s.selection.as_mut()?)),
            _ => None,
        },
        Statement::Update(u) if u.from.is_none() => {
            Some((vec![u.table.clone()], u.selection.as_mut()?))
        }
        Statement::Delete(d) if d.using.is_none() => {
            let from = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t.clone(),
            };
            Some((from, d.selection.as_mut()?))
        }
        _ => None,
    }
}

/// The list of the first top-level `col IN (...)` conjunct on the statement's only table's
/// single-column primary vindex.
fn in_list_of<'a>(
    statement: &'a mut Statement,
    schema: &RoutingSchema,
    ctx: &PlanContext<'_>,
) -> Option<&'a mut Vec<Expr>> {
    let (from, selection) = parts(statement)?;
    let (uses, joins, derived) = route::from_tables(schema, &from, ctx).ok()?;
    let ([table], true, false) = (uses.as_slice(), joins.is_empty(), derived) else {
        return None;
    };
    let Placement::Sharded { columns, .. } = &table.placement else {
        return None;
    };
    let [column] = columns.as_slice() else {
        return None;
    };
    find_in_list(selection, &table.qualifier, column)
}

fn find_in_list<'a>(
    expr: &'a mut Expr,
    qualifier: &str,
    column: &str,
) -> Option<&'a mut Vec<Expr>> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => match find_in_list(left, qualifier, column) {
            Some(list) => Some(list),
            None => find_in_list(right, qualifier, column),
        },
        Expr::Nested(inner) => find_in_list(inner, qualifier, column),
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated: false,
            ..
        } => {
            let named = match route::column_ref(expr)? {
                (Some(q), c) => q.eq_ignore_ascii_case(qualifier) && c.eq_ignore_ascii_case(column),
                (None, c) => c.eq_ignore_ascii_case(column),
            };
            named.then_some(list)
        }
        _ => None,
    }
}

/// The IN-list's values grouped by the shard each maps to, or `None` when the statement
/// has no splittable list (a value that is not a literal, or maps to no single keyspace
/// id).
fn values_by_shard(
    schema: &RoutingSchema,
    statement: &mut Statement,
    ctx: &PlanContext<'_>,
) -> Option<BTreeMap<usize, Vec<Expr>>> {
    let (from, _) = parts(statement)?;
    let (uses, _, _) = route::from_tables(schema, &from, ctx).ok()?;
    let table = uses.first()?;
    let Placement::Sharded { vindex, .. } = &table.placement else {
        return None;
    };
    let keyspace = table.keyspace;
    let list = in_list_of(statement, schema, ctx)?;
    let mut by_shard: BTreeMap<usize, Vec<Expr>> = BTreeMap::new();
    for e in list.iter() {
        let value = route::literal_value(e, &|_| None)?;
        let destination = vindex.map(std::slice::from_ref(&value)).ok()?.pop()?;
        let Destination::KeyspaceId(id) = destination else {
            return None;
        };
        let shard = route::shard_of(keyspace, &id).ok()?;
        by_shard.entry(shard).or_default().push(e.clone());
    }
    Some(by_shard)
}
