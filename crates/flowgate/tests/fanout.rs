//! Fan-out with real processes: two consumer groups read one topic into their own SQLite
//! tables. Both blocking, the slow group sets the producer's pace and both tables are exact;
//! the slow group best effort (`--max-lag`), the producer and the fast group keep full speed,
//! and the slow group's rows plus the skips the broker counted for it are what was produced.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{BrokerProc, distinct_rows, finish, get_json, json, spawn_logged, tail};
use serde_json::Value;

/// Waits until the broker's topic `t` has these groups, each with a consumer attached.
fn wait_for_groups(metrics: &str, names: &[&str]) {
    let started = Instant::now();
    loop {
        let stats = get_json(metrics, "/stats");
        let attached: Vec<String> = stats["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["name"] == "t")
            .flat_map(|t| t["groups"].as_array().cloned().unwrap_or_default())
            .filter(|g| g["consumers"].as_u64() >= Some(1))
            .map(|g| g["name"].as_str().unwrap_or_default().to_string())
            .collect();
        if names.iter().all(|n| attached.iter().any(|a| a == n)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "groups {names:?} attached within 20 s; /stats says {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The broker's figures for group `name` of topic `t`.
fn group(metrics: &str, name: &str) -> Value {
    let stats = get_json(metrics, "/stats");
    stats["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["name"] == "t")
        .flat_map(|t| t["groups"].as_array().cloned().unwrap_or_default())
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {stats}"))
}

struct Run {
    producer_rate: f64,
    fast_rows: u64,
    slow_rows: u64,
    slow_rate: f64,
    slow_group: Value,
    /// `flowgate top --once --json` of a window in the middle of the run.
    top: Value,
    /// `flowgate topics --json` just after it.
    topics: Value,
}

/// A broker of `capacity`, a fast `db` group and a `slow` group committing at most
/// `slow_rate` per second (with `slow_flags`), and a producer of `count` events at `rate`.
fn run(dir: &Path, capacity: u64, slow_rate: u64, slow_flags: &str, count: u64, rate: u64) -> Run {
    let broker = BrokerProc::start(
        dir,
        &format!("--capacity {capacity} --metrics-addr 127.0.0.1:0"),
    );
    let metrics = broker.metrics.clone().expect("metrics address");
    let (fast_db, slow_db) = (dir.join("fast.db"), dir.join("slow.db"));
    let consumer = |group: &str, db: &Path, extra: &str, json: &str, log: &str| {
        spawn_logged(
            &format!(
                "consume --broker {} --topic t --group {group} --sink sqlite:{} {extra} --idle-exit 3s --json {}",
                broker.addr,
                db.display(),
                dir.join(json).display()
            ),
            &dir.join(log),
        )
    };
    let fast = consumer("db", &fast_db, "", "fast.json", "fast.log");
    let slow = consumer(
        "slow",
        &slow_db,
        &format!("--max-rate {slow_rate} {slow_flags}"),
        "slow.json",
        "slow.log",
    );
    wait_for_groups(&metrics, &["db", "slow"]);
    let producer = spawn_logged(
        &format!(
            "produce --broker {} --topic t --rate {rate} --count {count} --json {}",
            broker.addr,
            dir.join("p.json").display()
        ),
        &dir.join("p.log"),
    );
    // One 2 s window of `flowgate top` while the producer runs.
    std::thread::sleep(Duration::from_millis(500));
    let top_json = dir.join("top.json");
    let top = std::process::Command::new(common::BIN)
        .args([
            "top",
            "--broker",
            &metrics,
            "--topic",
            "t",
            "--once",
            "--interval",
            "2s",
        ])
        .arg("--json")
        .arg(&top_json)
        .output()
        .unwrap();
    assert!(
        top.status.success(),
        "top: {}",
        String::from_utf8_lossy(&top.stderr)
    );
    let topics = std::process::Command::new(common::BIN)
        .args(["topics", "--broker", &metrics, "--json"])
        .output()
        .unwrap();
    assert!(
        topics.status.success(),
        "topics: {}",
        String::from_utf8_lossy(&topics.stderr)
    );
    let topics: Value = serde_json::from_slice(&topics.stdout).unwrap();
    let within = Duration::from_secs(120);
    assert!(
        finish(producer, within).success(),
        "producer: {}",
        tail(&dir.join("p.log"), 20)
    );
    assert!(
        finish(fast, within).success(),
        "fast consumer: {}",
        tail(&dir.join("fast.log"), 20)
    );
    assert!(
        finish(slow, within).success(),
        "slow consumer: {}",
        tail(&dir.join("slow.log"), 20)
    );
    let slow_group = group(&metrics, "slow");
    broker.stop();
    let p = json(&dir.join("p.json"));
    assert_eq!(p["confirmed_seq"], count, "every event confirmed: {p}");
    let r = Run {
        producer_rate: p["rate"].as_f64().unwrap(),
        fast_rows: distinct_rows(&fast_db),
        slow_rows: distinct_rows(&slow_db),
        slow_rate: json(&dir.join("slow.json"))["rate"].as_f64().unwrap(),
        slow_group,
        top: json(&top_json),
        topics,
    };
    eprintln!(
        "producer {:.0}/s; db {} rows; slow {} rows at {:.0}/s, skipped {}",
        r.producer_rate, r.fast_rows, r.slow_rows, r.slow_rate, r.slow_group["skipped"]
    );
    r
}

#[test]
fn two_blocking_groups_the_slow_one_paces_the_producer_and_both_tables_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let count = 10_000;
    // A small capacity, so the producer's head start (what the topic holds before the slow
    // group's pace reaches it) is 2% of the run, not part of the pace compared.
    let r = run(dir.path(), 200, 2_000, "--prefetch 100", count, 20_000);
    assert_eq!(r.fast_rows, count, "the fast group's table is exact");
    assert_eq!(r.slow_rows, count, "the slow group's table is exact");
    assert_eq!(r.slow_group["skipped"], 0, "a blocking group skips nothing");
    let why = r.top["explanation"].as_str().unwrap();
    assert!(why.contains("'slow' holds it back"), "top says: {why}");
    // `flowgate topics` sees the topic full and sizes it from what it measured.
    let t = &r.topics[0];
    assert_eq!(t["name"], "t");
    assert_eq!(t["capacity_events"], 200);
    let held = t["held"].as_u64().unwrap();
    assert!(held <= 200, "{t}");
    let mut names: Vec<&str> = t["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    names.sort_unstable(); // in the order the consumers attached
    assert_eq!(names, ["db", "slow"]);
    let f = &t["forecast"];
    assert_eq!(
        f["scale"]["group"], "slow",
        "the slow group holds it full: {f}"
    );
    assert!(f["scale"]["more_consumers"].as_u64() >= Some(1), "{f}");
    assert!(
        f["stall_events"].as_u64() > Some(200),
        "a 5 s stall needs more than the 200 held: {f}"
    );
    eprintln!("topics: {t}");
    // The producer could send 20,000/s and the fast group keep up; the slow group's 2,000/s
    // holds both back.
    assert!(
        (r.producer_rate - r.slow_rate).abs() / r.slow_rate <= 0.10,
        "producer at {:.0}/s, slow group at {:.0}/s",
        r.producer_rate,
        r.slow_rate
    );
}

#[test]
fn a_best_effort_group_never_slows_the_producer_and_its_rows_plus_its_skips_are_what_was_produced()
{
    let dir = tempfile::tempdir().unwrap();
    let count = 30_000;
    let r = run(dir.path(), 1_000, 1_000, "--max-lag 500", count, 10_000);
    assert_eq!(r.fast_rows, count, "the fast group's table is exact");
    let skipped = r.slow_group["skipped"].as_u64().unwrap();
    assert!(skipped > 0, "the slow group fell behind: {}", r.slow_group);
    assert_eq!(
        r.slow_rows + skipped,
        count,
        "{} rows and {skipped} skipped",
        r.slow_rows
    );
    assert_eq!(r.slow_group["max_lag"], 500);
    let why = r.top["explanation"].as_str().unwrap();
    assert!(!why.contains("holds it back"), "top says: {why}");
    let groups = r.top["groups"].as_array().unwrap();
    assert!(
        groups
            .iter()
            .any(|g| g["name"] == "slow" && g["skipped_per_s"].as_f64() > Some(0.0)),
        "top shows the slow group skipping: {groups:?}"
    );
    // Full speed is the producer's own --rate: the slow group at 1,000/s does not hold it.
    assert!(
        r.producer_rate >= 0.9 * 10_000.0,
        "producer at {:.0}/s, slow group at {:.0}/s",
        r.producer_rate,
        r.slow_rate
    );
}
