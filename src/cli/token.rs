//! `trickle token`: mints an access token for a server started with `--auth-secret`
//! ([`crate::auth`]), printed on stdout.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::{parse_duration, read_secret};
use crate::auth::{Claims, expiry_in, mint};

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The server's secret (its --auth-secret).
    #[arg(long, env = "TRICKLE_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The server's secret, read from a file (its --auth-secret-file).
    #[arg(long, env = "TRICKLE_SECRET_FILE", conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,
    /// Channels the bearer may publish to (POST, DELETE): a name, a prefix ending in `*`, or `*`.
    /// Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub publish: Vec<String>,
    /// Channels the bearer may subscribe to (GET). Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub subscribe: Vec<String>,
    /// Everything on every channel, and the changefeed.
    #[arg(long)]
    pub admin: bool,
    /// How long the token is valid (`30m`, `1h`, `7d`).
    #[arg(long, env = "TRICKLE_TTL", default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let Some(secret) = read_secret(args.secret.as_deref(), args.secret_file.as_deref())? else {
        bail!("the server's secret is needed: --secret or --secret-file");
    };
    if args.publish.is_empty() && args.subscribe.is_empty() && !args.admin {
        bail!("a token must allow something: give --publish, --subscribe or --admin");
    }
    if args.ttl.is_zero() {
        bail!("--ttl must be greater than zero");
    }
    let claims = Claims {
        exp: expiry_in(args.ttl),
        publish: args.publish,
        subscribe: args.subscribe,
        admin: args.admin,
    };
    println!("{}", mint(&secret, &claims)?);
    Ok(())
}
