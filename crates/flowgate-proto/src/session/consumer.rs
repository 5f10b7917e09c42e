//! The consumer's side of the protocol: it asks the broker for up to its prefetch (core's
//! [`Demand`]), takes deliveries only within what it asked for, asks again as the
//! application takes them, and sends the application's acks and nacks. A delivery belongs to
//! the connection it came on: after a reconnect the broker redelivers what was not acked, so
//! the old inbox and settles for old deliveries are dropped (and counted).

use std::collections::VecDeque;
use std::time::Instant;

use flowgate_core::{Credit, CreditError, Demand, Event, REFILL_AT_HALF};

use crate::session::link::{self, Link};
use crate::session::{ClientSession, SessionError};
use crate::{Ack, Frame, Hello, Nack, Progress, Request, Settle};

/// Settles one delivery: names the connection it came on, the delivery and the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryTag {
    session: u64,
    settle: Settle,
}

impl DeliveryTag {
    /// 1 on first delivery, more on redeliveries.
    pub fn attempt(&self) -> u32 {
        self.settle.attempt
    }
}

/// One received event and the tag to settle it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event.
    pub event: Event,
    /// Pass to `ack` or `nack`.
    pub tag: DeliveryTag,
}

/// What a consumer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerStats {
    /// Events handed to the application.
    pub received: u64,
    /// Of those, redeliveries (attempt > 1).
    pub redelivered: u64,
    /// Acks sent.
    pub acked: u64,
    /// Nacks sent.
    pub nacked: u64,
    /// Acks or nacks dropped because their connection had ended.
    pub stale_settles: u64,
    /// Sessions opened.
    pub sessions: u64,
    /// Time `recv` spent waiting for events (measured by the driver; zero in the session).
    pub waited: std::time::Duration,
}

/// What happened that the application may be waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// A connection was welcomed; deliveries of earlier ones are void.
    Connected,
    /// Deliveries arrived; [`ConsumerSession::take`] returns them.
    Delivered {
        /// How many.
        events: u64,
    },
}

/// One consumer's protocol state, across all its connections.
#[derive(Debug)]
pub struct ConsumerSession {
    link: Link,
    /// Counts connections; tags carry it, so a settle for an old connection is recognised.
    session: u64,
    demand: Demand,
    inbox: VecDeque<Delivery>,
    /// The bytes in `inbox`, by `Event::size_bytes`, but for an event given alone.
    inbox_bytes: u64,
    /// The inbox's first delivery came alone, larger than the bytes asked for: it was
    /// counted against the demand on receipt (its excess a debt), not when taken.
    counted_alone: bool,
    acks: Vec<Settle>,
    nacks: Vec<Settle>,
    /// Deliveries still being worked on, whose ack deadline the broker should restart.
    progress: Vec<Settle>,
    stats: ConsumerStats,
    closing: bool,
    events: VecDeque<ConsumerEvent>,
}

impl ConsumerSession {
    /// A consumer that opens each connection with `hello` (a consumer's) and asks for up to
    /// `prefetch`. Fails on a zero dimension in `prefetch`.
    pub fn new(hello: Hello, prefetch: Credit, now: Instant) -> Result<Self, CreditError> {
        Ok(ConsumerSession {
            link: Link::new(hello, now),
            session: 0,
            demand: Demand::new(prefetch, REFILL_AT_HALF)?,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            counted_alone: false,
            acks: Vec::new(),
            nacks: Vec::new(),
            progress: Vec::new(),
            stats: ConsumerStats::default(),
            closing: false,
            events: VecDeque::new(),
        })
    }

    /// True when deliveries wait in the inbox.
    pub fn has_deliveries(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// Takes the oldest deliveries, at most the prefetch's event count; taking them frees
    /// demand, so a `REQUEST` may follow.
    pub fn take(&mut self) -> Vec<Delivery> {
        let max = usize::try_from(self.demand.target().events).unwrap_or(usize::MAX);
        let n = self.inbox.len().min(max);
        let batch: Vec<Delivery> = self.inbox.drain(..n).collect();
        let skip = usize::from(std::mem::take(&mut self.counted_alone) && n > 0);
        let bytes: u64 = batch[skip..].iter().map(|d| d.event.size_bytes()).sum();
        self.inbox_bytes -= bytes;
        // Cannot fail: deliveries are admitted only within demand (checked on receipt).
        let _ = self.demand.on_delivered((n - skip) as u64, bytes);
        self.stats.received += batch.len() as u64;
        self.stats.redelivered += batch.iter().filter(|d| d.tag.attempt() > 1).count() as u64;
        batch
    }

    /// Acknowledges deliveries (committed; the broker may forget them). Tags from an earlier
    /// connection are dropped and counted as stale.
    pub fn ack(&mut self, tags: impl IntoIterator<Item = DeliveryTag>) {
        self.settle(tags, true);
    }

    /// Refuses deliveries: the broker redelivers them first in line.
    pub fn nack(&mut self, tags: impl IntoIterator<Item = DeliveryTag>) {
        self.settle(tags, false);
    }

    /// Says these deliveries are still being worked on (a long commit): the broker restarts
    /// their ack deadline (`--ack-wait`) instead of taking them back. Tags from an earlier
    /// connection are ignored: the broker has taken those back already.
    pub fn progress(&mut self, tags: impl IntoIterator<Item = DeliveryTag>) {
        let session = self.session;
        self.progress.extend(
            tags.into_iter()
                .filter(|t| t.session == session)
                .map(|t| t.settle),
        );
    }

    /// Changes the prefetch: a smaller one takes effect as outstanding demand drains, a
    /// larger one at once. A zero dimension is refused and changes nothing.
    pub fn set_prefetch(&mut self, prefetch: Credit) -> Result<(), CreditError> {
        self.demand.set_target(prefetch)
    }

    /// The application is done: pending acks and nacks still go out, nothing more is asked
    /// for, and a lost connection is not redialed.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// True once [`ConsumerSession::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// What this consumer has done so far (`waited` is the driver's to fill in).
    pub fn stats(&self) -> ConsumerStats {
        self.stats
    }

    fn settle(&mut self, tags: impl IntoIterator<Item = DeliveryTag>, ack: bool) {
        for tag in tags {
            if tag.session != self.session {
                self.stats.stale_settles += 1;
            } else if ack {
                self.acks.push(tag.settle);
                self.stats.acked += 1;
            } else {
                self.nacks.push(tag.settle);
                self.stats.nacked += 1;
            }
        }
    }

    /// A new connection: old deliveries and settles are void (the broker redelivers what was
    /// not acked), and demand starts from nothing.
    fn welcomed(&mut self) {
        self.session += 1;
        self.stats.sessions += 1;
        self.stats.stale_settles += (self.acks.len() + self.nacks.len()) as u64;
        self.acks.clear();
        self.nacks.clear();
        self.progress.clear();
        self.inbox.clear();
        self.inbox_bytes = 0;
        self.counted_alone = false;
        if let Ok(fresh) = Demand::new(self.demand.target(), REFILL_AT_HALF) {
            self.demand = fresh;
        }
        self.events.push_back(ConsumerEvent::Connected);
    }
}

impl ClientSession for ConsumerSession {
    type Event = ConsumerEvent;

    /// A connection attempt begins at `now`; `HELLO` is the next frame to send.
    fn connect(&mut self, now: Instant) {
        self.link.connect(now);
    }

    /// The connection is gone. Returns when to dial again, or `None` when the consumer is
    /// closing and will not reconnect.
    fn connection_lost(&mut self, now: Instant) -> Option<Instant> {
        let retry_at = self.link.lost(now);
        (!self.closing).then_some(retry_at)
    }

    /// True once the current connection is welcomed.
    fn is_connected(&self) -> bool {
        self.link.is_open()
    }

    /// Takes a frame from the broker.
    fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), SessionError> {
        if self.link.on_frame(now, &frame)?.is_some() {
            self.welcomed();
            return Ok(());
        }
        match frame {
            Frame::Deliver(d) => {
                // Outstanding demand covers the inbox too, so the inbox never exceeds the
                // prefetch.
                let bytes: u64 = d.deliveries.iter().map(|x| x.event.credit_bytes()).sum();
                let outstanding = self.demand.outstanding();
                let count = d.deliveries.len() as u64;
                let waiting = (self.inbox.len() - usize::from(self.counted_alone)) as u64;
                // The one exception (docs/protocol.md): an event alone, larger than the
                // bytes asked for, to a consumer holding nothing. It is counted now, so
                // what was asked for meanwhile is still there for what comes next.
                let alone = count == 1 && self.inbox.is_empty() && bytes > outstanding.bytes;
                if alone && outstanding.events >= 1 {
                    let _ = self.demand.on_delivered(1, bytes);
                    self.counted_alone = true;
                } else if waiting + count > outstanding.events
                    || self.inbox_bytes + bytes > outstanding.bytes
                {
                    return Err(SessionError::Protocol(format!(
                        "broker delivered {count} events / {bytes} bytes beyond the outstanding demand of {outstanding}"
                    )));
                }
                for x in d.deliveries {
                    let event = x.event.to_event();
                    if !alone {
                        self.inbox_bytes += event.size_bytes();
                    }
                    self.inbox.push_back(Delivery {
                        event,
                        tag: DeliveryTag {
                            session: self.session,
                            settle: Settle {
                                delivery_id: x.delivery_id,
                                attempt: x.attempt,
                            },
                        },
                    });
                }
                self.events
                    .push_back(ConsumerEvent::Delivered { events: count });
            }
            Frame::Heartbeat(_) => {}
            // Notices (an ack the broker did not recognise, say) leave the session up.
            Frame::Error(e) if !e.code.is_fatal() => {}
            other => return Err(link::unexpected(other, "consumer")),
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

    /// The next frame to send: `HELLO` or a heartbeat, then acks, nacks, progress, and a `REQUEST` when
    /// demand has fallen to the refill point, or is below the prefetch at all while the inbox
    /// is empty (none once closing).
    fn poll_transmit(&mut self, now: Instant) -> Option<Frame> {
        if let Some(frame) = self.link.poll_transmit(now) {
            return Some(frame);
        }
        if !self.link.is_open() {
            return None;
        }
        let frame = if !self.acks.is_empty() {
            Frame::Ack(Ack {
                items: std::mem::take(&mut self.acks),
            })
        } else if !self.nacks.is_empty() {
            Frame::Nack(Nack {
                items: std::mem::take(&mut self.nacks),
            })
        } else if !self.progress.is_empty() {
            Frame::Progress(Progress {
                items: std::mem::take(&mut self.progress),
            })
        } else if self.closing {
            return None;
        } else {
            // With nothing in hand, ask for the whole prefetch: the broker's next event may be
            // larger than what is outstanding, though that is above the refill threshold.
            let credit = match self.demand.poll_request() {
                Some(credit) => credit,
                None if self.inbox.is_empty() => self.demand.poll_top_up()?,
                None => return None,
            };
            Frame::Request(Request { credit })
        };
        self.link.sent(now);
        Some(frame)
    }

    /// The next application event.
    fn poll_event(&mut self) -> Option<ConsumerEvent> {
        self.events.pop_front()
    }

    /// True when closing and every settle has been handed out to send.
    fn is_finished(&self) -> bool {
        self.closing && self.acks.is_empty() && self.nacks.is_empty()
    }
}
