//! The reading side: a [`Reader`] over either subscriber client, and the loop that reads every
//! seq of a channel, checks its bytes and measures its latencies.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::payload::{Checker, Verdict};
use super::state::{ChannelRun, Clock, Totals};
use super::wire;
use crate::client::{ConnectOptions, OnGap, SubscribeStart, Subscriber, SubscriberOptions};

/// A subscriber of the run: the bench's own ([`wire`]) for `http://` servers, the library's for
/// `https://`.
pub(super) enum Reader {
    Wire(wire::WireSubscriber),
    Library {
        subscriber: Box<Subscriber>,
        segment: Option<crate::client::Segment>,
        chunk: bytes::Bytes,
    },
}

impl Reader {
    /// A reader of channel `url` from seq 0: on `target` (an `http://` server) the bench's own,
    /// else the library's.
    pub(super) fn new(
        target: Option<&Arc<wire::Target>>,
        url: &str,
        connect: &ConnectOptions,
    ) -> anyhow::Result<Reader> {
        Ok(match target {
            Some(target) => Reader::Wire(wire::WireSubscriber::new(target.clone(), 0)),
            None => {
                let options = SubscriberOptions {
                    start: SubscribeStart::Seq(0),
                    on_gap: OnGap::Jump,
                    connect: connect.clone(),
                    ..Default::default()
                };
                Reader::Library {
                    subscriber: Box::new(Subscriber::new(url, options)?),
                    segment: None,
                    chunk: Default::default(),
                }
            }
        })
    }

    /// The next segment's seq, `None` at the end of the stream.
    async fn next_segment(&mut self) -> anyhow::Result<Option<u64>> {
        match self {
            Reader::Wire(wire) => wire.next_segment().await,
            Reader::Library {
                subscriber,
                segment,
                ..
            } => {
                *segment = subscriber.next_segment().await?;
                Ok(segment.as_ref().map(|segment| segment.seq))
            }
        }
    }

    /// The next bytes of the current segment, `None` at its end.
    async fn chunk(&mut self) -> anyhow::Result<Option<&[u8]>> {
        match self {
            Reader::Wire(wire) => wire.chunk().await,
            Reader::Library { segment, chunk, .. } => {
                let Some(segment) = segment else {
                    return Ok(None);
                };
                match segment.chunk().await? {
                    Some(bytes) => {
                        *chunk = bytes;
                        Ok(Some(&chunk[..]))
                    }
                    None => Ok(None),
                }
            }
        }
    }
}

/// One subscriber: reads seqs 0..=last in order, checks every byte, measures every write.
pub(super) async fn subscribe(
    run: Arc<ChannelRun>,
    totals: Arc<Totals>,
    clock: Clock,
    mut reader: Reader,
) {
    let mut expected = 0;
    let mut latencies = Vec::new();
    while expected <= run.last {
        let Some(seq) = next_seq(&mut reader, &run, &totals, expected).await else {
            break;
        };
        let (checker, failed) =
            read_segment(&mut reader, &run, seq, &clock, &totals, &mut latencies).await;
        count_segment(&run, &totals, seq, &checker, failed, &latencies);
        latencies.clear();
        run.mark_done(seq..=seq);
        expected = seq + 1;
    }
    // Whatever this subscriber will not read, nobody should wait for.
    if expected <= run.last {
        totals
            .finished
            .fetch_add(run.last + 1 - expected.max(1), Ordering::Relaxed);
        run.mark_done(expected..=run.last);
    }
    // Connections stay open until everyone is done: closing thousands of them (and the server
    // noticing) while others still read the last segment would load the machine mid-measurement
    // (it made the last segment of `c10k` 0.3–0.6 s late for ~45% of the subscribers, with
    // either server, and so most of the p99).
    run.last_done.cancelled().await;
    drop(reader);
}

/// The seq of the reader's next segment, a jump over a gap counted; `None` (the error counted)
/// when this subscriber cannot go on.
async fn next_seq(
    reader: &mut Reader,
    run: &ChannelRun,
    totals: &Totals,
    expected: u64,
) -> Option<u64> {
    let seq = match reader.next_segment().await {
        Ok(Some(seq)) => seq,
        Ok(None) => {
            totals.error(format!("end of stream before seq {expected}"));
            return None;
        }
        Err(err) => {
            totals.error(format!("{err:#}"));
            return None;
        }
    };
    if seq < expected || seq > run.last {
        totals.error(format!("got seq {seq} while expecting {expected}"));
        return None;
    }
    if seq > expected {
        // A 470: the subscriber fell out of the ring and jumped to the live edge.
        totals.jumps.fetch_add(1, Ordering::Relaxed);
        totals.note(format!("470: jumped from seq {expected} to {seq}"));
        let skipped = (expected.max(1)..seq).count() as u64;
        totals.finished.fetch_add(skipped, Ordering::Relaxed);
        run.mark_done(expected..=seq - 1);
    }
    Some(seq)
}

/// Reads segment `seq` to its end, checking its bytes and noting each write's latency in
/// `latencies`; says whether the segment failed (ended abnormally).
async fn read_segment(
    reader: &mut Reader,
    run: &ChannelRun,
    seq: u64,
    clock: &Clock,
    totals: &Totals,
    latencies: &mut Vec<u64>,
) -> (Checker, bool) {
    let mut checker = Checker::new(run.layout, seq);
    loop {
        match reader.chunk().await {
            Ok(Some(bytes)) => {
                let now = clock.now_ns();
                checker.feed(bytes, |sent| latencies.push(now.saturating_sub(sent)));
                if seq > 0 {
                    totals
                        .delivered_bytes
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            }
            Ok(None) => return (checker, false),
            Err(_) => return (checker, true),
        }
    }
}

/// Counts segment `seq` as read (the warm-up seq 0 only for its errors): complete, with its
/// write latencies, corrupted, or short.
fn count_segment(
    run: &ChannelRun,
    totals: &Totals,
    seq: u64,
    checker: &Checker,
    failed: bool,
    latencies: &[u64],
) {
    let measured = seq > 0;
    if measured {
        totals.finished.fetch_add(1, Ordering::Relaxed);
    }
    match checker.verdict() {
        Verdict::Complete if !failed => {
            if measured {
                totals.complete.fetch_add(1, Ordering::Relaxed);
                totals.record_latencies(latencies);
            }
        }
        Verdict::Corrupt => {
            totals.corrupt.fetch_add(1, Ordering::Relaxed);
            totals.note(format!("seq {seq}: corrupted bytes"));
        }
        _ => {
            totals.short.fetch_add(1, Ordering::Relaxed);
            totals.note(format!(
                "seq {seq}: ended after {} of {} bytes",
                checker.received(),
                run.layout.segment_bytes
            ));
        }
    }
}
