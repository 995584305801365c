//! 10,000 connections opened against `trickle serve` and abandoned: the server gives the memory
//! back and keeps serving. A test binary of its own, so that its load (10,000 connects on a 2-core
//! machine) does not slow the timing-sensitive fault tests that would otherwise run beside it.

mod common;

use std::time::{Duration, Instant};

use common::{Raw, spawn_serve};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Raises this process's open-files limit to its hard limit.
fn raise_open_files() -> u64 {
    trickle::cli::raise_open_files_limit(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_abandoned_connections_give_their_memory_back() {
    let limit = raise_open_files();
    let count: usize = 10_000.min(limit.saturating_sub(200) as usize);
    assert!(
        count >= 10_000 || std::env::var("CI").is_err(),
        "open files limit {limit}"
    );
    let (server, addr) = spawn_serve(&["--listen", "127.0.0.1:0"], &[]).await;
    let pid = server.id().unwrap();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    // Warm up: one channel, one segment, read once.
    let mut raw = Raw::connect(addr).await;
    raw.send_request("POST", "/ch/0", &[], Some(b"warm")).await;
    assert_eq!(raw.head().await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = common::rss_of(pid);

    // A third idle, a third with half a request, a third waiting for the next segment.
    let mut connections = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        match i % 3 {
            0 => {}
            1 => stream.write_all(b"GET /ch/1 HTT").await.unwrap(),
            _ => stream
                .write_all(b"GET /ch/1 HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap(),
        }
        connections.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = common::rss_of(pid);
    drop(connections);

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = common::rss_of(pid);
    while after > baseline + 16 * 1024 * 1024 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = common::rss_of(pid);
    }
    println!(
        "RSS: baseline {} KiB, with {count} connections {} KiB, after {} KiB",
        baseline / 1024,
        loaded / 1024,
        after / 1024
    );
    assert!(loaded > baseline, "the connections cost nothing?");
    assert!(
        after <= baseline + 16 * 1024 * 1024,
        "RSS stayed at {} KiB (baseline {} KiB)",
        after / 1024,
        baseline / 1024
    );
    // And it still serves.
    let mut raw = Raw::connect(addr).await;
    raw.send_request("GET", "/ch/0", &[], Some(b"")).await;
    assert_eq!(raw.head().await.status, 200);
}
