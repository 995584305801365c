//! `trickle publish` and `trickle subscribe` as real processes against a real server: segmenting
//! by size and by line, files and pipes, one file per segment, stdout back to back, and the exit
//! status and message when the channel is missing or ends.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{PATIENCE, TestServer, eventually, pattern, trickle};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use trickle::Config;

async fn finished(command: &mut Command) -> std::process::Output {
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("the command finishes")
        .expect("the command runs")
}

/// Reads a child's pipe to its end in the background.
fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut buf).await;
        }
        buf
    })
}

/// Waits for a spawned process; if it does not finish in time, kills it and fails with what it
/// printed on stderr (spawn it with `stderr(Stdio::piped())` and `TRICKLE_LOG=debug` to see why).
async fn exit_of(mut child: tokio::process::Child) -> std::process::Output {
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let status = match tokio::time::timeout(PATIENCE, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            child.kill().await.unwrap();
            let stderr = stderr.await.unwrap();
            panic!(
                "the process did not finish; its stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
    };
    std::process::Output {
        status,
        stdout: stdout.await.unwrap(),
        stderr: stderr.await.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_a_file_by_size_and_read_it_back_one_file_per_segment() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.bin");
    let data = pattern(250_000, 3);
    std::fs::write(&input, &data).unwrap();
    let out = finished(
        trickle()
            .args(["publish", &s.url("/files"), "--segment-bytes", "100KB"])
            .arg(&input),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("published 3 segments"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let segments = dir.path().join("segments");
    let out = finished(
        trickle()
            .args([
                "subscribe",
                &s.url("/files"),
                "--start",
                "0",
                "--count",
                "3",
            ])
            .arg("--output-dir")
            .arg(&segments),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<_> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["00000000.bin", "00000001.bin", "00000002.bin"]);
    let sizes: Vec<_> = names
        .iter()
        .map(|n| std::fs::metadata(segments.join(n)).unwrap().len())
        .collect();
    assert_eq!(sizes, [100_000, 100_000, 50_000]);
    let joined: Vec<u8> = names
        .iter()
        .flat_map(|n| std::fs::read(segments.join(n)).unwrap())
        .collect();
    assert!(joined == data, "segments do not add up to the input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_json_events_one_per_line() {
    let s = TestServer::start().await;
    s.request_with(
        "POST",
        "/events",
        &[("Expect-Content", "application/json")],
        b"",
    )
    .await;
    // The subscriber waits for the next segment, writing segments back to back to stdout.
    let subscriber = trickle()
        .args(["subscribe", &s.url("/events"), "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("subscriber waiting", || s.server.stats().waiting_gets == 1).await;
    let mut publisher = trickle()
        .args(["publish", &s.url("/events"), "--lines"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    for event in [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#] {
        stdin
            .write_all(format!("{event}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        // Each line is its own segment, published as soon as its newline arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stdin);
    let published = tokio::time::timeout(PATIENCE, publisher.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(published.status.success());
    let received = tokio::time::timeout(PATIENCE, subscriber.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        received.status.success(),
        "{}",
        String::from_utf8_lossy(&received.stderr)
    );
    assert_eq!(received.stdout, br#"{"n":1}{"n":2}{"n":3}"#);
    for seq in 0..3 {
        let r = s.get(&format!("/events/{seq}")).await;
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), format!(r#"{{"n":{}}}"#, seq + 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_segments_by_time_from_a_slow_pipe() {
    let s = TestServer::start().await;
    let mut publisher = trickle()
        .args(["publish", &s.url("/slow"), "--segment-time", "300ms"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(b"first").await.unwrap();
    stdin.flush().await.unwrap();
    eventually("the channel exists", || s.server.channel("slow").is_some()).await;
    // No more input, yet the segment ends 300 ms after its first byte: a GET of it completes
    // while the pipe is still open (it would wait for more bytes otherwise).
    let segment = tokio::time::timeout(PATIENCE, s.get("/slow/0"))
        .await
        .expect("segment 0 ends without more input");
    assert_eq!(segment.body, b"first");
    stdin.write_all(b"second").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(PATIENCE, publisher.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(s.get("/slow/1").await.body, b"second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors_for_missing_channels() {
    let s = TestServer::with_config(Config {
        autocreate: false,
        ..Config::default()
    })
    .await;
    let mut publish = trickle();
    publish
        .args(["publish", &s.url("/nowhere"), "--lines"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = publish.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"event\n")
        .await
        .unwrap();
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("channel not found"), "{stderr}");

    let out = finished(trickle().args(["subscribe", &s.url("/nowhere")])).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("channel not found"));

    let out = finished(trickle().args(["publish", "not a url"])).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid URL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_reports_the_end_of_stream_and_publisher_can_delete_on_exit() {
    let s = TestServer::start().await;
    s.post("/ending", b"").await;
    let subscriber = trickle()
        .args(["subscribe", &s.url("/ending")])
        .env("TRICKLE_LOG", "trickle=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("subscriber waiting", || s.server.stats().waiting_gets == 1).await;
    let mut publish = trickle();
    publish
        .args(["publish", &s.url("/ending"), "--delete-on-exit"])
        .stdin(Stdio::piped());
    let mut child = publish.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"last words").await.unwrap();
    stdin.flush().await.unwrap();
    // The input ends at once: the preconnect for seq 1 may reach the server after the DELETE
    // and make the channel again; `Publisher::close` then deletes it once more.
    drop(stdin);
    assert!(child.wait().await.unwrap().success());
    let out = exit_of(subscriber).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(out.stdout, b"last words");
    assert!(stderr.contains("end of stream"), "{stderr}");
    assert!(s.server.channel("ending").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_input_is_a_clear_error() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Opening a directory works; reading it fails.
    let out = finished(
        trickle()
            .args(["publish", &s.url("/broken")])
            .arg(dir.path()),
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reading the input failed"), "{stderr}");
    // Nothing was published (the preconnected POST created the channel, as it does with
    // autocreate, but no segment started).
    assert_eq!(s.server.channel("broken").map_or(0, |c| c.next_write()), 0);
    let out = finished(trickle().args(["publish", &s.url("/broken"), "/no/such/file"])).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /no/such/file"));
}
