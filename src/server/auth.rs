//! The token check in front of every route when `--auth-secret` is set ([`crate::auth`]).
//!
//! The token comes from `Authorization: Bearer …` or, for clients that only take a base URL and
//! append `/{seq}` (the Go and Python clients), from a path segment in front of the channel:
//! `/{token}/{channel}/{seq}`. That segment is cut from the path before routing, so the routes
//! never see it. Missing or invalid → `401`; valid but not for this action on this channel →
//! `403`. Neither answer says anything about the channel.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, Uri, header};

use super::Server;
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
    let rest = rest.to_string();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110).
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    let (token, path) = match rest.split_once('/') {
        Some((first, after)) if bearer.is_none() && looks_like_token(first) => {
            (Some(first.to_string()), after.to_string())
        }
        _ => (bearer, rest),
    };
    let Some(token) = token else {
        return unauthorized("a token is required");
    };
    let Ok(claims) = verifier.verify(&token) else {
        return unauthorized("the token is invalid or expired");
    };
    let raw_name = path.split('/').next().unwrap_or("");
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
    // Route the request as if the token had never been in the path.
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    if let Ok(uri) = format!("{base}{path}{query}").parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    next.run(req).await
}

/// Both refusals close the connection: a request body, if any, is not read.
fn unauthorized(why: &str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, format!("Unauthorized: {why}\n")).into_response();
    let headers = response.headers_mut();
    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn forbidden() -> Response {
    let mut response = (
        StatusCode::FORBIDDEN,
        "Forbidden: the token does not allow this\n",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
