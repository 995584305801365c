//! HTTP/2 with prior knowledge (h2c) on the plain listener, next to HTTP/1.1 (docs/PROTOCOL.md,
//! "Extensions").
//! Uses reqwest as a real h2 client.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;

fn h2() -> reqwest::Client {
    h2::h2c_client(None)
}

/// A streaming request body fed from a channel, as a publisher with data "not yet there".
fn streaming_body() -> (tokio::sync::mpsc::Sender<Bytes>, reqwest::Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let stream = tokio_stream(rx).map(Ok::<_, std::io::Error>);
    (tx, reqwest::Body::wrap_stream(stream))
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_publish_and_subscribe_with_waiting_and_trickling() {
    let s = TestServer::start().await;
    let client = h2();
    let r = client.post(s.url("/ch")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);

    // A subscriber waits on the live edge over h2, on the same connection as the publisher.
    let sub = tokio::spawn({
        let client = client.clone();
        let url = s.url("/ch/-1");
        async move { client.get(url).send().await.unwrap() }
    });
    eventually("the h2 GET waits", || s.server.stats().waiting_gets == 1).await;
    let (tx, body) = streaming_body();
    let publish = tokio::spawn({
        let client = client.clone();
        let url = s.url("/ch/0");
        async move { client.post(url).body(body).send().await.unwrap() }
    });
    tx.send(Bytes::from_static(b"part1")).await.unwrap();
    let response = sub.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["lp-trickle-seq"], "0");
    let mut stream = response.bytes_stream();
    assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"part1");
    tx.send(Bytes::from_static(b"part2")).await.unwrap();
    assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"part2");
    drop(tx);
    // The end of the stream (an empty DATA frame with END_STREAM may show up as an empty chunk).
    while let Some(chunk) = stream.next().await {
        assert!(chunk.unwrap().is_empty());
    }
    let posted = publish.await.unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(posted.headers()["lp-trickle-seq"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_fan_out_is_byte_exact() {
    let s = TestServer::start().await;
    let client = h2();
    client.post(s.url("/ch")).send().await.unwrap();
    let data = pattern(1 << 20, 2);
    let subs: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            let url = s.url("/ch/0");
            tokio::spawn(
                async move { client.get(url).send().await.unwrap().bytes().await.unwrap() },
            )
        })
        .collect();
    eventually("20 h2 GETs wait", || s.server.stats().waiting_gets == 20).await;
    let r = client
        .post(s.url("/ch/0"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for sub in subs {
        assert!(sub.await.unwrap()[..] == data[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_failed_segment_resets_the_stream() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/0").await;
    publisher.chunk(b"hello").await;
    let response = h2().get(s.url("/ch/0")).send().await.unwrap();
    let mut stream = response.bytes_stream();
    assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"hello");
    drop(publisher);
    let end = stream.next().await;
    assert!(
        matches!(end, Some(Err(_))),
        "expected a reset stream, got {end:?}"
    );
}

/// Over h2 too, a body declared larger than a segment may be is refused with 413 before any of it
/// is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_a_declared_body_over_the_limit_is_refused_at_once() {
    let s = TestServer::with_config(trickle::Config {
        max_segment_bytes: 1000,
        ..trickle::Config::default()
    })
    .await;
    let (_tx, body) = streaming_body();
    let request = h2()
        .post(s.url("/ch/0"))
        .header("content-length", "1001")
        .body(body)
        .send();
    let r = tokio::time::timeout(PATIENCE, request)
        .await
        .expect("an answer without a body")
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 413);
    assert_eq!(r.text().await.unwrap(), "Segment larger than 1000 bytes\n");
    assert!(s.server.channel("ch").is_none());
}
