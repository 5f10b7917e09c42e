//! The null sink: counts and discards, for benchmarks and for measuring the pipe alone.

use flowgate_core::Event;

use crate::{Sink, SinkError};

/// Discards every event; every event counts as new.
#[derive(Debug, Default)]
pub struct NullSink {
    /// Events discarded so far.
    pub discarded: u64,
}

impl Sink for NullSink {
    fn write_batch(&mut self, events: &[Event]) -> Result<u64, SinkError> {
        self.discarded += events.len() as u64;
        Ok(events.len() as u64)
    }
}
