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

pub use hub::{Hub, Scope};
pub use service::ConfigService;
pub use streams::{StreamStatus, Streams};

/// Follows `topology` and serves streams on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    topology: Topology,
    service: ConfigService,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let address: Option<SocketAddr> = listener.local_addr().ok();
    info!(?address, instance = %service.instance, "configuration streams listening");
    let hub = service.hub.clone();
    let follow = shutdown.clone();
    tokio::spawn(async move { hub.run(topology, follow).await });
    let mut stop = shutdown;
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
        .add_service(ConfigDiscoveryServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

/// A service over a new hub, with its streams counted in `metrics`.
pub fn service(metrics: Arc<crate::ControlMetrics>, instance: String) -> ConfigService {
    ConfigService {
        hub: Arc::new(Hub::default()),
        streams: Arc::new(Streams::new(metrics)),
        instance,
        snapshots: Arc::new(tokio::sync::Semaphore::new(service::SNAPSHOTS_IN_FLIGHT)),
    }
}
