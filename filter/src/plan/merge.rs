//! Merging the results of a scatter query: combining partial aggregates by group, HAVING,
//! ORDER BY, OFFSET/LIMIT and DISTINCT, over rows in the text protocol's cell form.
//!
//! A shard query returns the client's columns followed by `hidden` helper columns (the
//! COUNT behind an AVG, ORDER BY and GROUP BY expressions the select list lacks, and
//! `WEIGHT_STRING()` of text keys so that ordering and grouping follow the column's
//! collation exactly as one MySQL would). [`Merger`] folds rows in as they arrive and
//! produces the client's rows at the end; it holds at most `max_rows` rows.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use super::decimal::Decimal;
use crate::protocol::column::ColumnDefinition;
use crate::protocol::constants::column_type;
use crate::protocol::value::{compare_decimal_text, Value as ProtoValue};

/// One row of text cells (`None` is SQL NULL).
pub type Row = Vec<Option<Vec<u8>>>;

/// A column of the shard result: one the client sees, or a helper at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Visible(usize),
    Hidden(usize),
}

/// How a column's partial values from several shards combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    Count,
    Sum,
    Min,
    Max,
}

/// A column that holds a partial aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate {
    pub col: Col,
    pub kind: AggKind,
    /// `WEIGHT_STRING()` of the value, for MIN/MAX of text.
    pub weight: Option<Col>,
}

/// A grouping or ordering key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub col: Col,
    /// `WEIGHT_STRING()` of the key, used when the column is text.
    pub weight: Option<Col>,
    pub descending: bool,
}

/// An AVG the client asked for: the shard sends SUM in `sum` and COUNT in `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Average {
    pub sum: Col,
    pub count: Col,
}

/// A comparison operator of a HAVING filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// One side of a HAVING comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Col(Col),
    /// A literal in text form; `numeric` when it was a number.
    Literal {
        text: Vec<u8>,
        numeric: bool,
    },
    Null,
}

/// A HAVING clause evaluated over merged groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Cmp(CmpOp, Operand, Operand),
    IsNull(Operand, bool),
}

/// What the sidecar does with the rows of a scatter query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeSpec {
    /// Helper columns at the end of each shard row, dropped before the client sees it.
    pub hidden: usize,
    /// Rows are partial aggregates, combined per group (one group without GROUP BY).
    pub aggregated: bool,
    pub group_by: Vec<Key>,
    pub aggregates: Vec<Aggregate>,
    pub averages: Vec<Average>,
    pub having: Option<Filter>,
    pub order_by: Vec<Key>,
    pub offset: u64,
    pub limit: Option<u64>,
    /// Rows with equal visible values (by collation) are returned once.
    pub distinct: Vec<Key>,
}

impl MergeSpec {
    /// True when rows can be concatenated as they arrive.
    pub fn is_concatenation(&self) -> bool {
        !self.aggregated
            && self.order_by.is_empty()
            && self.limit.is_none()
            && self.offset == 0
            && self.distinct.is_empty()
            && self.hidden == 0
    }
}

/// Why a merge failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("in-memory row count exceeded allowed limit of {0} rows while merging results from several shards")]
    TooManyRows(usize),
    #[error("shards returned different column counts ({0} and {1})")]
    ColumnMismatch(usize, usize),
    #[error("shard result has {0} columns, fewer than the {1} helper columns planned")]
    MissingHidden(usize, usize),
    #[error("numeric overflow while merging {0}")]
    Overflow(&'static str),
}

/// Folds shard rows into the client's result.
#[derive(Debug)]
pub struct Merger {
    spec: MergeSpec,
    max_rows: usize,
    columns: Option<Arc<[ColumnDefinition]>>,
    rows: Vec<Row>,
    groups: HashMap<Vec<u8>, usize>,
}

impl Merger {
    pub fn new(spec: MergeSpec, max_rows: usize) -> Self {
        Merger {
            spec,
            max_rows,
            columns: None,
            rows: Vec::new(),
            groups: HashMap::new(),
        }
    }

    /// The column definitions of one shard's result; every shard must agree on the count.
    pub fn columns(&mut self, columns: Arc<[ColumnDefinition]>) -> Result<(), MergeError> {
        if columns.len() < self.spec.hidden {
            return Err(MergeError::MissingHidden(columns.len(), self.spec.hidden));
        }
        match &self.columns {
            Some(c) if c.len() != columns.len() => {
                Err(MergeError::ColumnMismatch(c.len(), columns.len()))
            }
            Some(_) => Ok(()),
            None => {
                self.columns = Some(columns);
                Ok(())
            }
        }
    }

    fn index(&self, col: Col) -> usize {
        let total = self.columns.as_ref().map_or(0, |c| c.len());
        match col {
            Col::Visible(i) => i,
            Col::Hidden(h) => total - self.spec.hidden + h,
        }
    }

    fn def(&self, col: Col) -> Option<&ColumnDefinition> {
        let i = self.index(col);
        self.columns.as_ref().and_then(|c| c.get(i))
    }

    /// Adds one shard row.
    pub fn push(&mut self, row: Row) -> Result<(), MergeError> {
        if !self.spec.aggregated {
            if self.rows.len() >= self.max_rows {
                return Err(MergeError::TooManyRows(self.max_rows));
            }
            self.rows.push(row);
            return Ok(());
        }
        let key = self.group_key(&row, &self.spec.group_by);
        match self.groups.get(&key) {
            Some(&i) => {
                let mut merged = std::mem::take(&mut self.rows[i]);
                self.fold(&mut merged, &row)?;
                self.rows[i] = merged;
            }
            None => {
                if self.rows.len() >= self.max_rows {
                    return Err(MergeError::TooManyRows(self.max_rows));
                }
                self.groups.insert(key, self.rows.len());
                self.rows.push(row);
            }
        }
        Ok(())
    }

    /// The encoded identity of a row's keys: weight strings for text, the value otherwise.
    fn group_key(&self, row: &Row, keys: &[Key]) -> Vec<u8> {
        let mut out = Vec::new();
        for k in keys {
            let cell = self.key_bytes(row, k);
            match cell {
                None => out.push(0),
                Some(b) => {
                    out.push(1);
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(&b);
                }
            }
        }
        out
    }

    fn key_bytes(&self, row: &Row, k: &Key) -> Option<Vec<u8>> {
        let cell = row.get(self.index(k.col)).cloned().flatten();
        let def = self.def(k.col);
        if let (Some(w), Some(d)) = (k.weight, def) {
            if is_text(d) {
                return row.get(self.index(w)).cloned().flatten().or(cell);
            }
        }
        match (cell, def) {
            (Some(c), Some(d)) if is_numeric(d) => Some(canonical_number(&c)),
            (c, _) => c,
        }
    }

    fn fold(&self, into: &mut Row, row: &Row) -> Result<(), MergeError> {
        for agg in &self.spec.aggregates {
            let i = self.index(agg.col);
            let (Some(a), Some(b)) = (into.get(i).cloned(), row.get(i).cloned()) else {
                continue;
            };
            let def = self.def(agg.col);
            match agg.kind {
                AggKind::Count | AggKind::Sum => {
                    let sum = match (a, b) {
                        (None, x) | (x, None) => x,
                        (Some(x), Some(y)) => Some(add(&x, &y, def)?),
                    };
                    into[i] = sum;
                }
                AggKind::Min | AggKind::Max => {
                    let key = Key {
                        col: agg.col,
                        weight: agg.weight,
                        descending: false,
                    };
                    let ord = self.compare_key(into, row, &key);
                    let take = match (a.is_none(), b.is_none()) {
                        (_, true) => false,
                        (true, false) => true,
                        _ => {
                            if agg.kind == AggKind::Min {
                                ord == Ordering::Greater
                            } else {
                                ord == Ordering::Less
                            }
                        }
                    };
                    if take {
                        into[i] = b;
                        if let Some(w) = agg.weight {
                            let wi = self.index(w);
                            if let Some(v) = row.get(wi).cloned() {
                                into[wi] = v;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Orders two rows by one key (NULL first, text by weight string, numbers by value).
    fn compare_key(&self, a: &Row, b: &Row, k: &Key) -> Ordering {
        let i = self.index(k.col);
        let (ca, cb) = (
            a.get(i).and_then(|c| c.as_deref()),
            b.get(i).and_then(|c| c.as_deref()),
        );
        let ord = match (ca, cb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => match self.def(k.col) {
                Some(d) if is_text(d) => match k.weight {
                    Some(w) => {
                        let wi = self.index(w);
                        let wa = a.get(wi).and_then(|c| c.as_deref()).unwrap_or(x);
                        let wb = b.get(wi).and_then(|c| c.as_deref()).unwrap_or(y);
                        wa.cmp(wb)
                    }
                    None => x.cmp(y),
                },
                Some(d) => compare_typed(x, y, d),
                None => x.cmp(y),
            },
        };
        if k.descending {
            ord.reverse()
        } else {
            ord
        }
    }

    /// The client's column definitions and rows.
    pub fn finish(mut self) -> Result<(Vec<ColumnDefinition>, Vec<Row>), MergeError> {
        let Some(columns) = self.columns.clone() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let visible = columns.len() - self.spec.hidden;
        let mut defs: Vec<ColumnDefinition> = columns[..visible].to_vec();
        let mut rows = std::mem::take(&mut self.rows);
        // AVG = SUM / COUNT at the SUM's scale plus 4 (div_precision_increment).
        for avg in self.spec.averages.clone() {
            let (si, ci) = (self.index(avg.sum), self.index(avg.count));
            let sum_def = columns.get(si).cloned();
            let float = sum_def.as_ref().is_some_and(is_float);
            let scale = u32::from(sum_def.as_ref().map_or(0, |d| d.decimals)) + 4;
            for row in &mut rows {
                let count = row
                    .get(ci)
                    .and_then(|c| c.as_deref())
                    .and_then(|c| std::str::from_utf8(c).ok()?.parse::<i128>().ok())
                    .unwrap_or(0);
                let sum = row.get(si).cloned().flatten();
                row[si] = match sum {
                    Some(s) if count > 0 => Some(if float {
                        let v = parse_f64(&s) / count as f64;
                        format_double(v).into_bytes()
                    } else {
                        Decimal::parse(&s)
                            .and_then(|d| d.div_count(count, scale))
                            .ok_or(MergeError::Overflow("AVG"))?
                            .to_text()
                            .into_bytes()
                    }),
                    _ => None,
                };
            }
            if let Some(def) = defs.get_mut(si) {
                if !float {
                    def.decimals = u8::try_from(scale.min(38)).unwrap_or(38);
                    def.column_length = def.column_length.saturating_add(4);
                }
            }
        }
        if let Some(filter) = self.spec.having.clone() {
            rows.retain(|r| self.eval(&filter, r) == Some(true));
        }
        if !self.spec.distinct.is_empty() {
            let keys = self.spec.distinct.clone();
            let mut seen = std::collections::HashSet::new();
            rows.retain(|r| seen.insert(self.group_key(r, &keys)));
        }
        if !self.spec.order_by.is_empty() {
            let keys = self.spec.order_by.clone();
            rows.sort_by(|a, b| {
                keys.iter()
                    .map(|k| self.compare_key(a, b, k))
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
            });
        }
        let offset = usize::try_from(self.spec.offset).unwrap_or(usize::MAX);
        let mut rows: Vec<Row> = rows.into_iter().skip(offset).collect();
        if let Some(limit) = self.spec.limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        for row in &mut rows {
            row.truncate(visible);
        }
        defs.truncate(visible);
        Ok((defs, rows))
    }

    fn operand(&self, o: &Operand, row: &Row) -> Option<(Vec<u8>, bool)> {
        match o {
            Operand::Col(c) => {
                let cell = row.get(self.index(*c)).cloned().flatten()?;
                let numeric = self.def(*c).is_some_and(is_numeric);
                Some((cell, numeric))
            }
            Operand::Literal { text, numeric } => Some((text.clone(), *numeric)),
            Operand::Null => None,
        }
    }

    /// SQL three-valued logic: `None` is UNKNOWN.
    fn eval(&self, f: &Filter, row: &Row) -> Option<bool> {
        match f {
            Filter::And(a, b) => match (self.eval(a, row), self.eval(b, row)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Filter::Or(a, b) => match (self.eval(a, row), self.eval(b, row)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Filter::Not(a) => self.eval(a, row).map(|v| !v),
            Filter::IsNull(o, negated) => Some(self.operand(o, row).is_none() != *negated),
            Filter::Cmp(op, l, r) => {
                let (a, an) = self.operand(l, row)?;
                let (b, bn) = self.operand(r, row)?;
                let ord = if an || bn {
                    compare_decimal_text(&a, &b)
                        .unwrap_or_else(|| parse_f64(&a).total_cmp(&parse_f64(&b)))
                } else {
                    a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase())
                };
                Some(match op {
                    CmpOp::Eq => ord == Ordering::Equal,
                    CmpOp::NotEq => ord != Ordering::Equal,
                    CmpOp::Lt => ord == Ordering::Less,
                    CmpOp::LtEq => ord != Ordering::Greater,
                    CmpOp::Gt => ord == Ordering::Greater,
                    CmpOp::GtEq => ord != Ordering::Less,
                })
            }
        }
    }
}

fn is_text(d: &ColumnDefinition) -> bool {
    matches!(
        d.column_type,
        column_type::VARCHAR
            | column_type::VAR_STRING
            | column_type::STRING
            | column_type::TINY_BLOB
            | column_type::MEDIUM_BLOB
            | column_type::LONG_BLOB
            | column_type::BLOB
            | column_type::ENUM
            | column_type::SET
            | column_type::JSON
    ) && !d.is_binary_collation()
}

fn is_float(d: &ColumnDefinition) -> bool {
    matches!(d.column_type, column_type::FLOAT | column_type::DOUBLE)
}

fn is_numeric(d: &ColumnDefinition) -> bool {
    matches!(
        d.column_type,
        column_type::TINY
            | column_type::SHORT
            | column_type::LONG
            | column_type::INT24
            | column_type::LONGLONG
            | column_type::DECIMAL
            | column_type::NEWDECIMAL
            | column_type::FLOAT
            | column_type::DOUBLE
            | column_type::YEAR
    )
}

fn compare_typed(a: &[u8], b: &[u8], def: &ColumnDefinition) -> Ordering {
    if is_numeric(def) && !is_float(def) {
        if let Some(o) = compare_decimal_text(a, b) {
            return o;
        }
    }
    match (
        ProtoValue::from_text(Some(a), def),
        ProtoValue::from_text(Some(b), def),
    ) {
        (Ok(x), Ok(y)) => x.compare_as(&y, def),
        _ => a.cmp(b),
    }
}

/// A number's text with leading `+`, zeros and trailing fractional zeros removed, so that
/// equal values group together.
fn canonical_number(text: &[u8]) -> Vec<u8> {
    match Decimal::parse(text) {
        Some(d) => {
            let mut d = d;
            while d.scale > 0 && d.mantissa % 10 == 0 {
                d.mantissa /= 10;
                d.scale -= 1;
            }
            d.to_text().into_bytes()
        }
        None => text.to_vec(),
    }
}

fn parse_f64(text: &[u8]) -> f64 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// A DOUBLE as MySQL prints it: the shortest text that reads back as the same value.
fn format_double(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Adds two partial COUNT/SUM cells of the column `def`.
fn add(a: &[u8], b: &[u8], def: Option<&ColumnDefinition>) -> Result<Vec<u8>, MergeError> {
    if def.is_some_and(is_float) {
        return Ok(format_double(parse_f64(a) + parse_f64(b)).into_bytes());
    }
    let (x, y) = (
        Decimal::parse(a).ok_or(MergeError::Overflow("SUM"))?,
        Decimal::parse(b).ok_or(MergeError::Overflow("SUM"))?,
    );
    Ok(x.checked_add(y)
        .ok_or(MergeError::Overflow("SUM"))?
        .to_text()
        .into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, t: u8) -> ColumnDefinition {
        let mut c = ColumnDefinition::new(name, t);
        c.decimals = 0;
        c
    }

    fn row(cells: &[Option<&str>]) -> Row {
        cells
            .iter()
            .map(|c| c.map(|s| s.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn group_by_with_count_sum_avg_and_order() {
        // SELECT city, COUNT(*), SUM(x), AVG(x) ... GROUP BY city ORDER BY city
        // shard columns: city, count, sum, sum(avg), [hidden: count(avg), weight(city)]
        let spec = MergeSpec {
            hidden: 2,
            aggregated: true,
            group_by: vec![Key {
                col: Col::Visible(0),
                weight: Some(Col::Hidden(1)),
                descending: false,
            }],
            aggregates: vec![
                Aggregate {
                    col: Col::Visible(1),
                    kind: AggKind::Count,
                    weight: None,
                },
                Aggregate {
                    col: Col::Visible(2),
                    kind: AggKind::Sum,
                    weight: None,
                },
                Aggregate {
                    col: Col::Visible(3),
                    kind: AggKind::Sum,
                    weight: None,
                },
                Aggregate {
                    col: Col::Hidden(0),
                    kind: AggKind::Count,
                    weight: None,
                },
            ],
            averages: vec![Average {
                sum: Col::Visible(3),
                count: Col::Hidden(0),
            }],
            order_by: vec![Key {
                col: Col::Visible(0),
                weight: Some(Col::Hidden(1)),
                descending: false,
            }],
            ..MergeSpec::default()
        };
        let mut m = Merger::new(spec, 100);
        let defs: Arc<[ColumnDefinition]> = vec![
            col("city", column_type::VAR_STRING),
            col("c", column_type::LONGLONG),
            col("s", column_type::NEWDECIMAL),
            col("a", column_type::NEWDECIMAL),
            col("h", column_type::LONGLONG),
            col("w", column_type::VAR_STRING),
        ]
        .into();
        assert_eq!(m.columns(defs.clone()), Ok(()));
        for r in [
            row(&[
                Some("Paris"),
                Some("2"),
                Some("10"),
                Some("10"),
                Some("2"),
                Some("PARIS"),
            ]),
            row(&[
                Some("paris"),
                Some("1"),
                Some("5"),
                Some("5"),
                Some("1"),
                Some("PARIS"),
            ]),
            row(&[Some("Lyon"), Some("1"), None, None, Some("0"), Some("LYON")]),
        ] {
            assert_eq!(m.push(r), Ok(()));
        }
        let (out_defs, rows) = m.finish().unwrap_or_default();
        assert_eq!(out_defs.len(), 4);
        assert_eq!(
            rows,
            vec![
                row(&[Some("Lyon"), Some("1"), None, None]),
                row(&[Some("Paris"), Some("3"), Some("15"), Some("5.0000")]),
            ]
        );
    }

    #[test]
    fn order_and_limit_over_numbers() {
        let spec = MergeSpec {
            order_by: vec![Key {
                col: Col::Visible(0),
                weight: None,
                descending: true,
            }],
            offset: 1,
            limit: Some(2),
            ..MergeSpec::default()
        };
        let mut m = Merger::new(spec, 100);
        let defs: Arc<[ColumnDefinition]> = vec![col("n", column_type::LONGLONG)].into();
        assert_eq!(m.columns(defs), Ok(()));
        for n in ["9", "10", "2", "33", "1"] {
            assert_eq!(m.push(row(&[Some(n)])), Ok(()));
        }
        let (_, rows) = m.finish().unwrap_or_default();
        assert_eq!(rows, vec![row(&[Some("10")]), row(&[Some("9")])]);
    }

    #[test]
    fn row_cap_is_enforced() {
        let mut m = Merger::new(MergeSpec::default(), 1);
        assert_eq!(m.push(row(&[Some("1")])), Ok(()));
        assert_eq!(m.push(row(&[Some("2")])), Err(MergeError::TooManyRows(1)));
    }
}
