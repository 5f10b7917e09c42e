//! The network backend: [`Producer`] and [`Consumer`] talking to a flowgate broker over TCP.

mod clock;
pub mod consumer;
mod dial;
mod driver;
pub mod error;
pub mod producer;
mod seam;
mod shared;

pub use clock::unix_now_us;

pub use consumer::{
    Consumer, ConsumerConfig, ConsumerMonitor, ConsumerStats, Delivery, DeliveryTag,
};
pub use dial::ClientTls;
pub use error::{ClientError, SendError};
pub use producer::{
    Permit, Producer, ProducerConfig, ProducerMonitor, ProducerStats, TrySendError,
};
