//! In-process publisher and subscriber: the same channels and rules as HTTP, without a socket.
//!
//! They follow the Go reference's `LocalPublisher` / `LocalSubscriber`: the publisher has
//! its own seq counter starting at 0 and needs an existing channel unless autocreate is on; the
//! subscriber starts at `-1` and moves to `seq + 1` of whatever it read, so it never rereads a
//! segment. Unlike the reference, read errors are returned (not looped on), a zero-byte write
//! advances the write head as a zero-byte POST does, and a missing channel is
//! [`Error::StreamNotFound`].

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::protocol::{Error, SeqParam};
use crate::server::read::Cursor;
use crate::server::segment::{ReadError, SegmentReader};
use crate::server::write::Claim;
use crate::server::{Channel, ReadLookup, Server};

/// Bytes asked of the reader per read.
const READ_SIZE: usize = 32 * 1024;

/// Publishes segments into a channel of an in-process [`Server`].
pub struct LocalPublisher {
    server: Server,
    name: String,
    mime: String,
    seq: u64,
}

impl LocalPublisher {
    pub fn new(server: &Server, name: &str, mime: &str) -> LocalPublisher {
        LocalPublisher {
            server: server.clone(),
            name: name.into(),
            mime: mime.into(),
            seq: 0,
        }
    }

    /// Creates the channel (with this publisher's MIME type) whatever autocreate says; the
    /// server's `before_create` hook is asked first.
    pub async fn create_channel(&self) -> Result<(), Error> {
        self.server
            .create_channel(&self.name, &self.mime)
            .await
            .map(|_| ())
    }

    /// The seq the next write goes to.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    async fn channel(&self) -> Result<Arc<Channel>, Error> {
        if self.server.config().autocreate {
            self.server.create_channel(&self.name, &self.mime).await
        } else {
            self.server.channel(&self.name).ok_or(Error::StreamNotFound)
        }
    }

    /// Writes everything `reader` yields as the next segment, streaming it to subscribers as it is
    /// read. Returns the seq written. A read error fails the segment (its subscribers see an
    /// abnormal end) and is returned.
    pub async fn write(&mut self, mut reader: impl AsyncRead + Unpin) -> Result<u64, Error> {
        let channel = self.channel().await?;
        let claim = Claim::fresh(&self.server, channel, self.seq)?;
        self.seq += 1;
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        // Before the first byte nothing is written: a failed read leaves the segment fresh.
        reader.read_buf(&mut buf).await?;
        let mut writing = claim.start()?;
        while !buf.is_empty() {
            writing.write(buf.split().freeze())?;
            buf.reserve(READ_SIZE);
            if let Err(err) = reader.read_buf(&mut buf).await {
                writing.fail();
                return Err(err.into());
            }
        }
        let seq = writing.seq();
        writing.finish()?;
        Ok(seq)
    }

    /// Writes `data` as the next segment.
    pub async fn write_bytes(&mut self, data: impl Into<Bytes>) -> Result<u64, Error> {
        let data: Bytes = data.into();
        self.write(&data[..]).await
    }

    /// Deletes the channel: its subscribers get end of stream.
    pub fn close(&self) -> Result<(), Error> {
        self.server.delete_channel(&self.name)
    }
}

/// Reads segments of a channel of an in-process [`Server`].
pub struct LocalSubscriber {
    server: Server,
    name: String,
    /// Where to start when the channel is first found.
    start: SeqParam,
    /// Made when the channel is first found; a channel deleted and made again is a new cursor.
    cursor: Option<Cursor>,
}

/// One segment as a local subscriber sees it: metadata at once, bytes as they arrive.
pub struct LocalSegment {
    pub seq: u64,
    /// The write head when the segment was looked up.
    pub latest: u64,
    /// Seqs [`LocalSubscriber::follow`] went past before this one (not held any more, or failed
    /// before their first byte); 0 for [`LocalSubscriber::read`].
    pub skipped: u64,
    pub content_type: String,
    channel: Arc<Channel>,
    reader: SegmentReader,
}

impl LocalSubscriber {
    /// A subscriber starting at the next segment (`-1`).
    pub fn new(server: &Server, name: &str) -> LocalSubscriber {
        LocalSubscriber {
            server: server.clone(),
            name: name.into(),
            start: SeqParam::Relative(1),
            cursor: None,
        }
    }

    /// Where the next read starts: `n >= 0` literally, `-N` relative to the write head.
    pub fn set_seq(&mut self, n: i64) {
        let to = if n >= 0 {
            SeqParam::Index(n as u64)
        } else {
            SeqParam::Relative(n.unsigned_abs())
        };
        self.start = to;
        if let Some(cursor) = &mut self.cursor {
            cursor.seek(to);
        }
    }

    /// The cursor over the channel as it is now (a new one if the channel was made again).
    fn cursor(&mut self) -> Result<&mut Cursor, Error> {
        let channel = self
            .server
            .channel(&self.name)
            .ok_or(Error::StreamNotFound)?;
        let current = self
            .cursor
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c.channel(), &channel));
        if !current {
            self.cursor = Some(Cursor::new(channel, self.start));
        }
        Ok(self.cursor.as_mut().expect("just made"))
    }

    /// Looks up the next segment and returns it at once (its bytes may not exist yet). Errors:
    /// [`Error::StreamNotFound`], [`Error::EndOfStream`], [`Error::SequenceNonexistent`].
    pub fn read(&mut self) -> Result<LocalSegment, Error> {
        let cursor = self.cursor()?;
        match cursor.step() {
            ReadLookup::NotHeld { closed: true, .. } => Err(Error::EndOfStream),
            ReadLookup::NotHeld { seq, latest, .. } => {
                Err(Error::SequenceNonexistent { seq, latest })
            }
            ReadLookup::Found { segment, latest } => {
                Ok(LocalSegment::new(cursor.channel(), segment, latest, 0))
            }
        }
    }

    /// Waits for the next segment that has data (or is complete and empty), going past what
    /// cannot be read: a reader that fell behind the ring jumps to the newest segment, and a
    /// segment that failed before its first byte is skipped ([`LocalSegment::skipped`] counts
    /// both). [`Error::EndOfStream`] once the channel is gone.
    pub async fn follow(&mut self) -> Result<LocalSegment, Error> {
        let cursor = self.cursor()?;
        let found = cursor.follow().await?;
        Ok(LocalSegment::new(
            cursor.channel(),
            found.segment,
            found.latest,
            found.skipped,
        ))
    }
}

impl LocalSegment {
    fn new(
        channel: &Arc<Channel>,
        segment: Arc<crate::server::segment::Segment>,
        latest: u64,
        skipped: u64,
    ) -> LocalSegment {
        LocalSegment {
            seq: segment.seq(),
            latest,
            skipped,
            content_type: channel.mime().to_string(),
            reader: segment.reader(),
            channel: channel.clone(),
        }
    }

    /// The next bytes of the segment, `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        self.reader.next_chunk().await.map_err(|err| match err {
            ReadError::Failed => Error::SegmentFailed,
            ReadError::Evicted => Error::SequenceNonexistent {
                seq: self.seq,
                latest: self.channel.next_write(),
            },
        })
    }

    /// The whole segment (copied into one buffer).
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}
