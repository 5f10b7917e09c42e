//! flowgate's wire protocol, sans-IO: bytes in, [`Frame`]s out, and back, and the sessions
//! that say which frames go when. No sockets, no async, no clock reads; the broker and the
//! client wrap [`FrameDecoder`] and the sessions in their own IO loops.
//!
//! Specified in `docs/protocol.md`. Every frame is `length: u32 | type: u8 | body`, big-endian,
//! where `length` counts the type byte and the body and never exceeds the receiver's maximum
//! frame size; a decoder refuses a larger length before buffering any of it.
//!
//! | module | responsibility |
//! |---|---|
//! | [`codec`] | [`FrameDecoder`] (incremental, bounded) and [`encode`] |
//! | [`frame`] | the [`Frame`] enum, one file per frame type |
//! | [`event`] | [`WireEvent`]: an event as it travels, payload kept as shared bytes |
//! | [`code`] | [`ErrorCode`]: the wire's error codes, separate from Rust errors |
//! | [`session`] | the connection rules as state machines fed frames and time: [`ProducerSession`], [`ConsumerSession`], [`ServerSession`] |
//! | [`names`] | topic and group name rules |
//! | [`wire`] | bounds-checked reading of primitive fields |
//! | `io` | (feature `tokio`) `FrameReader`: whole frames from an `AsyncRead` |
//! | [`error`] | [`ProtoError`]: why bytes could not be decoded |

#![forbid(unsafe_code)]

pub mod code;
pub mod codec;
pub mod error;
pub mod event;
pub mod frame;
#[cfg(feature = "tokio")]
pub mod io;
pub mod names;
pub mod session;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wire;

pub use code::ErrorCode;
pub use codec::{FrameDecoder, encode};
pub use error::ProtoError;
pub use event::WireEvent;
pub use frame::{
    Ack, Blocked, Confirm, Deliver, DeliveredEvent, ErrorFrame, Frame, FrameType, Grant, Heartbeat,
    Hello, Nack, Progress, Publish, Refused, Request, Role, Settle, Welcome,
};
pub use session::{
    ConsumerSession, MAX_UNTAKEN_REFUSED, ProducerSession, ServerSession, SessionError,
};

/// The protocol version this crate speaks. A peer offering another version is refused with
/// [`ErrorCode::UnsupportedVersion`].
pub const VERSION: u16 = 5;

/// The four bytes that open every connection's first frame (`HELLO`).
pub const MAGIC: [u8; 4] = *b"FLGT";

/// Bytes before a frame's body: the length (4) and the type (1).
pub const HEADER_LEN: usize = 5;

/// The default largest frame a peer accepts: 1 MiB holds ~9,000 100-byte events, enough to
/// amortise per-frame costs, small enough that a hostile length claim costs little.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

/// The smallest maximum a peer may announce: room for a `HELLO` with two 255-byte names and
/// for one event with a small payload.
pub const MIN_MAX_FRAME: u32 = 1 << 12;
