//! `GET /{name}/live`: one continuous, lossy response per viewer, over real sockets. A viewer
//! that keeps up gets every segment byte for byte; a slow one skips whole segments at segment
//! boundaries and stays near the live edge; neither disturbs the other.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::live::*;
use common::*;
use tokio::sync::watch;
use trickle::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_keeps_up_gets_every_segment_byte_for_byte() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch", b"").await.status, 200);
    let mut viewer = s.connect().await;
    viewer.send_request("GET", "/ch/live", &[], Some(b"")).await;
    eventually("the viewer waits", || s.server.stats().live_viewers == 1).await;
    let len = 50_000;
    let mut head = None;
    let mut body = Vec::new();
    for seq in 0..6 {
        // The next segment is published once the viewer has the previous one: it never falls
        // behind, so it must get everything.
        let publish = tokio::spawn(post(s.addr, format!("/ch/{seq}"), segment(seq, len)));
        let head = match &head {
            Some(head) => head,
            None => head.insert(viewer.head().await),
        };
        assert_eq!(head.status, 200);
        while body.len() < (seq as usize + 1) * len {
            body.extend(viewer.body_chunk(head).await.unwrap().unwrap());
        }
        assert_eq!(publish.await.unwrap(), 200);
    }
    // The channel ends: so does the response, normally.
    assert_eq!(s.delete("/ch").await.status, 200);
    body.extend(viewer.body_to_end(head.as_ref().unwrap()).await.unwrap());
    assert_eq!(seqs_of(&body, len), [0, 1, 2, 3, 4, 5]);
    let metrics = s.server.metrics();
    assert_eq!(metrics.live_segments_skipped, 0);
    eventually("the viewer is gone", || s.server.stats().live_viewers == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_skips_whole_segments_and_a_fast_one_beside_it_does_not() {
    let (len, count) = (64 * 1024, 40u64);
    let s = TestServer::with_config(Config {
        // Room for a busy test machine: the fast viewer must never be judged behind.
        live_max_lag: 4,
        // Every segment stays: only the live rules make the slow viewer skip (falling off the
        // ring would make it jump too).
        ring: count as usize,
        ..Config::default()
    })
    .await;
    assert_eq!(s.post("/ch", b"").await.status, 200);
    let mut fast = s.connect().await;
    fast.send_request("GET", "/ch/live", &[], Some(b"")).await;
    let mut slow = slow_viewer(s.addr, "/ch/live").await;
    eventually("both viewers wait", || s.server.stats().live_viewers == 2).await;

    let addr = s.addr;
    let published = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn({
        let published = published.clone();
        async move {
            for seq in 0..count {
                assert_eq!(
                    post(addr, format!("/ch/{seq}"), segment(seq, len)).await,
                    200
                );
                published.store(seq + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    let (fast_whole, mut fast_progress) = watch::channel(None);
    let fast_reader = tokio::spawn({
        let published = published.clone();
        async move {
            let head = fast.head().await;
            let mut body = LiveBody::new(len);
            read_live(&mut fast, &head, &mut body, &published, &fast_whole).await;
            body
        }
    });
    // The slow viewer reads its first bytes, then nothing for a while: the server's writes to it
    // block, and the segments published meanwhile go by. Then it reads on, to the end.
    let (slow_whole, mut slow_progress) = watch::channel(None);
    let slow_reader = tokio::spawn({
        let published = published.clone();
        async move {
            let head = slow.head().await;
            let mut body = LiveBody::new(len);
            let first = slow.body_chunk(&head).await.unwrap().unwrap();
            body.push(&first, published.load(Ordering::SeqCst));
            tokio::time::sleep(Duration::from_millis(400)).await;
            read_live(&mut slow, &head, &mut body, &published, &slow_whole).await;
            body
        }
    });
    publisher.await.unwrap();
    // Deleting the channel ends the responses at once: first both viewers must have it all.
    for progress in [&mut fast_progress, &mut slow_progress] {
        let last = Some(count - 1);
        tokio::time::timeout(PATIENCE, progress.wait_for(|&whole| whole == last))
            .await
            .expect("a viewer gets the last segment")
            .unwrap();
    }
    assert_eq!(s.delete("/ch").await.status, 200);
    let slow_body = slow_reader.await.unwrap();

    let fast_seqs = fast_reader.await.unwrap().seqs();
    assert_eq!(
        fast_seqs,
        (0..count).collect::<Vec<_>>(),
        "the fast viewer got everything"
    );
    let slow_seqs = slow_body.seqs();
    assert!(slow_seqs.windows(2).all(|w| w[0] < w[1]), "{slow_seqs:?}");
    assert!(
        slow_seqs.len() < count as usize,
        "the slow viewer skipped: {slow_seqs:?}"
    );
    assert_eq!(
        slow_seqs.last(),
        Some(&(count - 1)),
        "and caught up: {slow_seqs:?}"
    );
    // What its socket held when it paused comes late (nothing can take it back); from its first
    // skip on, it stays near the live edge: never more than two segments behind the publisher.
    let lags = slow_body.lags_after_first_skip();
    eprintln!("slow viewer: (seq, published) {:?}", slow_body.starts);
    assert!(
        !lags.is_empty() && lags.iter().all(|&lag| lag <= 2),
        "{lags:?}"
    );
    let skipped = s.server.metrics().live_segments_skipped;
    assert_eq!(skipped, count - slow_seqs.len() as u64 - slow_seqs[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_answers_bad_requests_with_one_clear_line() {
    let s = TestServer::with_config(Config {
        max_viewers: 1,
        ..Config::default()
    })
    .await;
    let r = s.get("/nope/live").await;
    assert_eq!((r.status, r.text().as_str()), (404, "Stream not found\n"));
    assert_eq!(s.post("/ch", b"").await.status, 200);
    let r = s.get("/ch/live?from=later").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Invalid from: expected next or current\n")
    );
    // A HEAD says what a viewer would get.
    let r = s.request("HEAD", "/ch/live", b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // Past --max-viewers: 503.
    let mut first = s.connect().await;
    first.send_request("GET", "/ch/live", &[], Some(b"")).await;
    eventually("one viewer", || s.server.stats().live_viewers == 1).await;
    let r = s.get("/ch/live").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "Too many live viewers\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_that_fails_ends_the_live_response_abnormally() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch", b"").await.status, 200);
    let mut viewer = s.connect().await;
    viewer
        .send_request("GET", "/ch/live?from=current", &[], Some(b""))
        .await;
    eventually("the viewer waits", || s.server.stats().live_viewers == 1).await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    publisher.chunk(b"half a segment").await;
    let head = viewer.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(
        viewer.body_chunk(&head).await.unwrap().unwrap(),
        b"half a segment"
    );
    drop(publisher);
    // No final chunk: the viewer cannot take the segment as whole.
    assert_eq!(viewer.body_to_end(&head).await, Err(BodyError::Truncated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_is_dropped_after_the_send_timeout_and_holds_no_segments() {
    let s = TestServer::with_config(Config {
        send_timeout: Duration::from_secs(1),
        ring: 2,
        ..Config::default()
    })
    .await;
    assert_eq!(s.post("/ch", b"").await.status, 200);
    // Its socket fills with the first segment; it never reads.
    let stuck = slow_viewer(s.addr, "/ch/live").await;
    eventually("the viewer", || s.server.stats().live_viewers == 1).await;
    let len = 256 * 1024;
    for seq in 0..6 {
        assert_eq!(
            post(s.addr, format!("/ch/{seq}"), segment(seq, len)).await,
            200
        );
    }
    // Without progress for the send timeout its response is failed and its connection closed.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s.server.stats().live_viewers > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck viewer was dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing it was sent is held for it: only the ring's two segments are buffered.
    let (_, held) = s.server.take_buffered_peak();
    assert!(held <= 2 * len as u64, "held {held} bytes");
    drop(stuck);
    s.stop().await;
}
