//! The audit trail: every call, allowed or denied, becomes a record of who did what to which
//! resource and how it ended — never key material, plaintext or ciphertext.
//!
//! Calls only append to an in-memory queue (tens of nanoseconds); a writer thread with its own
//! SQLite connection drains it in batches, so a 4 KiB Encrypt does not wait for a disk write.
//! The price is a window: records of the last few milliseconds before a crash can be lost. Queries
//! (LookupEvents) and closing the store flush the queue first.
//!
//! A call identical to the one queued just before it — same millisecond, caller, source address,
//! action, resources, key and outcome — adds to that record's count instead of making a row of
//! its own. The trail stays exact (every call, in order, to the millisecond) while a busy caller
//! costs the writer a row per millisecond rather than one per call: at 300,000 calls a second a
//! row each took a whole core of a two-core machine.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use super::access::CallRecord;
use crate::error::{KmsError, Result};
use crate::store;

/// How long records may wait in the queue before the writer stores them.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);
/// The most records that may wait: a caller that finds the queue this full waits for the writer,
/// so that calls faster than SQLite can store them cannot grow memory without bound.
const MAX_PENDING: usize = 65_536;
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

#[derive(Default)]
struct Queue {
    pending: Vec<AuditEvent>,
    /// Records ever queued, and ever stored (or dropped after a write error).
    queued: u64,
    stored: u64,
    closing: bool,
    /// The last write error, reported by the next flush.
    failure: Option<String>,
    /// A flush waits: store what is queued now rather than at the next interval.
    flush_wanted: bool,
    /// When each key was last used by a call of this process (whether or not stored yet).
    last_use: HashMap<Arc<str>, i64>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer (new events, a flush, closing).
    wake: Condvar,
    /// Wakes flushers when a batch was stored.
    stored: Condvar,
}

/// The queue and its writer thread.
pub(crate) struct AuditLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Starts the writer on its own connection to the store.
    pub fn start(conn: Connection) -> Result<AuditLog> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            stored: Condvar::new(),
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

    /// Queues one call's record, or counts it into the record just before it (the common case
    /// under load, which copies nothing).
    pub fn record(&self, call: &CallRecord<'_, '_>) {
        let mut q = self.shared.queue.lock();
        if let Some(last) = q.pending.last_mut()
            && last.repeats(call)
        {
            last.count += 1;
            return;
        }
        while q.pending.len() >= MAX_PENDING && !q.closing {
            self.shared.wake.notify_one();
            self.shared.stored.wait_for(&mut q, WRITE_INTERVAL);
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
        q.queued += 1;
        if q.pending.len() == MAX_PENDING / 2 {
            // The writer stores a half-full queue at once rather than at its next interval.
            self.shared.wake.notify_one();
        }
    }

    /// When this process last used a key (its calls are counted here before they are stored).
    pub fn last_use(&self, key_id: &str) -> Option<i64> {
        self.shared.queue.lock().last_use.get(key_id).copied()
    }

    /// Waits until every record queued so far is stored.
    pub fn flush(&self) -> Result<()> {
        let mut q = self.shared.queue.lock();
        let target = q.queued;
        q.flush_wanted = true;
        self.shared.wake.notify_one();
        while q.stored < target {
            if q.closing {
                break;
            }
            if self.shared.stored.wait_for(&mut q, FLUSH_TIMEOUT).timed_out() {
                return Err(KmsError::Internal("the audit writer is not keeping up".into()));
            }
        }
        match q.failure.take() {
            Some(why) => Err(KmsError::Internal(format!("audit records could not be stored: {why}"))),
            None => Ok(()),
        }
    }

    /// Stores what is queued and stops the writer.
    pub fn close(&self) {
        self.shared.queue.lock().closing = true;
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

/// Stores a batch at most every [`WRITE_INTERVAL`] — sooner only for a flush, a queue half full or
/// closing. (Storing whatever arrived during the last write at once kept the writer committing
/// back to back, a thousand small transactions a second, while calls kept coming.)
fn write_loop(shared: &Shared, conn: Connection) {
    let mut last_write = Instant::now();
    loop {
        let (batch, closing) = {
            let mut q = shared.queue.lock();
            let due = last_write + WRITE_INTERVAL;
            loop {
                if q.closing || q.flush_wanted || q.pending.len() >= MAX_PENDING / 2 {
                    break;
                }
                let now = Instant::now();
                if now >= due && !q.pending.is_empty() {
                    break;
                }
                let wait = if q.pending.is_empty() {
                    WRITE_INTERVAL
                } else {
                    due - now
                };
                shared.wake.wait_for(&mut q, wait);
            }
            q.flush_wanted = false;
            (std::mem::take(&mut q.pending), q.closing)
        };
        last_write = Instant::now();
        if !batch.is_empty() {
            let n = batch.len() as u64;
            let written = write_batch(&conn, batch);
            let mut q = shared.queue.lock();
            q.stored += n;
            if let Err(e) = written {
                tracing::error!("audit records could not be stored: {e}");
                q.failure = Some(e.to_string());
            }
            shared.stored.notify_all();
        }
        if closing && shared.queue.lock().pending.is_empty() {
            shared.stored.notify_all();
            return;
        }
    }
}

/// Stores a batch in one transaction, binding each record's fields as they are (the writer keeps
/// up with a busy caller only if a record costs little more than its row), and moves each used
/// key's last-use time forward.
fn write_batch(conn: &Connection, batch: Vec<AuditEvent>) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare_cached(store::INSERT_AUDIT)?;
        let mut resource = String::new();
        let mut used: HashMap<&str, i64> = HashMap::new();
        for e in &batch {
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
