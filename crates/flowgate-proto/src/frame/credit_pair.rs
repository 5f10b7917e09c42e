//! The `(events u64, bytes u64)` body shared by `CREDIT` and `REQUEST`.

use bytes::{BufMut, BytesMut};
use flowgate_core::Credit;

use crate::error::ProtoError;
use crate::wire::Reader;

pub(crate) fn encode(credit: Credit, buf: &mut BytesMut) {
    buf.put_u64(credit.events);
    buf.put_u64(credit.bytes);
}

pub(crate) fn decode(mut r: Reader) -> Result<Credit, ProtoError> {
    let c = Credit::new(r.u64("events")?, r.u64("bytes")?);
    r.finish()?;
    Ok(c)
}
