//! Prepared-statement parameters for the planner: binary-protocol values as vindex values
//! (so `WHERE id = ?` routes by its bound value), and a statement's `?` placeholders
//! replaced by literals (so a statement that needs rewriting or merging runs as text).

use crate::protocol::column::ColumnDefinition;
use crate::protocol::value::Value as ProtoValue;
use crate::sql::lexer::{Lexer, Token};
use crate::sql::literal::quote_string;
use crate::vindex::Value;

/// The vindex value of a bound parameter.
pub fn vindex_value(v: &ProtoValue) -> Value {
    match v {
        ProtoValue::Null => Value::Null,
        ProtoValue::Int(i) => Value::Int(*i),
        ProtoValue::UInt(u) => Value::Uint(*u),
        ProtoValue::Bytes(b) => Value::Bytes(b.clone()),
        other => Value::Decimal(String::from_utf8_lossy(&literal_text(other)).into_owned()),
    }
}

/// A bound value as SQL literal text.
fn literal_text(v: &ProtoValue) -> Vec<u8> {
    match v {
        ProtoValue::Null => b"NULL".to_vec(),
        ProtoValue::Bytes(b) => quote_string(b).into_bytes(),
        ProtoValue::Date { .. } | ProtoValue::DateTime { .. } | ProtoValue::Time { .. } => {
            let (t, _) = v.natural_type();
            let text = v.to_text(&ColumnDefinition::new("", t));
            quote_string(&text).into_bytes()
        }
        ProtoValue::Float(f) => format!("{f:e}").into_bytes(),
        ProtoValue::Double(d) => format!("{d:e}").into_bytes(),
        other => {
            let (t, _) = other.natural_type();
            other.to_text(&ColumnDefinition::new("", t))
        }
    }
}

/// `sql` with its `?` placeholders replaced by `params` in order; `None` when the counts
/// differ.
pub fn bind(sql: &str, params: &[ProtoValue]) -> Option<String> {
    let mut out = Vec::with_capacity(sql.len() + params.len() * 8);
    let mut lexer = Lexer::new(sql);
    let mut copied = 0;
    let mut next = params.iter();
    while let Some(token) = lexer.next() {
        if token == Token::Placeholder {
            let end = lexer.position();
            let start = end - 1;
            out.extend_from_slice(sql.as_bytes().get(copied..start)?);
            out.extend_from_slice(&literal_text(next.next()?));
            copied = end;
        }
    }
    if next.next().is_some() {
        return None;
    }
    out.extend_from_slice(sql.as_bytes().get(copied..)?);
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_in_order_and_quotes() {
        let sql = "SELECT '?' , c FROM t WHERE id = ? AND name = ? -- ?\n AND x IN (?)";
        let bound = bind(
            sql,
            &[
                ProtoValue::Int(-5),
                ProtoValue::Bytes(b"it's".to_vec()),
                ProtoValue::Null,
            ],
        );
        assert_eq!(
            bound.as_deref(),
            Some("SELECT '?' , c FROM t WHERE id = -5 AND name = 'it''s' -- ?\n AND x IN (NULL)")
        );
        assert_eq!(bind("SELECT ?", &[]), None);
        assert_eq!(bind("SELECT 1", &[ProtoValue::Int(1)]), None);
    }

    #[test]
    fn values_for_vindexes() {
        assert_eq!(vindex_value(&ProtoValue::UInt(7)), Value::Uint(7));
        assert_eq!(
            vindex_value(&ProtoValue::Bytes(b"a".to_vec())),
            Value::Bytes(b"a".to_vec())
        );
    }
}
