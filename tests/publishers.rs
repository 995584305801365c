//! Publishers: preconnects, zero-byte and failed segments, newest-writer-wins, `Lp-Trickle-Reset`,
//! the write head, limits and timeouts (docs/PROTOCOL.md, "Publishing" and "Decisions"). The
//! `sNN_` prefixes of test names are the project's old scenario numbers.

mod common;

use std::time::Duration;

use common::*;
use trickle::Config;
use trickle::local::LocalPublisher;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s19_idle_preconnect_completes_later() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    assert!(publisher.head_within(QUIET).await.is_none());
    publisher.chunk(b"hello").await;
    publisher.end_body().await;
    let head = publisher.head().await;
    assert_eq!(
        (head.status, head.header("lp-trickle-seq")),
        (200, Some("0"))
    );
    assert_eq!(s.get("/ch/0").await.body, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s20_delete_answers_preconnects_and_waiters_with_eos() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/2").await;
    eventually("the preconnect is pending", || {
        s.server.stats().pending_posts == 1
    })
    .await;
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/2", &[], Some(b"")).await;
    eventually("the GET waits", || s.server.stats().waiting_gets == 1).await;

    assert_eq!(s.delete("/ch").await.status, 200);

    let head = publisher.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("lp-trickle-closed"), Some("terminated"));
    assert_eq!(head.header("lp-trickle-seq"), Some("2"));
    assert_eq!(head.header("connection"), Some("close"));
    let head = sub.head().await;
    assert_eq!(head.status, 200);
    assert!(head.header("lp-trickle-closed").is_some());
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"");
    assert_eq!(s.get("/ch/2").await.status, 404);
    assert_eq!(s.get("/ch/next").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s21_delete_segment_completes_a_preconnect_with_zero_bytes() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    eventually("the preconnect is pending", || {
        s.server.stats().pending_posts == 1
    })
    .await;
    assert_eq!(s.delete("/ch/0").await.status, 200);
    let head = publisher.head().await;
    assert_eq!(
        (head.status, head.header("lp-trickle-seq")),
        (200, Some("0"))
    );
    assert!(head.header("lp-trickle-closed").is_none());
    assert_eq!(s.next("ch").await, 1);
    let r = s.get("/ch/0").await;
    assert_eq!((r.status, r.body.len(), r.latest()), (200, 0, Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s22_zero_byte_post_is_an_empty_segment() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let r = s.post("/ch/0", b"").await;
    assert_eq!((r.status, r.seq()), (200, Some(0)));
    let r = s.get("/ch/0").await;
    assert_eq!((r.status, r.seq(), r.latest()), (200, Some(0), Some(1)));
    assert!(r.body.is_empty());
    assert!(!r.closed());
    assert_eq!(r.header("lp-trickle-size"), Some("0"));
    // A chunked body that ends at once is the same.
    let r = publish_chunked(&s, "/ch/1", b"", 1).await;
    assert_eq!((r.status, r.seq()), (200, Some(1)));
    assert_eq!(s.next("ch").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s23_next_follows_the_first_body_byte() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut one = s.connect().await;
    one.start_post("/ch/1").await;
    let mut zero = s.connect().await;
    zero.start_post("/ch/0").await;
    eventually("both preconnects pending", || {
        s.server.stats().pending_posts == 2
    })
    .await;
    assert_eq!(s.next("ch").await, 0);
    zero.chunk(b"z").await;
    eventually("the write head moves", || {
        s.server.channel("ch").unwrap().next_write() == 1
    })
    .await;
    assert_eq!(s.next("ch").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s24_aborted_publisher_is_visible_to_subscribers() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    publisher.chunk(b"hello").await;
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let head = sub.head().await;
    assert_eq!(sub.body_chunk(&head).await.unwrap().unwrap(), b"hello");
    drop(publisher);
    assert_eq!(sub.body_to_end(&head).await, Err(BodyError::Truncated));

    let r = s.get("/ch/0").await;
    assert_eq!((r.status, r.latest()), (470, Some(1)));
    assert_eq!(s.post("/ch/0", b"world").await.status, 200);
    assert_eq!(s.get("/ch/0").await.body, b"world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_preconnect_leaves_the_segment_fresh_for_a_retry() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    eventually("pending", || s.server.stats().pending_posts == 1).await;
    drop(publisher);
    eventually("the aborted POST is gone", || {
        s.server.stats().pending_posts == 0
    })
    .await;
    // The Go publisher's retry of the same seq.
    assert_eq!(s.post("/ch/0", b"retry").await.status, 200);
    let head = sub.head().await;
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s25_newest_writer_wins_and_versions_never_mix() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut a = s.connect().await;
    a.start_post("/ch/0").await;
    a.chunk(b"Hello").await;
    let mut during_a = s.connect().await;
    during_a.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let head_a = during_a.head().await;
    assert_eq!(
        during_a.body_chunk(&head_a).await.unwrap().unwrap(),
        b"Hello"
    );

    let r = publish_chunked(&s, "/ch/0", b"GoodbyWorld", 3).await;
    assert_eq!((r.status, r.seq()), (200, Some(0)));
    assert_eq!(s.get("/ch/0").await.body, b"GoodbyWorld");

    a.chunk(b"!").await;
    a.end_body().await;
    let head = a.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(during_a.body_to_end(&head_a).await.unwrap(), b"!");
    assert_eq!(s.get("/ch/0").await.body, b"GoodbyWorld");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_pending_post_is_superseded_with_409() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut older = s.connect().await;
    older.start_post("/ch/0").await;
    eventually("pending", || s.server.stats().pending_posts == 1).await;
    let mut newer = s.connect().await;
    newer.start_post("/ch/0").await;
    eventually("both pending", || s.server.stats().pending_posts == 2).await;
    newer.chunk(b"new").await;
    let head = older.head().await;
    assert_eq!(head.status, 409);
    assert_eq!(head.header("connection"), Some("close"));
    newer.end_body().await;
    assert_eq!(newer.head().await.status, 200);
    assert_eq!(s.get("/ch/0").await.body, b"new");

    // The other way round: when the older one starts first, the newer one still replaces it.
    let mut older = s.connect().await;
    older.start_post("/ch/1").await;
    // Arrival order decides who is older: wait until the server has seen this one.
    eventually("pending", || s.server.stats().pending_posts == 1).await;
    let mut newer = s.connect().await;
    newer.start_post("/ch/1").await;
    eventually("both pending", || s.server.stats().pending_posts == 2).await;
    older.chunk(b"old").await;
    older.end_body().await;
    assert_eq!(older.head().await.status, 200);
    newer.chunk(b"newest").await;
    newer.end_body().await;
    assert_eq!(newer.head().await.status, 200);
    assert_eq!(s.get("/ch/1").await.body, b"newest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s26_repost_replaces_a_completed_segment() {
    let s = TestServer::start().await;
    s.post("/ch/0", b"old bytes").await;
    let mut reader = s.connect().await;
    reader.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let head = reader.head().await;
    assert_eq!(s.post("/ch/0", b"new").await.status, 200);
    assert_eq!(s.get("/ch/0").await.body, b"new");
    // A reader that started on the old version keeps exactly the old bytes.
    assert_eq!(reader.body_to_end(&head).await.unwrap(), b"old bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s27_reset_releases_a_half_written_segment() {
    let s = TestServer::start().await;
    s.server.create_channel("ch", "text/plain").await.unwrap();
    let (mut pipe_in, pipe_out) = tokio::io::duplex(1024);
    let local = {
        let server = s.server.clone();
        tokio::spawn(async move {
            let mut publisher = LocalPublisher::new(&server, "ch", "text/plain");
            publisher.write(pipe_out).await
        })
    };
    tokio::io::AsyncWriteExt::write_all(&mut pipe_in, b"Hello")
        .await
        .unwrap();
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let head = sub.head().await;
    assert_eq!(sub.body_chunk(&head).await.unwrap().unwrap(), b"Hello");

    let r = s
        .request_with(
            "POST",
            "/ch/-1",
            &[("Lp-Trickle-Reset", "1")],
            b"after-reset",
        )
        .await;
    assert_eq!((r.status, r.seq()), (200, Some(1)));
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"");
    assert_eq!(s.get("/ch/0").await.body, b"Hello");
    assert_eq!(s.get("/ch/1").await.body, b"after-reset");

    // The old writer is told its segment was closed; nothing it writes now reaches anybody.
    tokio::io::AsyncWriteExt::write_all(&mut pipe_in, b" world")
        .await
        .unwrap();
    drop(pipe_in);
    let result = local.await.unwrap();
    assert!(
        matches!(result, Err(trickle::Error::SegmentClosed)),
        "{result:?}"
    );
    assert_eq!(s.get("/ch/0").await.body, b"Hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s28_channel_deleted_while_a_post_is_mid_body() {
    let s = TestServer::with_config(Config {
        autocreate: false,
        ..Config::default()
    })
    .await;
    s.server.create_channel("ch", "").await.unwrap();
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    publisher.chunk(b"part").await;
    let mut preconnect = s.connect().await;
    preconnect.start_post("/ch/1").await;
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let head = sub.head().await;
    assert_eq!(sub.body_chunk(&head).await.unwrap().unwrap(), b"part");

    assert_eq!(s.delete("/ch").await.status, 200);

    // The writer gets its answer (end of stream), the subscriber an abnormal end: the segment
    // was cut short, and must not look complete.
    let answer = publisher.head().await;
    assert_eq!(answer.status, 200);
    assert!(answer.header("lp-trickle-closed").is_some());
    assert_eq!(sub.body_to_end(&head).await, Err(BodyError::Truncated));
    let answer = preconnect.head().await;
    assert!(answer.header("lp-trickle-closed").is_some());
    assert_eq!(s.post("/ch/1", b"x").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s29_segment_size_limit() {
    let s = TestServer::with_config(Config {
        max_segment_bytes: 100_000,
        ..Config::default()
    })
    .await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    publisher.chunk(&[1u8; 60_000]).await;
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let head = sub.head().await;
    let _ = publisher.try_chunk(&[2u8; 60_000]).await;
    let answer = publisher.head().await;
    assert_eq!(answer.status, 413);
    let mut got = 0;
    let end = loop {
        match sub.body_chunk(&head).await {
            Ok(Some(data)) => got += data.len(),
            other => break other,
        }
    };
    assert_eq!(end, Err(BodyError::Truncated));
    assert!(got <= 100_000);
    assert_eq!(s.get("/ch/0").await.status, 470);
    // Exactly at the limit is fine, and the channel keeps working.
    assert_eq!(s.post("/ch/1", &[3u8; 100_000]).await.status, 200);
    assert_eq!(s.get("/ch/1").await.body.len(), 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timeout_answers_idle_posts_and_gets_with_408() {
    let s = TestServer::with_config(Config {
        wait_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    let head = publisher.head().await;
    assert_eq!(head.status, 408);
    assert_eq!(head.header("connection"), Some("close"));
    let r = s.get("/ch/0").await;
    assert_eq!((r.status, r.latest()), (408, Some(0)));
    // The segment is unchanged: a publisher can still write it.
    assert_eq!(s.post("/ch/0", b"late").await.status, 200);
    assert_eq!(s.get("/ch/0").await.body, b"late");

    // A publisher that stalls mid-body fails its segment.
    let mut staller = s.connect().await;
    staller.start_post("/ch/1").await;
    staller.chunk(b"partial").await;
    assert_eq!(staller.head().await.status, 408);
    assert_eq!(s.get("/ch/1").await.status, 470);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s37_too_many_channels() {
    let s = TestServer::with_config(Config {
        max_channels: 3,
        changefeed: true,
        ..Config::default()
    })
    .await;
    for name in ["a", "b", "c"] {
        assert_eq!(s.post(&format!("/{name}"), b"").await.status, 200);
    }
    let r = s.post("/d", b"").await;
    assert_eq!((r.status, r.text().as_str()), (503, "Too many channels\n"));
    assert_eq!(s.post("/d/0", b"x").await.status, 503);
    assert!(s.server.channel("d").is_none());
    assert_eq!(s.get("/d/next").await.status, 404);
    // Existing channels still take writes; deleting one frees a place.
    assert_eq!(s.post("/a/0", b"x").await.status, 200);
    s.delete("/a").await;
    assert_eq!(s.post("/d", b"").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_segment_at_the_write_head_can_be_waited_on() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/1").await;
    publisher.chunk(b"doomed").await;
    eventually("seq 1 started", || {
        s.server.channel("ch").unwrap().next_write() == 2
    })
    .await;
    drop(publisher);
    eventually("seq 1 failed", || s.server.stats().writing_posts == 0).await;
    // An older seq written later moves the write head back onto the failed seq 1.
    s.post("/ch/0", b"zero").await;
    assert_eq!(s.next("ch").await, 1);
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/-1", &[], Some(b"")).await;
    assert!(
        sub.head_within(QUIET).await.is_none(),
        "waits instead of looping on 470"
    );
    assert_eq!(s.post("/ch/1", b"retried").await.status, 200);
    let head = sub.head().await;
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"retried");
}

/// A POST may write seqs up to 2^53 − 2: its segment moves the write head to seq + 1, and every
/// write head must itself be a seq a GET takes (and a number JSON keeps exact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_head_stays_a_seq_a_get_takes() {
    let s = TestServer::start().await;
    let top = "9007199254740991"; // 2^53 − 1, the largest seq a GET takes
    let r = s.post(&format!("/ch/{top}"), b"x").await;
    assert_eq!((r.status, r.text().as_str()), (400, "Invalid idx\n"));
    assert!(
        s.server.channel("ch").is_none(),
        "a refused POST creates nothing"
    );
    assert_eq!(s.post("/ch/9007199254740990", b"last").await.status, 200);
    assert_eq!(s.next("ch").await, 9_007_199_254_740_991);
    let r = s.get("/ch/-2").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"last"[..]));
    // `-1` would now write 2^53 − 1 and move the head past what a GET takes.
    assert_eq!(s.post("/ch/-1", b"x").await.status, 400);
    assert_eq!(s.post(&format!("/ch/{top}"), b"x").await.status, 400);
    assert_eq!(s.next("ch").await, 9_007_199_254_740_991);
    // The head itself is a seq a GET takes: the live edge, waited on.
    let mut sub = s.connect().await;
    sub.send_request("GET", &format!("/ch/{top}"), &[], Some(b""))
        .await;
    assert!(sub.head_within(QUIET).await.is_none());
}

/// The write head moves forward only. A late write of an older seq (a retry, a publisher's POST
/// overtaken by its next one) leaves it where it is; a publisher starting over takes it back: with
/// `Lp-Trickle-Reset`, or by writing seq 0, which is how the reference publishers restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_head_moves_back_only_for_a_publisher_starting_over() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch/5", b"five").await.status, 200);
    assert_eq!(s.next("ch").await, 6);
    assert_eq!(s.post("/ch/3", b"three").await.status, 200);
    assert_eq!(s.get("/ch/3").await.body, b"three");
    assert_eq!(s.next("ch").await, 6, "an older seq leaves the head");
    assert_eq!(s.post("/ch/2", b"").await.status, 200);
    assert_eq!(s.next("ch").await, 6, "so does an older empty segment");
    let reset = [("Lp-Trickle-Reset", "1")];
    let r = s.request_with("POST", "/ch/4", &reset, b"four").await;
    assert_eq!(r.status, 200);
    assert_eq!(s.next("ch").await, 5, "a reset takes it back");
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    assert_eq!(s.next("ch").await, 1, "so does a restart at 0");
    assert_eq!(s.post("/ch/1", b"one").await.status, 200);
    assert_eq!(s.next("ch").await, 2);
}

/// A restarted reference publisher (back at seq 0, no `Lp-Trickle-Reset`) takes the head back,
/// and the ring forgets its previous run above it: subscribers waiting at the old live edge get
/// 470 with the new head instead of being stranded, and GETs from the new head on read the new
/// run, not the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_restarting_at_0_takes_waiting_subscribers_along() {
    let s = TestServer::start().await;
    for seq in 0..3 {
        assert_eq!(s.post(&format!("/ch/{seq}"), b"old").await.status, 200);
    }
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/-1", &[], Some(b"")).await;
    eventually("the GET waits at 3", || s.server.stats().waiting_gets == 1).await;
    let mut restarted = s.connect().await;
    restarted.start_post("/ch/0").await;
    restarted.chunk(b"new 0").await;
    let head = sub.head().await;
    assert_eq!(
        (head.status, head.header("lp-trickle-latest")),
        (470, Some("1"))
    );
    restarted.end_body().await;
    assert_eq!(restarted.head().await.status, 200);
    let r = s.get("/ch/2").await;
    assert_eq!((r.status, r.latest()), (470, Some(1)));
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/1", &[], Some(b"")).await;
    assert!(
        sub.head_within(QUIET).await.is_none(),
        "waits for the new 1"
    );
    assert_eq!(s.post("/ch/1", b"new 1").await.status, 200);
    let head = sub.head().await;
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"new 1");
}

/// A body declared larger than a segment may be is refused at once with 413, before any of it is
/// read: no channel is made and the segment is not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let s = TestServer::with_config(Config {
        max_segment_bytes: 1000,
        ..Config::default()
    })
    .await;
    for path in ["/new/0", "/ch/0"] {
        let mut publisher = s.connect().await;
        publisher
            .send_raw(
                format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let head = publisher.head().await;
        assert_eq!(head.status, 413);
        assert_eq!(head.header("connection"), Some("close"));
        assert_eq!(
            publisher.body_to_end(&head).await.unwrap(),
            b"Segment larger than 1000 bytes\n"
        );
        assert!(publisher.closed_within(PATIENCE).await);
        if path == "/new/0" {
            assert!(s.server.channel("new").is_none());
            assert_eq!(s.post("/ch/0", b"kept").await.status, 200);
        }
    }
    assert_eq!(s.get("/ch/0").await.body, b"kept");
    assert_eq!(s.next("ch").await, 1);
    // Exactly the limit is fine.
    assert_eq!(s.post("/ch/1", &[7u8; 1000]).await.status, 200);
}

/// A restarted publisher whose POST for seq 1 starts before the one for seq 0 (they overtake each
/// other): the head goes back past the new run's segments only, and the new run's preconnect at
/// the head is left waiting for its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_new_runs_segments_that_overtook_seq_0() {
    let s = TestServer::start().await;
    for seq in 0..7 {
        assert_eq!(s.post(&format!("/ch/{seq}"), b"old").await.status, 200);
    }
    let mut posts = Vec::new();
    for seq in 0..3 {
        let mut post = s.connect().await;
        post.start_post(&format!("/ch/{seq}")).await;
        eventually("the POST waits", || {
            s.server.stats().pending_posts == seq + 1
        })
        .await;
        posts.push(post);
    }
    posts[1].chunk(b"new 1").await;
    eventually("seq 1 started", || s.server.stats().writing_posts == 1).await;
    assert_eq!(s.next("ch").await, 7, "not a restart yet");
    posts[0].chunk(b"new 0").await;
    eventually("seq 0 started", || s.server.stats().writing_posts == 2).await;
    assert_eq!(s.next("ch").await, 2, "back to 0, past the new 1");
    for post in &mut posts[..2] {
        post.end_body().await;
        assert_eq!(post.head().await.status, 200);
    }
    assert!(
        posts[2].head_within(QUIET).await.is_none(),
        "the preconnect of 2 still waits"
    );
    let r = s.get("/ch/5").await;
    assert_eq!(
        (r.status, r.latest()),
        (470, Some(2)),
        "the old run is gone"
    );
    posts[2].chunk(b"new 2").await;
    posts[2].end_body().await;
    assert_eq!(posts[2].head().await.status, 200);
    assert_eq!(s.next("ch").await, 3);
    for seq in 0..3 {
        let r = s.get(&format!("/ch/{seq}")).await;
        assert_eq!(r.body, format!("new {seq}").as_bytes());
    }
}
