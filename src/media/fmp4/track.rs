//! Track configurations: what an init segment says about each track, taken from the stream itself.
//! For video, the parameter sets (VPS/SPS/PPS) of the access units and what the SPS says (picture
//! size, profile and level, for the sample entry and the codecs string: `avc1.PPCCLL`, or
//! `hvc1.…` per ISO/IEC 14496-15 Annex E); for AAC, the ADTS header of each frame (object type,
//! sampling frequency, channels: the AudioSpecificConfig). A config that changes makes a new init
//! segment.

use std::fmt::Write;

use super::sps::{AvcSps, HevcSps, parse_avc_sps, parse_hevc_sps};
use crate::media::mpegts::nal::VideoCodec;

/// Parameter sets seen in the stream, in order of arrival, without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ParamSets {
    pub(super) vps: Vec<Vec<u8>>,
    pub(super) sps: Vec<Vec<u8>>,
    pub(super) pps: Vec<Vec<u8>>,
}

/// More parameter sets than this of one kind in an access unit are ignored: real streams have one
/// or two, and each would be copied into every init segment.
const MAX_PARAM_SETS: usize = 16;

impl ParamSets {
    pub(super) fn is_empty(&self) -> bool {
        self.vps.is_empty() && self.sps.is_empty() && self.pps.is_empty()
    }

    pub(super) fn add(list: &mut Vec<Vec<u8>>, nal: &[u8]) {
        // A parameter set longer than 64 KiB cannot be stored in avcC/hvcC (16-bit lengths).
        if list.len() < MAX_PARAM_SETS
            && nal.len() <= usize::from(u16::MAX)
            && !list.iter().any(|p| p == nal)
        {
            list.push(nal.to_vec());
        }
    }

    /// These parameter sets, with each kind that `newer` carries replaced by its version.
    pub(super) fn updated(&self, newer: &ParamSets) -> ParamSets {
        let pick = |old: &Vec<Vec<u8>>, new: &Vec<Vec<u8>>| {
            if new.is_empty() {
                old.clone()
            } else {
                new.clone()
            }
        };
        ParamSets {
            vps: pick(&self.vps, &newer.vps),
            sps: pick(&self.sps, &newer.sps),
            pps: pick(&self.pps, &newer.pps),
        }
    }
}

/// What the sample entry needs beyond the parameter sets, by codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum VideoFormat {
    /// The SPS's profile_idc, constraint flags and level_idc (avcC copies them), and the rest.
    Avc {
        indication: [u8; 3],
        sps: AvcSps,
    },
    Hevc(HevcSps),
}

/// A video track's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct VideoConfig {
    pub(super) params: ParamSets,
    pub(super) format: VideoFormat,
    pub(super) width: u16,
    pub(super) height: u16,
    pub(super) codecs: String,
}

impl VideoConfig {
    /// A config from parameter sets, if they are complete (an SPS we can read and a PPS, plus a
    /// VPS for HEVC).
    pub(super) fn new(codec: VideoCodec, params: ParamSets) -> Option<VideoConfig> {
        let first_sps = params.sps.first()?;
        if params.pps.is_empty() {
            return None;
        }
        let (format, width, height, codecs) = match codec {
            VideoCodec::H264 => {
                let sps = parse_avc_sps(first_sps)?;
                let indication: [u8; 3] = first_sps.get(1..4)?.try_into().ok()?;
                let [profile, constraints, level] = indication;
                let codecs = format!("avc1.{profile:02x}{constraints:02x}{level:02x}");
                let (width, height) = (sps.width, sps.height);
                (VideoFormat::Avc { indication, sps }, width, height, codecs)
            }
            VideoCodec::Hevc => {
                if params.vps.is_empty() {
                    return None;
                }
                let sps = parse_hevc_sps(first_sps)?;
                let (width, height, codecs) = (sps.width, sps.height, hevc_codecs(&sps));
                (VideoFormat::Hevc(sps), width, height, codecs)
            }
        };
        Some(VideoConfig {
            params,
            format,
            width,
            height,
            codecs,
        })
    }
}

/// `hvc1.<space><profile>.<compatibility>.<tier><level>.<constraints>` (ISO/IEC 14496-15 Annex E):
/// the profile space as A/B/C (nothing for 0), the 32 compatibility flags in reverse bit order as
/// hex, L or H for the tier, and the six constraint bytes as hex, trailing zero bytes omitted.
fn hevc_codecs(sps: &HevcSps) -> String {
    let space = match sps.profile_space {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let tier = if sps.tier { 'H' } else { 'L' };
    let mut codecs = format!(
        "hvc1.{space}{}.{:X}.{tier}{}",
        sps.profile_idc,
        sps.compatibility.reverse_bits(),
        sps.level_idc
    );
    let used = sps
        .constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for byte in &sps.constraints[..used] {
        let _ = write!(codecs, ".{byte:X}");
    }
    codecs
}

/// Sampling frequencies by ADTS sampling_frequency_index.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// An AAC track's configuration, from an ADTS header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AudioConfig {
    /// MPEG-4 audioObjectType (ADTS profile + 1: 2 = AAC LC).
    pub(super) object_type: u8,
    pub(super) frequency_index: u8,
    pub(super) sample_rate: u32,
    /// channel_configuration (0: defined in the stream, which we pass through as is).
    pub(super) channels: u8,
}

impl AudioConfig {
    /// The 2-byte AudioSpecificConfig: object type (5 bits), frequency index (4), channels (4).
    pub(super) fn audio_specific_config(&self) -> [u8; 2] {
        [
            self.object_type << 3 | self.frequency_index >> 1,
            (self.frequency_index & 1) << 7 | (self.channels & 0x0f) << 3,
        ]
    }

    pub(super) fn codecs(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// Samples in one AAC frame.
pub(super) const AAC_FRAME_SAMPLES: u64 = 1024;

/// Reading the ADTS frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Adts {
    /// A frame: its config, and where its raw data lies (`header..length`).
    Frame {
        config: AudioConfig,
        header: usize,
        length: usize,
    },
    /// Fewer than a header's bytes.
    NeedMore,
    /// No ADTS frame starts here (no sync word, or fields we cannot use).
    Invalid,
}

pub(super) fn parse_adts(data: &[u8]) -> Adts {
    let Some(&[b0, b1, b2, b3, b4, b5, b6]) = data.first_chunk::<7>() else {
        let prefix_ok = match data {
            [] => true,
            [b0] => *b0 == 0xff,
            [b0, b1, ..] => *b0 == 0xff && b1 & 0xf6 == 0xf0,
        };
        return if prefix_ok {
            Adts::NeedMore
        } else {
            Adts::Invalid
        };
    };
    // Sync word 0xFFF, layer 0.
    if b0 != 0xff || b1 & 0xf6 != 0xf0 {
        return Adts::Invalid;
    }
    let header = if b1 & 0x01 == 1 { 7 } else { 9 };
    let frequency_index = (b2 >> 2) & 0x0f;
    let length = usize::from(b3 & 0x03) << 11 | usize::from(b4) << 3 | usize::from(b5 >> 5);
    // Several raw data blocks in one frame would be several samples with CRCs between them: rare
    // enough not to support.
    let raw_blocks = b6 & 0x03;
    let Some(&sample_rate) = SAMPLE_RATES.get(usize::from(frequency_index)) else {
        return Adts::Invalid;
    };
    if length <= header || raw_blocks != 0 {
        return Adts::Invalid;
    }
    Adts::Frame {
        config: AudioConfig {
            object_type: (b2 >> 6) + 1,
            frequency_index,
            sample_rate,
            channels: (b2 & 0x01) << 2 | b3 >> 6,
        },
        header,
        length,
    }
}

#[cfg(test)]
mod tests {
    use super::super::sps::tests::{X264_SPS, X265_SPS};
    use super::*;

    fn params(vps: &[&[u8]], sps: &[&[u8]], pps: &[&[u8]]) -> ParamSets {
        let list = |l: &[&[u8]]| l.iter().map(|p| p.to_vec()).collect();
        ParamSets {
            vps: list(vps),
            sps: list(sps),
            pps: list(pps),
        }
    }

    #[test]
    fn codecs_strings() {
        let avc = VideoConfig::new(VideoCodec::H264, params(&[], &[&X264_SPS], &[&[0x68, 1]]));
        assert_eq!(avc.unwrap().codecs, "avc1.42c00d");
        let hevc = params(&[&[0x40, 1]], &[&X265_SPS], &[&[0x44, 1]]);
        let hevc = VideoConfig::new(VideoCodec::Hevc, hevc).unwrap();
        assert_eq!(hevc.codecs, "hvc1.1.6.L60.90");
        assert_eq!((hevc.width, hevc.height), (320, 240));
        // Incomplete sets: no config.
        assert!(VideoConfig::new(VideoCodec::H264, params(&[], &[&X264_SPS], &[])).is_none());
        let no_vps = params(&[], &[&X265_SPS], &[&[0x44, 1]]);
        assert!(VideoConfig::new(VideoCodec::Hevc, no_vps).is_none());
    }

    #[test]
    fn hevc_codecs_of_main10_high_tier() {
        let sps = HevcSps {
            max_sub_layers: 1,
            temporal_id_nesting: true,
            profile_space: 0,
            tier: true,
            profile_idc: 2,
            compatibility: 0x2000_0000,
            constraints: [0xb0, 0, 0, 0, 0, 0],
            level_idc: 120,
            chroma_format_idc: 1,
            bit_depth_luma: 10,
            bit_depth_chroma: 10,
            width: 3840,
            height: 2160,
        };
        assert_eq!(hevc_codecs(&sps), "hvc1.2.4.H120.B0");
    }

    #[test]
    fn adts_headers() {
        // AAC LC, 48 kHz, stereo, 8-byte frame without CRC.
        let frame = [0xff, 0xf1, 0x4c, 0x80, 0x01, 0x1f, 0xfc, 0x21];
        let Adts::Frame {
            config,
            header,
            length,
        } = parse_adts(&frame)
        else {
            panic!("not parsed");
        };
        assert_eq!((header, length), (7, 8));
        assert_eq!(config.sample_rate, 48000);
        assert_eq!((config.object_type, config.channels), (2, 2));
        assert_eq!(config.audio_specific_config(), [0x11, 0x90]);
        assert_eq!(config.codecs(), "mp4a.40.2");
        assert_eq!(parse_adts(&frame[..3]), Adts::NeedMore);
        assert_eq!(parse_adts(&[0xff, 0x00]), Adts::Invalid);
        assert_eq!(parse_adts(&[0x12]), Adts::Invalid);
        let mut bad_rate = frame;
        bad_rate[2] = 0x7c; // frequency index 15
        assert_eq!(parse_adts(&bad_rate), Adts::Invalid);
    }
}
