//! Soak: `trickle serve` as a real process under 20 channels, each with one publisher and 20
//! subscribers that disconnect at random (between segments and in the middle of one) and rejoin.
//! Every segment received whole is checked byte by byte against what was published, so a
//! corrupted or silently truncated segment fails the run; the only errors allowed are 470 jumps
//! of a subscriber that rejoined behind the ring. The server's RSS is sampled every second and
//! must show no upward trend, and when everybody has left the request gauges return to zero.
//!
//! It runs for `TRICKLE_SOAK_SECS` seconds: 120 when `CI` is set (as `.ci/run` does), 15
//! otherwise. `scripts/soak.sh 1800` runs the 30-minute soak of RELIABILITY.md.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::spawn_serve_with_log;
use trickle::client::{
    ClientError, PublishStart, Publisher, PublisherOptions, SubscribeStart, Subscriber,
    SubscriberOptions,
};

const CHANNELS: usize = 20;
const SUBSCRIBERS: usize = 20;
const SEGMENT_EVERY: Duration = Duration::from_millis(200);
const MAX_SEGMENT: usize = 32 * 1024;

/// A small deterministic generator, so runs are reproducible from their seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Byte `i` of segment `seq` of channel `ch`; the first 8 bytes are the segment's length.
fn expected_byte(ch: usize, seq: u64, len: u64, i: u64) -> u8 {
    if i < 8 {
        return len.to_le_bytes()[i as usize];
    }
    (seq.wrapping_mul(31)
        .wrapping_add(ch as u64 * 7)
        .wrapping_add(i)
        % 251) as u8
}

fn segment_bytes(ch: usize, seq: u64, len: u64) -> Vec<u8> {
    (0..len).map(|i| expected_byte(ch, seq, len, i)).collect()
}

#[derive(Default)]
struct Totals {
    published: AtomicU64,
    verified: AtomicU64,
    abandoned: AtomicU64,
    jumps: AtomicU64,
    errors: AtomicU64,
}

impl Totals {
    fn error(&self, what: String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 10 {
            eprintln!("soak error: {what}");
        }
    }
}

fn soak_duration() -> Duration {
    let default = if std::env::var("CI").is_ok() { 120 } else { 15 };
    let secs = std::env::var("TRICKLE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

async fn publish(ch: usize, url: String, stop: Arc<AtomicBool>, totals: Arc<Totals>) {
    let mut publisher = Publisher::new(
        &url,
        PublisherOptions {
            start: PublishStart::Seq(0),
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ ch as u64);
    let mut seq = 0;
    let mut tick = tokio::time::interval(SEGMENT_EVERY);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let len = 8 + rng.below(MAX_SEGMENT as u64);
        let bytes = segment_bytes(ch, seq, len);
        let mut writer = publisher.next_segment();
        // A few writes per segment, so subscribers see segments grow.
        for part in bytes.chunks(1 + rng.below(8192) as usize) {
            if let Err(err) = writer.write(part.to_vec()).await {
                totals.error(format!("channel {ch} seq {seq}: publishing: {err}"));
                return;
            }
        }
        if let Err(err) = writer.finish().await {
            totals.error(format!("channel {ch} seq {seq}: finishing: {err}"));
            return;
        }
        totals.published.fetch_add(1, Ordering::Relaxed);
        seq += 1;
    }
}

/// Joins, reads for a while, leaves (sometimes mid-segment), rejoins, until told to stop.
async fn subscribe(ch: usize, id: u64, url: String, stop: Arc<AtomicBool>, totals: Arc<Totals>) {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03 ^ (ch as u64) << 32 ^ id);
    while !stop.load(Ordering::Relaxed) {
        let start = if rng.below(2) == 0 {
            SubscribeStart::Next
        } else {
            SubscribeStart::Current
        };
        let mut subscriber = match Subscriber::new(
            &url,
            SubscriberOptions {
                start,
                ..Default::default()
            },
        ) {
            Ok(s) => s,
            Err(err) => return totals.error(format!("subscriber: {err}")),
        };
        let stay = Instant::now() + Duration::from_millis(500 + rng.below(4500));
        while Instant::now() < stay && !stop.load(Ordering::Relaxed) {
            let mut segment = match subscriber.next_segment().await {
                Ok(Some(segment)) => segment,
                Ok(None) => return totals.error(format!("channel {ch}: end of stream")),
                Err(err) => return totals.error(format!("channel {ch}: {err}")),
            };
            if segment.jumped_from.is_some() {
                totals.jumps.fetch_add(1, Ordering::Relaxed);
            }
            let seq = segment.seq;
            // One time in eight, leave in the middle of the segment.
            let leave_after = (rng.below(8) == 0).then(|| rng.below(MAX_SEGMENT as u64));
            let mut offset = 0u64;
            let mut len = None;
            let mut header = [0u8; 8];
            let outcome = loop {
                if leave_after.is_some_and(|n| offset >= n) {
                    break "abandoned";
                }
                match segment.chunk().await {
                    Ok(Some(bytes)) => {
                        let mut bad = false;
                        for &b in bytes.iter() {
                            if offset < 8 {
                                header[offset as usize] = b;
                                if offset == 7 {
                                    len = Some(u64::from_le_bytes(header));
                                }
                            } else if len.is_none_or(|l| {
                                offset >= l || b != expected_byte(ch, seq, l, offset)
                            }) {
                                bad = true;
                                break;
                            }
                            offset += 1;
                        }
                        if bad || len.is_some_and(|l| l > 8 + MAX_SEGMENT as u64) {
                            break "corrupt";
                        }
                    }
                    Ok(None) => {
                        break if Some(offset) == len {
                            "whole"
                        } else {
                            "truncated"
                        };
                    }
                    Err(ClientError::SegmentFailed { .. }) => break "failed",
                    Err(_) => break "error",
                }
            };
            match outcome {
                "whole" => {
                    totals.verified.fetch_add(1, Ordering::Relaxed);
                }
                "abandoned" => {
                    totals.abandoned.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                other => {
                    totals.error(format!("channel {ch} seq {seq}: {other} at byte {offset}"));
                    return;
                }
            }
        }
        drop(subscriber);
        tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let duration = soak_duration();
    let (server, addr, log) = spawn_serve_with_log(
        &["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let pid = server.id().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals::default());
    let mut publishers = Vec::new();
    let mut subscribers = Vec::new();
    for ch in 0..CHANNELS {
        let url = format!("http://{addr}/soak-{ch}");
        Publisher::new(&url, PublisherOptions::default())
            .unwrap()
            .create()
            .await
            .unwrap();
        publishers.push(tokio::spawn(publish(
            ch,
            url.clone(),
            stop.clone(),
            totals.clone(),
        )));
        for id in 0..SUBSCRIBERS as u64 {
            subscribers.push(tokio::spawn(subscribe(
                ch,
                id,
                url.clone(),
                stop.clone(),
                totals.clone(),
            )));
        }
    }
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(common::rss_of(pid));
    }
    // Publishers finish their segment; subscribers simply go away (one of them may be waiting
    // for a segment that will not come).
    stop.store(true, Ordering::Relaxed);
    for task in publishers {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a publisher stops")
            .unwrap();
    }
    for task in &subscribers {
        task.abort();
    }
    for task in subscribers {
        let _ = task.await;
    }

    // Everybody has left: the request gauges return to zero.
    let metrics_addr = common::metrics_addr(&log);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut raw = common::Raw::connect(metrics_addr).await;
        raw.send_request("GET", "/metrics", &[], Some(b"")).await;
        let head = raw.head().await;
        let text = String::from_utf8(raw.body_to_end(&head).await.unwrap()).unwrap();
        let busy: Vec<&str> = text
            .lines()
            .filter(|l| {
                ["trickle_gets_", "trickle_posts_"]
                    .iter()
                    .any(|p| l.starts_with(p))
                    && !l.ends_with(" 0")
            })
            .collect();
        if busy.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gauges never returned to zero: {busy:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let t = &totals;
    let (published, verified) = (
        t.published.load(Ordering::Relaxed),
        t.verified.load(Ordering::Relaxed),
    );
    let q = rss.len() / 4;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let early = rss[q..2 * q].iter().copied().max().unwrap_or(0);
    let late = rss[3 * q..].iter().copied().max().unwrap_or(0);
    println!(
        "soak {:?}: {published} segments published, {verified} verified whole, {} left mid-way, \
         {} jumps (470), {} errors; RSS max {:.1} MiB in the 2nd quarter, {:.1} MiB in the last",
        duration,
        t.abandoned.load(Ordering::Relaxed),
        t.jumps.load(Ordering::Relaxed),
        t.errors.load(Ordering::Relaxed),
        mib(early),
        mib(late),
    );
    assert_eq!(t.errors.load(Ordering::Relaxed), 0, "errors in the soak");
    // At least one segment a second per channel (5 are tried), every one checked by many.
    let expected_segments = CHANNELS as u64 * duration.as_secs();
    assert!(
        published >= expected_segments,
        "only {published} segments published"
    );
    assert!(
        verified >= published * 3,
        "only {verified} segments verified"
    );
    assert!(
        late <= early + early / 4 + 8 * 1024 * 1024,
        "RSS grew: {:.1} MiB -> {:.1} MiB",
        mib(early),
        mib(late)
    );
}
