//! A small MySQL lexer: enough to classify a statement by its leading keywords, read the
//! comments sqlparser drops (routing hints such as `/*+ MAX_EXECUTION_TIME(5) */` or
//! `/* shardcar: ... */`), and normalize a statement into a plan-cache key with its literals
//! taken out. It never fails: bytes it does not understand become [`Token::Other`].

/// One token; borrowed from the statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// An unquoted word: a keyword or an identifier.
    Word(&'a str),
    /// A back-quoted identifier, without the quotes (doubled backquotes not collapsed).
    Quoted(&'a str),
    /// A string literal, with its quotes (`'it''s'`, `"x"`).
    String(&'a str),
    /// A number literal (`12`, `1.5e3`) or hex/bit literal (`0x1f`, `x'1f'`, `b'01'`).
    Number(&'a str),
    /// A `?` placeholder.
    Placeholder,
    /// A comment, with its delimiters (`/* .. */`, `-- ..`, `# ..`).
    Comment(&'a str),
    /// A user or system variable (`@x`, `@@session.autocommit`).
    Variable(&'a str),
    /// Punctuation or an operator, one or more bytes.
    Other(&'a str),
}

/// Iterates over the tokens of a statement, skipping whitespace.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Self {
        Lexer { text, pos: 0 }
    }

    /// The byte offset of the next token.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn at(&self, i: usize) -> u8 {
        self.bytes().get(i).copied().unwrap_or(0)
    }

    /// Ends a token at byte `end` (moved forward to a char boundary).
    fn take(&mut self, start: usize, mut end: usize) -> &'a str {
        end = end.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end += 1;
        }
        self.pos = end;
        &self.text[start..end]
    }

    fn quoted_end(&self, start: usize, quote: u8) -> usize {
        let b = self.bytes();
        let mut i = start + 1;
        while i < b.len() {
            match b[i] {
                b'\\' if quote != b'`' => i += 2,
                c if c == quote => {
                    if b.get(i + 1) == Some(&quote) {
                        i += 2;
                    } else {
                        return i + 1;
                    }
                }
                _ => i += 1,
            }
        }
        b.len()
    }
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let b = self.bytes();
        while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        let start = self.pos;
        let c = *b.get(start)?;
        let next = self.at(start + 1);
        let token = match c {
            b'/' if next == b'*' => {
                let end = self.text[start + 2..]
                    .find("*/")
                    .map_or(b.len(), |i| start + 2 + i + 2);
                Token::Comment(self.take(start, end))
            }
            b'#' => Token::Comment(self.take(start, line_end(b, start))),
            b'-' if next == b'-'
                && (self.at(start + 2).is_ascii_whitespace() || start + 2 >= b.len()) =>
            {
                Token::Comment(self.take(start, line_end(b, start)))
            }
            b'\'' | b'"' => {
                let end = self.quoted_end(start, c);
                Token::String(self.take(start, end))
            }
            b'`' => {
                let end = self.quoted_end(start, b'`');
                let whole = self.take(start, end);
                Token::Quoted(whole.trim_start_matches('`').trim_end_matches('`'))
            }
            b'?' => {
                self.pos += 1;
                Token::Placeholder
            }
            b'@' => {
                let mut i = start + 1;
                while i < b.len() && (is_word_byte(b[i]) || b[i] == b'@' || b[i] == b'.') {
                    i += 1;
                }
                if matches!(self.at(i), b'\'' | b'"' | b'`') && i == start + 1 {
                    i = self.quoted_end(i, b[i]);
                }
                Token::Variable(self.take(start, i))
            }
            b'x' | b'X' | b'b' | b'B' | b'n' | b'N' if next == b'\'' => {
                let end = self.quoted_end(start + 1, b'\'');
                if c == b'n' || c == b'N' {
                    Token::String(self.take(start, end))
                } else {
                    Token::Number(self.take(start, end))
                }
            }
            c if c.is_ascii_digit() || (c == b'.' && next.is_ascii_digit()) => {
                let mut i = start;
                if c == b'0' && (next == b'x' || next == b'X' || next == b'b' || next == b'B') {
                    i += 2;
                    while i < b.len() && b[i].is_ascii_alphanumeric() {
                        i += 1;
                    }
                } else {
                    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                        i += 1;
                    }
                    if matches!(self.at(i), b'e' | b'E')
                        && (self.at(i + 1).is_ascii_digit()
                            || (matches!(self.at(i + 1), b'+' | b'-')
                                && self.at(i + 2).is_ascii_digit()))
                    {
                        i += 2;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
                // `1abc` is an identifier in MySQL.
                if i < b.len() && is_word_byte(b[i]) {
                    while i < b.len() && is_word_byte(b[i]) {
                        i += 1;
                    }
                    Token::Word(self.take(start, i))
                } else {
                    Token::Number(self.take(start, i))
                }
            }
            c if is_word_byte(c) => {
                let mut i = start;
                while i < b.len() && is_word_byte(b[i]) {
                    i += 1;
                }
                Token::Word(self.take(start, i))
            }
            _ => {
                let two = [c, next];
                let len = match &two {
                    b"<=" | b">=" | b"<>" | b"!=" | b"||" | b"&&" | b":=" | b"<<" | b">>" => {
                        if &two == b"<=" && self.at(start + 2) == b'>' {
                            3
                        } else {
                            2
                        }
                    }
                    _ => 1,
                };
                Token::Other(self.take(start, start + len))
            }
        };
        Some(token)
    }
}

fn line_end(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |i| start + i)
}

/// The first `n` words of a statement, upper-cased, skipping comments (but not
/// executable `/*! ... */` comments, whose content MySQL runs: those stop the scan).
pub fn leading_words(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for token in Lexer::new(text) {
        match token {
            Token::Comment(c) if c.starts_with("/*!") => break,
            Token::Comment(_) => {}
            Token::Word(w) => {
                out.push(w.to_ascii_uppercase());
                if out.len() == n {
                    break;
                }
            }
            _ => break,
        }
    }
    out
}

/// The comments of a statement, in order (with their delimiters).
pub fn comments(text: &str) -> impl Iterator<Item = &str> {
    Lexer::new(text).filter_map(|t| match t {
        Token::Comment(c) => Some(c),
        _ => None,
    })
}

/// The value of `key` in a Shardcar comment of the statement: `/* shardcar: key=value,
/// other=value */` (keys compared case-insensitively; the last mention wins).
pub fn shardcar_hint<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    // Called for every statement: skip the lexing when there can be no comment at all.
    if !(text.contains("/*") || text.contains("--") || text.contains('#')) {
        return None;
    }
    let mut found = None;
    for c in comments(text) {
        let body = c
            .strip_prefix("/*")
            .and_then(|b| b.strip_suffix("*/"))
            .or_else(|| c.strip_prefix("--"))
            .or_else(|| c.strip_prefix('#'))
            .unwrap_or(c)
            .trim();
        let Some(rest) = body
            .get(..9)
            .filter(|p| p.eq_ignore_ascii_case("shardcar:"))
            .and_then(|_| body.get(9..))
        else {
            continue;
        };
        for pair in rest.split([',', ' ']).filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once('=') {
                if k.trim().eq_ignore_ascii_case(key) {
                    found = Some(v.trim());
                }
            }
        }
    }
    found
}

/// A statement with its literals replaced by `?`, for use as a plan-cache key, and the
/// literals in order. Comments are dropped; words are kept as written; tokens are joined
/// by single spaces. Returns `None` when the statement already holds `?` placeholders or
/// executable comments, which the cache does not handle.
pub fn normalize(text: &str) -> Option<(String, Vec<&str>)> {
    let mut key = String::with_capacity(text.len());
    let mut literals = Vec::new();
    for token in Lexer::new(text) {
        let piece = match token {
            Token::Comment(c) if c.starts_with("/*!") || c.starts_with("/*+") => return None,
            Token::Comment(_) => continue,
            Token::Placeholder => return None,
            Token::String(s) | Token::Number(s) => {
                literals.push(s);
                "?"
            }
            Token::Word(w) | Token::Variable(w) | Token::Other(w) => w,
            Token::Quoted(q) => {
                key.push(' ');
                key.push('`');
                key.push_str(q);
                key.push('`');
                continue;
            }
        };
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(piece);
    }
    Some((key, literals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_of_a_statement_with_comments_and_quotes() {
        let tokens: Vec<Token> =
            Lexer::new("SELECT /* hi */ `a``b`, 'it''s\\'', 0x1F, 1.5e3 -- tail\n FROM t#x")
                .collect();
        assert_eq!(
            tokens,
            vec![
                Token::Word("SELECT"),
                Token::Comment("/* hi */"),
                Token::Quoted("a``b"),
                Token::Other(","),
                Token::String("'it''s\\''"),
                Token::Other(","),
                Token::Number("0x1F"),
                Token::Other(","),
                Token::Number("1.5e3"),
                Token::Comment("-- tail"),
                Token::Word("FROM"),
                Token::Word("t"),
                Token::Comment("#x"),
            ]
        );
    }

    #[test]
    fn leading_words_skip_comments() {
        assert_eq!(
            leading_words("/* x */ begin work", 2),
            vec!["BEGIN", "WORK"]
        );
        assert_eq!(leading_words("set @@autocommit=0", 2), vec!["SET"]);
        assert!(leading_words("/*!40101 SET x=1 */", 1).is_empty());
    }

    #[test]
    fn normalize_takes_literals_out() {
        let (key, lits) =
            normalize("select c from t where id = 5 and name='x' /* c */").unwrap_or_default();
        assert_eq!(key, "select c from t where id = ? and name = ?");
        assert_eq!(lits, vec!["5", "'x'"]);
        assert!(normalize("select ?").is_none());
    }

    #[test]
    fn shardcar_hints_in_comments() {
        let sql = "SELECT /* shardcar: max_merge_rows=500000 */ * FROM t -- shardcar: x=1";
        assert_eq!(shardcar_hint(sql, "MAX_MERGE_ROWS"), Some("500000"));
        assert_eq!(shardcar_hint(sql, "x"), Some("1"));
        assert_eq!(shardcar_hint("SELECT /* other: a=1 */ 1", "a"), None);
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for text in [
            "'unterminated",
            "/* open",
            "`x",
            "@",
            "0x",
            "é'",
            "--",
            "x'",
            "\u{1F600}1e",
        ] {
            let _ = Lexer::new(text).count();
            let _ = normalize(text);
        }
    }
}
