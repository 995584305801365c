//! The client [`Subscriber`] against a scripted server over a real socket, for the answers the
//! real server gives only after long waits or never: a wait timeout (`408`) is asked again, a
//! failing status is retried with its backoff and reported with the server's message once the
//! retries are spent, and a gap found again right after a jump is jumped again, the segment still
//! saying where the subscriber first asked.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PATIENCE, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use trickle::client::{ClientError, SubscribeStart, Subscriber, SubscriberOptions};

/// A server that answers each request with the next scripted answer, in order, and records the
/// paths asked for. Once the script is spent it leaves requests unanswered (like a GET waiting
/// for a segment).
struct Scripted {
    url: String,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    async fn start(answers: &[String]) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ch", listener.local_addr().unwrap());
        let answers = Arc::new(Mutex::new(answers.iter().cloned().collect::<VecDeque<_>>()));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let recorded = paths.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(answer_all(stream, answers.clone(), recorded.clone()));
            }
        });
        Scripted { url, paths }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// Answers the requests of one connection from the script.
async fn answer_all(
    mut stream: TcpStream,
    answers: Arc<Mutex<VecDeque<String>>>,
    paths: Arc<Mutex<Vec<String>>>,
) {
    let mut got = Vec::new();
    loop {
        // The subscriber's GETs have no body: a request ends with its head.
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 1024];
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..end]).into_owned();
        got.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or_default().to_string();
        paths.lock().unwrap().push(path);
        let Some(answer) = answers.lock().unwrap().pop_front() else {
            // Held, as a GET for a segment not yet started; the client drops it when done.
            std::future::pending::<()>().await;
            return;
        };
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An answer with `status`, extra `headers` (each `name: value`) and `body`.
fn answer(status: u16, headers: &[&str], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for header in headers {
        out.push_str(header);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

fn subscriber(server: &Scripted, start: SubscribeStart, retries: u32) -> Subscriber {
    let options = SubscriberOptions {
        start,
        retries,
        retry_delay: Duration::from_millis(1),
        ..SubscriberOptions::default()
    };
    Subscriber::new(&server.url, options).unwrap()
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_timeout_is_asked_again_and_a_failing_status_retried() {
    let server = Scripted::start(&[
        answer(408, &["lp-trickle-seq: 0"], "timed out\n"),
        answer(503, &[], "busy\n"),
        answer(
            200,
            &["lp-trickle-seq: 0", "content-type: text/plain"],
            "zero",
        ),
    ])
    .await;
    let mut sub = subscriber(&server, SubscribeStart::Seq(0), 1);
    let segment = within("segment", sub.next_segment())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(segment.seq, 0);
    assert_eq!(segment.jumped_from, None);
    assert_eq!(segment.content_type.as_deref(), Some("text/plain"));
    assert_eq!(segment.read_to_end().await.unwrap(), b"zero");
    // Each answer asked for the same seq again; then the segment after it is preconnected.
    eventually("seq 1 preconnected", || server.paths().len() == 4).await;
    assert_eq!(server.paths(), ["/ch/0", "/ch/0", "/ch/0", "/ch/1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_status_is_reported_with_its_message_once_the_retries_are_spent() {
    let server = Scripted::start(&[
        answer(503, &[], "first\n"),
        answer(503, &[], "second\n"),
        answer(503, &[], "busy right now\nand more detail"),
        answer(200, &["lp-trickle-seq: 4"], "never asked for"),
    ])
    .await;
    let mut sub = subscriber(&server, SubscribeStart::Seq(4), 2);
    match within("error", sub.next_segment()).await {
        Err(ClientError::Http { status, message }) => {
            assert_eq!((status, message.as_str()), (503, "busy right now"));
        }
        other => panic!("expected a 503, got {:?}", other.map(|s| s.map(|s| s.seq))),
    }
    // The first GET and two retries, no more.
    assert_eq!(server.paths(), ["/ch/4", "/ch/4", "/ch/4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_found_again_after_a_jump_is_jumped_again() {
    let server = Scripted::start(&[
        answer(
            470,
            &["lp-trickle-seq: 0", "lp-trickle-latest: 5"],
            "gone\n",
        ),
        // Gone again at once, and no write head given: the subscriber asks for the next segment.
        answer(470, &["lp-trickle-seq: 5"], "gone\n"),
        answer(200, &["lp-trickle-seq: 9", "lp-trickle-latest: 11"], "nine"),
    ])
    .await;
    let mut sub = subscriber(&server, SubscribeStart::Seq(0), 0);
    let segment = within("segment", sub.next_segment())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((segment.seq, segment.latest), (9, Some(11)));
    assert_eq!(segment.jumped_from, Some(0), "where it first asked");
    assert_eq!(segment.read_to_end().await.unwrap(), b"nine");
    eventually("seq 10 preconnected", || server.paths().len() == 4).await;
    assert_eq!(server.paths(), ["/ch/0", "/ch/5", "/ch/-1", "/ch/10"]);
}
