//! A real memory limit for the pipeline process, so that the naive pipeline dies the way it
//! does in production.
//!
//! Preferred: a memory cgroup made for the run (v1 `memory.limit_in_bytes`, or v2
//! `memory.max`) under the supervisor's own cgroup; the pipeline process joins it before it
//! allocates anything, and past the limit the kernel's OOM killer ends it with SIGKILL.
//! Fallback, where no cgroup can be made (not root, no memory controller): the pipeline sets
//! its own `RLIMIT_DATA`, so an allocation past the limit fails and the process aborts.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Which mechanism the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LimitWith {
    /// A memory cgroup where one can be made, else RLIMIT_DATA.
    Auto,
    /// A memory cgroup, or fail.
    Cgroup,
    /// RLIMIT_DATA, even where a cgroup could be made.
    Rlimit,
}

/// How the limit is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// A cgroup v1 memory cgroup at this path.
    CgroupV1(PathBuf),
    /// A cgroup v2 cgroup at this path.
    CgroupV2(PathBuf),
    /// `RLIMIT_DATA` set by the pipeline process on itself.
    Rlimit,
}

impl Mechanism {
    /// A short description for reports.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Mechanism::CgroupV1(_) => "cgroup v1 memory.limit_in_bytes (kernel OOM killer)",
            Mechanism::CgroupV2(_) => "cgroup v2 memory.max (kernel OOM killer)",
            Mechanism::Rlimit => "RLIMIT_DATA (allocation failure aborts the process)",
        }
    }

    /// The cgroup directory the pipeline must join, if any.
    pub(crate) fn cgroup_dir(&self) -> Option<&Path> {
        match self {
            Mechanism::CgroupV1(p) | Mechanism::CgroupV2(p) => Some(p),
            Mechanism::Rlimit => None,
        }
    }
}

/// A limit prepared by the supervisor for one run; removes its cgroup when dropped.
#[derive(Debug)]
pub(crate) struct MemoryLimit {
    pub mechanism: Mechanism,
    pub bytes: u64,
}

impl MemoryLimit {
    /// Makes a cgroup named `name` limited to `bytes`, or falls back to an rlimit as `with`
    /// allows.
    pub(crate) fn prepare(name: &str, bytes: u64, with: LimitWith) -> Result<MemoryLimit> {
        let mechanism = match with {
            LimitWith::Rlimit => Mechanism::Rlimit,
            LimitWith::Auto => make_cgroup(name, bytes).unwrap_or(Mechanism::Rlimit),
            LimitWith::Cgroup => make_cgroup(name, bytes).with_context(|| {
                "--limit-with cgroup: cannot make a memory cgroup here (needs root and a cgroup \
                 memory controller); use --limit-with rlimit"
                    .to_string()
            })?,
        };
        Ok(MemoryLimit { mechanism, bytes })
    }

    /// How many times the kernel's OOM killer acted inside this run's cgroup (0 for rlimit).
    pub(crate) fn oom_kills(&self) -> u64 {
        let (file, dir) = match &self.mechanism {
            Mechanism::CgroupV1(dir) => ("memory.oom_control", dir),
            Mechanism::CgroupV2(dir) => ("memory.events", dir),
            Mechanism::Rlimit => return 0,
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        if let Some(dir) = self.mechanism.cgroup_dir() {
            // The cgroup empties a moment after its last process is reaped; retry briefly.
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

fn make_cgroup(name: &str, bytes: u64) -> Option<Mechanism> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    if let Some(path) = own
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p))
    {
        let dir = Path::new("/sys/fs/cgroup/memory")
            .join(path.trim_start_matches('/'))
            .join(name);
        fs::create_dir(&dir).ok()?;
        let ok = fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string()).is_ok();
        // With swap, the limit would only move the queue to disk; count swap too where the
        // kernel supports it (it fails harmlessly where swap accounting is off).
        let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
        if ok {
            return Some(Mechanism::CgroupV1(dir));
        }
        let _ = fs::remove_dir(&dir);
        return None;
    }
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join(name);
    fs::create_dir(&dir).ok()?;
    if fs::write(dir.join("memory.max"), bytes.to_string()).is_ok() {
        let _ = fs::write(dir.join("memory.swap.max"), "0");
        return Some(Mechanism::CgroupV2(dir));
    }
    let _ = fs::remove_dir(&dir);
    None
}

/// Called by the pipeline process first thing: joins the cgroup, or sets the rlimit.
pub(crate) fn apply_to_self(cgroup: Option<&Path>, bytes: u64) -> Result<()> {
    match cgroup {
        Some(dir) => {
            fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
                .with_context(|| format!("cannot join memory cgroup {}", dir.display()))?;
            let confirmed = fs::read_to_string("/proc/self/cgroup")
                .map(|s| s.contains(dir.file_name().and_then(|n| n.to_str()).unwrap_or("\0")))
                .unwrap_or(false);
            if !confirmed {
                bail!(
                    "joined {} but /proc/self/cgroup does not show it",
                    dir.display()
                );
            }
            Ok(())
        }
        None => rlimit::setrlimit(rlimit::Resource::DATA, bytes, bytes)
            .context("cannot set RLIMIT_DATA for the memory limit"),
    }
}
