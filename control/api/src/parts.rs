//! Large updates in parts: the control service splits an update into messages of a
//! bounded size ([`split`]) and the sidecar joins them back ([`Parts`]). A snapshot of
//! thousands of tablets is megabytes; in parts, neither end buffers more than a part
//! per stream at a time.

use prost::Message;

use crate::pb;

/// The encoded size a part aims at: tonic's default encode buffer (8 KiB), which each
/// stream then keeps at that size instead of growing it to its largest message.
pub const PART_BYTES: usize = 8 * 1024;

/// Splits `update` into parts of about `max_bytes` of records each (one part when it
/// is small). Every part carries the update's version, `full` and base; all but the
/// last say `more`.
pub fn split(update: pb::ConfigUpdate, max_bytes: usize) -> Vec<pb::ConfigUpdate> {
    if update.encoded_len() <= max_bytes {
        return vec![update];
    }
    let empty = pb::ConfigUpdate {
        version: update.version,
        full: update.full,
        base_version: update.base_version,
        control_instance: update.control_instance.clone(),
        ..pb::ConfigUpdate::default()
    };
    let mut parts = vec![pb::ConfigUpdate {
        routing_rules_json: update.routing_rules_json.clone(),
        ..empty.clone()
    }];
    let mut size = 0;
    let mut room = |len: usize, parts: &mut Vec<pb::ConfigUpdate>| {
        if size + len > max_bytes && size > 0 {
            parts.push(empty.clone());
            size = 0;
        }
        size += len;
    };
    macro_rules! spread {
        ($field:ident) => {
            for item in update.$field {
                room(item.encoded_len() + 4, &mut parts);
                if let Some(last) = parts.last_mut() {
                    last.$field.push(item);
                }
            }
        };
    }
    spread!(keyspaces);
    spread!(shards);
    spread!(tablets);
    spread!(removed_shards);
    for name in update.removed_keyspaces {
        room(name.len() + 4, &mut parts);
        if let Some(last) = parts.last_mut() {
            last.removed_keyspaces.push(name);
        }
    }
    for alias in update.removed_tablets {
        room(alias.len() + 4, &mut parts);
        if let Some(last) = parts.last_mut() {
            last.removed_tablets.push(alias);
        }
    }
    let n = parts.len();
    for (i, part) in parts.iter_mut().enumerate() {
        part.more = i + 1 < n;
    }
    parts
}

/// A part that does not continue the update being joined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("part of version {got} arrived while version {joining} was being joined")]
pub struct PartError {
    pub joining: u64,
    pub got: u64,
}

/// Joins parts back into whole updates.
#[derive(Debug, Default)]
pub struct Parts {
    joining: Option<pb::ConfigUpdate>,
}

impl Parts {
    /// Takes a part; returns the whole update after its last part.
    pub fn push(&mut self, part: pb::ConfigUpdate) -> Result<Option<pb::ConfigUpdate>, PartError> {
        let more = part.more;
        let whole = match self.joining.take() {
            None => part,
            Some(mut whole) => {
                if whole.version != part.version || whole.full != part.full {
                    return Err(PartError {
                        joining: whole.version,
                        got: part.version,
                    });
                }
                whole.keyspaces.extend(part.keyspaces);
                whole.removed_keyspaces.extend(part.removed_keyspaces);
                whole.shards.extend(part.shards);
                whole.removed_shards.extend(part.removed_shards);
                whole.tablets.extend(part.tablets);
                whole.removed_tablets.extend(part.removed_tablets);
                if part.routing_rules_json.is_some() {
                    whole.routing_rules_json = part.routing_rules_json;
                }
                whole
            }
        };
        if more {
            self.joining = Some(whole);
            Ok(None)
        } else {
            Ok(Some(pb::ConfigUpdate {
                more: false,
                ..whole
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(tablets: usize) -> pb::ConfigUpdate {
        pb::ConfigUpdate {
            version: 7,
            full: true,
            routing_rules_json: Some(r#"{"rules":[]}"#.into()),
            tablets: (0..tablets)
                .map(|i| pb::Tablet {
                    alias: format!("zone1-{i:010}"),
                    hostname: format!("10.0.{}.{}", i / 256, i % 256),
                    ..pb::Tablet::default()
                })
                .collect(),
            removed_tablets: vec!["gone".into()],
            ..pb::ConfigUpdate::default()
        }
    }

    #[test]
    fn a_large_update_splits_into_bounded_parts_that_join_back() {
        let update = big(3_000);
        let parts = split(update.clone(), 4_096);
        assert!(parts.len() > 10, "{} parts", parts.len());
        for part in &parts {
            assert!(part.encoded_len() <= 4_096 + 256, "{}", part.encoded_len());
            assert_eq!((part.version, part.full), (7, true));
        }
        assert!(parts[..parts.len() - 1].iter().all(|p| p.more));
        let mut joined = Parts::default();
        let mut whole = None;
        for part in parts {
            assert!(whole.is_none(), "nothing before the last part");
            whole = joined.push(part).expect("same update");
        }
        assert_eq!(whole, Some(update));
    }

    #[test]
    fn a_small_update_is_one_part_and_a_stray_part_is_refused() {
        let small = big(3);
        assert_eq!(split(small.clone(), PART_BYTES), vec![small.clone()]);
        let mut joined = Parts::default();
        assert_eq!(joined.push(small.clone()), Ok(Some(small)));
        let mut first = big(1);
        first.more = true;
        joined.push(first).expect("a first part");
        let other = pb::ConfigUpdate {
            version: 8,
            ..pb::ConfigUpdate::default()
        };
        assert_eq!(joined.push(other), Err(PartError { joining: 7, got: 8 }));
    }
}
