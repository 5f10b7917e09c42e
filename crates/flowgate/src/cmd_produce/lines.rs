//! Events from an NDJSON file or standard input: one event per line. A line that is not
//! UTF-8, not one JSON value, or larger than one event may be is reported with its number and
//! skipped; a leading byte-order mark is ignored.
//!
//! Resuming: the events a producer sends from a file are numbered 1, 2, 3... in the order of
//! the file's sendable lines, so with the same `--producer-id` a rerun over the same file
//! skips the lines whose numbers the broker already holds (its resume point) and sends the
//! rest: a run killed midway and rerun gives every line exactly once. Standard input cannot
//! be read again; there a rerun numbers its lines after the resume point.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use flowgate_client::{ClientError, Publish};
use tracing::{info, warn};

use super::Run;

/// A line read: its number, and its bytes with its key (`--key-field`) or why it cannot be an
/// event.
type Line = (u64, Result<(Vec<u8>, Option<Vec<u8>>), String>);

/// Sends every line of `path` ('-' for standard input) until the end or a stop.
pub(super) async fn send_lines(run: &mut Run, path: &Path) -> Result<()> {
    let stdin = path.as_os_str() == "-";
    // The broker's resume point for this producer id: the sendable lines it already holds.
    let resume = run.producer.stats().confirmed_seq;
    let skip = match (resume, stdin) {
        (0, _) => 0,
        (n, false) => {
            info!(
                "the broker holds this producer's first {n} events: skipping the lines sent before"
            );
            n
        }
        (n, true) => {
            warn!(
                "standard input cannot be read again: its lines are numbered after the broker's resume point {n}"
            );
            0
        }
    };
    let largest = run.producer.largest_payload();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Line>(1024);
    let path = path.to_path_buf();
    // Lines are read on a blocking thread; the bounded channel carries backpressure to it.
    let key_field = run.key_field.clone();
    let reader = tokio::task::spawn_blocking(move || read_lines(&path, key_field.as_deref(), &tx));
    let mut sendable = 0u64;
    while let Some((line_no, line)) = rx.recv().await {
        let payload = match line {
            Ok((payload, key))
                if (payload.len() + key.as_ref().map_or(0, Vec::len)) as u64 > largest =>
            {
                Err(ClientError::EventTooLarge {
                    payload: payload.len() as u64,
                    key: key.map_or(0, |k| k.len() as u64),
                    largest,
                }
                .to_string())
            }
            other => other,
        };
        match payload {
            Ok((payload, key)) => {
                sendable += 1;
                if sendable <= skip {
                    continue;
                }
                match run.send(payload, key).await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                }
            }
            Err(why) => {
                run.rejected_lines += 1;
                warn!("line {line_no}: {why}; skipped");
            }
        }
        let sent = run.producer_sent();
        run.tick(sent);
    }
    // Dropping the receiver ends a reader stopped midway.
    drop(rx);
    reader.await.context("reader thread")??;
    Ok(())
}

/// Reads lines as bytes, checking each is UTF-8 and one JSON value, and hands them over in
/// order; blank lines are passed over (they keep their numbers).
fn read_lines(
    path: &Path,
    key_field: Option<&str>,
    tx: &tokio::sync::mpsc::Sender<Line>,
) -> Result<()> {
    let mut input: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open --from {}", path.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut buf = Vec::new();
    for line_no in 1u64.. {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read line {line_no}"))?;
        if n == 0 {
            break;
        }
        let mut bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if line_no == 1 {
            bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
        }
        let checked = check(bytes, key_field);
        if matches!(&checked, Ok((b, _)) if b.is_empty()) {
            continue;
        }
        if tx.blocking_send((line_no, checked)).is_err() {
            break;
        }
    }
    Ok(())
}

/// A line's bytes as an event payload, with the value of its `key_field` as its key (a string's
/// text, any other value's JSON; none when the line has no such field), or why they cannot be
/// one. Blank is `Ok(empty)`.
fn check(bytes: &[u8], key_field: Option<&str>) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 (an invalid byte at column {})",
            e.valid_up_to() + 1
        )
    })?;
    if text.trim().is_empty() {
        return Ok((Vec::new(), None));
    }
    let not_json = |e: serde_json::Error| format!("not one JSON value ({e})");
    let key = match key_field {
        None => {
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(not_json)?;
            None
        }
        Some(field) => match serde_json::from_str::<serde_json::Value>(text).map_err(not_json)? {
            serde_json::Value::Object(mut o) => match o.remove(field) {
                Some(serde_json::Value::String(s)) => Some(s.into_bytes()),
                Some(other) => Some(other.to_string().into_bytes()),
                None => None,
            },
            _ => None,
        },
    };
    Ok((text.as_bytes().to_vec(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_checked_for_utf8_then_json() {
        assert_eq!(
            check(br#"{"n":1}"#, None),
            Ok((br#"{"n":1}"#.to_vec(), None))
        );
        assert_eq!(check(b"  ", None), Ok((Vec::new(), None)));
        let bad = check(b"{\"n\":\xff}", None).unwrap_err();
        assert_eq!(bad, "not UTF-8 (an invalid byte at column 6)");
        assert!(
            check(b"{", None)
                .unwrap_err()
                .starts_with("not one JSON value")
        );
    }

    #[test]
    fn the_key_field_gives_the_key_a_string_as_its_text() {
        let key = |line: &[u8]| check(line, Some("id")).unwrap().1;
        assert_eq!(
            key(br#"{"id":"sensor-7","t":1}"#),
            Some(b"sensor-7".to_vec())
        );
        assert_eq!(key(br#"{"id":42}"#), Some(b"42".to_vec()));
        assert_eq!(key(br#"{"other":1}"#), None, "no field, no key");
        assert_eq!(key(b"[1,2]"), None);
        assert!(
            check(b"{", Some("id"))
                .unwrap_err()
                .starts_with("not one JSON value")
        );
    }
}
