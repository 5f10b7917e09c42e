//! Helpers shared by the client's tests: a broker on a free loopback port, events to send, and
//! receiving with a deadline.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use flowgate_broker::{Broker, BrokerConfig, MemoryStorage};
use flowgate_client::{Consumer, Delivery};
use flowgate_core::{Credit, Event, EventId};

/// Broker settings with topics of `capacity`.
pub fn capacity(capacity: Credit) -> BrokerConfig {
    BrokerConfig {
        default_capacity: capacity,
        ..BrokerConfig::default()
    }
}

/// A memory broker with `config` on a free loopback port.
pub async fn broker_with(config: BrokerConfig) -> Broker {
    Broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Arc::new(MemoryStorage),
    )
    .await
    .unwrap()
}

/// A memory broker whose topics hold `topic_capacity`.
pub async fn broker(topic_capacity: Credit) -> Broker {
    broker_with(capacity(topic_capacity)).await
}

/// An event whose payload is `i`, big-endian.
pub fn numbered(i: u64) -> Event {
    Event {
        id: EventId::default(),
        key: None,
        created_us: 0,
        payload: i.to_be_bytes().to_vec(),
    }
}

/// An event with a payload of `size` bytes.
pub fn sized(size: usize) -> Event {
    Event {
        id: EventId::default(),
        key: None,
        created_us: 0,
        payload: vec![7; size],
    }
}

/// The consumer's next batch; panics if none comes `within`, or the consumer fails or ends.
pub async fn recv(consumer: &mut Consumer, within: Duration) -> Vec<Delivery> {
    tokio::time::timeout(within, consumer.recv())
        .await
        .expect("a batch within the deadline")
        .expect("the consumer works")
        .expect("the consumer is open")
}
