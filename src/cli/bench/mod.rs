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
//! (repeatable) each server's CPU time and peak memory come from `/proc` ([`process`]). With
//! `--subscribe-from` the readers read at other servers than the one published to (edges of it,
//! say), spread over them in turn ([`ReadPoints`]), so latency is publish → receive through them.
//! The `live` profile ([`live`]) has viewers of `GET /{name}/live` instead, some of them slow, on
//! the same publisher, payload and HTTP/1.1 client. The `hls` profile ([`hls`]) has HLS players
//! instead, on channels fed a real MPEG-TS file.

mod args;
mod hls;
mod hls_player;
mod hls_publisher;
mod hls_report;
mod live;
mod live_report;
mod payload;
mod playlist;
mod process;
mod publisher;
mod report;
mod state;
mod subscriber;
mod viewer;
mod wire;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use tokio::sync::{Barrier, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::args::BenchArgs;
use self::args::{Profile, Settings};
use self::payload::Layout;
use self::process::ServerUsage;
use self::publisher::publish;
use self::report::{Report, progress_bar, tick_progress};
use self::state::{ChannelRun, Clock, Totals, Window, own_cpu_seconds};
use self::subscriber::{Reader, subscribe};
use crate::client::{ConnectOptions, PublishStart, Publisher, PublisherOptions, new_http_client};

/// How long subscribers may take to finish after the last segment was published.
const GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let bench = Bench::start(&args, &settings).await?;
    match settings.profile {
        Some(Profile::Live) => return live::run(bench, settings, args.json).await,
        Some(Profile::Hls) => return hls::run(bench, settings, args.json).await,
        _ => {}
    }
    run_segments(bench, settings, args.json).await
}

/// What every run sets up first.
struct Bench {
    /// The server's base URL, without a trailing `/`: where channels are made and published.
    base: String,
    /// Where readers read, in turn: `--subscribe-from`'s servers, or the server of `base`.
    read_bases: Vec<ReadBase>,
    connect: ConnectOptions,
    window: Arc<Window>,
    clock: Clock,
    totals: Arc<Totals>,
    /// Names this run's channels (`bench-{run_id}-{k}`).
    run_id: String,
    layout: Layout,
}

impl Bench {
    async fn start(args: &BenchArgs, settings: &Settings) -> anyhow::Result<Bench> {
        let (base, reqwest_url) = parse_base(&args.url)?;
        let read_bases = match args.subscribe_from.as_slice() {
            [] => vec![ReadBase::new(base.clone(), &reqwest_url)],
            urls => urls
                .iter()
                .map(|url| parse_base(url).map(|(base, url)| ReadBase::new(base, &url)))
                .collect::<anyhow::Result<_>>()?,
        };
        let (channels, subs) = (u64::from(settings.channels), u64::from(settings.subs));
        // A subscriber holds a connection and often a second one (the next GET, preconnected); an
        // HLS player one only.
        let needed_files = match settings.profile {
            Some(Profile::Hls) => channels * (subs + 2) + 64,
            _ => channels * (subs + 1) * 2 + 64,
        };
        super::raise_open_files_limit(needed_files)?;
        let mut connect = args.client.connect_options()?;
        connect.http = Some(new_http_client(&connect).context("cannot build the HTTP client")?);
        let watch = args
            .server_pid
            .iter()
            .map(|&pid| process::Watch::start(pid))
            .collect::<anyhow::Result<_>>()?;
        let window = Arc::new(Window {
            started: Mutex::new(None),
            watch,
            own_cpu_start: Mutex::new(own_cpu_seconds()),
        });
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Bench {
            base,
            read_bases,
            connect,
            window,
            clock: Clock(Instant::now()),
            totals: Arc::new(Totals::default()),
            run_id: format!("{:08x}", since_epoch.as_nanos() as u32 ^ std::process::id()),
            layout: Layout {
                segment_bytes: settings.segment_bytes,
                write: settings.write,
            },
        })
    }

    /// The URL of channel `k` of the run, where it is made and published.
    fn channel_url(&self, k: u32) -> String {
        format!("{}{}", self.base, self.channel_path(k))
    }

    fn channel_path(&self, k: u32) -> String {
        format!("/bench-{}-{k}", self.run_id)
    }

    /// Where the readers of channel `k` read it: the channel at each read server, taken in turn
    /// across the whole run (reader `i` of channel `k` is the run's reader `k × subs + i`). An
    /// edge starts relaying at the segment being written (or the last one), and seq 1 waits until
    /// every subscriber has read seq 0: the warm-up reaches readers at edges as well.
    async fn read_points(&self, k: u32, subs: u32) -> anyhow::Result<ReadPoints> {
        let mut points = Vec::with_capacity(self.read_bases.len());
        for base in &self.read_bases {
            let url = format!("{}{}", base.url, self.channel_path(k));
            let target = match base.http {
                true => Some(Arc::new(self.target(&url).await?)),
                false => None,
            };
            points.push(ReadPoint { url, target });
        }
        Ok(ReadPoints {
            points,
            first: u64::from(k) * u64::from(subs),
        })
    }

    /// Whether every reader is the bench's own HTTP/1.1 client ([`wire`]): no `https://` read
    /// server.
    fn reads_over_http(&self) -> bool {
        self.read_bases.iter().all(|base| base.http)
    }

    /// Where the bench's own subscribers ([`wire`]) find channel `url` (an `http://` one).
    async fn target(&self, url: &str) -> anyhow::Result<wire::Target> {
        let url = url.parse().context("invalid channel URL")?;
        wire::Target::resolve(&url, &self.connect.headers).await
    }

    /// What each server process used while measuring (`--server-pid`), and the bench's own CPU
    /// seconds; called when measuring ends.
    async fn usage(&self) -> anyhow::Result<(Vec<ServerUsage>, f64)> {
        let mut servers = Vec::with_capacity(self.window.watch.len());
        for watch in &self.window.watch {
            servers.push(watch.finish().await?);
        }
        let own_cpu = own_cpu_seconds() - *self.window.own_cpu_start.lock();
        Ok((servers, own_cpu))
    }
}

/// A server readers read at: its base URL (no trailing `/`), and whether it is `http://` (read
/// by the bench's own subscribers) rather than `https://` (the library's).
struct ReadBase {
    url: String,
    http: bool,
}

impl ReadBase {
    fn new(url: String, parsed: &reqwest::Url) -> ReadBase {
        let http = parsed.scheme() == "http";
        ReadBase { url, http }
    }
}

/// Where the readers of one channel read it ([`Bench::read_points`]).
struct ReadPoints {
    /// The channel at each read server; never empty.
    points: Vec<ReadPoint>,
    /// Readers of the channels before this one: the turn goes on across channels.
    first: u64,
}

/// One channel at one read server.
struct ReadPoint {
    url: String,
    /// `None` at an `https://` server, which the library's subscribers read.
    target: Option<Arc<wire::Target>>,
}

impl ReadPoints {
    /// Where reader `i` of the channel reads: the read servers in turn.
    fn of(&self, i: u32) -> &ReadPoint {
        let turn = (self.first + u64::from(i)) % self.points.len() as u64;
        &self.points[turn as usize]
    }

    /// The bench's own subscriber's target for reader `i` (`live` and `hls`, checked to read
    /// over `http://` only).
    fn target(&self, i: u32) -> anyhow::Result<Arc<wire::Target>> {
        let point = self.of(i);
        point
            .target
            .clone()
            .with_context(|| format!("{} is not http://", point.url))
    }
}

/// The per-seq profiles: every subscriber reads every seq with the reference wire protocol.
async fn run_segments(bench: Bench, settings: Settings, json: bool) -> anyhow::Result<()> {
    let totals = &bench.totals;
    let expected = u64::from(settings.channels) * u64::from(settings.subs) * settings.segments;
    let progress = progress_bar(expected);
    let ticker = tokio::spawn(tick_progress(progress.clone(), totals.clone()));

    // Every channel is created before its subscribers connect, so their first GET waits for seq 0.
    let barrier = Arc::new(Barrier::new(settings.channels as usize));
    let mut publishers = Vec::new();
    let mut subscribers = Vec::new();
    for k in 0..settings.channels {
        let (run, publisher) = create_channel(bench.channel_url(k), &bench, &settings).await?;
        let points = bench.read_points(k, settings.subs).await?;
        for i in 0..settings.subs {
            let point = points.of(i);
            let reader = Reader::new(point.target.as_ref(), &point.url, &bench.connect)?;
            let totals = totals.clone();
            subscribers.push(tokio::spawn(subscribe(
                run.clone(),
                totals,
                bench.clock,
                reader,
            )));
        }
        publishers.push(tokio::spawn(publish(
            publisher,
            run,
            totals.clone(),
            bench.clock,
            settings.clone(),
            barrier.clone(),
            bench.window.clone(),
        )));
    }
    let ended = finish(publishers, subscribers, totals).await?;
    ticker.abort();
    progress.finish_and_clear();
    let (servers, own_cpu) = bench.usage().await?;
    let started = bench.window.started.lock().unwrap_or(ended);
    let report = Report::new(
        settings,
        totals,
        ended.duration_since(started),
        own_cpu,
        expected,
        servers,
    );
    print_report(&report, json, expected)
}

/// The base URL without a trailing `/`, and parsed; only `http://` and `https://` are served.
fn parse_base(url: &str) -> anyhow::Result<(String, reqwest::Url)> {
    let base = url.trim_end_matches('/').to_string();
    let reqwest_url: reqwest::Url = base
        .parse()
        .with_context(|| format!("invalid server URL {url:?}"))?;
    if !matches!(reqwest_url.scheme(), "http" | "https") {
        bail!("invalid server URL {url:?}: expected http:// or https://");
    }
    Ok((base, reqwest_url))
}

/// Creates channel `url` on the server, with its publisher and the run state its tasks share.
async fn create_channel(
    url: String,
    bench: &Bench,
    settings: &Settings,
) -> anyhow::Result<(Arc<ChannelRun>, Publisher)> {
    let run = Arc::new(ChannelRun {
        url,
        layout: bench.layout,
        last: settings.segments,
        subs: settings.subs,
        done: (0..=settings.segments).map(|_| AtomicU32::new(0)).collect(),
        all_done: Notify::new(),
        last_done: CancellationToken::new(),
    });
    let publisher = new_publisher(&run.url, &bench.connect, "application/octet-stream").await?;
    Ok((run, publisher))
}

/// The publisher of channel `url`, which it creates on the server for `content_type`.
async fn new_publisher(
    url: &str,
    connect: &ConnectOptions,
    content_type: &str,
) -> anyhow::Result<Publisher> {
    let publisher = Publisher::new(
        url,
        PublisherOptions {
            content_type: content_type.into(),
            start: PublishStart::Seq(0),
            connect: connect.clone(),
            ..Default::default()
        },
    )?;
    publisher
        .create()
        .await
        .with_context(|| format!("cannot create channel {url}"))?;
    Ok(publisher)
}

/// Waits for the tasks of the run and returns when measuring ended (the subscribers' end, or the
/// grace's). Publishers first: once every segment is out, subscribers get GRACE to finish; any
/// still waiting then (for a seq that will never come) are ended by closing their channels.
async fn finish(
    publishers: Vec<JoinHandle<Option<Publisher>>>,
    subscribers: Vec<JoinHandle<()>>,
    totals: &Totals,
) -> anyhow::Result<Instant> {
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
    Ok(ended)
}

/// Prints the report, as text or JSON; an error if anything was lost, short or failed.
fn print_report(report: &Report, json: bool, expected: u64) -> anyhow::Result<()> {
    report::show(report, || report.text(), json)?;
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
