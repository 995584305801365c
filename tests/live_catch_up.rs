//! `GET /{name}/live` brings a viewer that fell behind back near the live edge by its lag in
//! segments, the rule that works on every transport: over HTTP/2, where no socket tells how much
//! waits unsent (flow control holds a slow stream back instead); and over HTTP/1.1 after a 10 s
//! pause, when the segment chosen at its last boundary has long gone by once it reads again. The
//! channels here keep every segment, so that only the live rules can make a viewer skip (falling
//! off the ring would make it jump too).

mod common;

use std::time::Duration;

use common::live::*;
use common::*;
use tokio::sync::watch;
use trickle::Config;

/// Waits (at most [`PATIENCE`]) until `rx` holds a value for which `ready` is true; that value.
async fn reached<T: Copy>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    ready: impl FnMut(&T) -> bool,
) -> T {
    let value = tokio::time::timeout(PATIENCE, rx.wait_for(ready))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    *value.expect("the sender lives")
}

/// The next piece of an h2 response body, `None` at its end.
async fn h2_chunk(response: &mut reqwest::Response) -> Option<bytes::Bytes> {
    tokio::time::timeout(PATIENCE, response.chunk())
        .await
        .expect("body data in time")
        .expect("a clean body")
}

/// Reads an h2 live response to its end, telling `progress` how many bytes it has.
async fn read_h2(mut response: reqwest::Response, progress: watch::Sender<usize>) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(chunk) = h2_chunk(&mut response).await {
        body.extend_from_slice(&chunk);
        progress.send_replace(body.len());
    }
    body
}

/// The stream window of the slow h2 viewer: an eighth of a segment.
const H2_WINDOW: u32 = 4 * 1024;
const H2_LEN: usize = 32 * 1024;
const H2_COUNT: u64 = 40;
/// The slow h2 viewer reads one piece (at most a window) per this many segments published.
const H2_PAUSE: u64 = 2;

/// The slow h2 viewer: reads a piece, then waits for [`H2_PAUSE`] more segments to be published,
/// and so on; once all are published, reads on to the end, telling `whole` the seq of the last
/// segment it has whole.
async fn read_h2_slowly(
    mut response: reqwest::Response,
    mut published: watch::Receiver<u64>,
    whole: watch::Sender<Option<u64>>,
) -> LiveBody {
    let mut body = LiveBody::new(H2_LEN);
    let mut read_at = 0;
    loop {
        let now = reached(&mut published, "the publisher", |&n| {
            n >= read_at.min(H2_COUNT)
        })
        .await;
        let Some(chunk) = h2_chunk(&mut response).await else {
            break;
        };
        whole.send_replace(body.push(&chunk, now));
        read_at = now + H2_PAUSE;
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_h2_a_slow_viewer_skips_by_its_lag_and_fast_ones_get_everything() {
    // The default lag (1), and a ring that holds the whole stream.
    let s = TestServer::with_config(Config {
        ring: H2_COUNT as usize,
        ..Config::default()
    })
    .await;
    assert_eq!(s.post("/ch", b"").await.status, 200);
    // The slow viewer and a fast one share a connection; another fast one has its own.
    let shared = h2::h2c_client(Some(H2_WINDOW));
    let url = s.url("/ch/live");
    let slow = shared.get(&url).send().await.unwrap();
    let fast = shared.get(&url).send().await.unwrap();
    let other = h2::h2c_client(None).get(&url).send().await.unwrap();
    for response in [&slow, &fast, &other] {
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
    }
    assert_eq!(s.server.stats().live_viewers, 3);

    let (published_tx, published) = watch::channel(0u64);
    let mut fast_progress = Vec::new();
    let mut fast_readers = Vec::new();
    for response in [fast, other] {
        let (tx, rx) = watch::channel(0usize);
        fast_progress.push(rx);
        fast_readers.push(tokio::spawn(read_h2(response, tx)));
    }
    let (slow_whole, mut slow_progress) = watch::channel(None);
    let slow_reader = tokio::spawn(read_h2_slowly(slow, published, slow_whole));
    let addr = s.addr;
    for seq in 0..H2_COUNT {
        assert_eq!(
            post(addr, format!("/ch/{seq}"), segment(seq, H2_LEN)).await,
            200
        );
        // The next segment starts once the fast viewers have all of this one: they are never
        // behind, whatever the machine's load.
        for progress in &mut fast_progress {
            let whole = (seq as usize + 1) * H2_LEN;
            reached(progress, "a fast viewer", |&n| n >= whole).await;
        }
        published_tx.send_replace(seq + 1);
    }
    // Deleting the channel ends the viewers' responses at once, held segments or not: first the
    // slow viewer, reading freely now, must have caught up (the lag rule takes it to the newest
    // segment at its next boundary).
    let last = Some(H2_COUNT - 1);
    reached(&mut slow_progress, "the slow viewer", |&whole| {
        whole == last
    })
    .await;
    assert_eq!(s.delete("/ch").await.status, 200);

    let all: Vec<u64> = (0..H2_COUNT).collect();
    for reader in fast_readers {
        assert_eq!(
            seqs_of(&reader.await.unwrap(), H2_LEN),
            all,
            "a fast viewer"
        );
    }
    let body = slow_reader.await.unwrap();
    let slow = body.seqs();
    eprintln!("slow h2 viewer: (seq, published) {:?}", body.starts);
    assert!(slow.windows(2).all(|w| w[0] < w[1]), "in order: {slow:?}");
    assert!(slow.len() < all.len(), "the slow viewer skipped: {slow:?}");
    assert_eq!(slow.first(), Some(&0), "{slow:?}");
    assert_eq!(
        slow.last(),
        Some(&(H2_COUNT - 1)),
        "and caught up: {slow:?}"
    );
    let metrics = s.server.metrics();
    assert_eq!(metrics.live_segments_skipped, H2_COUNT - slow.len() as u64);
}

/// What the publisher of the paused viewer's channel sends: 4 segments a second, at most this many
/// (the ring holds them all).
const PAUSE_COUNT: u64 = 100;
const PAUSE_PERIOD: Duration = Duration::from_millis(250);
/// How long the viewer stops reading (the case).
const PAUSE: Duration = Duration::from_secs(10);

/// Reads `viewer`'s body into `body` until it holds at least `len` bytes.
async fn read_until(viewer: &mut Raw, head: &Head, body: &mut Vec<u8>, len: usize) {
    while body.len() < len {
        let chunk = viewer.body_chunk(head).await.unwrap();
        body.extend(chunk.expect("the response goes on"));
    }
}

/// What the server lets wait unsent on a viewer's socket (`TCP_NOTSENT_LOWAT`, server/live.rs).
const UNSENT_LOW_WATER: usize = 128 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_10_s_pause_a_viewer_is_back_at_the_live_edge_within_one_segment() {
    let s = TestServer::with_config(Config {
        ring: PAUSE_COUNT as usize,
        ..Config::default()
    })
    .await;
    assert_eq!(s.post("/ch", b"").await.status, 200);
    // An ordinary HTTP/1.1 viewer, with the kernel's usual buffers. What they hold when it stops
    // reading was queued before: bytes the server can no longer take back. The segments are
    // bigger than that (twice), so that when the viewer pauses early in segment 0, the start of
    // the next segment it gets is chosen when it reads again (512 KiB with Linux's defaults).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let buffers = socket.recv_buffer_size().unwrap() as usize + UNSENT_LOW_WATER;
    let len = (2 * buffers).next_power_of_two().max(512 * 1024);
    let mut viewer = Raw::from_stream(socket.connect(s.addr).await.unwrap());
    viewer.send_request("GET", "/ch/live", &[], Some(b"")).await;
    eventually("the viewer waits", || s.server.stats().live_viewers == 1).await;

    let (stop_tx, mut stop) = watch::channel(false);
    let addr = s.addr;
    let publisher = tokio::spawn(async move {
        // Each segment is posted whole: nothing in how its bytes arrive keeps the server from
        // reaching a boundary (and choosing the next segment) before the viewer's socket is full.
        let mut seq = 0;
        while seq < PAUSE_COUNT && !*stop.borrow() {
            assert_eq!(
                post(addr, format!("/ch/{seq}"), segment(seq, len)).await,
                200
            );
            seq += 1;
            let _ = tokio::time::timeout(PAUSE_PERIOD, stop.changed()).await;
        }
        seq
    });

    // The viewer reads the start of segment 0, then nothing for 10 s.
    let head = viewer.head().await;
    assert_eq!(head.status, 200);
    let mut body = Vec::new();
    read_until(&mut viewer, &head, &mut body, 9).await;
    assert_eq!(seq_at(&body), 0);
    tokio::time::sleep(PAUSE).await;
    // Reading again, it gets the rest of segment 0, then a segment chosen after it resumed: at
    // least the newest one when it did, so within one segment of the write head then.
    let write_head = s.next("ch").await;
    read_until(&mut viewer, &head, &mut body, len + 9).await;
    let resumed_at = seq_at(&body[len..]);
    eprintln!("after the pause: segment {resumed_at}, write head before {write_head}");
    assert!(
        resumed_at + 1 >= write_head,
        "segment {resumed_at} after the pause, write head {write_head}"
    );

    // The publisher stops; once the viewer has the last segment whole, the channel ends.
    stop_tx.send_replace(true);
    let last = publisher.await.unwrap() - 1;
    while body.len() % len != 0 || seq_at(&body[body.len() - len..]) != last {
        let more = body.len() + 1;
        read_until(&mut viewer, &head, &mut body, more).await;
    }
    assert_eq!(s.delete("/ch").await.status, 200);
    body.extend(viewer.body_to_end(&head).await.unwrap());
    let seqs = seqs_of(&body, len);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!((seqs[0], seqs[1]), (0, resumed_at));
    assert_eq!(seqs.last(), Some(&last));
    let skipped = s.server.metrics().live_segments_skipped;
    assert_eq!(skipped, last + 1 - seqs.len() as u64);
}
