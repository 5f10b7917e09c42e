//! The frames, one file per type, and the [`Frame`] enum that joins them.
//!
//! | type | name | direction | file |
//! |---|---|---|---|
//! | 0x01 | `HELLO` | client → broker | `hello.rs` |
//! | 0x02 | `WELCOME` | broker → client | `welcome.rs` |
//! | 0x03 | `PUBLISH` | producer → broker | `publish.rs` |
//! | 0x04 | `CONFIRM` | broker → producer | `confirm.rs` |
//! | 0x05 | `CREDIT` | broker → producer | `grant.rs` |
//! | 0x06 | `REQUEST` | consumer → broker | `request.rs` |
//! | 0x07 | `DELIVER` | broker → consumer | `deliver.rs` |
//! | 0x08 | `ACK` | consumer → broker | `ack.rs` |
//! | 0x09 | `NACK` | consumer → broker | `nack.rs` |
//! | 0x0A | `ERROR` | either | `error.rs` |
//! | 0x0B | `HEARTBEAT` | either | `heartbeat.rs` |
//! | 0x0C | `BLOCKED` | producer → broker | `blocked.rs` |
//! | 0x0D | `PROGRESS` | consumer → broker | `progress.rs` |

mod ack;
mod blocked;
mod confirm;
mod credit_pair;
mod deliver;
mod error;
mod grant;
mod heartbeat;
mod hello;
mod nack;
mod progress;
mod publish;
mod refused;
mod request;
mod settle;
mod welcome;

use bytes::{Bytes, BytesMut};

pub use ack::Ack;
pub use blocked::Blocked;
pub use confirm::Confirm;
pub use deliver::{Deliver, DeliveredEvent};
pub use error::ErrorFrame;
pub use grant::Grant;
pub use heartbeat::Heartbeat;
pub use hello::Hello;
pub use nack::Nack;
pub use progress::Progress;
pub use publish::Publish;
pub use refused::Refused;
pub use request::Request;
pub use settle::Settle;
pub use welcome::Welcome;

use crate::error::ProtoError;
use crate::wire::Reader;

/// A client's role in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Publishes events.
    Producer,
    /// Receives and settles deliveries.
    Consumer,
}

impl Role {
    pub(crate) const fn to_wire(self) -> u8 {
        match self {
            Role::Producer => 1,
            Role::Consumer => 2,
        }
    }

    pub(crate) fn from_wire(b: u8) -> Result<Self, ProtoError> {
        match b {
            1 => Ok(Role::Producer),
            2 => Ok(Role::Consumer),
            other => Err(ProtoError::malformed(
                "HELLO",
                format!("unknown role {other}"),
            )),
        }
    }
}

/// A frame's type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// `HELLO`
    Hello = 0x01,
    /// `WELCOME`
    Welcome = 0x02,
    /// `PUBLISH`
    Publish = 0x03,
    /// `CONFIRM`
    Confirm = 0x04,
    /// `CREDIT`
    Credit = 0x05,
    /// `REQUEST`
    Request = 0x06,
    /// `DELIVER`
    Deliver = 0x07,
    /// `ACK`
    Ack = 0x08,
    /// `NACK`
    Nack = 0x09,
    /// `ERROR`
    Error = 0x0A,
    /// `HEARTBEAT`
    Heartbeat = 0x0B,
    /// `BLOCKED`
    Blocked = 0x0C,
    /// `PROGRESS`
    Progress = 0x0D,
    /// `REFUSED`
    Refused = 0x0E,
}

impl FrameType {
    /// The type for a byte, if it names one.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => FrameType::Hello,
            0x02 => FrameType::Welcome,
            0x03 => FrameType::Publish,
            0x04 => FrameType::Confirm,
            0x05 => FrameType::Credit,
            0x06 => FrameType::Request,
            0x07 => FrameType::Deliver,
            0x08 => FrameType::Ack,
            0x09 => FrameType::Nack,
            0x0A => FrameType::Error,
            0x0B => FrameType::Heartbeat,
            0x0C => FrameType::Blocked,
            0x0D => FrameType::Progress,
            0x0E => FrameType::Refused,
            _ => return None,
        })
    }

    /// The upper-case name used in the spec and in errors.
    pub const fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "HELLO",
            FrameType::Welcome => "WELCOME",
            FrameType::Publish => "PUBLISH",
            FrameType::Confirm => "CONFIRM",
            FrameType::Credit => "CREDIT",
            FrameType::Request => "REQUEST",
            FrameType::Deliver => "DELIVER",
            FrameType::Ack => "ACK",
            FrameType::Nack => "NACK",
            FrameType::Error => "ERROR",
            FrameType::Heartbeat => "HEARTBEAT",
            FrameType::Blocked => "BLOCKED",
            FrameType::Progress => "PROGRESS",
            FrameType::Refused => "REFUSED",
        }
    }
}

/// Any frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`Publish`].
    Publish(Publish),
    /// See [`Confirm`].
    Confirm(Confirm),
    /// See [`Grant`].
    Credit(Grant),
    /// See [`Request`].
    Request(Request),
    /// See [`Deliver`].
    Deliver(Deliver),
    /// See [`Ack`].
    Ack(Ack),
    /// See [`Nack`].
    Nack(Nack),
    /// See [`ErrorFrame`].
    Error(ErrorFrame),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`Blocked`].
    Blocked(Blocked),
    /// See [`Progress`].
    Progress(Progress),
    /// See [`Refused`].
    Refused(Refused),
}

impl Frame {
    /// This frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::Welcome(_) => FrameType::Welcome,
            Frame::Publish(_) => FrameType::Publish,
            Frame::Confirm(_) => FrameType::Confirm,
            Frame::Credit(_) => FrameType::Credit,
            Frame::Request(_) => FrameType::Request,
            Frame::Deliver(_) => FrameType::Deliver,
            Frame::Ack(_) => FrameType::Ack,
            Frame::Nack(_) => FrameType::Nack,
            Frame::Error(_) => FrameType::Error,
            Frame::Heartbeat(_) => FrameType::Heartbeat,
            Frame::Blocked(_) => FrameType::Blocked,
            Frame::Progress(_) => FrameType::Progress,
            Frame::Refused(_) => FrameType::Refused,
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        match self {
            Frame::Hello(f) => f.encode_body(buf),
            Frame::Welcome(f) => f.encode_body(buf),
            Frame::Publish(f) => f.encode_body(buf),
            Frame::Confirm(f) => f.encode_body(buf),
            Frame::Credit(f) => f.encode_body(buf),
            Frame::Request(f) => f.encode_body(buf),
            Frame::Deliver(f) => f.encode_body(buf),
            Frame::Ack(f) => f.encode_body(buf),
            Frame::Nack(f) => f.encode_body(buf),
            Frame::Error(f) => f.encode_body(buf),
            Frame::Heartbeat(_) => {}
            Frame::Blocked(f) => f.encode_body(buf),
            Frame::Progress(f) => f.encode_body(buf),
            Frame::Refused(f) => f.encode_body(buf),
        }
    }

    pub(crate) fn decode_body(ty: FrameType, body: Bytes) -> Result<Self, ProtoError> {
        let r = Reader::new(ty.name(), body);
        Ok(match ty {
            FrameType::Hello => Frame::Hello(Hello::decode_body(r)?),
            FrameType::Welcome => Frame::Welcome(Welcome::decode_body(r)?),
            FrameType::Publish => Frame::Publish(Publish::decode_body(r)?),
            FrameType::Confirm => Frame::Confirm(Confirm::decode_body(r)?),
            FrameType::Credit => Frame::Credit(Grant::decode_body(r)?),
            FrameType::Request => Frame::Request(Request::decode_body(r)?),
            FrameType::Deliver => Frame::Deliver(Deliver::decode_body(r)?),
            FrameType::Ack => Frame::Ack(Ack::decode_body(r)?),
            FrameType::Nack => Frame::Nack(Nack::decode_body(r)?),
            FrameType::Error => Frame::Error(ErrorFrame::decode_body(r)?),
            FrameType::Heartbeat => Frame::Heartbeat(Heartbeat::decode_body(r)?),
            FrameType::Blocked => Frame::Blocked(Blocked::decode_body(r)?),
            FrameType::Progress => Frame::Progress(Progress::decode_body(r)?),
            FrameType::Refused => Frame::Refused(Refused::decode_body(r)?),
        })
    }
}
