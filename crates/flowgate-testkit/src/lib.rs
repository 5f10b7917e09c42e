//! Test support: throw-away servers the tests start for themselves, each in a temp dir on a
//! free loopback port, never a system-wide service; and headless Chromium to look at pages.

#![forbid(unsafe_code)]

pub mod chromium;
mod postgres;

pub use postgres::PgServer;
