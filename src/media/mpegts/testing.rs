//! Builders of test transport streams (a small muxer, PAT/PMT sections, PES packets, H.264/HEVC
//! access units) and a harness that runs the [`Segmenter`] over them and checks the invariants of
//! its events. Used by the unit tests of every part of the segmenter; the coming HLS tests and fuzz
//! targets can use them too.

use std::time::Duration;

use super::packet::{PACKET_SIZE, SYNC_BYTE};
use super::psi::PAT_PID;
use super::{Event, Segmenter, SegmenterConfig, Stats};

/// The builders take a codec: re-exported so that their users can name it.
pub(crate) use super::nal::VideoCodec;

pub(crate) const PMT_PID: u16 = 0x1000;
pub(crate) const VIDEO_PID: u16 = 0x0100;
pub(crate) const AUDIO_PID: u16 = 0x0101;
/// 25 fps.
pub(crate) const FRAME_TICKS: u64 = 3600;
/// 1024 AAC samples at 48 kHz.
pub(crate) const AUDIO_TICKS: u64 = 1920;
pub(crate) const STREAM_TYPE_H264: u8 = 0x1b;
pub(crate) const STREAM_TYPE_HEVC: u8 = 0x24;
pub(crate) const STREAM_TYPE_AAC: u8 = 0x0f;

/// Deterministic pseudo-random numbers for test data.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Writes a transport stream packet by packet, keeping continuity counters per PID.
pub(crate) struct Mux {
    pub(crate) out: Vec<u8>,
    continuity: Vec<u8>,
}

impl Mux {
    pub(crate) fn new() -> Mux {
        Mux {
            out: Vec::new(),
            continuity: vec![0; 0x2000],
        }
    }

    pub(crate) fn packet_count(&self) -> usize {
        self.out.len() / PACKET_SIZE
    }

    /// Splits one unit (PES packet or pointer field + section) into packets; the last one is
    /// padded with adaptation field stuffing. Returns the index of the first packet.
    pub(crate) fn unit(&mut self, pid: u16, data: &[u8], random_access: bool) -> usize {
        self.unit_limited(pid, data, random_access, usize::MAX)
    }

    /// [`Mux::unit`] with at most `first_room` bytes of `data` in the first packet (the rest of it
    /// stuffing): splits a PES header across packets, as a muxer with a large adaptation field does.
    pub(crate) fn unit_limited(
        &mut self,
        pid: u16,
        data: &[u8],
        random_access: bool,
        first_room: usize,
    ) -> usize {
        let first_index = self.packet_count();
        let mut rest = data;
        let mut first = true;
        loop {
            let mut adaptation = (first && random_access).then(|| vec![0x40]);
            let adaptation_size = |a: &Option<Vec<u8>>| a.as_ref().map_or(0, |a| 1 + a.len());
            let room = 184 - adaptation_size(&adaptation);
            let n = rest
                .len()
                .min(if first { first_room } else { room })
                .min(room);
            if n < room {
                let a = adaptation.get_or_insert_with(Vec::new);
                let target = 184 - n; // bytes of adaptation field including its length byte
                if target >= 2 && a.is_empty() {
                    a.push(0x00);
                }
                while 1 + a.len() < target {
                    a.push(0xff);
                }
            }
            let cc = &mut self.continuity[usize::from(pid)];
            let control = if adaptation.is_some() { 0x30 } else { 0x10 };
            self.out.extend_from_slice(&[
                SYNC_BYTE,
                (u8::from(first) << 6) | (pid >> 8) as u8,
                pid as u8,
                control | *cc,
            ]);
            *cc = (*cc + 1) & 0x0f;
            if let Some(a) = adaptation {
                self.out.push(a.len() as u8);
                self.out.extend_from_slice(&a);
            }
            self.out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            first = false;
            if rest.is_empty() {
                return first_index;
            }
        }
    }

    pub(crate) fn section(&mut self, pid: u16, section: &[u8]) {
        let mut data = vec![0x00]; // pointer_field
        data.extend_from_slice(section);
        self.unit(pid, &data, false);
    }

    pub(crate) fn pat(&mut self) {
        self.section(PAT_PID, &pat_section(PMT_PID));
    }

    pub(crate) fn pmt(&mut self, version: u8, streams: &[(u8, u16)]) {
        self.section(PMT_PID, &pmt_section(version, streams));
    }

    pub(crate) fn pes(
        &mut self,
        pid: u16,
        stream_id: u8,
        pts: u64,
        payload: &[u8],
        key: bool,
    ) -> usize {
        self.unit(pid, &pes_packet(stream_id, pts, payload), key)
    }

    pub(crate) fn video(&mut self, codec: VideoCodec, frame: FrameKind, pts: u64) -> usize {
        let key = matches!(frame, FrameKind::Key | FrameKind::Cra);
        self.pes(VIDEO_PID, 0xe0, pts, &access_unit(codec, frame, 0), key)
    }

    pub(crate) fn audio(&mut self, pts: u64) -> usize {
        self.pes(
            AUDIO_PID,
            0xc0,
            pts,
            &[0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc, 0x21],
            false,
        )
    }
}

pub(crate) fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A long-form section: header, body, CRC.
pub(crate) fn long_section(table_id: u8, id: u16, version: u8, body: &[u8]) -> Vec<u8> {
    let length = 5 + body.len() + 4;
    let mut s = vec![
        table_id,
        0xb0 | (length >> 8) as u8,
        length as u8,
        (id >> 8) as u8,
        id as u8,
        0xc1 | (version << 1),
        0x00,
        0x00,
    ];
    s.extend_from_slice(body);
    let crc = crc32_mpeg(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

pub(crate) fn pat_section(pmt_pid: u16) -> Vec<u8> {
    long_section(
        0x00,
        1,
        0,
        &[0x00, 0x01, 0xe0 | (pmt_pid >> 8) as u8, pmt_pid as u8],
    )
}

pub(crate) fn pmt_section(version: u8, streams: &[(u8, u16)]) -> Vec<u8> {
    let pcr = streams.first().map_or(0x1fff, |s| s.1);
    let mut body = vec![0xe0 | (pcr >> 8) as u8, pcr as u8, 0xf0, 0x00];
    for &(stream_type, pid) in streams {
        body.extend_from_slice(&[stream_type, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0x00]);
    }
    long_section(0x02, 1, version, &body)
}

pub(crate) fn encode_timestamp(pts: u64) -> [u8; 5] {
    [
        0x21 | (((pts >> 30) & 0x07) << 1) as u8,
        (pts >> 22) as u8,
        ((((pts >> 15) & 0x7f) << 1) | 1) as u8,
        (pts >> 7) as u8,
        (((pts & 0x7f) << 1) | 1) as u8,
    ]
}

pub(crate) fn pes_packet(stream_id: u8, pts: u64, payload: &[u8]) -> Vec<u8> {
    let pts = pts % (1 << 33);
    // Video PES may leave PES_packet_length at 0 (unbounded).
    let length = if stream_id >= 0xe0 {
        0
    } else {
        8 + payload.len()
    };
    let mut p = vec![
        0,
        0,
        1,
        stream_id,
        (length >> 8) as u8,
        length as u8,
        0x80,
        0x80,
        5,
    ];
    p.extend_from_slice(&encode_timestamp(pts));
    p.extend_from_slice(payload);
    p
}

/// A PES packet with a PTS and a DTS (reordered video), unbounded like ffmpeg's video PES.
pub(crate) fn pes_packet_with_dts(stream_id: u8, pts: u64, dts: u64, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 0, 1, stream_id, 0, 0, 0x80, 0xc0, 10];
    let mut pts = encode_timestamp(pts % (1 << 33));
    pts[0] = (pts[0] & 0x0f) | 0x30; // '0011': a DTS follows
    p.extend_from_slice(&pts);
    let mut dts = encode_timestamp(dts % (1 << 33));
    dts[0] = (dts[0] & 0x0f) | 0x10; // '0001'
    p.extend_from_slice(&dts);
    p.extend_from_slice(payload);
    p
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// H.264 IDR or HEVC IDR_W_RADL.
    Key,
    /// HEVC CRA (a keyframe too).
    Cra,
    /// H.264 non-IDR or HEVC TRAIL_R.
    Delta,
    /// Only a delimiter and SEI: no slice at all.
    NoSlice,
}

/// Slice bytes that contain no start code (no zero bytes).
pub(crate) fn slice_data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 + 1).collect()
}

/// An Annex-B access unit: delimiter, parameter sets for keyframes, optional SEI, slice.
pub(crate) fn access_unit(codec: VideoCodec, frame: FrameKind, sei_len: usize) -> Vec<u8> {
    let key = matches!(frame, FrameKind::Key | FrameKind::Cra);
    let mut au = Vec::new();
    match codec {
        VideoCodec::H264 => {
            au.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xf0]);
            if key {
                au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9]);
                au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xeb, 0xe3, 0xcb]);
            }
            if sei_len > 0 {
                au.extend_from_slice(&[0, 0, 1, 0x06, 0x05]);
                au.extend(std::iter::repeat_n(0x55, sei_len));
                au.push(0x80);
            }
            let header = match frame {
                FrameKind::Key | FrameKind::Cra => 0x65,
                FrameKind::Delta => 0x41,
                FrameKind::NoSlice => return au,
            };
            au.extend_from_slice(&[0, 0, 1, header]);
        }
        VideoCodec::Hevc => {
            au.extend_from_slice(&[0, 0, 0, 1, 35 << 1, 0x01, 0x50]);
            if key {
                for nal_type in [32u8, 33, 34] {
                    au.extend_from_slice(&[0, 0, 0, 1, nal_type << 1, 0x01, 0x0c, 0x01]);
                }
            }
            if sei_len > 0 {
                au.extend_from_slice(&[0, 0, 1, 39 << 1, 0x01]);
                au.extend(std::iter::repeat_n(0x55, sei_len));
                au.push(0x80);
            }
            let nal_type: u8 = match frame {
                FrameKind::Key => 19,
                FrameKind::Cra => 21,
                FrameKind::Delta => 1,
                FrameKind::NoSlice => return au,
            };
            au.extend_from_slice(&[0, 0, 1, nal_type << 1, 0x01]);
        }
    }
    au.extend_from_slice(&slice_data(if key { 1500 } else { 400 }));
    au
}

/// A test stream and what we know about it.
pub(crate) struct Built {
    pub(crate) ts: Vec<u8>,
    /// (packet index of the PES start, pts) of each keyframe.
    pub(crate) keyframes: Vec<(usize, u64)>,
    pub(crate) video_frames: usize,
}

/// PAT + PMT before every keyframe; one audio PES after each video frame if `audio`.
pub(crate) fn build(
    codec: VideoCodec,
    frames: usize,
    gop: usize,
    first_pts: u64,
    audio: bool,
) -> Built {
    let mut mux = Mux::new();
    let stream_type = match codec {
        VideoCodec::H264 => STREAM_TYPE_H264,
        VideoCodec::Hevc => STREAM_TYPE_HEVC,
    };
    let mut streams = vec![(stream_type, VIDEO_PID)];
    if audio {
        streams.push((STREAM_TYPE_AAC, AUDIO_PID));
    }
    let mut keyframes = Vec::new();
    for i in 0..frames {
        let pts = first_pts + i as u64 * FRAME_TICKS;
        let key = i % gop == 0;
        if key {
            mux.pat();
            mux.pmt(0, &streams);
        }
        let frame = if key {
            FrameKind::Key
        } else {
            FrameKind::Delta
        };
        let index = if i == 0 {
            // x264's first frame carries a long SEI (its settings) spanning several packets.
            let au = access_unit(codec, frame, 900);
            mux.pes(VIDEO_PID, 0xe0, pts, &au, true)
        } else {
            mux.video(codec, frame, pts)
        };
        if key {
            keyframes.push((index, pts));
        }
        if audio {
            mux.audio(pts);
        }
    }
    Built {
        ts: mux.out,
        keyframes,
        video_frames: frames,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) keyframe: bool,
    pub(crate) pts: Option<u64>,
    pub(crate) data: Vec<u8>,
}

pub(crate) struct Run {
    pub(crate) segments: Vec<Segment>,
    pub(crate) clocks: Vec<u64>,
    pub(crate) stats: Stats,
}

impl Run {
    /// The frame number each segment starts at.
    pub(crate) fn start_frames(&self) -> Vec<u64> {
        self.segments
            .iter()
            .map(|s| s.pts.unwrap() / FRAME_TICKS)
            .collect()
    }
}

/// Runs the segmenter, feeding pieces of the sizes `piece` returns, checking event invariants.
pub(crate) fn run_with(
    config: SegmenterConfig,
    input: &[u8],
    mut piece: impl FnMut() -> usize,
) -> Run {
    let mut segmenter = Segmenter::new(config);
    let mut events = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = piece().clamp(1, rest.len());
        segmenter.push(&rest[..n], &mut events);
        rest = &rest[n..];
        assert!(
            segmenter.sync.pending_len() < 3 * PACKET_SIZE + n,
            "sync buffer bounded"
        );
    }
    segmenter.finish(&mut events);
    assert!(segmenter.sync.pending_len() == 0 && segmenter.lookahead.is_none());
    let mut segments: Vec<Segment> = Vec::new();
    let mut clocks = Vec::new();
    for event in events {
        match event {
            Event::Start { keyframe, pts } => segments.push(Segment {
                keyframe,
                pts,
                data: Vec::new(),
            }),
            Event::Data(bytes) => {
                assert!(!bytes.is_empty() && bytes.len() % PACKET_SIZE == 0);
                segments
                    .last_mut()
                    .expect("Data before Start")
                    .data
                    .extend_from_slice(&bytes);
            }
            Event::Clock(pts) => {
                assert!(!segments.is_empty(), "Clock before Start");
                assert!(
                    clocks.last().is_none_or(|&last| pts > last),
                    "clock goes forward"
                );
                clocks.push(pts);
            }
        }
    }
    assert_eq!(segmenter.stats().segments, segments.len() as u64);
    Run {
        segments,
        clocks,
        stats: segmenter.stats().clone(),
    }
}

pub(crate) fn run(config: SegmenterConfig, input: &[u8]) -> Run {
    run_with(config, input, || usize::MAX)
}

pub(crate) fn min_duration(ms: u64) -> SegmenterConfig {
    SegmenterConfig {
        min_duration: Duration::from_millis(ms),
        ..SegmenterConfig::default()
    }
}

/// (pid, unit_start) of every packet.
pub(crate) fn packets(data: &[u8]) -> Vec<(u16, bool)> {
    data.chunks_exact(PACKET_SIZE)
        .map(|p| {
            (
                u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]),
                p[1] & 0x40 != 0,
            )
        })
        .collect()
}

/// Every segment is PAT, PMT, then the PES start of a keyframe (or audio frame).
pub(crate) fn assert_layout(run: &Run, first_pid: u16) {
    for (i, segment) in run.segments.iter().enumerate() {
        let p = packets(&segment.data);
        assert!(p.len() >= 3, "segment {i} too short");
        assert_eq!(p[0], (PAT_PID, true), "segment {i} starts with PAT");
        assert_eq!(p[1], (PMT_PID, true), "segment {i} continues with PMT");
        assert_eq!(p[2], (first_pid, true), "segment {i} then the frame");
    }
}

/// Concatenates the segments without their inserted PAT + PMT copies (one packet each here).
pub(crate) fn without_tables(run: &Run) -> Vec<u8> {
    run.segments
        .iter()
        .flat_map(|s| s.data[2 * PACKET_SIZE..].iter().copied())
        .collect()
}
