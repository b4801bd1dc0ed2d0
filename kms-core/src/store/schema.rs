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
    // 5: a counter that every metadata write moves (so that the audit writer's commits, which
    // move SQLite's data_version too, do not drop every process's caches); runs of identical
    // calls in one millisecond as one audit row with a count; each key's last use, kept by the
    // audit writer (DescribeKey reads one row instead of scanning the key's trail).
    r#"
    CREATE TABLE metadata_changes (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        counter INTEGER NOT NULL
    ) STRICT;
    INSERT INTO metadata_changes (id, counter) VALUES (1, 0);
    ALTER TABLE audit ADD COLUMN event_count INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE key_last_used (
        key_id  TEXT PRIMARY KEY,
        time_ms INTEGER NOT NULL
    ) STRICT;
    INSERT INTO key_last_used (key_id, time_ms)
        SELECT key_id, MAX(time_ms) FROM audit
        WHERE key_id IS NOT NULL AND result = 'Success' AND action IN ('Encrypt', 'Decrypt', 'ReEncrypt', 'GenerateDataKey',
            'GenerateDataKeyWithoutPlaintext', 'AsymmetricSign', 'AsymmetricVerify', 'AsymmetricEncrypt',
            'AsymmetricDecrypt')
        GROUP BY key_id;
    "#,
    // 6: the metadata change counter moves by triggers on every metadata table, so that any
    // writer moves it — a process of an older build still running against a migrated store too.
    // (The audit trail and key_last_used have none: their writes must not drop caches.)
    r#"
    CREATE TRIGGER meta_changed_i AFTER INSERT ON meta
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER meta_changed_u AFTER UPDATE ON meta
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER meta_changed_d AFTER DELETE ON meta
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER keys_changed_i AFTER INSERT ON keys
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER keys_changed_u AFTER UPDATE ON keys
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER keys_changed_d AFTER DELETE ON keys
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER key_versions_changed_i AFTER INSERT ON key_versions
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER key_versions_changed_u AFTER UPDATE ON key_versions
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER key_versions_changed_d AFTER DELETE ON key_versions
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER aliases_changed_i AFTER INSERT ON aliases
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER aliases_changed_u AFTER UPDATE ON aliases
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER aliases_changed_d AFTER DELETE ON aliases
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER tags_changed_i AFTER INSERT ON tags
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER tags_changed_u AFTER UPDATE ON tags
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER tags_changed_d AFTER DELETE ON tags
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER tokens_changed_i AFTER INSERT ON tokens
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER tokens_changed_u AFTER UPDATE ON tokens
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER tokens_changed_d AFTER DELETE ON tokens
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER instances_changed_i AFTER INSERT ON instances
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER instances_changed_u AFTER UPDATE ON instances
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER instances_changed_d AFTER DELETE ON instances
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER policies_changed_i AFTER INSERT ON policies
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER policies_changed_u AFTER UPDATE ON policies
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER policies_changed_d AFTER DELETE ON policies
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER policy_attachments_changed_i AFTER INSERT ON policy_attachments
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER policy_attachments_changed_u AFTER UPDATE ON policy_attachments
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    CREATE TRIGGER policy_attachments_changed_d AFTER DELETE ON policy_attachments
        BEGIN UPDATE metadata_changes SET counter = counter + 1 WHERE id = 1; END;
    "#,
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`CURRENT`]. Refuses a database written by a newer build.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, CURRENT)
}

/// Brings the database up to schema version `target` (tests stop short of [`CURRENT`]).
fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > CURRENT {
            return Err(KmsError::Internal(format!(
                "the store has schema version {version}, newer than this build's {CURRENT}"
            )));
        }
        if version >= target {
            return Ok(());
        }
        let index = usize::try_from(version).map_err(KmsError::internal)?;
        tx.execute_batch(MIGRATIONS[index])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store written before migration 5 keeps its trail, and its keys' last use is carried
    /// over from it: only successful calls of the key-use actions count.
    #[test]
    fn migration_5_counts_old_events_once_and_carries_last_use_over() {
        let mut conn = Connection::open_in_memory().expect("sqlite");
        migrate_to(&mut conn, 4).expect("up to 4");
        let insert = |time: i64, action: &str, key: Option<&str>, result: &str| {
            conn.execute(
                "INSERT INTO audit (time_ms, principal, action, resource, key_id, result) \
                 VALUES (?1, 'acs:ram::1:root', ?2, '*', ?3, ?4)",
                rusqlite::params![time, action, key, result],
            )
            .expect("an old event");
        };
        insert(10, "Encrypt", Some("k1"), "Success");
        insert(20, "AsymmetricSign", Some("k1"), "Success");
        insert(30, "Encrypt", Some("k1"), "Failure");
        insert(40, "DescribeKey", Some("k1"), "Success");
        insert(15, "Decrypt", Some("k2"), "Success");
        insert(50, "DescribeKey", Some("k3"), "Success");
        migrate(&mut conn).expect("up to the current schema");
        let last_use: Vec<(String, i64)> = conn
            .prepare("SELECT key_id, time_ms FROM key_last_used ORDER BY key_id")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("key_last_used");
        assert_eq!(last_use, [("k1".to_owned(), 20), ("k2".to_owned(), 15)]);
        let counts: Vec<i64> = conn
            .prepare("SELECT event_count FROM audit ORDER BY event_id")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("event counts");
        assert_eq!(counts, [1; 6]);
        let changes: i64 = conn
            .query_row("SELECT counter FROM metadata_changes", [], |r| r.get(0))
            .expect("the metadata change counter");
        assert_eq!(changes, 0);
    }

    /// Migration 5 names the key-use actions in SQL; they must be the audit writer's.
    #[test]
    fn migration_5_names_every_key_use_action() {
        for action in crate::ops::KEY_USE_ACTIONS {
            assert!(MIGRATIONS[4].contains(&format!("'{action}'")), "{action}");
        }
    }
}
