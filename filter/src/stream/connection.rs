//! The per-connection state machine of the stream filter: its state, the two entry
//! points (a read from either side) and the handshake. The command phase is split by
//! side: the client's commands in `command.rs`, the server's responses in
//! `response.rs`, paired in order through the pending responses kept here.

use super::out::{Forward, Out};
use super::policy::StreamPolicy;
use super::Event;
use crate::protocol::constants::capabilities as caps;
use crate::protocol::exchange::{InfileScanner, ResponseKind, ResponseScanner};
use crate::protocol::handshake::{Greeting, HandshakeResponse};
use crate::protocol::packet::HEADER_LEN;
use crate::protocol::response::{ERR_HEADER, OK_HEADER};
use crate::protocol::Command;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Who is on the other end, as the proxy knows it.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client's address (`ip:port` or `ip`).
    pub address: String,
    /// The identity of the client's certificate under mTLS (a SPIFFE id in a mesh).
    pub certificate: Option<String>,
}

/// Handshake packets larger than this are not read (the filter then stays out).
pub(super) const MAX_HANDSHAKE_PACKET: usize = 256 * 1024;
/// Prepared statements remembered per connection for execute metrics (MySQL's own
/// default `max_prepared_stmt_count` is per server; this bounds the filter's memory).
pub(super) const MAX_PREPARED: usize = 1024;
/// Responses that may be outstanding at once (pipelined commands).
pub(super) const MAX_PENDING: usize = 1024;
/// Bytes of a command's start read before deciding how to treat it: the header, the
/// command byte and a statement id.
pub(super) const COMMAND_HEAD: usize = HEADER_LEN + 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the server's greeting.
    Greeting,
    /// Waiting for the client's HandshakeResponse (or SSLRequest).
    Login,
    /// Authentication exchanges until the server's OK.
    Auth,
    Command,
    /// TLS, or a protocol error: bytes are forwarded unread.
    Opaque,
}

/// Where the client stream is.
#[derive(Debug)]
pub(super) enum Client {
    /// At the start of a packet; `held` collects its first bytes.
    Start,
    /// Holding an inspected command until its `len` payload bytes are in `held`.
    Hold { len: usize },
    /// Forwarding the rest of a packet; `remaining` payload bytes, then (when
    /// `continues`) the next packet of the same command.
    Stream { remaining: usize, continues: bool },
    /// Dropping the rest of a refused command.
    Discard { remaining: usize, continues: bool },
    /// Reading a continuation packet's header (forwarded, or dropped when `drop`).
    NextHeader { drop: bool },
    /// LOCAL INFILE data, forwarded until its empty packet.
    Infile(InfileScanner),
}

/// What the client is told for a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Scanned and forwarded.
    Forward,
    /// The scanner stopped at the row limit; the next packet decides.
    Peek,
    /// Rows beyond the limit: dropped up to the end of the result, which is replaced.
    Cut { seq: u8 },
    /// The answer to a SIGNAL that stands for a refused command: its sequence id is
    /// set to `seq`, what the client expects.
    Refused { seq: u8 },
    /// LOCAL INFILE: the client is sending its file.
    Infile,
}

/// The command a refusal replaces: the input bytes it occupies (0 when held), its
/// sequence id and its kind.
#[derive(Debug, Clone, Copy)]
pub(super) struct Replaced {
    pub(super) consume: usize,
    pub(super) seq: u8,
    pub(super) kind: &'static str,
}

/// What to do once a response completes successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum After {
    Nothing,
    Database(String),
    /// A prepare: remember what the statement is.
    Prepared,
    /// COM_CHANGE_USER: the server's answer is an authentication exchange.
    Reauth,
}

/// A response the client awaits.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) kind: ResponseKind,
    /// Sequence id of the command's last packet.
    pub(super) seq: u8,
    pub(super) scanner: Option<ResponseScanner>,
    pub(super) mode: Mode,
    pub(super) peek: Vec<u8>,
    pub(super) row_limit: Option<u64>,
    pub(super) info: Info,
    pub(super) started_ns: u64,
    pub(super) after: After,
}

/// What a statement is, for its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Info {
    pub(super) command: &'static str,
    pub(super) kind: &'static str,
    pub(super) table: Option<String>,
    pub(super) select: bool,
}

/// One MySQL connection through the filter.
#[derive(Debug)]
pub struct ConnectionFilter {
    pub(super) policy: Arc<StreamPolicy>,
    pub(super) peer: Peer,
    pub(super) phase: Phase,
    pub(super) server_caps: u32,
    pub(super) caps: u32,
    pub(super) user: String,
    pub(super) database: Option<String>,
    pub(super) client: Client,
    /// Client bytes taken but not yet forwarded.
    pub(super) held: Vec<u8>,
    /// The current handshake packet of either side (greeting, login, auth packets).
    pub(super) handshake: Vec<u8>,
    pub(super) pending: VecDeque<Pending>,
    pub(super) prepared: HashMap<u32, Info>,
    pub(super) events: Vec<Event>,
}

impl ConnectionFilter {
    pub fn new(policy: Arc<StreamPolicy>, peer: Peer) -> Self {
        ConnectionFilter {
            policy,
            peer,
            phase: Phase::Greeting,
            server_caps: 0,
            caps: 0,
            user: String::new(),
            database: None,
            client: Client::Start,
            held: Vec::new(),
            handshake: Vec::new(),
            pending: VecDeque::new(),
            prepared: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// The events since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// The user the client logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the filter has stopped reading the connection (TLS or a protocol error).
    pub fn is_opaque(&self) -> bool {
        self.phase == Phase::Opaque
    }

    /// Bytes the filter holds for this connection (bounded by the policy's
    /// `max_statement_bytes` plus a few small buffers).
    pub fn buffered(&self) -> usize {
        self.held.len()
            + self.handshake.len()
            + self.pending.iter().map(|p| p.peek.len()).sum::<usize>()
    }

    /// Bytes from the client at `now_ns`.
    pub fn client_data(&mut self, input: &[u8], now_ns: u64) -> Forward {
        let mut out = Out::new(input);
        while !out.is_done() {
            match self.phase {
                Phase::Opaque => {
                    // A command held when the server broke the protocol goes first.
                    let held = std::mem::take(&mut self.held);
                    out.emit(&held);
                    self.pass_opaque(&mut out);
                }
                Phase::Greeting => {
                    // A client does not speak first; leave such a stream alone.
                    self.opaque("client data before the server greeting");
                }
                Phase::Login => self.client_login(&mut out),
                Phase::Auth => out.pass(usize::MAX),
                Phase::Command => self.client_command(&mut out, now_ns),
            }
        }
        out.finish()
    }

    /// Bytes from the server at `now_ns`.
    pub fn server_data(&mut self, input: &[u8], now_ns: u64) -> Forward {
        let mut out = Out::new(input);
        while !out.is_done() {
            match self.phase {
                Phase::Opaque => self.pass_opaque(&mut out),
                Phase::Greeting => self.server_greeting(&mut out),
                Phase::Login => self.opaque("server data before the client's login"),
                Phase::Auth => {
                    if let Some(packet) = self.handshake_packet(&mut out, false) {
                        // OK: logged in. ERR: mysqld closes a failed login; a failed
                        // COM_CHANGE_USER leaves a connection that must stay inspected.
                        if matches!(packet.get(HEADER_LEN), Some(&OK_HEADER | &ERR_HEADER)) {
                            self.phase = Phase::Command;
                        }
                    }
                }
                Phase::Command => self.server_command(&mut out, now_ns),
            }
        }
        out.finish()
    }

    /// The greeting is held until complete and handed on without the capabilities the
    /// filter cannot follow: compression (the client would compress every packet after
    /// the login, out of the filter's sight, so a policy could be bypassed by asking for
    /// it), and MariaDB's progress reports, COM_MULTI and cached metadata, which change
    /// how responses are framed.
    fn server_greeting(&mut self, out: &mut Out) {
        let Some(mut packet) = self.handshake_packet(out, true) else {
            return;
        };
        match Greeting::decode(&packet[HEADER_LEN..]) {
            Ok(g) => {
                strip_greeting_capabilities(&mut packet[HEADER_LEN..], &g);
                self.server_caps = g.capabilities & !caps::COMPRESS;
                self.phase = Phase::Login;
                out.emit(&packet);
            }
            // An ERR in place of the greeting (host blocked, too many connections):
            // nothing follows that needs reading.
            Err(_) => {
                out.emit(&packet);
                self.opaque("no server greeting");
            }
        }
    }

    /// Forwards the rest of a read unread, counting it.
    fn pass_opaque(&mut self, out: &mut Out) {
        self.events.push(Event::Opaque {
            bytes: out.rest().len(),
        });
        out.pass(usize::MAX);
    }

    pub(super) fn opaque(&mut self, why: &str) {
        self.events.push(Event::ProtocolError {
            message: why.to_string(),
        });
        self.enter_opaque();
    }

    fn enter_opaque(&mut self) {
        self.phase = Phase::Opaque;
        self.handshake = Vec::new();
        self.pending.clear();
        // Held client bytes go out with the client's next read.
        self.client = Client::Start;
    }

    /// Collects the current handshake packet of either side, forwarding its bytes as
    /// they pass, or holding them when `hold`; returns the whole packet (header
    /// included) once complete. A packet too large to read sends the filter opaque
    /// (with what it held forwarded).
    fn handshake_packet(&mut self, out: &mut Out, hold: bool) -> Option<Vec<u8>> {
        let need = if self.handshake.len() < HEADER_LEN {
            HEADER_LEN - self.handshake.len()
        } else {
            HEADER_LEN + payload_len(&self.handshake) - self.handshake.len()
        };
        if hold {
            let bytes = out.take(need);
            self.handshake.extend_from_slice(bytes);
        } else {
            let rest = out.rest();
            let n = need.min(rest.len());
            self.handshake.extend_from_slice(&rest[..n]);
            out.pass(n);
        }
        if self.handshake.len() < HEADER_LEN {
            return None;
        }
        let len = payload_len(&self.handshake);
        if len > MAX_HANDSHAKE_PACKET {
            if hold {
                let held = std::mem::take(&mut self.handshake);
                out.emit(&held);
            }
            self.opaque("handshake packet too large to read");
            return None;
        }
        if self.handshake.len() < HEADER_LEN + len {
            return None;
        }
        Some(std::mem::take(&mut self.handshake))
    }

    fn client_login(&mut self, out: &mut Out) {
        let Some(packet) = self.handshake_packet(out, false) else {
            return;
        };
        let payload = &packet[HEADER_LEN..];
        if HandshakeResponse::is_ssl_request(payload) {
            self.events.push(Event::Tls);
            self.enter_opaque();
            return;
        }
        match HandshakeResponse::decode(payload) {
            Ok(login) => {
                self.caps = login.capabilities & self.server_caps;
                self.user = String::from_utf8_lossy(&login.username).into_owned();
                self.database = login
                    .database
                    .map(|d| String::from_utf8_lossy(&d).into_owned());
                self.events.push(Event::Login {
                    user: self.user.clone(),
                });
                self.phase = Phase::Auth;
            }
            Err(e) => self.opaque(&format!("unreadable login: {e}")),
        }
    }
}

/// Clears `CLIENT_COMPRESS` and MariaDB's `PROGRESS`, `COM_MULTI` and `CACHE_METADATA` in
/// a greeting's payload, in place (the rest of the packet is left byte for byte as the
/// server sent it).
fn strip_greeting_capabilities(payload: &mut [u8], g: &Greeting) {
    // protocol version, server version and its NUL, connection id, scramble part 1,
    // filler: then the low capability bytes.
    let low = 1 + g.server_version.len() + 1 + 4 + 8 + 1;
    if let Some(b) = payload.get_mut(low) {
        *b &= !(caps::COMPRESS as u8);
    }
    // Then collation, status, high capabilities, auth data length, 6 reserved bytes:
    // MariaDB's extended capabilities, when the server announces it speaks them.
    if g.capabilities & caps::LONG_PASSWORD == 0 {
        if let Some(b) = payload.get_mut(low + 2 + 1 + 2 + 2 + 1 + 6) {
            use crate::protocol::constants::mariadb_capabilities as mariadb;
            *b &= !((mariadb::PROGRESS | mariadb::COM_MULTI | mariadb::CACHE_METADATA) as u8);
        }
    }
}

/// Commands held whole and checked before they go on.
pub(super) fn inspected(command: Option<Command>) -> bool {
    matches!(
        command,
        Some(Command::Query | Command::StmtPrepare | Command::InitDb | Command::ChangeUser)
    )
}

pub(super) fn info(command: &'static str, kind: &'static str) -> Info {
    Info {
        command,
        kind,
        table: None,
        select: false,
    }
}

/// The payload length a packet header (at least 4 bytes) announces.
pub(super) fn payload_len(header: &[u8]) -> usize {
    usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16
}

/// The host part of `ip:port`, `[v6]:port` or a bare address.
#[cfg_attr(not(feature = "access-policy"), allow(dead_code))]
pub(super) fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => address,
    }
}
