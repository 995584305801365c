//! Program-specific information: reassembling PAT and PMT sections that may span packets (keeping
//! the packets that carried them, which every segment starts with) and reading the program's first
//! video and audio stream from them.

use super::nal::VideoCodec;
use super::packet::Packet;

pub(crate) const PAT_PID: u16 = 0x0000;
/// Largest `section_length` of a PAT or PMT (ISO/IEC 13818-1 limits PSI sections to 1024 bytes).
const MAX_SECTION_LENGTH: usize = 1021;
/// A section is dropped if it has not completed within this many packets (tiny payloads could
/// otherwise make us hold many packets for one 1 KiB section).
const MAX_SECTION_PACKETS: usize = 8;

/// A PSI section completed by [`SectionAssembler::push`].
pub(crate) struct CompleteSection {
    pub(crate) section: Vec<u8>,
    /// The packets that carried it, verbatim (empty for [`SectionAssembler::sections_only`]).
    pub(crate) packets: Vec<u8>,
}

/// Reassembles PSI sections (PAT, PMT) that may span packets, remembering the packets.
#[derive(Default)]
pub(crate) struct SectionAssembler {
    section: Vec<u8>,
    packets: Vec<u8>,
    /// Packets of the section so far (kept or not).
    packet_count: usize,
    /// Only the sections are wanted, not the packets that carried them.
    sections_only: bool,
    active: bool,
}

impl SectionAssembler {
    /// An assembler for a reader that only needs the tables' contents (the timing meter), which
    /// then copies no packets.
    pub(crate) fn sections_only() -> SectionAssembler {
        SectionAssembler {
            sections_only: true,
            ..SectionAssembler::default()
        }
    }

    fn keep(&mut self, raw: &[u8]) {
        self.packet_count += 1;
        if !self.sections_only {
            self.packets.extend_from_slice(raw);
        }
    }

    pub(crate) fn push(&mut self, packet: &Packet) -> Option<CompleteSection> {
        if !packet.unit_start {
            if !self.active || packet.payload.is_empty() {
                return None;
            }
            self.keep(packet.raw);
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
            self.keep(packet.raw);
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
        self.keep(packet.raw);
        self.section.extend_from_slice(start);
        self.try_complete().or(previous)
    }

    fn try_complete(&mut self) -> Option<CompleteSection> {
        if self.packet_count > MAX_SECTION_PACKETS {
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
        self.packet_count = 0;
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
pub(crate) fn parse_pat(section: &[u8]) -> Option<Option<u16>> {
    let body = section_body(section, 0x00)?;
    Some(body.chunks_exact(4).find_map(|entry| {
        let program_number = u16::from(entry[0]) << 8 | u16::from(entry[1]);
        (program_number != 0).then(|| u16::from(entry[2] & 0x1f) << 8 | u16::from(entry[3]))
    }))
}

/// What the PMT tells us: the first video and the first audio stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Streams {
    pub(super) video: Option<(u16, VideoCodec)>,
    pub(super) audio: Option<u16>,
}

pub(super) struct Program {
    /// The packets that carried the PMT, verbatim.
    pub(super) packets: Vec<u8>,
    pub(super) streams: Streams,
}

/// One elementary stream listed in a PMT.
pub(crate) struct PmtStream<'a> {
    pub(crate) stream_type: u8,
    pub(crate) pid: u16,
    pub(crate) descriptors: &'a [u8],
}

/// The elementary streams a PMT lists, in order; None if it is not a usable PMT. A truncated entry
/// ends the list (the entries before it are kept).
pub(crate) fn pmt_streams(section: &[u8]) -> Option<impl Iterator<Item = PmtStream<'_>>> {
    let body = section_body(section, 0x02)?;
    let program_info_length = usize::from(body.get(2)? & 0x0f) << 8 | usize::from(*body.get(3)?);
    let mut rest = body.get(4 + program_info_length..)?;
    Some(std::iter::from_fn(move || {
        let entry = rest.first_chunk::<5>()?;
        let info_length = usize::from(entry[3] & 0x0f) << 8 | usize::from(entry[4]);
        let stream = PmtStream {
            stream_type: entry[0],
            pid: u16::from(entry[1] & 0x1f) << 8 | u16::from(entry[2]),
            descriptors: rest.get(5..5 + info_length)?,
        };
        rest = rest.get(5 + info_length..).unwrap_or_default();
        Some(stream)
    }))
}

pub(super) fn parse_pmt(section: &[u8]) -> Option<Streams> {
    let mut streams = Streams::default();
    for stream in pmt_streams(section)? {
        let video = match stream.stream_type {
            0x1b => Some(VideoCodec::H264),
            0x24 => Some(VideoCodec::Hevc),
            _ => None,
        };
        if let Some(codec) = video {
            streams.video.get_or_insert((stream.pid, codec));
        } else if is_audio(stream.stream_type, stream.descriptors) {
            streams.audio.get_or_insert(stream.pid);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mpegts::SegmenterConfig;
    use crate::media::mpegts::testing::*;

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
}
