//! A throw-away PostgreSQL server: `initdb` into a temp dir, `postgres` on a free loopback
//! port, killed and removed on drop. PostgreSQL refuses to run as root, so as root the server
//! runs as the `postgres` system user (created by Debian's package) via `runuser`.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running throw-away server.
pub struct PgServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    fsync: bool,
}

/// How long a fresh server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl PgServer {
    /// Starts a server with durability settings as given (`fsync` on for benchmarks, off to
    /// make tests quick); panics with the reason if PostgreSQL is missing or will not start.
    pub fn start(fsync: bool) -> PgServer {
        let bin = bin_dir().unwrap_or_else(|| {
            panic!("PostgreSQL server binaries not found (apt-get install postgresql; scripts/test does this)")
        });
        let dir = tempfile::Builder::new()
            .prefix("flowgate-pg")
            .tempdir()
            .expect("temp dir");
        let user = run_as();
        if let Some((uid, gid)) = user.as_ref().map(|u| u.1) {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the temp dir");
        }
        let data = dir.path().join("data");
        let status = command(&user, &bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "flowgate",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed in {}", data.display());
        let port = free_port();
        let child = spawn(dir.path(), &bin, port, fsync);
        let server = PgServer {
            child,
            port,
            dir,
            bin,
            fsync,
        };
        server.wait_ready(0);
        server
    }

    /// Stops the server as an operator would (a fast shutdown: connections are cut, the
    /// data is kept), and waits until it is gone.
    pub fn stop(&mut self) {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        let pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
            .expect("postmaster.pid");
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let started = Instant::now();
        while pid_file.exists() {
            assert!(started.elapsed() < START_TIMEOUT, "postgres did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }

    /// Starts a stopped server again, on the same port and data.
    pub fn start_again(&mut self) {
        let before = self.times_ready();
        self.child = spawn(self.dir.path(), &self.bin, self.port, self.fsync);
        self.wait_ready(before);
    }

    /// How often the log says the server was ready.
    fn times_ready(&self) -> usize {
        fs::read_to_string(self.dir.path().join("server.log"))
            .map(|l| l.matches("ready to accept connections").count())
            .unwrap_or(0)
    }

    /// A connection URL for the `postgres` database as superuser `flowgate`.
    pub fn url(&self) -> String {
        format!("postgres://flowgate@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding its data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until the log says ready once more than `before` times and the port answers.
    fn wait_ready(&self, before: usize) {
        let started = Instant::now();
        let log = self.dir.path().join("server.log");
        loop {
            let ready = self.times_ready() > before;
            if ready && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "postgres did not start: {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the server process on `dir`'s data and `port`, appending to its log.
fn spawn(dir: &Path, bin: &Path, port: u16, fsync: bool) -> Child {
    let user = run_as();
    let log_path = dir.join("server.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("log file");
    if let Some((uid, gid)) = user.as_ref().map(|u| u.1) {
        std::os::unix::fs::chown(&log_path, Some(uid), Some(gid)).expect("chown log");
    }
    command(&user, &bin.join("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", &format!("fsync={}", if fsync { "on" } else { "off" })])
        .args(["-c", "max_connections=50", "-c", "shared_buffers=64MB"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start postgres")
}

/// The newest installed server's bin directory.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// As root: the `postgres` user's name and (uid, gid); otherwise `None` (run as ourselves).
fn run_as() -> Option<(String, (u32, u32))> {
    let me = fs::read_to_string("/proc/self/status").ok()?;
    let uid: u32 = me
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    if uid != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() != Some(&"postgres") || f.len() < 4 {
            return None;
        }
        Some((
            "postgres".to_string(),
            (f[2].parse().ok()?, f[3].parse().ok()?),
        ))
    })
}

fn command(user: &Option<(String, (u32, u32))>, program: &Path) -> Command {
    match user {
        Some((name, _)) => {
            let mut c = Command::new("runuser");
            c.args(["-u", name, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
