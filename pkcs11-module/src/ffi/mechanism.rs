//! CK_MECHANISM and its parameter structures, read into [`Mechanism`].

use cryptoki_sys::*;

use super::input;
use crate::error::{Ckr, Result};
use crate::mechanisms::{
    CKM_TESSERA_SM2, CKM_TESSERA_SM2_ENCRYPT, CKM_TESSERA_SM4_GCM, Gcm, Mechanism, hash_of, mgf_of,
};

/// CK_GCM_PARAMS as PKCS#11 v2.40's header printed it, without `ulIvBits`; some callers (older
/// Java releases among them) still pass this shape. Told apart by its size.
#[repr(C)]
#[allow(non_snake_case)]
#[derive(Clone, Copy)]
struct GcmParamsV240 {
    pIv: *mut CK_BYTE,
    ulIvLen: CK_ULONG,
    pAAD: *mut CK_BYTE,
    ulAADLen: CK_ULONG,
    ulTagBits: CK_ULONG,
}

/// The parameter structure of a mechanism.
///
/// # Safety
/// `m.pParameter` must be null or point to `m.ulParameterLen` readable bytes.
unsafe fn param<T: Copy>(m: &CK_MECHANISM) -> Result<T> {
    if m.pParameter.is_null() || usize::try_from(m.ulParameterLen).ok() != Some(std::mem::size_of::<T>()) {
        return Err(Ckr::CKR_MECHANISM_PARAM_INVALID);
    }
    // SAFETY: non-null with exactly size_of::<T>() readable bytes; T is plain old data.
    Ok(unsafe { std::ptr::read_unaligned(m.pParameter as *const T) })
}

/// Reads GCM parameters of either layout.
///
/// # Safety
/// As [`param`]; the pointers inside must be valid for their lengths.
unsafe fn gcm(m: &CK_MECHANISM, sm4: bool) -> Result<Mechanism> {
    let len = usize::try_from(m.ulParameterLen).map_err(|_| Ckr::CKR_MECHANISM_PARAM_INVALID)?;
    let (iv, iv_len, aad, aad_len, tag_bits) = if len == std::mem::size_of::<CK_GCM_PARAMS>() {
        // SAFETY: forwarded.
        let p: CK_GCM_PARAMS = unsafe { param(m) }?;
        (p.pIv, p.ulIvLen, p.pAAD, p.ulAADLen, p.ulTagBits)
    } else {
        // SAFETY: forwarded.
        let p: GcmParamsV240 = unsafe { param(m) }?;
        (p.pIv, p.ulIvLen, p.pAAD, p.ulAADLen, p.ulTagBits)
    };
    if tag_bits != 128 || iv_len != 12 {
        return Err(Ckr::CKR_MECHANISM_PARAM_INVALID);
    }
    // SAFETY: the caller's parameter structure vouches for these buffers.
    let iv = unsafe { input(iv as *const u8, iv_len) }.map_err(|_| Ckr::CKR_MECHANISM_PARAM_INVALID)?;
    // SAFETY: as above.
    let aad = unsafe { input(aad as *const u8, aad_len) }.map_err(|_| Ckr::CKR_MECHANISM_PARAM_INVALID)?;
    Ok(Mechanism::Gcm(Gcm {
        sm4,
        iv: iv.to_vec(),
        aad: aad.to_vec(),
    }))
}

/// Reads a caller's mechanism.
///
/// # Safety
/// `ptr` must be null or point to a `CK_MECHANISM` whose parameter is valid as it says.
pub unsafe fn mechanism(ptr: *const CK_MECHANISM) -> Result<Mechanism> {
    // SAFETY: the caller vouches for a readable CK_MECHANISM when non-null.
    let m = unsafe { ptr.as_ref() }.ok_or(Ckr::CKR_ARGUMENTS_BAD)?;
    let hashed = |h| hash_of(h).ok_or(Ckr::CKR_MECHANISM_INVALID);
    Ok(match m.mechanism {
        // SAFETY: forwarded.
        CKM_AES_GCM => unsafe { gcm(m, false) }?,
        // SAFETY: forwarded.
        CKM_TESSERA_SM4_GCM => unsafe { gcm(m, true) }?,
        CKM_ECDSA => Mechanism::Ecdsa(None),
        CKM_ECDSA_SHA256 => Mechanism::Ecdsa(Some(hashed(CKM_SHA256)?)),
        CKM_ECDSA_SHA384 => Mechanism::Ecdsa(Some(hashed(CKM_SHA384)?)),
        CKM_ECDSA_SHA512 => Mechanism::Ecdsa(Some(hashed(CKM_SHA512)?)),
        CKM_RSA_PKCS => Mechanism::RsaPkcs(None),
        CKM_SHA256_RSA_PKCS => Mechanism::RsaPkcs(Some(hashed(CKM_SHA256)?)),
        CKM_SHA384_RSA_PKCS => Mechanism::RsaPkcs(Some(hashed(CKM_SHA384)?)),
        CKM_SHA512_RSA_PKCS => Mechanism::RsaPkcs(Some(hashed(CKM_SHA512)?)),
        CKM_RSA_PKCS_PSS | CKM_SHA256_RSA_PKCS_PSS | CKM_SHA384_RSA_PKCS_PSS | CKM_SHA512_RSA_PKCS_PSS => {
            // SAFETY: forwarded.
            let p: CK_RSA_PKCS_PSS_PARAMS = unsafe { param(m) }?;
            let hash = hash_of(p.hashAlg).ok_or(Ckr::CKR_MECHANISM_PARAM_INVALID)?;
            let implied = match m.mechanism {
                CKM_SHA256_RSA_PKCS_PSS => Some(CKM_SHA256),
                CKM_SHA384_RSA_PKCS_PSS => Some(CKM_SHA384),
                CKM_SHA512_RSA_PKCS_PSS => Some(CKM_SHA512),
                _ => None,
            };
            if implied.is_some_and(|h| h != p.hashAlg) || p.mgf != mgf_of(hash) || p.hashAlg == CKM_SHA_1 {
                return Err(Ckr::CKR_MECHANISM_PARAM_INVALID);
            }
            Mechanism::RsaPss {
                hash,
                salt_len: usize::try_from(p.sLen).map_err(|_| Ckr::CKR_MECHANISM_PARAM_INVALID)?,
                prehashed: implied.is_none(),
            }
        }
        CKM_RSA_PKCS_OAEP => {
            // SAFETY: forwarded.
            let p: CK_RSA_PKCS_OAEP_PARAMS = unsafe { param(m) }?;
            let hash = hash_of(p.hashAlg).ok_or(Ckr::CKR_MECHANISM_PARAM_INVALID)?;
            // Only the empty label: the API has none.
            let labelled = p.source != 0 && (p.source != CKZ_DATA_SPECIFIED || p.ulSourceDataLen != 0);
            if p.mgf != mgf_of(hash) || labelled {
                return Err(Ckr::CKR_MECHANISM_PARAM_INVALID);
            }
            Mechanism::RsaOaep(hash)
        }
        CKM_SHA256 | CKM_SHA384 | CKM_SHA512 => Mechanism::Digest(hashed(m.mechanism)?),
        CKM_AES_KEY_GEN => Mechanism::AesKeyGen,
        CKM_EC_KEY_PAIR_GEN => Mechanism::EcKeyPairGen,
        CKM_RSA_PKCS_KEY_PAIR_GEN => Mechanism::RsaKeyPairGen,
        CKM_TESSERA_SM2 => Mechanism::Sm2,
        CKM_TESSERA_SM2_ENCRYPT => Mechanism::Sm2Encrypt,
        _ => return Err(Ckr::CKR_MECHANISM_INVALID),
    })
}
