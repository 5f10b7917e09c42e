//! How a running flowgate process shows what it is doing: typed `/stats` documents, the one
//! table of Prometheus metrics, the HTTP endpoints that serve both, the broker's live
//! dashboard, and the charts and units the reports share.
//!
//! | module | responsibility |
//! |---|---|
//! | [`snapshot`] | [`Snapshot`]: the broker's, a producer's and a consumer's `/stats`, serde both ways |
//! | [`table`] | every metric's name, kind, labels, help and source; registration and publishing |
//! | [`http`] | serving `/stats`, `/metrics` and a page; fetching `/stats` |
//! | [`dashboard`] | the broker's page: ten minutes of history, drawn as charts |
//! | `dashboard_now` | the page's tables: topics (policy, fill, drops, forecast) and groups now |
//! | [`child`] | services run as child processes: the address each announces, waits with a deadline |
//! | [`charts`] | line charts as inline SVG |
//! | [`fit`] | a run's steady rate: the least-squares slope of its second half |
//! | [`procfs`] | a process's resident memory, from `/proc` |
//! | [`window`] | what a pipeline did between two samples, and its bottleneck (for `flowgate top`) |
//! | [`units`] | durations, sizes and rates with units: parsing and display |

#![forbid(unsafe_code)]

pub mod chain;
pub mod charts;
pub mod child;
pub mod dashboard;
mod dashboard_now;
pub mod fit;
pub mod forecast;
pub mod http;
pub mod procfs;
pub mod snapshot;
pub mod table;
pub mod units;
pub mod window;

pub use http::{ObserveError, fetch, serve};
pub use snapshot::{
    BrokerSnapshot, ConsumerSnapshot, DeadLetterSnapshot, GroupSnapshot, ProducerSnapshot,
    Snapshot, StageSeconds, TopicSnapshot,
};
