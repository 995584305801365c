//! The one write path into a channel, for every kind of publisher: an HTTP POST
//! ([`super::publish`]), the in-process [`crate::local::LocalPublisher`], the `_changes` feed and
//! (later) a relay republishing an upstream channel.
//!
//! A publisher first holds a [`Claim`] on a seq (placed with the channel's rules: placeholders,
//! newest writer wins, resets), waits for its first byte while watching [`Claim::ended`], then
//! [`Claim::start`]s a [`Writing`] that streams bytes into the segment and finishes or fails it.
//! What every publisher must get right is here once: the write head, the idle clock, the metrics
//! (bytes in, segments started, completed and failed: a [`Writing`] dropped unfinished fails its
//! segment and counts as failed) and the segment [`Event`]s, sent with no lock held.

use std::sync::Arc;

use bytes::Bytes;

use super::activity::Publishing;
use super::channel::{Channel, PendingEnd, WriteTarget};
use super::events::Event;
use super::segment::{Segment, SegmentWriter, Status};
use super::{Counter, Server};
use crate::protocol::{Error, SeqParam};

/// A publisher's hold on one seq of a channel, before its first byte.
pub(crate) struct Claim {
    /// The server and channel, and the publisher's presence on it (held until its segment ends).
    publishing: Publishing,
    target: WriteTarget,
}

impl Claim {
    /// Claims `param` (a seq, or `-1` for the write head) of `channel`. With `reset`, the
    /// publisher starts over (`Lp-Trickle-Reset`). Fails with [`Error::EndOfStream`] if the
    /// channel is closed.
    pub(crate) fn new(
        server: &Server,
        channel: Arc<Channel>,
        param: SeqParam,
        reset: bool,
    ) -> Result<Claim, Error> {
        let target = channel.target_for_write(param, reset)?;
        Ok(Claim {
            publishing: Publishing::new(server, channel),
            target,
        })
    }

    /// A claim that only takes a seq nobody has written or is writing (in-process publishers
    /// count their own seqs and never replace a segment): [`Error::EntryExists`] otherwise.
    pub(crate) fn fresh(server: &Server, channel: Arc<Channel>, seq: u64) -> Result<Claim, Error> {
        let claim = Claim::new(server, channel, SeqParam::Index(seq), false)?;
        if !claim.target.placeholder {
            return Err(Error::EntryExists);
        }
        Ok(claim)
    }

    pub(crate) fn seq(&self) -> u64 {
        self.target.seq
    }

    pub(crate) fn channel(&self) -> &Arc<Channel> {
        self.publishing.channel()
    }

    /// Resolves when the claim must be given up before its first byte: a newer publisher of the
    /// seq started first, the placeholder was closed (then call [`Claim::finish_closed`]), or the
    /// channel is gone.
    pub(crate) async fn ended(&self) -> PendingEnd {
        let (channel, target) = (self.publishing.channel(), &self.target);
        tokio::select! {
            end = target.segment.wait_for(|snap| channel.pending_end(target, snap)) => end,
            _ = channel.closed() => PendingEnd::EndOfStream,
        }
    }

    /// The placeholder was closed before the first byte ([`PendingEnd::Closed`]): that counts as
    /// an empty segment, and the write head moves past it.
    pub(crate) fn finish_closed(&self) {
        (self.publishing.channel()).finish_closed_placeholder(&self.target);
    }

    /// The first byte is here: takes the seq and moves the write head past it.
    pub(crate) fn start(self) -> Result<Writing, Error> {
        let (server, channel) = (self.publishing.server(), self.publishing.channel());
        let writer = channel.start_writing(&self.target)?;
        server.count(Counter::SegmentsStarted, 1);
        server.inner.events.send_with(|| Event::SegmentStarted {
            channel: channel.shared_name(),
            seq: self.target.seq,
        });
        Ok(Writing {
            publishing: self.publishing,
            segment: writer.segment().clone(),
            writer: Some(writer),
        })
    }
}

/// A segment being written. Dropped without [`Writing::finish`], the segment fails: its readers
/// see an abnormal end, never a truncated segment that looks whole.
pub(crate) struct Writing {
    /// Dropped after the segment's end is counted and sent: a publisher leaves after its segment.
    publishing: Publishing,
    segment: Arc<Segment>,
    /// Taken when the segment ends.
    writer: Option<SegmentWriter>,
}

impl Writing {
    pub(crate) fn seq(&self) -> u64 {
        self.segment.seq()
    }

    pub(crate) fn channel(&self) -> &Arc<Channel> {
        self.publishing.channel()
    }

    /// Appends `data` (readers see it at once). A refusal (size limit, memory budget, the segment
    /// closed under the writer) fails the segment and says what to tell the publisher.
    pub(crate) fn write(&mut self, data: Bytes) -> Result<(), Error> {
        let writer = self.writer.as_mut().ok_or(Error::SegmentClosed)?;
        let len = data.len() as u64;
        let channel = self.publishing.channel();
        channel.touch();
        writer.write(data).map_err(|err| channel.write_error(err))?;
        self.publishing.server().count(Counter::BytesIn, len);
        channel.activity().add_bytes_in(len);
        Ok(())
    }

    /// Ends the segment normally. Fails if somebody else closed it first (a `DELETE` of the seq,
    /// the channel deleted).
    pub(crate) fn finish(mut self) -> Result<(), Error> {
        let writer = self.writer.take().ok_or(Error::SegmentClosed)?;
        let channel = self.publishing.channel();
        writer.finish().map_err(|err| channel.write_error(err))?;
        channel.touch();
        Ok(())
    }

    /// Ends the segment abnormally (the publisher's body broke off, timed out, …).
    pub(crate) fn fail(mut self) {
        if let Some(writer) = self.writer.take() {
            writer.fail();
        }
    }
}

impl Drop for Writing {
    /// Counts how the segment ended, once: also when the publisher's request is dropped mid-body
    /// (an HTTP/2 reset, an aborted connection), so every segment that starts is counted as
    /// completed or failed.
    fn drop(&mut self) {
        // Fails the segment if it is still open.
        drop(self.writer.take());
        self.publishing.channel().revise();
        let snap = self.segment.snapshot();
        let complete = snap.status == Status::Complete;
        let counter = if complete {
            Counter::SegmentsCompleted
        } else {
            Counter::SegmentsFailed
        };
        let server = self.publishing.server();
        server.count(counter, 1);
        server.inner.events.send_with(|| {
            let channel = self.publishing.channel().shared_name();
            let (seq, bytes) = (self.segment.seq(), snap.len);
            if complete {
                Event::SegmentCompleted {
                    channel,
                    seq,
                    bytes,
                }
            } else {
                Event::SegmentFailed {
                    channel,
                    seq,
                    bytes,
                }
            }
        });
    }
}
