//! Reassembling the PES packets of one elementary stream from its transport packets, for the
//! remuxer: the header is read with the segmenter's parser (it may straddle packets), the payload
//! is gathered until the PES ends (PES_packet_length says so, or the next PES starts, or the
//! segment ends). A PES is dropped, never handed out damaged or grown without bound: when packets
//! of it are missing (continuity counter gap), when it outgrows [`MAX_PES`], when its header is
//! invalid, or when its segment ends before its announced length.

use crate::media::mpegts::packet::Packet;
use crate::media::mpegts::pes::{PesHeader, parse_pes_header};

/// Largest PES payload we gather (a 4K keyframe is a few MB).
pub(super) const MAX_PES: usize = 8 * 1024 * 1024;
/// Longest PES header: 9 fixed bytes and up to 255 bytes of optional fields.
const MAX_PES_HEADER: usize = 9 + 255;

/// A complete PES packet: its raw 33-bit PTS and the elementary stream bytes. (Both timestamps
/// are reported when the header is read: see [`Completed::started`].)
pub(super) struct Pes {
    pub(super) pts: Option<u64>,
    pub(super) data: Vec<u8>,
}

enum Continuity {
    Next,
    Repeat,
    Gap,
}

enum State {
    /// Between PES packets (or dropping the rest of a bad one).
    Idle,
    /// Gathering a header that straddles packets.
    Header(Vec<u8>),
    Body {
        pes: Pes,
        /// Payload bytes still announced by PES_packet_length; None = unbounded.
        remaining: Option<usize>,
    },
}

pub(super) struct PesAssembler {
    state: State,
    continuity: Option<u8>,
    /// PES packets dropped (damaged, oversized, invalid, truncated).
    pub(super) dropped: u64,
}

/// What one transport packet did: the PES it ended (the previous one, at a unit start), the
/// timestamps (PTS, DTS) of a PES whose header it completed, and the PES it both started and
/// finished (a short one with a known length).
#[derive(Default)]
pub(super) struct Completed {
    pub(super) previous: Option<Pes>,
    pub(super) started: Option<(Option<u64>, Option<u64>)>,
    pub(super) current: Option<Pes>,
}

impl PesAssembler {
    pub(super) fn new() -> PesAssembler {
        PesAssembler {
            state: State::Idle,
            continuity: None,
            dropped: 0,
        }
    }

    /// Takes one transport packet of this stream.
    pub(super) fn push(&mut self, packet: &Packet) -> Completed {
        let mut completed = Completed::default();
        match self.continuity(packet) {
            Continuity::Next => {}
            Continuity::Repeat => return completed,
            Continuity::Gap => self.drop_current(),
        }
        if packet.unit_start {
            completed.previous = self.end_unbounded();
            self.state = State::Header(Vec::new());
        }
        completed.current = self.take_payload(packet.payload, &mut completed.started);
        completed
    }

    /// The segment ended: a PES of unknown length ends here; one still short of its announced
    /// length is truncated and dropped. The next segment starts afresh.
    pub(super) fn end_segment(&mut self) -> Option<Pes> {
        self.continuity = None;
        self.end_unbounded()
    }

    /// Checks the continuity counter of a packet carrying a payload: it counts up by one, unless
    /// the packet announces a discontinuity. A packet may legally be sent twice in a row (same
    /// counter): the repeat is skipped.
    fn continuity(&mut self, packet: &Packet) -> Continuity {
        let Some(counter) = packet.continuity else {
            return Continuity::Next;
        };
        let last = self.continuity.replace(counter);
        match last {
            _ if packet.discontinuity => Continuity::Next,
            None => Continuity::Next,
            Some(last) if last == counter => Continuity::Repeat,
            Some(last) if (last + 1) & 0x0f == counter => Continuity::Next,
            Some(_) => Continuity::Gap,
        }
    }

    fn drop_current(&mut self) {
        if !matches!(self.state, State::Idle) {
            self.dropped += 1;
        }
        self.state = State::Idle;
    }

    fn end_unbounded(&mut self) -> Option<Pes> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Body {
                pes,
                remaining: None,
            } => Some(pes),
            State::Idle => None,
            State::Header(_) | State::Body { .. } => {
                self.dropped += 1;
                None
            }
        }
    }

    fn take_payload(
        &mut self,
        mut payload: &[u8],
        started: &mut Option<(Option<u64>, Option<u64>)>,
    ) -> Option<Pes> {
        if let State::Header(head) = &mut self.state {
            let before = head.len();
            let n = payload.len().min(MAX_PES_HEADER - before);
            head.extend_from_slice(&payload[..n]);
            match parse_pes_header(head) {
                PesHeader::Incomplete if head.len() < MAX_PES_HEADER => return None,
                PesHeader::Incomplete | PesHeader::Invalid => {
                    self.drop_current();
                    return None;
                }
                PesHeader::Parsed {
                    length,
                    pts,
                    dts,
                    packet_length,
                } => {
                    let remaining = match packet_length {
                        0 => None,
                        n => match (6 + n).checked_sub(length) {
                            Some(remaining) => Some(remaining),
                            None => {
                                self.drop_current();
                                return None;
                            }
                        },
                    };
                    *started = Some((pts, dts));
                    payload = payload
                        .get(length.saturating_sub(before)..)
                        .unwrap_or_default();
                    let data = Vec::with_capacity(remaining.unwrap_or(payload.len()).min(MAX_PES));
                    self.state = State::Body {
                        pes: Pes { pts, data },
                        remaining,
                    };
                }
            }
        }
        let State::Body { pes, remaining } = &mut self.state else {
            return None;
        };
        let take = remaining.map_or(payload.len(), |r| r.min(payload.len()));
        if pes.data.len() + take > MAX_PES {
            self.drop_current();
            return None;
        }
        pes.data.extend_from_slice(&payload[..take]);
        if let Some(r) = remaining {
            *r -= take;
            if *r == 0 {
                let State::Body { pes, .. } = std::mem::replace(&mut self.state, State::Idle)
                else {
                    return None;
                };
                return Some(pes);
            }
        }
        None
    }
}
