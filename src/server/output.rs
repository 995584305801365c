//! What the outputs for players (`live.mp4`, LL-HLS, DASH) share in their answers: the MIME type
//! of fMP4 media from its codecs, cross-origin access (a player page served from elsewhere may
//! fetch them), and caching suited to live media.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use super::channel::Channel;
use super::http::text;

/// The outputs made from MPEG-TS only (HLS, and the fMP4 ones through the remux): the `415`
/// with `message` for a channel of another type.
pub(super) fn refuse_unless_mpegts(channel: &Channel, message: &str) -> Option<Response> {
    (!channel.is_mpegts()).then(|| text(StatusCode::UNSUPPORTED_MEDIA_TYPE, message))
}

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
