//! flowgate's client side: the handles an application holds, whose `send().await` is paced by
//! the credit its downstream grants.
//!
//! | module | responsibility |
//! |---|---|
//! | [`backend`] | the seam a backend implements ([`Publish`], [`Subscribe`]), and [`AnyProducer`] / [`AnyConsumer`], chosen by the address's scheme |
//! | [`net`] | [`Producer`] and [`Consumer`] for a flowgate broker over TCP, with reconnect and resend |
//! | [`inproc`] | an in-process producer/consumer pair joined by a bounded queue |
//!
//! Both follow the same rules: credit in events and bytes, granted downstream-to-upstream;
//! a producer sends only what it was granted; a consumer receives only what it asked for.

#![forbid(unsafe_code)]

pub mod backend;
pub mod inproc;
pub mod net;

pub use backend::{AnyConsumer, AnyProducer, BrokerAddr, Monitor, Publish, Subscribe};
pub use net::{
    ClientError, ClientTls, Consumer, ConsumerConfig, ConsumerMonitor, ConsumerStats, Delivery,
    DeliveryTag, Permit, Producer, ProducerConfig, ProducerMonitor, ProducerStats, SendError,
    TrySendError, unix_now_us,
};
