//! The bytes one call hands on: the input as it came whenever the filter neither held,
//! dropped nor added anything (no copy), else a new buffer built as the call goes.

/// What to forward in place of the bytes a call received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// The input, unchanged.
    Input,
    /// These bytes instead (empty: forward nothing for now).
    Replace(Vec<u8>),
}

/// Builds the output of one call over `input`, consumed in order.
#[derive(Debug)]
pub(super) struct Out<'a> {
    input: &'a [u8],
    /// Input bytes accounted for so far.
    at: usize,
    /// `None` while the output is exactly `input[..at]`.
    built: Option<Vec<u8>>,
}

impl<'a> Out<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        Out {
            input,
            at: 0,
            built: None,
        }
    }

    /// Input bytes not yet accounted for.
    pub(super) fn rest(&self) -> &'a [u8] {
        &self.input[self.at..]
    }

    pub(super) fn is_done(&self) -> bool {
        self.at >= self.input.len()
    }

    fn built(&mut self) -> &mut Vec<u8> {
        let (input, at) = (self.input, self.at);
        self.built.get_or_insert_with(|| input[..at].to_vec())
    }

    /// Forwards the next `n` input bytes.
    pub(super) fn pass(&mut self, n: usize) {
        let n = n.min(self.input.len() - self.at);
        if self.built.is_some() {
            let (input, at) = (self.input, self.at);
            self.built().extend_from_slice(&input[at..at + n]);
        }
        self.at += n;
    }

    /// Consumes the next `n` input bytes without forwarding them (the caller holds or
    /// drops them).
    pub(super) fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.input.len() - self.at);
        self.built();
        let taken = &self.input[self.at..self.at + n];
        self.at += n;
        taken
    }

    /// Forwards bytes that are not (or no longer) in the input.
    pub(super) fn emit(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.built().extend_from_slice(bytes);
    }

    pub(super) fn finish(self) -> Forward {
        match self.built {
            None => Forward::Input,
            Some(v) => Forward::Replace(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_input_is_not_copied() {
        let mut out = Out::new(b"abcdef");
        out.pass(2);
        out.pass(10);
        assert!(out.is_done());
        assert_eq!(out.finish(), Forward::Input);
    }

    #[test]
    fn taking_and_emitting_builds_a_buffer() {
        let mut out = Out::new(b"abcdef");
        out.pass(2);
        assert_eq!(out.take(2), b"cd");
        out.emit(b"XY");
        out.pass(2);
        assert_eq!(out.finish(), Forward::Replace(b"abXYef".to_vec()));
        let mut held = Out::new(b"abc");
        held.take(3);
        assert_eq!(held.finish(), Forward::Replace(Vec::new()));
    }
}
