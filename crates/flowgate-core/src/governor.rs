//! The memory governor's arithmetic: from a memory budget and two measurements, the process's
//! resident set and the bytes its topics hold and have promised (ready, unacked, granted), how
//! many such bytes all topics together may have. Events cost more memory than their credit
//! bytes (allocations, maps, buffers), so the cost of a credit byte is learned from the
//! measurements rather than assumed, and the pool follows it.

/// The share of the budget the governor aims the resident set at, in percent: the rest is
/// headroom for bursts it cannot see coming (reads in flight, allocator slack).
pub const TARGET_PERCENT: u64 = 75;

/// What a credit byte is assumed to cost in resident memory before there is enough held to
/// measure it.
const FIRST_COST: f64 = 2.0;

/// Held bytes below this say too little about their cost to learn from.
const LEARN_ABOVE: u64 = 4 << 20;

/// The learned cost stays within these.
const COST_RANGE: (f64, f64) = (1.0, 16.0);

/// A memory budget and what it allows.
#[derive(Debug, Clone)]
pub struct MemoryGovernor {
    budget: u64,
    /// The resident set before any event was held: memory the pool cannot give out.
    base: u64,
    /// Resident bytes per held credit byte, smoothed.
    cost: f64,
}

impl MemoryGovernor {
    /// A governor for `budget` bytes, in a process whose resident set is `base` while it holds
    /// nothing.
    pub fn new(budget: u64, base: u64) -> MemoryGovernor {
        MemoryGovernor {
            budget,
            base,
            cost: FIRST_COST,
        }
    }

    /// The budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The resident set the governor aims at.
    pub fn target(&self) -> u64 {
        (u128::from(self.budget) * u128::from(TARGET_PERCENT) / 100) as u64
    }

    /// The bytes all topics may hold and promise, before any measurement.
    pub fn first_pool(&self) -> u64 {
        self.pool_at(self.cost)
    }

    /// Takes a measurement (`rss` now, while topics hold and have promised `held` bytes) and
    /// returns the pool. When the resident set is above the target, the pool drops at once
    /// below what is held, so nothing more is granted until acks bring memory down.
    pub fn observe(&mut self, rss: u64, held: u64) -> u64 {
        if held >= LEARN_ABOVE {
            let seen = rss.saturating_sub(self.base) as f64 / held as f64;
            let seen = seen.clamp(COST_RANGE.0, COST_RANGE.1);
            // Quick to learn a higher cost, slow to forget it.
            let weight = if seen > self.cost { 0.5 } else { 0.1 };
            self.cost += (seen - self.cost) * weight;
        }
        let pool = self.pool_at(self.cost);
        if rss > self.target() {
            let over = rss - self.target();
            let shrink = (over as f64 / self.cost) as u64;
            return pool.min(held.saturating_sub(shrink));
        }
        pool
    }

    fn pool_at(&self, cost: f64) -> u64 {
        (self.target().saturating_sub(self.base) as f64 / cost) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_first_pool_leaves_the_base_and_headroom_out_at_the_assumed_cost() {
        let g = MemoryGovernor::new(256 * MIB, 16 * MIB);
        assert_eq!(g.target(), 192 * MIB);
        assert_eq!(g.first_pool(), 88 * MIB);
    }

    #[test]
    fn a_measured_higher_cost_shrinks_the_pool() {
        let mut g = MemoryGovernor::new(256 * MIB, 16 * MIB);
        // 40 MiB held cost 160 MiB: 4 bytes each.
        let assumed = g.first_pool();
        let first = g.observe(176 * MIB, 40 * MIB);
        assert!(first < assumed);
        let mut pool = first;
        for _ in 0..20 {
            pool = g.observe(176 * MIB, 40 * MIB);
        }
        let expected = 44 * MIB; // (192 - 16) / 4
        assert!(pool.abs_diff(expected) < MIB / 100, "{pool}");
    }

    #[test]
    fn over_the_target_the_pool_drops_below_what_is_held() {
        let mut g = MemoryGovernor::new(256 * MIB, 16 * MIB);
        let pool = g.observe(230 * MIB, 60 * MIB);
        assert!(pool < 60 * MIB, "{pool}");
    }

    #[test]
    fn too_little_held_teaches_nothing() {
        let mut g = MemoryGovernor::new(256 * MIB, 16 * MIB);
        assert_eq!(g.observe(100 * MIB, MIB), g.first_pool());
    }
}
