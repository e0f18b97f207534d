//! Session variables set with SET, tracked so that a multiplexed session does not pin a
//! backend connection: each SET is split into its assignments, the session keeps the
//! latest assignment per variable in order, and the db role replays them as one SET on
//! whichever backend connection runs the session's next statement.

use crate::sql::lexer::{Lexer, Token};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Most assignments a session may accumulate; beyond it the session pins its connection
/// instead (memory per session stays bounded).
pub const MAX_TRACKED: usize = 64;
/// Longest replay text kept, in bytes.
pub const MAX_REPLAY_BYTES: usize = 16 * 1024;

/// What one SET statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetEffect {
    /// Session-scoped assignments that can be replayed elsewhere.
    Session(Vec<Assignment>),
    /// Assigns a user variable: the session must keep its connection.
    UserVariable,
    /// `SET TRANSACTION ...` without a scope: applies to the next transaction only, so
    /// the session keeps its connection until that transaction ends.
    NextTransaction,
    /// Not session state (GLOBAL, PERSIST, PASSWORD, `SET STATEMENT .. FOR`): run as is.
    Stateless,
    /// A form the tracker does not understand: the session keeps its connection.
    Untracked,
}

/// One session assignment, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The variable, lower-cased, without scope prefix (`sql_mode`, `names`).
    pub name: String,
    /// The assignment's text, with its own scope prefix, for replay.
    pub text: String,
    /// The value refers to variables (`CONCAT(@@sql_mode, ..)`): later assignments do
    /// not replace it, because it depends on what came before.
    pub relative: bool,
}

/// Classifies a SET statement (`text` starts with SET, after comments).
pub fn parse_set(text: &str) -> SetEffect {
    let tokens: Vec<Token> = Lexer::new(text)
        .filter(|t| !matches!(t, Token::Comment(_)))
        .collect();
    let mut items: Vec<&[Token]> = Vec::new();
    let mut depth = 0u32;
    let mut start = 1;
    for (i, t) in tokens.iter().enumerate().skip(1) {
        match t {
            Token::Other("(") => depth += 1,
            Token::Other(")") => depth = depth.saturating_sub(1),
            Token::Other(",") if depth == 0 => {
                items.push(&tokens[start..i]);
                start = i + 1;
            }
            Token::Other(";") if depth == 0 => {
                // A second statement: the tracker only handles one.
                if tokens[i + 1..]
                    .iter()
                    .any(|t| !matches!(t, Token::Other(";")))
                {
                    return SetEffect::Untracked;
                }
                items.push(&tokens[start..i]);
                start = tokens.len();
                break;
            }
            _ => {}
        }
    }
    if start < tokens.len() {
        items.push(&tokens[start..]);
    }
    let Some(first) = items.first() else {
        return SetEffect::Untracked;
    };
    match first.first() {
        Some(Token::Word(w))
            if [
                "PASSWORD",
                "STATEMENT",
                "GLOBAL",
                "PERSIST",
                "PERSIST_ONLY",
                "DEFAULT",
            ]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            // A GLOBAL first item followed by unscoped ones is ambiguous between MySQL
            // versions: leave such a mix to a pinned connection.
            if w.eq_ignore_ascii_case("GLOBAL") && items.len() > 1 {
                return SetEffect::Untracked;
            }
            return SetEffect::Stateless;
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("TRANSACTION") => {
            return SetEffect::NextTransaction
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match assignment(item) {
            Item::Session(a) => out.push(a),
            Item::User => return SetEffect::UserVariable,
            Item::Global => return SetEffect::Untracked,
            Item::Unknown => return SetEffect::Untracked,
        }
    }
    SetEffect::Session(out)
}

enum Item {
    Session(Assignment),
    User,
    Global,
    Unknown,
}

fn word_is(t: Option<&Token>, k: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
}

fn assignment(tokens: &[Token]) -> Item {
    let mut rest = tokens;
    if word_is(rest.first(), "SESSION") || word_is(rest.first(), "LOCAL") {
        rest = &rest[1..];
    }
    if word_is(rest.first(), "GLOBAL") || word_is(rest.first(), "PERSIST") {
        return Item::Global;
    }
    let text = join(tokens);
    let name = match rest.first() {
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("NAMES") => "names".to_owned(),
        Some(Token::Word(w))
            if w.eq_ignore_ascii_case("CHARSET")
                || (w.eq_ignore_ascii_case("CHARACTER") && word_is(rest.get(1), "SET")) =>
        {
            "character set".to_owned()
        }
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("TRANSACTION") => "transaction".to_owned(),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("ROLE") => "role".to_owned(),
        Some(Token::Variable(v)) if !v.starts_with("@@") => return Item::User,
        Some(Token::Variable(v)) => {
            let bare = v.trim_start_matches('@');
            let lower = bare.to_ascii_lowercase();
            if lower.starts_with("global.") || lower.starts_with("persist") {
                return Item::Global;
            }
            let name = lower
                .strip_prefix("session.")
                .or_else(|| lower.strip_prefix("local."))
                .unwrap_or(&lower);
            if name.is_empty() || name.contains('.') {
                return Item::Unknown;
            }
            name.to_owned()
        }
        Some(Token::Word(w)) => {
            if !matches!(rest.get(1), Some(Token::Other("=" | ":="))) {
                return Item::Unknown;
            }
            w.to_ascii_lowercase()
        }
        Some(Token::Quoted(q)) => q.to_ascii_lowercase(),
        _ => return Item::Unknown,
    };
    let relative = rest.iter().skip(1).any(|t| matches!(t, Token::Variable(_)));
    if rest
        .iter()
        .skip(1)
        .any(|t| matches!(t, Token::Variable(v) if !v.starts_with("@@")))
    {
        // The value reads a user variable, which only this connection has.
        return Item::Unknown;
    }
    Item::Session(Assignment {
        name,
        text,
        relative,
    })
}

/// Re-joins tokens with single spaces (quoted identifiers re-quoted).
fn join(tokens: &[Token]) -> String {
    let mut out = String::new();
    for t in tokens {
        if !out.is_empty() {
            out.push(' ');
        }
        match t {
            Token::Quoted(q) => {
                out.push('`');
                out.push_str(q);
                out.push('`');
            }
            Token::Placeholder => out.push('?'),
            Token::Word(s)
            | Token::String(s)
            | Token::Number(s)
            | Token::Variable(s)
            | Token::Other(s)
            | Token::Comment(s) => out.push_str(s),
        }
    }
    out
}

/// A session's tracked assignments, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionVars {
    assignments: Vec<Assignment>,
    bytes: usize,
    key: u64,
}

/// The tracker refused to grow: the session should pin its connection instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyVariables;

impl SessionVars {
    /// Records assignments that mysqld accepted.
    pub fn apply(&mut self, new: &[Assignment]) -> Result<(), TooManyVariables> {
        let mut next = self.assignments.clone();
        for a in new {
            if !a.relative {
                next.retain(|old| old.name != a.name);
            }
            next.push(a.clone());
        }
        let bytes: usize = next.iter().map(|a| a.text.len() + 2).sum();
        if next.len() > MAX_TRACKED || bytes > MAX_REPLAY_BYTES {
            return Err(TooManyVariables);
        }
        self.assignments = next;
        self.bytes = bytes;
        self.key = if self.assignments.is_empty() {
            0
        } else {
            let mut h = DefaultHasher::new();
            self.assignments.hash(&mut h);
            h.finish() | 1
        };
        Ok(())
    }

    /// Forgets everything (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Identifies the state these assignments put a connection in; 0 when there are none.
    pub fn key(&self) -> u64 {
        self.key
    }

    pub fn is_empty(&self) -> bool {
        self.assignments.is_empty()
    }

    /// One SET statement that recreates the state on a clean connection.
    pub fn replay(&self) -> Option<String> {
        if self.assignments.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(self.bytes + 4);
        out.push_str("SET ");
        for (i, a) in self.assignments.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&a.text);
        }
        Some(out)
    }

    /// The value last assigned to `name`, as written (`'ANSI'`, `100`, `DEFAULT`).
    pub fn value(&self, name: &str) -> Option<&str> {
        let a = self.assignments.iter().rev().find(|a| a.name == name)?;
        let (_, value) = a.text.split_once('=')?;
        Some(value.trim())
    }

    pub fn assignments(&self) -> &[Assignment] {
        &self.assignments
    }
}

impl Hash for Assignment {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}
