//! The bench's own subscriber for `http://` servers: the reference wire protocol (one GET per seq,
//! the GET for the next seq sent as soon as a segment's response head arrives, a `470` answered by
//! the write head in `Lp-Trickle-Latest`, end of stream by `Lp-Trickle-Closed`) spoken directly
//! over HTTP/1.1 keep-alive connections: no task, timer or allocation per request, one read buffer
//! per subscriber, and the body handed to the checker straight from that buffer. The `live`
//! profile's viewers use it too: one `GET /{name}/live` ([`WireSubscriber::watch`]) whose body is
//! read the same way; and so do the `hls` profile's players, any GET under the channel
//! ([`WireSubscriber::get`]) on one kept-alive connection each.
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
use tokio::net::{TcpSocket, TcpStream};

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
    /// `SO_RCVBUF` of the connections, when set ([`WireSubscriber::with_recv_buffer`]).
    recv_buffer: Option<u32>,
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
            recv_buffer: None,
        }
    }

    /// Connections with a receive buffer of `bytes` (`SO_RCVBUF`; Linux doubles it): a reader
    /// that takes bytes slowly then fills the server's socket soon, as a viewer on a slow link
    /// does, instead of a kernel buffer that autotuning grows to megabytes.
    pub fn with_recv_buffer(mut self, bytes: u32) -> WireSubscriber {
        self.recv_buffer = Some(bytes);
        self
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
        self.send_request().await
    }

    /// Sends `self.request` (its method and path) with the target's tail, on the idle connection
    /// or a new one.
    async fn send_request(&mut self) -> anyhow::Result<()> {
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
        let addr = self.target.addr;
        let connected = match self.recv_buffer {
            None => TcpStream::connect(addr).await,
            // Set before connecting: the window the connection opens with depends on it.
            Some(size) => {
                let socket = match addr {
                    SocketAddr::V4(_) => TcpSocket::new_v4()?,
                    SocketAddr::V6(_) => TcpSocket::new_v6()?,
                };
                socket.set_recv_buffer_size(size)?;
                socket.connect(addr).await
            }
        };
        let stream = connected.with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Reads the response head of the GET sent on `stream`; its body is then read with
    /// [`WireSubscriber::chunk`].
    async fn receive(&mut self, mut stream: TcpStream) -> anyhow::Result<Head> {
        self.pos = 0;
        self.filled = 0;
        let head = self.read_head(&mut stream).await?;
        self.pos += head.len;
        self.body = Some(Body {
            stream,
            framing: head.framing,
            keep_alive: head.keep_alive,
        });
        Ok(head)
    }

    /// Opens `GET {channel}/live?{query}` (a live viewer, on a connection of its own): `Ok(false)`
    /// when the channel has ended. The stream's bytes are then read with
    /// [`WireSubscriber::chunk`], which returns `None` at its end.
    pub async fn watch(&mut self, query: &str) -> anyhow::Result<bool> {
        self.skip_body().await?;
        self.request.clear();
        self.request.extend_from_slice(b"GET ");
        self.request.extend_from_slice(self.target.path.as_bytes());
        self.request.extend_from_slice(b"/live?");
        self.request.extend_from_slice(query.as_bytes());
        self.send_request().await?;
        let Sent { stream, .. } = self.pending.take().expect("a GET was sent");
        let head = self.receive(stream).await?;
        if head.closed {
            return Ok(false);
        }
        match head.status {
            200 => Ok(true),
            404 => bail!("channel {} not found (404)", self.target.path),
            status => {
                let message = self.error_body().await;
                bail!("GET {}/live: HTTP {status}: {message}", self.target.path)
            }
        }
    }

    /// `GET {channel}/{path}` (an HLS player's playlist or media request, relative to the
    /// channel) on the kept-alive connection: the response's status once its head arrived. Read
    /// the body with [`WireSubscriber::chunk`] (what is left of it is skipped by the next
    /// request).
    pub async fn get(&mut self, path: &str) -> anyhow::Result<u16> {
        self.skip_body().await?;
        let mut resent = false;
        loop {
            self.request.clear();
            self.request.extend_from_slice(b"GET ");
            self.request.extend_from_slice(self.target.path.as_bytes());
            self.request.push(b'/');
            self.request.extend_from_slice(path.as_bytes());
            self.send_request().await?;
            let Sent { stream, reused } = self.pending.take().expect("a GET was sent");
            match self.receive(stream).await {
                Ok(head) => return Ok(head.status),
                // As in `next_segment`: a kept-alive connection closed before the GET was seen.
                Err(_) if reused && self.filled == 0 && !resent => resent = true,
                Err(err) => return Err(err),
            }
        }
    }

    /// Forgets the connection and any response in progress (after a request timed out: what it
    /// may still answer must not be taken for the next response).
    pub fn reset(&mut self) {
        self.pending = None;
        self.idle = None;
        self.body = None;
        self.pos = 0;
        self.filled = 0;
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
            let Sent { stream, reused } = self.pending.take().expect("a GET was sent");
            let head = match self.receive(stream).await {
                Ok(head) => head,
                // A kept-alive connection the server closed before it saw the GET: once more on
                // a new connection, as HTTP clients do for requests that changed nothing.
                Err(_) if reused && self.filled == 0 && !resent => {
                    resent = true;
                    continue;
                }
                Err(err) => return Err(err),
            };
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
#[path = "wire_tests.rs"]
mod tests;
