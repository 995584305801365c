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
    let a_value = format!("a {}", a.url(""));
    eventually_registered(&redis, "during", &a_value).await;
    eventually_registered(&redis, "early", &a_value).await;
    // And b finds it (its negative cache lasts a second).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(b.get("/during/2").await.body, pattern(10_000, 2));
    b.stop().await;
    a.stop().await;
}
