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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytrickle_publishes_and_subscribes_byte_exact() {
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
