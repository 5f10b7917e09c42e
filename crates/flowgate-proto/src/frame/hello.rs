//! `HELLO` (client → broker, first frame): `magic [4] | version u16 | role u8 | producer_id u64
//! | topic str16 | group str16 | max_frame u32 | max_lag u64 [| token str16]`. `max_lag` is a
//! consumer's group mode: 0 blocks, N > 0 is best effort with at most N events unread (0 for
//! producers). The token is optional on the wire (absent = empty), so clients that never send
//! one keep working with open brokers.

use bytes::{BufMut, BytesMut};
use flowgate_core::GroupMode;

use super::Role;
use crate::error::ProtoError;
use crate::wire::{Reader, put_str16};
use crate::{MAGIC, VERSION};

/// Opens a session: who the client is and what it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub version: u16,
    /// Producer or consumer.
    pub role: Role,
    /// The producer instance id (producers; 0 for consumers).
    pub producer_id: u64,
    /// The topic.
    pub topic: String,
    /// The consumer group (consumers; empty for producers).
    pub group: String,
    /// The largest frame the client accepts.
    pub max_frame: u32,
    /// A consumer's group mode: 0 (the default) blocks, N > 0 is best effort, skipping the
    /// oldest unread events beyond N. Consumers of a group must agree.
    pub max_lag: u64,
    /// The client's credential for brokers that require one; empty for none. Send it only
    /// over TLS outside a trusted network: it travels as written.
    pub token: String,
}

impl Hello {
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_slice(&MAGIC);
        buf.put_u16(self.version);
        buf.put_u8(self.role.to_wire());
        buf.put_u64(self.producer_id);
        put_str16(buf, &self.topic);
        put_str16(buf, &self.group);
        buf.put_u32(self.max_frame);
        buf.put_u64(self.max_lag);
        if !self.token.is_empty() {
            put_str16(buf, &self.token);
        }
    }

    pub(crate) fn decode_body(mut r: Reader) -> Result<Self, ProtoError> {
        let magic = r.bytes(4, "magic")?;
        if magic.as_ref() != MAGIC {
            return Err(ProtoError::malformed(
                "HELLO",
                "bad magic bytes (not a flowgate client)",
            ));
        }
        let version = r.u16("version")?;
        let role = Role::from_wire(r.u8("role")?)?;
        let hello = Hello {
            version,
            role,
            producer_id: r.u64("producer_id")?,
            topic: r.str16("topic")?,
            group: r.str16("group")?,
            max_frame: r.u32("max_frame")?,
            max_lag: r.u64("max_lag")?,
            token: String::new(),
        };
        let hello = if r.remaining() > 0 {
            Hello {
                token: r.str16("token")?,
                ..hello
            }
        } else {
            hello
        };
        r.finish()?;
        Ok(hello)
    }

    /// A producer's hello for the current version.
    pub fn producer(topic: &str, producer_id: u64, max_frame: u32) -> Self {
        Hello {
            version: VERSION,
            role: Role::Producer,
            producer_id,
            topic: topic.into(),
            group: String::new(),
            max_frame,
            max_lag: 0,
            token: String::new(),
        }
    }

    /// A consumer's hello for the current version.
    pub fn consumer(topic: &str, group: &str, max_frame: u32) -> Self {
        Hello {
            version: VERSION,
            role: Role::Consumer,
            producer_id: 0,
            topic: topic.into(),
            group: group.into(),
            max_frame,
            max_lag: 0,
            token: String::new(),
        }
    }

    /// The same consumer's hello for a best-effort group (`Some(n)`, n > 0) or a blocking one.
    pub fn with_max_lag(self, max_lag: Option<u64>) -> Self {
        Hello {
            max_lag: max_lag.unwrap_or(0),
            ..self
        }
    }

    /// The group mode a consumer's hello asks for.
    pub fn group_mode(&self) -> GroupMode {
        GroupMode::from_max_lag((self.max_lag > 0).then_some(self.max_lag))
    }

    /// The same hello carrying `token`.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        Hello {
            token: token.into(),
            ..self
        }
    }
}
