//! What the `hls` profile's players read of a media playlist: a tolerant reader that takes only
//! the lines a player acts on and passes over everything else (the strict, checking reader is the
//! tests', `tests/common/hls.rs`). URIs are the server's relative ones: `{seq}.ts?v={tag}` in
//! `index.m3u8`, `{seq}.m4s` and `{seq}.{part}.m4s` in `ll.m3u8` (parts and the preload hint).

/// One line of a playlist that a player acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Line<'a> {
    /// `#EXT-X-TARGETDURATION`, in seconds.
    Target(u64),
    /// `#EXT-X-PART` of part `part` of segment `seq`.
    Part { seq: u64, part: u64, uri: &'a str },
    /// A segment URI (the segment is complete): its seq, and the URI as written.
    Segment { seq: u64, uri: &'a str },
    /// `#EXT-X-PRELOAD-HINT` of a part: the part the server makes next.
    Hint { seq: u64, part: u64 },
}

/// The lines of `text` a player acts on, in order; lines it cannot read are passed over.
pub(super) fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            return value.trim().parse().ok().map(Line::Target);
        }
        if let Some(attributes) = line.strip_prefix("#EXT-X-PART:") {
            let uri = quoted(attributes, "URI")?;
            let (seq, part) = part_uri(uri)?;
            return Some(Line::Part { seq, part, uri });
        }
        if let Some(attributes) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            if !attributes.split(',').any(|a| a == "TYPE=PART") {
                return None;
            }
            let (seq, part) = part_uri(quoted(attributes, "URI")?)?;
            return Some(Line::Hint { seq, part });
        }
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let seq = segment_seq(line)?;
        Some(Line::Segment { seq, uri: line })
    })
}

/// The value of the quoted attribute `name` (`NAME="value"`) of a tag.
fn quoted<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attributes;
    loop {
        let at = rest.find(name)?;
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        if before.is_none_or(|c| c == ',')
            && let Some(value) = after.strip_prefix("=\"")
        {
            return value.split_once('"').map(|(value, _)| value);
        }
        rest = after;
    }
}

/// `{seq}.{part}.m4s`.
fn part_uri(uri: &str) -> Option<(u64, u64)> {
    let (seq, part) = uri.strip_suffix(".m4s")?.split_once('.')?;
    Some((seq.parse().ok()?, part.parse().ok()?))
}

/// The seq a segment URI names: `{seq}.m4s`, `{seq}.ts`, with any query.
fn segment_seq(uri: &str) -> Option<u64> {
    let path = uri.split('?').next().unwrap_or(uri);
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name
        .strip_suffix(".ts")
        .or_else(|| name.strip_suffix(".m4s"))?;
    stem.parse().ok()
}

/// What an `ll.m3u8` lists: its parts, the segments it lists whole, and its preload hint.
pub(super) struct LowLatency {
    /// Its parts, `(seq, part)`, in order.
    pub(super) parts: Vec<(u64, u64)>,
    /// The segments listed whole (with a URI), in order.
    pub(super) complete: Vec<u64>,
    /// The part `#EXT-X-PRELOAD-HINT` names, `(seq, part)`.
    pub(super) hint: Option<(u64, u64)>,
}

impl LowLatency {
    pub(super) fn read(playlist: &[u8]) -> LowLatency {
        let text = String::from_utf8_lossy(playlist);
        let mut view = LowLatency {
            parts: Vec::new(),
            complete: Vec::new(),
            hint: None,
        };
        for line in lines(&text) {
            match line {
                Line::Part { seq, part, .. } => view.parts.push((seq, part)),
                Line::Segment { seq, .. } => view.complete.push(seq),
                Line::Hint { seq, part } => view.hint = Some((seq, part)),
                Line::Target(_) => {}
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_players_act_on_and_passes_over_the_rest() {
        let text = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-MAP:URI=\"init.mp4?g=0\"\n\
            #EXT-X-PART:DURATION=0.250,URI=\"4.0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.250,URI=\"4.1.m4s\"\n#EXTINF:0.500,\n4.m4s\n\
            #EXT-X-PART:DURATION=0.250,URI=\"5.0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PART:BROKEN\n\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"5.1.m4s\"\n\
            #EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"6.1.m4s\"\n";
        let read: Vec<Line> = lines(text).collect();
        assert_eq!(
            read,
            vec![
                Line::Target(2),
                Line::Part {
                    seq: 4,
                    part: 0,
                    uri: "4.0.m4s"
                },
                Line::Part {
                    seq: 4,
                    part: 1,
                    uri: "4.1.m4s"
                },
                Line::Segment {
                    seq: 4,
                    uri: "4.m4s"
                },
                Line::Part {
                    seq: 5,
                    part: 0,
                    uri: "5.0.m4s"
                },
                Line::Hint { seq: 5, part: 1 },
            ]
        );
        let view = LowLatency::read(text.as_bytes());
        assert_eq!(view.parts, [(4, 0), (4, 1), (5, 0)]);
        assert_eq!((view.complete, view.hint), (vec![4], Some((5, 1))));
    }

    #[test]
    fn segment_uris_of_plain_hls() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:2.000,\n17.ts?v=123\nother.txt\n";
        let read: Vec<Line> = lines(text).collect();
        assert_eq!(
            read,
            vec![
                Line::Target(3),
                Line::Segment {
                    seq: 17,
                    uri: "17.ts?v=123"
                }
            ]
        );
    }

    #[test]
    fn attributes_are_matched_whole() {
        assert_eq!(quoted("XURI=\"a\",URI=\"b\"", "URI"), Some("b"));
        assert_eq!(quoted("DURATION=1,URI=\"c.m4s\"", "URI"), Some("c.m4s"));
        assert_eq!(quoted("URI=unquoted", "URI"), None);
    }
}
