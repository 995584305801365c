//! Segment facts: what each version knows about its data, measured as the bytes pass through its
//! writer (no second pass, no copy): its size, the wall-clock time of its first byte and of its
//! end, and for MPEG-TS channels its timing (first PTS, duration, whether it starts with a
//! keyframe), which HLS playlists need.
//!
//! The cost: for every channel, a clock read when a version gets its first byte and when it ends.
//! For MPEG-TS channels (type `video/mp2t`), one allocation per segment for its [`TimingMeter`],
//! which reads the 4-byte header of every 188-byte packet and the PES headers of one stream,
//! outside the version's lock; the channel's [`MeterMemory`] mutex is taken when a segment starts
//! and when its meter learns something new (a table, the frame interval), not per chunk. For other
//! channels the writer checks one `Option` per write.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::media::mpegts::{MeterMemory, Timing, TimingMeter};

/// What is known about a version's data, measured as it was written (no second pass over it).
/// The timing fields are set when the writer completes the version: a version that failed, or
/// that was closed from outside while being written (`DELETE` of its seq), has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Facts {
    /// Bytes written so far (all of them once it ended).
    pub bytes: u64,
    /// When the first byte was written.
    pub started_at: Option<SystemTime>,
    /// When it completed or failed.
    pub ended_at: Option<SystemTime>,
    /// MPEG-TS channels, complete segments: the earliest PTS of the video (else audio) stream, in
    /// 90 kHz ticks (raw 33-bit value): where the segment's presentation starts.
    pub first_pts: Option<u64>,
    /// MPEG-TS channels, complete segments: how long the segment plays (earliest to latest PTS
    /// plus one frame interval). `None` when it cannot be told right: no timestamps, a timestamp
    /// jump inside the segment, bytes that are not a clean packet stream.
    pub duration: Option<Duration>,
    /// MPEG-TS channels with video, complete segments: whether the first video frame is a
    /// keyframe (the segment decodes on its own).
    pub starts_with_keyframe: Option<bool>,
}

impl Facts {
    pub(super) fn new(
        bytes: u64,
        started_at: Option<SystemTime>,
        ended_at: Option<SystemTime>,
        timing: Option<Timing>,
    ) -> Facts {
        let timing = timing.unwrap_or_default();
        Facts {
            bytes,
            started_at,
            ended_at,
            first_pts: timing.first_pts,
            duration: timing.duration_ticks.map(ticks_to_duration),
            starts_with_keyframe: timing.keyframe,
        }
    }
}

/// A segment's timing meter, and the channel's memory that it starts from and adds to.
pub(super) struct Metering {
    meter: TimingMeter,
    memory: Arc<Mutex<MeterMemory>>,
}

impl Metering {
    pub(super) fn new(memory: &Arc<Mutex<MeterMemory>>) -> Metering {
        Metering {
            meter: TimingMeter::new(*memory.lock()),
            memory: memory.clone(),
        }
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        self.meter.push(data);
        self.share();
    }

    /// The segment ended normally: its timing.
    pub(super) fn finish(&mut self) -> Timing {
        let timing = self.meter.finish();
        self.share();
        timing
    }

    /// Hands what the meter learned to the channel's next segments as soon as it is known (once
    /// per table or interval change, not per chunk): the next segment may start before this one
    /// ends.
    fn share(&mut self) {
        if let Some(learned) = self.meter.take_learned() {
            *self.memory.lock() = learned;
        }
    }
}

/// 90 kHz ticks as a duration (to the nanosecond, rounded down).
fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs(ticks / 90_000) + Duration::from_nanos((ticks % 90_000) * 100_000 / 9)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::media::mpegts::PACKET_SIZE;
    use crate::media::mpegts::testing::{FRAME_TICKS, VideoCodec, build};
    use crate::server::segment::Segment;

    #[test]
    fn ticks_convert_exactly_where_they_can() {
        assert_eq!(ticks_to_duration(3600), Duration::from_millis(40));
        assert_eq!(ticks_to_duration(90_000 * 7 + 1), Duration::new(7, 11_111));
    }

    #[test]
    fn any_segment_knows_its_size_and_times() {
        let seg = Segment::new(0);
        assert_eq!(seg.facts(), Facts::new(0, None, None, None));
        let mut w = seg.try_claim(1, u64::MAX).unwrap();
        let before = SystemTime::now();
        w.write(Bytes::from_static(b"hello ")).unwrap();
        w.write(Bytes::from_static(b"world")).unwrap();
        let open = seg.facts();
        assert_eq!((open.bytes, open.ended_at), (11, None));
        w.finish().unwrap();
        let done = seg.facts();
        let (started, ended) = (done.started_at.unwrap(), done.ended_at.unwrap());
        assert!(before <= started && started <= ended);
        assert_eq!(done.bytes, 11);
        assert_eq!((done.first_pts, done.duration), (None, None));
    }

    #[test]
    fn mpegts_segments_are_timed_and_teach_the_next() {
        let memory = Arc::new(Mutex::new(MeterMemory::default()));
        let built = build(VideoCodec::H264, 50, 25, 1000, true);
        let cut = built.keyframes[1].0 * PACKET_SIZE;
        let mut facts = Vec::new();
        for (seq, part) in [&built.ts[..cut], &built.ts[cut..]].into_iter().enumerate() {
            let seg = Segment::new(seq as u64);
            let mut w = seg.try_claim(1, u64::MAX).unwrap();
            w.measure_mpegts(&memory);
            for chunk in part.chunks(1000) {
                w.write(Bytes::copy_from_slice(chunk)).unwrap();
            }
            w.finish().unwrap();
            facts.push(seg.facts());
        }
        assert_ne!(*memory.lock(), MeterMemory::default());
        for (i, f) in facts.iter().enumerate() {
            assert_eq!(f.first_pts, Some(1000 + i as u64 * 25 * FRAME_TICKS));
            assert_eq!(f.duration, Some(Duration::from_secs(1)));
            assert_eq!(f.starts_with_keyframe, Some(true));
        }
        assert_eq!(facts[0].bytes + facts[1].bytes, built.ts.len() as u64);
    }

    #[test]
    fn a_failed_segment_has_an_end_but_no_timing() {
        let memory = Arc::new(Mutex::new(MeterMemory::default()));
        let built = build(VideoCodec::H264, 25, 25, 0, false);
        let seg = Segment::new(0);
        let mut w = seg.try_claim(1, u64::MAX).unwrap();
        w.measure_mpegts(&memory);
        w.write(Bytes::copy_from_slice(&built.ts)).unwrap();
        w.fail();
        let facts = seg.facts();
        assert!(facts.ended_at.is_some());
        assert_eq!(facts.bytes, built.ts.len() as u64);
        assert_eq!((facts.first_pts, facts.duration), (None, None));
    }
}
