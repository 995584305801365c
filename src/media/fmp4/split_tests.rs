//! Unit tests of per-track output ([`Remuxer::split_tracks`]) on the synthetic streams of `tests`:
//! the muxed outputs do not change; each init is followed by one init per track holding that
//! track's trak; each muxed fragment by one fragment per track with samples, whose boxes (decoded
//! back with mp4-atom) agree with the muxed traf, whose data_offset points at its samples, and
//! whose samples are the muxed ones, shared rather than copied. What real players make of them is
//! in tests/fmp4.rs.

use bytes::Bytes;
use mp4_atom::{Decode, Ftyp, Mdat, Moof, Moov, Traf};

use super::tests::{FRAMES_PER_SEGMENT, feed_with, options, segments};
use super::*;
use crate::media::mpegts::testing::FRAME_TICKS;

fn remuxer(split: bool) -> Remuxer {
    let mut remuxer = Remuxer::new();
    remuxer.split_tracks(split);
    remuxer
}

/// Every segment, whole, in order.
fn feed(segments: &[Vec<u8>], split: bool) -> Vec<Output> {
    let list: Vec<(u64, &[u8], bool)> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, s.as_slice(), true))
        .collect();
    feed_with(remuxer(split), &list, || 1000).0
}

fn is_per_track(output: &Output) -> bool {
    matches!(
        output,
        Output::TrackInit { .. } | Output::TrackFragment { .. }
    )
}

fn muxed_only(out: &[Output]) -> Vec<Output> {
    out.iter().filter(|o| !is_per_track(o)).cloned().collect()
}

/// A per-track fragment, taken out of its output.
struct TrackFragment {
    track: Track,
    head: Bytes,
    media: Bytes,
    seq: u64,
    keyframe: bool,
    start: u64,
    duration: u64,
}

/// Each muxed fragment's (bytes, seq, keyframe, start, duration) with the per-track fragments
/// that follow it.
#[allow(clippy::type_complexity)]
fn fragment_groups(out: &[Output]) -> Vec<((Bytes, u64, bool, u64, u64), Vec<TrackFragment>)> {
    let mut groups: Vec<(_, Vec<TrackFragment>)> = Vec::new();
    for output in out {
        match output.clone() {
            Output::Fragment {
                bytes,
                seq,
                keyframe,
                start,
                duration,
            } => groups.push(((bytes, seq, keyframe, start, duration), Vec::new())),
            Output::TrackFragment {
                track,
                head,
                media,
                seq,
                keyframe,
                start,
                duration,
            } => groups
                .last_mut()
                .expect("after a fragment")
                .1
                .push(TrackFragment {
                    track,
                    head,
                    media,
                    seq,
                    keyframe,
                    start,
                    duration,
                }),
            _ => {}
        }
    }
    groups
}

fn track_of(traf: &Traf) -> Track {
    match traf.tfhd.track_id {
        1 => Track::Video,
        2 => Track::Audio,
        other => panic!("track_ID {other}"),
    }
}

#[test]
fn per_track_output_leaves_the_muxed_output_as_it_was() {
    let audio_only = super::tests::Options {
        video: false,
        ..options()
    };
    for o in [options(), audio_only] {
        let stream = segments(3, &o);
        let plain = feed(&stream, false);
        assert!(!plain.iter().any(is_per_track));
        let split = feed(&stream, true);
        assert!(split.iter().any(is_per_track));
        assert_eq!(muxed_only(&split), plain);
    }
}

#[test]
fn each_init_is_followed_by_one_init_per_track() {
    let mut stream = segments(1, &options());
    let mut sps = super::sps::tests::X264_SPS.to_vec();
    sps[3] = 0x1f; // level 3.1: a second init
    stream.extend(segments(
        1,
        &super::tests::Options {
            sps,
            first_pts: 1_000_000 + FRAMES_PER_SEGMENT * FRAME_TICKS,
            ..options()
        },
    ));
    let out = feed(&stream, true);
    let inits: Vec<usize> = (0..out.len())
        .filter(|&i| matches!(out[i], Output::Init { .. }))
        .collect();
    assert_eq!(inits.len(), 2);
    let track_inits = out
        .iter()
        .filter(|o| matches!(o, Output::TrackInit { .. }))
        .count();
    assert_eq!(track_inits, 4);
    for i in inits {
        let Output::Init { bytes, codecs } = &out[i] else {
            unreachable!()
        };
        let mut muxed = &bytes[..];
        Ftyp::decode(&mut muxed).unwrap();
        let muxed = Moov::decode(&mut muxed).unwrap();
        let codecs: Vec<&str> = codecs.split(',').collect();
        for (n, track) in [Track::Video, Track::Audio].into_iter().enumerate() {
            let Some(Output::TrackInit {
                track: got,
                bytes,
                codec,
            }) = out.get(i + 1 + n)
            else {
                panic!("no track init at {}", i + 1 + n);
            };
            assert_eq!((*got, codec.as_str()), (track, codecs[n]));
            let mut buf = &bytes[..];
            Ftyp::decode(&mut buf).unwrap();
            let moov = Moov::decode(&mut buf).unwrap();
            assert!(buf.is_empty());
            // The muxed init's trak for this track, alone, with its own trex.
            assert_eq!(moov.trak, [muxed.trak[n].clone()]);
            let trex = &moov.mvex.as_ref().unwrap().trex;
            assert_eq!(trex, &[muxed.mvex.as_ref().unwrap().trex[n].clone()]);
            assert_eq!(trex[0].track_id, track.id());
        }
    }
}

/// Checks one per-track fragment against the muxed traf of its track. Returns its mfhd sequence
/// number.
fn check_track_fragment(muxed: &Bytes, muxed_traf: &Traf, fragment: &TrackFragment) -> u32 {
    let mut buf = &fragment.head[..];
    let moof = Moof::decode(&mut buf).unwrap();
    // What is left of the head is the mdat's header, for exactly the media.
    let mdat_size = u32::try_from(8 + fragment.media.len()).unwrap();
    assert_eq!(buf, [&mdat_size.to_be_bytes()[..], b"mdat"].concat());
    assert_eq!(moof.traf.len(), 1);
    let traf = &moof.traf[0];
    assert_eq!(traf.tfhd, muxed_traf.tfhd);
    assert_eq!(traf.tfdt, muxed_traf.tfdt);
    let (trun, muxed_trun) = (&traf.trun[0], &muxed_traf.trun[0]);
    assert_eq!(trun.samples, muxed_trun.samples);
    // The samples start right after the head, and are those of the muxed fragment.
    assert_eq!(trun.data_offset, Some(fragment.head.len() as i32));
    let size: usize = trun.samples.iter().map(|s| s.size.unwrap() as usize).sum();
    let at = muxed_trun.data_offset.unwrap() as usize;
    assert_eq!(fragment.media, muxed[at..at + size]);
    // Shared, not copied: the media lies inside the muxed fragment's buffer.
    let inside = muxed.as_ptr_range();
    assert!(inside.contains(&fragment.media.as_ptr()));
    // Head and media make a fragment that decodes as a whole.
    let whole = [&fragment.head[..], &fragment.media[..]].concat();
    let mut buf = &whole[..];
    Moof::decode(&mut buf).unwrap();
    assert_eq!(Mdat::decode(&mut buf).unwrap().data, fragment.media);
    assert!(buf.is_empty());
    moof.mfhd.sequence_number
}

#[test]
fn track_fragments_hold_the_muxed_samples() {
    let out = feed(&segments(3, &options()), true);
    let groups = fragment_groups(&out);
    assert_eq!(groups.len() as u64, 3 * FRAMES_PER_SEGMENT);
    let mut numbers: [Vec<u32>; 2] = Default::default();
    let mut times: [Vec<(u64, u64)>; 2] = Default::default();
    for ((bytes, seq, keyframe, start, duration), tracks) in &groups {
        let moof = Moof::decode(&mut &bytes[..]).unwrap();
        // One per track with samples in the muxed fragment, in the same order.
        let order: Vec<Track> = moof.traf.iter().map(track_of).collect();
        let got: Vec<Track> = tracks.iter().map(|t| t.track).collect();
        assert_eq!(got, order);
        for (traf, fragment) in moof.traf.iter().zip(tracks) {
            let number = check_track_fragment(bytes, traf, fragment);
            assert_eq!(fragment.seq, *seq);
            let tfdt = traf.tfdt.as_ref().unwrap().base_media_decode_time;
            let index = match fragment.track {
                Track::Video => {
                    assert_eq!(fragment.keyframe, *keyframe);
                    assert_eq!((fragment.start, fragment.duration), (*start, *duration));
                    0
                }
                Track::Audio => {
                    assert!(fragment.keyframe);
                    assert_eq!(fragment.start, tfdt * 90_000 / 48_000);
                    1
                }
            };
            numbers[index].push(number);
            times[index].push((fragment.start, fragment.duration));
        }
    }
    // Each track counts its fragments from 1; audio came in most muxed fragments.
    for numbers in &numbers {
        assert_eq!(*numbers, (1..=numbers.len() as u32).collect::<Vec<_>>());
    }
    assert!(
        numbers[1].len() as u64 > 2 * FRAMES_PER_SEGMENT,
        "{numbers:?}"
    );
    // Each track's fragments join exactly, in 90 kHz units.
    for times in &times {
        for pair in times.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + pair[0].1, "{pair:?}");
        }
    }
}

#[test]
fn audio_only_channels_get_audio_track_fragments_with_the_muxed_times() {
    let o = super::tests::Options {
        video: false,
        ..options()
    };
    let out = feed(&segments(2, &o), true);
    assert!(
        out.iter()
            .all(|o| !matches!(o, Output::TrackInit { track, .. } | Output::TrackFragment { track, .. } if *track != Track::Audio))
    );
    let groups = fragment_groups(&out);
    assert!(groups.len() > 4);
    for ((bytes, seq, _, start, duration), tracks) in &groups {
        let [fragment] = &tracks[..] else {
            panic!("{} track fragments", tracks.len());
        };
        let moof = Moof::decode(&mut &bytes[..]).unwrap();
        check_track_fragment(bytes, &moof.traf[0], fragment);
        assert!(fragment.keyframe);
        assert_eq!(
            (fragment.seq, fragment.start, fragment.duration),
            (*seq, *start, *duration)
        );
    }
}

#[test]
fn turned_on_mid_stream_the_track_inits_come_first() {
    let stream = segments(3, &options());
    let list: Vec<(u64, &[u8], bool)> = stream
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, s.as_slice(), true))
        .collect();
    let mut remuxer = Remuxer::new();
    let mut out = Vec::new();
    remuxer.start_segment(0);
    remuxer.push(list[0].1, &mut out);
    remuxer.end_segment(true, &mut out);
    remuxer.split_tracks(true);
    let before = out.len();
    let (rest, _) = feed_with(remuxer, &list[1..], || 500);
    assert!(!out.iter().any(is_per_track));
    let first: Vec<&Output> = rest.iter().filter(|o| is_per_track(o)).take(3).collect();
    assert!(matches!(
        first[..],
        [
            Output::TrackInit {
                track: Track::Video,
                ..
            },
            Output::TrackInit {
                track: Track::Audio,
                ..
            },
            Output::TrackFragment {
                track: Track::Video,
                seq: 1,
                keyframe: true,
                ..
            },
        ]
    ));
    // The muxed output went on as if nothing happened.
    out.extend(muxed_only(&rest));
    assert_eq!(out, feed(&stream, false));
    assert!(before > 0);
}
