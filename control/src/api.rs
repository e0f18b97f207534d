//! The control service's HTTP API (`shardcar-control orchestrate --listen ADDR`):
//! `/metrics` and `/healthz` for monitoring, `/debug/shards`, `/debug/streams` (the
//! configuration streams served, with their versions and NACKs) and `/debug/sources`
//! (the clusters followed, their reachability, and their conflicts) for operators, and
//! `POST /reparent?keyspace=K&shard=S[&to=ALIAS][&wait_timeout_ms=N]`, a planned reparent
//! on demand that answers with its JSON report.
//!
//! With an action token (`--action-token-file`) a `POST` needs it as a bearer token, as
//! the db sidecars' actions do.

use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use shardcar_topo::Topology;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::http_server::{self, reply, Reply, JSON, OPENMETRICS, TEXT};
use crate::reparent::{planned_reparent, ReparentOptions};

/// The longest `wait_timeout_ms` a reparent request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The control service's metrics.
pub struct ControlMetrics {
    registry: Mutex<Registry>,
    leader: Gauge<i64, AtomicI64>,
    actions: Family<OutcomeLabels, Counter>,
    streams: Family<RoleLabels, Gauge<i64, AtomicI64>>,
    updates: Family<KindLabels, Counter>,
    responses: Family<ResultLabels, Counter>,
    sources_up: Family<ClusterLabels, Gauge<i64, AtomicI64>>,
    conflicts: Gauge<i64, AtomicI64>,
}

impl std::fmt::Debug for ControlMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlMetrics").finish_non_exhaustive()
    }
}

impl Default for ControlMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "shardcar_control_orchestrator_leader",
            "1 while this instance holds the orchestrator's leader lock",
            leader.clone(),
        );
        let actions = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "shardcar_control_actions",
            "Shard actions by kind (planned, emergency, rebuild, repair) and result (ok, error)",
            actions.clone(),
        );
        let streams = Family::<RoleLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "shardcar_control_config_streams",
            "Connected configuration streams by sidecar role",
            streams.clone(),
        );
        let updates = Family::<KindLabels, Counter>::default();
        registry.register(
            "shardcar_control_config_updates",
            "Configuration updates sent, by kind (snapshot, delta)",
            updates.clone(),
        );
        let responses = Family::<ResultLabels, Counter>::default();
        registry.register(
            "shardcar_control_config_responses",
            "Sidecars' answers to configuration updates (ack, nack)",
            responses.clone(),
        );
        let sources_up = Family::<ClusterLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "shardcar_control_config_source_up",
            "1 while the cluster's topology is read, 0 while it is unreachable (its tablets stale)",
            sources_up.clone(),
        );
        let conflicts = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "shardcar_control_config_conflicts",
            "Disagreements between federated clusters in the last merge (see /debug/sources)",
            conflicts.clone(),
        );
        ControlMetrics {
            registry: Mutex::new(registry),
            leader,
            actions,
            streams,
            updates,
            responses,
            sources_up,
            conflicts,
        }
    }
}

impl ControlMetrics {
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// One shard action of `kind` ended.
    pub fn action(&self, kind: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.actions
            .get_or_create(&OutcomeLabels { kind, result })
            .inc();
    }

    /// A configuration stream of `role` opened (`+1`) or closed (`-1`).
    pub fn config_stream(&self, role: &'static str, change: i64) {
        self.streams
            .get_or_create(&RoleLabels { role })
            .inc_by(change);
    }

    pub fn config_source(&self, cluster: &str, up: bool) {
        self.sources_up
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_string(),
            })
            .set(i64::from(up));
    }

    pub fn config_conflicts(&self, n: usize) {
        self.conflicts.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn config_update(&self, full: bool) {
        let kind = if full { "snapshot" } else { "delta" };
        self.updates.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn config_response(&self, ack: bool) {
        let result = if ack { "ack" } else { "nack" };
        self.responses.get_or_create(&ResultLabels { result }).inc();
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        let registry = crate::lock(&self.registry);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What the API serves from.
#[derive(Debug, Clone)]
pub struct Api {
    pub topology: Topology,
    pub metrics: Arc<ControlMetrics>,
    /// Defaults of the reparents it runs (the action token among them).
    pub reparent: ReparentOptions,
    /// The configuration streams served, when this instance serves them.
    pub config: Option<crate::config::ConfigService>,
}

/// Serves `api` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    api: Api,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    info!(address = %listener.local_addr()?, "control API listening");
    http_server::serve(listener, None, shutdown, "control API", move |req, peer| {
        let api = api.clone();
        Box::pin(async move { api.route(req, peer).await })
    })
    .await
}

fn no_streams() -> Reply {
    reply(
        StatusCode::NOT_FOUND,
        TEXT,
        "this instance serves no configuration streams (--config-listen)\n",
    )
}

impl Api {
    async fn route(&self, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/metrics") => reply(StatusCode::OK, OPENMETRICS, self.metrics.encode()),
            (&Method::GET, "/healthz") => reply(StatusCode::OK, TEXT, "ok\n"),
            (&Method::GET, "/debug/shards") => match self.shards().await {
                Ok(json) => reply(StatusCode::OK, JSON, json.to_string()),
                Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{e}\n")),
            },
            (&Method::GET, "/debug/streams") => match &self.config {
                Some(c) => reply(
                    StatusCode::OK,
                    JSON,
                    serde_json::to_string_pretty(&c.streams.list()).unwrap_or_default(),
                ),
                None => no_streams(),
            },
            (&Method::GET, "/debug/sources") => match &self.config {
                Some(c) => {
                    let body = serde_json::json!({
                        "version": c.hub.revision(),
                        "sources": c.hub.sources(),
                        "conflicts": c.hub.conflicts(),
                    });
                    reply(
                        StatusCode::OK,
                        JSON,
                        serde_json::to_string_pretty(&body).unwrap_or_default(),
                    )
                }
                None => no_streams(),
            },
            (&Method::POST, "/reparent") => {
                if !self.authorized(&req) {
                    warn!(%peer, "reparent refused: missing or wrong bearer token");
                    let mut r = reply(
                        StatusCode::UNAUTHORIZED,
                        TEXT,
                        "a bearer token is required\n",
                    );
                    r.headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return r;
                }
                self.reparent(&query).await
            }
            (
                _,
                "/metrics" | "/healthz" | "/debug/shards" | "/debug/streams" | "/debug/sources"
                | "/reparent",
            ) => reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n"),
            _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        self.reparent.action_token.as_deref().is_none_or(|t| {
            http_server::bearer_token_matches(req.headers().get(AUTHORIZATION), t.as_bytes())
        })
    }

    /// Every shard's record and its tablets' health.
    async fn shards(&self) -> Result<serde_json::Value, shardcar_topo::TopoError> {
        let tablets = self.topology.tablets(None).await?;
        let mut shards = Vec::new();
        for keyspace in self.topology.keyspace_names().await? {
            for shard in self.topology.shard_names(&keyspace).await? {
                let record = self
                    .topology
                    .shard(&keyspace, &shard)
                    .await?
                    .map(|(r, _)| r);
                let members: Vec<serde_json::Value> = tablets
                    .iter()
                    .filter(|t| t.keyspace == keyspace && t.shard == shard)
                    .map(|t| {
                        serde_json::json!({
                            "alias": t.alias,
                            "type": t.tablet_type,
                            "serving": t.health.serving,
                            "read_only": t.health.read_only,
                            "replicating": t.health.replicating,
                            "lag_ms": t.health.lag_ms(),
                            "replication_error": t.health.replication_error,
                            "position": t.health.gtid_position,
                        })
                    })
                    .collect();
                shards.push(serde_json::json!({
                    "keyspace": keyspace,
                    "shard": shard,
                    "record": record,
                    "tablets": members,
                }));
            }
        }
        Ok(serde_json::Value::Array(shards))
    }

    async fn reparent(&self, query: &str) -> Reply {
        let param = |key: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        };
        let (Some(keyspace), Some(shard)) = (param("keyspace"), param("shard")) else {
            return reply(
                StatusCode::BAD_REQUEST,
                TEXT,
                "keyspace=K and shard=S are required\n",
            );
        };
        let mut options = self.reparent.clone();
        options.to = param("to").or(options.to);
        if let Some(ms) = param("wait_timeout_ms") {
            match ms.parse::<u64>() {
                Ok(ms) => options.wait_timeout = Duration::from_millis(ms).min(MAX_WAIT),
                Err(_) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        TEXT,
                        format!("wait_timeout_ms={ms} is not a number\n"),
                    )
                }
            }
        }
        let result = planned_reparent(&self.topology, &keyspace, &shard, &options).await;
        self.metrics.action("planned", result.is_ok());
        match result {
            Ok(report) => {
                info!(%keyspace, %shard, ?report, "planned reparent over the API");
                reply(
                    StatusCode::OK,
                    JSON,
                    serde_json::to_string_pretty(&report).unwrap_or_default(),
                )
            }
            Err(e) => {
                warn!(%keyspace, %shard, error = %e, "planned reparent over the API failed");
                reply(StatusCode::CONFLICT, TEXT, format!("{e}\n"))
            }
        }
    }
}
