//! Per-track output, for DASH: a Representation carries one track, and players read it as such
//! (ffmpeg's DASH demuxer hands every sample of a Representation to one decoder), so each muxed
//! init segment and fragment is also given track by track (see [`Output::TrackInit`] and
//! [`Output::TrackFragment`]).
//!
//! Nothing is remuxed twice: the per-track init is the muxed one's code with one track, and a
//! per-track fragment is a moof with the muxed fragment's traf for that track (built by the same
//! code, `boxes::fragment_head`) in front of that track's samples, sliced out of the muxed
//! fragment's bytes (they lie together in its mdat), so sample bytes are neither copied nor held
//! twice.

use bytes::Bytes;

use super::boxes::{self, Run, VIDEO_TIMESCALE};
use super::output::{Output, Track};
use super::timeline::samples_to_ticks;
use super::track::{AudioConfig, VideoConfig};

/// Where per-track output stands.
pub(super) struct Splitter {
    /// mfhd sequence_number of each track's next fragment (video, audio): each track counts its
    /// own, as a file of its fragments would.
    next: [u32; 2],
    /// The per-track inits of the init segment in force went out (not yet when per-track output
    /// was turned on after it).
    pub(super) inits_sent: bool,
}

impl Splitter {
    pub(super) fn new() -> Splitter {
        Splitter {
            next: [1, 1],
            inits_sent: false,
        }
    }

    /// A [`Output::TrackInit`] for each track of an init segment, video first.
    pub(super) fn inits(
        &mut self,
        video: Option<&VideoConfig>,
        audio: Option<&AudioConfig>,
        out: &mut Vec<Output>,
    ) {
        let tracks = [
            video.map(|v| {
                (
                    Track::Video,
                    boxes::init_segment(Some(v), None),
                    v.codecs.clone(),
                )
            }),
            audio.map(|a| (Track::Audio, boxes::init_segment(None, Some(a)), a.codecs())),
        ];
        for (track, bytes, codec) in tracks.into_iter().flatten() {
            if let Ok(bytes) = bytes {
                out.push(Output::TrackInit {
                    track,
                    bytes: Bytes::from(bytes),
                    codec,
                });
            }
        }
        self.inits_sent = true;
    }

    /// A [`Output::TrackFragment`] for each run of a muxed fragment that has samples: `muxed` is
    /// that fragment's bytes, `starts` where each run's samples start in it, `audio_rate` the
    /// audio track's timescale.
    pub(super) fn fragments(
        &mut self,
        muxed: &Bytes,
        runs: &[Run],
        starts: &[usize],
        seq: u64,
        audio_rate: u32,
        out: &mut Vec<Output>,
    ) {
        for (run, &at) in runs.iter().zip(starts) {
            let Some(first) = run.samples.first() else {
                continue;
            };
            let end = at + run.media_len();
            if end > muxed.len() {
                continue; // not where `boxes::fragment` puts them: cannot happen
            }
            let number = match run.track {
                Track::Video => &mut self.next[0],
                Track::Audio => &mut self.next[1],
            };
            let Ok((head, _)) = boxes::fragment_head(*number, std::slice::from_ref(run)) else {
                continue;
            };
            *number = number.wrapping_add(1).max(1);
            let timescale = match run.track {
                Track::Video => VIDEO_TIMESCALE,
                Track::Audio => audio_rate,
            };
            let length: i64 = run.samples.iter().map(|s| i64::from(s.duration)).sum();
            let decode_time = run.decode_time as i64;
            let start = samples_to_ticks(decode_time, timescale);
            let end_time = samples_to_ticks(decode_time + length, timescale);
            out.push(Output::TrackFragment {
                track: run.track,
                head: Bytes::from(head),
                media: muxed.slice(at..end),
                seq,
                keyframe: first.sync,
                start: start as u64,
                duration: (end_time - start) as u64,
            });
        }
    }
}
