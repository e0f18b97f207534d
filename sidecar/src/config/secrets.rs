//! Reading passwords from files and environment variables, and turning a user entry
//! into the hashes the sidecar stores. Plain passwords live only as long as hashing them.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use shardcar_filter::protocol::auth::{self, Credentials};

use super::{ConfigError, UpstreamConfig, UserConfig};

/// Reads a password file, dropping trailing line ends (`echo pw > file` and Kubernetes
/// Secrets made from such files end in a newline that is not part of the password).
pub(super) fn read_password_file(path: &Path, field: &str) -> Result<Vec<u8>, ConfigError> {
    let mut bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        field: field.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    Ok(bytes)
}

/// Reads a password from the environment variable `name`.
pub(super) fn read_password_env(name: &str, field: &str) -> Result<Vec<u8>, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::invalid(
            field,
            "variable name must not be empty",
        ));
    }
    std::env::var_os(name)
        .map(|v| v.as_bytes().to_vec())
        .ok_or_else(|| {
            ConfigError::invalid(field, format!("environment variable {name} is not set"))
        })
}

impl UserConfig {
    /// The stored credentials of this user; `field` is its path (`users[1]`), used to
    /// name the field in errors.
    pub fn resolve(&self, field: &str) -> Result<Credentials, ConfigError> {
        let has_hash = self.native_hash.is_some() || self.sha2_hash.is_some();
        let password = match (&self.password_file, &self.password_env) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    format!("{field}.password_env"),
                    "give password_file or password_env, not both",
                ))
            }
            (Some(path), None) => {
                Some(read_password_file(path, &format!("{field}.password_file"))?)
            }
            (None, Some(var)) => Some(read_password_env(var, &format!("{field}.password_env"))?),
            (None, None) => None,
        };
        if let Some(password) = password {
            if has_hash {
                let which = if self.password_file.is_some() {
                    "password_file"
                } else {
                    "password_env"
                };
                return Err(ConfigError::invalid(
                    format!("{field}.{which}"),
                    "give stored hashes or a password source, not both",
                ));
            }
            return Ok(Credentials::from_password(&password));
        }
        if !has_hash {
            return Err(ConfigError::invalid(
                field,
                "no credential: set native_hash, sha2_hash, password_file or password_env",
            ));
        }
        let native = self
            .native_hash
            .as_deref()
            .map(|h| {
                auth::parse_native_hash(h.trim()).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("{field}.native_hash"),
                        "expected '*' and 40 hex digits",
                    )
                })
            })
            .transpose()?;
        let sha2 = self
            .sha2_hash
            .as_deref()
            .map(|h| {
                auth::parse_sha2_hash(h.trim()).ok_or_else(|| {
                    ConfigError::invalid(format!("{field}.sha2_hash"), "expected 64 hex digits")
                })
            })
            .transpose()?;
        Ok(Credentials { native, sha2 })
    }
}

pub(super) fn upstream_password(u: &UpstreamConfig) -> Result<Vec<u8>, ConfigError> {
    let sources = [
        u.password.is_some(),
        u.password_file.is_some(),
        u.password_env.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(ConfigError::invalid(
            "upstream.password",
            "give at most one of password, password_file, password_env",
        ));
    }
    if let Some(p) = &u.password {
        return Ok(p.as_bytes().to_vec());
    }
    if let Some(path) = &u.password_file {
        return read_password_file(path, "upstream.password_file");
    }
    if let Some(var) = &u.password_env {
        return read_password_env(var, "upstream.password_env");
    }
    Ok(Vec::new())
}
