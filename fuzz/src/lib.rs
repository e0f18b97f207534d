//! Fuzz bodies for the sans-IO protocol core.
//!
//! Each public function takes arbitrary bytes and drives one part of
//! `shardcar_filter::protocol` with them, asserting invariants on the way. The
//! libFuzzer targets in `fuzz_targets/` are one-line wrappers around these functions, and
//! `tests/stable.rs` runs the same functions on stable Rust over the seed corpus plus
//! deterministic mutations (see `docs/fuzzing.md`).
//!
//! Inputs are split into a few control bytes (configuration variants, chunking seeds)
//! followed by frames. A frame is `[len: u16 LE][seq: u8][payload: len bytes]`; a short
//! tail is taken as the last frame's payload.

use shardcar_filter::protocol::auth::{self, AuthPlugin, Credentials};
use shardcar_filter::protocol::client::{ClientHandshake, ClientHandshakeConfig, ClientStep};
use shardcar_filter::protocol::column::ColumnDefinition;
use shardcar_filter::protocol::constants::capabilities as caps;
use shardcar_filter::protocol::exchange::{ResponseKind, ResponseScanner, Scan, ScanError};
use shardcar_filter::protocol::handshake::{
    parse_connect_attrs, AuthSwitchRequest, ChangeUser, Greeting, HandshakeResponse,
};
use shardcar_filter::protocol::packet::{
    write_packet, FrameError, Packet, PacketAssembler, HEADER_LEN, MAX_PAYLOAD_LEN,
};
use shardcar_filter::protocol::resultset::{
    decode_binary_row, decode_text_row, Event, ResultSetDecoder, RowFormat,
};
use shardcar_filter::protocol::server::{
    AuthContext, Authenticated, ServerHandshake, ServerHandshakeConfig, Step,
};
use shardcar_filter::protocol::stmt::{
    ParamType, StmtClose, StmtExecute, StmtFetch, StmtPrepareOk, StmtReset, StmtSendLongData,
};
use shardcar_filter::protocol::value::Value;
use shardcar_filter::protocol::{EofPacket, ErrPacket, OkPacket};
use std::sync::{Arc, OnceLock};

pub mod seeds;

/// The one application user of the server-side fuzz context.
pub const FUZZ_USER: &str = "app";
pub const FUZZ_PASSWORD: &[u8] = b"secret";
/// Password the client-side machine logs in with; distinctive so that a leak in clear
/// text can be detected in what it sends.
pub const CLIENT_PASSWORD: &[u8] = b"upstream-Pa55word!";
/// Host part the server machine puts in its error messages.
pub const FUZZ_HOST: &str = "10.0.0.9";
/// The raw scramble given to `ServerHandshake::new` (it is made printable there).
pub const SERVER_SCRAMBLE: [u8; 20] = *b"0123456789abcdefghij";

/// A frame's `seq` byte with this value means "the sequence id the peer expects".
pub const SEQ_EXPECTED: u8 = 0xff;

/// Reads control bytes and frames from a fuzz input.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next byte, 0 once the input is exhausted.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// The next frame: `(seq byte, payload)`.
    pub fn frame(&mut self) -> Option<(u8, &'a [u8])> {
        if self.data.is_empty() {
            return None;
        }
        let len = usize::from(self.u16());
        let seq = self.byte();
        let n = len.min(self.data.len());
        let (payload, rest) = self.data.split_at(n);
        self.data = rest;
        Some((seq, payload))
    }
}

/// Encodes frames in the format [`Input::frame`] reads (for seeds).
pub fn frames(control: &[u8], frames: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = control.to_vec();
    for (seq, payload) in frames {
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.push(*seq);
        out.extend_from_slice(&payload[..usize::from(len)]);
    }
    out
}

/// xorshift64*: deterministic chunk sizes and mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Splits framed bytes into logical packets, asserting they are well formed: every
/// output of the state machines must be.
fn parse_output(bytes: &[u8]) -> Vec<Packet> {
    let mut a = PacketAssembler::new(1 << 30);
    a.extend(bytes);
    let mut out = Vec::new();
    loop {
        match a.next_packet() {
            Ok(Some(p)) => out.push(p),
            Ok(None) => break,
            Err(e) => panic!("machine wrote badly framed bytes ({e}): {bytes:02x?}"),
        }
    }
    assert!(
        a.buffered().is_empty(),
        "machine wrote a truncated packet: {bytes:02x?}"
    );
    for w in out.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].last_seq.wrapping_add(1),
            "packets written in one step have consecutive sequence ids"
        );
    }
    out
}

// ---------------------------------------------------------------------------------------
// Packet assembler
// ---------------------------------------------------------------------------------------

const MAX_SIZES: [usize; 8] = [0, 1, 4, 16, 100, 1024, MAX_PAYLOAD_LEN, 64 * 1024 * 1024];

#[derive(Debug, PartialEq, Eq)]
struct AssemblyOutcome {
    packets: Vec<Packet>,
    error: Option<FrameError>,
    left: Vec<u8>,
}

fn assemble(stream: &[u8], max: usize, chunks: &mut dyn FnMut(usize) -> usize) -> AssemblyOutcome {
    let mut a = PacketAssembler::new(max);
    assert_eq!(a.max_packet_size(), max);
    let mut packets = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let n = chunks(stream.len() - at).clamp(1, stream.len() - at);
        a.extend(&stream[at..at + n]);
        at += n;
        loop {
            match a.next_packet() {
                Ok(Some(p)) => {
                    assert!(p.payload.len() <= max, "payload over the limit");
                    packets.push(p);
                }
                Ok(None) => {
                    // Bounded buffering: what waits is at most one packet whose announced
                    // size is within the limit, plus its headers.
                    let headers = HEADER_LEN * (max / MAX_PAYLOAD_LEN + 2);
                    assert!(
                        a.buffered().len() <= max + headers,
                        "buffered {} bytes with a limit of {max}",
                        a.buffered().len()
                    );
                    break;
                }
                Err(e) => {
                    return AssemblyOutcome {
                        packets,
                        error: Some(e),
                        left: Vec::new(),
                    }
                }
            }
        }
    }
    AssemblyOutcome {
        packets,
        error: None,
        left: a.take_buffered(),
    }
}

/// The packet assembler with a small (or large) maximum size, fed the same bytes whole,
/// byte by byte and at arbitrary split points: all three must agree, and what comes out
/// must re-encode to exactly the bytes that went in.
pub fn packet_assembler(data: &[u8]) {
    let mut input = Input::new(data);
    let max = MAX_SIZES[usize::from(input.byte() % 8)];
    let seed = u64::from(input.u16());
    let stream = input.rest();

    let whole = assemble(stream, max, &mut |left| left);
    let bytewise = assemble(stream, max, &mut |_| 1);
    let mut rng = Rng::new(seed);
    let split = assemble(stream, max, &mut |left| 1 + rng.below(left.min(64)));
    assert_eq!(whole, bytewise, "whole vs byte-by-byte");
    assert_eq!(whole, split, "whole vs arbitrary splits");

    if whole.error.is_none() {
        let mut again = Vec::new();
        for p in &whole.packets {
            let mut seq = p.seq;
            write_packet(&mut again, &mut seq, &p.payload);
            assert_eq!(seq, p.last_seq.wrapping_add(1));
        }
        again.extend_from_slice(&whole.left);
        assert_eq!(again, stream, "packets re-encode to the input");
    }
}

// ---------------------------------------------------------------------------------------
// Server-side connection phase
// ---------------------------------------------------------------------------------------

fn rsa_key() -> &'static (rsa::RsaPrivateKey, Vec<u8>) {
    static KEY: OnceLock<(rsa::RsaPrivateKey, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| {
        use rand::SeedableRng;
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        #[allow(clippy::expect_used)]
        let key = rsa::RsaPrivateKey::new(&mut rng, 1024).expect("generating the fuzz RSA key");
        #[allow(clippy::expect_used)]
        let pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encoding the fuzz RSA public key")
            .into_bytes();
        (key, pem)
    })
}

/// The RSA public key (PEM) of the fuzz server context.
pub fn rsa_public_pem() -> &'static [u8] {
    &rsa_key().1
}

/// A test [`AuthContext`]: one user, an optional fast-auth cache entry, an optional key.
#[derive(Debug)]
pub struct FuzzAuth {
    user: Credentials,
    cached: bool,
    with_key: bool,
}

impl FuzzAuth {
    pub fn new(cached: bool, with_key: bool) -> Self {
        Self {
            user: Credentials::from_password(FUZZ_PASSWORD),
            cached,
            with_key,
        }
    }
}

impl AuthContext for FuzzAuth {
    fn credentials(&self, user: &str) -> Option<Credentials> {
        (user == FUZZ_USER).then(|| self.user.clone())
    }
    fn sha2_cached(&self, user: &str) -> bool {
        self.cached && user == FUZZ_USER
    }
    fn sha2_remember(&mut self, user: &str) {
        if user == FUZZ_USER {
            self.cached = true;
        }
    }
    fn rsa_public_key_pem(&mut self) -> Option<Vec<u8>> {
        self.with_key.then(|| rsa_public_pem().to_vec())
    }
    fn rsa_decrypt_password(&mut self, ciphertext: &[u8], scramble: &[u8]) -> Option<Vec<u8>> {
        if !self.with_key {
            return None;
        }
        auth::rsa_decrypt_password(&rsa_key().0, ciphertext, scramble).ok()
    }
}

/// Control byte of the server handshake target.
pub mod server_flags {
    pub const SHA2_DEFAULT: u8 = 1;
    pub const TLS_AVAILABLE: u8 = 2;
    pub const TLS_REQUIRED: u8 = 4;
    pub const SHA2_CACHED: u8 = 8;
    pub const RSA_KEY: u8 = 16;
    /// The first frame is a COM_CHANGE_USER on an authenticated connection.
    pub const CHANGE_USER: u8 = 32;
    pub const LOCAL_FILES: u8 = 64;
}

/// The server handshake config the fuzz target uses for `flags`.
pub fn server_config(flags: u8) -> ServerHandshakeConfig {
    let tls = flags & server_flags::TLS_AVAILABLE != 0;
    ServerHandshakeConfig {
        server_version: "10.11.6-MariaDB".into(),
        connection_id: 42,
        capabilities: caps::SUPPORTED
            | if flags & server_flags::LOCAL_FILES != 0 {
                caps::LOCAL_FILES
            } else {
                0
            },
        collation: 45,
        default_plugin: if flags & server_flags::SHA2_DEFAULT != 0 {
            AuthPlugin::CachingSha2Password
        } else {
            AuthPlugin::NativePassword
        },
        tls_available: tls,
        tls_required: tls && flags & server_flags::TLS_REQUIRED != 0,
        client_host: FUZZ_HOST.into(),
    }
}

fn check_server_error(bytes: &[u8], err: &ErrPacket) {
    let packets = parse_output(bytes);
    let Some(last) = packets.last() else {
        panic!("Fail without bytes")
    };
    assert_eq!(
        ErrPacket::decode(&last.payload).as_ref(),
        Ok(err),
        "the ERR sent is the ERR reported"
    );
    if err.code == 1045 {
        let m = &err.message;
        let denied = m.starts_with("Access denied for user '")
            && (m.ends_with(&format!("'@'{FUZZ_HOST}' (using password: YES)"))
                || m.ends_with(&format!("'@'{FUZZ_HOST}' (using password: NO)")));
        assert!(
            denied || m == "Authentication requires secure connection.",
            "1045 with an unexpected message: {m}"
        );
        assert_eq!(err.sqlstate_str(), "28000");
    }
}

/// The server-side connection-phase machine fed arbitrary client packets.
pub fn server_handshake(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let config = server_config(flags);
    let mut ctx = FuzzAuth::new(
        flags & server_flags::SHA2_CACHED != 0,
        flags & server_flags::RSA_KEY != 0,
    );
    let mut hs = ServerHandshake::new(config.clone(), SERVER_SCRAMBLE);
    let greeting = parse_output(&hs.greeting());
    assert_eq!(greeting.len(), 1);
    let g = match Greeting::decode(&greeting[0].payload) {
        Ok(g) => g,
        Err(e) => panic!("our own greeting does not decode: {e}"),
    };
    assert_eq!(g.scramble.as_slice(), hs.scramble());
    assert!(g.scramble.iter().all(|b| (0x21..0x7f).contains(b)));
    let mut next_seq: u8 = 1;
    let mut step = None;

    if flags & server_flags::CHANGE_USER != 0 {
        let Some((_, payload)) = input.frame() else {
            return;
        };
        let negotiated = Authenticated {
            user: FUZZ_USER.into(),
            database: None,
            capabilities: caps::SUPPORTED,
            collation: 45,
            plugin: AuthPlugin::NativePassword,
            connect_attrs: Vec::new(),
            tls: config.tls_available,
        };
        let Ok(cu) = ChangeUser::decode(payload, negotiated.capabilities) else {
            return;
        };
        let scramble = *hs.scramble();
        hs = ServerHandshake::for_change_user(config, scramble, &negotiated, &cu);
        next_seq = 1;
        step = Some(hs.start_change_user(&mut ctx));
    }

    loop {
        let s = match step.take() {
            Some(s) => s,
            None => {
                let Some((seq, payload)) = input.frame() else {
                    return;
                };
                let seq = if seq == SEQ_EXPECTED { next_seq } else { seq };
                next_seq = seq.wrapping_add(1);
                let packet = Packet {
                    seq,
                    last_seq: seq,
                    payload: payload.to_vec(),
                };
                hs.handle_packet(&packet, &mut ctx)
            }
        };
        match s {
            Step::Send(bytes) => {
                let packets = parse_output(&bytes);
                if let Some(last) = packets.last() {
                    next_seq = last.last_seq.wrapping_add(1);
                }
            }
            Step::UpgradeTls => {
                assert!(config_tls(flags), "TLS upgrade offered without TLS");
                hs.tls_established();
            }
            Step::Done(bytes, authenticated) => {
                // Only the one configured user can ever get in.
                assert_eq!(authenticated.user, FUZZ_USER, "login as an unknown user");
                let packets = parse_output(&bytes);
                let ok = packets.last().map(|p| p.payload.first().copied());
                assert_eq!(ok, Some(Some(0)), "Done ends with an OK packet");
                // The machine is finished: any further packet is refused.
                if let Some((seq, payload)) = input.frame() {
                    let p = Packet {
                        seq,
                        last_seq: seq,
                        payload: payload.to_vec(),
                    };
                    assert!(matches!(hs.handle_packet(&p, &mut ctx), Step::Fail(..)));
                }
                return;
            }
            Step::Fail(bytes, err) => {
                check_server_error(&bytes, &err);
                return;
            }
        }
    }
}

fn config_tls(flags: u8) -> bool {
    flags & server_flags::TLS_AVAILABLE != 0
}

// ---------------------------------------------------------------------------------------
// Client-side connection phase
// ---------------------------------------------------------------------------------------

/// Control byte of the client handshake target.
pub mod client_flags {
    pub const TLS: u8 = 1;
    pub const DATABASE: u8 = 2;
    /// The server's public key is configured (a valid one).
    pub const KNOWN_KEY: u8 = 4;
    /// The configured public key is the next frame's payload (arbitrary bytes).
    pub const ARBITRARY_KEY: u8 = 8;
    pub const ATTRS: u8 = 16;
    pub const EMPTY_PASSWORD: u8 = 32;
    pub const FEW_CAPABILITIES: u8 = 64;
}

/// The client-side machine fed arbitrary server packets.
pub fn client_handshake(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let tls = flags & client_flags::TLS != 0;
    let password = if flags & client_flags::EMPTY_PASSWORD != 0 {
        Vec::new()
    } else {
        CLIENT_PASSWORD.to_vec()
    };
    let server_public_key = if flags & client_flags::ARBITRARY_KEY != 0 {
        input.frame().map(|(_, k)| k.to_vec())
    } else if flags & client_flags::KNOWN_KEY != 0 {
        Some(rsa_public_pem().to_vec())
    } else {
        None
    };
    let mut connect_attrs = Vec::new();
    if flags & client_flags::ATTRS != 0 {
        shardcar_filter::protocol::handshake::push_connect_attr(
            &mut connect_attrs,
            "_client_name",
            "fuzz",
        );
    }
    let config = ClientHandshakeConfig {
        user: "shardcar".into(),
        password: password.clone(),
        database: (flags & client_flags::DATABASE != 0).then(|| "db1".into()),
        capabilities: if flags & client_flags::FEW_CAPABILITIES != 0 {
            caps::PROTOCOL_41 | caps::SECURE_CONNECTION
        } else {
            caps::SUPPORTED
        },
        collation: 45,
        max_packet_size: 1 << 24,
        tls,
        connect_attrs,
        server_public_key,
    };
    let mut ch = ClientHandshake::new(config);
    let mut upgraded = false;
    let check_sent = |bytes: &[u8], upgraded: bool| {
        let packets = parse_output(bytes);
        if !upgraded && !password.is_empty() {
            for p in &packets {
                assert!(
                    !contains(&p.payload, CLIENT_PASSWORD),
                    "clear-text password sent without TLS: {:02x?}",
                    p.payload
                );
            }
        }
    };
    while let Some((seq, payload)) = input.frame() {
        let packet = Packet {
            seq,
            last_seq: seq,
            payload: payload.to_vec(),
        };
        let mut result = ch.handle_packet(&packet);
        loop {
            match result {
                Ok(ClientStep::Send(bytes)) => check_sent(&bytes, upgraded),
                Ok(ClientStep::SendThenUpgradeTls(bytes)) => {
                    assert!(tls, "TLS upgrade without TLS configured");
                    assert!(!upgraded, "TLS upgrade twice");
                    check_sent(&bytes, upgraded);
                    upgraded = true;
                    result = ch.after_tls();
                    continue;
                }
                Ok(ClientStep::Wait) => {}
                Ok(ClientStep::Done(session)) => {
                    assert!(ch.greeting().is_some(), "Done before a greeting");
                    assert_eq!(
                        session.capabilities & !session.server_capabilities,
                        0,
                        "negotiated a capability the server did not offer"
                    );
                    if let Some((seq, payload)) = input.frame() {
                        let p = Packet {
                            seq,
                            last_seq: seq,
                            payload: payload.to_vec(),
                        };
                        assert!(ch.handle_packet(&p).is_err(), "packet after Done accepted");
                    }
                    return;
                }
                Err(_) => return,
            }
            break;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Response scanner
// ---------------------------------------------------------------------------------------

/// Every response kind the scanner knows.
pub const RESPONSE_KINDS: [ResponseKind; 7] = [
    ResponseKind::Generic { local_infile: true },
    ResponseKind::Generic {
        local_infile: false,
    },
    ResponseKind::Prepare,
    ResponseKind::Fetch,
    ResponseKind::FieldList,
    ResponseKind::Statistics,
    ResponseKind::None,
];

/// Capabilities that change what the scanner expects, chosen by the bits of one byte.
pub fn scanner_caps(bits: u8) -> u32 {
    let mut c = 0;
    for (bit, cap) in [
        caps::DEPRECATE_EOF,
        caps::PROTOCOL_41,
        caps::TRANSACTIONS,
        caps::SESSION_TRACK,
        caps::MULTI_RESULTS | caps::PS_MULTI_RESULTS,
        caps::LOCAL_FILES,
    ]
    .into_iter()
    .enumerate()
    {
        if bits & (1 << bit) != 0 {
            c |= cap;
        }
    }
    c
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ScanEvent {
    /// The response (or the part before LOCAL INFILE data) ended at this stream offset.
    Complete(usize),
    LocalInfile(usize),
    Error(ScanError),
}

#[derive(Debug, PartialEq, Eq)]
struct ScanOutcome {
    events: Vec<ScanEvent>,
    done: bool,
    status: u16,
    error_code: Option<u16>,
    prepared: Option<shardcar_filter::protocol::exchange::PreparedInfo>,
    rows: u64,
    last_seq: u8,
    boundary: bool,
}

fn scan(
    kind: ResponseKind,
    caps: u32,
    stream: &[u8],
    chunks: &mut dyn FnMut(usize) -> usize,
) -> ScanOutcome {
    let mut s = ResponseScanner::new(kind, caps);
    // Stops at the first row (or 64 bytes of rows); cleared when hit, so the outcome is
    // the same as without it.
    s.set_row_limit(Some(1), Some(64));
    assert_eq!(s.is_done(), kind == ResponseKind::None);
    let mut events = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let n = chunks(stream.len() - at).clamp(1, stream.len() - at);
        let slice = &stream[at..at + n];
        match s.feed(slice) {
            Ok(Scan::NeedMore) => {
                assert!(!s.is_done(), "NeedMore but done");
                at += n;
            }
            Ok(Scan::Complete { consumed }) => {
                assert!(consumed > 0 && consumed <= n, "consumed {consumed} of {n}");
                assert!(s.is_done(), "Complete but not done");
                assert!(s.at_packet_boundary(), "Complete inside a packet");
                events.push(ScanEvent::Complete(at + consumed));
                break;
            }
            Ok(Scan::LocalInfile { consumed }) => {
                assert!(consumed > 0 && consumed <= n, "consumed {consumed} of {n}");
                assert!(!s.is_done());
                assert!(s.at_packet_boundary(), "LOCAL INFILE inside a packet");
                events.push(ScanEvent::LocalInfile(at + consumed));
                // The client sends its (empty) file with the next sequence id.
                s.local_infile_sent(s.last_seq().wrapping_add(1));
                at += consumed;
            }
            Ok(Scan::RowLimit { consumed }) => {
                // Only with a row limit set; the scan goes on past it.
                assert!(consumed <= n, "consumed {consumed} of {n}");
                assert!(s.at_packet_boundary(), "row limit inside a packet");
                s.set_row_limit(None, None);
                at += consumed;
            }
            Err(e) => {
                events.push(ScanEvent::Error(e));
                break;
            }
        }
    }
    ScanOutcome {
        events,
        done: s.is_done(),
        status: s.status(),
        error_code: s.error_code(),
        prepared: s.prepared(),
        rows: s.rows(),
        last_seq: s.last_seq(),
        boundary: s.at_packet_boundary(),
    }
}

/// The response scanner for every kind and capability combination: the same bytes fed
/// in one chunk, byte by byte and in arbitrary chunks must end the response at the same
/// position with the same state.
pub fn response_scanner(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = RESPONSE_KINDS[usize::from(input.byte()) % RESPONSE_KINDS.len()];
    let caps = scanner_caps(input.byte());
    let seed = u64::from(input.u16());
    let stream = input.rest();
    let whole = scan(kind, caps, stream, &mut |left| left);
    let bytewise = scan(kind, caps, stream, &mut |_| 1);
    let mut rng = Rng::new(seed);
    let split = scan(kind, caps, stream, &mut |left| 1 + rng.below(left.min(40)));
    assert_eq!(
        whole, bytewise,
        "{kind:?} caps {caps:#x}: whole vs byte-by-byte"
    );
    assert_eq!(
        whole, split,
        "{kind:?} caps {caps:#x}: whole vs arbitrary chunks"
    );
}

// ---------------------------------------------------------------------------------------
// Result-set, statement and packet decoders
// ---------------------------------------------------------------------------------------

/// The decoders: the result-set decoder over a sequence of payloads (text and binary,
/// with and without `DEPRECATE_EOF`), every row decoded to values; the statement
/// codecs; the connection-phase and response packets. Round trips where the encoding is
/// canonical.
pub fn decoders(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 7 {
        0 => result_set(&mut input),
        1 => stmt_execute(&mut input),
        2 => stmt_small(input.rest()),
        3 => column_definition(input.rest()),
        4 => binary_value(&mut input),
        5 => packets(&mut input),
        _ => loose_collation_key(input.rest()),
    }
}

/// The unicode_loose vindexes' collation key: any bytes give a key or, exactly when they
/// are not UTF-8, an error; trailing spaces never change the key.
fn loose_collation_key(text: &[u8]) {
    let key = shardcar_filter::vindex::loose_key(text);
    let trimmed = &text[..text.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1)];
    assert_eq!(key.is_ok(), std::str::from_utf8(trimmed).is_ok());
    let padded = shardcar_filter::vindex::loose_key(&[text, b"  "].concat());
    assert_eq!(debug(&key), debug(&padded));
}

fn debug<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

fn result_set(input: &mut Input<'_>) {
    let flags = input.byte();
    let caps = scanner_caps(flags);
    let format = if flags & 0x80 != 0 {
        RowFormat::Binary
    } else {
        RowFormat::Text
    };
    let mut dec = ResultSetDecoder::new(caps, format);
    let mut last_columns: Option<Arc<[ColumnDefinition]>> = None;
    while let Some((_, payload)) = input.frame() {
        if dec.is_done() {
            match (dec.cursor_open(), last_columns.clone()) {
                (true, Some(cols)) => dec = ResultSetDecoder::for_fetch(caps, cols),
                _ => dec.reset(),
            }
        }
        match dec.feed(payload) {
            Ok(Some(Event::Columns(cols))) => {
                assert!(!cols.is_empty());
                for c in cols.iter() {
                    let again = ColumnDefinition::decode(&c.encode());
                    assert_eq!(again.as_ref(), Ok(c), "column definition round trip");
                }
                last_columns = Some(cols);
            }
            Ok(Some(Event::Row(row))) => {
                let values = dec.values(row);
                if let Ok(v) = &values {
                    assert_eq!(v.len(), dec.columns().len());
                }
                if format == RowFormat::Text {
                    let cells = dec.text_cells(row);
                    if let Ok(c) = &cells {
                        assert_eq!(c.len(), dec.columns().len());
                    }
                }
            }
            Ok(Some(Event::Done { .. } | Event::Ok(_) | Event::LocalInfile(_))) => {
                assert!(dec.is_done());
            }
            Ok(Some(Event::Error(_))) => assert!(dec.is_done()),
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

fn stmt_execute(input: &mut Input<'_>) {
    let num_params = u16::from(input.byte() % 40);
    let prev_flags = input.byte();
    let long_bits = input.u16();
    let previous: Option<Vec<ParamType>> = (prev_flags & 1 != 0).then(|| {
        (0..num_params)
            .map(|i| ParamType {
                column_type: shardcar_filter::protocol::constants::column_type::LONGLONG
                    .wrapping_add((i as u8).wrapping_mul(prev_flags) % 8),
                unsigned: prev_flags & 2 != 0,
            })
            .collect()
    });
    let long_data: Vec<bool> = (0..16).map(|i| long_bits & (1 << i) != 0).collect();
    let payload = input.rest();
    let Ok(exec) = StmtExecute::decode(payload, num_params, previous.as_deref(), &long_data) else {
        return;
    };
    assert_eq!(exec.params.len(), usize::from(num_params));
    assert_eq!(exec.param_types.len(), exec.params.len());
    if exec.new_params_bound && exec.params.iter().all(Option::is_some) {
        if let Ok(bytes) = exec.encode() {
            let again = StmtExecute::decode(&bytes, num_params, None, &[]);
            assert_eq!(
                again.as_ref().map(debug).ok(),
                Some(debug(&exec)),
                "COM_STMT_EXECUTE round trip: {again:?}"
            );
        }
    }
}

fn stmt_small(payload: &[u8]) {
    if let Ok(p) = StmtPrepareOk::decode(payload) {
        assert_eq!(StmtPrepareOk::decode(&p.encode()), Ok(p));
    }
    if let Ok(p) = StmtClose::decode(payload) {
        assert_eq!(StmtClose::decode(&p.encode()), Ok(p));
    }
    if let Ok(p) = StmtReset::decode(payload) {
        assert_eq!(StmtReset::decode(&p.encode()), Ok(p));
    }
    if let Ok(p) = StmtFetch::decode(payload) {
        assert_eq!(StmtFetch::decode(&p.encode()), Ok(p));
    }
    if let Ok(p) = StmtSendLongData::decode(payload) {
        let bytes = p.encode();
        assert_eq!(StmtSendLongData::decode(&bytes), Ok(p));
    }
}

fn column_definition(payload: &[u8]) {
    let Ok(c) = ColumnDefinition::decode(payload) else {
        return;
    };
    assert_eq!(
        ColumnDefinition::decode(&c.encode()).as_ref(),
        Ok(&c),
        "column definition round trip"
    );
    let _ = c.is_unsigned();
    let _ = c.is_zerofill();
    let _ = c.is_binary_collation();
    let _ = c.has_fixed_decimals();
    // Text values of this column: the payload's tail as a cell.
    for cell in [Some(payload), Some(&payload[payload.len() / 2..]), None] {
        if let Ok(v) = Value::from_text(cell, &c) {
            let text = v.to_text(&c);
            let _ = Value::from_text(Some(&text), &c);
        }
    }
}

fn binary_value(input: &mut Input<'_>) {
    let column_type = input.byte();
    let unsigned = input.byte() & 1 != 0;
    let payload = input.rest();
    let mut r = shardcar_filter::protocol::Reader::new(payload);
    let Ok(v) = Value::read_binary(&mut r, column_type, unsigned) else {
        return;
    };
    let mut out = Vec::new();
    if v.write_binary(&mut out, column_type, unsigned).is_ok() {
        let mut r = shardcar_filter::protocol::Reader::new(&out);
        let again = Value::read_binary(&mut r, column_type, unsigned);
        assert_eq!(
            again.as_ref().map(debug).ok(),
            Some(debug(&v)),
            "binary value round trip for type {column_type:#04x}: {out:02x?}"
        );
        assert!(r.is_empty(), "binary value re-read left bytes");
    }
    let col = ColumnDefinition::new("c", column_type);
    let _ = v.to_text(&col);
    let _ = v.as_f64();
    let _ = v.compare(&v);
    let _ = v.compare_as(&Value::Null, &col);
}

fn packets(input: &mut Input<'_>) {
    let caps = scanner_caps(input.byte()) | u32::from(input.byte()) << 16;
    let ncols = usize::from(input.byte() % 12);
    let types: Vec<ColumnDefinition> = (0..ncols)
        .map(|_| ColumnDefinition::new("c", input.byte()))
        .collect();
    let payload = input.rest();
    if let Ok(g) = Greeting::decode(payload) {
        let again = Greeting::decode(&g.encode());
        assert!(again.is_ok(), "greeting re-decodes: {again:?}");
    }
    if let Ok(h) = HandshakeResponse::decode(payload).and_then(|h| {
        // `encode` writes only the 4.1 secure-connection forms of the auth response (the
        // only ones the client machine sends); the pre-4.1 NUL-terminated form is decode
        // only.
        let secure = caps::SECURE_CONNECTION | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA;
        if h.capabilities & secure == 0 {
            return Err(shardcar_filter::protocol::DecodeError::Invalid(
                "pre-4.1 auth",
            ));
        }
        Ok(h)
    }) {
        let again = HandshakeResponse::decode(&h.encode());
        assert!(again.is_ok(), "handshake response re-decodes: {again:?}");
    }
    let _ = HandshakeResponse::is_ssl_request(payload);
    let _ = ChangeUser::decode(payload, caps);
    let _ = AuthSwitchRequest::decode(payload);
    let _ = parse_connect_attrs(payload);
    if let Ok(ok) = OkPacket::decode(payload, caps) {
        let _ = OkPacket::decode(&ok.encode(caps), caps);
        let _ = ok.encode_as_eof(caps);
    }
    if let Ok(e) = ErrPacket::decode(payload) {
        let _ = ErrPacket::decode(&e.encode());
        let _ = e.to_string();
    }
    if let Ok(e) = EofPacket::decode(payload) {
        assert_eq!(EofPacket::decode(&e.encode()), Ok(e));
    }
    let _ = shardcar_filter::protocol::response::terminator_status(payload, caps);
    if let Ok(cells) = decode_text_row(payload, ncols) {
        assert_eq!(cells.len(), ncols);
    }
    if let Ok(values) = decode_binary_row(payload, &types) {
        assert_eq!(values.len(), ncols);
    }
}

/// The planner over arbitrary SQL text: lexing, the nesting guard, parsing, routing,
/// scatter rewriting, materialization, the plan-cache template and parameter binding
/// must never panic, whatever the bytes.
pub fn planner(data: &[u8]) {
    use shardcar_filter::plan::{self, cache, params, PlanContext};
    use shardcar_filter::protocol::value::Value;
    static SCHEMA: std::sync::OnceLock<Option<plan::RoutingSchema>> = std::sync::OnceLock::new();
    let Some(schema) = SCHEMA.get_or_init(planner_schema) else {
        return;
    };
    let (control, text) = match data.split_first() {
        Some((c, rest)) => (*c, String::from_utf8_lossy(rest)),
        None => return,
    };
    let ctx = PlanContext {
        default_keyspace: [None, Some("user"), Some("main")][usize::from(control % 3)],
    };
    let values = [
        Value::Int(i64::from(control)),
        Value::Bytes(b"x'y".to_vec()),
        Value::Null,
    ];
    let _ = plan::plan(schema, &text, &ctx);
    let vindex_values: Vec<_> = values.iter().map(params::vindex_value).collect();
    let _ = plan::plan_with_params(schema, &text, &ctx, &vindex_values);
    if let Some(bound) = params::bind(&text, &values[..usize::from(control % 4).min(3)]) {
        let _ = plan::plan(schema, &bound, &ctx);
    }
    if let Some((key, literals)) = cache::key(ctx.default_keyspace, &text) {
        if let Some(t) = cache::template(schema, &key, &ctx) {
            let _ = t.route(schema, &literals);
        }
    }
}

fn planner_schema() -> Option<shardcar_filter::plan::RoutingSchema> {
    let vschema = shardcar_filter::vschema::SrvVSchema::from_json(seeds::PLANNER_VSCHEMA).ok()?;
    let mut shards = std::collections::BTreeMap::new();
    shards.insert(
        "user".to_string(),
        ["-40", "40-80", "80-c0", "c0-"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    shards.insert("main".to_string(), vec!["0".to_string()]);
    shardcar_filter::plan::RoutingSchema::build(vschema, &shards, &shardcar_filter::vindex::NoFiles)
        .ok()
}

/// The db role's statement analysis: the lexer-based analysis, SET tracking, pin
/// updates, hot-row keys, row-limit insertion, session-function substitution, query rules
/// and the access policy's table reading never panic, and rewrites keep the text valid
/// UTF-8 with the insertion inside it.
pub fn guard(data: &[u8]) {
    use shardcar_filter::guard::access::{table_access, AccessPolicy, AccessRule, Identity};
    use shardcar_filter::guard::hotrow::row_key;
    use shardcar_filter::guard::pins::{Outcome, Pins};
    use shardcar_filter::guard::rules::{BuiltinRules, RuleSet, Subject};
    use shardcar_filter::guard::statement::{
        analyze, substitute_session_functions, with_limit, SessionValues,
    };
    use shardcar_filter::guard::vars::{parse_set, SessionVars, SetEffect};
    let (control, text) = match data.split_first() {
        Some((c, rest)) => (*c, String::from_utf8_lossy(rest).into_owned()),
        None => return,
    };
    let st = analyze(&text);
    if let Some(at) = st.limit_at {
        assert!(
            at <= text.len() && text.is_char_boundary(at),
            "limit_at {at} outside the text"
        );
        let limited = with_limit(&text, at, 10_001);
        assert_eq!(limited.len(), text.len() + " LIMIT 10001".len());
    }
    // A KILL the sidecar applies names a real u32 id.
    if let Ok(kill) = shardcar_filter::guard::kill::parse_kill(&text) {
        assert!(
            text.contains(&kill.id.to_string()),
            "KILL id {} not in {text:?}",
            kill.id
        );
    }
    let set = parse_set(&text);
    let mut vars = SessionVars::default();
    if let SetEffect::Session(a) = &set {
        let _ = vars.apply(a);
        let _ = vars.replay();
    }
    let mut pins = Pins::default();
    pins.after_query(
        &st,
        Some(&set),
        Outcome {
            status: u16::from(control),
            warnings: u16::from(control & 1),
            failed: control & 2 != 0,
        },
    );
    let _ = pins.reason();
    let _ = row_key(&text, &st);
    let _ = substitute_session_functions(
        &text,
        &SessionValues {
            last_insert_id: Some(u64::from(control)),
            row_count: Some(-1),
            found_rows: None,
            connection_id: Some(7),
        },
    );
    static RULES: OnceLock<Option<RuleSet>> = OnceLock::new();
    if let Some(rules) = RULES.get_or_init(|| RuleSet::compile(&BuiltinRules::default(), &[]).ok())
    {
        let _ = rules.evaluate(
            Subject {
                user: "app",
                client: "127.0.0.1",
            },
            &text,
            &st,
            u64::from(control),
        );
    }
    let access = table_access(&text, &st, Some("db"));
    let policy = AccessPolicy::new(vec![AccessRule {
        name: "r".into(),
        identities: vec!["user:app".into()],
        read: vec!["t*".into()],
        write: vec!["t".into()],
        admin: control & 4 != 0,
    }]);
    let _ = policy.check(
        Identity {
            user: "app",
            certificate: None,
        },
        &access,
        &st,
    );
}

// ---------------------------------------------------------------------------------------
// The wasm filter's stream state machine
// ---------------------------------------------------------------------------------------

/// Configurations the stream target picks from (control byte).
const STREAM_CONFIGS: [&str; 4] = [
    "",
    r#"{"queryPolicy": {"limits": {"max_rows": 2}, "rules": [{"name": "d", "match": {"tables": ["t"]}, "action": "deny"}]}}"#,
    r#"{"queryPolicy": {"limits": {"max_rows": 1, "max_rows_mode": "truncate"}, "rules": [{"name": "w", "action": "rewrite", "pattern": "1", "replacement": "2"}]}, "maxStatementBytes": 64}"#,
    r#"{"access": [{"name": "a", "identities": ["user:*"], "read": ["t"]}]}"#,
];

/// One connection through the stream filter: frames are reads, the low bit of the
/// frame's tag picks the direction (0 client, 1 server). Never panics, keeps its buffers
/// within the statement limit, and, as long as neither side breaks the protocol (after
/// which the filter forwards what comes from where it noticed), hands on the same bytes
/// whether each read comes whole or one byte at a time.
pub fn stream_filter(data: &[u8]) {
    use shardcar_filter::stream::policy::StreamPolicy;
    use shardcar_filter::stream::{ConnectionFilter, Forward, Peer};
    use std::sync::Arc;
    let mut input = Input::new(data);
    let config = STREAM_CONFIGS[usize::from(input.byte()) % STREAM_CONFIGS.len()];
    let Ok(policy) = StreamPolicy::from_json(config.as_bytes()) else {
        return;
    };
    let policy = Arc::new(policy);
    let limit = policy.max_statement_bytes + 300 * 1024;
    let mut reads: Vec<(bool, &[u8])> = Vec::new();
    while let Some((tag, payload)) = input.frame() {
        reads.push((tag & 1 == 1, payload));
    }
    use shardcar_filter::stream::Event;
    let run = |bytewise: bool| {
        let mut broke = false;
        let peer = Peer {
            address: "10.0.0.1:1".into(),
            certificate: None,
        };
        let mut f = ConnectionFilter::new(Arc::clone(&policy), peer);
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for (server, bytes) in &reads {
            let pieces: Vec<&[u8]> = if bytewise {
                bytes.chunks(1).collect()
            } else {
                vec![bytes]
            };
            for piece in pieces {
                let out = if *server {
                    f.server_data(piece, 0)
                } else {
                    f.client_data(piece, 0)
                };
                let out = match out {
                    Forward::Input => piece.to_vec(),
                    Forward::Replace(v) => v,
                };
                if *server {
                    down.extend(out);
                } else {
                    up.extend(out);
                }
                assert!(f.buffered() <= limit, "{} bytes buffered", f.buffered());
                broke |= f
                    .drain_events()
                    .any(|e| matches!(e, Event::ProtocolError { .. }));
            }
        }
        (up, down, broke)
    };
    let whole = run(false);
    let bytewise = run(true);
    if !whole.2 && !bytewise.2 {
        assert!(whole == bytewise, "{config}: whole reads vs byte by byte");
    }
}
