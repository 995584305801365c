//! The HTTP face of the server: the reference's six routes under the base path (docs/PROTOCOL.md
//! describes what each answers), dispatched by their [`Route`] from one axum handler.
//!
//! The channel routes (create, delete, close a segment) are answered here, with the plain-text
//! answers every route shares; a GET is [`super::subscribe`]'s, a POST [`super::publish`]'s. Every
//! wait selects on the client going away (the handler future is dropped), the channel closing,
//! and the wait timeout.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{HeaderName, HeaderValue, StatusCode, header};

use super::channel::Channel;
use super::route::{self, Piece, Route, Seq};
use super::{Counter, Server};
use crate::protocol::{self, Error};

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

/// Empties the body of every answer to a HEAD. HTTP/1.1 drops it on the wire, but HTTP/2 sends it
/// as DATA frames, which a client must treat as a protocol error; handlers that would do real work
/// for the body (a live viewer, an event stream) check for HEAD themselves before starting it.
pub(super) async fn head_without_body(req: Request, next: axum::middleware::Next) -> Response {
    let head = req.method() == http::Method::HEAD;
    let mut response = next.run(req).await;
    if head {
        // The length the GET's body would have, as the transports gave it before.
        let length = http_body::Body::size_hint(response.body()).exact();
        if let Some(length) = length
            && !response.headers().contains_key(header::CONTENT_LENGTH)
        {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        *response.body_mut() = Body::empty();
    }
    response
}

/// Answers a request by its [`Route`], parsed here once from the method and path.
async fn dispatch(State(server): State<Server>, req: Request) -> Response {
    #[cfg(feature = "client")]
    if let Some(via) = req.headers().get(protocol::VIA) {
        // A relay's request: a relay it starts knows which came before (loops end).
        let via: std::sync::Arc<str> = String::from_utf8_lossy(via.as_bytes()).into();
        return super::relay::VIA.scope(via, route(server, req)).await;
    }
    route(server, req).await
}

/// [`dispatch`], within the relays the request went through, if any.
async fn route(server: Server, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match Route::parse(&parts.method, parts.uri.path(), server.base_path()) {
        Route::CreateChannel { name } => create_channel(&server, &parts, name).await,
        Route::DeleteChannel { name } => delete_channel(&server, &parts, name).await,
        Route::Live { name, format } => super::live::live(&server, &parts, name, format).await,
        Route::Hls { name, file } => super::hls::serve(&server, &parts, name, file).await,
        Route::Preflight { .. } => super::hls::preflight(),
        Route::Watch { name } => super::watch::page(&server, name).await,
        Route::Player { name, piece } => player(&server, name, piece, parts.uri.query()).await,
        Route::WatchIndex => super::watch::index(),
        Route::Subscribe { name, seq } => {
            super::subscribe::subscribe(&server, &parts, name, seq).await
        }
        // Boxed: inline, its state would make every request's future (a waiting GET's too) as
        // large as a publish's.
        Route::Publish { name, seq } => {
            Box::pin(super::publish::publish(&server, &parts, name, seq, body)).await
        }
        Route::DeleteSegment { name, seq } => delete_segment(&server, name, seq).await,
        Route::Channels => super::api::channels(&server),
        Route::ChannelInfo { channel } => super::api::channel(&server, channel),
        Route::Events => super::event_stream::events(&server),
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

/// A playlist, manifest or piece for LL-HLS or DASH players (the query is all they read of the
/// request: the HTTP/1.1 front calls this directly for GETs without one).
pub(super) async fn player(
    server: &Server,
    name: &str,
    piece: Piece,
    query: Option<&str>,
) -> Response {
    match piece {
        Piece::LowLatency => super::llhls::playlist(server, name, query).await,
        Piece::Init => super::llhls::init(server, name, query).await,
        Piece::Fmp4 { seq, part } => super::llhls::piece(server, name, seq, part).await,
        Piece::Dash => super::dash::manifest(server, name).await,
        Piece::TrackInit(track) => super::dash::track_init(server, name, track).await,
        Piece::TrackMedia { track, time } => {
            super::dash::track_segment(server, name, track, time).await
        }
    }
}

/// The channel a read of `raw` is about: held here, or (on an edge) relayed from an origin.
pub(super) async fn channel_to_read(server: &Server, raw: &str) -> Result<Arc<Channel>, Error> {
    let name = channel_name(server, raw)?;
    let channel = server.channel_to_read(&name).await?;
    channel.activity().read_now();
    Ok(channel)
}

/// Decodes and validates the channel name of a request.
pub(super) fn channel_name<'a>(server: &Server, raw: &'a str) -> Result<Cow<'a, str>, Error> {
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

pub(super) fn error(err: &Error) -> Response {
    let mut response = text(err.status(), &err.to_string());
    if let Error::Unavailable(_) = err {
        let retry = HeaderValue::from_static("1");
        response.headers_mut().insert(header::RETRY_AFTER, retry);
    }
    response
}

pub(super) fn set(response: &mut Response, name: &'static str, value: impl ToString) {
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
pub(super) fn not_held(seq: u64, latest: u64, closed: bool) -> Response {
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
    if let Err(err) = server.claim_origin(&name).await {
        return closing(error(&err));
    }
    let mime = header_str(&parts.headers, protocol::EXPECT_CONTENT);
    match server.get_or_create(&name, mime) {
        Ok(_) => Response::new(Body::empty()),
        Err(err) => closing(error(&err)),
    }
}

pub(super) fn header_str(headers: &http::HeaderMap, name: impl header::AsHeaderName) -> &str {
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

/// 200 with `Lp-Trickle-Closed`: the channel is gone.
pub(super) fn end_of_stream(seq: Option<u64>) -> Response {
    let mut response = Response::new(Body::empty());
    if let Some(seq) = seq {
        set(&mut response, protocol::SEQ, seq);
    }
    set(&mut response, protocol::CLOSED, "terminated");
    closing(response)
}
