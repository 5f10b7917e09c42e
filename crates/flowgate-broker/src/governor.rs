//! The memory governor, around core's [`MemoryGovernor`]: it learns the broker's budget
//! (`--memory-budget`, else the memory limit of its cgroup, v2 or v1), samples the resident set,
//! and keeps one pool of bytes that all topics together may hold and promise. Each topic's
//! round of grants leases what it may take from the pool and gives back what it did not use,
//! so topics granting at once can never promise the same bytes twice, and as memory fills the
//! grants of every topic shrink together.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate_core::MemoryGovernor;

/// How often the resident set is sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Where a budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// `--memory-budget`.
    Flag,
    /// The cgroup v2 `memory.max` of the broker's cgroup.
    CgroupV2,
    /// The cgroup v1 `memory.limit_in_bytes` of the broker's memory cgroup.
    CgroupV1,
}

/// The memory limit of this process's cgroup, if it has one below the machine's memory.
pub fn cgroup_limit() -> Option<(u64, BudgetSource)> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let machine = machine_memory().unwrap_or(u64::MAX);
    let below_machine = |n: u64| (n < machine).then_some(n);
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            let file = Path::new("/sys/fs/cgroup").join(path).join("memory.max");
            if let Some(n) = read_number(&file).and_then(below_machine) {
                return Some((n, BudgetSource::CgroupV2));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let file = Path::new("/sys/fs/cgroup/memory")
                .join(path)
                .join("memory.limit_in_bytes");
            if let Some(n) = read_number(&file).and_then(below_machine) {
                return Some((n, BudgetSource::CgroupV1));
            }
        }
    }
    None
}

/// A number in a file (`max` and unreadable files are `None`).
fn read_number(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The machine's memory, from /proc/meminfo.
fn machine_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// This process's resident set, from /proc/self/statm.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// The pool all topics share, and what they hold of it.
pub(crate) struct Governor {
    rule: Mutex<MemoryGovernor>,
    /// Bytes all topics together may hold and promise now.
    pool: AtomicU64,
    /// Bytes they hold and have promised, plus what rounds under way have leased.
    total: AtomicU64,
    /// The resident set at the last sample, and the highest seen.
    rss: AtomicU64,
    peak_rss: AtomicU64,
}

impl Governor {
    /// A governor for `budget` bytes, starting from the resident set now.
    pub fn new(budget: u64) -> Arc<Governor> {
        let rss = resident_bytes().unwrap_or(0);
        let rule = MemoryGovernor::new(budget, rss);
        Arc::new(Governor {
            pool: AtomicU64::new(rule.first_pool()),
            rule: Mutex::new(rule),
            total: AtomicU64::new(0),
            rss: AtomicU64::new(rss),
            peak_rss: AtomicU64::new(rss),
        })
    }

    /// The budget.
    pub fn budget(&self) -> u64 {
        self.rule.lock().unwrap_or_else(|p| p.into_inner()).budget()
    }

    /// Samples the resident set and sets the pool; true when the pool grew (topics may grant
    /// again).
    pub fn sample(&self) -> bool {
        let Some(rss) = resident_bytes() else {
            return false;
        };
        self.rss.store(rss, Ordering::Relaxed);
        self.peak_rss.fetch_max(rss, Ordering::Relaxed);
        let held = self.total.load(Ordering::Relaxed);
        let pool = self
            .rule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(rss, held);
        self.pool.swap(pool, Ordering::Relaxed) < pool
    }

    /// A topic that counted `counted` bytes now holds and promises `now`, within a
    /// `capacity` of bytes. Leases what the pool has free of what it could still take, a
    /// quarter of the pool at most (so one topic's round never holds the whole pool from the
    /// others), and returns it.
    pub fn lease(&self, counted: u64, now: u64, capacity: u64) -> u64 {
        self.adjust(counted, now);
        let pool = self.pool.load(Ordering::Relaxed);
        let want = capacity.saturating_sub(now).min(pool / 4);
        let mut leased = 0;
        let _ = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |total| {
                leased = pool.saturating_sub(total).min(want);
                Some(total + leased)
            });
        leased
    }

    /// Ends a round that leased `leased` on top of `before` and now holds and promises
    /// `after`: what it did not use goes back.
    pub fn settle(&self, before: u64, leased: u64, after: u64) {
        self.adjust(before + leased, after);
    }

    /// The pool now, what topics count against it, the last and highest resident set.
    pub fn figures(&self) -> (u64, u64, u64, u64) {
        (
            self.pool.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            self.rss.load(Ordering::Relaxed),
            self.peak_rss.load(Ordering::Relaxed),
        )
    }

    fn adjust(&self, from: u64, to: u64) {
        if to >= from {
            self.total.fetch_add(to - from, Ordering::AcqRel);
        } else {
            // Never below zero: what a topic gives back it counted before.
            let _ = self
                .total
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(t.saturating_sub(from - to))
                });
        }
    }
}
