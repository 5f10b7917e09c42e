//! The null sink: counts and discards, for benchmarks and for measuring the pipe alone.

use flowgate_core::Event;

use crate::{Committed, SinkError};

/// Discards every event; every event counts as new.
#[derive(Debug, Default)]
pub struct NullSink {
    /// Events discarded so far.
    pub discarded: u64,
}

impl NullSink {
    /// Discards `events`.
    pub fn write_batch(&mut self, events: &[Event]) -> Result<Committed, SinkError> {
        self.discarded += events.len() as u64;
        Ok(Committed {
            new_rows: events.len() as u64,
            rejected: Vec::new(),
        })
    }
}
