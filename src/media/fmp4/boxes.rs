//! The MP4 boxes of fragmented MP4: the init segment (ftyp + moov, with mvex so that the media comes
//! in fragments; of both tracks, or of one for per-track output) and one fragment (moof + mdat).
//! Boxes are encoded with the `mp4-atom` crate, which covers every box we need (avcC, hvcC, esds,
//! trun version 1 with signed composition offsets); we only decide the values. The mdat header is
//! written here so that sample bytes are copied once, straight into the muxed fragment. Each
//! track's samples lie together there, so a per-track fragment is only a head (its own moof and
//! mdat header, from [`fragment_head`]) in front of a slice of the muxed one.

use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor};
use mp4_atom::{
    Audio, Avc1, Avcc, AvccExt, Codec, Dinf, Dref, Encode, Error, Esds, Ftyp, Hdlr, Hvc1,
    HvcCArray, Hvcc, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd,
    Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, Url, Visual, Vmhd,
};

use super::output::Track;
use super::track::{AudioConfig, VideoConfig, VideoFormat};

pub(super) const VIDEO_TRACK: u32 = 1;
pub(super) const AUDIO_TRACK: u32 = 2;
/// Video timescale: the MPEG-TS clock, so that timestamps carry over exactly.
pub(super) const VIDEO_TIMESCALE: u32 = 90_000;

/// sample_flags of a sync sample: sample_depends_on = 2 (depends on no other sample).
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// sample_flags of another sample: sample_depends_on = 1, sample_is_non_sync_sample.
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// One sample of a fragment.
pub(super) struct Sample {
    pub(super) data: Vec<u8>,
    /// In the track's timescale.
    pub(super) duration: u32,
    /// Composition time offset (PTS - DTS), for video.
    pub(super) cts: Option<i32>,
    pub(super) sync: bool,
}

/// The samples of one track in a fragment, from `decode_time` on (track timescale).
pub(super) struct Run<'a> {
    pub(super) track: Track,
    pub(super) decode_time: u64,
    pub(super) samples: &'a [Sample],
}

impl Run<'_> {
    /// Bytes of its samples.
    pub(super) fn media_len(&self) -> usize {
        self.samples.iter().map(|s| s.data.len()).sum()
    }
}

/// ftyp + moov for the tracks that exist.
pub(super) fn init_segment(
    video: Option<&VideoConfig>,
    audio: Option<&AudioConfig>,
) -> Result<Vec<u8>, Error> {
    let ftyp = Ftyp {
        // iso5: the first brand with default-base-is-moof, which our fragments use.
        major_brand: b"iso5".into(),
        minor_version: 512,
        compatible_brands: vec![b"iso5".into(), b"iso6".into(), b"mp41".into()],
    };
    let mut trak = Vec::new();
    let mut trex = Vec::new();
    if let Some(video) = video {
        trak.push(video_trak(video));
        trex.push(track_extends(VIDEO_TRACK));
    }
    if let Some(audio) = audio {
        trak.push(audio_trak(audio));
        trex.push(track_extends(AUDIO_TRACK));
    }
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            next_track_id: AUDIO_TRACK + 1,
            ..Mvhd::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak,
        ..Moov::default()
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(out)
}

fn track_extends(track_id: u32) -> Trex {
    Trex {
        track_id,
        default_sample_description_index: 1,
        ..Trex::default()
    }
}

fn trak(tkhd: Tkhd, timescale: u32, handler: &[u8; 4], media_header: Minf, codec: Codec) -> Trak {
    Trak {
        tkhd,
        mdia: Mdia {
            mdhd: Mdhd {
                timescale,
                language: "und".into(),
                ..Mdhd::default()
            },
            hdlr: Hdlr {
                handler: handler.into(),
                name: String::new(),
            },
            minf: Minf {
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![Url::default().into()],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![codec],
                    },
                    stco: Some(Stco::default()),
                    ..Stbl::default()
                },
                ..media_header
            },
        },
        ..Trak::default()
    }
}

fn video_trak(video: &VideoConfig) -> Trak {
    let tkhd = Tkhd {
        track_id: VIDEO_TRACK,
        enabled: true,
        in_movie: true,
        width: video.width.into(),
        height: video.height.into(),
        ..Tkhd::default()
    };
    let media_header = Minf {
        vmhd: Some(Vmhd::default()),
        ..Minf::default()
    };
    let codec = video_sample_entry(video);
    trak(tkhd, VIDEO_TIMESCALE, b"vide", media_header, codec)
}

/// avc1 with avcC, or hvc1 with hvcC: the parameter sets and what the SPS says.
fn video_sample_entry(video: &VideoConfig) -> Codec {
    let visual = Visual {
        data_reference_index: 1,
        width: video.width,
        height: video.height,
        ..Visual::default()
    };
    let params = &video.params;
    match &video.format {
        VideoFormat::Avc { indication, sps } => {
            let [profile, compatibility, level] = *indication;
            // The avcC extension is required for the High profiles that can signal a chroma
            // format or bit depth other than 4:2:0 8-bit.
            let ext = matches!(profile, 100 | 110 | 122 | 144).then(|| AvccExt {
                chroma_format: sps.chroma_format_idc,
                bit_depth_luma: sps.bit_depth_luma,
                bit_depth_chroma: sps.bit_depth_chroma,
                sequence_parameter_sets_ext: Vec::new(),
            });
            let avcc = Avcc {
                configuration_version: 1,
                avc_profile_indication: profile,
                profile_compatibility: compatibility,
                avc_level_indication: level,
                length_size: 4,
                sequence_parameter_sets: params.sps.clone(),
                picture_parameter_sets: params.pps.clone(),
                ext,
            };
            Avc1 {
                visual,
                avcc,
                ..Avc1::default()
            }
            .into()
        }
        VideoFormat::Hevc(sps) => {
            // hvc1: every parameter set is here (array_completeness), none in the samples.
            let array = |nal_unit_type, nalus: &Vec<Vec<u8>>| HvcCArray {
                completeness: true,
                nal_unit_type,
                nalus: nalus.clone(),
            };
            let hvcc = Hvcc {
                configuration_version: 1,
                general_profile_space: sps.profile_space,
                general_tier_flag: sps.tier,
                general_profile_idc: sps.profile_idc,
                general_profile_compatibility_flags: sps.compatibility.to_be_bytes(),
                general_constraint_indicator_flags: sps.constraints,
                general_level_idc: sps.level_idc,
                chroma_format_idc: sps.chroma_format_idc,
                bit_depth_luma_minus8: sps.bit_depth_luma.saturating_sub(8),
                bit_depth_chroma_minus8: sps.bit_depth_chroma.saturating_sub(8),
                num_temporal_layers: sps.max_sub_layers,
                temporal_id_nested: sps.temporal_id_nesting,
                length_size_minus_one: 3,
                arrays: vec![
                    array(32, &params.vps),
                    array(33, &params.sps),
                    array(34, &params.pps),
                ],
                ..Hvcc::new()
            };
            Hvc1 {
                visual,
                hvcc,
                ..Hvc1::default()
            }
            .into()
        }
    }
}

fn audio_trak(audio: &AudioConfig) -> Trak {
    let config = audio.audio_specific_config();
    let mp4a = Mp4a {
        audio: Audio {
            data_reference_index: 1,
            // channel_configuration 0 puts the layout in the stream; 2 is the customary value.
            channel_count: if audio.channels == 0 {
                2
            } else {
                u16::from(audio.channels)
            },
            sample_size: 16,
            // A 16.16 value: rates above 65535 Hz do not fit, and readers take the rate from
            // the AudioSpecificConfig anyway.
            sample_rate: u16::try_from(audio.sample_rate).unwrap_or(0).into(),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: AUDIO_TRACK as u16,
                dec_config: DecoderConfig {
                    object_type_indication: 0x40, // MPEG-4 audio
                    stream_type: 5,               // audio stream
                    dec_specific: Some(DecoderSpecific {
                        profile: audio.object_type,
                        freq_index: audio.frequency_index,
                        chan_conf: audio.channels,
                        raw: config.to_vec(),
                    }),
                    ..DecoderConfig::default()
                },
                ..EsDescriptor::default()
            },
        },
        btrt: None,
        taic: None,
    };
    let tkhd = Tkhd {
        track_id: AUDIO_TRACK,
        enabled: true,
        in_movie: true,
        alternate_group: 1,
        volume: 1.into(),
        ..Tkhd::default()
    };
    let media_header = Minf {
        smhd: Some(Smhd::default()),
        ..Minf::default()
    };
    trak(tkhd, audio.sample_rate, b"soun", media_header, mp4a.into())
}

/// moof + mdat holding the runs' samples, in run order; and where each run's samples start in
/// it.
pub(super) fn fragment(sequence: u32, runs: &[Run]) -> Result<(Vec<u8>, Vec<usize>), Error> {
    let (mut out, starts) = fragment_head(sequence, runs)?;
    out.reserve_exact(runs.iter().map(Run::media_len).sum());
    for sample in runs.iter().flat_map(|run| run.samples) {
        out.extend_from_slice(&sample.data);
    }
    Ok((out, starts))
}

/// The start of a fragment whose samples (the runs', in run order) follow it: the moof, then the
/// mdat's header. Also where each run's samples start, from the start of the moof. The muxed
/// fragments and the per-track ones (one run each) are made here.
pub(super) fn fragment_head(sequence: u32, runs: &[Run]) -> Result<(Vec<u8>, Vec<usize>), Error> {
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: runs.iter().map(traf).collect(),
    };
    // trun data offsets count from the start of the moof (default-base-is-moof) and the moof's
    // size does not depend on their values: encode once to learn it, then for real.
    let mut probe = Vec::new();
    moof.encode(&mut probe)?;
    let mut offset = probe.len() + 8;
    let mut starts = Vec::with_capacity(runs.len());
    for (traf, run) in moof.traf.iter_mut().zip(runs) {
        if let Some(trun) = traf.trun.first_mut() {
            trun.data_offset = Some(i32::try_from(offset).map_err(|_| Error::InvalidSize)?);
        }
        starts.push(offset);
        offset += run.media_len();
    }
    let mdat_size = u32::try_from(offset - probe.len()).map_err(|_| Error::InvalidSize)?;
    let mut out = Vec::with_capacity(probe.len() + 8);
    moof.encode(&mut out)?;
    out.extend_from_slice(&mdat_size.to_be_bytes());
    out.extend_from_slice(b"mdat");
    Ok((out, starts))
}

fn traf(run: &Run) -> Traf {
    let entries: Vec<TrunEntry> = run
        .samples
        .iter()
        .map(|sample| TrunEntry {
            duration: Some(sample.duration),
            size: Some(sample.data.len() as u32),
            flags: Some(if sample.sync {
                SYNC_SAMPLE
            } else {
                NON_SYNC_SAMPLE
            }),
            cts: sample.cts.map(i64::from),
        })
        .collect();
    Traf {
        tfhd: Tfhd {
            track_id: run.track.id(),
            default_base_is_moof: true,
            ..Tfhd::default()
        },
        tfdt: Some(Tfdt {
            base_media_decode_time: run.decode_time,
        }),
        trun: vec![Trun {
            data_offset: Some(0),
            samples: entries.into(),
        }],
        ..Traf::default()
    }
}
