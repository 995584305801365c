//! Runs a [`Server`] on a TCP listener: HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same
//! port, or both over TLS (HTTP/2 by ALPN); `TCP_NODELAY` for latency; and a graceful shutdown
//! that first closes every channel (so waiting clients get end of stream) and then gives open
//! connections a moment to finish.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::Duration;

use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpListener;

use std::convert::Infallible;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
#[cfg(feature = "tls")]
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::conn::{self, Watched};
use super::http1::Prefixed;
use super::socket::SocketProbe;
#[cfg(feature = "tls")]
use super::tls;
use super::{Server, http1};

/// How long connections may take to finish after shutdown began.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `server` on `listener` until `shutdown` resolves or [`Server::shutdown`] is called.
/// Returns once every channel is closed and connections have drained (or the drain timed out).
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run(listener, server, Handshake::None, shutdown).await
}

/// Like [`serve`], over TLS: every connection first completes a handshake with `tls` (within
/// [`tls::HANDSHAKE_TIMEOUT`]); ALPN `h2` selects HTTP/2.
#[cfg(feature = "tls")]
pub async fn serve_tls(
    listener: TcpListener,
    server: Server,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let tls = Handshake::Tls(TlsAcceptor::from(tls));
    run(listener, server, tls, shutdown).await
}

/// What an accepted connection goes through before its first request.
#[derive(Clone)]
enum Handshake {
    None,
    #[cfg(feature = "tls")]
    Tls(TlsAcceptor),
}

async fn run(
    listener: TcpListener,
    server: Server,
    handshake: Handshake,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let shared = Shared::new(server.clone());
    let connections = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    let mut refused = AcceptErrors::default();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    refused.recovered();
                    accepted
                }
                Err(err) => {
                    // Usually EMFILE: back off instead of spinning.
                    tokio::time::sleep(refused.failed(&err)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
            _ = server.shut_down() => break,
        };
        let _ = stream.set_nodelay(true);
        let probe = SocketProbe::of(&stream);
        let (shared, handshake) = (shared.clone(), handshake.clone());
        connections.spawn(async move {
            match handshake {
                Handshake::None => front(stream, shared, Some(probe)).await,
                // Boxed: plain connections' tasks need not carry the handshake's state.
                #[cfg(feature = "tls")]
                Handshake::Tls(tls) => Box::pin(tls_front(stream, tls, shared)).await,
            }
        });
    }
    drop(listener);
    server.shutdown();
    connections.close();
    tokio::select! {
        _ = connections.wait() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("connections still open after the drain timeout"),
    }
    Ok(())
}

/// [`front`] after a TLS handshake that must finish within [`tls::HANDSHAKE_TIMEOUT`].
#[cfg(feature = "tls")]
async fn tls_front(stream: tokio::net::TcpStream, tls: TlsAcceptor, shared: Shared) {
    match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            let probe = SocketProbe::of(stream.get_ref().0);
            front(stream, shared, Some(probe)).await
        }
        Ok(Err(err)) => tracing::debug!(%err, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

/// Failed accepts (out of file descriptors, mostly): each one backs off a little longer, up to a
/// second, and they are logged once per [`AcceptErrors::LOG_EVERY`] with a count, not one line each.
#[derive(Default)]
struct AcceptErrors {
    /// Failures in a row.
    in_a_row: u32,
    /// Failures not logged yet, and when the last line was logged.
    unlogged: u64,
    logged_at: Option<std::time::Instant>,
}

impl AcceptErrors {
    const LOG_EVERY: Duration = Duration::from_secs(10);

    /// Records a failure; returns how long to wait before the next accept.
    fn failed(&mut self, err: &io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unlogged += 1;
        if self
            .logged_at
            .is_none_or(|at| at.elapsed() >= Self::LOG_EVERY)
        {
            tracing::warn!(
                %err,
                "accept failed ({} times since the last report); backing off",
                self.unlogged
            );
            self.unlogged = 0;
            self.logged_at = Some(std::time::Instant::now());
        }
        let exponent = self.in_a_row.min(7);
        Duration::from_millis(10 << exponent).min(Duration::from_secs(1))
    }

    fn recovered(&mut self) {
        if self.in_a_row > 0 && self.unlogged > 0 {
            tracing::warn!("accept failed {} more times, then recovered", self.unlogged);
        }
        *self = AcceptErrors {
            logged_at: self.logged_at,
            ..Default::default()
        };
    }
}

/// Serves one accepted connection, any byte stream (a socket, a TLS stream after its handshake,
/// an in-memory pipe), until it ends: what [`serve`] does for each of its connections, without
/// the drain at shutdown.
pub async fn serve_connection<S>(server: Server, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    front(stream, Shared::new(server), None).await
}

/// Serves [`Server::metrics_router`] on `listener` until the server shuts down, with the same
/// timeouts as the Trickle port and at most [`MAX_METRICS_CONNECTIONS`] connections at once (more
/// are closed at once): a scraper needs one, and idle ones must not eat the file descriptors the
/// Trickle port needs.
pub async fn serve_metrics(listener: TcpListener, server: Server) {
    let shared = Shared {
        lean: false,
        ..Shared::with_app(server.clone(), server.metrics_router())
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_METRICS_CONNECTIONS));
    let mut refused = AcceptErrors::default();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    refused.recovered();
                    stream
                }
                Err(err) => {
                    tokio::time::sleep(refused.failed(&err)).await;
                    continue;
                }
            },
            _ = server.shut_down() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics connection refused: {MAX_METRICS_CONNECTIONS} already open");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            front(stream, shared, None).await;
            drop(slot);
        });
    }
}

/// Connections to the metrics listener at once.
pub const MAX_METRICS_CONNECTIONS: usize = 16;

/// What all connections of a listener share: the router, hyper's settings, the server.
#[derive(Clone)]
struct Shared {
    app: axum::Router,
    /// Whether requests start in our HTTP/1.1 front ([`http1`]); otherwise hyper serves all.
    lean: bool,
    /// For connections that start with hyper: HTTP/1.1, or HTTP/2 by its preface.
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// For connections handed over after our front answered on them: HTTP/1.1 only.
    http1_builder: Arc<auto::Builder<TokioExecutor>>,
    server: Server,
}

impl Shared {
    fn new(server: Server) -> Shared {
        // Counted with every other answer ([`Server::app`]).
        let app = server.app(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") });
        Shared::with_app(server, app)
    }

    fn with_app(server: Server, app: axum::Router) -> Shared {
        let config = server.config();
        // The idle limit of a connection is the header timeout, whatever its protocol.
        let idle = config.header_timeout;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(idle)
            // A client that shuts its sending side after a complete request still gets its answer
            // (a POST's segment is not lost); waiting handlers watch for it going away themselves
            // ([`conn::PeerWatch`]).
            .half_close(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            // Pings find dead peers of connections with requests in progress.
            .keep_alive_interval(Some(idle))
            .keep_alive_timeout(idle);
        Shared {
            app,
            lean: true,
            http1_builder: Arc::new(builder.clone().http1_only()),
            builder: Arc::new(builder),
            server,
        }
    }
}

/// Serves one connection until it ends or shutdown drains it: requests start in our lean
/// HTTP/1.1 front ([`http1`]), which hands hyper whatever it does not take. `probe`, for a TCP
/// connection, goes into its HTTP/1 requests' extensions.
async fn front<S>(stream: S, shared: Shared, probe: Option<SocketProbe>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Shared {
        app,
        lean,
        builder,
        http1_builder,
        server,
    } = shared;
    let limits = server.clone();
    let service_app = app.clone();
    let hyper = move |stream, answered_before: bool| {
        Box::pin(async move {
            let config = limits.config();
            let (io, watch) = Watched::new(stream, config.send_timeout);
            let tracker = watch.clone();
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let in_flight = tracker.track(&mut req);
                if let Some(probe) = probe.filter(|_| req.version() <= ::http::Version::HTTP_11) {
                    req.extensions_mut().insert(probe);
                }
                let app = service_app.clone();
                async move {
                    let Ok::<_, Infallible>(response) = app.oneshot(req).await;
                    Ok::<_, Infallible>(conn::hold_until_sent(response, in_flight))
                }
            });
            let io = TokioIo::new(io);
            if answered_before {
                // HTTP/1.1 for good (`http1_only` holds only without upgrades).
                drive(http1_builder.serve_connection(io, service), &watch, &limits).await
            } else {
                let connection = builder.serve_connection_with_upgrades(io, service);
                drive(connection, &watch, &limits).await
            }
        })
    };
    if lean {
        http1::serve(stream, app, server, probe, hyper).await
    } else {
        hyper(Prefixed::new(stream), false).await
    }
}

/// Drives a hyper connection to its end. When the server shuts down, or no request has been in
/// progress for the idle limit, the connection is asked to close (HTTP/2: GOAWAY; HTTP/1.1: after
/// the request in progress); one that still has no request in progress another idle limit later
/// (a client holding half a header block, say) is dropped.
async fn drive<C>(connection: C, watch: &conn::Watch, server: &Server)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let idle = server.config().header_timeout;
    let mut connection = pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        _ = server.shut_down() => None,
        _ = watch.idle_for(idle) => None,
        _ = watch.stalled(server.config().send_timeout) => {
            tracing::debug!("connection dropped: a response's client took nothing for the send timeout");
            return;
        }
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            connection.as_mut().graceful_shutdown();
            watch.restart_idle();
            tokio::select! {
                ended = connection.as_mut() => ended,
                _ = watch.idle_for(idle) => {
                    tracing::debug!("connection dropped: it did not close after being asked to");
                    return;
                }
            }
        }
    };
    if let Err(err) = ended
        && !watch.aborted()
    {
        tracing::debug!(%err, "connection ended with an error");
    }
}
