//! The publisher of each channel of an `hls` run: `--input` checked once, then published in real
//! time, pass after pass, through `trickle publish --mpegts`'s own loop ([`publish_all`]) and
//! segmenter (one GOP a segment, paced by the stream's clock). Each pass is cut afresh, so the
//! players see a discontinuity where the file starts over. It notes when each segment's last byte
//! was written (the polling players' reference) and which seq it is on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;

use super::super::publish::{Follow, describe, publish_all};
use super::super::source::{Rule, Source};
use super::hls::{HlsChannel, HlsShared};
use crate::client::Publisher;
use crate::media::mpegts::{Event, Segmenter, SegmenterConfig};

/// Bytes of `--input` read at most to find where a segment can start.
const INPUT_CHECK: u64 = 32 << 20;

/// Fails with one line unless `path` opens and reads as MPEG-TS that a segment can start in
/// (tables, then a keyframe; the project's segmenter decides).
pub(super) async fn check_input(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open --input {shown}"))?;
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let (mut buf, mut events, mut read) = (vec![0; 64 << 10], Vec::new(), 0u64);
    while read < INPUT_CHECK {
        let n = file
            .read(&mut buf)
            .await
            .with_context(|| format!("cannot read --input {shown}"))?;
        match buf.get(..n) {
            Some(bytes) if n > 0 => segmenter.push(bytes, &mut events),
            _ => segmenter.finish(&mut events),
        }
        if events.iter().any(|e| matches!(e, Event::Start { .. })) {
            return Ok(());
        }
        if n == 0 {
            break;
        }
        events.clear();
        read += n as u64;
    }
    bail!("--input {shown} is not MPEG-TS with a keyframe to start at (an H.264/AAC .ts file)")
}

/// Publishes `input` to `channel` in real time, over and over, until the run releases it;
/// returns the publisher to delete the channel with. A failure stops the run.
pub(super) async fn publish(
    mut publisher: Publisher,
    channel: Arc<HlsChannel>,
    shared: Arc<HlsShared>,
    input: PathBuf,
) -> Publisher {
    let mut follow = Timing {
        channel: channel.clone(),
        shared: shared.clone(),
    };
    let result = tokio::select! {
        result = publish_passes(&mut publisher, &input, &mut follow) => result,
        _ = channel.release.cancelled() => Ok(()),
    };
    if let Err(err) = result {
        shared
            .totals
            .error(format!("publisher of {}: {err:#}", channel.url));
        shared.stop.cancel();
    }
    publisher
}

/// Pass after pass of `input`, each cut afresh: `trickle publish --mpegts --realtime`'s loop.
async fn publish_passes(
    publisher: &mut Publisher,
    input: &Path,
    follow: &mut Timing,
) -> anyhow::Result<()> {
    loop {
        let file = tokio::fs::File::open(input)
            .await
            .with_context(|| format!("cannot open --input {}", input.display()))?;
        let mut source = Source::new(file, Rule::mpegts(SegmenterConfig::default(), true));
        let url = publisher.url().to_string();
        publish_all(publisher, &mut source, follow)
            .await
            .map_err(|err| describe(err, &url))?;
    }
}

/// Follows a channel's publish loop: counts its bytes, notes when each segment was written.
struct Timing {
    channel: Arc<HlsChannel>,
    shared: Arc<HlsShared>,
}

impl Follow for Timing {
    fn bytes(&mut self, n: u64) {
        if self.shared.measuring.load(Ordering::Relaxed) {
            let published = &self.shared.totals.published_bytes;
            published.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn written(&mut self, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.channel.note_written(seq, self.shared.clock.now_ns());
        }
    }

    fn segment(&mut self, seq: u64) {
        self.channel.note_published(seq);
    }
}
