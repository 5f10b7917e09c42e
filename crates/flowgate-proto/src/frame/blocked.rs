//! `BLOCKED` (producer → broker): `returned_events u64 | returned_bytes u64 | need_bytes u64`.
//! The producer's next event costs `need_bytes` of credit, which what it holds does not
//! cover; it hands back all the credit it held when it sent this (`returned`), so none stays
//! stranded with it, and the broker grants it at least one event of `need_bytes` as soon as
//! there is room.

use bytes::{BufMut, BytesMut};
use flowgate_core::Credit;

use crate::error::ProtoError;
use crate::wire::Reader;

/// A producer waiting for room for its next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// All the credit the producer held, handed back.
    pub returned: Credit,
    /// The credit cost in bytes of the event it waits to send.
    pub need_bytes: u64,
}

impl Blocked {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u64(self.returned.events);
        buf.put_u64(self.returned.bytes);
        buf.put_u64(self.need_bytes);
    }

    pub(crate) fn decode_body(mut r: Reader) -> Result<Self, ProtoError> {
        let b = Blocked {
            returned: Credit::new(r.u64("returned_events")?, r.u64("returned_bytes")?),
            need_bytes: r.u64("need_bytes")?,
        };
        r.finish()?;
        Ok(b)
    }
}
