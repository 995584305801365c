//! The `trickle bench` command line: its flags, the named load profiles and their defaults, and
//! the [`Settings`] a run uses once the two are merged.

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::super::{ClientArgs, parse_size};

/// Named loads. Flags given as well override a profile's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Throughput: 100 subscribers, 500 segments of 1 MiB in 32 KiB writes, as fast as the
    /// slowest subscriber allows (--max-lag 2).
    Max,
    /// Live video: 100 subscribers, 256 KiB segments in 1300-byte writes at 1.25 MB/s (10 Mbit/s).
    Paced,
    /// Many viewers: 10,000 subscribers, 4 KiB segments, 10 segments a second. Needs about 20,100
    /// open files in both the bench and the server (`ulimit -n 65536`).
    C10k,
}

struct Defaults {
    subs: u32,
    segments: u64,
    segment_bytes: u64,
    write: u64,
    rate: u64,
    max_lag: u64,
}

impl Profile {
    fn defaults(profile: Option<Profile>) -> Defaults {
        match profile {
            None => Defaults {
                subs: 10,
                segments: 100,
                segment_bytes: 1 << 20,
                write: 32 << 10,
                rate: 0,
                max_lag: 2,
            },
            Some(Profile::Max) => Defaults {
                subs: 100,
                segments: 500,
                segment_bytes: 1 << 20,
                write: 32 << 10,
                rate: 0,
                max_lag: 2,
            },
            Some(Profile::Paced) => Defaults {
                subs: 100,
                segments: 120,
                segment_bytes: 256 << 10,
                write: 1300,
                rate: 1_250_000,
                max_lag: 0,
            },
            Some(Profile::C10k) => Defaults {
                subs: 10_000,
                segments: 100,
                segment_bytes: 4 << 10,
                write: 4 << 10,
                rate: 40 << 10,
                max_lag: 0,
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The server's base URL, e.g. http://localhost:2939 (channels `bench-…` are made under it).
    pub url: String,
    /// A named load [default: 10 subscribers, 100 segments of 1 MiB in 32 KiB writes, --max-lag 2].
    #[arg(long, env = "TRICKLE_PROFILE", value_enum)]
    pub profile: Option<Profile>,
    /// Channels, each with one publisher and its own subscribers.
    #[arg(long, env = "TRICKLE_CHANNELS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub channels: u32,
    /// Subscribers per channel.
    #[arg(long, env = "TRICKLE_SUBS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub subs: Option<u32>,
    /// Segments per channel (measured; a warm-up segment comes first).
    #[arg(long, env = "TRICKLE_SEGMENTS", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub segments: Option<u64>,
    /// Bytes per segment (`1MiB`, `4KiB`).
    #[arg(long, env = "TRICKLE_SEGMENT_BYTES", value_parser = parse_size)]
    pub segment_bytes: Option<u64>,
    /// Bytes per write; each write of 8 bytes or more carries its send time.
    #[arg(long, env = "TRICKLE_WRITE", value_parser = parse_size)]
    pub write: Option<u64>,
    /// Publish rate of each channel in bytes per second (`1.25MB` is not a size: write `1250000`);
    /// 0 = as fast as possible.
    #[arg(long, env = "TRICKLE_RATE", value_parser = parse_size)]
    pub rate: Option<u64>,
    /// Closed loop: start seq s only when every subscriber has finished s − K. 0 = off.
    #[arg(long, env = "TRICKLE_MAX_LAG")]
    pub max_lag: Option<u64>,
    /// Also report this process's CPU seconds and peak RSS (the server's PID; Linux /proc).
    #[arg(long, env = "TRICKLE_SERVER_PID")]
    pub server_pid: Option<u32>,
    /// Print the report as one JSON object instead of text.
    #[arg(long, env = "TRICKLE_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// One run's parameters, after the profile and the flags are merged.
#[derive(Clone, Debug, serde::Serialize)]
pub(super) struct Settings {
    pub(super) profile: Option<Profile>,
    pub(super) channels: u32,
    pub(super) subs: u32,
    pub(super) segments: u64,
    pub(super) segment_bytes: u64,
    pub(super) write: u64,
    pub(super) rate: u64,
    pub(super) max_lag: Option<u64>,
}

impl BenchArgs {
    pub(super) fn settings(&self) -> anyhow::Result<Settings> {
        let d = Profile::defaults(self.profile);
        let settings = Settings {
            profile: self.profile,
            channels: self.channels,
            subs: self.subs.unwrap_or(d.subs),
            segments: self.segments.unwrap_or(d.segments),
            segment_bytes: self.segment_bytes.unwrap_or(d.segment_bytes),
            write: self.write.unwrap_or(d.write),
            rate: self.rate.unwrap_or(d.rate),
            max_lag: Some(self.max_lag.unwrap_or(d.max_lag)).filter(|&k| k > 0),
        };
        if settings.segment_bytes == 0 || settings.write == 0 {
            bail!("--segment-bytes and --write must be greater than zero");
        }
        Ok(settings)
    }
}
