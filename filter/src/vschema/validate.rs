//! The rules a VSchema must satisfy before it is served, ported from vtgate's VSchema builder.
//!
//! `Keyspace::validate` checks one keyspace on its own (what `ApplyVSchema` checks); the
//! SrvVSchema form adds what needs every keyspace: sequences, reference sources and routing
//! rules. Errors come in a stable order (keyspaces, vindexes and tables by name).

use std::collections::{BTreeMap, BTreeSet};

use super::catalog::VindexTypes;
use super::error::VSchemaError;
use super::routing::{split_name, split_rule_target};
use super::srv::SrvVSchema;
use super::types::{Keyspace, TableType};

impl Keyspace {
    /// Checks this keyspace on its own; the first problem found, if any.
    pub fn validate(&self, keyspace: &str, types: &VindexTypes) -> Result<(), VSchemaError> {
        first(self.validate_all(keyspace, types))
    }

    /// Every problem of this keyspace on its own (sequences and reference sources in other
    /// keyspaces are not checked here).
    pub fn validate_all(&self, keyspace: &str, types: &VindexTypes) -> Vec<VSchemaError> {
        let mut errors = Vec::new();
        let ks = || keyspace.to_owned();
        if self.sharded {
            for (name, vindex) in &self.vindexes {
                let Some(kind) = types.get(&vindex.type_) else {
                    errors.push(VSchemaError::UnknownVindexType {
                        keyspace: ks(),
                        vindex: name.clone(),
                        type_: vindex.type_.clone(),
                    });
                    continue;
                };
                for param in kind.required_params {
                    if !matches!(vindex.params.get(*param), Some(v) if !v.is_empty()) {
                        errors.push(VSchemaError::MissingParam {
                            keyspace: ks(),
                            vindex: name.clone(),
                            type_: vindex.type_.clone(),
                            param: (*param).to_owned(),
                        });
                    }
                }
                if kind.lookup
                    && !vindex.owner.is_empty()
                    && !self.tables.contains_key(&vindex.owner)
                {
                    errors.push(VSchemaError::OwnerNotFound {
                        keyspace: ks(),
                        vindex: name.clone(),
                        owner: vindex.owner.clone(),
                    });
                }
            }
        }
        for (tname, table) in &self.tables {
            let table_err = || (ks(), tname.clone());
            match &table.type_ {
                TableType::Normal => {}
                TableType::Unidentified(other) => {
                    let (keyspace, table) = table_err();
                    errors.push(VSchemaError::UnidentifiedTableType {
                        keyspace,
                        table,
                        type_: other.clone(),
                    });
                }
                TableType::Sequence => {
                    if self.sharded && table.pinned.is_none() {
                        let (keyspace, table) = table_err();
                        errors.push(VSchemaError::SequenceNotUnsharded { keyspace, table });
                    }
                }
                TableType::Reference => {
                    if let Some(source) = &table.source {
                        if !matches!(split_name(source), Ok((Some(_), _))) {
                            let (keyspace, table) = table_err();
                            errors.push(VSchemaError::InvalidReferenceSource {
                                keyspace,
                                table,
                                source_table: source.clone(),
                                reason: format!(
                                    "invalid table name: {source}, it must be of the qualified \
                                     form <keyspace_name>.<table_name> (dots are not allowed in \
                                     either name)"
                                ),
                            });
                        }
                    }
                }
            }
            if let Some(pinned) = &table.pinned {
                if let Err(e) = hex::decode(pinned) {
                    let (keyspace, table) = table_err();
                    errors.push(VSchemaError::InvalidPin {
                        keyspace,
                        table,
                        pinned: pinned.clone(),
                        reason: e.to_string(),
                    });
                }
            }
            if self.sharded
                && table.type_ != TableType::Reference
                && table.pinned.is_none()
                && table.column_vindexes.is_empty()
            {
                let (keyspace, table) = table_err();
                errors.push(VSchemaError::MissingPrimaryVindex { keyspace, table });
            }
            let mut seen = BTreeSet::new();
            for column in &table.columns {
                if !seen.insert(column.name.to_lowercase()) {
                    let (keyspace, table) = table_err();
                    errors.push(VSchemaError::DuplicateColumn {
                        keyspace,
                        table,
                        column: column.name.clone(),
                    });
                }
            }
            if !self.sharded {
                // An unsharded keyspace ignores vindexes.
                continue;
            }
            for (i, cv) in table.column_vindexes.iter().enumerate() {
                let (keyspace, table_name) = table_err();
                let Some(vindex) = self.vindexes.get(&cv.name) else {
                    errors.push(VSchemaError::VindexNotFound {
                        keyspace,
                        table: table_name,
                        column: cv.column_names().join(","),
                        vindex: cv.name.clone(),
                    });
                    continue;
                };
                if cv.column.is_some() && !cv.columns.is_empty() {
                    errors.push(VSchemaError::ColumnAndColumns {
                        keyspace,
                        table: table_name,
                        vindex: cv.name.clone(),
                    });
                    continue;
                }
                if cv.column.is_none() && cv.columns.is_empty() {
                    errors.push(VSchemaError::NoColumns {
                        keyspace,
                        table: table_name,
                        vindex: cv.name.clone(),
                    });
                    continue;
                }
                // An unknown type is reported once, with the vindex.
                let Some(kind) = types.get(&vindex.type_) else {
                    continue;
                };
                let owned = kind.lookup && vindex.owner == *tname;
                if i == 0 && !kind.unique {
                    errors.push(VSchemaError::PrimaryNotUnique {
                        keyspace,
                        table: table_name,
                        vindex: cv.name.clone(),
                    });
                } else if i == 0 && owned {
                    errors.push(VSchemaError::PrimaryOwned {
                        keyspace,
                        table: table_name,
                        vindex: cv.name.clone(),
                    });
                } else if i != 0 && kind.multi_column {
                    errors.push(VSchemaError::MultiColumnNotPrimary {
                        keyspace,
                        table: table_name,
                        vindex: cv.name.clone(),
                    });
                }
            }
        }
        errors
    }
}

impl SrvVSchema {
    /// Checks every keyspace and the routing rules; the first problem found, if any.
    pub fn validate(&self, types: &VindexTypes) -> Result<(), VSchemaError> {
        first(self.validate_all(types))
    }

    /// Every problem of every keyspace (in keyspace order), then of the routing rules.
    ///
    /// A routing rule whose target keyspace or table does not exist is not an error here:
    /// vtgate keeps such a rule and reports its error when a query uses the name
    /// (`find_table` does the same).
    pub fn validate_all(&self, types: &VindexTypes) -> Vec<VSchemaError> {
        let mut errors = Vec::new();
        for (ks_name, ks) in &self.keyspaces {
            errors.extend(ks.validate_all(ks_name, types));
            self.check_sequences(ks_name, ks, &mut errors);
            self.check_references(ks_name, ks, &mut errors);
        }
        self.check_routing_rules(&mut errors);
        errors
    }

    fn check_sequences(&self, ks_name: &str, ks: &Keyspace, errors: &mut Vec<VSchemaError>) {
        for (tname, table) in &ks.tables {
            let Some(auto) = &table.auto_increment else {
                continue;
            };
            let resolved = match split_name(&auto.sequence) {
                Ok((seq_ks, seq)) => self
                    .find_table_without_rules(seq_ks, seq)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(reason) => Err(format!("invalid table name: {reason}")),
            };
            if let Err(reason) = resolved {
                errors.push(VSchemaError::SequenceNotFound {
                    keyspace: ks_name.to_owned(),
                    table: tname.clone(),
                    sequence: auto.sequence.clone(),
                    reason,
                });
            }
        }
    }

    fn check_references(&self, ks_name: &str, ks: &Keyspace, errors: &mut Vec<VSchemaError>) {
        // Source table -> the reference table of this keyspace copying it.
        let mut referenced: BTreeMap<&str, &str> = BTreeMap::new();
        for (tname, table) in &ks.tables {
            if table.type_ != TableType::Reference {
                continue;
            }
            let Some(source) = &table.source else {
                continue;
            };
            // A malformed source was reported by the keyspace check.
            let Ok((Some(src_ks), src_table)) = split_name(source) else {
                continue;
            };
            let mut fail = |reason: String| {
                errors.push(VSchemaError::InvalidReferenceSource {
                    keyspace: ks_name.to_owned(),
                    table: tname.clone(),
                    source_table: source.clone(),
                    reason,
                });
            };
            if src_ks == ks_name {
                fail(format!(
                    "source {source:?} may not reference a table in the same keyspace as table: {tname}"
                ));
                continue;
            }
            let Some(source_ks) = self.keyspaces.get(src_ks) else {
                fail(format!(
                    "source {source:?} references a non-existent keyspace {src_ks:?}"
                ));
                continue;
            };
            let Some(source_table) = source_ks.tables.get(src_table) else {
                fail(format!(
                    "source {source:?} references a table {src_table:?} that is not present in the VSchema of keyspace {src_ks:?}"
                ));
                continue;
            };
            match &source_table.type_ {
                TableType::Normal | TableType::Reference => {}
                other => {
                    fail(format!(
                        "source {source:?} may not reference a table of type {:?}: {tname}",
                        other.as_str()
                    ));
                    continue;
                }
            }
            if let Some(previous) = referenced.insert(source.as_str(), tname) {
                let (a, b) = if previous < tname.as_str() {
                    (previous, tname.as_str())
                } else {
                    (tname.as_str(), previous)
                };
                fail(format!(
                    "source {source:?} may not be referenced more than once per keyspace: {a}, {b}"
                ));
                continue;
            }
            if let Some(next) = &source_table.source {
                fail(format!(
                    "reference chaining is not allowed {tname} => {source} => {next}: {tname}"
                ));
            }
        }
    }

    fn check_routing_rules(&self, errors: &mut Vec<VSchemaError>) {
        let mut seen = BTreeSet::new();
        for rule in &self.routing_rules.rules {
            let mut fail = |reason: String| {
                errors.push(VSchemaError::InvalidRoutingRule {
                    from_table: rule.from_table.clone(),
                    reason,
                });
            };
            let (name, tablet_type) = match rule.from_table.split_once('@') {
                Some((name, tt)) => (name, Some(tt)),
                None => (rule.from_table.as_str(), None),
            };
            if let Err(reason) = split_name(name) {
                fail(format!("invalid from_table: {reason}"));
                continue;
            }
            if let Some(tt) = tablet_type {
                if !matches!(tt, "primary" | "replica" | "rdonly") {
                    fail(format!(
                        "unknown tablet type @{tt} (expected @primary, @replica or @rdonly)"
                    ));
                    continue;
                }
            }
            if !seen.insert(rule.from_table.as_str()) {
                fail(format!("duplicate rule for entry {}", rule.from_table));
                continue;
            }
            match rule.to_tables.as_slice() {
                [] => {}
                [target] => {
                    if let Err(reason) = split_rule_target(target) {
                        fail(reason);
                    }
                }
                targets => fail(format!(
                    "table {} has more than one target: {:?}",
                    rule.from_table, targets
                )),
            }
        }
    }
}

fn first(errors: Vec<VSchemaError>) -> Result<(), VSchemaError> {
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
