//! The keyframe lookahead: a video PES start is held back, together with every packet after it,
//! until its NAL units tell whether it begins with a keyframe (where a segment may start). Its
//! memory is bounded by the budgets below.

use bytes::Bytes;

use super::nal::{NalScanner, VideoCodec};
use super::packet::{PACKET_SIZE, Packet};
use super::pes::{PesHeader, parse_pes_header};

/// Video payload we scan for the first VCL NAL unit before giving up ("not a keyframe").
const VIDEO_LOOKAHEAD: usize = 64 * 1024;
/// The same when the packet carried random_access_indicator: a keyframe is announced, so its
/// parameter sets and SEI may be large and are worth looking further into.
const VIDEO_LOOKAHEAD_RANDOM_ACCESS: usize = 256 * 1024;
/// Packets of all PIDs held during one lookahead (guards against a sparse video PID).
const MAX_LOOKAHEAD_BYTES: usize = 2 * 1024 * 1024;

/// A video PES start held back until we know whether it begins with a keyframe, together with
/// every packet (of any PID) received after it.
pub(super) struct Lookahead {
    pub(super) pid: u16,
    pub(super) codec: VideoCodec,
    /// PAT and PMT as they were when the PES started: the tables describing this frame.
    pub(super) tables: Bytes,
    pub(super) packets: Vec<u8>,
    pub(super) packet_count: u64,
    /// Start of the PES until its header is complete (it may straddle packets).
    pes_head: Vec<u8>,
    header_done: bool,
    /// Raw PTS of the PES; placed on the timeline when the lookahead is resolved, in stream order.
    pub(super) pts: Option<u64>,
    nal_scanner: NalScanner,
    video_bytes: usize,
    video_budget: usize,
}

impl Lookahead {
    pub(super) fn new(pid: u16, codec: VideoCodec, tables: Bytes, packet: &Packet) -> Lookahead {
        Lookahead {
            pid,
            codec,
            tables,
            packets: packet.raw.to_vec(),
            packet_count: 1,
            pes_head: Vec::new(),
            header_done: false,
            pts: None,
            nal_scanner: NalScanner::new(codec),
            video_bytes: 0,
            video_budget: if packet.random_access {
                VIDEO_LOOKAHEAD_RANDOM_ACCESS
            } else {
                VIDEO_LOOKAHEAD
            },
        }
    }

    pub(super) fn hold(&mut self, raw: &[u8; PACKET_SIZE]) {
        self.packets.extend_from_slice(raw);
        self.packet_count += 1;
    }

    /// Takes the next piece of the video PES; returns the verdict once there is one.
    pub(super) fn feed_video(&mut self, payload: &[u8]) -> Option<bool> {
        self.video_bytes += payload.len();
        if self.header_done {
            return self.nal_scanner.scan(payload);
        }
        self.pes_head.extend_from_slice(payload);
        match parse_pes_header(&self.pes_head) {
            PesHeader::Incomplete => None,
            PesHeader::Invalid => Some(false),
            PesHeader::Parsed { length, pts, .. } => {
                self.header_done = true;
                self.pts = pts;
                let head = std::mem::take(&mut self.pes_head);
                self.nal_scanner
                    .scan(head.get(length..).unwrap_or_default())
            }
        }
    }

    pub(super) fn over_budget(&self) -> bool {
        self.video_bytes > self.video_budget || self.packets.len() > MAX_LOOKAHEAD_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mpegts::SegmenterConfig;
    use crate::media::mpegts::testing::*;

    #[test]
    fn long_sei_before_the_first_slice_is_looked_through() {
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(
            0,
            &[(STREAM_TYPE_H264, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)],
        );
        // 3 KiB of SEI: the IDR slice is ~17 packets in, with audio interleaved.
        let au = access_unit(VideoCodec::H264, FrameKind::Key, 3000);
        let mut pes = pes_packet(0xe0, 0, &au).into_iter();
        let mut first = true;
        let key_index = mux.packet_count();
        while pes.len() > 0 {
            let chunk: Vec<u8> = pes.by_ref().take(184).collect();
            // Write PES pieces by hand so audio can sit between them.
            let continuation = !first;
            if continuation {
                mux.audio(0);
            }
            let start = mux.packet_count();
            mux.unit(VIDEO_PID, &chunk, false);
            if continuation {
                mux.out[start * PACKET_SIZE + 1] &= !0x40; // not a unit start
            }
            first = false;
        }
        mux.video(VideoCodec::H264, FrameKind::Delta, FRAME_TICKS);
        let run = run(SegmenterConfig::default(), &mux.out);
        assert_eq!(run.segments.len(), 1);
        assert_eq!(run.segments[0].pts, Some(0));
        assert_eq!(without_tables(&run), &mux.out[key_index * PACKET_SIZE..]);
    }

    #[test]
    fn next_pes_before_any_slice_means_no_keyframe() {
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(0, &[(STREAM_TYPE_H264, VIDEO_PID)]);
        // Random access announced, but no slice: must not start a segment.
        mux.pes(
            VIDEO_PID,
            0xe0,
            0,
            &access_unit(VideoCodec::H264, FrameKind::NoSlice, 500),
            true,
        );
        let key = mux.video(VideoCodec::H264, FrameKind::Key, FRAME_TICKS);
        mux.video(VideoCodec::H264, FrameKind::Delta, 2 * FRAME_TICKS);
        let run = run(SegmenterConfig::default(), &mux.out);
        assert_eq!(run.segments.len(), 1);
        assert_eq!(run.segments[0].pts, Some(FRAME_TICKS));
        assert_eq!(run.stats.dropped_before_keyframe as usize, key);
    }

    #[test]
    fn lookahead_is_capped() {
        let mut mux = Mux::new();
        mux.pat();
        mux.pmt(0, &[(STREAM_TYPE_H264, VIDEO_PID)]);
        // 100 KiB of SEI before the IDR: beyond the plain budget, within the RAI one.
        let au = access_unit(VideoCodec::H264, FrameKind::Key, 100 * 1024);
        mux.pes(VIDEO_PID, 0xe0, 0, &au, false);
        mux.pes(VIDEO_PID, 0xe0, FRAME_TICKS, &au, true);
        let run = run(SegmenterConfig::default(), &mux.out);
        assert_eq!(run.segments.len(), 1);
        assert_eq!(run.segments[0].pts, Some(FRAME_TICKS));
    }
}
