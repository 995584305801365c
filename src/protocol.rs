//! The wire vocabulary shared by servers and clients: header names, sequence-number parsing, channel
//! name rules and the library's error type.
//!
//! Everything here is pure (no I/O), so both the server handlers and the in-process publisher and
//! subscriber use the same rules, and the parsing can be unit-tested and fuzzed on its own.

use http::StatusCode;

/// Resolved seq of a GET or POST (every 200 GET and 200 POST carries it).
pub const SEQ: &str = "lp-trickle-seq";
/// The channel's write head (`nextWrite`); lets a client that got 470 jump to the live edge.
pub const LATEST: &str = "lp-trickle-latest";
/// End of stream: the channel is gone. Clients test presence, not value.
pub const CLOSED: &str = "lp-trickle-closed";
/// Bytes of the segment already buffered when the response headers were sent.
pub const SIZE: &str = "lp-trickle-size";
/// A restarted publisher: close every segment below the one this POST writes.
pub const RESET: &str = "lp-trickle-reset";
/// MIME type for a channel created by `POST /{name}`.
pub const EXPECT_CONTENT: &str = "expect-content";
/// Ours, not the reference's: the relays a request went through, by the instance ids of their
/// servers, comma-separated (an edge asking its origin adds itself to what its reader's request
/// carried). A server that finds itself there, or too many, answers `508`: a loop.
pub const VIA: &str = "lp-trickle-via";
/// Status code for "the channel exists but that seq is not held".
pub const STATUS_NOT_HELD: u16 = 470;
/// Largest seq magnitude accepted (2^53 − 1, so seqs survive a round trip through JSON numbers).
pub const MAX_SEQ: u64 = (1 << 53) - 1;
/// Largest seq a POST may write: writing seq moves the write head to seq + 1, and every write head
/// must itself be a seq that a GET accepts (a client jumps to `Lp-Trickle-Latest` with a GET).
pub const MAX_WRITE_SEQ: u64 = MAX_SEQ - 1;

/// A parsed `{seq}` path segment, before it is resolved against a channel's write head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqParam {
    /// `seq >= 0`: that segment.
    Index(u64),
    /// `-N` (N >= 1): relative to the write head; `-1` is the next segment, `-2` the current one.
    Relative(u64),
}

impl SeqParam {
    /// Parses a decimal integer with an optional sign and a magnitude of at most [`MAX_SEQ`].
    /// `+0` and `-0` both mean 0. Anything else is [`Error::InvalidSeq`].
    pub fn parse(s: &str) -> Result<SeqParam, Error> {
        let (negative, digits) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidSeq);
        }
        let n: u64 = digits.parse().map_err(|_| Error::InvalidSeq)?;
        if n > MAX_SEQ {
            return Err(Error::InvalidSeq);
        }
        Ok(if negative && n > 0 {
            SeqParam::Relative(n)
        } else {
            SeqParam::Index(n)
        })
    }

    /// Resolves against `next_write` the way a GET does: `-N` is `next_write − N + 1`, clamped at 0.
    pub fn resolve_for_read(self, next_write: u64) -> u64 {
        match self {
            SeqParam::Index(n) => n,
            SeqParam::Relative(n) => (next_write + 1).saturating_sub(n),
        }
    }

    /// Resolves the way a POST does: `-1` is `next_write`; other negatives, and seqs above
    /// [`MAX_WRITE_SEQ`], are invalid.
    pub fn resolve_for_write(self, next_write: u64) -> Result<u64, Error> {
        let seq = match self {
            SeqParam::Index(n) => n,
            SeqParam::Relative(1) => next_write,
            SeqParam::Relative(_) => return Err(Error::InvalidSeq),
        };
        if seq > MAX_WRITE_SEQ {
            return Err(Error::InvalidSeq);
        }
        Ok(seq)
    }

    /// Whether a POST may name this seq on some channel (every rule of [`Self::resolve_for_write`]
    /// that does not depend on the write head), so that a refused POST creates no channel.
    pub fn writable(self) -> Result<SeqParam, Error> {
        self.resolve_for_write(0).map(|_| self)
    }

    /// The literal seq for DELETE: negatives are invalid.
    pub fn literal(self) -> Result<u64, Error> {
        match self {
            SeqParam::Index(n) => Ok(n),
            SeqParam::Relative(_) => Err(Error::InvalidSeq),
        }
    }
}

/// Checks a percent-decoded channel name: UTF-8 (guaranteed by `&str`), not empty, no control
/// characters, at most `max_bytes` bytes.
pub fn validate_name(name: &str, max_bytes: usize) -> Result<(), Error> {
    if name.is_empty() || name.len() > max_bytes || name.chars().any(char::is_control) {
        return Err(Error::InvalidName);
    }
    Ok(())
}

/// Names starting with `_` belong to the server (`_changes`): readable, never written or deleted
/// from outside, never swept.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with('_')
}

/// Percent-decodes one raw path segment into a channel name.
pub fn decode_name(raw: &str) -> Result<std::borrow::Cow<'_, str>, Error> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Error::InvalidName)
}

/// Percent-encodes a channel name into one path segment (the inverse of [`decode_name`]): every
/// byte but letters, digits and `-._~`.
pub fn encode_name(name: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

/// Everything that can go wrong in the library, with the HTTP status each maps to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Stream not found")]
    StreamNotFound,
    /// The channel was closed (deleted, swept or the server stopped).
    #[error("End of stream")]
    EndOfStream,
    /// The channel exists but does not hold `seq`; `latest` is its write head.
    #[error("Entry not found (seq {seq}, latest {latest})")]
    SequenceNonexistent { seq: u64, latest: u64 },
    #[error("Invalid idx")]
    InvalidSeq,
    #[error("Invalid channel name")]
    InvalidName,
    #[error("Reserved channel name")]
    ReservedName,
    #[error("Too many channels")]
    TooManyChannels,
    #[error("Segment larger than {limit} bytes")]
    SegmentTooLarge { limit: u64 },
    /// The server holds as many segment bytes as its memory budget allows; the segment being
    /// written failed.
    #[error("Server buffer budget exhausted ({buffered} bytes buffered, limit {limit})")]
    BudgetExhausted { buffered: u64, limit: u64 },
    /// Another publisher started writing this seq before this one sent its first byte.
    #[error("Superseded by a newer publisher of this segment")]
    Superseded,
    /// The segment was closed by `DELETE /{name}/{seq}` or `Lp-Trickle-Reset` while being written.
    #[error("Segment closed while it was being written")]
    SegmentClosed,
    /// The segment's publisher failed; its bytes are incomplete.
    #[error("Segment failed: its publisher ended abnormally")]
    SegmentFailed,
    #[error("Entry already exists for this sequence")]
    EntryExists,
    #[error("Nonexistent segment")]
    NonexistentSegment,
    #[error("Timed out waiting for data")]
    Timeout,
    /// The channel is not here, and where it may be (an origin, the registry) could not be asked
    /// just now: try again shortly (never a `404`, which clients take as final).
    #[error("Origin unavailable: {0}")]
    Unavailable(String),
    /// A hook of the embedding application refused the request (with a 4xx or 5xx status).
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Refused { status, .. } => *status,
            Error::StreamNotFound => StatusCode::NOT_FOUND,
            Error::EndOfStream => StatusCode::OK,
            Error::SequenceNonexistent { .. } | Error::SegmentFailed => {
                StatusCode::from_u16(STATUS_NOT_HELD).expect("470 is a valid status")
            }
            Error::InvalidSeq
            | Error::InvalidName
            | Error::NonexistentSegment
            | Error::EntryExists
            | Error::Io(_) => StatusCode::BAD_REQUEST,
            Error::ReservedName => StatusCode::FORBIDDEN,
            Error::TooManyChannels | Error::BudgetExhausted { .. } | Error::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::SegmentTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Superseded | Error::SegmentClosed => StatusCode::CONFLICT,
            Error::Timeout => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_signed_seqs() {
        assert_eq!(SeqParam::parse("0").unwrap(), SeqParam::Index(0));
        assert_eq!(SeqParam::parse("+0").unwrap(), SeqParam::Index(0));
        assert_eq!(SeqParam::parse("-0").unwrap(), SeqParam::Index(0));
        assert_eq!(SeqParam::parse("007").unwrap(), SeqParam::Index(7));
        assert_eq!(SeqParam::parse("-1").unwrap(), SeqParam::Relative(1));
        assert_eq!(SeqParam::parse("-42").unwrap(), SeqParam::Relative(42));
        assert_eq!(
            SeqParam::parse("9007199254740991").unwrap(),
            SeqParam::Index(MAX_SEQ)
        );
        assert_eq!(
            SeqParam::parse("-9007199254740991").unwrap(),
            SeqParam::Relative(MAX_SEQ)
        );
    }

    #[test]
    fn rejects_garbage_and_huge_seqs() {
        for bad in [
            "",
            "+",
            "-",
            "abc",
            "1.5",
            " 1",
            "1 ",
            "0x10",
            "--1",
            "+-1",
            "9007199254740992",
            "-9007199254740992",
            "-9999999999999999999",
            "99999999999999999999999999",
            "next",
            "１",
        ] {
            assert!(SeqParam::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn resolves_relative_reads_against_the_write_head() {
        let r = |n| SeqParam::Relative(n);
        assert_eq!(r(1).resolve_for_read(0), 0);
        assert_eq!(r(2).resolve_for_read(0), 0);
        assert_eq!(r(1).resolve_for_read(4), 4);
        assert_eq!(r(2).resolve_for_read(4), 3);
        assert_eq!(r(3).resolve_for_read(4), 2);
        assert_eq!(r(4).resolve_for_read(4), 1);
        assert_eq!(r(MAX_SEQ).resolve_for_read(4), 0);
        assert_eq!(SeqParam::Index(9).resolve_for_read(4), 9);
    }

    #[test]
    fn writes_accept_only_minus_one() {
        assert_eq!(SeqParam::Relative(1).resolve_for_write(7).unwrap(), 7);
        assert!(SeqParam::Relative(2).resolve_for_write(7).is_err());
        assert_eq!(SeqParam::Index(3).resolve_for_write(7).unwrap(), 3);
        // The write head (seq + 1) must stay a seq a GET takes.
        let top = SeqParam::Index(MAX_WRITE_SEQ);
        assert_eq!(top.resolve_for_write(7).unwrap(), MAX_WRITE_SEQ);
        assert!(SeqParam::Index(MAX_SEQ).resolve_for_write(7).is_err());
        assert!(SeqParam::Index(MAX_SEQ).writable().is_err());
        assert!(SeqParam::Relative(2).writable().is_err());
        assert_eq!(
            SeqParam::Relative(1).writable().unwrap(),
            SeqParam::Relative(1)
        );
        assert!(SeqParam::Relative(1).resolve_for_write(MAX_SEQ).is_err());
        assert_eq!(
            SeqParam::Relative(1)
                .resolve_for_write(MAX_WRITE_SEQ)
                .unwrap(),
            MAX_WRITE_SEQ
        );
        assert!(SeqParam::Relative(1).literal().is_err());
        assert_eq!(SeqParam::Index(3).literal().unwrap(), 3);
    }

    #[test]
    fn validates_names() {
        assert!(validate_name("ch", 256).is_ok());
        assert!(validate_name("a/b", 256).is_ok());
        assert!(validate_name("sp ace-ü", 256).is_ok());
        assert!(validate_name("", 256).is_err());
        assert!(validate_name("a\nb", 256).is_err());
        assert!(validate_name("a\u{7f}", 256).is_err());
        assert!(validate_name(&"x".repeat(256), 256).is_ok());
        assert!(validate_name(&"x".repeat(257), 256).is_err());
        assert!(validate_name("ü", 1).is_err());
        assert!(is_reserved("_changes"));
        assert!(!is_reserved("changes_"));
    }

    /// The server inserts these with `HeaderName::from_static`, which panics on anything but a
    /// lowercase name.
    #[test]
    fn header_names_are_lowercase_header_names() {
        for name in [SEQ, LATEST, CLOSED, SIZE, RESET, EXPECT_CONTENT] {
            let parsed = http::HeaderName::from_bytes(name.as_bytes()).expect(name);
            assert_eq!(parsed.as_str(), name);
        }
    }

    #[test]
    fn encoded_names_decode_back() {
        for name in ["cam", "a b/c", "ünï", "x%2F", "_changes"] {
            let encoded = encode_name(name);
            assert!(!encoded.contains(['/', ' ']), "{encoded}");
            assert_eq!(decode_name(&encoded).unwrap(), name);
        }
        assert_eq!(encode_name("a-b.c_d~e"), "a-b.c_d~e");
    }

    #[test]
    fn decodes_percent_encoded_names() {
        assert_eq!(decode_name("a%2Fb").unwrap(), "a/b");
        assert_eq!(decode_name("sp%20ace").unwrap(), "sp ace");
        assert!(decode_name("bad%FF").is_err());
    }
}
