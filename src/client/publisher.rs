//! The HTTP publisher: writes a channel's segments in order, one streaming POST per segment, with
//! the POST for the next seq opened ahead of time (a *preconnect*) as the Go `TricklePublisher`
//! does, so the server is already waiting when the next segment's first byte is written.
//!
//! A [`SegmentWriter`] is one segment: write bytes (async, or through [`tokio::io::AsyncWrite`]),
//! then [`SegmentWriter::finish`] to end it and get the server's answer. Dropping it unfinished
//! aborts the request, which the server shows its subscribers as an abnormal end. A POST
//! that fails before this publisher handed it a byte (the preconnect's connection dropped, or the
//! server timed it out) is opened again on the same seq, a few times with a short backoff.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ClientError, ConnectOptions, channel_url, error_message, header_u64, http_client};
use crate::protocol;

/// Where a publisher's first segment goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishStart {
    /// This seq (the reference publishers always start at 0).
    Seq(u64),
    /// The server's write head: the first POST goes to `-1` and the server's `Lp-Trickle-Seq`
    /// answer tells which seq that was. The preconnect for the second segment is opened once the
    /// first one is answered.
    WriteHead,
}

/// How a [`Publisher`] behaves.
#[derive(Clone, Debug)]
pub struct PublisherOptions {
    /// `Content-Type` of every POST (the channel's MIME type if the POST creates it).
    pub content_type: String,
    pub connect: ConnectOptions,
    pub start: PublishStart,
    /// Send `Lp-Trickle-Reset` with the first POST: a restarted publisher, whose older segments the
    /// server closes.
    pub reset: bool,
    /// How many times a segment is opened again after it failed before its first byte.
    pub retries: u32,
    /// Pause before the first retry; doubled for each further one.
    pub retry_delay: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            content_type: "application/octet-stream".into(),
            connect: ConnectOptions::default(),
            start: PublishStart::Seq(0),
            reset: false,
            retries: 3,
            retry_delay: Duration::from_millis(250),
        }
    }
}

/// Publishes segments to one channel.
pub struct Publisher {
    /// Shared with every segment writer, so a retry can open its POST again on its own.
    context: Arc<PostContext>,
    /// Send `Lp-Trickle-Reset` with the first POST.
    reset: bool,
    /// The seq the next segment gets; `None` until the server told us (start at the write head).
    next_seq: Option<u64>,
    /// The preconnected POST for `next_seq`.
    pending: Option<PendingPost>,
    /// Whether the first POST (the one that carries `Lp-Trickle-Reset`) was opened.
    started: bool,
}

/// What it takes to open a POST.
struct PostContext {
    url: String,
    client: reqwest::Client,
    content_type: String,
    retries: u32,
    retry_delay: Duration,
}

/// What the writer feeds a POST body: bytes, then an explicit end. A body whose sender is
/// dropped without `End` fails the request *after* the bytes queued before it, so the server
/// gets them and then an abnormal end rather than silence.
enum BodyItem {
    Data(Bytes),
    End,
}

/// One open POST: its request body is fed through `body`; `response` resolves to the server's
/// answer (the resolved seq) once the body ends or the server answers early.
struct PendingPost {
    /// `None`: posted to `-1`.
    seq: Option<u64>,
    reset: bool,
    /// `None` once the body was ended.
    body: Option<mpsc::Sender<BodyItem>>,
    response: Option<JoinHandle<Result<u64, ClientError>>>,
}

impl PostContext {
    fn open(&self, seq: Option<u64>, reset: bool) -> PendingPost {
        // A small queue: the writer waits for the connection instead of buffering a segment.
        let (tx, rx) = mpsc::channel::<BodyItem>(4);
        let body = futures_util::stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(BodyItem::Data(data)) => Some((Ok(data), Some(rx))),
                Some(BodyItem::End) => None,
                // The writer went away without finishing: the body must not end cleanly, or
                // the server would take a truncated segment for a whole one. Pausing first lets
                // hyper flush what it already took, so the server sees those bytes end abnormally.
                None => {
                    tokio::task::yield_now().await;
                    Some((Err(io::Error::other("segment abandoned")), None))
                }
            }
        });
        let target = seq.map_or_else(|| "-1".to_string(), |s| s.to_string());
        let mut request = self
            .client
            .post(format!("{}/{target}", self.url))
            .header(header::CONTENT_TYPE, &self.content_type)
            .body(reqwest::Body::wrap_stream(body));
        if reset {
            request = request.header(protocol::RESET, "1");
        }
        let response = tokio::spawn(async move {
            let response = request.send().await?;
            post_outcome(response, seq).await
        });
        PendingPost {
            seq,
            reset,
            body: Some(tx),
            response: Some(response),
        }
    }
}

/// Turns the server's answer to a POST into the published seq or a typed error.
async fn post_outcome(response: reqwest::Response, seq: Option<u64>) -> Result<u64, ClientError> {
    let headers = response.headers();
    let resolved = header_u64(headers, protocol::SEQ).or(seq);
    if headers.contains_key(protocol::CLOSED) {
        return Err(ClientError::EndOfStream);
    }
    let status = response.status().as_u16();
    let seq_or_0 = resolved.unwrap_or(0);
    match status {
        200..=399 => {
            // Read the (empty) body so the connection can be reused.
            let _ = response.bytes().await;
            Ok(seq_or_0)
        }
        404 => Err(ClientError::StreamNotFound),
        409 => Err(ClientError::Conflict {
            seq: seq_or_0,
            message: error_message(response).await,
        }),
        413 => Err(ClientError::TooLarge {
            seq: seq_or_0,
            message: error_message(response).await,
        }),
        _ => Err(ClientError::Http {
            status,
            message: error_message(response).await,
        }),
    }
}

/// Errors after which opening the same seq again can help.
fn retryable(err: &ClientError) -> bool {
    match err {
        ClientError::Transport(_) => true,
        ClientError::Http { status, .. } => *status == 408 || *status >= 500,
        _ => false,
    }
}

impl Publisher {
    /// A publisher for the channel at `url` (`http://host:port/[base/]channel`). Opens the POST for
    /// its first segment at once.
    pub fn new(url: &str, options: PublisherOptions) -> Result<Publisher, ClientError> {
        let url = channel_url(url)?;
        let client = http_client(&options.connect)?;
        let next_seq = match options.start {
            PublishStart::Seq(seq) => Some(seq),
            PublishStart::WriteHead => None,
        };
        let context = Arc::new(PostContext {
            url,
            client,
            content_type: options.content_type,
            retries: options.retries,
            retry_delay: options.retry_delay,
        });
        let mut publisher = Publisher {
            context,
            reset: options.reset,
            next_seq,
            pending: None,
            started: false,
        };
        publisher.pending = Some(publisher.open(next_seq));
        Ok(publisher)
    }

    fn open(&mut self, seq: Option<u64>) -> PendingPost {
        let reset = self.reset && !self.started;
        self.started = true;
        self.context.open(seq, reset)
    }

    /// The channel URL this publisher writes to.
    pub fn url(&self) -> &str {
        &self.context.url
    }

    /// The seq the next segment gets, if known.
    pub fn next_seq(&self) -> Option<u64> {
        self.next_seq
    }

    /// Creates the channel (`POST /{channel}` with `Expect-Content`), or confirms it exists. Needs a
    /// server with autocreate on; otherwise the answer is [`ClientError::StreamNotFound`].
    pub async fn create(&self) -> Result<(), ClientError> {
        let context = &self.context;
        let response = context
            .client
            .post(&context.url)
            .header(protocol::EXPECT_CONTENT, &context.content_type)
            .send()
            .await?;
        simple_outcome(response).await
    }

    /// Starts the next segment. The POST for the one after it is opened now, so it is ready when
    /// this one finishes.
    pub fn next_segment(&mut self) -> SegmentWriter<'_> {
        let post = match self.pending.take() {
            Some(post) => post,
            None => self.open(self.next_seq),
        };
        match post.seq {
            Some(seq) => {
                self.next_seq = Some(seq + 1);
                self.pending = Some(self.open(Some(seq + 1)));
            }
            // Posting to -1: the seq after it is known only once the server answers.
            None => self.next_seq = None,
        }
        let sink = Sink {
            context: self.context.clone(),
            post,
            written: 0,
        };
        SegmentWriter {
            publisher: self,
            sink: Some(sink),
            op: None,
        }
    }

    /// Publishes `data` as the next segment; returns its seq.
    pub async fn write_segment(&mut self, data: impl Into<Bytes>) -> Result<u64, ClientError> {
        let mut segment = self.next_segment();
        segment.write(data).await?;
        segment.finish().await
    }

    /// Publishes everything `stream` yields as the next segment, streaming it as it comes. An
    /// error from the stream aborts the segment (its subscribers see an abnormal end).
    pub async fn write_stream<S>(&mut self, stream: S) -> Result<u64, ClientError>
    where
        S: Stream<Item = io::Result<Bytes>>,
    {
        let mut stream = std::pin::pin!(stream);
        // The segment is opened at its first byte: an input that fails (or ends) before it leaves
        // no half-started seq behind for subscribers to wait on.
        let first = match stream.next().await {
            Some(Ok(data)) => data,
            Some(Err(err)) => return Err(err.into()),
            None => Bytes::new(),
        };
        let mut segment = self.next_segment();
        segment.write(first).await?;
        while let Some(item) = stream.next().await {
            match item {
                Ok(data) => segment.write(data).await?,
                Err(err) => {
                    segment.abort();
                    return Err(err.into());
                }
            }
        }
        segment.finish().await
    }

    /// Deletes the channel (`DELETE /{channel}`): its subscribers get end of stream.
    ///
    /// The POST preconnected for the next seq travels on its own connection, so the server may
    /// read it only after the DELETE, and with autocreate that makes the channel again (a
    /// subscriber waiting for that seq would then wait on it). So after the DELETE this waits
    /// for the preconnect's answer: a server that had it answers it with end of stream (or 404
    /// without autocreate). Any other outcome, or none within [`PRECONNECT_SETTLE`], means it
    /// came late: it is ended and the channel deleted once more (a 404 then is fine).
    pub async fn close(mut self) -> Result<(), ClientError> {
        let response = self.context.client.delete(&self.context.url).send().await?;
        simple_outcome(response).await?;
        let Some(mut pending) = self.pending.take() else {
            return Ok(());
        };
        let Some(mut answer) = pending.response.take() else {
            return Ok(());
        };
        let settled = tokio::time::timeout(PRECONNECT_SETTLE, &mut answer).await;
        if let Ok(Ok(Err(ClientError::EndOfStream | ClientError::StreamNotFound))) = settled {
            return Ok(());
        }
        // Ending the body abnormally makes sure the server never takes it for a segment.
        drop(pending);
        if settled.is_err() {
            // Still unanswered (an answered handle must not be polled again).
            answer.abort();
            let _ = answer.await;
        }
        let response = self.context.client.delete(&self.context.url).send().await?;
        match simple_outcome(response).await {
            Ok(()) | Err(ClientError::StreamNotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// How long [`Publisher::close`] waits for the server's answer to the preconnected POST after
/// the DELETE before it assumes the POST arrived late.
const PRECONNECT_SETTLE: Duration = Duration::from_secs(1);

/// The outcome of a create or delete: 200, or a typed error.
async fn simple_outcome(response: reqwest::Response) -> Result<(), ClientError> {
    match response.status().as_u16() {
        200..=299 => Ok(()),
        404 => Err(ClientError::StreamNotFound),
        status => Err(ClientError::Http {
            status,
            message: error_message(response).await,
        }),
    }
}

/// The owned half of a segment writer: the open POST and what it takes to open it again.
struct Sink {
    context: Arc<PostContext>,
    post: PendingPost,
    written: u64,
}

impl Sink {
    fn seq_or_0(&self) -> u64 {
        self.post.seq.unwrap_or(0)
    }

    /// The answer of a POST whose body can no longer be fed; taken once. `Ok` means the server
    /// answered 200 before it got our bytes: it closed the segment. Once taken (the POST failed
    /// for good), every later call fails at once.
    async fn outcome(&mut self) -> Result<u64, ClientError> {
        match self.post.response.take() {
            Some(handle) => match handle.await {
                Ok(outcome) => outcome,
                Err(join) => Err(ClientError::Io(io::Error::other(join))),
            },
            None => Err(ClientError::Io(io::Error::other(
                "the segment already failed",
            ))),
        }
    }

    /// Sends `data`; before the first byte, a failed POST is opened again on the same seq.
    async fn send(mut self, data: Bytes) -> (Sink, Result<(), ClientError>) {
        let mut attempt = 0;
        loop {
            let len = data.len() as u64;
            let sent = match &self.post.body {
                Some(body) => body.send(BodyItem::Data(data.clone())).await.is_ok(),
                None => false,
            };
            if sent {
                self.written += len;
                return (self, Ok(()));
            }
            // The request is over: find out why.
            let err = match self.outcome().await {
                Ok(_) => ClientError::SegmentClosed {
                    seq: self.seq_or_0(),
                },
                Err(err) => err,
            };
            if self.written == 0 && retryable(&err) && attempt < self.context.retries {
                let delay = self.context.retry_delay * 2u32.pow(attempt);
                tracing::debug!(%err, ?delay, "segment failed before its first byte; retrying");
                attempt += 1;
                tokio::time::sleep(delay).await;
                self.post = self.context.open(self.post.seq, self.post.reset);
                continue;
            }
            return (self, Err(err));
        }
    }
}

type SendFuture = Pin<Box<dyn Future<Output = (Sink, Result<(), ClientError>)> + Send>>;

/// One segment being published. Write bytes, then [`SegmentWriter::finish`]. Dropping it without
/// finishing aborts the segment: the server marks it failed and its subscribers see an abnormal end.
pub struct SegmentWriter<'a> {
    publisher: &'a mut Publisher,
    /// `None` while an [`AsyncWrite`](tokio::io::AsyncWrite) send is in flight (`op`).
    sink: Option<Sink>,
    op: Option<SendFuture>,
}

impl SegmentWriter<'_> {
    /// The seq of this segment, unless it was posted to `-1` and not answered yet.
    pub fn seq(&self) -> Option<u64> {
        self.sink.as_ref().and_then(|s| s.post.seq)
    }

    /// Bytes handed to the connection so far.
    pub fn written(&self) -> u64 {
        self.sink.as_ref().map_or(0, |s| s.written)
    }

    /// Completes a send started through `AsyncWrite`.
    fn poll_op(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        if let Some(op) = self.op.as_mut() {
            let (sink, result) = ready!(op.as_mut().poll(cx));
            self.op = None;
            self.sink = Some(sink);
            return Poll::Ready(result);
        }
        Poll::Ready(Ok(()))
    }

    /// Waits for a send started through `AsyncWrite`, then takes the sink.
    async fn settle(&mut self) -> Result<Sink, ClientError> {
        std::future::poll_fn(|cx| self.poll_op(cx)).await?;
        Ok(self.sink.take().expect("no send in flight"))
    }

    /// Sends `data` as the next bytes of the segment.
    pub async fn write(&mut self, data: impl Into<Bytes>) -> Result<(), ClientError> {
        let data = data.into();
        if data.is_empty() {
            return Ok(());
        }
        let sink = self.settle().await?;
        let (sink, result) = sink.send(data).await;
        self.sink = Some(sink);
        result
    }

    /// Ends the segment and waits for the server's answer; returns the segment's seq.
    pub async fn finish(mut self) -> Result<u64, ClientError> {
        let mut sink = self.settle().await?;
        // Only an explicit end marker ends the request body cleanly. (After a failure the body is
        // gone and `outcome` reports that the segment already failed.)
        if let Some(body) = sink.post.body.take() {
            let _ = body.send(BodyItem::End).await;
        }
        let result = sink.outcome().await;
        if let Ok(seq) = result
            && self.publisher.next_seq.is_none()
        {
            // Started at the write head: now we know where we are; preconnect the next seq.
            self.publisher.next_seq = Some(seq + 1);
            self.publisher.pending = Some(self.publisher.open(Some(seq + 1)));
        }
        result
    }

    /// Abandons the segment on purpose: the request body ends abnormally, so the server fails the
    /// segment and its subscribers see an abnormal end instead of a short segment. (Bytes still in
    /// flight may never reach the server; if none did, the seq simply stays unstarted.)
    pub fn abort(self) {
        drop(self);
    }
}

impl tokio::io::AsyncWrite for SegmentWriter<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_op(cx)).map_err(io::Error::other)?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let sink = self.sink.take().expect("settled");
        // The bytes count as written once queued; an error surfaces on the next call.
        self.op = Some(Box::pin(sink.send(Bytes::copy_from_slice(buf))));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_op(cx).map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_op(cx).map_err(io::Error::other)
    }
}
