//! Low-Latency HLS (`ll.m3u8`, `init.mp4`, `{seq}.m4s`, `{seq}.{part}.m4s`) of a live channel fed
//! by `trickle publish --mpegts` from a real-time ffmpeg encode: every playlist read by a strict
//! parser and checked against the specification's numbers across reloads, blocking reloads and
//! the preload hint answered together when the part completes, segment bytes equal to their
//! parts', ffmpeg decoding the stream without an error, and the answers to bad requests (bad or
//! unreachable `_HLS_msn`/`_HLS_part` on a channel fed with raw POSTs of encoded segments). And
//! the remux stopping once its players' lease ran out, as `trickle serve`'s `/metrics` shows.
//!
//! ffmpeg comes from `scripts/test.sh`. Without it these tests fail when `CI=true` and are
//! skipped (with a message) elsewhere.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::hls::{Playlist, Reloads, parse};
use common::*;

/// The playlist at `path` (a `200`, parsed strictly), and when the answer came.
async fn playlist(s: &TestServer, path: &str) -> (Playlist, Instant) {
    let response = s.get(path).await;
    let at = Instant::now();
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    (parse(&response.text()), at)
}

/// The seq and part the playlist's preload hint names (`{seq}.{part}.m4s`): the part being made.
fn hinted(list: &Playlist) -> (u64, u64) {
    let hint = list.preload_hint.as_deref().expect("a preload hint");
    let (seq, part) = hint
        .strip_suffix(".m4s")
        .and_then(|h| h.split_once('.'))
        .expect("{seq}.{part}.m4s");
    (seq.parse().unwrap(), part.parse().unwrap())
}

/// A server with a channel `cam` being published for `secs` seconds.
async fn live_channel(secs: u64) -> (TestServer, tokio::process::Child) {
    let s = video::mpegts_server().await;
    let publisher = video::publish(&s.url("/cam"), "h264", secs, "");
    (s, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_keep_the_rules_across_reloads_and_blocking_reloads_come_with_the_part() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let (s, _publisher) = live_channel(20).await;
    let (first, _) = playlist(&s, "/cam/ll.m3u8").await;
    assert!(first.can_block_reload);
    let mut reloads = Reloads::default();
    reloads.check(&first);
    let mut previous = first;
    let mut lateness = Vec::new();
    for _ in 0..12 {
        // Ask for the part the playlist hints, twice over: the part itself (waits for it) and
        // the playlist that lists it (blocks until then). Both come when the part is complete.
        let hint = previous.preload_hint.clone().expect("a preload hint");
        let (seq, part) = hinted(&previous);
        let part_path = format!("/cam/{hint}");
        let blocked = format!("/cam/ll.m3u8?_HLS_msn={seq}&_HLS_part={part}");
        let (part_answer, (reloaded, listed_at)) = tokio::join!(
            async {
                let answer = s.get(&part_path).await;
                (answer, Instant::now())
            },
            playlist(&s, &blocked)
        );
        let (part_answer, part_at) = part_answer;
        assert_eq!(part_answer.status, 200, "{part_path}");
        assert!(
            part_answer
                .header("content-type")
                .unwrap()
                .starts_with("video/mp4")
        );
        lateness.push(listed_at.max(part_at) - listed_at.min(part_at));
        // The part is listed (or its whole segment), and the rules hold across reloads.
        let mut parts = reloaded.segments.iter().flat_map(|s| &s.parts);
        let listed =
            parts.any(|p| p.uri == hint) || reloaded.open_parts.iter().any(|p| p.uri == hint);
        assert!(
            listed || reloaded.segment(seq).is_some(),
            "{blocked} lists {hint} (part {part})"
        );
        reloads.check(&reloaded);
        previous = reloaded;
    }
    // Each complete segment is its parts, byte for byte.
    let mut compared = 0;
    for segment in previous.segments.iter().filter(|s| !s.parts.is_empty()) {
        let whole = s.get(&format!("/cam/{}", segment.uri)).await;
        assert_eq!(whole.status, 200);
        let mut joined = Vec::new();
        for part in &segment.parts {
            joined.extend(s.get(&format!("/cam/{}", part.uri)).await.body);
        }
        assert_eq!(whole.body, joined, "segment {} is its parts", segment.seq);
        compared += 1;
    }
    assert!(compared >= 1, "some segment was compared");
    // The init segment the playlist names (by generation) is the one `init.mp4` serves.
    let map = previous.segments[0]
        .map
        .clone()
        .expect("EXT-X-MAP on the first segment");
    assert!(map.starts_with("init.mp4?g="), "{map}");
    let named = s.get(&format!("/cam/{map}")).await;
    let newest = s.get("/cam/init.mp4").await;
    assert_eq!((named.status, newest.status), (200, 200));
    assert!(
        named
            .header("content-type")
            .unwrap()
            .starts_with("video/mp4; codecs=\"avc1.")
    );
    assert_eq!(named.body, newest.body);
    assert_eq!(s.get("/cam/init.mp4?g=99").await.status, 404);
    let part_target = Duration::from_secs_f64(previous.part_target.unwrap());
    eprintln!("blocking reload vs part: {lateness:?}");
    assert!(
        lateness.iter().all(|late| *late <= part_target),
        "each blocking reload answered within a part of its part: {lateness:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_ll_hls_without_errors() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let (s, _publisher) = live_channel(20).await;
    // ffmpeg plays complete segments (it does not read parts): wait for two, then let it follow
    // the playlist for 6 s.
    let (list, _) = playlist(&s, "/cam/ll.m3u8").await;
    let wanted = list.media_sequence + 2;
    playlist(&s, &format!("/cam/ll.m3u8?_HLS_msn={wanted}")).await;
    let url = s.url("/cam/ll.m3u8");
    let errors = video::decode_errors(&["-t", "6"], &url).await;
    assert_eq!(errors, "", "ffmpeg decodes LL-HLS without errors");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_one_clear_line() {
    let s = TestServer::start().await;
    s.request_with("POST", "/text", &[("Expect-Content", "text/plain")], b"")
        .await;
    video::refused_as_not_mpegts(
        &s,
        &[
            "/text/ll.m3u8",
            "/text/init.mp4",
            "/text/3.m4s",
            "/text/3.1.m4s",
        ],
    )
    .await;
    for path in ["/missing/ll.m3u8", "/missing/init.mp4", "/missing/0.m4s"] {
        assert_eq!(s.get(path).await.status, 404, "{path}");
    }
    for query in [
        "_HLS_part=1",
        "_HLS_msn=x",
        "_HLS_msn=-1",
        "_HLS_msn=1&_HLS_part=",
        "_HLS_msn=99999999999999999999",
    ] {
        let bad = s.get(&format!("/text/ll.m3u8?{query}")).await;
        assert_eq!(bad.status, 400, "{query}: {}", bad.text());
    }
    // Not a number of ours: a seq, an invalid one.
    assert_eq!(s.get("/text/x.m4s").await.status, 400);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_ahead_is_400_and_a_part_that_does_not_come_is_503() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let (s, mut publisher) = live_channel(3).await;
    let (list, _) = playlist(&s, "/cam/ll.m3u8").await;
    let (newest, _) = hinted(&list);
    let far = s
        .get(&format!("/cam/ll.m3u8?_HLS_msn={}", newest + 3))
        .await;
    assert_eq!(far.status, 400, "{}", far.text());
    // Once the publisher is done, nothing more comes: a blocked reload gives up after three
    // target durations.
    assert!(publisher.wait().await.unwrap().success());
    let (list, _) = playlist(&s, "/cam/ll.m3u8").await;
    let next = hinted(&list).0 + 1;
    let started = Instant::now();
    let gave_up = s
        .get(&format!("/cam/ll.m3u8?_HLS_msn={next}&_HLS_part=0"))
        .await;
    assert_eq!(gave_up.status, 503);
    assert_eq!(gave_up.header("retry-after"), Some("1"));
    let waited = started.elapsed().as_secs_f64();
    let limit = 3.0 * list.target as f64;
    assert!(
        waited >= limit - 0.5 && waited <= limit + 2.0,
        "waited {waited:.1} s"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_duration_is_right_from_the_first_playlist() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    // Two-second segments, one of them complete before the first player comes: the remux that
    // starts then begins with a segment under way, but its target duration is the channel's.
    let s = video::mpegts_server().await;
    let _publisher = video::publish(&s.url("/cam"), "h264-2s", 12, "");
    common::eventually("a complete segment", || {
        s.server.channel("cam").is_some_and(|c| {
            (0..4).any(|seq| c.segment_facts(seq).and_then(|f| f.duration).is_some())
        })
    })
    .await;
    let mut reloads = Reloads::default();
    let (first, _) = playlist(&s, "/cam/ll.m3u8").await;
    assert_eq!(
        first.target, 2,
        "the target duration of two-second segments"
    );
    reloads.check(&first);
    let (seq, _) = hinted(&first);
    let (later, _) = playlist(&s, &format!("/cam/ll.m3u8?_HLS_msn={}", seq + 1)).await;
    reloads.check(&later);
    s.stop().await;
}

/// A server with the MPEG-TS channel `cam` and its remux started, seq 0 (`first`) complete.
async fn remuxed_channel(first: &[u8]) -> TestServer {
    let s = video::mpegts_server().await;
    video::start_remux(s.addr, "cam", 0, first).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_values_that_are_no_numbers_or_out_of_reach_are_400_with_one_line() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let segments = video::cut_segments(&video::clip(4, "320x240", true, 0));
    let s = remuxed_channel(&segments[0]).await;
    for (seq, segment) in segments.iter().enumerate().take(3).skip(1) {
        assert_eq!(s.post(&format!("/cam/{seq}"), segment).await.status, 200);
    }
    // Seq 3 is being written: half of it is there, its first part complete.
    let mut publisher = s.connect().await;
    publisher.start_post("/cam/3").await;
    let half = segments[3].len() / 188 / 2 * 188;
    publisher.chunk(&segments[3][..half]).await;
    let (list, _) = playlist(&s, "/cam/ll.m3u8?_HLS_msn=3&_HLS_part=0").await;
    let listed = list.open_parts.len();
    assert!(listed >= 1, "{list:?}");
    // What is listed is answered at once, whatever the part asked of a complete segment.
    for query in [
        "_HLS_msn=2",
        "_HLS_msn=1&_HLS_part=3",
        "_HLS_msn=0&_HLS_part=0",
    ] {
        playlist(&s, &format!("/cam/ll.m3u8?{query}")).await;
    }
    // Three seconds of parts past those listed is the most a player may ask ahead (RFC 8216bis
    // 6.2.5.2): nine parts of at most a third of a second. Beyond it, and beyond two segments
    // ahead, the answer is 400 at once, as for values that are no numbers.
    let max = u64::MAX;
    let ahead = listed + 9;
    for query in [
        "_HLS_msn=x".to_string(),
        "_HLS_msn=-1".into(),
        "_HLS_msn=".into(),
        "_HLS_msn=1.5".into(),
        "_HLS_msn=0x3".into(),
        "_HLS_msn=99999999999999999999".into(),
        format!("_HLS_msn={max}"),
        format!("_HLS_msn={max}&_HLS_part=0"),
        "_HLS_msn=6".into(),
        "_HLS_part=0".into(),
        "_HLS_part=x".into(),
        "_HLS_msn=3&_HLS_part=".into(),
        "_HLS_msn=3&_HLS_part=-1".into(),
        "_HLS_msn=3&_HLS_part=99999999999999999999".into(),
        format!("_HLS_msn=3&_HLS_part={ahead}"),
        format!("_HLS_msn=3&_HLS_part={max}"),
        "_HLS_msn=4&_HLS_part=9".into(),
        format!("_HLS_msn=4&_HLS_part={max}"),
        format!("_HLS_msn=5&_HLS_part={max}"),
        "_HLS_msn=2&_HLS_part=13".into(),
        format!("_HLS_msn=0&_HLS_part={max}"),
    ] {
        let bad = s.get(&format!("/cam/ll.m3u8?{query}")).await;
        let line = bad.text();
        assert_eq!(bad.status, 400, "{query}: {line}");
        assert!(
            line.ends_with('\n') && line.len() > 1 && line.matches('\n').count() == 1,
            "{query}: one line, {line:?}"
        );
        assert_eq!(bad.header("access-control-allow-origin"), Some("*"));
    }
    publisher.chunk(&segments[3][half..]).await;
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
    // The server goes on: seq 3 is listed whole.
    let (list, _) = playlist(&s, "/cam/ll.m3u8?_HLS_msn=3").await;
    assert!(list.segment(3).is_some(), "{list:?}");
    s.stop().await;
}

/// `trickle_live_remuxes` in `/metrics` at `metrics` of `serve`: the remuxes running.
async fn remuxes(serve: &mut tokio::process::Child, metrics: SocketAddr) -> u64 {
    let exited = serve.try_wait().unwrap();
    assert!(exited.is_none(), "trickle serve exited: {exited:?}");
    let scrape = request_at(metrics, "GET", "/metrics", &[], b"").await;
    assert_eq!(scrape.status, 200);
    let text = scrape.text();
    let gauge = text
        .lines()
        .find_map(|line| line.strip_prefix("trickle_live_remuxes "));
    gauge.expect("the gauge").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remux_runs_for_its_players_lease_after_their_last_request_then_stops() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let segments = video::cut_segments(&video::clip(5, "320x240", true, 0));
    let args = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
    let (mut serve, addr, log) = spawn_serve_with_log(&args, &[]).await;
    let (addr, metrics) = (addr.parse().unwrap(), metrics_addr(&log));
    let mpegts = [("Expect-Content", "video/mp2t")];
    let created = request_at(addr, "POST", "/cam", &mpegts, b"").await;
    assert_eq!(created.status, 200);
    assert_eq!(remuxes(&mut serve, metrics).await, 0, "nobody asked yet");
    video::start_remux(addr, "cam", 0, &segments[0]).await;
    assert_eq!(remuxes(&mut serve, metrics).await, 1);
    for (seq, segment) in segments.iter().enumerate().take(4).skip(1) {
        let posted = request_at(addr, "POST", &format!("/cam/{seq}"), &[], segment).await;
        assert_eq!(posted.status, 200);
    }
    // The player keeps fetching for a while (each fetch, a piece as well as a playlist, renews
    // the lease), then stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = Instant::now();
    let piece = request_at(addr, "GET", "/cam/3.m4s", &[], b"").await;
    assert_eq!(piece.status, 200);
    // The channel goes on, nobody plays it: the remux runs for the lease (15 s after the last
    // request, checked every second), then stops. Not a speed check: only that it stops, and
    // not before the lease of the last request ran out.
    let deadline = last + Duration::from_secs(15 + 1) + PATIENCE;
    while remuxes(&mut serve, metrics).await > 0 {
        assert!(Instant::now() < deadline, "the remux stops");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lasted = last.elapsed();
    assert!(lasted >= Duration::from_secs(15), "{lasted:?}");
    // The next player starts a new remux, with the segment being written.
    video::start_remux(addr, "cam", 4, &segments[4]).await;
    assert_eq!(remuxes(&mut serve, metrics).await, 1);
    let answer = request_at(addr, "GET", "/cam/ll.m3u8?_HLS_msn=4", &[], b"").await;
    assert_eq!(answer.status, 200);
    let list = parse(&answer.text());
    assert_eq!(list.segments.iter().map(|s| s.seq).collect::<Vec<_>>(), [4]);
}
