//! The one error type of configuration loading and validation; every variant names the
//! dotted path of the field at fault (`users[1].sha2_hash`, `upstream.address`).

use std::path::PathBuf;

use thiserror::Error;

/// A configuration problem, always naming the field so an operator knows what to fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A value is present but wrong, or a required value is missing.
    #[error("invalid configuration: {field}: {message}")]
    Invalid { field: String, message: String },
    /// A file named by the configuration (or the configuration file itself) cannot be read.
    #[error("invalid configuration: {field}: cannot read {}: {source}", path.display())]
    Read {
        field: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML document does not parse or does not match the schema; the message carries
    /// serde_yaml's line and column.
    #[error("invalid configuration: {field}: {message}")]
    Yaml { field: String, message: String },
}

impl ConfigError {
    /// An `Invalid` error for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The dotted path of the field at fault.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Invalid { field, .. }
            | ConfigError::Read { field, .. }
            | ConfigError::Yaml { field, .. } => field,
        }
    }
}
