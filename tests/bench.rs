//! `trickle bench` as a real process against `trickle serve` as a real process: a small run
//! delivers every byte of every segment to every subscriber and says so in its JSON report (with
//! the server's CPU and memory from `--server-pid`), `--rate` paces the publisher, and damage on the
//! wire (a proxy that flips one byte) is reported as an error with a failing exit status. These
//! check that the load generator is right, not how fast anything is (BENCHMARKS.md does that);
//! `--profile live` likewise: viewers that keep up get every segment, slow ones skip, damage fails;
//! and `--profile hls`: LL-HLS (blocking reloads or requests held on the hinted part) and polling
//! players on a real ffmpeg-made MPEG-TS file get every part or segment, with the delivery
//! latencies reported. With `--subscribe-from` the subscribers read at real edges (`trickle serve
//! --origin`), spread over them, and each edge pulls the stream from the origin once.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    PATIENCE, have_tools, metric_reaching, spawn_serve, spawn_serve_with_log, token, trickle, video,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn bench(args: &[&str]) -> (std::process::ExitStatus, Value, String) {
    let output = tokio::time::timeout(
        PATIENCE * 6,
        trickle().arg("bench").args(args).arg("--json").output(),
    )
    .await
    .expect("the bench finishes")
    .expect("the bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr: {stderr}"));
    (output.status, report, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_delivers_everything_and_reports_it() {
    let (server, addr) = spawn_serve(&["--listen", "127.0.0.1:0"], &[]).await;
    let pid = server.id().unwrap().to_string();
    let url = format!("http://{addr}");
    let (status, report, stderr) = bench(&[
        &url,
        "--channels",
        "2",
        "--subs",
        "5",
        "--segments",
        "20",
        "--segment-bytes",
        "64KiB",
        "--write",
        "1300",
        "--server-pid",
        &pid,
    ])
    .await;
    assert!(status.success(), "{report:#}\n{stderr}");
    let segments = 2 * 5 * 20;
    assert_eq!(report["segments_expected"], segments);
    assert_eq!(report["segments_complete"], segments);
    assert_eq!(report["delivered_bytes"], segments * 65536);
    assert_eq!(report["published_bytes"], 2 * 20 * 65536);
    // 65536 = 50 × 1300 + 536: 51 writes per segment, each long enough to carry its send time.
    assert_eq!(report["latency"]["writes"], segments * 51);
    let p50 = report["latency"]["p50_ms"].as_f64().unwrap();
    let max = report["latency"]["max_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= max, "{report:#}");
    assert_eq!(report["errors"]["total"], 0);
    assert_eq!(report["settings"]["max_lag"], 2);
    assert!(
        report["bench_cpu_seconds"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    let server = &report["servers"][0];
    assert_eq!(server["pid"].to_string(), pid);
    assert!(server["cpu_seconds"].as_f64().unwrap() > 0.0, "{report:#}");
    let start = server["rss_start_bytes"].as_u64().unwrap();
    assert!(start > 1 << 20 && server["rss_peak_bytes"].as_u64().unwrap() >= start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_paces_the_publisher() {
    let (_server, addr) = spawn_serve(&["--listen", "127.0.0.1:0"], &[]).await;
    // 10 segments of 10 kB at 50 kB/s: two seconds at least, however fast the machine.
    let (status, report, stderr) = bench(&[
        &format!("http://{addr}"),
        "--subs",
        "3",
        "--segments",
        "10",
        "--segment-bytes",
        "10000",
        "--write",
        "1000",
        "--rate",
        "50000",
        "--max-lag",
        "0",
    ])
    .await;
    assert!(status.success(), "{report:#}\n{stderr}");
    assert_eq!(report["segments_complete"], 30);
    assert_eq!(report["settings"]["max_lag"], Value::Null);
    let seconds = report["seconds"].as_f64().unwrap();
    assert!(seconds >= 1.9, "took {seconds} s");
}

/// Forwards TCP to `upstream`. Every server → client read passes through `tamper` (with the
/// stream offset of its first byte) before it is forwarded; `tamper` may change it and returns
/// how long to pause afterwards.
async fn proxy<F>(upstream: SocketAddr, tamper: F) -> SocketAddr
where
    F: Fn(&mut [u8], usize) -> Duration + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(upstream).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            let tamper = tamper.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                let mut buf = vec![0; 16 * 1024];
                loop {
                    let n = match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let pause = tamper(&mut buf[..n], seen);
                    seen += n;
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            });
        }
    });
    addr
}

/// Flips the byte at `offset` of every server → client stream.
async fn corrupting_proxy(upstream: SocketAddr, offset: usize) -> SocketAddr {
    proxy(upstream, move |read, seen| {
        if let Some(byte) = offset.checked_sub(seen).and_then(|i| read.get_mut(i)) {
            *byte ^= 0x01;
        }
        Duration::ZERO
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_on_the_wire_is_an_error() {
    let (_server, addr) = spawn_serve(&["--listen", "127.0.0.1:0"], &[]).await;
    let proxy = corrupting_proxy(addr.parse().unwrap(), 40_000).await;
    let (status, report, _) = bench(&[
        &format!("http://{proxy}"),
        "--subs",
        "2",
        "--segments",
        "5",
        "--segment-bytes",
        "100000",
        "--write",
        "10000",
    ])
    .await;
    assert!(!status.success(), "{report:#}");
    let errors = &report["errors"];
    let damaged = errors["corrupted_segments"].as_u64().unwrap()
        + errors["short_segments"].as_u64().unwrap()
        + errors["other"].as_u64().unwrap();
    assert!(damaged >= 1, "{report:#}");
    assert!(report["segments_complete"].as_u64().unwrap() < 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output = trickle()
        .args(["bench", &format!("http://{addr}"), "--subs", "1"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot create channel"),
        "unexpected stderr: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_profile_runs_with_smaller_numbers() {
    let (_server, addr) = spawn_serve(&["--listen", "127.0.0.1:0"], &[]).await;
    let (status, report, stderr) = bench(&[
        &format!("http://{addr}"),
        "--profile",
        "paced",
        "--subs",
        "3",
        "--segments",
        "3",
    ])
    .await;
    assert!(status.success(), "{report:#}\n{stderr}");
    let settings = &report["settings"];
    assert_eq!(settings["profile"], "paced");
    assert_eq!(settings["write"], 1300);
    assert_eq!(settings["segment_bytes"], 256 * 1024);
    assert_eq!(settings["rate"], 1_250_000);
    assert_eq!(report["segments_complete"], 9);
    // Three segments of 256 KiB at 1.25 MB/s take at least 0.6 s.
    assert!(report["seconds"].as_f64().unwrap() >= 0.6, "{report:#}");
}

/// `trickle serve` with metrics, an edge of `origin` if one is given: its process, address and
/// log.
async fn serve_with_metrics(origin: Option<&str>) -> (tokio::process::Child, String, Vec<String>) {
    let mut args = vec!["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
    let origin = origin.map(|addr| format!("http://{addr}"));
    if let Some(origin) = &origin {
        args.extend(["--origin", origin]);
    }
    spawn_serve_with_log(&args, &[]).await
}

/// `--profile paced` published at an origin and read at `edges` edges of it, two subscribers at
/// each: every segment reaches every subscriber whole, the origin sends the stream once per edge
/// and each edge once per subscriber of its own, and each server process is reported.
async fn paced_through_edges(edges: usize) {
    const SEGMENT: u64 = 256 << 10;
    const OUT: &str = "trickle_bytes_out_total";
    let (origin, origin_addr, origin_log) = serve_with_metrics(None).await;
    let mut servers = vec![(origin, origin_log)];
    let mut args = vec![format!("http://{origin_addr}")];
    for _ in 0..edges {
        let (edge, addr, log) = serve_with_metrics(Some(&origin_addr)).await;
        args.extend(["--subscribe-from".into(), format!("http://{addr}")]);
        servers.push((edge, log));
    }
    let pids: Vec<u64> = servers
        .iter()
        .map(|(child, _)| u64::from(child.id().unwrap()))
        .collect();
    for pid in &pids {
        args.extend(["--server-pid".into(), pid.to_string()]);
    }
    let subs = 2 * edges as u64;
    let small = [
        "--profile",
        "paced",
        "--subs",
        &subs.to_string(),
        "--segments",
        "3",
    ];
    args.extend(small.map(String::from));
    let (status, report, stderr) =
        bench(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(status.success(), "{report:#}\n{stderr}");
    assert_eq!(report["errors"]["total"], 0, "{report:#}");
    assert_eq!(report["segments_complete"], subs * 3);
    assert_eq!(report["delivered_bytes"], subs * 3 * SEGMENT);
    // 262,144 = 201 × 1300 + 844: 202 writes per segment, each stamped and checked.
    assert_eq!(report["latency"]["writes"], subs * 3 * 202);
    let reported: Vec<u64> = report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(reported, pids, "{report:#}");
    // The warm-up seq 0 and the 3 measured ones: once per edge from the origin, once per
    // subscriber from each edge (none read at the origin).
    let copy = 4 * SEGMENT;
    assert_eq!(
        metric_reaching(&servers[0].1, OUT, edges as u64 * copy).await,
        edges as u64 * copy
    );
    for (_, log) in &servers[1..] {
        assert_eq!(metric_reaching(log, OUT, 2 * copy).await, 2 * copy);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_read_through_an_edge() {
    paced_through_edges(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_spread_over_the_edges() {
    paced_through_edges(2).await;
}

/// Pauses 5 ms after every server → client read: slow subscribers.
async fn slow_proxy(upstream: SocketAddr) -> SocketAddr {
    proxy(upstream, |_, _| Duration::from_millis(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lag_holds_the_publisher_back_for_slow_subscribers() {
    // A ring of two and subscribers slowed by a proxy: an unchecked publisher pushes them out of
    // the ring, a closed loop with --max-lag 1 never does.
    let (_server, addr) = spawn_serve(&["--listen", "127.0.0.1:0", "--ring", "2"], &[]).await;
    let proxy = slow_proxy(addr.parse().unwrap()).await;
    let run = |lag: &'static str| {
        let url = format!("http://{proxy}");
        async move {
            bench(&[
                &url,
                "--subs",
                "2",
                "--segments",
                "20",
                "--segment-bytes",
                "64KiB",
                "--write",
                "8KiB",
                "--max-lag",
                lag,
            ])
            .await
        }
    };
    // Unchecked, slow subscribers lose segments (470 jumps, or a gap they wait in until the
    // channel is closed): the run fails.
    let (status, report, _) = run("0").await;
    assert!(!status.success(), "{report:#}");
    assert!(
        report["segments_complete"].as_u64().unwrap() < 40,
        "{report:#}"
    );
    let (status, report, stderr) = run("1").await;
    assert!(status.success(), "{report:#}\n{stderr}");
    assert_eq!(report["errors"]["total"], 0);
    assert_eq!(report["segments_complete"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_go_with_every_request_and_refusals_are_reported() {
    // The subscribers speak HTTP/1.1 themselves (cli/bench/wire.rs): with -H they must send the
    // header on every GET, or the server refuses them.
    let (_server, addr) = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--auth-secret",
            common::TEST_SECRET,
        ],
        &[],
    )
    .await;
    let url = format!("http://{addr}");
    let small = ["--subs", "3", "--segments", "5", "--segment-bytes", "20000"];
    let both = format!(
        "Authorization: Bearer {}",
        token(&["bench-*"], &["bench-*"], false)
    );
    let (status, report, stderr) = bench(&[&[&url[..], "-H", &both][..], &small].concat()).await;
    assert!(status.success(), "{report:#}\n{stderr}");
    assert_eq!(report["segments_complete"], 15);

    // Allowed to publish but not to subscribe: every subscriber's GET is answered 403.
    let publish_only = format!("Authorization: Bearer {}", token(&["bench-*"], &[], false));
    let (status, report, _) = bench(&[&[&url[..], "-H", &publish_only][..], &small].concat()).await;
    assert!(!status.success(), "{report:#}");
    assert_eq!(report["segments_complete"], 0);
    assert_eq!(report["errors"]["other"], 3, "{report:#}");
    let samples = report["errors"]["samples"].to_string();
    assert!(samples.contains("HTTP 403"), "{samples}");
}

/// `--profile live` with smaller numbers: 20 viewers of `GET /{name}/live`, 2 of them slow, six
/// half-second segments at 5 Mbit/s.
async fn live_bench(url: &str, extra: &[&str]) -> (std::process::ExitStatus, Value, String) {
    let small = [
        url,
        "--profile",
        "live",
        "--subs",
        "20",
        "--segments",
        "6",
        "--segment-bytes",
        "312500",
    ];
    bench(&[&small[..], extra].concat()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_viewers_that_keep_up_get_every_segment_and_slow_ones_skip() {
    let (server, addr) = spawn_serve(&["--listen", "127.0.0.1:0"], &[]).await;
    let pid = server.id().unwrap().to_string();
    let (status, report, stderr) =
        live_bench(&format!("http://{addr}"), &["--server-pid", &pid]).await;
    assert!(status.success(), "{report:#}\n{stderr}");
    let settings = &report["settings"];
    assert_eq!(settings["profile"], "live");
    assert_eq!(settings["rate"], 625_000);
    assert_eq!(settings["slow_fraction"], 0.1);
    assert_eq!(settings["slow_rate"], 625_000 / 3);
    assert_eq!(report["published_bytes"], 6 * 312_500);

    let fast = &report["fast"];
    assert_eq!(fast["viewers"], 18);
    assert_eq!(fast["segments_received"], 18 * 6, "{report:#}");
    assert_eq!(fast["skipped"], 0);
    assert!(
        fast["lag_segments"]["max"].as_u64().unwrap() <= 1,
        "{report:#}"
    );
    // Each segment begins with a write stamped with its send time, and 312,500 = 240 × 1300 +
    // 500: 241 stamped writes per segment.
    assert_eq!(fast["first_write_latency"]["writes"], 18 * 6);
    assert_eq!(fast["write_latency"]["writes"], 18 * 6 * 241);
    let p50 = fast["write_latency"]["p50_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= fast["write_latency"]["max_ms"].as_f64().unwrap());

    // A slow viewer reads a third of the stream: it must skip, and every measured segment is
    // either received whole or skipped.
    let slow = &report["slow"];
    assert_eq!(slow["viewers"], 2);
    let skipped = slow["skipped"].as_u64().unwrap();
    assert!(skipped > 0, "{report:#}");
    assert_eq!(
        slow["segments_received"].as_u64().unwrap() + skipped,
        2 * 6,
        "{report:#}"
    );
    assert!(slow["max_skipped_per_viewer"].as_u64().unwrap() <= skipped);
    for class in [fast, slow] {
        assert_eq!(class["corrupt_segments"], 0, "{report:#}");
        assert_eq!(class["partial_segments"], 0, "{report:#}");
        assert_eq!(class["errors"], 0, "{report:#}");
    }
    assert_eq!(report["errors"]["total"], 0);

    // Most of what the fast viewers received arrived while measuring (the last bytes may come
    // just after), and the server's CPU is reported per GB of it.
    let delivered = report["delivered_bytes"].as_u64().unwrap();
    assert!(delivered >= 18 * 6 * 312_500 / 2, "{report:#}");
    let server = &report["servers"][0];
    assert!(
        server["cpu_seconds_per_gb"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert!(server["rss_peak_bytes"].as_u64().unwrap() > 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_damage_on_the_wire_is_an_error() {
    let (_server, addr) = spawn_serve(&["--listen", "127.0.0.1:0"], &[]).await;
    // Writes of 50,000 bytes, so that the flipped byte falls in a pattern, not a send time.
    let proxy = corrupting_proxy(addr.parse().unwrap(), 40_000).await;
    let (status, report, _) = bench(&[
        &format!("http://{proxy}"),
        "--profile",
        "live",
        "--subs",
        "3",
        "--segments",
        "2",
        "--segment-bytes",
        "200000",
        "--write",
        "50000",
        "--rate",
        "1000000",
    ])
    .await;
    assert!(!status.success(), "{report:#}");
    let failed = |class: &Value| {
        ["corrupt_segments", "partial_segments", "errors"]
            .iter()
            .map(|k| class[*k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(
        failed(&report["fast"]) + failed(&report["slow"]) >= 3,
        "{report:#}"
    );
    assert!(report["errors"]["total"].as_u64().unwrap() >= 3);
}

#[tokio::test]
async fn help_names_the_live_profile_and_its_flags() {
    let output = trickle().args(["bench", "--help"]).output().await.unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "live:",
        "GET /{name}/live",
        "--slow-fraction",
        "--slow-rate",
        "a third of --rate",
    ] {
        assert!(
            help.contains(expected),
            "{expected:?} missing from:\n{help}"
        );
    }
    // The slow viewers' flags are the live profile's only.
    let output = trickle()
        .args(["bench", "http://127.0.0.1:9", "--slow-rate", "1000"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("are for --profile live"), "{stderr}");
}

/// `--profile hls` with 20 players in `mode` on a 3-second file of one-second GOPs (so the run
/// goes through the loop of the file), 5 measured segments, against a real server.
async fn hls_bench(mode: &str) -> (std::process::ExitStatus, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ts");
    video::ts_file(&input, 3).await;
    let (server, addr) = spawn_serve(&["--listen", "127.0.0.1:0"], &[]).await;
    let pid = server.id().unwrap().to_string();
    bench(&[
        &format!("http://{addr}"),
        "--profile",
        "hls",
        "--hls-mode",
        mode,
        "--input",
        input.to_str().unwrap(),
        "--subs",
        "20",
        "--segments",
        "5",
        "--server-pid",
        &pid,
    ])
    .await
}

/// What every `hls` run must report: no error, every player had every measured piece, and
/// latencies for each of them, in order and within reason.
fn assert_hls_report(report: &Value, pieces: &str) {
    assert_eq!(report["settings"]["profile"], "hls");
    assert_eq!(report["players"], 20);
    assert_eq!(report["pieces"], pieces);
    let errors = &report["errors"];
    assert_eq!(errors["total"], 0, "{report:#}");
    assert_eq!(errors["status"], serde_json::json!({}));
    let received = report["pieces_received"].as_u64().unwrap();
    assert_eq!(report["pieces_expected"], received, "{report:#}");
    assert_eq!(report["players_short"], 0);
    assert_eq!(report["players_behind"], 0);
    let delivery = &report["delivery"];
    assert_eq!(delivery["count"], received);
    let ms = |k: &str| delivery[k].as_f64().unwrap();
    assert!(ms("p50_ms") > 0.0, "{report:#}");
    assert!(ms("p50_ms") <= ms("p90_ms") && ms("p90_ms") <= ms("p99_ms"));
    assert!(
        ms("p99_ms") <= ms("max_ms") && ms("max_ms") < 30_000.0,
        "{report:#}"
    );
    assert!(report["requests"].as_u64().unwrap() >= received);
    assert!(report["requests_per_second"].as_f64().unwrap() > 0.0);
    assert!(report["published_bytes"].as_u64().unwrap() > 0);
    assert!(report["delivered_bytes"].as_u64().unwrap() > 0);
    let server = &report["servers"][0];
    assert!(server["cpu_seconds"].as_f64().unwrap() > 0.0, "{report:#}");
    assert!(server["rss_peak_bytes"].as_u64().unwrap() > 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_low_latency_players_get_every_part() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let (status, report, stderr) = hls_bench("ll").await;
    assert!(status.success(), "{report:#}\n{stderr}");
    assert_hls_report(&report, "parts");
    assert_eq!(report["settings"]["hls_mode"], "ll");
    // One-second segments in parts of at most 0.25 s plus a frame: at least four parts each
    // (the last of a pass of the file may be shorter), 5 segments, 20 players.
    let received = report["pieces_received"].as_u64().unwrap();
    assert!(received >= 20 * 5 * 3, "{report:#}");
    assert_eq!(received % 20, 0, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_hint_players_get_every_part_with_one_404_per_segment() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let (status, report, stderr) = hls_bench("hint").await;
    assert!(status.success(), "{report:#}\n{stderr}");
    assert_hls_report(&report, "parts");
    assert_eq!(report["settings"]["hls_mode"], "hint");
    let received = report["pieces_received"].as_u64().unwrap();
    assert!(received >= 20 * 5 * 3, "{report:#}");
    assert_eq!(received % 20, 0, "{report:#}");
    // While measuring, a player asks for each part and for one more per segment (the `404` that
    // says the segment ended), and reads no playlist: the measured segments' requests, plus those
    // of the segment it was in when measuring began (one second: at most five parts, as each but
    // the last lasts at least a quarter second, and its `404`).
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests >= received + 20 * 5, "{report:#}");
    assert!(requests <= received + 20 * 5 + 20 * 6, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_polling_players_get_every_segment() {
    if !have_tools(&["ffmpeg"]) {
        return;
    }
    let (status, report, stderr) = hls_bench("polling").await;
    assert!(status.success(), "{report:#}\n{stderr}");
    assert_hls_report(&report, "segments");
    assert_eq!(report["settings"]["hls_mode"], "polling");
    assert_eq!(report["pieces_received"], 20 * 5);
    // The players poll every half target duration (0.5 s) at moments spread over it, so some
    // get a segment nearly half a second after it was written: a lower bound, which load only
    // raises.
    let max = report["delivery"]["max_ms"].as_f64().unwrap();
    assert!(max >= 250.0, "{report:#}");
}

#[tokio::test]
async fn hls_needs_an_mpegts_input_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let not_ts = dir.path().join("not.ts");
    std::fs::write(&not_ts, vec![b'x'; 10_000]).unwrap();
    let cases = [
        (None, "needs --input FILE.ts"),
        (Some(dir.path().join("missing.ts")), "cannot open --input"),
        (Some(not_ts), "is not MPEG-TS"),
    ];
    for (input, expected) in cases {
        let mut command = trickle();
        command.args(["bench", "http://127.0.0.1:9", "--profile", "hls"]);
        if let Some(input) = &input {
            command.arg("--input").arg(input);
        }
        let output = command.output().await.unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    // Its flags are the hls profile's only.
    let output = trickle()
        .args(["bench", "http://127.0.0.1:9", "--hls-mode", "polling"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("are for --profile hls"), "{stderr}");
}
