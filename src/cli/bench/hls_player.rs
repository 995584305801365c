//! A player of the `hls` profile, on one kept-alive HTTP/1.1 connection ([`WireSubscriber`]).
//!
//! - `ll`: reads `ll.m3u8` once and starts after its newest part; then asks for the next part
//!   with a blocking reload (`_HLS_msn`, `_HLS_part`: the part after the last it has, or part 0
//!   of the next segment once the playlist lists its segment whole), and GETs every part the
//!   answer lists from there on, in order (normally just that one).
//! - `hint`: reads `ll.m3u8` once and GETs the part its preload hint names, which the server
//!   holds until the part is complete, then the part after it, and so on ([`hint`] says how it
//!   learns that a segment ended).
//! - `polling`: reads `index.m3u8` every half target duration and GETs every segment listed
//!   after the newest it had when it began. The players of a channel poll at moments spread
//!   evenly over the interval, as players that did not all start together would.
//!
//! Every part or segment must be a `200` with a body that looks like what was asked for (an fMP4
//! fragment, whole MPEG-TS packets). A player that finds what it wanted next no longer listed
//! jumps ahead and counts as behind; one that fails [`MAX_FAILURES`] times in a row gives up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::args::HlsMode;
use super::hls::{HlsChannel, HlsShared};
use super::playlist::{Line, LowLatency, lines};
use super::state::record;
use super::wire::WireSubscriber;

mod hint;
mod ll;
mod polling;

/// Failed requests in a row after which a player gives up.
const MAX_FAILURES: u32 = 10;
/// The pause after a failed request.
const BACKOFF: Duration = Duration::from_millis(200);
/// Beyond the server's own limit on a blocking request (three target durations), how long a
/// request may take.
const SLACK: Duration = Duration::from_secs(10);
/// The longest playlist read.
const MAX_PLAYLIST: usize = 1 << 20;

/// Why a request gave nothing to use (already counted).
struct Failed;

/// What the latency of a part or segment counts from.
#[derive(Clone, Copy)]
enum Since {
    /// A moment on the run's clock; `u64::MAX` when it is not known (an error).
    At(u64),
    /// The moment the first player anywhere had part `.0` of the segment (`hint`).
    FirstToHave(u64),
}

/// One player.
struct Player {
    channel: Arc<HlsChannel>,
    shared: Arc<HlsShared>,
    reader: WireSubscriber,
    /// The last playlist read.
    playlist: Vec<u8>,
    /// The playlist's target duration, in seconds.
    target: u64,
    failures: u32,
    ready: bool,
    done: bool,
    behind: bool,
    /// Measured parts or segments received.
    received: u64,
    /// Latencies of the segment being received, recorded when it is done.
    latencies: Vec<u64>,
    /// `polling`: where in the polling interval this player polls, from 0 to 1.
    phase: f64,
}

/// Plays `channel` until done with its measured segments (or stopped), then holds the
/// connection until the channel is released.
pub(super) async fn play(
    channel: Arc<HlsChannel>,
    shared: Arc<HlsShared>,
    reader: WireSubscriber,
    phase: f64,
) {
    let mut player = Player {
        channel,
        shared,
        reader,
        playlist: Vec::with_capacity(4096),
        target: 2,
        failures: 0,
        ready: false,
        done: false,
        behind: false,
        received: 0,
        latencies: Vec::new(),
        phase,
    };
    let stop = player.shared.stop.clone();
    let mode = player.shared.mode;
    tokio::select! {
        // A player that gave up was counted by `failed`.
        _ = async {
            match mode {
                HlsMode::Ll => player.low_latency().await,
                HlsMode::Polling => player.polling().await,
                HlsMode::Hint => player.hinted().await,
            }
        } => {}
        _ = stop.cancelled() => {}
    }
    player.stopped();
    player.channel.release.cancelled().await;
}

impl Player {
    /// GETs the playlist at `path` into `self.playlist`, noting its target duration.
    async fn playlist(&mut self, path: &str) -> Result<(), Failed> {
        self.playlist.clear();
        let limit = self.limit();
        let result = tokio::time::timeout(limit, async {
            let status = self.reader.get(path).await?;
            if status != 200 {
                return Ok(Err(status));
            }
            while let Some(bytes) = self.reader.chunk().await? {
                if self.playlist.len() + bytes.len() > MAX_PLAYLIST {
                    anyhow::bail!("a playlist of more than {MAX_PLAYLIST} bytes");
                }
                self.playlist.extend_from_slice(bytes);
            }
            Ok(Ok(()))
        })
        .await;
        self.outcome(path, result)?;
        let text = String::from_utf8_lossy(&self.playlist);
        let target = lines(&text).find_map(|line| match line {
            Line::Target(t) => Some(t),
            _ => None,
        });
        match target {
            Some(target) => self.target = target.max(1),
            None => return Err(self.bad_body(path, "a playlist without #EXT-X-TARGETDURATION")),
        }
        Ok(())
    }

    /// GETs the part or segment at `path` (of `seq`) to its last byte, checks it and, if
    /// measured, its latency [`Since`] when.
    async fn media(&mut self, path: &str, seq: u64, since: Since) -> Result<(), Failed> {
        self.fetch(path, seq, since, false).await.map(|_| ())
    }

    /// [`Player::media`], but a `404` when `missing_ok` is no failure: `Ok(false)`.
    async fn fetch(
        &mut self,
        path: &str,
        seq: u64,
        since: Since,
        missing_ok: bool,
    ) -> Result<bool, Failed> {
        let limit = self.limit();
        let measuring = self.shared.measuring.load(Ordering::Relaxed);
        let result = tokio::time::timeout(limit, async {
            let status = self.reader.get(path).await?;
            if status != 200 {
                return Ok(Err(status));
            }
            let (mut len, mut head) = (0u64, [0u8; 8]);
            while let Some(bytes) = self.reader.chunk().await? {
                for (i, &b) in bytes
                    .iter()
                    .enumerate()
                    .take(8usize.saturating_sub(len as usize))
                {
                    head[len as usize + i] = b;
                }
                len += bytes.len() as u64;
            }
            Ok(Ok((len, head)))
        })
        .await;
        let now = self.shared.clock.now_ns();
        if missing_ok && matches!(result, Ok(Ok(Err(404)))) {
            self.count_request();
            return Ok(false);
        }
        let (len, head) = self.outcome(path, result)?;
        if let Err(what) = looks_right(self.shared.mode, len, &head) {
            return Err(self.bad_body(path, what));
        }
        if measuring {
            let delivered = &self.shared.totals.delivered_bytes;
            delivered.fetch_add(len, Ordering::Relaxed);
        }
        if self.channel.measured(seq) {
            let reference = match since {
                Since::At(at) => at,
                Since::FirstToHave(part) => self.channel.first_named(seq, part, now),
            };
            if reference == u64::MAX {
                self.shared
                    .totals
                    .error(format!("{path}: no time for seq {seq}"));
            } else {
                self.latencies.push(now.saturating_sub(reference).max(1));
            }
            self.received += 1;
            self.shared.received.fetch_add(1, Ordering::Relaxed);
        }
        Ok(true)
    }

    /// How long a request may take: the server answers a blocking one within three target
    /// durations.
    fn limit(&self) -> Duration {
        Duration::from_secs(3 * self.target) + SLACK
    }

    /// Counts a request and how it ended: its value, or the failure counted by kind.
    fn outcome<T>(
        &mut self,
        path: &str,
        result: Result<anyhow::Result<Result<T, u16>>, tokio::time::error::Elapsed>,
    ) -> Result<T, Failed> {
        self.count_request();
        let failures = &self.shared.failures;
        match result {
            Ok(Ok(Ok(value))) => return Ok(value),
            Ok(Ok(Err(status))) => {
                *failures.status.lock().entry(status).or_default() += 1;
                self.shared
                    .totals
                    .note(format!("GET {path}: HTTP {status}"));
            }
            Ok(Err(err)) => {
                failures.connection.fetch_add(1, Ordering::Relaxed);
                self.shared.totals.note(format!("GET {path}: {err:#}"));
            }
            Err(_) => {
                // What the server may still send must not be read as the next answer.
                self.reader.reset();
                failures.timeouts.fetch_add(1, Ordering::Relaxed);
                let limit = self.limit().as_secs();
                self.shared
                    .totals
                    .note(format!("GET {path}: no answer in {limit} s"));
            }
        }
        Err(Failed)
    }

    /// Counts a request answered, while measuring.
    fn count_request(&self) {
        if self.shared.measuring.load(Ordering::Relaxed) {
            self.shared.requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn bad_body(&self, path: &str, what: &str) -> Failed {
        let failures = &self.shared.failures;
        failures.bad_bodies.fetch_add(1, Ordering::Relaxed);
        self.shared.totals.note(format!("GET {path}: {what}"));
        Failed
    }

    /// After a failed request: a pause, or giving up after too many in a row.
    async fn failed(&mut self) -> Result<(), Failed> {
        self.failures += 1;
        if self.failures >= MAX_FAILURES {
            self.shared.players_gave_up.fetch_add(1, Ordering::Relaxed);
            return Err(Failed);
        }
        tokio::time::sleep(BACKOFF).await;
        Ok(())
    }

    /// The player has read its first playlist.
    fn began(&mut self) {
        if !self.ready {
            self.ready = true;
            self.channel.player_ready();
        }
    }

    fn fell_behind(&mut self) {
        if !self.behind {
            self.behind = true;
            self.shared.players_behind.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The player is done with segment `seq`: its latencies count, and it may be done.
    fn segment_done(&mut self, seq: u64) {
        let Some((from, last)) = self.channel.window() else {
            return;
        };
        if (from..=last).contains(&seq) {
            record(&self.shared.latency, self.latencies.drain(..));
            self.shared.totals.finished.fetch_add(1, Ordering::Relaxed);
        }
        self.done |= seq >= last;
    }

    /// The player stopped (done, gave up, or the run stopped it): its channel counts it.
    fn stopped(&mut self) {
        if !self.ready {
            self.channel.player_ready();
        }
        record(&self.shared.latency, self.latencies.drain(..));
        self.channel.player_done(self.received);
    }
}

/// Whether a body of `len` bytes starting with `head` is what `mode` asks for: an fMP4 fragment
/// (a `moof` or `styp` box first) or whole MPEG-TS packets.
fn looks_right(mode: HlsMode, len: u64, head: &[u8; 8]) -> Result<(), &'static str> {
    match mode {
        _ if len == 0 => Err("an empty body"),
        HlsMode::Ll | HlsMode::Hint if !matches!(&head[4..8], b"moof" | b"styp" | b"prft") => {
            Err("a part that is no fMP4 fragment")
        }
        HlsMode::Polling if head[0] != 0x47 || !len.is_multiple_of(188) => {
            Err("a segment that is no run of MPEG-TS packets")
        }
        _ => Ok(()),
    }
}
