//! What the bench publisher writes and how each subscriber checks it, byte by byte, as it arrives.
//!
//! A segment is `segment_bytes` long, sent in writes of `write` bytes (the last may be shorter).
//! A write of at least [`STAMP`] bytes opens with its send time (nanoseconds since the bench
//! started, little-endian); every other byte follows a pattern that depends on the seq and the
//! offset, so a byte out of place, a lost write or bytes of another segment are all caught. The
//! checker needs no copy of what was sent: it knows the pattern and where each write begins, so it
//! reads a write's stamp when its first bytes arrive and records its latency when its last byte
//! does.

use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of send time at the start of every write that is long enough.
pub const STAMP: usize = 8;

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
        if len >= STAMP {
            out.put_u64_le(now_ns);
            offset += STAMP as u64;
        }
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
    seq: u64,
    offset: u64,
    stamp: [u8; STAMP],
    corrupt: bool,
}

impl Checker {
    pub fn new(layout: Layout, seq: u64) -> Checker {
        Checker {
            layout,
            seq,
            offset: 0,
            stamp: [0; STAMP],
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
            let stamped = write_len >= STAMP as u64;
            let in_write = self.offset - k * self.layout.write;
            let n = (write_len - in_write).min(chunk.len() as u64) as usize;
            let (piece, rest) = chunk.split_at(n);
            let mut body = piece;
            if stamped && in_write < STAMP as u64 {
                let from = in_write as usize;
                let m = (STAMP - from).min(n);
                self.stamp[from..from + m].copy_from_slice(&piece[..m]);
                body = &piece[m..];
            }
            let mut body_offset = self.offset + (n - body.len()) as u64;
            while !body.is_empty() {
                let expected = pattern(self.seq, body_offset, body.len());
                if body[..expected.len()] != *expected {
                    self.corrupt = true;
                    return;
                }
                body = &body[expected.len()..];
                body_offset += expected.len() as u64;
            }
            self.offset += n as u64;
            if stamped && in_write + n as u64 == write_len {
                on_write(u64::from_le_bytes(self.stamp));
            }
            chunk = rest;
        }
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
            }
        }
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
