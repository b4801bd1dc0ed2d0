//! The software engine: every spec on the RustCrypto crates, all of them constant time
//! (RSA on `rsa` 0.10, whose private operations run on crypto-bigint's constant-time arithmetic).
//!
//! Stored forms: the raw key for AES and SM4, the 32-byte scalar for the elliptic curves, and
//! the PKCS#8 DER document for RSA. The KMS seals them before they reach the store.

use std::sync::Arc;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::{AesGcm, Nonce, Tag};
use getrandom::SysRng;
use p256::elliptic_curve::Generate;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::signature::SignatureEncoding;
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier, RandomizedPrehashSigner};
use sm4::Sm4;
use zeroize::Zeroizing;

use super::{
    AEAD_TAG_LEN, CipherScheme, Engine, EngineError, HashAlg, KeyHandle, SigEncoding, SignScheme, StoredKey, VersionRef,
};
use crate::model::KeySpec;

/// The distinguishing identifier SM2 signatures use when the caller names none (GB/T 32918).
pub const SM2_DEFAULT_DISTID: &str = "1234567812345678";

/// Length of SM2's `e = SM3(Z || M)`.
const SM2_DIGEST_LEN: usize = 32;

/// The constant-time software engine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoftwareEngine;

impl SoftwareEngine {
    /// A new software engine.
    pub fn new() -> Self {
        SoftwareEngine
    }
}

fn random_bytes(len: usize) -> Result<Zeroizing<Vec<u8>>, EngineError> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    getrandom::fill(&mut out).map_err(|e| EngineError::Backend(format!("OS random: {e}")))?;
    Ok(out)
}

fn rsa_bits(spec: KeySpec) -> Option<usize> {
    match spec {
        KeySpec::Rsa2048 => Some(2048),
        KeySpec::Rsa3072 => Some(3072),
        KeySpec::Rsa4096 => Some(4096),
        _ => None,
    }
}

/// Whether an RSA key's modulus has exactly the bits its spec names.
fn modulus_fits(spec: KeySpec, key: &rsa::PublicKey) -> bool {
    use rsa::traits::PublicKeyParts;
    usize::try_from(key.n().bit_width()).ok() == rsa_bits(spec)
}

fn symmetric_key_len(spec: KeySpec) -> Option<usize> {
    match spec {
        KeySpec::Aes256 => Some(32),
        KeySpec::Aes192 => Some(24),
        KeySpec::Aes128 | KeySpec::Sm4 => Some(16),
        _ => None,
    }
}

impl Engine for SoftwareEngine {
    fn name(&self) -> &'static str {
        "software"
    }

    fn stored_keys_are_secret(&self) -> bool {
        true
    }

    fn supports(&self, _spec: KeySpec) -> bool {
        true
    }

    fn generate(&self, spec: KeySpec, _version: VersionRef<'_>) -> Result<StoredKey, EngineError> {
        if let Some(len) = symmetric_key_len(spec) {
            return random_bytes(len);
        }
        if let Some(bits) = rsa_bits(spec) {
            let key = rsa::PrivateKey::new(&mut SysRng, bits).map_err(|_| EngineError::Crypto)?;
            let der = key.to_pkcs8_der().map_err(|_| EngineError::Crypto)?;
            return Ok(Zeroizing::new(der.as_bytes().to_vec()));
        }
        let os_rng_failed = |e| EngineError::Backend(format!("OS random: {e}"));
        let scalar = match spec {
            KeySpec::EcP256 => p256::ecdsa::SigningKey::try_generate()
                .map_err(os_rng_failed)?
                .to_bytes()
                .to_vec(),
            KeySpec::EcP256K => k256::ecdsa::SigningKey::try_generate()
                .map_err(os_rng_failed)?
                .to_bytes()
                .to_vec(),
            KeySpec::EcSm2 => sm2::SecretKey::try_generate()
                .map_err(os_rng_failed)?
                .to_bytes()
                .to_vec(),
            _ => return Err(EngineError::Unsupported("key spec")),
        };
        Ok(Zeroizing::new(scalar))
    }

    fn load(&self, spec: KeySpec, _version: VersionRef<'_>, stored: &[u8]) -> Result<Arc<dyn KeyHandle>, EngineError> {
        Ok(match spec {
            KeySpec::Aes128 => Arc::new(SymmetricKey::Aes128(Box::new(
                AesGcm::new_from_slice(stored).map_err(|_| EngineError::BadStoredKey)?,
            ))),
            KeySpec::Aes192 => Arc::new(SymmetricKey::Aes192(Box::new(
                AesGcm::new_from_slice(stored).map_err(|_| EngineError::BadStoredKey)?,
            ))),
            KeySpec::Aes256 => Arc::new(SymmetricKey::Aes256(Box::new(
                AesGcm::new_from_slice(stored).map_err(|_| EngineError::BadStoredKey)?,
            ))),
            KeySpec::Sm4 => Arc::new(SymmetricKey::Sm4(Box::new(
                AesGcm::new_from_slice(stored).map_err(|_| EngineError::BadStoredKey)?,
            ))),
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                let key = rsa::PrivateKey::from_pkcs8_der(stored).map_err(|_| EngineError::BadStoredKey)?;
                if !modulus_fits(spec, key.as_public_key()) {
                    return Err(EngineError::BadStoredKey);
                }
                Arc::new(RsaKey::new(spec, key))
            }
            KeySpec::EcP256 => Arc::new(P256Key::new(
                p256::ecdsa::SigningKey::from_slice(stored).map_err(|_| EngineError::BadStoredKey)?,
            )),
            KeySpec::EcP256K => Arc::new(K256Key::new(
                k256::ecdsa::SigningKey::from_slice(stored).map_err(|_| EngineError::BadStoredKey)?,
            )),
            KeySpec::EcSm2 => Arc::new(Sm2Key::new(stored)?),
        })
    }

    fn destroy(&self, _version: VersionRef<'_>, _stored: &[u8]) -> Result<(), EngineError> {
        Ok(())
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), EngineError> {
        getrandom::fill(out).map_err(|e| EngineError::Backend(format!("OS random: {e}")))
    }
}

/// A symmetric key: the cipher state holds the expanded key and zeroizes it on drop.
enum SymmetricKey {
    Aes128(Box<AesGcm<Aes128, U12>>),
    Aes192(Box<AesGcm<Aes192, U12>>),
    Aes256(Box<AesGcm<Aes256, U12>>),
    Sm4(Box<AesGcm<Sm4, U12>>),
}

/// Runs `$body` with `$c` bound to whichever cipher the key holds.
macro_rules! with_cipher {
    ($key:expr, $c:ident => $body:expr) => {
        match $key {
            SymmetricKey::Aes128($c) => $body,
            SymmetricKey::Aes192($c) => $body,
            SymmetricKey::Aes256($c) => $body,
            SymmetricKey::Sm4($c) => $body,
        }
    };
}

impl KeyHandle for SymmetricKey {
    fn spec(&self) -> KeySpec {
        match self {
            SymmetricKey::Aes128(_) => KeySpec::Aes128,
            SymmetricKey::Aes192(_) => KeySpec::Aes192,
            SymmetricKey::Aes256(_) => KeySpec::Aes256,
            SymmetricKey::Sm4(_) => KeySpec::Sm4,
        }
    }

    fn seal_in_place(&self, iv: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; AEAD_TAG_LEN], EngineError> {
        let nonce = Nonce::<U12>::try_from(iv).map_err(|_| EngineError::InvalidInput("IV length"))?;
        let tag = with_cipher!(self, c => c.encrypt_inout_detached(&nonce, aad, buf.into()))
            .map_err(|_| EngineError::Crypto)?;
        Ok(tag.into())
    }

    fn open_in_place(&self, iv: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), EngineError> {
        let nonce = Nonce::<U12>::try_from(iv).map_err(|_| EngineError::Crypto)?;
        let tag = Tag::try_from(tag).map_err(|_| EngineError::Crypto)?;
        with_cipher!(self, c => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag))
            .map_err(|_| EngineError::Crypto)
    }
}

/// The scheme's signature encoding, for the elliptic-curve families only.
fn ec_encoding(scheme: SignScheme, sm2: bool) -> Result<SigEncoding, EngineError> {
    match (scheme, sm2) {
        (SignScheme::Ecdsa(encoding), false) | (SignScheme::Sm2(encoding), true) => Ok(encoding),
        _ => Err(EngineError::Unsupported("this signature scheme with this key spec")),
    }
}

/// Signs and verifies through the public half of a key pair, held beside the private half.
macro_rules! delegate_public {
    () => {
        fn verify(&self, scheme: SignScheme, data: &[u8], signature: &[u8]) -> Result<bool, EngineError> {
            self.public.verify(scheme, data, signature)
        }

        fn encrypt_with(&self, scheme: CipherScheme, plaintext: &[u8]) -> Result<Vec<u8>, EngineError> {
            self.public.encrypt_with(scheme, plaintext)
        }

        fn public_key_der(&self) -> Result<Vec<u8>, EngineError> {
            self.public.public_key_der()
        }
    };
}

impl SoftwareEngine {
    /// Loads only a public key (a DER SubjectPublicKeyInfo): it verifies and encrypts.
    /// For keys made elsewhere: test vectors, certificates, a peer's key.
    pub fn load_public(&self, spec: KeySpec, spki_der: &[u8]) -> Result<Arc<dyn KeyHandle>, EngineError> {
        use rsa::pkcs8::DecodePublicKey;
        let bad = |_| EngineError::InvalidInput("not a public key of this spec");
        Ok(match spec {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                let key = rsa::PublicKey::from_public_key_der(spki_der).map_err(bad)?;
                if !modulus_fits(spec, &key) {
                    return Err(EngineError::InvalidInput(
                        "the RSA modulus is not the size of this spec",
                    ));
                }
                Arc::new(RsaPublic { spec, key })
            }
            KeySpec::EcP256 => Arc::new(P256Public(
                p256::ecdsa::VerifyingKey::from_public_key_der(spki_der).map_err(bad)?,
            )),
            KeySpec::EcP256K => Arc::new(K256Public(
                k256::ecdsa::VerifyingKey::from_public_key_der(spki_der).map_err(bad)?,
            )),
            KeySpec::EcSm2 => Arc::new(Sm2Public::new(
                sm2::PublicKey::from_public_key_der(spki_der).map_err(bad)?,
            )?),
            _ => return Err(EngineError::Unsupported("public keys of symmetric specs")),
        })
    }
}

/// An ECDSA key pair on a short-Weierstrass curve; one definition serves P-256 and secp256k1.
macro_rules! ecdsa_key {
    ($private:ident, $public:ident, $curve:ident, $spec:expr) => {
        struct $public($curve::ecdsa::VerifyingKey);

        impl KeyHandle for $public {
            fn spec(&self) -> KeySpec {
                $spec
            }

            fn verify(&self, scheme: SignScheme, digest: &[u8], signature: &[u8]) -> Result<bool, EngineError> {
                let parsed = match ec_encoding(scheme, false)? {
                    SigEncoding::Der => $curve::ecdsa::Signature::from_der(signature),
                    SigEncoding::Raw => $curve::ecdsa::Signature::from_slice(signature),
                };
                let Ok(sig) = parsed else {
                    return Ok(false);
                };
                // ECDSA accepts (r, s) and (r, n - s) alike, but k256's verifier takes only the
                // low-S form (a Bitcoin rule): normalise, or half of other signers' signatures fail.
                let sig = sig.normalize_s();
                Ok(self.0.verify_prehash(digest, &sig).is_ok())
            }

            fn public_key_der(&self) -> Result<Vec<u8>, EngineError> {
                let doc = self.0.to_public_key_der().map_err(|_| EngineError::Crypto)?;
                Ok(doc.as_bytes().to_vec())
            }
        }

        struct $private {
            key: $curve::ecdsa::SigningKey,
            public: $public,
        }

        impl $private {
            fn new(key: $curve::ecdsa::SigningKey) -> Self {
                let public = $public(*key.verifying_key());
                $private { key, public }
            }
        }

        impl KeyHandle for $private {
            fn spec(&self) -> KeySpec {
                $spec
            }

            fn sign(&self, scheme: SignScheme, digest: &[u8]) -> Result<Vec<u8>, EngineError> {
                let encoding = ec_encoding(scheme, false)?;
                let sig: $curve::ecdsa::Signature = self
                    .key
                    .sign_prehash(digest)
                    .map_err(|_| EngineError::InvalidInput("the digest is too short for this curve"))?;
                Ok(match encoding {
                    SigEncoding::Der => sig.to_der().to_vec(),
                    SigEncoding::Raw => sig.to_vec(),
                })
            }

            delegate_public!();
        }
    };
}

ecdsa_key!(P256Key, P256Public, p256, KeySpec::EcP256);
ecdsa_key!(K256Key, K256Public, k256, KeySpec::EcP256K);

/// The public half of an SM2 key: verifies SM2DSA, encrypts SM2PKE.
struct Sm2Public {
    verify: sm2::dsa::VerifyingKey,
    encrypt: sm2::pke::EncryptingKey,
}

impl Sm2Public {
    fn new(public: sm2::PublicKey) -> Result<Self, EngineError> {
        Ok(Sm2Public {
            verify: sm2::dsa::VerifyingKey::new(SM2_DEFAULT_DISTID, public).map_err(|_| EngineError::Crypto)?,
            encrypt: sm2::pke::EncryptingKey::new(public),
        })
    }
}

fn sm2_digest(digest: &[u8]) -> Result<(), EngineError> {
    if digest.len() == SM2_DIGEST_LEN {
        Ok(())
    } else {
        Err(EngineError::InvalidInput("SM2 signs a 32-byte e = SM3(Z || M)"))
    }
}

impl KeyHandle for Sm2Public {
    fn spec(&self) -> KeySpec {
        KeySpec::EcSm2
    }

    fn verify(&self, scheme: SignScheme, digest: &[u8], signature: &[u8]) -> Result<bool, EngineError> {
        let parsed = match ec_encoding(scheme, true)? {
            SigEncoding::Der => sm2::dsa::Signature::from_der(signature),
            SigEncoding::Raw => sm2::dsa::Signature::from_slice(signature),
        };
        sm2_digest(digest)?;
        let Ok(sig) = parsed else {
            return Ok(false);
        };
        Ok(self.verify.verify_prehash(digest, &sig).is_ok())
    }

    fn encrypt_with(&self, scheme: CipherScheme, plaintext: &[u8]) -> Result<Vec<u8>, EngineError> {
        if scheme != CipherScheme::Sm2Pke {
            return Err(EngineError::Unsupported("this cipher scheme with an SM2 key"));
        }
        self.encrypt
            .encrypt_der(&mut SysRng, plaintext)
            .map_err(|_| EngineError::Crypto)
    }

    fn public_key_der(&self) -> Result<Vec<u8>, EngineError> {
        let public = sm2::PublicKey::from_affine(*self.verify.as_affine()).map_err(|_| EngineError::Crypto)?;
        let doc = public.to_public_key_der().map_err(|_| EngineError::Crypto)?;
        Ok(doc.as_bytes().to_vec())
    }
}

/// An SM2 key: the same scalar signs (SM2DSA) and decrypts (SM2PKE).
struct Sm2Key {
    sign: sm2::dsa::SigningKey,
    decrypt: sm2::pke::DecryptingKey,
    public: Sm2Public,
}

impl Sm2Key {
    fn new(scalar: &[u8]) -> Result<Self, EngineError> {
        let sign =
            sm2::dsa::SigningKey::from_slice(SM2_DEFAULT_DISTID, scalar).map_err(|_| EngineError::BadStoredKey)?;
        let decrypt = sm2::pke::DecryptingKey::from_slice(scalar).map_err(|_| EngineError::BadStoredKey)?;
        let public = sm2::PublicKey::from_affine(*sign.verifying_key().as_affine()).map_err(|_| EngineError::Crypto)?;
        Ok(Sm2Key {
            sign,
            decrypt,
            public: Sm2Public::new(public)?,
        })
    }
}

impl KeyHandle for Sm2Key {
    fn spec(&self) -> KeySpec {
        KeySpec::EcSm2
    }

    fn sign(&self, scheme: SignScheme, digest: &[u8]) -> Result<Vec<u8>, EngineError> {
        let encoding = ec_encoding(scheme, true)?;
        sm2_digest(digest)?;
        let sig: sm2::dsa::Signature = self
            .sign
            .sign_prehash_with_rng(&mut SysRng, digest)
            .map_err(|_| EngineError::Crypto)?;
        Ok(match encoding {
            SigEncoding::Der => sig.to_der().to_vec(),
            SigEncoding::Raw => sig.to_vec(),
        })
    }

    fn decrypt_with(&self, scheme: CipherScheme, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        if scheme != CipherScheme::Sm2Pke {
            return Err(EngineError::Unsupported("this cipher scheme with an SM2 key"));
        }
        self.decrypt
            .decrypt_der(ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| EngineError::Crypto)
    }

    delegate_public!();
}

/// Runs `$body` with `$d` bound to the digest type of a [`HashAlg`].
macro_rules! with_hash {
    ($hash:expr, $d:ident => $body:expr) => {
        match $hash {
            HashAlg::Sha1 => {
                type $d = sha1::Sha1;
                $body
            }
            HashAlg::Sha256 => {
                type $d = sha2::Sha256;
                $body
            }
            HashAlg::Sha384 => {
                type $d = sha2::Sha384;
                $body
            }
            HashAlg::Sha512 => {
                type $d = sha2::Sha512;
                $body
            }
        }
    };
}

fn pkcs1_padding(hash: Option<HashAlg>) -> rsa::Pkcs1v15Sign {
    match hash {
        None => rsa::Pkcs1v15Sign::new_unprefixed(),
        Some(h) => with_hash!(h, D => rsa::Pkcs1v15Sign::new::<D>()),
    }
}

fn check_hashed(hash: HashAlg, data: &[u8]) -> Result<(), EngineError> {
    if data.len() == hash.digest_len() {
        Ok(())
    } else {
        Err(EngineError::InvalidInput("the digest length does not match its hash"))
    }
}

/// The public half of an RSA key.
struct RsaPublic {
    spec: KeySpec,
    key: rsa::PublicKey,
}

impl KeyHandle for RsaPublic {
    fn spec(&self) -> KeySpec {
        self.spec
    }

    fn verify(&self, scheme: SignScheme, data: &[u8], signature: &[u8]) -> Result<bool, EngineError> {
        let ok = match scheme {
            SignScheme::RsaPkcs1(hash) => {
                if let Some(h) = hash {
                    check_hashed(h, data)?;
                }
                self.key.verify(pkcs1_padding(hash), data, signature).is_ok()
            }
            SignScheme::RsaPss { hash, salt_len } => {
                check_hashed(hash, data)?;
                // Without a salt length any verifies, as OpenSSL's verifier does.
                with_hash!(hash, D => {
                    let mut pss = rsa::Pss::<D>::new();
                    pss.salt_len = salt_len;
                    self.key.verify(pss, data, signature).is_ok()
                })
            }
            _ => return Err(EngineError::Unsupported("this signature scheme with an RSA key")),
        };
        Ok(ok)
    }

    fn encrypt_with(&self, scheme: CipherScheme, plaintext: &[u8]) -> Result<Vec<u8>, EngineError> {
        let CipherScheme::RsaOaep(hash) = scheme else {
            return Err(EngineError::Unsupported("this cipher scheme with an RSA key"));
        };
        with_hash!(hash, D => self.key.oaep_encrypt::<D>(plaintext))
            .map_err(|_| EngineError::InvalidInput("the plaintext is too long for this key"))
    }

    fn public_key_der(&self) -> Result<Vec<u8>, EngineError> {
        let doc = self.key.to_public_key_der().map_err(|_| EngineError::Crypto)?;
        Ok(doc.as_bytes().to_vec())
    }
}

/// An RSA key pair.
struct RsaKey {
    key: rsa::PrivateKey,
    public: RsaPublic,
}

impl RsaKey {
    fn new(spec: KeySpec, key: rsa::PrivateKey) -> Self {
        RsaKey {
            public: RsaPublic {
                spec,
                key: key.to_public_key(),
            },
            key,
        }
    }
}

impl KeyHandle for RsaKey {
    fn spec(&self) -> KeySpec {
        self.public.spec
    }

    fn sign(&self, scheme: SignScheme, data: &[u8]) -> Result<Vec<u8>, EngineError> {
        match scheme {
            SignScheme::RsaPkcs1(hash) => {
                if let Some(h) = hash {
                    check_hashed(h, data)?;
                }
                self.key
                    .sign(pkcs1_padding(hash), data)
                    .map_err(|_| EngineError::InvalidInput("the data is too long for this key"))
            }
            SignScheme::RsaPss { hash, salt_len } => {
                check_hashed(hash, data)?;
                with_hash!(hash, D => {
                    let pss = rsa::Pss::<D>::new_with_salt(salt_len.unwrap_or(hash.digest_len()));
                    self.key.sign_with_rng(&mut SysRng, pss, data)
                })
                .map_err(|_| EngineError::InvalidInput("the salt is too long for this key"))
            }
            _ => Err(EngineError::Unsupported("this signature scheme with an RSA key")),
        }
    }

    fn decrypt_with(&self, scheme: CipherScheme, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        let CipherScheme::RsaOaep(hash) = scheme else {
            return Err(EngineError::Unsupported("this cipher scheme with an RSA key"));
        };
        with_hash!(hash, D => self.key.oaep_decrypt::<D>(ciphertext))
            .map(Zeroizing::new)
            .map_err(|_| EngineError::Crypto)
    }

    delegate_public!();
}

#[cfg(test)]
#[path = "software_tests.rs"]
mod tests;
