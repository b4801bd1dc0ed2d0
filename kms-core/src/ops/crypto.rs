//! Cryptography: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext),
//! AsymmetricSign/Verify, AsymmetricEncrypt/Decrypt, GetPublicKey, GenerateRandom.

use std::sync::Arc;

use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Call, Kms, engine_error};
use crate::api::{
    AsymmetricDecryptRequest, AsymmetricEncryptRequest, AsymmetricSignRequest, AsymmetricSignResponse,
    AsymmetricVerifyRequest, AsymmetricVerifyResponse, DecryptRequest, DecryptResponse, EncryptRequest,
    EncryptResponse, GenerateDataKeyRequest, GenerateDataKeyResponse, GenerateRandomRequest, GenerateRandomResponse,
    GetPublicKeyRequest, GetPublicKeyResponse, ReEncryptRequest, ReEncryptResponse, SecretBytes,
};
use crate::blob::{self, EncryptionContext};
use crate::engine::{AEAD_IV_LEN, KeyHandle};
use crate::error::{KmsError, Result};
use crate::model::{DataKeySpec, KeyUsage};
use crate::store::KeyRecord;
use crate::validate;

/// What a symmetric decryption yields.
struct Opened {
    plaintext: Zeroizing<Vec<u8>>,
    key_id: String,
    version_id: String,
}

/// The AAD of a blob: its header, then the canonical context.
fn with_context<'a>(header: &'a [u8], context: &EncryptionContext, scratch: &'a mut Vec<u8>) -> Result<&'a [u8]> {
    if context.is_empty() {
        return Ok(header);
    }
    scratch.extend_from_slice(header);
    scratch.extend_from_slice(&blob::canonical_context(context)?);
    Ok(scratch)
}

fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

impl Kms {
    /// Encrypts under the primary version of an Enabled symmetric key; returns the blob.
    fn seal_blob(&self, key: &KeyRecord, plaintext: &[u8], context: &EncryptionContext) -> Result<(Vec<u8>, String)> {
        let algorithm = key.spec.symmetric_algorithm().ok_or_else(|| KmsError::Unsupported {
            what: "KeySpec",
            reason: format!("{} keys do not Encrypt; use AsymmetricEncrypt", key.spec),
        })?;
        let version_id = Self::primary(key)?;
        let handle = self.handle(key, version_id)?;
        let mut iv = [0u8; AEAD_IV_LEN];
        self.engine
            .fill_random(&mut iv)
            .map_err(|e| engine_error(e, "Plaintext"))?;
        let (mut out, header_len) = blob::begin(algorithm, &key.key_id, version_id, &iv, plaintext.len())?;
        out.extend_from_slice(plaintext);
        let (header, body) = out.split_at_mut(header_len);
        let mut scratch = Vec::new();
        let aad = with_context(header, context, &mut scratch)?;
        let tag = handle
            .seal_in_place(&iv, aad, body)
            .map_err(|e| engine_error(e, "Plaintext"))?;
        out.extend_from_slice(&tag);
        Ok((out, version_id.to_owned()))
    }

    /// Decrypts a blob: the key and version come from the blob itself.
    fn open_blob(
        &self,
        call: &Call<'_>,
        action: &'static str,
        bytes: &[u8],
        context: &EncryptionContext,
    ) -> Result<Opened> {
        let parsed = blob::parse(bytes)?;
        let key = self.resolve_blob_key(call, action, parsed.key_id, context)?;
        if key.spec.symmetric_algorithm() != Some(parsed.algorithm) {
            return Err(KmsError::InvalidCiphertext);
        }
        let handle = self.handle(&key, parsed.version_id)?;
        let mut plaintext = Zeroizing::new(parsed.ciphertext.to_vec());
        let mut scratch = Vec::new();
        let aad = with_context(parsed.header, context, &mut scratch)?;
        handle
            .open_in_place(parsed.iv, aad, &mut plaintext, parsed.tag)
            .map_err(super::open_error)?;
        Ok(Opened {
            plaintext,
            key_id: key.key_id.clone(),
            version_id: parsed.version_id.to_owned(),
        })
    }

    /// A blob names its key by id only (never by alias), and that key must be usable.
    fn resolve_blob_key(
        &self,
        call: &Call<'_>,
        action: &'static str,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<Arc<KeyRecord>> {
        if key_id.starts_with("alias/") || key_id.starts_with("acs:") {
            return Err(KmsError::InvalidCiphertext);
        }
        self.encryption_key(call, action, key_id, context)
    }

    /// A key the call may encrypt or decrypt with under `context` (whose entries are the
    /// `kms:EncryptionContext/{key}` condition keys): Enabled, ENCRYPT/DECRYPT, authorized.
    fn encryption_key(
        &self,
        call: &Call<'_>,
        action: &'static str,
        key_ref: &str,
        context: &EncryptionContext,
    ) -> Result<Arc<KeyRecord>> {
        self.usable(call, action, key_ref, KeyUsage::EncryptDecrypt, Some(context))
    }

    /// Encrypt.
    pub(super) fn encrypt_as(&self, call: &Call<'_>, req: &EncryptRequest) -> Result<EncryptResponse> {
        if req.plaintext.expose().len() > validate::MAX_PLAINTEXT_BYTES {
            return Err(KmsError::invalid(
                "Plaintext",
                "at most 6144 bytes; use GenerateDataKey for more",
            ));
        }
        self.sync()?;
        let key = self.encryption_key(call, call.action, &req.key_id, &req.encryption_context)?;
        let (blob, key_version_id) = self.seal_blob(&key, req.plaintext.expose(), &req.encryption_context)?;
        Ok(EncryptResponse {
            ciphertext_blob: blob.into(),
            key_id: key.key_id.clone(),
            key_version_id,
        })
    }

    /// Decrypt.
    pub(super) fn decrypt_as(&self, call: &Call<'_>, req: &DecryptRequest) -> Result<DecryptResponse> {
        self.sync()?;
        let opened = self.open_blob(call, call.action, &req.ciphertext_blob.0, &req.encryption_context)?;
        Ok(DecryptResponse {
            plaintext: SecretBytes(opened.plaintext),
            key_id: opened.key_id,
            key_version_id: opened.version_id,
        })
    }

    /// ReEncrypt: decrypt under the blob's key and source context, encrypt under the
    /// destination key and context; the plaintext never leaves the service.
    pub(super) fn re_encrypt_as(&self, call: &Call<'_>, req: &ReEncryptRequest) -> Result<ReEncryptResponse> {
        self.sync()?;
        // Both keys are authorized before anything is decrypted; the source first, so that the
        // audit record files the call under the key the data leaves.
        self.resolve_blob_key(
            call,
            "kms:ReEncryptFrom",
            blob::parse(&req.ciphertext_blob.0)?.key_id,
            &req.source_encryption_context,
        )?;
        let destination = self.encryption_key(
            call,
            "kms:ReEncryptTo",
            &req.destination_key_id,
            &req.destination_encryption_context,
        )?;
        let opened = self.open_blob(
            call,
            "kms:ReEncryptFrom",
            &req.ciphertext_blob.0,
            &req.source_encryption_context,
        )?;
        let (blob, key_version_id) =
            self.seal_blob(&destination, &opened.plaintext, &req.destination_encryption_context)?;
        Ok(ReEncryptResponse {
            ciphertext_blob: blob.into(),
            key_id: destination.key_id.clone(),
            key_version_id,
            source_key_id: opened.key_id,
            source_key_version_id: opened.version_id,
        })
    }

    /// GenerateDataKey: a random data key, returned in clear and encrypted under the key.
    pub(super) fn generate_data_key_as(
        &self,
        call: &Call<'_>,
        req: &GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse> {
        let len = match req.number_of_bytes {
            Some(n) => validate::random_len("NumberOfBytes", n)?,
            None => req.key_spec.unwrap_or(DataKeySpec::Aes256).byte_len(),
        };
        self.sync()?;
        let key = self.encryption_key(call, call.action, &req.key_id, &req.encryption_context)?;
        let mut data_key = Zeroizing::new(vec![0u8; len]);
        // A hardware instance's data keys come from its HSM's generator.
        self.engine_for(&key.instance_id)?
            .fill_random(&mut data_key)
            .map_err(|e| engine_error(e, "NumberOfBytes"))?;
        let (blob, key_version_id) = self.seal_blob(&key, &data_key, &req.encryption_context)?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob: blob.into(),
            key_id: key.key_id.clone(),
            key_version_id,
            plaintext: SecretBytes(data_key),
        })
    }

    /// GenerateDataKeyWithoutPlaintext: as GenerateDataKey, but only the encrypted data key.
    pub(super) fn generate_data_key_without_plaintext_as(
        &self,
        call: &Call<'_>,
        req: &GenerateDataKeyRequest,
    ) -> Result<EncryptResponse> {
        let GenerateDataKeyResponse {
            ciphertext_blob,
            key_id,
            key_version_id,
            ..
        } = self.generate_data_key_as(call, req)?;
        Ok(EncryptResponse {
            ciphertext_blob,
            key_id,
            key_version_id,
        })
    }

    /// An asymmetric key's version (the primary one when none is named) with its loaded key.
    fn asymmetric(
        &self,
        call: &Call<'_>,
        key_ref: &str,
        version: Option<&str>,
        usage: KeyUsage,
    ) -> Result<(Arc<KeyRecord>, String, Arc<dyn KeyHandle>)> {
        self.sync()?;
        let key = self.usable(call, call.action, key_ref, usage, None)?;
        if key.spec.is_symmetric() {
            return Err(KmsError::Unsupported {
                what: "KeySpec",
                reason: format!("{} is a symmetric key spec", key.spec),
            });
        }
        let version_id = match version.filter(|v| !v.is_empty()) {
            Some(v) => v.to_owned(),
            None => Self::primary(&key)?.to_owned(),
        };
        let handle = self.handle(&key, &version_id)?;
        Ok((key, version_id, handle))
    }

    /// AsymmetricSign: signs a digest the caller computed.
    pub(super) fn asymmetric_sign_as(
        &self,
        call: &Call<'_>,
        req: &AsymmetricSignRequest,
    ) -> Result<AsymmetricSignResponse> {
        let (key, key_version_id, handle) =
            self.asymmetric(call, &req.key_id, req.key_version_id.as_deref(), KeyUsage::SignVerify)?;
        let value = handle
            .sign_digest(
                req.algorithm.ok_or(KmsError::MissingParameter("Algorithm"))?,
                &req.digest.0,
            )
            .map_err(|e| engine_error(e, "Digest"))?;
        Ok(AsymmetricSignResponse {
            value: value.into(),
            key_id: key.key_id.clone(),
            key_version_id,
        })
    }

    /// AsymmetricVerify.
    pub(super) fn asymmetric_verify_as(
        &self,
        call: &Call<'_>,
        req: &AsymmetricVerifyRequest,
    ) -> Result<AsymmetricVerifyResponse> {
        let (key, key_version_id, handle) =
            self.asymmetric(call, &req.key_id, req.key_version_id.as_deref(), KeyUsage::SignVerify)?;
        let value = handle
            .verify_digest(
                req.algorithm.ok_or(KmsError::MissingParameter("Algorithm"))?,
                &req.digest.0,
                &req.value.0,
            )
            .map_err(|e| engine_error(e, "Digest"))?;
        Ok(AsymmetricVerifyResponse {
            value,
            key_id: key.key_id.clone(),
            key_version_id,
        })
    }

    /// AsymmetricEncrypt.
    pub(super) fn asymmetric_encrypt_as(
        &self,
        call: &Call<'_>,
        req: &AsymmetricEncryptRequest,
    ) -> Result<EncryptResponse> {
        let (key, key_version_id, handle) = self.asymmetric(
            call,
            &req.key_id,
            req.key_version_id.as_deref(),
            KeyUsage::EncryptDecrypt,
        )?;
        let blob = handle
            .encrypt(
                req.algorithm.ok_or(KmsError::MissingParameter("Algorithm"))?,
                req.plaintext.expose(),
            )
            .map_err(|e| engine_error(e, "Plaintext"))?;
        Ok(EncryptResponse {
            ciphertext_blob: blob.into(),
            key_id: key.key_id.clone(),
            key_version_id,
        })
    }

    /// AsymmetricDecrypt.
    pub(super) fn asymmetric_decrypt_as(
        &self,
        call: &Call<'_>,
        req: &AsymmetricDecryptRequest,
    ) -> Result<DecryptResponse> {
        let (key, key_version_id, handle) = self.asymmetric(
            call,
            &req.key_id,
            req.key_version_id.as_deref(),
            KeyUsage::EncryptDecrypt,
        )?;
        let plaintext = handle
            .decrypt(
                req.algorithm.ok_or(KmsError::MissingParameter("Algorithm"))?,
                &req.ciphertext_blob.0,
            )
            .map_err(|e| engine_error(e, "CiphertextBlob"))?;
        Ok(DecryptResponse {
            plaintext: SecretBytes(plaintext),
            key_id: key.key_id.clone(),
            key_version_id,
        })
    }

    /// GetPublicKey: the PEM SubjectPublicKeyInfo of an asymmetric key version.
    pub(super) fn get_public_key_as(&self, call: &Call<'_>, req: &GetPublicKeyRequest) -> Result<GetPublicKeyResponse> {
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        let (key, key_version_id, handle) =
            self.asymmetric(call, &key.key_id, req.key_version_id.as_deref(), key.usage)?;
        let der = handle.public_key_der().map_err(|e| engine_error(e, "KeyId"))?;
        Ok(GetPublicKeyResponse {
            public_key: to_pem(&der),
            key_id: key.key_id.clone(),
            key_version_id,
        })
    }

    /// GenerateRandom: 1–1024 random bytes from the engine's generator.
    pub(super) fn generate_random_as(
        &self,
        call: &Call<'_>,
        req: &GenerateRandomRequest,
    ) -> Result<GenerateRandomResponse> {
        self.sync()?;
        self.authorize_resource(call, "*".to_owned())?;
        let len = validate::random_len("Length", req.length.unwrap_or(32))?;
        let mut random = Zeroizing::new(vec![0u8; len]);
        self.engine
            .fill_random(&mut random)
            .map_err(|e| engine_error(e, "Length"))?;
        Ok(GenerateRandomResponse {
            random: SecretBytes(random),
        })
    }
}
