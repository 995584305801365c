//! `trickle bench URL`: a load generator for any Trickle server, like `redis-benchmark`.
//!
//! Each channel gets one publisher and `--subs` subscribers, all real HTTP clients of the reference
//! wire protocol (preconnects, 470 jumps): the publisher is [`crate::client`]'s, the subscribers
//! the bench's own lean HTTP/1.1 ones ([`wire`]) for `http://` servers, the library's (sharing one
//! connection pool) for `https://`. Every
//! write carries its send time ([`payload`]), so each subscriber measures publish → receive latency
//! per write and checks every byte. Seq 0 is a warm-up: the publisher waits until every subscriber
//! has read it, so all of them are connected before anything is measured. With `--max-lag K` the
//! loop is closed: seq `s` starts only when every subscriber has finished `s − K`, so the publisher
//! runs exactly as fast as the slowest subscriber (that is the `max` profile). With `--server-pid`
//! the server's CPU time and peak memory come from `/proc` ([`process`]).

mod payload;
mod process;
mod wire;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use tokio::sync::{Barrier, Notify};
use tokio_util::sync::CancellationToken;

use self::payload::{Checker, Layout, Verdict};
use self::process::ServerUsage;
use super::{ClientArgs, parse_size};
use crate::client::{
    ClientError, OnGap, PublishStart, Publisher, PublisherOptions, SubscribeStart, Subscriber,
    SubscriberOptions, new_http_client,
};

/// How long subscribers may take to finish after the last segment was published.
const GRACE: Duration = Duration::from_secs(10);

/// Named loads. Flags given as well override a profile's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Throughput: 100 subscribers, 500 segments of 1 MiB in 32 KiB writes, as fast as the
    /// slowest subscriber allows (--max-lag 2).
    Max,
    /// Live video: 100 subscribers, 256 KiB segments in 1300-byte writes at 1.25 MB/s (10 Mbit/s).
    Paced,
    /// Many viewers: 10,000 subscribers, 4 KiB segments, 10 segments a second. Needs about 20,100
    /// open files in both the bench and the server (`ulimit -n 65536`).
    C10k,
}

struct Defaults {
    subs: u32,
    segments: u64,
    segment_bytes: u64,
    write: u64,
    rate: u64,
    max_lag: u64,
}

impl Profile {
    fn defaults(profile: Option<Profile>) -> Defaults {
        match profile {
            None => Defaults {
                subs: 10,
                segments: 100,
                segment_bytes: 1 << 20,
                write: 32 << 10,
                rate: 0,
                max_lag: 2,
            },
            Some(Profile::Max) => Defaults {
                subs: 100,
                segments: 500,
                segment_bytes: 1 << 20,
                write: 32 << 10,
                rate: 0,
                max_lag: 2,
            },
            Some(Profile::Paced) => Defaults {
                subs: 100,
                segments: 120,
                segment_bytes: 256 << 10,
                write: 1300,
                rate: 1_250_000,
                max_lag: 0,
            },
            Some(Profile::C10k) => Defaults {
                subs: 10_000,
                segments: 100,
                segment_bytes: 4 << 10,
                write: 4 << 10,
                rate: 40 << 10,
                max_lag: 0,
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The server's base URL, e.g. http://localhost:2939 (channels `bench-…` are made under it).
    pub url: String,
    /// A named load [default: 10 subscribers, 100 segments of 1 MiB in 32 KiB writes, --max-lag 2].
    #[arg(long, env = "TRICKLE_PROFILE", value_enum)]
    pub profile: Option<Profile>,
    /// Channels, each with one publisher and its own subscribers.
    #[arg(long, env = "TRICKLE_CHANNELS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub channels: u32,
    /// Subscribers per channel.
    #[arg(long, env = "TRICKLE_SUBS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub subs: Option<u32>,
    /// Segments per channel (measured; a warm-up segment comes first).
    #[arg(long, env = "TRICKLE_SEGMENTS", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub segments: Option<u64>,
    /// Bytes per segment (`1MiB`, `4KiB`).
    #[arg(long, env = "TRICKLE_SEGMENT_BYTES", value_parser = parse_size)]
    pub segment_bytes: Option<u64>,
    /// Bytes per write; each write of 8 bytes or more carries its send time.
    #[arg(long, env = "TRICKLE_WRITE", value_parser = parse_size)]
    pub write: Option<u64>,
    /// Publish rate of each channel in bytes per second (`1.25MB` is not a size: write `1250000`);
    /// 0 = as fast as possible.
    #[arg(long, env = "TRICKLE_RATE", value_parser = parse_size)]
    pub rate: Option<u64>,
    /// Closed loop: start seq s only when every subscriber has finished s − K. 0 = off.
    #[arg(long, env = "TRICKLE_MAX_LAG")]
    pub max_lag: Option<u64>,
    /// Also report this process's CPU seconds and peak RSS (the server's PID; Linux /proc).
    #[arg(long, env = "TRICKLE_SERVER_PID")]
    pub server_pid: Option<u32>,
    /// Print the report as one JSON object instead of text.
    #[arg(long, env = "TRICKLE_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// One run's parameters, after the profile and the flags are merged.
#[derive(Clone, Debug, serde::Serialize)]
struct Settings {
    profile: Option<Profile>,
    channels: u32,
    subs: u32,
    segments: u64,
    segment_bytes: u64,
    write: u64,
    rate: u64,
    max_lag: Option<u64>,
}

impl BenchArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let d = Profile::defaults(self.profile);
        let settings = Settings {
            profile: self.profile,
            channels: self.channels,
            subs: self.subs.unwrap_or(d.subs),
            segments: self.segments.unwrap_or(d.segments),
            segment_bytes: self.segment_bytes.unwrap_or(d.segment_bytes),
            write: self.write.unwrap_or(d.write),
            rate: self.rate.unwrap_or(d.rate),
            max_lag: Some(self.max_lag.unwrap_or(d.max_lag)).filter(|&k| k > 0),
        };
        if settings.segment_bytes == 0 || settings.write == 0 {
            bail!("--segment-bytes and --write must be greater than zero");
        }
        Ok(settings)
    }
}

/// Counters shared by every task of the run.
#[derive(Default)]
struct Totals {
    published_bytes: AtomicU64,
    /// Bytes of measured segments received by all subscribers.
    delivered_bytes: AtomicU64,
    /// Measured segments a subscriber finished (complete or not).
    finished: AtomicU64,
    complete: AtomicU64,
    short: AtomicU64,
    corrupt: AtomicU64,
    jumps: AtomicU64,
    /// Everything else that went wrong: HTTP errors, a dropped connection, an unexpected end of
    /// stream or seq, a publisher failure, subscribers that never finished.
    other_errors: AtomicU64,
    /// The first few distinct error messages, for the report.
    samples: Mutex<Vec<String>>,
    latency: Mutex<Option<Histogram<u64>>>,
}

impl Totals {
    fn error(&self, message: String) {
        self.other_errors.fetch_add(1, Ordering::Relaxed);
        self.note(message);
    }

    fn note(&self, message: String) {
        let mut samples = self.samples.lock();
        if samples.len() < 5 && !samples.contains(&message) {
            samples.push(message);
        }
    }

    fn record_latencies(&self, samples: &[u64]) {
        let mut latency = self.latency.lock();
        // 1 ns to 1 hour at 3 significant digits; longer values are clamped.
        let histogram = latency.get_or_insert_with(|| {
            Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
        });
        for &ns in samples {
            histogram.saturating_record(ns.max(1));
        }
    }
}

/// One channel of the run: where it is and which subscribers are done with which seq.
struct ChannelRun {
    url: String,
    layout: Layout,
    /// The last seq (seq 0 is the warm-up).
    last: u64,
    subs: u32,
    /// Per seq, subscribers that are done with it: read it, lost it, skipped it or gave up.
    done: Vec<AtomicU32>,
    /// Wakes the publisher when a seq is done by everyone.
    all_done: Notify,
    /// Cancelled once every subscriber is done with the last seq.
    last_done: CancellationToken,
}

impl ChannelRun {
    fn mark_done(&self, seqs: std::ops::RangeInclusive<u64>) {
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

    async fn wait_done(&self, seq: u64) {
        while self.done[seq as usize].load(Ordering::Acquire) < self.subs {
            self.all_done.notified().await;
        }
    }
}

/// When measuring began (the first channel past its warm-up), and the server being watched.
struct Window {
    started: Mutex<Option<Instant>>,
    watch: Option<process::Watch>,
    /// The bench's own CPU seconds when measuring began.
    own_cpu_start: Mutex<f64>,
}

impl Window {
    fn begin(&self, at: Instant) {
        let mut started = self.started.lock();
        if started.is_none() {
            *started = Some(at);
            *self.own_cpu_start.lock() = own_cpu_seconds();
            if let Some(watch) = &self.watch {
                watch.mark_start();
            }
        }
    }
}

fn own_cpu_seconds() -> f64 {
    process::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Nanoseconds since the run began: the clock of every send time and latency.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let base = args.url.trim_end_matches('/').to_string();
    let reqwest_url: reqwest::Url = base
        .parse()
        .with_context(|| format!("invalid server URL {:?}", args.url))?;
    if !matches!(reqwest_url.scheme(), "http" | "https") {
        bail!(
            "invalid server URL {:?}: expected http:// or https://",
            args.url
        );
    }
    let needed_files = u64::from(settings.channels) * (u64::from(settings.subs) + 1) * 2 + 64;
    super::raise_open_files_limit(needed_files)?;

    let mut connect = args.client.connect_options()?;
    connect.http = Some(new_http_client(&connect).context("cannot build the HTTP client")?);
    let watch = match args.server_pid {
        Some(pid) => Some(process::Watch::start(pid)?),
        None => None,
    };
    let window = Arc::new(Window {
        started: Mutex::new(None),
        watch,
        own_cpu_start: Mutex::new(own_cpu_seconds()),
    });

    let clock = Clock(Instant::now());
    let totals = Arc::new(Totals::default());
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let run_id = format!("{:08x}", since_epoch.as_nanos() as u32 ^ std::process::id());
    let layout = Layout {
        segment_bytes: settings.segment_bytes,
        write: settings.write,
    };
    let expected = u64::from(settings.channels) * u64::from(settings.subs) * settings.segments;
    let progress = progress_bar(expected);
    let ticker = tokio::spawn(tick_progress(progress.clone(), totals.clone()));

    // Every channel is created before its subscribers connect, so their first GET waits for seq 0.
    let barrier = Arc::new(Barrier::new(settings.channels as usize));
    let mut publishers = Vec::new();
    let mut subscribers = Vec::new();
    for k in 0..settings.channels {
        let run = Arc::new(ChannelRun {
            url: format!("{base}/bench-{run_id}-{k}"),
            layout,
            last: settings.segments,
            subs: settings.subs,
            done: (0..=settings.segments).map(|_| AtomicU32::new(0)).collect(),
            all_done: Notify::new(),
            last_done: CancellationToken::new(),
        });
        let publisher = Publisher::new(
            &run.url,
            PublisherOptions {
                content_type: "application/octet-stream".into(),
                start: PublishStart::Seq(0),
                connect: connect.clone(),
                ..Default::default()
            },
        )?;
        publisher
            .create()
            .await
            .with_context(|| format!("cannot create channel {}", run.url))?;
        let target = match reqwest_url.scheme() {
            "http" => {
                let url = run.url.parse().context("invalid channel URL")?;
                Some(Arc::new(
                    wire::Target::resolve(&url, &connect.headers).await?,
                ))
            }
            _ => None,
        };
        for _ in 0..settings.subs {
            let reader = match &target {
                Some(target) => Reader::Wire(wire::WireSubscriber::new(target.clone(), 0)),
                None => {
                    let options = SubscriberOptions {
                        start: SubscribeStart::Seq(0),
                        on_gap: OnGap::Jump,
                        connect: connect.clone(),
                        ..Default::default()
                    };
                    Reader::Library {
                        subscriber: Box::new(Subscriber::new(&run.url, options)?),
                        segment: None,
                        chunk: Default::default(),
                    }
                }
            };
            subscribers.push(tokio::spawn(subscribe(
                run.clone(),
                totals.clone(),
                clock,
                reader,
            )));
        }
        publishers.push(tokio::spawn(publish(
            publisher,
            run,
            totals.clone(),
            clock,
            settings.clone(),
            barrier.clone(),
            window.clone(),
        )));
    }
    // Publishers first: once every segment is out, subscribers get GRACE to finish; any still
    // waiting then (for a seq that will never come) are ended by closing their channels.
    let mut open_channels = Vec::new();
    for publisher in publishers {
        if let Some(publisher) = publisher.await.context("a publisher task panicked")? {
            open_channels.push(publisher);
        }
    }
    let mut subscribers = futures_util::future::join_all(subscribers);
    let stragglers = tokio::time::timeout(GRACE, &mut subscribers).await.is_err();
    let ended = Instant::now();
    if stragglers {
        totals.error(format!(
            "subscribers still reading {} s after the last segment was published: channels closed",
            GRACE.as_secs()
        ));
    }
    for publisher in open_channels {
        let url = publisher.url().to_string();
        if let Err(err) = publisher.close().await {
            totals.error(format!("closing {url}: {err}"));
        }
    }
    if stragglers && tokio::time::timeout(GRACE, &mut subscribers).await.is_err() {
        totals.error("subscribers still running after their channels were closed".into());
    }
    ticker.abort();
    progress.finish_and_clear();
    let server = match &window.watch {
        Some(watch) => Some(watch.finish().await?),
        None => None,
    };
    let started = window.started.lock().unwrap_or(ended);
    let own_cpu = own_cpu_seconds() - *window.own_cpu_start.lock();
    let report = Report::new(
        settings,
        &totals,
        ended.duration_since(started),
        own_cpu,
        expected,
        server,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    if report.errors.total > 0 || report.segments_complete < expected {
        bail!(
            "{} of {} segments complete, {} errors",
            report.segments_complete,
            expected,
            report.errors.total
        );
    }
    Ok(())
}

/// The publisher of one channel: the warm-up seq 0, then seqs 1..=last, paced by `--rate` and held
/// back by `--max-lag`. Returns the publisher to close the channel with once the subscribers are
/// done, or `None` if it failed (the channel is then closed at once, so subscribers end too).
async fn publish(
    mut publisher: Publisher,
    run: Arc<ChannelRun>,
    totals: Arc<Totals>,
    clock: Clock,
    settings: Settings,
    barrier: Arc<Barrier>,
    window: Arc<Window>,
) -> Option<Publisher> {
    let warm_up = write_segment(&mut publisher, &run, &totals, clock, 0, None).await;
    if warm_up.is_ok() {
        run.wait_done(0).await;
    }
    // Every channel starts its measured segments together.
    barrier.wait().await;
    let mut result = warm_up;
    if result.is_ok() {
        let start = Instant::now();
        window.begin(start);
        let mut pacer = Pacer {
            start,
            rate: settings.rate,
            sent: 0,
        };
        for seq in 1..=run.last {
            if let Some(lag) = settings.max_lag
                && seq > lag
            {
                run.wait_done(seq - lag).await;
            }
            result =
                write_segment(&mut publisher, &run, &totals, clock, seq, Some(&mut pacer)).await;
            if result.is_err() {
                break;
            }
        }
    }
    match result {
        Ok(()) => Some(publisher),
        Err(err) => {
            totals.error(format!("publisher of {}: {err}", run.url));
            let _ = publisher.close().await;
            None
        }
    }
}

async fn write_segment(
    publisher: &mut Publisher,
    run: &ChannelRun,
    totals: &Totals,
    clock: Clock,
    seq: u64,
    mut pacer: Option<&mut Pacer>,
) -> Result<(), ClientError> {
    let mut segment = publisher.next_segment();
    for k in 0..run.layout.writes() {
        let len = run.layout.write_len(k);
        if let Some(pacer) = pacer.as_deref_mut() {
            pacer.wait(len).await;
        }
        segment
            .write(run.layout.build_write(seq, k, clock.now_ns()))
            .await?;
        if seq > 0 {
            totals.published_bytes.fetch_add(len, Ordering::Relaxed);
        }
    }
    segment.finish().await.map(|_| ())
}

/// Holds the publisher to `rate` bytes per second from `start` on.
struct Pacer {
    start: Instant,
    rate: u64,
    sent: u64,
}

impl Pacer {
    async fn wait(&mut self, len: u64) {
        if self.rate > 0 {
            let due = self.start + Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        self.sent += len;
    }
}

/// A subscriber of the run: the bench's own ([`wire`]) for `http://` servers, the library's for
/// `https://`.
enum Reader {
    Wire(wire::WireSubscriber),
    Library {
        subscriber: Box<Subscriber>,
        segment: Option<crate::client::Segment>,
        chunk: bytes::Bytes,
    },
}

impl Reader {
    /// The next segment's seq, `None` at the end of the stream.
    async fn next_segment(&mut self) -> anyhow::Result<Option<u64>> {
        match self {
            Reader::Wire(wire) => wire.next_segment().await,
            Reader::Library {
                subscriber,
                segment,
                ..
            } => {
                *segment = subscriber.next_segment().await?;
                Ok(segment.as_ref().map(|segment| segment.seq))
            }
        }
    }

    /// The next bytes of the current segment, `None` at its end.
    async fn chunk(&mut self) -> anyhow::Result<Option<&[u8]>> {
        match self {
            Reader::Wire(wire) => wire.chunk().await,
            Reader::Library { segment, chunk, .. } => {
                let Some(segment) = segment else {
                    return Ok(None);
                };
                match segment.chunk().await? {
                    Some(bytes) => {
                        *chunk = bytes;
                        Ok(Some(&chunk[..]))
                    }
                    None => Ok(None),
                }
            }
        }
    }
}

/// One subscriber: reads seqs 0..=last in order, checks every byte, measures every write.
async fn subscribe(run: Arc<ChannelRun>, totals: Arc<Totals>, clock: Clock, mut reader: Reader) {
    let mut expected = 0;
    let mut latencies = Vec::new();
    while expected <= run.last {
        let seq = match reader.next_segment().await {
            Ok(Some(seq)) => seq,
            Ok(None) => {
                totals.error(format!("end of stream before seq {expected}"));
                break;
            }
            Err(err) => {
                totals.error(format!("{err:#}"));
                break;
            }
        };
        if seq < expected || seq > run.last {
            totals.error(format!("got seq {seq} while expecting {expected}"));
            break;
        }
        if seq > expected {
            // A 470: the subscriber fell out of the ring and jumped to the live edge.
            totals.jumps.fetch_add(1, Ordering::Relaxed);
            totals.note(format!("470: jumped from seq {expected} to {seq}"));
            let skipped = (expected.max(1)..seq).count() as u64;
            totals.finished.fetch_add(skipped, Ordering::Relaxed);
            run.mark_done(expected..=seq - 1);
        }
        let mut checker = Checker::new(run.layout, seq);
        let failed = loop {
            match reader.chunk().await {
                Ok(Some(bytes)) => {
                    let now = clock.now_ns();
                    checker.feed(bytes, |sent| latencies.push(now.saturating_sub(sent)));
                    if seq > 0 {
                        totals
                            .delivered_bytes
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                }
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        // The warm-up seq counts for errors, not for what was measured.
        let measured = seq > 0;
        if measured {
            totals.finished.fetch_add(1, Ordering::Relaxed);
        }
        match checker.verdict() {
            Verdict::Complete if !failed => {
                if measured {
                    totals.complete.fetch_add(1, Ordering::Relaxed);
                    totals.record_latencies(&latencies);
                }
            }
            Verdict::Corrupt => {
                totals.corrupt.fetch_add(1, Ordering::Relaxed);
                totals.note(format!("seq {seq}: corrupted bytes"));
            }
            _ => {
                totals.short.fetch_add(1, Ordering::Relaxed);
                totals.note(format!(
                    "seq {seq}: ended after {} of {} bytes",
                    checker.received(),
                    run.layout.segment_bytes
                ));
            }
        }
        latencies.clear();
        run.mark_done(seq..=seq);
        expected = seq + 1;
    }
    // Whatever this subscriber will not read, nobody should wait for.
    if expected <= run.last {
        totals
            .finished
            .fetch_add(run.last + 1 - expected.max(1), Ordering::Relaxed);
        run.mark_done(expected..=run.last);
    }
    // Connections stay open until everyone is done: closing thousands of them (and the server
    // noticing) while others still read the last segment would load the machine mid-measurement
    // (it made the last segment of `c10k` 0.3–0.6 s late for ~45% of the subscribers, with
    // either server, and so most of the p99).
    run.last_done.cancelled().await;
    drop(reader);
}

fn progress_bar(total: u64) -> ProgressBar {
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

async fn tick_progress(bar: ProgressBar, totals: Arc<Totals>) {
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
struct Latency {
    writes: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, serde::Serialize)]
struct Errors {
    total: u64,
    jumps_470: u64,
    short_segments: u64,
    corrupted_segments: u64,
    /// HTTP, connection and protocol failures (see `Totals::other_errors`).
    other: u64,
    samples: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct ServerReport {
    #[serde(flatten)]
    usage: ServerUsage,
    /// CPU seconds per second of the run (1.0 = one core busy).
    cores: f64,
    cpu_seconds_per_gb: f64,
}

/// What a run measured (the `--json` output).
#[derive(Debug, serde::Serialize)]
struct Report {
    settings: Settings,
    seconds: f64,
    published_bytes: u64,
    delivered_bytes: u64,
    /// Bytes received by all subscribers per second.
    throughput_bytes_per_second: f64,
    segments_expected: u64,
    segments_complete: u64,
    latency: Option<Latency>,
    errors: Errors,
    /// CPU seconds the bench itself used while measuring: on a machine it shares with the server,
    /// a load generator near all cores bounds what can be measured.
    bench_cpu_seconds: f64,
    server: Option<ServerReport>,
}

impl Report {
    fn new(
        settings: Settings,
        totals: &Totals,
        elapsed: Duration,
        own_cpu: f64,
        expected: u64,
        server: Option<ServerUsage>,
    ) -> Report {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let delivered = totals.delivered_bytes.load(Ordering::Relaxed);
        let ms = |ns: u64| ns as f64 / 1e6;
        let latency = totals.latency.lock().as_ref().map(|h| Latency {
            writes: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        });
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
            server: server.map(|usage| ServerReport {
                usage,
                cores: usage.cpu_seconds / seconds,
                cpu_seconds_per_gb: usage.cpu_seconds / (delivered as f64 / 1e9).max(1e-9),
            }),
        }
    }

    fn text(&self) -> String {
        let s = &self.settings;
        let mb = |bytes: u64| bytes as f64 / 1e6;
        let mut out = String::new();
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
        let _ = writeln!(
            out,
            "{profile}{} channel(s) × {} subscribers, {} segments of {} in {}-byte writes, {rate}{lag}",
            s.channels,
            s.subs,
            s.segments,
            HumanBytes(s.segment_bytes),
            s.write
        );
        let _ = writeln!(out, "  time        {:.2} s", self.seconds);
        let _ = writeln!(
            out,
            "  published   {:.1} MB ({:.1} MB/s)",
            mb(self.published_bytes),
            mb(self.published_bytes) / self.seconds
        );
        let _ = writeln!(
            out,
            "  delivered   {:.1} MB ({:.3} GB/s fan-out)",
            mb(self.delivered_bytes),
            self.throughput_bytes_per_second / 1e9
        );
        let _ = writeln!(
            out,
            "  segments    {} of {} complete",
            self.segments_complete, self.segments_expected
        );
        match &self.latency {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "  latency     p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} writes)",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.writes
                );
            }
            None => {
                let _ = writeln!(out, "  latency     no complete segment");
            }
        }
        let e = &self.errors;
        let _ = writeln!(
            out,
            "  errors      {} (470 jumps {}, short {}, corrupted {}, other {})",
            e.total, e.jumps_470, e.short_segments, e.corrupted_segments, e.other
        );
        for sample in &e.samples {
            let _ = writeln!(out, "              {sample}");
        }
        let own_cores = self.bench_cpu_seconds / self.seconds;
        let _ = writeln!(
            out,
            "  load gen    {:.2} CPU s ({:.0}% of a core)",
            self.bench_cpu_seconds,
            own_cores * 100.0
        );
        if let Some(server) = &self.server {
            let _ = writeln!(
                out,
                "  server      {:.2} CPU s ({:.0}% of a core, {:.3} s per GB), RSS {:.1} MB at start, peak {:.1} MB",
                server.usage.cpu_seconds,
                server.cores * 100.0,
                server.cpu_seconds_per_gb,
                mb(server.usage.rss_start_bytes),
                mb(server.usage.rss_peak_bytes)
            );
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let busy = own_cores + self.server.as_ref().map_or(0.0, |s| s.cores);
        if busy > 0.9 * cores as f64 {
            let _ = writeln!(
                out,
                "  note        {busy:.1} of this machine's {cores} cores were busy: the figures are bounded by CPU"
            );
        }
        out
    }
}
