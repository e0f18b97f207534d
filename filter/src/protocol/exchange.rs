//! Command/response exchanges on the raw byte stream: which response a command expects,
//! and a streaming scanner that finds where that response ends while its bytes are
//! forwarded untouched.
//!
//! The scanner is the piece that lets the sidecar forward single-upstream results as
//! raw packets: it reads packet headers and the first bytes of each packet (enough to
//! tell OK, ERR, EOF, LOCAL INFILE, column counts and prepare results apart) and never
//! copies or decodes rows.

use super::constants::{capabilities as caps, status, Command};
use super::packet::{HEADER_LEN, MAX_PAYLOAD_LEN};
use super::response::{terminator_status, EOF_HEADER, ERR_HEADER, LOCAL_INFILE_HEADER, OK_HEADER};
use super::wire::Reader;
use thiserror::Error;

/// What a command's response looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// OK, ERR, EOF, or one or more result sets; LOCAL INFILE for COM_QUERY.
    Generic { local_infile: bool },
    /// COM_STMT_PREPARE: ERR, or PREPARE_OK with parameter and column definitions.
    Prepare,
    /// COM_STMT_FETCH: rows then a terminator.
    Fetch,
    /// COM_FIELD_LIST: column definitions then a terminator.
    FieldList,
    /// COM_STATISTICS: one text packet.
    Statistics,
    /// COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA: nothing comes back.
    None,
}

impl ResponseKind {
    /// The response a command expects.
    pub fn for_command(command: Command) -> Self {
        match command {
            Command::Query => ResponseKind::Generic { local_infile: true },
            Command::StmtPrepare => ResponseKind::Prepare,
            Command::StmtFetch => ResponseKind::Fetch,
            Command::FieldList => ResponseKind::FieldList,
            Command::Statistics => ResponseKind::Statistics,
            Command::Quit | Command::StmtClose | Command::StmtSendLongData => ResponseKind::None,
            _ => ResponseKind::Generic {
                local_infile: false,
            },
        }
    }
}

/// The upstream broke the protocol; the connection cannot be trusted any more.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    #[error("upstream packets out of order (expected sequence id {expected}, got {got})")]
    OutOfOrder { expected: u8, got: u8 },
    #[error("malformed upstream response: {0}")]
    Malformed(&'static str),
}

/// Progress after feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// All bytes belong to the response, which continues.
    NeedMore,
    /// The response ended after `consumed` bytes of the slice just fed.
    Complete { consumed: usize },
    /// A row limit set with [`ResponseScanner::set_row_limit`] was reached after
    /// `consumed` bytes: what follows is either the end of the result set or rows beyond
    /// the limit ([`ResponseScanner::next_is_row`] tells which).
    RowLimit { consumed: usize },
    /// The server sent a LOCAL INFILE request ending after `consumed` bytes: the client
    /// now sends the file, then the response continues (call
    /// [`ResponseScanner::local_infile_sent`]).
    LocalInfile { consumed: usize },
}

/// Facts about a completed `COM_STMT_PREPARE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedInfo {
    pub statement_id: u32,
    pub num_columns: u16,
    pub num_params: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Start of a response or of the next result of a multi-result response.
    First,
    Columns {
        left: u64,
    },
    ColumnsEof,
    Rows,
    FieldList,
    Statistics,
    PrepareFirst,
    PrepareParams {
        left: u16,
        columns: u16,
    },
    PrepareParamsEof {
        columns: u16,
    },
    PrepareColumns {
        left: u16,
    },
    PrepareColumnsEof,
    AwaitInfileData,
    Done,
}

/// How many leading bytes of each packet are kept for classification.
const CAPTURE: usize = 64;

/// Streaming scanner for one response.
#[derive(Debug)]
pub struct ResponseScanner {
    caps: u32,
    kind: ResponseKind,
    phase: Phase,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Payload bytes still to come in the current physical packet.
    remaining: usize,
    /// Length of the current physical packet's payload.
    packet_len: usize,
    /// The current physical packet continues a logical packet (not classified).
    continuation: bool,
    /// The current physical packet is followed by a continuation.
    continues: bool,
    capture: [u8; CAPTURE],
    captured: usize,
    next_seq: u8,
    last_seq: u8,
    /// Sequence id of the command's last packet.
    command_seq: u8,
    status: u16,
    error_code: Option<u16>,
    prepared: Option<PreparedInfo>,
    rows: u64,
    results: u32,
    warnings: u16,
    ok: Option<OkSummary>,
    row_bytes: u64,
    max_rows: Option<u64>,
    max_row_bytes: Option<u64>,
    limit_hit: bool,
}

/// The counters of the last OK packet of a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OkSummary {
    pub affected_rows: u64,
    pub last_insert_id: u64,
}

impl ResponseScanner {
    /// A scanner for the response to a command sent as one physical packet (sequence id
    /// 0), under the negotiated capabilities `caps`.
    pub fn new(kind: ResponseKind, caps: u32) -> Self {
        Self::after_command(kind, caps, 0)
    }

    /// A scanner for the response to a command whose last physical packet carried
    /// `last_command_seq` (commands of 16 MiB and more span several packets, and the
    /// response continues the sequence).
    pub fn after_command(kind: ResponseKind, caps: u32, last_command_seq: u8) -> Self {
        let phase = match kind {
            ResponseKind::Generic { .. } => Phase::First,
            ResponseKind::Prepare => Phase::PrepareFirst,
            ResponseKind::Fetch => Phase::Rows,
            ResponseKind::FieldList => Phase::FieldList,
            ResponseKind::Statistics => Phase::Statistics,
            ResponseKind::None => Phase::Done,
        };
        Self {
            caps,
            kind,
            phase,
            header: [0; HEADER_LEN],
            header_len: 0,
            remaining: 0,
            packet_len: 0,
            continuation: false,
            continues: false,
            capture: [0; CAPTURE],
            captured: 0,
            next_seq: last_command_seq.wrapping_add(1),
            last_seq: last_command_seq,
            command_seq: last_command_seq,
            status: 0,
            error_code: None,
            prepared: None,
            rows: 0,
            results: 0,
            warnings: 0,
            ok: None,
            row_bytes: 0,
            max_rows: None,
            max_row_bytes: None,
            limit_hit: false,
        }
    }

    /// Stops the scan ([`Scan::RowLimit`]) once `rows` rows or `bytes` bytes of rows have
    /// been seen, so that the caller can decide about the rest before forwarding it.
    pub fn set_row_limit(&mut self, rows: Option<u64>, bytes: Option<u64>) {
        self.max_rows = rows;
        self.max_row_bytes = bytes;
    }

    /// After [`Scan::RowLimit`]: whether the packet starting at `next` (the bytes that
    /// follow) is another row rather than the end of the result set; `None` until its
    /// header and first byte are there.
    pub fn next_is_row(&self, next: &[u8]) -> Option<bool> {
        let header = next.get(..HEADER_LEN + 1)?;
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let first = header[HEADER_LEN];
        let terminator = first == ERR_HEADER || (first == EOF_HEADER && len < MAX_PAYLOAD_LEN);
        Some(!terminator)
    }

    /// Warnings reported by the final OK or EOF.
    pub fn warnings(&self) -> u16 {
        self.warnings
    }

    /// Affected rows and insert id of the last OK packet (not of result-set terminators).
    pub fn ok(&self) -> Option<OkSummary> {
        self.ok
    }

    /// Payload length of the last physical packet seen (for replacing a final ERR).
    pub fn last_packet_len(&self) -> usize {
        self.packet_len
    }

    /// Whether the response is complete (immediately true for commands without one).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Status flags of the last OK or EOF seen (`SERVER_STATUS_IN_TRANS`, ...).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The error code if the response ended in ERR.
    pub fn error_code(&self) -> Option<u16> {
        self.error_code
    }

    /// Set when a COM_STMT_PREPARE succeeded.
    pub fn prepared(&self) -> Option<PreparedInfo> {
        self.prepared
    }

    /// Rows seen so far (all result sets).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether any byte of the response has been seen.
    pub fn started(&self) -> bool {
        self.next_seq != self.command_seq.wrapping_add(1) || self.header_len > 0
    }

    /// Sequence id of the last packet seen; a packet the sidecar injects into this
    /// response (an ERR when the upstream is lost) uses the next one.
    pub fn last_seq(&self) -> u8 {
        self.last_seq
    }

    /// Whether the bytes fed so far end exactly at a packet boundary, so that a packet
    /// can be injected into the stream.
    pub fn at_packet_boundary(&self) -> bool {
        self.header_len == 0 && self.remaining == 0
    }

    /// After the client's LOCAL INFILE data (ending with an empty packet whose sequence
    /// id was `last_client_seq`) has been forwarded, the server's OK/ERR follows.
    pub fn local_infile_sent(&mut self, last_client_seq: u8) {
        self.phase = Phase::First;
        self.next_seq = last_client_seq.wrapping_add(1);
    }

    /// Feeds bytes received from the upstream.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Scan, ScanError> {
        let mut at = 0;
        while at < bytes.len() {
            if self.phase == Phase::Done || self.phase == Phase::AwaitInfileData {
                return Err(ScanError::Malformed("data after the end of the response"));
            }
            if self.header_len < HEADER_LEN {
                let n = (HEADER_LEN - self.header_len).min(bytes.len() - at);
                self.header[self.header_len..self.header_len + n]
                    .copy_from_slice(&bytes[at..at + n]);
                self.header_len += n;
                at += n;
                if self.header_len < HEADER_LEN {
                    return Ok(Scan::NeedMore);
                }
                self.start_packet()?;
                if self.remaining == 0 {
                    if let Some(scan) = self.end_of_packet(at)? {
                        return Ok(scan);
                    }
                }
                continue;
            }
            let n = self.remaining.min(bytes.len() - at);
            if !self.continuation && self.captured < CAPTURE {
                let c = n.min(CAPTURE - self.captured);
                self.capture[self.captured..self.captured + c].copy_from_slice(&bytes[at..at + c]);
                self.captured += c;
            }
            self.remaining -= n;
            at += n;
            if self.remaining == 0 {
                if let Some(scan) = self.end_of_packet(at)? {
                    return Ok(scan);
                }
            }
        }
        Ok(Scan::NeedMore)
    }

    /// A physical packet ended after `at` bytes of the slice being fed: whether the scan
    /// stops there (end of response, LOCAL INFILE request, or the row limit).
    fn end_of_packet(&mut self, at: usize) -> Result<Option<Scan>, ScanError> {
        if self.finish_packet()? {
            return Ok(Some(self.complete(at)));
        }
        if self.limit_hit {
            self.limit_hit = false;
            return Ok(Some(Scan::RowLimit { consumed: at }));
        }
        Ok(None)
    }

    fn complete(&self, consumed: usize) -> Scan {
        if self.phase == Phase::AwaitInfileData {
            Scan::LocalInfile { consumed }
        } else {
            Scan::Complete { consumed }
        }
    }

    fn start_packet(&mut self) -> Result<(), ScanError> {
        let h = self.header;
        let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        let seq = h[3];
        if seq != self.next_seq {
            return Err(ScanError::OutOfOrder {
                expected: self.next_seq,
                got: seq,
            });
        }
        self.last_seq = seq;
        self.next_seq = seq.wrapping_add(1);
        self.continuation = self.continues;
        self.continues = len == MAX_PAYLOAD_LEN;
        self.packet_len = len;
        self.remaining = len;
        if !self.continuation {
            self.captured = 0;
        }
        Ok(())
    }

    /// Called when a physical packet's payload is complete; returns whether the
    /// response (or its part before LOCAL INFILE data) is complete.
    fn finish_packet(&mut self) -> Result<bool, ScanError> {
        self.header_len = 0;
        if self.continuation {
            return Ok(false);
        }
        let len = self.packet_len;
        let capture = self.capture;
        let head = &capture[..self.captured];
        let first = head.first().copied();
        let is_eof = first == Some(EOF_HEADER) && len < MAX_PAYLOAD_LEN;
        let deprecate_eof = self.caps & caps::DEPRECATE_EOF != 0;
        self.phase = match self.phase {
            Phase::First => match first {
                Some(OK_HEADER) => {
                    let (status, warnings, ok) = ok_fields(head, self.caps)?;
                    self.status = status;
                    self.warnings = warnings;
                    self.ok = Some(ok);
                    self.results += 1;
                    self.after_terminator()
                }
                Some(ERR_HEADER) => self.on_error(head),
                Some(LOCAL_INFILE_HEADER)
                    if self.kind == (ResponseKind::Generic { local_infile: true }) =>
                {
                    Phase::AwaitInfileData
                }
                Some(EOF_HEADER) if is_eof => {
                    self.status = terminator_status(head, self.caps).unwrap_or(self.status);
                    self.warnings = terminator_warnings(head, self.caps);
                    self.after_terminator()
                }
                Some(_) => {
                    let n = Reader::new(head)
                        .lenenc_int("column count")
                        .map_err(|_| ScanError::Malformed("bad column count"))?;
                    if n == 0 {
                        return Err(ScanError::Malformed("zero column count"));
                    }
                    Phase::Columns { left: n }
                }
                None => return Err(ScanError::Malformed("empty packet")),
            },
            Phase::Columns { left } => {
                if first == Some(ERR_HEADER) {
                    self.on_error(head)
                } else if left > 1 {
                    Phase::Columns { left: left - 1 }
                } else if deprecate_eof {
                    Phase::Rows
                } else {
                    Phase::ColumnsEof
                }
            }
            Phase::ColumnsEof => {
                if first == Some(ERR_HEADER) {
                    self.on_error(head)
                } else if is_eof {
                    let st = terminator_status(head, self.caps).unwrap_or(0);
                    if st & status::CURSOR_EXISTS != 0 {
                        // A cursor was opened: rows come later, through COM_STMT_FETCH.
                        self.status = st;
                        Phase::Done
                    } else {
                        Phase::Rows
                    }
                } else {
                    return Err(ScanError::Malformed(
                        "expected EOF after column definitions",
                    ));
                }
            }
            Phase::Rows => {
                if first == Some(ERR_HEADER) {
                    self.on_error(head)
                } else if is_eof {
                    self.status = terminator_status(head, self.caps).unwrap_or(self.status);
                    self.warnings = terminator_warnings(head, self.caps);
                    self.results += 1;
                    self.after_terminator()
                } else {
                    self.rows += 1;
                    self.row_bytes += (HEADER_LEN + len) as u64;
                    self.limit_hit = self.max_rows.is_some_and(|m| self.rows >= m)
                        || self.max_row_bytes.is_some_and(|m| self.row_bytes >= m);
                    Phase::Rows
                }
            }
            Phase::FieldList => {
                if first == Some(ERR_HEADER) {
                    self.on_error(head)
                } else if is_eof {
                    self.status = terminator_status(head, self.caps).unwrap_or(self.status);
                    Phase::Done
                } else {
                    Phase::FieldList
                }
            }
            Phase::Statistics => {
                if first == Some(ERR_HEADER) {
                    self.on_error(head)
                } else {
                    Phase::Done
                }
            }
            Phase::PrepareFirst => match first {
                Some(ERR_HEADER) => self.on_error(head),
                Some(OK_HEADER) => {
                    let mut r = Reader::new(head);
                    let info = (|| {
                        r.skip(1, "header")?;
                        Ok::<_, super::wire::DecodeError>(PreparedInfo {
                            statement_id: r.u32("statement id")?,
                            num_columns: r.u16("columns")?,
                            num_params: r.u16("params")?,
                        })
                    })()
                    .map_err(|_| ScanError::Malformed("bad COM_STMT_PREPARE response"))?;
                    self.prepared = Some(info);
                    self.prepare_params(info.num_params, info.num_columns)
                }
                _ => return Err(ScanError::Malformed("bad COM_STMT_PREPARE response")),
            },
            Phase::PrepareParams { left, columns } => {
                if left > 1 {
                    Phase::PrepareParams {
                        left: left - 1,
                        columns,
                    }
                } else if deprecate_eof {
                    self.prepare_columns(columns)
                } else {
                    Phase::PrepareParamsEof { columns }
                }
            }
            Phase::PrepareParamsEof { columns } => {
                if !is_eof {
                    return Err(ScanError::Malformed("expected EOF after parameters"));
                }
                self.prepare_columns(columns)
            }
            Phase::PrepareColumns { left } => {
                if left > 1 {
                    Phase::PrepareColumns { left: left - 1 }
                } else if deprecate_eof {
                    Phase::Done
                } else {
                    Phase::PrepareColumnsEof
                }
            }
            Phase::PrepareColumnsEof => {
                if !is_eof {
                    return Err(ScanError::Malformed("expected EOF after columns"));
                }
                Phase::Done
            }
            Phase::AwaitInfileData | Phase::Done => {
                return Err(ScanError::Malformed("data after the end of the response"))
            }
        };
        Ok(matches!(self.phase, Phase::Done | Phase::AwaitInfileData))
    }

    fn after_terminator(&self) -> Phase {
        if self.status & status::MORE_RESULTS_EXISTS != 0 {
            Phase::First
        } else {
            Phase::Done
        }
    }

    fn on_error(&mut self, head: &[u8]) -> Phase {
        let code = head
            .get(1..3)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .unwrap_or(0);
        self.error_code = Some(code);
        Phase::Done
    }

    fn prepare_params(&self, params: u16, columns: u16) -> Phase {
        if params > 0 {
            Phase::PrepareParams {
                left: params,
                columns,
            }
        } else {
            self.prepare_columns(columns)
        }
    }

    fn prepare_columns(&self, columns: u16) -> Phase {
        if columns > 0 {
            Phase::PrepareColumns { left: columns }
        } else {
            Phase::Done
        }
    }
}

/// Status, warnings and counters of an OK packet's leading bytes.
fn ok_fields(head: &[u8], caps: u32) -> Result<(u16, u16, OkSummary), ScanError> {
    let mut r = Reader::new(head);
    let mut parse = || -> Result<(u16, u16, OkSummary), super::wire::DecodeError> {
        r.skip(1, "header")?;
        let affected_rows = r.lenenc_int("affected rows")?;
        let last_insert_id = r.lenenc_int("last insert id")?;
        let ok = OkSummary {
            affected_rows,
            last_insert_id,
        };
        if caps & caps::PROTOCOL_41 != 0 {
            Ok((r.u16("status")?, r.u16("warnings")?, ok))
        } else if caps & caps::TRANSACTIONS != 0 {
            Ok((r.u16("status")?, 0, ok))
        } else {
            Ok((0, 0, ok))
        }
    };
    parse().map_err(|_| ScanError::Malformed("bad OK packet"))
}

/// Warnings of an OK or EOF terminator's leading bytes.
fn terminator_warnings(head: &[u8], caps: u32) -> u16 {
    match head.first() {
        Some(&EOF_HEADER) if caps & caps::DEPRECATE_EOF != 0 && head.len() > 5 => {
            ok_fields(head, caps).map_or(0, |(_, w, _)| w)
        }
        Some(&EOF_HEADER) => head
            .get(1..3)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]])),
        _ => 0,
    }
}

/// Scans the client's LOCAL INFILE data stream for its end (an empty packet), so the
/// driver can forward it raw.
#[derive(Debug)]
pub struct InfileScanner {
    header: [u8; HEADER_LEN],
    header_len: usize,
    remaining: usize,
    next_seq: u8,
    done: bool,
}

impl InfileScanner {
    /// `first_seq` is the sequence id the client's first data packet carries (the
    /// LOCAL INFILE request's plus one).
    pub fn new(first_seq: u8) -> Self {
        Self {
            header: [0; HEADER_LEN],
            header_len: 0,
            remaining: 0,
            next_seq: first_seq,
            done: false,
        }
    }

    /// Feeds client bytes; returns how many belong to the data stream and whether it
    /// ended, with the sequence id of the terminating empty packet.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(usize, Option<u8>), ScanError> {
        let mut at = 0;
        while at < bytes.len() && !self.done {
            if self.header_len < HEADER_LEN {
                let n = (HEADER_LEN - self.header_len).min(bytes.len() - at);
                self.header[self.header_len..self.header_len + n]
                    .copy_from_slice(&bytes[at..at + n]);
                self.header_len += n;
                at += n;
                if self.header_len == HEADER_LEN {
                    let h = self.header;
                    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
                    if h[3] != self.next_seq {
                        return Err(ScanError::OutOfOrder {
                            expected: self.next_seq,
                            got: h[3],
                        });
                    }
                    self.next_seq = h[3].wrapping_add(1);
                    if len == 0 {
                        self.done = true;
                        return Ok((at, Some(h[3])));
                    }
                    self.remaining = len;
                }
                continue;
            }
            let n = self.remaining.min(bytes.len() - at);
            self.remaining -= n;
            at += n;
            if self.remaining == 0 {
                self.header_len = 0;
            }
        }
        Ok((at, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::write_packet;
    use crate::protocol::response::{EofPacket, ErrPacket, OkPacket};

    const CAPS: u32 = caps::PROTOCOL_41 | caps::TRANSACTIONS;
    const DEP: u32 = CAPS | caps::DEPRECATE_EOF;

    fn stream(payloads: &[Vec<u8>], first_seq: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let mut seq = first_seq;
        for p in payloads {
            write_packet(&mut out, &mut seq, p);
        }
        out
    }

    fn ok(status: u16) -> Vec<u8> {
        OkPacket {
            status,
            ..Default::default()
        }
        .encode(CAPS)
    }

    fn result_set(columns: usize, rows: usize, caps: u32, status: u16) -> Vec<Vec<u8>> {
        let mut v = vec![vec![columns as u8]];
        for i in 0..columns {
            v.push(format!("\x03def\x00\x00\x00\x01c{i}\x00\x0c\x21\x00").into_bytes());
        }
        if caps & caps::DEPRECATE_EOF == 0 {
            v.push(
                EofPacket {
                    warnings: 0,
                    status,
                }
                .encode(),
            );
        }
        for r in 0..rows {
            v.push(format!("\x01{}", r % 10).into_bytes());
        }
        if caps & caps::DEPRECATE_EOF == 0 {
            v.push(
                EofPacket {
                    warnings: 0,
                    status,
                }
                .encode(),
            );
        } else {
            v.push(
                OkPacket {
                    status,
                    ..Default::default()
                }
                .encode_as_eof(caps),
            );
        }
        v
    }

    /// Feeds the stream one byte at a time and in one piece; both must agree.
    fn scan(kind: ResponseKind, caps: u32, bytes: &[u8]) -> (Scan, ResponseScanner) {
        let mut whole = ResponseScanner::new(kind, caps);
        let r = whole.feed(bytes).unwrap();
        let mut bytewise = ResponseScanner::new(kind, caps);
        let mut last = Scan::NeedMore;
        for (i, b) in bytes.iter().enumerate() {
            last = bytewise.feed(std::slice::from_ref(b)).unwrap();
            if let Scan::Complete { .. } | Scan::LocalInfile { .. } = last {
                assert_eq!(i + 1, bytes.len(), "ended early at byte {i}");
            }
        }
        assert_eq!(
            matches!(last, Scan::Complete { .. }),
            matches!(r, Scan::Complete { .. })
        );
        (r, whole)
    }

    #[test]
    fn row_limit_stops_after_the_nth_row_and_tells_rows_from_the_terminator() {
        let q = ResponseKind::for_command(Command::Query);
        for caps in [CAPS, DEP] {
            for (rows, limit, more) in [(5, 3, true), (3, 3, false)] {
                let bytes = stream(&result_set(2, rows, caps, status::AUTOCOMMIT), 1);
                let mut s = ResponseScanner::new(q, caps);
                s.set_row_limit(Some(limit), None);
                let Scan::RowLimit { consumed } = s.feed(&bytes).unwrap() else {
                    panic!("expected the row limit to stop the scan");
                };
                assert_eq!(s.rows(), limit);
                assert_eq!(s.next_is_row(&bytes[consumed..consumed + 4]), None);
                assert_eq!(s.next_is_row(&bytes[consumed..]), Some(more));
                s.set_row_limit(None, None);
                assert_eq!(
                    s.feed(&bytes[consumed..]).unwrap(),
                    Scan::Complete {
                        consumed: bytes.len() - consumed
                    }
                );
            }
        }
    }

    #[test]
    fn ok_counters_and_warnings_are_kept() {
        let q = ResponseKind::for_command(Command::Query);
        let payload = OkPacket {
            affected_rows: 3,
            last_insert_id: 77,
            status: status::AUTOCOMMIT,
            warnings: 2,
            ..Default::default()
        }
        .encode(CAPS);
        let (_, s) = scan(q, CAPS, &stream(&[payload], 1));
        assert_eq!(s.warnings(), 2);
        assert_eq!(
            s.ok(),
            Some(OkSummary {
                affected_rows: 3,
                last_insert_id: 77
            })
        );
        let mut rs = result_set(1, 1, CAPS, status::AUTOCOMMIT);
        let last = rs.len() - 1;
        rs[last] = EofPacket {
            warnings: 4,
            status: status::AUTOCOMMIT,
        }
        .encode();
        let (_, s) = scan(q, CAPS, &stream(&rs, 1));
        assert_eq!(s.warnings(), 4);
        assert_eq!(s.ok(), None);
    }

    #[test]
    fn ok_err_and_eof_end_generic_responses() {
        let q = ResponseKind::for_command(Command::Query);
        for payload in [
            ok(status::AUTOCOMMIT),
            ErrPacket::new(crate::protocol::error_codes::ER_PARSE_ERROR, "syntax").encode(),
            EofPacket::default().encode(),
        ] {
            let bytes = stream(&[payload], 1);
            let (r, _) = scan(q, CAPS, &bytes);
            assert_eq!(
                r,
                Scan::Complete {
                    consumed: bytes.len()
                }
            );
        }
    }

    #[test]
    fn result_sets_end_at_their_terminator_with_and_without_deprecate_eof() {
        for caps in [CAPS, DEP] {
            let bytes = stream(&result_set(3, 5, caps, status::AUTOCOMMIT), 1);
            let (r, s) = scan(ResponseKind::for_command(Command::Query), caps, &bytes);
            assert_eq!(
                r,
                Scan::Complete {
                    consumed: bytes.len()
                }
            );
            assert_eq!(s.rows(), 5);
        }
    }

    #[test]
    fn multi_results_continue_until_the_last_terminator() {
        for caps in [CAPS, DEP] {
            let mut payloads = result_set(1, 2, caps, status::MORE_RESULTS_EXISTS);
            payloads.push(ok(status::MORE_RESULTS_EXISTS));
            payloads.extend(result_set(2, 1, caps, status::MORE_RESULTS_EXISTS));
            payloads.push(ok(status::AUTOCOMMIT));
            let bytes = stream(&payloads, 1);
            let (r, s) = scan(ResponseKind::for_command(Command::Query), caps, &bytes);
            assert_eq!(
                r,
                Scan::Complete {
                    consumed: bytes.len()
                }
            );
            assert_eq!(s.rows(), 3);
        }
    }

    #[test]
    fn error_in_the_middle_of_rows_ends_the_response() {
        let mut payloads = result_set(1, 2, DEP, 0);
        payloads.pop();
        payloads
            .push(ErrPacket::new(crate::protocol::error_codes::ER_QUERY_INTERRUPTED, "x").encode());
        let bytes = stream(&payloads, 1);
        let (r, s) = scan(ResponseKind::for_command(Command::Query), DEP, &bytes);
        assert_eq!(
            r,
            Scan::Complete {
                consumed: bytes.len()
            }
        );
        assert_eq!(s.error_code(), Some(1317));
    }

    #[test]
    fn rows_of_16_mib_and_more_are_not_mistaken_for_terminators() {
        // One text row whose single cell is 16 MiB: lenenc prefix 0xfd, then data.
        let cell_len = MAX_PAYLOAD_LEN + 100;
        let mut row = vec![0xfd];
        row.extend_from_slice(&(cell_len as u32).to_le_bytes()[..3]);
        row.extend(std::iter::repeat_n(0xfe, cell_len));
        let mut payloads = result_set(1, 0, DEP, 0);
        let terminator = payloads.pop().unwrap();
        payloads.push(row);
        payloads.push(terminator);
        let bytes = stream(&payloads, 1);
        let mut s = ResponseScanner::new(ResponseKind::for_command(Command::Query), DEP);
        // Feed in 1 MiB chunks.
        let mut result = Scan::NeedMore;
        let mut fed = 0;
        for chunk in bytes.chunks(1 << 20) {
            result = s.feed(chunk).unwrap();
            fed += chunk.len();
        }
        assert_eq!(fed, bytes.len());
        assert!(matches!(result, Scan::Complete { .. }));
        assert_eq!(s.rows(), 1);
    }

    #[test]
    fn prepare_response_is_counted_through_params_and_columns() {
        for caps in [CAPS, DEP] {
            let mut prep = vec![0u8];
            prep.extend_from_slice(&7u32.to_le_bytes());
            prep.extend_from_slice(&2u16.to_le_bytes());
            prep.extend_from_slice(&3u16.to_le_bytes());
            prep.extend_from_slice(&[0, 0, 0]);
            let mut payloads = vec![prep];
            let def = b"\x03def\x00\x00\x00\x01?\x00\x0c\x3f\x00".to_vec();
            for _ in 0..3 {
                payloads.push(def.clone());
            }
            if caps & caps::DEPRECATE_EOF == 0 {
                payloads.push(EofPacket::default().encode());
            }
            for _ in 0..2 {
                payloads.push(def.clone());
            }
            if caps & caps::DEPRECATE_EOF == 0 {
                payloads.push(EofPacket::default().encode());
            }
            let bytes = stream(&payloads, 1);
            let (r, s) = scan(ResponseKind::Prepare, caps, &bytes);
            assert_eq!(
                r,
                Scan::Complete {
                    consumed: bytes.len()
                }
            );
            assert_eq!(
                s.prepared(),
                Some(PreparedInfo {
                    statement_id: 7,
                    num_columns: 2,
                    num_params: 3
                })
            );
        }
    }

    #[test]
    fn local_infile_pauses_then_resumes_after_client_data() {
        let kind = ResponseKind::for_command(Command::Query);
        let mut s = ResponseScanner::new(kind, CAPS);
        let req = stream(&[b"\xfb/tmp/data.csv".to_vec()], 1);
        assert_eq!(
            s.feed(&req).unwrap(),
            Scan::LocalInfile {
                consumed: req.len()
            }
        );
        let mut data = Vec::new();
        let mut seq = 2;
        write_packet(&mut data, &mut seq, b"1,2\n3,4\n");
        write_packet(&mut data, &mut seq, b"");
        let mut infile = InfileScanner::new(2);
        let (n, end) = infile.feed(&data).unwrap();
        assert_eq!((n, end), (data.len(), Some(3)));
        s.local_infile_sent(3);
        let okb = stream(&[ok(0)], 4);
        assert_eq!(
            s.feed(&okb).unwrap(),
            Scan::Complete {
                consumed: okb.len()
            }
        );
    }

    #[test]
    fn response_to_a_multi_packet_command_continues_its_sequence() {
        // A command of 32 MiB went out as packets 0, 1 and 2: the OK comes as 3.
        let bytes = stream(&[ok(0)], 3);
        let kind = ResponseKind::for_command(Command::Query);
        let mut s = ResponseScanner::after_command(kind, CAPS, 2);
        assert_eq!(
            s.feed(&bytes).unwrap(),
            Scan::Complete {
                consumed: bytes.len()
            }
        );
        assert_eq!(s.last_seq(), 3);
        let mut wrong = ResponseScanner::new(kind, CAPS);
        assert!(wrong.feed(&bytes).is_err());
    }

    #[test]
    fn out_of_order_upstream_packets_are_an_error() {
        let bytes = stream(&[ok(0)], 5);
        let mut s = ResponseScanner::new(ResponseKind::for_command(Command::Ping), CAPS);
        assert!(matches!(s.feed(&bytes), Err(ScanError::OutOfOrder { .. })));
    }

    #[test]
    fn trailing_bytes_after_the_response_are_reported_by_consumed() {
        let mut bytes = stream(&[ok(0)], 1);
        let len = bytes.len();
        bytes.extend_from_slice(&[1, 0, 0, 9, 0]);
        let mut s = ResponseScanner::new(ResponseKind::for_command(Command::Ping), CAPS);
        assert_eq!(s.feed(&bytes).unwrap(), Scan::Complete { consumed: len });
    }

    #[test]
    fn statistics_and_field_list() {
        let bytes = stream(&[b"Uptime: 5  Threads: 1".to_vec()], 1);
        let (r, _) = scan(ResponseKind::Statistics, CAPS, &bytes);
        assert!(matches!(r, Scan::Complete { .. }));
        let def = b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00".to_vec();
        let bytes = stream(&[def.clone(), def, EofPacket::default().encode()], 1);
        let (r, _) = scan(ResponseKind::FieldList, CAPS, &bytes);
        assert!(matches!(r, Scan::Complete { .. }));
    }
}
