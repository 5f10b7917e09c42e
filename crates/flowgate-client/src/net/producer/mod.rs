//! The network [`Producer`]: `send(event).await` returns once the event is paid for with
//! credit the broker granted, and waits while there is none. The protocol (numbering, batching,
//! resending after a reconnect, `BLOCKED` notices) is `flowgate_proto::ProducerSession`'s; a
//! background driver (`driver.rs`) carries it over the connection and reconnects with
//! backoff. This file is the application's handle.
//!
//! Memory is bounded by credit: events exist in the producer only between being paid for and
//! being confirmed, and the broker never grants more than its free space.

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::{Context, Poll};

use flowgate_core::{Credit, Event, EventId};
use flowgate_proto::{DEFAULT_MAX_FRAME, Hello, ProducerSession};

mod sink;

pub use flowgate_proto::session::ProducerStats;

use crate::net::clock::{now, unix_now_us};
use crate::net::dial::{ClientTls, Dial};
use crate::net::driver;
use crate::net::error::{ClientError, SendError};
use crate::net::shared;

/// How to reach the broker and publish.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The broker: `host:port` or `flowgate://host:port`.
    pub addr: String,
    /// The topic to publish to.
    pub topic: String,
    /// This producer instance's id. `None` picks a fresh random one, so two instances never
    /// share ids; give the same id to a restarted instance to resume its sequence.
    pub producer_id: Option<u64>,
    /// The largest frame this producer accepts from the broker.
    pub max_frame: u32,
    /// The token for a broker that requires one.
    pub token: Option<String>,
    /// TLS to the broker; `None` for plain TCP.
    pub tls: Option<ClientTls>,
}

impl ProducerConfig {
    /// Defaults for everything but where and what.
    pub fn new(addr: impl Into<String>, topic: impl Into<String>) -> Self {
        ProducerConfig {
            addr: addr.into(),
            topic: topic.into(),
            producer_id: None,
            max_frame: DEFAULT_MAX_FRAME,
            token: None,
            tls: None,
        }
    }
}

/// Why a send did not happen; the event is handed back.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError {
    /// No credit right now (or a resend backlog ahead of it): try again later.
    #[error("no credit right now")]
    NoCredit(Event),
    /// The producer cannot send any more.
    #[error("producer failed: {1}")]
    Failed(Event, ClientError),
}

type Shared = shared::Shared<ProducerSession>;

/// Publishes events to one topic of a broker.
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), flowgate_client::ClientError> {
/// use flowgate_client::{Producer, ProducerConfig};
/// let mut producer = Producer::connect(ProducerConfig::new("127.0.0.1:7070", "orders")).await?;
/// producer.send_payload(b"hello".to_vec()).await?; // waits while the broker has no room
/// producer.close().await?; // returns once the broker confirmed everything
/// # Ok(()) }
/// ```
pub struct Producer {
    shared: Arc<Shared>,
    driver: Option<tokio::task::JoinHandle<()>>,
    /// The item `Sink::start_send` took while its bytes were not yet covered by credit.
    parked: Option<Event>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("producer_id", &format_args!("{:016x}", self.producer_id()))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Connects, completes the handshake and starts the driver. Fails if the first connection
    /// cannot be made or the broker refuses; later disconnects are retried with backoff.
    pub async fn connect(config: ProducerConfig) -> Result<Producer, ClientError> {
        let producer_id = config.producer_id.unwrap_or_else(random_id);
        let hello = Hello::producer(&config.topic, producer_id, config.max_frame)
            .with_token(config.token.clone().unwrap_or_default());
        let dial = Dial::new(&config.addr, config.tls.clone())?;
        let shared = Arc::new(Shared::new(ProducerSession::new(hello, now())));
        let conn = driver::open(&shared, &dial, config.max_frame).await?;
        let driver = {
            let shared = Arc::clone(&shared);
            let max_frame = config.max_frame;
            tokio::spawn(async move { driver::drive(&*shared, &dial, max_frame, conn).await })
        };
        Ok(Producer {
            shared,
            driver: Some(driver),
            parked: None,
        })
    }

    /// This instance's producer id.
    pub fn producer_id(&self) -> u64 {
        self.shared.lock().session.producer_id()
    }

    /// Sends one event; the producer assigns its id (this producer, next sequence number) and,
    /// if zero, its creation time. Waits while there is no credit. On failure the event comes
    /// back in the [`SendError`], as it was given.
    ///
    /// # Cancel safety
    /// Cancel safe: the event is taken only once it is paid for; dropping the future before
    /// that drops the event, and nothing is half-sent. A caller that must not lose the event
    /// to a cancelled wait uses [`Producer::reserve`] and builds it once credit is there.
    pub async fn send(&mut self, event: Event) -> Result<EventId, SendError> {
        if let Err(reason) = self.check_size(event.payload.len() as u64, key_len(&event)) {
            return Err(SendError { event, reason });
        }
        let bytes = event.size_bytes();
        if let Err(reason) = poll_fn(|cx| self.poll_credit(cx, bytes)).await {
            return Err(SendError { event, reason });
        }
        self.enqueue(event).map_err(|event| SendError {
            event,
            reason: ClientError::Closed,
        })
    }

    /// Waits for credit for one event of up to `size_bytes` (its [`Event::size_bytes`]) and
    /// returns a permit that sends it at once: the event need not exist until there is room
    /// for it, and a cancelled wait loses nothing.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is taken until [`Permit::send`].
    pub async fn reserve(&mut self, size_bytes: u64) -> Result<Permit<'_>, ClientError> {
        let payload = size_bytes.saturating_sub(flowgate_core::RECORD_OVERHEAD_BYTES);
        self.check_size(payload, 0)?;
        poll_fn(|cx| self.poll_credit(cx, size_bytes)).await?;
        Ok(Permit {
            producer: self,
            reserved: size_bytes,
        })
    }

    /// Sends a payload as a new event (no key, created now).
    pub async fn send_payload(&mut self, payload: Vec<u8>) -> Result<EventId, SendError> {
        let event = Event {
            id: EventId::default(),
            key: None,
            created_us: 0,
            payload,
        };
        self.send(event).await
    }

    /// Sends one event if credit allows it now; never waits.
    pub fn try_send(&mut self, event: Event) -> Result<EventId, TrySendError> {
        if let Some(e) = self.failure() {
            return Err(TrySendError::Failed(event, e));
        }
        if let Err(e) = self.check_size(event.payload.len() as u64, key_len(&event)) {
            return Err(TrySendError::Failed(event, e));
        }
        self.enqueue(event).map_err(TrySendError::NoCredit)
    }

    /// Waits until credit covers `events` events of `bytes` in all, so that many sends in a
    /// row go out without waiting: a caller that must send all of a batch or none of it
    /// waits here first (with its own deadline) and then sends. Nothing is taken; the
    /// returned future holds no borrow of the producer. The credit held grows as the topic
    /// grants room; a batch larger than the topic's capacity is never covered.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub fn room_for(
        &self,
        events: u64,
        bytes: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        // No BLOCKED notice: it would hand back the credit held, to be granted one event
        // again, and a batch would never be covered. Credit held accumulates instead, as the
        // topic grants room.
        wait_until(Arc::clone(&self.shared), true, move |session| {
            session.admits_batch(events, bytes)
        })
    }

    /// Waits until the broker confirmed every sequence number up to `seq`. The returned
    /// future holds no borrow of the producer, so sends may go on meanwhile.
    pub fn confirmed_through(
        &self,
        seq: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        // Waiting for confirms is not waiting for credit: the wait clock is not started.
        wait_until(Arc::clone(&self.shared), false, move |session| {
            session.stats().confirmed_seq >= seq
        })
    }

    /// Waits until the broker confirmed everything sent so far.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        poll_fn(|cx| self.poll_confirmed(cx)).await
    }

    /// Flushes, then closes the connection.
    pub async fn close(mut self) -> Result<ProducerStats, ClientError> {
        if let Some(event) = self.parked.take() {
            self.send(event).await?;
        }
        self.flush().await?;
        self.shared.lock().session.close();
        self.shared.driver.notify_one();
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
        Ok(self.stats())
    }

    /// Credit available now.
    pub fn credit(&self) -> Credit {
        self.shared.lock().session.credit()
    }

    /// The events the broker refused since the last call, oldest first: their topic's policy
    /// is `reject` and it was full, so they were not stored (and are not resent). Counted in
    /// [`ProducerStats::refused`]; the caller may retry them later, send them elsewhere or
    /// report them. At most [`flowgate_proto::MAX_UNTAKEN_REFUSED`] wait to be taken.
    pub fn take_refused(&mut self) -> Vec<Event> {
        self.shared.lock().session.take_refused()
    }

    /// Events sent but not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.shared.lock().session.unconfirmed()
    }

    /// What this producer has done so far (a wait in progress included).
    pub fn stats(&self) -> ProducerStats {
        self.monitor().stats()
    }

    /// A handle that reads this producer's stats from elsewhere (a metrics endpoint) while
    /// the producer waits in `send`.
    pub fn monitor(&self) -> ProducerMonitor {
        ProducerMonitor {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The largest payload (with no key) an event may carry to this broker: one frame under
    /// the frame limit the broker announced, less framing. Events beyond it are refused by
    /// `send` with [`ClientError::EventTooLarge`] before anything is sent.
    pub fn largest_payload(&self) -> u64 {
        self.shared.lock().session.largest_payload().unwrap_or(0)
    }

    /// Refuses an event larger than the topic accepts.
    fn check_size(&self, payload: u64, key: u64) -> Result<(), ClientError> {
        let largest = self.largest_payload();
        if payload + key > largest {
            return Err(ClientError::EventTooLarge {
                payload,
                key,
                largest,
            });
        }
        Ok(())
    }

    /// The failure the producer cannot recover from, if any.
    fn failure(&self) -> Option<ClientError> {
        failure(&self.shared)
    }

    /// Ready when one event of `bytes` is covered by credit (and no resend is ahead of it).
    fn poll_credit(&mut self, cx: &mut Context<'_>, bytes: u64) -> Poll<Result<(), ClientError>> {
        if let Some(e) = self.failure() {
            return Poll::Ready(Err(e));
        }
        let mut inner = self.shared.lock();
        if inner.session.admits(bytes) {
            inner.stop_waiting();
            return Poll::Ready(Ok(()));
        }
        inner.park(cx.waker());
        let tell = inner.session.wait_for(bytes);
        drop(inner);
        if tell {
            self.shared.driver.notify_one();
        }
        Poll::Pending
    }

    fn poll_confirmed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        if let Some(e) = self.failure() {
            return Poll::Ready(Err(e));
        }
        let mut inner = self.shared.lock();
        if inner.session.unconfirmed() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Waiting for confirms is not waiting for credit: the wait clock (`waited`) is not
        // started (it ran on until the next send, and counted a stage's whole commit).
        inner.listen(cx.waker());
        Poll::Pending
    }

    /// Stamps, numbers and pays for an event; hands it back when credit does not cover it.
    fn enqueue(&mut self, mut event: Event) -> Result<EventId, Event> {
        if event.created_us == 0 {
            event.created_us = unix_now_us();
        }
        let id = self.shared.lock().session.send(event)?;
        self.shared.driver.notify_one();
        Ok(id)
    }
}

/// Credit for one event, held by [`Producer::reserve`]: [`Permit::send`] sends without
/// waiting. Dropping it gives nothing up (credit is spent only by a send).
pub struct Permit<'a> {
    producer: &'a mut Producer,
    reserved: u64,
}

impl Permit<'_> {
    /// Sends `event`, which may cost at most what was reserved; a larger one, or one the
    /// producer can no longer send, comes back with the reason.
    pub fn send(self, event: Event) -> Result<EventId, SendError> {
        let needed = event.size_bytes();
        if needed > self.reserved {
            let reason = ClientError::BeyondPermit {
                reserved: self.reserved,
                needed,
            };
            return Err(SendError { event, reason });
        }
        if let Some(reason) = self.producer.failure() {
            return Err(SendError { event, reason });
        }
        self.producer.enqueue(event).map_err(|event| SendError {
            event,
            reason: ClientError::Closed,
        })
    }
}

/// Resolves once `ready` holds of the session, or with the producer's failure; holds no
/// borrow of the producer. `for_credit`: the wait counts in the producer's wait clock.
fn wait_until(
    shared: Arc<Shared>,
    for_credit: bool,
    ready: impl Fn(&ProducerSession) -> bool + Send + 'static,
) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
    poll_fn(move |cx| {
        if let Some(e) = failure(&shared) {
            return Poll::Ready(Err(e));
        }
        let mut inner = shared.lock();
        if ready(&inner.session) {
            if for_credit {
                inner.stop_waiting();
            }
            return Poll::Ready(Ok(()));
        }
        if for_credit {
            inner.park(cx.waker());
        } else {
            inner.listen(cx.waker());
        }
        Poll::Pending
    })
}

/// The failure a producer cannot recover from, if any.
fn failure(shared: &Shared) -> Option<ClientError> {
    let inner = shared.lock();
    match &inner.failed {
        Some(e) => Some(e.duplicate()),
        None if inner.stopped => Some(ClientError::Closed),
        None => None,
    }
}

fn key_len(event: &Event) -> u64 {
    event.key.as_ref().map_or(0, |k| k.len() as u64)
}

/// Reads a producer's stats; cheap to clone.
#[derive(Clone)]
pub struct ProducerMonitor {
    shared: Arc<Shared>,
}

impl ProducerMonitor {
    /// What the producer has done so far, a wait for credit in progress included.
    pub fn stats(&self) -> ProducerStats {
        let inner = self.shared.lock();
        ProducerStats {
            waited: inner.waited(),
            ..inner.session.stats()
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Dropped without close(): stop the driver; unconfirmed events are abandoned.
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

/// A random 64-bit id from the standard library's per-process random hasher keys, mixed with
/// the time and the process id. Never 0 (reserved).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(unix_now_us());
    h.write_u32(std::process::id());
    h.finish().max(1)
}
