//! Runs a [`Server`] on a TCP listener: HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same
//! port, or both over TLS (HTTP/2 by ALPN); `TCP_NODELAY` for latency; and a graceful shutdown
//! that first closes every channel (so waiting clients get end of stream) and then gives open
//! connections a moment to finish.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::Duration;

use axum::response::IntoResponse;
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use std::sync::Arc;

use hyper_util::server::graceful::{GracefulConnection, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use super::{Counter, Server, http1, tls};

/// How long connections may take to finish after shutdown began.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `server` on `listener` until `shutdown` resolves or [`Server::shutdown`] is called.
/// Returns once every channel is closed and connections have drained (or the drain timed out).
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run(listener, server, None, shutdown).await
}

/// Like [`serve`], over TLS: every connection first completes a handshake with `tls` (within
/// [`tls::HANDSHAKE_TIMEOUT`]); ALPN `h2` selects HTTP/2.
pub async fn serve_tls(
    listener: TcpListener,
    server: Server,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run(listener, server, Some(TlsAcceptor::from(tls)), shutdown).await
}

async fn run(
    listener: TcpListener,
    server: Server,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let shared = Shared::new(server.clone());
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
            _ = server.shut_down() => break,
        };
        let _ = stream.set_nodelay(true);
        let (shared, tls, watcher) = (shared.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return front(stream, shared, Some(watcher)).await;
            };
            Box::pin(async move {
                match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => front(stream, shared, Some(watcher)).await,
                    Ok(Err(err)) => tracing::debug!(%err, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            })
            .await
        });
    }
    drop(listener);
    server.shutdown();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("connections still open after the drain timeout"),
    }
    Ok(())
}

/// Serves one accepted connection, any byte stream (a socket, a TLS stream after its handshake,
/// an in-memory pipe), until it ends: what [`serve`] does for each of its connections, without
/// the graceful drain.
pub async fn serve_connection<S>(server: Server, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    front(stream, Shared::new(server), None).await
}

/// What all connections of a listener share: the router, hyper's settings, the server.
#[derive(Clone)]
struct Shared {
    app: axum::Router,
    /// For connections that start with hyper: HTTP/1.1, or HTTP/2 by its preface.
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// For connections handed over after our front answered on them: HTTP/1.1 only.
    http1_builder: Arc<auto::Builder<TokioExecutor>>,
    server: Server,
}

impl Shared {
    fn new(server: Server) -> Shared {
        let counted = server.clone();
        let app = server.app(move || async move {
            counted.count(Counter::NotFound, 1);
            (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(server.config().header_timeout);
        builder.http2().timer(TokioTimer::new());
        Shared {
            app,
            http1_builder: Arc::new(builder.clone().http1_only()),
            builder: Arc::new(builder),
            server,
        }
    }
}

/// Serves one connection until it ends or shutdown drains it: requests start in our lean
/// HTTP/1.1 front ([`http1`]), which hands hyper whatever it does not take. `watcher` lives as
/// long as the connection, so a graceful shutdown waits for it.
async fn front<S>(stream: S, shared: Shared, watcher: Option<Watcher>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Shared {
        app,
        builder,
        http1_builder,
        server,
    } = shared;
    let service = TowerToHyperService::new(app.clone());
    let hyper = |stream, answered_before: bool| {
        Box::pin(async move {
            let io = TokioIo::new(stream);
            if answered_before {
                // HTTP/1.1 for good (`http1_only` holds only without upgrades).
                finish(http1_builder.serve_connection(io, service), watcher).await
            } else {
                finish(builder.serve_connection_with_upgrades(io, service), watcher).await
            }
        })
    };
    http1::serve(stream, app, server, hyper).await
}

/// Drives a hyper connection to its end, draining it gracefully when `watcher` says so.
async fn finish<C>(connection: C, watcher: Option<Watcher>)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let ended = match watcher {
        Some(watcher) => watcher.watch(connection).await,
        None => connection.await,
    };
    if let Err(err) = ended {
        tracing::debug!(%err, "connection ended with an error");
    }
}
