//! `ERROR` (either way): `code u16 | message str16`. Fatal codes are followed by the sender
//! closing the connection; see [`ErrorCode::is_fatal`].

use bytes::{BufMut, BytesMut};

use crate::code::ErrorCode;
use crate::error::ProtoError;
use crate::wire::{Reader, put_str16};

/// A broken rule, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    /// Which rule.
    pub code: ErrorCode,
    /// What exactly, for humans.
    pub message: String,
}

impl ErrorFrame {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u16(self.code.to_wire());
        put_str16(buf, &self.message);
    }

    pub(crate) fn decode_body(mut r: Reader) -> Result<Self, ProtoError> {
        let e = ErrorFrame {
            code: ErrorCode::from_wire(r.u16("code")?),
            message: r.str16("message")?,
        };
        r.finish()?;
        Ok(e)
    }
}
