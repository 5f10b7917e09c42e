//! The network client against a real broker on a loopback port: credit holds the producer,
//! demand bounds deliveries, acks free space, and what a departing consumer held comes back.

use std::collections::BTreeSet;
use std::time::Duration;

use flowgate_client::{
    ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig, TrySendError,
};
use flowgate_core::{Credit, EventId};
use flowgate_proto::ErrorCode;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_in_order_and_the_producer_is_confirmed() {
    let b = common::broker(Credit::new(500, 1 << 20)).await;
    let addr = b.local_addr().to_string();
    let mut consumer = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
        .await
        .unwrap();
    let mut producer = Producer::connect(ProducerConfig::new(&addr, "t"))
        .await
        .unwrap();
    let pid = producer.producer_id();
    let send = tokio::spawn(async move {
        for i in 0..20_000u64 {
            producer.send(common::numbered(i)).await.unwrap();
        }
        producer.close().await.unwrap()
    });
    let mut seen = Vec::new();
    while seen.len() < 20_000 {
        let batch = common::recv(&mut consumer, Duration::from_secs(10)).await;
        seen.extend(batch.iter().map(|d| d.event.id));
        consumer.ack(batch.iter().map(|d| d.tag));
    }
    let stats = send.await.unwrap();
    assert_eq!(stats.confirmed_seq, 20_000);
    let expected: Vec<EventId> = (1..=20_000).map(|s| EventId::new(pid, s)).collect();
    assert_eq!(seen, expected, "every event once, in sequence order");
    let topic = &b.stats().topics[0].1;
    assert!(
        topic.peak_events <= 500,
        "the broker never held more than its capacity: {topic:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_consumer_the_producer_runs_out_of_credit_at_capacity() {
    let b = common::broker(Credit::new(100, 1 << 20)).await;
    let mut producer = Producer::connect(ProducerConfig::new(b.local_addr().to_string(), "t"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut sent = 0;
    loop {
        match producer.try_send(common::numbered(sent)) {
            Ok(_) => sent += 1,
            Err(TrySendError::NoCredit(e)) => {
                assert_eq!(e.payload, sent.to_be_bytes(), "the event is handed back");
                break;
            }
            Err(TrySendError::Failed(_, e)) => panic!("{e}"),
        }
    }
    assert_eq!(sent, 100, "exactly the capacity was granted");
    let blocked = tokio::time::timeout(
        Duration::from_millis(300),
        producer.send(common::numbered(999)),
    )
    .await;
    assert!(blocked.is_err(), "send waits while the topic is full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_leaves_without_acking_hands_its_events_to_the_next() {
    let b = common::broker(Credit::new(1000, 1 << 20)).await;
    let addr = b.local_addr().to_string();
    let mut producer = Producer::connect(ProducerConfig::new(&addr, "t"))
        .await
        .unwrap();
    for i in 0..50 {
        producer.send(common::numbered(i)).await.unwrap();
    }
    producer.flush().await.unwrap();
    let mut first = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
        .await
        .unwrap();
    let mut got = 0;
    while got < 50 {
        got += first.recv().await.unwrap().unwrap().len();
    }
    drop(first); // killed before acking anything
    let mut second = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
        .await
        .unwrap();
    let mut again = BTreeSet::new();
    while again.len() < 50 {
        let batch = tokio::time::timeout(Duration::from_secs(5), second.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for d in &batch {
            assert_eq!(d.tag.attempt(), 2, "a redelivery says so");
            again.insert(d.event.id.seq);
        }
        second.ack(batch.iter().map(|d| d.tag));
    }
    assert_eq!(again, (1..=50).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_producer_with_the_same_id_resumes_without_duplicates() {
    let b = common::broker(Credit::new(1000, 1 << 20)).await;
    let addr = b.local_addr().to_string();
    let config = ProducerConfig {
        producer_id: Some(42),
        ..ProducerConfig::new(&addr, "t")
    };
    let mut p1 = Producer::connect(config.clone()).await.unwrap();
    for i in 0..30 {
        p1.send(common::numbered(i)).await.unwrap();
    }
    p1.close().await.unwrap();
    let mut p2 = Producer::connect(config).await.unwrap();
    let id = p2.send(common::numbered(30)).await.unwrap();
    assert_eq!(
        id,
        EventId::new(42, 31),
        "the sequence continues after what the broker holds"
    );
    p2.close().await.unwrap();
    assert_eq!(b.stats().topics[0].1.accepted, 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_rule() {
    let b = common::broker(Credit::new(10, 1 << 20)).await;
    let addr = b.local_addr().to_string();
    let err = Producer::connect(ProducerConfig::new(&addr, "bad name"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(ErrorCode::InvalidName), "{err}");
    let _a = Consumer::connect(ConsumerConfig::new(&addr, "t", "g1"))
        .await
        .unwrap();
    let best_effort = ConsumerConfig {
        max_lag: Some(100),
        ..ConsumerConfig::new(&addr, "t", "g1")
    };
    let err = Consumer::connect(best_effort).await.err().unwrap();
    assert!(
        matches!(
            &err,
            ClientError::Refused {
                code: ErrorCode::GroupConflict,
                ..
            }
        ),
        "{err}"
    );
}

/// Events the consumer receives (and acks) in `window`, best of three windows.
async fn best_window_rate(consumer: &mut Consumer, window: Duration) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = tokio::time::Instant::now();
        let mut n = 0u64;
        while start.elapsed() < window {
            if let Ok(Ok(Some(batch))) = tokio::time::timeout(window, consumer.recv()).await {
                n += batch.len() as u64;
                consumer.ack(batch.iter().map(|d| d.tag));
            }
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    best
}

/// The fast consumer takes everything as it comes; the slow one asks for one event at a time
/// and takes 100 ms over each. The broker serves each within its own demand, so the slow one
/// holds at most one event and the fast one keeps its pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_in_the_group_never_stalls_a_fast_one() {
    let b = common::broker(Credit::new(5_000, 8 << 20)).await;
    let addr = b.local_addr().to_string();
    let mut producer = Producer::connect(ProducerConfig::new(&addr, "t"))
        .await
        .unwrap();
    // Supply at a steady 20,000 events/s, so the fast consumer's throughput measures the
    // broker's dispatch rather than how much CPU the other tests leave it.
    let produce = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for round in 0u64.. {
            tick.tick().await;
            for i in 0..200 {
                if producer
                    .send(common::numbered(round * 200 + i))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    let mut fast = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
        .await
        .unwrap();
    let window = Duration::from_millis(500);
    let _ = best_window_rate(&mut fast, Duration::from_millis(200)).await; // warm-up
    let solo = best_window_rate(&mut fast, window).await;

    // A consumer at 10 events/s: asks for one at a time, takes 100 ms per event.
    let slow_config = ConsumerConfig {
        prefetch: Credit::new(1, 1 << 20),
        ..ConsumerConfig::new(&addr, "t", "g")
    };
    let mut slow = Consumer::connect(slow_config).await.unwrap();
    let slow_task = tokio::spawn(async move {
        let mut taken = 0u64;
        while let Ok(Some(batch)) = slow.recv().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
            taken += batch.len() as u64;
            slow.ack(batch.iter().map(|d| d.tag));
            if taken >= 10 {
                break;
            }
        }
        taken
    });
    let shared = best_window_rate(&mut fast, window).await;
    let slow_taken = slow_task.await.unwrap();
    produce.abort();
    eprintln!("fast consumer: {solo:.0}/s alone, {shared:.0}/s beside a 10/s consumer");
    assert!(
        slow_taken >= 5,
        "the slow consumer was served too ({slow_taken} events)"
    );
    assert!(
        shared >= 0.9 * solo,
        "fast consumer at {shared:.0}/s beside the slow one, {solo:.0}/s alone"
    );
}
