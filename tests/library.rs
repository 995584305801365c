//! Library level: in-process publisher/subscriber, the segment buffer's races and stress, hooks,
//! and embedding the server in a larger axum application.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use trickle::local::{LocalPublisher, LocalSubscriber};
use trickle::server::RequestError;
use trickle::{Config, Error, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s39_local_publisher_and_subscriber() {
    let server = Server::new(Config {
        autocreate: false,
        ..Config::default()
    });
    let mut publisher = LocalPublisher::new(&server, "ch", "application/json");
    let err = publisher.write_bytes("lost").await.unwrap_err();
    assert!(matches!(err, Error::StreamNotFound), "{err:?}");
    assert!(server.channel("ch").is_none());
    let mut sub = LocalSubscriber::new(&server, "ch");
    assert!(matches!(sub.read(), Err(Error::StreamNotFound)));

    publisher.create_channel().await.unwrap();
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<()>(1);
    let writer = tokio::spawn(async move {
        for i in 0..20 {
            let seq = publisher.write_bytes(format!("seg{i}")).await.unwrap();
            assert_eq!(seq, i);
            ack_rx.recv().await;
        }
        publisher
    });
    let mut seqs = Vec::new();
    for i in 0..20 {
        let mut segment = sub.read().unwrap();
        assert_eq!(segment.content_type, "application/json");
        seqs.push(segment.seq);
        assert_eq!(
            segment.read_to_end().await.unwrap(),
            format!("seg{i}").as_bytes()
        );
        ack_tx.send(()).await.unwrap();
    }
    assert_eq!(
        seqs,
        (0..20).collect::<Vec<_>>(),
        "a -1 subscriber never rereads"
    );
    let publisher = writer.await.unwrap();
    // The next read is the (future) segment 20, not a reread of 19.
    let next = sub.read().unwrap();
    assert_eq!(next.seq, 20);
    publisher.close().unwrap();
    assert!(matches!(sub.read(), Err(Error::StreamNotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_writes_of_an_existing_seq_are_refused_and_zero_bytes_advance() {
    let server = Server::new(Config::default());
    let mut publisher = LocalPublisher::new(&server, "ch", "");
    publisher.write_bytes(Bytes::new()).await.unwrap();
    assert_eq!(server.channel("ch").unwrap().next_write(), 1);
    let mut other = LocalPublisher::new(&server, "ch", "");
    let err = other.write_bytes("again").await.unwrap_err();
    assert!(matches!(err, Error::EntryExists), "{err:?}");
    let mut sub = LocalSubscriber::new(&server, "ch");
    sub.set_seq(0);
    assert_eq!(sub.read().unwrap().read_to_end().await.unwrap(), b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_can_refuse_create_and_delete() {
    let server = Server::builder(Config::default())
        .before_create(|req| {
            // What the hook needs is read now; the decision is made later, asynchronously (as
            // one that asks a database would).
            let allowed = req.http.is_some_and(|h| h.headers.contains_key("x-token"))
                || req.name.starts_with("local-");
            let name = req.name.to_string();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if allowed {
                    Ok(())
                } else {
                    Err(RequestError {
                        status: StatusCode::UNAUTHORIZED,
                        message: format!("no token for {name}"),
                    })
                }
            }
        })
        .before_delete(|req| {
            let keep = req.name == "keep";
            async move {
                tokio::task::yield_now().await;
                if keep {
                    Err(RequestError {
                        status: StatusCode::OK, // not an error status: becomes 400
                        message: String::new(),
                    })
                } else {
                    Ok(())
                }
            }
        })
        .build();
    let s = TestServer::with_server(server).await;
    let r = s.post("/ch", b"").await;
    assert_eq!((r.status, r.text().as_str()), (401, "no token for ch\n"));
    assert!(s.server.channel("ch").is_none());
    // Publishing to a missing channel creates it: the same hook decides.
    let r = s.post("/ch/0", b"data").await;
    assert_eq!((r.status, r.text().as_str()), (401, "no token for ch\n"));
    assert!(s.server.channel("ch").is_none());
    let r = s
        .request_with("POST", "/made/0", &[("x-token", "1")], b"data")
        .await;
    assert_eq!(r.status, 200);
    // A channel that exists takes segments without asking again.
    assert_eq!(s.post("/made/1", b"more").await.status, 200);
    let r = s
        .request_with("POST", "/keep", &[("x-token", "1")], b"")
        .await;
    assert_eq!(r.status, 200);
    let r = s.delete("/keep").await;
    assert_eq!((r.status, r.text().as_str()), (400, "Bad Request\n"));
    assert!(s.server.channel("keep").is_some());
    s.request_with("POST", "/gone", &[("x-token", "1")], b"")
        .await;
    assert_eq!(s.delete("/gone").await.status, 200);

    // In process too: the hook is asked (without a request) by `create_channel` and by a local
    // publisher that creates its channel.
    let Err(refused) = s.server.create_channel("inproc", "").await else {
        panic!("created against the hook")
    };
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.to_string(), "no token for inproc");
    let mut publisher = LocalPublisher::new(&s.server, "inproc", "text/plain");
    assert!(matches!(
        publisher.write_bytes("x").await,
        Err(Error::Refused { .. })
    ));
    assert!(s.server.channel("inproc").is_none());
    assert!(s.server.create_channel("local-ok", "").await.is_ok());
    let mut publisher = LocalPublisher::new(&s.server, "local-made", "text/plain");
    assert_eq!(publisher.write_bytes("x").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeds_in_a_larger_axum_app_under_a_base_path() {
    let server = Server::new(Config {
        base_path: "/ai/trickle/".into(),
        ..Config::default()
    });
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(server.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut raw = Raw::connect(addr).await;
    raw.send_request("GET", "/health", &[], Some(b"")).await;
    let head = raw.head().await;
    assert_eq!(raw.body_to_end(&head).await.unwrap(), b"ok");

    let mut publisher = Raw::connect(addr).await;
    publisher.start_post("/ai/trickle/cam/0").await;
    publisher.chunk(b"embedded").await;
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
    let mut sub = Raw::connect(addr).await;
    sub.send_request("GET", "/ai/trickle/cam/0", &[], Some(b""))
        .await;
    let head = sub.head().await;
    assert_eq!(sub.body_to_end(&head).await.unwrap(), b"embedded");
    assert!(server.channel("cam").is_some());
    server.shutdown();
    assert!(server.channel("cam").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_stops_the_sweeper() {
    let before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let server = Server::new(Config {
        sweep_interval: Duration::from_millis(10),
        ..Config::default()
    });
    drop(server);
    eventually("the sweeper ends", || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            <= before
    })
    .await;
}

/// The `_changes` writer is a task of its own: it too ends when the last handle is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_stops_the_changefeed() {
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = alive();
    let server = Server::new(Config {
        changefeed: true,
        // The sweeper notices at its next tick.
        sweep_interval: Duration::from_millis(10),
        ..Config::default()
    });
    server.create_channel("a", "").await.unwrap();
    let feed = server.channel("_changes").unwrap();
    eventually("the feed writes the creation", || feed.next_write() == 2).await;
    drop((server, feed));
    eventually("the feed and the sweeper end", || alive() <= before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_local_subscriber_jumps_gaps_and_skips_failed_segments() {
    let server = Server::new(Config {
        ring: 3,
        ..Config::default()
    });
    let mut publisher = LocalPublisher::new(&server, "ch", "text/plain");
    for n in 0..10 {
        publisher.write_bytes(format!("segment {n}")).await.unwrap();
    }
    // Seq 0 left the ring long ago: the follower jumps to the newest segment.
    let mut sub = LocalSubscriber::new(&server, "ch");
    sub.set_seq(0);
    let mut segment = sub.follow().await.unwrap();
    assert_eq!((segment.seq, segment.skipped), (9, 9));
    assert_eq!(segment.read_to_end().await.unwrap(), b"segment 9");

    // Seq 10 fails before the follower reads it; seq 11 is what it gets.
    assert!(publisher.write(breaking_after(b"half")).await.is_err());
    publisher.write_bytes("eleven").await.unwrap();
    let mut sub = LocalSubscriber::new(&server, "ch");
    sub.set_seq(10);
    let segment = sub.follow().await.unwrap();
    assert_eq!((segment.seq, segment.skipped), (11, 1));

    // The channel deleted under a follower waiting at the live edge: end of stream.
    let mut waiting = std::pin::pin!(sub.follow());
    assert!(futures_util::poll!(waiting.as_mut()).is_pending());
    server.delete_channel("ch").unwrap();
    let ended = waiting.await.map(|s| s.seq);
    assert!(matches!(ended, Err(Error::EndOfStream)), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_waits_at_a_head_placeholder_closed_with_nobody_writing_it() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/ch/0", b"zero").await.status, 200);
    let mut sub = LocalSubscriber::new(&s.server, "ch");
    sub.set_seq(0);
    assert_eq!(sub.follow().await.unwrap().seq, 0);
    // The follower waits at seq 1; a DELETE closes that placeholder with nobody writing it. That
    // is no segment of the stream: the follower keeps waiting (it used to return it, then go
    // back to seq 0 and return both again, forever).
    let mut next = std::pin::pin!(sub.follow());
    assert!(futures_util::poll!(next.as_mut()).is_pending());
    assert_eq!(s.delete("/ch/1").await.status, 200);
    assert!(futures_util::poll!(next.as_mut()).is_pending());
    assert_eq!(s.post("/ch/1", b"one").await.status, 200);
    let mut segment = next.await.unwrap();
    assert_eq!(segment.seq, 1);
    assert_eq!(segment.read_to_end().await.unwrap(), b"one");
}
