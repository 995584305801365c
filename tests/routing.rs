//! Routing and basic answers (docs/PROTOCOL.md, "Routes" and "Seqs"), names, HEAD and the base
//! path. The `sNN_` prefixes of test names are the project's old scenario numbers.

mod common;

use common::*;
use trickle::Config;

fn no_autocreate() -> Config {
    Config {
        autocreate: false,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_without_autocreate_missing_channels_are_404() {
    let s = TestServer::with_config(no_autocreate()).await;
    let r = s.post("/missing", b"").await;
    assert_eq!((r.status, r.text().as_str()), (404, "Stream not found\n"));
    assert_eq!(s.get("/missing/next").await.status, 404);

    // A POST with a body that never comes is answered at once, with Connection: close.
    let mut raw = s.connect().await;
    raw.start_post("/missing/0").await;
    raw.chunk(b"some bytes").await;
    let head = raw.head().await;
    assert_eq!(head.status, 404);
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(raw.body_to_end(&head).await.unwrap(), b"Stream not found\n");
    assert!(raw.closed_within(PATIENCE).await);
    assert!(s.server.channel("missing").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_create_then_next_is_zero() {
    let s = TestServer::start().await;
    let r = s.post("/created", b"").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let r = s.get("/created/next").await;
    assert_eq!((r.status, r.text().as_str()), (200, "0"));
    assert_eq!(r.latest(), Some(0));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // Creating again is a no-op.
    assert_eq!(s.post("/created", b"").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_mime_is_fixed_by_the_creator() {
    let s = TestServer::start().await;
    let r = s
        .request_with(
            "POST",
            "/published/0",
            &[("Content-Type", "video/mp2t")],
            b"hello",
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s.get("/published/0").await;
    assert_eq!(r.body, b"hello");
    assert_eq!(r.header("content-type"), Some("video/mp2t"));

    let r = s
        .request_with(
            "POST",
            "/auto",
            &[("Expect-Content", "application/x-test")],
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    s.request_with("POST", "/auto/0", &[("Content-Type", "video/other")], b"x")
        .await;
    assert_eq!(
        s.get("/auto/0").await.header("content-type"),
        Some("application/x-test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_bad_seqs_methods_and_paths() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let r = s.get("/ch/abc").await;
    assert_eq!((r.status, r.text().as_str()), (400, "Invalid idx\n"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(s.get("/missing/abc").await.status, 404);
    let r = s.request("PUT", "/ch/0", b"").await;
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("POST"));
    assert_eq!(s.get("/ch/0/x").await.status, 404);
    assert_eq!(s.get("/ch/").await.status, 404);
    assert_eq!(s.get("/").await.status, 404);
    // POST and DELETE of `next` reach the seq handlers.
    assert_eq!(s.post("/ch/next", b"x").await.status, 400);
    assert_eq!(s.delete("/ch/next").await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_delete_channel() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    assert_eq!(s.delete("/ch").await.status, 200);
    assert_eq!(s.get("/ch/next").await.status, 404);
    let r = s.delete("/ch").await;
    assert_eq!((r.status, r.text().as_str()), (404, "Stream not found\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_delete_segment_that_was_never_written() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let r = s.delete("/ch/7").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Nonexistent segment\n")
    );
    assert_eq!(s.delete("/missing/7").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s18_negative_and_huge_seqs_are_rejected_and_harmless() {
    let s = TestServer::with_config(Config {
        idle_timeout: std::time::Duration::from_millis(300),
        sweep_interval: std::time::Duration::from_millis(50),
        ..Config::default()
    })
    .await;
    s.post("/ch", b"").await;
    for (method, path) in [
        ("GET", "/ch/-9999999999999999999"),
        ("POST", "/ch/-2"),
        ("POST", "/ch/-5"),
        ("DELETE", "/ch/-1"),
        ("DELETE", "/ch/-2"),
        ("POST", "/ch/9007199254740992"),
        // 2^53 − 1 is a seq, but writing it would move the write head past the largest one.
        ("POST", "/ch/9007199254740991"),
        ("GET", "/ch/9223372036854775807"),
        ("GET", "/ch/1e3"),
    ] {
        let r = s.request(method, path, b"x").await;
        assert_eq!(r.status, 400, "{method} {path}");
        assert_eq!(r.text(), "Invalid idx\n", "{method} {path}");
    }
    // The channel still works in every way afterwards.
    assert_eq!(s.post("/ch/0", b"zeroth").await.status, 200);
    assert_eq!(s.get("/ch/0").await.body, b"zeroth");
    assert_eq!(s.get("/ch/-2").await.body, b"zeroth");
    assert_eq!(s.next("ch").await, 1);
    assert_eq!(s.post("/ch/9007199254740990", b"max").await.status, 200);
    assert_eq!(s.get("/ch/9007199254740990").await.body, b"max");
    assert_eq!(s.delete("/ch/9007199254740990").await.status, 200);
    // ...and the sweeper still runs.
    eventually("the idle channel is swept", || {
        s.server.channel("ch").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_seq_with_autocreate_creates_nothing() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/newname/abc", b"x").await.status, 400);
    assert!(s.server.channel("newname").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_percent_decoded_and_validated() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/a%2Fb/0", b"slash").await.status, 200);
    assert!(s.server.channel("a/b").is_some());
    assert_eq!(s.get("/a%2Fb/0").await.body, b"slash");
    assert_eq!(s.post("/sp%20ace/0", b"x").await.status, 200);
    assert!(s.server.channel("sp ace").is_some());

    for bad in ["/bad%FF/0", "/ctl%0A/0", "/nul%00/0"] {
        let r = s.post(bad, b"x").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "Invalid channel name\n"),
            "{bad}"
        );
        assert_eq!(s.get(bad).await.status, 400, "{bad}");
    }
    let long = format!("/{}/0", "n".repeat(257));
    assert_eq!(s.post(&long, b"x").await.status, 400);
    let ok = format!("/{}/0", "n".repeat(256));
    assert_eq!(s.post(&ok, b"x").await.status, 200);
    assert_eq!(s.server.channel_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_names_cannot_be_written_or_deleted() {
    let s = TestServer::start().await;
    for (method, path) in [
        ("POST", "/_x/0"),
        ("POST", "/_x"),
        ("DELETE", "/_x"),
        ("DELETE", "/_x/0"),
    ] {
        let r = s.request(method, path, b"").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (403, "Reserved channel name\n"),
            "{method} {path}"
        );
    }
    assert_eq!(s.get("/_x/0").await.status, 404);
    assert_eq!(s.server.channel_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests() {
    let s = TestServer::start().await;
    s.post("/ch/0", b"hello").await;
    let r = s.request("HEAD", "/ch/next", b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1"));
    assert_eq!(r.latest(), Some(1));
    let r = s.request("HEAD", "/ch/0", b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seq(), Some(0));
    assert_eq!(r.header("lp-trickle-size"), Some("5"));
    assert!(r.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_path_prefixes_every_route() {
    let s = TestServer::with_config(Config {
        base_path: "/ai/trickle".into(),
        ..Config::default()
    })
    .await;
    assert_eq!(s.post("/ai/trickle/ch/0", b"hi").await.status, 200);
    assert_eq!(s.get("/ai/trickle/ch/0").await.body, b"hi");
    assert_eq!(s.get("/ai/trickle/ch/next").await.text(), "1");
    assert_eq!(s.get("/ch/0").await.status, 404);
    assert_eq!(s.delete("/ai/trickle/ch").await.status, 200);
}
