//! The discontinuity marker against the real ffmpeg: a live viewer that skipped segments gets
//! segment A, then segment C two segments later. Sent as they are, the continuity counters jump at
//! the junction and ffmpeg's demuxer flags the packet in progress as corrupt; with C passed
//! through the [`DiscontinuityMarker`], ffmpeg and ffprobe read the junction without a warning and
//! decode every frame of both segments. And end to end: a live viewer of a stream published by
//! `ffmpeg | trickle publish --mpegts --realtime` falls behind and skips; ffmpeg decodes what it
//! got without a warning, every frame of every segment it was sent.
//!
//! ffmpeg and ffprobe come from `scripts/test.sh` (`apt-get install ffmpeg`). Without them this
//! test fails when `CI=true` and is skipped (with a message) elsewhere.

mod common;

use std::collections::VecDeque;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::live::slow_viewer;
use common::{PATIENCE, TestServer};
use trickle::Config;
use trickle::media::mpegts::DiscontinuityMarker;

/// ffmpeg's default PID for the first video stream.
const VIDEO_PID: u16 = 0x100;

/// Runs a shell script, asserting that it succeeds; returns its stderr.
fn run(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{script}\n{stderr}");
    stderr
}

/// 6 s of H.264 (a keyframe every second) and AAC, cut into segments by the project's segmenter
/// as `trickle publish --mpegts` does.
fn segments(dir: &Path) -> Vec<Vec<u8>> {
    let clip = dir.join("clip.ts");
    run(&format!(
        "ffmpeg -v error -f lavfi -i testsrc2=size=320x240:rate=25 \
         -f lavfi -i sine=frequency=440:sample_rate=48000 -t 6 -c:v libx264 -preset ultrafast \
         -g 25 -keyint_min 25 -sc_threshold 0 -c:a aac -b:a 64k -f mpegts -y '{}'",
        clip.display()
    ));
    let segments = common::video::cut_segments(&std::fs::read(&clip).unwrap());
    assert_eq!(segments.len(), 6);
    segments
}

/// The continuity counters of the packets of `pid`.
fn counters(segment: &[u8], pid: u16) -> Vec<u8> {
    segment
        .chunks_exact(188)
        .filter(|p| u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]) == pid)
        .map(|p| p[3] & 0x0f)
        .collect()
}

/// `segment` through the marker, in chunks of varied sizes.
fn marked(segment: &[u8]) -> Vec<u8> {
    let mut marker = DiscontinuityMarker::new();
    let mut frames = VecDeque::new();
    let mut rest = Bytes::copy_from_slice(segment);
    let mut size = 1;
    while !rest.is_empty() {
        size = size * 7 % 1499 + 1;
        marker.feed(rest.split_to(size.min(rest.len())), &mut frames);
    }
    marker.finish(&mut frames);
    frames.iter().flat_map(|f| f.iter().copied()).collect()
}

/// What ffmpeg and ffprobe say about a file, at warning level: decoding it, and counting its
/// frames (returned as video, audio).
fn probe(path: &Path) -> (String, (u64, u64)) {
    let path = path.display();
    let mut warnings = run(&format!("ffmpeg -v warning -i '{path}' -f null -"));
    let counts = Command::new("ffprobe")
        .args(["-v", "warning", "-count_frames", "-of", "csv"])
        .args(["-show_entries", "stream=codec_type,nb_read_frames"])
        .arg(path.to_string())
        .output()
        .unwrap();
    warnings.push_str(&String::from_utf8_lossy(&counts.stderr));
    let (mut video, mut audio) = (0, 0);
    // Only the top-level streams: an MPEG-TS program lists them again ("program,stream,...").
    let report = String::from_utf8_lossy(&counts.stdout);
    for line in report.lines().filter_map(|l| l.strip_prefix("stream,")) {
        match line.split_once(',') {
            Some(("video", n)) => video += n.parse::<u64>().unwrap(),
            Some(("audio", n)) => audio += n.parse::<u64>().unwrap(),
            _ => {}
        }
    }
    (warnings, (video, audio))
}

fn write(path: &Path, parts: &[&[u8]]) {
    std::fs::write(path, parts.concat()).unwrap();
}

#[test]
fn ffmpeg_reads_a_skip_without_errors_once_marked() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let segments = segments(dir.path());
    let first = &segments[0];
    // The viewer skips at least one segment; take the first later one where the video counter
    // does not happen to continue (one chance in 16 that it would).
    let last = *counters(first, VIDEO_PID).last().unwrap();
    let next = segments[2..]
        .iter()
        .find(|s| counters(s, VIDEO_PID)[0] != (last + 1) % 16)
        .expect("a segment whose counter jumps");

    let alone = |segment: &[u8], name: &str| {
        let path = dir.path().join(name);
        write(&path, &[segment]);
        let (warnings, frames) = probe(&path);
        assert_eq!(warnings, "", "{name} on its own");
        frames
    };
    let (a, b) = (alone(first, "a.ts"), alone(next, "b.ts"));
    let all = (a.0 + b.0, a.1 + b.1);

    let marked_path = dir.path().join("marked.ts");
    write(&marked_path, &[first, &marked(next)]);
    let (warnings, frames) = probe(&marked_path);
    assert_eq!(warnings, "", "the marked junction reads cleanly");
    assert_eq!(frames, all, "every frame of both segments decodes");

    // Without the marker ffmpeg notices the jump and flags the frame it was reading as corrupt
    // (it still decodes it).
    let plain_path = dir.path().join("plain.ts");
    write(&plain_path, &[first, next]);
    let (warnings, frames) = probe(&plain_path);
    assert!(warnings.contains("corrupt"), "plain junction: {warnings:?}");
    assert_eq!(frames, all);
}

/// Seconds of the stream the live test publishes: a segment each (a keyframe every 25 frames).
const LIVE_SECONDS: u64 = 8;
/// The live viewer reads past its first bytes once more than this many segments have started.
const LIVE_PAUSE_SEGMENTS: u64 = 4;

/// Polls `check` (every 50 ms, for at most `limit`) until it holds.
async fn within(limit: std::time::Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_a_live_viewer_that_skipped_without_a_warning() {
    if !common::have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    // The ring holds the whole stream: only the live rules make the viewer skip.
    let s = TestServer::with_config(Config {
        ring: 32,
        ..Config::default()
    })
    .await;
    let created = s
        .request_with("POST", "/cam", &[("Expect-Content", "video/mp2t")], b"")
        .await;
    assert_eq!(created.status, 200);
    // A viewer with a small receive buffer, from the first segment on.
    let mut viewer = slow_viewer(s.addr, "/cam/live").await;
    common::eventually("the viewer waits", || s.server.stats().live_viewers == 1).await;

    // The real publisher, paced by the stream's timestamps as a camera's would be.
    let bin = env!("CARGO_BIN_EXE_trickle");
    let url = s.url("/cam");
    let publisher = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c"])
        .arg(format!(
            "ffmpeg -v error -f lavfi -i testsrc2=size=320x240:rate=25 \
             -f lavfi -i sine=frequency=440:sample_rate=48000 -t {LIVE_SECONDS} -c:v libx264 \
             -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -c:a aac -b:a 64k -f mpegts - \
             | '{bin}' publish '{url}' --mpegts --realtime"
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The viewer reads its first bytes, then nothing while segments go by: it is behind.
    let head = viewer.head().await;
    assert_eq!(head.header("content-type"), Some("video/mp2t"));
    let mut body = viewer.body_chunk(&head).await.unwrap().unwrap();
    let pause = PATIENCE + std::time::Duration::from_secs(LIVE_SECONDS);
    within(pause, "segments start", async || {
        s.next("cam").await > LIVE_PAUSE_SEGMENTS
    })
    .await;
    let reader = tokio::spawn(async move {
        body.extend(viewer.body_to_end(&head).await.unwrap());
        body
    });
    let published = tokio::time::timeout(pause, publisher.wait_with_output())
        .await
        .expect("the publisher finishes")
        .unwrap();
    assert!(published.status.success());
    // Every segment published is sent to the viewer or skipped; then the channel ends, and its
    // response.
    within(PATIENCE, "the viewer is done", async || {
        let m = s.server.metrics();
        m.live_segments_sent + m.live_segments_skipped == m.segments_completed
    })
    .await;
    assert_eq!(s.delete("/cam").await.status, 200);
    let body = reader.await.unwrap();
    let metrics = s.server.metrics();
    let (sent, skipped) = (metrics.live_segments_sent, metrics.live_segments_skipped);
    eprintln!("live viewer: {sent} segments sent, {skipped} skipped");
    assert!(skipped > 0, "the viewer skipped (sent {sent})");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.ts");
    std::fs::write(&path, &body).unwrap();
    // At warning level, errors included: ffmpeg reports a junction without the marker only as a
    // warning ("Packet corrupt"), which `-v error` would not show.
    let (warnings, (video, audio)) = probe(&path);
    assert_eq!(warnings, "", "the viewer's stream reads cleanly");
    assert_eq!(
        video,
        25 * sent,
        "every frame of the {sent} segments sent decodes"
    );
    assert!(audio > 0);
}
