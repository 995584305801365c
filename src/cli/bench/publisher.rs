//! The publishing side: one publisher per channel, writing the warm-up seq and then the measured
//! ones, paced by `--rate` and held back by `--max-lag`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;

use super::args::Settings;
use super::payload::Layout;
use super::state::{ChannelRun, Clock, Totals, Window};
use crate::client::{ClientError, Publisher};

/// The publisher of one channel: the warm-up seq 0, then seqs 1..=last, paced by `--rate` and held
/// back by `--max-lag`. Returns the publisher to close the channel with once the subscribers are
/// done, or `None` if it failed (the channel is then closed at once, so subscribers end too).
pub(super) async fn publish(
    mut publisher: Publisher,
    run: Arc<ChannelRun>,
    totals: Arc<Totals>,
    clock: Clock,
    settings: Settings,
    barrier: Arc<Barrier>,
    window: Arc<Window>,
) -> Option<Publisher> {
    let warm_up = write_segment(&mut publisher, run.layout, &totals, clock, 0, false, None).await;
    if warm_up.is_ok() {
        run.wait_done(0).await;
    }
    // Every channel starts its measured segments together.
    barrier.wait().await;
    let mut result = warm_up;
    if result.is_ok() {
        let start = Instant::now();
        window.begin(start);
        let mut pacer = Pacer::new(settings.rate);
        for seq in 1..=run.last {
            if let Some(lag) = settings.max_lag
                && seq > lag
            {
                run.wait_done(seq - lag).await;
            }
            let pacer = Some(&mut pacer);
            result =
                write_segment(&mut publisher, run.layout, &totals, clock, seq, true, pacer).await;
            if result.is_err() {
                break;
            }
        }
    }
    match result {
        Ok(()) => Some(publisher),
        Err(err) => {
            totals.error(format!("publisher of {}: {err}", run.url));
            let _ = publisher.close().await;
            None
        }
    }
}

/// Writes segment `seq` in the layout's writes, each stamped as it goes, paced if `pacer` is
/// given; its bytes are counted as published if it is `measured`.
pub(super) async fn write_segment(
    publisher: &mut Publisher,
    layout: Layout,
    totals: &Totals,
    clock: Clock,
    seq: u64,
    measured: bool,
    mut pacer: Option<&mut Pacer>,
) -> Result<(), ClientError> {
    let mut segment = publisher.next_segment();
    for k in 0..layout.writes() {
        let len = layout.write_len(k);
        if let Some(pacer) = pacer.as_deref_mut() {
            pacer.wait(len).await;
        }
        segment
            .write(layout.build_write(seq, k, clock.now_ns()))
            .await?;
        if measured {
            totals.published_bytes.fetch_add(len, Ordering::Relaxed);
        }
    }
    segment.finish().await.map(|_| ())
}

/// Holds a stream of bytes to `rate` bytes per second (0 = no limit) from its start on: the
/// publisher's writes, and a slow viewer's reads.
pub(super) struct Pacer {
    start: Instant,
    rate: u64,
    sent: u64,
}

impl Pacer {
    pub(super) fn new(rate: u64) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate,
            sent: 0,
        }
    }

    /// Waits until the next `len` bytes may go, and counts them (a writer, before writing).
    pub(super) async fn wait(&mut self, len: u64) {
        self.sleep().await;
        self.sent += len;
    }

    /// Counts `len` bytes taken and waits until they were due (a reader, after reading, as
    /// through a link of `rate`). Unlike a writer's, a link's time does not save up: after
    /// waiting for bytes, it goes on at its rate from now rather than catching up.
    pub(super) async fn took(&mut self, len: u64) {
        let now = Instant::now();
        if self.due() < now {
            self.start = now;
            self.sent = 0;
        }
        self.sent += len;
        self.sleep().await;
    }

    /// When the bytes counted so far are due.
    fn due(&self) -> Instant {
        match self.rate {
            0 => self.start,
            rate => self.start + Duration::from_secs_f64(self.sent as f64 / rate as f64),
        }
    }

    async fn sleep(&self) {
        if self.rate > 0 {
            tokio::time::sleep_until(self.due().into()).await;
        }
    }
}
