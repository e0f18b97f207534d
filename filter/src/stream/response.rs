//! The server's side of a connection: each response scanned as it passes, paired with
//! its command; the answer to a refusal given the client's sequence id; a result over
//! the row limit cut and ended with an ERR or a normal terminator.

use super::connection::{After, Client, ConnectionFilter, Mode, Phase, MAX_PREPARED};
use super::out::Out;
use super::policy::RowLimitMode;
use super::{Event, Statement};
use crate::guard::refusal;
use crate::protocol::constants::capabilities as caps;
use crate::protocol::exchange::{InfileScanner, ResponseKind, ResponseScanner, Scan, ScanError};
use crate::protocol::packet::{write_packet, HEADER_LEN};
use crate::protocol::{EofPacket, OkPacket};

impl ConnectionFilter {
    pub(super) fn server_command(&mut self, out: &mut Out, now_ns: u64) {
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
                if row {
                    p.mode = Mode::Cut {
                        seq: scanner.last_seq().wrapping_add(1),
                    };
                } else {
                    p.mode = Mode::Forward;
                    out.emit(&peek);
                }
                match scanner.feed(&peek) {
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
    fn server_broke(&mut self, out: &mut Out, e: &ScanError) {
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
