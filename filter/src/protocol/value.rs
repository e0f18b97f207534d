//! Typed column and parameter values: their binary-protocol encoding (shared by binary
//! result rows and `COM_STMT_EXECUTE` parameters), their text-protocol rendering as MySQL
//! prints it, parsing text cells back into values, and comparisons used when merging
//! rows from several shards.

use std::cmp::Ordering;

use thiserror::Error;

use super::column::ColumnDefinition;
use super::constants::column_type;
use super::wire::{self, DecodeError, DecodeResult, Reader};

/// One value of a row or a statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// Signed integers (TINY, SHORT, INT24, LONG, LONGLONG, YEAR without `UNSIGNED`).
    Int(i64),
    /// Unsigned integers (the same types with the `UNSIGNED` flag).
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Strings, blobs, DECIMAL, JSON, ENUM, SET, BIT and GEOMETRY, as received.
    Bytes(Vec<u8>),
    Date {
        year: u16,
        month: u8,
        day: u8,
    },
    DateTime {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        micros: u32,
    },
    Time {
        negative: bool,
        days: u32,
        hours: u8,
        minutes: u8,
        seconds: u8,
        micros: u32,
    },
}

/// A value cannot be written as the column or parameter type asks for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("value of kind {value} cannot be sent as column type {column_type:#04x}")]
    TypeMismatch {
        column_type: u8,
        value: &'static str,
    },
    #[error("value out of range for column type {column_type:#04x}")]
    OutOfRange { column_type: u8 },
    #[error("expected {expected} values, got {got}")]
    WrongCount { expected: usize, got: usize },
}

impl Value {
    /// Short name of the variant, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "integer",
            Value::UInt(_) => "unsigned integer",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::Bytes(_) => "bytes",
            Value::Date { .. } => "date",
            Value::DateTime { .. } => "datetime",
            Value::Time { .. } => "time",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The column type and unsigned flag this value is sent as when nothing else decides
    /// it (prepared-statement parameters built by the sidecar).
    pub fn natural_type(&self) -> (u8, bool) {
        match self {
            Value::Null => (column_type::NULL, false),
            Value::Int(_) => (column_type::LONGLONG, false),
            Value::UInt(_) => (column_type::LONGLONG, true),
            Value::Float(_) => (column_type::FLOAT, false),
            Value::Double(_) => (column_type::DOUBLE, false),
            Value::Bytes(_) => (column_type::VAR_STRING, false),
            Value::Date { .. } => (column_type::DATE, false),
            Value::DateTime { .. } => (column_type::DATETIME, false),
            Value::Time { .. } => (column_type::TIME, false),
        }
    }

    /// Renders the value as the text protocol carries it for `col` (what the `mysql`
    /// client prints). `NULL` renders as `NULL`; text rows send NULL as `0xfb` instead.
    pub fn to_text(&self, col: &ColumnDefinition) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_text(col, &mut out);
        out
    }

    /// Appends the text rendering of the value to `out`.
    pub fn write_text(&self, col: &ColumnDefinition, out: &mut Vec<u8>) {
        use std::io::Write;
        match self {
            Value::Null => out.extend_from_slice(b"NULL"),
            Value::Int(v) => {
                let start = out.len();
                let _ = write!(out, "{v}");
                zero_fill(out, start, col);
            }
            Value::UInt(v) => {
                let start = out.len();
                let _ = write!(out, "{v}");
                zero_fill(out, start, col);
            }
            Value::Float(v) => write_float(out, f64::from(*v), *v, col),
            Value::Double(v) => write_double(out, *v, col),
            Value::Bytes(b) => out.extend_from_slice(b),
            Value::Date { year, month, day } => {
                let _ = write!(out, "{year:04}-{month:02}-{day:02}");
            }
            Value::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                micros,
            } => {
                let _ = write!(out, "{year:04}-{month:02}-{day:02}");
                if col.column_type != column_type::DATE && col.column_type != column_type::NEWDATE {
                    let _ = write!(out, " {hour:02}:{minute:02}:{second:02}");
                    write_fraction(out, *micros, col.decimals);
                }
            }
            Value::Time {
                negative,
                days,
                hours,
                minutes,
                seconds,
                micros,
            } => {
                if *negative {
                    out.push(b'-');
                }
                let total_hours = u64::from(*days) * 24 + u64::from(*hours);
                let _ = write!(out, "{total_hours:02}:{minutes:02}:{seconds:02}");
                write_fraction(out, *micros, col.decimals);
            }
        }
    }

    /// Parses a text-protocol cell into a typed value for `col`. Numbers and temporal
    /// values become their variants; everything else (including DECIMAL) stays bytes.
    pub fn from_text(cell: Option<&[u8]>, col: &ColumnDefinition) -> DecodeResult<Value> {
        let Some(text) = cell else {
            return Ok(Value::Null);
        };
        let s = || std::str::from_utf8(text).map_err(|_| DecodeError::Invalid("non-ASCII number"));
        Ok(match col.column_type {
            column_type::TINY
            | column_type::SHORT
            | column_type::INT24
            | column_type::LONG
            | column_type::LONGLONG
            | column_type::YEAR => {
                if col.is_unsigned() {
                    Value::UInt(
                        s()?.parse()
                            .map_err(|_| DecodeError::Invalid("malformed unsigned integer"))?,
                    )
                } else {
                    Value::Int(
                        s()?.parse()
                            .map_err(|_| DecodeError::Invalid("malformed integer"))?,
                    )
                }
            }
            column_type::FLOAT => Value::Float(
                s()?.parse()
                    .map_err(|_| DecodeError::Invalid("malformed float"))?,
            ),
            column_type::DOUBLE => Value::Double(
                s()?.parse()
                    .map_err(|_| DecodeError::Invalid("malformed double"))?,
            ),
            column_type::NULL => Value::Null,
            column_type::DATE | column_type::NEWDATE => {
                let (year, month, day) = parse_date(text)?;
                Value::Date { year, month, day }
            }
            column_type::DATETIME
            | column_type::TIMESTAMP
            | column_type::DATETIME2
            | column_type::TIMESTAMP2 => {
                let date = text
                    .get(..10)
                    .ok_or(DecodeError::Invalid("malformed datetime"))?;
                let (year, month, day) = parse_date(date)?;
                let rest = text.get(10..).unwrap_or(&[]);
                let (hour, minute, second, micros) = match rest.split_first() {
                    None => (0, 0, 0, 0),
                    Some((b' ' | b'T', time)) => {
                        let (h, m, s, us) = parse_time_of_day(time)?;
                        let hour = u8::try_from(h)
                            .ok()
                            .filter(|h| *h < 24)
                            .ok_or(DecodeError::Invalid("malformed datetime"))?;
                        (hour, m, s, us)
                    }
                    Some(_) => return Err(DecodeError::Invalid("malformed datetime")),
                };
                Value::DateTime {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    micros,
                }
            }
            column_type::TIME | column_type::TIME2 => {
                let (negative, time) = match text.split_first() {
                    Some((b'-', rest)) => (true, rest),
                    _ => (false, text),
                };
                let (h, minutes, seconds, micros) = parse_time_of_day(time)?;
                let days =
                    u32::try_from(h / 24).map_err(|_| DecodeError::Invalid("malformed time"))?;
                Value::Time {
                    negative,
                    days,
                    hours: (h % 24) as u8,
                    minutes,
                    seconds,
                    micros,
                }
            }
            _ => Value::Bytes(text.to_vec()),
        })
    }

    /// Reads one binary-protocol value of `column_type` (binary result rows and
    /// `COM_STMT_EXECUTE` parameters share this encoding).
    pub fn read_binary(r: &mut Reader<'_>, column_type: u8, unsigned: bool) -> DecodeResult<Value> {
        Ok(match column_type {
            column_type::NULL => Value::Null,
            column_type::TINY => {
                let v = r.u8("TINY value")?;
                integer(unsigned, u64::from(v), i64::from(v as i8))
            }
            column_type::SHORT | column_type::YEAR => {
                let v = r.u16("SHORT value")?;
                integer(unsigned, u64::from(v), i64::from(v as i16))
            }
            column_type::LONG | column_type::INT24 => {
                let v = r.u32("LONG value")?;
                integer(unsigned, u64::from(v), i64::from(v as i32))
            }
            column_type::LONGLONG => {
                let v = r.u64("LONGLONG value")?;
                integer(unsigned, v, v as i64)
            }
            column_type::FLOAT => Value::Float(f32::from_bits(r.u32("FLOAT value")?)),
            column_type::DOUBLE => Value::Double(f64::from_bits(r.u64("DOUBLE value")?)),
            column_type::DATE
            | column_type::NEWDATE
            | column_type::DATETIME
            | column_type::TIMESTAMP
            | column_type::DATETIME2
            | column_type::TIMESTAMP2 => {
                let len = r.u8("temporal length")?;
                let (mut year, mut month, mut day) = (0, 0, 0);
                let (mut hour, mut minute, mut second, mut micros) = (0, 0, 0, 0);
                if !matches!(len, 0 | 4 | 7 | 11) {
                    return Err(DecodeError::Invalid("bad DATETIME length"));
                }
                if len >= 4 {
                    year = r.u16("DATETIME year")?;
                    month = r.u8("DATETIME month")?;
                    day = r.u8("DATETIME day")?;
                }
                if len >= 7 {
                    hour = r.u8("DATETIME hour")?;
                    minute = r.u8("DATETIME minute")?;
                    second = r.u8("DATETIME second")?;
                }
                if len == 11 {
                    micros = r.u32("DATETIME microseconds")?;
                }
                if column_type == column_type::DATE || column_type == column_type::NEWDATE {
                    Value::Date { year, month, day }
                } else {
                    Value::DateTime {
                        year,
                        month,
                        day,
                        hour,
                        minute,
                        second,
                        micros,
                    }
                }
            }
            column_type::TIME | column_type::TIME2 => {
                let len = r.u8("TIME length")?;
                if !matches!(len, 0 | 8 | 12) {
                    return Err(DecodeError::Invalid("bad TIME length"));
                }
                let mut v = Value::Time {
                    negative: false,
                    days: 0,
                    hours: 0,
                    minutes: 0,
                    seconds: 0,
                    micros: 0,
                };
                if len >= 8 {
                    let negative = r.u8("TIME sign")? != 0;
                    let days = r.u32("TIME days")?;
                    let hours = r.u8("TIME hours")?;
                    let minutes = r.u8("TIME minutes")?;
                    let seconds = r.u8("TIME seconds")?;
                    let micros = if len == 12 {
                        r.u32("TIME microseconds")?
                    } else {
                        0
                    };
                    v = Value::Time {
                        negative,
                        days,
                        hours,
                        minutes,
                        seconds,
                        micros,
                    };
                }
                v
            }
            // DECIMAL, NEWDECIMAL, VARCHAR, VAR_STRING, STRING, ENUM, SET, the BLOBs,
            // JSON, GEOMETRY, BIT and anything newer: a length-encoded string.
            _ => Value::Bytes(r.lenenc_bytes("binary string value")?.to_vec()),
        })
    }

    /// Appends the binary-protocol encoding of the value as `column_type`. Integers are
    /// range-checked against the type; strings are only accepted for string-like types.
    /// `Null` writes nothing (NULL travels in the bitmap).
    pub fn write_binary(
        &self,
        out: &mut Vec<u8>,
        column_type: u8,
        unsigned: bool,
    ) -> Result<(), EncodeError> {
        let mismatch = || EncodeError::TypeMismatch {
            column_type,
            value: self.kind(),
        };
        let range = || EncodeError::OutOfRange { column_type };
        if self.is_null() {
            return Ok(());
        }
        match column_type {
            column_type::NULL => return Err(mismatch()),
            column_type::TINY
            | column_type::SHORT
            | column_type::YEAR
            | column_type::LONG
            | column_type::INT24
            | column_type::LONGLONG => {
                let wide: i128 = match self {
                    Value::Int(v) => i128::from(*v),
                    Value::UInt(v) => i128::from(*v),
                    _ => return Err(mismatch()),
                };
                let bits: u32 = match column_type {
                    column_type::TINY => 8,
                    column_type::SHORT | column_type::YEAR => 16,
                    column_type::LONG | column_type::INT24 => 32,
                    _ => 64,
                };
                let (min, max) = if unsigned {
                    (0i128, (1i128 << bits) - 1)
                } else {
                    (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
                };
                if wide < min || wide > max {
                    return Err(range());
                }
                let bytes = (wide as u64).to_le_bytes();
                let n = (bits / 8) as usize;
                out.extend_from_slice(bytes.get(..n).unwrap_or(&bytes));
            }
            column_type::FLOAT => match self {
                Value::Float(v) => wire::put_u32(out, v.to_bits()),
                _ => return Err(mismatch()),
            },
            column_type::DOUBLE => match self {
                Value::Double(v) => wire::put_u64(out, v.to_bits()),
                Value::Float(v) => wire::put_u64(out, f64::from(*v).to_bits()),
                _ => return Err(mismatch()),
            },
            column_type::DATE
            | column_type::NEWDATE
            | column_type::DATETIME
            | column_type::TIMESTAMP
            | column_type::DATETIME2
            | column_type::TIMESTAMP2 => {
                let (year, month, day, hour, minute, second, micros) = match *self {
                    Value::Date { year, month, day } => (year, month, day, 0, 0, 0, 0),
                    Value::DateTime {
                        year,
                        month,
                        day,
                        hour,
                        minute,
                        second,
                        micros,
                    } => (year, month, day, hour, minute, second, micros),
                    _ => return Err(mismatch()),
                };
                let len = if micros != 0 {
                    11
                } else if hour != 0 || minute != 0 || second != 0 {
                    7
                } else if year != 0 || month != 0 || day != 0 {
                    4
                } else {
                    0
                };
                out.push(len);
                if len >= 4 {
                    wire::put_u16(out, year);
                    out.push(month);
                    out.push(day);
                }
                if len >= 7 {
                    out.extend_from_slice(&[hour, minute, second]);
                }
                if len == 11 {
                    wire::put_u32(out, micros);
                }
            }
            column_type::TIME | column_type::TIME2 => {
                let Value::Time {
                    negative,
                    days,
                    hours,
                    minutes,
                    seconds,
                    micros,
                } = *self
                else {
                    return Err(mismatch());
                };
                let zero = days == 0 && hours == 0 && minutes == 0 && seconds == 0;
                if zero && micros == 0 && !negative {
                    out.push(0);
                    return Ok(());
                }
                out.push(if micros != 0 { 12 } else { 8 });
                out.push(u8::from(negative));
                wire::put_u32(out, days);
                out.extend_from_slice(&[hours, minutes, seconds]);
                if micros != 0 {
                    wire::put_u32(out, micros);
                }
            }
            _ => match self {
                Value::Bytes(b) => wire::put_lenenc_bytes(out, b),
                _ => return Err(mismatch()),
            },
        }
        Ok(())
    }

    /// The value as a double, for numeric comparison (strings are parsed the way MySQL
    /// converts a string to a number: the longest numeric prefix, else 0).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::UInt(v) => Some(*v as f64),
            Value::Float(v) => Some(f64::from(*v)),
            Value::Double(v) => Some(*v),
            Value::Bytes(b) => Some(numeric_prefix(b)),
            _ => None,
        }
    }

    /// A total order for merge-sorting rows from several shards: NULL first, numbers
    /// numerically (integers exactly, mixed with floats as doubles), numbers against
    /// strings as doubles (MySQL's rule), strings byte-wise (binary collation), temporal
    /// values chronologically. Values of unrelated kinds order by kind.
    pub fn compare(&self, other: &Value) -> Ordering {
        use Value::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Null, _) => Ordering::Less,
            (_, Null) => Ordering::Greater,
            (Int(a), Int(b)) => a.cmp(b),
            (UInt(a), UInt(b)) => a.cmp(b),
            (Int(a), UInt(b)) => i128::from(*a).cmp(&i128::from(*b)),
            (UInt(a), Int(b)) => i128::from(*a).cmp(&i128::from(*b)),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Time { .. }, Time { .. }) => time_micros(self).cmp(&time_micros(other)),
            (Date { .. } | DateTime { .. }, Date { .. } | DateTime { .. }) => {
                datetime_key(self).cmp(&datetime_key(other))
            }
            _ => match (self.as_f64(), other.as_f64()) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                _ => kind_rank(self).cmp(&kind_rank(other)),
            },
        }
    }

    /// Like [`Value::compare`], but DECIMAL columns (which arrive as bytes) compare as
    /// exact decimal numbers.
    pub fn compare_as(&self, other: &Value, col: &ColumnDefinition) -> Ordering {
        if let (Value::Bytes(a), Value::Bytes(b)) = (self, other) {
            if matches!(
                col.column_type,
                column_type::DECIMAL | column_type::NEWDECIMAL
            ) {
                if let Some(o) = compare_decimal_text(a, b) {
                    return o;
                }
            }
        }
        self.compare(other)
    }
}

fn kind_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Double(_) => 1,
        Value::Date { .. } | Value::DateTime { .. } => 2,
        Value::Time { .. } => 3,
        Value::Bytes(_) => 4,
    }
}

fn datetime_key(v: &Value) -> (u16, u8, u8, u8, u8, u8, u32) {
    match *v {
        Value::Date { year, month, day } => (year, month, day, 0, 0, 0, 0),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => (year, month, day, hour, minute, second, micros),
        _ => (0, 0, 0, 0, 0, 0, 0),
    }
}

fn time_micros(v: &Value) -> i128 {
    match *v {
        Value::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            let secs = ((i128::from(days) * 24 + i128::from(hours)) * 60 + i128::from(minutes))
                * 60
                + i128::from(seconds);
            let t = secs * 1_000_000 + i128::from(micros);
            if negative {
                -t
            } else {
                t
            }
        }
        _ => 0,
    }
}

/// Compares two decimal numbers written as text (`-12.50`, `3`, `+0.001`) exactly.
/// Returns `None` when either is not a plain decimal number.
pub fn compare_decimal_text(a: &[u8], b: &[u8]) -> Option<Ordering> {
    let a = DecimalText::parse(a)?;
    let b = DecimalText::parse(b)?;
    let a_zero = a.is_zero();
    let b_zero = b.is_zero();
    let a_neg = a.negative && !a_zero;
    let b_neg = b.negative && !b_zero;
    Some(match (a_neg, b_neg) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.magnitude_cmp(&b),
        (true, true) => b.magnitude_cmp(&a),
    })
}

struct DecimalText<'a> {
    negative: bool,
    /// Integer digits without leading zeros.
    int: &'a [u8],
    /// Fraction digits without trailing zeros.
    frac: &'a [u8],
}

impl<'a> DecimalText<'a> {
    fn parse(s: &'a [u8]) -> Option<Self> {
        let (negative, s) = match s.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, s),
        };
        let (int, frac) = match s.iter().position(|c| *c == b'.') {
            Some(dot) => (s.get(..dot)?, s.get(dot + 1..)?),
            None => (s, &[][..]),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.iter().chain(frac).all(u8::is_ascii_digit) {
            return None;
        }
        let lead = int.iter().take_while(|c| **c == b'0').count();
        let trail = frac.iter().rev().take_while(|c| **c == b'0').count();
        Some(Self {
            negative,
            int: int.get(lead..)?,
            frac: frac.get(..frac.len() - trail)?,
        })
    }

    fn is_zero(&self) -> bool {
        self.int.is_empty() && self.frac.is_empty()
    }

    fn magnitude_cmp(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

/// MySQL's string-to-number conversion: the longest prefix that parses as a number
/// (after leading spaces), else 0.
fn numeric_prefix(b: &[u8]) -> f64 {
    let start = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let s = b.get(start..).unwrap_or(&[]);
    let mut end = 0;
    let mut seen_digit = false;
    let mut seen_dot = false;
    let mut seen_exp = false;
    while let Some(&c) = s.get(end) {
        match c {
            b'0'..=b'9' => seen_digit = true,
            b'+' | b'-' if end == 0 => {}
            b'+' | b'-' if seen_exp && matches!(s.get(end - 1), Some(b'e' | b'E')) => {}
            b'.' if !seen_dot && !seen_exp => seen_dot = true,
            b'e' | b'E' if seen_digit && !seen_exp => seen_exp = true,
            _ => break,
        }
        end += 1;
    }
    // Back off over a dangling exponent or sign ("1e", "1e-").
    while end > 0 {
        let text = s.get(..end).and_then(|t| std::str::from_utf8(t).ok());
        if let Some(v) = text.and_then(|t| t.parse::<f64>().ok()) {
            return v;
        }
        end -= 1;
    }
    0.0
}

fn zero_fill(out: &mut Vec<u8>, start: usize, col: &ColumnDefinition) {
    if !col.is_zerofill() || out.get(start) == Some(&b'-') {
        return;
    }
    let written = out.len() - start;
    let width = usize::try_from(col.column_length).unwrap_or(0).min(255);
    if written < width {
        let pad = width - written;
        out.splice(start..start, std::iter::repeat_n(b'0', pad));
    }
}

fn write_fraction(out: &mut Vec<u8>, micros: u32, decimals: u8) {
    use std::io::Write;
    if decimals == 0 || decimals > 6 {
        return;
    }
    let mut digits = [0u8; 6];
    let mut v = micros % 1_000_000;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.push(b'.');
    let _ = out.write_all(digits.get(..usize::from(decimals)).unwrap_or(&digits));
}

fn write_float(out: &mut Vec<u8>, wide: f64, narrow: f32, col: &ColumnDefinition) {
    use std::io::Write;
    if col.has_fixed_decimals() {
        let _ = write!(out, "{:.*}", usize::from(col.decimals), wide);
        return;
    }
    // MySQL prints FLOAT with 6 significant digits (`FLT_DIG`), trailing zeros dropped.
    let exp_form = format!("{wide:.5e}");
    write_shortest(out, &exp_form, narrow.is_finite());
}

fn write_double(out: &mut Vec<u8>, v: f64, col: &ColumnDefinition) {
    use std::io::Write;
    if col.has_fixed_decimals() {
        let _ = write!(out, "{:.*}", usize::from(col.decimals), v);
        return;
    }
    let exp_form = format!("{v:e}");
    write_shortest(out, &exp_form, v.is_finite());
}

/// Writes a number given in Rust's `{:e}` form the way MariaDB's `my_gcvt` prints it
/// (checked against MariaDB 10.11): positional for decimal exponents in -15..=14,
/// otherwise `1e-16` / `1.2345678901234568e17`; trailing fraction zeros dropped.
fn write_shortest(out: &mut Vec<u8>, exp_form: &str, finite: bool) {
    if !finite {
        out.extend_from_slice(exp_form.as_bytes());
        return;
    }
    let (mantissa, exp) = exp_form.split_once('e').unwrap_or((exp_form, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    if !(-15..15).contains(&exp) {
        if negative {
            out.push(b'-');
        }
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.extend_from_slice(first);
        if !rest.is_empty() {
            out.push(b'.');
            out.extend_from_slice(rest);
        }
        out.extend_from_slice(format!("e{exp}").as_bytes());
        return;
    }
    if negative {
        out.push(b'-');
    }
    // Value = 0.d1d2d3... * 10^(exp + 1)
    let point = exp + 1;
    if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
        out.extend_from_slice(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.extend_from_slice(&digits);
            out.extend(std::iter::repeat_n(b'0', point - digits.len()));
        } else {
            let (int, frac) = digits.split_at(point);
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        }
    }
}

fn parse_digits(s: &[u8], what: &'static str) -> DecodeResult<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::Invalid(what));
    }
    Ok(s.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn parse_date(s: &[u8]) -> DecodeResult<(u16, u8, u8)> {
    const WHAT: &str = "malformed date";
    if s.len() != 10 || s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') {
        return Err(DecodeError::Invalid(WHAT));
    }
    let part = |a: usize, b: usize| parse_digits(s.get(a..b).unwrap_or(&[]), WHAT);
    Ok((part(0, 4)? as u16, part(5, 7)? as u8, part(8, 10)? as u8))
}

/// `H+:MM:SS[.f{1,6}]`: returns total hours, minutes, seconds and microseconds.
fn parse_time_of_day(s: &[u8]) -> DecodeResult<(u64, u8, u8, u32)> {
    const WHAT: &str = "malformed time";
    let (main, frac) = match s.iter().position(|c| *c == b'.') {
        Some(dot) => (
            s.get(..dot).unwrap_or(&[]),
            Some(s.get(dot + 1..).unwrap_or(&[])),
        ),
        None => (s, None),
    };
    let mut parts = main.split(|c| *c == b':');
    let (Some(h), Some(m), Some(sec), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DecodeError::Invalid(WHAT));
    };
    let hours = u64::from(parse_digits(h, WHAT)?);
    if m.len() != 2 || sec.len() != 2 {
        return Err(DecodeError::Invalid(WHAT));
    }
    let minutes = parse_digits(m, WHAT)?;
    let seconds = parse_digits(sec, WHAT)?;
    if minutes > 59 || seconds > 59 {
        return Err(DecodeError::Invalid(WHAT));
    }
    let micros = match frac {
        None => 0,
        Some(f) if f.is_empty() || f.len() > 6 => return Err(DecodeError::Invalid(WHAT)),
        Some(f) => parse_digits(f, WHAT)? * 10u32.pow(6 - f.len() as u32),
    };
    Ok((hours, minutes as u8, seconds as u8, micros))
}

/// An integer read from the binary protocol: the raw bits as unsigned, or sign-extended.
fn integer(unsigned: bool, raw: u64, signed: i64) -> Value {
    if unsigned {
        Value::UInt(raw)
    } else {
        Value::Int(signed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::constants::column_flags;

    /// A tiny deterministic generator (xorshift64*) for property-style tests.
    #[derive(Debug)]
    pub(crate) struct Gen(u64);

    impl Gen {
        pub(crate) fn new(seed: u64) -> Self {
            Self(seed.max(1))
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n.max(1)
        }

        pub(crate) fn bytes(&mut self, max_len: u64) -> Vec<u8> {
            let len = self.below(max_len + 1);
            (0..len).map(|_| self.next_u64() as u8).collect()
        }

        /// An interesting integer: edges of every width, or anything.
        pub(crate) fn int(&mut self) -> i64 {
            const EDGES: [i64; 12] = [
                0,
                1,
                -1,
                127,
                -128,
                32767,
                -32768,
                8_388_607,
                i32::MAX as i64,
                i32::MIN as i64,
                i64::MAX,
                i64::MIN,
            ];
            match self.below(3) {
                0 => EDGES[self.below(EDGES.len() as u64) as usize],
                1 => self.below(1000) as i64 - 500,
                _ => self.next_u64() as i64,
            }
        }

        /// A column type and a value of it that survives binary and text round trips.
        pub(crate) fn typed_value(&mut self) -> (ColumnDefinition, Value) {
            let types = [
                column_type::TINY,
                column_type::SHORT,
                column_type::INT24,
                column_type::LONG,
                column_type::LONGLONG,
                column_type::YEAR,
                column_type::FLOAT,
                column_type::DOUBLE,
                column_type::NEWDECIMAL,
                column_type::VAR_STRING,
                column_type::BLOB,
                column_type::DATE,
                column_type::DATETIME,
                column_type::TIMESTAMP,
                column_type::TIME,
                column_type::JSON,
            ];
            let t = types[self.below(types.len() as u64) as usize];
            let mut col = ColumnDefinition::new("c", t);
            let unsigned = t == column_type::YEAR || self.below(2) == 0;
            if unsigned {
                col.flags |= column_flags::UNSIGNED;
            } else {
                col.flags &= !column_flags::UNSIGNED;
            }
            if self.below(8) == 0 {
                return (col, Value::Null);
            }
            let bits = match t {
                column_type::TINY => 8,
                column_type::SHORT | column_type::YEAR => 16,
                column_type::INT24 | column_type::LONG => 32,
                _ => 64,
            };
            let v = match t {
                column_type::TINY
                | column_type::SHORT
                | column_type::INT24
                | column_type::LONG
                | column_type::LONGLONG
                | column_type::YEAR => {
                    let raw = self.int() as u64;
                    if unsigned {
                        let mask = if bits == 64 {
                            u64::MAX
                        } else {
                            (1 << bits) - 1
                        };
                        Value::UInt(raw & mask)
                    } else {
                        let shift = 64 - bits;
                        Value::Int(((raw << shift) as i64) >> shift)
                    }
                }
                column_type::FLOAT => {
                    // At most 6 significant digits: what the text protocol keeps.
                    let m = self.below(1_999_999) as f64 - 999_999.0;
                    let scale = 10f64.powi(self.below(21) as i32 - 10);
                    Value::Float((m * scale) as f32)
                }
                column_type::DOUBLE => {
                    let d = f64::from_bits(self.next_u64());
                    Value::Double(if d.is_finite() { d } else { 1.5 })
                }
                column_type::NEWDECIMAL => Value::Bytes(
                    format!("{}.{:02}", self.int() / 100, self.below(100)).into_bytes(),
                ),
                column_type::DATE => Value::Date {
                    year: self.below(10000) as u16,
                    month: self.below(13) as u8,
                    day: self.below(32) as u8,
                },
                column_type::DATETIME | column_type::TIMESTAMP => Value::DateTime {
                    year: self.below(10000) as u16,
                    month: self.below(13) as u8,
                    day: self.below(32) as u8,
                    hour: self.below(24) as u8,
                    minute: self.below(60) as u8,
                    second: self.below(60) as u8,
                    micros: if self.below(2) == 0 {
                        0
                    } else {
                        self.below(1_000_000) as u32
                    },
                },
                column_type::TIME => {
                    let negative = self.below(2) == 0;
                    let days = self.below(35) as u32;
                    let hours = self.below(24) as u8;
                    let minutes = self.below(60) as u8;
                    let seconds = self.below(60) as u8;
                    let micros = if self.below(2) == 0 {
                        0
                    } else {
                        self.below(1_000_000) as u32
                    };
                    let zero =
                        days == 0 && hours == 0 && minutes == 0 && seconds == 0 && micros == 0;
                    Value::Time {
                        negative: negative && !zero,
                        days,
                        hours,
                        minutes,
                        seconds,
                        micros,
                    }
                }
                _ => {
                    let max = if self.below(10) == 0 { 300 } else { 12 };
                    Value::Bytes(self.bytes(max))
                }
            };
            (col, v)
        }
    }

    fn col(t: u8) -> ColumnDefinition {
        ColumnDefinition::new("c", t)
    }

    fn text(v: &Value, c: &ColumnDefinition) -> String {
        String::from_utf8(v.to_text(c)).unwrap()
    }

    #[test]
    fn integers_render_like_mysql_including_zerofill() {
        assert_eq!(text(&Value::Int(-42), &col(column_type::LONG)), "-42");
        assert_eq!(
            text(&Value::UInt(u64::MAX), &col(column_type::LONGLONG)),
            "18446744073709551615"
        );
        assert_eq!(text(&Value::UInt(7), &col(column_type::YEAR)), "0007");
        let mut zf = col(column_type::LONG);
        zf.flags |= column_flags::ZEROFILL;
        zf.column_length = 10;
        assert_eq!(text(&Value::UInt(42), &zf), "0000000042");
    }

    #[test]
    fn floats_render_shortest_or_with_fixed_decimals() {
        let d = col(column_type::DOUBLE);
        assert_eq!(text(&Value::Double(1.5), &d), "1.5");
        assert_eq!(text(&Value::Double(100.0), &d), "100");
        assert_eq!(text(&Value::Double(0.1), &d), "0.1");
        assert_eq!(text(&Value::Double(-0.0001), &d), "-0.0001");
        // Expected strings are what MariaDB 10.11 prints for the same values.
        assert_eq!(text(&Value::Double(1e20), &d), "1e20");
        assert_eq!(text(&Value::Double(1e15), &d), "1e15");
        assert_eq!(text(&Value::Double(1e14), &d), "100000000000000");
        assert_eq!(text(&Value::Double(1.5e-7), &d), "0.00000015");
        assert_eq!(text(&Value::Double(1e-15), &d), "0.000000000000001");
        assert_eq!(text(&Value::Double(1e-16), &d), "1e-16");
        assert_eq!(text(&Value::Double(1.5e-300), &d), "1.5e-300");
        assert_eq!(text(&Value::Double(-1e16), &d), "-1e16");
        assert_eq!(
            text(&Value::Double(123456789012345678.0), &d),
            "1.2345678901234568e17"
        );
        assert_eq!(text(&Value::Double(3.0 * 1.1), &d), "3.3000000000000003");
        assert_eq!(
            text(&Value::Double(123456789012345.0), &d),
            "123456789012345"
        );
        let f = col(column_type::FLOAT);
        assert_eq!(text(&Value::Float(0.1), &f), "0.1");
        assert_eq!(text(&Value::Float(3.25), &f), "3.25");
        assert_eq!(text(&Value::Float(1234567.0), &f), "1234570");
        assert_eq!(text(&Value::Float(123456.7), &f), "123457");
        assert_eq!(text(&Value::Float(0.000_123_456_7), &f), "0.000123457");
        assert_eq!(text(&Value::Float(1e20), &f), "1e20");
        assert_eq!(text(&Value::Float(1.175494e-38), &f), "1.17549e-38");
        assert_eq!(text(&Value::Float(-1234567.0), &f), "-1234570");
        assert_eq!(text(&Value::Float(0.99999999), &f), "1");
        let mut fixed = col(column_type::DOUBLE);
        fixed.decimals = 2;
        assert_eq!(text(&Value::Double(1.5), &fixed), "1.50");
    }

    #[test]
    fn temporal_values_render_with_column_precision() {
        let mut dt = col(column_type::DATETIME);
        let v = Value::DateTime {
            year: 2024,
            month: 2,
            day: 29,
            hour: 13,
            minute: 5,
            second: 9,
            micros: 120_000,
        };
        assert_eq!(text(&v, &dt), "2024-02-29 13:05:09.120000");
        dt.decimals = 3;
        assert_eq!(text(&v, &dt), "2024-02-29 13:05:09.120");
        dt.decimals = 0;
        assert_eq!(text(&v, &dt), "2024-02-29 13:05:09");
        let d = Value::Date {
            year: 0,
            month: 0,
            day: 0,
        };
        assert_eq!(text(&d, &col(column_type::DATE)), "0000-00-00");
        let mut t = col(column_type::TIME);
        t.decimals = 0;
        let neg = Value::Time {
            negative: true,
            days: 34,
            hours: 22,
            minutes: 59,
            seconds: 59,
            micros: 0,
        };
        assert_eq!(text(&neg, &t), "-838:59:59");
    }

    #[test]
    fn text_round_trips_over_generated_values() {
        let mut g = Gen::new(7);
        for _ in 0..5000 {
            let (c, v) = g.typed_value();
            let cell = if v.is_null() {
                None
            } else {
                Some(v.to_text(&c))
            };
            let back = Value::from_text(cell.as_deref(), &c).unwrap();
            match (&v, &back) {
                (Value::Date { .. } | Value::DateTime { .. }, _)
                    if c.column_type == column_type::DATE =>
                {
                    assert_eq!(back, v)
                }
                _ => assert_eq!(back, v, "column type {:#x}", c.column_type),
            }
        }
    }

    #[test]
    fn binary_round_trips_over_generated_values() {
        let mut g = Gen::new(11);
        for _ in 0..5000 {
            let (c, v) = g.typed_value();
            if v.is_null() {
                continue;
            }
            let mut out = Vec::new();
            v.write_binary(&mut out, c.column_type, c.is_unsigned())
                .unwrap();
            let mut r = Reader::new(&out);
            let back = Value::read_binary(&mut r, c.column_type, c.is_unsigned()).unwrap();
            assert!(r.is_empty());
            assert_eq!(back, v);
            for cut in 0..out.len() {
                let mut r = Reader::new(&out[..cut]);
                assert!(Value::read_binary(&mut r, c.column_type, c.is_unsigned()).is_err());
            }
        }
    }

    #[test]
    fn binary_writes_reject_out_of_range_and_mismatched_values() {
        let mut out = Vec::new();
        assert_eq!(
            Value::Int(128).write_binary(&mut out, column_type::TINY, false),
            Err(EncodeError::OutOfRange {
                column_type: column_type::TINY
            })
        );
        assert!(Value::Int(-1)
            .write_binary(&mut out, column_type::LONG, true)
            .is_err());
        assert!(Value::UInt(255)
            .write_binary(&mut out, column_type::TINY, true)
            .is_ok());
        assert!(matches!(
            Value::Bytes(b"x".to_vec()).write_binary(&mut out, column_type::LONG, false),
            Err(EncodeError::TypeMismatch { .. })
        ));
    }

    #[test]
    fn bad_temporal_lengths_are_errors() {
        for (t, bad) in [(column_type::DATETIME, 5u8), (column_type::TIME, 7u8)] {
            let mut bytes = vec![bad];
            bytes.extend_from_slice(&[0; 12]);
            assert!(Value::read_binary(&mut Reader::new(&bytes), t, false).is_err());
        }
    }

    #[test]
    fn comparisons_order_numbers_strings_and_dates() {
        use Ordering::*;
        assert_eq!(Value::Int(-1).compare(&Value::UInt(u64::MAX)), Less);
        assert_eq!(Value::Int(2).compare(&Value::Double(1.5)), Greater);
        assert_eq!(Value::Null.compare(&Value::Int(i64::MIN)), Less);
        assert_eq!(
            Value::Bytes(b"10".to_vec()).compare(&Value::Int(9)),
            Greater
        );
        assert_eq!(
            Value::Bytes(b"abc".to_vec()).compare(&Value::Bytes(b"abd".to_vec())),
            Less
        );
        let d = Value::Date {
            year: 2024,
            month: 1,
            day: 1,
        };
        let dt = Value::DateTime {
            year: 2024,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 1,
            micros: 0,
        };
        assert_eq!(d.compare(&dt), Less);
        let t = |negative, seconds| Value::Time {
            negative,
            days: 0,
            hours: 0,
            minutes: 0,
            seconds,
            micros: 0,
        };
        assert_eq!(t(true, 5).compare(&t(false, 1)), Less);
        let dec = col(column_type::NEWDECIMAL);
        let a = Value::Bytes(b"10.5".to_vec());
        let b = Value::Bytes(b"9.25".to_vec());
        assert_eq!(a.compare(&b), Less, "byte-wise");
        assert_eq!(a.compare_as(&b, &dec), Greater, "as decimals");
    }

    #[test]
    fn decimal_text_comparison_is_exact() {
        use Ordering::*;
        let c = |a: &str, b: &str| compare_decimal_text(a.as_bytes(), b.as_bytes());
        assert_eq!(c("-0.00", "0"), Some(Equal));
        assert_eq!(c("-1.5", "-1.25"), Some(Less));
        assert_eq!(c("007.10", "7.1"), Some(Equal));
        assert_eq!(
            c("12345678901234567890.1", "12345678901234567890.09"),
            Some(Greater)
        );
        assert_eq!(c("abc", "1"), None);
        assert_eq!(c(".", "1"), None);
    }

    #[test]
    fn numeric_prefix_follows_mysql_string_to_number() {
        assert_eq!(numeric_prefix(b" 12abc"), 12.0);
        assert_eq!(numeric_prefix(b"1e3x"), 1000.0);
        assert_eq!(numeric_prefix(b"1e"), 1.0);
        assert_eq!(numeric_prefix(b"-"), 0.0);
        assert_eq!(numeric_prefix(b"abc"), 0.0);
    }

    #[test]
    fn malformed_text_cells_are_errors() {
        assert!(Value::from_text(Some(b"12x"), &col(column_type::LONG)).is_err());
        assert!(Value::from_text(Some(b"2024-1-01"), &col(column_type::DATE)).is_err());
        assert!(Value::from_text(Some(b"12:60:00"), &col(column_type::TIME)).is_err());
        assert!(
            Value::from_text(Some(b"2024-01-01 25:00:00"), &col(column_type::DATETIME)).is_err()
        );
        assert!(Value::from_text(Some(b"\xff"), &col(column_type::DOUBLE)).is_err());
    }
}
