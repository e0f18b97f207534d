//! Vindex functions as tables, as in Vitess: `SELECT id, keyspace_id, range_start,
//! range_end, hex_keyspace_id, shard FROM hash WHERE id = 1` (or `id IN (...)`, or
//! `ks.hash`) answers, for each value, its keyspace id and the shard that holds it.

use sqlparser::ast::{BinaryOperator, Expr, InTarget, Query, SelectItem, SetExpr, TableFactor};

use super::error::PlanError;
use super::merge::Row;
use super::route::{column_ref, literal_value, shards_for_values};
use super::schema::RoutingSchema;
use super::{Plan, PlanContext};
use crate::key::Destination;
use crate::protocol::column::ColumnDefinition;
use crate::protocol::constants::column_type;
use crate::vindex::Value;

const COLUMNS: [&str; 6] = [
    "id",
    "keyspace_id",
    "range_start",
    "range_end",
    "hex_keyspace_id",
    "shard",
];

/// The answer of a vindex-function query, or `None` when `query` does not name a vindex.
pub(crate) fn plan(
    schema: &RoutingSchema,
    query: &Query,
    ctx: &PlanContext<'_>,
) -> Option<Result<Plan, PlanError>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table { name, .. } = &from.relation else {
        return None;
    };
    let parts = super::route::name_parts(name)?;
    let (ks_name, vindex_name) = match parts.as_slice() {
        [v] => (None, *v),
        [k, v] => (Some(*k), *v),
        _ => return None,
    };
    // A table of that name wins over a vindex.
    let qualified = match ks_name {
        Some(k) => format!("{k}.{vindex_name}"),
        None => vindex_name.to_string(),
    };
    if schema
        .vschema
        .find_table(&qualified, ks_name.or(ctx.default_keyspace))
        .is_ok_and(|t| t.table.is_some())
    {
        return None;
    }
    let keyspace = match ks_name.or(ctx.default_keyspace) {
        Some(k) => schema
            .keyspace(k)
            .filter(|ks| ks.vindexes.contains_key(vindex_name))?,
        None => {
            let mut found = schema
                .keyspaces()
                .filter(|ks| ks.vindexes.contains_key(vindex_name));
            let first = found.next()?;
            if found.next().is_some() {
                return Some(Err(PlanError::unsupported(format!(
                    "the vindex {vindex_name} without a keyspace: several keyspaces have one"
                ))));
            }
            first
        }
    };
    let vindex = keyspace.vindexes.get(vindex_name)?;
    Some(answer(
        keyspace,
        vindex,
        select.selection.as_ref(),
        &select.projection,
    ))
}

fn answer(
    keyspace: &super::schema::KeyspaceRouting,
    vindex: &crate::vindex::Vindex,
    selection: Option<&Expr>,
    projection: &[SelectItem],
) -> Result<Plan, PlanError> {
    let values = selection.and_then(id_values).ok_or_else(|| {
        PlanError::unsupported("a vindex function without WHERE id = <value> or id IN (<values>)")
    })?;
    let mut picked: Vec<(usize, String)> = Vec::new();
    for item in projection {
        match item {
            SelectItem::Wildcard(_) => {
                picked.extend(COLUMNS.iter().enumerate().map(|(i, c)| (i, c.to_string())))
            }
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let Some((_, col)) = column_ref(e) else {
                    return Err(PlanError::unsupported(
                        "expressions in a vindex function query",
                    ));
                };
                let i = COLUMNS
                    .iter()
                    .position(|c| c.eq_ignore_ascii_case(col))
                    .ok_or_else(|| {
                        PlanError::Syntax(format!("Unknown column '{col}' in 'field list'"))
                    })?;
                let name = match item {
                    SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                    _ => col.to_string(),
                };
                picked.push((i, name));
            }
            _ => {
                return Err(PlanError::unsupported(
                    "this select item in a vindex function query",
                ))
            }
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    for value in &values {
        let destinations = vindex
            .map(std::slice::from_ref(value))
            .map_err(|e| PlanError::Vindex(e.to_string()))?;
        let Some(Destination::KeyspaceId(id)) = destinations.into_iter().next() else {
            continue;
        };
        let shards = shards_for_values(keyspace, vindex, std::slice::from_ref(value))?;
        let Some(shard) = shards.iter().next().and_then(|&i| keyspace.shards.get(i)) else {
            continue;
        };
        let full = [
            Some(value_text(value)),
            Some(id.as_bytes().to_vec()),
            Some(shard.key_range.start.clone()),
            Some(shard.key_range.end.clone()),
            Some(id.to_hex().into_bytes()),
            Some(shard.name.clone().into_bytes()),
        ];
        rows.push(picked.iter().map(|(i, _)| full[*i].clone()).collect());
    }
    let columns = picked
        .iter()
        .map(|(_, name)| {
            let mut c = ColumnDefinition::new(name.as_str(), column_type::VAR_STRING);
            c.charset = 63;
            c
        })
        .collect();
    Ok(Plan::Answer { columns, rows })
}

fn id_values(e: &Expr) -> Option<Vec<Value>> {
    let is_id = |e: &Expr| column_ref(e).is_some_and(|(_, c)| c.eq_ignore_ascii_case("id"));
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } if is_id(left) => literal_value(right, &|_| None).map(|v| vec![v]),
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated: false,
            ..
        } if is_id(expr) => list.iter().map(|e| literal_value(e, &|_| None)).collect(),
        Expr::Nested(inner) => id_values(inner),
        _ => None,
    }
}

fn value_text(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Uint(u) => u.to_string().into_bytes(),
        Value::Decimal(d) => d.clone().into_bytes(),
        Value::Bytes(b) | Value::HexNum(b) | Value::HexVal(b) => b.clone(),
    }
}
