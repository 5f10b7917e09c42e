//! A request body to events: `application/x-ndjson` (one JSON value per line, blank lines
//! skipped) or `application/json` (an array of JSON values). Each event's payload is its JSON
//! value as compact text. A bad body is refused whole, naming the first bad line (1-based)
//! and why; nothing of it is kept.

use serde_json::Value;

/// The two bodies the API takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// One JSON value per line.
    NdJson,
    /// A JSON array of values.
    JsonArray,
}

impl BodyKind {
    /// The kind a `Content-Type` header names (parameters such as `charset` ignored); `None`
    /// for any other type.
    pub fn from_content_type(header: &str) -> Option<BodyKind> {
        let essence = header.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-ndjson")
            || essence.eq_ignore_ascii_case("application/jsonl")
        {
            Some(BodyKind::NdJson)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(BodyKind::JsonArray)
        } else {
            None
        }
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A line (or the array) is not what the API takes.
    #[error("line {line}: {why}")]
    Bad {
        /// 1-based.
        line: usize,
        /// In words.
        why: String,
    },
    /// No event in it.
    #[error("the body holds no events")]
    Empty,
    /// One event is larger than the broker takes.
    #[error("line {line}: an event of {bytes} bytes is over the broker's largest of {largest}")]
    TooLarge {
        /// 1-based.
        line: usize,
        /// Its payload's size.
        bytes: u64,
        /// The largest payload the broker takes.
        largest: u64,
    },
}

/// One event of a body: its payload and the line it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The 1-based line it came from.
    pub line: usize,
    /// Its JSON value, compact.
    pub payload: Vec<u8>,
}

/// Parses `body` of `kind` into events, each at most `largest` bytes.
pub fn parse(kind: BodyKind, body: &[u8], largest: u64) -> Result<Vec<Parsed>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::Bad {
        line: line_of(body, e.valid_up_to()),
        why: "not UTF-8".into(),
    })?;
    let events = match kind {
        BodyKind::NdJson => ndjson(text)?,
        BodyKind::JsonArray => array(text)?,
    };
    if events.is_empty() {
        return Err(BodyError::Empty);
    }
    if let Some(e) = events.iter().find(|e| e.payload.len() as u64 > largest) {
        return Err(BodyError::TooLarge {
            line: e.line,
            bytes: e.payload.len() as u64,
            largest,
        });
    }
    Ok(events)
}

fn ndjson(text: &str) -> Result<Vec<Parsed>, BodyError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| BodyError::Bad {
            line: i + 1,
            why: format!("not JSON: {e}"),
        })?;
        out.push(Parsed {
            line: i + 1,
            payload: compact(&value),
        });
    }
    Ok(out)
}

fn array(text: &str) -> Result<Vec<Parsed>, BodyError> {
    let value: Value = serde_json::from_str(text).map_err(|e| BodyError::Bad {
        line: e.line().max(1),
        why: format!("not JSON: {e}"),
    })?;
    let Value::Array(items) = value else {
        return Err(BodyError::Bad {
            line: 1,
            why: "application/json takes an array of events; send one event as [event]".into(),
        });
    };
    // The line each element starts on, found by reading the text again element by element.
    let starts = element_lines(text);
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, v)| Parsed {
            line: starts.get(i).copied().unwrap_or(1),
            payload: compact(v),
        })
        .collect())
}

fn compact(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// The 1-based line on which each top-level element of a valid JSON array starts.
fn element_lines(text: &str) -> Vec<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut line, mut expecting) = (1usize, false);
    let mut starts = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if expecting && !c.is_whitespace() && c != ']' {
            starts.push(line);
            expecting = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expecting = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    starts
}

fn line_of(body: &[u8], offset: usize) -> usize {
    body[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_become_events_and_blank_lines_are_skipped() {
        let got = parse(BodyKind::NdJson, b"{\"a\": 1}\n\n[2, 3]\n\"x\"\n", 100).unwrap();
        let payloads: Vec<&[u8]> = got.iter().map(|p| p.payload.as_slice()).collect();
        assert_eq!(payloads, [&b"{\"a\":1}"[..], b"[2,3]", b"\"x\""]);
        assert_eq!(got.iter().map(|p| p.line).collect::<Vec<_>>(), [1, 3, 4]);
    }

    #[test]
    fn the_first_bad_line_is_named() {
        let err = parse(BodyKind::NdJson, b"1\n2\n{oops\n4\n", 100).unwrap_err();
        assert!(err.to_string().starts_with("line 3: not JSON"), "{err}");
        let err = parse(BodyKind::JsonArray, b"[1,\n 2,\n {oops}]", 100).unwrap_err();
        assert!(err.to_string().starts_with("line 3: not JSON"), "{err}");
        let err = parse(BodyKind::NdJson, b"1\n\xff\n", 100).unwrap_err();
        assert_eq!(err.to_string(), "line 2: not UTF-8");
    }

    #[test]
    fn an_array_gives_its_elements_and_their_lines() {
        let body = b"[\n {\"s\": \"a,]\\\"\"},\n [1, 2],\n 3\n]";
        let got = parse(BodyKind::JsonArray, body, 100).unwrap();
        assert_eq!(got.iter().map(|p| p.line).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(got[0].payload, b"{\"s\":\"a,]\\\"\"}");
    }

    #[test]
    fn a_lone_object_an_empty_body_and_an_oversized_event_are_refused_by_name() {
        let err = parse(BodyKind::JsonArray, b"{\"a\":1}", 100).unwrap_err();
        assert!(err.to_string().contains("takes an array"), "{err}");
        assert_eq!(
            parse(BodyKind::NdJson, b"\n\n", 100).unwrap_err(),
            BodyError::Empty
        );
        assert_eq!(
            parse(BodyKind::JsonArray, b"[]", 100).unwrap_err(),
            BodyError::Empty
        );
        let err = parse(BodyKind::NdJson, b"1\n\"0123456789\"\n", 8).unwrap_err();
        assert_eq!(
            err,
            BodyError::TooLarge {
                line: 2,
                bytes: 12,
                largest: 8
            }
        );
    }

    #[test]
    fn content_types_are_matched_by_essence() {
        use BodyKind::*;
        assert_eq!(
            BodyKind::from_content_type("application/x-ndjson"),
            Some(NdJson)
        );
        assert_eq!(
            BodyKind::from_content_type("Application/JSON; charset=utf-8"),
            Some(JsonArray)
        );
        assert_eq!(BodyKind::from_content_type("text/plain"), None);
    }
}
