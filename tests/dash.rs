//! DASH (`manifest.mpd`, `video-init.mp4`, `video-{time}.m4s` and the audio ones) of a live
//! channel fed by `trickle publish --mpegts` from a real-time ffmpeg encode: every manifest read
//! by a strict XML parser and checked against its own numbers across reloads, every listed
//! segment's media where its timeline says, the next segment served while it is written, ffmpeg
//! decoding the stream without a complaint, and the answers to bad requests.
//!
//! ffmpeg comes from `scripts/test.sh`. Without it these tests fail when `CI=true` and are
//! skipped (with a message) elsewhere.

mod common;

use std::time::{Duration, SystemTime};

use common::*;

/// The 90 kHz clock of every timeline.
const TIMESCALE: u64 = 90_000;

/// One track's Adaptation Set: its kind, codec, templates and timeline (start, duration).
#[derive(Debug, Clone)]
struct Set {
    kind: String,
    init: String,
    media: String,
    timeline: Vec<(u64, u64)>,
}

/// What the tests read of a manifest, checked while parsed.
#[derive(Debug)]
struct Manifest {
    sets: Vec<Set>,
    depth: f64,
}

/// `PT1.5S` in seconds (the only form the server writes).
fn seconds(duration: &str) -> f64 {
    let number = duration
        .strip_prefix("PT")
        .and_then(|d| d.strip_suffix('S'));
    number.expect("PT…S").parse().expect("seconds")
}

/// Parses `text` strictly: well-formed XML, a dynamic MPD with the attributes live players
/// need, one Period, Adaptation Sets of one Representation each with a template and a timeline
/// whose first entry has its `t`, and the server's clock, close to ours.
fn parse(text: &str) -> Manifest {
    let doc = roxmltree::Document::parse(text).expect("well-formed XML");
    let mpd = doc.root_element();
    assert_eq!(mpd.tag_name().name(), "MPD");
    assert_eq!(mpd.attribute("type"), Some("dynamic"));
    for name in ["availabilityStartTime", "publishTime"] {
        let at = mpd.attribute(name).unwrap_or_else(|| panic!("{name}"));
        humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("{name} {at}: {e}"));
    }
    let update = seconds(mpd.attribute("minimumUpdatePeriod").unwrap());
    let delay = seconds(mpd.attribute("suggestedPresentationDelay").unwrap());
    assert!(update >= 1.0 && delay >= 3.0 * update, "{text}");
    seconds(mpd.attribute("minBufferTime").unwrap());
    let depth = seconds(mpd.attribute("timeShiftBufferDepth").unwrap());
    let children: Vec<_> = mpd.children().filter(|n| n.is_element()).collect();
    let names: Vec<_> = children.iter().map(|n| n.tag_name().name()).collect();
    assert_eq!(names, ["Period", "UTCTiming"], "{text}");
    let clock = children[1].attribute("value").unwrap();
    let clock = humantime::parse_rfc3339(clock).unwrap();
    let off = SystemTime::now().duration_since(clock).unwrap_or_default();
    assert!(off < Duration::from_secs(2), "the server's clock is now");
    let sets = children[0]
        .children()
        .filter(|n| n.has_tag_name("AdaptationSet"))
        .map(adaptation_set)
        .collect();
    Manifest { sets, depth }
}

fn adaptation_set(set: roxmltree::Node) -> Set {
    let kind = set.attribute("contentType").unwrap().to_string();
    assert_eq!(set.attribute("mimeType"), Some(&*format!("{kind}/mp4")));
    let reps: Vec<_> = set
        .children()
        .filter(|n| n.has_tag_name("Representation"))
        .collect();
    assert_eq!(reps.len(), 1, "one track per set");
    let rep = reps[0];
    assert!(rep.attribute("codecs").is_some() && rep.attribute("bandwidth").is_some());
    let template = rep
        .children()
        .find(|n| n.has_tag_name("SegmentTemplate"))
        .unwrap();
    assert_eq!(template.attribute("timescale"), Some("90000"));
    let mut timeline = Vec::new();
    let entries = template
        .children()
        .find(|n| n.has_tag_name("SegmentTimeline"))
        .unwrap()
        .children()
        .filter(|n| n.has_tag_name("S"));
    for s in entries {
        assert_eq!(s.attribute("r"), None, "no repeats written");
        let number = |name| s.attribute(name).map(|v: &str| v.parse::<u64>().unwrap());
        let d = number("d").expect("d");
        assert!(d > 0 && d <= 10 * TIMESCALE, "a sane duration: {d}");
        let t = match (number("t"), timeline.last()) {
            (Some(t), _) => t,
            (None, Some(&(t, d))) => t + d,
            (None, None) => panic!("the first entry has its t"),
        };
        if let Some(&(before, before_d)) = timeline.last() {
            assert!(t >= before + before_d, "entries in order: {t}");
        }
        timeline.push((t, d));
    }
    assert!(!timeline.is_empty());
    Set {
        init: template.attribute("initialization").unwrap().to_string(),
        media: template.attribute("media").unwrap().to_string(),
        kind,
        timeline,
    }
}

async fn manifest(s: &TestServer) -> Manifest {
    let response = s.get("/cam/manifest.mpd").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/dash+xml")
    );
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    parse(&response.text())
}

/// GET of `path` under the channel, a `200`: its bytes.
async fn fetch(s: &TestServer, path: &str) -> Vec<u8> {
    let response = s.get(&format!("/cam/{path}")).await;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.body
}

/// ffprobe's first decode time and the span (seconds) of the packets in `file`: from the first
/// one's decode time to the end of the last (ffprobe may not know the first AAC frame's
/// duration, so the durations are not summed).
async fn span(file: &std::path::Path) -> (f64, f64) {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=dts_time,duration_time",
        ])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let packets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.split_once(','))
        .map(|(dts, d)| (dts.parse().unwrap(), d.parse().unwrap_or(0.0)))
        .collect();
    let (Some(first), Some(last)) = (packets.first(), packets.last()) else {
        panic!("{file:?} has packets");
    };
    (first.0, last.0 + last.1 - first.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_keep_their_rules_and_every_segment_is_where_its_timeline_says() {
    if !have_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let s = video::mpegts_server().await;
    let _publisher = video::publish(&s.url("/cam"), "h264", 20, "");
    let first = manifest(&s).await;
    let kinds: Vec<_> = first.sets.iter().map(|set| set.kind.as_str()).collect();
    assert_eq!(kinds, ["video", "audio"]);

    // The segment after the newest, asked for before any manifest lists it, comes as it is
    // written: the same bytes as once it is complete.
    let video = &first.sets[0];
    let &(t, d) = video.timeline.last().unwrap();
    let next = video.media.replace("$Time$", &(t + d).to_string());
    let early = fetch(&s, &next).await;

    let mut previous = first;
    let mut compared = false;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = manifest(&s).await;
        for (before, after) in previous.sets.iter().zip(&now.sets) {
            assert_eq!((&before.init, &before.media), (&after.init, &after.media));
            let (from, _) = after.timeline[0];
            assert!(from >= before.timeline[0].0, "the window never goes back");
            // What both list is the same: a segment's start and duration never change.
            for entry in &before.timeline {
                if entry.0 >= from {
                    assert!(after.timeline.contains(entry), "{entry:?} kept");
                }
            }
        }
        let spans = now
            .sets
            .iter()
            .map(|set| set.timeline.iter().map(|e| e.1).sum::<u64>());
        let longest = spans.max().unwrap() as f64 / TIMESCALE as f64;
        assert!(
            (now.depth - longest).abs() < 0.002,
            "depth {} = {longest}",
            now.depth
        );
        if !compared && now.sets[0].timeline.iter().any(|e| e.0 == t + d) {
            assert_eq!(fetch(&s, &next).await, early, "{next}: the bytes streamed");
            compared = true;
        }
        previous = now;
    }
    assert!(compared, "{next} was listed");

    // Every listed segment, after its init segment, holds media from its `t` for its `d`.
    let dir = tempfile::tempdir().unwrap();
    for set in &previous.sets {
        let init = fetch(&s, &set.init).await;
        let frame = if set.kind == "video" { 0.04 } else { 0.022 };
        for &(t, d) in &set.timeline {
            let path = set.media.replace("$Time$", &t.to_string());
            let mut file = init.clone();
            file.extend(fetch(&s, &path).await);
            let at = dir.path().join(format!("{}-{t}.mp4", set.kind));
            std::fs::write(&at, file).unwrap();
            let (start, length) = span(&at).await;
            let (t, d) = (t as f64 / TIMESCALE as f64, d as f64 / TIMESCALE as f64);
            assert!(
                (start - t).abs() < 0.001,
                "{path}: starts at {start}, listed {t}"
            );
            assert!(
                (length - d).abs() < frame,
                "{path}: lasts {length}, listed {d}"
            );
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_dash_without_complaint() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let s = video::mpegts_server().await;
    let _publisher = video::publish(&s.url("/cam"), "h264", 25, "");
    manifest(&s).await;
    // Warnings too: a player that went back a segment shows as timestamps going backwards.
    let url = s.url("/cam/manifest.mpd");
    let complaints = video::decode_errors(&["-v", "warning", "-t", "10"], &url).await;
    assert_eq!(complaints, "", "ffmpeg reads 10 s of DASH cleanly");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_one_clear_line() {
    let s = TestServer::start().await;
    s.request_with("POST", "/text", &[("Expect-Content", "text/plain")], b"")
        .await;
    video::refused_as_not_mpegts(
        &s,
        &[
            "/text/manifest.mpd",
            "/text/video-init.mp4",
            "/text/audio-0.m4s",
        ],
    )
    .await;
    for path in [
        "/missing/manifest.mpd",
        "/missing/audio-init.mp4",
        "/missing/video-0.m4s",
    ] {
        assert_eq!(s.get(path).await.status, 404, "{path}");
    }
    // Not a track or a time of ours: a seq, an invalid one.
    for path in [
        "/text/subtitles-0.m4s",
        "/text/video-x.m4s",
        "/text/video--1.m4s",
    ] {
        assert_eq!(s.get(path).await.status, 400, "{path}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_no_segment_starts_at_is_404_and_one_that_never_comes_503() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let s = video::mpegts_server().await;
    let mut publisher = video::publish(&s.url("/cam"), "h264", 4, "");
    let listed = manifest(&s).await;
    let video = &listed.sets[0];
    let (t, _) = video.timeline[0];
    for time in [t + 1, t + 1000 * TIMESCALE, 0] {
        let path = format!("/cam/video-{time}.m4s");
        assert_eq!(s.get(&path).await.status, 404, "{path}");
    }
    assert!(publisher.wait().await.unwrap().success());
    let last = manifest(&s).await.sets[0].timeline.last().copied().unwrap();
    let after = format!("/cam/video-{}.m4s", last.0 + last.1);
    let gave_up = s.get(&after).await;
    assert_eq!(gave_up.status, 503, "{after}");
    assert_eq!(gave_up.header("retry-after"), Some("1"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_only_channel_has_one_adaptation_set_and_no_video() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let s = video::mpegts_server().await;
    let script = format!(
        "ffmpeg -v error -re -f lavfi -i sine=frequency=440:sample_rate=48000 -t 12 \
         -c:a aac -b:a 64k -f mpegts - | '{}' publish '{}' --mpegts --segment-time 1s",
        env!("CARGO_BIN_EXE_trickle"),
        s.url("/cam")
    );
    let _publisher = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let listed = manifest(&s).await;
    let kinds: Vec<_> = listed.sets.iter().map(|set| set.kind.as_str()).collect();
    assert_eq!(kinds, ["audio"]);
    let started = std::time::Instant::now();
    for path in ["/cam/video-init.mp4", "/cam/video-0.m4s"] {
        assert_eq!(s.get(path).await.status, 404, "{path}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "at once, not after a wait"
    );
    let audio = &listed.sets[0];
    fetch(&s, &audio.init).await;
    let first = audio
        .media
        .replace("$Time$", &audio.timeline[0].0.to_string());
    fetch(&s, &first).await;
    s.stop().await;
}
