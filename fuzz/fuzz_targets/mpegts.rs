//! The MPEG-TS segmenter on arbitrary bytes in arbitrary pieces: no panic, and its output keeps its
//! promises (a Start first, whole 188-byte packets that begin with the sync byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trickle::media::mpegts::{Event, Segmenter, SegmenterConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut events = Vec::new();
    // Feed in pieces whose size the first byte picks, so packet boundaries fall anywhere.
    let piece = usize::from(split).max(1);
    for chunk in input.chunks(piece) {
        segmenter.push(chunk, &mut events);
    }
    segmenter.finish(&mut events);
    let mut started = false;
    for event in &events {
        match event {
            Event::Start { .. } => started = true,
            Event::Data(bytes) => {
                assert!(started, "data before the first Start");
                assert_eq!(bytes.len() % 188, 0, "a partial packet");
                assert!(
                    bytes.chunks(188).all(|p| p[0] == 0x47),
                    "a packet without sync byte"
                );
            }
            Event::Clock(_) => {}
        }
    }
});
