//! Subscribers: trickling, late joiners, end of stream, abandoned and evicted waits
//! (docs/PROTOCOL.md, "Subscribing"). The `sNN_` prefixes of test names are the project's old
//! scenario numbers.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s30_bytes_trickle_as_they_are_written() {
    let s = TestServer::start().await;
    s.post("/ch/0", b"zero").await;
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/1", &[], Some(b"")).await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/1").await;
    assert!(sub.head_within(QUIET).await.is_none());
    publisher.chunk(b"part1").await;
    let head = sub.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(sub.body_chunk(&head).await.unwrap().unwrap(), b"part1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    publisher.chunk(b"part2").await;
    assert_eq!(sub.body_chunk(&head).await.unwrap().unwrap(), b"part2");
    publisher.end_body().await;
    assert_eq!(sub.body_chunk(&head).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s31_late_joiner_gets_the_backlog_at_once() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    let backlog = pattern(300_000, 31);
    for piece in backlog.chunks(1300) {
        publisher.chunk(piece).await;
    }
    eventually("the backlog is buffered", || {
        let ch = s.server.channel("ch").unwrap();
        ch.next_write() == 1
    })
    .await;
    // Wait until every byte is in (the publisher's writes may still be in flight).
    let mut sub;
    let mut head;
    loop {
        sub = s.connect().await;
        sub.send_request("GET", "/ch/0", &[], Some(b"")).await;
        head = sub.head().await;
        if head.header("lp-trickle-size") == Some("300000") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = Vec::new();
    while got.len() < backlog.len() {
        got.extend(sub.body_chunk(&head).await.unwrap().unwrap());
    }
    assert!(got == backlog);
    publisher.chunk(b"the rest").await;
    publisher.end_body().await;
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"the rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s32_delete_releases_a_waiting_get_with_eos() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/-1", &[], Some(b"")).await;
    eventually("the GET waits", || s.server.stats().waiting_gets == 1).await;
    s.delete("/ch").await;
    let head = sub.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("lp-trickle-closed"), Some("terminated"));
    assert_eq!(head.header("lp-trickle-seq"), Some("0"));
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"");
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s33_abandoned_waiting_gets_leave_no_trace() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    // A channel the waiters do not touch, to check that nothing else is disturbed.
    s.post("/other/0", b"fine").await;
    // Only the accept loop and the sweeper stay once the requests above are done.
    eventually("earlier connections end", || alive_tasks() <= 2).await;
    let baseline = alive_tasks();
    for round in 0..2 {
        let mut waiters = Vec::new();
        for i in 0..500 {
            let mut raw = s.connect().await;
            let seq = if i % 2 == 0 { "-1" } else { "1" };
            raw.send_request("GET", &format!("/ch/{seq}"), &[], Some(b""))
                .await;
            waiters.push(raw);
        }
        eventually("500 GETs wait", || s.server.stats().waiting_gets == 500).await;
        let during = alive_tasks();
        assert!(
            during >= baseline + 500,
            "round {round}: {during} tasks, baseline {baseline}"
        );
        drop(waiters);
        eventually("the waiters are freed", || {
            s.server.stats().waiting_gets == 0
        })
        .await;
        eventually("their tasks end", || alive_tasks() <= baseline).await;
    }
    assert_eq!(s.get("/other/0").await.body, b"fine");
    // The placeholder they waited on still serves the next segment.
    s.post("/ch/0", b"zero").await;
    s.post("/ch/1", b"one").await;
    assert_eq!(s.get("/ch/1").await.body, b"one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_streaming_gets_are_freed_too() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    publisher.chunk(b"begin").await;
    let mut readers = Vec::new();
    for _ in 0..50 {
        let mut raw = s.connect().await;
        raw.send_request("GET", "/ch/0", &[], Some(b"")).await;
        let head = raw.head().await;
        assert_eq!(head.status, 200);
        readers.push(raw);
    }
    eventually("50 streaming GETs", || {
        s.server.stats().streaming_gets == 50
    })
    .await;
    drop(readers);
    // A streaming response notices its client is gone at the next write.
    publisher.chunk(&[0u8; 100_000]).await;
    eventually("streaming GETs freed", || {
        s.server.stats().streaming_gets == 0
    })
    .await;
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s34_evicted_placeholder_answers_470_at_once() {
    let s = TestServer::start().await;
    for seq in 0..6 {
        s.post(&format!("/ch/{seq}"), b"x").await;
    }
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/6", &[], Some(b"")).await;
    eventually("the GET waits on placeholder 6", || {
        s.server.stats().waiting_gets == 1
    })
    .await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/1").await;
    let head = sub.head().await;
    assert_eq!(head.status, 470);
    assert_eq!(head.header("lp-trickle-seq"), Some("6"));
    assert_eq!(head.header("lp-trickle-latest"), Some("6"));
    publisher.chunk(b"rewrite").await;
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
    // An older seq rewritten leaves the write head where it was.
    assert_eq!(s.next("ch").await, 6);
}
