//! The Trickle server as a library: a [`Server`] handle owns the channel registry, the changefeed,
//! the idle sweeper and the hooks; [`Server::router`] exposes it over HTTP as an axum router that can
//! be merged into another application; [`serve`] runs it on a listener with graceful shutdown.
//!
//! Shutdown story: [`Server::shutdown`] cancels one token. The sweeper and the accept loop watch it,
//! and every channel is closed, which answers every waiting subscriber and preconnected publisher
//! with end of stream.

mod activity;
mod api;
mod auth;
mod budget;
mod changefeed;
mod channel;
mod config;
mod conn;
mod dash;
mod event_stream;
mod events;
mod facts;
mod hls;
mod hooks;
mod http;
mod http1;
mod listen;
mod live;
mod llhls;
mod metrics;
mod output;
mod publish;
pub(crate) mod read;
#[cfg(feature = "client")]
mod relay;
mod remux;
mod route;
// The segment buffer is the server's own business; the `internals` feature opens it to the
// project's criterion benchmark (benches/fanout.rs), which measures it without HTTP.
#[cfg(feature = "internals")]
pub mod segment;
#[cfg(not(feature = "internals"))]
pub(crate) mod segment;
mod socket;
mod stats;
mod subscribe;
#[cfg(feature = "tls")]
pub mod tls;
mod watch;
pub(crate) mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

pub use self::api::{ChannelInfo, ViewerInfo};
pub use self::budget::default_limit as default_memory_budget;
pub use self::channel::Channel;
pub(crate) use self::channel::ReadLookup;
pub use self::config::{Config, Credential};
pub use self::events::Event;
pub use self::facts::Facts;
pub use self::hooks::{Hook, HookFuture, HookRequest, RequestError};
#[cfg(feature = "tls")]
pub use self::listen::serve_tls;
pub use self::listen::{MAX_METRICS_CONNECTIONS, serve, serve_connection, serve_metrics};
pub use self::metrics::{Metrics, resident_memory_bytes, resident_memory_bytes_of};
pub use self::stats::Stats;
pub(crate) use self::stats::{Counter, Stat, StatGuard};
use crate::protocol::{self, Error};

/// A cloneable handle to one Trickle server.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    base: String,
    channels: RwLock<HashMap<String, Arc<Channel>>>,
    events: events::Events,
    before_create: Option<Hook>,
    before_delete: Option<Hook>,
    /// The embedder's own routes, served next to ours ([`Builder::routes`]).
    extra_routes: Option<axum::Router>,
    shutdown: CancellationToken,
    epoch: Instant,
    gauges: [AtomicUsize; stats::STATS],
    counters: [AtomicU64; stats::COUNTERS],
    /// Most requests in progress at once since [`Server::take_request_peak`] last looked.
    request_peak: AtomicUsize,
    /// Segment bytes held, against [`Config::memory_budget`].
    budget: Arc<budget::Budget>,
    verifier: Option<crate::auth::Verifier>,
    /// The channels relayed from origins (an edge).
    #[cfg(feature = "client")]
    relays: relay::Relays,
}

/// Builds a [`Server`] with optional hooks and routes of the embedder's own.
pub struct Builder {
    config: Config,
    before_create: Option<Hook>,
    before_delete: Option<Hook>,
    extra_routes: Option<axum::Router>,
}

impl Builder {
    /// Asked before any channel is created: by `POST /{name}`, by a `POST /{name}/{seq}` that
    /// creates its channel, and in process.
    pub fn before_create<F, Fut>(mut self, before: F) -> Self
    where
        F: Fn(HookRequest<'_>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), RequestError>> + Send + 'static,
    {
        self.before_create = Some(hooks::hook(before));
        self
    }

    /// Asked before a channel is deleted by `DELETE /{name}` (not when it is swept as idle or
    /// deleted in process).
    pub fn before_delete<F, Fut>(mut self, before: F) -> Self
    where
        F: Fn(HookRequest<'_>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), RequestError>> + Send + 'static,
    {
        self.before_delete = Some(hooks::hook(before));
        self
    }

    /// Routes of the embedder's own, served next to the Trickle routes by [`Server::router`],
    /// [`serve`], [`serve_tls`] and [`serve_connection`], over every transport, behind the token
    /// check when auth is on (which judges a path by its first part after the base path, as it
    /// does every path), and counted in `/metrics` by status. Paths are as given (the base path is
    /// not added). A route may take a path the Trickle routes would otherwise answer, such as
    /// `{base}{channel}/live`: a fixed part wins over a channel or seq. A route that overlaps one of
    /// ours in any other way (`/{a}/{b}`, say) panics when the router is built, as
    /// `axum::Router::merge` does. Called again, the routers are merged.
    pub fn routes(mut self, routes: axum::Router) -> Self {
        self.extra_routes = Some(match self.extra_routes.take() {
            Some(before) => before.merge(routes),
            None => routes,
        });
        self
    }

    /// Creates the server and, inside a tokio runtime, starts its idle sweeper (which stops when
    /// the server shuts down or the last handle is dropped).
    pub fn build(self) -> Server {
        let base = self.config.normalized_base();
        let verifier = self
            .config
            .auth_secret
            .as_ref()
            .map(crate::auth::Verifier::new);
        let budget = budget::Budget::new(self.config.memory_budget);
        let (events, feed) = events::Events::new(self.config.changefeed);
        #[cfg(feature = "client")]
        let relays = relay::Relays::new(&self.config);
        let server = Server {
            inner: Arc::new(Inner {
                events,
                #[cfg(feature = "client")]
                relays,
                config: self.config,
                base,
                channels: RwLock::new(HashMap::new()),
                before_create: self.before_create,
                before_delete: self.before_delete,
                extra_routes: self.extra_routes,
                shutdown: CancellationToken::new(),
                epoch: Instant::now(),
                gauges: Default::default(),
                counters: Default::default(),
                request_peak: AtomicUsize::new(0),
                budget,
                verifier,
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep(Arc::downgrade(&server.inner)));
            #[cfg(feature = "cluster")]
            tokio::spawn(relay::registry::upkeep(server.clone()));
            if let Some(feed) = feed {
                // Made here, not by `get_or_create`: its own creation is its first event, which
                // its writer writes before it listens.
                let channel = server.new_channel(changefeed::NAME, "application/json");
                let inner = &server.inner;
                inner
                    .channels
                    .write()
                    .insert(changefeed::NAME.into(), channel);
                let feed = changefeed::run(Arc::downgrade(inner), feed, inner.shutdown.clone());
                tokio::spawn(feed);
            }
        }
        server
    }
}

impl Server {
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            before_create: None,
            before_delete: None,
            extra_routes: None,
        }
    }

    /// A server without hooks.
    pub fn new(config: Config) -> Server {
        Server::builder(config).build()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The normalized base path (`/`, or `/prefix/`).
    pub fn base_path(&self) -> &str {
        &self.inner.base
    }

    /// The axum router serving every route under the base path, and the embedder's own
    /// ([`Builder::routes`]). Merge it into a larger app with `Router::merge`; it has no fallback
    /// of its own. With auth on, the token check must see a
    /// request before routing (it may cut a token out of the path), so the router is then one
    /// fallback service: make it the larger app's fallback (`Router::fallback_service`) instead.
    pub fn router(&self) -> axum::Router {
        self.finished(http::routes(self.clone()))
    }

    /// `routes` behind the token check, when auth is on. The check runs before routing because it
    /// may cut a token out of the path.
    fn guarded(&self, routes: axum::Router) -> axum::Router {
        if self.inner.verifier.is_none() {
            return routes;
        }
        let layer = axum::middleware::from_fn_with_state(self.clone(), auth::guard);
        axum::Router::new().fallback_service(tower_layer::Layer::layer(&layer, routes))
    }

    /// [`Server::router`] with a fallback for everything else, as [`serve`] runs it.
    pub(crate) fn app<H, T>(&self, fallback: H) -> axum::Router
    where
        H: axum::handler::Handler<T, ()>,
        T: 'static,
    {
        self.finished(http::routes(self.clone()).fallback(fallback))
    }

    /// `routes` counted, guarded, and answering HEAD without a body whoever answers it (the token
    /// check's 401 too: over HTTP/2, body data on a HEAD stream is a protocol error).
    fn finished(&self, routes: axum::Router) -> axum::Router {
        self.guarded(http::counted(self, routes))
            .layer(axum::middleware::from_fn(http::head_without_body))
    }

    pub(crate) fn extra_routes(&self) -> Option<&axum::Router> {
        self.inner.extra_routes.as_ref()
    }

    pub(crate) fn verifier(&self) -> Option<&crate::auth::Verifier> {
        self.inner.verifier.as_ref()
    }

    /// `GET /metrics` (Prometheus text) for this server, to serve on a listener of its own.
    pub fn metrics_router(&self) -> axum::Router {
        metrics::router(self.clone())
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.inner.channels.read().get(name).cloned()
    }

    /// The channel a reader asks for: held here, or on an edge relayed from an origin (which
    /// may take a moment: the first reader starts the relay, the others wait for it).
    pub(crate) async fn channel_to_read(&self, name: &str) -> Result<Arc<Channel>, Error> {
        if let Some(channel) = self.channel(name) {
            return Ok(channel);
        }
        #[cfg(feature = "client")]
        if self.inner.relays.is_edge() && !protocol::is_reserved(name) {
            return self.inner.relays.channel(self, name).await;
        }
        Err(Error::StreamNotFound)
    }

    /// In a cluster, registers this node as the origin of `name`, about to be published here:
    /// `409` naming the owner if another node is. Without a cluster, or with the registry
    /// unreachable (publishing goes on), nothing to refuse.
    pub(crate) async fn claim_origin(&self, name: &str) -> Result<(), Error> {
        #[cfg(feature = "cluster")]
        if let Some(registry) = self.inner.relays.registry()
            && !protocol::is_reserved(name)
            && let Err(taken) = registry.claim(name).await
        {
            let message = format!("Channel is published at {}", taken.owner);
            let status = ::http::StatusCode::CONFLICT;
            return Err(Error::Refused { status, message });
        }
        let _ = name;
        Ok(())
    }

    /// Whether `name` is relayed here from an origin (publishing it here is refused).
    pub(crate) fn is_relayed(&self, name: &str) -> bool {
        #[cfg(feature = "client")]
        return self.inner.relays.relays(name);
        #[cfg(not(feature = "client"))]
        {
            let _ = name;
            false
        }
    }

    #[cfg(feature = "client")]
    pub(crate) fn relays(&self) -> &relay::Relays {
        &self.inner.relays
    }

    /// Number of channels (the `_changes` channel included).
    pub fn channel_count(&self) -> usize {
        self.inner.channels.read().len()
    }

    pub(super) fn new_channel(&self, name: &str, mime: &str) -> Arc<Channel> {
        let c = &self.inner.config;
        Arc::new(Channel::new(
            name.into(),
            mime.into(),
            c.ring,
            c.max_segment_bytes,
            self.inner.budget.clone(),
            self.inner.epoch,
        ))
    }

    /// Returns the channel, creating it with `mime` if it is missing. Returns whether it was created.
    pub(crate) fn get_or_create(
        &self,
        name: &str,
        mime: &str,
    ) -> Result<(Arc<Channel>, bool), Error> {
        if let Some(channel) = self.channel(name) {
            return Ok((channel, false));
        }
        protocol::validate_name(name, self.inner.config.max_name_bytes)?;
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::EndOfStream);
        }
        let mut channels = self.inner.channels.write();
        if let Some(channel) = channels.get(name) {
            return Ok((channel.clone(), false));
        }
        let user_channels = channels
            .keys()
            .filter(|n| !protocol::is_reserved(n))
            .count();
        if !protocol::is_reserved(name) && user_channels >= self.inner.config.max_channels {
            return Err(Error::TooManyChannels);
        }
        let channel = self.new_channel(name, mime);
        channels.insert(name.into(), channel.clone());
        self.queue_event(|| Event::ChannelCreated {
            channel: channel.shared_name(),
        });
        drop(channels);
        self.inner.events.flush();
        tracing::debug!(channel = name, "created");
        Ok((channel, true))
    }

    /// Creates the channel if missing (whatever autocreate says), as the in-process publisher's
    /// `create_channel` does. The `before_create` hook is asked first (without a request).
    pub async fn create_channel(&self, name: &str, mime: &str) -> Result<Arc<Channel>, Error> {
        if let Some(channel) = self.channel(name) {
            return Ok(channel);
        }
        self.may_create(name, None).await?;
        self.get_or_create(name, mime).map(|(c, _)| c)
    }

    /// Deletes a channel: everybody waiting on it gets end of stream, and the changefeed a
    /// `removed` event.
    pub fn delete_channel(&self, name: &str) -> Result<(), Error> {
        self.delete_channel_if(name, |_| true)
            .then_some(())
            .ok_or(Error::StreamNotFound)
    }

    /// Deletes the channel if it exists and `condition` holds for it, both judged under the
    /// registry's write lock (so nothing can make it untrue before it is gone). Whether it did.
    fn delete_channel_if(&self, name: &str, condition: impl FnOnce(&Channel) -> bool) -> bool {
        let channel = {
            let mut channels = self.inner.channels.write();
            if !channels.get(name).is_some_and(|c| condition(c)) {
                return false;
            }
            let channel = channels
                .remove(name)
                .expect("looked up under the same lock");
            self.queue_event(|| Event::ChannelRemoved {
                channel: channel.shared_name(),
            });
            channel
        };
        self.inner.events.flush();
        channel.close();
        tracing::debug!(channel = name, "deleted");
        true
    }

    /// Stops the server: closes every channel (waiting clients get end of stream), stops the sweeper
    /// and makes [`serve`] return. No changefeed events are emitted for this.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let channels: Vec<_> = self
            .inner
            .channels
            .write()
            .drain()
            .map(|(_, c)| c)
            .collect();
        for channel in channels {
            channel.close();
        }
    }

    pub fn is_shut_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Resolves when [`Server::shutdown`] is called.
    pub async fn shut_down(&self) {
        self.inner.shutdown.cancelled().await
    }

    /// Everything that happens from now on: channels created and removed, segments started,
    /// completed and failed ([`Event`]). Each event is sent after the lock that made it true is
    /// released, in the order things happened; a receiver more than a few thousand events behind
    /// misses some and is told how many (`RecvError::Lagged`).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Queues the event `make` makes (if anybody listens) while the lock that makes it true is
    /// held; sent by the next [`events::Events::flush`].
    fn queue_event(&self, make: impl FnOnce() -> Event) {
        if self.inner.events.channel_events_wanted() {
            self.inner.events.queue(make());
        }
    }

    /// One pass of the idle sweep (every written byte counts as activity): deletes every
    /// non-reserved channel idle for longer than the idle timeout. Returns the names deleted.
    pub fn sweep_once(&self) -> Vec<String> {
        let timeout = self.inner.config.idle_timeout;
        let idle: Vec<String> = self
            .inner
            .channels
            .read()
            .iter()
            .filter(|(name, c)| !protocol::is_reserved(name) && c.idle_for() > timeout)
            .map(|(name, _)| name.clone())
            .collect();
        idle.into_iter()
            // Judged again under the write lock: a byte may have arrived since.
            .filter(|name| self.delete_channel_if(name, |c| c.idle_for() > timeout))
            .inspect(|name| tracing::info!(channel = %name, "swept idle channel"))
            .collect()
    }
}

/// The sweeper task: holds only a weak reference, so dropping every [`Server`] handle ends it.
async fn sweep(inner: std::sync::Weak<Inner>) {
    let (interval, token) = match inner.upgrade() {
        Some(i) => (i.config.sweep_interval, i.shutdown.clone()),
        None => return,
    };
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match inner.upgrade() {
            Some(inner) => {
                Server { inner }.sweep_once();
            }
            None => return,
        }
    }
}
