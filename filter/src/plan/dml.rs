//! Planning INSERT, UPDATE and DELETE: rows routed by their primary vindex values, multi-row
//! INSERTs split per shard, auto-increment columns filled from a sequence, UPDATE/DELETE by
//! vindex predicate or on every shard.

use sqlparser::ast::{
    AssignmentTarget, Expr, FromTable, Ident, Insert, ObjectName, ObjectNamePart, OnInsert,
    SetExpr, Statement, TableObject, Value as SqlValue,
};

use super::error::PlanError;
use super::route::{self, Placement, TableUse};
use super::schema::RoutingSchema;
use super::{Plan, PlanContext, Route};
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
        let ks = schema
            .keyspace(&self.keyspace)
            .ok_or_else(|| PlanError::UnknownKeyspace(self.keyspace.clone()))?;
        let text = Statement::Insert(self.statement.clone()).to_string();
        if self.replicated {
            return Ok((0..ks.shards.len()).map(|i| (i, text.clone())).collect());
        }
        let vindex = ks
            .vindexes
            .get(&self.vindex_name)
            .ok_or_else(|| PlanError::Vindex(format!("vindex {} not found", self.vindex_name)))?;
        let Some(SetExpr::Values(values)) = self.statement.source.as_ref().map(|q| q.body.as_ref())
        else {
            return Err(PlanError::unsupported(
                "INSERT ... SELECT into a sharded table",
            ));
        };
        let mut per_shard: Vec<Vec<sqlparser::ast::Parens<Vec<Expr>>>> =
            vec![Vec::new(); ks.shards.len()];
        for row in &values.rows {
            let mut key = Vec::with_capacity(self.vindex_columns.len());
            for &c in &self.vindex_columns {
                let e = row.content.get(c).ok_or_else(|| {
                    PlanError::Syntax("Column count doesn't match value count".into())
                })?;
                let v = route::literal_value(e, &|_| None).ok_or_else(|| {
                    PlanError::unsupported(format!(
                        "a vindex column value that is not a literal ({e}) in INSERT"
                    ))
                })?;
                key.push(v);
            }
            let shards = if key.len() == 1 {
                route::shards_for_values(ks, vindex, &key)?
            } else {
                let d = vindex
                    .map_rows(&[key.clone()])
                    .map_err(|e| PlanError::Vindex(e.to_string()))?;
                let mut set = std::collections::BTreeSet::new();
                for dest in d {
                    if let crate::key::Destination::KeyspaceId(id) = dest {
                        if let Some(i) = ks.shard_index(id.as_bytes()) {
                            set.insert(i);
                        }
                    }
                }
                set
            };
            let shard = match (shards.len(), shards.iter().next()) {
                (1, Some(&s)) => s,
                _ => {
                    return Err(PlanError::Vindex(format!(
                        "could not map {} to a keyspace id",
                        key.iter()
                            .map(|v| format!("{v:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            };
            per_shard[shard].push(row.clone());
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
        Ok(out)
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
        };
    let (columns, vindex_name) = match &placement {
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
            ..
        } => (columns.clone(), vindex_name.to_string()),
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
            None => {
                plan.statement
                    .columns
                    .push(ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                        auto.column.clone(),
                    ))]));
                if let Some(SetExpr::Values(v)) =
                    plan.statement.source.as_mut().map(|q| q.body.as_mut())
                {
                    for row in &mut v.rows {
                        row.content.push(Expr::Value(SqlValue::Null.into()));
                    }
                }
                plan.statement.columns.len() - 1
            }
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
    if let Some(OnInsert::DuplicateKeyUpdate(assignments)) = &insert.on {
        for a in assignments {
            if let AssignmentTarget::ColumnName(n) = &a.target {
                if columns
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(&route::last_part(n)))
                {
                    return Err(PlanError::unsupported(format!(
                        "changing the primary vindex column {} of table {table} in ON DUPLICATE KEY UPDATE",
                        route::last_part(n)
                    )));
                }
            }
        }
    }
    // Prepared-statement parameters in vindex columns are resolved now.
    if let Some(SetExpr::Values(v)) = plan.statement.source.as_mut().map(|q| q.body.as_mut()) {
        for row in &mut v.rows {
            for &c in &plan.vindex_columns {
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
fn value_expr(v: &Value) -> Expr {
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
    Ok(write(Route::pass(&keyspace.name, routing.shards)))
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
