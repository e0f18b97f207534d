//! Protocol constants: capability flags, server status flags, command bytes, column types
//! and column flags, as named in the MySQL and MariaDB sources.

/// Capability flags exchanged in the handshake (`CLIENT_*`).
pub mod capabilities {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
    pub const SSL_VERIFY_SERVER_CERT: u32 = 1 << 30;
    pub const REMEMBER_OPTIONS: u32 = 1 << 31;

    /// What the Shardcar server side can speak. `LOCAL_FILES` and `SSL` are added at run
    /// time when configured; `COMPRESS` is not supported.
    pub const SUPPORTED: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CAN_HANDLE_EXPIRED_PASSWORDS
        | SESSION_TRACK
        | DEPRECATE_EOF;

    /// What the sidecar asks for on connections of its own (health probe, KILL side
    /// channel), where no application negotiated anything: [`SUPPORTED`] without the flags
    /// that change SQL semantics (`NO_SCHEMA` forbids `db.table`, `IGNORE_SPACE`, `ODBC`)
    /// or timeouts (`INTERACTIVE`).
    pub const CLIENT_DEFAULT: u32 = SUPPORTED & !(NO_SCHEMA | IGNORE_SPACE | ODBC | INTERACTIVE);

    /// Capabilities that only concern one hop and are never copied from one side of the
    /// proxy to the other.
    pub const PER_HOP: u32 = SSL | SSL_VERIFY_SERVER_CERT | COMPRESS | CONNECT_WITH_DB;
}

/// MariaDB's extended capabilities (upper 32 bits, sent in the handshake filler).
pub mod mariadb_capabilities {
    pub const PROGRESS: u32 = 1;
    pub const COM_MULTI: u32 = 1 << 1;
    pub const STMT_BULK_OPERATIONS: u32 = 1 << 2;
    pub const EXTENDED_TYPE_INFO: u32 = 1 << 3;
    pub const CACHE_METADATA: u32 = 1 << 4;
}

/// Server status flags carried by OK and EOF packets (`SERVER_*`).
pub mod status {
    pub const IN_TRANS: u16 = 1;
    pub const AUTOCOMMIT: u16 = 1 << 1;
    pub const MORE_RESULTS_EXISTS: u16 = 1 << 3;
    pub const NO_GOOD_INDEX_USED: u16 = 1 << 4;
    pub const NO_INDEX_USED: u16 = 1 << 5;
    pub const CURSOR_EXISTS: u16 = 1 << 6;
    pub const LAST_ROW_SENT: u16 = 1 << 7;
    pub const DB_DROPPED: u16 = 1 << 8;
    pub const NO_BACKSLASH_ESCAPES: u16 = 1 << 9;
    pub const METADATA_CHANGED: u16 = 1 << 10;
    pub const QUERY_WAS_SLOW: u16 = 1 << 11;
    pub const PS_OUT_PARAMS: u16 = 1 << 12;
    pub const IN_TRANS_READONLY: u16 = 1 << 13;
    pub const SESSION_STATE_CHANGED: u16 = 1 << 14;
}

/// Command bytes (`COM_*`): the first byte of every command-phase client packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    Sleep = 0x00,
    Quit = 0x01,
    InitDb = 0x02,
    Query = 0x03,
    FieldList = 0x04,
    CreateDb = 0x05,
    DropDb = 0x06,
    Refresh = 0x07,
    Shutdown = 0x08,
    Statistics = 0x09,
    ProcessInfo = 0x0a,
    Connect = 0x0b,
    ProcessKill = 0x0c,
    Debug = 0x0d,
    Ping = 0x0e,
    Time = 0x0f,
    DelayedInsert = 0x10,
    ChangeUser = 0x11,
    BinlogDump = 0x12,
    TableDump = 0x13,
    ConnectOut = 0x14,
    RegisterSlave = 0x15,
    StmtPrepare = 0x16,
    StmtExecute = 0x17,
    StmtSendLongData = 0x18,
    StmtClose = 0x19,
    StmtReset = 0x1a,
    SetOption = 0x1b,
    StmtFetch = 0x1c,
    Daemon = 0x1d,
    BinlogDumpGtid = 0x1e,
    ResetConnection = 0x1f,
    /// MariaDB bulk execute.
    StmtBulkExecute = 0xfa,
}

impl Command {
    pub fn from_byte(b: u8) -> Option<Self> {
        use Command::*;
        Some(match b {
            0x00 => Sleep,
            0x01 => Quit,
            0x02 => InitDb,
            0x03 => Query,
            0x04 => FieldList,
            0x05 => CreateDb,
            0x06 => DropDb,
            0x07 => Refresh,
            0x08 => Shutdown,
            0x09 => Statistics,
            0x0a => ProcessInfo,
            0x0b => Connect,
            0x0c => ProcessKill,
            0x0d => Debug,
            0x0e => Ping,
            0x0f => Time,
            0x10 => DelayedInsert,
            0x11 => ChangeUser,
            0x12 => BinlogDump,
            0x13 => TableDump,
            0x14 => ConnectOut,
            0x15 => RegisterSlave,
            0x16 => StmtPrepare,
            0x17 => StmtExecute,
            0x18 => StmtSendLongData,
            0x19 => StmtClose,
            0x1a => StmtReset,
            0x1b => SetOption,
            0x1c => StmtFetch,
            0x1d => Daemon,
            0x1e => BinlogDumpGtid,
            0x1f => ResetConnection,
            0xfa => StmtBulkExecute,
            _ => return None,
        })
    }

    /// Lower-case name used in metrics labels and logs (`query`, `stmt_execute`, ...).
    pub fn name(self) -> &'static str {
        use Command::*;
        match self {
            Sleep => "sleep",
            Quit => "quit",
            InitDb => "init_db",
            Query => "query",
            FieldList => "field_list",
            CreateDb => "create_db",
            DropDb => "drop_db",
            Refresh => "refresh",
            Shutdown => "shutdown",
            Statistics => "statistics",
            ProcessInfo => "process_info",
            Connect => "connect",
            ProcessKill => "process_kill",
            Debug => "debug",
            Ping => "ping",
            Time => "time",
            DelayedInsert => "delayed_insert",
            ChangeUser => "change_user",
            BinlogDump => "binlog_dump",
            TableDump => "table_dump",
            ConnectOut => "connect_out",
            RegisterSlave => "register_slave",
            StmtPrepare => "stmt_prepare",
            StmtExecute => "stmt_execute",
            StmtSendLongData => "stmt_send_long_data",
            StmtClose => "stmt_close",
            StmtReset => "stmt_reset",
            SetOption => "set_option",
            StmtFetch => "stmt_fetch",
            Daemon => "daemon",
            BinlogDumpGtid => "binlog_dump_gtid",
            ResetConnection => "reset_connection",
            StmtBulkExecute => "stmt_bulk_execute",
        }
    }
}

/// Column types (`MYSQL_TYPE_*`).
pub mod column_type {
    pub const DECIMAL: u8 = 0x00;
    pub const TINY: u8 = 0x01;
    pub const SHORT: u8 = 0x02;
    pub const LONG: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const NULL: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
    pub const LONGLONG: u8 = 0x08;
    pub const INT24: u8 = 0x09;
    pub const DATE: u8 = 0x0a;
    pub const TIME: u8 = 0x0b;
    pub const DATETIME: u8 = 0x0c;
    pub const YEAR: u8 = 0x0d;
    pub const NEWDATE: u8 = 0x0e;
    pub const VARCHAR: u8 = 0x0f;
    pub const BIT: u8 = 0x10;
    pub const TIMESTAMP2: u8 = 0x11;
    pub const DATETIME2: u8 = 0x12;
    pub const TIME2: u8 = 0x13;
    pub const JSON: u8 = 0xf5;
    pub const NEWDECIMAL: u8 = 0xf6;
    pub const ENUM: u8 = 0xf7;
    pub const SET: u8 = 0xf8;
    pub const TINY_BLOB: u8 = 0xf9;
    pub const MEDIUM_BLOB: u8 = 0xfa;
    pub const LONG_BLOB: u8 = 0xfb;
    pub const BLOB: u8 = 0xfc;
    pub const VAR_STRING: u8 = 0xfd;
    pub const STRING: u8 = 0xfe;
    pub const GEOMETRY: u8 = 0xff;
}

/// Column definition flags (`*_FLAG`).
pub mod column_flags {
    pub const NOT_NULL: u16 = 1;
    pub const PRI_KEY: u16 = 1 << 1;
    pub const UNIQUE_KEY: u16 = 1 << 2;
    pub const MULTIPLE_KEY: u16 = 1 << 3;
    pub const BLOB: u16 = 1 << 4;
    pub const UNSIGNED: u16 = 1 << 5;
    pub const ZEROFILL: u16 = 1 << 6;
    pub const BINARY: u16 = 1 << 7;
    pub const ENUM: u16 = 1 << 8;
    pub const AUTO_INCREMENT: u16 = 1 << 9;
    pub const TIMESTAMP: u16 = 1 << 10;
    pub const SET: u16 = 1 << 11;
    pub const NUM: u16 = 1 << 15;
}

/// `utf8mb4_general_ci`, the collation id the sidecar announces in its greeting.
pub const DEFAULT_COLLATION: u8 = 45;
/// `binary` collation id, used for binary result columns.
pub const BINARY_COLLATION: u16 = 63;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_byte_round_trips() {
        for b in 0..=255u8 {
            if let Some(c) = Command::from_byte(b) {
                assert_eq!(c as u8, b, "{}", c.name());
            }
        }
    }
}
