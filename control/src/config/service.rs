//! The gRPC service `shardcar.config.v1.ConfigDiscovery`: each stream starts with the
//! sidecar's Hello, then receives its scope's view as a snapshot and every later change
//! as a delta, and answers each with an Ack or a Nack.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use shardcar_config_api::pb::{self, config_discovery_server, sidecar_message::Message};
use shardcar_config_api::View;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::hub::{Hub, Published, Scope};
use super::streams::{StreamHandle, Streams};

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Snapshots being built and handed to the transport at once. A snapshot of a large
/// topology is megabytes; when thousands of sidecars reconnect together (a control
/// restart), this bounds the memory they take while deltas keep flowing.
pub const SNAPSHOTS_IN_FLIGHT: usize = 32;

/// Serves configuration streams from a [`Hub`].
#[derive(Debug, Clone)]
pub struct ConfigService {
    pub hub: Arc<Hub>,
    pub streams: Arc<Streams>,
    /// Named in every update (the sidecars show it on their status page).
    pub instance: String,
    /// Permits to build and hand over a snapshot ([`SNAPSHOTS_IN_FLIGHT`]).
    pub snapshots: Arc<tokio::sync::Semaphore>,
}

type Updates = Pin<Box<dyn Stream<Item = Result<pb::ConfigUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl config_discovery_server::ConfigDiscovery for ConfigService {
    type StreamStream = Updates;

    async fn stream(
        &self,
        request: Request<Streaming<pb::SidecarMessage>>,
    ) -> Result<Response<Updates>, Status> {
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::SidecarMessage {
                message: Some(Message::Hello(hello)),
            }))) => hello,
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
            Ok(_) => {
                return Err(Status::invalid_argument(
                    "the first message of a stream must be a Hello",
                ))
            }
        };
        let identity = hello.identity.clone().unwrap_or_default();
        let scope = Scope::of(&identity).map_err(Status::invalid_argument)?;
        let handle = self.streams.open(&identity, peer);
        info!(
            ?peer,
            pod = %identity.pod,
            cell = %identity.cell,
            ?scope,
            last_version = hello.last_version,
            "configuration stream opened"
        );
        // One update at a time: the next waits until the transport took this one.
        let (tx, rx) = mpsc::channel(1);
        let stream = OneStream {
            hub: self.hub.clone(),
            snapshots: self.snapshots.clone(),
            instance: self.instance.clone(),
            handle,
            held_version: hello.last_version,
        };
        tokio::spawn(stream.run(scope, inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The next update of a stream; a snapshot is built only once its permit is held.
enum Next {
    Delta(Box<pb::ConfigUpdate>),
    Snapshot,
}

/// One sidecar's stream.
struct OneStream {
    hub: Arc<Hub>,
    snapshots: Arc<tokio::sync::Semaphore>,
    instance: String,
    handle: StreamHandle,
    /// The version the sidecar said it holds (Hello).
    held_version: u64,
}

impl OneStream {
    async fn run(
        self,
        scope: Scope,
        mut inbound: Streaming<pb::SidecarMessage>,
        tx: mpsc::Sender<Result<pb::ConfigUpdate, Status>>,
    ) {
        tokio::select! {
            _ = self.hub.loaded() => {}
            _ = tx.closed() => return,
        }
        let mut views: watch::Receiver<Arc<Published>> = self.hub.subscribe(&scope);
        // What the sidecar holds as this stream knows it: deltas apply on it.
        let mut sent: Option<Arc<View>> = None;
        loop {
            let published = views.borrow_and_update().clone();
            if let Some(next) = self.next_update(&published, sent.as_deref()) {
                let (mut update, permit) = match next {
                    Next::Delta(delta) => (*delta, None),
                    Next::Snapshot => match self.snapshots.clone().acquire_owned().await {
                        Ok(permit) => (published.view.snapshot(), Some(permit)),
                        Err(_) => break,
                    },
                };
                update.control_instance.clone_from(&self.instance);
                self.handle.sent(&update);
                debug!(
                    version = update.version,
                    full = update.full,
                    "sending configuration"
                );
                if tx.send(Ok(update)).await.is_err() {
                    break;
                }
                // Room again in the channel: the transport has taken the snapshot.
                if permit.is_some() && tx.reserve().await.is_err() {
                    break;
                }
                drop(permit);
                sent = Some(published.view.clone());
            } else if sent.is_none() && published.view.version == self.held_version {
                // It holds exactly this version (versions are store revisions).
                sent = Some(published.view.clone());
            }
            tokio::select! {
                changed = views.changed() => if changed.is_err() { break },
                message = inbound.message() => match message {
                    Ok(Some(m)) => self.answer(m),
                    Ok(None) => break,
                    Err(status) => {
                        debug!(%status, "configuration stream ended");
                        break;
                    }
                },
            }
        }
        info!("configuration stream closed");
    }

    /// What brings the sidecar to `published`: the shared delta when it holds the
    /// previous publication, else a delta computed from what it holds, else a snapshot;
    /// nothing when it is there already, or holds something newer.
    fn next_update(&self, published: &Published, sent: Option<&View>) -> Option<Next> {
        let view = &published.view;
        match sent {
            Some(held) if held.version == view.version => None,
            Some(held) => Some(Next::Delta(Box::new(match &published.delta {
                Some(delta) if delta.base_version == held.version => delta.clone(),
                _ => view.delta(held),
            }))),
            None if view.version <= self.held_version => None,
            None => Some(Next::Snapshot),
        }
    }

    fn answer(&self, message: pb::SidecarMessage) {
        match message.message {
            Some(Message::Ack(ack)) => self.handle.acked(ack.version),
            Some(Message::Nack(nack)) => {
                warn!(version = nack.version, error = %nack.error, "a sidecar refused a configuration version");
                self.handle.nacked(nack.version, nack.error);
            }
            Some(Message::Hello(_)) | None => {
                debug!("ignoring a stray message on a configuration stream");
            }
        }
    }
}
