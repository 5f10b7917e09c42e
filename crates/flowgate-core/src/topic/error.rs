//! How a topic refuses an input: [`TopicError`], one variant per broken rule, reported to the
//! peer that broke it (or, for [`TopicError::Books`], a bug in the topic itself).

use std::fmt;

use super::tally::BooksError;
use super::{ConnId, GroupMode};
use crate::credit::Credit;

/// A broken rule, reported to the peer that broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// The connection is not attached to this topic in that role.
    UnknownConnection(ConnId),
    /// A consumer asked for another mode than its group has.
    GroupMode {
        /// The group.
        group: String,
        /// The mode it has.
        has: GroupMode,
        /// The mode the consumer asked for.
        asked: GroupMode,
    },
    /// A new group, on a topic that has as many as it takes.
    TooManyGroups {
        /// The group the consumer named.
        group: String,
        /// How many the topic takes.
        limit: usize,
    },
    /// A consumer asked for zero events.
    ZeroRequest,
    /// A producer published more than its credit.
    DataWithoutCredit {
        /// What the batch needed.
        wanted: Credit,
        /// What the producer held.
        available: Credit,
    },
    /// A producer's sequence numbers skipped ahead.
    SequenceGap {
        /// The next sequence number the topic expected (or any lower one, a duplicate).
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// A blocked producer handed back more credit than it held.
    ReturnedMoreThanHeld {
        /// What it handed back.
        returned: Credit,
        /// What the topic had granted it and not yet seen spent.
        held: Credit,
    },
    /// A blocked producer waits for an event that can never fit the topic.
    EventTooLarge {
        /// The event's credit cost in bytes.
        bytes: u64,
        /// The most bytes the topic can ever grant at once.
        limit: u64,
    },
    /// An ack or nack for a delivery this consumer does not hold.
    UnknownDelivery(u64),
    /// An ack or nack for an earlier attempt of a delivery that was redelivered since.
    StaleAttempt {
        /// The delivery.
        delivery_id: u64,
        /// The attempt named.
        got: u32,
        /// The attempt outstanding.
        current: u32,
    },
    /// The topic's books stopped adding up (a bug); it takes no more work.
    Books(BooksError),
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::UnknownConnection(c) => write!(f, "connection {c} is not attached"),
            TopicError::GroupMode { group, has, asked } => write!(
                f,
                "group '{group}' is {has}, and this consumer asks for it to be {asked}; every consumer of a group must agree"
            ),
            TopicError::TooManyGroups { group, limit } => write!(
                f,
                "read by {limit} consumer groups already, the most it takes, so not by a new group '{group}'"
            ),
            TopicError::ZeroRequest => {
                f.write_str("request for zero events (request(0) is invalid)")
            }
            TopicError::DataWithoutCredit { wanted, available } => {
                write!(f, "published {wanted} with only {available} of credit")
            }
            TopicError::SequenceGap { expected, got } => {
                write!(f, "sequence gap: expected {expected}, got {got}")
            }
            TopicError::ReturnedMoreThanHeld { returned, held } => {
                write!(
                    f,
                    "handed back {returned} of credit while holding only {held}"
                )
            }
            TopicError::EventTooLarge { bytes, limit } => write!(
                f,
                "an event costing {bytes} bytes of credit can never fit: the topic grants at most {limit} bytes"
            ),
            TopicError::UnknownDelivery(id) => {
                write!(f, "delivery {id} is not held by this consumer")
            }
            TopicError::StaleAttempt {
                delivery_id,
                got,
                current,
            } => write!(
                f,
                "stale ack for delivery {delivery_id}: attempt {got}, outstanding attempt {current}"
            ),
            TopicError::Books(e) => write!(f, "{e}; the topic takes no more work"),
        }
    }
}

impl std::error::Error for TopicError {}
