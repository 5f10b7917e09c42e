//! Connections cut mid-stream by a proxy between client and broker: the producer reconnects
//! and resends what was not confirmed (the broker drops what it already held), the consumer
//! reconnects and gets back what it had not acknowledged. Also the `Sink` and `Stream` faces.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use flowgate_client::{Consumer, ConsumerConfig, Producer, ProducerConfig};
use flowgate_core::Credit;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod common;

/// A TCP proxy whose current connections can be cut; new ones are proxied as before.
struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(0u64);
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut_rx = cuts.subscribe();
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {} // dropping both sockets cuts the connection
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_cut_off_mid_stream_resends_and_nothing_is_stored_twice() {
    let b = common::broker(Credit::new(1_000, 1 << 20)).await;
    let proxy = Proxy::start(b.local_addr()).await;
    let mut consumer = Consumer::connect(ConsumerConfig::new(b.local_addr().to_string(), "t", "g"))
        .await
        .unwrap();
    let mut producer = Producer::connect(ProducerConfig::new(proxy.addr.to_string(), "t"))
        .await
        .unwrap();
    let pid = producer.producer_id();
    let sending = tokio::spawn(async move {
        for i in 0..20_000 {
            producer.send(common::numbered(i)).await.unwrap();
        }
        producer.close().await.unwrap()
    });
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    let mut cuts = 0;
    while seen.len() < 20_000 {
        let batch = common::recv(&mut consumer, Duration::from_secs(10)).await;
        for d in &batch {
            assert_eq!(d.event.id.producer, pid);
            *seen.entry(d.event.id.seq).or_default() += 1;
        }
        consumer.ack(batch.iter().map(|d| d.tag));
        if cuts < 3 && seen.len() > 4_000 * (cuts + 1) {
            proxy.cut_all();
            cuts += 1;
        }
    }
    let stats = sending.await.unwrap();
    assert_eq!(cuts, 3);
    assert!(stats.sessions >= 2, "the producer reconnected: {stats:?}");
    assert_eq!(stats.confirmed_seq, 20_000);
    assert!(
        seen.values().all(|n| *n == 1),
        "a retried event reached the consumer twice"
    );
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (1..=20_000).collect::<Vec<_>>()
    );
    let topic = b.stats().topics[0].1;
    assert_eq!(topic.accepted, 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_cut_off_mid_stream_gets_back_what_it_had_not_acked() {
    let b = common::broker(Credit::new(1_000, 1 << 20)).await;
    let proxy = Proxy::start(b.local_addr()).await;
    let mut producer = Producer::connect(ProducerConfig::new(b.local_addr().to_string(), "t"))
        .await
        .unwrap();
    let sending = tokio::spawn(async move {
        for i in 0..10_000 {
            producer.send(common::numbered(i)).await.unwrap();
        }
        producer.close().await.unwrap()
    });
    let mut consumer = Consumer::connect(ConsumerConfig::new(proxy.addr.to_string(), "t", "g"))
        .await
        .unwrap();
    let mut acked: BTreeMap<u64, u32> = BTreeMap::new();
    let mut cut = false;
    while acked.len() < 10_000 {
        let batch = common::recv(&mut consumer, Duration::from_secs(10)).await;
        if !cut && acked.len() > 3_000 {
            // This batch is never acked: the connection goes first.
            proxy.cut_all();
            cut = true;
            continue;
        }
        for d in &batch {
            *acked.entry(d.event.id.seq).or_default() += 1;
        }
        consumer.ack(batch.iter().map(|d| d.tag));
    }
    sending.await.unwrap();
    let stats = consumer.stats();
    assert!(stats.sessions >= 2 && stats.redelivered > 0, "{stats:?}");
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=10_000).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_is_a_sink_and_consumer_is_a_stream() {
    let b = common::broker(Credit::new(1_000, 1 << 20)).await;
    let addr = b.local_addr().to_string();
    let mut producer = Producer::connect(ProducerConfig::new(&addr, "t"))
        .await
        .unwrap();
    let mut consumer = Consumer::connect(ConsumerConfig::new(&addr, "t", "g"))
        .await
        .unwrap();
    for i in 0..100 {
        poll_fn(|cx| Pin::new(&mut producer).poll_ready(cx))
            .await
            .unwrap();
        Pin::new(&mut producer)
            .start_send(common::numbered(i))
            .unwrap();
    }
    poll_fn(|cx| Pin::new(&mut producer).poll_flush(cx))
        .await
        .unwrap();
    assert_eq!(
        producer.stats().confirmed_seq,
        100,
        "flush waits for confirms"
    );
    let mut got = 0;
    while got < 100 {
        let batch = poll_fn(|cx| Pin::new(&mut consumer).poll_next(cx))
            .await
            .unwrap()
            .unwrap();
        got += batch.len();
        consumer.ack(batch.iter().map(|d| d.tag));
    }
    assert_eq!(got, 100);
}
