//! A deterministic simulator for flowgate's credit loop, in the spirit of FoundationDB's
//! simulation testing: the real state machines (core's `Topic`, proto's `ProducerSession`,
//! `ConsumerSession` and `ServerSession`), joined by simulated links, run in virtual time by
//! one event queue, with every choice drawn from one seed. A failing seed replays exactly.
//!
//! | module | responsibility |
//! |---|---|
//! | [`scenario`] | what a run is made of, drawn from its seed |
//! | `world` | the event loop: links with delay and in-order delivery, producers, consumers with commit latency and crashes, the broker |
//! | `check` | the invariants, checked after every step and at the end ([`Violation`]) |
//! | [`rng`] | the seeded generator |

pub mod check;
pub mod rng;
pub mod scenario;
mod world;

pub use check::{Report, Violation};
pub use scenario::Scenario;
pub use world::World;

/// Runs the scenario of `seed`; the steps it took, or the first invariant it broke. With
/// `trace`, prints every event.
pub fn run_seed(seed: u64, trace: bool) -> Result<u64, Violation> {
    run(Scenario::small(seed), trace)
}

/// Runs [`Scenario::with_policy`] of `seed`: the same run on a topic that drops, refuses or
/// conflates, and maybe has a max age.
pub fn run_policy_seed(seed: u64, trace: bool) -> Result<u64, Violation> {
    run(Scenario::with_policy(seed), trace)
}

/// Runs [`Scenario::with_groups`] of `seed`: the same run with two blocking consumer groups
/// and a best-effort one.
pub fn run_groups_seed(seed: u64, trace: bool) -> Result<u64, Violation> {
    run(Scenario::with_groups(seed), trace)
}

fn run(scenario: Scenario, trace: bool) -> Result<u64, Violation> {
    let mut world = World::new(scenario);
    world.trace = trace;
    world.run()?;
    Ok(world.steps())
}
