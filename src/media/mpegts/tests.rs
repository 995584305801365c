//! Tests of the segmenter as a whole: where it cuts (keyframes, minimum duration, audio-only),
//! what each segment holds, how it follows table changes and timestamp jumps, and that arbitrary
//! input never makes it panic.

use super::SegmenterConfig;
use super::packet::{PACKET_SIZE, SYNC_BYTE};
use super::psi::PAT_PID;
use super::testing::*;

#[test]
fn cuts_at_every_keyframe_by_default() {
    let built = build(VideoCodec::H264, 100, 25, 900_000, true);
    let run = run(SegmenterConfig::default(), &built.ts);
    let starts: Vec<_> = run.segments.iter().map(|s| (s.keyframe, s.pts)).collect();
    let expected: Vec<_> = built
        .keyframes
        .iter()
        .map(|&(_, pts)| (true, Some(pts)))
        .collect();
    assert_eq!(starts, expected);
    assert_layout(&run, VIDEO_PID);
    assert_eq!(run.stats.segments, 4);
    assert_eq!(run.stats.skipped_bytes, 0);
    assert_eq!(run.stats.resyncs, 0);
    // One Clock per video frame, starting at the first keyframe.
    assert_eq!(run.clocks.len(), built.video_frames);
    assert_eq!(run.clocks[0], 900_000);
}

#[test]
fn segments_hold_exactly_the_frames_between_keyframes() {
    let built = build(VideoCodec::H264, 100, 25, 0, true);
    let run = run(SegmenterConfig::default(), &built.ts);
    let bounds: Vec<usize> = built.keyframes.iter().map(|&(index, _)| index).collect();
    for (i, segment) in run.segments.iter().enumerate() {
        let start = bounds[i] * PACKET_SIZE;
        let end = bounds
            .get(i + 1)
            .map_or(built.ts.len(), |&b| b * PACKET_SIZE);
        assert_eq!(
            &segment.data[2 * PACKET_SIZE..],
            &built.ts[start..end],
            "segment {i}"
        );
    }
}

#[test]
fn bytes_are_conserved() {
    // Start mid-GOP: the frames before the first keyframe are dropped.
    let built = build(VideoCodec::H264, 120, 30, 0, true);
    let cut_at = built.keyframes[1].0 - 20; // inside the first GOP
    let input = &built.ts[cut_at * PACKET_SIZE..];
    let run = run(SegmenterConfig::default(), input);
    let first_key = built.keyframes[1].0;
    assert_eq!(without_tables(&run), &built.ts[first_key * PACKET_SIZE..]);
    assert_eq!(
        run.stats.dropped_before_keyframe as usize,
        first_key - cut_at
    );
    assert_eq!(run.stats.packets as usize, input.len() / PACKET_SIZE);
    assert_eq!(run.segments.len(), 3);
}

#[test]
fn min_duration_is_respected() {
    // A keyframe every second; segments of at least 2.5 s start at 0, 3, 6, 9 s.
    let built = build(VideoCodec::H264, 300, 25, 0, true);
    let run = run(min_duration(2500), &built.ts);
    let starts: Vec<_> = run.segments.iter().map(|s| s.pts).collect();
    let second = 25 * FRAME_TICKS;
    assert_eq!(starts, [0, 3, 6, 9].map(|s| Some(s * second)));
    assert_layout(&run, VIDEO_PID);
    // Still nothing lost after the first keyframe.
    assert_eq!(
        without_tables(&run),
        built.ts[built.keyframes[0].0 * PACKET_SIZE..]
    );
}

#[test]
fn audio_only_cuts_by_duration() {
    let mut mux = Mux::new();
    mux.pat();
    mux.pmt(0, &[(STREAM_TYPE_AAC, AUDIO_PID)]);
    let first = mux.audio(500);
    for i in 1..300u64 {
        if i % 50 == 0 {
            mux.pat();
            mux.pmt(0, &[(STREAM_TYPE_AAC, AUDIO_PID)]);
        }
        mux.audio(500 + i * AUDIO_TICKS);
    }
    let run = run(SegmenterConfig::default(), &mux.out);
    // 2 s = 180 000 ticks = 93.75 frames: cuts at frames 0, 94, 188, 282.
    let starts: Vec<_> = run.segments.iter().map(|s| (s.keyframe, s.pts)).collect();
    let expected: Vec<_> = [0, 94, 188, 282]
        .iter()
        .map(|&i| (false, Some(500 + i * AUDIO_TICKS)))
        .collect();
    assert_eq!(starts, expected);
    assert_layout(&run, AUDIO_PID);
    assert_eq!(run.clocks.len(), 300);
    assert_eq!(without_tables(&run), &mux.out[first * PACKET_SIZE..]);
}

#[test]
fn nothing_starts_before_the_tables() {
    let mut mux = Mux::new();
    // Keyframes without any PAT/PMT yet are useless to a decoder.
    mux.video(VideoCodec::H264, FrameKind::Key, 0);
    mux.video(VideoCodec::H264, FrameKind::Delta, FRAME_TICKS);
    let dropped = mux.packet_count();
    mux.pat();
    mux.pmt(0, &[(STREAM_TYPE_H264, VIDEO_PID)]);
    mux.video(VideoCodec::H264, FrameKind::Delta, 2 * FRAME_TICKS);
    let key = mux.video(VideoCodec::H264, FrameKind::Key, 3 * FRAME_TICKS);
    let run = run(SegmenterConfig::default(), &mux.out);
    assert_eq!(run.segments.len(), 1);
    assert_eq!(run.segments[0].pts, Some(3 * FRAME_TICKS));
    assert_eq!(run.stats.dropped_before_keyframe as usize, key);
    assert!(key > dropped);
}

#[test]
fn pmt_change_from_h264_to_hevc_keeps_cutting() {
    let mut mux = Mux::new();
    let h264 = [(STREAM_TYPE_H264, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)];
    let hevc = [(STREAM_TYPE_HEVC, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)];
    for i in 0..80u64 {
        let pts = i * FRAME_TICKS;
        if i < 40 {
            if i % 20 == 0 {
                mux.pat();
                mux.pmt(0, &h264);
            }
            let frame = if i % 20 == 0 {
                FrameKind::Key
            } else {
                FrameKind::Delta
            };
            mux.video(VideoCodec::H264, frame, pts);
        } else {
            if i % 20 == 0 {
                mux.pat();
                mux.pmt(1, &hevc);
            }
            // HEVC slices read as H.264 would be misjudged: IDR (0x26) looks like SEI, TRAIL_R
            // (0x02) like a data partition. The new PMT must switch the parser.
            let frame = match i % 20 {
                0 => FrameKind::Key,
                10 => FrameKind::Cra,
                _ => FrameKind::Delta,
            };
            mux.video(VideoCodec::Hevc, frame, pts);
        }
        mux.audio(pts);
    }
    let run = run(SegmenterConfig::default(), &mux.out);
    let starts = run.start_frames();
    assert_eq!(starts, [0, 20, 40, 50, 60, 70]);
    assert_layout(&run, VIDEO_PID);
    // Segments after the change carry the new PMT.
    let expected_pmt = {
        let mut m = Mux::new();
        m.pmt(1, &hevc);
        m.out[4..].to_vec() // skip the header: the continuity counter differs
    };
    for segment in &run.segments[2..] {
        assert_eq!(
            &segment.data[PACKET_SIZE + 4..2 * PACKET_SIZE],
            &expected_pmt[..]
        );
    }
    // The codec change starts a segment even when the current one is shorter than asked.
    let long = run_with(min_duration(10_000), &mux.out, || usize::MAX);
    assert_eq!(long.start_frames(), [0, 40]);
}

#[test]
fn pmt_moving_to_another_pid_is_followed() {
    let mut mux = Mux::new();
    let streams = [(STREAM_TYPE_H264, VIDEO_PID)];
    mux.pat();
    mux.pmt(0, &streams);
    mux.video(VideoCodec::H264, FrameKind::Key, 0);
    mux.video(VideoCodec::H264, FrameKind::Delta, FRAME_TICKS);
    // New PAT pointing to PID 0x1001 with a PMT whose video is on PID 0x0200.
    let new_pmt_pid = 0x1001;
    mux.section(PAT_PID, &pat_section(new_pmt_pid));
    mux.section(new_pmt_pid, &pmt_section(0, &[(STREAM_TYPE_H264, 0x0200)]));
    let moved = mux.packet_count();
    let au = access_unit(VideoCodec::H264, FrameKind::Key, 0);
    mux.pes(0x0200, 0xe0, 2 * FRAME_TICKS, &au, true);
    let run = run(SegmenterConfig::default(), &mux.out);
    assert_eq!(run.segments.len(), 2);
    let second = packets(&run.segments[1].data);
    assert_eq!(
        &second[..3],
        &[(PAT_PID, true), (new_pmt_pid, true), (0x0200, true)]
    );
    assert_eq!(
        &run.segments[1].data[2 * PACKET_SIZE..],
        &mux.out[moved * PACKET_SIZE..]
    );
}

#[test]
fn pts_wraps_around() {
    // Start 4 s before the 33-bit wrap; a keyframe every second.
    let first = (1 << 33) - 100 * FRAME_TICKS;
    let built = build(VideoCodec::H264, 250, 25, first, true);
    let run = run(min_duration(2000), &built.ts);
    let starts: Vec<_> = run.segments.iter().map(|s| s.pts.unwrap()).collect();
    let second = 25 * FRAME_TICKS;
    let expected: Vec<_> = (0..5).map(|k| first + 2 * k * second).collect();
    assert_eq!(starts, expected);
    assert!(*run.clocks.last().unwrap() > 1 << 33);
    assert_eq!(run.clocks.len(), 250);
    assert_eq!(*run.clocks.last().unwrap(), first + 249 * FRAME_TICKS);
}

#[test]
fn clock_only_moves_forward_with_b_frames() {
    let mut mux = Mux::new();
    mux.pat();
    mux.pmt(0, &[(STREAM_TYPE_H264, VIDEO_PID)]);
    // Decode order I P B B P B B with presentation times 0 3 1 2 6 4 5.
    let order = [0u64, 3, 1, 2, 6, 4, 5];
    for (i, &t) in order.iter().enumerate() {
        let frame = if i == 0 {
            FrameKind::Key
        } else {
            FrameKind::Delta
        };
        mux.video(VideoCodec::H264, frame, 1000 + t * FRAME_TICKS);
    }
    let run = run(SegmenterConfig::default(), &mux.out);
    let clocks: Vec<_> = run
        .clocks
        .iter()
        .map(|c| (c - 1000) / FRAME_TICKS)
        .collect();
    assert_eq!(clocks, [0, 3, 6]);
}

#[test]
fn restarted_timestamps_keep_the_clock_going_and_cut() {
    // The same 4-second stream twice, as `cat a.ts a.ts` would give.
    let built = build(VideoCodec::H264, 100, 25, 900_000, true);
    let mut input = built.ts.clone();
    input.extend_from_slice(&built.ts);
    let run = run(min_duration(3000), &input);
    let starts: Vec<_> = run.segments.iter().map(|s| s.pts.unwrap()).collect();
    let last = 900_000 + 99 * FRAME_TICKS;
    let second = 25 * FRAME_TICKS;
    assert_eq!(
        starts,
        [
            900_000,
            900_000 + 3 * second,
            last + 1,
            last + 1 + 3 * second
        ]
    );
    assert_eq!(run.clocks.len(), 200);
    assert_eq!(*run.clocks.last().unwrap(), last + 1 + 99 * FRAME_TICKS);
}

/// Asserts the output invariants on arbitrary input (run_with checks the rest).
fn fuzz_run(input: &[u8], rng: &mut XorShift) {
    let max = 1 + rng.below(4000);
    let run = run_with(SegmenterConfig::default(), input, || 1 + rng.below(max));
    let out: u64 = run.segments.iter().map(|s| s.data.len() as u64).sum();
    assert!(out <= input.len() as u64 + 4 * PACKET_SIZE as u64 * run.stats.segments);
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let input = rng.bytes(2 << 20);
    fuzz_run(&input, &mut rng);
}

#[test]
fn random_packets_never_panic() {
    // Well-formed packet headers with random flags and payloads on the PIDs that matter, and
    // payloads seeded with start codes and section headers, so parsers see deep input.
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    let mut input = Vec::new();
    let pids = [PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID, 0x1fff];
    let valid = build(VideoCodec::H264, 20, 5, 0, true);
    for _ in 0..20_000 {
        if rng.below(8) == 0 {
            // A real packet from a valid stream keeps the table state interesting.
            let i = rng.below(valid.ts.len() / PACKET_SIZE);
            input.extend_from_slice(&valid.ts[i * PACKET_SIZE..(i + 1) * PACKET_SIZE]);
            continue;
        }
        let pid = pids[rng.below(pids.len())];
        let mut packet = rng.bytes(PACKET_SIZE);
        packet[0] = SYNC_BYTE;
        // transport_error_indicator only now and then: it makes the packet be skipped.
        let flags = if rng.below(16) == 0 { 0xe0 } else { 0x60 };
        packet[1] = (packet[1] & flags) | (pid >> 8) as u8;
        packet[2] = pid as u8;
        if rng.below(2) == 0 {
            let at = 4 + rng.below(170);
            let seeds: [&[u8]; 4] = [
                &[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5],
                &[0, 0, 1, 0x65],
                &[0, 0, 1, 0x26, 0x01],
                &[0x00, 0x02, 0xb0, 0x20, 0, 1, 0xc1, 0, 0],
            ];
            let seed = seeds[rng.below(seeds.len())];
            packet[at..at + seed.len()].copy_from_slice(seed);
        }
        input.extend_from_slice(&packet);
    }
    fuzz_run(&input, &mut rng);
}

#[test]
fn corrupted_stream_never_panics() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let built = build(VideoCodec::Hevc, 200, 25, (1 << 33) - 1000, true);
    for _ in 0..4 {
        let mut input = built.ts.clone();
        for _ in 0..2000 {
            let i = rng.below(input.len());
            input[i] = rng.next() as u8;
        }
        fuzz_run(&input, &mut rng);
    }
}
