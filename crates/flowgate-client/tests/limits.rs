//! The broker's bounds on names and maps, through the client: topics past `max_topics` or
//! undeclared with creation off are refused for good, a connection past `max_connections` is
//! refused and the open ones go on, and the dedup table forgets idle producer ids.

use std::time::{Duration, Instant};

use flowgate_broker::{Broker, BrokerConfig};
use flowgate_client::{ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig};
use flowgate_core::{Credit, MarkLimits};
use flowgate_proto::ErrorCode;

mod common;

/// The refusal's code and message; panics if the connect worked or failed otherwise.
fn refusal<T>(result: Result<T, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Refused { code, message }) => (code, message),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the connect worked"),
    }
}

async fn produce(addr: &str, topic: &str) -> Result<Producer, ClientError> {
    Producer::connect(ProducerConfig::new(addr, topic)).await
}

/// The topic's counters, by name.
fn topic_stats(b: &Broker, name: &str) -> flowgate_core::TopicStats {
    b.stats()
        .topics
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .expect("the topic exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_topics_a_new_topic_is_refused_for_good_and_the_others_go_on() {
    let b = common::broker_with(BrokerConfig {
        max_topics: 2,
        ..common::capacity(Credit::new(100, 1 << 20))
    })
    .await;
    let addr = b.local_addr().to_string();
    let mut a = produce(&addr, "a").await.unwrap();
    let _b = produce(&addr, "b").await.unwrap();
    let started = Instant::now();
    let (code, message) = refusal(produce(&addr, "c").await);
    assert_eq!(code, ErrorCode::UnknownTopic);
    assert!(
        message.contains("'c'") && message.contains("--max-topics 2"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not retried"
    );
    let consumer = Consumer::connect(ConsumerConfig::new(&addr, "d", "g")).await;
    assert_eq!(refusal(consumer).0, ErrorCode::UnknownTopic);
    // An existing topic takes new connections and events as before.
    a.send(common::numbered(1)).await.unwrap();
    assert_eq!(a.close().await.unwrap().confirmed_seq, 1);
    let mut again = produce(&addr, "a").await.unwrap();
    again.send(common::numbered(2)).await.unwrap();
    again.close().await.unwrap();
    assert_eq!(b.stats().topics.len(), 2);
    assert_eq!(b.stats().errors_sent.get("unknown-topic"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_topic_creation_off_only_declared_topics_exist() {
    let mut config = common::capacity(Credit::new(100, 1 << 20));
    config
        .load_str(
            "create_topics = false\n\n[[topic]]\nname = \"orders\"\n\
             capacity_events = 10\ncapacity_bytes = 65536\n",
        )
        .unwrap();
    let b = common::broker_with(config).await;
    let addr = b.local_addr().to_string();
    let (code, message) = refusal(produce(&addr, "ordres").await);
    assert_eq!(code, ErrorCode::UnknownTopic);
    assert!(message.contains("create_topics = false"), "{message}");
    let mut orders = produce(&addr, "orders").await.unwrap();
    orders.send(common::numbered(1)).await.unwrap();
    orders.close().await.unwrap();
    let names: Vec<String> = b.stats().topics.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["orders".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_one_more_is_refused_and_the_open_ones_go_on() {
    let b = common::broker_with(BrokerConfig {
        max_connections: 2,
        ..common::capacity(Credit::new(100, 1 << 20))
    })
    .await;
    let addr = b.local_addr().to_string();
    let mut producer = produce(&addr, "t").await.unwrap();
    let mut consumer = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
        .await
        .unwrap();
    let (code, message) = refusal(produce(&addr, "t").await);
    assert_eq!(code, ErrorCode::TooManyConnections);
    assert!(message.contains("--max-connections"), "{message}");
    for i in 0..10 {
        producer.send(common::numbered(i)).await.unwrap();
    }
    let mut got = 0;
    while got < 10 {
        let batch = common::recv(&mut consumer, Duration::from_secs(5)).await;
        got += batch.len();
        consumer.ack(batch.iter().map(|d| d.tag));
    }
    producer.close().await.unwrap();
    // Its slot is free once the broker saw it close.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut next = loop {
        match produce(&addr, "t").await {
            Ok(p) => break p,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("no connection after one closed: {e}"),
        }
    };
    next.send(common::numbered(10)).await.unwrap();
    next.close().await.unwrap();
    // The first refusal, and any while the broker had not yet seen the close.
    assert!(b.stats().errors_sent["too-many-connections"] >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dedup_table_keeps_at_most_its_cap_of_idle_producer_ids() {
    let b = common::broker_with(BrokerConfig {
        marks: MarkLimits {
            idle_ttl: Duration::from_secs(3600),
            max_ids: 50,
        },
        ..common::capacity(Credit::new(10_000, 64 << 20))
    })
    .await;
    let addr = b.local_addr().to_string();
    for _ in 0..500 {
        let mut p = produce(&addr, "t").await.unwrap();
        p.send(common::numbered(1)).await.unwrap();
        p.close().await.unwrap();
    }
    // The broker detaches a closed producer when it sees the socket end.
    let deadline = Instant::now() + Duration::from_secs(5);
    while topic_stats(&b, "t").producer_ids_forgotten < 450 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = topic_stats(&b, "t");
    assert_eq!(t.accepted, 500);
    assert_eq!(t.producer_ids, 50);
    assert_eq!(t.producer_ids_forgotten, 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_producer_is_deduplicated_within_the_ttl_and_forgotten_after_it() {
    let b = common::broker_with(BrokerConfig {
        marks: MarkLimits {
            idle_ttl: Duration::from_millis(300),
            max_ids: 1000,
        },
        ..common::capacity(Credit::new(10_000, 64 << 20))
    })
    .await;
    let addr = b.local_addr().to_string();
    let config = ProducerConfig {
        producer_id: Some(77),
        ..ProducerConfig::new(&addr, "t")
    };
    let mut p = Producer::connect(config.clone()).await.unwrap();
    for i in 0..3 {
        p.send(common::numbered(i)).await.unwrap();
    }
    p.close().await.unwrap();
    // Back within the TTL: the broker tells it where its sequence stands.
    let p = Producer::connect(config.clone()).await.unwrap();
    assert_eq!(p.stats().confirmed_seq, 3);
    p.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Any input tells the topic the time; the idle id is gone.
    let other = produce(&addr, "t").await.unwrap();
    other.close().await.unwrap();
    let t = topic_stats(&b, "t");
    assert_eq!(t.producer_ids_forgotten, 1, "{t:?}");
    let p = Producer::connect(config).await.unwrap();
    assert_eq!(
        p.stats().confirmed_seq,
        0,
        "forgotten: nothing to resume from"
    );
    p.close().await.unwrap();
}
