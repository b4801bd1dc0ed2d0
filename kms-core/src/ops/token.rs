//! What the PKCS#11 module needs of the KMS, and nothing of PKCS#11 itself: the token of an
//! instance (its label and PINs, kept as Argon2id hashes), a snapshot of the keys it shows, and
//! cryptography on one named key version under schemes richer than the API's algorithms.
//!
//! Every operation here goes through the same checks as the API: the store is synchronised
//! first, only Enabled keys of the right usage do cryptography, and a version must exist.

use std::collections::HashMap;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Call, Kms, check_usage, engine_error};
use crate::engine::{AEAD_IV_LEN, AEAD_TAG_LEN, CipherScheme, KeyHandle, SignScheme};
use crate::error::{KmsError, Result};
use crate::model::KeyUsage;
use crate::store::{self, KeyRecord, TokenRecord, hex, unhex};

/// Shortest PIN a token takes (bytes).
pub const MIN_PIN_LEN: usize = 4;
/// Longest PIN a token takes (bytes).
pub const MAX_PIN_LEN: usize = 255;
/// Longest token label (PKCS#11 pads it into 32 bytes).
pub const MAX_TOKEN_LABEL_LEN: usize = 32;

/// Which PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinRole {
    /// The security officer: initialises the token and the user PIN.
    SecurityOfficer,
    /// The normal user: uses the keys.
    User,
}

/// A token's public state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// The KMS instance the token shows.
    pub instance_id: String,
    /// The label given at initialisation, else the instance id.
    pub label: String,
    /// Whether an SO PIN was set.
    pub initialized: bool,
    /// Whether a user PIN was set.
    pub user_pin_initialized: bool,
}

/// A key as a token shows it.
#[derive(Clone, Debug)]
pub struct TokenKey {
    /// The key's metadata.
    pub key: Arc<KeyRecord>,
    /// The key's id, shareable without copying.
    pub key_id: Arc<str>,
    /// Its label: its oldest alias without `alias/`, else its key id.
    pub label: String,
    /// Its versions, the primary first, then newest first.
    pub versions: Vec<Arc<str>>,
}

/// One version of a key a token shows, resolved once for the operations that follow
/// ([`Kms::token_version`]).
#[derive(Clone)]
pub struct TokenVersion {
    key: Arc<KeyRecord>,
    access: Arc<super::access::KeyAccess>,
    handle: Arc<dyn KeyHandle>,
    version_id: Arc<str>,
    /// The metadata epoch it was resolved in.
    epoch: u64,
}

impl TokenVersion {
    /// The key's id.
    pub fn key_id(&self) -> &str {
        &self.key.key_id
    }

    /// The version's id.
    pub fn version_id(&self) -> &str {
        &self.version_id
    }

    /// The key's spec.
    pub fn spec(&self) -> crate::model::KeySpec {
        self.key.spec
    }

    /// The key's usage.
    pub fn usage(&self) -> KeyUsage {
        self.key.usage
    }
}

impl std::fmt::Debug for TokenVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVersion")
            .field("key_id", &self.key.key_id)
            .field("version_id", &self.version_id)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a token's keys, valid until the store changes.
#[derive(Debug, Default)]
pub struct TokenView {
    /// Every Enabled key of the instance, in creation order.
    pub keys: Vec<TokenKey>,
    by_label: HashMap<String, Vec<usize>>,
    by_id: HashMap<String, usize>,
    by_version: HashMap<String, usize>,
    epoch: u64,
}

impl TokenView {
    /// Indices into [`TokenView::keys`] of the keys with this label.
    pub fn with_label(&self, label: &str) -> &[usize] {
        self.by_label.get(label).map_or(&[], Vec::as_slice)
    }

    /// Index into [`TokenView::keys`] of a key by id.
    pub fn by_key_id(&self, key_id: &str) -> Option<usize> {
        self.by_id.get(key_id).copied()
    }

    /// Index into [`TokenView::keys`] of the key that has a version.
    pub fn by_version_id(&self, version_id: &str) -> Option<usize> {
        self.by_version.get(version_id).copied()
    }

    /// The cache epoch this snapshot was built in (it changes whenever the store does).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// The cached snapshot of each instance's token.
pub(crate) type TokenViews = HashMap<String, Arc<TokenView>>;

fn check_pin(pin: &[u8]) -> Result<()> {
    if (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
        Ok(())
    } else {
        Err(KmsError::invalid(
            "Pin",
            format!("a PIN has {MIN_PIN_LEN} to {MAX_PIN_LEN} bytes"),
        ))
    }
}

const PIN_HASH_SCHEME: &str = "argon2id-v19-m19456-t2-p1";

fn argon2() -> Result<argon2::Argon2<'static>> {
    let params = argon2::Params::new(19_456, 2, 1, Some(32)).map_err(KmsError::internal)?;
    Ok(argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    ))
}

/// A PIN's Argon2id hash, `scheme$salt$hash` in hex: what the store keeps, and what the PKCS#11
/// module's configuration maps to principals.
pub fn hash_pin(pin: &[u8]) -> Result<String> {
    check_pin(pin)?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| KmsError::Internal(format!("OS random: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    argon2()?
        .hash_password_into(pin, &salt, out.as_mut())
        .map_err(KmsError::internal)?;
    Ok(format!("{PIN_HASH_SCHEME}${}${}", hex(&salt), hex(out.as_ref())))
}

/// The salt and hash of a stored PIN hash (`scheme$salt$hash`).
fn parse_pin_hash(stored: &str) -> Result<(Vec<u8>, Vec<u8>)> {
    let unreadable = || KmsError::Internal("a stored PIN hash is not readable".into());
    let mut parts = stored.split('$');
    let (Some(PIN_HASH_SCHEME), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unreadable());
    };
    match (unhex(salt), unhex(hash)) {
        (Some(salt), Some(hash)) => Ok((salt, hash)),
        _ => Err(unreadable()),
    }
}

/// Whether `stored` is a hash made by [`hash_pin`] (its form only: no Argon2 run).
pub fn is_pin_hash(stored: &str) -> bool {
    parse_pin_hash(stored).is_ok()
}

/// Whether `pin` matches a hash made by [`hash_pin`], compared in constant time.
pub fn pin_matches(pin: &[u8], stored: &str) -> Result<bool> {
    let (salt, hash) = parse_pin_hash(stored)?;
    let mut out = Zeroizing::new(vec![0u8; hash.len()]);
    argon2()?
        .hash_password_into(pin, &salt, &mut out)
        .map_err(KmsError::internal)?;
    Ok(bool::from(out.as_slice().ct_eq(&hash)))
}

impl Kms {
    fn token_record(&self, instance_id: &str) -> Result<TokenRecord> {
        self.check_instance(instance_id)?;
        Ok(self
            .store
            .read(|c| store::get_token(c, instance_id))?
            .unwrap_or_else(|| TokenRecord {
                instance_id: instance_id.to_owned(),
                label: instance_id.to_owned(),
                ..TokenRecord::default()
            }))
    }

    /// The instance must exist (answered from the engine cache after the first call: this is on
    /// the module's hot path).
    fn check_instance(&self, instance_id: &str) -> Result<()> {
        self.engine_for(instance_id).map(|_| ())
    }

    /// The token of an instance.
    pub fn token_info(&self, instance_id: &str) -> Result<TokenInfo> {
        let t = self.token_record(instance_id)?;
        Ok(TokenInfo {
            instance_id: t.instance_id,
            label: t.label,
            initialized: t.so_pin_hash.is_some(),
            user_pin_initialized: t.user_pin_hash.is_some(),
        })
    }

    /// Initialises (or re-initialises) a token: sets its label and SO PIN and clears the user
    /// PIN. A token that has an SO PIN is re-initialised only with that PIN. Unlike a hardware
    /// token, this never destroys keys: they belong to the KMS, whose deletion is scheduled.
    pub fn init_token(&self, instance_id: &str, so_pin: &[u8], label: &str) -> Result<()> {
        check_pin(so_pin)?;
        let label = label.trim_end_matches([' ', '\0']);
        if label.is_empty() || label.len() > MAX_TOKEN_LABEL_LEN {
            return Err(KmsError::invalid(
                "Label",
                format!("a token label has 1 to {MAX_TOKEN_LABEL_LEN} bytes"),
            ));
        }
        let current = self.token_record(instance_id)?;
        if let Some(stored) = &current.so_pin_hash
            && !pin_matches(so_pin, stored)?
        {
            return Err(KmsError::PinIncorrect);
        }
        let record = TokenRecord {
            instance_id: instance_id.to_owned(),
            label: label.to_owned(),
            so_pin_hash: Some(hash_pin(so_pin)?),
            user_pin_hash: None,
        };
        let now = self.now_ms();
        self.write(|tx| {
            // Another process may have initialised the token since we read it.
            if store::get_token(tx, instance_id)?.and_then(|t| t.so_pin_hash) != current.so_pin_hash {
                return Err(KmsError::StateModifiedFailed(
                    "the token changed meanwhile; retry".into(),
                ));
            }
            store::put_token(tx, &record, now)
        })
    }

    /// Checks a PIN. Errors: `PinIncorrect`, or `TokenNotInitialized` when that PIN is not set.
    pub fn check_pin(&self, instance_id: &str, role: PinRole, pin: &[u8]) -> Result<()> {
        let t = self.token_record(instance_id)?;
        let stored = match role {
            PinRole::SecurityOfficer => t
                .so_pin_hash
                .ok_or(KmsError::TokenNotInitialized("the token has no SO PIN"))?,
            PinRole::User => t
                .user_pin_hash
                .ok_or(KmsError::TokenNotInitialized("the token has no user PIN"))?,
        };
        if pin.len() > MAX_PIN_LEN || !pin_matches(pin, &stored)? {
            return Err(KmsError::PinIncorrect);
        }
        Ok(())
    }

    /// Sets the user PIN, on the authority of the SO PIN.
    pub fn init_user_pin(&self, instance_id: &str, so_pin: &[u8], pin: &[u8]) -> Result<()> {
        check_pin(pin)?;
        self.check_pin(instance_id, PinRole::SecurityOfficer, so_pin)?;
        let hash = hash_pin(pin)?;
        self.update_token(instance_id, |t| t.user_pin_hash = Some(hash))
    }

    /// Changes a PIN, on the authority of its old value.
    pub fn set_pin(&self, instance_id: &str, role: PinRole, old: &[u8], new: &[u8]) -> Result<()> {
        check_pin(new)?;
        self.check_pin(instance_id, role, old)?;
        let hash = hash_pin(new)?;
        self.update_token(instance_id, |t| match role {
            PinRole::SecurityOfficer => t.so_pin_hash = Some(hash),
            PinRole::User => t.user_pin_hash = Some(hash),
        })
    }

    fn update_token(&self, instance_id: &str, change: impl FnOnce(&mut TokenRecord)) -> Result<()> {
        let now = self.now_ms();
        self.write(|tx| {
            let mut t = store::get_token(tx, instance_id)?
                .ok_or(KmsError::TokenNotInitialized("the token is not initialised"))?;
            change(&mut t);
            store::put_token(tx, &t, now)
        })
    }

    /// The keys a token shows, rebuilt only when the store changed since the last call.
    pub fn token_view(&self, instance_id: &str) -> Result<Arc<TokenView>> {
        let epoch = self.synced_epoch()?;
        // A view was built only for an instance that exists (and instances are never removed).
        if let Some(view) = self.token_views.read().get(instance_id)
            && view.epoch == epoch
        {
            return Ok(Arc::clone(view));
        }
        self.check_instance(instance_id)?;
        let rows = self.store.read(|c| store::token_keys(c, instance_id))?;
        let mut view = TokenView {
            epoch,
            ..TokenView::default()
        };
        for (key, mut versions, alias) in rows {
            if let Some(primary) = &key.primary_version
                && let Some(at) = versions.iter().position(|v| v == primary)
            {
                let primary = versions.remove(at);
                versions.insert(0, primary);
            }
            let label = match alias {
                Some(a) => a.strip_prefix("alias/").unwrap_or(&a).to_owned(),
                None => key.key_id.clone(),
            };
            let at = view.keys.len();
            view.by_label.entry(label.clone()).or_default().push(at);
            view.by_id.insert(key.key_id.clone(), at);
            for v in &versions {
                view.by_version.insert(v.clone(), at);
            }
            view.keys.push(TokenKey {
                key_id: Arc::from(key.key_id.as_str()),
                key: Arc::new(key),
                label,
                versions: versions.into_iter().map(Arc::from).collect(),
            });
        }
        let view = Arc::new(view);
        // Only a snapshot of the current epoch is kept; a slower builder of an older one loses.
        if self.epoch_now() == epoch {
            self.token_views
                .write()
                .insert(instance_id.to_owned(), Arc::clone(&view));
        }
        Ok(view)
    }

    /// One version of a key the token shows, resolved for the operations below: the key is
    /// Enabled and the version exists (answered from the caches on the hot path). PKCS#11 does
    /// this at C_*Init; each operation that follows is still authorized and audited.
    pub fn token_version(&self, key_id: &str, version_id: &str) -> Result<TokenVersion> {
        // Taken first: if the cache is dropped while we resolve, the operations re-resolve.
        let epoch = self.synced_epoch()?;
        let key = self.resolve(key_id)?;
        if key.state != crate::model::KeyState::Enabled {
            return Err(KmsError::KeyStateRejected { state: key.state });
        }
        let access = self.key_access(&key)?;
        let handle = self.handle(&key, version_id)?;
        Ok(TokenVersion {
            key,
            access,
            handle,
            version_id: Arc::from(version_id),
            epoch,
        })
    }

    /// Whether a token snapshot still shows the store as it is (a caller that keeps one, like
    /// a PKCS#11 session, uses it again without asking for it).
    pub fn view_is_current(&self, view: &TokenView) -> Result<bool> {
        Ok(self.synced_epoch()? == view.epoch)
    }

    /// Whether a resolved version still stands as resolved: nothing in the store changed since
    /// (a key that changed in any way is resolved again, with [`Kms::token_version`]).
    pub fn is_current(&self, version: &TokenVersion) -> Result<bool> {
        Ok(self.synced_epoch()? == version.epoch)
    }

    /// Runs `op` on the loaded version once `call` may use the key for `usage`: straight from the
    /// resolved version while the store has not changed since it was resolved, else after
    /// resolving it again (the key may have been disabled, retagged, given a policy…).
    fn with_version<'r, T>(
        &self,
        call: &Call<'r>,
        version: &'r TokenVersion,
        usage: KeyUsage,
        op: impl FnOnce(&dyn KeyHandle) -> Result<T>,
    ) -> Result<T> {
        if self.synced_epoch()? == version.epoch {
            let access = &version.access;
            call.touched_lent(&access.arn);
            call.used_key_lent(&access.key_id);
            self.authorize(call, call.action, &access.arn, Some(access), None)?;
            check_usage(&version.key, usage)?;
            return op(&*version.handle);
        }
        let key = self.usable(call, call.action, &version.key.key_id, usage, None)?;
        op(&*self.handle(&key, &version.version_id)?)
    }

    /// Signs pre-hashed data with one version of a SIGN/VERIFY key.
    pub(crate) fn sign_with_as<'r>(
        &self,
        call: &Call<'r>,
        version: &'r TokenVersion,
        scheme: SignScheme,
        data: &[u8],
    ) -> Result<Vec<u8>> {
        self.with_version(call, version, KeyUsage::SignVerify, |h| {
            h.sign(scheme, data).map_err(|e| engine_error(e, "Digest"))
        })
    }

    /// Verifies a signature with one version of a SIGN/VERIFY key.
    pub(crate) fn verify_with_as<'r>(
        &self,
        call: &Call<'r>,
        version: &'r TokenVersion,
        scheme: SignScheme,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool> {
        self.with_version(call, version, KeyUsage::SignVerify, |h| {
            h.verify(scheme, data, signature).map_err(|e| engine_error(e, "Digest"))
        })
    }

    /// Encrypts with the public key of one version of an asymmetric ENCRYPT/DECRYPT key.
    pub(crate) fn encrypt_with_as<'r>(
        &self,
        call: &Call<'r>,
        version: &'r TokenVersion,
        scheme: CipherScheme,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        self.with_version(call, version, KeyUsage::EncryptDecrypt, |h| {
            h.encrypt_with(scheme, plaintext)
                .map_err(|e| engine_error(e, "Plaintext"))
        })
    }

    /// Decrypts with one version of an asymmetric ENCRYPT/DECRYPT key.
    pub(crate) fn decrypt_with_as<'r>(
        &self,
        call: &Call<'r>,
        version: &'r TokenVersion,
        scheme: CipherScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.with_version(call, version, KeyUsage::EncryptDecrypt, |h| {
            h.decrypt_with(scheme, ciphertext)
                .map_err(|e| engine_error(e, "CiphertextBlob"))
        })
    }

    /// The checks of a symmetric operation under the caller's IV.
    fn check_aead(version: &TokenVersion, iv: &[u8]) -> Result<()> {
        if iv.len() != AEAD_IV_LEN {
            return Err(KmsError::invalid("Iv", format!("the IV has {AEAD_IV_LEN} bytes")));
        }
        if !version.key.spec.is_symmetric() {
            return Err(KmsError::Unsupported {
                what: "KeySpec",
                reason: "AEAD needs a symmetric key".into(),
            });
        }
        Ok(())
    }

    /// AEAD-encrypts `buf` in place with one version of a symmetric key, under the caller's IV
    /// and AAD (no blob: PKCS#11's CKM_AES_GCM). Returns the tag.
    pub(crate) fn aead_seal_as<'r>(
        &self,
        call: &Call<'r>,
        version: &'r TokenVersion,
        iv: &[u8],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; AEAD_TAG_LEN]> {
        self.with_version(call, version, KeyUsage::EncryptDecrypt, |h| {
            Self::check_aead(version, iv)?;
            h.seal_in_place(iv, aad, buf).map_err(|e| engine_error(e, "Plaintext"))
        })
    }

    /// AEAD-decrypts `buf` in place; any failure is `InvalidCiphertext`.
    pub(crate) fn aead_open_as<'r>(
        &self,
        call: &Call<'r>,
        version: &'r TokenVersion,
        iv: &[u8],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<()> {
        self.with_version(call, version, KeyUsage::EncryptDecrypt, |h| {
            Self::check_aead(version, iv)?;
            h.open_in_place(iv, aad, buf, tag).map_err(super::open_error)
        })
    }

    /// The DER SubjectPublicKeyInfo of one version of an asymmetric key, whatever its state
    /// (a public key is not a secret; the token shows only Enabled keys anyway).
    pub fn public_key_der(&self, key_id: &str, version_id: &str) -> Result<Vec<u8>> {
        self.sync()?;
        let key = self.resolve(key_id)?;
        if key.spec.is_symmetric() {
            return Err(KmsError::Unsupported {
                what: "KeySpec",
                reason: format!("{} has no public key", key.spec),
            });
        }
        self.handle(&key, version_id)?
            .public_key_der()
            .map_err(|e| engine_error(e, "KeyId"))
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
