//! The audit trail: every call, allowed or denied, becomes a record of who did what to which
//! resource and how it ended — never key material, plaintext or ciphertext.
//!
//! Calls only append to an in-memory queue (tens of nanoseconds); a writer thread with its own
//! SQLite connection drains it in batches, so a 4 KiB Encrypt does not wait for a disk write.
//! The price is a window: records of the last few milliseconds before a crash can be lost. Queries
//! (LookupEvents) and closing the store flush the queue first. The queue has lanes, one per thread
//! up to twice the CPUs: two threads calling at once would otherwise pass one lock's cache line
//! back and forth on every call (measured: the queue's lock cost 5.4 times more per call on two
//! threads than on one, the largest cost that grew).
//!
//! A call identical to the one queued just before it in its lane — same millisecond, caller,
//! source address, action, resources, key and outcome — adds to that record's count instead of
//! making a row of its own. The trail stays exact (every call, to the millisecond; a thread's
//! calls in their order; calls of different threads within one millisecond are concurrent and
//! have no order among them) while a busy caller costs the writer a row per millisecond rather
//! than one per call: at 300,000 calls a second a row each took a whole core of a two-core
//! machine.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use super::access::CallRecord;
use crate::error::{KmsError, Result};
use crate::store;

/// How long records may wait in the queue before the writer stores them.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);
/// The most records that may wait, over all lanes: a caller that finds its lane's share full
/// waits for the writer, so that calls faster than SQLite can store them cannot grow memory
/// without bound (nor a batch past what the writer stores well within a flush's patience).
const MAX_PENDING: usize = 65_536;
/// A lane's share of [`MAX_PENDING`] is never less than this.
const MIN_PENDING_PER_LANE: usize = 1_024;
/// A buffer that held more records than this in a burst gives its memory back once drained.
const KEEP_CAPACITY: usize = 4_096;
/// How long a flush waits for the writer before it gives up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The API actions that count as using a key (DescribeKey's LastUsedTime). Migration 5 names
/// the same list in SQL.
pub(crate) const KEY_USE_ACTIONS: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "AsymmetricSign",
    "AsymmetricVerify",
    "AsymmetricEncrypt",
    "AsymmetricDecrypt",
];

/// One call, as it is queued (cheap to build: shared strings, no formatting).
#[derive(Debug, Clone)]
pub(crate) struct AuditEvent {
    pub time_ms: i64,
    pub principal: Arc<str>,
    pub source_ip: Option<IpAddr>,
    pub action: &'static str,
    pub resources: Vec<Arc<str>>,
    pub key_id: Option<Arc<str>>,
    pub error_code: Option<&'static str>,
    /// How many identical calls in a row this record stands for.
    pub count: u64,
}

impl AuditEvent {
    /// Whether `call` is the same call again, in the same millisecond (pointers of shared
    /// strings are compared before their text).
    fn repeats(&self, call: &CallRecord<'_, '_>) -> bool {
        self.time_ms == call.time_ms
            && self.action == call.action
            && self.error_code == call.error_code
            && self.source_ip == call.source_ip
            && self.principal == *call.principal
            && self.key_id.as_ref() == call.key_id
            && self.resources.len() == call.resources.len()
            && self
                .resources
                .iter()
                .zip(call.resources.iter())
                .all(|(a, b)| a == b.get())
    }

    /// Whether this record is a successful use of a key (its last-use time).
    fn key_use(&self) -> Option<&Arc<str>> {
        match &self.key_id {
            Some(key) if self.error_code.is_none() && KEY_USE_ACTIONS.contains(&self.action) => Some(key),
            _ => None,
        }
    }
}

/// One lane of the queue: the calls of the threads given this lane, in their order.
#[derive(Default)]
struct LaneQueue {
    pending: Vec<AuditEvent>,
    /// When each key was last used by a call through this lane (whether or not stored yet).
    last_use: HashMap<Arc<str>, i64>,
}

/// A lane on cache lines of its own, so that threads on different lanes never touch one line.
#[repr(align(128))]
#[derive(Default)]
struct Lane(Mutex<LaneQueue>);

/// What the writer and the flushers agree on.
#[derive(Default)]
struct Control {
    /// Drains of all lanes ever begun, and ever finished (stored, or failed).
    drains_begun: u64,
    drains_done: u64,
    closing: bool,
    /// A flush or a full lane waits: drain now rather than at the next interval.
    drain_wanted: bool,
    /// The last write error, reported by the next flush.
    failure: Option<String>,
}

struct Shared {
    lanes: Box<[Lane]>,
    /// How many records one lane may hold.
    lane_limit: usize,
    /// Something was queued since the writer last drained (read before it is written, so that a
    /// busy caller does not write this shared line on every call).
    dirty: AtomicBool,
    control: Mutex<Control>,
    /// Wakes the writer (a flush, a full lane, closing).
    wake: Condvar,
    /// Wakes flushers and callers waiting for room when a drain is done.
    drained: Condvar,
}

/// The lane of the calling thread: threads take lanes in turn as they first record (a thread keeps
/// its lane; where threads come and go, two live ones may share a lane while another is idle —
/// slower, never wrong).
fn lane_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static LANE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    LANE.with(|lane| {
        if lane.get() == usize::MAX {
            lane.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        lane.get()
    })
}

/// Lanes per queue: twice the CPUs (a pool usually has a thread or two per CPU), at least 4.
fn lane_count() -> usize {
    let cpus = std::thread::available_parallelism().map_or(4, usize::from);
    (2 * cpus).clamp(4, 256).next_power_of_two()
}

/// The queue and its writer thread.
pub(crate) struct AuditLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Starts the writer on its own connection to the store.
    pub fn start(conn: Connection) -> Result<AuditLog> {
        let lanes = lane_count();
        let shared = Arc::new(Shared {
            lanes: (0..lanes).map(|_| Lane::default()).collect(),
            lane_limit: (MAX_PENDING / lanes).max(MIN_PENDING_PER_LANE),
            dirty: AtomicBool::new(false),
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            drained: Condvar::new(),
        });
        let for_writer = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("tessera-audit".into())
            .spawn(move || write_loop(&for_writer, conn))
            .map_err(|e| KmsError::Internal(format!("cannot start the audit writer: {e}")))?;
        Ok(AuditLog {
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    fn lane(&self) -> &Mutex<LaneQueue> {
        let lanes = &self.shared.lanes;
        // The count is a power of two.
        &lanes[lane_index() & (lanes.len() - 1)].0
    }

    /// Queues one call's record in the calling thread's lane, or counts it into the record just
    /// before it there (the common case under load, which copies nothing and writes no line that
    /// another thread's calls write).
    pub fn record(&self, call: &CallRecord<'_, '_>) {
        let lane = self.lane();
        let mut q = lane.lock();
        if let Some(last) = q.pending.last_mut()
            && last.repeats(call)
        {
            last.count += 1;
            return;
        }
        while q.pending.len() >= self.shared.lane_limit {
            drop(q);
            if !self.wait_for_room() {
                // Closing: the writer takes no more; the record is dropped like any after close.
                return;
            }
            q = lane.lock();
        }
        let event = call.to_event();
        if let Some(key) = event.key_use() {
            match q.last_use.get_mut(key) {
                Some(at) => *at = (*at).max(event.time_ms),
                None => {
                    let key = Arc::clone(key);
                    q.last_use.insert(key, event.time_ms);
                }
            }
        }
        q.pending.push(event);
        drop(q);
        if !self.shared.dirty.load(Ordering::Relaxed) {
            self.shared.dirty.store(true, Ordering::Release);
        }
    }

    /// Asks the writer to drain now and waits (at most one interval) for a drain to finish.
    /// Returns false once the log is closing.
    fn wait_for_room(&self) -> bool {
        let mut c = self.shared.control.lock();
        if c.closing {
            return false;
        }
        c.drain_wanted = true;
        self.shared.wake.notify_one();
        self.shared.drained.wait_for(&mut c, WRITE_INTERVAL);
        !c.closing
    }

    /// When this process last used a key (its calls are counted here before they are stored).
    pub fn last_use(&self, key_id: &str) -> Option<i64> {
        self.shared
            .lanes
            .iter()
            .filter_map(|lane| lane.0.lock().last_use.get(key_id).copied())
            .max()
    }

    /// Waits until every record queued so far is stored: until a drain that began after this call
    /// is done.
    pub fn flush(&self) -> Result<()> {
        let mut c = self.shared.control.lock();
        let wanted = c.drains_begun + 1;
        c.drain_wanted = true;
        self.shared.wake.notify_one();
        while c.drains_done < wanted {
            if c.closing {
                break;
            }
            if self.shared.drained.wait_for(&mut c, FLUSH_TIMEOUT).timed_out() {
                return Err(KmsError::Internal("the audit writer is not keeping up".into()));
            }
        }
        match c.failure.take() {
            Some(why) => Err(KmsError::Internal(format!("audit records could not be stored: {why}"))),
            None => Ok(()),
        }
    }

    /// Stores what is queued and stops the writer.
    pub fn close(&self) {
        self.shared.control.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.lock().take() {
            // A writer that panicked has nothing more to store; closing goes on regardless.
            let _ = writer.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Drains every lane at most every [`WRITE_INTERVAL`] — sooner only for a flush, a full lane or
/// closing — and stores the records in time order (a thread's calls keep their order; calls of
/// different threads in the same millisecond have none between them). Storing whatever arrived
/// during the last write at once kept the writer committing back to back, a thousand small
/// transactions a second, while calls kept coming.
fn write_loop(shared: &Shared, conn: Connection) {
    let mut batch: Vec<AuditEvent> = Vec::new();
    let mut drained: Vec<Vec<AuditEvent>> = shared.lanes.iter().map(|_| Vec::new()).collect();
    let mut last_drain = Instant::now();
    loop {
        let closing = {
            let mut c = shared.control.lock();
            let due = last_drain + WRITE_INTERVAL;
            loop {
                let now = Instant::now();
                if c.closing || c.drain_wanted || (now >= due && shared.dirty.load(Ordering::Acquire)) {
                    break;
                }
                let wait = if now >= due { WRITE_INTERVAL } else { due - now };
                shared.wake.wait_for(&mut c, wait);
            }
            c.drain_wanted = false;
            c.drains_begun += 1;
            c.closing
        };
        last_drain = Instant::now();
        shared.dirty.store(false, Ordering::Relaxed);
        for (lane, into) in shared.lanes.iter().zip(drained.iter_mut()) {
            // Swapped, so that each lane keeps a buffer that has grown to its load.
            std::mem::swap(&mut lane.0.lock().pending, into);
        }
        merge_lanes(&mut drained, &mut batch);
        for buffer in &mut drained {
            buffer.shrink_to(KEEP_CAPACITY);
        }
        let written = if batch.is_empty() {
            Ok(())
        } else {
            write_batch(&conn, &batch)
        };
        batch.clear();
        batch.shrink_to(KEEP_CAPACITY);
        {
            let mut c = shared.control.lock();
            c.drains_done += 1;
            if let Err(e) = written {
                tracing::error!("audit records could not be stored: {e}");
                c.failure = Some(e.to_string());
            }
        }
        shared.drained.notify_all();
        if closing {
            return;
        }
    }
}

/// Merges the lanes' records into one batch by time, each lane's records in their order (which is
/// the order of its calls even where the clock was set back between two of them).
fn merge_lanes(lanes: &mut [Vec<AuditEvent>], into: &mut Vec<AuditEvent>) {
    let mut lanes: Vec<_> = lanes.iter_mut().map(|lane| lane.drain(..).peekable()).collect();
    let mut heads: BinaryHeap<Reverse<(i64, usize)>> = (lanes.iter_mut().enumerate())
        .filter_map(|(i, lane)| lane.peek().map(|e| Reverse((e.time_ms, i))))
        .collect();
    while let Some(Reverse((_, i))) = heads.pop() {
        into.extend(lanes[i].next());
        if let Some(e) = lanes[i].peek() {
            heads.push(Reverse((e.time_ms, i)));
        }
    }
}

/// Stores a batch in one transaction, binding each record's fields as they are (the writer keeps
/// up with a busy caller only if a record costs little more than its row), and moves each used
/// key's last-use time forward.
fn write_batch(conn: &Connection, batch: &[AuditEvent]) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare_cached(store::INSERT_AUDIT)?;
        let mut resource = String::new();
        let mut used: HashMap<&str, i64> = HashMap::new();
        for e in batch {
            resource.clear();
            if e.resources.is_empty() {
                resource.push('*');
            }
            for (i, r) in e.resources.iter().enumerate() {
                if i > 0 {
                    resource.push(',');
                }
                resource.push_str(r);
            }
            insert.execute(rusqlite::params![
                e.time_ms,
                &*e.principal,
                e.source_ip.map(|ip| ip.to_string()),
                e.action,
                resource,
                e.key_id.as_deref(),
                if e.error_code.is_some() { "Failure" } else { "Success" },
                e.error_code,
                i64::try_from(e.count).unwrap_or(i64::MAX),
            ])?;
            if let Some(key) = e.key_use() {
                let at = used.entry(key).or_insert(e.time_ms);
                *at = (*at).max(e.time_ms);
            }
        }
        let mut mark = tx.prepare_cached(store::MARK_KEY_USED)?;
        for (key, at) in used {
            mark.execute(rusqlite::params![key, at])?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl super::Kms {
    /// Waits until every call made so far is in the audit trail (LookupEvents and DescribeKey do
    /// this themselves; closing the store does too).
    pub fn flush_audit(&self) -> Result<()> {
        self.audit.flush()
    }
}
