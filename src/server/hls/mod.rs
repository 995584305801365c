//! HLS for MPEG-TS channels (`video/mp2t`), the channel's own segments as they are (each starts
//! with PAT, PMT and a keyframe, so each is an HLS segment already):
//!
//! - `GET /{name}/index.m3u8`: a live media playlist of the complete segments the ring holds
//!   ([`timeline`] decides what is listed, [`playlist`] writes it). It is rendered once per change
//!   of the channel (a [`Channel::revision`]) and the same [`Bytes`] are shared by every request
//!   until the next change. A request that finds nothing to list waits, as a subscriber waits for
//!   a segment, until a segment is listed (`408` after `--wait-timeout`).
//! - `GET /{name}/{seq}.ts`: one complete segment, the published bytes themselves (the version's
//!   shared chunks, no copy); `404` for any seq the ring does not hold complete, and for a `v`
//!   that names another version. The playlist's URIs carry `v` (the version's tag), so that the
//!   bytes under one URI never change and may be cached for long, even though a publisher that
//!   starts over, or writes a seq again, reuses seq numbers.
//! - `OPTIONS` of either: a CORS preflight. Every answer here allows any origin.
//!
//! Caching: playlists `max-age=1` (a CDN may answer a second's requests with one fetch), segments
//! with a matching `v` `max-age=86400, immutable`, without `v` and errors `no-cache`.

mod playlist;
mod timeline;

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use parking_lot::Mutex;

use self::timeline::{Held, Timeline, View, version_tag};
use super::channel::Channel;
use super::conn::PeerWatch;
use super::http::{channel_to_read, closing, error, text};
use super::output::{cors, refuse_unless_mpegts};
use super::route::{HlsFile, Seq};
use super::segment::{Segment, Status};
use super::{Server, Stat};
use crate::protocol::{Error, SeqParam};

/// The answer for a channel that is not MPEG-TS.
const NOT_MPEGTS: &str = "HLS needs an MPEG-TS channel (video/mp2t)";
/// How long a listed segment's URI may be cached: its bytes never change.
const SEGMENT_CACHE: &str = "max-age=86400, immutable";
/// How long a playlist may be cached: short against any segment's duration.
const PLAYLIST_CACHE: &str = "max-age=1";

/// A channel's HLS state: made by the first playlist request, none for channels nobody asks.
#[derive(Default)]
pub(crate) struct HlsSlot(Mutex<Option<Box<Hls>>>);

#[derive(Default)]
struct Hls {
    timeline: Timeline,
    /// The playlist rendered last, and the channel revision it was rendered at (`None` inside:
    /// nothing to list then).
    rendered: Option<(u64, Option<Bytes>)>,
}

/// `GET /{name}/index.m3u8` and `GET /{name}/{seq}.ts` (HEAD too).
pub(super) async fn serve(
    server: &Server,
    parts: &http::request::Parts,
    raw_name: &str,
    file: HlsFile,
) -> Response {
    let response = match channel_to_read(server, raw_name).await {
        Err(err) => error(&err),
        Ok(channel) => match refuse_unless_mpegts(&channel, NOT_MPEGTS) {
            Some(refused) => refused,
            None => match file {
                HlsFile::Playlist => playlist(server, parts, &channel).await,
                HlsFile::Segment(seq) => segment(server, parts, &channel, seq),
            },
        },
    };
    let mut response = cors(response);
    // Errors too: a cache must not keep a 404 for a segment that comes later.
    let headers = response.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}

/// `OPTIONS` of an HLS file: any origin may GET it. (Simple GETs, a player's, need no preflight;
/// with tokens on, a preflight needs a token like any request, so pages carry theirs in the path.)
pub(super) fn preflight() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let mut response = cors(response);
    let headers = response.headers_mut();
    let methods = HeaderValue::from_static("GET,HEAD,OPTIONS");
    headers.insert(header::ALLOW, methods.clone());
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Range"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// `GET /{name}/index.m3u8`.
async fn playlist(
    server: &Server,
    parts: &http::request::Parts,
    channel: &Arc<Channel>,
) -> Response {
    let wait = wait_for_playlist(server, channel);
    // As for a subscriber's GET: on an HTTP/1 connection served by hyper, nothing else notices
    // the client going away while the answer waits.
    let rendered = match parts.extensions.get::<PeerWatch>() {
        None => wait.await,
        Some(peer) => match peer.while_connected(wait).await {
            Some(rendered) => rendered,
            None => return closing(text(StatusCode::BAD_REQUEST, "Client went away")),
        },
    };
    let body = match rendered {
        Ok(body) => body,
        Err(err) => return error(&err),
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(playlist::MIME),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(PLAYLIST_CACHE),
    );
    response
}

/// The channel's playlist, once it lists a segment: [`Error::Timeout`] after the wait timeout,
/// [`Error::StreamNotFound`] if the channel is deleted before.
async fn wait_for_playlist(server: &Server, channel: &Arc<Channel>) -> Result<Bytes, Error> {
    let segments = server.config().hls_segments();
    let deadline = tokio::time::sleep(server.config().wait_timeout);
    tokio::pin!(deadline);
    let mut waiting = None;
    loop {
        let revision = channel.revision();
        if let Some(body) = current(channel, revision, segments) {
            return Ok(body);
        }
        if channel.is_closed() {
            return Err(Error::StreamNotFound);
        }
        waiting.get_or_insert_with(|| server.stat_in(Stat::WaitingGets, channel));
        tokio::select! {
            _ = channel.revised_since(revision) => {}
            _ = &mut deadline => return Err(Error::Timeout),
        }
    }
}

/// The playlist at `revision`: the one rendered last if nothing changed since, else the timeline
/// moved forward and rendered again. A closed channel's ring is empty: its playlist stays what it
/// was, ended.
fn current(channel: &Channel, revision: u64, segments: usize) -> Option<Bytes> {
    let mut slot = channel.hls_slot().0.lock();
    let hls = slot.get_or_insert_with(Box::default);
    if let Some((at, rendered)) = &hls.rendered
        && *at == revision
    {
        return rendered.clone();
    }
    let ended = channel.is_closed();
    if !ended {
        hls.timeline.update(&view(channel), segments);
    }
    let rendered = playlist::render(&hls.timeline, ended);
    hls.rendered = Some((revision, rendered.clone()));
    rendered
}

/// What the timeline needs of the channel's ring (each version's state read after the ring's
/// lock is released).
fn view(channel: &Channel) -> View {
    let ring = channel.ring_view();
    let held = ring.versions.iter().map(|v| (v.seq(), held(v))).collect();
    View {
        run: ring.run,
        run_start: ring.run_start,
        held,
    }
}

fn held(version: &Segment) -> Held {
    match version.snapshot().status {
        Status::Open => Held::Open,
        Status::Failed => Held::Failed,
        // Read after the status: a complete version's facts are final.
        Status::Complete => Held::Complete(version.facts()),
    }
}

/// `GET /{name}/{seq}.ts[?v=TAG]`.
fn segment(
    server: &Server,
    parts: &http::request::Parts,
    channel: &Arc<Channel>,
    seq: Seq,
) -> Response {
    let seq = match seq.param().and_then(SeqParam::literal) {
        Ok(seq) => seq,
        Err(err) => return error(&err),
    };
    let not_found = || text(StatusCode::NOT_FOUND, "Segment not found");
    let Some(version) = channel.held_version(seq) else {
        return not_found();
    };
    let snapshot = version.snapshot();
    if snapshot.status != Status::Complete {
        return not_found();
    }
    let wanted = wanted_version(parts.uri.query());
    if let Some(wanted) = wanted
        && (wanted.is_none() || wanted != version_tag(&version.facts()))
    {
        return not_found();
    }
    let streaming = server.stat_in(Stat::StreamingGets, channel);
    let body = super::subscribe::body(version.reader(), streaming);
    let mut response = Response::new(Body::new(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(snapshot.len));
    let cache = match wanted {
        Some(_) => SEGMENT_CACHE,
        None => "no-cache",
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// The version a segment's URI names: `None` without `v`, `Some(None)` for a `v` that is no
/// tag (it names no version).
fn wanted_version(query: Option<&str>) -> Option<Option<u64>> {
    let pairs = query.unwrap_or("").split('&');
    let value = pairs
        .filter_map(|pair| pair.strip_prefix("v="))
        .next_back()?;
    Some(value.parse().ok())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::media::mpegts::PACKET_SIZE;
    use crate::media::mpegts::testing::{VideoCodec, build};
    use crate::server::budget::Budget;

    /// Writes `data` as seq `seq` of `channel`, and counts its end as the write path does.
    fn publish(channel: &Channel, seq: u64, data: &[u8]) {
        let target = channel.target_for_write(SeqParam::Index(seq), false);
        let mut writer = channel.start_writing(&target.unwrap()).unwrap();
        writer.write(Bytes::copy_from_slice(data)).unwrap();
        writer.finish().unwrap();
        channel.revise();
    }

    #[test]
    fn a_playlist_is_rendered_once_per_change_and_shared_until_the_next() {
        let (name, mime) = ("cam".to_string(), "video/mp2t".to_string());
        let budget = Budget::unlimited();
        let channel = Channel::new(name, mime, 8, u64::MAX, budget, Instant::now());
        let built = build(VideoCodec::H264, 75, 25, 0, true);
        let cut = |i: usize| built.keyframes[i].0 * PACKET_SIZE;
        let segments = [
            &built.ts[..cut(1)],
            &built.ts[cut(1)..cut(2)],
            &built.ts[cut(2)..],
        ];
        assert_eq!(current(&channel, channel.revision(), 6), None);
        publish(&channel, 0, segments[0]);
        let first = current(&channel, channel.revision(), 6).unwrap();
        let again = current(&channel, channel.revision(), 6).unwrap();
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the same bytes, not rendered again"
        );
        // A segment that starts changes the ring, not what is listed.
        let target = channel.target_for_write(SeqParam::Index(1), false).unwrap();
        let writer = channel.start_writing(&target).unwrap();
        assert_eq!(
            current(&channel, channel.revision(), 6),
            Some(first.clone())
        );
        // It fails, and a request sees that: passed over for good, even once it is written again.
        drop(writer);
        channel.revise();
        assert_eq!(current(&channel, channel.revision(), 6), Some(first));
        publish(&channel, 1, segments[1]);
        publish(&channel, 2, segments[2]);
        let text = current(&channel, channel.revision(), 6).unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.contains("\n0.ts?v=") && text.contains("\n2.ts?v="),
            "{text}"
        );
        assert!(!text.contains("\n1.ts"), "{text}");
        assert_eq!(text.matches("#EXTINF:1.000,").count(), 2, "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    }

    #[test]
    fn v_names_a_version_or_none() {
        assert_eq!(wanted_version(None), None);
        assert_eq!(wanted_version(Some("x=1")), None);
        assert_eq!(wanted_version(Some("v=42")), Some(Some(42)));
        assert_eq!(wanted_version(Some("a=b&v=7")), Some(Some(7)));
        for bad in ["v=", "v=-1", "v=x", "v=99999999999999999999999"] {
            assert_eq!(wanted_version(Some(bad)), Some(None), "{bad}");
        }
    }
}
