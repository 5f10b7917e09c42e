//! Liveness of credit with real processes: more producers than a topic has room for, in
//! events and in bytes. A share of the free room below one event per producer once rounded
//! to nothing and stalled the topic for good; now whole events go round, and every event of
//! every producer is committed.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

mod common;

use common::{BrokerProc, finish, row_count, rows, spawn};

/// Starts a broker with `broker_args`, a SQLite consumer expecting `producers * count`
/// events, and `producers` producers of `count` events each; waits for all of them and
/// returns (rows, distinct rows, elapsed).
fn run(
    dir: &Path,
    broker_args: &str,
    producers: usize,
    count: u64,
    producer_args: &str,
) -> (u64, usize, Duration) {
    let broker = BrokerProc::start(dir, broker_args);
    let db = dir.join("c.db");
    let total = producers as u64 * count;
    let started = Instant::now();
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink sqlite:{} --prefetch-bytes 8MiB --count {total}",
        broker.addr,
        db.display(),
    ));
    let children: Vec<Child> = (0..producers)
        .map(|_| {
            spawn(&format!(
                "produce --broker {} --topic t --count {count} --rate 1000 {producer_args}",
                broker.addr
            ))
        })
        .collect();
    for child in children {
        assert!(
            finish(child, Duration::from_secs(120)).success(),
            "a producer failed; rows so far: {}",
            row_count(&db)
        );
    }
    assert!(finish(consumer, Duration::from_secs(60)).success());
    let elapsed = started.elapsed();
    broker.stop();
    let all = rows(&db);
    let mut distinct = all.clone();
    distinct.sort_unstable();
    distinct.dedup();
    (all.len() as u64, distinct.len(), elapsed)
}

#[test]
fn capacity_two_with_three_producers_commits_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, distinct, elapsed) = run(dir.path(), "--capacity 2", 3, 100, "--payload-size 100B");
    eprintln!("capacity 2, 3 producers x 100: {rows} rows in {elapsed:.1?}");
    assert_eq!((rows, distinct), (300, 300));
}

#[test]
fn capacity_fifty_with_a_hundred_producers_commits_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, distinct, elapsed) =
        run(dir.path(), "--capacity 50", 100, 20, "--payload-size 100B");
    eprintln!("capacity 50, 100 producers x 20: {rows} rows in {elapsed:.1?}");
    assert_eq!((rows, distinct), (2_000, 2_000));
}

#[test]
fn a_byte_capacity_below_one_event_per_producer_commits_every_event() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB of room and three producers of 400 KiB events: an even split gives each 349 KiB.
    let (rows, distinct, elapsed) = run(
        dir.path(),
        "--capacity 1000 --capacity-bytes 1MiB",
        3,
        5,
        "--payload-size 400KiB",
    );
    eprintln!("1 MiB of room, 3 producers x 5 events of 400 KiB: {rows} rows in {elapsed:.1?}");
    assert_eq!((rows, distinct), (15, 15));
}

/// Held events (ready + unacked) and credit outstanding to producers, from the broker's /stats.
fn topic_levels(metrics: &str) -> (u64, u64) {
    let stats = common::get_json(metrics, "/stats");
    let t = &stats["topics"][0];
    let held = t["ready"].as_u64().unwrap() + t["unacked"].as_u64().unwrap();
    (held, t["producer_credit_events"].as_u64().unwrap())
}

/// After its only consumer dies, a topic fed by a 100-byte and a 1,500-byte producer fills to
/// exactly its cap; before, it could stop at about 15% with the producers holding credit they
/// never used. `FLOWGATE_REPEAT=20` runs it 20 times.
#[test]
fn after_the_consumer_dies_two_producers_of_different_sizes_fill_the_topic_to_its_cap() {
    const CAP: u64 = 2_000;
    let runs: usize = std::env::var("FLOWGATE_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for run in 1..=runs {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerProc::start(
            dir.path(),
            &format!("--capacity {CAP} --metrics-addr 127.0.0.1:0"),
        );
        let metrics = broker.metrics.clone().unwrap();
        let mut consumer = spawn(&format!(
            "consume --broker {} --topic cap --group g --sink null",
            broker.addr
        ));
        let producers: Vec<Child> = ["100B", "1500B"]
            .iter()
            .map(|size| {
                spawn(&format!(
                    "produce --broker {} --topic cap --rate 2000 --duration 30s --payload-size {size}",
                    broker.addr
                ))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        consumer.kill().unwrap();
        consumer.wait().unwrap();
        let killed = Instant::now();
        let mut full_after = None;
        let mut last = (0, 0);
        while killed.elapsed() < Duration::from_millis(3_500) {
            last = topic_levels(&metrics);
            assert!(last.0 <= CAP, "past the cap: {last:?}");
            if last.0 == CAP && full_after.is_none() {
                full_after = Some(killed.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "run {run}: consumer killed; topic full ({CAP}) after {:?}; 3.5 s later held {}, producer credit {}",
            full_after, last.0, last.1
        );
        assert_eq!(
            last,
            (CAP, 0),
            "run {run}: full, and no credit left with the producers"
        );
        for mut p in producers {
            p.kill().unwrap();
            p.wait().unwrap();
        }
        broker.stop();
    }
}
