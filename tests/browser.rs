//! The player page in a real browser: headless Chromium (driven through chromedriver) opens
//! `/{ch}/watch` of a channel fed by `trickle publish --mpegts` from a real-time ffmpeg encode,
//! and plays it: over 10 s the video's time advances at least 0.9× wall-clock time, decoded frames
//! keep rising, and the player stays within 1 s of the newest frame it has. The channel index
//! (`/_watch`) lists the channel from `/_events`.
//!
//! Chromium, chromedriver and ffmpeg come from `scripts/test.sh` (Debian `chromium`,
//! `chromium-driver`, `ffmpeg`). Without them this test fails when `CI=true` and is skipped (with
//! a message) elsewhere.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{PATIENCE, TestServer, have_tools, have_tools_probed};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// How long the player is watched once it plays.
const WATCH: Duration = Duration::from_secs(10);
/// Starting a browser and the first segments take a while on a loaded 2-core machine.
const START: Duration = Duration::from_secs(60);

/// chromedriver on a free port, and a headless Chromium session through it.
async fn browser() -> (Child, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver runs");
    let options = json!({
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let client = ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match client {
            Ok(client) => return (driver, client),
            Err(err) if Instant::now() < deadline => {
                eprintln!("waiting for chromedriver: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("no browser session: {err}"),
        }
    }
}

/// What the player page reports: its state, the video's time and frames, its lag.
async fn sample(client: &Client) -> Value {
    let script = "const v = document.getElementById('video');
        const q = v.getVideoPlaybackQuality();
        return { state: window.player.state, lag: window.player.lag, skips: window.player.skips,
                 time: v.currentTime, frames: q.totalVideoFrames, dropped: q.droppedVideoFrames,
                 detail: window.player.detail };";
    client
        .execute(script, vec![])
        .await
        .expect("the script runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_the_watch_page_near_the_live_edge() {
    if !have_tools(&["ffmpeg"])
        || !have_tools_probed(&[("chromium", "--version"), ("chromedriver", "--version")])
    {
        return;
    }
    let s = TestServer::start().await;
    let mut publisher = common::video::publish(&s.url("/cam"), "h264", 60, "");
    let (mut driver, client) = browser().await;
    let server = s.server.clone();
    common::eventually("the channel", || server.channel("cam").is_some()).await;

    client.goto(&s.url("/cam/watch")).await.unwrap();
    let deadline = Instant::now() + START;
    let first = loop {
        let now = sample(&client).await;
        if now["state"] == "live" && now["time"].as_f64().unwrap() > 0.5 {
            break now;
        }
        assert!(Instant::now() < deadline, "the player never played: {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("playing: {first}");
    // Let it settle at the live edge, then watch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = sample(&client).await;
    let began = Instant::now();
    let mut last = start.clone();
    while began.elapsed() < WATCH {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sample(&client).await;
        eprintln!("{now}");
        assert_eq!(now["state"], "live", "{now}");
        assert!(
            now["frames"].as_u64() > last["frames"].as_u64(),
            "frames rise: {now}"
        );
        assert!(
            now["lag"].as_f64().unwrap() <= 1.0,
            "within 1 s of the edge: {now}"
        );
        last = now;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let played = last["time"].as_f64().unwrap() - start["time"].as_f64().unwrap();
    assert!(
        played >= 0.9 * elapsed,
        "played {played:.2} s in {elapsed:.2} s"
    );

    // The channel index lists the channel with its publisher and the page's viewer.
    client.goto(&s.url("/_watch")).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let cam = client
            .execute(
                "const c = window.channels && window.channels.get('cam'); return c || null;",
                vec![],
            )
            .await
            .unwrap();
        if cam["publisher"] == true {
            let link = client
                .execute(
                    "return document.querySelector('tr[data-name=cam] a').getAttribute('href');",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(link, "cam/watch");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the index never listed cam: {cam}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    client.close().await.unwrap();
    let _ = driver.kill().await;
    let _ = publisher.kill().await;
    s.stop().await;
}
