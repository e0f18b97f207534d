//! The VSchema of one keyspace, mirroring Vitess's `vschema.Keyspace` protobuf message field for field.
//!
//! Every field is read under its proto name (`column_vindexes`) and its lowerCamel JSON name
//! (`columnVindexes`), unknown fields are ignored and `null` means the default, as Vitess's
//! protojson parser does. Nothing here is checked beyond its JSON shape; see `validate`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::protojson::{self, EnumValue};

/// `vschema.Keyspace`: the vindexes and tables of one keyspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Keyspace {
    /// `false` (the default) means unsharded: vindexes are ignored and tables are optional.
    #[serde(deserialize_with = "protojson::null_default")]
    pub sharded: bool,
    /// Vindex instances by name.
    #[serde(deserialize_with = "protojson::vindex_map")]
    pub vindexes: BTreeMap<String, Vindex>,
    /// Tables by name.
    #[serde(deserialize_with = "protojson::table_map")]
    pub tables: BTreeMap<String, Table>,
    /// Tables and vindexes of this keyspace are left out of global (unqualified) routing.
    #[serde(
        alias = "requireExplicitRouting",
        deserialize_with = "protojson::null_default"
    )]
    pub require_explicit_routing: bool,
    /// How vtgate handles foreign keys in this keyspace.
    #[serde(alias = "foreignKeyMode")]
    pub foreign_key_mode: ForeignKeyMode,
    /// Set for keyspaces that are the target of a multi-tenant MoveTables.
    #[serde(alias = "multiTenantSpec")]
    pub multi_tenant_spec: Option<MultiTenantSpec>,
}

/// `vschema.Keyspace.ForeignKeyMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForeignKeyMode {
    /// `unspecified` (0), also what an unknown name becomes (protojson with `DiscardUnknown`).
    #[default]
    Unspecified,
    /// `disallow` (1).
    Disallow,
    /// `unmanaged` (2).
    Unmanaged,
    /// `managed` (3).
    Managed,
}

impl ForeignKeyMode {
    /// The proto enum name, as Vitess writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ForeignKeyMode::Unspecified => "unspecified",
            ForeignKeyMode::Disallow => "disallow",
            ForeignKeyMode::Unmanaged => "unmanaged",
            ForeignKeyMode::Managed => "managed",
        }
    }
}

impl<'de> Deserialize<'de> for ForeignKeyMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match EnumValue::deserialize(d)? {
            EnumValue::Name(name) => match name.as_str() {
                "disallow" => ForeignKeyMode::Disallow,
                "unmanaged" => ForeignKeyMode::Unmanaged,
                "managed" => ForeignKeyMode::Managed,
                // protojson with DiscardUnknown ignores unknown enum names.
                _ => ForeignKeyMode::Unspecified,
            },
            EnumValue::Number(1) => ForeignKeyMode::Disallow,
            EnumValue::Number(2) => ForeignKeyMode::Unmanaged,
            EnumValue::Number(3) => ForeignKeyMode::Managed,
            EnumValue::Number(_) | EnumValue::Null => ForeignKeyMode::Unspecified,
        })
    }
}

/// `vschema.MultiTenantSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MultiTenantSpec {
    /// Column that holds the tenant id.
    #[serde(
        alias = "tenantIdColumnName",
        deserialize_with = "protojson::null_default"
    )]
    pub tenant_id_column_name: String,
    /// Type of the tenant id column.
    #[serde(
        alias = "tenantIdColumnType",
        deserialize_with = "protojson::null_default"
    )]
    pub tenant_id_column_type: String,
}

/// `vschema.Vindex`: one vindex instance of a keyspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Vindex {
    /// The registered vindex type (`hash`, `xxhash`, `lookup_unique`, ...).
    #[serde(rename = "type", deserialize_with = "protojson::null_default")]
    pub type_: String,
    /// Type-specific parameters; values are always strings.
    #[serde(deserialize_with = "protojson::string_params")]
    pub params: BTreeMap<String, String>,
    /// The table whose DML maintains this (lookup) vindex, or empty.
    #[serde(deserialize_with = "protojson::null_default")]
    pub owner: String,
}

/// `vschema.Table`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Table {
    /// `""`, `"sequence"` or `"reference"`.
    #[serde(rename = "type")]
    pub type_: TableType,
    /// Column vindexes; the first one is the primary vindex.
    #[serde(alias = "columnVindexes", deserialize_with = "protojson::null_default")]
    pub column_vindexes: Vec<ColumnVindex>,
    /// Column filled from a sequence when the inserted value is NULL.
    #[serde(alias = "autoIncrement")]
    pub auto_increment: Option<AutoIncrement>,
    /// Column metadata.
    #[serde(deserialize_with = "protojson::null_default")]
    pub columns: Vec<Column>,
    /// `columns` is complete, so `select *` can be expanded.
    #[serde(
        alias = "columnListAuthoritative",
        deserialize_with = "protojson::null_default"
    )]
    pub column_list_authoritative: bool,
    /// Hex keyspace id pinning this table to one shard of a sharded keyspace.
    #[serde(deserialize_with = "non_empty")]
    pub pinned: Option<String>,
    /// For reference tables: the `ks.table` it is copied from.
    #[serde(deserialize_with = "non_empty")]
    pub source: Option<String>,
}

impl Table {
    /// The primary vindex: the first column vindex, if any.
    pub fn primary_vindex(&self) -> Option<&ColumnVindex> {
        self.column_vindexes.first()
    }
}

/// Proto3 strings have no presence: an empty string is the same as an absent one.
fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// The kind of a table, from `Table.type`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TableType {
    /// `""`: a table distributed by its vindexes (or the only copy, in an unsharded keyspace).
    #[default]
    Normal,
    /// `"sequence"`: a Vitess sequence table; only in an unsharded keyspace or pinned.
    Sequence,
    /// `"reference"`: a table copied to every shard.
    Reference,
    /// Anything else. Kept so that validation can report it as Vitess does
    /// ("unidentified table type").
    Unidentified(String),
}

impl TableType {
    /// The string Vitess uses for this type.
    pub fn as_str(&self) -> &str {
        match self {
            TableType::Normal => "",
            TableType::Sequence => "sequence",
            TableType::Reference => "reference",
            TableType::Unidentified(other) => other,
        }
    }
}

impl<'de> Deserialize<'de> for TableType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        Ok(match text.as_str() {
            "" => TableType::Normal,
            "sequence" => TableType::Sequence,
            "reference" => TableType::Reference,
            _ => TableType::Unidentified(text),
        })
    }
}

/// `vschema.ColumnVindex`: the column(s) a vindex of the keyspace is applied to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ColumnVindex {
    /// The legacy single column form; exclusive with `columns`.
    #[serde(deserialize_with = "non_empty")]
    pub column: Option<String>,
    /// The columns of the vindex.
    #[serde(deserialize_with = "protojson::null_default")]
    pub columns: Vec<String>,
    /// The name of a vindex in the keyspace's `vindexes`.
    #[serde(deserialize_with = "protojson::null_default")]
    pub name: String,
}

impl ColumnVindex {
    /// The columns this vindex is applied to, whichever of `column` / `columns` was given.
    pub fn column_names(&self) -> Vec<&str> {
        match &self.column {
            Some(column) => vec![column.as_str()],
            None => self.columns.iter().map(String::as_str).collect(),
        }
    }
}

/// `vschema.AutoIncrement`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AutoIncrement {
    /// The column to fill.
    #[serde(deserialize_with = "protojson::null_default")]
    pub column: String,
    /// The sequence table, `seq` or `ks.seq`.
    #[serde(deserialize_with = "protojson::null_default")]
    pub sequence: String,
}

/// `vschema.Column`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Column {
    /// Column name.
    #[serde(deserialize_with = "protojson::null_default")]
    pub name: String,
    /// `query.Type` name (`"VARCHAR"`, `"INT64"`, ...); a number is turned into its name.
    /// `None` for the default (`NULL_TYPE`) and for an unknown number.
    #[serde(rename = "type", deserialize_with = "query_type")]
    pub type_: Option<String>,
    /// Invisible column.
    #[serde(deserialize_with = "protojson::null_default")]
    pub invisible: bool,
    /// Default value expression.
    #[serde(deserialize_with = "protojson::null_default")]
    pub default: String,
    /// Collation name.
    #[serde(alias = "collationName", deserialize_with = "protojson::null_default")]
    pub collation_name: String,
    /// Column size.
    #[serde(deserialize_with = "protojson::int32")]
    pub size: i32,
    /// Column scale.
    #[serde(deserialize_with = "protojson::int32")]
    pub scale: i32,
    /// Proto3 `optional bool`: `None` when not given.
    pub nullable: Option<bool>,
    /// The values of an ENUM or SET column.
    #[serde(deserialize_with = "protojson::null_default")]
    pub values: Vec<String>,
}

/// `query.Type` names by number (`proto/query.proto`).
const QUERY_TYPES: &[(i64, &str)] = &[
    (0, "NULL_TYPE"),
    (257, "INT8"),
    (770, "UINT8"),
    (259, "INT16"),
    (772, "UINT16"),
    (261, "INT24"),
    (774, "UINT24"),
    (263, "INT32"),
    (776, "UINT32"),
    (265, "INT64"),
    (778, "UINT64"),
    (1035, "FLOAT32"),
    (1036, "FLOAT64"),
    (2061, "TIMESTAMP"),
    (2062, "DATE"),
    (2063, "TIME"),
    (2064, "DATETIME"),
    (785, "YEAR"),
    (18, "DECIMAL"),
    (6163, "TEXT"),
    (10260, "BLOB"),
    (6165, "VARCHAR"),
    (10262, "VARBINARY"),
    (6167, "CHAR"),
    (10264, "BINARY"),
    (2073, "BIT"),
    (2074, "ENUM"),
    (2075, "SET"),
    (28, "TUPLE"),
    (2077, "GEOMETRY"),
    (2078, "JSON"),
    (31, "EXPRESSION"),
];

fn query_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match EnumValue::deserialize(d)? {
        EnumValue::Name(name) if name == "NULL_TYPE" || name.is_empty() => None,
        EnumValue::Name(name) => Some(name),
        EnumValue::Number(n) => QUERY_TYPES
            .iter()
            .find(|(number, _)| *number == n)
            .and_then(|(_, name)| (*name != "NULL_TYPE").then(|| (*name).to_owned())),
        EnumValue::Null => None,
    })
}
