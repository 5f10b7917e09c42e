//! Sink URLs: `sqlite:PATH` (optionally `sqlite:PATH?table=NAME`), `stdout`, `null`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::SinkError;

/// The default table events land in.
pub const DEFAULT_TABLE: &str = "events";

/// A parsed sink URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkUrl {
    /// A SQLite database file and table.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The table (created if missing).
        table: String,
    },
    /// JSON lines on standard output.
    Stdout,
    /// Discard everything.
    Null,
}

impl FromStr for SinkUrl {
    type Err = SinkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => return Ok(SinkUrl::Stdout),
            "null" => return Ok(SinkUrl::Null),
            _ => {}
        }
        let Some(rest) = s.strip_prefix("sqlite:") else {
            return Err(SinkError::BadUrl(format!(
                "unknown sink '{s}'; use sqlite:PATH, sqlite:PATH?table=NAME, stdout or null"
            )));
        };
        let (path, table) = match rest.split_once("?table=") {
            Some((path, table)) => (path, table),
            None => (rest, DEFAULT_TABLE),
        };
        if path.is_empty() {
            return Err(SinkError::BadUrl(format!(
                "'{s}' names no file; use sqlite:PATH"
            )));
        }
        if table.is_empty()
            || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || table.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(SinkError::BadUrl(format!(
                "table '{table}' in '{s}' must be letters, digits and _ , not starting with a digit"
            )));
        }
        Ok(SinkUrl::Sqlite {
            path: PathBuf::from(path),
            table: table.to_string(),
        })
    }
}

impl fmt::Display for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkUrl::Sqlite { path, table } => write!(f, "sqlite:{}?table={table}", path.display()),
            SinkUrl::Stdout => f.write_str("stdout"),
            SinkUrl::Null => f.write_str("null"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!("null".parse::<SinkUrl>().unwrap(), SinkUrl::Null);
        assert_eq!("stdout".parse::<SinkUrl>().unwrap(), SinkUrl::Stdout);
        assert_eq!(
            "sqlite:/tmp/x.db".parse::<SinkUrl>().unwrap(),
            SinkUrl::Sqlite {
                path: "/tmp/x.db".into(),
                table: "events".into()
            }
        );
        assert_eq!(
            "sqlite:x.db?table=t1".parse::<SinkUrl>().unwrap(),
            SinkUrl::Sqlite {
                path: "x.db".into(),
                table: "t1".into()
            }
        );
    }

    #[test]
    fn refuses_what_it_does_not_know_and_says_what_it_would_take() {
        let err = "mysql://x".parse::<SinkUrl>().unwrap_err().to_string();
        assert!(err.contains("unknown sink 'mysql://x'") && err.contains("sqlite:PATH"));
        assert!("sqlite:".parse::<SinkUrl>().is_err());
        assert!("sqlite:x.db?table=a;drop".parse::<SinkUrl>().is_err());
    }
}
