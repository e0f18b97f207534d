//! Walks one contraction trie of the collation table over the bytes after a rune that
//! may start a contraction, remembering the longest match (x/text `ctScanner`).
//!
//! A trie node covers a byte range. A node with children (`next > 0`) matches one byte
//! and moves to its children; a leaf matches any byte of its range and ends the walk.
//! A node's `index` (0xFF: none) is the offset of the contraction's element.

use super::table::ct_entry;

const NO_INDEX: u8 = 0xFF;

/// The scan state: which nodes are current and the longest match so far.
#[derive(Debug)]
pub(super) struct Scanner<'a> {
    /// First node of the current level, and how many nodes it has.
    states: usize,
    count: usize,
    input: &'a [u8],
    /// Element offset and input length of the longest match (0, 0: the rune alone).
    pub index: usize,
    pub pindex: usize,
    /// A leaf matched: no longer contraction is possible.
    pub done: bool,
}

impl<'a> Scanner<'a> {
    /// A scanner at trie node `states` (with `count` nodes) over `input`.
    pub fn new(states: usize, count: usize, input: &'a [u8]) -> Self {
        Scanner {
            states,
            count,
            input,
            index: 0,
            pindex: 0,
            done: false,
        }
    }

    /// Stops the scan from reading past byte `end` of the input.
    pub fn limit(&mut self, end: usize) {
        self.input = &self.input[..end.min(self.input.len())];
    }

    /// The longest match: its element offset and the input bytes it covers.
    pub fn result(&self) -> (usize, usize) {
        (self.index, self.pindex)
    }

    /// Continues matching at byte `p`. Returns the position after the last whole rune
    /// that advanced the trie (where a later call may resume), or `p` when none did.
    pub fn scan(&mut self, mut p: usize) -> usize {
        let mut resume = p;
        let (mut states, mut count) = (self.states, self.count);
        let mut i = 0;
        while i < count && p < self.input.len() {
            let node = ct_entry(states + i);
            let c = self.input[p];
            if c >= node.low {
                if c == node.low {
                    p += 1;
                    if node.index != NO_INDEX {
                        self.index = node.index as usize;
                        self.pindex = p;
                    }
                    if node.next == 0 {
                        self.done = true;
                        return p;
                    }
                    states += node.high as usize + count;
                    count = node.next as usize;
                    i = 0;
                    if self.input.get(p).is_none_or(|&b| b & 0xC0 != 0x80) {
                        self.states = states;
                        self.count = count;
                        resume = p;
                    }
                    continue;
                }
                if node.next == 0 && c <= node.high {
                    p += 1;
                    self.done = true;
                    self.index = (c - node.low) as usize + node.index as usize;
                    self.pindex = p;
                    return p;
                }
            }
            i += 1;
        }
        resume
    }
}
