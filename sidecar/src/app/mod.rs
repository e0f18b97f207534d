//! The app role: a MySQL endpoint on `localhost:3306` for the application, forwarding to
//! mysqld. This release has one upstream; routing across shards arrives with the
//! planner.
//!
//! [`AppServer::bind`] opens the listeners, [`AppServer::serve`] accepts connections
//! until shutdown, then drains: it stops accepting, lets running statements finish up
//! to the drain timeout, and closes idle connections.

mod auth;
mod client;
mod control;
pub mod endpoints;
mod handshake;
mod lookup;
mod pool;
mod pooled;
mod prepared;
mod probe;
mod protect;
mod rebuild;
mod relay;
mod reload;
pub mod router;
mod running;
mod session;
mod sharded;
mod source;
mod tablet;
mod twopc;
pub mod upstream;

use crate::admin::{self, Health};
use crate::config::AppConfig;
use crate::metrics::Metrics;
use anyhow::Context as _;
use shardcar_filter::protocol::client::Session as UpstreamSession;
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::server::error_before_greeting;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};
use upstream::{ConnectError, LoginParams, Upstream, UpstreamSettings};

pub use pooled::{Guard, Policy};
pub(crate) use probe::sends_greeting;

/// What the sidecar knows about mysqld before any application connects: the greeting it
/// mirrors to applications.
#[derive(Debug, Clone)]
pub struct UpstreamProfile {
    pub server_version: String,
    pub capabilities: u32,
    pub collation: u8,
}

/// State shared by every connection of the app role.
pub struct Shared {
    config: AppConfig,
    auth: auth::Authenticator,
    tls: Option<tokio_rustls::TlsAcceptor>,
    upstream: Arc<UpstreamSettings>,
    /// Present when the sidecar routes across keyspaces and shards.
    router: Option<Arc<router::Router>>,
    /// Present in the db role: the backend pool and the protection policy.
    guard: Option<Arc<pooled::Guard>>,
    profile: RwLock<Option<UpstreamProfile>>,
    metrics: Arc<Metrics>,
    next_id: AtomicU32,
    /// A topology store handed over in-process (`shardcar local --topo embedded`), used
    /// in place of the configuration's etcd endpoints.
    topology: Option<shardcar_topo::Topology>,
    /// The db role's tablet, with a `topology` section.
    tablet: Option<Arc<tablet::Tablet>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("upstream", &self.upstream)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn next_connection_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The upstream's greeting profile, logging in once to learn it when unknown.
    async fn profile(&self) -> Result<UpstreamProfile, ConnectError> {
        if let Some(p) = self.profile.read().ok().and_then(|p| p.clone()) {
            return Ok(p);
        }
        // With a topology, the first primary may not be known yet: wait for one.
        let settings = match &self.router {
            Some(r) => r.directory.wait_for(|| r.any_shard()).await,
            None => None,
        }
        .unwrap_or_else(|| self.upstream.clone());
        let up = Upstream::connect(&settings, LoginParams::default()).await?;
        self.remember_profile(&up.session);
        up.quit().await;
        self.profile
            .read()
            .ok()
            .and_then(|p| p.clone())
            .ok_or_else(|| ConnectError::Closed {
                address: self.upstream.display.clone(),
            })
    }

    fn remember_profile(&self, session: &UpstreamSession) {
        let profile = UpstreamProfile {
            server_version: session.server_version.clone(),
            capabilities: session.server_capabilities,
            collation: session.collation,
        };
        if let Ok(mut p) = self.profile.write() {
            *p = Some(profile);
        }
    }
}

/// Which role a server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Beside the application: one upstream connection per client, or shard routing.
    App,
    /// Beside mysqld: client sessions multiplexed over a protected pool.
    Db,
}

/// The app role, bound and ready to serve.
#[derive(Debug)]
pub struct AppServer {
    listener: TcpListener,
    admin: TcpListener,
    /// The bearer token admin actions need (`admin_token_file`).
    admin_token: Option<Arc<[u8]>>,
    shared: Arc<Shared>,
    health: Arc<Health>,
}

impl AppServer {
    /// Validates the configuration, loads secrets and binds both listeners (app role).
    pub async fn bind(config: AppConfig) -> anyhow::Result<Self> {
        Self::bind_role(config, Role::App).await
    }

    /// As [`AppServer::bind`], for either role.
    pub async fn bind_role(config: AppConfig, role: Role) -> anyhow::Result<Self> {
        Self::bind_with(config, role, None).await
    }

    /// As [`AppServer::bind_role`], with an in-process topology store instead of the
    /// configuration's etcd endpoints.
    pub async fn bind_with(
        config: AppConfig,
        role: Role,
        topology: Option<shardcar_topo::Topology>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        if let (Some(t), None) = (&config.topology, &topology) {
            if t.etcd_endpoints.is_empty() {
                anyhow::bail!("topology.etcd_endpoints: name at least one etcd client URL");
            }
        }
        if role == Role::App && config.topology.is_some() {
            anyhow::bail!(
                "topology: only the db role registers a tablet; the app role reads the topology through its sharding section"
            );
        }
        if role == Role::Db && config.sharding.is_some() {
            anyhow::bail!(
                "sharding: the db role serves one mysqld; shard routing belongs to the app role"
            );
        }
        let users = config.resolve_users()?;
        let authenticator = auth::Authenticator::new(users);
        if let Some(path) = &config.auth.rsa_private_key_file {
            authenticator.load_key(path)?;
        }
        let tls = match &config.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
                t,
            )?)),
            None => None,
        };
        let endpoint = config.upstream_endpoint()?;
        let upstream_tls = match config.upstream.tls.as_ref().filter(|t| t.enabled) {
            Some(t) => {
                let host = endpoint.host().unwrap_or("localhost").to_string();
                Some((
                    tokio_rustls::TlsConnector::from(crate::tls::client_config(t)?),
                    crate::tls::server_name(t, &host)?,
                ))
            }
            None => None,
        };
        if config.upstream.password.is_some() {
            warn!("upstream.password is set inline in the configuration; prefer password_file or password_env");
        }
        let upstream = Arc::new(UpstreamSettings {
            endpoint,
            display: config.upstream.address.clone(),
            user: config.upstream.user.clone(),
            password: config.upstream.password_bytes()?,
            database: config.upstream.database.clone(),
            connect_timeout: config.upstream.connect_timeout(),
            tls: upstream_tls,
            max_packet_size: config.max_packet_size,
        });
        let metrics = Metrics::new();
        let (upstream, router) = match &config.sharding {
            None => (upstream, None),
            Some(sharding) => {
                let router = match sharding.control() {
                    Some(_) => {
                        let follower = control::Follower::start(sharding, metrics.clone()).await?;
                        router::Router::following(sharding, &upstream, follower)?
                    }
                    None => router::Router::new(sharding, &upstream, topology.clone())?,
                };
                let first = router.any_shard().unwrap_or(upstream);
                (first, Some(Arc::new(router)))
            }
        };
        let guard = match role {
            Role::App => None,
            Role::Db => {
                let policy = pooled::Policy::from_config(&config.db)?;
                let pool =
                    pool::Pool::new(upstream.clone(), config.db.pool.clone(), metrics.clone());
                Some(pooled::Guard::new(pool, policy, &config.db))
            }
        };
        let tablet = match (&config.topology, role) {
            (Some(t), Role::Db) => Some(tablet::Tablet::new(t, &upstream, metrics.clone())?),
            _ => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (listen)", config.listen))?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin_listen)", config.admin_listen))?;
        let admin_token = config.admin_token()?.map(Arc::from);
        let shared = Arc::new(Shared {
            config,
            auth: authenticator,
            tls,
            upstream,
            router,
            guard,
            profile: RwLock::new(None),
            metrics,
            next_id: AtomicU32::new(1),
            topology,
            tablet,
        });
        Ok(Self {
            listener,
            admin,
            admin_token,
            shared,
            health: Health::new(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Accepts connections until `shutdown` turns true, then drains.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let AppServer {
            listener,
            admin,
            admin_token,
            shared,
            health,
        } = self;
        let addr = listener.local_addr()?;
        let admin_addr = admin.local_addr()?;
        // The admin server outlives the drain, so probes see `/ready` turn 503.
        let (admin_stop, admin_stopped) = watch::channel(false);
        let tablet = shared.tablet.clone();
        let pages = shared.guard.clone().map(|guard| -> admin::DebugPages {
            Arc::new(move |request: &admin::DebugRequest<'_>| {
                tablet
                    .as_ref()
                    .and_then(|t| t.debug_page(request))
                    .unwrap_or_else(|| guard.debug_page(request))
            })
        });
        let admin_task = tokio::spawn(admin::serve_with(
            admin,
            shared.metrics.clone(),
            health.clone(),
            pages,
            admin_token,
            admin_stopped,
        ));
        if let Some(router) = &shared.router {
            router.start(shutdown.clone());
            tokio::spawn(twopc::resolve(
                router.clone(),
                shared.metrics.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(warm_up(shared.clone(), health.clone(), shutdown.clone()));
        if let Some(guard) = &shared.guard {
            tokio::spawn(guard.pool.clone().reaper(shutdown.clone()));
            tokio::spawn(probe::watch(
                shared.clone(),
                health.clone(),
                (addr, admin_addr),
                shutdown.clone(),
            ));
        }
        let max = shared.config.max_connections.max(1);
        let permits = Arc::new(Semaphore::new(max));
        let role = if shared.guard.is_some() { "db" } else { "app" };
        info!(%addr, upstream = %shared.upstream.display, role, "listening");
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break } else { continue }
                }
                a = listener.accept() => a,
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let shared = shared.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        session::serve(socket, peer, shared, shutdown).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    shared.metrics.connection_rejected("max_connections");
                    tokio::spawn(refuse(socket));
                }
            }
        }
        drop(listener);
        health.set_draining(true);
        shared.metrics.draining(true);
        let timeout = shared.config.drain_timeout();
        let in_use = max - permits.available_permits();
        info!(connections = in_use, ?timeout, "draining");
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        match tokio::time::timeout(timeout, permits.acquire_many(all)).await {
            Ok(_) => info!("drained"),
            Err(_) => warn!(
                remaining = max - permits.available_permits(),
                "drain timeout reached; closing remaining connections"
            ),
        }
        let _ = admin_stop.send(true);
        let _ = admin_task.await;
        Ok(())
    }
}

/// Sends "Too many connections" in place of a greeting, as mysqld does.
async fn refuse(mut socket: tokio::net::TcpStream) {
    let bytes = error_before_greeting(error_codes::ER_CON_COUNT_ERROR, "Too many connections");
    let _ = socket.write_all(&bytes).await;
    let _ = socket.shutdown().await;
}

/// Learns the upstream profile in the background so that `/ready` turns green as soon as
/// mysqld answers, retrying until it does.
async fn warm_up(shared: Arc<Shared>, health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    if shared.config.auth.default_plugin.plugin()
        == shardcar_filter::protocol::auth::AuthPlugin::CachingSha2Password
    {
        let s = shared.clone();
        tokio::task::spawn_blocking(move || s.auth.key().is_some());
    }
    let mut delay = Duration::from_millis(100);
    loop {
        match shared.profile().await {
            Ok(p) => {
                info!(version = %p.server_version, "upstream reachable");
                health.set_ready(true);
                return;
            }
            Err(e) => warn!(error = %e, "upstream not reachable yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Binds and serves until `shutdown` turns true.
pub async fn run(config: AppConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    AppServer::bind(config).await?.serve(shutdown).await
}

/// Runs the db role until `shutdown`; with `reload` (the configuration file), the
/// protection policy is re-read whenever the file changes.
pub async fn run_db(
    config: AppConfig,
    reload: Option<std::path::PathBuf>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let interval = config.db.reload_interval_ms;
    let server = AppServer::bind_role(config, Role::Db).await?;
    if let (Some(path), Some(guard), true) = (reload, server.shared.guard.clone(), interval > 0) {
        tokio::spawn(reload::watch(
            path,
            guard,
            Duration::from_millis(interval),
            server.shared.metrics.clone(),
            shutdown.clone(),
        ));
    }
    server.serve(shutdown).await
}
