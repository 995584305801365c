//! The HTTP subscriber: reads a channel's segments in order, one GET per segment, with the GET for
//! the next seq opened as soon as the current segment starts (a *preconnect*), as the Go
//! `TrickleSubscriber` does. The server holds that GET until the next segment's first byte exists.
//!
//! A GET that waits long is re-issued every [`SubscriberOptions::refresh`] (20 s, like the Go
//! client), so no proxy or idle timer kills it; the abandoned request costs the server nothing
//! (it frees what a client that went away held at once). A `470` (the seq left the ring, or is
//! too far ahead) jumps to the channel's write head or, if so configured, is reported. End of
//! stream is `Ok(None)`; a missing channel is an error.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::header;
use tokio::task::JoinHandle;

use super::{ClientError, ConnectOptions, channel_url, error_message, header_u64, http_client};
use crate::protocol;

/// Where a subscriber starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubscribeStart {
    /// The next segment to start (`-1`): waits for it (the Go client's default).
    #[default]
    Next,
    /// The segment being written now, from its first byte (`-2`; pytrickle's default).
    Current,
    /// This seq.
    Seq(u64),
    /// `-N`: N−1 segments before the next one (`FromEnd(1)` is `Next`, `FromEnd(2)` `Current`).
    FromEnd(u64),
}

impl SubscribeStart {
    fn path(self) -> String {
        match self {
            SubscribeStart::Next => "-1".into(),
            SubscribeStart::Current => "-2".into(),
            SubscribeStart::Seq(seq) => seq.to_string(),
            SubscribeStart::FromEnd(n) => format!("-{}", n.max(1)),
        }
    }
}

impl std::str::FromStr for SubscribeStart {
    type Err = String;

    /// `next`, `current`, a seq `N`, or `-N`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "next" => return Ok(SubscribeStart::Next),
            "current" => return Ok(SubscribeStart::Current),
            _ => {}
        }
        let bad = || format!("invalid start {s:?}: expected next, current, a seq N or -N");
        if let Some(n) = s.strip_prefix('-') {
            let n: u64 = n.parse().map_err(|_| bad())?;
            if n == 0 {
                return Ok(SubscribeStart::Seq(0));
            }
            return Ok(SubscribeStart::FromEnd(n));
        }
        s.parse().map(SubscribeStart::Seq).map_err(|_| bad())
    }
}

/// What to do when the server answers `470` (the seq is not held).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnGap {
    /// Jump to `Lp-Trickle-Latest` and go on; the segment read there says where it jumped from.
    #[default]
    Jump,
    /// Return [`ClientError::SequenceNonexistent`]; the caller decides (see [`Subscriber::set_start`]).
    Report,
}

/// How a [`Subscriber`] behaves.
#[derive(Clone, Debug)]
pub struct SubscriberOptions {
    pub start: SubscribeStart,
    pub on_gap: OnGap,
    pub connect: ConnectOptions,
    /// A GET still waiting for its segment after this long is re-issued.
    pub refresh: Duration,
    /// Consecutive failed GETs (connection errors, unexpected statuses) before giving up.
    pub retries: u32,
    /// Pause before the first retry; doubled for each further one, at most 5 s.
    pub retry_delay: Duration,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            start: SubscribeStart::Next,
            on_gap: OnGap::Jump,
            connect: ConnectOptions::default(),
            refresh: Duration::from_secs(20),
            retries: 5,
            retry_delay: Duration::from_millis(300),
        }
    }
}

/// Reads the segments of one channel in order.
pub struct Subscriber {
    url: String,
    client: reqwest::Client,
    options: SubscriberOptions,
    /// Where the next segment is read from.
    next: SubscribeStart,
    /// The preconnected GET for `next`.
    pending: Option<JoinHandle<reqwest::Result<reqwest::Response>>>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(pending) = &self.pending {
            pending.abort();
        }
    }
}

/// One segment: its metadata at once, its bytes as they arrive.
pub struct Segment {
    /// The segment's seq (`Lp-Trickle-Seq`).
    pub seq: u64,
    /// The channel's MIME type, if the server sent one.
    pub content_type: Option<String>,
    /// The channel's write head when the request arrived (`Lp-Trickle-Latest`); absent when this
    /// segment is the live edge.
    pub latest: Option<u64>,
    /// Bytes already buffered at the server when the response started (`Lp-Trickle-Size`).
    pub size: Option<u64>,
    /// Set when the subscriber jumped over a gap to get here: the seq it asked for first.
    pub jumped_from: Option<u64>,
    response: reqwest::Response,
    received: u64,
}

/// What one answer to a subscriber's GET decided.
enum Decision {
    /// Hand out this segment.
    Segment(Segment),
    /// The stream ended.
    Closed,
    /// Ask again for `next` (which the answer may have moved), after a pause if any.
    AskAgain { after: Option<Duration> },
    /// The GET failed: retried after a backoff, unless too many did.
    Failed(ClientError),
}

/// What one [`Subscriber::next_segment`] call went through so far.
#[derive(Default)]
struct Tries {
    /// GETs that failed.
    failures: u32,
    /// Gaps jumped over.
    gaps: u32,
    /// The seq of the first gap jumped over.
    jumped_from: Option<u64>,
}

impl Segment {
    /// Segment `seq`, whose GET answered `response`.
    fn new(seq: u64, jumped_from: Option<u64>, response: reqwest::Response) -> Segment {
        let headers = response.headers();
        Segment {
            seq,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(String::from),
            latest: header_u64(headers, protocol::LATEST),
            size: header_u64(headers, protocol::SIZE),
            jumped_from,
            response,
            received: 0,
        }
    }

    /// The next bytes of the segment; `None` at its (normal) end. An abnormal end is
    /// [`ClientError::SegmentFailed`]: the segment is incomplete.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        match self.response.chunk().await {
            Ok(Some(bytes)) => {
                self.received += bytes.len() as u64;
                Ok(Some(bytes))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(ClientError::SegmentFailed {
                seq: self.seq,
                bytes: self.received,
            }),
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The whole segment in one buffer (a copy; for small segments and tests).
    pub async fn read_to_end(mut self) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The segment's bytes as a stream.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, ClientError>> {
        futures_util::stream::unfold(Some(self), |segment| async move {
            let mut segment = segment?;
            match segment.chunk().await {
                Ok(Some(bytes)) => Some((Ok(bytes), Some(segment))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        })
    }
}

impl Subscriber {
    /// A subscriber of the channel at `url` (`http://host:port/[base/]channel`). The GET for the
    /// start position is sent at once, so `Next` means the next segment after this call.
    pub fn new(url: &str, options: SubscriberOptions) -> Result<Subscriber, ClientError> {
        let url = channel_url(url)?;
        let client = http_client(&options.connect)?;
        let mut subscriber = Subscriber {
            url,
            client,
            next: options.start,
            options,
            pending: None,
        };
        subscriber.preconnect();
        Ok(subscriber)
    }

    /// The channel URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads from `start` next, replacing any preconnected GET (after a reported gap, for example).
    pub fn set_start(&mut self, start: SubscribeStart) {
        if let Some(pending) = self.pending.take() {
            pending.abort();
        }
        self.next = start;
        self.preconnect();
    }

    /// Opens the GET for `self.next` in the background, re-issuing it every `refresh` while the
    /// server holds it back.
    ///
    /// A re-issued `-1` resolves against the write head *when it arrives*, so if the segment
    /// started in between, the new request would wait for the one after it. The old request is
    /// therefore kept for a moment after the new one is sent: whichever answers first wins, and
    /// the old one is preferred.
    fn preconnect(&mut self) {
        let request = self
            .client
            .get(format!("{}/{}", self.url, self.next.path()));
        let refresh = self.options.refresh;
        let overlap = (refresh / 2).min(Duration::from_secs(2));
        self.pending = Some(tokio::spawn(async move {
            let attempt = || {
                let request = request.try_clone().expect("a GET has no body to clone");
                Box::pin(request.send())
            };
            let mut current = attempt();
            loop {
                tokio::select! {
                    result = &mut current => return result,
                    _ = tokio::time::sleep(refresh) => {}
                }
                tracing::debug!("re-issuing a long-waiting GET");
                let mut next = attempt();
                let handover = tokio::time::sleep(overlap);
                tokio::select! {
                    biased;
                    result = &mut current => return result,
                    result = &mut next => return result,
                    _ = handover => {}
                }
                // Dropping the old request closes its connection; the server forgets it.
                current = next;
            }
        }));
    }

    /// The next segment, once its first byte exists (or it ended empty). `Ok(None)` is the end of
    /// the stream. The GET for the segment after it is opened before this returns.
    pub async fn next_segment(&mut self) -> Result<Option<Segment>, ClientError> {
        let mut tries = Tries::default();
        loop {
            let decision = match self.answer().await? {
                Ok(response) => self.interpret(response, &mut tries).await?,
                Err(err) => Decision::Failed(err.into()),
            };
            match decision {
                Decision::Segment(segment) => {
                    self.next = SubscribeStart::Seq(segment.seq + 1);
                    self.preconnect();
                    return Ok(Some(segment));
                }
                Decision::Closed => return Ok(None),
                Decision::AskAgain { after } => {
                    if let Some(pause) = after {
                        tokio::time::sleep(pause).await;
                    }
                }
                Decision::Failed(err) => {
                    tries.failures += 1;
                    if tries.failures > self.options.retries {
                        return Err(err);
                    }
                    tracing::debug!(%err, "GET failed; retrying");
                    tokio::time::sleep(self.backoff(tries.failures)).await;
                }
            }
        }
    }

    /// The answer to the preconnected GET (opened now if there is none).
    async fn answer(&mut self) -> Result<reqwest::Result<reqwest::Response>, ClientError> {
        if self.pending.is_none() {
            self.preconnect();
        }
        let handle = self.pending.as_mut().expect("preconnected");
        // Taken only once it answered: a caller that gives up meanwhile keeps the GET for later.
        let joined = handle.await;
        self.pending = None;
        joined.map_err(|join| ClientError::Io(std::io::Error::other(join)))
    }

    /// What `response`, the answer to the GET for `self.next`, means for the subscriber.
    async fn interpret(
        &mut self,
        response: reqwest::Response,
        tries: &mut Tries,
    ) -> Result<Decision, ClientError> {
        let headers = response.headers();
        if headers.contains_key(protocol::CLOSED) {
            return Ok(Decision::Closed);
        }
        // The resolved seq; a server that leaves it out gets the seq we asked for.
        let requested = match self.next {
            SubscribeStart::Seq(seq) => seq,
            _ => 0,
        };
        let seq = header_u64(headers, protocol::SEQ).unwrap_or(requested);
        Ok(match response.status().as_u16() {
            200 => Decision::Segment(Segment::new(seq, tries.jumped_from, response)),
            404 => return Err(ClientError::StreamNotFound),
            470 => self.gap(seq, header_u64(headers, protocol::LATEST), tries)?,
            // The server's wait timeout: just ask again.
            408 => Decision::AskAgain { after: None },
            status => {
                let message = error_message(response).await;
                Decision::Failed(ClientError::Http { status, message })
            }
        })
    }

    /// A `470` for `seq`: reported, or jumped over to the write head `latest`.
    fn gap(
        &mut self,
        seq: u64,
        latest: Option<u64>,
        tries: &mut Tries,
    ) -> Result<Decision, ClientError> {
        if self.options.on_gap == OnGap::Report {
            return Err(ClientError::SequenceNonexistent { seq, latest });
        }
        tries.jumped_from.get_or_insert(seq);
        self.next = latest.map_or(SubscribeStart::Next, SubscribeStart::Seq);
        tries.gaps += 1;
        // Past the first jump, the write head moved on again at once: give the publisher a moment.
        let after = (tries.gaps > 1).then(|| self.backoff(tries.gaps - 1));
        Ok(Decision::AskAgain { after })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(8));
        (self.options.retry_delay * factor).min(Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts() {
        let parse = |s: &str| s.parse::<SubscribeStart>();
        assert_eq!(parse("next"), Ok(SubscribeStart::Next));
        assert_eq!(parse("current"), Ok(SubscribeStart::Current));
        assert_eq!(parse("7"), Ok(SubscribeStart::Seq(7)));
        assert_eq!(parse("-0"), Ok(SubscribeStart::Seq(0)));
        assert_eq!(parse("-3"), Ok(SubscribeStart::FromEnd(3)));
        assert!(parse("-x").is_err());
        assert!(parse("soon").is_err());
        assert_eq!(SubscribeStart::FromEnd(3).path(), "-3");
        assert_eq!(SubscribeStart::Current.path(), "-2");
    }
}
