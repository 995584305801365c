//! Segment facts over real sockets, without ffmpeg: every channel's segments know their size and
//! when they started and ended; an MPEG-TS channel fed bytes that are not a transport stream
//! reports no timing (rather than a wrong one), and a failed segment has an end but no timing.
//! The timing of real MPEG-TS is checked in `tests/ffmpeg.rs`.

mod common;

use std::time::SystemTime;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segment_knows_its_size_and_times() {
    let s = TestServer::start().await;
    let before = SystemTime::now();
    let body = pattern(100_000, 7);
    let r = publish_chunked(&s, "/plain/0", &body, 4096).await;
    assert_eq!(r.status, 200);
    let facts = s.server.channel("plain").unwrap().segment_facts(0).unwrap();
    assert_eq!(facts.bytes, body.len() as u64);
    let (started, ended) = (facts.started_at.unwrap(), facts.ended_at.unwrap());
    assert!(before <= started && started <= ended && ended <= SystemTime::now());
    // Not MPEG-TS: not measured.
    assert_eq!(
        (facts.first_pts, facts.duration, facts.starts_with_keyframe),
        (None, None, None)
    );
    assert!(
        s.server
            .channel("plain")
            .unwrap()
            .segment_facts(1)
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpegts_garbage_and_failures_have_no_timing() {
    let s = TestServer::start().await;
    s.request_with("POST", "/ts", &[("Expect-Content", "video/mp2t")], b"")
        .await;
    // Sync bytes where packets would start, random bytes between them.
    let mut garbage = pattern(188 * 50, 3);
    for packet in garbage.chunks_mut(188) {
        packet[0] = 0x47;
    }
    assert_eq!(
        publish_chunked(&s, "/ts/0", &garbage, 1000).await.status,
        200
    );
    let channel = s.server.channel("ts").unwrap();
    let facts = channel.segment_facts(0).unwrap();
    assert_eq!(facts.bytes, garbage.len() as u64);
    assert_eq!((facts.first_pts, facts.duration), (None, None));

    // A publisher that disappears mid-segment: the segment fails, with an end and no timing.
    let mut publisher = s.connect().await;
    publisher.start_post("/ts/1").await;
    publisher.chunk(&garbage[..1000]).await;
    eventually("the segment has its first byte", || {
        channel.segment_facts(1).is_some_and(|f| f.bytes == 1000)
    })
    .await;
    drop(publisher);
    eventually("the segment ends", || {
        channel
            .segment_facts(1)
            .is_some_and(|f| f.ended_at.is_some())
    })
    .await;
    assert_eq!(channel.segment_facts(1).unwrap().duration, None);
    assert_eq!(s.get("/ts/1").await.status, 470, "failed, not served");
}
