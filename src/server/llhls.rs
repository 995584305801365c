//! Low-Latency HLS over the channel's fMP4 remux ([`Remux`]): `GET /{ch}/ll.m3u8` (a media
//! playlist with parts, blocking reload), `init.mp4`, `{seq}.m4s` (a whole segment) and
//! `{seq}.{part}.m4s` (one part). The remux records each segment's timing and parts as it makes
//! them (`remux/index.rs`); the playlist is rendered from those records once per change and
//! shared by every player ([`Remux::rendered`]). Parts and segments are byte ranges of the
//! remux's own segments: the same shared chunks, no copy.
//!
//! The rules kept (RFC 8216bis): a part is listed and served only once complete; a request for
//! the part the playlist hints (`EXT-X-PRELOAD-HINT`) waits for it; `_HLS_msn`/`_HLS_part` block
//! until that part (or segment) is listed, `400` when it is more than two segments (or its part
//! more than three seconds of parts) ahead, `503` after three target durations.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use super::Server;
use super::http::{channel_to_read, error, text};
use super::live::playable;
use super::output::{cors, fmp4_mime, media_response};
use super::remux::{Index, PART_TARGET, Recorded, Remux, TIMESCALE};
use crate::protocol::Error;

/// How long a remux runs for players after their last request.
pub(super) const PLAYER_LEASE: Duration = Duration::from_secs(15);
/// Segments whose parts are listed: the newest ones (older ones by their whole segment only).
const SEGMENTS_WITH_PARTS: usize = 3;
/// The `Content-Type` of playlists.
const M3U8: &str = "application/vnd.apple.mpegurl";

/// The channel's remux, ready to play, leased for players; or the answer.
pub(super) async fn remux_for_players(
    server: &Server,
    raw_name: &str,
) -> Result<Arc<Remux>, Response> {
    let channel = channel_to_read(server, raw_name)
        .await
        .map_err(|err| error(&err))?;
    let remux = playable(server, &channel).await?;
    remux.lease(PLAYER_LEASE);
    Ok(remux)
}

/// `GET /{name}/ll.m3u8[?_HLS_msn=N[&_HLS_part=M]]`.
pub(super) async fn playlist(server: &Server, raw_name: &str, query: Option<&str>) -> Response {
    let want = match Blocking::parse(query) {
        Ok(want) => want,
        Err(message) => return cors(text(StatusCode::BAD_REQUEST, message)),
    };
    let remux = match remux_for_players(server, raw_name).await {
        Ok(remux) => remux,
        Err(response) => return cors(response),
    };
    if let Some(want) = want
        && let Err(response) = wait_for(&remux, |index| want.listed(index)).await
    {
        return cors(response);
    }
    let body = remux.rendered(Rendered::LowLatency, render);
    media_response(body, M3U8, "no-cache")
}

/// `GET /{name}/init.mp4[?g=N]`: the newest init segment, or generation `N` (as the playlist
/// names them).
pub(super) async fn init(server: &Server, raw_name: &str, query: Option<&str>) -> Response {
    let remux = match remux_for_players(server, raw_name).await {
        Ok(remux) => remux,
        Err(response) => return cors(response),
    };
    let generation = query
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("g=")))
        .and_then(|g| g.parse::<u64>().ok());
    let init = match generation {
        Some(generation) => remux.init_by_generation(generation),
        None => remux.init_for(u64::MAX),
    };
    match init {
        Some(init) => {
            let mime = fmp4_mime(&init.codecs);
            media_response(Body::from(init.bytes.clone()), &mime, "max-age=60")
        }
        None => cors(error(&Error::StreamNotFound)),
    }
}

/// `GET /{name}/{seq}.m4s` (`part: None`) or `{seq}.{part}.m4s`: the bytes of a complete
/// segment or part. The part the playlist hints is waited for; anything else not there is `404`.
pub(super) async fn piece(
    server: &Server,
    raw_name: &str,
    seq: u64,
    part: Option<u64>,
) -> Response {
    let remux = match remux_for_players(server, raw_name).await {
        Ok(remux) => remux,
        Err(response) => return cors(response),
    };
    let range = match part {
        None => complete_segment(&remux.index(), seq).ok_or(()),
        Some(part) => {
            let found = wait_for(&remux, |index| part_state(index, seq, part)).await;
            match found {
                Ok(()) => part_range(&remux.index(), seq, part).ok_or(()),
                Err(response) => return cors(response),
            }
        }
    };
    let (Ok((start, end)), Some(segment)) = (range, remux.output().segment(seq)) else {
        return cors(error(&Error::StreamNotFound));
    };
    let mut reader = segment.reader();
    let mut pieces = Vec::new();
    let mut at = 0u64;
    while at < end {
        let Ok(Some(chunk)) = reader.next_chunk().await else {
            return cors(error(&Error::StreamNotFound));
        };
        let len = chunk.len() as u64;
        let (from, to) = (start.max(at) - at, end.min(at + len) - at);
        if from < to {
            pieces.push(Ok::<Bytes, std::io::Error>(
                chunk.slice(from as usize..to as usize),
            ));
        }
        at += len;
    }
    let body = Body::from_stream(futures_util::stream::iter(pieces));
    let codecs = remux
        .init_for(seq)
        .map(|i| i.codecs.clone())
        .unwrap_or_default();
    media_response(body, &fmp4_mime(&codecs), "max-age=60")
}

/// Whether what a blocked request waits for is there.
pub(super) enum Wait {
    Ready,
    NotYet,
    /// It will never be (gone, or too far ahead): the answer.
    Never(Response),
}

/// Waits until `check` says ready, at most three target durations (`503` then).
pub(super) async fn wait_for(
    remux: &Remux,
    check: impl Fn(&Index) -> Wait,
) -> Result<(), Response> {
    let limit = Duration::from_millis(3 * target_duration(&remux.index()) * 1000);
    let deadline = tokio::time::Instant::now() + limit;
    let mut changes = remux.changes();
    loop {
        match check(&remux.index()) {
            Wait::Ready => return Ok(()),
            Wait::Never(response) => return Err(response),
            Wait::NotYet => {}
        }
        let changed = tokio::time::timeout_at(deadline, changes.changed()).await;
        if !matches!(changed, Ok(Ok(()))) || remux.output().is_closed() {
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "Not available yet");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(response);
        }
    }
}

/// `_HLS_msn` and `_HLS_part` of a blocking playlist reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Blocking {
    msn: u64,
    part: Option<u64>,
}

impl Blocking {
    fn parse(query: Option<&str>) -> Result<Option<Blocking>, &'static str> {
        let (mut msn, mut part) = (None, None);
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "_HLS_msn" => &mut msn,
                "_HLS_part" => &mut part,
                _ => continue,
            };
            *slot = Some(value.parse::<u64>().map_err(|_| BAD_BLOCKING)?);
        }
        match (msn, part) {
            (None, Some(_)) => Err("_HLS_part needs _HLS_msn"),
            (None, None) => Ok(None),
            (Some(msn), part) => Ok(Some(Blocking { msn, part })),
        }
    }

    /// Whether the playlist lists the segment (or its part) asked for.
    fn listed(self, index: &Index) -> Wait {
        // Counted from the segment's parts listed so far (none for one not begun): a part that
        // far ahead cannot come within the wait, however long the segment before it runs.
        let parts = index.get(self.msn).map_or(0, |s| s.parts.len() as u64);
        if self
            .part
            .is_some_and(|part| part >= parts.saturating_add(ADVANCE_PARTS))
        {
            return Wait::Never(text(StatusCode::BAD_REQUEST, PART_TOO_FAR));
        }
        let Some(newest) = index.segments().last() else {
            return Wait::NotYet;
        };
        if self.msn > newest.seq + 2 {
            return Wait::Never(text(StatusCode::BAD_REQUEST, TOO_FAR));
        }
        match index.get(self.msn) {
            Some(s) if s.complete => Wait::Ready,
            Some(s) => match self.part {
                Some(part) if (part as usize) < s.parts.len() => Wait::Ready,
                _ => Wait::NotYet,
            },
            None if self.msn < newest.seq => Wait::Ready,
            None => Wait::NotYet,
        }
    }
}

const BAD_BLOCKING: &str = "Invalid _HLS_msn or _HLS_part: expected a number";
const TOO_FAR: &str = "_HLS_msn is more than two segments ahead of the playlist";
/// How many parts past those listed a blocking reload may ask for (RFC 8216bis 6.2.5.2, the
/// Advance Part Limit: three seconds of parts); beyond it, `400` at once.
const ADVANCE_PARTS: u64 = 3 * TIMESCALE / PART_TARGET;
const PART_TOO_FAR: &str = "_HLS_part is more than three seconds of parts ahead of the playlist";

/// Whether part `part` of segment `seq` is there, coming (the next to be made), or never.
fn part_state(index: &Index, seq: u64, part: u64) -> Wait {
    let newest = index.segments().last().map(|s| s.seq);
    match index.get(seq) {
        Some(s) if (part as usize) < s.parts.len() => Wait::Ready,
        Some(s) if !s.complete && part as usize == s.parts.len() => Wait::NotYet,
        None if part == 0 && newest.is_some_and(|n| seq == n + 1) => Wait::NotYet,
        _ => Wait::Never(error(&Error::StreamNotFound)),
    }
}

fn part_range(index: &Index, seq: u64, part: u64) -> Option<(u64, u64)> {
    let part = index.get(seq)?.parts.get(part as usize)?;
    Some((part.start, part.end))
}

fn complete_segment(index: &Index, seq: u64) -> Option<(u64, u64)> {
    let segment = index.get(seq).filter(|s| s.complete)?;
    Some((0, segment.parts.last().map_or(0, |p| p.end)))
}

/// What the remux caches rendered, once per change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rendered {
    LowLatency = 0,
    Dash = 1,
}

/// The target duration in whole seconds: the longest segment so far (or the one being made),
/// rounded up; never below one.
pub(super) fn target_duration(index: &Index) -> u64 {
    let making = index.segments().last().map_or(0, |s| s.duration);
    index.longest().max(making).div_ceil(TIMESCALE).max(1)
}

fn seconds(ticks: u64) -> f64 {
    ticks as f64 / TIMESCALE as f64
}

/// The LL-HLS playlist of what `index` holds.
fn render(index: &Index, _remux: &Remux) -> Bytes {
    use std::fmt::Write;
    let mut listed: Vec<&Recorded> = index.segments().filter(|s| s.start.is_some()).collect();
    // A segment's media sequence number is its seq (URIs, `_HLS_msn`): the playlist can only
    // list seqs that follow each other, so it lists the newest such run (a seq the remux never
    // made, such as one that failed before its first byte, starts a new run after it).
    let run = listed
        .windows(2)
        .rposition(|w| w[1].seq != w[0].seq + 1)
        .map_or(0, |gap| gap + 1);
    listed.drain(..run);
    let target = target_duration(index);
    let part_target = seconds(PART_TARGET);
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{target}\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n\
         #EXT-X-PART-INF:PART-TARGET={part_target:.3}\n",
        3.0 * part_target
    );
    let Some(first) = listed.first() else {
        return Bytes::from(out);
    };
    let _ = write!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
        first.seq, first.discontinuity
    );
    let with_parts = listed.len().saturating_sub(SEGMENTS_WITH_PARTS);
    let mut previous: Option<&Recorded> = None;
    for (i, segment) in listed.iter().enumerate() {
        let new_run = previous.is_none_or(|p| p.discontinuity != segment.discontinuity);
        if previous.is_some() && new_run {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if previous.is_none_or(|p| p.init != segment.init) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"init.mp4?g={}\"", segment.init);
        }
        if new_run && let Some(made) = segment.made_at {
            let time = humantime::format_rfc3339_millis(made);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{time}");
        }
        if i >= with_parts {
            for (n, part) in segment.parts.iter().enumerate() {
                let independent = if part.independent {
                    ",INDEPENDENT=YES"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "#EXT-X-PART:DURATION={:.3},URI=\"{}.{n}.m4s\"{independent}",
                    seconds(part.duration),
                    segment.seq
                );
            }
        }
        if segment.complete {
            let _ = write!(
                out,
                "#EXTINF:{:.3},\n{}.m4s\n",
                seconds(segment.duration),
                segment.seq
            );
        }
        previous = Some(segment);
    }
    let last = listed[listed.len() - 1];
    let (seq, part) = match last.complete {
        true => (last.seq + 1, 0),
        false => (last.seq, last.parts.len()),
    };
    let _ = writeln!(
        out,
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{seq}.{part}.m4s\""
    );
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_reload_parameters_are_numbers_and_a_part_needs_its_segment() {
        assert_eq!(Blocking::parse(None), Ok(None));
        assert_eq!(
            Blocking::parse(Some("_HLS_msn=12&_HLS_part=3")),
            Ok(Some(Blocking {
                msn: 12,
                part: Some(3)
            }))
        );
        assert_eq!(
            Blocking::parse(Some("x=1&_HLS_msn=4")),
            Ok(Some(Blocking { msn: 4, part: None }))
        );
        for bad in [
            "_HLS_msn=-1",
            "_HLS_msn=x",
            "_HLS_msn=",
            "_HLS_part=2",
            "_HLS_msn=1&_HLS_part=a",
        ] {
            assert!(Blocking::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
