//! The wire's error codes: what rule a peer broke, as a number both sides agree on. Separate
//! from the Rust error types on either side (like h2's `Reason`).

use std::fmt;

/// An error code carried in an `ERROR` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The `HELLO` offered a protocol version this peer does not speak, or bad magic bytes.
    UnsupportedVersion,
    /// A frame's body did not match its type's layout.
    MalformedFrame,
    /// A length prefix exceeded the receiver's maximum frame size.
    FrameTooLarge,
    /// A type byte named no frame.
    UnknownFrameType,
    /// A valid frame at the wrong time or from the wrong role (e.g. `PUBLISH` from a consumer,
    /// a second `HELLO`).
    UnexpectedFrame,
    /// A `REQUEST` for zero events (`request(0)`).
    ZeroRequest,
    /// A `PUBLISH` beyond the credit granted.
    DataWithoutCredit,
    /// A `PUBLISH` whose sequence numbers skip ahead or name another producer.
    SequenceGap,
    /// An `ACK`/`NACK` of a delivery this consumer does not hold (not fatal).
    UnknownDelivery,
    /// An `ACK`/`NACK` of an earlier attempt of a redelivered event (not fatal).
    StaleAttempt,
    /// No `HELLO` within the handshake deadline.
    HandshakeTimeout,
    /// Nothing received within the idle deadline.
    IdleTimeout,
    /// A topic or group name outside the allowed characters or length.
    InvalidName,
    /// A consumer asked for another group mode (blocking or best effort, its max lag) than its
    /// group has.
    GroupConflict,
    /// The broker is shutting down.
    ShuttingDown,
    /// The broker could not make a batch durable (its disk log failed); nothing of that batch
    /// was confirmed. A producer keeps its events and retries.
    StorageFailed,
    /// No valid token, or a token not allowed this role on this topic.
    Unauthorized,
    /// An event larger than the topic can ever hold: no grant could cover it.
    EventTooLarge,
    /// A producer handed back more credit than it was granted.
    CreditMismatch,
    /// The topic does not exist and the broker creates no more: it serves only declared
    /// topics, or holds as many as its limit allows.
    UnknownTopic,
    /// The broker has as many connections open as its limit allows; try again later.
    TooManyConnections,
    /// A new consumer group, on a topic that has as many as the broker allows.
    TooManyGroups,
    /// A code this version does not know (from a newer peer).
    Other(u16),
}

impl ErrorCode {
    /// The number on the wire.
    pub const fn to_wire(self) -> u16 {
        match self {
            ErrorCode::UnsupportedVersion => 1,
            ErrorCode::MalformedFrame => 2,
            ErrorCode::FrameTooLarge => 3,
            ErrorCode::UnknownFrameType => 4,
            ErrorCode::UnexpectedFrame => 5,
            ErrorCode::ZeroRequest => 6,
            ErrorCode::DataWithoutCredit => 7,
            ErrorCode::SequenceGap => 8,
            ErrorCode::UnknownDelivery => 9,
            ErrorCode::StaleAttempt => 10,
            ErrorCode::HandshakeTimeout => 11,
            ErrorCode::IdleTimeout => 12,
            ErrorCode::InvalidName => 13,
            ErrorCode::GroupConflict => 14,
            ErrorCode::ShuttingDown => 15,
            ErrorCode::StorageFailed => 16,
            ErrorCode::Unauthorized => 17,
            ErrorCode::EventTooLarge => 18,
            ErrorCode::CreditMismatch => 19,
            ErrorCode::UnknownTopic => 20,
            ErrorCode::TooManyConnections => 21,
            ErrorCode::TooManyGroups => 22,
            ErrorCode::Other(n) => n,
        }
    }

    /// The code for a number on the wire.
    pub const fn from_wire(n: u16) -> Self {
        match n {
            1 => ErrorCode::UnsupportedVersion,
            2 => ErrorCode::MalformedFrame,
            3 => ErrorCode::FrameTooLarge,
            4 => ErrorCode::UnknownFrameType,
            5 => ErrorCode::UnexpectedFrame,
            6 => ErrorCode::ZeroRequest,
            7 => ErrorCode::DataWithoutCredit,
            8 => ErrorCode::SequenceGap,
            9 => ErrorCode::UnknownDelivery,
            10 => ErrorCode::StaleAttempt,
            11 => ErrorCode::HandshakeTimeout,
            12 => ErrorCode::IdleTimeout,
            13 => ErrorCode::InvalidName,
            14 => ErrorCode::GroupConflict,
            15 => ErrorCode::ShuttingDown,
            16 => ErrorCode::StorageFailed,
            17 => ErrorCode::Unauthorized,
            18 => ErrorCode::EventTooLarge,
            19 => ErrorCode::CreditMismatch,
            20 => ErrorCode::UnknownTopic,
            21 => ErrorCode::TooManyConnections,
            22 => ErrorCode::TooManyGroups,
            n => ErrorCode::Other(n),
        }
    }

    /// The kebab-case name used in logs and docs.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedVersion => "unsupported-version",
            ErrorCode::MalformedFrame => "malformed-frame",
            ErrorCode::FrameTooLarge => "frame-too-large",
            ErrorCode::UnknownFrameType => "unknown-frame-type",
            ErrorCode::UnexpectedFrame => "unexpected-frame",
            ErrorCode::ZeroRequest => "zero-request",
            ErrorCode::DataWithoutCredit => "data-without-credit",
            ErrorCode::SequenceGap => "sequence-gap",
            ErrorCode::UnknownDelivery => "unknown-delivery",
            ErrorCode::StaleAttempt => "stale-attempt",
            ErrorCode::HandshakeTimeout => "handshake-timeout",
            ErrorCode::IdleTimeout => "idle-timeout",
            ErrorCode::InvalidName => "invalid-name",
            ErrorCode::GroupConflict => "group-conflict",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::StorageFailed => "storage-failed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::EventTooLarge => "event-too-large",
            ErrorCode::CreditMismatch => "credit-mismatch",
            ErrorCode::UnknownTopic => "unknown-topic",
            ErrorCode::TooManyConnections => "too-many-connections",
            ErrorCode::TooManyGroups => "too-many-groups",
            ErrorCode::Other(_) => "other",
        }
    }

    /// Whether the sender closes the connection after this error. Only the two ack
    /// rejections are not fatal: they happen to honest consumers after a redelivery.
    pub const fn is_fatal(self) -> bool {
        !matches!(self, ErrorCode::UnknownDelivery | ErrorCode::StaleAttempt)
    }

    /// The code that tells a peer which topic rule its frame broke.
    pub fn of_topic_error(e: &flowgate_core::TopicError) -> ErrorCode {
        use flowgate_core::TopicError;
        match e {
            TopicError::UnknownConnection(_) => ErrorCode::UnexpectedFrame,
            TopicError::GroupMode { .. } => ErrorCode::GroupConflict,
            TopicError::TooManyGroups { .. } => ErrorCode::TooManyGroups,
            TopicError::ZeroRequest => ErrorCode::ZeroRequest,
            TopicError::DataWithoutCredit { .. } => ErrorCode::DataWithoutCredit,
            TopicError::SequenceGap { .. } => ErrorCode::SequenceGap,
            TopicError::ReturnedMoreThanHeld { .. } => ErrorCode::CreditMismatch,
            TopicError::EventTooLarge { .. } => ErrorCode::EventTooLarge,
            TopicError::UnknownDelivery(_) => ErrorCode::UnknownDelivery,
            TopicError::StaleAttempt { .. } => ErrorCode::StaleAttempt,
            // The topic stopped: it takes no more work until the broker restarts.
            TopicError::Books(_) => ErrorCode::ShuttingDown,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.to_wire())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_number() {
        for n in 0..=23u16 {
            assert_eq!(ErrorCode::from_wire(n).to_wire(), n);
        }
    }

    #[test]
    fn only_ack_rejections_are_not_fatal() {
        let not_fatal: Vec<u16> = (1..=22)
            .filter(|n| !ErrorCode::from_wire(*n).is_fatal())
            .collect();
        assert_eq!(not_fatal, vec![9, 10]);
    }
}
