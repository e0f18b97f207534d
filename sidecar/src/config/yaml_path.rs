//! Finds the dotted path of the field a YAML document got wrong, so that a parse error
//! can say `users[1].nmae` and not only "line 7 column 5".
//!
//! serde_yaml reports where in the text it failed but not which field; this module walks
//! the parsed document against a table of the schema's shape and returns the first
//! field that is unknown or does not deserialize as its type.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::AuthPluginName;

/// The shape of a part of the schema.
pub(super) enum Shape {
    /// A value checked by deserializing it as its type.
    Leaf(fn(&Value) -> bool),
    /// A mapping with these known keys (unknown keys are errors).
    Struct(&'static [(&'static str, Shape)]),
    /// A sequence whose elements have this shape.
    Seq(&'static Shape),
    /// `null` or this shape.
    Opt(&'static Shape),
    /// A field without a default: a mapping that lacks it is at fault.
    Req(&'static Shape),
}

fn is<T: DeserializeOwned>(v: &Value) -> bool {
    serde_yaml::from_value::<T>(v.clone()).is_ok()
}

static PATH: Shape = Shape::Leaf(is::<PathBuf>);

static USER: Shape = Shape::Struct(&[
    ("name", Shape::Leaf(is::<String>)),
    ("native_hash", Shape::Leaf(is::<Option<String>>)),
    ("sha2_hash", Shape::Leaf(is::<Option<String>>)),
    ("password_file", Shape::Leaf(is::<Option<PathBuf>>)),
    ("password_env", Shape::Leaf(is::<Option<String>>)),
]);

static SERVER_TLS: Shape = Shape::Struct(&[
    ("cert_file", Shape::Req(&PATH)),
    ("key_file", Shape::Req(&PATH)),
    ("required", Shape::Leaf(is::<bool>)),
    ("client_ca_file", Shape::Leaf(is::<Option<PathBuf>>)),
    ("require_client_certificate", Shape::Leaf(is::<bool>)),
]);

static UPSTREAM_TLS: Shape = Shape::Struct(&[
    ("enabled", Shape::Leaf(is::<bool>)),
    ("ca_file", Shape::Leaf(is::<Option<PathBuf>>)),
    ("verify", Shape::Leaf(is::<bool>)),
    ("server_name", Shape::Leaf(is::<Option<String>>)),
]);

/// The whole app-role document.
pub(super) static APP: Shape = Shape::Struct(&[
    ("listen", Shape::Leaf(is::<SocketAddr>)),
    ("admin_listen", Shape::Leaf(is::<SocketAddr>)),
    ("max_connections", Shape::Leaf(is::<usize>)),
    ("max_packet_size", Shape::Leaf(is::<usize>)),
    ("handshake_timeout_ms", Shape::Leaf(is::<u64>)),
    ("drain_timeout_ms", Shape::Leaf(is::<u64>)),
    ("idle_timeout_ms", Shape::Leaf(is::<u64>)),
    ("local_infile", Shape::Leaf(is::<bool>)),
    (
        "auth",
        Shape::Struct(&[
            ("default_plugin", Shape::Leaf(is::<AuthPluginName>)),
            ("rsa_private_key_file", Shape::Leaf(is::<Option<PathBuf>>)),
        ]),
    ),
    ("users", Shape::Seq(&USER)),
    ("tls", Shape::Opt(&SERVER_TLS)),
    ("sharding", Shape::Leaf(is::<Option<super::ShardingConfig>>)),
    (
        "db",
        Shape::Struct(&[
            ("pool", Shape::Leaf(is::<super::PoolConfig>)),
            ("limits", Shape::Leaf(is::<super::LimitsConfig>)),
            (
                "builtin_rules",
                Shape::Leaf(is::<shardcar_filter::guard::rules::BuiltinRules>),
            ),
            (
                "rules",
                Shape::Seq(&Shape::Leaf(
                    is::<shardcar_filter::guard::rules::RuleConfig>,
                )),
            ),
            ("reload_interval_ms", Shape::Leaf(is::<u64>)),
            (
                "access",
                Shape::Seq(&Shape::Leaf(
                    is::<shardcar_filter::guard::access::AccessRule>,
                )),
            ),
            ("hot_rows", Shape::Leaf(is::<super::HotRowConfig>)),
            (
                "consolidation",
                Shape::Leaf(is::<super::ConsolidationConfig>),
            ),
            ("load", Shape::Leaf(is::<super::LoadConfig>)),
        ]),
    ),
    (
        "upstream",
        Shape::Struct(&[
            ("address", Shape::Leaf(is::<String>)),
            ("user", Shape::Leaf(is::<String>)),
            ("password", Shape::Leaf(is::<Option<String>>)),
            ("password_file", Shape::Leaf(is::<Option<PathBuf>>)),
            ("password_env", Shape::Leaf(is::<Option<String>>)),
            ("database", Shape::Leaf(is::<Option<String>>)),
            ("connect_timeout_ms", Shape::Leaf(is::<u64>)),
            ("tls", Shape::Opt(&UPSTREAM_TLS)),
        ]),
    ),
]);

/// The dotted path of the first field of `doc` that does not fit `shape`, if any.
pub(super) fn first_bad_field(shape: &Shape, doc: &Value) -> Option<String> {
    walk(shape, doc, String::new())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk(shape: &Shape, v: &Value, path: String) -> Option<String> {
    match shape {
        Shape::Leaf(ok) => (!ok(v)).then_some(path),
        Shape::Req(inner) => walk(inner, v, path),
        Shape::Opt(inner) => match v {
            Value::Null => None,
            _ => walk(inner, v, path),
        },
        Shape::Seq(inner) => match v {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| walk(inner, item, format!("{path}[{i}]"))),
            Value::Null => None,
            _ => Some(path),
        },
        Shape::Struct(fields) => {
            let map = match v {
                Value::Mapping(map) => map,
                // An empty section (`auth:`) takes its defaults.
                Value::Null => return None,
                _ => return Some(path),
            };
            for (key, value) in map {
                let Some(key) = key.as_str() else {
                    return Some(path);
                };
                let child = join(&path, key);
                match fields.iter().find(|(name, _)| *name == key) {
                    None => return Some(child),
                    Some((_, field_shape)) => {
                        if let Some(bad) = walk(field_shape, value, child) {
                            return Some(bad);
                        }
                    }
                }
            }
            fields
                .iter()
                .find(|(name, shape)| matches!(shape, Shape::Req(_)) && !map.contains_key(*name))
                .map(|(name, _)| join(&path, name))
        }
    }
}
