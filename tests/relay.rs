//! Edges (`--origin`): a channel read at an edge is pulled from its origin once, however many
//! read it there, and republished under the same seqs byte for byte; what a subscriber sees at an
//! edge means what it means at the origin (end of stream, failed segments, `404`); an edge lets a
//! channel go once nobody reads it; an origin that cannot be asked is `503` with `Retry-After`.
//! Real servers on loopback, raw HTTP on both sides.

mod common;

use std::time::Duration;

use common::*;
use trickle::Config;

/// An edge of `origin`, letting channels go after `linger` without readers.
async fn edge_of(origin: &TestServer, linger: Duration) -> TestServer {
    TestServer::with_config(Config {
        origins: vec![origin.url("")],
        relay_linger: linger,
        ..Config::default()
    })
    .await
}

/// Waits until `server` has exactly one GET of `channel` in progress (an edge's, waiting for the
/// next segment), and checks that no other comes.
async fn one_reader(server: &TestServer, channel: &str) {
    let readers = || {
        server
            .server
            .channel_info(channel)
            .map_or(0, |c| c.subscribers)
    };
    eventually("one GET from the edge", || readers() == 1).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(readers(), 1, "one GET from the edge");
}

/// Publishes segment `seq` of `channel` at `server`: `len` bytes of [`pattern`] in ten writes
/// with pauses, so that readers downstream get it while it is written. Its bytes.
async fn publish_slowly(server: &TestServer, channel: &str, seq: u64, len: usize) -> Vec<u8> {
    let body = pattern(len, seq);
    let mut raw = server.connect().await;
    raw.start_post(&format!("/{channel}/{seq}")).await;
    for piece in body.chunks(len.div_ceil(10)) {
        raw.chunk(piece).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    raw.end_body().await;
    assert_eq!(raw.head().await.status, 200);
    body
}

/// GET of `path` at `server` to its end: the status and the bytes, or `None` for a body that
/// broke off.
async fn read(server: &TestServer, path: &str) -> (u16, Option<Vec<u8>>) {
    let mut raw = server.connect().await;
    raw.send_request("GET", path, &[], None).await;
    let head = raw.head().await;
    (head.status, raw.body_to_end(&head).await.ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_pulls_each_segment_once_for_1_10_and_50_subscribers() {
    let origin = TestServer::start().await;
    let edge = edge_of(&origin, Duration::from_secs(5)).await;
    for subscribers in [1usize, 10, 50] {
        let channel = format!("ch{subscribers}");
        // The previous channel's relay is idle (its GET waits for a segment that never comes).
        let sent_before = origin.server.metrics().bytes_out;
        let mut published = vec![publish_slowly(&origin, &channel, 0, 50_000).await];
        // Nobody reads at the edge: the origin is not asked.
        tokio::time::sleep(QUIET).await;
        assert_eq!(origin.server.metrics().bytes_out, sent_before);
        assert!(edge.server.channel(&channel).is_none());

        // Each subscriber reads seqs 0 to 3 in order at the edge while they are published.
        let readers: Vec<_> = (0..subscribers)
            .map(|_| {
                let (addr, channel) = (edge.addr, channel.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    for seq in 0..4 {
                        let mut raw = Raw::connect(addr).await;
                        raw.send_request("GET", &format!("/{channel}/{seq}"), &[], None)
                            .await;
                        let head = raw.head().await;
                        assert_eq!(head.status, 200, "seq {seq}");
                        got.push(raw.body_to_end(&head).await.expect("whole"));
                    }
                    got
                })
            })
            .collect();
        // All of them wait for seq 1 at the edge; the origin has one request for it, the edge's.
        eventually("the subscribers wait at the edge", || {
            edge.server.stats().waiting_gets >= subscribers
        })
        .await;
        one_reader(&origin, &channel).await;
        for seq in 1..4 {
            published.push(publish_slowly(&origin, &channel, seq, 50_000).await);
        }
        for reader in readers {
            assert_eq!(reader.await.unwrap(), published, "byte for byte");
        }
        // The edge took every segment from the origin once: its bytes out are what was published
        // (the edge's GET of seq 4, waiting, has taken nothing).
        let published_bytes: usize = published.iter().map(Vec::len).sum();
        let sent = origin.server.metrics().bytes_out - sent_before;
        assert_eq!(sent, published_bytes as u64, "{subscribers} subscribers");
    }
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endings_upstream_are_endings_at_the_edge() {
    let origin = TestServer::start().await;
    let edge = edge_of(&origin, Duration::from_secs(5)).await;
    let first = publish_slowly(&origin, "ch", 0, 20_000).await;
    assert_eq!(read(&edge, "/ch/0").await, (200, Some(first)));

    // A segment whose publisher breaks off upstream, once its bytes reached the edge's reader,
    // breaks off at the edge. (Before any byte reached a reader, a failed segment is not served
    // anywhere: readers wait for the publisher's retry, at the origin as at the edge.)
    let mut reader = edge.connect().await;
    reader.send_request("GET", "/ch/1", &[], None).await;
    eventually("the subscriber waits", || {
        edge.server.stats().waiting_gets == 1
    })
    .await;
    let mut publisher = origin.connect().await;
    publisher.start_post("/ch/1").await;
    publisher.chunk(&pattern(5_000, 1)).await;
    let head = reader.head().await;
    assert_eq!(head.status, 200);
    assert!(reader.body_chunk(&head).await.unwrap().is_some());
    drop(publisher);
    assert!(reader.body_to_end(&head).await.is_err(), "an abnormal end");

    // The next one is whole again; and the channel deleted upstream ends it at the edge.
    let third = publish_slowly(&origin, "ch", 2, 20_000).await;
    assert_eq!(read(&edge, "/ch/2").await, (200, Some(third)));
    let ending = tokio::spawn({
        let addr = edge.addr;
        async move {
            let mut raw = Raw::connect(addr).await;
            raw.send_request("GET", "/ch/3", &[], None).await;
            raw.head().await
        }
    });
    eventually("the subscriber waits", || {
        edge.server.stats().waiting_gets == 1
    })
    .await;
    assert_eq!(origin.delete("/ch").await.status, 200);
    let head = ending.await.unwrap();
    assert!(head.header("lp-trickle-closed").is_some(), "{head:?}");
    eventually("the edge lets the channel go", || {
        edge.server.channel("ch").is_none()
    })
    .await;
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_lets_a_channel_go_once_nobody_reads_it() {
    let origin = TestServer::start().await;
    let edge = edge_of(&origin, Duration::from_millis(500)).await;
    let first = publish_slowly(&origin, "ch", 0, 20_000).await;
    assert_eq!(read(&edge, "/ch/0").await, (200, Some(first)));
    one_reader(&origin, "ch").await;
    eventually("the edge lets the channel go", || {
        edge.server.channel("ch").is_none()
    })
    .await;
    eventually("its upstream GET is gone", || {
        origin.server.channel_info("ch").unwrap().subscribers == 0
    })
    .await;
    // Read again, it is pulled again.
    assert_eq!(read(&edge, "/ch/next").await.0, 200);
    assert!(edge.server.channel("ch").is_some());
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unreachable_and_relayed_channels_get_clear_answers() {
    let origin = TestServer::start().await;
    let edge = edge_of(&origin, Duration::from_secs(5)).await;
    let missing = edge.get("/nothing/0").await;
    assert_eq!(
        (missing.status, missing.text()),
        (404, "Stream not found\n".into())
    );

    // Publishing a relayed channel at the edge is refused: it is the origin's.
    publish_slowly(&origin, "ch", 0, 1_000).await;
    assert_eq!(edge.get("/ch/0").await.status, 200);
    let refused = edge.post("/ch/1", b"mine").await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(
        refused.text(),
        "Channel is relayed from an origin: publish it there\n"
    );

    // An origin that cannot be asked: 503 with Retry-After, never 404.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let lost = TestServer::with_config(Config {
        origins: vec![format!("http://{gone}")],
        ..Config::default()
    })
    .await;
    for _ in 0..2 {
        let unavailable = lost.get("/ch/0").await;
        assert_eq!(unavailable.status, 503, "{}", unavailable.text());
        assert_eq!(unavailable.header("retry-after"), Some("1"));
        assert!(unavailable.text().starts_with("Origin unavailable: "));
    }
    lost.stop().await;
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_edges_relays_byte_for_byte_and_a_crowd_starts_one_pull() {
    let origin = TestServer::start().await;
    let first_edge = edge_of(&origin, Duration::from_secs(5)).await;
    let second_edge = edge_of(&first_edge, Duration::from_secs(5)).await;
    publish_slowly(&origin, "ch", 0, 10_000).await;
    // A hundred readers arrive at once at the far edge, for the next segment.
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let addr = second_edge.addr;
            tokio::spawn(async move {
                let mut raw = Raw::connect(addr).await;
                raw.send_request("GET", "/ch/1", &[], None).await;
                let head = raw.head().await;
                (head.status, raw.body_to_end(&head).await.ok())
            })
        })
        .collect();
    eventually("they wait at the far edge", || {
        second_edge.server.stats().waiting_gets == 100
    })
    .await;
    one_reader(&first_edge, "ch").await;
    one_reader(&origin, "ch").await;
    let second = publish_slowly(&origin, "ch", 1, 300_000).await;
    for reader in readers {
        assert_eq!(reader.await.unwrap(), (200, Some(second.clone())));
    }
    second_edge.stop().await;
    first_edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_and_current_mean_at_an_edge_what_they_mean_at_the_origin() {
    let origin = TestServer::start().await;
    let edge = edge_of(&origin, Duration::from_secs(5)).await;
    // Before anything is published, `-1` waits for the first segment.
    assert_eq!(origin.post("/idle", b"").await.status, 200);
    let early = tokio::spawn({
        let addr = edge.addr;
        async move {
            let mut raw = Raw::connect(addr).await;
            raw.send_request("GET", "/idle/-1", &[], None).await;
            let head = raw.head().await;
            (
                head.header("lp-trickle-seq").map(str::to_string),
                raw.body_to_end(&head).await,
            )
        }
    });
    one_reader(&origin, "idle").await;
    let first = publish_slowly(&origin, "idle", 0, 10_000).await;
    let (seq, body) = early.await.unwrap();
    assert_eq!((seq.as_deref(), body.ok()), (Some("0"), Some(first)));

    // While a segment is being written upstream, `-2` is that one and `-1` the one after.
    let mut publisher = origin.connect().await;
    publisher.start_post("/busy/0").await;
    publisher.chunk(&pattern(1_000, 0)).await;
    let current = edge.get("/busy/next").await;
    assert_eq!(current.text(), "1");
    let mut next = edge.connect().await;
    next.send_request("GET", "/busy/-1", &[], None).await;
    let mut current = edge.connect().await;
    current.send_request("GET", "/busy/-2", &[], None).await;
    let head = current.head().await;
    assert_eq!(head.header("lp-trickle-seq"), Some("0"));
    publisher.end_body().await;
    publisher.head().await;
    publish_slowly(&origin, "busy", 1, 1_000).await;
    assert_eq!(next.head().await.header("lp-trickle-seq"), Some("1"));
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_checks_its_own_subscribers_and_shows_its_own_credential_upstream() {
    let secret = || Some(trickle::auth::Secret::new(TEST_SECRET).unwrap());
    let origin = TestServer::with_config(Config {
        auth_secret: secret(),
        ..Config::default()
    })
    .await;
    let edge_with = |credential: Option<String>| {
        TestServer::with_config(Config {
            auth_secret: secret(),
            origins: vec![origin.url("")],
            relay_credential: credential.map(trickle::server::Credential),
            ..Config::default()
        })
    };
    let edge = edge_with(Some(format!("Bearer {}", token(&[], &["*"], false)))).await;
    let publisher = token(&["*"], &[], false);
    let sent = publish_slowly(&origin, &format!("{publisher}/ch"), 0, 5_000).await;

    // No token, or one for another channel: refused at the edge, nothing asked upstream.
    assert_eq!(edge.get("/ch/0").await.status, 401);
    let other = token(&[], &["other"], false);
    assert_eq!(edge.get(&format!("/{other}/ch/0")).await.status, 403);
    tokio::time::sleep(QUIET).await;
    assert!(edge.server.channel("ch").is_none());
    assert_eq!(origin.server.channel_info("ch").unwrap().subscribers, 0);

    let reader = token(&[], &["ch"], false);
    assert_eq!(
        read(&edge, &format!("/{reader}/ch/0")).await,
        (200, Some(sent))
    );

    // An edge without a credential of its own is refused upstream, whatever its reader holds:
    // the reader's token is not passed on.
    let bare = edge_with(None).await;
    let refused = bare.get(&format!("/{reader}/ch/0")).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("401"), "{}", refused.text());
    bare.stop().await;
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_whose_origins_lead_back_to_themselves_answer_508() {
    // Two edges, each the other's origin.
    let listeners = [(); 2].map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect();
    let [first, second] = listeners.map(|l| {
        l.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(l).unwrap()
    });
    let edge = |listener, origin: &str| {
        let server = trickle::Server::new(Config {
            origins: vec![origin.to_string()],
            ..Config::default()
        });
        TestServer::on(listener, server)
    };
    let (a, b) = (edge(first, &urls[1]), edge(second, &urls[0]));
    let looped = a.get("/nowhere/0").await;
    assert_eq!(looped.status, 508, "{}", looped.text());
    assert!(
        looped.text().starts_with("Relay loop: "),
        "{}",
        looped.text()
    );
    assert!(a.server.channel("nowhere").is_none() && b.server.channel("nowhere").is_none());
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_makes_the_outputs_of_the_channels_it_relays() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let origin = video::mpegts_server().await;
    let _publisher = video::publish(&origin.url("/cam"), "h264", 20, "");
    let edge = edge_of(&origin, Duration::from_secs(5)).await;
    // The first read at the edge (a playlist) starts the relay; the playlist lists segments once
    // the copy has complete ones, with the origin's MIME type.
    let playlist = edge.get("/cam/index.m3u8").await;
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    let listed = common::hls::parse(&playlist.text());
    let first = listed.segments.first().expect("a segment listed");
    let ts = edge.get(&format!("/cam/{}", first.uri)).await;
    assert_eq!(ts.header("content-type"), Some("video/mp2t"));
    let at_origin = origin.get(&format!("/cam/{}", first.seq)).await;
    assert_eq!(ts.body, at_origin.body, "the origin's bytes");
    // LL-HLS and DASH from the edge's own remux of its copy.
    for path in ["/cam/ll.m3u8", "/cam/manifest.mpd"] {
        let answer = edge.get(path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    }
    let ll = common::hls::parse(&edge.get("/cam/ll.m3u8").await.text());
    assert!(ll.part_target.is_some() && !ll.segments.is_empty());
    assert_eq!(origin.server.channel_info("cam").unwrap().viewers, 0);
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_segments_the_origin_holds_are_fetched_for_readers_at_the_edge() {
    let origin = TestServer::start().await;
    let edge = edge_of(&origin, Duration::from_secs(5)).await;
    let mut sent = Vec::new();
    for seq in 0..3 {
        sent.push(publish_slowly(&origin, "ch", seq, 5_000).await);
    }
    // Seq 3 under way upstream: the relay starts there.
    let mut publisher = origin.connect().await;
    publisher.start_post("/ch/3").await;
    publisher.chunk(&pattern(1_000, 3)).await;
    assert_eq!(edge.get("/ch/next").await.text(), "4");

    // Older ones come from the origin, once asked for: by seq, and by -N.
    assert_eq!(read(&edge, "/ch/1").await, (200, Some(sent[1].clone())));
    let back = edge.get("/ch/-3").await;
    assert_eq!((back.status, back.seq()), (200, Some(2)));
    assert_eq!(back.body, sent[2]);
    // Seq 0 would not fit the edge's ring beside its newer segments: 470 there.
    let too_old = edge.get("/ch/0").await;
    assert_eq!((too_old.status, too_old.latest()), (470, Some(4)));
    // Once fetched, a segment is read from the copy: the origin is not asked again.
    let sent_before = origin.server.metrics().bytes_out;
    assert_eq!(read(&edge, "/ch/1").await, (200, Some(sent[1].clone())));
    assert_eq!(origin.server.metrics().bytes_out, sent_before);
    drop(publisher);
    edge.stop().await;
    origin.stop().await;
}
