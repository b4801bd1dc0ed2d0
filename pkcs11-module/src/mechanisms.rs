//! The mechanisms the token offers, what `C_GetMechanismInfo` says of them, and their parsed
//! parameters. The list tells the truth: everything in it works, and nothing else is accepted.

use cryptoki_sys::*;
use kms_core::engine::{CipherScheme, HashAlg, SigEncoding, SignScheme};
use kms_core::model::KeySpec;
use sha2::Digest;
use zeroize::Zeroizing;

use crate::error::{Ckr, Result};

/// SM2DSA over `e = SM3(Z || M)` computed by the caller; signature `r || s` (vendor-defined).
pub const CKM_TESSERA_SM2: CK_MECHANISM_TYPE = CKM_VENDOR_DEFINED | 0x5453_0001;
/// SM2 public key encryption, DER ciphertext (vendor-defined).
pub const CKM_TESSERA_SM2_ENCRYPT: CK_MECHANISM_TYPE = CKM_VENDOR_DEFINED | 0x5453_0002;
/// SM4-GCM with CK_GCM_PARAMS, as CKM_AES_GCM (vendor-defined).
pub const CKM_TESSERA_SM4_GCM: CK_MECHANISM_TYPE = CKM_VENDOR_DEFINED | 0x5453_0003;

const SIGN_VERIFY: CK_FLAGS = CKF_SIGN | CKF_VERIFY;
const ENCRYPT_DECRYPT: CK_FLAGS = CKF_ENCRYPT | CKF_DECRYPT;
const EC_FLAGS: CK_FLAGS = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

/// Every mechanism: (type, min key size, max key size, flags). Key sizes are bytes for AES and
/// SM4, bits for RSA and EC, as the spec says.
pub const MECHANISMS: &[(CK_MECHANISM_TYPE, CK_ULONG, CK_ULONG, CK_FLAGS)] = &[
    (CKM_AES_KEY_GEN, 16, 32, CKF_GENERATE),
    (CKM_AES_GCM, 16, 32, ENCRYPT_DECRYPT),
    (CKM_EC_KEY_PAIR_GEN, 256, 256, CKF_GENERATE_KEY_PAIR | EC_FLAGS),
    (CKM_ECDSA, 256, 256, SIGN_VERIFY | EC_FLAGS),
    (CKM_ECDSA_SHA256, 256, 256, SIGN_VERIFY | EC_FLAGS),
    (CKM_ECDSA_SHA384, 256, 256, SIGN_VERIFY | EC_FLAGS),
    (CKM_ECDSA_SHA512, 256, 256, SIGN_VERIFY | EC_FLAGS),
    (CKM_RSA_PKCS_KEY_PAIR_GEN, 2048, 4096, CKF_GENERATE_KEY_PAIR),
    (CKM_RSA_PKCS, 2048, 4096, SIGN_VERIFY),
    (CKM_SHA256_RSA_PKCS, 2048, 4096, SIGN_VERIFY),
    (CKM_SHA384_RSA_PKCS, 2048, 4096, SIGN_VERIFY),
    (CKM_SHA512_RSA_PKCS, 2048, 4096, SIGN_VERIFY),
    (CKM_RSA_PKCS_PSS, 2048, 4096, SIGN_VERIFY),
    (CKM_SHA256_RSA_PKCS_PSS, 2048, 4096, SIGN_VERIFY),
    (CKM_SHA384_RSA_PKCS_PSS, 2048, 4096, SIGN_VERIFY),
    (CKM_SHA512_RSA_PKCS_PSS, 2048, 4096, SIGN_VERIFY),
    (CKM_RSA_PKCS_OAEP, 2048, 4096, ENCRYPT_DECRYPT),
    (CKM_SHA256, 0, 0, CKF_DIGEST),
    (CKM_SHA384, 0, 0, CKF_DIGEST),
    (CKM_SHA512, 0, 0, CKF_DIGEST),
    (CKM_TESSERA_SM2, 256, 256, SIGN_VERIFY),
    (CKM_TESSERA_SM2_ENCRYPT, 256, 256, ENCRYPT_DECRYPT),
    (CKM_TESSERA_SM4_GCM, 16, 16, ENCRYPT_DECRYPT),
];

/// The info of one mechanism.
pub fn info(mechanism: CK_MECHANISM_TYPE) -> Option<(CK_ULONG, CK_ULONG, CK_FLAGS)> {
    MECHANISMS
        .iter()
        .find(|(m, ..)| *m == mechanism)
        .map(|&(_, min, max, flags)| (min, max, flags))
}

/// AEAD parameters (CK_GCM_PARAMS).
#[derive(Clone, Debug)]
pub struct Gcm {
    /// SM4 (the vendor mechanism) rather than AES.
    pub sm4: bool,
    /// The IV (12 bytes).
    pub iv: Vec<u8>,
    /// Additional authenticated data.
    pub aad: Vec<u8>,
}

/// A mechanism with its parameters, as the FFI edge parsed it.
#[derive(Clone, Debug)]
pub enum Mechanism {
    /// CKM_AES_GCM, or the vendor SM4-GCM.
    Gcm(Gcm),
    /// CKM_ECDSA (`None`: the caller hashed) and CKM_ECDSA_SHAx.
    Ecdsa(Option<HashAlg>),
    /// CKM_RSA_PKCS (`None`: the data is a DigestInfo) and CKM_SHAx_RSA_PKCS.
    RsaPkcs(Option<HashAlg>),
    /// CKM_RSA_PKCS_PSS (`prehashed`) and CKM_SHAx_RSA_PKCS_PSS.
    RsaPss {
        /// The hash (and MGF1 hash).
        hash: HashAlg,
        /// The salt length.
        salt_len: usize,
        /// Whether the caller passes the digest (CKM_RSA_PKCS_PSS) or the message.
        prehashed: bool,
    },
    /// CKM_RSA_PKCS_OAEP.
    RsaOaep(HashAlg),
    /// Vendor SM2DSA (the caller passes e).
    Sm2,
    /// Vendor SM2 encryption.
    Sm2Encrypt,
    /// CKM_SHAx.
    Digest(HashAlg),
    /// CKM_AES_KEY_GEN.
    AesKeyGen,
    /// CKM_EC_KEY_PAIR_GEN.
    EcKeyPairGen,
    /// CKM_RSA_PKCS_KEY_PAIR_GEN.
    RsaKeyPairGen,
}

/// The hash a CKM_SHAx or CKG_MGF1_SHAx names.
pub fn hash_of(mechanism: CK_MECHANISM_TYPE) -> Option<HashAlg> {
    match mechanism {
        CKM_SHA_1 => Some(HashAlg::Sha1),
        CKM_SHA256 => Some(HashAlg::Sha256),
        CKM_SHA384 => Some(HashAlg::Sha384),
        CKM_SHA512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// The MGF1 function of a hash.
pub fn mgf_of(hash: HashAlg) -> CK_RSA_PKCS_MGF_TYPE {
    match hash {
        HashAlg::Sha1 => CKG_MGF1_SHA1,
        HashAlg::Sha256 => CKG_MGF1_SHA256,
        HashAlg::Sha384 => CKG_MGF1_SHA384,
        HashAlg::Sha512 => CKG_MGF1_SHA512,
    }
}

/// A running hash.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A new hash of `alg`; SHA-1 is not offered as a digest.
    pub fn new(alg: HashAlg) -> Result<Hasher> {
        Ok(match alg {
            HashAlg::Sha1 => return Err(Ckr::CKR_MECHANISM_INVALID),
            HashAlg::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlg::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            HashAlg::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        })
    }

    /// Feeds data.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }

    /// The digest length.
    pub fn digest_len(&self) -> usize {
        match self {
            Hasher::Sha256(_) => 32,
            Hasher::Sha384(_) => 48,
            Hasher::Sha512(_) => 64,
        }
    }
}

/// How a signing mechanism treats its data: hashed here as it streams in, or taken whole.
pub enum Input {
    /// Hash the data with this, then sign the digest.
    Hash(Hasher),
    /// Sign the data as given (a digest, or a DigestInfo); kept until the final call.
    Whole(Zeroizing<Vec<u8>>),
}

impl Mechanism {
    /// The engine scheme of a signing mechanism, checked against the key's spec.
    pub fn sign_scheme(&self, spec: KeySpec) -> Result<(SignScheme, Option<HashAlg>)> {
        let rsa = matches!(spec, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096);
        let ec = matches!(spec, KeySpec::EcP256 | KeySpec::EcP256K);
        Ok(match *self {
            Mechanism::Ecdsa(hash) if ec => (SignScheme::Ecdsa(SigEncoding::Raw), hash),
            Mechanism::Sm2 if spec == KeySpec::EcSm2 => (SignScheme::Sm2(SigEncoding::Raw), None),
            Mechanism::RsaPkcs(hash) if rsa => (SignScheme::RsaPkcs1(hash), hash),
            Mechanism::RsaPss {
                hash,
                salt_len,
                prehashed,
            } if rsa => (
                SignScheme::RsaPss {
                    hash,
                    salt_len: Some(salt_len),
                },
                if prehashed { None } else { Some(hash) },
            ),
            Mechanism::Ecdsa(_) | Mechanism::Sm2 | Mechanism::RsaPkcs(_) | Mechanism::RsaPss { .. } => {
                return Err(Ckr::CKR_KEY_TYPE_INCONSISTENT);
            }
            _ => return Err(Ckr::CKR_MECHANISM_INVALID),
        })
    }

    /// The engine scheme of an asymmetric encryption mechanism, checked against the key's spec.
    pub fn cipher_scheme(&self, spec: KeySpec) -> Result<CipherScheme> {
        let rsa = matches!(spec, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096);
        match *self {
            Mechanism::RsaOaep(hash) if rsa => Ok(CipherScheme::RsaOaep(hash)),
            Mechanism::Sm2Encrypt if spec == KeySpec::EcSm2 => Ok(CipherScheme::Sm2Pke),
            Mechanism::RsaOaep(_) | Mechanism::Sm2Encrypt => Err(Ckr::CKR_KEY_TYPE_INCONSISTENT),
            _ => Err(Ckr::CKR_MECHANISM_INVALID),
        }
    }
}

/// The length of a signature by a key of `spec`.
pub fn signature_len(spec: KeySpec) -> usize {
    match spec {
        KeySpec::Rsa2048 => 256,
        KeySpec::Rsa3072 => 384,
        KeySpec::Rsa4096 => 512,
        _ => 64,
    }
}
