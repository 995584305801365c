//! What the server counts: gauges of the requests in progress ([`Stats`], one [`StatGuard`] per
//! request) and running totals ([`Counter`]), read together as [`Metrics`] for `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Channel, Inner, Metrics, Server};

/// What the server's requests are doing right now (gauges, for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// GETs waiting for a segment's first byte.
    pub waiting_gets: usize,
    /// GET responses streaming segment bytes.
    pub streaming_gets: usize,
    /// POSTs waiting for their first body byte (preconnects).
    pub pending_posts: usize,
    /// POSTs streaming a body into a segment.
    pub writing_posts: usize,
    /// Live viewers (`GET /{name}/live` and `live.mp4`).
    pub live_viewers: usize,
    /// Channels being remuxed to fMP4 for their `live.mp4` viewers (not requests: one per channel,
    /// however many viewers).
    pub remuxes: usize,
}

impl Stats {
    /// Requests in progress, of every kind.
    pub fn requests(&self) -> usize {
        self.waiting_gets
            + self.streaming_gets
            + self.pending_posts
            + self.writing_posts
            + self.live_viewers
    }
}

/// Running totals since the server started (for `/metrics`).
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    /// Segment bytes received from publishers.
    BytesIn = 0,
    /// Segment bytes handed to subscribers' connections (added per megabyte and when each
    /// response ends).
    BytesOut = 1,
    SegmentsStarted = 2,
    SegmentsCompleted = 3,
    SegmentsFailed = 4,
    /// `404` answers.
    NotFound = 5,
    /// `470` answers.
    NotHeld = 6,
    /// Segments live viewers were sent (whole, or up to where they failed or the viewer left).
    LiveSent = 7,
    /// Segments live viewers skipped because they were behind.
    LiveSkipped = 8,
}

/// How many [`Counter`]s there are (the last one's index + 1).
pub(super) const COUNTERS: usize = Counter::LiveSkipped as usize + 1;

#[derive(Clone, Copy)]
pub(crate) enum Stat {
    WaitingGets = 0,
    StreamingGets = 1,
    PendingPosts = 2,
    WritingPosts = 3,
    LiveViewers = 4,
    Remuxes = 5,
}

/// How many [`Stat`]s there are (the last one's index + 1).
pub(super) const STATS: usize = Stat::Remuxes as usize + 1;

/// Counts one request in a gauge for as long as it lives. A streaming GET's guard also tallies the
/// bytes it hands out and adds them to the shared total once, when the response ends: a shared
/// counter bumped per chunk per subscriber would be a contended cache line on the hot path.
pub(crate) struct StatGuard {
    inner: Arc<Inner>,
    stat: Stat,
    bytes_out: u64,
    /// The channel the request is about, whose share of the gauge it also counts in.
    channel: Option<Arc<Channel>>,
}

/// Bytes a streaming GET tallies before it adds them to the shared total: often enough that a
/// response streaming for hours shows in `trickle_bytes_out_total` as it goes, rarely enough that
/// the shared counter is touched about once per megabyte per subscriber.
const BYTES_OUT_BATCH: u64 = 1 << 20;

impl StatGuard {
    pub(crate) fn add_bytes_out(&mut self, n: u64) {
        self.bytes_out += n;
        if self.bytes_out >= BYTES_OUT_BATCH {
            self.inner.counters[Counter::BytesOut as usize]
                .fetch_add(std::mem::take(&mut self.bytes_out), Ordering::Relaxed);
        }
    }
}

impl Drop for StatGuard {
    fn drop(&mut self) {
        self.inner.gauges[self.stat as usize].fetch_sub(1, Ordering::Relaxed);
        if let Some(channel) = &self.channel {
            channel
                .activity()
                .gauge(self.stat)
                .fetch_sub(1, Ordering::Relaxed);
        }
        if self.bytes_out > 0 {
            self.inner.counters[Counter::BytesOut as usize]
                .fetch_add(self.bytes_out, Ordering::Relaxed);
        }
    }
}

impl Server {
    pub(crate) fn stat(&self, stat: Stat) -> StatGuard {
        self.inner.gauges[stat as usize].fetch_add(1, Ordering::Relaxed);
        let requests = self.stats().requests();
        self.inner
            .request_peak
            .fetch_max(requests, Ordering::Relaxed);
        StatGuard {
            inner: self.inner.clone(),
            stat,
            bytes_out: 0,
            channel: None,
        }
    }

    /// [`Server::stat`] for a request about `channel`: counted in the channel's gauges too.
    pub(crate) fn stat_in(&self, stat: Stat, channel: &Arc<Channel>) -> StatGuard {
        let mut guard = self.stat(stat);
        channel
            .activity()
            .gauge(stat)
            .fetch_add(1, Ordering::Relaxed);
        guard.channel = Some(channel.clone());
        guard
    }

    pub(crate) fn count(&self, counter: Counter, n: u64) {
        self.inner.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Everything `/metrics` reports, read now.
    pub fn metrics(&self) -> Metrics {
        let c = |c: Counter| self.inner.counters[c as usize].load(Ordering::Relaxed);
        Metrics {
            channels: self.channel_count(),
            stats: self.stats(),
            bytes_in: c(Counter::BytesIn),
            bytes_out: c(Counter::BytesOut),
            segments_started: c(Counter::SegmentsStarted),
            segments_completed: c(Counter::SegmentsCompleted),
            segments_failed: c(Counter::SegmentsFailed),
            responses_404: c(Counter::NotFound),
            responses_470: c(Counter::NotHeld),
            live_segments_sent: c(Counter::LiveSent),
            live_segments_skipped: c(Counter::LiveSkipped),
            buffered_bytes: self.inner.budget.used(),
            buffer_budget_bytes: self.inner.budget.limit(),
            budget_refusals: self.inner.budget.refusals(),
        }
    }

    /// The most requests that were in progress at once since the last call (or the start), and
    /// the count now; the next call measures from now on. For deciding when a burst is over.
    pub fn take_request_peak(&self) -> (usize, usize) {
        let now = self.stats().requests();
        let peak = self.inner.request_peak.swap(now, Ordering::Relaxed);
        (peak.max(now), now)
    }

    /// The most segment bytes held at once since the last call (or the start), and the bytes held
    /// now; the next call measures from now on. For deciding when a burst is over.
    pub fn take_buffered_peak(&self) -> (u64, u64) {
        self.inner.budget.take_peak()
    }

    pub fn stats(&self) -> Stats {
        let g = |s: Stat| self.inner.gauges[s as usize].load(Ordering::Relaxed);
        Stats {
            live_viewers: g(Stat::LiveViewers),
            waiting_gets: g(Stat::WaitingGets),
            streaming_gets: g(Stat::StreamingGets),
            pending_posts: g(Stat::PendingPosts),
            writing_posts: g(Stat::WritingPosts),
            remuxes: g(Stat::Remuxes),
        }
    }
}
