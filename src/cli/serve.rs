//! `trickle serve`: flags (README.md's `trickle serve` table), the ready line, and shutdown on
//! SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::{parse_duration, parse_size, read_secret};
use crate::server::{Config, Credential, Server, serve, serve_metrics, serve_tls, tls};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the ready line names it).
    #[arg(long, env = "TRICKLE_LISTEN", default_value = "127.0.0.1:2939")]
    pub listen: String,
    /// Prefix of every route.
    #[arg(long, env = "TRICKLE_BASE_PATH", default_value = "/")]
    pub base_path: String,
    /// Never create channels from POST requests (create them with the library instead).
    #[arg(long, env = "TRICKLE_NO_AUTOCREATE")]
    pub no_autocreate: bool,
    /// Serve the `_changes` channel: one JSON event per channel created or removed.
    #[arg(long, env = "TRICKLE_CHANGEFEED")]
    pub changefeed: bool,
    /// Segments kept per channel.
    #[arg(long, env = "TRICKLE_RING", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub ring: u32,
    /// Delete a channel after this long without a written byte.
    #[arg(long, env = "TRICKLE_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How often to look for idle channels.
    #[arg(long, env = "TRICKLE_SWEEP_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// Most channels at once; more creates answer 503.
    #[arg(long, env = "TRICKLE_MAX_CHANNELS", default_value_t = 10_000)]
    pub max_channels: usize,
    /// Longest channel name in bytes (after percent-decoding).
    #[arg(long, env = "TRICKLE_MAX_NAME_BYTES", default_value_t = 256)]
    pub max_name_bytes: usize,
    /// Largest segment; a bigger one is answered 413 and its subscribers see an abnormal end.
    #[arg(long, env = "TRICKLE_MAX_SEGMENT_BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub max_segment_bytes: u64,
    /// Most segment bytes held at once, server-wide, counting segments that left the ring but are
    /// still being read; a write that would go over it is answered 503 and fails that segment for
    /// its subscribers [default: half of the machine's memory, or of the cgroup's `memory.max` if
    /// that is lower].
    #[arg(long, env = "TRICKLE_MEMORY_BUDGET", value_parser = parse_size)]
    pub memory_budget: Option<u64>,
    /// A live viewer (`GET /{name}/live`) more than this many segments behind the write head at a
    /// segment boundary skips to the newest segment.
    #[arg(long, env = "TRICKLE_LIVE_MAX_LAG", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub live_max_lag: u64,
    /// Most live viewers at once, over all channels; more are answered 503.
    #[arg(long, env = "TRICKLE_MAX_VIEWERS", default_value_t = 10_000)]
    pub max_viewers: usize,
    /// Segments an HLS playlist (`GET /{name}/index.m3u8`) lists, at most `--ring` − 2 (the
    /// segment being written and the next one, preconnected, take two slots of the ring)
    /// [default: 6].
    #[arg(long, env = "TRICKLE_HLS_WINDOW", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub hls_window: Option<u32>,
    /// How long a POST or GET may wait without data before it is answered 408.
    #[arg(long, env = "TRICKLE_WAIT_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub wait_timeout: Duration,
    /// Close a connection whose next request's headers take longer than this to arrive, counted
    /// from when the connection is ready for them: against slowloris. Also the idle limit of
    /// every connection (HTTP/1.1 keep-alive, HTTP/2 without a request in progress) and HTTP/2's
    /// ping interval and ping timeout.
    #[arg(long, env = "TRICKLE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// End a response (and close its connection) when its client takes no byte of it for this
    /// long: a reader that stops reading must not hold its connection and segments forever.
    #[arg(long, env = "TRICKLE_SEND_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// Threads serving connections [default: one per CPU core]. On a machine shared with other
    /// busy processes (a load generator, an encoder), 1 can cost less CPU per request and give
    /// lower latency; for throughput, keep one per core (BENCHMARKS.md).
    #[arg(long, env = "TRICKLE_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Also serve Prometheus metrics at `http://ADDR/metrics`, on this separate address (keep it
    /// private: it lists no channel names, but it shows the load).
    #[arg(long, env = "TRICKLE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key); HTTP/2 is chosen by ALPN.
    #[arg(long, env = "TRICKLE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "TRICKLE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate for localhost made at start (local development; clients
    /// need --insecure). Its SHA-256 fingerprint is logged.
    #[arg(long, env = "TRICKLE_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Require a token signed with this secret on every request (at least 16 bytes; mint tokens
    /// with `trickle token`). Prefer --auth-secret-file: a flag shows in `ps`.
    #[arg(long, env = "TRICKLE_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// Like --auth-secret, read from a file (a trailing newline is ignored).
    #[arg(long, env = "TRICKLE_AUTH_SECRET_FILE", conflicts_with = "auth_secret")]
    pub auth_secret_file: Option<PathBuf>,
    /// Be an edge of this server (`http://origin:2939`, with its base path if it has one): a read
    /// of a channel not held here is relayed from it, pulled once however many read it here.
    /// Repeatable: origins are asked in order, the first that has the channel serves it.
    #[arg(long = "origin", env = "TRICKLE_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub origins: Vec<String>,
    /// Stop relaying a channel once nobody has read it here for this long.
    #[arg(long, env = "TRICKLE_RELAY_LINGER", default_value = "5s", value_parser = parse_duration)]
    pub relay_linger: Duration,
    /// A token (as `trickle token` makes them for the origin's secret) in this file, sent to the
    /// origins as `Authorization: Bearer …`: this server's own credential (its clients' tokens
    /// are never passed on).
    #[arg(long, env = "TRICKLE_RELAY_TOKEN_FILE")]
    pub relay_token_file: Option<PathBuf>,
    /// Join a cluster whose origins are kept in this Redis (`redis://host:6379`): channels
    /// published here are registered with this node's --advertise URL, and a read of a channel
    /// not held here is relayed from the node that registered it. Needs --advertise.
    #[arg(long, env = "TRICKLE_REGISTRY", requires = "advertise")]
    pub registry: Option<String>,
    /// This node's URL as the other nodes of the cluster reach it (`http://10.0.0.5:2939`).
    #[arg(long, env = "TRICKLE_ADVERTISE", value_parser = parse_origin)]
    pub advertise: Option<String>,
    /// This node's name in the registry [default: the --advertise URL's host and port].
    #[arg(long, env = "TRICKLE_NODE_ID")]
    pub node_id: Option<String>,
    /// How long a channel's registration lives without a refresh (refreshed every third of it):
    /// about how long the cluster takes to forget an origin that died.
    #[arg(long, env = "TRICKLE_REGISTRY_TTL", default_value = "10s", value_parser = parse_duration)]
    pub registry_ttl: Duration,
}

/// An origin's base URL: `http` or `https`, a host, no query.
fn parse_origin(url: &str) -> Result<String, String> {
    let parsed: reqwest::Url = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{url}: expected http://host:port[/base]"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url}: an origin has no query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

impl ServeArgs {
    pub fn config(&self) -> anyhow::Result<Config> {
        if self.memory_budget == Some(0) {
            anyhow::bail!("--memory-budget must be greater than zero");
        }
        Ok(Config {
            base_path: self.base_path.clone(),
            autocreate: !self.no_autocreate,
            changefeed: self.changefeed,
            live_max_lag: self.live_max_lag,
            max_viewers: self.max_viewers,
            hls_window: self
                .hls_window
                .map_or(Config::default().hls_window, |w| w as usize),
            ring: self.ring as usize,
            idle_timeout: self.idle_timeout,
            sweep_interval: self.sweep_interval,
            max_channels: self.max_channels,
            max_name_bytes: self.max_name_bytes,
            max_segment_bytes: self.max_segment_bytes,
            wait_timeout: self.wait_timeout,
            header_timeout: self.header_timeout,
            send_timeout: self.send_timeout,
            memory_budget: self
                .memory_budget
                .unwrap_or_else(crate::server::default_memory_budget),
            auth_secret: read_secret(
                self.auth_secret.as_deref(),
                self.auth_secret_file.as_deref(),
            )?,
            origins: self.origins.clone(),
            relay_linger: self.relay_linger,
            relay_credential: self.relay_credential()?,
            registry: self.registry()?,
            advertise: self.advertise.clone(),
            node_id: self.node_id(),
            registry_ttl: self.registry_ttl,
        })
    }

    /// --registry, checked: a Redis URL, a TTL of at least three seconds.
    fn registry(&self) -> anyhow::Result<Option<String>> {
        let Some(url) = &self.registry else {
            return Ok(None);
        };
        redis::Client::open(url.as_str()).with_context(|| format!("--registry {url}"))?;
        if self.registry_ttl < Duration::from_secs(3) {
            anyhow::bail!("--registry-ttl must be at least 3s (it is refreshed every third)");
        }
        Ok(Some(url.clone()))
    }

    /// --node-id, or the --advertise URL's host and port; one word (no spaces).
    fn node_id(&self) -> Option<String> {
        let id = self.node_id.clone().or_else(|| {
            let url: reqwest::Url = self.advertise.as_deref()?.parse().ok()?;
            Some(format!(
                "{}:{}",
                url.host_str()?,
                url.port_or_known_default()?
            ))
        })?;
        Some(id.split_whitespace().collect::<Vec<_>>().join("_"))
    }

    /// `Bearer <token>` from --relay-token-file.
    fn relay_credential(&self) -> anyhow::Result<Option<Credential>> {
        let Some(path) = &self.relay_token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --relay-token-file {}", path.display()))?;
        let token = token.trim_end_matches(['\r', '\n']);
        if token.is_empty() || token.chars().any(|c| c.is_control()) {
            anyhow::bail!("--relay-token-file {}: expected one token", path.display());
        }
        Ok(Some(Credential(format!("Bearer {token}"))))
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.sweep_interval.is_zero() {
        anyhow::bail!("--sweep-interval must be greater than zero");
    }
    for (flag, value) in [
        ("--header-timeout", args.header_timeout),
        ("--send-timeout", args.send_timeout),
    ] {
        if value.is_zero() {
            anyhow::bail!("{flag} must be greater than zero");
        }
    }
    // Every waiting subscriber holds a connection: allow as many as the hard limit does.
    let _ = super::raise_open_files_limit(0);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::from_pem_files(cert, key)?),
        _ if args.tls_self_signed => {
            let (config, fingerprint) = tls::self_signed()?;
            tracing::info!(
                "self-signed certificate for localhost, SHA-256 fingerprint {fingerprint}"
            );
            Some(config)
        }
        _ => None,
    };
    let config = args.config()?;
    if args.hls_window.is_some() && config.hls_segments() < config.hls_window {
        tracing::warn!(
            "HLS playlists list {} segments, not --hls-window {}: the ring holds no more complete \
             ones while a segment is written and the next is preconnected (use --ring {} or more)",
            config.hls_segments(),
            config.hls_window,
            config.hls_window + 2
        );
    }
    let auth = if config.auth_secret.is_some() {
        ", tokens required"
    } else {
        ""
    };
    let server = Server::new(config);
    tokio::spawn(trim_after_load_drops(server.clone()));
    if let Some(metrics_addr) = &args.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("cannot listen on {metrics_addr} (--metrics-listen)"))?;
        let addr = metrics
            .local_addr()
            .context("cannot read the metrics address")?;
        tracing::info!("serving metrics at http://{addr}/metrics");
        tokio::spawn(serve_metrics(metrics, server.clone()));
    }
    let (scheme, protocols) = match tls {
        Some(_) => ("https", "HTTP/1.1 and HTTP/2"),
        None => ("http", "HTTP/1.1 and h2c"),
    };
    tracing::info!(
        "trickle listening on {scheme}://{addr}{} ({protocols}{auth})",
        server.base_path()
    );
    let shutdown = async {
        super::shutdown_signal().await;
        tracing::info!("shutting down: closing every channel");
    };
    match tls {
        Some(tls) => serve_tls(listener, server, tls, shutdown).await?,
        None => serve(listener, server, shutdown).await?,
    }
    tracing::info!("trickle stopped");
    Ok(())
}

/// How often the load is looked at, and the longest time between two trims.
const TRIM_CHECK: Duration = Duration::from_secs(5);
const TRIM_AT_LEAST_EVERY: Duration = Duration::from_secs(60);
/// A drop in buffered segment bytes smaller than this is not worth a trim.
const TRIM_BUFFER_DROP: u64 = 64 << 20;

/// Gives memory that a burst freed back to the kernel. glibc keeps freed memory in its arenas:
/// after 10,000 abandoned connections `trickle serve` stayed at 88 of 122 MB, and after 1.25 GiB
/// of segments were freed it stayed at 1.2 GiB until the next minutely trim. Trimming while busy
/// costs page faults when the memory is needed again (trimming every 2 s under the `max` bench
/// cost up to 30% more CPU per GB), so this trims when the load has dropped since the last look:
/// the requests in progress to less than half of their peak, or the buffered segment bytes to
/// less than half of theirs and by at least [`TRIM_BUFFER_DROP`]; and otherwise once a minute.
async fn trim_after_load_drops(server: Server) {
    let mut last_trim = std::time::Instant::now();
    let mut tick = tokio::time::interval(TRIM_CHECK);
    while !server.is_shut_down() {
        tick.tick().await;
        let (peak, now) = server.take_request_peak();
        let (buffered_peak, buffered) = server.take_buffered_peak();
        let requests_dropped = peak >= 2 * now + 64;
        let buffers_dropped =
            buffered_peak >= 2 * buffered && buffered_peak - buffered >= TRIM_BUFFER_DROP;
        if requests_dropped || buffers_dropped || last_trim.elapsed() >= TRIM_AT_LEAST_EVERY {
            trim();
            last_trim = std::time::Instant::now();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only returns free memory of glibc's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
