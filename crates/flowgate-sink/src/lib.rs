//! Where consumed events end up. A sink commits a batch and says how many rows were new;
//! every sink is idempotent by [`EventId`](flowgate_core::EventId), so at-least-once delivery
//! yields exactly-once rows.
//!
//! | module | responsibility |
//! |---|---|
//! | [`url`] | parsing `sqlite:PATH`, `stdout`, `null` |
//! | [`sqlite`] | SQLite: WAL, one prepared statement, one transaction per batch |
//! | [`stdout`] | one JSON line per event |
//! | [`null`] | discards, for benchmarks |

#![forbid(unsafe_code)]

pub mod null;
pub mod sqlite;
pub mod stdout;
pub mod url;

use flowgate_core::Event;

pub use null::NullSink;
pub use sqlite::{SqliteSink, count_rows};
pub use stdout::StdoutSink;
pub use url::SinkUrl;

/// Why a sink could not commit. The batch is then not acknowledged and will be redelivered.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The database refused or failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Writing to a stream failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// The sink URL is not one flowgate knows.
    #[error("{0}")]
    BadUrl(String),
}

/// A place that commits batches of events.
pub trait Sink: Send {
    /// Commits `events` as one unit; returns how many were new (not already committed).
    /// When this returns `Ok`, the events are durable as far as this sink promises.
    fn write_batch(&mut self, events: &[Event]) -> Result<u64, SinkError>;
}

/// Opens the sink a URL names.
pub fn open(url: &SinkUrl) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match url {
        SinkUrl::Sqlite { path, table } => Box::new(SqliteSink::open(path, table)?),
        SinkUrl::Stdout => Box::new(StdoutSink::new()),
        SinkUrl::Null => Box::new(NullSink::default()),
    })
}
