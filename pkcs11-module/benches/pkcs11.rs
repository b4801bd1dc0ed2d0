//! Throughput of Tessera's PKCS#11 module (`libtessera_pkcs11.so`) next to kms-core called
//! directly and next to SoftHSM2's module, in one run, on 1 and 2 threads.
//!
//! Rows: ECDSA P-256 sign (CKM_ECDSA on a 32-byte digest), RSA-2048 PKCS#1 v1.5 sign (CKM_RSA_PKCS
//! on the SHA-256 DigestInfo of a digest, the same work as AsymmetricSign RSA_PKCS1_SHA_256),
//! AES-256-GCM encrypt of 4 KiB (CKM_AES_GCM, 12-byte IV, 128-bit tag), and C_FindObjects by
//! CKA_LABEL among 1,000 and 10,000 keys. Both PKCS#11 modules go through the same cryptoki code:
//! `C_SignInit` + `C_Sign` (cryptoki asks for the length first, then signs), `C_EncryptInit` +
//! `C_Encrypt`, `C_FindObjectsInit` + `C_FindObjects` + `C_FindObjectsFinal`. kms-core's rows call
//! `Kms::asymmetric_sign`, `Kms::encrypt` (which also builds its ciphertext blob) and, for the
//! find rows, `Kms::describe_key` on `alias/<label>` (the API's lookup by name). A fourth backend,
//! `crates`, does each signing and encryption row's cryptography with the crates alone (p256, rsa,
//! aes-gcm; no KMS, no PKCS#11): the reference for what this machine gives, and above all for
//! how far two threads can scale that work here. A fifth, `tessera-c`, times the find rows
//! through the module's C functions called straight (template and handle array on the stack):
//! cryptoki allocates three buffers a search, and glibc's allocator, not the module, is what
//! grows most per search on two threads.
//!
//! Each worker thread has its own session (its own `Kms` call for kms-core) and runs its operation
//! in a loop for a fixed time; a cell's ops/s is the total over its threads. All cells of a row
//! (3 backends x 1 and 2 threads) are timed in alternating slices, forward then backward, so
//! that drift in machine load falls on all alike. The Tessera cells fail soft: a row the module
//! cannot do prints `tessera: <error>` and the run goes on.
//!
//! `cargo bench -p pkcs11-module --bench pkcs11 [-- ROW-FILTER…]`. The bench re-runs itself once
//! per row, each row in a child process of its own whose environment points `SOFTHSM2_CONF` and
//! `TESSERA_PKCS11_CONFIG` at files in a fresh temporary directory (the stores and SoftHSM2's
//! token live there too), so that no row measures what the rows before it left in the process
//! (threads, allocator state, caches); the parent prints the table. Knobs:
//! - `TESSERA_BENCH_SECS` (default 1.5): seconds of timing per backend and thread count in a row;
//! - `TESSERA_BENCH_THREADS` (default `1,2`);
//! - `TESSERA_BENCH_FIND_KEYS` (default `1000,10000`; `0` skips the find rows): the key counts;
//!   each find row's process makes its keys afresh, through kms-core and through each module
//!   (kms-core 0.3 to 0.6 ms a key here, 10,000 in about 6 s; the module about 1.2 ms a key);
//! - `TESSERA_BENCH_SOFTHSM_FIND_MAX` (default 1000): the largest count also made on SoftHSM2
//!   (about 6 s per 1,000 keys, and each find then takes about 18 ms per 1,000 keys);
//! - `TESSERA_BENCH_SOFTHSM` (default `/usr/lib/softhsm/libsofthsm2.so`; empty skips SoftHSM2);
//! - `TESSERA_BENCH_BACKENDS` (default `tessera,kms-core,softhsm,crates,tessera-c`): the backends timed (one
//!   alone is handy under a profiler);
//! - `TESSERA_PKCS11_MODULE`: the module to test instead of `target/<profile>/libtessera_pkcs11.so`.

// The `tessera-c` cells call the module's C functions themselves (each unsafe block says why it
// holds), as the module's own tests do.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use cryptoki_sys::{CK_ATTRIBUTE, CK_FUNCTION_LIST, CK_OBJECT_HANDLE, CK_RV, CK_ULONG, CKA_LABEL, CKR_OK};
use kms_core::Kms;
use kms_core::api::{AsymmetricSignRequest, Bytes, CreateKeyRequest, EncryptRequest, KeyIdRequest};
use kms_core::blob::EncryptionContext;
use kms_core::model::{KeySpec, KeyUsage, SigningAlgorithm};
use sha2::{Digest, Sha256};

/// Set in the child run: the temporary directory holding the store and the configuration files.
const CHILD_ENV: &str = "TESSERA_BENCH_CHILD_DIR";
/// Set in the child run: the one row it times.
const ROW_ENV: &str = "TESSERA_BENCH_ROW";
const SOFTHSM_DEFAULT: &str = "/usr/lib/softhsm/libsofthsm2.so";

const SO_PIN: &str = "so-pin-8765";
const USER_PIN: &str = "user-pin-1234";
const TOKEN_LABEL: &str = "tessera-bench";

/// The plaintext size of the AES-GCM row.
const MSG_LEN: usize = 4096;
/// AES-GCM tag, bytes.
const TAG_LEN: usize = 16;
/// The label every find row looks up; the other keys are `find-00001`, `find-00002`, …
const FIND_TARGET: &str = "find-target";
/// DER of the prime256v1 OID (CKA_EC_PARAMS).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DigestInfo prefix of SHA-256 (RFC 8017 §9.2), for CKM_RSA_PKCS.
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
];
/// Timed slices per cell: the cells of a row alternate this many times.
const SLICES: u32 = 10;

// ------------------------------------------------------------------ backends and rows

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Backend {
    Tessera,
    KmsCore,
    SoftHsm,
    /// The row's cryptography by the crates alone (no KMS, no PKCS#11): what this machine gives.
    Crates,
    /// Find rows only: Tessera's module through its C functions called straight, the template
    /// and the handle array on the stack, so that the client allocates nothing: the module's own
    /// scaling, apart from cryptoki's and the allocator's.
    TesseraDirect,
}

impl Backend {
    const ALL: [Backend; 5] = [
        Backend::Tessera,
        Backend::KmsCore,
        Backend::SoftHsm,
        Backend::Crates,
        Backend::TesseraDirect,
    ];

    fn name(self) -> &'static str {
        match self {
            Backend::Tessera => "tessera",
            Backend::KmsCore => "kms-core",
            Backend::SoftHsm => "softhsm",
            Backend::Crates => "crates",
            Backend::TesseraDirect => "tessera-c",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    SignEcdsa,
    SignRsa,
    AesGcm,
    /// Find one key by label among this many.
    Find(usize),
}

impl Op {
    fn name(self) -> String {
        match self {
            Op::SignEcdsa => "sign_ECDSA_P256".into(),
            Op::SignRsa => "sign_RSA_2048_PKCS1".into(),
            Op::AesGcm => "encrypt_AES_256_GCM_4KiB".into(),
            Op::Find(n) => format!("find_label_{n}_keys"),
        }
    }
}

/// One thread's operation, run in a loop; an error stops the cell.
type Worker<'a> = Box<dyn FnMut() -> Result<(), String> + Send + 'a>;

/// A cell's result: ops/s, or why there is none.
type CellResult = Result<f64, String>;

fn p11_err(what: &str, e: P11Error) -> String {
    match e {
        // RvError's Display is a paragraph of the standard; its name says enough.
        P11Error::Pkcs11(rv, f) => format!("{what}: C_{f:?}: {rv:?}"),
        e => format!("{what}: {e}"),
    }
}

// ------------------------------------------------------------------ PKCS#11 modules

/// The keys a PKCS#11 backend signs and encrypts with.
#[derive(Clone, Copy)]
struct P11Keys {
    ec_private: ObjectHandle,
    ec_public: ObjectHandle,
    rsa_private: ObjectHandle,
    rsa_public: ObjectHandle,
    aes: ObjectHandle,
}

/// A loaded, initialised module with its token set up and the user logged in.
struct P11 {
    ctx: Pkcs11,
    slot: Slot,
    /// Open for the whole run: the login lives as long as the application has a session.
    main: Session,
    keys: Result<P11Keys, String>,
    /// Find keys made so far (the target included).
    find_keys: usize,
}

impl P11 {
    /// Loads `module`, initialises its token (as SoftHSM2 wants: C_InitToken, SO login,
    /// C_InitPIN), logs the user in and opens the main session.
    fn open(module: &Path) -> Result<P11, String> {
        if !module.exists() {
            return Err(format!("no module at {}", module.display()));
        }
        let ctx = Pkcs11::new(module).map_err(|e| p11_err("loading the module", e))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| p11_err("C_Initialize", e))?;
        let slot = setup_token(&ctx, TOKEN_LABEL)?;
        let main = ctx.open_rw_session(slot).map_err(|e| p11_err("C_OpenSession", e))?;
        login_user(&main)?;
        Ok(P11 {
            ctx,
            slot,
            main,
            keys: Err("no keys yet".into()),
            find_keys: 0,
        })
    }

    fn session(&self) -> Result<Session, String> {
        self.ctx
            .open_rw_session(self.slot)
            .map_err(|e| p11_err("C_OpenSession", e))
    }
}

/// The slot holding the initialised token labelled `label`, if any.
fn slot_with_label(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, String> {
    for slot in ctx.get_slots_with_token().map_err(|e| p11_err("C_GetSlotList", e))? {
        let info = ctx.get_token_info(slot).map_err(|e| p11_err("C_GetTokenInfo", e))?;
        if info.token_initialized() && info.label() == label {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// Initialises a fresh token as `label` (unless one is already there) and its user PIN; returns
/// its slot. SoftHSM2 moves a token it initialises to a new slot: look it up by label after.
fn setup_token(ctx: &Pkcs11, label: &str) -> Result<Slot, String> {
    if let Some(slot) = slot_with_label(ctx, label)? {
        return Ok(slot);
    }
    let slots = ctx.get_slots_with_token().map_err(|e| p11_err("C_GetSlotList", e))?;
    let mut fresh = None;
    for slot in slots {
        let info = ctx.get_token_info(slot).map_err(|e| p11_err("C_GetTokenInfo", e))?;
        if !info.token_initialized() {
            fresh = Some(slot);
            break;
        }
    }
    let fresh = fresh.ok_or("no slot with an uninitialised token")?;
    ctx.init_token(fresh, &AuthPin::from(SO_PIN), label)
        .map_err(|e| p11_err("C_InitToken", e))?;
    let slot = slot_with_label(ctx, label)?.ok_or("the initialised token is in no slot")?;
    let so = ctx.open_rw_session(slot).map_err(|e| p11_err("C_OpenSession", e))?;
    so.login(UserType::So, Some(&AuthPin::from(SO_PIN)))
        .map_err(|e| p11_err("C_Login(SO)", e))?;
    so.init_pin(&AuthPin::from(USER_PIN))
        .map_err(|e| p11_err("C_InitPIN", e))?;
    so.logout().map_err(|e| p11_err("C_Logout(SO)", e))?;
    Ok(slot)
}

/// Logs the user in; a login already made by another session of this application is fine.
fn login_user(session: &Session) -> Result<(), String> {
    match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(p11_err("C_Login(USER)", e)),
    }
}

/// Generates the EC, RSA and AES token keys labelled `<prefix>-ec` etc.
fn generate_keys(s: &Session, prefix: &str) -> Result<P11Keys, String> {
    let label = |what: &str| Attribute::Label(format!("{prefix}-{what}").into_bytes());
    let (ec_public, ec_private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                label("ec"),
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::Verify(true),
            ],
            &[Attribute::Token(true), label("ec"), Attribute::Sign(true)],
        )
        .map_err(|e| p11_err("C_GenerateKeyPair(EC P-256)", e))?;
    let (rsa_public, rsa_private) = s
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(true),
                label("rsa"),
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                Attribute::Verify(true),
            ],
            &[Attribute::Token(true), label("rsa"), Attribute::Sign(true)],
        )
        .map_err(|e| p11_err("C_GenerateKeyPair(RSA-2048)", e))?;
    let aes = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                label("aes"),
                Attribute::ValueLen(32.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .map_err(|e| p11_err("C_GenerateKey(AES-256)", e))?;
    Ok(P11Keys {
        ec_private,
        ec_public,
        rsa_private,
        rsa_public,
        aes,
    })
}

/// The one object of `class` labelled `label`.
fn find_one(s: &Session, class: ObjectClass, label: &str) -> Result<ObjectHandle, String> {
    let found = s
        .find_objects(&[Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())])
        .map_err(|e| p11_err("C_FindObjects", e))?;
    found
        .first()
        .copied()
        .ok_or_else(|| format!("no {class} labelled {label}"))
}

/// The keys kms-core made (`alias/kms-ec` …), found by label: Tessera's fallback when it cannot
/// generate keys itself.
fn find_kms_keys(s: &Session) -> Result<P11Keys, String> {
    Ok(P11Keys {
        ec_private: find_one(s, ObjectClass::PRIVATE_KEY, "kms-ec")?,
        ec_public: find_one(s, ObjectClass::PUBLIC_KEY, "kms-ec")?,
        rsa_private: find_one(s, ObjectClass::PRIVATE_KEY, "kms-rsa")?,
        rsa_public: find_one(s, ObjectClass::PUBLIC_KEY, "kms-rsa")?,
        aes: find_one(s, ObjectClass::SECRET_KEY, "kms-aes")?,
    })
}

fn gcm_iv(worker: usize, counter: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[..4].copy_from_slice(&u32::try_from(worker).unwrap_or(u32::MAX).to_be_bytes());
    iv[4..].copy_from_slice(&counter.to_be_bytes());
    iv
}

/// Data shared by all rows.
struct Inputs {
    digest: [u8; 32],
    /// DigestInfo(SHA-256) || digest, for CKM_RSA_PKCS.
    digest_info: Vec<u8>,
    msg: Arc<Vec<u8>>,
}

/// Runs the row's operation once on `s` and checks its output with the module itself (verify,
/// decrypt, the found handle's label).
fn validate_p11(s: &Session, keys: &P11Keys, op: Op, inputs: &Inputs) -> Result<(), String> {
    match op {
        Op::SignEcdsa => {
            let sig = s
                .sign(&Mechanism::Ecdsa, keys.ec_private, &inputs.digest)
                .map_err(|e| p11_err("ECDSA sign", e))?;
            if sig.len() != 64 {
                return Err(format!("an ECDSA P-256 signature of {} bytes, not 64", sig.len()));
            }
            s.verify(&Mechanism::Ecdsa, keys.ec_public, &inputs.digest, &sig)
                .map_err(|e| p11_err("ECDSA verify", e))
        }
        Op::SignRsa => {
            let sig = s
                .sign(&Mechanism::RsaPkcs, keys.rsa_private, &inputs.digest_info)
                .map_err(|e| p11_err("RSA sign", e))?;
            s.verify(&Mechanism::RsaPkcs, keys.rsa_public, &inputs.digest_info, &sig)
                .map_err(|e| p11_err("RSA verify", e))
        }
        Op::AesGcm => {
            let mut iv = gcm_iv(usize::MAX, 0);
            let ct = s
                .encrypt(
                    &Mechanism::AesGcm(GcmParams::new(&mut iv, &[], 128.into()).map_err(|e| p11_err("GCM", e))?),
                    keys.aes,
                    &inputs.msg,
                )
                .map_err(|e| p11_err("AES-GCM encrypt", e))?;
            let pt = s
                .decrypt(
                    &Mechanism::AesGcm(GcmParams::new(&mut iv, &[], 128.into()).map_err(|e| p11_err("GCM", e))?),
                    keys.aes,
                    &ct,
                )
                .map_err(|e| p11_err("AES-GCM decrypt", e))?;
            if pt != *inputs.msg {
                return Err("AES-GCM decrypts to something else".into());
            }
            Ok(())
        }
        Op::Find(_) => {
            let found = s
                .find_objects(&[Attribute::Label(FIND_TARGET.as_bytes().to_vec())])
                .map_err(|e| p11_err("C_FindObjects", e))?;
            if found.len() != 1 {
                return Err(format!("{} objects labelled {FIND_TARGET}, not 1", found.len()));
            }
            Ok(())
        }
    }
}

/// The row's timed operation on its own session.
fn p11_worker(session: Session, keys: P11Keys, op: Op, inputs: &Inputs, index: usize) -> Worker<'static> {
    match op {
        Op::SignEcdsa => {
            let digest = inputs.digest;
            Box::new(move || {
                let sig = session
                    .sign(&Mechanism::Ecdsa, keys.ec_private, &digest)
                    .map_err(|e| p11_err("ECDSA sign", e))?;
                if sig.len() == 64 {
                    Ok(())
                } else {
                    Err(format!("an ECDSA signature of {} bytes", sig.len()))
                }
            })
        }
        Op::SignRsa => {
            let data = inputs.digest_info.clone();
            Box::new(move || {
                let sig = session
                    .sign(&Mechanism::RsaPkcs, keys.rsa_private, &data)
                    .map_err(|e| p11_err("RSA sign", e))?;
                if sig.len() == 256 {
                    Ok(())
                } else {
                    Err(format!("an RSA-2048 signature of {} bytes", sig.len()))
                }
            })
        }
        Op::AesGcm => {
            let msg = Arc::clone(&inputs.msg);
            let mut counter = 0u64;
            Box::new(move || {
                counter += 1;
                let mut iv = gcm_iv(index, counter);
                let params = GcmParams::new(&mut iv, &[], 128.into()).map_err(|e| p11_err("GCM", e))?;
                let ct = session
                    .encrypt(&Mechanism::AesGcm(params), keys.aes, &msg)
                    .map_err(|e| p11_err("AES-GCM encrypt", e))?;
                if ct.len() == MSG_LEN + TAG_LEN {
                    Ok(())
                } else {
                    Err(format!("{} bytes of AES-GCM output", ct.len()))
                }
            })
        }
        Op::Find(_) => {
            // Made on the worker's own thread at its first search, not next to another
            // worker's on the thread that made the workers.
            let mut template = None;
            Box::new(move || {
                let template = template.get_or_insert_with(|| [Attribute::Label(FIND_TARGET.as_bytes().to_vec())]);
                let found = session
                    .find_objects(template)
                    .map_err(|e| p11_err("C_FindObjects", e))?;
                if found.len() == 1 {
                    Ok(())
                } else {
                    Err(format!("{} objects found", found.len()))
                }
            })
        }
    }
}

/// A PKCS#11 backend's workers for `op`, checked once first.
fn p11_workers(
    p11: &Result<P11, String>,
    op: Op,
    inputs: &Inputs,
    count: usize,
) -> Result<Vec<Worker<'static>>, String> {
    let p11 = p11.as_ref().map_err(Clone::clone)?;
    if let Op::Find(n) = op
        && p11.find_keys < n
    {
        return Err(format!("not run with {n} keys (see TESSERA_BENCH_SOFTHSM_FIND_MAX)"));
    }
    let keys = p11.keys.clone()?;
    let mut workers = Vec::with_capacity(count);
    for index in 0..count {
        let session = p11.session()?;
        if index == 0 {
            validate_p11(&session, &keys, op, inputs)?;
        }
        workers.push(p11_worker(session, keys, op, inputs, index));
    }
    Ok(workers)
}

// ------------------------------------------------------------------ kms-core

struct KmsKeys {
    sign_ec: AsymmetricSignRequest,
    sign_rsa: AsymmetricSignRequest,
    encrypt: EncryptRequest,
}

fn create_key(kms: &Kms, spec: KeySpec, usage: KeyUsage, alias: &str) -> Result<String, String> {
    kms.create_key(&CreateKeyRequest {
        key_spec: Some(spec),
        key_usage: Some(usage),
        alias: Some(format!("alias/{alias}")),
        ..CreateKeyRequest::default()
    })
    .map(|r| r.key_metadata.key_id)
    .map_err(|e| format!("CreateKey {alias}: {e}"))
}

fn kms_keys(kms: &Kms, inputs: &Inputs) -> Result<KmsKeys, String> {
    let ec = create_key(kms, KeySpec::EcP256, KeyUsage::SignVerify, "kms-ec")?;
    let rsa = create_key(kms, KeySpec::Rsa2048, KeyUsage::SignVerify, "kms-rsa")?;
    let aes = create_key(kms, KeySpec::Aes256, KeyUsage::EncryptDecrypt, "kms-aes")?;
    let sign = |key_id: String, algorithm| AsymmetricSignRequest {
        key_id,
        key_version_id: None,
        algorithm: Some(algorithm),
        digest: Bytes(inputs.digest.to_vec()),
    };
    Ok(KmsKeys {
        sign_ec: sign(ec, SigningAlgorithm::EcdsaSha256),
        sign_rsa: sign(rsa, SigningAlgorithm::RsaPkcs1Sha256),
        encrypt: EncryptRequest {
            key_id: aes,
            plaintext: inputs.msg.as_slice().into(),
            encryption_context: EncryptionContext::new(),
        },
    })
}

fn kms_workers<'a>(
    kms: &'a Kms,
    keys: &'a Result<KmsKeys, String>,
    op: Op,
    count: usize,
) -> Result<Vec<Worker<'a>>, String> {
    let keys = keys.as_ref().map_err(Clone::clone)?;
    let one = || -> Worker<'a> {
        match op {
            Op::SignEcdsa => Box::new(move || kms.asymmetric_sign(&keys.sign_ec).map(drop).map_err(|e| e.to_string())),
            Op::SignRsa => Box::new(move || kms.asymmetric_sign(&keys.sign_rsa).map(drop).map_err(|e| e.to_string())),
            Op::AesGcm => Box::new(move || kms.encrypt(&keys.encrypt).map(drop).map_err(|e| e.to_string())),
            Op::Find(_) => {
                let req = KeyIdRequest::new(format!("alias/{FIND_TARGET}"));
                Box::new(move || kms.describe_key(&req).map(drop).map_err(|e| e.to_string()))
            }
        }
    };
    let mut workers: Vec<Worker<'a>> = (0..count).map(|_| one()).collect();
    if let Some(first) = workers.first_mut() {
        first()?;
    }
    Ok(workers)
}

// ------------------------------------------------------------------ the crates alone

/// The row's cryptography by the crates Tessera's software engine uses (p256, rsa, aes-gcm),
/// with no KMS and no PKCS#11 around it, on keys of its own: the reference for what this machine
/// gives. Its 2-thread scaling is the ceiling for the other backends' on the same row (on a VM,
/// two busy vCPUs often give less than twice one). Each call allocates its output, as the
/// others' callers do. Find has no crate-only equivalent.
fn crate_workers(op: Op, inputs: &Inputs, count: usize) -> Result<Vec<Worker<'static>>, String> {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use rsa::signature::hazmat::PrehashSigner;

    let seed: [u8; 32] = Sha256::digest(b"tessera bench: the crates' own keys").into();
    let one = |index: usize| -> Result<Worker<'static>, String> {
        Ok(match op {
            Op::SignEcdsa => {
                let key = p256::ecdsa::SigningKey::from_slice(&seed).map_err(|e| format!("P-256 key: {e}"))?;
                let digest = inputs.digest;
                Box::new(move || {
                    let sig: p256::ecdsa::Signature =
                        key.sign_prehash(&digest).map_err(|e| format!("ECDSA sign: {e}"))?;
                    std::hint::black_box(sig.to_vec());
                    Ok(())
                })
            }
            Op::SignRsa => {
                let key = RSA_KEY.get_or_init(|| {
                    rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(|e| format!("RSA-2048 key: {e}"))
                });
                let key = key.clone()?;
                let data = inputs.digest_info.clone();
                Box::new(move || {
                    let sig = key
                        .sign(rsa::Pkcs1v15Sign::new_unprefixed(), &data)
                        .map_err(|e| format!("RSA sign: {e}"))?;
                    if sig.len() == 256 {
                        Ok(())
                    } else {
                        Err(format!("an RSA-2048 signature of {} bytes", sig.len()))
                    }
                })
            }
            Op::AesGcm => {
                let cipher = aes_gcm::Aes256Gcm::new_from_slice(&seed).map_err(|e| format!("AES key: {e}"))?;
                let msg = Arc::clone(&inputs.msg);
                let mut counter = 0u64;
                Box::new(move || {
                    counter += 1;
                    let iv = gcm_iv(index, counter);
                    let mut out = Vec::with_capacity(MSG_LEN + TAG_LEN);
                    out.extend_from_slice(&msg);
                    let tag = cipher
                        .encrypt_inout_detached(&iv.into(), &[], out.as_mut_slice().into())
                        .map_err(|e| format!("AES-GCM encrypt: {e}"))?;
                    out.extend_from_slice(&tag);
                    std::hint::black_box(out);
                    Ok(())
                })
            }
            Op::Find(_) => return Err(format!("{NOT_APPLICABLE}: no crate-only equivalent")),
        })
    };
    let mut workers = (0..count).map(one).collect::<Result<Vec<_>, _>>()?;
    if let Some(first) = workers.first_mut() {
        first()?;
    }
    Ok(workers)
}

// ------------------------------------------------------------------ the module's C functions

/// The module's own function list, from the library cryptoki loaded (a second `dlopen` of the
/// same file gives the same loaded module, initialised and logged in by cryptoki).
fn function_list(module: &Path) -> Result<&'static CK_FUNCTION_LIST, String> {
    // SAFETY: loading the module runs only its Rust initialisers; it is never unloaded (leaked).
    let library = unsafe { libloading::Library::new(module) }.map_err(|e| format!("{}: {e}", module.display()))?;
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: C_GetFunctionList has this C signature (PKCS#11 v2.40, 5.2).
    let get =
        unsafe { library.get::<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV>(b"C_GetFunctionList\0") }
            .map_err(|e| format!("C_GetFunctionList: {e}"))?;
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: `list` is a valid place for the pointer.
    let rv = unsafe { get(&mut list) };
    if rv != CKR_OK {
        return Err(format!("C_GetFunctionList: {rv:#x}"));
    }
    // SAFETY: on CKR_OK the module points `list` at its static function list.
    unsafe { list.as_ref() }.ok_or_else(|| "C_GetFunctionList gave no list".to_owned())
}

/// Find by label through the module's C functions, on sessions cryptoki opened (and keeps open).
fn direct_find_workers(
    p11: &Result<P11, String>,
    module: &Path,
    op: Op,
    count: usize,
) -> Result<Vec<Worker<'static>>, String> {
    if !matches!(op, Op::Find(_)) {
        return Err(format!("{NOT_APPLICABLE}: find rows only"));
    }
    let p11 = p11.as_ref().map_err(Clone::clone)?;
    let list = function_list(module)?;
    let (Some(init), Some(find), Some(finish)) = (list.C_FindObjectsInit, list.C_FindObjects, list.C_FindObjectsFinal)
    else {
        return Err("the module lacks the find functions".into());
    };
    let mut workers: Vec<Worker<'static>> = Vec::with_capacity(count);
    for _ in 0..count {
        let session = p11.session()?;
        workers.push(Box::new(move || {
            let handle = session.handle();
            let mut label: [u8; FIND_TARGET.len()] = *b"find-target";
            let mut template = [CK_ATTRIBUTE {
                type_: CKA_LABEL,
                pValue: label.as_mut_ptr().cast(),
                ulValueLen: label.len() as CK_ULONG,
            }];
            let mut found: [CK_OBJECT_HANDLE; 4] = [0; 4];
            let mut n: CK_ULONG = 0;
            // SAFETY: `handle` is a session cryptoki keeps open for this closure's life; the
            // template, its value, the array and the count are valid for the lengths passed.
            let rvs = unsafe {
                [
                    init(handle, template.as_mut_ptr(), 1),
                    find(handle, found.as_mut_ptr(), found.len() as CK_ULONG, &mut n),
                    finish(handle),
                ]
            };
            match rvs.iter().find(|rv| **rv != CKR_OK) {
                Some(rv) => Err(format!("a find function returned {rv:#x}")),
                None if n == 1 => Ok(()),
                None => Err(format!("{n} objects found")),
            }
        }));
    }
    if let Some(first) = workers.first_mut() {
        first()?;
    }
    Ok(workers)
}

/// The crates' RSA key, made once per run (a second or so).
static RSA_KEY: std::sync::OnceLock<Result<rsa::PrivateKey, String>> = std::sync::OnceLock::new();

/// Makes `total` find keys in the (fresh) store: `find-target` and fillers, two writers at a time.
fn make_kms_find_keys(kms: &Kms, total: usize) -> Result<(), String> {
    let started = Instant::now();
    println!("kms-core: creating {total} AES keys for the find rows…");
    create_key(kms, KeySpec::Aes256, KeyUsage::EncryptDecrypt, FIND_TARGET)?;
    let next = std::sync::atomic::AtomicUsize::new(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total {
                            return Ok(());
                        }
                        create_key(kms, KeySpec::Aes256, KeyUsage::EncryptDecrypt, &format!("find-{i:05}"))?;
                        if i.is_multiple_of(1000) {
                            println!("  … {i} keys, {:.0} s", started.elapsed().as_secs_f64());
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err("a key-creating thread panicked".into()))
        })
    })?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "kms-core: {total} find keys created in {secs:.1} s ({:.0} keys/s)",
        total as f64 / secs
    );
    Ok(())
}

/// Brings a PKCS#11 token to `total` find keys, through C_GenerateKey.
fn grow_p11_find_keys(p11: &mut P11, name: &str, total: usize) -> Result<(), String> {
    let have = p11.find_keys;
    if have >= total {
        return Ok(());
    }
    let started = Instant::now();
    println!("{name}: generating {} AES token keys for the find rows…", total - have);
    let template = |label: &str| {
        vec![
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::ValueLen(32.into()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ]
    };
    for i in have..total {
        let label = if i == 0 {
            FIND_TARGET.to_owned()
        } else {
            format!("find-{i:05}")
        };
        p11.main
            .generate_key(&Mechanism::AesKeyGen, &template(&label))
            .map_err(|e| p11_err("C_GenerateKey", e))?;
        p11.find_keys = i + 1;
        if i > 0 && i.is_multiple_of(1000) {
            println!("  … {i} keys, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    println!(
        "{name}: {total} find keys, made in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ------------------------------------------------------------------ timing

/// This thread's (time on a CPU, time runnable but waiting for one), in ns, from the scheduler.
fn schedstat() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
    (fields.next().unwrap_or(0), fields.next().unwrap_or(0))
}

/// This thread's CPU time, ns (exact; schedstat's run time lags by up to a scheduler tick).
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// What one slice measured.
#[derive(Clone, Copy, Default)]
struct SliceTotals {
    ops: u64,
    wall: Duration,
    /// Summed over the workers: ns they were runnable but had no CPU (other processes had it).
    cpu_wait_ns: u64,
    /// Summed over the workers: ns they ran on a CPU.
    cpu_run_ns: u64,
}

/// What one worker did in a slice.
struct WorkerSlice {
    ops: u64,
    run_ns: u64,
    wait_ns: u64,
}

/// Runs a worker's operation until `deadline`: the operations, the ns its thread ran and the
/// ns it was runnable but had no CPU.
fn run_until(w: &mut Worker<'_>, deadline: Instant) -> Result<WorkerSlice, String> {
    let (run0, wait0) = (thread_cpu_ns(), schedstat().1);
    // Reads the clock once per batch, the batch growing until it lasts ~20 µs, so that reading
    // it costs next to nothing even for sub-µs operations.
    let (mut n, mut batch, mut last) = (0u64, 1u64, Instant::now());
    loop {
        for _ in 0..batch {
            w()?;
        }
        n += batch;
        let now = Instant::now();
        if now >= deadline {
            let (run1, wait1) = (thread_cpu_ns(), schedstat().1);
            return Ok(WorkerSlice {
                ops: n,
                run_ns: run1.saturating_sub(run0),
                wait_ns: wait1.saturating_sub(wait0),
            });
        }
        if now - last < Duration::from_micros(20) && batch < 4096 {
            batch *= 2;
        }
        last = now;
    }
}

/// A worker on a thread of its own for a whole row, run a slice at a time: a session stays on
/// one thread, as in an application's thread pool (a fresh thread per slice put each session's
/// memory in another thread's allocator arena every slice, and the find rows measured that).
struct WorkerThread {
    go: mpsc::Sender<Instant>,
    done: mpsc::Receiver<Result<WorkerSlice, String>>,
}

fn spawn_worker<'scope, 'w: 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    worker: &'w mut Worker<'_>,
) -> WorkerThread {
    let (go, go_rx) = mpsc::channel::<Instant>();
    let (done_tx, done) = mpsc::channel();
    scope.spawn(move || {
        while let Ok(deadline) = go_rx.recv() {
            if done_tx.send(run_until(worker, deadline)).is_err() {
                return;
            }
        }
    });
    WorkerThread { go, done }
}

/// Runs a slice on some workers' threads at once.
fn run_slice(threads: &[WorkerThread], slice: Duration) -> Result<SliceTotals, String> {
    let start = Instant::now();
    let deadline = start + slice;
    for t in threads {
        t.go.send(deadline).map_err(|_| "a worker thread is gone".to_owned())?;
    }
    let mut totals = SliceTotals::default();
    let mut failure = None;
    for t in threads {
        match t.done.recv() {
            Ok(Ok(w)) => {
                totals.ops += w.ops;
                totals.cpu_wait_ns += w.wait_ns;
                totals.cpu_run_ns += w.run_ns;
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("a worker panicked".to_owned()),
        }
    }
    totals.wall = start.elapsed();
    failure.map_or(Ok(totals), Err)
}

/// A row's measurements, per cell.
struct RowCells {
    /// ops/s.
    results: HashMap<(Backend, usize), CellResult>,
    /// The share of the cell's thread-time its workers spent waiting for a CPU.
    waits: HashMap<(Backend, usize), f64>,
    /// CPU time of the calling threads per operation, ns (the work a call costs, whether or not
    /// the machine gave the threads a whole CPU each).
    cpu_per_op: HashMap<(Backend, usize), f64>,
}

/// Times every (backend, thread count) cell of a row in alternating slices; each backend has
/// `max(threads)` workers, of which a cell uses the first `threads`.
fn measure_row(
    workers: &mut [(Backend, Result<Vec<Worker<'_>>, String>)],
    thread_counts: &[usize],
    budget: Duration,
) -> RowCells {
    let slice = budget / SLICES;
    let mut cells: Vec<(usize, usize)> = Vec::new(); // (index into workers, threads)
    let mut results: HashMap<(Backend, usize), CellResult> = HashMap::new();
    let mut waits: HashMap<(Backend, usize), f64> = HashMap::new();
    let mut cpu_per_op: HashMap<(Backend, usize), f64> = HashMap::new();
    for (i, (backend, w)) in workers.iter().enumerate() {
        for &t in thread_counts {
            match w {
                Ok(_) => cells.push((i, t)),
                Err(e) => {
                    results.insert((*backend, t), Err(e.clone()));
                }
            }
        }
    }
    let backends: Vec<Backend> = workers.iter().map(|(b, _)| *b).collect();
    let mut failed: HashMap<usize, String> = HashMap::new();
    let mut totals: HashMap<(usize, usize), SliceTotals> = HashMap::new();
    std::thread::scope(|scope| {
        let pools: Vec<Vec<WorkerThread>> = workers
            .iter_mut()
            .map(|(_, w)| match w {
                Ok(ws) => ws.iter_mut().map(|worker| spawn_worker(scope, worker)).collect(),
                Err(_) => Vec::new(),
            })
            .collect();
        // Warm up every worker (caches, lazily built state) before anything is timed.
        for (i, pool) in pools.iter().enumerate() {
            if !pool.is_empty()
                && let Err(e) = run_slice(pool, Duration::from_millis(50))
            {
                failed.insert(i, e);
            }
        }
        for round in 0..SLICES {
            let order: Vec<(usize, usize)> = if round % 2 == 0 {
                cells.clone()
            } else {
                cells.iter().rev().copied().collect()
            };
            for (i, t) in order {
                if failed.contains_key(&i) {
                    continue;
                }
                match run_slice(&pools[i][..t], slice) {
                    Ok(r) => {
                        let e = totals.entry((i, t)).or_default();
                        e.ops += r.ops;
                        e.wall += r.wall;
                        e.cpu_wait_ns += r.cpu_wait_ns;
                        e.cpu_run_ns += r.cpu_run_ns;
                    }
                    Err(e) => {
                        failed.insert(i, e);
                    }
                }
            }
        }
        // Dropping the pools ends their threads.
    });
    for (i, t) in cells {
        let backend = backends[i];
        let r = totals.get(&(i, t)).copied().unwrap_or_default();
        let result = match failed.get(&i) {
            Some(e) => Err(e.clone()),
            None => Ok(r.ops as f64 / r.wall.as_secs_f64().max(1e-9)),
        };
        results.insert((backend, t), result);
        let thread_ns = r.wall.as_nanos() as f64 * t as f64;
        waits.insert((backend, t), r.cpu_wait_ns as f64 / thread_ns.max(1.0));
        if r.ops > 0 {
            cpu_per_op.insert((backend, t), r.cpu_run_ns as f64 / r.ops as f64);
        }
    }
    RowCells {
        results,
        waits,
        cpu_per_op,
    }
}

// ------------------------------------------------------------------ the table

struct RowResult {
    op: Op,
    cells: HashMap<(Backend, usize), CellResult>,
    /// Share of the workers' time spent waiting for a CPU, per cell.
    waits: HashMap<(Backend, usize), f64>,
    /// CPU ns per operation, per cell.
    cpu_per_op: HashMap<(Backend, usize), f64>,
}

/// The start of a cell's error when the row has no such cell (not a failure).
const NOT_APPLICABLE: &str = "n/a";

fn fmt_ops(r: Option<&CellResult>) -> String {
    match r {
        Some(Ok(v)) => format!("{v:.0}"),
        Some(Err(e)) if e.starts_with(NOT_APPLICABLE) => "n/a".into(),
        Some(Err(_)) => "err".into(),
        None => "-".into(),
    }
}

fn ok(r: Option<&CellResult>) -> Option<f64> {
    r.and_then(|r| r.as_ref().ok()).copied()
}

fn print_table(rows: &[RowResult], thread_counts: &[usize]) {
    let one = thread_counts.first().copied().unwrap_or(1);
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| row | threads | tessera ops/s | kms-core ops/s | softhsm ops/s | crates ops/s | tessera-c ops/s | tessera/kms-core | tessera/softhsm | tessera/crates | scaling vs {one} thread: tessera · kms-core · softhsm · crates · tessera-c | CPU per op vs {one} thread: tessera · kms-core · softhsm · crates · tessera-c | waiting for a CPU: tessera · kms-core · softhsm · crates · tessera-c |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|");
    let mut errors = Vec::new();
    for row in rows {
        for &t in thread_counts {
            let get = |b: Backend| row.cells.get(&(b, t));
            let (tess, kms, hsm, crates, direct) = (
                get(Backend::Tessera),
                get(Backend::KmsCore),
                get(Backend::SoftHsm),
                get(Backend::Crates),
                get(Backend::TesseraDirect),
            );
            let vs_crates = match (ok(tess), ok(crates)) {
                (Some(a), Some(b)) => format!("{:.1}%", a / b * 100.0),
                _ => "-".into(),
            };
            let vs_kms = match (ok(tess), ok(kms)) {
                (Some(a), Some(b)) => format!("{:.1}%{}", a / b * 100.0, if a / b < 0.9 { " ✗" } else { "" }),
                _ => "-".into(),
            };
            let must_beat = matches!(row.op, Op::AesGcm | Op::Find(_));
            let vs_hsm = match (ok(tess), ok(hsm)) {
                (Some(a), Some(b)) => {
                    format!("{:.2}x{}", a / b, if must_beat && a <= b { " ✗" } else { "" })
                }
                _ => "-".into(),
            };
            let scaling = if t == one {
                String::new()
            } else {
                Backend::ALL
                    .iter()
                    .map(|&b| match (ok(row.cells.get(&(b, t))), ok(row.cells.get(&(b, one)))) {
                        (Some(n), Some(o)) => {
                            let x = n / o;
                            let flag = if b == Backend::Tessera && t == 2 && x < 1.8 {
                                " ✗"
                            } else {
                                ""
                            };
                            format!("{x:.2}x{flag}")
                        }
                        _ => "-".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(" · ")
            };
            let cpu_growth = if t == one {
                String::new()
            } else {
                Backend::ALL
                    .iter()
                    .map(
                        |&b| match (row.cpu_per_op.get(&(b, t)), row.cpu_per_op.get(&(b, one))) {
                            (Some(n), Some(o)) if ok(row.cells.get(&(b, t))).is_some() => {
                                format!("{:+.1}%", (n / o - 1.0) * 100.0)
                            }
                            _ => "-".into(),
                        },
                    )
                    .collect::<Vec<_>>()
                    .join(" · ")
            };
            let waiting = Backend::ALL
                .iter()
                .map(|&b| match row.waits.get(&(b, t)) {
                    Some(w) if ok(row.cells.get(&(b, t))).is_some() => format!("{:.0}%", w * 100.0),
                    _ => "-".into(),
                })
                .collect::<Vec<_>>()
                .join(" · ");
            let _ = writeln!(
                out,
                "| {} | {t} | {} | {} | {} | {} | {} | {vs_kms} | {vs_hsm} | {vs_crates} | {scaling} | {cpu_growth} | {waiting} |",
                row.op.name(),
                fmt_ops(tess),
                fmt_ops(kms),
                fmt_ops(hsm),
                fmt_ops(crates),
                fmt_ops(direct),
            );
            for b in Backend::ALL {
                if let Some(Err(e)) = row.cells.get(&(b, t))
                    && !e.starts_with(NOT_APPLICABLE)
                {
                    let line = format!("{}: {}: {e}", row.op.name(), b.name());
                    if !errors.contains(&line) {
                        errors.push(line);
                    }
                }
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "kms-core rows: AsymmetricSign on a 32-byte digest; Encrypt of 4 KiB (which also builds its ciphertext \
         blob: header, version id, IV); DescribeKey(alias/{FIND_TARGET}) for the find rows."
    );
    let _ = writeln!(
        out,
        "crates: the same cryptography by p256, rsa and aes-gcm alone (no KMS, no PKCS#11, keys of their \
         own); their scaling is what two threads of this machine give that work, the ceiling for the others'."
    );
    let _ = writeln!(
        out,
        "tessera-c (find rows): the same module and search through its C functions called straight, \
         nothing allocated by the client: the module's own scaling, apart from cryptoki's allocations."
    );
    let _ = writeln!(
        out,
        "CPU per op: the calling threads' CPU time per operation (CLOCK_THREAD_CPUTIME_ID), against \
         one thread: how much more each call costs when two run at once (shared cache lines, locks, the \
         allocator) whether or not the machine gave each thread a whole CPU. Background threads (the audit \
         writer) are not counted."
    );
    let _ = writeln!(
        out,
        "waiting for a CPU: the share of the workers' time they were runnable but other processes had the CPU \
         (from /proc/thread-self/schedstat); a few % on a 2-thread row means its scaling is the machine's, not \
         the code's."
    );
    let _ = writeln!(
        out,
        "✗ marks a missed target: tessera/kms-core >= 90%; 2 threads >= 1.8x 1 thread (tessera); AES-GCM and \
         find faster than SoftHSM2."
    );

    // Find: does the time per find grow with the number of keys?
    let finds: Vec<&RowResult> = rows.iter().filter(|r| matches!(r.op, Op::Find(_))).collect();
    if let (Some(first), Some(last)) = (finds.first(), finds.last())
        && let (Op::Find(n0), Op::Find(n1)) = (first.op, last.op)
        && n1 > n0
    {
        for b in Backend::ALL {
            if let (Some(a), Some(z)) = (ok(first.cells.get(&(b, one))), ok(last.cells.get(&(b, one)))) {
                let growth = a / z;
                let _ = writeln!(
                    out,
                    "find by label, {n0} → {n1} keys ({} keys x{:.0}): {} time per find x{growth:.2}{}",
                    n1 - n0,
                    n1 as f64 / n0 as f64,
                    b.name(),
                    if growth > 2.0 {
                        " ✗ (grows with the key count)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    if !errors.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Cells without a number:");
        for e in errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    println!("{out}");
}

// ------------------------------------------------------------------ main

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            let mut list: Vec<usize> = v
                .split(',')
                .filter_map(|x| x.trim().replace('_', "").parse().ok())
                .filter(|&x| x > 0)
                .collect();
            list.sort_unstable();
            list.dedup();
            list
        }
        Ok(_) => Vec::new(),
        Err(_) => default.to_vec(),
    }
}

/// The module built with this bench: it is `target/<profile>/deps/pkcs11-…`, and cargo leaves the
/// cdylib it built for it in `deps/` (a `cargo build` of the package also copies it up to
/// `target/<profile>/`, which may be older).
fn tessera_module() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_PKCS11_MODULE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    const NAME: &str = "libtessera_pkcs11.so";
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [dir.join(NAME), dir.parent().unwrap_or(dir).join(NAME)];
    candidates.iter().find(|p| p.exists()).unwrap_or(&candidates[1]).clone()
}

/// The row filter: criterion-style positional arguments, as plain substrings.
fn row_filter() -> Vec<String> {
    std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect()
}

/// /proc/loadavg's first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Times one row (the parent runs each in a child process of its own) and prints its cells for
/// the parent.
fn run_child(dir: &Path, op: Op) -> Result<(), String> {
    let started = Instant::now();
    let budget = Duration::from_secs_f64(
        std::env::var("TESSERA_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .unwrap_or(1.5),
    );
    let thread_counts = env_list("TESSERA_BENCH_THREADS", &[1, 2]);
    let softhsm_find_max = env_list("TESSERA_BENCH_SOFTHSM_FIND_MAX", &[1000])
        .last()
        .copied()
        .unwrap_or(0);
    let softhsm_path = std::env::var("TESSERA_BENCH_SOFTHSM").unwrap_or_else(|_| SOFTHSM_DEFAULT.into());
    // Which backends are timed (all by default; one alone is handy under a profiler).
    let timed_list = std::env::var("TESSERA_BENCH_BACKENDS").unwrap_or_default();
    let timed: Vec<&str> = if timed_list.trim().is_empty() {
        Backend::ALL.iter().map(|b| b.name()).collect()
    } else {
        timed_list.split(',').map(str::trim).collect()
    };
    let max_threads = thread_counts.iter().copied().max().unwrap_or(1);

    let mut digest_info = SHA256_DIGEST_INFO.to_vec();
    let digest: [u8; 32] = Sha256::digest(b"tessera pkcs11 benchmark").into();
    digest_info.extend_from_slice(&digest);
    let mut msg = vec![0u8; MSG_LEN];
    for (i, b) in msg.iter_mut().enumerate() {
        *b = (i * 131 % 251) as u8;
    }
    let inputs = Inputs {
        digest,
        digest_info,
        msg: Arc::new(msg),
    };

    // kms-core, on a store of its own: the module carries its own copy of SQLite, and two copies
    // in one process must not write one database (their POSIX locks do not see each other; every
    // call writes an audit record). The module makes its keys itself, through PKCS#11.
    let store = dir.join("store-kms");
    let kms = Kms::open(&store).map_err(|e| format!("Kms::open {}: {e}", store.display()))?;
    let kms_keys = kms_keys(&kms, &inputs);
    if let Err(e) = &kms_keys {
        println!("kms-core: {e}");
    }

    let module = tessera_module();
    println!("tessera: {}", module.display());
    let mut tessera = P11::open(&module);
    if let Ok(p11) = &mut tessera {
        p11.keys = generate_keys(&p11.main, "bench").or_else(|gen_err| {
            println!("tessera: {gen_err}; using the keys kms-core made, found by label");
            find_kms_keys(&p11.main).map_err(|e| format!("{gen_err}; and {e}"))
        });
    }
    match &tessera {
        Ok(p) => {
            if let Err(e) = &p.keys {
                println!("tessera: {e}");
            }
        }
        Err(e) => println!("tessera: {e}"),
    }

    let mut softhsm = if softhsm_path.is_empty() {
        Err("skipped (TESSERA_BENCH_SOFTHSM is empty)".to_owned())
    } else {
        println!("softhsm: {softhsm_path}");
        P11::open(Path::new(&softhsm_path))
    };
    if let Ok(p11) = &mut softhsm {
        p11.keys = generate_keys(&p11.main, "bench");
    }
    match &softhsm {
        Ok(p) => {
            if let Err(e) = &p.keys {
                println!("softhsm: {e}");
            }
        }
        Err(e) => println!("softhsm: {e}"),
    }
    println!("setup: {:.1} s", started.elapsed().as_secs_f64());

    if let Op::Find(n) = op {
        make_kms_find_keys(&kms, n)?;
        if n <= softhsm_find_max
            && let Ok(p11) = &mut softhsm
            && let Err(e) = grow_p11_find_keys(p11, "softhsm", n)
        {
            p11.keys = Err(e);
        }
        if let Ok(p11) = &mut tessera
            && let Err(e) = grow_p11_find_keys(p11, "tessera", n)
        {
            p11.keys = Err(e);
        }
    }
    let row_started = Instant::now();
    let mut workers: Vec<(Backend, Result<Vec<Worker<'_>>, String>)> = vec![
        (Backend::Tessera, p11_workers(&tessera, op, &inputs, max_threads)),
        (Backend::KmsCore, kms_workers(&kms, &kms_keys, op, max_threads)),
        (Backend::SoftHsm, p11_workers(&softhsm, op, &inputs, max_threads)),
        (Backend::Crates, crate_workers(op, &inputs, max_threads)),
        (
            Backend::TesseraDirect,
            direct_find_workers(&tessera, &module, op, max_threads),
        ),
    ];
    for (backend, cell) in &mut workers {
        if !timed.contains(&backend.name()) {
            *cell = Err("skipped (TESSERA_BENCH_BACKENDS)".into());
        }
    }
    let RowCells {
        results: cells,
        waits,
        cpu_per_op,
    } = measure_row(&mut workers, &thread_counts, budget);
    drop(workers);
    let line: Vec<String> = thread_counts
        .iter()
        .map(|&t| {
            let v: Vec<String> = Backend::ALL
                .iter()
                .map(|&b| format!("{} {}", b.name(), fmt_ops(cells.get(&(b, t)))))
                .collect();
            format!("{t}T: {}", v.join(", "))
        })
        .collect();
    println!(
        "{} ({:.1} s): {}",
        op.name(),
        row_started.elapsed().as_secs_f64(),
        line.join(" | ")
    );
    emit_row(&RowResult {
        op,
        cells,
        waits,
        cpu_per_op,
    });

    // Close the sessions, then finalize both modules.
    for p11 in [tessera, softhsm].into_iter().flatten() {
        let P11 { ctx, main, .. } = p11;
        drop(main);
        let _ = ctx.finalize();
    }
    Ok(())
}

/// A fresh temporary directory for a child: SoftHSM2's token directory and both modules'
/// configuration files (the stores live there too).
struct ChildDir {
    dir: tempfile::TempDir,
    softhsm_conf: PathBuf,
    tessera_conf: PathBuf,
}

fn child_dir() -> Result<ChildDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("tessera-pkcs11-bench-")
        .tempdir()
        .map_err(|e| format!("a temporary directory: {e}"))?;
    let tokens = dir.path().join("softhsm-tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
    let softhsm_conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &softhsm_conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .map_err(|e| format!("{}: {e}", softhsm_conf.display()))?;
    let tessera_conf = dir.path().join("tessera-pkcs11.toml");
    std::fs::write(
        &tessera_conf,
        format!(
            "store = \"{}\"\ngenerate_certs = false\nlog_level = \"warn\"\nlog_file = \"{}\"\n",
            dir.path().join("store").display(),
            dir.path().join("tessera-pkcs11.log").display()
        ),
    )
    .map_err(|e| format!("{}: {e}", tessera_conf.display()))?;
    Ok(ChildDir {
        dir,
        softhsm_conf,
        tessera_conf,
    })
}

/// The rows this run times, in order.
fn planned_ops() -> Vec<Op> {
    let filters = row_filter();
    let mut ops = vec![Op::SignEcdsa, Op::SignRsa, Op::AesGcm];
    ops.extend(
        env_list("TESSERA_BENCH_FIND_KEYS", &[1000, 10_000])
            .into_iter()
            .map(Op::Find),
    );
    ops.into_iter()
        .filter(|op| filters.is_empty() || filters.iter().any(|f| op.name().contains(f.as_str())))
        .collect()
}

/// The row a child times, as the parent named it.
fn child_row() -> Result<Op, String> {
    let name = std::env::var(ROW_ENV).map_err(|_| format!("a bench child without {ROW_ENV}"))?;
    planned_ops()
        .into_iter()
        .find(|op| op.name() == name)
        .ok_or_else(|| format!("no row named {name}"))
}

/// A child's cell line: `@cell <row> <backend> <threads> <ops/s or -> <wait share> <CPU ns per op> [error]`.
const CELL_LINE: &str = "@cell";

/// Prints a row's cells for the parent, one line each.
fn emit_row(row: &RowResult) {
    for ((backend, t), result) in &row.cells {
        let wait = row.waits.get(&(*backend, *t)).copied().unwrap_or(f64::NAN);
        let cpu = row.cpu_per_op.get(&(*backend, *t)).copied().unwrap_or(f64::NAN);
        let (ops, error) = match result {
            Ok(v) => (format!("{v}"), String::new()),
            Err(e) => ("-".to_owned(), e.replace(['\t', '\n'], " ")),
        };
        println!(
            "{CELL_LINE}\t{}\t{}\t{t}\t{ops}\t{wait}\t{cpu}\t{error}",
            row.op.name(),
            backend.name()
        );
    }
}

/// Reads one child cell line into `rows`.
fn parse_cell(line: &str, ops: &[Op], rows: &mut Vec<RowResult>) -> Option<()> {
    let mut f = line.split('\t').skip(1);
    let (row, backend, t) = (f.next()?, f.next()?, f.next()?.parse::<usize>().ok()?);
    let (value, wait, cpu, error) = (f.next()?, f.next()?, f.next()?, f.next().unwrap_or(""));
    let op = *ops.iter().find(|op| op.name() == row)?;
    let backend = *Backend::ALL.iter().find(|b| b.name() == backend)?;
    let at = match rows.iter().position(|r| r.op == op) {
        Some(at) => at,
        None => {
            rows.push(RowResult {
                op,
                cells: HashMap::new(),
                waits: HashMap::new(),
                cpu_per_op: HashMap::new(),
            });
            rows.len() - 1
        }
    };
    let r = &mut rows[at];
    let result = match value.parse::<f64>() {
        Ok(v) => Ok(v),
        Err(_) => Err(error.to_owned()),
    };
    r.cells.insert((backend, t), result);
    if let Ok(w) = wait
        .parse::<f64>()
        .map_err(drop)
        .and_then(|w| if w.is_nan() { Err(()) } else { Ok(w) })
    {
        r.waits.insert((backend, t), w);
    }
    if let Ok(c) = cpu
        .parse::<f64>()
        .map_err(drop)
        .and_then(|c| if c.is_nan() { Err(()) } else { Ok(c) })
    {
        r.cpu_per_op.insert((backend, t), c);
    }
    Some(())
}

/// Runs each row in a child process of its own, on a fresh temporary directory, and prints the
/// table of all of them. A row in the same process as the rows before it measured their leftovers
/// too: find-by-label cost 6% more CPU per search on two threads than on one when run alone,
/// 18% after the AES row (the allocator's state the earlier rows' threads left behind).
fn run_parent() -> Result<ExitCode, String> {
    let started = Instant::now();
    let load_start = load_average();
    let ops = planned_ops();
    let thread_counts = env_list("TESSERA_BENCH_THREADS", &[1, 2]);
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut rows: Vec<RowResult> = Vec::new();
    let mut failures = Vec::new();
    for op in &ops {
        let child = child_dir()?;
        println!("— {} (a process of its own) —", op.name());
        let mut process = Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(CHILD_ENV, child.dir.path())
            .env(ROW_ENV, op.name())
            .env("SOFTHSM2_CONF", &child.softhsm_conf)
            .env("TESSERA_PKCS11_CONFIG", &child.tessera_conf)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("running the bench child: {e}"))?;
        if let Some(out) = process.stdout.take() {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with(CELL_LINE) {
                    if parse_cell(&line, &ops, &mut rows).is_none() {
                        println!("(an unreadable cell line: {line})");
                    }
                } else {
                    println!("{line}");
                }
            }
        }
        let status = process
            .wait()
            .map_err(|e| format!("waiting for the bench child: {e}"))?;
        let log = child.dir.path().join("tessera-pkcs11.log");
        if let Ok(text) = std::fs::read_to_string(&log)
            && !text.trim().is_empty()
        {
            let lines: Vec<&str> = text.lines().collect();
            println!("\nThe module's log (last 20 lines of {}):", lines.len());
            for l in &lines[lines.len().saturating_sub(20)..] {
                println!("  {l}");
            }
        }
        if !status.success() {
            failures.push(format!("{}: the bench child ended with {status}", op.name()));
        }
    }
    rows.sort_by_key(|r| ops.iter().position(|op| *op == r.op));
    print_table(&rows, &thread_counts);
    println!(
        "total: {:.0} s, each row in a process of its own; load average at the start {load_start}, at the \
         end {} (other processes skew the 2-thread numbers most)",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(failures.join("; "))
    }
}

fn main() -> ExitCode {
    // Only in a real benchmark run (`cargo bench` passes --bench), not under `cargo test --benches`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pkcs11 bench: run it with `cargo bench -p pkcs11-module --bench pkcs11`");
        return ExitCode::SUCCESS;
    }
    let result = match std::env::var_os(CHILD_ENV) {
        Some(dir) => child_row()
            .and_then(|op| run_child(Path::new(&dir), op))
            .map(|()| ExitCode::SUCCESS),
        None => run_parent(),
    };
    result.unwrap_or_else(|e| {
        eprintln!("pkcs11 bench: {e}");
        ExitCode::FAILURE
    })
}
