//! The IO around a client session: dial, feed the session what the socket reads and the
//! deadlines it asks for, write what it says to send, and after a lost connection dial again
//! when it says to. Every rule is the session's (`flowgate_proto::session`); this file only
//! moves frames and sleeps.

use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flowgate_proto::io::{FrameReader, ReadError};
use flowgate_proto::session::{CONNECT_TIMEOUT, refusal_is_permanent};
use flowgate_proto::{ConsumerSession, Frame, ProducerSession, SessionError, encode};
use tokio::io::AsyncWriteExt;

use crate::net::clock::{now, sleep_until};
use crate::net::dial::{Dial, ReadHalf, WriteHalf};
use crate::net::error::ClientError;

/// What the driver needs of a session; the producer's and the consumer's both qualify.
pub(crate) trait ClientSession: Send + 'static {
    fn connect(&mut self, now: Instant);
    /// When to dial again, or `None` to stop.
    fn connection_lost(&mut self, now: Instant) -> Option<Instant>;
    fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), SessionError>;
    fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_transmit(&mut self, now: Instant) -> Option<Frame>;
    /// Drains the application events; true if there were any.
    fn take_events(&mut self) -> bool;
    fn is_connected(&self) -> bool;
    fn is_finished(&self) -> bool;
}

macro_rules! client_session {
    ($ty:ty, $lost:expr) => {
        impl ClientSession for $ty {
            fn connect(&mut self, now: Instant) {
                <$ty>::connect(self, now)
            }
            fn connection_lost(&mut self, now: Instant) -> Option<Instant> {
                $lost(self, now)
            }
            fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), SessionError> {
                <$ty>::handle_frame(self, now, frame)
            }
            fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
                <$ty>::handle_timeout(self, now)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$ty>::poll_timeout(self)
            }
            fn poll_transmit(&mut self, now: Instant) -> Option<Frame> {
                <$ty>::poll_transmit(self, now)
            }
            fn take_events(&mut self) -> bool {
                let mut any = false;
                while self.poll_event().is_some() {
                    any = true;
                }
                any
            }
            fn is_connected(&self) -> bool {
                <$ty>::is_connected(self)
            }
            fn is_finished(&self) -> bool {
                <$ty>::is_finished(self)
            }
        }
    };
}

client_session!(ProducerSession, |s: &mut ProducerSession, now| Some(
    s.connection_lost(now)
));
client_session!(ConsumerSession, ConsumerSession::connection_lost);

/// A session and what its handle waits on.
pub(crate) struct Inner<S> {
    pub session: S,
    /// A failure the client cannot recover from.
    pub failed: Option<ClientError>,
    /// The driver has stopped.
    pub stopped: bool,
    /// Handles waiting for the session to change.
    waiters: Vec<Waker>,
    /// Time the handle has waited (for credit, for deliveries), and since when it waits now.
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl<S> Inner<S> {
    /// Parks a waiting handle's waker and starts its wait clock.
    pub fn park(&mut self, waker: &Waker) {
        self.waiting_since.get_or_insert_with(now);
        if !self.waiters.iter().any(|w| w.will_wake(waker)) {
            self.waiters.push(waker.clone());
        }
    }

    /// The handle's wait is over.
    pub fn stop_waiting(&mut self) {
        if let Some(since) = self.waiting_since.take() {
            self.waited += now().saturating_duration_since(since);
        }
    }

    /// Time waited so far, a wait in progress included.
    pub fn waited(&self) -> Duration {
        self.waiting_since.map_or(self.waited, |s| {
            self.waited + now().saturating_duration_since(s)
        })
    }

    fn wake_all(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }
}

/// A session shared between its handle and its driver task, and the driver's wake-up.
pub(crate) struct Shared<S> {
    state: Mutex<Inner<S>>,
    /// Wakes the driver: something to write, or closing.
    pub driver: tokio::sync::Notify,
}

impl<S: ClientSession> Shared<S> {
    pub(crate) fn new(session: S) -> Self {
        Shared {
            state: Mutex::new(Inner {
                session,
                failed: None,
                stopped: false,
                waiters: Vec::new(),
                waited: Duration::ZERO,
                waiting_since: None,
            }),
            driver: tokio::sync::Notify::new(),
        }
    }

    /// The state. A panic elsewhere while holding the lock leaves nothing half-done that
    /// matters more than the panic, so a poisoned lock is recovered, not propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One open connection.
pub(crate) struct Conn {
    reader: FrameReader<ReadHalf>,
    writer: WriteHalf,
}

/// Dials and completes the handshake, all within [`CONNECT_TIMEOUT`].
pub(crate) async fn open<S: ClientSession>(
    shared: &Shared<S>,
    dial: &Dial,
    max_frame: u32,
) -> Result<Conn, ClientError> {
    let started = now();
    shared.lock().session.connect(started);
    let dialed = tokio::time::timeout(CONNECT_TIMEOUT, dial.connect()).await;
    let (rd, writer) = dialed.map_err(|_| SessionError::HandshakeTimeout(CONNECT_TIMEOUT))??;
    let mut conn = Conn {
        reader: FrameReader::new(rd, max_frame),
        writer,
    };
    serve(shared, &mut conn, Until::Connected).await?;
    Ok(conn)
}

/// Serves connections one after another until the session is finished or refused for good,
/// dialing again when the session says to.
pub(crate) async fn drive<S: ClientSession>(
    shared: &Shared<S>,
    dial: &Dial,
    max_frame: u32,
    first: Conn,
) {
    let mut next = Some(first);
    loop {
        let result = match next.take() {
            Some(mut conn) => serve(shared, &mut conn, Until::Finished).await,
            None => match open(shared, dial, max_frame).await {
                Ok(conn) => {
                    next = Some(conn);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        let retry_at = match result {
            Ok(()) => None,
            Err(e) if is_permanent(&e) => {
                shared.lock().failed = Some(e);
                None
            }
            Err(_) => shared.lock().session.connection_lost(now()),
        };
        match retry_at {
            Some(at) => sleep_until(at).await,
            None => break,
        }
    }
    let mut inner = shared.lock();
    inner.stopped = true;
    inner.wake_all();
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The handshake is done.
    Connected,
    /// The session is finished (`Ok`) or the connection broke (`Err`).
    Finished,
}

/// Runs one connection: write what the session says, feed it frames and deadlines.
async fn serve<S: ClientSession>(
    shared: &Shared<S>,
    conn: &mut Conn,
    until: Until,
) -> Result<(), ClientError> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let notified = shared.driver.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (connected, finished, deadline) = {
            let mut inner = shared.lock();
            let now = now();
            while let Some(frame) = inner.session.poll_transmit(now) {
                encode(&frame, &mut buf);
            }
            let s = &inner.session;
            (s.is_connected(), s.is_finished(), s.poll_timeout())
        };
        if !buf.is_empty() {
            conn.writer.write_all(&buf).await.map_err(ClientError::Io)?;
            buf.clear();
        }
        if until == Until::Connected && connected {
            return Ok(());
        }
        if finished {
            let _ = conn.writer.shutdown().await;
            return Ok(());
        }
        let deadline = deadline.unwrap_or_else(|| now() + CONNECT_TIMEOUT);
        tokio::select! {
            frame = conn.reader.next() => {
                let frame = frame.map_err(read_error)?;
                let mut inner = shared.lock();
                inner.session.handle_frame(now(), frame)?;
                if inner.session.take_events() {
                    inner.wake_all();
                }
            }
            _ = notified => {}
            _ = sleep_until(deadline) => shared.lock().session.handle_timeout(now())?,
        }
    }
}

/// A read failure as a client error.
fn read_error(e: ReadError) -> ClientError {
    match e {
        ReadError::Eof => ClientError::Disconnected,
        ReadError::Io(e) => ClientError::Io(e),
        ReadError::Proto(e) => ClientError::Protocol(e.to_string()),
    }
}

/// True for failures a reconnect cannot fix: the session's permanent refusals, and TLS.
fn is_permanent(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { code, .. } => refusal_is_permanent(*code),
        ClientError::Tls(_) => true,
        _ => false,
    }
}
