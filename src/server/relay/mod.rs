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
use crate::protocol::Error;

/// How long a failed start is remembered: readers arriving meanwhile get its answer.
const NEGATIVE: Duration = Duration::from_secs(1);

/// Where the relaying of one channel stands.
#[derive(Clone)]
enum State {
    Starting,
    /// The local copy, being pulled into.
    Pulling(Arc<Channel>),
    /// The start failed (at `at`): every reader until [`NEGATIVE`] after gets this.
    Failed {
        error: Failure,
        at: Instant,
    },
}

/// Why a start failed, as readers are told.
#[derive(Clone, Debug)]
enum Failure {
    NotFound,
    Unavailable(String),
    Timeout,
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Error {
        match failure {
            Failure::NotFound => Error::StreamNotFound,
            Failure::Unavailable(why) => Error::Unavailable(why),
            Failure::Timeout => Error::Timeout,
        }
    }
}

/// The channels this server relays, and how it reaches its origins.
pub(crate) struct Relays {
    origins: Vec<String>,
    linger: Duration,
    http: Option<reqwest::Client>,
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
        // Without a client (it cannot be built: no TLS roots) every start is `503`, said once.
        let http = new_http_client(&connect)
            .inspect_err(|err| tracing::error!(%err, "no HTTP client for the origins"))
            .ok();
        Relays {
            origins: config
                .origins
                .iter()
                .map(|o| format!("{}/", o.trim_end_matches('/')))
                .collect(),
            linger: config.relay_linger,
            http,
            #[cfg(feature = "cluster")]
            registry: registry::from_config(config),
            relayed: Mutex::new(HashMap::new()),
        }
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

    /// Whether `name` is relayed here (and so not to be published to).
    pub(crate) fn relays(&self, name: &str) -> bool {
        let relayed = self.relayed.lock();
        relayed
            .get(name)
            .is_some_and(|state| matches!(*state.borrow(), State::Pulling(_) | State::Starting))
    }

    /// The local copy of `name`, relayed from an origin: starts the pull if none is running (or
    /// waits for the one starting).
    pub(crate) async fn channel(&self, server: &Server, name: &str) -> Result<Arc<Channel>, Error> {
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
                tokio::spawn(pull::start(server.clone(), name.to_string(), sender));
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
            State::Pulling(channel) => Ok(channel),
            State::Failed { error, .. } => Err(error.into()),
            State::Starting => unreachable!("waited past it"),
        }
    }

    /// The pull of `name` whose state is `state` stopped: the next read starts another (unless
    /// it already did).
    fn forget(&self, name: &str, state: &Arc<watch::Sender<State>>) {
        let mut relayed = self.relayed.lock();
        if relayed.get(name).is_some_and(|s| Arc::ptr_eq(s, state)) {
            relayed.remove(name);
        }
    }
}

impl std::fmt::Debug for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relays")
            .field("origins", &self.origins)
            .field("linger", &self.linger)
            .finish_non_exhaustive()
    }
}
