//! What a connection served by hyper is doing, watched from outside hyper: the limits hyper does
//! not enforce on its own.
//!
//! [`Watched`] is the byte stream handed to hyper. It shares the stream with a [`Watch`] that
//! - counts the requests in progress (from the call of the service to the end of its response
//!   body), so that a connection without one for the idle limit can be closed: hyper has no idle
//!   limit for HTTP/2 at all, and an HTTP/1.1 connection handed to hyper is covered too;
//! - lets a handler that waits (a subscriber's GET) notice that the client is gone
//!   ([`PeerWatch`]): HTTP/1.1 runs with half-close allowed, so that a POST whose client shuts its
//!   sending side after a complete body is still answered; hyper then reads nothing while a request
//!   is in progress, so the waiting handler reads ahead itself (the same rule as our own front:
//!   [`http1::poll_gone`]) and, when the client is gone, aborts the connection;
//! - fails a write the client has taken no byte of for the send timeout ([`SendDeadline`]), which
//!   ends the connection; and notices a response whose next frame hyper does not come for in that
//!   time ([`Watch::stalled`]: an HTTP/2 client that opens no flow-control window never fills the
//!   socket), on which the connection is dropped.
//!
//! The stream sits behind a mutex because the waiting handler and hyper both touch it. They never
//! do at the same time in practice (hyper does not read an HTTP/1.1 connection while a request is
//! in progress, and the handler reads only then), and the lock is never held across an await.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::{Buf, BytesMut};
use http::{Request, Response, Version};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::http1;

/// The stream of a connection served by hyper.
pub(super) struct Watched<S> {
    shared: Arc<Shared<S>>,
}

/// The side of a [`Watched`] stream that the connection's driver and its requests hold.
#[derive(Clone)]
pub(super) struct Watch {
    state: Arc<State>,
    peer: Arc<dyn Peer>,
}

struct Shared<S> {
    io: Mutex<Io<S>>,
    state: Arc<State>,
}

struct Io<S> {
    stream: S,
    /// Bytes a waiting handler read ahead for hyper.
    ahead: BytesMut,
    /// The client is gone (a waiting handler saw its side close): every read and write fails.
    aborted: bool,
    deadline: SendDeadline,
}

struct State {
    in_flight: AtomicUsize,
    /// When each response in progress last handed hyper a frame that hyper has not come back
    /// for (milliseconds since `epoch`; 0: not waiting on hyper). See [`Watch::stalled`].
    handed_out: Mutex<Vec<Weak<AtomicU64>>>,
    /// Milliseconds since `epoch` when the last request in progress ended.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    aborted: AtomicBool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Watched<S> {
    /// Wraps `stream`; writes fail after `send_timeout` without progress.
    pub(super) fn new(stream: S, send_timeout: Duration) -> (Watched<S>, Watch) {
        let state = Arc::new(State {
            in_flight: AtomicUsize::new(0),
            handed_out: Mutex::new(Vec::new()),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            aborted: AtomicBool::new(false),
        });
        let shared = Arc::new(Shared {
            io: Mutex::new(Io {
                stream,
                ahead: BytesMut::new(),
                aborted: false,
                deadline: SendDeadline::new(send_timeout),
            }),
            state: state.clone(),
        });
        let watch = Watch {
            state,
            peer: shared.clone(),
        };
        (Watched { shared }, watch)
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the client went away")
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut io = self.shared.io.lock();
        if io.aborted {
            return Poll::Ready(Err(aborted()));
        }
        if !io.ahead.is_empty() {
            let n = io.ahead.len().min(out.remaining());
            out.put_slice(&io.ahead[..n]);
            io.ahead.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut io.stream).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.shared
            .poll_write_with(cx, |stream, cx| stream.poll_write(cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.shared
            .poll_write_with(cx, |stream, cx| stream.poll_write_vectored(cx, data))
    }

    fn is_write_vectored(&self) -> bool {
        self.shared.io.lock().stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.shared.io.lock();
        // A TLS stream holds up to 64 KiB of its own: the last bytes may wait here.
        let flushed = Pin::new(&mut io.stream).poll_flush(cx);
        io.deadline.guard(cx, flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.shared.io.lock();
        let shut = Pin::new(&mut io.stream).poll_shutdown(cx);
        io.deadline.guard(cx, shut)
    }
}

impl<S: AsyncWrite + Unpin> Shared<S> {
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut io = self.io.lock();
        if io.aborted {
            return Poll::Ready(Err(aborted()));
        }
        let written = write(Pin::new(&mut io.stream), cx);
        io.deadline.guard(cx, written)
    }
}

/// What a waiting handler does with the connection it came on.
trait Peer: Send + Sync {
    /// `Ready` when the client is gone (see [`http1::poll_gone`]); reads ahead for hyper meanwhile.
    fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<()>;
    /// Ends the connection: hyper's next read or write fails.
    fn abort(&self);
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Peer for Shared<S> {
    fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut io = self.io.lock();
        let Io { stream, ahead, .. } = &mut *io;
        http1::poll_gone(stream, ahead, cx)
    }

    fn abort(&self) {
        self.io.lock().aborted = true;
        self.state.aborted.store(true, Ordering::Relaxed);
    }
}

impl Watch {
    /// Counts `req` in progress until its response body ends, and lets an HTTP/1 request's handler
    /// watch for the client going away ([`PeerWatch`] in its extensions).
    pub(super) fn track<B>(&self, req: &mut Request<B>) -> InFlight {
        let http1 = req.version() <= Version::HTTP_11;
        if http1 {
            req.extensions_mut().insert(PeerWatch(self.peer.clone()));
        }
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            state: self.state.clone(),
            peer: http1.then(|| self.peer.clone()),
        }
    }

    /// Counts the connection's idle time from now on (when no request is in progress).
    pub(super) fn restart_idle(&self) {
        let now = self.state.now_ms();
        self.state.idle_since_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once no request has been in progress for `limit`.
    pub(super) async fn idle_for(&self, limit: Duration) {
        loop {
            let state = &self.state;
            // Acquire: the idle time stored before the last request ended is seen with it.
            let wake = if state.in_flight.load(Ordering::Acquire) == 0 {
                let since = state.idle_since_ms.load(Ordering::Relaxed);
                let idle_at = later(state.epoch, Duration::from_millis(since) + limit);
                if idle_at <= Instant::now() && state.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle_at
            } else {
                later(Instant::now(), limit)
            };
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Resolves when a response has waited for hyper to take its next frame for `limit`: the
    /// client takes nothing (HTTP/2: it opens no flow-control window; the socket itself is watched
    /// by the [`SendDeadline`] of every write). Looked at twice per `limit`, so it is noticed
    /// between one and one and a half periods after the last frame.
    pub(super) async fn stalled(&self, limit: Duration) {
        let limit_ms = limit.as_millis() as u64;
        loop {
            tokio::time::sleep((limit / 2).max(Duration::from_millis(1))).await;
            let now = self.state.now_ms();
            let mut handed_out = self.state.handed_out.lock();
            handed_out.retain(|response| response.strong_count() > 0);
            let stuck = handed_out.iter().filter_map(Weak::upgrade).any(|at| {
                let at = at.load(Ordering::Relaxed);
                at != 0 && now.saturating_sub(at) >= limit_ms
            });
            if stuck {
                return;
            }
        }
    }

    /// Whether a handler ended the connection because its client went away.
    pub(super) fn aborted(&self) -> bool {
        self.state.aborted.load(Ordering::Relaxed)
    }
}

/// A request in progress; dropped with its response body.
pub(super) struct InFlight {
    state: Arc<State>,
    /// The connection, for an HTTP/1 request: its response body watches for the client going
    /// away while it waits for bytes.
    peer: Option<Arc<dyn Peer>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.state;
        state.idle_since_ms.store(state.now_ms(), Ordering::Relaxed);
        state.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// `at + after`, or far in the future when that is beyond what an `Instant` holds (a configured
/// timeout of a hundred years must not panic).
fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 86_400))
}

/// Holds `in_flight` until `response`'s body is done, and records when hyper takes its frames
/// ([`Watch::stalled`]).
pub(super) fn hold_until_sent(response: Response<Body>, in_flight: InFlight) -> Response<Body> {
    let handed_out = Arc::new(AtomicU64::new(0));
    in_flight
        .state
        .handed_out
        .lock()
        .push(Arc::downgrade(&handed_out));
    response.map(|body| {
        Body::new(Sending {
            body,
            handed_out,
            in_flight,
        })
    })
}

/// A response body on a hyper connection: after each data frame it hands hyper, it notes the
/// time; hyper coming back for the next frame clears it.
struct Sending {
    body: Body,
    handed_out: Arc<AtomicU64>,
    in_flight: InFlight,
}

impl http_body::Body for Sending {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        let handed_at = match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_data() => this.in_flight.state.now_ms().max(1),
            _ => 0,
        };
        this.handed_out.store(handed_at, Ordering::Relaxed);
        if polled.is_pending()
            && let Some(peer) = &this.in_flight.peer
            && peer.poll_gone(cx).is_ready()
        {
            // HTTP/1 with half-close allowed: hyper reads nothing while a response streams, so a
            // client gone while its segment waits for bytes is noticed here (as in our front).
            peer.abort();
            return Poll::Ready(Some(Err(axum::Error::new(aborted()))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl State {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// In a request's extensions when it came on an HTTP/1 connection served by hyper: lets a handler
/// that waits notice the client going away.
#[derive(Clone)]
pub(crate) struct PeerWatch(Arc<dyn Peer>);

impl PeerWatch {
    /// Runs `work` while the client is connected; `None` (and the connection aborted, so that no
    /// answer is written) if it went away first. An answer that is ready wins.
    pub(crate) async fn while_connected<F: Future>(&self, work: F) -> Option<F::Output> {
        let mut work = std::pin::pin!(work);
        let gone = poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            self.0.poll_gone(cx).map(|()| None)
        })
        .await;
        if gone.is_none() {
            self.0.abort();
        }
        gone
    }
}

/// Fails a response whose client takes no byte of it for the send timeout: a reader that never
/// reads would otherwise hold its connection, and the segments it is behind on, forever.
///
/// Cheap on the data path: a write that goes through only sets a flag. The timer is made at the
/// first stall and looked at only while a write waits; when it fires after some progress it is
/// set again for a full period. So a stall is detected between one and two periods after it began,
/// and a connection whose client keeps up resets the timer at most once a period.
pub(super) struct SendDeadline {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether a write went through since `sleep` was set.
    progressed: bool,
}

impl SendDeadline {
    pub(super) fn new(limit: Duration) -> SendDeadline {
        SendDeadline {
            limit,
            sleep: None,
            progressed: false,
        }
    }

    /// What a write (or flush, or shutdown) to the client came to: one that went through is
    /// progress; one that waits becomes an error once the client has taken nothing for the send
    /// timeout.
    pub(super) fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.poll_stalled(cx).map(Err),
            done => {
                self.progressed = true;
                done
            }
        }
    }

    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let sleep = self.sleep.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(later(Instant::now(), limit)))
        });
        loop {
            ready!(sleep.as_mut().poll(cx));
            if !std::mem::take(&mut self.progressed) {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took no byte for the send timeout",
                ));
            }
            sleep.as_mut().reset(later(Instant::now(), limit));
        }
    }
}
