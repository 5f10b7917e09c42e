//! flowgate's disk log: where a broker in disk mode keeps every accepted event until a consumer
//! acknowledges it, so that a confirmed event survives the broker's crash.
//!
//! # Design
//!
//! One [`Log`] per topic, in its own directory, written by one thread. The log is a sequence
//! of *segments*, append-only files named by a counter (`00000000000000000001.seg`, …). Four
//! kinds of record go into the same stream:
//!
//! * `EVENT` — an accepted event: its id (producer, sequence) and its opaque encoded bytes;
//! * `ACKS` — ids a consumer acknowledged;
//! * `CHECKPOINT` — every producer's highest sequence number, written first in each segment,
//!   so the dedup high-water marks survive the removal of older segments;
//! * `ATTEMPTS` — events whose next delivery is a later attempt (a nack, a consumer leaving,
//!   an ack deadline), so a restart keeps counting toward the dead-letter limit. Like an
//!   `ACKS` record it lies after its events' `EVENT` records, so it outlives none of them.
//!
//! Appends are buffered and made durable together by [`Log::commit`]: one `write` and one
//! `fsync` for every batch that arrived meanwhile (group commit). The broker confirms a
//! producer's batch only after the commit that carried it returns.
//!
//! The log is also where a backlog beyond the broker's memory waits. An event appended as
//! *spilled* is kept only here; [`Log::read_spilled`] reads spilled events back, oldest first,
//! from a cursor that starts at the first one. Once one event is spilled, every later one is
//! too until all are read back, so the cursor only ever moves forward over spilled events (and,
//! after a restart, over acknowledged ones it skips). Recovery reads back at most
//! [`LogOptions::recover_at_most`] events and leaves the cursor at the first one it did not.
//! What the log keeps in memory is one entry per unacknowledged event (its id and segment,
//! for reclaiming segments) — tens of bytes, not the event.
//!
//! # Invariants
//!
//! 1. A record is durable only after `fsync` of its segment returned; a new segment's
//!    directory entry is durable (`fsync` of the directory) before any record in it is
//!    confirmed.
//! 2. An event's `ACKS` record always lies after its `EVENT` record in the stream (the broker
//!    can only deliver, and so only receive an ack for, what it enqueued first).
//! 3. A segment is removed only when it is not the active one, every event in it is
//!    acknowledged, and every older segment is already removed. Removal therefore never takes
//!    an event a later `ACKS` record or a recovery still needs.
//! 4. The spill cursor never passes an unread spilled event, and a segment holding one is
//!    never removed (its events are unacknowledged).
//! 5. Recovery never fails on content: a record that is short, too long or fails its checksum
//!    ends its segment there; the segment is truncated to its last good record and the count
//!    of corrupt records and cut bytes is reported. Only I/O errors (permission denied, a
//!    failing disk) stop it.
//! 6. After a failed write or sync nothing unsynced is trusted: the log commits nothing until
//!    [`Log::recover`] has cut the active segment back to what was last synced; what was
//!    pending is then written again from memory (a full disk is waited out this way).
//!
//! # On-disk format
//!
//! ```text
//! segment := magic "FGSEG\0\0\x01" (8 bytes) record*
//! record  := len u32 LE | crc32 u32 LE | kind u8 | body        (len and crc cover kind+body)
//! EVENT      (1) := producer u64 LE | seq u64 LE | data
//! ACKS       (2) := (producer u64 LE | seq u64 LE)*
//! CHECKPOINT (3) := (producer u64 LE | high_seq u64 LE)*
//! ```
//!
//! All file access goes through [`Fs`]: [`OsFs`] for real files, [`sim::SimFs`] for tests that
//! tear writes and crash at every persistence step.

mod fs;
mod log;
mod record;
pub mod sim;

pub use fs::{Fs, FsFile, OsFs};
pub use log::{Events, Log, LogOptions, Recovery};
pub use record::{EVENT_RECORD_OVERHEAD, MAX_RECORD, Record, RecordError};
