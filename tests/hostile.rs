//! What a hostile (or broken) client used to get away with, over real sockets: connections it
//! closed that the server never noticed, HTTP/2 connections that were never timed out, POSTs lost
//! to a half-close, readers that never read, and a metrics port anyone could fill. Each test failed
//! before its fix.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{PATIENCE, Raw, TestServer, eventually, h2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trickle::Config;

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    f(&mut config);
    config
}

/// Reads until the server closes the connection; the bytes it sent. Fails after [`PATIENCE`].
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server closes the connection in time");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_gets_whose_clients_closed_after_sending_more_are_released() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/w/0", b"zero").await.status, 200);
    // The attack: a waiting GET, one byte more, then close. Before, the front stopped reading
    // at the extra byte and never saw the close: every one of these held its descriptor.
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream
            .write_all(b"GET /w/-1 HTTP/1.1\r\nHost: x\r\n\r\nX")
            .await
            .unwrap();
        clients.push(stream);
    }
    eventually("200 GETs wait", || s.server.stats().waiting_gets == 200).await;
    drop(clients);
    eventually("every waiting GET released", || {
        s.server.stats().waiting_gets == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_get_on_a_connection_hyper_serves_is_released_when_its_client_closes() {
    let s = TestServer::start().await;
    // A POST first: the connection is hyper's from then on (HTTP/1.1 with half-close allowed,
    // where hyper itself reads nothing while a request waits).
    let mut raw = s.connect().await;
    raw.send_request("POST", "/w/0", &[], Some(b"zero")).await;
    assert_eq!(raw.head().await.status, 200);
    raw.send_request("GET", "/w/-1", &[], Some(b"")).await;
    eventually("the GET waits", || s.server.stats().waiting_gets == 1).await;
    drop(raw);
    eventually("the waiting GET released", || {
        s.server.stats().waiting_gets == 0
    })
    .await;
    // The server still serves the channel.
    assert_eq!(s.get("/w/0").await.body, b"zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_too_much_ahead_of_a_waiting_get_is_cut_off() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/w/0", b"zero").await.status, 200);
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"GET /w/-1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    eventually("the GET waits", || s.server.stats().waiting_gets == 1).await;
    // Far more than any pipelining client sends ahead of an answer.
    let _ = stream.write_all(&[b'G'; 64 * 1024]).await;
    let answer = until_closed(&mut stream).await;
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    eventually("the GET released", || s.server.stats().waiting_gets == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_client_half_closes_after_a_complete_body_is_kept_and_answered() {
    let s = TestServer::start().await;
    let mut sent = 0;
    for (i, chunked) in [(0, false), (1, true), (2, false), (3, true)] {
        // A new channel each time: the POST creates it.
        let path = format!("/half{i}/0");
        let body = format!("segment {i}");
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let request = if chunked {
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
        } else {
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let answer = String::from_utf8(until_closed(&mut stream).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("lp-trickle-seq: 0\r\n"), "{answer}");
        assert_eq!(s.get(&path).await.body, body.as_bytes());
        sent += 1;
    }
    let m = s.server.metrics();
    assert_eq!((m.segments_started, m.segments_completed), (sent, sent));
    assert_eq!(m.segments_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_with_a_goaway() {
    let s =
        TestServer::with_config(config(|c| c.header_timeout = Duration::from_millis(300))).await;
    // A live client (it answers pings) that opens no stream.
    let mut idle = h2::connect(s.addr).await;
    let frames = h2::kinds(&h2::until_closed_answering_pings(&mut idle).await);
    assert!(frames.contains(&h2::GOAWAY), "frames {frames:?}");

    // Half a header block (no END_HEADERS, no CONTINUATION ever): no request starts, so the
    // connection is idle, asked to close, and dropped when the client does not.
    let mut half = h2::connect(s.addr).await;
    let block = h2::request("GET", "/ch/0");
    half.write_all(&h2::frame(h2::HEADERS, 0, 1, &block))
        .await
        .unwrap();
    h2::until_closed_answering_pings(&mut half).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_http2_connection_whose_peer_never_answers_pings_is_closed() {
    let s =
        TestServer::with_config(config(|c| c.header_timeout = Duration::from_millis(300))).await;
    let mut silent = h2::connect(s.addr).await;
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    h2::get(&mut silent, 1, "/ch/-1").await;
    eventually("the h2 GET waits", || s.server.stats().waiting_gets == 1).await;
    // The client reads nothing and answers no ping: the server gives up on it.
    eventually("the GET released with its connection", || {
        s.server.stats().waiting_gets == 0
    })
    .await;
    until_closed(&mut silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_whose_http2_stream_is_reset_mid_body_counts_as_failed() {
    let s = TestServer::start().await;
    let mut publisher = h2::connect(s.addr).await;
    let block = h2::request("POST", "/ch/0");
    publisher
        .write_all(&h2::frame(h2::HEADERS, h2::END_HEADERS, 1, &block))
        .await
        .unwrap();
    publisher
        .write_all(&h2::frame(h2::DATA, 0, 1, b"half a segment"))
        .await
        .unwrap();
    eventually("the segment started", || {
        s.server.metrics().segments_started == 1
    })
    .await;
    let cancel = 8u32.to_be_bytes(); // CANCEL
    publisher
        .write_all(&h2::frame(h2::RST_STREAM, 0, 1, &cancel))
        .await
        .unwrap();
    eventually("the segment counted as failed", || {
        s.server.metrics().segments_failed == 1
    })
    .await;
    assert_eq!(s.server.metrics().segments_completed, 0);
    assert_eq!(s.get("/ch/0").await.status, 470);
}

/// A subscriber that reads nothing of a segment far larger than the socket buffers.
async fn stalled_reader(s: &TestServer, via_hyper: bool) -> TcpStream {
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    if via_hyper {
        // A POST first, answered: the connection is hyper's from then on.
        stream
            .write_all(b"POST /other/0 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
            .await
            .unwrap();
        let mut head = [0u8; 1024];
        let n = stream.read(&mut head).await.unwrap();
        assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    }
    stream
        .write_all(b"GET /big/0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_takes_nothing_is_cut_off_after_the_send_timeout() {
    let s = TestServer::with_config(config(|c| c.send_timeout = Duration::from_millis(500))).await;
    let big = common::pattern(48 << 20, 1);
    assert_eq!(s.post("/big/0", &big).await.status, 200);
    for via_hyper in [false, true] {
        let mut stalled = stalled_reader(&s, via_hyper).await;
        eventually("the GET streams", || s.server.stats().streaming_gets == 1).await;
        eventually("the stalled GET ended", || {
            s.server.stats().streaming_gets == 0
        })
        .await;
        // What it gets now is a broken response: no final chunk.
        let got = until_closed(&mut stalled).await;
        assert!(got.len() < big.len(), "via hyper: {via_hyper}");
        assert!(!got.ends_with(b"0\r\n\r\n"), "via hyper: {via_hyper}");
    }
    // A reader that keeps up is not disturbed by the timeout.
    assert_eq!(s.get("/big/0").await.body.len(), big.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_reader_that_opens_no_window_is_cut_off_after_the_send_timeout() {
    let s = TestServer::with_config(config(|c| c.send_timeout = Duration::from_millis(500))).await;
    assert_eq!(
        s.post("/big/0", &common::pattern(1 << 20, 2)).await.status,
        200
    );
    // A live client (it answers pings) that never sends a WINDOW_UPDATE: the server sends what
    // the initial window allows, then nothing moves, and the socket is never full.
    let mut reader = h2::connect(s.addr).await;
    h2::get(&mut reader, 1, "/big/0").await;
    eventually("the GET streams", || s.server.stats().streaming_gets == 1).await;
    h2::until_closed_answering_pings(&mut reader).await;
    eventually("the stalled GET ended", || {
        s.server.stats().streaming_gets == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_closes_idle_connections_and_caps_them() {
    let (_server, _addr, log) = common::spawn_serve_with_log(
        &[
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--header-timeout",
            "300ms",
        ],
        &[],
    )
    .await;
    let metrics = common::metrics_addr(&log);
    let cap = trickle::server::MAX_METRICS_CONNECTIONS;
    let mut idle = Vec::new();
    for _ in 0..cap + 4 {
        idle.push(TcpStream::connect(metrics).await.unwrap());
    }
    // Every one of them is closed: the extra ones at once, the rest by the idle limit.
    for stream in &mut idle {
        until_closed(stream).await;
    }
    // And the port still answers.
    let mut raw = Raw::connect(metrics).await;
    raw.send_request("GET", "/metrics", &[], Some(b"")).await;
    let head = raw.head().await;
    assert_eq!(head.status, 200);
    let text = String::from_utf8(raw.body_to_end(&head).await.unwrap()).unwrap();
    assert!(text.contains("trickle_channels"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_logged_once_per_interval_and_recovered_from() {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = common::trickle();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--header-timeout", "1m"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only setrlimit, which is async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next_line().await.unwrap().expect("a ready line");
        if let Some(rest) = line.split("trickle listening on http://").nth(1) {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let failures = || {
        let log = log.lock().unwrap();
        log.iter().filter(|l| l.contains("accept failed")).count()
    };
    // More connections than the server has descriptors: it accepts until it runs out, the rest
    // wait in the backlog, and every accept fails until some close.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    eventually("a failed accept logged", || failures() >= 1).await;
    // Two seconds of failing accepts: one line (before: one every 50 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(failures(), 1, "{:?}", log.lock().unwrap());
    drop(held);
    // It serves again once descriptors are free.
    let mut raw = Raw::connect(addr).await;
    raw.send_request("GET", "/nothing/next", &[], Some(b""))
        .await;
    assert_eq!(raw.head().await.status, 404);
    eventually("the recovery logged", || {
        log.lock().unwrap().iter().any(|l| l.contains("recovered"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_a_connection_hyper_serves_ends_when_its_client_closes_mid_segment() {
    let s = TestServer::start().await;
    let mut publisher = s.connect().await;
    publisher.start_post("/live/0").await;
    publisher.chunk(b"first bytes").await;
    eventually("the segment started", || {
        s.server.stats().writing_posts == 1
    })
    .await;
    // A POST first: the connection is hyper's from then on.
    let mut raw = s.connect().await;
    raw.send_request("POST", "/other/0", &[], Some(b"x")).await;
    assert_eq!(raw.head().await.status, 200);
    raw.send_request("GET", "/live/0", &[], Some(b"")).await;
    let head = raw.head().await;
    assert_eq!(
        raw.body_chunk(&head).await.unwrap().unwrap(),
        b"first bytes"
    );
    // The publisher pauses; the subscriber goes away while its segment waits for bytes.
    drop(raw);
    eventually("the stream ended with its client", || {
        s.server.stats().streaming_gets == 0
    })
    .await;
    publisher.chunk(b" and the rest").await;
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
}
