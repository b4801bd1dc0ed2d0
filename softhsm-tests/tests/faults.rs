//! Faults of the HSM engine against a real SoftHSM2: the module path is wrong, the PIN source is
//! wrong, the token directory disappears mid-run and comes back. What must hold: every call on the
//! hardware instance fails with a clear KMS error (`Rejected.HsmUnavailable`, HTTP 503, naming what
//! failed) within a few seconds, never a panic or a hang; the software instance keeps working; the
//! store is not corrupted and keeps no half-created key; and once the HSM is back, the same `Kms`
//! (not reopened) works again on the keys it had.
//!
//! Every scenario runs in a child process of this test binary (see [`scenario`]): SoftHSM2 reads
//! `SOFTHSM2_CONF` when a process loads it, so a scenario that needs its own token needs its own
//! process; and a child that hangs is killed after [`CHILD_TIMEOUT`] and reported as a hang
//! instead of stalling the suite. A scenario records every expectation that fails and reports them
//! all at its end ([`Findings`]), so that one failure does not hide the rest.
//!
//! Three expectations guard bugs these tests found and that are fixed (stale handles, Decrypt
//! masking an outage, a wrong PIN accepted after another login): a failure of one is labelled
//! `REGRESSION OF FIXED BUG <n>` in the report, and the comments at [`BUG_STALE_HANDLES`],
//! [`BUG_DECRYPT_MASKS_OUTAGE`] and [`BUG_PIN_NOT_CHECKED`] say what went wrong and how it was fixed.

use std::fmt::Debug;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kms_core::api::{
    AsymmetricSignRequest, CreateKeyRequest, CreateKmsInstanceRequest, DecryptRequest, EncryptRequest,
    GetPublicKeyRequest, KeyIdRequest, KmsInstanceIdRequest, PageRequest,
};
use kms_core::model::{KeySpec, KeyState, ProductVersion, SigningAlgorithm};
use kms_core::{DEFAULT_INSTANCE_ID, Kms, KmsError};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::pkcs8::DecodePublicKey as _;
use sha2::Digest as _;
use softhsm_tests::{PIN_ENV, SOFTHSM_MODULE, SoftHsm, Stores, USER_PIN, have_softhsm};

// ---------------------------------------------------------------- fixed bugs, guarded

/// FIXED BUG 1 — object handles cached across a token outage were never refreshed. Fixed: an
/// invalid object or key handle now counts as a lost connection (`is_connection_error`), so the
/// engine reconnects once and finds the objects again, or answers `Rejected.HsmUnavailable`.
/// What it was:
///
/// `HsmKey::objects` (kms-core/src/engine/hsm.rs) caches a version's object handles per
/// connection generation, and only a *connection* error (`is_connection_error`) resets the
/// connection and so the cache. When the token directory goes away, SoftHSM2 invalidates its
/// objects, and C_EncryptInit/C_SignInit/C_DecryptInit on the cached handle answer
/// `CKR_OBJECT_HANDLE_INVALID`/`CKR_KEY_HANDLE_INVALID`, which `is_connection_error` does not
/// list: `request_error` turns it into `EngineError::Backend` → `InternalFailure` (500) instead
/// of `Rejected.HsmUnavailable` (503), and nothing is reset. When the directory comes back,
/// SoftHSM2 (still loaded, never finalised) re-reads the object files as *new* objects with new
/// handles, so the cached handles stay invalid: the keys fail forever (until the process
/// restarts), unless some other call (a CreateKey during the outage) happens to hit
/// `CKR_GENERAL_ERROR`, which does reset the connection. While the stale library stays loaded,
/// CheckKmsInstance (which loads the same library through a fresh `HsmEngine`) reports "no token
/// labelled …" although the token is back.
/// Fix direction: treat an invalid object/key handle on a *cached* handle as a reason to forget
/// the cached objects and reconnect once (`with_session`'s retry), so the handle is found again
/// on a freshly loaded library; and report it as `Unavailable` when the retry fails too.
const BUG_STALE_HANDLES: &str = "1 (stale cached object handles: see BUG_STALE_HANDLES in faults.rs)";

/// FIXED BUG 2 — Decrypt reported an unreachable HSM as `InvalidCiphertext`. Fixed: `open_error`
/// (kms-core/src/ops/mod.rs) lets `Unavailable` through. What it was:
///
/// `Kms::open_blob` (kms-core/src/ops/crypto.rs) maps *every* error of
/// `KeyHandle::open_in_place` to `KmsError::InvalidCiphertext`. That is right for an AEAD
/// failure (no oracle), but it also swallows `EngineError::Unavailable` (and `Backend`): during an
/// HSM outage Decrypt answers "The ciphertext is not valid for this key and encryption context"
/// (400), telling the caller its data is bad when it is the HSM that is away. It should map only
/// `EngineError::Crypto` to `InvalidCiphertext` and the rest through `engine_error`
/// (`Rejected.HsmUnavailable`).
const BUG_DECRYPT_MASKS_OUTAGE: &str = "2 (Decrypt masks the outage: see BUG_DECRYPT_MASKS_OUTAGE in faults.rs)";

/// FIXED BUG 3 — a wrong PIN was accepted when another instance was logged in. Fixed: the engine
/// remembers a salted digest of the PIN each token was logged in with and refuses another one.
/// What it was:
///
/// PKCS#11 login state belongs to the application, not the session. `Inner::open_connection`
/// (kms-core/src/engine/hsm.rs) treats `CKR_USER_ALREADY_LOGGED_IN` as success, and SoftHSM2
/// answers it without looking at the PIN: so once one instance on a token has logged in, any other
/// instance of the same process on that token connects whatever its PIN source holds (a wrong
/// PIN file works; CheckKmsInstance says it is reachable). The misconfiguration then shows only
/// after a restart, if that instance happens to connect first. The engine cannot ask the token to
/// check a PIN while logged in; it could remember (per module and token, process-wide) a hash of
/// the PIN that logged in and refuse a different one.
const BUG_PIN_NOT_CHECKED: &str = "3 (wrong PIN accepted after another login: see BUG_PIN_NOT_CHECKED in faults.rs)";

// ---------------------------------------------------------------- limits

/// A call on an unreachable HSM must fail within this time.
const CALL_LIMIT: Duration = Duration::from_secs(5);
/// A scenario's child process is killed (and reported as a hang) after this time.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);
/// Names the scenario a child process runs.
const ROLE_ENV: &str = "TESSERA_FAULTS_ROLE";
/// The code of an HSM that cannot be reached.
const UNAVAILABLE: &str = "Rejected.HsmUnavailable";

// ---------------------------------------------------------------- child processes

/// Runs `body` in a child process of this test binary (started with `name` as its test filter
/// and [`ROLE_ENV`] set), which must pass within [`CHILD_TIMEOUT`]. In the child, runs `body`.
fn scenario(name: &str, body: impl FnOnce()) {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        assert_eq!(role, name, "a child runs only the scenario it was started for");
        body();
        return;
    }
    if !have_softhsm() {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, name)
        .env("RUST_BACKTRACE", "0")
        .env_remove("SOFTHSM2_CONF")
        .env_remove(PIN_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test binary");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => break Some(status),
            None if started.elapsed() >= CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    match status {
        None => panic!(
            "{name}: HANG — the child process did not finish within {CHILD_TIMEOUT:?}\n--- stdout\n{out}\n--- stderr\n{err}"
        ),
        Some(s) if !s.success() => panic!("{name} failed in its child process ({s}):\n{out}\n{err}"),
        Some(_) => {
            assert!(out.contains("1 passed"), "{name}: the child ran no test:\n{out}\n{err}");
            // The child's report of what each call answered.
            eprint!("{err}");
        }
    }
}

// ---------------------------------------------------------------- findings

/// The expectations of a scenario that failed, reported together at its end.
struct Findings {
    scenario: &'static str,
    failed: Vec<String>,
    checked: usize,
}

impl Findings {
    fn new(scenario: &'static str) -> Findings {
        Findings {
            scenario,
            failed: Vec::new(),
            checked: 0,
        }
    }

    /// Records an expectation; `bug` labels one that guards a fixed bug.
    fn check(&mut self, ok: bool, bug: Option<&str>, what: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            let what = what();
            let line = match bug {
                Some(bug) => format!("REGRESSION OF FIXED BUG {bug}: {what}"),
                None => what,
            };
            eprintln!("    ^ FAILED");
            self.failed.push(line);
        }
    }

    fn finish(self) {
        eprintln!(
            "{}: {} expectations, {} failed",
            self.scenario,
            self.checked,
            self.failed.len()
        );
        assert!(
            self.failed.is_empty(),
            "{}: {} of {} expectations failed:\n- {}",
            self.scenario,
            self.failed.len(),
            self.checked,
            self.failed.join("\n- ")
        );
    }
}

/// Runs one KMS call and times it.
fn timed<T>(call: impl FnOnce() -> Result<T, KmsError>) -> (Result<T, KmsError>, Duration) {
    let started = Instant::now();
    let result = call();
    (result, started.elapsed())
}

fn describe<T>(result: &Result<T, KmsError>) -> String {
    match result {
        Ok(_) => "OK".into(),
        Err(e) => format!("{} ({}): {e}", e.code(), e.http_status()),
    }
}

/// A call that must succeed (within [`CALL_LIMIT`]).
fn expect_ok<T>(
    fx: &mut Findings,
    bug: Option<&str>,
    what: &str,
    call: impl FnOnce() -> Result<T, KmsError>,
) -> Option<T> {
    let (result, took) = timed(call);
    eprintln!("  {what}: {} in {took:?}", describe(&result));
    fx.check(took < CALL_LIMIT, bug, || format!("{what} took {took:?}"));
    fx.check(result.is_ok(), bug, || {
        format!("{what} should succeed, got {}", describe(&result))
    });
    result.ok()
}

/// A call that must fail with `code` within [`CALL_LIMIT`], its message naming each of
/// `mentions` and none of `secrets`.
fn expect_error<T>(
    fx: &mut Findings,
    bug: Option<&str>,
    what: &str,
    code: &str,
    mentions: &[&str],
    call: impl FnOnce() -> Result<T, KmsError>,
) {
    let (result, took) = timed(call);
    eprintln!("  {what}: {} in {took:?}", describe(&result));
    fx.check(took < CALL_LIMIT, bug, || format!("{what} took {took:?} to fail"));
    match &result {
        Ok(_) => fx.check(false, bug, || format!("{what} should fail with {code}, but succeeded")),
        Err(e) => {
            let message = e.to_string();
            let right_code = e.code() == code;
            fx.check(right_code, bug, || {
                format!("{what} should fail with {code}, got {}", describe(&result))
            });
            // (The message of another error is not checked: its code is already wrong.)
            for m in mentions.iter().filter(|_| right_code) {
                fx.check(message.contains(m), bug, || {
                    format!("{what}: the message should name {m:?}: {message}")
                });
            }
        }
    }
}

/// A call on an unreachable HSM: `Rejected.HsmUnavailable` (503), the message naming the HSM.
fn expect_unavailable<T>(
    fx: &mut Findings,
    bug: Option<&str>,
    what: &str,
    mentions: &[&str],
    call: impl FnOnce() -> Result<T, KmsError>,
) {
    let mut all = vec!["HSM"];
    all.extend_from_slice(mentions);
    expect_error(fx, bug, what, UNAVAILABLE, &all, call);
}

// ---------------------------------------------------------------- KMS helpers

fn hardware_instance(kms: &Kms, module: &str, label: &str, pin_env: Option<&str>, pin_file: Option<&Path>) -> String {
    kms.create_kms_instance(&CreateKmsInstanceRequest {
        product_version: Some(ProductVersion::Hardware),
        hsm_module_path: Some(module.into()),
        hsm_token_label: Some(label.into()),
        hsm_pin_env: pin_env.map(str::to_owned),
        hsm_pin_file: pin_file.map(|p| p.display().to_string()),
        ..CreateKmsInstanceRequest::default()
    })
    .expect("CreateKmsInstance")
    .kms_instance_id
}

fn create_key(kms: &Kms, instance: &str, spec: KeySpec) -> Result<String, KmsError> {
    kms.create_key(&CreateKeyRequest {
        key_spec: Some(spec),
        dkms_instance_id: Some(instance.into()),
        ..CreateKeyRequest::default()
    })
    .map(|r| r.key_metadata.key_id)
}

fn check_instance(kms: &Kms, instance: &str) -> Result<kms_core::api::CheckKmsInstanceResponse, KmsError> {
    kms.check_kms_instance(&KmsInstanceIdRequest {
        kms_instance_id: instance.into(),
    })
}

fn encrypt(kms: &Kms, key_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
    kms.encrypt(&EncryptRequest {
        key_id: key_id.into(),
        plaintext: plaintext.to_vec().into(),
        ..EncryptRequest::default()
    })
    .map(|r| r.ciphertext_blob.0)
}

fn decrypt(kms: &Kms, blob: &[u8]) -> Result<Vec<u8>, KmsError> {
    kms.decrypt(&DecryptRequest {
        ciphertext_blob: blob.to_vec().into(),
        ..DecryptRequest::default()
    })
    .map(|r| r.plaintext.expose().to_vec())
}

fn sign(kms: &Kms, key_id: &str, digest: &[u8]) -> Result<Vec<u8>, KmsError> {
    kms.asymmetric_sign(&AsymmetricSignRequest {
        key_id: key_id.into(),
        algorithm: Some(SigningAlgorithm::EcdsaSha256),
        digest: digest.to_vec().into(),
        ..AsymmetricSignRequest::default()
    })
    .map(|r| r.value.0)
}

fn public_key(kms: &Kms, key_id: &str) -> p256::ecdsa::VerifyingKey {
    let pem = kms
        .get_public_key(&GetPublicKeyRequest {
            key_id: key_id.into(),
            key_version_id: None,
        })
        .expect("GetPublicKey")
        .public_key;
    p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).expect("a P-256 public key")
}

fn verifies(key: &p256::ecdsa::VerifyingKey, digest: &[u8], der: &[u8]) -> bool {
    p256::ecdsa::Signature::from_der(der).is_ok_and(|sig| key.verify_prehash(digest, &sig).is_ok())
}

fn digest(text: &str) -> Vec<u8> {
    sha2::Sha256::digest(text.as_bytes()).to_vec()
}

fn key_count(kms: &Kms) -> Result<u64, KmsError> {
    kms.list_keys(&PageRequest {
        page_number: Some(1),
        page_size: Some(100),
    })
    .map(|r| r.total_count)
}

/// What the store holds on disk, read through a read-only SQLite connection of its own.
#[derive(Debug, PartialEq, Eq)]
struct StoreState {
    integrity: String,
    foreign_key_violations: i64,
    keys: i64,
    versions: i64,
    /// The stored forms of the hardware versions (`tessera/<key>/<version>`).
    hardware_objects: Vec<String>,
}

fn store_state(dir: &Path) -> StoreState {
    use rusqlite::OpenFlags;
    let db = rusqlite::Connection::open_with_flags(
        dir.join(kms_core::store::DB_FILE),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the store read-only");
    let integrity = db
        .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .expect("PRAGMA integrity_check");
    let mut fk = db
        .prepare("PRAGMA foreign_key_check")
        .expect("PRAGMA foreign_key_check");
    let foreign_key_violations = fk.query_map([], |_| Ok(())).expect("foreign_key_check rows").count() as i64;
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count rows")
    };
    let mut hw = db
        .prepare(
            "SELECT v.material FROM key_versions v JOIN keys k USING (key_id) \
             JOIN instances i USING (instance_id) WHERE i.product_version = 'hardware' ORDER BY 1",
        )
        .expect("select hardware versions");
    let hardware_objects = hw
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .expect("hardware versions")
        .map(|m| String::from_utf8_lossy(&m.expect("a material")).into_owned())
        .collect();
    StoreState {
        integrity,
        foreign_key_violations,
        keys: count("keys"),
        versions: count("key_versions"),
        hardware_objects,
    }
}

/// Checks the store on disk: intact, and holding `keys` keys with one version each.
fn check_store(fx: &mut Findings, dir: &Path, when: &str, keys: i64) -> StoreState {
    let state = store_state(dir);
    eprintln!(
        "  store {when}: integrity {:?}, {} keys, {} versions, {} FK violations",
        state.integrity, state.keys, state.versions, state.foreign_key_violations
    );
    fx.check(state.integrity == "ok", None, || {
        format!("store {when}: integrity_check says {:?}", state.integrity)
    });
    fx.check(state.foreign_key_violations == 0, None, || {
        format!("store {when}: {} foreign key violations", state.foreign_key_violations)
    });
    fx.check(state.keys == keys && state.versions == keys, None, || {
        format!(
            "store {when}: {} keys and {} versions, expected {keys} of each (a half-created key?)",
            state.keys, state.versions
        )
    });
    state
}

/// The distinct labels of the `tessera/…` objects on the token, as another process
/// (`pkcs11-tool`, which loads SoftHSM2 afresh) sees them.
fn token_labels(hsm: &SoftHsm) -> Vec<String> {
    let out = hsm.pkcs11_tool(&["--list-objects"]);
    assert!(
        out.status.success(),
        "pkcs11-tool --list-objects: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut labels: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(str::trim)
        .filter(|l| l.starts_with("tessera/"))
        .map(str::to_owned)
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

/// How the tests take SoftHSM2's token away for a while.
///
/// `chmod 000` on the token directory does nothing here: the tests run as root, and root's
/// CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH bypass file permissions, so SoftHSM2 reads and writes
/// on (tried: every call still succeeds). Renaming the directory away works for root and for
/// anyone else: SoftHSM2 keeps its token state in memory but re-indexes the token directory
/// (`OSToken::index`, `Directory::refresh`) on object access, so it finds the directory and the
/// object files gone, invalidates the objects (C_*Init answers CKR_OBJECT_HANDLE_INVALID) and
/// fails to create new ones (C_GenerateKey answers CKR_GENERAL_ERROR); a fresh load of the library
/// fails in C_Initialize (CKR_GENERAL_ERROR: no object store). Renaming it back restores the very
/// same files, which a fresh load (or SoftHSM2's re-index) reads again.
struct Outage {
    tokens: PathBuf,
    away: PathBuf,
}

impl Outage {
    fn begin(hsm: &SoftHsm) -> Outage {
        let tokens = hsm.token_dir();
        let away = hsm.dir.path().join("tokens.away");
        std::fs::rename(&tokens, &away).expect("move the token directory away");
        Outage { tokens, away }
    }

    fn end(self) {
        std::fs::rename(&self.away, &self.tokens).expect("move the token directory back");
    }
}

// ---------------------------------------------------------------- (a) a wrong module path

/// A hardware instance whose module is missing, not a file, not a library, or a library that is
/// not a PKCS#11 module: CheckKmsInstance and CreateKey answer `Rejected.HsmUnavailable` naming
/// the path, at once; nothing is stored; the software instance works throughout.
#[test]
fn wrong_module_path_is_a_clear_error_and_the_store_stays_usable() {
    scenario("wrong_module_path_is_a_clear_error_and_the_store_stays_usable", || {
        let mut fx = Findings::new("wrong module path");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let kms = Kms::open(dir.path()).expect("open the store");
        // The PIN is fine: only the module is wrong.
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{USER_PIN}\n")).expect("write the PIN file");

        let sw_aes = create_key(&kms, DEFAULT_INSTANCE_ID, KeySpec::Aes256).expect("software AES key");
        let sw_ec = create_key(&kms, DEFAULT_INSTANCE_ID, KeySpec::EcP256).expect("software EC key");
        let sw_blob = encrypt(&kms, &sw_aes, b"before").expect("software Encrypt");

        let not_a_library = dir.path().join("not-a-library.so");
        std::fs::write(&not_a_library, "this is not an ELF file\n").expect("write a text file");
        let mut modules = vec![
            ("a missing module", "/nonexistent/tessera/libpkcs11.so".to_owned()),
            ("a directory", "/usr/lib".to_owned()),
            ("a text file", not_a_library.display().to_string()),
        ];
        // A real shared library that exports no C_GetFunctionList.
        if let Some(libz) = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
        {
            modules.push(("a library that is no PKCS#11 module", libz.to_owned()));
        }

        // A relative path is refused when the instance is made.
        expect_error(
            &mut fx,
            None,
            "CreateKmsInstance with a relative module path",
            "InvalidParameter",
            &["HsmModulePath"],
            || {
                kms.create_kms_instance(&CreateKmsInstanceRequest {
                    product_version: Some(ProductVersion::Hardware),
                    hsm_module_path: Some("libsofthsm2.so".into()),
                    hsm_token_label: Some("whatever".into()),
                    hsm_pin_env: Some(PIN_ENV.into()),
                    ..CreateKmsInstanceRequest::default()
                })
            },
        );

        for (what, module) in &modules {
            eprintln!("{what}: {module}");
            // CreateKmsInstance does not reach the HSM (an instance may be made before its
            // HSM is installed); it may accept the path, or refuse it with a clear error.
            let (made, took) = timed(|| {
                kms.create_kms_instance(&CreateKmsInstanceRequest {
                    product_version: Some(ProductVersion::Hardware),
                    hsm_module_path: Some(module.clone()),
                    hsm_token_label: Some("tessera-faults".into()),
                    hsm_pin_file: Some(pin_file.display().to_string()),
                    ..CreateKmsInstanceRequest::default()
                })
            });
            eprintln!("  CreateKmsInstance: {} in {took:?}", describe(&made));
            let instance = match made {
                Ok(r) => r.kms_instance_id,
                Err(e) => {
                    fx.check(
                        matches!(e.code(), "InvalidParameter" | UNAVAILABLE) && e.to_string().contains(module),
                        None,
                        || format!("CreateKmsInstance ({what}) refused it unclearly: {} {e}", e.code()),
                    );
                    continue;
                }
            };
            let before = key_count(&kms).expect("ListKeys");
            expect_unavailable(&mut fx, None, &format!("CheckKmsInstance ({what})"), &[module], || {
                check_instance(&kms, &instance)
            });
            for spec in [KeySpec::Aes256, KeySpec::EcP256] {
                expect_unavailable(&mut fx, None, &format!("CreateKey {spec} ({what})"), &[module], || {
                    create_key(&kms, &instance, spec)
                });
            }
            // Twice: a failed connection is not cached as a success, nor does it wedge.
            expect_unavailable(&mut fx, None, &format!("CreateKey again ({what})"), &[module], || {
                create_key(&kms, &instance, KeySpec::Aes256)
            });
            let after = key_count(&kms).ok();
            fx.check(after == Some(before), None, || {
                format!("ListKeys after the failed CreateKeys ({what}): {after:?}, was {before}")
            });
            expect_ok(&mut fx, None, &format!("GetKmsInstance ({what})"), || {
                kms.get_kms_instance(&KmsInstanceIdRequest {
                    kms_instance_id: instance.clone(),
                })
            });
        }

        // The software instance works on, with the keys it had and with new ones.
        let plain = expect_ok(&mut fx, None, "software Decrypt of a blob made before", || {
            decrypt(&kms, &sw_blob)
        });
        fx.check(plain.as_deref() == Some(&b"before"[..]), None, || {
            "software Decrypt gave other bytes".into()
        });
        let d = digest("software");
        let pk = public_key(&kms, &sw_ec);
        let sig = expect_ok(&mut fx, None, "software AsymmetricSign", || sign(&kms, &sw_ec, &d));
        fx.check(sig.is_some_and(|s| verifies(&pk, &d, &s)), None, || {
            "the software signature does not verify".into()
        });
        expect_ok(&mut fx, None, "software CreateKey", || {
            create_key(&kms, DEFAULT_INSTANCE_ID, KeySpec::Aes256)
        });
        check_store(&mut fx, dir.path(), "at the end", 3);
        fx.finish();
    });
}

// ---------------------------------------------------------------- (b) the token directory goes away

/// What [`outage_scenario`] has made before the outage.
struct Before {
    hw_aes: String,
    hw_ec: String,
    hw_ec_public: p256::ecdsa::VerifyingKey,
    hw_blob: Vec<u8>,
    sw_aes: String,
    sw_ec: String,
    sw_blob: Vec<u8>,
}

const SECRET: &[u8] = b"made before the HSM went away";

fn set_up(fx: &mut Findings, kms: &Kms, hardware: &str) -> Before {
    let hw_aes = create_key(kms, hardware, KeySpec::Aes256).expect("hardware AES key");
    let hw_ec = create_key(kms, hardware, KeySpec::EcP256).expect("hardware EC key");
    let sw_aes = create_key(kms, DEFAULT_INSTANCE_ID, KeySpec::Aes256).expect("software AES key");
    let sw_ec = create_key(kms, DEFAULT_INSTANCE_ID, KeySpec::EcP256).expect("software EC key");
    let hw_ec_public = public_key(kms, &hw_ec);
    let hw_blob = encrypt(kms, &hw_aes, SECRET).expect("hardware Encrypt before the outage");
    let plain = expect_ok(fx, None, "hardware Decrypt before the outage", || {
        decrypt(kms, &hw_blob)
    });
    fx.check(plain.as_deref() == Some(SECRET), None, || "hardware round trip".into());
    let d = digest("before");
    let sig = expect_ok(fx, None, "hardware AsymmetricSign before the outage", || {
        sign(kms, &hw_ec, &d)
    });
    fx.check(sig.is_some_and(|s| verifies(&hw_ec_public, &d, &s)), None, || {
        "the hardware signature before the outage does not verify".into()
    });
    let sw_blob = encrypt(kms, &sw_aes, SECRET).expect("software Encrypt");
    Before {
        hw_aes,
        hw_ec,
        hw_ec_public,
        hw_blob,
        sw_aes,
        sw_ec,
        sw_blob,
    }
}

/// The software instance works, and the store answers about the hardware keys, during the outage.
fn software_goes_on(fx: &mut Findings, kms: &Kms, b: &Before) {
    let plain = expect_ok(fx, None, "software Decrypt during the outage", || {
        decrypt(kms, &b.sw_blob)
    });
    fx.check(plain.as_deref() == Some(SECRET), None, || {
        "software Decrypt bytes".into()
    });
    if let Some(blob) = expect_ok(fx, None, "software Encrypt during the outage", || {
        encrypt(kms, &b.sw_aes, b"during")
    }) {
        let plain = decrypt(kms, &blob).ok();
        fx.check(plain.as_deref() == Some(&b"during"[..]), None, || {
            "software round trip during the outage".into()
        });
    }
    expect_ok(fx, None, "software AsymmetricSign during the outage", || {
        sign(kms, &b.sw_ec, &digest("during"))
    });
    for key in [&b.hw_aes, &b.hw_ec] {
        let state = expect_ok(fx, None, "DescribeKey of a hardware key during the outage", || {
            kms.describe_key(&KeyIdRequest::new(key.as_str()))
        })
        .and_then(|r| r.key_metadata.key_state);
        fx.check(state == Some(KeyState::Enabled), None, || {
            format!("hardware key {key} is {state:?} during the outage")
        });
    }
}

/// After the outage: the same `Kms` decrypts what it encrypted before, signs, encrypts and makes
/// keys on the hardware instance again, and CheckKmsInstance finds the token.
fn hardware_is_back(fx: &mut Findings, bug: Option<&str>, kms: &Kms, hardware: &str, b: &Before) -> i64 {
    let plain = expect_ok(
        fx,
        bug,
        "hardware Decrypt of a blob made before the outage, after it",
        || decrypt(kms, &b.hw_blob),
    );
    fx.check(plain.as_deref() == Some(SECRET), bug, || {
        "hardware Decrypt after the outage gave other bytes".into()
    });
    let d = digest("after");
    let sig = expect_ok(fx, bug, "hardware AsymmetricSign after the outage", || {
        sign(kms, &b.hw_ec, &d)
    });
    fx.check(sig.is_some_and(|s| verifies(&b.hw_ec_public, &d, &s)), bug, || {
        "the hardware signature after the outage does not verify with the key from before".into()
    });
    if let Some(blob) = expect_ok(fx, bug, "hardware Encrypt after the outage", || {
        encrypt(kms, &b.hw_aes, b"after")
    }) {
        let plain = decrypt(kms, &blob).ok();
        fx.check(plain.as_deref() == Some(&b"after"[..]), bug, || {
            "hardware round trip after the outage".into()
        });
    }
    expect_ok(fx, bug, "CheckKmsInstance after the outage", || {
        check_instance(kms, hardware)
    });
    let made = expect_ok(fx, None, "hardware CreateKey after the outage", || {
        create_key(kms, hardware, KeySpec::EcP256)
    });
    i64::from(made.is_some())
}

/// Every `tessera/…` object on the token is a version the store keeps, and the reverse: a
/// CreateKey that failed left nothing behind on either side.
fn token_matches_store(fx: &mut Findings, hsm: &SoftHsm, state: &StoreState) {
    let labels = token_labels(hsm);
    eprintln!(
        "  token: {} tessera objects (by label); store: {} hardware versions",
        labels.len(),
        state.hardware_objects.len()
    );
    fx.check(labels == state.hardware_objects, None, || {
        format!(
            "the token's objects {labels:?} are not the store's hardware versions {:?}",
            state.hardware_objects
        )
    });
}

/// Scenario (b): the token directory is moved away after keys were made and used, every kind of
/// call is made on both instances during the outage (from several threads too), then the
/// directory comes back and the same `Kms` works on.
#[test]
fn token_directory_gone_mid_run_then_back() {
    scenario("token_directory_gone_mid_run_then_back", || {
        let mut fx = Findings::new("token directory gone mid-run, then back");
        let hsm = SoftHsm::new("tessera-faults");
        let stores = Stores::new(&hsm);
        let (kms, hardware) = (&stores.kms, stores.hardware.as_str());
        let b = set_up(&mut fx, kms, hardware);
        check_store(&mut fx, stores.dir.path(), "before the outage", 4);

        eprintln!("the token directory goes away");
        let outage = Outage::begin(&hsm);
        // The first calls find the library loaded and the cached object handles invalidated.
        expect_unavailable(
            &mut fx,
            Some(BUG_STALE_HANDLES),
            "hardware Encrypt, outage",
            &[],
            || encrypt(kms, &b.hw_aes, b"during"),
        );
        expect_unavailable(
            &mut fx,
            Some(BUG_STALE_HANDLES),
            "hardware AsymmetricSign, outage",
            &[],
            || sign(kms, &b.hw_ec, &digest("during")),
        );
        expect_unavailable(
            &mut fx,
            Some(BUG_DECRYPT_MASKS_OUTAGE),
            "hardware Decrypt, outage",
            &[],
            || decrypt(kms, &b.hw_blob),
        );
        // Making a key meets CKR_GENERAL_ERROR: the engine reconnects, and the fresh
        // C_Initialize fails (no token directory).
        for spec in [KeySpec::Aes256, KeySpec::EcP256] {
            expect_unavailable(
                &mut fx,
                None,
                &format!("hardware CreateKey {spec}, outage"),
                &[],
                || create_key(kms, hardware, spec),
            );
        }
        expect_unavailable(&mut fx, None, "CheckKmsInstance, outage", &[], || {
            check_instance(kms, hardware)
        });
        // Now that the engine has found the library gone, every call says so.
        expect_unavailable(
            &mut fx,
            None,
            "hardware Encrypt, outage, after the reconnect",
            &[],
            || encrypt(kms, &b.hw_aes, b"during"),
        );
        expect_unavailable(
            &mut fx,
            None,
            "hardware AsymmetricSign, outage, after the reconnect",
            &[],
            || sign(kms, &b.hw_ec, &digest("during")),
        );
        expect_unavailable(
            &mut fx,
            Some(BUG_DECRYPT_MASKS_OUTAGE),
            "hardware Decrypt, outage, after the reconnect",
            &[],
            || decrypt(kms, &b.hw_blob),
        );
        // Several threads at once: all fail soon, none waits on a pool that leaked sessions.
        let started = Instant::now();
        let codes: Vec<Vec<String>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..20)
                            .map(|_| match encrypt(kms, &b.hw_aes, b"during") {
                                Ok(_) => "OK".to_owned(),
                                Err(e) => e.code().to_owned(),
                            })
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a worker thread"))
                .collect()
        });
        let took = started.elapsed();
        let codes: Vec<String> = codes.into_iter().flatten().collect();
        eprintln!("  4 threads x 20 hardware Encrypt, outage: {took:?}");
        fx.check(codes.iter().all(|c| c == UNAVAILABLE), None, || {
            format!("4 threads x 20 hardware Encrypt during the outage answered {codes:?}")
        });
        fx.check(took < CALL_LIMIT, None, || format!("80 failing calls took {took:?}"));
        software_goes_on(&mut fx, kms, &b);
        expect_ok(&mut fx, None, "software CreateKey during the outage", || {
            create_key(kms, DEFAULT_INSTANCE_ID, KeySpec::Aes256)
        });
        let listed = key_count(kms).ok();
        fx.check(listed == Some(5), None, || {
            format!("ListKeys during the outage: {listed:?} keys, expected 5 (4 + 1 software; no failed hardware key)")
        });
        check_store(&mut fx, stores.dir.path(), "during the outage", 5);

        eprintln!("the token directory comes back");
        outage.end();
        let made = hardware_is_back(&mut fx, None, kms, hardware, &b);
        // Several threads at once, on the recovered connection.
        let ok = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..20)
                            .filter(|_| {
                                encrypt(kms, &b.hw_aes, b"after")
                                    .and_then(|blob| decrypt(kms, &blob))
                                    .is_ok_and(|p| p == b"after")
                            })
                            .count()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a worker thread"))
                .sum::<usize>()
        });
        fx.check(ok == 80, None, || {
            format!("4 threads x 20 hardware round trips after the outage: {ok} succeeded")
        });
        let state = check_store(&mut fx, stores.dir.path(), "after the outage", 5 + made);
        token_matches_store(&mut fx, &hsm, &state);
        fx.finish();
    });
}

/// Scenario (b), as most clients see it: during the outage only Encrypt, Sign and Decrypt are
/// called on keys the engine already used (nothing makes a key), then the directory comes back.
/// The HSM must be usable again at the next call.
#[test]
fn token_directory_gone_then_back_with_only_key_operations_meanwhile() {
    scenario(
        "token_directory_gone_then_back_with_only_key_operations_meanwhile",
        || {
            let mut fx = Findings::new("token directory gone, only key operations meanwhile, then back");
            let hsm = SoftHsm::new("tessera-faults-ops");
            let stores = Stores::new(&hsm);
            let (kms, hardware) = (&stores.kms, stores.hardware.as_str());
            let b = set_up(&mut fx, kms, hardware);

            eprintln!("the token directory goes away");
            let outage = Outage::begin(&hsm);
            for round in 1..=3 {
                expect_unavailable(
                    &mut fx,
                    Some(BUG_STALE_HANDLES),
                    &format!("hardware Encrypt, outage, call {round}"),
                    &[],
                    || encrypt(kms, &b.hw_aes, b"during"),
                );
                expect_unavailable(
                    &mut fx,
                    Some(BUG_STALE_HANDLES),
                    &format!("hardware AsymmetricSign, outage, call {round}"),
                    &[],
                    || sign(kms, &b.hw_ec, &digest("during")),
                );
                expect_unavailable(
                    &mut fx,
                    Some(BUG_DECRYPT_MASKS_OUTAGE),
                    &format!("hardware Decrypt, outage, call {round}"),
                    &[],
                    || decrypt(kms, &b.hw_blob),
                );
            }
            software_goes_on(&mut fx, kms, &b);
            check_store(&mut fx, stores.dir.path(), "during the outage", 4);

            eprintln!("the token directory comes back");
            outage.end();
            let made = hardware_is_back(&mut fx, Some(BUG_STALE_HANDLES), kms, hardware, &b);
            let state = check_store(&mut fx, stores.dir.path(), "after the outage", 4 + made);
            token_matches_store(&mut fx, &hsm, &state);
            fx.finish();
        },
    );
}

// ---------------------------------------------------------------- (c) a wrong PIN source

/// Hardware instances whose PIN variable is unset, whose PIN file is missing, empty, or holds a
/// wrong PIN: CheckKmsInstance and CreateKey answer `Rejected.HsmUnavailable` naming the variable
/// or file (and never the PIN), nothing is stored, and an instance with the right PIN on the same
/// token then works. No instance of this process logs in before the wrong ones are tried (see
/// [`BUG_PIN_NOT_CHECKED`] for what happens after).
#[test]
fn wrong_pin_source_is_a_clear_error() {
    scenario("wrong_pin_source_is_a_clear_error", || {
        let mut fx = Findings::new("wrong PIN source");
        let hsm = SoftHsm::new("tessera-faults-pin");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let kms = Kms::open(dir.path()).expect("open the store");
        let unset_var = "TESSERA_FAULTS_NO_SUCH_PIN_VARIABLE";
        assert!(std::env::var_os(unset_var).is_none());
        let missing = dir.path().join("no-such-pin-file");
        let empty = dir.path().join("empty.pin");
        std::fs::write(&empty, "").expect("write an empty PIN file");
        let wrong_pin = "wrong-pin-31337";
        let wrong = dir.path().join("wrong.pin");
        std::fs::write(&wrong, format!("{wrong_pin}\n")).expect("write a wrong PIN file");
        let good = dir.path().join("good.pin");
        std::fs::write(&good, format!("{USER_PIN}\n")).expect("write the PIN file");

        let missing_s = missing.display().to_string();
        let wrong_s = wrong.display().to_string();
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            (
                "an unset PIN variable",
                hardware_instance(&kms, SOFTHSM_MODULE, &hsm.label, Some(unset_var), None),
                vec![unset_var],
            ),
            (
                "a missing PIN file",
                hardware_instance(&kms, SOFTHSM_MODULE, &hsm.label, None, Some(&missing)),
                vec![&missing_s],
            ),
            (
                "a wrong PIN in the PIN file",
                hardware_instance(&kms, SOFTHSM_MODULE, &hsm.label, None, Some(&wrong)),
                vec![&wrong_s, "PIN"],
            ),
            (
                "an empty PIN file",
                hardware_instance(&kms, SOFTHSM_MODULE, &hsm.label, None, Some(&empty)),
                vec![],
            ),
        ];
        let right = hardware_instance(&kms, SOFTHSM_MODULE, &hsm.label, None, Some(&good));
        let sw = create_key(&kms, DEFAULT_INSTANCE_ID, KeySpec::Aes256).expect("software key");
        for (what, instance, mentions) in &cases {
            expect_unavailable(&mut fx, None, &format!("CheckKmsInstance ({what})"), mentions, || {
                check_instance(&kms, instance)
            });
            expect_unavailable(&mut fx, None, &format!("CreateKey ({what})"), mentions, || {
                create_key(&kms, instance, KeySpec::Aes256)
            });
            // The wrong PIN itself never appears in an answer.
            if let Err(e) = check_instance(&kms, instance) {
                fx.check(!e.to_string().contains(wrong_pin), None, || {
                    format!("the error shows the PIN: {e}")
                });
            }
        }
        let listed = key_count(&kms).ok();
        fx.check(listed == Some(1), None, || {
            format!("ListKeys after the failed CreateKeys: {listed:?}, expected 1")
        });
        expect_ok(&mut fx, None, "software Encrypt", || encrypt(&kms, &sw, b"fine"));
        // The token itself is fine: the right PIN works.
        expect_ok(&mut fx, None, "CheckKmsInstance (the right PIN)", || {
            check_instance(&kms, &right)
        });
        let hw = expect_ok(&mut fx, None, "CreateKey (the right PIN)", || {
            create_key(&kms, &right, KeySpec::Aes256)
        });
        if let Some(hw) = &hw {
            expect_ok(&mut fx, None, "hardware Encrypt (the right PIN)", || {
                encrypt(&kms, hw, b"fine")
            });
        }
        check_store(&mut fx, dir.path(), "at the end", 1 + i64::from(hw.is_some()));
        fx.finish();
    });
}

/// A wrong PIN must be refused even when another instance of the process is logged in to the
/// same token (PKCS#11 login state is per application). See [`BUG_PIN_NOT_CHECKED`].
#[test]
fn wrong_pin_is_refused_while_another_instance_is_logged_in() {
    scenario("wrong_pin_is_refused_while_another_instance_is_logged_in", || {
        let mut fx = Findings::new("wrong PIN while another instance is logged in");
        let hsm = SoftHsm::new("tessera-faults-pin2");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let kms = Kms::open(dir.path()).expect("open the store");
        let wrong = dir.path().join("wrong.pin");
        std::fs::write(&wrong, "wrong-pin-31337\n").expect("write a wrong PIN file");
        let right = hardware_instance(&kms, SOFTHSM_MODULE, &hsm.label, Some(PIN_ENV), None);
        let bad = hardware_instance(&kms, SOFTHSM_MODULE, &hsm.label, None, Some(&wrong));
        let wrong_s = wrong.display().to_string();
        // Before any login: refused.
        expect_unavailable(
            &mut fx,
            None,
            "CreateKey (wrong PIN, nobody logged in)",
            &[&wrong_s],
            || create_key(&kms, &bad, KeySpec::Aes256),
        );
        // The right instance logs in.
        expect_ok(&mut fx, None, "CreateKey (right PIN)", || {
            create_key(&kms, &right, KeySpec::Aes256)
        });
        // The wrong one must still be refused.
        expect_unavailable(
            &mut fx,
            Some(BUG_PIN_NOT_CHECKED),
            "CheckKmsInstance (wrong PIN, another instance logged in)",
            &[&wrong_s],
            || check_instance(&kms, &bad),
        );
        expect_unavailable(
            &mut fx,
            Some(BUG_PIN_NOT_CHECKED),
            "CreateKey (wrong PIN, another instance logged in)",
            &[&wrong_s],
            || create_key(&kms, &bad, KeySpec::Aes256),
        );
        fx.finish();
    });
}
