//! The fragmented-MP4 view of an MPEG-TS channel, made once per channel and shared by all its
//! `live.mp4` viewers: the cost of the remux does not grow with them.
//!
//! A [`Remux`] follows its channel with the read path like any reader, passes every segment
//! through the [`Remuxer`] and writes what comes out into a channel of its own, outside the
//! registry, under the same seq: segment N there holds the fMP4 fragments of segment N here. A
//! `live.mp4` viewer is then a live viewer of that channel, with the same lossy rules and shared
//! chunks; it gets the init segment before its first fragment, and again when it changes.
//!
//! The output channel is not a publication: nothing there is counted as bytes in or reported as
//! an event (its bytes do count against the memory budget). A segment that fails or is cut short
//! here ends the same segment there normally, with the whole frames it had: the viewers go on.
//!
//! It also records each output segment's timing and parts (`index`), for the players that fetch
//! pieces (LL-HLS, DASH), and says when a part or segment is complete ([`Remux::changes`]).
//!
//! The remux starts with the first viewer or player, at the start of the segment being written
//! (so the first viewer starts within a segment). It stops when the channel ends, or once nobody
//! holds it and its lease ([`Remux::lease`], renewed by each playlist or piece fetched) has run
//! out; stopping ends the output channel and so every viewer's response.

mod index;
mod tracks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

pub(crate) use super::llhls::Rendered;
pub(crate) use index::{Index, PART_TARGET, Recorded, TIMESCALE};
pub(crate) use tracks::{Found, TRACKS, Timing, TrackOutput, TrackOutputs};

use super::channel::Channel;
use super::read::Cursor;
use super::segment::{ReadError, SegmentWriter};
use super::{Server, Stat, StatGuard};
use crate::media::fmp4::{Output, Remuxer};
use crate::protocol::SeqParam;

/// The MIME type of the output channel's segments.
const FMP4: &str = "video/mp4";
/// How many init segments are remembered (a viewer needs the one of the segment it starts).
const INITS_KEPT: usize = 8;

/// An init segment and the codecs it describes (`avc1.64001f,mp4a.40.2`).
#[derive(Debug)]
pub(crate) struct Init {
    pub(crate) bytes: Bytes,
    pub(crate) codecs: String,
    /// The first output seq it is for.
    pub(crate) from_seq: u64,
    /// Counts up with every new init segment.
    pub(crate) generation: u64,
}

/// What a viewer waiting for the first init segment learns.
#[derive(Clone, Debug)]
pub(crate) enum Ready {
    Waiting,
    /// The channel's tracks are known: the first init segment exists.
    Playing,
    /// The channel carries nothing the remuxer can put in MP4: why.
    Unsupported(String),
    /// The channel ended before anything could be played.
    Ended,
}

/// A running remux (see the module doc for when it stops).
pub(crate) struct Remux {
    output: Arc<Channel>,
    inits: Mutex<Vec<Arc<Init>>>,
    ready: watch::Sender<Ready>,
    index: Mutex<Index>,
    /// Bumped when a part or a segment is complete (or the remux stops).
    changes: watch::Sender<u64>,
    /// Until when (milliseconds after `born`) the remux runs with nobody holding it.
    leased_until: AtomicU64,
    born: Instant,
    /// The output track by track, for DASH (made once asked for).
    tracks: TrackOutputs,
    /// Playlists and manifests, with the change they were made for.
    rendered: [Mutex<Option<(u64, Bytes)>>; 2],
}

/// How often a remux nobody holds checks its lease.
const LEASE_CHECK: Duration = Duration::from_secs(1);

impl Remux {
    /// The channel's remux, started if it is not running.
    pub(crate) fn of(server: &Server, channel: &Arc<Channel>) -> Arc<Remux> {
        let mut slot = channel.remux_slot().lock();
        if let Some(running) = &*slot {
            return running.clone();
        }
        let ring = server.config().ring;
        let mut index = Index::new(ring);
        index.seed_longest(longest_held(channel));
        let remux = Arc::new(Remux {
            output: server.new_channel(channel.name(), FMP4),
            inits: Mutex::new(Vec::new()),
            ready: watch::channel(Ready::Waiting).0,
            index: Mutex::new(index),
            changes: watch::channel(0).0,
            leased_until: AtomicU64::new(0),
            born: Instant::now(),
            rendered: Default::default(),
            tracks: TrackOutputs::new(server, channel.name()),
        });
        let task = RemuxTask {
            remux: remux.clone(),
            cursor: Cursor::new(channel.clone(), SeqParam::Relative(2)),
            remuxer: Remuxer::new(),
            outputs: Vec::new(),
            tracks: tracks::Writing::default(),
            _counted: server.stat(Stat::Remuxes),
        };
        tokio::spawn(task.run(Arc::downgrade(&remux), channel.clone()));
        *slot = Some(remux.clone());
        remux
    }

    /// What `render` makes of the index, made once per change and shared.
    pub(crate) fn rendered(&self, kind: Rendered, render: fn(&Index, &Remux) -> Bytes) -> Bytes {
        let version = *self.changes.borrow();
        let mut cache = self.rendered[kind as usize].lock();
        if let Some((made_for, bytes)) = &*cache
            && *made_for == version
        {
            return bytes.clone();
        }
        let bytes = render(&self.index.lock(), self);
        *cache = Some((version, bytes.clone()));
        bytes
    }

    /// Init segment `generation`, if still kept.
    pub(crate) fn init_by_generation(&self, generation: u64) -> Option<Arc<Init>> {
        let inits = self.inits.lock();
        inits.iter().find(|i| i.generation == generation).cloned()
    }

    /// Keeps the remux running for `span` even if nobody holds it (players that poll).
    pub(crate) fn lease(&self, span: Duration) {
        let until = (self.born.elapsed() + span).as_millis() as u64;
        self.leased_until.fetch_max(until, Ordering::Relaxed);
    }

    /// The channel viewers read: the fMP4 fragments of each segment, under its seq.
    pub(crate) fn output(&self) -> &Arc<Channel> {
        &self.output
    }

    /// The output track by track; `want` makes it (from the next segment on).
    pub(crate) fn tracks(&self) -> &TrackOutputs {
        &self.tracks
    }

    /// The records of the segments held (timing, parts), for players that fetch pieces.
    pub(crate) fn index(&self) -> parking_lot::MutexGuard<'_, Index> {
        self.index.lock()
    }

    /// A receiver woken when a part or a segment is complete.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Waits until the first init segment exists, or it is known there will be none.
    pub(crate) async fn ready(&self) -> Ready {
        let mut ready = self.ready.subscribe();
        let state = ready.wait_for(|r| !matches!(r, Ready::Waiting)).await;
        state.map_or(Ready::Ended, |r| r.clone())
    }

    /// The init segment for output segment `seq`: the newest that starts at or before it.
    pub(crate) fn init_for(&self, seq: u64) -> Option<Arc<Init>> {
        let inits = self.inits.lock();
        let newest_first = inits.iter().rev();
        newest_first
            .clone()
            .find(|init| init.from_seq <= seq)
            .or_else(|| inits.first())
            .cloned()
    }
}

/// The task behind a [`Remux`]. It holds the remux only while working on it; the channel's
/// slot and the viewers hold it otherwise.
struct RemuxTask {
    remux: Arc<Remux>,
    cursor: Cursor,
    remuxer: Remuxer,
    outputs: Vec<Output>,
    /// The per-track segments being written.
    tracks: tracks::Writing,
    /// Counts the remux in `/metrics` while it runs.
    _counted: StatGuard,
}

impl RemuxTask {
    async fn run(mut self, weak: Weak<Remux>, channel: Arc<Channel>) {
        let unused = unused(weak, channel);
        tokio::pin!(unused);
        loop {
            let followed = tokio::select! {
                _ = &mut unused => break,
                followed = self.cursor.follow() => followed,
            };
            let Ok(followed) = followed else { break };
            let segment = followed.segment;
            let Some(writer) = self.open(segment.seq()) else {
                break;
            };
            tokio::select! {
                _ = &mut unused => break,
                _ = self.remux_segment(segment.reader(), segment.seq(), writer) => {}
            }
        }
        let remux = &self.remux;
        remux.output.close();
        remux.tracks.close();
        remux.ready.send_if_modified(|ready| {
            let waiting = matches!(ready, Ready::Waiting);
            if waiting {
                *ready = Ready::Ended;
            }
            waiting
        });
        remux.changes.send_modify(|n| *n += 1);
    }

    /// Starts output segment `seq` (`None` once the output channel is closed).
    fn open(&self, seq: u64) -> Option<SegmentWriter> {
        let output = &self.remux.output;
        let target = output.target_for_write(SeqParam::Index(seq), false).ok()?;
        output.start_writing(&target).ok()
    }

    /// Remuxes one segment as its bytes arrive. A segment that fails or is dropped ends its
    /// output normally: the fragments written so far are whole frames.
    async fn remux_segment(
        &mut self,
        mut reader: super::segment::SegmentReader,
        seq: u64,
        mut writer: SegmentWriter,
    ) {
        if self.remux.tracks.wanted() {
            self.remuxer.split_tracks(true);
        }
        self.remuxer.start_segment(seq);
        let init = self.remux.init_for(seq).map_or(0, |init| init.generation);
        self.remux.index.lock().begin(seq, init);
        let complete = loop {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => self.remuxer.push(&chunk, &mut self.outputs),
                Ok(None) => break true,
                Err(ReadError::Failed | ReadError::Evicted) => break false,
            }
            if !self.deliver(seq, &mut writer) {
                return;
            }
        };
        self.remuxer.end_segment(complete, &mut self.outputs);
        if self.deliver(seq, &mut writer) {
            let _ = writer.finish();
        }
        self.remux.tracks.end(&mut self.tracks);
        self.remux.index.lock().end();
        self.remux.changes.send_modify(|n| *n += 1);
    }

    /// Passes the remuxer's outputs on; false if the output segment refused them (closed, or
    /// over the memory budget: it failed, and its viewers end).
    ///
    /// An init segment normally comes before a segment's first fragment: viewers get it before
    /// that segment. One that comes mid-segment (new parameters at a keyframe inside a segment)
    /// is also written in the segment itself, where the viewers reading it need it, and is for
    /// the viewers that start with the next segment.
    fn deliver(&mut self, seq: u64, writer: &mut SegmentWriter) -> bool {
        for output in self.outputs.drain(..) {
            match output {
                Output::Init { bytes, codecs } => {
                    let mid_segment = writer.segment().snapshot().len > 0;
                    if mid_segment && writer.write(bytes.clone()).is_err() {
                        return false;
                    }
                    let mut inits = self.remux.inits.lock();
                    let generation = inits.last().map_or(0, |i| i.generation + 1);
                    inits.push(Arc::new(Init {
                        bytes,
                        codecs,
                        from_seq: seq + u64::from(mid_segment),
                        generation,
                    }));
                    if inits.len() > INITS_KEPT {
                        inits.remove(0);
                    }
                    drop(inits);
                    if !mid_segment {
                        self.remux.index.lock().set_init(generation);
                    }
                    self.remux.ready.send_replace(Ready::Playing);
                }
                Output::Fragment {
                    bytes,
                    keyframe,
                    start,
                    duration,
                    ..
                } => {
                    let at = writer.segment().snapshot().len;
                    let end = at + bytes.len() as u64;
                    if writer.write(bytes).is_err() {
                        return false;
                    }
                    let mut index = self.remux.index.lock();
                    if index.fragment((at, end), (start, duration), keyframe) {
                        drop(index);
                        self.remux.changes.send_modify(|n| *n += 1);
                    }
                }
                Output::Unsupported(reason) => {
                    self.remux.ready.send_replace(Ready::Unsupported(reason));
                }
                // Per-track output (for DASH) is not turned on here.
                Output::TrackInit {
                    track,
                    bytes,
                    codec,
                } => {
                    self.remux.tracks.set_init(track, bytes, codec);
                }
                // A track refused (over the budget) fails its DASH segment only; the muxed output goes on.
                Output::TrackFragment {
                    track,
                    head,
                    media,
                    start,
                    duration,
                    ..
                } => {
                    let timing = (start, duration);
                    let tracks = &self.remux.tracks;
                    if tracks.fragment(&mut self.tracks, (track, seq), (head, media), timing) {
                        self.remux.changes.send_modify(|n| *n += 1);
                    }
                }
            }
        }
        true
    }
}

/// Resolves once nobody but the channel's slot holds the remux and its lease has run out, having
/// emptied the slot (under its lock, so a viewer arriving then starts a new remux).
async fn unused(remux: Weak<Remux>, channel: Arc<Channel>) {
    loop {
        tokio::time::sleep(LEASE_CHECK).await;
        let mut slot = channel.remux_slot().lock();
        let Some(held) = remux.upgrade() else {
            return;
        };
        let now = held.born.elapsed().as_millis() as u64;
        // Held by the slot, the task and `held` itself: nobody else.
        if Arc::strong_count(&held) <= 3 && held.leased_until.load(Ordering::Relaxed) <= now {
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &held)) {
                *slot = None;
            }
            return;
        }
    }
}

/// The longest complete segment `channel` holds by its measured duration, in [`TIMESCALE`] units.
fn longest_held(channel: &Channel) -> u64 {
    let versions = channel.ring_view().versions;
    let durations = versions.iter().filter_map(|v| v.facts().duration);
    let longest = durations.max().unwrap_or_default();
    (longest.as_micros() as u64).saturating_mul(TIMESCALE) / 1_000_000
}

/// Where a channel keeps its running remux (none until a viewer or player asks).
pub(crate) type RemuxSlot = Mutex<Option<Arc<Remux>>>;
