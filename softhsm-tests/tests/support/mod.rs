//! Helpers shared by the SoftHSM2 integration tests (`behaviour.rs`, `hsm_objects.rs`,
//! `module_hsm.rs`): a store with a software and a hardware instance driven by a manual clock,
//! error codes, checks of signatures and ciphertexts outside Tessera (RustCrypto against
//! GetPublicKey's PEM), tools run with a timeout, and a parser for `pkcs11-tool -O`.
#![allow(dead_code)] // each test binary uses its own subset

use std::fmt::Debug;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kms_core::api::*;
use kms_core::clock::{Clock, ManualClock};
use kms_core::model::*;
use kms_core::{Kms, KmsOptions};
use sha2::{Digest, Sha256};
use softhsm_tests::{SoftHsm, Stores};

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

/// True when `CI=true`: then missing tools are failures, not skips.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True if `program` is on PATH (or is an existing path).
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

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

/// What a finished (or timed-out) tool invocation left behind.
#[derive(Debug)]
pub struct ToolOutput {
    pub command: String,
    /// None when it was killed after the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The command, how it ended and what it printed, for messages.
    pub fn describe(&self) -> String {
        let ended = match self.status {
            Some(status) => status.to_string(),
            None => format!("killed after {}s", TOOL_TIMEOUT.as_secs()),
        };
        format!(
            "$ {}\n{ended}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` with stdin closed and collects its output; kills it (this child only) after
/// [`TOOL_TIMEOUT`].
pub fn run(mut cmd: Command) -> ToolOutput {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
    let mut out_pipe = child.stdout.take().expect("a piped stdout");
    let mut err_pipe = child.stderr.take().expect("a piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("poll a child process") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    ToolOutput {
        command: line,
        status,
        stdout: String::from_utf8_lossy(&out_reader.join().expect("the stdout reader")).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().expect("the stderr reader")).into_owned(),
    }
}

/// target/<profile>/ (the test binary runs from target/<profile>/deps/).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/")
        .to_path_buf()
}

/// The Tessera PKCS#11 module: `TESSERA_PKCS11_MODULE` if set, else the newer of
/// target/<profile>/deps/libtessera_pkcs11.so (built with this test, `pkcs11-module` being a
/// dev-dependency) and target/<profile>/libtessera_pkcs11.so (copied there by `cargo build`).
pub fn tessera_module() -> PathBuf {
    if let Some(path) = std::env::var_os("TESSERA_PKCS11_MODULE") {
        return PathBuf::from(path);
    }
    let profile = profile_dir();
    let candidates = [
        profile.join("deps").join("libtessera_pkcs11.so"),
        profile.join("libtessera_pkcs11.so"),
    ];
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    candidates
        .iter()
        .filter(|p| p.exists())
        .max_by_key(|p| modified(p))
        .unwrap_or(&candidates[0])
        .clone()
}

// ---------------------------------------------------------------- pkcs11-tool -O

/// An object class as `pkcs11-tool -O` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjClass {
    PrivateKey,
    PublicKey,
    SecretKey,
    Certificate,
    Other,
}

/// One object of `pkcs11-tool -O`: its heading and its `name: value` lines.
#[derive(Clone, Debug)]
pub struct P11Object {
    pub class: ObjClass,
    /// e.g. "Private Key Object; EC", "Secret Key Object; AES length 32".
    pub heading: String,
    pub label: Option<String>,
    /// CKA_ID in lower-case hex.
    pub id: Option<String>,
    pub fields: Vec<(String, String)>,
}

impl P11Object {
    /// The value of the line `name` ("Usage", "Access"…).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The comma-separated items of the line `name` ("sensitive", "never extractable"…).
    pub fn items(&self, name: &str) -> Vec<String> {
        self.field(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses the output of `pkcs11-tool -O`.
pub fn parse_objects(text: &str) -> Vec<P11Object> {
    let mut objects: Vec<P11Object> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let class = if line.starts_with("Private Key Object") {
                ObjClass::PrivateKey
            } else if line.starts_with("Public Key Object") {
                ObjClass::PublicKey
            } else if line.starts_with("Secret Key Object") {
                ObjClass::SecretKey
            } else if line.starts_with("Certificate Object") {
                ObjClass::Certificate
            } else if line.contains("Object") {
                ObjClass::Other
            } else {
                continue;
            };
            objects.push(P11Object {
                class,
                heading: line.trim().to_owned(),
                label: None,
                id: None,
                fields: Vec::new(),
            });
            continue;
        }
        let Some(current) = objects.last_mut() else { continue };
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        match name.as_str() {
            "label" => current.label = Some(value.clone()),
            "ID" => current.id = Some(value.to_ascii_lowercase()),
            _ => {}
        }
        current.fields.push((name, value));
    }
    objects
}
