//! The client against a broker in disk mode: a disk that fails mid-run confirms nothing it
//! did not keep, and a broker restarted on the recovered disk gets every event through once;
//! a disk log at its size limit holds producers until acks free it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flowgate_broker::{Broker, DiskOptions, DiskStorage};
use flowgate_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerMonitor};
use flowgate_core::{Credit, EventId};
use flowgate_storage::sim::SimFs;

mod common;

/// Waits until the producer's confirmed sequence stops moving for half a second.
async fn stalled(monitor: &ProducerMonitor) -> u64 {
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = monitor.stats().confirmed_seq;
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Receives and acks until `n` distinct events arrived; returns them and the deliveries seen.
async fn consume(addr: &str, n: usize) -> (BTreeSet<EventId>, usize) {
    let mut consumer = Consumer::connect(ConsumerConfig::new(addr, "t", "g"))
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    let mut deliveries = 0;
    while seen.len() < n {
        let batch = common::recv(&mut consumer, Duration::from_secs(20)).await;
        deliveries += batch.len();
        seen.extend(batch.iter().map(|d| d.event.id));
        consumer.ack(batch.iter().map(|d| d.tag));
    }
    (seen, deliveries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_confirms_nothing_more_and_a_restarted_broker_gets_everything_through() {
    let fs = SimFs::new(42);
    let options = DiskOptions {
        data_dir: "/data".into(),
        max_disk_bytes: 64 << 20,
        segment_bytes: 64 << 10,
    };
    let storage = DiskStorage::with_fs(Arc::new(fs.clone()), options.clone());
    // Room for the whole run, so only the disk can stop it.
    let capacity = Credit::new(5_000, 1 << 20);
    let b = Broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        common::capacity(capacity),
        Arc::new(storage),
    )
    .await
    .unwrap();
    let addr = b.local_addr();
    let mut config_p = ProducerConfig::new(addr.to_string(), "t");
    config_p.producer_id = Some(9);
    let mut producer = Producer::connect(config_p).await.unwrap();
    let monitor = producer.monitor();
    // The disk dies a few commits in: the write in progress torn, perhaps its sync lost, all
    // later operations failing.
    fs.crash_after(6);
    let send = tokio::spawn(async move {
        for i in 0..2_000 {
            producer.send(common::sized(100)).await.unwrap();
            if i % 100 == 0 {
                // Spread the run over several commits.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        producer.close().await.unwrap()
    });
    let confirmed_before = stalled(&monitor).await;
    assert!(confirmed_before < 2_000, "the failure stopped confirms");
    let errors = b.stats().errors_sent;
    assert!(
        errors.get("storage-failed").copied().unwrap_or(0) >= 1,
        "{errors:?}"
    );

    // As after a power cut: what was synced is there, the rest cut at a random point.
    b.shutdown().await;
    fs.restart();
    let storage = DiskStorage::with_fs(Arc::new(fs.clone()), options);
    let b = Broker::bind(addr, common::capacity(capacity), Arc::new(storage))
        .await
        .unwrap();
    assert!(
        b.recovery().events >= confirmed_before,
        "every confirmed event was on disk: recovered {} of {confirmed_before} confirmed",
        b.recovery().events
    );
    let (seen, _) = consume(&addr.to_string(), 2_000).await;
    let stats = tokio::time::timeout(Duration::from_secs(30), send)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.confirmed_seq, 2_000);
    let expected: BTreeSet<EventId> = (1..=2_000).map(|s| EventId::new(9, s)).collect();
    assert_eq!(seen, expected, "every event, none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_log_at_its_limit_holds_producers_until_acks_free_it() {
    let dir = tempfile::tempdir().unwrap();
    const LIMIT: u64 = 64 << 10;
    let storage = DiskStorage::new(DiskOptions {
        data_dir: dir.path().to_path_buf(),
        max_disk_bytes: LIMIT,
        segment_bytes: 16 << 10,
    });
    // Memory is not the limit here: 100,000 events, 64 MiB.
    let b = Broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        common::capacity(Credit::new(100_000, 64 << 20)),
        Arc::new(storage),
    )
    .await
    .unwrap();
    let addr = b.local_addr().to_string();
    let mut producer = Producer::connect(ProducerConfig::new(&addr, "t"))
        .await
        .unwrap();
    let monitor = producer.monitor();
    let send = tokio::spawn(async move {
        for _ in 0..500 {
            producer.send(common::sized(1_000)).await.unwrap();
        }
        producer.close().await.unwrap()
    });
    let held_at = stalled(&monitor).await;
    let per_event = 1_000 + 64;
    eprintln!("a {LIMIT}-byte log held the producer at {held_at} events of 1,000 bytes");
    assert!(
        held_at > 0 && held_at * per_event <= LIMIT,
        "{held_at} events of {per_event} credit bytes confirmed against a {LIMIT}-byte log"
    );
    let (seen, _) = consume(&addr, 500).await;
    let stats = tokio::time::timeout(Duration::from_secs(30), send)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((seen.len(), stats.confirmed_seq), (500, 500));
}

/// A spilling topic counts the appends its log has queued against memory. A slow disk lets
/// them pile up to the whole memory bound, so the producer that sent them runs out of credit
/// with nothing granted; the disk then writes them, and that alone must grant again: the
/// producer has nothing left to send that would make the topic look. (It stalled for good
/// under load before the log said so.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_waiting_on_a_slow_disk_is_granted_once_the_disk_catches_up() {
    let fs = SimFs::new(7);
    let storage = DiskStorage::with_fs(
        Arc::new(fs.clone()),
        DiskOptions {
            data_dir: "/data".into(),
            max_disk_bytes: 64 << 20,
            segment_bytes: 1 << 20,
        },
    );
    // Memory for 64 events of 1,000 bytes; the run is five times that.
    let b = Broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        common::capacity(Credit::new(1_000, 64 << 10)),
        Arc::new(storage),
    )
    .await
    .unwrap();
    let mut producer = Producer::connect(ProducerConfig::new(b.local_addr().to_string(), "t"))
        .await
        .unwrap();
    let monitor = producer.monitor();
    fs.hold_syncs(true);
    let send = tokio::spawn(async move {
        for _ in 0..320 {
            producer.send(common::sized(1_000)).await.unwrap();
        }
        producer.close().await.unwrap()
    });
    // The producer spends what memory allows, and every append waits on the disk.
    let mut sent = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = monitor.stats().sent;
        if now == sent && now > 0 {
            break;
        }
        sent = now;
    }
    assert!(sent < 320, "memory held the producer back: {sent} sent");
    assert_eq!(monitor.stats().confirmed_seq, 0, "nothing is written yet");

    fs.hold_syncs(false);
    let stats = tokio::time::timeout(Duration::from_secs(20), send)
        .await
        .expect("granted again once the disk wrote what it held")
        .unwrap();
    assert_eq!(stats.confirmed_seq, 320);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_far_beyond_memory_waits_on_disk_and_arrives_in_order_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = DiskOptions {
        data_dir: dir.path().to_path_buf(),
        max_disk_bytes: 64 << 20,
        segment_bytes: 256 << 10,
    };
    // Memory for 500 events; the disk takes the rest.
    let memory = Credit::new(500, 1 << 20);
    let b = Broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        common::capacity(memory),
        Arc::new(DiskStorage::new(options.clone())),
    )
    .await
    .unwrap();
    let addr = b.local_addr();
    let mut config_p = ProducerConfig::new(addr.to_string(), "t");
    config_p.producer_id = Some(5);
    let mut producer = Producer::connect(config_p).await.unwrap();
    // No consumer: all 20,000 are confirmed anyway, 40 times what memory holds.
    for _ in 0..20_000 {
        producer.send(common::sized(100)).await.unwrap();
    }
    let stats = tokio::time::timeout(Duration::from_secs(30), producer.close())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.confirmed_seq, 20_000);
    let topic = b.stats().topics[0].1;
    assert!(
        topic.peak_events <= 500,
        "memory held {}",
        topic.peak_events
    );
    assert_eq!(topic.ready + topic.on_disk, 20_000, "{topic:?}");
    eprintln!(
        "20,000 confirmed with memory for 500: {} in memory, {} on disk",
        topic.ready, topic.on_disk
    );

    b.shutdown().await;
    let b = Broker::bind(
        addr,
        common::capacity(memory),
        Arc::new(DiskStorage::new(options)),
    )
    .await
    .unwrap();
    let r = b.recovery().clone();
    assert_eq!((r.events, r.events + r.spilled), (500, 20_000), "{r:?}");

    let mut consumer = Consumer::connect(ConsumerConfig::new(addr.to_string(), "t", "g"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 20_000 {
        let batch = common::recv(&mut consumer, Duration::from_secs(20)).await;
        seen.extend(batch.iter().map(|d| d.event.id));
        consumer.ack(batch.iter().map(|d| d.tag));
    }
    let expected: Vec<EventId> = (1..=20_000).map(|s| EventId::new(5, s)).collect();
    assert_eq!(seen, expected, "every event once, in acceptance order");
    let topic = b.stats().topics[0].1;
    assert!(
        topic.peak_events <= 1_000,
        "memory held {}",
        topic.peak_events
    );
    assert_eq!(topic.on_disk, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_outrunning_its_consumer_through_the_disk_loses_no_event_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        common::capacity(Credit::new(1_000, 1 << 20)),
        Arc::new(DiskStorage::new(DiskOptions {
            data_dir: dir.path().to_path_buf(),
            max_disk_bytes: 256 << 20,
            segment_bytes: 1 << 20,
        })),
    )
    .await
    .unwrap();
    let addr = b.local_addr().to_string();
    let mut consumer = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
        .await
        .unwrap();
    let mut config_p = ProducerConfig::new(&addr, "t");
    config_p.producer_id = Some(8);
    let mut producer = Producer::connect(config_p).await.unwrap();
    const N: u64 = 150_000;
    // Spills start and stop again and again while loads are answered: every event must come
    // back exactly once, in order.
    let send = tokio::spawn(async move {
        for _ in 0..N {
            producer.send(common::sized(50)).await.unwrap();
        }
        producer.close().await.unwrap()
    });
    let mut next = 1;
    while next <= N {
        let batch = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled at {next}: {:?}", b.stats().topics))
            .unwrap()
            .unwrap();
        for d in &batch {
            assert_eq!(d.event.id, EventId::new(8, next), "in order, once");
            next += 1;
        }
        consumer.ack(batch.iter().map(|d| d.tag));
    }
    assert_eq!(send.await.unwrap().confirmed_seq, N);
    let topic = b.stats().topics[0].1;
    eprintln!("{} of {N} went through the disk", topic.spilled);
    assert!(
        topic.spilled > 0,
        "the test must exercise the disk path: {topic:?}"
    );
    assert!(topic.peak_events <= 2_000);
}
