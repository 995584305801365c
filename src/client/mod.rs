//! Trickle clients over HTTP: a [`Publisher`] that POSTs segments to a channel and a [`Subscriber`]
//! that GETs them, with the semantics of the Go reference clients (`TricklePublisher`,
//! `TrickleSubscriber`). They use only the reference wire protocol, so they work against the Go
//! server as well as ours.
//!
//! Both keep the request for the *next* segment open ahead of time (a preconnect), so a segment
//! starts without a round trip. Failures are typed ([`ClientError`]): a missing channel, the end of
//! the stream, a seq that is no longer held, a segment whose publisher died half-way (an abnormal
//! end), and the server's own error answers with their message.

mod publisher;
mod subscriber;

use parking_lot::Mutex;
use std::time::Duration;

use http::HeaderMap;

pub use publisher::{PublishStart, Publisher, PublisherOptions, SegmentWriter};
pub use subscriber::{OnGap, Segment, SubscribeStart, Subscriber, SubscriberOptions};

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `404`: the channel does not exist (never did, or was deleted).
    #[error("stream not found")]
    StreamNotFound,
    /// The channel ended (`Lp-Trickle-Closed`): deleted, swept or the server stopped.
    #[error("end of stream")]
    EndOfStream,
    /// `470`: the channel exists but does not hold `seq`; `latest` is its write head.
    #[error("segment {seq} is not held by the channel (latest is {})", fmt_latest(*.latest))]
    SequenceNonexistent { seq: u64, latest: Option<u64> },
    /// The segment's response ended abnormally: its publisher failed and the bytes are incomplete.
    #[error("segment {seq} ended abnormally after {bytes} bytes (its publisher failed)")]
    SegmentFailed { seq: u64, bytes: u64 },
    /// `409`: another publisher started writing this seq first.
    #[error("segment {seq} was superseded by another publisher: {message}")]
    Conflict { seq: u64, message: String },
    /// `413`: the segment is larger than the server accepts.
    #[error("segment {seq} is too large for the server: {message}")]
    TooLarge { seq: u64, message: String },
    /// The server closed the preconnected segment before this publisher wrote to it (for example
    /// `DELETE /{name}/{seq}`); nothing was published.
    #[error("segment {seq} was closed by the server before it was written")]
    SegmentClosed { seq: u64 },
    /// Any other error answer, with the server's message.
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// The connection failed (refused, reset, timed out).
    #[error("connection failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

fn fmt_latest(latest: Option<u64>) -> String {
    latest.map_or_else(|| "unknown".into(), |l| l.to_string())
}

impl ClientError {
    /// Whether this error means the channel is over (end of stream or no such channel).
    pub fn is_end(&self) -> bool {
        matches!(self, ClientError::EndOfStream | ClientError::StreamNotFound)
    }
}

/// Connection settings shared by publishers and subscribers.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Extra headers sent with every request (for example `Authorization`).
    pub headers: HeaderMap,
    /// Accept any TLS certificate (self-signed development servers). Never use in production.
    pub insecure: bool,
    /// Use this HTTP client (and its connection pool) instead of the one this process keeps for
    /// these options (publishers and subscribers with equal options share that one), as a load
    /// generator does to control its pool. `headers` and `insecure` are then ignored: they are
    /// the client's own settings.
    pub http: Option<reqwest::Client>,
}

/// A new HTTP client for Trickle with these options, with a connection pool of its own (to share
/// via [`ConnectOptions::http`]).
pub fn new_http_client(options: &ConnectOptions) -> Result<reqwest::Client, ClientError> {
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .default_headers(options.headers.clone())
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .danger_accept_invalid_certs(options.insecure)
        .build()?;
    Ok(client)
}

/// The HTTP client for these options: no overall timeout (segments and waits are long),
/// TCP_NODELAY, HTTP/1.1 by default like the reference clients, and HTTP/2 when TLS negotiates
/// it.
///
/// Building a client loads and parses the system's root certificates (milliseconds; far more in
/// a debug build), and a subscriber that rejoins makes a new one each time: so clients are kept
/// per set of options, and publishers and subscribers with the same options share one
/// connection pool, like Go's default transport.
pub(crate) fn http_client(options: &ConnectOptions) -> Result<reqwest::Client, ClientError> {
    if let Some(client) = &options.http {
        return Ok(client.clone());
    }
    type Key = (bool, HeaderMap);
    static CLIENTS: Mutex<Vec<(Key, reqwest::Client)>> = Mutex::new(Vec::new());
    let mut clients = CLIENTS.lock();
    let found = clients.iter().find(|((insecure, headers), _)| {
        *insecure == options.insecure && *headers == options.headers
    });
    if let Some((_, client)) = found {
        return Ok(client.clone());
    }
    let client = new_http_client(options)?;
    if clients.len() >= MAX_CACHED_CLIENTS {
        // Options that keep changing (a token per subscriber, say): start over.
        clients.clear();
    }
    clients.push(((options.insecure, options.headers.clone()), client.clone()));
    Ok(client)
}

/// How many differently configured clients [`http_client`] keeps.
const MAX_CACHED_CLIENTS: usize = 16;

/// rustls needs a process-wide crypto provider; ring is ours. Installing twice is harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Checks a channel URL (`http[s]://host[:port]/[base/]channel`) and returns it without a trailing
/// slash, ready for `/{seq}` to be appended.
pub(crate) fn channel_url(url: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.into(),
        reason: reason.into(),
    };
    let parsed: reqwest::Url = url.parse().map_err(|e| invalid(&format!("{e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("a channel URL has no query or fragment"));
    }
    let trimmed = url.trim_end_matches('/');
    let path = parsed.path().trim_matches('/');
    if path.is_empty() {
        return Err(invalid(
            "the URL names no channel (expected http://host:port/channel)",
        ));
    }
    Ok(trimmed.into())
}

/// Reads a numeric `Lp-Trickle-*` header.
pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The server's one-line error message from a response body (trimmed, at most 200 characters).
pub(crate) async fn error_message(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let line = body.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        line.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_urls() {
        assert_eq!(
            channel_url("http://h:1/ch/").unwrap(),
            "http://h:1/ch".to_string()
        );
        assert_eq!(
            channel_url("https://h/ai/trickle/x").unwrap(),
            "https://h/ai/trickle/x".to_string()
        );
        assert!(channel_url("http://h:1/").is_err());
        assert!(channel_url("ftp://h/ch").is_err());
        assert!(channel_url("h/ch").is_err());
        assert!(channel_url("http://h/ch?x=1").is_err());
    }
}
