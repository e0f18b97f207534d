//! Command-line flags and environment variables that override the configuration file;
//! clap reads the variable when the flag is absent, so flags win over the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::AppConfig;

/// Overrides for the most commonly injected settings (ports, upstream, limits).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct AppOverrides {
    /// Address applications connect to (`listen`).
    #[arg(long, env = "SHARDCAR_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of /metrics, /healthz, /ready (`admin_listen`).
    #[arg(long, env = "SHARDCAR_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Upstream `host:port` or `unix:/path` (`upstream.address`).
    #[arg(
        long = "upstream",
        env = "SHARDCAR_UPSTREAM_ADDRESS",
        value_name = "ADDR"
    )]
    pub upstream_address: Option<String>,
    /// Upstream user (`upstream.user`).
    #[arg(long, env = "SHARDCAR_UPSTREAM_USER", value_name = "USER")]
    pub upstream_user: Option<String>,
    /// File holding the upstream password (`upstream.password_file`); replaces any
    /// other upstream password source.
    #[arg(long, env = "SHARDCAR_UPSTREAM_PASSWORD_FILE", value_name = "FILE")]
    pub upstream_password_file: Option<PathBuf>,
    /// Client connection limit (`max_connections`).
    #[arg(long, env = "SHARDCAR_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Advertise LOAD DATA LOCAL INFILE support (`local_infile`); `--local-infile`
    /// alone means true.
    #[arg(
        long,
        env = "SHARDCAR_LOCAL_INFILE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub local_infile: Option<bool>,
    /// db role: the tablet's uid in its cell (`topology.uid`).
    #[arg(long, env = "SHARDCAR_TABLET_UID", value_name = "N")]
    pub tablet_uid: Option<u32>,
    /// db role: the address others reach this tablet at (`topology.hostname`); also
    /// the host of `topology.mysqld_address` when that is unset (the pod IP on
    /// Kubernetes, where mysqld listens beside the sidecar).
    #[arg(long, env = "SHARDCAR_TABLET_HOSTNAME", value_name = "HOST")]
    pub tablet_hostname: Option<String>,
    /// db role: what the tablet starts as (`topology.tablet_type`: primary, replica,
    /// rdonly, spare).
    #[arg(long, env = "SHARDCAR_TABLET_TYPE", value_name = "TYPE", value_parser = parse_tablet_type)]
    pub tablet_type: Option<shardcar_topo::TabletType>,
}

fn parse_tablet_type(s: &str) -> Result<shardcar_topo::TabletType, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?}: expected primary, replica, rdonly or spare"))
}

impl AppOverrides {
    pub(super) fn apply(&self, c: &mut AppConfig) {
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.admin_listen {
            c.admin_listen = v;
        }
        if let Some(v) = &self.upstream_address {
            c.upstream.address = v.clone();
        }
        if let Some(v) = &self.upstream_user {
            c.upstream.user = v.clone();
        }
        if let Some(v) = &self.upstream_password_file {
            c.upstream.password = None;
            c.upstream.password_env = None;
            c.upstream.password_file = Some(v.clone());
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.local_infile {
            c.local_infile = v;
        }
        if let Some(t) = c.topology.as_mut() {
            if let Some(uid) = self.tablet_uid {
                t.uid = uid;
            }
            if let Some(kind) = self.tablet_type {
                t.tablet_type = kind;
            }
            if let Some(host) = &self.tablet_hostname {
                t.hostname = Some(host.clone());
                if t.mysqld_address.is_none() {
                    let port = super::Endpoint::Tcp(c.upstream.address.clone())
                        .port()
                        .unwrap_or(3306);
                    t.mysqld_address = Some(super::join_host_port(host, port));
                }
            }
        }
    }
}
