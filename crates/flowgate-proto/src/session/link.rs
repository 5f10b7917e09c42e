//! One client connection's life, shared by the producer and consumer sessions: `HELLO`, the
//! wait for `WELCOME` under [`CONNECT_TIMEOUT`], heartbeats when the client has said nothing
//! for a while, the broker's silence deadline, and the backoff between failed connects.

use std::time::{Duration, Instant};

use flowgate_core::Backoff;

use crate::session::{CONNECT_TIMEOUT, SessionError, heartbeat_every};
use crate::{Frame, Heartbeat, Hello, Welcome};

/// Reconnect backoff: starts here, doubles per failed connect...
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// ...up to here.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where the connection stands.
#[derive(Debug, Clone)]
enum State {
    /// No connection; dial again at `retry_at`.
    Down { retry_at: Instant },
    /// `HELLO` queued or sent; `WELCOME` must come by `deadline`.
    Handshaking { deadline: Instant, hello_sent: bool },
    /// Welcomed.
    Open {
        welcome: Welcome,
        last_read: Instant,
        last_write: Instant,
        heartbeat_due: bool,
    },
}

/// The connection part of a client session.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    hello: Hello,
    state: State,
    /// The wait before the next dial after a failed one.
    backoff: Backoff,
}

impl Link {
    /// A link that has not connected yet.
    pub(crate) fn new(hello: Hello, now: Instant) -> Self {
        Link {
            hello,
            state: State::Down { retry_at: now },
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
        }
    }

    /// The `HELLO` this link opens every connection with.
    pub(crate) fn hello(&self) -> &Hello {
        &self.hello
    }

    /// A connection attempt began at `now` (before dialing, so the deadline covers the dial).
    pub(crate) fn connect(&mut self, now: Instant) {
        self.state = State::Handshaking {
            deadline: now + CONNECT_TIMEOUT,
            hello_sent: false,
        };
    }

    /// The broker's `WELCOME`, once the handshake is done.
    pub(crate) fn welcome(&self) -> Option<&Welcome> {
        match &self.state {
            State::Open { welcome, .. } => Some(welcome),
            _ => None,
        }
    }

    /// True once welcomed: the session's own frames may go out.
    pub(crate) fn is_open(&self) -> bool {
        self.welcome().is_some()
    }

    /// The connection is gone. Returns when to dial again: at once after a session that had
    /// been welcomed, after the backoff (doubling) after a failed connect.
    pub(crate) fn lost(&mut self, now: Instant) -> Instant {
        let retry_at = match self.state {
            State::Open { .. } => now,
            _ => now + self.backoff.fail(),
        };
        self.state = State::Down { retry_at };
        retry_at
    }

    /// Takes a frame in. `Ok(Some(welcome))` when it completed the handshake, `Ok(None)` when
    /// it is the session's to handle.
    pub(crate) fn on_frame(
        &mut self,
        now: Instant,
        frame: &Frame,
    ) -> Result<Option<Welcome>, SessionError> {
        match &mut self.state {
            State::Open { last_read, .. } => {
                *last_read = now;
                Ok(None)
            }
            State::Handshaking { .. } => match frame {
                Frame::Welcome(w) => {
                    self.state = State::Open {
                        welcome: w.clone(),
                        last_read: now,
                        last_write: now,
                        heartbeat_due: false,
                    };
                    self.backoff.reset();
                    Ok(Some(w.clone()))
                }
                Frame::Error(e) => Err(SessionError::Refused {
                    code: e.code,
                    message: e.message.clone(),
                }),
                other => Err(SessionError::Protocol(format!(
                    "expected WELCOME, got {}",
                    other.frame_type().name()
                ))),
            },
            State::Down { .. } => Err(SessionError::Protocol(format!(
                "{} arrived with no connection",
                frame.frame_type().name()
            ))),
        }
    }

    /// Checks the deadlines at `now`: the handshake's, the broker's silence; queues a
    /// heartbeat when the client has been quiet for a third of the broker's idle deadline.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        match &mut self.state {
            State::Handshaking { deadline, .. } if now >= *deadline => {
                Err(SessionError::HandshakeTimeout(CONNECT_TIMEOUT))
            }
            State::Open {
                welcome,
                last_read,
                last_write,
                heartbeat_due,
            } => {
                let idle = idle_of(welcome);
                if now >= *last_read + idle {
                    return Err(SessionError::Silent(idle));
                }
                if now >= *last_write + heartbeat_every(idle) {
                    *heartbeat_due = true;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The next time [`Link::handle_timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Down { retry_at } => Some(*retry_at),
            State::Handshaking { deadline, .. } => Some(*deadline),
            State::Open {
                welcome,
                last_read,
                last_write,
                ..
            } => {
                let idle = idle_of(welcome);
                Some((*last_read + idle).min(*last_write + heartbeat_every(idle)))
            }
        }
    }

    /// The link's own frame to send (`HELLO`, `HEARTBEAT`), if one is due.
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Option<Frame> {
        match &mut self.state {
            State::Handshaking { hello_sent, .. } if !*hello_sent => {
                *hello_sent = true;
                Some(Frame::Hello(self.hello.clone()))
            }
            State::Open { heartbeat_due, .. } if *heartbeat_due => {
                self.sent(now);
                Some(Frame::Heartbeat(Heartbeat))
            }
            _ => None,
        }
    }

    /// The session sent a frame at `now`: no heartbeat is due for a while.
    pub(crate) fn sent(&mut self, now: Instant) {
        if let State::Open {
            last_write,
            heartbeat_due,
            ..
        } = &mut self.state
        {
            *last_write = now;
            *heartbeat_due = false;
        }
    }
}

/// Why a frame a `role` session has no use for ends the connection: the broker's `ERROR` is
/// its refusal, anything else is a protocol error.
pub(crate) fn unexpected(frame: Frame, role: &str) -> SessionError {
    match frame {
        Frame::Error(e) => SessionError::Refused {
            code: e.code,
            message: e.message,
        },
        other => SessionError::Protocol(format!(
            "{} is not valid for a {role}",
            other.frame_type().name()
        )),
    }
}

/// The broker's idle deadline, as announced.
fn idle_of(welcome: &Welcome) -> Duration {
    Duration::from_millis(u64::from(welcome.idle_timeout_ms))
}
