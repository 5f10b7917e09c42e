//! Where a [`SinkDriver`](super::SinkDriver) takes its batches from: the receiving end of any
//! transport, with its way of settling them and of being told how much to ask for. Implemented
//! here for every consumer of the client's seam ([`Subscribe`]: the flowgate broker, and any
//! backend added behind it) and for the in-process pipe ([`Pipe`]).

use std::future::Future;

use flowgate_client::{ClientError, DeliveryTag, Subscribe, inproc};
use flowgate_core::{Credit, Event};

/// A batch received from a [`Source`], in delivery order.
#[derive(Debug)]
pub struct Batch<T> {
    /// The events.
    pub events: Vec<Event>,
    /// One tag per event, to settle it with.
    pub tags: Vec<T>,
}

/// The receiving end of a transport, as a sink driver uses it.
pub trait Source: Send {
    /// What settles one delivery.
    type Tag: Copy + Send;
    /// Why receiving or settling failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Waits for the next batch; `Ok(None)` when the source has ended.
    fn recv(
        &mut self,
    ) -> impl Future<Output = Result<Option<Batch<Self::Tag>>, Self::Error>> + Send;

    /// On which delivery of its event a tag was received: 1 the first time.
    fn attempt(&self, tag: &Self::Tag) -> u32;

    /// Settles deliveries: `acks` are committed and may be forgotten; `nacks` are to be
    /// delivered again.
    fn settle(&mut self, acks: Vec<Self::Tag>, nacks: Vec<Self::Tag>) -> Result<(), Self::Error>;

    /// Asks for at most `limit` ahead of processing from now on: the sink's pace becomes the
    /// source's demand.
    fn set_demand(&mut self, limit: Credit);

    /// These deliveries are still being committed: a source with ack deadlines restarts
    /// theirs, so a long commit keeps its batch.
    fn progress(&mut self, tags: &[Self::Tag]);
}

impl<C: Subscribe> Source for C {
    type Tag = DeliveryTag;
    type Error = ClientError;

    async fn recv(&mut self) -> Result<Option<Batch<DeliveryTag>>, ClientError> {
        Ok(Subscribe::recv(self).await?.map(|deliveries| {
            let tags = deliveries.iter().map(|d| d.tag).collect();
            let events = deliveries.into_iter().map(|d| d.event).collect();
            Batch { events, tags }
        }))
    }

    fn attempt(&self, tag: &DeliveryTag) -> u32 {
        tag.attempt()
    }

    fn settle(
        &mut self,
        acks: Vec<DeliveryTag>,
        nacks: Vec<DeliveryTag>,
    ) -> Result<(), ClientError> {
        self.ack(acks);
        self.nack(nacks);
        Ok(())
    }

    fn set_demand(&mut self, limit: Credit) {
        self.set_prefetch(limit);
    }

    fn progress(&mut self, tags: &[DeliveryTag]) {
        Subscribe::progress(self, tags.to_vec());
    }
}

/// The receiving end of an in-process pipe, as a source.
pub struct Pipe(pub inproc::Consumer);

/// An in-process pipe's deliveries: an event leaves the pipe when it is received, so there is
/// nothing to acknowledge and nothing can be delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken;

/// The in-process pipe cannot deliver an event again.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// Receiving failed.
    #[error("{0}")]
    Recv(#[from] inproc::RecvError),
    /// A nack: the pipe no longer holds the event. Drive a pipe with `max_attempts` 1, so
    /// refused events are dead-lettered at once.
    #[error("the in-process pipe cannot deliver {0} refused events again (use max_attempts 1)")]
    CannotRedeliver(usize),
}

impl Source for Pipe {
    type Tag = Taken;
    type Error = PipeError;

    async fn recv(&mut self) -> Result<Option<Batch<Taken>>, PipeError> {
        Ok(self.0.recv().await?.map(|events| Batch {
            tags: vec![Taken; events.len()],
            events,
        }))
    }

    fn attempt(&self, _: &Taken) -> u32 {
        1
    }

    fn settle(&mut self, _acks: Vec<Taken>, nacks: Vec<Taken>) -> Result<(), PipeError> {
        match nacks.len() {
            0 => Ok(()),
            n => Err(PipeError::CannotRedeliver(n)),
        }
    }

    fn set_demand(&mut self, limit: Credit) {
        // Cannot fail: the driver never asks for nothing.
        let _ = self.0.set_prefetch(limit);
    }

    /// Events leave the pipe when received: there is no deadline to restart.
    fn progress(&mut self, _tags: &[Taken]) {}
}
