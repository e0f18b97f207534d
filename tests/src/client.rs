//! Client-side helpers shared by the suites: `mysql_async` options and error codes, the
//! `mariadb` command-line programs, running a child program with a time bound, and a raw
//! MySQL socket (packets, the greeting, a `mysql_native_password` login).

use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use shardcar_filter::protocol::auth::{native_password_scramble, AuthPlugin};
use shardcar_filter::protocol::constants::capabilities as caps;
use shardcar_filter::protocol::handshake::{Greeting, HandshakeResponse};

// ---------------------------------------------------------------------------------------
// mysql_async
// ---------------------------------------------------------------------------------------

/// `mysql_async` options for `user` on 127.0.0.1:`port` over TCP (no switch to the unix
/// socket); add `.db_name(..)`, `.ssl_opts(..)` and the like as needed.
pub fn opts(port: u16, user: &str, pass: &str) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .prefer_socket(false)
}

/// The MySQL error code of a server error (an ERR packet the client received).
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Runs `future` to completion on a fresh current-thread runtime (for sync tests that use
/// `mysql_async`).
pub fn block_on<F: Future>(future: F) -> F::Output {
    #[allow(clippy::expect_used)]
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for mysql_async");
    rt.block_on(future)
}

// ---------------------------------------------------------------------------------------
// Client programs
// ---------------------------------------------------------------------------------------

/// The `mariadb` command-line client, pointed at 127.0.0.1:`port` over TCP as `user`
/// (password in `MYSQL_PWD`, no option files).
pub fn cli(port: u16, user: &str, pass: &str) -> Command {
    client_program("mariadb", port, user, pass)
}

/// A MariaDB client program (`mariadb`, `mariadb-admin`, ...) with the connection options
/// of [`cli`].
pub fn client_program(program: &str, port: u16, user: &str, pass: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("--host=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--user={user}"))
        .env("MYSQL_PWD", pass)
        .env_remove("MYSQL_HOST");
    cmd
}

/// Runs `cmd` with `input` on its stdin (`None`: stdin is `/dev/null`) and returns
/// (success, stdout, stderr). Panics if it does not finish within `limit`, so a hang fails
/// the test instead of blocking it.
pub fn run(cmd: Command, input: Option<&str>, limit: Duration) -> (bool, String, String) {
    let what = format!("client program {cmd:?}");
    let out = run_output(cmd, input.map(str::as_bytes), limit, &what);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cmd` with `input` on its stdin (`None`: stdin is `/dev/null`), collecting stdout and
/// stderr while it runs (a full pipe would block it forever). Panics, naming `what` and with
/// what it wrote to stderr, if it does not finish within `limit`; the child is killed then.
pub fn run_output(mut cmd: Command, input: Option<&[u8]>, limit: Duration, what: &str) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("collecting the output of {what}: {e}")),
        Err(_) => {
            shardcar::local::process::send_signal(pid, libc::SIGKILL);
            let stderr = rx
                .recv_timeout(Duration::from_secs(10))
                .ok()
                .and_then(Result::ok)
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            panic!("{what} did not finish within {limit:?} (a hang?); stderr:\n{stderr}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw MySQL packets over a blocking socket
// ---------------------------------------------------------------------------------------

/// A TCP connection to 127.0.0.1:`port` whose reads time out after `read_timeout`.
pub fn raw_connect(port: u16, read_timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(read_timeout))?;
    Ok(stream)
}

/// The payload length in a packet header (its first three bytes, little-endian).
pub fn payload_len(header: &[u8]) -> usize {
    usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16
}

/// One physical packet: (sequence id, payload).
pub fn read_packet(r: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    read_packet_or_eof(r)?.ok_or_else(|| {
        std::io::Error::new(ErrorKind::UnexpectedEof, "the peer closed before a packet")
    })
}

/// One physical packet; `Ok(None)` on an EOF before its header was complete.
pub fn read_packet_or_eof(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut payload = vec![0; payload_len(&header)];
    r.read_exact(&mut payload)?;
    Ok(Some((header[3], payload)))
}

/// Writes `payload` as a packet with sequence id `seq` (split as the protocol says when it is
/// 16 MiB or more).
pub fn write_packet(w: &mut impl Write, seq: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::new();
    let mut seq = seq;
    shardcar_filter::protocol::packet::write_packet(&mut out, &mut seq, payload);
    w.write_all(&out)
}

/// A HandshakeResponse41 answering `g` with `mysql_native_password` and exactly
/// `capabilities` (plus `CLIENT_CONNECT_WITH_DB` when `database` is given). An empty password
/// sends an empty auth response, as clients do.
pub fn native_login(
    g: &Greeting,
    user: &[u8],
    password: &[u8],
    database: Option<&[u8]>,
    capabilities: u32,
) -> Vec<u8> {
    let auth_response = if password.is_empty() {
        Vec::new()
    } else {
        native_password_scramble(password, &g.scramble)
    };
    let with_db = if database.is_some() {
        caps::CONNECT_WITH_DB
    } else {
        0
    };
    HandshakeResponse {
        capabilities: capabilities | with_db,
        max_packet_size: 1 << 24,
        collation: 45,
        username: user.to_vec(),
        auth_response,
        database: database.map(<[u8]>::to_vec),
        auth_plugin: Some(AuthPlugin::NativePassword.name().as_bytes().to_vec()),
        connect_attrs: Vec::new(),
    }
    .encode()
}
