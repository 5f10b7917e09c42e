//! The demo's SQLite sink: one table per mode keyed by event id, batched transactions with a
//! prepared statement, WAL mode. Idempotent: a redelivered id never makes a second row.

use std::path::Path;

use anyhow::{Context, Result};
use flowgate_core::Event;
use rusqlite::{Connection, params};

/// An open database and the table this run writes.
pub(crate) struct SqliteSink {
    conn: Connection,
    table: String,
}

impl SqliteSink {
    /// Opens (creating if needed) the database and starts `table` afresh.
    pub(crate) fn create(path: &Path, table: &str) -> Result<Self> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
        // WAL + NORMAL: a commit survives the process being killed (what the demo needs),
        // and a power loss may lose the last transactions (stated in the docs).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {table};
             CREATE TABLE {table} (
                 id INTEGER PRIMARY KEY,
                 created_us INTEGER NOT NULL,
                 committed_us INTEGER NOT NULL,
                 payload BLOB NOT NULL
             );"
        ))
        .with_context(|| format!("cannot create table {table} in {}", path.display()))?;
        Ok(SqliteSink {
            conn,
            table: table.to_string(),
        })
    }

    /// Inserts a batch in one transaction; an id already present is left as it is.
    /// Returns how many rows were new.
    pub(crate) fn write_batch(&mut self, events: &[Event], committed_us: u64) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let mut new_rows = 0;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO {} (id, created_us, committed_us, payload) VALUES (?1, ?2, ?3, ?4)",
                self.table
            ))?;
            for e in events {
                let id = i64::try_from(e.id).context("event id does not fit SQLite's INTEGER")?;
                let created = i64::try_from(e.created_us).unwrap_or(i64::MAX);
                let committed = i64::try_from(committed_us).unwrap_or(i64::MAX);
                new_rows += stmt.execute(params![id, created, committed, e.payload])? as u64;
            }
        }
        tx.commit().context("SQLite commit failed")?;
        Ok(new_rows)
    }
}

/// Rows in `table` of the database at `path`: what is really committed.
pub(crate) fn count_rows(path: &Path, table: &str) -> Result<u64> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
    let n: i64 = conn
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .with_context(|| format!("cannot count rows of {table} in {}", path.display()))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64) -> Event {
        Event {
            id,
            key: None,
            created_us: 1,
            payload: vec![7; 16],
        }
    }

    #[test]
    fn a_redelivered_event_never_makes_a_second_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink = SqliteSink::create(&path, "events_test").unwrap();
        assert_eq!(sink.write_batch(&[event(1), event(2)], 5).unwrap(), 2);
        assert_eq!(sink.write_batch(&[event(2), event(3)], 6).unwrap(), 1);
        assert_eq!(count_rows(&path, "events_test").unwrap(), 3);
    }

    #[test]
    fn create_starts_the_table_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink = SqliteSink::create(&path, "events_test").unwrap();
        sink.write_batch(&[event(1)], 5).unwrap();
        drop(sink);
        let _again = SqliteSink::create(&path, "events_test").unwrap();
        assert_eq!(count_rows(&path, "events_test").unwrap(), 0);
    }
}
