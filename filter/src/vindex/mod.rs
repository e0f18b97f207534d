//! Vindexes: the functions from column values to keyspace ids, byte-identical to Vitess's
//! `go/vt/vtgate/vindexes` (one file per vindex, as there), built from a VSchema's type
//! name and string params.
//!
//! A planner holds a [`Vindex`] and asks it what Vitess's `Vindex` interface answers:
//! [`Vindex::cost`], [`Vindex::is_unique`], [`Vindex::needs_lookup`] (Vitess
//! `NeedsVCursor`), [`Vindex::is_multi_column`] / [`Vindex::is_partial`], and
//! [`Vindex::map`] / [`Vindex::map_rows`] giving one [`Destination`] per value or row. What
//! an unusable value gives follows Vitess per vindex: `hash`, `numeric`, `reverse_bits`,
//! `numeric_static_map`, `multicol` and the region vindexes answer
//! [`Destination::None`]; `xxhash`, `binary` and `binary_md5` map every [`Value`] (their
//! only failure, bad hex, is caught when the value is built); `unicode_loose_md5` and
//! `unicode_loose_xxhash` fail the whole map on a value that is not UTF-8.
//!
//! Params that need a file (`numeric_static_map`'s `json_path`, `region_json`'s
//! `region_map`) are read through a [`ParamFileLoader`] that the caller supplies, so this
//! crate never touches the file system.

mod binary;
mod binary_md5;
mod hash;
mod lookup;
mod multicol;
mod null;
mod numeric;
mod numeric_static_map;
mod region_experimental;
mod region_json;
mod reverse_bits;
mod unicode_loose;
mod value;
mod xxhash;

use std::collections::BTreeMap;

pub use self::binary::Binary;
pub use self::binary_md5::BinaryMd5;
pub use self::hash::Hash;
pub use self::lookup::{Lookup, ToColumn};
pub use self::multicol::MultiCol;
pub use self::null::Null;
pub use self::numeric::Numeric;
pub use self::numeric_static_map::NumericStaticMap;
pub use self::region_experimental::RegionExperimental;
pub use self::region_json::RegionJson;
pub use self::reverse_bits::ReverseBits;
pub use self::unicode_loose::{loose_key, UnicodeLooseMd5, UnicodeLooseXxhash};
pub use self::value::{Value, ValueError};
pub use self::xxhash::Xxhash;
pub use crate::key::{Destination, KeyRange, KeyspaceId};

/// Vindex params as they appear in a VSchema: string keys to string values.
pub type Params = BTreeMap<String, String>;

/// Reads the file a vindex param names (`json_path`, `region_map`). The sidecar passes one
/// backed by the file system; tests pass an in-memory map.
pub trait ParamFileLoader {
    /// The contents of `path`, or a message saying why it cannot be read.
    fn load(&self, path: &str) -> Result<Vec<u8>, String>;
}

/// A loader with no files: every `json_path`/`region_map` param fails with a clear error.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl ParamFileLoader for NoFiles {
    fn load(&self, path: &str) -> Result<Vec<u8>, String> {
        Err(format!(
            "cannot read {path:?}: no file loader was given for vindex params"
        ))
    }
}

impl ParamFileLoader for BTreeMap<String, Vec<u8>> {
    fn load(&self, path: &str) -> Result<Vec<u8>, String> {
        self.get(path)
            .cloned()
            .ok_or_else(|| format!("open {path}: no such file or directory"))
    }
}

/// Building or using a vindex failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VindexError {
    /// The VSchema names a type that does not exist (Vitess: `vindexType %q not found`).
    #[error("vindex {name}: vindexType {vindex_type:?} not found")]
    UnknownType { name: String, vindex_type: String },
    /// A Vitess vindex type that Shardcar does not implement yet.
    #[error("vindex {name}: vindex type {vindex_type:?} is not supported yet: {reason}")]
    NotSupported {
        name: String,
        vindex_type: String,
        reason: &'static str,
    },
    /// A param is missing or has a bad value.
    #[error("vindex {name} ({vindex_type}): param {param}: {reason}")]
    BadParam {
        name: String,
        vindex_type: &'static str,
        param: &'static str,
        reason: String,
    },
    /// A single-column call on a multi-column vindex, or a multi-value row on a
    /// single-column one.
    #[error("vindex {name} ({vindex_type}): {reason}")]
    WrongArity {
        name: String,
        vindex_type: &'static str,
        reason: String,
    },
    /// `reverse_map` on a vindex that cannot turn keyspace ids back into values.
    #[error("vindex {name} ({vindex_type}) is not reversible")]
    NotReversible {
        name: String,
        vindex_type: &'static str,
    },
    /// `hash` on a vindex that does not export a hashing function (Vitess `Hashing`).
    #[error("vindex {name} ({vindex_type}) does not export a hashing function")]
    NotHashing {
        name: String,
        vindex_type: &'static str,
    },
    /// `map` on a lookup vindex: its keyspace ids live in a table.
    #[error("vindex {name} ({vindex_type}) maps values through its lookup table")]
    NeedsLookup {
        name: String,
        vindex_type: &'static str,
    },
    /// A keyspace id that the vindex cannot reverse (message as Vitess's).
    #[error("{0}")]
    InvalidKeyspaceId(String),
    /// A value that cannot be hashed.
    #[error(transparent)]
    Value(#[from] ValueError),
}

/// The concrete vindex behind a [`Vindex`].
#[derive(Debug, Clone)]
pub enum VindexKind {
    Hash(Hash),
    Xxhash(Xxhash),
    Numeric(Numeric),
    ReverseBits(ReverseBits),
    Binary(Binary),
    BinaryMd5(BinaryMd5),
    UnicodeLooseMd5(UnicodeLooseMd5),
    UnicodeLooseXxhash(UnicodeLooseXxhash),
    Null(Null),
    MultiCol(MultiCol),
    NumericStaticMap(NumericStaticMap),
    RegionExperimental(RegionExperimental),
    RegionJson(RegionJson),
    Lookup(Lookup),
}

/// Vindex types that exist in Vitess and are not implemented here, with the reason.
const NOT_SUPPORTED: &[(&str, &str)] = &[
    (
        "lookup_unicodeloosemd5_hash",
        "this deprecated lookup type is not implemented; use lookup_hash over a unicode_loose_md5 column",
    ),
    (
        "lookup_unicodeloosemd5_hash_unique",
        "this deprecated lookup type is not implemented; use lookup_hash_unique over a unicode_loose_md5 column",
    ),
    ("cfc", "the cfc vindex is not implemented yet"),
];

/// A named vindex of a keyspace, ready to map values.
#[derive(Debug, Clone)]
pub struct Vindex {
    name: String,
    kind: VindexKind,
    unknown_params: Vec<String>,
}

impl Vindex {
    /// Builds the vindex `name` of type `vindex_type` (Vitess `CreateVindex`). Params that
    /// name files fail; use [`Vindex::create_with_files`] for those.
    pub fn create(vindex_type: &str, name: &str, params: &Params) -> Result<Vindex, VindexError> {
        Self::create_with_files(vindex_type, name, params, &NoFiles)
    }

    /// Builds a vindex, reading `json_path`/`region_map` files through `files`.
    pub fn create_with_files(
        vindex_type: &str,
        name: &str,
        params: &Params,
        files: &dyn ParamFileLoader,
    ) -> Result<Vindex, VindexError> {
        let ctx = Ctx { name, files };
        let (kind, known): (VindexKind, &[&str]) = match vindex_type {
            "hash" => (VindexKind::Hash(Hash), &[]),
            "xxhash" => (VindexKind::Xxhash(Xxhash), &[]),
            "numeric" => (VindexKind::Numeric(Numeric), &[]),
            "reverse_bits" => (VindexKind::ReverseBits(ReverseBits), &[]),
            "binary" => (VindexKind::Binary(Binary), &[]),
            "binary_md5" => (VindexKind::BinaryMd5(BinaryMd5), &[]),
            "unicode_loose_md5" => (VindexKind::UnicodeLooseMd5(UnicodeLooseMd5), &[]),
            "unicode_loose_xxhash" => (VindexKind::UnicodeLooseXxhash(UnicodeLooseXxhash), &[]),
            "null" => (VindexKind::Null(Null), &[]),
            "multicol" => (
                VindexKind::MultiCol(MultiCol::new(&ctx, params)?),
                multicol::PARAMS,
            ),
            "numeric_static_map" => (
                VindexKind::NumericStaticMap(NumericStaticMap::new(&ctx, params)?),
                numeric_static_map::PARAMS,
            ),
            "region_experimental" => (
                VindexKind::RegionExperimental(RegionExperimental::new(&ctx, params)?),
                region_experimental::PARAMS,
            ),
            "region_json" => (
                VindexKind::RegionJson(RegionJson::new(&ctx, params)?),
                region_json::PARAMS,
            ),
            other => match Lookup::new(&ctx, other, params) {
                Some(built) => (VindexKind::Lookup(built?), lookup::PARAMS),
                None => {
                    if let Some((_, reason)) = NOT_SUPPORTED.iter().find(|(t, _)| *t == other) {
                        return Err(VindexError::NotSupported {
                            name: name.to_string(),
                            vindex_type: other.to_string(),
                            reason,
                        });
                    }
                    return Err(VindexError::UnknownType {
                        name: name.to_string(),
                        vindex_type: other.to_string(),
                    });
                }
            },
        };
        let unknown_params = params
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok(Vindex {
            name: name.to_string(),
            kind,
            unknown_params,
        })
    }

    /// The vindex's name in the VSchema.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The concrete vindex.
    pub fn kind(&self) -> &VindexKind {
        &self.kind
    }

    /// The Vitess type name (`hash`, `multicol`, …).
    pub fn vindex_type(&self) -> &'static str {
        self.kind.type_name()
    }

    /// Params the vindex does not use, in order (Vitess `UnknownParams`): tolerated, and
    /// worth a warning.
    pub fn unknown_params(&self) -> &[String] {
        &self.unknown_params
    }

    /// The planner's cost: lower is preferred (Vitess `Cost`).
    pub fn cost(&self) -> u32 {
        match &self.kind {
            VindexKind::Numeric(_) | VindexKind::Binary(_) => 0,
            VindexKind::Null(_) => 100,
            VindexKind::MultiCol(m) => m.cost(),
            VindexKind::Lookup(l) if l.is_unique() => 10,
            VindexKind::Lookup(_) => 20,
            _ => 1,
        }
    }

    /// True when every value maps to at most one keyspace id (all but the non-unique
    /// lookup vindexes).
    pub fn is_unique(&self) -> bool {
        match &self.kind {
            VindexKind::Lookup(l) => l.is_unique(),
            _ => true,
        }
    }

    /// True when mapping needs a query (the lookup vindexes): [`Vindex::map`] refuses, and
    /// [`Vindex::lookup`] gives what the planner needs to read the lookup table.
    pub fn needs_lookup(&self) -> bool {
        matches!(self.kind, VindexKind::Lookup(_))
    }

    /// The lookup table's params, for a lookup vindex.
    pub fn lookup(&self) -> Option<&Lookup> {
        match &self.kind {
            VindexKind::Lookup(l) => Some(l),
            _ => None,
        }
    }

    /// True for vindexes over several columns (`multicol`, the region vindexes): use
    /// [`Vindex::map_rows`].
    pub fn is_multi_column(&self) -> bool {
        matches!(
            self.kind,
            VindexKind::MultiCol(_) | VindexKind::RegionExperimental(_) | VindexKind::RegionJson(_)
        )
    }

    /// True when a prefix of the columns still routes, to a key range (Vitess
    /// `PartialVindex`: `multicol`, `region_experimental`).
    pub fn is_partial(&self) -> bool {
        matches!(
            self.kind,
            VindexKind::MultiCol(_) | VindexKind::RegionExperimental(_)
        )
    }

    /// True when [`Vindex::reverse_map`] works (Vitess `Reversible`).
    pub fn is_reversible(&self) -> bool {
        matches!(
            self.kind,
            VindexKind::Hash(_)
                | VindexKind::Numeric(_)
                | VindexKind::ReverseBits(_)
                | VindexKind::Binary(_)
        )
    }

    /// Maps the values of a single-column vindex, one destination per value.
    pub fn map(&self, ids: &[Value]) -> Result<Vec<Destination>, VindexError> {
        self.check_functional()?;
        if self.is_multi_column() {
            return Err(self.arity("a multi-column vindex maps rows: use map_rows".to_string()));
        }
        ids.iter()
            .map(|id| self.kind.map_one(id).map_err(VindexError::from))
            .collect()
    }

    /// Maps rows of column values, one destination per row. A multi-column vindex takes
    /// its columns in VSchema order (a prefix of them for a partial lookup); a
    /// single-column vindex takes rows of exactly one value.
    pub fn map_rows<R: AsRef<[Value]>>(&self, rows: &[R]) -> Result<Vec<Destination>, VindexError> {
        self.check_functional()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let row = row.as_ref();
            let dest = match &self.kind {
                VindexKind::MultiCol(m) => m.map_row(row),
                VindexKind::RegionExperimental(r) => r.map_row(row),
                VindexKind::RegionJson(r) => r.map_row(row),
                single => match row {
                    [id] => single.map_one(id)?,
                    _ => {
                        return Err(self.arity(format!(
                            "a single-column vindex needs rows of 1 value, got {}",
                            row.len()
                        )))
                    }
                },
            };
            out.push(dest);
        }
        Ok(out)
    }

    /// The keyspace id of one value (Vitess `Hashing.Hash`), for vindexes that export it:
    /// `hash`, `xxhash`, `numeric`, `reverse_bits`, `binary`, `binary_md5`,
    /// `unicode_loose_md5`, `unicode_loose_xxhash`, `numeric_static_map`.
    pub fn hash(&self, id: &Value) -> Result<KeyspaceId, VindexError> {
        self.kind
            .hash(id)
            .ok_or_else(|| VindexError::NotHashing {
                name: self.name.clone(),
                vindex_type: self.vindex_type(),
            })?
            .map(KeyspaceId::new)
            .map_err(VindexError::from)
    }

    /// The values that map to these keyspace ids (Vitess `ReverseMap`), for reversible
    /// vindexes: `hash`, `numeric`, `reverse_bits` give `Value::Uint`, `binary` gives
    /// `Value::Bytes`.
    pub fn reverse_map(&self, ksids: &[KeyspaceId]) -> Result<Vec<Value>, VindexError> {
        ksids
            .iter()
            .map(|ksid| {
                let ksid = ksid.as_bytes();
                match &self.kind {
                    VindexKind::Hash(h) => h.reverse(ksid),
                    VindexKind::Numeric(n) => n.reverse(ksid),
                    VindexKind::ReverseBits(r) => r.reverse(ksid),
                    VindexKind::Binary(b) => b.reverse(ksid),
                    _ => Err(VindexError::NotReversible {
                        name: self.name.clone(),
                        vindex_type: self.vindex_type(),
                    }),
                }
            })
            .collect()
    }

    fn check_functional(&self) -> Result<(), VindexError> {
        if self.needs_lookup() {
            return Err(VindexError::NeedsLookup {
                name: self.name.clone(),
                vindex_type: self.vindex_type(),
            });
        }
        Ok(())
    }

    fn arity(&self, reason: String) -> VindexError {
        VindexError::WrongArity {
            name: self.name.clone(),
            vindex_type: self.vindex_type(),
            reason,
        }
    }
}

impl VindexKind {
    /// The Vitess type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            VindexKind::Hash(_) => "hash",
            VindexKind::Xxhash(_) => "xxhash",
            VindexKind::Numeric(_) => "numeric",
            VindexKind::ReverseBits(_) => "reverse_bits",
            VindexKind::Binary(_) => "binary",
            VindexKind::BinaryMd5(_) => "binary_md5",
            VindexKind::UnicodeLooseMd5(_) => "unicode_loose_md5",
            VindexKind::UnicodeLooseXxhash(_) => "unicode_loose_xxhash",
            VindexKind::Null(_) => "null",
            VindexKind::MultiCol(_) => "multicol",
            VindexKind::NumericStaticMap(_) => "numeric_static_map",
            VindexKind::RegionExperimental(_) => "region_experimental",
            VindexKind::RegionJson(_) => "region_json",
            VindexKind::Lookup(l) => l.type_name(),
        }
    }

    /// True for vindexes that export Vitess's `Hashing.Hash`.
    pub fn is_hashing(&self) -> bool {
        !matches!(
            self,
            VindexKind::Null(_)
                | VindexKind::MultiCol(_)
                | VindexKind::RegionExperimental(_)
                | VindexKind::RegionJson(_)
                | VindexKind::Lookup(_)
        )
    }

    /// Single-column Map of one value. A value that does not hash maps nowhere, except
    /// for the unicode_loose vindexes, where Vitess fails the whole Map on invalid UTF-8.
    fn map_one(&self, id: &Value) -> Result<Destination, ValueError> {
        Ok(match self {
            VindexKind::Null(n) => n.map(id),
            other => match other.hash(id) {
                Some(Ok(ksid)) => Destination::KeyspaceId(KeyspaceId::new(ksid)),
                Some(Err(e @ ValueError::InvalidUtf8(_))) => return Err(e),
                _ => Destination::None,
            },
        })
    }

    /// Vitess `Hashing.Hash`; `None` for vindexes without one.
    fn hash(&self, id: &Value) -> Option<Result<Vec<u8>, ValueError>> {
        Some(match self {
            VindexKind::Hash(h) => h.hash(id),
            VindexKind::Xxhash(x) => Ok(x.hash(id)),
            VindexKind::Numeric(n) => n.hash(id),
            VindexKind::ReverseBits(r) => r.hash(id),
            VindexKind::Binary(b) => Ok(b.hash(id)),
            VindexKind::BinaryMd5(b) => Ok(b.hash(id)),
            VindexKind::UnicodeLooseMd5(u) => u.hash(id),
            VindexKind::UnicodeLooseXxhash(u) => u.hash(id),
            VindexKind::NumericStaticMap(m) => m.hash(id),
            VindexKind::Null(_)
            | VindexKind::MultiCol(_)
            | VindexKind::RegionExperimental(_)
            | VindexKind::RegionJson(_)
            | VindexKind::Lookup(_) => return None,
        })
    }
}

/// What a vindex constructor needs besides its params.
pub(crate) struct Ctx<'a> {
    pub name: &'a str,
    pub files: &'a dyn ParamFileLoader,
}

impl Ctx<'_> {
    pub fn bad_param(
        &self,
        vindex_type: &'static str,
        param: &'static str,
        reason: impl Into<String>,
    ) -> VindexError {
        VindexError::BadParam {
            name: self.name.to_string(),
            vindex_type,
            param,
            reason: reason.into(),
        }
    }
}

/// Go's `strconv.Atoi` error text for a bad integer param.
pub(crate) fn atoi(text: &str) -> Result<i64, String> {
    text.parse::<i64>().map_err(|_| {
        format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            value::go_quote(text.as_bytes())
        )
    })
}

#[cfg(test)]
mod tests;
