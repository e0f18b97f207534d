//! The root collation table of golang.org/x/text/collate (CLDR 23, Unicode 6.2) that
//! Vitess's unicode_loose vindexes hash, and the step that turns the next rune (or
//! contraction) of a string into collation elements.
//!
//! The data lives in `data/*.bin`, little-endian arrays written by
//! `scripts/gen-unicode-loose-tables.py` from x/text's `tables.go` (BSD-3-Clause, The Go
//! Authors). The layout is x/text's: a UTF-8 byte trie from runes to 32-bit elements, an
//! expansion array (a count, then that many elements), and a set of small byte tries for
//! contractions.

use super::contract::Scanner;
use super::norm;

const EXPAND: &[u8] = include_bytes!("data/expand.bin");
const CONTRACT: &[u8] = include_bytes!("data/contract.bin");
const VALUES: &[u8] = include_bytes!("data/values.bin");
const LOOKUP: &[u8] = include_bytes!("data/lookup.bin");
const CT_ENTRIES: &[u8] = include_bytes!("data/ct_entries.bin");

/// Trie block of the root ("und") table's first UTF-8 byte (x/text `locales[0]`).
const ROOT_LOOKUP_BLOCK: usize = 0x15;
const BLOCK_SIZE: usize = 64;

/// The `i`th little-endian `u32` of `data`; 0 past the end (no rune maps there).
fn u32_at(data: &[u8], i: usize) -> u32 {
    data.get(4 * i..4 * i + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

fn u16_at(data: &[u8], i: usize) -> u16 {
    data.get(2 * i..2 * i + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .unwrap_or(0)
}

/// One node of a contraction trie: bytes `low..=high`, `next` child nodes, result `index`.
#[derive(Debug, Clone, Copy)]
pub(super) struct CtEntry {
    pub low: u8,
    pub high: u8,
    pub next: u8,
    pub index: u8,
}

/// The `i`th contraction trie node.
pub(super) fn ct_entry(i: usize) -> CtEntry {
    match CT_ENTRIES.get(4 * i..4 * i + 4) {
        Some(&[low, high, next, index]) => CtEntry {
            low,
            high,
            next,
            index,
        },
        // Past the end: a node that matches nothing.
        _ => CtEntry {
            low: 0xFF,
            high: 0,
            next: 0,
            index: 0xFF,
        },
    }
}

/// A collation element in x/text's packed form. Only what the loose key needs is
/// decoded: the primary weight and the canonical combining class (which orders
/// elements of unnormalized input). Tertiary weights, which x/text rewrites for
/// compatibility decompositions, never reach a primary-only key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Elem(pub u32);

/// What a trie value is: an element, or an index into the other arrays.
enum Kind {
    Normal,
    Contraction,
    Expansion,
    Decompose,
}

impl Elem {
    const MAX_NORMAL: u32 = 0xAFFF_FFFF;
    /// x/text counts everything above the normal range up to here as a contraction.
    const MIN_CONTRACTION: u32 = Self::MAX_NORMAL + 1;
    const MAX_CONTRACTION: u32 = 0xDFFF_FFFF;
    const MIN_EXPANSION: u32 = Self::MAX_CONTRACTION + 1;
    const MAX_EXPANSION: u32 = 0xEFFF_FFFF;
    const FIRST_NON_PRIMARY: u32 = 0x8000_0000;
    const LAST_SPECIAL_PRIMARY: u32 = 0xA000_0000;
    const TYPE_3_OR_4: u32 = 0x8000_0000;
    const TYPE_4: u32 = 0xA000_0000;
    const PRIMARY_MASK: u32 = 0x3FFF_FE00;
    const PRIMARY_SHIFT: u32 = 9;

    fn kind(self) -> Kind {
        match self.0 {
            0..=Self::MAX_NORMAL => Kind::Normal,
            Self::MIN_CONTRACTION..=Self::MAX_CONTRACTION => Kind::Contraction,
            Self::MIN_EXPANSION..=Self::MAX_EXPANSION => Kind::Expansion,
            _ => Kind::Decompose,
        }
    }

    /// The element x/text gives a rune the table does not list: an implicit primary
    /// with the default secondary weight.
    fn implicit(primary: u32) -> Elem {
        Elem(0x4000_0000 | (primary << Self::PRIMARY_SHIFT) | 0x20)
    }

    /// The primary weight (0 for ignorables and secondary-only elements).
    pub fn primary(self) -> u32 {
        if self.0 >= Self::FIRST_NON_PRIMARY {
            if self.0 > Self::LAST_SPECIAL_PRIMARY {
                return 0;
            }
            return self.0 & 0xFFFF;
        }
        (self.0 & Self::PRIMARY_MASK) >> Self::PRIMARY_SHIFT
    }

    /// The canonical combining class of the rune the element came from.
    pub fn ccc(self) -> u8 {
        if self.0 & Self::TYPE_3_OR_4 == 0 {
            return 0;
        }
        if self.0 & Self::TYPE_4 == Self::TYPE_3_OR_4 {
            (self.0 >> 16) as u8
        } else {
            (self.0 >> 20) as u8
        }
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// Looks the first rune of `s` up in the trie: its value and how many bytes it took
/// (0 when `s` ends inside a rune).
fn lookup(s: &[u8]) -> (Elem, usize) {
    let Some(&c0) = s.first() else {
        return (Elem(0), 0);
    };
    let len = match c0 {
        0x00..=0x7F => return (Elem(u32_at(VALUES, c0 as usize)), 1),
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return (Elem(0), 1),
    };
    if s.len() < len {
        return (Elem(0), 0);
    }
    let mut block = u16_at(LOOKUP, ROOT_LOOKUP_BLOCK * BLOCK_SIZE + c0 as usize) as usize;
    for (k, &c) in s.iter().enumerate().take(len).skip(1) {
        if !is_continuation(c) {
            return (Elem(0), k);
        }
        let at = (block << 6) + c as usize;
        if k == len - 1 {
            return (Elem(u32_at(VALUES, at)), len);
        }
        block = u16_at(LOOKUP, at) as usize;
    }
    (Elem(0), 1)
}

/// Appends the elements of expansion `ce` (a count, then the elements).
fn append_expansion(out: &mut Vec<Elem>, ce: Elem) {
    let at = (ce.0 & 0xFFFF) as usize;
    let count = u32_at(EXPAND, at) as usize;
    out.extend((at + 1..at + 1 + count).map(|i| Elem(u32_at(EXPAND, i))));
}

/// Appends the elements of the next rune or contraction of `src` (valid UTF-8, not
/// empty) and returns the bytes it consumed (x/text `Table.AppendNext`).
pub(super) fn append_next(out: &mut Vec<Elem>, src: &[u8]) -> usize {
    let (ce, mut size) = lookup(src);
    match ce.kind() {
        Kind::Normal if ce.0 == 0 => {
            let rune = norm::first_rune(src);
            if let Some(jamos) = norm::decompose_hangul(rune) {
                // Hangul syllables are not in the table: their jamos are.
                for jamo in jamos {
                    let mut buf = [0; 4];
                    out.push(lookup(jamo.encode_utf8(&mut buf).as_bytes()).0);
                }
            } else {
                out.push(Elem::implicit(implicit_primary(rune)));
            }
        }
        Kind::Normal => out.push(ce),
        Kind::Expansion => append_expansion(out, ce),
        Kind::Contraction => size += match_contraction(out, ce, &src[size.min(src.len())..]),
        Kind::Decompose => {
            // Compatibility characters take the elements of their NFKD decomposition
            // (x/text then adjusts tertiary weights, which a loose key drops).
            let mut decomposed = norm::nfkd_of_first(src);
            if src.starts_with(&decomposed) {
                // No decomposition to follow (never so in x/text's table): the rune alone.
                out.push(Elem::implicit(implicit_primary(norm::first_rune(src))));
                return size;
            }
            while !decomposed.is_empty() {
                let used = append_next(out, &decomposed).max(1);
                decomposed.drain(..used.min(decomposed.len()));
            }
        }
    }
    size
}

/// Matches the longest contraction that starts with the rune whose value is `ce`,
/// against the rest of the input `suffix`, allowing combining marks between its parts
/// as Unicode's discontiguous matching does. Appends its elements, and those of the
/// skipped marks, and returns how many bytes of `suffix` it consumed.
fn match_contraction(out: &mut Vec<Elem>, ce: Elem, suffix: &[u8]) -> usize {
    let count = (ce.0 & 0xF) as usize;
    let trie = ((ce.0 >> 4) & 0xFFF) as usize;
    let offset = ((ce.0 >> 16) & 0x1FFF) as usize;

    let mut scan = Scanner::new(trie, count, suffix);
    // Marks skipped over by a discontiguous match, processed after the contraction.
    let mut skipped: Vec<u8> = Vec::new();
    let mut skipped_used = 0;
    let mut p = scan.scan(0);
    if !scan.done && p < suffix.len() && suffix[p] >= 0x80 {
        let mut p0 = p;
        let props = norm::Properties::of(&suffix[p..]);
        p += props.size;
        if props.lead_ccc != 0 {
            let mut prev_ccc = props.trail_ccc;
            // A gap may only occur in the last normalization segment.
            if let Some(end) = norm::first_boundary(&suffix[p..]) {
                scan.limit(p + end);
            }
            while p < suffix.len() && !scan.done && suffix[p] >= 0x80 {
                let props = norm::Properties::of(&suffix[p..]);
                if props.lead_ccc == 0 || prev_ccc >= props.lead_ccc {
                    break;
                }
                prev_ccc = props.trail_ccc;
                let next = scan.scan(p);
                if next != p {
                    let room = norm::MAX_SEGMENT_SIZE.saturating_sub(skipped.len());
                    let gap = &suffix[p0..p];
                    skipped.extend_from_slice(&gap[..gap.len().min(room)]);
                    if scan.pindex == next {
                        skipped_used = skipped.len();
                    }
                    p = next;
                    p0 = next;
                } else {
                    p += props.size;
                }
            }
        }
    }
    let (index, consumed) = scan.result();
    let ce = Elem(u32_at(CONTRACT, index + offset));
    match ce.kind() {
        Kind::Normal => out.push(ce),
        _ => append_expansion(out, ce),
    }
    let mut rest = &skipped[..skipped_used];
    while !rest.is_empty() {
        let used = append_next(out, rest).max(1);
        rest = &rest[used.min(rest.len())..];
    }
    consumed
}

/// x/text's implicit primary for a rune the table does not list: ideographs first (the
/// common CJK blocks before the rare ones), then every other rune in code point order.
fn implicit_primary(rune: char) -> u32 {
    let r = rune as u32;
    if norm::is_ideographic(rune) {
        if (0x4E00..=0x9FFF).contains(&r) || (0xF900..=0xFAFF).contains(&r) {
            return r + 0x10000;
        }
        return r + 0x20000;
    }
    r + 0x50000
}
