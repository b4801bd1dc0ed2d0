//! The HSM engine: key versions live in a PKCS#11 token (SoftHSM2 in tests, any HSM in use),
//! reached through the `cryptoki` crate, which loads the vendor module.
//!
//! Each version is generated inside the token as token objects with `CKA_SENSITIVE` true and
//! `CKA_EXTRACTABLE` false, whose `CKA_ID` and `CKA_LABEL` are `tessera/<key id>/<version id>`;
//! that identifier is all the store keeps. Every operation runs in the token.
//!
//! Sessions come from a pool sized to the machine (PKCS#11 logins are per application, so one
//! login serves every session). A call that finds its session or the library gone — the HSM
//! restarted, the token was removed — reconnects once and retries; an HSM that cannot be reached
//! is an [`EngineError::Unavailable`] naming what failed, never a hang.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use parking_lot::{Condvar, Mutex, RwLock};
use zeroize::Zeroizing;

use super::{
    AEAD_TAG_LEN, CipherScheme, Engine, EngineError, HashAlg, KeyHandle, SigEncoding, SignScheme, StoredKey, VersionRef,
};
use crate::model::KeySpec;

/// Where an HSM's user PIN comes from. It is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// An environment variable of the process that uses the store.
    Env(String),
    /// A file (its first line).
    File(PathBuf),
}

impl PinSource {
    /// The stored form: `env:NAME` or `file:/path`.
    pub fn to_stored(&self) -> String {
        match self {
            PinSource::Env(name) => format!("env:{name}"),
            PinSource::File(path) => format!("file:{}", path.display()),
        }
    }

    /// Parses the stored form.
    pub fn from_stored(s: &str) -> Option<PinSource> {
        match s.split_once(':')? {
            ("env", name) if !name.is_empty() => Some(PinSource::Env(name.to_owned())),
            ("file", path) if !path.is_empty() => Some(PinSource::File(PathBuf::from(path))),
            _ => None,
        }
    }

    fn read(&self) -> Result<Zeroizing<String>, EngineError> {
        match self {
            PinSource::Env(name) => std::env::var(name)
                .map(Zeroizing::new)
                .map_err(|_| EngineError::Unavailable(format!("the HSM PIN variable {name} is not set"))),
            PinSource::File(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    EngineError::Unavailable(format!("cannot read the HSM PIN file {}: {e}", path.display()))
                })?);
                Ok(Zeroizing::new(text.lines().next().unwrap_or_default().to_owned()))
            }
        }
    }
}

/// How to reach an HSM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HsmConfig {
    /// The vendor's PKCS#11 module.
    pub module_path: PathBuf,
    /// The token, by label…
    pub token_label: Option<String>,
    /// …or by serial number.
    pub token_serial: Option<String>,
    /// The user PIN's source.
    pub pin: PinSource,
}

/// What `CheckKmsInstance` reports of a reachable HSM.
#[derive(Clone, Debug)]
pub struct HsmStatus {
    /// The library's description.
    pub library: String,
    /// The token's label.
    pub token_label: String,
    /// The token's serial number.
    pub token_serial: String,
    /// The token's model.
    pub token_model: String,
}

/// How long a caller waits for a pooled session before the pool is reported exhausted.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// One loaded library with a logged-in token and its session pool.
struct Connection {
    ctx: Pkcs11,
    slot: Slot,
    generation: u64,
    idle: Mutex<Vec<Session>>,
    /// Sessions open (idle or lent).
    open: Mutex<usize>,
    returned: Condvar,
    max_sessions: usize,
}

impl Connection {
    fn take(&self) -> Result<Session, P11Error> {
        if let Some(s) = self.idle.lock().pop() {
            return Ok(s);
        }
        let mut open = self.open.lock();
        if *open < self.max_sessions {
            *open += 1;
            drop(open);
            return self.ctx.open_rw_session(self.slot).inspect_err(|_| {
                *self.open.lock() -= 1;
            });
        }
        // Every session is lent: wait for one to come back.
        let deadline = std::time::Instant::now() + POOL_WAIT;
        loop {
            if let Some(s) = self.idle.lock().pop() {
                return Ok(s);
            }
            if self.returned.wait_until(&mut open, deadline).timed_out() {
                return Err(P11Error::Pkcs11(
                    RvError::FunctionFailed,
                    cryptoki::context::Function::OpenSession,
                ));
            }
        }
    }

    fn give_back(&self, session: Session) {
        self.idle.lock().push(session);
        self.returned.notify_one();
    }

    fn discard(&self, session: Session) {
        drop(session);
        *self.open.lock() -= 1;
        self.returned.notify_one();
    }
}

/// Errors that mean the connection, not the request, failed.
fn is_connection_error(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::CryptokiNotInitialized
                | RvError::UserNotLoggedIn
                // Handles are per library load: a restarted HSM (or token) invalidates the
                // cached ones, and only a new connection finds the objects again.
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid,
            _
        )
    ) && !is_objects_gone(e)
}

/// What a version whose objects are gone (destroyed behind the KMS's back) answers: a search
/// that found nothing, which no connection reset can mend.
fn objects_gone() -> P11Error {
    P11Error::Pkcs11(RvError::KeyHandleInvalid, cryptoki::context::Function::FindObjects)
}

/// Whether an error is [`objects_gone`] (a module answers CKR_KEY_HANDLE_INVALID to an
/// operation, never to C_FindObjects).
fn is_objects_gone(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(RvError::KeyHandleInvalid, cryptoki::context::Function::FindObjects)
    )
}

/// CKR_GENERAL_ERROR means a lost token to some modules and a bad input to others (SoftHSM2
/// answers it for an OAEP ciphertext that does not decrypt): whether the session still reaches
/// the token decides which.
fn is_general_error(e: &P11Error) -> bool {
    matches!(e, P11Error::Pkcs11(RvError::GeneralError, _))
}

/// Whether a session still reaches its token (a search touches the token's objects).
fn session_works(session: &Session) -> bool {
    session.get_session_info().is_ok() && session.find_objects(&[Attribute::Id(PROBE_ID.to_vec())]).is_ok()
}

/// A CKA_ID no object has, for [`session_works`].
const PROBE_ID: &[u8] = b"tessera/probe";

fn request_error(e: P11Error) -> EngineError {
    match e {
        P11Error::Pkcs11(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange, _) => EngineError::Crypto,
        P11Error::Pkcs11(RvError::DataLenRange | RvError::DataInvalid, _) => {
            EngineError::InvalidInput("the data does not fit the key")
        }
        // Our parameters are well-formed, so an HSM that calls them bad does not implement them
        // (SoftHSM2 2.6 has OAEP with SHA-1 only and answers CKR_ARGUMENTS_BAD for SHA-256).
        P11Error::Pkcs11(RvError::MechanismInvalid | RvError::MechanismParamInvalid | RvError::ArgumentsBad, _) => {
            EngineError::Unsupported("this mechanism on this HSM")
        }
        other => EngineError::Backend(format!("HSM: {other}")),
    }
}

/// The PIN each token (module path and slot) was logged in with by this process, as a salted
/// SHA-256 under a per-process salt: the login state of a token is shared by every session of
/// the process, so a second login is answered CKR_USER_ALREADY_LOGGED_IN whatever its PIN.
static LOGINS: Mutex<Vec<(String, [u8; 32])>> = Mutex::new(Vec::new());

fn login_digest(pin: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    static SALT: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let mut salt = [0u8; 16];
        // Without OS randomness the salt is fixed; the digest never leaves this process anyway.
        let _ = getrandom::fill(&mut salt);
        salt
    });
    let mut h = sha2::Sha256::new();
    h.update(salt);
    h.update(pin);
    h.finalize().into()
}

fn remember_login(token: &str, pin: &[u8]) {
    let digest = login_digest(pin);
    let mut logins = LOGINS.lock();
    logins.retain(|(t, _)| t != token);
    logins.push((token.to_owned(), digest));
}

fn same_login(token: &str, pin: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let digest = login_digest(pin);
    LOGINS
        .lock()
        .iter()
        .any(|(t, d)| t == token && bool::from(d.ct_eq(&digest)))
}

/// The shared state of an HSM engine and the handles it loaded.
struct Inner {
    config: HsmConfig,
    conn: RwLock<Option<Arc<Connection>>>,
    generations: AtomicU64,
    max_sessions: usize,
}

impl Inner {
    fn connect(&self) -> Result<Arc<Connection>, EngineError> {
        if let Some(c) = self.conn.read().as_ref() {
            return Ok(Arc::clone(c));
        }
        let mut slot = self.conn.write();
        if let Some(c) = slot.as_ref() {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(self.open_connection()?);
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    fn open_connection(&self) -> Result<Connection, EngineError> {
        let path = &self.config.module_path;
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            EngineError::Unavailable(format!("{what} ({}): {e}", path.display()))
        };
        if !path.is_file() {
            return Err(EngineError::Unavailable(format!(
                "the HSM module {} does not exist",
                path.display()
            )));
        }
        let ctx = Pkcs11::new(path).map_err(|e| unavailable("cannot load the HSM module", &e))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(unavailable("the HSM module does not initialise", &e)),
        }
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| unavailable("cannot list the HSM's slots", &e))?;
        let wanted = |info: &cryptoki::slot::TokenInfo| {
            self.config
                .token_label
                .as_deref()
                .is_none_or(|l| info.label().trim_end() == l)
                && self
                    .config
                    .token_serial
                    .as_deref()
                    .is_none_or(|s| info.serial_number().trim_end() == s)
        };
        let slot = slots
            .into_iter()
            .find(|s| ctx.get_token_info(*s).is_ok_and(|info| wanted(&info)))
            .ok_or_else(|| {
                EngineError::Unavailable(format!(
                    "no token {} in the HSM module {}",
                    self.config
                        .token_label
                        .as_deref()
                        .map(|l| format!("labelled {l:?}"))
                        .or_else(|| self
                            .config
                            .token_serial
                            .as_deref()
                            .map(|s| format!("with serial {s:?}")))
                        .unwrap_or_default(),
                    path.display()
                ))
            })?;
        let pin = self.config.pin.read()?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| unavailable("cannot open a session with the HSM", &e))?;
        let token = format!("{}#{}", path.display(), slot.id());
        match session.login(UserType::User, Some(&AuthPin::from(pin.as_str()))) {
            Ok(()) => remember_login(&token, pin.as_bytes()),
            // The token was logged in already (by another instance of this process on the same
            // token): PKCS#11 does not check the PIN then, so we compare it with the one that did.
            Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                if !same_login(&token, pin.as_bytes()) {
                    return Err(EngineError::Unavailable(format!(
                        "the HSM token is logged in with another PIN than the one from {}",
                        self.config.pin.to_stored()
                    )));
                }
            }
            Err(P11Error::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(EngineError::Unavailable(format!(
                    "the HSM refused the PIN from {}",
                    self.config.pin.to_stored()
                )));
            }
            Err(e) => return Err(unavailable("cannot log in to the HSM", &e)),
        }
        Ok(Connection {
            ctx,
            slot,
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            idle: Mutex::new(vec![session]),
            open: Mutex::new(1),
            returned: Condvar::new(),
            max_sessions: self.max_sessions,
        })
    }

    /// Forgets a connection that failed (if it is still the current one).
    fn reset(&self, failed: &Connection) {
        let mut slot = self.conn.write();
        if slot.as_ref().is_some_and(|c| c.generation == failed.generation) {
            *slot = None;
        }
    }

    /// Runs `f` with a pooled session; reconnects and retries once if the connection failed.
    fn with_session<T>(&self, f: impl Fn(&Session, &Connection) -> Result<T, P11Error>) -> Result<T, EngineError> {
        let mut last = None;
        for _ in 0..2 {
            let conn = self.connect()?;
            let session = match conn.take() {
                Ok(s) => s,
                Err(e) if is_connection_error(&e) => {
                    self.reset(&conn);
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(EngineError::Unavailable(format!("no HSM session: {e}"))),
            };
            match f(&session, &conn) {
                Err(e) if is_connection_error(&e) || (is_general_error(&e) && !session_works(&session)) => {
                    conn.discard(session);
                    self.reset(&conn);
                    last = Some(e);
                }
                other => {
                    conn.give_back(session);
                    return other.map_err(request_error);
                }
            }
        }
        Err(EngineError::Unavailable(format!(
            "the HSM ({}) failed twice: {}",
            self.config.module_path.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }
}

/// The HSM engine of one hardware instance.
pub struct HsmEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HsmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmEngine")
            .field("module", &self.inner.config.module_path)
            .finish_non_exhaustive()
    }
}

impl HsmEngine {
    /// An engine for the HSM `config` names; it connects at first use.
    pub fn new(config: HsmConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        HsmEngine {
            inner: Arc::new(Inner {
                config,
                conn: RwLock::new(None),
                generations: AtomicU64::new(0),
                max_sessions: (2 * cores).clamp(4, 32),
            }),
        }
    }

    /// Connects (if needed) and describes the HSM.
    pub fn status(&self) -> Result<HsmStatus, EngineError> {
        let conn = self.inner.connect()?;
        let info = conn.ctx.get_library_info().map_err(request_error)?;
        let token = conn.ctx.get_token_info(conn.slot).map_err(request_error)?;
        Ok(HsmStatus {
            library: info.library_description().trim_end().to_owned(),
            token_label: token.label().trim_end().to_owned(),
            token_serial: token.serial_number().trim_end().to_owned(),
            token_model: token.model().trim_end().to_owned(),
        })
    }
}

/// `tessera/<key id>/<version id>`: the CKA_ID and CKA_LABEL of a version's objects.
fn object_id(version: VersionRef<'_>) -> Vec<u8> {
    format!("tessera/{}/{}", version.key_id, version.version_id).into_bytes()
}

/// DER of the named-curve OID of an EC spec.
fn ec_params(spec: KeySpec) -> Option<Vec<u8>> {
    match spec {
        KeySpec::EcP256 => Some(vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        KeySpec::EcP256K => Some(vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]),
        _ => None,
    }
}

fn rsa_bits(spec: KeySpec) -> Option<u64> {
    match spec {
        KeySpec::Rsa2048 => Some(2048),
        KeySpec::Rsa3072 => Some(3072),
        KeySpec::Rsa4096 => Some(4096),
        _ => None,
    }
}

fn aes_len(spec: KeySpec) -> Option<u64> {
    match spec {
        KeySpec::Aes128 => Some(16),
        KeySpec::Aes192 => Some(24),
        KeySpec::Aes256 => Some(32),
        _ => None,
    }
}

fn mechanism_hash(hash: HashAlg) -> (MechanismType, PkcsMgfType) {
    match hash {
        HashAlg::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        HashAlg::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        HashAlg::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
        HashAlg::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
    }
}

/// The DER DigestInfo prefix of a hash (RFC 8017 9.2 note 1).
fn digest_info_prefix(hash: HashAlg) -> &'static [u8] {
    match hash {
        HashAlg::Sha1 => &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
        ],
        HashAlg::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
            0x20,
        ],
        HashAlg::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04,
            0x30,
        ],
        HashAlg::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04,
            0x40,
        ],
    }
}

impl Engine for HsmEngine {
    fn name(&self) -> &'static str {
        "hsm"
    }

    fn stored_keys_are_secret(&self) -> bool {
        false
    }

    fn ready(&self) -> Result<(), EngineError> {
        self.inner.connect().map(|_| ())
    }

    fn supports(&self, spec: KeySpec) -> bool {
        let needed: &[MechanismType] = match spec {
            KeySpec::Aes128 | KeySpec::Aes192 | KeySpec::Aes256 => {
                &[MechanismType::AES_KEY_GEN, MechanismType::AES_GCM]
            }
            KeySpec::EcP256 | KeySpec::EcP256K => &[MechanismType::ECC_KEY_PAIR_GEN, MechanismType::ECDSA],
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &[
                MechanismType::RSA_PKCS_KEY_PAIR_GEN,
                MechanismType::RSA_PKCS,
                MechanismType::RSA_PKCS_PSS,
                MechanismType::RSA_PKCS_OAEP,
            ],
            // No standard PKCS#11 mechanisms exist for SM2 and SM4.
            KeySpec::Sm4 | KeySpec::EcSm2 => return false,
        };
        let Ok(conn) = self.inner.connect() else {
            return false;
        };
        // Ask about each mechanism rather than list them all: cryptoki logs an error for every
        // listed mechanism it has no name for.
        needed
            .iter()
            .all(|m| conn.ctx.get_mechanism_info(conn.slot, *m).is_ok())
    }

    fn generate(&self, spec: KeySpec, version: VersionRef<'_>) -> Result<StoredKey, EngineError> {
        let id = object_id(version);
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Id(id.clone()),
                Attribute::Label(id.clone()),
            ]
        };
        let secret = |mut attrs: Vec<Attribute>| {
            attrs.extend([
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Modifiable(false),
            ]);
            attrs
        };
        if let Some(len) = aes_len(spec) {
            let mut attrs = secret(common(true));
            attrs.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(len.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ]);
            self.inner
                .with_session(|s, _| s.generate_key(&Mechanism::AesKeyGen, &attrs))?;
        } else if let Some(params) = ec_params(spec) {
            let mut public = common(false);
            public.extend([Attribute::EcParams(params), Attribute::Verify(true)]);
            let mut private = secret(common(true));
            private.push(Attribute::Sign(true));
            self.inner
                .with_session(|s, _| s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private))?;
        } else if let Some(bits) = rsa_bits(spec) {
            let mut public = common(false);
            public.extend([
                Attribute::ModulusBits(bits.into()),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                Attribute::Verify(true),
                Attribute::Encrypt(true),
            ]);
            let mut private = secret(common(true));
            private.extend([Attribute::Sign(true), Attribute::Decrypt(true)]);
            self.inner
                .with_session(|s, _| s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private))?;
        } else {
            return Err(EngineError::Unsupported("SM2 and SM4 in an HSM"));
        }
        Ok(Zeroizing::new(id))
    }

    fn load(&self, spec: KeySpec, _version: VersionRef<'_>, stored: &[u8]) -> Result<Arc<dyn KeyHandle>, EngineError> {
        if !stored.starts_with(b"tessera/") {
            return Err(EngineError::BadStoredKey);
        }
        Ok(Arc::new(HsmKey {
            inner: Arc::clone(&self.inner),
            spec,
            id: stored.to_vec(),
            objects: RwLock::new(None),
            public_der: std::sync::OnceLock::new(),
        }))
    }

    fn destroy(&self, _version: VersionRef<'_>, stored: &[u8]) -> Result<(), EngineError> {
        self.inner.with_session(|s, _| {
            for object in s.find_objects(&[Attribute::Id(stored.to_vec())])? {
                s.destroy_object(object)?;
            }
            Ok(())
        })
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), EngineError> {
        let filled = self.inner.with_session(|s, _| {
            let mut buf = Zeroizing::new(vec![0u8; out.len()]);
            s.generate_random_slice(&mut buf)?;
            Ok(buf)
        })?;
        out.copy_from_slice(&filled);
        Ok(())
    }
}

/// The token objects of a version, found once per connection.
#[derive(Clone, Copy)]
struct Objects {
    generation: u64,
    /// The secret or private key.
    key: ObjectHandle,
    /// The public key, for key pairs.
    public: Option<ObjectHandle>,
}

/// A version whose key lives in the HSM.
struct HsmKey {
    inner: Arc<Inner>,
    spec: KeySpec,
    id: Vec<u8>,
    objects: RwLock<Option<Objects>>,
    public_der: std::sync::OnceLock<Vec<u8>>,
}

impl HsmKey {
    /// The version's objects on this connection (handles change when the library restarts).
    fn objects(&self, session: &Session, conn: &Connection) -> Result<Objects, P11Error> {
        if let Some(o) = *self.objects.read()
            && o.generation == conn.generation
        {
            return Ok(o);
        }
        let find = |class| -> Result<Option<ObjectHandle>, P11Error> {
            Ok(session
                .find_objects(&[Attribute::Class(class), Attribute::Id(self.id.clone())])?
                .into_iter()
                .next())
        };
        let (key, public) = if self.spec.is_symmetric() {
            (find(ObjectClass::SECRET_KEY)?, None)
        } else {
            (find(ObjectClass::PRIVATE_KEY)?, find(ObjectClass::PUBLIC_KEY)?)
        };
        // A version whose objects are gone (destroyed behind the KMS's back) cannot work.
        let key = key.ok_or_else(objects_gone)?;
        let found = Objects {
            generation: conn.generation,
            key,
            public,
        };
        *self.objects.write() = Some(found);
        Ok(found)
    }

    fn public_object(objects: &Objects) -> Result<ObjectHandle, P11Error> {
        objects.public.ok_or_else(objects_gone)
    }

    /// The raw `r || s` of a DER ECDSA signature, if it is one for this curve.
    fn ecdsa_raw(&self, der: &[u8]) -> Option<Vec<u8>> {
        match self.spec {
            KeySpec::EcP256 => p256::ecdsa::Signature::from_der(der).ok().map(|s| s.to_vec()),
            KeySpec::EcP256K => k256::ecdsa::Signature::from_der(der).ok().map(|s| s.to_vec()),
            _ => None,
        }
    }

    /// A DER ECDSA signature from `r || s`, in low-S form (secp256k1 verifiers take no other).
    fn ecdsa_der(&self, raw: &[u8]) -> Result<Vec<u8>, EngineError> {
        match self.spec {
            KeySpec::EcP256 => {
                p256::ecdsa::Signature::from_slice(raw).map(|s| s.normalize_s().to_der().as_bytes().to_vec())
            }
            KeySpec::EcP256K => {
                k256::ecdsa::Signature::from_slice(raw).map(|s| s.normalize_s().to_der().as_bytes().to_vec())
            }
            _ => return Err(EngineError::Unsupported("ECDSA with this key spec")),
        }
        .map_err(|_| EngineError::Backend("the HSM returned a malformed ECDSA signature".into()))
    }

    /// The mechanism and the data a signature scheme hands the HSM.
    fn sign_input(&self, scheme: SignScheme, data: &[u8]) -> Result<(Mechanism<'static>, Vec<u8>), EngineError> {
        let rsa = rsa_bits(self.spec).is_some();
        let check = |hash: HashAlg| {
            if data.len() == hash.digest_len() {
                Ok(())
            } else {
                Err(EngineError::InvalidInput("the digest length does not match its hash"))
            }
        };
        match scheme {
            SignScheme::Ecdsa(_) if ec_params(self.spec).is_some() => Ok((Mechanism::Ecdsa, data.to_vec())),
            SignScheme::RsaPkcs1(None) if rsa => Ok((Mechanism::RsaPkcs, data.to_vec())),
            SignScheme::RsaPkcs1(Some(hash)) if rsa => {
                check(hash)?;
                Ok((Mechanism::RsaPkcs, [digest_info_prefix(hash), data].concat()))
            }
            SignScheme::RsaPss { hash, salt_len } if rsa => {
                check(hash)?;
                let (hash_alg, mgf) = mechanism_hash(hash);
                let s_len = salt_len.unwrap_or(hash.digest_len()) as u64;
                Ok((
                    Mechanism::RsaPkcsPss(PkcsPssParams {
                        hash_alg,
                        mgf,
                        s_len: s_len.into(),
                    }),
                    data.to_vec(),
                ))
            }
            _ => Err(EngineError::Unsupported("this signature scheme with this key spec")),
        }
    }
}

impl KeyHandle for HsmKey {
    fn spec(&self) -> KeySpec {
        self.spec
    }

    fn seal_in_place(&self, iv: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; AEAD_TAG_LEN], EngineError> {
        if !self.spec.is_symmetric() {
            return Err(EngineError::Unsupported("symmetric encryption"));
        }
        let sealed = self.inner.with_session(|s, c| {
            let key = self.objects(s, c)?.key;
            let mut iv = iv.to_vec();
            let params = GcmParams::new(&mut iv, aad, 128.into())?;
            s.encrypt(&Mechanism::AesGcm(params), key, buf)
        })?;
        let (body, tag) = sealed
            .split_at_checked(buf.len())
            .ok_or_else(|| EngineError::Backend("the HSM returned a short AES-GCM ciphertext".into()))?;
        buf.copy_from_slice(body);
        tag.try_into()
            .map_err(|_| EngineError::Backend("the HSM returned an AES-GCM tag of another size".into()))
    }

    fn open_in_place(&self, iv: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), EngineError> {
        if !self.spec.is_symmetric() {
            return Err(EngineError::Unsupported("symmetric decryption"));
        }
        let sealed = [&*buf, tag].concat();
        let opened = Zeroizing::new(self.inner.with_session(|s, c| {
            let key = self.objects(s, c)?.key;
            let mut iv = iv.to_vec();
            let params = GcmParams::new(&mut iv, aad, 128.into())?;
            s.decrypt(&Mechanism::AesGcm(params), key, &sealed)
        })?);
        if opened.len() != buf.len() {
            return Err(EngineError::Crypto);
        }
        buf.copy_from_slice(&opened);
        Ok(())
    }

    fn sign(&self, scheme: SignScheme, data: &[u8]) -> Result<Vec<u8>, EngineError> {
        let (mechanism, input) = self.sign_input(scheme, data)?;
        let signature = self.inner.with_session(|s, c| {
            let key = self.objects(s, c)?.key;
            s.sign(&mechanism, key, &input)
        })?;
        match scheme {
            SignScheme::Ecdsa(SigEncoding::Der) => self.ecdsa_der(&signature),
            _ => Ok(signature),
        }
    }

    fn verify(&self, scheme: SignScheme, data: &[u8], signature: &[u8]) -> Result<bool, EngineError> {
        let (mechanism, input) = self.sign_input(scheme, data)?;
        let signature = match scheme {
            SignScheme::Ecdsa(SigEncoding::Der) => match self.ecdsa_raw(signature) {
                Some(raw) => raw,
                None => return Ok(false),
            },
            _ => signature.to_vec(),
        };
        let verified = self.inner.with_session(|s, c| {
            let public = Self::public_object(&self.objects(s, c)?)?;
            match s.verify(&mechanism, public, &input, &signature) {
                Ok(()) => Ok(true),
                Err(P11Error::Pkcs11(RvError::SignatureInvalid | RvError::SignatureLenRange, _)) => Ok(false),
                Err(e) => Err(e),
            }
        });
        match verified {
            // An ECDSA signature whose s is high verifies in low-S form too (the HSM may check either).
            Ok(false) if matches!(scheme, SignScheme::Ecdsa(_)) && signature.len() == 64 => {
                let low = self.ecdsa_der(&signature).ok().and_then(|der| self.ecdsa_raw(&der));
                match low {
                    Some(low) if low != signature => self.inner.with_session(|s, c| {
                        let public = Self::public_object(&self.objects(s, c)?)?;
                        Ok(s.verify(&mechanism, public, &input, &low).is_ok())
                    }),
                    _ => Ok(false),
                }
            }
            other => other,
        }
    }

    fn encrypt_with(&self, scheme: CipherScheme, plaintext: &[u8]) -> Result<Vec<u8>, EngineError> {
        let CipherScheme::RsaOaep(hash) = scheme else {
            return Err(EngineError::Unsupported("this cipher scheme with this key spec"));
        };
        let Some(bits) = rsa_bits(self.spec) else {
            return Err(EngineError::Unsupported("this cipher scheme with this key spec"));
        };
        // RFC 8017 7.1.1: at most k - 2hLen - 2 bytes. Checked here because HSMs answer a longer
        // message with anything from CKR_DATA_LEN_RANGE to CKR_GENERAL_ERROR.
        let most = usize::try_from(bits / 8)
            .unwrap_or(0)
            .saturating_sub(2 * hash.digest_len() + 2);
        if plaintext.len() > most {
            return Err(EngineError::InvalidInput("the plaintext is too long for this key"));
        }
        let (hash_alg, mgf) = mechanism_hash(hash);
        self.inner
            .with_session(|s, c| {
                let public = Self::public_object(&self.objects(s, c)?)?;
                let params = PkcsOaepParams::new(hash_alg, mgf, PkcsOaepSource::empty());
                s.encrypt(&Mechanism::RsaPkcsOaep(params), public, plaintext)
            })
            .map_err(|e| match e {
                EngineError::Crypto => EngineError::InvalidInput("the plaintext is too long for this key"),
                other => other,
            })
    }

    fn decrypt_with(&self, scheme: CipherScheme, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        let CipherScheme::RsaOaep(hash) = scheme else {
            return Err(EngineError::Unsupported("this cipher scheme with this key spec"));
        };
        if rsa_bits(self.spec).is_none() {
            return Err(EngineError::Unsupported("this cipher scheme with this key spec"));
        }
        let (hash_alg, mgf) = mechanism_hash(hash);
        self.inner
            .with_session(|s, c| {
                let key = self.objects(s, c)?.key;
                let params = PkcsOaepParams::new(hash_alg, mgf, PkcsOaepSource::empty());
                s.decrypt(&Mechanism::RsaPkcsOaep(params), key, ciphertext)
            })
            .map(Zeroizing::new)
            .map_err(|e| match e {
                // Every failure to decrypt looks the same: no padding oracle.
                EngineError::InvalidInput(_) | EngineError::Backend(_) => EngineError::Crypto,
                other => other,
            })
    }

    fn public_key_der(&self) -> Result<Vec<u8>, EngineError> {
        if let Some(der) = self.public_der.get() {
            return Ok(der.clone());
        }
        if self.spec.is_symmetric() {
            return Err(EngineError::Unsupported("public key of a symmetric key"));
        }
        let rsa = rsa_bits(self.spec).is_some();
        let wanted = if rsa {
            vec![AttributeType::Modulus, AttributeType::PublicExponent]
        } else {
            vec![AttributeType::EcPoint]
        };
        let attributes = self.inner.with_session(|s, c| {
            let public = Self::public_object(&self.objects(s, c)?)?;
            s.get_attributes(public, &wanted)
        })?;
        let der = public_der(self.spec, &attributes)?;
        Ok(self.public_der.get_or_init(|| der).clone())
    }
}

/// A DER SubjectPublicKeyInfo from a public key object's attributes.
fn public_der(spec: KeySpec, attributes: &[Attribute]) -> Result<Vec<u8>, EngineError> {
    use p256::pkcs8::EncodePublicKey;
    let bad = || EngineError::Backend("the HSM's public key object is not readable".into());
    let encode = |doc: Result<p256::pkcs8::Document, _>| {
        doc.map(|d| d.as_bytes().to_vec())
            .map_err(|_: p256::pkcs8::spki::Error| bad())
    };
    if rsa_bits(spec).is_some() {
        let (mut n, mut e) = (None, None);
        for a in attributes {
            match a {
                Attribute::Modulus(v) => n = Some(v.clone()),
                Attribute::PublicExponent(v) => e = Some(v.clone()),
                _ => {}
            }
        }
        let (n, e) = n.zip(e).ok_or_else(bad)?;
        let n = rsa::BoxedUint::from_be_slice_vartime(&n);
        let e = rsa::BoxedUint::from_be_slice_vartime(&e);
        let key = rsa::PublicKey::new(n, e).map_err(|_| bad())?;
        return encode(key.to_public_key_der());
    }
    let point = attributes
        .iter()
        .find_map(|a| match a {
            Attribute::EcPoint(v) => Some(v.as_slice()),
            _ => None,
        })
        .ok_or_else(bad)?;
    // CKA_EC_POINT is the point inside a DER OCTET STRING (most tokens) or the bare point.
    let point = match point {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        other => other,
    };
    match spec {
        KeySpec::EcP256 => encode(
            p256::PublicKey::from_sec1_bytes(point)
                .map_err(|_| bad())?
                .to_public_key_der(),
        ),
        KeySpec::EcP256K => encode(
            k256::PublicKey::from_sec1_bytes(point)
                .map_err(|_| bad())?
                .to_public_key_der(),
        ),
        _ => Err(EngineError::Unsupported("public keys of this spec in an HSM")),
    }
}
