//! `tessera demo`: the walkthrough of the README. Every step is a real call on the store, and
//! every expectation is checked: the demo fails (non-zero exit) if Tessera misbehaves.

use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_core::api::*;
use kms_core::blob::EncryptionContext;
use kms_core::model::{KeySpec, KeyState, SigningAlgorithm, Tag};
use kms_core::{Kms, KmsError};
use sha2::{Digest, Sha256};

fn check(ok: bool, what: &str) -> Result<(), KmsError> {
    if ok {
        Ok(())
    } else {
        Err(KmsError::Internal(format!("demo check failed: {what}")))
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Runs the walkthrough, narrating to `out`.
pub fn run(kms: &Kms, out: &mut dyn Write) -> Result<(), KmsError> {
    let say = |out: &mut dyn Write, text: String| {
        // The narration is best effort: a closed stdout must not fail the walkthrough.
        let _ = writeln!(out, "{text}");
    };
    let run_tag = kms.generate_random(&GenerateRandomRequest { length: Some(4) })?;
    let suffix: String = run_tag.random.expose().iter().map(|b| format!("{b:02x}")).collect();
    let demo_tag = vec![Tag::new("Purpose", "demo")];
    say(
        out,
        format!(
            "Tessera demo on store {} (account {})\n",
            kms.store_dir().display(),
            kms.account_id()
        ),
    );

    // 1. Keys of several specs.
    let app_alias = format!("alias/demo-app-{suffix}");
    let aes = kms
        .create_key(&CreateKeyRequest {
            key_spec: Some(KeySpec::Aes256),
            description: Some("demo: envelope encryption".into()),
            enable_automatic_rotation: Some(true),
            rotation_interval: Some("30d".into()),
            alias: Some(app_alias.clone()),
            tags: demo_tag.clone(),
            ..Default::default()
        })?
        .key_metadata;
    let mut keys = vec![aes.key_id.clone()];
    say(
        out,
        format!(
            "1. CreateKey Aliyun_AES_256  {} as {app_alias}, rotates every {}",
            aes.key_id,
            aes.rotation_interval.as_deref().unwrap_or("-")
        ),
    );
    for (spec, usage) in [(KeySpec::Sm4, None), (KeySpec::EcP256, None), (KeySpec::Rsa2048, None)] {
        let key = kms
            .create_key(&CreateKeyRequest {
                key_spec: Some(spec),
                key_usage: usage,
                tags: demo_tag.clone(),
                ..Default::default()
            })?
            .key_metadata;
        say(
            out,
            format!(
                "   CreateKey {spec:<15} {} ({})",
                key.key_id,
                key.key_usage.map(|u| u.as_str()).unwrap_or("-")
            ),
        );
        keys.push(key.key_id);
    }
    let (sm4, ec, rsa) = (keys[1].clone(), keys[2].clone(), keys[3].clone());

    // 2. Encrypt with an encryption context.
    let context: EncryptionContext = [
        ("tenant".to_owned(), "acme".to_owned()),
        ("purpose".to_owned(), "demo".to_owned()),
    ]
    .into();
    let secret = b"the launch code is 0000".as_slice();
    let first = kms.encrypt(&EncryptRequest {
        key_id: app_alias.clone(),
        plaintext: secret.into(),
        encryption_context: context.clone(),
    })?;
    say(
        out,
        format!(
            "\n2. Encrypt via {app_alias} with context {{tenant: acme, purpose: demo}}: {} bytes of blob, version {}",
            first.ciphertext_blob.0.len(),
            short(&first.key_version_id)
        ),
    );
    let wrong_context: EncryptionContext = [("tenant".to_owned(), "evil".to_owned())].into();
    let refused = kms.decrypt(&DecryptRequest {
        ciphertext_blob: first.ciphertext_blob.clone(),
        encryption_context: wrong_context,
    });
    check(
        matches!(&refused, Err(e) if e.code() == "InvalidCiphertext"),
        "a wrong context must be refused",
    )?;
    say(
        out,
        "   Decrypt with another context is refused: InvalidCiphertext".into(),
    );

    // 3. Rotate, then decrypt the old ciphertext.
    let rotated = kms
        .create_key_version(&KeyIdRequest::new(app_alias.clone()))?
        .key_version;
    let second = kms.encrypt(&EncryptRequest {
        key_id: app_alias.clone(),
        plaintext: secret.into(),
        encryption_context: context.clone(),
    })?;
    check(
        second.key_version_id == rotated.key_version_id,
        "Encrypt uses the new primary version",
    )?;
    say(
        out,
        format!(
            "\n3. CreateKeyVersion: primary is now {}; new ciphertext uses it",
            short(&rotated.key_version_id)
        ),
    );
    let old = kms.decrypt(&DecryptRequest {
        ciphertext_blob: first.ciphertext_blob.clone(),
        encryption_context: context.clone(),
    })?;
    check(
        old.plaintext.expose() == secret && old.key_version_id == first.key_version_id,
        "old ciphertext decrypts",
    )?;
    say(
        out,
        format!(
            "   Decrypt of the ciphertext made before the rotation: \"{}\" (version {})",
            String::from_utf8_lossy(old.plaintext.expose()),
            short(&old.key_version_id)
        ),
    );

    // 4. Envelope encryption with a data key, re-encryption under SM4.
    let data_key = kms.generate_data_key(&GenerateDataKeyRequest {
        key_id: app_alias.clone(),
        encryption_context: context.clone(),
        ..Default::default()
    })?;
    let moved = kms.re_encrypt(&ReEncryptRequest {
        ciphertext_blob: data_key.ciphertext_blob.clone(),
        destination_key_id: sm4.clone(),
        source_encryption_context: context.clone(),
        destination_encryption_context: context.clone(),
    })?;
    let unwrapped = kms.decrypt(&DecryptRequest {
        ciphertext_blob: moved.ciphertext_blob,
        encryption_context: context,
    })?;
    check(
        unwrapped.plaintext.expose() == data_key.plaintext.expose(),
        "the re-encrypted data key is the same",
    )?;
    say(
        out,
        format!(
            "\n4. GenerateDataKey: a {}-byte AES key, wrapped; ReEncrypt moves it under the SM4 key {}",
            data_key.plaintext.expose().len(),
            short(&sm4)
        ),
    );

    // 5. Sign and verify: the caller hashes, Tessera signs the digest.
    let message = b"release v1.0 tarball";
    let digest = Sha256::digest(message).to_vec();
    say(out, "\n5. AsymmetricSign over SHA-256(\"release v1.0 tarball\")".into());
    for (key_id, alg) in [
        (&ec, SigningAlgorithm::EcdsaSha256),
        (&rsa, SigningAlgorithm::RsaPssSha256),
    ] {
        let sig = kms.asymmetric_sign(&AsymmetricSignRequest {
            key_id: key_id.clone(),
            key_version_id: None,
            algorithm: Some(alg),
            digest: digest.clone().into(),
        })?;
        let verify = |value: Bytes| {
            kms.asymmetric_verify(&AsymmetricVerifyRequest {
                key_id: key_id.clone(),
                key_version_id: None,
                algorithm: Some(alg),
                digest: digest.clone().into(),
                value,
            })
        };
        check(verify(sig.value.clone())?.value, "the signature verifies")?;
        let mut forged = sig.value.0.clone();
        if let Some(b) = forged.last_mut() {
            *b ^= 1;
        }
        check(!verify(forged.into())?.value, "an altered signature does not verify")?;
        say(
            out,
            format!(
                "   {alg:<16} {}…  verifies; one flipped bit does not",
                &B64.encode(&sig.value.0)[..24]
            ),
        );
    }
    let pem = kms
        .get_public_key(&GetPublicKeyRequest {
            key_id: ec.clone(),
            key_version_id: None,
        })?
        .public_key;
    say(
        out,
        format!(
            "   GetPublicKey gives PEM for openssl: {}",
            pem.lines().nth(1).unwrap_or_default()
        ),
    );

    // 6. Schedule a deletion, see the key refused, cancel it.
    kms.schedule_key_deletion(&ScheduleKeyDeletionRequest {
        key_id: sm4.clone(),
        pending_window_in_days: Some(7),
    })?;
    let pending = kms.describe_key(&KeyIdRequest::new(sm4.clone()))?.key_metadata;
    check(
        pending.key_state == Some(KeyState::PendingDeletion),
        "the key is pending deletion",
    )?;
    let blocked = kms.encrypt(&EncryptRequest {
        key_id: sm4.clone(),
        plaintext: secret.into(),
        encryption_context: Default::default(),
    });
    check(
        matches!(&blocked, Err(e) if e.code() == "Rejected.PendingDeletion"),
        "a key pending deletion is refused",
    )?;
    say(
        out,
        format!(
            "\n6. ScheduleKeyDeletion (7 days): the SM4 key is PendingDeletion until {}; Encrypt gives Rejected.PendingDeletion",
            pending.delete_date.unwrap_or_default()
        ),
    );
    kms.cancel_key_deletion(&KeyIdRequest::new(sm4.clone()))?;
    let back = kms.describe_key(&KeyIdRequest::new(sm4.clone()))?.key_metadata;
    check(
        back.key_state == Some(KeyState::Disabled),
        "a cancelled deletion leaves the key Disabled",
    )?;
    kms.enable_key(&KeyIdRequest::new(sm4))?;
    say(
        out,
        "   CancelKeyDeletion: the key is Disabled again; EnableKey makes it usable".into(),
    );

    // Leave the store tidy: the demo's keys go away after the shortest window.
    for key_id in &keys {
        kms.schedule_key_deletion(&ScheduleKeyDeletionRequest {
            key_id: key_id.clone(),
            pending_window_in_days: Some(7),
        })?;
    }
    say(
        out,
        format!(
            "\nDone. The demo's {} keys (tag Purpose=demo) are scheduled for deletion in 7 days.",
            keys.len()
        ),
    );
    Ok(())
}
