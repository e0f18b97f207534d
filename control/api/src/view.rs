//! The versioned configuration a sidecar holds: keyspaces, shards, tablets and routing
//! rules. The control service computes the update that turns one view into another
//! ([`View::delta`]) and the sidecar applies it ([`View::apply`]), so both ends agree
//! on what version `n` contains.

use std::collections::BTreeMap;

use crate::pb;

/// Keyspace and shard name.
pub type ShardId = (String, String);

/// One configuration version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub version: u64,
    pub keyspaces: BTreeMap<String, pb::Keyspace>,
    pub shards: BTreeMap<ShardId, pb::Shard>,
    /// By alias.
    pub tablets: BTreeMap<String, pb::Tablet>,
    /// Vitess routing rules JSON; empty for none.
    pub routing_rules_json: String,
}

/// An update that does not fit the view it was applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("delta to version {version} is based on version {base}, but version {held} is held")]
    WrongBase { version: u64, base: u64, held: u64 },
}

impl View {
    /// Whether both views hold the same configuration, whatever their versions.
    pub fn same_content(&self, other: &View) -> bool {
        self.keyspaces == other.keyspaces
            && self.shards == other.shards
            && self.tablets == other.tablets
            && self.routing_rules_json == other.routing_rules_json
    }

    /// The whole view as one update.
    pub fn snapshot(&self) -> pb::ConfigUpdate {
        pb::ConfigUpdate {
            version: self.version,
            full: true,
            keyspaces: self.keyspaces.values().cloned().collect(),
            shards: self.shards.values().cloned().collect(),
            tablets: self.tablets.values().cloned().collect(),
            routing_rules_json: Some(self.routing_rules_json.clone()),
            ..pb::ConfigUpdate::default()
        }
    }

    /// The update that turns `older` into `self`.
    pub fn delta(&self, older: &View) -> pb::ConfigUpdate {
        let (keyspaces, removed_keyspaces) = changes(&older.keyspaces, &self.keyspaces);
        let (shards, removed) = changes(&older.shards, &self.shards);
        let (tablets, removed_tablets) = changes(&older.tablets, &self.tablets);
        pb::ConfigUpdate {
            version: self.version,
            full: false,
            base_version: older.version,
            keyspaces,
            removed_keyspaces,
            shards,
            removed_shards: removed
                .into_iter()
                .map(|(keyspace, name)| pb::ShardName { keyspace, name })
                .collect(),
            tablets,
            removed_tablets,
            routing_rules_json: (self.routing_rules_json != older.routing_rules_json)
                .then(|| self.routing_rules_json.clone()),
            ..pb::ConfigUpdate::default()
        }
    }

    /// Applies `update` (a snapshot, or a delta on the version held).
    pub fn apply(&mut self, update: pb::ConfigUpdate) -> Result<(), ApplyError> {
        if update.full {
            *self = View::default();
        } else if update.base_version != self.version {
            return Err(ApplyError::WrongBase {
                version: update.version,
                base: update.base_version,
                held: self.version,
            });
        }
        self.version = update.version;
        for name in update.removed_keyspaces {
            self.keyspaces.remove(&name);
        }
        for k in update.keyspaces {
            self.keyspaces.insert(k.name.clone(), k);
        }
        for s in update.removed_shards {
            self.shards.remove(&(s.keyspace, s.name));
        }
        for s in update.shards {
            self.shards.insert((s.keyspace.clone(), s.name.clone()), s);
        }
        for alias in update.removed_tablets {
            self.tablets.remove(&alias);
        }
        for t in update.tablets {
            self.tablets.insert(t.alias.clone(), t);
        }
        if let Some(rules) = update.routing_rules_json {
            self.routing_rules_json = rules;
        }
        Ok(())
    }

    /// The Vitess SrvVSchema JSON of this view: the VSchema of every keyspace that has
    /// shards (`{}` for one without a VSchema) and the routing rules. A keyspace whose
    /// VSchema is not JSON is named in the error.
    pub fn srv_vschema_json(&self) -> Result<String, String> {
        let served = self.shard_names();
        let mut keyspaces = serde_json::Map::new();
        for (name, k) in self
            .keyspaces
            .iter()
            .filter(|(n, _)| served.contains_key(*n))
        {
            let vschema = if k.vschema_json.trim().is_empty() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                serde_json::from_str(&k.vschema_json)
                    .map_err(|e| format!("keyspace {name}: VSchema is not JSON: {e}"))?
            };
            keyspaces.insert(name.clone(), vschema);
        }
        let mut out = serde_json::Map::new();
        out.insert("keyspaces".into(), keyspaces.into());
        if !self.routing_rules_json.trim().is_empty() {
            let rules: serde_json::Value = serde_json::from_str(&self.routing_rules_json)
                .map_err(|e| format!("routing rules are not JSON: {e}"))?;
            out.insert("routing_rules".into(), rules);
        }
        Ok(serde_json::Value::Object(out).to_string())
    }

    /// Shard names per keyspace (in key order), for the keyspaces that have a record
    /// and at least one shard: the ones a sidecar can serve.
    pub fn shard_names(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (keyspace, shard) in self.shards.keys() {
            if self.keyspaces.contains_key(keyspace) {
                out.entry(keyspace.clone()).or_default().push(shard.clone());
            }
        }
        out
    }
}

/// The values of `new` that are not in `old` as they are, and the keys of `old` that
/// `new` lacks.
fn changes<K: Ord + Clone, V: PartialEq + Clone>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> (Vec<V>, Vec<K>) {
    let upserts = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(_, v)| v.clone())
        .collect();
    let removals = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    (upserts, removals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tablet(alias: &str, port: u32) -> pb::Tablet {
        pb::Tablet {
            alias: alias.into(),
            keyspace: "user".into(),
            shard: "-80".into(),
            mysql_port: port,
            ..pb::Tablet::default()
        }
    }

    fn view(version: u64, tablets: &[pb::Tablet]) -> View {
        let mut v = View {
            version,
            ..View::default()
        };
        v.keyspaces.insert(
            "user".into(),
            pb::Keyspace {
                name: "user".into(),
                vschema_json: r#"{"sharded":true}"#.into(),
                ..pb::Keyspace::default()
            },
        );
        v.shards.insert(
            ("user".into(), "-80".into()),
            pb::Shard {
                keyspace: "user".into(),
                name: "-80".into(),
                ..pb::Shard::default()
            },
        );
        for t in tablets {
            v.tablets.insert(t.alias.clone(), t.clone());
        }
        v
    }

    #[test]
    fn a_delta_carries_only_changes_and_rebuilds_the_newer_view() {
        let old = view(5, &[tablet("a", 1), tablet("b", 2)]);
        let new = view(9, &[tablet("a", 1), tablet("b", 3), tablet("c", 4)]);
        let delta = new.delta(&old);
        assert_eq!(
            (delta.version, delta.base_version, delta.full),
            (9, 5, false)
        );
        assert!(delta.keyspaces.is_empty() && delta.shards.is_empty());
        assert_eq!(delta.tablets.len(), 2);
        assert_eq!(delta.routing_rules_json, None);
        let mut held = old.clone();
        held.apply(delta).expect("same base");
        assert_eq!(held, new);

        let gone = view(11, &[tablet("c", 4)]);
        let delta = gone.delta(&new);
        assert_eq!(
            delta.removed_tablets,
            vec!["a".to_string(), "b".to_string()]
        );
        held.apply(delta).expect("same base");
        assert_eq!(held, gone);
    }

    #[test]
    fn a_delta_on_another_base_is_refused_and_changes_nothing() {
        let old = view(5, &[tablet("a", 1)]);
        let new = view(9, &[tablet("a", 2)]);
        let mut held = view(4, &[]);
        let before = held.clone();
        let err = held.apply(new.delta(&old)).expect_err("base 5, held 4");
        assert_eq!(
            err,
            ApplyError::WrongBase {
                version: 9,
                base: 5,
                held: 4
            }
        );
        assert_eq!(held, before);
        held.apply(new.snapshot())
            .expect("a snapshot fits anything");
        assert_eq!(held, new);
    }

    #[test]
    fn the_srv_vschema_names_every_keyspace() {
        let mut v = view(1, &[]);
        for name in ["main", "empty"] {
            v.keyspaces.insert(
                name.into(),
                pb::Keyspace {
                    name: name.into(),
                    ..pb::Keyspace::default()
                },
            );
        }
        v.shards.insert(
            ("main".into(), "0".into()),
            pb::Shard {
                keyspace: "main".into(),
                name: "0".into(),
                ..pb::Shard::default()
            },
        );
        v.routing_rules_json = r#"{"rules":[]}"#.into();
        let json: serde_json::Value =
            serde_json::from_str(&v.srv_vschema_json().expect("valid")).expect("json");
        assert_eq!(json["keyspaces"]["user"]["sharded"], true);
        assert_eq!(json["keyspaces"]["main"], serde_json::json!({}));
        assert!(json["keyspaces"].get("empty").is_none(), "no shards yet");
        assert_eq!(json["routing_rules"]["rules"], serde_json::json!([]));
        assert_eq!(v.shard_names()["main"], vec!["0".to_string()]);
        assert!(!v.shard_names().contains_key("empty"));

        v.keyspaces.get_mut("main").expect("added").vschema_json = "{".into();
        let err = v.srv_vschema_json().expect_err("not JSON");
        assert!(err.starts_with("keyspace main:"), "{err}");
    }
}
