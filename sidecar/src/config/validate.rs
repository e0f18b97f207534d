//! Whole-configuration checks run before serving (and by `shardcar check-config`); the
//! first failure is returned, naming its field.

use std::collections::HashSet;
use std::path::Path;

use super::{AppConfig, ConfigError, Endpoint};

/// Smallest accepted `max_packet_size`.
pub const MIN_PACKET_SIZE: usize = 1024;
/// Largest accepted `max_packet_size` (MySQL's own ceiling).
pub const MAX_PACKET_SIZE: usize = 1 << 30;
/// Upper bound of the handshake, drain and connect timeouts: one hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Upper bound of the idle timeout: 30 days.
const MAX_IDLE_TIMEOUT_MS: u64 = 30 * 24 * 3_600_000;

pub(super) fn validate(c: &AppConfig) -> Result<(), ConfigError> {
    if c.listen == c.admin_listen && c.listen.port() != 0 {
        return Err(ConfigError::invalid(
            "admin_listen",
            format!("must differ from listen ({})", c.listen),
        ));
    }
    if c.max_connections == 0 {
        return Err(ConfigError::invalid(
            "max_connections",
            "must be at least 1",
        ));
    }
    if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&c.max_packet_size) {
        return Err(ConfigError::invalid(
            "max_packet_size",
            format!(
                "must be between {MIN_PACKET_SIZE} (1 KiB) and {MAX_PACKET_SIZE} (1 GiB) bytes, got {}",
                c.max_packet_size
            ),
        ));
    }
    timeout(
        "handshake_timeout_ms",
        c.handshake_timeout_ms,
        1,
        MAX_TIMEOUT_MS,
    )?;
    timeout("drain_timeout_ms", c.drain_timeout_ms, 0, MAX_TIMEOUT_MS)?;
    timeout("idle_timeout_ms", c.idle_timeout_ms, 0, MAX_IDLE_TIMEOUT_MS)?;
    c.db.validate()?;
    c.admin_token()?;
    if let Some(t) = &c.topology {
        t.validate()?;
    }

    if let Some(key) = &c.auth.rsa_private_key_file {
        file_exists("auth.rsa_private_key_file", key)?;
    }

    if c.users.is_empty() {
        return Err(ConfigError::invalid(
            "users",
            "at least one user is required for the app role",
        ));
    }
    let mut names = HashSet::new();
    for (i, u) in c.users.iter().enumerate() {
        let field = format!("users[{i}]");
        if u.name.is_empty() {
            return Err(ConfigError::invalid(
                format!("{field}.name"),
                "must not be empty",
            ));
        }
        if !names.insert(u.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{field}.name"),
                format!("duplicate user name {:?}", u.name),
            ));
        }
        u.resolve(&field)?;
    }

    if let Some(tls) = &c.tls {
        file_exists("tls.cert_file", &tls.cert_file)?;
        file_exists("tls.key_file", &tls.key_file)?;
        match &tls.client_ca_file {
            Some(ca) => file_exists("tls.client_ca_file", ca)?,
            None if tls.require_client_certificate => {
                return Err(ConfigError::invalid(
                    "tls.require_client_certificate",
                    "needs tls.client_ca_file",
                ))
            }
            None => {}
        }
    }

    let up = &c.upstream;
    let endpoint = c.upstream_endpoint()?;
    if up.user.is_empty() {
        return Err(ConfigError::invalid("upstream.user", "must not be empty"));
    }
    if up.password.is_some() {
        // validate() may run more than once per process (main, then the role).
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| tracing::warn!(
            "upstream.password is given inline; prefer upstream.password_file or upstream.password_env"
        ));
    }
    up.password_bytes()?;
    if let Some(sharding) = &c.sharding {
        sharding.validate()?;
    }
    timeout(
        "upstream.connect_timeout_ms",
        up.connect_timeout_ms,
        1,
        MAX_TIMEOUT_MS,
    )?;
    if let Some(tls) = up.tls.as_ref().filter(|t| t.enabled) {
        if let Some(ca) = &tls.ca_file {
            file_exists("upstream.tls.ca_file", ca)?;
        } else if tls.verify {
            return Err(ConfigError::invalid(
                "upstream.tls.ca_file",
                "required when upstream.tls.verify is true",
            ));
        }
        if matches!(endpoint, Endpoint::Unix(_)) {
            return Err(ConfigError::invalid(
                "upstream.tls.enabled",
                "TLS over a Unix socket is not supported",
            ));
        }
        let name = tls
            .server_name
            .as_deref()
            .or_else(|| endpoint.host())
            .unwrap_or_default();
        if rustls::pki_types::ServerName::try_from(name).is_err() {
            let field = if tls.server_name.is_some() {
                "upstream.tls.server_name"
            } else {
                "upstream.address"
            };
            return Err(ConfigError::invalid(
                field,
                format!("{name:?} is not a valid DNS name or IP address for TLS"),
            ));
        }
    }
    Ok(())
}

fn timeout(field: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            field,
            format!("must be between {min} and {max} milliseconds, got {value}"),
        ))
    }
}

fn file_exists(field: &str, path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(ConfigError::invalid(
            field,
            format!("{} is not a regular file", path.display()),
        )),
        Err(source) => Err(ConfigError::Read {
            field: field.to_owned(),
            path: path.to_owned(),
            source,
        }),
    }
}
