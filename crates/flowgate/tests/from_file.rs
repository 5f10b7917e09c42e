//! `produce --from` never loses and never doubles: a line that is not UTF-8 is reported and
//! skipped like one that is not JSON, a byte-order mark is ignored, and a producer killed with
//! SIGKILL mid-file and rerun with its `--producer-id` gives every line exactly once.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, BrokerProc, finish, spawn};

/// The payload of every row, by sequence number.
fn payloads(db: &Path) -> Vec<(u64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, payload FROM events ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| {
        let payload: Vec<u8> = r.get(1)?;
        Ok((
            r.get::<_, i64>(0)? as u64,
            String::from_utf8(payload).unwrap(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn consume_all(addr: &str, db: &Path) -> std::process::Child {
    spawn(&format!(
        "consume --broker {addr} --topic t --group g --sink sqlite:{} --idle-exit 3s",
        db.display()
    ))
}

#[test]
fn a_line_that_is_not_utf8_is_reported_and_skipped_and_the_rest_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let mut f = std::fs::File::create(&file).unwrap();
    f.write_all("\u{feff}".as_bytes()).unwrap();
    for n in 1..=50_000 {
        writeln!(f, "{{\"n\":{n}}}").unwrap();
    }
    f.write_all(b"{\"n\":\"\xff\xfe\"}\n").unwrap();
    for n in 50_001..=50_010 {
        writeln!(f, "{{\"n\":{n}}}").unwrap();
    }
    drop(f);
    let broker = BrokerProc::start(dir.path(), "--capacity 5000");
    let db = dir.path().join("c.db");
    let consumer = consume_all(&broker.addr, &db);
    let out = Command::new(BIN)
        .args([
            "produce",
            "--broker",
            &broker.addr,
            "--topic",
            "t",
            "--from",
        ])
        .arg(&file)
        .args(["--json"])
        .arg(dir.path().join("p.json"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rejected lines exit 1: {stderr}"
    );
    assert!(
        stderr.contains("line 50001: not UTF-8 (an invalid byte at column 7); skipped"),
        "{stderr}"
    );
    assert!(finish(consumer, Duration::from_secs(60)).success());
    let rows = payloads(&db);
    assert_eq!(
        rows.len(),
        50_010,
        "every valid line, the ones after the bad one too"
    );
    assert_eq!(
        rows[0].1, "{\"n\":1}",
        "the byte-order mark is not part of line 1"
    );
    assert_eq!(rows[50_009].1, "{\"n\":50010}");
    let p = common::json(&dir.path().join("p.json"));
    assert_eq!(
        (p["rejected_lines"].as_u64(), p["confirmed_seq"].as_u64()),
        (Some(1), Some(50_010))
    );
    broker.stop();
}

#[test]
fn a_producer_killed_mid_file_and_rerun_with_its_id_sends_every_line_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let mut f = std::fs::File::create(&file).unwrap();
    for n in 1..=20_000 {
        writeln!(f, "{{\"n\":{n}}}").unwrap();
        if n == 7_000 {
            writeln!(f, "not json").unwrap();
        }
    }
    drop(f);
    // A small topic and a slow consumer hold the producer to 4,000 events/s, so a kill at
    // 1.5 s lands mid-file.
    let broker = BrokerProc::start(dir.path(), "--capacity 500");
    let db = dir.path().join("c.db");
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink sqlite:{} --max-rate 4000 --idle-exit 4s",
        broker.addr,
        db.display()
    ));
    let produce = format!(
        "produce --broker {} --topic t --producer-id 2a --from {}",
        broker.addr,
        file.display()
    );
    let mut first = spawn(&produce);
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap();
    first.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = common::row_count(&db);
    assert!(
        before > 0 && before < 20_000,
        "killed mid-file: {before} rows"
    );
    let rerun = spawn(&produce);
    let status = finish(rerun, Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(1),
        "the bad line is reported again, and skipped"
    );
    assert!(finish(consumer, Duration::from_secs(60)).success());
    let rows = payloads(&db);
    assert_eq!(rows.len(), 20_000, "every line once");
    for (i, (seq, payload)) in rows.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(*seq, n);
        assert_eq!(
            payload,
            &format!("{{\"n\":{n}}}"),
            "event {seq} is line {n}'s"
        );
    }
    broker.stop();
}
