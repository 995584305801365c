//! The Rust client library (`trickle::client`) against the real server over real sockets:
//! publisher → server → subscriber byte-exact, preconnects, the retry of a segment whose connection
//! dropped before its first byte (through a TCP proxy that cuts connections), 470 jumps, end of
//! stream, typed errors, a publisher's failure seen by its subscribers, and a close whose
//! preconnect reaches the server only after its DELETE (a proxy holds it back until the test
//! releases it): the channel is deleted again rather than left re-created, also when the server
//! answered that preconnect with something other than end of stream.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{PATIENCE, QUIET, TestServer, eventually, pattern};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use trickle::Config;
use trickle::client::{
    ClientError, OnGap, PublishStart, Publisher, PublisherOptions, SubscribeStart, Subscriber,
    SubscriberOptions,
};

fn publisher(s: &TestServer, channel: &str) -> Publisher {
    Publisher::new(&s.url(&format!("/{channel}")), PublisherOptions::default()).unwrap()
}

fn subscriber(s: &TestServer, channel: &str, start: SubscribeStart) -> Subscriber {
    let options = SubscriberOptions {
        start,
        ..SubscriberOptions::default()
    };
    Subscriber::new(&s.url(&format!("/{channel}")), options).unwrap()
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

/// Writes `data` in irregular pieces (1 byte up to 64 KiB).
async fn write_irregular(publisher: &mut Publisher, data: &[u8], seed: usize) -> u64 {
    let mut segment = publisher.next_segment();
    let mut offset = 0;
    let mut step = seed;
    while offset < data.len() {
        step = (step * 7919 + 13) % 65536 + 1;
        let end = (offset + step).min(data.len());
        segment
            .write(Bytes::copy_from_slice(&data[offset..end]))
            .await
            .unwrap();
        offset = end;
    }
    segment.finish().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_to_subscriber_byte_exact() {
    let s = TestServer::start().await;
    let mut publisher = Publisher::new(
        &s.url("/video"),
        PublisherOptions {
            content_type: "video/mp2t".into(),
            ..PublisherOptions::default()
        },
    )
    .unwrap();
    publisher.create().await.unwrap();
    let mut live = subscriber(&s, "video", SubscribeStart::Next);
    let sizes = [1, 100, 65_536, 1 << 20, 0, 333_333, 7];
    let segments: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(n, i as u64))
        .collect();
    let expected = segments.clone();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            let segment = live.next_segment().await.unwrap().expect("a segment");
            // Zero-byte segments carry no Content-Type (as in the reference).
            if segment.size != Some(0) {
                assert_eq!(segment.content_type.as_deref(), Some("video/mp2t"));
            }
            let seq = segment.seq;
            got.push((seq, segment.read_to_end().await.unwrap()));
        }
        got
    });
    for (i, data) in segments.iter().enumerate() {
        assert_eq!(write_irregular(&mut publisher, data, i).await, i as u64);
    }
    let got = within("subscriber", reader).await.unwrap();
    for (i, (seq, data)) in got.into_iter().enumerate() {
        assert_eq!(seq, i as u64);
        assert!(data == segments[i], "segment {i} differs");
    }
    // A late subscriber from the start of the ring reads the same bytes.
    let mut late = self::subscriber(&s, "video", SubscribeStart::Seq(3));
    let segment = late.next_segment().await.unwrap().unwrap();
    assert_eq!(segment.seq, 3);
    assert_eq!(segment.size, Some(1 << 20));
    assert!(segment.read_to_end().await.unwrap() == segments[3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_preconnects_the_next_segment() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let mut publisher = publisher(&s, "ch");
    eventually("seq 0 preconnected", || s.server.stats().pending_posts == 1).await;
    let mut segment = publisher.next_segment();
    assert_eq!(segment.seq(), Some(0));
    // While 0 is open, 1 is already waiting at the server.
    eventually("seq 1 preconnected", || s.server.stats().pending_posts == 2).await;
    segment.write("hello").await.unwrap();
    eventually("0 is being written", || {
        s.server.stats().writing_posts == 1 && s.server.stats().pending_posts == 1
    })
    .await;
    assert_eq!(s.next("ch").await, 1);
    assert_eq!(segment.finish().await.unwrap(), 0);
    assert_eq!(s.get("/ch/0").await.body, b"hello");
    assert_eq!(publisher.next_seq(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_write_and_streams() {
    let s = TestServer::start().await;
    let mut publisher = publisher(&s, "ch");
    let data = pattern(300_000, 9);
    let mut segment = publisher.next_segment();
    let mut input = &data[..];
    tokio::io::copy(&mut input, &mut segment).await.unwrap();
    segment.flush().await.unwrap();
    assert_eq!(segment.finish().await.unwrap(), 0);
    let pieces = vec![Ok(Bytes::from_static(b"a")), Ok(Bytes::from_static(b"bc"))];
    let seq = publisher
        .write_stream(futures_util::stream::iter(pieces))
        .await
        .unwrap();
    assert_eq!(seq, 1);
    let mut sub = subscriber(&s, "ch", SubscribeStart::Seq(0));
    assert!(
        sub.next_segment()
            .await
            .unwrap()
            .unwrap()
            .read_to_end()
            .await
            .unwrap()
            == data
    );
    let second = sub.next_segment().await.unwrap().unwrap();
    assert_eq!(second.seq, 1);
    assert_eq!(second.read_to_end().await.unwrap(), b"abc");
}

/// A TCP proxy whose live connections can be cut on demand (a network failure, for real), and
/// that counts the connections it accepted.
struct CuttingProxy {
    addr: SocketAddr,
    cuts: tokio::sync::watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
}

impl CuttingProxy {
    async fn start(upstream: SocketAddr) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let cuts_tx = cuts.clone();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::Relaxed);
                let mut cut = cuts_tx.subscribe();
                tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        CuttingProxy {
            addr,
            cuts,
            accepted,
        }
    }

    /// Drops every connection open right now.
    fn cut_all(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_whose_connection_dropped_before_its_first_byte_is_retried() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let proxy = CuttingProxy::start(s.addr).await;
    let mut publisher = Publisher::new(
        &format!("http://{}/ch", proxy.addr),
        PublisherOptions {
            retry_delay: Duration::from_millis(20),
            ..PublisherOptions::default()
        },
    )
    .unwrap();
    eventually("seq 0 preconnected", || s.server.stats().pending_posts == 1).await;
    proxy.cut_all();
    eventually("the server saw it go", || {
        s.server.stats().pending_posts == 0
    })
    .await;
    // The preconnect is dead; writing retries seq 0 on a new connection.
    assert_eq!(publisher.write_segment("first").await.unwrap(), 0);
    assert_eq!(s.get("/ch/0").await.body, b"first");
    assert_eq!(publisher.write_segment("second").await.unwrap(), 1);
    assert_eq!(s.get("/ch/1").await.body, b"second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preconnect_timed_out_by_the_server_is_retried() {
    let s = TestServer::with_config(Config {
        wait_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    s.post("/ch", b"").await;
    let mut publisher = publisher(&s, "ch");
    eventually("seq 0 preconnected", || s.server.stats().pending_posts == 1).await;
    // The server answers the idle preconnect 408; the publisher opens seq 0 again.
    eventually("timed out", || s.server.stats().pending_posts == 0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(publisher.write_segment("late").await.unwrap(), 0);
    assert_eq!(s.get("/ch/0").await.body, b"late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_jumps_over_a_gap_or_reports_it() {
    let s = TestServer::start().await;
    let mut publisher = publisher(&s, "ch");
    for i in 0..10 {
        publisher
            .write_segment(format!("segment {i}"))
            .await
            .unwrap();
    }
    // Seq 0 left the ring long ago: the subscriber jumps to the write head (10) and waits there.
    let mut sub = subscriber(&s, "ch", SubscribeStart::Seq(0));
    let reader = tokio::spawn(async move {
        let segment = sub.next_segment().await.unwrap().unwrap();
        (
            segment.seq,
            segment.jumped_from,
            segment.read_to_end().await.unwrap(),
        )
    });
    eventually("waiting at the write head", || {
        s.server.stats().waiting_gets == 1
    })
    .await;
    publisher.write_segment("segment 10").await.unwrap();
    let (seq, jumped_from, data) = within("jump", reader).await.unwrap();
    assert_eq!((seq, jumped_from), (10, Some(0)));
    assert_eq!(data, b"segment 10");

    let mut reporting = Subscriber::new(
        &s.url("/ch"),
        SubscriberOptions {
            start: SubscribeStart::Seq(2),
            on_gap: OnGap::Report,
            ..SubscriberOptions::default()
        },
    )
    .unwrap();
    match reporting.next_segment().await {
        Err(ClientError::SequenceNonexistent { seq: 2, latest }) => assert_eq!(latest, Some(11)),
        other => panic!("expected a 470, got {:?}", other.map(|s| s.map(|s| s.seq))),
    }
    reporting.set_start(SubscribeStart::FromEnd(2));
    let current = reporting.next_segment().await.unwrap().unwrap();
    assert_eq!(current.seq, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_stream_and_missing_channels() {
    let s = TestServer::with_config(Config {
        autocreate: false,
        ..Config::default()
    })
    .await;
    // No such channel: both sides get a typed error.
    let mut orphan = publisher(&s, "missing");
    assert!(matches!(
        orphan.write_segment("x").await,
        Err(ClientError::StreamNotFound)
    ));
    assert!(matches!(
        orphan.create().await,
        Err(ClientError::StreamNotFound)
    ));
    let mut sub = subscriber(&s, "missing", SubscribeStart::Next);
    assert!(matches!(
        sub.next_segment().await,
        Err(ClientError::StreamNotFound)
    ));

    s.server.create_channel("live", "text/plain").await.unwrap();
    let mut publisher = publisher(&s, "live");
    publisher.write_segment("one").await.unwrap();
    let mut sub = subscriber(&s, "live", SubscribeStart::Next);
    let waiting = tokio::spawn(async move { sub.next_segment().await.map(|s| s.is_none()) });
    eventually("waiting", || s.server.stats().waiting_gets == 1).await;
    publisher.close().await.unwrap();
    assert!(
        within("EOS", waiting).await.unwrap().unwrap(),
        "end of stream"
    );
    let mut after = self::publisher(&s, "live");
    assert!(after.write_segment("two").await.unwrap_err().is_end());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preconnected_publisher_gets_end_of_stream() {
    let s = TestServer::start().await;
    let mut publisher = publisher(&s, "ch");
    publisher.write_segment("zero").await.unwrap();
    eventually("1 preconnected", || s.server.stats().pending_posts == 1).await;
    s.delete("/ch").await;
    assert!(matches!(
        publisher.write_segment("one").await,
        Err(ClientError::EndOfStream)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_segment_fails_for_its_subscribers() {
    let s = TestServer::start().await;
    let mut publisher = publisher(&s, "ch");
    // The publisher's preconnect creates the channel (autocreate); a subscriber before it gets 404.
    eventually("seq 0 preconnected", || s.server.stats().pending_posts == 1).await;
    let mut sub = subscriber(&s, "ch", SubscribeStart::Next);
    let reader = tokio::spawn(async move {
        let mut segment = sub.next_segment().await.unwrap().unwrap();
        let first = segment.chunk().await.unwrap().unwrap();
        let rest = loop {
            match segment.chunk().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        (first, rest.map(|_| ()), sub)
    });
    eventually("waiting", || s.server.stats().waiting_gets == 1).await;
    let mut segment = publisher.next_segment();
    segment.write("partial").await.unwrap();
    eventually("streaming", || s.server.stats().streaming_gets == 1).await;
    segment.abort();
    let (first, rest, mut sub) = within("abnormal end", reader).await.unwrap();
    assert_eq!(&first[..], b"partial");
    match rest {
        Err(ClientError::SegmentFailed { seq: 0, bytes: 7 }) => {}
        other => panic!("expected SegmentFailed, got {other:?}"),
    }
    // The channel goes on with the next segment.
    publisher.write_segment("whole").await.unwrap();
    let next = within("next", sub.next_segment()).await.unwrap().unwrap();
    assert_eq!(next.seq, 1);
    assert_eq!(next.read_to_end().await.unwrap(), b"whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refusals_are_typed_errors() {
    let s = TestServer::with_config(Config {
        max_segment_bytes: 1000,
        ..Config::default()
    })
    .await;
    let mut publisher = publisher(&s, "ch");
    let err = publisher.write_segment(vec![0u8; 5000]).await.unwrap_err();
    match err {
        ClientError::TooLarge { seq: 0, message } => assert!(message.contains("1000"), "{message}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // A newer publisher of the same seq wins; the older, still idle one is told so.
    let mut older = Publisher::new(
        &s.url("/ch"),
        PublisherOptions {
            start: PublishStart::Seq(5),
            ..PublisherOptions::default()
        },
    )
    .unwrap();
    eventually("older waits", || s.server.stats().pending_posts == 2).await;
    let mut newer = Publisher::new(
        &s.url("/ch"),
        PublisherOptions {
            start: PublishStart::Seq(5),
            ..PublisherOptions::default()
        },
    )
    .unwrap();
    eventually("newer waits", || s.server.stats().pending_posts == 3).await;
    newer.write_segment("newer").await.unwrap();
    match older.write_segment("older").await {
        Err(ClientError::Conflict { seq: 5, .. }) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_can_start_at_the_write_head_with_a_reset() {
    let s = TestServer::start().await;
    let mut first = publisher(&s, "ch");
    for i in 0..3 {
        first.write_segment(format!("old {i}")).await.unwrap();
    }
    drop(first);
    let mut restarted = Publisher::new(
        &s.url("/ch"),
        PublisherOptions {
            start: PublishStart::WriteHead,
            reset: true,
            ..PublisherOptions::default()
        },
    )
    .unwrap();
    assert_eq!(restarted.next_seq(), None);
    assert_eq!(restarted.write_segment("new 3").await.unwrap(), 3);
    assert_eq!(restarted.next_seq(), Some(4));
    assert_eq!(restarted.write_segment("new 4").await.unwrap(), 4);
    assert_eq!(s.get("/ch/3").await.body, b"new 3");
    assert_eq!(s.get("/ch/4").await.body, b"new 4");
    assert_eq!(s.get("/ch/2").await.body, b"old 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_is_reissued_without_piling_up() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let proxy = CuttingProxy::start(s.addr).await;
    let mut sub = Subscriber::new(
        &format!("http://{}/ch", proxy.addr),
        SubscriberOptions {
            refresh: Duration::from_millis(100),
            ..SubscriberOptions::default()
        },
    )
    .unwrap();
    let reader = tokio::spawn(async move {
        let segment = sub.next_segment().await.unwrap().unwrap();
        segment.read_to_end().await.unwrap()
    });
    // Ten refreshes later the server holds one waiting GET (two for a moment while one request
    // replaces the other), not one per refresh.
    for _ in 0..10 {
        tokio::time::sleep(QUIET / 3).await;
        let waiting = s.server.stats().waiting_gets;
        assert!(waiting <= 2, "abandoned GETs pile up: {waiting}");
    }
    // It was re-issued (a new request, on a new connection) many times over.
    let connections = proxy.accepted();
    assert!(connections >= 5, "only {connections} GETs in a second");
    eventually("one waiting GET", || s.server.stats().waiting_gets == 1).await;
    s.post("/ch/0", b"finally").await;
    assert_eq!(within("segment", reader).await.unwrap(), b"finally");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_reconnects_after_its_connection_dropped() {
    let s = TestServer::start().await;
    s.post("/ch", b"").await;
    let proxy = CuttingProxy::start(s.addr).await;
    let mut sub = Subscriber::new(
        &format!("http://{}/ch", proxy.addr),
        SubscriberOptions {
            retry_delay: Duration::from_millis(20),
            ..SubscriberOptions::default()
        },
    )
    .unwrap();
    eventually("waiting", || s.server.stats().waiting_gets == 1).await;
    proxy.cut_all();
    eventually("the server saw it go", || {
        s.server.stats().waiting_gets == 0
    })
    .await;
    let reader = tokio::spawn(async move {
        let segment = sub.next_segment().await.unwrap().unwrap();
        (segment.seq, segment.read_to_end().await.unwrap())
    });
    eventually("waiting again", || s.server.stats().waiting_gets == 1).await;
    s.post("/ch/0", b"after the cut").await;
    let (seq, data) = within("segment", reader).await.unwrap();
    assert_eq!((seq, &data[..]), (0, &b"after the cut"[..]));
}

/// A TLS front for the server with a fresh self-signed certificate (as `--tls-self-signed` will
/// make): decrypts and forwards every connection to `upstream`.
async fn self_signed_tls_front(upstream: SocketAddr) -> SocketAddr {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (inbound, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(inbound).await else {
                    return;
                };
                let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificates_are_verified_unless_insecure() {
    let s = TestServer::start().await;
    let front = self_signed_tls_front(s.addr).await;
    let url = format!("https://localhost:{}/secure", front.port());
    let mut strict = Publisher::new(
        &url,
        PublisherOptions {
            retries: 0,
            ..PublisherOptions::default()
        },
    )
    .unwrap();
    assert!(
        matches!(
            strict.write_segment("x").await,
            Err(ClientError::Transport(_))
        ),
        "a self-signed certificate must be refused by default"
    );
    assert!(s.server.channel("secure").is_none());

    let insecure = trickle::client::ConnectOptions {
        insecure: true,
        ..Default::default()
    };
    let mut publisher = Publisher::new(
        &url,
        PublisherOptions {
            connect: insecure.clone(),
            ..PublisherOptions::default()
        },
    )
    .unwrap();
    assert_eq!(publisher.write_segment("over tls").await.unwrap(), 0);
    let mut sub = Subscriber::new(
        &url,
        SubscriberOptions {
            start: SubscribeStart::Seq(0),
            connect: insecure,
            ..SubscriberOptions::default()
        },
    )
    .unwrap();
    let segment = sub.next_segment().await.unwrap().unwrap();
    assert_eq!(segment.read_to_end().await.unwrap(), b"over tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_input_stream_fails_the_segment() {
    let s = TestServer::start().await;
    let mut publisher = publisher(&s, "ch");
    // The publisher's preconnect creates the channel (autocreate); a subscriber before it gets 404.
    eventually("seq 0 preconnected", || s.server.stats().pending_posts == 1).await;
    let mut sub = subscriber(&s, "ch", SubscribeStart::Next);
    eventually("waiting", || s.server.stats().waiting_gets == 1).await;
    // An input that fails before its first byte publishes nothing and opens no segment.
    let nothing = futures_util::stream::iter(vec![Err(std::io::Error::other("no camera"))]);
    assert!(publisher.write_stream(nothing).await.is_err());
    assert_eq!(publisher.next_seq(), Some(0));
    // One that fails half-way fails the segment for its subscribers.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let input = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let writing = tokio::spawn(async move { publisher.write_stream(input).await });
    tx.send(Ok(Bytes::from_static(b"half a segment")))
        .await
        .unwrap();
    let mut segment = within("segment", sub.next_segment())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(segment.seq, 0);
    assert_eq!(
        &segment.chunk().await.unwrap().unwrap()[..],
        b"half a segment"
    );
    tx.send(Err(std::io::Error::other("the camera went away")))
        .await
        .unwrap();
    let err = within("publisher", writing).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("camera"), "{err}");
    match within("end", segment.chunk()).await {
        Err(ClientError::SegmentFailed { seq: 0, bytes: 14 }) => {}
        other => panic!("a truncated segment must not look complete: {other:?}"),
    }
}

/// A proxy that holds back every connection whose first request is `POST {path}` until the test
/// releases it: a preconnect that reaches the server late. Each connection it holds is reported
/// on `held`, and again on `ended` once it is over (both sides closed or failed).
struct LatePostProxy {
    addr: SocketAddr,
    held: tokio::sync::mpsc::UnboundedReceiver<()>,
    ended: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: tokio::sync::watch::Sender<bool>,
}

impl LatePostProxy {
    async fn start(upstream: SocketAddr, path: &'static str) -> LatePostProxy {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (held_tx, held) = tokio::sync::mpsc::unbounded_channel();
        let (ended_tx, ended) = tokio::sync::mpsc::unbounded_channel();
        let (release, _) = tokio::sync::watch::channel(false);
        let released = release.clone();
        tokio::spawn(async move {
            loop {
                let (inbound, _) = listener.accept().await.unwrap();
                let held_tx = held_tx.clone();
                let ended_tx = ended_tx.clone();
                let mut released = released.subscribe();
                tokio::spawn(async move {
                    let outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_server, mut to_server) = outbound.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                    });
                    // Every request on the connection is looked at, not only its first: a client
                    // may send the held POST on a connection it used before (keep-alive).
                    let request = format!("POST {path} ");
                    let mut held = false;
                    let mut chunk = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from_client.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let data = &chunk[..n];
                        let starts = data.starts_with(request.as_bytes())
                            || data
                                .windows(request.len() + 2)
                                .any(|w| w.starts_with(b"\r\n") && &w[2..] == request.as_bytes());
                        if starts && !held {
                            held = true;
                            let _ = held_tx.send(());
                            let _ = released.wait_for(|go| *go).await;
                        }
                        if to_server.write_all(data).await.is_err() {
                            break;
                        }
                    }
                    drop(to_server);
                    let _ = answers.await;
                    if held {
                        let _ = ended_tx.send(());
                    }
                });
            }
        });
        LatePostProxy {
            addr,
            held,
            ended,
            release,
        }
    }

    /// Lets every held connection (and any later one) through.
    fn release(&self) {
        self.release.send_replace(true);
    }
}

/// A publisher of `ch` through a [`LatePostProxy`] that has written seq 0 and whose preconnect
/// for seq 1 the proxy now holds back.
async fn publisher_with_a_held_preconnect(s: &TestServer) -> (LatePostProxy, Publisher) {
    let mut proxy = LatePostProxy::start(s.addr, "/ch/1").await;
    let mut publisher = Publisher::new(
        &format!("http://{}/ch", proxy.addr),
        PublisherOptions::default(),
    )
    .unwrap();
    assert_eq!(publisher.write_segment("zero").await.unwrap(), 0);
    within("the preconnect for seq 1 held", proxy.held.recv()).await;
    (proxy, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_deletes_again_when_the_preconnect_arrived_after_the_delete() {
    let deletes = Arc::new(AtomicUsize::new(0));
    let counted = deletes.clone();
    let s = TestServer::with_server(
        trickle::Server::builder(Config::default())
            .before_delete(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            })
            .build(),
    )
    .await;
    let (mut proxy, publisher) = publisher_with_a_held_preconnect(&s).await;
    // The DELETE overtakes the preconnect for seq 1 ...
    let closing = tokio::spawn(publisher.close());
    eventually("the DELETE at the server", || {
        deletes.load(Ordering::SeqCst) == 1 && s.server.channel("ch").is_none()
    })
    .await;
    // ... which then makes the channel again (autocreate) and waits there for its body. (Close
    // gives it a second to be answered: released at once, it gets there well within that.)
    proxy.release();
    eventually("the late preconnect making the channel again", || {
        s.server.channel("ch").is_some()
    })
    .await;
    // Close notices, ends the preconnect and deletes the channel once more.
    within("close", closing).await.unwrap().unwrap();
    // Once the preconnect's connection is over, nothing is left that could make the channel again.
    within("the late preconnect ended", proxy.ended.recv()).await;
    assert!(
        s.server.channel("ch").is_none(),
        "the late preconnect's channel is left"
    );
    assert_eq!(deletes.load(Ordering::SeqCst), 2);

    // Without a late preconnect, close takes the server's end of stream for its answer and
    // deletes only once.
    let mut publisher = self::publisher(&s, "other");
    publisher.write_segment("zero").await.unwrap();
    eventually("1 preconnected", || s.server.stats().pending_posts == 1).await;
    within("close", publisher.close()).await.unwrap();
    assert!(s.server.channel("other").is_none());
    assert_eq!(
        deletes.load(Ordering::SeqCst),
        3,
        "close deleted again although the server had ended its preconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_deletes_again_when_the_late_preconnect_was_answered_otherwise() {
    // The server answers a POST that waits this long for its body 408: well within close's
    // second for the preconnect.
    let s = TestServer::with_config(Config {
        wait_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let (mut proxy, publisher) = publisher_with_a_held_preconnect(&s).await;
    let closing = tokio::spawn(publisher.close());
    eventually("the DELETE at the server", || {
        s.server.channel("ch").is_none()
    })
    .await;
    // The late preconnect makes the channel again and is answered 408, not end of stream.
    proxy.release();
    within("close", closing)
        .await
        .expect("close returns")
        .unwrap();
    within("the late preconnect ended", proxy.ended.recv()).await;
    assert!(
        s.server.channel("ch").is_none(),
        "the late preconnect's channel is left"
    );
}
