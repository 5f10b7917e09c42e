//! flowgate's client side: the handles an application holds, whose `send().await` is paced by
//! the credit its downstream grants.
//!
//! | module | responsibility |
//! |---|---|
//! | [`inproc`] | an in-process [`Producer`]/[`Consumer`] pair joined by a bounded queue |
//!
//! The network backend (flowgate's own broker) and the JetStream backend come later with the
//! same semantics: credit in events and bytes, granted downstream-to-upstream.

#![forbid(unsafe_code)]

pub mod inproc;

pub use inproc::{
    Consumer, Observer, PipeConfig, Producer, ProducerStats, RecvError, SendError, Sent, pipe,
};
