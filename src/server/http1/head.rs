//! Request heads for the HTTP/1.1 front: parsed straight from the read buffer with httparse, and
//! sorted into what the front answers itself (a subscriber's or an LL-HLS or DASH player's plain
//! GET, by its [`Route`]), what it
//! runs through the router (other bodiless GETs and DELETEs), what it refuses at once, and what
//! goes to hyper with its bytes.

use axum::body::Body;
use bytes::{Buf, BytesMut};
use http::{HeaderName, HeaderValue, Method, Request, Version};

use super::super::Server;
use super::super::route::{Piece, Route, Seq};

/// Headers parsed here per request; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;
/// What the next request head asks for.
#[allow(clippy::large_enum_variant)] // one at a time, moved straight into the router
pub(super) enum Head {
    /// A request this front answers through the router; `close` when the client asked to close
    /// afterwards.
    Routed { request: Request<Body>, close: bool },
    /// A subscriber's plain `GET /{channel}/{seq}` ([`plain_subscribe`]), which this front answers
    /// by calling the router's handler itself: the busiest request there is, spared the request
    /// object, the router's dispatch and its boxed futures. `name` is the raw channel part.
    Subscribe { name: String, seq: Seq, close: bool },
    /// An LL-HLS or DASH player's plain GET of a playlist, manifest or piece without a query
    /// ([`plain_subscribe`]): thousands of players each GET a part every quarter second, so this
    /// front calls the router's handler for it too.
    Player {
        name: String,
        piece: Piece,
        close: bool,
    },
    /// A request for hyper (its bytes are still in the buffer).
    Other,
    /// A request declaring a body too large for hyper ([`beyond_hyper`]): answered 413, closed.
    TooLarge,
    /// The client went away, sent half a head for too long, or the server is shutting down.
    Closed,
}

/// Parses the head at the front of `buf`, if complete (`None`: not yet), and takes it off if it is
/// one this front answers. Plain subscriber GETs to `server` come back as [`Head::Subscribe`].
pub(super) fn parse(buf: &mut BytesMut, server: &Server) -> Option<Head> {
    let (head, len) = parse_slice(buf, server)?;
    if len > 0 {
        buf.advance(len);
        if buf.is_empty() {
            // Free the head's memory while the request waits (often for a long time).
            *buf = BytesMut::new();
        }
    }
    Some(head)
}

/// [`parse`] for bytes in any buffer: the head and its length, 0 for [`Head::Other`] (whose bytes
/// all stay for hyper).
pub(super) fn parse_slice(buf: &[u8], server: &Server) -> Option<(Head, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some((Head::Other, 0)),
    };
    let declared = |h: &httparse::Header| h.name.eq_ignore_ascii_case("content-length");
    if head
        .headers
        .iter()
        .any(|h| declared(h) && beyond_hyper(h.value))
    {
        return Some((Head::TooLarge, len));
    }
    let method = match head.method {
        Some("GET") => Method::GET,
        Some("DELETE") => Method::DELETE,
        _ => return Some((Head::Other, 0)),
    };
    if head.version != Some(1) {
        return Some((Head::Other, 0));
    }
    let target = head.path.unwrap_or_default();
    let mut close = false;
    for h in head.headers.iter() {
        let is = |name: &str| h.name.eq_ignore_ascii_case(name);
        let takes_a_body = (is("content-length") && h.value != b"0") || is("transfer-encoding");
        if takes_a_body || is("expect") || is("upgrade") {
            return Some((Head::Other, 0));
        }
        if is("connection") {
            close |= has_token(h.value, b"close");
        }
    }
    // A relay's request is routed, where the relays it went through are read.
    let relayed = head
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case(crate::protocol::VIA));
    let direct = (method == Method::GET && !relayed && plain_path(target))
        .then(|| plain_subscribe(server, target))
        .flatten();
    let parsed = if let Some(direct) = direct {
        match direct {
            Direct::Subscribe(name, seq) => Head::Subscribe {
                name: name.to_string(),
                seq,
                close,
            },
            Direct::Player(name, piece) => Head::Player {
                name: name.to_string(),
                piece,
                close,
            },
        }
    } else {
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .version(Version::HTTP_11);
        for h in head.headers.iter() {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) else {
                return Some((Head::Other, 0));
            };
            request = request.header(name, value);
        }
        let Ok(request) = request.body(Body::empty()) else {
            return Some((Head::Other, 0));
        };
        Head::Routed { request, close }
    };
    Some((parsed, len))
}

/// A GET this front answers itself, by calling the router's handler for it.
enum Direct<'a> {
    Subscribe(&'a str, Seq),
    Player(&'a str, Piece),
}

/// The channel and seq, or the player's piece, of a GET of `path` (which has no query) that this
/// front answers itself, by calling the router's handler for it: a [`Route::Subscribe`] with a
/// real seq (a number, `-N` or `next`), or a [`Route::Player`], on a server where nothing else may
/// claim the path first. Anything else goes through the router, which answers it as it does over
/// every other transport: a seq that is none (it may be a route that came after this front was
/// written), a token to check (the check runs before routing), or an embedder's routes (one may
/// take a path shaped like a segment's).
fn plain_subscribe<'a>(server: &Server, path: &'a str) -> Option<Direct<'a>> {
    if server.verifier().is_some() || server.extra_routes().is_some() {
        return None;
    }
    match Route::parse(&Method::GET, path, server.base_path()) {
        Route::Subscribe { name, seq } if seq != Seq::Invalid => Some(Direct::Subscribe(name, seq)),
        Route::Player { name, piece } => Some(Direct::Player(name, piece)),
        _ => None,
    }
}

/// Whether a `content-length` declares more bytes than hyper represents (2^64 − 3), for which it
/// would answer 431 "header fields too large", which is not what is wrong. No route takes such a
/// body. (Values that are no number at all stay hyper's, which answers them 400; so does a
/// connection already handed to hyper, which keeps its 431.)
fn beyond_hyper(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|v| {
        let v = v.trim_ascii();
        !v.is_empty()
            && v.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .is_none_or(|n| n > u64::MAX - 2)
    })
}

/// An origin-form path made only of characters every URI parser takes as they are (anything
/// else goes through the router, which parses the URI properly). httparse has already checked
/// the header names and values against the same rules `http` applies.
fn plain_path(target: &str) -> bool {
    target.starts_with('/')
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b))
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
pub(super) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose GETs all go through the router (tokens are checked before routing).
    fn guarded() -> Server {
        Server::new(crate::server::Config {
            auth_secret: Some(
                crate::auth::Secret::new("a test secret of 32 bytes, or so").unwrap(),
            ),
            ..Default::default()
        })
    }

    fn parsed(head: &[u8]) -> (Option<Head>, BytesMut) {
        let mut buf = BytesMut::from(head);
        (parse(&mut buf, &guarded()), buf)
    }

    #[test]
    fn bodiless_gets_and_deletes_are_taken_and_consumed() {
        let (p, rest) = parsed(b"GET /ch/3 HTTP/1.1\r\nHost: x\r\n\r\nGET /ch/4");
        let Some(Head::Routed { request, close }) = p else {
            panic!("not taken")
        };
        assert_eq!(request.uri().path(), "/ch/3");
        assert_eq!(request.headers()["host"], "x");
        assert!(!close);
        assert_eq!(&rest[..], b"GET /ch/4");
        let (p, rest) = parsed(
            b"DELETE /ch HTTP/1.1\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(matches!(p, Some(Head::Routed { close: true, .. })));
        assert!(rest.is_empty());
    }

    #[test]
    fn only_plain_subscriber_and_player_gets_skip_the_router() {
        use crate::server::Config;
        let kind = |server: &Server, head: &str| {
            let mut buf = BytesMut::from(format!("{head} HTTP/1.1\r\nHost: x\r\n\r\n").as_str());
            match parse(&mut buf, server) {
                Some(Head::Subscribe {
                    name,
                    seq,
                    close: false,
                }) => format!("direct {name} {seq:?}"),
                Some(Head::Player {
                    name,
                    piece,
                    close: false,
                }) => format!("player {name} {piece:?}"),
                Some(Head::Routed { .. }) => "router".to_string(),
                _ => "other".to_string(),
            }
        };
        let server = Server::new(Config::default());
        assert_eq!(kind(&server, "GET /ch/3"), "direct ch Param(Index(3))");
        assert_eq!(
            kind(&server, "GET /a%20b/-1"),
            "direct a%20b Param(Relative(1))"
        );
        assert_eq!(kind(&server, "GET /ch/next"), "direct ch Next");
        assert_eq!(
            kind(&server, "GET /ch/12.3.m4s"),
            "player ch Fmp4 { seq: 12, part: Some(3) }"
        );
        assert_eq!(kind(&server, "GET /ch/ll.m3u8"), "player ch LowLatency");
        for routed in [
            // Not a seq: a route this front does not answer itself (`/{ch}/live`), or an
            // embedder's.
            "GET /ch/live",
            "GET /ch/index.m3u8",
            "GET /ch/3.ts",
            "GET /ch/later",
            "GET /ch/abc",
            "GET /ch",
            "GET /ch/",
            "GET /ch/next/",
            "GET /ch/3/4",
            "GET //3",
            "GET /ch/3?x=1",
            // A query (a blocking playlist reload, an init segment's generation) is the router's.
            "GET /ch/ll.m3u8?_HLS_msn=3",
            "GET /ch/init.mp4?g=1",
            "GET http://x/ch/3",
            "GET /ch/3{",
            "DELETE /ch/3",
        ] {
            assert_eq!(kind(&server, routed), "router", "{routed}");
        }
        let live = Server::new(Config {
            base_path: "/live/".into(),
            ..Config::default()
        });
        assert_eq!(kind(&live, "GET /live/ch/0"), "direct ch Param(Index(0))");
        assert_eq!(kind(&live, "GET /ch/0"), "router");
        // Tokens are checked before routing: with auth on, everything goes through the router.
        assert_eq!(kind(&guarded(), "GET /ch/3"), "router");
        assert_eq!(kind(&guarded(), "GET /ch/1.0.m4s"), "router");
        // An embedder's route may take any path: then too.
        let extended = Server::builder(Config::default())
            .routes(axum::Router::new())
            .build();
        assert_eq!(kind(&extended, "GET /ch/3"), "router");
    }

    #[test]
    fn everything_else_goes_to_hyper_untouched() {
        for head in [
            &b"POST /ch/0 HTTP/1.1\r\n\r\n"[..],
            b"HEAD /ch/0 HTTP/1.1\r\n\r\n",
            b"GET /ch/0 HTTP/1.0\r\n\r\n",
            b"GET /ch/0 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /ch/0 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /ch/0 HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /ch/0 HTTP/9.9\r\n\r\n",
            b"\x00\x01 not http\r\n\r\n",
        ] {
            let (p, rest) = parsed(head);
            assert!(
                matches!(p, Some(Head::Other)),
                "{:?}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(&rest[..], head, "bytes kept for hyper");
        }
        assert!(parsed(b"GET /ch/0 HTTP/1.1\r\nHo").0.is_none());
    }
}
