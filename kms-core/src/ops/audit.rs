//! The audit trail: every call, allowed or denied, becomes a record of who did what to which
//! resource and how it ended — never key material, plaintext or ciphertext.
//!
//! Calls only append to an in-memory queue (tens of nanoseconds); a writer thread with its own
//! SQLite connection drains it in batches, so a 4 KiB Encrypt does not wait for a disk write.
//! The price is a window: records of the last few milliseconds before a crash can be lost. Queries
//! (LookupEvents, DescribeKey's last use) and closing the store flush the queue first.

use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use crate::error::{KmsError, Result};
use crate::store;

/// How long records may wait in the queue before the writer stores them.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);
/// The most records that may wait: a caller that finds the queue this full waits for the writer,
/// so that calls faster than SQLite can store them cannot grow memory without bound.
const MAX_PENDING: usize = 65_536;
/// How long a flush waits for the writer before it gives up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

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
}

#[derive(Default)]
struct Queue {
    pending: Vec<AuditEvent>,
    /// Events ever queued, and ever stored (or dropped after a write error).
    queued: u64,
    stored: u64,
    closing: bool,
    /// The last write error, reported by the next flush.
    failure: Option<String>,
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

    /// Queues one call's record.
    pub fn record(&self, event: AuditEvent) {
        let mut q = self.shared.queue.lock();
        while q.pending.len() >= MAX_PENDING && !q.closing {
            self.shared.wake.notify_one();
            self.shared.stored.wait_for(&mut q, WRITE_INTERVAL);
        }
        q.pending.push(event);
        q.queued += 1;
    }

    /// Waits until every record queued so far is stored.
    pub fn flush(&self) -> Result<()> {
        let mut q = self.shared.queue.lock();
        let target = q.queued;
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

fn write_loop(shared: &Shared, conn: Connection) {
    loop {
        let (batch, closing) = {
            let mut q = shared.queue.lock();
            if q.pending.is_empty() && !q.closing {
                shared.wake.wait_for(&mut q, WRITE_INTERVAL);
            }
            (std::mem::take(&mut q.pending), q.closing)
        };
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

/// Stores a batch in one transaction, binding each event's fields as they are (the writer keeps
/// up with a busy caller only if a record costs little more than its row).
fn write_batch(conn: &Connection, batch: Vec<AuditEvent>) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare_cached(store::INSERT_AUDIT)?;
        let mut resource = String::new();
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
            ])?;
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
