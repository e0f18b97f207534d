//! What the planner routes against: the SrvVSchema with its vindexes built, and the shards
//! of every keyspace in keyrange order.

use std::collections::BTreeMap;

use crate::key::{self, Shard};
use crate::vindex::{self, ParamFileLoader, Vindex};
use crate::vschema::{SrvVSchema, VindexTypes};

/// Building a [`RoutingSchema`] failed; the message names the keyspace and vindex or shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("keyspace {keyspace}: {source}")]
    VSchema {
        keyspace: String,
        source: Box<crate::vschema::VSchemaError>,
    },
    #[error("keyspace {keyspace}: {source}")]
    Vindex {
        keyspace: String,
        source: vindex::VindexError,
    },
    #[error("keyspace {keyspace}: shard {shard:?}: {reason}")]
    Shard {
        keyspace: String,
        shard: String,
        reason: String,
    },
    #[error("keyspace {keyspace}: {reason}")]
    Keyspace { keyspace: String, reason: String },
}

/// One keyspace as the planner sees it.
#[derive(Debug)]
pub struct KeyspaceRouting {
    pub name: String,
    pub sharded: bool,
    /// Shards in keyrange order; one shard (`0` or `-`) for an unsharded keyspace.
    pub shards: Vec<Shard>,
    /// Built vindexes by name.
    pub vindexes: BTreeMap<String, Vindex>,
    /// Vindexes the VSchema declares that Shardcar cannot compute yet (the deprecated
    /// `lookup_unicodeloosemd5_hash*` types and `cfc`), with the reason. Reads never route
    /// by them (they scatter, which is correct); a table using one as its primary vindex
    /// is refused, and DML that would have to maintain one is refused.
    pub unsupported: BTreeMap<String, String>,
}

impl KeyspaceRouting {
    /// The index in `shards` of the shard that holds `id`.
    pub fn shard_index(&self, id: &[u8]) -> Option<usize> {
        self.shards.iter().position(|s| s.key_range.contains(id))
    }
}

/// The SrvVSchema plus built vindexes and shard lists: everything routing needs.
#[derive(Debug)]
pub struct RoutingSchema {
    pub vschema: SrvVSchema,
    keyspaces: BTreeMap<String, KeyspaceRouting>,
}

impl RoutingSchema {
    /// Validates `vschema`, builds its vindexes and attaches the shard names of each
    /// keyspace (`shards[keyspace]`). A keyspace missing from `vschema` but present in
    /// `shards` is served unsharded, as vtgate serves a keyspace without a VSchema.
    pub fn build(
        mut vschema: SrvVSchema,
        shards: &BTreeMap<String, Vec<String>>,
        files: &dyn ParamFileLoader,
    ) -> Result<RoutingSchema, SchemaError> {
        for name in shards.keys() {
            vschema.keyspaces.entry(name.clone()).or_default();
        }
        let types = VindexTypes::vitess();
        let mut keyspaces = BTreeMap::new();
        for (name, ks) in &vschema.keyspaces {
            ks.validate(name, &types)
                .map_err(|source| SchemaError::VSchema {
                    keyspace: name.clone(),
                    source: Box::new(source),
                })?;
            let names = shards.get(name).ok_or_else(|| SchemaError::Keyspace {
                keyspace: name.clone(),
                reason: "the VSchema names it but no shards are configured for it".into(),
            })?;
            let mut list = Vec::with_capacity(names.len());
            for shard in names {
                let parsed = Shard::parse(shard).map_err(|e| SchemaError::Shard {
                    keyspace: name.clone(),
                    shard: shard.clone(),
                    reason: e.to_string(),
                })?;
                list.push(parsed);
            }
            list.sort_by(|a, b| key::compare(&a.key_range.start, &b.key_range.start));
            if !ks.sharded && list.len() != 1 {
                return Err(SchemaError::Keyspace {
                    keyspace: name.clone(),
                    reason: format!(
                        "unsharded, so it needs exactly one shard, not {}",
                        list.len()
                    ),
                });
            }
            if ks.sharded {
                check_coverage(name, &list)?;
            }
            let mut vindexes = BTreeMap::new();
            let mut unsupported = BTreeMap::new();
            if ks.sharded {
                for (vname, v) in &ks.vindexes {
                    match Vindex::create_with_files(&v.type_, vname, &v.params, files) {
                        Ok(built) => {
                            vindexes.insert(vname.clone(), built);
                        }
                        Err(e @ vindex::VindexError::NotSupported { .. }) => {
                            unsupported.insert(vname.clone(), e.to_string());
                        }
                        Err(source) => {
                            return Err(SchemaError::Vindex {
                                keyspace: name.clone(),
                                source,
                            })
                        }
                    }
                }
            }
            keyspaces.insert(
                name.clone(),
                KeyspaceRouting {
                    name: name.clone(),
                    sharded: ks.sharded,
                    shards: list,
                    vindexes,
                    unsupported,
                },
            );
        }
        Ok(RoutingSchema { vschema, keyspaces })
    }

    /// The keyspace `name`.
    pub fn keyspace(&self, name: &str) -> Option<&KeyspaceRouting> {
        self.keyspaces.get(name)
    }

    /// Every keyspace, by name.
    pub fn keyspaces(&self) -> impl Iterator<Item = &KeyspaceRouting> {
        self.keyspaces.values()
    }
}

/// The shards of a sharded keyspace must cover the whole keyrange without gaps or overlap.
fn check_coverage(keyspace: &str, shards: &[Shard]) -> Result<(), SchemaError> {
    let mut expected: &[u8] = &[];
    for shard in shards {
        if key::compare(&shard.key_range.start, expected) != std::cmp::Ordering::Equal {
            return Err(SchemaError::Shard {
                keyspace: keyspace.to_string(),
                shard: shard.name.clone(),
                reason: format!(
                    "shards must cover the keyrange without gaps or overlaps: expected one starting at {:?}",
                    hex::encode(expected)
                ),
            });
        }
        expected = &shard.key_range.end;
        if key::is_empty(expected) {
            return Ok(());
        }
    }
    Err(SchemaError::Keyspace {
        keyspace: keyspace.to_string(),
        reason: format!(
            "shards end at {:?}: the last shard must reach the end of the keyrange",
            hex::encode(expected)
        ),
    })
}
