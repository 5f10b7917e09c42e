//! The network [`Producer`]: `send(event).await` returns once the event is paid for with
//! credit the broker granted, and waits while there is none. A background driver owns the
//! connection: it publishes paid events in batches, records confirms, and after a lost
//! connection reconnects with backoff and resends everything the broker had not confirmed
//! (the broker drops what it already held, by producer id and sequence).
//!
//! Memory is bounded by credit: events exist in the producer only between being paid for and
//! being confirmed, and the broker never grants more than its free space.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flowgate_core::{Credit, CreditWindow, Event, EventId};
use flowgate_proto::{Blocked, DEFAULT_MAX_FRAME, Frame, Hello, Publish, WireEvent, encode};
use tokio::io::AsyncWriteExt;

use crate::net::dial::{ClientTls, Dial};
use crate::net::error::ClientError;
use crate::net::session::{self, Session};

/// How to reach the broker and publish.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `host:port` of the broker.
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

/// What a producer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerStats {
    /// Events accepted by [`Producer::send`] (paid for with credit).
    pub sent: u64,
    /// The highest sequence number the broker confirmed.
    pub confirmed_seq: u64,
    /// Time `send` spent waiting for credit.
    pub waited: Duration,
    /// Sessions opened (1 + reconnects).
    pub sessions: u64,
    /// Events resent after a reconnect.
    pub resent: u64,
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

#[derive(Default)]
struct State {
    producer_id: u64,
    /// Credit of the current session not yet spent.
    window: CreditWindow,
    /// The next sequence number to assign.
    next_seq: u64,
    /// Unconfirmed events from an earlier session, waiting for credit to be resent.
    resend: VecDeque<WireEvent>,
    /// Paid for, not yet written.
    to_send: VecDeque<WireEvent>,
    /// Written, not yet confirmed.
    inflight: VecDeque<WireEvent>,
    stats: ProducerStats,
    /// When the current wait (for credit, or for deliveries) began.
    waiting_since: Option<Instant>,
    /// The handle asked the driver to stop once everything is confirmed.
    closing: bool,
    /// A failure the producer cannot recover from.
    failed: Option<ClientError>,
    send_waker: Option<Waker>,
    flush_waker: Option<Waker>,
}

impl State {
    fn wake_senders(&mut self) {
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
        if let Some(w) = self.flush_waker.take() {
            w.wake();
        }
    }

    /// Pays for resends first, in order, from the session's credit.
    fn pay_resends(&mut self) {
        while let Some(front) = self.resend.front() {
            let bytes = front.credit_bytes();
            if self.window.try_spend(1, bytes).is_err() {
                self.window.block_on(bytes);
                break;
            }
            if let Some(e) = self.resend.pop_front() {
                self.stats.resent += 1;
                self.to_send.push_back(e);
            }
        }
    }

    fn unconfirmed(&self) -> usize {
        self.resend.len() + self.to_send.len() + self.inflight.len()
    }
}

type Shared = session::Shared<State>;

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
        let dial = Dial {
            addr: config.addr.clone(),
            tls: config.tls.clone(),
        };
        let session = session::open(&dial, &hello).await?;
        let shared = Arc::new(Shared::new(State {
            producer_id,
            next_seq: 1,
            ..State::default()
        }));
        start_session(&shared, &session);
        let driver = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { session::drive(&*shared, &dial, &hello, session).await })
        };
        Ok(Producer {
            shared,
            driver: Some(driver),
            parked: None,
        })
    }

    /// This instance's producer id.
    pub fn producer_id(&self) -> u64 {
        self.shared.lock().producer_id
    }

    /// Sends one event; the producer assigns its id (this producer, next sequence number) and,
    /// if zero, its creation time. Waits while there is no credit.
    ///
    /// # Cancel safety
    /// Cancel safe: the event is taken only once it is paid for; dropping the future before
    /// that drops the event, and nothing is half-sent.
    pub async fn send(&mut self, event: Event) -> Result<EventId, ClientError> {
        let bytes = event.size_bytes();
        poll_fn(|cx| self.poll_credit(cx, bytes)).await?;
        Ok(self.enqueue(event))
    }

    /// Sends a payload as a new event (no key, created now).
    pub async fn send_payload(&mut self, payload: Vec<u8>) -> Result<EventId, ClientError> {
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
        let bytes = event.size_bytes();
        let state = self.shared.lock();
        if let Some(e) = &state.failed {
            let e = e.duplicate();
            return Err(TrySendError::Failed(event, e));
        }
        if !state.resend.is_empty() || !state.window.admits(bytes) {
            return Err(TrySendError::NoCredit(event));
        }
        drop(state);
        Ok(self.enqueue(event))
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
        self.shared.lock().closing = true;
        self.shared.driver.notify_one();
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
        Ok(self.stats())
    }

    /// Credit available now.
    pub fn credit(&self) -> Credit {
        self.shared.lock().window.available()
    }

    /// Events sent but not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.shared.lock().unconfirmed()
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

    /// Ready when one event of `bytes` is covered by credit (and no resend is ahead of it).
    fn poll_credit(&mut self, cx: &mut Context<'_>, bytes: u64) -> Poll<Result<(), ClientError>> {
        let mut state = self.shared.lock();
        if let Some(e) = &state.failed {
            return Poll::Ready(Err(e.duplicate()));
        }
        if state.resend.is_empty() && state.window.admits(bytes) {
            if let Some(since) = state.waiting_since.take() {
                state.stats.waited += since.elapsed();
            }
            return Poll::Ready(Ok(()));
        }
        state.waiting_since.get_or_insert_with(Instant::now);
        state.send_waker = Some(cx.waker().clone());
        if state.resend.is_empty() {
            state.window.block_on(bytes);
        }
        let tell = state.window.notice_due();
        drop(state);
        if tell {
            self.shared.driver.notify_one();
        }
        Poll::Pending
    }

    fn poll_confirmed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        let mut state = self.shared.lock();
        if let Some(e) = &state.failed {
            return Poll::Ready(Err(e.duplicate()));
        }
        if state.unconfirmed() == 0 {
            return Poll::Ready(Ok(()));
        }
        state.flush_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Pays for and queues an event the caller checked is covered.
    fn enqueue(&mut self, event: Event) -> EventId {
        let mut state = self.shared.lock();
        let id = EventId::new(state.producer_id, state.next_seq);
        state.next_seq += 1;
        let created_us = if event.created_us == 0 {
            session::unix_now_us()
        } else {
            event.created_us
        };
        let wire = WireEvent::from_owned(Event {
            id,
            created_us,
            ..event
        });
        // Cannot fail: the caller saw the window admit this size under the same rules.
        let _ = state.window.try_spend(1, wire.credit_bytes());
        state.to_send.push_back(wire);
        state.stats.sent += 1;
        drop(state);
        self.shared.driver.notify_one();
        id
    }
}

/// Reads a producer's stats; cheap to clone.
#[derive(Clone)]
pub struct ProducerMonitor {
    shared: Arc<Shared>,
}

impl ProducerMonitor {
    /// What the producer has done so far, a wait for credit in progress included.
    pub fn stats(&self) -> ProducerStats {
        let state = self.shared.lock();
        let mut stats = state.stats;
        stats.waited = session::waited_so_far(stats.waited, state.waiting_since);
        stats
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

impl futures_sink::Sink<Event> for Producer {
    type Error = ClientError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        // A parked item goes first; then one event of any size needs at least one event of
        // credit, and its bytes are checked when it arrives.
        if let Some(bytes) = self.parked.as_ref().map(Event::size_bytes) {
            match self.poll_credit(cx, bytes) {
                Poll::Ready(Ok(())) => {
                    if let Some(event) = self.parked.take() {
                        self.enqueue(event);
                    }
                }
                other => return other,
            }
        }
        self.poll_credit(cx, 0)
    }

    fn start_send(mut self: Pin<&mut Self>, event: Event) -> Result<(), ClientError> {
        let bytes = event.size_bytes();
        if self.shared.lock().window.admits(bytes) {
            self.enqueue(event);
        } else {
            self.parked = Some(event);
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        if let Some(bytes) = self.parked.as_ref().map(Event::size_bytes) {
            match self.poll_credit(cx, bytes) {
                Poll::Ready(Ok(())) => {
                    if let Some(event) = self.parked.take() {
                        self.enqueue(event);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.poll_confirmed(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        self.poll_flush(cx)
    }
}

/// A random 64-bit id from the standard library's per-process random hasher keys, mixed with
/// the time and the process id. Never 0 (reserved).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(session::unix_now_us());
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// Resets per-session state after a `WELCOME`: everything unconfirmed is resent in order,
/// except what the broker says it already holds.
fn start_session(shared: &Shared, session: &Session) {
    let mut state = shared.lock();
    let held = session.welcome.resume_seq;
    state.window = CreditWindow::new();
    let mut pending: VecDeque<WireEvent> = state.inflight.drain(..).collect();
    pending.extend(state.to_send.drain(..));
    pending.extend(state.resend.drain(..));
    pending.retain(|e| e.id.seq > held);
    state.resend = pending;
    state.next_seq = state.next_seq.max(held + 1);
    state.stats.confirmed_seq = state.stats.confirmed_seq.max(held);
    state.stats.sessions += 1;
    state.wake_senders();
}

impl session::Driven for Shared {
    fn on_session(&self, s: &Session) {
        start_session(self, s);
    }

    async fn run(&self, s: Session) -> Result<(), ClientError> {
        run_session(self, s).await
    }

    fn closing(&self) -> bool {
        // A closing producer still reconnects: close() waits for every confirm.
        false
    }

    fn fail(&self, e: ClientError) {
        let mut state = self.lock();
        state.failed = Some(e);
        state.wake_senders();
    }
}

/// Serves one session until it breaks (`Err`) or the producer closes (`Ok`).
async fn run_session(shared: &Shared, mut s: Session) -> Result<(), ClientError> {
    let heartbeat_every = session::heartbeat_every(s.welcome.idle_timeout_ms);
    let broker_silence = Duration::from_millis(u64::from(s.welcome.idle_timeout_ms));
    // Batches stay well under the broker's frame limit.
    let max_body = (s.welcome.max_frame as usize).saturating_sub(64);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut last_write = Instant::now();
    loop {
        let notified = shared.driver.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let closing = {
            let mut state = shared.lock();
            let mut batch = Vec::new();
            let mut size = 4;
            while let Some(front) = state.to_send.front() {
                let len = front.encoded_len();
                if !batch.is_empty() && size + len > max_body {
                    break;
                }
                size += len;
                if let Some(e) = state.to_send.pop_front() {
                    batch.push(e);
                }
            }
            if !batch.is_empty() {
                state.inflight.extend(batch.iter().cloned());
                encode(&Frame::Publish(Publish { events: batch }), &mut buf);
            }
            // After the publishes that spent credit, so the broker counts what is handed back
            // against what is left.
            if let Some((returned, need_bytes)) = state.window.poll_blocked() {
                encode(
                    &Frame::Blocked(Blocked {
                        returned,
                        need_bytes,
                    }),
                    &mut buf,
                );
            }
            state.closing && state.unconfirmed() == 0
        };
        if closing {
            let _ = s.writer.shutdown().await;
            return Ok(());
        }
        if !buf.is_empty() {
            s.writer.write_all(&buf).await.map_err(ClientError::Io)?;
            buf.clear();
            last_write = Instant::now();
            // More may be waiting beyond one frame's worth.
            continue;
        }
        let heartbeat_at = last_write + heartbeat_every;
        let waited = session::wait(
            &mut s.reader,
            notified.as_mut(),
            heartbeat_at,
            broker_silence,
            &mut buf,
        );
        if let Some(frame) = waited.await? {
            handle_frame(shared, frame)?;
        }
    }
}

fn handle_frame(shared: &Shared, frame: Frame) -> Result<(), ClientError> {
    let mut state = shared.lock();
    match frame {
        Frame::Credit(g) => {
            // A grant of nothing would be the broker's bug; ignore it rather than fail.
            let _ = state.window.grant(g.credit);
            state.pay_resends();
            state.wake_senders();
            drop(state);
            shared.driver.notify_one();
        }
        Frame::Confirm(c) => {
            while state
                .inflight
                .front()
                .is_some_and(|e| e.id.seq <= c.up_to_seq)
            {
                state.inflight.pop_front();
            }
            state.stats.confirmed_seq = state.stats.confirmed_seq.max(c.up_to_seq);
            if let Some(w) = state.flush_waker.take() {
                w.wake();
            }
            drop(state);
            // A close may be waiting for this confirm.
            shared.driver.notify_one();
        }
        Frame::Heartbeat(_) => {}
        Frame::Error(e) => {
            return Err(ClientError::Refused {
                code: e.code,
                message: e.message,
            });
        }
        other => {
            return Err(ClientError::Protocol(format!(
                "{} is not valid for a producer",
                other.frame_type().name()
            )));
        }
    }
    Ok(())
}
