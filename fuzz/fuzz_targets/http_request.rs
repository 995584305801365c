//! Whole HTTP requests, as bytes on an in-memory connection to a real server, through
//! `serve_connection`: our HTTP/1.1 front, hyper behind it, or with the h2 preface HTTP/2. No
//! panic, and the connection always ends (answered or closed) within a bounded time. The server
//! has a channel `ch` with a segment, auth off.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});

fuzz_target!(|data: &[u8]| {
    RUNTIME.block_on(async {
        let server = trickle::Server::new(trickle::Config {
            wait_timeout: Duration::from_millis(50),
            ..trickle::Config::default()
        });
        server.create_channel("ch", "text/plain").unwrap();
        let (client, server_io) = tokio::io::duplex(64 * 1024);
        let connection = tokio::spawn(trickle::server::serve_connection(
            server.clone(),
            server_io,
        ));
        let (mut read, mut write) = tokio::io::split(client);
        let _ = write.write_all(data).await;
        let _ = write.shutdown().await;
        let mut sink = Vec::new();
        // A request may wait (a GET for the next seq) until the wait timeout; then the server
        // answers and the connection ends, since the client sent everything it had.
        let read_all = async {
            let _ = read.read_to_end(&mut sink).await;
        };
        let ended = tokio::time::timeout(Duration::from_secs(5), read_all).await;
        server.shutdown();
        connection.abort();
        assert!(ended.is_ok(), "the connection did not end: {data:?}");
    });
});
