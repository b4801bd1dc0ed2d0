//! Rows of who may do what: identity policies, their attachments to principals, key policies
//! (a column of `keys`), and the audit trail.

use rusqlite::{Connection, OptionalExtension, params};

use super::{count, sql_offset};
use crate::error::Result;

/// An identity policy as stored.
#[derive(Debug, Clone)]
pub struct PolicyRecord {
    pub policy_name: String,
    pub description: String,
    pub document: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn policy_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PolicyRecord> {
    Ok(PolicyRecord {
        policy_name: row.get(0)?,
        description: row.get(1)?,
        document: row.get(2)?,
        created_ms: row.get(3)?,
        updated_ms: row.get(4)?,
    })
}

const POLICY_COLUMNS: &str = "policy_name, description, document, created_ms, updated_ms";

/// Inserts a policy; false when the name is taken.
pub fn insert_policy(conn: &Connection, p: &PolicyRecord) -> Result<bool> {
    let n = conn.execute(
        &format!("INSERT OR IGNORE INTO policies ({POLICY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
        params![p.policy_name, p.description, p.document, p.created_ms, p.updated_ms],
    )?;
    Ok(n == 1)
}

/// A policy by name.
pub fn get_policy(conn: &Connection, name: &str) -> Result<Option<PolicyRecord>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {POLICY_COLUMNS} FROM policies WHERE policy_name = ?1"))?
        .query_row([name], policy_from_row)
        .optional()?)
}

/// Replaces a policy's document; false when there is no such policy.
pub fn update_policy_document(conn: &Connection, name: &str, document: &str, now_ms: i64) -> Result<bool> {
    let n = conn.execute(
        "UPDATE policies SET document = ?2, updated_ms = ?3 WHERE policy_name = ?1",
        params![name, document, now_ms],
    )?;
    Ok(n == 1)
}

/// Deletes a policy; false when there is no such policy.
pub fn delete_policy(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM policies WHERE policy_name = ?1", [name])? == 1)
}

/// How many principals a policy is attached to.
pub fn attachment_count(conn: &Connection, name: &str) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM policy_attachments WHERE policy_name = ?1",
        [name],
        |r| r.get(0),
    )?;
    Ok(count(n))
}

/// A page of policies by name, and the total.
pub fn list_policies(conn: &Connection, offset: u64, limit: u32) -> Result<(Vec<PolicyRecord>, u64)> {
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM policies", [], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {POLICY_COLUMNS} FROM policies ORDER BY policy_name LIMIT ?1 OFFSET ?2"
        ))?
        .query_map(params![limit, sql_offset(offset)], policy_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, count(total)))
}

/// Attaches a policy to a principal (by ARN); false when it already was.
pub fn attach_policy(conn: &Connection, principal: &str, name: &str, now_ms: i64) -> Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO policy_attachments (principal, policy_name, attached_ms) VALUES (?1, ?2, ?3)",
        params![principal, name, now_ms],
    )?;
    Ok(n == 1)
}

/// Detaches a policy from a principal; false when it was not attached.
pub fn detach_policy(conn: &Connection, principal: &str, name: &str) -> Result<bool> {
    let n = conn.execute(
        "DELETE FROM policy_attachments WHERE principal = ?1 AND policy_name = ?2",
        params![principal, name],
    )?;
    Ok(n == 1)
}

/// The policies attached to a principal, by name.
pub fn policies_of(conn: &Connection, principal: &str) -> Result<Vec<PolicyRecord>> {
    let rows = conn
        .prepare_cached(
            "SELECT p.policy_name, p.description, p.document, p.created_ms, p.updated_ms \
             FROM policy_attachments a JOIN policies p ON p.policy_name = a.policy_name \
             WHERE a.principal = ?1 ORDER BY p.policy_name",
        )?
        .query_map([principal], policy_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Sets (or, with `None`, removes) a key's policy.
pub fn set_key_policy(conn: &Connection, key_id: &str, policy: Option<&str>) -> Result<bool> {
    let n = conn.execute("UPDATE keys SET policy = ?2 WHERE key_id = ?1", params![key_id, policy])?;
    Ok(n == 1)
}

/// One audit record as stored: no key material and no data, only who did what to which
/// resource and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub event_id: i64,
    pub time_ms: i64,
    pub principal: String,
    pub source_ip: Option<String>,
    pub action: String,
    pub resource: String,
    pub key_id: Option<String>,
    pub result: String,
    pub error_code: Option<String>,
    /// How many identical calls in a row (in one millisecond) the record stands for.
    pub count: u64,
}

/// The statement that appends one audit record (its `event_id` is assigned by SQLite).
pub const INSERT_AUDIT: &str = "INSERT INTO audit (time_ms, principal, source_ip, action, resource, key_id, \
     result, error_code, event_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// The statement that moves a key's last-use time forward (never back).
pub const MARK_KEY_USED: &str = "INSERT INTO key_last_used (key_id, time_ms) VALUES (?1, ?2) \
     ON CONFLICT (key_id) DO UPDATE SET time_ms = MAX(time_ms, excluded.time_ms)";

/// What to select from the audit trail; `None` matches anything.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub key_id: Option<String>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

/// A page of audit records, newest first, and the total that match.
pub fn query_audit(conn: &Connection, f: &AuditFilter, offset: u64, limit: u32) -> Result<(Vec<AuditRecord>, u64)> {
    // Only the filters given go into the statement, so that SQLite can use the index of the
    // one that selects (`?n IS NULL OR …` would make it scan the whole trail).
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
    let given = [
        ("key_id = ?", f.key_id.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
        ("principal = ?", f.principal.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
        ("action = ?", f.action.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
        ("time_ms >= ?", f.start_ms.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
        ("time_ms < ?", f.end_ms.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
    ];
    for (clause, value) in given {
        if let Some(value) = value {
            clauses.push(clause);
            args.push(value);
        }
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM audit {filter}"))?
        .query_row(args.as_slice(), |r| r.get(0))?;
    let page_offset = sql_offset(offset);
    args.push(&limit);
    args.push(&page_offset);
    let rows = conn
        .prepare_cached(&format!(
            "SELECT event_id, time_ms, principal, source_ip, action, resource, key_id, result, error_code, \
             event_count FROM audit {filter} ORDER BY time_ms DESC, event_id DESC LIMIT ? OFFSET ?"
        ))?
        .query_map(args.as_slice(), |row| {
            Ok(AuditRecord {
                event_id: row.get(0)?,
                time_ms: row.get(1)?,
                principal: row.get(2)?,
                source_ip: row.get(3)?,
                action: row.get(4)?,
                resource: row.get(5)?,
                key_id: row.get(6)?,
                result: row.get(7)?,
                error_code: row.get(8)?,
                count: count(row.get(9)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, count(total)))
}

/// When a key was last used for cryptography, as far as the stored trail tells (the audit writer
/// keeps `key_last_used` with every batch it stores).
pub fn last_used(conn: &Connection, key_id: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT time_ms FROM key_last_used WHERE key_id = ?1")?
        .query_row([key_id], |r| r.get(0))
        .optional()?)
}
