//! The dedup table: each producer id's high-water mark, kept while the id is attached and for
//! an idle TTL after it leaves, and never more ids than a cap (the longest idle go first).
//! Producer ids are random per process, so without both bounds the table would grow by one
//! entry for every producer the broker ever met.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// How long, and how many, producer ids a topic remembers once their producers have left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkLimits {
    /// An id whose last producer left this long ago is forgotten.
    pub idle_ttl: Duration,
    /// The most ids remembered; past it, the longest idle are forgotten first. Ids with a
    /// producer attached are never forgotten, so the table can exceed this only by them.
    pub max_ids: usize,
}

impl Default for MarkLimits {
    fn default() -> Self {
        MarkLimits {
            idle_ttl: Duration::from_secs(3600),
            max_ids: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    /// The highest sequence number accepted; `None` until the first publish.
    high: Option<u64>,
    /// Producer connections with this id attached now.
    attached: u32,
    /// When the last one left, while none is attached.
    idle_since: Option<Duration>,
}

/// The most refused runs remembered per producer id (a reject topic's refusals, for a producer
/// that reconnects before it read them; see [`Marks::refused`]).
pub const MAX_REFUSED_RUNS: usize = 64;

/// The table. It keeps no clock: the topic passes its time to every call that needs one.
#[derive(Debug, Default)]
pub(super) struct Marks {
    map: HashMap<u64, Mark>,
    /// Per id, its latest refused runs of sequence numbers, oldest first (reject topics).
    refused: HashMap<u64, VecDeque<(u64, u64)>>,
    /// `(idle since, id)` of every id with no producer attached, longest idle first.
    idle: BTreeSet<(Duration, u64)>,
    limits: MarkLimits,
    /// Ids forgotten since [`Marks::take_forgotten`] last ran.
    forgotten: Vec<u64>,
    forgotten_total: u64,
}

impl Marks {
    pub fn set_limits(&mut self, limits: MarkLimits, now: Duration) {
        self.limits = limits;
        self.expire(now);
    }

    /// A producer with `id` attached; its high-water mark, if the id is remembered.
    pub fn attach(&mut self, id: u64) -> Option<u64> {
        let mark = self.map.entry(id).or_default();
        if let Some(since) = mark.idle_since.take() {
            self.idle.remove(&(since, id));
        }
        mark.attached += 1;
        let high = mark.high;
        self.enforce_cap();
        high
    }

    /// A producer with `id` left; once none is attached the id starts its idle time.
    pub fn detach(&mut self, id: u64, now: Duration) {
        let Some(mark) = self.map.get_mut(&id) else {
            return;
        };
        mark.attached = mark.attached.saturating_sub(1);
        if mark.attached == 0 {
            if mark.high.is_none() {
                // It never published: nothing to remember.
                self.map.remove(&id);
                return;
            }
            mark.idle_since = Some(now);
            self.idle.insert((now, id));
            self.enforce_cap();
        }
    }

    /// The highest sequence number accepted from `id`, if remembered.
    pub fn high(&self, id: u64) -> Option<u64> {
        self.map.get(&id).and_then(|m| m.high)
    }

    /// Records `high` for an attached id.
    pub fn set_high(&mut self, id: u64, high: u64) {
        if let Some(mark) = self.map.get_mut(&id) {
            mark.high = Some(high);
        }
    }

    /// Records that `id`'s events `from..=to` were refused (a run next to the last one joins
    /// it); the oldest runs give way beyond [`MAX_REFUSED_RUNS`].
    pub fn note_refused(&mut self, id: u64, from: u64, to: u64) {
        let runs = self.refused.entry(id).or_default();
        match runs.back_mut() {
            Some(last) if last.1 + 1 == from => last.1 = to,
            _ => {
                if runs.len() == MAX_REFUSED_RUNS {
                    runs.pop_front();
                }
                runs.push_back((from, to));
            }
        }
    }

    /// `id`'s latest refused runs within `from..=to`, clipped to it, oldest first.
    pub fn refused_within(&self, id: u64, from: u64, to: u64) -> Vec<(u64, u64)> {
        self.refused
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|r| r.1 >= from && r.0 <= to)
            .map(|r| (r.0.max(from), r.1.min(to)))
            .collect()
    }

    /// `id`'s latest refused runs, oldest first: a producer that reconnects is told them in
    /// `WELCOME`, in case the connection that carried its `REFUSED` broke first.
    pub fn refused(&self, id: u64) -> Vec<(u64, u64)> {
        self.refused
            .get(&id)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Puts back a mark a store recovered: idle from now, as if its producer had just left.
    pub fn restore(&mut self, id: u64, seq: u64, now: Duration) {
        let mark = self.map.entry(id).or_default();
        mark.high = Some(mark.high.map_or(seq, |h| h.max(seq)));
        if mark.attached == 0 && mark.idle_since.is_none() {
            mark.idle_since = Some(now);
            self.idle.insert((now, id));
        }
        self.enforce_cap();
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Ids forgotten over the table's life.
    pub fn forgotten_total(&self) -> u64 {
        self.forgotten_total
    }

    /// The ids forgotten since the last call, for a store that keeps marks too.
    pub fn take_forgotten(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.forgotten)
    }

    /// Forgets ids idle past the TTL at `now`, then any past the cap.
    pub fn expire(&mut self, now: Duration) {
        while let Some(&(since, id)) = self.idle.first() {
            if now.saturating_sub(since) < self.limits.idle_ttl {
                break;
            }
            self.forget_first_idle(since, id);
        }
        self.enforce_cap();
    }

    fn enforce_cap(&mut self) {
        while self.map.len() > self.limits.max_ids {
            let Some(&(since, id)) = self.idle.first() else {
                break;
            };
            self.forget_first_idle(since, id);
        }
    }

    fn forget_first_idle(&mut self, since: Duration, id: u64) {
        self.idle.remove(&(since, id));
        self.map.remove(&id);
        self.refused.remove(&id);
        self.forgotten.push(id);
        self.forgotten_total += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ttl_secs: u64, max_ids: usize) -> MarkLimits {
        MarkLimits {
            idle_ttl: Duration::from_secs(ttl_secs),
            max_ids,
        }
    }

    fn published(marks: &mut Marks, id: u64, high: u64, at: Duration) {
        marks.attach(id);
        marks.set_high(id, high);
        marks.detach(id, at);
    }

    #[test]
    fn an_idle_id_is_forgotten_after_the_ttl_and_an_attached_one_never() {
        let mut m = Marks::default();
        m.set_limits(limits(10, 100), Duration::ZERO);
        published(&mut m, 1, 5, Duration::ZERO);
        m.attach(2);
        m.set_high(2, 7);
        m.expire(Duration::from_secs(9));
        assert_eq!(m.high(1), Some(5));
        m.expire(Duration::from_secs(10));
        assert_eq!(m.high(1), None);
        m.expire(Duration::from_secs(1000));
        assert_eq!(m.high(2), Some(7), "attached ids stay");
        assert_eq!(m.take_forgotten(), vec![1]);
        assert_eq!(m.take_forgotten(), Vec::<u64>::new());
    }

    #[test]
    fn returning_within_the_ttl_keeps_the_mark_and_restarts_the_idle_time() {
        let mut m = Marks::default();
        m.set_limits(limits(10, 100), Duration::ZERO);
        published(&mut m, 1, 5, Duration::ZERO);
        m.expire(Duration::from_secs(8));
        assert_eq!(m.attach(1), Some(5));
        m.detach(1, Duration::from_secs(8));
        m.expire(Duration::from_secs(17));
        assert_eq!(m.high(1), Some(5));
        m.expire(Duration::from_secs(18));
        assert_eq!(m.high(1), None);
    }

    #[test]
    fn past_the_cap_the_longest_idle_go_first() {
        let mut m = Marks::default();
        m.set_limits(limits(3600, 3), Duration::ZERO);
        for id in 1..=5 {
            m.expire(Duration::from_secs(id));
            published(&mut m, id, id * 10, Duration::from_secs(id));
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.take_forgotten(), vec![1, 2]);
        assert_eq!(m.high(3), Some(30));
        assert_eq!(m.forgotten_total(), 2);
    }

    #[test]
    fn attached_ids_are_never_evicted_by_the_cap() {
        let mut m = Marks::default();
        m.set_limits(limits(3600, 2), Duration::ZERO);
        for id in 1..=4 {
            m.attach(id);
            m.set_high(id, 1);
        }
        assert_eq!(m.len(), 4);
        m.detach(1, Duration::ZERO);
        assert_eq!(m.len(), 3, "the first to go idle is over the cap at once");
        assert_eq!(m.high(1), None);
    }

    #[test]
    fn an_id_that_never_published_leaves_nothing_behind() {
        let mut m = Marks::default();
        m.attach(9);
        m.detach(9, Duration::ZERO);
        assert_eq!(m.len(), 0);
        assert_eq!(m.forgotten_total(), 0);
    }

    #[test]
    fn restored_marks_are_idle_from_the_restore() {
        let mut m = Marks::default();
        m.set_limits(limits(10, 100), Duration::ZERO);
        m.expire(Duration::from_secs(100));
        m.restore(4, 40, Duration::from_secs(100));
        m.restore(4, 30, Duration::from_secs(100));
        assert_eq!(m.high(4), Some(40));
        m.expire(Duration::from_secs(109));
        assert_eq!(m.attach(4), Some(40));
    }
}
