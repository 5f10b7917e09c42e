//! Real processes on loopback: `flowgate broker`, `flowgate produce` and `flowgate consume`
//! as separate programs on a free port, checked against the SQLite file the consumer wrote,
//! including a consumer killed with SIGKILL mid-run and a producer restarted mid-run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;

use common::{BIN, BrokerProc, finish, json, spawn};

/// (rows, distinct (producer, seq), lowest seq, highest seq) in the consumer's table.
fn table(db: &Path) -> (u64, u64, u64, u64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT COUNT(*), (SELECT COUNT(*) FROM (SELECT DISTINCT producer, seq FROM events)), MIN(seq), MAX(seq) FROM events",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64)),
    )
    .unwrap()
}

#[test]
fn a_slow_consumer_paces_the_producer_and_every_event_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--capacity 2000 --capacity-bytes 4MiB");
    let db = dir.path().join("c.db");
    let consumer = spawn(&format!(
        "consume --broker flowgate://{} --topic t --group g --sink sqlite:{} --max-rate 20000 --count 100000 --json {}",
        broker.addr,
        db.display(),
        dir.path().join("c.json").display()
    ));
    let producer = spawn(&format!(
        "produce --broker {} --topic t --rate 60000 --count 100000 --payload-size 100B --json {}",
        broker.addr,
        dir.path().join("p.json").display()
    ));
    assert!(finish(producer, Duration::from_secs(60)).success());
    assert!(finish(consumer, Duration::from_secs(60)).success());
    let b = broker.stop();
    let p = json(&dir.path().join("p.json"));
    let c = json(&dir.path().join("c.json"));

    assert_eq!(p["confirmed_seq"], 100_000);
    assert_eq!(
        table(&db),
        (100_000, 100_000, 1, 100_000),
        "exactly the produced ids"
    );
    let consumer_rate = c["rate"].as_f64().unwrap();
    let producer_rate = p["rate"].as_f64().unwrap();
    assert!(
        (producer_rate - consumer_rate).abs() / consumer_rate <= 0.10,
        "producer at {producer_rate:.0}/s, consumer at {consumer_rate:.0}/s"
    );
    // The broker held at most its capacity, and its memory stayed within that plus a fixed
    // overhead for the runtime, buffers and allocator.
    assert!(
        b["topics"][0]["peak_events"].as_u64().unwrap() <= 2_000,
        "{b}"
    );
    let peak_rss = b["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        peak_rss < (4 << 20) + (40 << 20),
        "broker peak RSS {peak_rss}"
    );
}

#[test]
fn a_consumer_killed_mid_run_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--capacity 1000");
    let db = dir.path().join("c.db");
    let consume = |json: &str| {
        spawn(&format!(
            "consume --broker {} --topic t --group g --sink sqlite:{} --max-rate 4000 --idle-exit 3s --json {}",
            broker.addr,
            db.display(),
            dir.path().join(json).display()
        ))
    };
    let mut first = consume("c1.json");
    let producer = spawn(&format!(
        "produce --broker {} --topic t --rate 8000 --count 20000 --json {}",
        broker.addr,
        dir.path().join("p.json").display()
    ));
    std::thread::sleep(Duration::from_millis(2500));
    first.kill().unwrap(); // SIGKILL: no goodbye, unacked deliveries stranded at the broker
    first.wait().unwrap();
    let rows_at_kill = table(&db).0;
    assert!(
        rows_at_kill > 0 && rows_at_kill < 20_000,
        "killed mid-run: {rows_at_kill} rows"
    );
    let second = consume("c2.json");
    assert!(finish(producer, Duration::from_secs(60)).success());
    assert!(finish(second, Duration::from_secs(60)).success());
    let b = broker.stop();
    assert_eq!(
        table(&db),
        (20_000, 20_000, 1, 20_000),
        "no loss, no duplicate"
    );
    assert!(
        b["topics"][0]["redelivered"].as_u64().unwrap() > 0,
        "the kill stranded deliveries: {b}"
    );
}

#[test]
fn a_producer_restarted_mid_run_continues_its_sequence_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--capacity 1000");
    let db = dir.path().join("c.db");
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink sqlite:{} --max-rate 5000 --idle-exit 3s",
        broker.addr,
        db.display()
    ));
    let produce = |json: &str| {
        spawn(&format!(
            "produce --broker {} --topic t --rate 5000 --count 5000 --producer-id 2a --json {}",
            broker.addr,
            dir.path().join(json).display()
        ))
    };
    let mut first = produce("p1.json");
    std::thread::sleep(Duration::from_millis(600));
    first.kill().unwrap();
    first.wait().unwrap();
    let second = produce("p2.json");
    assert!(finish(second, Duration::from_secs(60)).success());
    assert!(finish(consumer, Duration::from_secs(60)).success());
    broker.stop();
    let p2 = json(&dir.path().join("p2.json"));
    let first_seq = p2["first_seq"].as_u64().unwrap();
    let last_seq = p2["confirmed_seq"].as_u64().unwrap();
    assert!(
        first_seq > 1,
        "the restart resumed after what the broker held"
    );
    assert_eq!(last_seq, first_seq + 4_999);
    let (rows, distinct, min, max) = table(&db);
    assert_eq!(
        (rows, distinct, min, max),
        (last_seq, last_seq, 1, last_seq),
        "a gapless run, each once"
    );
}

#[test]
fn bad_flags_and_unreachable_brokers_get_clear_errors() {
    for (args, needle, code) in [
        (
            "consume --broker 127.0.0.1:1 --topic t --sink mysql://x",
            "unknown sink 'mysql://x'",
            2,
        ),
        (
            "produce --broker 127.0.0.1:1 --topic t",
            "give --count N or --duration D",
            2,
        ),
        (
            "produce --broker 127.0.0.1:1 --topic t --count 1 --producer-id 0",
            "reserved",
            2,
        ),
        (
            "produce --broker 127.0.0.1:1 --topic t --count 1",
            "cannot publish to topic 't' at 127.0.0.1:1",
            1,
        ),
        (
            "produce --broker kafka://127.0.0.1:1 --topic t --count 1",
            "unknown scheme 'kafka'",
            2,
        ),
        (
            "consume --broker 127.0.0.1 --topic t",
            "expected host:port",
            2,
        ),
        (
            "produce --broker flowgate://127.0.0.1:1 --topic t --count 1",
            "cannot publish to topic 't' at flowgate://127.0.0.1:1",
            1,
        ),
        (
            "broker --listen 127.0.0.1:0 --max-frame 10B",
            "--max-frame",
            2,
        ),
        (
            "broker --listen 127.0.0.1:0 --max-frame 4095B",
            "--max-frame 4.0 KiB (4095 bytes) must be between 4096 and 4294967295 bytes",
            2,
        ),
    ] {
        let out = Command::new(BIN)
            .args(args.split_whitespace())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args}: expected {needle:?} in {stderr}"
        );
    }
}
