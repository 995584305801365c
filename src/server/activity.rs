//! Who is using a channel right now, and how much it has carried: the figures behind the channel
//! API (`GET /_channels`, `GET /_channels/{name}`, the `_events` stream; see [`super::api`]).
//!
//! Every figure is counted where it changes and only there: a request's gauges when it starts
//! and ends ([`super::StatGuard`]), bytes in per write, a publisher when its claim or segment
//! comes and goes ([`Publishing`]), a live viewer's figures by the viewer itself ([`Watching`]),
//! on its own cache line. Nothing here is touched per subscriber per chunk but a viewer's own
//! byte count. Reading them is the API's work, done when somebody asks.
//!
//! A publisher starting and stopping, and the viewer count changing, are also [`Event`]s. They
//! are queued under this file's small locks and sent after them, so a listener sees them in the
//! order they happened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;

use super::channel::Channel;
use super::events::Event;
use super::{Server, Stat, stats};

/// What a channel's clients are doing (one per channel).
pub(crate) struct Activity {
    created: SystemTime,
    born: Instant,
    /// When a reader last asked for the channel, in milliseconds after `born` (an edge lets a
    /// relayed channel go once nobody asked for a while).
    last_read_ms: AtomicU64,
    bytes_in: AtomicU64,
    /// The channel's share of the server's request gauges ([`Stat`]).
    gauges: [AtomicUsize; stats::STATS],
    /// Segments live viewers skipped because they were behind.
    skipped: AtomicU64,
    /// Publishers holding a seq or writing one: a publisher is connected while this is not 0.
    publishers: Mutex<usize>,
    viewers: Mutex<Viewers>,
}

#[derive(Default)]
struct Viewers {
    next_id: u64,
    /// By id, so that they list in the order they came.
    by_id: BTreeMap<u64, Arc<ViewerFigures>>,
}

/// One live viewer's figures, written by the viewer alone.
pub(crate) struct ViewerFigures {
    id: u64,
    since: SystemTime,
    bytes: AtomicU64,
    segments: AtomicU64,
    skipped: AtomicU64,
    /// The segment being sent, or [`NO_SEQ`] before the first one.
    seq: AtomicU64,
}

const NO_SEQ: u64 = u64::MAX;

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            created: SystemTime::now(),
            born: Instant::now(),
            last_read_ms: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            gauges: Default::default(),
            skipped: AtomicU64::new(0),
            publishers: Mutex::new(0),
            viewers: Mutex::default(),
        }
    }

    pub(crate) fn created(&self) -> SystemTime {
        self.created
    }

    /// A reader asked for the channel (any GET of it or of an output).
    pub(crate) fn read_now(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.last_read_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// How long since a reader last asked for the channel, or since it was made.
    #[cfg(feature = "client")]
    pub(crate) fn unread_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    /// Requests reading the channel now: GETs waiting or streaming, and live viewers.
    #[cfg(feature = "client")]
    pub(crate) fn readers(&self) -> usize {
        [Stat::WaitingGets, Stat::StreamingGets, Stat::LiveViewers]
            .iter()
            .map(|stat| self.gauge(*stat).load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    pub(crate) fn gauge(&self, stat: Stat) -> &AtomicUsize {
        &self.gauges[stat as usize]
    }

    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    pub(crate) fn publisher_connected(&self) -> bool {
        *self.publishers.lock() > 0
    }

    /// The live viewers' figures, oldest viewer first.
    pub(crate) fn viewers(&self) -> Vec<Arc<ViewerFigures>> {
        self.viewers.lock().by_id.values().cloned().collect()
    }
}

/// A publisher's presence on a channel, from its claim of a seq to the end of its segment (an
/// HTTP publisher that preconnects its next segment stays present between segments). The first
/// to come sends [`Event::PublisherStarted`], the last to leave [`Event::PublisherStopped`].
pub(crate) struct Publishing {
    server: Server,
    channel: Arc<Channel>,
}

impl Publishing {
    pub(crate) fn new(server: &Server, channel: Arc<Channel>) -> Publishing {
        let count = &channel.activity().publishers;
        let mut publishers = count.lock();
        *publishers += 1;
        if *publishers == 1 {
            server.inner.events.queue_with(|| Event::PublisherStarted {
                channel: channel.shared_name(),
            });
        }
        drop(publishers);
        server.inner.events.flush();
        Publishing {
            server: server.clone(),
            channel,
        }
    }

    pub(crate) fn server(&self) -> &Server {
        &self.server
    }

    pub(crate) fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        let mut publishers = self.channel.activity().publishers.lock();
        *publishers -= 1;
        if *publishers == 0 {
            self.server
                .inner
                .events
                .queue_with(|| Event::PublisherStopped {
                    channel: self.channel.shared_name(),
                });
        }
        drop(publishers);
        self.server.inner.events.flush();
    }
}

/// A live viewer on a channel's list for as long as it lives: its figures, updated as it goes,
/// and [`Event::Viewers`] when it comes and goes.
pub(crate) struct Watching {
    server: Server,
    channel: Arc<Channel>,
    figures: Arc<ViewerFigures>,
}

impl Watching {
    pub(crate) fn new(server: &Server, channel: Arc<Channel>) -> Watching {
        let mut viewers = channel.activity().viewers.lock();
        let id = viewers.next_id;
        viewers.next_id += 1;
        let figures = Arc::new(ViewerFigures {
            id,
            since: SystemTime::now(),
            bytes: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            seq: AtomicU64::new(NO_SEQ),
        });
        viewers.by_id.insert(id, figures.clone());
        queue_viewer_count(server, &channel, viewers.by_id.len());
        drop(viewers);
        server.inner.events.flush();
        Watching {
            server: server.clone(),
            channel,
            figures,
        }
    }

    pub(crate) fn sent_bytes(&self, n: u64) {
        self.figures.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Segment `seq` is being sent.
    pub(crate) fn sending(&self, seq: u64) {
        self.figures.seq.store(seq, Ordering::Relaxed);
    }

    /// A segment was sent (whole, or up to where it failed).
    pub(crate) fn sent_segment(&self) {
        self.figures.segments.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn skipped(&self, segments: u64) {
        self.figures.skipped.fetch_add(segments, Ordering::Relaxed);
        let activity = self.channel.activity();
        activity.skipped.fetch_add(segments, Ordering::Relaxed);
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut viewers = self.channel.activity().viewers.lock();
        viewers.by_id.remove(&self.figures.id);
        queue_viewer_count(&self.server, &self.channel, viewers.by_id.len());
        drop(viewers);
        self.server.inner.events.flush();
    }
}

fn queue_viewer_count(server: &Server, channel: &Channel, viewers: usize) {
    server.inner.events.queue_with(|| Event::Viewers {
        channel: channel.shared_name(),
        viewers,
    });
}

/// What [`ViewerFigures`] say, read now.
pub(crate) struct ViewerReading {
    pub(crate) id: u64,
    pub(crate) since: SystemTime,
    pub(crate) bytes: u64,
    pub(crate) segments: u64,
    pub(crate) skipped: u64,
    /// The segment being sent (`None` before the first).
    pub(crate) seq: Option<u64>,
}

impl ViewerFigures {
    pub(crate) fn read(&self) -> ViewerReading {
        let seq = self.seq.load(Ordering::Relaxed);
        ViewerReading {
            id: self.id,
            since: self.since,
            bytes: self.bytes.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            seq: (seq != NO_SEQ).then_some(seq),
        }
    }
}
