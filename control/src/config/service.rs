//! The gRPC service `shardcar.config.v1.ConfigDiscovery`: each stream starts with the
//! sidecar's Hello, then receives its scope's view as a snapshot and every later change
//! as a delta, and answers each with an Ack or a Nack.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use shardcar_config_api::pb::{self, config_discovery_server, sidecar_message::Message};
use shardcar_config_api::View;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::hub::{Hub, Published, Scope};
use super::streams::{StreamHandle, Streams};

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Snapshots sent and not yet acknowledged, at most. A snapshot of a large topology is
/// megabytes, built, encoded and buffered per stream; when thousands of sidecars connect
/// together (a control restart), this bounds the memory they take while deltas keep
/// flowing to the streams that have theirs.
pub const SNAPSHOTS_IN_FLIGHT: usize = 32;

/// How long a snapshot's permit waits for the sidecar's ACK before it is given back.
const SNAPSHOT_ACK_WAIT: Duration = Duration::from_secs(10);

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
        let (tx, rx) = mpsc::channel(4);
        let stream = OneStream {
            hub: self.hub.clone(),
            snapshots: self.snapshots.clone(),
            instance: self.instance.clone(),
            handle,
            // With several sources a version does not name one content: start afresh.
            held_version: if self.hub.resumable() {
                hello.last_version
            } else {
                0
            },
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
        // The snapshot awaiting its ACK: its version, its permit and until when.
        let mut in_flight: Option<(u64, tokio::sync::OwnedSemaphorePermit, Instant)> = None;
        loop {
            let published = views.borrow_and_update().clone();
            if let Some(next) = self.next_update(&published, sent.as_deref()) {
                // In parts: the transport keeps a part's buffer per stream, not a
                // snapshot's.
                let parts: Arc<[pb::ConfigUpdate]> = match next {
                    Next::Delta(delta) => {
                        shardcar_config_api::split(*delta, shardcar_config_api::PART_BYTES).into()
                    }
                    Next::Snapshot => {
                        let permit = match self.snapshots.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => break,
                        };
                        let deadline = Instant::now() + SNAPSHOT_ACK_WAIT;
                        in_flight = Some((published.view.version, permit, deadline));
                        published.snapshot_parts()
                    }
                };
                let mut closed = false;
                for part in parts.iter() {
                    let mut part = part.clone();
                    part.control_instance.clone_from(&self.instance);
                    if !part.more {
                        self.handle.sent(&part);
                        debug!(
                            version = part.version,
                            full = part.full,
                            "sending configuration"
                        );
                    }
                    if tx.send(Ok(part)).await.is_err() {
                        closed = true;
                        break;
                    }
                }
                if closed {
                    break;
                }
                sent = Some(published.view.clone());
            } else if sent.is_none() && published.view.version == self.held_version {
                // It holds exactly this version (versions are store revisions).
                sent = Some(published.view.clone());
            }
            let deadline = in_flight.as_ref().map(|f| f.2);
            let expiry = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = views.changed() => if changed.is_err() { break },
                message = inbound.message() => match message {
                    Ok(Some(m)) => {
                        let answered = self.answer(m);
                        if answered.is_some_and(|v| in_flight.as_ref().is_some_and(|f| v >= f.0)) {
                            in_flight = None;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(%status, "configuration stream ended");
                        break;
                    }
                },
                _ = expiry => {
                    debug!("no ACK of the snapshot in time; its permit goes back");
                    in_flight = None;
                }
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
            None if self.held_version > 0 && view.version <= self.held_version => None,
            None => Some(Next::Snapshot),
        }
    }

    /// Records an ACK or NACK; returns the version it answers.
    fn answer(&self, message: pb::SidecarMessage) -> Option<u64> {
        match message.message {
            Some(Message::Ack(ack)) => {
                self.handle.acked(ack.version);
                Some(ack.version)
            }
            Some(Message::Nack(nack)) => {
                warn!(version = nack.version, error = %nack.error, "a sidecar refused a configuration version");
                let version = nack.version;
                self.handle.nacked(version, nack.error);
                Some(version)
            }
            Some(Message::Hello(_)) | None => {
                debug!("ignoring a stray message on a configuration stream");
                None
            }
        }
    }
}
