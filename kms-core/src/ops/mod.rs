//! The `Kms` facade: one method per API operation, one file per family of operations.
//!
//! Hot paths (Encrypt, Decrypt, Sign…) read no SQLite rows: key metadata and loaded keys are
//! cached in memory. Each call asks SQLite only for `PRAGMA data_version`, which changes when
//! another connection commits; when a metadata write (not just an audit batch) was among those
//! commits, the metadata cache is dropped. Loaded key versions are immutable, so they stay
//! cached until their key is purged.

mod access;
mod aliases;
mod audit;
mod crypto;
mod instances;
mod keys;
mod policies;
mod tags;
mod token;
mod versions;

pub(crate) use access::Call;
pub use access::{CallerContext, Client, OPERATIONS};
#[cfg(test)]
pub(crate) use audit::KEY_USE_ACTIONS;
pub use token::{
    MAX_PIN_LEN, MIN_PIN_LEN, PinRole, TokenInfo, TokenKey, TokenVersion, TokenView, hash_pin, is_pin_hash, pin_matches,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use zeroize::Zeroizing;

use crate::clock::{Clock, SystemClock, format_time};
use crate::engine::{Engine, EngineError, KeyHandle, SoftwareEngine, StoredKey, VersionRef};
use crate::error::{KmsError, Result};
use crate::model::{KeyState, KeyUsage};
use crate::store::{self, KeyRecord, RootKeySource, Store};

/// The id of the instance every key belongs to until instances are configurable.
pub const DEFAULT_INSTANCE_ID: &str = "kst-default";

/// The environment variable naming the store directory.
pub const STORE_ENV: &str = "TESSERA_STORE";

/// The store directory when none is named: `$TESSERA_STORE`, else `$XDG_DATA_HOME/tessera`,
/// else `~/.local/share/tessera`, else `./.tessera`.
pub fn default_store_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(STORE_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(data).join("tessera");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/share/tessera");
    }
    PathBuf::from(".tessera")
}

/// How to open a [`Kms`].
#[derive(Clone)]
pub struct KmsOptions {
    /// Where the root key comes from.
    pub root: RootKeySource,
    /// The clock (inject a [`crate::clock::ManualClock`] in tests).
    pub clock: Arc<dyn Clock>,
    /// The engine that holds key material.
    pub engine: Arc<dyn Engine>,
    /// How often, at most, a call asks SQLite whether another process changed the store; every
    /// change waits this long after its commit before it returns, so a call that starts after a
    /// change returned always sees it. Shorter makes writes return sooner and reads poll more.
    pub poll_interval: Duration,
}

/// The default [`KmsOptions::poll_interval`]: polls cost about 1.5 µs, so at this interval they
/// take under 1% of a busy thread, and a change's commit-wait is small next to its fsync.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_micros(250);

/// The environment variable holding a passphrase for the root key (instead of a key file).
pub const PASSPHRASE_ENV: &str = "TESSERA_PASSPHRASE";
/// The environment variable naming a root key file outside the store directory.
pub const ROOT_KEY_FILE_ENV: &str = "TESSERA_ROOT_KEY_FILE";

impl KmsOptions {
    /// The defaults, with the root key taken from the environment: `TESSERA_PASSPHRASE` (Argon2id),
    /// else `TESSERA_ROOT_KEY_FILE`, else `root.key` in the store directory.
    pub fn from_env() -> Self {
        let root = if let Some(p) = std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()) {
            RootKeySource::Passphrase(Zeroizing::new(p))
        } else if let Some(f) = std::env::var_os(ROOT_KEY_FILE_ENV).filter(|f| !f.is_empty()) {
            RootKeySource::KeyFile(Some(PathBuf::from(f)))
        } else {
            RootKeySource::default()
        };
        KmsOptions {
            root,
            ..KmsOptions::default()
        }
    }
}

impl Default for KmsOptions {
    fn default() -> Self {
        KmsOptions {
            root: RootKeySource::default(),
            clock: Arc::new(SystemClock),
            engine: Arc::new(SoftwareEngine),
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

/// Key metadata cached between calls, dropped whenever the database changed.
#[derive(Default)]
struct MetaCache {
    /// Bumped at every drop, so a reader that loaded a row before a drop does not cache it after.
    epoch: u64,
    /// False until loaded, and after our own writes.
    fresh: bool,
    data_version: i64,
    /// [`Store::metadata_changes`] when the cache was loaded.
    metadata_changes: i64,
    next_due_ms: Option<i64>,
    keys: HashMap<String, Arc<KeyRecord>>,
    aliases: HashMap<String, String>,
    /// Each key's compiled policy, tags and ARN, for authorization.
    access: HashMap<String, Arc<access::KeyAccess>>,
    /// The compiled identity policies attached to each principal (by ARN).
    identity: HashMap<String, Arc<[Arc<crate::policy::PolicyDocument>]>>,
}

impl MetaCache {
    /// Whether the cache holds the store as last polled, with no work due at `now_ms`.
    fn usable_at(&self, now_ms: i64) -> bool {
        self.fresh && self.next_due_ms.is_none_or(|t| now_ms < t)
    }

    /// Drops everything loaded from the store.
    fn clear_loaded(&mut self) {
        self.keys.clear();
        self.aliases.clear();
        self.access.clear();
        self.identity.clear();
    }
}

/// Loaded key versions: key id → version id → handle.
type HandleCache = HashMap<String, HashMap<String, Arc<dyn KeyHandle>>>;

/// The key management service over one store.
pub struct Kms {
    store: Store,
    engine: Arc<dyn Engine>,
    clock: Arc<dyn Clock>,
    meta: RwLock<MetaCache>,
    handles: RwLock<HandleCache>,
    /// Each instance's engine (instances never change, so this is never invalidated).
    engines: RwLock<HashMap<String, Arc<dyn Engine>>>,
    /// Each instance's token snapshot, tagged with the metadata epoch it was built in.
    token_views: RwLock<token::TokenViews>,
    /// Origin of the monotonic time below (CLOCK_MONOTONIC: one clock for every process).
    started: Instant,
    /// When (ns after `started`) the last poll that the metadata cache reflects began.
    last_poll_ns: AtomicU64,
    /// The metadata cache's epoch, mirrored (see [`Kms::publish`]).
    epoch: AtomicU64,
    /// Until when (clock ms) the cache may be used without a poll: the next due work if the
    /// cache is fresh, else `i64::MIN` (mirrored, see [`Kms::publish`]).
    fresh_until_ms: AtomicI64,
    poll_interval: Duration,
    /// The store's account root: who `Kms`'s own operation methods act as.
    root: CallerContext,
    /// Every call's record, on its way to the store.
    audit: audit::AuditLog,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("store", &self.store)
            .field("engine", &self.engine.name())
            .finish_non_exhaustive()
    }
}

/// A key may do cryptography of `usage`: it is Enabled and has that usage.
fn check_usage(key: &KeyRecord, usage: KeyUsage) -> Result<()> {
    if key.state != KeyState::Enabled {
        return Err(KmsError::KeyStateRejected { state: key.state });
    }
    if key.usage != usage {
        return Err(KmsError::Unsupported {
            what: "KeyUsage",
            reason: format!("the key's usage is {}, this operation needs {usage}", key.usage),
        });
    }
    Ok(())
}

/// A fresh random id in the UUID v4 form the API uses for keys and versions.
pub(crate) fn new_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| KmsError::Internal(format!("OS random: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

pub(crate) fn engine_error(e: EngineError, param: &'static str) -> KmsError {
    match e {
        EngineError::Unsupported(what) => KmsError::Unsupported {
            what: "Algorithm",
            reason: format!("{what} is not supported for this key"),
        },
        EngineError::InvalidInput(why) => KmsError::invalid(param, why),
        EngineError::Crypto => KmsError::InvalidCiphertext,
        EngineError::BadStoredKey => KmsError::internal("stored key material is unreadable"),
        EngineError::Backend(why) => KmsError::Internal(why),
        EngineError::Unavailable(why) => KmsError::HsmUnavailable(why),
    }
}

/// A failed decryption is one opaque error (no oracle), except an HSM that could not be reached:
/// the data is not at fault then, and the caller should retry rather than discard it.
pub(crate) fn open_error(e: EngineError) -> KmsError {
    match e {
        EngineError::Unavailable(why) => KmsError::HsmUnavailable(why),
        _ => KmsError::InvalidCiphertext,
    }
}

impl Kms {
    /// Opens the store in `dir` with the software engine, the system clock and a root key file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Kms> {
        Self::open_with(dir, KmsOptions::default())
    }

    /// Opens the store in `dir` and applies any work that fell due while it was closed.
    pub fn open_with(dir: impl AsRef<Path>, options: KmsOptions) -> Result<Kms> {
        let store = Store::open(dir.as_ref(), &options.root)?;
        let root = CallerContext::new(crate::policy::Principal::root(store.account_id())?);
        let audit = audit::AuditLog::start(store.side_connection()?)?;
        let kms = Kms {
            root,
            audit,
            store,
            engine: options.engine,
            clock: options.clock,
            meta: RwLock::new(MetaCache::default()),
            handles: RwLock::new(HashMap::new()),
            engines: RwLock::new(HashMap::new()),
            token_views: RwLock::new(HashMap::new()),
            started: Instant::now(),
            last_poll_ns: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            fresh_until_ms: AtomicI64::new(i64::MIN),
            poll_interval: options.poll_interval,
        };
        kms.sync()?;
        Ok(kms)
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.dir()
    }

    /// The account that owns this store's keys.
    pub fn account_id(&self) -> &str {
        self.store.account_id()
    }

    /// The current time of the injected clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn monotonic_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Brings the caches up to date and applies due work (rotation, purge). Called before every
    /// operation. On the common path it reads the clock and an atomic: SQLite's
    /// `PRAGMA data_version` (about 1.5 µs, as long as a 4 KiB AES-GCM encryption) is asked at
    /// most once per poll interval. That stays exact across processes because every write waits
    /// one poll interval after its commit before it returns (see [`Kms::write`]): a call that
    /// begins after a change returned began more than an interval after any poll that missed it.
    fn sync(&self) -> Result<()> {
        let now = self.clock.now_ms();
        let begun = self.monotonic_ns();
        let poll_due = begun.saturating_sub(self.last_poll_ns.load(Ordering::Acquire))
            >= u64::try_from(self.poll_interval.as_nanos()).unwrap_or(u64::MAX);
        if !poll_due && now < self.fresh_until_ms.load(Ordering::Acquire) {
            return Ok(());
        }
        let data_version = self.store.data_version()?;
        {
            let meta = self.meta.read();
            if meta.usable_at(now) && meta.data_version == data_version {
                self.last_poll_ns.fetch_max(begun, Ordering::AcqRel);
                return Ok(());
            }
        }
        // Another connection committed. If it was only an audit writer (this process's or
        // another's: a batch every 20 ms while calls are made), the metadata is still good.
        let changes = self.store.metadata_changes()?;
        {
            let mut meta = self.meta.write();
            if meta.usable_at(now) && meta.metadata_changes == changes {
                meta.data_version = meta.data_version.max(data_version);
                drop(meta);
                self.last_poll_ns.fetch_max(begun, Ordering::AcqRel);
                return Ok(());
            }
        }
        let mut next_due = self.store.read(store::next_due)?;
        if next_due.is_some_and(|t| t <= now) {
            self.apply_due_work(now)?;
            next_due = self.store.read(store::next_due)?;
        }
        {
            let mut meta = self.meta.write();
            meta.epoch += 1;
            meta.clear_loaded();
            meta.data_version = data_version;
            meta.metadata_changes = changes;
            meta.next_due_ms = next_due;
            meta.fresh = true;
            self.publish(&meta);
        }
        // Only now does the cache reflect this poll; a thread that skips polling on the strength
        // of this time must find the reloaded cache.
        self.last_poll_ns.fetch_max(begun, Ordering::AcqRel);
        Ok(())
    }

    /// Runs one write transaction, drops our cached metadata, and waits out the poll interval
    /// before returning, so that every process sees the change at its next call.
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let out = self.store.write(f)?;
        self.invalidate();
        std::thread::sleep(self.poll_interval);
        Ok(out)
    }

    /// Applies due work now (what `tessera maintain` runs). Returns (rotated, purged) counts.
    pub fn maintain(&self) -> Result<(usize, usize)> {
        let now = self.clock.now_ms();
        let counts = self.apply_due_work(now)?;
        self.invalidate();
        self.sync()?;
        Ok(counts)
    }

    /// Forgets cached metadata after our own write (our commits do not move `data_version`).
    fn invalidate(&self) {
        let mut meta = self.meta.write();
        meta.epoch += 1;
        meta.fresh = false;
        meta.clear_loaded();
        self.publish(&meta);
    }

    /// Mirrors what every call asks of the metadata cache into atomics, under its write lock:
    /// reading them touches no lock, where a read lock taken by every call of every thread
    /// bounces its cache line between the cores.
    fn publish(&self, meta: &MetaCache) {
        let fresh_until = match (meta.fresh, meta.next_due_ms) {
            (false, _) => i64::MIN,
            (true, None) => i64::MAX,
            (true, Some(due)) => due,
        };
        self.epoch.store(meta.epoch, Ordering::Release);
        self.fresh_until_ms.store(fresh_until, Ordering::Release);
    }

    /// The metadata cache's epoch now (it moves whenever the cache is dropped).
    fn epoch_now(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The metadata cache's epoch once the caches are brought up to date ([`Kms::sync`]).
    fn synced_epoch(&self) -> Result<u64> {
        self.sync()?;
        Ok(self.epoch_now())
    }

    /// A key by id, from the cache or the store.
    fn key_by_id(&self, key_id: &str) -> Result<Arc<KeyRecord>> {
        let epoch = {
            let meta = self.meta.read();
            if let Some(k) = meta.keys.get(key_id) {
                return Ok(Arc::clone(k));
            }
            meta.epoch
        };
        let record = self
            .store
            .read(|c| store::get_key(c, key_id))?
            .ok_or_else(|| KmsError::KeyNotFound(key_id.to_owned()))?;
        let record = Arc::new(record);
        let mut meta = self.meta.write();
        if meta.epoch == epoch {
            meta.keys.insert(key_id.to_owned(), Arc::clone(&record));
        }
        Ok(record)
    }

    /// The key an alias names, from the cache or the store.
    fn alias_target(&self, alias: &str) -> Result<String> {
        let epoch = {
            let meta = self.meta.read();
            if let Some(k) = meta.aliases.get(alias) {
                return Ok(k.clone());
            }
            meta.epoch
        };
        let key_id = self
            .store
            .read(|c| store::alias_target(c, alias))?
            .ok_or_else(|| KmsError::AliasNotFound(alias.to_owned()))?;
        let mut meta = self.meta.write();
        if meta.epoch == epoch {
            meta.aliases.insert(alias.to_owned(), key_id.clone());
        }
        Ok(key_id)
    }

    /// Resolves what the caller named — a key id, `alias/…`, or a key or alias ARN — to a key.
    fn resolve(&self, key_ref: &str) -> Result<Arc<KeyRecord>> {
        let name = self.key_ref_name(key_ref)?;
        if name.starts_with("alias/") {
            let key_id = self.alias_target(name)?;
            return self.key_by_id(&key_id);
        }
        self.key_by_id(name.strip_prefix("key/").unwrap_or(name))
    }

    /// The name a key reference gives — a key id, `key/{id}` or `alias/{name}` — from an id, an
    /// alias, or a key or alias ARN of this store's own account and region.
    fn key_ref_name<'r>(&self, key_ref: &'r str) -> Result<&'r str> {
        let key_ref = key_ref.trim();
        if key_ref.is_empty() {
            return Err(KmsError::MissingParameter("KeyId"));
        }
        match key_ref.strip_prefix("acs:kms:") {
            Some(arn) => match arn.splitn(3, ':').collect::<Vec<_>>()[..] {
                [region, account, resource] if region == self.store.region() && account == self.store.account_id() => {
                    Ok(resource)
                }
                _ => Err(KmsError::KeyNotFound(key_ref.to_owned())),
            },
            None => Ok(key_ref),
        }
    }

    /// Resolves a key that must be Enabled and have `usage`.
    fn usable(
        &self,
        call: &Call<'_>,
        action: &'static str,
        key_ref: &str,
        usage: KeyUsage,
        context: Option<&crate::blob::EncryptionContext>,
    ) -> Result<Arc<KeyRecord>> {
        let key = self.resolve_for_in(call, action, key_ref, context)?;
        check_usage(&key, usage)?;
        Ok(key)
    }

    /// The loaded key of a version, from the cache or unsealed from the store.
    fn handle(&self, key: &KeyRecord, version_id: &str) -> Result<Arc<dyn KeyHandle>> {
        if let Some(h) = self.handles.read().get(&key.key_id).and_then(|v| v.get(version_id)) {
            return Ok(Arc::clone(h));
        }
        let not_found = || KmsError::KeyVersionNotFound {
            key_id: key.key_id.clone(),
            version_id: version_id.to_owned(),
        };
        let (_, stored) = self
            .store
            .read(|c| store::get_version(c, &key.key_id, version_id))?
            .ok_or_else(not_found)?;
        let engine = self.engine_for(&key.instance_id)?;
        let material = if engine.stored_keys_are_secret() {
            self.store.sealer().unseal(&key.key_id, version_id, &stored)?
        } else {
            Zeroizing::new(stored)
        };
        let version = VersionRef {
            key_id: &key.key_id,
            version_id,
        };
        let handle = engine
            .load(key.spec, version, &material)
            .map_err(|e| engine_error(e, "KeyId"))?;
        self.handles
            .write()
            .entry(key.key_id.clone())
            .or_default()
            .insert(version_id.to_owned(), Arc::clone(&handle));
        Ok(handle)
    }

    /// The primary version's id of an Enabled key.
    fn primary(key: &KeyRecord) -> Result<&str> {
        key.primary_version.as_deref().ok_or(KmsError::KeyStateRejected {
            state: KeyState::PendingImport,
        })
    }

    /// Makes a new version's material in the engine and returns it in the form the store keeps.
    fn new_material(&self, key: &KeyRecord, version_id: &str) -> Result<Vec<u8>> {
        let version = VersionRef {
            key_id: &key.key_id,
            version_id,
        };
        let engine = self.engine_for(&key.instance_id)?;
        let stored: StoredKey = engine
            .generate(key.spec, version)
            .map_err(|e| engine_error(e, "KeySpec"))?;
        if engine.stored_keys_are_secret() {
            self.store.sealer().seal(&key.key_id, version_id, &stored)
        } else {
            Ok(stored.to_vec())
        }
    }

    /// The ARN of a key.
    fn key_arn(&self, key_id: &str) -> String {
        self.kms_arn(&format!("key/{key_id}"))
    }

    /// The ARN of an alias (`alias/…`).
    fn alias_arn(&self, alias_name: &str) -> String {
        self.kms_arn(alias_name)
    }
}

fn format_opt(ms: Option<i64>) -> Option<String> {
    ms.map(format_time)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
