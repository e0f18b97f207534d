//! The Unicode normalization facts the collation iterator needs: combining classes,
//! canonical and compatibility decompositions of single runes (from the
//! `unicode-normalization` crate; decompositions and classes of assigned characters never
//! change between Unicode versions), Hangul syllables, segment boundaries, and the
//! Ideographic property that orders implicit weights.

use unicode_normalization::char::{
    canonical_combining_class, decompose_canonical, decompose_compatible,
};

/// Longest run of bytes x/text buffers for a discontiguous contraction (`MaxSegmentSize`).
pub const MAX_SEGMENT_SIZE: usize = 128;
/// Non-starters in a row after which a segment is cut (Stream-Safe Text Format).
const MAX_NON_STARTERS: usize = 30;

/// The first rune of `s` and its length; U+FFFD and 1 byte when `s` does not start with
/// a whole UTF-8 sequence (Go's `utf8.DecodeRune`).
fn decode(s: &[u8]) -> (char, usize) {
    let len = match s.first() {
        Some(0x00..=0x7F) => 1,
        Some(0xC0..=0xDF) => 2,
        Some(0xE0..=0xEF) => 3,
        Some(0xF0..=0xF7) => 4,
        _ => return (char::REPLACEMENT_CHARACTER, 1),
    };
    match s
        .get(..len)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|t| t.chars().next())
    {
        Some(c) => (c, len),
        None => (char::REPLACEMENT_CHARACTER, 1),
    }
}

/// The first rune of `s`.
pub fn first_rune(s: &[u8]) -> char {
    decode(s).0
}

/// The jamos of a precomposed Hangul syllable (L V, or L V T), or `None`.
pub fn decompose_hangul(rune: char) -> Option<impl Iterator<Item = char>> {
    const FIRST: u32 = 0xAC00;
    const LAST: u32 = 0xD7A3;
    let s = (rune as u32)
        .checked_sub(FIRST)
        .filter(|_| rune as u32 <= LAST)?;
    let l = 0x1100 + s / 588;
    let v = 0x1161 + (s % 588) / 28;
    let t = (s % 28 != 0).then_some(0x11A7 + s % 28);
    Some(
        [Some(l), Some(v), t]
            .into_iter()
            .flatten()
            .filter_map(char::from_u32),
    )
}

/// The NFKD decomposition of the first rune of `s`, as UTF-8.
pub fn nfkd_of_first(s: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    decompose_compatible(first_rune(s), |c| out.push(c));
    out.into_bytes()
}

/// What x/text's `norm.NFD.Properties` tells about the first rune of a string.
#[derive(Debug, Clone, Copy)]
pub struct Properties {
    /// Bytes of the rune.
    pub size: usize,
    /// Combining class of the first and last rune of its canonical decomposition.
    pub lead_ccc: u8,
    pub trail_ccc: u8,
    /// Non-starters its decomposition begins with.
    pub lead_non_starters: usize,
}

impl Properties {
    /// The properties of the first rune of `s`.
    pub fn of(s: &[u8]) -> Properties {
        let (rune, size) = decode(s);
        let mut classes = Vec::with_capacity(4);
        decompose_canonical(rune, |c| classes.push(canonical_combining_class(c)));
        Properties {
            size,
            lead_ccc: classes.first().copied().unwrap_or(0),
            trail_ccc: classes.last().copied().unwrap_or(0),
            lead_non_starters: classes.iter().take_while(|&&c| c != 0).count(),
        }
    }
}

/// The position of the first normalization boundary in `s` (before a starter, or where
/// a run of non-starters grows too long), or `None` when `s` ends inside a segment
/// (x/text `norm.NFD.FirstBoundary`).
pub fn first_boundary(s: &[u8]) -> Option<usize> {
    let mut i = s.iter().position(|&b| b & 0xC0 != 0x80)?;
    let mut non_starters = 0;
    loop {
        let props = Properties::of(&s[i..]);
        non_starters += props.lead_non_starters;
        if props.lead_non_starters == 0 || non_starters > MAX_NON_STARTERS {
            return Some(i);
        }
        i += props.size;
        if i >= s.len() {
            // Ending on a non-starter is no boundary, unless the run is exactly full.
            return (non_starters == MAX_NON_STARTERS).then_some(s.len());
        }
    }
}

/// Unicode's Ideographic property, as Go 1.21+ (Unicode 15.0) defines it.
pub fn is_ideographic(rune: char) -> bool {
    const RANGES: &[(u32, u32)] = &[
        (0x3006, 0x3007),
        (0x3021, 0x3029),
        (0x3038, 0x303A),
        (0x3400, 0x4DBF),
        (0x4E00, 0x9FFF),
        (0xF900, 0xFA6D),
        (0xFA70, 0xFAD9),
        (0x16FE4, 0x16FE4),
        (0x17000, 0x187F7),
        (0x18800, 0x18CD5),
        (0x18D00, 0x18D08),
        (0x1B170, 0x1B2FB),
        (0x20000, 0x2A6DF),
        (0x2A700, 0x2B739),
        (0x2B740, 0x2B81D),
        (0x2B820, 0x2CEA1),
        (0x2CEB0, 0x2EBE0),
        (0x2F800, 0x2FA1D),
        (0x30000, 0x3134A),
        (0x31350, 0x323AF),
    ];
    let r = rune as u32;
    RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&r))
}
