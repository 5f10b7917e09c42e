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
        let log = fs::File::create(dir.path().join("server.log")).expect("log file");
        if let Some((uid, gid)) = user.as_ref().map(|u| u.1) {
            std::os::unix::fs::chown(dir.path().join("server.log"), Some(uid), Some(gid))
                .expect("chown log");
        }
        let child = command(&user, &bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("fsync={}", if fsync { "on" } else { "off" })])
            .args(["-c", "max_connections=50", "-c", "shared_buffers=64MB"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let server = PgServer { child, port, dir };
        server.wait_ready();
        server
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

    fn wait_ready(&self) {
        let started = Instant::now();
        let log = self.dir.path().join("server.log");
        loop {
            let ready = fs::read_to_string(&log)
                .map(|l| l.contains("ready to accept connections"))
                .unwrap_or(false);
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
