//! H.264 and HEVC NAL units: scanning an Annex-B byte stream for NAL unit headers until the first
//! slice tells whether the access unit is a keyframe.

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
