//! Helpers of the live-viewer tests (`GET /{name}/live`): test segments that carry their seq, so
//! that a viewer's body can be cut back into whole segments and each one checked; clients that
//! publish them or read them slowly; and a record of how far behind the publisher each segment
//! reached a viewer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::{Head, Raw, pattern};

/// Segment `seq` of the test streams: its number, then a pattern, `len` bytes in all.
pub fn segment(seq: u64, len: usize) -> Vec<u8> {
    let mut data = format!("SEG{seq:06}:").into_bytes();
    data.extend(pattern(len - data.len(), seq));
    data
}

/// Cuts a live body made of `len`-byte segments back into their seqs, checking every byte.
pub fn seqs_of(body: &[u8], len: usize) -> Vec<u64> {
    assert_eq!(body.len() % len, 0, "the body is whole segments");
    body.chunks(len)
        .map(|piece| {
            let seq = seq_at(piece);
            assert!(piece == segment(seq, len), "segment {seq} is intact");
            seq
        })
        .collect()
}

/// The seq of the test segment that starts `piece`.
pub fn seq_at(piece: &[u8]) -> u64 {
    std::str::from_utf8(&piece[3..9]).unwrap().parse().unwrap()
}

/// POSTs `data` to `path` on a connection of its own; the status.
pub async fn post(addr: SocketAddr, path: String, data: Vec<u8>) -> u16 {
    let mut raw = Raw::connect(addr).await;
    raw.send_request("POST", &path, &[], Some(&data)).await;
    raw.head().await.status
}

/// A viewer with a small receive buffer (so the server's writes to it block soon).
pub async fn slow_viewer(addr: SocketAddr, path: &str) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut raw = Raw::from_stream(stream);
    raw.send_request("GET", path, &[], Some(b"")).await;
    raw
}

/// A live body of `len`-byte test segments as a viewer reads it: its bytes, and for every segment
/// it started, how many segments had been published when it read the segment's first bytes.
pub struct LiveBody {
    len: usize,
    pub bytes: Vec<u8>,
    /// (seq, segments published) per segment started, in order.
    pub starts: Vec<(u64, u64)>,
}

impl LiveBody {
    pub fn new(len: usize) -> LiveBody {
        LiveBody {
            len,
            bytes: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// Adds `chunk`, read when `published` segments had been published; the seq of the last
    /// segment now whole.
    pub fn push(&mut self, chunk: &[u8], published: u64) -> Option<u64> {
        self.bytes.extend_from_slice(chunk);
        let mut next = self.starts.len() * self.len;
        while next + 9 <= self.bytes.len() {
            self.starts.push((seq_at(&self.bytes[next..]), published));
            next += self.len;
        }
        let whole = self.bytes.len() / self.len;
        whole
            .checked_sub(1)
            .map(|last| seq_at(&self.bytes[last * self.len..]))
    }

    /// The seqs of the whole body, every byte checked ([`seqs_of`]).
    pub fn seqs(&self) -> Vec<u64> {
        seqs_of(&self.bytes, self.len)
    }

    /// How many segments behind the publisher the viewer was at each segment it started after its
    /// first skip: the segments published whole after that one when it read its first bytes.
    pub fn lags_after_first_skip(&self) -> Vec<u64> {
        let first_skip = self.starts.windows(2).position(|w| w[1].0 != w[0].0 + 1);
        let after = first_skip.map_or(&[][..], |at| &self.starts[at + 1..]);
        after
            .iter()
            .map(|&(seq, published)| published.saturating_sub(seq + 1))
            .collect()
    }
}

/// Reads a live response into `body` to its end, telling `whole` the last segment it has whole;
/// `published` counts the segments published so far.
pub async fn read_live(
    viewer: &mut Raw,
    head: &Head,
    body: &mut LiveBody,
    published: &AtomicU64,
    whole: &watch::Sender<Option<u64>>,
) {
    while let Some(chunk) = viewer.body_chunk(head).await.unwrap() {
        let last = body.push(&chunk, published.load(Ordering::SeqCst));
        whole.send_replace(last);
    }
}
