//! The output timeline: 33-bit MPEG-TS timestamps (90 kHz) placed on one continuous, monotonic
//! decode timeline for the whole channel, across the wrap-around, skipped or truncated segments
//! and publisher restarts.
//!
//! All tracks share one mapping (raw timestamp, unwrapped, plus an offset), so audio stays in sync
//! with video as the source had it. Only the leading track (video, else audio) moves the offset:
//! when a segment does not start where the previous one ended (a segment was skipped or cut short,
//! the publisher restarted), or when within a segment its decode time steps back or jumps ahead by
//! more than [`MAX_STEP`], the offset changes so that the track continues right where it was
//! expected to. The other tracks follow through the shared offset.

use crate::media::mpegts::pes::wrapped_step;

/// The first timestamp seen is placed here (90 kHz): room for samples of other tracks a little
/// earlier than it (audio muxed ahead of video, B-frames shown before their decode time) without
/// going below zero.
const BASE: i64 = 10 * 90_000;
/// A forward step of the leading track's decode time beyond this is a jump, not time passing: no
/// video is slower than a frame a second, and a longer step taken as one long frame would make
/// an LL-HLS part far longer than its target (a 2 s gap made a 2.2 s part against 0.333 s).
pub(super) const MAX_STEP: i64 = 90_000;
/// 33-bit timestamps.
pub(super) const MASK: u64 = (1 << 33) - 1;

/// Maps raw timestamps to the output timeline (90 kHz).
#[derive(Default)]
pub(super) struct Clock {
    /// The last raw timestamp seen and where it was unwrapped to.
    last: Option<(i64, i64)>,
    offset: i64,
    /// Times the offset moved to bridge a discontinuity.
    pub(super) rebases: u64,
}

/// Where the leading track stands.
pub(super) struct Previous {
    /// Decode time of its latest sample.
    pub(super) last: i64,
    /// Where the next sample should be: the latest one's decode time plus its duration.
    pub(super) expected: i64,
    /// How far after `expected` a segment's first sample may start without moving the timeline
    /// (a real gap, or timestamps rounded differently).
    pub(super) tolerance: i64,
}

impl Clock {
    /// A raw timestamp on the output timeline (it may be negative or far off for a stream that
    /// jumped while the leading track did not yet).
    pub(super) fn map(&mut self, raw: u64) -> i64 {
        let raw = (raw & MASK) as i64;
        let unwrapped = match self.last {
            None => {
                self.offset = BASE - raw;
                raw
            }
            Some((last_raw, last)) => last + wrapped_step(last_raw, raw),
        };
        self.last = Some((raw, unwrapped));
        unwrapped + self.offset
    }

    /// Places a decode timestamp of the leading track. `fresh`: its first sample in a segment,
    /// which must continue the previous segment (within the tolerance).
    pub(super) fn place_leading(
        &mut self,
        raw: u64,
        previous: Option<&Previous>,
        fresh: bool,
    ) -> i64 {
        let mapped = self.map(raw);
        let Some(previous) = previous else {
            return mapped;
        };
        let off = if fresh {
            mapped < previous.expected || mapped - previous.expected > previous.tolerance
        } else {
            mapped <= previous.last || mapped - previous.last > MAX_STEP
        };
        if !off {
            return mapped;
        }
        self.offset += previous.expected - mapped;
        self.rebases += 1;
        previous.expected
    }
}

/// Converts between the 90 kHz clock and an audio sample rate.
pub(super) fn ticks_to_samples(ticks: i64, rate: u32) -> i64 {
    (i128::from(ticks) * i128::from(rate) / 90_000) as i64
}

pub(super) fn samples_to_ticks(samples: i64, rate: u32) -> i64 {
    (i128::from(samples) * 90_000 / i128::from(rate.max(1))) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_rebase() {
        let mut clock = Clock::default();
        let top = (1 << 33) - 1800;
        assert_eq!(clock.map(top), BASE);
        // Across the wrap-around: a small step forward.
        assert_eq!(clock.map(1800), BASE + 3600);
        let previous = Previous {
            last: BASE + 3600,
            expected: BASE + 7200,
            tolerance: 1800,
        };
        // The next frame 1 s later than expected, in a new segment: moved back to expected.
        assert_eq!(
            clock.place_leading(1800 + 93_600, Some(&previous), true),
            BASE + 7200
        );
        assert_eq!(clock.rebases, 1);
        // The timeline follows for every stream.
        assert_eq!(clock.map(1800 + 93_600 + 3600), BASE + 10_800);
        // Within a segment, a step back is a discontinuity too.
        let previous = Previous {
            last: BASE + 10_800,
            expected: BASE + 14_400,
            tolerance: 1800,
        };
        assert_eq!(
            clock.place_leading(5, Some(&previous), false),
            BASE + 14_400
        );
        // And an ordinary step is not.
        let previous = Previous {
            last: BASE + 14_400,
            expected: BASE + 18_000,
            tolerance: 1800,
        };
        assert_eq!(
            clock.place_leading(3605, Some(&previous), false),
            BASE + 18_000
        );
        assert_eq!(clock.rebases, 2);
    }
}
