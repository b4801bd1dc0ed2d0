//! One behaviour suite, two engines: every behaviour below is written once, as a function of a
//! [`Run`] (a `Kms`, an instance, and the codes it answered), and runs against the default
//! software instance and against a hardware instance on a real SoftHSM2 token. Both runs must
//! pass, and both must answer every misuse with the same error code: the engines are held to
//! one contract.
//!
//! Signatures are checked outside Tessera (p256, k256 and rsa against GetPublicKey's PEM), and
//! RSA ciphertexts made outside Tessera must decrypt inside it.
//!
//! Skipped (SKIPPED on stderr) when SoftHSM2 is not installed, failed then under `CI=true`.

mod support;

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use kms_core::Kms;
use kms_core::api::*;
use kms_core::blob::EncryptionContext;
use kms_core::clock::{DAY_MS, format_time};
use kms_core::model::*;
use softhsm_tests::{SoftHsm, have_softhsm};
use support::*;

const DAY: Duration = Duration::from_secs(86_400);
const MINUTE: Duration = Duration::from_secs(60);
/// Held by every test of this file that makes HSM keys: SoftHSM2 2.6.1 is not safe for
/// concurrent key generation in one token (C_GenerateKeyPair from two threads intermittently
/// fails with CKR_TEMPLATE_INCONSISTENT or CKR_GENERAL_ERROR: SoftHSMv2 issue 573, fixed after
/// 2.6.1), and this binary's tests share one token.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`SERIAL`] (a test that failed while holding it does not poison the others).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A version id no key has.
const NO_SUCH_VERSION: &str = "00000000-0000-4000-8000-000000000000";

// ---------------------------------------------------------------- running a behaviour on both engines

/// One engine's run of a behaviour.
struct Run<'a> {
    suite: &'a Suite,
    kms: &'a Kms,
    engine: Engine,
    instance: &'a str,
    /// What each misuse (or edge case) answered, in order: compared across engines at the end.
    answers: RefCell<Vec<(String, String)>>,
    /// Refusals with another code than the contract's (see [`Run::refused`]).
    wrong: RefCell<Vec<String>>,
}

impl Run<'_> {
    /// "software instance kst-default", "hardware instance kst-…": for messages.
    fn who(&self) -> String {
        format!("{} instance {}", self.engine.name(), self.instance)
    }

    /// CreateKey in this run's instance, which must succeed.
    #[track_caller]
    fn create(&self, spec: KeySpec, usage: Option<KeyUsage>) -> KeyMetadata {
        create_key(self.kms, self.instance, spec, usage)
            .unwrap_or_else(|e| panic!("[{}] CreateKey {spec} {usage:?}: {} {e}", self.who(), e.code()))
    }

    /// CreateKey with a full request (its instance set to this run's).
    #[track_caller]
    fn create_with(&self, req: CreateKeyRequest) -> KeyMetadata {
        let req = CreateKeyRequest {
            dkms_instance_id: Some(self.instance.to_owned()),
            ..req
        };
        self.kms
            .create_key(&req)
            .unwrap_or_else(|e| panic!("[{}] CreateKey {req:?}: {} {e}", self.who(), e.code()))
            .key_metadata
    }

    /// Records that `what` was refused, and checks it was refused with `expected`. A wrong
    /// answer does not stop the behaviour: every one is reported when it ends.
    fn refused<T: std::fmt::Debug>(&self, what: &str, result: kms_core::Result<T>, expected: &str) {
        let got = match &result {
            Ok(v) => {
                self.wrong
                    .borrow_mut()
                    .push(format!("{what}: expected {expected}, but it succeeded: {v:?}"));
                "Ok"
            }
            Err(e) => {
                if e.code() != expected {
                    self.wrong
                        .borrow_mut()
                        .push(format!("{what}: expected {expected}, got {} ({e})", e.code()));
                }
                e.code()
            }
        };
        self.answers.borrow_mut().push((what.to_owned(), got.to_owned()));
    }

    /// Records what `what` answered without prescribing it: the engines must agree.
    fn observed(&self, what: &str, answer: impl Into<String>) {
        self.answers.borrow_mut().push((what.to_owned(), answer.into()));
    }

    /// A call that must succeed.
    #[track_caller]
    fn ok<T>(&self, what: &str, result: kms_core::Result<T>) -> T {
        result.unwrap_or_else(|e| panic!("[{}] {what}: {} {e}", self.who(), e.code()))
    }

    fn describe(&self, key_id: &str) -> KeyMetadata {
        self.ok("DescribeKey", self.kms.describe_key(&KeyIdRequest::new(key_id)))
            .key_metadata
    }

    fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> kms_core::Result<EncryptResponse> {
        self.kms.encrypt(&EncryptRequest {
            key_id: key_id.to_owned(),
            plaintext: plaintext.into(),
            encryption_context: context.clone(),
        })
    }

    fn decrypt(&self, blob: &[u8], context: &EncryptionContext) -> kms_core::Result<DecryptResponse> {
        self.kms.decrypt(&DecryptRequest {
            ciphertext_blob: blob.into(),
            encryption_context: context.clone(),
        })
    }

    fn data_key(
        &self,
        key_id: &str,
        spec: Option<DataKeySpec>,
        bytes: Option<u32>,
        context: &EncryptionContext,
    ) -> kms_core::Result<GenerateDataKeyResponse> {
        self.kms.generate_data_key(&GenerateDataKeyRequest {
            key_id: key_id.to_owned(),
            key_spec: spec,
            number_of_bytes: bytes,
            encryption_context: context.clone(),
        })
    }

    fn asym_encrypt(
        &self,
        key_id: &str,
        version: Option<&str>,
        alg: AsymmetricAlgorithm,
        plaintext: &[u8],
    ) -> kms_core::Result<EncryptResponse> {
        self.kms.asymmetric_encrypt(&AsymmetricEncryptRequest {
            key_id: key_id.to_owned(),
            key_version_id: version.map(str::to_owned),
            algorithm: Some(alg),
            plaintext: plaintext.into(),
        })
    }

    fn asym_decrypt(
        &self,
        key_id: &str,
        version: Option<&str>,
        alg: AsymmetricAlgorithm,
        ciphertext: &[u8],
    ) -> kms_core::Result<DecryptResponse> {
        self.kms.asymmetric_decrypt(&AsymmetricDecryptRequest {
            key_id: key_id.to_owned(),
            key_version_id: version.map(str::to_owned),
            algorithm: Some(alg),
            ciphertext_blob: ciphertext.into(),
        })
    }

    fn rotate(&self, key_id: &str) -> String {
        self.ok(
            "CreateKeyVersion",
            self.kms.create_key_version(&KeyIdRequest::new(key_id)),
        )
        .key_version
        .key_version_id
    }
}

fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Whether the hardware instance refuses RSAES_OAEP_SHA_256 cleanly, with Unsupported.Algorithm
/// (SoftHSM2 2.6.1 implements CKM_RSA_PKCS_OAEP with SHA-1 only). Probed once, on a store of
/// its own (by a test holding [`SERIAL`]). Any other answer — success, or a failure of another
/// kind — counts as support, so that the behaviours exercise the algorithm on both engines and
/// fail loudly on a bad answer.
fn hsm_lacks_oaep_sha256() -> bool {
    static LACKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LACKS.get_or_init(|| {
        let suite = Suite::new(SoftHsm::shared());
        let key = create_key(
            &suite.kms,
            suite.hardware(),
            KeySpec::Rsa2048,
            Some(KeyUsage::EncryptDecrypt),
        )
        .expect("an RSA ENCRYPT/DECRYPT key in the hardware instance");
        let answer = suite.kms.asymmetric_encrypt(&AsymmetricEncryptRequest {
            key_id: key.key_id,
            algorithm: Some(AsymmetricAlgorithm::RsaesOaepSha256),
            plaintext: b"probe".as_slice().into(),
            ..AsymmetricEncryptRequest::default()
        });
        let lacks = matches!(&answer, Err(e) if e.code() == "Unsupported.Algorithm");
        if lacks {
            eprintln!("NOTE: this HSM has no RSAES_OAEP_SHA_256; the behaviours compare RSAES_OAEP_SHA_1 only");
        }
        lacks
    })
}

/// The RSAES-OAEP algorithms of `spec` that both engines offer (see [`hsm_lacks_oaep_sha256`]).
fn common_oaep_algorithms(spec: KeySpec) -> Vec<AsymmetricAlgorithm> {
    spec.asymmetric_algorithms()
        .iter()
        .copied()
        .filter(|&alg| alg != AsymmetricAlgorithm::RsaesOaepSha256 || !hsm_lacks_oaep_sha256())
        .collect()
}

/// Runs `behaviour` against the software instance, then the hardware instance, of a fresh store
/// (each half runs even when the other fails); fails naming the engines that failed, then if
/// the two answered any misuse differently.
fn on_both_engines(test: &str, behaviour: fn(&Run)) {
    if !have_softhsm() {
        return;
    }
    let _serial = serial();
    let suite = Suite::new(SoftHsm::shared());
    let mut failures = Vec::new();
    let mut tables = Vec::new();
    for (engine, instance) in suite.instances() {
        let run = Run {
            suite: &suite,
            kms: &suite.kms,
            engine,
            instance,
            answers: RefCell::new(Vec::new()),
            wrong: RefCell::new(Vec::new()),
        };
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| behaviour(&run)));
        let secs = started.elapsed().as_secs_f32();
        let mut problems = Vec::new();
        if let Err(payload) = &result {
            let message = panic_message(payload.as_ref());
            problems.push(if message.starts_with('[') {
                message
            } else {
                format!("[{}] {message}", run.who())
            });
        }
        let wrong = run.wrong.take();
        if !wrong.is_empty() {
            problems.push(format!(
                "[{}] {} misuse(s) answered with another code than the contract's:\n  {}",
                run.who(),
                wrong.len(),
                wrong.join("\n  ")
            ));
        }
        if problems.is_empty() {
            eprintln!("{test} [{}]: passed in {secs:.1}s", run.who());
            tables.push((run.who(), run.answers.into_inner()));
        } else {
            eprintln!("{test} [{}]: FAILED in {secs:.1}s", run.who());
            failures.push(problems.join("\n"));
        }
    }
    assert!(
        failures.is_empty(),
        "{test}: the behaviour failed on {} of 2 engines:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let (software, hardware) = (&tables[0], &tables[1]);
    let mut differences = Vec::new();
    for i in 0..software.1.len().max(hardware.1.len()) {
        let (s, h) = (software.1.get(i), hardware.1.get(i));
        if s != h {
            differences.push(format!("  software: {s:?}\n  hardware: {h:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{test}: the engines answered differently ({} vs {}):\n{}",
        software.0,
        hardware.0,
        differences.join("\n")
    );
}

// ---------------------------------------------------------------- every spec, every algorithm

/// The specs a hardware instance must make, with each of their usages.
const SPECS: &[(KeySpec, KeyUsage)] = &[
    (KeySpec::Aes256, KeyUsage::EncryptDecrypt),
    (KeySpec::Aes192, KeyUsage::EncryptDecrypt),
    (KeySpec::Aes128, KeyUsage::EncryptDecrypt),
    (KeySpec::EcP256, KeyUsage::SignVerify),
    (KeySpec::EcP256K, KeyUsage::SignVerify),
    (KeySpec::Rsa2048, KeyUsage::SignVerify),
    (KeySpec::Rsa2048, KeyUsage::EncryptDecrypt),
    (KeySpec::Rsa3072, KeyUsage::SignVerify),
    (KeySpec::Rsa3072, KeyUsage::EncryptDecrypt),
];

/// CreateKey of every spec and usage: DescribeKey says what was asked, the instance, and the
/// instance's ProtectionLevel; one version; and every algorithm of the spec works (signatures
/// checked outside Tessera, RSA ciphertexts made outside decrypting inside). CreateKey refuses
/// the other ProtectionLevel and impossible combinations with the same codes on both engines.
fn every_spec_and_algorithm(run: &Run) {
    let kms = run.kms;
    for &(spec, usage) in SPECS {
        let what = format!("{spec} {usage}");
        // The spec's default usage is asked for by omission.
        let asked = (usage != spec.default_usage()).then_some(usage);
        let key = run.create(spec, asked);
        let described = run.describe(&key.key_id);
        for (name, got, want) in [
            (
                "KeySpec",
                described.key_spec.map(|s| s.to_string()),
                Some(spec.to_string()),
            ),
            (
                "KeyUsage",
                described.key_usage.map(|u| u.to_string()),
                Some(usage.to_string()),
            ),
            (
                "KeyState",
                described.key_state.map(|s| s.to_string()),
                Some("Enabled".to_owned()),
            ),
            (
                "Origin",
                described.origin.map(|o| o.to_string()),
                Some("Aliyun_KMS".to_owned()),
            ),
            (
                "ProtectionLevel",
                described.protection_level.map(|p| p.to_string()),
                Some(run.engine.protection_level().to_string()),
            ),
            (
                "DKMSInstanceId",
                Some(described.dkms_instance_id.clone()),
                Some(run.instance.to_owned()),
            ),
        ] {
            assert_eq!(got, want, "[{}] DescribeKey of a {what} key: {name}", run.who());
        }
        assert_eq!(
            described,
            key,
            "[{}] DescribeKey differs from CreateKey's answer",
            run.who()
        );
        let primary = described
            .primary_key_version
            .clone()
            .unwrap_or_else(|| panic!("[{}] a new {what} key has no primary version", run.who()));
        let versions = run.ok(
            "ListKeyVersions",
            kms.list_key_versions(&KeyPageRequest {
                key_id: key.key_id.clone(),
                ..KeyPageRequest::default()
            }),
        );
        let ids: Vec<&str> = versions
            .key_versions
            .key_version
            .iter()
            .map(|v| v.key_version_id.as_str())
            .collect();
        assert_eq!(
            ids,
            [primary.as_str()],
            "[{}] the versions of a new {what} key",
            run.who()
        );

        if spec.is_symmetric() {
            let ctx = context(&[("spec", spec.as_str())]);
            let plaintext = format!("plaintext for {what}").into_bytes();
            let sealed = run.ok("Encrypt", run.encrypt(&key.key_id, &plaintext, &ctx));
            assert_eq!(
                sealed.key_version_id,
                primary,
                "[{}] {what}: Encrypt's version",
                run.who()
            );
            let opened = run.ok("Decrypt", run.decrypt(&sealed.ciphertext_blob.0, &ctx));
            assert_eq!(opened.plaintext.expose(), plaintext, "[{}] {what}: Decrypt", run.who());
            run.refused(
                &format!("GetPublicKey of a {spec} key"),
                public_pem(kms, &key.key_id, None),
                "Unsupported.KeySpec",
            );
            continue;
        }

        let (answered, pem) = run.ok("GetPublicKey", public_pem(kms, &key.key_id, None));
        assert_eq!(answered, primary, "[{}] {what}: GetPublicKey's version", run.who());
        match usage {
            KeyUsage::SignVerify => {
                let digest = sha256(what.as_bytes());
                let other = sha256(b"another message");
                for &alg in spec.signing_algorithms() {
                    let signed = run.ok("AsymmetricSign", sign(kms, &key.key_id, None, alg, &digest));
                    assert_eq!(signed.key_version_id, primary, "[{}] {what} {alg}: version", run.who());
                    let sig = &signed.value.0;
                    assert!(
                        verify_outside(spec, alg, &pem, &digest, sig),
                        "[{}] {what} {alg}: the signature does not verify outside Tessera",
                        run.who()
                    );
                    assert!(
                        !verify_outside(spec, alg, &pem, &other, sig),
                        "[{}] {what} {alg}: the signature verifies over another digest",
                        run.who()
                    );
                    assert!(
                        run.ok("AsymmetricVerify", verify(kms, &key.key_id, None, alg, &digest, sig)),
                        "[{}] {what} {alg}: AsymmetricVerify refuses the key's own signature",
                        run.who()
                    );
                }
            }
            KeyUsage::EncryptDecrypt => {
                let public = rsa_public_key(spec, &pem);
                for alg in common_oaep_algorithms(spec) {
                    let plaintext = format!("secret for {what} {alg}").into_bytes();
                    let sealed = run.ok(
                        "AsymmetricEncrypt",
                        run.asym_encrypt(&key.key_id, None, alg, &plaintext),
                    );
                    let opened = run.ok(
                        "AsymmetricDecrypt",
                        run.asym_decrypt(&key.key_id, None, alg, &sealed.ciphertext_blob.0),
                    );
                    assert_eq!(opened.plaintext.expose(), plaintext, "[{}] {what} {alg}", run.who());
                    let outside = oaep_encrypt_outside(&public, alg, &plaintext);
                    let opened = run.ok(
                        "AsymmetricDecrypt of an outside ciphertext",
                        run.asym_decrypt(&key.key_id, None, alg, &outside),
                    );
                    assert_eq!(
                        opened.plaintext.expose(),
                        plaintext,
                        "[{}] {what} {alg}: a ciphertext made outside Tessera",
                        run.who()
                    );
                }
            }
        }
    }

    // CreateKey refusals.
    let other_level = match run.engine {
        Engine::Software => ProtectionLevel::Hsm,
        Engine::Hardware => ProtectionLevel::Software,
    };
    run.refused(
        "CreateKey with the other engine's ProtectionLevel",
        kms.create_key(&CreateKeyRequest {
            protection_level: Some(other_level),
            dkms_instance_id: Some(run.instance.to_owned()),
            ..CreateKeyRequest::default()
        }),
        "Unsupported.ProtectionLevel",
    );
    let same_level = run.create_with(CreateKeyRequest {
        protection_level: Some(run.engine.protection_level()),
        ..CreateKeyRequest::default()
    });
    assert_eq!(
        same_level.protection_level,
        Some(run.engine.protection_level()),
        "[{}] CreateKey with the instance's own ProtectionLevel",
        run.who()
    );
    for (what, spec, usage, expected) in [
        (
            "CreateKey Aliyun_AES_256 SIGN/VERIFY",
            KeySpec::Aes256,
            KeyUsage::SignVerify,
            "InvalidParameter",
        ),
        (
            "CreateKey EC_P256 ENCRYPT/DECRYPT",
            KeySpec::EcP256,
            KeyUsage::EncryptDecrypt,
            "InvalidParameter",
        ),
    ] {
        run.refused(what, create_key(kms, run.instance, spec, Some(usage)), expected);
    }
    run.refused(
        "CreateKey RSA_2048 EXTERNAL",
        kms.create_key(&CreateKeyRequest {
            key_spec: Some(KeySpec::Rsa2048),
            origin: Some(Origin::External),
            dkms_instance_id: Some(run.instance.to_owned()),
            ..CreateKeyRequest::default()
        }),
        "Unsupported.Origin",
    );
    run.refused(
        "CreateKey EC_P256 with automatic rotation",
        kms.create_key(&CreateKeyRequest {
            key_spec: Some(KeySpec::EcP256),
            enable_automatic_rotation: Some(true),
            dkms_instance_id: Some(run.instance.to_owned()),
            ..CreateKeyRequest::default()
        }),
        "UnsupportedOperation",
    );
}

#[test]
fn every_spec_and_algorithm_on_both_engines() {
    on_both_engines("every_spec_and_algorithm", every_spec_and_algorithm);
}

// ---------------------------------------------------------------- symmetric encryption

/// Encrypt/Decrypt with an EncryptionContext (a wrong, missing or extra context is refused, as
/// is any changed byte), the 6 KiB limit, GenerateDataKey and GenerateDataKeyWithoutPlaintext,
/// with AES-256 and AES-128 keys.
fn encrypt_decrypt_and_data_keys(run: &Run) {
    for spec in [KeySpec::Aes256, KeySpec::Aes128] {
        let key = run.create(spec, None);
        let key_id = key.key_id.as_str();
        let primary = key.primary_key_version.clone().expect("a primary version");
        let ctx = context(&[("purpose", "behaviour"), ("spec", spec.as_str())]);
        let plaintext: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();

        let sealed = run.ok("Encrypt", run.encrypt(key_id, &plaintext, &ctx));
        assert_eq!(
            (sealed.key_id.as_str(), sealed.key_version_id.as_str()),
            (key_id, primary.as_str()),
            "[{}] Encrypt's key and version",
            run.who()
        );
        let blob = sealed.ciphertext_blob.0.clone();
        assert!(
            !contains(&blob, &plaintext[..16]),
            "[{}] the ciphertext holds the plaintext",
            run.who()
        );
        let again = run.ok("Encrypt", run.encrypt(key_id, &plaintext, &ctx));
        assert_ne!(
            again.ciphertext_blob.0,
            blob,
            "[{}] two encryptions of one plaintext are equal (IV reuse?)",
            run.who()
        );
        let opened = run.ok("Decrypt", run.decrypt(&blob, &ctx));
        assert_eq!(opened.plaintext.expose(), plaintext, "[{}] Decrypt", run.who());
        assert_eq!(
            (opened.key_id.as_str(), opened.key_version_id.as_str()),
            (key_id, primary.as_str()),
            "[{}] Decrypt's key and version",
            run.who()
        );

        let s = spec.as_str();
        run.refused(
            &format!("{s}: Decrypt with another context value"),
            run.decrypt(&blob, &context(&[("purpose", "other"), ("spec", s)])),
            "InvalidCiphertext",
        );
        run.refused(
            &format!("{s}: Decrypt without the context"),
            run.decrypt(&blob, &EncryptionContext::new()),
            "InvalidCiphertext",
        );
        let mut extra = ctx.clone();
        extra.insert("extra".into(), "pair".into());
        run.refused(
            &format!("{s}: Decrypt with an extra context pair"),
            run.decrypt(&blob, &extra),
            "InvalidCiphertext",
        );
        run.refused(
            &format!("{s}: Decrypt with a changed tag"),
            run.decrypt(&flipped(&blob, blob.len() - 1), &ctx),
            "InvalidCiphertext",
        );
        run.refused(
            &format!("{s}: Decrypt with a changed body"),
            run.decrypt(&flipped(&blob, blob.len() - 20), &ctx),
            "InvalidCiphertext",
        );
        run.refused(
            &format!("{s}: Decrypt with a changed IV"),
            run.decrypt(&flipped(&blob, blob.len() - 16 - 64 - 1), &ctx),
            "InvalidCiphertext",
        );
        run.refused(
            &format!("{s}: Decrypt of a ciphertext one byte short"),
            run.decrypt(&blob[..blob.len() - 1], &ctx),
            "InvalidCiphertext",
        );
        // The empty plaintext: whatever the answer, the engines must give the same one.
        let empty = run.encrypt(key_id, b"", &ctx);
        run.observed(&format!("{s}: Encrypt of an empty plaintext"), outcome(&empty));
        if let Ok(empty) = empty {
            let back = run.decrypt(&empty.ciphertext_blob.0, &ctx);
            run.observed(
                &format!("{s}: Decrypt of an empty plaintext's ciphertext"),
                match &back {
                    Ok(r) => format!("Ok({} bytes)", r.plaintext.expose().len()),
                    Err(e) => e.code().to_owned(),
                },
            );
        }
        let largest = vec![0x5a; 6144];
        let sealed = run.ok("Encrypt of 6144 bytes", run.encrypt(key_id, &largest, &ctx));
        let opened = run.ok("Decrypt of 6144 bytes", run.decrypt(&sealed.ciphertext_blob.0, &ctx));
        assert_eq!(opened.plaintext.expose(), largest, "[{}] 6144 bytes", run.who());
        run.refused(
            &format!("{s}: Encrypt of 6145 bytes"),
            run.encrypt(key_id, &[0x5a; 6145], &ctx),
            "InvalidParameter",
        );

        // GenerateDataKey.
        for (asked, bytes, len) in [
            (None, None, 32),
            (Some(DataKeySpec::Aes256), None, 32),
            (Some(DataKeySpec::Aes128), None, 16),
            (None, Some(1), 1),
            (Some(DataKeySpec::Aes128), Some(1024), 1024),
        ] {
            let what = format!("GenerateDataKey {asked:?} {bytes:?}");
            let generated = run.ok(&what, run.data_key(key_id, asked, bytes, &ctx));
            let data_key = generated.plaintext.expose().to_vec();
            assert_eq!(data_key.len(), len, "[{}] {what}: length", run.who());
            assert!(
                len < 8 || data_key.iter().any(|&b| b != 0),
                "[{}] {what}: an all-zero data key",
                run.who()
            );
            assert_eq!(generated.key_version_id, primary, "[{}] {what}: version", run.who());
            let opened = run.ok(&what, run.decrypt(&generated.ciphertext_blob.0, &ctx));
            assert_eq!(
                opened.plaintext.expose(),
                data_key,
                "[{}] {what}: its ciphertext does not decrypt to it",
                run.who()
            );
            run.refused(
                &format!("{s}: Decrypt of a data key without its context"),
                run.decrypt(&generated.ciphertext_blob.0, &EncryptionContext::new()),
                "InvalidCiphertext",
            );
        }
        let a = run.ok("GenerateDataKey", run.data_key(key_id, None, None, &ctx));
        let b = run.ok("GenerateDataKey", run.data_key(key_id, None, None, &ctx));
        assert_ne!(
            a.plaintext.expose(),
            b.plaintext.expose(),
            "[{}] two data keys are equal",
            run.who()
        );
        for bytes in [0, 1025] {
            run.refused(
                &format!("{s}: GenerateDataKey of {bytes} bytes"),
                run.data_key(key_id, None, Some(bytes), &ctx),
                "InvalidParameter",
            );
        }
        let without = run.ok(
            "GenerateDataKeyWithoutPlaintext",
            run.kms.generate_data_key_without_plaintext(&GenerateDataKeyRequest {
                key_id: key_id.to_owned(),
                key_spec: Some(DataKeySpec::Aes128),
                number_of_bytes: None,
                encryption_context: ctx.clone(),
            }),
        );
        assert_eq!(
            (without.key_id.as_str(), without.key_version_id.as_str()),
            (key_id, primary.as_str()),
            "[{}] GenerateDataKeyWithoutPlaintext's key and version",
            run.who()
        );
        let opened = run.ok(
            "Decrypt of GenerateDataKeyWithoutPlaintext's ciphertext",
            run.decrypt(&without.ciphertext_blob.0, &ctx),
        );
        assert_eq!(
            opened.plaintext.expose().len(),
            16,
            "[{}] GenerateDataKeyWithoutPlaintext AES_128",
            run.who()
        );
        run.refused(
            &format!("{s}: Decrypt of GenerateDataKeyWithoutPlaintext's ciphertext with another context"),
            run.decrypt(&without.ciphertext_blob.0, &context(&[("purpose", "other")])),
            "InvalidCiphertext",
        );

        // A symmetric key neither signs nor encrypts asymmetrically.
        run.refused(
            &format!("{s}: AsymmetricSign"),
            sign(run.kms, key_id, None, SigningAlgorithm::EcdsaSha256, &[1; 32]),
            "Unsupported.KeyUsage",
        );
        run.refused(
            &format!("{s}: AsymmetricEncrypt"),
            run.asym_encrypt(key_id, None, AsymmetricAlgorithm::RsaesOaepSha256, b"x"),
            "Unsupported.KeySpec",
        );
    }
}

#[test]
fn encrypt_decrypt_and_data_keys_on_both_engines() {
    on_both_engines("encrypt_decrypt_and_data_keys", encrypt_decrypt_and_data_keys);
}

// ---------------------------------------------------------------- signatures

/// AsymmetricSign and AsymmetricVerify with every algorithm of EC_P256, EC_P256K and RSA_2048,
/// each signature checked outside Tessera against GetPublicKey's PEM; the wrong algorithms,
/// digest lengths and usages are refused alike.
fn sign_and_verify(run: &Run) {
    let kms = run.kms;
    for spec in [KeySpec::EcP256, KeySpec::EcP256K, KeySpec::Rsa2048] {
        let key = run.create(spec, None);
        let key_id = key.key_id.as_str();
        let primary = key.primary_key_version.clone().expect("a primary version");
        let (answered, pem) = run.ok("GetPublicKey", public_pem(kms, key_id, None));
        assert_eq!(answered, primary, "[{}] GetPublicKey's version", run.who());
        let digest = sha256(format!("a message signed by {spec}").as_bytes());
        let other = sha256(b"another message");

        for &alg in spec.signing_algorithms() {
            let what = format!("{spec} {alg}");
            let signed = run.ok(&what, sign(kms, key_id, None, alg, &digest));
            assert_eq!(
                (signed.key_id.as_str(), signed.key_version_id.as_str()),
                (key_id, primary.as_str()),
                "[{}] {what}: AsymmetricSign's key and version",
                run.who()
            );
            let sig = signed.value.0.clone();
            match alg {
                SigningAlgorithm::EcdsaSha256 => assert_eq!(sig[0], 0x30, "[{}] {what}: not DER", run.who()),
                _ => assert_eq!(sig.len(), 256, "[{}] {what}: signature length", run.who()),
            }
            // Outside Tessera.
            assert!(
                verify_outside(spec, alg, &pem, &digest, &sig),
                "[{}] {what}: the signature does not verify outside Tessera",
                run.who()
            );
            assert!(
                !verify_outside(spec, alg, &pem, &other, &sig),
                "[{}] {what}: the signature verifies outside over another digest",
                run.who()
            );
            assert!(
                !verify_outside(spec, alg, &pem, &digest, &flipped(&sig, sig.len() - 1)),
                "[{}] {what}: a changed signature verifies outside",
                run.who()
            );
            // Inside.
            for (case, d, s, want) in [
                ("its signature", &digest, sig.clone(), true),
                ("another digest", &other, sig.clone(), false),
                ("a changed signature", &digest, flipped(&sig, sig.len() - 1), false),
            ] {
                let got = run.ok(&what, verify(kms, key_id, None, alg, d, &s));
                assert_eq!(got, want, "[{}] {what}: AsymmetricVerify of {case}", run.who());
            }
            match alg {
                SigningAlgorithm::RsaPkcs1Sha256 => {
                    let again = run.ok(&what, sign(kms, key_id, None, alg, &digest));
                    assert_eq!(
                        again.value.0,
                        sig,
                        "[{}] {what}: PKCS#1 v1.5 signatures are deterministic",
                        run.who()
                    );
                    assert!(
                        !verify_outside(spec, SigningAlgorithm::RsaPssSha256, &pem, &digest, &sig),
                        "[{}] a PKCS#1 v1.5 signature verifies as PSS",
                        run.who()
                    );
                }
                SigningAlgorithm::RsaPssSha256 => assert!(
                    !verify_outside(spec, SigningAlgorithm::RsaPkcs1Sha256, &pem, &digest, &sig),
                    "[{}] a PSS signature verifies as PKCS#1 v1.5",
                    run.who()
                ),
                _ => {
                    // The other S of the pair: as valid mathematically; the engines must agree
                    // on whether AsymmetricVerify takes it.
                    let twin = ecdsa_s_twin(spec, &sig);
                    let got = verify(kms, key_id, None, alg, &digest, &twin);
                    run.observed(
                        &format!("{what}: AsymmetricVerify of the (r, n - s) twin of a signature"),
                        format!("{got:?}"),
                    );
                }
            }
            for (case, len) in [("31-byte", 31), ("33-byte", 33)] {
                let d = vec![7u8; len];
                run.refused(
                    &format!("{what}: AsymmetricSign of a {case} digest"),
                    sign(kms, key_id, None, alg, &d),
                    "InvalidParameter",
                );
                run.refused(
                    &format!("{what}: AsymmetricVerify of a {case} digest"),
                    verify(kms, key_id, None, alg, &d, &sig),
                    "InvalidParameter",
                );
            }
            let short = verify(kms, key_id, None, alg, &digest, &sig[..sig.len() - 1]);
            run.observed(
                &format!("{what}: AsymmetricVerify of a signature one byte short"),
                format!("{short:?}"),
            );
            let garbage = verify(kms, key_id, None, alg, &digest, &[0x30, 0x00]);
            run.observed(&format!("{what}: AsymmetricVerify of 30 00"), format!("{garbage:?}"));
        }
        for &alg in SigningAlgorithm::ALL {
            if !spec.signing_algorithms().contains(&alg) {
                run.refused(
                    &format!("{spec}: AsymmetricSign with {alg}"),
                    sign(kms, key_id, None, alg, &digest),
                    "Unsupported.Algorithm",
                );
                run.refused(
                    &format!("{spec}: AsymmetricVerify with {alg}"),
                    verify(kms, key_id, None, alg, &digest, &[0x30, 0x00]),
                    "Unsupported.Algorithm",
                );
            }
        }
        run.refused(
            &format!("{spec}: AsymmetricSign without an algorithm"),
            kms.asymmetric_sign(&AsymmetricSignRequest {
                key_id: key_id.to_owned(),
                digest: digest.clone().into(),
                ..AsymmetricSignRequest::default()
            }),
            "MissingParameter",
        );
        run.refused(
            &format!("{spec}: AsymmetricEncrypt with a SIGN/VERIFY key"),
            run.asym_encrypt(key_id, None, AsymmetricAlgorithm::RsaesOaepSha256, b"x"),
            "Unsupported.KeyUsage",
        );
        run.refused(
            &format!("{spec}: Encrypt with a SIGN/VERIFY key"),
            run.encrypt(key_id, b"x", &EncryptionContext::new()),
            "Unsupported.KeyUsage",
        );
        run.refused(
            &format!("{spec}: AsymmetricSign with an unknown version"),
            sign(
                kms,
                key_id,
                Some(NO_SUCH_VERSION),
                spec.signing_algorithms()[0],
                &digest,
            ),
            "Forbidden.KeyVersionNotFound",
        );
    }
}

#[test]
fn sign_and_verify_on_both_engines() {
    on_both_engines("sign_and_verify", sign_and_verify);
}

// ---------------------------------------------------------------- asymmetric encryption

/// RSAES-OAEP with SHA-1 and SHA-256 on an RSA_2048 ENCRYPT/DECRYPT key: Tessera to Tessera,
/// the rsa crate to Tessera, the largest plaintexts, and the same refusals.
fn asymmetric_encrypt_and_decrypt(run: &Run) {
    let spec = KeySpec::Rsa2048;
    let key = run.create(spec, Some(KeyUsage::EncryptDecrypt));
    let key_id = key.key_id.as_str();
    let primary = key.primary_key_version.clone().expect("a primary version");
    let (_, pem) = run.ok("GetPublicKey", public_pem(run.kms, key_id, None));
    let public = rsa_public_key(spec, &pem);

    let algorithms = common_oaep_algorithms(spec);
    for &alg in &algorithms {
        // The longest plaintext: k - 2 hLen - 2 bytes.
        let largest = match alg {
            AsymmetricAlgorithm::RsaesOaepSha1 => 256 - 2 * 20 - 2,
            _ => 256 - 2 * 32 - 2,
        };
        let plaintext = format!("a secret under {alg}").into_bytes();
        let sealed = run.ok("AsymmetricEncrypt", run.asym_encrypt(key_id, None, alg, &plaintext));
        assert_eq!(sealed.key_version_id, primary, "[{}] {alg}: version", run.who());
        let ct = sealed.ciphertext_blob.0.clone();
        assert_eq!(ct.len(), 256, "[{}] {alg}: ciphertext length", run.who());
        let again = run.ok("AsymmetricEncrypt", run.asym_encrypt(key_id, None, alg, &plaintext));
        assert_ne!(again.ciphertext_blob.0, ct, "[{}] {alg}: OAEP is randomized", run.who());
        let opened = run.ok("AsymmetricDecrypt", run.asym_decrypt(key_id, None, alg, &ct));
        assert_eq!(opened.plaintext.expose(), plaintext, "[{}] {alg}", run.who());
        assert_eq!(opened.key_version_id, primary, "[{}] {alg}: version", run.who());

        let outside = oaep_encrypt_outside(&public, alg, &plaintext);
        let opened = run.ok(
            "AsymmetricDecrypt of a ciphertext made outside",
            run.asym_decrypt(key_id, None, alg, &outside),
        );
        assert_eq!(
            opened.plaintext.expose(),
            plaintext,
            "[{}] {alg}: a ciphertext of the rsa crate",
            run.who()
        );

        let big = vec![0xc3; largest];
        let sealed = run.ok(
            &format!("AsymmetricEncrypt of {largest} bytes"),
            run.asym_encrypt(key_id, None, alg, &big),
        );
        let opened = run.ok(
            "AsymmetricDecrypt",
            run.asym_decrypt(key_id, None, alg, &sealed.ciphertext_blob.0),
        );
        assert_eq!(opened.plaintext.expose(), big, "[{}] {alg}: {largest} bytes", run.who());
        run.refused(
            &format!("{alg}: AsymmetricEncrypt of {} bytes", largest + 1),
            run.asym_encrypt(key_id, None, alg, &vec![0xc3; largest + 1]),
            "InvalidParameter",
        );
        run.refused(
            &format!("{alg}: AsymmetricDecrypt of a changed ciphertext"),
            run.asym_decrypt(key_id, None, alg, &flipped(&ct, 100)),
            "InvalidCiphertext",
        );
        for &other in algorithms.iter().filter(|&&other| other != alg) {
            run.refused(
                &format!("{alg}: AsymmetricDecrypt with {other}"),
                run.asym_decrypt(key_id, None, other, &ct),
                "InvalidCiphertext",
            );
        }
        let short = run.asym_decrypt(key_id, None, alg, &ct[..255]);
        run.observed(
            &format!("{alg}: AsymmetricDecrypt of a ciphertext one byte short"),
            outcome(&short),
        );
        let empty = run.asym_encrypt(key_id, None, alg, b"");
        run.observed(&format!("{alg}: AsymmetricEncrypt of nothing"), outcome(&empty));
    }
    run.refused(
        "RSA_2048 ENCRYPT/DECRYPT: AsymmetricEncrypt with SM2PKE",
        run.asym_encrypt(key_id, None, AsymmetricAlgorithm::Sm2Pke, b"x"),
        "Unsupported.Algorithm",
    );
    run.refused(
        "RSA_2048 ENCRYPT/DECRYPT: AsymmetricSign",
        sign(run.kms, key_id, None, SigningAlgorithm::RsaPssSha256, &[1; 32]),
        "Unsupported.KeyUsage",
    );
    run.refused(
        "RSA_2048 ENCRYPT/DECRYPT: Encrypt",
        run.encrypt(key_id, b"x", &EncryptionContext::new()),
        "Unsupported.KeySpec",
    );
}

#[test]
fn asymmetric_encrypt_and_decrypt_on_both_engines() {
    on_both_engines("asymmetric_encrypt_and_decrypt", asymmetric_encrypt_and_decrypt);
}

// ---------------------------------------------------------------- rotation

/// CreateKeyVersion: the new version becomes primary, old ciphertexts decrypt (by the version
/// the blob names), old signatures verify by version and outside with the old PEM, old RSA
/// ciphertexts decrypt by version; automatic rotation makes a version in the HSM too.
fn rotation(run: &Run) {
    let kms = run.kms;

    // ---- AES-256
    let aes = run.create(KeySpec::Aes256, None);
    let aes_id = aes.key_id.as_str();
    let v1 = aes.primary_key_version.clone().expect("a primary version");
    let ctx = context(&[("rotation", "aes")]);
    let c1 = run.ok("Encrypt", run.encrypt(aes_id, b"before the rotation", &ctx));
    let v2 = run.rotate(aes_id);
    assert_ne!(v2, v1, "[{}] CreateKeyVersion gave the old version", run.who());
    let described = run.describe(aes_id);
    assert_eq!(
        described.primary_key_version.as_deref(),
        Some(v2.as_str()),
        "[{}]",
        run.who()
    );
    let listed = run.ok(
        "ListKeyVersions",
        kms.list_key_versions(&KeyPageRequest {
            key_id: aes_id.to_owned(),
            ..KeyPageRequest::default()
        }),
    );
    let mut ids: Vec<String> = listed
        .key_versions
        .key_version
        .into_iter()
        .map(|v| v.key_version_id)
        .collect();
    ids.sort();
    let mut want = vec![v1.clone(), v2.clone()];
    want.sort();
    assert_eq!(ids, want, "[{}] ListKeyVersions after a rotation", run.who());
    assert_eq!(listed.total_count, 2, "[{}] TotalCount", run.who());
    run.ok(
        "DescribeKeyVersion of the old version",
        kms.describe_key_version(&DescribeKeyVersionRequest {
            key_id: aes_id.to_owned(),
            key_version_id: v1.clone(),
        }),
    );
    let c2 = run.ok("Encrypt", run.encrypt(aes_id, b"after the rotation", &ctx));
    assert_eq!(c2.key_version_id, v2, "[{}] Encrypt after a rotation", run.who());
    for (blob, plaintext, version) in [
        (&c1, &b"before the rotation"[..], &v1),
        (&c2, &b"after the rotation"[..], &v2),
    ] {
        let opened = run.ok("Decrypt", run.decrypt(&blob.ciphertext_blob.0, &ctx));
        assert_eq!(
            (opened.plaintext.expose(), &opened.key_version_id),
            (plaintext, version),
            "[{}] Decrypt after a rotation",
            run.who()
        );
    }
    let generated = run.ok("GenerateDataKey", run.data_key(aes_id, None, None, &ctx));
    assert_eq!(
        generated.key_version_id,
        v2,
        "[{}] GenerateDataKey's version",
        run.who()
    );
    let re = run.ok(
        "ReEncrypt",
        kms.re_encrypt(&ReEncryptRequest {
            ciphertext_blob: c1.ciphertext_blob.clone(),
            destination_key_id: aes_id.to_owned(),
            source_encryption_context: ctx.clone(),
            destination_encryption_context: ctx.clone(),
        }),
    );
    assert_eq!(
        (re.source_key_version_id.as_str(), re.key_version_id.as_str()),
        (v1.as_str(), v2.as_str()),
        "[{}] ReEncrypt moves a ciphertext to the primary version",
        run.who()
    );
    let v3 = run.rotate(aes_id);
    let opened = run.ok("Decrypt", run.decrypt(&c1.ciphertext_blob.0, &ctx));
    assert_eq!(
        opened.key_version_id,
        v1,
        "[{}] the first version decrypts after two rotations",
        run.who()
    );
    let opened = run.ok("Decrypt", run.decrypt(&re.ciphertext_blob.0, &ctx));
    assert_eq!(opened.plaintext.expose(), b"before the rotation", "[{}]", run.who());
    assert_ne!(v3, v2, "[{}]", run.who());
    run.refused(
        "DescribeKeyVersion of an unknown version",
        kms.describe_key_version(&DescribeKeyVersionRequest {
            key_id: aes_id.to_owned(),
            key_version_id: NO_SUCH_VERSION.to_owned(),
        }),
        "Forbidden.KeyVersionNotFound",
    );

    // ---- EC P-256
    let alg = SigningAlgorithm::EcdsaSha256;
    let ec = run.create(KeySpec::EcP256, None);
    let ec_id = ec.key_id.as_str();
    let e1 = ec.primary_key_version.clone().expect("a primary version");
    let digest = sha256(b"signed before and after a rotation");
    let s1 = run.ok("AsymmetricSign", sign(kms, ec_id, None, alg, &digest));
    assert_eq!(s1.key_version_id, e1, "[{}]", run.who());
    let (_, pem1) = run.ok("GetPublicKey", public_pem(kms, ec_id, None));
    let e2 = run.rotate(ec_id);
    let s2 = run.ok("AsymmetricSign", sign(kms, ec_id, None, alg, &digest));
    assert_eq!(s2.key_version_id, e2, "[{}] AsymmetricSign after a rotation", run.who());
    let (answered, pem2) = run.ok("GetPublicKey", public_pem(kms, ec_id, None));
    assert_eq!(answered, e2, "[{}] GetPublicKey after a rotation", run.who());
    assert_ne!(pem2, pem1, "[{}] the new version has the old public key", run.who());
    let (answered, old) = run.ok("GetPublicKey of v1", public_pem(kms, ec_id, Some(&e1)));
    assert_eq!((answered, old), (e1.clone(), pem1.clone()), "[{}]", run.who());
    for (what, sig, version, want) in [
        ("the old signature by its version", &s1, Some(e1.as_str()), true),
        ("the old signature by the primary", &s1, None, false),
        ("the new signature by the primary", &s2, None, true),
        ("the new signature by the old version", &s2, Some(e1.as_str()), false),
    ] {
        let got = run.ok(what, verify(kms, ec_id, version, alg, &digest, &sig.value.0));
        assert_eq!(got, want, "[{}] AsymmetricVerify of {what}", run.who());
    }
    for (what, sig, pem, want) in [
        ("the old signature, old PEM", &s1, &pem1, true),
        ("the old signature, new PEM", &s1, &pem2, false),
        ("the new signature, new PEM", &s2, &pem2, true),
        ("the new signature, old PEM", &s2, &pem1, false),
    ] {
        assert_eq!(
            verify_outside(KeySpec::EcP256, alg, pem, &digest, &sig.value.0),
            want,
            "[{}] outside: {what}",
            run.who()
        );
    }
    let by_old = run.ok("AsymmetricSign by v1", sign(kms, ec_id, Some(&e1), alg, &digest));
    assert_eq!(by_old.key_version_id, e1, "[{}]", run.who());
    assert!(
        verify_outside(KeySpec::EcP256, alg, &pem1, &digest, &by_old.value.0),
        "[{}] a signature by the old version does not verify with its PEM",
        run.who()
    );
    run.refused(
        "GetPublicKey of an unknown version",
        public_pem(kms, ec_id, Some(NO_SUCH_VERSION)),
        "Forbidden.KeyVersionNotFound",
    );

    // ---- RSA-2048 ENCRYPT/DECRYPT (with the OAEP every HSM has)
    let oaep = AsymmetricAlgorithm::RsaesOaepSha1;
    let rsa = run.create(KeySpec::Rsa2048, Some(KeyUsage::EncryptDecrypt));
    let rsa_id = rsa.key_id.as_str();
    let r1 = rsa.primary_key_version.clone().expect("a primary version");
    let ct1 = run.ok("AsymmetricEncrypt", run.asym_encrypt(rsa_id, None, oaep, b"rsa before"));
    let (_, rsa_pem1) = run.ok("GetPublicKey", public_pem(kms, rsa_id, None));
    let r2 = run.rotate(rsa_id);
    assert_ne!(r2, r1, "[{}]", run.who());
    run.refused(
        "AsymmetricDecrypt of an old ciphertext by the new primary",
        run.asym_decrypt(rsa_id, None, oaep, &ct1.ciphertext_blob.0),
        "InvalidCiphertext",
    );
    let opened = run.ok(
        "AsymmetricDecrypt by the old version",
        run.asym_decrypt(rsa_id, Some(&r1), oaep, &ct1.ciphertext_blob.0),
    );
    assert_eq!(
        (opened.plaintext.expose(), opened.key_version_id.as_str()),
        (&b"rsa before"[..], r1.as_str()),
        "[{}]",
        run.who()
    );
    let outside = oaep_encrypt_outside(&rsa_public_key(KeySpec::Rsa2048, &rsa_pem1), oaep, b"outside, old");
    let opened = run.ok(
        "AsymmetricDecrypt by the old version",
        run.asym_decrypt(rsa_id, Some(&r1), oaep, &outside),
    );
    assert_eq!(opened.plaintext.expose(), b"outside, old", "[{}]", run.who());

    // ---- automatic rotation (due work applied at the clock's time)
    let auto = run.create_with(CreateKeyRequest {
        key_spec: Some(KeySpec::Aes256),
        enable_automatic_rotation: Some(true),
        rotation_interval: Some("7d".into()),
        ..CreateKeyRequest::default()
    });
    let a1 = auto.primary_key_version.clone().expect("a primary version");
    assert_eq!(auto.automatic_rotation, "Enabled", "[{}]", run.who());
    let before = run.ok("Encrypt", run.encrypt(&auto.key_id, b"auto", &ctx));
    run.suite.advance(7 * DAY + MINUTE);
    let (rotated, _) = run.ok("maintain", kms.maintain());
    assert!(rotated >= 1, "[{}] maintain rotated nothing after 7 days", run.who());
    let a2 = primary_version(kms, &auto.key_id);
    assert_ne!(a2, a1, "[{}] automatic rotation made no new primary", run.who());
    let sealed = run.ok("Encrypt", run.encrypt(&auto.key_id, b"auto", &ctx));
    assert_eq!(sealed.key_version_id, a2, "[{}]", run.who());
    let opened = run.ok("Decrypt", run.decrypt(&before.ciphertext_blob.0, &ctx));
    assert_eq!(opened.key_version_id, a1, "[{}]", run.who());
}

#[test]
fn rotation_on_both_engines() {
    on_both_engines("rotation", rotation);
}

// ---------------------------------------------------------------- disable and enable

/// DisableKey refuses every use of a symmetric and of a signing key with the same code on both
/// engines; EnableKey brings them back with their old ciphertexts and signatures.
fn disable_and_enable(run: &Run) {
    let kms = run.kms;
    let alg = SigningAlgorithm::EcdsaSha256;
    let aes = run.create(KeySpec::Aes256, None);
    let ec = run.create(KeySpec::EcP256, None);
    let ctx = context(&[("state", "test")]);
    let sealed = run.ok("Encrypt", run.encrypt(&aes.key_id, b"kept", &ctx));
    let digest = sha256(b"disable");
    let sig = run
        .ok("AsymmetricSign", sign(kms, &ec.key_id, None, alg, &digest))
        .value
        .0;

    for key in [&aes.key_id, &ec.key_id] {
        run.ok("DisableKey", kms.disable_key(&KeyIdRequest::new(key.as_str())));
        assert_eq!(run.describe(key).key_state, Some(KeyState::Disabled), "[{}]", run.who());
    }
    let again = kms.disable_key(&KeyIdRequest::new(aes.key_id.as_str()));
    run.observed("DisableKey of a Disabled key", outcome(&again));

    let disabled = "Rejected.Disabled";
    run.refused("Encrypt", run.encrypt(&aes.key_id, b"x", &ctx), disabled);
    run.refused("Decrypt", run.decrypt(&sealed.ciphertext_blob.0, &ctx), disabled);
    run.refused("GenerateDataKey", run.data_key(&aes.key_id, None, None, &ctx), disabled);
    run.refused(
        "GenerateDataKeyWithoutPlaintext",
        kms.generate_data_key_without_plaintext(&GenerateDataKeyRequest {
            key_id: aes.key_id.clone(),
            ..GenerateDataKeyRequest::default()
        }),
        disabled,
    );
    run.refused(
        "CreateKeyVersion",
        kms.create_key_version(&KeyIdRequest::new(aes.key_id.as_str())),
        disabled,
    );
    run.refused("AsymmetricSign", sign(kms, &ec.key_id, None, alg, &digest), disabled);
    run.refused(
        "AsymmetricVerify",
        verify(kms, &ec.key_id, None, alg, &digest, &sig),
        disabled,
    );
    run.refused("GetPublicKey", public_pem(kms, &ec.key_id, None), disabled);

    for key in [&aes.key_id, &ec.key_id] {
        run.ok("EnableKey", kms.enable_key(&KeyIdRequest::new(key.as_str())));
        assert_eq!(run.describe(key).key_state, Some(KeyState::Enabled), "[{}]", run.who());
    }
    let opened = run.ok("Decrypt after EnableKey", run.decrypt(&sealed.ciphertext_blob.0, &ctx));
    assert_eq!(opened.plaintext.expose(), b"kept", "[{}]", run.who());
    run.ok("Encrypt after EnableKey", run.encrypt(&aes.key_id, b"x", &ctx));
    assert!(
        run.ok(
            "AsymmetricVerify after EnableKey",
            verify(kms, &ec.key_id, None, alg, &digest, &sig)
        ),
        "[{}] the old signature no longer verifies after EnableKey",
        run.who()
    );
    run.ok(
        "AsymmetricSign after EnableKey",
        sign(kms, &ec.key_id, None, alg, &digest),
    );

    // Created disabled.
    let off = run.create_with(CreateKeyRequest {
        key_spec: Some(KeySpec::Aes256),
        enable: Some(false),
        ..CreateKeyRequest::default()
    });
    assert_eq!(off.key_state, Some(KeyState::Disabled), "[{}]", run.who());
    run.refused(
        "Encrypt with a key created Disabled",
        run.encrypt(&off.key_id, b"x", &ctx),
        disabled,
    );
    run.ok("EnableKey", kms.enable_key(&KeyIdRequest::new(off.key_id.as_str())));
    let sealed = run.ok("Encrypt", run.encrypt(&off.key_id, b"now", &ctx));
    let opened = run.ok("Decrypt", run.decrypt(&sealed.ciphertext_blob.0, &ctx));
    assert_eq!(opened.plaintext.expose(), b"now", "[{}]", run.who());
}

#[test]
fn disable_and_enable_on_both_engines() {
    on_both_engines("disable_and_enable", disable_and_enable);
}

// ---------------------------------------------------------------- deletion and purge

/// ScheduleKeyDeletion refuses every use with Rejected.PendingDeletion; CancelKeyDeletion
/// brings a key back Disabled; deletion protection blocks scheduling; after the pending window
/// (on the injected clock) the key is purged, and its ciphertexts, signatures and alias are
/// refused with the same codes on both engines.
fn deletion_and_purge(run: &Run) {
    let kms = run.kms;
    let alg = SigningAlgorithm::EcdsaSha256;
    let alias = format!("alias/purge-{}", run.engine.name());
    let aes = run.create_with(CreateKeyRequest {
        key_spec: Some(KeySpec::Aes256),
        alias: Some(alias.clone()),
        ..CreateKeyRequest::default()
    });
    let ec = run.create(KeySpec::EcP256, None);
    let keeper = run.create(KeySpec::Aes256, None);
    let ctx = context(&[("deletion", "test")]);
    let sealed = run.ok("Encrypt", run.encrypt(&aes.key_id, b"doomed", &ctx));
    let kept = run.ok("Encrypt", run.encrypt(&keeper.key_id, b"kept", &ctx));
    let digest = sha256(b"deletion");
    let sig = run
        .ok("AsymmetricSign", sign(kms, &ec.key_id, None, alg, &digest))
        .value
        .0;
    let schedule = |key_id: &str, days: Option<u32>| {
        kms.schedule_key_deletion(&ScheduleKeyDeletionRequest {
            key_id: key_id.to_owned(),
            pending_window_in_days: days,
        })
    };

    for days in [6, 31] {
        run.refused(
            &format!("ScheduleKeyDeletion with {days} days"),
            schedule(&aes.key_id, Some(days)),
            "InvalidParameter",
        );
    }
    run.refused(
        "ScheduleKeyDeletion without a window",
        schedule(&aes.key_id, None),
        "MissingParameter",
    );

    // Scheduled, then cancelled.
    let scheduled_at = kms.now_ms();
    run.ok("ScheduleKeyDeletion", schedule(&aes.key_id, Some(7)));
    let described = run.describe(&aes.key_id);
    assert_eq!(described.key_state, Some(KeyState::PendingDeletion), "[{}]", run.who());
    assert_eq!(
        described.delete_date,
        Some(format_time(scheduled_at + 7 * DAY_MS)),
        "[{}] DeleteDate",
        run.who()
    );
    let pending = "Rejected.PendingDeletion";
    run.refused("Encrypt while pending", run.encrypt(&aes.key_id, b"x", &ctx), pending);
    run.refused(
        "Decrypt while pending",
        run.decrypt(&sealed.ciphertext_blob.0, &ctx),
        pending,
    );
    run.refused(
        "GenerateDataKey while pending",
        run.data_key(&aes.key_id, None, None, &ctx),
        pending,
    );
    run.refused(
        "EnableKey while pending",
        kms.enable_key(&KeyIdRequest::new(aes.key_id.as_str())),
        pending,
    );
    run.refused(
        "DisableKey while pending",
        kms.disable_key(&KeyIdRequest::new(aes.key_id.as_str())),
        pending,
    );
    run.refused(
        "CreateKeyVersion while pending",
        kms.create_key_version(&KeyIdRequest::new(aes.key_id.as_str())),
        pending,
    );
    run.refused(
        "ScheduleKeyDeletion while pending",
        schedule(&aes.key_id, Some(7)),
        pending,
    );
    run.ok(
        "CancelKeyDeletion",
        kms.cancel_key_deletion(&KeyIdRequest::new(aes.key_id.as_str())),
    );
    assert_eq!(
        run.describe(&aes.key_id).key_state,
        Some(KeyState::Disabled),
        "[{}] CancelKeyDeletion leaves the key Disabled",
        run.who()
    );
    run.refused(
        "CancelKeyDeletion of a key not pending",
        kms.cancel_key_deletion(&KeyIdRequest::new(aes.key_id.as_str())),
        "Rejected.StateModifiedFailed",
    );
    run.ok("EnableKey", kms.enable_key(&KeyIdRequest::new(aes.key_id.as_str())));
    let opened = run.ok(
        "Decrypt after a cancelled deletion",
        run.decrypt(&sealed.ciphertext_blob.0, &ctx),
    );
    assert_eq!(opened.plaintext.expose(), b"doomed", "[{}]", run.who());

    // Deletion protection.
    run.ok(
        "SetDeletionProtection",
        kms.set_deletion_protection(&SetDeletionProtectionRequest {
            protected_resource_arn: aes.arn.clone(),
            enable_deletion_protection: Some(true),
            deletion_protection_description: Some("kept".into()),
        }),
    );
    run.refused(
        "ScheduleKeyDeletion of a protected key",
        schedule(&aes.key_id, Some(7)),
        "Rejected.StateModifiedFailed",
    );
    run.ok(
        "SetDeletionProtection off",
        kms.set_deletion_protection(&SetDeletionProtectionRequest {
            protected_resource_arn: aes.arn.clone(),
            enable_deletion_protection: Some(false),
            deletion_protection_description: None,
        }),
    );

    // Scheduled for good: nothing happens before the window ends, everything after.
    run.ok("ScheduleKeyDeletion", schedule(&aes.key_id, Some(7)));
    run.ok("ScheduleKeyDeletion", schedule(&ec.key_id, Some(7)));
    run.suite.advance(7 * DAY - MINUTE);
    let (_, purged) = run.ok("maintain", kms.maintain());
    assert_eq!(
        purged,
        0,
        "[{}] keys purged before their pending window ended",
        run.who()
    );
    assert_eq!(
        run.describe(&ec.key_id).key_state,
        Some(KeyState::PendingDeletion),
        "[{}] a minute before the end of the window",
        run.who()
    );
    run.suite.advance(2 * MINUTE);
    let (_, purged) = run.ok("maintain", kms.maintain());
    assert_eq!(purged, 2, "[{}] maintain after the pending window", run.who());

    let gone = "Forbidden.KeyNotFound";
    run.refused(
        "DescribeKey after the purge",
        kms.describe_key(&KeyIdRequest::new(aes.key_id.as_str())),
        gone,
    );
    run.refused(
        "Decrypt after the purge",
        run.decrypt(&sealed.ciphertext_blob.0, &ctx),
        gone,
    );
    run.refused("Encrypt after the purge", run.encrypt(&aes.key_id, b"x", &ctx), gone);
    run.refused(
        "AsymmetricVerify after the purge",
        verify(kms, &ec.key_id, None, alg, &digest, &sig),
        gone,
    );
    run.refused("GetPublicKey after the purge", public_pem(kms, &ec.key_id, None), gone);
    run.refused(
        "ListKeyVersions after the purge",
        kms.list_key_versions(&KeyPageRequest {
            key_id: ec.key_id.clone(),
            ..KeyPageRequest::default()
        }),
        gone,
    );
    run.refused(
        "CancelKeyDeletion after the purge",
        kms.cancel_key_deletion(&KeyIdRequest::new(ec.key_id.as_str())),
        gone,
    );
    run.refused(
        "DescribeKey by the alias of a purged key",
        kms.describe_key(&KeyIdRequest::new(alias.as_str())),
        "Forbidden.AliasNotFound",
    );
    let listed = run.ok(
        "ListKeys",
        kms.list_keys(&PageRequest {
            page_size: Some(100),
            ..PageRequest::default()
        }),
    );
    let ids: Vec<&str> = listed.keys.key.iter().map(|k| k.key_id.as_str()).collect();
    assert!(
        !ids.contains(&aes.key_id.as_str()) && !ids.contains(&ec.key_id.as_str()),
        "[{}] ListKeys still lists purged keys",
        run.who()
    );
    // Other keys are untouched.
    let opened = run.ok(
        "Decrypt with a key not deleted",
        run.decrypt(&kept.ciphertext_blob.0, &ctx),
    );
    assert_eq!(opened.plaintext.expose(), b"kept", "[{}]", run.who());
}

#[test]
fn deletion_and_purge_on_both_engines() {
    on_both_engines("deletion_and_purge", deletion_and_purge);
}

// ---------------------------------------------------------------- across engines

/// One contract across engines: a software blob and a hardware blob of the same plaintext have
/// the same size, and ReEncrypt moves a ciphertext from one engine to the other and back.
#[test]
fn re_encrypt_across_engines() {
    if !have_softhsm() {
        return;
    }
    let _serial = serial();
    let suite = Suite::new(SoftHsm::shared());
    let kms = &suite.kms;
    let sw = create_key(kms, kms_core::DEFAULT_INSTANCE_ID, KeySpec::Aes256, None).expect("software key");
    let hw = create_key(kms, suite.hardware(), KeySpec::Aes256, None).expect("hardware key");
    let a = context(&[("side", "a")]);
    let b = context(&[("side", "b")]);
    let encrypt = |key: &str, ctx: &EncryptionContext| {
        kms.encrypt(&EncryptRequest {
            key_id: key.to_owned(),
            plaintext: b"crossing engines".as_slice().into(),
            encryption_context: ctx.clone(),
        })
        .expect("Encrypt")
    };
    let decrypt = |blob: &Bytes, ctx: &EncryptionContext| {
        kms.decrypt(&DecryptRequest {
            ciphertext_blob: blob.clone(),
            encryption_context: ctx.clone(),
        })
    };
    let from_sw = encrypt(&sw.key_id, &a);
    let from_hw = encrypt(&hw.key_id, &a);
    assert_eq!(
        from_sw.ciphertext_blob.0.len(),
        from_hw.ciphertext_blob.0.len(),
        "software and hardware blobs of one plaintext differ in size"
    );
    for (blob, source, destination) in [(&from_sw, &sw, &hw), (&from_hw, &hw, &sw)] {
        let moved = kms
            .re_encrypt(&ReEncryptRequest {
                ciphertext_blob: blob.ciphertext_blob.clone(),
                destination_key_id: destination.key_id.clone(),
                source_encryption_context: a.clone(),
                destination_encryption_context: b.clone(),
            })
            .unwrap_or_else(|e| {
                panic!(
                    "ReEncrypt from {} to {}: {e}",
                    source.dkms_instance_id, destination.dkms_instance_id
                )
            });
        assert_eq!(
            (moved.source_key_id.as_str(), moved.key_id.as_str()),
            (source.key_id.as_str(), destination.key_id.as_str())
        );
        let opened = decrypt(&moved.ciphertext_blob, &b).expect("Decrypt of a re-encrypted blob");
        assert_eq!(opened.plaintext.expose(), b"crossing engines");
        assert_eq!(opened.key_id, destination.key_id);
        assert_eq!(
            code(decrypt(&moved.ciphertext_blob, &a)),
            "InvalidCiphertext",
            "the re-encrypted blob is bound to the destination context"
        );
    }
}

// ---------------------------------------------------------------- SM2 and SM4

/// SM2 and SM4 have no standard PKCS#11 mechanisms: a hardware instance refuses them at
/// CreateKey with Unsupported.KeySpec (and keeps nothing), a software instance makes and uses
/// them.
#[test]
fn sm2_and_sm4_only_in_software() {
    if !have_softhsm() {
        return;
    }
    let _serial = serial();
    let suite = Suite::new(SoftHsm::shared());
    let kms = &suite.kms;
    let count = || kms.list_keys(&PageRequest::default()).expect("ListKeys").total_count;
    let before = count();
    for (spec, usage) in [
        (KeySpec::Sm4, None),
        (KeySpec::EcSm2, None),
        (KeySpec::EcSm2, Some(KeyUsage::EncryptDecrypt)),
    ] {
        let refused = create_key(kms, suite.hardware(), spec, usage);
        assert_eq!(
            code(refused),
            "Unsupported.KeySpec",
            "CreateKey {spec} {usage:?} in the hardware instance"
        );
    }
    assert_eq!(count(), before, "a refused CreateKey left a key behind");

    let software = kms_core::DEFAULT_INSTANCE_ID;
    let sm4 = create_key(kms, software, KeySpec::Sm4, None).expect("SM4 in software");
    let ctx = context(&[("sm", "4")]);
    let sealed = kms
        .encrypt(&EncryptRequest {
            key_id: sm4.key_id.clone(),
            plaintext: b"sm4".as_slice().into(),
            encryption_context: ctx.clone(),
        })
        .expect("SM4 Encrypt");
    let opened = kms
        .decrypt(&DecryptRequest {
            ciphertext_blob: sealed.ciphertext_blob,
            encryption_context: ctx,
        })
        .expect("SM4 Decrypt");
    assert_eq!(opened.plaintext.expose(), b"sm4");

    let signer = create_key(kms, software, KeySpec::EcSm2, None).expect("SM2 signing key in software");
    let digest = sha256(b"stands in for SM3(Z || M)");
    let sig = sign(kms, &signer.key_id, None, SigningAlgorithm::Sm2Dsa, &digest).expect("SM2DSA sign");
    assert!(
        verify(
            kms,
            &signer.key_id,
            None,
            SigningAlgorithm::Sm2Dsa,
            &digest,
            &sig.value.0
        )
        .expect("verify"),
        "an SM2 signature does not verify"
    );
    let decrypter =
        create_key(kms, software, KeySpec::EcSm2, Some(KeyUsage::EncryptDecrypt)).expect("SM2 encryption key");
    let ct = kms
        .asymmetric_encrypt(&AsymmetricEncryptRequest {
            key_id: decrypter.key_id.clone(),
            algorithm: Some(AsymmetricAlgorithm::Sm2Pke),
            plaintext: b"sm2".as_slice().into(),
            ..AsymmetricEncryptRequest::default()
        })
        .expect("SM2PKE encrypt");
    let pt = kms
        .asymmetric_decrypt(&AsymmetricDecryptRequest {
            key_id: decrypter.key_id.clone(),
            algorithm: Some(AsymmetricAlgorithm::Sm2Pke),
            ciphertext_blob: ct.ciphertext_blob,
            ..AsymmetricDecryptRequest::default()
        })
        .expect("SM2PKE decrypt");
    assert_eq!(pt.plaintext.expose(), b"sm2");
}

// ---------------------------------------------------------------- OAEP with SHA-256 in the HSM

/// RSAES_OAEP_SHA_256 in the hardware instance either works like in software (checked by the
/// behaviours above) or, on an HSM without it (SoftHSM2 2.6.1), is refused cleanly: both
/// AsymmetricEncrypt and AsymmetricDecrypt answer Unsupported.Algorithm — never an internal
/// failure, never a ciphertext that seems invalid.
#[test]
fn rsa_oaep_sha256_in_the_hsm_works_or_is_unsupported() {
    if !have_softhsm() {
        return;
    }
    let _serial = serial();
    let suite = Suite::new(SoftHsm::shared());
    let kms = &suite.kms;
    let alg = AsymmetricAlgorithm::RsaesOaepSha256;
    let key = create_key(kms, suite.hardware(), KeySpec::Rsa2048, Some(KeyUsage::EncryptDecrypt))
        .expect("an RSA ENCRYPT/DECRYPT key in the hardware instance");
    let (_, pem) = public_pem(kms, &key.key_id, None).expect("GetPublicKey");
    let outside = oaep_encrypt_outside(&rsa_public_key(KeySpec::Rsa2048, &pem), alg, b"sha-256");
    let encrypted = kms.asymmetric_encrypt(&AsymmetricEncryptRequest {
        key_id: key.key_id.clone(),
        algorithm: Some(alg),
        plaintext: b"sha-256".as_slice().into(),
        ..AsymmetricEncryptRequest::default()
    });
    let decrypted = kms.asymmetric_decrypt(&AsymmetricDecryptRequest {
        key_id: key.key_id.clone(),
        algorithm: Some(alg),
        ciphertext_blob: outside.into(),
        ..AsymmetricDecryptRequest::default()
    });
    match (&encrypted, &decrypted) {
        (Ok(_), Ok(opened)) => assert_eq!(opened.plaintext.expose(), b"sha-256"),
        _ => assert_eq!(
            (outcome(&encrypted), outcome(&decrypted)),
            ("Unsupported.Algorithm", "Unsupported.Algorithm"),
            "{alg} in the hardware instance: AsymmetricEncrypt answered {:?}, AsymmetricDecrypt of a \
             valid ciphertext answered {:?}",
            encrypted.as_ref().err().map(ToString::to_string),
            decrypted.as_ref().err().map(ToString::to_string)
        ),
    }
}
