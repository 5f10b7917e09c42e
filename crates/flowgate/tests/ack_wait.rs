//! A consumer process stopped with SIGSTOP in the middle of a commit, its socket left open,
//! holds its deliveries only for the broker's `--ack-wait`: another consumer of its group
//! receives them, and the table is exact.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{BrokerProc, distinct_rows, finish, get_json, row_count, spawn};

fn signal(pid: u32, sig: &str) {
    let sent = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {sig} {pid}");
}

#[test]
fn a_consumer_stopped_with_sigstop_loses_its_deliveries_to_another_after_the_ack_wait() {
    let dir = tempfile::tempdir().unwrap();
    // The idle deadline is far away: only the ack deadline can take the deliveries back.
    let broker = BrokerProc::start(
        dir.path(),
        "--ack-wait 2s --idle-timeout 120s --capacity 5000 --metrics-addr 127.0.0.1:0",
    );
    let metrics = broker.metrics.clone().unwrap();
    let url = format!("flowgate://{}", broker.addr);
    let producer = spawn(&format!("produce --broker {url} --topic t --count 3000"));
    assert!(finish(producer, Duration::from_secs(60)).success());

    // A database that takes 5 events a second: the first batch is still being written, not
    // yet acknowledged, when the process is stopped.
    let (a_db, b_db) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let stopped = spawn(&format!(
        "consume --broker {url} --topic t --group g --sink sqlite:{} --max-rate 5 --prefetch 500",
        a_db.display()
    ));
    let unacked = || {
        get_json(&metrics, "/stats")["topics"][0]["unacked"]
            .as_u64()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while unacked() == 0 {
        assert!(Instant::now() < deadline, "the first consumer got nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Within a poll (20 ms and a request) of the first delivery.
    let first_seen = Instant::now();
    signal(stopped.id(), "-STOP");
    let stopped_at = Instant::now();
    // A request it sent just before the stop may still bring it more: count what it holds
    // once that has landed, well within the ack wait, before anyone else consumes.
    std::thread::sleep(Duration::from_millis(300));
    let held = unacked();

    let other = spawn(&format!(
        "consume --broker {url} --topic t --group g --sink sqlite:{} --count 3000",
        b_db.display()
    ));
    let status = finish(other, Duration::from_secs(60));
    let took = stopped_at.elapsed();
    let since_delivery = first_seen.elapsed();
    let stats = get_json(&metrics, "/stats");
    let mut stopped = stopped;
    let _ = stopped.kill();
    let _ = stopped.wait();

    assert!(status.success());
    assert_eq!(
        row_count(&a_db),
        0,
        "the stopped consumer committed nothing"
    );
    assert_eq!(distinct_rows(&b_db), 3000, "every event once");
    let t = &stats["topics"][0];
    assert_eq!(t["ack_timeouts"].as_u64().unwrap(), held, "{t}");
    assert_eq!(t["acked"].as_u64().unwrap(), 3000, "{t}");
    // Nothing came back before the ack wait had passed since the first delivery (less the
    // poll that noticed it).
    assert!(
        since_delivery >= Duration::from_millis(1_900),
        "the held events came back before the ack wait: {since_delivery:?}"
    );
    eprintln!(
        "{held} events held by the stopped consumer; all 3000 in the other's table {took:?} after the stop (--ack-wait 2s)"
    );
    broker.stop();
}
