//! Where consumed events end up. A sink commits a batch and says how many rows were new and
//! which events the database refused (and why); every database sink is idempotent by
//! [`EventId`](flowgate_core::EventId), so at-least-once delivery yields exactly-once rows,
//! and keeps a dead-letter table for events that keep being refused.
//!
//! | module | responsibility |
//! |---|---|
//! | [`url`] | parsing `sqlite:PATH`, `postgres://…`, `stdout`, `null` and their options |
//! | [`sqlite`] | SQLite: WAL, one prepared statement, one transaction per batch |
//! | [`postgres`] | PostgreSQL: binary COPY into a staging table, then an idempotent insert |
//! | [`stdout`] | one JSON line per event |
//! | [`null`] | discards, for benchmarks |
//! | [`driver`] | [`SinkDriver`]: the feedback loop from a source through a sink, paced by commit latency |

#![forbid(unsafe_code)]

pub mod driver;
pub mod null;
pub mod postgres;
pub mod sqlite;
pub mod stdout;
pub mod topic;
pub mod url;

use flowgate_core::Event;

pub use driver::{DriverConfig, DriverError, DriverStats, Outcome, SinkDriver, Source, Stage};
pub use null::NullSink;
pub use postgres::PostgresSink;
pub use sqlite::{SqliteSink, count_rows};
pub use stdout::StdoutSink;
pub use topic::{Exec, TopicSink, Transform, TransformFn, Transformed};
pub use url::{PayloadKind, SinkUrl, Synchronous, TableSpec};

/// Why a sink could not commit at all. The batch is then not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// SQLite refused or failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Writing to a stream failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// The sink URL is not one flowgate knows.
    #[error("{0}")]
    BadUrl(String),
    /// The SQLite file was deleted or replaced after the sink opened it: commits would go to
    /// a file nobody else can see, so the sink stops instead of acknowledging them.
    #[error("the database file {path} {what} since the sink opened it; refusing to commit into it")]
    Replaced {
        /// The file.
        path: String,
        /// "was deleted" or "was replaced (inode A, now B)".
        what: String,
    },
    /// A stage could not send on to its next topic, or its `--exec` child failed.
    #[error("stage: {0}")]
    Topic(String),
}

impl SinkError {
    /// Whether the same commit may succeed if tried again later: a connection lost or
    /// refused, a server shutting down or starting, a full disk, a lock or statement timeout,
    /// a deadlock or serialization failure. Anything else (bad credentials, a database or
    /// table it may not use, a replaced file, a bad URL) would fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                )
            ),
            SinkError::Postgres(e) => match e.code() {
                // No SQLSTATE: the connection failed or closed, not the statement.
                None => true,
                Some(state) => {
                    let code = state.code();
                    // 08: connection exception; 53: insufficient resources (disk full, out of
                    // memory, too many connections); 57: operator intervention (shutting
                    // down, cannot connect now, statement timeout); 40: rolled back
                    // (deadlock, serialization); 55P03: lock not available.
                    ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c)) || code == "55P03"
                }
            },
            SinkError::Io(_)
            | SinkError::BadUrl(_)
            | SinkError::Replaced { .. }
            | SinkError::Topic(_) => false,
        }
    }
}

/// What a committed batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Rows that were new (the rest of the accepted events were already there).
    pub new_rows: u64,
    /// Events the database refused, by index in the batch, with its reason. Everything else
    /// in the batch is committed.
    pub rejected: Vec<(usize, String)>,
}

/// An event that was refused too many times, with why and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter<'a> {
    /// The event.
    pub event: &'a Event,
    /// How many deliveries were refused.
    pub attempts: u32,
    /// The database's last refusal.
    pub reason: &'a str,
}

/// Any sink flowgate can open. An enum rather than a trait object: the database sinks are
/// async (PostgreSQL) or blocking (SQLite, run in place), and one `match` covers both.
pub enum AnySink {
    /// See [`SqliteSink`].
    Sqlite(SqliteSink),
    /// See [`PostgresSink`].
    Postgres(PostgresSink),
    /// See [`StdoutSink`].
    Stdout(StdoutSink),
    /// See [`NullSink`].
    Null(NullSink),
    /// Another topic: a stage of a chain ([`Stage`]).
    Topic(TopicSink),
}

impl AnySink {
    /// Opens the sink a URL names, creating its tables if missing.
    pub async fn open(url: &SinkUrl) -> Result<AnySink, SinkError> {
        Ok(match url {
            SinkUrl::Sqlite {
                path,
                spec,
                synchronous,
            } => AnySink::Sqlite(SqliteSink::open(path, spec, *synchronous)?),
            SinkUrl::Postgres { conn, spec } => {
                AnySink::Postgres(PostgresSink::connect(conn, spec).await?)
            }
            SinkUrl::Stdout => AnySink::Stdout(StdoutSink::new()),
            SinkUrl::Null => AnySink::Null(NullSink::default()),
        })
    }

    /// Opens the sink with its tables emptied first, for runs that start afresh (the demo).
    pub async fn open_fresh(url: &SinkUrl) -> Result<AnySink, SinkError> {
        match url {
            SinkUrl::Sqlite {
                path,
                spec,
                synchronous,
            } => Ok(AnySink::Sqlite(SqliteSink::create_fresh(
                path,
                spec,
                *synchronous,
            )?)),
            SinkUrl::Postgres { conn, spec } => {
                PostgresSink::drop_tables(conn, spec).await?;
                Self::open(url).await
            }
            _ => Self::open(url).await,
        }
    }

    /// Commits `events`: every event the database accepts is durable as far as this sink
    /// promises when this returns `Ok`; the refused ones are listed.
    ///
    /// SQLite runs in place on the calling thread (call it from a multi-threaded runtime).
    pub async fn write_batch(&mut self, events: &[Event]) -> Result<Committed, SinkError> {
        match self {
            AnySink::Sqlite(s) => tokio::task::block_in_place(|| s.write_batch(events)),
            AnySink::Postgres(s) => s.write_batch(events).await,
            AnySink::Stdout(s) => s.write_batch(events),
            AnySink::Null(s) => s.write_batch(events),
            AnySink::Topic(s) => s.write_batch(events).await,
        }
    }

    /// After a transient failure: connects again if the database connection is gone
    /// (PostgreSQL); the other sinks need nothing.
    pub async fn recover(&mut self) -> Result<(), SinkError> {
        match self {
            AnySink::Postgres(s) => s.reconnect().await,
            _ => Ok(()),
        }
    }

    /// Records events that will not be retried, with their reasons. Idempotent by event id.
    /// Sinks without a table (stdout, null) report them as `tracing` warnings.
    pub async fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), SinkError> {
        match self {
            AnySink::Sqlite(s) => tokio::task::block_in_place(|| s.dead_letter(letters)),
            AnySink::Postgres(s) => s.dead_letter(letters).await,
            AnySink::Stdout(_) | AnySink::Null(_) | AnySink::Topic(_) => {
                for l in letters {
                    tracing::warn!(
                        event = %l.event.id,
                        attempts = l.attempts,
                        "dead letter {} after {} attempts: {}",
                        l.event.id,
                        l.attempts,
                        l.reason
                    );
                }
                Ok(())
            }
        }
    }
}

/// Rows committed in the sink's table, counted in the database itself (0 for stdout/null,
/// which keep no rows).
pub async fn count_committed(url: &SinkUrl) -> Result<u64, SinkError> {
    match url {
        SinkUrl::Sqlite { path, spec, .. } => count_rows(path, &spec.table),
        SinkUrl::Postgres { conn, spec } => postgres::count_rows(conn, &spec.table).await,
        SinkUrl::Stdout | SinkUrl::Null => Ok(0),
    }
}

/// The current time in microseconds since the Unix epoch (commit stamps).
pub(crate) fn now_us() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

/// SQL integers are signed 64-bit; ids are stored bit for bit (ids above `i64::MAX` read
/// back negative in SQL, and map back exactly).
pub(crate) fn as_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}
