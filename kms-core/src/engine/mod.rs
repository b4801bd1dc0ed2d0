//! The seam between the KMS and whatever holds key material.
//!
//! An engine knows key specs and algorithms, nothing of SQLite, policies or PKCS#11. The KMS asks
//! it to [`Engine::generate`] a version, keeps the opaque [`StoredKey`] it returns (sealed, when
//! the engine says it is secret material), and later hands those bytes back to [`Engine::load`]
//! to get a [`KeyHandle`] that it caches and uses on the hot paths.

pub mod hsm;
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
    /// The backend cannot be reached (an HSM's module, token, PIN or connection).
    #[error("{0}")]
    Unavailable(String),
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

    /// Whether the backend can be reached now (an HSM engine connects); an error says why not.
    fn ready(&self) -> Result<(), EngineError> {
        Ok(())
    }

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

/// A hash function a signing or OAEP scheme names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-1 (OAEP only).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }
}

/// How an ECDSA or SM2 signature is written: DER (the KMS API, OpenSSL) or the fixed-size
/// `r || s` (PKCS#11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigEncoding {
    /// `SEQUENCE { r INTEGER, s INTEGER }`.
    Der,
    /// `r || s`, each as long as the curve order.
    Raw,
}

/// A signature scheme over data the caller already hashed (the KMS API and PKCS#11 both hand
/// the engine a digest or, for raw PKCS#1, an encoded DigestInfo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignScheme {
    /// ECDSA over a digest of any length the curve accepts (longer ones are truncated).
    Ecdsa(SigEncoding),
    /// SM2DSA over `e = SM3(Z || M)`.
    Sm2(SigEncoding),
    /// RSASSA-PKCS1-v1_5. `Some(hash)`: the data is that hash's digest and the engine adds the
    /// DigestInfo prefix; `None`: the data is the DigestInfo itself (PKCS#11 `CKM_RSA_PKCS`).
    RsaPkcs1(Option<HashAlg>),
    /// RSASSA-PSS with MGF1 over the same hash. `salt_len`: signing uses the digest length when
    /// `None`; verification accepts any salt length when `None`.
    RsaPss {
        /// The message digest (and MGF1) hash.
        hash: HashAlg,
        /// The salt length in bytes.
        salt_len: Option<usize>,
    },
}

/// An asymmetric encryption scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CipherScheme {
    /// RSAES-OAEP with MGF1 over the same hash and an empty label.
    RsaOaep(HashAlg),
    /// SM2 public key encryption (GB/T 32918.4), DER ciphertext.
    Sm2Pke,
}

impl SigningAlgorithm {
    /// The scheme an API signing algorithm names (the API's digests are all 32 bytes).
    pub fn scheme(self) -> SignScheme {
        match self {
            SigningAlgorithm::EcdsaSha256 => SignScheme::Ecdsa(SigEncoding::Der),
            SigningAlgorithm::Sm2Dsa => SignScheme::Sm2(SigEncoding::Der),
            SigningAlgorithm::RsaPkcs1Sha256 => SignScheme::RsaPkcs1(Some(HashAlg::Sha256)),
            SigningAlgorithm::RsaPssSha256 => SignScheme::RsaPss {
                hash: HashAlg::Sha256,
                salt_len: None,
            },
        }
    }
}

impl AsymmetricAlgorithm {
    /// The scheme an API encryption algorithm names.
    pub fn scheme(self) -> CipherScheme {
        match self {
            AsymmetricAlgorithm::RsaesOaepSha1 => CipherScheme::RsaOaep(HashAlg::Sha1),
            AsymmetricAlgorithm::RsaesOaepSha256 => CipherScheme::RsaOaep(HashAlg::Sha256),
            AsymmetricAlgorithm::Sm2Pke => CipherScheme::Sm2Pke,
        }
    }
}

/// Length of the digests the API's signing algorithms take (all are SHA-256 or SM3).
const API_DIGEST_LEN: usize = 32;

fn check_api_signing(spec: KeySpec, alg: SigningAlgorithm, digest: &[u8]) -> Result<(), EngineError> {
    if !spec.signing_algorithms().contains(&alg) {
        return Err(EngineError::Unsupported("this algorithm with this key spec"));
    }
    if digest.len() != API_DIGEST_LEN {
        return Err(EngineError::InvalidInput("the digest must be 32 bytes"));
    }
    Ok(())
}

fn check_api_cipher(spec: KeySpec, alg: AsymmetricAlgorithm) -> Result<(), EngineError> {
    if spec.asymmetric_algorithms().contains(&alg) {
        Ok(())
    } else {
        Err(EngineError::Unsupported("this algorithm with this key spec"))
    }
}

/// A loaded key version. Methods an algorithm family does not support return
/// [`EngineError::Unsupported`]. An engine implements the scheme methods ([`KeyHandle::sign`],
/// [`KeyHandle::verify`], [`KeyHandle::encrypt_with`], [`KeyHandle::decrypt_with`]); the API
/// forms (`sign_digest`…) check the API's algorithm and digest rules and call them.
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

    /// Signs pre-hashed `data` under `scheme`.
    fn sign(&self, scheme: SignScheme, data: &[u8]) -> Result<Vec<u8>, EngineError> {
        let _ = (scheme, data);
        Err(EngineError::Unsupported("signing"))
    }

    /// Verifies a signature over pre-hashed `data`. `Ok(false)` for one that does not verify.
    fn verify(&self, scheme: SignScheme, data: &[u8], signature: &[u8]) -> Result<bool, EngineError> {
        let _ = (scheme, data, signature);
        Err(EngineError::Unsupported("verification"))
    }

    /// Encrypts with the public key.
    fn encrypt_with(&self, scheme: CipherScheme, plaintext: &[u8]) -> Result<Vec<u8>, EngineError> {
        let _ = (scheme, plaintext);
        Err(EngineError::Unsupported("asymmetric encryption"))
    }

    /// Decrypts with the private key.
    fn decrypt_with(&self, scheme: CipherScheme, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        let _ = (scheme, ciphertext);
        Err(EngineError::Unsupported("asymmetric decryption"))
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    fn public_key_der(&self) -> Result<Vec<u8>, EngineError> {
        Err(EngineError::Unsupported("public key of a symmetric key"))
    }

    /// AsymmetricSign's rules: an algorithm of the key's spec over a 32-byte digest; DER for
    /// ECDSA and SM2.
    fn sign_digest(&self, alg: SigningAlgorithm, digest: &[u8]) -> Result<Vec<u8>, EngineError> {
        check_api_signing(self.spec(), alg, digest)?;
        self.sign(alg.scheme(), digest)
    }

    /// AsymmetricVerify's rules, as [`KeyHandle::sign_digest`].
    fn verify_digest(&self, alg: SigningAlgorithm, digest: &[u8], signature: &[u8]) -> Result<bool, EngineError> {
        check_api_signing(self.spec(), alg, digest)?;
        self.verify(alg.scheme(), digest, signature)
    }

    /// AsymmetricEncrypt: an algorithm of the key's spec.
    fn encrypt(&self, alg: AsymmetricAlgorithm, plaintext: &[u8]) -> Result<Vec<u8>, EngineError> {
        check_api_cipher(self.spec(), alg)?;
        self.encrypt_with(alg.scheme(), plaintext)
    }

    /// AsymmetricDecrypt: an algorithm of the key's spec.
    fn decrypt(&self, alg: AsymmetricAlgorithm, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        check_api_cipher(self.spec(), alg)?;
        self.decrypt_with(alg.scheme(), ciphertext)
    }
}
