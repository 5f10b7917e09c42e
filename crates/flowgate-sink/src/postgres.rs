//! The PostgreSQL sink: each batch is copied with binary `COPY` into a session-local staging
//! table, then moved into the events table with `INSERT … ON CONFLICT DO NOTHING` in the same
//! transaction, so a redelivered event never makes a second row and the whole batch costs two
//! round trips.
//!
//! If the move fails on a data error (with `payload=json`, a payload that is not JSON), the
//! batch is retried row by row, each under a savepoint, so the healthy rows commit and only
//! the refused ones are reported.

use std::pin::pin;

use flowgate_core::Event;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use crate::url::{PayloadKind, TableSpec};
use crate::{Committed, DeadLetter, SinkError, as_sql, now_us};

/// A connection and the statements for one table.
pub struct PostgresSink {
    /// The connection string and table, to connect again after the server went away.
    conn: String,
    spec: TableSpec,
    client: Client,
    connection: tokio::task::JoinHandle<()>,
    copy: String,
    move_staged: String,
    insert_row: String,
    dead_insert: String,
}

impl PostgresSink {
    /// Connects and creates the table, its dead-letter table and the staging table if missing.
    pub async fn connect(conn: &str, spec: &TableSpec) -> Result<Self, SinkError> {
        let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
        let connection = tokio::spawn(async move {
            // The connection ends when the client is dropped, or with an error every later
            // query also reports; nothing to add here.
            let _ = connection.await;
        });
        let table = &spec.table;
        let (column, from_bytes) = match spec.payload {
            PayloadKind::Bytes => ("BYTEA", "payload"),
            PayloadKind::Json => ("JSONB", "convert_from(payload, 'UTF8')::jsonb"),
        };
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                     producer BIGINT NOT NULL,
                     seq BIGINT NOT NULL,
                     created_us BIGINT NOT NULL,
                     committed_us BIGINT NOT NULL,
                     payload {column} NOT NULL,
                     PRIMARY KEY (producer, seq)
                 );
                 CREATE TABLE IF NOT EXISTS {table}_dead_letters (
                     producer BIGINT NOT NULL,
                     seq BIGINT NOT NULL,
                     attempts INTEGER NOT NULL,
                     reason TEXT NOT NULL,
                     failed_us BIGINT NOT NULL,
                     payload BYTEA NOT NULL,
                     PRIMARY KEY (producer, seq)
                 );
                 CREATE TEMP TABLE IF NOT EXISTS {table}_staging (
                     producer BIGINT NOT NULL,
                     seq BIGINT NOT NULL,
                     created_us BIGINT NOT NULL,
                     payload BYTEA NOT NULL
                 ) ON COMMIT DELETE ROWS;"
            ))
            .await?;
        Ok(PostgresSink {
            conn: conn.to_string(),
            spec: spec.clone(),
            client,
            connection,
            copy: format!(
                "COPY {table}_staging (producer, seq, created_us, payload) FROM STDIN BINARY"
            ),
            move_staged: format!(
                "INSERT INTO {table} (producer, seq, created_us, committed_us, payload) \
                 SELECT producer, seq, created_us, $1, {from_bytes} FROM {table}_staging \
                 ON CONFLICT DO NOTHING"
            ),
            insert_row: format!(
                "INSERT INTO {table} (producer, seq, created_us, committed_us, payload) \
                 VALUES ($1, $2, $3, $4, {}) ON CONFLICT DO NOTHING",
                from_bytes.replace("payload", "$5::bytea")
            ),
            dead_insert: format!(
                "INSERT INTO {table}_dead_letters (producer, seq, attempts, reason, failed_us, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
            ),
        })
    }

    /// Connects again if the connection is gone (the server restarted, the network failed);
    /// a live connection is left alone.
    pub async fn reconnect(&mut self) -> Result<(), SinkError> {
        if self.client.is_closed() {
            *self = PostgresSink::connect(&self.conn, &self.spec).await?;
        }
        Ok(())
    }

    /// Drops the table and its dead letters (for runs that start afresh).
    pub async fn drop_tables(conn: &str, spec: &TableSpec) -> Result<(), SinkError> {
        let client = connect(conn).await?;
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {t}, {t}_dead_letters",
                t = spec.table
            ))
            .await?;
        Ok(())
    }

    /// Commits `events`; refused rows are reported, the rest commit.
    pub async fn write_batch(&mut self, events: &[Event]) -> Result<Committed, SinkError> {
        let committed_us = as_sql(now_us());
        match self.copy_and_move(events, committed_us).await {
            Ok(new_rows) => Ok(Committed {
                new_rows,
                rejected: Vec::new(),
            }),
            Err(e) if is_data_error(&e) => self.row_by_row(events, committed_us).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn copy_and_move(
        &mut self,
        events: &[Event],
        committed_us: i64,
    ) -> Result<u64, tokio_postgres::Error> {
        let tx = self.client.transaction().await?;
        let sink = tx.copy_in(&self.copy).await?;
        let mut writer = pin!(BinaryCopyInWriter::new(
            sink,
            &[Type::INT8, Type::INT8, Type::INT8, Type::BYTEA]
        ));
        for e in events {
            // Keyed by the chain's first event, so a stage's resend lands once.
            let id = e.origin();
            let row: [&(dyn ToSql + Sync); 4] = [
                &as_sql(id.producer),
                &as_sql(id.seq),
                &as_sql(e.created_us),
                &e.payload,
            ];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        let moved = tx.execute(&self.move_staged, &[&committed_us]).await?;
        tx.commit().await?;
        Ok(moved)
    }

    async fn row_by_row(
        &mut self,
        events: &[Event],
        committed_us: i64,
    ) -> Result<Committed, SinkError> {
        let mut tx = self.client.transaction().await?;
        let mut out = Committed::default();
        for (i, e) in events.iter().enumerate() {
            let sp = tx.savepoint("flowgate_row").await?;
            let id = e.origin();
            let params: [&(dyn ToSql + Sync); 5] = [
                &as_sql(id.producer),
                &as_sql(id.seq),
                &as_sql(e.created_us),
                &committed_us,
                &e.payload,
            ];
            match sp.execute(&self.insert_row, &params).await {
                Ok(n) => {
                    sp.commit().await?;
                    out.new_rows += n;
                }
                Err(err) if is_data_error(&err) => {
                    let reason = err
                        .as_db_error()
                        .map_or_else(|| err.to_string(), |d| d.message().to_string());
                    sp.rollback().await?;
                    out.rejected.push((i, reason));
                }
                Err(err) => return Err(err.into()),
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records dead letters in `<table>_dead_letters`.
    pub async fn dead_letter(&mut self, letters: &[DeadLetter<'_>]) -> Result<(), SinkError> {
        let failed_us = as_sql(now_us());
        let tx = self.client.transaction().await?;
        for l in letters {
            let attempts = i32::try_from(l.attempts).unwrap_or(i32::MAX);
            tx.execute(
                &self.dead_insert,
                &[
                    &as_sql(l.event.origin().producer),
                    &as_sql(l.event.origin().seq),
                    &attempts,
                    &l.reason,
                    &failed_us,
                    &l.event.payload,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Rows in `table`.
pub(crate) async fn count_rows(conn: &str, table: &str) -> Result<u64, SinkError> {
    let client = connect(conn).await?;
    let n: i64 = client
        .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .await?
        .get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A client whose connection runs on a spawned task until the client is dropped.
async fn connect(conn: &str) -> Result<Client, SinkError> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Drop for PostgresSink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Data exceptions (class 22: bad JSON, bad encoding) and integrity violations (class 23):
/// the row is at fault, not the database.
fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c: &SqlState| c.code().starts_with("22") || c.code().starts_with("23"))
}
