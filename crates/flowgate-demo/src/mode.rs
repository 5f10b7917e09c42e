//! The pipeline modes the demo runs, and the pipe each one builds.

use std::fmt;

use clap::ValueEnum;
use flowgate_client::inproc::PipeConfig;
use flowgate_core::{Credit, OverflowPolicy};

/// How the queue between producer and consumer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// An unbounded queue; the producer never waits. Memory grows until the process dies.
    Naive,
    /// A bounded queue with credit: the producer sends only what there is room for, then waits.
    Backpressure,
    /// A bounded queue that discards incoming events when full; every drop is counted.
    DropNewest,
    /// A bounded queue that evicts its oldest events when full; every drop is counted.
    DropOldest,
    /// Naive, then backpressure, then a side-by-side summary.
    Compare,
}

impl Mode {
    /// The single-pipeline modes this choice runs, in order.
    pub(crate) fn runs(self) -> Vec<Mode> {
        match self {
            Mode::Compare => vec![Mode::Naive, Mode::Backpressure],
            m => vec![m],
        }
    }

    /// The name used on the command line, in tables and in the JSON output.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Naive => "naive",
            Mode::Backpressure => "backpressure",
            Mode::DropNewest => "drop-newest",
            Mode::DropOldest => "drop-oldest",
            Mode::Compare => "compare",
        }
    }

    /// The SQLite table this mode's run writes to (one per mode, so a compare run keeps both).
    pub(crate) fn table(self) -> String {
        format!("events_{}", self.name().replace('-', "_"))
    }

    /// The pipe for a single-pipeline mode, given the bounded capacity.
    pub(crate) fn pipe_config(self, capacity: Credit) -> PipeConfig {
        let (capacity, policy) = match self {
            Mode::Naive => (Credit::UNBOUNDED, OverflowPolicy::Block),
            Mode::Backpressure | Mode::Compare => (capacity, OverflowPolicy::Block),
            Mode::DropNewest => (capacity, OverflowPolicy::DropNewest),
            Mode::DropOldest => (capacity, OverflowPolicy::DropOldest),
        };
        PipeConfig { capacity, policy }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_runs_naive_then_backpressure() {
        assert_eq!(Mode::Compare.runs(), vec![Mode::Naive, Mode::Backpressure]);
    }

    #[test]
    fn only_naive_is_unbounded() {
        let cap = Credit::new(10, 1000);
        assert_eq!(Mode::Naive.pipe_config(cap).capacity, Credit::UNBOUNDED);
        for m in [Mode::Backpressure, Mode::DropNewest, Mode::DropOldest] {
            assert_eq!(m.pipe_config(cap).capacity, cap);
        }
    }

    #[test]
    fn table_names_are_valid_identifiers() {
        assert_eq!(Mode::DropNewest.table(), "events_drop_newest");
    }
}
