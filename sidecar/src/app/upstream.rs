//! Connections from the sidecar to mysqld: connect over TCP or a Unix socket, optional
//! TLS, log in with the sidecar's own credentials, and the side channel used to kill a
//! statement whose client went away.

use crate::config::Endpoint;
use crate::net::Stream;
use shardcar_filter::protocol::client::{
    ClientHandshake, ClientHandshakeConfig, ClientHandshakeError, ClientStep, Session,
};
use shardcar_filter::protocol::error_codes::{self, ErrorCode};
use shardcar_filter::protocol::packet::{write_packet, PacketAssembler};
use shardcar_filter::protocol::{Command, ErrPacket};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

/// Where and how the sidecar logs in to mysqld.
#[derive(Clone)]
pub struct UpstreamSettings {
    pub endpoint: Endpoint,
    /// The address as written in the configuration, for error messages.
    pub display: String,
    pub user: String,
    pub password: Vec<u8>,
    pub database: Option<String>,
    pub connect_timeout: Duration,
    pub tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    pub max_packet_size: usize,
}

impl std::fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("address", &self.display)
            .field("user", &self.user)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Per-connection login parameters that come from the application's session.
#[derive(Debug, Clone, Default)]
pub struct LoginParams {
    /// Capabilities to request (the application's negotiated set).
    pub capabilities: Option<u32>,
    pub collation: Option<u8>,
    pub database: Option<String>,
    pub connect_attrs: Vec<u8>,
}

/// Why the sidecar could not get a working connection to mysqld.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("Can't connect to MySQL server on '{address}' ({source})")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("Can't connect to MySQL server on '{address}' (connect timeout after {timeout:?})")]
    Timeout { address: String, timeout: Duration },
    #[error("TLS handshake with MySQL server on '{address}' failed: {source}")]
    Tls {
        address: String,
        source: std::io::Error,
    },
    #[error("login to MySQL server on '{address}' failed: {source}")]
    Handshake {
        address: String,
        source: ClientHandshakeError,
    },
    #[error("Lost connection to MySQL server at '{address}' during handshake")]
    Closed { address: String },
    #[error("MySQL server on '{address}' does not support capabilities the client negotiated ({missing:#x})")]
    Incompatible { address: String, missing: u32 },
}

impl ConnectError {
    /// The ERR packet an application gets for this failure. Errors mysqld itself
    /// reported (unknown database, too many connections) pass through unchanged; the
    /// sidecar's own login being refused is reported as a connection failure, without
    /// the sidecar's account name.
    pub fn to_err_packet(&self) -> ErrPacket {
        match self {
            ConnectError::Handshake {
                source: ClientHandshakeError::Server(err),
                ..
            } if err.code != error_codes::ER_ACCESS_DENIED_ERROR.code => err.clone(),
            ConnectError::Handshake { address, .. } => ErrPacket::new(
                self.code(),
                format!("Can't connect to MySQL server on '{address}': the server refused the sidecar's login (see the sidecar's log)"),
            ),
            _ => ErrPacket::new(self.code(), self.to_string()),
        }
    }

    /// The code sent for this failure (server-range codes only: see `error_codes`).
    pub fn code(&self) -> ErrorCode {
        match self {
            ConnectError::Closed { .. } => error_codes::ER_NET_READ_ERROR,
            ConnectError::Incompatible { .. } => error_codes::ER_NOT_SUPPORTED_YET,
            _ => error_codes::ER_CONNECT_TO_FOREIGN_DATA_SOURCE,
        }
    }
}

/// A logged-in connection to mysqld.
#[derive(Debug)]
pub struct Upstream {
    pub stream: Stream,
    pub session: Session,
    /// Where this connection goes (for the side channel that kills its statement).
    pub settings: Arc<UpstreamSettings>,
}

impl Upstream {
    /// Connects and logs in, within the configured connect timeout.
    pub async fn connect(
        settings: &Arc<UpstreamSettings>,
        params: LoginParams,
    ) -> Result<Upstream, ConnectError> {
        let timeout = settings.connect_timeout;
        match tokio::time::timeout(timeout, Self::connect_inner(settings, params)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                address: settings.display.clone(),
                timeout,
            }),
        }
    }

    async fn connect_inner(
        settings: &Arc<UpstreamSettings>,
        params: LoginParams,
    ) -> Result<Upstream, ConnectError> {
        let address = settings.display.clone();
        let io_err = |source| ConnectError::Io {
            address: address.clone(),
            source,
        };
        let mut stream = match &settings.endpoint {
            Endpoint::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str()).await.map_err(io_err)?;
                s.set_nodelay(true).map_err(io_err)?;
                Stream::Tcp(s)
            }
            Endpoint::Unix(path) => Stream::Unix(UnixStream::connect(path).await.map_err(io_err)?),
        };
        let mut config = ClientHandshakeConfig {
            user: settings.user.clone(),
            password: settings.password.clone(),
            database: params.database.or_else(|| settings.database.clone()),
            tls: settings.tls.is_some(),
            connect_attrs: params.connect_attrs,
            max_packet_size: u32::try_from(settings.max_packet_size).unwrap_or(u32::MAX),
            ..Default::default()
        };
        if let Some(c) = params.capabilities {
            config.capabilities = c;
        }
        if let Some(c) = params.collation {
            config.collation = c;
        }
        let mut hs = ClientHandshake::new(config);
        let mut assembler = PacketAssembler::new(settings.max_packet_size);
        let mut buf = vec![0u8; 4096];
        loop {
            let packet = loop {
                match assembler.next_packet() {
                    Ok(Some(p)) => break p,
                    Ok(None) => {}
                    Err(e) => {
                        return Err(ConnectError::Handshake {
                            address,
                            source: ClientHandshakeError::Malformed(e.to_string()),
                        })
                    }
                }
                let n = stream.read(&mut buf).await.map_err(io_err)?;
                if n == 0 {
                    return Err(ConnectError::Closed { address });
                }
                assembler.extend(&buf[..n]);
            };
            let step = hs
                .handle_packet(&packet)
                .map_err(|source| ConnectError::Handshake {
                    address: address.clone(),
                    source,
                })?;
            match step {
                ClientStep::Send(bytes) => {
                    write_flush(&mut stream, &bytes).await.map_err(io_err)?;
                }
                ClientStep::Wait => {}
                ClientStep::Done(session) => {
                    return Ok(Upstream {
                        stream,
                        session,
                        settings: settings.clone(),
                    })
                }
                ClientStep::SendThenUpgradeTls(bytes) => {
                    write_flush(&mut stream, &bytes).await.map_err(io_err)?;
                    let Some((connector, name)) = settings.tls.clone() else {
                        return Err(ConnectError::Closed { address });
                    };
                    let tcp = stream.into_tcp().map_err(|_| ConnectError::Tls {
                        address: address.clone(),
                        source: std::io::Error::other("TLS over a Unix socket is not supported"),
                    })?;
                    let tls =
                        connector
                            .connect(name, tcp)
                            .await
                            .map_err(|source| ConnectError::Tls {
                                address: address.clone(),
                                source,
                            })?;
                    stream = Stream::ClientTls(Box::new(tls));
                    let step = hs.after_tls().map_err(|source| ConnectError::Handshake {
                        address: address.clone(),
                        source,
                    })?;
                    if let ClientStep::Send(bytes) = step {
                        write_flush(&mut stream, &bytes).await.map_err(io_err)?;
                    }
                }
            }
        }
    }

    /// Sends COM_QUIT and closes, so mysqld does not count an aborted connection.
    pub async fn quit(mut self) {
        let mut out = Vec::with_capacity(5);
        let mut seq = 0;
        write_packet(&mut out, &mut seq, &[Command::Quit as u8]);
        let _ = write_flush(&mut self.stream, &out).await;
        let _ = self.stream.shutdown().await;
    }
}

/// Writes all bytes and flushes (TLS streams buffer).
pub async fn write_flush(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Kills the running statement of upstream connection `connection_id` from a separate
/// connection (`KILL QUERY`), as mysqld's own clients do on Ctrl-C.
pub async fn kill_query(
    settings: Arc<UpstreamSettings>,
    connection_id: u32,
) -> Result<(), ConnectError> {
    let mut admin = Upstream::connect(&settings, LoginParams::default()).await?;
    let mut out = Vec::new();
    let mut seq = 0;
    let mut payload = vec![Command::Query as u8];
    payload.extend_from_slice(format!("KILL QUERY {connection_id}").as_bytes());
    write_packet(&mut out, &mut seq, &payload);
    let address = settings.display.clone();
    let io_err = |source| ConnectError::Io {
        address: address.clone(),
        source,
    };
    write_flush(&mut admin.stream, &out).await.map_err(io_err)?;
    // Wait for the OK/ERR so the kill has happened before the connection is dropped.
    let mut buf = [0u8; 512];
    let _ = admin.stream.read(&mut buf).await.map_err(io_err)?;
    admin.quit().await;
    Ok(())
}
