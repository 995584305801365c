//! Writing an answer on the HTTP/1.1 front: the head (status line, headers, framing, `date`), then
//! the body as its frames become ready, in chunks or to its `content-length`, with the send
//! timeout on every write; a body that fails ends the connection without the final chunk.

use std::future::poll_fn;
use std::io::{self, Write as _};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode, header};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::Server;
use super::super::http as routes;
use super::super::subscribe::Subscribed;
use super::head::has_token;
use super::outbox::{MAX_IOV, Outbox, Piece};
use super::poll_gone;

/// What becomes of a connection after an answer.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Keep {
    Open,
    Close,
}

/// Writes the answer to a plain subscriber GET ([`Head::Subscribe`]), which the router's own
/// handler gave: a segment's bytes go straight from its reader (no header map, no boxed body).
pub(super) async fn write_subscribed<S>(
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

/// Writes `response`, `close` if the client asked for it (or the handler did).
pub(super) async fn respond<S>(
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
    length_left: Option<u64>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let no_frames = framing == Framing::None || body.is_end_stream();
    let mut state = BodyState::new(framing, length_left, no_frames);
    poll_fn(|cx| {
        loop {
            // No new frames while the socket refuses the last ones: frames queued here behind
            // a slow client would hide from the body that its client is behind (a live viewer
            // skips segments by that), and hold segments for nothing. Otherwise every ready
            // frame joins the write (the head goes out with the first bytes of the body).
            if !state.blocked {
                state.take_ready(out, body.as_mut(), cx);
            }
            if out.len() == 0 {
                return state.poll_written(stream, buf, out, cx);
            }
            let written = out.poll_write(stream, cx);
            state.blocked = written.is_pending() || out.len() > 0;
            ready!(written)?;
        }
    })
    .await
}

/// What [`write_body`] knows of the body so far; its steps move the body's frames into the
/// outbox, framed, and decide when the answer is over.
struct BodyState {
    framing: Framing,
    /// For `content-length`: the body bytes still due.
    length_left: Option<u64>,
    /// The body gives no more frames (its end, an error, or its length reached).
    done: bool,
    /// Why the connection must end without the body completed.
    failed: Option<io::Error>,
    /// The final chunk is queued.
    ended: bool,
    /// The socket did not take all of the last write.
    blocked: bool,
}

impl BodyState {
    fn new(framing: Framing, length_left: Option<u64>, done: bool) -> BodyState {
        let mut state = BodyState {
            framing,
            length_left,
            done: false,
            failed: None,
            ended: false,
            blocked: false,
        };
        if done {
            state.end_of_frames();
        }
        state
    }

    /// Takes every frame that is ready, up to what one write can carry, straight into `out` as
    /// one chunk; then the final chunk if the body ended well.
    fn take_ready<B>(&mut self, out: &mut Outbox, mut body: Pin<&mut B>, cx: &mut Context<'_>)
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let size_line = self.open_chunk(out);
        let mut size = 0;
        while !self.done && out.len() + 2 < MAX_IOV {
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        size += self.push_data(out, data);
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    self.failed = Some(io::Error::other(err));
                    self.done = true;
                }
                Poll::Ready(None) => self.end_of_frames(),
                Poll::Pending => break,
            }
        }
        if let Some(at) = size_line {
            close_chunk(out, at, size);
        }
        if self.done && self.failed.is_none() && self.framing == Framing::Chunked && !self.ended {
            out.push(Piece::Shared(Bytes::from_static(b"0\r\n\r\n")));
            self.ended = true;
        }
    }

    /// When chunked and more frames may come: queues a placeholder for the size line of the
    /// chunk about to be taken (its size is known once its frames are), and says where it is.
    #[inline]
    fn open_chunk(&self, out: &mut Outbox) -> Option<usize> {
        (!self.done && self.framing == Framing::Chunked).then(|| {
            out.push(Piece::chunk_size(0));
            out.len() - 1
        })
    }

    /// Queues one frame's bytes, never more than the `content-length` said (the rest would be
    /// read as the next response); returns how many it queued.
    #[inline]
    fn push_data(&mut self, out: &mut Outbox, mut data: Bytes) -> usize {
        if let Some(left) = self.length_left.as_mut() {
            if data.len() as u64 > *left {
                data.truncate(*left as usize);
                self.failed = Some(io::Error::other("body longer than its length"));
                self.done = true;
            }
            *left -= data.len() as u64;
        }
        let len = data.len();
        if len > 0 {
            out.push(Piece::Shared(data));
        }
        len
    }

    /// The body has no more frames: short of its `content-length`, it failed.
    #[inline]
    fn end_of_frames(&mut self) {
        if self.length_left.is_some_and(|left| left > 0) {
            self.failed = Some(io::Error::other("body shorter than its length"));
        }
        self.done = true;
    }

    /// With all that is queued written: flushes (a TLS stream may still hold up to 64 KiB in its
    /// own buffer, which a client that stopped reading never takes), then either waits for the
    /// body, watching for the client going away meanwhile, or gives the answer's outcome.
    fn poll_written<S>(
        &mut self,
        stream: &mut S,
        buf: &mut BytesMut,
        out: &mut Outbox,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let flushed = Pin::new(&mut *stream).poll_flush(cx);
        ready!(out.deadline.guard(cx, flushed))?;
        if !self.done {
            if poll_gone(stream, buf, cx).is_ready() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
            }
            return Poll::Pending;
        }
        Poll::Ready(match self.failed.take() {
            Some(err) => Err(err),
            None => Ok(()),
        })
    }
}

/// Ends the chunk whose size line placeholder is at `at`: with its size and closing CRLF, or, if
/// no bytes came, by taking the placeholder back (a zero size would end the body).
#[inline]
fn close_chunk(out: &mut Outbox, at: usize, size: usize) {
    if size == 0 {
        out.pieces.pop_back();
    } else {
        out.pieces[at] = Piece::chunk_size(size);
        out.push(Piece::Shared(Bytes::from_static(b"\r\n")));
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Router;
    use tokio::io::AsyncWriteExt;

    use super::super::serve;
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
        let server = Server::new(crate::server::Config {
            header_timeout: Duration::from_secs(600),
            ..Default::default()
        });
        let task = tokio::spawn(serve(server_end, app, server, None, |_, _| async {
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
}
