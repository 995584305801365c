//! What the outputs for players (`live.mp4`, LL-HLS, DASH) share in their answers: the MIME type
//! of fMP4 media from its codecs, cross-origin access (a player page served from elsewhere may
//! fetch them), and caching suited to live media.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};

/// `video/mp4; codecs="avc1.64001f,mp4a.40.2"`, or `audio/mp4; …` when every track is audio.
pub(super) fn fmp4_mime(codecs: &str) -> String {
    let audio_only = codecs.split(',').all(|c| c.starts_with("mp4a"));
    let kind = if audio_only { "audio" } else { "video" };
    format!("{kind}/mp4; codecs=\"{codecs}\"")
}

/// `response`, readable by pages of any origin (players fetch media with CORS).
pub(super) fn cors(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// A `200` with `body` of type `mime`, cached as `cache_control` says, readable cross-origin.
pub(super) fn media_response(
    body: impl Into<Body>,
    mime: &str,
    cache_control: &'static str,
) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    cors(response)
}
