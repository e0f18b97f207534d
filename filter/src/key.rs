//! Keyspace ids, key ranges, shard names and routing destinations, with Vitess's rules
//! (`go/vt/key`, `go/vt/topo/shard.go`) so that a keyspace id lands on the same shard here
//! as it does in Vitess.
//!
//! The comparison rule: trailing `0x00` bytes are not significant, and what remains is
//! compared as unsigned bytes, a prefix sorting first. So `-80`, `00-80` and `0000-8000`
//! name the same shard, and the keyspace id `8000000000000000` equals the boundary `80`.
//! A key range includes its start and excludes its end; an empty start is the minimum and
//! an empty end the maximum.

use std::cmp::Ordering;
use std::fmt;

/// An error about a shard name, a key range or routing a keyspace id to a shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A shard name or key range bound is not valid hex.
    #[error("invalid key range {spec:?}: {reason}")]
    InvalidHex { spec: String, reason: String },
    /// A shard name with more than one '-'.
    #[error("invalid shardId, can only contain one '-': {0}")]
    TooManyDashes(String),
    /// A range whose start is not strictly below its end.
    #[error("out of order keys: {start} is not strictly smaller than {end}")]
    OutOfOrder { start: String, end: String },
    /// A sharding spec (`-40-80-`) that is not a sequence of increasing bounds.
    #[error("malformed spec: {reason}: {spec:?}")]
    MalformedSpec { spec: String, reason: &'static str },
    /// Shard-range generation asked for an impossible split.
    #[error("{0}")]
    BadShardCount(String),
    /// No shard of the keyspace contains the keyspace id (Vitess: INVALID_ARGUMENT).
    #[error("KeyspaceId {0} didn't match any shards")]
    NoMatchingShard(String),
    /// The keyspace has no shards at all (Vitess: UNAVAILABLE).
    #[error("no shard in keyspace")]
    NoShards,
}

/// The bytes a vindex maps a row to. Equality is byte equality; use [`compare`] for the
/// routing order, in which trailing zero bytes do not count.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyspaceId(Vec<u8>);

impl KeyspaceId {
    /// Wraps the bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        KeyspaceId(bytes.into())
    }

    /// Parses lower- or upper-case hex (`"166b40b44aba4bd6"`).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        decode_hex(text, text).map(KeyspaceId)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Lower-case hex, as Vitess prints keyspace ids.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl AsRef<[u8]> for KeyspaceId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for KeyspaceId {
    fn from(bytes: Vec<u8>) -> Self {
        KeyspaceId(bytes)
    }
}

impl fmt::Debug for KeyspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyspaceId({})", self.to_hex())
    }
}

impl fmt::Display for KeyspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// `id` without its trailing `0x00` bytes (Vitess `key.Normalize`).
pub fn normalize(id: &[u8]) -> &[u8] {
    let mut end = id.len();
    while end > 0 && id[end - 1] == 0 {
        end -= 1;
    }
    &id[..end]
}

/// Vitess `key.Compare`: the lexicographic unsigned comparison of the normalized ids.
pub fn compare(a: &[u8], b: &[u8]) -> Ordering {
    normalize(a).cmp(normalize(b))
}

/// `compare(a, b) == Less`.
pub fn less(a: &[u8], b: &[u8]) -> bool {
    compare(a, b) == Ordering::Less
}

/// `compare(a, b) == Equal`: `[0x11]` equals `[0x11, 0x00]`.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    compare(a, b) == Ordering::Equal
}

/// True when the id is empty after normalization (the minimum, or "no bound").
pub fn is_empty(id: &[u8]) -> bool {
    normalize(id).is_empty()
}

/// A half-open range of keyspace ids `[start, end)`. An empty `start` is the minimum and
/// an empty `end` the maximum, so `KeyRange::default()` is the full range (`-`).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    /// The range covering every keyspace id (`-`, or an unsharded `0`).
    pub fn full() -> Self {
        KeyRange::default()
    }

    /// A range from raw bounds, without validation.
    pub fn new(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: start.into(),
            end: end.into(),
        }
    }

    /// Parses `start-end` where both sides are (possibly empty) hex (Vitess
    /// `ParseKeyRangeParts`, used on shard names); `0` and `-` give the full range.
    /// Checks the order like `ValidateShardName`, but not the whole-byte pattern: use
    /// [`is_valid_key_range`] for that.
    pub fn parse(spec: &str) -> Result<Self, KeyError> {
        if spec == "0" {
            return Ok(KeyRange::full());
        }
        let Some((start, end)) = spec.split_once('-') else {
            return Err(KeyError::InvalidHex {
                spec: spec.to_string(),
                reason: "a key range needs a '-'".to_string(),
            });
        };
        if end.contains('-') {
            return Err(KeyError::TooManyDashes(spec.to_string()));
        }
        let kr = KeyRange {
            start: decode_hex(spec, start)?,
            end: decode_hex(spec, end)?,
        };
        if !kr.end.is_empty() && kr.start >= kr.end {
            return Err(KeyError::OutOfOrder {
                start: hex::encode(&kr.start),
                end: hex::encode(&kr.end),
            });
        }
        Ok(kr)
    }

    /// The range of every id that starts with `prefix`: `[prefix, prefix + 1)`, where
    /// `ff` + 1 has no end (Vitess `NewKeyRangeFromPrefix`). Used by partial multicol and
    /// region_experimental lookups.
    pub fn from_prefix(prefix: &[u8]) -> Self {
        let mut end = prefix.to_vec();
        let mut carried_out = true;
        for byte in end.iter_mut().rev() {
            *byte = byte.wrapping_add(1);
            if *byte != 0 {
                carried_out = false;
                break;
            }
        }
        if carried_out {
            end.clear();
        }
        KeyRange {
            start: prefix.to_vec(),
            end,
        }
    }

    /// True for a range with neither bound (Vitess `KeyRangeIsComplete`).
    pub fn is_full(&self) -> bool {
        is_empty(&self.start) && is_empty(&self.end)
    }

    /// True when `id` is in `[start, end)` (Vitess `KeyRangeContains`).
    pub fn contains(&self, id: &[u8]) -> bool {
        if self.is_full() {
            return true;
        }
        (is_empty(&self.start) || compare(id, &self.start) != Ordering::Less)
            && (is_empty(&self.end) || compare(id, &self.end) == Ordering::Less)
    }

    /// True when the two ranges share at least one id (Vitess `KeyRangeIntersect`).
    pub fn intersects(&self, other: &KeyRange) -> bool {
        (is_empty(&self.end) || less(&other.start, &self.end))
            && (is_empty(&other.end) || less(&self.start, &other.end))
    }

    /// True when every id of `other` is in `self` (Vitess `KeyRangeContainsKeyRange`).
    pub fn contains_key_range(&self, other: &KeyRange) -> bool {
        let start_ok = is_empty(&self.start)
            || (!is_empty(&other.start) && compare(&other.start, &self.start) != Ordering::Less);
        let end_ok = is_empty(&self.end)
            || (!is_empty(&other.end) && compare(&other.end, &self.end) != Ordering::Greater);
        start_ok && end_ok
    }

    /// Equality under the comparison rule: `-80` equals `-8000`.
    pub fn equals(&self, other: &KeyRange) -> bool {
        equal(&self.start, &other.start) && equal(&self.end, &other.end)
    }
}

impl fmt::Display for KeyRange {
    /// `start-end` in lower-case hex, as Vitess names shards (`40-80`, `-`, `c0-`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", hex::encode(&self.start), hex::encode(&self.end))
    }
}

impl fmt::Debug for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRange({self})")
    }
}

/// Vitess `key.IsValidKeyRange`: `0`, or `start-end` with whole hex bytes on each side
/// (`^(0|([0-9a-fA-F]{2})*-([0-9a-fA-F]{2})*)$`).
pub fn is_valid_key_range(spec: &str) -> bool {
    if spec == "0" {
        return true;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return false;
    };
    let whole_bytes = |s: &str| s.len() & 1 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit());
    whole_bytes(start) && whole_bytes(end)
}

/// Vitess `key.ParseShardingSpec`: `-40-80-` → `[-40, 40-80, 80-]`; `0` and `-` → the
/// full range.
pub fn parse_sharding_spec(spec: &str) -> Result<Vec<KeyRange>, KeyError> {
    let parts: Vec<&str> = spec.split('-').collect();
    if parts.len() == 1 {
        if spec == "0" {
            return Ok(vec![KeyRange::full()]);
        }
        return Err(KeyError::MalformedSpec {
            spec: spec.to_string(),
            reason: "doesn't define a range",
        });
    }
    let mut ranges = Vec::with_capacity(parts.len() - 1);
    let mut previous = parts[0];
    for (i, part) in parts[1..].iter().enumerate() {
        if part.is_empty() && i != parts.len() - 2 {
            return Err(KeyError::MalformedSpec {
                spec: spec.to_string(),
                reason: "MinKey/MaxKey cannot be in the middle of the spec",
            });
        }
        if !part.is_empty() && *part <= previous {
            return Err(KeyError::MalformedSpec {
                spec: spec.to_string(),
                reason: "shard limits should be in order",
            });
        }
        ranges.push(KeyRange {
            start: decode_hex(spec, previous)?,
            end: decode_hex(spec, part)?,
        });
        previous = part;
    }
    Ok(ranges)
}

/// Vitess `key.GenerateShardRanges(n, 0)`: `n` near-equal shard names over the first byte
/// (two hex digits) for up to 256 shards, over two bytes for up to 65536.
/// 2 → `-80, 80-`; 7 → `-24, 24-49, 49-6d, 6d-92, 92-b6, b6-db, db-`.
pub fn generate_shard_ranges(shards: usize) -> Result<Vec<String>, KeyError> {
    generate_shard_ranges_with_hex_width(shards, 0)
}

/// Vitess `key.GenerateShardRanges(n, hexWidth)`: like [`generate_shard_ranges`] with
/// `hex_width` hex digits per bound (0 picks 2 or 4). Inner boundaries are computed in
/// `f64` exactly as Vitess does (`int(i * (16^w / n))`), so uneven splits match digit for
/// digit; the last shard always ends open.
pub fn generate_shard_ranges_with_hex_width(
    shards: usize,
    hex_width: usize,
) -> Result<Vec<String>, KeyError> {
    if shards == 0 {
        return Err(KeyError::BadShardCount(
            "shards must be greater than zero".to_string(),
        ));
    }
    let width = match hex_width {
        0 if shards <= 256 => 2,
        0 if shards <= 65536 => 4,
        0 => {
            return Err(KeyError::BadShardCount(
                "this function does not support more than 65336 shards in a single keyspace"
                    .to_string(),
            ))
        }
        w => w,
    };
    if width > 15 {
        return Err(KeyError::BadShardCount(format!(
            "hex width {width} is too large (at most 15 hex digits)"
        )));
    }
    let max_shards: u64 = 1u64 << (4 * width);
    if shards as u64 > max_shards {
        return Err(KeyError::BadShardCount(format!(
            "the given number of shards ({shards}) is too high for the given number of characters to use ({hex_width})"
        )));
    }
    let format_bound = |v: u64| format!("{v:0width$x}");
    let size = max_shards as f64 / shards as f64;
    let mut out = Vec::with_capacity(shards);
    let mut start: u64 = 0;
    for i in 1..=shards {
        // The last shard always runs to the maximum: `i * size` can truncate to one below
        // it (49 shards: 255), and Vitess's golden ranges end with `fa-`.
        let end = if i == shards {
            max_shards
        } else {
            (i as f64 * size) as u64
        };
        let start_text = if start == 0 {
            String::new()
        } else {
            format_bound(start)
        };
        let end_text = if end == max_shards {
            String::new()
        } else {
            format_bound(end)
        };
        out.push(format!("{start_text}-{end_text}"));
        start = end;
    }
    Ok(out)
}

/// Vitess `key.EvenShardsKeyRange(i, n)`: the key range of shard `i` of `n` equal shards
/// (`n` a power of two), with bounds as short as `n` allows (1 of 2 → `80-`; 256 of 512 →
/// `8000-8080`).
pub fn even_shards_key_range(i: u64, n: u64) -> Result<KeyRange, KeyError> {
    if n == 0 {
        return Err(KeyError::BadShardCount(format!(
            "the shard count must be > 0: {n}"
        )));
    }
    if i >= n {
        return Err(KeyError::BadShardCount(format!(
            "the index of the shard must be less than the total number of shards: {i} < {n}"
        )));
    }
    if !n.is_power_of_two() {
        return Err(KeyError::BadShardCount(format!(
            "the shard count must be a power of two: {n}"
        )));
    }
    let mut min_bytes = 0;
    let mut nn = n - 1;
    while nn > 0 {
        min_bytes += 1;
        nn >>= 8;
    }
    let width = (u64::MAX / n).wrapping_add(1);
    let start = i.wrapping_mul(width);
    let end = start.wrapping_add(width);
    let bound = |v: u64| {
        if v == 0 {
            Vec::new()
        } else {
            v.to_be_bytes()[..min_bytes].to_vec()
        }
    };
    Ok(KeyRange {
        start: bound(start),
        end: bound(end),
    })
}

/// One shard of a keyspace: its name and the key range the name stands for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Shard {
    /// The name, lower-cased as Vitess stores it (`40-80`, `0`).
    pub name: String,
    /// The key range; the full range for a name without '-' (`0`).
    pub key_range: KeyRange,
}

impl Shard {
    /// Validates a shard name like Vitess `ValidateShardName`: a name without '-' is a
    /// non-range shard covering every id; otherwise hex bounds with `start < end`.
    pub fn parse(name: &str) -> Result<Self, KeyError> {
        if !name.contains('-') {
            return Ok(Shard {
                name: name.to_string(),
                key_range: KeyRange::full(),
            });
        }
        Ok(Shard {
            name: name.to_ascii_lowercase(),
            key_range: KeyRange::parse(name)?,
        })
    }
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shard({})", self.name)
    }
}

/// Parses a list of shard names in order.
pub fn parse_shards<S: AsRef<str>>(names: &[S]) -> Result<Vec<Shard>, KeyError> {
    names.iter().map(|n| Shard::parse(n.as_ref())).collect()
}

/// Vitess `GetShardForKeyspaceID`: the first shard, in the given order, whose range
/// contains `id`.
pub fn shard_for_keyspace_id<'a>(shards: &'a [Shard], id: &[u8]) -> Result<&'a Shard, KeyError> {
    if shards.is_empty() {
        return Err(KeyError::NoShards);
    }
    shards
        .iter()
        .find(|s| s.key_range.contains(id))
        .ok_or_else(|| KeyError::NoMatchingShard(hex::encode(id)))
}

/// Every shard whose range intersects `kr`, in the given order (Vitess
/// `DestinationKeyRange.Resolve`). An empty answer is not an error.
pub fn shards_for_key_range<'a>(shards: &'a [Shard], kr: &KeyRange) -> Vec<&'a Shard> {
    shards
        .iter()
        .filter(|s| s.key_range.intersects(kr))
        .collect()
}

/// Where a vindex sends a row (Vitess `key.Destination`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Destination {
    /// Exactly one keyspace id: one shard.
    KeyspaceId(KeyspaceId),
    /// Every shard intersecting the range (a partial multi-column value).
    KeyRange(KeyRange),
    /// No shard: the value cannot exist in this keyspace (a row is skipped, a select
    /// returns nothing).
    None,
    /// Every shard (scatter).
    AllShards,
}

impl Destination {
    /// The shards this destination reaches, in the order of `shards`.
    pub fn resolve<'a>(&self, shards: &'a [Shard]) -> Result<Vec<&'a Shard>, KeyError> {
        match self {
            Destination::KeyspaceId(id) => Ok(vec![shard_for_keyspace_id(shards, id.as_bytes())?]),
            Destination::KeyRange(kr) => Ok(shards_for_key_range(shards, kr)),
            Destination::None => Ok(Vec::new()),
            Destination::AllShards => Ok(shards.iter().collect()),
        }
    }
}

fn decode_hex(spec: &str, text: &str) -> Result<Vec<u8>, KeyError> {
    hex::decode(text).map_err(|e| KeyError::InvalidHex {
        spec: spec.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kr(spec: &str) -> KeyRange {
        KeyRange::parse(spec).unwrap()
    }

    fn h(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    #[test]
    fn normalize_strips_only_trailing_zero_bytes() {
        // key_test.go TestNormalize
        let cases: &[(&[u8], &[u8])] = &[
            (&[], &[]),
            (&[0x00], &[]),
            (&[0x00, 0x00, 0x00], &[]),
            (&[0x11], &[0x11]),
            (&[0x11, 0x22, 0x33], &[0x11, 0x22, 0x33]),
            (
                &[0x11, 0x00, 0x22, 0x00, 0x33, 0x00],
                &[0x11, 0x00, 0x22, 0x00, 0x33],
            ),
            (&[0x11, 0, 0, 0, 0, 0, 0, 0], &[0x11]),
            (&[0x11, 0x22, 0, 0, 0], &[0x11, 0x22]),
            (
                &[
                    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0x00,
                ],
                &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), *want, "{input:?}");
        }
    }

    #[test]
    fn compare_ignores_trailing_zeros() {
        // key_test.go TestCompare, TestLess, TestEqual
        use Ordering::*;
        let cases: &[(&[u8], &[u8], Ordering)] = &[
            (&[], &[], Equal),
            (
                &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
                &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
                Equal,
            ),
            (&[0x11, 0x22], &[0x11, 0x22], Equal),
            (
                &[0x11, 0x22, 0x33, 0x44],
                &[0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0],
                Equal,
            ),
            (
                &[0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0],
                &[0x11, 0x22, 0x33, 0x44],
                Equal,
            ),
            (&[0x01], &[0x02], Less),
            (&[0x02], &[0x01], Greater),
            (&[0x30, 0x00], &[0x20], Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), *want, "{a:?} vs {b:?}");
        }
        assert!(less(&[1], &[2]));
        assert!(!less(&[1], &[1]));
        assert!(!less(&[2], &[1]));
        assert!(equal(&[1], &[1]));
        assert!(!equal(&[1], &[2]));
        assert!(is_empty(&[]));
        assert!(!is_empty(&[0x11, 0x22, 0x33]));
    }

    #[test]
    fn key_range_contains_is_start_inclusive_end_exclusive() {
        // key_test.go TestKeyRangeContains
        let cases = [
            ("3000000000000000", "3000000000000000", "", true),
            ("3000000000000000", "", "3000000000000000", false),
            ("4000000000000000", "3000000000000000", "", true),
            ("2000000000000000", "3000000000000000", "", false),
        ];
        for (id, start, end, want) in cases {
            let range = KeyRange::new(h(start), h(end));
            assert_eq!(range.contains(&h(id)), want, "{id} in {range}");
            assert!(KeyRange::full().contains(&h(id)));
        }
    }

    #[test]
    fn key_range_intersects_matches_vitess() {
        // key_test.go TestKeyRangeIntersect
        let cases = [
            ("-80", "80-", false),
            ("80-", "-80", false),
            ("40-80", "c0-d0", false),
            ("40-80", "20-40", false),
            ("4000-8000", "20-40", false),
            ("-", "-", true),
            ("-", "80-", true),
            ("-", "c0-d0", true),
            ("-80", "-", true),
            ("a0-b0", "-", true),
            ("-80", "-80", true),
            ("-8000", "-80", true),
            ("40-", "40-", true),
            ("4000-", "40-", true),
            ("40-80", "40-80", true),
            ("40-80", "4000-8000", true),
            ("-80", "-40", true),
            ("80-", "c0-", true),
            ("-80", "40-80", true),
            ("-80", "4000-8000", true),
            ("80-", "80-c0", true),
            ("80-", "8000-c000", true),
            ("40-80", "60-a0", true),
            ("40-80", "10-50", true),
            ("40-80", "50-60", true),
            ("40-80", "30-90", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(kr(a).intersects(&kr(b)), want, "{a} ∩ {b}");
        }
    }

    #[test]
    fn key_range_contains_key_range_matches_vitess() {
        // key_test.go TestKeyRangeContainsKeyRange
        let cases = [
            ("-", "-", true),
            ("-", "-c0", true),
            ("-", "80-", true),
            ("-", "80-c0", true),
            ("40-60", "40-60", true),
            ("40-60", "4000-6000", true),
            ("4000-6000", "40-60", true),
            ("40-80", "40-50", true),
            ("40-80", "4000-5000", true),
            ("4000-8000", "40-50", true),
            ("40-80", "70-80", true),
            ("40-80", "7000-8000", true),
            ("4000-8000", "70-80", true),
            ("40-80", "50-70", true),
            ("40-80", "5000-7000", true),
            ("4000-8000", "50-70", true),
            ("-c0", "-", false),
            ("80-", "-", false),
            ("80-c0", "-", false),
            ("40-60", "50-", false),
            ("40-60", "5000-", false),
            ("4000-6000", "50-", false),
            ("40-60", "-50", false),
            ("40-60", "-5000", false),
            ("4000-6000", "-50", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(kr(a).contains_key_range(&kr(b)), want, "{a} ⊇ {b}");
        }
    }

    #[test]
    fn key_range_equality_ignores_trailing_zeros() {
        // key_test.go TestKeyRangeEqual and the equal cases of TestKeyRangeComparisons
        assert!(kr("-8000").equals(&kr("-80")));
        assert!(kr("-8000").equals(&kr("-8000000000000000")));
        assert!(kr("-80").equals(&kr("-8000")));
        assert!(kr("1000-3000").equals(&kr("10-30")));
        assert!(kr("10000000-30000000").equals(&kr("1000-3000")));
        assert!(kr("80-").equals(&kr("80000000-")));
        assert!(!kr("-").equals(&kr("20-30")));
        assert!(!kr("10-30").equals(&kr("10-20")));
    }

    #[test]
    fn valid_key_range_pattern_needs_whole_bytes() {
        // key_test.go TestIsValidKeyRange
        let cases = [
            ("-", true),
            ("00-", true),
            ("-80", true),
            ("40-80", true),
            ("80-", true),
            ("a0-", true),
            ("-A0", true),
            ("0", true),
            ("", false),
            ("11", false),
            ("-1", false),
            ("-111", false),
            ("1-2", false),
            ("x-80", false),
            ("-80x", false),
            ("select", false),
            ("+", false),
        ];
        for (spec, want) in cases {
            assert_eq!(is_valid_key_range(spec), want, "{spec:?}");
        }
    }

    #[test]
    fn sharding_spec_parses_bounds_in_order() {
        // key_test.go TestParseShardingSpec
        assert_eq!(parse_sharding_spec("-").unwrap(), vec![KeyRange::full()]);
        assert_eq!(parse_sharding_spec("0").unwrap(), vec![KeyRange::full()]);
        let x40 = h("4000000000000000");
        let x80 = h("8000000000000000");
        assert_eq!(
            parse_sharding_spec("-4000000000000000-8000000000000000-").unwrap(),
            vec![
                KeyRange::new(vec![], x40.clone()),
                KeyRange::new(x40, x80.clone()),
                KeyRange::new(x80, vec![]),
            ]
        );
        for bad in [
            "4000000000000000",
            "---",
            "4000000000000000--8000000000000000",
            "4000000000000000-3000000000000000",
        ] {
            assert!(parse_sharding_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shard_names_parse_like_validate_shard_name() {
        assert_eq!(Shard::parse("0").unwrap().key_range, KeyRange::full());
        assert_eq!(Shard::parse("-").unwrap().key_range, KeyRange::full());
        let s = Shard::parse("40-80").unwrap();
        assert_eq!(s.key_range, KeyRange::new(vec![0x40], vec![0x80]));
        assert_eq!(s.key_range.to_string(), "40-80");
        assert_eq!(Shard::parse("C0-").unwrap().name, "c0-");
        assert_eq!(
            Shard::parse("80-40").unwrap_err().to_string(),
            "out of order keys: 80 is not strictly smaller than 40"
        );
        assert_eq!(
            Shard::parse("80-80").unwrap_err().to_string(),
            "out of order keys: 80 is not strictly smaller than 80"
        );
        assert!(matches!(
            Shard::parse("10-20-30"),
            Err(KeyError::TooManyDashes(_))
        ));
        assert!(matches!(
            Shard::parse("x-80"),
            Err(KeyError::InvalidHex { .. })
        ));
        // Uneven shards are fine.
        let uneven = parse_shards(&["-24", "24-49", "49-6d", "6d-"]).unwrap();
        assert_eq!(uneven.len(), 4);
    }

    #[test]
    fn generated_shard_ranges_match_vitess_golden() {
        // key_test.go TestGenerateShardRanges
        assert!(generate_shard_ranges(0).is_err());
        assert!(generate_shard_ranges(65537).is_err());
        assert_eq!(generate_shard_ranges(1).unwrap(), vec!["-"]);
        assert_eq!(generate_shard_ranges(2).unwrap(), vec!["-80", "80-"]);
        assert_eq!(
            generate_shard_ranges(7).unwrap(),
            vec!["-24", "24-49", "49-6d", "6d-92", "92-b6", "b6-db", "db-"]
        );
        let r49 = "-05 05-0a 0a-0f 0f-14 14-1a 1a-1f 1f-24 24-29 29-2f 2f-34 34-39 39-3e 3e-43 43-49 49-4e 4e-53 53-58 58-5e 5e-63 63-68 68-6d 6d-72 72-78 78-7d 7d-82 82-87 87-8d 8d-92 92-97 97-9c 9c-a1 a1-a7 a7-ac ac-b1 b1-b6 b6-bc bc-c1 c1-c6 c6-cb cb-d0 d0-d6 d6-db db-e0 e0-e5 e5-eb eb-f0 f0-f5 f5-fa fa-";
        assert_eq!(generate_shard_ranges(49).unwrap().join(" "), r49);
        let r103 = "-02 02-04 04-07 07-09 09-0c 0c-0e 0e-11 11-13 13-16 16-18 18-1b 1b-1d 1d-20 20-22 22-25 25-27 27-2a 2a-2c 2c-2f 2f-31 31-34 34-36 36-39 39-3b 3b-3e 3e-40 40-43 43-45 45-48 48-4a 4a-4d 4d-4f 4f-52 52-54 54-56 56-59 59-5b 5b-5e 5e-60 60-63 63-65 65-68 68-6a 6a-6d 6d-6f 6f-72 72-74 74-77 77-79 79-7c 7c-7e 7e-81 81-83 83-86 86-88 88-8b 8b-8d 8d-90 90-92 92-95 95-97 97-9a 9a-9c 9c-9f 9f-a1 a1-a4 a4-a6 a6-a9 a9-ab ab-ad ad-b0 b0-b2 b2-b5 b5-b7 b7-ba ba-bc bc-bf bf-c1 c1-c4 c4-c6 c6-c9 c9-cb cb-ce ce-d0 d0-d3 d3-d5 d5-d8 d8-da da-dd dd-df df-e2 e2-e4 e4-e7 e7-e9 e9-ec ec-ee ee-f1 f1-f3 f3-f6 f6-f8 f8-fb fb-fd fd-";
        assert_eq!(generate_shard_ranges(103).unwrap().join(" "), r103);
        let r107 = "-02 02-04 04-07 07-09 09-0b 0b-0e 0e-10 10-13 13-15 15-17 17-1a 1a-1c 1c-1f 1f-21 21-23 23-26 26-28 28-2b 2b-2d 2d-2f 2f-32 32-34 34-37 37-39 39-3b 3b-3e 3e-40 40-42 42-45 45-47 47-4a 4a-4c 4c-4e 4e-51 51-53 53-56 56-58 58-5a 5a-5d 5d-5f 5f-62 62-64 64-66 66-69 69-6b 6b-6e 6e-70 70-72 72-75 75-77 77-7a 7a-7c 7c-7e 7e-81 81-83 83-85 85-88 88-8a 8a-8d 8d-8f 8f-91 91-94 94-96 96-99 99-9b 9b-9d 9d-a0 a0-a2 a2-a5 a5-a7 a7-a9 a9-ac ac-ae ae-b1 b1-b3 b3-b5 b5-b8 b8-ba ba-bd bd-bf bf-c1 c1-c4 c4-c6 c6-c8 c8-cb cb-cd cd-d0 d0-d2 d2-d4 d4-d7 d7-d9 d9-dc dc-de de-e0 e0-e3 e3-e5 e5-e8 e8-ea ea-ec ec-ef ef-f1 f1-f4 f4-f6 f6-f8 f8-fb fb-fd fd-";
        assert_eq!(generate_shard_ranges(107).unwrap().join(" "), r107);
        // 256: every byte; 512: two-byte bounds stepping by 0x80.
        let r256 = generate_shard_ranges(256).unwrap();
        assert_eq!(r256.len(), 256);
        assert_eq!(r256[0], "-01");
        assert_eq!(r256[1], "01-02");
        assert_eq!(r256[128], "80-81");
        assert_eq!(r256[255], "ff-");
        for (i, name) in r256.iter().enumerate().skip(1).take(254) {
            assert_eq!(*name, format!("{:02x}-{:02x}", i, i + 1));
        }
        let r512 = generate_shard_ranges(512).unwrap();
        assert_eq!(r512.len(), 512);
        assert_eq!(r512[0], "-0080");
        assert_eq!(r512[1], "0080-0100");
        assert_eq!(r512[511], "ff80-");
        for (i, name) in r512.iter().enumerate().skip(1).take(510) {
            assert_eq!(*name, format!("{:04x}-{:04x}", i * 0x80, (i + 1) * 0x80));
        }
    }

    #[test]
    fn generated_shard_ranges_honour_hex_width() {
        // key_test.go TestGenerateShardRangesWithHexCharacterCount
        let g = |n, w| {
            generate_shard_ranges_with_hex_width(n, w)
                .unwrap()
                .join(" ")
        };
        assert_eq!(g(7, 1), "-2 2-4 4-6 6-9 9-b b-d d-");
        assert_eq!(g(7, 2), "-24 24-49 49-6d 6d-92 92-b6 b6-db db-");
        assert_eq!(g(7, 3), "-249 249-492 492-6db 6db-924 924-b6d b6d-db6 db6-");
        assert_eq!(
            g(7, 4),
            "-2492 2492-4924 4924-6db6 6db6-9249 9249-b6db b6db-db6d db6d-"
        );
        assert_eq!(
            g(8, 4),
            "-2000 2000-4000 4000-6000 6000-8000 8000-a000 a000-c000 c000-e000 e000-"
        );
        assert!(generate_shard_ranges_with_hex_width(32, 1)
            .unwrap_err()
            .to_string()
            .contains(
                "the given number of shards (32) is too high for the given number of characters to use (1)"
            ));
    }

    #[test]
    fn generated_shard_ranges_are_contiguous_for_many_counts() {
        // key_test.go TestGenerateShardRangesForManyShards
        for n in 1..=1024 {
            let ranges = generate_shard_ranges(n).unwrap();
            assert_eq!(ranges.len(), n);
            assert!(ranges[0].starts_with('-'));
            assert!(ranges[n - 1].ends_with('-'));
            for pair in ranges.windows(2) {
                let prev_end = pair[0].split_once('-').unwrap().1;
                let cur_start = pair[1].split_once('-').unwrap().0;
                assert_eq!(prev_end, cur_start, "n={n}");
            }
            for name in &ranges {
                Shard::parse(name).unwrap();
            }
        }
    }

    #[test]
    fn even_shards_key_range_matches_vitess() {
        // key_test.go TestEvenShardsKeyRange and TestEvenShardsKeyRange_Error
        let cases = [
            (0, 1, "-"),
            (0, 2, "-80"),
            (1, 2, "80-"),
            (1, 4, "40-80"),
            (2, 4, "80-c0"),
            (1, 256, "01-02"),
            (256, 512, "8000-8080"),
            (510, 512, "ff00-ff80"),
            (511, 512, "ff80-"),
        ];
        for (i, n, spec) in cases {
            let got = even_shards_key_range(i, n).unwrap();
            assert_eq!(got.to_string(), spec);
            assert_eq!(got, kr(spec));
        }
        assert!(even_shards_key_range(0, 0)
            .unwrap_err()
            .to_string()
            .contains("the shard count must be > 0"));
        assert!(even_shards_key_range(32, 8)
            .unwrap_err()
            .to_string()
            .contains("must be less than"));
        assert!(even_shards_key_range(1, 6)
            .unwrap_err()
            .to_string()
            .contains("must be a power of two"));
    }

    #[test]
    fn keyspace_ids_route_to_the_first_containing_shard() {
        let shards = parse_shards(&["-40", "40-80", "80-c0", "c0-"]).unwrap();
        let route = |id: &str| shard_for_keyspace_id(&shards, &h(id)).unwrap().name.clone();
        // VINDEXES.md §2 worked examples.
        assert_eq!(route("166b40b44aba4bd6"), "-40");
        assert_eq!(route("d2fd8867d50d2dfe"), "c0-");
        assert_eq!(route("7fffffffffffffff"), "40-80");
        assert_eq!(route("8000000000000000"), "80-c0");
        // An empty keyspace id (binary vindex, NULL) is the minimum.
        assert_eq!(route(""), "-40");
        assert_eq!(
            shard_for_keyspace_id(&[], &[1]).unwrap_err().to_string(),
            "no shard in keyspace"
        );
        let partial = parse_shards(&["-40", "40-80"]).unwrap();
        assert_eq!(
            shard_for_keyspace_id(&partial, &h("c000000000000001"))
                .unwrap_err()
                .to_string(),
            "KeyspaceId c000000000000001 didn't match any shards"
        );
        // An unsharded keyspace has one shard "0" that takes everything.
        let unsharded = parse_shards(&["0"]).unwrap();
        assert_eq!(
            shard_for_keyspace_id(&unsharded, &h("ff")).unwrap().name,
            "0"
        );
    }

    #[test]
    fn destinations_resolve_to_shards() {
        let shards = parse_shards(&["-40", "40-80", "80-c0", "c0-"]).unwrap();
        let names = |d: Destination| -> Vec<String> {
            d.resolve(&shards)
                .unwrap()
                .into_iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(
            names(Destination::KeyRange(kr("30-90"))),
            vec!["-40", "40-80", "80-c0"]
        );
        assert_eq!(names(Destination::KeyRange(kr("40-80"))), vec!["40-80"]);
        assert_eq!(
            names(Destination::KeyRange(KeyRange::from_prefix(&[
                0x16, 0x6b, 0x40
            ]))),
            vec!["-40"]
        );
        assert_eq!(names(Destination::AllShards).len(), 4);
        assert!(names(Destination::None).is_empty());
        assert_eq!(
            names(Destination::KeyspaceId(
                KeyspaceId::from_hex("d2fd8867d50d2dfe").unwrap()
            )),
            vec!["c0-"]
        );
    }

    #[test]
    fn prefix_ranges_add_one_with_carry() {
        assert_eq!(
            KeyRange::from_prefix(&[0x16, 0x6b, 0x40]),
            KeyRange::new(vec![0x16, 0x6b, 0x40], vec![0x16, 0x6b, 0x41])
        );
        assert_eq!(
            KeyRange::from_prefix(&[0x01, 0xff]),
            KeyRange::new(vec![0x01, 0xff], vec![0x02, 0x00])
        );
        assert_eq!(
            KeyRange::from_prefix(&[0xff, 0xff]),
            KeyRange::new(vec![0xff, 0xff], vec![])
        );
        assert!(KeyRange::from_prefix(&[]).is_full());
    }
}
