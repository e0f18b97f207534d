//! Unit tests of configuration parsing, overrides, validation and credentials.

use std::io::Write;

use clap::Parser;
use shardcar_filter::protocol::auth;

use super::*;

/// MySQL's `PASSWORD('password')`.
const NATIVE_APP: &str = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19";

fn user_with_hash(name: &str) -> UserConfig {
    UserConfig {
        name: name.to_owned(),
        native_hash: Some(NATIVE_APP.to_owned()),
        ..UserConfig::default()
    }
}

fn valid() -> AppConfig {
    AppConfig {
        users: vec![user_with_hash("app")],
        ..AppConfig::default()
    }
}

fn field_of(r: Result<(), ConfigError>) -> String {
    match r {
        Ok(()) => "(no error)".to_owned(),
        Err(e) => e.field().to_owned(),
    }
}

#[test]
fn empty_document_is_the_defaults() -> Result<(), ConfigError> {
    assert_eq!(AppConfig::from_yaml_str("")?, AppConfig::default());
    assert_eq!(
        AppConfig::from_yaml_str("# nothing\n")?,
        AppConfig::default()
    );
    Ok(())
}

#[test]
fn full_document_parses_every_field() -> Result<(), ConfigError> {
    let c = AppConfig::from_yaml_str(
        r#"
listen: 0.0.0.0:3306
admin_listen: 0.0.0.0:15001
max_connections: 5
max_packet_size: 2048
handshake_timeout_ms: 100
drain_timeout_ms: 200
idle_timeout_ms: 300
local_infile: true
auth:
  default_plugin: caching_sha2_password
  rsa_private_key_file: /k.pem
users:
  - name: app
    native_hash: "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
  - name: other
    password_env: OTHER_PW
tls:
  cert_file: s.pem
  key_file: s.key
  required: true
upstream:
  address: unix:/run/mysqld.sock
  user: u
  password_file: /pw
  database: db
  connect_timeout_ms: 7
  tls:
    enabled: true
    verify: false
    server_name: db.internal
"#,
    )?;
    assert_eq!(c.listen.to_string(), "0.0.0.0:3306");
    assert_eq!(c.admin_listen.port(), 15001);
    assert_eq!(c.max_connections, 5);
    assert_eq!(c.max_packet_size, 2048);
    assert_eq!(c.handshake_timeout(), Duration::from_millis(100));
    assert_eq!(c.drain_timeout(), Duration::from_millis(200));
    assert_eq!(c.idle_timeout(), Some(Duration::from_millis(300)));
    assert!(c.local_infile);
    assert_eq!(
        c.auth.default_plugin.plugin(),
        AuthPlugin::CachingSha2Password
    );
    assert_eq!(c.users.len(), 2);
    assert_eq!(c.users[1].password_env.as_deref(), Some("OTHER_PW"));
    let tls = c.tls.as_ref().map(|t| t.required);
    assert_eq!(tls, Some(true));
    assert_eq!(
        c.upstream.endpoint()?,
        Endpoint::Unix("/run/mysqld.sock".into())
    );
    assert_eq!(c.upstream.connect_timeout(), Duration::from_millis(7));
    let utls = c.upstream.tls.clone().unwrap_or_default();
    assert!(utls.enabled && !utls.verify);
    assert_eq!(utls.server_name.as_deref(), Some("db.internal"));
    Ok(())
}

#[test]
fn defaults_match_the_documented_values() {
    let c = AppConfig::default();
    assert_eq!(c.listen.to_string(), "127.0.0.1:3306");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:15000");
    assert_eq!(c.max_connections, 10_000);
    assert_eq!(c.max_packet_size, 67_108_864);
    assert_eq!(c.idle_timeout(), None);
    assert_eq!(c.auth.default_plugin, AuthPluginName::MysqlNativePassword);
    assert_eq!(c.upstream.address, "127.0.0.1:3307");
    assert_eq!(c.upstream.connect_timeout_ms, 5000);
    assert!(UpstreamTlsConfig::default().verify);
}

#[test]
fn unknown_top_level_field_is_named() {
    let err = AppConfig::from_yaml_str("listen: 127.0.0.1:1\nlisten_port: 3\n");
    let Err(e) = err else {
        panic!("unknown field accepted");
    };
    assert_eq!(e.field(), "listen_port");
    let text = e.to_string();
    assert!(
        text.starts_with("invalid configuration: listen_port: unknown field `listen_port`"),
        "{text}"
    );
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn unknown_nested_field_is_named_with_its_path() {
    let yaml = "users:\n  - name: a\n    native_hash: x\n  - name: b\n    sha2hash: y\n";
    match AppConfig::from_yaml_str(yaml) {
        Err(e) => {
            assert_eq!(e.field(), "users[1].sha2hash", "{e}");
            assert!(
                e.to_string().starts_with(
                    "invalid configuration: users[1].sha2hash: unknown field `sha2hash`"
                ),
                "{e}"
            );
        }
        Ok(_) => panic!("unknown field accepted"),
    }
    match AppConfig::from_yaml_str("upstream:\n  tls:\n    verfy: false\n") {
        Err(e) => assert_eq!(e.field(), "upstream.tls.verfy", "{e}"),
        Ok(_) => panic!("unknown field accepted"),
    }
}

#[test]
fn wrongly_typed_field_is_named() {
    match AppConfig::from_yaml_str("max_connections: lots\n") {
        Err(e) => assert_eq!(e.field(), "max_connections", "{e}"),
        Ok(_) => panic!("bad type accepted"),
    }
    match AppConfig::from_yaml_str("auth:\n  default_plugin: sha256_password\n") {
        Err(e) => assert_eq!(e.field(), "auth.default_plugin", "{e}"),
        Ok(_) => panic!("bad plugin accepted"),
    }
    match AppConfig::from_yaml_str("tls:\n  cert_file: a.pem\n") {
        Err(e) => assert_eq!(e.field(), "tls.key_file", "{e}"),
        Ok(_) => panic!("missing key_file accepted"),
    }
    match AppConfig::from_yaml_str("listen: [unclosed\n") {
        Err(e) => assert_eq!(e.field(), "(document)", "{e}"),
        Ok(_) => panic!("broken yaml accepted"),
    }
}

#[test]
fn valid_config_validates() -> Result<(), ConfigError> {
    valid().validate()
}

#[test]
fn each_validation_failure_names_its_field() {
    let mut c = valid();
    c.users.clear();
    assert_eq!(field_of(c.validate()), "users");

    let mut c = valid();
    c.users.push(user_with_hash("app"));
    assert_eq!(field_of(c.validate()), "users[1].name");

    let mut c = valid();
    c.users.push(UserConfig {
        name: "nocred".into(),
        ..UserConfig::default()
    });
    assert_eq!(field_of(c.validate()), "users[1]");

    let mut c = valid();
    c.users.push(UserConfig {
        name: "b".into(),
        sha2_hash: Some("abc".into()),
        ..UserConfig::default()
    });
    let e = c.validate();
    assert_eq!(field_of(c.validate()), "users[1].sha2_hash");
    match e {
        Err(e) => assert_eq!(
            e.to_string(),
            "invalid configuration: users[1].sha2_hash: expected 64 hex digits"
        ),
        Ok(()) => panic!("short hash accepted"),
    }

    let mut c = valid();
    c.users[0].native_hash = Some("*XYZ".into());
    assert_eq!(field_of(c.validate()), "users[0].native_hash");

    let mut c = valid();
    c.max_packet_size = 100;
    assert_eq!(field_of(c.validate()), "max_packet_size");
    c.max_packet_size = (1 << 30) + 1;
    assert_eq!(field_of(c.validate()), "max_packet_size");

    let mut c = valid();
    c.max_connections = 0;
    assert_eq!(field_of(c.validate()), "max_connections");

    let mut c = valid();
    c.handshake_timeout_ms = 0;
    assert_eq!(field_of(c.validate()), "handshake_timeout_ms");

    let mut c = valid();
    c.upstream.connect_timeout_ms = 0;
    assert_eq!(field_of(c.validate()), "upstream.connect_timeout_ms");

    let mut c = valid();
    c.admin_listen = c.listen;
    assert_eq!(field_of(c.validate()), "admin_listen");

    for bad in ["", "db", "db:", ":3306", "db:99999", "::1:3306", "unix:"] {
        let mut c = valid();
        c.upstream.address = bad.into();
        assert_eq!(field_of(c.validate()), "upstream.address", "{bad:?}");
    }

    let mut c = valid();
    c.upstream.user.clear();
    assert_eq!(field_of(c.validate()), "upstream.user");

    let mut c = valid();
    c.upstream.password = Some("a".into());
    c.upstream.password_env = Some("B".into());
    assert_eq!(field_of(c.validate()), "upstream.password");

    let mut c = valid();
    c.tls = Some(ServerTlsConfig {
        cert_file: "/nonexistent/cert.pem".into(),
        key_file: "/nonexistent/key.pem".into(),
        required: false,
        client_ca_file: None,
        require_client_certificate: false,
    });
    assert_eq!(field_of(c.validate()), "tls.cert_file");

    let mut c = valid();
    c.auth.rsa_private_key_file = Some("/nonexistent/rsa.pem".into());
    assert_eq!(field_of(c.validate()), "auth.rsa_private_key_file");

    let mut c = valid();
    c.upstream.tls = Some(UpstreamTlsConfig {
        enabled: true,
        ..UpstreamTlsConfig::default()
    });
    assert_eq!(field_of(c.validate()), "upstream.tls.ca_file");

    let mut c = valid();
    c.upstream.tls = Some(UpstreamTlsConfig {
        enabled: true,
        verify: false,
        server_name: Some("not a name!".into()),
        ..UpstreamTlsConfig::default()
    });
    assert_eq!(field_of(c.validate()), "upstream.tls.server_name");
}

#[test]
fn endpoints_parse() -> Result<(), ConfigError> {
    let mut u = UpstreamConfig::default();
    for (addr, host) in [
        ("db:3306", "db"),
        ("10.0.0.1:3306", "10.0.0.1"),
        ("[::1]:3306", "::1"),
    ] {
        u.address = addr.into();
        let e = u.endpoint()?;
        assert_eq!(e, Endpoint::Tcp(addr.into()));
        assert_eq!(e.host(), Some(host));
    }
    u.address = "unix:/tmp/m.sock".into();
    assert_eq!(u.endpoint()?, Endpoint::Unix("/tmp/m.sock".into()));
    Ok(())
}

#[test]
fn password_file_trailing_newline_is_stripped() -> Result<(), Box<dyn std::error::Error>> {
    let mut f = tempfile::NamedTempFile::new()?;
    f.write_all(b"s3cret\r\n")?;
    let u = UserConfig {
        name: "app".into(),
        password_file: Some(f.path().to_owned()),
        ..UserConfig::default()
    };
    let creds = u.resolve("users[0]")?;
    assert_eq!(creds, Credentials::from_password(b"s3cret"));
    assert_ne!(creds, Credentials::from_password(b"s3cret\r\n"));

    let up = UpstreamConfig {
        password_file: Some(f.path().to_owned()),
        ..UpstreamConfig::default()
    };
    assert_eq!(up.password_bytes()?, b"s3cret");
    Ok(())
}

#[test]
fn missing_password_file_names_the_field() {
    let u = UserConfig {
        name: "app".into(),
        password_file: Some("/nonexistent/pw".into()),
        ..UserConfig::default()
    };
    match u.resolve("users[3]") {
        Err(e) => {
            assert_eq!(e.field(), "users[3].password_file");
            assert!(e.to_string().contains("/nonexistent/pw"), "{e}");
        }
        Ok(_) => panic!("missing file accepted"),
    }
}

#[test]
fn password_env_is_hashed() -> Result<(), ConfigError> {
    std::env::set_var("SHARDCAR_TEST_PW_ENV_7731", "hunter2");
    let u = UserConfig {
        name: "app".into(),
        password_env: Some("SHARDCAR_TEST_PW_ENV_7731".into()),
        ..UserConfig::default()
    };
    assert_eq!(
        u.resolve("users[0]")?,
        Credentials::from_password(b"hunter2")
    );
    let missing = UserConfig {
        password_env: Some("SHARDCAR_TEST_PW_ENV_UNSET_7731".into()),
        ..u.clone()
    };
    match missing.resolve("users[0]") {
        Err(e) => assert_eq!(e.field(), "users[0].password_env"),
        Ok(_) => panic!("unset variable accepted"),
    }
    let both = UserConfig {
        native_hash: Some(NATIVE_APP.into()),
        ..u
    };
    match both.resolve("users[0]") {
        Err(e) => assert_eq!(e.field(), "users[0].password_env"),
        Ok(_) => panic!("hash and password both accepted"),
    }
    Ok(())
}

#[test]
fn hashes_parse_into_credentials() -> Result<(), ConfigError> {
    let sha2 = hex::encode(auth::sha2_password_hash(b"password"));
    let u = UserConfig {
        name: "app".into(),
        native_hash: Some(NATIVE_APP.into()),
        sha2_hash: Some(sha2),
        ..UserConfig::default()
    };
    let c = u.resolve("users[0]")?;
    assert_eq!(c, Credentials::from_password(b"password"));
    let only_native = UserConfig {
        sha2_hash: None,
        ..u
    };
    assert!(only_native.resolve("users[0]")?.sha2.is_none());
    let cfg = AppConfig {
        users: vec![only_native],
        ..AppConfig::default()
    };
    let users = cfg.resolve_users()?;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].0, "app");
    Ok(())
}

#[derive(Debug, clap::Parser)]
struct TestCli {
    #[command(flatten)]
    o: AppOverrides,
}

/// All environment-dependent override checks live in this one test, since the process
/// environment is shared by the test threads.
#[test]
fn overrides_follow_defaults_file_env_flags_precedence() -> Result<(), Box<dyn std::error::Error>> {
    let mut file = AppConfig::from_yaml_str(
        "listen: 127.0.0.1:4000\nmax_connections: 7\nupstream:\n  address: db:1\n  password: inline\n",
    )?;
    assert_eq!(file.max_connections, 7);

    std::env::set_var("SHARDCAR_MAX_CONNECTIONS", "9");
    std::env::set_var("SHARDCAR_UPSTREAM_ADDRESS", "envdb:2");
    std::env::set_var("SHARDCAR_LOCAL_INFILE", "yes");
    let parsed = TestCli::try_parse_from([
        "t",
        "--upstream",
        "flagdb:3",
        "--listen",
        "127.0.0.1:5000",
        "--upstream-password-file",
        "/pw",
    ]);
    std::env::remove_var("SHARDCAR_MAX_CONNECTIONS");
    std::env::remove_var("SHARDCAR_UPSTREAM_ADDRESS");
    std::env::remove_var("SHARDCAR_LOCAL_INFILE");
    let o = parsed?.o;
    file.apply_overrides(&o);
    assert_eq!(file.listen.port(), 5000, "flag over file");
    assert_eq!(file.max_connections, 9, "env over file");
    assert_eq!(file.upstream.address, "flagdb:3", "flag over env");
    assert!(file.local_infile, "boolish env");
    assert_eq!(
        file.upstream.password, None,
        "password file replaces inline"
    );
    assert_eq!(file.upstream.password_file, Some("/pw".into()));
    assert_eq!(file.admin_listen, DEFAULT_ADMIN_LISTEN, "untouched default");

    let o = TestCli::try_parse_from(["t", "--local-infile"])?.o;
    assert_eq!(o.local_infile, Some(true));
    let o = TestCli::try_parse_from(["t", "--local-infile=false"])?.o;
    assert_eq!(o.local_infile, Some(false));
    assert!(TestCli::try_parse_from(["t", "--listen", "nope"]).is_err());

    // A db sidecar on Kubernetes: its uid and pod IP from the environment, mysqld beside it.
    let mut db = AppConfig::from_yaml_str(
        "upstream:\n  address: 127.0.0.1:3306\n  password: x\ntopology:\n  etcd_endpoints: [\"http://e:2379\"]\n  cell: c1\n  uid: 1\n  keyspace: ks\n",
    )?;
    std::env::set_var("SHARDCAR_TABLET_UID", "102");
    std::env::set_var("SHARDCAR_TABLET_HOSTNAME", "10.1.2.3");
    let parsed = TestCli::try_parse_from(["t"]);
    std::env::remove_var("SHARDCAR_TABLET_UID");
    std::env::remove_var("SHARDCAR_TABLET_HOSTNAME");
    db.apply_overrides(&parsed?.o);
    let t = db.topology.as_ref().ok_or("topology")?;
    assert_eq!(t.uid, 102);
    assert_eq!(t.hostname.as_deref(), Some("10.1.2.3"));
    assert_eq!(t.mysqld_address.as_deref(), Some("10.1.2.3:3306"));
    Ok(())
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() -> Result<(), Box<dyn std::error::Error>> {
    let mut f = tempfile::NamedTempFile::new()?;
    f.write_all(b"max_connections: 3\n")?;
    assert_eq!(AppConfig::load(Some(f.path()))?.max_connections, 3);
    assert_eq!(AppConfig::load(None)?, AppConfig::default());
    match AppConfig::load(Some(Path::new("/nonexistent/shardcar.yaml"))) {
        Err(e) => assert_eq!(e.field(), "config"),
        Ok(_) => panic!("missing file accepted"),
    }
    Ok(())
}
