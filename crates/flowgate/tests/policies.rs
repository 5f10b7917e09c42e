//! Each overflow policy and the max age with real processes: a broker whose TOML declares one
//! topic per policy (100 events each), a producer of 1,000 events into each with no consumer
//! attached, then a consumer that reads what the topic kept into SQLite. The counts the
//! broker's `/stats` reports are exact, and so is which events the table holds: the first 100
//! (drop-newest, reject), the last 100 (drop-oldest), the last per key (conflate), none of
//! those past the max age. Under block the producer waits instead, and nothing is dropped.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{BrokerProc, finish, get_json, get_text, json, rows, spawn_logged, tail};
use serde_json::Value;

const CONFIG: &str = r#"
[[topic]]
name = "block"
capacity_events = 100
capacity_bytes = 1048576

[[topic]]
name = "newest"
capacity_events = 100
capacity_bytes = 1048576
policy = "drop-newest"

[[topic]]
name = "oldest"
capacity_events = 100
capacity_bytes = 1048576
policy = "drop-oldest"

[[topic]]
name = "reject"
capacity_events = 100
capacity_bytes = 1048576
policy = "reject"

[[topic]]
name = "latest"
capacity_events = 100
capacity_bytes = 1048576
policy = "conflate"

[[topic]]
name = "fresh"
capacity_events = 1000
capacity_bytes = 1048576
max_age = "2s"
"#;

/// The broker's figures for `topic`.
fn topic(metrics: &str, name: &str) -> Value {
    let stats = get_json(metrics, "/stats");
    stats["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no topic {name} in {stats}"))
}

/// Runs `flowgate produce` to the end with `args`; its exit code and `--json` summary.
fn produce(dir: &Path, broker: &str, name: &str, args: &str) -> (Option<i32>, Value) {
    let summary = dir.join(format!("{name}.p.json"));
    let log = dir.join(format!("{name}.p.log"));
    let child = spawn_logged(
        &format!(
            "produce --broker {broker} --topic {name} {args} --json {}",
            summary.display()
        ),
        &log,
    );
    let status = finish(child, Duration::from_secs(60));
    assert!(summary.exists(), "producer of {name}: {}", tail(&log, 20));
    (status.code(), json(&summary))
}

/// Reads topic `name` into a fresh SQLite table until it has been idle 2 s; the sequence
/// numbers it holds, in order.
fn consume(dir: &Path, broker: &str, name: &str) -> Vec<u64> {
    let db = dir.join(format!("{name}.db"));
    let log = dir.join(format!("{name}.c.log"));
    let child = spawn_logged(
        &format!(
            "consume --broker {broker} --topic {name} --group g --sink sqlite:{} --idle-exit 2s",
            db.display()
        ),
        &log,
    );
    assert!(
        finish(child, Duration::from_secs(60)).success(),
        "consumer of {name}: {}",
        tail(&log, 20)
    );
    let mut seqs: Vec<u64> = rows(&db).into_iter().map(|(_, seq)| seq).collect();
    seqs.sort_unstable();
    seqs
}

/// Flags of a disk broker in `dir` on the topics of [`CONFIG`], with `extra`.
fn disk_flags(dir: &Path, extra: &str) -> String {
    let config = dir.join("broker.toml");
    std::fs::write(&config, CONFIG).unwrap();
    format!(
        "--config {} --storage disk --data-dir {} {extra} --metrics-addr 127.0.0.1:0",
        config.display(),
        dir.join("data").display()
    )
}

fn counts(t: &Value) -> [u64; 5] {
    [
        "dropped_newest",
        "dropped_oldest",
        "rejected",
        "conflated",
        "expired",
    ]
    .map(|k| t[k].as_u64().unwrap_or_else(|| panic!("no {k} in {t}")))
}

#[test]
fn every_policy_drops_refuses_or_replaces_exactly_what_does_not_fit_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let broker = BrokerProc::start(
        dir.path(),
        &format!("--config {} --metrics-addr 127.0.0.1:0", config.display()),
    );
    let metrics = broker.metrics.clone().expect("metrics address");
    let (addr, d) = (broker.addr.clone(), dir.path());
    let fast = "--rate 1000000 --count 1000";

    // block: the producer gets credit for what fits and then waits; nothing is dropped.
    let (code, p) = produce(d, &addr, "block", "--rate 1000000 --duration 2s");
    assert_eq!(code, Some(0));
    assert_eq!(p["sent"], 100, "credit for the capacity only: {p}");
    assert!(p["wait_ratio"].as_f64().unwrap() > 0.8, "it waited: {p}");
    let t = topic(&metrics, "block");
    assert_eq!(
        (t["policy"].as_str(), t["held_events"].as_u64()),
        (Some("block"), Some(100))
    );
    assert_eq!(counts(&t), [0; 5]);
    assert_eq!(consume(d, &addr, "block"), (1..=100).collect::<Vec<_>>());

    // drop-newest: the producer never waits; the first 100 are kept.
    let (code, p) = produce(d, &addr, "newest", fast);
    assert_eq!(
        (code, p["confirmed_seq"].as_u64()),
        (Some(0), Some(1000)),
        "{p}"
    );
    let t = topic(&metrics, "newest");
    assert_eq!(counts(&t), [900, 0, 0, 0, 0], "{t}");
    assert_eq!(t["accepted"], 100);
    assert_eq!(consume(d, &addr, "newest"), (1..=100).collect::<Vec<_>>());

    // drop-oldest: the last 100 are kept.
    let (code, _) = produce(d, &addr, "oldest", fast);
    assert_eq!(code, Some(0));
    let t = topic(&metrics, "oldest");
    assert_eq!(counts(&t), [0, 900, 0, 0, 0], "{t}");
    assert_eq!(
        consume(d, &addr, "oldest"),
        (901..=1000).collect::<Vec<_>>()
    );

    // reject: the producer is told of each refused event, counts it and exits 1.
    let (code, p) = produce(d, &addr, "reject", fast);
    assert_eq!(code, Some(1), "refused events make the exit status 1");
    assert_eq!(
        (p["refused"].as_u64(), p["sent"].as_u64()),
        (Some(900), Some(1000)),
        "{p}"
    );
    let t = topic(&metrics, "reject");
    assert_eq!(counts(&t), [0, 0, 900, 0, 0], "{t}");
    assert_eq!(consume(d, &addr, "reject"), (1..=100).collect::<Vec<_>>());

    // conflate: ten sensors, a hundred readings each; the newest reading of each is kept.
    let lines: String = (1..=1000)
        .map(|i| format!("{{\"sensor\":\"s{}\",\"reading\":{i}}}\n", i % 10))
        .collect();
    let file = d.join("readings.ndjson");
    std::fs::write(&file, lines).unwrap();
    let from = format!("--from {} --key-field sensor", file.display());
    let (code, p) = produce(d, &addr, "latest", &from);
    assert_eq!((code, p["sent"].as_u64()), (Some(0), Some(1000)), "{p}");
    let t = topic(&metrics, "latest");
    assert_eq!(counts(&t), [0, 0, 0, 990, 0], "{t}");
    assert_eq!(t["held_events"], 10);
    assert_eq!(
        consume(d, &addr, "latest"),
        (991..=1000).collect::<Vec<_>>()
    );

    // max_age: 500 events wait 3 s with nobody reading; each becomes a dead letter.
    let (code, _) = produce(d, &addr, "fresh", "--rate 1000000 --count 500");
    assert_eq!(code, Some(0));
    std::thread::sleep(Duration::from_secs(3));
    let t = topic(&metrics, "fresh");
    assert_eq!(counts(&t), [0, 0, 0, 0, 500], "{t}");
    assert_eq!(
        (t["held_events"].as_u64(), t["max_age_ms"].as_u64()),
        (Some(0), Some(2000))
    );
    let letters = t["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 100, "the latest 100 are kept");
    assert!(
        letters.iter().all(|l| l["age_ms"].as_u64() >= Some(2000)),
        "each with an age past the max: {letters:?}"
    );
    let metrics_text = get_text(&metrics, "/metrics");
    assert!(
        metrics_text.contains("flowgate_topic_expired_total{topic=\"fresh\"} 500"),
        "the metric counts them"
    );
    assert!(
        consume(d, &addr, "fresh").is_empty(),
        "none is delivered late"
    );
    let topics = std::process::Command::new(common::BIN)
        .args(["topics", "--broker", &metrics, "--interval", "200ms"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&topics.stdout);
    for line in [
        "policy drop-oldest: 900 dropped oldest",
        "policy reject: 900 rejected",
        "policy conflate: 990 conflated",
        "policy block, max age 2,000 ms: 500 expired",
    ] {
        assert!(listing.contains(line), "'{line}' in:\n{listing}");
    }
    broker.stop();
}

#[test]
fn with_a_disk_log_what_drop_oldest_dropped_stays_dropped_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A topic that drops holds its capacity with a log too (it builds no backlog on disk);
    // the log keeps what it holds across a restart, and forgets what it dropped.
    let flags = disk_flags(dir.path(), "--max-disk-bytes 64KiB --segment-bytes 4KiB");
    let (broker, _) = BrokerProc::start_on(dir.path(), "127.0.0.1:0", "b0.json", &flags);
    let (addr, d) = (broker.addr.clone(), dir.path());
    let (code, _) = produce(d, &addr, "oldest", "--rate 1000000 --count 1000");
    assert_eq!(code, Some(0));
    let t = topic(broker.metrics.as_deref().unwrap(), "oldest");
    let held = t["held_events"].as_u64().unwrap() + t["on_disk"].as_u64().unwrap();
    assert!(
        (100..1000).contains(&held),
        "the log, not memory, is full: {t}"
    );
    assert_eq!(counts(&t), [0, 1000 - held, 0, 0, 0], "{t}");
    let (status, _) = broker.terminate();
    assert!(status.success());
    let (broker, _) = BrokerProc::start_on(dir.path(), &addr, "b1.json", &flags);
    assert_eq!(
        consume(d, &addr, "oldest"),
        (1001 - held..=1000).collect::<Vec<_>>(),
        "the newest {held}, and none of the dropped came back"
    );
    broker.stop();
}

#[test]
fn a_topic_declared_with_max_disk_bytes_holds_its_producer_at_its_own_log_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    let declare = |name: &str, extra: &str| {
        format!(
            "[[topic]]\nname = \"{name}\"\ncapacity_events = 10\ncapacity_bytes = 1048576\n{extra}\n"
        )
    };
    let text = declare("small", "max_disk_bytes = 65536") + &declare("big", "");
    std::fs::write(&config, text).unwrap();
    let flags = format!(
        "--config {} --storage disk --data-dir {} --max-disk-bytes 1GiB",
        config.display(),
        dir.path().join("data").display()
    );
    let broker = BrokerProc::start(dir.path(), &flags);
    let (addr, d) = (broker.addr.clone(), dir.path());
    let args = "--rate 1000000 --payload-size 1KiB --duration 2s";
    let (code, small) = produce(d, &addr, "small", args);
    assert_eq!(code, Some(0));
    let sent = small["sent"].as_u64().unwrap();
    // Each 1 KiB event takes a little more than 1 KiB of log.
    assert!((30..64).contains(&sent), "held at its own 64 KiB: {small}");
    assert!(
        small["wait_ratio"].as_f64().unwrap() > 0.5,
        "it waited: {small}"
    );
    let (code, big) = produce(
        d,
        &addr,
        "big",
        &args.replace("--duration 2s", "--count 1000"),
    );
    assert_eq!(
        (code, big["sent"].as_u64()),
        (Some(0), Some(1000)),
        "the broker's 1 GiB: {big}"
    );
    broker.stop();
}

#[test]
fn a_producer_streaming_into_a_dropping_topic_goes_on_across_a_disk_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = disk_flags(dir.path(), "");
    let (broker, _) = BrokerProc::start_on(dir.path(), "127.0.0.1:0", "b0.json", &flags);
    let addr = broker.addr.clone();
    let summary = dir.path().join("p.json");
    let log = dir.path().join("p.log");
    // Nobody consumes: after the first 100, every event is dropped, and confirmed.
    let producer = spawn_logged(
        &format!(
            "produce --broker {addr} --topic newest --rate 2000 --duration 5s --json {}",
            summary.display()
        ),
        &log,
    );
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = broker.terminate();
    assert!(status.success());
    // The restarted broker must know the producer is past what it dropped, or the
    // producer's next sequence number is a gap and its session ends.
    let (broker, _) = BrokerProc::start_on(dir.path(), &addr, "b1.json", &flags);
    assert!(
        finish(producer, Duration::from_secs(60)).success(),
        "the producer went on: {}",
        tail(&log, 20)
    );
    let p = json(&summary);
    assert!(p["sessions"].as_u64() >= Some(2), "it reconnected: {p}");
    assert_eq!(p["confirmed_seq"], p["sent"], "{p}");
    assert_eq!(
        consume(dir.path(), &addr, "newest"),
        (1..=100).collect::<Vec<_>>()
    );
    broker.stop();
}

#[test]
fn the_declaration_in_broker_help_is_one_the_broker_takes() {
    let help = std::process::Command::new(common::BIN)
        .args(["broker", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let start = help.find("  [[topic]]").expect("a declaration in --help");
    let toml: String = help[start..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("help.toml");
    std::fs::write(&config, &toml).unwrap();
    let broker = BrokerProc::start(
        dir.path(),
        &format!("--config {} --metrics-addr 127.0.0.1:0", config.display()),
    );
    let t = topic(broker.metrics.as_deref().unwrap(), "telemetry");
    assert_eq!(
        (t["policy"].as_str(), t["max_age_ms"].as_u64()),
        (Some("drop-oldest"), Some(30_000)),
        "{toml}"
    );
    let groups: Vec<(String, Option<u64>)> = t["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_string(),
                g["max_lag"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("db".to_string(), None),
            ("dashboard".to_string(), Some(5000))
        ]
    );
    broker.stop();
}
