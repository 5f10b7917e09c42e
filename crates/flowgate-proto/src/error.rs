//! Why bytes could not be decoded into a frame. Each variant maps to the wire error code the
//! peer is sent before it is disconnected.

use crate::code::ErrorCode;

/// A decoding failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The length prefix claims more than the maximum frame size.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The claimed length.
        len: u64,
        /// The maximum in force.
        max: u32,
    },
    /// A length prefix of zero (every frame has at least a type byte).
    #[error("empty frame (length 0)")]
    Empty,
    /// The type byte names no frame.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// The body does not match its frame type's layout.
    #[error("malformed {frame} frame: {reason}")]
    Malformed {
        /// The frame type.
        frame: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl ProtoError {
    /// The wire code this failure is reported with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtoError::UnknownFrameType(_) => ErrorCode::UnknownFrameType,
            ProtoError::Empty | ProtoError::Malformed { .. } => ErrorCode::MalformedFrame,
        }
    }

    pub(crate) fn malformed(frame: &'static str, reason: impl Into<String>) -> Self {
        ProtoError::Malformed {
            frame,
            reason: reason.into(),
        }
    }
}
