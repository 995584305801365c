//! Faults, on purpose, over real sockets: a publisher process killed mid-segment, subscribers
//! killed while reading and while waiting, slowloris headers, garbage bytes, 10,000 connections
//! and every limit of docs/PROTOCOL.md's "Limits with clear errors" exceeded once (10,000
//! abandoned connections: `tests/connections.rs`). Each time the server must give the documented
//! answer, return to its baseline (metrics, memory) and keep serving everybody else.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{PATIENCE, Raw, TestServer, eventually, trickle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use trickle::Config;
use trickle::client::{ClientError, SubscribeStart, Subscriber, SubscriberOptions};

fn sigkill(child: &tokio::process::Child) {
    // SAFETY: kill only sends a signal to a child we own.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGKILL) };
}

/// A normal publish and read on a fresh channel: the server still serves.
async fn still_serving(s: &TestServer, channel: &str) {
    assert_eq!(s.post(&format!("/{channel}/0"), b"alive").await.status, 200);
    assert_eq!(s.get(&format!("/{channel}/0")).await.text(), "alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_killed_mid_segment_fails_it_and_the_channel_goes_on() {
    let s = TestServer::start().await;
    s.post("/live", b"").await;
    let url = s.url("/live");
    let mut subscriber = Subscriber::new(
        &url,
        SubscriberOptions {
            start: SubscribeStart::Seq(0),
            ..Default::default()
        },
    )
    .unwrap();
    let mut publisher = trickle()
        .args(["publish", &url, "--segment-bytes", "1MiB"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(&[7u8; 5000]).await.unwrap();
    stdin.flush().await.unwrap();

    let mut segment = subscriber.next_segment().await.unwrap().unwrap();
    assert_eq!(segment.seq, 0);
    let mut received = 0;
    while received < 5000 {
        received += segment.chunk().await.unwrap().unwrap().len();
    }
    sigkill(&publisher);
    let end = tokio::time::timeout(PATIENCE, segment.chunk())
        .await
        .unwrap();
    assert!(
        matches!(
            end,
            Err(ClientError::SegmentFailed {
                seq: 0,
                bytes: 5000
            })
        ),
        "{end:?}"
    );
    eventually("the segment failed", || {
        s.server.metrics().segments_failed == 1
    })
    .await;

    // The next publisher goes on with seq 1, and the same subscriber reads it.
    assert_eq!(s.post("/live/1", b"next").await.status, 200);
    let next = subscriber.next_segment().await.unwrap().unwrap();
    assert_eq!(next.seq, 1);
    assert_eq!(next.read_to_end().await.unwrap(), b"next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_killed_reading_or_waiting_leave_nothing_behind() {
    let s = TestServer::start().await;
    let mut writer = Raw::connect(s.addr).await;
    writer.start_post("/ch/0").await;
    writer.chunk(&[1u8; 100_000]).await;
    // The POST makes the channel; a GET that overtook it would get 404.
    eventually("seq 0 is being written", || {
        s.server.stats().writing_posts == 1
    })
    .await;

    // Raw readers in the middle of seq 0, raw waiters on seq 1, and two `trickle subscribe`
    // processes, all killed at once.
    let mut readers = Vec::new();
    for i in 0..40 {
        let mut raw = Raw::connect(s.addr).await;
        let path = if i % 2 == 0 { "/ch/0" } else { "/ch/1" };
        raw.send_request("GET", path, &[], Some(b"")).await;
        readers.push(raw);
    }
    let mut processes = Vec::new();
    for _ in 0..2 {
        processes.push(
            trickle()
                .args(["subscribe", &s.url("/ch"), "--start", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    eventually("everybody is connected", || {
        let stats = s.server.metrics().stats;
        stats.streaming_gets >= 22 && stats.waiting_gets >= 20
    })
    .await;
    drop(readers);
    for process in &processes {
        sigkill(process);
    }
    eventually("only the publisher is left", || {
        let stats = s.server.metrics().stats;
        stats.streaming_gets == 0 && stats.waiting_gets == 0 && stats.writing_posts == 1
    })
    .await;
    writer.chunk(b"more").await;
    writer.end_body().await;
    assert_eq!(writer.head().await.status, 200);
    eventually("back to the baseline", || {
        s.server.metrics().stats == Default::default()
    })
    .await;
    still_serving(&s, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_and_others_are_served_meanwhile() {
    let s = TestServer::with_config(Config {
        header_timeout: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let request = b"GET /ch/0 HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n";
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        for byte in request {
            if slow.write_all(&[*byte]).await.is_err() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    });
    // While the slow client trickles its headers, others are served.
    still_serving(&s, "meanwhile").await;
    let cut_after = tokio::time::timeout(PATIENCE, sender)
        .await
        .expect("the slow client was cut off")
        .unwrap()
        .expect("the connection closed before the headers were complete");
    assert!(cut_after < Duration::from_secs(5), "{cut_after:?}");
    still_serving(&s, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_400_and_a_closed_connection() {
    let s = TestServer::start().await;
    for garbage in [
        &b"\x00\x01\x02 not http at all\r\n\r\n"[..],
        b"GET /ch/0 HTTP/9.9\r\n\r\n",
        b"GET\r\n\r\n",
        b"POST /ch/0 HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    ] {
        let mut raw = s.connect().await;
        raw.send_raw(garbage).await;
        let head = raw.head().await;
        assert_eq!(head.status, 400, "{:?}", String::from_utf8_lossy(garbage));
        assert!(raw.closed_within(PATIENCE).await);
    }
    still_serving(&s, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_once_then_business_as_usual() {
    let s = TestServer::with_config(Config {
        max_channels: 3,
        max_name_bytes: 16,
        max_segment_bytes: 1000,
        wait_timeout: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    // Name too long.
    let r = s.post(&format!("/{}/0", "n".repeat(17)), b"x").await;
    assert_eq!((r.status, r.text().trim()), (400, "Invalid channel name"));
    // Reserved name.
    assert_eq!(s.post("/_changes/0", b"x").await.status, 403);
    // Too many channels.
    for name in ["a", "b", "c"] {
        assert_eq!(s.post(&format!("/{name}"), b"").await.status, 200);
    }
    let r = s.post("/d", b"").await;
    assert_eq!((r.status, r.text().trim()), (503, "Too many channels"));
    assert!(s.server.channel("d").is_none());
    // Segment too large: 413, and its reader sees an abnormal end.
    let mut reader = s.connect().await;
    reader.send_request("GET", "/a/0", &[], Some(b"")).await;
    let mut big = s.connect().await;
    big.start_post("/a/0").await;
    big.chunk(&[0u8; 600]).await;
    let head = reader.head().await;
    assert_eq!(head.status, 200);
    let _ = big.try_chunk(&[0u8; 600]).await;
    assert_eq!(big.head().await.status, 413);
    assert!(reader.body_to_end(&head).await.is_err());
    // Waits: a GET and a POST with no data get 408.
    let r = s.get("/b/0").await;
    assert_eq!(r.status, 408);
    assert!(r.header("lp-trickle-latest").is_some());
    let mut idle = s.connect().await;
    idle.start_post("/b/0").await;
    assert_eq!(idle.head().await.status, 408);
    // Business as usual.
    assert_eq!(s.post("/c/0", b"fine").await.status, 200);
    assert_eq!(s.get("/c/0").await.text(), "fine");
    eventually("no request left", || {
        s.server.metrics().stats == Default::default()
    })
    .await;
}
