//! One relayed channel: finding an origin that has it, subscribing there like any Trickle client
//! (the GET for the next seq opened as soon as a segment starts, `470` jumped over, long waits
//! re-issued), and republishing each segment here under the same seq as its bytes arrive. An
//! upstream segment that breaks off fails the local one (its readers see the abnormal end); the
//! end of the upstream stream ends the local channel. An origin that stops answering is asked
//! again from the seq after the last one relayed, every second, while somebody reads here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Failure, Relays, State};
use crate::client::{
    ClientError, ConnectOptions, Segment, SubscribeStart, Subscriber, SubscriberOptions,
};
use crate::protocol::{Error, SeqParam, encode_name};
use crate::server::Server;
use crate::server::channel::Channel;
use crate::server::write::{Claim, Writing};

/// How often a pull looks whether anybody still reads its channel.
const LINGER_CHECK: Duration = Duration::from_millis(500);
/// Pause before asking an origin that failed again.
const RECONNECT: Duration = Duration::from_secs(1);

/// Finds an origin with `name`, makes the local copy with the first segment, tells the waiting
/// readers, and pulls until the channel ends upstream or nobody reads it here.
pub(super) async fn start(server: Server, name: String, state: Arc<watch::Sender<State>>) {
    let relays = server.relays();
    let outcome = match find(relays, &name).await {
        Ok(url) => first_segment(&server, &name, url).await,
        Err(failure) => Err(failure),
    };
    match outcome {
        Ok((channel, pull)) => {
            state.send_replace(State::Pulling(channel.clone()));
            tracing::info!(channel = %name, origin = %pull.url, "relaying");
            pull.run().await;
            tracing::info!(channel = %name, "relay stopped");
            server.delete_channel_if(&name, |c| std::ptr::eq(c, &*channel));
        }
        Err(error) => {
            let at = Instant::now();
            state.send_replace(State::Failed { error, at });
            // Kept for a moment (the negative cache) then forgotten by the next reader.
            return;
        }
    }
    relays.forget(&name, &state);
}

/// The URL of `name` at the first origin that has it.
async fn find(relays: &Relays, name: &str) -> Result<String, Failure> {
    let Some(http) = &relays.http else {
        return Err(Failure::Unavailable("no HTTP client".into()));
    };
    let mut unavailable = None;
    for origin in &relays.origins {
        let url = format!("{origin}{}", encode_name(name));
        match http.get(format!("{url}/next")).send().await {
            Ok(answer) if answer.status().is_success() => return Ok(url),
            Ok(answer) if answer.status() == http::StatusCode::NOT_FOUND => {}
            Ok(answer) => unavailable = Some(format!("{origin} answered {}", answer.status())),
            Err(err) => unavailable = Some(format!("{origin}: {err}")),
        }
    }
    Err(unavailable.map_or(Failure::NotFound, Failure::Unavailable))
}

/// A pull under way.
pub(super) struct Pull {
    server: Server,
    channel: Arc<Channel>,
    url: String,
    upstream: Subscriber,
    /// The last seq relayed (where a new subscription resumes).
    last: u64,
}

/// Subscribes at `url` from the segment being written, waits (up to the wait timeout) for its
/// first byte, then makes the local copy and starts that segment in it: readers are told of the
/// channel only once it holds what the origin's readers would find.
async fn first_segment(
    server: &Server,
    name: &str,
    url: String,
) -> Result<(Arc<Channel>, Pull), Failure> {
    let mut upstream = subscribe(server, &url, SubscribeStart::Current)?;
    let wait = server.config().wait_timeout;
    let segment = match tokio::time::timeout(wait, upstream.next_segment()).await {
        Err(_) => return Err(Failure::Timeout),
        Ok(Ok(Some(segment))) => segment,
        Ok(Ok(None) | Err(ClientError::StreamNotFound)) => return Err(Failure::NotFound),
        Ok(Err(err)) => return Err(Failure::Unavailable(err.to_string())),
    };
    let mime = segment.content_type.clone().unwrap_or_default();
    // A publisher here took the name meanwhile: it is not ours to relay into.
    let (channel, made) = server
        .get_or_create(name, &mime)
        .map_err(|err| Failure::Unavailable(err.to_string()))?;
    if !made {
        return Err(Failure::Unavailable("the channel is published here".into()));
    }
    let pull = Pull {
        server: server.clone(),
        last: segment.seq,
        channel: channel.clone(),
        url,
        upstream,
    };
    // Started before readers are let in: the write head is already past it.
    if let Ok(writing) = pull.start_segment(segment.seq) {
        tokio::spawn(copy(writing, segment));
    }
    Ok((channel, pull))
}

/// A subscriber of `url` from `start`, through the relays' HTTP client.
fn subscribe(server: &Server, url: &str, start: SubscribeStart) -> Result<Subscriber, Failure> {
    let options = SubscriberOptions {
        start,
        connect: ConnectOptions {
            http: server.relays().http.clone(),
            ..ConnectOptions::default()
        },
        ..SubscriberOptions::default()
    };
    Subscriber::new(url, options).map_err(|err| Failure::Unavailable(err.to_string()))
}

impl Pull {
    /// Relays segment after segment until the channel ends upstream or here, or nobody has
    /// read it for the linger time.
    async fn run(mut self) {
        let linger = self.server.relays().linger;
        let mut check = tokio::time::interval(LINGER_CHECK);
        loop {
            let next = tokio::select! {
                next = self.upstream.next_segment() => next,
                _ = self.channel.closed() => return,
                _ = check.tick() => {
                    let activity = self.channel.activity();
                    if activity.readers() == 0
                        && activity.unread_for() >= linger
                        && self.channel.remux_slot().lock().is_none()
                    {
                        return;
                    }
                    continue;
                }
            };
            match next {
                Ok(Some(segment)) => {
                    self.last = segment.seq;
                    // Copied while the next segment is awaited: a relay never holds up its
                    // readers behind one slow segment's end.
                    if let Ok(writing) = self.start_segment(segment.seq) {
                        tokio::spawn(copy(writing, segment));
                    }
                }
                Ok(None) | Err(ClientError::StreamNotFound) => return,
                Err(err) => {
                    tracing::warn!(url = %self.url, %err, "origin failed; asking again");
                    tokio::time::sleep(RECONNECT).await;
                    let resume = SubscribeStart::Seq(self.last + 1);
                    match subscribe(&self.server, &self.url, resume) {
                        Ok(upstream) => self.upstream = upstream,
                        Err(_) => return,
                    }
                }
            }
        }
    }

    /// Starts the local seq `seq` for the upstream's segment (its first byte, or its empty end,
    /// is there: the upstream answers once it is).
    fn start_segment(&self, seq: u64) -> Result<Writing, Error> {
        Claim::new(
            &self.server,
            self.channel.clone(),
            SeqParam::Index(seq),
            false,
        )?
        .start()
    }
}

/// Writes the upstream `segment` into its local copy as its bytes arrive: it ends as it ends
/// upstream, normally or abnormally.
async fn copy(mut writing: Writing, mut segment: Segment) {
    loop {
        match segment.chunk().await {
            Ok(Some(bytes)) => {
                if writing.write(bytes).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = writing.finish();
                return;
            }
            Err(_) => return writing.fail(),
        }
    }
}
