//! The server's events (`Server::events`) and the one write path: every kind of publisher (HTTP,
//! in process, the `_changes` feed) is counted in the metrics and reported as events, in order, and
//! each event is sent once what it reports is visible.

mod common;

use std::time::Duration;

use common::*;
use tokio::sync::broadcast;
use trickle::local::LocalPublisher;
use trickle::server::Event;
use trickle::{Config, Server};

/// The next event, within a few seconds.
async fn next(events: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .expect("no event missed")
}

fn started(channel: &str, seq: u64) -> Event {
    Event::SegmentStarted {
        channel: channel.into(),
        seq,
    }
}

/// A channel's publisher started (`true`: from none to one) or stopped (from one to none).
fn publishing(channel: &str, started: bool) -> Event {
    let channel = channel.into();
    match started {
        true => Event::PublisherStarted { channel },
        false => Event::PublisherStopped { channel },
    }
}

fn completed(channel: &str, seq: u64, bytes: u64) -> Event {
    Event::SegmentCompleted {
        channel: channel.into(),
        seq,
        bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publishes_are_reported_in_order_after_they_are_visible() {
    let s = TestServer::start().await;
    let mut events = s.server.events();
    assert_eq!(s.post("/ch/0", b"hello").await.status, 200);
    let created = next(&mut events).await;
    assert_eq!(
        created,
        Event::ChannelCreated {
            channel: "ch".into()
        }
    );
    // A publisher that does not preconnect starts and stops with each segment.
    assert_eq!(next(&mut events).await, publishing("ch", true));
    assert_eq!(next(&mut events).await, started("ch", 0));
    assert_eq!(next(&mut events).await, completed("ch", 0, 5));
    assert_eq!(next(&mut events).await, publishing("ch", false));
    // An empty segment is a segment too.
    assert_eq!(s.post("/ch/1", b"").await.status, 200);
    assert_eq!(next(&mut events).await, publishing("ch", true));
    assert_eq!(next(&mut events).await, started("ch", 1));
    assert_eq!(next(&mut events).await, completed("ch", 1, 0));
    assert_eq!(next(&mut events).await, publishing("ch", false));

    // A publisher that goes away mid-body fails its segment, with the bytes it had sent.
    let mut publisher = s.connect().await;
    publisher.start_post("/ch/2").await;
    publisher.chunk(b"abc").await;
    assert_eq!(next(&mut events).await, publishing("ch", true));
    assert_eq!(next(&mut events).await, started("ch", 2));
    drop(publisher);
    let failed = Event::SegmentFailed {
        channel: "ch".into(),
        seq: 2,
        bytes: 3,
    };
    assert_eq!(next(&mut events).await, failed);
    assert_eq!(next(&mut events).await, publishing("ch", false));

    // Removal is sent once the channel is gone from the registry (and creation once it is there:
    // a listener may look it up as soon as it hears of it).
    // The watcher reports what it saw as it sees it: the channel is deleted only after its
    // creation was looked at (else the deletion could come first, whatever the order of events).
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let watcher = {
        let server = s.server.clone();
        let mut events = s.server.events();
        tokio::spawn(async move {
            loop {
                match next(&mut events).await {
                    Event::ChannelCreated { channel } => {
                        let _ = seen_tx.send(("created", server.channel(&channel).is_some()));
                    }
                    Event::ChannelRemoved { channel } => {
                        let _ = seen_tx.send(("removed", server.channel(&channel).is_none()));
                        return;
                    }
                    _ => {}
                }
            }
        })
    };
    assert_eq!(s.post("/other", b"").await.status, 200);
    assert_eq!(seen.recv().await, Some(("created", true)));
    assert_eq!(s.delete("/other").await.status, 200);
    assert_eq!(seen.recv().await, Some(("removed", true)));
    watcher.await.unwrap();
    let metrics = s.server.metrics();
    assert_eq!(
        (metrics.segments_started, metrics.segments_completed),
        (3, 2)
    );
    assert_eq!(metrics.segments_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_and_changefeed_publishes_are_counted() {
    let server = Server::new(Config {
        changefeed: true,
        ..Config::default()
    });
    let mut events = server.events();
    let mut publisher = LocalPublisher::new(&server, "local", "text/plain");
    assert_eq!(publisher.write_bytes("0123456789").await.unwrap(), 0);
    // A read error after the first byte fails the segment.
    assert!(publisher.write(breaking_after(b"partial")).await.is_err());

    // `_changes` writes the creation of `local` as its seq 1 (its own creation is seq 0, which
    // it may have written before this test listened).
    let feed = completed("_changes", 1, br#"{"added":["local"]}"#.len() as u64);
    let failed = Event::SegmentFailed {
        channel: "local".into(),
        seq: 1,
        bytes: 7,
    };
    let mut seen = Vec::new();
    let stopped = publishing("local", false);
    let stops = |seen: &[Event]| seen.iter().filter(|e| **e == stopped).count();
    while !(seen.contains(&feed) && seen.contains(&failed) && stops(&seen) == 2) {
        seen.push(next(&mut events).await);
    }
    let local: Vec<_> = seen
        .iter()
        .filter(|e| e.channel() == "local")
        .cloned()
        .collect();
    assert_eq!(
        local,
        [
            Event::ChannelCreated {
                channel: "local".into()
            },
            publishing("local", true),
            started("local", 0),
            completed("local", 0, 10),
            publishing("local", false),
            publishing("local", true),
            started("local", 1),
            failed,
            publishing("local", false),
        ]
    );
    eventually("every segment counted", || {
        let m = server.metrics();
        // local 0, local 1 (failed), _changes 0 and 1.
        m.segments_started == 4 && m.segments_completed == 3 && m.segments_failed == 1
    })
    .await;
    let feed_bytes = (br#"{"added":["_changes"]}"#.len() + br#"{"added":["local"]}"#.len()) as u64;
    assert_eq!(server.metrics().bytes_in, 10 + 7 + feed_bytes);
}
