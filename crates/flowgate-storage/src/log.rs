//! The log itself: open with recovery, append, group commit, segment roll and reclaim. See
//! the crate documentation for the format and the invariants this file keeps.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flowgate_core::EventId;

use crate::fs::{Fs, FsFile};
use crate::record::{EVENT_RECORD_OVERHEAD, Record, RecordError};

/// The first bytes of every segment.
const MAGIC: &[u8; 8] = b"FGSEG\0\0\x01";

/// How a log is laid out.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// A segment that reaches this size is closed and a new one started.
    pub segment_bytes: u64,
    /// On recovery, return at most this many events and bytes of event data in
    /// [`Recovery::events`]; the rest stay on disk for [`Log::read_spilled`]. `None`: all.
    pub recover_at_most: Option<(u64, u64)>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 16 << 20,
            recover_at_most: None,
        }
    }
}

/// How much a spilled-event read fetches from a segment at once.
const READ_CHUNK: usize = 1 << 20;

/// A place in the log: segment number and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    segment: u64,
    offset: u64,
}

/// Events with their opaque bytes, in log order.
pub type Events = Vec<(EventId, Vec<u8>)>;

/// What opening a log found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segments read.
    pub segments: usize,
    /// Good records read.
    pub records: u64,
    /// Records that ended a segment early: torn, too long, or failing their checksum.
    pub corrupt_records: u64,
    /// Bytes cut from segment tails after a corrupt record.
    pub truncated_bytes: u64,
    /// Accepted, unacknowledged events, in the order they were accepted (the first ones only,
    /// with [`LogOptions::recover_at_most`]).
    pub events: Events,
    /// Unacknowledged events left on disk after those, for [`Log::read_spilled`].
    pub spilled_events: u64,
    /// Their bytes of event data.
    pub spilled_bytes: u64,
    /// Every producer's highest accepted sequence number, as `EventId { producer, seq }`.
    pub high_water: Vec<EventId>,
    /// Unacknowledged events whose next delivery is a later attempt than the first, as
    /// [`Log::append_attempts`] recorded (for those left on disk, ask [`Log::attempt_of`]).
    pub attempts: HashMap<EventId, u32>,
}

#[derive(Debug)]
struct Segment {
    number: u64,
    bytes: u64,
    /// Events in it not yet acknowledged.
    live: u64,
}

/// One topic's log. Single-threaded: the broker gives each log its own writer thread.
pub struct Log {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    options: LogOptions,
    /// Oldest first; the last one is active.
    segments: VecDeque<Segment>,
    active: Box<dyn FsFile>,
    /// Unacknowledged events and the segment holding each.
    live: HashMap<EventId, u64>,
    /// Per producer id, the highest sequence number *written to this log*: what checkpoints
    /// carry into each new segment, so a restart knows it after the segments holding the
    /// events are gone. Not the topic's dedup high-water mark (`Topic`'s, of events
    /// *accepted*), which runs ahead while appends wait in the writer's queue: a checkpoint
    /// claiming an accepted event that was never written would, after a crash, tell its
    /// producer to skip it, and it would be lost. Two facts, each with one owner.
    high: HashMap<u64, u64>,
    /// Unacknowledged events whose next delivery is not the first, and its attempt.
    attempts: HashMap<EventId, u32>,
    /// Records appended since the last commit.
    pending: Vec<u8>,
    /// Set by a failed write or sync: what was written since is unknown, so nothing more is
    /// confirmed until the broker restarts and recovers.
    failed: Option<String>,
    /// The oldest event appended as spilled and not yet read back; every event after it is
    /// spilled too (or acknowledged, after a recovery).
    spill_cursor: Option<Position>,
    /// Spilled events written and not yet read back: where [`Log::read_spilled`] stops. The
    /// topic's own count of events on disk also covers spilled appends still in the writer's
    /// queue; it is the one that bounds the topic, this one only the reads.
    spilled_pending: u64,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("segments", &self.segments)
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

fn segment_name(number: u64) -> String {
    format!("{number:020}.seg")
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering what it holds. Content damage
    /// is repaired and reported in the [`Recovery`], never returned as an error.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path, options: LogOptions) -> io::Result<(Log, Recovery)> {
        fs.create_dir_all(dir)?;
        let mut numbers: Vec<u64> = fs
            .list(dir)?
            .iter()
            .filter_map(|n| n.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut recovery = Recovery::default();
        let mut high: HashMap<u64, u64> = HashMap::new();
        let mut live: HashMap<EventId, u64> = HashMap::new();
        // Event positions, not their data: the data of only the first ones is read back.
        let mut order: Vec<(EventId, Position, usize)> = Vec::new();
        let mut segments = VecDeque::new();
        for number in numbers {
            let path = dir.join(segment_name(number));
            let bytes = fs.read(&path)?;
            if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
                // A segment whose header never became durable holds no durable record.
                recovery.corrupt_records += u64::from(!bytes.is_empty());
                recovery.truncated_bytes += bytes.len() as u64;
                fs.remove(&path)?;
                continue;
            }
            recovery.segments += 1;
            let mut at = MAGIC.len();
            while at < bytes.len() {
                let (record, used) = match Record::decode(&bytes[at..]) {
                    Ok(r) => r,
                    Err(_) => {
                        recovery.corrupt_records += 1;
                        recovery.truncated_bytes += (bytes.len() - at) as u64;
                        fs.truncate(&path, at as u64)?;
                        break;
                    }
                };
                at += used;
                recovery.records += 1;
                match record {
                    Record::Event(id, data) => {
                        let h = high.entry(id.producer).or_default();
                        if id.seq > *h {
                            *h = id.seq;
                            live.insert(id, number);
                            let at = Position {
                                segment: number,
                                offset: (at - used) as u64,
                            };
                            order.push((id, at, data.len()));
                        }
                    }
                    Record::Acks(ids) => {
                        for id in ids {
                            live.remove(&id);
                        }
                    }
                    Record::Attempts(entries) => {
                        for (id, attempt) in entries {
                            let a = recovery.attempts.entry(id).or_insert(attempt);
                            *a = (*a).max(attempt);
                        }
                    }
                    Record::Checkpoint(marks) => {
                        for m in marks {
                            let h = high.entry(m.producer).or_default();
                            *h = (*h).max(m.seq);
                        }
                    }
                }
            }
            segments.push_back(Segment {
                number,
                bytes: at as u64,
                live: 0,
            });
        }
        for seg in live.values() {
            if let Some(s) = segments.iter_mut().find(|s| s.number == *seg) {
                s.live += 1;
            }
        }
        recovery.attempts.retain(|id, _| live.contains_key(id));
        let (max_events, max_bytes) = options.recover_at_most.unwrap_or((u64::MAX, u64::MAX));
        let mut spill_cursor = None;
        for (id, at, len) in order.into_iter().filter(|(id, _, _)| live.contains_key(id)) {
            let taken = recovery.events.len() as u64;
            let full = taken >= max_events
                || recovery
                    .events
                    .iter()
                    .map(|(_, d)| d.len() as u64)
                    .sum::<u64>()
                    + len as u64
                    > max_bytes;
            if spill_cursor.is_some() || (taken > 0 && full) {
                spill_cursor.get_or_insert(at);
                recovery.spilled_events += 1;
                recovery.spilled_bytes += len as u64;
                continue;
            }
            let path = dir.join(segment_name(at.segment));
            let bytes = fs.read_at(&path, at.offset, EVENT_RECORD_OVERHEAD + len)?;
            match Record::decode(&bytes) {
                Ok((Record::Event(_, data), _)) => recovery.events.push((id, data)),
                _ => {
                    return Err(io::Error::other(format!(
                        "{} changed while recovering",
                        path.display()
                    )));
                }
            }
        }
        recovery.high_water = high.iter().map(|(p, s)| EventId::new(*p, *s)).collect();
        recovery.high_water.sort_unstable_by_key(|id| id.producer);

        // Appending starts in a fresh segment, after whatever recovery cut. On a full disk
        // there may be no room for one: then the log opens failed, appending to its last
        // segment once it recovers, and what it recovered is served meanwhile.
        let next = segments.back().map_or(1, |s| s.number + 1);
        let (active, failed) = match start_segment(fs.as_ref(), dir, next, &high) {
            Ok((file, bytes)) => {
                segments.push_back(Segment {
                    number: next,
                    bytes,
                    live: 0,
                });
                (file, None)
            }
            Err(e) => match segments.back() {
                Some(last) => {
                    let file = fs.open_append(&dir.join(segment_name(last.number)))?;
                    (file, Some(format!("cannot start a new segment: {e}")))
                }
                None => return Err(e),
            },
        };
        let mut log = Log {
            fs,
            dir: dir.to_path_buf(),
            options,
            segments,
            active,
            live,
            high,
            attempts: recovery.attempts.clone(),
            pending: Vec::new(),
            failed,
            spill_cursor,
            spilled_pending: recovery.spilled_events,
        };
        if log.failed.is_none() {
            log.reclaim()?;
        }
        Ok((log, recovery))
    }

    /// Buffers an accepted event; durable after the next [`commit`](Self::commit). A
    /// `spilled` event is one the broker keeps only here, to be read back with
    /// [`read_spilled`](Self::read_spilled); once one is, every later event must be too until
    /// all are read back.
    pub fn append_event(&mut self, id: EventId, data: &[u8], spilled: bool) {
        if spilled {
            let active = self.segments.back().map_or(0, |s| s.number);
            let offset = self.segments.back().map_or(0, |s| s.bytes) + self.pending.len() as u64;
            self.spill_cursor.get_or_insert(Position {
                segment: active,
                offset,
            });
            self.spilled_pending += 1;
        }
        let h = self.high.entry(id.producer).or_default();
        *h = (*h).max(id.seq);
        let active = self.segments.back().map_or(0, |s| s.number);
        if self.live.insert(id, active).is_none()
            && let Some(s) = self.segments.back_mut()
        {
            s.live += 1;
        }
        Record::Event(id, data.to_vec()).encode(&mut self.pending);
    }

    /// Buffers a producer's high-water mark beyond its last event written here: the topic let
    /// the events after it go (a policy dropped or refused them) and confirmed them, so after a
    /// restart the producer must resume past them. Durable after the next commit; nothing is
    /// written when the mark is not higher than what the log has.
    pub fn append_mark(&mut self, id: EventId) {
        let h = self.high.entry(id.producer).or_default();
        if id.seq <= *h {
            return;
        }
        *h = id.seq;
        Record::Checkpoint(vec![id]).encode(&mut self.pending);
    }

    /// Stops carrying these producer ids' marks into new segments' checkpoints: their topic
    /// has forgotten them (idle past its TTL, or past its cap). Events of theirs still in the
    /// log bring their marks back at a restart.
    pub fn forget_producers(&mut self, producers: &[u64]) {
        for p in producers {
            self.high.remove(p);
        }
    }

    /// Buffers the attempts the next deliveries of these events will be (raised by a nack,
    /// a consumer leaving or an ack deadline), so a restarted broker keeps counting toward
    /// the dead-letter limit instead of starting again at 1. Ids not held are ignored.
    pub fn append_attempts(&mut self, entries: &[(EventId, u32)]) {
        let held: Vec<(EventId, u32)> = entries
            .iter()
            .filter(|(id, _)| self.live.contains_key(id))
            .copied()
            .collect();
        for (id, attempt) in &held {
            let a = self.attempts.entry(*id).or_insert(*attempt);
            *a = (*a).max(*attempt);
        }
        if !held.is_empty() {
            Record::Attempts(held).encode(&mut self.pending);
        }
    }

    /// The attempt the next delivery of an unacknowledged event is: 1 unless
    /// [`Log::append_attempts`] recorded a later one.
    pub fn attempt_of(&self, id: EventId) -> u32 {
        self.attempts.get(&id).copied().unwrap_or(1)
    }

    /// Buffers acknowledgements. Ids not held (already acked, or never here) are ignored.
    pub fn append_acks(&mut self, ids: &[EventId]) {
        let mut held = Vec::with_capacity(ids.len());
        for id in ids {
            self.attempts.remove(id);
            if let Some(number) = self.live.remove(id) {
                if let Some(s) = self.segments.iter_mut().rev().find(|s| s.number == number) {
                    s.live -= 1;
                }
                held.push(*id);
            }
        }
        if !held.is_empty() {
            Record::Acks(held).encode(&mut self.pending);
        }
    }

    /// Why the log cannot write, if a write, sync, roll or reclaim failed and
    /// [`Log::recover`] has not yet succeeded.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Makes a failed log usable again, for a failure that may pass (a full disk): removes
    /// the closed segments that are fully acknowledged, cuts the active segment back to what
    /// was last synced (a torn tail of the failed write goes), and reopens it. What was appended and not yet committed is kept, and the next
    /// [`Log::commit`] writes it. Nothing written before is trusted to the page cache: the
    /// bytes kept were synced, the rest are written again from memory. Fails, still failed,
    /// when the disk refuses even that.
    pub fn recover(&mut self) -> io::Result<()> {
        let Some(why) = self.failed.take() else {
            return Ok(());
        };
        // Closed segments whose events are all acknowledged can go first: the acks are only
        // in memory yet, but an acknowledged event is done, and a log that filled its own
        // disk gets its room back this way.
        let _ = self.reclaim();
        let reopened = match self.segments.back() {
            Some(seg) => {
                let path = self.dir.join(segment_name(seg.number));
                self.fs
                    .truncate(&path, seg.bytes)
                    .and_then(|()| self.fs.open_append(&path))
            }
            None => Err(io::Error::other("the log has no segment")),
        };
        match reopened {
            Ok(file) => {
                self.active = file;
                Ok(())
            }
            Err(e) => {
                self.failed = Some(why);
                Err(e)
            }
        }
    }

    /// Whether anything waits for a commit.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes and syncs everything appended since the last commit (one write, one fsync),
    /// then rolls the segment if it is full and removes segments nobody needs.
    pub fn commit(&mut self) -> io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(io::Error::other(format!("log failed earlier: {why}")));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self
            .active
            .write_all(&self.pending)
            .and_then(|()| self.active.sync());
        if let Err(e) = written {
            self.failed = Some(e.to_string());
            return Err(e);
        }
        if let Some(s) = self.segments.back_mut() {
            s.bytes += self.pending.len() as u64;
        }
        self.pending.clear();
        // What was just synced is durable whatever happens next, so the commit succeeds; a
        // failure to roll or reclaim poisons the log for the commits after this one.
        let full = self
            .segments
            .back()
            .is_some_and(|s| s.bytes >= self.options.segment_bytes);
        let tidied = if full { self.roll() } else { Ok(()) }.and_then(|()| self.reclaim());
        if let Err(e) = tidied {
            self.failed = Some(e.to_string());
        }
        Ok(())
    }

    /// Reads back the oldest spilled events, in the order they were appended: at most
    /// `max_events` and `max_bytes` of event data, but always one if any is left. Commits first
    /// if anything is pending. Returns the events and whether none is left.
    pub fn read_spilled(&mut self, max_events: u64, max_bytes: u64) -> io::Result<(Events, bool)> {
        if self.has_pending() {
            self.commit()?;
        }
        let mut out: Events = Vec::new();
        let mut bytes = 0u64;
        while self.spilled_pending > 0 {
            let Some(at) = self.spill_cursor else { break };
            // The cursor's segment, or the next one left if acks removed it.
            let Some(seg) = self.segments.iter().find(|s| s.number >= at.segment) else {
                break;
            };
            let (number, size) = (seg.number, seg.bytes);
            let offset = if number == at.segment {
                at.offset
            } else {
                MAGIC.len() as u64
            };
            if offset >= size {
                let Some(next) = self.segments.iter().find(|s| s.number > number) else {
                    break; // at the end of what is written
                };
                self.spill_cursor = Some(Position {
                    segment: next.number,
                    offset: MAGIC.len() as u64,
                });
                continue;
            }
            let path = self.dir.join(segment_name(number));
            let want = READ_CHUNK.min((size - offset) as usize);
            let mut chunk = self.fs.read_at(&path, offset, want)?;
            if let Err(RecordError::Short) = Record::decode(&chunk) {
                // One record longer than a chunk: read it whole.
                let len = chunk
                    .get(..4)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                chunk = self.fs.read_at(&path, offset, 8 + len as usize)?;
            }
            let mut used_total = 0usize;
            while used_total < chunk.len() {
                let (record, used) = match Record::decode(&chunk[used_total..]) {
                    Ok(r) => r,
                    Err(RecordError::Short) if used_total > 0 => break,
                    Err(e) => {
                        return Err(io::Error::other(format!(
                            "{} at {}: {e} in a committed record",
                            path.display(),
                            offset + used_total as u64
                        )));
                    }
                };
                if let Record::Event(id, data) = record
                    && self.live.contains_key(&id)
                {
                    let full =
                        out.len() as u64 >= max_events || bytes + data.len() as u64 > max_bytes;
                    if !out.is_empty() && full {
                        break;
                    }
                    bytes += data.len() as u64;
                    out.push((id, data));
                    self.spilled_pending -= 1;
                }
                used_total += used;
                if self.spilled_pending == 0 {
                    break;
                }
            }
            self.spill_cursor = Some(Position {
                segment: number,
                offset: offset + used_total as u64,
            });
            let full = out.len() as u64 >= max_events || bytes >= max_bytes;
            if full && !out.is_empty() {
                break;
            }
        }
        if self.spilled_pending == 0 {
            self.spill_cursor = None;
        }
        Ok((out, self.spilled_pending == 0))
    }

    /// Bytes the log's segments take on disk (not counting what awaits a commit).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Segments on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Events held: appended and not acknowledged.
    pub fn live_events(&self) -> usize {
        self.live.len()
    }

    fn roll(&mut self) -> io::Result<()> {
        let next = self.segments.back().map_or(1, |s| s.number + 1);
        let (file, bytes) = start_segment(self.fs.as_ref(), &self.dir, next, &self.high)?;
        self.active = file;
        self.segments.push_back(Segment {
            number: next,
            bytes,
            live: 0,
        });
        Ok(())
    }

    /// Removes the oldest segments while they are closed and fully acknowledged.
    fn reclaim(&mut self) -> io::Result<()> {
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.live == 0) {
            if let Some(s) = self.segments.pop_front() {
                self.fs.remove(&self.dir.join(segment_name(s.number)))?;
            }
        }
        Ok(())
    }
}

/// Creates segment `number` with its header and a checkpoint of `high`, durably (file and
/// directory entry), and returns it open for appending with its size.
fn start_segment(
    fs: &dyn Fs,
    dir: &Path,
    number: u64,
    high: &HashMap<u64, u64>,
) -> io::Result<(Box<dyn FsFile>, u64)> {
    let mut head = MAGIC.to_vec();
    let mut marks: Vec<EventId> = high.iter().map(|(p, s)| EventId::new(*p, *s)).collect();
    marks.sort_unstable_by_key(|id| id.producer);
    Record::Checkpoint(marks).encode(&mut head);
    let path = dir.join(segment_name(number));
    let started = fs.open_append(&path).and_then(|mut file| {
        file.write_all(&head)?;
        file.sync()?;
        fs.sync_dir(dir)?;
        Ok(file)
    });
    match started {
        Ok(file) => Ok((file, head.len() as u64)),
        Err(e) => {
            // A half-made segment would be appended to by the next attempt: remove it.
            let _ = fs.remove(&path);
            Err(e)
        }
    }
}
