//! Property tests: random operation sequences run against the core types and a simple model
//! side by side; any divergence or broken invariant fails with the shrunk sequence.

use std::collections::VecDeque;

use flowgate_core::{
    BoundedQueue, Credit, CreditError, CreditWindow, Demand, OverflowPolicy, Push, Ratio,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum QueueOp {
    Push(u64),
    Pop,
    PopWithin(u64, u64),
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    prop_oneof![
        4 => (1u64..60).prop_map(QueueOp::Push),
        2 => Just(QueueOp::Pop),
        1 => (0u64..6, 0u64..200).prop_map(|(e, b)| QueueOp::PopWithin(e, b)),
    ]
}

fn policy() -> impl Strategy<Value = OverflowPolicy> {
    prop::sample::select(OverflowPolicy::ALL.to_vec())
}

proptest! {
    /// The queue behaves like a FIFO of what it accepted, never holds more than its capacity
    /// in either dimension, and its ledger always balances.
    #[test]
    fn queue_matches_model_and_ledger_balances(
        cap_events in 1u64..12,
        cap_bytes in 50u64..300,
        policy in policy(),
        ops in prop::collection::vec(queue_op(), 0..200),
    ) {
        let mut q = BoundedQueue::new(Credit::new(cap_events, cap_bytes), policy);
        let mut model: VecDeque<(u64, u64)> = VecDeque::new();
        let mut next_id = 0u64;
        for op in ops {
            match op {
                QueueOp::Push(bytes) => {
                    let id = next_id;
                    next_id += 1;
                    let model_bytes: u64 = model.iter().map(|(_, b)| b).sum();
                    let fits = (model.len() as u64) < cap_events && model_bytes + bytes <= cap_bytes;
                    match q.push(id, bytes) {
                        Push::Queued => {
                            prop_assert!(fits, "queued although it did not fit");
                            model.push_back((id, bytes));
                        }
                        Push::QueuedEvicting(n) => {
                            prop_assert_eq!(policy, OverflowPolicy::DropOldest);
                            prop_assert!(!fits && n >= 1);
                            for _ in 0..n { model.pop_front(); }
                            model.push_back((id, bytes));
                        }
                        Push::DroppedNewest => {
                            prop_assert_eq!(policy, OverflowPolicy::DropNewest);
                            prop_assert!(!fits);
                        }
                        Push::Full(back) => {
                            prop_assert_eq!(policy, OverflowPolicy::Block);
                            prop_assert!(!fits);
                            prop_assert_eq!(back, id, "the same item is handed back");
                        }
                        Push::Rejected(back) => {
                            prop_assert_eq!(policy, OverflowPolicy::Reject);
                            prop_assert!(!fits);
                            prop_assert_eq!(back, id);
                        }
                        Push::TooLarge(_) => prop_assert!(bytes > cap_bytes),
                    }
                }
                QueueOp::Pop => {
                    prop_assert_eq!(q.pop(), model.pop_front());
                }
                QueueOp::PopWithin(events, bytes) => {
                    let mut out = Vec::new();
                    let taken = q.pop_within(Credit::new(events, bytes), &mut out);
                    prop_assert!(taken.events <= events && taken.bytes <= bytes);
                    for id in out {
                        let (want, _) = model.pop_front().expect("model has it");
                        prop_assert_eq!(id, want);
                    }
                    // Taking stopped only because the next item did not fit the limit.
                    if let Some((_, next)) = model.front() {
                        prop_assert!(taken.events == events || taken.bytes + next > bytes);
                    }
                }
            }
            let s = q.stats();
            prop_assert!(s.queued <= cap_events && s.queued_bytes <= cap_bytes);
            prop_assert!(s.peak_events <= cap_events && s.peak_bytes <= cap_bytes);
            prop_assert_eq!(s.pushed, s.popped + s.dropped() + s.queued);
            prop_assert_eq!(s.queued, model.len() as u64);
            prop_assert_eq!(s.queued_bytes, model.iter().map(|(_, b)| b).sum::<u64>());
            if policy == OverflowPolicy::Block {
                prop_assert_eq!(s.dropped(), 0, "block never drops");
            }
        }
    }

    /// A window's credit is never negative, never more than was granted minus spent, and a
    /// spend succeeds exactly when the model says there is enough.
    #[test]
    fn window_never_goes_negative_or_grants_twice(
        ops in prop::collection::vec(
            prop_oneof![
                (0u64..50, 0u64..500).prop_map(|(e, b)| (true, e, b)),
                (0u64..50, 0u64..500).prop_map(|(e, b)| (false, e, b)),
            ],
            0..200,
        ),
    ) {
        let mut w = CreditWindow::new();
        let (mut model_events, mut model_bytes) = (0u128, 0u128);
        for (is_grant, events, bytes) in ops {
            if is_grant {
                let result = w.grant(Credit::new(events, bytes));
                if events == 0 && bytes == 0 {
                    prop_assert_eq!(result, Err(CreditError::ZeroRequest));
                } else {
                    prop_assert!(result.is_ok());
                    model_events += u128::from(events);
                    model_bytes += u128::from(bytes);
                }
            } else {
                let enough = model_events >= u128::from(events) && model_bytes >= u128::from(bytes);
                prop_assert_eq!(w.try_spend(events, bytes).is_ok(), enough);
                if enough {
                    model_events -= u128::from(events);
                    model_bytes -= u128::from(bytes);
                }
            }
            prop_assert_eq!(u128::from(w.available().events), model_events);
            prop_assert_eq!(u128::from(w.available().bytes), model_bytes);
            let granted = w.granted_total();
            let spent = w.spent_total();
            prop_assert!(spent.events <= granted.events && spent.bytes <= granted.bytes);
        }
    }

    /// A receiver's demand and a sender's window wired together: whatever the sender sends
    /// within its credit, the receiver never sees more than it asked for, and the sender's
    /// credit never exceeds the receiver's outstanding demand.
    #[test]
    fn credit_never_exceeds_what_was_requested(
        target_events in 1u64..64,
        target_bytes in 64u64..4096,
        num in 0u64..4,
        sizes in prop::collection::vec(1u64..64, 0..300),
        deliver_every in 1usize..8,
    ) {
        let mut demand = Demand::new(Credit::new(target_events, target_bytes), Ratio::new(num, 4))
            .expect("nonzero target");
        let mut window = CreditWindow::new();
        let mut in_flight = Credit::ZERO;
        for (i, size) in sizes.into_iter().enumerate() {
            if let Some(request) = demand.poll_request() {
                prop_assert!(!request.is_zero());
                window.grant(request).expect("nonzero request");
            }
            if window.admits(size) {
                window.try_spend(1, size).expect("admitted");
                in_flight = in_flight.saturating_add(Credit::new(1, size));
            }
            let promised = window.available().saturating_add(in_flight);
            prop_assert_eq!(promised, demand.outstanding(), "credit equals outstanding demand");
            if i % deliver_every == 0 {
                demand.on_delivered(in_flight.events, in_flight.bytes).expect("never over");
                in_flight = Credit::ZERO;
            }
            let out = demand.outstanding();
            prop_assert!(out.events <= target_events && out.bytes <= target_bytes);
        }
    }
}
