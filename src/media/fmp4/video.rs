//! One video access unit, from the Annex-B bytes of a PES packet to an MP4 sample: each NAL unit
//! behind a 4-byte big-endian length instead of a start code.
//!
//! Parameter sets and access unit delimiters are taken out of the sample, and filler data dropped.
//! The parameter sets go into the init segment's avcC/hvcC instead (a change makes a new init
//! segment). Keeping them in-band would be allowed for `avc1`, but not for `hvc1` (whose arrays
//! are marked complete: the sample entry holds every parameter set), which is the HEVC sample
//! entry Safari's MSE accepts; doing the same for both codecs keeps one rule, and the samples
//! smaller. Delimiters carry nothing an MP4 reader needs.

use super::assembler::{Pes, PesAssembler};
use super::boxes::Sample;
use super::timeline::{Clock, MASK, MAX_STEP, Previous};
use super::track::{ParamSets, VideoConfig};
use crate::media::mpegts::nal::{NalKind, VideoCodec, annexb_units, nal_kind};
use crate::media::mpegts::pes::wrapped_step;

/// Frame duration assumed until two frames have been seen (30 fps).
const DEFAULT_DURATION: i64 = 3000;

/// Decode and presentation time of a frame on the output timeline (90 kHz).
#[derive(Clone, Copy, Debug)]
pub(super) struct Ts {
    pub(super) dts: i64,
    pub(super) pts: i64,
}

/// The video track: its PES packets, parameter sets and where its timeline stands.
pub(super) struct VideoTrack {
    pub(super) pid: u16,
    pub(super) codec: VideoCodec,
    pub(super) pes: PesAssembler,
    /// The parameter sets seen so far (the latest of each kind) and the config they make.
    params: ParamSets,
    pub(super) config: Option<VideoConfig>,
    /// The times of the PES being gathered, placed when its header was read.
    pub(super) current: Option<Ts>,
    /// Decode time of the latest frame placed.
    last_dts: Option<i64>,
    /// The latest frame duration measured: the estimate for a frame whose successor is unknown.
    duration: i64,
    /// Where the latest frame sent ends.
    end: Option<i64>,
    /// Where the frames sent end in presentation order.
    shown_until: Option<i64>,
    /// The next frame placed is the first of a segment.
    pub(super) fresh: bool,
    /// Frames are dropped until a keyframe: at the start, after a lost frame or a skipped
    /// segment, after a config change.
    pub(super) need_keyframe: bool,
    /// Video resumed at a keyframe: the RASL pictures after it (which reference what came
    /// before it) are dropped, as a decoder starting there would.
    skip_leading: bool,
    pub(super) dropped_frames: u64,
}

impl VideoTrack {
    pub(super) fn new(pid: u16, codec: VideoCodec) -> VideoTrack {
        VideoTrack {
            pid,
            codec,
            pes: PesAssembler::new(),
            params: ParamSets::default(),
            config: None,
            current: None,
            last_dts: None,
            duration: DEFAULT_DURATION,
            end: None,
            shown_until: None,
            fresh: true,
            need_keyframe: true,
            skip_leading: false,
            dropped_frames: 0,
        }
    }

    /// Places the timestamps of a PES header: its DTS (or PTS) moves the timeline if needed (see
    /// `timeline`); without any, the frame is taken to follow the previous one. `pending`: the
    /// frame placed before this one is complete and about to be sent.
    pub(super) fn place(
        &mut self,
        clock: &mut Clock,
        pts: Option<u64>,
        dts: Option<u64>,
        pending: bool,
    ) {
        let fresh = std::mem::take(&mut self.fresh);
        // How long this frame is shown after its decode time (B-frames reordered before it).
        let delay = match (pts, dts) {
            (Some(pts), Some(dts)) => wrapped_step((dts & MASK) as i64, (pts & MASK) as i64),
            _ => 0,
        };
        let previous = self.last_dts.map(|last| Previous {
            last,
            // The timeline, when moved, continues after the latest frame placed if it is still
            // to be sent, else where the frames sent end (a frame dropped before the
            // discontinuity leaves no hole)...
            expected: match self.end {
                Some(end) if !pending => end,
                _ => last + self.duration,
            }
            // ...but it is not shown before what was shown already: after a segment cut short,
            // frames sent before the cut may be shown later than their decode order suggests
            // (their B-frames were lost).
            .max(self.shown_until.map_or(i64::MIN, |shown| shown - delay)),
            tolerance: self.duration / 2,
        });
        let ts = match dts.or(pts) {
            Some(raw) => {
                let dts = clock.place_leading(raw, previous.as_ref(), fresh);
                let pts = match (pts, dts) {
                    (Some(pts), _) if pts != raw => clock.map(pts),
                    _ => dts,
                };
                Some(Ts { dts, pts })
            }
            None => previous.map(|p| Ts {
                dts: p.expected,
                pts: p.expected,
            }),
        };
        self.last_dts = ts.map(|ts| ts.dts).or(self.last_dts);
        self.current = ts;
    }

    /// A complete frame at `ts`, followed by one at `next_dts` if known: the sample to send and
    /// its decode time, or None if it is dropped.
    pub(super) fn frame(
        &mut self,
        pes: &Pes,
        ts: Option<Ts>,
        next_dts: Option<i64>,
    ) -> Option<(Sample, u64)> {
        let au = convert(self.codec, &pes.data);
        if !au.params.is_empty() {
            let params = self.params.updated(&au.params);
            if params != self.params {
                self.config = VideoConfig::new(self.codec, params.clone());
                self.params = params;
                // A new config applies from a keyframe on.
                self.need_keyframe |= !au.key;
            }
        }
        let usable = au.has_slice && self.config.is_some() && (au.key || !self.need_keyframe);
        let Some(ts) = ts.filter(|_| usable) else {
            self.dropped_frames += 1;
            self.need_keyframe |= au.has_slice;
            return None;
        };
        if au.key {
            self.skip_leading = std::mem::take(&mut self.need_keyframe);
        } else if !au.skipped_leading {
            self.skip_leading = false;
        } else if self.skip_leading {
            self.dropped_frames += 1;
            return None;
        }
        let measured = next_dts
            .map(|next| next - ts.dts)
            .filter(|d| (1..=MAX_STEP).contains(d));
        if let Some(measured) = measured {
            self.duration = measured;
        }
        let end = ts.dts + measured.unwrap_or(self.duration);
        // Never before what was sent: a duration estimated too long is absorbed here.
        let dts = self.end.map_or(ts.dts, |sent| sent.max(ts.dts));
        if dts < 0 {
            self.dropped_frames += 1;
            return None;
        }
        let duration = (end - dts).max(1);
        self.end = Some(dts + duration);
        let cts = ts.pts - dts;
        let cts = if cts.abs() > MAX_STEP { 0 } else { cts };
        let shown = dts + cts + duration;
        self.shown_until = Some(self.shown_until.map_or(shown, |s| s.max(shown)));
        let cts = cts as i32;
        let sample = Sample {
            data: au.sample,
            duration: duration as u32,
            cts: Some(cts),
            sync: au.key,
        };
        Some((sample, dts as u64))
    }
}

/// An access unit made into a sample.
pub(super) struct AccessUnit {
    /// Length-prefixed NAL units.
    pub(super) sample: Vec<u8>,
    /// It holds a keyframe slice (H.264 IDR, HEVC IRAP).
    pub(super) key: bool,
    /// It holds at least one slice (else it is not a picture and is dropped).
    pub(super) has_slice: bool,
    /// Its slices are HEVC RASL: not decodable when decoding started at the CRA before them.
    pub(super) skipped_leading: bool,
    /// The parameter sets it carried.
    pub(super) params: ParamSets,
}

pub(super) fn convert(codec: VideoCodec, annexb: &[u8]) -> AccessUnit {
    let mut au = AccessUnit {
        sample: Vec::with_capacity(annexb.len()),
        key: false,
        has_slice: false,
        skipped_leading: false,
        params: ParamSets::default(),
    };
    for nal in annexb_units(annexb) {
        let Some(&header) = nal.first() else {
            continue;
        };
        match nal_kind(codec, header) {
            NalKind::Vps => ParamSets::add(&mut au.params.vps, nal),
            NalKind::Sps => ParamSets::add(&mut au.params.sps, nal),
            NalKind::Pps => ParamSets::add(&mut au.params.pps, nal),
            NalKind::Delimiter | NalKind::Filler | NalKind::Invalid => {}
            kind @ (NalKind::Slice { .. } | NalKind::Other) => {
                // A NAL unit this large cannot come out of an 8 MB PES; the check keeps the
                // length prefix honest whatever the cap.
                let Ok(length) = u32::try_from(nal.len()) else {
                    continue;
                };
                if let NalKind::Slice {
                    key,
                    skipped_leading,
                } = kind
                {
                    au.skipped_leading = skipped_leading && (au.skipped_leading || !au.has_slice);
                    au.has_slice = true;
                    au.key |= key;
                }
                au.sample.extend_from_slice(&length.to_be_bytes());
                au.sample.extend_from_slice(nal);
            }
        }
    }
    au
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_becomes_length_prefixed_without_parameter_sets() {
        let annexb = [
            0, 0, 0, 1, 0x09, 0xf0, // AUD
            0, 0, 0, 1, 0x67, 0x42, 0, 0x1f, // SPS
            0, 0, 0, 1, 0x68, 0xce, // PPS
            0, 0, 1, 0x06, 5, 1, 0x80, // SEI
            0, 0, 1, 0x65, 0x88, 0x84, // IDR slice
        ];
        let au = convert(VideoCodec::H264, &annexb);
        assert!(au.key && au.has_slice);
        assert_eq!(au.params.sps, [vec![0x67, 0x42, 0, 0x1f]]);
        assert_eq!(au.params.pps, [vec![0x68, 0xce]]);
        assert_eq!(
            au.sample,
            [0, 0, 0, 4, 0x06, 5, 1, 0x80, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
        let delta = convert(VideoCodec::H264, &[0, 0, 1, 0x41, 0x9a]);
        assert!(!delta.key && delta.has_slice && delta.params.is_empty());
        let none = convert(VideoCodec::H264, &[0, 0, 1, 0x09, 0xf0]);
        assert!(!none.has_slice && none.sample.is_empty());
    }
}
