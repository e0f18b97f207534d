//! The app role's configuration from the control service's stream
//! (`sharding.topology.control`): keyspaces, VSchema, routing rules, shards and
//! tablets. At startup the sidecar waits for a configuration it can serve (every
//! keyspace's shards covering its keyrange), or takes its cache file when none came
//! within `startup_timeout_ms`; then
//! it applies every update, ACKs or NACKs it, keeps the last good configuration on disk,
//! and reconnects (resuming from its version) whenever the stream breaks, serving on
//! the last good configuration meanwhile.
//!
//! A version is refused (NACKed) when its VSchema does not build, or when it changes the
//! keyspaces or shards the sidecar started with: routing keeps one upstream per shard,
//! so serving a resharded layout needs a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use shardcar_config_api::pb::{self, config_discovery_client::ConfigDiscoveryClient};
use shardcar_config_api::{Parts, View};
use shardcar_filter::plan::RoutingSchema;
use shardcar_filter::vschema::SrvVSchema;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};

use super::endpoints::Directory;
use super::router::Planning;
use super::source::{endpoints_of, Shape};
use super::tablet::lock;
use crate::config::{ControlStreamConfig, ShardingConfig};
use crate::metrics::Metrics;

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Shard names per keyspace.
type Layout = BTreeMap<String, Vec<String>>;

/// An open stream, and what it has delivered (deltas apply on it; after a NACK it is
/// ahead of what is applied).
struct Connection {
    outbound: mpsc::Sender<pb::SidecarMessage>,
    inbound: tonic::Streaming<pb::ConfigUpdate>,
    /// Joins an update's parts.
    parts: Parts,
    received: View,
}

impl Connection {
    /// The next whole update (`Ok(None)` when the stream ended cleanly).
    async fn next(&mut self) -> Result<Option<pb::ConfigUpdate>, String> {
        loop {
            let part = match self.inbound.message().await {
                Ok(Some(part)) => part,
                Ok(None) => return Ok(None),
                Err(status) => return Err(status.message().to_string()),
            };
            if let Some(update) = self.parts.push(part).map_err(|e| e.to_string())? {
                return Ok(Some(update));
            }
        }
    }
}

/// Follows the control service for the router.
pub struct Follower {
    config: ControlStreamConfig,
    identity: pb::Identity,
    /// The keyspaces and shards the router was built with.
    layout: Layout,
    /// The configuration serving now.
    applied: Mutex<View>,
    /// Its routing schema, built at start, until the router takes it.
    initial_schema: Mutex<Option<RoutingSchema>>,
    /// The stream opened at startup, with the answer its first update still needs.
    opened: Mutex<Option<(Connection, pb::SidecarMessage)>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("address", &self.config.address)
            .field("version", &lock(&self.applied).version)
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// Takes the first configuration: a snapshot from the control service, else (after
    /// `startup_timeout_ms`, or when the snapshot is refused) the cache file.
    pub async fn start(sharding: &ShardingConfig, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let Some(config) = sharding.control().cloned() else {
            anyhow::bail!("sharding.topology.control is not set");
        };
        let cell = sharding
            .topology
            .as_ref()
            .map(|t| t.cell.clone())
            .unwrap_or_default();
        let identity = identity(&config, cell);
        let timeout = Duration::from_millis(config.startup_timeout_ms);
        let mut refused = None;
        let fresh =
            tokio::time::timeout(timeout, first_servable(&config, &identity, &mut refused)).await;
        let (view, schema, opened) = match fresh {
            Ok((connection, schema)) => {
                let view = connection.received.clone();
                let ack = ack(view.version);
                (view, schema, Some((connection, ack)))
            }
            Err(_) => {
                let cached = match config.cache_file.as_deref().map(load_cache).transpose() {
                    Ok(view) => view,
                    Err(e) => {
                        warn!(error = %e, "the configuration cache cannot be read");
                        None
                    }
                };
                let Some(view) = cached else {
                    let why = match refused {
                        Some(e) => format!("its configuration cannot be served yet: {e}"),
                        None => "it did not answer".to_string(),
                    };
                    anyhow::bail!(
                        "no configuration within {} ms from the control service at {}: {why}; and there is no cache file to start from",
                        config.startup_timeout_ms,
                        config.address,
                    );
                };
                let schema = check(&view, None).map_err(anyhow::Error::msg)?;
                warn!(
                    address = %config.address,
                    version = view.version,
                    "no servable configuration from the control service; starting from the cached one"
                );
                (view, schema, None)
            }
        };
        info!(
            version = view.version,
            keyspaces = view.keyspaces.len(),
            shards = view.shards.len(),
            tablets = view.tablets.len(),
            "configuration from the control service"
        );
        metrics.config.applied(view.version);
        Ok(Follower {
            layout: view.shard_names(),
            config,
            identity,
            applied: Mutex::new(view),
            initial_schema: Mutex::new(Some(schema)),
            opened: Mutex::new(opened),
            metrics,
        })
    }

    /// The routing schema of the configuration serving now: the one [`Follower::start`]
    /// built, the first time.
    pub fn schema(&self) -> Result<RoutingSchema, String> {
        match lock(&self.initial_schema).take() {
            Some(schema) => Ok(schema),
            None => check(&lock(&self.applied), None),
        }
    }

    /// Applies updates to `directory` and `planning` until `shutdown`, reconnecting
    /// whenever the stream breaks.
    pub async fn follow(
        &self,
        directory: Arc<Directory>,
        shape: Shape,
        planning: Arc<Planning>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let start = lock(&self.applied).clone();
        directory.publish(endpoints_of(&start, &shape));
        if let Some(path) = &self.config.cache_file {
            save_cache(path, &start).await;
        }
        let mut opened = lock(&self.opened).take();
        let mut delay = Duration::from_millis(100);
        loop {
            let connection = match opened.take() {
                Some((c, answer)) => {
                    let _ = c.outbound.send(answer).await;
                    Ok(c)
                }
                None => {
                    let held = lock(&self.applied).clone();
                    connect(&self.config, &self.identity, held).await
                }
            };
            let broken = match connection {
                Ok(mut c) => {
                    self.metrics.config.connected(true);
                    delay = Duration::from_millis(100);
                    let result = self
                        .serve(&mut c, &directory, &shape, &planning, &mut shutdown)
                        .await;
                    self.metrics.config.connected(false);
                    match result {
                        Ok(()) => return,
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            warn!(address = %self.config.address, error = %broken, "configuration stream down; serving the last good configuration");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// Handles one stream's updates; `Ok` on shutdown, `Err` when the stream breaks.
    async fn serve(
        &self,
        c: &mut Connection,
        directory: &Directory,
        shape: &Shape,
        planning: &Planning,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        loop {
            let update = tokio::select! {
                m = c.next() => match m? {
                    Some(u) => u,
                    None => return Err("the control service closed the stream".into()),
                },
                _ = shutdown.changed() => return Ok(()),
            };
            let instance = update.control_instance.clone();
            // A delta on something else than what this stream delivered: start over.
            c.received.apply(update).map_err(|e| e.to_string())?;
            let version = c.received.version;
            let answer = match self.apply(&c.received, directory, shape, planning) {
                Ok(()) => {
                    info!(version, %instance, "configuration applied");
                    if let Some(path) = &self.config.cache_file {
                        save_cache(path, &c.received).await;
                    }
                    ack(version)
                }
                Err(e) => {
                    warn!(version, %instance, error = %e, "configuration refused; serving the last good one");
                    self.metrics.config.rejected();
                    nack(version, &e)
                }
            };
            c.outbound
                .send(answer)
                .await
                .map_err(|_| "the stream closed".to_string())?;
        }
    }

    /// Makes `view` the configuration serving, if it can be.
    fn apply(
        &self,
        view: &View,
        directory: &Directory,
        shape: &Shape,
        planning: &Planning,
    ) -> Result<(), String> {
        let names = check_layout(view, Some(&self.layout))?;
        let mut applied = lock(&self.applied);
        // Most versions only move endpoints: the schema is rebuilt when its inputs change.
        if !same_vschema(&applied, view, &names) {
            planning.replace(build_schema(view, &names)?);
            info!(version = view.version, "VSchema replaced");
        }
        directory.publish(endpoints_of(view, shape));
        *applied = view.clone();
        self.metrics.config.applied(view.version);
        Ok(())
    }
}

/// The routing schema `view` describes, refused when its keyspaces or shards are not
/// `layout` (when given).
fn check(view: &View, layout: Option<&Layout>) -> Result<RoutingSchema, String> {
    let names = check_layout(view, layout)?;
    build_schema(view, &names)
}

/// `view`'s keyspaces and their shards, refused when there are none or (given `layout`)
/// they are not those.
fn check_layout(view: &View, layout: Option<&Layout>) -> Result<Layout, String> {
    let names = view.shard_names();
    if names.is_empty() {
        return Err("the configuration has no keyspace with shards".into());
    }
    if let Some(running) = layout.filter(|l| **l != names) {
        return Err(format!(
            "the keyspaces or shards changed (serving {}, sent {}); restart the sidecar to serve a resharded layout",
            describe(running),
            describe(&names)
        ));
    }
    Ok(names)
}

fn build_schema(view: &View, names: &Layout) -> Result<RoutingSchema, String> {
    let vschema = SrvVSchema::from_json(&view.srv_vschema_json()?).map_err(|e| e.to_string())?;
    ShardingConfig::schema_of(vschema, names).map_err(|e| e.to_string())
}

/// Whether `a` and `b` give the same SrvVSchema over the keyspaces served (`names`):
/// the same VSchemas and routing rules.
fn same_vschema(a: &View, b: &View, names: &Layout) -> bool {
    let vschema = |v: &View, k: &str| v.keyspaces.get(k).map(|k| k.vschema_json.clone());
    a.routing_rules_json == b.routing_rules_json
        && names.keys().all(|k| vschema(a, k) == vschema(b, k))
}

fn describe(layout: &Layout) -> String {
    layout
        .iter()
        .map(|(k, shards)| format!("{k}:{}", shards.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn identity(config: &ControlStreamConfig, cell: String) -> pb::Identity {
    let or_env = |value: &str, var: &str| {
        if value.is_empty() {
            std::env::var(var).unwrap_or_default()
        } else {
            value.to_string()
        }
    };
    pb::Identity {
        cluster: config.cluster.clone(),
        cell,
        namespace: or_env(&config.namespace, "SHARDCAR_POD_NAMESPACE"),
        pod: or_env(&config.pod, "SHARDCAR_POD_NAME"),
        role: pb::Role::App.into(),
        keyspace: String::new(),
        shard: String::new(),
    }
}

fn ack(version: u64) -> pb::SidecarMessage {
    pb::SidecarMessage {
        message: Some(pb::sidecar_message::Message::Ack(pb::Ack { version })),
    }
}

fn nack(version: u64, error: &str) -> pb::SidecarMessage {
    pb::SidecarMessage {
        message: Some(pb::sidecar_message::Message::Nack(pb::Nack {
            version,
            error: error.to_string(),
        })),
    }
}

/// Opens a stream saying the sidecar holds `held`.
async fn connect(
    config: &ControlStreamConfig,
    identity: &pb::Identity,
    held: View,
) -> Result<Connection, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(config.address.clone())
        .map_err(|e| format!("{}: {e}", config.address))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        })?;
    let (outbound, rx) = mpsc::channel(8);
    let hello = pb::SidecarMessage {
        message: Some(pb::sidecar_message::Message::Hello(pb::Hello {
            identity: Some(identity.clone()),
            last_version: held.version,
        })),
    };
    outbound
        .send(hello)
        .await
        .map_err(|_| "the stream closed".to_string())?;
    let inbound = ConfigDiscoveryClient::new(channel)
        .stream(ReceiverStream::new(rx))
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    Ok(Connection {
        outbound,
        inbound,
        parts: Parts::default(),
        received: held,
    })
}

/// Connects (retrying) until the control service has sent a configuration this sidecar
/// can serve (one whose keyspaces have all their shards), with its routing schema;
/// NACKs the ones before, and keeps the last reason in `refused`.
async fn first_servable(
    config: &ControlStreamConfig,
    identity: &pb::Identity,
    refused: &mut Option<String>,
) -> (Connection, RoutingSchema) {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut c = connect(config, identity, View::default()).await?;
            loop {
                match c.next().await? {
                    Some(update) => c.received.apply(update).map_err(|e| e.to_string())?,
                    None => return Err("the stream closed".to_string()),
                }
                match check(&c.received, None) {
                    Ok(schema) => return Ok((c, schema)),
                    Err(e) => {
                        info!(version = c.received.version, reason = %e, "waiting for a servable configuration");
                        let _ = c.outbound.send(nack(c.received.version, &e)).await;
                        *refused = Some(e);
                    }
                }
            }
        };
        match attempt.await {
            Ok(c) => return c,
            Err(e) => {
                warn!(address = %config.address, error = %e, "waiting for the control service")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

fn load_cache(path: &Path) -> Result<View, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let update = pb::ConfigUpdate::decode(bytes.as_slice())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut view = View::default();
    if !update.full {
        return Err(format!("{}: not a snapshot", path.display()));
    }
    view.apply(update).map_err(|e| e.to_string())?;
    Ok(view)
}

/// Writes `view` as a snapshot, atomically (a crash leaves the old file or the new).
async fn save_cache(path: &PathBuf, view: &View) {
    let bytes = view.snapshot().encode_to_vec();
    let temp = path.with_extension("tmp");
    let result = async {
        tokio::fs::write(&temp, &bytes).await?;
        tokio::fs::rename(&temp, path).await
    }
    .await;
    if let Err(e) = result {
        warn!(path = %path.display(), error = %e, "cannot write the configuration cache");
    }
}
