//! The AAC track: ADTS frames split out of each PES (their headers stripped: the config goes into
//! the init segment), held until they go into a fragment, and timed then.
//!
//! Audio is timed by counting samples (1024 per frame) from where the track stands, checked
//! against the PTS of each PES: jitter of up to two frames is absorbed; a larger gap in the source
//! is kept (the frame before it lasts longer); frames that would overlap what was already sent are
//! dropped; a difference beyond [`MAX_STEP`] means the timeline itself jumped and the leading track
//! has not bridged it yet, so the count goes on. Timing at fragment time, not on arrival, lets a
//! rebase by the video track (placed just before) apply to the audio that arrived before it.

use std::collections::VecDeque;

use super::assembler::{Pes, PesAssembler};
use super::boxes::Sample;
use super::timeline::{Clock, MAX_STEP, Previous, samples_to_ticks, ticks_to_samples};
use super::track::{AAC_FRAME_SAMPLES, Adts, AudioConfig, parse_adts};

/// Frames held for the next fragment at most (about 5 s at 48 kHz); older ones are dropped.
const MAX_PENDING: usize = 256;
/// Longest ADTS frame (13-bit length).
const MAX_FRAME: usize = 8191;
const FRAME: i64 = AAC_FRAME_SAMPLES as i64;

struct Frame {
    data: Vec<u8>,
    /// The raw PTS of its PES, on the first frame that starts in that PES.
    pts: Option<u64>,
}

pub(super) struct AudioTrack {
    pub(super) pid: u16,
    pub(super) pes: PesAssembler,
    pub(super) config: Option<AudioConfig>,
    /// The start of a frame that continues in the next PES.
    carry: Vec<u8>,
    pending: VecDeque<Frame>,
    /// Time of the next frame, in samples.
    next: Option<i64>,
    /// The next PES placed is the first of a segment (when audio leads).
    pub(super) fresh: bool,
    pub(super) dropped_frames: u64,
}

impl AudioTrack {
    pub(super) fn new(pid: u16) -> AudioTrack {
        AudioTrack {
            pid,
            pes: PesAssembler::new(),
            config: None,
            carry: Vec::new(),
            pending: VecDeque::new(),
            next: None,
            fresh: true,
            dropped_frames: 0,
        }
    }

    pub(super) fn pending_frames(&self) -> usize {
        self.pending.len()
    }

    /// Splits a PES into frames. Bytes that are not ADTS are skipped up to the next sync word.
    /// A frame whose config differs from the track's changes it (the frames held under the old
    /// one are dropped: they would need the old init segment).
    pub(super) fn take_pes(&mut self, pes: Pes) {
        let mut data = std::mem::take(&mut self.carry);
        let carried = data.len();
        data.extend_from_slice(&pes.data);
        let mut pts = pes.pts;
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
            match parse_adts(rest) {
                Adts::Frame {
                    config,
                    header,
                    length,
                } => {
                    let Some(raw) = rest.get(header..length) else {
                        break; // continues in the next PES
                    };
                    if self.config != Some(config) {
                        self.dropped_frames += self.pending.len() as u64;
                        self.pending.clear();
                        self.config = Some(config);
                    }
                    // The PES's PTS belongs to the first frame that starts in it.
                    let frame_pts = if pos >= carried { pts.take() } else { None };
                    self.hold(Frame {
                        data: raw.to_vec(),
                        pts: frame_pts,
                    });
                    pos += length;
                }
                Adts::NeedMore => break,
                Adts::Invalid => {
                    // Resynchronise on the next 0xFFF.
                    pos += 1 + rest
                        .iter()
                        .skip(1)
                        .position(|&b| b == 0xff)
                        .unwrap_or(rest.len() - 1);
                }
            }
        }
        let rest = data.get(pos..).unwrap_or_default();
        if rest.len() <= MAX_FRAME {
            self.carry = rest.to_vec();
        }
    }

    fn hold(&mut self, frame: Frame) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.dropped_frames += 1;
        }
        self.pending.push_back(frame);
    }

    /// The end of a segment: a frame cut by it is not completed by the next one.
    pub(super) fn end_segment(&mut self) {
        self.carry.clear();
        self.fresh = true;
    }

    /// The held frames as samples from their decode time (in samples), timed now. `leading`:
    /// audio is the leading track and may move the timeline.
    pub(super) fn take_run(
        &mut self,
        clock: &mut Clock,
        leading: bool,
    ) -> Option<(u64, Vec<Sample>)> {
        let rate = self.config?.sample_rate;
        let mut samples: Vec<Sample> = Vec::with_capacity(self.pending.len());
        let mut start = None;
        let mut skip = 0;
        while let Some(frame) = self.pending.pop_front() {
            if let Some(pts) = frame.pts {
                skip = self.reconcile(clock, pts, rate, leading, &mut samples);
            }
            if skip > 0 {
                skip -= 1;
                self.dropped_frames += 1;
                continue;
            }
            let Some(time) = self.next.filter(|&t| t >= 0) else {
                self.dropped_frames += 1;
                continue;
            };
            start.get_or_insert(time);
            self.next = Some(time + FRAME);
            samples.push(Sample {
                data: frame.data,
                duration: AAC_FRAME_SAMPLES as u32,
                cts: None,
                sync: true,
            });
        }
        Some((start? as u64, samples))
    }

    /// Checks the count against a PES's PTS; returns how many of its frames to drop.
    fn reconcile(
        &mut self,
        clock: &mut Clock,
        pts: u64,
        rate: u32,
        leading: bool,
        samples: &mut [Sample],
    ) -> usize {
        let ticks = if leading {
            let previous = self.next.map(|next| Previous {
                last: samples_to_ticks(next - FRAME, rate),
                expected: samples_to_ticks(next, rate),
                tolerance: samples_to_ticks(FRAME, rate),
            });
            let fresh = std::mem::take(&mut self.fresh);
            clock.place_leading(pts, previous.as_ref(), fresh)
        } else {
            clock.map(pts)
        };
        let time = ticks_to_samples(ticks, rate);
        let Some(next) = self.next else {
            self.next = Some(time);
            return 0;
        };
        let step = time - next;
        let max = ticks_to_samples(MAX_STEP, rate);
        if step.abs() <= 2 * FRAME || step.abs() > max {
            0
        } else if step > 0 {
            // A gap in the source: the frame before it (if in this run) lasts until the next one
            // starts; otherwise the run simply starts later.
            if let Some(last) = samples.last_mut() {
                last.duration = last.duration.saturating_add(step as u32);
            }
            self.next = Some(time);
            0
        } else {
            ((-step) / FRAME) as usize
        }
    }
}
