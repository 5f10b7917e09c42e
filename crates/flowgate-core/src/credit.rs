//! Credit arithmetic: what a sender may still send ([`CreditWindow`]) and what a receiver has
//! asked for and will ask for next ([`Demand`]), both counted in events and in bytes.
//!
//! The rules, shared by every place flowgate runs (in-process, over TCP, over JetStream):
//!
//! * Credit is cumulative: two grants of 10 events are one grant of 20 (Reactive Streams 3.9).
//! * A grant of nothing (zero events and zero bytes) is a protocol error, like `request(0)`.
//! * Sums saturate at `u64::MAX`, which means "unbounded" in that dimension (Reactive Streams
//!   3.17): spending from an unbounded dimension leaves it unbounded.
//! * Nothing can make credit negative: spending more than is available fails and changes
//!   nothing.

use std::fmt;

/// An amount of permission to send, in events and in bytes.
///
/// Memory is bytes, so a bound in events alone is no memory bound: every window, queue and
/// request carries both dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Credit {
    /// Number of events.
    pub events: u64,
    /// Number of bytes, as counted by the items' own size (see [`crate::Event::size_bytes`]).
    pub bytes: u64,
}

impl Credit {
    /// No credit at all.
    pub const ZERO: Credit = Credit {
        events: 0,
        bytes: 0,
    };
    /// Unbounded credit in both dimensions.
    pub const UNBOUNDED: Credit = Credit {
        events: u64::MAX,
        bytes: u64::MAX,
    };

    /// Credit for `events` events and `bytes` bytes.
    pub const fn new(events: u64, bytes: u64) -> Self {
        Credit { events, bytes }
    }

    /// True when both dimensions are zero.
    pub const fn is_zero(&self) -> bool {
        self.events == 0 && self.bytes == 0
    }

    /// True when an item of `bytes` bytes fits: at least one event and enough bytes.
    pub const fn admits(&self, bytes: u64) -> bool {
        self.events >= 1 && self.bytes >= bytes
    }

    /// Component-wise saturating sum; `u64::MAX` stays unbounded.
    pub const fn saturating_add(self, other: Credit) -> Credit {
        Credit {
            events: self.events.saturating_add(other.events),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }

    /// Component-wise saturating difference (never below zero).
    pub const fn saturating_sub(self, other: Credit) -> Credit {
        Credit {
            events: self.events.saturating_sub(other.events),
            bytes: self.bytes.saturating_sub(other.bytes),
        }
    }

    /// Component-wise difference, or `None` where a dimension would go below zero: for
    /// accounting where that can only mean a bug or a lying peer, never a value to clamp.
    pub const fn checked_sub(self, other: Credit) -> Option<Credit> {
        match (
            self.events.checked_sub(other.events),
            self.bytes.checked_sub(other.bytes),
        ) {
            (Some(events), Some(bytes)) => Some(Credit { events, bytes }),
            _ => None,
        }
    }

    /// Component-wise maximum.
    pub fn max(self, other: Credit) -> Credit {
        Credit {
            events: self.events.max(other.events),
            bytes: self.bytes.max(other.bytes),
        }
    }

    /// Component-wise minimum.
    pub fn min(self, other: Credit) -> Credit {
        Credit {
            events: self.events.min(other.events),
            bytes: self.bytes.min(other.bytes),
        }
    }
}

impl fmt::Display for Credit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dim = |v: u64| {
            if v == u64::MAX {
                "unbounded".to_string()
            } else {
                v.to_string()
            }
        };
        write!(f, "{} events / {} bytes", dim(self.events), dim(self.bytes))
    }
}

/// A broken credit rule. Over a network these become error frames naming the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditError {
    /// A grant or request of zero events and zero bytes (`request(0)`).
    ZeroRequest,
    /// A send of `wanted` when only `available` was granted.
    Insufficient {
        /// What the send needed.
        wanted: Credit,
        /// What the window held.
        available: Credit,
    },
    /// A peer delivered more than was asked for.
    Overdelivered {
        /// What arrived.
        delivered: Credit,
        /// What was outstanding.
        outstanding: Credit,
    },
}

impl fmt::Display for CreditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreditError::ZeroRequest => {
                write!(
                    f,
                    "credit request of zero events and zero bytes (request(0) is invalid)"
                )
            }
            CreditError::Insufficient { wanted, available } => {
                write!(
                    f,
                    "send of {wanted} exceeds the available credit of {available}"
                )
            }
            CreditError::Overdelivered {
                delivered,
                outstanding,
            } => {
                write!(
                    f,
                    "delivery of {delivered} exceeds the outstanding demand of {outstanding}"
                )
            }
        }
    }
}

impl std::error::Error for CreditError {}

/// A refill threshold as an integer ratio: a receiver asks for more once its outstanding
/// demand has fallen to `num / den` of its target, in either dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    num: u64,
    den: u64,
}

impl Ratio {
    /// `num / den`, clamped to at most 1. `den` of zero is treated as one.
    pub const fn new(num: u64, den: u64) -> Self {
        let den = if den == 0 { 1 } else { den };
        let num = if num > den { den } else { num };
        Ratio { num, den }
    }

    /// `value * num / den`, computed without overflow and rounded down.
    pub const fn of(&self, value: u64) -> u64 {
        // u128 keeps the product exact; the result is at most `value`, so it fits back.
        ((value as u128 * self.num as u128) / self.den as u128) as u64
    }
}

/// Refill when half of the demand has been used: one request per half-window keeps the
/// pipe full without a request per event. (The same rule h2 and async-nats use.)
pub const REFILL_AT_HALF: Ratio = Ratio::new(1, 2);

/// The credit a bounded stage should grant its senders now, if any: the space neither held
/// nor already promised, once that is worth a grant — more than half the capacity in either
/// dimension ([`REFILL_AT_HALF`]), or anything at all when nothing is held (nothing else will
/// free space, so withholding could deadlock). `None` while a dimension has no room.
///
/// The broker's topic and the in-process pipe both grant by this rule.
pub fn grant_due(capacity: Credit, held: Credit, promised: Credit) -> Option<Credit> {
    let unpromised = capacity.saturating_sub(held).saturating_sub(promised);
    let worth_it = unpromised.events > REFILL_AT_HALF.of(capacity.events)
        || unpromised.bytes > REFILL_AT_HALF.of(capacity.bytes)
        || held.is_zero();
    (worth_it && unpromised.events > 0 && unpromised.bytes > 0).then_some(unpromised)
}

/// The sender's side: credit granted by the receiver and not yet spent, and whether the
/// receiver must be told that the sender is blocked.
///
/// A sender whose next item the available credit does not cover ([`CreditWindow::block_on`])
/// tells its receiver once per grant ([`CreditWindow::poll_blocked`]) and hands back all it
/// holds, so credit it cannot use (events without the bytes for its next item, or bytes
/// without events) is never stranded with it. The receiver re-grants it to whoever can use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreditWindow {
    /// Credit granted and not yet spent; `u64::MAX` in a dimension means unbounded.
    available: Credit,
    /// Where the blocked notice stands since the last grant.
    blocked: BlockedNotice,
    /// Everything ever granted, saturating; for accounting and tests.
    granted_total: Credit,
    /// Everything ever spent, saturating.
    spent_total: Credit,
}

impl CreditWindow {
    /// An empty window: nothing may be sent until credit is granted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a grant. A zero grant is [`CreditError::ZeroRequest`] and changes nothing.
    pub fn grant(&mut self, credit: Credit) -> Result<(), CreditError> {
        if credit.is_zero() {
            return Err(CreditError::ZeroRequest);
        }
        self.available = self.available.saturating_add(credit);
        self.granted_total = self.granted_total.saturating_add(credit);
        self.blocked = BlockedNotice::Clear;
        Ok(())
    }

    /// Notes that the next item, of `bytes`, waits for credit the window does not hold. The
    /// first such note after a grant makes a notice due; later ones wait for the next grant.
    pub fn block_on(&mut self, bytes: u64) {
        if self.blocked == BlockedNotice::Clear {
            self.blocked = BlockedNotice::Due(bytes);
        }
    }

    /// True when a blocked notice waits to be sent ([`CreditWindow::poll_blocked`]).
    pub fn notice_due(&self) -> bool {
        matches!(self.blocked, BlockedNotice::Due(_))
    }

    /// The blocked notice to send now, if one is due: the credit handed back (everything
    /// available, which the window gives up) and the bytes the next item needs. At most one
    /// per grant. Send it after anything already paid for with this window's credit, so the
    /// receiver counts the hand-back against what is left.
    #[must_use = "credit handed back and not reported is lost to the receiver's accounting"]
    pub fn poll_blocked(&mut self) -> Option<(Credit, u64)> {
        let BlockedNotice::Due(need) = self.blocked else {
            return None;
        };
        self.blocked = BlockedNotice::Sent;
        Some((std::mem::take(&mut self.available), need))
    }

    /// Credit still available.
    pub fn available(&self) -> Credit {
        self.available
    }

    /// Everything granted so far.
    pub fn granted_total(&self) -> Credit {
        self.granted_total
    }

    /// Everything spent so far.
    pub fn spent_total(&self) -> Credit {
        self.spent_total
    }

    /// True when one item of `bytes` bytes may be sent now.
    pub fn admits(&self, bytes: u64) -> bool {
        self.available.admits(bytes)
    }

    /// Spends `events` events and `bytes` bytes, or fails and changes nothing.
    pub fn try_spend(&mut self, events: u64, bytes: u64) -> Result<(), CreditError> {
        let wanted = Credit::new(events, bytes);
        if self.available.events < events || self.available.bytes < bytes {
            return Err(CreditError::Insufficient {
                wanted,
                available: self.available,
            });
        }
        if self.available.events != u64::MAX {
            self.available.events -= events;
        }
        if self.available.bytes != u64::MAX {
            self.available.bytes -= bytes;
        }
        self.spent_total = self.spent_total.saturating_add(wanted);
        Ok(())
    }
}

/// Where a [`CreditWindow`]'s blocked notice stands since its last grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum BlockedNotice {
    /// Nothing to tell: no item has waited since the last grant.
    #[default]
    Clear,
    /// Blocked on an item of this many bytes; the notice is not sent yet.
    Due(u64),
    /// The notice went out; nothing more until the next grant.
    Sent,
}

/// The receiver's side: how much it wants in flight (`target`), how much it has asked for and
/// not yet received (`outstanding`), and when to ask again (`refill`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// How much the receiver is willing to have requested-but-undelivered at once.
    target: Credit,
    /// Requested and not yet delivered.
    outstanding: Credit,
    /// Bytes delivered beyond what was asked for, by an event sent alone; the next requests
    /// pay them first, exactly as the sender counts them, so both sides agree however the
    /// requests and deliveries cross on the wire.
    debt: u64,
    /// Ask for more once `outstanding` falls to this share of `target` in either dimension.
    refill: Ratio,
}

impl Demand {
    /// A receiver that wants up to `target` in flight. A zero target is an error.
    pub fn new(target: Credit, refill: Ratio) -> Result<Self, CreditError> {
        if target.events == 0 || target.bytes == 0 {
            return Err(CreditError::ZeroRequest);
        }
        Ok(Demand {
            target,
            outstanding: Credit::ZERO,
            debt: 0,
            refill,
        })
    }

    /// The current target.
    pub fn target(&self) -> Credit {
        self.target
    }

    /// Requested and not yet delivered.
    pub fn outstanding(&self) -> Credit {
        self.outstanding
    }

    /// Changes the target (for adaptive limits). Demand already outstanding stays valid; a
    /// smaller target simply delays the next request.
    pub fn set_target(&mut self, target: Credit) -> Result<(), CreditError> {
        if target.events == 0 || target.bytes == 0 {
            return Err(CreditError::ZeroRequest);
        }
        self.target = target;
        Ok(())
    }

    /// The request to send now, if one is due: tops both dimensions back up to the target once
    /// either has fallen to the refill threshold. The returned credit counts as outstanding.
    #[must_use = "a request that is not sent leaves the sender without credit"]
    pub fn poll_request(&mut self) -> Option<Credit> {
        let low_events = self.outstanding.events <= self.refill.of(self.target.events);
        let low_bytes = self.outstanding.bytes <= self.refill.of(self.target.bytes);
        if !(low_events || low_bytes) {
            return None;
        }
        self.request_up_to_target()
    }

    /// Asks for what is missing up to the target. Never for zero events: a request must
    /// carry at least one (`request(0)` is a protocol error). When the events are all
    /// outstanding already (a target lowered below them) but bytes are short, it asks for one
    /// event more with the bytes: waiting instead could wait forever, for an item larger
    /// than the bytes outstanding. Each such request follows a delivery, so outstanding
    /// events never grow by it.
    fn request_up_to_target(&mut self) -> Option<Credit> {
        let mut request = self.target.saturating_sub(self.outstanding);
        if request.is_zero() {
            return None;
        }
        request.events = request.events.max(1);
        // Asking for the debt too pays it in one request, and tops up to the target.
        request.bytes = request.bytes.saturating_add(self.debt);
        let (paid, rest) = pay_debt(self.debt, request.bytes);
        self.debt -= paid;
        self.outstanding = self
            .outstanding
            .saturating_add(Credit::new(request.events, rest));
        Some(request)
    }

    /// The request to send when the receiver holds nothing it was sent: everything up to the
    /// target, whatever the refill threshold says. Without it a receiver whose outstanding
    /// bytes sit above the threshold but below the size of the sender's next item would wait
    /// for that item forever: the sender may not send it, and the receiver does not ask.
    /// (Found by the simulator, `flowgate-sim`.)
    #[must_use = "a request that is not sent leaves the sender without credit"]
    pub fn poll_top_up(&mut self) -> Option<Credit> {
        self.request_up_to_target()
    }

    /// Records a delivery. Receiving more than was asked for is a protocol violation by the
    /// sender: it fails and changes nothing. The one exception is a single event larger than
    /// the bytes outstanding, which a sender may send alone to a receiver holding nothing
    /// (else an item beyond the target's bytes could never come): it uses up the bytes.
    pub fn on_delivered(&mut self, events: u64, bytes: u64) -> Result<(), CreditError> {
        let delivered = Credit::new(events, bytes);
        let alone = events == 1;
        if events > self.outstanding.events || (bytes > self.outstanding.bytes && !alone) {
            return Err(CreditError::Overdelivered {
                delivered,
                outstanding: self.outstanding,
            });
        }
        self.debt += bytes.saturating_sub(self.outstanding.bytes);
        self.outstanding = self.outstanding.saturating_sub(delivered);
        Ok(())
    }

    /// Bytes delivered beyond what was asked for, which the next requests pay first.
    pub fn debt(&self) -> u64 {
        self.debt
    }
}

/// A request of `bytes` against a receiver's `debt` of bytes sent beyond its demand: what the
/// debt takes, and what is left to add to the demand. Sender and receiver both apply it.
pub fn pay_debt(debt: u64, bytes: u64) -> (u64, u64) {
    let paid = debt.min(bytes);
    (paid, bytes - paid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_with_nothing_in_hand_tops_up_although_above_the_refill_threshold() {
        let mut d = Demand::new(Credit::new(100, 1000), REFILL_AT_HALF).unwrap();
        assert_eq!(d.poll_request(), Some(Credit::new(100, 1000)));
        d.on_delivered(1, 400).unwrap();
        // 600 bytes outstanding: above half, so no refill; a 900-byte item could never come.
        assert_eq!(d.poll_request(), None);
        assert_eq!(d.poll_top_up(), Some(Credit::new(1, 400)));
        assert_eq!(d.outstanding(), Credit::new(100, 1000));
        assert_eq!(d.poll_top_up(), None, "nothing more once at the target");
    }

    #[test]
    fn an_item_delivered_alone_beyond_the_bytes_is_a_debt_the_next_requests_pay() {
        let mut d = Demand::new(Credit::new(10, 100), REFILL_AT_HALF).unwrap();
        assert_eq!(d.poll_request(), Some(Credit::new(10, 100)));
        // Two items would be an overdelivery; one alone is the exception.
        assert!(d.on_delivered(2, 500).is_err());
        d.on_delivered(1, 500).unwrap();
        assert_eq!((d.outstanding(), d.debt()), (Credit::new(9, 0), 400));
        // The next request asks for the debt as well: the sender counts 400 of its bytes
        // against the debt, and so does the receiver, which is back at its target.
        assert_eq!(d.poll_request(), Some(Credit::new(1, 500)));
        assert_eq!((d.outstanding(), d.debt()), (Credit::new(10, 100), 0));
    }

    #[test]
    fn a_request_never_carries_zero_events() {
        let mut d = Demand::new(Credit::new(100, 1000), REFILL_AT_HALF).unwrap();
        let _ = d.poll_request();
        d.on_delivered(10, 900).unwrap();
        // An adaptive limit lowers the events target below what is outstanding: bytes are
        // short, but a request of 0 events would be refused by the broker.
        d.set_target(Credit::new(20, 1000)).unwrap();
        assert_eq!(
            d.poll_request(),
            Some(Credit::new(1, 900)),
            "one event, with the bytes"
        );
        assert_eq!(d.outstanding(), Credit::new(91, 1000));
        assert_eq!(d.poll_top_up(), None, "bytes at the target: nothing to ask");
        d.on_delivered(80, 50).unwrap();
        assert_eq!(d.poll_request(), None, "above half in both");
        assert_eq!(d.poll_top_up(), Some(Credit::new(9, 50)));
    }

    #[test]
    fn a_blocked_sender_tells_once_per_grant_and_hands_back_everything() {
        let mut w = CreditWindow::new();
        w.grant(Credit::new(5, 100)).unwrap();
        assert_eq!(w.poll_blocked(), None, "not blocked, nothing to tell");
        // Five events but only 100 bytes: an item of 150 cannot go.
        w.block_on(150);
        w.block_on(150);
        assert!(w.notice_due());
        assert_eq!(w.poll_blocked(), Some((Credit::new(5, 100), 150)));
        assert_eq!(w.available(), Credit::ZERO, "handed back, not kept");
        w.block_on(150);
        assert!(!w.notice_due());
        assert_eq!(w.poll_blocked(), None, "told already; wait for a grant");
        w.grant(Credit::new(1, 100)).unwrap();
        w.block_on(150);
        assert_eq!(w.poll_blocked(), Some((Credit::new(1, 100), 150)));
    }

    #[test]
    fn refill_at_half_is_one_half() {
        assert_eq!(REFILL_AT_HALF.of(100), 50);
        assert_eq!(REFILL_AT_HALF.of(1), 0);
        assert_eq!(REFILL_AT_HALF.of(u64::MAX), u64::MAX / 2);
    }

    #[test]
    fn ratio_never_exceeds_one() {
        assert_eq!(Ratio::new(3, 2).of(10), 10);
        assert_eq!(Ratio::new(1, 0).of(10), 10);
    }

    #[test]
    fn grants_wait_for_half_the_capacity_unless_nothing_is_held() {
        let cap = Credit::new(100, 1_000);
        assert_eq!(
            grant_due(cap, Credit::new(60, 600), Credit::ZERO),
            None,
            "40 free: not yet"
        );
        assert_eq!(
            grant_due(cap, Credit::new(40, 400), Credit::ZERO),
            Some(Credit::new(60, 600))
        );
        assert_eq!(
            grant_due(cap, Credit::new(40, 400), Credit::new(60, 600)),
            None,
            "all promised"
        );
        assert_eq!(
            grant_due(cap, Credit::ZERO, Credit::new(90, 900)),
            Some(Credit::new(10, 100))
        );
        assert_eq!(
            grant_due(Credit::UNBOUNDED, Credit::new(5, 5), Credit::ZERO).map(|c| c.events),
            Some(u64::MAX - 5)
        );
    }

    #[test]
    fn zero_grant_is_request_zero_and_changes_nothing() {
        let mut w = CreditWindow::new();
        assert_eq!(w.grant(Credit::ZERO), Err(CreditError::ZeroRequest));
        assert_eq!(w.available(), Credit::ZERO);
    }

    #[test]
    fn grants_are_cumulative() {
        let mut w = CreditWindow::new();
        w.grant(Credit::new(10, 100)).unwrap();
        w.grant(Credit::new(5, 50)).unwrap();
        assert_eq!(w.available(), Credit::new(15, 150));
    }

    #[test]
    fn grants_saturate_to_unbounded_and_stay_unbounded() {
        let mut w = CreditWindow::new();
        w.grant(Credit::new(u64::MAX - 1, 10)).unwrap();
        w.grant(Credit::new(5, 10)).unwrap();
        assert_eq!(w.available().events, u64::MAX);
        w.try_spend(1_000, 5).unwrap();
        assert_eq!(w.available().events, u64::MAX, "unbounded stays unbounded");
        assert_eq!(w.available().bytes, 15);
    }

    #[test]
    fn overspend_fails_and_changes_nothing() {
        let mut w = CreditWindow::new();
        w.grant(Credit::new(2, 100)).unwrap();
        let err = w.try_spend(1, 101).unwrap_err();
        assert!(matches!(err, CreditError::Insufficient { .. }));
        assert_eq!(w.available(), Credit::new(2, 100));
        w.try_spend(2, 100).unwrap();
        assert!(w.try_spend(1, 0).is_err());
    }

    #[test]
    fn demand_requests_target_first_then_only_after_half_is_used() {
        let mut d = Demand::new(Credit::new(10, 1000), REFILL_AT_HALF).unwrap();
        assert_eq!(d.poll_request(), Some(Credit::new(10, 1000)));
        assert_eq!(d.poll_request(), None, "nothing used yet");
        d.on_delivered(4, 100).unwrap();
        assert_eq!(d.poll_request(), None, "6 of 10 events still outstanding");
        d.on_delivered(1, 100).unwrap();
        assert_eq!(d.poll_request(), Some(Credit::new(5, 200)));
        assert_eq!(d.outstanding(), Credit::new(10, 1000));
    }

    #[test]
    fn demand_refills_when_bytes_run_low_even_if_events_do_not() {
        let mut d = Demand::new(Credit::new(100, 1000), REFILL_AT_HALF).unwrap();
        let _ = d.poll_request();
        d.on_delivered(1, 600).unwrap();
        assert_eq!(d.poll_request(), Some(Credit::new(1, 600)));
    }

    #[test]
    fn overdelivery_is_an_error_and_changes_nothing() {
        let mut d = Demand::new(Credit::new(2, 100), REFILL_AT_HALF).unwrap();
        let _ = d.poll_request();
        assert!(matches!(
            d.on_delivered(3, 10),
            Err(CreditError::Overdelivered { .. })
        ));
        assert_eq!(d.outstanding(), Credit::new(2, 100));
    }

    #[test]
    fn zero_target_is_rejected() {
        assert_eq!(
            Demand::new(Credit::new(0, 10), REFILL_AT_HALF),
            Err(CreditError::ZeroRequest)
        );
    }

    #[test]
    fn errors_name_the_rule() {
        assert!(CreditError::ZeroRequest.to_string().contains("request(0)"));
    }
}
