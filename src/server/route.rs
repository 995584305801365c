//! What a request asks for, read once from its method and path: the one place where the shape of a
//! path is known. The router dispatches on it, the HTTP/1.1 front uses it to pick the requests it
//! answers without the router, and the token check takes from it the channel a request is about.
//!
//! A path is matched under the base path, one part at a time, before anything is decoded: the
//! parts stay as they came (percent-encoded), and decoding and checking a channel name are
//! [`crate::protocol`]'s job, done by the handler in its own order (name, reserved name, channel,
//! then seq), so that a missing channel is `404` whatever its seq looks like.
//!
//! A new route is a new variant here, matched in [`Route::parse_rest`] before the more general
//! shapes, and an arm in the router's dispatch. A path of one or two parts already reaches the
//! dispatch (see [`PATTERNS`]), so nothing else changes for it; and since the HTTP/1.1 front
//! answers only [`Route::Subscribe`] with a real seq itself, a new route is served the same way
//! over every transport from the start.

use http::Method;

pub(crate) use super::live::Format;
use crate::media::fmp4::Track;
use crate::protocol::{Error, SeqParam};

/// The axum path patterns, after the base path, that send a request to the dispatch: every path
/// of one or two non-empty parts. Which of them is a route, and with which methods, is
/// [`Route::parse`]'s call; an embedder's static routes win over these (axum prefers a fixed part
/// to a parameter), so a route registered for `/{ch}/live` is taken before the dispatch sees it.
pub(super) const PATTERNS: [&str; 2] = ["{name}", "{name}/{seq}"];

/// The channel API's names (reserved: no channel can take them).
const CHANNELS: &str = "_channels";
const EVENTS: &str = "_events";
const WATCH: &str = "_watch";

/// What a channel's outputs are called, after its name (read with GET or HEAD; any other method
/// treats them as a seq, an invalid one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Live(Format),
    Watch,
    Player(Piece),
}

/// What an LL-HLS or DASH player fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// `ll.m3u8`.
    LowLatency,
    /// `manifest.mpd`.
    Dash,
    /// `init.mp4`.
    Init,
    /// `{seq}.m4s` (a segment) or `{seq}.{part}.m4s`.
    Fmp4 { seq: u64, part: Option<u64> },
    /// `video-init.mp4` or `audio-init.mp4`: one track's init segment (DASH).
    TrackInit(Track),
    /// `video-{time}.m4s` or `audio-{time}.m4s`: one track's segment that starts at `time` on the
    /// 90 kHz clock (DASH's `$Time$`).
    TrackMedia { track: Track, time: u64 },
}

fn output(part: &str) -> Option<Output> {
    Some(match part {
        "live" => Output::Live(Format::Segments),
        "live.mp4" => Output::Live(Format::Fmp4),
        "watch" => Output::Watch,
        "ll.m3u8" => Output::Player(Piece::LowLatency),
        "manifest.mpd" => Output::Player(Piece::Dash),
        "init.mp4" => Output::Player(Piece::Init),
        "video-init.mp4" => Output::Player(Piece::TrackInit(Track::Video)),
        "audio-init.mp4" => Output::Player(Piece::TrackInit(Track::Audio)),
        _ => {
            let stem = part.strip_suffix(".m4s")?;
            if let Some(piece) = track_media(stem) {
                return Some(Output::Player(piece));
            }
            let (seq, part) = match stem.split_once('.') {
                Some((seq, part)) => (seq, Some(number(part)?)),
                None => (stem, None),
            };
            Output::Player(Piece::Fmp4 {
                seq: number(seq)?,
                part,
            })
        }
    })
}

/// `video-{time}` or `audio-{time}`.
fn track_media(stem: &str) -> Option<Piece> {
    let (track, time) = stem.split_once('-')?;
    let track = match track {
        "video" => Track::Video,
        "audio" => Track::Audio,
        _ => return None,
    };
    Some(Piece::TrackMedia {
        track,
        time: number(time)?,
    })
}

/// A plain decimal number (no sign, no spaces).
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl Output {
    fn route(self, name: &str) -> Route<'_> {
        match self {
            Output::Live(format) => Route::Live { name, format },
            Output::Watch => Route::Watch { name },
            Output::Player(piece) => Route::Player { name, piece },
        }
    }
}

/// A file of a channel's HLS output ([`super::hls`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HlsFile {
    /// `index.m3u8`: the media playlist.
    Playlist,
    /// `{seq}.ts`: one complete segment (the seq may be invalid: answered `400 Invalid idx`).
    Segment(Seq),
}

impl HlsFile {
    fn parse(part: &str) -> Option<HlsFile> {
        if part == "index.m3u8" {
            return Some(HlsFile::Playlist);
        }
        let seq = part.strip_suffix(".ts")?;
        Some(HlsFile::Segment(Seq::parse(seq)))
    }
}

/// The `{seq}` part of a segment's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seq {
    /// `next`: the write head (only a GET reads it; a POST or DELETE of it is an invalid seq).
    Next,
    /// A number or `-N`.
    Param(SeqParam),
    /// Anything else: answered `400 Invalid idx`, after the channel is found.
    Invalid,
}

impl Seq {
    fn parse(raw: &str) -> Seq {
        if raw == "next" {
            return Seq::Next;
        }
        SeqParam::parse(raw).map_or(Seq::Invalid, Seq::Param)
    }

    /// The seq as a number or `-N`; `next` and anything else are an invalid seq.
    pub(crate) fn param(self) -> Result<SeqParam, Error> {
        match self {
            Seq::Param(param) => Ok(param),
            Seq::Next | Seq::Invalid => Err(Error::InvalidSeq),
        }
    }
}

/// What a request asks for. `name` is always the path's first part after the base path, raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `POST {base}{name}`: create the channel, or confirm that it exists.
    CreateChannel { name: &'a str },
    /// `DELETE {base}{name}`: delete the channel.
    DeleteChannel { name: &'a str },
    /// `GET` or `HEAD {base}{name}/{seq}`: a segment, or the write head for `next`.
    Subscribe { name: &'a str, seq: Seq },
    /// `GET` or `HEAD {base}{name}/live` (or `live.mp4`): the channel as one continuous, lossy
    /// stream.
    Live { name: &'a str, format: Format },
    /// `GET` or `HEAD {base}{name}/index.m3u8` or `{base}{name}/{seq}.ts`: the channel as HLS.
    Hls { name: &'a str, file: HlsFile },
    /// `OPTIONS` of an HLS file: a browser's CORS preflight.
    Preflight { name: &'a str },
    /// `GET` or `HEAD {base}{name}/watch`: the player page.
    Watch { name: &'a str },
    /// `GET` or `HEAD {base}{name}/{piece}`: a playlist, manifest or piece of media for LL-HLS
    /// or DASH players.
    Player { name: &'a str, piece: Piece },
    /// `GET` or `HEAD {base}_watch`: the channel index page.
    WatchIndex,
    /// `POST {base}{name}/{seq}`: publish a segment.
    Publish { name: &'a str, seq: Seq },
    /// `DELETE {base}{name}/{seq}`: close a segment.
    DeleteSegment { name: &'a str, seq: Seq },
    /// `GET` or `HEAD {base}_channels`: every channel's figures.
    Channels,
    /// `GET` or `HEAD {base}_channels/{channel}`: one channel's figures.
    ChannelInfo { channel: &'a str },
    /// `GET` or `HEAD {base}_events`: the server's changes as Server-Sent Events.
    Events,
    /// A path of ours with a method it does not take: `405` with these methods in `Allow`.
    MethodNotAllowed { name: &'a str, allow: &'static str },
    /// Under the base path, but no route of ours: an embedder's, or a `404`.
    Unknown { name: &'a str },
    /// Not under the base path.
    Outside,
}

impl<'a> Route<'a> {
    /// The route of `method` on `path`, under the (normalized) base path `base`.
    pub(crate) fn parse(method: &Method, path: &'a str, base: &str) -> Route<'a> {
        match path.strip_prefix(base) {
            Some(rest) => Route::parse_rest(method, rest),
            None => Route::Outside,
        }
    }

    /// [`Route::parse`] for the part of the path after the base path.
    pub(crate) fn parse_rest(method: &Method, rest: &'a str) -> Route<'a> {
        let (name, seq) = match rest.split_once('/') {
            None => (rest, None),
            Some((name, seq)) => (name, Some(seq)),
        };
        if name.is_empty() {
            return Route::Unknown { name };
        }
        if let Some(route) = Route::parse_api(method, name, seq) {
            return route;
        }
        if let Some(part) = seq
            && let Some(route) = Route::parse_hls(method, name, part)
        {
            return route;
        }
        match seq {
            None => match *method {
                Method::POST => Route::CreateChannel { name },
                Method::DELETE => Route::DeleteChannel { name },
                _ => Route::MethodNotAllowed {
                    name,
                    allow: "POST,DELETE",
                },
            },
            Some(seq) if seq.is_empty() || seq.contains('/') => Route::Unknown { name },
            Some(part) => {
                let reading = matches!(*method, Method::GET | Method::HEAD);
                if let Some(output) = output(part).filter(|_| reading) {
                    return output.route(name);
                }
                let seq = Seq::parse(part);
                match *method {
                    Method::GET | Method::HEAD => Route::Subscribe { name, seq },
                    Method::POST => Route::Publish { name, seq },
                    Method::DELETE => Route::DeleteSegment { name, seq },
                    _ => Route::MethodNotAllowed {
                        name,
                        allow: "GET,HEAD,POST,DELETE",
                    },
                }
            }
        }
    }

    /// The HLS files of a channel, read with GET or HEAD, and OPTIONS for a browser's preflight
    /// (any other method treats them as a seq, an invalid one).
    fn parse_hls(method: &Method, name: &'a str, part: &'a str) -> Option<Route<'a>> {
        let file = HlsFile::parse(part)?;
        match *method {
            Method::GET | Method::HEAD => Some(Route::Hls { name, file }),
            Method::OPTIONS => Some(Route::Preflight { name }),
            _ => None,
        }
    }

    /// The routes of the channel API, under reserved names (which the channel routes refuse).
    fn parse_api(method: &Method, name: &'a str, rest: Option<&'a str>) -> Option<Route<'a>> {
        let route = match (name, rest) {
            (CHANNELS, None) => Route::Channels,
            (CHANNELS, Some(channel)) if !channel.is_empty() && !channel.contains('/') => {
                Route::ChannelInfo { channel }
            }
            (EVENTS, None) => Route::Events,
            (WATCH, None) => Route::WatchIndex,
            _ => return None,
        };
        Some(match *method {
            Method::GET | Method::HEAD => route,
            _ => Route::MethodNotAllowed {
                name,
                allow: "GET,HEAD",
            },
        })
    }

    /// The raw first part of the path after the base path (the channel the request is about, for
    /// the routes of a channel); empty outside the base path.
    pub(crate) fn name(&self) -> &'a str {
        match *self {
            Route::CreateChannel { name }
            | Route::DeleteChannel { name }
            | Route::Subscribe { name, .. }
            | Route::Live { name, .. }
            | Route::Hls { name, .. }
            | Route::Preflight { name }
            | Route::Watch { name }
            | Route::Player { name, .. }
            | Route::Publish { name, .. }
            | Route::DeleteSegment { name, .. }
            | Route::MethodNotAllowed { name, .. }
            | Route::Unknown { name } => name,
            Route::Channels | Route::ChannelInfo { .. } => CHANNELS,
            Route::Events => EVENTS,
            Route::WatchIndex => WATCH,
            Route::Outside => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Route<'_> {
        Route::parse(&method, path, "/base/")
    }

    #[test]
    fn every_shape_under_the_base_path() {
        use Route::*;
        let at = |n| Seq::Param(SeqParam::Index(n));
        assert_eq!(
            route(Method::POST, "/base/ch"),
            CreateChannel { name: "ch" }
        );
        assert_eq!(
            route(Method::DELETE, "/base/a%2Fb"),
            DeleteChannel { name: "a%2Fb" }
        );
        assert_eq!(
            route(Method::GET, "/base/ch/3"),
            Subscribe {
                name: "ch",
                seq: at(3)
            }
        );
        assert_eq!(
            route(Method::HEAD, "/base/ch/next"),
            Subscribe {
                name: "ch",
                seq: Seq::Next
            }
        );
        assert_eq!(
            route(Method::GET, "/base/ch/-1"),
            Subscribe {
                name: "ch",
                seq: Seq::Param(SeqParam::Relative(1))
            }
        );
        assert_eq!(
            route(Method::GET, "/base/ch/live"),
            Route::Live {
                name: "ch",
                format: Format::Segments
            }
        );
        assert_eq!(
            route(Method::GET, "/base/ch/lively"),
            Subscribe {
                name: "ch",
                seq: Seq::Invalid
            }
        );
        assert_eq!(
            route(Method::POST, "/base/ch/0"),
            Publish {
                name: "ch",
                seq: at(0)
            }
        );
        assert_eq!(
            route(Method::DELETE, "/base/ch/next"),
            DeleteSegment {
                name: "ch",
                seq: Seq::Next
            }
        );
        assert_eq!(
            route(Method::GET, "/base/ch"),
            MethodNotAllowed {
                name: "ch",
                allow: "POST,DELETE"
            }
        );
        assert_eq!(
            route(Method::PUT, "/base/ch/0"),
            MethodNotAllowed {
                name: "ch",
                allow: "GET,HEAD,POST,DELETE"
            }
        );
        for unknown in ["/base/", "/base//3", "/base/ch/", "/base/ch/0/x"] {
            assert!(
                matches!(route(Method::GET, unknown), Unknown { .. }),
                "{unknown}"
            );
        }
        assert_eq!(route(Method::GET, "/base/ch/0/x").name(), "ch");
    }

    #[test]
    fn hls_files_are_read_or_preflighted_and_otherwise_invalid_seqs() {
        use Route::*;
        assert_eq!(
            route(Method::GET, "/base/ch/index.m3u8"),
            Hls {
                name: "ch",
                file: HlsFile::Playlist
            }
        );
        assert_eq!(
            route(Method::HEAD, "/base/ch/12.ts"),
            Hls {
                name: "ch",
                file: HlsFile::Segment(Seq::Param(SeqParam::Index(12)))
            }
        );
        for bad in [
            "/base/ch/-1.ts",
            "/base/ch/x.ts",
            "/base/ch/.ts",
            "/base/ch/next.ts",
        ] {
            let Hls {
                file: HlsFile::Segment(seq),
                ..
            } = route(Method::GET, bad)
            else {
                panic!("{bad}: a segment");
            };
            assert!(seq.param().and_then(SeqParam::literal).is_err(), "{bad}");
        }
        assert_eq!(
            route(Method::OPTIONS, "/base/ch/index.m3u8"),
            Preflight { name: "ch" }
        );
        assert_eq!(route(Method::OPTIONS, "/base/ch/3.ts").name(), "ch");
        assert_eq!(
            route(Method::POST, "/base/ch/index.m3u8"),
            Publish {
                name: "ch",
                seq: Seq::Invalid
            }
        );
        assert!(matches!(
            route(Method::OPTIONS, "/base/ch/0"),
            MethodNotAllowed { .. }
        ));
        assert!(matches!(
            route(Method::GET, "/base/ch/index.m3u8x"),
            Subscribe {
                seq: Seq::Invalid,
                ..
            }
        ));
    }

    #[test]
    fn dash_pieces_name_a_track_and_a_time() {
        use Route::*;
        let player = |path: &str| match route(Method::GET, path) {
            Player { name: "ch", piece } => Some(piece),
            _ => None,
        };
        assert_eq!(player("/base/ch/manifest.mpd"), Some(Piece::Dash));
        assert_eq!(
            player("/base/ch/audio-init.mp4"),
            Some(Piece::TrackInit(Track::Audio))
        );
        assert_eq!(
            player("/base/ch/video-990000.m4s"),
            Some(Piece::TrackMedia {
                track: Track::Video,
                time: 990000
            })
        );
        for not_ours in ["video-.m4s", "video-x.m4s", "text-1.m4s", "video-1.2.m4s"] {
            assert_eq!(player(&format!("/base/ch/{not_ours}")), None, "{not_ours}");
        }
    }

    #[test]
    fn the_channel_api_is_read_only_and_about_its_reserved_name() {
        use Route::*;
        assert_eq!(route(Method::GET, "/base/_channels"), Channels);
        assert_eq!(route(Method::HEAD, "/base/_events"), Events);
        assert_eq!(
            route(Method::GET, "/base/_channels/a%20b"),
            ChannelInfo { channel: "a%20b" }
        );
        // What a token must allow is judged by the first part: the reserved name (admin).
        assert_eq!(
            route(Method::GET, "/base/_channels/cam").name(),
            "_channels"
        );
        assert_eq!(route(Method::GET, "/base/_events").name(), "_events");
        for (method, path) in [
            (Method::POST, "/base/_channels"),
            (Method::DELETE, "/base/_channels/cam"),
            (Method::POST, "/base/_events"),
        ] {
            assert!(
                matches!(
                    route(method.clone(), path),
                    MethodNotAllowed {
                        allow: "GET,HEAD",
                        ..
                    }
                ),
                "{method} {path}"
            );
        }
        for unknown in ["/base/_channels/", "/base/_channels/a/b"] {
            assert!(
                matches!(route(Method::GET, unknown), Unknown { .. }),
                "{unknown}"
            );
        }
        // `/_events/x` is the old shape: a segment of a reserved channel, refused as such.
        assert!(matches!(
            route(Method::GET, "/base/_events/0"),
            Subscribe { .. }
        ));
        assert_eq!(route(Method::GET, "/ch/0"), Outside);
        assert_eq!(route(Method::GET, "/base"), Outside);
    }

    #[test]
    fn only_numbers_and_minus_n_are_seq_params() {
        assert_eq!(Seq::parse("7").param().ok(), Some(SeqParam::Index(7)));
        for bad in ["next", "abc", "1e3", "-", ""] {
            assert!(Seq::parse(bad).param().is_err(), "{bad}");
        }
    }
}
