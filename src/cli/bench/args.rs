//! The `trickle bench` command line: its flags, the named load profiles and their defaults, and
//! the [`Settings`] a run uses once the two are merged.

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::super::{ClientArgs, parse_size};
use super::payload::{HEADER, Layout};

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
    /// Live viewers: 1,000 viewers of `GET /{name}/live` on a 5 Mbit/s channel (625,000-byte
    /// segments, 1 s each, in 1300-byte writes), 20 segments; 10% of them read slowly
    /// (--slow-fraction, --slow-rate) and should skip segments, the others must not.
    Live,
    /// HLS players: 1,000 per channel on an MPEG-TS file (--input) published in real time in a
    /// loop, 10 segments; Low-Latency HLS players waiting on each next part with blocking
    /// playlist reloads (--hls-mode ll) or on the hinted part itself (--hls-mode hint), or
    /// players polling index.m3u8 (--hls-mode polling). Each player holds one connection:
    /// 10,000 need about 10,100 open files in both the bench and the server (`ulimit -n 65536`).
    Hls,
}

/// What the players of `--profile hls` do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HlsMode {
    /// Low-Latency HLS: blocking reloads of ll.m3u8 for the next part, then the part.
    #[default]
    Ll,
    /// Plain HLS: index.m3u8 every half target duration, then each new .ts segment.
    Polling,
    /// Low-Latency HLS on preload hints: ll.m3u8 once, then a request held open on each next
    /// part (the server answers it once the part is complete).
    Hint,
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
            Some(Profile::Live) => Defaults {
                subs: 1000,
                segments: 20,
                segment_bytes: 625_000,
                write: 1300,
                rate: 625_000,
                max_lag: 0,
            },
            // The input file decides the segments and the rate: these sizes are not used.
            Some(Profile::Hls) => Defaults {
                subs: 1000,
                segments: 10,
                segment_bytes: 1,
                write: 1,
                rate: 0,
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
    /// Subscribers (`live`: viewers) per channel.
    #[arg(long, env = "TRICKLE_SUBS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub subs: Option<u32>,
    /// Segments per channel (measured; warm-up comes first: seq 0, or for `live` until every
    /// viewer has begun a segment).
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
    /// `--profile live`: the fraction of each channel's viewers that read slowly [default: 0.1].
    #[arg(long, env = "TRICKLE_SLOW_FRACTION", value_parser = parse_fraction)]
    pub slow_fraction: Option<f64>,
    /// `--profile live`: bytes per second a slow viewer reads [default: a third of --rate].
    #[arg(long, env = "TRICKLE_SLOW_RATE", value_parser = parse_size)]
    pub slow_rate: Option<u64>,
    /// `--profile hls`: the MPEG-TS file (H.264/AAC) each channel publishes, in real time and in
    /// a loop, cut at its keyframes.
    #[arg(long, env = "TRICKLE_INPUT")]
    pub input: Option<std::path::PathBuf>,
    /// `--profile hls`: what the players do [default: ll].
    #[arg(long, env = "TRICKLE_HLS_MODE", value_enum)]
    pub hls_mode: Option<HlsMode>,
    /// Subscribers (`live`: viewers, `hls`: players) read at this server instead of URL
    /// (repeatable: they are spread over the servers in turn), e.g. an edge of URL
    /// (`trickle serve --origin URL`); publishers still publish to URL, so latency is publish →
    /// receive through it.
    #[arg(
        long = "subscribe-from",
        value_name = "URL",
        env = "TRICKLE_SUBSCRIBE_FROM",
        value_delimiter = ','
    )]
    pub subscribe_from: Vec<String>,
    /// Also report this process's CPU seconds and peak RSS (a server's PID; Linux /proc);
    /// repeatable, each process reported on its own (an origin and its edges).
    #[arg(
        long,
        value_name = "PID",
        env = "TRICKLE_SERVER_PID",
        value_delimiter = ','
    )]
    pub server_pid: Vec<u32>,
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
    /// `--profile live`: the fraction of the viewers that read slowly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) slow_fraction: Option<f64>,
    /// `--profile live`: bytes per second a slow viewer reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) slow_rate: Option<u64>,
    /// `--profile hls`: what the players do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) hls_mode: Option<HlsMode>,
    /// `--profile hls`: the file published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) input: Option<std::path::PathBuf>,
    /// The servers readers read at, in turn (`--subscribe-from`); none: the publish URL.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) subscribe_from: Vec<String>,
}

impl Settings {
    /// Viewers of each channel that read slowly (`live`): the first `k` of every channel's
    /// viewers in order, spread evenly (`slow_before(subs)` of them in all).
    fn slow_before(&self, k: u32) -> u32 {
        (f64::from(k) * self.slow_fraction.unwrap_or(0.0)).floor() as u32
    }

    /// How many of each channel's viewers read slowly.
    pub(super) fn slow_viewers(&self) -> u32 {
        self.slow_before(self.subs)
    }

    /// Whether viewer `i` of a channel reads slowly: one in every `1 / fraction`, so that the
    /// slow ones connect among the others rather than all first.
    pub(super) fn is_slow(&self, i: u32) -> bool {
        self.slow_before(i + 1) > self.slow_before(i)
    }
}

impl BenchArgs {
    pub(super) fn settings(&self) -> anyhow::Result<Settings> {
        let d = Profile::defaults(self.profile);
        let mut settings = Settings {
            profile: self.profile,
            channels: self.channels,
            subs: self.subs.unwrap_or(d.subs),
            segments: self.segments.unwrap_or(d.segments),
            segment_bytes: self.segment_bytes.unwrap_or(d.segment_bytes),
            write: self.write.unwrap_or(d.write),
            rate: self.rate.unwrap_or(d.rate),
            max_lag: Some(self.max_lag.unwrap_or(d.max_lag)).filter(|&k| k > 0),
            slow_fraction: None,
            slow_rate: None,
            hls_mode: None,
            input: None,
            subscribe_from: self.subscribe_from.clone(),
        };
        if settings.segment_bytes == 0 || settings.write == 0 {
            bail!("--segment-bytes and --write must be greater than zero");
        }
        if self.profile == Some(Profile::Live) {
            self.live_settings(&mut settings)?;
        } else if self.slow_fraction.is_some() || self.slow_rate.is_some() {
            bail!("--slow-fraction and --slow-rate are for --profile live");
        }
        if self.profile == Some(Profile::Hls) {
            self.hls_settings(&mut settings)?;
        } else if self.input.is_some() || self.hls_mode.is_some() {
            bail!("--input and --hls-mode are for --profile hls");
        }
        Ok(settings)
    }

    /// The `hls` profile's own settings: the input file sets the segments and their pace.
    fn hls_settings(&self, settings: &mut Settings) -> anyhow::Result<()> {
        let sized = [self.segment_bytes, self.write, self.rate, self.max_lag];
        if sized.iter().any(Option::is_some) {
            bail!(
                "--segment-bytes, --write, --rate and --max-lag are not for --profile hls: the \
                 input file sets the segments and their pace"
            );
        }
        let Some(input) = &self.input else {
            bail!("--profile hls needs --input FILE.ts (an H.264/AAC MPEG-TS file to publish)");
        };
        (settings.segment_bytes, settings.write) = (0, 0);
        settings.max_lag = None;
        settings.hls_mode = Some(self.hls_mode.unwrap_or_default());
        settings.input = Some(input.clone());
        Ok(())
    }

    /// The `live` profile's own settings, and what it cannot do.
    fn live_settings(&self, settings: &mut Settings) -> anyhow::Result<()> {
        if self.max_lag.is_some_and(|k| k > 0) {
            bail!("--max-lag is not for --profile live: the server decides who skips");
        }
        let layout = Layout {
            segment_bytes: settings.segment_bytes,
            write: settings.write,
        };
        if !layout.carries_seq() {
            bail!(
                "--profile live needs writes of at least {HEADER} bytes: each segment's first \
                 write carries its seq"
            );
        }
        let slow_rate = self.slow_rate.unwrap_or(settings.rate / 3);
        if slow_rate == 0 {
            bail!("--profile live needs a --slow-rate above zero (with --rate 0, give one)");
        }
        settings.slow_fraction = Some(self.slow_fraction.unwrap_or(0.1));
        settings.slow_rate = Some(slow_rate);
        Ok(())
    }
}

/// Parses a fraction from 0 to 1, such as `0.1`.
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "invalid fraction {s:?}: expected a number from 0 to 1"
        )),
    }
}
