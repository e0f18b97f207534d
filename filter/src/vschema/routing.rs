//! Table name resolution as vtgate does it: routing rules first, then the named keyspace, then
//! global routing of unqualified names across keyspaces.
//!
//! An unqualified name resolves when exactly one keyspace that does not require explicit
//! routing declares it (a reference table yields to its own source). An unsharded keyspace
//! serves any table name it is asked for, declared or not, as vtgate does.

use super::error::FindTableError;
use super::srv::SrvVSchema;
use super::types::{Keyspace, Table, TableType, Vindex};

/// The tablet type a query is routed to; routing rules may be specific to one (`t@replica`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TabletType {
    /// `@primary`.
    #[default]
    Primary,
    /// `@replica`.
    Replica,
    /// `@rdonly`.
    Rdonly,
}

impl TabletType {
    /// The suffix routing rules use for this tablet type.
    pub fn suffix(self) -> &'static str {
        match self {
            TabletType::Primary => "@primary",
            TabletType::Replica => "@replica",
            TabletType::Rdonly => "@rdonly",
        }
    }
}

/// A table name resolved to a keyspace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TableRef<'a> {
    /// The keyspace that serves the table.
    pub keyspace: &'a str,
    /// That keyspace's VSchema.
    pub keyspace_schema: &'a Keyspace,
    /// The table's name in that keyspace.
    pub name: &'a str,
    /// The table's VSchema; `None` for a table an unsharded keyspace serves without declaring
    /// it, and for `dual`.
    pub table: Option<&'a Table>,
}

/// The primary vindex of a table: the first column vindex and the vindex it names.
#[derive(Debug, Clone, PartialEq)]
pub struct PrimaryVindex<'a> {
    /// The vindex name in the keyspace.
    pub name: &'a str,
    /// The column(s) it is applied to.
    pub columns: Vec<&'a str>,
    /// The vindex.
    pub vindex: &'a Vindex,
}

impl<'a> TableRef<'a> {
    /// Whether the keyspace is sharded.
    pub fn sharded(&self) -> bool {
        self.keyspace_schema.sharded
    }

    /// The table type (`Normal` for an undeclared table, `Reference` for `dual`).
    pub fn table_type(&self) -> TableType {
        match self.table {
            Some(t) => t.type_.clone(),
            None if self.name == "dual" => TableType::Reference,
            None => TableType::Normal,
        }
    }

    /// The primary vindex, for a table of a sharded keyspace that has one.
    pub fn primary_vindex(&self) -> Option<PrimaryVindex<'a>> {
        if !self.sharded() {
            return None;
        }
        let table: &'a Table = self.table?;
        let cv = table.primary_vindex()?;
        let (name, vindex) = self.keyspace_schema.vindexes.get_key_value(&cv.name)?;
        Some(PrimaryVindex {
            name,
            columns: cv.column_names(),
            vindex,
        })
    }
}

/// Splits `table` or `ks.table` into its parts.
pub(crate) fn split_name(name: &str) -> Result<(Option<&str>, &str), String> {
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or_default();
    let second = parts.next();
    if parts.next().is_some() {
        return Err("more than one '.'".to_owned());
    }
    match second {
        None if !first.is_empty() => Ok((None, first)),
        Some(table) if !first.is_empty() && !table.is_empty() => Ok((Some(first), table)),
        _ => Err("empty keyspace or table name".to_owned()),
    }
}

/// Splits a routing rule's `to_tables` entry, which must be `ks.table` without `@`.
pub(crate) fn split_rule_target(target: &str) -> Result<(&str, &str), String> {
    if target.contains('@') {
        return Err(format!("target {target} must not carry a tablet type"));
    }
    match split_name(target) {
        Ok((Some(ks), table)) => Ok((ks, table)),
        _ => Err(format!(
            "invalid table name: {target}, it must be of the qualified form \
             <keyspace_name>.<table_name> (dots are not allowed in either name)"
        )),
    }
}

impl SrvVSchema {
    /// The keyspace named `name`.
    pub fn keyspace(&self, name: &str) -> Option<&Keyspace> {
        self.keyspaces.get(name)
    }

    /// Whether the keyspace `name` is sharded; `None` when there is no such keyspace.
    pub fn is_sharded(&self, name: &str) -> Option<bool> {
        self.keyspaces.get(name).map(|ks| ks.sharded)
    }

    /// Resolves `table` or `ks.table` for a query to a primary tablet. An unqualified name is
    /// looked up in `default_keyspace` (the session's `USE`) or, without one, globally.
    pub fn find_table<'a>(
        &'a self,
        name: &'a str,
        default_keyspace: Option<&'a str>,
    ) -> Result<TableRef<'a>, FindTableError> {
        let (keyspace, table) = split_name(name).map_err(|reason| FindTableError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        self.find_routed_table(keyspace.or(default_keyspace), table, TabletType::Primary)
    }

    /// Resolves a table as vtgate's `FindRoutedTable`: a routing rule for
    /// `[ks.]table@tablet_type`, then for `[ks.]table`, then the table itself.
    pub fn find_routed_table<'a>(
        &'a self,
        keyspace: Option<&'a str>,
        table: &'a str,
        tablet_type: TabletType,
    ) -> Result<TableRef<'a>, FindTableError> {
        let qualified = match keyspace {
            Some(ks) => format!("{ks}.{table}"),
            None => table.to_owned(),
        };
        let with_type = format!("{qualified}{}", tablet_type.suffix());
        for from in [with_type.as_str(), qualified.as_str()] {
            let mut matching = self
                .routing_rules
                .rules
                .iter()
                .filter(|r| r.from_table == from);
            let Some(rule) = matching.next() else {
                continue;
            };
            let bad = |reason: String| FindTableError::BadRoutingRule {
                from_table: rule.from_table.clone(),
                reason,
            };
            if matching.next().is_some() {
                return Err(bad(format!("duplicate rule for entry {from}")));
            }
            return match rule.to_tables.as_slice() {
                [] => Err(FindTableError::Disabled {
                    table: table.to_owned(),
                }),
                [target] => {
                    let (ks, t) = split_rule_target(target).map_err(bad)?;
                    self.find_table_without_rules(Some(ks), t)
                        .map_err(|e| bad(e.to_string()))
                }
                targets => Err(bad(format!(
                    "table {} has more than one target: {:?}",
                    rule.from_table, targets
                ))),
            };
        }
        self.find_table_without_rules(keyspace, table)
    }

    /// Resolves a table ignoring routing rules (vtgate's `FindTable`).
    pub fn find_table_without_rules<'a>(
        &'a self,
        keyspace: Option<&'a str>,
        table: &'a str,
    ) -> Result<TableRef<'a>, FindTableError> {
        let not_found = || FindTableError::NotFound {
            table: table.to_owned(),
        };
        let Some(keyspace) = keyspace else {
            return self.find_global_table(table)?.ok_or_else(not_found);
        };
        let (ks_name, ks) = self.keyspaces.get_key_value(keyspace).ok_or_else(|| {
            FindTableError::UnknownKeyspace {
                keyspace: keyspace.to_owned(),
            }
        })?;
        if let Some((name, t)) = ks.tables.get_key_value(table) {
            return Ok(TableRef {
                keyspace: ks_name,
                keyspace_schema: ks,
                name,
                table: Some(t),
            });
        }
        if table == "dual" || !ks.sharded {
            return Ok(Self::undeclared(ks_name, ks, table));
        }
        Err(not_found())
    }

    /// `Ok(None)` when no keyspace has the table.
    fn find_global_table<'a>(
        &'a self,
        table: &'a str,
    ) -> Result<Option<TableRef<'a>>, FindTableError> {
        if table == "dual" {
            // vtgate resolves an unqualified dual to the first keyspace by name.
            return Ok(self
                .keyspaces
                .iter()
                .next()
                .map(|(name, ks)| Self::undeclared(name, ks, table)));
        }
        let mut found: Option<TableRef<'a>> = None;
        let mut ambiguous = false;
        for (ks_name, ks) in &self.keyspaces {
            if ks.require_explicit_routing {
                continue;
            }
            let Some((name, t)) = ks.tables.get_key_value(table) else {
                continue;
            };
            let candidate = TableRef {
                keyspace: ks_name,
                keyspace_schema: ks,
                name,
                table: Some(t),
            };
            match found {
                _ if ambiguous => {}
                None => found = Some(candidate),
                Some(current) => {
                    if references(current, candidate) {
                        found = Some(candidate);
                    } else if !references(candidate, current) {
                        ambiguous = true;
                    }
                }
            }
        }
        if ambiguous {
            return Err(FindTableError::Ambiguous {
                table: table.to_owned(),
            });
        }
        if found.is_none() && self.keyspaces.len() == 1 {
            if let Some((name, ks)) = self.keyspaces.iter().next() {
                if !ks.sharded {
                    return Ok(Some(Self::undeclared(name, ks, table)));
                }
            }
        }
        Ok(found)
    }

    fn undeclared<'a>(ks_name: &'a str, ks: &'a Keyspace, table: &'a str) -> TableRef<'a> {
        TableRef {
            keyspace: ks_name,
            keyspace_schema: ks,
            name: table,
            table: None,
        }
    }
}

/// Whether `reference` is a reference table whose `source` is `target`.
fn references(reference: TableRef<'_>, target: TableRef<'_>) -> bool {
    let Some(t) = reference.table else {
        return false;
    };
    t.type_ == TableType::Reference
        && t.source.as_deref().and_then(|s| split_name(s).ok())
            == Some((Some(target.keyspace), target.name))
}
