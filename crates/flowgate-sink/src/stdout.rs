//! The stdout sink: one JSON object per event, flushed per batch.

use std::io::Write;

use flowgate_core::Event;

use crate::{Committed, SinkError};

/// Writes `{"producer":"…","seq":…,"created_us":…,"payload":"…"}` lines (payload as lossy
/// UTF-8). Not idempotent across restarts: it cannot un-print a line.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl StdoutSink {
    /// A sink on this process's standard output.
    pub fn new() -> Self {
        StdoutSink
    }
}

/// The JSON line for one event.
fn line(e: &Event) -> String {
    serde_json::json!({
        "producer": format!("{:016x}", e.id.producer),
        "seq": e.id.seq,
        "created_us": e.created_us,
        "payload": String::from_utf8_lossy(&e.payload),
    })
    .to_string()
}

impl StdoutSink {
    /// Prints `events`, one line each.
    pub fn write_batch(&mut self, events: &[Event]) -> Result<Committed, SinkError> {
        let mut out = std::io::stdout().lock();
        for e in events {
            writeln!(out, "{}", line(e))?;
        }
        out.flush()?;
        Ok(Committed {
            new_rows: events.len() as u64,
            rejected: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_core::EventId;

    #[test]
    fn a_line_is_json_with_the_payload_escaped() {
        let e = Event {
            id: EventId::new(255, 3),
            key: None,
            created_us: 9,
            payload: b"a\"b\n".to_vec(),
        };
        let v: serde_json::Value = serde_json::from_str(&line(&e)).unwrap();
        assert_eq!(v["producer"], "00000000000000ff");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["payload"], "a\"b\n");
    }
}
