//! An MPEG-TS segmenter: cuts a live MPEG transport stream at video keyframes so that every piece
//! starts with PAT, PMT and a keyframe and decodes on its own.
//!
//! `trickle publish --mpegts` feeds stdin through a [`Segmenter`] and starts a new Trickle segment
//! at each [`Event::Start`]; the [`Event::Data`] that follow are written to that segment, and
//! [`Event::Clock`] lets the publisher pace a file in real time. A subscriber can therefore join at
//! any segment and start decoding immediately. The segmenter is a pure state machine (bytes in,
//! events out; no I/O, no async), so it is easy to test and to fuzz.
//!
//! We parse the handful of structures we need ourselves (packet header, adaptation field, PAT, PMT,
//! PES header PTS, Annex-B start codes) instead of using a TS crate: that is a few hundred lines,
//! the packets must pass through byte for byte (demuxer crates reassemble and hand out PES
//! payloads), and the input is arbitrary stdin, so every length read from the stream has to be
//! validated here anyway — owning the code keeps resynchronisation, the keyframe lookahead and the
//! memory bounds exactly as a live publisher needs them.
//!
//! This file holds the public types and the cutting decisions; the parsing lives beside it:
//! `packet` (188-byte packets and resynchronisation), `psi` (PAT/PMT sections), `pes` (PES headers
//! and the PTS timeline), `nal` (H.264/HEVC keyframe detection) and `lookahead` (holding packets
//! back until a video frame is known to be a keyframe or not). `meter` reuses them to measure a
//! segment's timing as it is written, for the server's segment facts. `discontinuity` marks a
//! segment sent after a skip (a live viewer that fell behind) as following a discontinuity.

mod discontinuity;
mod lookahead;
mod meter;
#[cfg(test)]
mod meter_tests;
pub(crate) mod nal;
pub(crate) mod packet;
pub(crate) mod pes;
pub(crate) mod psi;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;

pub use discontinuity::DiscontinuityMarker;
use lookahead::Lookahead;
pub use meter::{MeterMemory, Timing, TimingMeter};
pub use packet::PACKET_SIZE;
use packet::{Found, Packet, PacketSync};
use pes::{PTS_HZ, PesHeader, Timeline, parse_pes_header};
use psi::{PAT_PID, Program, SectionAssembler, Streams, parse_pat, parse_pmt};

/// How the segmenter cuts.
#[derive(Clone, Debug)]
pub struct SegmenterConfig {
    /// With video: cut at the first keyframe once the current segment is at least this long (by
    /// PTS). Zero = at every keyframe.
    pub min_duration: Duration,
    /// Without a video stream (audio-only): cut at the first audio PES start once the segment is
    /// at least this long. Must be > 0 (default 2 s); zero is treated as the default, since
    /// cutting at every audio frame would make segments of a few hundred bytes.
    pub audio_duration: Duration,
}

impl Default for SegmenterConfig {
    fn default() -> SegmenterConfig {
        SegmenterConfig {
            min_duration: Duration::ZERO,
            audio_duration: Duration::from_secs(2),
        }
    }
}

/// What the segmenter produces, in stream order.
///
/// Timestamps are "unwrapped": 90 kHz PTS of the stream used for cutting (video if any, else the
/// first audio stream), starting near the first PTS seen and carried on across the 33-bit
/// wrap-around. If the source's timestamps jump (more than 3 s back or 10 s forward: a restarted
/// or looped source), the timeline is stitched to continue just after the latest value, and the
/// next keyframe starts a new segment whatever `min_duration` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new segment begins; the Data events after it belong to it. The first event ever emitted
    /// is a Start. `pts` = unwrapped 90 kHz PTS of the frame it starts with (if known);
    /// `keyframe` = starts with a video keyframe (false for audio-only cuts).
    Start { keyframe: bool, pts: Option<u64> },
    /// Bytes of the current segment: whole 188-byte packets only, in order.
    Data(Bytes),
    /// Presentation clock: the unwrapped 90 kHz timestamp of the data that follows, for pacing
    /// (`-re`-like realtime publishing). Emitted when a PES with a PTS starts on the stream used
    /// for cutting, but only when it is later than the last Clock: video PTS go back and forth in
    /// decode order (B-frames), and a pacer wants a clock that only moves forward.
    Clock(u64),
}

/// Counters, for logging and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets accepted (sync byte found, no transport error).
    pub packets: u64,
    /// Bytes thrown away: garbage between packets, packets with transport_error_indicator set, a
    /// trailing partial packet.
    pub skipped_bytes: u64,
    /// Times the stream lost packet alignment and we hunted for sync again.
    pub resyncs: u64,
    /// Packets dropped because no segment could start yet (no tables, or no keyframe yet).
    pub dropped_before_keyframe: u64,
    /// Start events emitted.
    pub segments: u64,
}

/// Cuts an MPEG-TS byte stream into self-contained segments. See the module docs.
pub struct Segmenter {
    min_duration: u64,
    audio_duration: u64,
    stats: Stats,

    /// Splits the input into packets.
    sync: PacketSync,

    pat_assembler: SectionAssembler,
    pmt_assembler: SectionAssembler,
    /// The last complete PAT, as the packets that carried it.
    pat_packets: Option<Vec<u8>>,
    /// PMT PID of the first program in the last PAT.
    pmt_pid: Option<u16>,
    /// The last PMT received on `pmt_pid`.
    program: Option<Program>,
    /// PAT packets followed by PMT packets: what each segment starts with.
    tables: Option<Bytes>,
    /// The streams of the last PMT, kept while `program` is cleared, to notice changes.
    last_streams: Option<Streams>,

    /// A video PES start whose keyframe status is not known yet, with everything after it.
    lookahead: Option<Lookahead>,
    in_segment: bool,
    segment_start_pts: Option<u64>,
    /// Cut at the next opportunity whatever the duration: the stream changed (new video codec or
    /// PID) or its timestamps jumped, and a segment should not straddle that.
    force_cut: bool,
    /// Places the PTS of the stream used for cutting on a continuous timeline.
    timeline: Timeline,
    last_clock: Option<u64>,
    /// Packets of the current segment not yet handed out as a Data event.
    data: Vec<u8>,
}

impl Segmenter {
    pub fn new(config: SegmenterConfig) -> Segmenter {
        let audio_duration = if config.audio_duration.is_zero() {
            SegmenterConfig::default().audio_duration
        } else {
            config.audio_duration
        };
        Segmenter {
            min_duration: duration_to_ticks(config.min_duration),
            audio_duration: duration_to_ticks(audio_duration),
            stats: Stats::default(),
            sync: PacketSync::default(),
            pat_assembler: SectionAssembler::default(),
            pmt_assembler: SectionAssembler::default(),
            pat_packets: None,
            pmt_pid: None,
            program: None,
            tables: None,
            last_streams: None,
            lookahead: None,
            in_segment: false,
            segment_start_pts: None,
            force_cut: false,
            timeline: Timeline::default(),
            last_clock: None,
            data: Vec::new(),
        }
    }

    /// Feeds any number of bytes (arbitrary split points, not necessarily packet-aligned).
    pub fn push(&mut self, input: &[u8], out: &mut Vec<Event>) {
        let mut sync = std::mem::take(&mut self.sync);
        sync.push(input, |found| self.found(found, out));
        self.sync = sync;
        self.flush_data(out);
    }

    /// End of input: flushes whatever is buffered (a trailing partial packet is dropped and
    /// counted in skipped_bytes). A video PES still undecided is treated as not a keyframe.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        let mut sync = std::mem::take(&mut self.sync);
        sync.finish(|found| self.found(found, out));
        self.sync = sync;
        if let Some(lookahead) = self.lookahead.take() {
            self.resolve_lookahead(lookahead, false, out);
        }
        self.flush_data(out);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn found(&mut self, found: Found, out: &mut Vec<Event>) {
        match found {
            Found::Packet(packet) => self.handle_packet(packet, out),
            Found::Skipped(bytes) => self.stats.skipped_bytes += bytes as u64,
            Found::Resync => self.stats.resyncs += 1,
        }
    }

    fn handle_packet(&mut self, raw: &[u8; PACKET_SIZE], out: &mut Vec<Event>) {
        let Some(packet) = Packet::parse(raw) else {
            // transport_error_indicator: the demodulator says this packet is damaged.
            self.stats.skipped_bytes += PACKET_SIZE as u64;
            return;
        };
        self.stats.packets += 1;
        self.update_tables(&packet);
        self.route(&packet, out);
    }

    fn update_tables(&mut self, packet: &Packet) {
        if packet.pid == PAT_PID {
            let Some(complete) = self.pat_assembler.push(packet) else {
                return;
            };
            let Some(pmt_pid) = parse_pat(&complete.section) else {
                return;
            };
            self.pat_packets = Some(complete.packets);
            if pmt_pid != self.pmt_pid {
                // A new program map: forget the old one, so we never start a segment with a PMT
                // the PAT does not point to. Packets keep flowing into the current segment until
                // the new PMT arrives.
                self.pmt_pid = pmt_pid;
                self.program = None;
                self.pmt_assembler = SectionAssembler::default();
            }
            self.refresh_tables();
        } else if Some(packet.pid) == self.pmt_pid {
            let Some(complete) = self.pmt_assembler.push(packet) else {
                return;
            };
            let Some(streams) = parse_pmt(&complete.section) else {
                return;
            };
            if self.last_streams.is_some_and(|last| last != streams) {
                self.force_cut = true;
            }
            self.last_streams = Some(streams);
            self.program = Some(Program {
                packets: complete.packets,
                streams,
            });
            self.refresh_tables();
        }
    }

    fn refresh_tables(&mut self) {
        self.tables = match (&self.pat_packets, &self.program) {
            (Some(pat), Some(program)) => {
                let mut tables = Vec::with_capacity(pat.len() + program.packets.len());
                tables.extend_from_slice(pat);
                tables.extend_from_slice(&program.packets);
                Some(Bytes::from(tables))
            }
            _ => None,
        };
    }

    /// Decides where a packet goes: into a keyframe lookahead, the current segment, or nowhere.
    fn route(&mut self, packet: &Packet, out: &mut Vec<Event>) {
        let streams = self.program.as_ref().map(|program| program.streams);
        let video = streams.and_then(|streams| streams.video);

        // A lookahead begun under other tables (video PID or codec changed) cannot be judged with
        // the new ones: let it through as an ordinary frame.
        if let Some(lookahead) = &self.lookahead
            && video != Some((lookahead.pid, lookahead.codec))
            && let Some(lookahead) = self.lookahead.take()
        {
            self.resolve_lookahead(lookahead, false, out);
        }

        if let Some((pid, codec)) = video
            && packet.pid == pid
            && packet.unit_start
            && let Some(tables) = self.tables.clone()
        {
            // The next video PES settles the previous one: it had no VCL NAL unit we could see.
            if let Some(previous) = self.lookahead.take() {
                self.resolve_lookahead(previous, false, out);
            }
            let mut lookahead = Lookahead::new(pid, codec, tables, packet);
            match lookahead.feed_video(packet.payload) {
                Some(keyframe) => self.resolve_lookahead(lookahead, keyframe, out),
                None => self.lookahead = Some(lookahead),
            }
            return;
        }

        if let Some(lookahead) = &mut self.lookahead {
            lookahead.hold(packet.raw);
            let decision = if packet.pid == lookahead.pid {
                lookahead.feed_video(packet.payload)
            } else {
                None
            };
            let decision = decision.or_else(|| lookahead.over_budget().then_some(false));
            if let Some(keyframe) = decision
                && let Some(lookahead) = self.lookahead.take()
            {
                self.resolve_lookahead(lookahead, keyframe, out);
            }
            return;
        }

        if video.is_none()
            && let Some(audio) = streams.and_then(|streams| streams.audio)
            && packet.pid == audio
            && packet.unit_start
        {
            self.audio_unit_start(packet, out);
            return;
        }

        if self.in_segment {
            self.data.extend_from_slice(packet.raw);
        } else {
            self.stats.dropped_before_keyframe += 1;
        }
    }

    /// The lookahead's first video PES is now known to be a keyframe or not: cut if it is one
    /// and the segment is long enough, then release the held packets.
    fn resolve_lookahead(&mut self, lookahead: Lookahead, keyframe: bool, out: &mut Vec<Event>) {
        let pts = lookahead.pts.map(|pts| self.place_on_timeline(pts));
        let cut = keyframe && self.should_cut(pts, self.min_duration, true);
        if cut {
            self.start_segment(true, pts, out);
        }
        if self.in_segment {
            self.emit_clock(pts, out);
            if cut {
                self.data.extend_from_slice(&lookahead.tables);
            }
            self.data.extend_from_slice(&lookahead.packets);
        } else {
            self.stats.dropped_before_keyframe += lookahead.packet_count;
        }
    }

    /// Audio-only programs: cut at an audio PES start once the segment is long enough.
    fn audio_unit_start(&mut self, packet: &Packet, out: &mut Vec<Event>) {
        // Audio PES headers are short; if one does not fit in its first packet we just do not
        // know its PTS (and do not cut there).
        let pts = match parse_pes_header(packet.payload) {
            PesHeader::Parsed { pts, .. } => pts.map(|pts| self.place_on_timeline(pts)),
            PesHeader::Incomplete | PesHeader::Invalid => None,
        };
        let tables = self.tables.clone();
        let cut = tables.is_some() && self.should_cut(pts, self.audio_duration, false);
        if cut {
            self.start_segment(false, pts, out);
        }
        if self.in_segment {
            self.emit_clock(pts, out);
            if cut && let Some(tables) = tables {
                self.data.extend_from_slice(&tables);
            }
            self.data.extend_from_slice(packet.raw);
        } else {
            self.stats.dropped_before_keyframe += 1;
        }
    }

    fn place_on_timeline(&mut self, pts: u64) -> u64 {
        let (pts, discontinuity) = self.timeline.place(pts);
        self.force_cut |= discontinuity;
        pts
    }

    /// Whether a frame at `pts` may begin a new segment: always for the first one and after a
    /// stream change, otherwise once the current segment is `min_ticks` long (a keyframe earlier
    /// than the segment start is odd enough to cut at too). `cut_if_unknown` decides when either
    /// PTS is missing.
    fn should_cut(&self, pts: Option<u64>, min_ticks: u64, cut_if_unknown: bool) -> bool {
        if !self.in_segment || self.force_cut {
            return true;
        }
        match (pts, self.segment_start_pts) {
            (Some(pts), Some(start)) => pts.checked_sub(start).is_none_or(|d| d >= min_ticks),
            _ => cut_if_unknown,
        }
    }

    fn start_segment(&mut self, keyframe: bool, pts: Option<u64>, out: &mut Vec<Event>) {
        self.flush_data(out);
        out.push(Event::Start { keyframe, pts });
        self.stats.segments += 1;
        self.in_segment = true;
        self.segment_start_pts = pts;
        self.force_cut = false;
    }

    fn emit_clock(&mut self, pts: Option<u64>, out: &mut Vec<Event>) {
        if let Some(pts) = pts
            && self.last_clock.is_none_or(|last| pts > last)
        {
            self.flush_data(out);
            out.push(Event::Clock(pts));
            self.last_clock = Some(pts);
        }
    }

    fn flush_data(&mut self, out: &mut Vec<Event>) {
        if !self.data.is_empty() {
            out.push(Event::Data(Bytes::from(std::mem::take(&mut self.data))));
        }
    }
}

fn duration_to_ticks(duration: Duration) -> u64 {
    // as_nanos() < 2^95, times 90 000 < 2^112: no overflow in u128.
    u64::try_from(duration.as_nanos() * PTS_HZ / 1_000_000_000).unwrap_or(u64::MAX)
}
