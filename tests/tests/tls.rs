//! TLS on both sides of the app sidecar, against real mariadbd and the real `shardcar`
//! binary: clients upgrading to TLS (optional and required), caching_sha2_password full
//! authentication over TLS and over the RSA key exchange, and the sidecar's own connection to
//! a mysqld that has TLS enabled.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};
use shardcar_tests::{
    free_port, http_get, shardcar_binary, workspace_root, Cluster, ClusterSpec, MariaDb,
    MariaDbOptions, SidecarOptions, SidecarProcess,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A certificate for `localhost` and `127.0.0.1` in `dir`: (cert, key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    shardcar::tls::self_signed(dir, &["localhost", "127.0.0.1"]).expect("self-signed cert")
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

fn tls_yaml(cert: &Path, key: &Path, required: bool) -> String {
    format!(
        "tls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  required: {required}\n",
        cert.display(),
        key.display()
    )
}

fn opts(port: u16, user: &str, pass: &str, ssl: Option<SslOpts>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .prefer_socket(false)
        .ssl_opts(ssl)
        .into()
}

/// TLS that trusts exactly `ca` (our self-signed certificate).
fn ssl_with_ca(ca: &Path) -> SslOpts {
    SslOpts::default().with_root_certs(vec![ca.to_path_buf().into()])
}

fn ssl_any_cert() -> SslOpts {
    SslOpts::default().with_danger_accept_invalid_certs(true)
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let value = l.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

fn client_tls_handshakes(admin_port: u16) -> f64 {
    let (_, m) = http_get(admin_port, "/metrics").expect("GET /metrics");
    metric(&m, "shardcar_tls_handshakes_total{side=\"client\"}").unwrap_or(0.0)
}

fn upstream_tls_handshakes(admin_port: u16) -> f64 {
    let (_, m) = http_get(admin_port, "/metrics").expect("GET /metrics");
    metric(&m, "shardcar_tls_handshakes_total{side=\"upstream\"}").unwrap_or(0.0)
}

async fn select_one(conn: &mut Conn) {
    let v: Option<i64> = conn.query_first("SELECT 1").await.expect("SELECT 1");
    assert_eq!(v, Some(1));
}

/// Runs a command with a 60 s bound; returns (success, stdout, stderr).
fn run(mut cmd: Command) -> (bool, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning a client program");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(s) => break s,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("client program did not finish within 60 s: {cmd:?}");
            }
        }
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (status.success(), out, err)
}

fn cli(port: u16, user: &str, pass: &str) -> Command {
    let mut cmd = Command::new("mariadb");
    cmd.arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("--host=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--user={user}"))
        .env("MYSQL_PWD", pass)
        .env_remove("MYSQL_HOST");
    cmd
}

/// The workspace's Python venv with PyMySQL and cryptography (created by the setup script).
fn python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: python3 -m venv .venv && .venv/bin/pip install PyMySQL cryptography",
        python.display()
    );
    python
}

/// Logs in with PyMySQL (`ssl_ca` = TLS verified against it, `None` = no TLS, so
/// caching_sha2 full authentication uses the RSA key exchange), runs `SELECT 1` and returns
/// what the script printed.
fn pymysql_select_one(port: u16, user: &str, pass: &str, ssl_ca: Option<&Path>) -> String {
    let script = r#"
import os, sys, pymysql
kw = dict(host="127.0.0.1", port=int(os.environ["PORT"]), user=os.environ["USER_"],
          password=os.environ["PASS"], connect_timeout=20, read_timeout=20)
ca = os.environ.get("CA")
if ca:
    kw["ssl"] = {"ca": ca, "check_hostname": True}
else:
    kw["ssl_disabled"] = True
try:
    c = pymysql.connect(**kw)
except pymysql.err.MySQLError as e:
    print("ERROR", e.args[0], e.args[1] if len(e.args) > 1 else "")
    sys.exit(0)
cur = c.cursor()
cur.execute("SELECT 1")
print("OK", cur.fetchone()[0], "tls" if c._sock.__class__.__name__ == "SSLSocket" else "plain",
      c._auth_plugin_name)
c.close()
"#;
    let mut cmd = Command::new(python());
    cmd.arg("-c")
        .arg(script)
        .env("PORT", port.to_string())
        .env("USER_", user)
        .env("PASS", pass);
    match ssl_ca {
        Some(ca) => cmd.env("CA", ca),
        None => cmd.env_remove("CA"),
    };
    let (ok, out, err) = run(cmd);
    assert!(ok, "python failed:\n{out}\n{err}");
    out.trim().to_string()
}

/// A `shardcar app` from a hand-written config, for what [`SidecarProcess`] cannot express
/// (`upstream.tls` is nested under `upstream`, which `SidecarProcess` writes itself).
struct RawSidecar {
    child: Child,
    port: u16,
    admin_port: u16,
    dir: tempfile::TempDir,
}

impl RawSidecar {
    fn spawn(upstream_section: &str) -> RawSidecar {
        let dir = temp_dir("shardcar-tls-sidecar-");
        let port = free_port();
        let admin_port = free_port();
        std::fs::write(dir.path().join("app-password"), "app").expect("password file");
        let yaml = format!(
            "listen: \"127.0.0.1:{port}\"\n\
             admin_listen: \"127.0.0.1:{admin_port}\"\n\
             users:\n  - name: app\n    password_file: \"{pw}\"\n\
             upstream:\n{upstream_section}\n",
            pw = dir.path().join("app-password").display(),
        );
        let config = dir.path().join("shardcar.yaml");
        std::fs::write(&config, yaml).expect("config");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr.log");
        let mut cmd = Command::new(shardcar_binary().expect("shardcar binary"));
        cmd.arg("app")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        shardcar::local::process::die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("spawning shardcar");
        let mut s = RawSidecar {
            child,
            port,
            admin_port,
            dir,
        };
        s.wait_for("/healthz");
        s
    }

    fn wait_for(&mut self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("shardcar exited with {status}:\n{}", self.stderr());
            }
            if matches!(http_get(self.admin_port, path), Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "shardcar's {path} never answered 200:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for RawSidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Client -> sidecar
// ---------------------------------------------------------------------------------------

/// `tls.required: false`: TLS clients (mysql_async, the mariadb CLI) and plain clients are
/// both served; each TLS upgrade is counted in `/metrics`, plain connections are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_may_upgrade_to_tls() {
    let certs = temp_dir("shardcar-tls-certs-");
    let (cert, key) = certificate(certs.path());
    let c = Cluster::start(ClusterSpec {
        sidecar_extra_yaml: tls_yaml(&cert, &key, false),
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");
    let (port, admin) = (c.sidecar.port(), c.sidecar.admin_port());
    assert_eq!(client_tls_handshakes(admin), 0.0);

    // mysql_async, verifying the certificate against it as the CA.
    let mut conn = Conn::new(opts(
        port,
        &c.app_user,
        &c.app_password,
        Some(ssl_with_ca(&cert)),
    ))
    .await
    .unwrap_or_else(|e| panic!("TLS connect: {e}\n{}", c.sidecar.stderr()));
    select_one(&mut conn).await;
    assert_eq!(client_tls_handshakes(admin), 1.0);

    // mysql_async accepting any certificate.
    let mut conn2 = Conn::new(opts(
        port,
        &c.app_user,
        &c.app_password,
        Some(ssl_any_cert()),
    ))
    .await
    .unwrap_or_else(|e| panic!("TLS connect (any cert): {e}\n{}", c.sidecar.stderr()));
    select_one(&mut conn2).await;
    assert_eq!(client_tls_handshakes(admin), 2.0);

    // Plain.
    let mut plain = Conn::new(opts(port, &c.app_user, &c.app_password, None))
        .await
        .expect("plain connect");
    select_one(&mut plain).await;
    assert_eq!(client_tls_handshakes(admin), 2.0);

    // The mariadb CLI, verifying the server certificate; `\s` reports the client's own
    // connection (not the upstream's).
    let mut cmd = cli(port, &c.app_user, &c.app_password);
    cmd.arg("--ssl")
        .arg(format!("--ssl-ca={}", cert.display()))
        .arg("--ssl-verify-server-cert")
        .arg("-e")
        .arg("SELECT 'via-tls'; \\s");
    let (ok, out, err) = run(cmd);
    assert!(ok, "mariadb --ssl failed: {err}\n{}", c.sidecar.stderr());
    assert!(out.contains("via-tls"), "{out}");
    let ssl_line = out
        .lines()
        .find(|l| l.starts_with("SSL:"))
        .unwrap_or_else(|| panic!("no SSL line in \\s output:\n{out}"));
    assert!(ssl_line.contains("Cipher in use is"), "{ssl_line}");
    assert_eq!(client_tls_handshakes(admin), 3.0);

    // The CLI without TLS.
    let mut cmd = cli(port, &c.app_user, &c.app_password);
    cmd.arg("--skip-ssl").arg("-e").arg("SELECT 'plain'; \\s");
    let (ok, out, err) = run(cmd);
    assert!(ok, "mariadb --skip-ssl failed: {err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("SSL:") && l.contains("Not in use")),
        "{out}"
    );
    assert_eq!(client_tls_handshakes(admin), 3.0);
}

/// `tls.required: true`: a plain client is refused with ER_SECURE_TRANSPORT_REQUIRED (3159);
/// a TLS client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_refuses_plain_clients_with_3159() {
    let certs = temp_dir("shardcar-tls-certs-");
    let (cert, key) = certificate(certs.path());
    let c = Cluster::start(ClusterSpec {
        sidecar_extra_yaml: tls_yaml(&cert, &key, true),
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");
    let port = c.sidecar.port();

    let err = Conn::new(opts(port, &c.app_user, &c.app_password, None))
        .await
        .map(|_| ())
        .expect_err("a plain client must be refused");
    assert_eq!(server_code(&err), Some(3159), "{err:?}");

    let mut cmd = cli(port, &c.app_user, &c.app_password);
    cmd.arg("--skip-ssl").arg("-e").arg("SELECT 1");
    let (ok, _out, err) = run(cmd);
    assert!(!ok);
    assert!(err.contains("ERROR 3159"), "{err}");

    let mut conn = Conn::new(opts(
        port,
        &c.app_user,
        &c.app_password,
        Some(ssl_any_cert()),
    ))
    .await
    .expect("TLS client");
    select_one(&mut conn).await;

    let mut cmd = cli(port, &c.app_user, &c.app_password);
    cmd.arg("--ssl")
        .arg(format!("--ssl-ca={}", cert.display()))
        .arg("-e")
        .arg("SELECT 'served'");
    let (ok, out, err) = run(cmd);
    assert!(ok, "{err}");
    assert!(out.contains("served"), "{out}");
    assert_eq!(client_tls_handshakes(c.sidecar.admin_port()), 2.0);
}

/// caching_sha2_password as the default plugin. A sidecar that has never seen a user must do
/// full authentication: over TLS the client sends the password in clear; without TLS it asks
/// for the RSA public key and sends it encrypted. Each variant gets a fresh sidecar (an empty
/// cache) in front of the same mysqld; afterwards the fast path (cached) works too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_full_authentication_over_tls_and_rsa() {
    let certs = temp_dir("shardcar-tls-certs-");
    let (cert, key) = certificate(certs.path());
    let extra = format!(
        "auth:\n  default_plugin: caching_sha2_password\n{}",
        tls_yaml(&cert, &key, false)
    );
    let c = Cluster::start(ClusterSpec {
        sidecar_extra_yaml: extra.clone(),
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");
    let fresh_sidecar = || {
        SidecarProcess::start(SidecarOptions {
            upstream_address: c.mariadb.address(),
            upstream_user: c.upstream_user.clone(),
            upstream_password: c.upstream_password.clone(),
            app_user: c.app_user.clone(),
            app_password: c.app_password.clone(),
            extra_yaml: extra.clone(),
        })
        .expect("a fresh sidecar")
    };
    let (user, pass) = (c.app_user.as_str(), c.app_password.as_str());

    // mysql_async over TLS: full authentication, then the fast path, then a wrong password.
    {
        let s = &c.sidecar;
        let mut conn = Conn::new(opts(s.port(), user, pass, Some(ssl_with_ca(&cert))))
            .await
            .unwrap_or_else(|e| panic!("mysql_async TLS full auth: {e}\n{}", s.stderr()));
        select_one(&mut conn).await;
        let mut again = Conn::new(opts(s.port(), user, pass, Some(ssl_with_ca(&cert))))
            .await
            .unwrap_or_else(|e| panic!("mysql_async fast path: {e}\n{}", s.stderr()));
        select_one(&mut again).await;
        let mut plain_cached = Conn::new(opts(s.port(), user, pass, None))
            .await
            .unwrap_or_else(|e| panic!("mysql_async plain fast path: {e}\n{}", s.stderr()));
        select_one(&mut plain_cached).await;
        let err = Conn::new(opts(s.port(), user, "wrong", Some(ssl_any_cert())))
            .await
            .map(|_| ())
            .expect_err("wrong password");
        assert_eq!(server_code(&err), Some(1045), "{err:?}\n{}", s.stderr());
        assert_eq!(client_tls_handshakes(s.admin_port()), 3.0);
    }

    // mysql_async without TLS: full authentication with the RSA public key.
    {
        let s = fresh_sidecar();
        let mut conn = Conn::new(opts(s.port(), user, pass, None))
            .await
            .unwrap_or_else(|e| panic!("mysql_async RSA full auth: {e}\n{}", s.stderr()));
        select_one(&mut conn).await;
        assert_eq!(client_tls_handshakes(s.admin_port()), 0.0);
    }

    // PyMySQL over TLS.
    {
        let s = fresh_sidecar();
        let out = pymysql_select_one(s.port(), user, pass, Some(&cert));
        assert_eq!(out, "OK 1 tls caching_sha2_password", "{}", s.stderr());
        assert_eq!(client_tls_handshakes(s.admin_port()), 1.0);
        // And a wrong password over TLS.
        let out = pymysql_select_one(s.port(), user, "wrong", Some(&cert));
        assert!(
            out.starts_with("ERROR 1045 Access denied for user 'app'@'"),
            "{out}"
        );
    }

    // PyMySQL without TLS: RSA (needs `cryptography`).
    {
        let s = fresh_sidecar();
        let out = pymysql_select_one(s.port(), user, pass, None);
        assert_eq!(out, "OK 1 plain caching_sha2_password", "{}", s.stderr());
        let out = pymysql_select_one(s.port(), user, "wrong", None);
        assert!(
            out.starts_with("ERROR 1045 Access denied for user 'app'@'"),
            "{out}"
        );
        assert_eq!(client_tls_handshakes(s.admin_port()), 0.0);
    }
}

// ---------------------------------------------------------------------------------------
// Sidecar -> mysqld
// ---------------------------------------------------------------------------------------

async fn ssl_version_through(port: u16) -> String {
    let mut conn = Conn::new(opts(port, "app", "app", None))
        .await
        .expect("connect through the sidecar");
    let row: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await
        .expect("SHOW SESSION STATUS");
    row.expect("an Ssl_version row").1
}

fn upstream_yaml(db: &MariaDb, tls: &str) -> String {
    format!(
        "  address: \"{}\"\n  user: root\n  password: \"{}\"\n{tls}",
        db.address(),
        db.root_password()
    )
}

/// mysqld with TLS enabled: with `upstream.tls` the sidecar's session to mysqld is encrypted
/// (mysqld's own `Ssl_version`, queried through the sidecar, is set), with `verify: false`
/// and with `ca_file` + `verify: true` + `server_name`; without `upstream.tls` it is plain;
/// with a CA that did not sign mysqld's certificate the sidecar refuses to talk to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_encrypts_the_session_to_mysqld() {
    let certs = temp_dir("shardcar-tls-certs-");
    let (cert, key) = certificate(certs.path());
    let db = MariaDb::start(MariaDbOptions {
        extra_args: vec![
            format!("--ssl-cert={}", cert.display()),
            format!("--ssl-key={}", key.display()),
            format!("--ssl-ca={}", cert.display()),
        ],
        ..MariaDbOptions::default()
    })
    .await
    .expect("mariadbd with TLS");
    assert_eq!(
        db.exec("SELECT @@have_ssl;")
            .await
            .expect("have_ssl")
            .trim(),
        "YES"
    );

    // No upstream TLS: plain.
    let mut plain = RawSidecar::spawn(&upstream_yaml(&db, ""));
    plain.wait_for("/ready");
    assert_eq!(ssl_version_through(plain.port).await, "");
    assert_eq!(upstream_tls_handshakes(plain.admin_port), 0.0);

    // Encrypted, certificate not checked.
    let mut any = RawSidecar::spawn(&upstream_yaml(
        &db,
        "  tls:\n    enabled: true\n    verify: false\n",
    ));
    any.wait_for("/ready");
    let version = ssl_version_through(any.port).await;
    assert!(
        version.starts_with("TLSv1."),
        "Ssl_version {version:?}\n{}",
        any.stderr()
    );

    // Encrypted and verified against the CA, by name.
    let mut verified = RawSidecar::spawn(&upstream_yaml(
        &db,
        &format!(
            "  tls:\n    enabled: true\n    verify: true\n    ca_file: \"{}\"\n    \
             server_name: localhost\n",
            cert.display()
        ),
    ));
    verified.wait_for("/ready");
    let version = ssl_version_through(verified.port).await;
    assert!(
        version.starts_with("TLSv1."),
        "Ssl_version {version:?}\n{}",
        verified.stderr()
    );

    // Verified by the IP address in upstream.address (the certificate has it as a SAN).
    let mut by_ip = RawSidecar::spawn(&upstream_yaml(
        &db,
        &format!(
            "  tls:\n    enabled: true\n    verify: true\n    ca_file: \"{}\"\n",
            cert.display()
        ),
    ));
    by_ip.wait_for("/ready");
    let version = ssl_version_through(by_ip.port).await;
    assert!(
        version.starts_with("TLSv1."),
        "Ssl_version {version:?}\n{}",
        by_ip.stderr()
    );

    // A CA that did not sign mysqld's certificate: never ready, clients get a TLS error.
    let other = temp_dir("shardcar-tls-other-");
    let (other_cert, _) = certificate(other.path());
    let wrong = RawSidecar::spawn(&upstream_yaml(
        &db,
        &format!(
            "  tls:\n    enabled: true\n    verify: true\n    ca_file: \"{}\"\n",
            other_cert.display()
        ),
    ));
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        Conn::new(opts(wrong.port, "app", "app", None)),
    )
    .await
    .expect("connecting hung")
    .map(|_| ())
    .expect_err("an unverifiable upstream must not be used");
    assert_eq!(
        server_code(&err),
        Some(1429),
        "ER_CONNECT_TO_FOREIGN_DATA_SOURCE: {err:?}"
    );
    let (status, _) = http_get(wrong.admin_port, "/ready").expect("GET /ready");
    assert_eq!(status, 503);

    // `shardcar_tls_handshakes_total{side="upstream"}` counts the upgrades toward mysqld.
    let (_, m) = http_get(any.admin_port, "/metrics").expect("GET /metrics");
    assert!(upstream_tls_handshakes(any.admin_port) >= 1.0, "{m}");
}

// ---------------------------------------------------------------------------------------
// The TLS upgrade on the wire
// ---------------------------------------------------------------------------------------

fn read_packet(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).expect("packet header");
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).expect("packet payload");
    p
}

/// A client may send its TLS ClientHello right behind the SSLRequest packet, and TCP may
/// deliver both in one segment (mysql_async and the mariadb CLI do this under load). The bytes
/// after the SSLRequest are the TLS handshake and belong to it: the sidecar must answer with a
/// ServerHello, not close the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_in_the_same_segment_as_the_ssl_request_is_accepted() {
    use std::io::Write;
    use std::sync::Arc;
    let certs = temp_dir("shardcar-tls-certs-");
    let (cert, key) = certificate(certs.path());
    let c = Cluster::start(ClusterSpec {
        sidecar_extra_yaml: tls_yaml(&cert, &key, false),
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");

    let mut roots = rustls::RootCertStore::empty();
    for der in shardcar::tls::load_certs(&cert).expect("cert") {
        roots.add(der).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tls = rustls::ClientConnection::new(
        Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").expect("name"),
    )
    .expect("client connection");
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).expect("ClientHello");
    assert_eq!(hello[0], 0x16, "a TLS handshake record");

    {
        let (what, port) = ("sidecar", c.sidecar.port());
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let greeting = read_packet(&mut s);
        assert_eq!(greeting[0], 10);
        // SSLRequest: PROTOCOL_41 | TRANSACTIONS | SSL | SECURE_CONNECTION | PLUGIN_AUTH.
        let caps: u32 = 0x200 | 0x2000 | 0x800 | 0x8000 | 0x8_0000;
        let mut payload = Vec::new();
        payload.extend_from_slice(&caps.to_le_bytes());
        payload.extend_from_slice(&(16u32 << 20).to_le_bytes());
        payload.push(45);
        payload.extend_from_slice(&[0u8; 23]);
        let mut segment = vec![payload.len() as u8, 0, 0, 1];
        segment.extend_from_slice(&payload);
        segment.extend_from_slice(&hello);
        s.write_all(&segment)
            .expect("SSLRequest + ClientHello in one write");
        let mut first = [0u8; 1];
        let n = s.read(&mut first).unwrap_or(0);
        assert_eq!(
            (n, first[0]),
            (1, 0x16),
            "{what}: expected a ServerHello record after SSLRequest + ClientHello; \
             sidecar log:\n{}",
            c.sidecar.stderr()
        );
    }
}
