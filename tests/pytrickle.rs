//! Interop with the real Python client, pytrickle 0.1.6 from PyPI: its `TricklePublisher` publishes
//! 12 segments of random bytes (1 B … 1 MiB, irregular writes) and its `TrickleSubscriber` reads
//! them byte-exact, once from seq 0 and once from the live edge; then a DELETE ends the stream.
//! The scenario itself is `tests/interop/pytrickle_interop.py`; this test runs it against the real
//! server. The Python venv comes from `TRICKLE_TEST_PYTHON` (set by `scripts/test.sh`), or is made
//! by `scripts/setup-pyvenv.sh`.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;

fn python() -> String {
    if let Ok(python) = std::env::var("TRICKLE_TEST_PYTHON") {
        return python;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(Path::new(root).join("scripts/setup-pyvenv.sh"))
        .output()
        .expect("running scripts/setup-pyvenv.sh");
    assert!(
        out.status.success(),
        "scripts/setup-pyvenv.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .last()
        .expect("the venv's python")
        .trim()
        .to_string()
}

/// The full interop scenario drives pytrickle's timing-sensitive preconnects; two runs take turns
/// instead of competing for a 2-core machine.
static SCENARIO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytrickle_publishes_and_subscribes_byte_exact() {
    let _turn = SCENARIO.lock().await;
    let python = python();
    let s = TestServer::start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pytrickle_interop.py");
    let url = format!("http://{}", s.addr);
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&url)
        .output()
        .await
        .expect("running the pytrickle interop script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pytrickle interop failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    // Every channel the script used was deleted at its end.
    assert_eq!(s.server.channel_count(), 0, "{stdout}");
}

fn cross_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pytrickle_cross.py")
}

/// Server with a long ring, so a subscriber that lags a little never has to jump.
async fn roomy_server() -> TestServer {
    TestServer::with_config(trickle::Config {
        ring: 32,
        ..trickle::Config::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytrickle_publisher_to_rust_subscriber() {
    use trickle::client::{Subscriber, SubscriberOptions};
    let python = python();
    let s = roomy_server().await;
    s.post("/py-to-rust", b"").await;
    let dir = tempfile::tempdir().unwrap();
    let mut subscriber =
        Subscriber::new(&s.url("/py-to-rust"), SubscriberOptions::default()).unwrap();
    common::eventually("subscriber waiting", || s.server.stats().waiting_gets == 1).await;
    let count = 8;
    let publisher = tokio::process::Command::new(&python)
        .arg(cross_script())
        .args(["publish", &s.url("/py-to-rust")])
        .arg(dir.path())
        .arg(count.to_string())
        .kill_on_drop(true)
        .output();
    let reader = async {
        let mut got = Vec::new();
        for _ in 0..count {
            let segment = subscriber.next_segment().await.unwrap().expect("a segment");
            let seq = segment.seq;
            got.push((seq, segment.read_to_end().await.unwrap()));
        }
        got
    };
    let (published, got) = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        futures_util::future::join(publisher, reader),
    )
    .await
    .expect("the exchange finishes");
    let published = published.unwrap();
    assert!(
        published.status.success(),
        "pytrickle publisher failed:\n{}",
        String::from_utf8_lossy(&published.stderr)
    );
    for (i, (seq, data)) in got.into_iter().enumerate() {
        assert_eq!(seq, i as u64);
        let sent = std::fs::read(dir.path().join(format!("{seq}.bin"))).unwrap();
        assert!(
            data == sent,
            "seq {seq}: {} bytes received, {} sent",
            data.len(),
            sent.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_publisher_to_pytrickle_subscriber() {
    use trickle::client::{Publisher, PublisherOptions};
    let python = python();
    let s = roomy_server().await;
    s.post("/rust-to-py", b"").await;
    let dir = tempfile::tempdir().unwrap();
    let count = 8u64;
    let subscriber = tokio::process::Command::new(&python)
        .arg(cross_script())
        .args(["subscribe", &s.url("/rust-to-py")])
        .arg(dir.path())
        .arg(count.to_string())
        .kill_on_drop(true)
        .output();
    let subscriber = tokio::spawn(subscriber);
    common::eventually("pytrickle waiting", || s.server.stats().waiting_gets == 1).await;
    let mut publisher = Publisher::new(&s.url("/rust-to-py"), PublisherOptions::default()).unwrap();
    let mut sent = Vec::new();
    for seq in 0..count {
        let size = [1usize, 1 << 20, 4096, 77_777][seq as usize % 4] + seq as usize;
        let data = common::pattern(size, seq);
        let mut segment = publisher.next_segment();
        for piece in data.chunks(3000 + seq as usize * 5000) {
            segment
                .write(bytes::Bytes::copy_from_slice(piece))
                .await
                .unwrap();
        }
        assert_eq!(segment.finish().await.unwrap(), seq);
        sent.push(data);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), subscriber)
        .await
        .expect("pytrickle finishes")
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "pytrickle subscriber failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (seq, data) in sent.iter().enumerate() {
        let got = std::fs::read(dir.path().join(format!("{seq}.bin"))).unwrap();
        assert!(
            &got == data,
            "seq {seq}: {} bytes received, {} sent",
            got.len(),
            data.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytrickle_works_with_a_token_in_its_url() {
    // pytrickle takes a base URL and appends `/{seq}`: the token rides in the path.
    let _turn = SCENARIO.lock().await;
    let python = python();
    let secret = trickle::auth::Secret::new("pytrickle interop secret, 32 bytes").unwrap();
    let token = trickle::auth::mint(
        &secret,
        &trickle::auth::Claims {
            exp: trickle::auth::expiry_in(std::time::Duration::from_secs(600)),
            publish: vec!["*".into()],
            subscribe: vec!["*".into()],
            admin: false,
        },
    )
    .unwrap();
    let s = TestServer::with_config(trickle::Config {
        auth_secret: Some(secret),
        ..Default::default()
    })
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pytrickle_interop.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}/{token}", s.addr))
        .output()
        .await
        .expect("running the pytrickle interop script");
    assert!(
        out.status.success(),
        "pytrickle interop with a token failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.server.channel_count(), 0);
    // Without the token the same server refuses the same client.
    let refused = s.post("/ch/0", b"x").await;
    assert_eq!(refused.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytrickle_and_our_client_read_through_an_edge_unmodified() {
    use trickle::client::{Publisher, PublisherOptions, Subscriber, SubscriberOptions};
    let python = python();
    let origin = roomy_server().await;
    let edge = TestServer::with_config(trickle::Config {
        ring: 32,
        origins: vec![origin.url("")],
        ..trickle::Config::default()
    })
    .await;
    origin.post("/via-edge", b"").await;
    let dir = tempfile::tempdir().unwrap();
    let count = 6u64;
    // Both subscribe at the edge from the live edge (`-1`) before anything is published.
    let pytrickle = tokio::spawn(
        tokio::process::Command::new(&python)
            .arg(cross_script())
            .args(["subscribe", &edge.url("/via-edge")])
            .arg(dir.path())
            .arg(count.to_string())
            .kill_on_drop(true)
            .output(),
    );
    let ours = tokio::spawn({
        let url = edge.url("/via-edge");
        async move {
            let mut subscriber = Subscriber::new(&url, SubscriberOptions::default()).unwrap();
            let mut got = Vec::new();
            for _ in 0..count {
                let segment = subscriber.next_segment().await.unwrap().expect("a segment");
                got.push((segment.seq, segment.read_to_end().await.unwrap()));
            }
            got
        }
    });
    // The edge's one GET upstream waits, and both readers wait at the edge.
    common::eventually("the edge waits upstream", || {
        origin.server.channel_info("via-edge").unwrap().subscribers == 1
    })
    .await;
    common::eventually("both wait at the edge", || {
        edge.server.stats().waiting_gets == 2
    })
    .await;
    let mut publisher =
        Publisher::new(&origin.url("/via-edge"), PublisherOptions::default()).unwrap();
    let mut sent = Vec::new();
    for seq in 0..count {
        let data = common::pattern([1usize, 1 << 20, 4096, 77_777][seq as usize % 4], seq);
        let mut segment = publisher.next_segment();
        for piece in data.chunks(20_000) {
            segment
                .write(bytes::Bytes::copy_from_slice(piece))
                .await
                .unwrap();
        }
        assert_eq!(segment.finish().await.unwrap(), seq);
        sent.push(data);
    }
    let wait = std::time::Duration::from_secs(120);
    let got = tokio::time::timeout(wait, ours)
        .await
        .expect("ours finishes")
        .unwrap();
    for (seq, data) in got {
        assert!(
            data == sent[seq as usize],
            "ours, seq {seq}: {} bytes",
            data.len()
        );
    }
    let out = tokio::time::timeout(wait, pytrickle)
        .await
        .expect("pytrickle finishes")
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "pytrickle subscriber failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (seq, data) in sent.iter().enumerate() {
        let got = std::fs::read(dir.path().join(format!("{seq}.bin"))).unwrap();
        assert!(&got == data, "pytrickle, seq {seq}: {} bytes", got.len());
    }
}
