//! What `trickle serve --metrics-listen` reports: a [`Metrics`] snapshot of the server's gauges
//! and running totals, rendered in the Prometheus text format, and the router that serves it at
//! `/metrics` on its own listener (so it can stay private while the Trickle port is public).

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;

use super::{Server, Stats};

/// A snapshot of everything `/metrics` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Channels that exist now (`_changes` included).
    pub channels: usize,
    /// Requests in progress.
    pub stats: Stats,
    /// Segment bytes received from publishers.
    pub bytes_in: u64,
    /// Segment bytes handed to subscribers' connections, counted per megabyte as each response
    /// goes and when it ends.
    pub bytes_out: u64,
    /// Segments whose first byte arrived (zero-byte segments included).
    pub segments_started: u64,
    /// Segments that ended normally.
    pub segments_completed: u64,
    /// Segments that ended abnormally: the publisher went away or failed, the segment was too
    /// large, the channel was closed under it.
    pub segments_failed: u64,
    pub responses_404: u64,
    pub responses_470: u64,
    /// Segment bytes the server holds now: the rings' and those of versions that left a ring but
    /// are still being read.
    pub buffered_bytes: u64,
    /// The most segment bytes the server may hold (`--memory-budget`).
    pub buffer_budget_bytes: u64,
    /// Writes refused because they would have gone over the budget.
    pub budget_refusals: u64,
    /// Segments sent to live viewers.
    pub live_segments_sent: u64,
    /// Segments live viewers skipped because they were behind.
    pub live_segments_skipped: u64,
}

impl Metrics {
    /// The Prometheus text exposition format (version 0.0.4), with the process's resident memory.
    pub fn prometheus(&self, resident_memory: Option<u64>) -> String {
        let mut out = String::new();
        self.write_load(&mut out);
        self.write_traffic(&mut out);
        self.write_buffers(&mut out);
        self.write_live(&mut out);
        let _ = writeln!(
            out,
            "# HELP trickle_responses_total Error answers by status.\n# TYPE trickle_responses_total counter\n\
             trickle_responses_total{{status=\"404\"}} {}\ntrickle_responses_total{{status=\"470\"}} {}",
            self.responses_404, self.responses_470
        );
        if let Some(rss) = resident_memory {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
                 # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
            );
        }
        out
    }

    /// Live viewers and what they were sent.
    fn write_live(&self, out: &mut String) {
        metric(
            out,
            "trickle_live_viewers",
            "gauge",
            "Live viewers (GET /{name}/live and live.mp4) now.",
            self.stats.live_viewers as u64,
        );
        metric(
            out,
            "trickle_live_remuxes",
            "gauge",
            "Channels remuxed to fMP4 for their live.mp4 viewers now (one per channel).",
            self.stats.remuxes as u64,
        );
        let _ = writeln!(
            out,
            "# HELP trickle_live_segments_total Segments of live viewers, sent or skipped (behind).
             # TYPE trickle_live_segments_total counter
             trickle_live_segments_total{{outcome=\"sent\"}} {}
             trickle_live_segments_total{{outcome=\"skipped\"}} {}",
            self.live_segments_sent, self.live_segments_skipped
        );
    }

    /// Channels and the requests in progress.
    fn write_load(&self, out: &mut String) {
        metric(
            out,
            "trickle_channels",
            "gauge",
            "Channels that exist now.",
            self.channels as u64,
        );
        metric(
            out,
            "trickle_gets_waiting",
            "gauge",
            "GETs waiting for a segment's first byte.",
            self.stats.waiting_gets as u64,
        );
        metric(
            out,
            "trickle_gets_streaming",
            "gauge",
            "GET responses streaming segment bytes.",
            self.stats.streaming_gets as u64,
        );
        metric(
            out,
            "trickle_posts_waiting",
            "gauge",
            "POSTs waiting for their first body byte (preconnects).",
            self.stats.pending_posts as u64,
        );
        metric(
            out,
            "trickle_posts_writing",
            "gauge",
            "POSTs streaming a body into a segment.",
            self.stats.writing_posts as u64,
        );
    }

    /// Bytes and segments through the server.
    fn write_traffic(&self, out: &mut String) {
        metric(
            out,
            "trickle_bytes_in_total",
            "counter",
            "Segment bytes received from publishers.",
            self.bytes_in,
        );
        metric(
            out,
            "trickle_bytes_out_total",
            "counter",
            "Segment bytes sent to subscribers (counted per megabyte as each response goes, and when it ends).",
            self.bytes_out,
        );
        metric(
            out,
            "trickle_segments_started_total",
            "counter",
            "Segments whose first byte arrived.",
            self.segments_started,
        );
        metric(
            out,
            "trickle_segments_completed_total",
            "counter",
            "Segments that ended normally.",
            self.segments_completed,
        );
        metric(
            out,
            "trickle_segments_failed_total",
            "counter",
            "Segments that ended abnormally.",
            self.segments_failed,
        );
    }

    /// The segment bytes held and their budget.
    fn write_buffers(&self, out: &mut String) {
        metric(
            out,
            "trickle_buffered_bytes",
            "gauge",
            "Segment bytes held now, including segments that left the ring but are still being read.",
            self.buffered_bytes,
        );
        metric(
            out,
            "trickle_buffer_budget_bytes",
            "gauge",
            "Most segment bytes the server may hold.",
            self.buffer_budget_bytes,
        );
        metric(
            out,
            "trickle_budget_refusals_total",
            "counter",
            "Segment writes refused because they would have gone over the buffer budget.",
            self.budget_refusals,
        );
    }
}

/// Writes one metric with its help and type lines.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// This process's resident set size (`VmRSS` of `/proc/self/status`; Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// Another process's resident set size (`VmRSS` of `/proc/PID/status`; Linux only).
pub fn resident_memory_bytes_of(pid: u32) -> Option<u64> {
    vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn vm_rss(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `GET /metrics` for `server`, to run on a listener of its own.
pub fn router(server: Server) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(server)
}

async fn scrape(State(server): State<Server>) -> Response {
    let text = server.metrics().prometheus(resident_memory_bytes());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
