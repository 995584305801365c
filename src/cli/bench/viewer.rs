//! A viewer of the `live` profile: one `GET /{name}/live` read with the bench's own HTTP/1.1
//! client ([`super::wire`]), its body cut back into whole segments (each one's first write names
//! its seq, [`super::payload`]) and every byte checked. Per measured segment it notes how far
//! behind the publisher it was when the segment began (in segments), the latency of the segment's
//! first write and of every write; gaps between the seqs it received are the segments the server
//! made it skip. A slow viewer reads at `--slow-rate` through a small receive buffer, so that the
//! server's socket to it fills as a viewer's on a slow link does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::live::{LiveChannel, LiveShared};
use super::payload::{Checker, Verdict};
use super::publisher::Pacer;
use super::state::record;
use super::wire::WireSubscriber;

/// What the viewers of one class (fast or slow) saw, summed over them.
#[derive(Default)]
pub(super) struct ClassTotals {
    pub(super) viewers: AtomicU32,
    /// Bytes received while measuring.
    pub(super) bytes: AtomicU64,
    /// Measured segments received whole and intact.
    pub(super) segments: AtomicU64,
    /// Measured segments the server skipped.
    pub(super) skipped: AtomicU64,
    /// The most measured segments one viewer skipped.
    pub(super) max_skipped: AtomicU64,
    /// Viewers that skipped at least one measured segment.
    pub(super) viewers_skipping: AtomicU32,
    /// Segments with a byte other than the one sent (or another segment's bytes).
    pub(super) corrupt: AtomicU64,
    /// Segments whose stream ended (or failed) in their middle.
    pub(super) partial: AtomicU64,
    /// Other failures: HTTP errors, dropped connections, an early end of the stream.
    pub(super) errors: AtomicU64,
    /// Segments the viewer was behind the publisher when each measured segment began.
    pub(super) lag: Mutex<Option<Histogram<u64>>>,
    /// Publish → receive latency of each measured segment's first write, in nanoseconds.
    pub(super) first_write: Mutex<Option<Histogram<u64>>>,
    /// Publish → receive latency of every write of the measured segments, in nanoseconds.
    pub(super) writes: Mutex<Option<Histogram<u64>>>,
}

/// Why a viewer stopped before it was done.
enum Failure {
    Corrupt(Option<u64>),
    /// The stream ended, or failed, in the middle of a segment: with why, and the segment.
    Partial(String, Option<u64>),
    Other(String),
}

/// One viewer's progress through its stream.
struct Viewer {
    channel: Arc<LiveChannel>,
    shared: Arc<LiveShared>,
    slow: bool,
    checker: Checker,
    /// The seq of the last segment begun.
    last_seq: Option<u64>,
    /// Whether the segment being read is measured.
    measured: bool,
    /// Lag and first-write latency of the segment being read, recorded with its writes' latencies
    /// once it is whole.
    at_start: (u64, u64),
    latencies: Vec<u64>,
    skipped: u64,
    /// Bytes received while the run was measuring, not yet added to the totals.
    window_bytes: u64,
    /// Done with the measured segments: received the last one, or begun a later one.
    done: bool,
}

/// Watches `channel` with `reader` until done with its measured segments (reading at `pace`
/// bytes per second if slow), counts what it saw in `shared`, then holds the connection until the
/// channel's publisher has stopped (closing it earlier would load the server while others still
/// read).
pub(super) async fn view(
    channel: Arc<LiveChannel>,
    shared: Arc<LiveShared>,
    mut reader: WireSubscriber,
    pace: Option<u64>,
) {
    let mut viewer = Viewer {
        checker: Checker::any_seq(channel.layout),
        channel,
        shared,
        slow: pace.is_some(),
        last_seq: None,
        measured: false,
        at_start: (0, 0),
        latencies: Vec::new(),
        skipped: 0,
        window_bytes: 0,
        done: false,
    };
    viewer.class().viewers.fetch_add(1, Ordering::Relaxed);
    let outcome = viewer.watch(&mut reader, pace.map(Pacer::new)).await;
    viewer.finish(outcome);
    viewer.channel.release.cancelled().await;
    drop(reader);
}

impl Viewer {
    fn class(&self) -> &ClassTotals {
        if self.slow {
            &self.shared.slow
        } else {
            &self.shared.fast
        }
    }

    /// Reads the stream until done with the measured segments.
    async fn watch(
        &mut self,
        reader: &mut WireSubscriber,
        mut pacer: Option<Pacer>,
    ) -> Result<(), Failure> {
        match reader.watch("from=next").await {
            Ok(true) => {}
            Ok(false) => return Err(Failure::Other("the channel ended before it began".into())),
            Err(err) => return Err(Failure::Other(format!("{err:#}"))),
        }
        while !self.done {
            let len = match reader.chunk().await {
                Ok(Some(bytes)) => {
                    let now = self.shared.clock.now_ns();
                    self.take(bytes, now)?;
                    bytes.len() as u64
                }
                Ok(None) => return Err(self.cut_short("the stream ended")),
                Err(err) => return Err(self.cut_short(&format!("{err:#}"))),
            };
            if let Some(pacer) = &mut pacer {
                pacer.took(len).await;
            }
        }
        Ok(())
    }

    /// The stream stopped for `why` before the viewer was done: partway through a segment, or
    /// at a boundary.
    fn cut_short(&self, why: &str) -> Failure {
        if self.checker.received() > 0 {
            Failure::Partial(why.into(), self.checker.seq())
        } else {
            let after = self
                .last_seq
                .map_or("its first segment".into(), |s| format!("seq {s}"));
            Failure::Other(format!("{why} after {after}"))
        }
    }

    /// Checks bytes received at `now`, segment by segment.
    fn take(&mut self, mut bytes: &[u8], now: u64) -> Result<(), Failure> {
        if self.shared.measuring.load(Ordering::Relaxed) {
            self.window_bytes += bytes.len() as u64;
        }
        while !bytes.is_empty() && !self.done {
            let n = bytes.len().min(self.checker.remaining() as usize);
            let known = self.checker.seq().is_some();
            let latencies = &mut self.latencies;
            self.checker
                .feed(&bytes[..n], |sent| latencies.push(now.saturating_sub(sent)));
            bytes = &bytes[n..];
            if self.checker.verdict() == Verdict::Corrupt {
                return Err(Failure::Corrupt(self.checker.seq()));
            }
            if let (false, Some(seq)) = (known, self.checker.seq()) {
                self.began(seq, now)?;
            }
            if self.checker.remaining() == 0 && !self.done {
                self.ended();
            }
        }
        Ok(())
    }

    /// Segment `seq` began (its header arrived at `now`): counts the measured seqs skipped since
    /// the one before, and notes how far behind and how late it is.
    fn began(&mut self, seq: u64, now: u64) -> Result<(), Failure> {
        let previous = self.last_seq.replace(seq);
        match previous {
            None => self.channel.viewer_started(),
            Some(previous) if seq <= previous => {
                return Err(Failure::Other(format!(
                    "seq {seq} came after seq {previous}"
                )));
            }
            Some(_) => {}
        }
        let Some(window) = self.channel.window() else {
            return Ok(());
        };
        let from = previous.map_or(*window.start(), |p| (p + 1).max(*window.start()));
        self.skipped += seq.min(*window.end() + 1).saturating_sub(from);
        if seq > *window.end() {
            self.done = true;
            return Ok(());
        }
        self.measured = seq >= *window.start();
        let lag = self
            .channel
            .writing
            .load(Ordering::Relaxed)
            .saturating_sub(seq);
        let sent = self.checker.first_sent().unwrap_or(now);
        self.at_start = (lag, now.saturating_sub(sent).max(1));
        Ok(())
    }

    /// The segment being read is whole: counts it if measured, and starts on the next.
    fn ended(&mut self) {
        if self.measured {
            let class = self.class();
            class.segments.fetch_add(1, Ordering::Relaxed);
            record(&class.lag, [self.at_start.0]);
            record(&class.first_write, [self.at_start.1]);
            record(&class.writes, self.latencies.iter().map(|&ns| ns.max(1)));
            self.shared.totals.finished.fetch_add(1, Ordering::Relaxed);
            let last = self.channel.window().map(|w| *w.end());
            self.done = self.checker.seq() == last;
        }
        self.latencies.clear();
        self.measured = false;
        self.checker = Checker::any_seq(self.channel.layout);
        self.flush_bytes();
    }

    fn flush_bytes(&mut self) {
        let bytes = std::mem::take(&mut self.window_bytes);
        self.class().bytes.fetch_add(bytes, Ordering::Relaxed);
        self.shared
            .totals
            .delivered_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts how the viewer ended, and tells its channel it is done.
    fn finish(&mut self, outcome: Result<(), Failure>) {
        self.flush_bytes();
        let class = self.class();
        let totals = &self.shared.totals;
        let seq = |seq: Option<u64>| seq.map_or("a segment".into(), |s| format!("seq {s}"));
        match outcome {
            Ok(()) => {}
            Err(Failure::Corrupt(at)) => {
                class.corrupt.fetch_add(1, Ordering::Relaxed);
                totals.note(format!("{}: corrupted bytes", seq(at)));
            }
            Err(Failure::Partial(why, at)) => {
                class.partial.fetch_add(1, Ordering::Relaxed);
                totals.note(format!("{}: partial ({why})", seq(at)));
            }
            Err(Failure::Other(message)) => {
                class.errors.fetch_add(1, Ordering::Relaxed);
                totals.note(message);
            }
        }
        if self.skipped > 0 {
            class.skipped.fetch_add(self.skipped, Ordering::Relaxed);
            class.max_skipped.fetch_max(self.skipped, Ordering::Relaxed);
            class.viewers_skipping.fetch_add(1, Ordering::Relaxed);
            totals.finished.fetch_add(self.skipped, Ordering::Relaxed);
        }
        if self.last_seq.is_none() {
            self.channel.viewer_started();
        }
        self.channel.viewer_done();
    }
}
