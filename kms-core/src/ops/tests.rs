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
    let key_id = kms
        .create_key(&CreateKeyRequest::default())
        .expect("create")
        .key_metadata
        .key_id;
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
