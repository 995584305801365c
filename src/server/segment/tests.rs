//! The segment buffer on its own: one writer, many readers, races between them, failures.

use super::*;

fn claim(seg: &Arc<Segment>) -> SegmentWriter {
    seg.try_claim(1, u64::MAX).expect("fresh")
}

#[tokio::test]
async fn readers_get_every_byte_across_merges() {
    let seg = Segment::new(0);
    let mut w = claim(&seg);
    let mut expected = Vec::new();
    let mut early = seg.reader();
    let mut early_got = Vec::new();
    for i in 0..1000u32 {
        let piece: Vec<u8> = (0..(i % 7 + 1)).map(|j| (i + j) as u8).collect();
        expected.extend_from_slice(&piece);
        w.write(Bytes::from(piece)).unwrap();
        if i % 10 == 5 {
            // A reader positioned inside a run that is merged later must not notice.
            early_got.extend_from_slice(&early.next_chunk().await.unwrap().unwrap());
        }
    }
    w.write(Bytes::from(vec![9u8; 100_000])).unwrap();
    expected.extend(std::iter::repeat_n(9u8, 100_000));
    w.finish().unwrap();
    early_got.extend(early.read_to_end().await.unwrap());
    assert_eq!(early_got, expected);
    assert_eq!(seg.reader().read_to_end().await.unwrap(), expected);
    let chunks = seg.inner.read().chunks.len();
    assert!(
        chunks < 1000 / 32,
        "small writes were not merged: {chunks} chunks"
    );
}

#[tokio::test]
async fn a_dropped_writer_fails_the_version() {
    let seg = Segment::new(3);
    let mut w = claim(&seg);
    w.write(Bytes::from_static(b"hello")).unwrap();
    let mut r = seg.reader();
    assert_eq!(&r.next_chunk().await.unwrap().unwrap()[..], b"hello");
    drop(w);
    assert!(matches!(r.next_chunk().await, Err(ReadError::Failed)));
    assert_eq!(seg.wait_started().await, Start::Failed);
}

#[tokio::test]
async fn size_limit_fails_the_version() {
    let seg = Segment::new(0);
    let mut w = seg.try_claim(1, 10).unwrap();
    w.write(Bytes::from_static(b"0123456789")).unwrap();
    assert_eq!(w.write(Bytes::from_static(b"x")), Err(WriteError::TooLarge));
    assert!(matches!(
        seg.reader().read_to_end().await,
        Err(ReadError::Failed)
    ));
}

#[tokio::test]
async fn over_budget_fails_the_version_and_a_drop_gives_the_bytes_back() {
    let budget = Budget::new(10);
    let first = Segment::with_budget(0, budget.clone());
    let mut w = first.try_claim(1, u64::MAX).unwrap();
    w.write(Bytes::from_static(b"012345")).unwrap();
    w.finish().unwrap();
    let second = Segment::with_budget(1, budget.clone());
    let mut w = second.try_claim(1, u64::MAX).unwrap();
    let waiting = second.clone();
    let waiter = tokio::spawn(async move { waiting.wait_started().await });
    let refused = WriteError::OverBudget {
        buffered: 6,
        limit: 10,
    };
    assert_eq!(w.write(Bytes::from_static(b"abcde")), Err(refused));
    // Refused at its first byte: it fails rather than looking like an empty segment.
    assert_eq!(waiter.await.unwrap(), Start::Failed);
    assert!(matches!(
        second.reader().read_to_end().await,
        Err(ReadError::Failed)
    ));
    assert_eq!(first.reader().read_to_end().await.unwrap(), b"012345");
    assert_eq!((budget.used(), budget.refusals()), (6, 1));
    let reader = first.reader();
    drop(first);
    assert_eq!(budget.used(), 6, "a reader keeps the version alive");
    drop(reader);
    assert_eq!(budget.used(), 0);
}

#[tokio::test]
async fn evicted_placeholder_ends_waiters() {
    let seg = Segment::new(6);
    let waiter = {
        let seg = seg.clone();
        tokio::spawn(async move { seg.wait_started().await })
    };
    tokio::task::yield_now().await;
    seg.remove_from_ring(Removal::Evicted, 0);
    assert_eq!(waiter.await.unwrap(), Start::Evicted);
    assert!(seg.try_claim(1, 100).is_none());
}

// Races between the writer and readers starting at the same moment, many times over.

/// Runs `iterations` of: a fresh segment, `readers` readers started, then `write` and close.
async fn write_close_race(iterations: usize, prefill: Option<&'static [u8]>, expected: &[u8]) {
    for i in 0..iterations {
        let segment = Segment::new(0);
        let mut writer = segment.try_claim(1, u64::MAX).unwrap();
        if let Some(prefill) = prefill {
            writer.write(Bytes::from_static(prefill)).unwrap();
        }
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let mut reader = segment.reader();
                tokio::spawn(async move { reader.read_to_end().await })
            })
            .collect();
        tokio::task::yield_now().await;
        writer.write(Bytes::from_static(b"b")).unwrap();
        writer.finish().unwrap();
        for reader in readers {
            let got = reader.await.unwrap().unwrap();
            assert_eq!(got, expected, "iteration {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s40_write_then_close_never_ends_a_reader_early() {
    write_close_race(200_000, None, b"b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s41_prefilled_write_then_close_never_ends_a_reader_early() {
    write_close_race(200_000, Some(b"a"), b"ab").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s42_fan_out_stress_is_byte_exact() {
    let data = Bytes::from(
        (0..8u32 << 20)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect::<Vec<u8>>(),
    );
    for round in 0..200 {
        let segment = Segment::new(round);
        let mut writer = segment.try_claim(1, u64::MAX).unwrap();
        let readers: Vec<_> = (0..15)
            .map(|_| {
                let mut reader = segment.reader();
                let data = data.clone();
                tokio::spawn(async move {
                    let mut pos = 0;
                    while let Some(chunk) = reader.next_chunk().await.unwrap() {
                        assert!(
                            chunk[..] == data[pos..pos + chunk.len()],
                            "bytes differ at {pos}"
                        );
                        pos += chunk.len();
                    }
                    pos
                })
            })
            .collect();
        let mut offset = 0;
        while offset < data.len() {
            let end = (offset + 32 * 1024).min(data.len());
            writer.write(data.slice(offset..end)).unwrap();
            offset = end;
            if offset % (1 << 20) == 0 {
                tokio::task::yield_now().await;
            }
        }
        writer.finish().unwrap();
        for reader in readers {
            assert_eq!(reader.await.unwrap(), data.len(), "round {round}");
        }
    }
}
