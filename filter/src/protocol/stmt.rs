//! Prepared-statement packets: the `COM_STMT_PREPARE` OK, `COM_STMT_EXECUTE` with its
//! typed parameters, and `COM_STMT_CLOSE`, `COM_STMT_RESET`, `COM_STMT_FETCH` and
//! `COM_STMT_SEND_LONG_DATA`, decoded and encoded.
//!
//! Decoding `COM_STMT_EXECUTE` needs what only the session knows: the parameter count
//! from the prepare response, the parameter types of the previous execute (when the
//! client does not rebind them) and which parameters were sent as long data.

use super::constants::{column_type, Command};
use super::resultset::{bit_is_set, set_bit};
use super::value::{EncodeError, Value};
use super::wire::{self, DecodeError, DecodeResult, Reader};

/// Header byte of the prepare OK.
pub const PREPARE_OK_HEADER: u8 = 0x00;

/// Flag in the second type byte of an execute parameter: the integer is unsigned.
pub const PARAM_UNSIGNED: u8 = 0x80;

/// `COM_STMT_EXECUTE` flags (`CURSOR_TYPE_*`).
pub mod cursor_type {
    pub const NO_CURSOR: u8 = 0;
    pub const READ_ONLY: u8 = 1;
    pub const FOR_UPDATE: u8 = 2;
    pub const SCROLLABLE: u8 = 4;
}

fn expect_command(r: &mut Reader<'_>, command: Command, what: &'static str) -> DecodeResult<()> {
    if r.u8(what)? != command as u8 {
        return Err(DecodeError::Invalid("unexpected command byte"));
    }
    Ok(())
}

/// The first packet of a successful `COM_STMT_PREPARE` response. `num_params` parameter
/// definitions and `num_columns` column definitions follow, each group ended by an EOF
/// unless `DEPRECATE_EOF`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StmtPrepareOk {
    pub statement_id: u32,
    pub num_columns: u16,
    pub num_params: u16,
    pub warnings: u16,
}

impl StmtPrepareOk {
    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        if r.u8("prepare OK header")? != PREPARE_OK_HEADER {
            return Err(DecodeError::Invalid("not a prepare OK"));
        }
        let statement_id = r.u32("statement id")?;
        let num_columns = r.u16("column count")?;
        let num_params = r.u16("parameter count")?;
        r.skip(1, "reserved byte")?;
        let warnings = r.u16("warning count")?;
        // MySQL 8 may append a metadata-follows byte; we do not ask for it.
        Ok(Self {
            statement_id,
            num_columns,
            num_params,
            warnings,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        out.push(PREPARE_OK_HEADER);
        wire::put_u32(&mut out, self.statement_id);
        wire::put_u16(&mut out, self.num_columns);
        wire::put_u16(&mut out, self.num_params);
        out.push(0);
        wire::put_u16(&mut out, self.warnings);
        out
    }
}

/// The type of one execute parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamType {
    /// One of [`column_type`].
    pub column_type: u8,
    pub unsigned: bool,
}

impl ParamType {
    /// The type a value is sent as when the sidecar binds it.
    pub fn of(value: &Value) -> Self {
        let (column_type, unsigned) = value.natural_type();
        Self {
            column_type,
            unsigned,
        }
    }
}

/// `COM_STMT_EXECUTE`.
#[derive(Debug, Clone, PartialEq)]
pub struct StmtExecute {
    pub statement_id: u32,
    /// Cursor type ([`cursor_type`]).
    pub flags: u8,
    /// Always 1 in practice.
    pub iteration_count: u32,
    /// Whether the packet carries the parameter types (`new_params_bound_flag`). When
    /// false, `param_types` are the ones remembered from the previous execute.
    pub new_params_bound: bool,
    /// The types in effect for this execute (sent or remembered).
    pub param_types: Vec<ParamType>,
    /// One entry per parameter; `None` for a parameter whose value was sent with
    /// `COM_STMT_SEND_LONG_DATA` (it is absent from the packet).
    pub params: Vec<Option<Value>>,
}

impl StmtExecute {
    /// An execute that binds `values` with their natural types (the sidecar's own
    /// statements). Types are sent when there is at least one parameter.
    pub fn with_values(statement_id: u32, values: Vec<Value>) -> Self {
        Self {
            statement_id,
            flags: cursor_type::NO_CURSOR,
            iteration_count: 1,
            new_params_bound: !values.is_empty(),
            param_types: values.iter().map(ParamType::of).collect(),
            params: values.into_iter().map(Some).collect(),
        }
    }

    /// Decodes an execute for a statement with `num_params` parameters.
    ///
    /// `previous_types` are the types bound by the previous execute of this statement,
    /// used when the client does not send new ones; `long_data[i]` is true when
    /// parameter `i` was sent with `COM_STMT_SEND_LONG_DATA` since the last execute
    /// (shorter slices mean "no long data" for the rest).
    pub fn decode(
        payload: &[u8],
        num_params: u16,
        previous_types: Option<&[ParamType]>,
        long_data: &[bool],
    ) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        expect_command(&mut r, Command::StmtExecute, "COM_STMT_EXECUTE")?;
        let statement_id = r.u32("statement id")?;
        let flags = r.u8("execute flags")?;
        let iteration_count = r.u32("iteration count")?;
        let n = usize::from(num_params);
        let mut exec = Self {
            statement_id,
            flags,
            iteration_count,
            new_params_bound: false,
            param_types: Vec::new(),
            params: Vec::new(),
        };
        if n == 0 {
            return Ok(exec);
        }
        let null_bitmap = r.take(n.div_ceil(8), "parameter NULL bitmap")?;
        exec.new_params_bound = match r.u8("new-params-bound flag")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Invalid("bad new-params-bound flag")),
        };
        exec.param_types = if exec.new_params_bound {
            let mut types = Vec::with_capacity(n);
            for _ in 0..n {
                let column_type = r.u8("parameter type")?;
                let flag = r.u8("parameter type flag")?;
                types.push(ParamType {
                    column_type,
                    unsigned: flag & PARAM_UNSIGNED != 0,
                });
            }
            types
        } else {
            match previous_types {
                Some(t) if t.len() == n => t.to_vec(),
                _ => {
                    return Err(DecodeError::Invalid(
                        "execute without parameter types and none bound before",
                    ))
                }
            }
        };
        exec.params.reserve(n);
        for (i, t) in exec.param_types.iter().enumerate() {
            if long_data.get(i).copied().unwrap_or(false) {
                exec.params.push(None);
            } else if bit_is_set(null_bitmap, i) {
                exec.params.push(Some(Value::Null));
            } else {
                exec.params
                    .push(Some(Value::read_binary(&mut r, t.column_type, t.unsigned)?));
            }
        }
        if !r.is_empty() {
            return Err(DecodeError::Invalid("execute longer than its parameters"));
        }
        Ok(exec)
    }

    /// Encodes the execute. Types are written only when `new_params_bound`.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let n = self.params.len();
        if self.param_types.len() != n {
            return Err(EncodeError::WrongCount {
                expected: self.param_types.len(),
                got: n,
            });
        }
        let mut out = Vec::with_capacity(10 + n * 4);
        out.push(Command::StmtExecute as u8);
        wire::put_u32(&mut out, self.statement_id);
        out.push(self.flags);
        wire::put_u32(&mut out, self.iteration_count);
        if n == 0 {
            return Ok(out);
        }
        let bitmap_at = out.len();
        out.resize(bitmap_at + n.div_ceil(8), 0);
        for (i, p) in self.params.iter().enumerate() {
            if matches!(p, Some(Value::Null)) {
                if let Some(bitmap) = out.get_mut(bitmap_at..) {
                    set_bit(bitmap, i);
                }
            }
        }
        out.push(u8::from(self.new_params_bound));
        if self.new_params_bound {
            for t in &self.param_types {
                out.push(t.column_type);
                out.push(if t.unsigned { PARAM_UNSIGNED } else { 0 });
            }
        }
        for (p, t) in self.params.iter().zip(&self.param_types) {
            if let Some(v) = p {
                if t.column_type == column_type::NULL && !v.is_null() {
                    return Err(EncodeError::TypeMismatch {
                        column_type: t.column_type,
                        value: v.kind(),
                    });
                }
                v.write_binary(&mut out, t.column_type, t.unsigned)?;
            }
        }
        Ok(out)
    }
}

/// `COM_STMT_CLOSE` (no response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StmtClose {
    pub statement_id: u32,
}

impl StmtClose {
    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        expect_command(&mut r, Command::StmtClose, "COM_STMT_CLOSE")?;
        Ok(Self {
            statement_id: r.u32("statement id")?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![Command::StmtClose as u8];
        wire::put_u32(&mut out, self.statement_id);
        out
    }
}

/// `COM_STMT_RESET` (answered with OK or ERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StmtReset {
    pub statement_id: u32,
}

impl StmtReset {
    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        expect_command(&mut r, Command::StmtReset, "COM_STMT_RESET")?;
        Ok(Self {
            statement_id: r.u32("statement id")?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![Command::StmtReset as u8];
        wire::put_u32(&mut out, self.statement_id);
        out
    }
}

/// `COM_STMT_FETCH` (answered with binary rows and an EOF, or ERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StmtFetch {
    pub statement_id: u32,
    pub num_rows: u32,
}

impl StmtFetch {
    pub fn decode(payload: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        expect_command(&mut r, Command::StmtFetch, "COM_STMT_FETCH")?;
        Ok(Self {
            statement_id: r.u32("statement id")?,
            num_rows: r.u32("row count")?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![Command::StmtFetch as u8];
        wire::put_u32(&mut out, self.statement_id);
        wire::put_u32(&mut out, self.num_rows);
        out
    }
}

/// `COM_STMT_SEND_LONG_DATA` (no response): a chunk of one parameter's value, borrowed
/// from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StmtSendLongData<'a> {
    pub statement_id: u32,
    pub param_id: u16,
    pub data: &'a [u8],
}

impl<'a> StmtSendLongData<'a> {
    pub fn decode(payload: &'a [u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(payload);
        expect_command(&mut r, Command::StmtSendLongData, "COM_STMT_SEND_LONG_DATA")?;
        Ok(Self {
            statement_id: r.u32("statement id")?,
            param_id: r.u16("parameter id")?,
            data: r.take_rest(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(7 + self.data.len());
        out.push(Command::StmtSendLongData as u8);
        wire::put_u32(&mut out, self.statement_id);
        wire::put_u16(&mut out, self.param_id);
        out.extend_from_slice(self.data);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::protocol::value::tests::Gen;

    fn assert_every_prefix_fails<T: std::fmt::Debug>(
        full: &[u8],
        decode: impl Fn(&[u8]) -> DecodeResult<T>,
    ) {
        for cut in 0..full.len() {
            assert!(
                decode(&full[..cut]).is_err(),
                "prefix of {cut} of {} bytes decoded",
                full.len()
            );
        }
    }

    #[test]
    fn prepare_ok_matches_mariadb_bytes() {
        // Captured from MariaDB 10.11: `COM_STMT_PREPARE` of `SELECT id, name, d, p, f,
        // ? AS x FROM test.t WHERE id >= ?`: id 1, 6 columns, 2 params, 0 warnings.
        let bytes = [0x00, 0x01, 0, 0, 0, 0x06, 0, 0x02, 0, 0x00, 0x00, 0x00];
        let ok = StmtPrepareOk::decode(&bytes).unwrap();
        assert_eq!(
            ok,
            StmtPrepareOk {
                statement_id: 1,
                num_columns: 6,
                num_params: 2,
                warnings: 0
            }
        );
        assert_eq!(ok.encode(), bytes);
        assert_every_prefix_fails(&bytes, StmtPrepareOk::decode);
        assert!(StmtPrepareOk::decode(&[0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn execute_matches_the_protocol_documentation_example() {
        // COM_STMT_EXECUTE of statement 1 with one LONGLONG param = 1... as documented:
        // 17 01000000 00 01000000 00 01 0800 0100000000000000
        let bytes = [
            0x17, 1, 0, 0, 0, 0x00, 1, 0, 0, 0, 0x00, 0x01, 0x08, 0x00, 1, 0, 0, 0, 0, 0, 0, 0,
        ];
        let e = StmtExecute::decode(&bytes, 1, None, &[]).unwrap();
        assert_eq!(e.statement_id, 1);
        assert!(e.new_params_bound);
        assert_eq!(
            e.param_types,
            vec![ParamType {
                column_type: column_type::LONGLONG,
                unsigned: false
            }]
        );
        assert_eq!(e.params, vec![Some(Value::Int(1))]);
        assert_eq!(e.encode().unwrap(), bytes);
        assert_every_prefix_fails(&bytes, |p| StmtExecute::decode(p, 1, None, &[]));
    }

    #[test]
    fn execute_accepted_by_mariadb_round_trips() {
        // Sent to MariaDB 10.11 for the statement above and answered with rows: params
        // (-5 as LONGLONG, 1 as unsigned LONGLONG).
        let bytes = [
            0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0x00, 0x01, 0x08, 0x00, 0x08, 0x80, 0xfb, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0,
        ];
        let e = StmtExecute::decode(&bytes, 2, None, &[]).unwrap();
        assert_eq!(e.params, vec![Some(Value::Int(-5)), Some(Value::UInt(1))]);
        assert_eq!(
            StmtExecute::with_values(1, vec![Value::Int(-5), Value::UInt(1)]),
            e
        );
        assert_eq!(e.encode().unwrap(), bytes);
    }

    #[test]
    fn execute_without_params_is_ten_bytes() {
        let e = StmtExecute::with_values(9, Vec::new());
        let bytes = e.encode().unwrap();
        assert_eq!(bytes.len(), 10);
        assert_eq!(StmtExecute::decode(&bytes, 0, None, &[]).unwrap(), e);
    }

    #[test]
    fn execute_reuses_previous_types_when_not_rebound() {
        let mut e = StmtExecute::with_values(
            3,
            vec![Value::UInt(7), Value::Null, Value::Bytes(b"abc".to_vec())],
        );
        let types = e.param_types.clone();
        e.new_params_bound = false;
        let bytes = e.encode().unwrap();
        assert!(StmtExecute::decode(&bytes, 3, None, &[]).is_err());
        assert!(StmtExecute::decode(&bytes, 3, Some(&types[..2]), &[]).is_err());
        let back = StmtExecute::decode(&bytes, 3, Some(&types), &[]).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.params[0], Some(Value::UInt(7)));
    }

    #[test]
    fn long_data_params_are_absent_from_the_packet() {
        let mut e = StmtExecute::with_values(
            4,
            vec![Value::Int(1), Value::Bytes(Vec::new()), Value::Int(3)],
        );
        e.params[1] = None;
        let bytes = e.encode().unwrap();
        let back = StmtExecute::decode(&bytes, 3, None, &[false, true]).unwrap();
        assert_eq!(
            back.params,
            vec![Some(Value::Int(1)), None, Some(Value::Int(3))]
        );
        // Without knowing about the long data, the packet does not parse.
        assert!(StmtExecute::decode(&bytes, 3, None, &[]).is_err());
    }

    #[test]
    fn execute_null_bitmap_edges() {
        for n in [1usize, 7, 8, 9, 64] {
            for pattern in 0..4 {
                let values: Vec<Value> = (0..n)
                    .map(|i| {
                        let null = match pattern {
                            0 => true,
                            1 => false,
                            2 => i % 3 == 0,
                            _ => i + 1 == n,
                        };
                        if null {
                            Value::Null
                        } else {
                            Value::Int(i as i64)
                        }
                    })
                    .collect();
                let mut e = StmtExecute::with_values(1, values);
                // Bind every parameter as LONGLONG so NULLs keep a real type.
                for t in &mut e.param_types {
                    t.column_type = column_type::LONGLONG;
                }
                let bytes = e.encode().unwrap();
                let nulls = e.params.iter().filter(|p| p == &&Some(Value::Null)).count();
                assert_eq!(
                    bytes.len(),
                    10 + n.div_ceil(8) + 1 + 2 * n + 8 * (n - nulls)
                );
                let back = StmtExecute::decode(&bytes, n as u16, None, &[]).unwrap();
                assert_eq!(back, e);
            }
        }
    }

    #[test]
    fn generated_executes_round_trip_and_every_prefix_fails() {
        let mut g = Gen::new(5);
        for _ in 0..400 {
            let n = g.below(20) as usize;
            let (cols, values): (Vec<_>, Vec<_>) = (0..n).map(|_| g.typed_value()).unzip();
            let mut e = StmtExecute::with_values(g.next_u64() as u32, values);
            e.flags = cursor_type::READ_ONLY;
            for (t, c) in e.param_types.iter_mut().zip(&cols) {
                t.column_type = c.column_type;
                t.unsigned = c.is_unsigned();
            }
            let bytes = e.encode().unwrap();
            let back = StmtExecute::decode(&bytes, n as u16, None, &[]).unwrap();
            assert_eq!(back, e);
            assert_every_prefix_fails(&bytes, |p| StmtExecute::decode(p, n as u16, None, &[]));
        }
    }

    #[test]
    fn execute_rejects_garbage() {
        assert!(StmtExecute::decode(&[0x03, 1, 0, 0, 0, 0, 1, 0, 0, 0], 0, None, &[]).is_err());
        // new-params-bound flag of 2.
        let bytes = [0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0x00, 0x02];
        assert!(StmtExecute::decode(&bytes, 1, None, &[]).is_err());
        // Trailing bytes after the parameters.
        let mut bytes = StmtExecute::with_values(1, vec![Value::Int(1)])
            .encode()
            .unwrap();
        bytes.push(0);
        assert!(StmtExecute::decode(&bytes, 1, None, &[]).is_err());
    }

    #[test]
    fn close_reset_fetch_and_long_data_round_trip() {
        let close = StmtClose { statement_id: 77 };
        assert_eq!(close.encode(), [0x19, 77, 0, 0, 0]);
        assert_eq!(StmtClose::decode(&close.encode()).unwrap(), close);
        assert_every_prefix_fails(&close.encode(), StmtClose::decode);

        let reset = StmtReset { statement_id: 5 };
        assert_eq!(reset.encode(), [0x1a, 5, 0, 0, 0]);
        assert_eq!(StmtReset::decode(&reset.encode()).unwrap(), reset);
        assert_every_prefix_fails(&reset.encode(), StmtReset::decode);

        let fetch = StmtFetch {
            statement_id: 2,
            num_rows: 100,
        };
        assert_eq!(fetch.encode(), [0x1c, 2, 0, 0, 0, 100, 0, 0, 0]);
        assert_eq!(StmtFetch::decode(&fetch.encode()).unwrap(), fetch);
        assert_every_prefix_fails(&fetch.encode(), StmtFetch::decode);

        let long = StmtSendLongData {
            statement_id: 1,
            param_id: 2,
            data: b"chunk",
        };
        let bytes = long.encode();
        assert_eq!(&bytes[..7], &[0x18, 1, 0, 0, 0, 2, 0]);
        assert_eq!(StmtSendLongData::decode(&bytes).unwrap(), long);
        // The data may be empty, so only the 7-byte header must be complete.
        assert_every_prefix_fails(&bytes[..7], |p| {
            StmtSendLongData::decode(p).map(|l| l.data.len())
        });

        assert!(
            StmtClose::decode(&[0x1a, 1, 0, 0, 0]).is_err(),
            "wrong command byte"
        );
    }
}
