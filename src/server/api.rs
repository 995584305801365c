//! The channel API, for dashboards and the player pages: `GET /_channels` (every channel) and
//! `GET /_channels/{name}` (one, with its live viewers) as JSON. With `--auth-secret` both need an
//! admin token, as every reserved name does. The figures are read when asked
//! ([`super::activity`]); `GET /_events` ([`super::event_stream`]) says when they change.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};
use serde::Serialize;

use super::channel::Channel;
use super::http::{channel_name, error};
use super::{Server, Stat};
use crate::protocol::Error;

/// What a channel is doing, as `GET /_channels` and `GET /_channels/{name}` answer it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelInfo {
    pub name: String,
    /// The MIME type fixed at creation (may be empty).
    pub content_type: String,
    /// The write head: the seq the next segment will take.
    pub next: u64,
    /// When the channel was made (RFC 3339, UTC).
    pub created: String,
    /// The last time a segment started or ended or a byte was written (RFC 3339, UTC).
    pub last_write: String,
    /// Segment bytes received since the channel was made.
    pub bytes_in: u64,
    /// Whether a publisher holds a seq or is writing one.
    pub publisher: bool,
    /// Segment GETs in progress (waiting for a segment or streaming one).
    pub subscribers: usize,
    /// Live viewers (`GET /{name}/live`).
    pub viewers: usize,
    /// Segments skipped for live viewers that were behind, since the channel was made.
    pub skipped: u64,
    /// Each live viewer, oldest first; only in `GET /_channels/{name}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewer_list: Option<Vec<ViewerInfo>>,
}

/// One live viewer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ViewerInfo {
    /// Unique within the channel, in the order viewers came.
    pub id: u64,
    /// When the viewer came (RFC 3339, UTC).
    pub since: String,
    /// Bytes it was sent.
    pub bytes: u64,
    /// Segments it was sent (whole, or up to where they failed).
    pub segments: u64,
    /// Segments it skipped because it was behind.
    pub skipped: u64,
    /// The segment it is being sent (none before its first).
    pub seq: Option<u64>,
    /// Segments between the one it is being sent and the newest one.
    pub lag: u64,
}

impl ChannelInfo {
    /// The channel's figures now; with `viewers`, each live viewer's too.
    pub(crate) fn of(channel: &Channel, viewers: bool) -> ChannelInfo {
        let activity = channel.activity();
        let gauge = |stat: Stat| {
            activity
                .gauge(stat)
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let next = channel.next_write();
        // The idle clock counts whole milliseconds: never before the creation it may round past.
        let last_write = (SystemTime::now() - channel.idle_for()).max(activity.created());
        ChannelInfo {
            name: channel.name().to_string(),
            content_type: channel.mime().to_string(),
            next,
            created: timestamp(activity.created()),
            last_write: timestamp(last_write),
            bytes_in: activity.bytes_in(),
            publisher: activity.publisher_connected(),
            subscribers: gauge(Stat::WaitingGets) + gauge(Stat::StreamingGets),
            viewers: gauge(Stat::LiveViewers),
            skipped: activity.skipped(),
            viewer_list: viewers.then(|| {
                let figures = activity.viewers();
                figures
                    .iter()
                    .map(|f| viewer_info(f.read(), next))
                    .collect()
            }),
        }
    }
}

fn viewer_info(figures: super::activity::ViewerReading, next: u64) -> ViewerInfo {
    ViewerInfo {
        id: figures.id,
        since: timestamp(figures.since),
        bytes: figures.bytes,
        segments: figures.segments,
        skipped: figures.skipped,
        seq: figures.seq,
        lag: figures.seq.map_or(0, |seq| next.saturating_sub(seq + 1)),
    }
}

pub(super) fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl Server {
    /// Every channel's figures ([`ChannelInfo`], without the viewer list), by name.
    pub fn channels_info(&self) -> Vec<ChannelInfo> {
        let channels: Vec<Arc<Channel>> = self.inner.channels.read().values().cloned().collect();
        let mut infos: Vec<_> = channels.iter().map(|c| ChannelInfo::of(c, false)).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// One channel's figures, with each live viewer's.
    pub fn channel_info(&self, name: &str) -> Option<ChannelInfo> {
        self.channel(name).map(|c| ChannelInfo::of(&c, true))
    }
}

/// `GET /_channels`.
pub(super) fn channels(server: &Server) -> Response {
    json(&server.channels_info())
}

/// `GET /_channels/{name}`.
pub(super) fn channel(server: &Server, raw_name: &str) -> Response {
    let info = channel_name(server, raw_name)
        .and_then(|name| server.channel_info(&name).ok_or(Error::StreamNotFound));
    match info {
        Ok(info) => json(&info),
        Err(err) => error(&err),
    }
}

/// A JSON answer, never cached: the figures change all the time.
pub(super) fn json(value: &impl Serialize) -> Response {
    let body = Body::from(serde_json::to_vec(value).expect("plain data serializes"));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
