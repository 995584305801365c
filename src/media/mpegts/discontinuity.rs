//! Marks a transport stream segment as discontinuous, for a live viewer that skipped segments: the
//! packets it receives next do not follow the ones it received last (continuity counters jump,
//! and so do the clock references and timestamps).
//!
//! Before the first packet of each PID in the segment (null packets aside) the
//! [`DiscontinuityMarker`] inserts one generated packet of that PID: adaptation field only
//! (`adaptation_field_control` = `10`), `adaptation_field_length` 183, `discontinuity_indicator`
//! set, the rest stuffing. Its continuity counter is the one that makes the segment's own first
//! packet follow it: one less when that packet carries a payload, the same when it does not
//! (packets without payload do not advance the counter). A demuxer thus accepts the jump from the
//! previous segment at the generated packet, and every packet of the segment after it counts on
//! without an error.
//!
//! Why a generated packet rather than setting the flag in the segment's own first packet: that
//! works only when the packet already has an adaptation field (PAT, PMT and most audio packets do
//! not, and giving them one would shift their payload into the next packet, all the way to the end
//! of the PES), and it would cost a copy of the packet. One rule covers every PID and leaves every
//! byte of the segment as it was, so the segment's bytes go out as slices of the chunks given.
//!
//! On the PID that carries the clock (PCR), a clock discontinuity is declared in the packet that
//! carries the first reference of the new clock, and the continuity counter may jump only there.
//! So when the segment's first packet of a PID carries a PCR (a muxer puts one at a keyframe), the
//! generated packet carries the same PCR: it is then that packet, and the discontinuity begins and
//! ends in it. (If the first packet has no PCR we do not flag the packets up to the first one that
//! does; that would mean rewriting them, and demuxers do not need it.)
//!
//! Input that is not a 188-byte aligned transport stream (no sync byte where a packet is due) is
//! passed on untouched from there: this must never corrupt a segment it does not understand.

use std::collections::VecDeque;

use bytes::Bytes;

use super::packet::{
    DISCONTINUITY, HEADER_SIZE, Header, NULL_PID, PACKET_SIZE, PCR_FLAG, SYNC_BYTE, adaptation,
};

/// The most of a packet read before deciding about it: header, adaptation_field_length, flags and
/// the 6-byte PCR.
const HEAD_MAX: usize = HEADER_SIZE + 2 + PCR_SIZE;
const PCR_SIZE: usize = 6;
/// adaptation_field_control = 10: adaptation field only, no payload.
const ADAPTATION_ONLY: u8 = 0x20;
const PIDS: usize = 0x2000;

/// Makes the first packet of every PID in one segment follow a discontinuity. Feed it the
/// segment's chunks as they come (any sizes, packets split anywhere), then call
/// [`DiscontinuityMarker::finish`]; send what it pushes instead of the chunks. It copies none of
/// the segment's bytes and holds back at most the first 11 bytes of one packet (as slices).
pub struct DiscontinuityMarker {
    /// Bytes of the current packet already taken in (0: at a packet boundary).
    into_packet: usize,
    /// Whether the current packet has been looked at; the rest of it just flows.
    decided: bool,
    /// The start of an undecided packet split across chunks, copied to be read; what is sent is
    /// `held`.
    head: [u8; HEAD_MAX],
    /// The start of an undecided packet, as slices of the chunks it came in: held back until we
    /// know whether a generated packet goes before it.
    held: Vec<Bytes>,
    /// The PIDs that already had their first packet.
    seen: Box<[u64; PIDS / 64]>,
    /// Not an aligned transport stream: everything passes untouched from here on.
    alien: bool,
}

/// What to do with a packet, judged from its first bytes.
enum Verdict {
    /// More of its start is needed.
    NeedMore,
    /// No sync byte: not (or no longer) an aligned transport stream.
    Alien,
    /// Send it as it is.
    Keep,
    /// Send this generated packet before it.
    Insert(Bytes),
}

impl Default for DiscontinuityMarker {
    fn default() -> Self {
        Self::new()
    }
}

impl DiscontinuityMarker {
    pub fn new() -> Self {
        DiscontinuityMarker {
            into_packet: 0,
            decided: false,
            head: [0; HEAD_MAX],
            held: Vec::new(),
            seen: Box::new([0; PIDS / 64]),
            alien: false,
        }
    }

    /// The frames to send instead of `chunk`, in order, pushed onto `out`: slices of `chunk` (and
    /// of earlier chunks, held back) and generated 188-byte packets.
    pub fn feed(&mut self, chunk: Bytes, out: &mut VecDeque<Bytes>) {
        // chunk[run..pos] has been judged and is sent as one slice.
        let mut run = 0;
        let mut pos = 0;
        while pos < chunk.len() && !self.alien {
            if self.decided {
                let step = (PACKET_SIZE - self.into_packet).min(chunk.len() - pos);
                pos += step;
                self.into_packet += step;
                if self.into_packet == PACKET_SIZE {
                    self.into_packet = 0;
                    self.decided = false;
                }
                continue;
            }
            let rest = &chunk[pos..];
            let verdict = if self.into_packet == 0 {
                judge(&mut self.seen, rest)
            } else {
                // The packet's start came in earlier chunks: read on from a copy.
                let taken = self.into_packet;
                let more = (HEAD_MAX - taken).min(rest.len());
                self.head[taken..taken + more].copy_from_slice(&rest[..more]);
                judge(&mut self.seen, &self.head[..taken + more])
            };
            match verdict {
                Verdict::NeedMore => {
                    // Only when the chunk ends within the packet's first bytes.
                    let taken = self.into_packet;
                    self.head[taken..taken + rest.len()].copy_from_slice(rest);
                    self.into_packet += rest.len();
                    push(out, &chunk, run, pos);
                    self.held.push(chunk.slice(pos..));
                    return;
                }
                Verdict::Alien => self.alien = true,
                Verdict::Keep => self.decided = true,
                Verdict::Insert(packet) => {
                    // Held slices exist only at the start of a chunk, with nothing of it judged.
                    push(out, &chunk, run, pos);
                    run = pos;
                    out.push_back(packet);
                    self.decided = true;
                }
            }
            out.extend(self.held.drain(..));
        }
        push(out, &chunk, run, chunk.len());
    }

    /// The segment ended: push whatever is held back (the start of a packet cut short, as it was).
    pub fn finish(&mut self, out: &mut VecDeque<Bytes>) {
        out.extend(self.held.drain(..));
        self.into_packet = 0;
        self.decided = false;
    }
}

/// Pushes `chunk[from..to]` unless it is empty.
fn push(out: &mut VecDeque<Bytes>, chunk: &Bytes, from: usize, to: usize) {
    if from < to {
        out.push_back(chunk.slice(from..to));
    }
}

/// Judges a packet from its first bytes (`start`, at least one).
fn judge(seen: &mut [u64; PIDS / 64], start: &[u8]) -> Verdict {
    match start.first() {
        None => return Verdict::NeedMore,
        Some(&SYNC_BYTE) => {}
        Some(_) => return Verdict::Alien,
    }
    let Some(raw) = start.first_chunk::<HEADER_SIZE>() else {
        return Verdict::NeedMore;
    };
    let header = Header::parse(raw);
    let (word, bit) = (usize::from(header.pid) / 64, 1u64 << (header.pid % 64));
    // A damaged packet's PID cannot be trusted; null packets are padding, not a stream.
    if header.transport_error || header.pid == NULL_PID || seen[word] & bit != 0 {
        return Verdict::Keep;
    }
    if header.has_adaptation && start.len() < HEADER_SIZE + 2 {
        return Verdict::NeedMore;
    }
    let pcr = match adaptation(&header, start) {
        Some((length, flags)) if flags & PCR_FLAG != 0 && length > PCR_SIZE => {
            let Some(pcr) = start.get(HEADER_SIZE + 2..HEAD_MAX) else {
                return Verdict::NeedMore;
            };
            pcr.first_chunk::<PCR_SIZE>().copied()
        }
        _ => None,
    };
    seen[word] |= bit;
    let continuity = if header.has_payload {
        header.continuity.wrapping_sub(1) & 0x0f
    } else {
        header.continuity
    };
    Verdict::Insert(discontinuity_packet(header.pid, continuity, pcr))
}

/// An adaptation-field-only packet of `pid` with the discontinuity indicator set (and `pcr`).
fn discontinuity_packet(pid: u16, continuity: u8, pcr: Option<[u8; PCR_SIZE]>) -> Bytes {
    let mut packet = vec![0xff; PACKET_SIZE];
    let flags = DISCONTINUITY | pcr.map_or(0, |_| PCR_FLAG);
    packet[..HEADER_SIZE + 2].copy_from_slice(&[
        SYNC_BYTE,
        (pid >> 8) as u8 & 0x1f,
        pid as u8,
        ADAPTATION_ONLY | continuity,
        (PACKET_SIZE - HEADER_SIZE - 1) as u8,
        flags,
    ]);
    if let Some(pcr) = pcr {
        packet[HEADER_SIZE + 2..HEAD_MAX].copy_from_slice(&pcr);
    }
    Bytes::from(packet)
}

#[cfg(test)]
#[path = "discontinuity_tests.rs"]
mod tests;
