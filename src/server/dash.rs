//! DASH over the channel's fMP4 remux: `GET /{ch}/manifest.mpd`, a dynamic MPD with one
//! Adaptation Set per track (DASH players want one track per Representation, so the remux then
//! also writes its output track by track: `remux/tracks.rs`). Each `SegmentTemplate` names
//! `video-init.mp4` (or `audio-…`) and `video-$Time$.m4s`: a segment by its start on the remux's
//! 90 kHz clock, with a `SegmentTimeline` of the complete segments held (their measured start and
//! duration), so that a gap left by a skipped segment is explicit and no numbering has to be
//! kept. (Players count `$Number$` from the first entry listed; ffmpeg 5.1 gets that wrong in a
//! sliding live timeline and goes back a segment at every reload: times avoid it.) Rendered once
//! per change and shared, like the LL-HLS playlist.
//!
//! Time zero of the media is the remux's anchor (`availabilityStartTime`): the wall clock at
//! which its clock read zero. The manifest is refreshed every target duration
//! (`minimumUpdatePeriod`); its depth is what the timelines list (`timeShiftBufferDepth`), the
//! HLS window; players start three target durations behind the live edge
//! (`suggestedPresentationDelay`). Each answer ends with the server's clock (`UTCTiming`, direct),
//! which players use instead of asking a time server of their own. The init segments are the
//! newest: a change of codecs mid-stream would need a new period, which this manifest does not
//! make.

use std::fmt::Write;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;

use super::http::error;
use super::llhls::{Rendered, Wait, remux_for_players, target_duration, wait_for};
use super::output::{cors, fmp4_mime, media_response};
use super::remux::{Found, Index, Remux, TIMESCALE, TRACKS, Timing, TrackOutput};
use super::subscribe;
use super::{Server, Stat};
use crate::media::fmp4::Track;
use crate::protocol::Error;

/// `GET /{name}/manifest.mpd`.
pub(super) async fn manifest(server: &Server, raw_name: &str) -> Response {
    let remux = match remux_for_players(server, raw_name).await {
        Ok(remux) => remux,
        Err(response) => return cors(response),
    };
    // The tracks are made from the next segment on once a DASH player asks: the first manifest
    // waits for them, as an HLS playlist waits for its first segment.
    let tracks = remux.tracks();
    tracks.want();
    let listing = |_: &Index| match TRACKS.into_iter().any(|t| listed(tracks.get(t)).is_some()) {
        true => Wait::Ready,
        false => Wait::NotYet,
    };
    if let Err(response) = wait_for(&remux, listing).await {
        return cors(response);
    }
    let rendered = remux.rendered(Rendered::Dash, render);
    // The clock, to the millisecond, is the one part made per request: two chunks, no copy.
    let clock = format!(
        "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"{}\"/>\n</MPD>\n",
        time(SystemTime::now())
    );
    let chunks = [rendered, Bytes::from(clock)].map(Ok::<Bytes, std::io::Error>);
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    media_response(body, "application/dash+xml", "no-cache")
}

/// The channel's remux, ready to play, for a request about `track`: `404` if the channel does
/// not carry it (an audio-only channel has no `video-init.mp4`), rather than a wait for nothing.
async fn remux_with(server: &Server, raw_name: &str, track: Track) -> Result<Arc<Remux>, Response> {
    let remux = remux_for_players(server, raw_name).await?;
    let codecs = remux.init_for(u64::MAX).map(|init| init.codecs.clone());
    let carried = codecs.unwrap_or_default().split(',').any(|codec| {
        let audio = codec.starts_with("mp4a");
        audio == (track == Track::Audio)
    });
    match carried {
        true => Ok(remux),
        false => Err(error(&Error::StreamNotFound)),
    }
}

/// `GET /{name}/video-init.mp4` or `audio-init.mp4`: that track's newest init segment.
pub(super) async fn track_init(server: &Server, raw_name: &str, track: Track) -> Response {
    let remux = match remux_with(server, raw_name, track).await {
        Ok(remux) => remux,
        Err(response) => return cors(response),
    };
    // A remux that started for this request makes the tracks from its next segment.
    let output = remux.tracks().want_track(track);
    let made = |_: &Index| match output.init() {
        Some(_) => Wait::Ready,
        None => Wait::NotYet,
    };
    if let Err(response) = wait_for(&remux, made).await {
        return cors(response);
    }
    match output.init() {
        Some((bytes, codec)) => media_response(Body::from(bytes), &fmp4_mime(&codec), "max-age=60"),
        None => cors(error(&Error::StreamNotFound)),
    }
}

/// `GET /{name}/video-{time}.m4s` or `audio-{time}.m4s`: the track's segment that starts at
/// `time`. A complete one is served whole; the one being written is streamed as the remux writes
/// it, and the next one is waited for (players such as ffmpeg ask for the next segment as soon as
/// they have one, before the manifest lists it, and give up on it at a `404`); its bytes are
/// final as they come, so it may be cached like a complete one. A time no segment held starts at
/// is `404`; one that has not begun within three target durations, `503`.
pub(super) async fn track_segment(
    server: &Server,
    raw_name: &str,
    track: Track,
    time: u64,
) -> Response {
    let remux = match remux_with(server, raw_name, track).await {
        Ok(remux) => remux,
        Err(response) => return cors(response),
    };
    let output = remux.tracks().want_track(track);
    // A player may ask for the segment after the newest, not for one far beyond it.
    let horizon = 3 * target_duration(&remux.index()) * TIMESCALE;
    let found = |_: &Index| match output.find(time, horizon) {
        Found::Seq(_) => Wait::Ready,
        Found::Ahead => Wait::NotYet,
        Found::Gone => Wait::Never(error(&Error::StreamNotFound)),
    };
    if let Err(response) = wait_for(&remux, found).await {
        return cors(response);
    }
    let channel = &output.channel;
    let segment = match output.find(time, horizon) {
        Found::Seq(seq) => channel.segment(seq),
        Found::Ahead | Found::Gone => None,
    };
    let (Some(segment), Some((_, codec))) = (segment, output.init()) else {
        return cors(error(&Error::StreamNotFound));
    };
    let streaming = server.stat_in(Stat::StreamingGets, channel);
    let body = Body::new(subscribe::body(segment.reader(), streaming));
    media_response(body, &fmp4_mime(&codec), "max-age=60")
}

fn name(track: Track) -> &'static str {
    match track {
        Track::Video => "video",
        Track::Audio => "audio",
    }
}

fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn render(index: &Index, remux: &Remux) -> Bytes {
    let target = target_duration(index);
    let anchor = index.anchor().unwrap_or_else(SystemTime::now);
    let tracks: Vec<_> = TRACKS
        .into_iter()
        .filter_map(|track| listed(remux.tracks().get(track)).map(|l| (track, l)))
        .collect();
    // What the longest timeline listed spans.
    let depth = tracks
        .iter()
        .map(|(_, (_, timings))| timings.iter().map(|(_, (_, d))| d).sum::<u64>())
        .max()
        .unwrap_or(0);
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
         type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" \
         minimumUpdatePeriod=\"PT{target}S\" minBufferTime=\"PT{target}S\" \
         timeShiftBufferDepth=\"PT{:.3}S\" suggestedPresentationDelay=\"PT{}S\">\n\
         <Period id=\"0\" start=\"PT0S\">\n",
        time(anchor),
        time(SystemTime::now()),
        depth as f64 / TIMESCALE as f64,
        3 * target,
    );
    for (id, (track, (codec, timings))) in tracks.iter().enumerate() {
        let output = remux.tracks().get(*track);
        adaptation_set(&mut out, (id, *track), codec, timings, output);
    }
    out.push_str("</Period>\n");
    Bytes::from(out)
}

/// A track's codec and the segments its timeline lists: the complete ones still held (the
/// oldest may have left the channel's ring: a reader waiting for the next segment takes its
/// slot). `None` for a track with nothing to list.
fn listed(output: &TrackOutput) -> Option<(String, Vec<(u64, Timing)>)> {
    let (_, codec) = output.init()?;
    let mut timings = output.timings();
    timings.retain(|(seq, _)| output.channel.segment(*seq).is_some());
    (!timings.is_empty()).then_some((codec, timings))
}

/// One track's Adaptation Set over the segments `listed` found.
fn adaptation_set(
    out: &mut String,
    (id, track): (usize, Track),
    codec: &str,
    timings: &[(u64, Timing)],
    output: &TrackOutput,
) {
    let kind = name(track);
    // The most bytes per second of any segment listed.
    let bandwidth = timings
        .iter()
        .filter_map(|(seq, (_, d))| {
            let bytes = output.channel.segment(*seq)?.snapshot().len;
            (*d > 0).then(|| bytes * 8 * TIMESCALE / d)
        })
        .max()
        .unwrap_or(1);
    let _ = write!(
        out,
        "<AdaptationSet id=\"{id}\" contentType=\"{kind}\" mimeType=\"{kind}/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n\
         <Representation id=\"{kind}\" codecs=\"{codec}\" bandwidth=\"{bandwidth}\">\n\
         <SegmentTemplate timescale=\"{TIMESCALE}\" initialization=\"{kind}-init.mp4\" \
         media=\"{kind}-$Time$.m4s\">\n<SegmentTimeline>\n"
    );
    // The first entry, and one that does not start where the one before ended, give their `t`.
    let mut expected = None;
    for &(_, (start, duration)) in timings {
        if expected == Some(start) {
            let _ = writeln!(out, "<S d=\"{duration}\"/>");
        } else {
            let _ = writeln!(out, "<S t=\"{start}\" d=\"{duration}\"/>");
        }
        expected = Some(start + duration);
    }
    out.push_str("</SegmentTimeline>\n</SegmentTemplate>\n</Representation>\n</AdaptationSet>\n");
}
