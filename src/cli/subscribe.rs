//! `trickle subscribe URL`: follows a channel and writes its segments to stdout back to back (for a
//! player or `ffprobe -`), or one file per segment with `--output-dir`. Jumps over gaps, segments
//! whose publisher failed, and the end of the stream are reported on stderr; connection failures
//! are retried with backoff.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::ClientArgs;
use super::progress::Progress;
use crate::client::{ClientError, Segment, SubscribeStart, Subscriber, SubscriberOptions};

#[derive(Args, Debug)]
pub struct SubscribeArgs {
    /// Channel URL, e.g. http://localhost:2939/demo
    pub url: String,
    /// Where to start: `next` (the next segment to begin), `current` (the one being written, from
    /// its first byte), a seq `N`, or `-N` (N−1 segments before the next one).
    #[arg(
        long,
        env = "TRICKLE_START",
        default_value = "next",
        allow_hyphen_values = true
    )]
    pub start: SubscribeStart,
    /// Stop after this many segments.
    #[arg(long, env = "TRICKLE_COUNT")]
    pub count: Option<u64>,
    /// Write each segment to its own file in this directory (`00000042.ts`) instead of stdout.
    /// A file appears only when its segment is complete.
    #[arg(long, env = "TRICKLE_OUTPUT_DIR")]
    pub output_dir: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Where segment bytes go.
enum Sink {
    Stdout(tokio::io::Stdout),
    Dir(PathBuf),
}

pub async fn run(args: SubscribeArgs) -> anyhow::Result<()> {
    let mut sink = match &args.output_dir {
        Some(dir) => {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Sink::Dir(dir.clone())
        }
        None => Sink::Stdout(tokio::io::stdout()),
    };
    let options = SubscriberOptions {
        start: args.start,
        connect: args.client.connect_options()?,
        // Ride out a server restart: about a minute of retries with backoff.
        retries: 15,
        ..SubscriberOptions::default()
    };
    let mut subscriber = Subscriber::new(&args.url, options)?;
    let mut progress = Progress::new("received");
    let result = tokio::select! {
        result = follow(&mut subscriber, &mut sink, args.count, &mut progress) => result,
        _ = super::shutdown_signal() => Ok(()),
    };
    progress.finish();
    match result {
        Ok(()) => Ok(()),
        Err(err) => match err.downcast_ref::<std::io::Error>() {
            // The reader of stdout went away (`| head`, a player closed): a normal way to stop.
            Some(io) if io.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            _ => Err(err),
        },
    }
}

async fn follow(
    subscriber: &mut Subscriber,
    sink: &mut Sink,
    count: Option<u64>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let mut done = 0u64;
    while count.is_none_or(|c| done < c) {
        let segment = match subscriber.next_segment().await {
            Ok(Some(segment)) => segment,
            Ok(None) => {
                progress.note("end of stream");
                return Ok(());
            }
            // Gone after we read from it: it was deleted between two segments.
            Err(ClientError::StreamNotFound) if done > 0 => {
                progress.note("end of stream (the channel was deleted)");
                return Ok(());
            }
            Err(ClientError::StreamNotFound) => {
                bail!("channel not found: {}", subscriber.url())
            }
            Err(err) => {
                return Err(err).with_context(|| format!("subscribing to {}", subscriber.url()));
            }
        };
        if let Some(from) = segment.jumped_from {
            progress.note(&format!(
                "seq {from} is no longer available: jumped to {} ({} segments missed)",
                segment.seq,
                segment.seq.saturating_sub(from)
            ));
        }
        let seq = segment.seq;
        match copy_segment(segment, sink, progress).await? {
            Ok(_) => progress.segment(seq),
            Err(err) => progress.note(&format!("{err}; going on with the next segment")),
        }
        done += 1;
    }
    Ok(())
}

/// Copies one segment to the sink. The outer error is the sink's (fatal); the inner one a failed
/// segment (reported, then the subscriber goes on).
async fn copy_segment(
    mut segment: Segment,
    sink: &mut Sink,
    progress: &mut Progress,
) -> anyhow::Result<Result<(), ClientError>> {
    // A segment file is written as `.part` and renamed only once it is complete.
    let mut file = None;
    let out: &mut (dyn AsyncWrite + Unpin + Send) = match sink {
        Sink::Stdout(out) => out,
        Sink::Dir(dir) => {
            let ext = extension(segment.content_type.as_deref());
            let path = dir.join(format!("{:08}.{ext}", segment.seq));
            let partial = path.with_extension(format!("{ext}.part"));
            let created = tokio::fs::File::create(&partial)
                .await
                .with_context(|| format!("cannot create {}", partial.display()))?;
            &mut file.insert((created, partial, path)).0
        }
    };
    let outcome = loop {
        match segment.chunk().await {
            Ok(Some(bytes)) => {
                progress.bytes(bytes.len() as u64);
                out.write_all(&bytes).await?;
                // A player on stdout gets every chunk as it arrives.
                out.flush().await?;
            }
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    if let Some((created, partial, path)) = file {
        drop(created);
        match &outcome {
            Ok(()) => tokio::fs::rename(&partial, &path).await?,
            // An incomplete segment is never left looking like a whole one.
            Err(_) => tokio::fs::remove_file(&partial).await?,
        }
    }
    Ok(outcome)
}

/// A file extension for a segment's MIME type.
fn extension(content_type: Option<&str>) -> &'static str {
    let mime = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "video/mp2t" => "ts",
        "video/mp4" => "mp4",
        "application/json" => "json",
        "application/jsonl" | "application/x-ndjson" => "jsonl",
        "text/plain" => "txt",
        "audio/aac" => "aac",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        assert_eq!(extension(Some("video/MP2T")), "ts");
        assert_eq!(extension(Some("application/json; charset=utf-8")), "json");
        assert_eq!(extension(None), "bin");
    }
}
