//! The network backend's side of the seam: [`Publish`] for [`Producer`] and [`Subscribe`] for
//! [`Consumer`], by their inherent methods.

use std::future::Future;

use flowgate_core::{Credit, Event, EventId};

use crate::backend::{Monitor, Publish, Subscribe};
use crate::net::{
    ClientError, Consumer, ConsumerStats, Delivery, DeliveryTag, Producer, ProducerStats, SendError,
};

impl Publish for Producer {
    fn producer_id(&self) -> u64 {
        Producer::producer_id(self)
    }

    fn largest_payload(&self) -> u64 {
        Producer::largest_payload(self)
    }

    async fn send(&mut self, event: Event) -> Result<EventId, SendError> {
        Producer::send(self, event).await
    }

    fn room_for(
        &self,
        events: u64,
        bytes: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        Producer::room_for(self, events, bytes)
    }

    fn confirmed_through(
        &self,
        seq: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        Producer::confirmed_through(self, seq)
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        Producer::flush(self).await
    }

    async fn close(self) -> Result<ProducerStats, ClientError> {
        Producer::close(self).await
    }

    fn credit(&self) -> Credit {
        Producer::credit(self)
    }

    fn unconfirmed(&self) -> usize {
        Producer::unconfirmed(self)
    }

    fn stats(&self) -> ProducerStats {
        Producer::stats(self)
    }

    fn monitor(&self) -> Monitor<ProducerStats> {
        let monitor = Producer::monitor(self);
        Monitor::new(move || monitor.stats())
    }

    fn take_refused(&mut self) -> Vec<Event> {
        Producer::take_refused(self)
    }
}

impl Subscribe for Consumer {
    async fn recv(&mut self) -> Result<Option<Vec<Delivery>>, ClientError> {
        Consumer::recv(self).await
    }

    fn ack(&mut self, tags: Vec<DeliveryTag>) {
        Consumer::ack(self, tags);
    }

    fn nack(&mut self, tags: Vec<DeliveryTag>) {
        Consumer::nack(self, tags);
    }

    fn progress(&mut self, tags: Vec<DeliveryTag>) {
        Consumer::progress(self, tags);
    }

    fn set_prefetch(&mut self, prefetch: Credit) {
        Consumer::set_prefetch(self, prefetch);
    }

    async fn close(self) -> ConsumerStats {
        Consumer::close(self).await
    }

    fn stats(&self) -> ConsumerStats {
        Consumer::stats(self)
    }

    fn monitor(&self) -> Monitor<ConsumerStats> {
        let monitor = Consumer::monitor(self);
        Monitor::new(move || monitor.stats())
    }
}
