//! Events from an NDJSON file or standard input: one event per line, each line checked to be
//! one JSON value; a line that is not, or that no frame can carry, is reported and skipped.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use flowgate_client::ClientError;
use tracing::warn;

use super::Run;

/// Sends every line of `path` ('-' for standard input) until the end or a stop.
pub(super) async fn send_lines(run: &mut Run, path: &Path) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Result<Vec<u8>, String>)>(1024);
    let path = path.to_path_buf();
    // Lines are read on a blocking thread; the bounded channel carries backpressure to it.
    let reader = tokio::task::spawn_blocking(move || read_lines(&path, &tx));
    while let Some((line_no, line)) = rx.recv().await {
        match line {
            Ok(payload) => match run.send(payload).await {
                Some(Ok(_)) => {}
                Some(Err(e @ ClientError::EventTooLarge { .. })) => {
                    run.rejected_lines += 1;
                    warn!("line {line_no}: {e}; skipped");
                }
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
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

/// Reads NDJSON lines, checking each is one JSON value, and hands them over in order.
fn read_lines(
    path: &Path,
    tx: &tokio::sync::mpsc::Sender<(u64, Result<Vec<u8>, String>)>,
) -> Result<()> {
    let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open --from {}", path.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    for (i, line) in input.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.with_context(|| format!("cannot read line {line_no}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let checked = serde_json::from_str::<serde::de::IgnoredAny>(&line)
            .map(|_| line.into_bytes())
            .map_err(|e| format!("not one JSON value ({e})"));
        if tx.blocking_send((line_no, checked)).is_err() {
            break;
        }
    }
    Ok(())
}
