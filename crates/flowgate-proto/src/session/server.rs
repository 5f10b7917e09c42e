//! The broker's side of one connection: the `HELLO` must come within the handshake deadline
//! and pass its checks (version, names, producer id, frame limit); after it, each role may
//! send only its own frames, a producer may publish only under its own id, and a peer that
//! says nothing for the idle deadline is cut off. The session turns frames into [`Input`]s
//! for the topic; what the topic answers goes out through the broker's outbox.

use std::time::{Duration, Instant};

use flowgate_core::{Credit, RECORD_OVERHEAD_BYTES};

use crate::{
    Blocked, Deliver, ErrorCode, Frame, Hello, MIN_MAX_FRAME, Role, Settle, VERSION, Welcome,
    WireEvent, names,
};

/// The broker's limits for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// The largest frame the broker accepts (announced in `WELCOME`).
    pub max_frame: u32,
    /// A peer silent this long is disconnected (announced in `WELCOME`).
    pub idle_timeout: Duration,
    /// The TLS handshake and `HELLO` together must finish within this.
    pub handshake_timeout: Duration,
}

/// Why the broker ends a connection: the code and words of the `ERROR` frame it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule broken.
    pub code: ErrorCode,
    /// Which value broke it, for the peer's logs.
    pub message: String,
}

impl Refusal {
    /// A refusal for `code`, explained by `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// What a frame asks of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A checked `HELLO`: authorize it, attach the peer, then send
    /// [`ServerSession::welcome`].
    Hello(Hello),
    /// A producer's batch, every event under its own producer id.
    Publish(Vec<WireEvent>),
    /// A producer is blocked and hands back credit.
    Blocked(Blocked),
    /// A consumer asks for more.
    Request(Credit),
    /// A consumer acknowledges.
    Ack(Vec<Settle>),
    /// A consumer refuses.
    Nack(Vec<Settle>),
    /// A consumer is still working on these: restart their ack deadline.
    Progress(Vec<Settle>),
    /// The peer said goodbye with an `ERROR`; end the connection quietly.
    Leave,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Waiting for `HELLO` until `deadline`.
    Hello { deadline: Instant },
    /// The peer said `HELLO`.
    Open { hello: Hello, last_read: Instant },
}

/// One connection, seen from the broker.
#[derive(Debug, Clone)]
pub struct ServerSession {
    limits: ServerLimits,
    phase: Phase,
}

impl ServerSession {
    /// A connection accepted at `now`.
    pub fn new(limits: ServerLimits, now: Instant) -> Self {
        ServerSession {
            limits,
            phase: Phase::Hello {
                deadline: now + limits.handshake_timeout,
            },
        }
    }

    /// The peer's `HELLO`, once it came.
    pub fn hello(&self) -> Option<&Hello> {
        match &self.phase {
            Phase::Open { hello, .. } => Some(hello),
            Phase::Hello { .. } => None,
        }
    }

    /// The `WELCOME` for this connection: the broker's limits, the largest event of a topic
    /// whose largest grant is `largest_grant` credit bytes, and the producer's resume point
    /// (0 for a consumer).
    pub fn welcome(
        &self,
        resume_seq: u64,
        largest_grant: u64,
        refused: Vec<(u64, u64)>,
    ) -> Welcome {
        Welcome {
            refused,
            version: VERSION,
            max_frame: self.limits.max_frame,
            resume_seq,
            idle_timeout_ms: u32::try_from(self.limits.idle_timeout.as_millis())
                .unwrap_or(u32::MAX),
            largest_payload: self.largest_payload(largest_grant),
        }
    }

    /// The largest key plus payload an event may carry to a topic whose largest grant is
    /// `largest_grant` credit bytes: it must fit a lone `DELIVER` within the broker's frame
    /// limit, and its credit cost must fit one grant.
    pub fn largest_payload(&self, largest_grant: u64) -> u64 {
        Deliver::largest_lone_payload(self.limits.max_frame)
            .min(largest_grant.saturating_sub(RECORD_OVERHEAD_BYTES))
    }

    /// A consumer must be able to read the largest event of its topic delivered alone;
    /// otherwise it would refuse that frame, and get it again, for ever. Refused at `HELLO`
    /// with the numbers.
    pub fn check_consumer_frame(&self, largest_grant: u64) -> Result<(), Refusal> {
        let Some(hello) = self.hello().filter(|h| h.role == Role::Consumer) else {
            return Ok(());
        };
        let largest = self.largest_payload(largest_grant);
        let needed = Deliver::lone_frame_len(largest);
        if u64::from(hello.max_frame) < needed {
            return Err(Refusal::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "this topic accepts events of up to {largest} bytes of key and payload, which \
                     take a {needed}-byte DELIVER frame; the consumer's max_frame is {} bytes: \
                     raise it to at least {needed}",
                    hello.max_frame
                ),
            ));
        }
        Ok(())
    }

    /// Takes a frame from the peer. `Ok(None)` for a frame that needs nothing (a heartbeat);
    /// `Err` ends the connection with that `ERROR`.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<Option<Input>, Refusal> {
        let hello = match &mut self.phase {
            Phase::Hello { .. } => {
                let Frame::Hello(hello) = frame else {
                    return Err(Refusal::new(
                        ErrorCode::UnexpectedFrame,
                        format!("expected HELLO, got {}", frame.frame_type().name()),
                    ));
                };
                check_hello(&hello)?;
                self.phase = Phase::Open {
                    hello: hello.clone(),
                    last_read: now,
                };
                return Ok(Some(Input::Hello(hello)));
            }
            Phase::Open { hello, last_read } => {
                *last_read = now;
                &*hello
            }
        };
        let input = match (hello.role, frame) {
            (_, Frame::Heartbeat(_)) => return Ok(None),
            (_, Frame::Error(_)) => Input::Leave,
            (Role::Producer, Frame::Publish(p)) => {
                if let Some(e) = p.events.iter().find(|e| e.id.producer != hello.producer_id) {
                    return Err(Refusal::new(
                        ErrorCode::SequenceGap,
                        format!(
                            "event {} names producer {:016x}; this session is producer {:016x}",
                            e.id, e.id.producer, hello.producer_id
                        ),
                    ));
                }
                Input::Publish(p.events)
            }
            (Role::Producer, Frame::Blocked(b)) => Input::Blocked(b),
            (Role::Consumer, Frame::Request(r)) => Input::Request(r.credit),
            (Role::Consumer, Frame::Ack(a)) => Input::Ack(a.items),
            (Role::Consumer, Frame::Nack(n)) => Input::Nack(n.items),
            (Role::Consumer, Frame::Progress(p)) => Input::Progress(p.items),
            (role, other) => {
                return Err(Refusal::new(
                    ErrorCode::UnexpectedFrame,
                    format!(
                        "{} is not valid from a {role:?} after the handshake",
                        other.frame_type().name()
                    ),
                ));
            }
        };
        Ok(Some(input))
    }

    /// Checks the deadlines at `now`: no `HELLO` within the handshake deadline, or nothing
    /// from the peer within the idle deadline, ends the connection.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Refusal> {
        match &self.phase {
            Phase::Hello { deadline } if now >= *deadline => Err(Refusal::new(
                ErrorCode::HandshakeTimeout,
                format!("no HELLO within {:?}", self.limits.handshake_timeout),
            )),
            Phase::Open { last_read, .. } if now >= *last_read + self.limits.idle_timeout => {
                Err(Refusal::new(
                    ErrorCode::IdleTimeout,
                    format!("nothing received for {:?}", self.limits.idle_timeout),
                ))
            }
            _ => Ok(()),
        }
    }

    /// When [`ServerSession::handle_timeout`] next has something to check.
    pub fn poll_timeout(&self) -> Instant {
        match &self.phase {
            Phase::Hello { deadline } => *deadline,
            Phase::Open { last_read, .. } => *last_read + self.limits.idle_timeout,
        }
    }
}

/// Checks a `HELLO` before anything is attached.
fn check_hello(hello: &Hello) -> Result<(), Refusal> {
    if hello.version != VERSION {
        return Err(Refusal::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} offered; this broker speaks {VERSION}",
                hello.version
            ),
        ));
    }
    let invalid = |e| Refusal::new(ErrorCode::InvalidName, e);
    names::validate("topic", &hello.topic).map_err(invalid)?;
    match hello.role {
        Role::Consumer => names::validate("group", &hello.group).map_err(invalid)?,
        Role::Producer if hello.producer_id == 0 => {
            return Err(Refusal::new(
                ErrorCode::MalformedFrame,
                "producer id 0 is reserved; pick any other",
            ));
        }
        Role::Producer => {}
    }
    if hello.max_frame < MIN_MAX_FRAME {
        return Err(Refusal::new(
            ErrorCode::MalformedFrame,
            format!(
                "max_frame {} is below the minimum {MIN_MAX_FRAME}",
                hello.max_frame
            ),
        ));
    }
    Ok(())
}
