//! `--hls-mode polling`: a plain HLS player that polls `index.m3u8` every half target duration
//! and GETs each new `.ts` segment.

use std::time::Duration;

use tokio::time::Instant;

use super::{Failed, Line, Player, Since, lines};

impl Player {
    /// `polling`: reads the playlist every half target duration and fetches each new segment.
    pub(super) async fn polling(&mut self) -> Result<(), Failed> {
        let mut last = None;
        while !self.done {
            let polled = Instant::now();
            if self.playlist("index.m3u8").await.is_err() {
                self.failed().await?;
                continue;
            }
            let text = String::from_utf8_lossy(&self.playlist);
            let listed: Vec<(u64, String)> = lines(&text)
                .filter_map(|line| match line {
                    Line::Segment { seq, uri } => Some((seq, uri.to_string())),
                    _ => None,
                })
                .collect();
            let half = Duration::from_millis(self.target * 500);
            match last {
                // The first playlist (the server answers it once a segment is listed): start after
                // its newest segment. Players that began together would poll together; real ones
                // poll at any moment of the interval, so each polls next `phase` into it.
                None => {
                    last = listed.last().map(|s| s.0);
                    if last.is_some() {
                        self.began();
                        tokio::time::sleep(half.mul_f64(self.phase)).await;
                        continue;
                    }
                }
                Some(_) => self.fetch_new(listed, &mut last).await?,
            }
            self.failures = 0;
            tokio::time::sleep_until(polled + half).await;
        }
        Ok(())
    }

    /// GETs the segments `listed` after `last`, in order.
    async fn fetch_new(
        &mut self,
        listed: Vec<(u64, String)>,
        last: &mut Option<u64>,
    ) -> Result<(), Failed> {
        for (seq, uri) in listed {
            let from = last.map_or(0, |last| last + 1);
            if seq < from {
                continue;
            }
            if seq > from {
                self.fell_behind();
            }
            let written = self.channel.written(seq).unwrap_or(u64::MAX);
            let result = self.media(&uri, seq, Since::At(written)).await;
            *last = Some(seq);
            self.segment_done(seq);
            if result.is_err() {
                self.failed().await?;
            }
        }
        Ok(())
    }
}
