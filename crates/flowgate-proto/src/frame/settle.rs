//! The `count u32 | (delivery_id u64 | attempt u32) × count` body shared by `ACK` and `NACK`.

use bytes::{BufMut, BytesMut};

use crate::error::ProtoError;
use crate::wire::Reader;

/// One delivery being settled: which one, and which attempt of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Settle {
    /// The delivery.
    pub delivery_id: u64,
    /// The attempt being settled; must be the outstanding one.
    pub attempt: u32,
}

pub(crate) fn encode(items: &[Settle], buf: &mut BytesMut) {
    buf.put_u32(items.len() as u32);
    for s in items {
        buf.put_u64(s.delivery_id);
        buf.put_u32(s.attempt);
    }
}

pub(crate) fn decode(mut r: Reader) -> Result<Vec<Settle>, ProtoError> {
    let n = r.count(12, "delivery count")?;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        items.push(Settle {
            delivery_id: r.u64("delivery_id")?,
            attempt: r.u32("attempt")?,
        });
    }
    r.finish()?;
    Ok(items)
}
