//! `GET /{name}/live.mp4` over real sockets: an MPEG-TS channel fed by `trickle publish --mpegts`
//! from a real-time ffmpeg encode, remuxed once for all its viewers, read back by ffmpeg and
//! ffprobe without a decoding error, also by a viewer that fell behind and skipped segments; a
//! response that ends cleanly when the stream's codecs change (a new resolution and level, the
//! audio gone) and the next one that names the new codecs; and the answers to what cannot be
//! remuxed. The player pages are served beside it.
//!
//! ffmpeg and ffprobe come from `scripts/test.sh` (`apt-get install ffmpeg`). Without them the
//! video tests fail when `CI=true` and are skipped (with a message) elsewhere.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// `ffmpeg -v error` decoding `path` entirely: what it complained about (nothing, for a clean
/// stream), and ffprobe's count of decoded video frames.
async fn decode(path: &Path) -> (String, u64) {
    let errors = video::decode_errors(&[], path.to_str().unwrap()).await;
    (errors, video::video_frames(path).await)
}

/// A viewer whose receive buffer is small, so that the server's writes to it block soon.
async fn small_buffered(addr: std::net::SocketAddr, path: &str) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut raw = Raw::from_stream(socket.connect(addr).await.unwrap());
    raw.send_request("GET", path, &[], Some(b"")).await;
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mp4_answers_what_it_cannot_remux_with_one_clear_line() {
    let s = TestServer::start().await;
    s.request_with("POST", "/text", &[("Expect-Content", "text/plain")], b"")
        .await;
    let refused = s.get("/text/live.mp4").await;
    assert_eq!(
        (refused.status, refused.text()),
        (
            415,
            "fMP4 outputs need an MPEG-TS channel (video/mp2t)\n".into()
        )
    );
    assert_eq!(s.get("/missing/live.mp4").await.status, 404);
    let bad = s.get("/text/live.mp4?from=then").await;
    assert_eq!(bad.status, 400);

    // The pages: the player of a channel, and the index.
    let page = s.get("/text/watch").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.text().contains("live.mp4"),
        "the player plays live.mp4"
    );
    assert!(
        !page.text().contains("{{player}}"),
        "the script is in place"
    );
    assert_eq!(s.get("/missing/watch").await.status, 404);
    let index = s.get("/_watch").await;
    assert_eq!(index.status, 200);
    assert!(
        index.text().contains("_events"),
        "the index follows /_events"
    );
    assert_eq!(s.post("/text/watch", b"x").await.status, 400);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_stream_remuxed_once_decodes_without_errors_also_across_a_skip() {
    if !have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let s = video::mpegts_server().await;
    // Two viewers before the first byte: their answers wait for the tracks to be known.
    let mut fast = s.connect().await;
    fast.send_request("GET", "/cam/live.mp4?from=current", &[], Some(b""))
        .await;
    let mut slow = small_buffered(s.addr, "/cam/live.mp4?from=current").await;
    let mut publisher = video::publish(&s.url("/cam"), "h264", 8, "--delete-on-exit");

    let head = fast.head().await;
    assert_eq!(head.status, 200);
    let mime = head.header("content-type").unwrap().to_string();
    assert!(
        mime.starts_with("video/mp4; codecs=\"avc1.") && mime.ends_with(",mp4a.40.2\""),
        "{mime}"
    );
    let slow_head = slow.head().await;
    assert_eq!(slow_head.header("content-type"), Some(mime.as_str()));
    assert_eq!(s.server.stats().remuxes, 1, "one remux for both");

    // The slow viewer stops reading for 4 s (its socket fills), then reads on: it skipped.
    let slow_reader = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        slow.body_to_end(&slow_head).await
    });
    let fast_body = fast.body_to_end(&head).await.expect("a clean end");
    let slow_body = slow_reader.await.unwrap().expect("a clean end");
    assert!(publisher.wait().await.unwrap().success());
    let skipped = s.server.metrics().live_segments_skipped;
    assert!(skipped > 0, "the slow viewer skipped");
    eventually("the remux stops with its viewers", || {
        s.server.stats().remuxes == 0
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    for (name, body, at_least) in [("fast", fast_body, 150), ("slow", slow_body, 25)] {
        let path = dir.path().join(format!("{name}.mp4"));
        std::fs::write(&path, &body).unwrap();
        let (errors, frames) = decode(&path).await;
        eprintln!("{name}: {} bytes, {frames} video frames", body.len());
        assert_eq!(errors, "", "{name} decodes without errors");
        assert!(frames >= at_least, "{name}: {frames} frames");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_is_remuxed_too() {
    if !have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let s = video::mpegts_server().await;
    let mut viewer = s.connect().await;
    viewer
        .send_request("GET", "/cam/live.mp4?from=current", &[], Some(b""))
        .await;
    let mut publisher = video::publish(&s.url("/cam"), "hevc", 4, "--delete-on-exit");
    let head = viewer.head().await;
    let mime = head.header("content-type").unwrap().to_string();
    assert!(mime.starts_with("video/mp4; codecs=\"hvc1."), "{mime}");
    let body = viewer.body_to_end(&head).await.expect("a clean end");
    assert!(publisher.wait().await.unwrap().success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hevc.mp4");
    std::fs::write(&path, &body).unwrap();
    let (errors, frames) = decode(&path).await;
    assert_eq!(errors, "", "decodes without errors");
    assert!(frames >= 75, "{frames} frames");
    s.stop().await;
}

/// Posts the first half of `segment` as seq `seq` of `cam`; the rest goes with [`end_post`].
async fn start_post(s: &TestServer, seq: usize, segment: &[u8]) -> Raw {
    let mut publisher = s.connect().await;
    publisher.start_post(&format!("/cam/{seq}")).await;
    publisher.chunk(&segment[..segment.len() / 2]).await;
    publisher
}

async fn end_post(mut publisher: Raw, segment: &[u8]) {
    publisher.chunk(&segment[segment.len() / 2..]).await;
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
}

/// A `live.mp4` viewer of `cam` from the segment being written (`seq`, `segment`, published as
/// the viewer asks), once the remux is at it: the answer names other codecs than `before` (those
/// of the segments before, if any). Its head has come.
async fn viewer_from(
    s: &TestServer,
    seq: usize,
    segment: &[u8],
    before: Option<&str>,
) -> (Raw, Head) {
    let publisher = start_post(s, seq, segment).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut viewer = s.connect().await;
        viewer
            .send_request("GET", "/cam/live.mp4?from=current", &[], Some(b""))
            .await;
        let head = viewer.head().await;
        assert_eq!(head.status, 200);
        if head.header("content-type") != before {
            end_post(publisher, segment).await;
            return (viewer, head);
        }
        assert!(tokio::time::Instant::now() < deadline, "the remux at {seq}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// ffprobe's `width x height` of the video stream of `path`.
async fn size(path: &Path) -> String {
    let probe = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0:s=x"])
        .arg(path)
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&probe.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_ends_when_the_codecs_change_and_the_next_one_has_the_new_ones() {
    if !have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    // Three seconds at 320x240 with AAC, then three at 640x480 (another H.264 level), then three
    // without the audio: timestamps go on, the codecs change twice.
    let stages = [
        video::clip(3, "320x240", true, 0),
        video::clip(3, "640x480", true, 3),
        video::clip(3, "640x480", false, 6),
    ];
    let stages: Vec<Vec<Vec<u8>>> = stages.iter().map(|ts| video::cut_segments(ts)).collect();
    let segments: Vec<&Vec<u8>> = stages.iter().flatten().collect();
    assert_eq!(segments.len(), 9);
    let s = video::mpegts_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut mimes: Vec<String> = Vec::new();
    let mut previous = None;
    for (stage, first) in [0, 3, 6].into_iter().enumerate() {
        // A viewer from the stage's first segment: its codecs are the stage's.
        let before = mimes.last().map(String::as_str);
        let (mut viewer, head) = viewer_from(&s, first, segments[first], before).await;
        let mime = head.header("content-type").unwrap().to_string();
        let audio = mime.ends_with(",mp4a.40.2\"");
        assert!(mime.starts_with("video/mp4; codecs=\"avc1."), "{mime}");
        assert_eq!(audio, stage < 2, "{mime}");
        mimes.push(mime);
        // That segment ended the previous stage's response, cleanly.
        if let Some(previous) = previous.take() {
            ended(&dir, stage - 1, previous).await;
        }
        let reader = tokio::spawn(async move { viewer.body_to_end(&head).await });
        // The rest of the stage: the response goes on.
        for (seq, segment) in segments.iter().enumerate().skip(first + 1).take(2) {
            let posted = s.post(&format!("/cam/{seq}"), segment).await;
            assert_eq!(posted.status, 200);
        }
        tokio::time::sleep(QUIET).await;
        assert!(!reader.is_finished(), "stage {stage}: the response goes on");
        previous = Some(reader);
    }
    // The channel's end ends the last one.
    assert_eq!(s.delete("/cam").await.status, 200);
    ended(&dir, 2, previous.unwrap()).await;
    eprintln!("{mimes:?}");
    assert!(mimes[0] != mimes[1] && mimes[1] != mimes[2], "{mimes:?}");
    s.stop().await;
}

/// The response of stage `stage`'s viewer (read by `reader`) ends cleanly; its body decodes
/// without an error, every frame of the size of the stage, at least a segment's.
async fn ended(
    dir: &tempfile::TempDir,
    stage: usize,
    reader: tokio::task::JoinHandle<Result<Vec<u8>, BodyError>>,
) {
    let body = reader.await.unwrap().expect("a clean end");
    let path = dir.path().join(format!("{stage}.mp4"));
    std::fs::write(&path, &body).unwrap();
    let (errors, frames) = decode(&path).await;
    eprintln!("stage {stage}: {} bytes, {frames} frames", body.len());
    assert_eq!(errors, "", "stage {stage} decodes without errors");
    let expected_size = ["320x240", "640x480", "640x480"][stage];
    assert_eq!(size(&path).await, expected_size, "stage {stage}");
    assert!(
        (25..=75).contains(&frames),
        "stage {stage}: {frames} frames"
    );
}
