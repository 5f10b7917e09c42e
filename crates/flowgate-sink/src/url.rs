//! Sink URLs: `sqlite:PATH`, `postgres://…` (or `postgresql://…`), `stdout`, `null`. SQLite
//! and PostgreSQL take two options after `?`: `table=NAME` (default `events`) and
//! `payload=bytes|json` (default `bytes`; `json` stores payloads in a JSON column, so a
//! payload that is not JSON is refused by the database and, after retries, dead-lettered).
//! SQLite also takes `synchronous=full|normal` (default `full`: a commit, and so an ack, has
//! survived a power loss; `normal` survives the process being killed but may lose the last
//! commits to a power loss, for more speed).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::SinkError;

/// The default table events land in.
pub const DEFAULT_TABLE: &str = "events";

/// How payloads are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadKind {
    /// Opaque bytes (BLOB / BYTEA): every payload is storable.
    #[default]
    Bytes,
    /// A JSON document (SQLite TEXT checked by `json_valid`, PostgreSQL JSONB).
    Json,
}

/// Table name and payload kind, shared by the database sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table (created if missing); its dead letters go to `<table>_dead_letters`.
    pub table: String,
    /// How payloads are stored.
    pub payload: PayloadKind,
}

/// How hard SQLite syncs a commit (its `synchronous` pragma, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is synced to disk before it returns: an ack means the row survives a
    /// power loss.
    #[default]
    Full,
    /// Commits are synced at checkpoints: they survive the process being killed, but a power
    /// loss may take the last ones, whose events were already acked.
    Normal,
}

/// A parsed sink URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkUrl {
    /// A SQLite database file.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Where in it.
        spec: TableSpec,
        /// How hard a commit syncs.
        synchronous: Synchronous,
    },
    /// A PostgreSQL database.
    Postgres {
        /// The connection string for tokio-postgres, without flowgate's own options.
        conn: String,
        /// Where in it.
        spec: TableSpec,
    },
    /// JSON lines on standard output.
    Stdout,
    /// Discard everything.
    Null,
}

impl SinkUrl {
    /// The same sink with another table.
    pub fn with_table(&self, table: &str) -> SinkUrl {
        let mut url = self.clone();
        if let SinkUrl::Sqlite { spec, .. } | SinkUrl::Postgres { spec, .. } = &mut url {
            spec.table = table.to_string();
        }
        url
    }

    /// The URL as text that parses back to the same sink, password included: for handing to
    /// a child process, never for display.
    pub fn to_arg(&self) -> String {
        let options = |spec: &TableSpec| {
            let payload = if spec.payload == PayloadKind::Json {
                "&payload=json"
            } else {
                ""
            };
            format!("table={}{payload}", spec.table)
        };
        match self {
            SinkUrl::Sqlite { path, spec, .. } => {
                format!("sqlite:{}?{}", path.display(), options(spec))
            }
            SinkUrl::Postgres { conn, spec } => {
                let sep = if conn.contains('?') { '&' } else { '?' };
                format!("{conn}{sep}{}", options(spec))
            }
            SinkUrl::Stdout => "stdout".into(),
            SinkUrl::Null => "null".into(),
        }
    }
}

const USAGE: &str = "use sqlite:PATH, postgres://USER@HOST:PORT/DB, stdout or null (options: ?table=NAME&payload=bytes|json, and for SQLite &synchronous=full|normal)";

impl FromStr for SinkUrl {
    type Err = SinkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => return Ok(SinkUrl::Stdout),
            "null" => return Ok(SinkUrl::Null),
            _ => {}
        }
        let (base, query) = s.split_once('?').unwrap_or((s, ""));
        let mut spec = TableSpec {
            table: DEFAULT_TABLE.to_string(),
            payload: PayloadKind::Bytes,
        };
        let mut passthrough = Vec::new();
        let mut synchronous = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("synchronous", "full")) => synchronous = Some(Synchronous::Full),
                Some(("synchronous", "normal")) => synchronous = Some(Synchronous::Normal),
                Some(("synchronous", other)) => {
                    return Err(SinkError::BadUrl(format!(
                        "synchronous={other} in '{s}': use synchronous=full or synchronous=normal"
                    )));
                }
                Some(("table", t)) => spec.table = valid_table(s, t)?,
                Some(("payload", "bytes")) => spec.payload = PayloadKind::Bytes,
                Some(("payload", "json")) => spec.payload = PayloadKind::Json,
                Some(("payload", other)) => {
                    return Err(SinkError::BadUrl(format!(
                        "payload={other} in '{s}': use payload=bytes or payload=json"
                    )));
                }
                _ => passthrough.push(pair),
            }
        }
        if let Some(path) = base.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(SinkError::BadUrl(format!(
                    "'{s}' names no file; use sqlite:PATH"
                )));
            }
            if let Some(p) = passthrough.first() {
                return Err(SinkError::BadUrl(format!(
                    "unknown option '{p}' in '{s}'; {USAGE}"
                )));
            }
            return Ok(SinkUrl::Sqlite {
                path: PathBuf::from(path),
                spec,
                synchronous: synchronous.unwrap_or_default(),
            });
        }
        if synchronous.is_some() {
            return Err(SinkError::BadUrl(format!(
                "synchronous= in '{s}' is a SQLite option; {USAGE}"
            )));
        }
        if base.starts_with("postgres://") || base.starts_with("postgresql://") {
            let conn = if passthrough.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", passthrough.join("&"))
            };
            return Ok(SinkUrl::Postgres { conn, spec });
        }
        Err(SinkError::BadUrl(format!("unknown sink '{s}'; {USAGE}")))
    }
}

fn valid_table(url: &str, table: &str) -> Result<String, SinkError> {
    let ok = !table.is_empty()
        && table.len() <= 48
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !table.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        return Err(SinkError::BadUrl(format!(
            "table '{table}' in '{url}' must be 1-48 of a-z 0-9 _, not starting with a digit"
        )));
    }
    Ok(table.to_string())
}

impl fmt::Display for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = |p: PayloadKind| {
            if p == PayloadKind::Json {
                "&payload=json"
            } else {
                ""
            }
        };
        match self {
            SinkUrl::Sqlite {
                path,
                spec,
                synchronous,
            } => {
                let sync = match synchronous {
                    Synchronous::Full => "",
                    Synchronous::Normal => "&synchronous=normal",
                };
                write!(
                    f,
                    "sqlite:{}?table={}{}{sync}",
                    path.display(),
                    spec.table,
                    kind(spec.payload)
                )
            }
            // The connection string may hold a password: show only where it points.
            SinkUrl::Postgres { conn, spec } => {
                let host = conn.rsplit_once('@').map_or(conn.as_str(), |(_, h)| h);
                let host = host
                    .trim_start_matches("postgres://")
                    .trim_start_matches("postgresql://");
                write!(
                    f,
                    "postgres://…@{host} table {}{}",
                    spec.table,
                    kind(spec.payload)
                )
            }
            SinkUrl::Stdout => f.write_str("stdout"),
            SinkUrl::Null => f.write_str("null"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(table: &str, payload: PayloadKind) -> TableSpec {
        TableSpec {
            table: table.into(),
            payload,
        }
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!("null".parse::<SinkUrl>().unwrap(), SinkUrl::Null);
        assert_eq!("stdout".parse::<SinkUrl>().unwrap(), SinkUrl::Stdout);
        assert_eq!(
            "sqlite:/tmp/x.db".parse::<SinkUrl>().unwrap(),
            SinkUrl::Sqlite {
                path: "/tmp/x.db".into(),
                spec: spec("events", PayloadKind::Bytes),
                synchronous: Synchronous::Full,
            }
        );
        assert_eq!(
            "sqlite:x.db?table=t1&payload=json"
                .parse::<SinkUrl>()
                .unwrap(),
            SinkUrl::Sqlite {
                path: "x.db".into(),
                spec: spec("t1", PayloadKind::Json),
                synchronous: Synchronous::Full,
            }
        );
        let normal: SinkUrl = "sqlite:x.db?synchronous=normal".parse().unwrap();
        assert!(matches!(
            normal,
            SinkUrl::Sqlite {
                synchronous: Synchronous::Normal,
                ..
            }
        ));
        assert_eq!(
            normal.to_string(),
            "sqlite:x.db?table=events&synchronous=normal"
        );
        assert_eq!(
            "postgres://u@127.0.0.1:5433/db?sslmode=disable&table=orders"
                .parse::<SinkUrl>()
                .unwrap(),
            SinkUrl::Postgres {
                conn: "postgres://u@127.0.0.1:5433/db?sslmode=disable".into(),
                spec: spec("orders", PayloadKind::Bytes)
            }
        );
    }

    #[test]
    fn synchronous_is_full_or_normal_and_only_for_sqlite() {
        let err = "sqlite:x.db?synchronous=off"
            .parse::<SinkUrl>()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("use synchronous=full or synchronous=normal"),
            "{err}"
        );
        let err = "postgres://u@h/db?synchronous=full"
            .parse::<SinkUrl>()
            .unwrap_err();
        assert!(err.to_string().contains("is a SQLite option"), "{err}");
    }

    #[test]
    fn refuses_what_it_does_not_know_and_says_what_it_would_take() {
        let err = "mysql://x".parse::<SinkUrl>().unwrap_err().to_string();
        assert!(err.contains("unknown sink 'mysql://x'") && err.contains("sqlite:PATH"));
        assert!("sqlite:".parse::<SinkUrl>().is_err());
        assert!("sqlite:x.db?table=a;drop".parse::<SinkUrl>().is_err());
        assert!(
            "sqlite:x.db?payload=xml"
                .parse::<SinkUrl>()
                .unwrap_err()
                .to_string()
                .contains("payload=json")
        );
        assert!(
            "sqlite:x.db?colour=red"
                .parse::<SinkUrl>()
                .unwrap_err()
                .to_string()
                .contains("unknown option")
        );
    }

    #[test]
    fn to_arg_parses_back_to_the_same_sink() {
        for text in [
            "sqlite:a.db?table=t&payload=json",
            "postgres://u:p@h:1/d?sslmode=disable&table=x",
            "null",
        ] {
            let url: SinkUrl = text.parse().unwrap();
            assert_eq!(url.to_arg().parse::<SinkUrl>().unwrap(), url, "{text}");
            let other = url.with_table("other");
            assert_eq!(other.to_arg().parse::<SinkUrl>().unwrap(), other);
        }
    }

    #[test]
    fn display_never_shows_a_password() {
        let url: SinkUrl = "postgres://u:secret@db:5432/x".parse().unwrap();
        assert!(!url.to_string().contains("secret"));
    }
}
