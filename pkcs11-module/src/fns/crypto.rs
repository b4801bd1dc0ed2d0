//! Cryptographic operations: sign, verify, encrypt, decrypt, digest, random.
//!
//! Each operation's result is made once and kept until the caller's buffer takes it, so a
//! length query or a short buffer never makes a second (different) signature or decryption.

use cryptoki_sys::*;
use kms_core::api::GenerateRandomRequest;
use kms_core::model::{KeySpec, KeyUsage};
use zeroize::Zeroizing;

use super::{OutBuf, with_session};
use crate::error::{Ckr, Result};
use crate::mechanisms::{Hasher, Input, Mechanism, signature_len};
use crate::objects::Kind;
use crate::state::{Cipher, CipherOp, CipherOutput, DigestOp, Module, Session, SignOp};

/// Longest input kept for a mechanism that takes its data whole (a digest, a DigestInfo, an
/// RSA or GCM input): generous, and a bound on what a caller can make the module hold.
const MAX_WHOLE_INPUT: usize = 1 << 20;

fn sign_op(m: &Module, s: &mut Session, mechanism: &Mechanism, key: CK_OBJECT_HANDLE, kind: Kind) -> Result<SignOp> {
    let (key, _, usage) = m.key_for(s, key, &[kind])?;
    if usage != KeyUsage::SignVerify {
        return Err(Ckr::CKR_KEY_FUNCTION_NOT_PERMITTED);
    }
    let (scheme, hash) = mechanism.sign_scheme(key.spec)?;
    let input = match hash {
        Some(h) => Input::Hash(Hasher::new(h)?),
        None => Input::Whole(Zeroizing::new(Vec::new())),
    };
    Ok(SignOp {
        key,
        scheme,
        input,
        output: None,
    })
}

fn feed(input: &mut Input, data: &[u8]) -> Result<()> {
    match input {
        Input::Hash(h) => h.update(data),
        Input::Whole(buf) => {
            if buf.len() + data.len() > MAX_WHOLE_INPUT {
                return Err(Ckr::CKR_DATA_LEN_RANGE);
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(())
}

/// What the engine signs: the digest, or the data as given.
fn take_input(input: &mut Input) -> Zeroizing<Vec<u8>> {
    match std::mem::replace(input, Input::Whole(Zeroizing::new(Vec::new()))) {
        Input::Hash(h) => Zeroizing::new(h.finish()),
        Input::Whole(buf) => buf,
    }
}

/// C_SignInit.
pub fn sign_init(session: CK_SESSION_HANDLE, mechanism: &Mechanism, key: CK_OBJECT_HANDLE) -> Result<()> {
    with_session(session, |m, s| {
        if s.sign.is_some() {
            return Err(Ckr::CKR_OPERATION_ACTIVE);
        }
        s.sign = Some(sign_op(m, s, mechanism, key, Kind::Private)?);
        Ok(())
    })
}

/// Signs (once) and hands the signature over; any error but a short buffer ends the operation.
fn finish_sign(m: &Module, s: &mut Session, last: Option<&[u8]>, out: &mut OutBuf<'_>) -> Result<()> {
    let op = s.sign.as_mut().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
    if op.output.is_none() {
        if !out.has_buffer() {
            // A length query: the length is the key's, no need to sign yet.
            out.deliver_len(signature_len(op.key.spec))?;
            return Ok(());
        }
        let made = (|| {
            if let Some(data) = last {
                feed(&mut op.input, data)?;
            }
            let input = take_input(&mut op.input);
            m.sign(&op.key, op.scheme, &input)
        })();
        match made {
            Ok(sig) => op.output = Some(sig),
            Err(e) => {
                s.sign = None;
                return Err(e);
            }
        }
    }
    let sig = op.output.as_deref().unwrap_or_default();
    if out.deliver(sig)? {
        s.sign = None;
    }
    Ok(())
}

/// C_Sign.
pub fn sign(session: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf<'_>) -> Result<()> {
    with_session(session, |m, s| finish_sign(m, s, Some(data), out))
}

/// C_SignUpdate.
pub fn sign_update(session: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
    with_session(session, |_, s| {
        let op = s.sign.as_mut().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
        let fed = feed(&mut op.input, data);
        if fed.is_err() {
            s.sign = None;
        }
        fed
    })
}

/// C_SignFinal.
pub fn sign_final(session: CK_SESSION_HANDLE, out: &mut OutBuf<'_>) -> Result<()> {
    with_session(session, |m, s| finish_sign(m, s, None, out))
}

/// C_VerifyInit.
pub fn verify_init(session: CK_SESSION_HANDLE, mechanism: &Mechanism, key: CK_OBJECT_HANDLE) -> Result<()> {
    with_session(session, |m, s| {
        if s.verify.is_some() {
            return Err(Ckr::CKR_OPERATION_ACTIVE);
        }
        s.verify = Some(sign_op(m, s, mechanism, key, Kind::Public)?);
        Ok(())
    })
}

fn finish_verify(m: &Module, s: &mut Session, last: Option<&[u8]>, signature: &[u8]) -> Result<()> {
    let mut op = s.verify.take().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
    if signature.len() != signature_len(op.key.spec) {
        return Err(Ckr::CKR_SIGNATURE_LEN_RANGE);
    }
    if let Some(data) = last {
        feed(&mut op.input, data)?;
    }
    let input = take_input(&mut op.input);
    if m.verify(&op.key, op.scheme, &input, signature)? {
        Ok(())
    } else {
        Err(Ckr::CKR_SIGNATURE_INVALID)
    }
}

/// C_Verify.
pub fn verify(session: CK_SESSION_HANDLE, data: &[u8], signature: &[u8]) -> Result<()> {
    with_session(session, |m, s| finish_verify(m, s, Some(data), signature))
}

/// C_VerifyUpdate.
pub fn verify_update(session: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
    with_session(session, |_, s| {
        let op = s.verify.as_mut().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
        let fed = feed(&mut op.input, data);
        if fed.is_err() {
            s.verify = None;
        }
        fed
    })
}

/// C_VerifyFinal.
pub fn verify_final(session: CK_SESSION_HANDLE, signature: &[u8]) -> Result<()> {
    with_session(session, |m, s| finish_verify(m, s, None, signature))
}

fn cipher_op(
    m: &Module,
    s: &mut Session,
    mechanism: &Mechanism,
    key: CK_OBJECT_HANDLE,
    encrypt: bool,
) -> Result<CipherOp> {
    let kinds: &[Kind] = match mechanism {
        Mechanism::Gcm(_) => &[Kind::Secret],
        Mechanism::RsaOaep(_) | Mechanism::Sm2Encrypt if encrypt => &[Kind::Public],
        Mechanism::RsaOaep(_) | Mechanism::Sm2Encrypt => &[Kind::Private],
        _ => return Err(Ckr::CKR_MECHANISM_INVALID),
    };
    let (key, _, usage) = m.key_for(s, key, kinds)?;
    if usage != KeyUsage::EncryptDecrypt {
        return Err(Ckr::CKR_KEY_FUNCTION_NOT_PERMITTED);
    }
    let cipher = match mechanism {
        Mechanism::Gcm(gcm) => {
            let aes = matches!(key.spec, KeySpec::Aes128 | KeySpec::Aes192 | KeySpec::Aes256);
            if gcm.sm4 == aes {
                return Err(Ckr::CKR_KEY_TYPE_INCONSISTENT);
            }
            Cipher::Gcm(gcm.clone())
        }
        _ => Cipher::Asymmetric(mechanism.cipher_scheme(key.spec)?),
    };
    Ok(CipherOp {
        key,
        cipher,
        data: Zeroizing::new(Vec::new()),
        output: None,
    })
}

fn slot(s: &mut Session, encrypt: bool) -> &mut Option<CipherOp> {
    if encrypt { &mut s.encrypt } else { &mut s.decrypt }
}

/// C_EncryptInit / C_DecryptInit.
pub fn cipher_init(
    session: CK_SESSION_HANDLE,
    mechanism: &Mechanism,
    key: CK_OBJECT_HANDLE,
    encrypt: bool,
) -> Result<()> {
    with_session(session, |m, s| {
        if slot(s, encrypt).is_some() {
            return Err(Ckr::CKR_OPERATION_ACTIVE);
        }
        let op = cipher_op(m, s, mechanism, key, encrypt)?;
        *slot(s, encrypt) = Some(op);
        Ok(())
    })
}

fn finish_cipher(m: &Module, s: &mut Session, encrypt: bool, last: Option<&[u8]>, out: &mut OutBuf<'_>) -> Result<()> {
    let mut spare = Some(std::mem::take(&mut s.spare_ciphertext));
    let op = slot(s, encrypt).as_mut().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
    if op.output.is_none() {
        let made = (|| {
            // Single-part calls work on the caller's buffer; only multi-part input was kept.
            let input: &[u8] = match last {
                Some(data) if op.data.is_empty() => data,
                Some(data) => {
                    if op.data.len() + data.len() > MAX_WHOLE_INPUT {
                        return Err(Ckr::CKR_DATA_LEN_RANGE);
                    }
                    op.data.extend_from_slice(data);
                    &op.data
                }
                None => &op.data,
            };
            Ok(if encrypt {
                let buf = spare.take().unwrap_or_default();
                CipherOutput::Public(m.encrypt(&op.key, &op.cipher, input, buf)?)
            } else {
                CipherOutput::Secret(m.decrypt(&op.key, &op.cipher, input)?)
            })
        })();
        match made {
            Ok(output) => op.output = Some(output),
            Err(e) => {
                *slot(s, encrypt) = None;
                return Err(e);
            }
        }
    }
    let output = op.output.as_ref().map(CipherOutput::as_slice).unwrap_or_default();
    if out.deliver(output)? {
        // The operation is over; its ciphertext array serves the session's next encryption.
        if let Some(CipherOp {
            output: Some(CipherOutput::Public(done)),
            ..
        }) = slot(s, encrypt).take()
        {
            spare = Some(done);
        }
    }
    s.spare_ciphertext = spare.unwrap_or_default();
    Ok(())
}

/// C_Encrypt / C_Decrypt.
pub fn cipher(session: CK_SESSION_HANDLE, encrypt: bool, data: &[u8], out: &mut OutBuf<'_>) -> Result<()> {
    with_session(session, |m, s| finish_cipher(m, s, encrypt, Some(data), out))
}

/// C_EncryptUpdate / C_DecryptUpdate: the input is kept and nothing is output until the final
/// call (GCM authenticates the whole message; decryption releases nothing unauthenticated).
pub fn cipher_update(session: CK_SESSION_HANDLE, encrypt: bool, data: &[u8], out: &mut OutBuf<'_>) -> Result<()> {
    with_session(session, |_, s| {
        let op = slot(s, encrypt).as_mut().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
        if op.output.is_some() || op.data.len() + data.len() > MAX_WHOLE_INPUT {
            *slot(s, encrypt) = None;
            return Err(Ckr::CKR_DATA_LEN_RANGE);
        }
        if out.has_buffer() {
            op.data.extend_from_slice(data);
        }
        out.deliver(&[])?;
        Ok(())
    })
}

/// C_EncryptFinal / C_DecryptFinal.
pub fn cipher_final(session: CK_SESSION_HANDLE, encrypt: bool, out: &mut OutBuf<'_>) -> Result<()> {
    with_session(session, |m, s| finish_cipher(m, s, encrypt, None, out))
}

/// C_DigestInit.
pub fn digest_init(session: CK_SESSION_HANDLE, mechanism: &Mechanism) -> Result<()> {
    with_session(session, |_, s| {
        if s.digest.is_some() {
            return Err(Ckr::CKR_OPERATION_ACTIVE);
        }
        let Mechanism::Digest(hash) = mechanism else {
            return Err(Ckr::CKR_MECHANISM_INVALID);
        };
        s.digest = Some(DigestOp {
            hasher: Some(Hasher::new(*hash)?),
            output: None,
        });
        Ok(())
    })
}

fn finish_digest(s: &mut Session, last: Option<&[u8]>, out: &mut OutBuf<'_>) -> Result<()> {
    let op = s.digest.as_mut().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
    if op.output.is_none() {
        let hasher = op.hasher.as_ref().ok_or(Ckr::CKR_GENERAL_ERROR)?;
        if !out.has_buffer() {
            out.deliver_len(hasher.digest_len())?;
            return Ok(());
        }
        let mut hasher = op.hasher.take().ok_or(Ckr::CKR_GENERAL_ERROR)?;
        if let Some(data) = last {
            hasher.update(data);
        }
        op.output = Some(hasher.finish());
    }
    let digest = op.output.as_deref().unwrap_or_default();
    if out.deliver(digest)? {
        s.digest = None;
    }
    Ok(())
}

/// C_Digest.
pub fn digest(session: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf<'_>) -> Result<()> {
    with_session(session, |_, s| finish_digest(s, Some(data), out))
}

/// C_DigestUpdate.
pub fn digest_update(session: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
    with_session(session, |_, s| {
        let op = s.digest.as_mut().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
        op.hasher.as_mut().ok_or(Ckr::CKR_OPERATION_ACTIVE)?.update(data);
        Ok(())
    })
}

/// C_DigestFinal.
pub fn digest_final(session: CK_SESSION_HANDLE, out: &mut OutBuf<'_>) -> Result<()> {
    with_session(session, |_, s| finish_digest(s, None, out))
}

/// C_GenerateRandom.
pub fn generate_random(session: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<()> {
    with_session(session, |m, _| {
        for chunk in out.chunks_mut(1024) {
            let length = u32::try_from(chunk.len()).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
            let random = m
                .kms
                .as_caller(&m.caller())
                .generate_random(&GenerateRandomRequest { length: Some(length) })?;
            chunk.copy_from_slice(random.random.expose());
        }
        Ok(())
    })
}

/// C_SessionCancel (3.0): ends the operations the flags name.
pub fn cancel(session: CK_SESSION_HANDLE, flags: CK_FLAGS) -> Result<()> {
    with_session(session, |_, s| {
        if flags & CKF_SIGN != 0 {
            s.sign = None;
        }
        if flags & CKF_VERIFY != 0 {
            s.verify = None;
        }
        if flags & CKF_ENCRYPT != 0 {
            s.encrypt = None;
        }
        if flags & CKF_DECRYPT != 0 {
            s.decrypt = None;
        }
        if flags & CKF_DIGEST != 0 {
            s.digest = None;
        }
        if flags & CKF_FIND_OBJECTS != 0 {
            s.find = None;
        }
        Ok(())
    })
}
