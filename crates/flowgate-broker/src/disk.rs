//! Disk storage: one [`flowgate_storage::Log`] per topic in `DATA_DIR/<topic>/`, each written
//! by its own thread. The thread takes every append and ack queued since its last round,
//! writes them in one go and syncs once (group commit), then answers every append of the
//! round. A producer's batch is confirmed only after that answer, so a confirmed event is on
//! disk. Acks ride along with the next round; one lost in a crash means a redelivery, never a
//! loss. After each commit the same thread answers the topic's loads: spilled events read
//! back from the log for a topic with room in memory again.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use flowgate_core::{Backoff, Credit, EventId, Outage, RECORD_OVERHEAD_BYTES, Told};
use flowgate_proto::WireEvent;
use flowgate_proto::wire::Reader;
use flowgate_storage::{EVENT_RECORD_OVERHEAD, Fs, Log, LogOptions, OsFs};
use tokio::sync::oneshot;

use crate::dir_lock::DirLock;
use crate::names;
use crate::storage::{Durable, LoadDone, RecoveredTopic, RoomFreed, Storage};

/// The most jobs folded into one commit, so a steady stream of appends still gets synced.
const MAX_JOBS_PER_ROUND: usize = 4096;

/// Where and how much.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// One directory per topic is made under this.
    pub data_dir: PathBuf,
    /// Producers are granted no more credit than fits below this size of a topic's log.
    pub max_disk_bytes: u64,
    /// Size at which a segment is closed and a new one started.
    pub segment_bytes: u64,
}

enum Job {
    /// Events to append, how many of the last ones are spilled, the producer's mark beyond
    /// them (a dropped tail), and who waits for the sync.
    Append(
        Vec<(EventId, Vec<u8>)>,
        usize,
        Option<EventId>,
        oneshot::Sender<io::Result<()>>,
    ),
    Acks(Vec<EventId>),
    /// Producer ids the topic forgot: no more checkpoints carry them.
    Forget(Vec<u64>),
    /// Events whose next delivery is a later attempt.
    Attempts(Vec<(EventId, u32)>),
    /// Read spilled events back (after this round's commit).
    Load(Credit, LoadDone),
    /// The broker stopped: touch the files no more (a restarted broker may own them now).
    Stop,
}

/// What a topic's credit counts for an event beyond its encoding: the credit overhead
/// (`flowgate_core::credit_bytes`) less the encoding's fixed fields.
const CREDIT_OVER_ENCODED: u64 = RECORD_OVERHEAD_BYTES - WireEvent::MIN_ENCODED as u64;

struct TopicLog {
    jobs: Sender<Job>,
    /// The log's size on disk after its last commit...
    disk_bytes: Arc<AtomicU64>,
    /// ...and the bytes of appends queued since, so room is never promised twice.
    queued_bytes: Arc<AtomicU64>,
    /// Why the log cannot write now, while its writer tries again.
    failure: Arc<Mutex<Option<String>>>,
    /// The writer thread, joined by [`Storage::close`].
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What an event record takes on disk besides the event.
const RECORD_OVERHEAD: u64 = EVENT_RECORD_OVERHEAD as u64;

/// Topics kept in append-only logs on disk.
pub struct DiskStorage {
    fs: Arc<dyn Fs>,
    options: DiskOptions,
    logs: Mutex<HashMap<String, Arc<TopicLog>>>,
    /// Who to tell when a log's removed segments free room (set once by the broker).
    room_freed: Arc<OnceLock<RoomFreed>>,
    /// Topics whose log has a limit of its own instead of `max_disk_bytes`.
    topic_limits: std::collections::BTreeMap<String, u64>,
    /// Held for the storage's life on the real filesystem: one broker per data directory.
    _lock: Option<DirLock>,
}

impl DiskStorage {
    /// Disk storage on the real filesystem, holding the data directory's lock
    /// ([`DirLock`]): fails, naming the directory and the holder, while another broker
    /// uses it. What `flowgate broker --storage disk` uses.
    ///
    /// The segment size is capped at a quarter of `max_disk_bytes` and of the free space on
    /// the data directory's filesystem, so a segment can always fill and close (and then be
    /// reclaimed) before the disk or the limit runs out; a capped size is logged.
    pub fn locked(mut options: DiskOptions) -> io::Result<Self> {
        let lock = DirLock::acquire(&options.data_dir)?;
        let free = rustix::fs::statvfs(&options.data_dir)
            .map(|v| v.f_bavail.saturating_mul(v.f_frsize))
            .ok();
        let capped = cap_segment(options.segment_bytes, options.max_disk_bytes, free);
        if capped < options.segment_bytes {
            tracing::warn!(
                "segments of {} bytes capped to {capped}: a quarter of --max-disk-bytes ({}) or of the free space ({}), so one can fill and close",
                options.segment_bytes,
                options.max_disk_bytes,
                free.map_or("unknown".to_string(), |f| f.to_string())
            );
            options.segment_bytes = capped;
        }
        Ok(DiskStorage {
            _lock: Some(lock),
            ..Self::with_fs(Arc::new(OsFs), options)
        })
    }

    /// Disk storage on the real filesystem without the directory lock: for tests that stop
    /// and start brokers within one process, where the lock of a broker just shut down may
    /// outlive it.
    pub fn new(options: DiskOptions) -> Self {
        Self::with_fs(Arc::new(OsFs), options)
    }

    /// Disk storage on any [`Fs`] (tests pass one that fails on purpose).
    pub fn with_fs(fs: Arc<dyn Fs>, options: DiskOptions) -> Self {
        DiskStorage {
            fs,
            options,
            logs: Mutex::new(HashMap::new()),
            room_freed: Arc::new(OnceLock::new()),
            topic_limits: std::collections::BTreeMap::new(),
            _lock: None,
        }
    }

    /// Gives these topics' logs a limit of their own (a topic declaration's `max_disk_bytes`)
    /// instead of `max_disk_bytes`; call before the first topic opens.
    pub fn limit_topics(mut self, limits: std::collections::BTreeMap<String, u64>) -> Self {
        self.topic_limits = limits;
        self
    }

    /// The most bytes the log of `topic` may take.
    fn limit(&self, topic: &str) -> u64 {
        self.topic_limits
            .get(topic)
            .copied()
            .unwrap_or(self.options.max_disk_bytes)
    }

    /// Opens (recovering) the log of `topic` and starts its writer; reads at most `memory` of
    /// its events back.
    fn open(
        &self,
        topic: &str,
        memory: Option<Credit>,
    ) -> io::Result<(Arc<TopicLog>, RecoveredTopic)> {
        let dir = self.options.data_dir.join(topic);
        let options = LogOptions {
            // A quarter of the topic's own limit at most, so a segment can fill, close and be
            // reclaimed before the limit is reached.
            segment_bytes: cap_segment(self.options.segment_bytes, self.limit(topic), None),
            recover_at_most: memory.map(|m| (m.events, m.bytes)),
        };
        let (log, recovery) = Log::open(Arc::clone(&self.fs), &dir, options)?;
        let disk_bytes = Arc::new(AtomicU64::new(log.disk_bytes()));
        let queued_bytes = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let sizes = (Arc::clone(&disk_bytes), Arc::clone(&queued_bytes));
        let failure = Arc::new(Mutex::new(None));
        let freed = Watch {
            topic: topic.to_string(),
            room_freed: Arc::clone(&self.room_freed),
            failure: Arc::clone(&failure),
        };
        let writer = std::thread::Builder::new()
            .name(format!("log-{topic}"))
            .spawn(move || write_loop(log, rx, sizes, freed))?;
        let mut found = RecoveredTopic {
            name: topic.to_string(),
            high_water: recovery
                .high_water
                .iter()
                .map(|m| (m.producer, m.seq))
                .collect(),
            corrupt_records: recovery.corrupt_records,
            truncated_bytes: recovery.truncated_bytes,
            events: Vec::with_capacity(recovery.events.len()),
            spilled: Credit::new(
                recovery.spilled_events,
                recovery.spilled_bytes + CREDIT_OVER_ENCODED * recovery.spilled_events,
            ),
        };
        for (id, data) in recovery.events {
            match decode(data) {
                Some(e) => {
                    let attempt = recovery.attempts.get(&id).copied().unwrap_or(1);
                    found.events.push((e, attempt));
                }
                None => found.corrupt_records += 1,
            }
        }
        let log = Arc::new(TopicLog {
            jobs: tx,
            disk_bytes,
            queued_bytes,
            failure,
            writer: Mutex::new(Some(writer)),
        });
        Ok((log, found))
    }

    fn log(&self, topic: &str) -> io::Result<Arc<TopicLog>> {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = logs.get(topic) {
            return Ok(Arc::clone(log));
        }
        let (log, _) = self.open(topic, None)?;
        logs.insert(topic.to_string(), Arc::clone(&log));
        Ok(log)
    }
}

impl Storage for DiskStorage {
    fn capacity(&self, topic: &str) -> Option<Credit> {
        // Every event costs at least 64 credit bytes, so the bytes bind first.
        let bytes = self.limit(topic);
        Some(Credit::new((bytes / 64).max(1), bytes))
    }

    fn load(&self, topic: &str, room: Credit, done: LoadDone) {
        // The caller holds the topic's lock, so `done` must not run here: a log that cannot
        // be opened leaves the load unanswered (its producers are already being refused).
        if let Ok(log) = self.log(topic) {
            log.send(Job::Load(room, done));
        }
    }

    fn recover(&self, memory_of: &dyn Fn(&str) -> Credit) -> io::Result<Vec<RecoveredTopic>> {
        self.fs.create_dir_all(&self.options.data_dir)?;
        let mut names: Vec<String> = self
            .fs
            .list(&self.options.data_dir)?
            .into_iter()
            .filter(|n| names::validate("topic", n).is_ok())
            .collect();
        names.sort();
        let mut found = Vec::new();
        for name in names {
            let (log, recovered) = self.open(&name, Some(memory_of(&name)))?;
            self.logs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, log);
            found.push(recovered);
        }
        Ok(found)
    }

    fn append(
        &self,
        topic: &str,
        events: &[WireEvent],
        spilled: usize,
        mark: Option<EventId>,
    ) -> Durable {
        let (tx, rx) = oneshot::channel();
        let records: Vec<(EventId, Vec<u8>)> = events
            .iter()
            .map(|e| {
                let mut buf = BytesMut::with_capacity(e.encoded_len());
                e.encode(&mut buf);
                (e.id, buf.to_vec())
            })
            .collect();
        match self.log(topic) {
            Ok(log) => {
                let bytes: u64 = records
                    .iter()
                    .map(|(_, data)| data.len() as u64 + RECORD_OVERHEAD)
                    .sum();
                log.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
                log.send(Job::Append(records, spilled, mark, tx));
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
        Durable::later(rx)
    }

    fn ack(&self, topic: &str, acked: &[EventId]) {
        if let Ok(log) = self.log(topic) {
            log.send(Job::Acks(acked.to_vec()));
        }
    }

    fn record_attempts(&self, topic: &str, attempts: Vec<(EventId, u32)>) {
        if let Ok(log) = self.log(topic) {
            log.send(Job::Attempts(attempts));
        }
    }

    fn forget_producers(&self, topic: &str, producers: Vec<u64>) {
        if let Ok(log) = self.log(topic) {
            log.send(Job::Forget(producers));
        }
    }

    fn queued_bytes(&self, topic: &str) -> u64 {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.get(topic)
            .map_or(0, |log| log.queued_bytes.load(Ordering::Relaxed))
    }

    fn room(&self, topic: &str) -> Option<u64> {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let used = logs.get(topic).map_or(0, |log| {
            log.disk_bytes.load(Ordering::Relaxed) + log.queued_bytes.load(Ordering::Relaxed)
        });
        Some(self.limit(topic).saturating_sub(used))
    }

    fn close(&self) {
        let writers: Vec<JoinHandle<()>> = {
            let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            logs.values()
                .filter_map(|log| {
                    log.send(Job::Stop);
                    log.writer.lock().unwrap_or_else(|p| p.into_inner()).take()
                })
                .collect()
        };
        // Joined without the map's lock: a writer finishing its round tells its topic, which
        // asks this store for its room. A writer between attempts of a failed log wakes for
        // the stop at once; either way it is done with the files when this returns.
        for writer in writers {
            if writer.join().is_err() {
                tracing::error!("a log writer panicked before it stopped");
            }
        }
    }

    fn failure(&self, topic: &str) -> Option<String> {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.get(topic).and_then(|log| {
            log.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }

    fn on_room_freed(&self, notify: RoomFreed) {
        let _ = self.room_freed.set(notify);
    }

    fn promise(&self) -> &'static str {
        "disk: confirmed = written and fsynced to the broker's log; survives a broker crash"
    }
}

impl TopicLog {
    fn send(&self, job: Job) {
        // A writer that stopped drops the job's answer channel: the append then reports
        // "the storage writer stopped".
        let _ = self.jobs.send(job);
    }
}

/// The log's committed size and the bytes queued for it, shared with [`DiskStorage::room`].
type Sizes = (Arc<AtomicU64>, Arc<AtomicU64>);

/// The smallest segment worth having: room for a header, a checkpoint and some events.
const MIN_SEGMENT: u64 = 4096;

/// The segment size to use: at most a quarter of the log's limit and of the free space, and
/// no less than [`MIN_SEGMENT`].
fn cap_segment(requested: u64, max_disk_bytes: u64, free: Option<u64>) -> u64 {
    let by_limit = max_disk_bytes / 4;
    let by_free = free.map_or(u64::MAX, |f| f / 4);
    requested.min(by_limit).min(by_free).max(MIN_SEGMENT)
}

/// What the writer thread tells the rest of the broker: its topic's name, who to tell when the
/// log frees room, and why it cannot write.
struct Watch {
    topic: String,
    room_freed: Arc<OnceLock<RoomFreed>>,
    failure: Arc<Mutex<Option<String>>>,
}

/// The waits between attempts of a failed log: 100 ms, doubling up to [`RETRY_MAX`].
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), RETRY_MAX);

/// The longest wait between attempts of a failed log.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The writer thread: rounds of (take queued jobs, commit once, answer) until the storage
/// is dropped. A round that removed segments or wrote queued appends says so, so the topic
/// grants the room at once.
/// A log that cannot write (a full disk) is said so once, and tried again with backoff
/// whether or not jobs come: each attempt cuts the failed write's torn tail
/// ([`Log::recover`]) and writes what is kept in memory; the first that works is said too.
fn write_loop(mut log: Log, jobs: Receiver<Job>, (disk_bytes, queued_bytes): Sizes, watch: Watch) {
    // A log opened on a full disk starts failed.
    let mut outage = watch.note(&Ok(()), log.failure(), Outage::None);
    loop {
        let first = match outage.wait() {
            None => match jobs.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            },
            Some(wait) => match jobs.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
        };
        if let Outage::Failing { .. } = outage {
            // Still failing if the disk refuses even this; the commit below then says so.
            let _ = log.recover();
        }
        if first.is_none() && !log.has_pending() {
            // Nothing to write, so nothing to learn; a log that wrote again and has failed
            // for nothing since has settled.
            outage = watch.settle(outage);
            continue;
        }
        let mut waiters = Vec::new();
        let mut loads = Vec::new();
        let mut appended = 0;
        let mut next = first;
        let mut taken = 0;
        while let Some(job) = next {
            match job {
                Job::Append(records, spilled, mark, tx) => {
                    let first_spilled = records.len().saturating_sub(spilled);
                    for (i, (id, data)) in records.iter().enumerate() {
                        log.append_event(*id, data, i >= first_spilled);
                        appended += data.len() as u64 + RECORD_OVERHEAD;
                    }
                    if let Some(mark) = mark {
                        log.append_mark(mark);
                    }
                    waiters.push(tx);
                }
                Job::Acks(ids) => log.append_acks(&ids),
                Job::Forget(ids) => log.forget_producers(&ids),
                Job::Attempts(entries) => log.append_attempts(&entries),
                Job::Load(room, done) => loads.push((room, done)),
                Job::Stop => return,
            }
            taken += 1;
            next = if taken < MAX_JOBS_PER_ROUND {
                jobs.try_recv().ok()
            } else {
                None
            };
        }
        let before = disk_bytes.load(Ordering::Relaxed);
        let result = log.commit();
        disk_bytes.store(log.disk_bytes(), Ordering::Relaxed);
        queued_bytes.fetch_sub(appended, Ordering::Relaxed);
        // Room grows on the log's own in two ways: acknowledged segments were removed, or
        // queued appends were written, which no longer count against a spilling topic's
        // memory. Either way the topic may grant again, and a producer that is waiting for
        // that room has nothing else to send that would make it look.
        let freed = log.disk_bytes() < before + appended || appended > 0;
        outage = watch.note(&result, log.failure(), outage);
        for tx in waiters {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            let _ = tx.send(answer);
        }
        for (room, done) in loads {
            // A failed read hands back nothing: the topic asks again later.
            let (records, _) = log
                .read_spilled(room.events.max(1), room.bytes)
                .unwrap_or_default();
            let events = records
                .into_iter()
                .filter_map(|(id, d)| Some((decode(d)?, log.attempt_of(id))))
                .collect();
            done(events);
        }
        if freed && let Some(notify) = watch.room_freed.get() {
            notify(&watch.topic);
        }
    }
}

impl Watch {
    /// Records how a round went, says so when the log starts failing or has written again
    /// for `SETTLE`, and returns the log's outage.
    fn note(&self, result: &io::Result<()>, failure: Option<&str>, outage: Outage) -> Outage {
        let why = match (result, failure) {
            (Err(e), _) => Some(e.to_string()),
            (Ok(()), Some(f)) => Some(f.to_string()),
            (Ok(()), None) => None,
        };
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = why.clone();
        let (outage, told) = outage.attempt(why.is_some(), Instant::now(), RETRY);
        if let Some(why) = why.filter(|_| told == Some(Told::Began)) {
            tracing::error!(
                topic = %self.topic,
                "the topic's log cannot write: {why}; nothing more is confirmed, trying again every {:?} to {RETRY_MAX:?}",
                RETRY.peek()
            );
        }
        self.tell_ended(told);
        outage
    }

    /// Nothing happened: an outage that has written again for `SETTLE` ends.
    fn settle(&self, outage: Outage) -> Outage {
        let (outage, told) = outage.settle(Instant::now());
        self.tell_ended(told);
        outage
    }

    fn tell_ended(&self, told: Option<Told>) {
        if let Some(Told::Ended(after)) = told {
            tracing::info!(
                topic = %self.topic,
                "the topic's log writes again, after {:.1} s",
                after.as_secs_f64()
            );
        }
    }
}

/// An event as the log keeps it. Its checksum held, so this fails only if another program
/// wrote the record.
fn decode(data: Vec<u8>) -> Option<WireEvent> {
    WireEvent::decode(&mut Reader::new("log record", Bytes::from(data))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_capped_by_a_quarter_of_the_limit_and_of_the_free_space() {
        let mib = 1 << 20;
        assert_eq!(
            cap_segment(16 * mib, 1024 * mib, Some(10_000 * mib)),
            16 * mib
        );
        assert_eq!(cap_segment(16 * mib, 8 * mib, None), 2 * mib, "the limit");
        assert_eq!(
            cap_segment(16 * mib, 1024 * mib, Some(8 * mib)),
            2 * mib,
            "the free space"
        );
        assert_eq!(
            cap_segment(16 * mib, 1024 * mib, Some(0)),
            MIN_SEGMENT,
            "never below a page"
        );
    }
}
