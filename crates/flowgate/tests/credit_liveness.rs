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
