//! Tests of the timing meter: the same numbers whatever the chunking, B-frames, wrap-around, tables
//! remembered from an earlier segment, and unknown (never wrong) numbers for damaged input.

use super::meter::{MeterMemory, Timing, TimingMeter};
use super::packet::PACKET_SIZE;
use super::testing::*;

/// Feeds `input` in pieces of the sizes `piece` returns; returns the timing and the memory the
/// meter hands on.
fn measure_with(
    input: &[u8],
    memory: MeterMemory,
    mut piece: impl FnMut() -> usize,
) -> (Timing, MeterMemory) {
    let mut meter = TimingMeter::new(memory);
    let mut learned = memory;
    let mut rest = input;
    while !rest.is_empty() {
        let n = piece().clamp(1, rest.len());
        meter.push(&rest[..n]);
        rest = &rest[n..];
        learned = meter.take_learned().unwrap_or(learned);
    }
    let timing = meter.finish();
    (timing, meter.take_learned().unwrap_or(learned))
}

fn measure(input: &[u8]) -> Timing {
    measure_with(input, MeterMemory::default(), || usize::MAX).0
}

fn timing(first_pts: u64, ticks: u64, keyframe: Option<bool>) -> Timing {
    Timing {
        first_pts: Some(first_pts),
        duration_ticks: Some(ticks),
        keyframe,
    }
}

fn unknown(keyframe: Option<bool>) -> Timing {
    Timing {
        keyframe,
        ..Timing::default()
    }
}

const VIDEO_AND_AUDIO: [(u8, u16); 2] =
    [(STREAM_TYPE_H264, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)];

/// A GOP in decode order with B-frames: display index of each frame, I-frame first.
fn gop_with_b_frames(mux: &mut Mux, display: &[u64], pts_of: impl Fn(u64) -> u64) {
    for (i, &d) in display.iter().enumerate() {
        let kind = if i == 0 {
            FrameKind::Key
        } else {
            FrameKind::Delta
        };
        mux.video(VideoCodec::H264, kind, pts_of(d));
        mux.audio(pts_of(d));
    }
}

#[test]
fn every_split_point_gives_the_same_timing() {
    // One GOP of ten frames, whose first frame's PES spans several packets.
    let built = build(VideoCodec::H264, 10, 10, 900_000, true);
    let expected = timing(900_000, 10 * FRAME_TICKS, Some(true));
    assert_eq!(measure(&built.ts), expected);
    for split in 0..=built.ts.len() {
        let mut meter = TimingMeter::new(MeterMemory::default());
        meter.push(&built.ts[..split]);
        meter.push(&built.ts[split..]);
        assert_eq!(meter.finish(), expected, "split at {split}");
    }
    let bytewise = measure_with(&built.ts, MeterMemory::default(), || 1).0;
    assert_eq!(bytewise, expected);
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for _ in 0..50 {
        let pieces = measure_with(&built.ts, MeterMemory::default(), || 1 + rng.below(700));
        assert_eq!(pieces.0, expected);
    }
}

#[test]
fn pes_header_split_across_packets() {
    for first_room in 0..=20 {
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(0, &VIDEO_AND_AUDIO);
        mux.audio(5000); // audio first: still the video is measured
        let au = access_unit(VideoCodec::H264, FrameKind::Key, 300);
        let pes = pes_packet(0xe0, 7200, &au);
        mux.unit_limited(VIDEO_PID, &pes, true, first_room);
        for i in 1..5 {
            mux.video(VideoCodec::H264, FrameKind::Delta, 7200 + i * FRAME_TICKS);
        }
        let expected = timing(7200, 5 * FRAME_TICKS, Some(true));
        assert_eq!(
            measure(&mux.out),
            expected,
            "{first_room} bytes in packet 1"
        );
        let bytewise = measure_with(&mux.out, MeterMemory::default(), || 1).0;
        assert_eq!(
            bytewise, expected,
            "{first_room} bytes in packet 1, bytewise"
        );
    }
}

#[test]
fn b_frames_measure_from_the_earliest_to_the_latest_pts() {
    let mut mux = Mux::new();
    mux.pat();
    mux.pmt(0, &VIDEO_AND_AUDIO);
    // IBBP: the decode order shows frames out of order; PTS lead DTS by two frames.
    let display = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8, 11, 10];
    gop_with_b_frames(&mut mux, &display, |d| 180_000 + (d + 2) * FRAME_TICKS);
    let expected = timing(180_000 + 2 * FRAME_TICKS, 12 * FRAME_TICKS, Some(true));
    assert_eq!(measure(&mux.out), expected);
}

#[test]
fn pts_wrap_around_is_unwrapped() {
    // Forwards across 2^33 in the middle of the segment.
    let start = (1 << 33) - 10 * FRAME_TICKS;
    let built = build(VideoCodec::H264, 25, 25, start, true);
    assert_eq!(
        measure(&built.ts),
        timing(start, 25 * FRAME_TICKS, Some(true))
    );
    // An open GOP: the keyframe's PTS is just past the wrap, the two B-frames shown before it are
    // just below it. The segment starts at the earliest of them.
    let mut mux = Mux::new();
    mux.pat();
    mux.pmt(0, &VIDEO_AND_AUDIO);
    let pts_of = |d: u64| ((1 << 33) + 50 + d * FRAME_TICKS - 2 * FRAME_TICKS) % (1 << 33);
    gop_with_b_frames(&mut mux, &[2, 0, 1, 5, 3, 4], pts_of);
    assert_eq!(
        measure(&mux.out),
        timing(pts_of(0), 6 * FRAME_TICKS, Some(true))
    );
    assert!(
        pts_of(0) > pts_of(2),
        "the earliest frame is before the wrap"
    );
}

#[test]
fn tables_from_an_earlier_segment_are_remembered() {
    let built = build(VideoCodec::H264, 50, 25, 0, true);
    let second_gop = built.keyframes[1].0 * PACKET_SIZE;
    let tables = 2 * PACKET_SIZE; // PAT and PMT before the keyframe
    let first = &built.ts[..second_gop - tables];
    let (first, memory) = measure_with(first, MeterMemory::default(), || 1000);
    assert_eq!(first, timing(0, 25 * FRAME_TICKS, Some(true)));

    // The next segment repeats no table, and an audio frame comes before the keyframe.
    let mut mux = Mux::new();
    mux.audio(25 * FRAME_TICKS - 1000);
    let mut next = mux.out.clone();
    next.extend_from_slice(&built.ts[second_gop..]);
    let (second, _) = measure_with(&next, memory, || usize::MAX);
    assert_eq!(
        second,
        timing(25 * FRAME_TICKS, 25 * FRAME_TICKS, Some(true))
    );

    // Without the memory the first stream with a PTS is measured: the audio, no keyframe verdict.
    let alone = measure(&next);
    assert_eq!(alone.first_pts, Some(25 * FRAME_TICKS - 1000));
    assert_eq!(alone.keyframe, None);
}

#[test]
fn audio_only_is_measured_on_the_audio() {
    let mut mux = Mux::new();
    mux.pat();
    mux.pmt(0, &[(STREAM_TYPE_AAC, AUDIO_PID)]);
    for i in 0..50 {
        mux.audio(1000 + i * AUDIO_TICKS);
    }
    assert_eq!(measure(&mux.out), timing(1000, 50 * AUDIO_TICKS, None));
    // Several frames per PES (as ffmpeg muxes AAC), the first PES shorter than the others: the
    // last PES is as long as the one before it.
    let mut mux = Mux::new();
    mux.pat();
    mux.pmt(0, &[(STREAM_TYPE_AAC, AUDIO_PID)]);
    let pes = 16 * AUDIO_TICKS;
    mux.audio(1000);
    for i in 0..5 {
        mux.audio(1000 + 15 * AUDIO_TICKS + i * pes);
    }
    let expected = timing(1000, 15 * AUDIO_TICKS + 5 * pes, None);
    assert_eq!(measure(&mux.out), expected);
}

#[test]
fn a_one_frame_segment_takes_the_frame_interval_of_the_previous() {
    let built = build(VideoCodec::H264, 26, 25, 0, false);
    let second_gop = built.keyframes[1].0 * PACKET_SIZE;
    let (_, memory) = measure_with(&built.ts[..second_gop], MeterMemory::default(), || 4096);
    let last = &built.ts[second_gop..];
    let pts = 25 * FRAME_TICKS;
    assert_eq!(
        measure_with(last, memory, || 4096).0,
        timing(pts, FRAME_TICKS, Some(true))
    );
    // Alone, one frame has no interval: its start is known, its duration is not.
    let alone = measure(last);
    assert_eq!((alone.first_pts, alone.duration_ticks), (Some(pts), None));
}

#[test]
fn a_segment_starting_with_a_delta_frame_is_not_independent() {
    let mut mux = Mux::new();
    mux.pat();
    mux.pmt(0, &VIDEO_AND_AUDIO);
    for i in 0..3 {
        mux.video(VideoCodec::H264, FrameKind::Delta, i * FRAME_TICKS);
    }
    assert_eq!(measure(&mux.out), timing(0, 3 * FRAME_TICKS, Some(false)));
    let hevc = build(VideoCodec::Hevc, 5, 5, 0, true);
    assert_eq!(measure(&hevc.ts), timing(0, 5 * FRAME_TICKS, Some(true)));
}

#[test]
fn a_timestamp_jump_makes_the_duration_unknown() {
    let mut mux = Mux::new();
    mux.pat();
    mux.pmt(0, &VIDEO_AND_AUDIO);
    mux.video(VideoCodec::H264, FrameKind::Key, 0);
    mux.video(VideoCodec::H264, FrameKind::Delta, FRAME_TICKS);
    // The source restarts an hour later.
    mux.video(VideoCodec::H264, FrameKind::Delta, 3600 * 90_000);
    mux.video(
        VideoCodec::H264,
        FrameKind::Delta,
        3600 * 90_000 + FRAME_TICKS,
    );
    assert_eq!(measure(&mux.out), unknown(Some(true)));
}

#[test]
fn lost_alignment_makes_the_timing_unknown() {
    let built = build(VideoCodec::H264, 25, 25, 0, true);
    // Garbage between two packets in the middle.
    let middle = 40 * PACKET_SIZE;
    let mut dirty = built.ts[..middle].to_vec();
    dirty.extend_from_slice(&[1, 2, 3]);
    dirty.extend_from_slice(&built.ts[middle..]);
    assert_eq!(measure(&dirty), unknown(Some(true)));
    // Garbage first.
    let mut dirty = vec![0x47, 0, 0];
    dirty.extend_from_slice(&built.ts);
    assert_eq!(measure(&dirty), unknown(None));
    // A torn packet at the end holds no frame: the rest is measured.
    let torn = &built.ts[..built.ts.len() - 100];
    assert_eq!(measure(torn), timing(0, 25 * FRAME_TICKS, Some(true)));
    // A packet flagged as damaged by the transport is skipped, not a loss of alignment.
    let mut flagged = built.ts.clone();
    flagged[middle + 1] |= 0x80;
    assert_eq!(measure(&flagged), timing(0, 25 * FRAME_TICKS, Some(true)));
}

#[test]
fn arbitrary_input_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    assert_eq!(measure(&rng.bytes(10_000)), unknown(None));
    let built = build(VideoCodec::H264, 50, 25, 0, true);
    for round in 0..300 {
        let mut input = built.ts.clone();
        for _ in 0..1 + round % 20 {
            let at = rng.below(input.len());
            input[at] = rng.next() as u8;
        }
        let memory = if round % 2 == 0 {
            MeterMemory::default()
        } else {
            measure_with(&built.ts[..2000], MeterMemory::default(), || 500).1
        };
        measure_with(&input, memory, || 1 + rng.below(3000));
    }
}
