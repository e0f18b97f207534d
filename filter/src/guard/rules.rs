//! Query rules: an ordered list of matchers (user, client identity, statement kind,
//! table, normalized fingerprint, regular expression, missing WHERE) with actions (deny,
//! allow, log, rate-limit, rewrite), plus built-in rules for the classic accidents.
//! The same schema configures the db role, the QueryPolicy CRD and the wasm filter.
//!
//! Evaluation is first-match for deny, allow and rate-limit; log rules record and let
//! evaluation continue; a rewrite replaces the text and evaluation continues on the new
//! text. Rate limiting uses a token bucket per rule; the caller passes the time.

use super::statement::{Kind, Statement};
use crate::sql::lexer::normalize;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use thiserror::Error;

/// One rule as configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Named in errors, logs and metrics.
    pub name: String,
    #[serde(rename = "match")]
    pub matches: MatchConfig,
    pub action: ActionName,
    /// Text added to the error a deny sends.
    pub message: Option<String>,
    /// For `rate_limit`: statements per second, and the burst allowed above it.
    pub per_second: Option<f64>,
    pub burst: Option<u32>,
    /// For `rewrite`: a regular expression and its replacement (`$1` refers to groups).
    pub pattern: Option<String>,
    pub replacement: Option<String>,
}

/// What a rule matches; every field given must match (an empty list matches anything).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// MySQL user names; `*` matches any run of characters.
    pub users: Vec<String>,
    /// Client identities (the mTLS certificate identity, else the peer address).
    pub clients: Vec<String>,
    /// Statement kinds: select, insert, update, delete, replace, ddl, set, show, ...
    pub statements: Vec<String>,
    /// Table names (any table the statement names).
    pub tables: Vec<String>,
    /// Normalized statements, literals replaced by `?` (as `/debug/queries` shows them).
    pub fingerprints: Vec<String>,
    /// A regular expression over the statement text.
    pub regex: Option<String>,
    /// Only statements without a top-level WHERE clause.
    pub no_where: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    #[default]
    Deny,
    Allow,
    Log,
    RateLimit,
    Rewrite,
}

/// The built-in rules, each off, logging or denying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinRules {
    pub update_without_where: BuiltinAction,
    pub delete_without_where: BuiltinAction,
    /// SELECT without WHERE and without LIMIT on a table.
    pub unbounded_select: BuiltinAction,
    /// CREATE/ALTER/DROP/TRUNCATE/RENAME.
    pub ddl: BuiltinAction,
    /// Users exempt from the built-in rules (migrations, operators).
    pub exempt_users: Vec<String>,
}

impl Default for BuiltinRules {
    fn default() -> Self {
        Self {
            update_without_where: BuiltinAction::Deny,
            delete_without_where: BuiltinAction::Deny,
            unbounded_select: BuiltinAction::Off,
            ddl: BuiltinAction::Off,
            exempt_users: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinAction {
    #[default]
    Off,
    Log,
    Deny,
}

/// A rule set that failed to compile; names the rule and the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("rules[{index}] ({name}).{field}: {message}")]
pub struct RuleError {
    pub index: usize,
    pub name: String,
    pub field: &'static str,
    pub message: String,
}

/// Who runs the statement.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: &'a str,
    pub client: &'a str,
}

/// The decision for one statement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    pub action: Decision,
    /// Log rules that matched (by name).
    pub logged: Vec<String>,
    /// The statement text after rewrites, when a rewrite rule matched.
    pub rewritten: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Decision {
    #[default]
    Run,
    Deny {
        rule: String,
        message: String,
    },
    RateLimited {
        rule: String,
    },
}

#[derive(Debug)]
enum Action {
    Deny(String),
    Allow,
    Log,
    RateLimit(Mutex<Bucket>),
    Rewrite(Regex, String),
}

#[derive(Debug)]
struct Rule {
    name: String,
    users: Vec<String>,
    clients: Vec<String>,
    kinds: Vec<String>,
    tables: Vec<String>,
    fingerprints: Vec<String>,
    regex: Option<Regex>,
    no_where: bool,
    /// Built-in: SELECT from a table without WHERE and LIMIT.
    unbounded: bool,
    exempt: Vec<String>,
    action: Action,
}

/// Token bucket with times in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    per_ms: f64,
    burst: f64,
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.burst);
        self.at_ms = now_ms.max(self.at_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Compiled rules, shared by every session.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    needs_fingerprint: bool,
}

/// Kind names a rule may list.
const KINDS: &[&str] = &[
    "select",
    "insert",
    "replace",
    "update",
    "delete",
    "load",
    "set",
    "use",
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "lock",
    "unlock",
    "ddl",
    "show",
    "explain",
    "call",
    "do",
    "prepare",
    "execute",
    "deallocate",
    "xa",
    "handler",
    "kill",
    "other",
];

impl RuleSet {
    /// Compiles configured rules after the built-ins.
    pub fn compile(builtin: &BuiltinRules, rules: &[RuleConfig]) -> Result<Self, RuleError> {
        let mut out = Vec::new();
        let mut add_builtin = |name: &str, action: BuiltinAction, kinds: &[&str], unbounded| {
            let action = match action {
                BuiltinAction::Off => return,
                BuiltinAction::Log => Action::Log,
                BuiltinAction::Deny => Action::Deny(match name {
                    "ddl" => "DDL is not allowed from applications".to_owned(),
                    "unbounded_select" => "SELECT without WHERE or LIMIT".to_owned(),
                    _ => format!("{} without WHERE", kinds[0].to_ascii_uppercase()),
                }),
            };
            out.push(Rule {
                name: format!("builtin:{name}"),
                users: Vec::new(),
                clients: Vec::new(),
                kinds: kinds.iter().map(|k| k.to_string()).collect(),
                tables: Vec::new(),
                fingerprints: Vec::new(),
                regex: None,
                no_where: name.ends_with("without_where"),
                unbounded,
                exempt: builtin.exempt_users.clone(),
                action,
            });
        };
        add_builtin(
            "update_without_where",
            builtin.update_without_where,
            &["update"],
            false,
        );
        add_builtin(
            "delete_without_where",
            builtin.delete_without_where,
            &["delete"],
            false,
        );
        add_builtin(
            "unbounded_select",
            builtin.unbounded_select,
            &["select"],
            true,
        );
        add_builtin("ddl", builtin.ddl, &["ddl"], false);
        for (index, r) in rules.iter().enumerate() {
            out.push(compile_rule(index, r)?);
        }
        let needs_fingerprint = out.iter().any(|r| !r.fingerprints.is_empty());
        Ok(Self {
            rules: out,
            needs_fingerprint,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule names in evaluation order, for `/debug/rules`.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// Decides what happens to `text` (analysed as `st`) sent by `who` at `now_ms`.
    /// Like [`RuleSet::evaluate`], but a multi-statement text is judged statement by
    /// statement, so that `SELECT 1; DROP TABLE t` meets the DDL rules: the first
    /// statement denied or rate-limited decides, every statement's log rules are
    /// reported, and rewrites apply to single statements only.
    pub fn evaluate_each(&self, who: Subject, text: &str, st: &Statement, now_ms: u64) -> Verdict {
        if !st.effects.multi {
            return self.evaluate(who, text, st, now_ms);
        }
        let mut verdict = Verdict::default();
        for piece in super::statement::split_statements(text) {
            let one = self.evaluate(who, piece, &super::statement::analyze(piece), now_ms);
            verdict.logged.extend(one.logged);
            if one.action != Decision::Run {
                verdict.action = one.action;
                break;
            }
        }
        verdict
    }

    pub fn evaluate(&self, who: Subject, text: &str, st: &Statement, now_ms: u64) -> Verdict {
        let mut verdict = Verdict::default();
        let mut fingerprint: Option<String> = None;
        let mut current: Option<String> = None;
        for rule in &self.rules {
            let text = current.as_deref().unwrap_or(text);
            if self.needs_fingerprint && fingerprint.is_none() && !rule.fingerprints.is_empty() {
                fingerprint = Some(fingerprint_of(text));
            }
            if !rule.matches(who, text, st, fingerprint.as_deref()) {
                continue;
            }
            match &rule.action {
                Action::Deny(message) => {
                    verdict.action = Decision::Deny {
                        rule: rule.name.clone(),
                        message: message.clone(),
                    };
                    break;
                }
                Action::Allow => break,
                Action::Log => verdict.logged.push(rule.name.clone()),
                Action::RateLimit(bucket) => {
                    let allowed = bucket.lock().map(|mut b| b.take(now_ms)).unwrap_or(true);
                    if !allowed {
                        verdict.action = Decision::RateLimited {
                            rule: rule.name.clone(),
                        };
                        break;
                    }
                }
                Action::Rewrite(re, replacement) => {
                    let new = re.replace_all(text, replacement.as_str()).into_owned();
                    if new != text {
                        current = Some(new);
                    }
                }
            }
        }
        verdict.rewritten = current;
        verdict
    }
}

/// The normalized form of a statement rules and `/debug` pages use.
pub fn fingerprint_of(text: &str) -> String {
    normalize(text)
        .map(|(k, _)| k)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn compile_rule(index: usize, r: &RuleConfig) -> Result<Rule, RuleError> {
    let err = |field, message: String| RuleError {
        index,
        name: r.name.clone(),
        field,
        message,
    };
    if r.name.trim().is_empty() {
        return Err(err("name", "must not be empty".to_owned()));
    }
    for k in &r.matches.statements {
        if !KINDS.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(err(
                "match.statements",
                format!("unknown statement kind {k:?} (one of {})", KINDS.join(", ")),
            ));
        }
    }
    let regex = match &r.matches.regex {
        Some(p) => Some(
            regex::RegexBuilder::new(p)
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| err("match.regex", e.to_string()))?,
        ),
        None => None,
    };
    let action = match r.action {
        ActionName::Deny => Action::Deny(
            r.message
                .clone()
                .unwrap_or_else(|| "statement not allowed".to_owned()),
        ),
        ActionName::Allow => Action::Allow,
        ActionName::Log => Action::Log,
        ActionName::RateLimit => {
            let per_second = r
                .per_second
                .ok_or_else(|| err("per_second", "required for rate_limit".to_owned()))?;
            if !(per_second > 0.0 && per_second.is_finite()) {
                return Err(err("per_second", "must be a positive number".to_owned()));
            }
            let burst = f64::from(r.burst.unwrap_or(1).max(1));
            Action::RateLimit(Mutex::new(Bucket {
                per_ms: per_second / 1000.0,
                burst,
                tokens: burst,
                at_ms: 0,
            }))
        }
        ActionName::Rewrite => {
            let pattern = r
                .pattern
                .as_deref()
                .ok_or_else(|| err("pattern", "required for rewrite".to_owned()))?;
            let re = regex::RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| err("pattern", e.to_string()))?;
            let replacement = r
                .replacement
                .clone()
                .ok_or_else(|| err("replacement", "required for rewrite".to_owned()))?;
            Action::Rewrite(re, replacement)
        }
    };
    Ok(Rule {
        name: r.name.clone(),
        users: r.matches.users.clone(),
        clients: r.matches.clients.clone(),
        kinds: r
            .matches
            .statements
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .collect(),
        tables: r
            .matches
            .tables
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect(),
        fingerprints: r
            .matches
            .fingerprints
            .iter()
            .map(|f| fingerprint_of(f))
            .collect(),
        regex,
        no_where: r.matches.no_where,
        unbounded: false,
        exempt: Vec::new(),
        action,
    })
}

impl Rule {
    fn matches(&self, who: Subject, text: &str, st: &Statement, fingerprint: Option<&str>) -> bool {
        if self.exempt.iter().any(|p| glob(p, who.user)) {
            return false;
        }
        if !self.users.is_empty() && !self.users.iter().any(|p| glob(p, who.user)) {
            return false;
        }
        if !self.clients.is_empty() && !self.clients.iter().any(|p| glob(p, who.client)) {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k == st.kind.name()) {
            return false;
        }
        if self.no_where && st.has_where {
            return false;
        }
        if self.unbounded
            && (st.kind != Kind::Select
                || st.has_where
                || !st.has_from
                || st.limit != super::statement::Limit::None)
        {
            return false;
        }
        if !self.tables.is_empty() && !st.tables.iter().any(|t| self.tables.contains(t)) {
            return false;
        }
        if !self.fingerprints.is_empty()
            && !fingerprint
                .is_some_and(|f| self.fingerprints.iter().any(|p| p.eq_ignore_ascii_case(f)))
        {
            return false;
        }
        if let Some(re) = &self.regex {
            if !re.is_match(text) {
                return false;
            }
        }
        true
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}
