//! A broker process's bounds on names and maps: a topic past `--max-topics` is refused for
//! good and `flowgate produce` says so at once, and 100,000 producer ids passing through leave
//! the dedup table at its cap and the broker's memory flat.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flowgate_client::{Consumer, ConsumerConfig, Producer, ProducerConfig};

mod common;

use common::{BIN, BrokerProc, get_json};

/// The broker's resident set, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn a_producer_naming_a_topic_past_max_topics_exits_at_once_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(dir.path(), "--max-topics 1");
    let produce = |topic: &str| {
        Command::new(BIN)
            .args(["produce", "--broker", &broker.addr, "--topic", topic])
            .args(["--count", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    assert!(produce("first").status.success());
    let started = Instant::now();
    let refused = produce("second");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("unknown-topic") && stderr.contains("--max-topics 1"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}: retried?");
    assert!(produce("first").status.success());
    let summary = broker.stop();
    assert_eq!(summary["topics"].as_array().unwrap().len(), 1, "{summary}");
    eprintln!("refused in {took:?}");
}

/// Connects `count` producers, each with a fresh id, `workers` at a time; each sends one event
/// and closes once it is confirmed.
async fn pass_producers(addr: &str, count: u64, workers: u64) {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let addr = addr.to_string();
        tasks.spawn(async move {
            for _ in (w..count).step_by(workers as usize) {
                let mut p = Producer::connect(ProducerConfig::new(&addr, "t"))
                    .await
                    .unwrap();
                p.send_payload(b"x".to_vec()).await.unwrap();
                p.close().await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[test]
fn a_hundred_thousand_producer_ids_leave_the_dedup_table_at_its_cap_and_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(
        dir.path(),
        // A small topic: when the consumer falls behind the producers wait, so what the
        // broker holds beyond the table stays small whatever the machine's load.
        "--metrics-addr 127.0.0.1:0 --capacity 1000",
    );
    let metrics = broker.metrics.clone().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let topic = |stats: &serde_json::Value, key: &str| stats["topics"][0][key].as_u64().unwrap();
    // A consumer takes every event, so what the broker holds is the table and little else.
    let addr = broker.addr.clone();
    let consumer = runtime.spawn(async move {
        let mut c = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
            .await
            .unwrap();
        let mut got = 0;
        while got < 100_000 {
            let batch = c.recv().await.unwrap().unwrap();
            got += batch.len();
            c.ack(batch.iter().map(|d| d.tag));
        }
        c.close().await;
    });
    let started = Instant::now();
    // Past the default cap of 10,000 first, so the table is full when memory is first read.
    runtime.block_on(pass_producers(&broker.addr, 20_000, 16));
    let before = rss_kib(broker.pid());
    let at_20k = get_json(&metrics, "/stats");
    runtime.block_on(pass_producers(&broker.addr, 80_000, 16));
    runtime.block_on(consumer).unwrap();
    let after = rss_kib(broker.pid());
    let stats = get_json(&metrics, "/stats");
    eprintln!(
        "100,000 producer ids in {:?}: RSS {before} KiB after 20,000, {after} KiB after 100,000; table {} -> {}",
        started.elapsed(),
        topic(&at_20k, "producer_ids"),
        topic(&stats, "producer_ids"),
    );
    assert_eq!(topic(&stats, "accepted"), 100_000);
    // Every producer closed, so every id is idle: the cap holds exactly.
    assert_eq!(topic(&stats, "producer_ids"), 10_000);
    assert_eq!(topic(&stats, "producer_ids_forgotten"), 90_000);
    // Kept, the 80,000 more ids grow the broker by about 10 MiB (measured with
    // --dedup-max-ids 1000000: 17.4 -> 27.6 MiB); bounded, by allocator noise (1.1 MiB).
    assert!(
        after <= before + 4096,
        "RSS grew from {before} KiB to {after} KiB over 80,000 producer ids"
    );
    broker.stop();
}
