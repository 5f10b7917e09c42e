//! Test support: throw-away servers the tests start for themselves, each in a temp dir on a
//! free loopback port, never a system-wide service; headless Chromium to look at pages; and
//! the ledger checker that compares confirmed events with database rows after faults.

#![forbid(unsafe_code)]

pub mod chromium;
pub mod ledger;
mod postgres;

pub use postgres::PgServer;
