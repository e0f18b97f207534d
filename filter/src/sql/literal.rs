//! MySQL literal text to values: string literals with their escapes, numbers, hex and bit
//! literals, as the server reads them (with the default `sql_mode`, where a backslash
//! escapes and `"` quotes a string).

/// Decodes a quoted string literal (`'it''s'`, `"a\nb"`, `N'x'`) to its bytes, or `None` if
/// `raw` is not one.
pub fn unquote_string(raw: &str) -> Option<Vec<u8>> {
    let raw = raw
        .strip_prefix('N')
        .or_else(|| raw.strip_prefix('n'))
        .unwrap_or(raw);
    let bytes = raw.as_bytes();
    let quote = *bytes.first()?;
    if !(quote == b'\'' || quote == b'"') || bytes.len() < 2 || bytes[bytes.len() - 1] != quote {
        return None;
    }
    Some(unescape(&bytes[1..bytes.len() - 1], quote))
}

/// Undoes MySQL string escapes in the body of a literal quoted with `quote`.
pub fn unescape(body: &[u8], quote: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == b'\\' && i + 1 < body.len() {
            let e = body[i + 1];
            out.extend_from_slice(match e {
                b'0' => b"\0",
                b'n' => b"\n",
                b'r' => b"\r",
                b't' => b"\t",
                b'b' => b"\x08",
                b'Z' => b"\x1a",
                // MySQL keeps the backslash before % and _ (for LIKE patterns).
                b'%' => b"\\%",
                b'_' => b"\\_",
                _ => std::slice::from_ref(&body[i + 1]),
            });
            i += 2;
        } else if c == quote && body.get(i + 1) == Some(&quote) {
            out.push(quote);
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Decodes `0x1f`, `x'1f'` or `X'1F'` to bytes (an odd digit count gets a leading zero, as
/// MySQL does for `0x`); `None` if `raw` is not a valid hex literal.
pub fn hex_literal(raw: &str) -> Option<Vec<u8>> {
    let digits = if let Some(d) = raw.strip_prefix("0x") {
        d.to_string()
    } else {
        let inner = raw
            .strip_prefix("x'")
            .or_else(|| raw.strip_prefix("X'"))?
            .strip_suffix('\'')?;
        if inner.len() % 2 != 0 {
            return None;
        }
        inner.to_string()
    };
    let digits = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    hex::decode(digits).ok()
}

/// Quotes bytes as a MySQL literal that reads back as exactly these bytes: a string
/// literal for UTF-8 text, a hex literal otherwise.
pub fn quote_string(bytes: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return format!("0x{}", hex::encode(bytes));
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for ch in text.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_decode_like_mysql() {
        assert_eq!(unquote_string("'it''s'"), Some(b"it's".to_vec()));
        assert_eq!(unquote_string(r"'a\nb\\c\%'"), Some(b"a\nb\\c\\%".to_vec()));
        assert_eq!(unquote_string("\"x\"\"y\""), Some(b"x\"y".to_vec()));
        assert_eq!(unquote_string("N'z'"), Some(b"z".to_vec()));
        assert_eq!(unquote_string("5"), None);
    }

    #[test]
    fn hex_literals() {
        assert_eq!(hex_literal("0x1f"), Some(vec![0x1f]));
        assert_eq!(hex_literal("0xabc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(hex_literal("X'0A'"), Some(vec![0x0a]));
        assert_eq!(hex_literal("x'abc'"), None);
    }

    #[test]
    fn quoting_round_trips() {
        for s in ["plain", "it's", "a\\b", "Zoë", "x\ny"] {
            let q = quote_string(s.as_bytes());
            assert_eq!(unquote_string(&q), Some(s.as_bytes().to_vec()), "{q}");
        }
    }
}
