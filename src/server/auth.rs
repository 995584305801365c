//! The token check in front of every route when `--auth-secret` is set ([`crate::auth`]).
//!
//! The token comes from `Authorization: Bearer …` or, for clients that only take a base URL and
//! append `/{seq}` (the Go and Python clients), from a path segment in front of the channel:
//! `/{token}/{channel}/{seq}`. That segment is cut from the path before routing, so the routes
//! never see it. What the token must allow is taken from the request's [`Route`]: the channel is
//! the path's first part, the action follows from the method (reading for GET and HEAD, publishing
//! for POST and DELETE), and a name of the server's own needs the admin scope. Missing or invalid → `401`; valid but not for this action on this channel →
//! `403`. Neither answer says anything about the channel.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, Uri, header};

use super::Server;
use super::http::{closing, text};
use super::route::Route;
use crate::auth::{Action, looks_like_token};
use crate::protocol;

pub(crate) async fn guard(State(server): State<Server>, mut req: Request, next: Next) -> Response {
    let Some(verifier) = server.verifier() else {
        return next.run(req).await;
    };
    let base = server.base_path();
    let Some(rest) = req.uri().path().strip_prefix(base) else {
        // Not under the base path: nothing of ours, the router answers 404.
        return next.run(req).await;
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110).
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    // `/{token}/{channel}/…`: the token and the path the routes are to see.
    let in_path = match rest.split_once('/') {
        Some((first, after)) if bearer.is_none() && looks_like_token(first) => Some((first, after)),
        _ => None,
    };
    let Some(token) = bearer.or(in_path.map(|(token, _)| token)) else {
        return unauthorized("a token is required");
    };
    let Ok(claims) = verifier.verify(token) else {
        return unauthorized("the token is invalid or expired");
    };
    let path = in_path.map_or(rest, |(_, after)| after);
    // Judged by the channel the path is about, whatever the route (an embedder's too).
    let raw_name = Route::parse_rest(req.method(), path).name();
    let name = protocol::decode_name(raw_name).unwrap_or_default();
    let action = if protocol::is_reserved(&name) {
        Some(Action::Admin)
    } else {
        match *req.method() {
            Method::GET | Method::HEAD => Some(Action::Subscribe),
            Method::POST | Method::DELETE => Some(Action::Publish),
            // Answered 405 by the router; a valid token is enough to learn that.
            _ => None,
        }
    };
    if let Some(action) = action
        && !claims.allows(action, &name)
    {
        return forbidden();
    }
    if in_path.is_some() {
        // Route the request as if the token had never been in the path (query kept: `/live`
        // reads one).
        let query = req.uri().query().map_or(String::new(), |q| format!("?{q}"));
        let Ok(uri) = format!("{base}{path}{query}").parse::<Uri>() else {
            return closing(text(StatusCode::BAD_REQUEST, "Bad request: invalid path"));
        };
        *req.uri_mut() = uri;
    }
    next.run(req).await
}

/// Both refusals close the connection: a request body, if any, is not read.
fn unauthorized(why: &str) -> Response {
    let mut response = closing(text(
        StatusCode::UNAUTHORIZED,
        &format!("Unauthorized: {why}"),
    ));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn forbidden() -> Response {
    closing(text(
        StatusCode::FORBIDDEN,
        "Forbidden: the token does not allow this",
    ))
}
