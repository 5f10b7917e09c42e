//! Ack deadlines through the client: a consumer that receives and never acks loses its
//! deliveries to another consumer of its group after the broker's ack wait, and a consumer
//! that says it is still working (`progress`) keeps them.

use std::time::{Duration, Instant};

use flowgate_broker::{Broker, BrokerConfig};
use flowgate_client::{Consumer, ConsumerConfig, Producer, ProducerConfig};
use flowgate_core::Credit;

mod common;

async fn broker(ack_wait: Duration) -> Broker {
    common::broker_with(BrokerConfig {
        ack_wait: Some(ack_wait),
        ..common::capacity(Credit::new(1000, 1 << 20))
    })
    .await
}

async fn publish(addr: &str, n: u64) {
    let mut p = Producer::connect(ProducerConfig::new(addr, "t"))
        .await
        .unwrap();
    for i in 0..n {
        p.send(common::numbered(i)).await.unwrap();
    }
    p.close().await.unwrap();
}

async fn consumer(addr: &str) -> Consumer {
    Consumer::connect(ConsumerConfig::new(addr, "t", "g"))
        .await
        .unwrap()
}

/// Payloads of the deliveries, as numbers.
fn numbers(batch: &[flowgate_client::Delivery]) -> Vec<u64> {
    batch
        .iter()
        .map(|d| u64::from_be_bytes(d.event.payload[..8].try_into().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_never_acked_go_to_another_consumer_after_the_ack_wait() {
    let b = broker(Duration::from_millis(500)).await;
    let addr = b.local_addr().to_string();
    publish(&addr, 5).await;
    let mut silent = consumer(&addr).await;
    let held = common::recv(&mut silent, Duration::from_secs(5)).await;
    let delivered_at = Instant::now();
    assert_eq!(numbers(&held), vec![0, 1, 2, 3, 4]);
    let mut other = consumer(&addr).await;
    let again = common::recv(&mut other, Duration::from_secs(5)).await;
    let took = delivered_at.elapsed();
    assert_eq!(numbers(&again), vec![0, 1, 2, 3, 4], "in order");
    assert!(again.iter().all(|d| d.tag.attempt() == 2));
    assert!(
        took >= Duration::from_millis(450),
        "taken back before the deadline: {took:?}"
    );
    other.ack(again.iter().map(|d| d.tag));
    // The late acks of the silent consumer change nothing; everything is acked once.
    silent.ack(held.iter().map(|d| d.tag));
    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let t = b.stats().topics[0].1;
        if t.acked == 5 || Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        (stats.acked, stats.unacked, stats.ready, stats.ack_timeouts),
        (5, 0, 0, 5)
    );
    assert_eq!(b.stats().errors_sent.get("unknown-delivery"), Some(&5));
    eprintln!("redelivered {took:?} after the first delivery (ack wait 500 ms)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_reports_progress_keeps_its_deliveries_past_the_ack_wait() {
    let b = broker(Duration::from_millis(300)).await;
    let addr = b.local_addr().to_string();
    publish(&addr, 3).await;
    let mut slow = consumer(&addr).await;
    let held = common::recv(&mut slow, Duration::from_secs(5)).await;
    let mut other = consumer(&addr).await;
    // A commit three times the ack wait, reported every 100 ms.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(900) {
        slow.progress(held.iter().map(|d| d.tag));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    slow.ack(held.iter().map(|d| d.tag));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), other.recv())
            .await
            .is_err(),
        "the other consumer got nothing"
    );
    let t = b.stats().topics[0].1;
    assert_eq!((t.acked, t.ack_timeouts, t.redelivered), (3, 0, 0));
}
