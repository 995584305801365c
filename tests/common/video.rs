//! Real video for the tests: a real-time ffmpeg encode piped into `trickle publish --mpegts`, and
//! ffmpeg/ffprobe reading back what a viewer or player got.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{Raw, TestServer, request_at};

/// A server whose waits outlast a slow encoder's start (60 s), with the channel `cam` made for
/// MPEG-TS (`video/mp2t`), ready for [`publish`].
pub async fn mpegts_server() -> TestServer {
    let s = TestServer::with_config(trickle::Config {
        wait_timeout: Duration::from_secs(60),
        ..trickle::Config::default()
    })
    .await;
    let created = s
        .request_with("POST", "/cam", &[("Expect-Content", "video/mp2t")], b"")
        .await;
    assert_eq!(created.status, 200);
    s
}

/// The test pattern and the tone that [`publish`] and [`ts_file`] encode (25 frames a second).
const SOURCES: &str = "-f lavfi -i testsrc2=size=320x240:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=48000";
/// H.264 with one-second GOPs.
const H264: &str = "-c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0";

/// `secs` seconds of the test pattern and tone (H.264 with one-second GOPs, AAC) written as fast
/// as ffmpeg can to the MPEG-TS file `path`.
pub async fn ts_file(path: &Path, secs: u64) {
    let script = format!(
        "ffmpeg -v error -y {SOURCES} -t {secs} {H264} -pix_fmt yuv420p -c:a aac -b:a 64k \
         -f mpegts '{}'",
        path.display()
    );
    let status = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .kill_on_drop(true)
        .status()
        .await
        .expect("bash runs");
    assert!(status.success(), "ffmpeg made no {}", path.display());
}

/// A real-time encode (`-re`) of `secs` seconds of a test pattern and a tone (H.264 or HEVC
/// with one-second GOPs, or `h264-2s` with two-second ones; AAC) piped into `trickle publish
/// URL --mpegts` with `extra` flags (`--delete-on-exit` ends the viewers' responses when it is
/// done).
pub fn publish(url: &str, video: &str, secs: u64, extra: &str) -> Child {
    let codec = match video {
        "h264" => H264,
        // Two-second GOPs: segments longer than a second.
        "h264-2s" => "-c:v libx264 -preset ultrafast -g 50 -keyint_min 50 -sc_threshold 0",
        "hevc" => {
            "-c:v libx265 -preset ultrafast -x265-params keyint=25:min-keyint=25:scenecut=0:open-gop=0:log-level=error"
        }
        _ => unreachable!("h264, h264-2s or hevc"),
    };
    let script = format!(
        "ffmpeg -v error -re {SOURCES} -t {secs} {codec} -pix_fmt yuv420p \
         -c:a aac -b:a 64k -f mpegts - | '{}' publish '{url}' --mpegts {extra}",
        env!("CARGO_BIN_EXE_trickle")
    );
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("bash runs")
}

/// `ffmpeg -v error` decoding `input` (a file or URL, with `args` before `-i`, such as
/// `-t 5`): what it complained about (nothing, for a clean stream).
pub async fn decode_errors(args: &[&str], input: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(args)
        .args(["-i", input, "-f", "null", "-"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// ffprobe's count of decoded video frames in `path`.
pub async fn video_frames(path: &Path) -> u64 {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// `ts` cut into segments by the project's segmenter, as `trickle publish --mpegts` cuts it: each
/// starts with PAT, PMT and a keyframe.
pub fn cut_segments(ts: &[u8]) -> Vec<Vec<u8>> {
    use trickle::media::mpegts::{Event, Segmenter, SegmenterConfig};
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut events = Vec::new();
    segmenter.push(ts, &mut events);
    segmenter.finish(&mut events);
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for event in events {
        match event {
            Event::Start { .. } => segments.push(Vec::new()),
            Event::Data(data) => segments.last_mut().unwrap().extend_from_slice(&data),
            Event::Clock(_) => {}
        }
    }
    segments
}

/// `secs` seconds of a test pattern of `size` (`320x240`) at 25 fps, H.264 with a keyframe every
/// second and, with `audio`, an AAC tone, as one MPEG-TS stream (ffmpeg's, which starts at 1.4 s)
/// whose timestamps are moved on by `offset` seconds.
pub fn clip(secs: u32, size: &str, audio: bool, offset: u32) -> Vec<u8> {
    let mut ffmpeg = std::process::Command::new("ffmpeg");
    ffmpeg
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"));
    if audio {
        ffmpeg.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    ffmpeg
        .args([
            "-t",
            &secs.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"])
        .args([
            "-output_ts_offset",
            &offset.to_string(),
            "-f",
            "mpegts",
            "-",
        ]);
    let out = ffmpeg
        .stderr(Stdio::inherit())
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg encodes the clip");
    out.stdout
}

/// Starts the remux of the MPEG-TS channel `channel` of the server at `addr` with a player's
/// first LL-HLS playlist request, made while seq `seq` (`first`) is being written: the remux
/// starts with the segment being written, and the answer comes once its tracks are known. Then
/// the segment ends.
pub async fn start_remux(addr: SocketAddr, channel: &str, seq: u64, first: &[u8]) {
    let mut publisher = Raw::connect(addr).await;
    publisher.start_post(&format!("/{channel}/{seq}")).await;
    let half = first.len() / 188 / 2 * 188;
    publisher.chunk(&first[..half]).await;
    // The segment is being written once the write head is past it.
    let deadline = tokio::time::Instant::now() + super::PATIENCE;
    loop {
        let next = request_at(addr, "GET", &format!("/{channel}/next"), &[], b"").await;
        if next.text().parse::<u64>().is_ok_and(|next| next > seq) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "seq {seq} starts");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let playlist = format!("/{channel}/ll.m3u8");
    let player = request_at(addr, "GET", &playlist, &[], b"").await;
    assert_eq!(player.status, 200, "{}", player.text());
    publisher.chunk(&first[half..]).await;
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
}

/// Each of `paths` (outputs made from MPEG-TS, of a channel that is not) is refused with `415` and
/// its one line.
pub async fn refused_as_not_mpegts(s: &TestServer, paths: &[&str]) {
    for path in paths {
        let refused = s.get(path).await;
        let line = "fMP4 outputs need an MPEG-TS channel (video/mp2t)\n";
        assert_eq!(
            (refused.status, refused.text()),
            (415, line.into()),
            "{path}"
        );
    }
}
