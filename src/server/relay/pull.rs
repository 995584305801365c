//! One relayed channel: finding an origin that has it, subscribing there like any Trickle client
//! (the GET for the next seq opened as soon as a segment starts, `470` jumped over, long waits
//! re-issued), and republishing each segment here under the same seq as its bytes arrive. An
//! upstream segment that breaks off fails the local one (its readers see the abnormal end); the
//! end of the upstream stream ends the local channel. After an origin fails, the channel is
//! looked for again every second while somebody reads it here: the same origin resumes from the
//! seq after the last one relayed, another (a cluster's publisher moved) from its segment being
//! written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Failure, Relays, Source, State};
use crate::client::{
    ClientError, ConnectOptions, OnGap, Segment, SubscribeStart, Subscriber, SubscriberOptions,
};
use crate::protocol::{SeqParam, encode_name};
use crate::server::Server;
use crate::server::channel::Channel;
use crate::server::write::{Claim, Writing};

/// How often a pull looks whether anybody still reads its channel.
const LINGER_CHECK: Duration = Duration::from_millis(500);
/// Pause before asking an origin that failed again.
const RECONNECT: Duration = Duration::from_secs(1);

/// Finds an origin with `name`, makes the local copy with the first segment, tells the waiting
/// readers, and pulls until the channel ends upstream or nobody reads it here.
/// `via`: what its requests upstream send as `Lp-Trickle-Via`.
pub(super) async fn start(
    server: Server,
    name: String,
    state: Arc<watch::Sender<State>>,
    via: String,
) {
    let relays = server.relays();
    let outcome = match find(relays, &name, &via).await {
        Ok((url, head)) => first_segment(&server, &name, url, (head, via)).await,
        Err(failure) => Err(failure),
    };
    let (mut pull, first) = match outcome {
        Ok(started) => started,
        Err(error) => {
            let at = Instant::now();
            state.send_replace(State::Failed { error, at });
            // Kept for a moment (the negative cache), then forgotten: a client asking for many
            // names no origin has must not leave an entry for each behind.
            tokio::time::sleep(super::NEGATIVE).await;
            relays.forget(&name, &state);
            return;
        }
    };
    let channel = pull.channel.clone();
    let (segment, under_way) = first;
    let pulling = State::Pulling(channel.clone(), pull.source.clone());
    if under_way {
        pull.relay(segment);
        state.send_replace(pulling);
    } else {
        // The readers waiting for the start look their seq up as soon as they wake (and then
        // let go of `state`): once they all did (a second at most), their `-1` waits for this
        // segment, as it would at the origin.
        state.send_replace(pulling);
        let _ = tokio::time::timeout(Duration::from_secs(1), state.closed()).await;
        pull.relay(segment);
    }
    tracing::info!(channel = %name, origin = %pull.url(), "relaying");
    pull.run().await;
    tracing::info!(channel = %name, "relay stopped");
    server.delete_channel_if(&name, |c| std::ptr::eq(c, &*channel));
    relays.forget(&name, &state);
}

/// The URL of `name` at the first origin that has it, and its write head there: the node the
/// cluster's registry names first, then the configured origins in order.
async fn find(relays: &Relays, name: &str, via: &str) -> Result<(String, u64), Failure> {
    let http = relays.client(via).map_err(Failure::Unavailable)?;
    let mut unavailable = None;
    #[allow(unused_mut)]
    let mut origins = relays.origins.clone();
    #[cfg(feature = "cluster")]
    if let Some(registry) = relays.registry() {
        use super::registry::Origin;
        match registry.lookup(name).await {
            Ok(Origin::At(url)) => origins.insert(0, format!("{url}/")),
            Ok(Origin::Nobody) => {}
            Err(err) => unavailable = Some(err.to_string()),
        }
    }
    for origin in &origins {
        let url = format!("{origin}{}", encode_name(name));
        match http.get(format!("{url}/next")).send().await {
            Ok(answer) if answer.status().is_success() => {
                let head = answer.text().await.ok().and_then(|t| t.trim().parse().ok());
                return Ok((url, head.unwrap_or(0)));
            }
            Ok(answer) if answer.status() == http::StatusCode::NOT_FOUND => {}
            Ok(answer) if answer.status() == http::StatusCode::LOOP_DETECTED => {
                return Err(Failure::Loop);
            }
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
    upstream: Subscriber,
    /// The last seq relayed (where a new subscription resumes).
    last: u64,
    /// Where it pulls from (the URL, what its requests send as `Lp-Trickle-Via`), shared with
    /// readers of older segments.
    source: Arc<Source>,
    /// The segment being copied, if any (aborted, and so failed, when the origin is lost).
    copying: Option<tokio::task::JoinHandle<()>>,
    /// The next segment comes from another origin than the last one: its seqs start over
    /// (written as a publisher that restarted, `Lp-Trickle-Reset`, so readers follow).
    restart: bool,
}

/// Subscribes at `url` from the segment being written, waits (up to the wait timeout) for its
/// first byte, then makes the local copy and starts that segment in it: readers are let in once
/// the copy is where the origin is. A segment already under way upstream when the origin was
/// asked (`head` is past it) is started first, so that a reader's `-1` waits for the one after
/// it; one that began later (the channel was idle), after the readers are in, so that their `-1`
/// (waiting there) gets it, as it would at the origin.
async fn first_segment(
    server: &Server,
    name: &str,
    url: String,
    (head, via): (u64, String),
) -> Result<(Pull, (Segment, bool)), Failure> {
    let mut upstream = subscribe(server, &url, SubscribeStart::Current, &via)?;
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
    let under_way = segment.seq < head;
    if !under_way {
        channel.begin_at(segment.seq);
    }
    let source = Arc::new(Source {
        url: Mutex::new(url),
        via,
        first: AtomicU64::new(segment.seq),
    });
    let pull = Pull {
        server: server.clone(),
        last: segment.seq,
        channel,
        upstream,
        source,
        copying: None,
        restart: false,
    };
    Ok((pull, (segment, under_way)))
}

/// A subscriber of `url` from `start`, through the relays' HTTP client for `via`.
fn subscribe(
    server: &Server,
    url: &str,
    start: SubscribeStart,
    via: &str,
) -> Result<Subscriber, Failure> {
    subscribe_with(server, url, (start, OnGap::Jump), via)
}

/// [`subscribe`], with what a `470` does.
pub(super) fn subscribe_with(
    server: &Server,
    url: &str,
    (start, on_gap): (SubscribeStart, OnGap),
    via: &str,
) -> Result<Subscriber, Failure> {
    let http = server.relays().client(via).map_err(Failure::Unavailable)?;
    let options = SubscriberOptions {
        start,
        on_gap,
        // A failing origin is given up on within a second: then it is looked for again (in a
        // cluster, the publisher may have moved to another node).
        retries: 2,
        retry_delay: Duration::from_millis(250),
        connect: ConnectOptions {
            http: Some(http),
            ..ConnectOptions::default()
        },
        ..SubscriberOptions::default()
    };
    Subscriber::new(url, options).map_err(|err| Failure::Unavailable(err.to_string()))
}

impl Pull {
    /// The channel's URL at the origin it pulls from now.
    fn url(&self) -> String {
        self.source.url.lock().clone()
    }

    /// Relays segment after segment until the channel ends upstream or here, or nobody has
    /// read it for the linger time.
    async fn run(mut self) {
        let linger = self.server.relays().linger;
        let mut check = tokio::time::interval(LINGER_CHECK);
        let mut checked = Instant::now();
        loop {
            // One wait for the next segment across the checks: a new one each time would start
            // its count of failed tries over, and a dead origin would be asked forever.
            let next = {
                let next = self.upstream.next_segment();
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        next = &mut next => break next,
                        _ = self.channel.closed() => return,
                        _ = check.tick() => {
                            if unread(&self.channel, linger) {
                                return;
                            }
                            let url = self.source.url.lock().clone();
                            if left(&self.server, &self.channel, &url, &mut checked).await {
                                break Err(ClientError::Io(std::io::Error::other("origin left")));
                            }
                        },
                    }
                }
            };
            match next {
                Ok(Some(segment)) => self.relay(segment),
                Ok(None) | Err(ClientError::StreamNotFound) => return,
                Err(err) => {
                    tracing::warn!(url = %self.url(), %err, "origin failed; looking again");
                    // What it was sending is lost with it.
                    if let Some(copying) = self.copying.take() {
                        copying.abort();
                    }
                    if !self.reconnect().await {
                        return;
                    }
                }
            }
        }
    }

    /// After the origin failed: finds the channel again every second (the same origin back, or
    /// in a cluster another node its publisher moved to), while somebody reads it here. Resumes
    /// at the same origin from the seq after the last one relayed, at another from its segment
    /// being written. False once nobody reads it or it is gone everywhere.
    async fn reconnect(&mut self) -> bool {
        let relays = self.server.relays();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT) => {}
                _ = self.channel.closed() => return false,
            }
            if unread(&self.channel, relays.linger) {
                return false;
            }
            let url = match find(relays, self.channel.name(), &self.source.via).await {
                Ok((url, _)) => url,
                Err(failure) => {
                    tracing::debug!(?failure, "still no origin");
                    continue;
                }
            };
            let same = url == self.url();
            let start = match same {
                true => SubscribeStart::Seq(self.last + 1),
                false => SubscribeStart::Current,
            };
            if let Ok(upstream) = subscribe(&self.server, &url, start, &self.source.via) {
                tracing::info!(%url, "relaying again");
                self.restart = !same;
                if self.restart {
                    // Another origin's older segments are not this copy's.
                    self.source.first.store(u64::MAX, Ordering::Relaxed);
                }
                *self.source.url.lock() = url;
                self.upstream = upstream;
                return true;
            }
        }
    }

    /// Starts the upstream's `segment` here under its seq (its first byte, or its empty end, is
    /// there: the upstream answers once it is) and copies it while the next one is awaited: a
    /// relay never holds up its readers behind one slow segment's end.
    fn relay(&mut self, segment: Segment) {
        self.last = segment.seq;
        let seq = SeqParam::Index(segment.seq);
        let restart = std::mem::take(&mut self.restart);
        if restart {
            self.source.first.store(segment.seq, Ordering::Relaxed);
        }
        let claim = Claim::new(&self.server, self.channel.clone(), seq, restart);
        match claim.and_then(Claim::start) {
            Ok(writing) => {
                let stall = self.server.config().wait_timeout;
                self.copying = Some(tokio::spawn(copy(writing, segment, stall)));
            }
            Err(err) => tracing::debug!(%err, seq = segment.seq, "not relayed"),
        }
    }
}

/// In a cluster, whether the registry stopped naming the origin at `url` for `channel` (its
/// registration lapsed: the node died or hung; or the publisher moved), looked up once per
/// refresh interval (`checked`: when last). Never for a configured origin, without a registry,
/// or with Redis unavailable.
async fn left(server: &Server, channel: &Channel, url: &str, checked: &mut Instant) -> bool {
    #[cfg(feature = "cluster")]
    if let Some(registry) = server.relays().registry()
        && checked.elapsed() >= registry.refresh_interval()
        && !server
            .relays()
            .origins
            .iter()
            .any(|o| url.starts_with(o.as_str()))
    {
        use super::registry::Origin;
        *checked = Instant::now();
        let name = channel.name();
        return match registry.lookup(name).await {
            Ok(Origin::At(origin)) => url != format!("{origin}/{}", encode_name(name)),
            Ok(Origin::Nobody) => true,
            Err(_) => false,
        };
    }
    let _ = (server, channel, url, checked);
    false
}

/// Whether nobody has read `channel` here for `linger`.
fn unread(channel: &Channel, linger: Duration) -> bool {
    let activity = channel.activity();
    activity.readers() == 0
        && activity.unread_for() >= linger
        && channel.remux_slot().lock().is_none()
}

/// Writes the upstream `segment` into its local copy as its bytes arrive: it ends as it ends
/// upstream, normally or abnormally. Nothing for `stall` (the wait timeout, after which the
/// origin itself fails a segment whose publisher sends nothing) fails it too: the origin hung.
pub(super) async fn copy(mut writing: Writing, mut segment: Segment, stall: Duration) {
    loop {
        let Ok(chunk) = tokio::time::timeout(stall, segment.chunk()).await else {
            return writing.fail();
        };
        match chunk {
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
