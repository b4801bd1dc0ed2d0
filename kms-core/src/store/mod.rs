//! The store: one SQLite database (WAL) in a directory, shared safely by several processes.
//!
//! Every change is one transaction (`BEGIN IMMEDIATE`, so writers queue instead of failing).
//! Software key material is sealed under the root key before it is written; the root key comes
//! from a key file (made on first use, mode 0600) or a passphrase through Argon2id.

mod access;
mod schema;
mod seal;

pub use access::*;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result};
use crate::model::{KeySpec, KeyState, KeyUsage, Origin, ProductVersion, ProtectionLevel, Tag};

pub use seal::Sealer;

/// The database file in a store directory.
pub const DB_FILE: &str = "tessera.db";
/// The root key file in a store directory, when the root key comes from a file.
pub const ROOT_KEY_FILE: &str = "root.key";

/// Where the root key that seals software key material comes from.
#[derive(Clone)]
pub enum RootKeySource {
    /// A 32-byte key file, made with mode 0600 on first use. `None`: `root.key` in the store directory.
    KeyFile(Option<PathBuf>),
    /// A passphrase stretched with Argon2id (salt kept in the store).
    Passphrase(Zeroizing<String>),
}

impl std::fmt::Debug for RootKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootKeySource::KeyFile(p) => f.debug_tuple("KeyFile").field(p).finish(),
            RootKeySource::Passphrase(_) => f.write_str("Passphrase([REDACTED])"),
        }
    }
}

impl Default for RootKeySource {
    fn default() -> Self {
        RootKeySource::KeyFile(None)
    }
}

/// A key's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub spec: KeySpec,
    pub usage: KeyUsage,
    pub origin: Origin,
    pub protection_level: ProtectionLevel,
    pub instance_id: String,
    pub description: String,
    pub creator: String,
    pub created_ms: i64,
    pub state: KeyState,
    pub delete_ms: Option<i64>,
    pub deletion_protection: bool,
    pub deletion_protection_description: String,
    pub auto_rotation: bool,
    pub rotation_interval_s: Option<i64>,
    pub primary_version: Option<String>,
    pub last_rotation_ms: Option<i64>,
    pub next_rotation_ms: Option<i64>,
    pub policy: Option<String>,
}

/// A key version's row, without its material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRecord {
    pub key_id: String,
    pub version_id: String,
    pub created_ms: i64,
}

/// An alias's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasRecord {
    pub alias_name: String,
    pub key_id: String,
}

/// The open store.
pub struct Store {
    conn: Mutex<Connection>,
    sealer: Sealer,
    dir: PathBuf,
    account_id: String,
    region: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> KmsError {
    KmsError::Internal(format!("{what} {}: {e}", path.display()))
}

fn random_array<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut out = Zeroizing::new([0u8; N]);
    getrandom::fill(out.as_mut()).map_err(|e| KmsError::Internal(format!("OS random: {e}")))?;
    Ok(out)
}

/// Reads the root key file, making it (atomically, mode 0600) when it does not exist.
fn load_or_create_key_file(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    if !path.exists() {
        let key = random_array::<32>()?;
        // Write a private temporary file, then link it into place: linking fails if another
        // process won the race, and nobody ever reads a half-written key file.
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_error("cannot create root key file", &tmp, e))?;
        f.write_all(key.as_ref())
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error("cannot write root key file", &tmp, e))?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("cannot install root key file", path, e)),
        }
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| io_error("cannot read root key file", path, e))?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(KmsError::InvalidRootKey(format!(
            "{} must hold exactly 32 bytes",
            path.display()
        )));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

fn derive_from_passphrase(passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| KmsError::Internal(format!("Argon2id: {e}")))?;
    Ok(key)
}

/// Lower-case hex (salts and hashes in text columns).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of [`hex`]'s output; `None` for anything else.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads `name` from meta, first writing `make()` if it is absent (first writer wins).
fn meta_get_or_init(conn: &Connection, name: &str, make: impl FnOnce() -> Result<String>) -> Result<String> {
    if let Some(v) = conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
    {
        return Ok(v);
    }
    conn.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)",
        params![name, make()?],
    )?;
    Ok(conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))?)
}

const ROOT_CHECK_PLAINTEXT: &[u8] = b"tessera root key check";

impl Store {
    /// Opens (creating when needed) the store in `dir`.
    pub fn open(dir: &Path, root: &RootKeySource) -> Result<Store> {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_error("cannot create store directory", dir, e))?;
        }
        let mut conn = Connection::open(dir.join(DB_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before it is acknowledged, even across a power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;

        let account_id = meta_get_or_init(&conn, "account_id", || {
            let r = random_array::<8>()?;
            Ok(format!("{:016}", u64::from_le_bytes(*r) % 10_000_000_000_000_000))
        })?;
        let region = meta_get_or_init(&conn, "region", || Ok("local".to_owned()))?;

        let sealed_before: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM meta WHERE name = 'root_check')",
            [],
            |r| r.get(0),
        )?;
        let root_key = match root {
            RootKeySource::KeyFile(path) => {
                let path = path.clone().unwrap_or_else(|| dir.join(ROOT_KEY_FILE));
                // A store already sealed under another root key must not grow a new, useless key file.
                if sealed_before && !path.exists() {
                    return Err(KmsError::InvalidRootKey(format!(
                        "{} does not exist; this store was sealed under another root key \
                         (set TESSERA_PASSPHRASE or TESSERA_ROOT_KEY_FILE)",
                        path.display()
                    )));
                }
                load_or_create_key_file(&path)?
            }
            RootKeySource::Passphrase(passphrase) => {
                let salt = meta_get_or_init(&conn, "root_salt", || Ok(hex(random_array::<16>()?.as_ref())))?;
                let salt = unhex(&salt).ok_or_else(|| KmsError::internal("corrupt root salt"))?;
                derive_from_passphrase(passphrase, &salt)?
            }
        };
        let sealer = Sealer::new(&root_key);
        let check = meta_get_or_init(&conn, "root_check", || {
            Ok(hex(&sealer.seal("meta", "root_check", ROOT_CHECK_PLAINTEXT)?))
        })?;
        let check = unhex(&check).ok_or_else(|| KmsError::internal("corrupt root check"))?;
        let opened = sealer
            .unseal("meta", "root_check", &check)
            .map_err(|_| KmsError::InvalidRootKey("wrong key file or passphrase for this store".into()))?;
        if opened.as_slice() != ROOT_CHECK_PLAINTEXT {
            return Err(KmsError::InvalidRootKey(
                "wrong key file or passphrase for this store".into(),
            ));
        }
        Ok(Store {
            conn: Mutex::new(conn),
            sealer,
            dir: dir.to_path_buf(),
            account_id,
            region,
        })
    }

    /// A second connection to the same database, for a writer that must not wait for the
    /// main connection's lock (the audit trail's).
    pub fn side_connection(&self) -> Result<Connection> {
        let conn = Connection::open(self.dir.join(DB_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // NORMAL in WAL mode: a commit survives a process crash; only a power loss can take the
        // last commits back, which is the audit writer's documented window anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(conn)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The account every key of this store belongs to.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The region in ARNs.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The root key's sealer.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// SQLite's data version: it changes when another connection commits (not for our own commits).
    pub fn data_version(&self) -> Result<i64> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("PRAGMA data_version")?;
        Ok(stmt.query_row([], |r| r.get(0))?)
    }

    /// Runs `f` on the connection (reads; each statement is its own transaction).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        f(&self.conn.lock())
    }

    /// A count that every change of a metadata row moves (triggers, migration 6), whoever makes
    /// it. SQLite's data version moves for the audit writer's commits too; this does not, so a
    /// cache of keys, aliases and policies is dropped only when one of them may have changed.
    pub fn metadata_changes(&self) -> Result<i64> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT counter FROM metadata_changes WHERE id = 1")?
                .query_row([], |r| r.get(0))?)
        })
    }

    /// Runs `f` in one write transaction: committed when `f` returns `Ok`, rolled back otherwise.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

// ------------------------------------------------------------------ row access

fn parse_col<T: FromStr<Err = KmsError>>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    text.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

const KEY_COLUMNS: &str = "key_id, spec, usage, origin, protection_level, instance_id, description, creator, \
     created_ms, state, delete_ms, deletion_protection, deletion_protection_description, auto_rotation, \
     rotation_interval_s, primary_version, last_rotation_ms, next_rotation_ms, policy";

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        key_id: row.get(0)?,
        spec: parse_col(row, 1)?,
        usage: parse_col(row, 2)?,
        origin: parse_col(row, 3)?,
        protection_level: parse_col(row, 4)?,
        instance_id: row.get(5)?,
        description: row.get(6)?,
        creator: row.get(7)?,
        created_ms: row.get(8)?,
        state: parse_col(row, 9)?,
        delete_ms: row.get(10)?,
        deletion_protection: row.get(11)?,
        deletion_protection_description: row.get(12)?,
        auto_rotation: row.get(13)?,
        rotation_interval_s: row.get(14)?,
        primary_version: row.get(15)?,
        last_rotation_ms: row.get(16)?,
        next_rotation_ms: row.get(17)?,
        policy: row.get(18)?,
    })
}

fn sql_offset(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Inserts a new key.
pub fn insert_key(conn: &Connection, k: &KeyRecord) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)"),
        params![
            k.key_id, k.spec.as_str(), k.usage.as_str(), k.origin.as_str(), k.protection_level.as_str(),
            k.instance_id, k.description, k.creator, k.created_ms, k.state.as_str(), k.delete_ms,
            k.deletion_protection, k.deletion_protection_description, k.auto_rotation,
            k.rotation_interval_s, k.primary_version, k.last_rotation_ms, k.next_rotation_ms, k.policy
        ],
    )?;
    Ok(())
}

/// Writes every mutable column of an existing key.
pub fn update_key(conn: &Connection, k: &KeyRecord) -> Result<()> {
    let n = conn.execute(
        "UPDATE keys SET description = ?2, state = ?3, delete_ms = ?4, deletion_protection = ?5,
             deletion_protection_description = ?6, auto_rotation = ?7, rotation_interval_s = ?8,
             primary_version = ?9, last_rotation_ms = ?10, next_rotation_ms = ?11, policy = ?12
         WHERE key_id = ?1",
        params![
            k.key_id,
            k.description,
            k.state.as_str(),
            k.delete_ms,
            k.deletion_protection,
            k.deletion_protection_description,
            k.auto_rotation,
            k.rotation_interval_s,
            k.primary_version,
            k.last_rotation_ms,
            k.next_rotation_ms,
            k.policy
        ],
    )?;
    if n == 0 {
        return Err(KmsError::KeyNotFound(k.key_id.clone()));
    }
    Ok(())
}

/// A key by id.
pub fn get_key(conn: &Connection, key_id: &str) -> Result<Option<KeyRecord>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1"))?;
    Ok(stmt.query_row([key_id], key_from_row).optional()?)
}

/// Deletes a key; versions, aliases and tags go with it.
pub fn delete_key(conn: &Connection, key_id: &str) -> Result<()> {
    conn.execute("DELETE FROM keys WHERE key_id = ?1", [key_id])?;
    Ok(())
}

/// One page of keys in creation order, and the total.
pub fn list_keys(conn: &Connection, offset: u64, limit: u32) -> Result<(Vec<String>, u64)> {
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM keys", [], |r| r.get(0))?;
    let mut stmt = conn.prepare("SELECT key_id FROM keys ORDER BY created_ms, key_id LIMIT ?1 OFFSET ?2")?;
    let ids = stmt
        .query_map(params![limit, sql_offset(offset)], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((ids, count(total)))
}

/// Inserts a key version with its stored form (sealed when secret).
pub fn insert_version(conn: &Connection, v: &VersionRecord, material: &[u8]) -> Result<()> {
    conn.execute(
        "INSERT INTO key_versions (key_id, version_id, created_ms, material) VALUES (?1, ?2, ?3, ?4)",
        params![v.key_id, v.version_id, v.created_ms, material],
    )?;
    Ok(())
}

/// A version's row and stored form.
pub fn get_version(conn: &Connection, key_id: &str, version_id: &str) -> Result<Option<(VersionRecord, Vec<u8>)>> {
    let mut stmt =
        conn.prepare_cached("SELECT created_ms, material FROM key_versions WHERE key_id = ?1 AND version_id = ?2")?;
    Ok(stmt
        .query_row([key_id, version_id], |r| {
            Ok((
                VersionRecord {
                    key_id: key_id.to_owned(),
                    version_id: version_id.to_owned(),
                    created_ms: r.get(0)?,
                },
                r.get(1)?,
            ))
        })
        .optional()?)
}

/// One page of a key's versions, oldest first, and the total.
pub fn list_versions(conn: &Connection, key_id: &str, offset: u64, limit: u32) -> Result<(Vec<VersionRecord>, u64)> {
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM key_versions WHERE key_id = ?1", [key_id], |r| {
        r.get(0)
    })?;
    let mut stmt = conn.prepare(
        "SELECT version_id, created_ms FROM key_versions WHERE key_id = ?1
         ORDER BY created_ms, rowid LIMIT ?2 OFFSET ?3",
    )?;
    let rows = stmt
        .query_map(params![key_id, limit, sql_offset(offset)], |r| {
            Ok(VersionRecord {
                key_id: key_id.to_owned(),
                version_id: r.get(0)?,
                created_ms: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((rows, count(total)))
}

/// Every version's id and stored form (for destroying them at purge).
pub fn version_materials(conn: &Connection, key_id: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut stmt = conn.prepare("SELECT version_id, material FROM key_versions WHERE key_id = ?1")?;
    let rows = stmt
        .query_map([key_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// The key an alias points at.
pub fn alias_target(conn: &Connection, alias_name: &str) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT key_id FROM aliases WHERE alias_name = ?1")?;
    Ok(stmt.query_row([alias_name], |r| r.get(0)).optional()?)
}

/// Creates an alias. `Ok(false)` when the name is taken.
pub fn insert_alias(conn: &Connection, alias_name: &str, key_id: &str, now_ms: i64) -> Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO aliases (alias_name, key_id, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)",
        params![alias_name, key_id, now_ms],
    )?;
    Ok(n == 1)
}

/// Points an existing alias at another key. `Ok(false)` when there is no such alias.
pub fn update_alias(conn: &Connection, alias_name: &str, key_id: &str, now_ms: i64) -> Result<bool> {
    let n = conn.execute(
        "UPDATE aliases SET key_id = ?2, updated_ms = ?3 WHERE alias_name = ?1",
        params![alias_name, key_id, now_ms],
    )?;
    Ok(n == 1)
}

/// Deletes an alias. `Ok(false)` when there is no such alias.
pub fn delete_alias(conn: &Connection, alias_name: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM aliases WHERE alias_name = ?1", [alias_name])? == 1)
}

/// One page of aliases (of one key, or all), by name, and the total.
pub fn list_aliases(
    conn: &Connection,
    key_id: Option<&str>,
    offset: u64,
    limit: u32,
) -> Result<(Vec<AliasRecord>, u64)> {
    let total: i64 = conn.query_row(
        "SELECT COUNT(*) FROM aliases WHERE ?1 IS NULL OR key_id = ?1",
        [key_id],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT alias_name, key_id FROM aliases WHERE ?1 IS NULL OR key_id = ?1
         ORDER BY alias_name LIMIT ?2 OFFSET ?3",
    )?;
    let rows = stmt
        .query_map(params![key_id, limit, sql_offset(offset)], |r| {
            Ok(AliasRecord {
                alias_name: r.get(0)?,
                key_id: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((rows, count(total)))
}

/// A key's tags, by tag key.
pub fn tags(conn: &Connection, key_id: &str) -> Result<Vec<Tag>> {
    let mut stmt = conn.prepare_cached("SELECT tag_key, tag_value FROM tags WHERE key_id = ?1 ORDER BY tag_key")?;
    let rows = stmt
        .query_map([key_id], |r| {
            Ok(Tag {
                tag_key: r.get(0)?,
                tag_value: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Sets a tag (replacing its value when the key already has it).
pub fn put_tag(conn: &Connection, key_id: &str, tag: &Tag) -> Result<()> {
    conn.execute(
        "INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?1, ?2, ?3)
         ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
        params![key_id, tag.tag_key, tag.tag_value],
    )?;
    Ok(())
}

/// Removes a tag if present.
pub fn delete_tag(conn: &Connection, key_id: &str, tag_key: &str) -> Result<()> {
    conn.execute("DELETE FROM tags WHERE key_id = ?1 AND tag_key = ?2", [key_id, tag_key])?;
    Ok(())
}

/// The earliest time at which some work falls due: an automatic rotation or a purge.
pub fn next_due(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT MIN(t) FROM (
            SELECT MIN(next_rotation_ms) AS t FROM keys WHERE auto_rotation = 1 AND state = 'Enabled'
            UNION ALL
            SELECT MIN(delete_ms) FROM keys WHERE state = 'PendingDeletion')",
        [],
        |r| r.get(0),
    )?)
}

/// Keys whose pending-deletion window has ended.
pub fn due_purges(conn: &Connection, now_ms: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT key_id FROM keys WHERE state = 'PendingDeletion' AND delete_ms <= ?1")?;
    let rows = stmt
        .query_map([now_ms], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Enabled keys whose automatic rotation is due.
pub fn due_rotations(conn: &Connection, now_ms: i64) -> Result<Vec<KeyRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {KEY_COLUMNS} FROM keys
         WHERE auto_rotation = 1 AND state = 'Enabled' AND next_rotation_ms <= ?1"
    ))?;
    let rows = stmt
        .query_map([now_ms], key_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

// ------------------------------------------------------------------ tokens

/// A PKCS#11 token's row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRecord {
    pub instance_id: String,
    pub label: String,
    /// Argon2id hash of the SO PIN; `None` until the token is initialised.
    pub so_pin_hash: Option<String>,
    /// Argon2id hash of the user PIN; `None` until C_InitPIN.
    pub user_pin_hash: Option<String>,
}

/// The token of an instance, if it was ever initialised.
pub fn get_token(conn: &Connection, instance_id: &str) -> Result<Option<TokenRecord>> {
    let mut stmt =
        conn.prepare_cached("SELECT label, so_pin_hash, user_pin_hash FROM tokens WHERE instance_id = ?1")?;
    Ok(stmt
        .query_row([instance_id], |r| {
            Ok(TokenRecord {
                instance_id: instance_id.to_owned(),
                label: r.get(0)?,
                so_pin_hash: r.get(1)?,
                user_pin_hash: r.get(2)?,
            })
        })
        .optional()?)
}

/// Writes a token's row.
pub fn put_token(conn: &Connection, t: &TokenRecord, now_ms: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO tokens (instance_id, label, so_pin_hash, user_pin_hash, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (instance_id) DO UPDATE SET label = ?2, so_pin_hash = ?3, user_pin_hash = ?4, updated_ms = ?5",
        params![t.instance_id, t.label, t.so_pin_hash, t.user_pin_hash, now_ms],
    )?;
    Ok(())
}

/// A key as a token lists it: the key, its version ids newest first, its oldest alias.
pub type TokenKeyRow = (KeyRecord, Vec<String>, Option<String>);

/// What a token shows: its Enabled keys with their versions and first alias, in creation order.
pub fn token_keys(conn: &Connection, instance_id: &str) -> Result<Vec<TokenKeyRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {KEY_COLUMNS} FROM keys WHERE instance_id = ?1 AND state = 'Enabled' ORDER BY created_ms, key_id"
    ))?;
    let keys: Vec<KeyRecord> = stmt
        .query_map([instance_id], key_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        index.insert(k.key_id.clone(), i);
    }
    let mut versions: Vec<Vec<String>> = vec![Vec::new(); keys.len()];
    let mut stmt = conn.prepare(
        "SELECT v.key_id, v.version_id FROM key_versions v JOIN keys k ON k.key_id = v.key_id
         WHERE k.instance_id = ?1 AND k.state = 'Enabled' ORDER BY v.created_ms DESC, v.rowid DESC",
    )?;
    let mut rows = stmt.query([instance_id])?;
    while let Some(row) = rows.next()? {
        let key_id: String = row.get(0)?;
        if let Some(&i) = index.get(&key_id) {
            versions[i].push(row.get(1)?);
        }
    }
    let mut aliases: Vec<Option<String>> = vec![None; keys.len()];
    let mut stmt = conn.prepare("SELECT alias_name, key_id FROM aliases ORDER BY created_ms DESC, alias_name DESC")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let key_id: String = row.get(1)?;
        if let Some(&i) = index.get(&key_id) {
            // Newest first, so the last written is the oldest alias.
            aliases[i] = Some(row.get(0)?);
        }
    }
    Ok(keys
        .into_iter()
        .zip(versions)
        .zip(aliases)
        .map(|((k, v), a)| (k, v, a))
        .collect())
}

// ------------------------------------------------------------------ instances

/// An instance's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    pub instance_id: String,
    pub product_version: ProductVersion,
    pub description: String,
    pub hsm_module_path: Option<String>,
    pub hsm_token_label: Option<String>,
    pub hsm_token_serial: Option<String>,
    /// `env:NAME` or `file:/path`.
    pub hsm_pin_source: Option<String>,
    pub created_ms: i64,
}

const INSTANCE_COLUMNS: &str = "instance_id, product_version, description, hsm_module_path, hsm_token_label, \
     hsm_token_serial, hsm_pin_source, created_ms";

fn instance_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRecord> {
    Ok(InstanceRecord {
        instance_id: row.get(0)?,
        product_version: parse_col(row, 1)?,
        description: row.get(2)?,
        hsm_module_path: row.get(3)?,
        hsm_token_label: row.get(4)?,
        hsm_token_serial: row.get(5)?,
        hsm_pin_source: row.get(6)?,
        created_ms: row.get(7)?,
    })
}

/// An instance by id.
pub fn get_instance(conn: &Connection, instance_id: &str) -> Result<Option<InstanceRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?1"
    ))?;
    Ok(stmt.query_row([instance_id], instance_from_row).optional()?)
}

/// Inserts an instance.
pub fn insert_instance(conn: &Connection, i: &InstanceRecord) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            i.instance_id,
            i.product_version.as_str(),
            i.description,
            i.hsm_module_path,
            i.hsm_token_label,
            i.hsm_token_serial,
            i.hsm_pin_source,
            i.created_ms
        ],
    )?;
    Ok(())
}

/// One page of instances in creation order, and the total.
pub fn list_instances(conn: &Connection, offset: u64, limit: u32) -> Result<(Vec<InstanceRecord>, u64)> {
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM instances", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY created_ms, instance_id LIMIT ?1 OFFSET ?2"
    ))?;
    let rows = stmt
        .query_map(params![limit, sql_offset(offset)], instance_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok((rows, count(total)))
}
