//! The application's socket: reading commands (packet-assembled, bounded), writing
//! replies, and noticing when the application goes away while a statement runs.

use super::upstream;
use crate::metrics::{Direction, ErrorOrigin, Metrics};
use crate::net::Stream;
use shardcar_filter::protocol::packet::{
    peek_header, write_packet, FrameError, Packet, PacketAssembler, HEADER_LEN,
};
use shardcar_filter::protocol::ErrPacket;
use std::net::SocketAddr;
use tokio::io::AsyncReadExt;

/// Largest first packet accepted, and the packet limit until the client has logged in
/// (a HandshakeResponse with 64 KiB of attributes fits): an anonymous peer must not make
/// the sidecar buffer a whole max-size packet.
pub(super) const FIRST_PACKET_MAX: usize = 128 * 1024;
/// Room made in a client's read buffer before each read.
const READ_RESERVE: usize = 4096;
/// Client bytes buffered while a response is relayed (pipelined commands); beyond this
/// the client is not read until the response is done.
const MAX_PIPELINED: usize = 1024 * 1024;

/// The application side of a connection.
pub(super) struct Client {
    pub(super) stream: Stream,
    pub(super) assembler: PacketAssembler,
    pub(super) peer: SocketAddr,
    /// The identity of a verified TLS client certificate (mTLS).
    pub(super) certificate: Option<String>,
}

impl Client {
    /// A freshly accepted connection, with the pre-login packet limit.
    pub(super) fn new(stream: Stream, peer: SocketAddr) -> Self {
        Self {
            stream,
            assembler: PacketAssembler::new(FIRST_PACKET_MAX),
            peer,
            certificate: None,
        }
    }

    /// Reads until a whole packet is buffered. `Ok(None)` when the client closed.
    pub(super) async fn read_packet(
        &mut self,
        metrics: &Metrics,
    ) -> std::io::Result<Option<Result<Packet, FrameError>>> {
        loop {
            match self.assembler.next_packet() {
                Ok(Some(p)) => return Ok(Some(Ok(p))),
                Ok(None) => {}
                Err(e) => return Ok(Some(Err(e))),
            }
            let n = self
                .stream
                .read_buf(self.assembler.read_buffer(READ_RESERVE))
                .await?;
            if n == 0 {
                return Ok(None);
            }
            metrics.bytes(Direction::FromClient, n as u64);
        }
    }

    /// Reads exactly one physical packet, never more: the first packet of a connection
    /// may be an SSLRequest, and the TLS ClientHello that follows it in the same segment
    /// must stay in the socket for the TLS acceptor.
    pub(super) async fn read_first_packet(
        &mut self,
        metrics: &Metrics,
    ) -> std::io::Result<Option<Result<Packet, FrameError>>> {
        let mut header = [0u8; HEADER_LEN];
        match self.stream.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let Some(h) = peek_header(&header) else {
            return Ok(None);
        };
        if h.continues() || h.len > FIRST_PACKET_MAX {
            return Ok(Some(Err(FrameError::TooLarge {
                limit: FIRST_PACKET_MAX,
            })));
        }
        let mut payload = vec![0u8; h.len];
        match self.stream.read_exact(&mut payload).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        metrics.bytes(Direction::FromClient, (HEADER_LEN + h.len) as u64);
        Ok(Some(Ok(Packet {
            seq: h.seq,
            last_seq: h.seq,
            payload,
        })))
    }

    pub(super) async fn send(&mut self, bytes: &[u8], metrics: &Metrics) -> std::io::Result<()> {
        metrics.bytes(Direction::ToClient, bytes.len() as u64);
        upstream::write_flush(&mut self.stream, bytes).await
    }

    /// Sends an ERR packet with sequence id `seq`.
    pub(super) async fn send_error(
        &mut self,
        seq: u8,
        err: &ErrPacket,
        metrics: &Metrics,
    ) -> std::io::Result<()> {
        metrics.error(err.code, ErrorOrigin::Sidecar);
        let mut out = Vec::new();
        let mut seq = seq;
        write_packet(&mut out, &mut seq, &err.encode());
        self.send(&out, metrics).await
    }
}

/// Completes when the client closes its connection (or errors). Bytes it sends in the
/// meantime (pipelined commands) are kept for later, up to a bound.
pub(super) async fn watch_client(client: &mut Client) -> std::io::Result<()> {
    loop {
        if client.assembler.buffered().len() >= MAX_PIPELINED {
            return std::future::pending().await;
        }
        let n = client
            .stream
            .read_buf(client.assembler.read_buffer(READ_RESERVE))
            .await?;
        if n == 0 {
            return Ok(());
        }
    }
}
