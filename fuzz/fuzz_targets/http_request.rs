//! Whole HTTP requests, as bytes on an in-memory connection to a real server, through
//! `serve_connection`: our HTTP/1.1 front, hyper behind it, or with the h2 preface HTTP/2. No
//! panic, and the exchange always settles (the server answers or closes, then goes quiet) within a
//! bounded time. The client keeps its side open, so requests are answered rather than dropped as
//! a closed client's. The runtime's clock is paused and jumps ahead whenever everything waits, so
//! the timeouts cost no real time. The server has a channel `ch` with a segment, auth off.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
});

fuzz_target!(|data: &[u8]| {
    RUNTIME.block_on(async {
        let server = trickle::Server::new(trickle::Config {
            wait_timeout: Duration::from_millis(50),
            ..trickle::Config::default()
        });
        server.create_channel("ch", "text/plain").await.unwrap();
        let (client, server_io) = tokio::io::duplex(64 * 1024);
        let connection = tokio::spawn(trickle::server::serve_connection(
            server.clone(),
            server_io,
        ));
        let (mut read, mut write) = tokio::io::split(client);
        let send = async {
            let _ = write.write_all(data).await;
        };
        // Read until the server closes or has been quiet for longer than its wait timeout (a
        // GET for the next seq is answered by then).
        let receive = async {
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), read.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
            }
        };
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(send, receive)
        })
        .await;
        server.shutdown();
        connection.abort();
        assert!(ended.is_ok(), "the exchange did not settle: {data:?}");
    });
});
