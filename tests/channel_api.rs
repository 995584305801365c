//! The channel API over real sockets: `GET /_channels` and `GET /_channels/{name}` as JSON with
//! the figures of publishers, subscribers and live viewers, and `GET /_events` as Server-Sent
//! Events (the first list, then channels added and removed, publishers started and stopped,
//! viewer counts; a watcher that fell behind the events is sent the list as it is now, then only
//! what comes after it); with `--auth-secret` both need an admin token.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use trickle::Config;
use trickle::auth::Secret;

fn json(response: &Response) -> Value {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_slice(&response.body).expect("a JSON body")
}

/// Waits until `GET path` answers JSON for which `check` holds; that JSON.
async fn json_until(s: &TestServer, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let value = json(&s.get(path).await);
        if check(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never became what was expected: {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_report_publishers_subscribers_viewers_and_skips() {
    let s = TestServer::start().await;
    let created = json(&s.get("/_channels").await);
    assert_eq!(created, Value::Array(vec![]));
    s.request_with("POST", "/cam", &[("Expect-Content", "video/mp2t")], b"")
        .await;

    // Segment 0 stays open; a live viewer starts with it, a subscriber waits for segment 1.
    let mut publisher = s.connect().await;
    publisher.start_post("/cam/0").await;
    publisher.chunk(b"zero ").await;
    let mut viewer = s.connect().await;
    viewer
        .send_request("GET", "/cam/live?from=current", &[], Some(b""))
        .await;
    let mut waiting = s.connect().await;
    waiting.send_request("GET", "/cam/1", &[], Some(b"")).await;
    let info = json_until(&s, "/_channels/cam", |v| {
        v["viewers"] == 1 && v["subscribers"] == 1 && v["viewer_list"][0]["seq"] == 0
    })
    .await;
    assert_eq!(info["name"], "cam");
    assert_eq!(info["content_type"], "video/mp2t");
    assert_eq!(info["publisher"], true);
    assert_eq!(info["next"], 1);
    assert_eq!(info["bytes_in"], 5);
    assert_eq!(info["skipped"], 0);
    let created = info["created"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
    assert!(info["last_write"].as_str().unwrap() >= created);

    // Segments 1 and 2 complete while the viewer is still in 0: at the end of 0 it is two
    // segments behind the write head and skips 1.
    assert_eq!(s.post("/cam/1", b"one").await.status, 200);
    assert_eq!(s.post("/cam/2", b"two").await.status, 200);
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
    let head = viewer.head().await;
    let mut body = Vec::new();
    while body.len() < b"zero two".len() {
        body.extend(viewer.body_chunk(&head).await.unwrap().unwrap());
    }
    assert_eq!(body, b"zero two");
    let info = json_until(&s, "/_channels/cam", |v| v["publisher"] == false).await;
    assert_eq!(info["skipped"], 1);
    assert_eq!(info["bytes_in"], 5 + 3 + 3);
    let list = &info["viewer_list"];
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], 0);
    assert_eq!(list[0]["bytes"], 8);
    assert_eq!(list[0]["segments"], 2, "0 and 2, each sent whole");
    assert_eq!(list[0]["skipped"], 1);
    assert_eq!(list[0]["seq"], 2);
    assert_eq!(list[0]["lag"], 0);

    // The list has every channel, by name, without viewer lists.
    s.post("/another", b"").await;
    let all = json(&s.get("/_channels").await);
    let names: Vec<_> = all.as_array().unwrap().iter().map(|c| &c["name"]).collect();
    assert_eq!(names, ["another", "cam"]);
    assert_eq!(all[1]["viewers"], 1);
    assert!(all[1].get("viewer_list").is_none());

    drop((viewer, waiting));
    json_until(&s, "/_channels/cam", |v| {
        v["viewers"] == 0 && v["subscribers"] == 0 && v["viewer_list"] == Value::Array(vec![])
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_bad_requests_with_one_clear_line() {
    let s = TestServer::start().await;
    let missing = s.get("/_channels/nope").await;
    assert_eq!(
        (missing.status, missing.text()),
        (404, "Stream not found\n".into())
    );
    let bad = s.get("/_channels/%ff").await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    for (method, path) in [
        ("POST", "/_channels"),
        ("DELETE", "/_channels/x"),
        ("POST", "/_events"),
    ] {
        let answer = s.request(method, path, b"").await;
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(answer.header("allow"), Some("GET,HEAD"));
    }
    // The API's paths are not channels; other `_` names stay reserved.
    assert_eq!(s.post("/_channels/0", b"x").await.status, 405);
    assert_eq!(s.post("/_other/0", b"x").await.status, 403);
    assert_eq!(s.get("/_channels/a/b").await.status, 404);
    s.stop().await;
}

/// Server-Sent Events read from a raw HTTP/1.1 response, or from an HTTP/2 one (reqwest).
struct EventReader {
    source: Source,
    pending: String,
}

enum Source {
    Http1(Raw, Head),
    Http2(reqwest::Response),
}

impl EventReader {
    async fn open(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> EventReader {
        let mut raw = s.connect().await;
        raw.send_request("GET", path, headers, Some(b"")).await;
        let head = raw.head().await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        EventReader {
            source: Source::Http1(raw, head),
            pending: String::new(),
        }
    }

    /// `GET /_events` over h2c, granting the stream a receive window of `window` bytes: once
    /// that many are sent, the server sends no more until the events are read.
    async fn open_h2(s: &TestServer, window: u32) -> EventReader {
        let client = h2::h2c_client(Some(window));
        let response = client.get(s.url("/_events")).send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let mime = response.headers().get("content-type");
        assert_eq!(mime.unwrap(), "text/event-stream");
        EventReader {
            source: Source::Http2(response),
            pending: String::new(),
        }
    }

    /// The next bytes of the stream, which goes on.
    async fn chunk(&mut self) -> Vec<u8> {
        let chunk = match &mut self.source {
            Source::Http1(raw, head) => raw.body_chunk(head).await.unwrap(),
            Source::Http2(response) => {
                let chunk = tokio::time::timeout(PATIENCE, response.chunk()).await;
                chunk.expect("data in time").unwrap().map(|c| c.to_vec())
            }
        };
        chunk.expect("the stream goes on")
    }

    /// The next event's name and data (comments skipped).
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = value.into();
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                if !name.is_empty() {
                    return (name, serde_json::from_str(&data).expect("JSON data"));
                }
                continue;
            }
            let chunk = self.chunk().await;
            self.pending.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Skips events until one named `name`; its data.
    async fn until(&mut self, name: &str) -> Value {
        loop {
            let (got, data) = self.next().await;
            if got == name {
                return data;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_channels_publishers_and_viewers() {
    let s = TestServer::start().await;
    s.post("/before", b"").await;
    let mut events = EventReader::open(&s, "/_events", &[]).await;
    let (name, list) = events.next().await;
    assert_eq!(name, "channels");
    assert_eq!(list[0]["name"], "before");

    s.request_with("POST", "/cam", &[("Expect-Content", "text/plain")], b"")
        .await;
    let added = events.next().await;
    assert_eq!(added.0, "channel_added");
    assert_eq!(
        (&added.1["name"], &added.1["content_type"]),
        (&"cam".into(), &"text/plain".into())
    );

    // A preconnected publisher is a publisher; it stops when its segment ends.
    let mut publisher = s.connect().await;
    publisher.start_post("/cam/0").await;
    assert_eq!(
        events.next().await,
        (
            "publisher_started".into(),
            serde_json::json!({"name": "cam"})
        )
    );
    publisher.chunk(b"data").await;
    publisher.end_body().await;
    assert_eq!(publisher.head().await.status, 200);
    assert_eq!(
        events.next().await,
        (
            "publisher_stopped".into(),
            serde_json::json!({"name": "cam"})
        )
    );

    // Three viewers arrive at once: one count, the last.
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let mut viewer = s.connect().await;
        viewer
            .send_request("GET", "/cam/live", &[], Some(b""))
            .await;
        viewers.push(viewer);
    }
    eventually("three viewers", || s.server.stats().live_viewers == 3).await;
    let counts = events.next().await;
    assert_eq!(
        counts,
        (
            "viewers".into(),
            serde_json::json!({"name": "cam", "viewers": 3})
        )
    );
    drop(viewers);
    assert_eq!(events.until("viewers").await["viewers"], 0);

    assert_eq!(s.delete("/cam").await.status, 200);
    assert_eq!(
        events.next().await,
        ("channel_removed".into(), serde_json::json!({"name": "cam"}))
    );

    // A channel removed while its viewer count is held back: the count is not sent, after the
    // removal or ever, and the stream goes on.
    s.post("/brief", b"").await;
    assert_eq!(events.next().await.0, "channel_added");
    let mut viewer = s.connect().await;
    viewer
        .send_request("GET", "/brief/live", &[], Some(b""))
        .await;
    eventually("a viewer", || s.server.stats().live_viewers == 1).await;
    assert_eq!(s.delete("/brief").await.status, 200);
    assert_eq!(
        events.next().await,
        (
            "channel_removed".into(),
            serde_json::json!({"name": "brief"})
        )
    );
    drop(viewer);
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.post("/after", b"").await;
    let (name, data) = events.next().await;
    assert_eq!(
        (name.as_str(), &data["name"]),
        ("channel_added", &"after".into())
    );

    // The stream ends when the server stops.
    let server = s.server.clone();
    server.shutdown();
    let Source::Http1(raw, head) = &mut events.source else {
        unreachable!("over HTTP/1.1")
    };
    let rest = raw.body_to_end(head).await;
    assert!(rest.is_ok(), "a clean end: {rest:?}");
    s.stop().await;
}

/// The names of a `channels` event's list, or of `GET /_channels`.
fn names(list: &Value) -> Vec<&str> {
    let list = list.as_array().expect("a list");
    list.iter().map(|c| c["name"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_fell_behind_the_events_is_sent_the_current_list() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/gone", b"").await.status, 200);
    // A watcher that stops reading (over HTTP/2, where its receive window says so): once the
    // window is full, the server stops writing to it, and its events go by without it.
    let mut watcher = EventReader::open_h2(&s, 4096).await;
    // Many more events than the server holds for a watcher (a few thousand): channels made and
    // deleted, on one connection. Then some that change the list for good.
    const BRIEF: usize = 3000;
    let mut api = s.connect().await;
    for i in 0..BRIEF {
        for method in ["POST", "DELETE"] {
            api.send_request(method, &format!("/brief-{i}"), &[], Some(b""))
                .await;
            let head = api.head().await;
            assert_eq!(head.status, 200);
            api.body_to_end(&head).await.unwrap();
        }
    }
    assert_eq!(s.delete("/gone").await.status, 200);
    for name in ["/kept-a", "/kept-b"] {
        assert_eq!(s.post(name, b"").await.status, 200);
    }
    let current = json(&s.get("/_channels").await);
    assert_eq!(names(&current), ["kept-a", "kept-b"]);
    // It reads again: what was on its way, then the list as it is now (which replaces everything
    // it knew), then what happens next.
    let (first, list) = watcher.next().await;
    assert_eq!((first.as_str(), names(&list)), ("channels", vec!["gone"]));
    let mut before = 0;
    let list = loop {
        match watcher.next().await {
            (name, list) if name == "channels" => break list,
            _ => before += 1,
        }
    };
    assert!(
        before < 2 * BRIEF,
        "it missed events: {before} came before the list"
    );
    assert_eq!(names(&list), names(&current));
    assert_eq!(s.post("/after", b"").await.status, 200);
    let (name, added) = watcher.next().await;
    assert_eq!(
        (name.as_str(), &added["name"]),
        ("channel_added", &"after".into())
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_the_api_needs_an_admin_token() {
    let s = TestServer::with_config(Config {
        auth_secret: Some(Secret::new(TEST_SECRET).unwrap()),
        ..Config::default()
    })
    .await;
    let admin = token(&[], &[], true);
    let viewer = token(&[], &["*"], false);
    for path in ["/_channels", "/_channels/cam", "/_events"] {
        assert_eq!(s.get(path).await.status, 401, "{path}");
        assert_eq!(
            s.get(&format!("/{viewer}{path}")).await.status,
            403,
            "{path}"
        );
    }
    let bearer = format!("Bearer {admin}");
    let listed = s
        .request_with("GET", "/_channels", &[("Authorization", &bearer)], b"")
        .await;
    assert_eq!(json(&listed), Value::Array(vec![]));
    assert_eq!(s.get(&format!("/{admin}/_channels/cam")).await.status, 404);
    let mut events = EventReader::open(&s, &format!("/{admin}/_events"), &[]).await;
    assert_eq!(events.next().await.0, "channels");
    s.stop().await;
}
