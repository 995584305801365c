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

use std::time::Duration;

use bytes::Bytes;

/// Size of one transport stream packet.
pub const PACKET_SIZE: usize = 188;

const SYNC_BYTE: u8 = 0x47;
const PAT_PID: u16 = 0x0000;
/// PTS and DTS count a 90 kHz clock in 33 bits.
const PTS_HZ: u128 = 90_000;
const PTS_MODULUS: i64 = 1 << 33;
/// Steps between consecutive timestamps of the cutting stream beyond these are discontinuities (a
/// restarted, looped or spliced source), not time passing. Backwards, decode order legitimately
/// goes back by the B-frame reorder delay (well under a second); forwards, by a frame or a few.
const MAX_STEP_BACK: i64 = 3 * 90_000;
const MAX_STEP_FORWARD: i64 = 10 * 90_000;
/// Largest `section_length` of a PAT or PMT (ISO/IEC 13818-1 limits PSI sections to 1024 bytes).
const MAX_SECTION_LENGTH: usize = 1021;
/// A section is dropped if it has not completed within this many packets (tiny payloads could
/// otherwise make us hold many packets for one 1 KiB section).
const MAX_SECTION_PACKETS: usize = 8;
/// Video payload we scan for the first VCL NAL unit before giving up ("not a keyframe").
const VIDEO_LOOKAHEAD: usize = 64 * 1024;
/// The same when the packet carried random_access_indicator: a keyframe is announced, so its
/// parameter sets and SEI may be large and are worth looking further into.
const VIDEO_LOOKAHEAD_RANDOM_ACCESS: usize = 256 * 1024;
/// Packets of all PIDs held during one lookahead (guards against a sparse video PID).
const MAX_LOOKAHEAD_BYTES: usize = 2 * 1024 * 1024;

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

    /// Input not yet consumed: less than a packet while in sync, at most three packets (plus the
    /// input of the current push) while hunting.
    pending: Vec<u8>,
    synced: bool,

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
            pending: Vec::new(),
            // Optimistic: a clean stream is taken from its first byte; if that is not a sync
            // byte we count a resync and hunt like anywhere else.
            synced: true,
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
        self.pending.extend_from_slice(input);
        self.consume_pending(false, out);
        self.flush_data(out);
    }

    /// End of input: flushes whatever is buffered (a trailing partial packet is dropped and
    /// counted in skipped_bytes). A video PES still undecided is treated as not a keyframe.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.consume_pending(true, out);
        self.stats.skipped_bytes += self.pending.len() as u64;
        self.pending.clear();
        if let Some(lookahead) = self.lookahead.take() {
            self.resolve_lookahead(lookahead, false, out);
        }
        self.flush_data(out);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Splits `pending` into packets, hunting for sync where the stream is misaligned.
    fn consume_pending(&mut self, at_end: bool, out: &mut Vec<Event>) {
        let mut pending = std::mem::take(&mut self.pending);
        let mut pos = 0;
        loop {
            let rest = pending.get(pos..).unwrap_or_default();
            if self.synced {
                let Some(packet) = rest.first_chunk::<PACKET_SIZE>() else {
                    break;
                };
                if packet[0] == SYNC_BYTE {
                    match judge_packet(rest, at_end) {
                        Judgement::Accept => {
                            self.handle_packet(packet, out);
                            pos += PACKET_SIZE;
                            continue;
                        }
                        Judgement::NeedMore => break,
                        Judgement::Reject => {}
                    }
                }
                self.synced = false;
                self.stats.resyncs += 1;
            }
            match find_sync(rest, at_end) {
                SyncSearch::Found(offset) => {
                    self.stats.skipped_bytes += offset as u64;
                    pos += offset;
                    self.synced = true;
                }
                SyncSearch::NeedMore(offset) => {
                    self.stats.skipped_bytes += offset as u64;
                    pos += offset;
                    break;
                }
            }
        }
        pending.drain(..pos.min(pending.len()));
        self.pending = pending;
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

/// Outcome of looking for packet alignment in a buffer.
#[derive(Debug, PartialEq, Eq)]
enum SyncSearch {
    /// A packet starts at this offset.
    Found(usize),
    /// No packet can start before this offset; more input is needed to judge the rest.
    NeedMore(usize),
}

/// Whether the packet at the start of `buf` (which begins with a sync byte) is real.
enum Judgement {
    Accept,
    /// A stray 0x47 in garbage: a properly synced stream starts inside this "packet".
    Reject,
    NeedMore,
}

/// A packet whose successor starts with a sync byte is accepted. Otherwise it is accepted only if
/// no synced stream begins inside it: that tells a real packet followed by garbage (keep it) from
/// a stray 0x47 in garbage right before a real packet (drop it, or its bytes would corrupt the
/// stream).
fn judge_packet(buf: &[u8], at_end: bool) -> Judgement {
    match buf.get(PACKET_SIZE) {
        Some(&SYNC_BYTE) => return Judgement::Accept,
        None if at_end => return Judgement::Accept,
        None => return Judgement::NeedMore,
        Some(_) => {}
    }
    match find_sync(buf.get(1..).unwrap_or_default(), at_end) {
        SyncSearch::Found(offset) if offset < PACKET_SIZE => Judgement::Reject,
        SyncSearch::NeedMore(offset) if offset < PACKET_SIZE && !at_end => Judgement::NeedMore,
        _ => Judgement::Accept,
    }
}

/// Finds an offset where a sync byte repeats at +188 and +376. Requiring three in a row makes a
/// false lock on a stray 0x47 in the payload unlikely, and judging only with all three visible
/// (unless at the end of input) makes the result independent of how the input was split.
fn find_sync(buf: &[u8], at_end: bool) -> SyncSearch {
    let mut from = 0;
    while let Some(found) = buf
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == SYNC_BYTE))
    {
        let start = from + found;
        let next = buf.get(start + PACKET_SIZE).copied();
        let after = buf.get(start + 2 * PACKET_SIZE).copied();
        match (next, after) {
            (Some(next), _) if next != SYNC_BYTE => {}
            (Some(_), Some(after)) if after != SYNC_BYTE => {}
            (Some(_), Some(_)) => return SyncSearch::Found(start),
            (Some(_), None) if at_end => return SyncSearch::Found(start),
            // At the end a single packet is all there is to check.
            (None, _) if at_end && start + PACKET_SIZE == buf.len() => {
                return SyncSearch::Found(start);
            }
            _ if at_end => {}
            _ => return SyncSearch::NeedMore(start),
        }
        from = start + 1;
    }
    SyncSearch::NeedMore(buf.len())
}

/// The parts of a transport stream packet we use.
struct Packet<'a> {
    raw: &'a [u8; PACKET_SIZE],
    pid: u16,
    /// payload_unit_start_indicator: a PES or PSI section starts in this packet.
    unit_start: bool,
    random_access: bool,
    payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Returns None if transport_error_indicator is set.
    fn parse(raw: &'a [u8; PACKET_SIZE]) -> Option<Packet<'a>> {
        if raw[1] & 0x80 != 0 {
            return None;
        }
        let pid = u16::from(raw[1] & 0x1f) << 8 | u16::from(raw[2]);
        let unit_start = raw[1] & 0x40 != 0;
        let control = (raw[3] >> 4) & 0x3;
        let has_adaptation = control & 0x2 != 0;
        let has_payload = control & 0x1 != 0;
        let mut payload_start = 4;
        let mut random_access = false;
        if has_adaptation {
            let length = usize::from(raw[4]);
            random_access = (1..=183).contains(&length) && raw[5] & 0x40 != 0;
            payload_start = 5 + length;
        }
        // An adaptation field longer than the packet leaves no (trustworthy) payload.
        let payload = if has_payload {
            raw.get(payload_start..).unwrap_or_default()
        } else {
            &[]
        };
        Some(Packet {
            raw,
            pid,
            unit_start,
            random_access,
            payload,
        })
    }
}

/// A PSI section completed by [`SectionAssembler::push`].
struct CompleteSection {
    section: Vec<u8>,
    /// The packets that carried it, verbatim.
    packets: Vec<u8>,
}

/// Reassembles PSI sections (PAT, PMT) that may span packets, remembering the packets.
#[derive(Default)]
struct SectionAssembler {
    section: Vec<u8>,
    packets: Vec<u8>,
    active: bool,
}

impl SectionAssembler {
    fn push(&mut self, packet: &Packet) -> Option<CompleteSection> {
        if !packet.unit_start {
            if !self.active || packet.payload.is_empty() {
                return None;
            }
            self.packets.extend_from_slice(packet.raw);
            self.section.extend_from_slice(packet.payload);
            return self.try_complete();
        }
        // pointer_field: how many bytes finish the previous section before the new one starts.
        let (&pointer, rest) = packet.payload.split_first()?;
        let pointer = usize::from(pointer);
        let mut previous = None;
        if self.active
            && let Some(tail) = rest.get(..pointer)
        {
            self.packets.extend_from_slice(packet.raw);
            self.section.extend_from_slice(tail);
            previous = self.try_complete();
        }
        self.reset();
        let Some(start) = rest.get(pointer..) else {
            return previous;
        };
        // table_id 0xFF is stuffing: no section starts here.
        if start.first().is_none_or(|&table_id| table_id == 0xff) {
            return previous;
        }
        self.active = true;
        self.packets.extend_from_slice(packet.raw);
        self.section.extend_from_slice(start);
        self.try_complete().or(previous)
    }

    fn try_complete(&mut self) -> Option<CompleteSection> {
        if self.packets.len() > MAX_SECTION_PACKETS * PACKET_SIZE {
            self.reset();
            return None;
        }
        let header = self.section.get(..3)?;
        let length = usize::from(header[1] & 0x0f) << 8 | usize::from(header[2]);
        if length > MAX_SECTION_LENGTH {
            self.reset();
            return None;
        }
        let total = 3 + length;
        let section = self.section.get(..total)?.to_vec();
        let packets = std::mem::take(&mut self.packets);
        self.reset();
        Some(CompleteSection { section, packets })
    }

    fn reset(&mut self) {
        self.section.clear();
        self.packets.clear();
        self.active = false;
    }
}

/// The body of a long-form PSI section (between the 8-byte header and the CRC), if it is a
/// currently applicable section of the given table. The CRC is not checked: a corrupted table
/// at worst gives a segment a bad PMT copy, and the next one repairs it.
fn section_body(section: &[u8], table_id: u8) -> Option<&[u8]> {
    if section.first() != Some(&table_id) || section.len() < 12 {
        return None;
    }
    // current_next_indicator = 0 announces a future table; it does not apply yet.
    if section[5] & 0x01 == 0 {
        return None;
    }
    section.get(8..section.len() - 4)
}

/// The PMT PID of the first program in a PAT (program 0 is the network PID, not a program).
/// Outer None: not a usable PAT; inner None: a PAT without programs.
fn parse_pat(section: &[u8]) -> Option<Option<u16>> {
    let body = section_body(section, 0x00)?;
    Some(body.chunks_exact(4).find_map(|entry| {
        let program_number = u16::from(entry[0]) << 8 | u16::from(entry[1]);
        (program_number != 0).then(|| u16::from(entry[2] & 0x1f) << 8 | u16::from(entry[3]))
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VideoCodec {
    H264,
    Hevc,
}

/// What the PMT tells us: the first video and the first audio stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Streams {
    video: Option<(u16, VideoCodec)>,
    audio: Option<u16>,
}

struct Program {
    /// The packets that carried the PMT, verbatim.
    packets: Vec<u8>,
    streams: Streams,
}

fn parse_pmt(section: &[u8]) -> Option<Streams> {
    let body = section_body(section, 0x02)?;
    let program_info_length = usize::from(body.get(2)? & 0x0f) << 8 | usize::from(*body.get(3)?);
    let mut rest = body.get(4 + program_info_length..)?;
    let mut streams = Streams::default();
    while let Some(entry) = rest.first_chunk::<5>() {
        let stream_type = entry[0];
        let pid = u16::from(entry[1] & 0x1f) << 8 | u16::from(entry[2]);
        let info_length = usize::from(entry[3] & 0x0f) << 8 | usize::from(entry[4]);
        let Some(descriptors) = rest.get(5..5 + info_length) else {
            break; // truncated entry: keep what we have
        };
        rest = rest.get(5 + info_length..).unwrap_or_default();
        let video = match stream_type {
            0x1b => Some(VideoCodec::H264),
            0x24 => Some(VideoCodec::Hevc),
            _ => None,
        };
        if let Some(codec) = video {
            streams.video.get_or_insert((pid, codec));
        } else if is_audio(stream_type, descriptors) {
            streams.audio.get_or_insert(pid);
        }
    }
    Some(streams)
}

fn is_audio(stream_type: u8, descriptors: &[u8]) -> bool {
    match stream_type {
        // MPEG-1/2 audio, AAC (ADTS), AAC (LATM), AC-3 and E-AC-3 (ATSC).
        0x03 | 0x04 | 0x0f | 0x11 | 0x81 | 0x87 => true,
        // Private data: audio only if a descriptor says so (DVB AC-3/E-AC-3, or a registration).
        0x06 => descriptor_says_audio(descriptors),
        _ => false,
    }
}

fn descriptor_says_audio(mut descriptors: &[u8]) -> bool {
    while let Some(&[tag, length]) = descriptors.first_chunk::<2>() {
        let Some(content) = descriptors.get(2..2 + usize::from(length)) else {
            return false;
        };
        match tag {
            0x6a | 0x7a => return true, // DVB AC-3 / enhanced AC-3 descriptor
            0x05 if matches!(content.get(..4), Some(b"AC-3" | b"EAC3" | b"Opus")) => return true,
            _ => {}
        }
        descriptors = descriptors
            .get(2 + usize::from(length)..)
            .unwrap_or_default();
    }
    false
}

/// A PES header, parsed from the start of a PES packet.
#[derive(Debug, PartialEq, Eq)]
enum PesHeader {
    /// More bytes are needed.
    Incomplete,
    /// Not a PES packet start.
    Invalid,
    /// `length` bytes of header precede the elementary stream data; `pts` is the raw 33-bit PTS.
    Parsed { length: usize, pts: Option<u64> },
}

fn parse_pes_header(buf: &[u8]) -> PesHeader {
    const START_CODE: [u8; 3] = [0x00, 0x00, 0x01];
    let prefix = buf.len().min(3);
    if buf.get(..prefix) != START_CODE.get(..prefix) {
        return PesHeader::Invalid;
    }
    let Some(&stream_id) = buf.get(3) else {
        return PesHeader::Incomplete;
    };
    // These streams have no optional header (and so no PTS).
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return if buf.len() >= 6 {
            PesHeader::Parsed {
                length: 6,
                pts: None,
            }
        } else {
            PesHeader::Incomplete
        };
    }
    let Some(&[_, _, _, _, _, _, marker, flags, header_data_length]) = buf.first_chunk::<9>()
    else {
        return PesHeader::Incomplete;
    };
    if marker & 0xc0 != 0x80 {
        return PesHeader::Invalid;
    }
    let length = 9 + usize::from(header_data_length);
    if buf.len() < length {
        return PesHeader::Incomplete;
    }
    // PTS_DTS_flags 0b10 or 0b11: a PTS is the first optional field.
    let pts = if flags & 0x80 != 0 && header_data_length >= 5 {
        buf.get(9..14)
            .and_then(|bytes| <[u8; 5]>::try_from(bytes).ok())
            .map(decode_timestamp)
    } else {
        None
    };
    PesHeader::Parsed { length, pts }
}

/// Decodes the 5-byte PTS/DTS field (33 bits split by marker bits).
fn decode_timestamp(b: [u8; 5]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}

/// Places 33-bit timestamps on a continuous 64-bit timeline. Each value is taken within ±2^32 of
/// the previous one, so crossing 2^33 adds 2^33 while small steps back (B-frames) stay small.
/// A jump beyond [`MAX_STEP_BACK`] / [`MAX_STEP_FORWARD`] is bridged instead: the timeline
/// continues just after the latest value so far, so a pacer neither stalls nor sleeps for hours.
#[derive(Default)]
struct Timeline {
    /// The previous raw timestamp and where it was placed.
    last: Option<(i64, i64)>,
    /// The latest placed value.
    latest: i64,
}

impl Timeline {
    /// Returns the placed value and whether a discontinuity was bridged to get there.
    fn place(&mut self, pts: u64) -> (u64, bool) {
        let raw = (pts & (PTS_MODULUS as u64 - 1)) as i64;
        let (placed, discontinuity) = match self.last {
            None => (raw, false),
            Some((last_raw, last)) => {
                let mut step = (raw - last_raw).rem_euclid(PTS_MODULUS);
                if step >= PTS_MODULUS / 2 {
                    step -= PTS_MODULUS;
                }
                if (-MAX_STEP_BACK..=MAX_STEP_FORWARD).contains(&step) {
                    (last + step, false)
                } else {
                    (self.latest + 1, true)
                }
            }
        };
        self.latest = if self.last.is_none() {
            placed
        } else {
            self.latest.max(placed)
        };
        self.last = Some((raw, placed));
        // Only a step back right at the start can go below zero.
        (u64::try_from(placed).unwrap_or(0), discontinuity)
    }
}

/// A video PES start held back until we know whether it begins with a keyframe, together with
/// every packet (of any PID) received after it.
struct Lookahead {
    pid: u16,
    codec: VideoCodec,
    /// PAT and PMT as they were when the PES started: the tables describing this frame.
    tables: Bytes,
    packets: Vec<u8>,
    packet_count: u64,
    /// Start of the PES until its header is complete (it may straddle packets).
    pes_head: Vec<u8>,
    header_done: bool,
    /// Raw PTS of the PES; placed on the timeline when the lookahead is resolved, in stream order.
    pts: Option<u64>,
    nal_scanner: NalScanner,
    video_bytes: usize,
    video_budget: usize,
}

impl Lookahead {
    fn new(pid: u16, codec: VideoCodec, tables: Bytes, packet: &Packet) -> Lookahead {
        Lookahead {
            pid,
            codec,
            tables,
            packets: packet.raw.to_vec(),
            packet_count: 1,
            pes_head: Vec::new(),
            header_done: false,
            pts: None,
            nal_scanner: NalScanner::new(codec),
            video_bytes: 0,
            video_budget: if packet.random_access {
                VIDEO_LOOKAHEAD_RANDOM_ACCESS
            } else {
                VIDEO_LOOKAHEAD
            },
        }
    }

    fn hold(&mut self, raw: &[u8; PACKET_SIZE]) {
        self.packets.extend_from_slice(raw);
        self.packet_count += 1;
    }

    /// Takes the next piece of the video PES; returns the verdict once there is one.
    fn feed_video(&mut self, payload: &[u8]) -> Option<bool> {
        self.video_bytes += payload.len();
        if self.header_done {
            return self.nal_scanner.scan(payload);
        }
        self.pes_head.extend_from_slice(payload);
        match parse_pes_header(&self.pes_head) {
            PesHeader::Incomplete => None,
            PesHeader::Invalid => Some(false),
            PesHeader::Parsed { length, pts } => {
                self.header_done = true;
                self.pts = pts;
                let head = std::mem::take(&mut self.pes_head);
                self.nal_scanner
                    .scan(head.get(length..).unwrap_or_default())
            }
        }
    }

    fn over_budget(&self) -> bool {
        self.video_bytes > self.video_budget || self.packets.len() > MAX_LOOKAHEAD_BYTES
    }
}

/// Scans Annex-B byte streams for NAL unit headers, across calls, until the first VCL NAL unit
/// tells whether the access unit is a keyframe.
struct NalScanner {
    codec: VideoCodec,
    /// Zero bytes just seen (saturating; two or more before 0x01 make a start code).
    zeros: u8,
    /// The next byte is a NAL unit header.
    at_header: bool,
}

impl NalScanner {
    fn new(codec: VideoCodec) -> NalScanner {
        NalScanner {
            codec,
            zeros: 0,
            at_header: false,
        }
    }

    fn scan(&mut self, data: &[u8]) -> Option<bool> {
        for &byte in data {
            if self.at_header {
                self.at_header = false;
                if let Some(keyframe) = classify_nal(self.codec, byte) {
                    return Some(keyframe);
                }
            }
            match byte {
                0x00 => self.zeros = self.zeros.saturating_add(1),
                0x01 if self.zeros >= 2 => {
                    self.at_header = true;
                    self.zeros = 0;
                }
                _ => self.zeros = 0,
            }
        }
        None
    }
}

/// Some(true) for a keyframe slice, Some(false) for another slice, None for non-VCL units
/// (parameter sets, SEI, delimiters) that precede the first slice.
fn classify_nal(codec: VideoCodec, header: u8) -> Option<bool> {
    if header & 0x80 != 0 {
        return None; // forbidden_zero_bit: not a real NAL header
    }
    match codec {
        VideoCodec::H264 => match header & 0x1f {
            5 => Some(true),      // IDR slice
            1..=4 => Some(false), // non-IDR slice, data partitions
            _ => None,
        },
        VideoCodec::Hevc => match (header >> 1) & 0x3f {
            16..=21 => Some(true), // BLA, IDR, CRA
            0..=9 => Some(false),  // TRAIL, TSA, STSA, RADL, RASL
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PMT_PID: u16 = 0x1000;
    const VIDEO_PID: u16 = 0x0100;
    const AUDIO_PID: u16 = 0x0101;
    /// 25 fps.
    const FRAME_TICKS: u64 = 3600;
    /// 1024 AAC samples at 48 kHz.
    const AUDIO_TICKS: u64 = 1920;
    const STREAM_TYPE_H264: u8 = 0x1b;
    const STREAM_TYPE_HEVC: u8 = 0x24;
    const STREAM_TYPE_AAC: u8 = 0x0f;

    /// Deterministic pseudo-random numbers for test data.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Writes a transport stream packet by packet, keeping continuity counters per PID.
    struct Mux {
        out: Vec<u8>,
        continuity: Vec<u8>,
    }

    impl Mux {
        fn new() -> Mux {
            Mux {
                out: Vec::new(),
                continuity: vec![0; 0x2000],
            }
        }

        fn packet_count(&self) -> usize {
            self.out.len() / PACKET_SIZE
        }

        /// Splits one unit (PES packet or pointer field + section) into packets; the last one is
        /// padded with adaptation field stuffing. Returns the index of the first packet.
        fn unit(&mut self, pid: u16, data: &[u8], random_access: bool) -> usize {
            let first_index = self.packet_count();
            let mut rest = data;
            let mut first = true;
            loop {
                let mut adaptation = (first && random_access).then(|| vec![0x40]);
                let adaptation_size = |a: &Option<Vec<u8>>| a.as_ref().map_or(0, |a| 1 + a.len());
                let room = 184 - adaptation_size(&adaptation);
                let n = rest.len().min(room);
                if n < room {
                    let a = adaptation.get_or_insert_with(Vec::new);
                    let target = 184 - n; // bytes of adaptation field including its length byte
                    if target >= 2 && a.is_empty() {
                        a.push(0x00);
                    }
                    while 1 + a.len() < target {
                        a.push(0xff);
                    }
                }
                let cc = &mut self.continuity[usize::from(pid)];
                let control = if adaptation.is_some() { 0x30 } else { 0x10 };
                self.out.extend_from_slice(&[
                    SYNC_BYTE,
                    (u8::from(first) << 6) | (pid >> 8) as u8,
                    pid as u8,
                    control | *cc,
                ]);
                *cc = (*cc + 1) & 0x0f;
                if let Some(a) = adaptation {
                    self.out.push(a.len() as u8);
                    self.out.extend_from_slice(&a);
                }
                self.out.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                first = false;
                if rest.is_empty() {
                    return first_index;
                }
            }
        }

        fn section(&mut self, pid: u16, section: &[u8]) {
            let mut data = vec![0x00]; // pointer_field
            data.extend_from_slice(section);
            self.unit(pid, &data, false);
        }

        fn pat(&mut self) {
            self.section(PAT_PID, &pat_section(PMT_PID));
        }

        fn pmt(&mut self, version: u8, streams: &[(u8, u16)]) {
            self.section(PMT_PID, &pmt_section(version, streams));
        }

        fn pes(&mut self, pid: u16, stream_id: u8, pts: u64, payload: &[u8], key: bool) -> usize {
            self.unit(pid, &pes_packet(stream_id, pts, payload), key)
        }

        fn video(&mut self, codec: VideoCodec, frame: FrameKind, pts: u64) -> usize {
            let key = matches!(frame, FrameKind::Key | FrameKind::Cra);
            self.pes(VIDEO_PID, 0xe0, pts, &access_unit(codec, frame, 0), key)
        }

        fn audio(&mut self, pts: u64) -> usize {
            self.pes(
                AUDIO_PID,
                0xc0,
                pts,
                &[0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc, 0x21],
                false,
            )
        }
    }

    fn crc32_mpeg(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in data {
            crc ^= u32::from(byte) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    /// A long-form section: header, body, CRC.
    fn long_section(table_id: u8, id: u16, version: u8, body: &[u8]) -> Vec<u8> {
        let length = 5 + body.len() + 4;
        let mut s = vec![
            table_id,
            0xb0 | (length >> 8) as u8,
            length as u8,
            (id >> 8) as u8,
            id as u8,
            0xc1 | (version << 1),
            0x00,
            0x00,
        ];
        s.extend_from_slice(body);
        let crc = crc32_mpeg(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        s
    }

    fn pat_section(pmt_pid: u16) -> Vec<u8> {
        long_section(
            0x00,
            1,
            0,
            &[0x00, 0x01, 0xe0 | (pmt_pid >> 8) as u8, pmt_pid as u8],
        )
    }

    fn pmt_section(version: u8, streams: &[(u8, u16)]) -> Vec<u8> {
        let pcr = streams.first().map_or(0x1fff, |s| s.1);
        let mut body = vec![0xe0 | (pcr >> 8) as u8, pcr as u8, 0xf0, 0x00];
        for &(stream_type, pid) in streams {
            body.extend_from_slice(&[stream_type, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0x00]);
        }
        long_section(0x02, 1, version, &body)
    }

    fn encode_timestamp(pts: u64) -> [u8; 5] {
        [
            0x21 | (((pts >> 30) & 0x07) << 1) as u8,
            (pts >> 22) as u8,
            ((((pts >> 15) & 0x7f) << 1) | 1) as u8,
            (pts >> 7) as u8,
            (((pts & 0x7f) << 1) | 1) as u8,
        ]
    }

    fn pes_packet(stream_id: u8, pts: u64, payload: &[u8]) -> Vec<u8> {
        let pts = pts % (1 << 33);
        // Video PES may leave PES_packet_length at 0 (unbounded).
        let length = if stream_id >= 0xe0 {
            0
        } else {
            8 + payload.len()
        };
        let mut p = vec![
            0,
            0,
            1,
            stream_id,
            (length >> 8) as u8,
            length as u8,
            0x80,
            0x80,
            5,
        ];
        p.extend_from_slice(&encode_timestamp(pts));
        p.extend_from_slice(payload);
        p
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum FrameKind {
        /// H.264 IDR or HEVC IDR_W_RADL.
        Key,
        /// HEVC CRA (a keyframe too).
        Cra,
        /// H.264 non-IDR or HEVC TRAIL_R.
        Delta,
        /// Only a delimiter and SEI: no slice at all.
        NoSlice,
    }

    /// Slice bytes that contain no start code (no zero bytes).
    fn slice_data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 + 1).collect()
    }

    /// An Annex-B access unit: delimiter, parameter sets for keyframes, optional SEI, slice.
    fn access_unit(codec: VideoCodec, frame: FrameKind, sei_len: usize) -> Vec<u8> {
        let key = matches!(frame, FrameKind::Key | FrameKind::Cra);
        let mut au = Vec::new();
        match codec {
            VideoCodec::H264 => {
                au.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xf0]);
                if key {
                    au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9]);
                    au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xeb, 0xe3, 0xcb]);
                }
                if sei_len > 0 {
                    au.extend_from_slice(&[0, 0, 1, 0x06, 0x05]);
                    au.extend(std::iter::repeat_n(0x55, sei_len));
                    au.push(0x80);
                }
                let header = match frame {
                    FrameKind::Key | FrameKind::Cra => 0x65,
                    FrameKind::Delta => 0x41,
                    FrameKind::NoSlice => return au,
                };
                au.extend_from_slice(&[0, 0, 1, header]);
            }
            VideoCodec::Hevc => {
                au.extend_from_slice(&[0, 0, 0, 1, 35 << 1, 0x01, 0x50]);
                if key {
                    for nal_type in [32u8, 33, 34] {
                        au.extend_from_slice(&[0, 0, 0, 1, nal_type << 1, 0x01, 0x0c, 0x01]);
                    }
                }
                if sei_len > 0 {
                    au.extend_from_slice(&[0, 0, 1, 39 << 1, 0x01]);
                    au.extend(std::iter::repeat_n(0x55, sei_len));
                    au.push(0x80);
                }
                let nal_type: u8 = match frame {
                    FrameKind::Key => 19,
                    FrameKind::Cra => 21,
                    FrameKind::Delta => 1,
                    FrameKind::NoSlice => return au,
                };
                au.extend_from_slice(&[0, 0, 1, nal_type << 1, 0x01]);
            }
        }
        au.extend_from_slice(&slice_data(if key { 1500 } else { 400 }));
        au
    }

    /// A test stream and what we know about it.
    struct Built {
        ts: Vec<u8>,
        /// (packet index of the PES start, pts) of each keyframe.
        keyframes: Vec<(usize, u64)>,
        video_frames: usize,
    }

    /// PAT + PMT before every keyframe; one audio PES after each video frame if `audio`.
    fn build(codec: VideoCodec, frames: usize, gop: usize, first_pts: u64, audio: bool) -> Built {
        let mut mux = Mux::new();
        let stream_type = match codec {
            VideoCodec::H264 => STREAM_TYPE_H264,
            VideoCodec::Hevc => STREAM_TYPE_HEVC,
        };
        let mut streams = vec![(stream_type, VIDEO_PID)];
        if audio {
            streams.push((STREAM_TYPE_AAC, AUDIO_PID));
        }
        let mut keyframes = Vec::new();
        for i in 0..frames {
            let pts = first_pts + i as u64 * FRAME_TICKS;
            let key = i % gop == 0;
            if key {
                mux.pat();
                mux.pmt(0, &streams);
            }
            let frame = if key {
                FrameKind::Key
            } else {
                FrameKind::Delta
            };
            let index = if i == 0 {
                // x264's first frame carries a long SEI (its settings) spanning several packets.
                let au = access_unit(codec, frame, 900);
                mux.pes(VIDEO_PID, 0xe0, pts, &au, true)
            } else {
                mux.video(codec, frame, pts)
            };
            if key {
                keyframes.push((index, pts));
            }
            if audio {
                mux.audio(pts);
            }
        }
        Built {
            ts: mux.out,
            keyframes,
            video_frames: frames,
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Segment {
        keyframe: bool,
        pts: Option<u64>,
        data: Vec<u8>,
    }

    struct Run {
        segments: Vec<Segment>,
        clocks: Vec<u64>,
        stats: Stats,
    }

    impl Run {
        /// The frame number each segment starts at.
        fn start_frames(&self) -> Vec<u64> {
            self.segments
                .iter()
                .map(|s| s.pts.unwrap() / FRAME_TICKS)
                .collect()
        }
    }

    /// Runs the segmenter, feeding pieces of the sizes `piece` returns, checking event invariants.
    fn run_with(config: SegmenterConfig, input: &[u8], mut piece: impl FnMut() -> usize) -> Run {
        let mut segmenter = Segmenter::new(config);
        let mut events = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = piece().clamp(1, rest.len());
            segmenter.push(&rest[..n], &mut events);
            rest = &rest[n..];
            assert!(
                segmenter.pending.len() < 3 * PACKET_SIZE + n,
                "sync buffer bounded"
            );
        }
        segmenter.finish(&mut events);
        assert!(segmenter.pending.is_empty() && segmenter.lookahead.is_none());
        let mut segments: Vec<Segment> = Vec::new();
        let mut clocks = Vec::new();
        for event in events {
            match event {
                Event::Start { keyframe, pts } => segments.push(Segment {
                    keyframe,
                    pts,
                    data: Vec::new(),
                }),
                Event::Data(bytes) => {
                    assert!(!bytes.is_empty() && bytes.len() % PACKET_SIZE == 0);
                    segments
                        .last_mut()
                        .expect("Data before Start")
                        .data
                        .extend_from_slice(&bytes);
                }
                Event::Clock(pts) => {
                    assert!(!segments.is_empty(), "Clock before Start");
                    assert!(
                        clocks.last().is_none_or(|&last| pts > last),
                        "clock goes forward"
                    );
                    clocks.push(pts);
                }
            }
        }
        assert_eq!(segmenter.stats().segments, segments.len() as u64);
        Run {
            segments,
            clocks,
            stats: segmenter.stats().clone(),
        }
    }

    fn run(config: SegmenterConfig, input: &[u8]) -> Run {
        run_with(config, input, || usize::MAX)
    }

    fn min_duration(ms: u64) -> SegmenterConfig {
        SegmenterConfig {
            min_duration: Duration::from_millis(ms),
            ..SegmenterConfig::default()
        }
    }

    /// (pid, unit_start) of every packet.
    fn packets(data: &[u8]) -> Vec<(u16, bool)> {
        data.chunks_exact(PACKET_SIZE)
            .map(|p| {
                (
                    u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]),
                    p[1] & 0x40 != 0,
                )
            })
            .collect()
    }

    /// Every segment is PAT, PMT, then the PES start of a keyframe (or audio frame).
    fn assert_layout(run: &Run, first_pid: u16) {
        for (i, segment) in run.segments.iter().enumerate() {
            let p = packets(&segment.data);
            assert!(p.len() >= 3, "segment {i} too short");
            assert_eq!(p[0], (PAT_PID, true), "segment {i} starts with PAT");
            assert_eq!(p[1], (PMT_PID, true), "segment {i} continues with PMT");
            assert_eq!(p[2], (first_pid, true), "segment {i} then the frame");
        }
    }

    /// Concatenates the segments without their inserted PAT + PMT copies (one packet each here).
    fn without_tables(run: &Run) -> Vec<u8> {
        run.segments
            .iter()
            .flat_map(|s| s.data[2 * PACKET_SIZE..].iter().copied())
            .collect()
    }

    #[test]
    fn cuts_at_every_keyframe_by_default() {
        let built = build(VideoCodec::H264, 100, 25, 900_000, true);
        let run = run(SegmenterConfig::default(), &built.ts);
        let starts: Vec<_> = run.segments.iter().map(|s| (s.keyframe, s.pts)).collect();
        let expected: Vec<_> = built
            .keyframes
            .iter()
            .map(|&(_, pts)| (true, Some(pts)))
            .collect();
        assert_eq!(starts, expected);
        assert_layout(&run, VIDEO_PID);
        assert_eq!(run.stats.segments, 4);
        assert_eq!(run.stats.skipped_bytes, 0);
        assert_eq!(run.stats.resyncs, 0);
        // One Clock per video frame, starting at the first keyframe.
        assert_eq!(run.clocks.len(), built.video_frames);
        assert_eq!(run.clocks[0], 900_000);
    }

    #[test]
    fn segments_hold_exactly_the_frames_between_keyframes() {
        let built = build(VideoCodec::H264, 100, 25, 0, true);
        let run = run(SegmenterConfig::default(), &built.ts);
        let bounds: Vec<usize> = built.keyframes.iter().map(|&(index, _)| index).collect();
        for (i, segment) in run.segments.iter().enumerate() {
            let start = bounds[i] * PACKET_SIZE;
            let end = bounds
                .get(i + 1)
                .map_or(built.ts.len(), |&b| b * PACKET_SIZE);
            assert_eq!(
                &segment.data[2 * PACKET_SIZE..],
                &built.ts[start..end],
                "segment {i}"
            );
        }
    }

    #[test]
    fn bytes_are_conserved() {
        // Start mid-GOP: the frames before the first keyframe are dropped.
        let built = build(VideoCodec::H264, 120, 30, 0, true);
        let cut_at = built.keyframes[1].0 - 20; // inside the first GOP
        let input = &built.ts[cut_at * PACKET_SIZE..];
        let run = run(SegmenterConfig::default(), input);
        let first_key = built.keyframes[1].0;
        assert_eq!(without_tables(&run), &built.ts[first_key * PACKET_SIZE..]);
        assert_eq!(
            run.stats.dropped_before_keyframe as usize,
            first_key - cut_at
        );
        assert_eq!(run.stats.packets as usize, input.len() / PACKET_SIZE);
        assert_eq!(run.segments.len(), 3);
    }

    #[test]
    fn min_duration_is_respected() {
        // A keyframe every second; segments of at least 2.5 s start at 0, 3, 6, 9 s.
        let built = build(VideoCodec::H264, 300, 25, 0, true);
        let run = run(min_duration(2500), &built.ts);
        let starts: Vec<_> = run.segments.iter().map(|s| s.pts).collect();
        let second = 25 * FRAME_TICKS;
        assert_eq!(starts, [0, 3, 6, 9].map(|s| Some(s * second)));
        assert_layout(&run, VIDEO_PID);
        // Still nothing lost after the first keyframe.
        assert_eq!(
            without_tables(&run),
            built.ts[built.keyframes[0].0 * PACKET_SIZE..]
        );
    }

    #[test]
    fn long_sei_before_the_first_slice_is_looked_through() {
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(
            0,
            &[(STREAM_TYPE_H264, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)],
        );
        // 3 KiB of SEI: the IDR slice is ~17 packets in, with audio interleaved.
        let au = access_unit(VideoCodec::H264, FrameKind::Key, 3000);
        let mut pes = pes_packet(0xe0, 0, &au).into_iter();
        let mut first = true;
        let key_index = mux.packet_count();
        while pes.len() > 0 {
            let chunk: Vec<u8> = pes.by_ref().take(184).collect();
            // Write PES pieces by hand so audio can sit between them.
            let continuation = !first;
            if continuation {
                mux.audio(0);
            }
            let start = mux.packet_count();
            mux.unit(VIDEO_PID, &chunk, false);
            if continuation {
                mux.out[start * PACKET_SIZE + 1] &= !0x40; // not a unit start
            }
            first = false;
        }
        mux.video(VideoCodec::H264, FrameKind::Delta, FRAME_TICKS);
        let run = run(SegmenterConfig::default(), &mux.out);
        assert_eq!(run.segments.len(), 1);
        assert_eq!(run.segments[0].pts, Some(0));
        assert_eq!(without_tables(&run), &mux.out[key_index * PACKET_SIZE..]);
    }

    #[test]
    fn next_pes_before_any_slice_means_no_keyframe() {
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(0, &[(STREAM_TYPE_H264, VIDEO_PID)]);
        // Random access announced, but no slice: must not start a segment.
        mux.pes(
            VIDEO_PID,
            0xe0,
            0,
            &access_unit(VideoCodec::H264, FrameKind::NoSlice, 500),
            true,
        );
        let key = mux.video(VideoCodec::H264, FrameKind::Key, FRAME_TICKS);
        mux.video(VideoCodec::H264, FrameKind::Delta, 2 * FRAME_TICKS);
        let run = run(SegmenterConfig::default(), &mux.out);
        assert_eq!(run.segments.len(), 1);
        assert_eq!(run.segments[0].pts, Some(FRAME_TICKS));
        assert_eq!(run.stats.dropped_before_keyframe as usize, key);
    }

    #[test]
    fn lookahead_is_capped() {
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(0, &[(STREAM_TYPE_H264, VIDEO_PID)]);
        // 100 KiB of SEI before the IDR: beyond the plain budget, within the RAI one.
        let au = access_unit(VideoCodec::H264, FrameKind::Key, 100 * 1024);
        mux.pes(VIDEO_PID, 0xe0, 0, &au, false);
        mux.pes(VIDEO_PID, 0xe0, FRAME_TICKS, &au, true);
        let run = run(SegmenterConfig::default(), &mux.out);
        assert_eq!(run.segments.len(), 1);
        assert_eq!(run.segments[0].pts, Some(FRAME_TICKS));
    }

    #[test]
    fn audio_only_cuts_by_duration() {
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(0, &[(STREAM_TYPE_AAC, AUDIO_PID)]);
        let first = mux.audio(500);
        for i in 1..300u64 {
            if i % 50 == 0 {
                mux.pat();
                mux.pmt(0, &[(STREAM_TYPE_AAC, AUDIO_PID)]);
            }
            mux.audio(500 + i * AUDIO_TICKS);
        }
        let run = run(SegmenterConfig::default(), &mux.out);
        // 2 s = 180 000 ticks = 93.75 frames: cuts at frames 0, 94, 188, 282.
        let starts: Vec<_> = run.segments.iter().map(|s| (s.keyframe, s.pts)).collect();
        let expected: Vec<_> = [0, 94, 188, 282]
            .iter()
            .map(|&i| (false, Some(500 + i * AUDIO_TICKS)))
            .collect();
        assert_eq!(starts, expected);
        assert_layout(&run, AUDIO_PID);
        assert_eq!(run.clocks.len(), 300);
        assert_eq!(without_tables(&run), &mux.out[first * PACKET_SIZE..]);
    }

    #[test]
    fn garbage_and_odd_splits_give_the_same_segments() {
        let built = build(VideoCodec::H264, 150, 25, 0, true);
        let clean = run(min_duration(1000), &built.ts);

        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut dirty = Vec::new();
        let mut garbage = 0;
        let mut clean_run = 0;
        for packet in built.ts.chunks(PACKET_SIZE) {
            clean_run += 1;
            // Resync needs three packets in a row; denser garbage would (rightly) cost packets.
            if clean_run > 3 && rng.below(10) == 0 {
                clean_run = 0;
                let n = 1 + rng.below(300);
                let mut junk = rng.bytes(n);
                if junk[0] == SYNC_BYTE {
                    junk[0] = 0; // a sync byte right where a packet is due would be taken
                }
                garbage += n;
                dirty.extend_from_slice(&junk);
            }
            dirty.extend_from_slice(packet);
        }
        let run = run_with(min_duration(1000), &dirty, || 1 + rng.below(500));
        assert_eq!(run.segments, clean.segments);
        assert_eq!(run.clocks, clean.clocks);
        assert_eq!(run.stats.skipped_bytes, garbage as u64);
        assert!(run.stats.resyncs > 10);
        assert_eq!(run.stats.packets, clean.stats.packets);
    }

    #[test]
    fn byte_by_byte_feeding_matches_whole() {
        let built = build(VideoCodec::Hevc, 60, 20, 0, true);
        let whole = run(SegmenterConfig::default(), &built.ts);
        let single = run_with(SegmenterConfig::default(), &built.ts, || 1);
        assert_eq!(whole.segments, single.segments);
        assert_eq!(whole.stats, single.stats);
    }

    #[test]
    fn leading_garbage_and_trailing_partial_packet() {
        let built = build(VideoCodec::H264, 30, 10, 0, false);
        let mut input = vec![0x12; 77];
        input.extend_from_slice(&built.ts);
        input.extend_from_slice(&built.ts[..100]);
        let run = run(SegmenterConfig::default(), &input);
        assert_eq!(run.segments.len(), 3);
        assert_eq!(run.stats.skipped_bytes, 177);
        assert_eq!(run.stats.resyncs, 1);
        assert_eq!(
            without_tables(&run),
            &built.ts[built.keyframes[0].0 * PACKET_SIZE..]
        );
    }

    #[test]
    fn short_stream_is_taken_at_finish() {
        // Two packets: fewer than the three sync bytes a hunt wants, after leading garbage.
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(0, &[(STREAM_TYPE_AAC, AUDIO_PID)]);
        mux.audio(0);
        let mut input = vec![1, 2, 3];
        input.extend_from_slice(&mux.out);
        let run = run(SegmenterConfig::default(), &input);
        assert_eq!(run.segments.len(), 1);
        assert_eq!(run.stats.packets, 3);
        assert_eq!(run.stats.skipped_bytes, 3);
    }

    #[test]
    fn transport_errors_are_dropped() {
        let built = build(VideoCodec::H264, 50, 25, 0, false);
        let mut input = built.ts.clone();
        let damaged = built.keyframes[1].0 - 3; // a delta frame packet
        input[damaged * PACKET_SIZE + 1] |= 0x80;
        let run = run(SegmenterConfig::default(), &input);
        assert_eq!(run.segments.len(), 2);
        assert_eq!(run.stats.skipped_bytes, PACKET_SIZE as u64);
        let mut expected = built.ts.clone();
        expected.drain(damaged * PACKET_SIZE..(damaged + 1) * PACKET_SIZE);
        assert_eq!(
            without_tables(&run),
            &expected[built.keyframes[0].0 * PACKET_SIZE..]
        );
    }

    #[test]
    fn nothing_starts_before_the_tables() {
        let mut mux = Mux::new();
        // Keyframes without any PAT/PMT yet are useless to a decoder.
        mux.video(VideoCodec::H264, FrameKind::Key, 0);
        mux.video(VideoCodec::H264, FrameKind::Delta, FRAME_TICKS);
        let dropped = mux.packet_count();
        mux.pat();
        mux.pmt(0, &[(STREAM_TYPE_H264, VIDEO_PID)]);
        mux.video(VideoCodec::H264, FrameKind::Delta, 2 * FRAME_TICKS);
        let key = mux.video(VideoCodec::H264, FrameKind::Key, 3 * FRAME_TICKS);
        let run = run(SegmenterConfig::default(), &mux.out);
        assert_eq!(run.segments.len(), 1);
        assert_eq!(run.segments[0].pts, Some(3 * FRAME_TICKS));
        assert_eq!(run.stats.dropped_before_keyframe as usize, key);
        assert!(key > dropped);
    }

    #[test]
    fn hevc_cuts_at_idr_and_cra() {
        let mut mux = Mux::new();
        let streams = [(STREAM_TYPE_HEVC, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)];
        let pattern = [
            FrameKind::Key,
            FrameKind::Delta,
            FrameKind::Cra,
            FrameKind::Delta,
        ];
        for (i, &frame) in pattern.iter().cycle().take(20).enumerate() {
            if i % 10 == 0 {
                mux.pat();
                mux.pmt(0, &streams);
            }
            mux.video(VideoCodec::Hevc, frame, i as u64 * FRAME_TICKS);
            mux.audio(i as u64 * FRAME_TICKS);
        }
        let run = run(SegmenterConfig::default(), &mux.out);
        let starts = run.start_frames();
        assert_eq!(starts, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
        assert_layout(&run, VIDEO_PID);
    }

    #[test]
    fn pmt_change_from_h264_to_hevc_keeps_cutting() {
        let mut mux = Mux::new();
        let h264 = [(STREAM_TYPE_H264, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)];
        let hevc = [(STREAM_TYPE_HEVC, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)];
        for i in 0..80u64 {
            let pts = i * FRAME_TICKS;
            if i < 40 {
                if i % 20 == 0 {
                    mux.pat();
                    mux.pmt(0, &h264);
                }
                let frame = if i % 20 == 0 {
                    FrameKind::Key
                } else {
                    FrameKind::Delta
                };
                mux.video(VideoCodec::H264, frame, pts);
            } else {
                if i % 20 == 0 {
                    mux.pat();
                    mux.pmt(1, &hevc);
                }
                // HEVC slices read as H.264 would be misjudged: IDR (0x26) looks like SEI, TRAIL_R
                // (0x02) like a data partition. The new PMT must switch the parser.
                let frame = match i % 20 {
                    0 => FrameKind::Key,
                    10 => FrameKind::Cra,
                    _ => FrameKind::Delta,
                };
                mux.video(VideoCodec::Hevc, frame, pts);
            }
            mux.audio(pts);
        }
        let run = run(SegmenterConfig::default(), &mux.out);
        let starts = run.start_frames();
        assert_eq!(starts, [0, 20, 40, 50, 60, 70]);
        assert_layout(&run, VIDEO_PID);
        // Segments after the change carry the new PMT.
        let expected_pmt = {
            let mut m = Mux::new();
            m.pmt(1, &hevc);
            m.out[4..].to_vec() // skip the header: the continuity counter differs
        };
        for segment in &run.segments[2..] {
            assert_eq!(
                &segment.data[PACKET_SIZE + 4..2 * PACKET_SIZE],
                &expected_pmt[..]
            );
        }
        // The codec change starts a segment even when the current one is shorter than asked.
        let long = run_with(min_duration(10_000), &mux.out, || usize::MAX);
        assert_eq!(long.start_frames(), [0, 40]);
    }

    #[test]
    fn pmt_moving_to_another_pid_is_followed() {
        let mut mux = Mux::new();
        let streams = [(STREAM_TYPE_H264, VIDEO_PID)];
        mux.pat();
        mux.pmt(0, &streams);
        mux.video(VideoCodec::H264, FrameKind::Key, 0);
        mux.video(VideoCodec::H264, FrameKind::Delta, FRAME_TICKS);
        // New PAT pointing to PID 0x1001 with a PMT whose video is on PID 0x0200.
        let new_pmt_pid = 0x1001;
        mux.section(PAT_PID, &pat_section(new_pmt_pid));
        mux.section(new_pmt_pid, &pmt_section(0, &[(STREAM_TYPE_H264, 0x0200)]));
        let moved = mux.packet_count();
        let au = access_unit(VideoCodec::H264, FrameKind::Key, 0);
        mux.pes(0x0200, 0xe0, 2 * FRAME_TICKS, &au, true);
        let run = run(SegmenterConfig::default(), &mux.out);
        assert_eq!(run.segments.len(), 2);
        let second = packets(&run.segments[1].data);
        assert_eq!(
            &second[..3],
            &[(PAT_PID, true), (new_pmt_pid, true), (0x0200, true)]
        );
        assert_eq!(
            &run.segments[1].data[2 * PACKET_SIZE..],
            &mux.out[moved * PACKET_SIZE..]
        );
    }

    #[test]
    fn pts_wraps_around() {
        // Start 4 s before the 33-bit wrap; a keyframe every second.
        let first = (1 << 33) - 100 * FRAME_TICKS;
        let built = build(VideoCodec::H264, 250, 25, first, true);
        let run = run(min_duration(2000), &built.ts);
        let starts: Vec<_> = run.segments.iter().map(|s| s.pts.unwrap()).collect();
        let second = 25 * FRAME_TICKS;
        let expected: Vec<_> = (0..5).map(|k| first + 2 * k * second).collect();
        assert_eq!(starts, expected);
        assert!(*run.clocks.last().unwrap() > 1 << 33);
        assert_eq!(run.clocks.len(), 250);
        assert_eq!(*run.clocks.last().unwrap(), first + 249 * FRAME_TICKS);
    }

    #[test]
    fn clock_only_moves_forward_with_b_frames() {
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(0, &[(STREAM_TYPE_H264, VIDEO_PID)]);
        // Decode order I P B B P B B with presentation times 0 3 1 2 6 4 5.
        let order = [0u64, 3, 1, 2, 6, 4, 5];
        for (i, &t) in order.iter().enumerate() {
            let frame = if i == 0 {
                FrameKind::Key
            } else {
                FrameKind::Delta
            };
            mux.video(VideoCodec::H264, frame, 1000 + t * FRAME_TICKS);
        }
        let run = run(SegmenterConfig::default(), &mux.out);
        let clocks: Vec<_> = run
            .clocks
            .iter()
            .map(|c| (c - 1000) / FRAME_TICKS)
            .collect();
        assert_eq!(clocks, [0, 3, 6]);
    }

    #[test]
    fn timeline_unwraps_and_bridges_jumps() {
        let mut t = Timeline::default();
        assert_eq!(t.place(100), (100, false));
        assert_eq!(t.place(50), (50, false)); // a step back (B-frame) stays a step back
        assert_eq!(t.place((1 << 33) - 10), (0, false)); // clamped: before the first value
        let mut t = Timeline::default();
        let top = (1 << 33) - 10;
        assert_eq!(t.place(top), (top, false));
        assert_eq!(t.place(5), ((1 << 33) + 5, false));
        assert_eq!(t.place((1 << 33) - 1), ((1 << 33) - 1, false));
        assert_eq!(t.place(20), ((1 << 33) + 20, false));
        // A jump of 13 hours forward: the timeline carries on just after its latest value.
        assert_eq!(t.place(1 << 32), ((1 << 33) + 21, true));
        assert_eq!(t.place((1 << 32) + 3600), ((1 << 33) + 21 + 3600, false));
        // The source restarts at 1000 (back by far more than B-frames could explain).
        assert_eq!(t.place(1000), ((1 << 33) + 21 + 3601, true));
        // Back by a second is still just reordering.
        assert_eq!(
            t.place(1000 + 90_000),
            ((1 << 33) + 21 + 3601 + 90_000, false)
        );
        assert_eq!(t.place(1000), ((1 << 33) + 21 + 3601, false));
    }

    #[test]
    fn restarted_timestamps_keep_the_clock_going_and_cut() {
        // The same 4-second stream twice, as `cat a.ts a.ts` would give.
        let built = build(VideoCodec::H264, 100, 25, 900_000, true);
        let mut input = built.ts.clone();
        input.extend_from_slice(&built.ts);
        let run = run(min_duration(3000), &input);
        let starts: Vec<_> = run.segments.iter().map(|s| s.pts.unwrap()).collect();
        let last = 900_000 + 99 * FRAME_TICKS;
        let second = 25 * FRAME_TICKS;
        assert_eq!(
            starts,
            [
                900_000,
                900_000 + 3 * second,
                last + 1,
                last + 1 + 3 * second
            ]
        );
        assert_eq!(run.clocks.len(), 200);
        assert_eq!(*run.clocks.last().unwrap(), last + 1 + 99 * FRAME_TICKS);
    }

    #[test]
    fn pes_header_parsing() {
        let pes = pes_packet(0xe0, 0x1_2345_6789, &[1, 2, 3]);
        assert_eq!(
            parse_pes_header(&pes),
            PesHeader::Parsed {
                length: 14,
                pts: Some(0x1_2345_6789)
            }
        );
        for n in 0..14 {
            assert_eq!(parse_pes_header(&pes[..n]), PesHeader::Incomplete, "{n}");
        }
        assert_eq!(parse_pes_header(&[0, 1]), PesHeader::Invalid);
        assert_eq!(
            parse_pes_header(&[0, 0, 1, 0xbe, 0, 0]),
            PesHeader::Parsed {
                length: 6,
                pts: None
            }
        );
    }

    #[test]
    fn section_spanning_packets() {
        // A PMT with 60 streams (305 bytes) spans two packets.
        let mut streams = vec![(STREAM_TYPE_H264, VIDEO_PID)];
        streams.extend((0..59).map(|i| (STREAM_TYPE_AAC, 0x300 + i)));
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(0, &streams);
        assert_eq!(mux.packet_count(), 3);
        mux.video(VideoCodec::H264, FrameKind::Key, 0);
        let run = run(SegmenterConfig::default(), &mux.out);
        assert_eq!(run.segments.len(), 1);
        assert_eq!(run.segments[0].data, mux.out);
    }

    /// Asserts the output invariants on arbitrary input (run_with checks the rest).
    fn fuzz_run(input: &[u8], rng: &mut XorShift) {
        let max = 1 + rng.below(4000);
        let run = run_with(SegmenterConfig::default(), input, || 1 + rng.below(max));
        let out: u64 = run.segments.iter().map(|s| s.data.len() as u64).sum();
        assert!(out <= input.len() as u64 + 4 * PACKET_SIZE as u64 * run.stats.segments);
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let input = rng.bytes(2 << 20);
        fuzz_run(&input, &mut rng);
    }

    #[test]
    fn random_packets_never_panic() {
        // Well-formed packet headers with random flags and payloads on the PIDs that matter, and
        // payloads seeded with start codes and section headers, so parsers see deep input.
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        let mut input = Vec::new();
        let pids = [PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID, 0x1fff];
        let valid = build(VideoCodec::H264, 20, 5, 0, true);
        for _ in 0..20_000 {
            if rng.below(8) == 0 {
                // A real packet from a valid stream keeps the table state interesting.
                let i = rng.below(valid.ts.len() / PACKET_SIZE);
                input.extend_from_slice(&valid.ts[i * PACKET_SIZE..(i + 1) * PACKET_SIZE]);
                continue;
            }
            let pid = pids[rng.below(pids.len())];
            let mut packet = rng.bytes(PACKET_SIZE);
            packet[0] = SYNC_BYTE;
            // transport_error_indicator only now and then: it makes the packet be skipped.
            let flags = if rng.below(16) == 0 { 0xe0 } else { 0x60 };
            packet[1] = (packet[1] & flags) | (pid >> 8) as u8;
            packet[2] = pid as u8;
            if rng.below(2) == 0 {
                let at = 4 + rng.below(170);
                let seeds: [&[u8]; 4] = [
                    &[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5],
                    &[0, 0, 1, 0x65],
                    &[0, 0, 1, 0x26, 0x01],
                    &[0x00, 0x02, 0xb0, 0x20, 0, 1, 0xc1, 0, 0],
                ];
                let seed = seeds[rng.below(seeds.len())];
                packet[at..at + seed.len()].copy_from_slice(seed);
            }
            input.extend_from_slice(&packet);
        }
        fuzz_run(&input, &mut rng);
    }

    #[test]
    fn corrupted_stream_never_panics() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let built = build(VideoCodec::Hevc, 200, 25, (1 << 33) - 1000, true);
        for _ in 0..4 {
            let mut input = built.ts.clone();
            for _ in 0..2000 {
                let i = rng.below(input.len());
                input[i] = rng.next() as u8;
            }
            fuzz_run(&input, &mut rng);
        }
    }
}
