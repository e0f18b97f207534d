//! Column definitions (`Protocol::ColumnDefinition41`): the metadata packets that open
//! every result set and describe prepared-statement parameters, decoded and encoded.
//!
//! MariaDB's extended type info (`MARIADB_CLIENT_EXTENDED_TYPE_INFO`) is never requested
//! by the sidecar, so it is not handled here.

use super::constants::{column_flags, column_type, BINARY_COLLATION};
use super::wire::{self, DecodeError, DecodeResult, Reader};

/// Length of the fixed-length block, sent as a length-encoded integer before it.
pub const FIXED_FIELDS_LEN: u8 = 0x0c;

/// `decimals` value meaning "not a fixed number of decimals" (MySQL's `NOT_FIXED_DEC`;
/// MariaDB sends 39, MySQL 31: anything at or above 31 counts as not fixed).
pub const NOT_FIXED_DEC: u8 = 31;

/// The default value that follows a column definition in a `COM_FIELD_LIST` response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DefaultValue {
    /// Not sent: the definition is part of a result set, not a field list.
    #[default]
    Absent,
    /// Sent as NULL (`0xfb`).
    Null,
    /// Sent as a length-encoded string.
    Value(Vec<u8>),
}

/// One column of a result set (or one parameter of a prepared statement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDefinition {
    /// Always `def` in practice.
    pub catalog: Vec<u8>,
    pub schema: Vec<u8>,
    /// Table alias as written in the query.
    pub table: Vec<u8>,
    /// Physical table name.
    pub org_table: Vec<u8>,
    /// Column alias as written in the query.
    pub name: Vec<u8>,
    /// Physical column name.
    pub org_name: Vec<u8>,
    /// Collation id of the column (`63` = binary).
    pub charset: u16,
    /// Maximum display length in bytes.
    pub column_length: u32,
    /// One of [`column_type`].
    pub column_type: u8,
    /// Bit set of [`column_flags`].
    pub flags: u16,
    /// Number of decimals (fractional-second precision for temporal types).
    pub decimals: u8,
    /// Only present in `COM_FIELD_LIST` responses.
    pub default_value: DefaultValue,
}

impl ColumnDefinition {
    /// A column with the given name and type as the sidecar synthesises them: catalog
    /// `def`, no schema or table, binary collation for non-string types and utf8mb4 for
    /// strings, a display length that fits the type.
    pub fn new(name: impl Into<Vec<u8>>, column_type: u8) -> Self {
        let name = name.into();
        let (charset, column_length, flags, decimals) = match column_type {
            column_type::TINY => (BINARY_COLLATION, 4, column_flags::NUM, 0),
            column_type::SHORT => (BINARY_COLLATION, 6, column_flags::NUM, 0),
            column_type::INT24 => (BINARY_COLLATION, 9, column_flags::NUM, 0),
            column_type::LONG => (BINARY_COLLATION, 11, column_flags::NUM, 0),
            column_type::LONGLONG => (BINARY_COLLATION, 21, column_flags::NUM, 0),
            column_type::YEAR => (
                BINARY_COLLATION,
                4,
                column_flags::NUM | column_flags::UNSIGNED | column_flags::ZEROFILL,
                0,
            ),
            column_type::FLOAT => (BINARY_COLLATION, 12, column_flags::NUM, NOT_FIXED_DEC),
            column_type::DOUBLE => (BINARY_COLLATION, 22, column_flags::NUM, NOT_FIXED_DEC),
            column_type::DECIMAL | column_type::NEWDECIMAL => {
                (BINARY_COLLATION, 67, column_flags::NUM, 30)
            }
            column_type::DATE => (BINARY_COLLATION, 10, column_flags::BINARY, 0),
            column_type::DATETIME | column_type::TIMESTAMP => {
                (BINARY_COLLATION, 26, column_flags::BINARY, 6)
            }
            column_type::TIME => (BINARY_COLLATION, 17, column_flags::BINARY, 6),
            column_type::NULL => (BINARY_COLLATION, 0, column_flags::BINARY, 0),
            column_type::BIT => (BINARY_COLLATION, 64, column_flags::UNSIGNED, 0),
            column_type::TINY_BLOB
            | column_type::MEDIUM_BLOB
            | column_type::LONG_BLOB
            | column_type::BLOB
            | column_type::GEOMETRY => (
                BINARY_COLLATION,
                u32::MAX,
                column_flags::BLOB | column_flags::BINARY,
                0,
            ),
            _ => (u16::from(super::constants::DEFAULT_COLLATION), 1024, 0, 0),
        };
        Self {
            catalog: b"def".to_vec(),
            schema: Vec::new(),
            table: Vec::new(),
            org_table: Vec::new(),
            org_name: name.clone(),
            name,
            charset,
            column_length,
            column_type,
            flags,
            decimals,
            default_value: DefaultValue::Absent,
        }
    }

    /// Decodes a column definition payload.
    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        let catalog = r.lenenc_bytes("column catalog")?.to_vec();
        let schema = r.lenenc_bytes("column schema")?.to_vec();
        let table = r.lenenc_bytes("column table")?.to_vec();
        let org_table = r.lenenc_bytes("column org_table")?.to_vec();
        let name = r.lenenc_bytes("column name")?.to_vec();
        let org_name = r.lenenc_bytes("column org_name")?.to_vec();
        let fixed_len = r.lenenc_int("column fixed-length fields")?;
        // charset .. decimals is 10 bytes; the block is 12 with the filler. Accept a
        // longer block (skipping what we do not know) but never a shorter one.
        if fixed_len < 10 {
            return Err(DecodeError::Invalid(
                "column definition fixed-length block too short",
            ));
        }
        let fixed_len =
            usize::try_from(fixed_len).map_err(|_| DecodeError::Truncated("column fixed block"))?;
        let block = r.take(fixed_len, "column fixed-length fields")?;
        let mut f = Reader::new(block);
        let charset = f.u16("column charset")?;
        let column_length = f.u32("column length")?;
        let column_type = f.u8("column type")?;
        let flags = f.u16("column flags")?;
        let decimals = f.u8("column decimals")?;
        let default_value = if r.is_empty() {
            DefaultValue::Absent
        } else {
            match r.lenenc_bytes_or_null("column default value")? {
                None => DefaultValue::Null,
                Some(v) => DefaultValue::Value(v.to_vec()),
            }
        };
        Ok(Self {
            catalog,
            schema,
            table,
            org_table,
            name,
            org_name,
            charset,
            column_length,
            column_type,
            flags,
            decimals,
            default_value,
        })
    }

    /// Encodes as a column definition payload (with the default value only when one is
    /// set, as in `COM_FIELD_LIST` responses).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    /// Appends the payload to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        wire::put_lenenc_bytes(out, &self.catalog);
        wire::put_lenenc_bytes(out, &self.schema);
        wire::put_lenenc_bytes(out, &self.table);
        wire::put_lenenc_bytes(out, &self.org_table);
        wire::put_lenenc_bytes(out, &self.name);
        wire::put_lenenc_bytes(out, &self.org_name);
        out.push(FIXED_FIELDS_LEN);
        wire::put_u16(out, self.charset);
        wire::put_u32(out, self.column_length);
        out.push(self.column_type);
        wire::put_u16(out, self.flags);
        out.push(self.decimals);
        out.extend_from_slice(&[0, 0]);
        match &self.default_value {
            DefaultValue::Absent => {}
            DefaultValue::Null => out.push(0xfb),
            DefaultValue::Value(v) => wire::put_lenenc_bytes(out, v),
        }
    }

    fn encoded_len_hint(&self) -> usize {
        6 * 9
            + self.catalog.len()
            + self.schema.len()
            + self.table.len()
            + self.org_table.len()
            + self.name.len()
            + self.org_name.len()
            + 13
    }

    pub fn is_unsigned(&self) -> bool {
        self.flags & column_flags::UNSIGNED != 0
    }

    pub fn is_zerofill(&self) -> bool {
        self.flags & column_flags::ZEROFILL != 0
    }

    pub fn is_binary_collation(&self) -> bool {
        self.charset == BINARY_COLLATION
    }

    /// Whether `decimals` is a fixed number of digits after the point (`FLOAT(7,2)`,
    /// `DATETIME(3)`), rather than "as many as needed".
    pub fn has_fixed_decimals(&self) -> bool {
        self.decimals < NOT_FIXED_DEC
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    // Captured from MariaDB 10.11 (`CREATE TABLE test.t (id INT UNSIGNED NOT NULL
    // PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20), d DATETIME(3), p DECIMAL(10,2),
    // f FLOAT, c VARCHAR(5) DEFAULT 'abc') CHARSET utf8mb4`), client collation 45,
    // without DEPRECATE_EOF or MariaDB extended type info.

    /// `id` in `SELECT id, name AS n, d, p, f FROM test.t AS x`.
    const MARIADB_ID_COLUMN: &[u8] = &[
        0x03, 0x64, 0x65, 0x66, 0x04, 0x74, 0x65, 0x73, 0x74, 0x01, 0x78, 0x01, 0x74, 0x02, 0x69,
        0x64, 0x02, 0x69, 0x64, 0x0c, 0x3f, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x03, 0x23, 0x42, 0x00,
        0x00, 0x00,
    ];

    /// `name AS n` in the same result set (table alias `x`).
    const MARIADB_ALIASED_VARCHAR: &[u8] = &[
        0x03, 0x64, 0x65, 0x66, 0x04, 0x74, 0x65, 0x73, 0x74, 0x01, 0x78, 0x01, 0x74, 0x01, 0x6e,
        0x04, 0x6e, 0x61, 0x6d, 0x65, 0x0c, 0x2d, 0x00, 0x50, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00,
        0x00, 0x00, 0x00,
    ];

    /// `d`, a `DATETIME(3)`: decimals carry the fractional precision.
    const MARIADB_DATETIME3: &[u8] = &[
        0x03, 0x64, 0x65, 0x66, 0x04, 0x74, 0x65, 0x73, 0x74, 0x01, 0x78, 0x01, 0x74, 0x01, 0x64,
        0x01, 0x64, 0x0c, 0x3f, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0c, 0x80, 0x00, 0x03, 0x00, 0x00,
    ];

    /// `COM_FIELD_LIST test.t`: the `c` column with `DEFAULT 'abc'`.
    const FIELD_LIST_WITH_DEFAULT: &[u8] = &[
        0x03, 0x64, 0x65, 0x66, 0x04, 0x74, 0x65, 0x73, 0x74, 0x01, 0x74, 0x01, 0x74, 0x01, 0x63,
        0x01, 0x63, 0x0c, 0x2d, 0x00, 0x14, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x03, 0x61, 0x62, 0x63,
    ];

    /// `COM_FIELD_LIST test.t`: the `d` column, whose default is NULL.
    const FIELD_LIST_NULL_DEFAULT: &[u8] = &[
        0x03, 0x64, 0x65, 0x66, 0x04, 0x74, 0x65, 0x73, 0x74, 0x01, 0x74, 0x01, 0x74, 0x01, 0x64,
        0x01, 0x64, 0x0c, 0x3f, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0c, 0x80, 0x00, 0x03, 0x00, 0x00,
        0xfb,
    ];

    #[test]
    fn mariadb_int_column_decodes_and_round_trips() {
        let c = ColumnDefinition::decode(MARIADB_ID_COLUMN).unwrap();
        assert_eq!(c.catalog, b"def");
        assert_eq!(c.schema, b"test");
        assert_eq!(
            (c.table.as_slice(), c.name.as_slice()),
            (&b"x"[..], &b"id"[..])
        );
        assert_eq!(c.charset, 63);
        assert_eq!(c.column_length, 10);
        assert_eq!(c.column_type, column_type::LONG);
        assert!(c.is_unsigned());
        assert_eq!(
            c.flags,
            column_flags::NOT_NULL
                | column_flags::PRI_KEY
                | column_flags::UNSIGNED
                | column_flags::AUTO_INCREMENT
                | 0x4000 // PART_KEY
        );
        assert_eq!(c.default_value, DefaultValue::Absent);
        assert_eq!(c.encode(), MARIADB_ID_COLUMN);
    }

    #[test]
    fn aliased_column_keeps_alias_and_original_names() {
        let c = ColumnDefinition::decode(MARIADB_ALIASED_VARCHAR).unwrap();
        assert_eq!(
            (c.table.as_slice(), c.org_table.as_slice()),
            (&b"x"[..], &b"t"[..])
        );
        assert_eq!(
            (c.name.as_slice(), c.org_name.as_slice()),
            (&b"n"[..], &b"name"[..])
        );
        assert_eq!(c.column_type, column_type::VAR_STRING);
        assert_eq!((c.charset, c.column_length), (45, 80));
        assert_eq!(c.encode(), MARIADB_ALIASED_VARCHAR);
        let d = ColumnDefinition::decode(MARIADB_DATETIME3).unwrap();
        assert_eq!(
            (d.column_type, d.decimals, d.column_length),
            (column_type::DATETIME, 3, 23)
        );
        assert_eq!(d.flags, column_flags::BINARY);
        assert_eq!(d.encode(), MARIADB_DATETIME3);
    }

    #[test]
    fn field_list_default_value_is_decoded_and_re_encoded() {
        let c = ColumnDefinition::decode(FIELD_LIST_WITH_DEFAULT).unwrap();
        assert_eq!(c.default_value, DefaultValue::Value(b"abc".to_vec()));
        assert_eq!(c.encode(), FIELD_LIST_WITH_DEFAULT);
        let d = ColumnDefinition::decode(FIELD_LIST_NULL_DEFAULT).unwrap();
        assert_eq!(d.default_value, DefaultValue::Null);
        assert_eq!(d.encode(), FIELD_LIST_NULL_DEFAULT);
    }

    #[test]
    fn every_truncation_of_a_column_definition_is_an_error() {
        for full in [
            MARIADB_ID_COLUMN,
            MARIADB_ALIASED_VARCHAR,
            FIELD_LIST_WITH_DEFAULT,
        ] {
            for cut in 0..full.len() {
                let prefix = &full[..cut];
                // Cutting exactly before the default value leaves a valid definition.
                if full == FIELD_LIST_WITH_DEFAULT && cut == full.len() - 4 {
                    assert!(ColumnDefinition::decode(prefix).is_ok());
                    continue;
                }
                assert!(
                    ColumnDefinition::decode(prefix).is_err(),
                    "prefix of {cut} bytes decoded"
                );
            }
        }
    }

    #[test]
    fn short_fixed_block_is_rejected() {
        let mut bytes = MARIADB_ID_COLUMN[..19].to_vec();
        bytes.push(0x05);
        bytes.extend_from_slice(&[0; 5]);
        assert_eq!(
            ColumnDefinition::decode(&bytes),
            Err(DecodeError::Invalid(
                "column definition fixed-length block too short"
            ))
        );
    }

    #[test]
    fn synthesised_columns_round_trip_for_every_type() {
        for t in [
            column_type::TINY,
            column_type::LONGLONG,
            column_type::YEAR,
            column_type::DOUBLE,
            column_type::NEWDECIMAL,
            column_type::DATETIME,
            column_type::TIME,
            column_type::VAR_STRING,
            column_type::BLOB,
        ] {
            let c = ColumnDefinition::new("c", t);
            assert_eq!(ColumnDefinition::decode(&c.encode()).unwrap(), c);
        }
    }
}
