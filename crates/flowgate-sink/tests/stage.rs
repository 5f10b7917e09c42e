//! A stage between two topics of a real broker on a loopback port: events are transformed by
//! an `--exec` child or a function, sent on with the chain's first event as their origin, and
//! acknowledged upstream only once the next topic confirmed them; what the transform drops goes
//! no further, and what it cannot take is dead-lettered after its attempts.

use std::sync::Arc;

use flowgate_broker::{Broker, BrokerConfig, MemoryStorage};
use flowgate_client::{
    AnyConsumer, AnyProducer, ConsumerConfig, ProducerConfig, Publish, Subscribe,
};
use flowgate_core::{Credit, Event, EventId};
use flowgate_sink::{DriverConfig, Exec, Outcome, Stage, Transform};

async fn broker() -> Broker {
    let config = BrokerConfig {
        default_capacity: Credit::new(100, 1 << 20),
        ..BrokerConfig::default()
    };
    Broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Arc::new(MemoryStorage),
    )
    .await
    .unwrap()
}

/// Sends `payloads` to `topic` as producer 0x2a, and returns once they are confirmed.
async fn produce(addr: &str, topic: &str, payloads: &[&str]) {
    let config = ProducerConfig {
        producer_id: Some(0x2a),
        ..ProducerConfig::new(addr, topic)
    };
    let mut p = AnyProducer::connect(config).await.unwrap();
    for payload in payloads {
        p.send_payload(payload.as_bytes().to_vec()).await.unwrap();
    }
    p.close().await.unwrap();
}

/// Runs a stage from `raw` to `next` over `n` events, then what `next` holds: (origin, payload).
async fn run_stage(addr: &str, transform: Transform, n: u64) -> (Vec<(EventId, String)>, u64) {
    let from = AnyConsumer::connect(ConsumerConfig::new(addr, "raw", "stage"))
        .await
        .unwrap();
    let to = AnyProducer::connect(ProducerConfig::new(addr, "next"))
        .await
        .unwrap();
    let config = DriverConfig {
        max_attempts: 2,
        ..DriverConfig::new()
    };
    let mut stage = Stage::stage(from, to, transform, config).unwrap();
    let mut settled = 0;
    while settled < n {
        match stage.step().await.unwrap() {
            Outcome::Committed(_) => settled = stage.stats().committed,
            other => panic!("{other:?}"),
        }
    }
    let dead = stage.stats().dead_lettered;
    let (source, sink) = stage.into_parts();
    source.close().await;
    if let flowgate_sink::AnySink::Topic(t) = sink {
        t.close().await.unwrap();
    }
    let mut next = AnyConsumer::connect(ConsumerConfig::new(addr, "next", "check"))
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Ok(Ok(Some(batch))) =
        tokio::time::timeout(std::time::Duration::from_millis(500), next.recv()).await
    {
        for d in &batch {
            let e: &Event = &d.event;
            got.push((e.origin(), String::from_utf8(e.payload.clone()).unwrap()));
        }
        next.ack(batch.iter().map(|d| d.tag).collect());
    }
    got.sort();
    (got, dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_stage_transforms_drops_and_refuses_and_keeps_the_origin() {
    let b = broker().await;
    let addr = b.local_addr().to_string();
    produce(
        &addr,
        "raw",
        &["{\"n\":1}", "drop me", "{\"n\":3}", "two\nlines"],
    )
    .await;
    // sed -u: one line out per line in, flushed; a line saying "drop" becomes empty.
    let exec = Exec::spawn("sed -u -e 's/^{/{\"seen\":true,/' -e 's/^drop.*//'").unwrap();
    let (got, dead) = run_stage(&addr, Transform::Exec(Box::new(exec)), 4).await;
    assert_eq!(
        got,
        [
            (EventId::new(0x2a, 1), "{\"seen\":true,\"n\":1}".to_string()),
            (EventId::new(0x2a, 3), "{\"seen\":true,\"n\":3}".to_string()),
        ],
        "event 2 dropped by the child, event 4 refused"
    );
    assert_eq!(dead, 1, "the payload with a newline, after its attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_stage_sends_on_what_it_makes() {
    let b = broker().await;
    let addr = b.local_addr().to_string();
    produce(&addr, "raw", &["a", "b", "c"]).await;
    let upper = Transform::Fn(Box::new(|e: &Event| {
        let payload = e.payload.to_ascii_uppercase();
        Box::pin(async move { Ok(Some(payload)) })
    }));
    let (got, dead) = run_stage(&addr, upper, 3).await;
    let payloads: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(payloads, ["A", "B", "C"]);
    assert!(got.iter().all(|(o, _)| o.producer == 0x2a));
    assert_eq!(dead, 0);
}
