//! The sharded side of the app role: the routing schema and one upstream per shard, the
//! reading of whole shard responses for merging, and the sequence cache that fills
//! auto-increment columns of sharded tables (Vitess-style sequence tables, in blocks).

use std::collections::HashMap;
use std::sync::Arc;

use shardcar_filter::plan::cache::{self, PlanCache, Template};
use shardcar_filter::plan::merge::Row;
use shardcar_filter::plan::{Plan, PlanContext, Route, RoutingSchema};
use shardcar_filter::protocol::column::ColumnDefinition;
use shardcar_filter::protocol::packet::{write_packet, PacketAssembler};
use shardcar_filter::protocol::resultset::{decode_text_row, Event, ResultSetDecoder, RowFormat};
use shardcar_filter::protocol::{Command, ErrPacket, OkPacket};
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use shardcar_topo::{Layout, Topology};

use super::endpoints::{BufferLimits, Directory, Endpoints};
use super::source::{self, Shape};
use super::upstream::{self, ConnectError, LoginParams, Upstream, UpstreamSettings};
use crate::config::{ShardingConfig, TransactionMode};

/// Statement shapes the plan cache keeps (per generation).
const PLAN_CACHE_SIZE: usize = 10_000;

/// A shard by keyspace name and index in the keyspace's shard list.
pub type ShardKey = (String, usize);

/// The routing schema and the plan cache built on it, replaced together when the
/// control service sends another VSchema.
#[derive(Debug)]
pub struct Planning {
    schema: std::sync::RwLock<Arc<RoutingSchema>>,
    /// Templates of statement shapes seen, shared by all sessions.
    cache: std::sync::RwLock<PlanCache>,
}

impl Planning {
    fn new(schema: RoutingSchema) -> Self {
        Planning {
            schema: std::sync::RwLock::new(Arc::new(schema)),
            cache: std::sync::RwLock::new(PlanCache::new(PLAN_CACHE_SIZE)),
        }
    }

    pub fn schema(&self) -> Arc<RoutingSchema> {
        self.schema
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the schema and empties the cache. Holding the cache's lock throughout
    /// keeps a template of the old schema from landing in the new cache.
    pub fn replace(&self, schema: RoutingSchema) {
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *self
            .schema
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(schema);
        *cache = PlanCache::new(PLAN_CACHE_SIZE);
    }
}

/// Everything the sharded app role shares between sessions.
#[derive(Debug)]
pub struct Router {
    planning: Arc<Planning>,
    /// Where each shard's primary and replicas are, and the failover buffer.
    pub directory: Arc<Directory>,
    shape: Shape,
    /// Where the endpoints come from, when not from the configuration.
    source: Option<TopologySpec>,
    /// This sidecar's cell, for replica reads (empty without a topology).
    pub cell: String,
    pub max_replica_lag_ms: u64,
    /// Sessions read from replicas unless they say otherwise (`topology.reads`).
    pub replica_reads: bool,
    /// With read-your-writes: how long a replica may take to reach a session's last
    /// write before the read goes to the primary.
    pub read_your_writes: Option<std::time::Duration>,
    pub mode: TransactionMode,
    /// Two-phase commit, when sessions may use it.
    pub twopc: Option<Arc<super::twopc::Twopc>>,
    pub max_rows: usize,
    sequences: Mutex<HashMap<String, (i64, i64)>>,
}

/// The topology the endpoints follow: an etcd cluster, or a store given in-process
/// (`shardcar local`).
#[derive(Clone)]
pub enum TopologySpec {
    Etcd {
        endpoints: Vec<String>,
        root: String,
    },
    Store(Topology),
    /// The control service's configuration stream.
    Control(Arc<super::control::Follower>),
}

impl std::fmt::Debug for TopologySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopologySpec::Etcd { endpoints, root } => f
                .debug_struct("Etcd")
                .field("endpoints", endpoints)
                .field("root", root)
                .finish(),
            TopologySpec::Store(t) => f.debug_tuple("Store").field(t.layout()).finish(),
            TopologySpec::Control(c) => f.debug_tuple("Control").field(c).finish(),
        }
    }
}

impl TopologySpec {
    /// Connects (retrying until `shutdown`) and keeps `directory` following the topology.
    async fn follow(
        self,
        directory: Arc<Directory>,
        shape: Shape,
        planning: Arc<Planning>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let topology = match self {
            TopologySpec::Control(follower) => {
                return follower.follow(directory, shape, planning, shutdown).await;
            }
            TopologySpec::Store(t) => t,
            TopologySpec::Etcd { endpoints, root } => {
                let mut delay = std::time::Duration::from_millis(100);
                loop {
                    match shardcar_topo::EtcdStore::connect(&endpoints).await {
                        Ok(store) => break Topology::new(Arc::new(store), Layout::new(&root)),
                        Err(e) => tracing::warn!(error = %e, "cannot reach the topology; retrying"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
            }
        };
        source::follow(topology, directory, shape, shutdown).await;
    }
}

/// A shard's whole answer to one statement.
#[derive(Debug)]
pub enum ShardResult {
    Ok(OkPacket),
    Err(ErrPacket),
    Rows {
        columns: Arc<[ColumnDefinition]>,
        rows: Vec<Row>,
        warnings: u16,
    },
}

/// Reading a shard's answer failed: the connection is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("lost connection to shard: {0}")]
    Io(#[from] std::io::Error),
    #[error("shard protocol error: {0}")]
    Protocol(String),
    #[error("in-memory row count exceeded allowed limit of {0} rows")]
    TooManyRows(usize),
}

impl Router {
    /// Builds the routing schema and the per-shard upstream settings from `base` (the
    /// `upstream` section's credentials and TLS) and the `sharding` section; with a
    /// topology (`store` in-process, else the section's etcd endpoints), the endpoints
    /// start empty and follow it once [`Router::start`] runs.
    pub fn new(
        config: &ShardingConfig,
        base: &UpstreamSettings,
        store: Option<Topology>,
    ) -> anyhow::Result<Router> {
        let schema = config.routing_schema()?;
        let source = match (&config.topology, store) {
            (Some(_), Some(t)) => Some(TopologySpec::Store(t)),
            (Some(t), None) => {
                if t.etcd_endpoints.is_empty() {
                    anyhow::bail!(
                        "sharding.topology.etcd_endpoints: name at least one etcd client URL"
                    );
                }
                Some(TopologySpec::Etcd {
                    endpoints: t.etcd_endpoints.clone(),
                    root: t.root.clone(),
                })
            }
            (None, _) => None,
        };
        Self::build(config, schema, base, source)
    }

    /// A router whose keyspaces, VSchema and endpoints come from the control service,
    /// starting from the configuration `follower` holds.
    pub fn following(
        config: &ShardingConfig,
        base: &UpstreamSettings,
        follower: super::control::Follower,
    ) -> anyhow::Result<Router> {
        let schema = follower.schema().map_err(anyhow::Error::msg)?;
        let source = Some(TopologySpec::Control(Arc::new(follower)));
        Self::build(config, schema, base, source)
    }

    fn build(
        config: &ShardingConfig,
        schema: RoutingSchema,
        base: &UpstreamSettings,
        source: Option<TopologySpec>,
    ) -> anyhow::Result<Router> {
        let mut shape = Shape {
            keys: HashMap::new(),
            templates: HashMap::new(),
        };
        let streamed = matches!(source, Some(TopologySpec::Control(_)));
        for ks in schema.keyspaces() {
            let cfg = config.keyspaces.get(&ks.name);
            if cfg.is_none() && !streamed {
                anyhow::bail!("keyspace {} has no shards configured", ks.name);
            }
            for (index, shard) in ks.shards.iter().enumerate() {
                // Streamed shards have no local configuration: the address comes from
                // their tablets, the database is the keyspace's name.
                let c = match cfg {
                    None => crate::config::ShardConfig::default(),
                    Some(cfg) => cfg
                        .shards
                        .iter()
                        .find(|s| s.name.eq_ignore_ascii_case(&shard.name))
                        .cloned()
                        .ok_or_else(|| {
                            anyhow::anyhow!("shard {}/{} is not configured", ks.name, shard.name)
                        })?,
                };
                let (endpoint, display) = if c.address.is_empty() {
                    (base.endpoint.clone(), format!("{}/{}", ks.name, shard.name))
                } else {
                    let e =
                        crate::config::parse_endpoint(&c.address).map_err(anyhow::Error::msg)?;
                    (e, c.address.clone())
                };
                let key = (ks.name.clone(), index);
                shape.keys.insert(
                    (ks.name.clone(), shard.name.to_ascii_lowercase()),
                    key.clone(),
                );
                shape.templates.insert(
                    key,
                    Arc::new(UpstreamSettings {
                        endpoint,
                        display,
                        database: Some(c.database.clone().unwrap_or_else(|| ks.name.clone())),
                        ..base.clone()
                    }),
                );
            }
        }
        let initial = match source {
            None => shape.static_endpoints(),
            Some(_) => Endpoints {
                shards: shape
                    .templates
                    .keys()
                    .map(|k| (k.clone(), Default::default()))
                    .collect(),
            },
        };
        let limits = BufferLimits {
            window: std::time::Duration::from_millis(config.failover_buffer.window_ms),
            max_statements: config.failover_buffer.max_statements,
        };
        let directory = Arc::new(Directory::new(initial, source.is_some(), limits));
        let topology = config.topology.clone().unwrap_or_default();
        Ok(Router {
            planning: Arc::new(Planning::new(schema)),
            directory,
            shape,
            source,
            cell: topology.cell,
            max_replica_lag_ms: topology.max_replica_lag_ms,
            replica_reads: topology.reads == crate::config::ReadTarget::Replica,
            read_your_writes: topology
                .read_your_writes
                .then(|| std::time::Duration::from_millis(topology.read_your_writes_wait_ms)),
            mode: config.transaction_mode,
            twopc: config
                .twopc_enabled()
                .then(|| Arc::new(super::twopc::Twopc::new(config.twopc.clone()))),
            max_rows: config.max_merge_rows,
            sequences: Mutex::new(HashMap::new()),
        })
    }

    /// The routing schema now (the control service may replace it).
    pub fn schema(&self) -> Arc<RoutingSchema> {
        self.planning.schema()
    }

    /// Starts following the topology, when the endpoints come from one.
    pub fn start(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        if let Some(spec) = self.source.clone() {
            tokio::spawn(spec.follow(
                self.directory.clone(),
                self.shape.clone(),
                self.planning.clone(),
                shutdown,
            ));
        }
    }

    /// A cached route for `sql`, when its shape is known to route from its literals.
    /// `Err(Some(..))` hands back the cache key and the literals of an unknown shape for
    /// [`Router::remember`] after a full plan.
    pub fn cached_route<'a>(
        &self,
        default_keyspace: Option<&str>,
        sql: &'a str,
    ) -> Result<Route, Option<(String, Vec<&'a str>)>> {
        let Some((key, literals)) = cache::key(default_keyspace, sql) else {
            return Err(None);
        };
        let known = match self.planning.cache.read() {
            Ok(c) => c.get(&key).map(|t| t.as_ref().cloned()),
            Err(_) => return Err(None),
        };
        match known {
            Some(Some(t)) => t.route(&self.schema(), &literals).ok_or(None),
            Some(None) => Err(None),
            None => Err(Some((key, literals))),
        }
    }

    /// Records the template of the statement shape `key` after a statement with these
    /// `literals` was planned to `plan`, when the template routes it exactly as the
    /// planner did.
    pub fn remember(
        &self,
        (key, literals): (String, Vec<&str>),
        default_keyspace: Option<&str>,
        plan: &Plan,
    ) {
        let ctx = PlanContext { default_keyspace };
        // Under the cache's lock, so a schema replaced meanwhile cannot be mixed in.
        let Ok(mut c) = self.planning.cache.write() else {
            return;
        };
        let schema = self.schema();
        let template: Option<Template> = match plan {
            Plan::Route(r) if r.is_passthrough() => cache::template(&schema, &key, &ctx)
                .filter(|t| t.route(&schema, &literals).as_ref() == Some(r)),
            _ => None,
        };
        c.insert(key, template);
    }

    /// Where shard `key`'s primary listens now.
    pub fn settings(&self, key: &ShardKey) -> Option<Arc<UpstreamSettings>> {
        self.directory.snapshot().shard(key)?.primary.clone()
    }

    /// The shard's name (`-80`), for messages.
    pub fn shard_name(&self, key: &ShardKey) -> String {
        self.schema()
            .keyspace(&key.0)
            .and_then(|k| k.shards.get(key.1))
            .map_or_else(|| key.1.to_string(), |s| s.name.clone())
    }

    /// Any shard's primary, for the greeting profile (the first unsharded one when there
    /// is one, else the first with a primary).
    pub fn any_shard(&self) -> Option<Arc<UpstreamSettings>> {
        let schema = self.schema();
        let unsharded = schema.keyspaces().find(|k| !k.sharded);
        let keys: Vec<ShardKey> = unsharded
            .into_iter()
            .chain(schema.keyspaces())
            .flat_map(|k| (0..k.shards.len()).map(move |i| (k.name.clone(), i)))
            .collect();
        keys.into_iter().find_map(|key| self.settings(&key))
    }

    /// `count` consecutive ids from the sequence table `table` of `keyspace`, reserving a
    /// block of `cache` ids at a time in the table as Vitess does.
    pub async fn next_ids(&self, keyspace: &str, table: &str, count: usize) -> Result<i64, String> {
        let count = i64::try_from(count).map_err(|_| "too many rows".to_string())?;
        let key = format!("{keyspace}.{table}");
        let mut cache = self.sequences.lock().await;
        if let Some((next, end)) = cache.get_mut(&key) {
            if *end - *next >= count {
                let first = *next;
                *next += count;
                return Ok(first);
            }
        }
        let shard = (keyspace.to_string(), 0);
        let (settings, _, _) = self
            .directory
            .primary(&shard, &self.shard_name(&shard), None)
            .await
            .map_err(|e| e.message)?;
        let mut up = Upstream::connect(&settings, LoginParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let caps = up.session.capabilities;
        let t = quote_ident(table);
        run(&mut up, caps, "BEGIN".into()).await?;
        let row = run(
            &mut up,
            caps,
            format!("SELECT next_id, cache FROM {t} WHERE id = 0 FOR UPDATE"),
        )
        .await?;
        let (next, block) = match row {
            ShardResult::Rows { rows, .. } => {
                let cell = |r: &Row, i: usize| -> Option<i64> {
                    std::str::from_utf8(r.get(i)?.as_deref()?)
                        .ok()?
                        .parse()
                        .ok()
                };
                match rows.first() {
                    Some(r) => (cell(r, 0).unwrap_or(1), cell(r, 1).unwrap_or(1).max(1)),
                    None => return Err(format!("sequence table {key} has no row with id 0")),
                }
            }
            _ => return Err(format!("sequence table {key} returned no rows")),
        };
        let reserve = block.max(count);
        run(
            &mut up,
            caps,
            format!("UPDATE {t} SET next_id = {} WHERE id = 0", next + reserve),
        )
        .await?;
        run(&mut up, caps, "COMMIT".into()).await?;
        up.quit().await;
        cache.insert(key, (next + count, next + reserve));
        Ok(next)
    }
}

/// Runs one statement of the sequence reservation; an ERR is a failure.
async fn run(up: &mut Upstream, caps: u32, sql: String) -> Result<ShardResult, String> {
    match query(up, sql.as_bytes(), caps, 10).await {
        Ok(ShardResult::Err(e)) => Err(format!("{}: {}", sql, e.message)),
        Ok(r) => Ok(r),
        Err(e) => Err(e.to_string()),
    }
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Sends one `COM_QUERY` on `up`.
pub async fn send_query(up: &mut Upstream, sql: &[u8]) -> std::io::Result<()> {
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(Command::Query as u8);
    payload.extend_from_slice(sql);
    let mut out = Vec::with_capacity(payload.len() + 4);
    let mut seq = 0;
    write_packet(&mut out, &mut seq, &payload);
    upstream::write_flush(&mut up.stream, &out).await
}

/// Sends `sql` and reads the whole answer.
pub async fn query(
    up: &mut Upstream,
    sql: &[u8],
    caps: u32,
    max_rows: usize,
) -> Result<ShardResult, ShardError> {
    send_query(up, sql).await?;
    read_result(up, caps, max_rows).await
}

/// Reads one whole text-protocol answer from `up`: OK, ERR or a result set of at most
/// `max_rows` rows (beyond, the rest is drained and [`ShardError::TooManyRows`] returned,
/// leaving the connection usable). Further results of a multi-result answer are drained.
pub async fn read_result(
    up: &mut Upstream,
    caps: u32,
    max_rows: usize,
) -> Result<ShardResult, ShardError> {
    let mut assembler = PacketAssembler::new(up.settings.max_packet_size.max(1 << 24));
    let mut decoder = ResultSetDecoder::new(caps, RowFormat::Text);
    let mut result: Option<ShardResult> = None;
    let mut rows: Vec<Row> = Vec::new();
    let mut too_many = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let packet = match assembler
            .next_packet()
            .map_err(|e| ShardError::Protocol(e.to_string()))?
        {
            Some(p) => p,
            None => {
                let n = up.stream.read(&mut buf).await?;
                if n == 0 {
                    return Err(ShardError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                assembler.extend(&buf[..n]);
                continue;
            }
        };
        let event = decoder
            .feed(&packet.payload)
            .map_err(|e| ShardError::Protocol(e.to_string()))?;
        let more = match event {
            None | Some(Event::Columns(_)) => continue,
            Some(Event::Row(payload)) => {
                if rows.len() >= max_rows {
                    too_many = true;
                    continue;
                }
                let cells = decode_text_row(payload, decoder.columns().len())
                    .map_err(|e| ShardError::Protocol(e.to_string()))?;
                rows.push(cells.into_iter().map(|c| c.map(<[u8]>::to_vec)).collect());
                continue;
            }
            Some(Event::Ok(ok)) => {
                let more = ok.status
                    & shardcar_filter::protocol::constants::status::MORE_RESULTS_EXISTS
                    != 0;
                result.get_or_insert(ShardResult::Ok(ok));
                more
            }
            Some(Event::Error(e)) => {
                result.get_or_insert(ShardResult::Err(e));
                false
            }
            Some(Event::LocalInfile(_)) => {
                return Err(ShardError::Protocol(
                    "LOCAL INFILE in a routed statement".into(),
                ))
            }
            Some(Event::Done {
                warnings,
                more_results,
                ..
            }) => {
                let columns = decoder.columns().clone();
                result.get_or_insert(ShardResult::Rows {
                    columns,
                    rows: std::mem::take(&mut rows),
                    warnings,
                });
                more_results
            }
        };
        if !more {
            if too_many {
                return Err(ShardError::TooManyRows(max_rows));
            }
            return result.ok_or_else(|| ShardError::Protocol("empty response".into()));
        }
        decoder.reset();
    }
}

impl From<ConnectError> for ShardError {
    fn from(e: ConnectError) -> Self {
        ShardError::Protocol(e.to_string())
    }
}
