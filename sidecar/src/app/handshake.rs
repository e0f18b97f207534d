//! The connection phase of an application connection, driven over its socket: the
//! greeting mirrored from mysqld, the optional TLS upgrade and authentication, all decided
//! by the filter's [`ServerHandshake`].

use super::client::Client;
use super::Shared;
use crate::metrics::ErrorOrigin;
use crate::net::Stream;
use shardcar_filter::protocol::capabilities as caps;
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::packet::{peek_header, write_packet, FrameError};
use shardcar_filter::protocol::server::{
    error_before_greeting, Authenticated, ServerHandshake, ServerHandshakeConfig, Step,
};
use shardcar_filter::protocol::ErrPacket;
use tracing::{debug, info};

/// A client that has authenticated; the OK that ends its login is not sent yet.
pub(super) struct LoggedIn {
    pub(super) client: Client,
    pub(super) auth: Authenticated,
    pub(super) scramble: [u8; 20],
    /// The bytes that complete the login (AuthMoreData if any, then the OK).
    pub(super) ok: Vec<u8>,
    /// The connection id the greeting announced.
    pub(super) connection_id: u32,
}

/// Runs the connection phase; on success the caller sends [`LoggedIn::ok`] (or an error
/// in its place via [`replace_final_packet`]).
pub(super) async fn accept(mut client: Client, shared: &Shared) -> Result<LoggedIn, &'static str> {
    let metrics = &shared.metrics;
    let profile = match shared.profile().await {
        Ok(p) => p,
        Err(e) => {
            let err = e.to_err_packet();
            metrics.error(err.code, ErrorOrigin::Sidecar);
            let bytes = error_before_greeting(e.code(), err.message);
            let _ = client.send(&bytes, metrics).await;
            metrics.handshake_failed("upstream unavailable");
            return Err("upstream unavailable");
        }
    };
    let mut offered = caps::SUPPORTED & profile.capabilities;
    if shared.config.local_infile {
        offered |= caps::LOCAL_FILES & profile.capabilities;
    }
    let connection_id = shared.next_connection_id();
    let config = ServerHandshakeConfig {
        server_version: profile.server_version.clone(),
        connection_id,
        capabilities: offered,
        collation: profile.collation,
        default_plugin: shared.config.auth.default_plugin.plugin(),
        tls_available: shared.tls.is_some(),
        tls_required: shared.config.tls.as_ref().is_some_and(|t| t.required),
        client_host: client.peer.ip().to_string(),
    };
    let mut scramble = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut scramble);
    let mut hs = ServerHandshake::new(config, scramble);
    let greeting = hs.greeting();
    client
        .send(&greeting, metrics)
        .await
        .map_err(|_| "client gone")?;
    let mut first = true;
    loop {
        let read = if first {
            client.read_first_packet(metrics).await
        } else {
            client.read_packet(metrics).await
        };
        first = false;
        let packet = match read {
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(e))) => {
                metrics.handshake_failed("malformed");
                let step = match e {
                    FrameError::TooLarge { .. } => {
                        hs.refuse(error_codes::ER_NET_PACKET_TOO_LARGE, e.to_string())
                    }
                    FrameError::OutOfOrder { .. } => {
                        hs.refuse(error_codes::ER_NET_PACKETS_OUT_OF_ORDER, e.to_string())
                    }
                };
                if let Step::Fail(bytes, err) = step {
                    metrics.error(err.code, ErrorOrigin::Sidecar);
                    let _ = client.send(&bytes, metrics).await;
                }
                return Err("malformed handshake packet");
            }
            Ok(None) | Err(_) => {
                metrics.handshake_failed("client gone");
                return Err("client gone");
            }
        };
        let step = hs.handle_packet(&packet, &mut shared.auth.context());
        match step {
            Step::Send(bytes) => client
                .send(&bytes, metrics)
                .await
                .map_err(|_| "client gone")?,
            Step::UpgradeTls => {
                let Some(acceptor) = shared.tls.clone() else {
                    return Err("TLS not configured");
                };
                if !client.assembler.buffered().is_empty() {
                    metrics.handshake_failed("data before TLS");
                    return Err("data before TLS handshake");
                }
                let tcp = match std::mem::replace(&mut client.stream, Stream::Unix(dummy_unix()?))
                    .into_tcp()
                {
                    Ok(tcp) => tcp,
                    Err(_) => return Err("TLS requested twice"),
                };
                match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        client.certificate = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| crate::tls::certificate_identity(c));
                        if let Some(id) = &client.certificate {
                            debug!(peer = %client.peer, identity = %id, "client certificate verified");
                        }
                        client.stream = Stream::ServerTls(Box::new(tls));
                        metrics.tls_handshake("client");
                        hs.tls_established();
                    }
                    Err(e) => {
                        debug!(peer = %client.peer, error = %e, "TLS handshake failed");
                        metrics.handshake_failed("tls");
                        return Err("TLS handshake failed");
                    }
                }
            }
            Step::Fail(bytes, err) => {
                metrics.error(err.code, ErrorOrigin::Sidecar);
                metrics.handshake_failed(if err.code == error_codes::ER_ACCESS_DENIED_ERROR.code {
                    "access denied"
                } else {
                    "refused"
                });
                info!(peer = %client.peer, code = err.code, message = %err.message, "handshake refused");
                let _ = client.send(&bytes, metrics).await;
                return Err("handshake refused");
            }
            Step::Done(ok, auth) => {
                client
                    .assembler
                    .set_max_packet_size(shared.config.max_packet_size);
                debug!(peer = %client.peer, user = %auth.user, "authenticated");
                return Ok(LoggedIn {
                    client,
                    auth,
                    scramble: *hs.scramble(),
                    ok,
                    connection_id,
                });
            }
        }
    }
}

/// A placeholder stream used only while the real one is moved out for a TLS upgrade.
fn dummy_unix() -> Result<tokio::net::UnixStream, &'static str> {
    let (a, _b) = tokio::net::UnixStream::pair().map_err(|_| "out of file descriptors")?;
    Ok(a)
}

/// Replaces the last packet of a framed login reply (its OK) with `err`, keeping the
/// packets before it and its sequence id: used when the login succeeded at the sidecar but
/// the upstream refused the session (e.g. an unknown database).
pub(super) fn replace_final_packet(reply: &[u8], err: &ErrPacket) -> Vec<u8> {
    let mut at = 0;
    let mut last = (0usize, 0u8);
    while let Some(h) = peek_header(&reply[at.min(reply.len())..]) {
        last = (at, h.seq);
        at += h.wire_len();
    }
    let (start, mut seq) = last;
    let mut out = reply[..start].to_vec();
    write_packet(&mut out, &mut seq, &err.encode());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcar_filter::protocol::packet::PacketAssembler;

    #[test]
    fn replacing_the_final_ok_keeps_earlier_packets_and_the_sequence_id() {
        let mut reply = Vec::new();
        let mut seq = 2;
        write_packet(&mut reply, &mut seq, &[0x01, 0x03]); // AuthMoreData: fast auth OK
        write_packet(&mut reply, &mut seq, &[0x00, 0, 0, 2, 0, 0, 0]); // OK
        let err = ErrPacket::new(error_codes::ER_BAD_DB_ERROR, "Unknown database 'x'");
        let out = replace_final_packet(&reply, &err);
        let mut a = PacketAssembler::new(1 << 20);
        a.extend(&out);
        let first = a.next_packet().unwrap().unwrap();
        let second = a.next_packet().unwrap().unwrap();
        assert_eq!((first.seq, first.payload), (2, vec![0x01, 0x03]));
        assert_eq!(second.seq, 3);
        assert_eq!(ErrPacket::decode(&second.payload).unwrap(), err);
        assert!(a.next_packet().unwrap().is_none());
    }
}
