//! A send that fails hands the event back, as it was given: an event larger than the topic
//! accepts, and one waiting for credit when the broker starts refusing the producer for good.
//! `reserve` waits for credit without an event, and its permit sends without waiting.

use std::time::Duration;

use flowgate_broker::{BrokerConfig, TokenGrant, Tokens};
use flowgate_client::{ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig};
use flowgate_core::{Credit, Event, EventId};
use flowgate_proto::ErrorCode;

mod common;

fn event(payload: &[u8]) -> Event {
    Event {
        id: EventId::default(),
        key: Some(b"k".to_vec()),
        created_us: 42,
        payload: payload.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_larger_than_the_topic_accepts_comes_back_and_the_producer_goes_on() {
    let b = common::broker_with(common::capacity(Credit::new(100, 64 << 10))).await;
    let addr = b.local_addr().to_string();
    let mut producer = Producer::connect(ProducerConfig::new(&addr, "t"))
        .await
        .unwrap();
    let big = event(&vec![7; 100_000]);
    let err = producer.send(big.clone()).await.unwrap_err();
    assert_eq!(err.event, big, "handed back untouched");
    assert!(
        matches!(
            err.reason,
            ClientError::EventTooLarge {
                largest: 65_472,
                ..
            }
        ),
        "{}",
        err.reason
    );
    producer.send(event(b"small")).await.unwrap();
    assert_eq!(producer.close().await.unwrap().confirmed_seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_waiting_for_credit_when_the_broker_refuses_for_good_gets_its_event_back() {
    // Room for one event; nobody consumes, so the second send waits for credit.
    let b = common::broker_with(common::capacity(Credit::new(1, 1 << 20))).await;
    let addr = b.local_addr();
    let mut producer = Producer::connect(ProducerConfig::new(addr.to_string(), "t"))
        .await
        .unwrap();
    producer.send(event(b"first")).await.unwrap();
    let second = event(b"second");
    let waiting = {
        let second = second.clone();
        tokio::spawn(async move { (producer.send(second).await, producer) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "no credit: the send waits");

    // The broker comes back on the same address requiring a token this producer lacks: a
    // refusal no reconnect can fix. (Its shutdown must close the producer's connection for
    // the producer to notice at all: a connection's writer task outlived it before.)
    b.shutdown().await;
    let mut tokens = Tokens::default();
    tokens
        .add(TokenGrant::new("writer", "w-1", vec!["*".into()], vec![]).unwrap())
        .unwrap();
    let config = BrokerConfig {
        tokens,
        ..BrokerConfig::default()
    };
    let _b = flowgate_broker::Broker::bind(
        addr,
        config,
        std::sync::Arc::new(flowgate_broker::MemoryStorage),
    )
    .await
    .unwrap();
    let (sent, _producer) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the send ends once the refusal comes")
        .unwrap();
    let err = sent.unwrap_err();
    assert_eq!(err.event, second, "handed back untouched");
    assert_eq!(
        err.reason.code(),
        Some(ErrorCode::Unauthorized),
        "{}",
        err.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_waits_for_credit_then_sends_without_waiting() {
    let b = common::broker_with(common::capacity(Credit::new(1, 1 << 20))).await;
    let addr = b.local_addr().to_string();
    let mut producer = Producer::connect(ProducerConfig::new(&addr, "t"))
        .await
        .unwrap();
    producer.send(event(b"first")).await.unwrap();
    let size = event(b"second").size_bytes();
    // A cancelled reserve loses nothing: there was no event yet.
    let cancelled = tokio::time::timeout(Duration::from_millis(300), producer.reserve(size)).await;
    assert!(cancelled.is_err(), "no credit: the reserve waits");

    let mut consumer = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
        .await
        .unwrap();
    let first = common::recv(&mut consumer, Duration::from_secs(10)).await;
    consumer.ack(first.iter().map(|d| d.tag));
    let permit = tokio::time::timeout(Duration::from_secs(10), producer.reserve(size))
        .await
        .expect("credit once the first is acked")
        .unwrap();
    // An event larger than reserved comes back; the permit is used up with it.
    let larger = event(b"second, but longer");
    let err = permit.send(larger.clone()).unwrap_err();
    assert_eq!(err.event, larger);
    assert!(
        matches!(err.reason, ClientError::BeyondPermit { .. }),
        "{}",
        err.reason
    );
    let permit = producer.reserve(size).await.unwrap();
    let id = permit.send(event(b"second")).unwrap();
    assert_eq!(id.seq, 2);
    let second = common::recv(&mut consumer, Duration::from_secs(10)).await;
    assert_eq!(second[0].event.payload, b"second");
    assert_eq!(producer.close().await.unwrap().confirmed_seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_reject_topic_refuses_come_back_whole_and_counted_and_the_rest_are_delivered() {
    // Room for 5; nobody consumes while 20 are sent.
    let mut config = common::capacity(Credit::new(5, 1 << 20));
    config.policies.insert(
        "t".to_string(),
        flowgate_core::TopicPolicy {
            overflow: flowgate_core::Overflow::Reject,
            max_age: None,
        },
    );
    let b = common::broker_with(config).await;
    let addr = b.local_addr().to_string();
    let mut producer = Producer::connect(ProducerConfig::new(&addr, "t"))
        .await
        .unwrap();
    for i in 0..20u8 {
        producer.send(event(&[i])).await.unwrap();
    }
    producer.flush().await.unwrap();
    let refused = producer.take_refused();
    let payloads: Vec<Vec<u8>> = refused.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(payloads, (5..20u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert!(
        refused
            .iter()
            .all(|e| e.key.as_deref() == Some(&b"k"[..]) && e.created_us == 42),
        "handed back as sent"
    );
    assert!(producer.take_refused().is_empty(), "taken once");
    let stats = producer.close().await.unwrap();
    assert_eq!((stats.refused, stats.confirmed_seq), (15, 20));
    let mut consumer = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        let batch = tokio::time::timeout(Duration::from_secs(5), consumer.recv())
            .await
            .expect("the held five arrive")
            .unwrap()
            .unwrap();
        for d in batch {
            got.push(d.event.payload.clone());
            consumer.ack(vec![d.tag]);
        }
    }
    assert_eq!(got, (0..5u8).map(|i| vec![i]).collect::<Vec<_>>());
}
