//! Helpers shared by the SoftHSM2 integration tests (`behaviour.rs`, `hsm_objects.rs`,
//! `module_hsm.rs`): a store with a software and a hardware instance driven by a manual clock,
//! error codes, checks of signatures and ciphertexts outside Tessera (RustCrypto against
//! GetPublicKey's PEM), tools run with a timeout, and a parser for `pkcs11-tool -O`.
#![allow(dead_code)] // each test binary uses its own subset

use std::fmt::Debug;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kms_core::api::*;
use kms_core::clock::{Clock, ManualClock};
use kms_core::model::*;
use kms_core::{Kms, KmsOptions};
use sha2::{Digest, Sha256};
use softhsm_tests::{SoftHsm, Stores};

#[path = "../../../pkcs11-module/tests/common/tools.rs"]
mod tools;
#[allow(unused_imports)]
pub use tools::*;

// ---------------------------------------------------------------- the store

/// A store with the default software instance and a hardware instance on the process's SoftHSM2
/// token ([`Stores`]), and a second `Kms` over the same store whose clock only moves when a test
/// moves it (for pending windows and rotation intervals).
pub struct Suite {
    /// The store and its hardware instance (its own `Kms` runs on the system clock).
    pub stores: Stores,
    /// The clock of [`Suite::kms`].
    pub clock: Arc<ManualClock>,
    /// A `Kms` over the same store on [`Suite::clock`]: what the tests drive.
    pub kms: Kms,
}

impl Suite {
    /// A fresh store on the shared token.
    pub fn new(hsm: &SoftHsm) -> Suite {
        let stores = Stores::new(hsm);
        let clock = Arc::new(ManualClock::starting_now());
        let kms = Kms::open_with(
            stores.dir.path(),
            KmsOptions {
                clock: Arc::clone(&clock) as Arc<dyn Clock>,
                ..KmsOptions::default()
            },
        )
        .expect("open the store a second time, on a manual clock");
        Suite { stores, clock, kms }
    }

    /// The hardware instance's id.
    pub fn hardware(&self) -> &str {
        &self.stores.hardware
    }

    /// The instances with the engine kind of each: ("software", kst-default), ("hardware", …).
    pub fn instances(&self) -> [(Engine, &str); 2] {
        let [software, hardware] = self.stores.instances();
        [(Engine::Software, software), (Engine::Hardware, hardware)]
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// Which engine an instance runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Software,
    Hardware,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Software => "software",
            Engine::Hardware => "hardware",
        }
    }

    /// The ProtectionLevel keys of this engine's instances have.
    pub fn protection_level(self) -> ProtectionLevel {
        match self {
            Engine::Software => ProtectionLevel::Software,
            Engine::Hardware => ProtectionLevel::Hsm,
        }
    }
}

/// The error code of a call that must fail.
#[track_caller]
pub fn code<T: Debug>(result: kms_core::Result<T>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.code(),
    }
}

/// "Ok" or the error code: what a call answered, for tables compared across engines.
pub fn outcome<T>(result: &kms_core::Result<T>) -> &'static str {
    match result {
        Ok(_) => "Ok",
        Err(e) => e.code(),
    }
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// CreateKey of `spec` (and `usage`, when given) in `instance`.
pub fn create_key(kms: &Kms, instance: &str, spec: KeySpec, usage: Option<KeyUsage>) -> kms_core::Result<KeyMetadata> {
    kms.create_key(&CreateKeyRequest {
        key_spec: Some(spec),
        key_usage: usage,
        dkms_instance_id: Some(instance.to_owned()),
        description: Some(format!("{spec} in {instance}")),
        ..CreateKeyRequest::default()
    })
    .map(|r| r.key_metadata)
}

/// The primary version id of a key.
pub fn primary_version(kms: &Kms, key_id: &str) -> String {
    kms.describe_key(&KeyIdRequest::new(key_id))
        .expect("DescribeKey")
        .key_metadata
        .primary_key_version
        .expect("a key with material has a primary version")
}

/// GetPublicKey: (the version it answered for, the PEM).
pub fn public_pem(kms: &Kms, key_id: &str, version: Option<&str>) -> kms_core::Result<(String, String)> {
    kms.get_public_key(&GetPublicKeyRequest {
        key_id: key_id.to_owned(),
        key_version_id: version.map(str::to_owned),
    })
    .map(|r| (r.key_version_id, r.public_key))
}

/// AsymmetricSign with an explicit version or the primary.
pub fn sign(
    kms: &Kms,
    key_id: &str,
    version: Option<&str>,
    alg: SigningAlgorithm,
    digest: &[u8],
) -> kms_core::Result<AsymmetricSignResponse> {
    kms.asymmetric_sign(&AsymmetricSignRequest {
        key_id: key_id.to_owned(),
        key_version_id: version.map(str::to_owned),
        algorithm: Some(alg),
        digest: digest.into(),
    })
}

/// AsymmetricVerify with an explicit version or the primary.
pub fn verify(
    kms: &Kms,
    key_id: &str,
    version: Option<&str>,
    alg: SigningAlgorithm,
    digest: &[u8],
    signature: &[u8],
) -> kms_core::Result<bool> {
    kms.asymmetric_verify(&AsymmetricVerifyRequest {
        key_id: key_id.to_owned(),
        key_version_id: version.map(str::to_owned),
        algorithm: Some(alg),
        digest: digest.into(),
        value: signature.into(),
    })
    .map(|r| r.value)
}

// ---------------------------------------------------------------- checks outside Tessera

/// Whether `signature` is a valid `alg` signature of `spec` over `digest` under the public key
/// `pem`, checked with the RustCrypto crates (never with Tessera). Panics when the PEM is not a
/// public key of `spec`.
pub fn verify_outside(spec: KeySpec, alg: SigningAlgorithm, pem: &str, digest: &[u8], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use p256::pkcs8::DecodePublicKey as _;
    match (spec, alg) {
        (KeySpec::EcP256, SigningAlgorithm::EcdsaSha256) => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
                .unwrap_or_else(|e| panic!("GetPublicKey's PEM is not a P-256 public key ({e}):\n{pem}"));
            p256::ecdsa::Signature::from_der(signature).is_ok_and(|s| key.verify_prehash(digest, &s).is_ok())
        }
        (KeySpec::EcP256K, SigningAlgorithm::EcdsaSha256) => {
            let key = k256::ecdsa::VerifyingKey::from_public_key_pem(pem)
                .unwrap_or_else(|e| panic!("GetPublicKey's PEM is not a secp256k1 public key ({e}):\n{pem}"));
            // k256 accepts low-S signatures only, as Bitcoin-style verifiers do.
            k256::ecdsa::Signature::from_der(signature).is_ok_and(|s| key.verify_prehash(digest, &s).is_ok())
        }
        (KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096, _) => {
            let key = rsa_public_key(spec, pem);
            match alg {
                SigningAlgorithm::RsaPssSha256 => key.verify(rsa::Pss::<Sha256>::new(), digest, signature).is_ok(),
                SigningAlgorithm::RsaPkcs1Sha256 => key
                    .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), digest, signature)
                    .is_ok(),
                other => panic!("{other} is not an RSA signing algorithm"),
            }
        }
        (spec, alg) => panic!("no outside check for {spec} {alg}"),
    }
}

/// The twin of a DER ECDSA signature with `s` replaced by `n - s`: as valid mathematically, and
/// the other of its low-S/high-S pair.
pub fn ecdsa_s_twin(spec: KeySpec, der: &[u8]) -> Vec<u8> {
    match spec {
        KeySpec::EcP256 => {
            let sig = p256::ecdsa::Signature::from_der(der).expect("a DER P-256 signature");
            p256::ecdsa::Signature::from_scalars(sig.r(), -sig.s())
                .expect("(r, n - s)")
                .to_der()
                .as_bytes()
                .to_vec()
        }
        KeySpec::EcP256K => {
            let sig = k256::ecdsa::Signature::from_der(der).expect("a DER secp256k1 signature");
            k256::ecdsa::Signature::from_scalars(sig.r(), -sig.s())
                .expect("(r, n - s)")
                .to_der()
                .as_bytes()
                .to_vec()
        }
        other => panic!("{other} does not sign with ECDSA"),
    }
}

/// The RSA public key of a PEM, checked to have the size of `spec`.
pub fn rsa_public_key(spec: KeySpec, pem: &str) -> rsa::PublicKey {
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::PublicKey::from_public_key_pem(pem)
        .unwrap_or_else(|e| panic!("GetPublicKey's PEM is not an RSA public key ({e}):\n{pem}"));
    let bits = match spec {
        KeySpec::Rsa2048 => 2048,
        KeySpec::Rsa3072 => 3072,
        KeySpec::Rsa4096 => 4096,
        other => panic!("{other} is not an RSA spec"),
    };
    assert_eq!(key.size() * 8, bits, "GetPublicKey's RSA key is not {bits} bits");
    key
}

/// RSAES-OAEP encryption outside Tessera (SHA-1 or SHA-256 for both the label and MGF1).
pub fn oaep_encrypt_outside(key: &rsa::PublicKey, alg: AsymmetricAlgorithm, plaintext: &[u8]) -> Vec<u8> {
    let mut rng = getrandom::SysRng;
    match alg {
        AsymmetricAlgorithm::RsaesOaepSha1 => key.encrypt(&mut rng, rsa::Oaep::<sha1::Sha1>::new(), plaintext),
        AsymmetricAlgorithm::RsaesOaepSha256 => key.encrypt(&mut rng, rsa::Oaep::<Sha256>::new(), plaintext),
        other => panic!("{other} is not an RSA encryption algorithm"),
    }
    .expect("RSAES-OAEP encryption with the rsa crate")
}

/// The DER of a PEM's body.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("a PEM body is base64")
}

/// `bytes` with one bit of byte `at` flipped.
pub fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut changed = bytes.to_vec();
    changed[at] ^= 0x01;
    changed
}

/// Hex of bytes, as `pkcs11-tool` shows and takes a CKA_ID.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------- tools

/// True if SoftHSM2 and every tool of `needed` is there; else prints SKIPPED (or fails under
/// `CI=true`) and returns false.
pub fn require(test: &str, needed: &[&str]) -> bool {
    if !softhsm_tests::have_softhsm() {
        return false;
    }
    let missing: Vec<&str> = needed.iter().copied().filter(|p| !on_path(p)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: missing {missing:?}, and CI=true requires them (Debian: softhsm2 opensc libengine-pkcs11-openssl)"
    );
    eprintln!("SKIPPED {test}: missing {missing:?}");
    false
}

/// The longest one tool invocation may take.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` with stdin closed and collects its output; kills it (this child only) after
/// [`TOOL_TIMEOUT`].
pub fn run(cmd: Command) -> ToolOutput {
    run_with_timeout(cmd, TOOL_TIMEOUT)
}
