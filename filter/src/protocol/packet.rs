//! Packet framing: the 4-byte header (24-bit payload length, sequence id), the split of
//! payloads of 16 MiB - 1 bytes and more into continuation packets, and a bounded
//! assembler that turns physical packets back into logical payloads.
//!
//! The proxy hot path never assembles: it uses [`peek_header`] to find packet boundaries
//! and forwards the bytes untouched. Assembly is for packets the sidecar must understand
//! (handshakes, commands) and is capped by a configurable maximum packet size.

use thiserror::Error;

/// Largest payload one physical packet carries; a payload of this length is continued by
/// the next packet.
pub const MAX_PAYLOAD_LEN: usize = 0xff_ffff;

/// Length of the packet header.
pub const HEADER_LEN: usize = 4;

/// MySQL's default `max_allowed_packet` on the server side (64 MiB in MariaDB 10.11 is
/// 16 MiB for clients); the sidecar default is 64 MiB.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 64 * 1024 * 1024;

/// The header of one physical packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// Payload length of this physical packet (at most [`MAX_PAYLOAD_LEN`]).
    pub len: usize,
    pub seq: u8,
}

impl PacketHeader {
    /// Whether the logical payload continues in the next physical packet.
    pub fn continues(&self) -> bool {
        self.len == MAX_PAYLOAD_LEN
    }

    /// Total bytes on the wire for this physical packet.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.len
    }
}

/// Decodes the header at the start of `buf`, if four bytes are there.
pub fn peek_header(buf: &[u8]) -> Option<PacketHeader> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    Some(PacketHeader {
        len: usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16,
        seq: buf[3],
    })
}

/// Appends `payload` as one logical packet starting at sequence id `*seq`, splitting it
/// into continuation packets as needed, and advances `*seq` past the last packet written.
pub fn write_packet(out: &mut Vec<u8>, seq: &mut u8, payload: &[u8]) {
    out.reserve(payload.len() + HEADER_LEN * (1 + payload.len() / MAX_PAYLOAD_LEN));
    let mut chunks = payload.chunks(MAX_PAYLOAD_LEN);
    loop {
        let chunk = chunks.next().unwrap_or(&[]);
        let len = chunk.len() as u32;
        out.extend_from_slice(&len.to_le_bytes()[..3]);
        out.push(*seq);
        *seq = seq.wrapping_add(1);
        out.extend_from_slice(chunk);
        if chunk.len() < MAX_PAYLOAD_LEN {
            break;
        }
    }
}

/// Framing errors. Every one of them ends the connection it happened on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A logical packet is larger than the configured maximum.
    #[error("Got a packet bigger than 'max_allowed_packet' bytes")]
    TooLarge { limit: usize },
    /// A packet arrived with a sequence id other than the one expected.
    #[error("Got packets out of order (expected sequence id {expected}, got {got})")]
    OutOfOrder { expected: u8, got: u8 },
}

/// A logical packet taken from a buffer by [`PacketAssembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of the first physical packet.
    pub seq: u8,
    /// Sequence id of the last physical packet (differs from `seq` for continued packets).
    pub last_seq: u8,
    pub payload: Vec<u8>,
}

/// Assembles logical packets from a byte buffer, bounded by a maximum size.
///
/// Feed bytes with [`PacketAssembler::extend`] and take packets with
/// [`PacketAssembler::next_packet`]. Bytes are only buffered up to one packet's header
/// beyond the limit: a length that promises more than the limit is rejected as soon as
/// its header is seen, before any payload is buffered.
#[derive(Debug)]
pub struct PacketAssembler {
    buf: Vec<u8>,
    /// Start of the bytes not yet returned; the consumed prefix is dropped lazily so
    /// that taking many small packets from one buffer stays linear.
    start: usize,
    max_packet_size: usize,
}

impl PacketAssembler {
    pub fn new(max_packet_size: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_packet_size,
        }
    }

    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Changes the limit, e.g. from the small one used before a client has logged in to
    /// the configured one.
    pub fn set_max_packet_size(&mut self, max_packet_size: usize) {
        self.max_packet_size = max_packet_size;
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to read more bytes into (appending), with room for at least `reserve`
    /// more; lets a driver read from a socket without an intermediate copy.
    pub fn read_buffer(&mut self, reserve: usize) -> &mut Vec<u8> {
        self.compact();
        self.buf.reserve(reserve);
        &mut self.buf
    }

    /// Bytes buffered and not yet returned as packets.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Removes and returns all buffered bytes (used when the stream changes hands, e.g.
    /// to forward the rest raw).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.compact();
        std::mem::take(&mut self.buf)
    }

    /// Drops the consumed prefix, and releases a large buffer once it is empty so an
    /// idle connection does not keep the memory of its largest packet.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }

    /// Returns the next complete logical packet, `Ok(None)` when more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, FrameError> {
        let base = self.start;
        let mut offset = 0;
        let mut total = 0usize;
        let mut first_seq = None;
        let mut last_seq: u8 = 0;
        loop {
            let Some(h) = peek_header(&self.buf[base + offset..]) else {
                return Ok(None);
            };
            if first_seq.is_some() {
                let expected = last_seq.wrapping_add(1);
                if h.seq != expected {
                    return Err(FrameError::OutOfOrder {
                        expected,
                        got: h.seq,
                    });
                }
            } else {
                first_seq = Some(h.seq);
            }
            last_seq = h.seq;
            total += h.len;
            if total > self.max_packet_size {
                return Err(FrameError::TooLarge {
                    limit: self.max_packet_size,
                });
            }
            if self.buf.len() < base + offset + h.wire_len() {
                return Ok(None);
            }
            offset += h.wire_len();
            if !h.continues() {
                break;
            }
        }
        let seq = first_seq.unwrap_or(0);
        let packet_bytes = &self.buf[base..base + offset];
        let payload = if offset == total + HEADER_LEN {
            packet_bytes[HEADER_LEN..].to_vec()
        } else {
            let mut payload = Vec::with_capacity(total);
            let mut at = 0;
            while at < offset {
                let Some(h) = peek_header(&packet_bytes[at..]) else {
                    break;
                };
                payload.extend_from_slice(&packet_bytes[at + HEADER_LEN..at + h.wire_len()]);
                at += h.wire_len();
            }
            payload
        };
        self.start += offset;
        if self.start == self.buf.len() {
            self.start = 0;
            self.buf.clear();
            self.compact();
        }
        Ok(Some(Packet {
            seq,
            last_seq,
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(bytes: &[u8], max: usize) -> Result<Option<Packet>, FrameError> {
        let mut a = PacketAssembler::new(max);
        a.extend(bytes);
        a.next_packet()
    }

    #[test]
    fn small_packet_round_trips() {
        let mut out = Vec::new();
        let mut seq = 3;
        write_packet(&mut out, &mut seq, b"hello");
        assert_eq!(seq, 4);
        assert_eq!(&out[..4], &[5, 0, 0, 3]);
        let p = assemble(&out, 100).unwrap().unwrap();
        assert_eq!(p.payload, b"hello");
        assert_eq!((p.seq, p.last_seq), (3, 3));
    }

    #[test]
    fn exact_multiple_of_max_payload_ends_with_empty_packet() {
        let payload = vec![7u8; MAX_PAYLOAD_LEN];
        let mut out = Vec::new();
        let mut seq = 0;
        write_packet(&mut out, &mut seq, &payload);
        assert_eq!(seq, 2);
        assert_eq!(out.len(), MAX_PAYLOAD_LEN + 2 * HEADER_LEN);
        let p = assemble(&out, DEFAULT_MAX_PACKET_SIZE).unwrap().unwrap();
        assert_eq!(p.payload.len(), MAX_PAYLOAD_LEN);
        assert_eq!(p.last_seq, 1);
    }

    #[test]
    fn large_payload_splits_and_reassembles() {
        let payload: Vec<u8> = (0..MAX_PAYLOAD_LEN * 2 + 10).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let mut seq = 0;
        write_packet(&mut out, &mut seq, &payload);
        assert_eq!(seq, 3);
        let mut a = PacketAssembler::new(DEFAULT_MAX_PACKET_SIZE);
        // Feed in uneven pieces: no packet until the last byte is there.
        let (head, tail) = out.split_at(out.len() - 1);
        a.extend(head);
        assert_eq!(a.next_packet(), Ok(None));
        a.extend(tail);
        let p = a.next_packet().unwrap().unwrap();
        assert_eq!(p.payload, payload);
        assert!(a.buffered().is_empty());
    }

    #[test]
    fn oversized_header_is_rejected_before_payload_arrives() {
        // Header promises 16 MiB - 1, limit is 1 KiB, no payload yet.
        let err = assemble(&[0xff, 0xff, 0xff, 0], 1024).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { limit: 1024 });
    }

    #[test]
    fn continuation_with_wrong_sequence_is_rejected() {
        let mut out = vec![0xff, 0xff, 0xff, 0];
        out.extend(std::iter::repeat_n(0u8, MAX_PAYLOAD_LEN));
        out.extend_from_slice(&[0, 0, 0, 5]);
        let err = assemble(&out, DEFAULT_MAX_PACKET_SIZE).unwrap_err();
        assert_eq!(
            err,
            FrameError::OutOfOrder {
                expected: 1,
                got: 5
            }
        );
    }

    #[test]
    fn two_packets_in_one_buffer_come_out_in_order() {
        let mut out = Vec::new();
        let mut seq = 0;
        write_packet(&mut out, &mut seq, b"a");
        write_packet(&mut out, &mut seq, b"bc");
        let mut a = PacketAssembler::new(100);
        a.extend(&out);
        assert_eq!(a.next_packet().unwrap().unwrap().payload, b"a");
        let p = a.next_packet().unwrap().unwrap();
        assert_eq!((p.payload.as_slice(), p.seq), (&b"bc"[..], 1));
        assert_eq!(a.next_packet(), Ok(None));
    }
}
