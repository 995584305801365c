//! An MPEG-TS to fragmented MP4 remuxer: the Trickle segments of a channel (MPEG-TS, each one GOP
//! starting with PAT, PMT and a keyframe) in, an init segment and small fragments out, for a
//! browser's Media Source Extensions (`GET /{ch}/live.mp4`) and later LL-HLS/DASH (init.mp4 and
//! parts). A channel is remuxed once and the outputs are shared by all its viewers.
//!
//! Like the segmenter, it is a pure state machine (bytes in, outputs out; no I/O, no async). Feed
//! each segment with [`Remuxer::start_segment`], any number of [`Remuxer::push`] (arbitrary
//! chunks), then [`Remuxer::end_segment`]. Out come:
//! - [`Output::Init`] (ftyp + moov) once the tracks are known, and again only when they change (a
//!   new SPS, resolution or AAC config, a track added or removed);
//! - [`Output::Fragment`] (moof + mdat) as soon as each video frame is complete (the next PES of
//!   the stream starts, PES_packet_length says so, or the segment ends): one frame plus the audio
//!   received up to it, so a browser can start within a frame. A fragment starting with a keyframe
//!   says so: that is where a viewer joins. Audio-only channels get fragments of a few AAC frames;
//! - [`Output::Unsupported`] when the program has no stream we can carry (H.264, HEVC, AAC in
//!   ADTS), with a one-line reason.
//!
//! With [`Remuxer::split_tracks`] on (for DASH, one track per Representation), each init segment
//! and fragment is also given track by track, right after it: [`Output::TrackInit`] and
//! [`Output::TrackFragment`] (see `split`). The muxed outputs stay the same, byte for byte.
//!
//! Decode times are continuous and monotonic for the whole channel (see `timeline`), video in
//! 90 kHz units, audio in samples. The input is untrusted: garbage is skipped (packet resync), a
//! damaged or oversized PES is dropped and counted, a segment ended early (`complete = false`)
//! loses its unfinished frame, and video restarts at the next keyframe.
//!
//! The transport stream is read with the segmenter's own parsers (packet sync, PSI sections, PES
//! headers, NAL units). The pieces here: `assembler` (PES reassembly), `video` and `audio` (the
//! two tracks), `track` (codec configs and codecs strings), `sps` (SPS fields), `timeline` (the
//! output clock), `boxes` (MP4 boxes), `split` (per-track output) and `output` (what comes out).

mod assembler;
mod audio;
mod boxes;
mod output;
mod split;
#[cfg(test)]
mod split_tests;
mod sps;
#[cfg(test)]
mod tests;
mod timeline;
mod track;
mod video;

use bytes::Bytes;

use crate::media::mpegts::nal::VideoCodec;
use crate::media::mpegts::packet::{Found, Packet, PacketSync};
use crate::media::mpegts::psi::{PAT_PID, SectionAssembler, parse_pat, pmt_streams};
use assembler::Pes;
use audio::AudioTrack;
use boxes::{Run, Sample};
pub use output::{Output, Stats, Track};
use split::Splitter;
use timeline::{Clock, samples_to_ticks};
use track::{AudioConfig, VideoConfig};
use video::VideoTrack;

/// Audio-only channels: a fragment once this many AAC frames are held (about 85 ms at 48 kHz).
const AUDIO_FRAGMENT_FRAMES: usize = 4;
/// Video frames held while waiting for the audio config before the first init segment, at most
/// (bytes); past that, or at the end of the first segment, the init goes out without audio.
const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;

/// Remuxes one channel. See the module docs.
pub struct Remuxer {
    sync: PacketSync,
    pat: SectionAssembler,
    pmt: SectionAssembler,
    pmt_pid: Option<u16>,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    clock: Clock,
    /// The segment being fed, and the last one before it.
    seq: Option<u64>,
    last_seq: Option<u64>,
    /// What the last init segment described.
    init: Option<(Option<VideoConfig>, Option<AudioConfig>)>,
    /// Video frames waiting for the first init segment (the audio config not known yet).
    held: Vec<(Sample, u64, u64)>,
    held_bytes: usize,
    /// mfhd sequence_number of the next fragment.
    fragment_number: u32,
    /// Per-track output, when on.
    split: Option<Splitter>,
    unsupported: Option<String>,
    stats: Stats,
    /// PES and frames dropped by tracks that were since replaced.
    dropped_before: (u64, u64),
}

impl Default for Remuxer {
    fn default() -> Remuxer {
        Remuxer::new()
    }
}

impl Remuxer {
    pub fn new() -> Remuxer {
        Remuxer {
            sync: PacketSync::default(),
            pat: SectionAssembler::sections_only(),
            pmt: SectionAssembler::sections_only(),
            pmt_pid: None,
            video: None,
            audio: None,
            clock: Clock::default(),
            seq: None,
            last_seq: None,
            init: None,
            held: Vec::new(),
            held_bytes: 0,
            fragment_number: 1,
            split: None,
            unsupported: None,
            stats: Stats::default(),
            dropped_before: (0, 0),
        }
    }

    /// A new Trickle segment begins. A segment that was not ended loses what it left unfinished;
    /// after a gap in sequence numbers, video waits for a keyframe.
    pub fn start_segment(&mut self, seq: u64) {
        if self.seq.is_some() {
            self.abandon_segment();
        }
        if self
            .last_seq
            .is_some_and(|last| last.checked_add(1) != Some(seq))
            && let Some(video) = &mut self.video
        {
            video.need_keyframe = true;
        }
        self.seq = Some(seq);
    }

    /// Bytes of the current segment as they arrive, split anywhere.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Output>) {
        let mut sync = std::mem::take(&mut self.sync);
        sync.push(bytes, |found| self.found(found, out));
        self.sync = sync;
    }

    /// The segment ended; `complete = false` if it was cut short (a failed upload): its unfinished
    /// frames are dropped and video resumes at the next keyframe.
    pub fn end_segment(&mut self, complete: bool, out: &mut Vec<Output>) {
        let mut sync = std::mem::take(&mut self.sync);
        sync.finish(|found| self.found(found, out));
        self.sync = sync;
        if !complete {
            self.abandon_segment();
        } else {
            if let Some(video) = &mut self.video
                && let Some(pes) = video.pes.end_segment()
            {
                let ts = video.current.take();
                self.video_frame(&pes, ts, None, out);
            }
            if let Some(audio) = &mut self.audio
                && let Some(pes) = audio.pes.end_segment()
            {
                audio.take_pes(pes);
            }
            self.finish_segment(out);
        }
        self.last_seq = self.seq.take();
    }

    /// Also gives the output track by track ([`Output::TrackInit`], [`Output::TrackFragment`]),
    /// for DASH; off by default. The muxed outputs are the same either way. Turned on after an
    /// init segment went out, the per-track inits of that init come before the next per-track
    /// fragment; turned off and on again, per-track fragments count their sequence numbers from 1
    /// again.
    pub fn split_tracks(&mut self, on: bool) {
        if !on {
            self.split = None;
        } else if self.split.is_none() {
            self.split = Some(Splitter::new());
        }
    }

    /// Why the channel cannot be remuxed, while that is so (its program has no H.264, HEVC or AAC
    /// stream).
    pub fn unsupported(&self) -> Option<&str> {
        self.unsupported.as_deref()
    }

    pub fn stats(&self) -> Stats {
        let (mut pes, mut frames) = self.dropped_before;
        if let Some(video) = &self.video {
            pes += video.pes.dropped;
            frames += video.dropped_frames;
        }
        if let Some(audio) = &self.audio {
            pes += audio.pes.dropped;
            frames += audio.dropped_frames;
        }
        Stats {
            dropped_pes: pes,
            dropped_frames: frames,
            rebases: self.clock.rebases,
            ..self.stats.clone()
        }
    }

    /// Drops the unfinished frames of a segment cut short.
    fn abandon_segment(&mut self) {
        self.sync = PacketSync::default();
        if let Some(video) = &mut self.video {
            if video.pes.end_segment().is_some() {
                video.dropped_frames += 1;
            }
            video.current = None;
            video.need_keyframe = true;
            video.fresh = true;
        }
        if let Some(audio) = &mut self.audio {
            if audio.pes.end_segment().is_some() {
                audio.pes.dropped += 1;
            }
            audio.end_segment();
        }
        self.pat = SectionAssembler::sections_only();
        self.pmt = SectionAssembler::sections_only();
    }

    /// The end of a complete segment: the first init waits no longer for audio, an audio-only
    /// channel sends what it holds.
    fn finish_segment(&mut self, out: &mut Vec<Output>) {
        if let Some(video) = &mut self.video {
            video.fresh = true;
        }
        if let Some(audio) = &mut self.audio {
            audio.end_segment();
        }
        self.release_held(true, out);
        if self.video.is_none() {
            self.audio_fragment(out);
        }
        self.pat = SectionAssembler::sections_only();
        self.pmt = SectionAssembler::sections_only();
    }

    fn found(&mut self, found: Found, out: &mut Vec<Output>) {
        match found {
            Found::Packet(raw) => {
                // None: transport_error_indicator, a damaged packet.
                let Some(packet) = Packet::parse(raw) else {
                    self.stats.skipped_bytes += raw.len() as u64;
                    return;
                };
                self.stats.packets += 1;
                self.packet(&packet, out);
            }
            Found::Skipped(bytes) => self.stats.skipped_bytes += bytes as u64,
            Found::Resync => self.stats.resyncs += 1,
        }
    }

    fn packet(&mut self, packet: &Packet, out: &mut Vec<Output>) {
        if packet.pid == PAT_PID {
            if let Some(section) = self.pat.push(packet)
                && let Some(pmt_pid) = parse_pat(&section.section)
                && pmt_pid != self.pmt_pid
            {
                self.pmt_pid = pmt_pid;
                self.pmt = SectionAssembler::sections_only();
            }
        } else if Some(packet.pid) == self.pmt_pid {
            if let Some(section) = self.pmt.push(packet) {
                self.program(&section.section, out);
            }
        } else if self.video.as_ref().is_some_and(|v| v.pid == packet.pid) {
            self.video_packet(packet, out);
        } else if let Some(audio) = self.audio.as_mut().filter(|a| a.pid == packet.pid) {
            let completed = audio.pes.push(packet);
            for pes in [completed.previous, completed.current]
                .into_iter()
                .flatten()
            {
                audio.take_pes(pes);
            }
            let pending = audio.pending_frames();
            if self.video.is_some() {
                self.release_held(false, out);
            } else if pending >= AUDIO_FRAGMENT_FRAMES {
                self.audio_fragment(out);
            }
        }
    }

    /// A PMT: picks the first H.264/HEVC stream and the first AAC (ADTS) stream.
    fn program(&mut self, section: &[u8], out: &mut Vec<Output>) {
        let Some(streams) = pmt_streams(section) else {
            return;
        };
        let (mut video, mut audio, mut others) = (None, None, Vec::new());
        for stream in streams {
            match stream.stream_type {
                0x1b => _ = video.get_or_insert((stream.pid, VideoCodec::H264)),
                0x24 => _ = video.get_or_insert((stream.pid, VideoCodec::Hevc)),
                0x0f => _ = audio.get_or_insert(stream.pid),
                other => others.push(format!("0x{other:02x}")),
            }
        }
        if video.is_none() && audio.is_none() {
            let reason = if others.is_empty() {
                "the program has no streams".to_string()
            } else {
                format!(
                    "no H.264, HEVC or AAC (ADTS) stream in the program (stream types {})",
                    others.join(", ")
                )
            };
            if self.unsupported.as_ref() != Some(&reason) {
                out.push(Output::Unsupported(reason.clone()));
                self.unsupported = Some(reason);
            }
        } else {
            self.unsupported = None;
        }
        if self.video.as_ref().map(|v| (v.pid, v.codec)) != video {
            self.retire_tracks(true, false);
            self.video = video.map(|(pid, codec)| VideoTrack::new(pid, codec));
        }
        if self.audio.as_ref().map(|a| a.pid) != audio {
            self.retire_tracks(false, true);
            self.audio = audio.map(AudioTrack::new);
        }
    }

    /// Keeps the counts of tracks about to be replaced.
    fn retire_tracks(&mut self, video: bool, audio: bool) {
        if video && let Some(v) = &self.video {
            self.dropped_before.0 += v.pes.dropped;
            self.dropped_before.1 += v.dropped_frames;
        }
        if audio && let Some(a) = &self.audio {
            self.dropped_before.0 += a.pes.dropped;
            self.dropped_before.1 += a.dropped_frames;
        }
    }

    fn video_packet(&mut self, packet: &Packet, out: &mut Vec<Output>) {
        let Some(video) = &mut self.video else {
            return;
        };
        let dropped = video.pes.dropped;
        let completed = video.pes.push(packet);
        if video.pes.dropped != dropped {
            // A frame was lost: the ones after it may reference it.
            video.need_keyframe = true;
        }
        // The frame that just ended was placed when its header was read; the header of the next
        // one, if already read, gives its exact duration.
        let ended = video.current.take();
        if let Some((pts, dts)) = completed.started {
            let pending = completed.previous.is_some() && ended.is_some();
            video.place(&mut self.clock, pts, dts, pending);
        }
        let next_dts = video.current.map(|ts| ts.dts);
        if let Some(pes) = completed.previous {
            self.video_frame(&pes, ended, next_dts, out);
        } else if let Some(video) = &mut self.video
            && completed.started.is_none()
        {
            // Still the same PES: it keeps its times.
            video.current = ended;
        }
        if let Some(pes) = completed.current
            && let Some(video) = &mut self.video
        {
            let ts = video.current.take();
            self.video_frame(&pes, ts, None, out);
        }
    }

    fn video_frame(
        &mut self,
        pes: &Pes,
        ts: Option<video::Ts>,
        next_dts: Option<i64>,
        out: &mut Vec<Output>,
    ) {
        let Some(video) = &mut self.video else {
            return;
        };
        let Some((sample, dts)) = video.frame(pes, ts, next_dts) else {
            return;
        };
        let seq = self.seq.or(self.last_seq).unwrap_or(0);
        self.held_bytes += sample.data.len();
        self.held.push((sample, dts, seq));
        self.release_held(false, out);
    }

    /// Sends the held video frames once the first init can go out: the audio config is known (or
    /// there is no audio), or `force` (the end of a segment), or too much is held.
    fn release_held(&mut self, force: bool, out: &mut Vec<Output>) {
        if self.held.is_empty() {
            return;
        }
        let audio_known = self.audio.as_ref().is_none_or(|a| a.config.is_some());
        if self.init.is_none() && !audio_known && !force && self.held_bytes <= MAX_HELD_BYTES {
            return;
        }
        self.held_bytes = 0;
        for (sample, dts, seq) in std::mem::take(&mut self.held) {
            self.video_fragment(sample, dts, seq, out);
        }
    }

    fn video_fragment(&mut self, sample: Sample, dts: u64, seq: u64, out: &mut Vec<Output>) {
        self.ensure_init(out);
        let audio = self
            .audio
            .as_mut()
            .and_then(|a| a.take_run(&mut self.clock, false));
        let (keyframe, duration) = (sample.sync, u64::from(sample.duration));
        let video = [sample];
        let mut runs = vec![Run {
            track: Track::Video,
            decode_time: dts,
            samples: &video,
        }];
        if let Some((decode_time, samples)) = &audio
            && !samples.is_empty()
            && self.init_has_audio()
        {
            runs.push(Run {
                track: Track::Audio,
                decode_time: *decode_time,
                samples,
            });
        }
        self.fragment(&runs, seq, keyframe, dts, duration, out);
    }

    /// An audio-only fragment of the frames held.
    fn audio_fragment(&mut self, out: &mut Vec<Output>) {
        let Some(audio) = &mut self.audio else {
            return;
        };
        let Some((decode_time, samples)) = audio.take_run(&mut self.clock, true) else {
            return;
        };
        let rate = audio.config.map_or(1, |c| c.sample_rate);
        if samples.is_empty() {
            return;
        }
        self.ensure_init(out);
        let duration: i64 = samples.iter().map(|s| i64::from(s.duration)).sum();
        let start = samples_to_ticks(decode_time as i64, rate) as u64;
        let duration = samples_to_ticks(duration, rate) as u64;
        let runs = [Run {
            track: Track::Audio,
            decode_time,
            samples: &samples,
        }];
        let seq = self.seq.or(self.last_seq).unwrap_or(0);
        self.fragment(&runs, seq, true, start, duration, out);
    }

    fn init_has_audio(&self) -> bool {
        self.init.as_ref().is_some_and(|(_, audio)| audio.is_some())
    }

    /// Sends an init segment if the tracks' configs are not those of the last one.
    fn ensure_init(&mut self, out: &mut Vec<Output>) {
        let video = self.video.as_ref().and_then(|v| v.config.as_ref());
        let audio = self.audio.as_ref().and_then(|a| a.config);
        if self
            .init
            .as_ref()
            .is_some_and(|(v, a)| v.as_ref() == video && *a == audio)
        {
            return;
        }
        let wanted = (video.cloned(), audio);
        let (video, audio) = &wanted;
        let Ok(bytes) = boxes::init_segment(video.as_ref(), audio.as_ref()) else {
            return;
        };
        let codecs: Vec<String> = [
            video.as_ref().map(|v| v.codecs.clone()),
            audio.as_ref().map(|a| a.codecs()),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.push(Output::Init {
            bytes: Bytes::from(bytes),
            codecs: codecs.join(","),
        });
        self.stats.inits += 1;
        if let Some(split) = &mut self.split {
            split.inits(video.as_ref(), audio.as_ref(), out);
        }
        self.init = Some(wanted);
    }

    fn fragment(
        &mut self,
        runs: &[Run],
        seq: u64,
        keyframe: bool,
        start: u64,
        duration: u64,
        out: &mut Vec<Output>,
    ) {
        let Ok((bytes, starts)) = boxes::fragment(self.fragment_number, runs) else {
            return;
        };
        self.fragment_number = self.fragment_number.wrapping_add(1).max(1);
        self.stats.fragments += 1;
        let bytes = Bytes::from(bytes);
        let muxed = self.split.is_some().then(|| bytes.clone());
        out.push(Output::Fragment {
            bytes,
            seq,
            keyframe,
            start,
            duration,
        });
        if let (Some(split), Some(muxed)) = (&mut self.split, muxed) {
            let (video, audio) = self
                .init
                .as_ref()
                .map_or((None, None), |(v, a)| (v.as_ref(), *a));
            if !split.inits_sent {
                split.inits(video, audio.as_ref(), out);
            }
            let rate = audio.map_or(1, |a| a.sample_rate);
            split.fragments(&muxed, runs, &starts, seq, rate, out);
        }
    }
}
