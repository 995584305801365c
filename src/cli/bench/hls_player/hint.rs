//! `--hls-mode hint`: a Low-Latency HLS player that holds a request open on the next part, as
//! players that follow `EXT-X-PRELOAD-HINT` do, instead of a blocking playlist reload per part.
//!
//! It reads `ll.m3u8` once and GETs the part the preload hint names. The server
//! (`server/llhls.rs`, `part_state`) answers a GET of part `p` of segment `s` at once if that part
//! is complete; holds it until the part is complete if it is the part being made (`p` is the
//! number of parts `s` has and `s` has not ended) or part 0 of the segment after the newest; and
//! answers `404` otherwise. Parts are numbered from 0 in each segment, and nobody can tell
//! beforehand which part of a segment is its last: the remux closes a part once it holds a
//! quarter second of fragments and the last one when the segment ends (`server/remux/index.rs`),
//! and a segment can even end right after a part closed, so that the part a preload hint named is
//! never made.
//!
//! Hence the rule: after part `p` of `s`, the player asks for part `p + 1` of `s`; a `404` for a
//! part `p > 0` (whose part before it the player had, or its playlist listed) means that `s` ended
//! with `p` parts, and the next part is part 0 of `s + 1`, which the server holds until it exists.
//! One `404` per segment is the whole cost: no playlist while following. (A blocking reload
//! `_HLS_msn=s+1&_HLS_part=0` after the `404` would be one more request per segment, answered only
//! once part 0 is complete and listed: part 0 would then come a playlist and a request late.) That
//! `404` is counted as a request, not as an error, and the number of parts it says is checked
//! against the other players' ([`Player::segment_has`]): a `404` taken for an end that was not
//! one would show there.
//!
//! A playlist without a preload hint lists nothing yet (the remux has made no fragment): the
//! player reads it again a part later, which is no error (the warm-up's limit bounds it).
//!
//! Anything else (a `404` for a part 0, such as a seq the remux never made, a `503`, a timeout):
//! the player reads the playlist again and goes on from the part it wanted if the playlist lists
//! it or it is not past the hint, else from the next part listed or hinted (counting as behind).

use std::time::Duration;

use super::{Failed, LowLatency, Player, Since};

/// How long a player waits to read again a playlist that lists nothing yet: about a part.
const NOTHING_YET: Duration = Duration::from_millis(250);

impl Player {
    /// `hint`: part after part, each asked for before it exists, until past the last measured
    /// segment.
    pub(super) async fn hinted(&mut self) -> Result<(), Failed> {
        // The part wanted next, once a playlist said where to start.
        let mut at: Option<(u64, u64)> = None;
        let mut resync = true;
        while !self.done {
            let (seq, part) = match at {
                Some(next) if !resync => next,
                wanted => match self.resync(wanted).await {
                    Ok(next) => {
                        (at, resync) = (Some(next), false);
                        continue;
                    }
                    Err(Failed) => {
                        self.failed().await?;
                        continue;
                    }
                },
            };
            let path = format!("{seq}.{part}.m4s");
            let since = Since::FirstToHave(part);
            match self.fetch(&path, seq, since, part > 0).await {
                Ok(true) => {
                    at = Some((seq, part + 1));
                    self.failures = 0;
                }
                // The segment ended with `part` parts.
                Ok(false) => {
                    self.segment_has(seq, part);
                    self.segment_done(seq);
                    at = Some((seq + 1, 0));
                }
                Err(Failed) => {
                    self.failed().await?;
                    resync = true;
                }
            }
        }
        Ok(())
    }

    /// Reads `ll.m3u8`: where to go on from, given the part `wanted` next (`None`: the first
    /// playlist, which starts at its preload hint).
    async fn resync(&mut self, wanted: Option<(u64, u64)>) -> Result<(u64, u64), Failed> {
        let (view, hint) = loop {
            self.playlist("ll.m3u8").await?;
            let view = LowLatency::read(&self.playlist);
            if let Some(hint) = view.hint {
                break (view, hint);
            }
            // Nothing made yet: the server answers once the remux has an init segment, and lists
            // (and hints) nothing until its first fragment, in a playlist it keeps until the
            // first part is complete. Real players read it again; so does this one, a part later.
            tokio::time::sleep(NOTHING_YET).await;
        };
        self.note_parts(&view);
        self.began();
        let Some(wanted) = wanted else {
            return Ok(hint);
        };
        let wanted = self.roll(wanted, &view);
        // Not past the hint (normally at it): the server holds the request until it is there.
        if wanted >= hint || view.parts.contains(&wanted) {
            return Ok(wanted);
        }
        self.fell_behind();
        let next = view
            .parts
            .iter()
            .copied()
            .find(|&p| p > wanted)
            .unwrap_or(hint);
        // The segments jumped over are done with, as far as this player goes.
        for seq in wanted.0..next.0 {
            self.segment_done(seq);
        }
        Ok(next)
    }
}
