//! A channel: its ring of segment versions, its write head (`nextWrite`) and its lifecycle.
//!
//! Every rule about *which* version a request gets lives here, behind one short mutex per channel
//! that is never held across an await: the grace rule for waiting subscribers, placeholders for
//! preconnected publishers, newest-writer-wins, releasing waiters of evicted placeholders, where
//! the write head may move, `Lp-Trickle-Reset`, `DELETE /{name}/{seq}` and teardown (the rules
//! themselves: docs/PROTOCOL.md). Moving bytes is the segment's business ([`super::segment`]).
//!
//! Every change to what the ring holds (a version installed, ended or dropped, a publisher
//! starting over) counts one *revision*, which the channel's playlists are rendered again after
//! ([`super::hls`]): no per-request work while nothing changed.
//!
//! Lock order: the HLS slot (a playlist being rendered), then the channel state, then a segment's
//! lock. Nothing takes the channel lock while holding a segment's lock, nor the HLS slot while
//! holding either.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::activity::Activity;
use super::budget::Budget;
use super::facts::Facts;
use super::hls::HlsSlot;
use super::remux::RemuxSlot;
use super::segment::{Removal, Segment, SegmentWriter, Snapshot, Status, WriteError};
use crate::media::mpegts::MeterMemory;
use crate::protocol::{Error, SeqParam};

pub struct Channel {
    /// Shared with the events about this channel.
    name: Arc<str>,
    mime: String,
    ring_size: u64,
    max_segment_bytes: u64,
    /// The server's budget, which every version made here counts in.
    budget: Arc<Budget>,
    state: Mutex<State>,
    /// Cancelled when the channel is closed; everybody waiting on the channel selects on it.
    closed: CancellationToken,
    /// Woken when a publisher's segment starts (the write head may have moved).
    started: Notify,
    /// Milliseconds since `epoch` of the last written byte, segment start or completion (the idle
    /// sweep counts every byte).
    last_activity_ms: AtomicU64,
    epoch: Instant,
    /// MPEG-TS channels (type `video/mp2t`): what one segment's timing meter hands to the next.
    mpegts_memory: Option<Arc<Mutex<MeterMemory>>>,
    /// The running fMP4 remux of an MPEG-TS channel, while it has `live.mp4` viewers.
    remux: RemuxSlot,
    /// Counts the changes to what the ring holds ([`Channel::revise`]).
    revision: AtomicU64,
    /// Woken at every revision (a playlist request waiting for its first segment).
    revised: Notify,
    /// The HLS playlist of an MPEG-TS channel, made by its first request.
    hls: HlsSlot,
    /// Who uses the channel, and what it carried (for the channel API).
    activity: Activity,
}

struct State {
    ring: Vec<Option<Arc<Segment>>>,
    next_write: u64,
    /// Arrival tickets of publishers, so that "older" and "newer" are well defined (newest writer
    /// wins).
    next_ticket: u64,
    /// How many times a publisher started over and took the write head back.
    run: u64,
    /// The seq the current run started at (0 before any restart).
    run_start: u64,
}

/// What the ring holds, read under one lock: for a playlist ([`super::hls`]).
pub(crate) struct RingView {
    /// How many times a publisher started over ([`Channel::advance_head`]).
    pub(crate) run: u64,
    /// The seq the current run started at.
    pub(crate) run_start: u64,
    /// Every version held, by seq (one per seq).
    pub(crate) versions: Vec<Arc<Segment>>,
}

/// What a GET (or local subscriber) found.
pub(crate) enum ReadLookup {
    /// Serve this version; `latest` is the write head sampled at lookup.
    Found { segment: Arc<Segment>, latest: u64 },
    /// The seq is not held: 470, or end of stream if the channel is closed.
    NotHeld { seq: u64, latest: u64, closed: bool },
}

/// A publisher's claim on a seq before its first byte.
pub(crate) struct WriteTarget {
    pub(crate) seq: u64,
    /// The version the publisher waits on: a placeholder, or the version it will replace.
    pub segment: Arc<Segment>,
    /// Whether `segment` was an empty placeholder when the publisher arrived.
    pub placeholder: bool,
    /// Arrival order among publishers of this channel.
    pub ticket: u64,
    /// A publisher starting over, which may move the write head back ([`Channel::advance_head`]).
    pub restart: bool,
}

/// How a publisher's wait for its first byte ended without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingEnd {
    /// A newer publisher of the same seq started writing first (409).
    Superseded,
    /// The placeholder was closed (DELETE of the seq, a reset, eviction): a zero-byte completion.
    Closed,
    /// The channel is gone.
    EndOfStream,
}

impl Channel {
    pub(crate) fn new(
        name: String,
        mime: String,
        ring_size: usize,
        max_segment_bytes: u64,
        budget: Arc<Budget>,
        epoch: Instant,
    ) -> Channel {
        // Sent as `content-type` to every subscriber: what `HeaderValue::from_str` takes (no
        // control characters, so no CR or LF), checked once here. Anything else is only possible
        // for a channel made in process, and becomes empty rather than a broken header.
        let valid = mime.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f));
        let mpegts_memory = is_mpegts(&mime).then(Arc::default);
        let channel = Channel {
            name: name.into(),
            mime: if valid { mime } else { String::new() },
            ring_size: ring_size.max(1) as u64,
            max_segment_bytes,
            budget,
            state: Mutex::new(State {
                ring: vec![None; ring_size.max(1)],
                next_write: 0,
                next_ticket: 1,
                run: 0,
                run_start: 0,
            }),
            closed: CancellationToken::new(),
            started: Notify::new(),
            last_activity_ms: AtomicU64::new(0),
            epoch,
            mpegts_memory,
            remux: RemuxSlot::default(),
            revision: AtomicU64::new(0),
            revised: Notify::new(),
            hls: HlsSlot::default(),
            activity: Activity::new(),
        };
        channel.touch();
        channel
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, for keeping (a reference count, no copy).
    pub(crate) fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }

    /// Whether the channel carries MPEG-TS (by its MIME type).
    pub(crate) fn is_mpegts(&self) -> bool {
        self.mpegts_memory.is_some()
    }

    pub(crate) fn remux_slot(&self) -> &RemuxSlot {
        &self.remux
    }

    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }

    pub(crate) fn hls_slot(&self) -> &HlsSlot {
        &self.hls
    }

    /// Counts a change to what the ring holds: a version installed, ended (complete or failed)
    /// or dropped, a publisher starting over. Cheap (an atomic add; waking nobody costs a lock
    /// of the notifier), and done once per segment event, never per chunk.
    pub(crate) fn revise(&self) {
        self.revision.fetch_add(1, Ordering::AcqRel);
        self.revised.notify_waiters();
    }

    /// The number of changes so far ([`Channel::revise`]): a version's state read after this is
    /// at least as new as the revision.
    pub(crate) fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Resolves once the revision is past `seen`, or the channel is closed.
    pub(crate) async fn revised_since(&self, seen: u64) {
        loop {
            let revised = self.revised.notified();
            tokio::pin!(revised);
            revised.as_mut().enable();
            if self.revision() != seen || self.is_closed() {
                return;
            }
            tokio::select! {
                _ = revised => {}
                _ = self.closed() => return,
            }
        }
    }

    /// The MIME type fixed at creation (may be empty); always a valid header value.
    pub fn mime(&self) -> &str {
        &self.mime
    }

    /// The write head: the seq after the one most recently started.
    pub fn next_write(&self) -> u64 {
        self.state.lock().next_write
    }

    /// What a publisher is told when its write to a version of this channel is refused (HTTP and
    /// in-process publishers alike).
    pub(crate) fn write_error(&self, err: WriteError) -> Error {
        match err {
            WriteError::TooLarge => Error::SegmentTooLarge {
                limit: self.max_segment_bytes,
            },
            WriteError::OverBudget { buffered, limit } => {
                Error::BudgetExhausted { buffered, limit }
            }
            WriteError::Closed(_) if self.is_closed() => Error::EndOfStream,
            WriteError::Closed(_) => Error::SegmentClosed,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the channel is closed.
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Records activity for the idle sweep.
    pub(crate) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last activity.
    pub fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_activity_ms.load(Ordering::Relaxed)))
    }

    /// A fresh version of `seq`, counted in the server's budget.
    fn new_version(&self, seq: u64) -> Arc<Segment> {
        Segment::with_budget(seq, self.budget.clone())
    }

    fn slot(&self, seq: u64) -> usize {
        (seq % self.ring_size) as usize
    }

    /// Puts `segment` in its slot, telling the previous occupant why it left.
    fn install(&self, state: &mut State, segment: Arc<Segment>, ticket: u64) {
        let seq = segment.seq();
        let slot = self.slot(seq);
        if let Some(old) = state.ring[slot].replace(segment) {
            let why = if old.seq() == seq {
                Removal::Replaced
            } else {
                Removal::Evicted
            };
            old.remove_from_ring(why, ticket);
        }
        self.revise();
    }

    /// Puts the write head of a channel nothing was written to at `seq`, so that its readers'
    /// `-1` waits for `seq` (a relayed channel whose origin is at `seq`). False, and nothing
    /// changed, once anything is in the ring.
    #[cfg(feature = "client")]
    pub(crate) fn begin_at(&self, seq: u64) -> bool {
        let mut state = self.state.lock();
        let empty = state.next_write == 0 && state.ring.iter().all(Option::is_none);
        if empty {
            state.next_write = seq;
            state.run_start = seq;
        }
        empty
    }

    /// The version of `seq` the ring holds, whatever its state (no placeholder is made).
    pub(crate) fn segment(&self, seq: u64) -> Option<Arc<Segment>> {
        self.held(&self.state.lock(), seq)
    }

    fn held(&self, state: &State, seq: u64) -> Option<Arc<Segment>> {
        state.ring[self.slot(seq)]
            .as_ref()
            .filter(|s| s.seq() == seq)
            .cloned()
    }

    /// Finds the version a GET of `param` reads, precreating a placeholder for the live edge (the
    /// grace rule: `seq == nextWrite`, and `1` while `nextWrite == 0`).
    pub(crate) fn lookup_for_read(&self, param: SeqParam) -> ReadLookup {
        let mut state = self.state.lock();
        let latest = state.next_write;
        let seq = param.resolve_for_read(latest);
        let closed = self.is_closed();
        // A failed version is not served (its bytes are incomplete); at the live edge a fresh
        // placeholder replaces it, so that subscribers can wait for the publisher's retry instead
        // of looping on 470.
        let held = self
            .held(&state, seq)
            .filter(|s| s.snapshot().status != Status::Failed);
        if let Some(segment) = held {
            return ReadLookup::Found { segment, latest };
        }
        if !closed && (seq == latest || (latest == 0 && seq == 1)) {
            let segment = self.new_version(seq);
            self.install(&mut state, segment.clone(), 0);
            return ReadLookup::Found { segment, latest };
        }
        ReadLookup::NotHeld {
            seq,
            latest,
            closed,
        }
    }

    /// Registers a publisher of `param` (`-1` is the write head). It waits on the version in the
    /// slot if that is this seq (unless failed); otherwise a fresh placeholder takes the slot. With
    /// `reset`, every version below the resolved seq is closed first (a restarted publisher).
    pub(crate) fn target_for_write(
        &self,
        param: SeqParam,
        reset: bool,
    ) -> Result<WriteTarget, Error> {
        let mut state = self.state.lock();
        if self.is_closed() {
            return Err(Error::EndOfStream);
        }
        let seq = param.resolve_for_write(state.next_write)?;
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        if reset {
            for segment in state.ring.iter().flatten() {
                if segment.seq() < seq {
                    segment.close(Status::Complete);
                }
            }
            self.revise();
        }
        let segment = match self.held(&state, seq) {
            Some(s) if s.snapshot().status != Status::Failed => s,
            _ => {
                let placeholder = self.new_version(seq);
                self.install(&mut state, placeholder.clone(), ticket);
                placeholder
            }
        };
        let placeholder = segment.snapshot().is_fresh();
        Ok(WriteTarget {
            seq,
            segment,
            placeholder,
            ticket,
            restart: reset || seq == 0,
        })
    }

    /// Whether a publisher still waiting for its first byte must give up, judged from its target
    /// version's state. Cheap; called on every change to that version.
    pub(crate) fn pending_end(&self, target: &WriteTarget, snap: Snapshot) -> Option<PendingEnd> {
        if self.is_closed() {
            return Some(PendingEnd::EndOfStream);
        }
        if snap.claimed_by > target.ticket || snap.replaced_by > target.ticket {
            return Some(PendingEnd::Superseded);
        }
        if target.placeholder && snap.claimed_by == 0 && snap.status != Status::Open {
            return Some(PendingEnd::Closed);
        }
        None
    }

    /// The publisher's first byte arrived: it claims its placeholder, or starts a new version that
    /// replaces whatever the slot holds. The write head moves past it ([`Channel::advance_head`]).
    pub(crate) fn start_writing(&self, target: &WriteTarget) -> Result<SegmentWriter, Error> {
        let mut state = self.state.lock();
        match self.pending_end(target, target.segment.snapshot()) {
            Some(PendingEnd::EndOfStream) => return Err(Error::EndOfStream),
            Some(PendingEnd::Superseded) => return Err(Error::Superseded),
            Some(PendingEnd::Closed) | None => {}
        }
        let in_slot = self
            .held(&state, target.seq)
            .is_some_and(|s| Arc::ptr_eq(&s, &target.segment));
        let claimed = if in_slot {
            target
                .segment
                .try_claim(target.ticket, self.max_segment_bytes)
        } else {
            None
        };
        let mut writer = match claimed {
            Some(writer) => writer,
            None => {
                let version = self.new_version(target.seq);
                let writer = version
                    .try_claim(target.ticket, self.max_segment_bytes)
                    .expect("a new version is fresh");
                self.install(&mut state, version, target.ticket);
                writer
            }
        };
        self.advance_head(&mut state, target);
        drop(state);
        self.started.notify_waiters();
        if let Some(memory) = &self.mpegts_memory {
            writer.measure_mpegts(memory);
        }
        self.touch();
        Ok(writer)
    }

    /// A placeholder the publisher waited on was closed before its first byte (for example by
    /// `DELETE /{name}/{seq}`): that counts as a zero-byte segment, so the write head moves past it
    /// if the empty segment is still in the ring.
    pub(crate) fn finish_closed_placeholder(&self, target: &WriteTarget) {
        let mut state = self.state.lock();
        if self
            .held(&state, target.seq)
            .is_some_and(|s| Arc::ptr_eq(&s, &target.segment))
        {
            self.advance_head(&mut state, target);
            drop(state);
            self.started.notify_waiters();
            self.touch();
        }
    }

    /// Resolves once the write head is past `seq` (or the channel is closed): for a reader that
    /// found nothing to read at the head and must not spin there.
    pub(crate) async fn wait_head_past(&self, seq: u64) {
        loop {
            let started = self.started.notified();
            tokio::pin!(started);
            started.as_mut().enable();
            if self.next_write() > seq || self.is_closed() {
                return;
            }
            tokio::select! {
                _ = started => {}
                _ = self.closed() => return,
            }
        }
    }

    /// Moves the write head to `seq + 1` for a segment that started (or ended empty). Only forward:
    /// a late write of an older seq (a retry, or a POST overtaken by the publisher's next one)
    /// must not pull the live edge back from under the subscribers waiting there. Back only for a
    /// publisher that starts over: one that sends `Lp-Trickle-Reset`, or one that writes seq 0,
    /// as the reference publishers do when they restart (their count starts at 0, and they send no
    /// header). The new run's next segments may already be under way (a POST can overtake the one
    /// before it): the head goes past them. What the ring holds at or above the new head from the
    /// previous run is dropped: its segments (a GET of those seqs waits for the new run instead
    /// of reading the old one), and placeholders above the head (their subscribers get 470 with
    /// the new head and resume there instead of waiting where nobody will write soon).
    fn advance_head(&self, state: &mut State, target: &WriteTarget) {
        let mut head = target.seq + 1;
        if head >= state.next_write {
            state.next_write = head;
            return;
        }
        if !target.restart {
            return;
        }
        let new_run = |snap: &Snapshot| {
            snap.claimed_by > target.ticket || (snap.status == Status::Open && snap.has_writer)
        };
        while self
            .held(state, head)
            .is_some_and(|s| new_run(&s.snapshot()))
        {
            head += 1;
        }
        state.next_write = head;
        state.run += 1;
        state.run_start = target.seq;
        self.revise();
        let previous_run = |s: &mut Arc<Segment>| {
            let snap = s.snapshot();
            let written = snap.claimed_by != 0;
            s.seq() >= head && !new_run(&snap) && (written || s.seq() > head)
        };
        for slot in state.ring.iter_mut() {
            if let Some(old) = slot.take_if(previous_run) {
                old.remove_from_ring(Removal::Evicted, target.ticket);
            }
        }
    }

    /// `DELETE /{name}/{seq}`: closes that segment normally (waiters wake, a waiting publisher gets a
    /// zero-byte completion, a writer in progress is cut off and told so).
    pub(crate) fn close_segment(&self, seq: u64) -> Result<(), Error> {
        let state = self.state.lock();
        let segment = self.held(&state, seq).ok_or(Error::NonexistentSegment)?;
        drop(state);
        segment.close(Status::Complete);
        self.revise();
        Ok(())
    }

    /// Closes the channel: waiting subscribers and preconnected publishers get end of stream, and a
    /// segment still being written fails (its readers must not take it as complete). Returns false
    /// if it was already closed.
    pub(crate) fn close(&self) -> bool {
        let ring = {
            let mut state = self.state.lock();
            if self.is_closed() {
                return false;
            }
            self.closed.cancel();
            std::mem::replace(&mut state.ring, vec![None; self.ring_size as usize])
        };
        for segment in ring.into_iter().flatten() {
            segment.close(Status::Failed);
        }
        self.revise();
        true
    }

    /// What is known about the data of the version of `seq` the ring holds, if any ([`Facts`]).
    pub fn segment_facts(&self, seq: u64) -> Option<Facts> {
        Some(self.held_version(seq)?.facts())
    }

    /// The version of `seq` the ring holds, in whatever state it is.
    pub(crate) fn held_version(&self, seq: u64) -> Option<Arc<Segment>> {
        self.held(&self.state.lock(), seq)
    }

    /// The publisher's run and every version the ring holds, by seq.
    pub(crate) fn ring_view(&self) -> RingView {
        let state = self.state.lock();
        let mut versions: Vec<_> = state.ring.iter().flatten().cloned().collect();
        versions.sort_unstable_by_key(|v| v.seq());
        RingView {
            run: state.run,
            run_start: state.run_start,
            versions,
        }
    }
}

/// Whether a channel's type says MPEG-TS, whose segments get their timing measured. The type is
/// not sniffed from the bytes: `trickle publish --mpegts` and other muxers declare it, and a
/// guess would meter channels that are not video.
fn is_mpegts(mime: &str) -> bool {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("video/mp2t")
}
