//! The server-wide budget for buffered segment bytes: one limit and one count of the bytes that
//! segments hold, shared by every channel of a server.
//!
//! A segment's writer reserves each write's bytes here before appending them, and the segment gives
//! its whole length back when its last reference goes. So a segment that left the ring but is still
//! held by a reader that has not finished keeps counting: those bytes are as resident as the ring's.
//! A write that would go over the limit is refused (the version being written fails), which bounds
//! the memory a server's segments hold whatever publishers send and however slowly subscribers read.
//!
//! Only publishers' writes touch the count (one atomic update each); readers never do.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Default budget when the machine's memory cannot be read.
const FALLBACK_LIMIT: u64 = 1 << 30;

pub struct Budget {
    limit: u64,
    used: AtomicU64,
    /// Most bytes held at once since [`Budget::take_peak`] last looked.
    peak: AtomicU64,
    /// Writes refused because they would have gone over the limit.
    refusals: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        })
    }

    /// A budget that never refuses (for segments made outside a server).
    #[cfg(any(test, feature = "internals"))]
    pub fn unlimited() -> Arc<Budget> {
        Budget::new(u64::MAX)
    }

    /// Takes `n` more bytes, or refuses (and counts the refusal) if the total would exceed the
    /// limit; the error is the number of bytes held at that moment.
    pub(crate) fn reserve(&self, n: u64) -> Result<(), u64> {
        let limit = self.limit;
        match self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            }) {
            Ok(before) => {
                let total = before + n;
                // A load first: in steady state the peak is not written, so publishers on
                // different cores do not fight over its cache line.
                if total > self.peak.load(Ordering::Relaxed) {
                    self.peak.fetch_max(total, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(used) => {
                self.refusals.fetch_add(1, Ordering::Relaxed);
                Err(used)
            }
        }
    }

    /// Gives back `n` bytes taken with [`Budget::reserve`].
    pub(crate) fn release(&self, n: u64) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::Relaxed);
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held now by segments, in the ring or pinned by their readers.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// How many writes were refused since the start.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// The most bytes held at once since the last call (or the start), and the bytes held now;
    /// the next call measures from now on. For deciding when a burst is over.
    pub fn take_peak(&self) -> (u64, u64) {
        let now = self.used();
        let peak = self.peak.swap(now, Ordering::Relaxed);
        (peak.max(now), now)
    }
}

/// The default budget: half of the memory this process may use, that is the machine's physical
/// memory, or the cgroup v2 `memory.max` of the process's cgroup (or of one above it) if that is
/// lower. Read once per process.
pub fn default_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| half_of_memory(physical_memory(), &cgroup_limits()))
}

/// Half of the smallest of `physical` and the cgroup limits (each a `memory.max` file's text:
/// a number of bytes, or `max` for none).
fn half_of_memory(physical: Option<u64>, cgroup_limits: &[String]) -> u64 {
    let cgroup = cgroup_limits
        .iter()
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .min();
    let memory = match (physical, cgroup) {
        (Some(p), Some(c)) => p.min(c),
        (p, c) => match p.or(c) {
            Some(m) => m,
            None => return FALLBACK_LIMIT,
        },
    };
    (memory / 2).max(1)
}

fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || page_size <= 0 {
        return None;
    }
    (pages as u64).checked_mul(page_size as u64)
}

/// The `memory.max` texts of this process's cgroup v2 and of every cgroup above it (a limit set
/// higher up binds too). Empty without cgroup v2.
fn cgroup_limits() -> Vec<String> {
    let Ok(membership) = std::fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    // The v2 line is `0::/path`.
    let Some(path) = membership.lines().find_map(|l| l.strip_prefix("0::")) else {
        return Vec::new();
    };
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup");
    dir.push(path.trim().trim_start_matches('/'));
    dir.ancestors()
        .take_while(|d| d.starts_with("/sys/fs/cgroup"))
        .filter_map(|d| std::fs::read_to_string(d.join("memory.max")).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_half_of_the_smallest_memory_limit() {
        let gib = 1u64 << 30;
        let limits = |l: &[&str]| l.iter().map(|s| format!("{s}\n")).collect::<Vec<_>>();
        assert_eq!(half_of_memory(Some(16 * gib), &[]), 8 * gib);
        assert_eq!(half_of_memory(Some(16 * gib), &limits(&["max"])), 8 * gib);
        let two_gib = (2 * gib).to_string();
        assert_eq!(
            half_of_memory(Some(16 * gib), &limits(&["max", &two_gib])),
            gib
        );
        // A cgroup limit above the machine's memory does not raise it.
        let huge = (64 * gib).to_string();
        assert_eq!(half_of_memory(Some(16 * gib), &limits(&[&huge])), 8 * gib);
        assert_eq!(half_of_memory(None, &limits(&[&two_gib])), gib);
        assert_eq!(half_of_memory(None, &[]), FALLBACK_LIMIT);
        assert_eq!(half_of_memory(Some(1), &[]), 1);
        // On this machine: something sensible.
        assert!(default_limit() >= 1 << 20);
    }

    #[test]
    fn reservations_stop_at_the_limit_and_releases_give_back() {
        let budget = Budget::new(100);
        assert_eq!(budget.reserve(60), Ok(()));
        assert_eq!(budget.reserve(41), Err(60));
        assert_eq!(budget.reserve(40), Ok(()));
        assert_eq!((budget.used(), budget.refusals()), (100, 1));
        budget.release(70);
        assert_eq!(budget.take_peak(), (100, 30));
        assert_eq!(budget.take_peak(), (30, 30));
        assert_eq!(Budget::unlimited().reserve(u64::MAX), Ok(()));
    }
}
