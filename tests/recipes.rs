//! The README's client recipes ("Stream a video file", "Watch it with ffplay", "Pipe JSON events"),
//! run as written (only the address changes) with the real binary on `PATH`, real ffmpeg and a
//! headless ffplay, so the documentation cannot drift from the behaviour.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{TestServer, eventually};
use tokio::process::Command;

/// The shell commands of the recipe `name`.
fn recipe(name: &str) -> String {
    let script = common::readme_commands(
        &format!("<!-- recipe:{name}:start -->"),
        &format!("<!-- recipe:{name}:end -->"),
    );
    assert!(script.contains("trickle"), "recipe {name} has no commands");
    script
}

/// A bash running `script` in `dir`, with our binary first on `PATH` and SDL drawing nowhere.
fn shell(s: &TestServer, dir: &Path, script: &str) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_trickle")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = script.replace("localhost:2939", &s.addr.to_string());
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env("SDL_VIDEODRIVER", "dummy")
        .env("SDL_AUDIODRIVER", "dummy")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn output(mut command: Command) -> (String, String) {
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the recipe finishes")
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_a_video_file_and_watch_it_with_ffplay() {
    if !common::have_tools(&["ffmpeg", "ffplay"]) {
        return;
    }
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The recipe's input: 6 s of H.264 + AAC with a keyframe every second.
    output(shell(
        &s,
        dir.path(),
        "ffmpeg -v error -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine -t 6 \
         -c:v libx264 -preset ultrafast -g 25 -c:a aac video.mp4",
    ))
    .await;

    let publishing = tokio::spawn(output(shell(&s, dir.path(), &recipe("video"))));
    // Join while it plays, as a viewer would.
    eventually("the video is playing", || {
        s.server.channel("cam").is_some_and(|c| c.next_write() >= 1)
    })
    .await;
    let (_, watch_log) = output(shell(&s, dir.path(), &recipe("watch"))).await;
    let (_, publish_log) = publishing.await.unwrap();
    assert!(
        publish_log.contains("published"),
        "publisher summary missing:\n{publish_log}"
    );
    // The viewer got whole segments until the publisher deleted the channel; ffplay then exited.
    assert!(watch_log.contains("end of stream"), "{watch_log}");
    assert!(
        !watch_log.contains("received 0 segments"),
        "nothing was watched:\n{watch_log}"
    );
    assert!(s.server.channel("cam").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_json_events() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = output(shell(&s, dir.path(), &recipe("events"))).await;
    assert_eq!(stdout, r#"{"n":3}"#, "{stderr}");
    for (seq, n) in [(0, 1), (1, 2), (2, 3)] {
        let file = dir.path().join(format!("events/{seq:08}.json"));
        assert_eq!(
            std::fs::read_to_string(file).unwrap(),
            format!(r#"{{"n":{n}}}"#)
        );
    }
}
