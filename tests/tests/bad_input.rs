//! Bad input over real sockets, against the real sidecar in front of real MariaDB: it never
//! panics the process and never affects other sessions. After every case a normal client
//! (`mysql_async`) still works through the same sidecar and the process is still alive.
//!
//! Raw packets are built with the filter's own encoders.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use shardcar_filter::protocol::constants::capabilities as caps;
use shardcar_filter::protocol::handshake::Greeting;
use shardcar_filter::protocol::ErrPacket;
use shardcar_tests::client::{
    block_on, native_login, payload_len, raw_connect, read_packet_or_eof, write_packet,
};
use shardcar_tests::{shared_cluster, Cluster, SidecarProcess};

/// Generous bound for "promptly" (behaviour, not a benchmark).
const SLACK: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1000);
const MAX_PACKET: usize = 1024 * 1024;

/// A sidecar in front of the shared MariaDB with a 1 s handshake timeout and a 1 MiB
/// maximum packet size.
fn strict_sidecar(c: &Cluster) -> SidecarProcess {
    SidecarProcess::start(c.sidecar_options(format!(
        "handshake_timeout_ms: {}\nmax_packet_size: {MAX_PACKET}\n",
        HANDSHAKE_TIMEOUT.as_millis()
    )))
    .expect("starting a sidecar with a 1 s handshake timeout and 1 MiB packets")
}

fn assert_alive(pid: u32, sidecar: &SidecarProcess) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|_| panic!("sidecar {pid} is gone; stderr:\n{}", sidecar.stderr()));
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?");
    assert!(
        state != "Z" && state != "X",
        "sidecar {pid} is dead (state {state}); stderr:\n{}",
        sidecar.stderr()
    );
    assert!(
        !sidecar.stderr().contains("panicked"),
        "sidecar logged a panic:\n{}",
        sidecar.stderr()
    );
}

/// A normal client logs in through the sidecar and runs a query.
fn normal_client_works(c: &Cluster, port: u16) {
    use mysql_async::prelude::Queryable;
    block_on(async {
        let opts = mysql_async::Opts::from_url(&c.url(port)).expect("a valid URL");
        let mut conn = tokio::time::timeout(SLACK, mysql_async::Conn::new(opts))
            .await
            .expect("a normal client connects without hanging")
            .expect("a normal client connects");
        let v: Option<i64> = tokio::time::timeout(SLACK, conn.query_first("SELECT 40 + 2"))
            .await
            .expect("the query does not hang")
            .expect("the query succeeds");
        assert_eq!(v, Some(42));
        conn.disconnect().await.expect("clean disconnect");
    });
}

fn still_fine(c: &Cluster, sidecar: &SidecarProcess) {
    normal_client_works(c, sidecar.port());
    assert_alive(sidecar.pid(), sidecar);
}

/// A raw MySQL client socket.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = raw_connect(port, SLACK).expect("connect to the sidecar");
        stream.set_nodelay(true).expect("nodelay");
        Raw { stream }
    }

    /// Connects and reads the greeting.
    fn greeted(port: u16) -> (Raw, Greeting) {
        let mut raw = Raw::connect(port);
        let (seq, payload) = raw
            .read_packet()
            .expect("reading the greeting")
            .expect("a greeting, not EOF");
        assert_eq!(seq, 0);
        let g = Greeting::decode(&payload).expect("a valid greeting");
        (raw, g)
    }

    /// Connects and logs in as the application user without a database.
    fn logged_in(c: &Cluster, port: u16) -> Raw {
        let (mut raw, g) = Raw::greeted(port);
        raw.send_packet(
            1,
            &login(&g, c.app_user.as_bytes(), c.app_password.as_bytes(), None),
        );
        let (seq, payload) = raw
            .read_packet()
            .expect("reading the login answer")
            .expect("an answer, not EOF");
        assert_eq!(
            (seq, payload.first()),
            (2, Some(&0)),
            "login OK; got {payload:02x?}"
        );
        raw
    }

    /// One physical packet; `Ok(None)` on a clean EOF before any byte of it.
    fn read_packet(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        read_packet_or_eof(&mut self.stream)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("writing to the sidecar");
    }

    fn send_packet(&mut self, seq: u8, payload: &[u8]) {
        write_packet(&mut self.stream, seq, payload).expect("writing to the sidecar");
    }

    /// Reads until the sidecar closes the connection (EOF or reset), at most `within`.
    /// Returns what arrived before the close and how long it took.
    fn wait_closed(&mut self, within: Duration) -> (Vec<u8>, Duration) {
        let started = Instant::now();
        self.stream
            .set_read_timeout(Some(within))
            .expect("set a read timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return (got, started.elapsed()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    return (got, started.elapsed())
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "the sidecar did not close the connection within {within:?} \
                         (received {got:02x?})"
                    )
                }
                Err(e) => panic!("reading from the sidecar: {e}"),
            }
            assert!(
                started.elapsed() < within,
                "the sidecar kept the connection open for {within:?} (received {got:02x?})"
            );
        }
    }

    /// Expects one ERR packet and then the close; returns the ERR and its sequence id.
    fn expect_error_then_close(&mut self) -> (u8, ErrPacket) {
        let (bytes, _) = self.wait_closed(SLACK);
        let err = first_error(&bytes)
            .unwrap_or_else(|| panic!("expected an ERR packet before the close, got {bytes:02x?}"));
        err
    }
}

/// The first packet of `bytes`, decoded as ERR.
fn first_error(bytes: &[u8]) -> Option<(u8, ErrPacket)> {
    if bytes.len() < 4 {
        return None;
    }
    let payload = bytes.get(4..4 + payload_len(bytes))?;
    ErrPacket::decode(payload).ok().map(|e| (bytes[3], e))
}

/// A HandshakeResponse41 answering `g` with `mysql_native_password`.
fn login(g: &Greeting, user: &[u8], password: &[u8], database: Option<&[u8]>) -> Vec<u8> {
    native_login(
        g,
        user,
        password,
        database,
        caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
            | caps::LONG_PASSWORD
            | caps::TRANSACTIONS
            | caps::DEPRECATE_EOF,
    )
}

fn shared() -> (&'static Cluster, &'static SidecarProcess) {
    let c = shared_cluster();
    (c, &c.sidecar)
}

#[test]
fn truncated_packets_at_handshake() {
    let (c, sidecar) = shared();
    let port = sidecar.port();

    // Half a header, then close.
    let (mut raw, _) = Raw::greeted(port);
    raw.send(&[0x40, 0x00]);
    drop(raw);
    still_fine(c, sidecar);

    // A header announcing 100 bytes, 10 of them, then close.
    let (mut raw, _) = Raw::greeted(port);
    raw.send(&[100, 0, 0, 1]);
    raw.send(&[0x8d; 10]);
    drop(raw);
    still_fine(c, sidecar);

    // A complete packet holding only the start of a valid HandshakeResponse: Bad
    // handshake, as mysqld answers.
    for cut in [0, 4, 9, 31, 33] {
        let (mut raw, g) = Raw::greeted(port);
        let full = login(&g, b"app", b"app", None);
        raw.send_packet(1, &full[..cut]);
        let (seq, err) = raw.expect_error_then_close();
        assert_eq!(seq, 2, "cut at {cut}");
        assert_eq!(err.code, 1043, "cut at {cut}: {err}");
        assert_eq!(err.sqlstate_str(), "08S01", "cut at {cut}");
        assert_eq!(err.message, "Bad handshake", "cut at {cut}");
    }
    still_fine(c, sidecar);
}

#[test]
fn wrong_sequence_id_in_the_handshake_is_refused() {
    let (c, sidecar) = shared();
    for seq in [0u8, 2, 7, 255] {
        let (mut raw, g) = Raw::greeted(sidecar.port());
        raw.send_packet(seq, &login(&g, b"app", b"app", None));
        let (_, err) = raw.expect_error_then_close();
        assert_eq!(err.code, 1156, "seq {seq}: {err}");
        assert_eq!(err.sqlstate_str(), "08S01");
        assert_eq!(err.message, "Got packets out of order");
    }
    still_fine(c, sidecar);
}

#[test]
fn wrong_sequence_id_in_the_command_phase_is_refused() {
    let (c, sidecar) = shared();
    for seq in [1u8, 3, 255] {
        let mut raw = Raw::logged_in(c, sidecar.port());
        // A well-sequenced command works first.
        raw.send_packet(0, &[0x0e]);
        let (s, ok) = raw.read_packet().expect("ping answer").expect("not EOF");
        assert_eq!(
            (s, ok.first()),
            (1, Some(&0)),
            "COM_PING is answered with OK"
        );
        raw.send_packet(seq, b"\x03SELECT 1");
        let (err_seq, err) = raw.expect_error_then_close();
        assert_eq!(err.code, 1156, "seq {seq}: {err}");
        assert_eq!(err_seq, seq.wrapping_add(1));
    }
    still_fine(c, sidecar);
}

#[test]
fn length_header_promising_16_mib_then_close() {
    let (c, sidecar) = shared();
    // In place of the handshake response.
    let (mut raw, _) = Raw::greeted(sidecar.port());
    raw.send(&[0xff, 0xff, 0xff, 0x01]);
    raw.send(&vec![0x41; 1000]);
    drop(raw);
    still_fine(c, sidecar);

    // As a command, after login, with 64 KiB of the promised payload.
    let mut raw = Raw::logged_in(c, sidecar.port());
    raw.send(&[0xff, 0xff, 0xff, 0x00]);
    raw.send(&[0x03]);
    raw.send(&vec![b'x'; 64 * 1024]);
    drop(raw);
    still_fine(c, sidecar);

    // Several at once, left open while a normal client works, then closed.
    let mut open = Vec::new();
    for _ in 0..20 {
        let mut raw = Raw::logged_in(c, sidecar.port());
        raw.send(&[0xff, 0xff, 0xff, 0x00, 0x03]);
        open.push(raw);
    }
    still_fine(c, sidecar);
    drop(open);
    still_fine(c, sidecar);
}

#[test]
fn garbage_before_the_handshake_response() {
    let (c, _) = shared();
    let sidecar = strict_sidecar(c);
    let port = sidecar.port();

    // An HTTP request: its first bytes read as a 5.5 MB packet with sequence id 0x20. The
    // sidecar must close the connection, at the latest at the handshake timeout; if it says
    // anything, it is an ERR packet.
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.0\r\n\r\n"[..],
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        &b"\x05\x00\x00\x01\xff\xff\xff\xff\xff"[..],
        &b"\x00\x00\x00\x01"[..],
        &b"\x01\x00\x00\x01\x00"[..],
    ] {
        let (mut raw, _) = Raw::greeted(port);
        raw.send(garbage);
        let (bytes, took) = raw.wait_closed(HANDSHAKE_TIMEOUT + SLACK);
        if !bytes.is_empty() {
            let err = first_error(&bytes);
            assert!(
                err.is_some(),
                "{garbage:02x?}: the sidecar answered with something other than ERR: {bytes:02x?}"
            );
        }
        eprintln!(
            "garbage {:?}: closed after {took:?} with {:?}",
            String::from_utf8_lossy(&garbage[..garbage.len().min(12)]),
            first_error(&bytes).map(|(_, e)| e.to_string())
        );
        still_fine(c, &sidecar);
    }

    // Garbage in place of the greeting being read: sent immediately on connect.
    let mut raw = Raw::connect(port);
    raw.send(b"SSH-2.0-OpenSSH_9.2\r\n");
    let _ = raw.wait_closed(HANDSHAKE_TIMEOUT + SLACK);
    still_fine(c, &sidecar);
}

#[test]
fn wrong_password_gets_1045_with_mysql_wording() {
    let (c, sidecar) = shared();
    let (mut raw, g) = Raw::greeted(sidecar.port());
    raw.send_packet(
        1,
        &login(&g, c.app_user.as_bytes(), b"not-the-password", None),
    );
    let (seq, err) = raw.expect_error_then_close();
    assert_eq!(seq, 2);
    assert_eq!(err.code, 1045);
    assert_eq!(err.sqlstate_str(), "28000");
    assert_eq!(
        err.message,
        format!(
            "Access denied for user '{}'@'127.0.0.1' (using password: YES)",
            c.app_user
        )
    );

    // A real client sees the same.
    let e = block_on(async {
        let url = format!("mysql://{}:wrong@127.0.0.1:{}", c.app_user, sidecar.port());
        let opts = mysql_async::Opts::from_url(&url).expect("URL");
        tokio::time::timeout(SLACK, mysql_async::Conn::new(opts))
            .await
            .expect("no hang")
            .expect_err("a wrong password is refused")
    });
    match e {
        mysql_async::Error::Server(s) => {
            assert_eq!(s.code, 1045);
            assert_eq!(
                s.message,
                format!(
                    "Access denied for user '{}'@'127.0.0.1' (using password: YES)",
                    c.app_user
                )
            );
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    still_fine(c, sidecar);
}

#[test]
fn unknown_user_gets_the_same_1045() {
    let (c, sidecar) = shared();
    let (mut raw, g) = Raw::greeted(sidecar.port());
    raw.send_packet(1, &login(&g, b"nobody", b"whatever", None));
    let (_, err) = raw.expect_error_then_close();
    assert_eq!(err.code, 1045);
    assert_eq!(err.sqlstate_str(), "28000");
    assert_eq!(
        err.message,
        "Access denied for user 'nobody'@'127.0.0.1' (using password: YES)"
    );

    // Without a password: "using password: NO", as mysqld says.
    let (mut raw, g) = Raw::greeted(sidecar.port());
    raw.send_packet(1, &login(&g, b"nobody", b"", None));
    let (_, err) = raw.expect_error_then_close();
    assert_eq!(err.code, 1045);
    assert_eq!(
        err.message,
        "Access denied for user 'nobody'@'127.0.0.1' (using password: NO)"
    );
    still_fine(c, sidecar);
}

#[test]
fn a_handshake_that_never_completes_is_closed_at_the_timeout() {
    let (c, _) = shared();
    let sidecar = strict_sidecar(c);
    let port = sidecar.port();

    // Greeting read, nothing sent.
    let (mut raw, _) = Raw::greeted(port);
    let (_, took) = raw.wait_closed(HANDSHAKE_TIMEOUT + SLACK);
    eprintln!("silent client closed after {took:?}");
    assert!(
        took >= HANDSHAKE_TIMEOUT / 2,
        "closed after {took:?}, before the {HANDSHAKE_TIMEOUT:?} handshake timeout"
    );

    // The greeting never read.
    let started = Instant::now();
    let mut raw = Raw::connect(port);
    std::thread::sleep(HANDSHAKE_TIMEOUT / 2);
    let _ = raw.wait_closed(HANDSHAKE_TIMEOUT + SLACK);
    eprintln!("unread greeting closed after {:?}", started.elapsed());

    // Slowloris: one byte of a valid response every 100 ms; the timeout covers the whole
    // handshake, not each read.
    let (raw, g) = Raw::greeted(port);
    let mut bytes = Vec::new();
    write_packet(&mut bytes, 1, &login(&g, b"app", b"app", None)).expect("encoding the login");
    let started = Instant::now();
    let mut stream = raw.stream;
    let mut closed = false;
    for b in &bytes {
        if stream.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > HANDSHAKE_TIMEOUT + SLACK {
            break;
        }
        // A reset shows up on the next write; a FIN as EOF on a non-blocking read.
        stream.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 64];
        let eof = match stream.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        stream.set_nonblocking(false).expect("blocking");
        if eof {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    eprintln!("slowloris closed={closed} after {took:?}");
    assert!(
        closed && took < HANDSHAKE_TIMEOUT + SLACK,
        "a byte-by-byte handshake was kept open for {took:?}"
    );

    // Many at once do not block a normal client.
    let many: Vec<Raw> = (0..50).map(|_| Raw::greeted(port).0).collect();
    still_fine(c, &sidecar);
    for mut raw in many {
        let _ = raw.wait_closed(HANDSHAKE_TIMEOUT + SLACK);
    }
    still_fine(c, &sidecar);
}

#[test]
fn a_command_larger_than_max_packet_size_gets_1153_then_close() {
    let (c, _) = shared();
    let sidecar = strict_sidecar(c);
    let port = sidecar.port();

    // The header alone announces 2 MiB: refused before the payload arrives.
    let mut raw = Raw::logged_in(c, port);
    let len = 2 * MAX_PACKET as u32;
    raw.send(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, 0, 0x03]);
    let (seq, err) = raw.expect_error_then_close();
    assert_eq!(err.code, 1153, "{err}");
    assert_eq!(err.sqlstate_str(), "08S01");
    assert_eq!(
        err.message,
        "Got a packet bigger than 'max_allowed_packet' bytes"
    );
    assert_eq!(seq, 1);
    still_fine(c, &sidecar);

    // One byte over the limit, with the start of its payload.
    let mut raw = Raw::logged_in(c, port);
    let len = MAX_PACKET as u32 + 1;
    let mut bytes = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, 0, 0x03];
    bytes.extend_from_slice(b"SELECT 1");
    raw.send(&bytes);
    let (_, err) = raw.expect_error_then_close();
    assert_eq!(err.code, 1153, "{err}");
    still_fine(c, &sidecar);

    // Exactly at the limit is accepted and forwarded.
    let mut raw = Raw::logged_in(c, port);
    let prefix = b"\x03SELECT LENGTH('";
    let suffix = b"')";
    let mut query = prefix.to_vec();
    query.resize(MAX_PACKET - suffix.len(), b'x');
    query.extend_from_slice(suffix);
    assert_eq!(query.len(), MAX_PACKET);
    raw.send_packet(0, &query);
    let (_, first) = raw
        .read_packet()
        .expect("reading the result")
        .expect("a result, not EOF");
    assert_eq!(
        first.first(),
        Some(&1),
        "a one-column result set; got {:?}",
        ErrPacket::decode(&first).map(|e| e.to_string())
    );
    drop(raw);
    still_fine(c, &sidecar);
}
