//! Lookup vindexes in plans: a statement that would scatter but names values of a column
//! with a lookup vindex first reads the lookup table ([`LookupStep`]) and then runs only
//! on the shards it names; writes to an owner table add and remove the lookup rows
//! ([`LookupWrites`]).
//!
//! Rows are written before the owner's and removed after it, so a failure between the two
//! leaves an orphan lookup row (it widens a lookup by one shard, which costs a query and
//! never a result) and never an owner row that its lookup cannot find. A consistent lookup
//! takes an orphan holding a unique value over ([`Takeover`]).

use std::collections::BTreeSet;

use super::error::PlanError;
use super::merge::Row;
use super::schema::{KeyspaceRouting, RoutingSchema};
use crate::key::{Destination, KeyspaceId};
use crate::protocol::column::ColumnDefinition;
use crate::protocol::value::Value as ProtoValue;
use crate::vindex::{Lookup, Value};

/// A lookup vindex on one column of a table.
#[derive(Debug, Clone)]
pub(crate) struct ColumnLookup<'s> {
    /// The owner table's column (the lookup's `from`).
    pub column: String,
    pub vindex_name: &'s str,
    pub lookup: &'s Lookup,
    /// The table is the vindex's owner: its writes keep the lookup rows.
    pub owned: bool,
    pub cost: u32,
}

/// Read the lookup table, then run on the shards its rows name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupStep {
    /// `SELECT <to> FROM <table> WHERE <from> IN (...)`, planned like a client's query.
    pub query: String,
    keyspace: String,
    vindex: String,
}

impl LookupStep {
    pub(crate) fn new(keyspace: &str, vindex: &ColumnLookup<'_>, values: &[Value]) -> Self {
        let lookup = vindex.lookup;
        let list: Vec<String> = values.iter().map(sql_literal).collect();
        LookupStep {
            query: format!(
                "SELECT {to} FROM {table} WHERE {from} IN ({list})",
                to = lookup.to_column(),
                table = lookup.table(),
                from = lookup.from_columns().join(", "),
                list = list.join(", "),
            ),
            keyspace: keyspace.to_string(),
            vindex: vindex.vindex_name.to_string(),
        }
    }

    /// The shards (of the route's keyspace) that the lookup rows `rows` (one `<to>` cell
    /// each) name.
    pub fn shards(
        &self,
        schema: &RoutingSchema,
        rows: &[Row],
    ) -> Result<BTreeSet<usize>, PlanError> {
        let (ks, lookup) = keyspace_lookup(schema, &self.keyspace, &self.vindex)?;
        let mut shards = BTreeSet::new();
        for row in rows {
            let cell = row.first().and_then(|c| c.as_deref());
            if let Some(id) = lookup.keyspace_id(cell) {
                if let Some(i) = ks.shard_index(id.as_bytes()) {
                    shards.insert(i);
                }
            }
        }
        Ok(shards)
    }
}

/// The statements that keep an owner table's lookup rows around the owner's own write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupWrites {
    /// Run first: rows for the values the write adds.
    pub before: Vec<LookupInsert>,
    /// Run once the write succeeded: rows of the values it removed.
    pub after: Vec<String>,
    /// Run when the write failed outside a transaction: takes `before` back.
    pub undo: Vec<String>,
}

/// One lookup row: the owner's `from` values and its keyspace id.
pub(crate) type LookupRow = (Vec<Value>, KeyspaceId);

/// Lookup rows written before the owner's write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupInsert {
    /// `INSERT [IGNORE] INTO <table> (<from>, <to>) VALUES ...`.
    pub sql: String,
    /// For a consistent lookup vindex, one per row: how to take its value over from an
    /// orphan lookup row when `sql` fails with a duplicate (Vitess `consistent_lookup`).
    /// Empty: a duplicate is the client's error.
    pub takeovers: Vec<Takeover>,
    /// Under IGNORE (INSERT IGNORE, ON DUPLICATE KEY UPDATE) for a unique lookup, per
    /// owner row (by its index in the INSERT): a query for the lookup row that names it.
    /// No row means the value is another row's, so this row is a duplicate: MySQL would
    /// not insert it, and inserting it would leave a row its lookup cannot find.
    pub verify: Vec<(usize, String)>,
}

/// Taking one value of a consistent lookup over. Run in order: [`Takeover::lock`]; no row:
/// [`Takeover::insert`]; one row: [`Takeover::owner`], and when no owner row holds the
/// value, the lookup row is an orphan (an earlier write died between the lookup row and
/// the owner's) and [`Takeover::update`] points it at the new row, unless it already does
/// ([`Takeover::points_here`]). An owner row found means a real duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// `SELECT <to> FROM <table> WHERE <from> = <value> FOR UPDATE`.
    pub lock: String,
    /// `INSERT INTO <table> (<from>, <to>) VALUES (<value>, <to>)`.
    pub insert: String,
    /// `SELECT <column> FROM <owner> WHERE <column> = <value> FOR UPDATE`, routed through
    /// the lookup to the shard the existing row names.
    pub owner: String,
    /// `UPDATE <table> SET <to> = <to> WHERE <from> = <value>`.
    pub update: String,
    /// The new row's `<to>` cell.
    to: Vec<u8>,
}

impl Takeover {
    /// True when the existing lookup row's `<to>` cell already names the new row.
    pub fn points_here(&self, existing: Option<&[u8]>) -> bool {
        existing == Some(self.to.as_slice())
    }
}

/// The owner table and column of a lookup vindex, as a statement names them.
pub(crate) struct Owner<'a> {
    pub table: &'a str,
    pub column: &'a str,
}

/// The lookup rows `rows` of an owner's write, with takeovers for a consistent lookup
/// (none under IGNORE, where a duplicate is not an error, nor when the write itself
/// repeats a value).
pub(crate) fn lookup_insert(
    lookup: &Lookup,
    rows: &[LookupRow],
    ignore: bool,
    owner: &Owner<'_>,
) -> Result<Option<LookupInsert>, PlanError> {
    let Some(sql) = insert_rows(lookup, rows, ignore)? else {
        return Ok(None);
    };
    let (from, to, table) = (
        lookup.from_columns().join(", "),
        lookup.to_column(),
        lookup.table(),
    );
    let repeats_a_value = || {
        let values: BTreeSet<String> = rows.iter().map(|(from, _)| format!("{from:?}")).collect();
        values.len() != rows.len()
    };
    let mut takeovers = Vec::new();
    if lookup.is_consistent() && !ignore && !repeats_a_value() {
        for (_, value, new_to) in valued_rows(lookup, rows)? {
            let new_to_sql = sql_literal(&new_to);
            takeovers.push(Takeover {
                lock: format!("SELECT {to} FROM {table} WHERE {from} = {value} FOR UPDATE"),
                insert: format!(
                    "INSERT INTO {table} ({from}, {to}) VALUES ({value}, {new_to_sql})"
                ),
                owner: format!(
                    "SELECT {col} FROM {owner} WHERE {col} = {value} FOR UPDATE",
                    col = owner.column,
                    owner = owner.table
                ),
                update: format!("UPDATE {table} SET {to} = {new_to_sql} WHERE {from} = {value}"),
                to: new_to.to_bytes().into_owned(),
            });
        }
    }
    let mut verify = Vec::new();
    if ignore && lookup.is_unique() {
        for (i, value, new_to) in valued_rows(lookup, rows)? {
            let new_to = sql_literal(&new_to);
            verify.push((
                i,
                format!("SELECT {from} FROM {table} WHERE {from} = {value} AND {to} = {new_to}"),
            ));
        }
    }
    Ok(Some(LookupInsert {
        sql,
        takeovers,
        verify,
    }))
}

/// The rows of a one-column lookup whose value is not NULL (NULL is never a duplicate in
/// a unique key): their index, the value as SQL, and the `<to>` value naming the row.
fn valued_rows(
    lookup: &Lookup,
    rows: &[LookupRow],
) -> Result<Vec<(usize, String, Value)>, PlanError> {
    let mut out = Vec::new();
    for (i, (from, ksid)) in rows.iter().enumerate() {
        let [value] = from.as_slice() else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let to = lookup
            .to_value(ksid)
            .map_err(|e| PlanError::Vindex(e.to_string()))?;
        out.push((i, sql_literal(value), to));
    }
    Ok(out)
}

/// `INSERT [IGNORE] INTO <table> (<from>, <to>) VALUES ...` for `rows`, or `None` when
/// every row is skipped (NULL `from` values under `ignore_nulls`).
pub(crate) fn insert_rows(
    lookup: &Lookup,
    rows: &[LookupRow],
    ignore: bool,
) -> Result<Option<String>, PlanError> {
    let tuples = tuples(lookup, rows)?;
    if tuples.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "INSERT {ignore}INTO {table} ({from}, {to}) VALUES {values}",
        ignore = if ignore { "IGNORE " } else { "" },
        table = lookup.table(),
        from = lookup.from_columns().join(", "),
        to = lookup.to_column(),
        values = tuples
            .iter()
            .map(|t| format!("({})", t.join(", ")))
            .collect::<Vec<_>>()
            .join(", "),
    )))
}

/// `DELETE FROM <table> WHERE (<from> = ... AND <to> = ...) OR ...` for `rows`.
pub(crate) fn delete_rows(
    lookup: &Lookup,
    rows: &[LookupRow],
) -> Result<Option<String>, PlanError> {
    let tuples = tuples(lookup, rows)?;
    if tuples.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = lookup
        .from_columns()
        .iter()
        .map(String::as_str)
        .chain([lookup.to_column()])
        .collect();
    let conditions: Vec<String> = tuples
        .iter()
        .map(|t| {
            let terms: Vec<String> = names
                .iter()
                .zip(t)
                .map(|(n, v)| {
                    if v == "NULL" {
                        format!("{n} IS NULL")
                    } else {
                        format!("{n} = {v}")
                    }
                })
                .collect();
            format!("({})", terms.join(" AND "))
        })
        .collect();
    Ok(Some(format!(
        "DELETE FROM {table} WHERE {conditions}",
        table = lookup.table(),
        conditions = conditions.join(" OR "),
    )))
}

/// Each row as SQL literals: the `from` values, then `to`.
fn tuples(lookup: &Lookup, rows: &[LookupRow]) -> Result<Vec<Vec<String>>, PlanError> {
    let mut out = Vec::with_capacity(rows.len());
    for (from, ksid) in rows {
        if lookup.ignores_nulls() && from.iter().any(Value::is_null) {
            continue;
        }
        let to = lookup
            .to_value(ksid)
            .map_err(|e| PlanError::Vindex(e.to_string()))?;
        let mut t: Vec<String> = from.iter().map(sql_literal).collect();
        t.push(sql_literal(&to));
        out.push(t);
    }
    Ok(out)
}

/// The keyspace and lookup vindex `vindex` of `keyspace`.
pub(crate) fn keyspace_lookup<'s>(
    schema: &'s RoutingSchema,
    keyspace: &str,
    vindex: &str,
) -> Result<(&'s KeyspaceRouting, &'s Lookup), PlanError> {
    let ks = schema
        .keyspace(keyspace)
        .ok_or_else(|| PlanError::UnknownKeyspace(keyspace.to_string()))?;
    let lookup = ks
        .vindexes
        .get(vindex)
        .and_then(|v| v.lookup())
        .ok_or_else(|| PlanError::Vindex(format!("lookup vindex {vindex} not found")))?;
    Ok((ks, lookup))
}

/// A value as an SQL literal.
pub(crate) fn sql_literal(v: &Value) -> String {
    super::dml::value_expr(v).to_string()
}

/// The owner rows an UPDATE or DELETE touches, read before it runs, so that the lookup
/// rows of their old (and, for an UPDATE, new) values can be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRows {
    /// `SELECT <primary vindex columns>, <lookup columns> FROM <table> WHERE <the
    /// statement's WHERE>`, planned like a client's query.
    pub select: String,
    keyspace: String,
    primary: String,
    primary_columns: usize,
    /// The owner table as the statement names it.
    table: String,
    /// Each maintained lookup vindex and its column, with the value an UPDATE sets
    /// (`None`: a DELETE).
    lookups: Vec<(String, String, Option<NewValue>)>,
}

/// What an UPDATE sets a lookup column to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NewValue {
    /// A literal (or a prepared statement's parameter).
    Literal(Value),
    /// A deterministic expression over the row's columns (SQL text): the read before the
    /// UPDATE selects it, so each row's new value comes with the row.
    Expression(String),
}

impl OwnerRows {
    /// The read to run: inside a transaction it locks the rows (`FOR UPDATE`), so a
    /// concurrent write of the same rows waits and then reads the values this one leaves,
    /// and no lookup row is orphaned.
    pub fn read(&self, in_transaction: bool) -> String {
        if in_transaction {
            format!("{} FOR UPDATE", self.select)
        } else {
            self.select.clone()
        }
    }

    pub(crate) fn new(
        keyspace: &str,
        table: &str,
        primary: (&str, &[String]),
        lookups: Vec<(&ColumnLookup<'_>, Option<NewValue>)>,
        selection: Option<&sqlparser::ast::Expr>,
    ) -> Self {
        // Primary vindex columns, lookup columns, then the new values' expressions.
        let columns: Vec<&str> = primary
            .1
            .iter()
            .map(String::as_str)
            .chain(lookups.iter().map(|(l, _)| l.column.as_str()))
            .chain(lookups.iter().filter_map(|(_, v)| match v {
                Some(NewValue::Expression(e)) => Some(e.as_str()),
                _ => None,
            }))
            .collect();
        let select = match selection {
            Some(w) => format!("SELECT {} FROM {table} WHERE {w}", columns.join(", ")),
            None => format!("SELECT {} FROM {table}", columns.join(", ")),
        };
        OwnerRows {
            select,
            keyspace: keyspace.to_string(),
            primary: primary.0.to_string(),
            primary_columns: primary.1.len(),
            table: table.to_string(),
            lookups: lookups
                .into_iter()
                .map(|(l, v)| (l.vindex_name.to_string(), l.column.clone(), v))
                .collect(),
        }
    }

    /// The lookup writes for the owner rows `rows` (the answer to [`OwnerRows::select`]).
    pub fn writes(
        &self,
        schema: &RoutingSchema,
        columns: &[ColumnDefinition],
        rows: &[Row],
    ) -> Result<LookupWrites, PlanError> {
        let ks = schema
            .keyspace(&self.keyspace)
            .ok_or_else(|| PlanError::UnknownKeyspace(self.keyspace.clone()))?;
        let primary = ks
            .vindexes
            .get(&self.primary)
            .ok_or_else(|| PlanError::Vindex(format!("vindex {} not found", self.primary)))?;
        let value =
            |row: &Row, i: usize| cell_value(columns.get(i), row.get(i).and_then(|c| c.as_deref()));
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let key: Vec<Value> = (0..self.primary_columns).map(|i| value(row, i)).collect();
            match primary
                .map_rows(&[key])
                .map_err(|e| PlanError::Vindex(e.to_string()))?
                .pop()
            {
                Some(Destination::KeyspaceId(id)) => ids.push(id),
                _ => {
                    return Err(PlanError::Vindex(
                        "an owner row maps to no keyspace id".into(),
                    ))
                }
            }
        }
        let mut writes = LookupWrites::default();
        let is_expression = |v: &Option<NewValue>| matches!(v, Some(NewValue::Expression(_)));
        for (n, (vindex, column, new)) in self.lookups.iter().enumerate() {
            let (_, lookup) = keyspace_lookup(schema, &self.keyspace, vindex)?;
            let at = self.primary_columns + n;
            // Expressions are read after all lookup columns, in the same order.
            let read_at = is_expression(new).then(|| {
                let before = self.lookups[..n].iter().filter(|l| is_expression(&l.2));
                self.primary_columns + self.lookups.len() + before.count()
            });
            let mut old_rows = Vec::new();
            let mut new_rows = Vec::new();
            for (row, id) in rows.iter().zip(&ids) {
                let old = value(row, at);
                let new = match (new, read_at) {
                    (Some(NewValue::Literal(v)), _) => Some(v.clone()),
                    (Some(NewValue::Expression(_)), Some(i)) => Some(value(row, i)),
                    _ => None,
                };
                match new {
                    Some(v) if v.raw() == old.raw() && v.is_null() == old.is_null() => {}
                    Some(v) => {
                        old_rows.push((vec![old], id.clone()));
                        new_rows.push((vec![v], id.clone()));
                    }
                    None => old_rows.push((vec![old], id.clone())),
                }
            }
            let owner = Owner {
                table: &self.table,
                column,
            };
            writes
                .before
                .extend(lookup_insert(lookup, &new_rows, false, &owner)?);
            writes.undo.extend(delete_rows(lookup, &new_rows)?);
            writes.after.extend(delete_rows(lookup, &old_rows)?);
        }
        Ok(writes)
    }
}

/// A result cell as a vindex value, typed by its column: integers as numbers (so `hash`
/// sees a negative id as MySQL stored it), everything else as the bytes MySQL sent.
fn cell_value(column: Option<&ColumnDefinition>, cell: Option<&[u8]>) -> Value {
    let Some(bytes) = cell else {
        return Value::Null;
    };
    match column.map(|c| ProtoValue::from_text(cell, c)) {
        Some(Ok(ProtoValue::Int(i))) => Value::Int(i),
        Some(Ok(ProtoValue::UInt(u))) => Value::Uint(u),
        _ => Value::Bytes(bytes.to_vec()),
    }
}
