//! The `_changes` channel: one JSON event per segment, `{"added":[name]}` or `{"removed":[name]}`,
//! written synchronously by whatever created or deleted the channel, so events are in order.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;

use super::channel::Channel;
use crate::protocol::SeqParam;

pub const NAME: &str = "_changes";

pub struct Changefeed {
    channel: OnceLock<Arc<Channel>>,
    /// The next seq to write; the lock also serialises events.
    next_seq: Mutex<u64>,
}

impl Changefeed {
    pub fn new() -> Changefeed {
        Changefeed {
            channel: OnceLock::new(),
            next_seq: Mutex::new(0),
        }
    }

    pub fn attach(&self, channel: Arc<Channel>) {
        let _ = self.channel.set(channel);
    }

    pub fn emit_added(&self, name: &str) {
        self.emit(serde_json::json!({ "added": [name] }));
    }

    pub fn emit_removed(&self, name: &str) {
        self.emit(serde_json::json!({ "removed": [name] }));
    }

    fn emit(&self, event: serde_json::Value) {
        let Some(channel) = self.channel.get() else {
            return;
        };
        let mut seq = self.next_seq.lock();
        let written = channel
            .target_for_write(SeqParam::Index(*seq), false)
            .and_then(|target| channel.start_writing(&target));
        match written {
            Ok(mut writer) => {
                let body = Bytes::from(event.to_string());
                if writer.write(body).is_ok() && writer.finish().is_ok() {
                    *seq += 1;
                }
            }
            Err(err) => tracing::debug!(%err, "changefeed event dropped"),
        }
    }
}
