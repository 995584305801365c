//! A subscriber's GET (`GET /{name}/{seq}`, `/next`; HEAD too): one step of the read path
//! ([`super::read::Cursor`]), a wait for the version's first byte, then its bytes streamed as they
//! arrive ([`SegmentStream`]), each a slice of the segment's shared chunks.
//!
//! The router answers with [`subscribe`]; the HTTP/1.1 front calls [`subscribe_path`] itself for a
//! plain GET and writes the [`SegmentStream`] without building a response object.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body::Frame;
use http_body_util::StreamBody;

use super::channel::{Channel, ReadLookup};
use super::conn::PeerWatch;
use super::http::{channel_to_read, closing, error, not_held, set, text};
use super::read::Cursor;
use super::route::Seq;
use super::segment::{SegmentReader, Start};
use super::{Server, Stat, StatGuard};
use crate::protocol::{self, Error};

/// `GET /{name}/{seq}` and `GET /{name}/next` (HEAD too).
pub(super) async fn subscribe(
    server: &Server,
    parts: &http::request::Parts,
    raw_name: &str,
    seq: Seq,
) -> Response {
    let answer = subscribe_path(server, raw_name, seq);
    // On an HTTP/1 connection served by hyper, nothing else notices the client going away while
    // the answer waits (our own front and HTTP/2 do).
    match parts.extensions.get::<PeerWatch>() {
        None => answer.await.into_response(),
        Some(peer) => match peer.while_connected(answer).await {
            Some(answer) => answer.into_response(),
            // Never written: the connection is aborted.
            None => closing(text(StatusCode::BAD_REQUEST, "Client went away")),
        },
    }
}

/// What a subscriber's GET gets, before it is a response.
pub(super) enum Subscribed {
    /// A version of the segment, streamed from its first byte.
    Segment(SegmentStream),
    /// Anything else: an error, a 470, an empty segment, the write head, a timeout.
    Response(Response),
}

impl From<Response> for Subscribed {
    fn from(response: Response) -> Subscribed {
        Subscribed::Response(response)
    }
}

impl IntoResponse for Subscribed {
    fn into_response(self) -> Response {
        match self {
            Subscribed::Segment(segment) => segment.into_response(),
            Subscribed::Response(response) => response,
        }
    }
}

/// [`subscribe`] for a channel and seq (the only parts of the request it reads).
pub(super) async fn subscribe_path(server: &Server, raw_name: &str, seq: Seq) -> Subscribed {
    let channel = match channel_to_read(server, raw_name).await {
        Ok(channel) => channel,
        Err(err) => return error(&err).into(),
    };
    if seq == Seq::Next {
        return next_write(&channel).into();
    }
    let param = match seq.param() {
        Ok(param) => param,
        Err(err) => return error(&err).into(),
    };
    let mut cursor = Cursor::new(channel, param);
    match cursor.step() {
        ReadLookup::NotHeld {
            seq,
            latest,
            closed,
        } => {
            // On an edge, a segment older than the relay's copy may still be at the origin.
            #[cfg(feature = "client")]
            if !closed
                && seq < latest
                && let Some(segment) = server
                    .relays()
                    .backfill(server, cursor.channel(), seq)
                    .await
            {
                return serve_segment(server, cursor.channel().clone(), segment, latest).await;
            }
            not_held(seq, latest, closed).into()
        }
        ReadLookup::Found { segment, latest } => {
            serve_segment(server, cursor.channel().clone(), segment, latest).await
        }
    }
}

/// `GET /{name}/next`: the write head as text.
fn next_write(channel: &Channel) -> Response {
    let next = channel.next_write();
    let mut response = Response::new(Body::from(next.to_string()));
    set(
        &mut response,
        header::CONTENT_TYPE.as_str(),
        "text/plain; charset=utf-8",
    );
    set(&mut response, protocol::LATEST, next);
    if channel.is_closed() {
        set(&mut response, protocol::CLOSED, "terminated");
    }
    response
}

/// Streams one version: headers at its first byte, then every byte as it arrives.
async fn serve_segment(
    server: &Server,
    channel: Arc<Channel>,
    segment: Arc<super::segment::Segment>,
    latest_at_arrival: u64,
) -> Subscribed {
    let seq = segment.seq();
    let start = {
        let _waiting = server.stat_in(Stat::WaitingGets, &channel);
        tokio::select! {
            start = segment.wait_started() => start,
            _ = tokio::time::sleep(server.config().wait_timeout) => {
                let mut response = error(&Error::Timeout);
                set(&mut response, protocol::SEQ, seq);
                set(&mut response, protocol::LATEST, channel.next_write());
                return response.into();
            }
        }
    };
    let buffered = match start {
        Start::Data { buffered } => buffered,
        Start::Failed | Start::Evicted => {
            return not_held(seq, channel.next_write(), channel.is_closed()).into();
        }
        Start::Empty => {
            let mut response = Response::new(Body::empty());
            set(&mut response, protocol::SEQ, seq);
            set(&mut response, protocol::LATEST, channel.next_write());
            set(&mut response, protocol::SIZE, 0);
            if channel.is_closed() {
                set(&mut response, protocol::CLOSED, "terminated");
            }
            return response.into();
        }
    };
    Subscribed::Segment(SegmentStream {
        seq,
        latest: (seq != latest_at_arrival).then_some(latest_at_arrival),
        buffered,
        reader: segment.reader(),
        streaming: server.stat_in(Stat::StreamingGets, &channel),
        channel,
    })
}

/// A 200 that streams one version's bytes as they arrive. The router sends it as a [`Response`];
/// the HTTP/1.1 front writes [`SegmentStream::headers`] and [`SegmentStream::into_body`] itself,
/// without a header map or a boxed body.
pub(super) struct SegmentStream {
    seq: u64,
    /// The write head when the request arrived, if that was not this seq.
    latest: Option<u64>,
    /// Bytes already buffered when the first one arrived.
    buffered: u64,
    reader: SegmentReader,
    streaming: StatGuard,
    channel: Arc<Channel>,
}

impl SegmentStream {
    /// Calls `header` with each header of the answer (name, value), the framing ones aside.
    pub(super) fn headers(&self, mut header: impl FnMut(&'static str, &[u8])) {
        let mut number = itoa::Buffer::new();
        header(protocol::SEQ, number.format(self.seq).as_bytes());
        if let Some(latest) = self.latest {
            header(protocol::LATEST, number.format(latest).as_bytes());
        }
        header(protocol::SIZE, number.format(self.buffered).as_bytes());
        header(
            header::CONTENT_TYPE.as_str(),
            self.channel.mime().as_bytes(),
        );
    }

    /// The body: every byte as it arrives ([`body`]).
    pub(super) fn into_body(
        self,
    ) -> impl http_body::Body<Data = Bytes, Error = io::Error> + Send + 'static {
        body(self.reader, self.streaming)
    }
}

/// A version's bytes from `reader` as they arrive, each a slice of its shared chunks, counted in
/// `streaming`; an error if the version fails, on which HTTP/1.1 drops the connection without
/// the final chunk and HTTP/2 resets the stream.
pub(super) fn body(
    reader: SegmentReader,
    streaming: StatGuard,
) -> impl http_body::Body<Data = Bytes, Error = io::Error> + Send + 'static {
    let state = Some((reader, streaming));
    let frames = futures_util::stream::unfold(state, |state| async move {
        let (mut reader, mut streaming) = state?;
        match reader.next_chunk().await {
            Ok(Some(chunk)) => {
                streaming.add_bytes_out(chunk.len() as u64);
                Some((Ok(Frame::data(chunk)), Some((reader, streaming))))
            }
            Ok(None) => None,
            Err(_) => Some((Err(io::Error::other("segment failed")), None)),
        }
    });
    StreamBody::new(frames)
}

impl IntoResponse for SegmentStream {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        self.headers(|name, value| {
            // Numbers, and a mime type checked when the channel was made.
            let value = HeaderValue::from_bytes(value).expect("valid header values");
            headers.insert(HeaderName::from_static(name), value);
        });
        let mut response = Response::new(Body::new(self.into_body()));
        *response.headers_mut() = headers;
        response
    }
}
