//! The SQLite sink: a table keyed by (producer, seq), WAL mode, one prepared statement and one
//! transaction per batch. Idempotent: an id already present is left as it is.

use std::path::Path;

use flowgate_core::Event;
use rusqlite::{Connection, params};

use crate::{Sink, SinkError};

/// An open database and the table this sink writes.
pub struct SqliteSink {
    conn: Connection,
    insert: String,
}

impl SqliteSink {
    /// Opens (creating if needed) the database and the table; existing rows are kept.
    pub fn open(path: &Path, table: &str) -> Result<Self, SinkError> {
        let conn = Connection::open(path)?;
        // WAL + NORMAL: a committed transaction survives the process being killed; a power
        // loss may take the last ones.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 producer INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 created_us INTEGER NOT NULL,
                 committed_us INTEGER NOT NULL,
                 payload BLOB NOT NULL,
                 PRIMARY KEY (producer, seq)
             );"
        ))?;
        let insert = format!(
            "INSERT OR IGNORE INTO {table} (producer, seq, created_us, committed_us, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5)"
        );
        Ok(SqliteSink { conn, insert })
    }

    /// Opens the database with `table` emptied first (for runs that start afresh).
    pub fn create_fresh(path: &Path, table: &str) -> Result<Self, SinkError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {table};"))?;
        drop(conn);
        Self::open(path, table)
    }
}

/// SQLite integers are signed 64-bit; ids are stored bit for bit (ids above `i64::MAX` read
/// back negative in SQL, and map back exactly).
fn as_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn now_us() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

impl Sink for SqliteSink {
    fn write_batch(&mut self, events: &[Event]) -> Result<u64, SinkError> {
        let committed = as_sql(now_us());
        let tx = self.conn.transaction()?;
        let mut new_rows = 0u64;
        {
            let mut stmt = tx.prepare_cached(&self.insert)?;
            for e in events {
                new_rows += stmt.execute(params![
                    as_sql(e.id.producer),
                    as_sql(e.id.seq),
                    as_sql(e.created_us),
                    committed,
                    e.payload
                ])? as u64;
            }
        }
        tx.commit()?;
        Ok(new_rows)
    }
}

/// Rows in `table` of the database at `path`: what is really committed.
pub fn count_rows(path: &Path, table: &str) -> Result<u64, SinkError> {
    let conn = Connection::open(path)?;
    let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_core::EventId;

    fn event(producer: u64, seq: u64) -> Event {
        Event {
            id: EventId::new(producer, seq),
            key: None,
            created_us: 1,
            payload: vec![7; 16],
        }
    }

    #[test]
    fn a_redelivered_event_never_makes_a_second_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink = SqliteSink::open(&path, "events").unwrap();
        assert_eq!(sink.write_batch(&[event(1, 1), event(1, 2)]).unwrap(), 2);
        assert_eq!(sink.write_batch(&[event(1, 2), event(1, 3)]).unwrap(), 1);
        assert_eq!(count_rows(&path, "events").unwrap(), 3);
    }

    #[test]
    fn the_same_sequence_from_two_producers_is_two_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink = SqliteSink::open(&path, "events").unwrap();
        assert_eq!(
            sink.write_batch(&[event(1, 1), event(u64::MAX, 1)])
                .unwrap(),
            2
        );
    }

    #[test]
    fn open_keeps_rows_and_create_fresh_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        SqliteSink::open(&path, "events")
            .unwrap()
            .write_batch(&[event(1, 1)])
            .unwrap();
        drop(SqliteSink::open(&path, "events").unwrap());
        assert_eq!(count_rows(&path, "events").unwrap(), 1);
        drop(SqliteSink::create_fresh(&path, "events").unwrap());
        assert_eq!(count_rows(&path, "events").unwrap(), 0);
    }
}
