//! A disk broker whose disk fills mid-run (a tmpfs the test mounts, so it needs root; it says
//! SKIPPED otherwise): it says so once, shows it in `/stats`, tries again by itself, says when
//! it writes again, and nothing confirmed is lost or doubled.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, distinct_rows, finish, get_json, rows, spawn};

/// A disk broker on `data`, its log to `log`; its address and metrics address.
fn disk_broker(
    data: &std::path::Path,
    log: &std::path::Path,
) -> (std::process::Child, String, String) {
    let mut broker = Command::new(BIN)
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--storage", "disk", "--data-dir"])
        .arg(data)
        .args([
            "--capacity",
            "2000",
            "--segment-bytes",
            "256KiB",
            "--stop-on-stdin-eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(broker.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            panic!(
                "the broker did not start: {}",
                std::fs::read_to_string(log).unwrap()
            )
        })
        .to_string();
    line.clear();
    out.read_line(&mut line).unwrap();
    let metrics = line.trim().strip_prefix("metrics on ").unwrap().to_string();
    (broker, addr, metrics)
}

/// Fills what is left of the disk under `path`.
fn fill(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
}

/// Another process filling the disk and keeping it full: whatever room frees up (the broker
/// reclaiming acknowledged segments) it takes again, until released. A one-time fill would
/// leave the freed room to the broker, which can then go on writing into it as fast as its
/// consumer frees it, and never meet a full disk.
struct Filler {
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Filler {
    fn hold_full(path: &std::path::Path) -> Filler {
        fill(path);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (path, stop) = (path.to_path_buf(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                let block = vec![0u8; 4096];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if f.write_all(&block).is_err() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            })
        };
        Filler {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        }
    }

    /// Stops taking room and frees all of it.
    fn release(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::fs::remove_file(&self.path).unwrap();
    }
}

fn stop(mut broker: std::process::Child) {
    drop(broker.stdin.take());
    assert!(broker.wait().unwrap().success());
}

fn storage_failure(metrics: &str) -> Option<String> {
    let stats = get_json(metrics, "/stats");
    stats["topics"][0]["storage_failure"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_disk_filling_mid_run_is_said_once_shown_retried_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mounted) = common::Tmpfs::mount(dir.path(), "8m") else {
        return;
    };
    let mnt = mounted.0.clone();
    let log_path = dir.path().join("broker.log");
    let (broker, addr, metrics) = disk_broker(&mnt.join("data"), &log_path);

    let db = dir.path().join("c.db");
    let consumer = spawn(&format!(
        "consume --broker {addr} --topic t --group g --sink sqlite:{} --max-rate 3000 --idle-exit 6s",
        db.display()
    ));
    let producer = spawn(&format!(
        "produce --broker {addr} --topic t --rate 3000 --count 30000 --payload-size 100B"
    ));
    std::thread::sleep(Duration::from_secs(2));
    let filler = Filler::hold_full(&mnt.join("filler"));
    let full_at = Instant::now();
    let mut seen = None;
    while seen.is_none() && full_at.elapsed() < Duration::from_secs(10) {
        seen = storage_failure(&metrics);
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = seen.expect("/stats shows the failing log");
    std::thread::sleep(Duration::from_secs(2));
    filler.release();
    let freed_at = Instant::now();
    while storage_failure(&metrics).is_some() {
        assert!(
            freed_at.elapsed() < Duration::from_secs(15),
            "the log never wrote again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let resumed = freed_at.elapsed();
    assert!(finish(producer, Duration::from_secs(90)).success());
    assert!(finish(consumer, Duration::from_secs(90)).success());
    stop(broker);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("log cannot write"))
        .collect();
    let again: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("log writes again"))
        .collect();
    eprintln!(
        "/stats said: {seen}\nresumed {resumed:?} after space was freed\n{}\n{}",
        failed.join("\n"),
        again.join("\n")
    );
    assert_eq!(failed.len(), 1, "said once: {log}");
    assert_eq!(again.len(), 1, "said once: {log}");
    assert_eq!(distinct_rows(&db), 30_000, "every event once");
}

#[test]
fn a_broker_restarted_on_a_full_disk_starts_serves_its_backlog_and_takes_new_events_once_there_is_room()
 {
    let dir = tempfile::tempdir().unwrap();
    let Some(mounted) = common::Tmpfs::mount(dir.path(), "8m") else {
        return;
    };
    let mnt = mounted.0.clone();
    let data = mnt.join("data");
    // A backlog of 5,000 confirmed events, nobody consuming.
    let (broker, addr, _) = disk_broker(&data, &dir.path().join("b1.log"));
    let producer = spawn(&format!(
        "produce --broker {addr} --topic t --count 5000 --rate 20000 --payload-size 100B"
    ));
    assert!(finish(producer, Duration::from_secs(60)).success());
    stop(broker);
    let filler = mnt.join("filler");
    fill(&filler);

    let log_path = dir.path().join("b2.log");
    let (broker, addr, metrics) = disk_broker(&data, &log_path);
    let failure = storage_failure(&metrics);
    assert!(failure.is_some(), "it started on a full disk and says so");
    let db = dir.path().join("c.db");
    let consumer = spawn(&format!(
        "consume --broker {addr} --topic t --group g --sink sqlite:{} --idle-exit 6s",
        db.display()
    ));
    let producer = spawn(&format!(
        "produce --broker {addr} --topic t --count 100 --payload-size 100B"
    ));
    // The backlog is served while new events wait for room.
    let started = Instant::now();
    while (rows(&db).len() as u64) < 5_000 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the backlog was not served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(&filler).unwrap();
    assert!(finish(producer, Duration::from_secs(60)).success());
    assert!(finish(consumer, Duration::from_secs(60)).success());
    stop(broker);
    let log = std::fs::read_to_string(&log_path).unwrap();
    eprintln!(
        "{}",
        log.lines()
            .filter(|l| l.contains("log "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        distinct_rows(&db),
        5_100,
        "the backlog and the new events, once"
    );
    assert_eq!(log.matches("log cannot write").count(), 1, "{log}");
}

#[test]
fn segments_are_capped_to_a_quarter_of_the_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mounted) = common::Tmpfs::mount(dir.path(), "8m") else {
        return;
    };
    let mnt = mounted.0.clone();
    let out = Command::new(BIN)
        .args(["broker", "--listen", "127.0.0.1:0", "--duration", "300ms"])
        .args(["--storage", "disk", "--data-dir"])
        .arg(mnt.join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The default 16 MiB segment on an 8 MiB disk: at most 2 MiB, so one can fill and close.
    let capped: u64 = stderr
        .split("capped to ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cap said: {stderr}"));
    assert!((1 << 20..=2 << 20).contains(&capped), "{capped}");
}
