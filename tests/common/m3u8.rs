//! A strict reader of HLS media playlists for the tests: every line must be a tag it knows, with
//! well-formed attributes, or a URI after `#EXTINF`; and the numbers the HLS specification ties
//! together are checked as it reads (each `EXTINF`, rounded, at most the target duration; parts at
//! most the part target; the part hold-back at least three part targets).

use std::collections::BTreeMap;

/// A part (`#EXT-X-PART`).
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
}

/// A segment: its parts (if listed), and its `EXTINF` and URI once complete.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Segment {
    pub seq: u64,
    pub parts: Vec<Part>,
    /// `(duration, uri)` of a complete segment.
    pub complete: Option<(f64, String)>,
    pub discontinuity: bool,
    pub program_date_time: Option<String>,
    pub map: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Playlist {
    pub target_duration: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub part_target: Option<f64>,
    pub part_hold_back: Option<f64>,
    pub can_block_reload: bool,
    pub independent_segments: bool,
    pub preload_hint: Option<String>,
    pub endlist: bool,
    pub segments: Vec<Segment>,
}

/// `KEY=VALUE,KEY="VALUE",…` of a tag.
fn attributes(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("attribute in {text}"));
        assert!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_uppercase() || b == b'-'),
            "attribute name {key:?} in {text}"
        );
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .unwrap_or_else(|| panic!("closing quote in {text}"));
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.insert(key.to_string(), value.to_string());
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    out
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> T {
    text.parse()
        .unwrap_or_else(|_| panic!("{what}: not a number: {text:?}"))
}

impl Playlist {
    /// Reads `text`, panicking at the first thing that is not a well-formed media playlist.
    pub fn parse(text: &str) -> Playlist {
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("#EXTM3U"), "the first line");
        let mut playlist = Playlist::default();
        let mut current = Segment::default();
        let mut pending_extinf: Option<f64> = None;
        for line in lines {
            if let Some(duration) = pending_extinf.take() {
                assert!(
                    !line.starts_with('#') && !line.is_empty(),
                    "a URI after EXTINF: {line}"
                );
                current.complete = Some((duration, line.to_string()));
                playlist.close(&mut current);
                continue;
            }
            let (tag, value) = line.split_once(':').unwrap_or((line, ""));
            match tag {
                "#EXT-X-VERSION" => assert!(number::<u32>(value, tag) >= 3),
                "#EXT-X-TARGETDURATION" => playlist.target_duration = number(value, tag),
                "#EXT-X-MEDIA-SEQUENCE" => playlist.media_sequence = number(value, tag),
                "#EXT-X-DISCONTINUITY-SEQUENCE" => {
                    playlist.discontinuity_sequence = number(value, tag)
                }
                "#EXT-X-INDEPENDENT-SEGMENTS" => playlist.independent_segments = true,
                "#EXT-X-ENDLIST" => playlist.endlist = true,
                "#EXT-X-DISCONTINUITY" => current.discontinuity = true,
                "#EXT-X-PROGRAM-DATE-TIME" => {
                    assert!(value.ends_with('Z') && value.contains('T'), "{line}");
                    current.program_date_time = Some(value.to_string());
                }
                "#EXT-X-MAP" => current.map = Some(attributes(value)["URI"].clone()),
                "#EXT-X-SERVER-CONTROL" => {
                    let a = attributes(value);
                    playlist.can_block_reload =
                        a.get("CAN-BLOCK-RELOAD").map(String::as_str) == Some("YES");
                    playlist.part_hold_back = a.get("PART-HOLD-BACK").map(|v| number(v, tag));
                }
                "#EXT-X-PART-INF" => {
                    playlist.part_target = Some(number(&attributes(value)["PART-TARGET"], tag))
                }
                "#EXT-X-PART" => {
                    let a = attributes(value);
                    current.parts.push(Part {
                        duration: number(&a["DURATION"], tag),
                        uri: a["URI"].clone(),
                        independent: a.get("INDEPENDENT").map(String::as_str) == Some("YES"),
                    });
                }
                "#EXT-X-PRELOAD-HINT" => {
                    let a = attributes(value);
                    assert_eq!(a["TYPE"], "PART", "{line}");
                    playlist.preload_hint = Some(a["URI"].clone());
                }
                "#EXTINF" => {
                    let duration = value.strip_suffix(',').unwrap_or_else(|| panic!("{line}"));
                    pending_extinf = Some(number(duration, tag));
                }
                _ => panic!("a line this reader does not know: {line:?}"),
            }
        }
        assert!(pending_extinf.is_none(), "EXTINF without a URI");
        if !current.parts.is_empty() {
            playlist.close(&mut current);
        }
        playlist.check();
        playlist
    }

    fn close(&mut self, segment: &mut Segment) {
        segment.seq = self.media_sequence + self.segments.len() as u64;
        self.segments.push(std::mem::take(segment));
    }

    /// The numbers the specification ties together.
    fn check(&self) {
        assert!(self.target_duration >= 1, "a target duration");
        for segment in &self.segments {
            if let Some((duration, _)) = &segment.complete {
                assert!(
                    duration.round() as u64 <= self.target_duration,
                    "EXTINF {duration} over the target duration {}",
                    self.target_duration
                );
            }
            for part in &segment.parts {
                let target = self.part_target.expect("PART-INF before parts");
                assert!(
                    part.duration <= target,
                    "part {part:?} over PART-TARGET {target}"
                );
            }
        }
        if let Some(target) = self.part_target {
            let hold_back = self.part_hold_back.expect("PART-HOLD-BACK with parts");
            assert!(
                hold_back >= 3.0 * target - 1e-9,
                "PART-HOLD-BACK {hold_back} < 3 × {target}"
            );
        }
    }

    /// The segment with media sequence number `seq`, if listed.
    pub fn segment(&self, seq: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.seq == seq)
    }

    /// The newest segment listed (complete or not).
    pub fn last(&self) -> &Segment {
        self.segments.last().expect("a segment")
    }
}
