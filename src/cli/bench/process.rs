//! CPU time and memory of the server under test (`--server-pid`), read from `/proc` (Linux).

use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

/// How often the resident set size is sampled for its peak.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// What a server process used during the run.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ServerUsage {
    /// The process (`--server-pid`).
    pub pid: u32,
    /// User plus system CPU seconds spent while measuring (after the warm-up).
    pub cpu_seconds: f64,
    /// Resident set size before the run started, in bytes.
    pub rss_start_bytes: u64,
    /// Highest resident set size seen during the run, in bytes.
    pub rss_peak_bytes: u64,
}

/// Watches a process: its memory from [`Watch::start`] (connection set-up included), its CPU time
/// from [`Watch::mark_start`] (when measuring begins), both until [`Watch::finish`].
pub struct Watch {
    pid: u32,
    cpu_start: Mutex<f64>,
    rss_start: u64,
    sampler: Mutex<Option<JoinHandle<u64>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Watch {
    pub fn start(pid: u32) -> anyhow::Result<Watch> {
        let cpu_start = cpu_seconds(pid)
            .with_context(|| format!("cannot read process {pid} (--server-pid)"))?;
        let rss_start = rss_bytes(pid)?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let sampler = tokio::spawn(async move {
            let mut peak = rss_start;
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                match rss_bytes(pid) {
                    Ok(rss) => peak = peak.max(rss),
                    Err(_) => break,
                }
            }
            peak
        });
        Ok(Watch {
            pid,
            cpu_start: Mutex::new(cpu_start),
            rss_start,
            sampler: Mutex::new(Some(sampler)),
            stop,
        })
    }

    /// CPU time counts from now on.
    pub fn mark_start(&self) {
        if let Ok(cpu) = cpu_seconds(self.pid) {
            *self.cpu_start.lock() = cpu;
        }
    }

    pub async fn finish(&self) -> anyhow::Result<ServerUsage> {
        let _ = self.stop.send(true);
        let sampler = self.sampler.lock().take();
        let peak = match sampler {
            Some(sampler) => sampler.await.unwrap_or(self.rss_start),
            None => self.rss_start,
        };
        let cpu_end = cpu_seconds(self.pid)
            .with_context(|| format!("process {} ended during the run", self.pid))?;
        Ok(ServerUsage {
            pid: self.pid,
            cpu_seconds: cpu_end - *self.cpu_start.lock(),
            rss_start_bytes: self.rss_start,
            rss_peak_bytes: peak.max(rss_bytes(self.pid).unwrap_or(0)),
        })
    }
}

/// utime + stime of a process, in seconds (`/proc/PID/stat` fields 14 and 15).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it follow the last ')'.
    let after = stat
        .rsplit_once(')')
        .context("unexpected /proc/PID/stat format")?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("unexpected /proc/PID/stat format")?
            .parse::<u64>()? as f64)
    };
    // The fields after the name start at field 3, so utime (14) is index 11.
    let (utime, stime) = (ticks(11)?, ticks(12)?);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((utime + stime) / hz)
}

/// The resident set size of a process, in bytes.
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    crate::server::resident_memory_bytes_of(pid)
        .with_context(|| format!("cannot read the memory of process {pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 1 << 20);
        // Burn CPU until the counter moves: it must, long before the deadline.
        let before = cpu_seconds(pid).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        while cpu_seconds(pid).unwrap() - before < 0.05 {
            assert!(
                std::time::Instant::now() < deadline,
                "CPU time never advanced"
            );
            for _ in 0..1_000_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
        }
        assert!(x > 0);
    }
}
