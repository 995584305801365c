//! Prometheus metrics of a `trickle serve` child process: where they are served (from its log)
//! and the values of its counters and gauges.

use std::net::SocketAddr;
use std::time::Duration;

use super::{PATIENCE, Raw};

/// The metrics address `trickle serve --metrics-listen` logged (from
/// [`super::spawn_serve_with_log`]).
pub fn metrics_addr(log: &[String]) -> SocketAddr {
    log.iter()
        .find_map(|l| l.split("serving metrics at http://").nth(1))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .expect("a metrics line")
        .parse()
        .unwrap()
}

/// The text `/metrics` serves, from the address in a `trickle serve` log.
pub async fn scrape(log: &[String]) -> String {
    let mut scrape = Raw::connect(metrics_addr(log)).await;
    scrape.send_request("GET", "/metrics", &[], Some(b"")).await;
    let head = scrape.head().await;
    assert_eq!(head.status, 200);
    String::from_utf8(scrape.body_to_end(&head).await.unwrap()).unwrap()
}

/// The value of metric `name` in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Metric `name` of the server of `log` once it is `want` (a response adds its bytes out when it
/// ends, for one), or what it is after [`PATIENCE`].
pub async fn metric_reaching(log: &[String], name: &str, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = metric(&scrape(log).await, name);
        if now == want || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
