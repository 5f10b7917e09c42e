//! flowgate's broker: bounded topics served over TCP.
//!
//! A producer gets credit only from a topic's free space (capacity − ready − unacked −
//! credit already granted), split evenly among producers; a consumer receives only within the
//! demand it requested; a departing consumer's unacked events are redelivered; a retried
//! batch is deduplicated by (producer id, sequence). The rules live in
//! [`flowgate_core::Topic`]; this crate is the IO around it.
//!
//! | module | responsibility |
//! |---|---|
//! | [`server`] | [`Broker`]: bind, accept, stats |
//! | `drain` | [`Broker::drain`]: a graceful stop |
//! | `attach` | a welcomed peer onto its topic: exists or may be created, group, frame limit, a durable resume point |
//! | `connection` | one connection's reader: a `ServerSession` fed frames and deadlines, its inputs dispatched to the topic |
//! | `inputs` | a producer's batch into topic and store, confirmed once durable; ack rejections as notices |
//! | `writer` | one connection's writer: the outbox to the socket, heartbeats, the stalled-reader deadline |
//! | `transport` | plain TCP or TLS under a connection |
//! | `topics` | the topic registry and action routing |
//! | `outbox` | what waits to be written to one peer |
//! | `encode_out` | outbox → frames, split to the peer's frame limit |
//! | [`config`] | [`BrokerConfig`] and the TOML topic file |
//! | [`auth`] | tokens and their topic scopes |
//! | [`storage`] | the [`Storage`] trait and [`MemoryStorage`] |
//! | [`disk`] | [`DiskStorage`]: a log per topic, a group-commit writer thread per log |
//! | [`dead_letters`] | [`DeadLetter`]: events past a topic's max age, the latest kept per topic |
//! | [`dir_lock`] | [`DirLock`]: one broker per data directory |
//! | [`governor`] | the memory governor: a budget (flag or cgroup), the resident set sampled, one pool of bytes all topics lease from |
//! | [`names`] | topic and group name rules (re-exported from `flowgate-proto`, where the handshake checks them) |

#![forbid(unsafe_code)]

mod attach;
pub mod auth;
pub mod config;
mod connection;
pub mod dead_letters;
pub mod dir_lock;
pub mod disk;
mod drain;
mod encode_out;
pub mod governor;
mod inputs;
pub use flowgate_proto::names;
mod outbox;
pub mod server;
pub mod storage;
mod topics;
mod transport;
mod writer;

pub use auth::{TokenGrant, Tokens};
pub use config::{BrokerConfig, ConfigError};
pub use dead_letters::DeadLetter;
pub use dir_lock::DirLock;
pub use disk::{DiskOptions, DiskStorage};
pub use drain::DrainReport;
pub use governor::{BudgetSource, cgroup_limit};
pub use server::{Broker, BrokerStats, MemoryStats, RecoveryReport, Reporter};
pub use storage::{Durable, MemoryStorage, RecoveredTopic, RoomFreed, Storage};
