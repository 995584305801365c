//! `trickle bench --profile live`: viewers of `GET /{name}/live` ([`super::viewer`]) on paced
//! channels, a fraction of them reading slowly. The server decides who skips: a viewer that keeps
//! up must get every segment, a slow one should skip whole segments rather than fall behind, and
//! nobody may get a partial or damaged one.
//!
//! Each channel's publisher ([`LivePublisher`]) writes warm-up segments until every viewer has
//! begun one (a viewer starts at the next segment to start, `from=next`), then the measured ones,
//! then more until every viewer is done with the measured ones: has received the last, or begun a
//! later one, so a slow viewer's skips up to the end are seen as gaps in its seqs rather than
//! guessed. The server's CPU and the delivered bytes count from the first measured segment until
//! every channel's last one is out.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::sync::{Barrier, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::args::Settings;
use super::live_report::LiveReport;
use super::payload::Layout;
use super::publisher::{Pacer, write_segment};
use super::report::{progress_bar, tick_progress};
use super::state::{Clock, Totals, Window};
use super::viewer::{ClassTotals, view};
use super::wire::WireSubscriber;
use super::{Bench, GRACE, ReadPoints, new_publisher};
use crate::client::{ClientError, Publisher};

/// `SO_RCVBUF` of a slow viewer's connection (Linux doubles it): small, so that what the viewer
/// has not read yet waits in the server's socket, where the server sees it, rather than in a
/// receive buffer autotuned to megabytes. Not smaller: with 16 KiB, loopback's 64 KiB packets did
/// not fit, the kernel dropped and retransmitted them, and slow viewers read below `--slow-rate`
/// (0.192 of 0.208 MB/s, up to 8 segments behind, measured); with 64 KiB they read at it.
const SLOW_RECV_BUFFER: u32 = 64 << 10;

/// What every task of a `live` run shares.
pub(super) struct LiveShared {
    pub(super) totals: Arc<Totals>,
    pub(super) fast: ClassTotals,
    pub(super) slow: ClassTotals,
    /// Set while measuring: bytes received count as delivered.
    pub(super) measuring: AtomicBool,
    pub(super) clock: Clock,
}

/// One channel of a `live` run: where its publisher is, and how far its viewers are.
pub(super) struct LiveChannel {
    pub(super) url: String,
    pub(super) layout: Layout,
    subs: u32,
    segments: u64,
    /// The seq the publisher is writing.
    pub(super) writing: AtomicU64,
    /// The first measured seq; `u64::MAX` while warming up.
    measure_from: AtomicU64,
    /// Viewers that have begun a segment, or given up.
    started: AtomicU32,
    /// Viewers done with the measured segments, or that gave up.
    done: AtomicU32,
    /// Cancelled once the publisher has stopped: viewers that are done hold their connections
    /// until then.
    pub(super) release: CancellationToken,
}

impl LiveChannel {
    fn new(url: String, layout: Layout, settings: &Settings) -> LiveChannel {
        LiveChannel {
            url,
            layout,
            subs: settings.subs,
            segments: settings.segments,
            writing: AtomicU64::new(0),
            measure_from: AtomicU64::new(u64::MAX),
            started: AtomicU32::new(0),
            done: AtomicU32::new(0),
            release: CancellationToken::new(),
        }
    }

    /// The measured seqs, once measuring has begun.
    pub(super) fn window(&self) -> Option<RangeInclusive<u64>> {
        let from = self.measure_from.load(Ordering::Acquire);
        (from != u64::MAX).then(|| from..=from.saturating_add(self.segments - 1))
    }

    pub(super) fn viewer_started(&self) {
        self.started.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn viewer_done(&self) {
        self.done.fetch_add(1, Ordering::AcqRel);
    }

    fn all_started(&self) -> bool {
        self.started.load(Ordering::Acquire) >= self.subs
    }

    fn all_done(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.subs
    }
}

pub(super) async fn run(bench: Bench, settings: Settings, json: bool) -> anyhow::Result<()> {
    if !bench.reads_over_http() {
        bail!(
            "--profile live needs http:// servers to read at: its viewers are the bench's own HTTP/1.1 clients"
        );
    }
    let shared = Arc::new(LiveShared {
        totals: bench.totals.clone(),
        fast: ClassTotals::default(),
        slow: ClassTotals::default(),
        measuring: AtomicBool::new(false),
        clock: bench.clock,
    });
    let expected = u64::from(settings.channels) * u64::from(settings.subs) * settings.segments;
    let progress = progress_bar(expected);
    let ticker = tokio::spawn(tick_progress(progress.clone(), bench.totals.clone()));

    let barrier = Arc::new(Barrier::new(settings.channels as usize));
    let (mut publishers, mut viewers, mut measured, mut channels) =
        (vec![], vec![], vec![], vec![]);
    for k in 0..settings.channels {
        let channel = Arc::new(LiveChannel::new(
            bench.channel_url(k),
            bench.layout,
            &settings,
        ));
        let publisher =
            new_publisher(&channel.url, &bench.connect, "application/octet-stream").await?;
        let points = bench.read_points(k, settings.subs).await?;
        spawn_viewers(&channel, &shared, &points, &settings, &mut viewers)?;
        let (sender, receiver) = oneshot::channel();
        measured.push(receiver);
        let publisher = LivePublisher {
            publisher,
            channel: channel.clone(),
            shared: shared.clone(),
            pacer: Pacer::new(settings.rate),
            rate: settings.rate,
            seq: 0,
        };
        let (barrier, window) = (barrier.clone(), bench.window.clone());
        publishers.push(tokio::spawn(publisher.run(barrier, window, sender)));
        channels.push(channel);
    }
    // Measuring ends once every channel's measured segments are out (or its publisher failed).
    for receiver in measured {
        let _ = receiver.await;
    }
    let ended = Instant::now();
    shared.measuring.store(false, Ordering::Relaxed);
    let (servers, own_cpu) = bench.usage().await?;
    let started = bench.window.started.lock().unwrap_or(ended);
    finish(publishers, viewers, &channels, &bench.totals).await?;
    ticker.abort();
    progress.finish_and_clear();
    let elapsed = ended.duration_since(started);
    LiveReport::new(settings, &shared, elapsed, own_cpu, servers).print(json)
}

/// Starts the viewers of `channel`, the slow ones spread among the others.
fn spawn_viewers(
    channel: &Arc<LiveChannel>,
    shared: &Arc<LiveShared>,
    points: &ReadPoints,
    settings: &Settings,
    viewers: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    for i in 0..settings.subs {
        let reader = WireSubscriber::new(points.target(i)?, 0);
        let (reader, pace) = match settings.slow_rate {
            Some(rate) if settings.is_slow(i) => {
                (reader.with_recv_buffer(SLOW_RECV_BUFFER), Some(rate))
            }
            _ => (reader, None),
        };
        viewers.push(tokio::spawn(view(
            channel.clone(),
            shared.clone(),
            reader,
            pace,
        )));
    }
    Ok(())
}

/// Waits for the publishers to stop, lets the viewers go, closes the channels (ending the
/// streams of viewers still reading) and waits for the viewers.
async fn finish(
    publishers: Vec<JoinHandle<Option<Publisher>>>,
    viewers: Vec<JoinHandle<()>>,
    channels: &[Arc<LiveChannel>],
    totals: &Totals,
) -> anyhow::Result<()> {
    let mut open_channels = Vec::new();
    for publisher in publishers {
        if let Some(publisher) = publisher.await.context("a publisher task panicked")? {
            open_channels.push(publisher);
        }
    }
    for channel in channels {
        channel.release.cancel();
    }
    for publisher in open_channels {
        let url = publisher.url().to_string();
        if let Err(err) = publisher.close().await {
            totals.error(format!("closing {url}: {err}"));
        }
    }
    let viewers = futures_util::future::join_all(viewers);
    if tokio::time::timeout(GRACE, viewers).await.is_err() {
        totals.error("viewers still running after their channels were closed".into());
    }
    Ok(())
}

/// The publisher of one live channel, and the seq it writes next.
struct LivePublisher {
    publisher: Publisher,
    channel: Arc<LiveChannel>,
    shared: Arc<LiveShared>,
    pacer: Pacer,
    rate: u64,
    seq: u64,
}

impl LivePublisher {
    /// Warms up, measures (`measured` is told when the measured segments are out, or the
    /// publisher failed), then goes on until the viewers are done. Returns the publisher to close
    /// the channel with, or `None` if it failed (the channel is then closed at once).
    async fn run(
        mut self,
        barrier: Arc<Barrier>,
        window: Arc<Window>,
        measured: oneshot::Sender<()>,
    ) -> Option<Publisher> {
        let warm_up = self.warm_up().await;
        // Every channel starts its measured segments together.
        barrier.wait().await;
        let mut result = warm_up;
        if result.is_ok() {
            result = self.measure(&window).await;
        }
        let _ = measured.send(());
        if result.is_ok() {
            result = self.tail().await;
        }
        match result {
            Ok(()) => Some(self.publisher),
            Err(err) => {
                let url = &self.channel.url;
                self.shared
                    .totals
                    .error(format!("publisher of {url}: {err}"));
                let _ = self.publisher.close().await;
                None
            }
        }
    }

    /// Writes the next segment, paced.
    async fn write(&mut self, measured: bool) -> Result<(), ClientError> {
        self.channel.writing.store(self.seq, Ordering::Relaxed);
        let (layout, totals, clock) = (self.channel.layout, &self.shared.totals, self.shared.clock);
        let pacer = Some(&mut self.pacer);
        write_segment(
            &mut self.publisher,
            layout,
            totals,
            clock,
            self.seq,
            measured,
            pacer,
        )
        .await?;
        self.seq += 1;
        Ok(())
    }

    /// Segments until every viewer has begun one (for at most [`GRACE`]).
    async fn warm_up(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + GRACE;
        loop {
            self.write(false).await?;
            if self.channel.all_started() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let began = self.channel.started.load(Ordering::Acquire);
                self.shared.totals.error(format!(
                    "{}: {began} of {} viewers began within {} s",
                    self.channel.url,
                    self.channel.subs,
                    GRACE.as_secs()
                ));
                return Ok(());
            }
        }
    }

    /// The measured segments.
    async fn measure(&mut self, window: &Window) -> Result<(), ClientError> {
        window.begin(Instant::now());
        self.shared.measuring.store(true, Ordering::Relaxed);
        self.pacer = Pacer::new(self.rate);
        self.channel.measure_from.store(self.seq, Ordering::Release);
        for _ in 0..self.channel.segments {
            self.write(true).await?;
        }
        Ok(())
    }

    /// Segments until every viewer is done with the measured ones (for at most [`GRACE`]).
    async fn tail(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + GRACE;
        while !self.channel.all_done() {
            if Instant::now() >= deadline {
                let done = self.channel.done.load(Ordering::Acquire);
                self.shared.totals.error(format!(
                    "{}: {} of {} viewers not done {} s after the last measured segment",
                    self.channel.url,
                    self.channel.subs - done.min(self.channel.subs),
                    self.channel.subs,
                    GRACE.as_secs()
                ));
                return Ok(());
            }
            self.write(false).await?;
        }
        Ok(())
    }
}
