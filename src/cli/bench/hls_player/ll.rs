//! `--hls-mode ll`: a Low-Latency HLS player that asks for each next part with a blocking
//! playlist reload (`_HLS_msn`, `_HLS_part`), then GETs the parts the answer lists.

use super::{Failed, LowLatency, Player, Since};

impl Player {
    /// `ll`: part after part until past the last measured segment.
    pub(super) async fn low_latency(&mut self) -> Result<(), Failed> {
        let mut next: Option<(u64, u64)> = None;
        let mut resync = false;
        while !self.done {
            let path = match next {
                Some((msn, part)) if !resync => format!("ll.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
                _ => "ll.m3u8".to_string(),
            };
            if self.playlist(&path).await.is_err() {
                self.failed().await?;
                resync = true;
                continue;
            }
            let now = self.shared.clock.now_ns();
            let view = LowLatency::read(&self.playlist);
            self.note_parts(&view);
            let mut at = match next {
                Some(at) => at,
                // The first playlist: start after its newest part.
                None => view
                    .parts
                    .last()
                    .map_or((0, 0), |&(seq, part)| (seq, part + 1)),
            };
            at = self.roll(at, &view);
            let wanted: Vec<(u64, u64)> = view.parts.iter().copied().filter(|&p| p >= at).collect();
            if next.is_some() && wanted.first().is_some_and(|&first| first != at) {
                self.fell_behind();
                at = wanted[0];
            }
            self.began();
            let named: Vec<u64> = wanted
                .iter()
                .map(|&(seq, part)| match self.channel.measured(seq) {
                    true => self.channel.first_named(seq, part, now),
                    false => 0,
                })
                .collect();
            resync = false;
            for (&(seq, part), &first) in wanted.iter().zip(&named).filter(|_| next.is_some()) {
                if self
                    .media(&format!("{seq}.{part}.m4s"), seq, Since::At(first))
                    .await
                    .is_err()
                {
                    self.failed().await?;
                    resync = true;
                    break;
                }
                at = (seq, part + 1);
            }
            next = Some(self.roll(at, &view));
            self.failures = if resync { self.failures } else { 0 };
        }
        Ok(())
    }

    /// `at`, or past the segments the playlist lists whole that `at` is the end of: each one
    /// passed is done.
    pub(super) fn roll(&mut self, mut at: (u64, u64), view: &LowLatency) -> (u64, u64) {
        while view.complete.contains(&at.0) {
            let listed = view.parts.iter().filter(|p| p.0 == at.0).count() as u64;
            if listed > at.1 {
                break;
            }
            if listed == 0 && self.ready {
                // Whole, but its parts are no longer listed: the ones left were missed.
                self.fell_behind();
            }
            self.segment_done(at.0);
            at = (at.0 + 1, 0);
        }
        at
    }

    /// Notes the parts of measured segments listed whole.
    pub(super) fn note_parts(&self, view: &LowLatency) {
        for &seq in &view.complete {
            let parts = view.parts.iter().filter(|p| p.0 == seq).count() as u64;
            if parts > 0 {
                self.segment_has(seq, parts);
            }
        }
    }

    /// Notes that segment `seq` has `parts` parts, if measured: an error if another player found
    /// another count.
    pub(super) fn segment_has(&self, seq: u64, parts: u64) {
        if self.channel.measured(seq)
            && let Err(noted) = self.channel.note_parts(seq, parts)
        {
            self.shared.totals.error(format!(
                "segment {seq}: {parts} parts for one player, {noted} for another"
            ));
        }
    }
}
