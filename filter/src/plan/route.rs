//! Which shards a statement reaches: the tables it names resolved to keyspaces, the
//! primary-vindex predicates in its WHERE and ON clauses, co-location of joined tables,
//! and the shard set that follows.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_relations, BinaryOperator, Expr, InTarget, JoinConstraint, JoinOperator, ObjectName,
    ObjectNamePart, Query, Statement, TableFactor, TableWithJoins, UnaryOperator,
    Value as SqlValue,
};

use super::error::PlanError;
use super::lookup::{ColumnLookup, LookupStep};
use super::schema::{KeyspaceRouting, RoutingSchema};
use super::PlanContext;
use crate::key::{Destination, KeyspaceId};
use crate::sql::literal;
use crate::vindex::{Value, Vindex};
use crate::vschema::TableType;

/// Databases every mysqld has; a table qualified by one goes to any shard.
const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "mysql", "performance_schema", "sys"];

/// How a table is placed on the shards of its keyspace.
#[derive(Debug, Clone)]
pub(crate) enum Placement<'s> {
    /// A copy on every shard.
    Reference,
    /// The one shard of an unsharded keyspace.
    Unsharded,
    /// Rows spread by the primary vindex on `columns`.
    Sharded {
        columns: Vec<String>,
        vindex_name: &'s str,
        vindex: &'s Vindex,
        /// The table's lookup vindexes on one column.
        lookups: Vec<ColumnLookup<'s>>,
    },
}

/// One table occurrence in a FROM clause.
#[derive(Debug, Clone)]
pub(crate) struct TableUse<'s> {
    /// The name columns are qualified with: the alias, or the table name.
    pub qualifier: String,
    pub keyspace: &'s KeyspaceRouting,
    pub placement: Placement<'s>,
}

impl TableUse<'_> {
    fn vindex_column(&self) -> Option<&str> {
        match &self.placement {
            Placement::Sharded { columns, .. } if columns.len() == 1 => {
                columns.first().map(String::as_str)
            }
            _ => None,
        }
    }
}

/// Where a name resolves.
#[derive(Debug)]
pub(crate) enum Resolved<'s> {
    Table(&'s KeyspaceRouting, Placement<'s>),
    /// `information_schema.x` and friends.
    System,
}

/// The identifiers of `ks.table` or `t.column`; `None` when a part is a function.
pub(crate) fn name_parts(name: &ObjectName) -> Option<Vec<&str>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.as_str()),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// The last identifier of a name (the table of `ks.table`, the column of `t.column`), or
/// an empty string.
pub(crate) fn last_part(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.value.clone(),
        _ => String::new(),
    }
}

/// Resolves a relation name to a keyspace and placement.
pub(crate) fn resolve<'s>(
    schema: &'s RoutingSchema,
    name: &ObjectName,
    ctx: &PlanContext<'_>,
) -> Result<Resolved<'s>, PlanError> {
    let parts =
        name_parts(name).ok_or_else(|| PlanError::unsupported("a function as a table name"))?;
    let (keyspace, table) = match parts.as_slice() {
        [t] => (None, *t),
        [k, t] => (Some(*k), *t),
        _ => {
            return Err(PlanError::unsupported(
                "a table name with more than two parts",
            ))
        }
    };
    if let Some(k) = keyspace {
        if SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(k)) {
            return Ok(Resolved::System);
        }
        if schema.keyspace(k).is_none() {
            return Err(PlanError::UnknownKeyspace(k.to_string()));
        }
    }
    let qualified = match keyspace {
        Some(k) => format!("{k}.{table}"),
        None => table.to_string(),
    };
    let found = schema
        .vschema
        .find_table(&qualified, keyspace.or(ctx.default_keyspace))
        .map_err(|e| match e {
            crate::vschema::FindTableError::UnknownKeyspace { keyspace } => {
                PlanError::UnknownKeyspace(keyspace)
            }
            crate::vschema::FindTableError::NotFound { .. } => {
                PlanError::NoSuchTable(match keyspace.or(ctx.default_keyspace) {
                    Some(k) => format!("{k}.{table}"),
                    None => table.to_string(),
                })
            }
            other => PlanError::Unsupported(other.to_string()),
        })?;
    if found.name != table {
        return Err(PlanError::unsupported(format!(
            "a routing rule that renames table {table} to {}",
            found.name
        )));
    }
    let ks = schema
        .keyspace(found.keyspace)
        .ok_or_else(|| PlanError::UnknownKeyspace(found.keyspace.to_string()))?;
    if !ks.sharded {
        return Ok(Resolved::Table(ks, Placement::Unsharded));
    }
    match found.table_type() {
        TableType::Reference => return Ok(Resolved::Table(ks, Placement::Reference)),
        TableType::Sequence => {
            return Err(PlanError::unsupported(format!(
                "a sequence table ({table}) in a sharded keyspace"
            )))
        }
        _ => {}
    }
    let Some(table_schema) = found.table else {
        return Err(PlanError::NoSuchTable(format!(
            "{}.{table}",
            found.keyspace
        )));
    };
    if table_schema.pinned.is_some() {
        return Err(PlanError::unsupported(format!("the pinned table {table}")));
    }
    let primary = found
        .primary_vindex()
        .ok_or_else(|| PlanError::unsupported(format!("table {table} without a primary vindex")))?;
    let (vindex_name, vindex) = ks
        .vindexes
        .get_key_value(primary.name)
        .ok_or_else(|| match ks.unsupported.get(primary.name) {
            Some(reason) => PlanError::unsupported(format!(
                "table {table} with the primary vindex {}: {reason}",
                primary.name
            )),
            None => PlanError::unsupported(format!(
                "table {table}: vindex {} is not available",
                primary.name
            )),
        })?;
    if vindex.needs_lookup() {
        return Err(PlanError::unsupported(format!(
            "table {table}: lookup vindex {} as a primary vindex",
            primary.name
        )));
    }
    let ks_schema = schema.vschema.keyspace(&ks.name);
    let mut lookups = Vec::new();
    for cv in table_schema.column_vindexes.iter().skip(1) {
        let Some((name, v)) = ks.vindexes.get_key_value(&cv.name) else {
            continue;
        };
        let columns = cv.column_names();
        let (Some(lookup), [column]) = (v.lookup(), columns.as_slice()) else {
            continue;
        };
        let owner = ks_schema
            .and_then(|k| k.vindexes.get(&cv.name))
            .map(|d| d.owner.as_str());
        lookups.push(ColumnLookup {
            column: column.to_string(),
            vindex_name: name.as_str(),
            lookup,
            owned: owner == Some(found.name),
            cost: v.cost(),
        });
    }
    Ok(Resolved::Table(
        ks,
        Placement::Sharded {
            columns: primary.columns.iter().map(|c| c.to_string()).collect(),
            vindex_name: vindex_name.as_str(),
            vindex,
            lookups,
        },
    ))
}

/// Refuses DML on `table` of `keyspace` when one of its secondary vindexes is one Shardcar
/// cannot maintain yet (a lookup vindex's rows would go stale).
pub(crate) fn check_maintainable(
    schema: &RoutingSchema,
    keyspace: &KeyspaceRouting,
    table: &str,
) -> Result<(), PlanError> {
    let Some(t) = schema
        .vschema
        .keyspace(&keyspace.name)
        .and_then(|k| k.tables.get(table))
    else {
        return Ok(());
    };
    let owners = schema.vschema.keyspace(&keyspace.name);
    for cv in t.column_vindexes.iter().skip(1) {
        let owned = owners
            .and_then(|k| k.vindexes.get(&cv.name))
            .is_some_and(|v| v.owner == table);
        let lookup = keyspace
            .vindexes
            .get(&cv.name)
            .is_some_and(|v| v.needs_lookup());
        if owned && lookup && cv.column_names().len() != 1 {
            return Err(PlanError::unsupported(format!(
                "writing table {table}, whose lookup vindex {} spans several columns",
                cv.name
            )));
        }
        if let Some(reason) = keyspace.unsupported.get(&cv.name) {
            return Err(PlanError::unsupported(format!(
                "writing table {table}, whose vindex {} must be maintained: {reason}",
                cv.name
            )));
        }
    }
    Ok(())
}

/// The keyspace that serves a statement without tables (`SELECT 1`, `SHOW ...`).
pub(crate) fn default_keyspace<'s>(
    schema: &'s RoutingSchema,
    ctx: &PlanContext<'_>,
) -> Result<&'s KeyspaceRouting, PlanError> {
    match ctx.default_keyspace {
        Some(k) => schema
            .keyspace(k)
            .ok_or_else(|| PlanError::UnknownKeyspace(k.to_string())),
        None => schema
            .keyspaces()
            .find(|k| !k.sharded)
            .or_else(|| schema.keyspaces().next())
            .ok_or(PlanError::NoDatabase),
    }
}

/// The tables of a whole statement (subqueries included): their one keyspace, and whether
/// any sharded table appears outside the top-level FROM.
#[derive(Debug)]
pub(crate) struct StatementTables<'s> {
    pub keyspace: Option<&'s KeyspaceRouting>,
    pub any_sharded: bool,
}

/// Resolves every relation of `statement` and checks they live in one keyspace.
pub(crate) fn statement_tables<'s>(
    schema: &'s RoutingSchema,
    statement: &Statement,
    ctx: &PlanContext<'_>,
) -> Result<StatementTables<'s>, PlanError> {
    let ctes = cte_names(statement);
    let mut keyspace: Option<&'s KeyspaceRouting> = None;
    let mut any_sharded = false;
    let mut failure = None;
    let _ = visit_relations(statement, |name| {
        if let [ObjectNamePart::Identifier(i)] = name.0.as_slice() {
            if ctes.contains(&i.value) {
                return ControlFlow::Continue(());
            }
        }
        match resolve(schema, name, ctx) {
            Ok(Resolved::System) => {}
            Ok(Resolved::Table(ks, placement)) => {
                if matches!(placement, Placement::Sharded { .. }) {
                    any_sharded = true;
                }
                match keyspace {
                    Some(k) if k.name != ks.name => {
                        failure = Some(PlanError::unsupported(format!(
                            "a statement across keyspaces ({} and {})",
                            k.name, ks.name
                        )));
                        return ControlFlow::Break(());
                    }
                    _ => keyspace = Some(ks),
                }
            }
            Err(e) => {
                failure = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(StatementTables {
        keyspace,
        any_sharded,
    })
}

/// The tables of `statement` and the keyspace that serves it: theirs, or the session's
/// default when it names none.
pub(crate) fn statement_keyspace<'s>(
    schema: &'s RoutingSchema,
    statement: &Statement,
    ctx: &PlanContext<'_>,
) -> Result<(StatementTables<'s>, &'s KeyspaceRouting), PlanError> {
    let tables = statement_tables(schema, statement, ctx)?;
    let keyspace = match tables.keyspace {
        Some(k) => k,
        None => default_keyspace(schema, ctx)?,
    };
    Ok((tables, keyspace))
}

fn cte_names(statement: &Statement) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Statement::Query(q) = statement {
        collect_ctes(q, &mut names);
    }
    names
}

fn collect_ctes(query: &Query, names: &mut BTreeSet<String>) {
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            names.insert(cte.alias.name.value.clone());
            collect_ctes(&cte.query, names);
        }
    }
}

/// The table occurrences of a FROM clause, in order, with the equality conditions of
/// their joins (inner and left joins with ON).
pub(crate) fn from_tables<'s>(
    schema: &'s RoutingSchema,
    from: &[TableWithJoins],
    ctx: &PlanContext<'_>,
) -> Result<(Vec<TableUse<'s>>, Vec<Expr>, bool), PlanError> {
    let mut uses = Vec::new();
    let mut join_conditions = Vec::new();
    let mut has_derived = false;
    for twj in from {
        add_factor(schema, &twj.relation, ctx, &mut uses, &mut has_derived)?;
        for join in &twj.joins {
            add_factor(schema, &join.relation, ctx, &mut uses, &mut has_derived)?;
            let constraint = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::StraightJoin(c) => c,
                _ => return Err(PlanError::unsupported("this kind of join")),
            };
            match constraint {
                JoinConstraint::On(e) => join_conditions.push(e.clone()),
                JoinConstraint::None => {}
                JoinConstraint::Using(cols) => {
                    // `USING (c)` joins the previous and this table on c.
                    let right = uses.last().map(|u: &TableUse<'_>| u.qualifier.clone());
                    let left = uses.iter().rev().nth(1).map(|u| u.qualifier.clone());
                    if let (Some(l), Some(r)) = (left, right) {
                        for c in cols {
                            if let Some(ObjectNamePart::Identifier(col)) = c.0.last() {
                                join_conditions.push(Expr::BinaryOp {
                                    left: Box::new(Expr::CompoundIdentifier(vec![
                                        sqlparser::ast::Ident::new(l.clone()),
                                        col.clone(),
                                    ])),
                                    op: BinaryOperator::Eq,
                                    right: Box::new(Expr::CompoundIdentifier(vec![
                                        sqlparser::ast::Ident::new(r.clone()),
                                        col.clone(),
                                    ])),
                                });
                            }
                        }
                    }
                }
                _ => return Err(PlanError::unsupported("NATURAL joins across shards")),
            }
        }
    }
    Ok((uses, join_conditions, has_derived))
}

fn add_factor<'s>(
    schema: &'s RoutingSchema,
    factor: &TableFactor,
    ctx: &PlanContext<'_>,
    uses: &mut Vec<TableUse<'s>>,
    has_derived: &mut bool,
) -> Result<(), PlanError> {
    match factor {
        TableFactor::Table { name, alias, .. } => {
            let qualifier = match alias {
                Some(a) => a.name.value.clone(),
                None => last_part(name),
            };
            match resolve(schema, name, ctx)? {
                Resolved::System => {}
                Resolved::Table(keyspace, placement) => uses.push(TableUse {
                    qualifier,
                    keyspace,
                    placement,
                }),
            }
            Ok(())
        }
        TableFactor::Derived { subquery, .. } => {
            // Literal rows (a materialized part) are on every shard, like a reference table.
            if reads_tables(subquery.as_ref()) {
                *has_derived = true;
            }
            Ok(())
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            add_factor(schema, &table_with_joins.relation, ctx, uses, has_derived)?;
            for j in &table_with_joins.joins {
                add_factor(schema, &j.relation, ctx, uses, has_derived)?;
            }
            Ok(())
        }
        _ => Err(PlanError::unsupported("this kind of table expression")),
    }
}

/// Whether `node` names any table.
pub(crate) fn reads_tables<V: sqlparser::ast::Visit>(node: &V) -> bool {
    let found = visit_relations(node, |_| ControlFlow::Break(()));
    found.is_break()
}

/// Splits an expression into its top-level AND terms.
pub(crate) fn conjuncts(expr: &Expr) -> Vec<&Expr> {
    let mut out = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Nested(inner) => stack.push(inner),
            other => out.push(other),
        }
    }
    out
}

/// A column reference `c` or `q.c`: (qualifier, column).
pub(crate) fn column_ref(expr: &Expr) -> Option<(Option<&str>, &str)> {
    match expr {
        Expr::Identifier(i) => Some((None, i.value.as_str())),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] => Some((Some(q.value.as_str()), c.value.as_str())),
            [_, q, c] => Some((Some(q.value.as_str()), c.value.as_str())),
            _ => None,
        },
        Expr::Nested(inner) => column_ref(inner),
        _ => None,
    }
}

/// The vindex value of a literal expression, if it is one.
pub(crate) fn literal_value(expr: &Expr, params: &dyn Fn(&Expr) -> Option<Value>) -> Option<Value> {
    match expr {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => Some(number_value(n, false)),
            SqlValue::SingleQuotedString(s) => {
                Some(Value::Bytes(literal::unescape(s.as_bytes(), b'\'')))
            }
            SqlValue::DoubleQuotedString(s) => {
                Some(Value::Bytes(literal::unescape(s.as_bytes(), b'"')))
            }
            SqlValue::HexStringLiteral(h) => hex::decode(h).ok().map(Value::HexVal),
            SqlValue::Null => Some(Value::Null),
            SqlValue::Placeholder(_) => params(expr),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => Some(number_value(n, true)),
                _ => None,
            },
            _ => None,
        },
        Expr::Nested(inner) => literal_value(inner, params),
        _ => None,
    }
}

fn number_value(text: &str, negative: bool) -> Value {
    if let Some(hex) = text.strip_prefix("0x") {
        return literal::hex_literal(&format!("0x{hex}"))
            .map(Value::HexNum)
            .unwrap_or_else(|| Value::Decimal(text.to_string()));
    }
    if negative {
        return match text.parse::<i64>() {
            Ok(v) => Value::Int(-v),
            Err(_) => Value::Decimal(format!("-{text}")),
        };
    }
    if let Ok(v) = text.parse::<i64>() {
        Value::Int(v)
    } else if let Ok(v) = text.parse::<u64>() {
        Value::Uint(v)
    } else {
        Value::Decimal(text.to_string())
    }
}

/// The values a predicate restricts one table's vindex column to.
fn predicate_values(
    expr: &Expr,
    table: &TableUse<'_>,
    single_table: bool,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Option<Vec<Value>> {
    column_values(expr, table, table.vindex_column()?, single_table, params)
}

/// The values a predicate pins `column` of `table` to: `c = v`, `c IN (...)`, and ORs of
/// those.
fn column_values(
    expr: &Expr,
    table: &TableUse<'_>,
    column: &str,
    single_table: bool,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Option<Vec<Value>> {
    let is_column = |e: &Expr| match column_ref(e) {
        Some((Some(q), c)) => {
            q.eq_ignore_ascii_case(&table.qualifier) && c.eq_ignore_ascii_case(column)
        }
        Some((None, c)) => single_table && c.eq_ignore_ascii_case(column),
        None => false,
    };
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            if is_column(left) {
                literal_value(right, params).map(|v| vec![v])
            } else if is_column(right) {
                literal_value(left, params).map(|v| vec![v])
            } else {
                None
            }
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated: false,
            ..
        } if is_column(expr) => list.iter().map(|e| literal_value(e, params)).collect(),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => {
            let mut l = column_values(left, table, column, single_table, params)?;
            l.extend(column_values(right, table, column, single_table, params)?);
            Some(l)
        }
        Expr::Nested(inner) => column_values(inner, table, column, single_table, params),
        _ => None,
    }
}

/// For a block that scatters: the lookup that narrows it, when a sharded table of the block
/// has a lookup vindex column pinned to values by a top-level conjunct of the WHERE clause
/// (the cheapest such vindex; write-only vindexes are being backfilled and never route).
///
/// A block that scatters whole has its sharded tables joined on their primary vindex
/// columns, so every row it returns includes a row of the pinned table, and with it lives
/// on a shard the lookup names (an `=` or `IN` conjunct rejects the NULL rows an outer
/// join would add).
pub(crate) fn lookup_narrowing(
    uses: &[TableUse<'_>],
    selection: Option<&Expr>,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Option<LookupStep> {
    let terms = selection.map(conjuncts).unwrap_or_default();
    let single_table = uses.len() == 1;
    uses.iter()
        .filter_map(|table| match &table.placement {
            Placement::Sharded { lookups, .. } => Some((table, lookups)),
            _ => None,
        })
        .flat_map(|(table, lookups)| {
            lookups
                .iter()
                .filter(|l| !l.lookup.is_write_only())
                .map(move |l| (table, l))
        })
        .filter_map(|(table, l)| {
            let values = terms
                .iter()
                .find_map(|t| column_values(t, table, &l.column, single_table, params))?;
            Some((table, l, values))
        })
        .min_by_key(|(_, l, _)| l.cost)
        .map(|(table, l, values)| LookupStep::new(&table.keyspace.name, l, &values))
}

/// The index of the shard of `keyspace` that holds `id`.
pub(crate) fn shard_of(keyspace: &KeyspaceRouting, id: &KeyspaceId) -> Result<usize, PlanError> {
    keyspace.shard_index(id.as_bytes()).ok_or_else(|| {
        PlanError::Vindex(format!(
            "keyspace id {} is in no shard of keyspace {}",
            id.to_hex(),
            keyspace.name
        ))
    })
}

/// The shards (indices into the keyspace's shard list) that `values` of `vindex` reach.
pub(crate) fn shards_for_values(
    keyspace: &KeyspaceRouting,
    vindex: &Vindex,
    values: &[Value],
) -> Result<BTreeSet<usize>, PlanError> {
    let destinations = vindex
        .map(values)
        .map_err(|e| PlanError::Vindex(e.to_string()))?;
    let mut shards = BTreeSet::new();
    for d in destinations {
        match d {
            Destination::KeyspaceId(id) => {
                shards.insert(shard_of(keyspace, &id)?);
            }
            Destination::None => {}
            Destination::KeyRange(kr) => {
                for (i, s) in keyspace.shards.iter().enumerate() {
                    if s.key_range.intersects(&kr) {
                        shards.insert(i);
                    }
                }
            }
            Destination::AllShards => shards.extend(0..keyspace.shards.len()),
        }
    }
    Ok(shards)
}

/// Routing of one SELECT/UPDATE/DELETE body over its FROM tables.
#[derive(Debug)]
pub(crate) struct Routing<'s> {
    pub keyspace: &'s KeyspaceRouting,
    /// Shard indices; every shard for a scatter.
    pub shards: Vec<usize>,
    /// True when the rows come from several shards and need merging.
    pub scatter: bool,
}

/// Decides the shards of a query block from its tables and WHERE clause.
pub(crate) fn route_tables<'s>(
    uses: &[TableUse<'s>],
    join_conditions: &[Expr],
    selection: Option<&Expr>,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Result<Option<Routing<'s>>, PlanError> {
    let Some(first) = uses.first() else {
        return Ok(None);
    };
    let keyspace = first.keyspace;
    if let Some(other) = uses.iter().find(|u| u.keyspace.name != keyspace.name) {
        return Err(PlanError::unsupported(format!(
            "a join across keyspaces ({} and {})",
            keyspace.name, other.keyspace.name
        )));
    }
    if !keyspace.sharded {
        return Ok(Some(Routing {
            keyspace,
            shards: vec![0],
            scatter: false,
        }));
    }
    let sharded: Vec<&TableUse<'s>> = uses
        .iter()
        .filter(|u| matches!(u.placement, Placement::Sharded { .. }))
        .collect();
    if sharded.is_empty() {
        // Only reference tables: any one shard has them all.
        return Ok(Some(Routing {
            keyspace,
            shards: vec![0],
            scatter: false,
        }));
    }
    let mut terms: Vec<&Expr> = selection.map(conjuncts).unwrap_or_default();
    for c in join_conditions {
        terms.extend(conjuncts(c));
    }
    let single_table = sharded.len() == 1 && uses.len() == 1;
    // Each sharded table's own restriction, intersected over its predicates.
    let mut per_table: Vec<Option<BTreeSet<usize>>> = Vec::with_capacity(sharded.len());
    for t in &sharded {
        let mut set: Option<BTreeSet<usize>> = None;
        if let Placement::Sharded { vindex, .. } = &t.placement {
            for term in &terms {
                if let Some(values) = predicate_values(term, t, single_table, params) {
                    let shards = shards_for_values(keyspace, vindex, &values)?;
                    set = Some(match set {
                        None => shards,
                        Some(prev) => prev.intersection(&shards).copied().collect(),
                    });
                }
            }
        }
        per_table.push(set);
    }
    let colocated = colocated(&sharded, &terms);
    let all = || (0..keyspace.shards.len()).collect::<BTreeSet<usize>>();
    let shards: BTreeSet<usize> =
        if colocated {
            per_table
                .iter()
                .flatten()
                .fold(None, |acc: Option<BTreeSet<usize>>, s| {
                    Some(match acc {
                        None => s.clone(),
                        Some(a) => a.intersection(s).copied().collect(),
                    })
                })
                .unwrap_or_else(all)
        } else {
            // Not joined on their vindex columns: only correct when every table is pinned to
            // one and the same shard.
            let singles: Option<Vec<usize>> = per_table
                .iter()
                .map(|s| match s {
                    Some(set) if set.len() == 1 => set.iter().next().copied(),
                    _ => None,
                })
                .collect();
            match singles {
                Some(v) if v.windows(2).all(|w| w[0] == w[1]) => v.into_iter().take(1).collect(),
                _ => return Err(PlanError::unsupported(
                    "a join of sharded tables that are not joined on their primary vindex columns",
                )),
            }
        };
    let mut shards: Vec<usize> = shards.into_iter().collect();
    if shards.is_empty() {
        // No row can match (`id IN (NULL)`): one shard answers with the right columns.
        shards.push(0);
    }
    let scatter = shards.len() > 1;
    Ok(Some(Routing {
        keyspace,
        shards,
        scatter,
    }))
}

/// True when every sharded table is connected to the others by equalities between their
/// primary vindex columns with the same vindex.
fn colocated(sharded: &[&TableUse<'_>], terms: &[&Expr]) -> bool {
    if sharded.len() <= 1 {
        return true;
    }
    let n = sharded.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let index_of = |e: &Expr| -> Option<usize> {
        let (q, c) = column_ref(e)?;
        let q = q?;
        sharded.iter().position(|t| {
            t.qualifier.eq_ignore_ascii_case(q)
                && t.vindex_column()
                    .is_some_and(|vc| vc.eq_ignore_ascii_case(c))
        })
    };
    for term in terms {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = term
        {
            if let (Some(a), Some(b)) = (index_of(left), index_of(right)) {
                let same_vindex = match (&sharded[a].placement, &sharded[b].placement) {
                    (
                        Placement::Sharded { vindex_name: x, .. },
                        Placement::Sharded { vindex_name: y, .. },
                    ) => x == y,
                    _ => false,
                };
                if same_vindex {
                    let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                    parent[ra] = rb;
                }
            }
        }
    }
    let root = find(&mut parent, 0);
    (1..n).all(|i| find(&mut parent, i) == root)
}

/// Every subquery inside a SELECT block (WHERE, projection, HAVING, derived tables).
pub(crate) fn has_subquery(statement: &Statement) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(statement, |e| {
        if matches!(
            e,
            Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::In {
                    target: InTarget::Subquery(_),
                    ..
                }
        ) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}
