//! A publisher's POST (`POST /{name}/{seq}`): the HTTP side of the write path
//! ([`super::write`]). The request is checked (name, seq, declared size, the `before_create` hook
//! when it creates its channel), its seq claimed, its first body byte awaited (a preconnected
//! publisher waits here), then every body frame is handed to the segment as it arrives: no copy,
//! no buffering beyond the frame. Every way a POST can end has its answer here.

use std::pin::pin;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{StatusCode, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::channel::PendingEnd;
use super::http::{channel_name, closing, end_of_stream, error, header_str, set, text};
use super::route::Seq;
use super::write::{Claim, Writing};
use super::{Server, Stat};
use crate::protocol::{self, Error, SeqParam};

/// `POST /{name}/{seq}`: publish one segment from a streaming body.
pub(super) async fn publish(
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
    // A relayed channel is the origin's copy: a segment published here would not be the origin's.
    if server.is_relayed(&name) {
        let message = "Channel is relayed from an origin: publish it there".into();
        let status = StatusCode::CONFLICT;
        return closing(error(&Error::Refused { status, message }));
    }
    // In a cluster, a channel another node originates is published there.
    if let Err(err) = server.claim_origin(&name).await {
        return closing(error(&err));
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
    let _pending = server.stat_in(Stat::PendingPosts, claim.channel());
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
    let channel = writing.channel().clone();
    let _writing = server.stat_in(Stat::WritingPosts, &channel);
    let seq = writing.seq();
    let wait_timeout = server.config().wait_timeout;
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
