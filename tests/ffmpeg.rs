//! Live video end to end with the real ffmpeg: a test pattern encoded by ffmpeg is piped as MPEG-TS
//! into `trickle publish --mpegts`, `trickle subscribe --output-dir` stores the segments, and
//! ffprobe checks that every segment starts with a keyframe, decodes on its own, and that the
//! frames of all segments add up to what ffmpeg produced. Also `trickle subscribe URL | ffprobe -`
//! reads the concatenation as one valid stream. H.264 + AAC, HEVC + AAC, and audio only.
//!
//! ffmpeg and ffprobe come from `scripts/test.sh` (`apt-get install ffmpeg`). Without them these
//! tests fail when `CI=true` and are skipped (with a message) elsewhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{TestServer, eventually};
use tokio::process::Command;
use trickle::Config;

/// Whole pipelines take a few seconds of encoding on a loaded 2-core machine.
const PIPELINE: Duration = Duration::from_secs(120);

fn trickle_bin() -> &'static str {
    env!("CARGO_BIN_EXE_trickle")
}

/// ffmpeg arguments producing 6 seconds of MPEG-TS on stdout.
fn encode_args(kind: &str) -> String {
    let video = "-f lavfi -i testsrc2=size=320x240:rate=25";
    let audio = "-f lavfi -i sine=frequency=440:sample_rate=48000";
    let tail = "-t 6 -c:a aac -b:a 64k -f mpegts";
    match kind {
        "h264" => format!(
            "{video} {audio} -c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 {tail}"
        ),
        "hevc" => format!(
            "{video} {audio} -c:v libx265 -preset ultrafast -x265-params keyint=25:min-keyint=25:scenecut=0:open-gop=0:log-level=error {tail}"
        ),
        "audio" => format!("{audio} {tail}"),
        _ => unreachable!(),
    }
}

async fn run(script: &str) -> std::process::Output {
    let out = tokio::time::timeout(
        PIPELINE,
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the pipeline finishes")
    .expect("bash runs");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Decoded (video, audio) frames of a file.
async fn frame_counts(path: &Path) -> (u64, u64) {
    let out = run(&format!(
        "ffprobe -v error -count_frames -show_entries stream=codec_type,nb_read_frames -of json '{}'",
        path.display()
    ))
    .await;
    stream_frames(&out.stdout)
}

/// (video, audio) frame counts from ffprobe's JSON (its top-level `streams`; MPEG-TS programs list
/// the same streams again).
fn stream_frames(json: &[u8]) -> (u64, u64) {
    let report: serde_json::Value = serde_json::from_slice(json).expect("ffprobe JSON");
    let (mut video, mut audio) = (0, 0);
    for stream in report["streams"].as_array().expect("streams") {
        let frames: u64 = stream["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match stream["codec_type"].as_str() {
            Some("video") => video += frames,
            Some("audio") => audio += frames,
            _ => {}
        }
    }
    (video, audio)
}

/// The key_frame flag of the first video frame.
async fn first_frame_is_key(path: &Path) -> bool {
    let out = run(&format!(
        "ffprobe -v error -select_streams v:0 -show_frames -read_intervals '%+#1' -show_entries frame=key_frame -of csv=p=0 '{}'",
        path.display()
    ))
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    report.lines().next().and_then(|l| l.split(',').next()) == Some("1")
}

/// Decoding errors ffmpeg reports for a file on its own.
async fn decode_errors(path: &Path) -> String {
    let out = run(&format!(
        "ffmpeg -v error -i '{}' -f null - 2>&1",
        path.display()
    ))
    .await;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Publishes `kind` through the real binaries and checks every segment and the whole.
async fn end_to_end(kind: &str, expected_segments: std::ops::RangeInclusive<usize>) {
    let s = TestServer::with_config(Config {
        ring: 16,
        ..Config::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.ts");
    let segments = dir.path().join("segments");
    let report = dir.path().join("ffprobe.json");
    let url = s.url("/cam");
    let bin = trickle_bin();
    s.request_with("POST", "/cam", &[("Expect-Content", "video/mp2t")], b"")
        .await;

    // Two subscribers wait for the first segment: one stores a file per segment, the other pipes
    // the stream into ffprobe live (`trickle subscribe URL | ffprobe -`).
    let stored = Command::new(bin)
        .args(["subscribe", &url, "--output-dir"])
        .arg(&segments)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let piped = Command::new("bash")
        .args([
            "-euo",
            "pipefail",
            "-c",
            &format!(
                "'{bin}' subscribe '{url}' | ffprobe -v error -count_frames \
                 -show_entries stream=codec_type,nb_read_frames -of json - > '{}'",
                report.display()
            ),
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("both subscribers wait", || {
        s.server.stats().waiting_gets == 2
    })
    .await;

    let encode = encode_args(kind);
    run(&format!(
        "ffmpeg -v error {encode} - | '{bin}' publish '{url}' --mpegts --delete-on-exit"
    ))
    .await;
    // The same encoding to a file, for reference (ffmpeg's output is deterministic).
    run(&format!(
        "ffmpeg -v error {encode} -y '{}'",
        original.display()
    ))
    .await;

    let stored = tokio::time::timeout(PIPELINE, stored.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    let piped = tokio::time::timeout(PIPELINE, piped.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(piped.status.success());

    let (video, audio) = check_segments(&segments, kind != "audio", expected_segments, kind).await;
    let (want_video, want_audio) = frame_counts(&original).await;
    assert_eq!(
        (video, audio),
        (want_video, want_audio),
        "{kind}: frames of all segments"
    );
    if kind != "audio" {
        assert_eq!(want_video, 150, "6 s at 25 fps");
    }
    // The concatenation, as ffprobe read it from the subscriber's stdout, is one valid stream.
    assert_eq!(
        stream_frames(&std::fs::read(&report).unwrap()),
        (want_video, want_audio),
        "{kind}: the concatenation"
    );
}

/// Checks every stored segment: a `.ts` that starts with a keyframe (with video), decodes on its
/// own and has audio. Returns the (video, audio) frames of all of them.
async fn check_segments(
    dir: &Path,
    video: bool,
    expected: std::ops::RangeInclusive<usize>,
    what: &str,
) -> (u64, u64) {
    let files = segment_files(dir);
    assert!(
        expected.contains(&files.len()),
        "{what}: {} segments: {files:?}",
        files.len()
    );
    let (mut video_frames, mut audio_frames) = (0, 0);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.ends_with(".ts"), "{name}");
        if video {
            assert!(
                first_frame_is_key(file).await,
                "{what}: {name} does not start with a keyframe"
            );
        }
        let errors = decode_errors(file).await;
        assert!(
            errors.is_empty(),
            "{what}: {name} does not decode on its own:\n{errors}"
        );
        let (v, a) = frame_counts(file).await;
        assert!(a > 0, "{what}: {name} has no audio");
        video_frames += v;
        audio_frames += a;
    }
    (video_frames, audio_frames)
}

/// Publishes the file `input` with `trickle publish FILE --mpegts [extra]`, then stores what a
/// subscriber from seq 0 gets in `segments`. Returns how long publishing took.
async fn publish_file(input: &Path, segments: &Path, extra: &str) -> Duration {
    let s = TestServer::with_config(Config {
        ring: 32,
        ..Config::default()
    })
    .await;
    let url = s.url("/file");
    let bin = trickle_bin();
    let started = std::time::Instant::now();
    run(&format!(
        "'{bin}' publish '{url}' '{}' --mpegts {extra}",
        input.display()
    ))
    .await;
    let took = started.elapsed();
    let count = s.next("file").await;
    run(&format!(
        "'{bin}' subscribe '{url}' --start 0 --count {count} --output-dir '{}'",
        segments.display()
    ))
    .await;
    took
}

/// Encodes `seconds` of `kind` to a file.
async fn encode(kind: &str, path: &Path, seconds: u32) {
    let args = encode_args(kind).replace("-t 6", &format!("-t {seconds}"));
    run(&format!("ffmpeg -v error {args} -y '{}'", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misaligned_and_corrupted_input_is_resynchronised() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.ts");
    encode("h264", &clean, 6).await;
    // Garbage before and between packets (some of it 0x47, the sync byte) and a torn packet at
    // the end.
    let bytes = std::fs::read(&clean).unwrap();
    let mut dirty = vec![0x47, 1, 2, 3, 4, 5];
    for (i, packet) in bytes.chunks(188).enumerate() {
        dirty.extend_from_slice(packet);
        if i % 97 == 13 {
            dirty.extend_from_slice(&[0x47, 0x00, 0x47, 0xff, 0x12][..1 + i % 5]);
        }
    }
    dirty.extend_from_slice(&bytes[..100]);
    let corrupted = dir.path().join("corrupted.ts");
    std::fs::write(&corrupted, dirty).unwrap();
    let segments = dir.path().join("segments");
    publish_file(&corrupted, &segments, "").await;
    let frames = check_segments(&segments, true, 6..=6, "corrupted").await;
    assert_eq!(frames, frame_counts(&clean).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_change_mid_stream_keeps_cutting() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (h264, hevc) = (dir.path().join("a.ts"), dir.path().join("b.ts"));
    encode("h264", &h264, 3).await;
    encode("hevc", &hevc, 3).await;
    // One stream whose PMT switches from H.264 to HEVC (and whose timestamps restart).
    let mut joined = std::fs::read(&h264).unwrap();
    joined.extend(std::fs::read(&hevc).unwrap());
    let both = dir.path().join("both.ts");
    std::fs::write(&both, joined).unwrap();
    let segments = dir.path().join("segments");
    publish_file(&both, &segments, "").await;
    let (video, _) = check_segments(&segments, true, 6..=6, "codec change").await;
    assert_eq!(video, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_paces_a_file_by_its_timestamps() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.ts");
    encode("h264", &clip, 3).await;
    let segments = dir.path().join("segments");
    let took = publish_file(&clip, &segments, "--realtime").await;
    // Three seconds of video take (nearly) three seconds to publish, not a few milliseconds.
    assert!(
        took >= Duration::from_millis(2500),
        "published 3 s of video in {took:?}"
    );
    check_segments(&segments, true, 3..=3, "realtime").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_and_aac_cut_at_keyframes() {
    if common::have_tools(&["ffmpeg", "ffprobe"]) {
        end_to_end("h264", 6..=6).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_and_aac_cut_at_keyframes() {
    if common::have_tools(&["ffmpeg", "ffprobe"]) {
        end_to_end("hevc", 6..=6).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_cut_by_time() {
    if common::have_tools(&["ffmpeg", "ffprobe"]) {
        // 6 s of audio in 2 s segments (the last may hold a few frames more or less).
        end_to_end("audio", 3..=4).await;
    }
}

/// How long the first stream of `kind` (`v` or `a`) of a file plays, by ffprobe: from its first
/// packet's PTS to its last packet's end, in 90 kHz ticks.
async fn stream_ticks(path: &Path, kind: &str) -> i64 {
    let out = run(&format!(
        "ffprobe -v error -select_streams {kind}:0 -show_entries packet=pts,duration -of csv=p=0 '{}'",
        path.display()
    ))
    .await;
    let packets: Vec<(i64, i64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (pts, duration) = line.trim_end_matches(',').split_once(',')?;
            Some((pts.parse().ok()?, duration.parse().ok()?))
        })
        .collect();
    let start = packets.iter().map(|p| p.0).min().expect("packets");
    let end = packets.iter().map(|p| p.0 + p.1).max().unwrap();
    end - start
}

/// Publishes `seconds` of `kind` (encoded with the extra ffmpeg arguments `extra`) with
/// `trickle publish --mpegts` and returns the facts of every segment, each checked against the
/// segment's bytes as a subscriber gets them, and how long the measured stream plays (ticks).
async fn published_facts(
    kind: &str,
    extra: &str,
    seconds: u32,
) -> (Vec<trickle::server::Facts>, i64) {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.ts");
    let args = encode_args(kind)
        .replace("-t 6", &format!("-t {seconds}"))
        .replace("-f mpegts", &format!("{extra} -f mpegts"));
    run(&format!("ffmpeg -v error {args} -y '{}'", clip.display())).await;
    let length = stream_ticks(&clip, if kind == "audio" { "a" } else { "v" }).await;
    let s = TestServer::with_config(Config {
        ring: 32,
        ..Config::default()
    })
    .await;
    let url = s.url("/facts");
    run(&format!(
        "'{}' publish '{url}' '{}' --mpegts",
        trickle_bin(),
        clip.display()
    ))
    .await;
    let count = s.next("facts").await;
    let channel = s.server.channel("facts").expect("the channel");
    let mut all = Vec::new();
    for seq in 0..count {
        let facts = channel.segment_facts(seq).expect("held");
        let body = s.get(&format!("/facts/{seq}")).await;
        assert_eq!(body.status, 200);
        assert_eq!(facts.bytes, body.body.len() as u64, "seq {seq}: bytes");
        let (started, ended) = (facts.started_at.unwrap(), facts.ended_at.unwrap());
        assert!(started <= ended, "seq {seq}: starts before it ends");
        all.push(facts);
    }
    (all, length)
}

/// 90 kHz ticks of a duration (rounded: a tick is not a whole number of nanoseconds).
fn ticks(d: Duration) -> i64 {
    ((d.as_nanos() * 9 + 50_000) / 100_000) as i64
}

/// Checks that the segments' timing tiles the stream: each starts exactly where the previous one
/// ends, and the durations add up to `length` ticks within `slack`.
fn assert_contiguous(facts: &[trickle::server::Facts], length: i64, slack: i64) {
    let sum: i64 = facts
        .iter()
        .map(|f| ticks(f.duration.expect("a duration")))
        .sum();
    assert!(
        (sum - length).abs() <= slack,
        "durations add up to {sum} ticks, the stream plays {length}: {facts:#?}"
    );
    for pair in facts.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let start = a.first_pts.expect("a first PTS") as i64;
        let next = b.first_pts.expect("a first PTS") as i64;
        assert_eq!(start + ticks(a.duration.unwrap()), next, "{facts:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_facts_measure_the_published_stream() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    // H.264 with B-frames (PTS out of order) and AAC: one-second GOPs, 25 fps.
    let (facts, length) = published_facts("h264", "-bf 2", 6).await;
    assert_eq!(length, 6 * 90_000);
    assert_eq!(facts.len(), 6);
    for f in &facts {
        assert_eq!(f.starts_with_keyframe, Some(true), "{f:?}");
        assert_eq!(f.duration, Some(Duration::from_secs(1)), "{f:?}");
    }
    // Within one frame (exact, in fact).
    assert_contiguous(&facts, length, 3600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_facts_of_audio_only() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let (facts, length) = published_facts("audio", "", 6).await;
    assert!((3..=4).contains(&facts.len()), "{facts:#?}");
    assert!(facts.iter().all(|f| f.starts_with_keyframe.is_none()));
    // ffmpeg puts up to 16 AAC frames (1024 samples at 48 kHz) in a PES, and the meter reads
    // PES headers only: the stream's last PES, which may be shorter, is taken as long as the one
    // before it.
    assert_contiguous(&facts, length, 16 * 1920);
}
