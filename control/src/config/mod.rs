//! Configuration streaming: the control service reads the topology ([`Hub`]) and
//! serves each connected sidecar the part it needs over gRPC ([`ConfigService`]),
//! versioned, as a snapshot and then deltas, tracking every stream's ACKs and NACKs
//! ([`Streams`]).

pub mod hub;
pub mod service;
pub mod streams;

use std::net::SocketAddr;
use std::sync::Arc;

use shardcar_config_api::pb::config_discovery_server::ConfigDiscoveryServer;
use shardcar_topo::Topology;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

pub use hub::{Hub, Scope, Source, SourceStatus, SourceTopology};
pub use service::ConfigService;
pub use streams::{StreamStatus, Streams};

/// Follows `topology` and serves streams on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    topology: Topology,
    service: ConfigService,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    serve_sources(listener, vec![Source::local(topology)], service, shutdown).await
}

/// Follows every cluster of `sources` (federated into one view) and serves streams on
/// `listener` until `shutdown`.
pub async fn serve_sources(
    listener: TcpListener,
    sources: Vec<Source>,
    service: ConfigService,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let address: Option<SocketAddr> = listener.local_addr().ok();
    info!(?address, instance = %service.instance, "configuration streams listening");
    let hub = service.hub.clone();
    let follow = shutdown.clone();
    tokio::spawn(async move { hub.run_sources(sources, follow).await });
    let mut stop = shutdown;
    tonic::transport::Server::builder()
        // Generous: a sidecar busy decoding a large snapshot answers pings late.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .add_service(ConfigDiscoveryServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

/// A service over a new hub, with its streams counted in `metrics`.
pub fn service(metrics: Arc<crate::ControlMetrics>, instance: String) -> ConfigService {
    service_with(Hub::default(), metrics, instance)
}

/// A service over `hub`.
pub fn service_with(
    hub: Hub,
    metrics: Arc<crate::ControlMetrics>,
    instance: String,
) -> ConfigService {
    ConfigService {
        hub: Arc::new(hub.with_metrics(metrics.clone())),
        streams: Arc::new(Streams::new(metrics)),
        instance,
        snapshots: Arc::new(tokio::sync::Semaphore::new(service::SNAPSHOTS_IN_FLIGHT)),
    }
}
