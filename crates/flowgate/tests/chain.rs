//! A chain of three stages, each a real process: a producer asking 10,000/s into topic `raw`,
//! a relay (`flowgate relay`) at 1,000/s from `raw` into `enriched`, and a consumer writing
//! `enriched` into SQLite as fast as it can. The middle stage sets the pace of the whole chain,
//! `top --chain` names it, and a relay killed with kill -9 mid-run and restarted leaves the
//! table exact: every event once, keyed by the chain's first event.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{BrokerProc, finish, get_json, json, rows, spawn_logged, tail};
use serde_json::Value;

fn accepted(metrics: &str, topic: &str) -> u64 {
    get_json(metrics, "/stats")["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == topic)
        .map_or(0, |t| t["accepted"].as_u64().unwrap_or(0))
}

fn relay(broker: &str, dir: &Path, log: &str) -> std::process::Child {
    spawn_logged(
        &format!(
            "relay --broker {broker} --from raw --group enrich --to enriched --max-rate 1000 --prefetch 200"
        ),
        &dir.join(log),
    )
}

fn top_chain(metrics: &str, dir: &Path) -> Value {
    let path = dir.join("top.json");
    let out = std::process::Command::new(common::BIN)
        .args([
            "top",
            "--broker",
            metrics,
            "--topic",
            "raw",
            "--chain",
            "raw,enriched",
        ])
        .args(["--once", "--interval", "2s", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "top: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&path)
}

#[test]
fn the_middle_stage_paces_the_chain_top_names_it_and_a_killed_relay_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let broker = BrokerProc::start(dir, "--capacity 500 --metrics-addr 127.0.0.1:0");
    let metrics = broker.metrics.clone().unwrap();
    let db = dir.join("db.db");
    let consumer = spawn_logged(
        &format!(
            "consume --broker {} --from enriched --group db --sink sqlite:{} --idle-exit 4s --json {}",
            broker.addr,
            db.display(),
            dir.join("c.json").display()
        ),
        &dir.join("c.log"),
    );
    let mut middle = relay(&broker.addr, dir, "relay1.log");
    let count = 12_000u64;
    let producer = spawn_logged(
        &format!(
            "produce --broker {} --topic raw --rate 10000 --count {count} --producer-id 2a --json {}",
            broker.addr,
            dir.join("p.json").display()
        ),
        &dir.join("p.log"),
    );
    // The pace, from the broker's count of what it accepted from the producer, over 3 s of
    // steady state.
    std::thread::sleep(Duration::from_secs(2));
    let (a0, t0) = (accepted(&metrics, "raw"), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let pace = (accepted(&metrics, "raw") - a0) as f64 / t0.elapsed().as_secs_f64();
    let top = top_chain(&metrics, dir);
    // kill -9, mid-batch, and back a second later.
    middle.kill().unwrap();
    middle.wait().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    middle = relay(&broker.addr, dir, "relay2.log");
    let within = Duration::from_secs(120);
    assert!(
        finish(producer, within).success(),
        "producer: {}",
        tail(&dir.join("p.log"), 20)
    );
    assert!(
        finish(consumer, within).success(),
        "consumer: {}",
        tail(&dir.join("c.log"), 20)
    );
    let _ = middle.kill();
    let _ = middle.wait();
    broker.stop();

    eprintln!("pace {pace:.0}/s; top: {}", top["chain"]["explanation"]);
    assert!(
        (pace - 1000.0).abs() <= 100.0,
        "the producer asks 10,000/s and is held at {pace:.0}/s by the 1,000/s middle stage"
    );
    assert_eq!(top["chain"]["slowest"], "group 'enrich'", "{top}");
    let p = json(&dir.join("p.json"));
    assert_eq!(p["confirmed_seq"], count, "{p}");
    // Keyed by the chain's first event: producer 2a's 1..=count, each once, whatever the
    // relay sent twice around its kill.
    let mut got = rows(&db);
    got.sort_unstable();
    let want: Vec<(u64, u64)> = (1..=count).map(|seq| (0x2a, seq)).collect();
    assert_eq!(got.len(), want.len(), "rows: lost or doubled");
    assert!(got == want, "the table is not producer 2a's 1..={count}");
    let c = json(&dir.join("c.json"));
    eprintln!("consumer received {} for {} rows", c["received"], count);
}
