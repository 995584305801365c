//! The `trickle` command line: one binary with subcommands. Every flag can also be given as an
//! environment variable `TRICKLE_<FLAG>`. Durations take `500ms`, `10s`, `5m`; sizes take
//! `64MiB`, `1MB`, `1300`.

mod bench;
mod progress;
mod publish;
mod serve;
mod source;
mod subscribe;
mod token;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue};

pub use bench::BenchArgs;
pub use publish::PublishArgs;
pub use serve::ServeArgs;
pub use subscribe::SubscribeArgs;
pub use token::TokenArgs;

use crate::auth::Secret;
use crate::client::ConnectOptions;

/// Trickle: live segmented publish/subscribe over plain HTTP.
#[derive(Parser, Debug)]
#[command(name = "trickle", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The runtime's worker threads, if the command sets them (`serve --threads`).
    pub fn worker_threads(&self) -> Option<usize> {
        match &self.command {
            Command::Serve(args) => args.threads.map(usize::from),
            _ => None,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Trickle server.
    Serve(Box<ServeArgs>),
    /// Publish stdin or a file to a channel, cut into segments.
    Publish(PublishArgs),
    /// Follow a channel: segments to stdout back to back, or one file each.
    Subscribe(SubscribeArgs),
    /// Load-test a Trickle server: publishers and subscribers, throughput, latency, errors.
    Bench(BenchArgs),
    /// Mint an access token for a server started with --auth-secret.
    Token(TokenArgs),
}

/// Connection flags shared by the clients.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// Extra request header, `Name: value` (repeatable), e.g. `-H 'Authorization: Bearer …'`.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Accept any TLS certificate (self-signed development servers).
    #[arg(long, env = "TRICKLE_INSECURE")]
    pub insecure: bool,
}

impl ClientArgs {
    pub fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        let mut headers = HeaderMap::new();
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("invalid header {header:?}: expected `Name: value`"))?;
            let name: HeaderName = name
                .trim()
                .parse()
                .with_context(|| format!("invalid header name in {header:?}"))?;
            let value: HeaderValue = value
                .trim()
                .parse()
                .with_context(|| format!("invalid header value in {header:?}"))?;
            headers.append(name, value);
        }
        Ok(ConnectOptions {
            headers,
            insecure: self.insecure,
            http: None,
        })
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Raises this process's soft limit of open files to its hard limit (as Go programs do at start),
/// and fails with advice if that is still below `needed`.
pub fn raise_open_files_limit(needed: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Ok(needed);
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let available = limit.rlim_cur;
    if available < needed {
        anyhow::bail!(
            "this run needs about {needed} open files but the limit is {available}: raise it first (e.g. `ulimit -n 65536`)"
        );
    }
    Ok(available)
}

/// A token secret given inline or as a file (`trickle serve --auth-secret[-file]`, `trickle token
/// --secret[-file]`), if either is given.
pub fn read_secret(
    secret: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<Secret>> {
    let bytes = match (secret, file) {
        (Some(secret), _) => secret.as_bytes().to_vec(),
        (None, Some(path)) => {
            let mut bytes = std::fs::read(path)
                .with_context(|| format!("cannot read the secret file {}", path.display()))?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            bytes
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(Secret::new(bytes)?))
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Subscribe(args) => subscribe::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Token(args) => token::run(args).await,
    }
}

/// Parses a duration such as `500ms`, `10s`, `5m` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses a size such as `1300`, `64KiB`, `1MB`, `64MiB`, `1GiB` (decimal or binary units,
/// case-insensitive, optional `B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number with an optional unit"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1300"), Ok(1300));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("2kib"), Ok(2048));
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn headers() {
        let args = |h: &[&str]| ClientArgs {
            headers: h.iter().map(|s| s.to_string()).collect(),
            insecure: false,
        };
        let options = args(&["Authorization: Bearer abc", "X-A:1"])
            .connect_options()
            .unwrap();
        assert_eq!(options.headers["authorization"], "Bearer abc");
        assert_eq!(options.headers["x-a"], "1");
        assert!(args(&["no colon"]).connect_options().is_err());
        assert!(args(&["bad name: x"]).connect_options().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }
}
