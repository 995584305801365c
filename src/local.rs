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
use crate::server::segment::{ReadError, SegmentReader};
use crate::server::{Channel, Server};

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

    /// Creates the channel (with this publisher's MIME type) whatever autocreate says.
    pub fn create_channel(&self) -> Result<(), Error> {
        self.server
            .create_channel(&self.name, &self.mime)
            .map(|_| ())
    }

    /// The seq the next write goes to.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn channel(&self) -> Result<Arc<Channel>, Error> {
        if self.server.config().autocreate {
            self.server.create_channel(&self.name, &self.mime)
        } else {
            self.server.channel(&self.name).ok_or(Error::StreamNotFound)
        }
    }

    /// Writes everything `reader` yields as the next segment, streaming it to subscribers as it is
    /// read. Returns the seq written. A read error fails the segment (its subscribers see an
    /// abnormal end) and is returned.
    pub async fn write(&mut self, mut reader: impl AsyncRead + Unpin) -> Result<u64, Error> {
        let channel = self.channel()?;
        let target = channel.local_target(self.seq)?;
        self.seq += 1;
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        // Before the first byte nothing is claimed: a failed read leaves the segment fresh.
        reader.read_buf(&mut buf).await?;
        let mut writer = channel.start_writing(&target)?;
        while !buf.is_empty() {
            channel.touch();
            writer
                .write(buf.split().freeze())
                .map_err(|err| channel.write_error(err))?;
            buf.reserve(READ_SIZE);
            if let Err(err) = reader.read_buf(&mut buf).await {
                writer.fail();
                return Err(err.into());
            }
        }
        writer.finish().map_err(|err| channel.write_error(err))?;
        Ok(target.seq)
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
    next: SeqParam,
}

/// One segment as a local subscriber sees it: metadata at once, bytes as they arrive.
pub struct LocalSegment {
    pub seq: u64,
    /// The write head when the segment was looked up.
    pub latest: u64,
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
            next: SeqParam::Relative(1),
        }
    }

    /// Where the next read starts: `n >= 0` literally, `-N` relative to the write head.
    pub fn set_seq(&mut self, n: i64) {
        self.next = if n >= 0 {
            SeqParam::Index(n as u64)
        } else {
            SeqParam::Relative(n.unsigned_abs())
        };
    }

    /// Looks up the next segment and returns it at once (its bytes may not exist yet). Errors:
    /// [`Error::StreamNotFound`], [`Error::EndOfStream`], [`Error::SequenceNonexistent`].
    pub fn read(&mut self) -> Result<LocalSegment, Error> {
        let channel = self
            .server
            .channel(&self.name)
            .ok_or(Error::StreamNotFound)?;
        match channel.lookup_for_read(self.next) {
            crate::server::ReadLookup::NotHeld {
                seq,
                latest,
                closed,
            } => Err(if closed {
                Error::EndOfStream
            } else {
                Error::SequenceNonexistent { seq, latest }
            }),
            crate::server::ReadLookup::Found { segment, latest } => {
                self.next = SeqParam::Index(segment.seq() + 1);
                Ok(LocalSegment {
                    seq: segment.seq(),
                    latest,
                    content_type: channel.mime().to_string(),
                    reader: segment.reader(),
                    channel,
                })
            }
        }
    }
}

impl LocalSegment {
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
