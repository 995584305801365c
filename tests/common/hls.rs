//! A strict reader of the server's HLS media playlists, for the tests: every line must be a tag it
//! knows, well formed and where RFC 8216 allows it, or a segment URI right after its `#EXTINF`;
//! every duration within the target duration; and across the reloads of one playlist
//! ([`Reloads`]), the target duration constant, the media sequence never going back, and each
//! segment keeping its media sequence number, discontinuity sequence number and URI.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// One media playlist, as read.
#[derive(Debug, Clone)]
pub struct Playlist {
    pub target: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub independent: bool,
    pub ended: bool,
    pub segments: Vec<Segment>,
}

/// One listed segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub uri: String,
    /// The seq and version tag its URI (`{seq}.ts?v={tag}`) names.
    pub seq: u64,
    pub tag: u64,
    pub duration_ms: u64,
    pub discontinuity: bool,
    pub date: Option<SystemTime>,
    /// Its media and discontinuity sequence numbers.
    pub msn: u64,
    pub dsn: u64,
}

/// What was read of the segment being described, before its URI.
#[derive(Default)]
struct Pending {
    discontinuity: bool,
    date: Option<SystemTime>,
    duration_ms: Option<u64>,
}

fn number(value: &str, line: &str) -> u64 {
    assert!(
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        "not a decimal integer: {line}"
    );
    value.parse().unwrap()
}

/// `1.000,` as milliseconds: whole seconds, exactly three decimals, no title.
fn extinf(value: &str, line: &str) -> u64 {
    let duration = value.strip_suffix(',').unwrap_or_else(|| panic!("{line}"));
    let (secs, ms) = duration.split_once('.').unwrap_or_else(|| panic!("{line}"));
    assert_eq!(ms.len(), 3, "three decimals: {line}");
    number(secs, line) * 1000 + number(ms, line)
}

/// `2024-05-01T12:00:00.123Z`: RFC 3339, UTC, milliseconds.
fn date(value: &str, line: &str) -> SystemTime {
    let shape = value.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        23 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    assert!(
        shape && value.len() == 24,
        "an RFC 3339 time with ms: {line}"
    );
    humantime::parse_rfc3339(value).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// `{seq}.ts?v={tag}`.
fn uri(line: &str) -> (u64, u64) {
    let (seq, tag) = line
        .split_once(".ts?v=")
        .unwrap_or_else(|| panic!("a segment URI: {line}"));
    (number(seq, line), number(tag, line))
}

fn once<T>(slot: &mut Option<T>, value: T, line: &str) {
    assert!(slot.is_none(), "twice: {line}");
    *slot = Some(value);
}

/// Reads `text`, panicking at the first line that breaks a rule.
pub fn parse(text: &str) -> Playlist {
    let body = text.strip_suffix('\n').expect("ends with a newline");
    let mut lines = body.split('\n');
    assert_eq!(lines.next(), Some("#EXTM3U"), "starts with #EXTM3U");
    let (mut version, mut target, mut msn, mut dsn) = (None, None, None, None);
    let (mut independent, mut ended) = (None, false);
    let mut pending = Pending::default();
    let mut segments: Vec<Segment> = Vec::new();
    for line in lines {
        assert!(!ended, "nothing after #EXT-X-ENDLIST: {line}");
        let in_header = segments.is_empty() && pending.duration_ms.is_none();
        let (tag, value) = line.split_once(':').unwrap_or((line, ""));
        let header_tag = matches!(
            tag,
            "#EXT-X-VERSION"
                | "#EXT-X-TARGETDURATION"
                | "#EXT-X-MEDIA-SEQUENCE"
                | "#EXT-X-DISCONTINUITY-SEQUENCE"
                | "#EXT-X-INDEPENDENT-SEGMENTS"
        );
        assert!(!header_tag || in_header, "before the first segment: {line}");
        match tag {
            "#EXT-X-VERSION" => once(&mut version, number(value, line), line),
            "#EXT-X-TARGETDURATION" => once(&mut target, number(value, line), line),
            "#EXT-X-MEDIA-SEQUENCE" => once(&mut msn, number(value, line), line),
            "#EXT-X-DISCONTINUITY-SEQUENCE" => once(&mut dsn, number(value, line), line),
            "#EXT-X-INDEPENDENT-SEGMENTS" if value.is_empty() => once(&mut independent, (), line),
            "#EXT-X-DISCONTINUITY" if value.is_empty() => {
                assert!(!pending.discontinuity, "twice: {line}");
                pending.discontinuity = true;
            }
            "#EXT-X-PROGRAM-DATE-TIME" => once(&mut pending.date, date(value, line), line),
            "#EXTINF" => once(&mut pending.duration_ms, extinf(value, line), line),
            "#EXT-X-ENDLIST" if value.is_empty() => ended = true,
            _ if line.starts_with('#') || line.is_empty() => panic!("unknown line: {line:?}"),
            _ => {
                let duration_ms = pending.duration_ms.expect("#EXTINF before a URI");
                let (seq, tag) = uri(line);
                let before = segments.last();
                let msn = before.map_or(msn.expect("#EXT-X-MEDIA-SEQUENCE"), |s| s.msn + 1);
                let dsn =
                    before.map_or(dsn.unwrap_or(0), |s| s.dsn) + u64::from(pending.discontinuity);
                segments.push(Segment {
                    uri: line.to_string(),
                    seq,
                    tag,
                    duration_ms,
                    discontinuity: pending.discontinuity,
                    date: pending.date,
                    msn,
                    dsn,
                });
                pending = Pending::default();
            }
        }
    }
    assert!(pending.duration_ms.is_none(), "an #EXTINF without its URI");
    assert_eq!(version, Some(3), "#EXT-X-VERSION:3");
    let target = target.expect("#EXT-X-TARGETDURATION");
    for segment in &segments {
        assert!(
            segment.duration_ms <= target * 1000,
            "{segment:?} is longer than the target duration {target}"
        );
        assert!(segment.duration_ms > 0, "{segment:?}");
    }
    // Ours: a time on the first segment and after each discontinuity.
    if let Some(first) = segments.first() {
        assert!(first.date.is_some(), "a time on the first segment");
    }
    for segment in segments.iter().filter(|s| s.discontinuity) {
        assert!(segment.date.is_some(), "a time after a discontinuity");
    }
    Playlist {
        target,
        media_sequence: msn.expect("#EXT-X-MEDIA-SEQUENCE"),
        discontinuity_sequence: dsn.unwrap_or(0),
        independent: independent.is_some(),
        ended,
        segments,
    }
}

/// The rules across the reloads of one playlist (RFC 8216, 6.2.1–6.2.2).
#[derive(Default)]
pub struct Reloads {
    target: Option<u64>,
    media_sequence: u64,
    last_msn: Option<u64>,
    /// Every segment seen, by media sequence number: (URI, discontinuity sequence number).
    seen: BTreeMap<u64, (String, u64)>,
    pub count: usize,
}

impl Reloads {
    /// Checks `playlist` against the ones read before it, then remembers it.
    pub fn check(&mut self, playlist: &Playlist) {
        let target = *self.target.get_or_insert(playlist.target);
        assert_eq!(playlist.target, target, "the target duration changed");
        assert!(
            playlist.media_sequence >= self.media_sequence,
            "the media sequence went back: {} after {}",
            playlist.media_sequence,
            self.media_sequence
        );
        let last = playlist.segments.last().map(|s| s.msn);
        assert!(
            last >= self.last_msn,
            "segments left from the end: {last:?} after {:?}",
            self.last_msn
        );
        for segment in &playlist.segments {
            let now = (segment.uri.clone(), segment.dsn);
            if let Some(before) = self.seen.insert(segment.msn, now.clone()) {
                assert_eq!(before, now, "media sequence number {} changed", segment.msn);
            }
        }
        self.media_sequence = playlist.media_sequence;
        self.last_msn = last;
        self.count += 1;
    }
}
