//! The pages a person opens: `GET /{ch}/watch`, the player of one channel (its script plays
//! `live.mp4` near the live edge; see `player.js`), and `GET /_watch`, the channel index, kept
//! current from `/_events`. Both are served from the binary (nothing is fetched from elsewhere)
//! and address everything relative to themselves, so a token in the path goes along.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use super::Server;
use super::http::{channel_to_read, error};

/// The player page, with its script in place (built once).
static PLAYER_PAGE: LazyLock<String> =
    LazyLock::new(|| include_str!("watch.html").replace("{{player}}", include_str!("player.js")));

/// `GET /{name}/watch`: the player page (`404` for a missing channel, as every output).
pub(super) async fn page(server: &Server, raw_name: &str) -> Response {
    match channel_to_read(server, raw_name).await {
        Ok(_) => html(PLAYER_PAGE.as_str()),
        Err(err) => error(&err),
    }
}

/// `GET /_watch`: the channel index.
pub(super) fn index() -> Response {
    html(include_str!("index.html"))
}

/// A page; revalidated on every load, so a new binary's page is seen at once.
fn html(page: &'static str) -> Response {
    let mut response = page.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // A token in the page's path must not travel to other sites in a Referer (the pages link
    // nowhere else, but a browser extension or a pasted link might).
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
