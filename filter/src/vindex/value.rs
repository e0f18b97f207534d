//! The value a vindex maps: the part of Vitess's `sqltypes.Value` that decides a keyspace
//! id, and its two conversions `ToCastUint64` and `ToBytes`.
//!
//! Vitess carries a MySQL type and the raw bytes of the value's text form. What a vindex
//! does depends only on the class of the type, so [`Value`] keeps one variant per class:
//!
//! | variant | SQL that produces it | Vitess type | raw text |
//! |---|---|---|---|
//! | `Null` | `NULL` | `NULL_TYPE` | none (`raw = nil`) |
//! | `Int(i64)` | `5`, `-1` | `INT8`…`INT64` (`IsSigned`) | decimal, `-1` |
//! | `Uint(u64)` | `18446744073709551615` | `UINT8`…`UINT64` | decimal |
//! | `Decimal(text)` | `1.1`, `1e3`, a DECIMAL/FLOAT/DOUBLE column | `DECIMAL`, `FLOAT64` | the text as given |
//! | `Bytes(bytes)` | `'abc'`, a VARCHAR/VARBINARY/BLOB column | `VARCHAR`, `VARBINARY`, … | the bytes |
//! | `HexNum(bytes)` | `0x9efa` | `HexNum` | `0x9efa` |
//! | `HexVal(bytes)` | `x'9efa'` | `HexVal` | `x'9efa'` |
//!
//! `HexNum`/`HexVal` hold the decoded bytes; [`Value::hex_num`] and [`Value::hex_val`]
//! decode the SQL text and fail where Vitess's `ToBytes` would (so `to_bytes` itself
//! cannot fail here; Vitess's other `ToBytes` error, an `Expression` value, has no variant
//! because an expression is evaluated before it reaches a vindex). Their raw text is
//! rebuilt in lower case.
//!
//! **`to_cast_uint64`** (Vitess `ToCastUint64` = `fastparse.ParseUint64(raw, 10)`): skip
//! leading ASCII whitespace, read decimal digits, skip trailing whitespace. Errors:
//! * empty raw text (also `NULL`): `cannot parse uint64 from empty string`;
//! * no digit (`"aa"`, `"-1"`, `"0x…"`'s `x'…'`): `cannot parse uint64 from "aa"`;
//!   a minus sign is never accepted, so `Int(-1)` fails;
//! * anything after the digits (`"1.1"`, `"12:23:59"`, `"0x9efa"`):
//!   `unparsed tail left after parsing uint64 from "1.1": ".1"`;
//! * more than `u64::MAX`: `cannot parse uint64 from "18446744073709551616": overflow`.
//!
//! **`to_bytes`** (Vitess `ToBytes`): the raw text bytes (`Int(1)` → `"1"`, `Null` → empty),
//! except that hex values give their decoded bytes.

use std::borrow::Cow;
use std::fmt;

/// A value reaching a vindex; see the module documentation for the conversions.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A signed integer type (`IsSigned()` in Vitess).
    Int(i64),
    /// An unsigned integer type.
    Uint(u64),
    /// A decimal or floating-point number, as text (`"1.1"`).
    Decimal(String),
    /// A string or binary value: CHAR, VARCHAR, TEXT, BINARY, VARBINARY, BLOB, …
    Bytes(Vec<u8>),
    /// A hex number literal `0x…`, decoded.
    HexNum(Vec<u8>),
    /// A hex string literal `x'…'`, decoded.
    HexVal(Vec<u8>),
}

/// A value could not be converted the way a vindex needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// `ToCastUint64` failed; the message is Vitess's.
    #[error("{0}")]
    Uint64(String),
    /// A hex literal is not valid hex.
    #[error("invalid hex value {text:?}: {reason}")]
    Hex { text: String, reason: String },
    /// A unicode_loose vindex got bytes that are not UTF-8 (Vitess's message).
    #[error("cannot normalize string containing invalid UTF-8: {0}")]
    InvalidUtf8(String),
}

impl Value {
    /// A VARCHAR value.
    pub fn varchar(text: &str) -> Self {
        Value::Bytes(text.as_bytes().to_vec())
    }

    /// A VARBINARY value.
    pub fn varbinary(bytes: impl Into<Vec<u8>>) -> Self {
        Value::Bytes(bytes.into())
    }

    /// A DECIMAL/FLOAT value from its text.
    pub fn decimal(text: &str) -> Self {
        Value::Decimal(text.to_string())
    }

    /// Decodes the SQL text of a hex number, `0x9efa` (Vitess `decodeHexNum`).
    pub fn hex_num(text: &str) -> Result<Self, ValueError> {
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .filter(|d| !d.is_empty())
            .ok_or_else(|| ValueError::Hex {
                text: text.to_string(),
                reason: "invalid hex number".to_string(),
            })?;
        decode_hex(text, digits).map(Value::HexNum)
    }

    /// Decodes the SQL text of a hex string, `x'9efa'` (Vitess `decodeHexVal`).
    pub fn hex_val(text: &str) -> Result<Self, ValueError> {
        let digits = text
            .strip_prefix("x'")
            .or_else(|| text.strip_prefix("X'"))
            .and_then(|d| d.strip_suffix('\''))
            .ok_or_else(|| ValueError::Hex {
                text: text.to_string(),
                reason: "invalid hex value".to_string(),
            })?;
        decode_hex(text, digits).map(Value::HexVal)
    }

    /// True for `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// True for a signed integer type (Vitess `IsSigned`).
    pub fn is_signed(&self) -> bool {
        matches!(self, Value::Int(_))
    }

    /// The raw text form Vitess stores (`Int(-1)` → `"-1"`, `HexNum` → `"0x9efa"`).
    pub fn raw(&self) -> Cow<'_, [u8]> {
        match self {
            Value::Null => Cow::Borrowed(&[]),
            Value::Int(i) => Cow::Owned(i.to_string().into_bytes()),
            Value::Uint(u) => Cow::Owned(u.to_string().into_bytes()),
            Value::Decimal(text) => Cow::Borrowed(text.as_bytes()),
            Value::Bytes(bytes) => Cow::Borrowed(bytes),
            Value::HexNum(bytes) => Cow::Owned(format!("0x{}", hex::encode(bytes)).into_bytes()),
            Value::HexVal(bytes) => Cow::Owned(format!("x'{}'", hex::encode(bytes)).into_bytes()),
        }
    }

    /// The raw text as a string, invalid UTF-8 replaced (Vitess `ToString`).
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.raw()).into_owned()
    }

    /// Vitess `ToBytes`: the raw bytes, hex values decoded.
    pub fn to_bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Value::HexNum(bytes) | Value::HexVal(bytes) => Cow::Borrowed(bytes),
            other => other.raw(),
        }
    }

    /// Vitess `ToCastUint64`; see the module documentation for the exact rules.
    pub fn to_cast_uint64(&self) -> Result<u64, ValueError> {
        match self {
            // Fast paths with the same answers as parsing the text.
            Value::Uint(u) => Ok(*u),
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            other => parse_uint64(&other.raw()),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Uint(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::varchar(v)
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "Int({i})"),
            Value::Uint(u) => write!(f, "Uint({u})"),
            Value::Decimal(t) => write!(f, "Decimal({t})"),
            Value::Bytes(b) => write!(f, "Bytes({})", go_quote(b)),
            Value::HexNum(b) => write!(f, "HexNum(0x{})", hex::encode(b)),
            Value::HexVal(b) => write!(f, "HexVal(x'{}')", hex::encode(b)),
        }
    }
}

fn decode_hex(text: &str, digits: &str) -> Result<Vec<u8>, ValueError> {
    hex::decode(digits).map_err(|e| ValueError::Hex {
        text: text.to_string(),
        reason: e.to_string(),
    })
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `fastparse.ParseUint64(s, 10)` with Vitess's error messages.
pub(crate) fn parse_uint64(s: &[u8]) -> Result<u64, ValueError> {
    if s.is_empty() {
        return Err(ValueError::Uint64(
            "cannot parse uint64 from empty string".to_string(),
        ));
    }
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let digits_start = i;
    let mut value: u64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        let digit = u64::from(s[i] - b'0');
        value = match value.checked_mul(10).and_then(|v| v.checked_add(digit)) {
            Some(v) => v,
            None => {
                return Err(ValueError::Uint64(format!(
                    "cannot parse uint64 from {}: overflow",
                    go_quote(s)
                )))
            }
        };
        i += 1;
    }
    if i == digits_start {
        return Err(ValueError::Uint64(format!(
            "cannot parse uint64 from {}",
            go_quote(s)
        )));
    }
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    if i < s.len() {
        return Err(ValueError::Uint64(format!(
            "unparsed tail left after parsing uint64 from {}: {}",
            go_quote(s),
            go_quote(&s[i..])
        )));
    }
    Ok(value)
}

/// Go's `%q` for bytes: double quotes, `\"` `\\` `\n` `\t` `\r`, other control and
/// non-UTF-8 bytes as `\xNN`, printable UTF-8 kept.
pub(crate) fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(v: Value) -> Result<u64, String> {
        v.to_cast_uint64().map_err(|e| e.to_string())
    }

    #[test]
    fn to_cast_uint64_accepts_only_unsigned_decimal_text() {
        assert_eq!(cast(Value::Int(213)), Ok(213));
        assert_eq!(cast(Value::Uint(u64::MAX)), Ok(u64::MAX));
        assert_eq!(cast(Value::varchar(" 42 ")), Ok(42));
        assert_eq!(cast(Value::decimal("7")), Ok(7));
        // sqltypes value_test.go TestToCastUint64 and the VINDEXES.md examples.
        assert_eq!(
            cast(Value::Int(-213)),
            Err(r#"cannot parse uint64 from "-213""#.to_string())
        );
        assert_eq!(
            cast(Value::varchar("aa")),
            Err(r#"cannot parse uint64 from "aa""#.to_string())
        );
        assert_eq!(
            cast(Value::varchar("9223372036854775808a")),
            Err(
                r#"unparsed tail left after parsing uint64 from "9223372036854775808a": "a""#
                    .to_string()
            )
        );
        assert_eq!(
            cast(Value::varchar("12:23:59")),
            Err(r#"unparsed tail left after parsing uint64 from "12:23:59": ":23:59""#.to_string())
        );
        assert_eq!(
            cast(Value::decimal("1.1")),
            Err(r#"unparsed tail left after parsing uint64 from "1.1": ".1""#.to_string())
        );
        assert_eq!(
            cast(Value::varchar("18446744073709551616")),
            Err(r#"cannot parse uint64 from "18446744073709551616": overflow"#.to_string())
        );
        assert_eq!(
            cast(Value::Null),
            Err("cannot parse uint64 from empty string".to_string())
        );
        assert!(cast(Value::hex_num("0x9efa").unwrap()).is_err());
        assert!(cast(Value::hex_val("x'9efa'").unwrap()).is_err());
    }

    #[test]
    fn to_bytes_is_text_except_hex_which_is_decoded() {
        assert_eq!(&*Value::Int(-1).to_bytes(), b"-1");
        assert_eq!(&*Value::Uint(7).to_bytes(), b"7");
        assert_eq!(&*Value::Null.to_bytes(), b"");
        assert_eq!(&*Value::varchar("abc").to_bytes(), b"abc");
        assert_eq!(
            &*Value::hex_num("0x9efa").unwrap().to_bytes(),
            &[0x9e, 0xfa]
        );
        assert_eq!(
            &*Value::hex_val("x'9EFA'").unwrap().to_bytes(),
            &[0x9e, 0xfa]
        );
        assert!(Value::hex_num("0x9ef").is_err());
        assert!(Value::hex_val("9efa").is_err());
        assert_eq!(Value::hex_num("0x9EFA").unwrap().to_text(), "0x9efa");
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote(b"a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(go_quote(&[0xff, b'a']), r#""\xffa""#);
        assert_eq!(go_quote("é".as_bytes()), "\"é\"");
    }
}
