//! The producer's side of the protocol: it numbers events, spends the broker's credit on them,
//! packs them into `PUBLISH` frames under the broker's frame limit, keeps each one until the
//! broker confirms it, and after a reconnect resends what was not confirmed, in order, except
//! what the broker says it already holds (`WELCOME.resume_seq`).
//!
//! Memory is bounded by credit: an event is held only between being paid for and being
//! confirmed, and the broker never grants more than its free space.

use std::collections::VecDeque;
use std::time::Instant;

use flowgate_core::{Credit, CreditWindow, Event, EventId};

use crate::session::link::{self, Link};
use crate::session::{ClientSession, SessionError};
use crate::{Blocked, Frame, Hello, Publish, WireEvent};

/// The frame header and the batch's count, with room to spare: a batch's events fill at most
/// the broker's frame limit less this.
const BATCH_OVERHEAD: usize = 64;

/// What a producer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerStats {
    /// Events accepted by `send` (paid for with credit).
    pub sent: u64,
    /// The highest sequence number the broker confirmed.
    pub confirmed_seq: u64,
    /// Time `send` spent waiting for credit (measured by the driver; zero in the session).
    pub waited: std::time::Duration,
    /// Sessions opened (1 + reconnects).
    pub sessions: u64,
    /// Events resent after a reconnect.
    pub resent: u64,
    /// Events the broker refused (a full topic whose policy is `reject`), handed back by
    /// [`ProducerSession::take_refused`].
    pub refused: u64,
}

/// What happened that the application may be waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerEvent {
    /// A connection was welcomed; the broker already holds up to `resume_seq`.
    Connected {
        /// The broker's resume point for this producer id.
        resume_seq: u64,
    },
    /// Credit arrived: a waiting `send` may go ahead.
    Credit,
    /// The broker confirmed everything up to `up_to_seq`.
    Confirmed {
        /// The highest confirmed sequence number.
        up_to_seq: u64,
    },
    /// The broker refused `count` events (their topic's policy is `reject` and it was full):
    /// [`ProducerSession::take_refused`] hands them back.
    Refused {
        /// How many.
        count: u64,
    },
}

/// The most refused events a producer keeps for its caller to take; beyond it the oldest are
/// let go (still counted in [`ProducerStats::refused`]), so a caller that never takes them
/// does not grow without bound.
pub const MAX_UNTAKEN_REFUSED: usize = 100_000;

/// One producer's protocol state, across all its connections.
#[derive(Debug)]
pub struct ProducerSession {
    link: Link,
    /// Credit of the current connection not yet spent.
    window: CreditWindow,
    /// The next sequence number to assign.
    next_seq: u64,
    /// Unconfirmed events from an earlier connection, waiting for credit to be resent.
    resend: VecDeque<WireEvent>,
    /// Paid for, not yet written.
    to_send: VecDeque<WireEvent>,
    /// Written, not yet confirmed.
    inflight: VecDeque<WireEvent>,
    stats: ProducerStats,
    /// The application asked to stop once everything is confirmed.
    closing: bool,
    events: VecDeque<ProducerEvent>,
    /// From the last `WELCOME`: see [`ProducerSession::largest_payload`].
    largest_payload: Option<u64>,
    /// Refused by the broker, not yet taken by the caller (at most [`MAX_UNTAKEN_REFUSED`]).
    refused: VecDeque<Event>,
    /// The highest sequence number handed back as refused. Events are sent in order and a
    /// refusal always comes before the confirm that covers it, so a refused event at or below
    /// it that a `WELCOME` or a later `REFUSED` lists again was handed back already.
    refused_through: u64,
}

impl ProducerSession {
    /// A producer that opens each connection with `hello` (a producer's).
    pub fn new(hello: Hello, now: Instant) -> Self {
        ProducerSession {
            link: Link::new(hello, now),
            window: CreditWindow::new(),
            next_seq: 1,
            resend: VecDeque::new(),
            to_send: VecDeque::new(),
            inflight: VecDeque::new(),
            stats: ProducerStats::default(),
            closing: false,
            events: VecDeque::new(),
            largest_payload: None,
            refused: VecDeque::new(),
            refused_through: 0,
        }
    }

    /// This producer's id.
    pub fn producer_id(&self) -> u64 {
        self.link.hello().producer_id
    }

    /// True when one event of `bytes` (its [`Event::size_bytes`]) may be sent now: the
    /// credit covers it and no resend is ahead of it.
    pub fn admits(&self, bytes: u64) -> bool {
        self.resend.is_empty() && self.window.admits(bytes)
    }

    /// True when `events` events of `bytes` in all may be sent now, one after another: the
    /// credit covers all of them and no resend is ahead.
    pub fn admits_batch(&self, events: u64, bytes: u64) -> bool {
        let credit = self.window.available();
        self.resend.is_empty() && credit.events >= events && credit.bytes >= bytes
    }

    /// The largest key plus payload one event may carry to this topic, as its `WELCOME`
    /// announced: what a lone `DELIVER` within the broker's frame limit holds, and what one
    /// grant of the topic can cover. `None` before the first `WELCOME`.
    pub fn largest_payload(&self) -> Option<u64> {
        self.largest_payload
    }

    /// The application waits to send an event of `bytes`. Returns true when that makes a
    /// `BLOCKED` notice due, so the driver should transmit.
    pub fn wait_for(&mut self, bytes: u64) -> bool {
        if self.resend.is_empty() {
            self.window.block_on(bytes);
        }
        self.window.notice_due()
    }

    /// Numbers and pays for an event that [`ProducerSession::admits`] said fits; when it does
    /// not, `Err` hands the event back. A `created_us` of 0 is left for the caller to stamp
    /// before this call: the session reads no clock.
    pub fn send(&mut self, event: Event) -> Result<EventId, Event> {
        if !self.admits(event.size_bytes()) {
            return Err(event);
        }
        let id = EventId::new(self.producer_id(), self.next_seq);
        let wire = WireEvent::from_owned(Event { id, ..event });
        if self.window.try_spend(1, wire.credit_bytes()).is_err() {
            // Cannot happen: admits checked the same sizes under the same rules.
            return Err(wire.to_event());
        }
        self.next_seq += 1;
        self.to_send.push_back(wire);
        self.stats.sent += 1;
        Ok(id)
    }

    /// The application will send nothing more; the session is finished once everything
    /// is confirmed.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Events sent but not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.resend.len() + self.to_send.len() + self.inflight.len()
    }

    /// The bytes (credit cost) of the events sent but not yet confirmed: what the producer
    /// holds in memory for a resend.
    pub fn unconfirmed_bytes(&self) -> u64 {
        let all = self
            .resend
            .iter()
            .chain(&self.to_send)
            .chain(&self.inflight);
        all.map(WireEvent::credit_bytes).sum()
    }

    /// The events the broker refused since the last call, oldest first, for the caller to
    /// count, retry elsewhere or report.
    pub fn take_refused(&mut self) -> Vec<Event> {
        self.refused.drain(..).collect()
    }

    /// Credit available now.
    pub fn credit(&self) -> Credit {
        self.window.available()
    }

    /// What this producer has done so far (`waited` is the driver's to fill in).
    pub fn stats(&self) -> ProducerStats {
        self.stats
    }

    /// A new connection was welcomed: everything unconfirmed is resent in order, except what
    /// the broker says it already holds; what it lists as refused and was not yet handed back
    /// (its `REFUSED` was lost with the last connection) is handed back now.
    fn welcomed(&mut self, held: u64, refused: &[(u64, u64)]) {
        self.window = CreditWindow::new();
        let mut pending: VecDeque<WireEvent> = self.inflight.drain(..).collect();
        pending.append(&mut self.to_send);
        pending.append(&mut self.resend);
        let found = self.refused_in(&pending, refused);
        self.hand_back(found);
        pending.retain(|e| e.id.seq > held);
        self.resend = pending;
        self.next_seq = self.next_seq.max(held + 1);
        self.stats.confirmed_seq = self.stats.confirmed_seq.max(held);
        self.stats.sessions += 1;
        self.events
            .push_back(ProducerEvent::Connected { resume_seq: held });
    }

    /// The events of `events` in one of the refused `runs` and not handed back before.
    fn refused_in<'a>(
        &self,
        events: impl IntoIterator<Item = &'a WireEvent>,
        runs: &[(u64, u64)],
    ) -> Vec<Event> {
        events
            .into_iter()
            .filter(|e| e.id.seq > self.refused_through)
            .filter(|e| runs.iter().any(|r| (r.0..=r.1).contains(&e.id.seq)))
            .map(WireEvent::to_event)
            .collect()
    }

    /// Hands refused events back to the caller, counted, and notes the highest one. (A run
    /// may reach past what was sent so far: those are handed back when they are sent again
    /// and refused again.)
    fn hand_back(&mut self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let count = events.len() as u64;
        for e in events {
            self.refused_through = self.refused_through.max(e.id.seq);
            if self.refused.len() == MAX_UNTAKEN_REFUSED {
                self.refused.pop_front();
            }
            self.refused.push_back(e);
        }
        self.stats.refused += count;
        self.events.push_back(ProducerEvent::Refused { count });
    }

    /// Pays for resends first, in order, from the connection's credit.
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
}

impl ClientSession for ProducerSession {
    type Event = ProducerEvent;

    /// A connection attempt begins at `now`; `HELLO` is the next frame to send.
    fn connect(&mut self, now: Instant) {
        self.link.connect(now);
    }

    /// The connection is gone. Its credit is void; everything unconfirmed will be resent on
    /// the next. A producer always dials again (its close waits for every confirm).
    fn connection_lost(&mut self, now: Instant) -> Option<Instant> {
        self.window = CreditWindow::new();
        Some(self.link.lost(now))
    }

    /// True once the current connection is welcomed.
    fn is_connected(&self) -> bool {
        self.link.is_open()
    }

    /// Takes a frame from the broker.
    fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), SessionError> {
        if let Some(welcome) = self.link.on_frame(now, &frame)? {
            self.largest_payload = Some(welcome.largest_payload);
            self.welcomed(welcome.resume_seq, &welcome.refused);
            return Ok(());
        }
        match frame {
            Frame::Credit(g) => {
                // A grant of nothing would be the broker's bug; ignore it rather than fail.
                let _ = self.window.grant(g.credit);
                self.pay_resends();
                self.events.push_back(ProducerEvent::Credit);
            }
            Frame::Confirm(c) => {
                while self
                    .inflight
                    .front()
                    .is_some_and(|e| e.id.seq <= c.up_to_seq)
                {
                    self.inflight.pop_front();
                }
                self.stats.confirmed_seq = self.stats.confirmed_seq.max(c.up_to_seq);
                self.events.push_back(ProducerEvent::Confirmed {
                    up_to_seq: c.up_to_seq,
                });
            }
            Frame::Refused(r) => {
                // Handed back now; they stay in flight until the confirm that follows covers
                // them (the broker holds their numbers as seen, so they are never resent).
                let run = [(r.from_seq, r.to_seq)];
                let found: Vec<Event> = self.refused_in(&self.inflight, &run);
                self.hand_back(found);
            }
            Frame::Heartbeat(_) => {}
            other => return Err(link::unexpected(other, "producer")),
        }
        Ok(())
    }

    /// Checks the connection's deadlines.
    fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        self.link.handle_timeout(now)
    }

    /// When to call [`ClientSession::handle_timeout`] next (or, with no connection, when
    /// to dial again).
    fn poll_timeout(&self) -> Option<Instant> {
        self.link.poll_timeout()
    }

    /// The next frame to send: `HELLO` or a heartbeat, then `PUBLISH` batches of what was
    /// paid for, each under the broker's frame limit, then a `BLOCKED` notice if one is due
    /// (after the publishes, so the broker counts what is handed back against what is left).
    fn poll_transmit(&mut self, now: Instant) -> Option<Frame> {
        if let Some(frame) = self.link.poll_transmit(now) {
            return Some(frame);
        }
        let max_body = self.link.welcome()?.max_frame as usize;
        let max_body = max_body.saturating_sub(BATCH_OVERHEAD);
        let frame = if !self.to_send.is_empty() {
            let mut batch = Vec::new();
            let mut size = 4;
            while let Some(front) = self.to_send.front() {
                let len = front.encoded_len();
                if !batch.is_empty() && size + len > max_body {
                    break;
                }
                size += len;
                batch.extend(self.to_send.pop_front());
            }
            self.inflight.extend(batch.iter().cloned());
            Frame::Publish(Publish { events: batch })
        } else {
            let (returned, need_bytes) = self.window.poll_blocked()?;
            Frame::Blocked(Blocked {
                returned,
                need_bytes,
            })
        };
        self.link.sent(now);
        Some(frame)
    }

    /// The next application event.
    fn poll_event(&mut self) -> Option<ProducerEvent> {
        self.events.pop_front()
    }

    /// True when closing and nothing is left unconfirmed.
    fn is_finished(&self) -> bool {
        self.closing && self.unconfirmed() == 0
    }
}
