//! The filter's configuration: the spec of a QueryPolicy (query rules, built-in rules,
//! the row limit) and of an AccessPolicy (grants to service accounts), exactly as the
//! CRDs take them, plus the db role's raw access rules; and its compiled form.
//!
//! ```json
//! {"queryPolicy": {"limits": {"max_rows": 10000}, "rules": [...]},
//!  "accessPolicy": {"grants": [{"serviceAccounts": ["shop/web"], "keyspaces": ["shop"],
//!                               "access": ["read"]}]},
//!  "maxStatementBytes": 4194304}
//! ```

use crate::guard::access::{AccessCache, AccessPolicy, AccessRule};
use crate::guard::rules::{BuiltinRules, RuleConfig, RuleError, RuleSet};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The plugin configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FilterConfig {
    pub query_policy: QueryPolicySpec,
    pub access_policy: AccessPolicySpec,
    /// Access rules in the db role's form (`db.access`), after the grants.
    pub access: Vec<AccessRule>,
    /// A statement (COM_QUERY, COM_STMT_PREPARE) is held until it is complete so that it
    /// can be inspected; a longer one is refused. At most 15 MiB: inspected statements
    /// travel as one packet.
    pub max_statement_bytes: usize,
    /// Distinct tables named in per-table metrics; statements on further tables are
    /// counted under `other`.
    pub max_metric_tables: usize,
}

/// `spec` of a QueryPolicy (its `selector` is for the control service and ignored here).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct QueryPolicySpec {
    pub selector: Option<serde_json::Value>,
    pub limits: Limits,
    /// As the db role's: UPDATE and DELETE without WHERE are denied unless turned off.
    pub builtin_rules: BuiltinRules,
    pub rules: Vec<RuleConfig>,
}

/// The part of `db.limits` that applies to a filter in the stream. Timeouts need a
/// connection of the filter's own to KILL with, which a network filter does not have:
/// they are accepted (so one QueryPolicy serves both) and reported as not applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Rows a SELECT may return; 0 disables.
    pub max_rows: u64,
    pub max_rows_mode: RowLimitMode,
    pub statement_timeout_ms: u64,
    pub max_statement_timeout_ms: u64,
    pub transaction_timeout_ms: u64,
    pub idle_in_transaction_timeout_ms: u64,
    pub max_result_bytes: u64,
}

/// What a client gets when a result goes over its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowLimitMode {
    /// ERR 1104 after the rows within the limit.
    #[default]
    Error,
    /// The rows within the limit and a normal end of result; the cut is logged and
    /// counted.
    Truncate,
}

/// `spec` of an AccessPolicy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessPolicySpec {
    pub grants: Vec<Grant>,
}

/// One grant of an AccessPolicy: these keyspaces (databases) and tables to these
/// service accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Grant {
    /// `namespace/name`; the workload is recognised by its mesh certificate
    /// (`spiffe://<trust domain>/ns/<namespace>/sa/<name>`). Empty: every client.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    pub keyspaces: Vec<String>,
    #[serde(default = "all_tables")]
    pub tables: Vec<String>,
    pub access: Vec<GrantAccess>,
}

fn all_tables() -> Vec<String> {
    vec!["*".to_string()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantAccess {
    Read,
    Write,
}

impl Grant {
    /// The access rule this grant stands for.
    pub fn to_rule(&self, index: usize) -> AccessRule {
        let identities = if self.service_accounts.is_empty() {
            vec!["user:*".to_string(), "cert:*".to_string()]
        } else {
            self.service_accounts
                .iter()
                .map(|sa| match sa.split_once('/') {
                    Some((ns, name)) => format!("cert:spiffe://*/ns/{ns}/sa/{name}"),
                    None => format!("cert:spiffe://*/sa/{sa}"),
                })
                .collect()
        };
        let tables: Vec<String> = self
            .keyspaces
            .iter()
            .flat_map(|ks| self.tables.iter().map(move |t| format!("{ks}.{t}")))
            .collect();
        let has = |a| self.access.contains(&a);
        AccessRule {
            name: format!("grants[{index}]"),
            identities,
            read: if has(GrantAccess::Read) {
                tables.clone()
            } else {
                Vec::new()
            },
            write: if has(GrantAccess::Write) {
                tables
            } else {
                Vec::new()
            },
            admin: false,
        }
    }
}

/// Default and ceiling of [`FilterConfig::max_statement_bytes`].
pub const DEFAULT_MAX_STATEMENT_BYTES: usize = 4 << 20;
pub const MAX_STATEMENT_BYTES: usize = 15 << 20;
const DEFAULT_METRIC_TABLES: usize = 64;

impl Default for StreamPolicy {
    fn default() -> Self {
        StreamPolicy {
            rules: RuleSet::default(),
            access: AccessPolicy::default(),
            access_cache: AccessCache::new(ACCESS_CACHE_SHAPES),
            max_rows: None,
            row_limit_mode: RowLimitMode::default(),
            max_statement_bytes: DEFAULT_MAX_STATEMENT_BYTES,
            max_metric_tables: DEFAULT_METRIC_TABLES,
            not_applied: Vec::new(),
        }
    }
}

/// A configuration that cannot be used; names the field.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("plugin configuration is not valid JSON for the filter: {0}")]
    Json(#[from] serde_json::Error),
    #[error("queryPolicy.{0}")]
    Rules(#[from] RuleError),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

/// Statement shapes whose tables the access policy remembers.
const ACCESS_CACHE_SHAPES: usize = 4_096;

/// The compiled configuration every connection of the filter shares.
#[derive(Debug)]
pub struct StreamPolicy {
    pub rules: RuleSet,
    pub access: AccessPolicy,
    /// The tables of each statement shape seen, for the access policy.
    pub access_cache: AccessCache,
    pub max_rows: Option<u64>,
    pub row_limit_mode: RowLimitMode,
    pub max_statement_bytes: usize,
    pub max_metric_tables: usize,
    /// Configured settings a network filter cannot apply (logged at configuration).
    pub not_applied: Vec<&'static str>,
}

impl StreamPolicy {
    /// Parses and compiles a plugin configuration; empty means the defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let text = std::str::from_utf8(bytes).unwrap_or("").trim();
        let config: FilterConfig = if text.is_empty() {
            FilterConfig::default()
        } else {
            serde_json::from_slice(bytes)?
        };
        Self::compile(&config)
    }

    pub fn compile(config: &FilterConfig) -> Result<Self, ConfigError> {
        let q = &config.query_policy;
        let rules = RuleSet::compile(&q.builtin_rules, &q.rules)?;
        let mut access: Vec<AccessRule> = Vec::new();
        for (i, g) in config.access_policy.grants.iter().enumerate() {
            if g.keyspaces.is_empty() || g.access.is_empty() {
                return Err(ConfigError::Field {
                    field: format!("accessPolicy.grants[{i}]"),
                    message: "a grant needs keyspaces and access".into(),
                });
            }
            access.push(g.to_rule(i));
        }
        for (i, rule) in config.access.iter().enumerate() {
            if rule.identities.is_empty() {
                return Err(ConfigError::Field {
                    field: format!("access[{i}].identities"),
                    message: "a rule needs at least one identity".into(),
                });
            }
            if let Some(bad) = rule
                .identities
                .iter()
                .find(|id| !id.starts_with("user:") && !id.starts_with("cert:"))
            {
                return Err(ConfigError::Field {
                    field: format!("access[{i}].identities"),
                    message: format!("'{bad}' is neither user:<name> nor cert:<identity>"),
                });
            }
            access.push(rule.clone());
        }
        if !access.is_empty() && !cfg!(feature = "access-policy") {
            return Err(ConfigError::Field {
                field: "accessPolicy".into(),
                message: "this build of the filter has no access policy (use shardcar_filter.wasm, not the lean module)".into(),
            });
        }
        let max_statement_bytes = match config.max_statement_bytes {
            0 => DEFAULT_MAX_STATEMENT_BYTES,
            n if n > MAX_STATEMENT_BYTES => {
                return Err(ConfigError::Field {
                    field: "maxStatementBytes".into(),
                    message: format!("at most {MAX_STATEMENT_BYTES}"),
                })
            }
            n => n,
        };
        let l = &q.limits;
        let not_applied = [
            ("statement_timeout_ms", l.statement_timeout_ms),
            ("max_statement_timeout_ms", l.max_statement_timeout_ms),
            ("transaction_timeout_ms", l.transaction_timeout_ms),
            (
                "idle_in_transaction_timeout_ms",
                l.idle_in_transaction_timeout_ms,
            ),
            ("max_result_bytes", l.max_result_bytes),
        ]
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(name, _)| name)
        .collect();
        Ok(StreamPolicy {
            rules,
            access: AccessPolicy::new(access),
            access_cache: AccessCache::new(ACCESS_CACHE_SHAPES),
            max_rows: (l.max_rows > 0).then_some(l.max_rows),
            row_limit_mode: l.max_rows_mode,
            max_statement_bytes,
            max_metric_tables: match config.max_metric_tables {
                0 => DEFAULT_METRIC_TABLES,
                n => n,
            },
            not_applied,
        })
    }
}
