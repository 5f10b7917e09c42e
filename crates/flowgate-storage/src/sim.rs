//! A simulated filesystem for tests: it keeps what was written apart from what was synced,
//! can crash at any chosen persistence step (tearing the write in progress), and on
//! [`SimFs::restart`] keeps only what a real disk would have to keep: synced data, plus
//! perhaps part of what was written after, and only files whose directory entry was synced.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::fs::{Fs, FsFile};

#[derive(Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    /// Bytes of `data` that are durable.
    synced: usize,
    /// Whether the directory entry is durable.
    linked: bool,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, SimFile>,
    /// Persistence steps taken (writes, syncs, truncates, removes, directory syncs).
    steps: u64,
    crash_at: Option<u64>,
    crashed: bool,
    /// Writes fail as on a full disk: part of the data lands, then "no space left".
    full: bool,
    /// Syncs wait, as on a disk that has stopped answering for a while.
    syncs_held: bool,
    rng: u64,
}

impl State {
    fn random(&mut self) -> u64 {
        // xorshift64*: deterministic from the seed, good enough to pick cut points.
        let mut x = self.rng.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Counts a persistence step. `Ok(true)` means this step is the crash: do part of it.
    fn step(&mut self) -> io::Result<bool> {
        if self.crashed {
            return Err(gone());
        }
        self.steps += 1;
        if self.crash_at == Some(self.steps) {
            self.crashed = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn file(&mut self, path: &Path) -> io::Result<&mut SimFile> {
        self.files
            .get_mut(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }
}

fn gone() -> io::Error {
    io::Error::other("simulated crash: the process is gone")
}

/// The simulated filesystem; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
    /// Wakes the syncs waiting while [`SimFs::hold_syncs`] holds them.
    syncs_released: Arc<Condvar>,
}

impl SimFs {
    /// An empty filesystem whose cut points follow `seed`.
    pub fn new(seed: u64) -> Self {
        let fs = SimFs::default();
        fs.lock().rng = seed | 1;
        fs
    }

    /// Crash at persistence step `step` from now (1 = the next one): a write is torn, a sync
    /// may or may not happen, and every later operation fails.
    pub fn crash_after(&self, step: u64) {
        let mut s = self.lock();
        s.crash_at = Some(s.steps + step);
    }

    /// Makes the disk full (or not): while full, a write lands only in part and fails with
    /// `StorageFull`; everything else goes on working.
    pub fn set_full(&self, full: bool) {
        self.lock().full = full;
    }

    /// Holds every sync (or lets them go): while held, a sync waits, as on a slow disk, so
    /// writes pile up behind it.
    pub fn hold_syncs(&self, held: bool) {
        self.lock().syncs_held = held;
        self.syncs_released.notify_all();
    }

    /// Whether the simulated crash has happened.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Persistence steps taken so far.
    pub fn steps(&self) -> u64 {
        self.lock().steps
    }

    /// Restarts after a crash (or a power loss, if none happened): unsynced data is cut at a
    /// random point past the synced part, files never linked durably disappear.
    pub fn restart(&self) {
        let mut s = self.lock();
        let paths: Vec<PathBuf> = s.files.keys().cloned().collect();
        for path in paths {
            let r = s.random();
            let Some(f) = s.files.get_mut(&path) else {
                continue;
            };
            if !f.linked {
                s.files.remove(&path);
                continue;
            }
            let extra = f.data.len() - f.synced;
            let keep = f.synced + (r as usize) % (extra + 1);
            f.data.truncate(keep);
            f.synced = keep;
        }
        s.crashed = false;
        s.crash_at = None;
    }

    /// Flips one bit of `path` at `offset`, as a bad sector would.
    pub fn flip_bit(&self, path: &Path, offset: usize) -> io::Result<()> {
        let mut s = self.lock();
        let f = s.file(path)?;
        let byte = f
            .data
            .get_mut(offset)
            .ok_or_else(|| io::Error::other("offset past the end"))?;
        *byte ^= 0x10;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct SimHandle {
    fs: SimFs,
    path: PathBuf,
}

impl FsFile for SimHandle {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut s = self.fs.lock();
        let torn = s.step()?;
        if s.full {
            let cut = (s.random() as usize) % (buf.len() + 1);
            s.file(&self.path)?.data.extend_from_slice(&buf[..cut]);
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        let cut = if torn {
            (s.random() as usize) % (buf.len() + 1)
        } else {
            buf.len()
        };
        s.file(&self.path)?.data.extend_from_slice(&buf[..cut]);
        if torn { Err(gone()) } else { Ok(()) }
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.fs.lock();
        while s.syncs_held {
            s = self
                .fs
                .syncs_released
                .wait(s)
                .unwrap_or_else(|p| p.into_inner());
        }
        let torn = s.step()?;
        // A crash during fsync may come before or after the disk took the data.
        if !torn || s.random().is_multiple_of(2) {
            let f = s.file(&self.path)?;
            f.synced = f.data.len();
        }
        if torn { Err(gone()) } else { Ok(()) }
    }
}

impl Fs for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        if self.lock().crashed {
            return Err(gone());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        if s.crashed {
            return Err(gone());
        }
        // Files directly in `dir`, and the directories that hold files below it.
        let mut names: Vec<String> = s
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok()?.components().next())
            .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
            .collect();
        names.dedup();
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut s = self.lock();
        if s.crashed {
            return Err(gone());
        }
        Ok(s.file(path)?.data.clone())
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut s = self.lock();
        if s.crashed {
            return Err(gone());
        }
        let data = &s.file(path)?.data;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len).min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut s = self.lock();
        if s.crashed {
            return Err(gone());
        }
        s.files.entry(path.to_path_buf()).or_default();
        Ok(Box::new(SimHandle {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        if s.step()? {
            return Err(gone());
        }
        let f = s.file(path)?;
        f.data.truncate(len as usize);
        f.synced = f.synced.min(f.data.len());
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.step()? {
            return Err(gone());
        }
        s.files.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.step()? {
            return Err(gone());
        }
        for (path, f) in s.files.iter_mut() {
            if path.parent() == Some(dir) {
                f.linked = true;
            }
        }
        Ok(())
    }
}
