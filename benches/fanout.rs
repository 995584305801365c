//! Fan-out of one segment to many readers, in process (no HTTP): the counterpart of the Go
//! reference's `BenchmarkSegmentFanout` / `...SmallWrites`. One writer appends 8 MiB to a fresh
//! segment in 32 KiB or 1300-byte writes while 1, 2, 5, 15 or 40 readers read it to the end.
//! Throughput is aggregate: bytes delivered to all readers per second.
//!
//! Two writer variants: `shared` hands the segment `Bytes` it already owns (what the HTTP path does:
//! hyper delivers request body frames as `Bytes`, which the segment keeps without copying), and
//! `copied` copies every write from a plain slice first (what the Go benchmark's writer does).
//!
//! Run: `cargo bench --bench fanout`

use bytes::Bytes;

// The allocator the `trickle` binary uses (see src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use trickle::server::segment::Segment;

const SEGMENT: usize = 8 << 20;

async fn fan_out(data: &Bytes, write: usize, readers: usize, copy: bool) {
    let segment = Segment::new(0);
    let mut writer = segment.try_claim(1, u64::MAX).expect("fresh");
    let tasks: Vec<_> = (0..readers)
        .map(|_| {
            let mut reader = segment.reader();
            tokio::spawn(async move {
                let mut total = 0;
                while let Some(chunk) = reader.next_chunk().await.expect("complete") {
                    total += chunk.len();
                }
                total
            })
        })
        .collect();
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + write).min(data.len());
        let piece = if copy {
            Bytes::copy_from_slice(&data[offset..end])
        } else {
            data.slice(offset..end)
        };
        writer.write(piece).expect("write");
        offset = end;
    }
    writer.finish().expect("finish");
    for task in tasks {
        assert_eq!(task.await.unwrap(), SEGMENT);
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let data = Bytes::from((0..SEGMENT).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    for (label, write, copy) in [
        ("32KiB-writes/shared", 32 * 1024, false),
        ("1300B-writes/shared", 1300, false),
        ("32KiB-writes/copied", 32 * 1024, true),
        ("1300B-writes/copied", 1300, true),
    ] {
        let mut group = c.benchmark_group(format!("fanout/{label}"));
        for readers in [1, 2, 5, 15, 40] {
            group.throughput(Throughput::Bytes((SEGMENT * readers) as u64));
            group.bench_with_input(BenchmarkId::from_parameter(readers), &readers, |b, &n| {
                b.to_async(&runtime).iter(|| fan_out(&data, write, n, copy));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
