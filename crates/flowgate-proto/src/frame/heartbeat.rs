//! `HEARTBEAT` (either way): an empty body. Keeps an idle but healthy connection within the
//! peer's idle deadline.

use crate::error::ProtoError;
use crate::wire::Reader;

/// "Still here."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat;

impl Heartbeat {
    pub(crate) fn decode_body(r: Reader) -> Result<Self, ProtoError> {
        r.finish()?;
        Ok(Heartbeat)
    }
}
