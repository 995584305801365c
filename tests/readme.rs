//! The README's curl walk-through, run verbatim (only the address changes) against a real server,
//! so the documentation and the behaviour cannot drift apart.

mod common;

use common::TestServer;

/// The shell commands of the walk-through.
fn walkthrough() -> String {
    common::readme_commands("<!-- walkthrough:start -->", "<!-- walkthrough:end -->")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_works_as_written() {
    let s = TestServer::start().await;
    let script = walkthrough().replace("localhost:2939", &s.addr.to_string());
    assert!(script.contains("curl"), "no commands found");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .output(),
    )
    .await
    .expect("the walk-through finishes")
    .expect("bash and curl are installed");
    let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines = "line 1\nline 2\nline 3\n";
    // Once from the waiting subscriber, once from the re-read.
    assert_eq!(stdout.matches(lines).count(), 2, "{stdout}");
    for expected in [
        "HTTP/1.1 200 OK",
        "\n1\n",
        "lp-trickle-seq: 0",
        "lp-trickle-latest: 1",
        "lp-trickle-size: 21",
        "content-type: text/plain",
        "HTTP/1.1 404 Not Found",
        "Stream not found",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(s.server.channel("demo").is_none());
}
