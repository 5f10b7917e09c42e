//! flowgate's flow-control core: plain Rust, std only, no IO and no clock reads.
//!
//! Everything that decides (how much may be sent, what a full queue does, how fast a stage
//! may go) lives here as values and `&mut self` state machines. Time is an argument. The async
//! code in `flowgate-client` and the `flowgate` binary only feeds these types inputs and
//! carries out their answers, which is what lets them be tested exhaustively with property
//! tests.
//!
//! | module | responsibility |
//! |---|---|
//! | [`credit`] | [`Credit`] in events and bytes; the sender's [`CreditWindow`]; the receiver's [`Demand`] |
//! | [`queue`] | [`BoundedQueue`] with an [`OverflowPolicy`] and the counters of its ledger |
//! | [`token_bucket`] | [`TokenBucket`]: rate + burst, time passed in |
//! | [`topic`] | [`Topic`]: the broker's pure dispatch state machine (grants, deliveries, acks) |
//! | [`backoff`] | [`Backoff`]: a doubling wait between attempts |
//! | [`outage`] | [`Outage`]: a failure told once each way, ending only once it settles |
//! | [`limit`] | [`AimdLimit`]: batch size learned from commit latency |
//! | [`stage`] | [`StageClock`]: busy / backpressured / idle time; [`bottleneck`] names the limiting stage |
//! | [`event`] | the [`Event`] record and its size in credit |
//! | [`admission`] | [`Admission`]: requests waiting for room, clients by turns, fair shares of a bounded queue |
//! | [`drain`] | [`DrainMeter`]: a measured drain rate and the `Retry-After` it gives |
//! | [`governor`] | [`MemoryGovernor`]: how many bytes all topics may hold, from a memory budget and the measured resident set |

#![forbid(unsafe_code)]

pub mod admission;
pub mod backoff;
pub mod credit;
pub mod drain;
pub mod event;
pub mod governor;
pub mod limit;
pub mod outage;
pub mod queue;
pub mod stage;
pub mod token_bucket;
pub mod topic;

pub use admission::{Admission, Refusal, Waiting};
pub use backoff::Backoff;
pub use credit::{
    Credit, CreditError, CreditWindow, Demand, REFILL_AT_HALF, Ratio, grant_due, pay_debt,
};
pub use drain::{DrainMeter, MAX_RETRY_AFTER_S};
pub use event::{Event, EventId, ORIGIN_PREFIX, RECORD_OVERHEAD_BYTES, credit_bytes};
pub use governor::MemoryGovernor;
pub use limit::AimdLimit;
pub use outage::{Outage, Told};
pub use queue::{BoundedQueue, OverflowPolicy, Push, QueueStats};
pub use stage::{Limit, PipelineView, StageClock, StageSplit, StageState, bottleneck};
pub use token_bucket::{Shortfall, TokenBucket, TokenBucketError};
pub use topic::{
    Action, BooksError, ConnId, DEFAULT_MAX_GROUPS, Delivery, Expired, GroupMode, GroupStats,
    KeyFn, MarkLimits, Overflow, Published, Topic, TopicError, TopicPolicy, TopicStats,
    UnknownPolicy,
};
