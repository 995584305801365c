//! The players in a real browser: headless Chromium (driven through chromedriver) plays a channel
//! fed by `trickle publish --mpegts` from a real-time ffmpeg encode, first on our page
//! (`/{ch}/watch`: over 10 s the video's time advances at least 0.9× wall-clock time, decoded
//! frames keep rising, and the player stays within 1 s of the newest frame it has), then with
//! hls.js as Low-Latency HLS (`ll.m3u8`) and as HLS (`index.m3u8`), and with dash.js as DASH
//! (`manifest.mpd`, no player error): the time advances as fast, and the latency behind the
//! publisher (from the playlist's program date-time, or dash.js's estimate) is printed. The
//! channel index (`/_watch`) lists the channel from `/_events`.
//!
//! Chromium, chromedriver, ffmpeg, hls.js and dash.js (from npm) come from `scripts/test.sh`.
//! Without them this test fails when `CI=true` and is skipped (with a message) elsewhere.

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

/// What our page's player reports: its state, the video's time and frames, its lag.
const PAGE_SAMPLE: &str = "const v = document.getElementById('video');
    const q = v.getVideoPlaybackQuality();
    return { state: window.player.state, lag: window.player.lag, skips: window.player.skips,
             time: v.currentTime, frames: q.totalVideoFrames, dropped: q.droppedVideoFrames,
             detail: window.player.detail };";

/// What hls.js reports: the video's time and frames, its own latency estimate, and how far
/// behind the wall clock the frame on screen is by the playlist's program date-time.
const HLS_SAMPLE: &str = "const v = document.getElementById('hls');
    const q = v.getVideoPlaybackQuality();
    const date = window.hls.playingDate;
    return { state: v.paused ? 'paused' : 'live', time: v.currentTime, frames: q.totalVideoFrames,
             dropped: q.droppedVideoFrames, latency: window.hls.latency,
             behind: date ? (Date.now() - date.getTime()) / 1000 : null, lag: 0 };";

/// What dash.js reports: the video's time and frames, and its latency behind the live edge by
/// the manifest's availability start time.
const DASH_SAMPLE: &str = "const v = document.getElementById('dash');
    const q = v.getVideoPlaybackQuality();
    return { state: v.paused ? 'paused' : 'live', time: v.currentTime, frames: q.totalVideoFrames,
             dropped: q.droppedVideoFrames, latency: window.dash.getCurrentLiveLatency(), lag: 0,
             errors: window.dashErrors };";

async fn sample(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .expect("the script runs")
}

/// Waits until the player plays, lets it settle, then watches it for [`WATCH`]: it stays live,
/// its frames rise and its lag stays within 1 s at every second, and its time advances at least
/// 0.9× the wall clock. Every sample.
async fn watch(client: &Client, script: &str) -> Vec<Value> {
    let deadline = Instant::now() + START;
    loop {
        let now = sample(client, script).await;
        if now["state"] == "live" && now["time"].as_f64().unwrap_or(0.0) > 0.5 {
            break;
        }
        assert!(Instant::now() < deadline, "the player never played: {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let began = Instant::now();
    let mut samples = vec![sample(client, script).await];
    while began.elapsed() < WATCH {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sample(client, script).await;
        eprintln!("{now}");
        let last = samples.last().unwrap();
        assert_eq!(now["state"], "live", "{now}");
        assert!(
            now["frames"].as_u64() > last["frames"].as_u64(),
            "frames rise: {now}"
        );
        assert!(
            now["lag"].as_f64().unwrap() <= 1.0,
            "within 1 s of the edge: {now}"
        );
        samples.push(now);
    }
    let elapsed = began.elapsed().as_secs_f64();
    let time = |v: &Value| v["time"].as_f64().unwrap();
    let played = time(samples.last().unwrap()) - time(&samples[0]);
    assert!(
        played >= 0.9 * elapsed,
        "played {played:.2} s in {elapsed:.2} s"
    );
    samples
}

/// A test-only player script, as `scripts/test.sh` installs it from npm (its path in `env`, else
/// `path` under `target/players/node_modules`); `None` (skip) without it, outside CI.
fn player_js(env: &str, path: &str) -> Option<String> {
    let path = std::env::var(env).unwrap_or_else(|_| {
        format!(
            "{}/target/players/node_modules/{path}",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(err) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{path} is required in CI (scripts/test.sh installs it): {err}"
            );
            eprintln!("skipping a player in the browser: no {path} (run scripts/test.sh)");
            None
        }
    }
}

/// The channel index lists `cam` with its publisher, linked to its page.
async fn index_lists_the_channel(client: &Client, s: &TestServer) {
    client.goto(&s.url("/_watch")).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let cam = sample(
            client,
            "const c = window.channels && window.channels.get('cam'); return c || null;",
        )
        .await;
        if cam["publisher"] == true {
            let link = "return document.querySelector('tr[data-name=cam] a').getAttribute('href');";
            assert_eq!(sample(client, link).await, "cam/watch");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the index never listed cam: {cam}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_the_watch_page_and_ll_hls_near_the_live_edge() {
    if !have_tools(&["ffmpeg"])
        || !have_tools_probed(&[("chromium", "--version"), ("chromedriver", "--version")])
    {
        return;
    }
    let hls = player_js("TRICKLE_TEST_HLS_JS", "hls.js/dist/hls.min.js");
    let dash = player_js(
        "TRICKLE_TEST_DASH_JS",
        "dashjs/dist/modern/umd/dash.all.min.js",
    );
    let s = TestServer::start().await;
    let mut publisher = common::video::publish(&s.url("/cam"), "h264", 90, "");
    let (mut driver, client) = browser().await;
    let server = s.server.clone();
    common::eventually("the channel", || server.channel("cam").is_some()).await;

    client.goto(&s.url("/cam/watch")).await.unwrap();
    let page = watch(&client, PAGE_SAMPLE).await;
    let lags: Vec<f64> = page.iter().map(|v| v["lag"].as_f64().unwrap()).collect();
    eprintln!("watch page: lag behind the newest frame {lags:.2?}");

    index_lists_the_channel(&client, &s).await;

    if let Some(source) = hls {
        // hls.js on a page of the server's origin (the index), playing ll.m3u8, then index.m3u8.
        let loaded = format!("{source}\n;window.Hls = Hls; return typeof Hls;");
        assert_eq!(sample(&client, &loaded).await, "function");
        for (playlist, low_latency) in [("ll.m3u8", true), ("index.m3u8", false)] {
            let start = format!(
                "const v = document.createElement('video');
                v.id = 'hls'; v.muted = true; v.autoplay = true; document.body.append(v);
                const hls = new Hls({{ lowLatencyMode: {low_latency}, maxLiveSyncPlaybackRate: 1.2 }});
                window.hls = hls; hls.loadSource('cam/{playlist}'); hls.attachMedia(v);
                v.play().catch(() => {{}}); return true;"
            );
            assert_eq!(sample(&client, &start).await, true);
            let played = watch(&client, HLS_SAMPLE).await;
            let behind: Vec<f64> = played.iter().filter_map(|v| v["behind"].as_f64()).collect();
            let latency: Vec<f64> = played
                .iter()
                .filter_map(|v| v["latency"].as_f64())
                .collect();
            eprintln!(
                "{playlist}: behind the publisher {behind:.2?}, hls.js latency {latency:.2?}"
            );
            assert!(!behind.is_empty(), "hls.js knows the program date-time");
            let stop =
                "window.hls.destroy(); document.getElementById('hls').remove(); return true;";
            assert_eq!(sample(&client, stop).await, true);
        }
    }

    if let Some(source) = dash {
        // dash.js on the same page, playing manifest.mpd.
        let loaded = format!("{source}\n;window.dashjs = dashjs; return typeof dashjs;");
        assert_eq!(sample(&client, &loaded).await, "object");
        let start = "const v = document.createElement('video');
            v.id = 'dash'; v.muted = true; document.body.append(v);
            const player = dashjs.MediaPlayer().create();
            window.dash = player; window.dashErrors = [];
            player.on('error', e => window.dashErrors.push(JSON.stringify(e.error || e)));
            player.initialize(v, 'cam/manifest.mpd', true);
            return true;";
        assert_eq!(sample(&client, start).await, true);
        let played = watch(&client, DASH_SAMPLE).await;
        let latency: Vec<f64> = played
            .iter()
            .filter_map(|v| v["latency"].as_f64())
            .collect();
        eprintln!("DASH: dash.js latency {latency:.2?}");
        let errors = |v: &Value| v["errors"].as_array().map_or(0, Vec::len);
        assert!(played.iter().all(|v| errors(v) == 0), "{played:?}");
    }

    client.close().await.unwrap();
    let _ = driver.kill().await;
    let _ = publisher.kill().await;
    s.stop().await;
}
