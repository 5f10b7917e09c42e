//! The protocol's sessions, sans-IO: every rule of a connection as a state machine that is fed
//! frames and time and says what to send, in the manner of quinn-proto. No sockets, no clock
//! reads, no async: the caller passes `now` in, and the broker's and the client's drivers are
//! loops that read, feed, write and sleep until [`poll_timeout`](ClientSession::poll_timeout).
//!
//! | type | side | what it owns |
//! |---|---|---|
//! | [`ProducerSession`] | client | sequence numbers, credit, batch packing to the broker's frame limit, the resend queue and its trimming on confirm, `BLOCKED` notices |
//! | [`ConsumerSession`] | client | demand (core's [`Demand`](flowgate_core::Demand)), the inbox, acks and nacks and which session they belong to |
//! | [`ServerSession`] | broker | the `HELLO` checks, which frames each role may send, the producer-id rule, the handshake and idle deadlines |
//! | [`memory`] | broker | what an in-memory topic does with a server session's inputs, as frames (for the harness and the simulator) |
//!
//! Both client sessions live across connections: a lost connection is reported with
//! `connection_lost(now)`, which says when to dial again (the reconnect backoff), and the next
//! `connect(now)` starts a new handshake. What a connection's life has in common for the two
//! (handshake deadline, heartbeats, the broker's silence, backoff) is `link.rs`.
//!
//! Every input is `handle_frame(now, frame)` or `handle_timeout(now)`; every output is a frame
//! from `poll_transmit(now)`, an application event from `poll_event()`, or the next deadline
//! from `poll_timeout()`.

mod consumer;
mod link;
pub mod memory;
mod producer;
mod server;

use std::time::Duration;

use std::time::Instant;

use crate::Frame;

pub use consumer::{ConsumerEvent, ConsumerSession, ConsumerStats, Delivery, DeliveryTag};
pub use producer::{MAX_UNTAKEN_REFUSED, ProducerEvent, ProducerSession, ProducerStats};
pub use server::{Input, Refusal, ServerLimits, ServerSession};

use crate::ErrorCode;

/// What a client session is to whoever carries it (the client's driver, the test harness,
/// the simulator): a connection's life and the frames and deadlines that make it up. The
/// application's side (send, take, ack, ...) is each session's own.
pub trait ClientSession {
    /// What happened that the application may be waiting for.
    type Event;
    /// A connection attempt begins at `now` (before dialing, so the handshake deadline covers
    /// the dial); `HELLO` is the next frame to send.
    fn connect(&mut self, now: Instant);
    /// The connection is gone. Returns when to dial again, or `None` for not at all.
    fn connection_lost(&mut self, now: Instant) -> Option<Instant>;
    /// True once the current connection is welcomed.
    fn is_connected(&self) -> bool;
    /// Takes a frame from the broker; `Err` ends the connection.
    fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), SessionError>;
    /// Checks the connection's deadlines; `Err` ends the connection.
    fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError>;
    /// When to call `handle_timeout` next (or, with no connection, when to dial again).
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next frame to send, if any.
    fn poll_transmit(&mut self, now: Instant) -> Option<Frame>;
    /// The next application event, if any.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// True when the application closed and the session has nothing left to do.
    fn is_finished(&self) -> bool;
}

/// How long a connect plus handshake may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a client session's connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The broker refused with an error frame naming the rule.
    #[error("broker refused: {code}: {message}")]
    Refused {
        /// The rule.
        code: ErrorCode,
        /// The broker's words.
        message: String,
    },
    /// The broker sent something this client cannot accept.
    #[error("{0}")]
    Protocol(String),
    /// No `WELCOME` came within [`CONNECT_TIMEOUT`] of starting to connect.
    #[error("no WELCOME within {0:?}")]
    HandshakeTimeout(Duration),
    /// Nothing arrived from the broker for its idle deadline (it heartbeats three times as
    /// often).
    #[error("broker silent for {0:?}")]
    Silent(Duration),
}

impl SessionError {
    /// True for refusals a reconnect cannot fix: the client stops and reports them instead of
    /// retrying forever.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SessionError::Refused { code, .. } if refusal_is_permanent(*code))
    }
}

/// True for the broker's refusals that a reconnect cannot fix: bad names, wrong version, a
/// group conflict, a malformed frame, no authority, an event or frame no limit will admit, a
/// topic the broker will not create, a group beyond the topic's limit. (A broker at its connection limit is worth retrying.)
pub fn refusal_is_permanent(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::InvalidName
            | ErrorCode::UnsupportedVersion
            | ErrorCode::GroupConflict
            | ErrorCode::MalformedFrame
            | ErrorCode::Unauthorized
            | ErrorCode::EventTooLarge
            | ErrorCode::FrameTooLarge
            | ErrorCode::UnknownTopic
            | ErrorCode::TooManyGroups
    )
}

/// How often to send a heartbeat to a peer whose idle deadline is `idle`: three times within
/// it, so one late heartbeat never ends a session. Deadlines below 300 ms count as 300 ms.
pub fn heartbeat_every(idle: Duration) -> Duration {
    idle.max(Duration::from_millis(300)) / 3
}
