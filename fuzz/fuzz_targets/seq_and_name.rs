//! Seq, channel-name and token-shape parsing: any string, no panic, and what parses is consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trickle::protocol::{self, SeqParam};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(param) = SeqParam::parse(text) {
        // Resolving against any write head never panics, and reading never goes past it + 1.
        for head in [0, 1, 5, u64::MAX / 2] {
            let read = param.resolve_for_read(head);
            if let SeqParam::Relative(_) = param {
                assert!(read <= head);
            }
            // A write never moves the head (seq + 1) past the largest seq a GET takes.
            if let Ok(seq) = param.resolve_for_write(head) {
                assert!(seq < protocol::MAX_SEQ);
            }
        }
    }
    if let Ok(name) = protocol::decode_name(text) {
        if protocol::validate_name(&name, 256).is_ok() {
            // Percent-decoding may give a `/` (`cam%2F1`): allowed, as in the reference.
            assert!(!name.is_empty() && name.len() <= 256);
            assert!(!name.chars().any(char::is_control));
        }
        let _ = protocol::is_reserved(&name);
    }
    let _ = trickle::auth::looks_like_token(text);
});
