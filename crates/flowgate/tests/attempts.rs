//! Attempt counts survive broker restarts in disk mode: a poison event whose deliveries end
//! without an ack, with the broker restarted after each, comes back with its attempt raised,
//! and reaches the dead-letter table after `--max-attempts` deliveries in all, not
//! `--max-attempts` per broker life.

use std::time::Duration;

use flowgate_client::{Consumer, ConsumerConfig, Producer, ProducerConfig};
use flowgate_core::{Event, EventId};

mod common;

use common::{BrokerProc, finish, get_json, json, spawn};

/// One delivery of the topic's only event, ended without an ack (the consumer leaves, as a
/// crashing one would); its attempt.
async fn deliver_once_unacked(addr: &str) -> u32 {
    let mut c = Consumer::connect(ConsumerConfig::new(addr, "t", "g"))
        .await
        .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), c.recv())
        .await
        .expect("a delivery")
        .unwrap()
        .unwrap();
    assert_eq!(batch.len(), 1);
    let attempt = batch[0].tag.attempt();
    c.close().await;
    attempt
}

#[test]
fn a_poison_event_is_dead_lettered_after_max_attempts_across_broker_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = format!(
        "--storage disk --data-dir {} --metrics-addr 127.0.0.1:0",
        data.display()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();

    let (mut broker, _) = BrokerProc::start_on(dir.path(), "127.0.0.1:0", "b0.json", &flags);
    let addr = broker.addr.clone();
    rt.block_on(async {
        let mut p = Producer::connect(ProducerConfig::new(&addr, "t"))
            .await
            .unwrap();
        let poison = Event {
            id: EventId::default(),
            key: None,
            created_us: 0,
            payload: b"{not json".to_vec(),
        };
        p.send(poison).await.unwrap();
        p.close().await.unwrap();
    });
    // Two deliveries, each in its own broker life.
    let mut seen = Vec::new();
    for life in 1..=2 {
        seen.push(rt.block_on(deliver_once_unacked(&addr)));
        // Restarted once the broker has seen the consumer leave (and raised the attempt).
        let metrics = broker.metrics.clone().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while get_json(&metrics, "/stats")["connections_open"] != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the consumer never left"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let (status, _) = broker.terminate();
        assert!(status.success());
        broker = BrokerProc::start_on(dir.path(), &addr, &format!("b{life}.json"), &flags).0;
    }
    assert_eq!(seen, vec![1, 2], "each restart keeps the raised attempt");

    // The third delivery is the last one --max-attempts 3 allows: dead-lettered at once.
    let db = dir.path().join("d.db");
    let summary = dir.path().join("c.json");
    let consumer = spawn(&format!(
        "consume --broker {addr} --topic t --group g --sink sqlite:{}?payload=json \
         --max-attempts 3 --count 1 --json {}",
        db.display(),
        summary.display()
    ));
    assert!(finish(consumer, Duration::from_secs(30)).success());
    let c = json(&summary);
    assert_eq!(
        (c["dead_lettered"].as_u64(), c["retried"].as_u64()),
        (Some(1), Some(0)),
        "{c}"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (letters, attempts): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), MAX(attempts) FROM events_dead_letters",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((letters, attempts), (1, 3));
    broker.stop();
}
