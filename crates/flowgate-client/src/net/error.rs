//! The client's error: opaque enough to grow, specific enough to act on.

use flowgate_core::Event;
use flowgate_proto::ErrorCode;

/// Why a producer or consumer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker refused with an error frame naming the rule.
    #[error("broker refused: {code}: {message}")]
    Refused {
        /// The rule.
        code: ErrorCode,
        /// The broker's words.
        message: String,
    },
    /// The socket failed.
    #[error("connection failed: {0}")]
    Io(std::io::Error),
    /// The broker closed the connection.
    #[error("broker closed the connection")]
    Disconnected,
    /// The broker sent something this client cannot accept.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The TLS handshake failed on a certificate or protocol matter (not a dropped
    /// connection): reconnecting would fail the same way.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The broker address cannot be used; says why.
    #[error("{0}")]
    Address(String),
    /// The handle was closed.
    #[error("closed")]
    Closed,
    /// An event larger than the [`Permit`](crate::net::Permit) it was sent with reserved.
    #[error("event of {needed} credit bytes exceeds the {reserved} the permit reserved")]
    BeyondPermit {
        /// What the permit reserved.
        reserved: u64,
        /// What the event costs ([`Event::size_bytes`]).
        needed: u64,
    },
    /// The event can never be sent: it is larger than one frame to this broker may carry.
    /// Nothing was sent; the producer goes on.
    #[error(
        "event of {payload} payload bytes (and {key} key bytes) exceeds the largest this topic accepts: {largest} bytes"
    )]
    EventTooLarge {
        /// Its payload's bytes.
        payload: u64,
        /// Its key's bytes.
        key: u64,
        /// The most payload plus key bytes one event may carry to this broker.
        largest: u64,
    },
}

/// A send that failed: the event, handed back as it was given, and why (tokio's `SendError`
/// convention). A caller may keep it, send it elsewhere, or retry on a new producer.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    /// The event, untouched: no id was given to it.
    pub event: Event,
    /// Why it was not sent.
    pub reason: ClientError,
}

impl From<SendError> for ClientError {
    /// Drops the event and keeps the reason, for callers that give up on it.
    fn from(e: SendError) -> Self {
        e.reason
    }
}

impl ClientError {
    /// The broker's error code, when the broker refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A copy for handing the same failure to several waiters.
    pub(crate) fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Refused { code, message } => ClientError::Refused {
                code: *code,
                message: message.clone(),
            },
            ClientError::Io(e) => ClientError::Io(std::io::Error::new(e.kind(), e.to_string())),
            ClientError::Disconnected => ClientError::Disconnected,
            ClientError::Protocol(m) => ClientError::Protocol(m.clone()),
            ClientError::Tls(m) => ClientError::Tls(m.clone()),
            ClientError::Closed => ClientError::Closed,
            ClientError::BeyondPermit { reserved, needed } => ClientError::BeyondPermit {
                reserved: *reserved,
                needed: *needed,
            },
            ClientError::Address(m) => ClientError::Address(m.clone()),
            ClientError::EventTooLarge {
                payload,
                key,
                largest,
            } => ClientError::EventTooLarge {
                payload: *payload,
                key: *key,
                largest: *largest,
            },
        }
    }
}

impl From<flowgate_proto::SessionError> for ClientError {
    fn from(e: flowgate_proto::SessionError) -> Self {
        match e {
            flowgate_proto::SessionError::Refused { code, message } => {
                ClientError::Refused { code, message }
            }
            other => ClientError::Protocol(other.to_string()),
        }
    }
}
