//! HLS over real sockets (`GET /{name}/index.m3u8`, `GET /{name}/{seq}.ts`): every playlist read
//! strictly and checked against the ones before it (tests/common/hls.rs), every listed segment
//! fetched and compared with the bytes published; failed, unmeasurable and restarted segments;
//! the answers to what cannot be served; and ffmpeg playing the playlist of a real-time
//! publisher without an error.
//!
//! Segments come from ffmpeg (its segment muxer, or a real-time encode piped into `trickle
//! publish --mpegts`), installed by `scripts/test.sh`. Without it the tests that need it fail
//! when `CI=true` and are skipped (with a message) elsewhere.

mod common;

use std::path::Path;
use std::time::Duration;

use common::hls::{Playlist, Reloads, Segment, parse};
use common::*;
use tokio::process::Command;
use trickle::Config;

const MPEGTS: &[(&str, &str)] = &[("Expect-Content", "video/mp2t")];

/// `count` one-second MPEG-TS segments of a test pattern (H.264 and AAC) as ffmpeg's segment
/// muxer cuts them: each starts with PAT, PMT and a keyframe, and the timestamps of each go on
/// from the one before.
fn encode_segments(dir: &Path, count: u32) -> Vec<Vec<u8>> {
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            &count.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"])
        .args([
            "-f",
            "segment",
            "-segment_time",
            "1",
            "-segment_format",
            "mpegts",
        ])
        .args(["-reset_timestamps", "0"])
        .arg(dir.join("seg%03d.ts"))
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let segments: Vec<_> = (0..count)
        .map(|i| std::fs::read(dir.join(format!("seg{i:03}.ts"))).unwrap())
        .collect();
    segments
}

/// A server whose ring keeps 8 segments (HLS lists 6) and whose GETs wait `wait`.
async fn server(wait: Duration) -> TestServer {
    TestServer::with_config(Config {
        ring: 8,
        wait_timeout: wait,
        ..Config::default()
    })
    .await
}

/// The channel's playlist, read strictly, checked against the reloads before it, and its
/// answer's headers checked.
async fn reload(s: &TestServer, channel: &str, reloads: &mut Reloads) -> Playlist {
    let r = s.get(&format!("/{channel}/index.m3u8")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(r.header("cache-control"), Some("max-age=1"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let playlist = parse(&r.text());
    reloads.check(&playlist);
    playlist
}

/// Each of `segments`, fetched by its URI: what `expected(seq)` says was published.
async fn fetch_listed(
    s: &TestServer,
    channel: &str,
    segments: &[Segment],
    expected: impl Fn(u64) -> Vec<u8>,
) {
    for segment in segments {
        let r = s.get(&format!("/{channel}/{}", segment.uri)).await;
        assert_eq!(r.status, 200, "{}: {}", segment.uri, r.text());
        assert_eq!(r.header("content-type"), Some("video/mp2t"));
        assert_eq!(r.header("cache-control"), Some("max-age=86400, immutable"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert!(
            r.body == expected(segment.seq),
            "{} is the published bytes",
            segment.uri
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_segments_make_a_strict_playlist_of_the_published_bytes() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = encode_segments(dir.path(), 12);
    let s = server(PATIENCE).await;
    s.request_with("POST", "/cam", MPEGTS, b"").await;

    // Nothing to list yet: the playlist waits for the first segment, as a subscriber would.
    let mut early = s.connect().await;
    early
        .send_request("GET", "/cam/index.m3u8", &[], Some(b""))
        .await;
    assert!(early.head_within(QUIET).await.is_none(), "it waits");
    assert_eq!(s.post("/cam/0", &files[0]).await.status, 200);
    let head = early.head().await;
    assert_eq!(head.status, 200);
    let first = parse(&String::from_utf8(early.body_to_end(&head).await.unwrap()).unwrap());
    assert_eq!(first.segments.len(), 1);

    let mut reloads = Reloads::default();
    for seq in 0..files.len() as u64 {
        if seq > 0 {
            let r = s.post(&format!("/cam/{seq}"), &files[seq as usize]).await;
            assert_eq!(r.status, 200);
        }
        let playlist = reload(&s, "cam", &mut reloads).await;
        let listed: Vec<_> = playlist.segments.iter().map(|s| s.seq).collect();
        let oldest = seq.saturating_sub(5);
        assert_eq!(listed, (oldest..=seq).collect::<Vec<_>>());
        assert_eq!(playlist.media_sequence, oldest);
        assert_eq!(playlist.target, 1);
        assert!(playlist.independent && !playlist.ended);
        assert_eq!(playlist.discontinuity_sequence, 0);
        for segment in &playlist.segments {
            assert_eq!((segment.duration_ms, segment.discontinuity), (1000, false));
        }
        fetch_listed(&s, "cam", &playlist.segments, |seq| {
            files[seq as usize].clone()
        })
        .await;
        // Nothing changed: the same text.
        let again = s.get("/cam/index.m3u8").await;
        assert_eq!(again.text(), s.get("/cam/index.m3u8").await.text());
    }
    let playlist = reload(&s, "cam", &mut reloads).await;
    let times: Vec<_> = playlist.segments.iter().map(|s| s.date).collect();
    assert!(times[0].is_some() && times[1..].iter().all(Option::is_none));

    // A seq that left the ring, by its old URI or without one, and a version that is not this one.
    let gone = first.segments[0].uri.clone();
    assert_eq!(s.get(&format!("/cam/{gone}")).await.status, 404);
    assert_eq!(s.get("/cam/0.ts").await.status, 404);
    let newest = playlist.segments.last().unwrap();
    let other = format!("/cam/{}.ts?v={}", newest.seq, newest.tag + 1);
    let r = s.get(&other).await;
    assert_eq!((r.status, r.text()), (404, "Segment not found\n".into()));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    // Without `v`: the version held now, not to be cached.
    let r = s.get(&format!("/cam/{}.ts", newest.seq)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let head = s
        .request("HEAD", &format!("/cam/{}", newest.uri), b"")
        .await;
    let len = files[newest.seq as usize].len().to_string();
    assert_eq!(head.header("content-length"), Some(len.as_str()));
    assert!(reloads.count > 12);
    s.stop().await;
}

/// Publishes one second of `files` as seq `seq` of `cam`.
async fn publish_file(s: &TestServer, seq: u64, file: &[u8]) {
    assert_eq!(s.post(&format!("/cam/{seq}"), file).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_unmeasured_and_restarted_segments_are_not_listed_and_make_discontinuities() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = encode_segments(dir.path(), 8);
    let s = server(PATIENCE).await;
    s.request_with("POST", "/cam", MPEGTS, b"").await;
    let channel = s.server.channel("cam").unwrap();
    let mut reloads = Reloads::default();
    for seq in 0..3 {
        publish_file(&s, seq, &files[seq as usize]).await;
    }
    // Seq 3 fails: its publisher goes away mid-segment.
    let mut broken = s.connect().await;
    broken.start_post("/cam/3").await;
    broken.chunk(&files[3][..50_000]).await;
    eventually("seq 3 has bytes", || {
        channel.segment_facts(3).is_some_and(|f| f.bytes == 50_000)
    })
    .await;
    drop(broken);
    eventually("seq 3 failed", || {
        channel
            .segment_facts(3)
            .is_some_and(|f| f.ended_at.is_some())
    })
    .await;
    publish_file(&s, 4, &files[4]).await;
    let playlist = reload(&s, "cam", &mut reloads).await;
    let listed: Vec<_> = (playlist.segments.iter())
        .map(|s| (s.seq, s.msn, s.discontinuity))
        .collect();
    assert_eq!(
        listed,
        [(0, 0, false), (1, 1, false), (2, 2, false), (4, 3, true)]
    );
    assert_eq!(s.get("/cam/3.ts").await.status, 404, "failed");
    fetch_listed(&s, "cam", &playlist.segments, |seq| {
        files[seq as usize].clone()
    })
    .await;

    // Seq 5 is complete but not a transport stream (no timing): served, not listed.
    let mut garbage = pattern(188 * 50, 3);
    for packet in garbage.chunks_mut(188) {
        packet[0] = 0x47;
    }
    publish_file(&s, 5, &garbage).await;
    assert_eq!(s.get("/cam/5.ts").await.body, garbage);
    publish_file(&s, 6, &files[6]).await;
    let playlist = reload(&s, "cam", &mut reloads).await;
    let last = playlist.segments.last().unwrap();
    assert_eq!(
        (last.seq, last.msn, last.dsn, last.discontinuity),
        (6, 4, 2, true)
    );
    assert!(playlist.segments.iter().all(|s| s.seq != 5));

    // The publisher starts over at seq 0: the previous run leaves the list, the numbers go on.
    let before = playlist.segments.last().unwrap().clone();
    let r = (s.request_with("POST", "/cam/0", &[("Lp-Trickle-Reset", "1")], &files[0])).await;
    assert_eq!(r.status, 200);
    let playlist = reload(&s, "cam", &mut reloads).await;
    let restarted = &playlist.segments[..];
    assert_eq!(restarted.len(), 1, "{playlist:?}");
    assert_eq!((restarted[0].seq, restarted[0].msn), (0, before.msn + 1));
    assert_eq!(playlist.discontinuity_sequence, before.dsn + 1);
    assert_ne!(restarted[0].tag, 0);
    let old = format!("/cam/{}", before.uri);
    assert_eq!(s.get(&old).await.status, 404, "the previous run's 6");
    publish_file(&s, 1, &files[1]).await;
    let playlist = reload(&s, "cam", &mut reloads).await;
    assert_eq!(playlist.segments.len(), 2);
    assert!(!playlist.segments[1].discontinuity);
    fetch_listed(&s, "cam", &playlist.segments, |seq| {
        files[seq as usize].clone()
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_hls_cannot_serve_is_answered_with_one_line() {
    let s = server(Duration::from_secs(1)).await;
    s.request_with("POST", "/text", &[("Expect-Content", "text/plain")], b"")
        .await;
    assert_eq!(s.post("/text/0", b"hello").await.status, 200);
    for path in ["/text/index.m3u8", "/text/0.ts"] {
        let r = s.get(path).await;
        let reason = "HLS needs an MPEG-TS channel (video/mp2t)\n";
        assert_eq!((r.status, r.text().as_str()), (415, reason), "{path}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    }
    for path in ["/missing/index.m3u8", "/missing/0.ts"] {
        let r = s.get(path).await;
        assert_eq!((r.status, r.text()), (404, "Stream not found\n".into()));
    }
    s.request_with("POST", "/cam", MPEGTS, b"").await;
    for (path, status) in [
        ("/cam/abc.ts", 400),
        ("/cam/-1.ts", 400),
        ("/cam/0.ts", 404),
        ("/cam/0.ts?v=1", 404),
    ] {
        assert_eq!(s.get(path).await.status, status, "{path}");
    }
    // Bytes that are no transport stream: nothing can be listed, so the playlist waits, and
    // answers 408 after the wait timeout.
    assert_eq!(
        s.post("/cam/0", b"not a transport stream").await.status,
        200
    );
    assert_eq!(s.get("/cam/0.ts").await.text(), "not a transport stream");
    let r = s.get("/cam/index.m3u8").await;
    assert_eq!(
        (r.status, r.text()),
        (408, "Timed out waiting for data\n".into())
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));

    // A browser's preflight.
    let r = s.request("OPTIONS", "/cam/index.m3u8", b"").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,HEAD,OPTIONS")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playlist_waiting_for_its_first_segment_ends_with_its_channel() {
    let s = server(PATIENCE * 6).await;
    s.request_with("POST", "/cam", MPEGTS, b"").await;
    let mut waiting = s.connect().await;
    waiting
        .send_request("GET", "/cam/index.m3u8", &[], Some(b""))
        .await;
    eventually("the playlist waits", || s.server.stats().waiting_gets == 1).await;
    assert_eq!(s.delete("/cam").await.status, 200);
    let head = waiting.head().await;
    assert_eq!(head.status, 404, "the channel is gone");
    assert_eq!(s.server.stats().waiting_gets, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_the_playlist_of_a_real_time_publisher_without_an_error() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let s = server(Duration::from_secs(60)).await;
    s.request_with("POST", "/cam", MPEGTS, b"").await;
    let _publisher = video::publish(&s.url("/cam"), "h264", 40, "");
    let mut reloads = Reloads::default();
    // Three segments before the player starts (it starts three target durations back).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reload(&s, "cam", &mut reloads).await.segments.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "three segments");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Ten seconds of it, decoded; one line per video frame on stdout.
    let player = Command::new("ffmpeg")
        .args(["-v", "error", "-i", &s.url("/cam/index.m3u8")])
        .args(["-t", "10", "-map", "0:v:0", "-f", "framecrc", "-"])
        .kill_on_drop(true)
        .output();
    let player = tokio::spawn(tokio::time::timeout(Duration::from_secs(60), player));
    // Meanwhile, the playlist as the player sees it, reload after reload, and every segment it
    // lists is the segment a subscriber gets.
    while !player.is_finished() {
        let playlist = reload(&s, "cam", &mut reloads).await;
        assert!(!playlist.ended);
        let newest = playlist.segments.last().unwrap();
        let published = s.get(&format!("/cam/{}", newest.seq)).await;
        let newest = std::slice::from_ref(newest);
        fetch_listed(&s, "cam", newest, |_| published.body.clone()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let output = player.await.unwrap().expect("ffmpeg ends").unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{errors}");
    assert_eq!(errors, "", "ffmpeg decodes the playlist without an error");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let frames = stdout.lines().filter(|l| !l.starts_with('#')).count();
    eprintln!("{frames} frames decoded, {} reloads checked", reloads.count);
    assert!(frames >= 240, "ten seconds of 25 frames a second: {frames}");
    assert!(reloads.count >= 10);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_the_ring_cuts_a_window_given() {
    let (mut cut, _, log) =
        spawn_serve_with_log(&["--listen", "127.0.0.1:0", "--hls-window", "9"], &[]).await;
    let warning = log.iter().find(|l| l.contains("--hls-window"));
    let warning = warning.expect("a warning before the ready line");
    assert!(
        warning.contains("HLS playlists list 3 segments, not --hls-window 9")
            && warning.contains("--ring 11"),
        "{warning}"
    );
    cut.kill().await.unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--hls-window",
        "9",
        "--ring",
        "11",
    ];
    let (mut fits, _, log) = spawn_serve_with_log(&args, &[]).await;
    assert!(log.iter().all(|l| !l.contains("--hls-window")), "{log:?}");
    fits.kill().await.unwrap();
    // The default window is cut by the default ring without a word: HLS is not everybody's.
    let (mut defaults, _, log) = spawn_serve_with_log(&["--listen", "127.0.0.1:0"], &[]).await;
    assert!(log.iter().all(|l| !l.contains("hls")), "{log:?}");
    defaults.kill().await.unwrap();
}
