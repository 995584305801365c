//! `GET /{name}/live`: one continuous, lossy response per viewer, over real sockets. A viewer
//! that keeps up gets every segment byte for byte; a slow one skips whole segments at segment
//! boundaries and stays near the live edge; neither disturbs the other.

mod common;

use std::time::Duration;

use common::live::*;
use common::*;
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
    let s = TestServer::with_config(Config {
        // Room for a busy test machine: the fast viewer must never be judged behind.
        live_max_lag: 4,
        ..Config::default()
    })
    .await;
    assert_eq!(s.post("/ch", b"").await.status, 200);
    let mut fast = s.connect().await;
    fast.send_request("GET", "/ch/live", &[], Some(b"")).await;
    let mut slow = slow_viewer(s.addr, "/ch/live").await;
    eventually("both viewers wait", || s.server.stats().live_viewers == 2).await;

    let (len, count) = (64 * 1024, 40u64);
    let addr = s.addr;
    let publisher = tokio::spawn(async move {
        for seq in 0..count {
            assert_eq!(
                post(addr, format!("/ch/{seq}"), segment(seq, len)).await,
                200
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    let fast_reader = tokio::spawn(async move {
        let head = fast.head().await;
        fast.body_to_end(&head).await.unwrap()
    });
    // The slow viewer reads its first bytes, then nothing for a while: the server's writes to it
    // block, and the segments published meanwhile go by. Then it reads on, to the end.
    let slow_reader = tokio::spawn(async move {
        let head = slow.head().await;
        let mut body = slow.body_chunk(&head).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        body.extend(slow.body_to_end(&head).await.unwrap());
        body
    });
    publisher.await.unwrap();
    assert_eq!(s.delete("/ch").await.status, 200);
    let slow_body = slow_reader.await.unwrap();

    let fast_seqs = seqs_of(&fast_reader.await.unwrap(), len);
    assert_eq!(
        fast_seqs,
        (0..count).collect::<Vec<_>>(),
        "the fast viewer got everything"
    );
    let slow_seqs = seqs_of(&slow_body, len);
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
