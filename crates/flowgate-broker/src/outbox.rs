//! A connection's outbox: what the topic wants sent to one peer, coalesced, waiting for the
//! connection's writer. Bounded by construction: credit grants and confirms coalesce into one
//! frame each, deliveries never exceed what the peer requested (and the topic's capacity),
//! and non-fatal notices are capped.

use std::sync::{Mutex, MutexGuard};

use flowgate_core::{Credit, Delivery};
use flowgate_proto::{DeliveredEvent, ErrorCode, ErrorFrame, WireEvent};
use tokio::sync::Notify;

/// The most non-fatal notices (ack rejections) kept for one peer; the rest are counted.
const MAX_NOTICES: usize = 64;

/// Everything waiting to be written to a peer.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Credit to grant (sum of grants since the last write).
    pub grant: Credit,
    /// Highest sequence number to confirm.
    pub confirm: Option<u64>,
    /// Sequence numbers refused, `(from, to, reason)`, adjacent ranges with one reason merged.
    pub refused: Vec<(u64, u64, String)>,
    /// Deliveries, in order.
    pub deliveries: Vec<DeliveredEvent>,
    /// Non-fatal errors.
    pub notices: Vec<ErrorFrame>,
    /// Notices dropped past the cap.
    pub notices_dropped: u64,
    /// A fatal error: write it, then close.
    pub fatal: Option<ErrorFrame>,
    /// Close without an error (the peer left or the broker stops).
    pub closed: bool,
}

impl Pending {
    /// True when there is nothing to write and no reason to close.
    pub fn is_idle(&self) -> bool {
        self.grant.is_zero()
            && self.confirm.is_none()
            && self.refused.is_empty()
            && self.deliveries.is_empty()
            && self.notices.is_empty()
            && self.notices_dropped == 0
            && self.fatal.is_none()
            && !self.closed
    }
}

/// One peer's outbox.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pending: Mutex<Pending>,
    /// Refusals waiting for the confirm that covers them, in the order the batches came:
    /// a refusal goes out just before the first confirm that reaches it, and never after it,
    /// whichever order the batches' durability waits end in.
    awaiting: Mutex<std::collections::VecDeque<(u64, u64, String)>>,
    /// Woken whenever something is added.
    pub wake: Notify,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, f: impl FnOnce(&mut Pending)) {
        f(&mut self.lock());
        self.wake.notify_one();
    }

    /// Adds a credit grant.
    pub fn grant(&self, credit: Credit) {
        self.push(|p| p.grant = p.grant.saturating_add(credit));
    }

    /// Confirms up to `seq`, after the refusals this confirm reaches.
    pub fn confirm(&self, seq: u64) {
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        self.push(|p| {
            while awaiting.front().is_some_and(|r| r.1 <= seq) {
                let Some((from, to, reason)) = awaiting.pop_front() else {
                    break;
                };
                match p.refused.last_mut() {
                    Some(last) if last.1 + 1 == from && last.2 == reason => last.1 = to,
                    _ => p.refused.push((from, to, reason)),
                }
            }
            p.confirm = Some(p.confirm.map_or(seq, |c| c.max(seq)));
        });
    }

    /// Tells the producer its events `from..=to` were refused, and why: just before the first
    /// confirm that reaches `to`. Called in the order the batches came.
    pub fn refuse(&self, from: u64, to: u64, reason: String) {
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        awaiting.push_back((from, to, reason));
    }

    /// Queues deliveries.
    pub fn deliver(&self, deliveries: Vec<Delivery<WireEvent>>) {
        self.push(|p| {
            p.deliveries
                .extend(deliveries.into_iter().map(|d| DeliveredEvent {
                    delivery_id: d.delivery_id,
                    attempt: d.attempt,
                    event: d.item,
                }))
        });
    }

    /// Queues a non-fatal error.
    pub fn notice(&self, code: ErrorCode, message: String) {
        self.push(|p| {
            if p.notices.len() < MAX_NOTICES {
                p.notices.push(ErrorFrame { code, message });
            } else {
                p.notices_dropped += 1;
            }
        });
    }

    /// Queues a fatal error; the writer sends it and closes.
    pub fn fail(&self, code: ErrorCode, message: String) {
        self.push(|p| {
            if p.fatal.is_none() {
                p.fatal = Some(ErrorFrame { code, message });
            }
        });
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.lock().is_idle()
    }

    /// Asks the writer to close once everything pending is written.
    pub fn close(&self) {
        self.push(|p| p.closed = true);
    }

    /// Takes everything pending.
    pub fn take(&self) -> Pending {
        let mut guard = self.lock();
        let closed = guard.closed;
        let taken = std::mem::take(&mut *guard);
        // Closing is a state, not a message: it stays set.
        guard.closed = closed;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_confirms_coalesce() {
        let o = Outbox::default();
        o.grant(Credit::new(2, 20));
        o.grant(Credit::new(3, 30));
        o.confirm(5);
        o.confirm(4);
        let p = o.take();
        assert_eq!(p.grant, Credit::new(5, 50));
        assert_eq!(p.confirm, Some(5));
        assert!(o.take().is_idle());
    }

    #[test]
    fn a_refusal_goes_out_with_the_first_confirm_that_reaches_it_whatever_order_they_end() {
        let o = Outbox::default();
        o.refuse(5, 10, "full".into());
        o.refuse(15, 20, "full".into());
        o.confirm(20);
        let p = o.take();
        let runs: Vec<(u64, u64)> = p.refused.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!((runs, p.confirm), (vec![(5, 10), (15, 20)], Some(20)));
        o.refuse(21, 25, "full".into());
        o.confirm(12);
        let p = o.take();
        assert!(p.refused.is_empty(), "not reached yet");
        o.confirm(25);
        assert_eq!(o.take().refused, [(21, 25, "full".to_string())]);
    }

    #[test]
    fn notices_are_capped_and_counted() {
        let o = Outbox::default();
        for i in 0..100 {
            o.notice(ErrorCode::UnknownDelivery, format!("{i}"));
        }
        let p = o.take();
        assert_eq!((p.notices.len(), p.notices_dropped), (MAX_NOTICES, 36));
    }
}
