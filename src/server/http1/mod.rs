//! A lean HTTP/1.1 front for the requests a busy server is mostly made of: subscribers' GETs.
//!
//! Why: hyper gives every connection an 8 KiB read buffer and an 8 KiB header buffer for its whole
//! life. With ten thousand subscribers, each waiting on a GET and holding a preconnect for the
//! next, those buffers are most of the server's memory (BENCHMARKS.md). This front reads a request
//! head through a small stack buffer into a heap buffer that exists only while a head is
//! incomplete, runs bodiless GET and DELETE requests through the same axum router as everything
//! else, and writes the response itself: the head together with the first bytes of the body, then
//! the body in HTTP/1.1 chunks, every frame that is ready gathered into one `writev`. The busiest
//! request of all, a subscriber's plain `GET /{channel}/{seq}` on a server without tokens or routes
//! of the embedder's, calls the router's own handler for it directly (`http::subscribe_path`), and writes a segment's
//! answer from its parts (`http::SegmentStream`): the same answer, without the request object,
//! the dispatch, a header map or boxed bodies (a quarter of the allocations, BENCHMARKS.md). An
//! LL-HLS or DASH player's GET without a query (a part, the next one of which thousands of players
//! wait on together) likewise calls its handler (`http::player`) directly, and its answer is
//! written as a routed one is: the router's layers were about a third of the server's CPU for
//! such GETs (perf, 10,000 players).
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
//!
//! Its parts: [`head`] parses a request head and decides who answers it, [`response`] writes an
//! answer (head, body, framing), [`outbox`] gathers what is ready into one `writev`; this file
//! reads the connection and runs the loop.

mod head;
mod outbox;
mod response;

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tower::ServiceExt;

use self::head::{Head, parse, parse_slice};
use self::response::{Keep, respond, write_subscribed};
use super::Server;
use super::http::{count_answer, player};
use super::socket::SocketProbe;
use super::{publish, subscribe};

/// The longest request head parsed here; a longer one goes to hyper, which has its own limit.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most bytes a client may send ahead of the answer it waits for (pipelined requests); more
/// closes the connection. No Trickle client sends more than a request or two ahead.
pub const MAX_AHEAD: usize = MAX_HEAD;
/// Bytes read from the socket per read call while a head is incomplete or a request runs.
const READ_SIZE: usize = 512;
/// Serves one connection until it ends, or until a request this front does not take, when it
/// calls `hand_over` with the connection and the bytes already read. `app` must be `server`'s own
/// routes ([`Server::app`]): plain subscriber GETs are answered by their handler directly.
/// `hand_over` learns whether this front answered requests on the connection before: then it is
/// an HTTP/1.1 connection for good (no switch to HTTP/2 by a preface in the middle).
pub async fn serve<S, H, F>(
    mut stream: S,
    app: Router,
    server: Server,
    probe: Option<SocketProbe>,
    hand_over: H,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: FnOnce(Prefixed<S>, bool) -> F,
    F: Future<Output = ()>,
{
    let mut buf = BytesMut::new();
    let mut answered = false;
    loop {
        let after = match next_head(&mut stream, &mut buf, &server).await {
            Head::Routed { request, close } => {
                let handled = pin!(app.clone().oneshot(with_probe(request, probe)));
                let Some(Ok::<_, Infallible>(response)) =
                    while_connected(&mut stream, &mut buf, handled).await
                else {
                    return;
                };
                // Boxed, as the subscriber's steps are: inline, the writing state would make every
                // connection's task larger for its whole life (126 bytes per waiting GET measured).
                Box::pin(respond(&mut stream, &mut buf, &server, response, close)).await
            }
            Head::Subscribe { name, seq, close } => {
                // Both steps boxed, each on its own: every connection's task would otherwise be
                // as large as the larger of them all its life, and the wait (often long, for a
                // preconnect) holds only the small one.
                let mut waiting = Box::pin(subscribe::subscribe_path(&server, &name, seq));
                let Some(answer) = while_connected(&mut stream, &mut buf, waiting.as_mut()).await
                else {
                    return;
                };
                drop(waiting);
                let writing = write_subscribed(&mut stream, &mut buf, &server, answer, close);
                Box::pin(writing).await
            }
            Head::Player { name, piece, close } => {
                let mut waiting = Box::pin(player(&server, &name, piece, None));
                let Some(response) = while_connected(&mut stream, &mut buf, waiting.as_mut()).await
                else {
                    return;
                };
                drop(waiting);
                // What the router's status counting would have counted.
                count_answer(&server, response.status());
                Box::pin(respond(&mut stream, &mut buf, &server, response, close)).await
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
                let refused = publish::body_too_large(&server);
                Box::pin(respond(&mut stream, &mut buf, &server, refused, true)).await
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

/// `request` with `probe` in its extensions. A function of its own: done inline, the request
/// would keep a slot of its own in every connection's task (280 bytes per connection measured).
fn with_probe(
    mut request: http::Request<axum::body::Body>,
    probe: Option<SocketProbe>,
) -> http::Request<axum::body::Body> {
    if let Some(probe) = probe {
        request.extensions_mut().insert(probe);
    }
    request
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
