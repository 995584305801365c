//! What the remux records of each output segment as it is made, for the players that fetch
//! pieces instead of following a stream (LL-HLS, DASH): when the segment starts on the output's
//! clock and how long it lasts, and its parts: runs of whole fragments of about [`PART_AIM`], as
//! byte ranges of the segment. A part is recorded only once it is complete (LL-HLS forbids
//! serving a part before all of it exists). Records are kept for the segments the output
//! channel's ring holds; a reader takes a [`Recorded`] copy (a few hundred bytes).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// The output clock: decode times and durations of video (or of audio on an audio-only
/// channel), in 90 kHz units.
pub(crate) const TIMESCALE: u64 = 90_000;
/// A part closes once it lasts this long: a quarter of a second.
pub(crate) const PART_AIM: u64 = TIMESCALE / 4;
/// The longest a part can be: [`PART_AIM`] plus one frame of up to 83 ms (12 fps and faster).
/// LL-HLS's `PART-TARGET`.
pub(crate) const PART_TARGET: u64 = PART_AIM + TIMESCALE / 12;

/// A part: whole fragments, bytes `start..end` of its segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) duration: u64,
    /// It starts with a keyframe.
    pub(crate) independent: bool,
}

/// One output segment, as far as it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) seq: u64,
    /// Decode time of its first fragment (`None` before it).
    pub(crate) start: Option<u64>,
    /// The duration of its complete parts.
    pub(crate) duration: u64,
    pub(crate) parts: Vec<Part>,
    /// The segment ended (its last part is recorded).
    pub(crate) complete: bool,
    /// The generation of the init segment its fragments need.
    pub(crate) init: u64,
    /// When its first fragment was made.
    pub(crate) made_at: Option<SystemTime>,
    /// Discontinuities before it since the remux started: one more than the segment before it's
    /// when it does not [`Recorded::follows`] that one (set with its first fragment).
    pub(crate) discontinuity: u64,
}

impl Recorded {
    /// Whether the segment follows `previous` on the output clock without a gap.
    pub(crate) fn follows(&self, previous: &Recorded) -> bool {
        let (Some(start), Some(before)) = (self.start, previous.start) else {
            return false;
        };
        self.seq == previous.seq + 1
            && self.init == previous.init
            && start.abs_diff(before + previous.duration) <= TIMESCALE / 10
    }
}

/// The records of the segments held, oldest first.
#[derive(Debug)]
pub(crate) struct Index {
    segments: VecDeque<Recorded>,
    keep: usize,
    /// The part being made: its start and how long it lasts so far.
    open: Option<Part>,
    longest: u64,
    /// The wall clock of time zero on the output clock, set by the first fragment.
    anchor: Option<SystemTime>,
}

impl Index {
    /// An index that keeps the records of the last `keep` segments.
    pub(crate) fn new(keep: usize) -> Index {
        Index {
            segments: VecDeque::new(),
            keep: keep.max(1),
            open: None,
            longest: 0,
            anchor: None,
        }
    }

    /// Segment `seq` starts, its fragments needing init segment `init`.
    pub(crate) fn begin(&mut self, seq: u64, init: u64) {
        self.open = None;
        self.segments.retain(|s| s.seq != seq);
        self.segments.push_back(Recorded {
            seq,
            start: None,
            duration: 0,
            parts: Vec::new(),
            complete: false,
            init,
            made_at: None,
            discontinuity: 0,
        });
        while self.segments.len() > self.keep {
            self.segments.pop_front();
        }
    }

    /// The init segment changed before the segment's first fragment.
    pub(crate) fn set_init(&mut self, init: u64) {
        if let Some(current) = self.segments.back_mut().filter(|s| s.start.is_none()) {
            current.init = init;
        }
    }

    /// A fragment was written at bytes `start..end` of the current segment. True if it closed a
    /// part.
    pub(crate) fn fragment(
        &mut self,
        (start, end): (u64, u64),
        (time, duration): (u64, u64),
        keyframe: bool,
    ) -> bool {
        let count = self.segments.len();
        if count == 0 {
            return false;
        }
        if self.segments[count - 1].start.is_none() {
            self.first_fragment(time);
        }
        let part = self.open.get_or_insert(Part {
            start,
            end: start,
            duration: 0,
            independent: keyframe,
        });
        part.end = end;
        part.duration += duration;
        if part.duration < PART_AIM {
            return false;
        }
        self.close_part();
        true
    }

    /// The current segment's first fragment, made now at `time` on the output clock.
    fn first_fragment(&mut self, time: u64) {
        let count = self.segments.len();
        let previous = (count >= 2).then(|| self.segments[count - 2].clone());
        let current = &mut self.segments[count - 1];
        let now = SystemTime::now();
        current.start = Some(time);
        current.made_at = Some(now);
        let since_zero = Duration::from_micros(time.saturating_mul(1_000_000) / TIMESCALE);
        self.anchor
            .get_or_insert(now.checked_sub(since_zero).unwrap_or(now));
        current.discontinuity = match previous {
            Some(previous) => previous.discontinuity + u64::from(!current.follows(&previous)),
            None => 0,
        };
    }

    /// The current segment ended: its last part is closed.
    pub(crate) fn end(&mut self) {
        self.close_part();
        if let Some(current) = self.segments.back_mut() {
            current.complete = true;
            self.longest = self.longest.max(current.duration);
        }
    }

    fn close_part(&mut self) {
        let (Some(part), Some(current)) = (self.open.take(), self.segments.back_mut()) else {
            return;
        };
        current.duration += part.duration;
        current.parts.push(part);
    }

    /// Counts `ticks` as the longest segment so far if it is longer: the channel's own segments,
    /// measured before the remux started, so that a target duration made from [`Index::longest`]
    /// is right from the first playlist (it must never change).
    pub(crate) fn seed_longest(&mut self, ticks: u64) {
        self.longest = self.longest.max(ticks);
    }

    /// The longest complete segment so far, in [`TIMESCALE`] units (LL-HLS's target duration
    /// must not shrink while a player follows).
    pub(crate) fn longest(&self) -> u64 {
        self.longest
    }

    /// The wall clock of time zero on the output clock (DASH's availability start), once a
    /// fragment was made.
    pub(crate) fn anchor(&self) -> Option<SystemTime> {
        self.anchor
    }

    /// The records, oldest first.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &Recorded> {
        self.segments.iter()
    }

    /// The record of segment `seq`, if held.
    pub(crate) fn get(&self, seq: u64) -> Option<&Recorded> {
        self.segments.iter().find(|s| s.seq == seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = TIMESCALE / 25;

    #[test]
    fn parts_are_whole_fragments_of_about_a_quarter_second_and_never_longer_than_the_target() {
        let mut index = Index::new(2);
        index.begin(7, 0);
        let mut offset = 0;
        for frame in 0..25u64 {
            let len = 1000 + frame;
            index.fragment((offset, offset + len), (frame * FRAME, FRAME), frame == 0);
            offset += len;
        }
        index.end();
        let segment = index.get(7).unwrap();
        assert!(segment.complete);
        assert_eq!((segment.start, segment.duration), (Some(0), 25 * FRAME));
        let parts = &segment.parts;
        // Seven frames of 40 ms reach a quarter second: 7 + 7 + 7 + 4.
        assert_eq!(parts.len(), 4, "{parts:?}");
        assert!(parts.iter().all(|p| p.duration <= PART_TARGET));
        assert!(parts[0].independent && !parts[1].independent);
        // Back to back, covering the segment.
        assert_eq!(parts[0].start, 0);
        assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(parts.last().unwrap().end, offset);
    }

    #[test]
    fn it_keeps_the_last_segments_and_knows_which_follow_each_other() {
        let mut index = Index::new(2);
        for seq in 0..3u64 {
            index.begin(seq, 0);
            index.fragment((0, 10), (seq * 25 * FRAME, 25 * FRAME), true);
            index.end();
        }
        let seqs: Vec<u64> = index.segments().map(|s| s.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert!(index.get(2).unwrap().follows(index.get(1).unwrap()));
        // A skipped seq, a new init or a jump on the clock is a discontinuity.
        index.begin(4, 0);
        index.fragment((0, 10), (4 * 25 * FRAME, FRAME), true);
        assert!(!index.get(4).unwrap().follows(index.get(2).unwrap()));
        index.begin(5, 1);
        index.fragment((0, 10), (4 * 25 * FRAME + FRAME, FRAME), true);
        assert!(!index.get(5).unwrap().follows(index.get(4).unwrap()));
    }
}
