//! Turns a string into collation elements in normalized order: the order they would have
//! if the string were in NFD first. Combining marks that arrive out of canonical order
//! are moved by their combining class (x/text `colltab.Iter`).

use super::table::{append_next, Elem};

/// Elements of one segment gathered before its tail is handed out unsorted.
const MAX_COMBINING: usize = 30;

/// The iterator: `elems[..ready]` are final; the rest wait for look-ahead.
pub(super) struct Iter<'a> {
    input: &'a [u8],
    next: usize,
    pub elems: Vec<Elem>,
    pub ready: usize,
}

impl<'a> Iter<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Iter {
            input,
            next: 0,
            elems: Vec::with_capacity(32),
            ready: 0,
        }
    }

    /// Drops the elements handed out by the last [`Iter::advance`].
    pub fn discard(&mut self) {
        self.elems.drain(..self.ready);
        self.ready = 0;
    }

    fn append(&mut self) -> bool {
        if self.next >= self.input.len() {
            return false;
        }
        self.next += append_next(&mut self.elems, &self.input[self.next..]).max(1);
        true
    }

    fn ccc(&self, i: usize) -> u8 {
        self.elems.get(i).map_or(0, |e| e.ccc())
    }

    /// Makes more elements final (`elems[..ready]`); false at the end of the input.
    pub fn advance(&mut self) -> bool {
        if self.ready == self.elems.len() && !self.append() {
            return false;
        }
        let mut prev_ccc = self.ccc(self.elems.len().wrapping_sub(1));
        if prev_ccc == 0 {
            self.ready = self.elems.len();
            return true;
        }
        if self.ccc(self.ready) == 0 {
            // Hand out the starters; keep the trailing marks for the next segment.
            self.ready += 1;
            while self.ready < self.elems.len() && self.ccc(self.ready) == 0 {
                self.ready += 1;
            }
            return true;
        }
        // The segment starts with marks: gather them all so they can be ordered.
        loop {
            let start = self.elems.len();
            if !self.append() {
                break;
            }
            let ccc = self.ccc(start);
            if ccc == 0 || self.elems.len() - self.ready > MAX_COMBINING {
                // Leave the starter for the next call.
                self.ready = start;
                return true;
            }
            if ccc < prev_ccc {
                self.reorder(start, ccc);
            } else {
                prev_ccc = ccc;
            }
        }
        let more = self.elems.len() != self.ready;
        self.ready = self.elems.len();
        more
    }

    /// Moves the block `elems[start..]` (combining class `ccc`) before the earlier
    /// marks of a higher class.
    fn reorder(&mut self, start: usize, ccc: u8) {
        let mut at = start.saturating_sub(1);
        while at > self.ready && ccc < self.ccc(at - 1) {
            at -= 1;
        }
        self.elems[at..].rotate_left(start - at);
    }
}
