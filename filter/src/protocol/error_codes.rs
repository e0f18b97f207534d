//! The MySQL error codes Shardcar sends, each with its SQLSTATE, so that every refusal
//! reaches the client as the ERR packet a MySQL server would send.
//!
//! Codes below 2000 are server codes (`ER_*`); 2xxx are client codes (`CR_*`). The
//! sidecar never sends a client code: MariaDB Connector/C rejects a server packet that
//! carries one as malformed. An unreachable upstream is reported as
//! `ER_CONNECT_TO_FOREIGN_DATA_SOURCE` and a lost one as `ER_NET_READ_ERROR` (SQLSTATE
//! 08S01, a communication-link failure, which drivers map to "connection broken").

/// A MySQL error code and its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    pub code: u16,
    pub sqlstate: &'static str,
    /// The `ER_*`/`CR_*` symbol, for logs and metrics.
    pub name: &'static str,
}

macro_rules! codes {
    ($($ident:ident = $code:literal, $state:literal;)*) => {
        $(
            #[doc = concat!("`", stringify!($ident), "` (", stringify!($code), ", SQLSTATE ", $state, ")")]
            pub const $ident: ErrorCode = ErrorCode { code: $code, sqlstate: $state, name: stringify!($ident) };
        )*
        /// Every code this module defines.
        pub const ALL: &[ErrorCode] = &[$($ident),*];
    };
}

codes! {
    ER_CON_COUNT_ERROR = 1040, "08004";
    ER_HANDSHAKE_ERROR = 1043, "08S01";
    ER_DBACCESS_DENIED_ERROR = 1044, "42000";
    ER_ACCESS_DENIED_ERROR = 1045, "28000";
    ER_NO_DB_ERROR = 1046, "3D000";
    ER_UNKNOWN_COM_ERROR = 1047, "08S01";
    ER_BAD_DB_ERROR = 1049, "42000";
    ER_SERVER_SHUTDOWN = 1053, "08S01";
    ER_PARSE_ERROR = 1064, "42000";
    ER_EMPTY_QUERY = 1065, "42000";
    ER_OUT_OF_RESOURCES = 1041, "HY000";
    ER_NET_PACKET_TOO_LARGE = 1153, "08S01";
    ER_NET_READ_ERROR = 1158, "08S01";
    ER_NET_READ_INTERRUPTED = 1159, "08S01";
    ER_NET_ERROR_ON_WRITE = 1160, "08S01";
    ER_NET_PACKETS_OUT_OF_ORDER = 1156, "08S01";
    ER_NOT_SUPPORTED_YET = 1235, "42000";
    ER_NO_SUCH_THREAD = 1094, "HY000";
    ER_KILL_DENIED_ERROR = 1095, "HY000";
    ER_CONNECTION_KILLED = 1927, "70100";
    ER_NO_SUCH_TABLE = 1146, "42S02";
    ER_TOO_BIG_SELECT = 1104, "42000";
    ER_XAER_RMFAIL = 1399, "XAE07";
    ER_XAER_NOTA = 1397, "XAE04";
    ER_XAER_OUTSIDE = 1400, "XAE09";
    ER_XA_RBROLLBACK = 1402, "XA100";
    ER_DUP_ENTRY = 1062, "23000";
    ER_ERROR_DURING_COMMIT = 1180, "HY000";
    ER_WRONG_VALUE_FOR_VAR = 1231, "42000";
    ER_CANT_CHANGE_TX_CHARACTERISTICS = 1568, "25001";
    ER_UNKNOWN_STMT_HANDLER = 1243, "HY000";
    ER_WRONG_ARGUMENTS = 1210, "HY000";
    ER_NOT_ALLOWED_COMMAND = 1148, "42000";
    ER_QUERY_INTERRUPTED = 1317, "70100";
    ER_SPECIFIC_ACCESS_DENIED_ERROR = 1227, "42000";
    ER_OPTION_PREVENTS_STATEMENT = 1290, "HY000";
    ER_LOCK_WAIT_TIMEOUT = 1205, "HY000";
    ER_LOCK_DEADLOCK = 1213, "40001";
    ER_READ_ONLY_MODE = 1836, "HY000";
    ER_TOO_MANY_USER_CONNECTIONS = 1203, "42000";
    ER_TABLEACCESS_DENIED_ERROR = 1142, "42000";
    ER_UNKNOWN_ERROR = 1105, "HY000";
    ER_SECURE_TRANSPORT_REQUIRED = 3159, "HY000";
    ER_QUERY_TIMEOUT = 3024, "HY000";
    ER_PLUGIN_IS_NOT_LOADED = 1524, "HY000";
    ER_CONNECT_TO_FOREIGN_DATA_SOURCE = 1429, "HY000";
    CR_CONNECTION_ERROR = 2002, "HY000";
    CR_CONN_HOST_ERROR = 2003, "HY000";
    CR_SERVER_GONE_ERROR = 2006, "HY000";
    CR_SERVER_LOST = 2013, "HY000";
    CR_SSL_CONNECTION_ERROR = 2026, "HY000";
}

/// Looks a code up by number.
pub fn by_code(code: u16) -> Option<ErrorCode> {
    ALL.iter().copied().find(|e| e.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_sqlstates_are_five_characters() {
        for (i, a) in ALL.iter().enumerate() {
            assert_eq!(a.sqlstate.len(), 5, "{}", a.name);
            for b in &ALL[i + 1..] {
                assert_ne!(a.code, b.code, "{} and {}", a.name, b.name);
            }
        }
        assert_eq!(by_code(1045), Some(ER_ACCESS_DENIED_ERROR));
    }
}
