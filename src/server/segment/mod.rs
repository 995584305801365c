//! One *version* of one segment: an append-only byte buffer that a single [`SegmentWriter`] fills and
//! any number of [`SegmentReader`]s stream, each at its own pace.
//!
//! The bytes are kept once, as a list of reference-counted [`Bytes`] chunks: a reader hands out
//! slices of the shared chunks (a refcount bump, never a copy), and a slow reader only holds on to
//! the chunks it has not sent yet. The writer never waits for readers. Writes take a short write lock
//! on this version only, then wake the readers parked on this version's [`Notify`]; nothing global
//! is locked on the data path.
//!
//! A version is *fresh* while it is open, empty and has no writer: that is the placeholder a waiting
//! subscriber (or a preconnected publisher) hangs on. The channel decides which version sits in which
//! ring slot and marks versions it drops as [`Removal::Evicted`] or [`Removal::Replaced`]; that is
//! recorded here so that everybody waiting on the version wakes and can see why.
//!
//! A version also records its [`Facts`] as it is written: its size, when its first byte came and
//! when it ended, and for MPEG-TS channels its timing ([`super::facts`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use super::budget::Budget;
use super::facts::{Facts, Metering};
use crate::media::mpegts::{MeterMemory, Timing};

/// Writes smaller than this are copied into a staging buffer and merged, so that a publisher sending
/// tiny chunks cannot make the chunk list (40 bytes of bookkeeping per chunk) outgrow the data.
const SMALL_WRITE: usize = 16 * 1024;
/// A run of small writes is merged into one chunk once it holds this many chunks...
const MERGE_AFTER_CHUNKS: usize = 64;
/// ...or this many bytes.
const MERGE_AFTER_BYTES: usize = 16 * 1024;
/// How many chunks a reader takes per lock acquisition.
const READ_BATCH: usize = 16;

/// Where a version's data stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Being written (or waiting for its first byte).
    Open,
    /// Ended normally: every byte is here.
    Complete,
    /// Its writer ended abnormally: the bytes are incomplete (docs/PROTOCOL.md, "Failed publishers
    /// are visible").
    Failed,
}

/// Why the ring no longer holds this version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Still in its slot.
    None,
    /// Another seq took the slot.
    Evicted,
    /// A newer version of the same seq took the slot (newest writer wins).
    Replaced,
}

/// A snapshot of a version's state, for decisions made outside this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub len: u64,
    pub status: Status,
    pub removal: Removal,
    pub has_writer: bool,
    /// Arrival ticket of the publisher that claimed this version (0: none).
    pub claimed_by: u64,
    /// Arrival ticket of the publisher whose newer version replaced this one (0: none).
    pub replaced_by: u64,
}

impl Snapshot {
    /// Open, empty and unclaimed: a placeholder.
    pub fn is_fresh(&self) -> bool {
        self.status == Status::Open && self.len == 0 && !self.has_writer
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The segment would exceed the size limit; the version is now failed.
    TooLarge,
    /// The server's buffer budget would be exceeded; the version is now failed. `buffered` is what
    /// the budget held at that moment.
    OverBudget { buffered: u64, limit: u64 },
    /// The version was closed (complete or failed) by somebody else.
    Closed(Status),
}

/// What a reader gets next.
#[derive(Debug)]
pub enum ReadError {
    /// The writer failed: the segment is incomplete and must not be taken as whole.
    Failed,
    /// The version was an empty placeholder that the ring dropped before anybody wrote to it.
    Evicted,
}

/// How a version ended before its first byte, or that it has data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At least one byte is buffered (`buffered` bytes right now).
    Data { buffered: u64 },
    /// Closed normally with zero bytes.
    Empty,
    /// Failed (only possible after bytes were written; a reader that joins now must not use it).
    Failed,
    /// An empty placeholder dropped from the ring.
    Evicted,
}

pub struct Segment {
    seq: u64,
    inner: RwLock<Inner>,
    notify: Notify,
    /// Where this version's bytes are counted: taken per write, given back whole on drop.
    budget: Arc<Budget>,
}

struct Inner {
    chunks: Vec<Bytes>,
    /// `ends[i]` is the offset one past the last byte of `chunks[i]`.
    ends: Vec<u64>,
    len: u64,
    status: Status,
    removal: Removal,
    has_writer: bool,
    claimed_by: u64,
    replaced_by: u64,
    started_at: Option<SystemTime>,
    ended_at: Option<SystemTime>,
    /// What the writer's meter measured, set when the writer completes the version.
    timing: Option<Timing>,
}

impl Inner {
    /// Leaves `Open` for `status`, noting when.
    fn end(&mut self, status: Status) {
        self.status = status;
        self.ended_at = Some(SystemTime::now());
    }
}

impl Segment {
    /// A fresh placeholder for `seq`, outside any server's budget (tests and the benchmark).
    #[cfg(any(test, feature = "internals"))]
    pub fn new(seq: u64) -> Arc<Segment> {
        Segment::with_budget(seq, Budget::unlimited())
    }

    /// A fresh placeholder for `seq` whose bytes count in `budget` for as long as it lives.
    pub(crate) fn with_budget(seq: u64, budget: Arc<Budget>) -> Arc<Segment> {
        Arc::new(Segment {
            seq,
            inner: RwLock::new(Inner {
                chunks: Vec::new(),
                ends: Vec::new(),
                len: 0,
                status: Status::Open,
                removal: Removal::None,
                has_writer: false,
                claimed_by: 0,
                replaced_by: 0,
                started_at: None,
                ended_at: None,
                timing: None,
            }),
            notify: Notify::new(),
            budget,
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner.read();
        Snapshot {
            len: inner.len,
            status: inner.status,
            removal: inner.removal,
            has_writer: inner.has_writer,
            claimed_by: inner.claimed_by,
            replaced_by: inner.replaced_by,
        }
    }

    /// What is known about this version's data so far ([`Facts`]).
    pub fn facts(&self) -> Facts {
        let inner = self.inner.read();
        Facts::new(inner.len, inner.started_at, inner.ended_at, inner.timing)
    }

    /// Claims a fresh version for the writer with arrival `ticket`. Fails if it is not fresh (or was
    /// removed from the ring).
    pub fn try_claim(self: &Arc<Self>, ticket: u64, max_bytes: u64) -> Option<SegmentWriter> {
        {
            let mut inner = self.inner.write();
            let fresh = inner.status == Status::Open
                && inner.len == 0
                && !inner.has_writer
                && inner.removal == Removal::None;
            if !fresh {
                return None;
            }
            inner.has_writer = true;
            inner.claimed_by = ticket;
        }
        self.notify.notify_waiters();
        Some(SegmentWriter::new(self.clone(), max_bytes))
    }

    /// Closes the version if it is still open: normally (`Complete`) or as `Failed`. Returns whether
    /// this call closed it. A fresh placeholder always closes as `Complete` (there is nothing to lose).
    pub fn close(&self, status: Status) -> bool {
        {
            let mut inner = self.inner.write();
            if inner.status != Status::Open {
                return false;
            }
            let status = if inner.len == 0 {
                Status::Complete
            } else {
                status
            };
            inner.end(status);
        }
        self.notify.notify_waiters();
        true
    }

    /// Records that the ring dropped this version. An empty placeholder is also closed: nobody can
    /// write to it any more.
    pub fn remove_from_ring(&self, why: Removal, by_ticket: u64) {
        {
            let mut inner = self.inner.write();
            inner.removal = why;
            if why == Removal::Replaced {
                inner.replaced_by = by_ticket;
            }
            if inner.status == Status::Open && inner.len == 0 && !inner.has_writer {
                inner.end(Status::Complete);
            }
        }
        self.notify.notify_waiters();
    }

    /// Waits until `check` returns `Some`, re-checking after every change to this version.
    pub async fn wait_for<T>(&self, mut check: impl FnMut(Snapshot) -> Option<T>) -> T {
        loop {
            // First without registering for a wake-up (the notifier's lock, twice).
            if let Some(v) = check(self.snapshot()) {
                return v;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = check(self.snapshot()) {
                return v;
            }
            notified.await;
        }
    }

    /// Waits for the first byte (or for the version to end without one).
    pub async fn wait_started(&self) -> Start {
        self.wait_for(|s| {
            if s.len > 0 {
                if s.status == Status::Failed {
                    return Some(Start::Failed);
                }
                return Some(Start::Data { buffered: s.len });
            }
            match (s.status, s.removal) {
                (Status::Open, _) => None,
                // Refused at its first write: nothing to serve, and it must not look empty.
                (Status::Failed, _) => Some(Start::Failed),
                (_, Removal::Evicted | Removal::Replaced) => Some(Start::Evicted),
                _ => Some(Start::Empty),
            }
        })
        .await
    }

    /// A reader from the first byte.
    pub fn reader(self: &Arc<Self>) -> SegmentReader {
        SegmentReader {
            segment: self.clone(),
            pos: 0,
            chunk_hint: 0,
            batch: VecDeque::new(),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.budget.release(self.inner.get_mut().len);
    }
}

/// The single writer of a version. Dropping it without [`SegmentWriter::finish`] fails the version,
/// so a publisher that disappears can never leave a truncated segment looking complete.
pub struct SegmentWriter {
    segment: Arc<Segment>,
    max_bytes: u64,
    /// Bytes of the current run of small writes, merged into one chunk when the run is long enough.
    run: BytesMut,
    /// How many of the last chunks in the list belong to the current run.
    run_chunks: usize,
    done: bool,
    /// MPEG-TS channels only: measures the timing as the bytes pass.
    metering: Option<Box<Metering>>,
}

impl SegmentWriter {
    fn new(segment: Arc<Segment>, max_bytes: u64) -> SegmentWriter {
        SegmentWriter {
            segment,
            max_bytes,
            run: BytesMut::new(),
            run_chunks: 0,
            done: false,
            metering: None,
        }
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// Measures the MPEG-TS timing of what is written ([`Facts`]), starting from what the
    /// channel's earlier segments taught (`memory`, which this one updates in turn).
    pub(crate) fn measure_mpegts(&mut self, memory: &Arc<Mutex<MeterMemory>>) {
        self.metering = Some(Box::new(Metering::new(memory)));
    }

    /// Appends `data` and wakes the readers. Empty writes are ignored.
    pub fn write(&mut self, data: Bytes) -> Result<(), WriteError> {
        if data.is_empty() {
            return Ok(());
        }
        // Outside the lock. Bytes of a refused write may be measured too: a refused write fails
        // the version, and a failed version reports no timing.
        if let Some(metering) = &mut self.metering {
            metering.push(&data);
        }
        let small = data.len() < SMALL_WRITE;
        if small {
            self.run.extend_from_slice(&data);
        }
        {
            let mut inner = self.segment.inner.write();
            if inner.status != Status::Open {
                return Err(WriteError::Closed(inner.status));
            }
            let new_len = inner.len + data.len() as u64;
            let refused = if new_len > self.max_bytes {
                Some(WriteError::TooLarge)
            } else {
                // Under this version's lock, so that `len` and what the budget holds for it move
                // together (the drop gives back exactly `len`).
                let budget = &self.segment.budget;
                budget
                    .reserve(data.len() as u64)
                    .err()
                    .map(|buffered| WriteError::OverBudget {
                        buffered,
                        limit: budget.limit(),
                    })
            };
            if let Some(err) = refused {
                inner.end(Status::Failed);
                drop(inner);
                self.done = true;
                self.segment.notify.notify_waiters();
                return Err(err);
            }
            if !small {
                merge_run(&mut self.run, &mut self.run_chunks, &mut inner);
            }
            if inner.len == 0 {
                inner.started_at = Some(SystemTime::now());
            }
            inner.len = new_len;
            inner.chunks.push(data);
            inner.ends.push(new_len);
            if small {
                self.run_chunks += 1;
                if self.run_chunks >= MERGE_AFTER_CHUNKS || self.run.len() >= MERGE_AFTER_BYTES {
                    merge_run(&mut self.run, &mut self.run_chunks, &mut inner);
                }
            }
        }
        self.segment.notify.notify_waiters();
        Ok(())
    }

    /// Ends the version normally. Fails if somebody else closed it first.
    pub fn finish(mut self) -> Result<(), WriteError> {
        self.done = true;
        // Before the lock: whoever sees the version complete sees its timing too.
        let timing = self.metering.as_mut().map(|metering| metering.finish());
        {
            let mut inner = self.segment.inner.write();
            if inner.status != Status::Open {
                return Err(WriteError::Closed(inner.status));
            }
            merge_run(&mut self.run, &mut self.run_chunks, &mut inner);
            inner.timing = timing;
            inner.end(Status::Complete);
        }
        self.segment.notify.notify_waiters();
        Ok(())
    }

    /// Ends the version abnormally: readers see an error, later GETs a 470.
    pub fn fail(mut self) {
        self.done = true;
        self.segment.close(Status::Failed);
    }
}

/// Replaces the chunks of the current run of small writes by one chunk holding the same bytes.
/// Readers track byte offsets, so they are unaffected.
fn merge_run(run: &mut BytesMut, run_chunks: &mut usize, inner: &mut Inner) {
    if *run_chunks > 1 {
        let keep = inner.chunks.len() - *run_chunks;
        inner.chunks.truncate(keep);
        inner.ends.truncate(keep);
        inner.chunks.push(run.split().freeze());
        inner.ends.push(inner.len);
    } else {
        run.clear();
    }
    *run_chunks = 0;
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if !self.done {
            self.segment.close(Status::Failed);
        }
    }
}

/// One reader's cursor into a version. Cloning bytes out of it is a refcount bump.
pub struct SegmentReader {
    segment: Arc<Segment>,
    /// Byte offset of the next byte to hand out.
    pos: u64,
    /// Index of the chunk holding `pos`, if the list was not merged since.
    chunk_hint: usize,
    /// Chunks taken under the lock but not handed out yet.
    batch: VecDeque<Bytes>,
}

impl SegmentReader {
    /// The next piece of the segment: `Ok(Some(bytes))`, `Ok(None)` at a normal end, or an error.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        let SegmentReader {
            segment,
            pos,
            chunk_hint,
            batch,
        } = self;
        loop {
            if let Some(chunk) = batch.pop_front() {
                return Ok(Some(chunk));
            }
            // Look before registering for a wake-up (which takes the notifier's lock twice):
            // most of the time the bytes are there.
            if let Some(answer) = fill_batch(segment, pos, chunk_hint, batch) {
                return answer;
            }
            let notified = segment.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // And again once registered: what arrived in between woke nobody.
            if let Some(answer) = fill_batch(segment, pos, chunk_hint, batch) {
                return answer;
            }
            notified.await;
            // Let the tasks woken with us (the publisher's above all) run first: more bytes are
            // then ready when we look, and an HTTP reader sends them in one write instead of one
            // per publisher write. Two rounds measured best (BENCHMARKS.md, `max`: one 0.356,
            // two 0.294, three 0.324 CPU s per GB, medians; `paced` latency unchanged).
            for _ in 0..2 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Reads the rest of the segment into one buffer (a copy; for tests).
    #[cfg(any(test, feature = "internals"))]
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// [`SegmentReader::next_chunk`]'s answer from what the version holds now, `None` if nothing new
/// is there yet. Takes up to [`READ_BATCH`] chunks from `pos` on: the first one to hand out now,
/// the rest into `batch` (so a reader that finds one chunk, as most do, allocates no batch). Only
/// for an empty `batch`: the chunks in it come before the one returned.
fn fill_batch(
    segment: &Segment,
    pos: &mut u64,
    chunk_hint: &mut usize,
    batch: &mut VecDeque<Bytes>,
) -> Option<Result<Option<Bytes>, ReadError>> {
    debug_assert!(batch.is_empty());
    let inner = segment.inner.read();
    if *pos >= inner.len {
        return match (inner.status, inner.removal) {
            (Status::Open, _) => None,
            (Status::Failed, _) => Some(Err(ReadError::Failed)),
            (Status::Complete, Removal::Evicted | Removal::Replaced) if inner.len == 0 => {
                Some(Err(ReadError::Evicted))
            }
            (Status::Complete, _) => Some(Ok(None)),
        };
    }
    let start_of = |i: usize| if i == 0 { 0 } else { inner.ends[i - 1] };
    let mut idx = *chunk_hint;
    if idx >= inner.chunks.len() || start_of(idx) > *pos || inner.ends[idx] <= *pos {
        idx = inner.ends.partition_point(|&end| end <= *pos);
    }
    let skip = (*pos - start_of(idx)) as usize;
    let first = &inner.chunks[idx];
    let first = if skip == 0 {
        first.clone()
    } else {
        first.slice(skip..)
    };
    let last = (idx + READ_BATCH).min(inner.chunks.len());
    batch.extend(inner.chunks[idx + 1..last].iter().cloned());
    *pos = inner.ends[last - 1];
    *chunk_hint = last;
    Some(Ok(Some(first)))
}

#[cfg(test)]
mod tests;
