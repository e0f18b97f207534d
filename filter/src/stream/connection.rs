//! The per-connection state machine of the stream filter: the handshake, the client's
//! commands (held, checked, rewritten or streamed) and the server's responses (scanned,
//! cut at the row limit), in the order the protocol pairs them.

use super::out::{Forward, Out};
use super::policy::{RowLimitMode, StreamPolicy};
use super::signal::signal_packet;
use super::{Event, Refusal, Statement};
use crate::guard::refusal;
use crate::guard::rules::{Decision, Subject};
use crate::guard::statement::{analyze, use_database, with_limit, Kind, Limit};
use crate::protocol::constants::capabilities as caps;
use crate::protocol::exchange::{InfileScanner, ResponseKind, ResponseScanner, Scan};
use crate::protocol::handshake::{ChangeUser, Greeting, HandshakeResponse};
use crate::protocol::packet::{write_packet, HEADER_LEN, MAX_PAYLOAD_LEN};
use crate::protocol::response::{ERR_HEADER, OK_HEADER};
use crate::protocol::{Command, EofPacket, ErrPacket, OkPacket};
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
const MAX_HANDSHAKE_PACKET: usize = 256 * 1024;
/// Prepared statements remembered per connection for execute metrics (MySQL's own
/// default `max_prepared_stmt_count` is per server; this bounds the filter's memory).
const MAX_PREPARED: usize = 1024;
/// Responses that may be outstanding at once (pipelined commands).
const MAX_PENDING: usize = 1024;
/// Bytes of a command's start read before deciding how to treat it: the header, the
/// command byte and a statement id.
const COMMAND_HEAD: usize = HEADER_LEN + 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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
enum Client {
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
enum Mode {
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
struct Replaced {
    consume: usize,
    seq: u8,
    kind: &'static str,
}

/// What to do once a response completes successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
enum After {
    Nothing,
    Database(String),
    /// A prepare: remember what the statement is.
    Prepared,
    /// COM_CHANGE_USER: the server's answer is an authentication exchange.
    Reauth,
}

/// A response the client awaits.
#[derive(Debug)]
struct Pending {
    kind: ResponseKind,
    /// Sequence id of the command's last packet.
    seq: u8,
    scanner: Option<ResponseScanner>,
    mode: Mode,
    peek: Vec<u8>,
    row_limit: Option<u64>,
    info: Info,
    started_ns: u64,
    after: After,
}

/// What a statement is, for its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Info {
    command: &'static str,
    kind: &'static str,
    table: Option<String>,
    select: bool,
}

/// One MySQL connection through the filter.
#[derive(Debug)]
pub struct ConnectionFilter {
    policy: Arc<StreamPolicy>,
    peer: Peer,
    phase: Phase,
    server_caps: u32,
    caps: u32,
    user: String,
    database: Option<String>,
    client: Client,
    /// Client bytes taken but not yet forwarded.
    held: Vec<u8>,
    /// The current handshake packet of either side (greeting, login, auth packets).
    handshake: Vec<u8>,
    pending: VecDeque<Pending>,
    prepared: HashMap<u32, Info>,
    events: Vec<Event>,
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
                Phase::Greeting => {
                    if let Some(payload) = self.tee_handshake(&mut out) {
                        match Greeting::decode(&payload) {
                            Ok(g) => {
                                self.server_caps = g.capabilities;
                                self.phase = Phase::Login;
                            }
                            // An ERR in place of the greeting (host blocked, too many
                            // connections): nothing follows that needs reading.
                            Err(_) => self.opaque("no server greeting"),
                        }
                    }
                }
                Phase::Login => self.opaque("server data before the client's login"),
                Phase::Auth => {
                    if let Some(payload) = self.tee_handshake(&mut out) {
                        // OK: logged in. ERR: mysqld closes a failed login; a failed
                        // COM_CHANGE_USER leaves a connection that must stay inspected.
                        if matches!(payload.first(), Some(&OK_HEADER | &ERR_HEADER)) {
                            self.phase = Phase::Command;
                        }
                    }
                }
                Phase::Command => self.server_command(&mut out, now_ns),
            }
        }
        out.finish()
    }

    /// Forwards the rest of a read unread, counting it.
    fn pass_opaque(&mut self, out: &mut Out) {
        self.events.push(Event::Opaque {
            bytes: out.rest().len(),
        });
        out.pass(usize::MAX);
    }

    fn opaque(&mut self, why: &str) {
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

    /// Forwards handshake bytes while copying the current packet; returns its payload
    /// once complete.
    fn tee_handshake(&mut self, out: &mut Out) -> Option<Vec<u8>> {
        let rest = out.rest();
        let need = if self.handshake.len() < HEADER_LEN {
            HEADER_LEN - self.handshake.len()
        } else {
            HEADER_LEN + payload_len(&self.handshake) - self.handshake.len()
        };
        let n = need.min(rest.len());
        self.handshake.extend_from_slice(&rest[..n]);
        out.pass(n);
        if self.handshake.len() < HEADER_LEN {
            return None;
        }
        let len = payload_len(&self.handshake);
        if len > MAX_HANDSHAKE_PACKET {
            self.opaque("handshake packet too large to read");
            return None;
        }
        if self.handshake.len() < HEADER_LEN + len {
            return None;
        }
        let packet = std::mem::take(&mut self.handshake);
        Some(packet[HEADER_LEN..].to_vec())
    }

    fn client_login(&mut self, out: &mut Out) {
        let Some(payload) = self.tee_handshake(out) else {
            return;
        };
        if HandshakeResponse::is_ssl_request(&payload) {
            self.events.push(Event::Tls);
            self.enter_opaque();
            return;
        }
        match HandshakeResponse::decode(&payload) {
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

    fn client_command(&mut self, out: &mut Out, now_ns: u64) {
        match &mut self.client {
            Client::Start => {
                if self.held.is_empty() {
                    if let Some(packet) = self.whole_inspected_packet(out.rest()) {
                        // The common case: a whole statement in one read, inspected
                        // where it lies and forwarded without a copy unless changed.
                        return self.inspect(packet, true, out, now_ns);
                    }
                }
                let want = if self.held.len() < HEADER_LEN {
                    HEADER_LEN
                } else {
                    HEADER_LEN + payload_len(&self.held).min(COMMAND_HEAD - HEADER_LEN)
                };
                let take = want.saturating_sub(self.held.len());
                let bytes = out.take(take);
                self.held.extend_from_slice(bytes);
                if self.held.len() >= HEADER_LEN
                    && self.held.len()
                        == HEADER_LEN + payload_len(&self.held).min(COMMAND_HEAD - HEADER_LEN)
                {
                    self.start_command(out, now_ns);
                }
            }
            Client::Hold { len } => {
                let len = *len;
                let take = HEADER_LEN + len - self.held.len();
                let bytes = out.take(take);
                self.held.extend_from_slice(bytes);
                self.finish_hold(len, out, now_ns);
            }
            Client::Stream {
                remaining,
                continues,
            } => {
                let n = (*remaining).min(out.rest().len());
                *remaining -= n;
                let next = (*remaining == 0).then_some(*continues);
                out.pass(n);
                self.after_packet(next, false);
            }
            Client::Discard {
                remaining,
                continues,
            } => {
                let n = (*remaining).min(out.rest().len());
                *remaining -= n;
                let next = (*remaining == 0).then_some(*continues);
                out.take(n);
                self.after_packet(next, true);
            }
            Client::NextHeader { drop } => {
                let drop = *drop;
                let take = HEADER_LEN - self.held.len();
                let bytes = out.take(take);
                self.held.extend_from_slice(bytes);
                if self.held.len() == HEADER_LEN {
                    let header = std::mem::take(&mut self.held);
                    let len = payload_len(&header);
                    if let Some(p) = self.pending.back_mut() {
                        match &mut p.mode {
                            Mode::Refused { seq } => *seq = header[3].wrapping_add(1),
                            _ => p.seq = header[3],
                        }
                    }
                    if !drop {
                        out.emit(&header);
                    }
                    let continues = len == MAX_PAYLOAD_LEN;
                    self.client = if drop {
                        Client::Discard {
                            remaining: len,
                            continues,
                        }
                    } else {
                        Client::Stream {
                            remaining: len,
                            continues,
                        }
                    };
                }
            }
            Client::Infile(scanner) => match scanner.feed(out.rest()) {
                Ok((n, end)) => {
                    out.pass(n);
                    if let Some(last) = end {
                        self.client = Client::Start;
                        if let Some(p) = self.pending.front_mut() {
                            if let Some(s) = p.scanner.as_mut() {
                                s.local_infile_sent(last);
                            }
                            p.mode = Mode::Forward;
                        }
                    }
                }
                Err(e) => self.opaque(&format!("client LOCAL INFILE data: {e}")),
            },
        }
    }

    /// A held command is complete once its `len` payload bytes are in: inspect it.
    fn finish_hold(&mut self, len: usize, out: &mut Out, now_ns: u64) {
        if self.held.len() == HEADER_LEN + len {
            self.client = Client::Start;
            let packet = std::mem::take(&mut self.held);
            self.inspect(&packet, false, out, now_ns);
        }
    }

    /// A whole command at the start of `rest` that is inspected and within the size
    /// limit.
    fn whole_inspected_packet<'a>(&self, rest: &'a [u8]) -> Option<&'a [u8]> {
        let header = rest.get(..HEADER_LEN + 1)?;
        let len = payload_len(header);
        let command = Command::from_byte(header[HEADER_LEN]);
        if !inspected(command) || len >= MAX_PAYLOAD_LEN || len > self.hold_limit(command) {
            return None;
        }
        rest.get(..HEADER_LEN + len)
    }

    /// The longest command of this kind the filter holds.
    fn hold_limit(&self, command: Option<Command>) -> usize {
        if command == Some(Command::ChangeUser) {
            MAX_HANDSHAKE_PACKET
        } else {
            self.policy.max_statement_bytes
        }
    }

    /// Forwards an inspected command unchanged: passed through when it lies in the
    /// input, re-emitted when it was held.
    fn keep(out: &mut Out, packet: &[u8], in_input: bool) {
        if in_input {
            out.pass(packet.len());
        } else {
            out.emit(packet);
        }
    }

    /// After part of a streamed or dropped packet: `Some(continues)` when it ended.
    fn after_packet(&mut self, ended: Option<bool>, drop: bool) {
        match ended {
            Some(true) => self.client = Client::NextHeader { drop },
            Some(false) => self.client = Client::Start,
            None => {}
        }
    }

    /// The first bytes of a command are in `held`: hold it whole, or stream it.
    fn start_command(&mut self, out: &mut Out, now_ns: u64) {
        let len = payload_len(&self.held);
        let seq = self.held[3];
        let Some(&byte) = self.held.get(HEADER_LEN) else {
            // An empty packet: not a command mysqld understands; let it answer.
            let packet = std::mem::take(&mut self.held);
            out.emit(&packet);
            return;
        };
        let command = Command::from_byte(byte);
        if inspected(command) {
            let limit = self.hold_limit(command);
            if len >= MAX_PAYLOAD_LEN || len > limit {
                let kind = command.map_or("other", Command::name);
                let err = ErrPacket::new(
                    crate::protocol::error_codes::ER_NET_PACKET_TOO_LARGE,
                    format!(
                        "Statement of {len} bytes or more is over the filter's maxStatementBytes ({limit})"
                    ),
                );
                let what = Replaced {
                    consume: 0,
                    seq,
                    kind,
                };
                self.refuse(out, what, err, Refusal::TooLarge, now_ns);
                let remaining = len - (self.held.len() - HEADER_LEN);
                self.held.clear();
                self.client = Client::Discard {
                    remaining,
                    continues: len == MAX_PAYLOAD_LEN,
                };
                return;
            }
            self.client = Client::Hold { len };
            return self.finish_hold(len, out, now_ns);
        }
        let head = std::mem::take(&mut self.held);
        let remaining = len - (head.len() - HEADER_LEN);
        out.emit(&head);
        self.client = Client::Stream {
            remaining,
            continues: len == MAX_PAYLOAD_LEN,
        };
        let Some(command) = command else {
            self.expect(
                ResponseKind::Generic {
                    local_infile: false,
                },
                seq,
                info("unknown", "unknown"),
                now_ns,
            );
            return;
        };
        let statement_id = head
            .get(HEADER_LEN + 1..HEADER_LEN + 5)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let known = statement_id.and_then(|id| self.prepared.get(&id).cloned());
        match command {
            Command::StmtClose => {
                if let Some(id) = statement_id {
                    self.prepared.remove(&id);
                }
            }
            Command::StmtExecute | Command::StmtBulkExecute | Command::StmtFetch => {
                let mut i = known.unwrap_or_else(|| info(command.name(), "other"));
                i.command = command.name();
                let select = i.select;
                self.expect(ResponseKind::for_command(command), seq, i, now_ns);
                if select {
                    if let Some(p) = self.pending.back_mut() {
                        p.row_limit = self.policy.max_rows;
                    }
                }
            }
            Command::Quit => {}
            _ => {
                let kind = ResponseKind::for_command(command);
                if kind != ResponseKind::None {
                    self.expect(kind, seq, info(command.name(), command.name()), now_ns);
                    if command == Command::ResetConnection {
                        self.prepared.clear();
                    }
                }
            }
        }
    }

    fn expect(&mut self, kind: ResponseKind, seq: u8, info: Info, now_ns: u64) {
        if self.pending.len() >= MAX_PENDING {
            self.opaque("too many pipelined commands");
            return;
        }
        self.pending.push_back(Pending {
            kind,
            seq,
            scanner: None,
            mode: Mode::Forward,
            peek: Vec::new(),
            row_limit: None,
            info,
            started_ns: now_ns,
            after: After::Nothing,
        });
    }

    /// Replaces the command `what` by a SIGNAL that raises `err`.
    fn refuse(
        &mut self,
        out: &mut Out,
        what: Replaced,
        err: ErrPacket,
        reason: Refusal,
        now_ns: u64,
    ) {
        let Replaced { consume, seq, kind } = what;
        out.take(consume);
        out.emit(&signal_packet(&err, 0));
        self.events.push(Event::Refused { reason, kind });
        let mut i = info("query", kind);
        i.command = "refused";
        self.expect(
            ResponseKind::Generic {
                local_infile: false,
            },
            0,
            i,
            now_ns,
        );
        if let Some(p) = self.pending.back_mut() {
            p.mode = Mode::Refused {
                seq: seq.wrapping_add(1),
            };
        }
    }

    /// A whole inspected command (in the input at `out`'s position when `in_input`,
    /// else held): check it, then forward it, a rewrite, or a refusal.
    fn inspect(&mut self, packet: &[u8], in_input: bool, out: &mut Out, now_ns: u64) {
        let seq = packet[3];
        let command = packet.get(HEADER_LEN).copied().and_then(Command::from_byte);
        let body = packet.get(HEADER_LEN + 1..).unwrap_or_default();
        match command {
            Some(Command::InitDb) => {
                Self::keep(out, packet, in_input);
                let db = String::from_utf8_lossy(body).into_owned();
                self.expect(
                    ResponseKind::Generic {
                        local_infile: false,
                    },
                    seq,
                    info("init_db", "use"),
                    now_ns,
                );
                if let Some(p) = self.pending.back_mut() {
                    p.after = After::Database(db);
                }
            }
            Some(Command::ChangeUser) => {
                if let Ok(change) = ChangeUser::decode(body, self.caps) {
                    self.user = String::from_utf8_lossy(&change.username).into_owned();
                    self.database = (!change.database.is_empty())
                        .then(|| String::from_utf8_lossy(&change.database).into_owned());
                    self.events.push(Event::Login {
                        user: self.user.clone(),
                    });
                }
                Self::keep(out, packet, in_input);
                self.prepared.clear();
                // The answer is an authentication exchange, read in the Auth phase
                // once the responses before it are done.
                self.expect(
                    ResponseKind::None,
                    seq,
                    info("change_user", "change_user"),
                    now_ns,
                );
                if let Some(p) = self.pending.back_mut() {
                    p.after = After::Reauth;
                }
            }
            Some(command @ (Command::Query | Command::StmtPrepare)) => {
                self.inspect_sql(command, packet, in_input, out, now_ns);
            }
            _ => Self::keep(out, packet, in_input),
        }
    }

    fn inspect_sql(
        &mut self,
        command: Command,
        packet: &[u8],
        in_input: bool,
        out: &mut Out,
        now_ns: u64,
    ) {
        let seq = packet[3];
        // What of the input a replacement stands for.
        let original_len = if in_input { packet.len() } else { 0 };
        let replaced = |st: &crate::guard::statement::Statement| Replaced {
            consume: original_len,
            seq,
            kind: st.kind.name(),
        };
        let body = packet.get(HEADER_LEN + 1..).unwrap_or_default();
        let utf8 = std::str::from_utf8(body).ok();
        let lossy;
        let original: &str = match utf8 {
            Some(t) => t,
            None => {
                lossy = String::from_utf8_lossy(body);
                &lossy
            }
        };
        let policy = Arc::clone(&self.policy);
        let mut st = analyze(original);
        let mut rewritten: Option<String> = None;
        let client = self
            .peer
            .certificate
            .as_deref()
            .unwrap_or(&self.peer.address);
        if !policy.rules.is_empty() {
            let who = Subject {
                user: &self.user,
                client,
            };
            let verdict = policy
                .rules
                .evaluate(who, original, &st, now_ns / 1_000_000);
            for rule in verdict.logged {
                self.events.push(Event::RuleLogged { rule });
            }
            match verdict.action {
                Decision::Run => {}
                Decision::Deny { rule, message } => {
                    let err = refusal::rule_denied(&rule, &message);
                    return self.refuse(out, replaced(&st), err, Refusal::Rule(rule), now_ns);
                }
                Decision::RateLimited { rule } => {
                    let err = refusal::rate_limited(&rule);
                    return self.refuse(out, replaced(&st), err, Refusal::RateLimit(rule), now_ns);
                }
            }
            // A text that is not UTF-8 is checked but never rewritten.
            if let (Some(new), Some(_)) = (verdict.rewritten, utf8) {
                st = analyze(&new);
                rewritten = Some(new);
                self.events.push(Event::Rewritten);
            }
        }
        let text = rewritten.as_deref().unwrap_or(original);
        if let Err(err) = self.check_access(text, &st) {
            return self.refuse(out, replaced(&st), err, Refusal::Access, now_ns);
        }
        let select = st.kind == Kind::Select;
        let mut limited = None;
        if let (Some(max), Command::Query, Some(at), true) =
            (policy.max_rows, command, st.limit_at, utf8.is_some())
        {
            if !matches!(st.limit, Limit::Rows(n) if n <= max) {
                limited = Some(with_limit(text, at, max.saturating_add(1)));
            }
        }
        let final_text = limited.as_deref().or(rewritten.as_deref());
        match final_text {
            Some(new) if new.len() + 1 >= MAX_PAYLOAD_LEN => {
                let err = ErrPacket::new(
                    crate::protocol::error_codes::ER_NET_PACKET_TOO_LARGE,
                    "The rewritten statement is too large for one packet",
                );
                return self.refuse(out, replaced(&st), err, Refusal::TooLarge, now_ns);
            }
            Some(new) => {
                let mut payload = Vec::with_capacity(new.len() + 1);
                payload.push(command as u8);
                payload.extend_from_slice(new.as_bytes());
                let mut bytes = Vec::with_capacity(payload.len() + HEADER_LEN);
                let mut s = seq;
                write_packet(&mut bytes, &mut s, &payload);
                out.take(original_len);
                out.emit(&bytes);
            }
            None => Self::keep(out, packet, in_input),
        }
        let i = Info {
            command: command.name(),
            kind: st.kind.name(),
            table: st.tables.first().cloned(),
            select,
        };
        self.expect(ResponseKind::for_command(command), seq, i, now_ns);
        if let Some(p) = self.pending.back_mut() {
            if select && (command == Command::Query) {
                p.row_limit = policy.max_rows;
            }
            if command == Command::StmtPrepare {
                p.after = After::Prepared;
            } else if st.kind == Kind::Use {
                if let Some(db) = use_database(text) {
                    p.after = After::Database(db);
                }
            }
        }
    }

    /// The access policy's verdict, as the ERR a refusal sends.
    #[cfg(feature = "access-policy")]
    fn check_access(
        &self,
        text: &str,
        st: &crate::guard::statement::Statement,
    ) -> Result<(), ErrPacket> {
        use crate::guard::access::{table_access, Identity};
        if self.policy.access.is_empty() {
            return Ok(());
        }
        let tables = table_access(text, st, self.database.as_deref());
        let who = Identity {
            user: &self.user,
            certificate: self.peer.certificate.as_deref(),
        };
        self.policy
            .access
            .check(who, &tables, st)
            .map_err(|denied| {
                refusal::access_denied(&denied, &self.user, host_of(&self.peer.address))
            })
    }

    /// Without the access policy compiled in, a configuration with one is refused.
    #[cfg(not(feature = "access-policy"))]
    fn check_access(
        &self,
        _text: &str,
        _st: &crate::guard::statement::Statement,
    ) -> Result<(), ErrPacket> {
        Ok(())
    }

    fn server_command(&mut self, out: &mut Out, now_ns: u64) {
        let caps = self.caps;
        let Some(p) = self.pending.front_mut() else {
            // Nothing asked: mysqld may still send an ERR before closing (an idle
            // timeout). Forward it.
            out.pass(usize::MAX);
            return;
        };
        if p.kind == ResponseKind::None {
            let after = p.after.clone();
            self.pending.pop_front();
            if after == After::Reauth {
                self.phase = Phase::Auth;
            }
            return;
        }
        let scanner = p.scanner.get_or_insert_with(|| {
            let mut s = ResponseScanner::after_command(p.kind, caps, p.seq);
            s.set_row_limit(p.row_limit, None);
            s
        });
        match p.mode {
            Mode::Forward | Mode::Refused { .. } => {
                let rest = out.rest();
                let scan = match scanner.feed(rest) {
                    Ok(scan) => scan,
                    Err(e) => {
                        return self.server_broke(out, &e);
                    }
                };
                let consumed = match scan {
                    Scan::NeedMore => rest.len(),
                    Scan::Complete { consumed }
                    | Scan::RowLimit { consumed }
                    | Scan::LocalInfile { consumed } => consumed,
                };
                if let Mode::Refused { seq } = p.mode {
                    // The SIGNAL's answer is one small ERR: held whole, then sent with
                    // the sequence id the client expects.
                    p.peek.extend_from_slice(out.take(consumed));
                    if matches!(scan, Scan::Complete { .. }) {
                        let mut held = std::mem::take(&mut p.peek);
                        if let Some(s) = held.get_mut(3) {
                            *s = seq;
                        }
                        out.emit(&held);
                    }
                } else {
                    out.pass(consumed);
                }
                match scan {
                    Scan::Complete { .. } => self.finish(now_ns),
                    Scan::RowLimit { .. } => p.mode = Mode::Peek,
                    Scan::LocalInfile { .. } => {
                        let next = scanner.last_seq().wrapping_add(1);
                        p.mode = Mode::Infile;
                        self.client = Client::Infile(InfileScanner::new(next));
                    }
                    Scan::NeedMore => {}
                }
            }
            Mode::Peek => {
                let want = HEADER_LEN + 1 - p.peek.len();
                let bytes = out.take(want);
                p.peek.extend_from_slice(bytes);
                let Some(row) = scanner.next_is_row(&p.peek) else {
                    return;
                };
                let peek = std::mem::take(&mut p.peek);
                scanner.set_row_limit(None, None);
                let result = if row {
                    p.mode = Mode::Cut {
                        seq: scanner.last_seq().wrapping_add(1),
                    };
                    scanner.feed(&peek)
                } else {
                    p.mode = Mode::Forward;
                    out.emit(&peek);
                    scanner.feed(&peek)
                };
                match result {
                    Ok(Scan::Complete { .. }) => self.finish(now_ns),
                    Ok(_) => {}
                    Err(e) => self.server_broke(out, &e),
                }
            }
            Mode::Cut { seq } => {
                let rest = out.rest();
                match scanner.feed(rest) {
                    Ok(Scan::Complete { consumed }) => {
                        out.take(consumed);
                        let status = (scanner.status(), scanner.warnings(), scanner.rows());
                        let payload = self.cut_replacement(status);
                        let mut bytes = Vec::new();
                        let mut s = seq;
                        write_packet(&mut bytes, &mut s, &payload);
                        out.emit(&bytes);
                        self.finish(now_ns);
                    }
                    Ok(Scan::NeedMore) => {
                        out.take(rest.len());
                    }
                    // Not in the middle of a result; the next bytes will show how the
                    // server broke the protocol.
                    Ok(Scan::RowLimit { consumed } | Scan::LocalInfile { consumed }) => {
                        out.take(consumed);
                    }
                    Err(e) => {
                        self.server_broke(out, &e);
                    }
                }
            }
            Mode::Infile => {
                // The server says nothing while the client sends its file.
                out.pass(usize::MAX);
                self.opaque("server data during LOCAL INFILE");
            }
        }
    }

    /// The server broke the protocol: what the filter held of its response goes out,
    /// then everything as it comes.
    fn server_broke(&mut self, out: &mut Out, e: &crate::protocol::exchange::ScanError) {
        if let Some(p) = self.pending.front_mut() {
            let held = std::mem::take(&mut p.peek);
            out.emit(&held);
        }
        out.pass(usize::MAX);
        self.opaque(&format!("server response: {e}"));
    }

    /// The packet that ends a cut result: an ERR, or a normal terminator.
    fn cut_replacement(&mut self, (status, warnings, rows): (u16, u16, u64)) -> Vec<u8> {
        let max = self.policy.max_rows.unwrap_or(0);
        self.events.push(Event::RowLimited { rows });
        match self.policy.row_limit_mode {
            RowLimitMode::Error => {
                refusal::row_limit(max, "limits.max_rows", "add a LIMIT to the statement").encode()
            }
            RowLimitMode::Truncate => {
                let status = status & !crate::protocol::status::MORE_RESULTS_EXISTS;
                if self.caps & caps::DEPRECATE_EOF != 0 {
                    OkPacket {
                        status,
                        warnings,
                        ..OkPacket::default()
                    }
                    .encode_as_eof(self.caps)
                } else {
                    EofPacket { warnings, status }.encode()
                }
            }
        }
    }

    /// The front response is complete.
    fn finish(&mut self, now_ns: u64) {
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        let (error, rows, prepared) = p.scanner.as_ref().map_or((None, 0, None), |s| {
            (s.error_code(), s.rows(), s.prepared())
        });
        let error = match p.mode {
            Mode::Cut { .. } if self.policy.row_limit_mode == RowLimitMode::Error => {
                Some(crate::protocol::error_codes::ER_TOO_BIG_SELECT.code)
            }
            _ => error,
        };
        if error.is_none() {
            match &p.after {
                After::Database(db) => self.database = Some(db.clone()),
                After::Prepared => {
                    if let Some(info) = prepared {
                        if self.prepared.len() < MAX_PREPARED {
                            self.prepared.insert(info.statement_id, p.info.clone());
                        }
                    }
                }
                After::Nothing | After::Reauth => {}
            }
        }
        let rows = match p.mode {
            Mode::Cut { .. } => p.row_limit.unwrap_or(rows).min(rows),
            _ => rows,
        };
        self.events.push(Event::Statement(Statement {
            command: p.info.command,
            kind: p.info.kind,
            table: p.info.table,
            latency_ns: now_ns.saturating_sub(p.started_ns),
            error,
            rows,
        }));
    }
}

/// Commands held whole and checked before they go on.
fn inspected(command: Option<Command>) -> bool {
    matches!(
        command,
        Some(Command::Query | Command::StmtPrepare | Command::InitDb | Command::ChangeUser)
    )
}

fn info(command: &'static str, kind: &'static str) -> Info {
    Info {
        command,
        kind,
        table: None,
        select: false,
    }
}

/// The payload length a packet header (at least 4 bytes) announces.
fn payload_len(header: &[u8]) -> usize {
    usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16
}

/// The host part of `ip:port`, `[v6]:port` or a bare address.
#[cfg_attr(not(feature = "access-policy"), allow(dead_code))]
fn host_of(address: &str) -> &str {
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
