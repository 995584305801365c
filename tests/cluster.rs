//! Clusters (`--registry`): nodes register the channels published to them in a real Redis and
//! relay from each other the channels they do not hold. The key's TTL never lapses while its
//! channel lives and it goes when the channel ends; a second node cannot publish a registered
//! channel; relayed channels are never registered; with Redis down, local work goes on and
//! lookups are `503`, and once Redis is back every live channel is registered again.
//!
//! redis-server and redis-cli come from `scripts/test.sh`. Without them these tests fail when
//! `CI=true` and are skipped (with a message) elsewhere.

mod common;

use std::time::Duration;

use common::redis::Redis;
use common::*;
use trickle::{Config, Server};

/// How long registrations live in these tests (refreshed every second).
const TTL: Duration = Duration::from_secs(3);

/// A node of the cluster kept in `redis`, called `id`.
async fn node(redis: &Redis, id: &str) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = Server::new(Config {
        registry: Some(redis.url()),
        advertise: Some(url),
        node_id: Some(id.into()),
        registry_ttl: TTL,
        relay_linger: Duration::from_secs(2),
        ..Config::default()
    });
    TestServer::on(listener, server)
}

/// The registration of `channel`: `{node id} {URL}`, or empty.
async fn registered(redis: &Redis, channel: &str) -> String {
    redis
        .cli(&["GET", &format!("trickle:origin:{channel}")])
        .await
}

/// Waits until the registration of `channel` is `value`.
async fn eventually_registered(redis: &Redis, channel: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = registered(redis, channel).await;
        if now == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel}: {now:?}, not {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_is_registered_by_its_origin_and_relayed_by_the_others() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let a_value = format!("a {}", a.url(""));
    let sent = pattern(200_000, 1);
    assert_eq!(
        publish_chunked(&a, "/ch/0", &sent, 10_000).await.status,
        200
    );
    assert_eq!(registered(&redis, "ch").await, a_value);

    // Another node reads it from a: byte for byte, and does not register it.
    let relayed = b.get("/ch/0").await;
    assert_eq!((relayed.status, relayed.body == sent), (200, true));
    assert!(b.server.channel("ch").is_some());

    // Nor may it publish it: a originates it.
    let refused = b.post("/ch/1", b"mine").await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    let taken = b.post("/mine-now", b"").await;
    assert_eq!(taken.status, 200);
    assert_eq!(
        publish_chunked(&b, "/mine-now/0", b"b's", 3).await.status,
        200
    );
    let refused = a.post("/mine-now/1", b"a's").await;
    assert_eq!(refused.status, 409);
    assert_eq!(
        refused.text(),
        format!("Channel is published at {}\n", b.url(""))
    );

    // The TTL is refreshed before it lapses, for as long as the channel lives: watched over
    // more than a TTL.
    let key = "trickle:origin:ch";
    for _ in 0..20 {
        let ttl: i64 = redis.cli(&["PTTL", key]).await.parse().unwrap();
        assert!(ttl > 0, "the registration lapsed: {ttl}");
        assert_eq!(registered(&redis, "ch").await, a_value);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The channel ends at a: its registration goes at once. Nothing is left to find.
    assert_eq!(a.delete("/ch").await.status, 200);
    eventually_registered(&redis, "ch", "").await;
    eventually("b lets its copy go", || b.server.channel("ch").is_none()).await;
    assert_eq!(b.get("/ch/0").await.status, 404);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_local_work_goes_on_and_lookups_are_503_until_it_is_back() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    assert_eq!(
        publish_chunked(&a, "/early/0", b"before", 3).await.status,
        200
    );
    redis.kill().await;

    // Publishing and reading at a: no error.
    for seq in 0..3u64 {
        let body = pattern(10_000, seq);
        let path = format!("/during/{seq}");
        assert_eq!(publish_chunked(&a, &path, &body, 1_000).await.status, 200);
        assert_eq!(a.get(&path).await.body, body);
    }
    // b cannot find it: 503 with Retry-After, not 404.
    let unavailable = b.get("/during/0").await;
    assert_eq!(unavailable.status, 503, "{}", unavailable.text());
    assert_eq!(unavailable.header("retry-after"), Some("1"));

    // Redis comes back empty: within a refresh interval both live channels are registered again.
    redis.restart().await;
    let back = tokio::time::Instant::now();
    let a_value = format!("a {}", a.url(""));
    eventually_registered(&redis, "during", &a_value).await;
    eventually_registered(&redis, "early", &a_value).await;
    // Within one refresh interval (and a lookup's polling and a failed call's deadline).
    let took = back.elapsed();
    assert!(
        took <= TTL / 3 + Duration::from_secs(2),
        "registered again after {took:?}"
    );
    // And b finds it (its negative cache lasts a second).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(b.get("/during/2").await.body, pattern(10_000, 2));
    b.stop().await;
    a.stop().await;
}

/// Publishes `channel` at `node` (an address) from seq 0 on: segments of five 2,000-byte writes
/// 100 ms apart, until `stop`; a segment refused (`409`: still registered elsewhere) or broken
/// off is tried again 100 ms later. Sends the seq of each segment accepted whole.
async fn keep_publishing(
    node: std::net::SocketAddr,
    channel: &str,
    accepted: tokio::sync::mpsc::UnboundedSender<u64>,
) {
    let mut seq = 0u64;
    loop {
        let mut raw = Raw::connect(node).await;
        raw.start_post(&format!("/{channel}/{seq}")).await;
        for piece in 0..5u64 {
            if raw
                .try_chunk(&pattern(2_000, seq * 10 + piece))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = raw.try_chunk(b"").await;
        match raw.head_within(Duration::from_secs(2)).await {
            Some(head) if head.status == 200 => {
                let _ = accepted.send(seq);
                seq += 1;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_an_origin_dies_its_readers_see_it_and_resume_where_the_publisher_goes() {
    failover(Failure::Dies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_an_origin_hangs_its_readers_see_it_once_its_registration_lapses_and_resume() {
    failover(Failure::Hangs).await;
}

/// What `next` gives, within 20 s (a test that waits for what never comes fails, not hangs).
async fn within<T>(next: impl std::future::Future<Output = Option<T>>) -> T {
    let got = tokio::time::timeout(Duration::from_secs(20), next).await;
    got.expect("in time").expect("still sending")
}

/// How the origin fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Killed: its connections are reset.
    Dies,
    /// Stopped (SIGSTOP): its connections stay open, nothing comes; only its registration
    /// lapsing tells.
    Hangs,
}

/// An origin publishing `ch` fails mid-segment while a reader at another node follows it; the
/// publisher then goes to a third node, which it may once the failed one's registration lapsed.
async fn failover(how: Failure) {
    let Some(redis) = Redis::start().await else {
        return;
    };
    // The origin is a process, to be killed; the reader's node and the new origin are not.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a_url = format!("http://127.0.0.1:{port}");
    let ttl = format!("{}s", TTL.as_secs());
    let (mut a, a_addr) = spawn_serve(
        &[
            "--listen",
            &a_url[7..],
            "--registry",
            &redis.url(),
            "--advertise",
            &a_url,
            "--node-id",
            "a",
            "--registry-ttl",
            &ttl,
        ],
        &[],
    )
    .await;
    let (b, c) = (node(&redis, "b").await, node(&redis, "c").await);
    let (sent, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let publisher = tokio::spawn({
        let addr = a_addr.parse().unwrap();
        async move { keep_publishing(addr, "ch", sent).await }
    });
    within(accepted.recv()).await;

    // A reader at b, following the channel with our client.
    let url = b.url("/ch");
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        use trickle::client::{Subscriber, SubscriberOptions};
        let mut subscriber = Subscriber::new(&url, SubscriberOptions::default()).unwrap();
        loop {
            let Ok(Some(mut segment)) = subscriber.next_segment().await else {
                return;
            };
            let whole = loop {
                match segment.chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break true,
                    Err(_) => break false,
                }
            };
            let _ = events.send((segment.seq, whole, tokio::time::Instant::now()));
        }
    });
    let (_, whole, _) = within(seen.recv()).await;
    assert!(whole, "segments come whole through b");

    // The origin fails mid-segment.
    tokio::time::sleep(Duration::from_millis(250)).await;
    match how {
        Failure::Dies => a.kill().await.unwrap(),
        Failure::Hangs => {
            let pid = a.id().unwrap() as i32;
            // SAFETY: a plain signal to our own child process.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        }
    }
    let died = tokio::time::Instant::now();
    publisher.abort();
    let broken = loop {
        let (seq, whole, at) = within(seen.recv()).await;
        if !whole {
            break (seq, at);
        }
    };
    let noticed = broken.1.saturating_duration_since(died);
    let limit = match how {
        Failure::Dies => Duration::from_secs(2),
        // The registration lapses, and the reader's node looks once per refresh interval.
        Failure::Hangs => TTL + TTL / 3 + Duration::from_secs(1),
    };
    assert!(noticed < limit, "the abnormal end came after {noticed:?}");

    // Its registration lapses within the TTL; the publisher starts over at c once it has.
    let (sent, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let moved = tokio::spawn(keep_publishing(c.addr, "ch", sent));
    let first_at_c = within(accepted.recv()).await;
    let accepted_at = tokio::time::Instant::now();
    assert_eq!(first_at_c, 0);
    let lapsed = accepted_at - died;
    assert!(
        lapsed <= TTL + Duration::from_secs(1),
        "registered at c after {lapsed:?}"
    );
    assert_eq!(registered(&redis, "ch").await, format!("c {}", c.url("")));

    // The reader at b goes on with c's segments: within a refresh interval and a second.
    let resumed = loop {
        let (_, whole, at) = within(seen.recv()).await;
        // Whole, and after c took the publisher: c's (a is gone).
        if whole && at > accepted_at {
            break at;
        }
    };
    let gap = resumed - accepted_at;
    let limit = TTL / 3 + Duration::from_secs(1) + Duration::from_millis(600);
    assert!(gap <= limit, "resumed {gap:?} after the publisher was back");
    eprintln!(
        "origin {how:?}: abnormal end at b after {noticed:?}; registration free after \
         {lapsed:?}; b resumed {gap:?} after the publisher was accepted at c ({:?} in all)",
        resumed - died
    );
    moved.abort();
    reader.abort();
    c.stop().await;
    b.stop().await;
    let _ = a.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_machine_cluster_script_works() {
    if Redis::start().await.is_none() || !have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    // Four ports in a row that are free now.
    let base = (20_000..60_000)
        .step_by(97)
        .find(|base| (0..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
    let out = tokio::process::Command::new(script)
        .arg("--check")
        .env("CLUSTER_PORT", base.to_string())
        .env("TRICKLE", env!("CARGO_BIN_EXE_trickle"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the check finishes")
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("cluster check passed"), "{log}");
}
