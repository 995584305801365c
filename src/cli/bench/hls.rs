//! `trickle bench --profile hls`: HLS players ([`super::hls_player`]) on channels fed a real
//! MPEG-TS file (`--input`, H.264/AAC), which each channel's publisher sends in real time and in a
//! loop with `trickle publish --mpegts`'s own publish loop and segmenter (one GOP a segment, paced
//! by the stream's clock; each pass of the file starts over, which players see as a
//! discontinuity).
//!
//! `--hls-mode ll` players follow `ll.m3u8` part by part with blocking reloads; `--hls-mode hint`
//! players hold a request open on each next part (the playlist's preload hint); `--hls-mode
//! polling` players poll `index.m3u8` and fetch each new `.ts`. Each measures, per part or segment
//! it receives, the time from a reference to its last byte: for a part in `ll`, the moment the
//! first player anywhere in the run received a playlist naming it (so the figure is the server's
//! fan-out of the playlist and the part, whatever the encoder and the remux take); in `hint`, the
//! moment the first player anywhere had the part (the server's fan-out of the part itself); for a
//! segment, the moment the publisher had written its last byte (so it includes the polling
//! interval).
//!
//! Warm-up lasts until every player has read its first playlist; measuring then covers
//! `--segments` segments from the next one to start, and ends when every player is done with
//! them. Every player holds one kept-alive HTTP/1.1 connection ([`super::wire`]), so the bench and
//! the server each need an open file per player: 10,000 players need `ulimit -n` above about
//! 10,100 on both sides (`ulimit -n 65536` before starting each; the bench raises its soft limit to
//! the hard one itself), and the server's listen backlog (`net.core.somaxconn`) bounds how fast
//! they connect, not whether they do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::args::{HlsMode, Settings};
use super::hls_player::play;
use super::hls_publisher::{check_input, publish};
use super::hls_report::HlsReport;
use super::report::{progress_bar, tick_progress};
use super::state::{Clock, Totals};
use super::wire::WireSubscriber;
use super::{Bench, GRACE, new_publisher};
use crate::client::Publisher;

/// How long players may take to read their first playlist (the first segment must be made first).
const WARM_UP: Duration = Duration::from_secs(60);
/// How often the run looks at how far its channels are.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Failures of the players' requests, by kind.
#[derive(Default)]
pub(super) struct Failures {
    /// Answers other than `200`, by status.
    pub(super) status: Mutex<BTreeMap<u16, u64>>,
    /// Requests not answered (to their last byte) in time.
    pub(super) timeouts: AtomicU64,
    /// `200`s whose body is empty or not what was asked for.
    pub(super) bad_bodies: AtomicU64,
    /// Connections refused, reset or closed mid-response, malformed responses.
    pub(super) connection: AtomicU64,
}

/// What every task of an `hls` run shares.
pub(super) struct HlsShared {
    pub(super) totals: Arc<Totals>,
    pub(super) clock: Clock,
    pub(super) mode: HlsMode,
    /// Set while measuring: requests and bytes count.
    pub(super) measuring: AtomicBool,
    pub(super) requests: AtomicU64,
    pub(super) failures: Failures,
    /// Reference → last byte of every measured part or segment, in nanoseconds.
    pub(super) latency: Mutex<Option<Histogram<u64>>>,
    /// Measured parts or segments received by all players.
    pub(super) received: AtomicU64,
    /// Players that had to jump ahead (what they wanted next was no longer listed, or gone).
    pub(super) players_behind: AtomicU32,
    /// Players that gave up after failing again and again.
    pub(super) players_gave_up: AtomicU32,
    /// Cancelled when the run cannot go on (a publisher failed): players stop.
    pub(super) stop: CancellationToken,
}

/// One channel of an `hls` run: how far its publisher and its players are, and the reference
/// times of its parts and segments.
pub(super) struct HlsChannel {
    pub(super) url: String,
    players: u32,
    segments: u64,
    /// The seq the publisher writes, or starts next.
    writing: AtomicU64,
    /// The first measured seq; `u64::MAX` while warming up.
    measure_from: AtomicU64,
    /// Players that have read their first playlist, or given up.
    ready: AtomicU32,
    /// Players done with the measured segments, or that gave up.
    done: AtomicU32,
    /// `ll`: when the first player received a playlist naming each measured part; `hint`: when
    /// the first player had it.
    named: Mutex<BTreeMap<(u64, u64), u64>>,
    /// `polling`: when the publisher had written each segment's last byte.
    written: Mutex<BTreeMap<u64, u64>>,
    /// `ll` and `hint`: how many parts each measured segment has, as the playlists list them (or,
    /// in `hint`, as the server's `404` for the part after the last says).
    parts: Mutex<BTreeMap<u64, u64>>,
    /// Measured parts or segments each player received, noted when it stops.
    tallies: Mutex<Vec<u64>>,
    /// Cancelled when measuring is over: the publisher stops, players let go of their connections.
    pub(super) release: CancellationToken,
}

/// Reference times older than this many segments are forgotten.
const KEEP_SEGMENTS: u64 = 8;

impl HlsChannel {
    fn new(url: String, settings: &Settings) -> HlsChannel {
        HlsChannel {
            url,
            players: settings.subs,
            segments: settings.segments,
            writing: AtomicU64::new(0),
            measure_from: AtomicU64::new(u64::MAX),
            ready: AtomicU32::new(0),
            done: AtomicU32::new(0),
            named: Mutex::default(),
            written: Mutex::default(),
            parts: Mutex::default(),
            tallies: Mutex::default(),
            release: CancellationToken::new(),
        }
    }

    /// The measured seqs, first and last, once measuring has begun.
    pub(super) fn window(&self) -> Option<(u64, u64)> {
        let from = self.measure_from.load(Ordering::Acquire);
        (from != u64::MAX).then(|| (from, from + self.segments - 1))
    }

    pub(super) fn measured(&self, seq: u64) -> bool {
        self.window()
            .is_some_and(|(from, to)| (from..=to).contains(&seq))
    }

    pub(super) fn player_ready(&self) {
        self.ready.fetch_add(1, Ordering::AcqRel);
    }

    /// A player stopped, having received `received` measured parts or segments.
    pub(super) fn player_done(&self, received: u64) {
        self.tallies.lock().push(received);
        self.done.fetch_add(1, Ordering::AcqRel);
    }

    /// When the first player received a playlist naming part `part` of `seq` (`ll`), or had the
    /// part (`hint`), given that this one did at `now`.
    pub(super) fn first_named(&self, seq: u64, part: u64, now: u64) -> u64 {
        let mut named = self.named.lock();
        if named.len() > 512 {
            *named = named.split_off(&(seq.saturating_sub(KEEP_SEGMENTS), 0));
        }
        let first = named.entry((seq, part)).or_insert(now);
        *first = (*first).min(now);
        *first
    }

    /// The publisher has written the last byte of `seq` at `now`.
    pub(super) fn note_written(&self, seq: u64, now: u64) {
        let mut written = self.written.lock();
        written.insert(seq, now);
        if written.len() as u64 > 2 * KEEP_SEGMENTS {
            *written = written.split_off(&seq.saturating_sub(KEEP_SEGMENTS));
        }
    }

    /// The server has taken `seq` whole: the publisher is on the next.
    pub(super) fn note_published(&self, seq: u64) {
        self.writing.store(seq + 1, Ordering::Release);
    }

    /// When the publisher had written the last byte of `seq`.
    pub(super) fn written(&self, seq: u64) -> Option<u64> {
        self.written.lock().get(&seq).copied()
    }

    /// Segment `seq` has `parts` parts, as a playlist listing it complete said (or the server's
    /// `404` for the part after its last); the count noted first if it differs.
    pub(super) fn note_parts(&self, seq: u64, parts: u64) -> Result<(), u64> {
        let mut known = self.parts.lock();
        let noted = *known.entry(seq).or_insert(parts);
        if noted != parts {
            return Err(noted);
        }
        Ok(())
    }

    /// Measured parts (`ll`, `hint`) or segments (`polling`) each player should have received; `None`
    /// while a measured segment's parts are not known (no player saw it listed whole).
    pub(super) fn expected_per_player(&self, mode: HlsMode) -> Option<u64> {
        let (from, to) = self.window()?;
        match mode {
            HlsMode::Polling => Some(self.segments),
            HlsMode::Ll | HlsMode::Hint => {
                let parts = self.parts.lock();
                (from..=to).map(|seq| parts.get(&seq).copied()).sum()
            }
        }
    }

    /// Players that stopped with fewer than `expected` measured pieces.
    pub(super) fn players_short(&self, expected: u64) -> u32 {
        let tallies = self.tallies.lock();
        let short = tallies.iter().filter(|&&n| n < expected).count();
        short as u32 + self.players.saturating_sub(tallies.len() as u32)
    }

    fn all_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) >= self.players
    }

    fn all_done(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.players
    }

    /// Whether the publisher has written every measured segment.
    fn past_window(&self) -> bool {
        self.window()
            .is_some_and(|(_, last)| self.writing.load(Ordering::Acquire) > last)
    }
}

pub(super) async fn run(bench: Bench, settings: Settings, json: bool) -> anyhow::Result<()> {
    if !bench.reads_over_http() {
        bail!(
            "--profile hls needs http:// servers to read at: its players are the bench's own HTTP/1.1 clients"
        );
    }
    let input = settings
        .input
        .clone()
        .context("--profile hls needs --input")?;
    check_input(&input).await?;
    let mode = settings.hls_mode.unwrap_or_default();
    let shared = Arc::new(HlsShared {
        totals: bench.totals.clone(),
        clock: bench.clock,
        mode,
        measuring: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        failures: Failures::default(),
        latency: Mutex::new(None),
        received: AtomicU64::new(0),
        players_behind: AtomicU32::new(0),
        players_gave_up: AtomicU32::new(0),
        stop: CancellationToken::new(),
    });
    let expected = u64::from(settings.channels) * u64::from(settings.subs) * settings.segments;
    let progress = progress_bar(expected);
    let ticker = tokio::spawn(tick_progress(progress.clone(), bench.totals.clone()));

    let (mut publishers, mut players, mut channels) = (vec![], vec![], vec![]);
    for k in 0..settings.channels {
        let channel = Arc::new(HlsChannel::new(bench.channel_url(k), &settings));
        let publisher = new_publisher(&channel.url, &bench.connect, "video/mp2t").await?;
        let points = bench.read_points(k, settings.subs).await?;
        for i in 0..settings.subs {
            let reader = WireSubscriber::new(points.target(i)?, 0);
            let phase = f64::from(i) / f64::from(settings.subs);
            let player = play(channel.clone(), shared.clone(), reader, phase);
            players.push(tokio::spawn(player));
        }
        let (channel2, shared2, input) = (channel.clone(), shared.clone(), input.clone());
        publishers.push(tokio::spawn(publish(publisher, channel2, shared2, input)));
        channels.push(channel);
    }
    let ended = conduct(&channels, &shared, &bench).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let (servers, own_cpu) = bench.usage().await?;
    let started = bench.window.started.lock().unwrap_or(ended);
    finish(publishers, players, &channels, &shared).await;
    ticker.abort();
    progress.finish_and_clear();
    let elapsed = ended.duration_since(started);
    HlsReport::new(settings, &shared, &channels, elapsed, own_cpu, servers).print(json)
}

/// Warms up, starts measuring, and returns when measuring ended: every player done, or
/// [`GRACE`] after the publishers wrote the last measured segment, or the run stopped.
async fn conduct(channels: &[Arc<HlsChannel>], shared: &HlsShared, bench: &Bench) -> Instant {
    let mut look = tokio::time::interval(LOOK_EVERY);
    let warm_up_ends = Instant::now() + WARM_UP;
    while !channels.iter().all(|c| c.all_ready()) && !shared.stop.is_cancelled() {
        if Instant::now() >= warm_up_ends {
            let ready: u32 = channels
                .iter()
                .map(|c| c.ready.load(Ordering::Acquire))
                .sum();
            let players: u32 = channels.iter().map(|c| c.players).sum();
            shared.totals.error(format!(
                "{ready} of {players} players read a playlist within {} s",
                WARM_UP.as_secs()
            ));
            break;
        }
        look.tick().await;
    }
    // Every channel measures from the next segment to start, so no player joins one midway.
    for channel in channels {
        let next = channel.writing.load(Ordering::Acquire) + 1;
        channel.measure_from.store(next, Ordering::Release);
    }
    bench.window.begin(Instant::now());
    shared.measuring.store(true, Ordering::Relaxed);
    let mut deadline = None;
    loop {
        if channels.iter().all(|c| c.all_done()) || shared.stop.is_cancelled() {
            return Instant::now();
        }
        if deadline.is_none() && channels.iter().all(|c| c.past_window()) {
            deadline = Some(Instant::now() + GRACE);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let done: u32 = channels
                .iter()
                .map(|c| c.done.load(Ordering::Acquire))
                .sum();
            let players: u32 = channels.iter().map(|c| c.players).sum();
            shared.totals.error(format!(
                "{} of {players} players not done {} s after the last measured segment",
                players - done.min(players),
                GRACE.as_secs()
            ));
            return Instant::now();
        }
        look.tick().await;
    }
}

/// Stops the players and the publishers, deletes the channels and waits for every task.
async fn finish(
    publishers: Vec<JoinHandle<Publisher>>,
    players: Vec<JoinHandle<()>>,
    channels: &[Arc<HlsChannel>],
    shared: &HlsShared,
) {
    shared.stop.cancel();
    for channel in channels {
        channel.release.cancel();
    }
    for publisher in publishers {
        let Ok(publisher) = publisher.await else {
            shared.totals.error("a publisher task panicked".into());
            continue;
        };
        let url = publisher.url().to_string();
        if let Err(err) = publisher.close().await {
            shared.totals.error(format!("closing {url}: {err}"));
        }
    }
    let players = futures_util::future::join_all(players);
    if tokio::time::timeout(GRACE, players).await.is_err() {
        shared
            .totals
            .error("players still running after the run ended".into());
    }
}
