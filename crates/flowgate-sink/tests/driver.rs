//! The sink driver end to end: over the in-process pipe and over a real broker on a loopback
//! port, into SQLite files in a temp dir. Exact tables, refusals retried then dead-lettered,
//! batches within the demand, and an emulated database that sets the pace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate_broker::{Broker, BrokerConfig, MemoryStorage};
use flowgate_client::inproc::{PipeConfig, pipe};
use flowgate_client::{Consumer, ConsumerConfig, Producer, ProducerConfig};
use flowgate_core::{Credit, Event, EventId, OverflowPolicy};
use flowgate_sink::driver::{Emulation, Pipe};
use flowgate_sink::{AnySink, DriverConfig, DriverError, Outcome, SinkDriver, SinkUrl, count_rows};

fn json_event(seq: u64, payload: &str) -> Event {
    Event {
        id: EventId::new(7, seq),
        key: None,
        created_us: 0,
        payload: payload.as_bytes().to_vec(),
    }
}

async fn sqlite(dir: &tempfile::TempDir, options: &str) -> (AnySink, std::path::PathBuf) {
    let path = dir.path().join("events.db");
    let url: SinkUrl = format!("sqlite:{}?table=events{options}", path.display())
        .parse()
        .unwrap();
    (AnySink::open(&url).await.unwrap(), path)
}

fn dead_letters(path: &std::path::Path) -> u64 {
    count_rows(path, "events_dead_letters").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_drains_into_sqlite_in_batches_within_the_demand() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, path) = sqlite(&dir, "").await;
    let (mut tx, rx) = pipe(PipeConfig {
        capacity: Credit::new(10_000, 1 << 30),
        policy: OverflowPolicy::Block,
    });
    for seq in 1..=1_000 {
        tx.send(json_event(seq, "{}")).await.unwrap();
    }
    drop(tx);
    let config = DriverConfig {
        max_batch: 100,
        ..DriverConfig::new()
    };
    let mut driver = SinkDriver::new(Pipe(rx), sink, config).unwrap();
    let mut largest = 0;
    loop {
        match driver.step().await.unwrap() {
            Outcome::Committed(batch) => largest = largest.max(batch.events),
            Outcome::Ended => break,
            Outcome::Idle | Outcome::Stopped => unreachable!("no idle limit, no stop"),
        }
    }
    let stats = driver.stats();
    assert_eq!(count_rows(&path, "events").unwrap(), 1_000);
    assert_eq!(
        (stats.received, stats.committed, stats.commits),
        (1_000, 1_000, 10)
    );
    assert_eq!(largest, 100, "no batch beyond the largest batch");
    assert_eq!(stats.batch_limit, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_pipe_a_refused_event_is_a_dead_letter_at_once_and_a_retry_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, path) = sqlite(&dir, "&payload=json").await;
    let (mut tx, rx) = pipe(PipeConfig {
        capacity: Credit::new(100, 1 << 20),
        policy: OverflowPolicy::Block,
    });
    for seq in 1..=10 {
        let payload = if seq == 4 { "not json" } else { "{\"n\":1}" };
        tx.send(json_event(seq, payload)).await.unwrap();
    }
    drop(tx);
    let config = DriverConfig {
        max_attempts: 1,
        ..DriverConfig::new()
    };
    let mut driver = SinkDriver::new(Pipe(rx), sink, config).unwrap();
    assert_eq!(driver.run().await.unwrap(), Outcome::Ended);
    let stats = driver.stats();
    assert_eq!(
        (stats.committed, stats.dead_lettered, stats.retried),
        (10, 1, 0)
    );
    assert_eq!(count_rows(&path, "events").unwrap(), 9);
    assert_eq!(dead_letters(&path), 1);

    // The same with attempts left: the pipe cannot deliver again, and says so.
    let dir = tempfile::tempdir().unwrap();
    let (sink, _) = sqlite(&dir, "&payload=json").await;
    let (mut tx, rx) = pipe(PipeConfig {
        capacity: Credit::new(100, 1 << 20),
        policy: OverflowPolicy::Block,
    });
    tx.send(json_event(1, "not json")).await.unwrap();
    let mut driver = SinkDriver::new(Pipe(rx), sink, DriverConfig::new()).unwrap();
    let err = driver.step().await.unwrap_err();
    assert!(
        matches!(&err, DriverError::Source(e) if e.to_string().contains("cannot deliver 1 refused")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_broker_a_refused_event_is_retried_then_dead_lettered_and_the_rest_commit() {
    let broker = Broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        BrokerConfig::default(),
        Arc::new(MemoryStorage),
    )
    .await
    .unwrap();
    let addr = broker.local_addr().to_string();
    let consumer = Consumer::connect(ConsumerConfig::new(&addr, "t", "db"))
        .await
        .unwrap();
    let mut producer = Producer::connect(ProducerConfig::new(&addr, "t"))
        .await
        .unwrap();
    for seq in 1..=500u64 {
        let payload = if seq % 100 == 0 { "not json" } else { "[1]" };
        producer.send(json_event(seq, payload)).await.unwrap();
    }
    producer.close().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (sink, path) = sqlite(&dir, "&payload=json").await;
    let config = DriverConfig {
        max_attempts: 3,
        idle_exit: Some(Duration::from_secs(2)),
        ..DriverConfig::new()
    };
    let mut driver = SinkDriver::new(consumer, sink, config).unwrap();
    while driver.stats().committed < 500 {
        let outcome = driver.step().await.unwrap();
        assert!(matches!(outcome, Outcome::Committed(_)), "{outcome:?}");
    }
    let stats = driver.stats();
    // Five poison events, each refused on attempts 1 and 2 (retried) and 3 (dead letter).
    assert_eq!((stats.dead_lettered, stats.retried), (5, 10));
    assert_eq!(stats.received, 510);
    assert_eq!(count_rows(&path, "events").unwrap(), 495);
    assert_eq!(dead_letters(&path), 5);
    let (consumer, _) = driver.into_parts();
    let client = consumer.close().await;
    assert_eq!(
        client.redelivered, 10,
        "each retry came back as a redelivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulated_database_sets_the_pace_and_an_idle_source_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, path) = sqlite(&dir, "").await;
    let (mut tx, rx) = pipe(PipeConfig {
        capacity: Credit::new(1_000, 1 << 20),
        policy: OverflowPolicy::Block,
    });
    for seq in 1..=300 {
        tx.send(json_event(seq, "{}")).await.unwrap();
    }
    // 1,000 events/s, 100 at once, and down for the first 200 ms: 300 events take at least
    // the stall plus the two bursts beyond the first, 200 ms + 200 ms.
    let config = DriverConfig {
        idle_exit: Some(Duration::from_millis(200)),
        emulation: Some(Emulation {
            rate: 1_000,
            burst: 100,
            stalls: Some(Arc::new(|t| {
                (t < Duration::from_millis(200)).then_some(Duration::from_millis(200))
            })),
        }),
        ..DriverConfig::new()
    };
    let started = Instant::now();
    let mut driver = SinkDriver::new(Pipe(rx), sink, config).unwrap();
    assert_eq!(
        driver.run().await.unwrap(),
        Outcome::Idle,
        "the producer is still there"
    );
    let took = started.elapsed();
    assert_eq!(count_rows(&path, "events").unwrap(), 300);
    assert!(
        took >= Duration::from_millis(400 + 200),
        "stall, two bursts and the idle limit: {took:?}"
    );
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_wait_for_a_batch_and_never_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, path) = sqlite(&dir, "").await;
    let (mut tx, rx) = pipe(PipeConfig {
        capacity: Credit::new(1_000, 1 << 20),
        policy: OverflowPolicy::Block,
    });
    let mut driver = SinkDriver::new(Pipe(rx), sink, DriverConfig::new()).unwrap();
    // Nothing to receive: the stop ends the wait.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop = Box::pin(async move {
        let _ = stop_rx.await;
    });
    let waiting = tokio::spawn(async move {
        let outcome = driver.step_until(&mut stop).await.unwrap();
        (outcome, driver)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop_tx.send(()).unwrap();
    let (outcome, mut driver) = waiting.await.unwrap();
    assert_eq!(outcome, Outcome::Stopped);
    // A batch in hand is committed before a stop is looked at again.
    for seq in 1..=10 {
        tx.send(json_event(seq, "{}")).await.unwrap();
    }
    let never = std::future::pending::<()>();
    let mut never = std::pin::pin!(never);
    assert!(matches!(
        driver.step_until(&mut never).await.unwrap(),
        Outcome::Committed(b) if b.events == 10
    ));
    assert_eq!(count_rows(&path, "events").unwrap(), 10);
}

#[test]
fn a_config_that_cannot_work_is_refused_by_name() {
    let (_tx, rx) = pipe(PipeConfig {
        capacity: Credit::new(10, 1 << 20),
        policy: OverflowPolicy::Block,
    });
    let zero = DriverConfig {
        max_batch: 0,
        ..DriverConfig::new()
    };
    let err = SinkDriver::new(Pipe(rx), AnySink::Null(Default::default()), zero)
        .err()
        .unwrap();
    assert!(err.to_string().contains("largest batch"), "{err}");
}
