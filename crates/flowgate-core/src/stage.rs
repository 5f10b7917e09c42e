//! How a stage spends its time, and which stage limits a pipeline.
//!
//! Every stage (producer, topic, consumer, sink) is at each moment in one of three states:
//! *busy* (working), *backpressured* (has work, but no credit to pass it on), or *idle* (no
//! work). A [`StageClock`] accumulates the time spent in each, with time passed in; the
//! difference of two snapshots gives the split over an interval. [`bottleneck`] reads the
//! splits and names the limiting stage in words.

use std::fmt;
use std::time::Duration;

/// What a stage is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageState {
    /// Working.
    Busy,
    /// Has work but may not pass it on: waiting for credit.
    Backpressured,
    /// Has no work: waiting for input.
    Idle,
}

impl StageState {
    /// The one rule for a bounded stage (a topic, a pipe): *idle* while it holds nothing;
    /// *backpressured* while it is full, which means an upstream sender is blocked and there
    /// is no room for its next event; *busy* otherwise. Every place that reports a topic's
    /// state (its clock, `/stats`, the metrics, `flowgate top`) reads it through this.
    pub fn of_bounded_stage(holds_nothing: bool, sender_blocked: bool) -> StageState {
        if holds_nothing {
            StageState::Idle
        } else if sender_blocked {
            StageState::Backpressured
        } else {
            StageState::Busy
        }
    }
}

/// Time spent in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StageSplit {
    /// Working.
    pub busy: Duration,
    /// Waiting for credit with work in hand.
    pub backpressured: Duration,
    /// Waiting for input.
    pub idle: Duration,
}

impl StageSplit {
    /// The total time accounted for.
    pub fn total(&self) -> Duration {
        self.busy + self.backpressured + self.idle
    }

    /// The split accumulated since `earlier` (a snapshot of the same clock).
    pub fn since(&self, earlier: &StageSplit) -> StageSplit {
        StageSplit {
            busy: self.busy.saturating_sub(earlier.busy),
            backpressured: self.backpressured.saturating_sub(earlier.backpressured),
            idle: self.idle.saturating_sub(earlier.idle),
        }
    }

    /// Shares of the total as (busy, backpressured, idle), each 0..=1; all zero when no time
    /// was accounted.
    pub fn shares(&self) -> (f64, f64, f64) {
        let total = self.total().as_secs_f64();
        if total <= 0.0 {
            return (0.0, 0.0, 0.0);
        }
        (
            self.busy.as_secs_f64() / total,
            self.backpressured.as_secs_f64() / total,
            self.idle.as_secs_f64() / total,
        )
    }
}

/// Accumulates a stage's time per state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageClock {
    state: StageState,
    since: Duration,
    split: StageSplit,
}

impl StageClock {
    /// A clock that starts in `state` at `now` (time since an epoch the caller picks).
    pub fn new(state: StageState, now: Duration) -> Self {
        StageClock {
            state,
            since: now,
            split: StageSplit::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> StageState {
        self.state
    }

    /// Enters `state` at `now`, charging the time since the last change to the old state.
    /// A `now` earlier than the last change charges nothing.
    pub fn enter(&mut self, state: StageState, now: Duration) {
        self.charge(now);
        self.state = state;
    }

    /// Time per state up to `now`, the current state included.
    pub fn split(&self, now: Duration) -> StageSplit {
        let mut copy = self.clone();
        copy.charge(now);
        copy.split
    }

    fn charge(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.since);
        match self.state {
            StageState::Busy => self.split.busy += elapsed,
            StageState::Backpressured => self.split.backpressured += elapsed,
            StageState::Idle => self.split.idle += elapsed,
        }
        self.since = self.since.max(now);
    }
}

/// The pipeline's stages as seen over one interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PipelineView {
    /// The producer's split, if it is reachable.
    pub producer: Option<StageSplit>,
    /// The topic's split, by [`StageState::of_bounded_stage`].
    pub topic: StageSplit,
    /// The consumer's split (busy = committing to the sink), if it is reachable.
    pub consumer: Option<StageSplit>,
}

/// Which stage limits the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Downstream: the consumer and its sink cannot keep up; the topic fills and the
    /// producer waits for credit.
    Sink,
    /// Upstream: the producer is the slowest stage; the topic is mostly empty.
    Producer,
    /// No stage dominates (or nothing is flowing).
    Balanced,
}

impl Limit {
    /// The kebab-case name used in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Limit::Sink => "sink",
            Limit::Producer => "producer",
            Limit::Balanced => "balanced",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stage counts as saturated in a state when it spends at least this share of the interval
/// there: a clear majority, so that a pipeline in balance is not called limited.
const SATURATED: f64 = 0.6;

/// Names the limiting stage, with a sentence that quotes the shares it is based on.
pub fn bottleneck(view: &PipelineView) -> (Limit, String) {
    let (_, topic_waiting, topic_empty) = view.topic.shares();
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    let consumer_busy = view.consumer.map(|c| c.shares().0);
    let producer_blocked = view.producer.map(|p| p.shares().1);
    if view.topic.total().is_zero() {
        return (Limit::Balanced, "no data yet".into());
    }
    let downstream = topic_waiting >= SATURATED
        || consumer_busy.is_some_and(|b| b >= SATURATED)
            && producer_blocked.is_some_and(|b| b >= SATURATED);
    if downstream {
        let mut words = String::from("the sink is the limit:");
        if let Some(b) = consumer_busy {
            words.push_str(&format!(" consumer busy committing {}", pct(b)));
            words.push(';');
        }
        words.push_str(&format!(" topic full {}", pct(topic_waiting)));
        if let Some(b) = producer_blocked {
            words.push_str(&format!("; producer backpressured {}", pct(b)));
        }
        return (Limit::Sink, words);
    }
    if topic_empty >= SATURATED {
        let mut words = format!(
            "the producer is the limit: topic empty {}",
            pct(topic_empty)
        );
        if let Some(c) = view.consumer {
            words.push_str(&format!("; consumer idle {}", pct(c.shares().2)));
        }
        if let Some(p) = view.producer {
            words.push_str(&format!("; producer busy {}", pct(p.shares().0)));
        }
        return (Limit::Producer, words);
    }
    (
        Limit::Balanced,
        format!(
            "no single limit: topic empty {}, full {}",
            pct(topic_empty),
            pct(topic_waiting)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    fn split(busy: u64, backpressured: u64, idle: u64) -> StageSplit {
        StageSplit {
            busy: s(busy),
            backpressured: s(backpressured),
            idle: s(idle),
        }
    }

    #[test]
    fn a_clock_charges_each_state_its_own_time() {
        let mut c = StageClock::new(StageState::Idle, s(0));
        c.enter(StageState::Busy, s(2));
        c.enter(StageState::Backpressured, s(5));
        assert_eq!(c.split(s(10)), split(3, 5, 2));
        assert_eq!(c.split(s(10)).since(&split(1, 1, 1)), split(2, 4, 1));
    }

    #[test]
    fn time_going_backwards_charges_nothing() {
        let mut c = StageClock::new(StageState::Busy, s(5));
        c.enter(StageState::Idle, s(3));
        assert_eq!(c.split(s(6)), split(0, 0, 1));
    }

    #[test]
    fn a_full_topic_and_a_waiting_producer_name_the_sink() {
        let view = PipelineView {
            producer: Some(split(1, 9, 0)),
            topic: split(2, 8, 0),
            consumer: Some(split(10, 0, 0)),
        };
        let (limit, words) = bottleneck(&view);
        assert_eq!(limit, Limit::Sink);
        assert!(
            words.contains("consumer busy committing 100%")
                && words.contains("producer backpressured 90%"),
            "{words}"
        );
    }

    #[test]
    fn an_empty_topic_names_the_producer() {
        let view = PipelineView {
            producer: None,
            topic: split(1, 0, 9),
            consumer: Some(split(1, 0, 9)),
        };
        let (limit, words) = bottleneck(&view);
        assert_eq!(limit, Limit::Producer);
        assert!(words.contains("topic empty 90%"), "{words}");
    }

    #[test]
    fn a_pipeline_in_balance_is_not_called_limited() {
        let view = PipelineView {
            producer: None,
            topic: split(5, 3, 2),
            consumer: None,
        };
        assert_eq!(bottleneck(&view).0, Limit::Balanced);
        assert_eq!(bottleneck(&PipelineView::default()).0, Limit::Balanced);
    }
}
