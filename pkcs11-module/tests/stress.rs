//! Stress: 8 threads x 1,000 mixed PKCS#11 operations, each thread on its own session, through
//! `libtessera_pkcs11.so`, while `tessera` processes rotate (CreateKeyVersion), disable and
//! enable the same keys in the same store.
//!
//! The operations: ECDSA P-256 sign + verify (CKM_ECDSA, the public key of the same CKA_ID),
//! RSA-2048 sign (CKM_SHA256_RSA_PKCS), AES-256-GCM encrypt + decrypt round trip (and, one time
//! in four, a tampered ciphertext that must be refused), find by label (the three labels and one
//! that no key has), attribute reads (class, key type, label, CKA_ID, EC point, modulus), and
//! GenerateRandom. Every result must be right, or one of the errors in [`KEY_GONE`]: an object
//! of a key that the `tessera` process disabled while the operation ran. A find that returns no
//! object of a key (disabled at that moment) counts apart, as "unavailable". Afterwards, with the
//! rotation stopped and the keys enabled, every kind of operation must succeed again; every
//! signature made during the run must verify under the public key of one of the key's versions
//! as kms-core reads it from the store; every EC point read must be one of those keys.
//!
//! The test re-runs itself (its `stress_child` test) in a child process, so that the module's
//! environment (`TESSERA_PKCS11_CONFIG`) is set from the start and a crash of the module is a
//! failed child, not a dead test harness. `TESSERA_STRESS_SOFTHSM=1` runs the same operations
//! against SoftHSM2 instead, without the `tessera` process and with no error allowed: a dry run of
//! the test's own logic. Knobs: `TESSERA_STRESS_THREADS` (8), `TESSERA_STRESS_OPS` (1000 a
//! thread), `TESSERA_STRESS_TIMEOUT_SECS` (900), `TESSERA_BIN` (the `tessera` binary; default
//! `target/<profile>/tessera`, built with cargo if absent), `TESSERA_PKCS11_MODULE`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use kms_core::Kms;
use kms_core::api::{GetPublicKeyRequest, KeyIdRequest, KeyPageRequest};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use sha2::{Digest, Sha256};

const DIR_ENV: &str = "TESSERA_STRESS_CHILD_DIR";
const MODE_ENV: &str = "TESSERA_STRESS_CHILD_MODE";
const MODULE_ENV: &str = "TESSERA_STRESS_CHILD_MODULE";
const BIN_ENV: &str = "TESSERA_STRESS_CHILD_BIN";
/// Written by the child when it got to the end: a child that ran no test cannot pass.
const FINISHED: &str = "child-finished";
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

const SO_PIN: &str = "so-pin-8765";
const USER_PIN: &str = "user-pin-1234";
const TOKEN_LABEL: &str = "tessera-stress";
/// A label no object has.
const NO_SUCH_LABEL: &str = "stress-none";
/// DER of the prime256v1 OID (CKA_EC_PARAMS).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The errors that fit an operation on an object whose key the `tessera` process disabled while
/// the operation ran (the module shows only Enabled keys). Anything else is a failure.
const KEY_GONE: &[RvError] = &[
    RvError::KeyHandleInvalid,
    RvError::ObjectHandleInvalid,
    RvError::KeyFunctionNotPermitted,
];

/// How long the `tessera` loop leaves a key disabled, and waits between keys.
const DISABLED_FOR: Duration = Duration::from_millis(15);
const PAUSE: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Tessera,
    SoftHsm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Ec,
    Rsa,
    Aes,
}

impl Key {
    const ALL: [Key; 3] = [Key::Ec, Key::Rsa, Key::Aes];

    fn label(self) -> &'static str {
        match self {
            Key::Ec => "stress-ec",
            Key::Rsa => "stress-rsa",
            Key::Aes => "stress-aes",
        }
    }

    fn alias(self) -> String {
        format!("alias/{}", self.label())
    }

    /// The class of the object that does the key's cryptography.
    fn class(self) -> ObjectClass {
        match self {
            Key::Ec | Key::Rsa => ObjectClass::PRIVATE_KEY,
            Key::Aes => ObjectClass::SECRET_KEY,
        }
    }

    fn key_type(self) -> KeyType {
        match self {
            Key::Ec => KeyType::EC,
            Key::Rsa => KeyType::RSA,
            Key::Aes => KeyType::AES,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    EcdsaSignVerify,
    RsaSign,
    AesGcmRoundTrip,
    FindByLabel,
    GetAttributes,
    GenerateRandom,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::EcdsaSignVerify,
        Kind::RsaSign,
        Kind::AesGcmRoundTrip,
        Kind::FindByLabel,
        Kind::GetAttributes,
        Kind::GenerateRandom,
    ];
}

/// How one operation ended (other than well).
#[derive(Debug)]
enum NotOk {
    /// An error in [`KEY_GONE`]: `C_<function>: <CKR>`.
    KeyGone(String),
    /// No object of the key was found (it was disabled then).
    Unavailable,
    /// A wrong result or an error that does not fit.
    Failed(String),
}

fn short(e: &P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, f) => format!("C_{f:?}: {rv:?}"),
        other => other.to_string(),
    }
}

/// An error from the module: [`NotOk::KeyGone`] if it fits a vanished key, else a failure.
fn classify(what: &str, e: P11Error) -> NotOk {
    match &e {
        P11Error::Pkcs11(rv, _) if KEY_GONE.contains(rv) => NotOk::KeyGone(short(&e)),
        _ => NotOk::Failed(format!("{what}: {}", short(&e))),
    }
}

fn failed(message: impl Into<String>) -> NotOk {
    NotOk::Failed(message.into())
}

// ------------------------------------------------------------------ token set-up

fn slot_with_label(ctx: &Pkcs11, label: &str) -> Option<Slot> {
    ctx.get_slots_with_token()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|&slot| {
            let info = ctx.get_token_info(slot).expect("C_GetTokenInfo");
            info.token_initialized() && info.label() == label
        })
}

/// Initialises the token and its user PIN, as with SoftHSM2 (which moves the token it
/// initialises to a new slot: look it up by label after).
fn setup_token(ctx: &Pkcs11) -> Slot {
    if let Some(slot) = slot_with_label(ctx, TOKEN_LABEL) {
        return slot;
    }
    let fresh = ctx
        .get_slots_with_token()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|&slot| !ctx.get_token_info(slot).expect("C_GetTokenInfo").token_initialized())
        .expect("a slot with an uninitialised token");
    ctx.init_token(fresh, &AuthPin::from(SO_PIN), TOKEN_LABEL)
        .expect("C_InitToken");
    let slot = slot_with_label(ctx, TOKEN_LABEL).expect("the initialised token's slot");
    let so = ctx.open_rw_session(slot).expect("C_OpenSession");
    so.login(UserType::So, Some(&AuthPin::from(SO_PIN)))
        .expect("C_Login(SO)");
    so.init_pin(&AuthPin::from(USER_PIN)).expect("C_InitPIN");
    so.logout().expect("C_Logout(SO)");
    slot
}

/// C_Login as the user; CKR_USER_ALREADY_LOGGED_IN (another session of ours did) is fine.
fn login(session: &Session) -> Result<(), P11Error> {
    match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn generate_keys(s: &Session) {
    let label = |k: Key| Attribute::Label(k.label().as_bytes().to_vec());
    s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::Token(true),
            label(Key::Ec),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Verify(true),
        ],
        &[Attribute::Token(true), label(Key::Ec), Attribute::Sign(true)],
    )
    .expect("C_GenerateKeyPair(EC P-256)");
    s.generate_key_pair(
        &Mechanism::RsaPkcsKeyPairGen,
        &[
            Attribute::Token(true),
            label(Key::Rsa),
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Verify(true),
        ],
        &[Attribute::Token(true), label(Key::Rsa), Attribute::Sign(true)],
    )
    .expect("C_GenerateKeyPair(RSA-2048)");
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(true),
            label(Key::Aes),
            Attribute::ValueLen(32.into()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ],
    )
    .expect("C_GenerateKey(AES-256)");
}

// ------------------------------------------------------------------ the workers

/// What a worker saw, to check at the end against the keys' public halves.
#[derive(Default)]
struct Records {
    /// (CKA_ID of the private key, digest, r||s).
    ecdsa: Vec<(Vec<u8>, [u8; 32], Vec<u8>)>,
    /// (CKA_ID, message, signature).
    rsa: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    /// (CKA_ID, CKA_EC_POINT) of public keys.
    ec_points: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Default, Clone, Copy)]
struct Count {
    ok: usize,
    key_gone: usize,
    unavailable: usize,
    failed: usize,
}

#[derive(Default)]
struct Stats {
    by_kind: BTreeMap<Kind, Count>,
    /// `C_<function>: <CKR>` → how many.
    key_gone: BTreeMap<String, usize>,
    failures: Vec<String>,
}

impl Stats {
    fn add(&mut self, kind: Kind, result: &Result<(), NotOk>, strict: bool) {
        let c = self.by_kind.entry(kind).or_default();
        match result {
            Ok(()) => c.ok += 1,
            Err(NotOk::KeyGone(what)) if !strict => {
                c.key_gone += 1;
                *self.key_gone.entry(what.clone()).or_default() += 1;
            }
            Err(NotOk::Unavailable) if !strict => c.unavailable += 1,
            Err(other) => {
                c.failed += 1;
                let why = match other {
                    NotOk::Failed(why) => why.clone(),
                    NotOk::KeyGone(what) => format!("{what} (no key changes here)"),
                    NotOk::Unavailable => "no object found (no key changes here)".to_owned(),
                };
                if self.failures.len() < 50 {
                    self.failures.push(format!("{kind:?}: {why}"));
                }
            }
        }
    }

    fn merge(&mut self, other: Stats) {
        for (k, c) in other.by_kind {
            let e = self.by_kind.entry(k).or_default();
            e.ok += c.ok;
            e.key_gone += c.key_gone;
            e.unavailable += c.unavailable;
            e.failed += c.failed;
        }
        for (k, n) in other.key_gone {
            *self.key_gone.entry(k).or_default() += n;
        }
        for f in other.failures {
            if self.failures.len() < 50 {
                self.failures.push(f);
            }
        }
    }

    fn total(&self) -> Count {
        self.by_kind.values().fold(Count::default(), |a, c| Count {
            ok: a.ok + c.ok,
            key_gone: a.key_gone + c.key_gone,
            unavailable: a.unavailable + c.unavailable,
            failed: a.failed + c.failed,
        })
    }
}

struct Worker {
    index: usize,
    /// SoftHSM2's dry run.
    softhsm: bool,
    s: Session,
    rng: u64,
    counter: u64,
    /// Objects found for each key (one per version); found again after an error or now and then.
    handles: HashMap<Key, Vec<ObjectHandle>>,
    last_random: Vec<u8>,
    records: Records,
}

fn attr_bytes(attrs: &[Attribute], t: AttributeType) -> Option<Vec<u8>> {
    attrs.iter().find_map(|a| match (t, a) {
        (AttributeType::Id, Attribute::Id(v))
        | (AttributeType::Label, Attribute::Label(v))
        | (AttributeType::EcPoint, Attribute::EcPoint(v))
        | (AttributeType::EcParams, Attribute::EcParams(v))
        | (AttributeType::Modulus, Attribute::Modulus(v))
        | (AttributeType::PublicExponent, Attribute::PublicExponent(v)) => Some(v.clone()),
        _ => None,
    })
}

fn attr_class(attrs: &[Attribute]) -> Option<ObjectClass> {
    attrs.iter().find_map(|a| match a {
        Attribute::Class(c) => Some(*c),
        _ => None,
    })
}

/// The uncompressed point in a CKA_EC_POINT: the DER OCTET STRING PKCS#11 asks for, or the raw
/// point some modules give.
fn ec_point(raw: &[u8]) -> &[u8] {
    if raw.len() == 67 && raw[0] == 0x04 && raw[1] == 65 {
        &raw[2..]
    } else {
        raw
    }
}

/// CKM_AES_GCM with a 128-bit tag.
fn gcm<'a>(iv: &'a mut [u8; 12], aad: &'a [u8]) -> Result<Mechanism<'a>, NotOk> {
    let params = GcmParams::new(iv, aad, 128.into()).map_err(|e| failed(format!("GcmParams: {e}")))?;
    Ok(Mechanism::AesGcm(params))
}

/// Tessera labels a key's primary version `x` and its older versions `x@<version id>`, so an
/// object found as `x` may be `x@…` after a rotation.
fn label_matches(got: &[u8], label: &str) -> bool {
    got == label.as_bytes()
        || got
            .strip_prefix(label.as_bytes())
            .is_some_and(|rest| rest.starts_with(b"@"))
}

fn strip_zeros(v: &[u8]) -> &[u8] {
    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    &v[first..]
}

impl Worker {
    fn new(index: usize, s: Session, softhsm: bool) -> Worker {
        Worker {
            index,
            softhsm,
            s,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03),
            counter: 0,
            handles: HashMap::new(),
            last_random: Vec::new(),
            records: Records::default(),
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of the key's objects (of its class), found by label when none is cached.
    fn handle(&mut self, key: Key) -> Result<ObjectHandle, NotOk> {
        let refresh = self.below(16) == 0;
        if refresh || self.handles.get(&key).is_none_or(Vec::is_empty) {
            let found = self
                .s
                .find_objects(&[
                    Attribute::Class(key.class()),
                    Attribute::Label(key.label().as_bytes().to_vec()),
                ])
                .map_err(|e| classify("find by class and label", e))?;
            if found.is_empty() {
                self.handles.remove(&key);
                return Err(NotOk::Unavailable);
            }
            self.handles.insert(key, found);
        }
        let len = self.handles[&key].len();
        let at = self.below(len);
        Ok(self.handles[&key][at])
    }

    fn attributes(&self, h: ObjectHandle, types: &[AttributeType]) -> Result<Vec<Attribute>, NotOk> {
        self.s.get_attributes(h, types).map_err(|e| match e {
            // cryptoki asks for the lengths, then the values: a rotation in between renames the
            // object (`x` to `x@<version>`), and the second call finds its buffer too small.
            P11Error::Pkcs11(RvError::BufferTooSmall, _) => NotOk::KeyGone(short(&e)),
            e => classify("C_GetAttributeValue", e),
        })
    }

    fn id_of(&self, h: ObjectHandle) -> Result<Vec<u8>, NotOk> {
        let attrs = self.attributes(h, &[AttributeType::Id])?;
        Ok(attr_bytes(&attrs, AttributeType::Id).unwrap_or_default())
    }

    /// The public key with the same label and CKA_ID as private key `h`.
    fn public_of(&self, key: Key, id: &[u8]) -> Result<ObjectHandle, NotOk> {
        let found = self
            .s
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(key.label().as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
            ])
            .map_err(|e| classify("find the public key", e))?;
        match found.as_slice() {
            [] => Err(NotOk::Unavailable),
            [one] => Ok(*one),
            many => Err(failed(format!(
                "{} public keys labelled {} with CKA_ID {}",
                many.len(),
                key.label(),
                hex::encode(id)
            ))),
        }
    }

    fn run(&mut self, kind: Kind) -> (Option<Key>, Result<(), NotOk>) {
        self.counter += 1;
        match kind {
            Kind::EcdsaSignVerify => (Some(Key::Ec), self.ecdsa()),
            Kind::RsaSign => (Some(Key::Rsa), self.rsa()),
            Kind::AesGcmRoundTrip => (Some(Key::Aes), self.aes()),
            Kind::FindByLabel => {
                let pick = self.below(4);
                let key = Key::ALL.get(pick).copied();
                (key, self.find(key))
            }
            Kind::GetAttributes => {
                let key = Key::ALL[self.below(3)];
                (Some(key), self.get_attributes(key))
            }
            Kind::GenerateRandom => (None, self.random()),
        }
    }

    fn ecdsa(&mut self) -> Result<(), NotOk> {
        let h = self.handle(Key::Ec)?;
        let id = self.id_of(h)?;
        let public = self.public_of(Key::Ec, &id)?;
        let digest: [u8; 32] = Sha256::digest(format!("ecdsa {} {}", self.index, self.counter)).into();
        let sig = self
            .s
            .sign(&Mechanism::Ecdsa, h, &digest)
            .map_err(|e| classify("ECDSA sign", e))?;
        if sig.len() != 64 {
            return Err(failed(format!("an ECDSA P-256 signature of {} bytes", sig.len())));
        }
        self.s
            .verify(&Mechanism::Ecdsa, public, &digest, &sig)
            .map_err(|e| classify("ECDSA verify with the same CKA_ID's public key", e))?;
        self.records.ecdsa.push((id, digest, sig));
        Ok(())
    }

    fn rsa(&mut self) -> Result<(), NotOk> {
        let h = self.handle(Key::Rsa)?;
        let id = self.id_of(h)?;
        let msg = format!("rsa {} {}", self.index, self.counter).into_bytes();
        let sig = self
            .s
            .sign(&Mechanism::Sha256RsaPkcs, h, &msg)
            .map_err(|e| classify("RSA sign", e))?;
        if sig.len() != 256 {
            return Err(failed(format!("an RSA-2048 signature of {} bytes", sig.len())));
        }
        self.records.rsa.push((id, msg, sig));
        Ok(())
    }

    fn aes(&mut self) -> Result<(), NotOk> {
        let h = self.handle(Key::Aes)?;
        let len = 1 + self.below(4096);
        let pt: Vec<u8> = (0..len).map(|i| (i as u64 ^ self.counter) as u8).collect();
        let aad = format!("stress worker {}", self.index).into_bytes();
        // Unique per worker and operation.
        let mut iv = [0u8; 12];
        iv[..4].copy_from_slice(&(self.index as u32).to_be_bytes());
        iv[4..].copy_from_slice(&self.counter.to_be_bytes());
        let ct = self
            .s
            .encrypt(&gcm(&mut iv, &aad)?, h, &pt)
            .map_err(|e| classify("AES-GCM encrypt", e))?;
        if ct.len() != len + 16 {
            return Err(failed(format!("{} bytes of AES-GCM output for {len}", ct.len())));
        }
        let back = self
            .s
            .decrypt(&gcm(&mut iv, &aad)?, h, &ct)
            .map_err(|e| classify("AES-GCM decrypt", e))?;
        if back != pt {
            return Err(failed("AES-GCM decrypted to other bytes"));
        }
        if self.below(4) == 0 {
            let mut bad = ct;
            let at = self.below(bad.len());
            bad[at] ^= 0x01;
            match self.s.decrypt(&gcm(&mut iv, &aad)?, h, &bad) {
                Ok(_) => return Err(failed("AES-GCM decrypted a tampered ciphertext")),
                Err(P11Error::Pkcs11(RvError::EncryptedDataInvalid, _)) => {}
                // SoftHSM2 2.6 answers a wrong GCM tag with CKR_GENERAL_ERROR.
                Err(P11Error::Pkcs11(RvError::GeneralError, _)) if self.softhsm => {}
                Err(e) => return Err(classify("AES-GCM decrypt of a tampered ciphertext", e)),
            }
        }
        Ok(())
    }

    /// Finds by label alone: `key`'s label, or (None) one that no object has.
    fn find(&mut self, key: Option<Key>) -> Result<(), NotOk> {
        let label = key.map_or(NO_SUCH_LABEL, Key::label);
        let found = self
            .s
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| classify("find by label", e))?;
        let Some(key) = key else {
            return if found.is_empty() {
                Ok(())
            } else {
                Err(failed(format!("{} objects labelled {NO_SUCH_LABEL}", found.len())))
            };
        };
        if found.is_empty() {
            return Err(NotOk::Unavailable);
        }
        let allowed: &[ObjectClass] = match key {
            Key::Ec | Key::Rsa => &[
                ObjectClass::PRIVATE_KEY,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::CERTIFICATE,
            ],
            Key::Aes => &[ObjectClass::SECRET_KEY],
        };
        for _ in 0..2 {
            let h = found[self.below(found.len())];
            let attrs = self.attributes(h, &[AttributeType::Class, AttributeType::Label])?;
            let got = attr_bytes(&attrs, AttributeType::Label).unwrap_or_default();
            if !label_matches(&got, label) {
                return Err(failed(format!(
                    "a find by label {label} gave an object labelled {:?}",
                    String::from_utf8_lossy(&got)
                )));
            }
            match attr_class(&attrs) {
                Some(c) if allowed.contains(&c) => {}
                other => return Err(failed(format!("an object labelled {label} of class {other:?}"))),
            }
        }
        Ok(())
    }

    fn get_attributes(&mut self, key: Key) -> Result<(), NotOk> {
        let h = self.handle(key)?;
        let attrs = self.attributes(
            h,
            &[
                AttributeType::Class,
                AttributeType::KeyType,
                AttributeType::Label,
                AttributeType::Token,
                AttributeType::Id,
            ],
        )?;
        if attr_class(&attrs) != Some(key.class()) {
            return Err(failed(format!("{key:?}: CKA_CLASS {:?}", attr_class(&attrs))));
        }
        let key_type = attrs.iter().find_map(|a| match a {
            Attribute::KeyType(t) => Some(*t),
            _ => None,
        });
        if key_type != Some(key.key_type()) {
            return Err(failed(format!("{key:?}: CKA_KEY_TYPE {key_type:?}")));
        }
        let got = attr_bytes(&attrs, AttributeType::Label).unwrap_or_default();
        if !label_matches(&got, key.label()) {
            return Err(failed(format!(
                "{key:?}: CKA_LABEL {:?}",
                String::from_utf8_lossy(&got)
            )));
        }
        if !attrs.contains(&Attribute::Token(true)) {
            return Err(failed(format!("{key:?}: CKA_TOKEN is not true")));
        }
        let id = attr_bytes(&attrs, AttributeType::Id).unwrap_or_default();
        match key {
            Key::Ec => {
                let public = self.public_of(key, &id)?;
                let attrs = self.attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])?;
                if attr_bytes(&attrs, AttributeType::EcParams).as_deref() != Some(P256_PARAMS) {
                    return Err(failed("CKA_EC_PARAMS is not prime256v1's OID"));
                }
                let point = attr_bytes(&attrs, AttributeType::EcPoint).ok_or_else(|| failed("no CKA_EC_POINT"))?;
                self.records.ec_points.push((id, point));
            }
            Key::Rsa => {
                let public = self.public_of(key, &id)?;
                let attrs = self.attributes(public, &[AttributeType::Modulus, AttributeType::PublicExponent])?;
                let n = attr_bytes(&attrs, AttributeType::Modulus).unwrap_or_default();
                let e = attr_bytes(&attrs, AttributeType::PublicExponent).unwrap_or_default();
                if strip_zeros(&n).len() != 256 || strip_zeros(&e) != [1, 0, 1] {
                    return Err(failed(format!(
                        "RSA public key: a {}-byte modulus, exponent {}",
                        n.len(),
                        hex::encode(&e)
                    )));
                }
            }
            Key::Aes => {
                let attrs = self.attributes(h, &[AttributeType::ValueLen])?;
                if !attrs.contains(&Attribute::ValueLen(32.into())) {
                    return Err(failed(format!("AES key: CKA_VALUE_LEN {attrs:?}")));
                }
            }
        }
        Ok(())
    }

    fn random(&mut self) -> Result<(), NotOk> {
        let r = self
            .s
            .generate_random_vec(32)
            .map_err(|e| failed(format!("C_GenerateRandom: {}", short(&e))))?;
        if r.len() != 32 || r.iter().all(|&b| b == 0) || r == self.last_random {
            return Err(failed(format!("C_GenerateRandom gave {}", hex::encode(&r))));
        }
        self.last_random = r;
        Ok(())
    }

    /// Runs `ops` random operations; a key-gone error drops the worker's cached objects of the key.
    fn run_many(&mut self, ops: usize, strict: bool) -> Stats {
        let mut stats = Stats::default();
        for _ in 0..ops {
            let kind = Kind::ALL[self.below(Kind::ALL.len())];
            let (key, result) = self.run(kind);
            if let (Some(key), Err(NotOk::KeyGone(_) | NotOk::Unavailable)) = (key, &result) {
                self.handles.remove(&key);
            }
            stats.add(kind, &result, strict);
        }
        stats
    }
}

// ------------------------------------------------------------------ the tessera process

#[derive(Default)]
struct ControlStats {
    rotations: usize,
    disables: usize,
    enables: usize,
    failures: Vec<String>,
}

/// `tessera --store DIR <action> --KeyId <alias>`; its JSON answer.
fn tessera(bin: &Path, store: &Path, action: &str, key: Key) -> Result<serde_json::Value, String> {
    let out = Command::new(bin)
        .arg("--store")
        .arg(store)
        .args([action, "--KeyId", &key.alias()])
        .env_remove("TESSERA_PASSPHRASE")
        .env_remove("TESSERA_ROOT_KEY_FILE")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "tessera {action} {}: {}: {}",
            key.alias(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("tessera {action}: not JSON: {e}"))
}

/// Until `stop`: for each key in turn, a new version, disabled, enabled again.
fn control_loop(bin: &Path, store: &Path, stop: &AtomicBool, stats: &Mutex<ControlStats>) {
    let record = |r: Result<serde_json::Value, String>, count: fn(&mut ControlStats) -> &mut usize| {
        let mut s = stats.lock().expect("the stats lock");
        match r {
            Ok(_) => *count(&mut s) += 1,
            Err(e) => s.failures.push(e),
        }
    };
    while !stop.load(Ordering::Relaxed) {
        for key in Key::ALL {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let rotated = tessera(bin, store, "CreateKeyVersion", key).and_then(|v| {
                v.pointer("/KeyVersion/KeyVersionId")
                    .and_then(serde_json::Value::as_str)
                    .map(|_| v.clone())
                    .ok_or_else(|| format!("CreateKeyVersion answered {v}"))
            });
            record(rotated, |s| &mut s.rotations);
            record(tessera(bin, store, "DisableKey", key), |s| &mut s.disables);
            std::thread::sleep(DISABLED_FOR);
            record(tessera(bin, store, "EnableKey", key), |s| &mut s.enables);
            std::thread::sleep(PAUSE);
        }
    }
}

// ------------------------------------------------------------------ end checks

/// The public keys to check the run's signatures and EC points against.
struct PublicKeys {
    /// CKA_ID (the version id for Tessera) → key.
    ec: Vec<(Vec<u8>, p256::ecdsa::VerifyingKey)>,
    rsa: Vec<(Vec<u8>, rsa::PublicKey)>,
}

/// Every version's public key, as kms-core reads it from the store.
fn public_keys_from_store(kms: &Kms) -> PublicKeys {
    let versions = |key: Key| -> Vec<String> {
        let mut ids = Vec::new();
        for page in 1.. {
            let r = kms
                .list_key_versions(&KeyPageRequest {
                    key_id: key.alias(),
                    page_number: Some(page),
                    page_size: Some(100),
                })
                .expect("ListKeyVersions");
            let n = r.key_versions.key_version.len();
            ids.extend(r.key_versions.key_version.into_iter().map(|v| v.key_version_id));
            if n < 100 {
                break;
            }
        }
        ids
    };
    let pem = |key: Key, version: &str| -> String {
        kms.get_public_key(&GetPublicKeyRequest {
            key_id: key.alias(),
            key_version_id: Some(version.to_owned()),
        })
        .expect("GetPublicKey")
        .public_key
    };
    PublicKeys {
        ec: versions(Key::Ec)
            .into_iter()
            .map(|v| {
                let k = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem(Key::Ec, &v)).expect("a P-256 public key");
                (v.into_bytes(), k)
            })
            .collect(),
        rsa: versions(Key::Rsa)
            .into_iter()
            .map(|v| {
                let k = rsa::PublicKey::from_public_key_pem(&pem(Key::Rsa, &v)).expect("an RSA public key");
                (v.into_bytes(), k)
            })
            .collect(),
    }
}

/// The public keys the module shows, every version's (labelled `x` or `x@…`): the truth for
/// SoftHSM2's dry run, and a cross-check for Tessera.
fn public_keys_from_token(s: &Session) -> PublicKeys {
    let all = s
        .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
        .expect("find the public keys");
    let get = |h, t: &[AttributeType]| s.get_attributes(h, t).expect("C_GetAttributeValue");
    let mut keys = PublicKeys {
        ec: Vec::new(),
        rsa: Vec::new(),
    };
    for h in all {
        let a = get(h, &[AttributeType::Label, AttributeType::Id]);
        let label = attr_bytes(&a, AttributeType::Label).unwrap_or_default();
        let id = attr_bytes(&a, AttributeType::Id).unwrap_or_default();
        if label_matches(&label, Key::Ec.label()) {
            let a = get(h, &[AttributeType::EcPoint]);
            let point = attr_bytes(&a, AttributeType::EcPoint).expect("CKA_EC_POINT");
            let k = p256::ecdsa::VerifyingKey::from_sec1_bytes(ec_point(&point)).expect("a P-256 point");
            keys.ec.push((id, k));
        } else if label_matches(&label, Key::Rsa.label()) {
            let a = get(h, &[AttributeType::Modulus, AttributeType::PublicExponent]);
            let n = attr_bytes(&a, AttributeType::Modulus).expect("CKA_MODULUS");
            let e = attr_bytes(&a, AttributeType::PublicExponent).expect("CKA_PUBLIC_EXPONENT");
            let k = rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(&n),
                rsa::BoxedUint::from_be_slice_vartime(&e),
            )
            .expect("an RSA public key");
            keys.rsa.push((id, k));
        }
    }
    keys
}

/// Keys with this CKA_ID first, then the others.
fn ordered<'a, K>(keys: &'a [(Vec<u8>, K)], id: &[u8]) -> impl Iterator<Item = &'a K> {
    let same = keys.iter().filter(move |(i, _)| i.as_slice() == id);
    let other = keys.iter().filter(move |(i, _)| i.as_slice() != id);
    same.chain(other).map(|(_, k)| k)
}

/// Checks every signature and EC point recorded; returns the failures.
fn check_records(records: &Records, keys: &PublicKeys) -> Vec<String> {
    let mut failures = Vec::new();
    for (id, digest, sig) in &records.ecdsa {
        let ok = p256::ecdsa::Signature::from_slice(sig)
            .is_ok_and(|sig| ordered(&keys.ec, id).any(|k| k.verify_prehash(digest, &sig).is_ok()));
        if !ok {
            failures.push(format!(
                "ECDSA signature {} (CKA_ID {}) verifies under no version's public key",
                hex::encode(sig),
                hex::encode(id)
            ));
        }
    }
    for (id, msg, sig) in &records.rsa {
        let ok = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).is_ok_and(|sig| {
            ordered(&keys.rsa, id).any(|k| {
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k.clone())
                    .verify(msg, &sig)
                    .is_ok()
            })
        });
        if !ok {
            failures.push(format!(
                "RSA signature of {:?} (CKA_ID {}) verifies under no version's public key",
                String::from_utf8_lossy(msg),
                hex::encode(id)
            ));
        }
    }
    for (id, point) in &records.ec_points {
        let ok = p256::ecdsa::VerifyingKey::from_sec1_bytes(ec_point(point))
            .is_ok_and(|p| ordered(&keys.ec, id).any(|k| *k == p));
        if !ok {
            failures.push(format!(
                "CKA_EC_POINT {} (CKA_ID {}) is no version's public key",
                hex::encode(point),
                hex::encode(id)
            ));
        }
    }
    failures
}

// ------------------------------------------------------------------ the child

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn run_child(dir: &Path, mode: Mode) {
    let threads = env_usize("TESSERA_STRESS_THREADS", 8);
    let ops = env_usize("TESSERA_STRESS_OPS", 1000);
    let strict = mode == Mode::SoftHsm;
    let store = dir.join("store");
    let started = Instant::now();

    // The test's own view of the store, for the truth about versions and public keys.
    let kms = (mode == Mode::Tessera).then(|| Kms::open(&store).expect("Kms::open on the store"));

    let module = PathBuf::from(std::env::var_os(MODULE_ENV).expect("the module's path"));
    println!("module: {} ({mode:?})", module.display());
    let ctx = Pkcs11::new(&module).expect("load the module");
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = setup_token(&ctx);
    let main = ctx.open_rw_session(slot).expect("C_OpenSession");
    login(&main).expect("C_Login(USER)");
    generate_keys(&main);
    if let Some(kms) = &kms {
        for key in Key::ALL {
            kms.describe_key(&KeyIdRequest::new(key.alias())).unwrap_or_else(|e| {
                panic!(
                    "the token key labelled {} has no alias {}: {e}",
                    key.label(),
                    key.alias()
                )
            });
        }
    }
    println!("set-up: {:.1} s", started.elapsed().as_secs_f64());

    // The tessera process loop, then the workers.
    let stop = AtomicBool::new(false);
    let control = Mutex::new(ControlStats::default());
    let bin = std::env::var_os(BIN_ENV).map(PathBuf::from);
    let barrier = Barrier::new(threads + 1);
    let run_started = Instant::now();
    let (stats, records, during) = std::thread::scope(|s| {
        let controller = (mode == Mode::Tessera).then(|| {
            let bin = bin.as_deref().expect("the tessera binary");
            let (store, stop, control, barrier) = (&store, &stop, &control, &barrier);
            s.spawn(move || {
                barrier.wait();
                control_loop(bin, store, stop, control);
            })
        });
        let workers: Vec<_> = (0..threads)
            .map(|index| {
                let session = ctx.open_rw_session(slot).expect("C_OpenSession");
                let barrier = &barrier;
                s.spawn(move || {
                    login(&session).expect("C_Login(USER) on a worker's session");
                    let mut w = Worker::new(index, session, strict);
                    barrier.wait();
                    let stats = w.run_many(ops, strict);
                    (stats, w.records)
                })
            })
            .collect();
        if controller.is_none() {
            // The workers start together with the tessera loop, or (SoftHSM2) with this thread.
            barrier.wait();
        }
        let mut stats = Stats::default();
        let mut records = Records::default();
        let mut panics = Vec::new();
        for w in workers {
            match w.join() {
                Ok((s, r)) => {
                    stats.merge(s);
                    records.ecdsa.extend(r.ecdsa);
                    records.rsa.extend(r.rsa);
                    records.ec_points.extend(r.ec_points);
                }
                Err(p) => panics.push(format!("{p:?}")),
            }
        }
        let during = {
            let c = control.lock().expect("the control stats");
            (c.rotations, c.disables, c.enables)
        };
        stop.store(true, Ordering::Relaxed);
        if let Some(c) = controller {
            c.join().expect("the tessera loop");
        }
        assert!(panics.is_empty(), "worker threads panicked: {panics:?}");
        (stats, records, during)
    });
    let run_secs = run_started.elapsed().as_secs_f64();

    // Stopped: every key enabled again (the loop leaves them so; make sure).
    let control = control.into_inner().expect("the control stats");
    if let Some(bin) = &bin
        && mode == Mode::Tessera
    {
        for key in Key::ALL {
            tessera(bin, &store, "EnableKey", key).expect("EnableKey after the run");
        }
    }

    // Every kind of operation works again, on a fresh session, with no error allowed.
    let after = {
        let session = ctx.open_rw_session(slot).expect("C_OpenSession");
        login(&session).expect("C_Login(USER)");
        let mut w = Worker::new(threads, session, strict);
        let mut stats = Stats::default();
        for kind in Kind::ALL {
            for _ in 0..5 {
                let (_, result) = w.run(kind);
                stats.add(kind, &result, true);
            }
        }
        stats
    };

    // Signatures and EC points against the public keys.
    let keys = match &kms {
        Some(kms) => public_keys_from_store(kms),
        None => public_keys_from_token(&main),
    };
    let record_failures = check_records(&records, &keys);
    // The token shows one public key per version of each key pair.
    let mut shown = Vec::new();
    if mode == Mode::Tessera {
        let token_keys = public_keys_from_token(&main);
        shown.push((Key::Ec, token_keys.ec.len(), keys.ec.len()));
        shown.push((Key::Rsa, token_keys.rsa.len(), keys.rsa.len()));
    }

    // The report.
    let mut report = String::new();
    let _ = writeln!(
        report,
        "{threads} threads x {ops} operations in {run_secs:.1} s ({mode:?}); the tessera process: {} rotations, {} \
         disables, {} enables during the run ({} / {} / {} in all, {} failed commands)",
        during.0,
        during.1,
        during.2,
        control.rotations,
        control.disables,
        control.enables,
        control.failures.len()
    );
    let _ = writeln!(report, "| operation | ok | key gone | unavailable | failed |");
    let _ = writeln!(report, "|---|---:|---:|---:|---:|");
    for (kind, c) in &stats.by_kind {
        let _ = writeln!(
            report,
            "| {kind:?} | {} | {} | {} | {} |",
            c.ok, c.key_gone, c.unavailable, c.failed
        );
    }
    let total = stats.total();
    let _ = writeln!(
        report,
        "| total | {} | {} | {} | {} |",
        total.ok, total.key_gone, total.unavailable, total.failed
    );
    for (what, n) in &stats.key_gone {
        let _ = writeln!(report, "accepted: {what} x{n}");
    }
    let _ = writeln!(
        report,
        "checked afterwards: {} ECDSA and {} RSA signatures, {} EC points, against {} EC and {} RSA versions",
        records.ecdsa.len(),
        records.rsa.len(),
        records.ec_points.len(),
        keys.ec.len(),
        keys.rsa.len()
    );
    println!("{report}");

    // The verdict.
    let all = threads * ops;
    assert_eq!(
        total.ok + total.key_gone + total.unavailable + total.failed,
        all,
        "every operation counted"
    );
    assert!(
        stats.failures.is_empty(),
        "{} operations failed (first {}):\n{}",
        total.failed,
        stats.failures.len(),
        stats.failures.join("\n")
    );
    assert!(
        total.key_gone + total.unavailable < all,
        "every operation failed (errors {}, unavailable {})",
        total.key_gone,
        total.unavailable
    );
    for kind in Kind::ALL {
        assert!(
            stats.by_kind.get(&kind).is_some_and(|c| c.ok > 0),
            "no {kind:?} succeeded during the run"
        );
    }
    assert!(
        after.failures.is_empty(),
        "after the run, with the keys enabled again:\n{}",
        after.failures.join("\n")
    );
    assert!(
        record_failures.is_empty(),
        "{} signatures or EC points are wrong (first 20):\n{}",
        record_failures.len(),
        record_failures[..record_failures.len().min(20)].join("\n")
    );
    if mode == Mode::Tessera {
        assert!(
            control.failures.is_empty(),
            "tessera commands failed:\n{}",
            control.failures.join("\n")
        );
        assert!(
            during.0 > 0 && during.1 > 0,
            "the tessera process made no rotation or no disable while the workers ran"
        );
        for (key, on_token, in_store) in shown {
            assert_eq!(
                on_token, in_store,
                "{key:?}: the token shows {on_token} public keys for {in_store} versions"
            );
        }
    }

    drop(main);
    ctx.finalize().expect("C_Finalize");
    std::fs::write(dir.join(FINISHED), "ok").expect("write the finished marker");
}

/// The child: runs only in the environment the parent test gives it.
#[test]
#[ignore = "the child process of mixed_operations_on_8_sessions_while_tessera_rotates_and_disables_keys"]
fn stress_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let mode = match std::env::var(MODE_ENV).as_deref() {
        Ok("softhsm") => Mode::SoftHsm,
        _ => Mode::Tessera,
    };
    run_child(Path::new(&dir), mode);
}

// ------------------------------------------------------------------ the parent

/// `target/<profile>`: this test is `target/<profile>/deps/stress-…`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test's directory").to_path_buf();
    if deps.ends_with("deps") {
        deps.parent().map(Path::to_path_buf).unwrap_or(deps)
    } else {
        deps
    }
}

/// The module cargo built with this test (`deps/`; `cargo build` copies it up a level).
fn tessera_module() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_PKCS11_MODULE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    const NAME: &str = "libtessera_pkcs11.so";
    let profile = profile_dir();
    let in_deps = profile.join("deps").join(NAME);
    if in_deps.exists() { in_deps } else { profile.join(NAME) }
}

/// `target/<profile>/tessera`, (re)built first with cargo, a no-op when it is up to date: a
/// `cargo test -p pkcs11-module` alone does not build it, and an old one may not read the store.
fn tessera_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let profile = profile_dir();
    let bin = profile.join("tessera");
    let target = profile.parent().expect("the target directory");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-p", "kms-cli", "--bin", "tessera", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target);
    match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    let built = cmd.output();
    match &built {
        Ok(out) if out.status.success() => {}
        _ if bin.exists() => println!("could not build tessera ({built:?}); using {}", bin.display()),
        Ok(out) => panic!("{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("{cmd:?}: {e}"),
    }
    assert!(bin.exists(), "no {} after building it", bin.display());
    bin
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn mixed_operations_on_8_sessions_while_tessera_rotates_and_disables_keys() {
    let softhsm = std::env::var("TESSERA_STRESS_SOFTHSM").is_ok_and(|v| !v.is_empty() && v != "0");
    let dir = tempfile::Builder::new()
        .prefix("tessera-stress-")
        .tempdir()
        .expect("a temporary directory");
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "stress_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(DIR_ENV, dir.path())
    .env_remove("TESSERA_PASSPHRASE")
    .env_remove("TESSERA_ROOT_KEY_FILE")
    .env_remove("TESSERA_STORE");
    let log = dir.path().join("module.log");
    if softhsm {
        let tokens = dir.path().join("softhsm-tokens");
        std::fs::create_dir_all(&tokens).expect("the token directory");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        cmd.env(MODE_ENV, "softhsm")
            .env(MODULE_ENV, SOFTHSM)
            .env("SOFTHSM2_CONF", &conf);
    } else {
        let module = tessera_module();
        assert!(module.exists(), "no module at {}", module.display());
        let conf = dir.path().join("tessera-pkcs11.toml");
        std::fs::write(
            &conf,
            format!(
                "store = \"{}\"\ngenerate_certs = false\nlog_level = \"warn\"\nlog_file = \"{}\"\n",
                dir.path().join("store").display(),
                log.display()
            ),
        )
        .expect("the module's configuration");
        cmd.env(MODE_ENV, "tessera")
            .env(MODULE_ENV, &module)
            .env(BIN_ENV, tessera_bin())
            .env("TESSERA_PKCS11_CONFIG", &conf);
    }
    let out_path = dir.path().join("child.out");
    let out = std::fs::File::create(&out_path).expect("the child's output file");
    let err = out.try_clone().expect("the child's output file");
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .stdin(Stdio::null())
        .spawn()
        .expect("start the child");
    let timeout = Duration::from_secs(env_usize("TESSERA_STRESS_TIMEOUT_SECS", 900) as u64);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{output}");
    let module_log = std::fs::read_to_string(&log).unwrap_or_default();
    if !module_log.trim().is_empty() {
        println!("the module's log, last 30 lines:\n{}", tail(&module_log, 30));
    }
    let Some(status) = status else {
        panic!(
            "the stress child did not finish in {timeout:?} (a deadlock?); its output ends:\n{}",
            tail(&output, 40)
        );
    };
    assert!(
        status.success(),
        "the stress child failed ({status}; a signal means the module crashed); its output ends:\n{}",
        tail(&output, 60)
    );
    assert!(
        dir.path().join(FINISHED).exists(),
        "the stress child exited without running to its end; its output:\n{}",
        tail(&output, 40)
    );
}
