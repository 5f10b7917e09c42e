//! [`AnyProducer`] and [`AnyConsumer`]: a producer or consumer of whichever backend the broker
//! address names, behind [`Publish`] and [`Subscribe`].

use std::future::Future;

use flowgate_core::{Credit, Event, EventId};

use super::{BrokerAddr, Monitor, Publish, Subscribe};
use crate::net::error::{ClientError, SendError};
use crate::{
    Consumer, ConsumerConfig, ConsumerStats, Delivery, DeliveryTag, Producer, ProducerConfig,
    ProducerStats,
};

/// A producer of the backend `config.addr` names.
#[derive(Debug)]
pub enum AnyProducer {
    /// The flowgate broker.
    Flowgate(Producer),
}

impl AnyProducer {
    /// Connects to the backend the address's scheme names.
    pub async fn connect(config: ProducerConfig) -> Result<AnyProducer, ClientError> {
        match config.addr.parse::<BrokerAddr>()? {
            BrokerAddr::Flowgate { .. } => {
                Ok(AnyProducer::Flowgate(Producer::connect(config).await?))
            }
        }
    }
}

impl Publish for AnyProducer {
    fn producer_id(&self) -> u64 {
        match self {
            AnyProducer::Flowgate(p) => p.producer_id(),
        }
    }

    fn largest_payload(&self) -> u64 {
        match self {
            AnyProducer::Flowgate(p) => p.largest_payload(),
        }
    }

    async fn send(&mut self, event: Event) -> Result<EventId, SendError> {
        match self {
            AnyProducer::Flowgate(p) => p.send(event).await,
        }
    }

    fn room_for(
        &self,
        events: u64,
        bytes: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        match self {
            AnyProducer::Flowgate(p) => p.room_for(events, bytes),
        }
    }

    fn confirmed_through(
        &self,
        seq: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        match self {
            AnyProducer::Flowgate(p) => p.confirmed_through(seq),
        }
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        match self {
            AnyProducer::Flowgate(p) => p.flush().await,
        }
    }

    async fn close(self) -> Result<ProducerStats, ClientError> {
        match self {
            AnyProducer::Flowgate(p) => p.close().await,
        }
    }

    fn credit(&self) -> Credit {
        match self {
            AnyProducer::Flowgate(p) => p.credit(),
        }
    }

    fn unconfirmed(&self) -> usize {
        match self {
            AnyProducer::Flowgate(p) => p.unconfirmed(),
        }
    }

    fn stats(&self) -> ProducerStats {
        match self {
            AnyProducer::Flowgate(p) => p.stats(),
        }
    }

    fn monitor(&self) -> Monitor<ProducerStats> {
        match self {
            AnyProducer::Flowgate(p) => Publish::monitor(p),
        }
    }

    fn take_refused(&mut self) -> Vec<Event> {
        match self {
            AnyProducer::Flowgate(p) => p.take_refused(),
        }
    }
}

/// A consumer of the backend `config.addr` names.
#[derive(Debug)]
pub enum AnyConsumer {
    /// The flowgate broker.
    Flowgate(Consumer),
}

impl AnyConsumer {
    /// Connects to the backend the address's scheme names.
    pub async fn connect(config: ConsumerConfig) -> Result<AnyConsumer, ClientError> {
        match config.addr.parse::<BrokerAddr>()? {
            BrokerAddr::Flowgate { .. } => {
                Ok(AnyConsumer::Flowgate(Consumer::connect(config).await?))
            }
        }
    }
}

impl Subscribe for AnyConsumer {
    async fn recv(&mut self) -> Result<Option<Vec<Delivery>>, ClientError> {
        match self {
            AnyConsumer::Flowgate(c) => c.recv().await,
        }
    }

    fn ack(&mut self, tags: Vec<DeliveryTag>) {
        match self {
            AnyConsumer::Flowgate(c) => c.ack(tags),
        }
    }

    fn nack(&mut self, tags: Vec<DeliveryTag>) {
        match self {
            AnyConsumer::Flowgate(c) => c.nack(tags),
        }
    }

    fn progress(&mut self, tags: Vec<DeliveryTag>) {
        match self {
            AnyConsumer::Flowgate(c) => c.progress(tags),
        }
    }

    fn set_prefetch(&mut self, prefetch: Credit) {
        match self {
            AnyConsumer::Flowgate(c) => c.set_prefetch(prefetch),
        }
    }

    async fn close(self) -> ConsumerStats {
        match self {
            AnyConsumer::Flowgate(c) => c.close().await,
        }
    }

    fn stats(&self) -> ConsumerStats {
        match self {
            AnyConsumer::Flowgate(c) => c.stats(),
        }
    }

    fn monitor(&self) -> Monitor<ConsumerStats> {
        match self {
            AnyConsumer::Flowgate(c) => Subscribe::monitor(c),
        }
    }
}
