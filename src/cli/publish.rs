//! `trickle publish URL [FILE|-]`: reads stdin or a file and publishes it to a channel as segments,
//! cut by size, time, line or MPEG-TS keyframe ([`super::source`]). Each segment streams to the
//! server as it is read, so subscribers see bytes with no added delay. SIGINT/SIGTERM end the input:
//! the current segment is finished, and `--delete-on-exit` deletes the channel.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::io::AsyncRead;

use super::progress::Progress;
use super::source::{Piece, Rule, Source};
use super::{ClientArgs, parse_duration, parse_size};
use crate::client::{ClientError, PublishStart, Publisher, PublisherOptions};
use crate::media::mpegts::SegmenterConfig;

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Channel URL, e.g. http://localhost:2939/demo
    pub url: String,
    /// File to publish; `-` (the default) reads stdin.
    #[arg(default_value = "-")]
    pub input: String,
    /// Cut a segment every N bytes (`64KiB`, `1MB`, `1300`).
    #[arg(long, env = "TRICKLE_SEGMENT_BYTES", value_parser = parse_size, conflicts_with_all = ["lines"])]
    pub segment_bytes: Option<u64>,
    /// Cut a segment this long after its first byte (`2s`, `500ms`). With --mpegts: the shortest
    /// segment, cut at the first keyframe after it (audio-only streams: the segment length, 2s if unset).
    #[arg(long, env = "TRICKLE_SEGMENT_TIME", value_parser = parse_duration, conflicts_with = "lines")]
    pub segment_time: Option<Duration>,
    /// One segment per input line (JSON events, logs); the newline is not sent.
    #[arg(long, env = "TRICKLE_LINES", conflicts_with = "mpegts")]
    pub lines: bool,
    /// The input is MPEG-TS: cut at video keyframes, every segment starting with PAT, PMT and a
    /// keyframe so that it decodes on its own.
    #[arg(long, env = "TRICKLE_MPEGTS", conflicts_with = "segment_bytes")]
    pub mpegts: bool,
    /// Pace an MPEG-TS input by its timestamps, like `ffmpeg -re` (for files).
    #[arg(long, env = "TRICKLE_REALTIME", requires = "mpegts")]
    pub realtime: bool,
    /// Create the channel first (`POST /{channel}`; needs a server with autocreate).
    #[arg(long, env = "TRICKLE_CREATE")]
    pub create: bool,
    /// MIME type of the segments [default: video/mp2t with --mpegts, application/json with
    /// --lines, else application/octet-stream].
    #[arg(long, env = "TRICKLE_CONTENT_TYPE")]
    pub content_type: Option<String>,
    /// Delete the channel when the input ends (its subscribers get end of stream).
    #[arg(long, env = "TRICKLE_DELETE_ON_EXIT")]
    pub delete_on_exit: bool,
    /// First seq: a number, or `head` for the server's write head.
    #[arg(long, env = "TRICKLE_START", default_value = "0", value_parser = parse_start)]
    pub start: PublishStart,
    /// Announce a restarted publisher (`Lp-Trickle-Reset`): the server closes older segments.
    #[arg(long, env = "TRICKLE_RESET")]
    pub reset: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_start(s: &str) -> Result<PublishStart, String> {
    if s == "head" {
        return Ok(PublishStart::WriteHead);
    }
    s.parse()
        .map(PublishStart::Seq)
        .map_err(|_| format!("invalid start {s:?}: expected a seq or `head`"))
}

impl PublishArgs {
    fn rule(&self) -> anyhow::Result<Rule> {
        if self.mpegts {
            let config = SegmenterConfig {
                min_duration: self.segment_time.unwrap_or(Duration::ZERO),
                audio_duration: self.segment_time.unwrap_or(Duration::from_secs(2)),
            };
            if config.audio_duration.is_zero() {
                bail!("--segment-time must be greater than zero");
            }
            return Ok(Rule::mpegts(config, self.realtime));
        }
        if self.lines {
            return Ok(Rule::Lines);
        }
        if self.segment_bytes == Some(0) {
            bail!("--segment-bytes must be greater than zero");
        }
        if self.segment_time.is_some_and(|t| t.is_zero()) {
            bail!("--segment-time must be greater than zero");
        }
        Ok(Rule::Size {
            bytes: self.segment_bytes,
            time: self.segment_time,
        })
    }

    fn content_type(&self) -> String {
        match &self.content_type {
            Some(t) => t.clone(),
            None if self.mpegts => "video/mp2t".into(),
            None if self.lines => "application/json".into(),
            None => "application/octet-stream".into(),
        }
    }
}

async fn open_input(path: &str) -> anyhow::Result<Box<dyn AsyncRead + Send + Unpin>> {
    if path == "-" {
        return Ok(Box::new(tokio::io::stdin()));
    }
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {path}"))?;
    Ok(Box::new(file))
}

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let rule = args.rule()?;
    let input = open_input(&args.input).await?;
    let options = PublisherOptions {
        content_type: args.content_type(),
        connect: args.client.connect_options()?,
        start: args.start,
        reset: args.reset,
        ..PublisherOptions::default()
    };
    let mut publisher = Publisher::new(&args.url, options)?;
    if args.create {
        publisher
            .create()
            .await
            .with_context(|| format!("cannot create {}", args.url))?;
    }
    let mut source = Source::new(input, rule);
    let mut progress = Progress::new("published");
    let result = tokio::select! {
        result = publish_all(&mut publisher, &mut source, &mut progress) => result,
        _ = super::shutdown_signal() => {
            // The current segment is abandoned mid-way: its subscribers see an abnormal end.
            eprintln!("trickle publish: interrupted");
            Ok(())
        }
    };
    progress.finish();
    if let Some(stats) = source.mpegts_stats()
        && (stats.skipped_bytes > 0 || stats.dropped_before_keyframe > 0)
    {
        eprintln!(
            "trickle publish: MPEG-TS input: skipped {} bytes ({} resyncs), dropped {} packets before the first keyframe",
            stats.skipped_bytes, stats.resyncs, stats.dropped_before_keyframe
        );
    }
    let deleted = if args.delete_on_exit {
        Some(publisher.close().await)
    } else {
        None
    };
    result.map_err(|err| describe(err, &args.url))?;
    if let Some(deleted) = deleted {
        deleted.with_context(|| format!("cannot delete {}", args.url))?;
    }
    Ok(())
}

/// What a publish loop tells whoever follows it: `trickle publish`'s [`Progress`], or the bench's
/// `hls` profile, which times segments by it.
pub(super) trait Follow {
    /// `n` more bytes of the current segment are being handed to the connection.
    fn bytes(&mut self, n: u64);
    /// Every byte of segment `seq` is written; the server's answer comes next.
    fn written(&mut self, _seq: Option<u64>) {}
    /// The server took segment `seq` whole.
    fn segment(&mut self, seq: u64);
}

impl Follow for Progress {
    fn bytes(&mut self, n: u64) {
        Progress::bytes(self, n);
    }

    fn segment(&mut self, seq: u64) {
        Progress::segment(self, seq);
    }
}

/// Publishes every segment of `source`.
pub(super) async fn publish_all(
    publisher: &mut Publisher,
    source: &mut Source,
    follow: &mut impl Follow,
) -> Result<(), PublishError> {
    loop {
        // A segment is opened only once its first byte exists.
        let first = loop {
            match source.next().await.map_err(PublishError::Input)? {
                Some(Piece::Data(data)) if !data.is_empty() => break data,
                Some(_) => continue,
                None => return Ok(()),
            }
        };
        let mut segment = publisher.next_segment();
        follow.bytes(first.len() as u64);
        segment.write(first).await?;
        loop {
            match source.next().await {
                Ok(Some(Piece::Data(data))) => {
                    follow.bytes(data.len() as u64);
                    segment.write(data).await?;
                }
                Ok(Some(Piece::Cut)) | Ok(None) => break,
                Err(err) => {
                    // Broken input: the segment must not look complete to its subscribers.
                    segment.abort();
                    return Err(PublishError::Input(err));
                }
            }
        }
        follow.written(segment.seq());
        let seq = segment.finish().await?;
        follow.segment(seq);
    }
}

#[derive(Debug)]
pub(super) enum PublishError {
    Input(std::io::Error),
    Client(ClientError),
}

impl From<ClientError> for PublishError {
    fn from(err: ClientError) -> Self {
        PublishError::Client(err)
    }
}

/// A one-line explanation of why publishing stopped.
pub(super) fn describe(err: PublishError, url: &str) -> anyhow::Error {
    match err {
        PublishError::Input(err) => anyhow::anyhow!("reading the input failed: {err}"),
        PublishError::Client(ClientError::StreamNotFound) => anyhow::anyhow!(
            "channel not found: {url} (create it with --create, or start the server with autocreate)"
        ),
        PublishError::Client(ClientError::EndOfStream) => {
            anyhow::anyhow!("the channel was closed (end of stream): {url}")
        }
        PublishError::Client(err) => anyhow::anyhow!("publishing to {url} failed: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start() {
        assert_eq!(parse_start("head"), Ok(PublishStart::WriteHead));
        assert_eq!(parse_start("42"), Ok(PublishStart::Seq(42)));
        assert!(parse_start("-1").is_err());
        assert!(parse_start("later").is_err());
    }
}
