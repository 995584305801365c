//! HLS (`index.m3u8`) and LL-HLS (`ll.m3u8`) of a channel whose publisher sends damaged segments
//! among good ones, as raw POSTs of MPEG-TS bytes cut from a real encode: a segment cut
//! mid-GOP, one whose keyframe was lost, PTS jumps between and inside segments, segments without
//! any PTS, garbage. Every playlist is read strictly and checked against the ones before it; every
//! listed duration is the duration of the media it names (ffprobe of the published segment for
//! HLS, of the served fMP4 segment and its frame count for LL-HLS); the timeline's jumps are
//! discontinuities (HLS; the remux's own timeline has none); nothing is listed with a duration it
//! does not have; a channel published beside it is undisturbed; ffmpeg decodes what is listed.
//!
//! ffmpeg and ffprobe come from `scripts/test.sh`. Without them this test fails when `CI=true`
//! and is skipped (with a message) elsewhere.

mod common;

use std::path::{Path, PathBuf};

use common::hls::{Playlist, Reloads, parse};
use common::*;
use trickle::Config;

/// ffmpeg's PIDs in the transport streams it writes: the PMT and the video stream.
const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;
const PACKET: usize = 188;
/// The clips' frame interval.
const FRAME_MS: u64 = 40;

fn pid(packet: &[u8]) -> u16 {
    u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2])
}

/// The packets of `segment` that start a video frame (a PES), by index.
fn frame_starts(segment: &[u8]) -> Vec<usize> {
    let packets = segment.chunks(PACKET).enumerate();
    let starts = packets.filter(|(_, p)| pid(p) == VIDEO_PID && p[1] & 0x40 != 0);
    starts.map(|(i, _)| i).collect()
}

/// `segment` cut before its video frame `frame`.
fn split_at_frame(segment: &[u8], frame: usize) -> (Vec<u8>, Vec<u8>) {
    let (head, tail) = segment.split_at(frame_starts(segment)[frame] * PACKET);
    (head.to_vec(), tail.to_vec())
}

/// `segment` without the packets of its first video frame (its keyframe), as if lost.
fn without_keyframe(segment: &[u8]) -> Vec<u8> {
    let starts = frame_starts(segment);
    let lost = starts[0]..starts[1];
    let packets = segment.chunks(PACKET).enumerate();
    let kept = packets.filter(|(i, p)| pid(p) != VIDEO_PID || !lost.contains(i));
    kept.flat_map(|(_, p)| p.to_vec()).collect()
}

/// The program tables of `segment`, then null packets: no PES, no PTS.
fn tables_only(segment: &[u8]) -> Vec<u8> {
    let tables = segment
        .chunks(PACKET)
        .filter(|p| matches!(pid(p), 0 | PMT_PID));
    let mut out: Vec<u8> = tables.flat_map(|p| p.to_vec()).collect();
    for _ in 0..50 {
        out.extend([0x47, 0x1f, 0xff, 0x10]);
        out.extend([0xff; PACKET - 4]);
    }
    out
}

/// `segment` with every PES header's PTS_DTS_flags cleared: the same frames, no timestamps (the
/// timestamp bytes stay, as stuffing within the header's length).
fn without_pts(segment: &[u8]) -> Vec<u8> {
    let mut out = segment.to_vec();
    for packet in out.chunks_mut(PACKET) {
        let payload = match packet[3] & 0x30 {
            0x30 => 5 + usize::from(packet[4]),
            _ => 4,
        };
        let pes_start = packet.get(payload..payload + 3) == Some(&[0, 0, 1]);
        if packet[1] & 0x40 != 0 && pes_start {
            packet[payload + 7] &= 0x3f;
        }
    }
    out
}

/// 50 packets of noise, each starting with the sync byte.
fn noise_packets() -> Vec<u8> {
    let mut noise = pattern(PACKET * 50, 3);
    for packet in noise.chunks_mut(PACKET) {
        packet[0] = 0x47;
    }
    noise
}

/// The video packets ffprobe finds in `path`: (pts, duration) in seconds.
async fn video_packets(path: &Path) -> Vec<(Option<f64>, Option<f64>)> {
    let probe = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-of", "csv=p=0"])
        .args(["-show_entries", "packet=pts_time,duration_time"])
        .arg(path)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout).into_owned();
    let number = |s: Option<&str>| s.and_then(|s| s.trim().parse::<f64>().ok());
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    lines
        .map(|l| {
            let mut fields = l.split(',');
            (number(fields.next()), number(fields.next()))
        })
        .collect()
}

/// How long the video of a published segment plays, by its PTS (as a player shows it): first to
/// last plus a frame, in ms; `None` without PTS.
async fn presentation_ms(path: &Path) -> Option<u64> {
    let pts: Vec<f64> = video_packets(path)
        .await
        .iter()
        .filter_map(|p| p.0)
        .collect();
    let first = pts.iter().copied().reduce(f64::min)?;
    let last = pts.iter().copied().reduce(f64::max)?;
    Some(((last - first) * 1000.0).round() as u64 + FRAME_MS)
}

/// HLS: listed, following the segment before it; listed after a discontinuity; passed over.
const FOLLOWS: Option<bool> = Some(false);
const JUMPS: Option<bool> = Some(true);
const PASSED: Option<bool> = None;
/// LL-HLS: a whole second listed, its first part independent.
const WHOLE: Option<(usize, bool)> = Some((25, true));

/// What a published segment should become.
struct Case {
    name: String,
    bytes: Vec<u8>,
    /// HLS: listed (`Some`), with a discontinuity before it or not; `None`: passed over.
    hls: Option<bool>,
    /// LL-HLS: listed with this many frames, its first part independent or not; `None`: not
    /// listed (nothing in it the remux could use).
    ll: Option<(usize, bool)>,
}

fn case(name: &str, bytes: Vec<u8>, hls: Option<bool>, ll: Option<(usize, bool)>) -> Case {
    let name = name.to_string();
    Case {
        name,
        bytes,
        hls,
        ll,
    }
}

/// The segments published, one-second segments `clip` of one encode and `later` of another
/// 100 s later, some damaged, and what each should become.
fn cases(clip: &[Vec<u8>], later: &[Vec<u8>]) -> Vec<Case> {
    let (gop_head, gop_tail) = split_at_frame(&clip[1], 12);
    let good = |i: usize, hls: Option<bool>| case(&format!("S{i}"), clip[i].clone(), hls, WHOLE);
    let longest = [clip[0].clone(), gop_head].concat();
    let lost_key = without_keyframe(&clip[4]);
    let spliced = [clip[9].clone(), later[0].clone()].concat();
    // HLS lists a segment that does not start with a keyframe with a discontinuity (and the
    // playlist is then no longer EXT-X-INDEPENDENT-SEGMENTS): its frames cannot be decoded from
    // the segment before, so a player resets its decoder there; its time still follows. The
    // remux gives frames without PTS the times that follow, and drops the frame cut short where
    // a spliced segment's packets jump; its timeline goes on across every jump.
    vec![
        // The first segment is the longest: a target duration is for good.
        case("S0 + 12 frames", longest, FOLLOWS, Some((37, true))),
        case("S1 from frame 12", gop_tail, JUMPS, Some((13, false))),
        good(2, FOLLOWS),
        good(3, FOLLOWS),
        case("S4, keyframe lost", lost_key, JUMPS, Some((24, false))),
        good(5, FOLLOWS),
        good(10, JUMPS),
        good(11, FOLLOWS),
        good(6, JUMPS),
        good(7, FOLLOWS),
        case("tables only", tables_only(&clip[8]), PASSED, None),
        good(8, JUMPS),
        case("S9 without PTS", without_pts(&clip[9]), PASSED, WHOLE),
        good(12, JUMPS),
        case("garbage", pattern(30_000, 9), PASSED, None),
        good(13, JUMPS),
        case("noise packets", noise_packets(), PASSED, None),
        case("S9, 100 s later", spliced, PASSED, Some((49, true))),
        case("100 s later", later[1].clone(), JUMPS, WHOLE),
    ]
}

/// The playlist at `path`, read strictly and checked against the ones read before it.
async fn reload(s: &TestServer, path: &str, reloads: &mut Reloads) -> (Playlist, String) {
    let r = s.get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    let text = r.text();
    let playlist = parse(&text);
    reloads.check(&playlist);
    (playlist, text)
}

/// Checks HLS segment `seq` (published from the file `ts`) against what `case` should have
/// become: passed over, or listed with the duration its PTS say and a discontinuity or not.
async fn check_hls(ts: &Path, seq: u64, case: &Case, list: &Playlist) {
    let name = &case.name;
    let listed = list.segment(seq);
    let Some(discontinuity) = case.hls else {
        assert!(listed.is_none(), "{name}: passed over in {list:?}");
        return;
    };
    let listed = listed.unwrap_or_else(|| panic!("{name}: listed in {list:?}"));
    let real = presentation_ms(ts).await.expect("timestamps");
    assert_eq!(listed.duration_ms, real, "{name}: its duration");
    assert_eq!(listed.discontinuity, discontinuity, "{name}");
}

/// Checks LL-HLS segment `seq` against what `case` should have become: listed or not, no
/// discontinuity (the remux's timeline goes on across jumps), and its duration that of its
/// parts, of the frames of the fMP4 segment served, and of the frames published.
async fn check_ll(s: &TestServer, dir: &Path, seq: u64, case: &Case, list: &Playlist) {
    let name = &case.name;
    assert!(list.segments.iter().all(|s| !s.discontinuity), "{name}");
    let listed = list.segment(seq);
    let Some((frames, independent)) = case.ll else {
        assert!(listed.is_none(), "{name}: not listed in {list:?}");
        return;
    };
    let listed = listed.unwrap_or_else(|| panic!("{name}: listed in {list:?}"));
    let parts_ms: f64 = listed.parts.iter().map(|p| p.duration * 1000.0).sum();
    assert_eq!(
        parts_ms.round() as u64,
        listed.duration_ms,
        "{name}: its parts"
    );
    assert_eq!(listed.parts[0].independent, independent, "{name}");
    let init = s.get("/cam/init.mp4").await;
    let piece = s.get(&format!("/cam/{seq}.m4s")).await;
    assert_eq!((init.status, piece.status), (200, 200), "{name}");
    let path = dir.join(format!("{seq}.mp4"));
    std::fs::write(&path, [init.body, piece.body].concat()).unwrap();
    let served = video_packets(&path).await;
    let durations: Vec<u64> = served
        .iter()
        .map(|p| (p.1.expect("a duration") * 1000.0).round() as u64)
        .collect();
    assert!(
        durations.iter().all(|d| *d == FRAME_MS),
        "{name}: {durations:?}"
    );
    assert_eq!(served.len(), frames, "{name}: the frames published");
    assert_eq!(listed.duration_ms, frames as u64 * FRAME_MS, "{name}");
}

/// `text`, a playlist of `base`, as a file ffmpeg reads whole: its URIs absolute, ended.
fn ended_copy(dir: &Path, name: &str, text: &str, base: &str) -> PathBuf {
    let mut copy = String::new();
    for line in text.lines() {
        match line.starts_with('#') {
            true => copy.push_str(&line.replace("URI=\"", &format!("URI=\"{base}"))),
            false => copy.push_str(&format!("{base}{line}")),
        }
        copy.push('\n');
    }
    copy.push_str("#EXT-X-ENDLIST\n");
    let path = dir.join(name);
    std::fs::write(&path, copy).unwrap();
    path
}

/// ffmpeg decoding the playlist at `path` whole: what it complained about, and the video frames.
async fn decode(path: &Path) -> (String, usize) {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-protocol_whitelist", "file,http,tcp", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-f", "framecrc", "-"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let frames = String::from_utf8_lossy(&out.stdout);
    let frames = frames.lines().filter(|l| !l.starts_with('#')).count();
    (String::from_utf8_lossy(&out.stderr).into_owned(), frames)
}

/// ffmpeg decodes playlist `list` (`text`, of `base`) whole without an error: every frame
/// listed, but some of those that follow the lost keyframe of seq 4 (what they refer to is
/// missing).
async fn decodes(dir: &Path, name: &str, list: &Playlist, text: &str, base: &str) {
    let listed: u64 = list.segments.iter().map(|s| s.duration_ms / FRAME_MS).sum();
    let lost = if list.segment(4).is_some() { 24 } else { 0 };
    let path = ended_copy(dir, name, text, base);
    let (errors, frames) = decode(&path).await;
    assert_eq!(errors, "", "{name}: decodes without an error");
    let frames = frames as u64;
    assert!(
        frames <= listed && frames + lost >= listed,
        "{name}: {frames} of {listed} frames"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_are_listed_with_the_durations_they_have_or_passed_over() {
    if !have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    // One-second segments S0..S13 of one encode, and two of another 100 s later.
    let clip = video::cut_segments(&video::clip(14, "320x240", true, 0));
    let later = video::cut_segments(&video::clip(2, "320x240", true, 100));
    assert_eq!((clip.len(), later.len()), (14, 2));
    let cases = cases(&clip, &later);
    let s = TestServer::with_config(Config {
        ring: 24,
        hls_window: 20,
        ..Config::default()
    })
    .await;
    for channel in ["/cam", "/other"] {
        let created = s
            .request_with("POST", channel, &[("Expect-Content", "video/mp2t")], b"")
            .await;
        assert_eq!(created.status, 200);
    }
    video::start_remux(s.addr, "cam", 0, &cases[0].bytes).await;
    video::start_remux(s.addr, "other", 0, &clip[0]).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut hls_reloads, mut ll_reloads) = (Reloads::default(), Reloads::default());
    // LL-HLS lists the newest run of seqs the remux made something of: up to seq 9, all of them.
    let mut early_ll = None;
    for (seq, case) in cases.iter().enumerate() {
        let seq = seq as u64;
        if seq > 0 {
            assert_eq!(
                s.post(&format!("/cam/{seq}"), &case.bytes).await.status,
                200
            );
        }
        if (1..6).contains(&seq) {
            let other = &clip[seq as usize];
            assert_eq!(s.post(&format!("/other/{seq}"), other).await.status, 200);
        }
        let ts = dir.path().join(format!("{seq}.ts"));
        std::fs::write(&ts, &case.bytes).unwrap();
        let (hls, _) = reload(&s, "/cam/index.m3u8", &mut hls_reloads).await;
        check_hls(&ts, seq, case, &hls).await;
        let blocking = format!("/cam/ll.m3u8?_HLS_msn={seq}");
        let (ll, text) = reload(&s, &blocking, &mut ll_reloads).await;
        check_ll(&s, dir.path(), seq, case, &ll).await;
        if seq == 9 {
            early_ll = Some((ll, text));
        }
    }
    let (hls, hls_text) = reload(&s, "/cam/index.m3u8", &mut hls_reloads).await;
    let (ll, ll_text) = reload(&s, "/cam/ll.m3u8", &mut ll_reloads).await;
    // Nothing was listed longer than it is: the target durations are those of the longest good
    // segment (1.48 s).
    assert_eq!((hls.target, ll.target), (2, 2));
    assert!(!hls.independent, "some segments start without a keyframe");

    // The channel beside it: five good segments, listed as such.
    let (other_hls, other_hls_text) =
        reload(&s, "/other/index.m3u8", &mut Reloads::default()).await;
    let other_ll_path = "/other/ll.m3u8?_HLS_msn=5";
    let (other_ll, other_ll_text) = reload(&s, other_ll_path, &mut Reloads::default()).await;
    for list in [&other_hls, &other_ll] {
        let listed: Vec<_> = list
            .segments
            .iter()
            .map(|s| (s.seq, s.duration_ms, s.discontinuity))
            .collect();
        assert_eq!(
            listed,
            (0..6).map(|seq| (seq, 1000, false)).collect::<Vec<_>>()
        );
    }
    assert!(other_hls.independent);

    // ffmpeg decodes what is listed.
    let (early_ll, early_ll_text) = early_ll.unwrap();
    let (cam, other) = (s.url("/cam/"), s.url("/other/"));
    for (name, list, text, base) in [
        ("cam.m3u8", &hls, &hls_text, &cam),
        ("cam-ll.m3u8", &ll, &ll_text, &cam),
        ("cam-early-ll.m3u8", &early_ll, &early_ll_text, &cam),
        ("other.m3u8", &other_hls, &other_hls_text, &other),
        ("other-ll.m3u8", &other_ll, &other_ll_text, &other),
    ] {
        decodes(dir.path(), name, list, text, base).await;
    }
    s.stop().await;
}
