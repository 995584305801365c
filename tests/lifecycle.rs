//! Channel lifecycle: idle sweep, changefeed, server stop — the last one with the real
//! `trickle serve` binary and real signals.

mod common;

use std::time::Duration;

use common::*;
use trickle::Config;

fn sweepy() -> Config {
    Config {
        idle_timeout: Duration::from_millis(200),
        sweep_interval: Duration::from_millis(50),
        changefeed: true,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s35_idle_sweep_counts_every_byte() {
    let s = TestServer::with_config(sweepy()).await;
    s.post("/unused", b"").await;
    s.post("/waited-on", b"").await;
    let mut waiter = s.connect().await;
    waiter
        .send_request("GET", "/waited-on/-1", &[], Some(b""))
        .await;

    // One long segment with a byte every 100 ms keeps its channel alive.
    let mut publisher = s.connect().await;
    publisher.start_post("/busy/0").await;
    let started = tokio::time::Instant::now();
    let mut swept_unused_at = None;
    while started.elapsed() < Duration::from_millis(1200) {
        publisher.chunk(b".").await;
        if swept_unused_at.is_none() && s.server.channel("unused").is_none() {
            swept_unused_at = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let swept = swept_unused_at.expect("the unused channel was swept");
    assert!(swept < Duration::from_secs(1), "swept after {swept:?}");
    assert!(
        s.server.channel("busy").is_some(),
        "a channel receiving bytes was swept"
    );
    assert!(s.server.channel("_changes").is_some(), "_changes was swept");

    let head = waiter.head().await;
    assert_eq!(head.status, 200);
    assert!(head.header("lp-trickle-closed").is_some());

    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
    assert_eq!(s.get("/busy/0").await.body.len(), 12);
}

/// Reads changefeed events from seq 0 on until `count` are collected.
async fn events(s: &TestServer, count: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for seq in 0..count {
        // The feed writes events as it hears of them, a moment after they happen: a GET of the
        // seq after its write head would be a 470.
        eventually("the feed catching up", || {
            s.server.channel("_changes").unwrap().next_write() >= seq as u64
        })
        .await;
        let r = s.get(&format!("/_changes/{seq}")).await;
        assert_eq!(r.status, 200, "event {seq}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        out.push(serde_json::from_slice(&r.body).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s36_changefeed() {
    let s = TestServer::with_config(Config {
        changefeed: true,
        ..Config::default()
    })
    .await;
    let r = s.get("/_changes/0").await;
    assert_eq!(r.text(), r#"{"added":["_changes"]}"#);
    s.post("/auto", b"").await;
    s.delete("/auto").await;
    s.post("/bypost/0", b"x").await;
    let evs = events(&s, 4).await;
    assert_eq!(evs[1], serde_json::json!({"added": ["auto"]}));
    assert_eq!(evs[2], serde_json::json!({"removed": ["auto"]}));
    assert_eq!(evs[3], serde_json::json!({"added": ["bypost"]}));
    assert_eq!(s.post("/_changes/9", b"x").await.status, 403);
    assert_eq!(s.delete("/_changes").await.status, 403);
    assert_eq!(s.delete("/_changes/0").await.status, 403);

    // A live subscriber at -1 sees the next event as it happens.
    let mut sub = s.connect().await;
    sub.send_request("GET", "/_changes/-1", &[], Some(b""))
        .await;
    eventually("the changefeed GET waits", || {
        s.server.stats().waiting_gets == 1
    })
    .await;
    s.post("/later", b"").await;
    let head = sub.head().await;
    assert_eq!(
        sub.body_to_end(&head).await.unwrap(),
        br#"{"added":["later"]}"#
    );

    let without = TestServer::start().await;
    assert_eq!(without.get("/_changes/0").await.status, 404);
}

/// More channel events at once than the server's event broadcast keeps for a slow listener
/// (4,096), all made before the `_changes` writer gets to run (here a current-thread runtime that
/// does not yield in between; on a busy server, a task that waits its turn): the feed still
/// writes every one of them, in order, as it did when it was written by whoever made the event.
#[tokio::test]
async fn changefeed_writes_every_event_of_a_burst() {
    const BURST: u64 = 5000;
    let server = trickle::Server::new(Config {
        changefeed: true,
        ..Config::default()
    });
    for n in 0..BURST {
        server.create_channel(&format!("c{n}"), "").await.unwrap();
    }
    let feed = server.channel("_changes").unwrap();
    eventually("every creation written", || feed.next_write() == BURST + 1).await;
    let mut last = trickle::local::LocalSubscriber::new(&server, "_changes");
    last.set_seq(BURST as i64);
    let mut segment = last.read().unwrap();
    assert_eq!(
        segment.read_to_end().await.unwrap(),
        format!(r#"{{"added":["c{}"]}}"#, BURST - 1).as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s36_sweeper_emits_removed() {
    let s = TestServer::with_config(sweepy()).await;
    s.post("/idle", b"").await;
    eventually("swept", || s.server.channel("idle").is_none()).await;
    let evs = events(&s, 3).await;
    assert_eq!(evs[2], serde_json::json!({"removed": ["idle"]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s38_server_stop_answers_everyone_with_eos() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let (mut child, addr) = spawn_serve(&["--listen", "127.0.0.1:0"], &[]).await;
        let addr = addr.parse().unwrap();
        let mut create = Raw::connect(addr).await;
        create.send_request("POST", "/ch", &[], Some(b"")).await;
        assert_eq!(create.head().await.status, 200);
        let mut waiting = Raw::connect(addr).await;
        waiting.send_request("GET", "/ch/-1", &[], Some(b"")).await;
        let mut preconnect = Raw::connect(addr).await;
        preconnect.start_post("/ch/1").await;
        tokio::time::sleep(QUIET).await;

        unsafe { libc::kill(child.id().unwrap() as i32, signal) };

        let head = waiting.head().await;
        assert!(head.header("lp-trickle-closed").is_some());
        let head = preconnect.head().await;
        assert!(head.header("lp-trickle-closed").is_some());
        let status = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(0), "exit status after signal {signal}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_flags_come_from_the_environment_too() {
    let (_child, addr) = spawn_serve(
        &[],
        &[
            ("TRICKLE_LISTEN", "127.0.0.1:0"),
            ("TRICKLE_BASE_PATH", "/live/"),
            ("TRICKLE_NO_AUTOCREATE", "true"),
            ("TRICKLE_MAX_SEGMENT_BYTES", "1KiB"),
        ],
    )
    .await;
    let addr = addr.parse().unwrap();
    let mut raw = Raw::connect(addr).await;
    raw.send_request("POST", "/live/ch/0", &[], Some(b"x"))
        .await;
    assert_eq!(raw.head().await.status, 404);

    let (_child, addr) = spawn_serve(
        &["--listen", "127.0.0.1:0", "--max-segment-bytes", "1KiB"],
        &[],
    )
    .await;
    let mut raw = Raw::connect(addr.parse().unwrap()).await;
    raw.send_request("POST", "/ch/0", &[], Some(&[0u8; 1025]))
        .await;
    assert_eq!(raw.head().await.status, 413);
}

/// The threads of a process (`Threads:` in /proc/PID/status).
fn threads_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_sets_the_worker_threads() {
    for (threads, from_env) in [("1", false), ("6", true)] {
        let (args, env) = if from_env {
            (
                vec!["--listen", "127.0.0.1:0"],
                vec![("TRICKLE_THREADS", threads)],
            )
        } else {
            (
                vec!["--listen", "127.0.0.1:0", "--threads", threads],
                vec![],
            )
        };
        let (child, addr) = spawn_serve(&args, &env).await;
        let mut raw = Raw::connect(addr.parse().unwrap()).await;
        raw.send_request("POST", "/ch/0", &[], Some(b"x")).await;
        assert_eq!(raw.head().await.status, 200);
        // The workers plus the main thread; blocking-pool threads only come when used.
        let workers = threads_of(child.id().unwrap()) - 1;
        assert_eq!(workers.to_string(), threads, "--threads {threads}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reports_bad_flags_in_one_line() {
    for (args, expected) in [
        (
            vec!["--listen", "not-an-address"],
            "cannot listen on not-an-address",
        ),
        (vec!["--idle-timeout", "soon"], "invalid duration"),
        (vec!["--max-segment-bytes", "12 parsecs"], "unknown unit"),
        (vec!["--ring", "0"], "--ring"),
        (vec!["--threads", "0"], "--threads"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle"))
            .arg("serve")
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
