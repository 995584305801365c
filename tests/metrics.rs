//! `/metrics`: every counter and gauge moves with real requests over real sockets (bytes in and
//! out to the byte, segments started/completed/failed, 404 and 470 answers, waiting GETs), and
//! `trickle serve --metrics-listen` serves it in the Prometheus text format on its own port.

mod common;

use common::{Raw, TestServer, eventually, spawn_serve_with_log};
use trickle::{Config, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_gauges_follow_the_traffic() {
    let s = TestServer::with_config(Config {
        ring: 2,
        ..Config::default()
    })
    .await;
    assert_eq!(s.post("/ch/0", b"hello").await.status, 200);
    assert_eq!(s.get("/ch/0").await.text(), "hello");
    // Bytes out are added when the response's stream is dropped, just after its last byte.
    eventually("the response counted", || s.server.metrics().bytes_out == 5).await;
    let m = s.server.metrics();
    assert_eq!((m.bytes_in, m.bytes_out), (5, 5));
    assert_eq!((m.segments_started, m.segments_completed), (1, 1));
    assert_eq!(m.channels, 1);

    // 404s: a missing channel, and a path no route matches.
    assert_eq!(s.get("/missing/0").await.status, 404);
    assert_eq!(s.get("/ch/0/x").await.status, 404);
    // A 470: seq 0 leaves a ring of two.
    for seq in 1..=2 {
        assert_eq!(s.post(&format!("/ch/{seq}"), b"abc").await.status, 200);
    }
    assert_eq!(s.get("/ch/0").await.status, 470);
    let m = s.server.metrics();
    assert_eq!((m.responses_404, m.responses_470), (2, 1));
    assert_eq!((m.segments_started, m.segments_completed), (3, 3));
    assert_eq!(m.bytes_in, 11);

    // A waiting GET is a gauge while it waits.
    let mut waiting = s.connect().await;
    waiting.send_request("GET", "/ch/3", &[], Some(b"")).await;
    eventually("the GET waits", || {
        s.server.metrics().stats.waiting_gets == 1
    })
    .await;

    // A publisher that dies half-way fails its segment; the waiting GET got its bytes first.
    let mut publisher = Raw::connect(s.addr).await;
    publisher.start_post("/ch/3").await;
    publisher.chunk(b"partial").await;
    let head = waiting.head().await;
    assert_eq!(head.status, 200);
    drop(publisher);
    eventually("the segment failed", || {
        s.server.metrics().segments_failed == 1
    })
    .await;
    let m = s.server.metrics();
    assert_eq!(m.segments_started, 4);
    assert_eq!(m.bytes_in, 18);
    drop(waiting);
    eventually("gauges back to zero", || {
        let m = s.server.metrics();
        m.stats == Default::default()
    })
    .await;
}

#[test]
fn the_text_format_names_every_metric() {
    let config = Config::default();
    let budget = format!("trickle_buffer_budget_bytes {}", config.memory_budget);
    assert_eq!(
        config.memory_budget,
        trickle::server::default_memory_budget()
    );
    let text = Server::new(config).metrics().prometheus(Some(4096));
    for name in [
        "trickle_channels 0",
        "trickle_gets_waiting 0",
        "trickle_gets_streaming 0",
        "trickle_posts_waiting 0",
        "trickle_posts_writing 0",
        "trickle_bytes_in_total 0",
        "trickle_bytes_out_total 0",
        "trickle_segments_started_total 0",
        "trickle_segments_completed_total 0",
        "trickle_segments_failed_total 0",
        "trickle_responses_total{status=\"404\"} 0",
        "trickle_responses_total{status=\"470\"} 0",
        "trickle_buffered_bytes 0",
        &budget,
        "trickle_budget_refusals_total 0",
        "process_resident_memory_bytes 4096",
        "# TYPE trickle_bytes_out_total counter",
        "# TYPE trickle_channels gauge",
        "# TYPE trickle_buffered_bytes gauge",
        "# TYPE trickle_budget_refusals_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == name),
            "no line {name:?} in:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exposes_metrics_on_its_own_listener() {
    let (_child, addr, log) = spawn_serve_with_log(
        &["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let metrics_addr = log
        .iter()
        .find_map(|line| line.split("serving metrics at http://").nth(1))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics line in {log:?}"))
        .to_string();
    assert_ne!(metrics_addr, addr);

    let mut trickle = Raw::connect(addr.parse().unwrap()).await;
    trickle
        .send_request("POST", "/ch/0", &[], Some(b"0123456789"))
        .await;
    assert_eq!(trickle.head().await.status, 200);

    let mut scrape = Raw::connect(metrics_addr.parse().unwrap()).await;
    scrape.send_request("GET", "/metrics", &[], Some(b"")).await;
    let head = scrape.head().await;
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(scrape.body_to_end(&head).await.unwrap()).unwrap();
    assert!(text.contains("\ntrickle_bytes_in_total 10\n"), "{text}");
    assert!(text.contains("\ntrickle_channels 1\n"), "{text}");
    let rss: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .expect("an RSS line")
        .parse()
        .unwrap();
    assert!(rss > 1 << 20, "{text}");

    // The Trickle port does not serve it: there `/metrics` is a channel path, which GET does not
    // take without a seq.
    let mut wrong = Raw::connect(addr.parse().unwrap()).await;
    wrong.send_request("GET", "/metrics", &[], Some(b"")).await;
    assert_eq!(wrong.head().await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_shows_in_bytes_out_while_it_goes() {
    let s = TestServer::start().await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    let piece = vec![7u8; 64 * 1024];
    publisher.chunk(&piece).await;
    // The POST creates the channel: wait for it, or the GET may come first and get a 404.
    eventually("the segment started", || {
        s.server.metrics().segments_started == 1
    })
    .await;
    let mut reader = s.connect().await;
    reader.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let head = reader.head().await;
    assert_eq!(head.status, 200);
    // Three megabytes through a segment that has not ended: the subscriber's bytes are counted
    // as they go, not only when its response ends (a live segment can stream for hours).
    let mut read = 0;
    for _ in 0..48 {
        publisher.chunk(&piece).await;
    }
    while read < 49 * piece.len() {
        read += reader.body_chunk(&head).await.unwrap().unwrap().len();
    }
    eventually("bytes out counted mid-stream", || {
        s.server.metrics().bytes_out >= 2 << 20
    })
    .await;
    assert_eq!(s.server.stats().streaming_gets, 1);
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
    assert!(reader.body_chunk(&head).await.unwrap().is_none());
    eventually("every byte counted", || {
        s.server.metrics().bytes_out == 49 * piece.len() as u64
    })
    .await;
}
