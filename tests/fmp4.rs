//! The fMP4 remuxer against the real ffmpeg: a test pattern encoded to MPEG-TS (H.264 + AAC with a
//! keyframe every second, HEVC + AAC, AAC alone) is cut into segments by the project's segmenter,
//! as `trickle publish --mpegts` does, and fed through the [`Remuxer`] in odd-sized chunks. The
//! init segment and fragments, written one after the other, make an MP4 file that ffmpeg decodes
//! without a single error, with every frame of the source, codecs strings that agree with what
//! ffprobe reads, and decode times that only go forward, also when a segment is skipped or cut
//! short. Per-track output (for DASH) makes one file per track with one stream each, which
//! ffmpeg decodes as cleanly and whole, and a DASH manifest of it that ffmpeg's DASH demuxer
//! decodes cleanly, each Representation whole.
//!
//! ffmpeg and ffprobe come from `scripts/test.sh` (`apt-get install ffmpeg`). Without them these
//! tests fail when `CI=true` and are skipped (with a message) elsewhere; the HEVC test is also
//! skipped (with a message) by an ffmpeg built without libx265.

mod common;

use std::path::Path;
use std::process::Command;

use trickle::media::fmp4::{Output, Remuxer, Track};

/// Runs a shell script, asserting that it succeeds; returns its stdout and stderr.
fn run(script: &str) -> (String, String) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{script}\n{stderr}");
    (stdout, stderr)
}

const VIDEO_SOURCE: &str = "-f lavfi -i testsrc2=size=320x240:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 5";
const GOP: &str = "-g 25 -keyint_min 25 -sc_threshold 0";

/// Encodes 5 s of the test pattern to MPEG-TS with the given codec options; returns its path.
fn encode(dir: &Path, name: &str, options: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    run(&format!(
        "ffmpeg -v error {options} -c:a aac -b:a 64k -f mpegts -y '{}'",
        path.display()
    ));
    path
}

/// The file cut into segments by the project's segmenter.
fn segments(ts: &Path) -> Vec<Vec<u8>> {
    common::video::cut_segments(&std::fs::read(ts).unwrap())
}

/// What came out of the remuxer.
#[derive(Default)]
struct Remuxed {
    /// The init segment, then every fragment.
    file: Vec<u8>,
    codecs: Vec<String>,
    /// (seq, keyframe) of each fragment.
    fragments: Vec<(u64, bool)>,
    /// The per-track outputs, when asked for: video, audio.
    tracks: [PerTrack; 2],
}

/// What came out for one track.
#[derive(Default)]
struct PerTrack {
    /// The track's init segment, then its fragments.
    file: Vec<u8>,
    init: Vec<u8>,
    codecs: Vec<String>,
    /// As DASH media segments: (seq, start, duration, bytes) with the fragments of each seq.
    segments: Vec<(u64, u64, u64, Vec<u8>)>,
}

/// Feeds (seq, bytes, complete) segments in chunks of varied sizes.
fn remux(segments: &[(u64, &[u8], bool)]) -> Remuxed {
    remux_with(segments, false)
}

/// [`remux`], with per-track output if `split`.
fn remux_with(segments: &[(u64, &[u8], bool)], split: bool) -> Remuxed {
    let mut remuxer = Remuxer::new();
    remuxer.split_tracks(split);
    let mut outputs = Vec::new();
    let mut size = 1;
    for &(seq, bytes, complete) in segments {
        remuxer.start_segment(seq);
        let mut rest = bytes;
        while !rest.is_empty() {
            size = size * 7 % 3001 + 1;
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            remuxer.push(chunk, &mut outputs);
            rest = tail;
        }
        remuxer.end_segment(complete, &mut outputs);
    }
    let mut remuxed = Remuxed::default();
    for output in outputs {
        match output {
            Output::Init { bytes, codecs } => {
                remuxed.file.extend_from_slice(&bytes);
                remuxed.codecs.push(codecs);
            }
            Output::Fragment {
                bytes,
                seq,
                keyframe,
                ..
            } => {
                assert!(!remuxed.codecs.is_empty(), "a fragment before the init");
                remuxed.file.extend_from_slice(&bytes);
                remuxed.fragments.push((seq, keyframe));
            }
            Output::TrackInit {
                track,
                bytes,
                codec,
            } => {
                assert!(split);
                let per_track = &mut remuxed.tracks[track as usize];
                per_track.file.extend_from_slice(&bytes);
                per_track.init = bytes.to_vec();
                per_track.codecs.push(codec);
            }
            Output::TrackFragment {
                track,
                head,
                media,
                seq,
                start,
                duration,
                ..
            } => {
                let per_track = &mut remuxed.tracks[track as usize];
                assert!(!per_track.codecs.is_empty(), "a {track:?} fragment first");
                add_track_fragment(per_track, &[&head, &media], seq, start, duration);
            }
            Output::Unsupported(reason) => panic!("unsupported: {reason}"),
        }
    }
    assert_eq!(
        remuxed.codecs.len(),
        1,
        "one init segment: {:?}",
        remuxed.codecs
    );
    remuxed
}

/// Appends a per-track fragment to its track's file and to the DASH segment of its seq.
fn add_track_fragment(track: &mut PerTrack, parts: &[&[u8]], seq: u64, start: u64, duration: u64) {
    for part in parts {
        track.file.extend_from_slice(part);
    }
    match track.segments.last_mut() {
        Some(segment) if segment.0 == seq => {
            assert_eq!(segment.1 + segment.2, start, "fragments of a track join");
            segment.2 += duration;
            segment.3.extend(parts.concat());
        }
        _ => track.segments.push((seq, start, duration, parts.concat())),
    }
}

/// `ffmpeg -v error` decoding the whole file: its complaints (none expected).
fn decode_errors(path: &Path) -> String {
    run(&format!(
        "ffmpeg -v error -i '{}' -f null -",
        path.display()
    ))
    .1
}

/// Frames per stream type as ffprobe decodes them: (video, audio).
fn frame_counts(path: &Path) -> (u64, u64) {
    let (stdout, _) = run(&format!(
        "ffprobe -v error -count_frames -of csv=p=0 \
         -show_entries stream=index,codec_type,nb_read_frames '{}'",
        path.display()
    ));
    // An MPEG-TS lists its streams twice (under its program too): count each index once.
    let mut seen = std::collections::BTreeMap::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.trim().split(',').collect();
        if let [index, kind, n] = fields[..] {
            seen.insert(
                index.to_string(),
                (kind.to_string(), n.parse::<u64>().unwrap()),
            );
        }
    }
    let count = |kind: &str| {
        seen.values()
            .filter(|(k, _)| k == kind)
            .map(|(_, n)| n)
            .sum()
    };
    (count("video"), count("audio"))
}

/// ffprobe's view of the video stream: (codec_name, profile, level).
fn video_stream(path: &Path) -> (String, String, i64) {
    let (stdout, _) = run(&format!(
        "ffprobe -v error -select_streams v:0 -of csv=p=0 \
         -show_entries stream=codec_name,profile,level '{}'",
        path.display()
    ));
    let fields: Vec<&str> = stdout.trim().split(',').collect();
    (
        fields[0].to_string(),
        fields[1].to_string(),
        fields[2].parse().unwrap(),
    )
}

/// Asserts that each stream's decode times strictly increase, packet after packet.
fn assert_monotonic(path: &Path) {
    let (stdout, _) = run(&format!(
        "ffprobe -v error -of csv=p=0 -show_entries packet=stream_index,dts '{}'",
        path.display()
    ));
    let mut last: [Option<i64>; 2] = [None, None];
    for line in stdout.lines() {
        let (stream, dts) = line.split_once(',').unwrap();
        let stream: usize = stream.parse().unwrap();
        let dts: i64 = dts.trim().parse().unwrap();
        if let Some(previous) = last[stream] {
            assert!(
                dts > previous,
                "stream {stream}: dts {dts} after {previous}"
            );
        }
        last[stream] = Some(dts);
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The streams ffprobe sees in a file, by codec_type.
fn stream_types(path: &Path) -> Vec<String> {
    let (stdout, _) = run(&format!(
        "ffprobe -v error -of csv=p=0 -show_entries stream=codec_type '{}'",
        path.display()
    ));
    stdout.lines().map(|l| l.trim().to_string()).collect()
}

/// Remuxes the segments again with per-track output and checks it: the muxed output is what it
/// was without; each track's file (its init, then its fragments) has that one stream, which
/// ffmpeg decodes without a complaint, with every frame of the source; and a DASH manifest of
/// these segments plays through ffmpeg's DASH demuxer, both tracks whole.
fn check_tracks(dir: &Path, source: &Path, feed: &[(u64, &[u8], bool)], plain: &Remuxed) {
    let split = remux_with(feed, true);
    assert!(split.file == plain.file, "the muxed output changed");
    let (video_frames, audio_frames) = frame_counts(source);
    let expected = [
        (Track::Video, "video", (video_frames, 0)),
        (Track::Audio, "audio", (0, audio_frames)),
    ];
    for (track, kind, frames) in expected {
        let per_track = &split.tracks[track as usize];
        if frames == (0, 0) {
            assert!(per_track.file.is_empty(), "no {kind} track");
            continue;
        }
        let path = write(dir, &format!("{kind}.mp4"), &per_track.file);
        assert_eq!(stream_types(&path), [kind], "one stream in {kind}.mp4");
        assert_eq!(decode_errors(&path), "", "{kind}.mp4 decodes cleanly");
        assert_eq!(frame_counts(&path), frames, "every {kind} frame");
        assert_monotonic(&path);
    }
    // The codecs of the muxed init, one per track.
    let codecs: Vec<&str> = split
        .tracks
        .iter()
        .flat_map(|t| &t.codecs)
        .map(String::as_str)
        .collect();
    assert_eq!(codecs.join(","), plain.codecs[0]);
    let manifest = dash_manifest(dir, &split);
    assert_eq!(
        decode_errors(&manifest),
        "",
        "the DASH presentation decodes cleanly"
    );
    // Each Representation on its own: reading both, ffmpeg's DASH demuxer stops at the end of the
    // first one to end, losing the other's last frames.
    assert_eq!(selected_frames(&manifest, "v"), video_frames);
    assert_eq!(selected_frames(&manifest, "a"), audio_frames);
}

/// Frames ffprobe decodes of the streams of one type (`v`, `a`) alone.
fn selected_frames(path: &Path, kind: &str) -> u64 {
    let (stdout, _) = run(&format!(
        "ffprobe -v error -count_frames -select_streams {kind} -of csv=p=0 \
         -show_entries stream=index,nb_read_frames '{}'",
        path.display()
    ));
    // Streams are listed twice (under the DASH program too): count each index once.
    let streams: std::collections::BTreeMap<&str, u64> = stdout
        .lines()
        .filter_map(|line| line.trim().split_once(','))
        .map(|(index, n)| (index, n.parse().unwrap()))
        .collect();
    streams.values().sum()
}

/// Writes each track's init and media segments and a static DASH manifest (SegmentTemplate with
/// a SegmentTimeline in 90 kHz units, $Number$ = seq) that lists them; returns its path.
fn dash_manifest(dir: &Path, remuxed: &Remuxed) -> std::path::PathBuf {
    let mut sets = String::new();
    let mut seconds = 0;
    for (track, kind) in [(Track::Video, "video"), (Track::Audio, "audio")] {
        let per_track = &remuxed.tracks[track as usize];
        let Some(first) = per_track.segments.first() else {
            continue;
        };
        write(dir, &format!("{kind}-init.mp4"), &per_track.init);
        let mut timeline = String::new();
        for (seq, start, duration, bytes) in &per_track.segments {
            write(dir, &format!("{kind}-{seq}.m4s"), bytes);
            timeline.push_str(&format!("<S t=\"{start}\" d=\"{duration}\"/>"));
        }
        let total: u64 = per_track.segments.iter().map(|s| s.2).sum();
        seconds = seconds.max(total.div_ceil(90_000));
        sets.push_str(&format!(
            "<AdaptationSet contentType=\"{kind}\" mimeType=\"{kind}/mp4\">\
             <Representation id=\"{kind}\" codecs=\"{codecs}\" bandwidth=\"100000\">\
             <SegmentTemplate timescale=\"90000\" presentationTimeOffset=\"{offset}\" \
             startNumber=\"{number}\" initialization=\"{kind}-init.mp4\" \
             media=\"{kind}-$Number$.m4s\"><SegmentTimeline>{timeline}</SegmentTimeline>\
             </SegmentTemplate></Representation></AdaptationSet>",
            codecs = per_track.codecs[0],
            offset = first.1,
            number = first.0,
        ));
    }
    let mpd = format!(
        "<?xml version=\"1.0\"?>\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\" \
         profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" minBufferTime=\"PT2S\" \
         mediaPresentationDuration=\"PT{seconds}S\"><Period id=\"0\" start=\"PT0S\">{sets}\
         </Period></MPD>"
    );
    write(dir, "manifest.mpd", mpd.as_bytes())
}

fn have_libx265() -> bool {
    let (encoders, _) = run("ffmpeg -hide_banner -encoders");
    let found = encoders.contains("libx265");
    if !found {
        eprintln!("skipping: this ffmpeg has no libx265");
    }
    found
}

/// Remuxes a whole clip and checks it against its source, and its per-track output if `split`.
/// Returns the codecs string.
fn remux_whole_clip(dir: &Path, source: &Path, split: bool) -> String {
    let segments = segments(source);
    assert!(segments.len() >= 4, "{} segments", segments.len());
    let feed: Vec<(u64, &[u8], bool)> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, s.as_slice(), true))
        .collect();
    let remuxed = remux(&feed);
    let out = write(dir, "out.mp4", &remuxed.file);
    assert_eq!(decode_errors(&out), "", "the remuxed file decodes cleanly");
    assert_eq!(
        frame_counts(&out),
        frame_counts(source),
        "every frame is there"
    );
    assert_monotonic(&out);
    // A fragment starts each segment, on its keyframe; no other does.
    let keyframes: Vec<u64> = remuxed
        .fragments
        .iter()
        .filter(|(_, key)| *key)
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(keyframes, (0..segments.len() as u64).collect::<Vec<_>>());
    assert!(remuxed.fragments[0].1);
    if split {
        check_tracks(dir, source, &feed, &remuxed);
    }
    remuxed.codecs[0].clone()
}

#[test]
fn h264_and_aac_remux_to_an_mp4_that_decodes_cleanly() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // veryfast keeps B-frames: composition offsets are exercised.
    let source = encode(
        dir.path(),
        "clip.ts",
        &format!("{VIDEO_SOURCE} -c:v libx264 -preset veryfast -profile:v high {GOP}"),
    );
    let codecs = remux_whole_clip(dir.path(), &source, false);
    let (name, profile, level) = video_stream(&dir.path().join("out.mp4"));
    assert_eq!((name.as_str(), profile.as_str()), ("h264", "High"));
    assert_eq!(codecs, format!("avc1.6400{level:02x},mp4a.40.2"));
}

/// Per-track output, for DASH: one file per track, each with one stream that decodes cleanly and
/// whole, and a DASH manifest of them that ffmpeg's DASH demuxer plays (a muxed Representation
/// would have its audio fed to the video decoder).
#[test]
fn h264_and_aac_per_track_output_plays_as_dash() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = encode(
        dir.path(),
        "clip.ts",
        &format!("{VIDEO_SOURCE} -c:v libx264 -preset veryfast -profile:v high {GOP}"),
    );
    remux_whole_clip(dir.path(), &source, true);
}

#[test]
fn hevc_and_aac_remux_to_an_mp4_that_decodes_cleanly() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    if !have_libx265() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = encode(
        dir.path(),
        "clip.ts",
        &format!(
            "{VIDEO_SOURCE} -c:v libx265 -preset fast {GOP} \
             -x265-params log-level=error:keyint=25:min-keyint=25:scenecut=0"
        ),
    );
    let codecs = remux_whole_clip(dir.path(), &source, true);
    let (name, profile, level) = video_stream(&dir.path().join("out.mp4"));
    assert_eq!((name.as_str(), profile.as_str()), ("hevc", "Main"));
    assert_eq!(codecs, format!("hvc1.1.6.L{level}.90,mp4a.40.2"));
}

#[test]
fn audio_only_remuxes_to_an_mp4_that_decodes_cleanly() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = encode(
        dir.path(),
        "clip.ts",
        "-f lavfi -i sine=frequency=440:sample_rate=44100 -t 9",
    );
    let segments = segments(&source);
    assert!(segments.len() >= 4, "{} segments", segments.len());
    let feed: Vec<(u64, &[u8], bool)> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, s.as_slice(), true))
        .collect();
    let remuxed = remux(&feed);
    assert_eq!(remuxed.codecs, ["mp4a.40.2"]);
    assert!(remuxed.fragments.iter().all(|(_, key)| *key));
    let out = write(dir.path(), "out.mp4", &remuxed.file);
    assert_eq!(decode_errors(&out), "");
    assert_eq!(frame_counts(&out), frame_counts(&source));
    assert_monotonic(&out);
    check_tracks(dir.path(), &source, &feed, &remuxed);
}

#[test]
fn skipped_and_truncated_h264_segments_still_decode_cleanly() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    skipped_and_truncated(&format!(
        "{VIDEO_SOURCE} -c:v libx264 -preset veryfast {GOP}"
    ));
}

#[test]
fn skipped_and_truncated_hevc_segments_still_decode_cleanly() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) || !have_libx265() {
        return;
    }
    // x265 makes open GOPs: segments start at a CRA picture.
    skipped_and_truncated(&format!(
        "{VIDEO_SOURCE} -c:v libx265 -preset fast {GOP} \
         -x265-params log-level=error:keyint=25:min-keyint=25:scenecut=0"
    ));
}

/// Segments 0, 1, 3, 4 of a clip, and segment 2 cut short before 3 and 4.
fn skipped_and_truncated(options: &str) {
    let dir = tempfile::tempdir().unwrap();
    let source = encode(dir.path(), "clip.ts", options);
    let segments = segments(&source);
    assert_eq!(segments.len(), 5);
    // Frames ffmpeg decodes from these segments joined: a run that starts at a segment after a
    // gap loses what a decoder starting there cannot show (HEVC RASL pictures), as we do.
    let frames_of = |runs: &[&[usize]]| {
        runs.iter()
            .map(|run| {
                let joined: Vec<u8> = run.iter().flat_map(|&i| segments[i].clone()).collect();
                frame_counts(&write(dir.path(), "run.ts", &joined)).0
            })
            .sum::<u64>()
    };

    let skipped = remux(&[
        (0, &segments[0], true),
        (1, &segments[1], true),
        (3, &segments[3], true),
        (4, &segments[4], true),
    ]);
    let out = write(dir.path(), "skipped.mp4", &skipped.file);
    assert_eq!(decode_errors(&out), "", "a skipped segment");
    assert_monotonic(&out);
    assert_eq!(frame_counts(&out).0, frames_of(&[&[0, 1], &[3, 4]]));

    let cut = segments[2].len() / 2 + 77; // mid-packet
    let truncated = remux(&[
        (0, &segments[0], true),
        (1, &segments[1], true),
        (2, &segments[2][..cut], false),
        (3, &segments[3], true),
        (4, &segments[4], true),
    ]);
    let out = write(dir.path(), "truncated.mp4", &truncated.file);
    assert_eq!(decode_errors(&out), "", "a truncated segment");
    assert_monotonic(&out);
    let video = frame_counts(&out).0;
    assert!(
        video > frames_of(&[&[0, 1], &[3, 4]]) && video < frames_of(&[&[0, 1, 2, 3, 4]]),
        "{video} frames: part of segment 2 is there"
    );
}
