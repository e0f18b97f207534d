//! TLS on both sides of the app sidecar, against real mariadbd and the real `shardcar`
//! binary: clients upgrading to TLS (optional and required), caching_sha2_password full
//! authentication over TLS and over the RSA key exchange, and the sidecar's own connection to
//! a mysqld that has TLS enabled.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, SslOpts};
use shardcar_tests::client::{cli, opts, raw_connect, read_packet, run, server_code};
use shardcar_tests::{
    http_get, metric, temp_dir, workspace_root, Cluster, ClusterSpec, MariaDb, MariaDbOptions,
    SidecarOptions, SidecarProcess,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Bound on a client program (`mariadb`, python) run by a test.
const CLIENT_PROGRAM_LIMIT: Duration = Duration::from_secs(60);

/// A certificate for `localhost` and `127.0.0.1` in `dir`: (cert, key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    shardcar::tls::self_signed(dir, &["localhost", "127.0.0.1"]).expect("self-signed cert")
}

/// A cluster whose sidecar serves TLS (`tls.required: required`) with a fresh self-signed
/// certificate: (the certificate's dir, the certificate, the cluster).
async fn tls_cluster(required: bool) -> (tempfile::TempDir, PathBuf, Cluster) {
    let certs = temp_dir("shardcar-tls-certs-");
    let (cert, key) = certificate(certs.path());
    let c = Cluster::start(ClusterSpec {
        sidecar_extra_yaml: tls_yaml(&cert, &key, required),
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");
    (certs, cert, c)
}

fn tls_yaml(cert: &Path, key: &Path, required: bool) -> String {
    format!(
        "tls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  required: {required}\n",
        cert.display(),
        key.display()
    )
}

/// TLS that trusts exactly `ca` (our self-signed certificate).
fn ssl_with_ca(ca: &Path) -> SslOpts {
    SslOpts::default().with_root_certs(vec![ca.to_path_buf().into()])
}

fn ssl_any_cert() -> SslOpts {
    SslOpts::default().with_danger_accept_invalid_certs(true)
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
    let (ok, out, err) = run(cmd, None, CLIENT_PROGRAM_LIMIT);
    assert!(ok, "python failed:\n{out}\n{err}");
    out.trim().to_string()
}

// ---------------------------------------------------------------------------------------
// Client -> sidecar
// ---------------------------------------------------------------------------------------

/// `tls.required: false`: TLS clients (mysql_async, the mariadb CLI) and plain clients are
/// both served; each TLS upgrade is counted in `/metrics`, plain connections are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_may_upgrade_to_tls() {
    let (_certs, cert, c) = tls_cluster(false).await;
    let (port, admin) = (c.sidecar.port(), c.sidecar.admin_port());
    assert_eq!(client_tls_handshakes(admin), 0.0);

    // mysql_async, verifying the certificate against it as the CA.
    let mut conn = Conn::new(opts(port, &c.app_user, &c.app_password).ssl_opts(ssl_with_ca(&cert)))
        .await
        .unwrap_or_else(|e| panic!("TLS connect: {e}\n{}", c.sidecar.stderr()));
    select_one(&mut conn).await;
    assert_eq!(client_tls_handshakes(admin), 1.0);

    // mysql_async accepting any certificate.
    let mut conn2 = Conn::new(opts(port, &c.app_user, &c.app_password).ssl_opts(ssl_any_cert()))
        .await
        .unwrap_or_else(|e| panic!("TLS connect (any cert): {e}\n{}", c.sidecar.stderr()));
    select_one(&mut conn2).await;
    assert_eq!(client_tls_handshakes(admin), 2.0);

    // Plain.
    let mut plain = Conn::new(opts(port, &c.app_user, &c.app_password))
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
    let (ok, out, err) = run(cmd, None, CLIENT_PROGRAM_LIMIT);
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
    let (ok, out, err) = run(cmd, None, CLIENT_PROGRAM_LIMIT);
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
    let (_certs, cert, c) = tls_cluster(true).await;
    let port = c.sidecar.port();

    let err = Conn::new(opts(port, &c.app_user, &c.app_password))
        .await
        .map(|_| ())
        .expect_err("a plain client must be refused");
    assert_eq!(server_code(&err), Some(3159), "{err:?}");

    let mut cmd = cli(port, &c.app_user, &c.app_password);
    cmd.arg("--skip-ssl").arg("-e").arg("SELECT 1");
    let (ok, _out, err) = run(cmd, None, CLIENT_PROGRAM_LIMIT);
    assert!(!ok);
    assert!(err.contains("ERROR 3159"), "{err}");

    let mut conn = Conn::new(opts(port, &c.app_user, &c.app_password).ssl_opts(ssl_any_cert()))
        .await
        .expect("TLS client");
    select_one(&mut conn).await;

    let mut cmd = cli(port, &c.app_user, &c.app_password);
    cmd.arg("--ssl")
        .arg(format!("--ssl-ca={}", cert.display()))
        .arg("-e")
        .arg("SELECT 'served'");
    let (ok, out, err) = run(cmd, None, CLIENT_PROGRAM_LIMIT);
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
    let fresh_sidecar =
        || SidecarProcess::start(c.sidecar_options(extra.clone())).expect("a fresh sidecar");
    let (user, pass) = (c.app_user.as_str(), c.app_password.as_str());

    // mysql_async over TLS: full authentication, then the fast path, then a wrong password.
    {
        let s = &c.sidecar;
        let mut conn = Conn::new(opts(s.port(), user, pass).ssl_opts(ssl_with_ca(&cert)))
            .await
            .unwrap_or_else(|e| panic!("mysql_async TLS full auth: {e}\n{}", s.stderr()));
        select_one(&mut conn).await;
        let mut again = Conn::new(opts(s.port(), user, pass).ssl_opts(ssl_with_ca(&cert)))
            .await
            .unwrap_or_else(|e| panic!("mysql_async fast path: {e}\n{}", s.stderr()));
        select_one(&mut again).await;
        let mut plain_cached = Conn::new(opts(s.port(), user, pass))
            .await
            .unwrap_or_else(|e| panic!("mysql_async plain fast path: {e}\n{}", s.stderr()));
        select_one(&mut plain_cached).await;
        let err = Conn::new(opts(s.port(), user, "wrong").ssl_opts(ssl_any_cert()))
            .await
            .map(|_| ())
            .expect_err("wrong password");
        assert_eq!(server_code(&err), Some(1045), "{err:?}\n{}", s.stderr());
        assert_eq!(client_tls_handshakes(s.admin_port()), 3.0);
    }

    // mysql_async without TLS: full authentication with the RSA public key.
    {
        let s = fresh_sidecar();
        let mut conn = Conn::new(opts(s.port(), user, pass))
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
    let mut conn = Conn::new(opts(port, "app", "app"))
        .await
        .expect("connect through the sidecar");
    let row: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await
        .expect("SHOW SESSION STATUS");
    row.expect("an Ssl_version row").1
}

/// mysqld's own `Ssl_version` for a session through `s`, a TLS version: the sidecar's
/// session to mysqld is encrypted.
async fn assert_upstream_encrypted(s: &SidecarProcess) {
    let version = ssl_version_through(s.port()).await;
    assert!(
        version.starts_with("TLSv1."),
        "Ssl_version {version:?}\n{}",
        s.stderr()
    );
}

/// Options for a sidecar in front of `db` as root, with `tls` (indented YAML) inside
/// `upstream:`.
fn upstream_tls(db: &MariaDb, tls: &str) -> SidecarOptions {
    SidecarOptions {
        upstream_address: db.address(),
        upstream_user: "root".to_string(),
        upstream_password: db.root_password().to_string(),
        upstream_extra_yaml: tls.to_string(),
        ..SidecarOptions::default()
    }
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
    let plain = SidecarProcess::start(upstream_tls(&db, "")).expect("a sidecar, ready");
    assert_eq!(ssl_version_through(plain.port()).await, "");
    assert_eq!(upstream_tls_handshakes(plain.admin_port()), 0.0);

    // Encrypted, certificate not checked.
    let any = SidecarProcess::start(upstream_tls(
        &db,
        "  tls:\n    enabled: true\n    verify: false\n",
    ))
    .expect("a sidecar, ready");
    assert_upstream_encrypted(&any).await;

    // Encrypted and verified against the CA, by name.
    let verified = SidecarProcess::start(upstream_tls(
        &db,
        &format!(
            "  tls:\n    enabled: true\n    verify: true\n    ca_file: \"{}\"\n    \
             server_name: localhost\n",
            cert.display()
        ),
    ))
    .expect("a sidecar, ready");
    assert_upstream_encrypted(&verified).await;

    // Verified by the IP address in upstream.address (the certificate has it as a SAN).
    let by_ip = SidecarProcess::start(upstream_tls(
        &db,
        &format!(
            "  tls:\n    enabled: true\n    verify: true\n    ca_file: \"{}\"\n",
            cert.display()
        ),
    ))
    .expect("a sidecar, ready");
    assert_upstream_encrypted(&by_ip).await;

    // A CA that did not sign mysqld's certificate: never ready, clients get a TLS error.
    let other = temp_dir("shardcar-tls-other-");
    let (other_cert, _) = certificate(other.path());
    let wrong = SidecarProcess::start_live(upstream_tls(
        &db,
        &format!(
            "  tls:\n    enabled: true\n    verify: true\n    ca_file: \"{}\"\n",
            other_cert.display()
        ),
    ))
    .expect("a sidecar, live");
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        Conn::new(opts(wrong.port(), "app", "app")),
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
    let (status, _) = http_get(wrong.admin_port(), "/ready").expect("GET /ready");
    assert_eq!(status, 503);

    // `shardcar_tls_handshakes_total{side="upstream"}` counts the upgrades toward mysqld.
    let (_, m) = http_get(any.admin_port(), "/metrics").expect("GET /metrics");
    assert!(upstream_tls_handshakes(any.admin_port()) >= 1.0, "{m}");
}

// ---------------------------------------------------------------------------------------
// The TLS upgrade on the wire
// ---------------------------------------------------------------------------------------

/// A client may send its TLS ClientHello right behind the SSLRequest packet, and TCP may
/// deliver both in one segment (mysql_async and the mariadb CLI do this under load). The bytes
/// after the SSLRequest are the TLS handshake and belong to it: the sidecar must answer with a
/// ServerHello, not close the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_in_the_same_segment_as_the_ssl_request_is_accepted() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    let (_certs, cert, c) = tls_cluster(false).await;

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
        let mut s = raw_connect(port, Duration::from_secs(10)).expect("connect");
        let greeting = read_packet(&mut s).expect("the greeting").1;
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
