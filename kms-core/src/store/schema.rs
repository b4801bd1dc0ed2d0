//! Schema migrations. Migration `n` (1-based) takes the database from `PRAGMA user_version`
//! `n - 1` to `n`; each runs in the transaction that records it, so a crash leaves either
//! the old schema or the new one.

use rusqlite::Connection;

use crate::error::{KmsError, Result};

const MIGRATIONS: &[&str] = &[
    // 1: the key model.
    r#"
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;

    CREATE TABLE keys (
        key_id                          TEXT PRIMARY KEY,
        spec                            TEXT NOT NULL,
        usage                           TEXT NOT NULL,
        origin                          TEXT NOT NULL,
        protection_level                TEXT NOT NULL,
        instance_id                     TEXT NOT NULL,
        description                     TEXT NOT NULL DEFAULT '',
        creator                         TEXT NOT NULL,
        created_ms                      INTEGER NOT NULL,
        state                           TEXT NOT NULL,
        delete_ms                       INTEGER,
        deletion_protection             INTEGER NOT NULL DEFAULT 0,
        deletion_protection_description TEXT NOT NULL DEFAULT '',
        auto_rotation                   INTEGER NOT NULL DEFAULT 0,
        rotation_interval_s             INTEGER,
        primary_version                 TEXT,
        last_rotation_ms                INTEGER,
        next_rotation_ms                INTEGER,
        policy                          TEXT
    ) STRICT;
    CREATE INDEX keys_by_creation ON keys (created_ms, key_id);

    CREATE TABLE key_versions (
        key_id     TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
        version_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        -- the engine's stored form: sealed material (software) or object identifiers (HSM)
        material   BLOB NOT NULL,
        PRIMARY KEY (key_id, version_id)
    ) STRICT;

    CREATE TABLE aliases (
        alias_name TEXT PRIMARY KEY,
        key_id     TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX aliases_by_key ON aliases (key_id);

    CREATE TABLE tags (
        key_id    TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
        tag_key   TEXT NOT NULL,
        tag_value TEXT NOT NULL,
        PRIMARY KEY (key_id, tag_key)
    ) STRICT;
    "#,
    // 2: PKCS#11 tokens, one per KMS instance; PINs only as Argon2id hashes.
    r#"
    CREATE TABLE tokens (
        instance_id   TEXT PRIMARY KEY,
        label         TEXT NOT NULL,
        so_pin_hash   TEXT,
        user_pin_hash TEXT,
        updated_ms    INTEGER NOT NULL
    ) STRICT;
    "#,
    // 3: KMS instances; the default software instance exists from the start.
    r#"
    CREATE TABLE instances (
        instance_id      TEXT PRIMARY KEY,
        product_version  TEXT NOT NULL,
        description      TEXT NOT NULL DEFAULT '',
        hsm_module_path  TEXT,
        hsm_token_label  TEXT,
        hsm_token_serial TEXT,
        hsm_pin_source   TEXT,
        created_ms       INTEGER NOT NULL
    ) STRICT;
    INSERT INTO instances (instance_id, product_version, description, created_ms)
        VALUES ('kst-default', 'software', 'the default software instance', 0);
    "#,
    // 4: who may do what (identity policies and their attachments; key policies live in
    // keys.policy) and the audit trail of every call.
    r#"
    CREATE TABLE policies (
        policy_name TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        document    TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE policy_attachments (
        principal   TEXT NOT NULL,
        policy_name TEXT NOT NULL REFERENCES policies (policy_name),
        attached_ms INTEGER NOT NULL,
        PRIMARY KEY (principal, policy_name)
    ) STRICT;
    CREATE INDEX attachments_by_policy ON policy_attachments (policy_name);
    CREATE TABLE audit (
        event_id   INTEGER PRIMARY KEY,
        time_ms    INTEGER NOT NULL,
        principal  TEXT NOT NULL,
        source_ip  TEXT,
        action     TEXT NOT NULL,
        resource   TEXT NOT NULL,
        key_id     TEXT,
        result     TEXT NOT NULL,
        error_code TEXT
    ) STRICT;
    CREATE INDEX audit_by_time ON audit (time_ms);
    CREATE INDEX audit_by_key ON audit (key_id, time_ms) WHERE key_id IS NOT NULL;
    CREATE INDEX audit_by_principal ON audit (principal, time_ms);
    "#,
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`CURRENT`]. Refuses a database written by a newer build.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > CURRENT {
            return Err(KmsError::Internal(format!(
                "the store has schema version {version}, newer than this build's {CURRENT}"
            )));
        }
        if version == CURRENT {
            return Ok(());
        }
        let index = usize::try_from(version).map_err(KmsError::internal)?;
        tx.execute_batch(MIGRATIONS[index])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}
