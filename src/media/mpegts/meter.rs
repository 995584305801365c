//! The timing meter: measures one segment of a transport stream as its bytes pass (first PTS,
//! presentation duration, whether it starts with a keyframe), without holding or copying the
//! segment. The server runs one per segment of an MPEG-TS channel, fed with the publisher's chunks
//! as they are written; HLS playlists are built from what it measures.
//!
//! It reads only packet headers, the program tables and the PES headers of one stream (the video
//! stream, else the first audio stream, else, without tables, the first stream with a PTS), plus
//! the first video frame's NAL headers until its first slice. Chunks may split packets anywhere:
//! at most one partial packet is carried over. What it learns about the program (and the frame
//! interval) is handed to the next segment's meter as a [`MeterMemory`], since a segment need not
//! repeat the tables. Anything it cannot vouch for (lost packet alignment, a timestamp jump, no
//! PTS at all) is reported as unknown rather than as a number.

use super::nal::NalScanner;
use super::packet::{PACKET_SIZE, Packet, SYNC_BYTE};
use super::pes::{PTS_MODULUS, PesHeader, Timeline, parse_pes_header};
use super::psi::{PAT_PID, SectionAssembler, Streams, parse_pat, parse_pmt};

/// Longest PES header: 9 fixed bytes and up to 255 bytes of optional fields.
const MAX_PES_HEADER: usize = 9 + 255;
/// Bytes of the first video frame scanned for its first slice before giving up (as much as the
/// segmenter looks through for a frame announced as a random access point).
const KEYFRAME_SCAN: usize = 256 * 1024;

/// What one segment's meter hands to the next one of the same channel: where the program tables
/// point (a segment need not repeat them) and the frame interval (a one-frame segment has none of
/// its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeterMemory {
    pmt_pid: Option<u16>,
    streams: Option<Streams>,
    frame_ticks: Option<u64>,
}

/// What a meter measured over one segment. Timestamps count the 90 kHz MPEG clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// The earliest PTS of the measured stream: where the segment's presentation starts (with
    /// B-frames, earlier than the first frame's PTS in stream order). Raw 33-bit value.
    pub first_pts: Option<u64>,
    /// How long the segment plays: from its earliest PTS to its latest, plus how long the last
    /// frame is shown (estimated from the steps between PTS: see `PtsRange::interval`). Exact for
    /// constant frame rates; for audio measured by PES, a stream's very last PES may be shorter.
    pub duration_ticks: Option<u64>,
    /// Whether the first video frame is a keyframe; `None` without video or if it could not tell.
    pub keyframe: Option<bool>,
}

/// Measures one segment. Feed it with [`TimingMeter::push`], then read [`TimingMeter::finish`].
pub struct TimingMeter {
    memory: MeterMemory,
    /// `memory` changed since [`TimingMeter::take_learned`] last looked.
    learned: bool,
    /// A packet split across chunks: its first `carry_len` bytes.
    carry: [u8; PACKET_SIZE],
    carry_len: usize,
    /// Packet alignment was lost: nothing measured from here on can be trusted, so the meter stops.
    damaged: bool,
    pat: SectionAssembler,
    pmt: SectionAssembler,
    /// The PID measured, fixed at the first PTS it gives.
    pid: Option<u16>,
    head: PesHead,
    probe: Probe,
    range: PtsRange,
}

/// The start of the measured stream's current PES, gathered while its header straddles packets.
struct PesHead {
    buf: [u8; MAX_PES_HEADER],
    len: usize,
    pending: bool,
}

/// Whether the segment's first video frame is a keyframe, found by scanning its NAL headers.
enum Probe {
    NotStarted,
    Scanning { scanner: NalScanner, scanned: usize },
    Done(Option<bool>),
}

/// The PTS seen so far, placed on one timeline (wrap-around unwrapped; B-frames go back and forth).
#[derive(Default)]
struct PtsRange {
    timeline: Timeline,
    last: Option<i64>,
    min: i64,
    max: i64,
    /// The last step forward between consecutive PTS.
    last_step: Option<u64>,
    /// Smallest nonzero step between consecutive PTS.
    min_step: Option<u64>,
    /// Some PTS came before its predecessor: frames are reordered (B-frames).
    reordered: bool,
    /// A step too large (or too far back) to be time passing: a spliced or restarted source.
    jumped: bool,
}

impl TimingMeter {
    /// A meter for the next segment of a channel, knowing what the previous segments taught.
    pub fn new(memory: MeterMemory) -> TimingMeter {
        TimingMeter {
            memory,
            learned: false,
            carry: [0; PACKET_SIZE],
            carry_len: 0,
            damaged: false,
            pat: SectionAssembler::sections_only(),
            pmt: SectionAssembler::sections_only(),
            pid: None,
            head: PesHead {
                buf: [0; MAX_PES_HEADER],
                len: 0,
                pending: false,
            },
            probe: Probe::NotStarted,
            range: PtsRange::default(),
        }
    }

    /// The next bytes of the segment, split anywhere.
    pub fn push(&mut self, mut input: &[u8]) {
        if self.damaged {
            return;
        }
        if self.carry_len > 0 {
            let n = (PACKET_SIZE - self.carry_len).min(input.len());
            let (head, rest) = input.split_at(n);
            self.carry[self.carry_len..self.carry_len + n].copy_from_slice(head);
            self.carry_len += n;
            input = rest;
            if self.carry_len < PACKET_SIZE {
                return;
            }
            self.carry_len = 0;
            let packet = self.carry;
            self.packet(&packet);
        }
        while let Some(raw) = input.first_chunk::<PACKET_SIZE>() {
            if raw[0] != SYNC_BYTE {
                self.damaged = true;
                return;
            }
            self.packet(raw);
            input = &input[PACKET_SIZE..];
        }
        if input.first().is_some_and(|&b| b != SYNC_BYTE) {
            self.damaged = true;
            return;
        }
        self.carry[..input.len()].copy_from_slice(input);
        self.carry_len = input.len();
    }

    /// What the next segment's meter should start from, if it changed since the last call (a
    /// caller sharing it between segments updates its copy only then).
    pub fn take_learned(&mut self) -> Option<MeterMemory> {
        std::mem::take(&mut self.learned).then_some(self.memory)
    }

    /// The measurements, at the end of the segment. A trailing partial packet is ignored (it
    /// cannot hold anything a player would show). Also records the frame interval for the next
    /// segment ([`TimingMeter::take_learned`]).
    pub fn finish(&mut self) -> Timing {
        let keyframe = match self.probe {
            Probe::Done(verdict) => verdict,
            Probe::NotStarted | Probe::Scanning { .. } => None,
        };
        let range = &self.range;
        if self.damaged || range.jumped || range.last.is_none() {
            return Timing {
                keyframe,
                ..Timing::default()
            };
        }
        let measured = range.interval();
        if measured.is_some() && measured != self.memory.frame_ticks {
            self.memory.frame_ticks = measured;
            self.learned = true;
        }
        let interval = measured.or(self.memory.frame_ticks);
        Timing {
            first_pts: Some(range.min.rem_euclid(PTS_MODULUS) as u64),
            duration_ticks: interval.map(|frame| range.max.abs_diff(range.min) + frame),
            keyframe,
        }
    }

    fn packet(&mut self, raw: &[u8; PACKET_SIZE]) {
        // transport_error_indicator: the packet is damaged, but alignment is not lost.
        let Some(packet) = Packet::parse(raw) else {
            return;
        };
        if packet.pid == PAT_PID {
            self.program_association(&packet);
        } else if Some(packet.pid) == self.memory.pmt_pid {
            self.program_map(&packet);
        } else {
            self.elementary(&packet);
        }
    }

    fn program_association(&mut self, packet: &Packet) {
        let Some(pmt_pid) = self.pat.push(packet).and_then(|c| parse_pat(&c.section)) else {
            return;
        };
        if pmt_pid != self.memory.pmt_pid {
            self.memory.pmt_pid = pmt_pid;
            self.memory.streams = None;
            self.pmt = SectionAssembler::sections_only();
            self.learned = true;
        }
    }

    fn program_map(&mut self, packet: &Packet) {
        let Some(streams) = self.pmt.push(packet).and_then(|c| parse_pmt(&c.section)) else {
            return;
        };
        if self.memory.streams != Some(streams) {
            self.memory.streams = Some(streams);
            self.learned = true;
        }
    }

    /// The stream the tables say to measure: video, else audio.
    fn preferred_pid(&self) -> Option<u16> {
        let streams = self.memory.streams?;
        streams.video.map(|(pid, _)| pid).or(streams.audio)
    }

    fn elementary(&mut self, packet: &Packet) {
        // The stream fixed by its first PTS stays measured even if a new PMT names another.
        match self.pid.or_else(|| self.preferred_pid()) {
            Some(pid) if packet.pid == pid => self.timed_packet(packet),
            Some(_) => {}
            // No tables (or none naming video or audio): the first stream with a PTS is measured.
            None if packet.unit_start => {
                if let PesHeader::Parsed { pts: Some(_), .. } = parse_pes_header(packet.payload) {
                    self.timed_packet(packet);
                }
            }
            None => {}
        }
    }

    fn timed_packet(&mut self, packet: &Packet) {
        let payload = packet.payload;
        if packet.unit_start {
            // A new frame before the first one showed a slice: the first was no keyframe.
            if let Probe::Scanning { .. } = self.probe {
                self.probe = Probe::Done(Some(false));
            }
            self.head.pending = false;
            match parse_pes_header(payload) {
                PesHeader::Parsed { length, pts, .. } => {
                    self.pes_started(packet.pid, pts, payload.get(length..).unwrap_or_default());
                }
                PesHeader::Incomplete => {
                    self.head.len = payload.len().min(MAX_PES_HEADER);
                    self.head.buf[..self.head.len].copy_from_slice(&payload[..self.head.len]);
                    self.head.pending = true;
                }
                PesHeader::Invalid => self.pes_invalid(),
            }
        } else if self.head.pending {
            let before = self.head.len;
            let n = payload.len().min(MAX_PES_HEADER - before);
            self.head.buf[before..before + n].copy_from_slice(&payload[..n]);
            self.head.len += n;
            match parse_pes_header(&self.head.buf[..self.head.len]) {
                PesHeader::Parsed { length, pts, .. } => {
                    self.head.pending = false;
                    let rest = payload
                        .get(length.saturating_sub(before)..)
                        .unwrap_or_default();
                    self.pes_started(packet.pid, pts, rest);
                }
                PesHeader::Incomplete => {}
                PesHeader::Invalid => {
                    self.head.pending = false;
                    self.pes_invalid();
                }
            }
        } else {
            self.probe_video(payload);
        }
    }

    /// A PES of the measured stream began: its PTS counts, and if it is the first video frame,
    /// its NAL units tell whether the segment starts with a keyframe.
    fn pes_started(&mut self, pid: u16, pts: Option<u64>, data: &[u8]) {
        if let Some(pts) = pts {
            self.pid.get_or_insert(pid);
            self.range.record(pts);
        }
        if let Probe::NotStarted = self.probe {
            let video = self.memory.streams.and_then(|s| s.video);
            self.probe = match video {
                Some((video_pid, codec)) if video_pid == pid => Probe::Scanning {
                    scanner: NalScanner::new(codec),
                    scanned: 0,
                },
                _ => Probe::Done(None),
            };
        }
        self.probe_video(data);
    }

    fn pes_invalid(&mut self) {
        if let Probe::NotStarted = self.probe {
            self.probe = Probe::Done(None);
        }
    }

    fn probe_video(&mut self, data: &[u8]) {
        let Probe::Scanning { scanner, scanned } = &mut self.probe else {
            return;
        };
        *scanned += data.len();
        if let Some(keyframe) = scanner.scan(data) {
            self.probe = Probe::Done(Some(keyframe));
        } else if *scanned > KEYFRAME_SCAN {
            self.probe = Probe::Done(None);
        }
    }
}

impl PtsRange {
    fn record(&mut self, pts: u64) {
        let (placed, jumped) = self.timeline.place_signed(pts);
        self.jumped |= jumped;
        match self.last {
            None => (self.min, self.max) = (placed, placed),
            Some(last) => {
                let step = placed.abs_diff(last);
                if step > 0 {
                    self.min_step = Some(self.min_step.map_or(step, |s| s.min(step)));
                }
                if placed > last {
                    self.last_step = Some(step);
                }
                self.reordered |= placed < last;
                self.min = self.min.min(placed);
                self.max = self.max.max(placed);
            }
        }
        self.last = Some(placed);
    }

    /// How long the last frame (or PES) is shown. In order, the last step is the best guess: an
    /// audio PES often carries several frames, and only the first PES of a stream is shorter. With
    /// B-frames the steps go back and forth, but decode order still steps by one frame somewhere
    /// in every GOP: the smallest step is the frame interval.
    fn interval(&self) -> Option<u64> {
        if self.reordered {
            self.min_step
        } else {
            self.last_step
        }
    }
}
