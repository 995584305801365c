//! Older segments at an edge: a relay's copy starts with the segment being written upstream when
//! it starts, but a reader at the edge may ask for an older seq (or a `-N` reaching before it)
//! that the origin still holds. Such a read fetches that one segment from the origin into the
//! copy, where the reader (and any other) then reads it as it arrives: what the edge answers is
//! what the origin would have. Only on demand: nothing older is pulled that nobody asks for.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Relays, State, pull};
use crate::client::{OnGap, SubscribeStart};
use crate::protocol::SeqParam;
use crate::server::Server;
use crate::server::channel::Channel;
use crate::server::segment::Segment;
use crate::server::write::Claim;

impl Relays {
    /// Segment `seq` of the relayed `channel`, which its copy does not hold: fetched from the
    /// origin when older than the copy's first segment, the origin still holds it, and the
    /// edge's ring has room for it (a slot no newer segment, nor the placeholder at the write
    /// head, takes). `None` otherwise: the reader gets the edge's answer (`470`).
    pub(crate) async fn backfill(
        &self,
        server: &Server,
        channel: &Arc<Channel>,
        seq: u64,
    ) -> Option<Arc<Segment>> {
        let source = {
            let relayed = self.relayed.lock();
            let state = relayed.get(channel.name())?.borrow().clone();
            match state {
                State::Pulling(copy, source) if Arc::ptr_eq(&copy, channel) => source,
                _ => return None,
            }
        };
        let fits = |head: u64| seq + server.config().ring as u64 > head + 1;
        if seq >= source.first.load(Ordering::Relaxed) || !fits(channel.next_write()) {
            return None;
        }
        let url = source.url.lock().clone();
        let start = (SubscribeStart::Seq(seq), OnGap::Report);
        let mut upstream = pull::subscribe_with(server, &url, start, &source.via).ok()?;
        let segment = upstream.next_segment().await.ok()??;
        if segment.seq != seq || !fits(channel.next_write()) {
            return None;
        }
        let claim = Claim::new(server, channel.clone(), SeqParam::Index(seq), false);
        let writing = claim.and_then(Claim::start).ok()?;
        let version = channel.segment(seq);
        let stall = server.config().wait_timeout;
        tokio::spawn(pull::copy(writing, segment, stall));
        version
    }
}
