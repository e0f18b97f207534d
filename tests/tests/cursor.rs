//! Server-side cursors through the sidecar: `COM_STMT_EXECUTE` opening a read-only cursor,
//! then `COM_STMT_FETCH` in small batches until the last row, driven over raw sockets and
//! compared with the same exchange against MariaDB directly. Exercises the response
//! scanner's cursor path (the execute's response ends after the column definitions) and
//! the fetch responses, with and without `CLIENT_DEPRECATE_EOF`.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use shardcar_filter::protocol::column::ColumnDefinition;
use shardcar_filter::protocol::constants::{capabilities as caps, status, Command};
use shardcar_filter::protocol::handshake::Greeting;
use shardcar_filter::protocol::resultset::{Event, ResultSetDecoder, RowFormat};
use shardcar_filter::protocol::stmt::{
    cursor_type, StmtClose, StmtExecute, StmtFetch, StmtPrepareOk,
};
use shardcar_filter::protocol::value::Value;
use shardcar_tests::client::{block_on, native_login, raw_connect, read_packet, write_packet};
use shardcar_tests::{shared_cluster, Cluster};

const BASE_CAPS: u32 = caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::LONG_PASSWORD
    | caps::TRANSACTIONS;

/// Rows in the table; fetched three at a time, so the last batch is partial.
const ROWS: usize = 10;
const BATCH: u32 = 3;

fn setup(c: &Cluster) {
    let db = &c.database;
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {db}.cursor_t (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2));\
         DELETE FROM {db}.cursor_t;"
    );
    for i in 0..ROWS {
        sql.push_str(&format!(
            "INSERT INTO {db}.cursor_t VALUES ({i}, 'name-{i}', {i}.25);"
        ));
    }
    block_on(c.mariadb.exec(&sql)).expect("creating cursor_t");
}

/// Logs in as the application user over a raw socket with exactly `capabilities`.
fn login(c: &Cluster, port: u16, capabilities: u32) -> TcpStream {
    let mut s = raw_connect(port, Duration::from_secs(10)).expect("connect");
    let (_, greeting) = read_packet(&mut s).expect("greeting");
    let g = Greeting::decode(&greeting).expect("a greeting");
    let login = native_login(
        &g,
        c.app_user.as_bytes(),
        c.app_password.as_bytes(),
        Some(c.database.as_bytes()),
        capabilities,
    );
    write_packet(&mut s, 1, &login).expect("login");
    let (_, ok) = read_packet(&mut s).expect("login reply");
    assert_eq!(ok.first(), Some(&0), "login refused: {ok:?}");
    s
}

/// Prepares, executes with a cursor, fetches every row in batches, closes. Returns the
/// rows and the number of fetches it took.
fn cursor_exchange(s: &mut TcpStream, capabilities: u32) -> (Vec<Vec<Value>>, usize) {
    let mut prepare = vec![Command::StmtPrepare as u8];
    prepare.extend_from_slice(b"SELECT id, name, price FROM cursor_t ORDER BY id");
    write_packet(s, 0, &prepare).expect("prepare");
    let (_, ok) = read_packet(s).expect("prepare reply");
    let ok = StmtPrepareOk::decode(&ok).expect("COM_STMT_PREPARE OK");
    assert_eq!((ok.num_columns, ok.num_params), (3, 0));
    let definitions =
        usize::from(ok.num_columns) + usize::from(capabilities & caps::DEPRECATE_EOF == 0);
    for _ in 0..definitions {
        read_packet(s).expect("column definition");
    }

    let execute = StmtExecute {
        flags: cursor_type::READ_ONLY,
        ..StmtExecute::with_values(ok.statement_id, Vec::new())
    };
    write_packet(s, 0, &execute.encode().expect("execute encodes")).expect("execute");
    // The execute's response ends after the column definitions (and their terminator,
    // which carries SERVER_STATUS_CURSOR_EXISTS): the rows come with COM_STMT_FETCH.
    let mut decoder = ResultSetDecoder::new(capabilities, RowFormat::Binary);
    let mut columns: Option<Arc<[ColumnDefinition]>> = None;
    while !decoder.is_done() {
        let (_, payload) = read_packet(s).expect("execute reply");
        match decoder.feed(&payload).expect("a well-formed execute reply") {
            Some(Event::Columns(c)) => columns = Some(c),
            Some(Event::Done { .. }) | None => {}
            Some(other) => panic!("unexpected execute event {other:?}"),
        }
    }
    assert!(decoder.cursor_open(), "the execute did not open a cursor");
    let columns = columns.expect("column definitions before the cursor");

    let mut rows = Vec::new();
    let mut fetches = 0;
    loop {
        let fetch = StmtFetch {
            statement_id: ok.statement_id,
            num_rows: BATCH,
        };
        write_packet(s, 0, &fetch.encode()).expect("fetch");
        fetches += 1;
        let mut fetched = ResultSetDecoder::for_fetch(capabilities, columns.clone());
        let last = loop {
            let (_, payload) = read_packet(s).expect("fetch reply");
            match fetched.feed(&payload).expect("a well-formed fetch reply") {
                Some(Event::Row(row)) => rows.push(fetched.values(row).expect("a binary row")),
                Some(Event::Done { status: st, .. }) => break st & status::LAST_ROW_SENT != 0,
                Some(Event::Error(e)) => panic!("fetch failed: {e}"),
                other => panic!("unexpected fetch event {other:?}"),
            }
        };
        if last {
            break;
        }
        assert!(fetches <= ROWS, "the cursor never reported its last row");
    }
    let close = StmtClose {
        statement_id: ok.statement_id,
    };
    write_packet(s, 0, &close.encode()).expect("close");
    (rows, fetches)
}

fn compare_with_direct(capabilities: u32) {
    let c = shared_cluster();
    setup(c);
    let mut direct = login(c, c.mariadb.port(), capabilities);
    let mut through = login(c, c.sidecar.port(), capabilities);
    let (direct_rows, direct_fetches) = cursor_exchange(&mut direct, capabilities);
    let (rows, fetches) = cursor_exchange(&mut through, capabilities);
    assert_eq!(direct_rows.len(), ROWS, "direct: {direct_rows:?}");
    assert_eq!(rows, direct_rows);
    assert_eq!(fetches, direct_fetches);
    assert!(fetches >= ROWS / BATCH as usize, "{fetches} fetches");
    // The connection is still in step: a ping gets its OK.
    write_packet(&mut through, 0, &[Command::Ping as u8]).expect("ping");
    let (seq, ok) = read_packet(&mut through).expect("ping reply");
    assert_eq!((seq, ok.first()), (1, Some(&0)));
}

#[test]
fn cursor_fetch_in_batches_matches_direct_with_classic_eof() {
    compare_with_direct(BASE_CAPS);
}

#[test]
fn cursor_fetch_in_batches_matches_direct_with_deprecate_eof() {
    compare_with_direct(BASE_CAPS | caps::DEPRECATE_EOF);
}
