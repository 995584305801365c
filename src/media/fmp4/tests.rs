//! Unit tests of the remuxer on synthetic transport streams (built with the segmenter's test
//! muxer): outputs do not depend on how the input is chunked; garbage, truncated segments, skipped
//! segments, timestamp wrap-around and jumps keep the timeline continuous; oversized PES and
//! unsupported programs give counted drops and a reason, never a panic. Fragments are decoded back
//! with mp4-atom to check their timing. The real decoders' view is in tests/fmp4.rs.

use mp4_atom::{Decode, Moof};

use super::sps::tests::{X264_SPS, X265_SPS};
use super::*;
use crate::media::mpegts::PACKET_SIZE;
use crate::media::mpegts::testing::*;

const PPS: [u8; 4] = [0x68, 0xce, 0x0f, 0xc8];
pub(super) const FRAMES_PER_SEGMENT: u64 = 10;
/// Composition offset of every frame (as with one B-frame of reorder delay).
const DELAY: u64 = 7200;

fn h264_au(key: bool, sps: &[u8]) -> Vec<u8> {
    let mut au = vec![0, 0, 0, 1, 0x09, 0xf0];
    if key {
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(sps);
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(&PPS);
    }
    au.extend_from_slice(&[0, 0, 1, if key { 0x65 } else { 0x41 }]);
    au.extend_from_slice(&slice_data(if key { 900 } else { 300 }));
    au
}

fn hevc_au(key: bool) -> Vec<u8> {
    let mut au = vec![0, 0, 0, 1, 35 << 1, 1, 0x50];
    if key {
        for nal in [&[32 << 1, 1, 0x0c][..], &X265_SPS, &[34 << 1, 1, 0xc1]] {
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(nal);
        }
    }
    au.extend_from_slice(&[0, 0, 1, if key { 19 << 1 } else { 1 << 1 }, 1]);
    au.extend_from_slice(&slice_data(if key { 900 } else { 300 }));
    au
}

/// An ADTS frame: AAC LC, 48 kHz, stereo, `n` bytes of (non-zero) data.
fn adts(n: usize) -> Vec<u8> {
    let length = n + 7;
    let mut frame = vec![
        0xff,
        0xf1,
        0x4c,
        0x80 | (length >> 11) as u8,
        (length >> 3) as u8,
        ((length & 7) << 5) as u8 | 0x1f,
        0xfc,
    ];
    frame.extend_from_slice(&slice_data(n));
    frame
}

pub(super) struct Options {
    pub(super) codec: VideoCodec,
    pub(super) video: bool,
    pub(super) audio: bool,
    pub(super) first_pts: u64,
    pub(super) sps: Vec<u8>,
    /// From this frame on, timestamps are this much later (a spliced source).
    pub(super) jump: Option<(u64, u64)>,
}

pub(super) fn options() -> Options {
    Options {
        codec: VideoCodec::H264,
        video: true,
        audio: true,
        first_pts: 1_000_000,
        sps: X264_SPS.to_vec(),
        jump: None,
    }
}

/// Segments as the segmenter makes them: PAT, PMT, keyframe, then delta frames, with one AAC
/// frame per PES interleaved by time.
pub(super) fn segments(count: u64, o: &Options) -> Vec<Vec<u8>> {
    let mut mux = Mux::new();
    let video_type = match o.codec {
        VideoCodec::H264 => STREAM_TYPE_H264,
        VideoCodec::Hevc => STREAM_TYPE_HEVC,
    };
    let mut streams = Vec::new();
    if o.video {
        streams.push((video_type, VIDEO_PID));
    }
    if o.audio {
        streams.push((STREAM_TYPE_AAC, AUDIO_PID));
    }
    let mut segments = Vec::new();
    let mut audio_time = 0;
    for frame in 0..count * FRAMES_PER_SEGMENT {
        let key = frame.is_multiple_of(FRAMES_PER_SEGMENT);
        if key {
            segments.push(std::mem::take(&mut mux.out));
            mux.pat();
            mux.pmt(0, &streams);
        }
        let time = frame * FRAME_TICKS;
        let shift = match o.jump {
            Some((at, by)) if frame >= at => by,
            _ => 0,
        };
        if o.video {
            let au = match o.codec {
                VideoCodec::H264 => h264_au(key, &o.sps),
                VideoCodec::Hevc => hevc_au(key),
            };
            let dts = o.first_pts + time + shift;
            mux.unit(
                VIDEO_PID,
                &pes_packet_with_dts(0xe0, dts + DELAY, dts, &au),
                key,
            );
        }
        while o.audio && audio_time < time + FRAME_TICKS {
            let pts = o.first_pts + audio_time + shift;
            mux.pes(AUDIO_PID, 0xc0, pts, &adts(100), false);
            audio_time += AUDIO_TICKS;
        }
    }
    segments.push(mux.out);
    segments.remove(0);
    segments
}

/// Feeds (seq, bytes, complete) segments in pieces of the sizes `piece` returns.
fn feed(segments: &[(u64, &[u8], bool)], piece: impl FnMut() -> usize) -> (Vec<Output>, Stats) {
    feed_with(Remuxer::new(), segments, piece)
}

/// [`feed`] to a remuxer set up by the caller.
pub(super) fn feed_with(
    mut remuxer: Remuxer,
    segments: &[(u64, &[u8], bool)],
    mut piece: impl FnMut() -> usize,
) -> (Vec<Output>, Stats) {
    let mut out = Vec::new();
    for &(seq, bytes, complete) in segments {
        remuxer.start_segment(seq);
        let mut rest = bytes;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(piece().clamp(1, rest.len()));
            remuxer.push(chunk, &mut out);
            rest = tail;
        }
        remuxer.end_segment(complete, &mut out);
    }
    (out, remuxer.stats())
}

fn feed_all(segments: &[Vec<u8>]) -> (Vec<Output>, Stats) {
    let list: Vec<(u64, &[u8], bool)> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, s.as_slice(), true))
        .collect();
    feed(&list, || usize::MAX)
}

/// (seq, keyframe, start, duration) of each fragment.
fn fragments(out: &[Output]) -> Vec<(u64, bool, u64, u64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Fragment {
                seq,
                keyframe,
                start,
                duration,
                ..
            } => Some((*seq, *keyframe, *start, *duration)),
            _ => None,
        })
        .collect()
}

fn codecs(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Init { codecs, .. } => Some(codecs.clone()),
            _ => None,
        })
        .collect()
}

/// Each fragment starts where the one before ended.
fn assert_continuous(fragments: &[(u64, bool, u64, u64)]) {
    for pair in fragments.windows(2) {
        assert_eq!(pair[1].2, pair[0].2 + pair[0].3, "{pair:?}");
    }
}

#[test]
fn h264_and_aac_make_one_init_and_a_fragment_per_frame() {
    let segments = segments(3, &options());
    let (out, stats) = feed_all(&segments);
    assert!(matches!(out[0], Output::Init { .. }));
    assert_eq!(codecs(&out), ["avc1.42c00d,mp4a.40.2"]);
    let fragments = fragments(&out);
    assert_eq!(fragments.len() as u64, 3 * FRAMES_PER_SEGMENT);
    for (i, (seq, keyframe, _, duration)) in fragments.iter().enumerate() {
        assert_eq!(*seq, i as u64 / FRAMES_PER_SEGMENT);
        assert_eq!(*keyframe, (i as u64).is_multiple_of(FRAMES_PER_SEGMENT));
        assert_eq!(*duration, FRAME_TICKS);
    }
    assert_continuous(&fragments);
    assert_eq!(stats.dropped_pes + stats.dropped_frames + stats.rebases, 0);

    // The boxes: tfdt and the composition offset of the video run, the audio run after it.
    let Some(Output::Fragment { bytes, start, .. }) = out.get(2) else {
        panic!("not a fragment");
    };
    let moof = Moof::decode(&mut &bytes[..]).unwrap();
    let video = &moof.traf[0];
    assert_eq!(video.tfhd.track_id, 1);
    assert_eq!(video.tfdt.as_ref().unwrap().base_media_decode_time, *start);
    let sample = video.trun[0].samples.get(0).unwrap();
    assert_eq!(sample.cts, Some(DELAY as i64));
    assert_eq!(sample.duration, Some(FRAME_TICKS as u32));
    assert_eq!(moof.traf[1].tfhd.track_id, 2);
    assert_eq!(moof.traf[1].trun[0].samples.get(0).unwrap().size, Some(100));
}

#[test]
fn output_does_not_depend_on_chunking() {
    let segments = segments(3, &options());
    let (whole, _) = feed_all(&segments);
    let list: Vec<(u64, &[u8], bool)> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, s.as_slice(), true))
        .collect();
    let (bytewise, _) = feed(&list, || 1);
    assert_eq!(bytewise, whole);
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let (random, _) = feed(&list, || 1 + rng.below(700));
    assert_eq!(random, whole);
}

#[test]
fn garbage_between_packets_is_skipped() {
    let segments = segments(2, &options());
    let (clean, _) = feed_all(&segments);
    let mut rng = XorShift(7);
    let mut garbage = 0;
    let dirty: Vec<Vec<u8>> = segments
        .iter()
        .map(|segment| {
            let mut dirty = Vec::new();
            for (i, packet) in segment.chunks(PACKET_SIZE).enumerate() {
                // Resync needs three packets in a row: garbage every fifth packet.
                if i % 5 == 4 {
                    let n = 1 + rng.below(200);
                    let mut junk = rng.bytes(n);
                    junk[0] = 0;
                    garbage += junk.len();
                    dirty.extend_from_slice(&junk);
                }
                dirty.extend_from_slice(packet);
            }
            dirty
        })
        .collect();
    let (out, stats) = feed_all(&dirty);
    assert_eq!(out, clean);
    assert_eq!(stats.skipped_bytes, garbage as u64);
}

#[test]
fn a_truncated_segment_drops_its_unfinished_frame_and_the_timeline_continues() {
    let segments = segments(3, &options());
    let cut = segments[1].len() / 2 + 100; // inside a frame
    let (out, stats) = feed(
        &[
            (0, &segments[0], true),
            (1, &segments[1][..cut], false),
            (2, &segments[2], true),
        ],
        || 1000,
    );
    let fragments = fragments(&out);
    let from_1 = fragments.iter().filter(|f| f.0 == 1).count() as u64;
    assert!(from_1 > 0 && from_1 < FRAMES_PER_SEGMENT, "{from_1}");
    let first_of_2 = fragments.iter().position(|f| f.0 == 2).unwrap();
    assert!(fragments[first_of_2].1, "segment 2 starts at its keyframe");
    assert_continuous(&fragments);
    assert_eq!(stats.dropped_frames, 1);
}

#[test]
fn a_skipped_segment_leaves_no_gap() {
    let segments = segments(4, &options());
    let (out, stats) = feed(
        &[
            (0, &segments[0], true),
            (1, &segments[1], true),
            (3, &segments[3], true),
        ],
        || usize::MAX,
    );
    let fragments = fragments(&out);
    assert_eq!(fragments.len() as u64, 3 * FRAMES_PER_SEGMENT);
    assert_continuous(&fragments);
    assert_eq!(stats.rebases, 1);
}

#[test]
fn timestamps_wrap_around_smoothly_and_jumps_are_bridged() {
    let o = Options {
        first_pts: (1 << 33) - 5 * FRAME_TICKS,
        ..options()
    };
    let (out, stats) = feed_all(&segments(2, &o));
    let wrapped = fragments(&out);
    assert_eq!(wrapped.len() as u64, 2 * FRAMES_PER_SEGMENT);
    assert_continuous(&wrapped);
    assert_eq!(stats.rebases, 0);

    // The source jumps an hour ahead in the middle of a segment.
    let o = Options {
        jump: Some((15, 3600 * 90_000)),
        ..options()
    };
    let (out, stats) = feed_all(&segments(2, &o));
    let spliced = fragments(&out);
    assert_eq!(spliced.len() as u64, 2 * FRAMES_PER_SEGMENT);
    assert_continuous(&spliced);
    assert_eq!((stats.rebases, stats.dropped_frames), (1, 0));

    // A gap of two seconds in the middle of a segment is a jump too, not one frame of 2 s (an
    // LL-HLS part holding it would be far longer than its target).
    let o = Options {
        jump: Some((15, 2 * 90_000)),
        ..options()
    };
    let (out, stats) = feed_all(&segments(2, &o));
    let bridged = fragments(&out);
    assert_eq!(bridged.len() as u64, 2 * FRAMES_PER_SEGMENT);
    assert_continuous(&bridged);
    assert!(bridged.iter().all(|f| f.3 == FRAME_TICKS), "{bridged:?}");
    assert_eq!(stats.rebases, 1);

    // The publisher restarts an hour later in the middle of a segment.
    let mut jumped = segments(1, &options());
    jumped.extend(segments(
        1,
        &Options {
            first_pts: 3600 * 90_000,
            ..options()
        },
    ));
    let joined = [jumped.concat()];
    let (out, stats) = feed_all(&joined);
    let fragments = fragments(&out);
    // The restarted muxer's continuity counters start over: the frame in progress at the junction
    // may have lost packets and is dropped.
    assert_eq!(fragments.len() as u64, 2 * FRAMES_PER_SEGMENT - 1);
    assert_eq!(stats.dropped_pes, 1);
    assert_continuous(&fragments);
    assert_eq!(stats.rebases, 1);
}

#[test]
fn hevc_track() {
    let o = Options {
        codec: VideoCodec::Hevc,
        ..options()
    };
    let (out, _) = feed_all(&segments(2, &o));
    assert_eq!(codecs(&out), ["hvc1.1.6.L60.90,mp4a.40.2"]);
    assert_eq!(fragments(&out).len() as u64, 2 * FRAMES_PER_SEGMENT);
}

#[test]
fn a_new_sps_makes_a_new_init() {
    let mut stream = segments(1, &options());
    let mut sps = X264_SPS.to_vec();
    sps[3] = 0x1f; // level 3.1
    stream.extend(segments(
        1,
        &Options {
            sps,
            first_pts: 1_000_000 + FRAMES_PER_SEGMENT * FRAME_TICKS,
            ..options()
        },
    ));
    let (out, _) = feed_all(&stream);
    assert_eq!(
        codecs(&out),
        ["avc1.42c00d,mp4a.40.2", "avc1.42c01f,mp4a.40.2"]
    );
    let second_init = out.iter().rposition(|o| matches!(o, Output::Init { .. }));
    assert!(matches!(
        out.get(second_init.unwrap() + 1),
        Some(Output::Fragment {
            seq: 1,
            keyframe: true,
            ..
        })
    ));
}

#[test]
fn audio_only_channels_get_fragments_of_a_few_frames() {
    let o = Options {
        video: false,
        ..options()
    };
    let (out, _) = feed_all(&segments(2, &o));
    assert_eq!(codecs(&out), ["mp4a.40.2"]);
    let fragments = fragments(&out);
    assert!(fragments.len() > 4);
    assert!(fragments.iter().all(|f| f.1));
    assert_continuous(&fragments);
}

#[test]
fn unsupported_programs_say_why() {
    let mut mux = Mux::new();
    mux.pat();
    mux.pmt(0, &[(0x02, VIDEO_PID), (0x03, AUDIO_PID)]);
    mux.pes(VIDEO_PID, 0xe0, 0, &[0, 0, 1, 0xb3, 1, 2], true);
    let mut remuxer = Remuxer::new();
    let mut out = Vec::new();
    remuxer.start_segment(0);
    remuxer.push(&mux.out, &mut out);
    remuxer.end_segment(true, &mut out);
    let reason = "no H.264, HEVC or AAC (ADTS) stream in the program (stream types 0x02, 0x03)";
    assert_eq!(out, [Output::Unsupported(reason.to_string())]);
    assert_eq!(remuxer.unsupported(), Some(reason));
}

#[test]
fn an_oversized_pes_is_dropped_and_video_resumes_at_the_next_keyframe() {
    let mut stream = segments(2, &options());
    // A 9 MB "frame" in the middle of segment 0.
    let mut mux = Mux::new();
    let mut huge = vec![0, 0, 1, 0x41];
    huge.extend_from_slice(&slice_data(9 << 20));
    mux.unit(VIDEO_PID, &pes_packet_with_dts(0xe0, 1, 1, &huge), false);
    let middle = 40 * PACKET_SIZE;
    stream[0].splice(middle..middle, mux.out);
    let (out, stats) = feed_all(&stream);
    assert!(stats.dropped_pes >= 1, "{stats:?}");
    let fragments = fragments(&out);
    assert!(fragments.iter().any(|f| f.0 == 1 && f.1));
    assert_continuous(&fragments);
}

#[test]
fn damaged_streams_never_panic_and_fragments_follow_an_init() {
    let clean = segments(3, &options());
    let hevc = segments(
        2,
        &Options {
            codec: VideoCodec::Hevc,
            ..options()
        },
    );
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..150 {
        let source = if round % 3 == 0 { &hevc } else { &clean };
        let damaged: Vec<Vec<u8>> = source
            .iter()
            .map(|segment| {
                let mut segment = segment.clone();
                for _ in 0..1 + rng.below(40) {
                    let at = rng.below(segment.len());
                    segment[at] = rng.next() as u8;
                }
                let keep = segment.len() - rng.below(segment.len() / 4);
                segment.truncate(keep);
                segment
            })
            .collect();
        let list: Vec<(u64, &[u8], bool)> = damaged
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    i as u64 * (1 + rng.below(2) as u64),
                    s.as_slice(),
                    rng.below(4) != 0,
                )
            })
            .collect();
        let (out, _) = feed(&list, || 1 + rng.below(3000));
        let first_fragment = out
            .iter()
            .position(|o| matches!(o, Output::Fragment { .. }));
        let first_init = out.iter().position(|o| matches!(o, Output::Init { .. }));
        if let Some(fragment) = first_fragment {
            assert!(
                first_init.is_some_and(|init| init < fragment),
                "round {round}"
            );
        }
    }
}
