//! Every route, answered the same over every transport: one table of requests (each route of
//! ours, bad seqs, wrong methods, paths that are no route, a base path, tokens, and routes an
//! embedder registered, one of them shaped like a segment's path) runs in order against a fresh
//! server per transport (HTTP/1.1 and h2c on the plain port, HTTP/1.1 and HTTP/2 over TLS), and
//! every transport must give the same status, `Lp-Trickle-*` and other meaningful headers, and
//! body, and count the same 404s and 470s.
//!
//! HTTP/1.1 is spoken raw (our front answers some requests itself, hyper the rest); HTTP/2 with
//! reqwest, a real client, with prior knowledge on the plain port and by ALPN over TLS.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Path;
use axum::routing::get;
use common::{PATIENCE, TEST_SECRET, eventually, token};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use trickle::auth::Secret;
use trickle::{Config, Server};

/// The kinds of server the table runs against.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Plain,
    /// Without the embedder's routes (the HTTP/1.1 front then answers plain GETs of segments
    /// itself).
    Bare,
    /// Under `/ai/trickle/`.
    Base,
    /// With tokens.
    Auth,
}

/// One request of the table, and what it must get on every transport. `{pub}`, `{sub}`,
/// `{other}` and `{admin}` in a path or header stand for tokens (publish `ch`; subscribe `ch`; subscribe
/// `elsewhere`).
struct Row {
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
    /// A segment to publish (path, body) once this request waits for it.
    publish_while_waiting: Option<(&'static str, &'static [u8])>,
    status: u16,
    /// The body, when it matters which.
    text: Option<&'static str>,
}

const fn row(method: &'static str, path: &'static str, status: u16) -> Row {
    Row {
        method,
        path,
        headers: &[],
        body: b"",
        publish_while_waiting: None,
        status,
        text: None,
    }
}

impl Row {
    const fn text(mut self, text: &'static str) -> Row {
        self.text = Some(text);
        self
    }
    const fn body(mut self, body: &'static [u8]) -> Row {
        self.body = body;
        self
    }
    const fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Row {
        self.headers = headers;
        self
    }
    const fn then_publish(mut self, path: &'static str, body: &'static [u8]) -> Row {
        self.publish_while_waiting = Some((path, body));
        self
    }
}

const NOT_FOUND: &str = "404 page not found\n";
const INVALID_IDX: &str = "Invalid idx\n";
const NOT_MPEGTS: &str = "HLS needs an MPEG-TS channel (video/mp2t)\n";

fn plain_rows(extras: bool) -> Vec<Row> {
    let mut rows = vec![
        row("POST", "/ch", 200)
            .headers(&[("Expect-Content", "video/mp2t")])
            .text(""),
        row("POST", "/ch", 200).text(""),
        row("POST", "/ch/0", 200).body(b"zero").text(""),
        row("GET", "/ch/0", 200).text("zero"),
        row("HEAD", "/ch/0", 200).text(""),
        row("GET", "/ch/next", 200).text("1"),
        row("GET", "/ch/-2", 200).text("zero"),
        row("GET", "/ch/-1", 200)
            .then_publish("/ch/1", b"one")
            .text("one"),
        row("GET", "/ch/7", 470),
        row("GET", "/ch/abc", 400).text(INVALID_IDX),
        // Not a seq, and no route: the router's answer, whatever the transport.
        row("GET", "/ch/later", 400).text(INVALID_IDX),
        // The live stream's answers that end (a viewer's never does).
        row("HEAD", "/ch/live", 200).text(""),
        row("GET", "/missing/live", 404).text("Stream not found\n"),
        row("GET", "/ch/live?from=then", 400).text("Invalid from: expected next or current\n"),
        // The outputs for people: the player page, and live.mp4 of a channel that is missing or
        // not MPEG-TS (what a TS channel streams is for tests/live_mp4.rs).
        row("HEAD", "/ch/watch", 200).text(""),
        row("GET", "/missing/watch", 404).text("Stream not found\n"),
        row("POST", "/ch/watch", 400).body(b"x").text(INVALID_IDX),
        row("GET", "/missing/live.mp4", 404).text("Stream not found\n"),
        row("HEAD", "/_watch", 200).text(""),
        // LL-HLS: what is answered before a remux is needed.
        row("GET", "/missing/ll.m3u8", 404).text("Stream not found\n"),
        row("GET", "/ch/ll.m3u8?_HLS_part=1", 400).text("_HLS_part needs _HLS_msn\n"),
        row("GET", "/ch/x.m4s", 400).text(INVALID_IDX),
        // DASH: the same, for the manifest and each track's pieces.
        row("GET", "/missing/manifest.mpd", 404).text("Stream not found\n"),
        row("GET", "/missing/video-init.mp4", 404).text("Stream not found\n"),
        row("GET", "/missing/audio-0.m4s", 404).text("Stream not found\n"),
        row("GET", "/ch/video-x.m4s", 400).text(INVALID_IDX),
        row("POST", "/ch/manifest.mpd", 400)
            .body(b"x")
            .text(INVALID_IDX),
        // HLS: the answers that do not wait (a playlist waits for a segment it can list, and
        // these bytes are no transport stream; what it lists is for tests/hls.rs).
        row("GET", "/ch/0.ts", 200).text("zero"),
        row("HEAD", "/ch/0.ts", 200).text(""),
        row("GET", "/ch/0.ts?v=1", 404).text("Segment not found\n"),
        row("GET", "/ch/7.ts", 404).text("Segment not found\n"),
        row("GET", "/ch/-1.ts", 400).text(INVALID_IDX),
        row("OPTIONS", "/ch/index.m3u8", 204).text(""),
        row("OPTIONS", "/ch/0.ts", 204).text(""),
        row("POST", "/ch/index.m3u8", 400)
            .body(b"x")
            .text(INVALID_IDX),
        row("GET", "/missing/index.m3u8", 404).text("Stream not found\n"),
        row("GET", "/missing/0.ts", 404).text("Stream not found\n"),
        row("POST", "/txt", 200)
            .headers(&[("Expect-Content", "text/plain")])
            .text(""),
        row("GET", "/txt/index.m3u8", 415).text(NOT_MPEGTS),
        row("HEAD", "/txt/0.ts", 415).text(""),
        row("DELETE", "/txt", 200).text(""),
        // The channel API (its JSON holds times, so only its heads and errors are compared).
        row("HEAD", "/_channels", 200).text(""),
        row("HEAD", "/_channels/ch", 200).text(""),
        row("GET", "/_channels/missing", 404).text("Stream not found\n"),
        row("POST", "/_channels", 405),
        row("DELETE", "/_channels/ch", 405),
        row("POST", "/_events", 405),
        row("GET", "/missing/0", 404).text("Stream not found\n"),
        row("GET", "/missing/abc", 404).text("Stream not found\n"),
        row("POST", "/ch/next", 400).body(b"x").text(INVALID_IDX),
        row("PUT", "/ch/0", 405).text(""),
        row("GET", "/ch", 405).text(""),
        row("GET", "/ch/0/x", 404).text(NOT_FOUND),
        row("GET", "/ch/", 404).text(NOT_FOUND),
        row("GET", "/", 404).text(NOT_FOUND),
    ];
    rows.extend(if extras {
        // The embedder's routes, one shaped like a segment's path.
        [
            row("GET", "/ch/something", 200).text("something of ch\n"),
            row("POST", "/ch/something", 405),
            row("GET", "/extra", 200).text("extra\n"),
        ]
    } else {
        [
            row("GET", "/ch/something", 400).text(INVALID_IDX),
            row("POST", "/ch/something", 400).text(INVALID_IDX),
            row("GET", "/extra", 405),
        ]
    });
    rows.extend([
        row("DELETE", "/ch/0", 200).text(""),
        row("DELETE", "/ch/9", 400).text("Nonexistent segment\n"),
        row("DELETE", "/ch/abc", 400).text(INVALID_IDX),
        row("POST", "/_x", 403).text("Reserved channel name\n"),
        row("DELETE", "/ch", 200).text(""),
        row("GET", "/ch/next", 404),
        row("DELETE", "/ch", 404),
    ]);
    rows
}

fn base_rows() -> Vec<Row> {
    vec![
        row("POST", "/ai/trickle/ch/0", 200).body(b"hi").text(""),
        row("GET", "/ai/trickle/ch/0", 200).text("hi"),
        row("GET", "/ai/trickle/ch/next", 200).text("1"),
        row("GET", "/ai/trickle/ch/something", 200).text("something of ch\n"),
        row("GET", "/ai/trickle/ch/later", 400).text(INVALID_IDX),
        row("HEAD", "/ai/trickle/ch/live", 200).text(""),
        row("GET", "/ai/trickle/ch/index.m3u8", 415).text(NOT_MPEGTS),
        row("OPTIONS", "/ai/trickle/ch/0.ts", 204).text(""),
        row("GET", "/ch/0", 404).text(NOT_FOUND),
        row("GET", "/ai/trickle", 404).text(NOT_FOUND),
        row("PUT", "/ai/trickle/ch", 405),
        row("DELETE", "/ai/trickle/ch", 200).text(""),
    ]
}

fn auth_rows() -> Vec<Row> {
    vec![
        row("GET", "/ch/0", 401),
        row("POST", "/{pub}/ch/0", 200).body(b"x").text(""),
        row("GET", "/{sub}/ch/0", 200).text("x"),
        row("GET", "/ch/0", 200)
            .headers(&[("Authorization", "Bearer {sub}")])
            .text("x"),
        row("GET", "/{sub}/ch/-1", 200)
            .then_publish("/{pub}/ch/1", b"y")
            .text("y"),
        row("POST", "/{sub}/ch/2", 403).body(b"no"),
        row("GET", "/{sub}/ch/something", 200).text("something of ch\n"),
        row("GET", "/ch/something", 401),
        row("GET", "/{other}/ch/something", 403),
        row("GET", "/{sub}/ch/later", 400).text(INVALID_IDX),
        row("HEAD", "/{sub}/ch/live", 200).text(""),
        row("GET", "/ch/live", 401),
        row("GET", "/{sub}/ch/index.m3u8", 415).text(NOT_MPEGTS),
        row("GET", "/{sub}/ch/0.ts", 415).text(NOT_MPEGTS),
        row("GET", "/ch/index.m3u8", 401),
        // A preflight carries no token: with tokens on, pages put theirs in the path.
        row("OPTIONS", "/ch/index.m3u8", 401),
        row("OPTIONS", "/{sub}/ch/index.m3u8", 204).text(""),
        row("HEAD", "/_channels", 401),
        row("HEAD", "/{sub}/_channels/ch", 403),
        row("HEAD", "/{admin}/_channels/ch", 200).text(""),
        row("HEAD", "/_channels", 200)
            .headers(&[("Authorization", "Bearer {admin}")])
            .text(""),
        row("GET", "/{admin}/_channels/missing", 404).text("Stream not found\n"),
        row("HEAD", "/{sub}/ch/watch", 200).text(""),
        row("HEAD", "/{sub}/_watch", 403),
        row("HEAD", "/{admin}/_watch", 200).text(""),
        row("GET", "/{sub}/ch/0/x", 404).text(NOT_FOUND),
        row("DELETE", "/{pub}/ch", 200).text(""),
    ]
}

/// Routes an embedder registers; `base` as the server's.
fn extra_routes(base: &str) -> axum::Router {
    axum::Router::new()
        .route(
            &format!("{base}{{ch}}/something"),
            get(|Path(ch): Path<String>| async move {
                ([("x-extra", "yes")], format!("something of {ch}\n"))
            }),
        )
        .route("/extra", get(|| async { "extra\n" }))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    H1,
    H2c,
    TlsH1,
    TlsH2,
}

impl Transport {
    fn tls(self) -> bool {
        matches!(self, Transport::TlsH1 | Transport::TlsH2)
    }
}

/// What a request got: status, the headers that mean something, body.
#[derive(Debug, PartialEq, Clone)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

fn meaningful(name: &str) -> bool {
    name.starts_with("lp-trickle-")
        || [
            "content-type",
            "allow",
            "www-authenticate",
            "x-content-type-options",
            "x-extra",
            "cache-control",
            "access-control-allow-origin",
            "access-control-allow-methods",
        ]
        .contains(&name)
}

/// A request with its tokens filled in.
#[derive(Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct Client {
    transport: Transport,
    addr: SocketAddr,
    h2: reqwest::Client,
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    fn new(transport: Transport, addr: SocketAddr) -> Client {
        // reqwest is built without a default crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let h2 = reqwest::Client::builder()
            .http2_prior_knowledge()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        Client {
            transport,
            addr,
            h2,
            // The raw TLS client offers HTTP/1.1 only.
            tls: common::tls::connector(&[b"http/1.1"]).0,
        }
    }

    async fn send(&self, request: &Request) -> Reply {
        let sent = async {
            match self.transport {
                Transport::H1 => {
                    let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
                    h1(tcp, request).await
                }
                Transport::TlsH1 => {
                    let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
                    let name = ServerName::try_from("localhost").unwrap();
                    let tls = self.tls.connect(name, tcp).await.unwrap();
                    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
                    h1(tls, request).await
                }
                Transport::H2c => self.h2(&format!("http://{}", self.addr), request).await,
                Transport::TlsH2 => {
                    let url = format!("https://localhost:{}", self.addr.port());
                    self.h2(&url, request).await
                }
            }
        };
        tokio::time::timeout(PATIENCE, sent)
            .await
            .expect("an answer in time")
    }

    async fn h2(&self, origin: &str, request: &Request) -> Reply {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
        let mut builder = self.h2.request(method, format!("{origin}{}", request.path));
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if !request.body.is_empty() || request.method == "POST" {
            builder = builder.body(request.body.clone());
        }
        let response = builder.send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| meaningful(name.as_str()))
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
            .collect();
        let body = response.text().await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// One request over raw HTTP/1.1 on `stream`, read to the end of the connection.
async fn h1(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: &Request) -> Reply {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n",
        request.method, request.path
    );
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !request.body.is_empty() || request.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&request.body).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // To the end of the connection (a TLS peer may end it without close_notify: that is the end too).
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let all: BTreeMap<String, String> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    let body = if all.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    let headers = all
        .into_iter()
        .filter(|(name, _)| meaningful(name))
        .collect();
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// A fresh server of `kind` with the embedder's routes, served over TLS or not.
async fn start(kind: Kind, tls: bool) -> (Server, SocketAddr) {
    let mut config = Config::default();
    match kind {
        Kind::Plain | Kind::Bare => {}
        Kind::Base => config.base_path = "/ai/trickle".into(),
        Kind::Auth => config.auth_secret = Some(Secret::new(TEST_SECRET).unwrap()),
    }
    let base = match kind {
        Kind::Base => "/ai/trickle/",
        _ => "/",
    };
    let server = match kind {
        Kind::Bare => Server::new(config),
        _ => Server::builder(config).routes(extra_routes(base)).build(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let never = std::future::pending();
    if tls {
        let (config, _) = trickle::server::tls::self_signed().unwrap();
        tokio::spawn(trickle::server::serve_tls(
            listener,
            server.clone(),
            config,
            never,
        ));
    } else {
        tokio::spawn(trickle::serve(listener, server.clone(), never));
    }
    (server, addr)
}

/// Every row's reply over `transport`, and the 404s and 470s the server counted.
async fn run(kind: Kind, rows: &[Row], transport: Transport) -> (Vec<Reply>, (u64, u64)) {
    let (server, addr) = start(kind, transport.tls()).await;
    let client = Arc::new(Client::new(transport, addr));
    let tokens = [
        ("{pub}", token(&["ch"], &[], false)),
        ("{sub}", token(&[], &["ch"], false)),
        ("{other}", token(&[], &["elsewhere"], false)),
        ("{admin}", token(&[], &[], true)),
    ];
    let fill = |s: &str| {
        tokens
            .iter()
            .fold(s.to_string(), |s, (name, token)| s.replace(name, token))
    };
    let request = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| Request {
        method: method.into(),
        path: fill(path),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), fill(value)))
            .collect(),
        body: body.to_vec(),
    };
    let mut replies = Vec::new();
    for row in rows {
        let asked = request(row.method, row.path, row.headers, row.body);
        let reply = match row.publish_while_waiting {
            None => client.send(&asked).await,
            Some((path, body)) => {
                let waiting = tokio::spawn({
                    let client = client.clone();
                    async move { client.send(&asked).await }
                });
                eventually("the GET waits", || server.stats().waiting_gets == 1).await;
                let published = client.send(&request("POST", path, &[], body)).await;
                assert_eq!(published.status, 200, "{transport:?}: publishing to {path}");
                waiting.await.unwrap()
            }
        };
        let what = format!("{transport:?}: {} {}", row.method, row.path);
        assert_eq!(reply.status, row.status, "{what}: {reply:?}");
        if let Some(text) = row.text {
            assert_eq!(reply.body, text, "{what}");
        }
        replies.push(reply);
    }
    let metrics = server.metrics();
    server.shutdown();
    (replies, (metrics.responses_404, metrics.responses_470))
}

/// Runs `rows` over every transport and compares each transport's replies with HTTP/1.1's.
async fn same_everywhere(kind: Kind, rows: Vec<Row>) {
    let (expected, counted) = run(kind, &rows, Transport::H1).await;
    for transport in [Transport::H2c, Transport::TlsH1, Transport::TlsH2] {
        let (got, got_counted) = run(kind, &rows, transport).await;
        for ((row, want), got) in rows.iter().zip(&expected).zip(&got) {
            assert_eq!(
                got, want,
                "{kind:?} {} {} over {transport:?} (left) and H1 (right)",
                row.method, row.path
            );
        }
        assert_eq!(
            got_counted, counted,
            "{kind:?}: 404s and 470s over {transport:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_the_same_over_every_transport() {
    same_everywhere(Kind::Plain, plain_rows(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_without_routes_of_the_embedder_answers_the_same_over_every_transport() {
    same_everywhere(Kind::Bare, plain_rows(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_under_a_base_path_answers_the_same_over_every_transport() {
    same_everywhere(Kind::Base, base_rows()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_tokens_answers_the_same_over_every_transport() {
    same_everywhere(Kind::Auth, auth_rows()).await;
}
