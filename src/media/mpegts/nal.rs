//! H.264 and HEVC NAL units: what a NAL unit header says (slice, keyframe, parameter set...),
//! scanning an Annex-B byte stream for NAL unit headers until the first slice tells whether the
//! access unit is a keyframe, and splitting a whole Annex-B access unit into its NAL units.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VideoCodec {
    H264,
    Hevc,
}

/// Scans Annex-B byte streams for NAL unit headers, across calls, until the first VCL NAL unit
/// tells whether the access unit is a keyframe.
pub(super) struct NalScanner {
    codec: VideoCodec,
    /// Zero bytes just seen (saturating; two or more before 0x01 make a start code).
    zeros: u8,
    /// The next byte is a NAL unit header.
    at_header: bool,
}

impl NalScanner {
    pub(super) fn new(codec: VideoCodec) -> NalScanner {
        NalScanner {
            codec,
            zeros: 0,
            at_header: false,
        }
    }

    pub(super) fn scan(&mut self, data: &[u8]) -> Option<bool> {
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

/// What a NAL unit is, by its header's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NalKind {
    /// A slice; `key` for H.264 IDR and HEVC IRAP (BLA, IDR, CRA) pictures; `skipped_leading`
    /// for HEVC RASL pictures, which reference pictures before their CRA and cannot be decoded
    /// when decoding starts at that CRA.
    Slice {
        key: bool,
        skipped_leading: bool,
    },
    /// HEVC video parameter set.
    Vps,
    Sps,
    Pps,
    /// Access unit delimiter.
    Delimiter,
    /// Filler data.
    Filler,
    /// SEI, end of sequence, reserved types...
    Other,
    /// forbidden_zero_bit set: not a real NAL unit header.
    Invalid,
}

pub(crate) fn nal_kind(codec: VideoCodec, header: u8) -> NalKind {
    if header & 0x80 != 0 {
        return NalKind::Invalid;
    }
    match codec {
        VideoCodec::H264 => match header & 0x1f {
            5 => slice(true, false),      // IDR slice
            1..=4 => slice(false, false), // non-IDR slice, data partitions
            7 => NalKind::Sps,
            8 => NalKind::Pps,
            9 => NalKind::Delimiter,
            12 => NalKind::Filler,
            _ => NalKind::Other,
        },
        VideoCodec::Hevc => match (header >> 1) & 0x3f {
            16..=21 => slice(true, false), // BLA, IDR, CRA
            8 | 9 => slice(false, true),   // RASL
            0..=7 => slice(false, false),  // TRAIL, TSA, STSA, RADL
            32 => NalKind::Vps,
            33 => NalKind::Sps,
            34 => NalKind::Pps,
            35 => NalKind::Delimiter,
            38 => NalKind::Filler,
            _ => NalKind::Other,
        },
    }
}

fn slice(key: bool, skipped_leading: bool) -> NalKind {
    NalKind::Slice {
        key,
        skipped_leading,
    }
}

/// Some(true) for a keyframe slice, Some(false) for another slice, None for non-VCL units
/// (parameter sets, SEI, delimiters) that precede the first slice.
fn classify_nal(codec: VideoCodec, header: u8) -> Option<bool> {
    match nal_kind(codec, header) {
        NalKind::Slice { key, .. } => Some(key),
        _ => None,
    }
}

/// The NAL units of a complete Annex-B byte stream (an access unit): the bytes between start codes
/// (00 00 01, or 00 00 00 01), without the zero bytes that trail a unit. Bytes before the first
/// start code are not a NAL unit and are skipped.
pub(crate) fn annexb_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = after_start_code(data);
    std::iter::from_fn(move || {
        let current = rest?;
        let (unit, next) = match find_start_code(current) {
            Some((at, after)) => (&current[..at], current.get(after..)),
            None => (current, None),
        };
        rest = next;
        // trailing_zero_8bits, and the first zero of a 4-byte start code.
        let end = unit.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        Some(&unit[..end])
    })
    .filter(|unit| !unit.is_empty())
}

fn after_start_code(data: &[u8]) -> Option<&[u8]> {
    let (_, after) = find_start_code(data)?;
    data.get(after..)
}

/// Where the first 00 00 01 starts, and where the bytes after it begin.
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let mut from = 2;
    while let Some(found) = data.get(from..)?.iter().position(|&b| b == 1) {
        let one = from + found;
        if data[one - 1] == 0 && data[one - 2] == 0 {
            return Some((one - 2, one + 1));
        }
        from = one + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_units_split_at_start_codes() {
        let data = [
            9, 9, // junk before the first start code
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 3, 0, // SPS with an emulation prevention byte
            0, 0, 1, 0x68, 5, // PPS after a 3-byte start code
            0, 0, 0, 0, 1, 0x65, 0, 0, 2, 7, 0, 0, // trailing zeros after the slice
        ];
        let units: Vec<&[u8]> = annexb_units(&data).collect();
        assert_eq!(
            units,
            [&[0x67, 1, 2, 0, 0, 3][..], &[0x68, 5], &[0x65, 0, 0, 2, 7]]
        );
        assert_eq!(annexb_units(&[0, 0, 1]).count(), 0);
        assert_eq!(annexb_units(&[1, 2, 3]).count(), 0);
        assert_eq!(annexb_units(&[0, 1, 0, 0]).count(), 0);
    }
    use crate::media::mpegts::SegmenterConfig;
    use crate::media::mpegts::testing::*;

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
}
