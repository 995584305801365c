//! Publish and subscribe: headers, `/next`, fan-out, start positions, the grace rule, 470 and
//! relative seqs (docs/PROTOCOL.md). The `sNN_` prefixes of test names are the project's old
//! scenario numbers.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_publish_then_read() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let r = s
        .request_with("POST", "/ch/0", &[("Content-Type", "text/x")], b"hello")
        .await;
    assert_eq!((r.status, r.seq()), (200, Some(0)));
    let r = s.get("/ch/0").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    assert_eq!(r.seq(), Some(0));
    assert_eq!(r.latest(), Some(1));
    assert_eq!(r.header("lp-trickle-size"), Some("5"));
    // The channel was created by `POST /ch` without Expect-Content: its MIME is empty.
    assert_eq!(r.header("content-type"), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_next_counts_complete_segments() {
    let s = TestServer::start().await;
    for i in 0..7u64 {
        assert_eq!(s.post(&format!("/ch/{i}"), b"x").await.status, 200);
        assert_eq!(s.next("ch").await, i + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_post_minus_one_lands_at_the_write_head() {
    let s = TestServer::start().await;
    for i in 0..3u64 {
        let r = s.post("/ch/-1", format!("seg{i}").as_bytes()).await;
        assert_eq!((r.status, r.seq()), (200, Some(i)));
    }
    assert_eq!(s.get("/ch/2").await.body, b"seg2");
}

async fn fan_out(readers: usize, write: usize) {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let data = pattern(2 << 20, readers as u64 + write as u64);
    let mut subscribers = Vec::new();
    for _ in 0..readers {
        let mut raw = s.connect().await;
        raw.send_request("GET", "/ch/0", &[], Some(b"")).await;
        subscribers.push(raw);
    }
    // Every GET is parked on the placeholder before the first byte is written.
    eventually("all GETs wait", || s.server.stats().waiting_gets == readers).await;
    let r = publish_chunked(&s, "/ch/0", &data, write).await;
    assert_eq!(r.status, 200);
    let mut tasks = Vec::new();
    for mut raw in subscribers {
        tasks.push(tokio::spawn(async move {
            let head = raw.head().await;
            assert_eq!(head.status, 200);
            raw.body_to_end(&head).await.unwrap()
        }));
    }
    for task in tasks {
        let got = task.await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "a reader got different bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_fan_out_15_readers_32k_writes() {
    fan_out(15, 32 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_fan_out_40_readers_32k_writes() {
    fan_out(40, 32 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_fan_out_15_readers_1300_byte_writes() {
    fan_out(15, 1300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_fan_out_40_readers_1300_byte_writes() {
    fan_out(40, 1300).await;
}

/// Reads `count` segments following `Lp-Trickle-Seq` + 1 from `start`.
async fn follow(s: &TestServer, start: &str, count: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = start.to_string();
    for _ in 0..count {
        let r = s.get(&format!("/ch/{next}")).await;
        assert_eq!(r.status, 200, "GET /ch/{next}");
        out.push(r.text());
        next = (r.seq().unwrap() + 1).to_string();
    }
    out
}

const NAMES: [&str; 5] = ["zeroth", "first", "second", "third", "fourth"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_start_positions() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    // A subscriber at -1 before any write reads `zeroth` onward.
    let early = {
        let s_addr = s.addr;
        tokio::spawn(async move {
            let mut raw = Raw::connect(s_addr).await;
            raw.send_request("GET", "/ch/-1", &[], Some(b"")).await;
            let head = raw.head().await;
            (
                head.header("lp-trickle-seq").unwrap().to_string(),
                raw.body_to_end(&head).await.unwrap(),
            )
        })
    };
    eventually("the -1 GET waits", || s.server.stats().waiting_gets == 1).await;
    s.post("/ch/0", NAMES[0].as_bytes()).await;
    let (seq, body) = early.await.unwrap();
    assert_eq!((seq.as_str(), &body[..]), ("0", NAMES[0].as_bytes()));
    s.post("/ch/1", NAMES[1].as_bytes()).await;

    // After two writes: -2 reads `first` onward, -1 `second` onward, 1 `first` onward.
    let publisher = async {
        tokio::time::sleep(QUIET).await;
        for (i, name) in NAMES.iter().enumerate().skip(2) {
            s.post(&format!("/ch/{i}"), name.as_bytes()).await;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let (_, from_minus2, from_minus1, from_one) = tokio::join!(
        publisher,
        follow(&s, "-2", 3),
        follow(&s, "-1", 3),
        follow(&s, "1", 4)
    );
    assert_eq!(from_minus2, ["first", "second", "third"]);
    assert_eq!(from_minus1, ["second", "third", "fourth"]);
    assert_eq!(from_one, ["first", "second", "third", "fourth"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_live_edge_get_waits_for_the_first_byte() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut sub = s.connect().await;
    sub.send_request("GET", "/ch/-1", &[], Some(b"")).await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    assert!(
        sub.head_within(QUIET).await.is_none(),
        "headers before any byte"
    );
    publisher.chunk(b"a").await;
    let head = sub.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("lp-trickle-seq"), Some("0"));
    assert_eq!(head.header("lp-trickle-latest"), None);
    publisher.chunk(b"bc").await;
    publisher.end_body().await;
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_grace_rule_on_a_fresh_channel() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut one = s.connect().await;
    one.send_request("GET", "/ch/1", &[], Some(b"")).await;
    assert!(one.head_within(QUIET).await.is_none(), "GET /ch/1 waits");
    let r = s.get("/ch/2").await;
    assert_eq!((r.status, r.seq(), r.latest()), (470, Some(2), Some(0)));
    // The waiting GET is served by segment 1.
    s.post("/ch/0", b"zero").await;
    s.post("/ch/1", b"one").await;
    let head = one.head().await;
    assert_eq!(one.body_to_end(&head).await.unwrap(), b"one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s14_current_segment_serves_backlog_and_next_waits() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    publisher.chunk(b"backlog-").await;
    eventually("the first byte is in", || {
        s.server.channel("ch").unwrap().next_write() == 1
    })
    .await;
    let mut current = s.connect().await;
    current.send_request("GET", "/ch/-2", &[], Some(b"")).await;
    let head = current.head().await;
    assert_eq!(head.header("lp-trickle-seq"), Some("0"));
    assert_eq!(head.header("lp-trickle-size"), Some("8"));
    assert_eq!(
        current.body_chunk(&head).await.unwrap().unwrap(),
        b"backlog-"
    );

    let mut next = s.connect().await;
    next.send_request("GET", "/ch/-1", &[], Some(b"")).await;
    assert!(next.head_within(QUIET).await.is_none());

    publisher.chunk(b"live").await;
    publisher.end_body().await;
    assert_eq!(current.body_to_end(&head).await.unwrap(), b"live");
    s.post("/ch/1", b"one").await;
    let head = next.head().await;
    assert_eq!(head.header("lp-trickle-seq"), Some("1"));
    assert_eq!(next.body_to_end(&head).await.unwrap(), b"one");
}

/// Publishes 0..=5 like the Go publisher: each segment with the next one preconnected.
async fn publish_with_preconnect(s: &TestServer, last: u64) -> Raw {
    let mut current = s.connect().await;
    current.start_post("/ch/0").await;
    for seq in 0..=last {
        let mut preconnect = s.connect().await;
        preconnect.start_post(&format!("/ch/{}", seq + 1)).await;
        current.chunk(format!("seg{seq}").as_bytes()).await;
        current.end_body().await;
        assert_eq!(current.head().await.status, 200);
        current = preconnect;
    }
    current
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s15_preconnect_evicts_the_oldest_slot() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let _preconnected_6 = publish_with_preconnect(&s, 5).await;
    for seq in [0, 1] {
        let r = s.get(&format!("/ch/{seq}")).await;
        assert_eq!((r.status, r.latest()), (470, Some(6)), "seq {seq}");
    }
    for seq in 2..=5 {
        assert_eq!(
            s.get(&format!("/ch/{seq}")).await.text(),
            format!("seg{seq}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s16_jump_to_latest_after_470() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut preconnected = publish_with_preconnect(&s, 5).await;
    let r = s.get("/ch/0").await;
    assert_eq!(r.status, 470);
    let latest = r.latest().unwrap();
    let mut sub = s.connect().await;
    sub.send_request("GET", &format!("/ch/{latest}"), &[], Some(b""))
        .await;
    preconnected.chunk(b"seg6").await;
    preconnected.end_body().await;
    let head = sub.head().await;
    assert_eq!(head.header("lp-trickle-seq"), Some("6"));
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"seg6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s17_relative_subscribe() {
    let s = TestServer::start().await;
    for (seq, name) in NAMES.iter().take(4).enumerate() {
        s.post(&format!("/ch/{seq}"), name.as_bytes()).await;
    }
    let r = s.get("/ch/-3").await;
    assert_eq!((r.seq(), r.text().as_str()), (Some(2), "second"));
    let r = s.get("/ch/-4").await;
    assert_eq!((r.seq(), r.text().as_str()), (Some(1), "first"));
    let r = s.get("/ch/-2").await;
    assert_eq!((r.seq(), r.text().as_str()), (Some(3), "third"));
    // Far beyond the history clamps at 0 (still in the ring of 5).
    let r = s.get("/ch/-100").await;
    assert_eq!((r.seq(), r.text().as_str()), (Some(0), "zeroth"));
}
