//! The stream filter on synthetic sessions built with the codec: pass-through without a
//! copy, refusals by SIGNAL with the client's sequence ids, row-limit cuts, TLS,
//! oversize statements, and reads split at every byte.

use super::policy::StreamPolicy;
use super::*;
use crate::protocol::column::ColumnDefinition;
use crate::protocol::constants::capabilities as caps;
use crate::protocol::handshake::{Greeting, HandshakeResponse};
use crate::protocol::packet::write_packet;
use crate::protocol::resultset::encode_text_row_cells;
use crate::protocol::{Command, EofPacket, ErrPacket, OkPacket};
use std::sync::Arc;

const CAPS: u32 = caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::TRANSACTIONS
    | caps::CONNECT_WITH_DB
    | caps::MULTI_RESULTS;

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = seq;
    write_packet(&mut out, &mut s, payload);
    out
}

fn filter(config: &str) -> ConnectionFilter {
    filter_for(
        config,
        Peer {
            address: "10.0.0.9:4000".into(),
            certificate: None,
        },
    )
}

fn filter_for(config: &str, peer: Peer) -> ConnectionFilter {
    let policy = StreamPolicy::from_json(config.as_bytes()).expect("config");
    ConnectionFilter::new(Arc::new(policy), peer)
}

fn forwarded(input: &[u8], f: Forward) -> Vec<u8> {
    match f {
        Forward::Input => input.to_vec(),
        Forward::Replace(v) => v,
    }
}

/// Greeting, login as `user`, OK: the filter is in the command phase.
fn logged_in(config: &str, user: &str, extra_caps: u32) -> ConnectionFilter {
    log_in(filter(config), user, extra_caps)
}

fn log_in(mut f: ConnectionFilter, user: &str, extra_caps: u32) -> ConnectionFilter {
    log_in_as(&mut f, user, extra_caps);
    f
}

fn log_in_as(f: &mut ConnectionFilter, user: &str, extra_caps: u32) {
    let greeting = Greeting {
        protocol_version: 10,
        server_version: "10.11.0-MariaDB".into(),
        connection_id: 7,
        scramble: vec![1; 20],
        capabilities: CAPS | extra_caps | caps::SSL,
        mariadb_capabilities: 0,
        collation: 45,
        status: 2,
        auth_plugin: b"mysql_native_password".to_vec(),
    };
    let g = packet(0, &greeting.encode());
    let handed = forwarded(&g, f.server_data(&g, 0));
    let seen = Greeting::decode(&handed[4..]).expect("a greeting");
    assert_eq!(seen.capabilities, greeting.capabilities & !caps::COMPRESS);
    let login = HandshakeResponse {
        capabilities: CAPS | extra_caps,
        max_packet_size: 1 << 24,
        collation: 45,
        username: user.as_bytes().to_vec(),
        auth_response: vec![2; 20],
        database: Some(b"shop".to_vec()),
        auth_plugin: Some(b"mysql_native_password".to_vec()),
        connect_attrs: Vec::new(),
    };
    let l = packet(1, &login.encode());
    assert_eq!(f.client_data(&l, 0), Forward::Input);
    let ok = packet(2, &OkPacket::default().encode(CAPS));
    assert_eq!(f.server_data(&ok, 0), Forward::Input);
    assert!(f
        .drain_events()
        .any(|e| e == Event::Login { user: user.into() }));
}

fn query(text: &str) -> Vec<u8> {
    let mut payload = vec![Command::Query as u8];
    payload.extend_from_slice(text.as_bytes());
    packet(0, &payload)
}

/// A text result of `n` one-column rows, with classic EOFs.
fn result(n: usize) -> Vec<u8> {
    let mut out = packet(1, &[1]);
    let col = ColumnDefinition::new("id", crate::protocol::constants::column_type::LONG);
    out.extend(packet(2, &col.encode()));
    out.extend(packet(
        3,
        &EofPacket {
            warnings: 0,
            status: 2,
        }
        .encode(),
    ));
    let mut seq = 4u8;
    for i in 0..n {
        let mut row = Vec::new();
        encode_text_row_cells(&[Some(i.to_string().as_bytes())], &mut row);
        out.extend(packet(seq, &row));
        seq = seq.wrapping_add(1);
    }
    out.extend(packet(
        seq,
        &EofPacket {
            warnings: 0,
            status: 2,
        }
        .encode(),
    ));
    out
}

fn statements(f: &mut ConnectionFilter) -> Vec<Statement> {
    f.drain_events()
        .filter_map(|e| match e {
            Event::Statement(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn a_plain_session_is_forwarded_without_copies() {
    let mut f = logged_in("", "app", 0);
    let q = query("SELECT id FROM items WHERE id > 1");
    assert_eq!(f.client_data(&q, 10), Forward::Input);
    let r = result(3);
    assert_eq!(f.server_data(&r, 5_010), Forward::Input);
    let s = statements(&mut f);
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].kind, s[0].table.as_deref(), s[0].rows),
        ("select", Some("items"), 3)
    );
    assert_eq!(s[0].latency_ns, 5_000);
    assert_eq!(f.buffered(), 0);
}

#[test]
fn reads_split_at_every_byte_give_the_same_stream() {
    let mut f = logged_in("", "app", 0);
    let q = [query("SELECT id FROM items"), query("DO 1")].concat();
    let mut up = Vec::new();
    for b in q.chunks(1) {
        up.extend(forwarded(b, f.client_data(b, 0)));
    }
    assert_eq!(up, q);
    let r = [result(5), packet(1, &OkPacket::default().encode(CAPS))].concat();
    let mut down = Vec::new();
    for b in r.chunks(1) {
        down.extend(forwarded(b, f.server_data(b, 0)));
    }
    assert_eq!(down, r);
    assert_eq!(statements(&mut f).len(), 2);
}

#[test]
fn a_denied_statement_becomes_a_signal_and_its_err_keeps_the_sequence() {
    let config = r#"{"queryPolicy": {"rules": [{"name": "no-secret", "match": {"tables": ["secret"]}, "action": "deny", "message": "nope"}]}}"#;
    let mut f = logged_in(config, "app", 0);
    let q = query("SELECT * FROM secret");
    let up = forwarded(&q, f.client_data(&q, 0));
    let text = String::from_utf8_lossy(&up[5..]).into_owned();
    assert!(
        text.starts_with("SIGNAL SQLSTATE '42000' SET MYSQL_ERRNO = 1148"),
        "{text}"
    );
    assert!(f.drain_events().any(|e| e
        == Event::Refused {
            reason: Refusal::Rule("no-secret".into()),
            kind: "select"
        }));
    // mysqld answers the SIGNAL with an ERR; the client gets it as the answer to its query.
    let err = ErrPacket::new(crate::protocol::error_codes::ER_NOT_ALLOWED_COMMAND, "nope");
    let answer = packet(1, &err.encode());
    let mut down = Vec::new();
    for b in answer.chunks(3) {
        down.extend(forwarded(b, f.server_data(b, 0)));
    }
    assert_eq!(down, answer);
    let s = statements(&mut f);
    assert_eq!(s[0].error, Some(1148));
    // The session goes on.
    let q = query("SELECT 1");
    assert_eq!(f.client_data(&q, 0), Forward::Input);
}

#[test]
fn the_row_limit_is_added_and_a_longer_result_is_cut() {
    let config = r#"{"queryPolicy": {"limits": {"max_rows": 2}}}"#;
    let mut f = logged_in(config, "app", 0);
    let q = query("SELECT id FROM items");
    let up = forwarded(&q, f.client_data(&q, 0));
    assert_eq!(&up[5..], b"SELECT id FROM items LIMIT 3");
    assert_eq!(up[0] as usize, up.len() - 4);
    let r = result(3);
    let down = forwarded(&r, f.server_data(&r, 0));
    // Columns, two rows, then an ERR 1104 with the next sequence id.
    let cut = &result(2)[..result(2).len() - 9];
    assert_eq!(&down[..cut.len()], cut);
    let tail = &down[cut.len()..];
    assert_eq!(tail[3], 6);
    let err = ErrPacket::decode(&tail[4..]).expect("an ERR");
    assert_eq!(err.code, 1104);
    assert!(
        err.message.contains("Row count exceeded 2"),
        "{}",
        err.message
    );
    assert!(f
        .drain_events()
        .any(|e| matches!(e, Event::RowLimited { .. })));
}

#[test]
fn truncate_mode_ends_the_result_normally() {
    let config = r#"{"queryPolicy": {"limits": {"max_rows": 2, "max_rows_mode": "truncate"}}}"#;
    let mut f = logged_in(config, "app", 0);
    let q = query("SELECT id FROM items LIMIT 10");
    assert_eq!(
        f.client_data(&q, 0),
        Forward::Input,
        "a LIMIT of its own is kept"
    );
    let r = result(4);
    let mut down = Vec::new();
    for b in r.chunks(2) {
        down.extend(forwarded(b, f.server_data(b, 0)));
    }
    let two = result(2);
    assert_eq!(down, two);
    let s = statements(&mut f);
    assert_eq!((s[0].rows, s[0].error), (2, None));
}

#[test]
fn tls_is_opaque_and_counted() {
    let mut f = filter("");
    let greeting = Greeting {
        protocol_version: 10,
        server_version: "10.11".into(),
        connection_id: 1,
        scramble: vec![1; 20],
        capabilities: CAPS | caps::SSL,
        mariadb_capabilities: 0,
        collation: 45,
        status: 2,
        auth_plugin: b"mysql_native_password".to_vec(),
    };
    let g = packet(0, &greeting.encode());
    f.server_data(&g, 0);
    let mut ssl = Vec::new();
    crate::protocol::wire::put_u32(&mut ssl, CAPS | caps::SSL);
    crate::protocol::wire::put_u32(&mut ssl, 1 << 24);
    ssl.push(45);
    ssl.extend_from_slice(&[0; 23]);
    let req = packet(1, &ssl);
    assert_eq!(f.client_data(&req, 0), Forward::Input);
    let hello = [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5];
    assert_eq!(f.client_data(&hello, 0), Forward::Input);
    assert!(f.is_opaque());
    let events: Vec<Event> = f.drain_events().collect();
    assert!(events.contains(&Event::Tls));
    assert!(events.contains(&Event::Opaque { bytes: 10 }));
}

#[test]
fn an_oversize_statement_is_refused_and_dropped() {
    let mut f = logged_in(r#"{"maxStatementBytes": 100}"#, "app", 0);
    let q = query(&format!("SELECT '{}'", "x".repeat(500)));
    let mut up = Vec::new();
    for b in q.chunks(64) {
        up.extend(forwarded(b, f.client_data(b, 0)));
    }
    let text = String::from_utf8_lossy(&up[5..]).into_owned();
    assert!(
        text.starts_with("SIGNAL SQLSTATE '08S01' SET MYSQL_ERRNO = 1153"),
        "{text}"
    );
    assert_eq!(
        up.len(),
        4 + up[0] as usize,
        "only the SIGNAL goes upstream"
    );
    let next = query("SELECT 2");
    assert_eq!(f.client_data(&next, 0), Forward::Input);
}

#[test]
fn access_grants_apply_to_service_accounts() {
    let config = r#"{"accessPolicy": {"grants": [{"serviceAccounts": ["shop/web"], "keyspaces": ["shop"], "access": ["read"]}]}}"#;
    let peer = Peer {
        address: "10.0.0.1:1".into(),
        certificate: Some("spiffe://cluster.local/ns/shop/sa/web".into()),
    };
    let mut base = log_in(filter_for(config, peer), "app", 0);
    let read = query("SELECT * FROM items");
    assert_eq!(base.client_data(&read, 0), Forward::Input);
    let write = query("DELETE FROM items WHERE id = 1");
    let up = forwarded(&write, base.client_data(&write, 0));
    assert!(String::from_utf8_lossy(&up).contains("MYSQL_ERRNO = 1142"));
}

#[test]
fn configuration_errors_name_the_field() {
    let bad = StreamPolicy::from_json(br#"{"maxStatementBytes": 99999999999}"#).unwrap_err();
    assert!(bad.to_string().contains("maxStatementBytes"), "{bad}");
    let bad = StreamPolicy::from_json(br#"{"access": [{"identities": ["bob"]}]}"#).unwrap_err();
    assert!(bad.to_string().contains("access[0].identities"), "{bad}");
    let bad = StreamPolicy::from_json(
        br#"{"accessPolicy": {"grants": [{"keyspaces": [], "access": []}]}}"#,
    )
    .unwrap_err();
    assert!(bad.to_string().contains("accessPolicy.grants[0]"), "{bad}");
    let timeouts =
        StreamPolicy::from_json(br#"{"queryPolicy": {"limits": {"statement_timeout_ms": 5}}}"#)
            .expect("accepted");
    assert_eq!(timeouts.not_applied, vec!["statement_timeout_ms"]);
}

#[test]
fn the_greeting_loses_compression_and_progress_reports() {
    let mut f = filter("");
    let greeting = Greeting {
        protocol_version: 10,
        server_version: "10.11.6-MariaDB".into(),
        connection_id: 3,
        scramble: vec![9; 20],
        capabilities: (CAPS | caps::COMPRESS) & !caps::LONG_PASSWORD,
        mariadb_capabilities: 0x1f,
        collation: 45,
        status: 2,
        auth_plugin: b"mysql_native_password".to_vec(),
    };
    let g = packet(0, &greeting.encode());
    let mut handed = Vec::new();
    for b in g.chunks(5) {
        handed.extend(forwarded(b, f.server_data(b, 0)));
    }
    let seen = Greeting::decode(&handed[4..]).expect("a greeting");
    assert_eq!(seen.capabilities & caps::COMPRESS, 0);
    assert_eq!(seen.mariadb_capabilities, 0x1f & !0x13);
    let mut expected = greeting.clone();
    expected.capabilities &= !caps::COMPRESS;
    expected.mariadb_capabilities = 0x1f & !0x13;
    assert_eq!(
        handed,
        packet(0, &expected.encode()),
        "only those bits change"
    );
}
