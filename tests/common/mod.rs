//! Shared test harness: the real server on `127.0.0.1:0`, and a raw HTTP/1.1 client that can do
//! what the protocol needs and ordinary clients hide — streaming a request body chunk by chunk,
//! noticing that response headers have not arrived yet, and telling a clean end of a chunked body
//! from a connection dropped before the final chunk.
#![allow(dead_code)]

pub mod h2;
pub mod hls;
pub mod live;
pub mod metrics;
pub mod redis;
pub mod tls;
pub mod video;

#[allow(unused_imports)] // each test crate uses some of them
pub use metrics::{metric, metric_reaching, metrics_addr, scrape};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use trickle::{Config, Server};

/// Long enough for anything that should happen "at once" on a loaded 2-core CI machine.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// How long to watch for something that must *not* happen.
pub const QUIET: Duration = Duration::from_millis(300);

pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with_config(Config::default()).await
    }

    pub async fn with_config(config: Config) -> TestServer {
        TestServer::with_server(Server::new(config)).await
    }

    pub async fn with_server(server: Server) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestServer::on(listener, server)
    }

    /// `server` on `listener` (bound first, when the config must name its own address).
    pub fn on(listener: tokio::net::TcpListener, server: Server) -> TestServer {
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(trickle::serve(
            listener,
            server.clone(),
            std::future::pending(),
        ));
        TestServer { server, addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn connect(&self) -> Raw {
        Raw::connect(self.addr).await
    }

    /// One complete request with a `Content-Length` body (or none).
    pub async fn request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        self.request_with(method, path, &[], body).await
    }

    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request_at(self.addr, method, path, headers, body).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, b"").await
    }

    pub async fn post(&self, path: &str, body: &[u8]) -> Response {
        self.request("POST", path, body).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, b"").await
    }

    /// `/next` of a channel, as a number.
    pub async fn next(&self, channel: &str) -> u64 {
        let r = self.get(&format!("/{channel}/next")).await;
        assert_eq!(r.status, 200, "GET /{channel}/next: {r:?}");
        r.text().parse().unwrap()
    }

    /// Stops the server and waits for `serve` to return.
    pub async fn stop(self) {
        self.server.shutdown();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

/// One complete request to the server at `addr` (one started by [`spawn_serve`], say), on a
/// connection of its own, with a `Content-Length` body (or none).
pub async fn request_at(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut raw = Raw::connect(addr).await;
    raw.send_request(method, path, headers, Some(body)).await;
    let head = raw.head().await;
    let body = if method == "HEAD" {
        Ok(Vec::new())
    } else {
        raw.body_to_end(&head).await
    };
    Response {
        status: head.status,
        headers: head.headers,
        body: body.expect("a complete body"),
    }
}

#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: HashMap<String, String>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }

    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding") == Some("chunked")
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn seq(&self) -> Option<u64> {
        self.header("lp-trickle-seq").map(|s| s.parse().unwrap())
    }

    pub fn latest(&self) -> Option<u64> {
        self.header("lp-trickle-latest").map(|s| s.parse().unwrap())
    }

    pub fn closed(&self) -> bool {
        self.header("lp-trickle-closed").is_some()
    }
}

/// How a body read ended when it did not end cleanly.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The connection closed before the body's framing said it was complete.
    Truncated,
}

/// One raw HTTP/1.1 connection.
pub struct Raw {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Bytes left in the current chunk (chunked) or body (content-length).
    remaining: u64,
    done: bool,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw::from_stream(TcpStream::connect(addr).await.unwrap())
    }

    /// A connection made elsewhere (with socket options of its own, say).
    pub fn from_stream(stream: TcpStream) -> Raw {
        stream.set_nodelay(true).unwrap();
        let (r, w) = stream.into_split();
        Raw {
            reader: BufReader::new(r),
            writer: w,
            remaining: 0,
            done: false,
        }
    }

    /// Sends a request head; with `Some(body)` a `Content-Length` body, with `None` a chunked body
    /// to be sent with [`Raw::chunk`] and [`Raw::end_body`].
    pub async fn send_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match body {
            Some(body) => {
                if !body.is_empty() || method == "POST" {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                head.push_str("\r\n");
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(body);
                self.writer.write_all(&bytes).await.unwrap();
            }
            None => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                self.writer.write_all(head.as_bytes()).await.unwrap();
            }
        }
    }

    /// Starts a streaming (chunked) POST.
    pub async fn start_post(&mut self, path: &str) {
        self.send_request("POST", path, &[], None).await;
    }

    /// Sends one chunk of a chunked body.
    pub async fn chunk(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut bytes = format!("{:x}\r\n", data.len()).into_bytes();
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(b"\r\n");
        self.writer.write_all(&bytes).await.unwrap();
    }

    /// Like [`Raw::chunk`] but tolerates the server having closed the connection.
    pub async fn try_chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut bytes = format!("{:x}\r\n", data.len()).into_bytes();
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(b"\r\n");
        self.writer.write_all(&bytes).await
    }

    /// Ends a chunked body.
    pub async fn end_body(&mut self) {
        self.writer.write_all(b"0\r\n\r\n").await.unwrap();
    }

    /// Sends arbitrary bytes.
    pub async fn send_raw(&mut self, data: &[u8]) {
        self.writer.write_all(data).await.unwrap();
    }

    /// Reads the next final response head, skipping interim (1xx) responses.
    pub async fn head(&mut self) -> Head {
        tokio::time::timeout(PATIENCE, self.read_head())
            .await
            .expect("response head in time")
            .expect("a response head")
    }

    /// The response head if it arrives within `wait`, `None` otherwise. After `None` the
    /// connection can still be used.
    pub async fn head_within(&mut self, wait: Duration) -> Option<Head> {
        // Peeking is cancel-safe: nothing is consumed until a complete line is there.
        match tokio::time::timeout(wait, self.reader.fill_buf()).await {
            Err(_) => None,
            Ok(_) => Some(self.head().await),
        }
    }

    async fn read_head(&mut self) -> Option<Head> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                self.reader.read_line(&mut h).await.ok()?;
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':')?;
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
            if (100..200).contains(&status) {
                continue;
            }
            self.done = false;
            self.remaining = 0;
            return Some(Head { status, headers });
        }
    }

    /// The next piece of the body: `Ok(Some(bytes))`, `Ok(None)` at a clean end, or
    /// `Err(Truncated)` if the connection closed first.
    pub async fn body_chunk(&mut self, head: &Head) -> Result<Option<Vec<u8>>, BodyError> {
        tokio::time::timeout(PATIENCE, self.read_body_chunk(head))
            .await
            .expect("body data in time")
    }

    async fn read_body_chunk(&mut self, head: &Head) -> Result<Option<Vec<u8>>, BodyError> {
        if self.done {
            return Ok(None);
        }
        if head.chunked() {
            if self.remaining == 0 {
                let mut line = String::new();
                if self.reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return Err(BodyError::Truncated);
                }
                let size =
                    u64::from_str_radix(line.trim(), 16).map_err(|_| BodyError::Truncated)?;
                if size == 0 {
                    let mut trailer = String::new();
                    self.reader
                        .read_line(&mut trailer)
                        .await
                        .map_err(|_| BodyError::Truncated)?;
                    self.done = true;
                    return Ok(None);
                }
                self.remaining = size;
            }
            let data = self.read_some().await?;
            if self.remaining == 0 {
                let mut crlf = [0u8; 2];
                self.reader
                    .read_exact(&mut crlf)
                    .await
                    .map_err(|_| BodyError::Truncated)?;
            }
            Ok(Some(data))
        } else if let Some(len) = head.header("content-length") {
            if self.remaining == 0 {
                self.remaining = len.parse().unwrap();
                if self.remaining == 0 {
                    self.done = true;
                    return Ok(None);
                }
            }
            let data = self.read_some().await?;
            if self.remaining == 0 {
                self.done = true;
            }
            Ok(Some(data))
        } else {
            self.done = true;
            Ok(None)
        }
    }

    async fn read_some(&mut self) -> Result<Vec<u8>, BodyError> {
        let available = self
            .reader
            .fill_buf()
            .await
            .map_err(|_| BodyError::Truncated)?;
        if available.is_empty() {
            return Err(BodyError::Truncated);
        }
        let n = available.len().min(self.remaining as usize);
        let data = available[..n].to_vec();
        self.reader.consume(n);
        self.remaining -= n as u64;
        Ok(data)
    }

    /// The rest of the body.
    pub async fn body_to_end(&mut self, head: &Head) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        while let Some(data) = self.body_chunk(head).await? {
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    /// Whether the server closed the connection (EOF within `wait`).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(wait, self.reader.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Publishes `body` to `path` with a chunked POST in writes of `write` bytes and returns the
/// response.
pub async fn publish_chunked(
    server: &TestServer,
    path: &str,
    body: &[u8],
    write: usize,
) -> Response {
    let mut raw = server.connect().await;
    raw.start_post(path).await;
    for piece in body.chunks(write.max(1)) {
        raw.chunk(piece).await;
    }
    raw.end_body().await;
    let head = raw.head().await;
    let body = raw.body_to_end(&head).await.unwrap();
    Response {
        status: head.status,
        headers: head.headers,
        body,
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Polls `check` until it holds or `PATIENCE` runs out.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether every tool in `tools` runs (`tool -version`). A missing tool fails the test when
/// `CI=true` (scripts/test.sh installs them all); elsewhere the caller skips, with a message.
pub fn have_tools(tools: &[&str]) -> bool {
    let probes: Vec<_> = tools.iter().map(|tool| (*tool, "-version")).collect();
    have_tools_probed(&probes)
}

/// [`have_tools`] for tools asked with their own argument (`chromium --version`).
pub fn have_tools_probed(tools: &[(&str, &str)]) -> bool {
    let found = tools.iter().all(|(tool, version)| {
        std::process::Command::new(tool)
            .arg(version)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        let names: Vec<_> = tools.iter().map(|(tool, _)| *tool).collect();
        let names = names.join("/");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{names} are required in CI (scripts/test.sh installs them)"
        );
        eprintln!("skipping: {names} not installed (run scripts/test.sh)");
    }
    found
}

/// The shell commands of the README between two markers: every ```sh block, joined.
pub fn readme_commands(start_marker: &str, end_marker: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme.find(start_marker).expect("start marker");
    let end = readme.find(end_marker).expect("end marker");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[start..end].lines() {
        match line.trim() {
            "```sh" => in_block = true,
            "```" => in_block = false,
            _ if in_block => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

/// Starts `trickle serve` with `args` and returns the child and the address from its ready line.
pub async fn spawn_serve(args: &[&str], env: &[(&str, &str)]) -> (tokio::process::Child, String) {
    let (child, addr, _) = spawn_serve_with_log(args, env).await;
    (child, addr)
}

/// The `trickle` binary under test, killed when dropped, with nothing on its stdin.
pub fn trickle() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_trickle"));
    command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    command
}

/// Like [`spawn_serve`], and also returns the log lines printed before the ready line.
pub async fn spawn_serve_with_log(
    args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String, Vec<String>) {
    let mut cmd = trickle();
    cmd.arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = Vec::new();
    let addr = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("trickle listening on ").nth(1) {
                let rest = rest.split_once("://").expect("a URL in the ready line").1;
                return rest.split('/').next().unwrap().to_string();
            }
            before.push(line);
        }
        panic!("trickle serve exited without a ready line");
    })
    .await
    .expect("a ready line");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr, before)
}

/// The resident set size of a process, in bytes (0 if it is gone).
pub fn rss_of(pid: u32) -> u64 {
    trickle::server::resident_memory_bytes_of(pid).unwrap_or(0)
}

/// The secret the auth tests start servers with (`--auth-secret`, `Config::auth_secret`).
pub const TEST_SECRET: &str = "a test secret of 32 bytes, or so";

/// A token signed with [`TEST_SECRET`], valid for ten minutes, with these scopes.
pub fn token(publish: &[&str], subscribe: &[&str], admin: bool) -> String {
    use trickle::auth::{Claims, Secret, expiry_in, mint};
    mint(
        &Secret::new(TEST_SECRET).unwrap(),
        &Claims {
            exp: expiry_in(Duration::from_secs(600)),
            publish: publish.iter().map(|s| s.to_string()).collect(),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            admin,
        },
    )
    .unwrap()
}

/// A reader that yields `data` and then fails (a publisher's source that breaks mid-segment).
pub fn breaking_after(data: &'static [u8]) -> impl tokio::io::AsyncRead + Unpin {
    use tokio::io::AsyncReadExt;
    struct Broken;
    impl tokio::io::AsyncRead for Broken {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::other("the source broke")))
        }
    }
    data.chain(Broken)
}
