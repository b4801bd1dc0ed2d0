//! `libtessera_pkcs11.so` through its C interface, as a PKCS#11 host sees it: loaded with
//! `dlopen`, called through its v3.0 function list with raw pointers, one process per test (see
//! `module_support/harness.rs`) so that every test has its own C_Initialize, store and log.
//!
//! Covered: pointer checks and initialisation rules, the interface lists, the configuration
//! file, PINs and login, what public sessions see, objects and attributes (labels, ids,
//! sensitivity, public parts, rotation, keys disabled by another process, certificates), the
//! mechanisms' conventions (length queries, short buffers, signatures checked with the `p256`
//! and `rsa` crates, AES-GCM, digests against `sha2`, RSA-OAEP), key generation and
//! destruction, threads, `fork()`, and C_Finalize/C_Initialize cycles.
//!
//! Keys are made with `kms-core` on the test's store before C_Initialize. Once the module has
//! the store open, every other KMS call runs in another process (a child of this test binary, see
//! [`elsewhere`]): the module carries its own copy of SQLite, and two copies in one process
//! share POSIX locks without knowing it, which SQLite warns can corrupt a database and which
//! hides changes from the module's connection.
//! `TESSERA_MODULE_TEST_KEEP=1` keeps a failed test's store, configuration and debug log.
#![allow(unsafe_code)]

mod common;
#[path = "module_support/harness.rs"]
mod harness;
#[path = "module_support/p11.rs"]
mod p11;

use std::ffi::{CStr, c_int, c_void};
use std::path::Path;
use std::process::Command;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use cryptoki_sys::*;
use harness::{Fixture, Options, isolated, role, run_child};
use kms_core::Kms;
use kms_core::api::{CreateKeyRequest, GetPublicKeyRequest, KeyIdRequest, PageRequest};
use kms_core::model::{KeySpec, KeyUsage};
use p11::{Attr, INTERFACE_NAME, Library, Mech, assert_err, assert_rv, call, library, ok, text};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use sha2::Digest as _;

// ---------------------------------------------------------------- constants

/// The security officer's PIN: distinctive, so that a search of the store files cannot match
/// by chance.
const SO_PIN: &[u8] = b"so-5678-quartz-SO";
/// The user's PIN.
const USER_PIN: &[u8] = b"user-1234-quartz-USER";
/// The token label.
const TOKEN: &str = "tessera-module-test";
/// What the tests sign and encrypt.
const MESSAGE: &[u8] = b"Tessera PKCS#11 module test: the quick brown fox jumps over the lazy dog";
/// DER of the P-256 OID (CKA_EC_PARAMS).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The DigestInfo prefix of a SHA-256 digest (RFC 8017).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
];

// ---------------------------------------------------------------- token and session helpers

/// The loaded module after a successful C_Initialize(NULL).
fn start() -> &'static Library {
    let p = library();
    assert_rv!(p.initialize(), CKR_OK, "C_Initialize(NULL) with {}", p.path.display());
    p
}

/// Initialises the token (SO PIN, label) and the user PIN, as pkcs11-tool does; leaves no
/// session open.
fn init_token(p: &Library) {
    assert_rv!(p.init_token(SO_PIN, TOKEN), CKR_OK, "C_InitToken");
    let s = ok(p.open_session(true), "C_OpenSession(RW) for the SO");
    assert_rv!(p.login(s, CKU_SO, SO_PIN), CKR_OK, "C_Login(SO)");
    assert_rv!(p.init_pin(s, USER_PIN), CKR_OK, "C_InitPIN");
    assert_rv!(p.logout(s), CKR_OK, "C_Logout(SO)");
    assert_rv!(p.close_session(s), CKR_OK, "C_CloseSession");
}

/// An initialised module and token, and a read/write session logged in as the user.
fn ready() -> (&'static Library, CK_SESSION_HANDLE) {
    let p = start();
    init_token(p);
    let s = ok(p.open_session(true), "C_OpenSession(RW)");
    assert_rv!(p.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login(USER)");
    (p, s)
}

/// The objects a template finds.
fn find(p: &Library, s: CK_SESSION_HANDLE, template: &[Attr]) -> Vec<CK_OBJECT_HANDLE> {
    ok(p.find(s, template), &format!("C_FindObjects({template:?})"))
}

/// The one object of `class` labelled `label`.
fn find_one(p: &Library, s: CK_SESSION_HANDLE, label: &str, class: CK_OBJECT_CLASS) -> CK_OBJECT_HANDLE {
    let found = find(p, s, &[Attr::label(label), Attr::class(class)]);
    assert_eq!(found.len(), 1, "objects of class {class} labelled {label:?}: {found:?}");
    found[0]
}

/// CKA_CLASS of each object.
fn classes(p: &Library, s: CK_SESSION_HANDLE, objects: &[CK_OBJECT_HANDLE]) -> Vec<CK_OBJECT_CLASS> {
    objects
        .iter()
        .map(|o| ok(p.attr_ulong(s, *o, CKA_CLASS), "CKA_CLASS"))
        .collect()
}

/// Sorted copy.
fn sorted(mut v: Vec<CK_OBJECT_HANDLE>) -> Vec<CK_OBJECT_HANDLE> {
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------- kms-core helpers

/// A KMS key: its id, primary version and (asymmetric keys) that version's public key PEM.
struct Key {
    id: String,
    version: String,
    pem: String,
}

/// Creates a key of the default instance with the alias `alias/<label>`.
fn create_key(kms: &Kms, spec: KeySpec, usage: KeyUsage, label: &str) -> Key {
    let meta = kms
        .create_key(&CreateKeyRequest {
            key_spec: Some(spec),
            key_usage: Some(usage),
            alias: Some(format!("alias/{label}")),
            ..CreateKeyRequest::default()
        })
        .unwrap_or_else(|e| panic!("CreateKey {spec} {label}: {e}"))
        .key_metadata;
    let version = meta.primary_key_version.expect("a new key has a primary version");
    let pem = if spec.is_symmetric() {
        String::new()
    } else {
        public_pem(kms, &meta.key_id, &version)
    };
    Key {
        id: meta.key_id,
        version,
        pem,
    }
}

/// Creates keys (spec, usage, label) with `kms-core` in this process; call it before
/// C_Initialize only (the `Kms` is closed again before it returns).
fn create_keys(fx: &Fixture, keys: &[(KeySpec, KeyUsage, &str)]) -> Vec<Key> {
    let kms = fx.kms();
    keys.iter()
        .map(|(spec, usage, label)| create_key(&kms, *spec, *usage, label))
        .collect()
}

/// GetPublicKey of one version: PEM.
fn public_pem(kms: &Kms, key_id: &str, version: &str) -> String {
    kms.get_public_key(&GetPublicKeyRequest {
        key_id: key_id.to_owned(),
        key_version_id: Some(version.to_owned()),
    })
    .unwrap_or_else(|e| panic!("GetPublicKey {key_id}/{version}: {e}"))
    .public_key
}

// ---------------------------------------------------------------- kms-core in another process

/// The test whose child processes run kms-core actions.
const KMS_ACTION_TEST: &str = "kms_actions_run_in_another_process";
/// The action, key and version a kms-core child runs.
const KMS_ACTION_ENV: &str = "TESSERA_MODULE_TEST_KMS_ACTION";
const KMS_KEY_ENV: &str = "TESSERA_MODULE_TEST_KMS_KEY";
const KMS_VERSION_ENV: &str = "TESSERA_MODULE_TEST_KMS_VERSION";

/// Runs a kms-core action (DescribeKey, DisableKey, EnableKey, CancelKeyDeletion,
/// CreateKeyVersion, GetPublicKey, ListKeys) on the fixture's store in another process: its JSON
/// answer, or the KMS error code.
fn elsewhere(fx: &Fixture, action: &str, key: &str, version: Option<&str>) -> Result<serde_json::Value, String> {
    let mut envs = vec![
        (harness::DIR_ENV, fx.dir.clone().into_os_string()),
        (KMS_ACTION_ENV, action.into()),
        (KMS_KEY_ENV, key.into()),
    ];
    if let Some(v) = version {
        envs.push((KMS_VERSION_ENV, v.into()));
    }
    let out = run_child(KMS_ACTION_TEST, "kms", &envs);
    assert!(
        out.passed(),
        "kms-core {action} {key} in another process:\n{}",
        out.describe()
    );
    for line in out.stdout.lines() {
        // The harness prints "test … " before the child's own output, on the same line.
        if let Some((_, json)) = line.split_once("KMS-RESULT: ") {
            return Ok(serde_json::from_str(json).expect("the child's JSON"));
        }
        if let Some((_, code)) = line.split_once("KMS-ERROR: ") {
            return Err(code.trim().to_owned());
        }
    }
    panic!(
        "kms-core {action} {key}: the child printed no result:\n{}",
        out.describe()
    )
}

/// An action that must succeed in another process.
fn elsewhere_ok(fx: &Fixture, action: &str, key: &str) -> serde_json::Value {
    elsewhere(fx, action, key, None).unwrap_or_else(|code| panic!("{action} {key}: {code}"))
}

/// DescribeKey in another process: the KeyMetadata.
fn describe_elsewhere(fx: &Fixture, key: &str) -> serde_json::Value {
    elsewhere_ok(fx, "DescribeKey", key)["KeyMetadata"].clone()
}

/// A string field of a JSON object.
fn field(v: &serde_json::Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string {name} in {v}"))
        .to_owned()
}

/// A key's state, as DescribeKey in another process says.
fn state_elsewhere(fx: &Fixture, key: &str) -> String {
    field(&describe_elsewhere(fx, key), "KeyState")
}

/// How many keys the store has, counted in another process.
fn key_count_elsewhere(fx: &Fixture) -> u64 {
    elsewhere_ok(fx, "ListKeys", "")["TotalCount"]
        .as_u64()
        .expect("TotalCount")
}

/// A version's public key PEM, from another process.
fn public_pem_elsewhere(fx: &Fixture, key: &str, version: &str) -> String {
    let answer = elsewhere(fx, "GetPublicKey", key, Some(version)).unwrap_or_else(|c| panic!("GetPublicKey: {c}"));
    field(&answer, "PublicKey")
}

/// An answer as JSON.
fn json<T: serde::Serialize>(answer: kms_core::Result<T>) -> kms_core::Result<serde_json::Value> {
    answer.map(|v| serde_json::to_value(v).expect("a JSON answer"))
}

/// The child side of [`elsewhere`].
fn kms_action_child() {
    let fx = Fixture::of_child();
    let action = std::env::var(KMS_ACTION_ENV).expect("an action");
    let key = std::env::var(KMS_KEY_ENV).expect("a key");
    let version = std::env::var(KMS_VERSION_ENV).ok();
    let kms = fx.kms();
    let req = KeyIdRequest::new(&key);
    let answer = match action.as_str() {
        "DescribeKey" => json(kms.describe_key(&req)),
        "DisableKey" => json(kms.disable_key(&req)),
        "EnableKey" => json(kms.enable_key(&req)),
        "CancelKeyDeletion" => json(kms.cancel_key_deletion(&req)),
        "CreateKeyVersion" => json(kms.create_key_version(&req)),
        "GetPublicKey" => json(kms.get_public_key(&GetPublicKeyRequest {
            key_id: key.clone(),
            key_version_id: version,
        })),
        "ListKeys" => json(kms.list_keys(&PageRequest {
            page_number: None,
            page_size: Some(100),
        })),
        other => panic!("no such action here: {other}"),
    };
    match answer {
        Ok(v) => println!("KMS-RESULT: {v}"),
        Err(e) => println!("KMS-ERROR: {}", e.code()),
    }
}

#[test]
fn kms_actions_run_in_another_process() {
    if let Some(role) = role() {
        assert_eq!(role, "kms");
        kms_action_child();
        return;
    }
    // The helper itself: its answers are the store's.
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let fx = Fixture {
        dir: tmp.path().to_path_buf(),
    };
    let key = create_keys(&fx, &[(KeySpec::EcP256, KeyUsage::SignVerify, "helper")]).remove(0);
    assert_eq!(state_elsewhere(&fx, "alias/helper"), "Enabled");
    assert_eq!(public_pem_elsewhere(&fx, &key.id, &key.version), key.pem);
    elsewhere_ok(&fx, "DisableKey", &key.id);
    assert_eq!(state_elsewhere(&fx, &key.id), "Disabled");
    assert_eq!(key_count_elsewhere(&fx), 1);
    assert_eq!(
        elsewhere(&fx, "GetPublicKey", &key.id, Some(&key.version))
            .err()
            .as_deref(),
        Some("Rejected.Disabled"),
        "a disabled key gives no public key"
    );
    assert_eq!(
        elsewhere(&fx, "DescribeKey", "alias/nothing", None).err().as_deref(),
        Some("Forbidden.AliasNotFound"),
        "an error comes back as its code"
    );
}

/// The DER inside a PEM block.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let symbols: Vec<u8> = body
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(symbols.len() * 3 / 4);
    for chunk in symbols.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// The P-256 verifying key of a PEM public key.
fn ec_public(pem: &str) -> p256::ecdsa::VerifyingKey {
    p256::ecdsa::VerifyingKey::from_public_key_pem(pem).expect("a P-256 public key PEM")
}

/// The RSA public key of a PEM public key.
fn rsa_public(pem: &str) -> rsa::PublicKey {
    rsa::PublicKey::from_public_key_pem(pem).expect("an RSA public key PEM")
}

/// Checks a raw `r || s` ECDSA signature of `message` (SHA-256).
fn assert_ecdsa(key: &p256::ecdsa::VerifyingKey, message: &[u8], signature: &[u8], what: &str) {
    assert_eq!(
        signature.len(),
        64,
        "{what}: an ECDSA P-256 signature is r || s, 64 bytes"
    );
    let sig = p256::ecdsa::Signature::from_slice(signature).unwrap_or_else(|e| panic!("{what}: not r || s: {e}"));
    key.verify(message, &sig)
        .unwrap_or_else(|e| panic!("{what}: p256 rejects the signature: {e}"));
}

/// The uncompressed point of a P-256 key as a DER OCTET STRING (what CKA_EC_POINT holds).
fn ec_point_octets(key: &p256::ecdsa::VerifyingKey) -> Vec<u8> {
    let point = key.to_sec1_bytes();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let mut octets = vec![0x04, 65];
    octets.extend_from_slice(&point);
    octets
}

// ---------------------------------------------------------------- DER and certificates

/// The first DER TLV of `input`: (tag, content, the whole TLV, what follows).
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = if input[1] < 0x80 {
        (usize::from(input[1]), 2)
    } else {
        let n = usize::from(input[1] & 0x7f);
        let len = input[2..2 + n].iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, 2 + n)
    };
    (
        tag,
        &input[header..header + len],
        &input[..header + len],
        &input[header + len..],
    )
}

/// A certificate's TBSCertificate (whole TLV), signature algorithm OID (content) and signature.
fn certificate_parts(der: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let (tag, content, whole, rest) = der_tlv(der);
    assert_eq!(
        (tag, whole.len(), rest.len()),
        (0x30, der.len(), 0),
        "a certificate is one SEQUENCE"
    );
    let (tbs_tag, _, tbs, rest) = der_tlv(content);
    assert_eq!(tbs_tag, 0x30, "TBSCertificate");
    let (alg_tag, alg, _, rest) = der_tlv(rest);
    assert_eq!(alg_tag, 0x30, "signatureAlgorithm");
    let (_, oid, _, _) = der_tlv(alg);
    let (bits_tag, bits, _, rest) = der_tlv(rest);
    assert_eq!(
        (bits_tag, bits[0], rest.len()),
        (0x03, 0, 0),
        "signatureValue BIT STRING"
    );
    (tbs, oid, &bits[1..])
}

/// Runs `openssl args…`; its standard output, or a panic with everything it printed.
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed (Debian: openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Unix seconds of a KMS time (`YYYY-MM-DDTHH:MM:SSZ`).
fn unix_seconds(time: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 { time[r].parse().unwrap_or_else(|e| panic!("{time:?}: {e}")) };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

fn now_seconds() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit")
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ================================================================ 1. robustness of the C edge

static MUTEX_CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn create_mutex(_mutex: *mut *mut c_void) -> CK_RV {
    MUTEX_CALLS.fetch_add(1, Ordering::SeqCst);
    CKR_GENERAL_ERROR
}

unsafe extern "C" fn use_mutex(_mutex: *mut c_void) -> CK_RV {
    MUTEX_CALLS.fetch_add(1, Ordering::SeqCst);
    CKR_GENERAL_ERROR
}

/// CK_C_INITIALIZE_ARGS with all four mutex callbacks (or none) and `flags`.
fn init_args(callbacks: bool, flags: CK_FLAGS) -> CK_C_INITIALIZE_ARGS {
    CK_C_INITIALIZE_ARGS {
        CreateMutex: callbacks.then_some(create_mutex as unsafe extern "C" fn(*mut *mut c_void) -> CK_RV),
        DestroyMutex: callbacks.then_some(use_mutex as unsafe extern "C" fn(*mut c_void) -> CK_RV),
        LockMutex: callbacks.then_some(use_mutex as unsafe extern "C" fn(*mut c_void) -> CK_RV),
        UnlockMutex: callbacks.then_some(use_mutex as unsafe extern "C" fn(*mut c_void) -> CK_RV),
        flags,
        pReserved: ptr::null_mut(),
    }
}

#[test]
fn initialize_and_finalize_rules() {
    isolated("initialize_and_finalize_rules", Options::default(), |_| {
        let p = library();
        let not_init = CKR_CRYPTOKI_NOT_INITIALIZED;

        // Before C_Initialize every function but the list getters refuses.
        assert_err!(p.info(), not_init, "C_GetInfo before C_Initialize");
        assert_err!(p.slots(), not_init, "C_GetSlotList before C_Initialize");
        assert_err!(p.token_info(), not_init, "C_GetTokenInfo before C_Initialize");
        assert_err!(p.mechanisms(), not_init, "C_GetMechanismList before C_Initialize");
        assert_err!(p.open_session(true), not_init, "C_OpenSession before C_Initialize");
        assert_rv!(
            p.close_all_sessions(),
            not_init,
            "C_CloseAllSessions before C_Initialize"
        );
        assert_rv!(p.login(1, CKU_USER, USER_PIN), not_init, "C_Login before C_Initialize");
        assert_rv!(
            p.sign_init(1, &Mech::new(CKM_ECDSA), 1),
            not_init,
            "C_SignInit before C_Initialize"
        );
        assert_err!(p.random(1, 16), not_init, "C_GenerateRandom before C_Initialize");
        assert_rv!(p.finalize(), not_init, "C_Finalize before C_Initialize");
        let mut len: CK_ULONG = 0;
        assert_rv!(
            call!(p, C_GetOperationState(1, ptr::null_mut(), &mut len)),
            not_init,
            "an unsupported function (C_GetOperationState) before C_Initialize"
        );
        let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: a writable out-pointer.
        let rv = unsafe { (p.get_function_list)(&mut list) };
        assert_rv!(rv, CKR_OK, "C_GetFunctionList needs no C_Initialize");
        assert!(!list.is_null(), "C_GetFunctionList gave a null list");

        // C_Initialize's arguments.
        let mut reserved = 0u8;
        let mut args = init_args(false, 0);
        args.pReserved = &mut reserved as *mut u8 as *mut c_void;
        assert_rv!(
            p.initialize_with(&mut args),
            CKR_ARGUMENTS_BAD,
            "C_Initialize with pReserved set"
        );
        let mut args = init_args(false, CKF_OS_LOCKING_OK);
        args.CreateMutex = Some(create_mutex);
        assert_rv!(
            p.initialize_with(&mut args),
            CKR_ARGUMENTS_BAD,
            "C_Initialize with one mutex callback of four"
        );
        assert_rv!(
            p.initialize_with(&mut init_args(true, 0)),
            CKR_CANT_LOCK,
            "C_Initialize with mutex callbacks and without CKF_OS_LOCKING_OK"
        );
        assert_err!(p.info(), not_init, "C_GetInfo after refused C_Initialize calls");
        assert_rv!(
            p.initialize_with(&mut init_args(true, CKF_OS_LOCKING_OK)),
            CKR_OK,
            "C_Initialize with mutex callbacks and CKF_OS_LOCKING_OK"
        );
        let info = ok(p.info(), "C_GetInfo");
        assert_eq!(
            (info.cryptokiVersion.major, info.cryptokiVersion.minor),
            (3, 0),
            "cryptokiVersion"
        );
        assert_eq!(text(&info.manufacturerID), "Tessera");
        assert_rv!(
            p.initialize(),
            CKR_CRYPTOKI_ALREADY_INITIALIZED,
            "a second C_Initialize"
        );
        assert_rv!(
            p.initialize_with(&mut init_args(false, CKF_OS_LOCKING_OK)),
            CKR_CRYPTOKI_ALREADY_INITIALIZED,
            "a second C_Initialize with arguments"
        );
        assert_rv!(
            call!(p, C_Finalize(&mut reserved as *mut u8 as *mut c_void)),
            CKR_ARGUMENTS_BAD,
            "C_Finalize(non-NULL)"
        );
        ok(p.info(), "C_GetInfo after a refused C_Finalize: still initialised");
        assert_rv!(p.finalize(), CKR_OK, "C_Finalize(NULL)");
        assert_err!(p.info(), not_init, "C_GetInfo after C_Finalize");
        assert_rv!(p.finalize(), not_init, "a second C_Finalize");

        // Other accepted forms.
        assert_rv!(
            p.initialize_with(&mut init_args(false, CKF_OS_LOCKING_OK)),
            CKR_OK,
            "C_Initialize with CKF_OS_LOCKING_OK and no callbacks"
        );
        assert_rv!(p.finalize(), CKR_OK, "C_Finalize");
        assert_rv!(
            p.initialize_with(&mut init_args(false, 0)),
            CKR_OK,
            "C_Initialize with empty arguments"
        );
        assert_rv!(p.finalize(), CKR_OK, "C_Finalize");
        assert_eq!(
            MUTEX_CALLS.load(Ordering::SeqCst),
            0,
            "the module locks with OS primitives and never calls the application's mutex callbacks"
        );
    });
}

#[test]
fn every_entry_point_checks_its_pointers() {
    isolated("every_entry_point_checks_its_pointers", Options::default(), |fx| {
        create_keys(
            fx,
            &[
                (KeySpec::EcP256, KeyUsage::SignVerify, "np-ec"),
                (KeySpec::Aes256, KeyUsage::EncryptDecrypt, "np-aes"),
            ],
        );
        let (p, s) = ready();
        let k = find_one(p, s, "np-ec", CKO_PRIVATE_KEY);
        let pk = find_one(p, s, "np-ec", CKO_PUBLIC_KEY);
        let a = find_one(p, s, "np-aes", CKO_SECRET_KEY);
        let bad = |rv: CK_RV, what: &str| assert_rv!(rv, CKR_ARGUMENTS_BAD, "{what}");
        let null_u8: *mut u8 = ptr::null_mut();
        let null_ul: *mut CK_ULONG = ptr::null_mut();
        let mut n: CK_ULONG = 0;
        let mut buf = [0u8; 512];
        let data = b"data".to_vec();
        let data_ptr = data.as_ptr() as *mut u8;
        let mut sig = [0u8; 64];

        // The function lists.
        // SAFETY: the module must refuse the NULL out-pointers; nothing else is passed.
        let rvs = unsafe {
            [
                (p.get_function_list)(ptr::null_mut()),
                (p.get_interface_list)(ptr::null_mut(), ptr::null_mut()),
                (p.get_interface)(ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), 0),
            ]
        };
        bad(rvs[0], "C_GetFunctionList(NULL)");
        bad(rvs[1], "C_GetInterfaceList(NULL, NULL)");
        bad(rvs[2], "C_GetInterface(NULL, NULL, NULL)");
        let mut interfaces = [CK_INTERFACE {
            pInterfaceName: ptr::null_mut(),
            pFunctionList: ptr::null_mut(),
            flags: 0,
        }; 2];
        let mut v30 = CK_VERSION { major: 3, minor: 0 };
        // SAFETY: a writable list of two; the count pointer is NULL on purpose.
        let rv = unsafe { (p.get_interface_list)(interfaces.as_mut_ptr(), ptr::null_mut()) };
        bad(rv, "C_GetInterfaceList(list, NULL count)");
        // SAFETY: a NUL-terminated name and a readable version; the out-pointer is NULL on purpose.
        let rv = unsafe { (p.get_interface)(INTERFACE_NAME.as_ptr() as *mut u8, &mut v30, ptr::null_mut(), 0) };
        bad(rv, "C_GetInterface(\"PKCS 11\", 3.0, NULL)");

        // General functions.
        bad(call!(p, C_GetInfo(ptr::null_mut())), "C_GetInfo(NULL)");
        bad(
            call!(p, C_GetSlotList(CK_TRUE, ptr::null_mut(), null_ul)),
            "C_GetSlotList(NULL, NULL)",
        );
        let mut slots = [0 as CK_SLOT_ID; 4];
        bad(
            call!(p, C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), null_ul)),
            "C_GetSlotList(list, NULL count)",
        );
        bad(call!(p, C_GetSlotInfo(0, ptr::null_mut())), "C_GetSlotInfo(0, NULL)");
        bad(call!(p, C_GetTokenInfo(0, ptr::null_mut())), "C_GetTokenInfo(0, NULL)");
        bad(
            call!(p, C_GetMechanismList(0, ptr::null_mut(), null_ul)),
            "C_GetMechanismList(0, NULL, NULL)",
        );
        bad(
            call!(p, C_GetMechanismInfo(0, CKM_SHA256, ptr::null_mut())),
            "C_GetMechanismInfo(0, CKM_SHA256, NULL)",
        );
        let mut label = p11::token_label(TOKEN);
        bad(
            call!(p, C_InitToken(0, null_u8, 8, label.as_mut_ptr())),
            "C_InitToken with a NULL PIN of length 8",
        );
        bad(
            call!(
                p,
                C_InitToken(0, SO_PIN.as_ptr() as *mut u8, SO_PIN.len() as CK_ULONG, null_u8)
            ),
            "C_InitToken with a NULL label",
        );

        // Sessions and PINs.
        bad(
            call!(
                p,
                C_OpenSession(0, CKF_SERIAL_SESSION, ptr::null_mut(), None, ptr::null_mut())
            ),
            "C_OpenSession with a NULL handle pointer",
        );
        bad(
            call!(p, C_GetSessionInfo(s, ptr::null_mut())),
            "C_GetSessionInfo(s, NULL)",
        );
        bad(
            call!(p, C_Login(s, CKU_USER, null_u8, 8)),
            "C_Login with a NULL PIN of length 8",
        );
        bad(
            call!(p, C_LoginUser(s, CKU_USER, null_u8, 8, null_u8, 0)),
            "C_LoginUser with a NULL PIN of length 8",
        );
        bad(
            call!(p, C_InitPIN(s, null_u8, 8)),
            "C_InitPIN with a NULL PIN of length 8",
        );
        let pin = USER_PIN.as_ptr() as *mut u8;
        let pin_len = USER_PIN.len() as CK_ULONG;
        bad(
            call!(p, C_SetPIN(s, null_u8, 8, pin, pin_len)),
            "C_SetPIN with a NULL old PIN",
        );
        bad(
            call!(p, C_SetPIN(s, pin, pin_len, null_u8, 8)),
            "C_SetPIN with a NULL new PIN",
        );

        // Objects.
        bad(
            call!(p, C_FindObjectsInit(s, ptr::null_mut(), 1)),
            "C_FindObjectsInit(NULL template, count 1)",
        );
        let mut holed = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: ptr::null_mut(),
            ulValueLen: 4,
        }];
        bad(
            call!(p, C_FindObjectsInit(s, holed.as_mut_ptr(), 1)),
            "C_FindObjectsInit with an attribute whose value is NULL but 4 bytes long",
        );
        assert_rv!(
            call!(p, C_FindObjectsInit(s, ptr::null_mut(), 0)),
            CKR_OK,
            "C_FindObjectsInit(NULL, 0): an empty template"
        );
        let mut found = [0 as CK_OBJECT_HANDLE; 8];
        bad(
            call!(p, C_FindObjects(s, ptr::null_mut(), 8, &mut n)),
            "C_FindObjects(NULL handles, max 8)",
        );
        bad(
            call!(p, C_FindObjects(s, found.as_mut_ptr(), 8, null_ul)),
            "C_FindObjects with a NULL count",
        );
        assert_rv!(
            call!(p, C_FindObjects(s, found.as_mut_ptr(), 8, &mut n)),
            CKR_OK,
            "C_FindObjects after the refused calls"
        );
        assert_rv!(call!(p, C_FindObjectsFinal(s)), CKR_OK, "C_FindObjectsFinal");
        bad(
            call!(p, C_GetAttributeValue(s, pk, ptr::null_mut(), 1)),
            "C_GetAttributeValue(NULL template, count 1)",
        );
        bad(call!(p, C_GetObjectSize(s, pk, null_ul)), "C_GetObjectSize(NULL)");

        // Key generation with a NULL pointer creates nothing.
        let keys = key_count_elsewhere(fx);
        let aes = [
            Attr::ulong(CKA_VALUE_LEN, 32),
            Attr::bool(CKA_TOKEN, true),
            Attr::label("np-gen"),
        ];
        let mut aes_raw = p11::raw_template(&aes);
        let mut gen_aes = Mech::new(CKM_AES_KEY_GEN).raw();
        let mut h: CK_OBJECT_HANDLE = 0;
        bad(
            call!(p, C_GenerateKey(s, ptr::null_mut(), aes_raw.as_mut_ptr(), 3, &mut h)),
            "C_GenerateKey(NULL mechanism)",
        );
        bad(
            call!(
                p,
                C_GenerateKey(s, &mut gen_aes, aes_raw.as_mut_ptr(), 3, ptr::null_mut())
            ),
            "C_GenerateKey(NULL handle pointer)",
        );
        bad(
            call!(p, C_GenerateKey(s, &mut gen_aes, ptr::null_mut(), 3, &mut h)),
            "C_GenerateKey(NULL template, count 3)",
        );
        let ec_public = [Attr::bytes(CKA_EC_PARAMS, P256_PARAMS), Attr::bool(CKA_TOKEN, true)];
        let ec_private = [Attr::bool(CKA_TOKEN, true), Attr::label("np-gen-ec")];
        let mut public_raw = p11::raw_template(&ec_public);
        let mut private_raw = p11::raw_template(&ec_private);
        let mut gen_ec = Mech::new(CKM_EC_KEY_PAIR_GEN).raw();
        let (mut h1, mut h2): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        bad(
            call!(
                p,
                C_GenerateKeyPair(
                    s,
                    &mut gen_ec,
                    public_raw.as_mut_ptr(),
                    2,
                    private_raw.as_mut_ptr(),
                    2,
                    ptr::null_mut(),
                    &mut h2
                )
            ),
            "C_GenerateKeyPair(NULL public handle pointer)",
        );
        bad(
            call!(
                p,
                C_GenerateKeyPair(
                    s,
                    &mut gen_ec,
                    public_raw.as_mut_ptr(),
                    2,
                    private_raw.as_mut_ptr(),
                    2,
                    &mut h1,
                    ptr::null_mut()
                )
            ),
            "C_GenerateKeyPair(NULL private handle pointer)",
        );
        assert_eq!(
            key_count_elsewhere(fx),
            keys,
            "refused generation calls created KMS keys"
        );

        // Cryptography: NULL mechanisms, data and lengths.
        bad(
            call!(p, C_SignInit(s, ptr::null_mut(), k)),
            "C_SignInit(NULL mechanism)",
        );
        bad(
            call!(p, C_VerifyInit(s, ptr::null_mut(), pk)),
            "C_VerifyInit(NULL mechanism)",
        );
        bad(
            call!(p, C_EncryptInit(s, ptr::null_mut(), a)),
            "C_EncryptInit(NULL mechanism)",
        );
        bad(
            call!(p, C_DecryptInit(s, ptr::null_mut(), a)),
            "C_DecryptInit(NULL mechanism)",
        );
        bad(
            call!(p, C_DigestInit(s, ptr::null_mut())),
            "C_DigestInit(NULL mechanism)",
        );

        assert_rv!(p.sign_init(s, &Mech::new(CKM_ECDSA_SHA256), k), CKR_OK, "C_SignInit");
        bad(
            call!(p, C_Sign(s, data_ptr, 4, buf.as_mut_ptr(), null_ul)),
            "C_Sign with a NULL signature length pointer",
        );
        bad(
            call!(p, C_Sign(s, null_u8, 4, buf.as_mut_ptr(), &mut n)),
            "C_Sign with NULL data of length 4",
        );
        bad(call!(p, C_SignUpdate(s, null_u8, 4)), "C_SignUpdate(NULL, 4)");
        bad(call!(p, C_SignFinal(s, null_u8, null_ul)), "C_SignFinal(NULL, NULL)");
        assert_rv!(p.cancel(s, CKF_SIGN), CKR_OK, "C_SessionCancel(CKF_SIGN)");

        assert_rv!(
            p.verify_init(s, &Mech::new(CKM_ECDSA_SHA256), pk),
            CKR_OK,
            "C_VerifyInit"
        );
        bad(
            call!(p, C_Verify(s, null_u8, 4, sig.as_mut_ptr(), 64)),
            "C_Verify with NULL data",
        );
        bad(
            call!(p, C_Verify(s, data_ptr, 4, null_u8, 64)),
            "C_Verify with a NULL signature of length 64",
        );
        bad(call!(p, C_VerifyUpdate(s, null_u8, 4)), "C_VerifyUpdate(NULL, 4)");
        bad(call!(p, C_VerifyFinal(s, null_u8, 64)), "C_VerifyFinal(NULL, 64)");
        assert_rv!(p.cancel(s, CKF_VERIFY), CKR_OK, "C_SessionCancel(CKF_VERIFY)");

        let gcm = Mech::gcm(&[7u8; 12], b"aad", 128);
        assert_rv!(p.encrypt_init(s, &gcm, a), CKR_OK, "C_EncryptInit(AES-GCM)");
        bad(
            call!(p, C_Encrypt(s, data_ptr, 4, buf.as_mut_ptr(), null_ul)),
            "C_Encrypt with a NULL length pointer",
        );
        bad(
            call!(p, C_Encrypt(s, null_u8, 4, buf.as_mut_ptr(), &mut n)),
            "C_Encrypt with NULL data of length 4",
        );
        bad(
            call!(p, C_EncryptUpdate(s, data_ptr, 4, buf.as_mut_ptr(), null_ul)),
            "C_EncryptUpdate with a NULL length pointer",
        );
        bad(
            call!(p, C_EncryptFinal(s, null_u8, null_ul)),
            "C_EncryptFinal(NULL, NULL)",
        );
        assert_rv!(p.cancel(s, CKF_ENCRYPT), CKR_OK, "C_SessionCancel(CKF_ENCRYPT)");

        assert_rv!(p.decrypt_init(s, &gcm, a), CKR_OK, "C_DecryptInit(AES-GCM)");
        bad(
            call!(p, C_Decrypt(s, buf.as_mut_ptr(), 20, buf.as_mut_ptr(), null_ul)),
            "C_Decrypt with a NULL length pointer",
        );
        bad(
            call!(p, C_Decrypt(s, null_u8, 20, buf.as_mut_ptr(), &mut n)),
            "C_Decrypt with NULL data of length 20",
        );
        bad(
            call!(p, C_DecryptUpdate(s, data_ptr, 4, buf.as_mut_ptr(), null_ul)),
            "C_DecryptUpdate with a NULL length pointer",
        );
        bad(
            call!(p, C_DecryptFinal(s, null_u8, null_ul)),
            "C_DecryptFinal(NULL, NULL)",
        );
        assert_rv!(p.cancel(s, CKF_DECRYPT), CKR_OK, "C_SessionCancel(CKF_DECRYPT)");

        let mut sha256 = Mech::new(CKM_SHA256).raw();
        assert_rv!(call!(p, C_DigestInit(s, &mut sha256)), CKR_OK, "C_DigestInit");
        bad(
            call!(p, C_Digest(s, data_ptr, 4, buf.as_mut_ptr(), null_ul)),
            "C_Digest with a NULL length pointer",
        );
        bad(call!(p, C_DigestUpdate(s, null_u8, 4)), "C_DigestUpdate(NULL, 4)");
        bad(
            call!(p, C_DigestFinal(s, null_u8, null_ul)),
            "C_DigestFinal(NULL, NULL)",
        );
        assert_rv!(p.cancel(s, CKF_DIGEST), CKR_OK, "C_SessionCancel(CKF_DIGEST)");

        bad(call!(p, C_GenerateRandom(s, null_u8, 16)), "C_GenerateRandom(NULL, 16)");
        assert_rv!(
            call!(p, C_GenerateRandom(s, null_u8, 0)),
            CKR_OK,
            "C_GenerateRandom(NULL, 0) asks for nothing"
        );
        bad(call!(p, C_SeedRandom(s, null_u8, 4)), "C_SeedRandom(NULL, 4)");

        // A NULL mechanism parameter, or a NULL buffer inside one, is an invalid parameter.
        assert_rv!(
            p.encrypt_init(
                s,
                &Mech::null_param(CKM_AES_GCM, std::mem::size_of::<CK_GCM_PARAMS>()),
                a
            ),
            CKR_MECHANISM_PARAM_INVALID,
            "CKM_AES_GCM with a NULL CK_GCM_PARAMS"
        );
        let holed_gcm = CK_GCM_PARAMS {
            pIv: ptr::null_mut(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: ptr::null_mut(),
            ulAADLen: 0,
            ulTagBits: 128,
        };
        assert_rv!(
            p.encrypt_init(s, &Mech::with_param(CKM_AES_GCM, &holed_gcm), a),
            CKR_MECHANISM_PARAM_INVALID,
            "CKM_AES_GCM with a NULL IV of length 12"
        );
        assert_rv!(
            p.sign_init(
                s,
                &Mech::null_param(CKM_SHA256_RSA_PKCS_PSS, std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>()),
                k
            ),
            CKR_MECHANISM_PARAM_INVALID,
            "CKM_SHA256_RSA_PKCS_PSS with a NULL parameter"
        );

        // Functions the token does not offer say so, whatever the pointers.
        assert_rv!(
            call!(p, C_CreateObject(s, ptr::null_mut(), 3, ptr::null_mut())),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_CreateObject(NULL, 3, NULL)"
        );
        assert_rv!(
            call!(p, C_WrapKey(s, ptr::null_mut(), 0, 0, null_u8, null_ul)),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_WrapKey with NULLs"
        );
        assert_rv!(
            call!(p, C_WaitForSlotEvent(0, ptr::null_mut(), ptr::null_mut())),
            CKR_FUNCTION_NOT_SUPPORTED,
            "C_WaitForSlotEvent with NULLs"
        );

        // After all that the module still works.
        let signature = ok(p.sign(s, &Mech::new(CKM_ECDSA_SHA256), k, MESSAGE), "a signature");
        assert_rv!(
            p.verify(s, &Mech::new(CKM_ECDSA_SHA256), pk, MESSAGE, &signature),
            CKR_OK,
            "its verification"
        );
        assert!(
            !fx.log_text().contains("panic"),
            "a refused call panicked in the module (see module.log)"
        );
    });
}

// ================================================================ 2. interfaces

/// The CK_VERSION a function list starts with.
///
/// # Safety
/// `list` must point to a CK_FUNCTION_LIST or CK_FUNCTION_LIST_3_0.
unsafe fn list_version(list: *const c_void) -> (u8, u8) {
    // SAFETY: both list layouts begin with their CK_VERSION.
    let v = unsafe { *(list as *const CK_VERSION) };
    (v.major, v.minor)
}

/// C_GetInterface: the interface's name and its list's version.
fn get_interface(
    p: &Library,
    name: Option<&[u8]>,
    version: Option<(u8, u8)>,
) -> Result<(String, (u8, u8), *mut c_void), CK_RV> {
    let mut v = version.map(|(major, minor)| CK_VERSION { major, minor });
    let v_ptr = v.as_mut().map_or(ptr::null_mut(), |v| v as *mut CK_VERSION);
    let name_ptr = name.map_or(ptr::null_mut(), |n| n.as_ptr() as *mut u8);
    let mut interface: *mut CK_INTERFACE = ptr::null_mut();
    // SAFETY: NULL or NUL-terminated name, NULL or readable version, a writable out-pointer.
    p11::check(unsafe { (p.get_interface)(name_ptr, v_ptr, &mut interface, 0) })?;
    // SAFETY: on CKR_OK the module gave a pointer to its CK_INTERFACE, whose name is a C string
    // and whose function list begins with a CK_VERSION.
    unsafe {
        let i = interface.as_ref().expect("C_GetInterface gave NULL");
        let name = CStr::from_ptr(i.pInterfaceName as *const std::ffi::c_char)
            .to_string_lossy()
            .into_owned();
        Ok((name, list_version(i.pFunctionList), i.pFunctionList))
    }
}

#[test]
fn interface_lists() {
    isolated("interface_lists", Options::default(), |_| {
        let p = library();
        let mut n: CK_ULONG = 0;
        // SAFETY: a writable count; the list pointer is NULL for the length query.
        let rv = unsafe { (p.get_interface_list)(ptr::null_mut(), &mut n) };
        assert_rv!(rv, CKR_OK, "C_GetInterfaceList(NULL, &n)");
        assert_eq!(n, 2, "the module offers two interfaces");
        let empty = CK_INTERFACE {
            pInterfaceName: ptr::null_mut(),
            pFunctionList: ptr::null_mut(),
            flags: 0,
        };
        let mut list = [empty; 3];
        let mut one: CK_ULONG = 1;
        // SAFETY: room for three interfaces, the count says one.
        let rv = unsafe { (p.get_interface_list)(list.as_mut_ptr(), &mut one) };
        assert_rv!(rv, CKR_BUFFER_TOO_SMALL, "C_GetInterfaceList with room for one");
        assert_eq!(one, 2, "the count a short list gets back");
        let mut three: CK_ULONG = 3;
        // SAFETY: room for three interfaces.
        let rv = unsafe { (p.get_interface_list)(list.as_mut_ptr(), &mut three) };
        assert_rv!(rv, CKR_OK, "C_GetInterfaceList");
        assert_eq!(three, 2);
        let mut offered: Vec<(String, (u8, u8))> = list[..2]
            .iter()
            .map(|i| {
                // SAFETY: the module filled these with its static name and function lists.
                unsafe {
                    (
                        CStr::from_ptr(i.pInterfaceName as *const std::ffi::c_char)
                            .to_string_lossy()
                            .into_owned(),
                        list_version(i.pFunctionList),
                    )
                }
            })
            .collect();
        offered.sort();
        assert_eq!(
            offered,
            vec![("PKCS 11".to_owned(), (2, 40)), ("PKCS 11".to_owned(), (3, 0))],
            "the interfaces: PKCS 11 v2.40 and v3.0"
        );

        // C_GetInterface by version, by name only, and with neither.
        let (name, version, list30) = ok(
            get_interface(p, Some(INTERFACE_NAME), Some((3, 0))),
            "C_GetInterface 3.0",
        );
        assert_eq!((name.as_str(), version), ("PKCS 11", (3, 0)));
        // SAFETY: a 3.0 list is a CK_FUNCTION_LIST_3_0.
        let list30 = unsafe { &*(list30 as *const CK_FUNCTION_LIST_3_0) };
        assert!(
            list30.C_GetInterfaceList.is_some() && list30.C_LoginUser.is_some() && list30.C_SessionCancel.is_some(),
            "the v3.0 list has the v3.0 functions"
        );
        let (name, version, list240) = ok(
            get_interface(p, Some(INTERFACE_NAME), Some((2, 40))),
            "C_GetInterface 2.40",
        );
        assert_eq!((name.as_str(), version), ("PKCS 11", (2, 40)));
        let (name, version, _) = ok(
            get_interface(p, Some(INTERFACE_NAME), None),
            "C_GetInterface(\"PKCS 11\", NULL)",
        );
        assert_eq!(
            (name.as_str(), version),
            ("PKCS 11", (3, 0)),
            "the default interface is v3.0"
        );
        let (name, version, _) = ok(get_interface(p, None, None), "C_GetInterface(NULL, NULL)");
        assert_eq!(
            (name.as_str(), version),
            ("PKCS 11", (3, 0)),
            "the default interface is v3.0"
        );
        assert!(
            get_interface(p, Some(INTERFACE_NAME), Some((9, 9))).is_err(),
            "C_GetInterface of a version the module lacks must fail"
        );
        assert!(
            get_interface(p, Some(b"Vendor X\0"), None).is_err(),
            "C_GetInterface of another interface name must fail"
        );

        // C_GetFunctionList is the v2.40 list.
        let mut fl: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: a writable out-pointer.
        assert_rv!(unsafe { (p.get_function_list)(&mut fl) }, CKR_OK, "C_GetFunctionList");
        // SAFETY: on CKR_OK a pointer to the module's static CK_FUNCTION_LIST.
        let fl = unsafe { &*fl };
        assert_eq!(
            (fl.version.major, fl.version.minor),
            (2, 40),
            "C_GetFunctionList's version"
        );
        assert_eq!(
            fl as *const CK_FUNCTION_LIST as *const c_void, list240 as *const c_void,
            "C_GetFunctionList and the v2.40 interface give the same list"
        );

        // The v2.40 list works on its own.
        let initialize = fl.C_Initialize.expect("C_Initialize in the v2.40 list");
        let get_info = fl.C_GetInfo.expect("C_GetInfo in the v2.40 list");
        let finalize = fl.C_Finalize.expect("C_Finalize in the v2.40 list");
        // SAFETY: NULL arguments, a writable CK_INFO.
        unsafe {
            assert_rv!(initialize(ptr::null_mut()), CKR_OK, "C_Initialize via the v2.40 list");
            let mut info: CK_INFO = std::mem::zeroed();
            assert_rv!(get_info(&mut info), CKR_OK, "C_GetInfo via the v2.40 list");
            assert_eq!(text(&info.manufacturerID), "Tessera");
            assert_rv!(finalize(ptr::null_mut()), CKR_OK, "C_Finalize via the v2.40 list");
        }
    });
}

// ================================================================ 3. configuration

#[test]
fn configuration_errors_fail_initialize() {
    const TEST: &str = "configuration_errors_fail_initialize";
    if let Some(role) = role() {
        assert_eq!(role, "config_error");
        let p = library();
        assert_rv!(
            p.initialize(),
            CKR_GENERAL_ERROR,
            "C_Initialize with TESSERA_PKCS11_CONFIG={:?}",
            std::env::var_os("TESSERA_PKCS11_CONFIG")
        );
        assert_err!(
            p.info(),
            CKR_CRYPTOKI_NOT_INITIALIZED,
            "C_GetInfo after a failed C_Initialize"
        );
        assert_rv!(p.initialize(), CKR_GENERAL_ERROR, "C_Initialize again");
        return;
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let not_a_dir = tmp.path().join("a-file");
    std::fs::write(&not_a_dir, b"not a store").expect("write");
    let cases: Vec<(&str, Option<String>, Vec<&str>)> = vec![
        ("missing", None, vec!["missing.toml"]),
        (
            "broken",
            Some("store = \"/tmp/unterminated\n".into()),
            vec!["broken.toml", "not valid"],
        ),
        (
            "unknown",
            Some("stor = \"/tmp/x\"\n".into()),
            vec!["unknown.toml", "stor"],
        ),
        (
            "wrongtype",
            Some("generate_certs = \"yes\"\n".into()),
            vec!["generate_certs"],
        ),
        ("days", Some("destroy_pending_days = 3\n".into()), vec!["7 to 30"]),
        ("level", Some("log_level = \"loud\"\n".into()), vec!["loud"]),
        (
            "badstore",
            Some(format!("store = {}\n", harness::toml_string(&not_a_dir.join("store")))),
            vec!["cannot open the store", "a-file"],
        ),
    ];
    for (name, contents, says) in cases {
        let path = tmp.path().join(format!("{name}.toml"));
        if let Some(contents) = contents {
            std::fs::write(&path, contents).expect("write the configuration");
        }
        let out = run_child(
            TEST,
            "config_error",
            &[("TESSERA_PKCS11_CONFIG", path.into_os_string())],
        );
        assert!(out.passed(), "configuration case {name}:\n{}", out.describe());
        for s in says {
            assert!(
                out.stderr.contains(s),
                "configuration case {name}: standard error does not say {s:?}:\n{}",
                out.stderr
            );
        }
    }
}

#[test]
fn without_a_configuration_file_the_store_is_tessera_store() {
    const TEST: &str = "without_a_configuration_file_the_store_is_tessera_store";
    if let Some(role) = role() {
        assert_eq!(role, "store_env");
        assert!(std::env::var_os("TESSERA_PKCS11_CONFIG").is_none());
        let version = std::env::var("EXPECTED_VERSION").expect("EXPECTED_VERSION");
        let account = std::env::var("EXPECTED_ACCOUNT").expect("EXPECTED_ACCOUNT");
        let (p, s) = ready();
        let k = find_one(p, s, "from-env", CKO_PRIVATE_KEY);
        assert_eq!(
            ok(p.attr(s, k, CKA_ID), "CKA_ID"),
            version.into_bytes(),
            "the key of $TESSERA_STORE"
        );
        let info = ok(p.token_info(), "C_GetTokenInfo");
        assert_eq!(
            text(&info.serialNumber),
            account[account.len().saturating_sub(16)..],
            "the token's serial is this store's account"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let store = tmp.path().join("store");
    let (version, account) = {
        let kms = Kms::open(&store).expect("create the store");
        let key = create_key(&kms, KeySpec::EcP256, KeyUsage::SignVerify, "from-env");
        (key.version, kms.account_id().to_owned())
    };
    let out = run_child(
        TEST,
        "store_env",
        &[
            ("EXPECTED_VERSION", version.into()),
            ("EXPECTED_ACCOUNT", account.into()),
            ("TESSERA_STORE", store.into_os_string()),
            // Were TESSERA_STORE ignored, the default store would be under here, not $HOME.
            ("XDG_DATA_HOME", tmp.path().join("xdg").into_os_string()),
        ],
    );
    assert!(out.passed(), "{}", out.describe());
}

// ================================================================ 4. PINs and the token

#[test]
fn a_login_racing_the_close_of_the_last_session_leaves_no_login_behind() {
    isolated(
        "a_login_racing_the_close_of_the_last_session_leaves_no_login_behind",
        Options::default(),
        |_| {
            let p = start();
            init_token(p);
            // How long a C_Login takes here: the PIN check (Argon2) is most of it.
            let s = ok(p.open_session(true), "C_OpenSession");
            let started = std::time::Instant::now();
            assert_rv!(p.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login(USER)");
            let login_time = started.elapsed();
            assert_rv!(p.close_session(s), CKR_OK, "C_CloseSession");
            for round in 0..4 {
                // The application's last session closes while a C_Login through it is checking
                // the PIN: closing the last session logs the token out, and a login that ends
                // after it must not log the token back in with no session open.
                let s = ok(p.open_session(true), "C_OpenSession");
                let rv = std::thread::scope(|scope| {
                    scope.spawn(|| {
                        std::thread::sleep(login_time / 2);
                        assert_rv!(p.close_session(s), CKR_OK, "C_CloseSession during C_Login");
                    });
                    p.login(s, CKU_USER, USER_PIN)
                });
                assert!(
                    [CKR_OK, CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED].contains(&rv),
                    "round {round}: C_Login returned {rv:#x}"
                );
                let next = ok(p.open_session(true), "C_OpenSession");
                assert_eq!(
                    ok(p.session_info(next), "C_GetSessionInfo").state,
                    CKS_RW_PUBLIC_SESSION,
                    "round {round}: a session opened after the last one closed is logged in (C_Login returned {rv:#x})"
                );
                assert_rv!(p.close_session(next), CKR_OK, "C_CloseSession");
            }
        },
    );
}

#[test]
fn pins_and_login() {
    isolated("pins_and_login", Options::default(), |fx| {
        const NEW_PIN: &[u8] = b"changed-9876-quartz-NEW";
        let p = start();
        let info = ok(p.token_info(), "C_GetTokenInfo");
        assert_eq!(info.flags & CKF_TOKEN_INITIALIZED, 0, "a new token is not initialised");
        assert_ne!(info.flags & CKF_LOGIN_REQUIRED, 0, "CKF_LOGIN_REQUIRED");
        let s = ok(p.open_session(true), "C_OpenSession");
        assert_rv!(
            p.login(s, CKU_USER, USER_PIN),
            CKR_USER_PIN_NOT_INITIALIZED,
            "C_Login(USER) on an uninitialised token"
        );
        assert_rv!(p.close_session(s), CKR_OK, "C_CloseSession");

        assert_rv!(p.init_token(SO_PIN, TOKEN), CKR_OK, "C_InitToken");
        let info = ok(p.token_info(), "C_GetTokenInfo");
        assert_eq!(text(&info.label), TOKEN);
        assert_ne!(
            info.flags & CKF_TOKEN_INITIALIZED,
            0,
            "CKF_TOKEN_INITIALIZED after C_InitToken"
        );
        assert_eq!(info.flags & CKF_USER_PIN_INITIALIZED, 0, "no user PIN yet");

        let s = ok(p.open_session(true), "C_OpenSession");
        assert_rv!(
            p.login(s, CKU_USER, USER_PIN),
            CKR_USER_PIN_NOT_INITIALIZED,
            "C_Login(USER) before C_InitPIN"
        );
        assert_rv!(
            p.login(s, CKU_SO, b"wrong-so-pin"),
            CKR_PIN_INCORRECT,
            "C_Login(SO) with a wrong PIN"
        );
        assert_rv!(p.login(s, CKU_SO, SO_PIN), CKR_OK, "C_Login(SO)");
        assert_rv!(p.init_pin(s, USER_PIN), CKR_OK, "C_InitPIN");
        assert_rv!(p.logout(s), CKR_OK, "C_Logout(SO)");
        let info = ok(p.token_info(), "C_GetTokenInfo");
        assert_ne!(
            info.flags & CKF_USER_PIN_INITIALIZED,
            0,
            "CKF_USER_PIN_INITIALIZED after C_InitPIN"
        );

        assert_rv!(
            p.login(s, CKU_USER, b"wrong-pin"),
            CKR_PIN_INCORRECT,
            "C_Login(USER) with a wrong PIN"
        );
        assert_rv!(p.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login(USER)");
        assert_rv!(
            p.login(s, CKU_USER, USER_PIN),
            CKR_USER_ALREADY_LOGGED_IN,
            "a second C_Login(USER)"
        );
        let ro = ok(p.open_session(false), "C_OpenSession(RO)");
        assert_rv!(
            p.login(ro, CKU_USER, USER_PIN),
            CKR_USER_ALREADY_LOGGED_IN,
            "C_Login(USER) in another session: login is application-wide"
        );
        assert_rv!(
            p.login(ro, CKU_SO, SO_PIN),
            CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            "C_Login(SO) while the user is logged in"
        );
        assert_eq!(ok(p.session_info(s), "C_GetSessionInfo").state, CKS_RW_USER_FUNCTIONS);
        assert_eq!(ok(p.session_info(ro), "C_GetSessionInfo").state, CKS_RO_USER_FUNCTIONS);

        // C_SetPIN.
        assert_rv!(
            p.set_pin(s, b"wrong-old-pin", NEW_PIN),
            CKR_PIN_INCORRECT,
            "C_SetPIN with a wrong old PIN"
        );
        assert_rv!(
            p.set_pin(ro, USER_PIN, NEW_PIN),
            CKR_SESSION_READ_ONLY,
            "C_SetPIN in a read-only session"
        );
        assert_rv!(
            p.set_pin(s, USER_PIN, b"12"),
            CKR_PIN_LEN_RANGE,
            "C_SetPIN to a 2-byte PIN"
        );
        assert_rv!(p.set_pin(s, USER_PIN, NEW_PIN), CKR_OK, "C_SetPIN");
        assert_rv!(p.logout(s), CKR_OK, "C_Logout");
        assert_eq!(ok(p.session_info(s), "C_GetSessionInfo").state, CKS_RW_PUBLIC_SESSION);
        assert_rv!(
            p.login(s, CKU_USER, USER_PIN),
            CKR_PIN_INCORRECT,
            "C_Login with the old PIN"
        );
        assert_rv!(p.login(s, CKU_USER, NEW_PIN), CKR_OK, "C_Login with the new PIN");
        assert_rv!(p.logout(s), CKR_OK, "C_Logout");
        assert_rv!(p.logout(s), CKR_USER_NOT_LOGGED_IN, "C_Logout when nobody is logged in");

        // No PIN is ever written down: not in the store's files, not in the debug log.
        let check_files = |when: &str| {
            for file in files_under(&fx.store()) {
                let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
                for pin in [SO_PIN, USER_PIN, NEW_PIN] {
                    assert!(
                        !contains(&bytes, pin),
                        "{when}: {} contains the PIN {:?}",
                        file.display(),
                        String::from_utf8_lossy(pin)
                    );
                }
            }
        };
        check_files("while initialised");
        assert_rv!(p.finalize(), CKR_OK, "C_Finalize");
        check_files("after C_Finalize");
        let log = std::fs::read(fx.log()).expect("the configured log file exists");
        assert!(!log.is_empty(), "the debug log is empty");
        for pin in [SO_PIN, USER_PIN, NEW_PIN] {
            assert!(!contains(&log, pin), "the log contains a PIN");
        }
    });
}

#[test]
fn token_reinitialisation() {
    isolated("token_reinitialisation", Options::default(), |fx| {
        create_keys(fx, &[(KeySpec::EcP256, KeyUsage::SignVerify, "survivor")]);
        let p = start();
        init_token(p);
        let s = ok(p.open_session(true), "C_OpenSession");
        assert_rv!(
            p.init_token(SO_PIN, TOKEN),
            CKR_SESSION_EXISTS,
            "C_InitToken with a session open"
        );
        assert_rv!(p.close_session(s), CKR_OK, "C_CloseSession");
        assert_rv!(
            p.init_token(b"wrong-so-pin", TOKEN),
            CKR_PIN_INCORRECT,
            "re-initialising with a wrong SO PIN"
        );
        assert_eq!(text(&ok(p.token_info(), "C_GetTokenInfo").label), TOKEN, "label kept");
        assert_rv!(
            p.init_token(SO_PIN, "relabelled"),
            CKR_OK,
            "re-initialising with the SO PIN"
        );
        let info = ok(p.token_info(), "C_GetTokenInfo");
        assert_eq!(text(&info.label), "relabelled");
        assert_eq!(
            info.flags & CKF_USER_PIN_INITIALIZED,
            0,
            "re-initialisation clears the user PIN"
        );
        let s = ok(p.open_session(true), "C_OpenSession");
        assert_rv!(
            p.login(s, CKU_USER, USER_PIN),
            CKR_USER_PIN_NOT_INITIALIZED,
            "the old user PIN after re-initialisation"
        );
        assert_rv!(p.login(s, CKU_SO, SO_PIN), CKR_OK, "C_Login(SO)");
        assert_rv!(p.init_pin(s, USER_PIN), CKR_OK, "C_InitPIN");
        assert_rv!(p.logout(s), CKR_OK, "C_Logout");
        assert_rv!(p.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login(USER)");
        find_one(p, s, "survivor", CKO_PRIVATE_KEY);
    });
}

// ================================================================ 5. what sessions see

#[test]
fn public_sessions_see_only_public_objects() {
    isolated("public_sessions_see_only_public_objects", Options::default(), |fx| {
        create_keys(
            fx,
            &[
                (KeySpec::EcP256, KeyUsage::SignVerify, "vis-ec"),
                (KeySpec::Aes256, KeyUsage::EncryptDecrypt, "vis-aes"),
            ],
        );
        let p = start();
        init_token(p);
        let s = ok(p.open_session(false), "C_OpenSession(RO)");
        let public = find(p, s, &[]);
        assert_eq!(
            classes(p, s, &public),
            vec![CKO_PUBLIC_KEY],
            "a public session sees the public key only"
        );
        assert!(find(p, s, &[Attr::class(CKO_PRIVATE_KEY)]).is_empty());
        assert!(find(p, s, &[Attr::class(CKO_SECRET_KEY)]).is_empty());
        assert!(find(p, s, &[Attr::label("vis-aes")]).is_empty());

        assert_rv!(p.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login");
        let all = find(p, s, &[]);
        let mut seen = classes(p, s, &all);
        seen.sort_unstable();
        assert_eq!(
            seen,
            vec![CKO_PUBLIC_KEY, CKO_PRIVATE_KEY, CKO_SECRET_KEY],
            "after login"
        );
        let k = find_one(p, s, "vis-ec", CKO_PRIVATE_KEY);
        let pk = find_one(p, s, "vis-ec", CKO_PUBLIC_KEY);
        let a = find_one(p, s, "vis-aes", CKO_SECRET_KEY);
        let signature = ok(p.sign(s, &Mech::new(CKM_ECDSA_SHA256), k, MESSAGE), "C_Sign");
        assert_rv!(p.logout(s), CKR_OK, "C_Logout");

        assert_rv!(
            p.sign_init(s, &Mech::new(CKM_ECDSA_SHA256), k),
            CKR_USER_NOT_LOGGED_IN,
            "C_SignInit with a private key after logout"
        );
        assert_rv!(
            p.encrypt_init(s, &Mech::gcm(&[1; 12], b"", 128), a),
            CKR_USER_NOT_LOGGED_IN,
            "C_EncryptInit with a secret key after logout"
        );
        assert_err!(
            p.attr(s, k, CKA_LABEL),
            CKR_OBJECT_HANDLE_INVALID,
            "reading a private key's attributes after logout"
        );
        assert_eq!(find(p, s, &[]), public, "after logout: the public objects again");
        assert_rv!(
            p.verify(s, &Mech::new(CKM_ECDSA_SHA256), pk, MESSAGE, &signature),
            CKR_OK,
            "a public key verifies without login"
        );
        assert_eq!(ok(p.attr(s, pk, CKA_LABEL), "public CKA_LABEL"), b"vis-ec");
    });
}

// ================================================================ 6. objects and attributes

#[test]
fn object_attributes() {
    isolated("object_attributes", Options::default(), |fx| {
        let keys = create_keys(
            fx,
            &[
                (KeySpec::EcP256, KeyUsage::SignVerify, "app1"),
                (KeySpec::Rsa2048, KeyUsage::SignVerify, "app-rsa"),
                (KeySpec::Aes256, KeyUsage::EncryptDecrypt, "app-aes"),
            ],
        );
        let (ec, rsa_key) = (&keys[0], &keys[1]);
        let (p, s) = ready();

        // Label, id, class, flags.
        let k = find_one(p, s, "app1", CKO_PRIVATE_KEY);
        let pk = find_one(p, s, "app1", CKO_PUBLIC_KEY);
        let id = ec.version.as_bytes().to_vec();
        assert_eq!(ok(p.attr(s, k, CKA_ID), "CKA_ID"), id, "CKA_ID is the version id");
        assert_eq!(ok(p.attr(s, pk, CKA_ID), "CKA_ID"), id, "the public key shares it");
        assert_eq!(
            sorted(find(p, s, &[Attr::bytes(CKA_ID, &id)])),
            sorted(vec![k, pk]),
            "a CKA_ID search"
        );
        assert_eq!(
            ok(p.attr(s, k, CKA_LABEL), "CKA_LABEL"),
            b"app1",
            "alias/app1 is labelled app1"
        );
        assert_eq!(ok(p.attr_ulong(s, k, CKA_KEY_TYPE), "CKA_KEY_TYPE"), CKK_EC);
        for (object, attr, want) in [
            (k, CKA_TOKEN, true),
            (k, CKA_PRIVATE, true),
            (k, CKA_SENSITIVE, true),
            (k, CKA_ALWAYS_SENSITIVE, true),
            (k, CKA_EXTRACTABLE, false),
            (k, CKA_NEVER_EXTRACTABLE, true),
            (k, CKA_SIGN, true),
            (k, CKA_DECRYPT, false),
            (pk, CKA_PRIVATE, false),
            (pk, CKA_VERIFY, true),
            (pk, CKA_ENCRYPT, false),
        ] {
            assert_eq!(
                ok(p.attr_bool(s, object, attr), &format!("attribute 0x{attr:x}")),
                want,
                "attribute 0x{attr:x} of object {object}"
            );
        }

        // Secret values are sensitive, unknown attributes invalid, both with no length.
        for buffer in [None, Some(64)] {
            let (rv, got) = p.attrs_raw(s, k, &[(CKA_VALUE, buffer)]);
            assert_rv!(
                rv,
                CKR_ATTRIBUTE_SENSITIVE,
                "CKA_VALUE of a private key (buffer {buffer:?})"
            );
            assert_eq!(got[0].0, CK_UNAVAILABLE_INFORMATION, "its ulValueLen");
        }
        let unknown = CKA_VENDOR_DEFINED | 0x0077;
        let (rv, got) = p.attrs_raw(s, pk, &[(unknown, Some(16))]);
        assert_rv!(rv, CKR_ATTRIBUTE_TYPE_INVALID, "an unknown attribute");
        assert_eq!(got[0].0, CK_UNAVAILABLE_INFORMATION, "its ulValueLen");
        let (rv, got) = p.attrs_raw(s, pk, &[(CKA_MODULUS, Some(300))]);
        assert_rv!(rv, CKR_ATTRIBUTE_TYPE_INVALID, "CKA_MODULUS of an EC key");
        assert_eq!(got[0].0, CK_UNAVAILABLE_INFORMATION);
        let (rv, got) = p.attrs_raw(s, k, &[(CKA_LABEL, None), (CKA_VALUE, Some(64)), (unknown, Some(8))]);
        assert!(
            rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID,
            "a template mixing a good, a sensitive and an unknown attribute: {}",
            p11::rv_name(rv)
        );
        assert_eq!(got[0].0, 4, "the good attribute's length is still given");
        assert_eq!(
            (got[1].0, got[2].0),
            (CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION)
        );

        // EC public parts against GetPublicKey.
        let pem = &ec.pem;
        let vk = ec_public(pem);
        assert_eq!(ok(p.attr(s, pk, CKA_EC_PARAMS), "CKA_EC_PARAMS"), P256_PARAMS);
        let point = ok(p.attr(s, pk, CKA_EC_POINT), "CKA_EC_POINT");
        assert_eq!(
            point,
            ec_point_octets(&vk),
            "CKA_EC_POINT: the point of GetPublicKey, DER OCTET STRING"
        );
        assert_eq!(ok(p.attr(s, k, CKA_EC_POINT), "private CKA_EC_POINT"), point);
        assert_eq!(
            ok(p.attr(s, pk, CKA_PUBLIC_KEY_INFO), "CKA_PUBLIC_KEY_INFO"),
            pem_der(pem),
            "CKA_PUBLIC_KEY_INFO is GetPublicKey's SubjectPublicKeyInfo"
        );
        let (rv, got) = p.attrs_raw(s, pk, &[(CKA_EC_POINT, Some(10))]);
        assert_rv!(rv, CKR_BUFFER_TOO_SMALL, "CKA_EC_POINT into 10 bytes");
        assert_eq!(
            got[0].0, CK_UNAVAILABLE_INFORMATION,
            "ulValueLen after CKR_BUFFER_TOO_SMALL"
        );
        let (rv, got) = p.attrs_raw(s, pk, &[(CKA_EC_POINT, Some(67))]);
        assert_rv!(rv, CKR_OK, "CKA_EC_POINT into exactly 67 bytes");
        assert_eq!(got[0], (67, point.clone()));

        // RSA public parts against GetPublicKey.
        let rk = find_one(p, s, "app-rsa", CKO_PRIVATE_KEY);
        let rpk = find_one(p, s, "app-rsa", CKO_PUBLIC_KEY);
        let rsa_pub = rsa_public(&rsa_key.pem);
        assert_eq!(ok(p.attr_ulong(s, rpk, CKA_KEY_TYPE), "CKA_KEY_TYPE"), CKK_RSA);
        assert_eq!(ok(p.attr_ulong(s, rpk, CKA_MODULUS_BITS), "CKA_MODULUS_BITS"), 2048);
        let modulus = ok(p.attr(s, rpk, CKA_MODULUS), "CKA_MODULUS");
        assert_eq!(modulus, rsa_pub.n_bytes().to_vec(), "CKA_MODULUS is GetPublicKey's n");
        assert_eq!(modulus.len(), 256);
        assert_eq!(
            ok(p.attr(s, rpk, CKA_PUBLIC_EXPONENT), "CKA_PUBLIC_EXPONENT"),
            rsa_pub.e_bytes().to_vec(),
            "CKA_PUBLIC_EXPONENT is GetPublicKey's e"
        );
        assert_eq!(ok(p.attr(s, rk, CKA_MODULUS), "private CKA_MODULUS"), modulus);
        let (rv, got) = p.attrs_raw(s, rk, &[(CKA_PRIVATE_EXPONENT, Some(512))]);
        assert_rv!(rv, CKR_ATTRIBUTE_SENSITIVE, "CKA_PRIVATE_EXPONENT");
        assert_eq!(got[0].0, CK_UNAVAILABLE_INFORMATION);
        let (rv, got) = p.attrs_raw(s, rpk, &[(CKA_MODULUS, Some(255))]);
        assert_rv!(rv, CKR_BUFFER_TOO_SMALL, "CKA_MODULUS into 255 bytes");
        assert_eq!(got[0].0, CK_UNAVAILABLE_INFORMATION);

        // A secret key.
        let a = find_one(p, s, "app-aes", CKO_SECRET_KEY);
        assert_eq!(ok(p.attr_ulong(s, a, CKA_KEY_TYPE), "CKA_KEY_TYPE"), CKK_AES);
        assert_eq!(ok(p.attr_ulong(s, a, CKA_VALUE_LEN), "CKA_VALUE_LEN"), 32);
        assert!(ok(p.attr_bool(s, a, CKA_ENCRYPT), "CKA_ENCRYPT"));
        assert!(!ok(p.attr_bool(s, a, CKA_SIGN), "CKA_SIGN"));
        let (rv, got) = p.attrs_raw(s, a, &[(CKA_VALUE, Some(32))]);
        assert_rv!(rv, CKR_ATTRIBUTE_SENSITIVE, "CKA_VALUE of a secret key");
        assert_eq!(got[0].0, CK_UNAVAILABLE_INFORMATION);
    });
}

#[test]
fn rotation_lists_the_primary_version_first() {
    isolated("rotation_lists_the_primary_version_first", Options::default(), |fx| {
        let key = create_keys(fx, &[(KeySpec::EcP256, KeyUsage::SignVerify, "rot")]).remove(0);
        let (p, s) = ready();
        let before = find(p, s, &[Attr::label("rot"), Attr::class(CKO_PRIVATE_KEY)]);
        assert_eq!(before.len(), 1);
        let v2 = field(
            &elsewhere_ok(fx, "CreateKeyVersion", &key.id)["KeyVersion"],
            "KeyVersionId",
        );
        // The plain label names the primary version only (so that clients which pick a key by
        // label, and Java's KeyStore aliases, get one key); older versions are `label@version`.
        let old_label = format!("rot@{}", key.version);
        let ids = |objects: &[CK_OBJECT_HANDLE]| -> Vec<Vec<u8>> {
            objects.iter().map(|o| ok(p.attr(s, *o, CKA_ID), "CKA_ID")).collect()
        };
        for class in [CKO_PRIVATE_KEY, CKO_PUBLIC_KEY] {
            let primary = find(p, s, &[Attr::label("rot"), Attr::class(class)]);
            assert_eq!(
                ids(&primary),
                vec![v2.as_bytes().to_vec()],
                "class {class}: `rot` is the new primary"
            );
            let older = find(p, s, &[Attr::label(&old_label), Attr::class(class)]);
            assert_eq!(
                ids(&older),
                vec![key.version.as_bytes().to_vec()],
                "class {class}: {old_label} is the old version"
            );
        }
        // A search by class alone lists both versions, the primary first.
        let versions = [v2.as_bytes().to_vec(), key.version.as_bytes().to_vec()];
        let privates: Vec<CK_OBJECT_HANDLE> = find(p, s, &[Attr::class(CKO_PRIVATE_KEY)])
            .into_iter()
            .filter(|o| versions.contains(&ok(p.attr(s, *o, CKA_ID), "CKA_ID")))
            .collect();
        assert_eq!(ids(&privates), versions.to_vec(), "private keys: the new primary first");
        assert_eq!(privates[1], before[0], "the old version keeps its handle");
        // Each handle signs with its own version.
        for (object, version) in [(privates[0], &v2), (privates[1], &key.version)] {
            let sig = ok(p.sign(s, &Mech::new(CKM_ECDSA_SHA256), object, MESSAGE), "C_Sign");
            let vk = ec_public(&public_pem_elsewhere(fx, &key.id, version));
            assert_ecdsa(&vk, MESSAGE, &sig, &format!("a signature by version {version}"));
        }
    });
}

/// Disables or enables a key in another process: the `tessera` CLI when this profile has one
/// built from the current sources, else a child of this test binary (see [`elsewhere`]).
fn change_key_elsewhere(fx: &Fixture, action: &str, key_id: &str) {
    if let Some(binary) = fresh_tessera_binary() {
        let out = Command::new(&binary)
            .arg("--store")
            .arg(fx.store())
            .args([action, "--KeyId", key_id])
            .env_remove("TESSERA_PASSPHRASE")
            .env_remove("TESSERA_ROOT_KEY_FILE")
            .output()
            .expect("run tessera");
        assert!(
            out.status.success(),
            "tessera {action}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    elsewhere_ok(fx, action, key_id);
}

/// target/<profile>/tessera, if it is newer than every source file of kms-core and kms-cli (a
/// stale build may not even read the store this test's kms-core writes).
fn fresh_tessera_binary() -> Option<std::path::PathBuf> {
    let binary = common::profile_dir().join("tessera");
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let newest_source = ["kms-core", "kms-cli"]
        .iter()
        .flat_map(|c| files_under(&workspace.join(c)))
        .filter(|f| f.extension().is_some_and(|e| e == "rs" || e == "toml"))
        .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .max()?;
    if built >= newest_source {
        Some(binary)
    } else {
        eprintln!(
            "{} is older than its sources: using a child process instead",
            binary.display()
        );
        None
    }
}

#[test]
fn a_key_disabled_elsewhere_leaves_and_returns_with_the_same_handles() {
    isolated(
        "a_key_disabled_elsewhere_leaves_and_returns_with_the_same_handles",
        Options::default(),
        |fx| {
            let key = create_keys(
                fx,
                &[
                    (KeySpec::EcP256, KeyUsage::SignVerify, "dis"),
                    (KeySpec::EcP256, KeyUsage::SignVerify, "stays"),
                ],
            )
            .remove(0);
            let (p, s) = ready();
            let handles = sorted(find(p, s, &[Attr::label("dis")]));
            assert_eq!(handles.len(), 2);
            let k = find_one(p, s, "dis", CKO_PRIVATE_KEY);
            let pk = find_one(p, s, "dis", CKO_PUBLIC_KEY);
            let ecdsa = Mech::new(CKM_ECDSA_SHA256);
            ok(p.sign(s, &ecdsa, k, MESSAGE), "C_Sign while Enabled");
            // An operation begun while the key was Enabled…
            let s2 = ok(p.open_session(false), "C_OpenSession");
            assert_rv!(p.sign_init(s2, &ecdsa, k), CKR_OK, "C_SignInit while Enabled");

            change_key_elsewhere(fx, "DisableKey", &key.id);
            assert!(
                find(p, s, &[Attr::label("dis")]).is_empty(),
                "a disabled key's objects are gone"
            );
            let everything = find(p, s, &[]);
            assert!(
                handles.iter().all(|h| !everything.contains(h)),
                "a disabled key's handles are not found by an empty template"
            );
            assert_eq!(find(p, s, &[Attr::label("stays")]).len(), 2, "other keys stay");
            assert_rv!(
                p.sign_init(s, &ecdsa, k),
                CKR_KEY_HANDLE_INVALID,
                "C_SignInit with a disabled key's handle"
            );
            assert_rv!(
                p.verify_init(s, &ecdsa, pk),
                CKR_KEY_HANDLE_INVALID,
                "C_VerifyInit with a disabled key's public handle"
            );
            assert_err!(
                p.attr(s, k, CKA_LABEL),
                CKR_OBJECT_HANDLE_INVALID,
                "attributes of a disabled key's object"
            );
            // …cannot finish once it is Disabled.
            let mut sig = [0u8; 64];
            let mut len: CK_ULONG = 0;
            assert_rv!(
                p.sign_call(s2, MESSAGE, Some(&mut sig), &mut len),
                CKR_KEY_HANDLE_INVALID,
                "C_Sign of an operation begun before the key was disabled"
            );

            change_key_elsewhere(fx, "EnableKey", &key.id);
            assert_eq!(
                sorted(find(p, s, &[Attr::label("dis")])),
                handles,
                "an enabled key comes back with the same handles"
            );
            let sig = ok(p.sign(s, &ecdsa, k, MESSAGE), "C_Sign after EnableKey");
            assert_ecdsa(&ec_public(&key.pem), MESSAGE, &sig, "a signature after EnableKey");
        },
    );
}

/// A session remembers its last search; the answer must still follow every change: login,
/// session objects of other sessions, keys changed in another process.
#[test]
fn a_repeated_search_sees_what_changed_since() {
    isolated("a_repeated_search_sees_what_changed_since", Options::default(), |fx| {
        let key = create_keys(fx, &[(KeySpec::EcP256, KeyUsage::SignVerify, "again")]).remove(0);
        let (p, s) = ready();
        let label = [Attr::label("again")];
        let both = sorted(find(p, s, &label));
        assert_eq!(both.len(), 2, "a key pair");
        assert_eq!(sorted(find(p, s, &label)), both, "the same search, the same answer");

        assert_rv!(p.logout(s), CKR_OK, "C_Logout");
        let public = find(p, s, &label);
        assert_eq!(
            classes(p, s, &public),
            [CKO_PUBLIC_KEY],
            "logged out: the public half only"
        );
        assert_rv!(p.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login(USER)");
        assert_eq!(sorted(find(p, s, &label)), both, "logged in again");

        let s2 = ok(p.open_session(true), "C_OpenSession");
        let session_key = ok(
            p.generate_key(s2, &Mech::new(CKM_AES_KEY_GEN), &aes_template("again", false, 32)),
            "C_GenerateKey(session) in another session",
        );
        let mut with_session_key = both.clone();
        with_session_key.push(session_key);
        assert_eq!(
            sorted(find(p, s, &label)),
            sorted(with_session_key),
            "another session's new key"
        );
        assert_rv!(p.close_session(s2), CKR_OK, "C_CloseSession");
        assert_eq!(sorted(find(p, s, &label)), both, "gone with its session");

        change_key_elsewhere(fx, "DisableKey", &key.id);
        assert!(find(p, s, &label).is_empty(), "disabled in another process");
        change_key_elsewhere(fx, "EnableKey", &key.id);
        assert_eq!(sorted(find(p, s, &label)), both, "enabled again");
    });
}

#[test]
fn generated_certificates() {
    let options = Options {
        generate_certs: true,
        ..Options::default()
    };
    isolated("generated_certificates", options, |fx| {
        let keys = create_keys(
            fx,
            &[
                (KeySpec::EcP256, KeyUsage::SignVerify, "cert-ec"),
                (KeySpec::Rsa2048, KeyUsage::SignVerify, "cert-rsa"),
                (KeySpec::Aes256, KeyUsage::EncryptDecrypt, "cert-aes"),
            ],
        );
        let (ec, rsa_key) = (&keys[0], &keys[1]);
        let (p, s) = ready();
        for (label, key, signature_oid) in [
            ("cert-ec", ec, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02][..]),
            (
                "cert-rsa",
                rsa_key,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b][..],
            ),
        ] {
            let cert = find_one(p, s, label, CKO_CERTIFICATE);
            let k = find_one(p, s, label, CKO_PRIVATE_KEY);
            let id = ok(p.attr(s, cert, CKA_ID), "certificate CKA_ID");
            assert_eq!(
                id,
                ok(p.attr(s, k, CKA_ID), "private CKA_ID"),
                "{label}: the certificate's CKA_ID"
            );
            assert_eq!(id, key.version.as_bytes());
            assert_eq!(
                ok(p.attr_ulong(s, cert, CKA_CERTIFICATE_TYPE), "CKA_CERTIFICATE_TYPE"),
                CKC_X_509
            );
            assert!(
                !ok(p.attr_bool(s, cert, CKA_PRIVATE), "CKA_PRIVATE"),
                "certificates are public"
            );
            let der = ok(p.attr(s, cert, CKA_VALUE), "certificate CKA_VALUE");
            let pem = &key.pem;

            // OpenSSL reads it, its key is the version's, and it verifies as self-signed.
            let der_path = fx.dir.join(format!("{label}.der"));
            let pem_path = fx.dir.join(format!("{label}.pem"));
            std::fs::write(&der_path, &der).expect("write the certificate");
            let der_arg = der_path.display().to_string();
            let pem_arg = pem_path.display().to_string();
            let shown = openssl(&[
                "x509", "-inform", "DER", "-in", &der_arg, "-noout", "-subject", "-pubkey",
            ]);
            assert!(shown.contains(&format!("CN = {label}")), "{label}: subject: {shown}");
            let body = |text: &str| -> String {
                text.lines()
                    .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY"))
                    .take_while(|l| !l.starts_with("-----END"))
                    .collect()
            };
            assert_eq!(
                body(&shown),
                body(pem),
                "{label}: the certificate's key is GetPublicKey's"
            );
            openssl(&["x509", "-inform", "DER", "-in", &der_arg, "-out", &pem_arg]);
            let verified = openssl(&["verify", "-check_ss_sig", "-CAfile", &pem_arg, &pem_arg]);
            assert!(verified.contains(": OK"), "{label}: openssl verify: {verified}");

            // And checked here, independently of OpenSSL.
            let (tbs, oid, signature) = certificate_parts(&der);
            assert_eq!(oid, signature_oid, "{label}: signature algorithm");
            assert!(
                contains(tbs, &pem_der(pem)),
                "{label}: the TBSCertificate holds the SPKI"
            );
            let subject = ok(p.attr(s, cert, CKA_SUBJECT), "CKA_SUBJECT");
            assert!(!subject.is_empty() && contains(tbs, &subject), "{label}: CKA_SUBJECT");
            if label == "cert-ec" {
                let sig = p256::ecdsa::Signature::from_der(signature).expect("a DER ECDSA signature");
                ec_public(pem)
                    .verify(tbs, &sig)
                    .expect("the EC certificate's signature");
            } else {
                rsa_public(pem)
                    .verify(
                        rsa::Pkcs1v15Sign::new::<rsa::sha2::Sha256>(),
                        &sha2::Sha256::digest(tbs),
                        signature,
                    )
                    .expect("the RSA certificate's signature");
            }
        }
        assert!(
            find(p, s, &[Attr::label("cert-aes"), Attr::class(CKO_CERTIFICATE)]).is_empty(),
            "a secret key has no certificate"
        );
        // Public sessions see certificates; every version has its own.
        assert_rv!(p.logout(s), CKR_OK, "C_Logout");
        assert_eq!(
            find(p, s, &[Attr::class(CKO_CERTIFICATE)]).len(),
            2,
            "certificates without login"
        );
        let v2 = field(
            &elsewhere_ok(fx, "CreateKeyVersion", &ec.id)["KeyVersion"],
            "KeyVersionId",
        );
        // One certificate per version: the plain label on the primary's, `label@version` on
        // the older one's (Java makes a KeyStore alias of each).
        let old_label = format!("cert-ec@{}", ec.version);
        for (label, version) in [("cert-ec", &v2), (old_label.as_str(), &ec.version)] {
            let certs = find(p, s, &[Attr::label(label), Attr::class(CKO_CERTIFICATE)]);
            let ids: Vec<Vec<u8>> = certs.iter().map(|c| ok(p.attr(s, *c, CKA_ID), "CKA_ID")).collect();
            assert_eq!(
                ids,
                vec![version.as_bytes().to_vec()],
                "after rotation, the certificate labelled {label} is version {version}'s"
            );
        }
        assert_eq!(
            find(p, s, &[Attr::class(CKO_CERTIFICATE)]).len(),
            3,
            "after rotation, one certificate per version"
        );
    });
}

// ================================================================ 7. mechanisms

#[test]
fn signature_length_conventions() {
    isolated("signature_length_conventions", Options::default(), |fx| {
        let keys = create_keys(
            fx,
            &[
                (KeySpec::EcP256, KeyUsage::SignVerify, "len-ec"),
                (KeySpec::Rsa2048, KeyUsage::SignVerify, "len-rsa"),
            ],
        );
        let (p, s) = ready();
        let (ec_pem, rsa_pem) = (&keys[0].pem, &keys[1].pem);
        let check = |label: &str, sig: &[u8]| {
            if label == "len-ec" {
                assert_ecdsa(&ec_public(ec_pem), MESSAGE, sig, label);
            } else {
                rsa_public(rsa_pem)
                    .verify(
                        rsa::Pkcs1v15Sign::new::<rsa::sha2::Sha256>(),
                        &sha2::Sha256::digest(MESSAGE),
                        sig,
                    )
                    .unwrap_or_else(|e| panic!("{label}: rsa rejects the signature: {e}"));
            }
        };
        for (label, mech, want) in [
            ("len-ec", CKM_ECDSA_SHA256, 64usize),
            ("len-rsa", CKM_SHA256_RSA_PKCS, 256),
        ] {
            let k = find_one(p, s, label, CKO_PRIVATE_KEY);
            let m = Mech::new(mech);

            // Single part: length query, short buffer, right buffer.
            assert_rv!(p.sign_init(s, &m, k), CKR_OK, "{label}: C_SignInit");
            let mut len: CK_ULONG = 0;
            assert_rv!(p.sign_call(s, MESSAGE, None, &mut len), CKR_OK, "{label}: length query");
            assert_eq!(len as usize, want, "{label}: the signature length");
            let mut short = vec![0u8; want - 1];
            assert_rv!(
                p.sign_call(s, MESSAGE, Some(&mut short), &mut len),
                CKR_BUFFER_TOO_SMALL,
                "{label}: C_Sign into {} bytes",
                want - 1
            );
            assert_eq!(len as usize, want, "{label}: the length after CKR_BUFFER_TOO_SMALL");
            let mut sig = vec![0u8; want + 10];
            assert_rv!(
                p.sign_call(s, MESSAGE, Some(&mut sig), &mut len),
                CKR_OK,
                "{label}: C_Sign after CKR_BUFFER_TOO_SMALL: the operation went on"
            );
            assert_eq!(len as usize, want, "{label}: the signature's length");
            check(label, &sig[..want]);
            assert_rv!(
                p.sign_call(s, MESSAGE, Some(&mut sig), &mut len),
                CKR_OPERATION_NOT_INITIALIZED,
                "{label}: C_Sign after a signature was delivered"
            );

            // Multi-part: the same conventions at C_SignFinal.
            assert_rv!(p.sign_init(s, &m, k), CKR_OK, "{label}: C_SignInit");
            assert_rv!(p.sign_update(s, &MESSAGE[..10]), CKR_OK, "{label}: C_SignUpdate");
            assert_rv!(p.sign_update(s, &MESSAGE[10..]), CKR_OK, "{label}: C_SignUpdate");
            let mut len: CK_ULONG = 0;
            assert_rv!(
                p.sign_final_call(s, None, &mut len),
                CKR_OK,
                "{label}: C_SignFinal length query"
            );
            assert_eq!(len as usize, want);
            let mut short = vec![0u8; 8];
            assert_rv!(
                p.sign_final_call(s, Some(&mut short), &mut len),
                CKR_BUFFER_TOO_SMALL,
                "{label}: C_SignFinal into 8 bytes"
            );
            assert_eq!(len as usize, want);
            let mut sig = vec![0u8; want];
            assert_rv!(
                p.sign_final_call(s, Some(&mut sig), &mut len),
                CKR_OK,
                "{label}: C_SignFinal"
            );
            check(label, &sig);
            assert_rv!(
                p.sign_final_call(s, Some(&mut sig), &mut len),
                CKR_OPERATION_NOT_INITIALIZED,
                "{label}: C_SignFinal after delivery"
            );
            assert_rv!(
                p.sign_init(s, &m, k),
                CKR_OK,
                "{label}: C_SignInit for C_SignInit twice"
            );
            assert_rv!(
                p.sign_init(s, &m, k),
                CKR_OPERATION_ACTIVE,
                "{label}: C_SignInit while signing"
            );
            assert_rv!(p.cancel(s, CKF_SIGN), CKR_OK, "C_SessionCancel");
        }
    });
}

#[test]
fn ecdsa_signatures_verify_with_p256() {
    isolated("ecdsa_signatures_verify_with_p256", Options::default(), |fx| {
        let ec = create_keys(fx, &[(KeySpec::EcP256, KeyUsage::SignVerify, "ecdsa")]).remove(0);
        let (p, s) = ready();
        let k = find_one(p, s, "ecdsa", CKO_PRIVATE_KEY);
        let pk = find_one(p, s, "ecdsa", CKO_PUBLIC_KEY);
        let vk = ec_public(&ec.pem);
        let digest = sha2::Sha256::digest(MESSAGE);

        let raw = ok(p.sign(s, &Mech::new(CKM_ECDSA), k, &digest), "CKM_ECDSA over a digest");
        let sig = p256::ecdsa::Signature::from_slice(&raw).expect("r || s");
        vk.verify_prehash(&digest, &sig)
            .expect("CKM_ECDSA: p256 verifies over the digest");
        assert_rv!(
            p.verify(s, &Mech::new(CKM_ECDSA), pk, &digest, &raw),
            CKR_OK,
            "C_Verify(CKM_ECDSA)"
        );

        let single = ok(p.sign(s, &Mech::new(CKM_ECDSA_SHA256), k, MESSAGE), "CKM_ECDSA_SHA256");
        assert_ecdsa(&vk, MESSAGE, &single, "CKM_ECDSA_SHA256");
        let parts: [&[u8]; 3] = [&MESSAGE[..5], &MESSAGE[5..40], &MESSAGE[40..]];
        let multi = ok(
            p.sign_parts(s, &Mech::new(CKM_ECDSA_SHA256), k, &parts),
            "CKM_ECDSA_SHA256 multi-part",
        );
        assert_ecdsa(&vk, MESSAGE, &multi, "CKM_ECDSA_SHA256 multi-part");
        assert!(
            vk.verify(
                b"another message",
                &p256::ecdsa::Signature::from_slice(&multi).expect("r || s")
            )
            .is_err(),
            "p256 must reject the signature for another message"
        );
        assert_rv!(
            p.verify(s, &Mech::new(CKM_ECDSA_SHA256), pk, MESSAGE, &single),
            CKR_OK,
            "C_Verify(CKM_ECDSA_SHA256)"
        );
        assert_rv!(
            p.verify_parts(s, &Mech::new(CKM_ECDSA_SHA256), pk, &parts, &multi),
            CKR_OK,
            "C_VerifyUpdate/C_VerifyFinal(CKM_ECDSA_SHA256)"
        );

        // SHA-384 and SHA-512 variants sign the truncated digest (FIPS 186-4).
        for (mech, digest) in [
            (CKM_ECDSA_SHA384, sha2::Sha384::digest(MESSAGE).to_vec()),
            (CKM_ECDSA_SHA512, sha2::Sha512::digest(MESSAGE).to_vec()),
        ] {
            let raw = ok(p.sign(s, &Mech::new(mech), k, MESSAGE), "CKM_ECDSA_SHA384/512");
            let sig = p256::ecdsa::Signature::from_slice(&raw).expect("r || s");
            vk.verify_prehash(&digest, &sig)
                .unwrap_or_else(|e| panic!("mechanism 0x{mech:x}: p256 rejects it: {e}"));
            assert_rv!(
                p.verify(s, &Mech::new(mech), pk, MESSAGE, &raw),
                CKR_OK,
                "C_Verify 0x{mech:x}"
            );
        }
        assert_rv!(
            p.sign_init(s, &Mech::new(CKM_SHA256_RSA_PKCS), k),
            CKR_KEY_TYPE_INCONSISTENT,
            "an RSA mechanism with an EC key"
        );
    });
}

#[test]
fn rsa_signatures_verify_with_the_rsa_crate() {
    isolated("rsa_signatures_verify_with_the_rsa_crate", Options::default(), |fx| {
        let key = create_keys(fx, &[(KeySpec::Rsa2048, KeyUsage::SignVerify, "rsa-sig")]).remove(0);
        let (p, s) = ready();
        let k = find_one(p, s, "rsa-sig", CKO_PRIVATE_KEY);
        let pk = find_one(p, s, "rsa-sig", CKO_PUBLIC_KEY);
        let public = rsa_public(&key.pem);
        let digest = sha2::Sha256::digest(MESSAGE);

        let pkcs1 = ok(
            p.sign(s, &Mech::new(CKM_SHA256_RSA_PKCS), k, MESSAGE),
            "CKM_SHA256_RSA_PKCS",
        );
        assert_eq!(pkcs1.len(), 256);
        public
            .verify(rsa::Pkcs1v15Sign::new::<rsa::sha2::Sha256>(), &digest, &pkcs1)
            .expect("CKM_SHA256_RSA_PKCS: rsa verifies it");
        let mut digest_info = SHA256_DIGEST_INFO.to_vec();
        digest_info.extend_from_slice(&digest);
        let raw = ok(
            p.sign(s, &Mech::new(CKM_RSA_PKCS), k, &digest_info),
            "CKM_RSA_PKCS over a DigestInfo",
        );
        assert_eq!(
            raw, pkcs1,
            "CKM_RSA_PKCS over the DigestInfo is CKM_SHA256_RSA_PKCS's signature"
        );
        let parts: [&[u8]; 2] = [&MESSAGE[..30], &MESSAGE[30..]];
        let multi = ok(
            p.sign_parts(s, &Mech::new(CKM_SHA256_RSA_PKCS), k, &parts),
            "CKM_SHA256_RSA_PKCS multi-part",
        );
        assert_eq!(
            multi, pkcs1,
            "PKCS#1 v1.5 is deterministic: multi-part gives the same signature"
        );
        assert_rv!(
            p.verify(s, &Mech::new(CKM_SHA256_RSA_PKCS), pk, MESSAGE, &pkcs1),
            CKR_OK,
            "C_Verify(CKM_SHA256_RSA_PKCS)"
        );

        let pss = Mech::pss(CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA256, 32);
        let sig = ok(p.sign(s, &pss, k, MESSAGE), "CKM_SHA256_RSA_PKCS_PSS");
        public
            .verify(rsa::Pss::<rsa::sha2::Sha256>::new_with_salt(32), &digest, &sig)
            .expect("CKM_SHA256_RSA_PKCS_PSS salt 32: rsa verifies it");
        assert_rv!(p.verify(s, &pss, pk, MESSAGE, &sig), CKR_OK, "C_Verify(PSS)");
        let multi = ok(p.sign_parts(s, &pss, k, &parts), "PSS multi-part");
        public
            .verify(rsa::Pss::<rsa::sha2::Sha256>::new_with_salt(32), &digest, &multi)
            .expect("multi-part PSS: rsa verifies it");
        let prehashed = Mech::pss(CKM_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA256, 32);
        let sig = ok(p.sign(s, &prehashed, k, &digest), "CKM_RSA_PKCS_PSS over a digest");
        public
            .verify(rsa::Pss::<rsa::sha2::Sha256>::new_with_salt(32), &digest, &sig)
            .expect("CKM_RSA_PKCS_PSS: rsa verifies it");

        assert_rv!(
            p.sign_init(s, &Mech::pss(CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA1, 32), k),
            CKR_MECHANISM_PARAM_INVALID,
            "PSS with an MGF1 hash other than the message hash"
        );
        assert_rv!(
            p.sign_init(
                s,
                &Mech::pss(CKM_SHA256_RSA_PKCS_PSS, CKM_SHA384, CKG_MGF1_SHA384, 48),
                k
            ),
            CKR_MECHANISM_PARAM_INVALID,
            "CKM_SHA256_RSA_PKCS_PSS with hashAlg SHA-384"
        );
        assert_rv!(
            p.sign_init(s, &Mech::new(CKM_SHA1_RSA_PKCS), k),
            CKR_MECHANISM_INVALID,
            "CKM_SHA1_RSA_PKCS is not offered"
        );
        assert_rv!(
            p.sign_init(s, &Mech::new(CKM_ECDSA), k),
            CKR_KEY_TYPE_INCONSISTENT,
            "CKM_ECDSA with an RSA key"
        );
    });
}

#[test]
fn verify_rejects_bad_signatures() {
    isolated("verify_rejects_bad_signatures", Options::default(), |fx| {
        create_keys(
            fx,
            &[
                (KeySpec::EcP256, KeyUsage::SignVerify, "rej-ec"),
                (KeySpec::Rsa2048, KeyUsage::SignVerify, "rej-rsa"),
            ],
        );
        let (p, s) = ready();
        for (label, mech) in [("rej-ec", CKM_ECDSA_SHA256), ("rej-rsa", CKM_SHA256_RSA_PKCS)] {
            let k = find_one(p, s, label, CKO_PRIVATE_KEY);
            let pk = find_one(p, s, label, CKO_PUBLIC_KEY);
            let m = Mech::new(mech);
            let sig = ok(p.sign(s, &m, k, MESSAGE), "C_Sign");
            assert_rv!(
                p.verify(s, &m, pk, MESSAGE, &sig),
                CKR_OK,
                "{label}: the good signature"
            );
            let mut tampered = sig.clone();
            tampered[sig.len() / 2 - 1] ^= 0x01;
            assert_rv!(
                p.verify(s, &m, pk, MESSAGE, &tampered),
                CKR_SIGNATURE_INVALID,
                "{label}: a tampered signature"
            );
            assert_rv!(
                p.verify(s, &m, pk, b"another message", &sig),
                CKR_SIGNATURE_INVALID,
                "{label}: another message"
            );
            assert_rv!(
                p.verify(s, &m, pk, MESSAGE, &sig[..sig.len() - 1]),
                CKR_SIGNATURE_LEN_RANGE,
                "{label}: a signature one byte short"
            );
            let mut long = sig.clone();
            long.push(0);
            assert_rv!(
                p.verify(s, &m, pk, MESSAGE, &long),
                CKR_SIGNATURE_LEN_RANGE,
                "{label}: a signature one byte long"
            );
            assert_rv!(
                p.verify_parts(s, &m, pk, &[&MESSAGE[..3], &MESSAGE[3..]], &tampered),
                CKR_SIGNATURE_INVALID,
                "{label}: C_VerifyFinal of a tampered signature"
            );
            assert_rv!(
                p.verify_call(s, MESSAGE, &sig),
                CKR_OPERATION_NOT_INITIALIZED,
                "{label}: a failed verification ends the operation"
            );
            assert_rv!(
                p.verify_init(s, &m, k),
                CKR_KEY_TYPE_INCONSISTENT,
                "{label}: C_VerifyInit with the private key"
            );
        }
    });
}

#[test]
fn aes_gcm() {
    isolated("aes_gcm", Options::default(), |fx| {
        create_keys(
            fx,
            &[
                (KeySpec::Aes256, KeyUsage::EncryptDecrypt, "gcm"),
                (KeySpec::EcP256, KeyUsage::SignVerify, "gcm-ec"),
            ],
        );
        let (p, s) = ready();
        let a = find_one(p, s, "gcm", CKO_SECRET_KEY);
        let iv = [0x5au8; 12];
        let aad = b"header: version 1";
        let gcm = Mech::gcm(&iv, aad, 128);

        let ct = ok(p.encrypt(s, &gcm, a, MESSAGE), "C_Encrypt(AES-GCM)");
        assert_eq!(ct.len(), MESSAGE.len() + 16, "ciphertext || 128-bit tag");
        assert_ne!(&ct[..MESSAGE.len()], MESSAGE, "the ciphertext is not the plaintext");
        assert_eq!(ok(p.decrypt(s, &gcm, a, &ct), "C_Decrypt(AES-GCM)"), MESSAGE);

        let parts: [&[u8]; 3] = [&MESSAGE[..7], &MESSAGE[7..50], &MESSAGE[50..]];
        let multi = ok(p.cipher_parts(s, true, &gcm, a, &parts), "multi-part encryption");
        assert_eq!(multi, ct, "multi-part encryption gives the single-part ciphertext");
        let ct_parts: [&[u8]; 2] = [&ct[..20], &ct[20..]];
        assert_eq!(
            ok(p.cipher_parts(s, false, &gcm, a, &ct_parts), "multi-part decryption"),
            MESSAGE
        );
        let v240 = Mech::gcm_v240(&iv, aad);
        assert_eq!(ok(p.encrypt(s, &v240, a, MESSAGE), "CK_GCM_PARAMS v2.40 layout"), ct);

        // Length conventions of C_Encrypt.
        assert_rv!(p.encrypt_init(s, &gcm, a), CKR_OK, "C_EncryptInit");
        let mut len: CK_ULONG = 0;
        assert_rv!(
            call!(
                p,
                C_Encrypt(
                    s,
                    MESSAGE.as_ptr() as *mut u8,
                    MESSAGE.len() as CK_ULONG,
                    ptr::null_mut(),
                    &mut len
                )
            ),
            CKR_OK,
            "C_Encrypt length query"
        );
        assert_eq!(len as usize, MESSAGE.len() + 16);
        let mut short = vec![0u8; 16];
        len = short.len() as CK_ULONG;
        assert_rv!(
            call!(
                p,
                C_Encrypt(
                    s,
                    MESSAGE.as_ptr() as *mut u8,
                    MESSAGE.len() as CK_ULONG,
                    short.as_mut_ptr(),
                    &mut len
                )
            ),
            CKR_BUFFER_TOO_SMALL,
            "C_Encrypt into 16 bytes"
        );
        let mut out = vec![0u8; MESSAGE.len() + 16];
        len = out.len() as CK_ULONG;
        assert_rv!(
            call!(
                p,
                C_Encrypt(
                    s,
                    MESSAGE.as_ptr() as *mut u8,
                    MESSAGE.len() as CK_ULONG,
                    out.as_mut_ptr(),
                    &mut len
                )
            ),
            CKR_OK,
            "C_Encrypt after CKR_BUFFER_TOO_SMALL"
        );
        assert_eq!(out, ct);

        // Refusals.
        let mut tampered = ct.clone();
        tampered[3] ^= 0x80;
        assert_err!(
            p.decrypt(s, &gcm, a, &tampered),
            CKR_ENCRYPTED_DATA_INVALID,
            "a tampered ciphertext"
        );
        let mut bad_tag = ct.clone();
        let last = bad_tag.len() - 1;
        bad_tag[last] ^= 0x01;
        assert_err!(
            p.decrypt(s, &gcm, a, &bad_tag),
            CKR_ENCRYPTED_DATA_INVALID,
            "a tampered tag"
        );
        assert_err!(
            p.decrypt(s, &Mech::gcm(&iv, b"other AAD", 128), a, &ct),
            CKR_ENCRYPTED_DATA_INVALID,
            "other AAD"
        );
        assert_err!(
            p.decrypt(s, &gcm, a, &ct[..10]),
            CKR_ENCRYPTED_DATA_LEN_RANGE,
            "a ciphertext shorter than the tag"
        );
        assert_rv!(
            p.encrypt_init(s, &Mech::gcm(&iv, aad, 96), a),
            CKR_MECHANISM_PARAM_INVALID,
            "C_EncryptInit with 96 tag bits"
        );
        assert_rv!(
            p.decrypt_init(s, &Mech::gcm(&iv, aad, 96), a),
            CKR_MECHANISM_PARAM_INVALID,
            "C_DecryptInit with 96 tag bits"
        );
        assert_rv!(
            p.encrypt_init(s, &Mech::gcm(&[1u8; 16], aad, 128), a),
            CKR_MECHANISM_PARAM_INVALID,
            "a 16-byte IV"
        );
        let ec = find_one(p, s, "gcm-ec", CKO_PRIVATE_KEY);
        assert_rv!(
            p.encrypt_init(s, &gcm, ec),
            CKR_KEY_TYPE_INCONSISTENT,
            "AES-GCM with an EC key"
        );
        assert_rv!(
            p.sign_init(s, &Mech::new(CKM_ECDSA), a),
            CKR_KEY_TYPE_INCONSISTENT,
            "signing with an AES key"
        );

        // The empty message.
        let empty = ok(p.encrypt(s, &gcm, a, b""), "an empty message");
        assert_eq!(empty.len(), 16, "only the tag");
        assert_eq!(ok(p.decrypt(s, &gcm, a, &empty), "its decryption"), b"");
    });
}

#[test]
fn digests_and_random() {
    isolated("digests_and_random", Options::default(), |_| {
        let p = start();
        init_token(p);
        // Neither needs a login.
        let s = ok(p.open_session(false), "C_OpenSession");
        let parts: [&[u8]; 3] = [&MESSAGE[..1], &MESSAGE[1..33], &MESSAGE[33..]];
        for (mech, want) in [
            (CKM_SHA256, sha2::Sha256::digest(MESSAGE).to_vec()),
            (CKM_SHA384, sha2::Sha384::digest(MESSAGE).to_vec()),
            (CKM_SHA512, sha2::Sha512::digest(MESSAGE).to_vec()),
        ] {
            assert_eq!(ok(p.digest(s, mech, MESSAGE), "C_Digest"), want, "C_Digest 0x{mech:x}");
            assert_eq!(
                ok(p.digest_parts(s, mech, &parts), "C_DigestUpdate/Final"),
                want,
                "multi-part digest 0x{mech:x}"
            );
        }
        assert_eq!(
            ok(p.digest(s, CKM_SHA256, b""), "C_Digest of nothing"),
            sha2::Sha256::digest(b"").to_vec()
        );
        let mut sha1 = Mech::new(CKM_SHA_1).raw();
        assert_rv!(
            call!(p, C_DigestInit(s, &mut sha1)),
            CKR_MECHANISM_INVALID,
            "CKM_SHA_1 digest"
        );

        let a = ok(p.random(s, 2000), "C_GenerateRandom(2000)");
        let b = ok(p.random(s, 2000), "C_GenerateRandom(2000)");
        assert!(a.iter().any(|x| *x != a[0]), "2000 random bytes are not all equal");
        assert_ne!(a, b, "two draws differ");
        let mut distinct = [false; 256];
        for x in &a {
            distinct[usize::from(*x)] = true;
        }
        assert!(
            distinct.iter().filter(|d| **d).count() > 200,
            "2000 random bytes take most of the 256 values"
        );
        let mut seed = *b"seed";
        assert_rv!(
            call!(p, C_SeedRandom(s, seed.as_mut_ptr(), 4)),
            CKR_RANDOM_SEED_NOT_SUPPORTED,
            "C_SeedRandom"
        );
    });
}

#[test]
fn rsa_oaep_and_key_usage() {
    isolated("rsa_oaep_and_key_usage", Options::default(), |fx| {
        let key = create_keys(
            fx,
            &[
                (KeySpec::Rsa2048, KeyUsage::EncryptDecrypt, "oaep"),
                (KeySpec::EcP256, KeyUsage::SignVerify, "oaep-ec"),
            ],
        )
        .remove(0);
        let (p, s) = ready();
        let k = find_one(p, s, "oaep", CKO_PRIVATE_KEY);
        let pk = find_one(p, s, "oaep", CKO_PUBLIC_KEY);
        assert!(ok(p.attr_bool(s, pk, CKA_ENCRYPT), "CKA_ENCRYPT"));
        assert!(ok(p.attr_bool(s, k, CKA_DECRYPT), "CKA_DECRYPT"));
        assert!(!ok(p.attr_bool(s, k, CKA_SIGN), "CKA_SIGN"));
        let oaep = Mech::oaep(CKM_SHA256, CKG_MGF1_SHA256, b"");

        let ct = ok(p.encrypt(s, &oaep, pk, MESSAGE), "C_Encrypt(OAEP) with the public key");
        assert_eq!(ct.len(), 256);
        assert_eq!(ok(p.decrypt(s, &oaep, k, &ct), "C_Decrypt(OAEP)"), MESSAGE);
        let theirs = rsa_public(&key.pem)
            .oaep_encrypt::<rsa::sha2::Sha256>(MESSAGE)
            .expect("rsa encrypts with OAEP-SHA256");
        assert_eq!(
            ok(
                p.decrypt(s, &oaep, k, &theirs),
                "C_Decrypt of the rsa crate's OAEP ciphertext"
            ),
            MESSAGE
        );
        let mut tampered = ct.clone();
        tampered[100] ^= 0x04;
        assert_err!(
            p.decrypt(s, &oaep, k, &tampered),
            CKR_ENCRYPTED_DATA_INVALID,
            "a tampered OAEP ciphertext"
        );
        assert_rv!(
            p.encrypt_init(s, &Mech::oaep(CKM_SHA256, CKG_MGF1_SHA1, b""), pk),
            CKR_MECHANISM_PARAM_INVALID,
            "OAEP with an MGF1 hash other than the hash"
        );
        assert_rv!(
            p.encrypt_init(s, &Mech::oaep(CKM_SHA256, CKG_MGF1_SHA256, b"label"), pk),
            CKR_MECHANISM_PARAM_INVALID,
            "OAEP with a label"
        );
        assert_rv!(
            p.encrypt_init(s, &oaep, k),
            CKR_KEY_TYPE_INCONSISTENT,
            "OAEP encryption with the private key"
        );

        // Usage: an ENCRYPT/DECRYPT key does not sign, a SIGN/VERIFY key does not encrypt.
        assert_rv!(
            p.sign_init(s, &Mech::new(CKM_SHA256_RSA_PKCS), k),
            CKR_KEY_FUNCTION_NOT_PERMITTED,
            "signing with an ENCRYPT/DECRYPT key"
        );
        assert_rv!(
            p.verify_init(s, &Mech::new(CKM_SHA256_RSA_PKCS), pk),
            CKR_KEY_FUNCTION_NOT_PERMITTED,
            "verifying with an ENCRYPT/DECRYPT key"
        );
        let ec_public_key = find_one(p, s, "oaep-ec", CKO_PUBLIC_KEY);
        assert_rv!(
            p.encrypt_init(s, &oaep, ec_public_key),
            CKR_KEY_FUNCTION_NOT_PERMITTED,
            "OAEP with a SIGN/VERIFY key"
        );
        assert_rv!(
            p.sign_init(s, &Mech::new(CKM_SHA1_RSA_PKCS), k),
            CKR_MECHANISM_INVALID,
            "CKM_SHA1_RSA_PKCS"
        );
        assert_err!(
            p.mechanism_info(CKM_SHA1_RSA_PKCS),
            CKR_MECHANISM_INVALID,
            "C_GetMechanismInfo(CKM_SHA1_RSA_PKCS)"
        );
        let list = ok(p.mechanisms(), "C_GetMechanismList");
        for m in [
            CKM_AES_GCM,
            CKM_ECDSA_SHA256,
            CKM_SHA256_RSA_PKCS_PSS,
            CKM_RSA_PKCS_OAEP,
            CKM_SHA512,
        ] {
            assert!(list.contains(&m), "the mechanism list has 0x{m:x}");
            ok(p.mechanism_info(m), "C_GetMechanismInfo of a listed mechanism");
        }
        assert!(!list.contains(&CKM_SHA1_RSA_PKCS) && !list.contains(&CKM_RSA_X_509));
        let info = ok(p.mechanism_info(CKM_RSA_PKCS_OAEP), "C_GetMechanismInfo(OAEP)");
        assert_eq!(info.flags & (CKF_ENCRYPT | CKF_DECRYPT), CKF_ENCRYPT | CKF_DECRYPT);
    });
}

// ================================================================ 8. key generation and destruction

/// A P-256 key pair template: (public, private).
fn ec_templates(label: &str, token: bool) -> (Vec<Attr>, Vec<Attr>) {
    (
        vec![
            Attr::bytes(CKA_EC_PARAMS, P256_PARAMS),
            Attr::bool(CKA_TOKEN, token),
            Attr::bool(CKA_VERIFY, true),
            Attr::label(label),
        ],
        vec![
            Attr::bool(CKA_TOKEN, token),
            Attr::bool(CKA_PRIVATE, true),
            Attr::bool(CKA_SENSITIVE, true),
            Attr::bool(CKA_SIGN, true),
            Attr::label(label),
        ],
    )
}

/// An AES key template.
fn aes_template(label: &str, token: bool, len: CK_ULONG) -> Vec<Attr> {
    vec![
        Attr::class(CKO_SECRET_KEY),
        Attr::ulong(CKA_KEY_TYPE, CKK_AES),
        Attr::ulong(CKA_VALUE_LEN, len),
        Attr::bool(CKA_TOKEN, token),
        Attr::bool(CKA_ENCRYPT, true),
        Attr::bool(CKA_DECRYPT, true),
        Attr::label(label),
    ]
}

#[test]
fn key_generation() {
    isolated("key_generation", Options::default(), |fx| {
        let (p, s) = ready();
        let ec_gen = Mech::new(CKM_EC_KEY_PAIR_GEN);
        let ecdsa = Mech::new(CKM_ECDSA_SHA256);

        // A token EC key pair is a KMS key.
        let (public, private) = ec_templates("gen-ec", true);
        let (pk, k) = ok(
            p.generate_key_pair(s, &ec_gen, &public, &private),
            "C_GenerateKeyPair(token)",
        );
        let meta = describe_elsewhere(fx, "alias/gen-ec");
        assert_eq!(field(&meta, "KeySpec"), "EC_P256", "the token key is a KMS key: {meta}");
        assert_eq!(field(&meta, "KeyUsage"), "SIGN/VERIFY");
        assert_eq!(field(&meta, "KeyState"), "Enabled");
        let version = field(&meta, "PrimaryKeyVersion");
        assert_eq!(ok(p.attr(s, k, CKA_ID), "CKA_ID"), version.as_bytes());
        assert!(ok(p.attr_bool(s, k, CKA_TOKEN), "CKA_TOKEN"));
        assert_eq!(sorted(find(p, s, &[Attr::label("gen-ec")])), sorted(vec![pk, k]));
        let sig = ok(p.sign(s, &ecdsa, k, MESSAGE), "C_Sign with the generated key");
        assert_rv!(p.verify(s, &ecdsa, pk, MESSAGE, &sig), CKR_OK, "C_Verify");
        assert_ecdsa(
            &ec_public(&public_pem_elsewhere(fx, &field(&meta, "KeyId"), &version)),
            MESSAGE,
            &sig,
            "a signature by the generated key",
        );

        // A session key pair lives in its session.
        let keys = key_count_elsewhere(fx);
        let s2 = ok(p.open_session(false), "C_OpenSession(RO)");
        let (public, private) = ec_templates("sess-ec", false);
        let (spk, sk) = ok(
            p.generate_key_pair(s2, &ec_gen, &public, &private),
            "C_GenerateKeyPair(session) in a read-only session",
        );
        assert!(!ok(p.attr_bool(s2, sk, CKA_TOKEN), "CKA_TOKEN"), "a session key");
        let sig = ok(p.sign(s2, &ecdsa, sk, MESSAGE), "C_Sign with a session key");
        assert_rv!(
            p.verify(s2, &ecdsa, spk, MESSAGE, &sig),
            CKR_OK,
            "C_Verify with a session key"
        );
        let point = ok(p.attr(s2, spk, CKA_EC_POINT), "the session key's CKA_EC_POINT");
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point[2..]).expect("a P-256 point");
        assert_ecdsa(&vk, MESSAGE, &sig, "a session key's signature");
        assert_eq!(key_count_elsewhere(fx), keys, "a session key is no KMS key");
        assert_eq!(
            elsewhere(fx, "DescribeKey", "alias/sess-ec", None).err().as_deref(),
            Some("Forbidden.AliasNotFound"),
            "a session key's label is no alias"
        );
        assert_eq!(
            sorted(find(p, s, &[Attr::label("sess-ec")])),
            sorted(vec![spk, sk]),
            "other sessions of the application see session objects"
        );
        assert_rv!(p.close_session(s2), CKR_OK, "C_CloseSession");
        assert!(
            find(p, s, &[Attr::label("sess-ec")]).is_empty(),
            "a session's keys go with it"
        );
        assert_rv!(
            p.sign_init(s, &ecdsa, sk),
            CKR_KEY_HANDLE_INVALID,
            "a closed session's key handle"
        );

        // A token AES key.
        let a = ok(
            p.generate_key(s, &Mech::new(CKM_AES_KEY_GEN), &aes_template("gen-aes", true, 32)),
            "C_GenerateKey(AES-256, token)",
        );
        let meta = describe_elsewhere(fx, "alias/gen-aes");
        assert_eq!(
            (field(&meta, "KeySpec"), field(&meta, "KeyUsage")),
            ("Aliyun_AES_256".to_owned(), "ENCRYPT/DECRYPT".to_owned())
        );
        assert_eq!(ok(p.attr_ulong(s, a, CKA_VALUE_LEN), "CKA_VALUE_LEN"), 32);
        let gcm = Mech::gcm(&[3u8; 12], b"", 128);
        let ct = ok(p.encrypt(s, &gcm, a, MESSAGE), "C_Encrypt with the generated key");
        assert_eq!(ok(p.decrypt(s, &gcm, a, &ct), "C_Decrypt"), MESSAGE);

        // A token RSA key pair.
        let rsa_public_template = [
            Attr::ulong(CKA_MODULUS_BITS, 2048),
            Attr::bytes(CKA_PUBLIC_EXPONENT, [1u8, 0, 1]),
            Attr::bool(CKA_TOKEN, true),
            Attr::label("gen-rsa"),
        ];
        let rsa_private_template = [Attr::bool(CKA_TOKEN, true), Attr::bool(CKA_SIGN, true)];
        let (rpk, rk) = ok(
            p.generate_key_pair(
                s,
                &Mech::new(CKM_RSA_PKCS_KEY_PAIR_GEN),
                &rsa_public_template,
                &rsa_private_template,
            ),
            "C_GenerateKeyPair(RSA 2048)",
        );
        let meta = describe_elsewhere(fx, "alias/gen-rsa");
        assert_eq!(field(&meta, "KeySpec"), "RSA_2048");
        assert_eq!(ok(p.attr_ulong(s, rpk, CKA_MODULUS_BITS), "CKA_MODULUS_BITS"), 2048);
        let sig = ok(p.sign(s, &Mech::new(CKM_SHA256_RSA_PKCS), rk, MESSAGE), "RSA signature");
        assert_rv!(
            p.verify(s, &Mech::new(CKM_SHA256_RSA_PKCS), rpk, MESSAGE, &sig),
            CKR_OK,
            "RSA verification"
        );

        // Refusals create nothing.
        let keys = key_count_elsewhere(fx);
        let mut extractable = aes_template("gen-x", true, 32);
        extractable.push(Attr::bool(CKA_EXTRACTABLE, true));
        assert_err!(
            p.generate_key(s, &Mech::new(CKM_AES_KEY_GEN), &extractable),
            CKR_ATTRIBUTE_VALUE_INVALID,
            "C_GenerateKey with CKA_EXTRACTABLE true"
        );
        let (public, mut private) = ec_templates("gen-x-ec", true);
        private.push(Attr::bool(CKA_EXTRACTABLE, true));
        assert_err!(
            p.generate_key_pair(s, &ec_gen, &public, &private),
            CKR_ATTRIBUTE_VALUE_INVALID,
            "C_GenerateKeyPair with CKA_EXTRACTABLE true"
        );
        let mut small = rsa_public_template.to_vec();
        small[0] = Attr::ulong(CKA_MODULUS_BITS, 1024);
        assert_err!(
            p.generate_key_pair(s, &Mech::new(CKM_RSA_PKCS_KEY_PAIR_GEN), &small, &rsa_private_template),
            CKR_KEY_SIZE_RANGE,
            "RSA 1024"
        );
        assert_err!(
            p.generate_key(s, &Mech::new(CKM_AES_KEY_GEN), &aes_template("gen-odd", true, 20)),
            CKR_ATTRIBUTE_VALUE_INVALID,
            "a 20-byte AES key"
        );
        let (public, private) = ec_templates("gen-ec", true);
        assert_err!(
            p.generate_key_pair(s, &ec_gen, &public, &private),
            CKR_ATTRIBUTE_VALUE_INVALID,
            "a label (alias) already in use"
        );
        let ro = ok(p.open_session(false), "C_OpenSession(RO)");
        let (public, private) = ec_templates("gen-ro", true);
        assert_err!(
            p.generate_key_pair(ro, &ec_gen, &public, &private),
            CKR_SESSION_READ_ONLY,
            "a token key pair in a read-only session"
        );
        assert_err!(
            p.generate_key(ro, &Mech::new(CKM_AES_KEY_GEN), &aes_template("gen-ro-aes", true, 32)),
            CKR_SESSION_READ_ONLY,
            "a token AES key in a read-only session"
        );
        assert_eq!(key_count_elsewhere(fx), keys, "refused generations created KMS keys");
        assert_rv!(p.logout(s), CKR_OK, "C_Logout");
        assert_err!(
            p.generate_key(s, &Mech::new(CKM_AES_KEY_GEN), &aes_template("gen-pub", false, 32)),
            CKR_USER_NOT_LOGGED_IN,
            "C_GenerateKey without login"
        );
    });
}

#[test]
fn destroying_a_key_schedules_its_deletion() {
    let options = Options {
        destroy_pending_days: Some(7),
        ..Options::default()
    };
    isolated("destroying_a_key_schedules_its_deletion", options, |fx| {
        let key = create_keys(fx, &[(KeySpec::EcP256, KeyUsage::SignVerify, "doomed")]).remove(0);
        let (p, s) = ready();
        let handles = sorted(find(p, s, &[Attr::label("doomed")]));
        let k = find_one(p, s, "doomed", CKO_PRIVATE_KEY);
        let pk = find_one(p, s, "doomed", CKO_PUBLIC_KEY);
        assert!(ok(p.attr_bool(s, k, CKA_DESTROYABLE), "CKA_DESTROYABLE"));
        assert_rv!(
            p.destroy(s, pk),
            CKR_ACTION_PROHIBITED,
            "C_DestroyObject on a public key"
        );
        let ro = ok(p.open_session(false), "C_OpenSession(RO)");
        assert_rv!(
            p.destroy(ro, k),
            CKR_SESSION_READ_ONLY,
            "C_DestroyObject in a read-only session"
        );
        assert_eq!(
            state_elsewhere(fx, &key.id),
            "Enabled",
            "refused destructions change nothing"
        );

        assert_rv!(p.destroy(s, k), CKR_OK, "C_DestroyObject on a token private key");
        let meta = describe_elsewhere(fx, &key.id);
        assert_eq!(field(&meta, "KeyState"), "PendingDeletion");
        let delete_at = unix_seconds(&field(&meta, "DeleteDate"));
        let days = (delete_at - now_seconds()) as f64 / 86_400.0;
        assert!(
            (6.9..=7.1).contains(&days),
            "destroy_pending_days = 7: deletion in {days:.2} days"
        );
        assert!(
            find(p, s, &[Attr::label("doomed")]).is_empty(),
            "a destroyed key's objects are gone"
        );
        assert_rv!(
            p.sign_init(s, &Mech::new(CKM_ECDSA_SHA256), k),
            CKR_KEY_HANDLE_INVALID,
            "C_SignInit with a destroyed key"
        );
        assert_rv!(
            p.destroy(s, k),
            CKR_OBJECT_HANDLE_INVALID,
            "C_DestroyObject of an object already destroyed"
        );

        elsewhere_ok(fx, "CancelKeyDeletion", &key.id);
        assert_eq!(state_elsewhere(fx, &key.id), "Disabled");
        assert!(
            find(p, s, &[Attr::label("doomed")]).is_empty(),
            "a Disabled key is not listed"
        );
        elsewhere_ok(fx, "EnableKey", &key.id);
        assert_eq!(
            sorted(find(p, s, &[Attr::label("doomed")])),
            handles,
            "enabled again, with the same handles"
        );
        ok(
            p.sign(s, &Mech::new(CKM_ECDSA_SHA256), k, MESSAGE),
            "C_Sign after EnableKey",
        );

        // Session objects go at once.
        let (public, private) = ec_templates("session-doomed", false);
        let (spk, sk) = ok(
            p.generate_key_pair(s, &Mech::new(CKM_EC_KEY_PAIR_GEN), &public, &private),
            "a session key pair",
        );
        assert_rv!(
            p.destroy(s, spk),
            CKR_ACTION_PROHIBITED,
            "C_DestroyObject on a session public key"
        );
        assert_rv!(p.destroy(s, sk), CKR_OK, "C_DestroyObject on a session private key");
        assert_err!(
            p.attr(s, sk, CKA_LABEL),
            CKR_OBJECT_HANDLE_INVALID,
            "a destroyed session key"
        );
    });
}

// ================================================================ 9. threads

#[test]
fn four_threads_sign_and_verify() {
    isolated("four_threads_sign_and_verify", Options::default(), |fx| {
        const THREADS: usize = 4;
        const ROUNDS: usize = 200;
        let key = create_keys(fx, &[(KeySpec::EcP256, KeyUsage::SignVerify, "threads")]).remove(0);
        let (p, s) = ready();
        let k = find_one(p, s, "threads", CKO_PRIVATE_KEY);
        let pk = find_one(p, s, "threads", CKO_PUBLIC_KEY);
        let vk = ec_public(&key.pem);
        let started = std::time::Instant::now();
        /// What a worker made: (message, signature) pairs.
        type Signed = Result<Vec<(Vec<u8>, Vec<u8>)>, String>;
        let results: Vec<Signed> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    scope.spawn(move || -> Signed {
                        let session = p.open_session(false).map_err(p11::rv_name)?;
                        let ecdsa = Mech::new(CKM_ECDSA_SHA256);
                        let mut made = Vec::new();
                        for i in 0..ROUNDS {
                            let data = format!("thread {t} round {i}").into_bytes();
                            let sig = p
                                .sign(session, &ecdsa, k, &data)
                                .map_err(|rv| format!("thread {t} round {i}: C_Sign: {}", p11::rv_name(rv)))?;
                            let rv = p.verify(session, &ecdsa, pk, &data, &sig);
                            if rv != CKR_OK {
                                return Err(format!("thread {t} round {i}: C_Verify: {}", p11::rv_name(rv)));
                            }
                            made.push((data, sig));
                        }
                        p11::check(p.close_session(session)).map_err(p11::rv_name)?;
                        Ok(made)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a worker thread panicked"))
                .collect()
        });
        let mut total = 0;
        for result in results {
            let made = result.unwrap_or_else(|e| panic!("{e}"));
            for (data, sig) in made.iter().step_by(20) {
                assert_ecdsa(&vk, data, sig, "a signature made in a thread");
            }
            total += made.len();
        }
        assert_eq!(total, THREADS * ROUNDS, "every operation succeeded");
        eprintln!(
            "{} sign+verify pairs on {THREADS} threads in {:?}",
            THREADS * ROUNDS,
            started.elapsed()
        );
    });
}

// ================================================================ 10. fork()

unsafe extern "C" {
    fn fork() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn _exit(status: c_int) -> !;
}

/// What the forked child does; its exit code names the first step that failed (0: none).
fn forked_child(p: &Library) -> c_int {
    let step = |code: c_int, what: &str, rv: CK_RV, want: CK_RV| -> Result<(), c_int> {
        if rv == want {
            Ok(())
        } else {
            eprintln!(
                "forked child: {what}: {} (expected {})",
                p11::rv_name(rv),
                p11::rv_name(want)
            );
            Err(code)
        }
    };
    let run = || -> Result<(), c_int> {
        let rv = p.info().err().unwrap_or(CKR_OK);
        step(10, "C_GetInfo before C_Initialize", rv, CKR_CRYPTOKI_NOT_INITIALIZED)?;
        step(11, "C_Initialize in the child", p.initialize(), CKR_OK)?;
        let s = p.open_session(true).map_err(|rv| {
            eprintln!("forked child: C_OpenSession: {}", p11::rv_name(rv));
            12
        })?;
        step(13, "C_Login", p.login(s, CKU_USER, USER_PIN), CKR_OK)?;
        let found = p
            .find(s, &[Attr::label("fork-ec"), Attr::class(CKO_PRIVATE_KEY)])
            .map_err(|_| 14)?;
        let public = p
            .find(s, &[Attr::label("fork-ec"), Attr::class(CKO_PUBLIC_KEY)])
            .map_err(|_| 14)?;
        if found.len() != 1 || public.len() != 1 {
            eprintln!("forked child: found {found:?} and {public:?}");
            return Err(15);
        }
        let ecdsa = Mech::new(CKM_ECDSA_SHA256);
        let sig = p.sign(s, &ecdsa, found[0], MESSAGE).map_err(|rv| {
            eprintln!("forked child: C_Sign: {}", p11::rv_name(rv));
            16
        })?;
        step(17, "C_Verify", p.verify(s, &ecdsa, public[0], MESSAGE, &sig), CKR_OK)?;
        step(18, "C_Finalize", p.finalize(), CKR_OK)?;
        Ok(())
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(())) => 0,
        Ok(Err(code)) => code,
        Err(_) => 99,
    }
}

#[test]
fn a_forked_child_initializes_afresh() {
    isolated("a_forked_child_initializes_afresh", Options::default(), |fx| {
        create_keys(fx, &[(KeySpec::EcP256, KeyUsage::SignVerify, "fork-ec")]);
        let (p, s) = ready();
        let k = find_one(p, s, "fork-ec", CKO_PRIVATE_KEY);
        let ecdsa = Mech::new(CKM_ECDSA_SHA256);
        ok(p.sign(s, &ecdsa, k, MESSAGE), "C_Sign in the parent before fork");

        // SAFETY: this process runs one test on one thread; the child calls only the module and
        // leaves with _exit, never returning into the test harness.
        let pid = unsafe { fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = forked_child(p);
            // SAFETY: ends the forked child without running the parent's exit handlers.
            unsafe { _exit(code) };
        }
        let mut status: c_int = 0;
        // SAFETY: waits for our own child; `status` is writable.
        let waited = unsafe { waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid, "waitpid");
        let exited = status & 0x7f == 0;
        let code = (status >> 8) & 0xff;
        assert!(
            exited && code == 0,
            "the forked child failed: raw status {status}, exit code {code} (10: module usable without \
             C_Initialize; 11: C_Initialize refused; 12-18: session, login, find, sign, verify, finalize)"
        );

        // The parent's state is untouched.
        ok(p.session_info(s), "the parent's session after the child finished");
        let sig = ok(p.sign(s, &ecdsa, k, MESSAGE), "C_Sign in the parent after the child");
        let pk = find_one(p, s, "fork-ec", CKO_PUBLIC_KEY);
        assert_rv!(p.verify(s, &ecdsa, pk, MESSAGE, &sig), CKR_OK, "C_Verify in the parent");
        assert_rv!(p.finalize(), CKR_OK, "C_Finalize in the parent");
    });
}

// ================================================================ 11. finalize and initialize again

#[test]
fn finalize_then_initialize_again() {
    isolated("finalize_then_initialize_again", Options::default(), |fx| {
        create_keys(fx, &[(KeySpec::EcP256, KeyUsage::SignVerify, "cycle")]);
        let (p, s) = ready();
        let k = find_one(p, s, "cycle", CKO_PRIVATE_KEY);
        let ecdsa = Mech::new(CKM_ECDSA_SHA256);
        assert_rv!(
            p.sign_init(s, &ecdsa, k),
            CKR_OK,
            "an operation left open at C_Finalize"
        );
        assert_rv!(p.finalize(), CKR_OK, "C_Finalize with a session open and logged in");
        assert_err!(
            p.session_info(s),
            CKR_CRYPTOKI_NOT_INITIALIZED,
            "a session after C_Finalize"
        );
        for cycle in 0..3 {
            assert_rv!(p.initialize(), CKR_OK, "C_Initialize again (cycle {cycle})");
            // Before any new session exists, the old handle names nothing.
            assert_err!(
                p.session_info(s),
                CKR_SESSION_HANDLE_INVALID,
                "C_GetSessionInfo(old handle) after re-initialisation"
            );
            assert_rv!(
                p.login(s, CKU_USER, USER_PIN),
                CKR_SESSION_HANDLE_INVALID,
                "C_Login(old handle)"
            );
            assert_rv!(
                p.close_session(s),
                CKR_SESSION_HANDLE_INVALID,
                "C_CloseSession(old handle)"
            );
            let s2 = ok(p.open_session(true), "C_OpenSession after re-initialisation");
            assert_eq!(
                ok(p.session_info(s2), "C_GetSessionInfo").state,
                CKS_RW_PUBLIC_SESSION,
                "the login did not survive C_Finalize"
            );
            assert_rv!(p.login(s2, CKU_USER, USER_PIN), CKR_OK, "C_Login");
            let k2 = find_one(p, s2, "cycle", CKO_PRIVATE_KEY);
            ok(p.sign(s2, &ecdsa, k2, MESSAGE), "C_Sign after re-initialisation");
            assert_rv!(p.close_all_sessions(), CKR_OK, "C_CloseAllSessions");
            assert_err!(
                p.session_info(s2),
                CKR_SESSION_HANDLE_INVALID,
                "a session after C_CloseAllSessions"
            );
            let s3 = ok(p.open_session(false), "C_OpenSession");
            assert_eq!(
                ok(p.session_info(s3), "C_GetSessionInfo").state,
                CKS_RO_PUBLIC_SESSION,
                "C_CloseAllSessions logs out"
            );
            assert_rv!(p.finalize(), CKR_OK, "C_Finalize (cycle {cycle})");
        }
    });
}
