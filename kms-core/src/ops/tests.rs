//! Facade tests on a real SQLite store in a temporary directory, with an injected clock.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::api::*;
use crate::blob;
use crate::clock::ManualClock;
use crate::model::*;

fn open() -> (tempfile::TempDir, Kms, Arc<ManualClock>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::starting_now());
    let kms = Kms::open_with(
        dir.path(),
        KmsOptions {
            clock: clock.clone(),
            ..KmsOptions::default()
        },
    )
    .expect("open");
    (dir, kms, clock)
}

fn ctx(pairs: &[(&str, &str)]) -> blob::EncryptionContext {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn encrypt_rotate_decrypt_old_ciphertext() {
    let (_dir, kms, clock) = open();
    let key = kms
        .create_key(&CreateKeyRequest {
            enable_automatic_rotation: Some(true),
            rotation_interval: Some("7d".into()),
            alias: Some("alias/app".into()),
            ..Default::default()
        })
        .expect("create")
        .key_metadata;
    assert_eq!(key.key_state, Some(KeyState::Enabled));
    assert_eq!(key.automatic_rotation, "Enabled");
    let c = ctx(&[("tenant", "a")]);
    let old = kms
        .encrypt(&EncryptRequest {
            key_id: "alias/app".into(),
            plaintext: b"v1".as_slice().into(),
            encryption_context: c.clone(),
        })
        .expect("encrypt");
    assert_eq!(old.key_id, key.key_id);

    clock.advance(Duration::from_secs(7 * 86_400 + 1));
    let new = kms
        .encrypt(&EncryptRequest {
            key_id: key.key_id.clone(),
            plaintext: b"v2".as_slice().into(),
            encryption_context: c.clone(),
        })
        .expect("encrypt after rotation");
    assert_ne!(
        new.key_version_id, old.key_version_id,
        "the interval passed, so the key rotated"
    );
    let versions = kms
        .list_key_versions(&KeyPageRequest {
            key_id: key.key_id.clone(),
            ..Default::default()
        })
        .expect("list");
    assert_eq!(versions.total_count, 2);

    let back = kms
        .decrypt(&DecryptRequest {
            ciphertext_blob: old.ciphertext_blob.clone(),
            encryption_context: c,
        })
        .expect("decrypt old");
    assert_eq!(back.plaintext.expose(), b"v1");
    assert_eq!(back.key_version_id, old.key_version_id);
    let wrong = kms.decrypt(&DecryptRequest {
        ciphertext_blob: old.ciphertext_blob,
        encryption_context: ctx(&[("tenant", "b")]),
    });
    assert_eq!(wrong.expect_err("other context").code(), "InvalidCiphertext");
}

#[test]
fn one_kms_serves_many_threads_while_keys_rotate() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Kms>();
    let (_dir, kms, _clock) = open();
    let kms = Arc::new(kms);
    let key_id = new_key(&kms);
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (kms, key_id) = (Arc::clone(&kms), key_id.clone());
            std::thread::spawn(move || {
                for i in 0..200 {
                    let text = format!("thread {t} message {i}");
                    let c = ctx(&[("t", &t.to_string())]);
                    let sealed = kms
                        .encrypt(&EncryptRequest {
                            key_id: key_id.clone(),
                            plaintext: text.as_bytes().into(),
                            encryption_context: c.clone(),
                        })
                        .expect("encrypt");
                    let back = kms
                        .decrypt(&DecryptRequest {
                            ciphertext_blob: sealed.ciphertext_blob,
                            encryption_context: c,
                        })
                        .expect("decrypt");
                    assert_eq!(back.plaintext.expose(), text.as_bytes());
                }
            })
        })
        .collect();
    for _ in 0..10 {
        kms.create_key_version(&KeyIdRequest::new(key_id.clone()))
            .expect("rotate");
    }
    for w in workers {
        w.join().expect("worker");
    }
    let versions = kms
        .list_key_versions(&KeyPageRequest {
            key_id,
            ..Default::default()
        })
        .expect("versions");
    assert_eq!(versions.total_count, 11);
}

/// A new key of the default spec.
fn new_key(kms: &Kms) -> String {
    kms.create_key(&CreateKeyRequest::default())
        .expect("create")
        .key_metadata
        .key_id
}

fn encrypt_with(kms: &Kms, key_id: &str) -> Result<EncryptResponse> {
    kms.encrypt(&EncryptRequest {
        key_id: key_id.into(),
        plaintext: b"audited".as_slice().into(),
        encryption_context: blob::EncryptionContext::new(),
    })
}

/// The stored trail of one action, oldest first: (key, result, count).
fn trail(kms: &Kms, action: &str) -> Vec<(Option<String>, String, u64)> {
    let mut events = kms
        .lookup_events(&LookupEventsRequest {
            action: Some(action.into()),
            page_size: Some(100),
            ..Default::default()
        })
        .expect("LookupEvents")
        .events
        .event;
    events.sort_by_key(|e| e.event_id);
    events.into_iter().map(|e| (e.key_id, e.result, e.count)).collect()
}

#[test]
fn identical_calls_in_one_millisecond_are_one_event_with_a_count() {
    let (_dir, kms, clock) = open();
    let a = new_key(&kms);
    let b = new_key(&kms);
    let ok = |k: &str| (Some(k.to_owned()), "Success".to_owned());
    // The clock stands still: 50 calls on A are one event, then B, then A again (the order of
    // calls is kept: A's second run is an event of its own).
    for _ in 0..50 {
        encrypt_with(&kms, &a).expect("encrypt A");
    }
    encrypt_with(&kms, &b).expect("encrypt B");
    encrypt_with(&kms, &a).expect("encrypt A");
    encrypt_with(&kms, &a).expect("encrypt A");
    // The same call a millisecond later is a new event.
    clock.advance(Duration::from_millis(1));
    encrypt_with(&kms, &a).expect("encrypt A");
    // Failures run-length too, and apart from successes.
    for _ in 0..3 {
        let e = encrypt_with(&kms, "alias/missing").expect_err("no such alias");
        assert_eq!(e.code(), "Forbidden.AliasNotFound");
    }
    let with = |(k, r): (Option<String>, String), n| (k, r, n);
    assert_eq!(
        trail(&kms, "Encrypt"),
        vec![
            with(ok(&a), 50),
            with(ok(&b), 1),
            with(ok(&a), 2),
            with(ok(&a), 1),
            (None, "Failure".to_owned(), 3),
        ]
    );
}

/// Every stored event of one action, oldest first (all pages).
fn whole_trail(kms: &Kms, action: &str) -> Vec<crate::api::AuditEvent> {
    let mut events = Vec::new();
    for page in 1.. {
        let got = kms
            .lookup_events(&LookupEventsRequest {
                action: Some(action.into()),
                page_number: Some(page),
                page_size: Some(100),
                ..Default::default()
            })
            .expect("LookupEvents");
        let done = got.events.event.is_empty();
        events.extend(got.events.event);
        if done || events.len() as u64 >= got.total_count {
            break;
        }
    }
    events.sort_by_key(|e| e.event_id);
    events
}

#[test]
fn calls_of_many_threads_are_all_in_the_trail_each_threads_in_its_order() {
    // More threads than the queue has lanes (4 to 2 x CPUs), so that threads share lanes too;
    // the clock stands still, so every call is in the same millisecond.
    const THREADS: usize = 12;
    const ROUNDS: usize = 150;
    let (_dir, kms, _clock) = open();
    let keys: Vec<(String, String)> = (0..THREADS).map(|_| (new_key(&kms), new_key(&kms))).collect();
    std::thread::scope(|s| {
        for (a, b) in &keys {
            let kms = &kms;
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    encrypt_with(kms, a).expect("encrypt A");
                    encrypt_with(kms, b).expect("encrypt B");
                }
            });
        }
    });
    // Each key's last use is known at once (before any flush), whichever lane its calls went through.
    for (a, _) in &keys {
        let described = kms.describe_key(&KeyIdRequest { key_id: a.clone() }).expect("describe");
        assert!(described.key_metadata.last_used_time.is_some(), "{described:?}");
    }
    let trail = whole_trail(&kms, "Encrypt");
    let calls: u64 = trail.iter().map(|e| e.count).sum();
    assert_eq!(calls, (THREADS * ROUNDS * 2) as u64, "every call is in the trail");
    for (a, b) in &keys {
        // A thread's calls alternate between its two keys, so none of them merge, and their
        // order is kept whatever the other threads did meanwhile.
        let mine: Vec<(&str, u64)> = trail
            .iter()
            .filter_map(|e| e.key_id.as_deref().filter(|k| *k == a || *k == b).map(|k| (k, e.count)))
            .collect();
        let expected: Vec<(&str, u64)> = (0..ROUNDS).flat_map(|_| [(a.as_str(), 1), (b.as_str(), 1)]).collect();
        assert_eq!(mine, expected);
    }
}

#[test]
fn audit_batches_keep_the_metadata_cache_and_metadata_writes_drop_it() {
    let (dir, kms, _clock) = open();
    let key = new_key(&kms);
    encrypt_with(&kms, &key).expect("warm the caches");
    let settled = || {
        std::thread::sleep(kms.poll_interval * 2);
        encrypt_with(&kms, &key).expect("encrypt");
        kms.meta.read().epoch
    };
    let epoch = settled();
    // Our audit writer commits on its own connection, which moves SQLite's data version.
    for _ in 0..5 {
        encrypt_with(&kms, &key).expect("encrypt");
        kms.flush_audit().expect("flush");
        assert_eq!(settled(), epoch, "an audit batch dropped the metadata cache");
    }
    // Another connection's metadata write does drop it (a second Kms stands for another
    // process), and the change is seen.
    let other = Kms::open(dir.path()).expect("a second Kms on the store");
    other
        .update_key_description(&UpdateKeyDescriptionRequest {
            key_id: key.clone(),
            description: "changed elsewhere".into(),
        })
        .expect("describe elsewhere");
    assert!(settled() > epoch, "another connection's write left the cache in place");
    let described = kms.describe_key(&KeyIdRequest::new(key.clone())).expect("describe");
    assert_eq!(described.key_metadata.description, "changed elsewhere");
}

#[test]
fn last_used_time_is_immediate_here_and_reaches_other_processes_through_the_store() {
    let (dir, kms, clock) = open();
    let key = new_key(&kms);
    let other = Kms::open(dir.path()).expect("a second Kms on the store");
    let last_used = |k: &Kms| {
        k.describe_key(&KeyIdRequest::new(key.clone()))
            .expect("describe")
            .key_metadata
            .last_used_time
    };
    assert_eq!(last_used(&kms), None);
    encrypt_with(&kms, &key).expect("encrypt");
    let used = crate::clock::format_time(clock.now_ms());
    // Here at once, before the writer stored anything.
    assert_eq!(last_used(&kms), Some(used.clone()));
    // There once stored.
    kms.flush_audit().expect("flush");
    assert_eq!(last_used(&other), Some(used.clone()));
    // A refused or failed call is no use; a later use moves the time on, never back.
    clock.advance(Duration::from_secs(60));
    kms.disable_key(&KeyIdRequest::new(key.clone())).expect("disable");
    encrypt_with(&kms, &key).expect_err("a disabled key");
    kms.flush_audit().expect("flush");
    assert_eq!(last_used(&kms), Some(used.clone()));
    assert_eq!(last_used(&other), Some(used));
}

/// A key's access (its policy and tags) built from a record read before another process changed
/// the policy must not be cached as current: audit batches no longer drop the cache, so nothing
/// would replace it until the next metadata write. (Found in review; it failed before the fix.)
#[test]
fn an_access_built_from_a_record_older_than_the_cache_is_not_cached() {
    let (dir, kms, _clock) = open();
    let key = new_key(&kms);
    encrypt_with(&kms, &key).expect("warm the caches");
    std::thread::sleep(kms.poll_interval * 2);
    // A thread of this process resolves the key (no policy yet)…
    let stale = kms.resolve(&key).expect("resolve");
    // …another process denies Encrypt to everyone…
    let other = Kms::open(dir.path()).expect("a second Kms on the store");
    let deny = serde_json::json!({
        "Version": "1",
        "Statement": [{"Effect": "Deny", "Principal": {"RAM": ["*"]}, "Action": ["kms:Encrypt"], "Resource": ["*"]}]
    })
    .to_string();
    other
        .set_key_policy(&SetKeyPolicyRequest {
            key_id: key.clone(),
            policy: deny,
        })
        .expect("deny elsewhere");
    // …another thread polls and reloads…
    std::thread::sleep(kms.poll_interval * 2);
    kms.sync().expect("sync");
    // …and the first thread builds the key's access from its older record.
    kms.key_access(&stale).expect("access");
    // Every call that starts afterwards sees the deny, across audit batches.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(30));
        kms.flush_audit().expect("flush");
        let refused = encrypt_with(&kms, &key).expect_err("the deny committed elsewhere");
        assert_eq!(refused.code(), "Forbidden.NoPermission");
    }
}

/// Any writer moves the metadata change counter (triggers), not only this build's `Store::write`:
/// a process of an older build, still running against a migrated store, writes plain SQL.
#[test]
fn a_metadata_row_changed_by_plain_sql_is_seen() {
    let (dir, kms, _clock) = open();
    let key = new_key(&kms);
    let describe = || {
        kms.describe_key(&KeyIdRequest::new(key.clone()))
            .expect("describe")
            .key_metadata
    };
    assert_eq!(describe().description, "");
    let raw = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE)).expect("a plain connection");
    raw.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    raw.execute(
        "UPDATE keys SET description = 'written by an older build' WHERE key_id = ?1",
        [&key],
    )
    .expect("a plain UPDATE");
    std::thread::sleep(kms.poll_interval * 2);
    assert_eq!(describe().description, "written by an older build");
    // The audit trail's own tables move nothing.
    let before = kms.store.metadata_changes().expect("counter");
    raw.execute(
        "INSERT INTO key_last_used (key_id, time_ms) VALUES (?1, 1) ON CONFLICT (key_id) DO UPDATE SET time_ms = 1",
        [&key],
    )
    .expect("a key_last_used row");
    assert_eq!(kms.store.metadata_changes().expect("counter"), before);
}
