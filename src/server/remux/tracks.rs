//! The remux's output track by track, for DASH players (one track per Representation): made
//! only once a DASH player asks ([`TrackOutputs::wanted`]), from the next segment on. Each track
//! has a channel of its own, outside the registry, under the channel's seqs like the muxed output
//! (segment N holds that track's fragments of segment N), its newest init segment, and its timing
//! per segment (start and duration on the 90 kHz clock), from which the manifest's timelines are
//! made. A fragment is written as its own header and a slice of the muxed fragment's samples: no
//! copy. Players name a track's segment by its start time (DASH's `$Time$`): [`TrackOutput::find`]
//! maps it back to a seq.
//!
//! The memory budget counts each track's segments as well as the muxed ones, although their
//! samples are the same bytes: with DASH players, a remux's output counts about twice what it
//! holds (kept so: the budget never counts less than is held).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use super::super::Server;
use super::super::channel::Channel;
use super::super::segment::SegmentWriter;
use crate::media::fmp4::Track;
use crate::protocol::SeqParam;

/// The tracks, in the order of [`index`].
pub(crate) const TRACKS: [Track; 2] = [Track::Video, Track::Audio];

/// A track's place in the arrays here.
pub(crate) fn index(track: Track) -> usize {
    match track {
        Track::Video => 0,
        Track::Audio => 1,
    }
}

/// Where a track's fragments of one segment stand: its start and duration on the 90 kHz clock.
pub(crate) type Timing = (u64, u64);

/// One track's output.
pub(crate) struct TrackOutput {
    pub(crate) channel: Arc<Channel>,
    /// Its newest init segment and codec (`avc1.64001f`).
    init: Mutex<Option<(Bytes, String)>>,
    /// Timing of the segments held, oldest first, complete ones only.
    timings: Mutex<Vec<(u64, Timing)>>,
    /// The segment being written: its seq and start.
    writing: Mutex<Option<(u64, u64)>>,
}

/// Where the segment that starts at a given time stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Segment `seq` (complete, or being written).
    Seq(u64),
    /// Not begun yet, but it may be the next one.
    Ahead,
    /// No segment held starts then, and none will.
    Gone,
}

impl TrackOutput {
    /// The newest init segment and codec.
    pub(crate) fn init(&self) -> Option<(Bytes, String)> {
        self.init.lock().clone()
    }

    /// The segment that starts at `time`. One later than every segment begun is [`Found::Ahead`]
    /// if within `horizon` of the newest start (a player asking for the next segment early),
    /// [`Found::Gone`] beyond it.
    pub(crate) fn find(&self, time: u64, horizon: u64) -> Found {
        let timings = self.timings.lock();
        let complete = timings.iter().find(|(_, (start, _))| *start == time);
        if let Some((seq, _)) = complete {
            return Found::Seq(*seq);
        }
        let writing = *self.writing.lock();
        if let Some((seq, start)) = writing
            && start == time
        {
            return Found::Seq(seq);
        }
        let newest = writing
            .map(|(_, start)| start)
            .into_iter()
            .chain(timings.last().map(|(_, (start, _))| *start))
            .max();
        match newest {
            Some(newest) if time > newest && time - newest <= horizon => Found::Ahead,
            None => Found::Ahead,
            Some(_) => Found::Gone,
        }
    }

    /// The complete segments held, oldest first, with their timing.
    pub(crate) fn timings(&self) -> Vec<(u64, Timing)> {
        self.timings.lock().clone()
    }
}

/// Both tracks' outputs.
pub(crate) struct TrackOutputs {
    wanted: AtomicBool,
    keep: usize,
    pub(crate) tracks: [TrackOutput; 2],
}

/// The per-track segments being written by the remux task.
#[derive(Default)]
pub(crate) struct Writing {
    seq: u64,
    writers: [Option<(SegmentWriter, Timing)>; 2],
}

impl TrackOutputs {
    pub(crate) fn new(server: &Server, name: &str) -> TrackOutputs {
        let track = |kind: &str| TrackOutput {
            channel: server.new_channel(name, &format!("{kind}/mp4")),
            init: Mutex::new(None),
            timings: Mutex::new(Vec::new()),
            writing: Mutex::new(None),
        };
        TrackOutputs {
            wanted: AtomicBool::new(false),
            keep: server.config().hls_segments(),
            tracks: [track("video"), track("audio")],
        }
    }

    /// A DASH player asked: make the tracks from the next segment on.
    pub(crate) fn want(&self) {
        self.wanted.store(true, Ordering::Relaxed);
    }

    /// [`Self::want`], for a request about `track`: its output.
    pub(crate) fn want_track(&self, track: Track) -> &TrackOutput {
        self.want();
        self.get(track)
    }

    pub(crate) fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    pub(crate) fn get(&self, track: Track) -> &TrackOutput {
        &self.tracks[index(track)]
    }

    pub(crate) fn set_init(&self, track: Track, bytes: Bytes, codec: String) {
        *self.get(track).init.lock() = Some((bytes, codec));
    }

    /// A fragment of `track` for segment `seq`: its header then its samples. True if it began the
    /// track's segment (players waiting for it can look again). A segment that refuses it
    /// (closed, or over the memory budget) fails: the muxed output goes on.
    pub(crate) fn fragment(
        &self,
        writing: &mut Writing,
        (track, seq): (Track, u64),
        (head, media): (Bytes, Bytes),
        (start, duration): Timing,
    ) -> bool {
        if writing.seq != seq {
            self.end(writing);
            writing.seq = seq;
        }
        let slot = &mut writing.writers[index(track)];
        let mut began = false;
        if slot.is_none() {
            let channel = &self.get(track).channel;
            let writer = channel
                .target_for_write(SeqParam::Index(seq), false)
                .and_then(|target| channel.start_writing(&target));
            let Ok(writer) = writer else { return false };
            *slot = Some((writer, (start, 0)));
            *self.get(track).writing.lock() = Some((seq, start));
            began = true;
        }
        if let Some((writer, timing)) = slot {
            timing.1 += duration;
            let _ = writer.write(head).and_then(|()| writer.write(media));
        }
        began
    }

    /// The segment's tracks are complete: their timings are recorded.
    pub(crate) fn end(&self, writing: &mut Writing) {
        for (i, slot) in writing.writers.iter_mut().enumerate() {
            let Some((writer, timing)) = slot.take() else {
                continue;
            };
            *self.tracks[i].writing.lock() = None;
            if writer.finish().is_ok() {
                let mut timings = self.tracks[i].timings.lock();
                timings.retain(|(seq, _)| *seq != writing.seq);
                timings.push((writing.seq, timing));
                let excess = timings.len().saturating_sub(self.keep);
                timings.drain(..excess);
            }
        }
    }

    /// The remux stopped: the tracks' channels end.
    pub(crate) fn close(&self) {
        for track in &self.tracks {
            track.channel.close();
        }
    }
}
