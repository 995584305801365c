//! Edges: a server started with `--origin URL` serves channels it does not hold by relaying them
//! from an origin. The first read of such a channel (a GET of a segment, `/next`, any output)
//! starts one [`pull`] of it, however many readers arrive at once: they all wait for the same
//! start. The pull subscribes upstream like any Trickle client and republishes every segment here
//! under the upstream's seq, byte by byte as it arrives, through the one write path; local readers
//! are ordinary readers of that local copy. Once nobody has read the channel for `--relay-linger`,
//! the pull stops and the copy is deleted.
//!
//! A start asks each origin in order for the channel's write head (`GET /{name}/next`): the first
//! that has it is pulled from. Every origin answering `404` is a `404` here; one that could not be
//! asked is `503` with `Retry-After` (clients take `404` as final), remembered for a second so a
//! crowd of readers does not each knock on a dead origin.

mod backfill;
mod pull;
#[cfg(feature = "cluster")]
pub(crate) mod registry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::channel::Channel;
use super::{Config, Server, Stat};
use crate::client::{ConnectOptions, new_http_client};
use crate::protocol::{self, Error};

/// How long a failed start is remembered: readers arriving meanwhile get its answer.
const NEGATIVE: Duration = Duration::from_secs(1);
/// Relays a request may have gone through before this one relays it again: more is taken for a
/// loop too (the ids of servers restarted in a loop differ).
const MAX_HOPS: usize = 4;

tokio::task_local! {
    /// The relays the request being served went through (`Lp-Trickle-Via`), if it came from one.
    pub(crate) static VIA: Arc<str>;
}

/// Where the relaying of one channel stands.
#[derive(Clone)]
enum State {
    Starting,
    /// The local copy, being pulled into, and where from.
    Pulling(Arc<Channel>, Arc<Source>),
    /// The start failed (at `at`): every reader until [`NEGATIVE`] after gets this.
    Failed {
        error: Failure,
        at: Instant,
    },
}

/// Where a relay pulls from: what a reader's request for an older segment than the copy holds
/// asks ([`Relays::backfill`]).
pub(crate) struct Source {
    /// The channel's URL upstream (it changes when the relay moves to another origin).
    url: Mutex<String>,
    /// What requests upstream send as `Lp-Trickle-Via`.
    via: String,
    /// The first seq relayed from this origin: older ones are not in the copy.
    first: std::sync::atomic::AtomicU64,
}

/// Why a start failed, as readers are told.
#[derive(Clone, Debug)]
enum Failure {
    NotFound,
    Unavailable(String),
    Timeout,
    /// The origins lead back here (`508` upstream, or this server already on the way).
    Loop,
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Error {
        match failure {
            Failure::NotFound => Error::StreamNotFound,
            Failure::Unavailable(why) => Error::Unavailable(why),
            Failure::Timeout => Error::Timeout,
            Failure::Loop => loop_detected(),
        }
    }
}

/// The channels this server relays, and how it reaches its origins.
pub(crate) struct Relays {
    origins: Vec<String>,
    linger: Duration,
    /// How requests upstream are made (the credential), and a client per `Lp-Trickle-Via` sent.
    connect: ConnectOptions,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    /// This server's instance id in `Lp-Trickle-Via`: random, so that no two are alike.
    me: String,
    /// Where a cluster's origins are found (`--registry`).
    #[cfg(feature = "cluster")]
    registry: Option<registry::Registry>,
    relayed: Mutex<HashMap<String, Arc<watch::Sender<State>>>>,
}

impl Relays {
    /// As `config` says: its origins, linger, credential and registry.
    pub(crate) fn new(config: &Config) -> Relays {
        let mut connect = ConnectOptions::default();
        let credential = config.relay_credential.as_ref();
        if let Some(value) = credential.and_then(|c| http::HeaderValue::from_str(&c.0).ok()) {
            connect.headers.insert(http::header::AUTHORIZATION, value);
        }
        Relays {
            origins: config
                .origins
                .iter()
                .map(|o| format!("{}/", o.trim_end_matches('/')))
                .collect(),
            linger: config.relay_linger,
            connect,
            clients: Mutex::new(HashMap::new()),
            me: instance_id(),
            #[cfg(feature = "cluster")]
            registry: registry::from_config(config),
            relayed: Mutex::new(HashMap::new()),
        }
    }

    /// The HTTP client for requests upstream that send `via` (one per value, kept: building one
    /// loads the TLS roots; a few, as there are few paths). An error if it cannot be built.
    fn client(&self, via: &str) -> Result<reqwest::Client, String> {
        if let Some(client) = self.clients.lock().get(via) {
            return Ok(client.clone());
        }
        let mut connect = self.connect.clone();
        let value = http::HeaderValue::from_str(via).map_err(|err| err.to_string())?;
        connect.headers.insert(protocol::VIA, value);
        let client = new_http_client(&connect).map_err(|err| err.to_string())?;
        let mut clients = self.clients.lock();
        if clients.len() >= 16 {
            clients.clear();
        }
        clients.insert(via.to_string(), client.clone());
        Ok(client)
    }

    /// The cluster's registry, if this node is in one.
    #[cfg(feature = "cluster")]
    pub(crate) fn registry(&self) -> Option<&registry::Registry> {
        self.registry.as_ref()
    }

    /// Whether channels not held here are looked for elsewhere.
    pub(crate) fn is_edge(&self) -> bool {
        #[cfg(feature = "cluster")]
        if self.registry.is_some() {
            return true;
        }
        !self.origins.is_empty()
    }

    /// How many channels are relayed, starting, or remembered as not found.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.relayed.lock().len()
    }

    /// Whether `name` is relayed here (and so not to be published to).
    pub(crate) fn relays(&self, name: &str) -> bool {
        let relayed = self.relayed.lock();
        relayed
            .get(name)
            .is_some_and(|state| matches!(*state.borrow(), State::Pulling(..) | State::Starting))
    }

    /// The local copy of `name`, relayed from an origin: starts the pull if none is running (or
    /// waits for the one starting).
    pub(crate) async fn channel(&self, server: &Server, name: &str) -> Result<Arc<Channel>, Error> {
        // Who asked, through which relays: this server among them is a loop.
        let via = VIA.try_with(Arc::clone).unwrap_or_else(|_| "".into());
        let relays: Vec<&str> = via.split(',').filter(|id| !id.is_empty()).collect();
        if relays.contains(&self.me.as_str()) || relays.len() >= MAX_HOPS {
            return Err(loop_detected());
        }
        let onward = [relays.as_slice(), &[self.me.as_str()]].concat().join(",");
        let mut state = {
            let mut relayed = self.relayed.lock();
            let stale = relayed
                .get(name)
                .is_none_or(|state| match &*state.borrow() {
                    State::Failed { at, .. } => at.elapsed() >= NEGATIVE,
                    _ => false,
                });
            if stale {
                let sender = Arc::new(watch::channel(State::Starting).0);
                let receiver = sender.subscribe();
                relayed.insert(name.to_string(), sender.clone());
                let pull = pull::start(server.clone(), name.to_string(), sender, onward);
                tokio::spawn(pull);
                receiver
            } else {
                relayed[name].subscribe()
            }
        };
        // A reader waiting for the start is a GET waiting for a segment, and counted as one.
        let waiting = server.stat(Stat::WaitingGets);
        let settled = state.wait_for(|s| !matches!(s, State::Starting)).await;
        drop(waiting);
        let outcome = settled.map(|s| s.clone()).unwrap_or(State::Failed {
            error: Failure::Unavailable("the relay stopped".into()),
            at: Instant::now(),
        });
        match outcome {
            State::Pulling(channel, _) => Ok(channel),
            State::Failed { error, .. } => Err(error.into()),
            State::Starting => unreachable!("waited past it"),
        }
    }

    /// The pull of `name` whose state is `state` stopped (or failed to start, and its answer was
    /// kept long enough): the next read starts another (unless it already did).
    fn forget(&self, name: &str, state: &Arc<watch::Sender<State>>) {
        let mut relayed = self.relayed.lock();
        if relayed.get(name).is_some_and(|s| Arc::ptr_eq(s, state)) {
            relayed.remove(name);
        }
    }
}

/// A random id for this server in `Lp-Trickle-Via` (hex; from the process's hash keys and the
/// clock, which differ from server to server).
fn instance_id() -> String {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now();
    let seed = std::collections::hash_map::RandomState::new().hash_one(now);
    format!("{seed:016x}")
}

/// `508`: the relays asked lead back to themselves.
fn loop_detected() -> Error {
    let message = format!("Relay loop: the origins lead back here (over {MAX_HOPS} relays)");
    let status = http::StatusCode::LOOP_DETECTED;
    Error::Refused { status, message }
}

impl std::fmt::Debug for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relays")
            .field("origins", &self.origins)
            .field("linger", &self.linger)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_no_origin_has_is_remembered_for_a_moment_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin_url = format!("http://{}", listener.local_addr().unwrap());
        let origin = Server::new(Config::default());
        tokio::spawn(crate::server::serve(
            listener,
            origin,
            std::future::pending(),
        ));
        let edge = Server::new(Config {
            origins: vec![origin_url],
            ..Config::default()
        });
        for name in ["a", "b", "c"] {
            let found = edge.relays().channel(&edge, name).await;
            assert!(matches!(found, Err(Error::StreamNotFound)));
        }
        assert_eq!(edge.relays().entries(), 3, "the negative cache");
        tokio::time::sleep(NEGATIVE + Duration::from_millis(300)).await;
        assert_eq!(edge.relays().entries(), 0, "nothing left behind");
    }
}
