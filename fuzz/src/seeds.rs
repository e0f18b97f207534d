//! Seed inputs for every target, built with the filter's own encoders: valid logins for
//! each plugin and variant, typical server responses, result sets and statements. The
//! `write_seeds` binary writes them to `corpus/<target>/`; the stable tests start from
//! them too.

use crate::{
    client_flags, frames, rsa_public_pem, server_config, server_flags, FUZZ_PASSWORD, FUZZ_USER,
    SEQ_EXPECTED, SERVER_SCRAMBLE,
};
use shardcar_filter::protocol::auth::{self, AuthPlugin};
use shardcar_filter::protocol::column::ColumnDefinition;
use shardcar_filter::protocol::constants::{capabilities as caps, column_type as ty, status};
use shardcar_filter::protocol::error_codes;
use shardcar_filter::protocol::handshake::{
    encode_auth_more_data, AuthSwitchRequest, ChangeUser, Greeting, HandshakeResponse, SslRequest,
};
use shardcar_filter::protocol::packet::{write_packet, PacketAssembler};
use shardcar_filter::protocol::resultset::{ResultSetWriter, RowFormat};
use shardcar_filter::protocol::server::ServerHandshake;
use shardcar_filter::protocol::stmt::{StmtClose, StmtExecute, StmtFetch, StmtPrepareOk};
use shardcar_filter::protocol::value::Value;
use shardcar_filter::protocol::{ErrPacket, OkPacket};

/// The fuzz target names, as in `fuzz_targets/`.
pub const TARGETS: [&str; 6] = [
    "packet_assembler",
    "server_handshake",
    "client_handshake",
    "response_scanner",
    "decoders",
    "stream_filter",
];

/// Seeds of one target (empty for an unknown name).
pub fn for_target(name: &str) -> Vec<Vec<u8>> {
    match name {
        "packet_assembler" => packet_assembler(),
        "server_handshake" => server_handshake(),
        "client_handshake" => client_handshake(),
        "response_scanner" => response_scanner(),
        "decoders" => decoders(),
        "planner" => planner(),
        "guard" => guard(),
        "stream_filter" => stream_filter(),
        _ => Vec::new(),
    }
}

/// Runs `f` on every seed of `name`.
pub fn body(name: &str) -> fn(&[u8]) {
    match name {
        "packet_assembler" => crate::packet_assembler,
        "server_handshake" => crate::server_handshake,
        "client_handshake" => crate::client_handshake,
        "response_scanner" => crate::response_scanner,
        "planner" => crate::planner,
        "guard" => crate::guard,
        "stream_filter" => crate::stream_filter,
        _ => crate::decoders,
    }
}

fn framed(payloads: &[&[u8]], first_seq: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = first_seq;
    for p in payloads {
        write_packet(&mut out, &mut seq, p);
    }
    out
}

fn packet_assembler() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for max in 0..8u8 {
        let mut s = vec![max, 7, 0];
        s.extend(framed(&[b"\x03SELECT 1", b"", b"\x0e"], 0));
        seeds.push(s);
    }
    // Wrong sequence inside a continuation, an oversized header, a partial packet.
    seeds.push([&[6u8, 1, 0][..], &[0xff, 0xff, 0xff, 0], &[0; 16]].concat());
    seeds.push([&[3u8, 2, 0][..], &[0x00, 0x00, 0x10, 0], b"abc"].concat());
    seeds.push([&[5u8, 3, 0][..], &[5, 0, 0, 0], b"hel"].concat());
    seeds
}

fn client_response(
    scramble: &[u8],
    plugin: AuthPlugin,
    user: &[u8],
    password: &[u8],
    extra_caps: u32,
) -> Vec<u8> {
    let auth_response = match plugin {
        AuthPlugin::NativePassword => auth::native_password_scramble(password, scramble),
        AuthPlugin::CachingSha2Password => auth::sha2_password_scramble(password, scramble),
        AuthPlugin::ClearPassword => password.to_vec(),
    };
    let mut attrs = Vec::new();
    shardcar_filter::protocol::handshake::push_connect_attr(&mut attrs, "_client_name", "seed");
    HandshakeResponse {
        capabilities: caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
            | caps::DEPRECATE_EOF
            | caps::CONNECT_ATTRS
            | extra_caps,
        max_packet_size: 1 << 24,
        collation: 45,
        username: user.to_vec(),
        auth_response,
        database: (extra_caps & caps::CONNECT_WITH_DB != 0).then(|| b"db1".to_vec()),
        auth_plugin: Some(plugin.name().as_bytes().to_vec()),
        connect_attrs: attrs,
    }
    .encode()
}

fn server_handshake() -> Vec<Vec<u8>> {
    // The scramble the machine announces (printable form of SERVER_SCRAMBLE).
    let scramble = *ServerHandshake::new(server_config(0), SERVER_SCRAMBLE).scramble();
    let e = SEQ_EXPECTED;
    let native = |user: &[u8], pw: &[u8], extra| {
        client_response(&scramble, AuthPlugin::NativePassword, user, pw, extra)
    };
    let sha2 = |pw: &[u8]| {
        client_response(
            &scramble,
            AuthPlugin::CachingSha2Password,
            FUZZ_USER.as_bytes(),
            pw,
            0,
        )
    };
    let ssl = SslRequest {
        capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH,
        max_packet_size: 1 << 24,
        collation: 45,
    }
    .encode();
    let ct = {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        auth::rsa_encrypt_password(rsa_public_pem(), FUZZ_PASSWORD, &scramble, &mut rng)
            .unwrap_or_default()
    };
    let mut pw_nul = FUZZ_PASSWORD.to_vec();
    pw_nul.push(0);
    let user = FUZZ_USER.as_bytes();
    let good = native(user, FUZZ_PASSWORD, caps::CONNECT_WITH_DB);
    let mut seeds = vec![
        frames(&[0], &[(e, &good), (e, b"\x0e")]),
        frames(&[0], &[(e, &native(user, b"wrong", 0))]),
        frames(&[0], &[(e, &native(b"nobody", FUZZ_PASSWORD, 0))]),
        frames(&[0], &[(e, &native(user, b"", 0))]),
        frames(&[0], &[(5, &good)]),
        frames(&[0], &[(e, &good[..40])]),
        // sha2 default, client answers native: asked to switch, answers sha2.
        frames(
            &[server_flags::SHA2_DEFAULT | server_flags::SHA2_CACHED],
            &[
                (e, &good),
                (e, &auth::sha2_password_scramble(FUZZ_PASSWORD, &scramble)),
            ],
        ),
        // sha2 fast path (cached).
        frames(
            &[server_flags::SHA2_DEFAULT | server_flags::SHA2_CACHED],
            &[(e, &sha2(FUZZ_PASSWORD))],
        ),
        // sha2 full authentication over RSA.
        frames(
            &[server_flags::SHA2_DEFAULT | server_flags::RSA_KEY],
            &[(e, &sha2(FUZZ_PASSWORD)), (e, &[2]), (e, &ct)],
        ),
        // sha2 full authentication in clear text without TLS: refused.
        frames(
            &[server_flags::SHA2_DEFAULT],
            &[(e, &sha2(FUZZ_PASSWORD)), (e, &pw_nul)],
        ),
        // TLS then sha2 full authentication in clear text.
        frames(
            &[server_flags::TLS_AVAILABLE | server_flags::SHA2_DEFAULT],
            &[(e, &ssl), (e, &sha2(FUZZ_PASSWORD)), (e, &pw_nul)],
        ),
        frames(
            &[server_flags::TLS_AVAILABLE | server_flags::TLS_REQUIRED],
            &[(e, &ssl), (e, &good)],
        ),
        frames(
            &[server_flags::TLS_AVAILABLE | server_flags::TLS_REQUIRED],
            &[(e, &good)],
        ),
        // Auth switch: client answers with an unknown plugin.
        frames(
            &[0],
            &[
                (
                    e,
                    &HandshakeResponse {
                        capabilities: caps::PROTOCOL_41
                            | caps::SECURE_CONNECTION
                            | caps::PLUGIN_AUTH,
                        max_packet_size: 0,
                        collation: 8,
                        username: user.to_vec(),
                        auth_response: vec![1; 20],
                        database: None,
                        auth_plugin: Some(b"dialog".to_vec()),
                        connect_attrs: Vec::new(),
                    }
                    .encode(),
                ),
                (e, &auth::native_password_scramble(FUZZ_PASSWORD, &scramble)),
            ],
        ),
    ];
    // COM_CHANGE_USER.
    let mut cu = vec![0x11];
    cu.extend_from_slice(user);
    cu.push(0);
    let proof = auth::native_password_scramble(FUZZ_PASSWORD, &scramble);
    cu.push(proof.len() as u8);
    cu.extend_from_slice(&proof);
    cu.extend_from_slice(b"db1\0");
    cu.extend_from_slice(&45u16.to_le_bytes());
    cu.extend_from_slice(b"mysql_native_password\0");
    if ChangeUser::decode(&cu, caps::SUPPORTED).is_ok() {
        seeds.push(frames(&[server_flags::CHANGE_USER], &[(0, &cu)]));
    }
    seeds
}

/// A MariaDB-like greeting with `plugin`.
pub fn mariadb_greeting(plugin: AuthPlugin, extra_caps: u32) -> Vec<u8> {
    Greeting {
        protocol_version: 10,
        server_version: "5.5.5-10.11.6-MariaDB-0+deb12u1".into(),
        connection_id: 12,
        scramble: b"ABCDEFGHIJKLMNOPQRST".to_vec(),
        capabilities: caps::SUPPORTED | extra_caps,
        mariadb_capabilities: 0,
        collation: 45,
        status: status::AUTOCOMMIT,
        auth_plugin: plugin.name().as_bytes().to_vec(),
    }
    .encode()
}

fn client_handshake() -> Vec<Vec<u8>> {
    let ok = OkPacket {
        status: status::AUTOCOMMIT,
        ..Default::default()
    }
    .encode(caps::SUPPORTED);
    let native = mariadb_greeting(AuthPlugin::NativePassword, 0);
    let sha2 = mariadb_greeting(AuthPlugin::CachingSha2Password, caps::SSL);
    let err = ErrPacket::new(
        error_codes::ER_ACCESS_DENIED_ERROR,
        "Access denied for user 'shardcar'@'localhost' (using password: YES)",
    )
    .encode();
    let switch =
        AuthSwitchRequest::for_plugin(AuthPlugin::NativePassword, b"abcdefghijklmnopqrst").encode();
    let clear = AuthSwitchRequest {
        plugin: b"mysql_clear_password".to_vec(),
        data: Vec::new(),
    }
    .encode();
    let pem = encode_auth_more_data(rsa_public_pem());
    vec![
        frames(&[0], &[(0, &native), (2, &ok)]),
        frames(
            &[client_flags::DATABASE | client_flags::ATTRS],
            &[(0, &native), (2, &ok)],
        ),
        frames(&[0], &[(0, &native), (2, &err)]),
        frames(&[0], &[(0, &native), (2, &switch), (4, &ok)]),
        frames(&[0], &[(0, &native), (2, &clear), (4, &ok)]),
        frames(&[client_flags::TLS], &[(0, &sha2), (3, &clear), (5, &ok)]),
        frames(&[0], &[(0, &sha2), (2, &[1, 3]), (3, &ok)]),
        frames(&[0], &[(0, &sha2), (2, &[1, 4]), (4, &pem), (6, &ok)]),
        frames(
            &[client_flags::KNOWN_KEY],
            &[(0, &sha2), (2, &[1, 4]), (4, &ok)],
        ),
        frames(
            &[client_flags::ARBITRARY_KEY],
            &[(0, b"not a key"), (0, &sha2), (2, &[1, 4]), (4, &ok)],
        ),
        frames(&[client_flags::TLS], &[(0, &sha2), (3, &[1, 4]), (5, &ok)]),
        frames(&[client_flags::TLS], &[(0, &native)]),
        frames(&[0], &[(0, &err)]),
    ]
}

fn columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::new("id", ty::LONGLONG),
        ColumnDefinition::new("name", ty::VAR_STRING),
        ColumnDefinition::new("at", ty::DATETIME),
        ColumnDefinition::new("price", ty::NEWDECIMAL),
        ColumnDefinition::new("ratio", ty::DOUBLE),
    ]
}

fn rows() -> Vec<Vec<Value>> {
    vec![
        vec![
            Value::Int(1),
            Value::Bytes(b"alice".to_vec()),
            Value::DateTime {
                year: 2024,
                month: 2,
                day: 29,
                hour: 23,
                minute: 59,
                second: 58,
                micros: 123_456,
            },
            Value::Bytes(b"12.50".to_vec()),
            Value::Double(0.25),
        ],
        vec![
            Value::Int(-2),
            Value::Null,
            Value::Null,
            Value::Bytes(b"-0.01".to_vec()),
            Value::Double(1e300),
        ],
    ]
}

/// A result set on the wire, starting at sequence id 1.
fn result_set_bytes(caps: u32, format: RowFormat, final_status: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = ResultSetWriter::new(caps, format, 1);
    w.columns(&mut out, &columns(), status::AUTOCOMMIT);
    for r in rows() {
        let _ = w.row(&mut out, &r);
    }
    w.finish(&mut out, final_status, 0);
    out
}

fn response_scanner() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let ok = |c| {
        OkPacket {
            affected_rows: 3,
            last_insert_id: 7,
            status: status::AUTOCOMMIT,
            ..Default::default()
        }
        .encode(c)
    };
    let err = ErrPacket::new(
        error_codes::ER_PARSE_ERROR,
        "You have an error in your SQL syntax",
    )
    .encode();
    for bits in [0b000110u8, 0b000111, 0b010111, 0b011111, 0b100110] {
        let c = crate::scanner_caps(bits);
        // Generic: OK, ERR, a result set, a multi-result, LOCAL INFILE.
        for kind in [0u8, 1] {
            seeds.push([&[kind, bits, 1, 0][..], &framed(&[&ok(c)], 1)].concat());
            seeds.push([&[kind, bits, 2, 0][..], &framed(&[&err], 1)].concat());
            seeds.push(
                [
                    &[kind, bits, 3, 0][..],
                    &result_set_bytes(c, RowFormat::Text, status::AUTOCOMMIT),
                ]
                .concat(),
            );
            let mut multi = result_set_bytes(
                c,
                RowFormat::Text,
                status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS,
            );
            let next = last_seq(&multi).wrapping_add(1);
            multi.extend(framed(&[&ok(c)], next));
            seeds.push([&[kind, bits, 4, 0][..], &multi].concat());
        }
        let mut infile = framed(&[b"\xfb/tmp/data.csv"], 1);
        infile.extend(framed(&[&ok(c)], 3));
        seeds.push([&[0u8, bits, 5, 0][..], &infile].concat());
        // Prepare: OK with 2 params and 5 columns.
        let prep = StmtPrepareOk {
            statement_id: 1,
            num_columns: 5,
            num_params: 2,
            warnings: 0,
        }
        .encode();
        let mut payloads: Vec<Vec<u8>> = vec![prep];
        let eof = vec![0xfe, 0, 0, 2, 0];
        let deprecate = c & caps::DEPRECATE_EOF != 0;
        for _ in 0..2 {
            payloads.push(ColumnDefinition::new("?", ty::LONGLONG).encode());
        }
        if !deprecate {
            payloads.push(eof.clone());
        }
        for col in columns() {
            payloads.push(col.encode());
        }
        if !deprecate {
            payloads.push(eof.clone());
        }
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        seeds.push([&[2u8, bits, 6, 0][..], &framed(&refs, 1)].concat());
        // Fetch: binary rows then a terminator.
        let rs = result_set_bytes(c, RowFormat::Binary, status::AUTOCOMMIT);
        seeds.push([&[3u8, bits, 7, 0][..], &rs].concat());
        // Field list: definitions then a terminator.
        let mut fl: Vec<Vec<u8>> = columns().iter().map(ColumnDefinition::encode).collect();
        fl.push(eof.clone());
        let refs: Vec<&[u8]> = fl.iter().map(Vec::as_slice).collect();
        seeds.push([&[4u8, bits, 8, 0][..], &framed(&refs, 1)].concat());
        seeds.push(
            [
                &[5u8, bits, 9, 0][..],
                &framed(&[b"Uptime: 5  Threads: 1  Questions: 2"], 1),
            ]
            .concat(),
        );
        seeds.push([&[6u8, bits, 10, 0][..], &framed(&[&ok(c)], 1)].concat());
    }
    seeds
}

fn last_seq(bytes: &[u8]) -> u8 {
    let mut a = PacketAssembler::new(1 << 30);
    a.extend(bytes);
    let mut seq = 0;
    while let Ok(Some(p)) = a.next_packet() {
        seq = p.last_seq;
    }
    seq
}

fn payloads_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut a = PacketAssembler::new(1 << 30);
    a.extend(bytes);
    let mut out = Vec::new();
    while let Ok(Some(p)) = a.next_packet() {
        out.push(p.payload);
    }
    out
}

fn decoders() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (bits, format) in [
        (0b000110u8, RowFormat::Text),
        (0b000111, RowFormat::Text),
        (0b000110, RowFormat::Binary),
        (0b000111, RowFormat::Binary),
    ] {
        let c = crate::scanner_caps(bits);
        let payloads = payloads_of(&result_set_bytes(c, format, status::AUTOCOMMIT));
        let flag = bits | if format == RowFormat::Binary { 0x80 } else { 0 };
        let frames_in: Vec<(u8, &[u8])> = payloads.iter().map(|p| (0, p.as_slice())).collect();
        seeds.push(frames(&[0, flag], &frames_in));
    }
    // Collation keys: accents, combining marks out of order, Hangul, CJK, bad UTF-8.
    for text in [
        "T\u{e9}st  ".as_bytes(),
        "a\u{301}\u{316}\u{418}\u{306}".as_bytes(),
        "\u{d55c}\u{4e2d}\u{ff34}".as_bytes(),
        b"ok\xff",
    ] {
        seeds.push([&[6u8][..], text].concat());
    }
    // COM_STMT_EXECUTE with every value of the sample rows as parameters.
    for r in rows() {
        let values: Vec<Value> = r.into_iter().collect();
        let n = values.len() as u8;
        if let Ok(bytes) = StmtExecute::with_values(1, values).encode() {
            seeds.push([&[1u8, n, 0, 0, 0][..], &bytes].concat());
        }
    }
    seeds.push(
        [
            &[2u8][..],
            &StmtPrepareOk {
                statement_id: 9,
                num_columns: 1,
                num_params: 1,
                warnings: 0,
            }
            .encode(),
        ]
        .concat(),
    );
    seeds.push([&[2u8][..], &StmtClose { statement_id: 9 }.encode()].concat());
    seeds.push(
        [
            &[2u8][..],
            &StmtFetch {
                statement_id: 9,
                num_rows: 100,
            }
            .encode(),
        ]
        .concat(),
    );
    for col in columns() {
        seeds.push([&[3u8][..], &col.encode()].concat());
    }
    for (t, v) in [
        (ty::LONGLONG, Value::Int(-5)),
        (ty::LONG, Value::UInt(7)),
        (ty::DOUBLE, Value::Double(2.5)),
        (ty::FLOAT, Value::Float(1.5)),
        (ty::VAR_STRING, Value::Bytes(b"x".to_vec())),
        (
            ty::DATE,
            Value::Date {
                year: 2020,
                month: 1,
                day: 2,
            },
        ),
        (
            ty::TIME,
            Value::Time {
                negative: true,
                days: 1,
                hours: 2,
                minutes: 3,
                seconds: 4,
                micros: 5,
            },
        ),
        (ty::DATETIME, rows()[0][2].clone()),
    ] {
        let mut out = Vec::new();
        if v.write_binary(&mut out, t, matches!(v, Value::UInt(_)))
            .is_ok()
        {
            let unsigned = u8::from(matches!(v, Value::UInt(_)));
            seeds.push([&[4u8, t, unsigned][..], &out].concat());
        }
    }
    let scramble = *ServerHandshake::new(server_config(0), SERVER_SCRAMBLE).scramble();
    seeds.push(
        [
            &[5u8, 0, 0, 0][..],
            &mariadb_greeting(AuthPlugin::NativePassword, 0),
        ]
        .concat(),
    );
    seeds.push(
        [
            &[5u8, 0, 0, 0][..],
            &client_response(
                &scramble,
                AuthPlugin::NativePassword,
                b"app",
                b"pw",
                caps::CONNECT_WITH_DB,
            ),
        ]
        .concat(),
    );
    seeds.push(
        [
            &[5u8, 0b11, 0, 3, ty::LONG, ty::VAR_STRING, ty::DOUBLE][..],
            b"\x011\x03abc\xfb",
        ]
        .concat(),
    );
    seeds
}

/// The VSchema the planner target routes against: a 4-shard `user` keyspace and an
/// unsharded `main` one with a sequence.
pub const PLANNER_VSCHEMA: &str = r#"{"keyspaces": {
  "user": {"sharded": true, "vindexes": {"hash": {"type": "hash"}, "xx": {"type": "xxhash"}},
    "tables": {
      "customers": {"column_vindexes": [{"column": "id", "name": "hash"}],
                    "auto_increment": {"column": "id", "sequence": "seq"}},
      "orders": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]},
      "events": {"column_vindexes": [{"column": "name", "name": "xx"}]},
      "countries": {"type": "reference"}}},
  "main": {"tables": {"products": {}, "seq": {"type": "sequence"}}}}}"#;

/// Each statement behind a control byte (its index), the input shape of the SQL targets.
fn with_control_byte(statements: &[&str]) -> Vec<Vec<u8>> {
    statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = vec![i as u8];
            v.extend_from_slice(s.as_bytes());
            v
        })
        .collect()
}

fn guard() -> Vec<Vec<u8>> {
    let statements = [
        "SELECT * FROM t WHERE a = 1 FOR UPDATE",
        "SELECT SQL_CALC_FOUND_ROWS a INTO @x FROM t LOCK IN SHARE MODE",
        "SET sql_mode = CONCAT(@@sql_mode, ',ANSI'), NAMES utf8mb4, @u := 1",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "UPDATE `t` SET n = n + 1 WHERE id = 7 LIMIT 1",
        "DELETE a FROM t a JOIN u ON a.id = u.id WHERE u.x IN (SELECT 1)",
        "WITH c AS (SELECT 1) UPDATE t SET a = (SELECT * FROM c)",
        "(SELECT 1) UNION (SELECT LAST_INSERT_ID(), ROW_COUNT ( ), CONNECTION_ID())",
        "SELECT /*+ MAX_EXECUTION_TIME(5) */ 1 /* shardcar: timeout_ms=9 */; SELECT 2",
        "CREATE TEMPORARY TABLE x (a int); SELECT GET_LOCK('l', 1)",
        "FLUSH TABLES t WITH READ LOCK",
        "INSERT INTO t SELECT * FROM db2.u WHERE 'it''s' = \"x\"",
        "SELECT ( ( ( 1",
        "SELECT 'é' FROM `tä` WHERE x = 'ü' -- ö",
    ];
    with_control_byte(&statements)
}

fn planner() -> Vec<Vec<u8>> {
    let statements = [
        "SELECT name FROM customers WHERE id = 5",
        "SELECT c.id, o.qty FROM customers c JOIN orders o ON c.id = o.customer_id WHERE c.id IN (1, 2, 3)",
        "SELECT city, COUNT(*), AVG(balance), MIN(name) FROM customers GROUP BY city HAVING COUNT(*) > 2 ORDER BY 2 DESC, city LIMIT 3, 5",
        "SELECT DISTINCT city FROM customers ORDER BY city",
        "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE qty > 3) UNION SELECT 1",
        "SELECT COUNT(DISTINCT city), ROW_NUMBER() OVER (ORDER BY id) FROM customers",
        "SELECT o.id, p.name FROM orders o JOIN products p ON p.id = o.product_id",
        "WITH t AS (SELECT id FROM customers) SELECT COUNT(*) FROM t",
        "INSERT INTO customers (name, city) VALUES ('a', 'b'), (?, 'it''s')",
        "INSERT INTO customers (id, name) VALUES (1, 'x') ON DUPLICATE KEY UPDATE name = VALUES(name)",
        "UPDATE orders SET qty = qty + 1 WHERE customer_id = ? AND id = 3",
        "DELETE FROM customers WHERE id = -7",
        "BEGIN", "SET autocommit = 0", "USE user:-80@replica", "SHOW DATABASES",
        "SELECT * FROM events WHERE name = 0x41 OR name = x'42'",
        "select /* c */ `id` from `customers` where `id`=18446744073709551615 # x",
    ];
    with_control_byte(&statements)
}

/// A whole session as reads (tag 0 client, 1 server): greeting, login, OK, a query and
/// its result, a denied query, a prepare and an execute, in configurations 0..3.
fn stream_filter() -> Vec<Vec<u8>> {
    let greeting = Greeting {
        protocol_version: 10,
        server_version: "10.11.6-MariaDB".into(),
        connection_id: 9,
        scramble: SERVER_SCRAMBLE.to_vec(),
        capabilities: caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::TRANSACTIONS
            | caps::CONNECT_WITH_DB
            | caps::DEPRECATE_EOF,
        mariadb_capabilities: 0,
        collation: 45,
        status: status::AUTOCOMMIT,
        auth_plugin: b"mysql_native_password".to_vec(),
    };
    let login = HandshakeResponse {
        capabilities: caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::TRANSACTIONS
            | caps::CONNECT_WITH_DB,
        max_packet_size: 1 << 24,
        collation: 45,
        username: FUZZ_USER.as_bytes().to_vec(),
        auth_response: vec![7; 20],
        database: Some(b"db".to_vec()),
        auth_plugin: Some(b"mysql_native_password".to_vec()),
        connect_attrs: Vec::new(),
    };
    let caps = login.capabilities & greeting.capabilities;
    let ok = OkPacket::default().encode(caps);
    let query = |text: &str| {
        let mut p = vec![0x03];
        p.extend_from_slice(text.as_bytes());
        framed(&[&p], 0)
    };
    let rows = result_set_bytes(caps, RowFormat::Text, status::AUTOCOMMIT);
    let err = ErrPacket::new(error_codes::ER_NOT_ALLOWED_COMMAND, "no").encode();
    let prepare = {
        let mut p = vec![0x16];
        p.extend_from_slice(b"SELECT a FROM t WHERE a = ?");
        framed(&[&p], 0)
    };
    let prepare_ok = StmtPrepareOk {
        statement_id: 1,
        num_columns: 0,
        num_params: 0,
        warnings: 0,
    };
    let execute = [0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0];
    let reads: Vec<(u8, Vec<u8>)> = vec![
        (1, framed(&[&greeting.encode()], 0)),
        (0, framed(&[&login.encode()], 1)),
        (1, framed(&[&ok], 2)),
        (0, query("SELECT a FROM t")),
        (1, rows.clone()),
        (0, query("SELECT 1")),
        (1, framed(&[&err], 1)),
        (0, prepare),
        (1, framed(&[&prepare_ok.encode()], 1)),
        (0, framed(&[&execute], 0)),
        (1, rows),
    ];
    (0u8..4)
        .map(|config| {
            let borrowed: Vec<(u8, &[u8])> =
                reads.iter().map(|(t, b)| (*t, b.as_slice())).collect();
            frames(&[config], &borrowed)
        })
        .collect()
}
