//! Round trips through the `Kms` facade on a real store in a temporary directory: every key spec
//! with every algorithm it offers, the errors of a wrong algorithm or digest, and GetPublicKey's
//! PEM checked against a signature and a ciphertext made by the key.
//!
//! RSA key generation is slow (seconds for 3072 and 4096 bits even optimised), so each RSA test
//! makes its two keys (SIGN/VERIFY and ENCRYPT/DECRYPT) once and runs every check on them.

use base64::Engine as _;
use kms_core::api::*;
use kms_core::blob::EncryptionContext;
use kms_core::engine::SoftwareEngine;
use kms_core::model::{AsymmetricAlgorithm, DataKeySpec, KeySpec, KeyUsage, SigningAlgorithm};
use kms_core::{Kms, KmsError};
use sha2::{Digest, Sha256};

fn open() -> (tempfile::TempDir, Kms) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kms = Kms::open(dir.path()).expect("the store opens");
    (dir, kms)
}

fn create(kms: &Kms, spec: KeySpec, usage: KeyUsage) -> String {
    let meta = kms
        .create_key(&CreateKeyRequest {
            key_spec: Some(spec),
            key_usage: Some(usage),
            ..Default::default()
        })
        .expect("the key is created")
        .key_metadata;
    assert_eq!(meta.key_spec, Some(spec));
    assert_eq!(meta.key_usage, Some(usage));
    meta.key_id
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sha256(msg: &[u8]) -> Vec<u8> {
    Sha256::digest(msg).to_vec()
}

/// The error code of a call that must fail.
fn code<T: std::fmt::Debug>(result: Result<T, KmsError>) -> &'static str {
    result.expect_err("the call must fail").code()
}

fn assert_unsupported<T: std::fmt::Debug>(result: Result<T, KmsError>, what: &str) {
    let code = code(result);
    assert!(code.starts_with("Unsupported"), "{what}: got {code}");
}

/// The DER body of a `-----BEGIN PUBLIC KEY-----` PEM.
fn pem_body(pem: &str) -> Vec<u8> {
    let lines: Vec<&str> = pem.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.first(), Some(&"-----BEGIN PUBLIC KEY-----"), "PEM header");
    assert_eq!(lines.last(), Some(&"-----END PUBLIC KEY-----"), "PEM footer");
    let body: String = lines[1..lines.len() - 1].concat();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("the PEM body is base64")
}

fn public_key_der(kms: &Kms, key_id: &str) -> Vec<u8> {
    let answer = kms
        .get_public_key(&GetPublicKeyRequest {
            key_id: key_id.into(),
            key_version_id: None,
        })
        .expect("GetPublicKey");
    assert_eq!(answer.key_id, key_id);
    pem_body(&answer.public_key)
}

fn sign(kms: &Kms, key_id: &str, alg: SigningAlgorithm, digest: &[u8]) -> Result<Vec<u8>, KmsError> {
    kms.asymmetric_sign(&AsymmetricSignRequest {
        key_id: key_id.into(),
        key_version_id: None,
        algorithm: Some(alg),
        digest: digest.into(),
    })
    .map(|r| r.value.0)
}

fn verify(kms: &Kms, key_id: &str, alg: SigningAlgorithm, digest: &[u8], sig: &[u8]) -> Result<bool, KmsError> {
    kms.asymmetric_verify(&AsymmetricVerifyRequest {
        key_id: key_id.into(),
        key_version_id: None,
        algorithm: Some(alg),
        digest: digest.into(),
        value: sig.into(),
    })
    .map(|r| r.value)
}

fn asym_encrypt(kms: &Kms, key_id: &str, alg: AsymmetricAlgorithm, pt: &[u8]) -> Result<Vec<u8>, KmsError> {
    kms.asymmetric_encrypt(&AsymmetricEncryptRequest {
        key_id: key_id.into(),
        key_version_id: None,
        algorithm: Some(alg),
        plaintext: pt.into(),
    })
    .map(|r| r.ciphertext_blob.0)
}

fn asym_decrypt(kms: &Kms, key_id: &str, alg: AsymmetricAlgorithm, ct: &[u8]) -> Result<Vec<u8>, KmsError> {
    kms.asymmetric_decrypt(&AsymmetricDecryptRequest {
        key_id: key_id.into(),
        key_version_id: None,
        algorithm: Some(alg),
        ciphertext_blob: ct.into(),
    })
    .map(|r| r.plaintext.expose().to_vec())
}

/// Every check of a SIGN/VERIFY key and one of its algorithms.
fn check_signing(kms: &Kms, spec: KeySpec, key_id: &str, alg: SigningAlgorithm) {
    let what = format!("{spec} {alg}");
    let digest = sha256(format!("message for {what}").as_bytes());
    let other = sha256(b"another message");

    let sig = sign(kms, key_id, alg, &digest).expect("AsymmetricSign");
    assert!(
        verify(kms, key_id, alg, &digest, &sig).expect("verify"),
        "{what}: the signature verifies"
    );
    assert!(
        !verify(kms, key_id, alg, &other, &sig).expect("verify"),
        "{what}: the signature does not verify over another digest"
    );
    let mut tampered = sig.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    assert!(
        !verify(kms, key_id, alg, &digest, &tampered).expect("verify"),
        "{what}: a modified signature does not verify"
    );

    // A 31-byte digest is a parameter error, for signing and for verifying.
    assert_eq!(
        code(sign(kms, key_id, alg, &digest[..31])),
        "InvalidParameter",
        "{what}: sign"
    );
    assert_eq!(
        code(verify(kms, key_id, alg, &digest[..31], &sig)),
        "InvalidParameter",
        "{what}: verify"
    );

    // GetPublicKey: the PEM loads in the engine and verifies what the key signed.
    let public = SoftwareEngine
        .load_public(spec, &public_key_der(kms, key_id))
        .expect("GetPublicKey's PEM loads as a public key of this spec");
    assert!(
        public.verify_digest(alg, &digest, &sig).expect("verify"),
        "{what}: with the PEM"
    );
    assert!(
        !public.verify_digest(alg, &other, &sig).expect("verify"),
        "{what}: with the PEM, over another digest"
    );
}

/// Algorithms a key of `spec` may not sign with: each is an `Unsupported.*` error.
fn check_wrong_signing_algorithms(kms: &Kms, spec: KeySpec, key_id: &str) {
    let digest = sha256(b"wrong algorithm");
    for &alg in SigningAlgorithm::ALL {
        if spec.signing_algorithms().contains(&alg) {
            continue;
        }
        assert_unsupported(sign(kms, key_id, alg, &digest), &format!("{spec} sign with {alg}"));
        assert_unsupported(
            verify(kms, key_id, alg, &digest, &[0x30, 0x00]),
            &format!("{spec} verify with {alg}"),
        );
    }
    // A SIGN/VERIFY key does not encrypt.
    let alg = AsymmetricAlgorithm::ALL[0];
    assert_unsupported(
        asym_encrypt(kms, key_id, alg, b"x"),
        &format!("{spec} SIGN key encrypts"),
    );
}

/// Every check of an ENCRYPT/DECRYPT asymmetric key and one of its algorithms.
fn check_encryption(kms: &Kms, spec: KeySpec, key_id: &str, alg: AsymmetricAlgorithm) {
    let what = format!("{spec} {alg}");
    let plaintext = format!("secret for {what}").into_bytes();
    let ct = asym_encrypt(kms, key_id, alg, &plaintext).expect("AsymmetricEncrypt");
    assert_ne!(ct, plaintext);
    assert_eq!(
        asym_decrypt(kms, key_id, alg, &ct).expect("AsymmetricDecrypt"),
        plaintext,
        "{what}"
    );

    let mut tampered = ct.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    assert!(
        asym_decrypt(kms, key_id, alg, &tampered).is_err(),
        "{what}: a modified ciphertext does not decrypt"
    );

    // GetPublicKey: what the PEM encrypts, the key decrypts.
    let public = SoftwareEngine
        .load_public(spec, &public_key_der(kms, key_id))
        .expect("GetPublicKey's PEM loads as a public key of this spec");
    let ct = public.encrypt(alg, &plaintext).expect("encrypt with the PEM");
    assert_eq!(
        asym_decrypt(kms, key_id, alg, &ct).expect("AsymmetricDecrypt"),
        plaintext,
        "{what}: a ciphertext made with the PEM"
    );
}

/// Algorithms a key of `spec` may not encrypt with: each is an `Unsupported.*` error.
fn check_wrong_encryption_algorithms(kms: &Kms, spec: KeySpec, key_id: &str) {
    for &alg in AsymmetricAlgorithm::ALL {
        if spec.asymmetric_algorithms().contains(&alg) {
            continue;
        }
        assert_unsupported(
            asym_encrypt(kms, key_id, alg, b"x"),
            &format!("{spec} encrypt with {alg}"),
        );
        assert_unsupported(
            asym_decrypt(kms, key_id, alg, &[0u8; 64]),
            &format!("{spec} decrypt with {alg}"),
        );
    }
    // An ENCRYPT/DECRYPT key does not sign.
    let digest = sha256(b"x");
    assert_unsupported(
        sign(kms, key_id, SigningAlgorithm::ALL[0], &digest),
        &format!("{spec} ENCRYPT key signs"),
    );
}

// ---------------------------------------------------------------- symmetric

const SYMMETRIC: [KeySpec; 4] = [KeySpec::Aes128, KeySpec::Aes192, KeySpec::Aes256, KeySpec::Sm4];

#[test]
fn symmetric_encrypt_decrypt_and_data_keys() {
    let (_dir, kms) = open();
    for spec in SYMMETRIC {
        let key_id = create(&kms, spec, KeyUsage::EncryptDecrypt);
        let context = ctx(&[("app", "roundtrip"), ("spec", spec.as_str())]);

        for plaintext in [b"".as_slice(), b"x", b"attack at dawn", &[0xa5; 6144]] {
            let sealed = kms
                .encrypt(&EncryptRequest {
                    key_id: key_id.clone(),
                    plaintext: plaintext.into(),
                    encryption_context: context.clone(),
                })
                .expect("Encrypt");
            assert_eq!(sealed.key_id, key_id);
            let opened = kms
                .decrypt(&DecryptRequest {
                    ciphertext_blob: sealed.ciphertext_blob.clone(),
                    encryption_context: context.clone(),
                })
                .expect("Decrypt");
            assert_eq!(opened.plaintext.expose(), plaintext, "{spec}");
            assert_eq!(opened.key_id, key_id);
            assert_eq!(opened.key_version_id, sealed.key_version_id);

            // Another context, or a modified blob, does not decrypt.
            let wrong_context = kms.decrypt(&DecryptRequest {
                ciphertext_blob: sealed.ciphertext_blob.clone(),
                encryption_context: ctx(&[("app", "other")]),
            });
            assert_eq!(code(wrong_context), "InvalidCiphertext", "{spec}: another context");
            let mut blob = sealed.ciphertext_blob.0.clone();
            let last = blob.len() - 1;
            blob[last] ^= 0x01;
            let tampered = kms.decrypt(&DecryptRequest {
                ciphertext_blob: blob.into(),
                encryption_context: context.clone(),
            });
            assert_eq!(code(tampered), "InvalidCiphertext", "{spec}: a modified blob");
        }

        // GenerateDataKey: the blob decrypts to the plaintext data key.
        let sizes = [
            (Some(DataKeySpec::Aes128), None, 16),
            (Some(DataKeySpec::Aes256), None, 32),
            (None, None, 32),
            (None, Some(1), 1),
            (None, Some(1024), 1024),
        ];
        for (data_key_spec, number_of_bytes, len) in sizes {
            let data_key = kms
                .generate_data_key(&GenerateDataKeyRequest {
                    key_id: key_id.clone(),
                    key_spec: data_key_spec,
                    number_of_bytes,
                    encryption_context: context.clone(),
                })
                .expect("GenerateDataKey");
            assert_eq!(data_key.plaintext.expose().len(), len, "{spec}");
            assert_eq!(data_key.key_id, key_id);
            let opened = kms
                .decrypt(&DecryptRequest {
                    ciphertext_blob: data_key.ciphertext_blob,
                    encryption_context: context.clone(),
                })
                .expect("Decrypt a data key");
            assert_eq!(opened.plaintext, data_key.plaintext, "{spec}: the data key comes back");
        }

        // GenerateDataKeyWithoutPlaintext: only the blob, which decrypts to a key of that size.
        let blob = kms
            .generate_data_key_without_plaintext(&GenerateDataKeyRequest {
                key_id: key_id.clone(),
                key_spec: Some(DataKeySpec::Aes128),
                encryption_context: context.clone(),
                ..Default::default()
            })
            .expect("GenerateDataKeyWithoutPlaintext");
        assert_eq!(blob.key_id, key_id);
        let opened = kms
            .decrypt(&DecryptRequest {
                ciphertext_blob: blob.ciphertext_blob,
                encryption_context: context.clone(),
            })
            .expect("Decrypt a data key made without plaintext");
        assert_eq!(opened.plaintext.expose().len(), 16, "{spec}");

        // A symmetric key has no public key and does not sign.
        let no_public = kms.get_public_key(&GetPublicKeyRequest {
            key_id: key_id.clone(),
            key_version_id: None,
        });
        assert_unsupported(no_public, &format!("{spec} GetPublicKey"));
        let digest = sha256(b"x");
        assert_unsupported(
            sign(&kms, &key_id, SigningAlgorithm::EcdsaSha256, &digest),
            &format!("{spec} signs"),
        );
    }
}

#[test]
fn re_encrypt_between_aes_and_sm4() {
    let (_dir, kms) = open();
    let sm4 = create(&kms, KeySpec::Sm4, KeyUsage::EncryptDecrypt);
    for spec in [KeySpec::Aes128, KeySpec::Aes192, KeySpec::Aes256] {
        let aes = create(&kms, spec, KeyUsage::EncryptDecrypt);
        let plaintext = format!("moved between {spec} and SM4").into_bytes();
        for (from, to) in [(&aes, &sm4), (&sm4, &aes)] {
            let source_context = ctx(&[("side", "source")]);
            let destination_context = ctx(&[("side", "destination")]);
            let sealed = kms
                .encrypt(&EncryptRequest {
                    key_id: from.clone(),
                    plaintext: plaintext.as_slice().into(),
                    encryption_context: source_context.clone(),
                })
                .expect("Encrypt");
            let moved = kms
                .re_encrypt(&ReEncryptRequest {
                    ciphertext_blob: sealed.ciphertext_blob.clone(),
                    destination_key_id: to.clone(),
                    source_encryption_context: source_context.clone(),
                    destination_encryption_context: destination_context.clone(),
                })
                .expect("ReEncrypt");
            assert_eq!(&moved.key_id, to);
            assert_eq!(&moved.source_key_id, from);
            assert_eq!(moved.source_key_version_id, sealed.key_version_id);
            assert_ne!(moved.ciphertext_blob, sealed.ciphertext_blob);

            let opened = kms
                .decrypt(&DecryptRequest {
                    ciphertext_blob: moved.ciphertext_blob.clone(),
                    encryption_context: destination_context,
                })
                .expect("Decrypt the re-encrypted blob");
            assert_eq!(opened.plaintext.expose(), plaintext.as_slice(), "{spec}");
            assert_eq!(&opened.key_id, to);

            // The new blob is bound to the destination context, not the source one.
            let with_source_context = kms.decrypt(&DecryptRequest {
                ciphertext_blob: moved.ciphertext_blob,
                encryption_context: source_context.clone(),
            });
            assert_eq!(code(with_source_context), "InvalidCiphertext");

            // ReEncrypt checks the source context too.
            let wrong_source = kms.re_encrypt(&ReEncryptRequest {
                ciphertext_blob: sealed.ciphertext_blob,
                destination_key_id: to.clone(),
                source_encryption_context: ctx(&[("side", "wrong")]),
                destination_encryption_context: EncryptionContext::new(),
            });
            assert_eq!(code(wrong_source), "InvalidCiphertext");
        }
    }
}

// ---------------------------------------------------------------- elliptic curves

#[test]
fn ec_sign_verify() {
    let (_dir, kms) = open();
    for (spec, alg) in [
        (KeySpec::EcP256, SigningAlgorithm::EcdsaSha256),
        (KeySpec::EcP256K, SigningAlgorithm::EcdsaSha256),
        (KeySpec::EcSm2, SigningAlgorithm::Sm2Dsa),
    ] {
        let key_id = create(&kms, spec, KeyUsage::SignVerify);
        check_signing(&kms, spec, &key_id, alg);
        check_wrong_signing_algorithms(&kms, spec, &key_id);
    }
}

#[test]
fn sm2_encrypt_decrypt() {
    let (_dir, kms) = open();
    let key_id = create(&kms, KeySpec::EcSm2, KeyUsage::EncryptDecrypt);
    check_encryption(&kms, KeySpec::EcSm2, &key_id, AsymmetricAlgorithm::Sm2Pke);
    check_wrong_encryption_algorithms(&kms, KeySpec::EcSm2, &key_id);
}

// ---------------------------------------------------------------- RSA

/// Makes one SIGN/VERIFY and one ENCRYPT/DECRYPT key of `spec` and runs every RSA check on them.
fn rsa_round_trips(spec: KeySpec, modulus_bytes: usize) {
    let (_dir, kms) = open();

    let signer = create(&kms, spec, KeyUsage::SignVerify);
    for alg in [SigningAlgorithm::RsaPssSha256, SigningAlgorithm::RsaPkcs1Sha256] {
        check_signing(&kms, spec, &signer, alg);
        let sig = sign(&kms, &signer, alg, &sha256(b"length")).expect("sign");
        assert_eq!(
            sig.len(),
            modulus_bytes,
            "{spec} {alg}: a signature is as long as the modulus"
        );
    }
    // A signature of one padding does not verify as the other.
    let digest = sha256(b"padding");
    let pss = sign(&kms, &signer, SigningAlgorithm::RsaPssSha256, &digest).expect("sign");
    let pkcs1 = sign(&kms, &signer, SigningAlgorithm::RsaPkcs1Sha256, &digest).expect("sign");
    assert!(!verify(&kms, &signer, SigningAlgorithm::RsaPkcs1Sha256, &digest, &pss).expect("verify"));
    assert!(!verify(&kms, &signer, SigningAlgorithm::RsaPssSha256, &digest, &pkcs1).expect("verify"));
    check_wrong_signing_algorithms(&kms, spec, &signer);

    let decrypter = create(&kms, spec, KeyUsage::EncryptDecrypt);
    for (alg, hash_len) in [
        (AsymmetricAlgorithm::RsaesOaepSha1, 20),
        (AsymmetricAlgorithm::RsaesOaepSha256, 32),
    ] {
        check_encryption(&kms, spec, &decrypter, alg);
        // OAEP takes at most k - 2·hLen - 2 bytes.
        let longest = modulus_bytes - 2 * hash_len - 2;
        let ct = asym_encrypt(&kms, &decrypter, alg, &vec![7u8; longest]).expect("the longest plaintext");
        assert_eq!(ct.len(), modulus_bytes);
        assert_eq!(
            asym_decrypt(&kms, &decrypter, alg, &ct).expect("decrypt"),
            vec![7u8; longest]
        );
        assert_eq!(
            code(asym_encrypt(&kms, &decrypter, alg, &vec![7u8; longest + 1])),
            "InvalidParameter",
            "{spec} {alg}: one byte too long"
        );
    }
    // A ciphertext of one OAEP hash does not decrypt under the other.
    let ct = asym_encrypt(&kms, &decrypter, AsymmetricAlgorithm::RsaesOaepSha1, b"sha-1").expect("encrypt");
    assert!(asym_decrypt(&kms, &decrypter, AsymmetricAlgorithm::RsaesOaepSha256, &ct).is_err());
    check_wrong_encryption_algorithms(&kms, spec, &decrypter);
}

#[test]
fn rsa_2048() {
    rsa_round_trips(KeySpec::Rsa2048, 256);
}

#[test]
fn rsa_3072() {
    rsa_round_trips(KeySpec::Rsa3072, 384);
}

#[test]
fn rsa_4096() {
    rsa_round_trips(KeySpec::Rsa4096, 512);
}
