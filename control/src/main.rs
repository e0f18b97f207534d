//! `shardcar-control`: the control service's command line.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shardcar_control::{
    api, config, orchestrator, planned_reparent, Api, ControlMetrics, OrchestratorOptions,
    ReparentOptions,
};
use shardcar_topo::{EtcdStore, Layout, Topology};

/// The Shardcar control service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the topology is.
#[derive(Debug, clap::Args)]
struct TopoArgs {
    /// etcd client URLs of the topology.
    #[arg(
        long = "etcd",
        value_name = "URL",
        required = true,
        env = "SHARDCAR_ETCD",
        value_delimiter = ','
    )]
    etcd: Vec<String>,
    /// Key prefix of the topology.
    #[arg(long, default_value = "/shardcar")]
    root: String,
    /// A file holding the bearer token the db sidecars require for tablet actions
    /// (their `admin_token_file`).
    #[arg(long, env = "SHARDCAR_ACTION_TOKEN_FILE")]
    action_token_file: Option<std::path::PathBuf>,
}

impl TopoArgs {
    async fn connect(&self) -> anyhow::Result<Topology> {
        let store = EtcdStore::connect(&self.etcd).await?;
        Ok(Topology::new(Arc::new(store), Layout::new(&self.root)))
    }

    /// The token from `--action-token-file`, trimmed.
    fn action_token(&self) -> anyhow::Result<Option<Arc<str>>> {
        let Some(path) = &self.action_token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("reading --action-token-file {}", path.display()))?;
        let token = token.trim();
        if token.is_empty() {
            anyhow::bail!("--action-token-file {} is empty", path.display());
        }
        Ok(Some(Arc::from(token)))
    }
}

/// What an instance serves besides acting on shards.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Serve the control API here: /metrics, /healthz, /debug/shards, /debug/streams
    /// and POST /reparent?keyspace=K&shard=S[&to=ALIAS].
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Serve the sidecars' configuration streams (gRPC `shardcar.config.v1`) here.
    /// Every instance serves streams; only the orchestrator's leader acts on shards.
    #[arg(long, value_name = "ADDR")]
    config_listen: Option<std::net::SocketAddr>,
    /// This instance's name in the updates it sends (default: the host name).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// The name, region and cloud of the cluster whose etcd is `--etcd` (labels on its
    /// tablets when clusters are federated).
    #[arg(long, default_value = "")]
    cluster_name: String,
    #[arg(long, default_value = "")]
    region: String,
    #[arg(long, default_value = "")]
    cloud: String,
    /// Another cluster whose tablets the configuration streams merge in (repeat for
    /// each): `name=east,region=us-east1,cloud=aws,etcd=http://10.1.0.5:2379+http://10.1.0.6:2379`.
    #[arg(long = "remote-cluster", value_name = "SPEC", value_parser = parse_remote)]
    remote_clusters: Vec<RemoteCluster>,
    /// How long an unreachable cluster's tablets stay, marked stale.
    #[arg(long, default_value_t = 300)]
    stale_grace_s: u64,
    /// Reconcile the shardcar.io custom resources of the Kubernetes cluster this runs in
    /// (in-cluster credentials, or $KUBECONFIG): Keyspaces into the topology, Reparents
    /// run once each.
    #[arg(long)]
    kube: bool,
}

/// `--remote-cluster`.
#[derive(Debug, Clone)]
struct RemoteCluster {
    name: String,
    region: String,
    cloud: String,
    etcd: Vec<String>,
    root: String,
}

fn parse_remote(spec: &str) -> Result<RemoteCluster, String> {
    let mut c = RemoteCluster {
        name: String::new(),
        region: String::new(),
        cloud: String::new(),
        etcd: Vec::new(),
        root: "/shardcar".to_string(),
    };
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected key=value"))?;
        match key {
            "name" => c.name = value.to_string(),
            "region" => c.region = value.to_string(),
            "cloud" => c.cloud = value.to_string(),
            "root" => c.root = value.to_string(),
            "etcd" => c.etcd = value.split('+').map(str::to_string).collect(),
            _ => {
                return Err(format!(
                    "{key:?}: expected name, region, cloud, etcd or root"
                ))
            }
        }
    }
    if c.name.is_empty() || c.etcd.is_empty() {
        return Err("name=... and etcd=URL[+URL...] are required".into());
    }
    Ok(c)
}

impl ServeArgs {
    /// Starts the configuration streams and the API that were asked for.
    async fn start(
        self,
        topology: &Topology,
        metrics: Arc<ControlMetrics>,
        reparent: ReparentOptions,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let streams = match self.config_listen {
            None => None,
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (--config-listen)"))?;
                let instance = self.instance.unwrap_or_else(host_name);
                let mut sources = vec![config::Source {
                    cluster: self.cluster_name.clone(),
                    region: self.region.clone(),
                    cloud: self.cloud.clone(),
                    topology: config::SourceTopology::Ready(topology.clone()),
                }];
                for remote in &self.remote_clusters {
                    if sources.iter().any(|s| s.cluster == remote.name) {
                        anyhow::bail!("--remote-cluster {}: the name is taken", remote.name);
                    }
                    sources.push(config::Source {
                        cluster: remote.name.clone(),
                        region: remote.region.clone(),
                        cloud: remote.cloud.clone(),
                        topology: config::SourceTopology::Etcd {
                            endpoints: remote.etcd.clone(),
                            root: remote.root.clone(),
                        },
                    });
                }
                let hub = config::Hub::new(Duration::from_secs(self.stale_grace_s));
                let service = config::service_with(hub, metrics.clone(), instance);
                let served = service.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if let Err(e) =
                        config::serve_sources(listener, sources, service, shutdown).await
                    {
                        tracing::error!(error = %e, "configuration streams stopped");
                    }
                });
                Some(served)
            }
        };
        if self.kube {
            let client = kube::Client::try_default()
                .await
                .context("--kube: no Kubernetes credentials (in-cluster or $KUBECONFIG)")?;
            let ctx = shardcar_control::crd::reconcile::Context {
                client,
                topology: topology.clone(),
                reparent: reparent.clone(),
                metrics: Some(metrics.clone()),
            };
            tokio::spawn(shardcar_control::crd::reconcile::run(
                ctx.clone(),
                shutdown.clone(),
            ));
            tokio::spawn(shardcar_control::crd::policy::run(
                ctx.clone(),
                shutdown.clone(),
            ));
            tokio::spawn(shardcar_control::crd::reparent::run(ctx, shutdown.clone()));
        }
        if let Some(address) = self.listen {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (--listen)"))?;
            let api = Api {
                topology: topology.clone(),
                metrics,
                reparent,
                config: streams,
            };
            tokio::spawn(api::serve(listener, api, shutdown.clone()));
        }
        Ok(())
    }
}

/// A shutdown signal that turns true on SIGINT/SIGTERM.
fn shutdown_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        // Kubernetes stops a pod with SIGTERM; a terminal with SIGINT.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        let _ = stop.send(true);
    });
    shutdown
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the failover orchestrator (leader-elected: run several, one acts) until
    /// SIGINT/SIGTERM.
    Orchestrate {
        #[command(flatten)]
        topo: TopoArgs,
        /// Time between checks of every shard.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// Rebuild tablets with errant transactions (replication error 1236) from their
        /// primary, discarding those transactions; without it they are only reported.
        #[arg(long)]
        rebuild_errant: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Serve the configuration streams and the control API without the orchestrator
    /// (no action on shards) until SIGINT/SIGTERM.
    Serve {
        #[command(flatten)]
        topo: TopoArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Serve the sidecar-injection admission webhook over HTTPS until SIGINT/SIGTERM:
    /// POST /inject[?default=app|db], GET /healthz.
    Webhook {
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9443")]
        listen: std::net::SocketAddr,
        /// PEM certificate chain the API server trusts (cert-manager's, say).
        #[arg(long, value_name = "FILE")]
        cert: std::path::PathBuf,
        #[arg(long, value_name = "FILE")]
        key: std::path::PathBuf,
        /// The sidecar image injected pods get (annotation `shardcar.io/image` overrides).
        #[arg(long, env = "SHARDCAR_IMAGE")]
        image: Option<String>,
    },
    /// Write a Vitess SrvVSchema (`{"keyspaces": {...}, "routing_rules": {...}}`) into
    /// the topology, as `vtctl ApplyVSchema` does: every keyspace named gets its VSchema,
    /// the routing rules (when given) replace the current ones. The configuration
    /// streams carry it to the app sidecars, which refuse (NACK) one that does not build.
    ApplyVschema {
        #[command(flatten)]
        topo: TopoArgs,
        #[arg(long, value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Print the CustomResourceDefinitions of group shardcar.io (what manifests/crds/
    /// holds: `shardcar-control crds > manifests/crds/shardcar.io.yaml`).
    Crds,
    /// Move a shard's primary to a replica (planned reparent); prints a JSON report.
    Reparent {
        #[command(flatten)]
        topo: TopoArgs,
        #[arg(long)]
        keyspace: String,
        #[arg(long)]
        shard: String,
        /// The replica to promote (`cell-uid`); default: the healthiest replica.
        #[arg(long, value_name = "ALIAS")]
        to: Option<String>,
        /// How long the candidate may take to catch up with the old primary.
        #[arg(long, default_value_t = 30_000)]
        wait_timeout_ms: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None => {
            println!("shardcar-control {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(Command::Orchestrate {
            topo,
            interval_ms,
            rebuild_errant,
            serve,
        }) => {
            let topology = topo.connect().await?;
            let shutdown = shutdown_on_signal();
            let metrics = Arc::new(ControlMetrics::default());
            let options = OrchestratorOptions {
                interval: Duration::from_millis(interval_ms.max(50)),
                rebuild_errant,
                reparent: ReparentOptions {
                    action_token: topo.action_token()?,
                    ..OrchestratorOptions::default().reparent
                },
                metrics: Some(metrics.clone()),
                ..OrchestratorOptions::default()
            };
            serve
                .start(&topology, metrics, options.reparent.clone(), &shutdown)
                .await?;
            orchestrator::run(topology, options, shutdown, |report, detected| {
                tracing::info!(
                    detected_ms = detected.as_millis() as u64,
                    ?report,
                    "failover done"
                );
            })
            .await;
            Ok(())
        }
        Some(Command::Serve { topo, serve }) => {
            let topology = topo.connect().await?;
            let mut shutdown = shutdown_on_signal();
            let reparent = ReparentOptions {
                action_token: topo.action_token()?,
                ..ReparentOptions::default()
            };
            let metrics = Arc::new(ControlMetrics::default());
            serve.start(&topology, metrics, reparent, &shutdown).await?;
            let _ = shutdown.wait_for(|s| *s).await;
            Ok(())
        }
        Some(Command::Webhook {
            listen,
            cert,
            key,
            image,
        }) => {
            let tls = shardcar_control::webhook::tls_acceptor(&cert, &key)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
            let shutdown = shutdown_on_signal();
            let defaults = shardcar_control::inject::InjectConfig::default();
            let config = shardcar_control::inject::InjectConfig {
                image: image.unwrap_or(defaults.image.clone()),
                ..defaults
            };
            shardcar_control::webhook::serve(listener, tls, config, shutdown).await?;
            Ok(())
        }
        Some(Command::Crds) => {
            print!("{}", shardcar_control::crd::crds_yaml()?);
            Ok(())
        }
        Some(Command::ApplyVschema { topo, file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading --file {}", file.display()))?;
            let srv: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("--file {}: not JSON", file.display()))?;
            let topology = topo.connect().await?;
            let keyspaces = topology.apply_srv_vschema(&srv).await?;
            println!("VSchema applied to {}", keyspaces.join(", "));
            Ok(())
        }
        Some(Command::Reparent {
            topo,
            keyspace,
            shard,
            to,
            wait_timeout_ms,
        }) => {
            let topology = topo.connect().await?;
            let options = ReparentOptions {
                to,
                wait_timeout: Duration::from_millis(wait_timeout_ms),
                action_token: topo.action_token()?,
                ..ReparentOptions::default()
            };
            let report = planned_reparent(&topology, &keyspace, &shard, &options).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

/// This machine's name, for `--instance`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "shardcar-control".to_string())
}
