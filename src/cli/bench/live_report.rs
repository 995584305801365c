//! What a `live` run shows: per class of viewer (fast, slow), the segments received and skipped,
//! how far behind the publisher they were, publish → receive latencies and errors; with the
//! traffic and the CPU lines of the other profiles' report ([`super::report`]).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::bail;
use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::args::Settings;
use super::live::LiveShared;
use super::process::ServerUsage;
use super::report::{
    Latency, ServerReport, settings_line, write_cpu, write_samples, write_traffic,
};
use super::viewer::ClassTotals;

/// Segments behind the publisher when a segment began.
#[derive(Debug, serde::Serialize)]
struct Lag {
    p50: u64,
    p99: u64,
    max: u64,
}

/// What the viewers of one class saw.
#[derive(Debug, serde::Serialize)]
struct ClassReport {
    viewers: u32,
    /// Bytes a viewer received per second while measuring, on average (a slow one's should be
    /// near `--slow-rate`).
    bytes_per_second_per_viewer: f64,
    /// Measured segments times viewers.
    segments_expected: u64,
    /// Measured segments received whole and intact.
    segments_received: u64,
    /// Measured segments the server skipped.
    skipped: u64,
    max_skipped_per_viewer: u64,
    viewers_skipping: u32,
    corrupt_segments: u64,
    partial_segments: u64,
    /// HTTP, connection and protocol failures.
    errors: u64,
    /// Segments behind the publisher when each measured segment began.
    lag_segments: Option<Lag>,
    /// Publish → receive latency of each measured segment's first write.
    first_write_latency: Option<Latency>,
    /// Publish → receive latency of every write of the measured segments.
    write_latency: Option<Latency>,
}

impl ClassReport {
    fn new(class: &ClassTotals, segments: u64, seconds: f64) -> ClassReport {
        let viewers = class.viewers.load(Ordering::Relaxed);
        let bytes = class.bytes.load(Ordering::Relaxed) as f64;
        let latency = |h: &Mutex<Option<Histogram<u64>>>| h.lock().as_ref().map(Latency::of);
        ClassReport {
            viewers,
            bytes_per_second_per_viewer: bytes / f64::from(viewers.max(1)) / seconds,
            segments_expected: u64::from(viewers) * segments,
            segments_received: class.segments.load(Ordering::Relaxed),
            skipped: class.skipped.load(Ordering::Relaxed),
            max_skipped_per_viewer: class.max_skipped.load(Ordering::Relaxed),
            viewers_skipping: class.viewers_skipping.load(Ordering::Relaxed),
            corrupt_segments: class.corrupt.load(Ordering::Relaxed),
            partial_segments: class.partial.load(Ordering::Relaxed),
            errors: class.errors.load(Ordering::Relaxed),
            lag_segments: class.lag.lock().as_ref().map(|h| Lag {
                p50: h.value_at_quantile(0.50),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            }),
            first_write_latency: latency(&class.first_write),
            write_latency: latency(&class.writes),
        }
    }

    fn write(&self, out: &mut String, name: &str) {
        let _ = writeln!(
            out,
            "  {name:<11} {} viewers ({:.3} MB/s each): {} of {} segments, skipped {} (max {} per \
             viewer, {} viewers skipped), corrupt {}, partial {}, errors {}",
            self.viewers,
            self.bytes_per_second_per_viewer / 1e6,
            self.segments_received,
            self.segments_expected,
            self.skipped,
            self.max_skipped_per_viewer,
            self.viewers_skipping,
            self.corrupt_segments,
            self.partial_segments,
            self.errors
        );
        if let Some(lag) = &self.lag_segments {
            let _ = writeln!(
                out,
                "              lag p50 {}, p99 {}, max {} segments behind the publisher",
                lag.p50, lag.p99, lag.max
            );
        }
        if let Some(l) = &self.first_write_latency {
            let _ = writeln!(out, "              first write {}", l.text());
        }
        if let Some(l) = &self.write_latency {
            let _ = writeln!(
                out,
                "              every write {} ({} writes)",
                l.text(),
                l.writes
            );
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct Errors {
    /// Every failure: corrupt and partial segments, the viewers' errors and the others.
    total: u64,
    /// Failures of no viewer: a publisher's, viewers that never began or finished.
    other: u64,
    samples: Vec<String>,
}

/// What a `live` run measured (the `--json` output).
#[derive(Debug, serde::Serialize)]
pub(super) struct LiveReport {
    settings: Settings,
    seconds: f64,
    published_bytes: u64,
    /// Bytes received by all viewers while measuring.
    delivered_bytes: u64,
    throughput_bytes_per_second: f64,
    fast: ClassReport,
    slow: ClassReport,
    errors: Errors,
    bench_cpu_seconds: f64,
    /// Each `--server-pid` process, in the order given.
    servers: Vec<ServerReport>,
}

impl LiveReport {
    pub(super) fn new(
        settings: Settings,
        shared: &LiveShared,
        elapsed: Duration,
        own_cpu: f64,
        servers: Vec<ServerUsage>,
    ) -> LiveReport {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let totals = &shared.totals;
        let delivered = totals.delivered_bytes.load(Ordering::Relaxed);
        let fast = ClassReport::new(&shared.fast, settings.segments, seconds);
        let slow = ClassReport::new(&shared.slow, settings.segments, seconds);
        let other = totals.other_errors.load(Ordering::Relaxed);
        let failures = |c: &ClassReport| c.corrupt_segments + c.partial_segments + c.errors;
        LiveReport {
            settings,
            seconds,
            published_bytes: totals.published_bytes.load(Ordering::Relaxed),
            delivered_bytes: delivered,
            throughput_bytes_per_second: delivered as f64 / seconds,
            errors: Errors {
                total: failures(&fast) + failures(&slow) + other,
                other,
                samples: totals.samples.lock().clone(),
            },
            fast,
            slow,
            bench_cpu_seconds: own_cpu,
            servers: ServerReport::all(servers, seconds, delivered),
        }
    }

    fn text(&self) -> String {
        let mut out = settings_line(&self.settings);
        write_traffic(
            &mut out,
            self.seconds,
            self.published_bytes,
            self.delivered_bytes,
        );
        let target = self.settings.rate * u64::from(self.settings.channels);
        let published = self.published_bytes as f64 / self.seconds;
        if published < 0.95 * target as f64 {
            // Then every latency and lag is the machine's as much as the server's.
            let _ = writeln!(
                out,
                "  note        the publishers fell behind their rate ({:.3} of {:.3} MB/s)",
                published / 1e6,
                target as f64 / 1e6
            );
        }
        self.fast.write(&mut out, "fast");
        self.slow.write(&mut out, "slow");
        let _ = writeln!(
            out,
            "  errors      {} (other {})",
            self.errors.total, self.errors.other
        );
        write_samples(&mut out, &self.errors.samples);
        write_cpu(
            &mut out,
            self.bench_cpu_seconds,
            self.seconds,
            &self.servers,
        );
        out
    }

    /// Prints the report, as text or JSON; an error if a viewer that keeps up skipped, or
    /// anything failed (a corrupt or partial segment above all).
    pub(super) fn print(&self, json: bool) -> anyhow::Result<()> {
        super::report::show(self, || self.text(), json)?;
        if self.fast.skipped > 0 || self.errors.total > 0 {
            bail!(
                "fast viewers skipped {} segments; {} errors ({} corrupt, {} partial segments)",
                self.fast.skipped,
                self.errors.total,
                self.fast.corrupt_segments + self.slow.corrupt_segments,
                self.fast.partial_segments + self.slow.partial_segments
            );
        }
        Ok(())
    }
}
