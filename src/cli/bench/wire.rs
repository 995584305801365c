//! The bench's own subscriber for `http://` servers: the reference wire protocol (one GET per seq,
//! the GET for the next seq sent as soon as a segment's response head arrives, a `470` answered by
//! the write head in `Lp-Trickle-Latest`, end of stream by `Lp-Trickle-Closed`) spoken directly
//! over HTTP/1.1 keep-alive connections: no task, timer or allocation per request, one read buffer
//! per subscriber, and the body handed to the checker straight from that buffer.
//!
//! Why not [`crate::client::Subscriber`]: with 10,000 subscribers the library client (a task, a
//! request object and pool bookkeeping per GET in reqwest and hyper, and glibc's allocator
//! contended between threads) cost the load generator about twice the server's CPU per segment on
//! the same cores, so `c10k` measured mostly the bench itself (BENCHMARKS.md). `https://` servers
//! are still read with the library client.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol;

/// Bytes read from a connection at most at once; also the longest response head accepted.
const BUFFER: usize = 16 << 10;
/// The longest error body kept for the message.
const ERROR_BODY: usize = 200;
/// 470s in a row for one segment before giving up (each jumps to the write head the server
/// named, so more than a few means the server is not making sense).
const MAX_GAPS: u32 = 10;

/// Where one channel is: what every subscriber of it sends.
pub struct Target {
    addr: SocketAddr,
    /// The channel's path, e.g. `/bench-1234-0`.
    path: String,
    /// The request after the path: the HTTP version, Host and any extra headers, the blank line.
    tail: Vec<u8>,
}

impl Target {
    /// The channel at `url` (already checked to be `http://`), with `headers` on every request.
    pub async fn resolve(url: &reqwest::Url, headers: &http::HeaderMap) -> anyhow::Result<Target> {
        let host = url.host_str().context("the server URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let mut tail = b" HTTP/1.1\r\nHost: ".to_vec();
        tail.extend_from_slice(url.authority().as_bytes());
        tail.extend_from_slice(b"\r\nUser-Agent: trickle-bench\r\n");
        for (name, value) in headers {
            tail.extend_from_slice(name.as_str().as_bytes());
            tail.extend_from_slice(b": ");
            tail.extend_from_slice(value.as_bytes());
            tail.extend_from_slice(b"\r\n");
        }
        tail.extend_from_slice(b"\r\n");
        Ok(Target {
            addr,
            path: url.path().trim_end_matches('/').to_string(),
            tail,
        })
    }
}

/// A GET sent and not yet answered.
struct Sent {
    stream: TcpStream,
    /// Sent on a kept-alive connection, which the server may have closed meanwhile.
    reused: bool,
}

/// How a response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// `Transfer-Encoding: chunked`, before a chunk-size line.
    ChunkSize,
    /// In the middle of a chunk, with this many bytes left.
    ChunkData(u64),
    /// At the CRLF after a chunk's bytes.
    ChunkEnd,
    /// After the last chunk, up to the blank line that ends the trailers.
    Trailers,
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// Until the server closes the connection.
    Close,
    /// Read to its end.
    Done,
}

/// The response being read.
struct Body {
    stream: TcpStream,
    framing: Framing,
    keep_alive: bool,
}

/// One subscriber of one channel.
pub struct WireSubscriber {
    target: Arc<Target>,
    /// The seq the pending (or next) GET asks for; `None` is `-1`, the next segment.
    next: Option<u64>,
    pending: Option<Sent>,
    idle: Option<TcpStream>,
    body: Option<Body>,
    /// Bytes read from the connection of `body` (or of the head being read): `buf[pos..filled]`.
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
    request: Vec<u8>,
}

/// What a response head says, as far as a subscriber cares.
struct Head {
    status: u16,
    seq: Option<u64>,
    latest: Option<u64>,
    closed: bool,
    framing: Framing,
    keep_alive: bool,
    len: usize,
}

impl WireSubscriber {
    pub fn new(target: Arc<Target>, start: u64) -> WireSubscriber {
        WireSubscriber {
            target,
            next: Some(start),
            pending: None,
            idle: None,
            body: None,
            buf: vec![0; BUFFER].into_boxed_slice(),
            pos: 0,
            filled: 0,
            request: Vec::with_capacity(256),
        }
    }

    /// Sends the GET for `self.next` on the idle connection, or a new one.
    async fn send(&mut self) -> anyhow::Result<()> {
        use std::io::Write as _;
        self.request.clear();
        self.request.extend_from_slice(b"GET ");
        self.request.extend_from_slice(self.target.path.as_bytes());
        match self.next {
            Some(seq) => write!(self.request, "/{seq}")?,
            None => self.request.extend_from_slice(b"/-1"),
        }
        self.request.extend_from_slice(&self.target.tail);
        if let Some(mut stream) = self.idle.take()
            && stream.write_all(&self.request).await.is_ok()
        {
            self.pending = Some(Sent {
                stream,
                reused: true,
            });
            return Ok(());
        }
        let mut stream = self.connect().await?;
        stream
            .write_all(&self.request)
            .await
            .context("cannot send a GET")?;
        self.pending = Some(Sent {
            stream,
            reused: false,
        });
        Ok(())
    }

    async fn connect(&self) -> anyhow::Result<TcpStream> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .with_context(|| format!("cannot connect to {}", self.target.addr))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// The next segment's seq once its response head arrived, `None` at the end of the stream.
    /// Read its bytes with [`WireSubscriber::chunk`]; the GET for the seq after it is sent first.
    pub async fn next_segment(&mut self) -> anyhow::Result<Option<u64>> {
        // Whatever is left of the segment before is skipped.
        self.skip_body().await?;
        let mut resent = false;
        let mut gaps = 0;
        loop {
            if self.pending.is_none() {
                self.send().await?;
            }
            let Sent { mut stream, reused } = self.pending.take().expect("a GET was sent");
            self.pos = 0;
            self.filled = 0;
            let head = match self.read_head(&mut stream).await {
                Ok(head) => head,
                // A kept-alive connection the server closed before it saw the GET: once more on
                // a new connection, as HTTP clients do for requests that changed nothing.
                Err(_) if reused && self.filled == 0 && !resent => {
                    resent = true;
                    continue;
                }
                Err(err) => return Err(err),
            };
            self.pos += head.len;
            self.body = Some(Body {
                stream,
                framing: head.framing,
                keep_alive: head.keep_alive,
            });
            let requested = self.next;
            if head.closed {
                return Ok(None);
            }
            match head.status {
                200 => {
                    let seq = head.seq.or(requested).unwrap_or(0);
                    self.next = Some(seq + 1);
                    self.send().await?;
                    return Ok(Some(seq));
                }
                protocol::STATUS_NOT_HELD => {
                    gaps += 1;
                    if gaps > MAX_GAPS {
                        bail!("GET {}: still 470 after {MAX_GAPS} jumps", self.target.path);
                    }
                    self.skip_body().await?;
                    self.next = head.latest;
                }
                // The server's wait timeout: ask again.
                408 => self.skip_body().await?,
                404 => bail!("channel {} not found (404)", self.target.path),
                status => {
                    let message = self.error_body().await;
                    bail!("GET {}: HTTP {status}: {message}", self.target.path)
                }
            }
        }
    }

    /// The next bytes of the current segment; `None` once it ended (and its connection is idle,
    /// or closed).
    pub async fn chunk(&mut self) -> anyhow::Result<Option<&[u8]>> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            let buffered = self.filled - self.pos;
            match body.framing {
                Framing::Done => {
                    let body = self.body.take().expect("checked above");
                    // Bytes beyond the response would be a broken server: never reuse then.
                    if body.keep_alive && buffered == 0 {
                        self.idle = Some(body.stream);
                    }
                    return Ok(None);
                }
                Framing::Length(0) => body.framing = Framing::Done,
                Framing::ChunkData(0) => body.framing = Framing::ChunkEnd,
                Framing::Length(left) | Framing::ChunkData(left) if buffered > 0 => {
                    let n = (left as usize).min(buffered);
                    let left = left - n as u64;
                    body.framing = match body.framing {
                        Framing::Length(_) => Framing::Length(left),
                        _ => Framing::ChunkData(left),
                    };
                    let from = self.pos;
                    self.pos += n;
                    return Ok(Some(&self.buf[from..from + n]));
                }
                Framing::Close if buffered > 0 => {
                    let from = self.pos;
                    self.pos = self.filled;
                    return Ok(Some(&self.buf[from..from + buffered]));
                }
                Framing::ChunkSize | Framing::ChunkEnd | Framing::Trailers => {
                    let Some(end) = self.buf[self.pos..self.filled]
                        .windows(2)
                        .position(|w| w == b"\r\n")
                    else {
                        self.fill("a chunked body").await?;
                        continue;
                    };
                    let line = &self.buf[self.pos..self.pos + end];
                    let next = match body.framing {
                        Framing::ChunkEnd if line.is_empty() => Ok(Framing::ChunkSize),
                        Framing::ChunkEnd => {
                            Err(anyhow!("malformed chunked body: no CRLF after a chunk"))
                        }
                        Framing::Trailers if line.is_empty() => Ok(Framing::Done),
                        Framing::Trailers => Ok(Framing::Trailers),
                        _ => chunk_size(line).map(|size| match size {
                            0 => Framing::Trailers,
                            size => Framing::ChunkData(size),
                        }),
                    };
                    self.pos += end + 2;
                    match next {
                        Ok(next) => body.framing = next,
                        Err(err) => {
                            // A broken connection is not read again.
                            self.body = None;
                            return Err(err);
                        }
                    }
                }
                Framing::Close => {
                    if !self.fill_or_eof().await? {
                        let body = self.body.as_mut().expect("checked above");
                        body.framing = Framing::Done;
                        body.keep_alive = false;
                    }
                }
                Framing::Length(_) | Framing::ChunkData(_) => self.fill("a response body").await?,
            }
        }
    }

    /// Reads one more piece of the current body's connection; an early end is an error.
    async fn fill(&mut self, reading: &str) -> anyhow::Result<()> {
        if !self.fill_or_eof().await? {
            self.body = None;
            bail!("the server closed the connection in the middle of {reading}");
        }
        Ok(())
    }

    /// Reads one more piece of the current body's connection; `false` at its end. After an error
    /// the connection is dropped.
    async fn fill_or_eof(&mut self) -> anyhow::Result<bool> {
        if let Err(err) = self.make_room() {
            self.body = None;
            return Err(err);
        }
        let body = self.body.as_mut().expect("reading a body");
        match body.stream.read(&mut self.buf[self.filled..]).await {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.filled += n;
                Ok(true)
            }
            Err(err) => {
                self.body = None;
                Err(anyhow!(err).context("reading a response"))
            }
        }
    }

    fn make_room(&mut self) -> anyhow::Result<()> {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        } else if self.filled == self.buf.len() {
            if self.pos == 0 {
                bail!("a response line is longer than {BUFFER} bytes");
            }
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        Ok(())
    }

    async fn read_head(&mut self, stream: &mut TcpStream) -> anyhow::Result<Head> {
        loop {
            if let Some(head) = parse_head(&self.buf[..self.filled])? {
                return Ok(head);
            }
            if self.filled == self.buf.len() {
                bail!("a response head is longer than {BUFFER} bytes");
            }
            match stream.read(&mut self.buf[self.filled..]).await {
                Ok(0) => bail!("the server closed the connection before answering"),
                Ok(n) => self.filled += n,
                Err(err) => return Err(anyhow!(err).context("reading a response head")),
            }
        }
    }

    async fn skip_body(&mut self) -> anyhow::Result<()> {
        while self.chunk().await?.is_some() {}
        Ok(())
    }

    /// The start of an error response's body, as one line.
    async fn error_body(&mut self) -> String {
        let mut text = Vec::new();
        while let Ok(Some(bytes)) = self.chunk().await {
            let room = ERROR_BODY.saturating_sub(text.len());
            text.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        String::from_utf8_lossy(&text).trim().replace('\n', " ")
    }
}

fn parse_head(bytes: &[u8]) -> anyhow::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes).context("malformed response head")? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.unwrap_or(0);
    let mut head = Head {
        status,
        seq: None,
        latest: None,
        closed: false,
        framing: Framing::Close,
        keep_alive: response.version == Some(1),
        len,
    };
    let number = |value: &[u8]| std::str::from_utf8(value).ok()?.trim().parse().ok();
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case(protocol::SEQ) {
            head.seq = number(header.value);
        } else if name.eq_ignore_ascii_case(protocol::LATEST) {
            head.latest = number(header.value);
        } else if name.eq_ignore_ascii_case(protocol::CLOSED) {
            head.closed = true;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if header.value.eq_ignore_ascii_case(b"chunked") {
                head.framing = Framing::ChunkSize;
            } else {
                bail!("unsupported transfer-encoding in a response");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if head.framing == Framing::Close {
                head.framing = Framing::Length(
                    number(header.value).context("malformed content-length in a response")?,
                );
            }
        } else if name.eq_ignore_ascii_case("connection") {
            head.keep_alive = !header.value.eq_ignore_ascii_case(b"close");
        }
    }
    if head.framing == Framing::Close {
        head.keep_alive = false;
    }
    // 1xx, 204 and 304 have no body whatever the headers say (none is expected here).
    if status < 200 || status == 204 || status == 304 {
        head.framing = Framing::Length(0);
    }
    Ok(Some(head))
}

fn chunk_size(line: &[u8]) -> anyhow::Result<u64> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits).ok().map(str::trim);
    match digits.and_then(|d| u64::from_str_radix(d, 16).ok()) {
        Some(size) if size < 1 << 40 => Ok(size),
        _ => bail!("malformed chunk-size line in a response"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers the GETs of each connection it accepts with the next canned
    /// responses (one per request, in order across connections), written a few bytes at a time
    /// so that every parsing state meets a buffer boundary. A response of `""` closes the
    /// connection without answering, one ending in `<close>` closes it after the rest. Returns
    /// the target and the request lines it saw.
    async fn canned(
        responses: Vec<&'static str>,
    ) -> (Arc<Target>, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
        let responses = Arc::new(parking_lot::Mutex::new(responses.into_iter()));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (responses, seen) = (responses.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while stream.read_exact(&mut byte).await.is_ok() {
                        head.push(byte[0]);
                        if !head.ends_with(b"\r\n\r\n") {
                            continue;
                        }
                        let line = String::from_utf8_lossy(&head)
                            .lines()
                            .next()
                            .unwrap()
                            .into();
                        let _ = seen.send(line);
                        head.clear();
                        let Some(response) = responses.lock().next() else {
                            return;
                        };
                        let (response, close) = match response.strip_suffix("<close>") {
                            Some(response) => (response, true),
                            None => (response, response.is_empty()),
                        };
                        for piece in response.as_bytes().chunks(3) {
                            stream.write_all(piece).await.unwrap();
                            tokio::task::yield_now().await;
                        }
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        let url = format!("http://{addr}/base/ch").parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-test", "yes".parse().unwrap());
        let target = Target::resolve(&url, &headers).await.unwrap();
        (Arc::new(target), requests)
    }

    async fn read_segment(subscriber: &mut WireSubscriber) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(bytes) = subscriber.chunk().await.unwrap() {
            body.extend_from_slice(bytes);
        }
        body
    }

    #[tokio::test]
    async fn reads_segments_follows_470s_and_ends_at_end_of_stream() {
        let (target, mut requests) = canned(vec![
            // seq 0: chunked, a chunk extension and a trailer.
            "HTTP/1.1 200 OK\r\nLp-Trickle-Seq: 0\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nx-trailer: 1\r\n\r\n",
            // The preconnect for seq 1: the server's wait timeout, so asked again ...
            "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n",
            // ... then gone from the ring: the write head is 7.
            "HTTP/1.1 470 Gone\r\nLp-Trickle-Latest: 7\r\nContent-Length: 4\r\n\r\ngone",
            // seq 7, delimited by the end of the connection.
            "HTTP/1.1 200 OK\r\nLp-Trickle-Seq: 7\r\n\r\nseven<close>",
            // The preconnect for seq 8: the channel closed.
            "HTTP/1.1 404 Not Found\r\nLp-Trickle-Closed: terminated\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        let mut subscriber = WireSubscriber::new(target, 0);
        assert_eq!(subscriber.next_segment().await.unwrap(), Some(0));
        assert_eq!(read_segment(&mut subscriber).await, b"hello!");
        assert_eq!(subscriber.next_segment().await.unwrap(), Some(7));
        assert_eq!(read_segment(&mut subscriber).await, b"seven");
        assert_eq!(subscriber.next_segment().await.unwrap(), None);
        let mut seen = Vec::new();
        while let Ok(line) = requests.try_recv() {
            seen.push(line);
        }
        assert_eq!(
            seen,
            [
                "GET /base/ch/0 HTTP/1.1",
                "GET /base/ch/1 HTTP/1.1",
                "GET /base/ch/1 HTTP/1.1",
                "GET /base/ch/7 HTTP/1.1",
                "GET /base/ch/8 HTTP/1.1"
            ]
        );
    }

    #[tokio::test]
    async fn a_kept_alive_connection_closed_by_the_server_is_replaced() {
        let (target, _requests) = canned(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
            // Sent on the first connection, kept alive: the server closes it instead.
            "",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc",
        ])
        .await;
        let mut subscriber = WireSubscriber::new(target, 0);
        for (seq, body) in [(0, b"a"), (1, b"b"), (2, b"c")] {
            assert_eq!(subscriber.next_segment().await.unwrap(), Some(seq));
            assert_eq!(read_segment(&mut subscriber).await, body);
        }
    }

    #[tokio::test]
    async fn endless_470s_and_malformed_chunks_are_errors() {
        let gone = "HTTP/1.1 470 Gone\r\nLp-Trickle-Latest: 3\r\nContent-Length: 0\r\n\r\n";
        let (target, _requests) = canned(vec![gone; 20]).await;
        let err = WireSubscriber::new(target, 0)
            .next_segment()
            .await
            .unwrap_err();
        assert_eq!(format!("{err:#}"), "GET /base/ch: still 470 after 10 jumps");

        let (target, mut requests) = canned(vec![
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc",
        ])
        .await;
        let mut subscriber = WireSubscriber::new(target, 0);
        assert_eq!(subscriber.next_segment().await.unwrap(), Some(0));
        let err = subscriber.chunk().await.unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "malformed chunk-size line in a response"
        );
        // The broken connection is gone: the segment has ended and is not read again.
        assert_eq!(subscriber.chunk().await.unwrap(), None);
        assert_eq!(subscriber.next_segment().await.unwrap(), Some(1));
        assert_eq!(read_segment(&mut subscriber).await, b"b");
        assert_eq!(requests.recv().await.unwrap(), "GET /base/ch/0 HTTP/1.1");
    }

    #[tokio::test]
    async fn errors_say_what_the_server_said() {
        let (target, _requests) = canned(vec![
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 22\r\n\r\nforbidden: not yours\n\n",
        ])
        .await;
        let err = WireSubscriber::new(target, 0)
            .next_segment()
            .await
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "GET /base/ch: HTTP 403: forbidden: not yours"
        );
        let (target, _requests) = canned(vec![
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab<close>",
            "",
        ])
        .await;
        let mut subscriber = WireSubscriber::new(target, 0);
        assert_eq!(subscriber.next_segment().await.unwrap(), Some(0));
        assert_eq!(subscriber.chunk().await.unwrap(), Some(&b"a"[..]));
        let mut err = None;
        loop {
            match subscriber.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    err = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        assert_eq!(
            err.as_deref(),
            Some("the server closed the connection in the middle of a response body")
        );
    }

    #[test]
    fn heads() {
        let head = parse_head(
            b"HTTP/1.1 200 OK\r\nLp-Trickle-Seq: 7\r\nTransfer-Encoding: chunked\r\n\r\nabc",
        )
        .unwrap()
        .unwrap();
        assert_eq!((head.status, head.seq, head.len), (200, Some(7), 66));
        assert!(head.keep_alive);
        assert_eq!(head.framing, Framing::ChunkSize);
        let head = parse_head(
            b"HTTP/1.1 470 Gone\r\nlp-trickle-latest: 9\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!((head.latest, head.framing), (Some(9), Framing::Length(3)));
        assert!(!head.keep_alive);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap().is_none());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1f").unwrap(), 31);
        assert_eq!(chunk_size(b"10;ext=1").unwrap(), 16);
        assert!(chunk_size(b"").is_err());
        assert!(chunk_size(b"zz").is_err());
        assert!(chunk_size(b"ffffffffffffffffff").is_err());
    }
}
