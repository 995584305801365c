//! Transport stream packets: finding packet alignment in arbitrary bytes (resynchronisation after
//! garbage or a lost byte) and reading the fields of a 188-byte packet's header and adaptation
//! field that the segmenter and the fMP4 remuxer need.

/// Size of one transport stream packet.
pub const PACKET_SIZE: usize = 188;

pub(super) const SYNC_BYTE: u8 = 0x47;

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

/// What [`PacketSync`] finds in its input, in order.
pub(crate) enum Found<'a> {
    /// A packet, aligned (its first byte is the sync byte).
    Packet(&'a [u8; PACKET_SIZE]),
    /// This many bytes were thrown away: garbage between packets, or a trailing partial packet.
    Skipped(usize),
    /// The stream lost packet alignment; a hunt for sync begins.
    Resync,
}

/// Splits arbitrary chunks of a transport stream into packets, hunting for sync where the stream is
/// misaligned. Holds less than a packet while in sync, at most three packets (plus the input of
/// the current push) while hunting.
pub(crate) struct PacketSync {
    pending: Vec<u8>,
    synced: bool,
}

impl Default for PacketSync {
    fn default() -> PacketSync {
        PacketSync {
            pending: Vec::new(),
            // Optimistic: a clean stream is taken from its first byte; if that is not a sync byte
            // we count a resync and hunt like anywhere else.
            synced: true,
        }
    }
}

impl PacketSync {
    /// Feeds any number of bytes (arbitrary split points); `each` sees what they complete.
    pub(crate) fn push(&mut self, input: &[u8], each: impl FnMut(Found<'_>)) {
        self.pending.extend_from_slice(input);
        self.consume(false, each);
    }

    /// End of input: takes what the held bytes still hold, then drops a trailing partial packet
    /// (reported as skipped). The next push starts afresh, as at the start of a stream.
    pub(crate) fn finish(&mut self, mut each: impl FnMut(Found<'_>)) {
        self.consume(true, &mut each);
        if !self.pending.is_empty() {
            each(Found::Skipped(self.pending.len()));
            self.pending.clear();
        }
        self.synced = true;
    }

    /// Bytes held back (for tests of its bound).
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn consume(&mut self, at_end: bool, mut each: impl FnMut(Found<'_>)) {
        let pending = &self.pending;
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
                            each(Found::Packet(packet));
                            pos += PACKET_SIZE;
                            continue;
                        }
                        Judgement::NeedMore => break,
                        Judgement::Reject => {}
                    }
                }
                self.synced = false;
                each(Found::Resync);
            }
            let (skipped, found) = match find_sync(rest, at_end) {
                SyncSearch::Found(offset) => (offset, true),
                SyncSearch::NeedMore(offset) => (offset, false),
            };
            if skipped > 0 {
                each(Found::Skipped(skipped));
            }
            pos += skipped;
            if !found {
                break;
            }
            self.synced = true;
        }
        self.pending.drain(..pos.min(self.pending.len()));
    }
}

/// Size of a packet's fixed header: sync byte, flags and PID, control bits and continuity counter.
pub(super) const HEADER_SIZE: usize = 4;

/// Null packets (padding) carry this PID.
pub(super) const NULL_PID: u16 = 0x1fff;

/// The fixed 4-byte header of a packet.
pub(super) struct Header {
    pub(super) transport_error: bool,
    pub(super) pid: u16,
    /// payload_unit_start_indicator: a PES or PSI section starts in this packet.
    pub(super) unit_start: bool,
    pub(super) has_adaptation: bool,
    pub(super) has_payload: bool,
    /// continuity_counter: counts the packets of a PID that carry a payload, modulo 16.
    pub(super) continuity: u8,
}

impl Header {
    pub(super) fn parse(raw: &[u8; HEADER_SIZE]) -> Header {
        let control = (raw[3] >> 4) & 0x3;
        Header {
            transport_error: raw[1] & 0x80 != 0,
            pid: u16::from(raw[1] & 0x1f) << 8 | u16::from(raw[2]),
            unit_start: raw[1] & 0x40 != 0,
            has_adaptation: control & 0x2 != 0,
            has_payload: control & 0x1 != 0,
            continuity: raw[3] & 0x0f,
        }
    }
}

/// Adaptation field flags: discontinuity_indicator.
pub(super) const DISCONTINUITY: u8 = 0x80;
/// Adaptation field flags: random_access_indicator.
pub(super) const RANDOM_ACCESS: u8 = 0x40;
/// Adaptation field flags: PCR_flag (a 6-byte PCR follows the flags byte).
pub(super) const PCR_FLAG: u8 = 0x10;

/// A packet's adaptation field as (adaptation_field_length, flags byte), read from the start of the
/// packet (`raw` may be a prefix). None without an adaptation field, when it is empty (length 0:
/// no flags byte), or when `raw` is too short to tell.
pub(super) fn adaptation(header: &Header, raw: &[u8]) -> Option<(usize, u8)> {
    if !header.has_adaptation {
        return None;
    }
    match *raw.get(HEADER_SIZE..HEADER_SIZE + 2)? {
        [0, _] => None,
        [length, flags] => Some((usize::from(length), flags)),
        _ => None,
    }
}

/// The parts of a transport stream packet we use.
pub(crate) struct Packet<'a> {
    pub(crate) raw: &'a [u8; PACKET_SIZE],
    pub(crate) pid: u16,
    /// payload_unit_start_indicator: a PES or PSI section starts in this packet.
    pub(crate) unit_start: bool,
    pub(crate) random_access: bool,
    /// discontinuity_indicator: the continuity counter (or the timeline) may jump here.
    pub(crate) discontinuity: bool,
    /// continuity_counter, for packets that carry a payload (only those count).
    pub(crate) continuity: Option<u8>,
    pub(crate) payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Returns None if transport_error_indicator is set.
    pub(crate) fn parse(raw: &'a [u8; PACKET_SIZE]) -> Option<Packet<'a>> {
        let header = Header::parse(raw.first_chunk()?);
        if header.transport_error {
            return None;
        }
        let mut payload_start = HEADER_SIZE;
        let mut flags = 0;
        if header.has_adaptation {
            payload_start += 1 + usize::from(raw[HEADER_SIZE]);
            flags = match adaptation(&header, raw) {
                Some((length, flags)) if length <= 183 => flags,
                _ => 0,
            };
        }
        // An adaptation field longer than the packet leaves no (trustworthy) payload.
        let payload = if header.has_payload {
            raw.get(payload_start..).unwrap_or_default()
        } else {
            &[]
        };
        Some(Packet {
            raw,
            pid: header.pid,
            unit_start: header.unit_start,
            random_access: flags & RANDOM_ACCESS != 0,
            discontinuity: flags & DISCONTINUITY != 0,
            continuity: header.has_payload.then_some(header.continuity),
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mpegts::SegmenterConfig;
    use crate::media::mpegts::testing::*;

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
}
