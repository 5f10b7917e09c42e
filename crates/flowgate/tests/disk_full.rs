//! A disk broker whose disk fills mid-run (a tmpfs the test mounts, so it needs root; it says
//! SKIPPED otherwise): it says so once, shows it in `/stats`, tries again by itself, says when
//! it writes again, and nothing confirmed is lost or doubled.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, finish, get_json, rows, spawn};

/// Unmounts when dropped, so a failing test leaves no mount behind.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
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
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mnt)
        .output()
        .unwrap();
    if !mounted.status.success() {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs (this test needs root): {}",
            String::from_utf8_lossy(&mounted.stderr).trim()
        );
        return;
    }
    let _mounted = Mounted(mnt.clone());
    let log_path = dir.path().join("broker.log");
    let mut broker = Command::new(BIN)
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--storage", "disk", "--data-dir"])
        .arg(mnt.join("data"))
        .args([
            "--capacity",
            "2000",
            "--segment-bytes",
            "256KiB",
            "--stop-on-stdin-eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(broker.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    line.clear();
    out.read_line(&mut line).unwrap();
    let metrics = line.trim().strip_prefix("metrics on ").unwrap().to_string();

    let db = dir.path().join("c.db");
    let consumer = spawn(&format!(
        "consume --broker {addr} --topic t --group g --sink sqlite:{} --max-rate 3000 --idle-exit 6s",
        db.display()
    ));
    let producer = spawn(&format!(
        "produce --broker {addr} --topic t --rate 3000 --count 30000 --payload-size 100B"
    ));
    std::thread::sleep(Duration::from_secs(2));
    let filler = mnt.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
    }
    let full_at = Instant::now();
    let mut seen = None;
    while seen.is_none() && full_at.elapsed() < Duration::from_secs(10) {
        seen = storage_failure(&metrics);
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = seen.expect("/stats shows the failing log");
    std::thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(&filler).unwrap();
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
    drop(broker.stdin.take());
    assert!(broker.wait().unwrap().success());
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
    let rows = rows(&db);
    let distinct: std::collections::BTreeSet<_> = rows.iter().collect();
    assert_eq!(
        (rows.len(), distinct.len()),
        (30_000, 30_000),
        "every event once"
    );
}
