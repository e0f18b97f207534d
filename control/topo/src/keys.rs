//! Where each record lives (the layout in the crate docs).

/// The key layout under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout::new("/shardcar")
    }
}

impl Layout {
    /// A layout under `root` (a trailing `/` is dropped).
    pub fn new(root: &str) -> Self {
        Layout {
            root: root.trim_end_matches('/').to_string(),
        }
    }

    /// The root every key lives under (no trailing `/`).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The prefix of every key of this topology.
    pub fn everything(&self) -> String {
        format!("{}/", self.root)
    }

    /// Vitess routing rules JSON (`{"rules": [...]}`), for every keyspace.
    pub fn routing_rules(&self) -> String {
        format!("{}/global/routing_rules", self.root)
    }

    pub fn keyspaces(&self) -> String {
        format!("{}/global/keyspaces/", self.root)
    }

    pub fn keyspace(&self, keyspace: &str) -> String {
        format!("{}{keyspace}/keyspace", self.keyspaces())
    }

    pub fn shards(&self, keyspace: &str) -> String {
        format!("{}{keyspace}/shards/", self.keyspaces())
    }

    pub fn shard(&self, keyspace: &str, shard: &str) -> String {
        format!("{}{shard}/shard", self.shards(keyspace))
    }

    pub fn shard_lock(&self, keyspace: &str, shard: &str) -> String {
        format!(
            "{}/global/locks/keyspaces/{keyspace}/shards/{shard}",
            self.root
        )
    }

    /// Every cell's tablets.
    pub fn cells(&self) -> String {
        format!("{}/cells/", self.root)
    }

    pub fn tablets(&self, cell: &str) -> String {
        format!("{}{cell}/tablets/", self.cells())
    }

    pub fn tablet(&self, cell: &str, alias: &str) -> String {
        format!("{}{alias}", self.tablets(cell))
    }

    /// The keyspace and shard of a shard record's key (`None` for any other key).
    pub fn parse_shard(&self, key: &str) -> Option<(String, String)> {
        let rest = key.strip_prefix(&self.keyspaces())?;
        let (keyspace, rest) = rest.split_once("/shards/")?;
        let shard = rest.strip_suffix("/shard")?;
        (!keyspace.contains('/') && !shard.contains('/'))
            .then(|| (keyspace.to_string(), shard.to_string()))
    }

    /// The keyspace of a keyspace record's key (`None` for any other key).
    pub fn parse_keyspace(&self, key: &str) -> Option<String> {
        let name = key
            .strip_prefix(&self.keyspaces())?
            .strip_suffix("/keyspace")?;
        (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
    }

    /// Whether `key` is a tablet record's key.
    pub fn is_tablet(&self, key: &str) -> bool {
        key.strip_prefix(&self.cells())
            .and_then(|rest| rest.split_once("/tablets/"))
            .is_some_and(|(cell, alias)| {
                !cell.contains('/') && !alias.is_empty() && !alias.contains('/')
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let l = Layout::new("/sc/");
        assert_eq!(l.keyspace("shop"), "/sc/global/keyspaces/shop/keyspace");
        assert_eq!(
            l.shard("shop", "-80"),
            "/sc/global/keyspaces/shop/shards/-80/shard"
        );
        assert!(l.shard("shop", "-80").starts_with(&l.shards("shop")));
        assert_eq!(
            l.tablet("zone1", "zone1-0000000100"),
            "/sc/cells/zone1/tablets/zone1-0000000100"
        );
        assert!(l.tablet("zone1", "x").starts_with(&l.cells()));
        assert_eq!(
            l.parse_shard(&l.shard("shop", "-80")),
            Some(("shop".to_string(), "-80".to_string()))
        );
        assert_eq!(l.parse_shard(&l.keyspace("shop")), None);
        assert!(l.is_tablet(&l.tablet("zone1", "zone1-0000000100")));
        assert!(!l.is_tablet(&l.tablets("zone1")));
        assert_eq!(l.parse_keyspace(&l.keyspace("shop")), Some("shop".into()));
        assert_eq!(l.parse_keyspace(&l.shard("shop", "-80")), None);
        assert_eq!(l.routing_rules(), "/sc/global/routing_rules");
        assert!(l.routing_rules().starts_with(&l.everything()));
    }
}
