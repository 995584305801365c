//! A lean HTTP/1.1 front for the requests a busy server is mostly made of: subscribers' GETs.
//!
//! Why: hyper gives every connection an 8 KiB read buffer and an 8 KiB header buffer for its whole
//! life. With ten thousand subscribers, each waiting on a GET and holding a preconnect for the
//! next, those buffers are most of the server's memory (BENCHMARKS.md). This front reads a request
//! head through a small stack buffer into a heap buffer that exists only while a head is
//! incomplete, runs bodiless GET and DELETE requests through the same axum router as everything
//! else, and writes the response itself: the head together with the first bytes of the body, then
//! the body in HTTP/1.1 chunks, every frame that is ready gathered into one `writev`. The busiest
//! request of all, a subscriber's plain `GET /{channel}/{seq}` on a server without tokens, calls
//! the router's own handler for it directly (`http::subscribe_path`), and writes a segment's
//! answer from its parts (`http::SegmentStream`): the same answer, without the request object,
//! the dispatch, a header map or boxed bodies (a quarter of the allocations, BENCHMARKS.md).
//!
//! Anything else (a request with a body such as a POST, HEAD, HTTP/1.0, `Expect`, `Upgrade`,
//! HTTP/2's preface, a head it cannot parse or one longer than [`MAX_HEAD`]) is handed to hyper
//! together with the bytes already read ([`Prefixed`]), and hyper serves the connection from then
//! on. So the router stays the one place where requests are answered, and hyper the one place where
//! malformed input gets its 400.
//!
//! Where HTTP/1.1 leaves room, it behaves as hyper did for these requests: the header timeout also
//! closes idle keep-alive connections; a client that closes its side while its request waits for
//! data is gone, whatever else it sent ahead, and the handler is dropped, ending the wait (a
//! client that sends more than [`MAX_AHEAD`] bytes ahead of its answers is cut off); an answer that
//! is ready still goes out; a response the client takes no byte of for the send timeout closes
//! the connection; the framing headers are this front's own, and a body
//! that does not match its `content-length` closes the connection. A connection it answered on
//! is handed over as HTTP/1.1 only, so an HTTP/2 preface cannot switch it mid-way.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice, Write as _};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tower::ServiceExt;

use super::Server;
use super::conn::SendDeadline;
use super::http::{self as routes, Subscribed};

/// The longest request head parsed here; a longer one goes to hyper, which has its own limit.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most bytes a client may send ahead of the answer it waits for (pipelined requests); more
/// closes the connection. No Trickle client sends more than a request or two ahead.
pub const MAX_AHEAD: usize = MAX_HEAD;
/// Bytes read from the socket per read call while a head is incomplete or a request runs.
const READ_SIZE: usize = 512;
/// Headers parsed here per request; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;
/// Most slices handed to one `writev` (Linux allows 1024).
const MAX_IOV: usize = 64;

/// Serves one connection until it ends, or until a request this front does not take, when it
/// calls `hand_over` with the connection and the bytes already read. `app` must be `server`'s own
/// routes ([`Server::app`]): plain subscriber GETs are answered by their handler directly.
/// `hand_over` learns whether this front answered requests on the connection before: then it is
/// an HTTP/1.1 connection for good (no switch to HTTP/2 by a preface in the middle).
pub async fn serve<S, H, F>(mut stream: S, app: Router, server: Server, hand_over: H)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: FnOnce(Prefixed<S>, bool) -> F,
    F: Future<Output = ()>,
{
    let mut buf = BytesMut::new();
    let mut answered = false;
    loop {
        let after = match next_head(&mut stream, &mut buf, &server).await {
            Head::Native { request, close } => {
                let handled = pin!(app.clone().oneshot(request));
                let Some(Ok::<_, Infallible>(response)) =
                    while_connected(&mut stream, &mut buf, handled).await
                else {
                    return;
                };
                respond(&mut stream, &mut buf, &server, response, close).await
            }
            Head::Subscribe { path, close } => {
                // Both steps boxed, each on its own: every connection's task would otherwise be
                // as large as the larger of them all its life, and the wait (often long, for a
                // preconnect) holds only the small one.
                let mut waiting = Box::pin(routes::subscribe_path(&server, &path));
                let Some(answer) = while_connected(&mut stream, &mut buf, waiting.as_mut()).await
                else {
                    return;
                };
                drop(waiting);
                let writing = write_subscribed(&mut stream, &mut buf, &server, answer, close);
                Box::pin(writing).await
            }
            Head::Other => {
                let prefix = buf.freeze();
                return hand_over(
                    Prefixed {
                        prefix,
                        inner: stream,
                    },
                    answered,
                )
                .await;
            }
            Head::TooLarge => {
                let refused = routes::body_too_large(&server);
                respond(&mut stream, &mut buf, &server, refused, true).await
            }
            Head::Closed => return,
        };
        answered = true;
        match after {
            Ok(Keep::Open) => {}
            Ok(Keep::Close) => {
                // A FIN (and TLS close_notify) after the last byte, rather than a bare close;
                // a client that takes nothing more does not hold the connection for it.
                let send_timeout = server.config().send_timeout;
                let _ = tokio::time::timeout(send_timeout, stream.shutdown()).await;
                return;
            }
            Err(err) => {
                tracing::debug!(%err, "connection ended with an error");
                return;
            }
        }
    }
}

/// What becomes of a connection after an answer.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Keep {
    Open,
    Close,
}

/// Writes the answer to a plain subscriber GET ([`Head::Subscribe`]), which the router's own
/// handler gave: a segment's bytes go straight from its reader (no header map, no boxed body).
async fn write_subscribed<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    server: &Server,
    answer: Subscribed,
    close: bool,
) -> io::Result<Keep>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match answer {
        Subscribed::Response(response) => {
            routes::count_answer(server, response.status());
            respond(stream, buf, server, response, close).await
        }
        Subscribed::Segment(segment) => {
            let mut out = Outbox::new(server.config().send_timeout);
            let mut head = HeadWriter::new(&mut out, StatusCode::OK);
            segment.headers(|name, value| head.header(name.as_bytes(), value));
            head.finish(Framing::Chunked, None, close);
            // Pinned where it is made: a future keeps a slot for every local it moves, and a
            // segment's body is the largest part of this state.
            let body = pin!(segment.into_body());
            write_body(stream, buf, &mut out, body, Framing::Chunked, None).await?;
            Ok(if close { Keep::Close } else { Keep::Open })
        }
    }
}

/// What the next request head asks for.
#[allow(clippy::large_enum_variant)] // one at a time, moved straight into the router
enum Head {
    /// A request this front answers through the router; `close` when the client asked to close
    /// afterwards.
    Native { request: Request<Body>, close: bool },
    /// A subscriber's plain `GET /{channel}/{seq}` ([`routes::is_plain_subscribe`]), which this
    /// front answers by calling the router's handler itself: the busiest request there is, spared
    /// the request object, the router's dispatch and its boxed futures.
    Subscribe { path: String, close: bool },
    /// A request for hyper (its bytes are still in the buffer).
    Other,
    /// A request declaring a body too large for hyper ([`beyond_hyper`]): answered 413, closed.
    TooLarge,
    /// The client went away, sent half a head for too long, or the server is shutting down.
    Closed,
}

/// Reads until a complete head is buffered. As with hyper, the whole head must arrive within the
/// header timeout counted from when the connection became ready for it: an idle keep-alive
/// connection is closed after that long, and a slowloris client cut off.
async fn next_head<S>(stream: &mut S, buf: &mut BytesMut, server: &Server) -> Head
where
    S: AsyncRead + Unpin,
{
    let deadline = Instant::now() + server.config().header_timeout;
    loop {
        if !buf.is_empty() {
            match parse(buf, server) {
                Some(head) => return head,
                None if buf.len() >= MAX_HEAD => return Head::Other,
                None => {}
            }
        }
        let read = poll_fn(|cx| poll_read_head(stream, buf, server, cx));
        let read = tokio::select! {
            biased;
            _ = server.shut_down() => return Head::Closed,
            _ = tokio::time::sleep_until(deadline) => return Head::Closed,
            read = read => read,
        };
        match read {
            Ok(Arrived::Head(head)) => return head,
            Ok(Arrived::Buffered(n)) if n > 0 => {}
            _ => return Head::Closed,
        }
    }
}

/// What one read for a head brought.
#[allow(clippy::large_enum_variant)] // returned straight to `next_head`, as `Head` is
enum Arrived {
    /// A whole head this front takes, parsed without buffering it.
    Head(Head),
    /// This many bytes, now in the buffer (0: the client closed its side).
    Buffered(usize),
}

/// Reads once through a small stack buffer. A head that arrives whole into an empty buffer (as
/// nearly all do) is parsed right there, so that a request allocates nothing for its head;
/// anything else is appended to `buf`.
fn poll_read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    server: &Server,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Arrived>> {
    let mut space = [0u8; READ_SIZE];
    let mut read = ReadBuf::new(&mut space);
    ready!(Pin::new(stream).poll_read(cx, &mut read))?;
    let filled = read.filled();
    if buf.is_empty()
        && let Some((head, len)) = parse_slice(filled, server)
        && len > 0
    {
        buf.extend_from_slice(&filled[len..]);
        return Poll::Ready(Ok(Arrived::Head(head)));
    }
    buf.extend_from_slice(filled);
    Poll::Ready(Ok(Arrived::Buffered(filled.len())))
}

/// Parses the head at the front of `buf`, if complete (`None`: not yet), and takes it off if it is
/// one this front answers. Plain subscriber GETs to `server` come back as [`Head::Subscribe`].
fn parse(buf: &mut BytesMut, server: &Server) -> Option<Head> {
    let (head, len) = parse_slice(buf, server)?;
    if len > 0 {
        buf.advance(len);
        if buf.is_empty() {
            // Free the head's memory while the request waits (often for a long time).
            *buf = BytesMut::new();
        }
    }
    Some(head)
}

/// [`parse`] for bytes in any buffer: the head and its length, 0 for [`Head::Other`] (whose bytes
/// all stay for hyper).
fn parse_slice(buf: &[u8], server: &Server) -> Option<(Head, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some((Head::Other, 0)),
    };
    let declared = |h: &httparse::Header| h.name.eq_ignore_ascii_case("content-length");
    if head
        .headers
        .iter()
        .any(|h| declared(h) && beyond_hyper(h.value))
    {
        return Some((Head::TooLarge, len));
    }
    let method = match head.method {
        Some("GET") => Method::GET,
        Some("DELETE") => Method::DELETE,
        _ => return Some((Head::Other, 0)),
    };
    if head.version != Some(1) {
        return Some((Head::Other, 0));
    }
    let target = head.path.unwrap_or_default();
    let mut close = false;
    for h in head.headers.iter() {
        let is = |name: &str| h.name.eq_ignore_ascii_case(name);
        let takes_a_body = (is("content-length") && h.value != b"0") || is("transfer-encoding");
        if takes_a_body || is("expect") || is("upgrade") {
            return Some((Head::Other, 0));
        }
        if is("connection") {
            close |= has_token(h.value, b"close");
        }
    }
    let direct =
        method == Method::GET && plain_path(target) && routes::is_plain_subscribe(server, target);
    let parsed = if direct {
        Head::Subscribe {
            path: target.to_string(),
            close,
        }
    } else {
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .version(Version::HTTP_11);
        for h in head.headers.iter() {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) else {
                return Some((Head::Other, 0));
            };
            request = request.header(name, value);
        }
        let Ok(request) = request.body(Body::empty()) else {
            return Some((Head::Other, 0));
        };
        Head::Native { request, close }
    };
    Some((parsed, len))
}

/// Whether a `content-length` declares more bytes than hyper represents (2^64 − 3), for which it
/// would answer 431 "header fields too large", which is not what is wrong. No route takes such a
/// body. (Values that are no number at all stay hyper's, which answers them 400; so does a
/// connection already handed to hyper, which keeps its 431.)
fn beyond_hyper(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|v| {
        let v = v.trim_ascii();
        !v.is_empty()
            && v.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .is_none_or(|n| n > u64::MAX - 2)
    })
}

/// An origin-form path made only of characters every URI parser takes as they are (anything
/// else goes through the router, which parses the URI properly). httparse has already checked
/// the header names and values against the same rules `http` applies.
fn plain_path(target: &str) -> bool {
    target.starts_with('/')
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b))
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Reads once through a small stack buffer and appends to `buf`: the heap buffer grows only by
/// what arrived, and a connection with nothing to read holds no buffer at all.
fn poll_read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut space = [0u8; READ_SIZE];
    let mut read = ReadBuf::new(&mut space);
    ready!(Pin::new(stream).poll_read(cx, &mut read))?;
    buf.extend_from_slice(read.filled());
    Poll::Ready(Ok(read.filled().len()))
}

/// Keeps reading while a request is answered, so that a client closing its side is noticed even
/// when no byte is due for it and whatever it sent ahead. `Ready` when the client is gone: it
/// closed its side (or the connection broke) while its answer was not ready, or it sent more than
/// [`MAX_AHEAD`] bytes ahead of its answers. What it sent ahead (pipelined requests) stays in `buf`
/// and is answered in turn; an answer that is ready still goes out to a client that half-closed
/// ([`while_connected`] looks at the work first).
///
/// Why read ahead rather than stop at the first buffered byte: a client that sent one byte more
/// than its request and then closed was never noticed, and 5,000 of them held 5,000 descriptors
/// until a segment arrived or the wait timed out.
pub(super) fn poll_gone<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<()> {
    while buf.len() < MAX_AHEAD {
        match ready!(poll_read_into(stream, buf, cx)) {
            Ok(0) | Err(_) => return Poll::Ready(()),
            Ok(_) => {}
        }
    }
    Poll::Ready(())
}

/// Runs `work` while the client is connected: `None` if it went away first.
async fn while_connected<S, F>(
    stream: &mut S,
    buf: &mut BytesMut,
    mut work: Pin<&mut F>,
) -> Option<F::Output>
where
    S: AsyncRead + Unpin,
    F: Future,
{
    poll_fn(|cx| {
        // An answer that is ready goes out even to a client that already half-closed.
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if poll_gone(stream, buf, cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Writes `response`, `close` if the client asked for it (or the handler did).
async fn respond<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    server: &Server,
    mut response: Response<Body>,
    mut close: bool,
) -> io::Result<Keep>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if response.status().is_informational() {
        // Only hyper may send interim answers; as hyper does, this becomes an error.
        response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    close |= response
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"close"));
    let (framing, length) = framing_of(&response);
    let mut out = Outbox::new(server.config().send_timeout);
    let mut head = HeadWriter::new(&mut out, response.status());
    for (name, value) in response.headers() {
        let framing_header = name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || (close && name == header::CONNECTION);
        if !framing_header {
            head.header(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    head.finish(framing, length, close);
    let body = pin!(response.into_body());
    write_body(stream, buf, &mut out, body, framing, length).await?;
    Ok(if close { Keep::Close } else { Keep::Open })
}

/// How a response body goes on the wire.
#[derive(Clone, Copy, PartialEq)]
enum Framing {
    /// No body (HEAD is not answered here; 204 and 304 have none; 1xx never gets here).
    None,
    /// `content-length`: the body as it is.
    Length,
    /// `transfer-encoding: chunked`.
    Chunked,
}

/// How `response`'s body is framed, and for `content-length` how many body bytes are due. The
/// framing headers are this front's to write; the handler's own only tell the length.
fn framing_of(response: &Response<Body>) -> (Framing, Option<u64>) {
    let status = response.status();
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return (Framing::None, None);
    }
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    match declared.or(response.body().size_hint().exact()) {
        Some(len) => (Framing::Length, Some(len)),
        None => (Framing::Chunked, None),
    }
}

/// Writes a response head (status line, headers, the framing headers, `date`) into the outbox's
/// head buffer, and queues it in front of the body when finished.
struct HeadWriter<'a> {
    out: &'a mut Outbox,
    has_date: bool,
}

impl<'a> HeadWriter<'a> {
    fn new(out: &'a mut Outbox, status: StatusCode) -> HeadWriter<'a> {
        let reason = status.canonical_reason().unwrap_or("<none>");
        let _ = write!(out.head, "HTTP/1.1 {} {reason}\r\n", status.as_str());
        HeadWriter {
            out,
            has_date: false,
        }
    }

    fn header(&mut self, name: &[u8], value: &[u8]) {
        self.has_date |= name.eq_ignore_ascii_case(b"date");
        let head = &mut self.out.head;
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }

    fn finish(self, framing: Framing, length: Option<u64>, close: bool) {
        let head = &mut self.out.head;
        match (framing, length) {
            (Framing::Length, Some(len)) => {
                let _ = write!(head, "content-length: {len}\r\n");
            }
            (Framing::Chunked, _) => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            _ => {}
        }
        if close {
            head.extend_from_slice(b"connection: close\r\n");
        }
        if !self.has_date {
            head.extend_from_slice(b"date: ");
            with_date(|date| head.extend_from_slice(date));
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        self.out.push(Piece::Head { start: 0 });
    }
}

/// Writes the head already queued in `out`, then `body` as its frames become ready: frames that
/// are ready together go out as one chunk in one write. An error from the body (a failed segment)
/// ends the connection without the final chunk, so the client sees the stream break (a failed
/// segment must not look complete).
async fn write_body<S, B>(
    stream: &mut S,
    buf: &mut BytesMut,
    out: &mut Outbox,
    mut body: Pin<&mut B>,
    framing: Framing,
    mut length_left: Option<u64>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body_done = framing == Framing::None || body.is_end_stream();
    let mut failed = None;
    if body_done && length_left.is_some_and(|left| left > 0) {
        failed = Some(io::Error::other("body shorter than its length"));
    }
    let mut ended = false;
    poll_fn(|cx| {
        loop {
            // Take every frame that is ready, up to what one write can carry, straight into the
            // outbox; a chunk's size line goes in front of its frames once their size is known.
            let size_line = (!body_done && framing == Framing::Chunked).then(|| {
                out.push(Piece::chunk_size(0));
                out.len() - 1
            });
            let mut size = 0;
            while !body_done && out.len() + 2 < MAX_IOV {
                match body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(mut data) = frame.into_data() else {
                            continue;
                        };
                        if let Some(left) = length_left.as_mut() {
                            // Never more than the content-length said: the rest would be read
                            // as the next response.
                            if data.len() as u64 > *left {
                                data.truncate(*left as usize);
                                failed = Some(io::Error::other("body longer than its length"));
                                body_done = true;
                            }
                            *left -= data.len() as u64;
                        }
                        if !data.is_empty() {
                            size += data.len();
                            out.push(Piece::Shared(data));
                        }
                    }
                    Poll::Ready(Some(Err(err))) => {
                        failed = Some(io::Error::other(err));
                        body_done = true;
                    }
                    Poll::Ready(None) => {
                        if length_left.is_some_and(|left| left > 0) {
                            failed = Some(io::Error::other("body shorter than its length"));
                        }
                        body_done = true;
                    }
                    Poll::Pending => break,
                }
            }
            if let Some(at) = size_line {
                if size == 0 {
                    out.pieces.pop_back();
                } else {
                    out.pieces[at] = Piece::chunk_size(size);
                    out.push(Piece::Shared(Bytes::from_static(b"\r\n")));
                }
            }
            if body_done && failed.is_none() && framing == Framing::Chunked && !ended {
                out.push(Piece::Shared(Bytes::from_static(b"0\r\n\r\n")));
                ended = true;
            }
            if out.len() == 0 {
                // Everything is written; a TLS stream may still hold it in its own buffer (up to
                // 64 KiB), which a client that stopped reading never takes.
                match Pin::new(&mut *stream).poll_flush(cx) {
                    Poll::Ready(flushed) => flushed?,
                    Poll::Pending => {
                        return Poll::Ready(Err(ready!(out.deadline.poll_stalled(cx))));
                    }
                }
                if !body_done {
                    // Waiting for the body: watch for the client going away meanwhile.
                    if poll_gone(stream, buf, cx).is_ready() {
                        return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
                    }
                    return Poll::Pending;
                }
                return Poll::Ready(match failed.take() {
                    Some(err) => Err(err),
                    None => Ok(()),
                });
            }
            ready!(out.poll_write(stream, cx))?;
        }
    })
    .await
}

/// Calls `f` with the current time as an HTTP date, formatted once per second per thread (as
/// hyper does) rather than once per response.
fn with_date(f: impl FnOnce(&[u8])) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached, date)| {
        if *cached != second {
            *cached = second;
            *date = httpdate::fmt_http_date(now);
        }
        f(date.as_bytes());
    });
}

/// Bytes on their way to the socket, written with as few `writev`s as the socket allows. Made per
/// response rather than kept for the connection's life: kept, ten thousand idle subscribers'
/// queues and heads would cost more memory (10–20 MB in `c10k`) than their allocations cost time.
struct Outbox {
    pieces: VecDeque<Piece>,
    /// The response's head ([`Piece::Head`]).
    head: Vec<u8>,
    /// Ends the response when the client takes nothing for the send timeout.
    deadline: SendDeadline,
}

/// One slice of the outbox: bytes shared with the segment (or static), a chunk-size line kept
/// inline, so that framing a chunk allocates nothing, or what is left of the head.
enum Piece {
    Shared(Bytes),
    Line {
        bytes: [u8; 18],
        start: u8,
        end: u8,
    },
    /// `Outbox::head` from `start` on.
    Head {
        start: usize,
    },
}

impl Piece {
    /// `{size:x}\r\n`
    fn chunk_size(size: usize) -> Piece {
        let mut bytes = [0u8; 18];
        let mut rest = &mut bytes[..];
        let _ = write!(rest, "{size:x}\r\n");
        let end = (18 - rest.len()) as u8;
        Piece::Line {
            bytes,
            start: 0,
            end,
        }
    }

    fn as_slice<'a>(&'a self, head: &'a [u8]) -> &'a [u8] {
        match self {
            Piece::Shared(bytes) => bytes,
            Piece::Line { bytes, start, end } => &bytes[*start as usize..*end as usize],
            Piece::Head { start } => &head[*start..],
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Piece::Shared(bytes) => bytes.advance(n),
            Piece::Line { start, .. } => *start += n as u8,
            Piece::Head { start } => *start += n,
        }
    }
}

impl Outbox {
    fn new(send_timeout: std::time::Duration) -> Outbox {
        // Room for what most responses are: head, size line, data, CRLF, final chunk.
        Outbox {
            pieces: VecDeque::with_capacity(8),
            head: Vec::with_capacity(256),
            deadline: SendDeadline::new(send_timeout),
        }
    }

    fn len(&self) -> usize {
        self.pieces.len()
    }

    fn push(&mut self, piece: Piece) {
        self.pieces.push_back(piece);
    }

    /// Writes until the outbox is empty or the socket is full.
    fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.pieces.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let count = self
                .pieces
                .iter()
                .zip(slices.iter_mut())
                .map(|(piece, slice)| *slice = IoSlice::new(piece.as_slice(&self.head)))
                .count();
            let mut written = match Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..count])
            {
                Poll::Ready(written) => written?,
                Poll::Pending => return Poll::Ready(Err(ready!(self.deadline.poll_stalled(cx)))),
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.deadline.progressed();
            while written > 0 {
                let front = &mut self.pieces[0];
                let len = front.as_slice(&self.head).len();
                if written >= len {
                    written -= len;
                    if let Some(Piece::Head { .. }) = self.pieces.pop_front() {
                        // Not held while a live segment streams on for minutes.
                        self.head = Vec::new();
                    }
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A connection handed to hyper: the bytes this front already read come first.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// A connection nothing was read from yet.
    pub fn new(inner: S) -> Prefixed<S> {
        Prefixed {
            prefix: Bytes::new(),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let n = this.prefix.len().min(out.remaining());
        out.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        if this.prefix.is_empty() {
            this.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;

    /// Long enough for anything that should happen at once.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// One in-memory connection served by this front with `app`: the client's end, and the task
    /// running [`serve`]. Idle keep-alive connections stay open for ten minutes, so a connection
    /// that ends within [`PATIENCE`] was closed on purpose.
    fn connect(app: Router) -> (DuplexStream, tokio::task::JoinHandle<()>) {
        let (client, server_end) = tokio::io::duplex(64 * 1024);
        let server = Server::new(super::super::Config {
            header_timeout: Duration::from_secs(600),
            ..Default::default()
        });
        let task = tokio::spawn(serve(server_end, app, server, |_, _| async {
            panic!("handed over to hyper")
        }));
        (client, task)
    }

    /// Reads until the server ends the connection.
    async fn read_to_close(client: &mut DuplexStream) -> Vec<u8> {
        let mut got = Vec::new();
        tokio::time::timeout(PATIENCE, client.read_to_end(&mut got))
            .await
            .expect("the server closes the connection in time")
            .unwrap();
        got
    }

    /// Reads into `got` until it holds `needle`.
    async fn read_until(client: &mut DuplexStream, got: &mut Vec<u8>, needle: &[u8]) {
        let read = async {
            while !got.windows(needle.len()).any(|w| w == needle) {
                let mut buf = [0u8; 1024];
                let n = client.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "closed before {:?}: {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(got)
                );
                got.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("the bytes in time");
    }

    /// The response head (as text) and the bytes after it.
    fn split_head(response: &[u8]) -> (String, &[u8]) {
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head")
            + 4;
        (
            String::from_utf8(response[..end].to_vec()).unwrap(),
            &response[end..],
        )
    }

    /// A handler's answer with a `content-length` that its body does not match.
    fn mislabelled(length: &'static str, body: Body) -> Response<Body> {
        Response::builder()
            .header(header::CONTENT_LENGTH, length)
            .body(body)
            .unwrap()
    }

    /// Two GETs of `path` pipelined.
    fn two_gets(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
            .repeat(2)
            .into_bytes()
    }

    #[tokio::test]
    async fn a_body_longer_than_its_content_length_is_cut_and_the_connection_closed() {
        let app = Router::new().route(
            "/longer",
            get(|| async { mislabelled("5", Body::from("hello, and then some")) }),
        );
        let (mut client, task) = connect(app);
        client.write_all(&two_gets("/longer")).await.unwrap();
        let got = read_to_close(&mut client).await;
        let (head, body) = split_head(&got);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-length: 5\r\n"), "{head}");
        // Exactly the declared bytes, and no answer to the pipelined second request.
        assert_eq!(body, b"hello", "{:?}", String::from_utf8_lossy(body));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_content_length_closes_the_connection() {
        let app = Router::new()
            .route(
                "/shorter",
                get(|| async { mislabelled("20", Body::from("short")) }),
            )
            .route(
                "/nothing",
                get(|| async { mislabelled("10", Body::empty()) }),
            );
        for (path, sent) in [("/shorter", &b"short"[..]), ("/nothing", b"")] {
            let (mut client, task) = connect(app.clone());
            client.write_all(&two_gets(path)).await.unwrap();
            let got = read_to_close(&mut client).await;
            let (head, body) = split_head(&got);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {head}");
            // The client sees fewer bytes than announced, then the end of the connection: the
            // pipelined second request is not answered.
            let declared: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a content-length")
                .parse()
                .unwrap();
            assert!(declared > sent.len(), "{path}: {head}");
            assert_eq!(body, sent, "{path}: {:?}", String::from_utf8_lossy(body));
            task.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_body_error_ends_the_connection_without_the_final_chunk() {
        let fail = Arc::new(tokio::sync::Notify::new());
        let failing = fail.clone();
        let app = Router::new()
            .route(
                "/whole",
                get(|| async {
                    let pieces = [Ok::<_, io::Error>("whole")];
                    Body::from_stream(futures_util::stream::iter(pieces))
                }),
            )
            .route(
                "/broken",
                get(move || {
                    let failing = failing.clone();
                    async move {
                        // "first", then an error once the test says so.
                        let body = futures_util::stream::unfold(0, move |step| {
                            let failing = failing.clone();
                            async move {
                                match step {
                                    0 => Some((Ok(Bytes::from_static(b"first")), 1)),
                                    1 => {
                                        failing.notified().await;
                                        Some((Err(io::Error::other("the segment failed")), 2))
                                    }
                                    _ => None,
                                }
                            }
                        });
                        Body::from_stream(body)
                    }
                }),
            );
        let (mut client, task) = connect(app);
        // A streamed body that ends well ends with the final chunk, and the connection stays.
        client
            .write_all(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut client, &mut got, b"\r\n0\r\n\r\n").await;
        let (head, body) = split_head(&got);
        assert!(
            head.contains("\r\ntransfer-encoding: chunked\r\n"),
            "{head}"
        );
        assert_eq!(body, b"5\r\nwhole\r\n0\r\n\r\n");

        client
            .write_all(b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut client, &mut got, b"5\r\nfirst\r\n").await;
        fail.notify_one();
        got.extend(read_to_close(&mut client).await);
        let (head, body) = split_head(&got);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\ntransfer-encoding: chunked\r\n"),
            "{head}"
        );
        // The first chunk, then the end of the connection: no `0\r\n\r\n` that would make the
        // broken body look complete.
        assert_eq!(
            body,
            b"5\r\nfirst\r\n",
            "{:?}",
            String::from_utf8_lossy(body)
        );
        task.await.unwrap();
    }

    /// A server whose GETs all go through the router (tokens are checked before routing).
    fn guarded() -> Server {
        Server::new(super::super::Config {
            auth_secret: Some(
                crate::auth::Secret::new("a test secret of 32 bytes, or so").unwrap(),
            ),
            ..Default::default()
        })
    }

    fn parsed(head: &[u8]) -> (Option<Head>, BytesMut) {
        let mut buf = BytesMut::from(head);
        (parse(&mut buf, &guarded()), buf)
    }

    #[test]
    fn bodiless_gets_and_deletes_are_taken_and_consumed() {
        let (p, rest) = parsed(b"GET /ch/3 HTTP/1.1\r\nHost: x\r\n\r\nGET /ch/4");
        let Some(Head::Native { request, close }) = p else {
            panic!("not taken")
        };
        assert_eq!(request.uri().path(), "/ch/3");
        assert_eq!(request.headers()["host"], "x");
        assert!(!close);
        assert_eq!(&rest[..], b"GET /ch/4");
        let (p, rest) = parsed(
            b"DELETE /ch HTTP/1.1\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(matches!(p, Some(Head::Native { close: true, .. })));
        assert!(rest.is_empty());
    }

    #[test]
    fn only_plain_subscriber_gets_skip_the_router() {
        use super::super::Config;
        let kind = |server: &Server, head: &str| {
            let mut buf = BytesMut::from(format!("{head} HTTP/1.1\r\nHost: x\r\n\r\n").as_str());
            match parse(&mut buf, server) {
                Some(Head::Subscribe { path, close: false }) => format!("direct {path}"),
                Some(Head::Native { .. }) => "router".to_string(),
                _ => "other".to_string(),
            }
        };
        let server = Server::new(Config::default());
        assert_eq!(kind(&server, "GET /ch/3"), "direct /ch/3");
        assert_eq!(kind(&server, "GET /a%20b/-1"), "direct /a%20b/-1");
        for routed in [
            "GET /ch",
            "GET /ch/",
            "GET /ch/next/",
            "GET /ch/3/4",
            "GET //3",
            "GET /ch/3?x=1",
            "GET http://x/ch/3",
            "GET /ch/3{",
            "DELETE /ch/3",
        ] {
            assert_eq!(kind(&server, routed), "router", "{routed}");
        }
        let live = Server::new(Config {
            base_path: "/live/".into(),
            ..Config::default()
        });
        assert_eq!(kind(&live, "GET /live/ch/0"), "direct /live/ch/0");
        assert_eq!(kind(&live, "GET /ch/0"), "router");
        // Tokens are checked before routing: with auth on, everything goes through the router.
        assert_eq!(kind(&guarded(), "GET /ch/3"), "router");
    }

    #[test]
    fn everything_else_goes_to_hyper_untouched() {
        for head in [
            &b"POST /ch/0 HTTP/1.1\r\n\r\n"[..],
            b"HEAD /ch/0 HTTP/1.1\r\n\r\n",
            b"GET /ch/0 HTTP/1.0\r\n\r\n",
            b"GET /ch/0 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /ch/0 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /ch/0 HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /ch/0 HTTP/9.9\r\n\r\n",
            b"\x00\x01 not http\r\n\r\n",
        ] {
            let (p, rest) = parsed(head);
            assert!(
                matches!(p, Some(Head::Other)),
                "{:?}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(&rest[..], head, "bytes kept for hyper");
        }
        assert!(parsed(b"GET /ch/0 HTTP/1.1\r\nHo").0.is_none());
    }

    #[test]
    fn chunk_size_lines_are_hex_and_can_be_written_in_parts() {
        assert_eq!(Piece::chunk_size(0).as_slice(&[]), b"0\r\n");
        let mut line = Piece::chunk_size(usize::MAX);
        assert_eq!(line.as_slice(&[]), b"ffffffffffffffff\r\n");
        line.advance(15);
        assert_eq!(line.as_slice(&[]), b"f\r\n");
    }
}
