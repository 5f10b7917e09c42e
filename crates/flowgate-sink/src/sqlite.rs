//! The SQLite sink: a table keyed by (producer, seq), WAL mode, one prepared statement and one
//! transaction per batch. Idempotent: an id already present is left as it is. The id is the
//! event's origin ([`Event::origin`]): its own, or for an event a stage sent on, the chain's
//! first event's.
//!
//! A row the database refuses (with `payload=json`, a payload that is not JSON) fails only its
//! own statement: SQLite's default conflict handling aborts the statement, not the
//! transaction, so the rest of the batch still commits and the refused events are reported.
//!
//! An ack means the row is durable: commits sync fully by default (`synchronous=FULL`), and
//! before each commit the sink checks that its file is still the one it opened (same device
//! and inode), so a database deleted or replaced under it fails loudly instead of taking
//! commits into an unlinked file.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flowgate_core::Event;
use rusqlite::{Connection, params};

use crate::url::{PayloadKind, Synchronous, TableSpec};
use crate::{Committed, DeadLetter, SinkError, as_sql, now_us};

/// An open database and the table this sink writes.
pub struct SqliteSink {
    conn: Connection,
    path: PathBuf,
    /// The file's device and inode when opened.
    identity: (u64, u64),
    insert: String,
    dead_insert: String,
    payload: PayloadKind,
}

impl SqliteSink {
    /// Opens (creating if needed) the database, the table and its dead-letter table; existing
    /// rows are kept.
    pub fn open(path: &Path, spec: &TableSpec, sync: Synchronous) -> Result<Self, SinkError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: each commit is synced before it returns, so an ack survives a power loss.
        // NORMAL (opt-in): synced at checkpoints; survives the process being killed only.
        let level = match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", level)?;
        let meta = std::fs::metadata(path)?;
        // Another connection holding the write lock (a long transaction) makes a commit wait
        // up to this long rather than fail at once.
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let table = &spec.table;
        let payload_column = match spec.payload {
            PayloadKind::Bytes => "payload BLOB NOT NULL",
            PayloadKind::Json => "payload TEXT NOT NULL CHECK (json_valid(payload))",
        };
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 producer INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 created_us INTEGER NOT NULL,
                 committed_us INTEGER NOT NULL,
                 {payload_column},
                 PRIMARY KEY (producer, seq)
             );
             CREATE TABLE IF NOT EXISTS {table}_dead_letters (
                 producer INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 attempts INTEGER NOT NULL,
                 reason TEXT NOT NULL,
                 failed_us INTEGER NOT NULL,
                 payload BLOB NOT NULL,
                 PRIMARY KEY (producer, seq)
             );"
        ))?;
        Ok(SqliteSink {
            conn,
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
            // ON CONFLICT on the key only: `OR IGNORE` would also swallow CHECK violations
            // (a bad JSON payload) and lose the row silently.
            insert: format!(
                "INSERT INTO {table} (producer, seq, created_us, committed_us, payload) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (producer, seq) DO NOTHING"
            ),
            dead_insert: format!(
                "INSERT INTO {table}_dead_letters \
                 (producer, seq, attempts, reason, failed_us, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (producer, seq) DO NOTHING"
            ),
            payload: spec.payload,
        })
    }

    /// Opens the database with `table` emptied first (for runs that start afresh).
    pub fn create_fresh(
        path: &Path,
        spec: &TableSpec,
        sync: Synchronous,
    ) -> Result<Self, SinkError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {t}; DROP TABLE IF EXISTS {t}_dead_letters;",
            t = spec.table
        ))?;
        drop(conn);
        Self::open(path, spec, sync)
    }

    /// Fails if the file at the sink's path is no longer the one it opened.
    fn check_file(&self) -> Result<(), SinkError> {
        let what = match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.identity => return Ok(()),
            Ok(m) => format!("was replaced (inode {}, now {})", self.identity.1, m.ino()),
            Err(_) => "was deleted".to_string(),
        };
        Err(SinkError::Replaced {
            path: self.path.display().to_string(),
            what,
        })
    }

    /// Commits `events` in one transaction; refused rows are reported, the rest commit.
    pub fn write_batch(&mut self, events: &[Event]) -> Result<Committed, SinkError> {
        self.check_file()?;
        let committed_us = as_sql(now_us());
        let tx = self.conn.transaction()?;
        let mut out = Committed::default();
        {
            let mut stmt = tx.prepare_cached(&self.insert)?;
            for (i, e) in events.iter().enumerate() {
                // Keyed by the chain's first event, so a stage's resend lands once.
                let id = e.origin();
                let (producer, seq, created) =
                    (as_sql(id.producer), as_sql(id.seq), as_sql(e.created_us));
                let result = match self.payload {
                    PayloadKind::Bytes => {
                        stmt.execute(params![producer, seq, created, committed_us, e.payload])
                    }
                    PayloadKind::Json => match std::str::from_utf8(&e.payload) {
                        Ok(text) => {
                            stmt.execute(params![producer, seq, created, committed_us, text])
                        }
                        Err(_) => {
                            out.rejected
                                .push((i, "payload is not UTF-8, so not JSON".into()));
                            continue;
                        }
                    },
                };
                match result {
                    Ok(n) => out.new_rows += n as u64,
                    Err(rusqlite::Error::SqliteFailure(err, msg))
                        if err.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        let why = msg.unwrap_or_else(|| err.to_string());
                        out.rejected
                            .push((i, format!("constraint violated: {why}")));
                    }
                    Err(other) => return Err(other.into()),
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Records dead letters in `<table>_dead_letters`.
    pub fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), SinkError> {
        self.check_file()?;
        let failed_us = as_sql(now_us());
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&self.dead_insert)?;
            for l in letters {
                stmt.execute(params![
                    as_sql(l.event.origin().producer),
                    as_sql(l.event.origin().seq),
                    l.attempts,
                    l.reason,
                    failed_us,
                    l.event.payload
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
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

    fn event(producer: u64, seq: u64, payload: &[u8]) -> Event {
        Event {
            id: EventId::new(producer, seq),
            key: None,
            created_us: 1,
            payload: payload.to_vec(),
        }
    }

    fn spec(payload: PayloadKind) -> TableSpec {
        TableSpec {
            table: "events".into(),
            payload,
        }
    }

    #[test]
    fn a_redelivered_event_never_makes_a_second_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink =
            SqliteSink::open(&path, &spec(PayloadKind::Bytes), Synchronous::Full).unwrap();
        assert_eq!(
            sink.write_batch(&[event(1, 1, b"a"), event(1, 2, b"b")])
                .unwrap()
                .new_rows,
            2
        );
        assert_eq!(
            sink.write_batch(&[event(1, 2, b"b"), event(1, 3, b"c")])
                .unwrap()
                .new_rows,
            1
        );
        assert_eq!(count_rows(&path, "events").unwrap(), 3);
    }

    #[test]
    fn events_a_stage_sent_twice_are_one_row_keyed_by_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink =
            SqliteSink::open(&path, &spec(PayloadKind::Bytes), Synchronous::Full).unwrap();
        let origin = EventId::new(0x2a, 5);
        // The same event relayed before and after the stage restarted: new ids, one origin.
        let sent = |producer, seq| Event {
            key: Some(origin.origin_key()),
            ..event(producer, seq, b"x")
        };
        assert_eq!(sink.write_batch(&[sent(9, 1)]).unwrap().new_rows, 1);
        assert_eq!(
            sink.write_batch(&[sent(10, 1), sent(9, 2)])
                .unwrap()
                .new_rows,
            0
        );
        let conn = rusqlite::Connection::open(&path).unwrap();
        let row: (i64, i64) = conn
            .query_row("SELECT producer, seq FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(row, (0x2a, 5), "keyed by the origin, not the relayed ids");
    }

    #[test]
    fn the_same_sequence_from_two_producers_is_two_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink =
            SqliteSink::open(&path, &spec(PayloadKind::Bytes), Synchronous::Full).unwrap();
        let c = sink
            .write_batch(&[event(1, 1, b"x"), event(u64::MAX, 1, b"x")])
            .unwrap();
        assert_eq!(c.new_rows, 2);
    }

    #[test]
    fn a_bad_json_payload_is_refused_alone_and_the_rest_of_the_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink =
            SqliteSink::open(&path, &spec(PayloadKind::Json), Synchronous::Full).unwrap();
        let batch = [
            event(1, 1, br#"{"a":1}"#),
            event(1, 2, b"{not json"),
            event(1, 3, b"[2]"),
            event(1, 4, &[0xff]),
        ];
        let c = sink.write_batch(&batch).unwrap();
        assert_eq!(c.new_rows, 2);
        let refused: Vec<usize> = c.rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(refused, vec![1, 3]);
        assert!(c.rejected[0].1.contains("constraint"), "{:?}", c.rejected);
        assert_eq!(count_rows(&path, "events").unwrap(), 2);
    }

    #[test]
    fn dead_letters_keep_the_reason_and_the_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink =
            SqliteSink::open(&path, &spec(PayloadKind::Json), Synchronous::Full).unwrap();
        let bad = event(1, 2, b"{not json");
        let letter = DeadLetter {
            event: &bad,
            attempts: 3,
            reason: "constraint violated: CHECK",
        };
        sink.dead_letter(std::slice::from_ref(&letter)).unwrap();
        sink.dead_letter(&[letter]).unwrap();
        let conn = Connection::open(&path).unwrap();
        let (n, attempts, reason): (i64, i64, String) = conn
            .query_row(
                "SELECT COUNT(*), MAX(attempts), MAX(reason) FROM events_dead_letters",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (n, attempts, reason.as_str()),
            (1, 3, "constraint violated: CHECK")
        );
    }

    #[test]
    fn commits_sync_fully_unless_normal_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let level = |sync| {
            let path = dir.path().join(format!("{sync:?}.db"));
            let sink = SqliteSink::open(&path, &spec(PayloadKind::Bytes), sync).unwrap();
            let n: i64 = sink
                .conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            n
        };
        // SQLite numbers them OFF 0, NORMAL 1, FULL 2.
        assert_eq!(level(Synchronous::Full), 2);
        assert_eq!(level(Synchronous::Normal), 1);
    }

    #[test]
    fn a_database_deleted_or_replaced_under_the_sink_fails_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut sink =
            SqliteSink::open(&path, &spec(PayloadKind::Bytes), Synchronous::Full).unwrap();
        sink.write_batch(&[event(1, 1, b"a")]).unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = sink
            .write_batch(&[event(1, 2, b"b")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.db was deleted since the sink opened it"),
            "{err}"
        );
        // A new file at the same path (restored from a backup, say) is not the one it opened.
        std::fs::write(&path, b"").unwrap();
        let err = sink
            .write_batch(&[event(1, 2, b"b")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("was replaced (inode"), "{err}");
    }

    #[test]
    fn open_keeps_rows_and_create_fresh_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = spec(PayloadKind::Bytes);
        SqliteSink::open(&path, &s, Synchronous::Full)
            .unwrap()
            .write_batch(&[event(1, 1, b"x")])
            .unwrap();
        drop(SqliteSink::open(&path, &s, Synchronous::Full).unwrap());
        assert_eq!(count_rows(&path, "events").unwrap(), 1);
        drop(SqliteSink::create_fresh(&path, &s, Synchronous::Full).unwrap());
        assert_eq!(count_rows(&path, "events").unwrap(), 0);
    }
}
