//! State shared by every task of a run: the counters ([`Totals`]), each channel's progress
//! ([`ChannelRun`]), the measuring window and the clock of send times and latencies.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::payload::Layout;
use super::process;

/// Counters shared by every task of the run.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) published_bytes: AtomicU64,
    /// Bytes of measured segments received by all subscribers.
    pub(super) delivered_bytes: AtomicU64,
    /// Measured segments a subscriber finished (complete or not).
    pub(super) finished: AtomicU64,
    pub(super) complete: AtomicU64,
    pub(super) short: AtomicU64,
    pub(super) corrupt: AtomicU64,
    pub(super) jumps: AtomicU64,
    /// Everything else that went wrong: HTTP errors, a dropped connection, an unexpected end of
    /// stream or seq, a publisher failure, subscribers that never finished.
    pub(super) other_errors: AtomicU64,
    /// The first few distinct error messages, for the report.
    pub(super) samples: Mutex<Vec<String>>,
    pub(super) latency: Mutex<Option<Histogram<u64>>>,
}

impl Totals {
    pub(super) fn error(&self, message: String) {
        self.other_errors.fetch_add(1, Ordering::Relaxed);
        self.note(message);
    }

    pub(super) fn note(&self, message: String) {
        let mut samples = self.samples.lock();
        if samples.len() < 5 && !samples.contains(&message) {
            samples.push(message);
        }
    }

    pub(super) fn record_latencies(&self, samples: &[u64]) {
        record(&self.latency, samples.iter().map(|&ns| ns.max(1)));
    }
}

/// Records `samples` in the histogram of `slot`, made on first use: 0 to 1 hour in nanoseconds
/// at 3 significant digits (longer values are clamped); small counts fit as well.
pub(super) fn record(slot: &Mutex<Option<Histogram<u64>>>, samples: impl IntoIterator<Item = u64>) {
    let mut slot = slot.lock();
    let histogram = slot.get_or_insert_with(|| {
        Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
    });
    for value in samples {
        histogram.saturating_record(value);
    }
}

/// One channel of the run: where it is and which subscribers are done with which seq.
pub(super) struct ChannelRun {
    pub(super) url: String,
    pub(super) layout: Layout,
    /// The last seq (seq 0 is the warm-up).
    pub(super) last: u64,
    pub(super) subs: u32,
    /// Per seq, subscribers that are done with it: read it, lost it, skipped it or gave up.
    pub(super) done: Vec<AtomicU32>,
    /// Wakes the publisher when a seq is done by everyone.
    pub(super) all_done: Notify,
    /// Cancelled once every subscriber is done with the last seq.
    pub(super) last_done: CancellationToken,
}

impl ChannelRun {
    pub(super) fn mark_done(&self, seqs: std::ops::RangeInclusive<u64>) {
        for seq in seqs {
            if let Some(count) = self.done.get(seq as usize)
                && count.fetch_add(1, Ordering::AcqRel) + 1 == self.subs
            {
                self.all_done.notify_one();
                if seq == self.last {
                    self.last_done.cancel();
                }
            }
        }
    }

    pub(super) async fn wait_done(&self, seq: u64) {
        while self.done[seq as usize].load(Ordering::Acquire) < self.subs {
            self.all_done.notified().await;
        }
    }
}

/// When measuring began (the first channel past its warm-up), and the servers being watched.
pub(super) struct Window {
    pub(super) started: Mutex<Option<Instant>>,
    pub(super) watch: Vec<process::Watch>,
    /// The bench's own CPU seconds when measuring began.
    pub(super) own_cpu_start: Mutex<f64>,
}

impl Window {
    pub(super) fn begin(&self, at: Instant) {
        let mut started = self.started.lock();
        if started.is_none() {
            *started = Some(at);
            *self.own_cpu_start.lock() = own_cpu_seconds();
            for watch in &self.watch {
                watch.mark_start();
            }
        }
    }
}

pub(super) fn own_cpu_seconds() -> f64 {
    process::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Nanoseconds since the run began: the clock of every send time and latency.
#[derive(Clone, Copy)]
pub(super) struct Clock(pub(super) Instant);

impl Clock {
    pub(super) fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}
