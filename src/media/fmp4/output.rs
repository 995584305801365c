//! What the remuxer hands out: init segments and fragments of the muxed stream (both tracks in
//! one, for MSE and LL-HLS) and, when asked, of each track alone (for DASH, whose players want
//! one track per Representation), plus its counters.

use bytes::Bytes;

use super::boxes::{AUDIO_TRACK, VIDEO_TRACK};

/// What the remuxer produces, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// An init segment (ftyp + moov) and the RFC 6381 codecs of its tracks, such as
    /// `avc1.64001f,mp4a.40.2`. Fragments that follow need it. A later init replaces the one
    /// before (a player re-initialises with it); usually the same tracks with a new config, but a
    /// track that only appeared after the first init (the first segment had no AAC frame) adds
    /// one.
    Init { bytes: Bytes, codecs: String },
    /// A fragment (moof + mdat).
    Fragment {
        bytes: Bytes,
        /// The Trickle segment its frames came from.
        seq: u64,
        /// It starts with a video keyframe (or is audio only): a viewer can start here.
        keyframe: bool,
        /// Decode time of its first frame and how long it lasts, in 90 kHz units (of the video
        /// track, or of the audio track on an audio-only channel).
        start: u64,
        duration: u64,
    },
    /// Only with [`Remuxer::split_tracks`](super::Remuxer::split_tracks): the init segment of one
    /// track alone (ftyp + moov with that trak and its own trex; the same track_ID and sample
    /// entry as in the muxed init), and that track's RFC 6381 codec (`avc1.64001f`). Right after
    /// each [`Output::Init`], one per track it has, video first (per-track output turned on
    /// after an init went out: those of that init, before the first per-track fragment).
    TrackInit {
        track: Track,
        bytes: Bytes,
        codec: String,
    },
    /// Only with [`Remuxer::split_tracks`](super::Remuxer::split_tracks): what the
    /// [`Output::Fragment`] just before it holds of one track, as a fragment of its own. Right
    /// after each muxed fragment, video first; none for a track that has no sample in it.
    ///
    /// The fragment is `head` followed by `media`: `head` is a moof with only this track's traf
    /// (its trun's data_offset pointing past `head`) and the mdat's 8-byte header; `media` is
    /// this track's samples, a slice of the muxed fragment's bytes (shared, not copied). A DASH
    /// media segment is the fragments of one track with the same `seq`, one after the other.
    TrackFragment {
        track: Track,
        head: Bytes,
        media: Bytes,
        /// The Trickle segment its samples came from (that of the muxed fragment).
        seq: u64,
        /// Its first sample is a sync sample: for video, the muxed fragment's keyframe flag; for
        /// audio always (every AAC frame is).
        keyframe: bool,
        /// Decode time of its first sample and how long it lasts, in 90 kHz units for both
        /// tracks (the boxes use each track's own timescale: 90 kHz for video, the sample rate
        /// for audio). Audio times are rounded down from samples, the duration as the rounded
        /// end minus the rounded start, so that a track's fragments join exactly.
        start: u64,
        duration: u64,
    },
    /// The program has no stream that fits fragmented MP4; why, in one line.
    Unsupported(String),
}

/// One track of the remuxed stream, in per-track outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Track {
    Video,
    Audio,
}

impl Track {
    /// Its track_ID in the boxes (the same in muxed and per-track output).
    pub(super) fn id(self) -> u32 {
        match self {
            Track::Video => VIDEO_TRACK,
            Track::Audio => AUDIO_TRACK,
        }
    }
}

/// Counters, for logging and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transport packets read.
    pub packets: u64,
    /// Bytes skipped: garbage between packets, partial packets at the end of a segment.
    pub skipped_bytes: u64,
    pub resyncs: u64,
    pub inits: u64,
    pub fragments: u64,
    /// PES packets dropped: packets missing (continuity), larger than 8 MB, invalid header, or
    /// cut short by the end of their segment.
    pub dropped_pes: u64,
    /// Frames dropped: video that cannot be decoded where it stands (before a keyframe, without
    /// parameter sets, no slice), audio that overlaps or came before any timestamp.
    pub dropped_frames: u64,
    /// Times the timeline was moved to bridge a timestamp discontinuity or a missing segment.
    pub rebases: u64,
}
