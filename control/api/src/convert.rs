//! Between topology records (`shardcar-topo`) and their stream messages.

use shardcar_topo::{KeyspaceRecord, ShardRecord, TabletHealth, TabletRecord, TabletType};

use crate::pb;

pub fn keyspace(name: &str, record: &KeyspaceRecord) -> pb::Keyspace {
    pb::Keyspace {
        name: name.to_string(),
        durability_policy: record.durability_policy.clone(),
        vschema_json: record
            .vschema
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default(),
    }
}

pub fn shard(keyspace: &str, name: &str, record: &ShardRecord) -> pb::Shard {
    pb::Shard {
        keyspace: keyspace.to_string(),
        name: name.to_string(),
        primary_alias: record.primary_alias.clone().unwrap_or_default(),
        term: record.term,
        reparenting: record.reparenting,
    }
}

pub fn shard_record(shard: &pb::Shard) -> ShardRecord {
    ShardRecord {
        primary_alias: Some(shard.primary_alias.clone()).filter(|a| !a.is_empty()),
        term: shard.term,
        reparenting: shard.reparenting,
    }
}

fn tablet_type(t: TabletType) -> pb::TabletType {
    match t {
        TabletType::Primary => pb::TabletType::Primary,
        TabletType::Replica => pb::TabletType::Replica,
        TabletType::Rdonly => pb::TabletType::Rdonly,
        TabletType::Spare => pb::TabletType::Spare,
    }
}

pub fn tablet(record: &TabletRecord) -> pb::Tablet {
    let h = &record.health;
    pb::Tablet {
        alias: record.alias.clone(),
        cell: record.cell.clone(),
        keyspace: record.keyspace.clone(),
        shard: record.shard.clone(),
        r#type: tablet_type(record.tablet_type).into(),
        hostname: record.hostname.clone(),
        mysql_port: record.mysql_port.into(),
        admin_port: record.admin_port.into(),
        primary_term: record.primary_term,
        health: Some(pb::TabletHealth {
            serving: h.serving,
            read_only: h.read_only,
            replicating: h.replicating,
            lag_ms: h.lag_ms(),
            gtid_position: h.gtid_position.clone(),
        }),
        ..pb::Tablet::default()
    }
}

/// The record a tablet message stands for, with the fields the stream carries (the lag
/// as the heartbeat's; ports that do not fit in 16 bits as 0).
pub fn tablet_record(tablet: &pb::Tablet) -> TabletRecord {
    let health = tablet.health.clone().unwrap_or_default();
    let tablet_type = match tablet.r#type() {
        pb::TabletType::Primary => TabletType::Primary,
        pb::TabletType::Rdonly => TabletType::Rdonly,
        pb::TabletType::Spare => TabletType::Spare,
        pb::TabletType::Replica | pb::TabletType::Unspecified => TabletType::Replica,
    };
    TabletRecord {
        alias: tablet.alias.clone(),
        cell: tablet.cell.clone(),
        keyspace: tablet.keyspace.clone(),
        shard: tablet.shard.clone(),
        tablet_type,
        hostname: tablet.hostname.clone(),
        mysql_port: u16::try_from(tablet.mysql_port).unwrap_or(0),
        admin_port: u16::try_from(tablet.admin_port).unwrap_or(0),
        primary_term: tablet.primary_term,
        health: TabletHealth {
            serving: health.serving,
            read_only: health.read_only,
            replicating: health.replicating,
            heartbeat_lag_ms: health.lag_ms,
            gtid_position: health.gtid_position,
            ..TabletHealth::default()
        },
        ..TabletRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tablet_keeps_what_routing_reads() {
        let record = TabletRecord {
            alias: "zone1-0000000101".into(),
            cell: "zone1".into(),
            keyspace: "user".into(),
            shard: "-80".into(),
            tablet_type: TabletType::Rdonly,
            hostname: "10.0.0.7".into(),
            mysql_port: 3306,
            admin_port: 15000,
            primary_term: 4,
            health: TabletHealth {
                serving: true,
                replicating: true,
                replication_lag_seconds: Some(2),
                gtid_position: "0-1-9".into(),
                ..TabletHealth::default()
            },
            ..TabletRecord::default()
        };
        let back = tablet_record(&tablet(&record));
        assert_eq!(back.alias, record.alias);
        assert_eq!(back.tablet_type, TabletType::Rdonly);
        assert_eq!((back.mysql_port, back.admin_port), (3306, 15000));
        assert_eq!(back.health.lag_ms(), Some(2000));
        assert!(back.health.serving && back.health.replicating && !back.health.read_only);
        assert_eq!(back.primary_term, 4);
    }

    #[test]
    fn a_shard_without_a_primary_says_so() {
        let record = ShardRecord {
            primary_alias: None,
            term: 3,
            reparenting: true,
        };
        let message = shard("user", "-80", &record);
        assert_eq!(message.primary_alias, "");
        assert_eq!(shard_record(&message), record);
    }
}
