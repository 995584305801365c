//! Server settings ([`Config`]): what `trickle serve`'s flags set, with the same defaults, and
//! the credential an edge presents upstream.

use std::time::Duration;

use super::budget;

/// Server settings; the defaults are `trickle serve`'s (README.md, docs/PROTOCOL.md).
#[derive(Clone, Debug)]
pub struct Config {
    /// Prefix of every route; starts and ends with `/`.
    pub base_path: String,
    /// Whether `POST /{name}` and `POST /{name}/{seq}` create missing channels.
    pub autocreate: bool,
    /// Serve the `_changes` channel.
    pub changefeed: bool,
    /// Segments kept per channel.
    pub ring: usize,
    /// A channel without activity for this long is deleted.
    pub idle_timeout: Duration,
    /// How often the sweeper looks.
    pub sweep_interval: Duration,
    pub max_channels: usize,
    pub max_name_bytes: usize,
    pub max_segment_bytes: u64,
    /// How long a POST or GET may wait without data.
    pub wait_timeout: Duration,
    /// When set, every request needs a token signed with this secret ([`crate::auth`]).
    pub auth_secret: Option<crate::auth::Secret>,
    /// How long an HTTP/1.1 client may take to send its next request's headers, counted from when
    /// the connection is ready for them (against slowloris). Also the idle limit of every
    /// connection: an HTTP/1.1 keep-alive connection, or an HTTP/2 connection without a request
    /// in progress, is closed after this long; and HTTP/2 pings a busy connection this often,
    /// closing it when a ping goes unanswered this long.
    pub header_timeout: Duration,
    /// A response whose client takes no byte of it for this long is ended and its connection
    /// closed (a reader that never reads must not hold its connection and segments forever).
    pub send_timeout: Duration,
    /// Most segment bytes the server holds at once, counting versions that left the ring but are
    /// still being read; a write that would go over it is refused with 503. Default: half of the
    /// memory available to the process ([`default_memory_budget`]).
    pub memory_budget: u64,
    /// A live viewer more than this many segments behind the newest one at a segment boundary
    /// skips to it (`GET /{name}/live`).
    pub live_max_lag: u64,
    /// Live viewers at once, over all channels; more are answered 503.
    pub max_viewers: usize,
    /// Segments an HLS playlist lists (`GET /{name}/index.m3u8`), at most `ring - 2`: the
    /// segment being written and the next one, preconnected, take two slots of the ring.
    pub hls_window: usize,
    /// Servers to relay channels from (`--origin`), asked in order: a read of a channel not held
    /// here is served from the first that has it. Empty: none (the default).
    pub origins: Vec<String>,
    /// How long a relayed channel is pulled with nobody reading it here.
    pub relay_linger: Duration,
    /// The `Authorization` value this server sends to its origins (its own credential; clients'
    /// tokens are never passed on).
    pub relay_credential: Option<Credential>,
    /// Redis, where a cluster's nodes register the channels published to them and look up those
    /// they do not hold (`redis://host:port`). None: not in a cluster.
    pub registry: Option<String>,
    /// This node's URL as the other nodes reach it (`--advertise`), registered with its channels.
    pub advertise: Option<String>,
    /// This node's name in the registry (`--node-id`).
    pub node_id: Option<String>,
    /// How long a registration lives unless refreshed (every third of it).
    pub registry_ttl: Duration,
}

/// A credential sent upstream as it is (`Bearer …`); never printed.
#[derive(Clone)]
pub struct Credential(pub String);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(…)")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_path: "/".into(),
            autocreate: true,
            changefeed: false,
            ring: 5,
            idle_timeout: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(60),
            max_channels: 10_000,
            max_name_bytes: 256,
            max_segment_bytes: 64 << 20,
            wait_timeout: Duration::from_secs(600),
            auth_secret: None,
            header_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(20),
            memory_budget: budget::default_limit(),
            live_max_lag: 1,
            max_viewers: 10_000,
            hls_window: 6,
            origins: Vec::new(),
            relay_linger: Duration::from_secs(5),
            relay_credential: None,
            registry: None,
            advertise: None,
            node_id: None,
            registry_ttl: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The segments an HLS playlist lists: `hls_window`, but no more than the ring holds complete
    /// while one segment is written and the next is preconnected (`ring - 2`), and at least one.
    pub fn hls_segments(&self) -> usize {
        self.hls_window.min(self.ring.saturating_sub(2)).max(1)
    }

    /// `base_path` with exactly one leading and one trailing slash.
    pub(super) fn normalized_base(&self) -> String {
        let trimmed = self.base_path.trim_matches('/');
        if trimmed.is_empty() {
            "/".into()
        } else {
            format!("/{trimmed}/")
        }
    }
}
