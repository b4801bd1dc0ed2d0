//! The ciphertext blob that Encrypt returns and Decrypt takes: self-describing and versioned.
//!
//! ```text
//! offset   size  field
//! 0        1     format version (1)
//! 1        1     algorithm (1 = AES-GCM, 2 = SM4-GCM)
//! 2        1     key id length k (1..=255)
//! 3        k     key id (UTF-8)
//! 3+k      1     key version id length v (1..=255)
//! 4+k      v     key version id (UTF-8)
//! 4+k+v    12    IV
//! 16+k+v   n     ciphertext
//! end-16   16    GCM tag
//! ```
//!
//! The AAD is the header (every byte before the ciphertext) followed by the canonical form of
//! the EncryptionContext, so a blob cannot be moved to another key, version, algorithm or
//! context. See `docs/ciphertext-format.md`.

use std::collections::BTreeMap;

use crate::engine::{AEAD_IV_LEN, AEAD_TAG_LEN};
use crate::error::{KmsError, Result};
use crate::model::SymmetricAlgorithm;

/// The format byte of the current blob layout.
pub const FORMAT_V1: u8 = 1;

/// An EncryptionContext: string keys to string values. A `BTreeMap` so that its canonical
/// form (sorted keys) is its iteration order.
pub type EncryptionContext = BTreeMap<String, String>;

fn algorithm_id(alg: SymmetricAlgorithm) -> u8 {
    match alg {
        SymmetricAlgorithm::AesGcm => 1,
        SymmetricAlgorithm::Sm4Gcm => 2,
    }
}

fn algorithm_from_id(id: u8) -> Option<SymmetricAlgorithm> {
    match id {
        1 => Some(SymmetricAlgorithm::AesGcm),
        2 => Some(SymmetricAlgorithm::Sm4Gcm),
        _ => None,
    }
}

/// The canonical bytes of a context: compact JSON of the sorted map (empty for no context).
pub fn canonical_context(context: &EncryptionContext) -> Result<Vec<u8>> {
    if context.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::to_vec(context).map_err(KmsError::internal)
}

/// Writes a blob header and reserves room for `plaintext_len` bytes and the tag.
/// Returns the buffer (header written, IV included) and the header length.
pub fn begin(
    alg: SymmetricAlgorithm,
    key_id: &str,
    version_id: &str,
    iv: &[u8; AEAD_IV_LEN],
    plaintext_len: usize,
) -> Result<(Vec<u8>, usize)> {
    let k = u8::try_from(key_id.len()).map_err(|_| KmsError::internal("key id too long"))?;
    let v = u8::try_from(version_id.len()).map_err(|_| KmsError::internal("version id too long"))?;
    let header_len = 4 + usize::from(k) + usize::from(v) + AEAD_IV_LEN;
    let mut out = Vec::with_capacity(header_len + plaintext_len + AEAD_TAG_LEN);
    out.push(FORMAT_V1);
    out.push(algorithm_id(alg));
    out.push(k);
    out.extend_from_slice(key_id.as_bytes());
    out.push(v);
    out.extend_from_slice(version_id.as_bytes());
    out.extend_from_slice(iv);
    Ok((out, header_len))
}

/// A parsed blob, borrowing from the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Blob<'a> {
    /// The symmetric algorithm.
    pub algorithm: SymmetricAlgorithm,
    /// The key id it was made with.
    pub key_id: &'a str,
    /// The key version it was made with.
    pub version_id: &'a str,
    /// The IV.
    pub iv: &'a [u8],
    /// Every byte before the ciphertext: the first part of the AAD.
    pub header: &'a [u8],
    /// The ciphertext.
    pub ciphertext: &'a [u8],
    /// The GCM tag.
    pub tag: &'a [u8],
}

fn malformed(why: &str) -> KmsError {
    KmsError::invalid("CiphertextBlob", format!("malformed ciphertext blob: {why}"))
}

/// Parses a blob. Never panics, whatever the input.
pub fn parse(bytes: &[u8]) -> Result<Blob<'_>> {
    let take = |at: usize, len: usize| -> Result<&[u8]> {
        at.checked_add(len)
            .and_then(|end| bytes.get(at..end))
            .ok_or_else(|| malformed("truncated"))
    };
    let format = *bytes.first().ok_or_else(|| malformed("empty"))?;
    if format != FORMAT_V1 {
        return Err(malformed("unknown format version"));
    }
    let algorithm = take(1, 1)
        .ok()
        .and_then(|b| algorithm_from_id(b[0]))
        .ok_or_else(|| malformed("unknown algorithm"))?;
    let k = usize::from(take(2, 1)?[0]);
    let key_id = std::str::from_utf8(take(3, k)?).map_err(|_| malformed("key id"))?;
    let v = usize::from(take(3 + k, 1)?[0]);
    let version_id = std::str::from_utf8(take(4 + k, v)?).map_err(|_| malformed("version id"))?;
    if key_id.is_empty() || version_id.is_empty() {
        return Err(malformed("empty key or version id"));
    }
    let iv_at = 4 + k + v;
    let iv = take(iv_at, AEAD_IV_LEN)?;
    let header_len = iv_at + AEAD_IV_LEN;
    let body_len = bytes
        .len()
        .checked_sub(header_len + AEAD_TAG_LEN)
        .ok_or_else(|| malformed("truncated"))?;
    Ok(Blob {
        algorithm,
        key_id,
        version_id,
        iv,
        header: &bytes[..header_len],
        ciphertext: take(header_len, body_len)?,
        tag: take(header_len + body_len, AEAD_TAG_LEN)?,
    })
}

#[cfg(test)]
#[path = "blob_tests.rs"]
mod tests;
