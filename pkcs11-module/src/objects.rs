//! Token objects: which PKCS#11 objects a KMS key version is, their handles, and their attributes.
//!
//! Every Enabled key version is one object (symmetric: a secret key) or two or three (asymmetric:
//! a private key, a public key, and with `generate_certs` a certificate). Handles are assigned on
//! first sight and stay the same for the module's life, so a key that is disabled and enabled
//! again keeps its handles. Session keys (`CKA_TOKEN` false) live in the same table, owned by the
//! session that made them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use cryptoki_sys::*;
use kms_core::engine::KeyHandle;
use kms_core::model::{KeySpec, KeyUsage};
use parking_lot::RwLock;

use crate::error::{Ckr, Result};

/// Vendor-defined key types, documented in `docs/pkcs11.md`.
pub const CKK_TESSERA_SM2: CK_KEY_TYPE = CKK_VENDOR_DEFINED | 0x5453_0001;
/// SM4 secret keys.
pub const CKK_TESSERA_SM4: CK_KEY_TYPE = CKK_VENDOR_DEFINED | 0x5453_0002;

/// DER of the named-curve OIDs (CKA_EC_PARAMS).
pub const EC_PARAMS_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp256k1.
pub const EC_PARAMS_K256: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// SM2 (1.2.156.10197.1.301).
pub const EC_PARAMS_SM2: &[u8] = &[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];

/// What kind of object a handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A symmetric key.
    Secret,
    /// The private half of a key pair.
    Private,
    /// The public half.
    Public,
    /// The self-signed certificate of a key pair.
    Certificate,
}

impl Kind {
    /// CKA_CLASS.
    pub fn class(self) -> CK_OBJECT_CLASS {
        match self {
            Kind::Secret => CKO_SECRET_KEY,
            Kind::Private => CKO_PRIVATE_KEY,
            Kind::Public => CKO_PUBLIC_KEY,
            Kind::Certificate => CKO_CERTIFICATE,
        }
    }

    /// CKA_PRIVATE: only the halves that hold secrets need a login to be seen.
    pub fn is_private(self) -> bool {
        matches!(self, Kind::Secret | Kind::Private)
    }

    /// The kinds of object a key of `spec` is.
    pub fn of_spec(spec: KeySpec, certificates: bool) -> &'static [Kind] {
        if spec.is_symmetric() {
            &[Kind::Secret]
        } else if certificates && crate::cert::has_certificate(spec) {
            &[Kind::Private, Kind::Public, Kind::Certificate]
        } else {
            &[Kind::Private, Kind::Public]
        }
    }
}

/// A token object: one kind of view of one version of a KMS key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenObject {
    /// The key.
    pub key_id: Arc<str>,
    /// The version.
    pub version_id: Arc<str>,
    /// Which view.
    pub kind: Kind,
}

/// A key made in a session, never stored.
pub struct SessionKey {
    /// Its spec.
    pub spec: KeySpec,
    /// What it may do.
    pub usage: KeyUsage,
    /// CKA_LABEL.
    pub label: String,
    /// CKA_ID.
    pub id: Vec<u8>,
    /// The loaded key.
    pub handle: Arc<dyn KeyHandle>,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("spec", &self.spec)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// What a handle names.
#[derive(Clone, Debug)]
pub enum Object {
    /// A view of a KMS key version.
    Token(TokenObject),
    /// A session key's view, owned by a session.
    Session {
        /// The owning session.
        owner: CK_SESSION_HANDLE,
        /// The key.
        key: Arc<SessionKey>,
        /// Which view.
        kind: Kind,
    },
}

#[derive(Default)]
struct Table {
    /// Token objects by handle (one per key version and kind ever seen: thousands).
    by_handle: HashMap<CK_OBJECT_HANDLE, TokenObject>,
    /// Session objects by handle, apart, so that listing them (every C_FindObjectsInit) or
    /// dropping a session's does not walk the token objects.
    session: BTreeMap<CK_OBJECT_HANDLE, (CK_SESSION_HANDLE, Arc<SessionKey>, Kind)>,
    /// Token objects' handles by version id (unique across keys) and kind: looked up by `&str`,
    /// so that finding an object clones no shared string.
    by_token: HashMap<Box<str>, [Option<CK_OBJECT_HANDLE>; 4]>,
    next: CK_OBJECT_HANDLE,
}

/// The handle table.
#[derive(Default)]
pub struct Objects {
    table: RwLock<Table>,
    /// How many session objects exist: a find skips the table's lock when there are none.
    session_count: AtomicUsize,
    /// Moves whenever a session object is added or removed (a remembered search is then stale).
    session_generation: AtomicU64,
}

impl Objects {
    /// The handle of a token object, assigned on first sight.
    pub fn token_handle(&self, object: &TokenObject) -> CK_OBJECT_HANDLE {
        self.token_handle_of(&object.key_id, &object.version_id, object.kind)
    }

    /// The handle of a token object named by its parts (the strings are cloned only the first
    /// time the object is seen).
    pub fn token_handle_of(&self, key_id: &Arc<str>, version_id: &Arc<str>, kind: Kind) -> CK_OBJECT_HANDLE {
        let slot = kind as usize;
        if let Some(h) = self.table.read().by_token.get(&**version_id).and_then(|k| k[slot]) {
            return h;
        }
        let mut t = self.table.write();
        if let Some(h) = t.by_token.get(&**version_id).and_then(|k| k[slot]) {
            return h;
        }
        t.next += 1;
        let h = t.next;
        t.by_token.entry(Box::from(&**version_id)).or_default()[slot] = Some(h);
        let object = TokenObject {
            key_id: Arc::clone(key_id),
            version_id: Arc::clone(version_id),
            kind,
        };
        t.by_handle.insert(h, object);
        h
    }

    /// Adds a session object.
    pub fn add_session(&self, owner: CK_SESSION_HANDLE, key: Arc<SessionKey>, kind: Kind) -> CK_OBJECT_HANDLE {
        let mut t = self.table.write();
        t.next += 1;
        let h = t.next;
        t.session.insert(h, (owner, key, kind));
        self.session_objects_changed(&t);
        h
    }

    /// What a handle names.
    pub fn get(&self, handle: CK_OBJECT_HANDLE) -> Result<Object> {
        let t = self.table.read();
        if let Some(object) = t.by_handle.get(&handle) {
            return Ok(Object::Token(object.clone()));
        }
        let (owner, key, kind) = t.session.get(&handle).ok_or(Ckr::CKR_OBJECT_HANDLE_INVALID)?;
        Ok(Object::Session {
            owner: *owner,
            key: Arc::clone(key),
            kind: *kind,
        })
    }

    /// Removes one session object.
    pub fn remove_session_object(&self, handle: CK_OBJECT_HANDLE) {
        let mut t = self.table.write();
        t.session.remove(&handle);
        self.session_objects_changed(&t);
    }

    /// Removes every object of a session (when it closes).
    pub fn remove_owned_by(&self, session: CK_SESSION_HANDLE) {
        let mut t = self.table.write();
        t.session.retain(|_, (owner, ..)| *owner != session);
        self.session_objects_changed(&t);
    }

    /// Moves the mirrors of the session objects after a change (under the table's write lock).
    fn session_objects_changed(&self, t: &Table) {
        self.session_count.store(t.session.len(), Ordering::Release);
        self.session_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The session objects' generation (see [`Objects::session_objects`]).
    pub fn session_generation(&self) -> u64 {
        self.session_generation.load(Ordering::Acquire)
    }

    /// Every session object, with its handle, in handle order.
    pub fn session_objects(&self) -> Vec<(CK_OBJECT_HANDLE, Arc<SessionKey>, Kind)> {
        if self.session_count.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        self.table
            .read()
            .session
            .iter()
            .map(|(h, (_, key, kind))| (*h, Arc::clone(key), *kind))
            .collect()
    }
}

/// The public parts of a key pair, from its SubjectPublicKeyInfo.
#[derive(Debug, Clone)]
pub struct PublicParts {
    /// The DER SubjectPublicKeyInfo (CKA_PUBLIC_KEY_INFO).
    pub spki: Vec<u8>,
    /// RSA: modulus and public exponent, big-endian.
    pub rsa: Option<(Vec<u8>, Vec<u8>)>,
    /// EC: the uncompressed point as a DER OCTET STRING (CKA_EC_POINT).
    pub ec_point: Option<Vec<u8>>,
}

impl PublicParts {
    /// Parses a SubjectPublicKeyInfo.
    pub fn from_spki(spki: Vec<u8>) -> Result<PublicParts> {
        use der::Decode;
        let info = spki::SubjectPublicKeyInfoRef::from_der(&spki).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
        let key_bits = info.subject_public_key.raw_bytes();
        let (rsa, ec_point) = if info.algorithm.oid == spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1") {
            let rsa = pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(key_bits)
                .map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
            (
                Some((rsa.modulus.as_bytes().to_vec(), rsa.public_exponent.as_bytes().to_vec())),
                None,
            )
        } else {
            let octets = der::asn1::OctetStringRef::new(key_bits).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
            (
                None,
                Some(der::Encode::to_der(&octets).map_err(|_| Ckr::CKR_GENERAL_ERROR)?),
            )
        };
        Ok(PublicParts { spki, rsa, ec_point })
    }
}

/// CKA_KEY_TYPE of a spec.
pub fn key_type(spec: KeySpec) -> CK_KEY_TYPE {
    match spec {
        KeySpec::Aes256 | KeySpec::Aes192 | KeySpec::Aes128 => CKK_AES,
        KeySpec::Sm4 => CKK_TESSERA_SM4,
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => CKK_RSA,
        KeySpec::EcP256 | KeySpec::EcP256K => CKK_EC,
        KeySpec::EcSm2 => CKK_TESSERA_SM2,
    }
}

/// CKA_EC_PARAMS of an elliptic-curve spec.
pub fn ec_params(spec: KeySpec) -> Option<&'static [u8]> {
    match spec {
        KeySpec::EcP256 => Some(EC_PARAMS_P256),
        KeySpec::EcP256K => Some(EC_PARAMS_K256),
        KeySpec::EcSm2 => Some(EC_PARAMS_SM2),
        _ => None,
    }
}

/// The key length in bytes (secret keys) or bits (RSA modulus, EC order).
pub fn key_bits(spec: KeySpec) -> CK_ULONG {
    match spec {
        KeySpec::Aes128 | KeySpec::Sm4 => 128,
        KeySpec::Aes192 => 192,
        KeySpec::Aes256 | KeySpec::EcP256 | KeySpec::EcP256K | KeySpec::EcSm2 => 256,
        KeySpec::Rsa2048 => 2048,
        KeySpec::Rsa3072 => 3072,
        KeySpec::Rsa4096 => 4096,
    }
}

/// What an object is, for its attributes.
pub struct ObjectView<'a> {
    /// Which view of the key.
    pub kind: Kind,
    /// The key's spec.
    pub spec: KeySpec,
    /// The key's usage.
    pub usage: KeyUsage,
    /// CKA_LABEL.
    pub label: std::borrow::Cow<'a, str>,
    /// CKA_ID.
    pub id: &'a [u8],
    /// CKA_TOKEN.
    pub token: bool,
}

/// What separates a key's label from a version id in the label of a version that is not the
/// primary one: `app1@<version id>`. Only the primary version carries the plain label, so that
/// clients that pick "the" key by label (libp11, Java's KeyStore) get the one Encrypt and Sign use.
pub const VERSION_LABEL_SEPARATOR: char = '@';

/// The CKA_LABEL of one version of a key labelled `label`.
pub fn version_label<'a>(label: &'a str, version_id: &str, primary: bool) -> std::borrow::Cow<'a, str> {
    if primary {
        std::borrow::Cow::Borrowed(label)
    } else {
        std::borrow::Cow::Owned(format!("{label}{VERSION_LABEL_SEPARATOR}{version_id}"))
    }
}

/// Splits a searched-for label into the key's label and, for an older version, its id.
pub fn split_label(label: &str) -> (&str, Option<&str>) {
    match label.rsplit_once(VERSION_LABEL_SEPARATOR) {
        Some((key, version)) => (key, Some(version)),
        None => (label, None),
    }
}

/// An attribute's value, or why there is none.
#[derive(Debug, PartialEq, Eq)]
pub enum Attr {
    /// The value.
    Value(Vec<u8>),
    /// It exists but is secret (CKR_ATTRIBUTE_SENSITIVE).
    Sensitive,
    /// The object has no such attribute (CKR_ATTRIBUTE_TYPE_INVALID).
    Invalid,
}

fn ulong(v: CK_ULONG) -> Attr {
    Attr::Value(v.to_ne_bytes().to_vec())
}

fn boolean(v: bool) -> Attr {
    Attr::Value(vec![u8::from(v)])
}

impl ObjectView<'_> {
    /// Whether computing `attr` needs the public key (so cheap lookups skip loading it).
    pub fn needs_public(&self, attr: CK_ATTRIBUTE_TYPE) -> bool {
        matches!(
            attr,
            CKA_MODULUS | CKA_PUBLIC_EXPONENT | CKA_EC_POINT | CKA_PUBLIC_KEY_INFO
        ) || (self.kind == Kind::Certificate
            && matches!(attr, CKA_VALUE | CKA_SUBJECT | CKA_ISSUER | CKA_SERIAL_NUMBER))
    }

    /// Whether the object's value of a search attribute equals `wanted`, without building the
    /// value; `None` for attributes this does not cover.
    pub fn has_value(&self, attr: CK_ATTRIBUTE_TYPE, wanted: &[u8]) -> Option<bool> {
        let ulong = |v: CK_ULONG| wanted == v.to_ne_bytes();
        let boolean = |v: bool| wanted == [u8::from(v)];
        Some(match attr {
            CKA_CLASS => ulong(self.kind.class()),
            CKA_LABEL => wanted == self.label.as_bytes(),
            CKA_ID => wanted == self.id,
            CKA_TOKEN => boolean(self.token),
            CKA_PRIVATE => boolean(self.kind.is_private()),
            CKA_KEY_TYPE if self.kind != Kind::Certificate => ulong(key_type(self.spec)),
            _ => return None,
        })
    }

    /// The value of an attribute. `public` and `cert` give the key's public parts and
    /// certificate, computed only when the attribute needs them.
    pub fn attr(
        &self,
        attr: CK_ATTRIBUTE_TYPE,
        public: impl FnOnce() -> Result<Arc<PublicParts>>,
        cert: impl FnOnce() -> Result<Option<Arc<crate::cert::Certificate>>>,
    ) -> Result<Attr> {
        let kind = self.kind;
        let is_key = kind != Kind::Certificate;
        let encrypts = self.usage == KeyUsage::EncryptDecrypt;
        let signs = self.usage == KeyUsage::SignVerify;
        let rsa = matches!(self.spec, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096);
        Ok(match attr {
            CKA_CLASS => ulong(kind.class()),
            CKA_TOKEN => boolean(self.token),
            CKA_PRIVATE => boolean(kind.is_private()),
            CKA_MODIFIABLE | CKA_COPYABLE => boolean(false),
            // Only the halves that hold the key may be destroyed (that schedules the key's
            // deletion); public keys and certificates are views of it.
            CKA_DESTROYABLE => boolean(kind.is_private()),
            CKA_LABEL => Attr::Value(self.label.as_bytes().to_vec()),
            CKA_ID if is_key || kind == Kind::Certificate => Attr::Value(self.id.to_vec()),
            CKA_KEY_TYPE if is_key => ulong(key_type(self.spec)),
            CKA_LOCAL | CKA_NEVER_EXTRACTABLE | CKA_ALWAYS_SENSITIVE | CKA_SENSITIVE if kind.is_private() => {
                boolean(true)
            }
            CKA_LOCAL if is_key => boolean(true),
            CKA_EXTRACTABLE | CKA_ALWAYS_AUTHENTICATE | CKA_WRAP_WITH_TRUSTED if kind.is_private() => boolean(false),
            CKA_DERIVE if is_key => boolean(false),
            CKA_START_DATE | CKA_END_DATE if is_key => Attr::Value(Vec::new()),
            CKA_KEY_GEN_MECHANISM if is_key => ulong(if self.spec.is_symmetric() {
                CKM_AES_KEY_GEN
            } else if rsa {
                CKM_RSA_PKCS_KEY_PAIR_GEN
            } else {
                CKM_EC_KEY_PAIR_GEN
            }),
            CKA_ENCRYPT if matches!(kind, Kind::Secret | Kind::Public) => boolean(encrypts),
            CKA_DECRYPT if matches!(kind, Kind::Secret | Kind::Private) => boolean(encrypts),
            CKA_SIGN if matches!(kind, Kind::Secret | Kind::Private) => boolean(signs && kind == Kind::Private),
            CKA_VERIFY if matches!(kind, Kind::Secret | Kind::Public) => boolean(signs && kind == Kind::Public),
            CKA_SIGN_RECOVER | CKA_UNWRAP if matches!(kind, Kind::Secret | Kind::Private) => boolean(false),
            CKA_VERIFY_RECOVER | CKA_WRAP if matches!(kind, Kind::Secret | Kind::Public) => boolean(false),
            CKA_TRUSTED if kind != Kind::Private => boolean(false),
            CKA_VALUE_LEN if kind == Kind::Secret => ulong(key_bits(self.spec) / 8),
            CKA_VALUE if kind.is_private() => Attr::Sensitive,
            CKA_PRIVATE_EXPONENT | CKA_PRIME_1 | CKA_PRIME_2 | CKA_EXPONENT_1 | CKA_EXPONENT_2 | CKA_COEFFICIENT
                if kind == Kind::Private && rsa =>
            {
                Attr::Sensitive
            }
            CKA_SUBJECT if matches!(kind, Kind::Private | Kind::Public) => Attr::Value(Vec::new()),
            CKA_MODULUS_BITS if rsa && kind == Kind::Public => ulong(key_bits(self.spec)),
            CKA_MODULUS | CKA_PUBLIC_EXPONENT if rsa && matches!(kind, Kind::Private | Kind::Public) => {
                let parts = public()?;
                let (n, e) = parts.rsa.as_ref().ok_or(Ckr::CKR_GENERAL_ERROR)?;
                Attr::Value(if attr == CKA_MODULUS { n.clone() } else { e.clone() })
            }
            CKA_EC_PARAMS if matches!(kind, Kind::Private | Kind::Public) => match ec_params(self.spec) {
                Some(p) => Attr::Value(p.to_vec()),
                None => Attr::Invalid,
            },
            CKA_EC_POINT if matches!(kind, Kind::Private | Kind::Public) && ec_params(self.spec).is_some() => {
                Attr::Value(public()?.ec_point.clone().ok_or(Ckr::CKR_GENERAL_ERROR)?)
            }
            CKA_PUBLIC_KEY_INFO if matches!(kind, Kind::Private | Kind::Public | Kind::Certificate) => {
                Attr::Value(public()?.spki.clone())
            }
            CKA_CERTIFICATE_TYPE if kind == Kind::Certificate => ulong(CKC_X_509),
            CKA_CERTIFICATE_CATEGORY if kind == Kind::Certificate => ulong(0),
            CKA_VALUE | CKA_SUBJECT | CKA_ISSUER | CKA_SERIAL_NUMBER if kind == Kind::Certificate => {
                let cert = cert()?.ok_or(Ckr::CKR_GENERAL_ERROR)?;
                Attr::Value(match attr {
                    CKA_VALUE => cert.der.clone(),
                    CKA_SERIAL_NUMBER => cert.serial.clone(),
                    _ => cert.subject.clone(),
                })
            }
            _ => Attr::Invalid,
        })
    }
}
