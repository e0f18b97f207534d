//! Errors of VSchema parsing, validation and table lookup, each naming what the operator must fix.
//!
//! Validation messages keep Vitess's wording (so that a Vitess user recognises them) behind a
//! `keyspace <name>: ` prefix, and name the table and vindex involved.

use super::protojson::strip_position;

/// A VSchema document that cannot be parsed or is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VSchemaError {
    /// The JSON is malformed or a field has the wrong JSON type.
    #[error("invalid VSchema JSON at line {line} column {column}: {message}")]
    Json {
        /// What is wrong, with the path of names leading to it (`keyspace user: vindex v: ...`).
        message: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
    },
    /// A table `type` other than `""`, `"sequence"` and `"reference"`.
    #[error("keyspace {keyspace}: table {table}: unidentified table type {type_}")]
    UnidentifiedTableType {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// The type given.
        type_: String,
    },
    /// A sequence table in a sharded keyspace that is not pinned.
    #[error("keyspace {keyspace}: sequence table has to be in an unsharded keyspace or must be pinned: {table}")]
    SequenceNotUnsharded {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
    },
    /// `pinned` is not a hex keyspace id.
    #[error("keyspace {keyspace}: table {table}: could not decode the keyspace id for pin {pinned:?}: {reason}")]
    InvalidPin {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// The value given.
        pinned: String,
        /// Why it is not hex.
        reason: String,
    },
    /// A table of a sharded keyspace without a column vindex (and not reference or pinned).
    #[error("keyspace {keyspace}: missing primary col vindex for table: {table}")]
    MissingPrimaryVindex {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
    },
    /// Two `columns` entries with the same (case-insensitive) name.
    #[error("keyspace {keyspace}: duplicate column name '{column}' for table: {table}")]
    DuplicateColumn {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// The repeated column.
        column: String,
    },
    /// A column vindex names a vindex the keyspace does not define.
    #[error(
        "keyspace {keyspace}: table {table}: column vindex {column}: vindex {vindex} not found"
    )]
    VindexNotFound {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// The column(s) of the column vindex, comma-separated.
        column: String,
        /// The vindex name.
        vindex: String,
    },
    /// Both `column` and `columns` in one column vindex.
    #[error("keyspace {keyspace}: can't use column and columns at the same time in vindex ({vindex}) and table ({table})")]
    ColumnAndColumns {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// Vindex.
        vindex: String,
    },
    /// Neither `column` nor `columns` in a column vindex.
    #[error("keyspace {keyspace}: must specify at least one column for vindex ({vindex}) and table ({table})")]
    NoColumns {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// Vindex.
        vindex: String,
    },
    /// The first column vindex is not of a unique type.
    #[error("keyspace {keyspace}: primary vindex {vindex} is not Unique for table {table}")]
    PrimaryNotUnique {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// Vindex.
        vindex: String,
    },
    /// The first column vindex is a lookup vindex owned by the table itself.
    #[error("keyspace {keyspace}: primary vindex {vindex} cannot be owned for table {table}")]
    PrimaryOwned {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// Vindex.
        vindex: String,
    },
    /// A multi-column vindex type (`multicol`) used as a secondary vindex.
    #[error("keyspace {keyspace}: multi-column vindex {vindex} should be a primary vindex for table {table}")]
    MultiColumnNotPrimary {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// Vindex.
        vindex: String,
    },
    /// A vindex `type` that is not registered.
    #[error("keyspace {keyspace}: vindex {vindex}: vindexType {type_:?} not found")]
    UnknownVindexType {
        /// Keyspace.
        keyspace: String,
        /// Vindex.
        vindex: String,
        /// The type given.
        type_: String,
    },
    /// A required param of the vindex type is missing or empty.
    #[error("keyspace {keyspace}: vindex {vindex}: {type_} vindex requires param {param}")]
    MissingParam {
        /// Keyspace.
        keyspace: String,
        /// Vindex.
        vindex: String,
        /// The vindex type.
        type_: String,
        /// The missing param.
        param: String,
    },
    /// A lookup vindex whose `owner` is not a table of the keyspace.
    #[error("keyspace {keyspace}: vindex {vindex}: owner table {owner} not found")]
    OwnerNotFound {
        /// Keyspace.
        keyspace: String,
        /// Vindex.
        vindex: String,
        /// The owner given.
        owner: String,
    },
    /// `auto_increment.sequence` does not resolve to a table.
    #[error("keyspace {keyspace}: table {table}: cannot resolve sequence {sequence}: {reason}")]
    SequenceNotFound {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// The sequence given.
        sequence: String,
        /// Why it did not resolve.
        reason: String,
    },
    /// A reference `source` that is not `ks.table`, or does not resolve.
    #[error("keyspace {keyspace}: invalid source {source_table:?} for reference table: {table}; {reason}")]
    InvalidReferenceSource {
        /// Keyspace.
        keyspace: String,
        /// Table.
        table: String,
        /// The source given.
        source_table: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A routing rule that cannot be applied.
    #[error("routing rule {from_table}: {reason}")]
    InvalidRoutingRule {
        /// The rule's `from_table`.
        from_table: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl VSchemaError {
    pub(crate) fn from_json(err: serde_json::Error) -> VSchemaError {
        VSchemaError::Json {
            message: strip_position(&err.to_string()).to_owned(),
            line: err.line(),
            column: err.column(),
        }
    }

    /// The keyspace the error is about, if any.
    pub fn keyspace(&self) -> Option<&str> {
        match self {
            VSchemaError::Json { .. } | VSchemaError::InvalidRoutingRule { .. } => None,
            VSchemaError::UnidentifiedTableType { keyspace, .. }
            | VSchemaError::SequenceNotUnsharded { keyspace, .. }
            | VSchemaError::InvalidPin { keyspace, .. }
            | VSchemaError::MissingPrimaryVindex { keyspace, .. }
            | VSchemaError::DuplicateColumn { keyspace, .. }
            | VSchemaError::VindexNotFound { keyspace, .. }
            | VSchemaError::ColumnAndColumns { keyspace, .. }
            | VSchemaError::NoColumns { keyspace, .. }
            | VSchemaError::PrimaryNotUnique { keyspace, .. }
            | VSchemaError::PrimaryOwned { keyspace, .. }
            | VSchemaError::MultiColumnNotPrimary { keyspace, .. }
            | VSchemaError::UnknownVindexType { keyspace, .. }
            | VSchemaError::MissingParam { keyspace, .. }
            | VSchemaError::OwnerNotFound { keyspace, .. }
            | VSchemaError::SequenceNotFound { keyspace, .. }
            | VSchemaError::InvalidReferenceSource { keyspace, .. } => Some(keyspace),
        }
    }
}

/// Why a table name did not resolve to one table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindTableError {
    /// The qualifier names no keyspace of the VSchema.
    #[error("Unknown database '{keyspace}' in vschema")]
    UnknownKeyspace {
        /// The keyspace given.
        keyspace: String,
    },
    /// The table is in no keyspace (or not in the sharded keyspace named).
    #[error("table {table} not found")]
    NotFound {
        /// The table given.
        table: String,
    },
    /// An unqualified name found in more than one keyspace.
    #[error("ambiguous table reference: {table}")]
    Ambiguous {
        /// The table given.
        table: String,
    },
    /// A routing rule with no target.
    #[error("table {table} has been disabled")]
    Disabled {
        /// The table given.
        table: String,
    },
    /// A routing rule that applies to this name but cannot be followed.
    #[error("routing rule {from_table}: {reason}")]
    BadRoutingRule {
        /// The rule's `from_table`.
        from_table: String,
        /// Why it cannot be followed.
        reason: String,
    },
    /// The name is not `table` or `keyspace.table`.
    #[error("invalid table name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}
