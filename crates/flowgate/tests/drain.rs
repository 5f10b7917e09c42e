//! Services that behave like services: SIGTERM mid-run to the consumer, the producer and a
//! disk broker. Each stops taking new work, finishes what is in flight, exits 0 with its
//! summary, and nothing is lost or needlessly delivered again: the database holds every
//! confirmed event once, no committed event comes back to a consumer, and no accepted event
//! comes back to the broker.

mod common;

use std::time::Duration;

use common::{BrokerProc, distinct_rows, finish, json, sigterm, spawn};

#[test]
fn a_consumer_given_sigterm_commits_and_acks_its_batch_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--capacity 2000");
    let db = dir.path().join("c.db");
    let producer = spawn(&format!(
        "produce --broker {} --topic t --rate 20000 --count 20000",
        broker.addr
    ));
    let first = spawn(&format!(
        "consume --broker {} --topic t --group g --sink sqlite:{} --max-rate 4000 --json {}",
        broker.addr,
        db.display(),
        dir.path().join("c1.json").display()
    ));
    std::thread::sleep(Duration::from_millis(1500));
    sigterm(first.id());
    let status = finish(first, Duration::from_secs(10));
    assert!(
        status.success(),
        "the consumer drains and exits 0: {status}"
    );
    let c1 = json(&dir.path().join("c1.json"));
    let committed = c1["committed"].as_u64().unwrap();
    assert!(committed > 0 && committed < 20_000, "stopped mid-run: {c1}");
    assert_eq!(
        distinct_rows(&db),
        committed,
        "its summary is what the table holds"
    );

    let second = spawn(&format!(
        "consume --broker {} --topic t --group g --sink sqlite:{} --idle-exit 2s --json {}",
        broker.addr,
        db.display(),
        dir.path().join("c2.json").display()
    ));
    assert!(finish(producer, Duration::from_secs(60)).success());
    assert!(finish(second, Duration::from_secs(60)).success());
    let c2 = json(&dir.path().join("c2.json"));
    assert_eq!(distinct_rows(&db), 20_000);
    assert_eq!(
        c2["already_present"], 0,
        "nothing the first consumer committed was delivered again: {c2}"
    );
    assert_eq!(committed + c2["committed"].as_u64().unwrap(), 20_000);
    broker.stop();
}

#[test]
fn a_producer_given_sigterm_stops_sending_gets_every_event_confirmed_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--capacity 5000");
    let db = dir.path().join("c.db");
    let consumer = spawn(&format!(
        "consume --broker {} --topic t --group g --sink sqlite:{} --idle-exit 3s --json {}",
        broker.addr,
        db.display(),
        dir.path().join("c.json").display()
    ));
    let producer = spawn(&format!(
        "produce --broker {} --topic t --rate 5000 --count 1000000 --json {}",
        broker.addr,
        dir.path().join("p.json").display()
    ));
    std::thread::sleep(Duration::from_millis(1500));
    sigterm(producer.id());
    let status = finish(producer, Duration::from_secs(10));
    assert!(
        status.success(),
        "the producer drains and exits 0: {status}"
    );
    let p = json(&dir.path().join("p.json"));
    let sent = p["sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 1_000_000, "stopped mid-run: {p}");
    assert_eq!(
        p["confirmed_seq"], sent,
        "everything sent was confirmed: {p}"
    );
    assert!(finish(consumer, Duration::from_secs(30)).success());
    assert_eq!(
        distinct_rows(&db),
        sent,
        "every confirmed event is in the table once"
    );
    let b = broker.stop();
    assert_eq!(b["topics"][0]["accepted"], sent, "{b}");
    assert_eq!(b["topics"][0]["duplicates"], 0, "{b}");
}

#[test]
fn a_disk_broker_given_sigterm_confirms_and_takes_acks_in_flight_then_restarts_with_nothing_doubled()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = format!(
        "--storage disk --data-dir {} --capacity 2000",
        data.display()
    );
    let (broker, _) = BrokerProc::start_on(dir.path(), "127.0.0.1:0", "b1.json", &flags);
    let addr = broker.addr.clone();
    let db = dir.path().join("c.db");
    let consumer = spawn(&format!(
        "consume --broker {addr} --topic t --group g --sink sqlite:{} --max-rate 5000 --idle-exit 5s --json {}",
        db.display(),
        dir.path().join("c.json").display()
    ));
    let producer = spawn(&format!(
        "produce --broker {addr} --topic t --rate 10000 --count 30000 --json {}",
        dir.path().join("p.json").display()
    ));
    std::thread::sleep(Duration::from_millis(1500));
    let (status, b1) = broker.terminate();
    assert!(status.success(), "the broker drains and exits 0: {status}");
    let accepted_before = b1["topics"][0]["accepted"].as_u64().unwrap();
    assert!(
        accepted_before > 0 && accepted_before < 30_000,
        "stopped mid-run: {b1}"
    );

    let (broker, _) = BrokerProc::start_on(dir.path(), &addr, "b2.json", &flags);
    assert!(finish(producer, Duration::from_secs(60)).success());
    assert!(finish(consumer, Duration::from_secs(60)).success());
    let b2 = broker.stop();
    let (p, c) = (
        json(&dir.path().join("p.json")),
        json(&dir.path().join("c.json")),
    );
    assert_eq!(p["confirmed_seq"], 30_000, "{p}");
    assert_eq!(distinct_rows(&db), 30_000, "every event once");
    assert_eq!(
        b2["topics"][0]["duplicates"], 0,
        "every event the first broker accepted was confirmed before it closed: {b2}"
    );
    assert_eq!(
        c["already_present"], 0,
        "every ack the first broker took was written before it stopped: {c}"
    );
}
