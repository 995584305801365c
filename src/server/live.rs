//! `GET /{name}/live`: the channel as one continuous response per viewer, whole segments back to
//! back from the live edge, each trickled as its bytes arrive, and lossy: a viewer that falls
//! behind skips whole segments at segment boundaries instead of lagging, and never receives part
//! of a segment (but the last, if it fails or the viewer leaves).
//!
//! At each boundary the viewer is behind, and skips, when
//! - its socket still holds more than [`UNSENT_BUDGET`] unsent bytes (HTTP/1 over TCP: the
//!   kernel says so, [`SocketProbe`]): it goes on with the next segment that has not started yet;
//! - or the segment after the one it finished is more than `--live-max-lag` segments behind the
//!   write head (any transport: a viewer whose connection takes bytes slower than they come stops
//!   pulling frames, and falls behind in segments): it goes on with the newest segment. This
//!   rule is checked again when the next segment starts being sent, which for a viewer whose
//!   connection stalled at the boundary can be much later.
//!
//! The socket is also told to hold at most [`UNSENT_LOW_WATER`] unsent bytes, so that a slow
//! viewer's backlog stays here, where a boundary can drop it, rather than in a kernel buffer that
//! autotuning grows to megabytes (seconds of video).
//!
//! After a skip on an MPEG-TS channel, the first packet of every stream in the next segment is
//! marked discontinuous (`DiscontinuityMarker`), so players reset their clocks instead of
//! reporting errors. The bytes are the segment's shared chunks, as for any GET: a viewer holds no
//! copy (the marker adds one small packet per stream).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body::Frame;
use http_body_util::StreamBody;

use super::activity::Watching;
use super::channel::Channel;
use super::http::{channel_to_read, end_of_stream, error, text};
use super::output::{cors, fmp4_mime, refuse_unless_mpegts};
use super::read::Cursor;
use super::remux::{Ready, Remux};
use super::segment::{ReadError, SegmentReader};
use super::socket::SocketProbe;
use super::{Counter, Server, Stat, StatGuard};
use crate::media::mpegts::DiscontinuityMarker;
use crate::protocol::{Error, SeqParam};

/// Unsent bytes on a viewer's socket at a segment boundary above which it is behind: about a
/// tenth of a second of a 5 Mbit/s stream waiting beyond what the network already carries.
const UNSENT_BUDGET: u64 = 64 * 1024;
/// What a viewer's socket may hold unsent before it stops taking bytes (`TCP_NOTSENT_LOWAT`):
/// enough to keep a fast viewer's link busy between two polls, small against a segment.
const UNSENT_LOW_WATER: u32 = 128 * 1024;

/// What a live response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `live`: the channel's own segments.
    Segments,
    /// `live.mp4`: an MPEG-TS channel remuxed to fragmented MP4 ([`Remux`]).
    Fmp4,
}

/// `GET /{name}/live[?from=next|current]` and `GET /{name}/live.mp4[?…]`.
pub(super) async fn live(
    server: &Server,
    parts: &http::request::Parts,
    raw_name: &str,
    format: Format,
) -> Response {
    let channel = match channel_to_read(server, raw_name).await {
        Ok(channel) => channel,
        Err(err) => return error(&err),
    };
    let start = match start(parts.uri.query()) {
        Ok(start) => start,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    if format == Format::Fmp4
        && let Some(refused) = refuse_unless_mpegts(&channel, NOT_MPEGTS)
    {
        // Before the viewer limit: the answer does not depend on it.
        return refused;
    }
    if server.stats().live_viewers >= server.config().max_viewers {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Too many live viewers");
    }
    let (mime, fmp4) = match format {
        Format::Segments => (channel.mime().to_string(), None),
        Format::Fmp4 => match fmp4_start(server, &channel).await {
            Ok(prelude) => (prelude.mime(), Some(prelude)),
            Err(response) => return response,
        },
    };
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if parts.method == Method::HEAD {
        return cors(response);
    }
    let probe = parts.extensions.get::<SocketProbe>().copied();
    if let Some(probe) = probe {
        probe.hold_unsent_below(UNSENT_LOW_WATER);
    }
    let read = fmp4
        .as_ref()
        .map_or(&channel, |prelude| prelude.remux.output());
    let cursor = Cursor::new(read.clone(), start);
    let viewer = Viewer::new(server, channel, cursor, probe, fmp4);
    *response.body_mut() = Body::new(viewer.into_body());
    cors(response)
}

/// An fMP4 output of a channel that is not MPEG-TS.
const NOT_MPEGTS: &str = "fMP4 outputs need an MPEG-TS channel (video/mp2t)";

/// Starts (or joins) the channel's remux and waits, as a subscriber waits for a segment, until
/// its tracks are known: the Content-Type names their codecs.
async fn fmp4_start(server: &Server, channel: &Arc<Channel>) -> Result<Prelude, Response> {
    let remux = playable(server, channel).await?;
    let codecs = remux
        .init_for(u64::MAX)
        .map(|init| init.codecs.clone())
        .unwrap_or_default();
    Ok(Prelude {
        remux,
        sent: None,
        codecs,
    })
}

/// The channel's remux (started or joined) once its tracks are known; otherwise the answer: `415`
/// (not MPEG-TS, or nothing in it fits MP4), end of stream, or the wait timeout.
pub(super) async fn playable(
    server: &Server,
    channel: &Arc<Channel>,
) -> Result<Arc<Remux>, Response> {
    if let Some(refused) = refuse_unless_mpegts(channel, NOT_MPEGTS) {
        return Err(refused);
    }
    let remux = Remux::of(server, channel);
    let ready = tokio::select! {
        ready = remux.ready() => ready,
        _ = tokio::time::sleep(server.config().wait_timeout) => return Err(error(&Error::Timeout)),
    };
    match ready {
        Ready::Playing => Ok(remux),
        Ready::Waiting | Ready::Ended => Err(end_of_stream(None)),
        Ready::Unsupported(reason) => Err(text(StatusCode::UNSUPPORTED_MEDIA_TYPE, &reason)),
    }
}

/// Where a viewer starts: `from=next` (the default: the next segment to start) or `from=current`
/// (the start of the segment being written).
fn start(query: Option<&str>) -> Result<SeqParam, &'static str> {
    let mut start = SeqParam::Relative(1);
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "from" {
            start = match value {
                "next" => SeqParam::Relative(1),
                "current" => SeqParam::Relative(2),
                _ => return Err("Invalid from: expected next or current"),
            };
        }
    }
    Ok(start)
}

/// One live viewer: where it is in the channel and what it is sending.
struct Viewer {
    server: Server,
    cursor: Cursor,
    probe: Option<SocketProbe>,
    max_lag: u64,
    mpegts: bool,
    /// The segment being sent.
    current: Option<Sending>,
    /// Segments skipped since the last one sent (the next one starts with a discontinuity).
    skipped: u64,
    /// Frames ready to go before anything else (the discontinuity marker's output).
    ready: VecDeque<Bytes>,
    /// Counts the viewer, and the bytes it is sent.
    viewing: StatGuard,
    /// The viewer's own figures, on the channel's list of viewers.
    watching: Watching,
    /// For `live.mp4`: the remux read, and the init segments sent.
    fmp4: Option<Prelude>,
}

/// A `live.mp4` viewer's init segments: the one of the first segment before it, and each new one
/// before the first segment that needs it.
struct Prelude {
    remux: Arc<Remux>,
    /// The generation of the last init segment sent.
    sent: Option<u64>,
    /// The codecs in the response's Content-Type: an init segment with others ends the response
    /// (the player reconnects and learns them), since a media buffer cannot take new codecs.
    codecs: String,
}

impl Prelude {
    /// The response's Content-Type.
    fn mime(&self) -> String {
        fmp4_mime(&self.codecs)
    }

    /// The init segment to send before output segment `seq`, if it is not the one sent last;
    /// `Err` if its codecs differ from the response's.
    fn before(&mut self, seq: u64) -> Result<Option<Bytes>, ()> {
        let Some(init) = self.remux.init_for(seq) else {
            return Ok(None);
        };
        if self.sent == Some(init.generation) {
            return Ok(None);
        }
        if init.codecs != self.codecs {
            return Err(());
        }
        self.sent = Some(init.generation);
        Ok(Some(init.bytes.clone()))
    }
}

struct Sending {
    seq: u64,
    reader: SegmentReader,
    /// Set for the first segment after a skip on an MPEG-TS channel.
    marker: Option<DiscontinuityMarker>,
}

impl Viewer {
    /// A viewer of `channel`, reading with `cursor` (over the channel, or its remux's output).
    fn new(
        server: &Server,
        channel: Arc<Channel>,
        cursor: Cursor,
        probe: Option<SocketProbe>,
        fmp4: Option<Prelude>,
    ) -> Viewer {
        Viewer {
            mpegts: cursor.channel().is_mpegts(),
            server: server.clone(),
            probe,
            max_lag: server.config().live_max_lag.max(1),
            current: None,
            skipped: 0,
            ready: VecDeque::new(),
            viewing: server.stat_in(Stat::LiveViewers, &channel),
            watching: Watching::new(server, channel),
            cursor,
            fmp4,
        }
    }

    fn into_body(self) -> impl http_body::Body<Data = Bytes, Error = io::Error> + Send + 'static {
        let frames = futures_util::stream::unfold(Some(self), |viewer| async move {
            let mut viewer = viewer?;
            match viewer.next_frame().await {
                Some(Ok(data)) => Some((Ok(Frame::data(data)), Some(viewer))),
                Some(Err(err)) => Some((Err(err), None)),
                None => None,
            }
        });
        StreamBody::new(frames)
    }

    /// The next bytes to send; `None` at the end of the channel; an error if the segment being
    /// sent failed (the response ends abnormally: the viewer must not take it as whole).
    async fn next_frame(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                self.sent_bytes(frame.len());
                return Some(Ok(frame));
            }
            let Some(sending) = &mut self.current else {
                self.next_segment().await?;
                continue;
            };
            match sending.reader.next_chunk().await {
                Ok(Some(chunk)) => match &mut sending.marker {
                    Some(marker) => marker.feed(chunk, &mut self.ready),
                    None => {
                        self.sent_bytes(chunk.len());
                        return Some(Ok(chunk));
                    }
                },
                Ok(None) => {
                    if let Some(marker) = &mut sending.marker {
                        marker.finish(&mut self.ready);
                    }
                    let seq = sending.seq;
                    self.current = None;
                    self.sent_segment();
                    self.at_boundary(seq);
                }
                Err(ReadError::Failed | ReadError::Evicted) => {
                    self.sent_segment();
                    return Some(Err(io::Error::other("segment failed")));
                }
            }
        }
    }

    /// Starts the next segment the cursor finds (waiting for it); `None` at the end of the
    /// channel, or of a `live.mp4` response whose codecs changed.
    async fn next_segment(&mut self) -> Option<()> {
        let found = loop {
            let found = self.cursor.follow().await.ok()?;
            self.skip(found.skipped);
            // The lag rule again, now that the segment starts: a viewer can wait here long after
            // its boundary (its connection stalled on the last segment's tail, nobody polls this
            // body), and the segment chosen then may be far behind by now.
            let (seq, head) = (found.segment.seq(), self.cursor.channel().next_write());
            if head.saturating_sub(seq) <= self.max_lag {
                break found;
            }
            self.skip(head - 1 - seq);
            self.cursor.seek(SeqParam::Index(head - 1));
        };
        if let Some(prelude) = &mut self.fmp4 {
            self.ready.extend(prelude.before(found.segment.seq()).ok()?);
        }
        let marker = (self.mpegts && self.skipped > 0).then(DiscontinuityMarker::new);
        self.skipped = 0;
        self.watching.sending(found.segment.seq());
        self.current = Some(Sending {
            seq: found.segment.seq(),
            reader: found.segment.reader(),
            marker,
        });
        Some(())
    }

    /// Segment `seq` was sent whole: decides where the viewer goes on (module doc).
    fn at_boundary(&mut self, seq: u64) {
        let head = self.cursor.channel().next_write();
        let unsent = self.probe.and_then(|p| p.unsent()).unwrap_or(0);
        let next = if unsent > UNSENT_BUDGET {
            head.max(seq + 1)
        } else if head.saturating_sub(seq + 1) > self.max_lag {
            head - 1
        } else {
            seq + 1
        };
        self.skip(next - (seq + 1));
        self.cursor.seek(SeqParam::Index(next));
    }

    fn skip(&mut self, segments: u64) {
        if segments > 0 {
            self.skipped += segments;
            self.server.count(Counter::LiveSkipped, segments);
            self.watching.skipped(segments);
        }
    }

    fn sent_bytes(&mut self, n: usize) {
        self.viewing.add_bytes_out(n as u64);
        self.watching.sent_bytes(n as u64);
    }

    fn sent_segment(&mut self) {
        self.server.count(Counter::LiveSent, 1);
        self.watching.sent_segment();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_is_next_or_current_and_other_parameters_are_ignored() {
        assert_eq!(start(None), Ok(SeqParam::Relative(1)));
        assert_eq!(start(Some("from=current")), Ok(SeqParam::Relative(2)));
        assert_eq!(
            start(Some("x=1&from=next&fromage")),
            Ok(SeqParam::Relative(1))
        );
        for bad in ["from=later", "from", "from=", "a=b&from=Current"] {
            assert!(start(Some(bad)).is_err(), "{bad}");
        }
    }
}
