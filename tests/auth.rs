//! Tokens (`--auth-secret`) over real sockets: the token in the path (`/{token}/{channel}/{seq}`,
//! for clients that only append `/{seq}`, also after a base path: `/{base}/{token}/…`) or as
//! `Authorization: Bearer`; missing or invalid (an unsigned `"alg":"none"` token included) → 401,
//! which closes the connection, out of scope → 403, the same answers whether the channel exists or
//! not; the changefeed needs `admin`; our own clients with the token in their URL; `trickle token`
//! mints what the server accepts.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{PATIENCE, TestServer, spawn_serve, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trickle::Config;
use trickle::auth::{Claims, Secret, expiry_in, mint};
use trickle::client::{Publisher, PublisherOptions, SubscribeStart, Subscriber, SubscriberOptions};

const SECRET: &str = common::TEST_SECRET;

async fn server() -> TestServer {
    TestServer::with_config(Config {
        auth_secret: Some(Secret::new(SECRET).unwrap()),
        changefeed: true,
        ..Config::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_a_bad_one_is_401_and_reveals_nothing() {
    let s = server().await;
    let cam = token(&["cam-*"], &["*"], false);
    assert_eq!(
        s.post(&format!("/{cam}/cam-1/0"), b"data").await.status,
        200
    );

    let expired = mint(
        &Secret::new(SECRET).unwrap(),
        &Claims {
            exp: 1,
            admin: true,
            ..Claims::default()
        },
    )
    .unwrap();
    let foreign = mint(
        &Secret::new("some other secret, 32 bytes long").unwrap(),
        &Claims {
            exp: expiry_in(Duration::from_secs(600)),
            admin: true,
            ..Claims::default()
        },
    )
    .unwrap();
    for prefix in [
        String::new(),
        format!("/{expired}"),
        format!("/{foreign}"),
        "/a.b.c".into(),
    ] {
        let mut answers = Vec::new();
        for (method, path) in [
            ("GET", "/cam-1/0"),
            ("GET", "/missing/0"),
            ("POST", "/cam-1/1"),
            ("DELETE", "/cam-1"),
        ] {
            let r = s.request(method, &format!("{prefix}{path}"), b"").await;
            assert_eq!(r.status, 401, "{method} {prefix}{path}: {r:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(r.header("lp-trickle-latest").is_none());
            answers.push(r.text());
        }
        // An existing and a missing channel get the very same answer.
        assert_eq!(answers[0], answers[1]);
    }
    // A Bearer header with a bad token is no better.
    let r = s
        .request_with(
            "GET",
            "/cam-1/0",
            &[("Authorization", "Bearer nonsense")],
            b"",
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(s.server.channel("cam-1").unwrap().next_write() == 1);
}

/// Base64url without padding, as JWTs are encoded.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_alg_none_token_is_401() {
    let s = server().await;
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    assert_eq!(header, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0");
    let claims = Claims {
        exp: expiry_in(Duration::from_secs(600)),
        publish: vec!["*".into()],
        subscribe: vec!["*".into()],
        admin: true,
    };
    let payload = base64url(&serde_json::to_vec(&claims).unwrap());
    // The very same claims, signed, are accepted: only the algorithm is wrong below.
    let signed = mint(&Secret::new(SECRET).unwrap(), &claims).unwrap();
    assert_eq!(
        s.post(&format!("/{signed}/signed/0"), b"ok").await.status,
        200
    );

    let unsigned = format!("{header}.{payload}.");
    // In the path, an empty signature does not even look like a token (so it is refused as no
    // token at all); with something in its place the path form reaches the verifier too.
    let junk_signature = format!("{header}.{payload}.{}", base64url(b"not a signature"));
    for (token, in_path_why) in [
        (&unsigned, "a token is required"),
        (&junk_signature, "the token is invalid"),
    ] {
        for (method, path, headers) in [
            ("POST", format!("/{token}/cam-1/0"), vec![]),
            ("GET", format!("/{token}/signed/0"), vec![]),
            ("POST", "/cam-1/0".into(), vec![format!("Bearer {token}")]),
            ("GET", "/signed/0".into(), vec![format!("Bearer {token}")]),
            ("DELETE", "/signed".into(), vec![format!("Bearer {token}")]),
        ] {
            let why = if headers.is_empty() {
                in_path_why
            } else {
                "the token is invalid"
            };
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|h| ("Authorization", h.as_str()))
                .collect();
            let r = s.request_with(method, &path, &headers, b"data").await;
            assert_eq!(r.status, 401, "{method} {path} {headers:?}: {r:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(r.text().contains(why), "{method} {path}: {}", r.text());
        }
    }
    assert!(s.server.channel("cam-1").is_none());
    assert_eq!(s.server.channel("signed").unwrap().next_write(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_work_under_a_base_path() {
    let s = TestServer::with_config(Config {
        base_path: "/live".into(),
        auth_secret: Some(Secret::new(SECRET).unwrap()),
        ..Config::default()
    })
    .await;
    let cam = token(&["cam-*"], &["*"], false);
    let viewer = token(&[], &["cam-1"], false);
    let bearer = |t: &str| format!("Bearer {t}");

    // The token in the path, after the base path.
    assert_eq!(
        s.post(&format!("/live/{cam}/cam-1/0"), b"hello")
            .await
            .status,
        200
    );
    assert_eq!(s.server.channel("cam-1").unwrap().next_write(), 1);
    assert_eq!(s.server.channel_count(), 1, "the token is no channel");
    assert_eq!(s.get(&format!("/live/{cam}/cam-1/0")).await.text(), "hello");
    assert_eq!(s.get(&format!("/live/{cam}/cam-1/next")).await.text(), "1");
    // As a Bearer header.
    let r = s
        .request_with(
            "GET",
            "/live/cam-1/0",
            &[("Authorization", &bearer(&viewer))],
            b"",
        )
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    let r = s
        .request_with(
            "POST",
            "/live/cam-1/1",
            &[("Authorization", &bearer(&cam))],
            b"world",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        s.get(&format!("/live/{viewer}/cam-1/1")).await.text(),
        "world"
    );

    // Under the base path the same refusals hold.
    assert_eq!(s.get("/live/cam-1/0").await.status, 401);
    assert_eq!(s.get("/live/a.b.c/cam-1/0").await.status, 401);
    assert_eq!(
        s.post(&format!("/live/{viewer}/cam-1/2"), b"no")
            .await
            .status,
        403
    );
    // A token outside the base path is no route of ours, whatever the token.
    assert_eq!(s.get(&format!("/{cam}/cam-1/0")).await.status, 404);
    assert_eq!(s.get(&format!("/{cam}/live/cam-1/0")).await.status, 404);
    assert_eq!(s.server.channel("cam-1").unwrap().next_write(), 2);

    // Our clients with a base path and a token in their URL.
    let url = format!("http://{}/live/{cam}/cam-2", s.addr);
    let mut publisher = Publisher::new(&url, PublisherOptions::default()).unwrap();
    assert_eq!(publisher.write_segment("from the client").await.unwrap(), 0);
    let mut subscriber = Subscriber::new(
        &url,
        SubscriberOptions {
            start: SubscribeStart::Seq(0),
            ..Default::default()
        },
    )
    .unwrap();
    let segment = subscriber.next_segment().await.unwrap().unwrap();
    assert_eq!(segment.read_to_end().await.unwrap(), b"from the client");
}

/// Sends `request` on a new connection and reads until the server closes it (EOF); fails if it
/// does not within `PATIENCE`.
async fn answer_then_close(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the connection stayed open after {:?}",
                String::from_utf8_lossy(&got)
            )
        })
        .expect("a clean close");
    String::from_utf8(got).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_closes_the_connection() {
    // Idle keep-alive connections are closed only after a minute: an EOF within PATIENCE is the
    // server closing because of the 401.
    let s = TestServer::with_config(Config {
        auth_secret: Some(Secret::new(SECRET).unwrap()),
        header_timeout: Duration::from_secs(60),
        ..Config::default()
    })
    .await;
    s.server.create_channel("ch", "text/plain").await.unwrap();
    for request in [
        // Two pipelined GETs without a token: only the first is answered.
        &b"GET /ch/0 HTTP/1.1\r\nHost: x\r\n\r\nGET /ch/0 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET /ch/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a.b.c\r\n\r\n",
        // A POST whose body never comes: the answer does not wait for it.
        b"POST /ch/0 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
        b"DELETE /a.b.c/ch HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let what = String::from_utf8_lossy(request).into_owned();
        let answer = answer_then_close(s.addr, request).await;
        assert!(answer.starts_with("HTTP/1.1 401 "), "{what:?}: {answer:?}");
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{what:?}: {answer:?}"
        );
        let head = answer
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            head.lines().any(|l| l == "connection: close"),
            "{what:?}: {answer:?}"
        );
    }
    // A valid token on a fresh connection is served as before: the server did not go away.
    let r = s
        .request_with(
            "GET",
            "/ch/next",
            &[(
                "Authorization",
                &format!("Bearer {}", token(&[], &["ch"], false)),
            )],
            b"",
        )
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_the_path_or_a_header_are_scoped() {
    let s = server().await;
    let cam = token(&["cam-*"], &["*"], false);
    let viewer = token(&[], &["cam-1"], false);
    let bearer = |t: &str| format!("Bearer {t}");

    // Path form: publish, read, /next, create and delete.
    assert_eq!(
        s.post(&format!("/{cam}/cam-1/0"), b"hello").await.status,
        200
    );
    assert_eq!(s.get(&format!("/{cam}/cam-1/0")).await.text(), "hello");
    assert_eq!(s.get(&format!("/{cam}/cam-1/next")).await.text(), "1");
    assert_eq!(s.post(&format!("/{cam}/cam-2"), b"").await.status, 200);
    assert_eq!(s.delete(&format!("/{cam}/cam-2")).await.status, 200);
    // Header form (the scheme in any case).
    let r = s
        .request_with(
            "GET",
            "/cam-1/0",
            &[("Authorization", &bearer(&viewer))],
            b"",
        )
        .await;
    assert_eq!(r.text(), "hello");
    let lower = format!("bearer {viewer}");
    let r = s
        .request_with("GET", "/cam-1/0", &[("Authorization", &lower)], b"")
        .await;
    assert_eq!(r.text(), "hello");

    // Out of scope: 403, the same for an existing and a missing channel, and the connection
    // closes (a refused request's body is not read).
    s.server
        .create_channel("other", "text/plain")
        .await
        .unwrap();
    let mut answers = Vec::new();
    for (t, method, path) in [
        (&cam, "POST", "/other/0"),
        (&cam, "POST", "/missing-other/0"),
        (&viewer, "POST", "/cam-1/1"),
        (&viewer, "DELETE", "/cam-1"),
        (&viewer, "GET", "/cam-2/0"),
        (&cam, "GET", "/_changes/0"),
    ] {
        let r = s.request(method, &format!("/{t}{path}"), b"").await;
        assert_eq!(r.status, 403, "{method} {path}: {r:?}");
        assert_eq!(r.header("connection"), Some("close"), "{method} {path}");
        answers.push(r.text());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(s.server.channel("other").unwrap().next_write(), 0);
    assert!(s.server.channel("missing-other").is_none());
    assert_eq!(s.server.channel("cam-1").unwrap().next_write(), 1);

    // The changefeed needs admin.
    let admin = token(&[], &[], true);
    let r = s.get(&format!("/{admin}/_changes/0")).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("added"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_clients_carry_the_token_in_their_url() {
    let s = server().await;
    let url = format!(
        "http://{}/{}/cam-9",
        s.addr,
        token(&["cam-*"], &["cam-*"], false)
    );
    let mut publisher = Publisher::new(&url, PublisherOptions::default()).unwrap();
    publisher.create().await.unwrap();
    let mut subscriber = Subscriber::new(
        &url,
        SubscriberOptions {
            start: SubscribeStart::Seq(0),
            ..Default::default()
        },
    )
    .unwrap();
    publisher.write_segment("with a token").await.unwrap();
    let segment = subscriber.next_segment().await.unwrap().unwrap();
    assert_eq!(segment.read_to_end().await.unwrap(), b"with a token");
    publisher.close().await.unwrap();
    // End of stream, or "not found" if the preconnect for seq 1 arrived after the DELETE.
    match subscriber.next_segment().await {
        Ok(None) => {}
        Err(err) if err.is_end() => {}
        Ok(Some(segment)) => panic!("a segment {} after the DELETE", segment.seq),
        Err(err) => panic!("{err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickle_token_mints_what_trickle_serve_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (_child, addr) = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--auth-secret-file",
            secret_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let mint = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_trickle"))
            .arg("token")
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        )
    };
    let (ok, minted, stderr) = mint(&[
        "--secret",
        SECRET,
        "--publish",
        "cam-*",
        "--subscribe",
        "*",
        "--ttl",
        "1h",
    ]);
    assert!(ok, "{stderr}");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut raw = common::Raw::connect(addr).await;
    raw.send_request("POST", &format!("/{minted}/cam-1/0"), &[], Some(b"ok"))
        .await;
    assert_eq!(raw.head().await.status, 200);
    let mut raw = common::Raw::connect(addr).await;
    raw.send_request("POST", &format!("/{minted}/x/0"), &[], Some(b"no"))
        .await;
    assert_eq!(raw.head().await.status, 403);

    // Clear errors.
    let (ok, _, stderr) = mint(&["--publish", "*"]);
    assert!(!ok && stderr.contains("secret is needed"), "{stderr}");
    let (ok, _, stderr) = mint(&["--secret", SECRET]);
    assert!(!ok && stderr.contains("must allow something"), "{stderr}");
    let (ok, _, stderr) = mint(&["--secret", "short", "--admin"]);
    assert!(!ok && stderr.contains("at least 16 bytes"), "{stderr}");
}
