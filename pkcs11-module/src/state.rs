//! The module's state between `C_Initialize` and `C_Finalize`: the KMS, the sessions, the login,
//! the object handles, and the caches of public keys and certificates.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use cryptoki_sys::*;
use kms_core::engine::{CipherScheme, SignScheme};
use kms_core::model::{KeySpec, KeyUsage};
use kms_core::policy::Principal;
use kms_core::{CallerContext, Kms, KmsOptions, TokenView};
use parking_lot::{Mutex, RwLock};
use zeroize::Zeroizing;

use crate::cert::{self, Certificate};
use crate::config::Config;
use crate::error::{Ckr, Result};
use crate::mechanisms::{Gcm, Hasher, Input};
use crate::objects::{Kind, Object, ObjectView, Objects, PublicParts, SessionKey, TokenObject};
use smallvec::SmallVec;

/// The one slot's id.
pub const SLOT_ID: CK_SLOT_ID = 0;

/// Who is logged in (application-wide, as PKCS#11 has it).
#[derive(Default)]
pub enum Login {
    /// Nobody: public sessions.
    #[default]
    Public,
    /// The normal user, acting as a principal (by the PIN it logged in with).
    User(Arc<CallerContext>),
    /// The security officer; the PIN is kept (zeroized on logout) because C_InitPIN takes only
    /// the new user PIN, and the KMS sets one only on the authority of the SO PIN.
    SecurityOfficer(Zeroizing<Vec<u8>>),
}

/// The login state, with what every call asks of it kept where reading it is cheap.
///
/// Transitions (C_Login, C_Logout, the last session closing) take the lock; the crypto and find
/// paths read only the two mirrors, which move with each transition, because a lock or an `Arc`
/// clone read by every call on every thread bounces a cache line between the cores.
pub struct LoginState {
    state: RwLock<Login>,
    /// Whom calls act as now: the logged-in user's principal, else the default one.
    acting: ArcSwap<CallerContext>,
    /// Whether the normal user is logged in.
    user: AtomicBool,
    default_caller: Arc<CallerContext>,
}

impl LoginState {
    fn new(default_caller: Arc<CallerContext>) -> LoginState {
        LoginState {
            state: RwLock::new(Login::Public),
            acting: ArcSwap::new(Arc::clone(&default_caller)),
            user: AtomicBool::new(false),
            default_caller,
        }
    }

    /// The state, for a decision that needs more than the mirrors.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Login> {
        self.state.read()
    }

    /// Changes the state.
    pub fn set(&self, login: Login) {
        let mut state = self.state.write();
        self.mirror(&login);
        *state = login;
    }

    /// Logs out; false if nobody was logged in.
    pub fn logout(&self) -> bool {
        let mut state = self.state.write();
        if matches!(*state, Login::Public) {
            return false;
        }
        self.mirror(&Login::Public);
        *state = Login::Public;
        true
    }

    /// Keeps a changed SO PIN (C_SetPIN by the logged-in SO).
    pub fn keep_so_pin(&self, pin: &[u8]) {
        if let Login::SecurityOfficer(kept) = &mut *self.state.write() {
            *kept = Zeroizing::new(pin.to_vec());
        }
    }

    /// Moves the mirrors to `login`, in the order that never shows a reader the user flag with
    /// the wrong principal: logging in sets the principal before the flag, logging out clears the
    /// flag before the principal.
    fn mirror(&self, login: &Login) {
        match login {
            Login::User(caller) => {
                self.acting.store(Arc::clone(caller));
                self.user.store(true, Ordering::Release);
            }
            _ => {
                self.user.store(false, Ordering::Release);
                self.acting.store(Arc::clone(&self.default_caller));
            }
        }
    }

    /// Whom the token's user PIN, and public sessions, act as.
    pub fn default_caller(&self) -> &Arc<CallerContext> {
        &self.default_caller
    }

    /// Whom calls act as now.
    pub fn acting(&self) -> arc_swap::Guard<Arc<CallerContext>> {
        self.acting.load()
    }

    /// Whether the normal user is logged in.
    pub fn user_logged_in(&self) -> bool {
        self.user.load(Ordering::Acquire)
    }
}

/// Open sessions by handle.
type SessionTable = HashMap<CK_SESSION_HANDLE, Arc<SessionCell>>;

/// A session, alone on its cache lines: each thread works its own session at a high rate, and
/// a session sharing a line with its neighbour (the next session, the session table) made two
/// threads' calls bounce that line between the cores (find-by-label scaled 1.5x on 2 threads).
#[repr(align(128))]
pub struct SessionCell {
    session: Mutex<Session>,
    /// Opened read-only (fixed for the session's life, so read without its lock).
    read_only: bool,
}

impl std::ops::Deref for SessionCell {
    type Target = Mutex<Session>;

    fn deref(&self) -> &Mutex<Session> {
        &self.session
    }
}

/// The key an operation uses.
#[derive(Clone)]
pub enum Target {
    /// A version of a KMS key.
    Token {
        /// The key.
        key_id: Arc<str>,
        /// The version.
        version_id: Arc<str>,
    },
    /// A session key.
    Session(Arc<SessionKey>),
}

/// The key an operation uses, resolved at its C_*Init.
#[derive(Clone)]
pub enum UseTarget {
    /// A version of a KMS key, resolved once: while the store does not change, each C_Sign or
    /// C_Encrypt that follows goes straight to the loaded key (still authorized and audited).
    /// The `Arc` is the session's own (see [`Session::resolved`]): cloning it for each
    /// operation touches no cache line another thread's session uses.
    Token(Arc<kms_core::TokenVersion>),
    /// A session key.
    Session(Arc<SessionKey>),
}

/// The token key a session used last, kept for its next C_*Init on the same handle.
pub struct ResolvedKey {
    handle: CK_OBJECT_HANDLE,
    kind: Kind,
    version: Arc<kms_core::TokenVersion>,
}

/// A key chosen for an operation.
#[derive(Clone)]
pub struct KeyUse {
    /// Where it is.
    pub target: UseTarget,
    /// Its spec.
    pub spec: KeySpec,
}

/// A sign or verify operation.
pub struct SignOp {
    /// The key.
    pub key: KeyUse,
    /// The engine scheme.
    pub scheme: SignScheme,
    /// The data so far.
    pub input: Input,
    /// The signature, once made (kept across length queries so that one is made once).
    pub output: Option<Vec<u8>>,
}

/// What a cipher operation does.
#[derive(Clone)]
pub enum Cipher {
    /// AES-GCM or SM4-GCM.
    Gcm(Gcm),
    /// RSA-OAEP or SM2 encryption.
    Asymmetric(CipherScheme),
}

/// An encrypt or decrypt operation. Data is kept until the final call: GCM's tag covers all of
/// it, and decryption releases nothing before the tag is checked.
pub struct CipherOp {
    /// The key.
    pub key: KeyUse,
    /// How.
    pub cipher: Cipher,
    /// The input so far.
    pub data: Zeroizing<Vec<u8>>,
    /// The output, once made.
    pub output: Option<CipherOutput>,
}

/// A cipher operation's result: ciphertext needs no wiping, plaintext does.
pub enum CipherOutput {
    /// Ciphertext.
    Public(Vec<u8>),
    /// Plaintext.
    Secret(Zeroizing<Vec<u8>>),
}

impl CipherOutput {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            CipherOutput::Public(v) => v,
            CipherOutput::Secret(v) => v,
        }
    }
}

/// A digest operation.
pub struct DigestOp {
    /// The running hash.
    pub hasher: Option<Hasher>,
    /// The digest, once made.
    pub output: Option<Vec<u8>>,
}

/// Found handles, kept in the session itself up to a few: a session's memory is its own cache
/// lines (see [`SessionCell`]), while small heap buffers share lines with whatever the allocator
/// put next to them — another thread's session's, when both were made on one thread.
pub type HandleList = SmallVec<[CK_OBJECT_HANDLE; 8]>;

/// An object search.
pub struct Find {
    /// The matches.
    pub handles: HandleList,
    /// How many were returned.
    pub pos: usize,
}

/// A session.
pub struct Session {
    /// Its handle.
    pub handle: CK_SESSION_HANDLE,
    /// Read/write.
    pub rw: bool,
    /// A search in progress.
    pub find: Option<Find>,
    /// A signature in progress.
    pub sign: Option<SignOp>,
    /// A verification in progress.
    pub verify: Option<SignOp>,
    /// An encryption in progress.
    pub encrypt: Option<CipherOp>,
    /// A decryption in progress.
    pub decrypt: Option<CipherOp>,
    /// A digest in progress.
    pub digest: Option<DigestOp>,
    /// The token key this session's last C_*Init resolved: the next one on the same handle
    /// reuses it while the store has not changed (most sessions use one key over and over).
    pub resolved: Option<ResolvedKey>,
    /// The token snapshot this session's last C_FindObjectsInit used, used again while the store
    /// has not changed (this session's own reference: no shared count to move).
    pub view: Option<Arc<TokenView>>,
    /// The last finished find's array, kept for the next find to fill.
    pub spare_handles: HandleList,
    /// The last search and its answer (applications often look their key up by label before
    /// every operation).
    pub last_find: LastFind,
    /// The last encryption's output array, kept for the next one (ciphertext only: decrypted
    /// data is wiped, never kept).
    pub spare_ciphertext: Vec<u8>,
}

/// What a search's answer depends on besides its template.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FindAsked {
    /// The token snapshot's epoch (the keys, versions and labels on the token).
    pub epoch: u64,
    /// Whether the user was logged in (private objects are found only then).
    pub user: bool,
    /// The session objects' generation (they come and go without the store changing).
    pub session_objects: u64,
}

/// A session's last search and the handles it found, answered again while nothing it depends on
/// changed: this session's own memory, so a repeated search reads nothing another thread
/// writes (the token snapshot it would walk is shared). A usual template (a class and a label)
/// and its answer fit in the session itself, and a repeated search compares without writing:
/// two sessions' small heap buffers on one cache line, one rewritten per search, cost find-by-
/// label up to a fifth more CPU per search on two threads.
#[derive(Default)]
pub struct LastFind {
    asked: Option<FindAsked>,
    /// The template, encoded: (type, length, value) after another.
    template: SmallVec<[u8; 96]>,
    /// What it found.
    pub handles: HandleList,
}

impl LastFind {
    fn encode(out: &mut SmallVec<[u8; 96]>, template: &[crate::fns::AttributeRef<'_>]) {
        out.clear();
        for (t, v) in template {
            out.extend_from_slice(&t.to_ne_bytes());
            out.extend_from_slice(&(v.len() as u64).to_ne_bytes());
            out.extend_from_slice(v);
        }
    }

    /// Whether the last search was this one, asked in the same state (compared piece by piece
    /// against the kept encoding, without encoding the new template anywhere).
    pub fn answers(&self, asked: FindAsked, template: &[crate::fns::AttributeRef<'_>]) -> bool {
        if self.asked != Some(asked) {
            return false;
        }
        let mut rest: &[u8] = &self.template;
        for (t, v) in template {
            let pieces: [&[u8]; 3] = [&t.to_ne_bytes(), &(v.len() as u64).to_ne_bytes(), v];
            for piece in pieces {
                match rest.split_at_checked(piece.len()) {
                    Some((head, tail)) if head == piece => rest = tail,
                    _ => return false,
                }
            }
        }
        rest.is_empty()
    }

    /// Keeps a search and its answer.
    pub fn remember(
        &mut self,
        asked: FindAsked,
        template: &[crate::fns::AttributeRef<'_>],
        handles: &[CK_OBJECT_HANDLE],
    ) {
        Self::encode(&mut self.template, template);
        self.handles.clear();
        self.handles.extend_from_slice(handles);
        self.asked = Some(asked);
    }
}

/// Public parts and certificates, per key version (they never change).
type VersionCache<T> = RwLock<HashMap<(Arc<str>, Arc<str>), Arc<T>>>;

/// Everything between C_Initialize and C_Finalize.
pub struct Module {
    /// The KMS.
    pub kms: Kms,
    /// The configuration.
    pub config: Config,
    /// The fork generation of the process that initialised the module: a forked child must
    /// initialise anew (see `ffi::process_generation`).
    pub generation: u64,
    /// Read by every call (a copy is made when a session opens or closes, which is rare by
    /// comparison), so that looking a session up touches no shared lock.
    sessions: ArcSwap<SessionTable>,
    /// Serialises the changes of `sessions` (and the logout that follows the last close).
    sessions_changing: Mutex<()>,
    next_session: AtomicU64,
    /// Who is logged in.
    pub login: LoginState,
    /// The configuration's other user PINs and whom each acts as.
    pin_callers: Vec<(String, Arc<CallerContext>)>,
    /// Object handles.
    pub objects: Objects,
    public_parts: VersionCache<PublicParts>,
    certificates: VersionCache<Option<Arc<Certificate>>>,
}

impl Module {
    /// Opens the store the configuration names.
    pub fn open(config: Config) -> std::result::Result<Module, kms_core::KmsError> {
        let kms = Kms::open_with(config.store_dir(), KmsOptions::from_env())?;
        kms.token_info(&config.instance)?;
        let default_caller = Arc::new(match &config.principal {
            Some(p) => CallerContext::new(Principal::parse(p)?),
            None => kms.root_caller().clone(),
        });
        let pin_callers = config
            .pin_principals
            .iter()
            .map(|p| {
                Ok((
                    p.pin_hash.clone(),
                    Arc::new(CallerContext::new(Principal::parse(&p.principal)?)),
                ))
            })
            .collect::<std::result::Result<Vec<_>, kms_core::KmsError>>()?;
        Ok(Module {
            pin_callers,
            kms,
            config,
            generation: crate::ffi::process_generation(),
            sessions: ArcSwap::new(Arc::new(HashMap::new())),
            sessions_changing: Mutex::new(()),
            next_session: AtomicU64::new(0),
            login: LoginState::new(default_caller),
            objects: Objects::default(),
            public_parts: RwLock::new(HashMap::new()),
            certificates: RwLock::new(HashMap::new()),
        })
    }

    /// Whom the current login acts as (public sessions: the default principal).
    pub fn caller(&self) -> arc_swap::Guard<Arc<CallerContext>> {
        self.login.acting()
    }

    /// The principal of a configured user PIN other than the token's, if `pin` is one.
    pub fn caller_for_pin(&self, pin: &[u8]) -> Result<Option<Arc<CallerContext>>> {
        for (hash, caller) in &self.pin_callers {
            if kms_core::pin_matches(pin, hash)? {
                return Ok(Some(Arc::clone(caller)));
            }
        }
        Ok(None)
    }

    /// The instance whose token this is.
    pub fn instance(&self) -> &str {
        &self.config.instance
    }

    /// Checks a slot id.
    pub fn check_slot(&self, slot: CK_SLOT_ID) -> Result<()> {
        if slot == SLOT_ID {
            Ok(())
        } else {
            Err(Ckr::CKR_SLOT_ID_INVALID)
        }
    }

    /// A new session.
    pub fn open_session(&self, rw: bool) -> Result<CK_SESSION_HANDLE> {
        let handle = self.next_session.fetch_add(1, Ordering::Relaxed) + 1;
        let session = Session {
            handle,
            rw,
            find: None,
            sign: None,
            verify: None,
            encrypt: None,
            decrypt: None,
            digest: None,
            resolved: None,
            view: None,
            spare_handles: HandleList::new(),
            last_find: LastFind::default(),
            spare_ciphertext: Vec::new(),
        };
        let _changing = self.sessions_changing.lock();
        // Under the lock C_Login's SO login takes, so that neither can slip in between the
        // other's check and its change.
        if !rw && matches!(*self.login.read(), Login::SecurityOfficer(_)) {
            return Err(Ckr::CKR_SESSION_READ_WRITE_SO_EXISTS);
        }
        let mut sessions = SessionTable::clone(&self.sessions.load());
        let read_only = !session.rw;
        sessions.insert(
            handle,
            Arc::new(SessionCell {
                session: Mutex::new(session),
                read_only,
            }),
        );
        self.sessions.store(Arc::new(sessions));
        Ok(handle)
    }

    /// A session by handle.
    pub fn session(&self, handle: CK_SESSION_HANDLE) -> Result<Arc<SessionCell>> {
        self.sessions
            .load()
            .get(&handle)
            .cloned()
            .ok_or(Ckr::CKR_SESSION_HANDLE_INVALID)
    }

    /// Runs `f` on a session, locked, without moving its reference count (every crypto and
    /// find call comes through here).
    pub fn with_session<T>(&self, handle: CK_SESSION_HANDLE, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        let sessions = self.sessions.load();
        let cell = sessions.get(&handle).ok_or(Ckr::CKR_SESSION_HANDLE_INVALID)?;
        let mut s = cell.lock();
        f(&mut s)
    }

    /// Adds session objects owned by a session that is still open (a session closed while its
    /// key was being generated gets none: they would outlive it, findable by every session).
    pub fn add_session_objects<const N: usize>(
        &self,
        owner: CK_SESSION_HANDLE,
        key: Arc<SessionKey>,
        kinds: [Kind; N],
    ) -> Result<[CK_OBJECT_HANDLE; N]> {
        let _changing = self.sessions_changing.lock();
        if !self.sessions.load().contains_key(&owner) {
            return Err(Ckr::CKR_SESSION_HANDLE_INVALID);
        }
        Ok(kinds.map(|kind| self.objects.add_session(owner, Arc::clone(&key), kind)))
    }

    /// Closes a session; the last one to close logs the token out.
    pub fn close_session(&self, handle: CK_SESSION_HANDLE) -> Result<()> {
        let _changing = self.sessions_changing.lock();
        let mut sessions = SessionTable::clone(&self.sessions.load());
        sessions.remove(&handle).ok_or(Ckr::CKR_SESSION_HANDLE_INVALID)?;
        let last = sessions.is_empty();
        self.sessions.store(Arc::new(sessions));
        self.objects.remove_owned_by(handle);
        if last {
            self.login.set(Login::Public);
        }
        Ok(())
    }

    /// Closes every session.
    pub fn close_all_sessions(&self) {
        let _changing = self.sessions_changing.lock();
        let sessions = self.sessions.swap(Arc::new(HashMap::new()));
        for handle in sessions.keys() {
            self.objects.remove_owned_by(*handle);
        }
        self.login.set(Login::Public);
    }

    /// Whether any session is open, and whether any is read-only.
    pub fn sessions_open(&self) -> (bool, bool) {
        let sessions = self.sessions.load();
        let read_only = sessions.values().any(|s| s.read_only);
        (!sessions.is_empty(), read_only)
    }

    /// Logs the token in as C_Login decided, if that is still possible: under the lock that
    /// opening and closing sessions take, so that closing the last session (which logs the token
    /// out) cannot fall between C_Login's checks and its login — the PIN check alone takes tens
    /// of milliseconds — and leave the token logged in with no session open. A C_Login that won
    /// meanwhile on another thread stands.
    pub fn log_in(&self, through: CK_SESSION_HANDLE, login: Login) -> Result<()> {
        let _changing = self.sessions_changing.lock();
        if !self.sessions.load().contains_key(&through) {
            return Err(Ckr::CKR_SESSION_HANDLE_INVALID);
        }
        self.login_allowed(matches!(login, Login::SecurityOfficer(_)))?;
        self.login.set(login);
        Ok(())
    }

    /// Whether a login (as the SO, or as a user) may happen now: nobody is logged in, and no
    /// read-only session is open for an SO. C_Login asks before its PIN check, and
    /// [`Module::log_in`] again under the lock.
    pub fn login_allowed(&self, so: bool) -> Result<()> {
        match (&*self.login.read(), so) {
            (Login::Public, _) => {}
            (Login::User(_), false) | (Login::SecurityOfficer(_), true) => return Err(Ckr::CKR_USER_ALREADY_LOGGED_IN),
            _ => return Err(Ckr::CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
        }
        if so && self.sessions_open().1 {
            return Err(Ckr::CKR_SESSION_READ_ONLY_EXISTS);
        }
        Ok(())
    }

    /// Whether the user is logged in.
    pub fn user_logged_in(&self) -> bool {
        self.login.user_logged_in()
    }

    /// The token's keys now (rebuilt only when the store changed).
    pub fn view(&self) -> Result<Arc<TokenView>> {
        Ok(self.kms.token_view(self.instance())?)
    }

    /// What a token object is, if its key is still on the token.
    pub fn token_object_view<'v>(&self, view: &'v TokenView, object: &'v TokenObject) -> Option<ObjectView<'v>> {
        let key = &view.keys[view.by_key_id(&object.key_id)?];
        let at = key.versions.iter().position(|v| **v == *object.version_id)?;
        Some(ObjectView {
            kind: object.kind,
            spec: key.key.spec,
            usage: key.key.usage,
            label: crate::objects::version_label(&key.label, &object.version_id, at == 0),
            id: object.version_id.as_bytes(),
            token: true,
        })
    }

    /// The key behind a handle, for an operation that needs `kind` (or, for `Private`/`Secret`,
    /// a login). Keys that left the token (disabled, deleted) are invalid handles.
    pub fn key_for(
        &self,
        session: &mut Session,
        handle: CK_OBJECT_HANDLE,
        wanted: &[Kind],
    ) -> Result<(KeyUse, Kind, KeyUsage)> {
        // The session's last resolved version serves again while nothing changed; otherwise
        // it is let go (a purged key's material must not stay in memory).
        let kept = match session.resolved.take() {
            Some(r) if r.handle == handle && self.kms.is_current(&r.version)? => Some(r),
            _ => None,
        };
        let (version, kind) = match kept {
            Some(r) => (r.version, r.kind),
            None => match self.objects.get(handle).map_err(|_| Ckr::CKR_KEY_HANDLE_INVALID)? {
                // The KMS answers from its caches whether the key is still Enabled and the
                // version exists: a key that left the token is an invalid handle.
                Object::Token(t) => (Arc::new(self.kms.token_version(&t.key_id, &t.version_id)?), t.kind),
                Object::Session { key, kind, .. } => {
                    let usage = key.usage;
                    let key = KeyUse {
                        spec: key.spec,
                        target: UseTarget::Session(key),
                    };
                    return self.usable_as(key, kind, usage, wanted);
                }
            },
        };
        session.resolved = Some(ResolvedKey {
            handle,
            kind,
            version: Arc::clone(&version),
        });
        let usage = version.usage();
        let key = KeyUse {
            spec: version.spec(),
            target: UseTarget::Token(version),
        };
        self.usable_as(key, kind, usage, wanted)
    }

    /// A key the operation may use: a private half needs a login, and the kind must be one the
    /// operation takes.
    fn usable_as(&self, key: KeyUse, kind: Kind, usage: KeyUsage, wanted: &[Kind]) -> Result<(KeyUse, Kind, KeyUsage)> {
        if kind.is_private() && !self.user_logged_in() {
            return Err(Ckr::CKR_USER_NOT_LOGGED_IN);
        }
        if !wanted.contains(&kind) {
            return Err(Ckr::CKR_KEY_TYPE_INCONSISTENT);
        }
        Ok((key, kind, usage))
    }

    /// The public parts of a key version.
    pub fn public_parts(&self, target: &Target) -> Result<Arc<PublicParts>> {
        match target {
            Target::Session(key) => Ok(Arc::new(PublicParts::from_spki(
                key.handle.public_key_der().map_err(|_| Ckr::CKR_GENERAL_ERROR)?,
            )?)),
            Target::Token { key_id, version_id } => {
                let id = (Arc::clone(key_id), Arc::clone(version_id));
                if let Some(p) = self.public_parts.read().get(&id) {
                    return Ok(Arc::clone(p));
                }
                let parts = Arc::new(PublicParts::from_spki(self.kms.public_key_der(key_id, version_id)?)?);
                self.public_parts.write().insert(id, Arc::clone(&parts));
                Ok(parts)
            }
        }
    }

    /// The self-signed certificate of a token key version (made once per process).
    pub fn certificate(&self, target: &Target, spec: KeySpec, label: &str) -> Result<Option<Arc<Certificate>>> {
        let Target::Token { key_id, version_id } = target else {
            return Ok(None);
        };
        let id = (Arc::clone(key_id), Arc::clone(version_id));
        if let Some(c) = self.certificates.read().get(&id) {
            return Ok(c.as_ref().clone());
        }
        let spki = self.public_parts(target)?.spki.clone();
        let mut serial = [0u8; 16];
        let random = self
            .kms
            .generate_random(&kms_core::api::GenerateRandomRequest { length: Some(16) })?;
        serial.copy_from_slice(random.random.expose());
        let now_s = self.kms.now_ms() / 1000;
        let version = self.kms.token_version(key_id, version_id)?;
        let made = cert::self_signed(spec, label, &spki, serial, now_s, |scheme, digest| {
            self.kms.as_root().sign_with(&version, scheme, digest)
        })?
        .map(Arc::new);
        self.certificates.write().insert(id, Arc::new(made.clone()));
        Ok(made)
    }

    /// Signs with a key.
    pub fn sign(&self, key: &KeyUse, scheme: SignScheme, data: &[u8]) -> Result<Vec<u8>> {
        match &key.target {
            UseTarget::Token(version) => Ok(self.kms.as_caller(&self.caller()).sign_with(version, scheme, data)?),
            UseTarget::Session(k) => k.handle.sign(scheme, data).map_err(engine_ckr),
        }
    }

    /// Verifies with a key.
    pub fn verify(&self, key: &KeyUse, scheme: SignScheme, data: &[u8], signature: &[u8]) -> Result<bool> {
        match &key.target {
            UseTarget::Token(version) => Ok(self
                .kms
                .as_caller(&self.caller())
                .verify_with(version, scheme, data, signature)?),
            UseTarget::Session(k) => k.handle.verify(scheme, data, signature).map_err(engine_ckr),
        }
    }

    /// Encrypts with a key. The working buffer holds plaintext only until it is sealed in place,
    /// and is wiped if sealing fails.
    /// `buf` is an array to reuse for the ciphertext (its contents are dropped).
    pub fn encrypt(&self, key: &KeyUse, cipher: &Cipher, data: &[u8], mut buf: Vec<u8>) -> Result<Vec<u8>> {
        match (cipher, &key.target) {
            (Cipher::Gcm(gcm), target) => {
                buf.clear();
                buf.reserve(data.len() + kms_core::engine::AEAD_TAG_LEN);
                buf.extend_from_slice(data);
                let sealed = match target {
                    UseTarget::Token(version) => self
                        .kms
                        .as_caller(&self.caller())
                        .aead_seal(version, &gcm.iv, &gcm.aad, &mut buf)
                        .map_err(Ckr::from),
                    UseTarget::Session(k) => k.handle.seal_in_place(&gcm.iv, &gcm.aad, &mut buf).map_err(engine_ckr),
                };
                match sealed {
                    Ok(tag) => {
                        buf.extend_from_slice(&tag);
                        Ok(buf)
                    }
                    Err(e) => {
                        zeroize::Zeroize::zeroize(&mut buf);
                        Err(e)
                    }
                }
            }
            (Cipher::Asymmetric(scheme), UseTarget::Token(version)) => Ok(self
                .kms
                .as_caller(&self.caller())
                .encrypt_with(version, *scheme, data)?),
            (Cipher::Asymmetric(scheme), UseTarget::Session(k)) => {
                k.handle.encrypt_with(*scheme, data).map_err(engine_ckr)
            }
        }
    }

    /// Decrypts with a key.
    pub fn decrypt(&self, key: &KeyUse, cipher: &Cipher, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match (cipher, &key.target) {
            (Cipher::Gcm(gcm), target) => {
                let tag_at = data
                    .len()
                    .checked_sub(kms_core::engine::AEAD_TAG_LEN)
                    .ok_or(Ckr::CKR_ENCRYPTED_DATA_LEN_RANGE)?;
                let (body, tag) = data.split_at(tag_at);
                let mut buf = Zeroizing::new(body.to_vec());
                match target {
                    UseTarget::Token(version) => self
                        .kms
                        .as_caller(&self.caller())
                        .aead_open(version, &gcm.iv, &gcm.aad, &mut buf, tag)?,
                    UseTarget::Session(k) => k
                        .handle
                        .open_in_place(&gcm.iv, &gcm.aad, &mut buf, tag)
                        .map_err(|_| Ckr::CKR_ENCRYPTED_DATA_INVALID)?,
                }
                Ok(buf)
            }
            (Cipher::Asymmetric(scheme), UseTarget::Token(version)) => Ok(self
                .kms
                .as_caller(&self.caller())
                .decrypt_with(version, *scheme, data)?),
            (Cipher::Asymmetric(scheme), UseTarget::Session(k)) => k
                .handle
                .decrypt_with(*scheme, data)
                .map_err(|_| Ckr::CKR_ENCRYPTED_DATA_INVALID),
        }
    }
}

/// An engine error on a session key, as the KMS would map it.
fn engine_ckr(e: kms_core::engine::EngineError) -> Ckr {
    use kms_core::engine::EngineError;
    match e {
        EngineError::Unsupported(_) => Ckr::CKR_KEY_TYPE_INCONSISTENT,
        EngineError::InvalidInput(_) => Ckr::CKR_DATA_LEN_RANGE,
        EngineError::Crypto => Ckr::CKR_ENCRYPTED_DATA_INVALID,
        _ => Ckr::CKR_GENERAL_ERROR,
    }
}

/// The module, while initialised. An `ArcSwapOption` because every call of every thread reads it:
/// its loads touch only per-thread state, where a lock or an `Arc` clone would bounce one cache
/// line between the cores on each call (that alone cost the 2-thread AES-GCM row about 1.5%).
static MODULE: ArcSwapOption<Module> = ArcSwapOption::const_empty();

/// A loaded, installed module: valid for one call.
pub struct ModuleRef(arc_swap::Guard<Option<Arc<Module>>>);

impl std::ops::Deref for ModuleRef {
    type Target = Module;

    fn deref(&self) -> &Module {
        match &*self.0 {
            Some(m) => m,
            // `module()` makes a ModuleRef only of a guard that holds a module.
            None => unreachable!("a ModuleRef without a module"),
        }
    }
}

/// The initialised module of this process.
pub fn module() -> Result<ModuleRef> {
    let guard = MODULE.load();
    match &*guard {
        Some(m) if m.generation == crate::ffi::process_generation() => Ok(ModuleRef(guard)),
        _ => Err(Ckr::CKR_CRYPTOKI_NOT_INITIALIZED),
    }
}

/// Serialises installing and removing the module (calls only load it).
static LIFECYCLE: Mutex<()> = Mutex::new(());

/// Installs the module (C_Initialize). A module a parent process left behind before `fork()` is
/// abandoned, not closed: its SQLite connection belongs to the parent.
pub fn install(make: impl FnOnce() -> Result<Module>) -> Result<()> {
    let _serial = LIFECYCLE.lock();
    if let Some(existing) = &*MODULE.load()
        && existing.generation == crate::ffi::process_generation()
    {
        return Err(Ckr::CKR_CRYPTOKI_ALREADY_INITIALIZED);
    }
    let module = Arc::new(make()?);
    if let Some(left_by_parent) = MODULE.swap(Some(module)) {
        std::mem::forget(left_by_parent);
    }
    Ok(())
}

/// Removes the module (C_Finalize).
pub fn uninstall() -> Result<()> {
    let _serial = LIFECYCLE.lock();
    match MODULE.swap(None) {
        Some(m) if m.generation == crate::ffi::process_generation() => {
            m.close_all_sessions();
            Ok(())
        }
        Some(m) => {
            std::mem::forget(m);
            Err(Ckr::CKR_CRYPTOKI_NOT_INITIALIZED)
        }
        None => Err(Ckr::CKR_CRYPTOKI_NOT_INITIALIZED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKED: FindAsked = FindAsked {
        epoch: 7,
        user: true,
        session_objects: 3,
    };

    #[test]
    fn a_last_find_answers_only_the_same_template_in_the_same_state() {
        let class = CKO_SECRET_KEY.to_ne_bytes();
        let searched: [(CK_ATTRIBUTE_TYPE, &[u8]); 2] = [(CKA_CLASS, &class), (CKA_LABEL, b"find-target")];
        let mut last = LastFind::default();
        assert!(!last.answers(ASKED, &searched), "nothing remembered yet");
        last.remember(ASKED, &searched, &[5, 9]);
        assert!(last.answers(ASKED, &searched));
        assert_eq!(last.handles.as_slice(), &[5, 9]);

        let other_state = [
            FindAsked { epoch: 8, ..ASKED },
            FindAsked { user: false, ..ASKED },
            FindAsked {
                session_objects: 4,
                ..ASKED
            },
        ];
        for asked in other_state {
            assert!(!last.answers(asked, &searched), "{asked:?}");
        }
        let others: [&[(CK_ATTRIBUTE_TYPE, &[u8])]; 6] = [
            &[(CKA_CLASS, &class), (CKA_LABEL, b"find-targex")],
            &[(CKA_CLASS, &class), (CKA_LABEL, b"find-targe")],
            &[(CKA_CLASS, &class), (CKA_LABEL, b"find-target!")],
            &[(CKA_CLASS, &class)],
            &[(CKA_LABEL, b"find-target"), (CKA_CLASS, &class)],
            &[(CKA_CLASS, &class), (CKA_LABEL, b"find-target"), (CKA_TOKEN, &[1])],
        ];
        for template in others {
            assert!(!last.answers(ASKED, template), "{template:?}");
        }
        // An empty template is a search of its own (everything), told apart from any other.
        assert!(!last.answers(ASKED, &[]));
        last.remember(ASKED, &[], &[1, 2, 3]);
        assert!(last.answers(ASKED, &[]));
        assert!(!last.answers(ASKED, &searched));
    }
}
