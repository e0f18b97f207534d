//! The vindex types a VSchema may name, with the properties validation needs to know about them.
//!
//! The list is Vitess's: the non-test `Register(...)` calls in `go/vt/vtgate/vindexes`. Validation
//! only needs each type's shape (unique or not, lookup or not, multi-column or not, required
//! params); computing keyspace ids is the job of the vindex implementations.

use std::collections::BTreeMap;

/// What validation needs to know about one vindex type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VindexKind {
    /// Maps a value to at most one keyspace id, so it may be a primary vindex.
    pub unique: bool,
    /// Backed by a lookup table, so it can be owned by a table.
    pub lookup: bool,
    /// Takes several columns at once (`multicol`); it may only be the primary vindex.
    pub multi_column: bool,
    /// Params that must be present and non-empty.
    pub required_params: &'static [&'static str],
}

const LOOKUP_PARAMS: &[&str] = &["table", "from", "to"];

impl VindexKind {
    /// A unique functional vindex (`hash`, `xxhash`, ...).
    pub const FUNCTIONAL_UNIQUE: VindexKind = VindexKind {
        unique: true,
        lookup: false,
        multi_column: false,
        required_params: &[],
    };
    /// A unique lookup vindex (`lookup_unique`, ...).
    pub const LOOKUP_UNIQUE: VindexKind = VindexKind {
        unique: true,
        lookup: true,
        multi_column: false,
        required_params: LOOKUP_PARAMS,
    };
    /// A non-unique lookup vindex (`lookup`, `consistent_lookup`, ...).
    pub const LOOKUP_NON_UNIQUE: VindexKind = VindexKind {
        unique: false,
        lookup: true,
        multi_column: false,
        required_params: LOOKUP_PARAMS,
    };
    /// A multi-column vindex (`multicol`).
    pub const MULTI_COLUMN: VindexKind = VindexKind {
        unique: true,
        lookup: false,
        multi_column: true,
        required_params: &["column_count"],
    };
}

/// The registered vindex types, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VindexTypes {
    kinds: BTreeMap<String, VindexKind>,
}

impl Default for VindexTypes {
    fn default() -> Self {
        VindexTypes::vitess()
    }
}

impl VindexTypes {
    /// The types Vitess registers (see `VSCHEMA.md`, section 2).
    pub fn vitess() -> VindexTypes {
        let functional = [
            "hash",
            "xxhash",
            "numeric",
            "reverse_bits",
            "binary",
            "binary_md5",
            "unicode_loose_md5",
            "unicode_loose_xxhash",
            "null",
            "numeric_static_map",
            "cfc",
            "region_experimental",
            "region_json",
        ];
        let lookup_unique = [
            "lookup_unique",
            "lookup_hash_unique",
            "lookup_unicodeloosemd5_hash_unique",
            "consistent_lookup_unique",
        ];
        let lookup_non_unique = [
            "lookup",
            "lookup_hash",
            "lookup_unicodeloosemd5_hash",
            "consistent_lookup",
            "lookup_cost",
        ];
        let mut kinds = BTreeMap::new();
        for name in functional {
            kinds.insert(name.to_owned(), VindexKind::FUNCTIONAL_UNIQUE);
        }
        for name in lookup_unique {
            kinds.insert(name.to_owned(), VindexKind::LOOKUP_UNIQUE);
        }
        for name in lookup_non_unique {
            kinds.insert(name.to_owned(), VindexKind::LOOKUP_NON_UNIQUE);
        }
        kinds.insert("multicol".to_owned(), VindexKind::MULTI_COLUMN);
        VindexTypes { kinds }
    }

    /// These types plus (or replacing) `name` with `kind`, for plugged-in or test vindexes.
    pub fn with(mut self, name: impl Into<String>, kind: VindexKind) -> VindexTypes {
        self.kinds.insert(name.into(), kind);
        self
    }

    /// The kind of a registered type.
    pub fn get(&self, name: &str) -> Option<&VindexKind> {
        self.kinds.get(name)
    }

    /// Registered type names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }
}
