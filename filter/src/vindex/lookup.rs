//! The lookup family: vindexes backed by a table of `from → to` rows that some other part
//! of the VSchema holds (Vitess `lookup.go`, `lookup_hash.go`, `consistent_lookup.go`).
//!
//! A lookup vindex cannot map a value by itself: the planner reads `<to>` for the values
//! from `<table>` and hands the cells back here. `lookup`/`lookup_unique` and the
//! consistent variants store the keyspace id verbatim in `<to>`; `lookup_hash` and
//! `lookup_hash_unique` store a uint64 whose `hash` is the keyspace id (Vitess
//! `vunhash`/`vhash`). The owner table's writes keep the rows; see `plan::lookup`.

use super::hash::{vhash, vunhash};
use super::{Ctx, KeyspaceId, Params, Value, VindexError};

pub(crate) const PARAMS: &[&str] = &[
    "table",
    "from",
    "to",
    "autocommit",
    "write_only",
    "ignore_nulls",
    "batch_lookup",
    "read_lock",
    "multi_shard_autocommit",
    "no_verify",
];

/// How `<to>` holds the keyspace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToColumn {
    /// The keyspace id's bytes.
    KeyspaceId,
    /// A uint64 that `hash` turns into the keyspace id.
    Hashed,
}

/// A lookup vindex's params.
#[derive(Debug, Clone)]
pub struct Lookup {
    type_name: &'static str,
    unique: bool,
    consistent: bool,
    to_column: ToColumn,
    table: String,
    from: Vec<String>,
    to: String,
    write_only: bool,
    ignore_nulls: bool,
}

impl Lookup {
    /// The lookup vindex types, with (unique, consistent, how `to` is stored).
    const TYPES: &'static [(&'static str, bool, bool, ToColumn)] = &[
        ("lookup", false, false, ToColumn::KeyspaceId),
        ("lookup_unique", true, false, ToColumn::KeyspaceId),
        ("lookup_hash", false, false, ToColumn::Hashed),
        ("lookup_hash_unique", true, false, ToColumn::Hashed),
        ("consistent_lookup", false, true, ToColumn::KeyspaceId),
        ("consistent_lookup_unique", true, true, ToColumn::KeyspaceId),
    ];

    /// Builds a vindex of type `vindex_type` from its params; `None` when that is not a
    /// lookup type.
    pub(crate) fn new(
        ctx: &Ctx<'_>,
        vindex_type: &str,
        params: &Params,
    ) -> Option<Result<Self, VindexError>> {
        let &(type_name, unique, consistent, to_column) =
            Self::TYPES.iter().find(|(t, ..)| *t == vindex_type)?;
        Some(Self::with_params(
            ctx, type_name, unique, consistent, to_column, params,
        ))
    }

    fn with_params(
        ctx: &Ctx<'_>,
        type_name: &'static str,
        unique: bool,
        consistent: bool,
        to_column: ToColumn,
        params: &Params,
    ) -> Result<Self, VindexError> {
        let required = |param: &'static str| -> Result<String, VindexError> {
            match params.get(param).map(|s| s.trim()) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(ctx.bad_param(type_name, param, format!("lookup: missing {param} param"))),
            }
        };
        let flag = |param: &'static str| -> Result<bool, VindexError> {
            match params.get(param).map(|s| s.trim()) {
                None | Some("") => Ok(false),
                Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
                Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
                Some(other) => Err(ctx.bad_param(
                    type_name,
                    param,
                    format!("{param} value must be 'true' or 'false': '{other}'"),
                )),
            }
        };
        let table = required("table")?;
        let from: Vec<String> = required("from")?
            .split(',')
            .map(|c| c.trim().to_string())
            .collect();
        if from.iter().any(String::is_empty) {
            return Err(ctx.bad_param(type_name, "from", "an empty column name"));
        }
        let to = required("to")?;
        for p in [
            "autocommit",
            "batch_lookup",
            "read_lock",
            "multi_shard_autocommit",
        ] {
            let _ = flag(p)?;
        }
        if consistent {
            let _ = flag("no_verify")?;
        }
        Ok(Lookup {
            type_name,
            unique,
            consistent,
            to_column,
            table,
            from,
            to,
            write_only: flag("write_only")?,
            ignore_nulls: flag("ignore_nulls")?,
        })
    }

    /// The Vitess type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Every value has at most one row (`*_unique`).
    pub fn is_unique(&self) -> bool {
        self.unique
    }

    /// `consistent_lookup[_unique]`: rows written ahead of the owner's, so a failed owner
    /// write leaves an orphan row that the next insert of the same value takes over.
    pub fn is_consistent(&self) -> bool {
        self.consistent
    }

    /// The lookup table, as the VSchema names it (`t` or `ks.t`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The `from` columns of the lookup table (the owner's columns, in order).
    pub fn from_columns(&self) -> &[String] {
        &self.from
    }

    /// The `to` column of the lookup table.
    pub fn to_column(&self) -> &str {
        &self.to
    }

    /// Being backfilled: maintained on writes, never used to route reads.
    pub fn is_write_only(&self) -> bool {
        self.write_only
    }

    /// Owner rows with a NULL `from` value get no lookup row.
    pub fn ignores_nulls(&self) -> bool {
        self.ignore_nulls
    }

    /// The keyspace id a `<to>` cell names; `None` for a cell that names none (NULL, or
    /// not a number for the hashed form).
    pub fn keyspace_id(&self, to: Option<&[u8]>) -> Option<KeyspaceId> {
        let to = to?;
        match self.to_column {
            ToColumn::KeyspaceId => Some(KeyspaceId::new(to.to_vec())),
            ToColumn::Hashed => {
                let n = std::str::from_utf8(to).ok()?.trim().parse::<u64>().ok()?;
                Some(KeyspaceId::new(vhash(n).to_vec()))
            }
        }
    }

    /// The `<to>` value that stores `ksid`.
    pub fn to_value(&self, ksid: &KeyspaceId) -> Result<Value, VindexError> {
        Ok(match self.to_column {
            ToColumn::KeyspaceId => Value::HexVal(ksid.as_bytes().to_vec()),
            ToColumn::Hashed => Value::Uint(vunhash(ksid.as_bytes())?),
        })
    }
}
