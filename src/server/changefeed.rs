//! The `_changes` channel: one JSON event per segment, `{"added":[name]}` or `{"removed":[name]}`.
//!
//! One listener of the server's [`Event`]s among others: a task that writes each channel event as
//! the next segment, in the order the events happened, through the same write path as every other
//! publisher. It hears them on a queue of its own, which keeps every event however far behind the
//! task is (the broadcast of [`super::Server::events`] drops the oldest for a listener that lags).

use std::sync::Weak;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::Event;
use super::write::Claim;
use super::{Inner, Server};

pub const NAME: &str = "_changes";

/// Writes `{"added":["_changes"]}` as seq 0, then every channel event as it comes, until the
/// server is gone or shut down. Holds only a weak reference between events.
pub(super) async fn run(
    inner: Weak<Inner>,
    mut events: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
) {
    let mut seq = 0;
    let first = Event::ChannelCreated {
        channel: NAME.into(),
    };
    let mut next = Some(first);
    loop {
        if let Some(event) = next.take() {
            let Some(inner) = inner.upgrade() else { return };
            if write(&Server { inner }, seq, &event) {
                seq += 1;
            }
        }
        let received = tokio::select! {
            received = events.recv() => received,
            _ = shutdown.cancelled() => return,
        };
        // `None`: the server is gone.
        let Some(event) = received else { return };
        next = Some(event);
    }
}

/// Writes one channel event as segment `seq` of `_changes`; whether it was written.
fn write(server: &Server, seq: u64, event: &Event) -> bool {
    let body = match event {
        Event::ChannelCreated { channel } => serde_json::json!({ "added": [&**channel] }),
        Event::ChannelRemoved { channel } => serde_json::json!({ "removed": [&**channel] }),
        _ => return false,
    };
    let Some(channel) = server.channel(NAME) else {
        return false;
    };
    let written = Claim::fresh(server, channel, seq)
        .and_then(Claim::start)
        .and_then(|mut writing| {
            writing.write(Bytes::from(body.to_string()))?;
            writing.finish()
        });
    if let Err(err) = &written {
        tracing::debug!(%err, "changefeed event dropped");
    }
    written.is_ok()
}
