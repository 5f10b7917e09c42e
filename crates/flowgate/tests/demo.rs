//! The real `flowgate demo` binary, run for a few seconds per mode with small rates and
//! limits; every figure it reports is checked against the SQLite file it wrote.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

struct Run {
    output: Output,
    results: Vec<Value>,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs `flowgate demo` with the whitespace-separated `args`, a fresh database and a JSON file.
fn demo(args: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let json = dir.path().join("out.json");
    let output = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .arg("demo")
        .args(args.split_whitespace())
        .arg("--db")
        .arg(&db)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let results = std::fs::read_to_string(&json)
        .ok()
        .and_then(|s| serde_json::from_str::<Vec<Value>>(&s).ok())
        .unwrap_or_default();
    Run {
        output,
        results,
        db,
        _dir: dir,
    }
}

fn rows(db: &Path, table: &str) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .unwrap()
}

fn distinct_ids_are_a_prefix(db: &Path, table: &str) -> bool {
    // Committed rows of a lossless run are exactly ids 1..=n, no gap and no duplicate.
    let conn = rusqlite::Connection::open(db).unwrap();
    let (n, min, max): (i64, i64, i64) = conn
        .query_row(
            &format!("SELECT COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM {table}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    min == 1 && max == n
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing or not a count in {v}"))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

fn describe(run: &Run) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&run.output.stdout),
        String::from_utf8_lossy(&run.output.stderr)
    )
}

#[test]
fn backpressure_holds_the_producer_to_the_consumer_and_loses_nothing() {
    let run = demo(
        "--mode backpressure --producer-rate 4000 --consumer-rate 400 --duration 5s \
         --queue-capacity 40 --memory-limit 64MiB",
    );
    assert!(run.output.status.success(), "{}", describe(&run));
    let r = &run.results[0];
    assert_eq!(r["mode"], "backpressure");
    assert_eq!(r["crashed"], false, "{}", describe(&run));
    assert!(u(r, "peak_queue_depth") <= 40, "{r}");
    assert_eq!(u(r, "dropped"), 0);
    assert_eq!(u(r, "lost"), 0);
    let committed = u(r, "committed");
    assert_eq!(
        committed,
        rows(&run.db, "events_backpressure"),
        "committed = rows in the file"
    );
    assert_eq!(committed + u(r, "queued"), u(r, "produced"));
    assert!(distinct_ids_are_a_prefix(&run.db, "events_backpressure"));
    let steady = f(r, "producer_rate_steady");
    assert!(
        (steady - 400.0).abs() <= 40.0,
        "producer at {steady}/s, consumer at 400/s"
    );
    assert!(
        f(r, "producer_wait_ratio") > 0.5,
        "the producer spent most of its time waiting"
    );
}

/// A naive pipeline that grows by ~40 MB/s: it must die within a second or two.
const NAIVE_UNDER_32MIB: &str = "--mode naive --producer-rate 5000 --consumer-rate 100 \
    --duration 20s --payload-size 8KiB --memory-limit 32MiB";

#[test]
fn naive_dies_of_real_memory_exhaustion_under_a_cgroup_limit() {
    let run = demo(&format!("{NAIVE_UNDER_32MIB} --limit-with cgroup"));
    assert!(run.output.status.success(), "{}", describe(&run));
    let r = &run.results[0];
    assert_eq!(r["crashed"], true, "{}", describe(&run));
    assert!(
        r["crash_reason"].as_str().unwrap().contains("OOM killer"),
        "{r}"
    );
    assert!(f(r, "crashed_at_s") < 20.0);
    let committed = u(r, "committed");
    assert_eq!(committed, rows(&run.db, "events_naive"));
    assert!(
        u(r, "lost") > 0 && u(r, "lost") == u(r, "produced") - committed,
        "{r}"
    );
    assert!(
        u(r, "peak_rss_bytes") > 24 << 20,
        "it died near its limit: {r}"
    );
}

#[test]
fn naive_dies_of_allocation_failure_under_an_rlimit() {
    let run = demo(&format!("{NAIVE_UNDER_32MIB} --limit-with rlimit"));
    let r = &run.results[0];
    assert_eq!(r["crashed"], true, "{}", describe(&run));
    assert!(
        r["crash_reason"]
            .as_str()
            .unwrap()
            .contains("memory allocation"),
        "{r}"
    );
    assert_eq!(u(r, "committed"), rows(&run.db, "events_naive"));
}

fn check_drop_mode(mode: &str, table: &str) {
    let run = demo(&format!(
        "--mode {mode} --producer-rate 2000 --consumer-rate 200 --duration 3s --queue-capacity 50"
    ));
    assert!(run.output.status.success(), "{}", describe(&run));
    let r = &run.results[0];
    assert_eq!(r["crashed"], false);
    assert!(u(r, "dropped") > 0, "{r}");
    assert!(u(r, "peak_queue_depth") <= 50);
    let committed = u(r, "committed");
    assert_eq!(committed, rows(&run.db, table));
    assert_eq!(
        committed + u(r, "dropped") + u(r, "queued"),
        u(r, "produced"),
        "{r}"
    );
    assert_eq!(u(r, "lost"), 0);
    assert!(
        f(r, "producer_wait_ratio") < 0.05,
        "drop modes never make the producer wait"
    );
}

#[test]
fn drop_newest_counts_every_drop() {
    check_drop_mode("drop-newest", "events_drop_newest");
}

#[test]
fn drop_oldest_counts_every_drop() {
    check_drop_mode("drop-oldest", "events_drop_oldest");
}

#[test]
fn compare_runs_both_modes_and_reports_every_json_field() {
    let run = demo(
        "--producer-rate 3000 --consumer-rate 100 --duration 3s --payload-size 8KiB \
         --memory-limit 24MiB --queue-capacity 20",
    );
    assert!(run.output.status.success(), "{}", describe(&run));
    let modes: Vec<&str> = run
        .results
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["naive", "backpressure"]);
    for key in [
        "mode",
        "duration_s",
        "produced",
        "committed",
        "dropped",
        "lost",
        "peak_queue_depth",
        "peak_queue_bytes",
        "peak_rss_bytes",
        "crashed",
        "crashed_at_s",
        "producer_wait_ratio",
        "latency_ms_p50",
        "latency_ms_p99",
    ] {
        for r in &run.results {
            assert!(r.get(key).is_some(), "{key} missing from {r}");
        }
    }
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    assert!(
        stdout.contains("CRASHED") && stdout.contains("finished"),
        "{stdout}"
    );
}

#[test]
fn bad_flags_get_an_error_naming_the_flag_and_run_nothing() {
    for (args, needle) in [
        (
            "--queue-bytes 100B",
            "--queue-bytes 100 B cannot hold one event",
        ),
        ("--duration 30", "e.g. 30s"),
        ("--consumer-rate 0", "at least 1"),
        ("--memory-limit 1MiB", "--memory-limit"),
        ("--queue-capacity 0", "--queue-capacity 0"),
        ("--mode fast", "invalid value 'fast'"),
    ] {
        let run = demo(args);
        assert_eq!(
            run.output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&run)
        );
        let stderr = String::from_utf8_lossy(&run.output.stderr);
        assert!(
            stderr.contains(needle),
            "{args:?}: expected {needle:?} in {stderr}"
        );
        assert!(!run.db.exists(), "{args:?}: nothing may run on bad flags");
    }
}

#[test]
fn a_chain_holds_every_stage_to_the_slow_one_names_it_and_loses_nothing() {
    for (slow, named) in [
        ("middle", "the one reading 'orders' (group 'enrich')"),
        ("db", "the last, reading 'enriched' (group 'db')"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("chain.json");
        let output = Command::new(env!("CARGO_BIN_EXE_flowgate"))
            .args(["demo", "--chain", "--slow", slow, "--duration", "4s"])
            .args(["--producer-rate", "5000", "--consumer-rate", "500"])
            .args(["--queue-capacity", "200", "--db"])
            .arg(dir.path().join("chain.db"))
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let shown = format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "--slow {slow}: {shown}");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert!(u(&v, "confirmed") > 0, "{shown}");
        assert_eq!(u(&v, "committed"), u(&v, "confirmed"), "{shown}");
        assert_eq!((u(&v, "lost"), u(&v, "duplicates")), (0, 0), "{shown}");
        let why = v["explanation"].as_str().unwrap();
        assert!(why.contains(named), "--slow {slow}: {why}");
        let producer = &v["stages"][0];
        assert_eq!(producer["stage"], "producer");
        let pace = f(producer, "rate");
        assert!(
            (pace - 500.0).abs() <= 50.0,
            "--slow {slow}: the producer asks 5,000/s and the slow stage takes 500/s, yet it ran at {pace:.0}/s: {shown}"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        for stage in [
            "producer",
            "topic orders",
            "enrich stage",
            "topic enriched",
            "database stage",
        ] {
            assert!(stdout.contains(stage), "the summary shows {stage}: {shown}");
        }
    }
}
