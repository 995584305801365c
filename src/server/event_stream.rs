//! `GET /_events`: what changes on the server, for browsers, as Server-Sent Events. With
//! `--auth-secret` it needs an admin token.
//!
//! The stream opens with `channels`, every channel's figures (as `GET /_channels`), then says
//! what changes: `channel_added` (the channel's figures), `channel_removed`, `publisher_started`,
//! `publisher_stopped` (`{"name"}`) and `viewers` (`{"name","viewers"}`). A page keeps an
//! up-to-date list from these alone: the stream subscribes to the server's events before it takes
//! the first list, so nothing falls between the two. Viewer counts are sent at most every
//! [`VIEWERS_EVERY`] per channel, the latest count only: a thousand viewers arriving at once are
//! one event, not a thousand. A stream that falls behind the server's events (it missed some) is
//! sent a fresh `channels` list instead, which replaces everything the page knew, and only the
//! events that come after it (those not sent yet are older than the list, and dropped). A comment
//! every [`KEEPALIVE`] keeps proxies from closing a quiet stream. The stream ends when the server
//! shuts down.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio::time::Instant;

use super::Server;
use super::api::ChannelInfo;
use super::events::Event;

/// How often a stream may send a channel's viewer count.
const VIEWERS_EVERY: Duration = Duration::from_millis(250);
/// How long a stream stays silent before it sends a comment.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// `GET /_events` (a HEAD's body is dropped unread by [`super::http::head_without_body`]).
pub(super) fn events(server: &Server) -> Response {
    let listener = Listener {
        server: server.clone(),
        receiver: server.events(),
        list_due: true,
        viewers: BTreeMap::new(),
        viewers_due: None,
    };
    axum::response::sse::Sse::new(listener.into_stream())
        .keep_alive(KeepAlive::new().interval(KEEPALIVE))
        .into_response()
}

/// One `/_events` stream's state.
struct Listener {
    server: Server,
    receiver: Receiver<Event>,
    /// A `channels` list is to be sent next (at the start, and after missed events).
    list_due: bool,
    /// Viewer counts not sent yet, the latest per channel.
    viewers: BTreeMap<Arc<str>, usize>,
    /// When the held viewer counts go out.
    viewers_due: Option<Instant>,
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Viewers<'a> {
    name: &'a str,
    viewers: usize,
}

impl Listener {
    fn into_stream(self) -> impl Stream<Item = Result<Sse, Infallible>> + Send + 'static {
        futures_util::stream::unfold(self, |mut listener| async move {
            let event = listener.next().await?;
            Some((Ok(event), listener))
        })
    }

    /// The next event to send; `None` once the server shuts down.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if std::mem::take(&mut self.list_due) {
                return Some(sse("channels", &self.server.channels_info()));
            }
            let due = self.viewers_due;
            let received = tokio::select! {
                _ = self.server.shut_down() => return None,
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    match self.send_viewers() {
                        Some(event) => return Some(event),
                        None => continue,
                    }
                }
                received = self.receiver.recv() => received,
            };
            match received {
                Ok(event) => {
                    if let Some(event) = self.translate(event) {
                        return Some(event);
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // The events still queued for this stream are older than the list sent next:
                    // sent after it, they would undo what it says (a channel removed since shows
                    // up again). It listens from now on instead, as a new stream does.
                    self.receiver = self.receiver.resubscribe();
                    self.list_due = true;
                    self.viewers.clear();
                    self.viewers_due = None;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The SSE event for a server event, if it is one sent now.
    fn translate(&mut self, event: Event) -> Option<Sse> {
        match event {
            Event::ChannelCreated { channel } => Some(match self.server.channel(&channel) {
                Some(found) => sse("channel_added", &ChannelInfo::of(&found, false)),
                // Removed already: its removal follows.
                None => sse("channel_added", &Name { name: &channel }),
            }),
            Event::ChannelRemoved { channel } => {
                self.viewers.remove(&channel);
                Some(sse("channel_removed", &Name { name: &channel }))
            }
            Event::PublisherStarted { channel } => {
                Some(sse("publisher_started", &Name { name: &channel }))
            }
            Event::PublisherStopped { channel } => {
                Some(sse("publisher_stopped", &Name { name: &channel }))
            }
            // A count that comes after its channel's removal (its viewers leaving) is not sent.
            Event::Viewers { channel, .. } if self.server.channel(&channel).is_none() => None,
            Event::Viewers { channel, viewers } => {
                self.viewers.insert(channel, viewers);
                self.viewers_due
                    .get_or_insert_with(|| Instant::now() + VIEWERS_EVERY);
                None
            }
            Event::SegmentStarted { .. }
            | Event::SegmentCompleted { .. }
            | Event::SegmentFailed { .. } => None,
        }
    }

    /// One held viewer count (none if its channel's removal took it); the next goes out at once,
    /// the stream's pace allowing.
    fn send_viewers(&mut self) -> Option<Sse> {
        let held = self.viewers.pop_first();
        if self.viewers.is_empty() {
            self.viewers_due = None;
        }
        let (channel, viewers) = held?;
        Some(sse(
            "viewers",
            &Viewers {
                name: &channel,
                viewers,
            },
        ))
    }
}

fn sse(name: &str, data: &impl Serialize) -> Sse {
    let data = serde_json::to_string(data).expect("plain data serializes");
    Sse::default().event(name).data(data)
}
