//! `trickle serve` over TLS, as a real process: a self-signed certificate whose logged fingerprint
//! is the one the server presents, certificate files given with `--tls-cert/--tls-key`, HTTP/2
//! chosen by ALPN (and HTTP/1.1 still served), our client with `--insecure`, and clear errors for
//! unreadable files. A client speaking plain HTTP to the TLS port does not disturb anybody else.

mod common;

use common::tls::connector;
use common::{spawn_serve_with_log, trickle};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trickle::client::{
    ConnectOptions, Publisher, PublisherOptions, SubscribeStart, Subscriber, SubscriberOptions,
};

/// The certificate the server at `addr` presents, and the ALPN protocol it picked when offered
/// `alpn`.
async fn handshake(addr: &str, alpn: &[&[u8]]) -> (CertificateDer<'static>, Option<Vec<u8>>) {
    let (_, cert, alpn) = tls_connect(addr, alpn).await;
    (cert, alpn)
}

/// A TLS connection to `addr` offering `alpn`, with the certificate shown and the protocol picked.
async fn tls_connect(
    addr: &str,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    CertificateDer<'static>,
    Option<Vec<u8>>,
) {
    let (connector, capture) = connector(alpn);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    let cert = capture.0.lock().unwrap().clone().expect("a certificate");
    (tls, cert, alpn)
}

/// Reads from `stream` into `got` until it holds `needle`.
async fn read_until(stream: &mut (impl AsyncReadExt + Unpin), got: &mut Vec<u8>, needle: &[u8]) {
    let found = async {
        while !got.windows(needle.len()).any(|w| w == needle) {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {:?}", String::from_utf8_lossy(needle));
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(common::PATIENCE, found)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no {:?} in {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(got)
            )
        });
}

fn insecure() -> ConnectOptions {
    ConnectOptions {
        insecure: true,
        ..Default::default()
    }
}

fn insecure_publisher(url: &str) -> Publisher {
    Publisher::new(
        url,
        PublisherOptions {
            connect: insecure(),
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_serves_https_and_logs_its_fingerprint() {
    let (_child, addr, log) =
        spawn_serve_with_log(&["--listen", "127.0.0.1:0", "--tls-self-signed"], &[]).await;
    let logged = log
        .iter()
        .find_map(|line| line.split("SHA-256 fingerprint ").nth(1))
        .unwrap_or_else(|| panic!("no fingerprint in {log:?}"))
        .trim()
        .to_string();
    let (cert, alpn) = handshake(&addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(trickle::server::tls::fingerprint(&cert), logged);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (_, alpn) = handshake(&addr, &[b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    // Our clients, certificate checks off (they offer h2 by ALPN): a segment goes through.
    let url = format!("https://{addr}/secure");
    let mut publisher = insecure_publisher(&url);
    publisher.create().await.unwrap();
    let mut subscriber = Subscriber::new(
        &url,
        SubscriberOptions {
            start: SubscribeStart::Seq(0),
            connect: insecure(),
            ..Default::default()
        },
    )
    .unwrap();
    publisher.write_segment("over tls").await.unwrap();
    let segment = subscriber.next_segment().await.unwrap().unwrap();
    assert_eq!(segment.read_to_end().await.unwrap(), b"over tls");

    // Without --insecure the self-signed certificate is refused.
    let strict = Publisher::new(&url, PublisherOptions::default()).unwrap();
    let err = strict.create().await.unwrap_err();
    assert!(
        matches!(err, trickle::client::ClientError::Transport(_)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_over_https() {
    // Over https the bench's subscribers are the library's (cli/bench/mod.rs, `Reader`).
    let (_child, addr, _) =
        spawn_serve_with_log(&["--listen", "127.0.0.1:0", "--tls-self-signed"], &[]).await;
    let url = format!("https://{addr}");
    let output = common::trickle()
        .args([
            "bench",
            &url,
            "--insecure",
            "--subs",
            "3",
            "--segments",
            "5",
        ])
        .args(["--segment-bytes", "20000", "--json"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["segments_complete"], 15, "{report:#}");
    assert_eq!(report["errors"]["total"], 0, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_over_tls_delivers_each_write_as_it_comes() {
    let (_child, addr, _) =
        spawn_serve_with_log(&["--listen", "127.0.0.1:0", "--tls-self-signed"], &[]).await;
    let url = format!("https://{addr}/live");
    let mut publisher = insecure_publisher(&url);
    publisher.create().await.unwrap();
    let (mut tls, _, alpn) = tls_connect(&addr, &[b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /live/0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut segment = publisher.next_segment();
    segment.write("first write").await.unwrap();
    // It arrives while the segment is still open: nothing is left in a TLS buffer.
    let mut got = Vec::new();
    read_until(&mut tls, &mut got, b"first write").await;
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    segment.write("second write").await.unwrap();
    read_until(&mut tls, &mut got, b"second write").await;
    segment.finish().await.unwrap();
    read_until(&mut tls, &mut got, b"\r\n0\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_are_served_and_plain_http_is_turned_away() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let (_child, addr, _) = spawn_serve_with_log(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let (served, _) = handshake(&addr, &[b"http/1.1"]).await;
    assert_eq!(served, *certified.cert.der());

    // Plain HTTP on the TLS port: the handshake fails and the connection closes.
    let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /ch/0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(common::PATIENCE, plain.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(!buf.starts_with(b"HTTP/1.1 200"));

    // ...and TLS clients are still served.
    let url = format!("https://{addr}/files");
    let publisher = insecure_publisher(&url);
    publisher.create().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_certificate_files_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    for (cert, expected) in [
        (&missing, "cannot read the certificate chain from"),
        (&garbage, "no CERTIFICATE block"),
    ] {
        let output = trickle()
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(&missing)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let output = trickle()
        .args(["serve", "--tls-cert", "x.pem"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_over_tls_are_closed() {
    let (_child, addr, _) = spawn_serve_with_log(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-self-signed",
            "--header-timeout",
            "300ms",
        ],
        &[],
    )
    .await;
    let (mut tls, _, alpn) = tls_connect(&addr, &[b"h2"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    common::h2::hello(&mut tls).await;
    let frames = common::h2::kinds(&common::h2::until_closed_answering_pings(&mut tls).await);
    assert!(frames.contains(&common::h2::GOAWAY), "frames {frames:?}");
}

/// An HTTP/1.1-over-TLS connection to `server` through an in-memory pipe of `capacity` bytes each
/// way, served as `trickle serve` serves each connection; the task serving it. The pipe's small,
/// fixed buffers put a response's last bytes where real sockets' autotuned ones leave it to luck:
/// in the TLS layer's own buffer.
async fn tls_over_pipe(
    server: trickle::Server,
    capacity: usize,
) -> (
    tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
    tokio::task::JoinHandle<()>,
) {
    let (client, server_end) = tokio::io::duplex(capacity);
    let (config, _) = trickle::server::tls::self_signed().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let serving = tokio::spawn(async move {
        let tls = acceptor.accept(server_end).await.unwrap();
        trickle::server::serve_connection(server, tls).await;
    });
    let (connector, _) = connector(&[b"http/1.1"]);
    let name = ServerName::try_from("localhost").unwrap();
    (connector.connect(name, client).await.unwrap(), serving)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_reader_that_stops_just_before_the_end_is_cut_off_after_the_send_timeout() {
    let server = trickle::Server::new(trickle::Config {
        send_timeout: std::time::Duration::from_millis(500),
        // Far beyond the test's patience: only the send timeout can end the connection.
        header_timeout: std::time::Duration::from_secs(600),
        ..trickle::Config::default()
    });
    let mut publisher = trickle::local::LocalPublisher::new(&server, "big", "video/mp2t");
    publisher.create_channel().await.unwrap();
    publisher
        .write_bytes(common::pattern(512 << 10, 1))
        .await
        .unwrap();
    let request = b"GET /big/0 HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; 64 << 10];
    // The whole answer once, for its length.
    let (mut whole, _) = tls_over_pipe(server.clone(), 8 << 10).await;
    whole.write_all(request).await.unwrap();
    let mut total = Vec::new();
    while !total.ends_with(b"\r\n0\r\n\r\n") {
        let n = whole.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early");
        total.extend_from_slice(&buf[..n]);
    }
    // Readers that stop with the last bytes unread, more than the pipe and the client's own TLS
    // buffer hold: the rest sits in the server's TLS buffer, and the server used to wait for it
    // to be flushed forever.
    for left in [48usize << 10, 60 << 10] {
        let (mut stalled, serving) = tls_over_pipe(server.clone(), 8 << 10).await;
        stalled.write_all(request).await.unwrap();
        let mut got = 0;
        while got < total.len() - left {
            let want = (total.len() - left - got).min(buf.len());
            let n = stalled.read(&mut buf[..want]).await.unwrap();
            assert!(n > 0, "closed early");
            got += n;
        }
        tokio::time::timeout(common::PATIENCE, serving)
            .await
            .unwrap_or_else(|_| panic!("{left} bytes left unread: the connection is still served"))
            .unwrap();
    }
}
