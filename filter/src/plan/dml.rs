//! Planning INSERT, UPDATE and DELETE: rows routed by their primary vindex values, multi-row
//! INSERTs split per shard, auto-increment columns filled from a sequence, UPDATE/DELETE by
//! vindex predicate or on every shard.

use sqlparser::ast::{
    AssignmentTarget, Expr, FromTable, Ident, Insert, ObjectName, ObjectNamePart, OnInsert,
    SetExpr, Statement, TableObject, Value as SqlValue,
};

use super::error::PlanError;
use super::lookup::{self, LookupWrites, NewValue, OwnerRows};
use super::route::{self, Placement, TableUse};
use super::schema::{KeyspaceRouting, RoutingSchema};
use super::{Plan, PlanContext, Route};
use crate::key::{Destination, KeyspaceId};
use crate::vindex::Value;

/// Ids a sharded INSERT needs from a sequence before it can be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceNeed {
    /// The unsharded keyspace holding the sequence table.
    pub keyspace: String,
    /// The sequence table.
    pub table: String,
    /// How many ids.
    pub count: usize,
}

/// A sharded INSERT: its rows, the column positions the vindex reads, and the sequence it
/// waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertPlan {
    pub keyspace: String,
    statement: Insert,
    vindex_name: String,
    vindex_columns: Vec<usize>,
    /// Position of the auto-increment column and the rows (by index) that need an id.
    auto: Option<(usize, Vec<usize>)>,
    pub sequence: Option<SequenceNeed>,
    /// A reference table: the same INSERT on every shard.
    replicated: bool,
    /// The lookup vindexes the table owns, with the position of their column.
    lookups: Vec<(String, usize)>,
    /// INSERT IGNORE or ON DUPLICATE KEY UPDATE: a row may already be there, and so may
    /// its lookup rows.
    ignore: bool,
}

impl InsertPlan {
    /// Fills the auto-increment column of the rows that need it with `first`, `first + 1`,
    /// ...; returns the id of the first such row (the session's `LAST_INSERT_ID()`).
    pub fn fill_sequence(&mut self, first: i64) -> Option<i64> {
        let (col, rows) = self.auto.take()?;
        let SetExpr::Values(values) = self.statement.source.as_mut()?.body.as_mut() else {
            return None;
        };
        for (n, &r) in rows.iter().enumerate() {
            let id = first + n as i64;
            if let Some(cell) = values
                .rows
                .get_mut(r)
                .and_then(|row| row.content.get_mut(col))
            {
                *cell = Expr::Value(SqlValue::Number(id.to_string(), false).into());
            }
        }
        self.sequence = None;
        (!rows.is_empty()).then_some(first)
    }

    /// A reference table: every shard runs the same INSERT and one OK is the answer.
    pub fn is_replicated(&self) -> bool {
        self.replicated
    }

    /// The INSERT each shard runs: its own rows only.
    pub fn shard_statements(
        &self,
        schema: &RoutingSchema,
    ) -> Result<Vec<(usize, String)>, PlanError> {
        Ok(self.statements(schema)?.0)
    }

    /// True for INSERT ... ON DUPLICATE KEY UPDATE.
    pub fn is_upsert(&self) -> bool {
        self.statement.on.is_some()
    }

    /// Removes the rows at `indices` (positions in the VALUES list) from the INSERT, for
    /// rows an INSERT IGNORE must skip; returns how many rows remain.
    pub fn drop_rows(&mut self, indices: &std::collections::BTreeSet<usize>) -> usize {
        let Some(SetExpr::Values(values)) = self.statement.source.as_mut().map(|q| q.body.as_mut())
        else {
            return 0;
        };
        let mut i = 0;
        values.rows.retain(|_| {
            i += 1;
            !indices.contains(&(i - 1))
        });
        values.rows.len()
    }

    /// The INSERT each shard runs, and the lookup rows of the vindexes the table owns
    /// (written before the rows themselves, and removed again, `undo`, if the INSERT
    /// fails outside a transaction). Each row's keyspace id is computed once for both.
    pub fn statements(
        &self,
        schema: &RoutingSchema,
    ) -> Result<(Vec<(usize, String)>, LookupWrites), PlanError> {
        let ks = schema
            .keyspace(&self.keyspace)
            .ok_or_else(|| PlanError::UnknownKeyspace(self.keyspace.clone()))?;
        let text = Statement::Insert(self.statement.clone()).to_string();
        if self.replicated {
            let all = (0..ks.shards.len()).map(|i| (i, text.clone())).collect();
            return Ok((all, LookupWrites::default()));
        }
        let Some(SetExpr::Values(values)) = self.statement.source.as_ref().map(|q| q.body.as_ref())
        else {
            return Err(PlanError::unsupported(
                "INSERT ... SELECT into a sharded table",
            ));
        };
        let ids = self.keyspace_ids(ks, values)?;
        let mut per_shard: Vec<Vec<sqlparser::ast::Parens<Vec<Expr>>>> =
            vec![Vec::new(); ks.shards.len()];
        for (row, id) in values.rows.iter().zip(&ids) {
            per_shard[route::shard_of(ks, id)?].push(row.clone());
        }
        let mut out = Vec::new();
        for (i, rows) in per_shard.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let mut stmt = self.statement.clone();
            if let Some(SetExpr::Values(v)) = stmt.source.as_mut().map(|q| q.body.as_mut()) {
                v.rows = rows;
            }
            out.push((i, Statement::Insert(stmt).to_string()));
        }
        Ok((out, self.lookup_writes(schema, values, &ids)?))
    }
}

impl InsertPlan {
    /// The keyspace id of every row, from its primary vindex columns.
    fn keyspace_ids(
        &self,
        ks: &KeyspaceRouting,
        values: &sqlparser::ast::Values,
    ) -> Result<Vec<KeyspaceId>, PlanError> {
        let vindex = ks
            .vindexes
            .get(&self.vindex_name)
            .ok_or_else(|| PlanError::Vindex(format!("vindex {} not found", self.vindex_name)))?;
        let mut out = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            let key = self.row_values(row, &self.vindex_columns)?;
            let destinations = vindex
                .map_rows(&[key.as_slice()])
                .map_err(|e| PlanError::Vindex(e.to_string()))?;
            match destinations.into_iter().next() {
                Some(Destination::KeyspaceId(id)) => out.push(id),
                _ => {
                    return Err(PlanError::Vindex(format!(
                        "could not map {} to a keyspace id",
                        key.iter()
                            .map(|v| format!("{v:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            }
        }
        Ok(out)
    }

    /// The literal values of a row's columns at `positions`.
    fn row_values(
        &self,
        row: &sqlparser::ast::Parens<Vec<Expr>>,
        positions: &[usize],
    ) -> Result<Vec<Value>, PlanError> {
        positions
            .iter()
            .map(|&c| {
                let e = row.content.get(c).ok_or_else(|| {
                    PlanError::Syntax("Column count doesn't match value count".into())
                })?;
                route::literal_value(e, &|_| None).ok_or_else(|| {
                    PlanError::unsupported(format!(
                        "a vindex column value that is not a literal ({e}) in INSERT"
                    ))
                })
            })
            .collect()
    }

    /// The lookup rows of `values` (with keyspace ids `ids`) for the vindexes the table
    /// owns.
    fn lookup_writes(
        &self,
        schema: &RoutingSchema,
        values: &sqlparser::ast::Values,
        ids: &[KeyspaceId],
    ) -> Result<LookupWrites, PlanError> {
        let mut writes = LookupWrites::default();
        let table = self.statement.table.to_string();
        for (vindex, column) in &self.lookups {
            let (_, lookup) = lookup::keyspace_lookup(schema, &self.keyspace, vindex)?;
            let mut rows = Vec::with_capacity(ids.len());
            for (row, id) in values.rows.iter().zip(ids) {
                rows.push((self.row_values(row, &[*column])?, id.clone()));
            }
            let name = self
                .statement
                .columns
                .get(*column)
                .map(route::last_part)
                .unwrap_or_default();
            let owner = lookup::Owner {
                table: &table,
                column: &name,
            };
            writes
                .before
                .extend(lookup::lookup_insert(lookup, &rows, self.ignore, &owner)?);
            if !self.ignore {
                writes.undo.extend(lookup::delete_rows(lookup, &rows)?);
            }
        }
        Ok(writes)
    }
}

/// Plans an INSERT or REPLACE.
pub(crate) fn plan_insert(
    schema: &RoutingSchema,
    insert: &Insert,
    ctx: &PlanContext<'_>,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Result<Plan, PlanError> {
    let TableObject::TableName(name) = &insert.table else {
        return Err(PlanError::unsupported("INSERT into a table function"));
    };
    let (ks, placement) = match route::resolve(schema, name, ctx)? {
        route::Resolved::Table(ks, p) => (ks, p),
        route::Resolved::System => {
            return Err(PlanError::unsupported("INSERT into a system schema"))
        }
    };
    let statement = Statement::Insert(insert.clone());
    let source_tables = route::statement_tables(schema, &statement, ctx)?;
    if !ks.sharded {
        return Ok(Plan::Route(Route {
            write: true,
            ..Route::pass(&ks.name, vec![0])
        }));
    }
    if source_tables.keyspace.is_some_and(|k| k.name != ks.name) {
        return Err(PlanError::unsupported("INSERT across keyspaces"));
    }
    let has_select = !matches!(
        insert.source.as_ref().map(|q| q.body.as_ref()),
        Some(SetExpr::Values(_))
    );
    if has_select || !insert.assignments.is_empty() {
        return Err(PlanError::unsupported(
            "INSERT ... SELECT or INSERT ... SET into a sharded keyspace",
        ));
    }
    if matches!(insert.on, Some(OnInsert::OnConflict(_))) || insert.returning.is_some() {
        return Err(PlanError::unsupported("this INSERT form"));
    }
    let plan_base =
        |vindex_name: String, vindex_columns: Vec<usize>, replicated: bool| InsertPlan {
            keyspace: ks.name.clone(),
            statement: insert.clone(),
            vindex_name,
            vindex_columns,
            auto: None,
            sequence: None,
            replicated,
            lookups: Vec::new(),
            ignore: insert.ignore || insert.on.is_some(),
        };
    let (columns, vindex_name, lookups) = match &placement {
        Placement::Reference => {
            return Ok(Plan::Insert(Box::new(plan_base(
                String::new(),
                Vec::new(),
                true,
            ))))
        }
        Placement::Unsharded => unreachable_unsharded()?,
        Placement::Sharded {
            columns,
            vindex_name,
            lookups,
            ..
        } => (columns.clone(), vindex_name.to_string(), lookups),
    };
    let table = route::last_part(name);
    route::check_maintainable(schema, ks, &table)?;
    if insert.columns.is_empty() {
        return Err(PlanError::unsupported(format!(
            "INSERT into the sharded table {table} without a column list"
        )));
    }
    let names: Vec<String> = insert.columns.iter().map(route::last_part).collect();
    let position = |c: &str| names.iter().position(|n| n.eq_ignore_ascii_case(c));
    let mut plan = plan_base(vindex_name, Vec::new(), false);
    // The auto-increment column, filled from the sequence where missing or NULL.
    let table_schema = ks_table(schema, &ks.name, &table);
    if let Some(auto) = table_schema.and_then(|t| t.auto_increment.clone()) {
        let (seq_ks, seq_table) = match auto.sequence.split_once('.') {
            Some((k, t)) => (k.to_string(), t.to_string()),
            None => {
                let found = schema
                    .vschema
                    .find_table(&auto.sequence, None)
                    .map_err(|e| {
                        PlanError::unsupported(format!("sequence {}: {e}", auto.sequence))
                    })?;
                (found.keyspace.to_string(), auto.sequence.clone())
            }
        };
        let col = match position(&auto.column) {
            Some(c) => c,
            None => add_null_column(&mut plan.statement, &auto.column),
        };
        let mut need = Vec::new();
        if let Some(SetExpr::Values(v)) = plan.statement.source.as_ref().map(|q| q.body.as_ref()) {
            for (r, row) in v.rows.iter().enumerate() {
                let missing = match row.content.get(col) {
                    Some(e) => {
                        matches!(route::literal_value(e, params), Some(Value::Null))
                            || matches!(e, Expr::Identifier(i) if i.value.eq_ignore_ascii_case("default"))
                    }
                    None => true,
                };
                if missing {
                    need.push(r);
                }
            }
        }
        if !need.is_empty() {
            plan.sequence = Some(SequenceNeed {
                keyspace: seq_ks,
                table: seq_table,
                count: need.len(),
            });
            plan.auto = Some((col, need));
        }
    }
    let names: Vec<String> = plan
        .statement
        .columns
        .iter()
        .map(route::last_part)
        .collect();
    for c in &columns {
        let i = names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(c))
            .ok_or_else(|| {
                PlanError::unsupported(format!(
                    "INSERT into {table} without its primary vindex column {c}"
                ))
            })?;
        plan.vindex_columns.push(i);
    }
    for l in lookups.iter().filter(|l| l.owned) {
        let i = match names.iter().position(|n| n.eq_ignore_ascii_case(&l.column)) {
            Some(i) => i,
            // Left out, the column is written as NULL, as Vitess does, so that the lookup
            // row and the owner row agree.
            None => add_null_column(&mut plan.statement, &l.column),
        };
        plan.lookups.push((l.vindex_name.to_string(), i));
    }
    if let Some(OnInsert::DuplicateKeyUpdate(assignments)) = &insert.on {
        for a in assignments {
            if let AssignmentTarget::ColumnName(n) = &a.target {
                let name = route::last_part(n);
                if columns.iter().any(|c| c.eq_ignore_ascii_case(&name)) {
                    return Err(PlanError::unsupported(format!(
                        "changing the primary vindex column {name} of table {table} in ON DUPLICATE KEY UPDATE"
                    )));
                }
                if let Some(l) = lookups
                    .iter()
                    .find(|l| l.owned && l.column.eq_ignore_ascii_case(&name))
                {
                    return Err(PlanError::unsupported(format!(
                        "changing the lookup vindex column {name} of table {table} (vindex {}) in ON DUPLICATE KEY UPDATE",
                        l.vindex_name
                    )));
                }
            }
        }
    }
    // Prepared-statement parameters in vindex columns are resolved now.
    if let Some(SetExpr::Values(v)) = plan.statement.source.as_mut().map(|q| q.body.as_mut()) {
        for row in &mut v.rows {
            for &c in plan
                .vindex_columns
                .iter()
                .chain(plan.lookups.iter().map(|(_, c)| c))
            {
                if let Some(e) = row.content.get_mut(c) {
                    if let Some(val) = route::literal_value(e, params) {
                        if matches!(e, Expr::Value(x) if matches!(x.value, SqlValue::Placeholder(_)))
                        {
                            *e = value_expr(&val);
                        }
                    }
                }
            }
        }
    }
    Ok(Plan::Insert(Box::new(plan)))
}

/// Adds `column` with NULL in every row to an INSERT's column list; returns its position.
fn add_null_column(statement: &mut Insert, column: &str) -> usize {
    statement
        .columns
        .push(ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
            column.to_string(),
        ))]));
    if let Some(SetExpr::Values(v)) = statement.source.as_mut().map(|q| q.body.as_mut()) {
        for row in &mut v.rows {
            row.content.push(Expr::Value(SqlValue::Null.into()));
        }
    }
    statement.columns.len() - 1
}

fn unreachable_unsharded<T>() -> Result<T, PlanError> {
    Err(PlanError::unsupported(
        "an unsharded table in a sharded keyspace",
    ))
}

fn ks_table<'s>(
    schema: &'s RoutingSchema,
    ks: &str,
    table: &str,
) -> Option<&'s crate::vschema::Table> {
    schema.vschema.keyspace(ks)?.tables.get(table)
}

/// A literal expression for a vindex value.
pub(crate) fn value_expr(v: &Value) -> Expr {
    let value = match v {
        Value::Null => SqlValue::Null,
        Value::Int(i) => SqlValue::Number(i.to_string(), false),
        Value::Uint(u) => SqlValue::Number(u.to_string(), false),
        Value::Decimal(d) => SqlValue::Number(d.clone(), false),
        Value::Bytes(b) | Value::HexNum(b) | Value::HexVal(b) => {
            let q = crate::sql::literal::quote_string(b);
            match q.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
                Some(body) => SqlValue::SingleQuotedString(body.to_string()),
                None => SqlValue::HexStringLiteral(hex::encode(b)),
            }
        }
    };
    Expr::Value(value.into())
}

/// Plans an UPDATE or DELETE.
pub(crate) fn plan_update_delete(
    schema: &RoutingSchema,
    statement: &Statement,
    ctx: &PlanContext<'_>,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Result<Route, PlanError> {
    let (_, keyspace) = route::statement_keyspace(schema, statement, ctx)?;
    let write = |r: Route| Route { write: true, ..r };
    if !keyspace.sharded {
        return Ok(write(Route::pass(&keyspace.name, vec![0])));
    }
    let (from, selection, limit, verb) = match statement {
        Statement::Update(u) => {
            let mut from = vec![u.table.clone()];
            if let Some(f) = &u.from {
                match f {
                    sqlparser::ast::UpdateTableFromKind::BeforeSet(t)
                    | sqlparser::ast::UpdateTableFromKind::AfterSet(t) => {
                        from.extend(t.iter().cloned())
                    }
                }
            }
            (from, u.selection.as_ref(), u.limit.is_some(), "UPDATE")
        }
        Statement::Delete(d) => {
            let tables = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t.clone(),
            };
            let mut from = tables;
            if let Some(u) = &d.using {
                from.extend(u.iter().cloned());
            }
            (from, d.selection.as_ref(), d.limit.is_some(), "DELETE")
        }
        _ => return Err(PlanError::unsupported("this statement")),
    };
    let (uses, joins, derived) = route::from_tables(schema, &from, ctx)?;
    for twj in &from {
        if let sqlparser::ast::TableFactor::Table { name, .. } = &twj.relation {
            route::check_maintainable(schema, keyspace, &route::last_part(name))?;
        }
    }
    if derived {
        return Err(PlanError::unsupported(format!(
            "{verb} with a derived table in a sharded keyspace"
        )));
    }
    if let Statement::Update(u) = statement {
        for a in &u.assignments {
            let targets: Vec<&ObjectName> = match &a.target {
                AssignmentTarget::ColumnName(n) => vec![n],
                AssignmentTarget::Tuple(ns) => ns.iter().collect(),
            };
            for t in targets {
                check_vindex_assignment(&uses, t)?;
            }
        }
    }
    if uses
        .iter()
        .all(|u| matches!(u.placement, Placement::Reference))
    {
        let all = (0..keyspace.shards.len()).collect();
        return Ok(write(Route::pass(&keyspace.name, all)).replicated());
    }
    let routing = route::route_tables(&uses, &joins, selection, params)?
        .ok_or_else(|| PlanError::unsupported(format!("{verb} without a table")))?;
    if route::has_subquery(statement) && routing.scatter {
        return Err(PlanError::unsupported(format!(
            "{verb} with a subquery across shards"
        )));
    }
    if route::has_subquery(statement) {
        return Err(PlanError::unsupported(format!(
            "{verb} with a subquery in a sharded keyspace"
        )));
    }
    if routing.scatter && limit {
        return Err(PlanError::unsupported(format!(
            "{verb} with LIMIT across shards"
        )));
    }
    let mut route = write(Route::pass(&keyspace.name, routing.shards));
    if routing.scatter {
        route.lookup = route::lookup_narrowing(&uses, selection, params).map(Box::new);
    }
    route.owner_rows = owner_rows(statement, &from, &uses, selection, limit, params)?.map(Box::new);
    Ok(route)
}

/// For an UPDATE or DELETE of a table that owns lookup vindexes: the rows to read first
/// (a DELETE removes every lookup row of its rows; an UPDATE replaces those of the lookup
/// columns it sets).
fn owner_rows(
    statement: &Statement,
    from: &[sqlparser::ast::TableWithJoins],
    uses: &[TableUse<'_>],
    selection: Option<&Expr>,
    limit: bool,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Result<Option<OwnerRows>, PlanError> {
    let owners: Vec<&TableUse<'_>> = uses
        .iter()
        .filter(|u| matches!(&u.placement, Placement::Sharded { lookups, .. } if lookups.iter().any(|l| l.owned)))
        .collect();
    let Some(owner) = owners.first() else {
        return Ok(None);
    };
    let Placement::Sharded {
        columns,
        vindex_name,
        lookups,
        ..
    } = &owner.placement
    else {
        return Ok(None);
    };
    let mut kept: Vec<(&lookup::ColumnLookup<'_>, Option<NewValue>)> = Vec::new();
    match statement {
        Statement::Update(u) => {
            let mut assigned: Vec<String> = Vec::new();
            for a in &u.assignments {
                let AssignmentTarget::ColumnName(n) = &a.target else {
                    continue;
                };
                let name = route::last_part(n);
                let lookup = lookups
                    .iter()
                    .find(|l| l.owned && l.column.eq_ignore_ascii_case(&name));
                if let Some(l) = lookup {
                    let value = match route::literal_value(&a.value, params) {
                        Some(v) => NewValue::Literal(v),
                        None => {
                            readable_expression(&a.value, &assigned).map_err(|why| {
                                PlanError::unsupported(format!(
                                    "setting the lookup vindex column {name} of table {} to {why} ({}); use a literal or an expression of the row's other columns",
                                    owner.qualifier, a.value
                                ))
                            })?;
                            NewValue::Expression(a.value.to_string())
                        }
                    };
                    kept.push((l, Some(value)));
                }
                assigned.push(name);
            }
        }
        _ => kept.extend(lookups.iter().filter(|l| l.owned).map(|l| (l, None))),
    }
    if kept.is_empty() {
        return Ok(None);
    }
    let verb = if matches!(statement, Statement::Update(_)) {
        "UPDATE"
    } else {
        "DELETE"
    };
    let single = from.len() == 1 && from[0].joins.is_empty() && owners.len() == 1;
    if !single || limit {
        return Err(PlanError::unsupported(format!(
            "{verb} with {} of table {}, whose lookup vindex {} must be maintained",
            if limit { "LIMIT" } else { "a join" },
            owner.qualifier,
            kept[0].0.vindex_name
        )));
    }
    Ok(Some(OwnerRows::new(
        &owner.keyspace.name,
        &from[0].relation.to_string(),
        (vindex_name, columns),
        kept,
        selection,
    )))
}

/// Functions whose value may change between the read before an UPDATE and the UPDATE
/// itself: a lookup column set from one of them cannot be known in advance.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "rand",
    "uuid",
    "uuid_short",
    "sys_guid",
    "now",
    "sysdate",
    "current_timestamp",
    "current_time",
    "current_date",
    "curdate",
    "curtime",
    "localtime",
    "localtimestamp",
    "unix_timestamp",
    "utc_timestamp",
    "utc_date",
    "utc_time",
    "nextval",
    "lastval",
    "setval",
    "last_insert_id",
    "row_count",
    "found_rows",
    "connection_id",
    "sleep",
    "get_lock",
    "release_lock",
    "benchmark",
];

/// `Ok` when the read before an UPDATE can compute `expr` as the UPDATE will: it is
/// deterministic, has no subquery or placeholder, and reads no column that an earlier
/// assignment of the same UPDATE changes (MySQL applies them left to right). Otherwise
/// what it contains.
fn readable_expression(expr: &Expr, assigned: &[String]) -> Result<(), &'static str> {
    use std::ops::ControlFlow;
    let verdict = sqlparser::ast::visit_expressions(expr, |e| {
        let why = match e {
            Expr::Subquery(_) | Expr::Exists { .. } => Some("an expression with a subquery"),
            Expr::In { target, .. } if !matches!(target, sqlparser::ast::InTarget::List(_)) => {
                Some("an expression with a subquery")
            }
            Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Placeholder(_)) => {
                Some("an expression with a placeholder")
            }
            Expr::Function(f) => {
                let name = route::last_part(&f.name).to_ascii_lowercase();
                VOLATILE_FUNCTIONS
                    .contains(&name.as_str())
                    .then_some("an expression whose value can change between two reads")
            }
            Expr::Identifier(i) if assigned.iter().any(|a| a.eq_ignore_ascii_case(&i.value)) => {
                Some("an expression of a column the same UPDATE sets before it")
            }
            Expr::CompoundIdentifier(parts)
                if parts
                    .last()
                    .is_some_and(|i| assigned.iter().any(|a| a.eq_ignore_ascii_case(&i.value))) =>
            {
                Some("an expression of a column the same UPDATE sets before it")
            }
            _ => None,
        };
        match why {
            Some(w) => ControlFlow::Break(w),
            None => ControlFlow::Continue(()),
        }
    });
    match verdict {
        ControlFlow::Break(why) => Err(why),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn check_vindex_assignment(uses: &[TableUse<'_>], target: &ObjectName) -> Result<(), PlanError> {
    let parts = route::name_parts(target).unwrap_or_default();
    let (qualifier, column) = match parts.as_slice() {
        [c] => (None, *c),
        [.., q, c] => (Some(*q), *c),
        [] => return Ok(()),
    };
    for u in uses {
        if let Placement::Sharded {
            columns,
            vindex_name,
            ..
        } = &u.placement
        {
            let table_matches = qualifier.is_none_or(|q| q.eq_ignore_ascii_case(&u.qualifier));
            if table_matches && columns.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                return Err(PlanError::unsupported(format!(
                    "changing the primary vindex column {column} of table {} (vindex {vindex_name})",
                    u.qualifier
                )));
            }
        }
    }
    Ok(())
}
