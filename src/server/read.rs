//! The one read path out of a channel: a [`Cursor`] that starts at a seq (`N`, or `-1`, `-2`, `-N`
//! from the write head) and moves from segment to segment, for every kind of reader: an HTTP GET
//! ([`super::http`], one step), the in-process [`crate::local::LocalSubscriber`] and (later) a
//! live viewer that follows the channel for hours.
//!
//! [`Cursor::step`] looks up where the cursor stands without waiting (the version it finds may
//! still be waiting for its first byte); [`Cursor::follow`] waits for the next segment that has
//! data and reports what it went past: seqs no longer held (a reader that fell behind jumps to the
//! live edge) and segments that failed before their first byte was read. Bytes are then read with
//! the version's own [`super::segment::SegmentReader`], shared chunks and no copy.

use std::sync::Arc;

use super::channel::{Channel, ReadLookup};
use super::segment::{Segment, Start};

/// Whether `segment` is a version at (or past) the write head that nobody wrote.
fn unwritten_head(segment: &Segment, channel: &Channel) -> bool {
    segment.seq() >= channel.next_write() && segment.snapshot().claimed_by == 0
}
use crate::protocol::{Error, SeqParam};

/// A reader's position in one channel.
pub(crate) struct Cursor {
    channel: Arc<Channel>,
    next: SeqParam,
}

/// What a [`Cursor::follow`] found.
pub(crate) struct Followed {
    /// The segment, with at least its first byte (or complete and empty).
    pub(crate) segment: Arc<Segment>,
    /// The write head when it was looked up.
    pub(crate) latest: u64,
    /// Seqs gone past since the previous segment: not held any more, or failed before reading.
    pub(crate) skipped: u64,
}

impl Cursor {
    pub(crate) fn new(channel: Arc<Channel>, start: SeqParam) -> Cursor {
        Cursor {
            channel,
            next: start,
        }
    }

    pub(crate) fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// Moves the cursor.
    pub(crate) fn seek(&mut self, to: SeqParam) {
        self.next = to;
    }

    /// Looks up the seq the cursor stands at (placing a placeholder at the live edge, where a
    /// reader waits for the publisher); when a version is found, the cursor moves past it.
    pub(crate) fn step(&mut self) -> ReadLookup {
        let found = self.channel.lookup_for_read(self.next);
        if let ReadLookup::Found { segment, .. } = &found {
            self.next = SeqParam::Index(segment.seq() + 1);
        }
        found
    }

    /// Waits for the next segment with data (or an empty one), going past what cannot be read: a
    /// seq no longer held makes the cursor jump to the newest segment, and a segment that failed, or
    /// was dropped, before its first byte is skipped. [`Error::EndOfStream`] once the channel is
    /// closed and holds nothing more.
    pub(crate) async fn follow(&mut self) -> Result<Followed, Error> {
        let mut skipped = 0;
        loop {
            match self.step() {
                ReadLookup::NotHeld { closed: true, .. } => return Err(Error::EndOfStream),
                ReadLookup::NotHeld { seq, latest, .. } => {
                    // Behind the ring: on to the newest segment, or (if that is the one not held)
                    // the next. Ahead of the head (a publisher started over, or nothing came after
                    // the last segment read): wait at the head, never go back to re-read.
                    let to = if seq > latest || latest == 0 || seq + 1 == latest {
                        latest
                    } else {
                        latest - 1
                    };
                    skipped += to.saturating_sub(seq);
                    self.next = SeqParam::Index(to);
                }
                ReadLookup::Found { segment, latest } => match segment.wait_started().await {
                    // A placeholder closed with its channel: nothing more will come.
                    Start::Empty if self.channel.is_closed() => return Err(Error::EndOfStream),
                    // A placeholder at the head closed with nobody writing it (`DELETE` of the
                    // seq): not a segment of the stream. Wait for a publisher to start one, then
                    // look at this seq again (a new version may be there).
                    Start::Empty if unwritten_head(&segment, &self.channel) => {
                        self.channel.wait_head_past(segment.seq()).await;
                        self.next = SeqParam::Index(segment.seq());
                    }
                    Start::Data { .. } | Start::Empty => {
                        return Ok(Followed {
                            segment,
                            latest,
                            skipped,
                        });
                    }
                    Start::Failed | Start::Evicted => skipped += 1,
                },
            }
        }
    }
}
