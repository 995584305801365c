//! The lean HTTP/1.1 front (`src/server/http1/`) over raw sockets: bodiless GETs and DELETEs are
//! answered by it (subscribers' and LL-HLS players' plain GETs without the router, with the
//! router's answers), everything else is handed to hyper mid-connection with the bytes already
//! read, and a client that goes away ends its request.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_gets_then_is_handed_to_hyper_for_a_post() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    let mut raw = s.connect().await;
    for _ in 0..2 {
        raw.send_request("GET", "/ch/0", &[], Some(b"")).await;
        let head = raw.head().await;
        assert_eq!(head.status, 200);
        assert!(head.chunked());
        assert_eq!(head.header("lp-trickle-seq"), Some("0"));
        let date = httpdate::parse_http_date(head.header("date").unwrap()).unwrap();
        let age = std::time::SystemTime::now().duration_since(date).unwrap();
        assert!(age < std::time::Duration::from_secs(5), "{age:?}");
        assert_eq!(raw.body_to_end(&head).await.unwrap(), b"zero");
    }
    // A body: hyper takes over this connection and answers from then on.
    raw.send_request("POST", "/ch/1", &[], Some(b"one")).await;
    assert_eq!(raw.head().await.status, 200);
    raw.send_request("GET", "/ch/1", &[], Some(b"")).await;
    let head = raw.head().await;
    assert_eq!(raw.body_to_end(&head).await.unwrap(), b"one");
    raw.send_request("DELETE", "/ch", &[], Some(b"")).await;
    assert_eq!(raw.head().await.status, 200);
    assert!(s.server.channel("ch").is_none());
}

/// A subscriber's plain GET is answered by the front itself, without the router or a header map;
/// the same GET with a query goes through the router. Both must give the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_gets_the_front_answers_itself_match_the_routers_answers() {
    let s = TestServer::start().await;
    let typed = [("Content-Type", "video/mp2t")];
    assert_eq!(
        s.request_with("POST", "/ch/0", &typed, b"zero")
            .await
            .status,
        200
    );
    assert_eq!(s.post("/ch/1", b"").await.status, 200);
    assert_eq!(s.post("/ch/2", b"two").await.status, 200);
    let mut statuses = Vec::new();
    for path in ["/ch/0", "/ch/1", "/ch/2", "/ch/next", "/ch/x", "/nope/0"] {
        let direct = s.get(path).await;
        let routed = s.get(&format!("{path}?via=router")).await;
        let without_date = |r: &Response| {
            let mut headers = r.headers.clone();
            headers.remove("date");
            headers
        };
        assert_eq!(direct.status, routed.status, "{path}");
        assert_eq!(without_date(&direct), without_date(&routed), "{path}");
        assert_eq!(direct.body, routed.body, "{path}");
        statuses.push(direct.status);
    }
    // The cases above are the ones meant: two streamed segments, an empty one, the write head,
    // a malformed seq, a missing channel.
    assert_eq!(statuses, [200, 200, 200, 200, 400, 404]);
    let first = s.get("/ch/0").await;
    assert_eq!(first.header("content-type"), Some("video/mp2t"));
    assert_eq!(first.header("lp-trickle-seq"), Some("0"));
    assert_eq!(first.header("lp-trickle-latest"), Some("3"));
    assert_eq!(first.header("lp-trickle-size"), Some("4"));
    assert_eq!(first.header("transfer-encoding"), Some("chunked"));
}

/// An LL-HLS player's GETs without a query are answered by the front itself too, by the router's
/// handler: the same answers as through the router (the same GET with a query), and their `404`s
/// counted as the router counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_player_gets_the_front_answers_itself_match_the_routers_answers() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let s = video::mpegts_server().await;
    let _publisher = video::publish(&s.url("/cam"), "h264", 20, "");
    // Until the playlist lists a complete segment, with its parts.
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    let segment = loop {
        let answer = s.get("/cam/ll.m3u8").await;
        if answer.status == 200
            && let Some(segment) = hls::parse(&answer.text()).segments.into_iter().next()
            && !segment.parts.is_empty()
        {
            break segment;
        }
        assert!(tokio::time::Instant::now() < deadline, "no segment listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let seq = segment.msn;
    let before = s.server.metrics().responses_404;
    let paths = [
        format!("/cam/{seq}.m4s"),
        format!("/cam/{}", segment.parts[0].uri),
        "/cam/init.mp4".to_string(),
        "/cam/99999.1.m4s".to_string(),
        "/nope/1.0.m4s".to_string(),
    ];
    let mut statuses = Vec::new();
    for path in &paths {
        let direct = s.get(path).await;
        let routed = s.get(&format!("{path}?via=router")).await;
        let without_date = |r: &Response| {
            let mut headers = r.headers.clone();
            headers.remove("date");
            headers
        };
        assert_eq!(direct.status, routed.status, "{path}");
        assert_eq!(without_date(&direct), without_date(&routed), "{path}");
        assert_eq!(direct.body, routed.body, "{path}");
        statuses.push(direct.status);
    }
    assert_eq!(statuses, [200, 200, 200, 404, 404]);
    assert_eq!(s.server.metrics().responses_404, before + 4);
    // The playlist changes with every part: the same kind of answer both ways.
    let direct = s.get("/cam/ll.m3u8").await;
    let routed = s.get("/cam/ll.m3u8?via=router").await;
    assert_eq!((direct.status, routed.status), (200, 200));
    let kind = |r: &Response| r.header("content-type").map(str::to_string);
    assert_eq!(kind(&direct), kind(&routed));
    assert_eq!(
        kind(&direct).as_deref(),
        Some("application/vnd.apple.mpegurl")
    );
}

/// A channel made in process may be given a MIME type that is no header value: it goes out empty,
/// both ways, and cannot smuggle a header in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mime_type_that_is_no_header_value_goes_out_empty() {
    let s = TestServer::start().await;
    s.server
        .create_channel("odd", "text/plain\r\nx-smuggled: 1")
        .await
        .unwrap();
    assert_eq!(s.post("/odd/0", b"zero").await.status, 200);
    for path in ["/odd/0", "/odd/0?via=router"] {
        let r = s.get(path).await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"zero"[..]), "{path}");
        assert_eq!(r.header("content-type"), Some(""), "{path}");
        assert_eq!(r.header("x-smuggled"), None, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_across_the_hand_over() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    let mut raw = s.connect().await;
    raw.send_raw(
        b"GET /ch/0 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /ch/next HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /ch/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none\
          GET /ch/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let head = raw.head().await;
    assert_eq!(raw.body_to_end(&head).await.unwrap(), b"zero");
    let head = raw.head().await;
    assert_eq!(raw.body_to_end(&head).await.unwrap(), b"1");
    let head = raw.head().await;
    assert_eq!(head.status, 200);
    raw.body_to_end(&head).await.unwrap();
    let head = raw.head().await;
    assert_eq!(raw.body_to_end(&head).await.unwrap(), b"one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_and_http_1_0_are_honoured() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    let mut raw = s.connect().await;
    raw.send_request("GET", "/ch/0", &[("Connection", "close")], Some(b""))
        .await;
    let head = raw.head().await;
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(raw.body_to_end(&head).await.unwrap(), b"zero");
    assert!(raw.closed_within(PATIENCE).await);

    // HTTP/1.0 has no chunked encoding: hyper answers it, delimited by the close.
    let mut raw = s.connect().await;
    raw.send_raw(b"GET /ch/0 HTTP/1.0\r\n\r\n").await;
    let head = raw.head().await;
    assert_eq!(head.status, 200);
    assert!(!head.chunked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_too_long_for_the_front_still_gets_an_answer() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    let mut raw = s.connect().await;
    let filler = "x".repeat(20_000);
    raw.send_request("GET", "/ch/0", &[("X-Filler", &filler)], Some(b""))
        .await;
    let head = raw.head().await;
    assert_eq!(raw.body_to_end(&head).await.unwrap(), b"zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_segment_arrives_as_written_and_a_closed_client_ends_its_get() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch", b"").await.status, 200);
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    publisher.chunk(b"first").await;
    let mut raw = s.connect().await;
    raw.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let head = raw.head().await;
    assert_eq!(raw.body_chunk(&head).await.unwrap().unwrap(), b"first");
    publisher.chunk(b"second").await;
    assert_eq!(raw.body_chunk(&head).await.unwrap().unwrap(), b"second");

    // One GET streaming, one waiting for seq 1: both end when their clients close, with no
    // byte due to either of them.
    let mut waiting = TcpStream::connect(s.addr).await.unwrap();
    waiting
        .write_all(b"GET /ch/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    eventually("one GET waits, one streams", || {
        let stats = s.server.stats();
        stats.waiting_gets == 1 && stats.streaming_gets == 1
    })
    .await;
    drop(waiting);
    drop(raw);
    eventually("both GETs ended", || {
        let stats = s.server.stats();
        stats.waiting_gets == 0 && stats.streaming_gets == 0
    })
    .await;
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_when_the_client_half_closes_after_them() {
    use tokio::io::AsyncReadExt;
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(
            b"GET /ch/0 HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /ch/next HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut answers = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answers))
        .await
        .expect("answered and closed")
        .unwrap();
    let answers = String::from_utf8_lossy(&answers);
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "{answers}");
    assert!(answers.contains("zero"), "{answers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_preface_after_http1_answers_is_not_taken_for_http2() {
    use tokio::io::AsyncReadExt;
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"GET /ch/0 HTTP/1.1\r\nHost: x\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answers = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answers))
        .await
        .expect("the connection ends")
        .unwrap();
    // The GET's answer, then HTTP/1.1's refusal of the preface (never an HTTP/2 SETTINGS frame).
    let first_end = answers
        .windows(5)
        .position(|w| w == b"0\r\n\r\n")
        .expect("the GET's answer")
        + 5;
    let rest = &answers[first_end..];
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(rest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let s = TestServer::with_config(trickle::Config {
        header_timeout: Duration::from_millis(300),
        ..trickle::Config::default()
    })
    .await;
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    let mut raw = s.connect().await;
    raw.send_request("GET", "/ch/0", &[], Some(b"")).await;
    let head = raw.head().await;
    assert_eq!(raw.body_to_end(&head).await.unwrap(), b"zero");
    assert!(raw.closed_within(Duration::from_secs(3)).await);
    // A connection that never sends a byte goes the same way.
    let mut silent = s.connect().await;
    assert!(silent.closed_within(Duration::from_secs(3)).await);
}

/// A `Content-Length` too large for hyper to represent (it would answer 431, "header fields too
/// large") is a body too large for this server: 413 with the limit, and the connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_beyond_any_body_is_413_not_431() {
    let s = TestServer::start().await;
    for (method, length) in [
        ("POST", "18446744073709551615"),
        ("POST", "18446744073709551614"),
        ("POST", "99999999999999999999999"),
        ("GET", "18446744073709551615"),
    ] {
        let mut raw = s.connect().await;
        let head =
            format!("{method} /ch/0 HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n");
        raw.send_raw(head.as_bytes()).await;
        let head = raw.head().await;
        assert_eq!(head.status, 413, "{method} with {length}");
        assert_eq!(head.header("connection"), Some("close"));
        assert_eq!(
            raw.body_to_end(&head).await.unwrap(),
            b"Segment larger than 67108864 bytes\n"
        );
        assert!(raw.closed_within(PATIENCE).await);
    }
    assert!(s.server.channel("ch").is_none());
    // Not a number at all is still hyper's 400.
    let mut raw = s.connect().await;
    raw.send_raw(b"POST /ch/0 HTTP/1.1\r\nHost: t\r\nContent-Length: 12a\r\n\r\n")
        .await;
    assert_eq!(raw.head().await.status, 400);
}
