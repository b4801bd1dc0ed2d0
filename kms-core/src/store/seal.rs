//! Sealing of software key material under the store's root key (AES-256-GCM).
//!
//! A sealed value is `1 ‖ IV(12) ‖ ciphertext ‖ tag(16)`; its AAD binds it to its key id and
//! version id, so sealed material cannot be swapped between rows.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result};

const SEAL_FORMAT: u8 = 1;
const IV_LEN: usize = 12;

/// The root key, expanded. Zeroized on drop by the cipher.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

fn aad(key_id: &str, version_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + key_id.len() + version_id.len());
    aad.extend_from_slice(b"tessera-seal-v1\0");
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(version_id.as_bytes());
    aad
}

impl Sealer {
    /// A sealer over a 32-byte root key.
    pub fn new(root_key: &[u8; 32]) -> Self {
        Sealer {
            cipher: Aes256Gcm::new(root_key.into()),
        }
    }

    /// Seals `material` for one key version.
    pub fn seal(&self, key_id: &str, version_id: &str, material: &[u8]) -> Result<Vec<u8>> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv).map_err(|e| KmsError::Internal(format!("OS random: {e}")))?;
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(iv),
                Payload {
                    msg: material,
                    aad: &aad(key_id, version_id),
                },
            )
            .map_err(|_| KmsError::internal("sealing failed"))?;
        let mut out = Vec::with_capacity(1 + IV_LEN + ct.len());
        out.push(SEAL_FORMAT);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] made for the same key version.
    pub fn unseal(&self, key_id: &str, version_id: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let unreadable = || KmsError::InvalidRootKey(format!("sealed material of {key_id}/{version_id} does not open"));
        if sealed.len() < 1 + IV_LEN || sealed[0] != SEAL_FORMAT {
            return Err(unreadable());
        }
        let iv = Nonce::try_from(&sealed[1..1 + IV_LEN]).map_err(|_| unreadable())?;
        self.cipher
            .decrypt(
                &iv,
                Payload {
                    msg: &sealed[1 + IV_LEN..],
                    aad: &aad(key_id, version_id),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| unreadable())
    }
}
