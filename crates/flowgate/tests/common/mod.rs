//! Helpers shared by the process-level tests: the flowgate binary, a broker process on a
//! free port, children with deadlines, JSON summaries.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flowgate");

pub struct BrokerProc {
    child: Child,
    pub addr: String,
    /// The /stats and /metrics address, when started with `--metrics-addr`.
    pub metrics: Option<String>,
    /// The HTTP API's address, when started with `--http-addr`.
    pub http: Option<String>,
    json: PathBuf,
}

impl BrokerProc {
    pub fn start(dir: &Path, extra: &str) -> BrokerProc {
        Self::start_on(dir, "127.0.0.1:0", "broker.json", extra).0
    }

    /// Starts a broker listening on `listen` (a restart passes the address it had), writing
    /// its summary to `dir/json_name`; also returns how long it took to announce its address,
    /// which includes recovering its disk log.
    pub fn start_on(
        dir: &Path,
        listen: &str,
        json_name: &str,
        extra: &str,
    ) -> (BrokerProc, Duration) {
        let json = dir.join(json_name);
        let started = Instant::now();
        let mut child = Command::new(BIN)
            .args([
                "broker",
                "--listen",
                listen,
                "--stop-on-stdin-eof",
                "--json",
            ])
            .arg(&json)
            .args(extra.split_whitespace())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        let took = started.elapsed();
        let metrics = extra.contains("--metrics-addr").then(|| {
            line.clear();
            out.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("metrics on ")
                .expect("metrics line")
                .to_string()
        });
        let http = extra.contains("--http-addr").then(|| {
            line.clear();
            out.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("HTTP API on ")
                .expect("HTTP API line")
                .to_string()
        });
        let broker = BrokerProc {
            child,
            addr,
            metrics,
            http,
            json,
        };
        (broker, took)
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and its exit status and JSON summary once it has drained and stopped.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Value) {
        sigterm(self.child.id());
        let status = self.child.wait().unwrap();
        let summary = std::fs::read_to_string(&self.json).unwrap();
        (status, serde_json::from_str(&summary).unwrap())
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its stdin so it stops, and returns its JSON summary.
    pub fn stop(mut self) -> Value {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
        serde_json::from_str(&std::fs::read_to_string(&self.json).unwrap()).unwrap()
    }
}

/// Sends SIGTERM to a process: asks it to stop as a service manager would.
pub fn sigterm(pid: u32) {
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid}");
}

pub fn spawn(args: &str) -> Child {
    Command::new(BIN)
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// As [`spawn`], its standard error appended to `log` (to quote when it fails).
pub fn spawn_logged(args: &str, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(BIN)
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// The last `lines` lines of a log file, for a failure message.
pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn finish(mut child: Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` (as [`finish`]) and fails, with the tail of its `log`, unless it exited 0.
pub fn finish_ok(child: Child, log: &Path, within: Duration) {
    let status = finish(child, within);
    assert!(status.success(), "{status}: {}", tail(log, 20));
}

/// The consumer table's rows as (producer, seq), in the order they were committed.
pub fn rows(db: &Path) -> Vec<(u64, u64)> {
    if !db.exists() {
        return Vec::new();
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    let Ok(mut stmt) = conn.prepare("SELECT producer, seq FROM events ORDER BY rowid") else {
        return Vec::new(); // not created yet
    };
    stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The consumer table's rows, asserted distinct; how many.
pub fn distinct_rows(db: &Path) -> u64 {
    let all = rows(db);
    let set: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(set.len(), all.len(), "a row is in the table twice");
    all.len() as u64
}

/// A tmpfs the test mounted, unmounted when dropped so a failing test leaves no mount.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `dir/mnt`; `None`, and says SKIPPED, when this is not
    /// root (mounting needs it).
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let mnt = dir.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs (this test needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(mnt))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Rows in the consumer's table now (0 before it exists).
pub fn row_count(db: &Path) -> u64 {
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return 0;
    };
    conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
        .map_or(0, |n| n as u64)
}

/// `GET path` from an HTTP server at `addr`, its body parsed as JSON.
pub fn get_json(addr: &str, path: &str) -> Value {
    let response = get_text(addr, path);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

/// The whole HTTP/1.0 response to `GET path`, headers included.
pub fn get_text(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Spawns `flowgate ARGS --metrics-addr 127.0.0.1:0` and returns it with the address it
/// announced in its log on stderr (`... INFO metrics on ADDR`); the rest of its stderr is
/// drained.
pub fn spawn_with_metrics(args: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args.split_whitespace())
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "exited before announcing metrics"
        );
        // A log line: a timestamp and a level, then the message.
        if let Some((_, a)) = line.trim().split_once("metrics on ") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});
    (child, addr)
}

/// A small deterministic generator (xorshift), so a failing random schedule can be replayed.
pub struct Dice(u64);

impl Dice {
    /// Seeded from `FLOWGATE_FAULTS_SEED`, else from the OS; the seed is printed.
    pub fn from_env() -> Dice {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::env::var("FLOWGATE_FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u32(std::process::id());
                h.finish()
            });
        eprintln!("fault schedule seed {seed} (FLOWGATE_FAULTS_SEED={seed} replays it)");
        Dice::seeded(seed)
    }

    /// Seeded with `seed`.
    pub fn seeded(seed: u64) -> Dice {
        Dice(seed | 1)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
