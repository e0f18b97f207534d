//! One application connection: after the handshake (`handshake.rs`), the command loop that
//! forwards each command to mysqld and relays its response as raw packets.
//!
//! The protocol decisions (authentication, where a response ends) are made by the
//! filter's state machines; this module only moves bytes between the two sockets,
//! watches timers and the client socket, and reports metrics.

use super::client::{watch_client, Client};
use super::handshake::{self, LoggedIn};
use super::pooled::Pooled;
use super::relay::{FailoverRetry, FirstPacket, RelayGuard, Response};
use super::sharded::Routed;
use super::upstream::{self, ConnectError, LoginParams, Upstream};
use super::Shared;
use crate::config::RowLimitMode;
use crate::metrics::{Direction, ErrorOrigin};
use crate::net::Stream;
use shardcar_filter::protocol::capabilities as caps;
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::exchange::{InfileScanner, ResponseKind, ResponseScanner, Scan};
use shardcar_filter::protocol::handshake::{push_connect_attr, ChangeUser};
use shardcar_filter::protocol::packet::{write_packet, FrameError, Packet, HEADER_LEN};
use shardcar_filter::protocol::response::{EofPacket, OkPacket};
use shardcar_filter::protocol::server::{
    Authenticated, ServerHandshake, ServerHandshakeConfig, Step,
};
use shardcar_filter::protocol::{Command, ErrPacket};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Capabilities that change the format of what mysqld sends: the application and the
/// upstream connection must agree on them for raw forwarding to be correct.
pub(super) const FORMAT_CAPABILITIES: u32 = caps::DEPRECATE_EOF
    | caps::SESSION_TRACK
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::PROTOCOL_41
    | caps::TRANSACTIONS;

/// How much the sidecar reads from mysqld at once while relaying a response.
const RELAY_CHUNK: usize = 32 * 1024;

/// Why a session ended; for logs.
#[derive(Debug)]
pub(super) enum End {
    Quit,
    ClientGone,
    Draining,
    IdleTimeout,
    Refused(&'static str),
    UpstreamLost,
    /// KILL CONNECTION of this session, by a client or the admin endpoint.
    Killed,
}

/// Serves one accepted application connection until it ends.
pub async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let metrics = shared.metrics.clone();
    metrics.connection_opened();
    let client = Client::new(Stream::Tcp(socket), peer);
    let timeout = shared.config.handshake_timeout();
    let accepted = tokio::time::timeout(timeout, handshake::accept(client, &shared)).await;
    let end = match accepted {
        Err(_) => {
            metrics.handshake_failed("timeout");
            debug!(%peer, "handshake timed out");
            End::Refused("handshake timeout")
        }
        Ok(Err(reason)) => End::Refused(reason),
        Ok(Ok(logged_in)) => {
            let LoggedIn {
                mut client,
                auth,
                scramble,
                ok,
                connection_id,
            } = logged_in;
            client
                .assembler
                .set_max_packet_size(shared.config.max_packet_size);
            let mut session = Session {
                shared: shared.clone(),
                client,
                auth,
                scramble,
                upstream: None,
                routed: None,
                pooled: None,
                connection_id,
                capture: None,
            };
            if let Some(router) = &shared.router {
                session.routed = Some(Routed::new(router.clone(), session.auth.database.clone()));
            }
            if let Some(guard) = &shared.guard {
                let database = session.auth.database.clone();
                session.pooled = Some(session.new_pooled(guard.clone(), database));
            }
            match session.finish_login(ok).await {
                Ok(()) => session.run(shutdown).await,
                Err(reason) => End::Refused(reason),
            }
        }
    };
    match end {
        End::Refused(reason) => debug!(%peer, reason, "connection refused"),
        other => debug!(%peer, end = ?other, "connection closed"),
    }
    metrics.connection_closed();
}

/// The application's session after a successful handshake.
pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) client: Client,
    pub(super) auth: Authenticated,
    scramble: [u8; 20],
    pub(super) upstream: Option<Upstream>,
    /// Routing state when the sidecar serves sharded keyspaces.
    pub(super) routed: Option<Routed>,
    /// Pool and protection state in the db role.
    pub(super) pooled: Option<Pooled>,
    /// The id the client was given in the greeting.
    pub(super) connection_id: u32,
    /// While a consolidated read runs: the bytes sent to the client, for its followers.
    pub(super) capture: Option<Capture>,
}

/// Bytes of one response kept for sessions waiting on an identical read.
#[derive(Debug, Default)]
pub(super) struct Capture {
    pub(super) bytes: Vec<u8>,
    pub(super) max: usize,
    /// More than `max` bytes, or a packet the sidecar injected: not shareable.
    pub(super) spoiled: bool,
}

impl Capture {
    fn keep(&mut self, bytes: &[u8]) {
        if self.spoiled || self.bytes.len() + bytes.len() > self.max {
            self.spoiled = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(bytes);
        }
    }
}

impl Session {
    fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    /// Sends the reply that ends a login (initial or COM_CHANGE_USER). When the
    /// application named a database, the upstream connection is opened first so that an
    /// unknown database is reported at login, as mysqld does.
    async fn finish_login(&mut self, ok: Vec<u8>) -> Result<(), &'static str> {
        if let (Some(routed), Some(db)) = (self.routed.as_mut(), self.auth.database.clone()) {
            if routed.router.schema().keyspace(&db).is_none() {
                let err = ErrPacket::new(
                    error_codes::ER_BAD_DB_ERROR,
                    format!("Unknown database '{db}'"),
                );
                self.shared.metrics.error(err.code, ErrorOrigin::Sidecar);
                let reply = handshake::replace_final_packet(&ok, &err);
                let _ = self.client.send(&reply, &self.shared.metrics).await;
                return Err("unknown keyspace");
            }
            routed.default_keyspace = Some(db);
        } else if self.auth.database.is_some() && self.pooled.is_some() {
            if let Err(e) = self.pooled_check_database().await {
                self.metrics().error(e.code, ErrorOrigin::Upstream);
                let reply = handshake::replace_final_packet(&ok, &e);
                let _ = self.client.send(&reply, &self.shared.metrics).await;
                return Err("unknown database");
            }
        } else if self.auth.database.is_some() && self.routed.is_none() {
            if let Err(e) = self.ensure_upstream().await {
                let err = e.to_err_packet();
                self.metrics().error(err.code, ErrorOrigin::Upstream);
                let reply = handshake::replace_final_packet(&ok, &err);
                let _ = self.client.send(&reply, &self.shared.metrics).await;
                return Err("upstream login failed");
            }
        }
        self.client
            .send(&ok, &self.shared.metrics)
            .await
            .map_err(|_| "client gone")
    }

    /// How an upstream connection of this session logs in: with the application's
    /// capabilities and collation, its connect attributes plus its address, and `database`.
    pub(super) fn login_params(&self, database: Option<String>) -> LoginParams {
        let mut attrs = self.auth.connect_attrs.clone();
        push_connect_attr(
            &mut attrs,
            "_shardcar_client",
            &self.client.peer.to_string(),
        );
        LoginParams {
            capabilities: Some(self.auth.capabilities & !caps::PER_HOP),
            collation: Some(self.auth.collation),
            database,
            connect_attrs: attrs,
        }
    }

    async fn ensure_upstream(&mut self) -> Result<&mut Upstream, ConnectError> {
        if self.upstream.is_none() {
            let params = self.login_params(self.auth.database.clone());
            let started = Instant::now();
            let result = Upstream::connect(&self.shared.upstream, params).await;
            self.metrics()
                .upstream_connect(result.is_ok(), started.elapsed().as_secs_f64());
            let up = result?;
            if up.stream.is_tls() {
                self.metrics().tls_handshake("upstream");
            }
            let mismatch = (up.session.capabilities ^ self.auth.capabilities) & FORMAT_CAPABILITIES;
            if mismatch != 0 {
                warn!(
                    mismatch = format_args!("{mismatch:#x}"),
                    "upstream capabilities differ from the application's; refusing to forward"
                );
                up.quit().await;
                return Err(ConnectError::Incompatible {
                    address: self.shared.upstream.display.clone(),
                    missing: mismatch,
                });
            }
            self.shared.remember_profile(&up.session);
            self.upstream = Some(up);
        }
        match self.upstream.as_mut() {
            Some(up) => Ok(up),
            None => Err(ConnectError::Closed {
                address: self.shared.upstream.display.clone(),
            }),
        }
    }

    async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> End {
        let idle = self.shared.config.idle_timeout();
        let end = loop {
            if *shutdown.borrow() && self.client.assembler.buffered().is_empty() {
                break End::Draining;
            }
            let read = async {
                match idle {
                    Some(t) => {
                        tokio::time::timeout(t, self.client.read_packet(&self.shared.metrics))
                            .await
                            .ok()
                    }
                    None => Some(self.client.read_packet(&self.shared.metrics).await),
                }
            };
            let timer = self
                .pooled
                .as_ref()
                .and_then(|p| p.next_timer(self.upstream.is_some()));
            let sleep = async {
                match timer {
                    Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let entry = self.pooled.as_ref().map(|p| p.registration.entry.clone());
            let killed = async {
                match &entry {
                    Some(e) => e.connection_killed().await,
                    None => std::future::pending().await,
                }
            };
            let packet = tokio::select! {
                biased;
                r = read => r,
                _ = shutdown.changed() => continue,
                () = killed => break End::Killed,
                _ = sleep => {
                    if let Some((_, t)) = timer {
                        if let Err(end) = self.pooled_timer(t).await {
                            break end;
                        }
                    }
                    continue;
                }
            };
            let packet = match packet {
                None => break End::IdleTimeout,
                Some(Ok(Some(Ok(p)))) => p,
                Some(Ok(Some(Err(e)))) => {
                    let (code, msg) = match e {
                        FrameError::TooLarge { .. } => {
                            (error_codes::ER_NET_PACKET_TOO_LARGE, e.to_string())
                        }
                        FrameError::OutOfOrder { .. } => {
                            (error_codes::ER_NET_PACKETS_OUT_OF_ORDER, e.to_string())
                        }
                    };
                    let _ = self
                        .client
                        .send_error(1, &ErrPacket::new(code, msg), &self.shared.metrics)
                        .await;
                    break End::Refused("bad packet");
                }
                Some(Ok(None)) | Some(Err(_)) => break End::ClientGone,
            };
            match self.dispatch(packet).await {
                Ok(()) => {}
                Err(end) => break end,
            }
            if entry.is_some_and(|e| e.is_connection_killed()) {
                break End::Killed;
            }
        };
        if self.pooled.is_some() {
            self.pooled_end().await;
        }
        if let Some(up) = self.upstream.take() {
            up.quit().await;
        }
        if let Some(routed) = self.routed.as_mut() {
            routed.close().await;
        }
        end
    }

    async fn dispatch(&mut self, packet: Packet) -> Result<(), End> {
        let metrics = self.shared.metrics.clone();
        let Some(&byte) = packet.payload.first() else {
            let err = ErrPacket::new(error_codes::ER_UNKNOWN_COM_ERROR, "Unknown command");
            return self.reply_error(&err).await;
        };
        if packet.seq != 0 {
            let err = ErrPacket::new(
                error_codes::ER_NET_PACKETS_OUT_OF_ORDER,
                "Got packets out of order",
            );
            let _ = self
                .client
                .send_error(packet.last_seq.wrapping_add(1), &err, &metrics)
                .await;
            return Err(End::Refused("command with non-zero sequence id"));
        }
        let started = Instant::now();
        let command = Command::from_byte(byte);
        let result = match command {
            None
            | Some(Command::Sleep)
            | Some(Command::Connect)
            | Some(Command::Time)
            | Some(Command::DelayedInsert)
            | Some(Command::Daemon) => {
                let err = ErrPacket::new(error_codes::ER_UNKNOWN_COM_ERROR, "Unknown command");
                self.reply_error(&err).await
            }
            Some(Command::Quit) => Err(End::Quit),
            Some(
                Command::BinlogDump
                | Command::BinlogDumpGtid
                | Command::RegisterSlave
                | Command::TableDump
                | Command::ConnectOut,
            ) => {
                let err = ErrPacket::new(
                    error_codes::ER_NOT_SUPPORTED_YET,
                    "This version of Shardcar doesn't yet support 'replication commands through the sidecar'",
                );
                self.reply_error(&err).await
            }
            Some(Command::ChangeUser) => self.change_user(packet).await,
            Some(Command::Query) if self.routed.is_some() => self.routed_query(&packet).await,
            Some(cmd) if self.pooled.is_some() => self.pooled_command(cmd, &packet).await,
            Some(cmd) if self.routed.is_some() => self.routed_command(cmd, &packet).await,
            Some(cmd) => self.forward(cmd, &packet).await,
        };
        metrics.command(byte, started.elapsed().as_secs_f64());
        result
    }

    async fn reply_error(&mut self, err: &ErrPacket) -> Result<(), End> {
        self.client
            .send_error(1, err, &self.shared.metrics)
            .await
            .map_err(|_| End::ClientGone)
    }

    /// Forwards one command and relays its response.
    pub(super) async fn forward(&mut self, command: Command, packet: &Packet) -> Result<(), End> {
        self.forward_with(command, &packet.payload, &RelayGuard::default())
            .await
            .map(drop)
    }

    /// Forwards one command payload (possibly rewritten) and relays its response under
    /// `guard`'s deadline and result limits; returns what the response said.
    pub(super) async fn forward_with(
        &mut self,
        command: Command,
        payload: &[u8],
        guard: &RelayGuard,
    ) -> Result<Response, End> {
        if let Err(e) = self.ensure_upstream().await {
            warn!(error = %e, "cannot reach upstream");
            let err = e.to_err_packet();
            self.reply_error(&err).await?;
            return Ok(Response::refused(err.code));
        }
        let mut out = Vec::with_capacity(payload.len() + 4);
        let mut seq = 0;
        write_packet(&mut out, &mut seq, payload);
        let metrics = self.shared.metrics.clone();
        let caps = self.auth.capabilities;
        let kind = match ResponseKind::for_command(command) {
            ResponseKind::Generic { local_infile } => ResponseKind::Generic {
                local_infile: local_infile && caps & caps::LOCAL_FILES != 0,
            },
            other => other,
        };
        let Some(up) = self.upstream.as_mut() else {
            return Err(End::UpstreamLost);
        };
        metrics.bytes(Direction::ToUpstream, out.len() as u64);
        if upstream::write_flush(&mut up.stream, &out).await.is_err() {
            if guard.failover.is_some() {
                // Not sent: the next primary may take it.
                self.upstream = None;
                self.shared.metrics.upstream_lost();
                return Ok(Response::failover());
            }
            // Nothing of a response has reached the client: the ERR follows the command.
            self.upstream_lost(Some(seq)).await?;
            return Err(End::UpstreamLost);
        }
        if kind == ResponseKind::None {
            return Ok(Response::default());
        }
        self.relay(kind, seq.wrapping_sub(1), guard).await
    }

    /// Relays one response from mysqld to the client, untouched, until the scanner says
    /// it is complete. Watches the client meanwhile: if it goes away, the statement is
    /// killed and the upstream connection is discarded. Under a `guard`, a statement past
    /// its deadline is killed (the client gets ERR 3024), and a result past its row or
    /// byte limit is cut.
    async fn relay(
        &mut self,
        kind: ResponseKind,
        last_command_seq: u8,
        guard: &RelayGuard,
    ) -> Result<Response, End> {
        let metrics = self.shared.metrics.clone();
        let mut scanner =
            ResponseScanner::after_command(kind, self.auth.capabilities, last_command_seq);
        scanner.set_row_limit(guard.max_rows, guard.max_bytes);
        let mut buf: Vec<u8> = Vec::with_capacity(RELAY_CHUNK);
        let mut forwarded = false;
        let mut deadline = guard.deadline;
        let mut kill: Option<tokio::task::JoinHandle<()>> = None;
        // The kill came from a KILL statement or the admin endpoint, not the deadline:
        // the client gets mysqld's own "interrupted" error.
        let mut external = false;
        let entry = self.pooled.as_ref().map(|p| p.registration.entry.clone());
        // Set once the row limit was reached: the sequence id of the last row sent.
        let mut at_limit: Option<u8> = None;
        let mut cut: Option<u8> = None;
        // Reading on until the first packet is whole, to tell a failover error.
        let mut first_partial = false;
        loop {
            let undecided = at_limit.is_some() && scanner.next_is_row(&buf).is_none();
            if buf.is_empty() || undecided || first_partial {
                first_partial = false;
                let Some(up) = self.upstream.as_mut() else {
                    return Err(End::UpstreamLost);
                };
                if buf.capacity() - buf.len() < RELAY_CHUNK / 2 {
                    buf.reserve(RELAY_CHUNK);
                }
                let client = &mut self.client;
                let sleep = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                };
                let killed = async {
                    match (&entry, &kill) {
                        (Some(e), None) => e.query_killed().await,
                        _ => std::future::pending().await,
                    }
                };
                let read = tokio::select! {
                    biased;
                    r = up.stream.read_buf(&mut buf) => r,
                    gone = watch_client(client) => {
                        debug!(?gone, "client went away during a statement");
                        self.client_gone().await?;
                        return Err(End::ClientGone);
                    }
                    _ = sleep => {
                        deadline = None;
                        metrics.guard.timeout("statement");
                        kill = Some(spawn_kill(up, &metrics, "a statement past its timeout"));
                        continue;
                    }
                    () = killed => {
                        deadline = None;
                        external = true;
                        kill = Some(spawn_kill(up, &metrics, "a KILL request"));
                        continue;
                    }
                };
                match read {
                    Ok(0) | Err(_)
                        if !forwarded && guard.failover.is_some_and(FailoverRetry::allows_lost) =>
                    {
                        self.upstream = None;
                        metrics.upstream_lost();
                        return Ok(Response::failover());
                    }
                    Ok(0) | Err(_) => {
                        let seq = scanner
                            .at_packet_boundary()
                            .then(|| scanner.last_seq().wrapping_add(1));
                        self.upstream_lost(seq).await?;
                        return Err(End::UpstreamLost);
                    }
                    Ok(n) => metrics.bytes(Direction::FromUpstream, n as u64),
                }
            }
            if let Some(last) = at_limit {
                match scanner.next_is_row(&buf) {
                    // Read until the next packet's header and first byte are here.
                    None => continue,
                    Some(false) => {
                        at_limit = None;
                        scanner.set_row_limit(None, None);
                    }
                    Some(true) => {
                        at_limit = None;
                        scanner.set_row_limit(None, None);
                        cut = Some(last);
                        if let Some(c) = self.capture.as_mut() {
                            c.spoiled = true;
                        }
                        let err = guard.limit_error(scanner.rows());
                        match guard.mode {
                            RowLimitMode::Error => {
                                metrics.guard.row_limit("error");
                                let mut out = Vec::new();
                                let mut seq = last.wrapping_add(1);
                                write_packet(&mut out, &mut seq, &err.encode());
                                metrics.error(err.code, ErrorOrigin::Sidecar);
                                if self.client.send(&out, &metrics).await.is_err() {
                                    self.client_gone().await?;
                                    return Err(End::ClientGone);
                                }
                            }
                            RowLimitMode::Truncate => {
                                metrics.guard.row_limit("truncate");
                                warn!(rows = scanner.rows(), "result truncated at the row limit");
                            }
                        }
                    }
                }
            }
            if let Some(retry) = guard.failover.filter(|_| !forwarded) {
                match FirstPacket::of(&buf) {
                    FirstPacket::Incomplete => {
                        first_partial = true;
                        continue;
                    }
                    FirstPacket::Err(code) if retry.allows(code) => {
                        debug!(
                            code,
                            "the primary failed the statement; it waits for the next one"
                        );
                        return Ok(Response::failover());
                    }
                    _ => {}
                }
            }
            let scan = match scanner.feed(&buf) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "upstream protocol error");
                    let seq = (!forwarded).then(|| last_command_seq.wrapping_add(1));
                    self.upstream_lost(seq).await?;
                    return Err(End::UpstreamLost);
                }
            };
            let upto = match scan {
                Scan::NeedMore => buf.len(),
                Scan::Complete { consumed }
                | Scan::LocalInfile { consumed }
                | Scan::RowLimit { consumed } => consumed,
            };
            if cut.is_none() {
                let mut send = &buf[..upto];
                let mut replaced = None;
                if kill.is_some() && !external && matches!(scan, Scan::Complete { .. }) {
                    // The statement was killed for its timeout: say so, as MySQL does
                    // for MAX_EXECUTION_TIME, instead of mysqld's "interrupted".
                    let len = HEADER_LEN + scanner.last_packet_len();
                    if scanner.error_code() == Some(error_codes::ER_QUERY_INTERRUPTED.code)
                        && upto >= len
                    {
                        send = &buf[..upto - len];
                        let mut out = Vec::new();
                        let mut seq = scanner.last_seq();
                        write_packet(&mut out, &mut seq, &guard.timeout_error().encode());
                        replaced = Some(out);
                    }
                }
                if self.client.send(send, &metrics).await.is_err() {
                    self.client_gone().await?;
                    return Err(End::ClientGone);
                }
                if let Some(c) = self.capture.as_mut() {
                    c.keep(send);
                    if replaced.is_some() {
                        c.spoiled = true;
                    }
                }
                if let Some(out) = replaced {
                    metrics.error(error_codes::ER_QUERY_TIMEOUT.code, ErrorOrigin::Sidecar);
                    if self.client.send(&out, &metrics).await.is_err() {
                        self.client_gone().await?;
                        return Err(End::ClientGone);
                    }
                }
                forwarded = true;
            }
            match scan {
                Scan::NeedMore => buf.clear(),
                Scan::RowLimit { consumed } => {
                    buf.drain(..consumed);
                    at_limit = Some(scanner.last_seq());
                }
                Scan::Complete { consumed } => {
                    if consumed < buf.len() {
                        warn!(
                            extra = buf.len() - consumed,
                            "upstream sent data after the end of a response"
                        );
                        // The client has its whole response; an ERR now would be taken
                        // as the answer to its next command, so only close.
                        self.upstream_lost(None).await?;
                        return Err(End::UpstreamLost);
                    }
                    if let Some(last) = cut {
                        if guard.mode == RowLimitMode::Truncate {
                            self.send_terminator(last, &scanner).await?;
                        }
                    }
                    if let Some(code) = scanner.error_code() {
                        metrics.error(code, ErrorOrigin::Upstream);
                    }
                    let killed = match kill {
                        // The KILL must have happened before the connection runs anything
                        // else.
                        Some(k) => {
                            let _ = k.await;
                            true
                        }
                        None => false,
                    };
                    return Ok(Response::of(
                        &scanner,
                        killed,
                        cut.is_some() && guard.mode == RowLimitMode::Error,
                    ));
                }
                Scan::LocalInfile { consumed } => {
                    if consumed < buf.len() {
                        self.upstream_lost(None).await?;
                        return Err(End::UpstreamLost);
                    }
                    buf.clear();
                    let last = self.relay_local_infile(scanner.last_seq()).await?;
                    scanner.local_infile_sent(last);
                }
            }
        }
    }

    /// Ends a result set cut at the row limit (truncate mode) with a terminator that
    /// follows the last row sent.
    async fn send_terminator(
        &mut self,
        last_row_seq: u8,
        scanner: &ResponseScanner,
    ) -> Result<(), End> {
        let caps = self.auth.capabilities;
        let status =
            scanner.status() & !shardcar_filter::protocol::constants::status::MORE_RESULTS_EXISTS;
        let payload = if caps & caps::DEPRECATE_EOF != 0 {
            OkPacket {
                status,
                warnings: scanner.warnings(),
                ..Default::default()
            }
            .encode_as_eof(caps)
        } else {
            EofPacket {
                warnings: scanner.warnings(),
                status,
            }
            .encode()
        };
        let mut out = Vec::new();
        let mut seq = last_row_seq.wrapping_add(1);
        write_packet(&mut out, &mut seq, &payload);
        let metrics = self.shared.metrics.clone();
        if self.client.send(&out, &metrics).await.is_err() {
            self.client_gone().await?;
            return Err(End::ClientGone);
        }
        Ok(())
    }

    /// Copies the client's LOCAL INFILE data to mysqld, raw, up to its empty packet.
    async fn relay_local_infile(&mut self, request_seq: u8) -> Result<u8, End> {
        let metrics = self.shared.metrics.clone();
        let mut scanner = InfileScanner::new(request_seq.wrapping_add(1));
        let mut pending = self.client.assembler.take_buffered();
        let mut buf = vec![0u8; RELAY_CHUNK];
        loop {
            if !pending.is_empty() {
                let (n, end) = scanner
                    .feed(&pending)
                    .map_err(|_| End::Refused("bad LOCAL INFILE data"))?;
                let Some(up) = self.upstream.as_mut() else {
                    return Err(End::UpstreamLost);
                };
                metrics.bytes(Direction::ToUpstream, n as u64);
                if upstream::write_flush(&mut up.stream, &pending[..n])
                    .await
                    .is_err()
                {
                    self.upstream_lost(None).await?;
                    return Err(End::UpstreamLost);
                }
                // Bytes after the data belong to the next command.
                self.client.assembler.extend(&pending[n..]);
                if let Some(seq) = end {
                    return Ok(seq);
                }
                pending.clear();
            }
            let n = self
                .client
                .stream
                .read(&mut buf)
                .await
                .map_err(|_| End::ClientGone)?;
            if n == 0 {
                self.client_gone().await?;
                return Err(End::ClientGone);
            }
            metrics.bytes(Direction::FromClient, n as u64);
            pending.extend_from_slice(&buf[..n]);
        }
    }

    /// The client disconnected while a statement ran: kill the statement, drop the
    /// connection (it is in an unknown state), end the session.
    async fn client_gone(&mut self) -> Result<(), End> {
        self.pooled_connection_lost();
        if let Some(up) = self.upstream.take() {
            drop(spawn_kill(
                &up,
                &self.shared.metrics,
                "an abandoned statement",
            ));
        }
        Err(End::ClientGone)
    }

    /// The upstream connection broke: tell the client (when the packet stream allows an
    /// ERR to be inserted) and end the session, since its server-side state is gone.
    /// `err_seq` is the sequence id the client expects next when an ERR can be inserted
    /// into the packet stream, `None` when it cannot (part of a packet, or a whole
    /// response, has already been relayed): then the connection is only closed.
    async fn upstream_lost(&mut self, err_seq: Option<u8>) -> Result<(), End> {
        self.upstream = None;
        self.pooled_connection_lost();
        self.shared.metrics.upstream_lost();
        if let Some(seq) = err_seq {
            let err = ErrPacket::new(
                error_codes::ER_NET_READ_ERROR,
                "Lost connection to MySQL server during query",
            );
            let _ = self
                .client
                .send_error(seq, &err, &self.shared.metrics)
                .await;
        }
        Err(End::UpstreamLost)
    }

    /// COM_CHANGE_USER: authenticate the new application user against the sidecar's
    /// users, then start from a fresh upstream session.
    async fn change_user(&mut self, packet: Packet) -> Result<(), End> {
        let metrics = self.shared.metrics.clone();
        let request = match ChangeUser::decode(&packet.payload, self.auth.capabilities) {
            Ok(r) => r,
            Err(_) => {
                let err = ErrPacket::new(error_codes::ER_HANDSHAKE_ERROR, "Bad handshake");
                let _ = self.reply_error(&err).await;
                return Err(End::Refused("bad COM_CHANGE_USER"));
            }
        };
        let profile = self.shared.profile().await.map_err(|_| End::UpstreamLost)?;
        let config = ServerHandshakeConfig {
            server_version: profile.server_version.clone(),
            default_plugin: self.shared.config.auth.default_plugin.plugin(),
            client_host: self.client.peer.ip().to_string(),
            ..Default::default()
        };
        let mut hs = ServerHandshake::for_change_user(config, self.scramble, &self.auth, &request);
        let mut step = hs.start_change_user(&mut self.shared.auth.context());
        loop {
            match step {
                Step::Send(bytes) => {
                    self.client
                        .send(&bytes, &metrics)
                        .await
                        .map_err(|_| End::ClientGone)?;
                    let p = match self.client.read_packet(&metrics).await {
                        Ok(Some(Ok(p))) => p,
                        _ => return Err(End::ClientGone),
                    };
                    step = hs.handle_packet(&p, &mut self.shared.auth.context());
                }
                Step::UpgradeTls => return Err(End::Refused("TLS during COM_CHANGE_USER")),
                Step::Fail(bytes, err) => {
                    metrics.error(err.code, ErrorOrigin::Sidecar);
                    let _ = self.client.send(&bytes, &metrics).await;
                    return Err(End::Refused("COM_CHANGE_USER refused"));
                }
                Step::Done(ok, auth) => {
                    let pooled = self.pooled.is_some();
                    if pooled {
                        self.pooled_end().await;
                    }
                    if let Some(up) = self.upstream.take() {
                        up.quit().await;
                    }
                    if let Some(routed) = self.routed.as_mut() {
                        routed.close().await;
                        let router = routed.router.clone();
                        *routed = Routed::new(router, None);
                    }
                    self.auth = Authenticated {
                        capabilities: self.auth.capabilities,
                        tls: self.auth.tls,
                        ..auth
                    };
                    if let (true, Some(guard)) = (pooled, self.shared.guard.clone()) {
                        // Registered under the new user.
                        let database = self.auth.database.clone();
                        self.pooled = Some(self.new_pooled(guard, database));
                    }
                    return self
                        .finish_login(ok)
                        .await
                        .map_err(|_| End::Refused("COM_CHANGE_USER failed"));
                }
            }
        }
    }
}

/// Kills the statement running on `up` with `KILL QUERY` from a side connection, in the
/// background; `why` is for the log line when that fails.
fn spawn_kill(
    up: &Upstream,
    metrics: &crate::metrics::Metrics,
    why: &'static str,
) -> tokio::task::JoinHandle<()> {
    metrics.kill_sent();
    let id = up.session.connection_id;
    let settings = up.settings.clone();
    tokio::spawn(async move {
        if let Err(e) = upstream::kill_query(settings, id).await {
            warn!(connection_id = id, error = %e, "KILL QUERY for {why} failed");
        }
    })
}
