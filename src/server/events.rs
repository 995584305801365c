//! What happens on a server, as a stream of [`Event`]s ([`super::Server::events`]): channels
//! created and removed, segments started, completed and failed, publishers coming and going,
//! live viewer counts.
//!
//! Events are sent after the lock that made them true is released, so whatever listens (the
//! `_changes` channel, later a Redis registry or a browser's event stream) runs outside the
//! server's locks and may take its time. Order still holds: an event is queued while its lock is
//! held and the queue is emptied into the broadcast in order, so a channel's creation is sent
//! before anything that happens in it. Its removal is sent as it is removed: a publisher the
//! removal cuts off reports its failed segment when it stops, just after, and the publisher's and
//! viewers' departures follow too (events of segments, publishers and viewers are theirs to send,
//! and they learn of the removal from the channel).

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};

/// Events a listener may fall behind by before it misses some (it is then told how many).
/// Segment events come at most a few per second per channel in real streams; a listener that is
/// 4,096 behind is stuck, not slow.
const CAPACITY: usize = 4096;

/// One thing that happened on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ChannelCreated {
        channel: Arc<str>,
    },
    /// Deleted over HTTP or in process, swept as idle (not sent when the server shuts down).
    ChannelRemoved {
        channel: Arc<str>,
    },
    /// A publisher's first byte of a segment arrived (or its empty body ended).
    SegmentStarted {
        channel: Arc<str>,
        seq: u64,
    },
    /// The segment is complete with `bytes` bytes.
    SegmentCompleted {
        channel: Arc<str>,
        seq: u64,
        bytes: u64,
    },
    /// The segment failed after `bytes` bytes: its publisher went away or was cut off, or the
    /// channel was deleted under it.
    SegmentFailed {
        channel: Arc<str>,
        seq: u64,
        bytes: u64,
    },
    /// A publisher came to a channel that had none: it claimed a seq (a preconnect) or started
    /// writing one.
    PublisherStarted {
        channel: Arc<str>,
    },
    /// The channel's last publisher left: no seq is claimed or being written. A publisher that
    /// does not preconnect its next segment stops and starts again between segments.
    PublisherStopped {
        channel: Arc<str>,
    },
    /// A live viewer came or went; `viewers` is how many watch the channel now.
    Viewers {
        channel: Arc<str>,
        viewers: usize,
    },
}

impl Event {
    /// The channel the event is about.
    pub fn channel(&self) -> &str {
        match self {
            Event::ChannelCreated { channel }
            | Event::ChannelRemoved { channel }
            | Event::SegmentStarted { channel, .. }
            | Event::SegmentCompleted { channel, .. }
            | Event::SegmentFailed { channel, .. }
            | Event::PublisherStarted { channel }
            | Event::PublisherStopped { channel }
            | Event::Viewers { channel, .. } => channel,
        }
    }

    /// A channel created or removed (what the `_changes` channel records).
    fn is_channel_event(&self) -> bool {
        matches!(
            self,
            Event::ChannelCreated { .. } | Event::ChannelRemoved { .. }
        )
    }
}

/// The server's event queue and broadcast.
pub(crate) struct Events {
    /// Events made true under some lock and not yet sent; the mutex also orders the sending.
    queue: Mutex<VecDeque<Event>>,
    sender: broadcast::Sender<Event>,
    /// The `_changes` writer's own queue of channel events. Not the broadcast: a broadcast drops
    /// the oldest events for a listener that has not run for [`CAPACITY`] of them (a burst of
    /// creations, a busy server), and the feed must record every one. Channel events are few
    /// (each is a creation or a deletion), so this queue needs no bound.
    feed: Option<mpsc::UnboundedSender<Event>>,
}

impl Events {
    /// The events of a server, and with `feed` the receiving end of the changefeed's queue.
    pub(crate) fn new(feed: bool) -> (Events, Option<mpsc::UnboundedReceiver<Event>>) {
        let (feed, receiver) = match feed {
            true => {
                let (sender, receiver) = mpsc::unbounded_channel();
                (Some(sender), Some(receiver))
            }
            false => (None, None),
        };
        let events = Events {
            queue: Mutex::new(VecDeque::new()),
            sender: broadcast::Sender::new(CAPACITY),
            feed,
        };
        (events, receiver)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Whether anybody listens to segment events (events nobody would read are not even made).
    pub(crate) fn wanted(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Whether anybody listens to channel events: the changefeed always does.
    pub(crate) fn channel_events_wanted(&self) -> bool {
        self.feed.is_some() || self.wanted()
    }

    /// Queues `event` while the lock that made it true is held; [`Events::flush`] sends it once
    /// that lock is released.
    pub(crate) fn queue(&self, event: Event) {
        self.queue.lock().push_back(event);
    }

    /// Sends every queued event, in order. Call with no lock of the server held.
    pub(crate) fn flush(&self) {
        let mut queue = self.queue.lock();
        while let Some(event) = queue.pop_front() {
            if let Some(feed) = &self.feed
                && event.is_channel_event()
            {
                // Fails only once the feed has stopped (server shut down).
                let _ = feed.send(event.clone());
            }
            // No listener is not an error: the event is simply not wanted.
            let _ = self.sender.send(event);
        }
    }

    /// [`Events::queue`] for an event only the broadcast's listeners take: made and queued only if
    /// anybody listens.
    pub(crate) fn queue_with(&self, make: impl FnOnce() -> Event) {
        if self.wanted() {
            self.queue(make());
        }
    }

    /// Sends the event `make` makes, if anybody listens; for an event that no lock made true (or
    /// whose lock is already released).
    pub(crate) fn send_with(&self, make: impl FnOnce() -> Event) {
        if self.wanted() {
            self.queue(make());
            self.flush();
        }
    }
}
