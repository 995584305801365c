//! The HLS media playlist (RFC 8216) of a [`Timeline`], as text: rendered once per change of the
//! channel and shared by every request until the next ([`super`]).
//!
//! What it writes, and why:
//! - `#EXT-X-VERSION:3`: durations are decimals (version 3); nothing else used needs more.
//! - `#EXT-X-TARGETDURATION`: the timeline's, which never shrinks.
//! - `#EXT-X-MEDIA-SEQUENCE` and `#EXT-X-DISCONTINUITY-SEQUENCE`: the first listed segment's
//!   numbers. A discontinuity of the first segment is counted in the latter instead of written as
//!   a tag: a player that starts there has nothing to be discontinuous with, and one that saw the
//!   tag before keeps the same numbers.
//! - `#EXT-X-INDEPENDENT-SEGMENTS` when every listed segment starts with a keyframe.
//! - per segment: `#EXT-X-DISCONTINUITY` before one that does not follow the one before,
//!   `#EXT-X-PROGRAM-DATE-TIME` on the first and after each discontinuity (in between, times
//!   follow from the durations), `#EXTINF` with the measured duration in milliseconds, and its
//!   URI, relative to the playlist's: `{seq}.ts?v={tag}`, the tag naming the version.
//! - `#EXT-X-ENDLIST` once the channel is closed.

use std::fmt::Write;

use bytes::Bytes;

use super::super::api::timestamp;
use super::timeline::{Entry, Timeline};

/// The playlist's MIME type (RFC 8216, 4).
pub(crate) const MIME: &str = "application/vnd.apple.mpegurl";

/// The media playlist of `timeline`, `None` while it lists nothing (a playlist must hold segments
/// for a player to start). `ended`: the channel is closed, no segment will be added.
pub(crate) fn render(timeline: &Timeline, ended: bool) -> Option<Bytes> {
    let entries = timeline.entries();
    let first = entries.front()?;
    let mut text = String::with_capacity(160 + entries.len() * 96);
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
        timeline.target_secs(),
        first.msn,
        first.dsn
    );
    if entries.iter().all(|e| e.independent) {
        text.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for (i, entry) in entries.iter().enumerate() {
        segment(&mut text, entry, i == 0);
    }
    if ended {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    Some(Bytes::from(text))
}

/// One segment's lines.
fn segment(text: &mut String, entry: &Entry, first: bool) {
    if entry.discontinuity && !first {
        text.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if entry.discontinuity || first {
        let _ = writeln!(
            text,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            timestamp(entry.program_date_time)
        );
    }
    let (secs, ms) = (entry.duration_ms / 1000, entry.duration_ms % 1000);
    let _ = write!(
        text,
        "#EXTINF:{secs}.{ms:03},\n{}.ts?v={}\n",
        entry.seq, entry.tag
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::super::timeline::{Held, View};
    use super::*;
    use crate::server::facts::Facts;

    fn complete(seq: u64, pts: u64, ms: u64, keyframe: bool) -> (u64, Held) {
        let started = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq);
        let timing = crate::media::mpegts::Timing {
            first_pts: Some(pts),
            duration_ticks: Some(ms * 90),
            keyframe: Some(keyframe),
        };
        let facts = Facts::new(1000, Some(started), Some(started), Some(timing));
        (seq, Held::Complete(facts))
    }

    #[test]
    fn a_playlist_lists_what_the_timeline_holds() {
        let mut timeline = Timeline::default();
        assert_eq!(render(&timeline, false), None, "nothing to list yet");
        let view = View {
            held: vec![
                complete(4, 0, 2000, true),
                complete(5, 180_000, 1500, true),
                (6, Held::Failed),
                complete(7, 450_000, 2002, true),
                (8, Held::Open),
            ],
            ..View::default()
        };
        timeline.update(&view, 6);
        let text = render(&timeline, false).unwrap();
        let tag = |seq: u64| {
            let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq);
            t.duration_since(UNIX_EPOCH).unwrap().as_nanos()
        };
        let expected = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:4\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z\n#EXTINF:2.000,\n4.ts?v={}\n\
             #EXTINF:1.500,\n5.ts?v={}\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:27.000Z\n\
             #EXTINF:2.002,\n7.ts?v={}\n",
            tag(4),
            tag(5),
            tag(7)
        );
        assert_eq!(String::from_utf8_lossy(&text), expected);

        // Once the first two are gone, the discontinuity of the new first segment is counted.
        let view = View {
            held: vec![
                complete(7, 450_000, 2002, true),
                complete(8, 630_180, 1000, true),
            ],
            ..View::default()
        };
        timeline.update(&view, 6);
        let text = String::from_utf8(render(&timeline, true).unwrap().to_vec()).unwrap();
        assert!(
            text.contains("#EXT-X-MEDIA-SEQUENCE:6\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n"),
            "{text}"
        );
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        assert_eq!(text.matches("PROGRAM-DATE-TIME").count(), 1, "{text}");
        assert!(text.ends_with(&format!("8.ts?v={}\n#EXT-X-ENDLIST\n", tag(8))));
    }
}
