//! What a run shows: the live progress bar while it runs, then the report, as text or as the
//! `--json` object, with the latency percentiles from the run's histogram.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hdrhistogram::Histogram;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::{Profile, Settings};
use super::process::ServerUsage;
use super::state::Totals;

pub(super) fn progress_bar(total: u64) -> ProgressBar {
    let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressDrawTarget::stderr_with_hz(4)
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} segments received {msg}")
            .expect("a valid template"),
    );
    bar
}

pub(super) async fn tick_progress(bar: ProgressBar, totals: Arc<Totals>) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let bytes = totals.delivered_bytes.load(Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64().max(0.001);
        bar.set_position(totals.finished.load(Ordering::Relaxed));
        bar.set_message(format!(
            "{} delivered ({}/s)",
            HumanBytes(bytes),
            HumanBytes((bytes as f64 / seconds) as u64)
        ));
    }
}

#[derive(Debug, serde::Serialize)]
pub(super) struct Latency {
    pub(super) writes: u64,
    pub(super) p50_ms: f64,
    pub(super) p90_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds.
    pub(super) fn of(h: &Histogram<u64>) -> Latency {
        let ms = |ns: u64| ns as f64 / 1e6;
        Latency {
            writes: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }

    /// `p50 …, p90 …, p99 …, max …` in milliseconds.
    pub(super) fn text(&self) -> String {
        format!(
            "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}

#[derive(Debug, serde::Serialize)]
pub(super) struct Errors {
    pub(super) total: u64,
    jumps_470: u64,
    short_segments: u64,
    corrupted_segments: u64,
    /// HTTP, connection and protocol failures (see `Totals::other_errors`).
    other: u64,
    samples: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct ServerReport {
    #[serde(flatten)]
    usage: ServerUsage,
    /// CPU seconds per second of the run (1.0 = one core busy).
    cores: f64,
    cpu_seconds_per_gb: f64,
}

impl ServerReport {
    /// What each server used in `seconds` while `delivered` bytes reached the subscribers (all
    /// of them, wherever they read).
    pub(super) fn all(usages: Vec<ServerUsage>, seconds: f64, delivered: u64) -> Vec<ServerReport> {
        let report = |usage: ServerUsage| ServerReport {
            usage,
            cores: usage.cpu_seconds / seconds,
            cpu_seconds_per_gb: usage.cpu_seconds / (delivered as f64 / 1e9).max(1e-9),
        };
        usages.into_iter().map(report).collect()
    }
}

/// What a run measured (the `--json` output).
#[derive(Debug, serde::Serialize)]
pub(super) struct Report {
    settings: Settings,
    seconds: f64,
    published_bytes: u64,
    delivered_bytes: u64,
    /// Bytes received by all subscribers per second.
    throughput_bytes_per_second: f64,
    segments_expected: u64,
    pub(super) segments_complete: u64,
    latency: Option<Latency>,
    pub(super) errors: Errors,
    /// CPU seconds the bench itself used while measuring: on a machine it shares with the server,
    /// a load generator near all cores bounds what can be measured.
    bench_cpu_seconds: f64,
    /// Each `--server-pid` process, in the order given.
    servers: Vec<ServerReport>,
}

impl Report {
    pub(super) fn new(
        settings: Settings,
        totals: &Totals,
        elapsed: Duration,
        own_cpu: f64,
        expected: u64,
        servers: Vec<ServerUsage>,
    ) -> Report {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let delivered = totals.delivered_bytes.load(Ordering::Relaxed);
        let latency = totals.latency.lock().as_ref().map(Latency::of);
        let jumps = totals.jumps.load(Ordering::Relaxed);
        let short = totals.short.load(Ordering::Relaxed);
        let corrupt = totals.corrupt.load(Ordering::Relaxed);
        let other = totals.other_errors.load(Ordering::Relaxed);
        Report {
            settings,
            seconds,
            published_bytes: totals.published_bytes.load(Ordering::Relaxed),
            delivered_bytes: delivered,
            throughput_bytes_per_second: delivered as f64 / seconds,
            segments_expected: expected,
            segments_complete: totals.complete.load(Ordering::Relaxed),
            latency,
            errors: Errors {
                total: jumps + short + corrupt + other,
                jumps_470: jumps,
                short_segments: short,
                corrupted_segments: corrupt,
                other,
                samples: totals.samples.lock().clone(),
            },
            bench_cpu_seconds: own_cpu,
            servers: ServerReport::all(servers, seconds, delivered),
        }
    }

    pub(super) fn text(&self) -> String {
        let mut out = settings_line(&self.settings);
        self.write_delivery(&mut out);
        self.write_errors(&mut out);
        write_cpu(
            &mut out,
            self.bench_cpu_seconds,
            self.seconds,
            &self.servers,
        );
        out
    }

    /// How much went through, and how fast.
    fn write_delivery(&self, out: &mut String) {
        write_traffic(
            out,
            self.seconds,
            self.published_bytes,
            self.delivered_bytes,
        );
        let _ = writeln!(
            out,
            "  segments    {} of {} complete",
            self.segments_complete, self.segments_expected
        );
        match &self.latency {
            Some(l) => {
                let _ = writeln!(out, "  latency     {} ({} writes)", l.text(), l.writes);
            }
            None => {
                let _ = writeln!(out, "  latency     no complete segment");
            }
        }
    }

    /// The errors subscribers saw, with samples.
    fn write_errors(&self, out: &mut String) {
        let e = &self.errors;
        let _ = writeln!(
            out,
            "  errors      {} (470 jumps {}, short {}, corrupted {}, other {})",
            e.total, e.jumps_470, e.short_segments, e.corrupted_segments, e.other
        );
        write_samples(out, &e.samples);
    }
}

/// What was run: the profile, channels, subscribers (and the slow ones of `live`), segments,
/// writes and rate.
pub(super) fn settings_line(s: &Settings) -> String {
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let profile = s
        .profile
        .and_then(|p| p.to_possible_value())
        .map(|p| format!("profile {}: ", p.get_name()))
        .unwrap_or_default();
    let rate = if s.rate == 0 {
        "as fast as possible".to_string()
    } else {
        format!("{:.2} MB/s per channel", mb(s.rate))
    };
    let lag = s
        .max_lag
        .map(|k| format!(", max lag {k}"))
        .unwrap_or_default();
    let slow = match (s.slow_fraction, s.slow_rate) {
        (Some(_), Some(rate)) => format!(" ({} slow at {:.3} MB/s)", s.slow_viewers(), mb(rate)),
        _ => String::new(),
    };
    let who = if s.profile == Some(Profile::Live) {
        "viewers"
    } else {
        "subscribers"
    };
    let mut line = format!(
        "{profile}{} channel(s) × {} {who}{slow}, {} segments of {} in {}-byte writes, {rate}{lag}\n",
        s.channels,
        s.subs,
        s.segments,
        HumanBytes(s.segment_bytes),
        s.write
    );
    write_read_at(&mut line, s);
    line
}

/// Where the readers read, when not at the publish URL (`--subscribe-from`).
pub(super) fn write_read_at(out: &mut String, s: &Settings) {
    if !s.subscribe_from.is_empty() {
        let _ = writeln!(
            out,
            "  read at     {} (in turn)",
            s.subscribe_from.join(", ")
        );
    }
}

/// How long the run measured, and how much was published and delivered in that time.
pub(super) fn write_traffic(out: &mut String, seconds: f64, published: u64, delivered: u64) {
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let _ = writeln!(out, "  time        {seconds:.2} s");
    let _ = writeln!(
        out,
        "  published   {:.1} MB ({:.1} MB/s)",
        mb(published),
        mb(published) / seconds
    );
    let _ = writeln!(
        out,
        "  delivered   {:.1} MB ({:.3} GB/s fan-out)",
        mb(delivered),
        delivered as f64 / seconds / 1e9
    );
}

/// The first few error messages, indented under the errors line.
/// Prints a report: `json` as one JSON object, else its `text`.
pub(super) fn show(
    report: &impl serde::Serialize,
    text: impl FnOnce() -> String,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

pub(super) fn write_samples(out: &mut String, samples: &[String]) {
    for sample in samples {
        let _ = writeln!(out, "              {sample}");
    }
}

/// The CPU the load generator and each server used, and whether the machine was the limit.
pub(super) fn write_cpu(
    out: &mut String,
    bench_cpu_seconds: f64,
    seconds: f64,
    servers: &[ServerReport],
) {
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let own_cores = bench_cpu_seconds / seconds;
    let _ = writeln!(
        out,
        "  load gen    {:.2} CPU s ({:.0}% of a core)",
        bench_cpu_seconds,
        own_cores * 100.0
    );
    for server in servers {
        let _ = writeln!(
            out,
            "  server      {:.2} CPU s ({:.0}% of a core, {:.3} s per GB), RSS {:.1} MB at start, peak {:.1} MB (pid {})",
            server.usage.cpu_seconds,
            server.cores * 100.0,
            server.cpu_seconds_per_gb,
            mb(server.usage.rss_start_bytes),
            mb(server.usage.rss_peak_bytes),
            server.usage.pid
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let busy = own_cores + servers.iter().map(|s| s.cores).sum::<f64>();
    if busy > 0.9 * cores as f64 {
        let _ = writeln!(
            out,
            "  note        {busy:.1} of this machine's {cores} cores were busy: the figures are bounded by CPU"
        );
    }
}
