//! Serde helpers that make serde's derive read JSON the way Vitess's protojson parser does.
//!
//! Vitess reads VSchema documents with `protojson.UnmarshalOptions{DiscardUnknown: true}`.
//! Where that differs from serde's defaults, these helpers close the gap:
//! * a field whose value is `null` takes its default (empty string, `false`, empty list or map),
//! * map-valued fields (`keyspaces`, `vindexes`, `tables`) reject duplicate keys and prefix any
//!   error inside an entry with the entry's name, so an operator sees `keyspace user: vindex v: ...`,
//! * vindex `params` values must be JSON strings; anything else is an error naming the param,
//! * enums are given by name (or by number), and an unknown name is ignored as protojson does.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// Reads a field whose JSON `null` means "the default value", as protojson does for every
/// singular, repeated and map field.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Removes the ` at line L column C` suffix serde_json appends, so that an error can be
/// re-wrapped with more context without repeating the position.
pub(crate) fn strip_position(message: &str) -> &str {
    if let Some((head, tail)) = message.rsplit_once(" at line ") {
        let mut parts = tail.split(" column ");
        let line_ok = parts
            .next()
            .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        let column_ok = parts
            .next()
            .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
        if line_ok && column_ok && parts.next().is_none() {
            return head;
        }
    }
    message
}

/// What a named map holds, for error messages (`keyspace`, `vindex`, `table`).
pub(crate) trait EntryLabel {
    const LABEL: &'static str;
}

pub(crate) struct KeyspaceEntry;
impl EntryLabel for KeyspaceEntry {
    const LABEL: &'static str = "keyspace";
}
pub(crate) struct VindexEntry;
impl EntryLabel for VindexEntry {
    const LABEL: &'static str = "vindex";
}
pub(crate) struct TableEntry;
impl EntryLabel for TableEntry {
    const LABEL: &'static str = "table";
}

struct NamedMapVisitor<T, L>(PhantomData<(T, L)>);

impl<'de, T, L> Visitor<'de> for NamedMapVisitor<T, L>
where
    T: Deserialize<'de>,
    L: EntryLabel,
{
    type Value = BTreeMap<String, T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map of {} name to {} object", L::LABEL, L::LABEL)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate {} name {key}",
                    L::LABEL
                )));
            }
            let value = map.next_value::<T>().map_err(|e| {
                de::Error::custom(format!(
                    "{} {key}: {}",
                    L::LABEL,
                    strip_position(&e.to_string())
                ))
            })?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

fn named_map<'de, D, T, L>(deserializer: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
    L: EntryLabel,
{
    deserializer.deserialize_option(NamedMapVisitor::<T, L>(PhantomData))
}

/// `keyspaces` of a SrvVSchema.
pub(crate) fn keyspace_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    named_map::<D, T, KeyspaceEntry>(d)
}

/// `vindexes` of a keyspace.
pub(crate) fn vindex_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    named_map::<D, T, VindexEntry>(d)
}

/// `tables` of a keyspace.
pub(crate) fn table_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    named_map::<D, T, TableEntry>(d)
}

struct ParamsVisitor;

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of param name to string value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<serde_json::Value>()?;
            let serde_json::Value::String(text) = value else {
                return Err(de::Error::custom(format!(
                    "param {key} must be a string, got {}",
                    describe(&value)
                )));
            };
            if out.insert(key.clone(), text).is_some() {
                return Err(de::Error::custom(format!("duplicate param {key}")));
            }
        }
        Ok(out)
    }
}

fn describe(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "null".to_owned(),
        serde_json::Value::Bool(b) => format!("boolean {b}"),
        serde_json::Value::Number(n) => format!("number {n}"),
        serde_json::Value::String(s) => format!("string {s:?}"),
        serde_json::Value::Array(_) => "an array".to_owned(),
        serde_json::Value::Object(_) => "an object".to_owned(),
    }
}

/// Vindex `params`: `map<string, string>`; a value that is not a JSON string is an error.
pub(crate) fn string_params<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_option(ParamsVisitor)
}

/// A protobuf enum value as protojson accepts it: its name as a string, or its number.
#[derive(Debug)]
pub(crate) enum EnumValue {
    Name(String),
    Number(i64),
    Null,
}

impl<'de> Deserialize<'de> for EnumValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnumValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum name or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnumValue, E> {
                Ok(EnumValue::Name(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnumValue, E> {
                Ok(EnumValue::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnumValue, E> {
                i64::try_from(v)
                    .map(EnumValue::Number)
                    .map_err(|_| E::custom(format!("enum number {v} out of range")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<EnumValue, E> {
                Ok(EnumValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<EnumValue, E> {
                Ok(EnumValue::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<EnumValue, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_option(V)
    }
}

/// An `int32` field: protojson accepts a JSON number or a decimal string, `null` is 0.
pub(crate) fn int32<'de, D>(d: D) -> Result<i32, D::Error>
where
    D: Deserializer<'de>,
{
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = i32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a 32-bit integer (number or decimal string)")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("integer {v} out of range for int32")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("integer {v} out of range for int32")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i32, E> {
            if v.fract() == 0.0 && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX) {
                // Exact: the value is integral and within range.
                #[allow(clippy::cast_possible_truncation)]
                Ok(v as i32)
            } else {
                Err(E::custom(format!("{v} is not a valid int32")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
            v.trim()
                .parse::<i32>()
                .map_err(|_| E::custom(format!("{v:?} is not a valid int32")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i32, E> {
            Ok(0)
        }
        fn visit_none<E: de::Error>(self) -> Result<i32, E> {
            Ok(0)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<i32, D::Error> {
            d.deserialize_any(self)
        }
    }
    d.deserialize_option(V)
}

/// A `float` field: a JSON number or a numeric string, `null` is 0.
pub(crate) fn float32<'de, D>(d: D) -> Result<f32, D::Error>
where
    D: Deserializer<'de>,
{
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = f32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }
        #[allow(clippy::cast_precision_loss)]
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f32, E> {
            Ok(v as f32)
        }
        #[allow(clippy::cast_precision_loss)]
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f32, E> {
            Ok(v as f32)
        }
        #[allow(clippy::cast_possible_truncation)]
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f32, E> {
            Ok(v as f32)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f32, E> {
            v.trim()
                .parse::<f32>()
                .map_err(|_| E::custom(format!("{v:?} is not a valid float")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<f32, E> {
            Ok(0.0)
        }
        fn visit_none<E: de::Error>(self) -> Result<f32, E> {
            Ok(0.0)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<f32, D::Error> {
            d.deserialize_any(self)
        }
    }
    d.deserialize_option(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_position_removes_only_a_serde_json_suffix() {
        assert_eq!(strip_position("bad at line 3 column 7"), "bad");
        assert_eq!(strip_position("look at line up"), "look at line up");
        assert_eq!(strip_position("plain"), "plain");
    }
}
