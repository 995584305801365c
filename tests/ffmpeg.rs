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

fn have_ffmpeg() -> bool {
    let found = ["ffmpeg", "ffprobe"].iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ffmpeg/ffprobe are required in CI (scripts/test.sh installs them)"
        );
        eprintln!("skipping: ffmpeg/ffprobe not installed (run scripts/test.sh)");
    }
    found
}

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
            "{video} {audio} -c:v libx265 -preset ultrafast -x265-params keyint=25:min-keyint=25:scenecut=0:log-level=error {tail}"
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
    let joined = dir.path().join("joined.ts");
    let url = s.url("/cam");
    let bin = trickle_bin();
    s.request_with("POST", "/cam", &[("Expect-Content", "video/mp2t")], b"")
        .await;

    // Two subscribers wait for the first segment: one file per segment, and stdout piped on.
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
            &format!("'{bin}' subscribe '{url}' | cat > '{}'", joined.display()),
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

    let files = segment_files(&segments);
    assert!(
        expected_segments.contains(&files.len()),
        "{kind}: {} segments: {files:?}",
        files.len()
    );
    let (mut video, mut audio) = (0, 0);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.ends_with(".ts"), "{name}");
        if kind != "audio" {
            assert!(
                first_frame_is_key(file).await,
                "{kind}: {name} does not start with a keyframe"
            );
        }
        let errors = decode_errors(file).await;
        assert!(
            errors.is_empty(),
            "{kind}: {name} does not decode on its own:\n{errors}"
        );
        let (v, a) = frame_counts(file).await;
        assert!(a > 0, "{kind}: {name} has no audio");
        video += v;
        audio += a;
    }
    let (want_video, want_audio) = frame_counts(&original).await;
    assert_eq!(
        (video, audio),
        (want_video, want_audio),
        "{kind}: frames of all segments"
    );
    if kind != "audio" {
        assert_eq!(want_video, 150, "6 s at 25 fps");
    }
    // The concatenation, as `trickle subscribe URL | ffprobe -` sees it, is one valid stream.
    let whole = run(&format!(
        "cat '{}' | ffprobe -v error -count_frames -show_entries stream=codec_type,nb_read_frames -of json -",
        joined.display()
    ))
    .await;
    assert_eq!(
        stream_frames(&whole.stdout),
        (want_video, want_audio),
        "{kind}: the concatenation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_and_aac_cut_at_keyframes() {
    if have_ffmpeg() {
        end_to_end("h264", 6..=6).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_and_aac_cut_at_keyframes() {
    if have_ffmpeg() {
        end_to_end("hevc", 6..=6).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_cut_by_time() {
    if have_ffmpeg() {
        // 6 s of audio in 2 s segments (the last may hold a few frames more or less).
        end_to_end("audio", 3..=4).await;
    }
}
