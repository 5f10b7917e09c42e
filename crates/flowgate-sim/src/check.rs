//! The invariants, checked after every step of a run and once at its end, each named in the
//! failure it reports:
//!
//! - **cap**: the topic never holds more than its capacity, in events or bytes;
//! - **credit**: what the topic holds plus the credit it counts as granted never exceeds its
//!   capacity (under a policy that drops, the credit alone: it is not paced by what is held),
//!   and the credit producers hold plus what is in flight never exceeds what the topic counts
//!   as granted (nobody spends credit twice, nothing is granted twice);
//! - **liveness**: whenever nothing is in flight and no commit is running, no producer waits
//!   for an event that the topic has room for (room for credit, under a policy that drops);
//! - **ledger** (at the end): every producer's every event was confirmed, accepted once,
//!   acked, and committed as a row by every blocking consumer group, and by a best-effort
//!   group committed or skipped; no row the producers did not send. Under another policy
//!   or a max age: every event sent was accepted, dropped or refused (the producers counting
//!   each refusal), every accepted one acked, dropped, replaced or expired, nothing held, and
//!   every acked one committed;
//! - **drain** (at the end): the run finished before its deadline.

use std::fmt;

use flowgate_proto::session::ClientSession;

use crate::scenario::{GROUPS, blocks};
use crate::world::World;

/// A broken invariant, with where and when.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The run's seed: `cargo test -p flowgate-sim --test seeds -- --seed N` replays it.
    pub seed: u64,
    /// The step it was found at.
    pub step: u64,
    /// Virtual time then.
    pub at_ns: u64,
    /// The invariant's name.
    pub rule: &'static str,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} broke {} at step {} ({:.3} s virtual): {}\n  replay: cargo test -p flowgate-sim --test seeds -- --seed {}",
            self.seed,
            self.rule,
            self.step,
            self.at_ns as f64 / 1e9,
            self.detail,
            self.seed
        )
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Virtual time from each connect to the producer's first grant (ns).
    pub first_grant_ns: Vec<u64>,
    /// Ack rejections the broker sent (not fatal).
    pub notices: u64,
    /// The most bytes held by the topic and the producers' unconfirmed events at once.
    pub peak_memory_bytes: u64,
}

impl World {
    /// The invariants that hold after every step. Those on the topic's totals run every
    /// step; those that look at every producer and connection every `heavy_every` steps and
    /// whenever nothing is in flight.
    pub(crate) fn check_step(&mut self) -> Result<(), crate::Violation> {
        let cap = self.scenario.capacity;
        let s = self.topic.stats();
        // Held once however many groups have still to ack it.
        let held_events = s.held;
        let held_bytes = s.held_bytes;
        if held_events > cap.events || held_bytes > cap.bytes {
            return Err(self.violation(
                "cap",
                format!("holds {held_events} events / {held_bytes} bytes; capacity {cap}"),
            ));
        }
        let granted = s.producer_credit;
        let paces = self.scenario.policy.overflow.paces();
        // Under a policy that drops, credit is bounded by the capacity alone.
        let (paced_events, paced_bytes) = if paces {
            (held_events, held_bytes)
        } else {
            (0, 0)
        };
        if paced_events + granted.events > cap.events || paced_bytes + granted.bytes > cap.bytes {
            return Err(self.violation(
                "credit",
                format!(
                    "holds {held_events} events / {held_bytes} bytes and counts {granted} granted; capacity {cap}"
                ),
            ));
        }
        let quiet = self.frames_inflight == 0 && self.commits_pending == 0;
        if !quiet && !self.steps.is_multiple_of(self.scenario.heavy_every) {
            return Ok(());
        }
        let holding = self.credit_outside();
        if holding.events > granted.events || holding.bytes > granted.bytes {
            return Err(self.violation(
                "credit",
                format!(
                    "producers and frames in flight hold {holding}; the topic counts {granted} granted"
                ),
            ));
        }
        let unconfirmed: u64 = self
            .producers
            .iter()
            .map(|p| p.session.unconfirmed_bytes())
            .sum();
        self.report.peak_memory_bytes = self.report.peak_memory_bytes.max(held_bytes + unconfirmed);
        if quiet {
            let room_events = cap.events - paced_events - granted.events;
            let room_bytes = cap.bytes - paced_bytes - granted.bytes;
            for (i, p) in self.producers.iter().enumerate() {
                let Some(event) = &p.pending else { continue };
                let need = event.size_bytes();
                if p.session.is_connected()
                    && !p.session.admits(need)
                    && room_events >= 1
                    && room_bytes >= need
                {
                    return Err(self.violation(
                        "liveness",
                        format!(
                            "producer {i} waits to send {need} bytes with nothing in flight while the topic has room for {room_events} events / {room_bytes} bytes"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The invariants of a finished run.
    pub(crate) fn check_end(&self) -> Result<(), crate::Violation> {
        let s = self.topic.stats();
        for (i, p) in self.producers.iter().enumerate() {
            let plan = &self.scenario.producers[i];
            let confirmed = p.session.stats().confirmed_seq;
            let short = plan.stop_ns.is_none() && p.sent != plan.events;
            if short || confirmed != p.sent {
                return Err(self.violation(
                    "drain",
                    format!(
                        "producer {i} sent {} of {}, {confirmed} confirmed, when the run ended (topic: {} ready, {} unacked, {} granted)",
                        p.sent, plan.events, s.ready, s.unacked, s.producer_credit
                    ),
                ));
            }
            if self.scenario.policy != flowgate_core::TopicPolicy::default() {
                continue;
            }
            for g in self.groups_in_use().into_iter().filter(|&g| blocks(g)) {
                for seq in 1..=p.sent {
                    if !self.rows[g].contains_key(&(i as u64 + 1, seq)) {
                        return Err(self.violation(
                            "ledger",
                            format!(
                                "producer {i} event {seq} confirmed but never committed by group {}",
                                GROUPS[g]
                            ),
                        ));
                    }
                }
            }
        }
        let total: u64 = self.producers.iter().map(|p| p.sent).sum();
        if self.scenario.policy != flowgate_core::TopicPolicy::default() {
            return self.check_policy_ledger(total);
        }
        let groups = self.groups_in_use();
        let rows: Vec<usize> = groups.iter().map(|&g| self.rows[g].len()).collect();
        // A best-effort group committed or skipped each event: both, when a delivery taken
        // back at its deadline was skipped while its consumer still committed it.
        let stats = self.topic.groups();
        let group_stats = |g: usize| stats.iter().find(|x| x.name == GROUPS[g]);
        let mut every_group = true;
        for (&g, &n) in groups.iter().zip(&rows) {
            let acked = group_stats(g).map_or(0, |x| x.acked);
            if blocks(g) {
                every_group &= n as u64 == total && acked == total;
            } else {
                let skipped = group_stats(g).map_or(0, |x| x.skipped);
                every_group &= n as u64 <= total && n as u64 + skipped >= total;
                every_group &= acked <= n as u64;
            }
        }
        let acked: u64 = stats.iter().map(|x| x.acked).sum();
        if !every_group || s.accepted != total || s.acked != acked {
            let skipped: Vec<(String, u64)> =
                stats.iter().map(|x| (x.name.clone(), x.skipped)).collect();
            return Err(self.violation(
                "ledger",
                format!(
                    "{total} events sent, rows per group {rows:?} (skipped {skipped:?}), {} accepted, {} acked over {} group(s)",
                    s.accepted,
                    s.acked,
                    groups.len()
                ),
            ));
        }
        Ok(())
    }

    /// The groups some consumer of the run belongs to.
    fn groups_in_use(&self) -> Vec<usize> {
        let mut groups: Vec<usize> = self.scenario.consumers.iter().map(|c| c.group).collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    /// The ledger of a run whose topic may let events go: each one is accounted for once.
    fn check_policy_ledger(&self, total: u64) -> Result<(), crate::Violation> {
        let s = self.topic.stats();
        let refused: u64 = self
            .producers
            .iter()
            .map(|p| p.session.stats().refused)
            .sum();
        // Policy runs have one group.
        let rows = self.rows[0].len() as u64;
        let sent_all = self.rows[0].keys().all(|&(producer, seq)| {
            let i = producer as usize - 1;
            i < self.producers.len() && seq <= self.producers[i].sent
        });
        let fine = s.accepted + s.dropped_newest + s.rejected == total
            && refused == s.rejected
            && s.acked + s.dropped_oldest + s.conflated + s.expired == s.accepted
            && s.held == 0
            && rows >= s.acked
            && rows <= s.accepted
            && sent_all;
        if fine {
            return Ok(());
        }
        Err(self.violation(
            "ledger",
            format!(
                "{total} sent: {} accepted, {} dropped new, {} rejected ({refused} refused at the producers); {} acked, {} dropped old, {} conflated, {} expired, {} held; {rows} rows{}",
                s.accepted,
                s.dropped_newest,
                s.rejected,
                s.acked,
                s.dropped_oldest,
                s.conflated,
                s.expired,
                s.held,
                if sent_all { "" } else { ", one the producers did not send" }
            ),
        ))
    }
}
