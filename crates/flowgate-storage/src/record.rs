//! One log record: its framing (length, checksum, kind) and its four bodies.

use flowgate_core::EventId;

/// The largest record body accepted on read; a length beyond it is corruption, not a record.
pub const MAX_RECORD: u32 = 64 << 20;

/// Bytes before a record's body: length, checksum, kind.
pub(crate) const HEADER: usize = 4 + 4 + 1;

/// What an `EVENT` record takes on disk beyond the event's own bytes: framing, kind, id.
pub const EVENT_RECORD_OVERHEAD: usize = HEADER + 16;

const EVENT: u8 = 1;
const ACKS: u8 = 2;
const CHECKPOINT: u8 = 3;
const ATTEMPTS: u8 = 4;

/// An `ATTEMPTS` entry on disk: an id and an attempt.
const ATTEMPT_ENTRY: usize = 16 + 4;

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An accepted event and its opaque bytes.
    Event(EventId, Vec<u8>),
    /// Acknowledged events.
    Acks(Vec<EventId>),
    /// Every producer's highest accepted sequence number.
    Checkpoint(Vec<EventId>),
    /// Events whose next delivery is a later attempt (after a nack, a consumer leaving, or an
    /// ack deadline), with that attempt.
    Attempts(Vec<(EventId, u32)>),
}

/// Why the bytes at an offset are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the record says it has: a torn write.
    Short,
    /// A length beyond [`MAX_RECORD`] or too small for its kind.
    BadLength(u32),
    /// The checksum does not match.
    Checksum,
    /// A kind this version does not know.
    UnknownKind(u8),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Short => f.write_str("record cut short (torn write)"),
            RecordError::BadLength(n) => write!(f, "impossible record length {n}"),
            RecordError::Checksum => f.write_str("checksum mismatch"),
            RecordError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
        }
    }
}

impl Record {
    /// Appends the framed record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER - 1]);
        match self {
            Record::Event(id, data) => {
                out.push(EVENT);
                put_id(out, *id);
                out.extend_from_slice(data);
            }
            Record::Acks(ids) => {
                out.push(ACKS);
                ids.iter().for_each(|id| put_id(out, *id));
            }
            Record::Checkpoint(ids) => {
                out.push(CHECKPOINT);
                ids.iter().for_each(|id| put_id(out, *id));
            }
            Record::Attempts(entries) => {
                out.push(ATTEMPTS);
                for (id, attempt) in entries {
                    put_id(out, *id);
                    out.extend_from_slice(&attempt.to_le_bytes());
                }
            }
        }
        let body = &out[start + 8..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads the record at the start of `buf`: the record and the bytes it took.
    pub fn decode(buf: &[u8]) -> Result<(Record, usize), RecordError> {
        if buf.len() < 8 {
            return Err(RecordError::Short);
        }
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if len == 0 || len > MAX_RECORD {
            return Err(RecordError::BadLength(len));
        }
        let end = 8 + len as usize;
        let body = buf.get(8..end).ok_or(RecordError::Short)?;
        if crc32fast::hash(body) != crc {
            return Err(RecordError::Checksum);
        }
        let (kind, rest) = (body[0], &body[1..]);
        let record = match kind {
            EVENT if rest.len() >= 16 => Record::Event(get_id(rest), rest[16..].to_vec()),
            ACKS | CHECKPOINT if rest.len() % 16 == 0 => {
                let ids = rest.chunks_exact(16).map(get_id).collect();
                if kind == ACKS {
                    Record::Acks(ids)
                } else {
                    Record::Checkpoint(ids)
                }
            }
            ATTEMPTS if rest.len() % ATTEMPT_ENTRY == 0 => Record::Attempts(
                rest.chunks_exact(ATTEMPT_ENTRY)
                    .map(|e| {
                        let attempt = u32::from_le_bytes([e[16], e[17], e[18], e[19]]);
                        (get_id(e), attempt)
                    })
                    .collect(),
            ),
            EVENT | ACKS | CHECKPOINT | ATTEMPTS => return Err(RecordError::BadLength(len)),
            other => return Err(RecordError::UnknownKind(other)),
        };
        Ok((record, end))
    }
}

fn put_id(out: &mut Vec<u8>, id: EventId) {
    out.extend_from_slice(&id.producer.to_le_bytes());
    out.extend_from_slice(&id.seq.to_le_bytes());
}

fn get_id(b: &[u8]) -> EventId {
    let mut p = [0u8; 8];
    let mut s = [0u8; 8];
    p.copy_from_slice(&b[..8]);
    s.copy_from_slice(&b[8..16]);
    EventId::new(u64::from_le_bytes(p), u64::from_le_bytes(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_flipped_bit_is_caught() {
        let records = [
            Record::Event(EventId::new(7, 1), b"hello".to_vec()),
            Record::Acks(vec![EventId::new(7, 1), EventId::new(8, 3)]),
            Record::Attempts(vec![(EventId::new(7, 2), 3), (EventId::new(9, 1), 2)]),
            Record::Checkpoint(vec![]),
        ];
        let mut buf = Vec::new();
        records.iter().for_each(|r| r.encode(&mut buf));
        let mut at = 0;
        for r in &records {
            let (got, used) = Record::decode(&buf[at..]).unwrap();
            assert_eq!(&got, r);
            at += used;
        }
        assert_eq!(at, buf.len());
        buf[12] ^= 1;
        assert_eq!(Record::decode(&buf), Err(RecordError::Checksum));
        assert_eq!(Record::decode(&buf[..10]), Err(RecordError::Short));
    }
}
