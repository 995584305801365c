//! A real `redis-server` for the cluster tests, on a free port, and `redis-cli` to look at it.
//! Both come from `scripts/test.sh` (Debian's redis-server package).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{PATIENCE, have_tools_probed};

/// A running redis-server, killed when dropped.
pub struct Redis {
    pub port: u16,
    process: Option<Child>,
}

impl Redis {
    /// A fresh redis-server (no persistence) on a free port, once it answers; `None` (skip)
    /// without redis-server outside CI.
    pub async fn start() -> Option<Redis> {
        if !have_tools_probed(&[("redis-server", "--version"), ("redis-cli", "--version")]) {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            process: None,
        };
        redis.restart().await;
        Some(redis)
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, empty) on the same port, and waits until it answers.
    pub async fn restart(&mut self) {
        let process = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs");
        self.process = Some(process);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.cli(&["PING"]).await != "PONG" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server answers"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills it (as a crash would).
    pub async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill().await;
        }
    }

    /// `redis-cli` with `args`: its answer, trimmed.
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .await
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
