//! Where the demo commits: a SQLite file (the embedded default) or a PostgreSQL database,
//! with one table per mode so a compare run keeps every mode's rows.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use flowgate_sink::{PayloadKind, SinkUrl, TableSpec};

/// The demo's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://…`).
    Postgres(String),
}

impl Database {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; anything else is a SQLite file path
    /// whose directory must exist.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            if s.contains('?') {
                bail!(
                    "--db {s}: options after '?' are not supported here; the demo picks the table"
                );
            }
            return Ok(Database::Postgres(s.to_string()));
        }
        let path = PathBuf::from(s.strip_prefix("sqlite:").unwrap_or(s));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            bail!("--db {s}: directory {} does not exist", parent.display());
        }
        Ok(Database::Sqlite(path))
    }

    /// The default: `flowgate-demo/demo.db` in the system's temp dir.
    pub(crate) fn default_sqlite() -> Result<Self> {
        let dir = std::env::temp_dir().join("flowgate-demo");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Database::Sqlite(dir.join("demo.db")))
    }

    /// The sink URL for `table`.
    pub(crate) fn sink(&self, table: &str) -> SinkUrl {
        let spec = TableSpec {
            table: table.to_string(),
            payload: PayloadKind::Bytes,
        };
        match self {
            Database::Sqlite(path) => SinkUrl::Sqlite {
                path: path.clone(),
                spec,
                synchronous: Default::default(),
            },
            Database::Postgres(conn) => SinkUrl::Postgres {
                conn: conn.clone(),
                spec,
            },
        }
    }

    /// The form passed on a child's command line (`--db`), which [`Database::parse`] reads.
    pub(crate) fn arg(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(conn) => conn.clone(),
        }
    }

    /// The `--sink` URL a `flowgate consume` process takes for `table`.
    pub(crate) fn sink_arg(&self, table: &str) -> String {
        self.sink(table).to_arg()
    }

    /// Empties `table` (and its dead letters) before a run.
    pub(crate) fn reset(&self, table: &str) -> Result<()> {
        let url = self.sink(table);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(flowgate_sink::AnySink::open_fresh(&url))
            .map(drop)
            .with_context(|| format!("cannot prepare {url}"))
    }

    /// Rows in `table`, counted by the database. Runs its own small runtime: callers are
    /// synchronous supervisors.
    pub(crate) fn count(&self, table: &str) -> Result<u64> {
        let url = self.sink(table);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(flowgate_sink::count_committed(&url))
            .with_context(|| format!("cannot count the rows of {url}"))
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "SQLite {}", path.display()),
            Database::Postgres(_) => write!(f, "{}", self.sink("…")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_and_file_paths_are_told_apart() {
        assert!(matches!(
            Database::parse("postgres://u@h/db").unwrap(),
            Database::Postgres(_)
        ));
        assert_eq!(
            Database::parse("sqlite:x.db").unwrap(),
            Database::Sqlite("x.db".into())
        );
        assert_eq!(
            Database::parse("x.db").unwrap(),
            Database::Sqlite("x.db".into())
        );
        assert!(
            Database::parse("/no/such/dir/x.db")
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }
}
