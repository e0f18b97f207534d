//! 10,000 idle application connections on one sidecar: every one gets its greeting, the
//! sidecar still answers a normal client, and its memory per idle connection stays
//! bounded. Then 2,000 of them authenticate (no database, so no upstream connection is
//! opened) and the same holds.
//!
//! Needs about 10,000 file descriptors in this process and as many in the sidecar: the
//! test raises `RLIMIT_NOFILE` to the hard limit before it spawns the sidecar, which
//! inherits it. It is the only test in this binary, so that it runs alone under nextest
//! (`cargo nextest run -p shardcar-tests --test idle_connections`).
//!
//! Bytes per idle connection are printed and written to `target/idle-connections.txt`.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use shardcar_filter::protocol::constants::capabilities as caps;
use shardcar_filter::protocol::handshake::Greeting;
use shardcar_tests::client::{block_on, native_login, raw_connect, read_packet, write_packet};
use shardcar_tests::{shared_cluster, workspace_root, Cluster, SidecarProcess};

const IDLE: usize = 10_000;
const AUTHENTICATED: usize = 2_000;
const THREADS: usize = 4;
/// A generous bound on behaviour, not a benchmark.
const MAX_BYTES_PER_CONNECTION: u64 = 64 * 1024;

#[allow(unsafe_code)]
fn raise_fd_limit(wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let target = wanted.min(lim.rlim_max);
        if lim.rlim_cur < target {
            lim.rlim_cur = target;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// Connects and reads the greeting; returns the socket and the greeting.
fn greeted(port: u16) -> std::io::Result<(TcpStream, Greeting)> {
    let mut s = raw_connect(port, Duration::from_secs(20))?;
    let (seq, payload) = read_packet(&mut s)?;
    let g = Greeting::decode(&payload)
        .map_err(|e| std::io::Error::other(format!("bad greeting (seq {seq}): {e}")))?;
    Ok((s, g))
}

fn authenticate(s: &mut TcpStream, g: &Greeting, c: &Cluster) -> std::io::Result<()> {
    let resp = native_login(
        g,
        c.app_user.as_bytes(),
        c.app_password.as_bytes(),
        None,
        caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
            | caps::TRANSACTIONS
            | caps::DEPRECATE_EOF,
    );
    write_packet(s, 1, &resp)?;
    let (_, payload) = read_packet(s)?;
    if payload.first() != Some(&0) {
        return Err(std::io::Error::other(format!(
            "login refused: {:?}",
            shardcar_filter::protocol::ErrPacket::decode(&payload).map(|e| e.to_string())
        )));
    }
    Ok(())
}

fn normal_query(c: &Cluster, port: u16) {
    use mysql_async::prelude::Queryable;
    block_on(async {
        let opts = mysql_async::Opts::from_url(&c.url(port)).expect("a valid URL");
        let mut conn = tokio::time::timeout(Duration::from_secs(20), mysql_async::Conn::new(opts))
            .await
            .expect("connecting does not hang")
            .expect("a normal client connects");
        let v: Option<i64> = conn
            .query_first("SELECT COUNT(*) FROM information_schema.processlist")
            .await
            .expect("a normal query works");
        assert!(v.is_some_and(|n| n >= 1));
        conn.disconnect().await.expect("disconnect");
    });
}

fn settle_rss(sidecar: &SidecarProcess) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    sidecar.rss_kib().expect("the sidecar is running")
}

#[test]
fn ten_thousand_idle_connections_stay_small() {
    let limit = raise_fd_limit(2 * IDLE as u64 + 2_000);
    assert!(
        limit >= IDLE as u64 + 500,
        "RLIMIT_NOFILE is {limit}: {IDLE} connections need more (raise the hard limit)"
    );
    let c = shared_cluster();
    // Spawned after raising the limit: it inherits it.
    let sidecar =
        SidecarProcess::start(c.sidecar_options(format!("max_connections: {}\n", IDLE + 1_000)))
            .expect("starting the sidecar");
    let port = sidecar.port();
    normal_query(c, port);
    let rss_before = settle_rss(&sidecar);

    // Phase 1: 10,000 connections, each accepted and greeted, then left idle.
    let started = Instant::now();
    let per_thread = IDLE / THREADS;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conns = Vec::with_capacity(per_thread);
                let mut failures = Vec::new();
                for _ in 0..per_thread {
                    match greeted(port) {
                        Ok(conn) => conns.push(conn),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (conns, failures)
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(IDLE);
    let mut failures = Vec::new();
    for h in handles {
        let (c, f) = h.join().expect("connecting thread");
        conns.extend(c);
        failures.extend(f);
    }
    let opened_in = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {IDLE} connections got no greeting; first: {:?}; sidecar stderr tail:\n{}",
        failures.len(),
        failures.first(),
        tail(&sidecar.stderr())
    );
    assert_eq!(conns.len(), IDLE, "every connection got a greeting");
    let rss_idle = settle_rss(&sidecar);
    normal_query(c, port);

    // Phase 2: 2,000 of them authenticate (no database: no upstream connection).
    for (s, greeting) in conns.iter_mut().take(AUTHENTICATED) {
        authenticate(s, greeting, c).expect("an idle connection authenticates");
    }
    let rss_auth = settle_rss(&sidecar);
    normal_query(c, port);
    assert!(
        std::path::Path::new(&format!("/proc/{}", sidecar.pid())).exists(),
        "the sidecar is alive"
    );

    let per_idle = rss_idle.saturating_sub(rss_before) * 1024 / IDLE as u64;
    let per_auth_extra = rss_auth.saturating_sub(rss_idle) * 1024 / AUTHENTICATED as u64;
    let report = format!(
        "idle connections: {IDLE} greeted in {opened_in:.2?}\n\
         sidecar RSS: {rss_before} KiB before, {rss_idle} KiB with {IDLE} idle, \
         {rss_auth} KiB with {AUTHENTICATED} of them authenticated\n\
         bytes per idle (greeted, unauthenticated) connection: {per_idle}\n\
         extra bytes per authenticated idle connection (no upstream): {per_auth_extra}\n\
         bytes per authenticated idle connection: {}\n",
        per_idle + per_auth_extra
    );
    eprintln!("{report}");
    let out = workspace_root().join("target").join("idle-connections.txt");
    if let Err(e) = std::fs::write(&out, &report) {
        eprintln!("could not write {}: {e}", out.display());
    }
    assert!(
        per_idle < MAX_BYTES_PER_CONNECTION,
        "{per_idle} bytes per idle connection (bound {MAX_BYTES_PER_CONNECTION})"
    );
    assert!(
        per_idle + per_auth_extra < MAX_BYTES_PER_CONNECTION,
        "{} bytes per authenticated idle connection (bound {MAX_BYTES_PER_CONNECTION})",
        per_idle + per_auth_extra
    );
    drop(conns);
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(2000);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}
