//! The HTTP face of the server: the reference's six routes under the base path (docs/PROTOCOL.md
//! describes what each answers), dispatched by their [`Route`] from one axum handler.
//!
//! Handlers parse and validate the request, ask the [`Channel`] which version to use, and then move
//! bytes: a POST body streams into a [`super::segment::SegmentWriter`], a GET streams a
//! [`super::segment::SegmentReader`] out as the response body. Every wait selects on the client
//! going away (the handler future is dropped), the channel closing, and the wait timeout.

use std::borrow::Cow;
use std::io;
use std::pin::pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio::time::Instant;

use super::channel::{Channel, PendingEnd, ReadLookup};
use super::conn::PeerWatch;
use super::read::Cursor;
use super::route::{self, Route, Seq};
use super::segment::{SegmentReader, Start};
use super::write::{Claim, Writing};
use super::{Counter, Server, Stat, StatGuard};
use crate::protocol::{self, Error, SeqParam};

/// Every route under the base path, the embedder's extra ones ([`super::Builder::routes`]) merged
/// in, without a fallback and without status counting ([`counted`]).
pub fn routes(server: Server) -> Router {
    let base = server.base_path().to_string();
    let mut router = Router::new();
    for pattern in route::PATTERNS {
        router = router.route(&format!("{base}{pattern}"), any(dispatch));
    }
    let router = router.with_state(server.clone());
    match server.extra_routes() {
        Some(extra) => router.merge(extra.clone()),
        None => router,
    }
}

/// `router` with every answer it gives counted for `/metrics` (its fallback's too): the one place
/// statuses are counted, but for the plain GETs the HTTP/1.1 front answers without the router,
/// which call [`count_answer`] themselves.
pub(super) fn counted(server: &Server, router: Router) -> Router {
    router.layer(axum::middleware::map_response_with_state(
        server.clone(),
        count_status,
    ))
}

async fn count_status(State(server): State<Server>, response: Response) -> Response {
    count_answer(&server, response.status());
    response
}

/// Counts an answer by its status, as `/metrics` reports them.
pub(super) fn count_answer(server: &Server, status: StatusCode) {
    match status.as_u16() {
        404 => server.count(Counter::NotFound, 1),
        470 => server.count(Counter::NotHeld, 1),
        _ => {}
    }
}

/// Answers a request by its [`Route`], parsed here once from the method and path.
async fn dispatch(State(server): State<Server>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match Route::parse(&parts.method, parts.uri.path(), server.base_path()) {
        Route::CreateChannel { name } => create_channel(&server, &parts, name).await,
        Route::DeleteChannel { name } => delete_channel(&server, &parts, name).await,
        Route::Subscribe { name, seq } => subscribe(&server, &parts, name, seq).await,
        // Boxed: inline, its state would make every request's future (a waiting GET's too) as
        // large as a publish's.
        Route::Publish { name, seq } => Box::pin(publish(&server, &parts, name, seq, body)).await,
        Route::DeleteSegment { name, seq } => delete_segment(&server, name, seq).await,
        Route::MethodNotAllowed { allow, .. } => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            set(&mut response, header::ALLOW.as_str(), allow);
            response
        }
        // The patterns send only paths of ours here; a route of ours that is not one of these
        // would be a bug, answered as no route.
        Route::Unknown { .. } | Route::Outside => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Decodes and validates the channel name of a request.
fn channel_name<'a>(server: &Server, raw: &'a str) -> Result<Cow<'a, str>, Error> {
    let name = protocol::decode_name(raw)?;
    protocol::validate_name(&name, server.config().max_name_bytes)?;
    Ok(name)
}

/// A one-line plain-text answer (the reference's `http.Error` format).
pub(super) fn text(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn error(err: &Error) -> Response {
    text(err.status(), &err.to_string())
}

fn set(response: &mut Response, name: &'static str, value: impl ToString) {
    let value = HeaderValue::from_str(&value.to_string()).expect("header values are plain ASCII");
    // `from_static` keeps the name as it is; inserting the `&str` would parse and copy it.
    response
        .headers_mut()
        .insert(HeaderName::from_static(name), value);
}

/// Marks an answer sent before the request body was read: the connection cannot be reused.
pub(super) fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The answer for a seq the channel does not hold: 470 with the write head, or end of stream.
fn not_held(seq: u64, latest: u64, closed: bool) -> Response {
    let mut response = if closed {
        text(StatusCode::OK, "Entry not found")
    } else {
        error(&Error::SequenceNonexistent { seq, latest })
    };
    set(&mut response, protocol::SEQ, seq);
    set(&mut response, protocol::LATEST, latest);
    if closed {
        set(&mut response, protocol::CLOSED, "terminated");
    }
    response
}

/// `POST /{name}`: create the channel (with autocreate) or confirm it exists.
async fn create_channel(server: &Server, parts: &http::request::Parts, raw_name: &str) -> Response {
    let name = match channel_name(server, raw_name) {
        Ok(name) => name,
        Err(err) => return closing(error(&err)),
    };
    if protocol::is_reserved(&name) {
        return closing(error(&Error::ReservedName));
    }
    if let Err(refused) = server.may_create(&name, Some(parts)).await {
        return closing(error(&refused));
    }
    if server.channel(&name).is_some() {
        return Response::new(Body::empty());
    }
    if !server.config().autocreate {
        return closing(error(&Error::StreamNotFound));
    }
    let mime = header_str(&parts.headers, protocol::EXPECT_CONTENT);
    match server.get_or_create(&name, mime) {
        Ok(_) => Response::new(Body::empty()),
        Err(err) => closing(error(&err)),
    }
}

fn header_str(headers: &http::HeaderMap, name: impl header::AsHeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `DELETE /{name}`: delete the channel.
async fn delete_channel(server: &Server, parts: &http::request::Parts, raw_name: &str) -> Response {
    let name = match channel_name(server, raw_name) {
        Ok(name) => name,
        Err(err) => return error(&err),
    };
    if protocol::is_reserved(&name) {
        return error(&Error::ReservedName);
    }
    if let Err(refused) = server.may_delete(&name, parts).await {
        return error(&refused);
    }
    match server.delete_channel(&name) {
        Ok(()) => Response::new(Body::empty()),
        Err(err) => error(&err),
    }
}

/// `DELETE /{name}/{seq}`: close one segment.
async fn delete_segment(server: &Server, raw_name: &str, seq: Seq) -> Response {
    let result = (|| {
        let name = channel_name(server, raw_name)?;
        if protocol::is_reserved(&name) {
            return Err(Error::ReservedName);
        }
        let channel = server.channel(&name).ok_or(Error::StreamNotFound)?;
        let seq = seq.param()?.literal()?;
        channel.close_segment(seq)
    })();
    match result {
        Ok(()) => Response::new(Body::empty()),
        Err(err) => error(&err),
    }
}

/// `GET /{name}/{seq}` and `GET /{name}/next` (HEAD too).
async fn subscribe(
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
    let name = match channel_name(server, raw_name) {
        Ok(name) => name,
        Err(err) => return error(&err).into(),
    };
    let Some(channel) = server.channel(&name) else {
        return error(&Error::StreamNotFound).into();
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
        } => not_held(seq, latest, closed).into(),
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
        let _waiting = server.stat(Stat::WaitingGets);
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
        streaming: server.stat(Stat::StreamingGets),
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

    /// The body: every byte as it arrives; an error if the version fails, on which HTTP/1.1
    /// drops the connection without the final chunk and HTTP/2 resets the stream.
    pub(super) fn into_body(
        self,
    ) -> impl http_body::Body<Data = Bytes, Error = io::Error> + Send + 'static {
        let state = Some((self.reader, self.streaming));
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

/// `POST /{name}/{seq}`: publish one segment from a streaming body.
async fn publish(
    server: &Server,
    parts: &http::request::Parts,
    raw_name: &str,
    seq: Seq,
    body: Body,
) -> Response {
    let name = match channel_name(server, raw_name) {
        Ok(name) => name,
        Err(err) => return closing(error(&err)),
    };
    if protocol::is_reserved(&name) {
        return closing(error(&Error::ReservedName));
    }
    // Refused before any byte is read: nothing is created, nothing waits for a body that could
    // never be taken whole.
    if body.size_hint().lower() > server.config().max_segment_bytes {
        return body_too_large(server);
    }
    let param = seq.param().and_then(SeqParam::writable);
    let channel = match server.channel(&name) {
        Some(channel) => channel,
        None if server.config().autocreate => {
            // Never create a channel for a request that is rejected anyway.
            if let Err(err) = &param {
                return closing(error(err));
            }
            // Creating a channel by publishing to it asks the same hook as `POST /{name}`: an
            // embedder that decides there who may create channels must not be bypassed.
            if let Err(refused) = server.may_create(&name, Some(parts)).await {
                return closing(error(&refused));
            }
            let mime = header_str(&parts.headers, header::CONTENT_TYPE);
            match server.get_or_create(&name, mime) {
                Ok((channel, _)) => channel,
                Err(err) => return closing(error(&err)),
            }
        }
        None => return closing(error(&Error::StreamNotFound)),
    };
    let reset = parts
        .headers
        .get(protocol::RESET)
        .is_some_and(|v| !v.is_empty());
    let claim = match param.and_then(|p| Claim::new(server, channel, p, reset)) {
        Ok(claim) => claim,
        Err(Error::EndOfStream) => return end_of_stream(None),
        Err(err) => return closing(error(&err)),
    };
    let mut body = body;
    let first = match wait_first_byte(server, &claim, &mut body).await {
        Ok(first) => first,
        Err(response) => return response,
    };
    let seq = claim.seq();
    let writing = match claim.start() {
        Ok(writing) => writing,
        Err(err) => return refused_write(seq, err),
    };
    match first {
        Some(first) => stream_body(server, writing, first, body).await,
        // A zero-byte segment is a real, empty segment.
        None => match writing.finish() {
            Ok(()) => closing(posted(seq)),
            Err(err) => refused_write(seq, err),
        },
    }
}

/// 413 for a request whose declared body is larger than a segment may be, sent before reading it
/// (hence the closed connection).
pub(super) fn body_too_large(server: &Server) -> Response {
    closing(error(&Error::SegmentTooLarge {
        limit: server.config().max_segment_bytes,
    }))
}

/// 200 with `Lp-Trickle-Closed`: the channel is gone.
fn end_of_stream(seq: Option<u64>) -> Response {
    let mut response = Response::new(Body::empty());
    if let Some(seq) = seq {
        set(&mut response, protocol::SEQ, seq);
    }
    set(&mut response, protocol::CLOSED, "terminated");
    closing(response)
}

fn posted(seq: u64) -> Response {
    let mut response = Response::new(Body::empty());
    set(&mut response, protocol::SEQ, seq);
    response
}

/// Waits for the first byte of a POST body (`None`: the body ended without one). Every other way
/// this can end is answered here.
async fn wait_first_byte(
    server: &Server,
    claim: &Claim,
    body: &mut Body,
) -> Result<Option<Bytes>, Response> {
    let _pending = server.stat(Stat::PendingPosts);
    let seq = claim.seq();
    let mut ended = pin!(claim.ended());
    let mut timeout = pin!(tokio::time::sleep(server.config().wait_timeout));
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Ok(Some(data)),
                    _ => continue,
                },
                // The client went away before its first byte: the segment stays as it was.
                Some(Err(_)) => return Err(closing(text(StatusCode::BAD_REQUEST, "Request body error"))),
                None => return Ok(None),
            },
            end = &mut ended => return Err(match end {
                PendingEnd::Superseded => closing(error(&Error::Superseded)),
                PendingEnd::EndOfStream => end_of_stream(Some(seq)),
                PendingEnd::Closed => {
                    claim.finish_closed();
                    closing(posted(seq))
                }
            }),
            _ = &mut timeout => return Err(closing(error(&Error::Timeout))),
        }
    }
}

/// Streams the rest of a POST body into its segment and answers the publisher.
async fn stream_body(
    server: &Server,
    mut writing: Writing,
    first: Bytes,
    mut body: Body,
) -> Response {
    let _writing = server.stat(Stat::WritingPosts);
    let seq = writing.seq();
    let wait_timeout = server.config().wait_timeout;
    let channel = writing.channel().clone();
    let mut closed = pin!(channel.closed());
    let mut idle = pin!(tokio::time::sleep(wait_timeout));
    let mut next = Some(first);
    loop {
        if let Some(data) = next.take() {
            if let Err(err) = writing.write(data) {
                return refused_write(seq, err);
            }
            idle.as_mut().reset(Instant::now() + wait_timeout);
        }
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => next = frame.into_data().ok(),
                None => {
                    return match writing.finish() {
                        Ok(()) => posted(seq),
                        Err(err) => refused_write(seq, err),
                    };
                }
                Some(Err(_)) => {
                    // The publisher's failure is visible to every subscriber of this version.
                    writing.fail();
                    return closing(text(StatusCode::BAD_REQUEST, "Request body error"));
                }
            },
            _ = &mut closed => {
                writing.fail();
                return end_of_stream(Some(seq));
            }
            _ = &mut idle => {
                writing.fail();
                return closing(error(&Error::Timeout));
            }
        }
    }
}

/// The answer to a POST whose write was refused; the rest of its body is not read.
fn refused_write(seq: u64, err: Error) -> Response {
    match err {
        Error::EndOfStream => end_of_stream(Some(seq)),
        err => closing(error(&err)),
    }
}
