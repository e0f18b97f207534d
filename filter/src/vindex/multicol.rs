//! `multicol`: a keyspace id built from several columns. Each column is hashed by its own
//! vindex (`hash` unless `column_vindex` says otherwise) and contributes its first
//! `column_bytes` bytes, in column order. Given only a prefix of the columns, it routes to
//! the key range of every id starting with that prefix (Vitess `multicol.go`).
//!
//! Params: `column_count` (1–8, required); `column_bytes`, a comma list whose empty or
//! missing entries share the bytes left of 8 as evenly as possible, rounding up from the
//! left (3 columns → 3,3,2); `column_vindex`, a comma list of vindex types. Other params
//! are passed to the column vindexes.

use std::collections::BTreeMap;

use super::{atoi, Ctx, Destination, KeyRange, KeyspaceId, Params, Value, Vindex, VindexError};

pub(crate) const PARAMS: &[&str] = &["column_count", "column_bytes", "column_vindex"];
const TYPE: &str = "multicol";

/// The `multicol` vindex.
#[derive(Debug, Clone)]
pub struct MultiCol {
    column_vindexes: Vec<Vindex>,
    column_bytes: Vec<usize>,
    cost: u32,
}

impl MultiCol {
    pub(crate) fn new(ctx: &Ctx<'_>, params: &Params) -> Result<Self, VindexError> {
        let count = column_count(ctx, params)?;
        let column_bytes = column_bytes(ctx, params, count)?;
        let column_vindexes = column_vindexes(ctx, params, count)?;
        let cost = column_vindexes.iter().map(Vindex::cost).sum();
        Ok(MultiCol {
            column_vindexes,
            column_bytes,
            cost,
        })
    }

    /// The number of columns.
    pub fn column_count(&self) -> usize {
        self.column_vindexes.len()
    }

    /// How many bytes of the keyspace id each column gives.
    pub fn column_bytes(&self) -> &[usize] {
        &self.column_bytes
    }

    /// The sum of the column vindexes' costs.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The destination of one row: a keyspace id for all columns, a key range for a prefix
    /// of them, none when a value does not hash or there are too many.
    pub fn map_row(&self, row: &[Value]) -> Destination {
        match self.keyspace_id(row) {
            Some((true, prefix)) => Destination::KeyRange(KeyRange::from_prefix(&prefix)),
            Some((false, ksid)) => Destination::KeyspaceId(KeyspaceId::new(ksid)),
            None => Destination::None,
        }
    }

    /// (partial, bytes) as Vitess `mapKsid`; `None` where Vitess returns an error.
    fn keyspace_id(&self, row: &[Value]) -> Option<(bool, Vec<u8>)> {
        if row.len() > self.column_vindexes.len() {
            return None;
        }
        let mut ksid = Vec::with_capacity(8);
        let mut min_length = 0;
        for (i, value) in row.iter().enumerate() {
            let column_hash = self.column_vindexes[i].hash(value).ok()?;
            if ksid.len() < min_length {
                ksid.resize(min_length, 0);
            }
            let take = self.column_bytes[i];
            ksid.extend(column_hash.as_bytes().iter().take(take));
            min_length += take;
        }
        Some((row.len() < self.column_vindexes.len(), ksid))
    }
}

fn column_count(ctx: &Ctx<'_>, params: &Params) -> Result<usize, VindexError> {
    let text = params.get("column_count").ok_or_else(|| {
        ctx.bad_param(
            TYPE,
            "column_count",
            "number of columns not provided in the parameter 'column_count'",
        )
    })?;
    let count = atoi(text).map_err(|e| ctx.bad_param(TYPE, "column_count", e))?;
    if !(1..=8).contains(&count) {
        return Err(ctx.bad_param(
            TYPE,
            "column_count",
            "number of columns should be between 1 and 8 in the parameter 'column_count'",
        ));
    }
    Ok(count as usize)
}

fn column_bytes(ctx: &Ctx<'_>, params: &Params, count: usize) -> Result<Vec<usize>, VindexError> {
    let given: Vec<&str> = params
        .get("column_bytes")
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    if given.len() > count {
        return Err(ctx.bad_param(
            TYPE,
            "column_bytes",
            "number of column bytes provided are more than column count in the parameter 'column_bytes'",
        ));
    }
    let mut bytes: BTreeMap<usize, usize> = BTreeMap::new();
    let mut used: i64 = 0;
    for (i, text) in given.iter().enumerate() {
        if text.is_empty() {
            continue;
        }
        let n = atoi(text).map_err(|e| ctx.bad_param(TYPE, "column_bytes", e))?;
        // Vitess accepts a negative count and then builds odd ids; refuse it instead.
        if n < 0 {
            return Err(ctx.bad_param(
                TYPE,
                "column_bytes",
                format!("column bytes must not be negative: {n}"),
            ));
        }
        used += n;
        bytes.insert(i, n as usize);
    }
    let mut pending = (count - bytes.len()) as i64;
    let mut remaining = 8 - used;
    if pending > remaining {
        return Err(ctx.bad_param(
            TYPE,
            "column_bytes",
            "column bytes count exceeds the keyspace id length (total bytes count cannot exceed 8 bytes) in the parameter 'column_bytes'",
        ));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        if let Some(n) = bytes.get(&i) {
            out.push(*n);
            continue;
        }
        // ceil(remaining / pending), as Vitess computes it with math.Ceil.
        let assign = (remaining + pending - 1) / pending;
        out.push(assign.max(0) as usize);
        remaining -= assign;
        pending -= 1;
    }
    Ok(out)
}

fn column_vindexes(
    ctx: &Ctx<'_>,
    params: &Params,
    count: usize,
) -> Result<Vec<Vindex>, VindexError> {
    let given: Vec<&str> = params
        .get("column_vindex")
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    if given.len() > count {
        return Err(ctx.bad_param(
            TYPE,
            "column_vindex",
            "number of vindex function provided are more than column count in the parameter 'column_vindex'",
        ));
    }
    let sub_params: Params = params
        .iter()
        .filter(|(k, _)| !PARAMS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let selected = given
            .get(i)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .unwrap_or("hash");
        let invalid = || {
            ctx.bad_param(
                TYPE,
                "column_vindex",
                format!(
                    "multicol vindex supports vindexes that exports hashing function, are unique and are non-lookup vindex, passed vindex '{selected}' is invalid"
                ),
            )
        };
        let vindex = Vindex::create_with_files(selected, selected, &sub_params, ctx.files)
            .map_err(|e| match e {
                VindexError::UnknownType { .. } | VindexError::NotSupported { .. } => {
                    ctx.bad_param(TYPE, "column_vindex", e.to_string())
                }
                other => other,
            })?;
        if !vindex.kind.is_hashing() || !vindex.is_unique() || vindex.needs_lookup() {
            return Err(invalid());
        }
        out.push(vindex);
    }
    Ok(out)
}
