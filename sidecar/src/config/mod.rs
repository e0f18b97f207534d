//! Configuration of the app role: the YAML file's types with their defaults, loading,
//! environment and flag overrides, validation, and turning user entries into stored
//! credentials.
//!
//! Precedence is defaults < file < environment < flags; the last two are handled by
//! clap in [`AppOverrides`]. Every error names the dotted path of the field at fault.

mod db;
mod error;
mod overrides;
mod secrets;
mod sharding;
mod topology;
mod validate;
mod yaml_path;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shardcar_filter::protocol::auth::AuthPlugin;

pub use db::{
    ConsolidationConfig, DbConfig, HotRowConfig, LimitsConfig, LoadConfig, PoolConfig, RowLimitMode,
};
pub use error::ConfigError;
pub use overrides::AppOverrides;
pub use sharding::{
    ControlStreamConfig, FailoverBufferConfig, KeyspaceConfig, ReadTarget, ShardConfig,
    ShardingConfig, TopologySourceConfig, TransactionMode, TwopcConfig,
};
pub use topology::TopologyConfig;

/// The whole configuration of either role (`db` applies to the db role only,
/// `sharding` to the app role only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// Where applications connect.
    pub listen: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/ready` are served.
    pub admin_listen: SocketAddr,
    /// A file holding a bearer token every `POST /debug/...` action (tablet actions,
    /// query kills) must carry (`Authorization: Bearer <token>`); without it anyone who
    /// reaches `admin_listen` may act.
    pub admin_token_file: Option<PathBuf>,
    /// Client connections beyond this are refused with ER_CON_COUNT_ERROR (1040).
    pub max_connections: usize,
    /// Largest logical packet accepted from a client, in bytes; beyond it the client
    /// gets ER_NET_PACKET_TOO_LARGE.
    pub max_packet_size: usize,
    /// Time a client has to finish the connection phase.
    pub handshake_timeout_ms: u64,
    /// Time given to open connections to finish after a shutdown signal.
    pub drain_timeout_ms: u64,
    /// Idle client connections are closed after this long; 0 disables the limit.
    pub idle_timeout_ms: u64,
    /// Advertise CLIENT_LOCAL_FILES (LOAD DATA LOCAL INFILE) to applications.
    pub local_infile: bool,
    pub auth: AuthConfig,
    pub users: Vec<UserConfig>,
    /// TLS toward applications; `None` means plain connections only.
    pub tls: Option<ServerTlsConfig>,
    pub upstream: UpstreamConfig,
    /// Routing across keyspaces and shards; `upstream` supplies the credentials and TLS
    /// settings used toward every shard.
    pub sharding: Option<ShardingConfig>,
    /// Connection protection for the db role: pool, timeouts, limits, query rules.
    pub db: DbConfig,
    /// db role: register the tablet in the topology (etcd) and report its health.
    pub topology: Option<TopologyConfig>,
}

/// Default `listen`: where applications expect a local MySQL.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3306);
/// Default `admin_listen`.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            admin_listen: DEFAULT_ADMIN_LISTEN,
            admin_token_file: None,
            max_connections: 10_000,
            max_packet_size: 64 * 1024 * 1024,
            handshake_timeout_ms: 10_000,
            drain_timeout_ms: 30_000,
            idle_timeout_ms: 0,
            local_infile: false,
            auth: AuthConfig::default(),
            users: Vec::new(),
            tls: None,
            upstream: UpstreamConfig::default(),
            sharding: None,
            db: DbConfig::default(),
            topology: None,
        }
    }
}

/// How the sidecar authenticates applications.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The plugin named in the greeting.
    pub default_plugin: AuthPluginName,
    /// RSA key (PEM, PKCS#1 or PKCS#8) for caching_sha2 full authentication without
    /// TLS; generated at first use when absent.
    pub rsa_private_key_file: Option<PathBuf>,
}

/// The authentication plugins an operator can choose as the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPluginName {
    #[default]
    MysqlNativePassword,
    CachingSha2Password,
}

impl AuthPluginName {
    /// The protocol-level plugin.
    pub fn plugin(&self) -> AuthPlugin {
        match self {
            AuthPluginName::MysqlNativePassword => AuthPlugin::NativePassword,
            AuthPluginName::CachingSha2Password => AuthPlugin::CachingSha2Password,
        }
    }
}

/// One application user. Give stored hashes, or a password source that is hashed at
/// load time and then dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// `*` and 40 hex digits, as in `mysql.user.authentication_string`.
    pub native_hash: Option<String>,
    /// 64 hex digits: `SHA256(SHA256(password))`.
    pub sha2_hash: Option<String>,
    /// A file holding the plain password (a mounted Secret); one trailing newline is
    /// ignored.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the plain password.
    pub password_env: Option<String>,
}

/// TLS toward applications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#1, PKCS#8 or SEC1).
    pub key_file: PathBuf,
    /// Refuse clients that do not upgrade with ER_SECURE_TRANSPORT_REQUIRED.
    #[serde(default)]
    pub required: bool,
    /// PEM trust roots for client certificates (mTLS). A verified certificate's identity
    /// (URI SAN such as a SPIFFE id, else DNS SAN, else subject CN) is the `cert:`
    /// identity of the db role's access policy.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by `client_ca_file`.
    #[serde(default)]
    pub require_client_certificate: bool,
}

/// The mysqld (or db sidecar) this sidecar forwards to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `host:port` or `unix:/path/to/mysqld.sock`.
    pub address: String,
    pub user: String,
    /// Inline password; allowed but logged as a warning: prefer a file or variable.
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Default schema sent in the handshake.
    pub database: Option<String>,
    pub connect_timeout_ms: u64,
    /// TLS toward mysqld; `None` means plain connections.
    pub tls: Option<UpstreamTlsConfig>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:3307".to_owned(),
            user: "shardcar".to_owned(),
            password: None,
            password_file: None,
            password_env: None,
            database: None,
            connect_timeout_ms: 5_000,
            tls: None,
        }
    }
}

/// TLS toward mysqld.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    pub enabled: bool,
    /// PEM trust roots; required when `verify` is true.
    pub ca_file: Option<PathBuf>,
    /// Verify the server's certificate and name. `false` accepts any certificate and
    /// so gives no protection against an active attacker.
    pub verify: bool,
    /// Name to verify; defaults to the host of `upstream.address`.
    pub server_name: Option<String>,
}

impl Default for UpstreamTlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            ca_file: None,
            verify: true,
            server_name: None,
        }
    }
}

/// `host:port` as a TCP endpoint's address (`[host]:port` for an IPv6 host not
/// bracketed yet).
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Where the upstream listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `host:port`, as written (host may be a name, an IPv4 or a bracketed IPv6).
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Endpoint {
    /// The host part of a TCP endpoint, without IPv6 brackets.
    pub fn host(&self) -> Option<&str> {
        match self {
            Endpoint::Tcp(addr) => {
                let (host, _) = addr.rsplit_once(':')?;
                Some(
                    host.strip_prefix('[')
                        .and_then(|h| h.strip_suffix(']'))
                        .unwrap_or(host),
                )
            }
            Endpoint::Unix(_) => None,
        }
    }

    /// The port of a TCP endpoint.
    pub fn port(&self) -> Option<u16> {
        match self {
            Endpoint::Tcp(addr) => addr.rsplit_once(':')?.1.parse().ok(),
            Endpoint::Unix(_) => None,
        }
    }
}

impl AppConfig {
    /// The token of `admin_token_file`, when set.
    pub fn admin_token(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let token = secrets::read_password_file(path, "admin_token_file")?;
        if token.is_empty() {
            return Err(ConfigError::invalid(
                "admin_token_file",
                format!("{} is empty", path.display()),
            ));
        }
        Ok(Some(token))
    }

    /// Where the `upstream` section points. With `sharding.topology` the address may be
    /// left empty (every shard's address comes from the topology): the endpoint is then
    /// an empty TCP address that is never dialled.
    pub fn upstream_endpoint(&self) -> Result<Endpoint, ConfigError> {
        let follows_topology = self.sharding.as_ref().is_some_and(|s| s.topology.is_some());
        if follows_topology && self.upstream.address.trim().is_empty() {
            return Ok(Endpoint::Tcp(String::new()));
        }
        self.upstream.endpoint()
    }

    /// Parses a YAML document; missing fields take their defaults, unknown ones are
    /// errors. An empty document is the defaults.
    pub fn from_yaml_str(s: &str) -> Result<Self, ConfigError> {
        let doc: serde_yaml::Value = serde_yaml::from_str(s).map_err(|e| ConfigError::Yaml {
            field: "(document)".to_owned(),
            message: e.to_string(),
        })?;
        if doc.is_null() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(s).map_err(|e| {
            let field = yaml_path::first_bad_field(&yaml_path::APP, &doc)
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "(document)".to_owned());
            let message = e.to_string();
            // serde_yaml prefixes the path of the enclosing value (`users[0]: ...`);
            // the field already says it.
            let message = match message.split_once(": ") {
                Some((prefix, rest)) if field.starts_with(prefix) => rest.to_owned(),
                _ => message,
            };
            ConfigError::Yaml { field, message }
        })
    }

    /// Reads and parses the file at `path`, or returns the defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            field: "config".to_owned(),
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml_str(&text)
    }

    /// Applies environment and flag values (already merged by clap) over the file's.
    pub fn apply_overrides(&mut self, o: &AppOverrides) {
        o.apply(self);
    }

    /// Checks everything that can be checked before serving: value ranges, user
    /// entries and their hashes, files that must exist, the upstream address.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// Every user's name and stored credentials, reading password files and variables.
    pub fn resolve_users(&self) -> Result<Vec<(String, Credentials)>, ConfigError> {
        self.users
            .iter()
            .enumerate()
            .map(|(i, u)| Ok((u.name.clone(), u.resolve(&format!("users[{i}]"))?)))
            .collect()
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// `None` when idle connections are kept forever.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }
}

impl UpstreamConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Parses `address`.
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        parse_endpoint(&self.address).map_err(|m| ConfigError::invalid("upstream.address", m))
    }

    /// The password from whichever of `password`, `password_file`, `password_env` is
    /// set (at most one may be); empty when none is.
    pub fn password_bytes(&self) -> Result<Vec<u8>, ConfigError> {
        secrets::upstream_password(self)
    }
}

pub use shardcar_filter::protocol::auth::Credentials;

pub fn parse_endpoint(address: &str) -> Result<Endpoint, String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(path) = address.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("unix: needs a socket path".to_owned());
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!(
            "expected host:port or unix:/path, got {address:?} (no port)"
        ));
    };
    if host.is_empty() {
        return Err(format!("expected host:port, got {address:?} (no host)"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "an IPv6 address must be bracketed, as in [::1]:3306; got {address:?}"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Endpoint::Tcp(address.to_owned())),
        _ => Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests;
