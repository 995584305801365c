//! Tests of the [`DiscontinuityMarker`]: its output is the input with one generated packet before
//! each PID's first packet, whatever the chunking, built only from slices of the input; anything
//! that is not an aligned transport stream passes untouched.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

use super::{DiscontinuityMarker, HEAD_MAX};
use crate::media::mpegts::testing::*;

const PACKET: usize = 188;

fn pid_of(packet: &[u8]) -> u16 {
    u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2])
}

/// What the marker should send for `input`, written out packet by packet: the generated packet
/// (adaptation field only, length 183, discontinuity flag, the first packet's PCR if it has one,
/// stuffing) before the first packet of each PID other than the null PID, with a continuity
/// counter one less than that packet's (the same if it carries no payload). Stops at the first
/// packet without a sync byte.
fn expected(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut pos = 0;
    while pos + PACKET <= input.len() && input[pos] == 0x47 {
        let packet = &input[pos..pos + PACKET];
        let pid = pid_of(packet);
        if pid != 0x1fff && packet[1] & 0x80 == 0 && seen.insert(pid) {
            let has_payload = packet[3] & 0x10 != 0;
            let cc = (packet[3] & 0x0f) + 16 - u8::from(has_payload);
            let mut generated = vec![0x47, packet[1] & 0x1f, packet[2], 0x20 | (cc % 16), 183];
            let pcr = packet[3] & 0x20 != 0 && packet[4] >= 7 && packet[5] & 0x10 != 0;
            if pcr {
                generated.push(0x90);
                generated.extend_from_slice(&packet[6..12]);
            } else {
                generated.push(0x80);
            }
            generated.resize(PACKET, 0xff);
            out.extend_from_slice(&generated);
        }
        out.extend_from_slice(packet);
        pos += PACKET;
    }
    out.extend_from_slice(&input[pos..]);
    out
}

/// Runs the marker over `input` cut into pieces of the sizes `piece` gives. Checks that every
/// frame it sends is either a slice of the input (by address: nothing copied), the slices in
/// order and covering the input exactly, or a generated 188-byte packet; that it never holds more
/// than a packet's first bytes. Returns the bytes sent and the number of generated packets.
fn mark(input: &Bytes, mut piece: impl FnMut() -> usize) -> (Vec<u8>, usize) {
    let mut marker = DiscontinuityMarker::new();
    let mut frames = VecDeque::new();
    let mut rest = input.clone();
    while !rest.is_empty() {
        let n = piece().clamp(1, rest.len());
        marker.feed(rest.split_to(n), &mut frames);
        let held: usize = marker.held.iter().map(Bytes::len).sum();
        assert!(held < HEAD_MAX, "holds {held} bytes");
    }
    marker.finish(&mut frames);

    let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
    let (mut out, mut next, mut generated) = (Vec::new(), 0, 0);
    for frame in &frames {
        assert!(!frame.is_empty(), "no empty frames");
        let at = frame.as_ptr() as usize;
        if range.contains(&at) {
            assert_eq!(
                at - range.start,
                next,
                "input slices in order, none skipped"
            );
            next += frame.len();
        } else {
            assert_eq!(frame.len(), PACKET, "a generated frame is one packet");
            generated += 1;
        }
        out.extend_from_slice(frame);
    }
    assert_eq!(next, input.len(), "all of the input is sent, as slices");
    (out, generated)
}

fn pids(data: &[u8]) -> usize {
    let mut pids: Vec<u16> = data.chunks_exact(PACKET).map(pid_of).collect();
    pids.retain(|&pid| pid != 0x1fff);
    pids.sort_unstable();
    pids.dedup();
    pids.len()
}

/// Checks `input` whole, in 1-byte pieces, split in two at every point, and in random pieces.
fn check_every_split(input: &[u8], generated: usize) {
    let input = Bytes::copy_from_slice(input);
    let want = expected(&input);
    assert_eq!(mark(&input, || usize::MAX), (want.clone(), generated));
    assert_eq!(mark(&input, || 1), (want.clone(), generated));
    for at in 1..input.len() {
        let mut sizes = [at, usize::MAX].into_iter();
        let got = mark(&input, || sizes.next().unwrap());
        assert!(got == (want.clone(), generated), "split at {at}");
    }
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for _ in 0..200 {
        assert_eq!(
            mark(&input, || 1 + rng.below(400)),
            (want.clone(), generated)
        );
    }
}

/// A segment from the middle of a stream: PAT, PMT, a keyframe, audio, a delta frame, audio; the
/// continuity counters are where the skipped packets left them.
fn middle_segment() -> Vec<u8> {
    let built = build(VideoCodec::H264, 4, 2, 90_000, true);
    let start = built.keyframes[1].0 - 2; // its PAT and PMT
    built.ts[start * PACKET..].to_vec()
}

#[test]
fn one_packet_before_each_pids_first_packet_however_split() {
    let segment = middle_segment();
    check_every_split(&segment, 4);

    let (out, _) = mark(&Bytes::copy_from_slice(&segment), || 1000);
    // PAT (CC 1 in the segment), PMT (CC 1), the video keyframe, its audio frame.
    let first = |pid| segment.chunks(PACKET).find(|p| pid_of(p) == pid).unwrap();
    let generated: Vec<&[u8]> = out
        .chunks(PACKET)
        .filter(|p| p[3] & 0x30 == 0x20 && p[5] & 0x80 != 0)
        .collect();
    let layout: Vec<(u16, u8)> = generated.iter().map(|p| (pid_of(p), p[3] & 0x0f)).collect();
    let cc = |pid| first(pid)[3].wrapping_sub(1) & 0x0f;
    assert_eq!(
        layout,
        [
            (0, cc(0)),
            (PMT_PID, cc(PMT_PID)),
            (VIDEO_PID, cc(VIDEO_PID)),
            (AUDIO_PID, cc(AUDIO_PID)),
        ]
    );
    assert_ne!(first(VIDEO_PID)[3] & 0x0f, 0, "a counter from the middle");
    for packet in generated {
        assert_eq!(
            &packet[4..6],
            &[183, 0x80],
            "length 183, discontinuity flag"
        );
        assert!(packet[6..].iter().all(|&b| b == 0xff), "stuffing");
    }
    // Each generated packet sits right before the first packet of its PID; the rest is the input.
    let mut rest = out.chunks(PACKET);
    for packet in segment.chunks(PACKET) {
        let mut got = rest.next().unwrap();
        if got[3] & 0x30 == 0x20 && got[5] & 0x80 != 0 {
            assert_eq!(pid_of(got), pid_of(packet));
            got = rest.next().unwrap();
        }
        assert_eq!(got, packet);
    }
}

#[test]
fn a_stream_from_its_start_wraps_the_counter() {
    let built = build(VideoCodec::Hevc, 3, 3, 0, true);
    let (out, generated) = mark(&Bytes::from(built.ts.clone()), || 777);
    assert_eq!(generated, pids(&built.ts));
    // Every first packet has counter 0: the generated ones have 15.
    assert!(
        out.chunks(PACKET)
            .filter(|p| p[3] & 0x30 == 0x20 && p[5] & 0x80 != 0)
            .all(|p| p[3] & 0x0f == 15)
    );
    assert_eq!(out, expected(&built.ts));
}

/// A packet of `pid` with `control` bits (adaptation/payload), counter `cc` and the bytes after
/// its header (adaptation field, payload).
fn packet(pid: u16, control: u8, cc: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x47, (pid >> 8) as u8, pid as u8, control | cc];
    p.extend_from_slice(body);
    p.resize(PACKET, 0xaa);
    p
}

#[test]
fn pcr_adaptation_only_null_and_damaged_packets() {
    let pcr = [0x12, 0x34, 0x56, 0x78, 0x80, 0x2a];
    let mut with_pcr = vec![7, 0x50];
    with_pcr.extend_from_slice(&pcr);
    let mut input = Vec::new();
    input.extend(packet(0x1fff, 0x10, 3, &[])); // null: nothing before it
    input.extend(packet(0x8200, 0x10, 4, &[])); // 0x80: transport error, so nothing either
    input.extend(packet(VIDEO_PID, 0x30, 0, &with_pcr)); // PCR, counter 0: generated 15, same PCR
    input.extend(packet(0x0300, 0x20, 9, &[183, 0x00])); // no payload: generated with 9 too
    input.extend(packet(0x0200, 0x10, 5, &[])); // now whole: generated 4
    input.extend(packet(VIDEO_PID, 0x10, 1, &[]));
    input.extend(packet(0x0400, 0x30, 2, &[0])); // an empty adaptation field
    input.extend(packet(0x0500, 0x30, 2, &[6, 0x10])); // a PCR flag without room for it
    check_every_split(&input, 5);

    let (out, _) = mark(&Bytes::from(input), || 5);
    let video = &out[2 * PACKET..3 * PACKET];
    assert_eq!(&video[..6], &[0x47, 0x01, 0x00, 0x2f, 183, 0x90]);
    assert_eq!(&video[6..12], &pcr, "the first packet's PCR");
    assert!(video[12..].iter().all(|&b| b == 0xff));
    assert_eq!(&out[4 * PACKET..4 * PACKET + 4], &[0x47, 0x03, 0x00, 0x29]);
    assert_eq!(&out[6 * PACKET..6 * PACKET + 4], &[0x47, 0x02, 0x00, 0x24]);
    assert_eq!(&out[6 * PACKET + 5..6 * PACKET + 6], &[0x80], "no PCR");
}

#[test]
fn anything_but_an_aligned_transport_stream_passes_untouched() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut noise = rng.bytes(5000);
    noise[0] = 0x12;
    check_every_split(&noise, 0);
    assert_eq!(expected(&noise), noise);

    // Aligned at first, then a byte lost: marked up to there, untouched after (even the PIDs
    // first seen later).
    let segment = middle_segment();
    let mut broken = segment[..5 * PACKET].to_vec();
    broken.extend_from_slice(&segment[5 * PACKET + 1..]);
    let first_pids = pids(&segment[..5 * PACKET]);
    assert!(first_pids < pids(&segment));
    check_every_split(&broken, first_pids);

    // A segment cut short: the start of its last packet goes out as it came, at the end.
    let mut short = segment[..3 * PACKET].to_vec();
    short.extend_from_slice(&segment[3 * PACKET..3 * PACKET + 3]);
    check_every_split(&short, pids(&segment[..3 * PACKET]));
}
