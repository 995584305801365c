//! The fragmented-MP4 view of an MPEG-TS channel, made once per channel and shared by all its
//! `live.mp4` viewers: the cost of the remux does not grow with them.
//!
//! A [`Remux`] follows its channel with the read path like any reader, passes every segment
//! through the [`Remuxer`] and writes what comes out into a channel of its own, outside the
//! registry, under the same seq: segment N there holds the fMP4 fragments of segment N here. A
//! `live.mp4` viewer is then a live viewer of that channel, with the same lossy rules and shared
//! chunks; it gets the init segment before its first fragment, and again when it changes.
//!
//! The output channel is not a publication: nothing there is counted as bytes in or reported as
//! an event (its bytes do count against the memory budget). A segment that fails or is cut short
//! here ends the same segment there normally, with the whole frames it had: the viewers go on.
//!
//! The remux starts with the first viewer, at the start of the segment being written (so the
//! first viewer starts within a segment), and stops when the last viewer leaves or the channel
//! ends, which ends the output channel and so every viewer's response.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::channel::Channel;
use super::read::Cursor;
use super::segment::{ReadError, SegmentWriter};
use super::{Server, Stat, StatGuard};
use crate::media::fmp4::{Output, Remuxer};
use crate::protocol::SeqParam;

/// The MIME type of the output channel's segments.
const FMP4: &str = "video/mp4";
/// How many init segments are remembered (a viewer needs the one of the segment it starts).
const INITS_KEPT: usize = 8;

/// An init segment and the codecs it describes (`avc1.64001f,mp4a.40.2`).
#[derive(Debug)]
pub(crate) struct Init {
    pub(crate) bytes: Bytes,
    pub(crate) codecs: String,
    /// The first output seq it is for.
    pub(crate) from_seq: u64,
    /// Counts up with every new init segment.
    pub(crate) generation: u64,
}

/// What a viewer waiting for the first init segment learns.
#[derive(Clone, Debug)]
pub(crate) enum Ready {
    Waiting,
    /// The channel's tracks are known: the first init segment exists.
    Playing,
    /// The channel carries nothing the remuxer can put in MP4: why.
    Unsupported(String),
    /// The channel ended before anything could be played.
    Ended,
}

/// A running remux; its task stops when the last handle is dropped.
pub(crate) struct Remux {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

/// What the remux task and the viewers share.
struct Shared {
    output: Arc<Channel>,
    inits: Mutex<Vec<Arc<Init>>>,
    ready: watch::Sender<Ready>,
}

impl Remux {
    /// The channel's remux, started if it is not running.
    pub(crate) fn of(server: &Server, channel: &Arc<Channel>) -> Arc<Remux> {
        let mut slot = channel.remux_slot().lock();
        if let Some(running) = slot.upgrade() {
            return running;
        }
        let output = server.new_channel(channel.name(), FMP4);
        let shared = Arc::new(Shared {
            output,
            inits: Mutex::new(Vec::new()),
            ready: watch::channel(Ready::Waiting).0,
        });
        let stop = CancellationToken::new();
        let task = RemuxTask {
            shared: shared.clone(),
            cursor: Cursor::new(channel.clone(), SeqParam::Relative(2)),
            remuxer: Remuxer::new(),
            outputs: Vec::new(),
            _counted: server.stat(Stat::Remuxes),
        };
        tokio::spawn(task.run(stop.clone()));
        let remux = Arc::new(Remux {
            shared,
            _stop: stop.drop_guard(),
        });
        *slot = Arc::downgrade(&remux);
        remux
    }

    /// The channel viewers read: the fMP4 fragments of each segment, under its seq.
    pub(crate) fn output(&self) -> &Arc<Channel> {
        &self.shared.output
    }

    /// Waits until the first init segment exists, or it is known there will be none.
    pub(crate) async fn ready(&self) -> Ready {
        let mut ready = self.shared.ready.subscribe();
        let state = ready.wait_for(|r| !matches!(r, Ready::Waiting)).await;
        state.map_or(Ready::Ended, |r| r.clone())
    }

    /// The init segment for output segment `seq`: the newest that starts at or before it.
    pub(crate) fn init_for(&self, seq: u64) -> Option<Arc<Init>> {
        let inits = self.shared.inits.lock();
        let newest_first = inits.iter().rev();
        newest_first
            .clone()
            .find(|init| init.from_seq <= seq)
            .or_else(|| inits.first())
            .cloned()
    }
}

/// The task behind a [`Remux`].
struct RemuxTask {
    shared: Arc<Shared>,
    cursor: Cursor,
    remuxer: Remuxer,
    outputs: Vec<Output>,
    /// Counts the remux in `/metrics` while it runs.
    _counted: StatGuard,
}

impl RemuxTask {
    async fn run(mut self, stop: CancellationToken) {
        loop {
            let followed = tokio::select! {
                _ = stop.cancelled() => break,
                followed = self.cursor.follow() => followed,
            };
            let Ok(followed) = followed else { break };
            let segment = followed.segment;
            let Some(writer) = self.open(segment.seq()) else {
                break;
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.remux_segment(segment.reader(), segment.seq(), writer) => {}
            }
        }
        self.shared.output.close();
        self.shared.ready.send_if_modified(|ready| {
            let waiting = matches!(ready, Ready::Waiting);
            if waiting {
                *ready = Ready::Ended;
            }
            waiting
        });
    }

    /// Starts output segment `seq` (`None` once the output channel is closed).
    fn open(&self, seq: u64) -> Option<SegmentWriter> {
        let output = &self.shared.output;
        let target = output.target_for_write(SeqParam::Index(seq), false).ok()?;
        output.start_writing(&target).ok()
    }

    /// Remuxes one segment as its bytes arrive. A segment that fails or is dropped ends its
    /// output normally: the fragments written so far are whole frames.
    async fn remux_segment(
        &mut self,
        mut reader: super::segment::SegmentReader,
        seq: u64,
        mut writer: SegmentWriter,
    ) {
        self.remuxer.start_segment(seq);
        let complete = loop {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => self.remuxer.push(&chunk, &mut self.outputs),
                Ok(None) => break true,
                Err(ReadError::Failed | ReadError::Evicted) => break false,
            }
            if !self.deliver(seq, &mut writer) {
                return;
            }
        };
        self.remuxer.end_segment(complete, &mut self.outputs);
        if self.deliver(seq, &mut writer) {
            let _ = writer.finish();
        }
    }

    /// Passes the remuxer's outputs on; false if the output segment refused them (closed, or
    /// over the memory budget: it failed, and its viewers end).
    ///
    /// An init segment normally comes before a segment's first fragment: viewers get it before
    /// that segment. One that comes mid-segment (new parameters at a keyframe inside a segment)
    /// is also written in the segment itself, where the viewers reading it need it, and is for
    /// the viewers that start with the next segment.
    fn deliver(&mut self, seq: u64, writer: &mut SegmentWriter) -> bool {
        for output in self.outputs.drain(..) {
            match output {
                Output::Init { bytes, codecs } => {
                    let mid_segment = writer.segment().snapshot().len > 0;
                    if mid_segment && writer.write(bytes.clone()).is_err() {
                        return false;
                    }
                    let mut inits = self.shared.inits.lock();
                    let generation = inits.last().map_or(0, |i| i.generation + 1);
                    inits.push(Arc::new(Init {
                        bytes,
                        codecs,
                        from_seq: seq + u64::from(mid_segment),
                        generation,
                    }));
                    if inits.len() > INITS_KEPT {
                        inits.remove(0);
                    }
                    drop(inits);
                    self.shared.ready.send_replace(Ready::Playing);
                }
                Output::Fragment { bytes, .. } => {
                    if writer.write(bytes).is_err() {
                        return false;
                    }
                }
                Output::Unsupported(reason) => {
                    self.shared.ready.send_replace(Ready::Unsupported(reason));
                }
            }
        }
        true
    }
}

/// Where a channel keeps its running remux (none until a `live.mp4` viewer asks).
pub(crate) type RemuxSlot = Mutex<Weak<Remux>>;
