//! What the bench publisher writes and how each subscriber checks it, byte by byte, as it arrives.
//!
//! A segment is `segment_bytes` long, sent in writes of `write` bytes (the last may be shorter).
//! A write of at least [`STAMP`] bytes opens with its send time (nanoseconds since the bench
//! started, little-endian); the first write of a segment, if at least [`HEADER`] bytes long, then
//! carries the segment's seq (little-endian), so that a reader of a stream of segments back to back
//! (`GET /{name}/live`) can tell which segment it is reading. Every other byte follows a pattern
//! that depends on the seq and the offset, so a byte out of place, a lost write or bytes of another
//! segment are all caught. The checker needs no copy of what was sent: it knows the pattern and
//! where each write begins, so it reads a write's stamp when its first bytes arrive and records
//! its latency when its last byte does.

use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of send time at the start of every write that is long enough.
pub const STAMP: usize = 8;
/// Bytes of send time and seq at the start of a segment whose first write is long enough.
pub const HEADER: usize = STAMP + 8;

/// The pattern repeats every 251 bytes (a prime, so it never lines up with power-of-two writes).
const PERIOD: u64 = 251;
/// Longest run compared against the table at once.
const RUN: usize = 64 * 1024;

static TABLE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    (0..PERIOD as usize + RUN)
        .map(|i| (i % PERIOD as usize) as u8)
        .collect()
});

/// The expected bytes from `offset` of segment `seq`, at most [`RUN`] of them.
fn pattern(seq: u64, offset: u64, len: usize) -> &'static [u8] {
    let start = ((offset % PERIOD + seq % PERIOD) % PERIOD) as usize;
    &TABLE[start..start + len.min(RUN)]
}

/// The shape of every segment of a run.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub segment_bytes: u64,
    pub write: u64,
}

impl Layout {
    /// Writes per segment.
    pub fn writes(&self) -> u64 {
        self.segment_bytes.div_ceil(self.write)
    }

    /// Length of write `k` (the last one holds the remainder).
    pub fn write_len(&self, k: u64) -> u64 {
        self.write.min(self.segment_bytes - k * self.write)
    }

    /// Whether each segment's first write carries its seq.
    pub fn carries_seq(&self) -> bool {
        self.write_len(0) >= HEADER as u64
    }

    /// The bytes of write `k` that precede its pattern: its send time, and for the first write
    /// the seq too, when the write is long enough for them.
    fn prefix_len(&self, k: u64) -> u64 {
        match self.write_len(k) {
            len if k == 0 && len >= HEADER as u64 => HEADER as u64,
            len if len >= STAMP as u64 => STAMP as u64,
            _ => 0,
        }
    }

    /// Writes per segment that carry a send time.
    #[cfg(test)]
    pub fn stamped_writes(&self) -> u64 {
        (0..self.writes())
            .filter(|&k| self.write_len(k) >= STAMP as u64)
            .count() as u64
    }

    /// The bytes of write `k` of segment `seq`, stamped with `now_ns`.
    pub fn build_write(&self, seq: u64, k: u64, now_ns: u64) -> Bytes {
        let len = self.write_len(k) as usize;
        let mut out = BytesMut::with_capacity(len);
        let mut offset = k * self.write;
        let prefix = self.prefix_len(k);
        if prefix >= STAMP as u64 {
            out.put_u64_le(now_ns);
        }
        if prefix == HEADER as u64 {
            out.put_u64_le(seq);
        }
        offset += prefix;
        while out.len() < len {
            let run = pattern(seq, offset, len - out.len());
            out.put_slice(run);
            offset += run.len() as u64;
        }
        out.freeze()
    }
}

/// How a received segment turned out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Complete,
    /// It ended early with this many bytes.
    Short(u64),
    /// A byte differed from what was sent, or there were too many.
    Corrupt,
}

/// Checks one segment as its chunks arrive and measures the latency of each write.
pub struct Checker {
    layout: Layout,
    /// The segment's seq: known from the start, or (for [`Checker::any_seq`]) once its header is
    /// read.
    seq: Option<u64>,
    offset: u64,
    /// The prefix of the write being read: its send time, and in the first write the seq.
    prefix: [u8; HEADER],
    /// The send time of the segment's first write, once its prefix is read.
    first_sent: Option<u64>,
    corrupt: bool,
}

impl Checker {
    /// A checker of segment `seq` (a seq in its header must match).
    pub fn new(layout: Layout, seq: u64) -> Checker {
        Checker::with_seq(layout, Some(seq))
    }

    /// A checker of whichever segment comes next, which learns the seq from the segment's header
    /// (the layout must [carry it](Layout::carries_seq), or every byte after it is corrupt).
    pub fn any_seq(layout: Layout) -> Checker {
        Checker::with_seq(layout, None)
    }

    fn with_seq(layout: Layout, seq: Option<u64>) -> Checker {
        Checker {
            layout,
            seq,
            offset: 0,
            prefix: [0; HEADER],
            first_sent: None,
            corrupt: false,
        }
    }

    /// Checks the next bytes. For every stamped write they complete, `on_write` gets its send time.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_write: impl FnMut(u64)) {
        while !chunk.is_empty() && !self.corrupt {
            if self.offset >= self.layout.segment_bytes {
                self.corrupt = true;
                return;
            }
            let k = self.offset / self.layout.write;
            let write_len = self.layout.write_len(k);
            let prefix = self.layout.prefix_len(k);
            let in_write = self.offset - k * self.layout.write;
            let n = (write_len - in_write).min(chunk.len() as u64) as usize;
            let (piece, rest) = chunk.split_at(n);
            let mut body = piece;
            if in_write < prefix {
                let from = in_write as usize;
                let m = (prefix as usize - from).min(n);
                self.prefix[from..from + m].copy_from_slice(&piece[..m]);
                body = &piece[m..];
                if (from + m) as u64 == prefix {
                    self.prefix_read(k, prefix);
                }
            }
            let body_offset = self.offset + (n - body.len()) as u64;
            if !self.check_pattern(body, body_offset) {
                self.corrupt = true;
                return;
            }
            self.offset += n as u64;
            if prefix >= STAMP as u64 && in_write + n as u64 == write_len {
                on_write(self.stamp());
            }
            chunk = rest;
        }
    }

    /// The send time in the prefix just read.
    fn stamp(&self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|i| self.prefix[i]))
    }

    /// Write `k`'s prefix of `len` bytes is complete: notes the segment's first send time, and
    /// its seq from the header (a seq other than the expected one is corruption).
    fn prefix_read(&mut self, k: u64, len: u64) {
        if k == 0 {
            self.first_sent = Some(self.stamp());
        }
        if len == HEADER as u64 {
            let seq = u64::from_le_bytes(std::array::from_fn(|i| self.prefix[STAMP + i]));
            match self.seq {
                Some(expected) if expected != seq => self.corrupt = true,
                _ => self.seq = Some(seq),
            }
        }
    }

    /// Whether `body`, at `offset` in the segment, is the pattern of the segment's seq (pattern
    /// bytes before the seq is known are corrupt).
    fn check_pattern(&self, mut body: &[u8], mut offset: u64) -> bool {
        if body.is_empty() {
            return true;
        }
        let Some(seq) = self.seq else {
            return false;
        };
        while !body.is_empty() {
            let expected = pattern(seq, offset, body.len());
            if body[..expected.len()] != *expected {
                return false;
            }
            body = &body[expected.len()..];
            offset += expected.len() as u64;
        }
        true
    }

    /// The segment's seq, once known.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// When the segment's first write was sent, once its prefix arrived.
    pub fn first_sent(&self) -> Option<u64> {
        self.first_sent
    }

    /// Bytes of the segment still to come.
    pub fn remaining(&self) -> u64 {
        self.layout.segment_bytes.saturating_sub(self.offset)
    }

    /// Bytes checked so far.
    pub fn received(&self) -> u64 {
        self.offset
    }

    /// The verdict once the segment has ended.
    pub fn verdict(&self) -> Verdict {
        if self.corrupt {
            Verdict::Corrupt
        } else if self.offset < self.layout.segment_bytes {
            Verdict::Short(self.offset)
        } else {
            Verdict::Complete
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(layout: Layout, seq: u64) -> Vec<u8> {
        (0..layout.writes())
            .flat_map(|k| layout.build_write(seq, k, 1000 + k).to_vec())
            .collect()
    }

    #[test]
    fn a_segment_checks_out_whatever_the_chunking() {
        for (segment_bytes, write) in [
            (1 << 20, 32 << 10),
            (256 << 10, 1300),
            (4096, 4096),
            (20, 7),
        ] {
            let layout = Layout {
                segment_bytes,
                write,
            };
            let bytes = segment(layout, 3);
            assert_eq!(bytes.len() as u64, segment_bytes);
            for chunk in [1, 5, 8, 1000, 70_000] {
                let mut checker = Checker::new(layout, 3);
                let mut stamps = Vec::new();
                for piece in bytes.chunks(chunk) {
                    checker.feed(piece, |stamp| stamps.push(stamp));
                }
                assert_eq!(
                    checker.verdict(),
                    Verdict::Complete,
                    "{layout:?} chunk {chunk}"
                );
                let expected: Vec<u64> = (0..layout.writes())
                    .filter(|&k| layout.write_len(k) >= STAMP as u64)
                    .map(|k| 1000 + k)
                    .collect();
                assert_eq!(stamps, expected);
                assert_eq!(stamps.len() as u64, layout.stamped_writes());
                assert_eq!(checker.seq(), Some(3));
                if write >= STAMP as u64 {
                    assert_eq!(checker.first_sent(), Some(1000));
                }
            }
        }
    }

    #[test]
    fn a_stream_of_segments_is_cut_back_into_its_seqs() {
        let layout = Layout {
            segment_bytes: 5000,
            write: 1300,
        };
        assert!(layout.carries_seq());
        let seqs = [4, 5, 9, 10, 300];
        let stream: Vec<u8> = seqs.iter().flat_map(|&seq| segment(layout, seq)).collect();
        for chunk in [1, 7, 16, 999, 20_000] {
            let mut found = Vec::new();
            let mut checker = Checker::any_seq(layout);
            for mut piece in stream.chunks(chunk) {
                while !piece.is_empty() {
                    let n = piece.len().min(checker.remaining() as usize);
                    checker.feed(&piece[..n], |_| {});
                    piece = &piece[n..];
                    if checker.remaining() == 0 {
                        assert_eq!(checker.verdict(), Verdict::Complete, "chunk {chunk}");
                        found.push((checker.seq().unwrap(), checker.first_sent().unwrap()));
                        checker = Checker::any_seq(layout);
                    }
                }
            }
            let expected: Vec<(u64, u64)> = seqs.iter().map(|&seq| (seq, 1000)).collect();
            assert_eq!(found, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn a_seq_is_known_only_from_a_header_and_a_wrong_one_is_caught() {
        // First writes shorter than the header carry no seq: a checker that must learn it fails.
        let short = Layout {
            segment_bytes: 100,
            write: 10,
        };
        assert!(!short.carries_seq());
        let mut checker = Checker::any_seq(short);
        checker.feed(&segment(short, 1), |_| {});
        assert_eq!(checker.verdict(), Verdict::Corrupt);

        // A header naming another seq than the one expected is corruption, before any pattern.
        let layout = Layout {
            segment_bytes: 100,
            write: 50,
        };
        let bytes = segment(layout, 2);
        let mut checker = Checker::new(layout, 3);
        checker.feed(&bytes[..HEADER], |_| {});
        assert_eq!(checker.verdict(), Verdict::Corrupt);
        let mut checker = Checker::any_seq(layout);
        checker.feed(&bytes[..HEADER - 1], |_| {});
        assert_eq!(checker.seq(), None);
        checker.feed(&bytes[HEADER - 1..HEADER], |_| {});
        assert_eq!(checker.seq(), Some(2));
    }

    #[test]
    fn wrong_seq_flipped_byte_short_and_long_segments_are_caught() {
        let layout = Layout {
            segment_bytes: 10_000,
            write: 1300,
        };
        let bytes = segment(layout, 7);
        let mut other = Checker::new(layout, 8);
        other.feed(&bytes, |_| {});
        assert_eq!(other.verdict(), Verdict::Corrupt);

        let mut flipped = bytes.clone();
        flipped[5000] ^= 1;
        let mut checker = Checker::new(layout, 7);
        checker.feed(&flipped, |_| {});
        assert_eq!(checker.verdict(), Verdict::Corrupt);

        let mut checker = Checker::new(layout, 7);
        checker.feed(&bytes[..9000], |_| {});
        assert_eq!(checker.verdict(), Verdict::Short(9000));

        let mut checker = Checker::new(layout, 7);
        checker.feed(&bytes, |_| {});
        checker.feed(b"x", |_| {});
        assert_eq!(checker.verdict(), Verdict::Corrupt);
    }
}
