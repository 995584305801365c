//! The timeline behind a channel's playlists: which of the segments the ring holds are listed, in
//! what order, under which media sequence number, with which duration, wall-clock time and
//! discontinuities. It knows nothing of the playlist format: the HLS media playlist renders it
//! ([`super::playlist`]), and LL-HLS parts or a DASH manifest are meant to render the same one.
//!
//! A playlist's history must not change under its players (RFC 8216, 6.2.1–6.2.2): a segment keeps
//! its media sequence number, its discontinuity sequence number and its start time from the
//! moment it is listed, segments leave only from the front, and the target duration does not
//! shrink. So the timeline is state kept per channel and moved forward, never recomputed:
//!
//! - Seqs are decided in order, each once: a complete segment whose duration was measured is
//!   *listed*; any other seq (failed, never written, closed empty, unknown duration, passed over
//!   by a later complete seq while still being written) is *passed over*, and the next listed
//!   segment starts with a discontinuity. Deciding stops at the first seq still being written.
//! - A listed segment also starts with a discontinuity when its first PTS is not where the one
//!   before it ended (more than [`PTS_TOLERANCE`] off), when the publisher started over, or when
//!   it does not start with a keyframe (it lost it: a decoder must not go on from the segment
//!   before).
//! - Media sequence numbers count listed segments: the first one listed takes its seq, each next
//!   one the number after (a seq passed over takes no number, so a player's count never skips or
//!   goes back, even when a restarted publisher reuses seqs).
//! - A listed segment whose version left the ring (evicted, replaced by a newer version of its
//!   seq, dropped by a restart) takes every segment before it out of the list with it.
//! - The list keeps the newest `window` segments.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::super::facts::Facts;
use crate::media::mpegts::pes::wrapped_step;

/// How far a segment's first PTS may be from where the one before it ended and still follow it:
/// half a second, in 90 kHz ticks. A stream's very last audio PES can be shorter than the step the
/// meter estimates its length from (one PES of AAC holds up to about 0.4 s as ffmpeg muxes it);
/// a publisher or encoder that restarts jumps much further.
pub(crate) const PTS_TOLERANCE: i64 = 45_000;

/// Where a version held by the ring stands, as the timeline needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Held {
    /// Being written, or waiting for its first byte.
    Open,
    /// Its writer failed: never listed.
    Failed,
    /// Complete, with what was measured as it was written.
    Complete(Facts),
}

/// The ring as the timeline reads it.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// How many times a publisher started over (seqs begin again at `run_start`).
    pub(crate) run: u64,
    pub(crate) run_start: u64,
    /// Every version held, by seq, one per seq.
    pub(crate) held: Vec<(u64, Held)>,
}

/// One listed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    /// Which version of the seq ([`version_tag`]): its URI names it, so that a cache never
    /// serves another version's bytes for it.
    pub(crate) tag: u64,
    /// Media sequence number.
    pub(crate) msn: u64,
    /// Discontinuity sequence number: discontinuities up to and including this segment's.
    pub(crate) dsn: u64,
    /// Does not follow the segment listed before it.
    pub(crate) discontinuity: bool,
    pub(crate) duration_ms: u64,
    /// Wall clock of its first frame: the first byte's arrival after a discontinuity, else where
    /// the segment before it ended (so that times and durations always agree).
    pub(crate) program_date_time: SystemTime,
    /// Starts with a keyframe (or carries no video): decodes without the segment before it.
    pub(crate) independent: bool,
}

/// Where the last listed segment ended, for the next one.
#[derive(Clone, Copy, Debug)]
struct End {
    pts: u64,
    time: SystemTime,
    msn: u64,
    dsn: u64,
}

/// A channel's timeline (module doc).
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    entries: VecDeque<Entry>,
    /// The first seq not decided yet; `None` before the first update.
    next_seq: Option<u64>,
    run: u64,
    /// A seq was passed over, or the publisher started over, since the last listed segment.
    gap: bool,
    end: Option<End>,
    /// The longest listed duration so far, rounded up to whole seconds (never shrinks).
    target_secs: u64,
}

impl Timeline {
    /// The listed segments, oldest first.
    pub(crate) fn entries(&self) -> &VecDeque<Entry> {
        &self.entries
    }

    /// The target duration in seconds: at least every listed duration (rounded up), and never
    /// less than it was (1 before anything is listed).
    pub(crate) fn target_secs(&self) -> u64 {
        self.target_secs.max(1)
    }

    /// Moves the timeline forward to what `view` holds, keeping at most `window` segments.
    pub(crate) fn update(&mut self, view: &View, window: usize) {
        if view.run != self.run {
            self.run = view.run;
            self.gap = true;
            self.next_seq = self.next_seq.map(|next| next.min(view.run_start));
        }
        self.drop_gone(&view.held);
        let Some(&(oldest, _)) = view.held.first() else {
            return;
        };
        let mut next = match self.next_seq {
            None => oldest,
            // Behind the ring (nobody asked for a while): what was not decided is gone.
            Some(next) if next < oldest => {
                self.gap = true;
                oldest
            }
            Some(next) => next,
        };
        let last_complete = view
            .held
            .iter()
            .rposition(|(_, held)| matches!(held, Held::Complete(_)));
        for (i, &(seq, held)) in view.held.iter().enumerate() {
            if seq < next {
                continue;
            }
            let overtaken = last_complete.is_some_and(|last| last > i);
            let listed = match held {
                Held::Open if !overtaken => break,
                Held::Open | Held::Failed => None,
                Held::Complete(facts) => self.entry(seq, &facts, seq > next),
            };
            match listed {
                Some(entry) => self.push(entry),
                None => self.gap = true,
            }
            next = seq + 1;
        }
        self.next_seq = Some(next);
        while self.entries.len() > window.max(1) {
            self.entries.pop_front();
        }
    }

    /// Takes out the listed segments whose version the ring no longer holds, and every one
    /// before the last of them (segments leave a playlist from the front only).
    fn drop_gone(&mut self, held: &[(u64, Held)]) {
        let still_held = |entry: &Entry| {
            let found = held.binary_search_by_key(&entry.seq, |(seq, _)| *seq);
            match found.map(|i| held[i].1) {
                Ok(Held::Complete(facts)) => version_tag(&facts) == Some(entry.tag),
                _ => false,
            }
        };
        if let Some(gone) = self.entries.iter().rposition(|e| !still_held(e)) {
            self.entries.drain(..=gone);
        }
    }

    /// The entry for complete segment `seq`, if its timing is known; `skipped`: seqs right before
    /// it were not held.
    fn entry(&mut self, seq: u64, facts: &Facts, skipped: bool) -> Option<Entry> {
        let tag = version_tag(facts)?;
        let first_pts = facts.first_pts?;
        let duration = facts.duration?;
        let ticks = duration_ticks(duration);
        let duration_ms = ticks.saturating_add(45) / 90;
        let started = facts.started_at?;
        if duration_ms == 0 {
            return None;
        }
        let (msn, dsn, discontinuity, program_date_time) = match self.end {
            None => (seq, 0, false, started),
            Some(end) => {
                let step = wrapped_step(end.pts as i64, first_pts as i64);
                let jumped = self.gap || skipped || step.abs() > PTS_TOLERANCE;
                // A segment that lost its keyframe cannot be decoded from the one before it
                // (that GOP's frames are not its references): a player resets its decoder there
                // rather than show garbage. Its time still follows.
                let discontinuity = jumped || facts.starts_with_keyframe == Some(false);
                let time = if jumped { started } else { end.time };
                (
                    end.msn + 1,
                    end.dsn + u64::from(discontinuity),
                    discontinuity,
                    time,
                )
            }
        };
        self.end = Some(End {
            pts: first_pts.wrapping_add(ticks) % (1 << 33),
            time: program_date_time
                .checked_add(duration)
                .unwrap_or(program_date_time),
            msn,
            dsn,
        });
        Some(Entry {
            seq,
            tag,
            msn,
            dsn,
            discontinuity,
            duration_ms,
            program_date_time,
            independent: facts.starts_with_keyframe != Some(false),
        })
    }

    fn push(&mut self, entry: Entry) {
        self.gap = false;
        self.target_secs = self.target_secs.max(entry.duration_ms.div_ceil(1000));
        self.entries.push_back(entry);
    }
}

/// Names one version of a segment: the wall clock of its first byte, in nanoseconds since 1970.
/// Two versions of one seq never start in the same nanosecond (each is a new POST whose first
/// byte is written after the version before it was made), across restarts of the server too.
/// `None` for a version without bytes.
pub(crate) fn version_tag(facts: &Facts) -> Option<u64> {
    let since_epoch = facts.started_at?.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_nanos()).ok()
}

/// A measured duration back in 90 kHz ticks (facts keep it as a [`Duration`], rounded down to
/// the nanosecond from whole ticks, so rounding to the nearest tick gives them back exactly).
fn duration_ticks(duration: Duration) -> u64 {
    let nanos = duration.as_nanos();
    u64::try_from((nanos * 9 + 50_000) / 100_000).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
