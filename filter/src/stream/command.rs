//! The client's side of a connection: commands held whole and checked (query rules,
//! access policy, row limit), rewritten or refused, or streamed through as they come.

use super::connection::{
    host_of, info, inspected, payload_len, After, Client, ConnectionFilter, Info, Mode, Pending,
    Replaced, COMMAND_HEAD, MAX_HANDSHAKE_PACKET, MAX_PENDING,
};
use super::out::Out;
use super::signal::signal_packet;
use super::{Event, Refusal};
use crate::guard::refusal;
use crate::guard::rules::{Decision, Subject};
use crate::guard::statement::{analyze, use_database, with_limit, Kind, Limit};
use crate::protocol::exchange::ResponseKind;
use crate::protocol::handshake::ChangeUser;
use crate::protocol::packet::{write_packet, HEADER_LEN, MAX_PAYLOAD_LEN};
use crate::protocol::{Command, ErrPacket};
use std::sync::Arc;

impl ConnectionFilter {
    pub(super) fn client_command(&mut self, out: &mut Out, now_ns: u64) {
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
                .evaluate_each(who, original, &st, now_ns / 1_000_000);
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
        use crate::guard::access::Identity;
        if self.policy.access.is_empty() {
            return Ok(());
        }
        let tables = self
            .policy
            .access_cache
            .table_access(text, st, self.database.as_deref());
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
}
