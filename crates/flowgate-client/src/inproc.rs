//! The in-process pipe: a [`Producer`] and a [`Consumer`] joined by a bounded queue, with
//! the producer's sends governed by credit granted from the queue's free space and the
//! consumer's receipts governed by the demand it requested.
//!
//! All decisions are made by `flowgate-core` types under one mutex; this file only waits
//! (on [`Notify`]) and wakes. The loop:
//!
//! ```text
//! Consumer::request(n) ──► demand window ──► recv() delivers ≤ demand
//!                                             │ frees queue space
//! Producer::send().await ◄── credit window ◄──┘ granted from free space
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flowgate_core::{
    BoundedQueue, Credit, CreditError, CreditWindow, Demand, Event, OverflowPolicy, Push,
    QueueStats, REFILL_AT_HALF, grant_due,
};
use tokio::sync::Notify;

/// How a pipe is bounded and what it does when full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeConfig {
    /// Capacity in events and bytes; [`Credit::UNBOUNDED`] for no bound at all.
    pub capacity: Credit,
    /// What happens to an event that does not fit.
    pub policy: OverflowPolicy,
}

/// What happened to a sent event. Every outcome is final: nothing is retried behind the
/// caller's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The event is queued.
    Queued,
    /// The event is queued; this many of the oldest were evicted and counted (drop-oldest).
    QueuedEvicting(u64),
    /// The pipe was full; the event was discarded and counted (drop-newest).
    DroppedNewest,
}

/// Why an event was not sent. The event is handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The consumer is gone.
    Closed(Event),
    /// The pipe is full and its policy is [`OverflowPolicy::Reject`].
    Rejected(Event),
    /// The event is larger than the pipe's whole byte capacity.
    TooLarge(Event),
    /// Only from [`Producer::try_send`]: no credit now under [`OverflowPolicy::Block`].
    NoCredit(Event),
}

impl SendError {
    /// The event that was not sent.
    pub fn into_event(self) -> Event {
        match self {
            SendError::Closed(e)
            | SendError::Rejected(e)
            | SendError::TooLarge(e)
            | SendError::NoCredit(e) => e,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(e) => write!(f, "event {} not sent: the consumer is gone", e.id),
            SendError::Rejected(e) => {
                write!(
                    f,
                    "event {} rejected: the pipe is full and its policy is reject",
                    e.id
                )
            }
            SendError::TooLarge(e) => write!(
                f,
                "event {} of {} bytes is larger than the pipe's byte capacity",
                e.id,
                e.size_bytes()
            ),
            SendError::NoCredit(e) => write!(f, "event {} not sent: no credit right now", e.id),
        }
    }
}

impl std::error::Error for SendError {}

/// What a producer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerStats {
    /// Events accepted by the pipe (queued or dropped by its policy).
    pub sent: u64,
    /// Total time `send` spent waiting for credit.
    pub waited: Duration,
}

struct State {
    queue: BoundedQueue<Event>,
    /// Credit the producer holds: granted from free space, spent by sends.
    credit: CreditWindow,
    /// What the consumer requested and has not yet received.
    demand: CreditWindow,
    producer_alive: bool,
    consumer_alive: bool,
}

impl State {
    /// Grants the producer the free space not already promised to it, by the same rule as
    /// the broker's topics ([`grant_due`]).
    fn grant_credit_if_due(&mut self) {
        let held = Credit::new(self.queue.len(), self.queue.bytes());
        if let Some(credit) = grant_due(self.queue.capacity(), held, self.credit.available()) {
            // Cannot fail: `grant_due` never returns an empty grant.
            let _ = self.credit.grant(credit);
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Woken when the producer may have credit again or the consumer left.
    credit_changed: Notify,
    /// Woken when an event was queued or the producer left.
    data_ready: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated in a way that
        // matters more than the panic itself, so recover the guard instead of propagating.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Creates a pipe and returns its two ends.
pub fn pipe(config: PipeConfig) -> (Producer, Consumer) {
    let mut state = State {
        queue: BoundedQueue::new(config.capacity, config.policy),
        credit: CreditWindow::new(),
        demand: CreditWindow::new(),
        producer_alive: true,
        consumer_alive: true,
    };
    state.grant_credit_if_due();
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        credit_changed: Notify::new(),
        data_ready: Notify::new(),
    });
    (
        Producer {
            shared: Arc::clone(&shared),
            stats: ProducerStats::default(),
        },
        Consumer {
            shared,
            prefetch: None,
        },
    )
}

/// The sending end.
pub struct Producer {
    shared: Arc<Shared>,
    stats: ProducerStats,
}

impl Producer {
    /// Sends one event, waiting for credit under [`OverflowPolicy::Block`]. Under the drop
    /// policies it never waits; the outcome says whether the event was kept.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future while it waits drops the event with it. Use
    /// [`Producer::try_send`] to keep the event when there is no credit.
    pub async fn send(&mut self, event: Event) -> Result<Sent, SendError> {
        let mut event = event;
        let mut waiting_since: Option<Instant> = None;
        let shared = Arc::clone(&self.shared);
        loop {
            let notified = shared.credit_changed.notified();
            tokio::pin!(notified);
            // Register before checking, so a grant between the check and the await wakes us.
            notified.as_mut().enable();
            match self.try_send(event) {
                Err(SendError::NoCredit(back)) => event = back,
                other => {
                    if let Some(since) = waiting_since {
                        self.stats.waited += since.elapsed();
                    }
                    return other;
                }
            }
            waiting_since.get_or_insert_with(Instant::now);
            notified.await;
        }
    }

    /// Sends one event if it can be done now; never waits. Without credit under
    /// [`OverflowPolicy::Block`] the event comes back in [`SendError::NoCredit`].
    pub fn try_send(&mut self, event: Event) -> Result<Sent, SendError> {
        let size = event.size_bytes();
        let mut state = self.shared.lock();
        if !state.consumer_alive {
            return Err(SendError::Closed(event));
        }
        if size > state.queue.capacity().bytes {
            // Let the queue refuse and count it, so its ledger sees every refusal.
            return match state.queue.push(event, size) {
                Push::TooLarge(e) | Push::Full(e) | Push::Rejected(e) => {
                    Err(SendError::TooLarge(e))
                }
                _ => unreachable!("an event larger than the capacity is never queued"),
            };
        }
        if state.queue.policy() == OverflowPolicy::Block {
            if !state.credit.admits(size) {
                state.grant_credit_if_due();
                if !state.credit.admits(size) {
                    return Err(SendError::NoCredit(event));
                }
            }
            // Cannot fail: admitted just above.
            let _ = state.credit.try_spend(1, size);
        }
        let outcome = match state.queue.push(event, size) {
            Push::Queued => Sent::Queued,
            Push::QueuedEvicting(n) => Sent::QueuedEvicting(n),
            Push::DroppedNewest => Sent::DroppedNewest,
            Push::Rejected(e) => return Err(SendError::Rejected(e)),
            Push::TooLarge(e) => return Err(SendError::TooLarge(e)),
            // Credit is only granted from free space, so a spent credit always fits.
            Push::Full(e) => return Err(SendError::NoCredit(e)),
        };
        drop(state);
        self.stats.sent += 1;
        if outcome != Sent::DroppedNewest {
            self.shared.data_ready.notify_one();
        }
        Ok(outcome)
    }

    /// Credit held right now.
    pub fn credit(&self) -> Credit {
        self.shared.lock().credit.available()
    }

    /// What this producer has done so far.
    pub fn stats(&self) -> ProducerStats {
        self.stats
    }

    /// A handle that reads the pipe's counters without keeping either end alive.
    pub fn observer(&self) -> Observer {
        Observer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The pipe's queue counters.
    pub fn queue_stats(&self) -> QueueStats {
        self.shared.lock().queue.stats()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shared.lock().producer_alive = false;
        self.shared.data_ready.notify_one();
    }
}

/// Reads a pipe's counters from anywhere (a metrics sampler, a live view); holding one does
/// not keep the pipe open.
#[derive(Clone)]
pub struct Observer {
    shared: Arc<Shared>,
}

impl Observer {
    /// The pipe's queue counters.
    pub fn queue_stats(&self) -> QueueStats {
        self.shared.lock().queue.stats()
    }

    /// Credit the producer holds right now.
    pub fn producer_credit(&self) -> Credit {
        self.shared.lock().credit.available()
    }
}

/// The receiving end.
pub struct Consumer {
    shared: Arc<Shared>,
    /// With a prefetch set, the demand `recv` keeps up by itself (as the network consumer
    /// does); without one, the application calls [`Consumer::request`].
    prefetch: Option<Demand>,
}

/// Why [`Consumer::recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing is requested, so nothing would ever arrive: call [`Consumer::request`] first.
    NoDemand,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("recv with no outstanding demand would wait forever; request credit first")
    }
}

impl std::error::Error for RecvError {}

impl Consumer {
    /// Asks for up to `credit` more (cumulative). A request of nothing is an error.
    pub fn request(&mut self, credit: Credit) -> Result<(), CreditError> {
        self.shared.lock().demand.grant(credit)
    }

    /// Lets `recv` keep the demand up by itself: up to `prefetch` requested ahead of
    /// processing, topped up before each wait, so a call returns at most `prefetch.events`.
    /// A smaller prefetch takes effect as outstanding demand drains. A zero dimension is an
    /// error and changes nothing.
    pub fn set_prefetch(&mut self, prefetch: Credit) -> Result<(), CreditError> {
        match &mut self.prefetch {
            Some(demand) => demand.set_target(prefetch),
            None => {
                self.prefetch = Some(Demand::new(prefetch, REFILL_AT_HALF)?);
                Ok(())
            }
        }
    }

    /// Demand requested and not yet delivered.
    pub fn outstanding(&self) -> Credit {
        self.shared.lock().demand.available()
    }

    /// Waits for events and returns as many as are queued within the outstanding demand,
    /// oldest first. `Ok(None)` means the producer is gone and the queue is drained.
    ///
    /// # Cancel safety
    /// Cancel safe: events leave the queue only in the poll that returns them.
    pub async fn recv(&mut self) -> Result<Option<Vec<Event>>, RecvError> {
        loop {
            let notified = self.shared.data_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if let Some(demand) = &mut self.prefetch {
                    // The caller holds nothing it was sent: ask for the whole prefetch, since
                    // the next event may be larger than what is outstanding.
                    if let Some(request) = demand.poll_top_up() {
                        // Cannot fail: `Demand` never asks for nothing.
                        let _ = state.demand.grant(request);
                    }
                }
                // Within the prefetch, when there is one (demand requested by hand beyond it
                // stays outstanding for later calls).
                let limit = match &self.prefetch {
                    Some(demand) => state.demand.available().min(demand.outstanding()),
                    None => state.demand.available(),
                };
                if limit.events == 0 {
                    return Err(RecvError::NoDemand);
                }
                let mut batch = Vec::new();
                let taken = state.queue.pop_within(limit, &mut batch);
                if !batch.is_empty() {
                    // Cannot fail: `pop_within` stayed within the demand.
                    let _ = state.demand.try_spend(taken.events, taken.bytes);
                    if let Some(demand) = &mut self.prefetch {
                        let _ = demand.on_delivered(taken.events, taken.bytes);
                    }
                    let had = state.credit.available();
                    state.grant_credit_if_due();
                    if state.credit.available() != had {
                        drop(state);
                        self.shared.credit_changed.notify_one();
                    }
                    return Ok(Some(batch));
                }
                if !state.producer_alive {
                    return Ok(None);
                }
            }
            notified.await;
        }
    }

    /// The pipe's queue counters.
    pub fn queue_stats(&self) -> QueueStats {
        self.shared.lock().queue.stats()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shared.lock().consumer_alive = false;
        self.shared.credit_changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_core::EventId;

    fn event(id: u64, payload: usize) -> Event {
        Event {
            id: EventId::new(1, id),
            key: None,
            created_us: 0,
            payload: vec![0; payload],
        }
    }

    fn bounded(events: u64, policy: OverflowPolicy) -> PipeConfig {
        PipeConfig {
            capacity: Credit::new(events, 1 << 20),
            policy,
        }
    }

    #[tokio::test]
    async fn block_stops_the_producer_at_capacity_until_the_consumer_takes() {
        let (mut tx, mut rx) = pipe(bounded(4, OverflowPolicy::Block));
        for i in 0..4 {
            assert_eq!(tx.try_send(event(i, 10)), Ok(Sent::Queued));
        }
        assert!(matches!(tx.try_send(event(4, 10)), Err(SendError::NoCredit(e)) if e.id.seq == 4));
        rx.request(Credit::new(3, 1 << 20)).unwrap();
        let got = rx.recv().await.unwrap().unwrap();
        assert_eq!(
            got.iter().map(|e| e.id.seq).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(tx.try_send(event(4, 10)), Ok(Sent::Queued));
    }

    #[tokio::test]
    async fn consumer_receives_no_more_than_it_requested() {
        let (mut tx, mut rx) = pipe(bounded(100, OverflowPolicy::Block));
        for i in 0..10 {
            tx.try_send(event(i, 1)).unwrap();
        }
        rx.request(Credit::new(2, 1 << 20)).unwrap();
        assert_eq!(rx.recv().await.unwrap().unwrap().len(), 2);
        assert_eq!(rx.recv().await, Err(RecvError::NoDemand));
        assert_eq!(rx.request(Credit::ZERO), Err(CreditError::ZeroRequest));
    }

    #[tokio::test]
    async fn a_prefetch_keeps_demand_up_without_requests() {
        let (mut tx, mut rx) = pipe(bounded(100, OverflowPolicy::Block));
        for i in 0..10 {
            tx.try_send(event(i, 1)).unwrap();
        }
        assert_eq!(rx.set_prefetch(Credit::ZERO), Err(CreditError::ZeroRequest));
        rx.set_prefetch(Credit::new(4, 1 << 20)).unwrap();
        let sizes: Vec<usize> = [(); 3]
            .iter()
            .map(|()| futures_now(rx.recv()).unwrap().unwrap().len())
            .collect();
        assert_eq!(
            sizes,
            vec![4, 4, 2],
            "at most the prefetch per call, asked for again"
        );
        // Events of 200 bytes and more against 300 bytes of prefetch: one per call, each
        // received although less than its size is outstanding after the first.
        let (mut tx, mut rx) = pipe(bounded(100, OverflowPolicy::Block));
        rx.set_prefetch(Credit::new(4, 300)).unwrap();
        tx.try_send(event(10, 200)).unwrap();
        tx.try_send(event(11, 200)).unwrap();
        assert_eq!(futures_now(rx.recv()).unwrap().unwrap().len(), 1);
        assert_eq!(futures_now(rx.recv()).unwrap().unwrap().len(), 1);
    }

    /// Polls a future that must be ready at once.
    fn futures_now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the future was not ready"),
        }
    }

    #[tokio::test]
    async fn a_waiting_send_completes_when_space_frees() {
        let (mut tx, mut rx) = pipe(bounded(1, OverflowPolicy::Block));
        tx.send(event(0, 1)).await.unwrap();
        let sender = tokio::spawn(async move {
            tx.send(event(1, 1)).await.unwrap();
            tx.stats()
        });
        tokio::task::yield_now().await;
        rx.request(Credit::new(10, 1 << 20)).unwrap();
        assert_eq!(rx.recv().await.unwrap().unwrap()[0].id.seq, 0);
        let stats = sender.await.unwrap();
        assert_eq!(stats.sent, 2);
        assert_eq!(rx.recv().await.unwrap().unwrap()[0].id.seq, 1);
        assert_eq!(rx.recv().await, Ok(None), "producer gone, queue drained");
    }

    #[tokio::test]
    async fn drop_newest_never_waits_and_counts() {
        let (mut tx, rx) = pipe(bounded(2, OverflowPolicy::DropNewest));
        for i in 0..5 {
            tx.send(event(i, 1)).await.unwrap();
        }
        let s = rx.queue_stats();
        assert_eq!((s.queued, s.dropped_newest, s.pushed), (2, 3, 5));
    }

    #[tokio::test]
    async fn too_large_and_closed_hand_the_event_back() {
        let (mut tx, rx) = pipe(PipeConfig {
            capacity: Credit::new(10, 100),
            policy: OverflowPolicy::Block,
        });
        let err = tx.send(event(7, 500)).await.unwrap_err();
        assert!(matches!(&err, SendError::TooLarge(e) if e.id.seq == 7));
        drop(rx);
        let err = tx.send(event(8, 1)).await.unwrap_err();
        assert_eq!(err.into_event().id.seq, 8);
    }

    #[tokio::test]
    async fn unbounded_pipe_never_withholds_credit() {
        let (mut tx, _rx) = pipe(PipeConfig {
            capacity: Credit::UNBOUNDED,
            policy: OverflowPolicy::Block,
        });
        for i in 0..10_000 {
            assert_eq!(tx.try_send(event(i, 100)), Ok(Sent::Queued));
        }
        assert_eq!(tx.credit(), Credit::UNBOUNDED);
    }
}
