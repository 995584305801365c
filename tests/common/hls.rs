//! A strict reader of the server's HLS media playlists (`index.m3u8`, and `ll.m3u8` with its
//! parts), for the tests: every line must be a tag it knows, well formed and where RFC 8216 allows
//! it, or a segment URI right after its `#EXTINF`; every duration within the target duration, every
//! part within the part target, the part hold-back at least three part targets; and across the
//! reloads of one playlist ([`Reloads`]), the target duration constant, the media sequence never
//! going back, and each segment keeping its media sequence number, discontinuity sequence number
//! and URI.

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
    /// LL-HLS: `PART-TARGET`, `PART-HOLD-BACK`, `CAN-BLOCK-RELOAD=YES`, the preload hint's URI,
    /// and the parts listed after the last complete segment (of the one being made).
    pub part_target: Option<f64>,
    pub part_hold_back: Option<f64>,
    pub can_block_reload: bool,
    pub preload_hint: Option<String>,
    pub open_parts: Vec<Part>,
}

/// One part (`#EXT-X-PART`).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
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
    /// Its parts, if listed (LL-HLS), and the init segment named before it.
    pub parts: Vec<Part>,
    pub map: Option<String>,
}

/// What was read of the segment being described, before its URI.
#[derive(Default)]
struct Pending {
    discontinuity: bool,
    date: Option<SystemTime>,
    duration_ms: Option<u64>,
    parts: Vec<Part>,
    map: Option<String>,
}

/// `KEY=VALUE,KEY="VALUE",…` of a tag.
fn attributes(value: &str, line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("attribute: {line}"));
        assert!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_uppercase() || b == b'-'),
            "attribute name {key:?}: {line}"
        );
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find('"')
                    .unwrap_or_else(|| panic!("closing quote: {line}"));
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_at(after.find(',').unwrap_or(after.len())),
        };
        assert!(
            out.insert(key.to_string(), value.to_string()).is_none(),
            "twice: {line}"
        );
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    out
}

fn seconds(value: &str, line: &str) -> f64 {
    value
        .parse()
        .unwrap_or_else(|_| panic!("a number of seconds: {line}"))
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

/// `{seq}.ts?v={tag}` (HLS), or `{seq}.m4s` (LL-HLS, tag 0).
fn uri(line: &str) -> (u64, u64) {
    if let Some(seq) = line.strip_suffix(".m4s") {
        return (number(seq, line), 0);
    }
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
    let (mut part_target, mut server_control, mut preload_hint) = (None, None, None);
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
                | "#EXT-X-SERVER-CONTROL"
                | "#EXT-X-PART-INF"
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
            "#EXT-X-SERVER-CONTROL" => once(&mut server_control, attributes(value, line), line),
            "#EXT-X-PART-INF" => {
                let target = seconds(&attributes(value, line)["PART-TARGET"], line);
                once(&mut part_target, target, line);
            }
            "#EXT-X-MAP" => once(
                &mut pending.map,
                attributes(value, line)["URI"].clone(),
                line,
            ),
            "#EXT-X-PART" => {
                let a = attributes(value, line);
                let duration = seconds(&a["DURATION"], line);
                let target = part_target.expect("#EXT-X-PART-INF before parts");
                assert!(
                    duration > 0.0 && duration <= target,
                    "over PART-TARGET: {line}"
                );
                let independent = a.get("INDEPENDENT").map(String::as_str) == Some("YES");
                let uri = a["URI"].clone();
                pending.parts.push(Part {
                    uri,
                    duration,
                    independent,
                });
            }
            "#EXT-X-PRELOAD-HINT" => {
                let a = attributes(value, line);
                assert_eq!(a["TYPE"], "PART", "{line}");
                once(&mut preload_hint, a["URI"].clone(), line);
            }
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
                    parts: std::mem::take(&mut pending.parts),
                    map: pending.map.take(),
                });
                pending = Pending::default();
            }
        }
    }
    assert!(pending.duration_ms.is_none(), "an #EXTINF without its URI");
    let open_parts = std::mem::take(&mut pending.parts);
    // 3 for HLS over MPEG-TS; 9 for LL-HLS.
    let low_latency = part_target.is_some();
    assert_eq!(
        version,
        Some(if low_latency { 9 } else { 3 }),
        "#EXT-X-VERSION"
    );
    let control = server_control.unwrap_or_default();
    let part_hold_back = control
        .get("PART-HOLD-BACK")
        .map(|v| seconds(v, "PART-HOLD-BACK"));
    if let Some(target) = part_target {
        let hold_back = part_hold_back.expect("PART-HOLD-BACK with parts");
        assert!(
            hold_back >= 3.0 * target - 1e-9,
            "PART-HOLD-BACK {hold_back} < 3 × {target}"
        );
    }
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
        part_target,
        part_hold_back,
        can_block_reload: control.get("CAN-BLOCK-RELOAD").map(String::as_str) == Some("YES"),
        preload_hint,
        open_parts,
    }
}

impl Playlist {
    /// The listed segment of seq `seq`, if complete.
    pub fn segment(&self, seq: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.seq == seq)
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
