//! The seam between the KMS and whatever holds key material.
//!
//! An engine knows key specs and algorithms, nothing of SQLite, policies or PKCS#11. The KMS asks
//! it to [`Engine::generate`] a version, keeps the opaque [`StoredKey`] it returns (sealed, when
//! the engine says it is secret material), and later hands those bytes back to [`Engine::load`]
//! to get a [`KeyHandle`] that it caches and uses on the hot paths.

pub mod software;

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::model::{AsymmetricAlgorithm, KeySpec, SigningAlgorithm};

pub use software::SoftwareEngine;

/// Length of the tag of every AEAD the engines offer.
pub const AEAD_TAG_LEN: usize = 16;
/// Length of the IV of every AEAD the engines offer.
pub const AEAD_IV_LEN: usize = 12;

/// An engine error. Cryptographic failures are opaque on purpose.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// This engine cannot do this spec or algorithm.
    #[error("not supported by this engine: {0}")]
    Unsupported(&'static str),
    /// The input does not fit the algorithm (wrong digest length, plaintext too long…).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// Authentication or decryption failed.
    #[error("cryptographic operation failed")]
    Crypto,
    /// The stored form of a key could not be read back.
    #[error("stored key is unreadable")]
    BadStoredKey,
    /// The backend (an HSM, the OS RNG) failed.
    #[error("engine backend failure: {0}")]
    Backend(String),
}

/// Names a key version to an engine (an HSM ties its objects to it).
#[derive(Clone, Copy, Debug)]
pub struct VersionRef<'a> {
    /// The key's id.
    pub key_id: &'a str,
    /// The version's id.
    pub version_id: &'a str,
}

/// What an engine returns for a new key version and gets back to load it: secret material for
/// the software engine (the store seals it), object identifiers for an HSM.
pub type StoredKey = Zeroizing<Vec<u8>>;

/// Something that makes and loads key versions. Object safe: the KMS holds an `Arc<dyn Engine>`.
pub trait Engine: Send + Sync {
    /// A short name for logs and descriptions.
    fn name(&self) -> &'static str;

    /// True when [`StoredKey`]s are key material that must be sealed before it is stored.
    fn stored_keys_are_secret(&self) -> bool;

    /// Whether this engine can make keys of `spec`.
    fn supports(&self, spec: KeySpec) -> bool;

    /// Makes the material of a new key version.
    fn generate(&self, spec: KeySpec, version: VersionRef<'_>) -> Result<StoredKey, EngineError>;

    /// Turns a stored form back into a usable key.
    fn load(&self, spec: KeySpec, version: VersionRef<'_>, stored: &[u8]) -> Result<Arc<dyn KeyHandle>, EngineError>;

    /// Destroys a version's material where the engine holds it (an HSM object), when its key is
    /// purged. Called only for engines whose stored keys are not secret: an engine whose stored
    /// form is the material itself holds nothing outside the store rows, which are deleted.
    fn destroy(&self, version: VersionRef<'_>, stored: &[u8]) -> Result<(), EngineError>;

    /// Fills `out` with random bytes from the engine's generator.
    fn fill_random(&self, out: &mut [u8]) -> Result<(), EngineError>;
}

/// A loaded key version. Methods an algorithm family does not support return
/// [`EngineError::Unsupported`].
pub trait KeyHandle: Send + Sync {
    /// The spec of this key.
    fn spec(&self) -> KeySpec;

    /// AEAD-encrypts `buf` in place and returns the tag.
    fn seal_in_place(&self, iv: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; AEAD_TAG_LEN], EngineError> {
        let _ = (iv, aad, buf);
        Err(EngineError::Unsupported("symmetric encryption"))
    }

    /// AEAD-decrypts `buf` in place after checking `tag`; on failure `buf` is unspecified.
    fn open_in_place(&self, iv: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), EngineError> {
        let _ = (iv, aad, buf, tag);
        Err(EngineError::Unsupported("symmetric decryption"))
    }

    /// Signs a digest the caller computed. Returns the signature (DER for ECDSA and SM2).
    fn sign_digest(&self, alg: SigningAlgorithm, digest: &[u8]) -> Result<Vec<u8>, EngineError> {
        let _ = (alg, digest);
        Err(EngineError::Unsupported("signing"))
    }

    /// Verifies a signature over a digest. `Ok(false)` for a signature that does not verify.
    fn verify_digest(&self, alg: SigningAlgorithm, digest: &[u8], signature: &[u8]) -> Result<bool, EngineError> {
        let _ = (alg, digest, signature);
        Err(EngineError::Unsupported("verification"))
    }

    /// Encrypts with the public key.
    fn encrypt(&self, alg: AsymmetricAlgorithm, plaintext: &[u8]) -> Result<Vec<u8>, EngineError> {
        let _ = (alg, plaintext);
        Err(EngineError::Unsupported("asymmetric encryption"))
    }

    /// Decrypts with the private key.
    fn decrypt(&self, alg: AsymmetricAlgorithm, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        let _ = (alg, ciphertext);
        Err(EngineError::Unsupported("asymmetric decryption"))
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    fn public_key_der(&self) -> Result<Vec<u8>, EngineError> {
        Err(EngineError::Unsupported("public key of a symmetric key"))
    }
}
