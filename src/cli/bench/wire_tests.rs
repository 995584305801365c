//! The bench's wire subscriber against canned servers over real sockets: keep-alive, jumps,
//! end of stream, broken framing and error answers.

use super::*;
use tokio::net::TcpListener;

/// A server that answers the GETs of each connection it accepts with the next canned
/// responses (one per request, in order across connections), written a few bytes at a time
/// so that every parsing state meets a buffer boundary. A response of `""` closes the
/// connection without answering, one ending in `<close>` closes it after the rest. Returns
/// the target and the request lines it saw.
async fn canned(
    responses: Vec<&'static str>,
) -> (Arc<Target>, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    let responses = Arc::new(parking_lot::Mutex::new(responses.into_iter()));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (responses, seen) = (responses.clone(), seen.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while stream.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                    if !head.ends_with(b"\r\n\r\n") {
                        continue;
                    }
                    let line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap()
                        .into();
                    let _ = seen.send(line);
                    head.clear();
                    let Some(response) = responses.lock().next() else {
                        return;
                    };
                    let (response, close) = match response.strip_suffix("<close>") {
                        Some(response) => (response, true),
                        None => (response, response.is_empty()),
                    };
                    for piece in response.as_bytes().chunks(3) {
                        stream.write_all(piece).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    let url = format!("http://{addr}/base/ch").parse().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-test", "yes".parse().unwrap());
    let target = Target::resolve(&url, &headers).await.unwrap();
    (Arc::new(target), requests)
}

async fn read_segment(subscriber: &mut WireSubscriber) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(bytes) = subscriber.chunk().await.unwrap() {
        body.extend_from_slice(bytes);
    }
    body
}

#[tokio::test]
async fn reads_segments_follows_470s_and_ends_at_end_of_stream() {
    let (target, mut requests) = canned(vec![
        // seq 0: chunked, a chunk extension and a trailer.
        "HTTP/1.1 200 OK\r\nLp-Trickle-Seq: 0\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nx-trailer: 1\r\n\r\n",
        // The preconnect for seq 1: the server's wait timeout, so asked again ...
        "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n",
        // ... then gone from the ring: the write head is 7.
        "HTTP/1.1 470 Gone\r\nLp-Trickle-Latest: 7\r\nContent-Length: 4\r\n\r\ngone",
        // seq 7, delimited by the end of the connection.
        "HTTP/1.1 200 OK\r\nLp-Trickle-Seq: 7\r\n\r\nseven<close>",
        // The preconnect for seq 8: the channel closed.
        "HTTP/1.1 404 Not Found\r\nLp-Trickle-Closed: terminated\r\nContent-Length: 0\r\n\r\n",
    ])
    .await;
    let mut subscriber = WireSubscriber::new(target, 0);
    assert_eq!(subscriber.next_segment().await.unwrap(), Some(0));
    assert_eq!(read_segment(&mut subscriber).await, b"hello!");
    assert_eq!(subscriber.next_segment().await.unwrap(), Some(7));
    assert_eq!(read_segment(&mut subscriber).await, b"seven");
    assert_eq!(subscriber.next_segment().await.unwrap(), None);
    let mut seen = Vec::new();
    while let Ok(line) = requests.try_recv() {
        seen.push(line);
    }
    assert_eq!(
        seen,
        [
            "GET /base/ch/0 HTTP/1.1",
            "GET /base/ch/1 HTTP/1.1",
            "GET /base/ch/1 HTTP/1.1",
            "GET /base/ch/7 HTTP/1.1",
            "GET /base/ch/8 HTTP/1.1"
        ]
    );
}

#[tokio::test]
async fn a_kept_alive_connection_closed_by_the_server_is_replaced() {
    let (target, _requests) = canned(vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
        // Sent on the first connection, kept alive: the server closes it instead.
        "",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc",
    ])
    .await;
    let mut subscriber = WireSubscriber::new(target, 0);
    for (seq, body) in [(0, b"a"), (1, b"b"), (2, b"c")] {
        assert_eq!(subscriber.next_segment().await.unwrap(), Some(seq));
        assert_eq!(read_segment(&mut subscriber).await, body);
    }
}

#[tokio::test]
async fn endless_470s_and_malformed_chunks_are_errors() {
    let gone = "HTTP/1.1 470 Gone\r\nLp-Trickle-Latest: 3\r\nContent-Length: 0\r\n\r\n";
    let (target, _requests) = canned(vec![gone; 20]).await;
    let err = WireSubscriber::new(target, 0)
        .next_segment()
        .await
        .unwrap_err();
    assert_eq!(format!("{err:#}"), "GET /base/ch: still 470 after 10 jumps");

    let (target, mut requests) = canned(vec![
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc",
    ])
    .await;
    let mut subscriber = WireSubscriber::new(target, 0);
    assert_eq!(subscriber.next_segment().await.unwrap(), Some(0));
    let err = subscriber.chunk().await.unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "malformed chunk-size line in a response"
    );
    // The broken connection is gone: the segment has ended and is not read again.
    assert_eq!(subscriber.chunk().await.unwrap(), None);
    assert_eq!(subscriber.next_segment().await.unwrap(), Some(1));
    assert_eq!(read_segment(&mut subscriber).await, b"b");
    assert_eq!(requests.recv().await.unwrap(), "GET /base/ch/0 HTTP/1.1");
}

#[tokio::test]
async fn errors_say_what_the_server_said() {
    let (target, _requests) = canned(vec![
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 22\r\n\r\nforbidden: not yours\n\n",
    ])
    .await;
    let err = WireSubscriber::new(target, 0)
        .next_segment()
        .await
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "GET /base/ch: HTTP 403: forbidden: not yours"
    );
    let (target, _requests) = canned(vec![
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab<close>",
        "",
    ])
    .await;
    let mut subscriber = WireSubscriber::new(target, 0);
    assert_eq!(subscriber.next_segment().await.unwrap(), Some(0));
    assert_eq!(subscriber.chunk().await.unwrap(), Some(&b"a"[..]));
    let mut err = None;
    loop {
        match subscriber.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                err = Some(format!("{e:#}"));
                break;
            }
        }
    }
    assert_eq!(
        err.as_deref(),
        Some("the server closed the connection in the middle of a response body")
    );
}

#[tokio::test]
async fn a_live_view_is_one_response_read_to_its_end() {
    let (target, mut requests) = canned(vec![
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 21\r\n\r\nToo many live viewers",
        "HTTP/1.1 404 Not Found\r\nLp-Trickle-Closed: terminated\r\nContent-Length: 0\r\n\r\n",
    ])
    .await;
    // A small receive buffer changes nothing but how fast the server may send.
    let mut viewer = WireSubscriber::new(target.clone(), 0).with_recv_buffer(4096);
    assert!(viewer.watch("from=next").await.unwrap());
    assert_eq!(read_segment(&mut viewer).await, b"helloabc");
    assert_eq!(
        requests.recv().await.unwrap(),
        "GET /base/ch/live?from=next HTTP/1.1"
    );
    let err = WireSubscriber::new(target.clone(), 0)
        .watch("from=current")
        .await
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "GET /base/ch/live: HTTP 503: Too many live viewers"
    );
    assert!(!WireSubscriber::new(target, 0).watch("").await.unwrap());
}

#[test]
fn heads() {
    let head = parse_head(
        b"HTTP/1.1 200 OK\r\nLp-Trickle-Seq: 7\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    )
    .unwrap()
    .unwrap();
    assert_eq!((head.status, head.seq, head.len), (200, Some(7), 66));
    assert!(head.keep_alive);
    assert_eq!(head.framing, Framing::ChunkSize);
    let head = parse_head(
        b"HTTP/1.1 470 Gone\r\nlp-trickle-latest: 9\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
    )
    .unwrap()
    .unwrap();
    assert_eq!((head.latest, head.framing), (Some(9), Framing::Length(3)));
    assert!(!head.keep_alive);
    assert!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap().is_none());
    assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
}

#[test]
fn chunk_sizes() {
    assert_eq!(chunk_size(b"1f").unwrap(), 31);
    assert_eq!(chunk_size(b"10;ext=1").unwrap(), 16);
    assert!(chunk_size(b"").is_err());
    assert!(chunk_size(b"zz").is_err());
    assert!(chunk_size(b"ffffffffffffffffff").is_err());
}
