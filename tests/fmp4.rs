//! The fMP4 remuxer against the real ffmpeg: a test pattern encoded to MPEG-TS (H.264 + AAC with a
//! keyframe every second, HEVC + AAC, AAC alone) is cut into segments by the project's segmenter,
//! as `trickle publish --mpegts` does, and fed through the [`Remuxer`] in odd-sized chunks. The
//! init segment and fragments, written one after the other, make an MP4 file that ffmpeg decodes
//! without a single error, with every frame of the source, codecs strings that agree with what
//! ffprobe reads, and decode times that only go forward, also when a segment is skipped or cut
//! short.
//!
//! ffmpeg and ffprobe come from `scripts/test.sh` (`apt-get install ffmpeg`). Without them these
//! tests fail when `CI=true` and are skipped (with a message) elsewhere; the HEVC test is also
//! skipped (with a message) by an ffmpeg built without libx265.

mod common;

use std::path::Path;
use std::process::Command;

use trickle::media::fmp4::{Output, Remuxer};
use trickle::media::mpegts::{Event, Segmenter, SegmenterConfig};

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
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut events = Vec::new();
    segmenter.push(&std::fs::read(ts).unwrap(), &mut events);
    segmenter.finish(&mut events);
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for event in events {
        match event {
            Event::Start { .. } => segments.push(Vec::new()),
            Event::Data(data) => segments.last_mut().unwrap().extend_from_slice(&data),
            Event::Clock(_) => {}
        }
    }
    segments
}

/// What came out of the remuxer.
#[derive(Default)]
struct Remuxed {
    /// The init segment, then every fragment.
    file: Vec<u8>,
    codecs: Vec<String>,
    /// (seq, keyframe) of each fragment.
    fragments: Vec<(u64, bool)>,
}

/// Feeds (seq, bytes, complete) segments in chunks of varied sizes.
fn remux(segments: &[(u64, &[u8], bool)]) -> Remuxed {
    let mut remuxer = Remuxer::new();
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

fn have_libx265() -> bool {
    let (encoders, _) = run("ffmpeg -hide_banner -encoders");
    let found = encoders.contains("libx265");
    if !found {
        eprintln!("skipping: this ffmpeg has no libx265");
    }
    found
}

/// Remuxes a whole clip and checks it against its source. Returns the codecs string.
fn remux_whole_clip(dir: &Path, source: &Path) -> String {
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
    let codecs = remux_whole_clip(dir.path(), &source);
    let (name, profile, level) = video_stream(&dir.path().join("out.mp4"));
    assert_eq!((name.as_str(), profile.as_str()), ("h264", "High"));
    assert_eq!(codecs, format!("avc1.6400{level:02x},mp4a.40.2"));
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
    let codecs = remux_whole_clip(dir.path(), &source);
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
