//! Test support: throw-away servers the tests start for themselves, each in a temp dir on a
//! free loopback port, never a system-wide service.

#![forbid(unsafe_code)]

mod postgres;

pub use postgres::PgServer;
