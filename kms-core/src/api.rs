//! Typed requests and responses, named field for field as the Alibaba Cloud KMS API names them.
//!
//! They serialize to the API's JSON (`PascalCase`, binary values in base64), and deserialize
//! leniently from what a command line gives: numbers and booleans may come as strings, and the
//! EncryptionContext, Tags and TagKeys may come as JSON text, as `aliyun kms` passes them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::blob::EncryptionContext;
use crate::model::{
    AsymmetricAlgorithm, DataKeySpec, KeySpec, KeyState, KeyUsage, Origin, ProductVersion, ProtectionLevel,
    SigningAlgorithm, Tag,
};

/// Public binary data, base64 in JSON.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}

/// Secret binary data (plaintext, data keys): base64 in JSON, zeroized on drop, redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(pub Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.0.len())
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(v))
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(v: &[u8]) -> Self {
        SecretBytes(Zeroizing::new(v.to_vec()))
    }
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use zeroize::Zeroizing;

    pub fn encode<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        // The encoded form of a secret is as secret as the bytes: zeroize it after use.
        let text = Zeroizing::new(STANDARD.encode(bytes));
        s.serialize_str(&text)
    }

    pub fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        STANDARD
            .decode(text.trim())
            .map(Zeroizing::new)
            .map_err(|_| D::Error::custom("the value is not valid base64"))
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        b64::encode(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Bytes(b64::decode(d)?.to_vec()))
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        b64::encode(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SecretBytes(b64::decode(d)?))
    }
}

/// Lenient deserializers for values a command line passes as text.
mod lenient {
    use serde::de::{DeserializeOwned, Error};
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(D::Error::custom("expected true or false")),
            },
            Some(_) => Err(D::Error::custom("expected true or false")),
        }
    }

    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| D::Error::custom("expected a non-negative integer")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| D::Error::custom("expected a non-negative integer")),
            Some(_) => Err(D::Error::custom("expected a non-negative integer")),
        }
    }

    /// A value that may also be given as JSON text.
    pub fn json_or_text<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(d: D) -> Result<T, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(T::default()),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(T::default()),
            Some(Value::String(s)) => serde_json::from_str(&s).map_err(D::Error::custom),
            Some(v) => serde_json::from_value(v).map_err(D::Error::custom),
        }
    }
}

macro_rules! request {
    ($(#[$m:meta])* $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, Deserialize, Serialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        pub struct $name { $($body)* }
    };
}

macro_rules! response {
    ($(#[$m:meta])* $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name { $($body)* }
    };
}

/// A response with no fields of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

// ---------------------------------------------------------------- keys

request!(
    /// CreateKey.
    CreateKeyRequest {
        /// Default `Aliyun_AES_256`.
        pub key_spec: Option<KeySpec>,
        /// Default: SIGN/VERIFY where the spec can sign, else ENCRYPT/DECRYPT.
        pub key_usage: Option<KeyUsage>,
        /// Default `Aliyun_KMS`; `EXTERNAL` makes a key in PendingImport.
        pub origin: Option<Origin>,
        /// Default `SOFTWARE`.
        pub protection_level: Option<ProtectionLevel>,
        /// 0–8192 characters.
        pub description: Option<String>,
        /// Default true; false creates the key Disabled.
        #[serde(default, deserialize_with = "lenient::opt_bool")]
        pub enable: Option<bool>,
        /// Default false.
        #[serde(default, deserialize_with = "lenient::opt_bool")]
        pub deletion_protection: Option<bool>,
        /// Default false; symmetric keys only.
        #[serde(default, deserialize_with = "lenient::opt_bool")]
        pub enable_automatic_rotation: Option<bool>,
        /// 7–730 days: `30d`, `604800s`, `168h`, `10080m`. Default `365d`.
        pub rotation_interval: Option<String>,
        /// The KMS instance; the default instance when absent.
        #[serde(rename = "DKMSInstanceId")]
        pub dkms_instance_id: Option<String>,
        /// Up to 20 tags.
        #[serde(default, deserialize_with = "lenient::json_or_text")]
        pub tags: Vec<Tag>,
        /// An alias to create with the key.
        pub alias: Option<String>,
        /// A key policy (JSON, at most 32768 bytes); the default policy when absent.
        pub policy: Option<String>,
    }
);

response!(
    /// A key's metadata, as DescribeKey returns it.
    KeyMetadata {
        pub key_id: String,
        pub arn: String,
        pub key_spec: Option<KeySpec>,
        pub key_usage: Option<KeyUsage>,
        pub key_state: Option<KeyState>,
        pub origin: Option<Origin>,
        pub protection_level: Option<ProtectionLevel>,
        pub description: String,
        pub creator: String,
        pub creation_date: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub delete_date: Option<String>,
        /// `Enabled` or `Disabled`.
        pub deletion_protection: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        pub deletion_protection_description: String,
        /// `Enabled`, `Disabled`, or `Suspended` (enabled on a key that is not Enabled).
        pub automatic_rotation: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub rotation_interval: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub primary_key_version: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_rotation_date: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub next_rotation_date: Option<String>,
        #[serde(rename = "DKMSInstanceId")]
        pub dkms_instance_id: String,
        /// When the key last did cryptography (from the audit trail); DescribeKey only.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_used_time: Option<String>,
    }
);

response!(
    /// CreateKey's and DescribeKey's answer.
    KeyMetadataResponse {
        pub key_metadata: KeyMetadata,
    }
);

request!(
    /// Any request that names just a key: DescribeKey, EnableKey, DisableKey, CancelKeyDeletion,
    /// CreateKeyVersion, ListResourceTags.
    KeyIdRequest {
        /// A key id, alias or ARN.
        pub key_id: String,
    }
);

impl KeyIdRequest {
    /// A request naming `key_id`.
    pub fn new(key_id: impl Into<String>) -> Self {
        KeyIdRequest { key_id: key_id.into() }
    }
}

request!(
    /// ListKeys, ListAliases: one page.
    PageRequest {
        /// 1-based; default 1.
        #[serde(default, deserialize_with = "lenient::opt_u32")]
        pub page_number: Option<u32>,
        /// 1–100; default 10.
        #[serde(default, deserialize_with = "lenient::opt_u32")]
        pub page_size: Option<u32>,
    }
);

response!(
    /// One entry of ListKeys.
    KeyEntry {
        pub key_id: String,
        pub key_arn: String,
    }
);

response!(
    /// The `Keys` wrapper of ListKeys.
    KeyList {
        pub key: Vec<KeyEntry>,
    }
);

response!(
    /// ListKeys' answer.
    ListKeysResponse {
        pub keys: KeyList,
        pub total_count: u64,
        pub page_number: u32,
        pub page_size: u32,
    }
);

request!(
    /// UpdateKeyDescription.
    UpdateKeyDescriptionRequest {
        pub key_id: String,
        pub description: String,
    }
);

request!(
    /// SetDeletionProtection.
    SetDeletionProtectionRequest {
        /// The key's ARN (a key id or alias is accepted too).
        pub protected_resource_arn: String,
        #[serde(default, deserialize_with = "lenient::opt_bool")]
        pub enable_deletion_protection: Option<bool>,
        pub deletion_protection_description: Option<String>,
    }
);

request!(
    /// ScheduleKeyDeletion.
    ScheduleKeyDeletionRequest {
        pub key_id: String,
        /// 7–30 days.
        #[serde(default, deserialize_with = "lenient::opt_u32")]
        pub pending_window_in_days: Option<u32>,
    }
);

// ---------------------------------------------------------------- versions

response!(
    /// A key version.
    KeyVersion {
        pub key_id: String,
        pub key_version_id: String,
        pub creation_date: String,
    }
);

response!(
    /// CreateKeyVersion's and DescribeKeyVersion's answer.
    KeyVersionResponse {
        pub key_version: KeyVersion,
    }
);

request!(
    /// DescribeKeyVersion.
    DescribeKeyVersionRequest {
        pub key_id: String,
        pub key_version_id: String,
    }
);

request!(
    /// ListKeyVersions, ListAliasesByKeyId.
    KeyPageRequest {
        pub key_id: String,
        #[serde(default, deserialize_with = "lenient::opt_u32")]
        pub page_number: Option<u32>,
        #[serde(default, deserialize_with = "lenient::opt_u32")]
        pub page_size: Option<u32>,
    }
);

response!(
    /// The `KeyVersions` wrapper.
    KeyVersionList {
        pub key_version: Vec<KeyVersion>,
    }
);

response!(
    /// ListKeyVersions' answer.
    ListKeyVersionsResponse {
        pub key_versions: KeyVersionList,
        pub total_count: u64,
        pub page_number: u32,
        pub page_size: u32,
    }
);

request!(
    /// UpdateRotationPolicy.
    UpdateRotationPolicyRequest {
        pub key_id: String,
        #[serde(default, deserialize_with = "lenient::opt_bool")]
        pub enable_automatic_rotation: Option<bool>,
        pub rotation_interval: Option<String>,
    }
);

// ---------------------------------------------------------------- aliases

request!(
    /// CreateAlias, UpdateAlias.
    AliasRequest {
        /// `alias/` followed by letters, digits, `_`, `-` and `/`.
        pub alias_name: String,
        pub key_id: String,
    }
);

request!(
    /// DeleteAlias.
    DeleteAliasRequest {
        pub alias_name: String,
    }
);

response!(
    /// One alias.
    Alias {
        pub alias_name: String,
        pub alias_arn: String,
        pub key_id: String,
    }
);

response!(
    /// The `Aliases` wrapper.
    AliasList {
        pub alias: Vec<Alias>,
    }
);

response!(
    /// ListAliases' and ListAliasesByKeyId's answer.
    ListAliasesResponse {
        pub aliases: AliasList,
        pub total_count: u64,
        pub page_number: u32,
        pub page_size: u32,
    }
);

// ---------------------------------------------------------------- tags

request!(
    /// TagResource.
    TagResourceRequest {
        pub key_id: String,
        /// JSON list of `{"TagKey": …, "TagValue": …}`.
        #[serde(default, deserialize_with = "lenient::json_or_text")]
        pub tags: Vec<Tag>,
    }
);

request!(
    /// UntagResource.
    UntagResourceRequest {
        pub key_id: String,
        /// JSON list of tag keys.
        #[serde(default, deserialize_with = "lenient::json_or_text")]
        pub tag_keys: Vec<String>,
    }
);

response!(
    /// The `Tags` wrapper.
    TagList {
        pub tag: Vec<Tag>,
    }
);

response!(
    /// ListResourceTags' answer.
    ListResourceTagsResponse {
        pub tags: TagList,
    }
);

// ---------------------------------------------------------------- cryptography

request!(
    /// Encrypt.
    EncryptRequest {
        pub key_id: String,
        /// Base64 in JSON; at most 6 KiB.
        pub plaintext: SecretBytes,
        #[serde(default, deserialize_with = "lenient::json_or_text")]
        pub encryption_context: EncryptionContext,
    }
);

response!(
    /// Encrypt's, ReEncrypt's and AsymmetricEncrypt's answer.
    EncryptResponse {
        pub ciphertext_blob: Bytes,
        pub key_id: String,
        pub key_version_id: String,
    }
);

request!(
    /// Decrypt.
    DecryptRequest {
        pub ciphertext_blob: Bytes,
        #[serde(default, deserialize_with = "lenient::json_or_text")]
        pub encryption_context: EncryptionContext,
    }
);

response!(
    /// Decrypt's and AsymmetricDecrypt's answer.
    DecryptResponse {
        pub plaintext: SecretBytes,
        pub key_id: String,
        pub key_version_id: String,
    }
);

request!(
    /// ReEncrypt: decrypt under the source key and context, encrypt under the destination.
    ReEncryptRequest {
        pub ciphertext_blob: Bytes,
        pub destination_key_id: String,
        #[serde(default, deserialize_with = "lenient::json_or_text")]
        pub source_encryption_context: EncryptionContext,
        #[serde(default, deserialize_with = "lenient::json_or_text")]
        pub destination_encryption_context: EncryptionContext,
    }
);

response!(
    /// ReEncrypt's answer.
    ReEncryptResponse {
        pub ciphertext_blob: Bytes,
        pub key_id: String,
        pub key_version_id: String,
        pub source_key_id: String,
        pub source_key_version_id: String,
    }
);

request!(
    /// GenerateDataKey, GenerateDataKeyWithoutPlaintext.
    GenerateDataKeyRequest {
        pub key_id: String,
        /// `AES_256` (default) or `AES_128`.
        pub key_spec: Option<DataKeySpec>,
        /// 1–1024; overrides KeySpec.
        #[serde(default, deserialize_with = "lenient::opt_u32")]
        pub number_of_bytes: Option<u32>,
        #[serde(default, deserialize_with = "lenient::json_or_text")]
        pub encryption_context: EncryptionContext,
    }
);

response!(
    /// GenerateDataKey's answer.
    GenerateDataKeyResponse {
        pub ciphertext_blob: Bytes,
        pub key_id: String,
        pub key_version_id: String,
        pub plaintext: SecretBytes,
    }
);

request!(
    /// AsymmetricSign.
    AsymmetricSignRequest {
        pub key_id: String,
        /// The primary version when absent.
        pub key_version_id: Option<String>,
        pub algorithm: Option<SigningAlgorithm>,
        /// The digest of the message, computed by the caller (SHA-256, or SM3 of Z‖M for SM2DSA).
        pub digest: Bytes,
    }
);

response!(
    /// AsymmetricSign's answer.
    AsymmetricSignResponse {
        /// The signature (DER for ECDSA and SM2DSA).
        pub value: Bytes,
        pub key_id: String,
        pub key_version_id: String,
    }
);

request!(
    /// AsymmetricVerify.
    AsymmetricVerifyRequest {
        pub key_id: String,
        pub key_version_id: Option<String>,
        pub algorithm: Option<SigningAlgorithm>,
        pub digest: Bytes,
        /// The signature.
        pub value: Bytes,
    }
);

response!(
    /// AsymmetricVerify's answer.
    AsymmetricVerifyResponse {
        pub value: bool,
        pub key_id: String,
        pub key_version_id: String,
    }
);

request!(
    /// AsymmetricEncrypt.
    AsymmetricEncryptRequest {
        pub key_id: String,
        pub key_version_id: Option<String>,
        pub algorithm: Option<AsymmetricAlgorithm>,
        pub plaintext: SecretBytes,
    }
);

request!(
    /// AsymmetricDecrypt.
    AsymmetricDecryptRequest {
        pub key_id: String,
        pub key_version_id: Option<String>,
        pub algorithm: Option<AsymmetricAlgorithm>,
        pub ciphertext_blob: Bytes,
    }
);

request!(
    /// GetPublicKey.
    GetPublicKeyRequest {
        pub key_id: String,
        pub key_version_id: Option<String>,
    }
);

response!(
    /// GetPublicKey's answer.
    GetPublicKeyResponse {
        /// PEM, `-----BEGIN PUBLIC KEY-----`.
        pub public_key: String,
        pub key_id: String,
        pub key_version_id: String,
    }
);

request!(
    /// GenerateRandom.
    GenerateRandomRequest {
        /// 1–1024 bytes; default 32.
        #[serde(default, deserialize_with = "lenient::opt_u32")]
        pub length: Option<u32>,
    }
);

response!(
    /// GenerateRandom's answer.
    GenerateRandomResponse {
        pub random: SecretBytes,
    }
);

// ---------------------------------------------------------------- instances

request!(
    /// CreateKmsInstance (Tessera's own: in Alibaba Cloud an instance is bought). A `software`
    /// instance needs nothing else; a `hardware` one names its HSM: the PKCS#11 module, the token
    /// (by label or serial), and where its user PIN comes from — an environment variable or a
    /// file, never the store.
    CreateKmsInstanceRequest {
        pub product_version: Option<ProductVersion>,
        pub description: Option<String>,
        pub hsm_module_path: Option<String>,
        pub hsm_token_label: Option<String>,
        pub hsm_token_serial: Option<String>,
        pub hsm_pin_env: Option<String>,
        pub hsm_pin_file: Option<String>,
    }
);

response!(
    /// CreateKmsInstance's answer.
    KmsInstanceIdResponse {
        pub kms_instance_id: String,
    }
);

request!(
    /// GetKmsInstance and CheckKmsInstance.
    KmsInstanceIdRequest {
        pub kms_instance_id: String,
    }
);

response!(
    /// An instance, as GetKmsInstance returns it.
    KmsInstance {
        pub kms_instance_id: String,
        pub product_version: Option<ProductVersion>,
        pub description: String,
        pub create_time: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub hsm_module_path: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub hsm_token_label: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub hsm_token_serial: Option<String>,
        /// `env:NAME` or `file:/path`.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub hsm_pin_source: Option<String>,
    }
);

response!(
    /// GetKmsInstance's answer.
    GetKmsInstanceResponse {
        pub kms_instance: KmsInstance,
    }
);

response!(
    /// One entry of ListKmsInstances.
    KmsInstanceEntry {
        pub kms_instance_id: String,
        pub product_version: Option<ProductVersion>,
    }
);

response!(
    /// The `KmsInstances` wrapper of ListKmsInstances.
    KmsInstanceList {
        pub kms_instance: Vec<KmsInstanceEntry>,
    }
);

response!(
    /// ListKmsInstances' answer.
    ListKmsInstancesResponse {
        pub kms_instances: KmsInstanceList,
        pub total_count: u64,
        pub page_number: u32,
        pub page_size: u32,
    }
);

response!(
    /// CheckKmsInstance's answer: the instance's backend is reachable, and what it is.
    CheckKmsInstanceResponse {
        pub kms_instance_id: String,
        pub product_version: Option<ProductVersion>,
        pub reachable: bool,
        #[serde(skip_serializing_if = "String::is_empty")]
        pub library: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        pub token_label: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        pub token_serial: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        pub token_model: String,
    }
);

// ---------------------------------------------------------------- policies and audit

request!(
    /// SetKeyPolicy.
    SetKeyPolicyRequest {
        pub key_id: String,
        /// The policy JSON; empty restores the default policy.
        pub policy: String,
    }
);

response!(
    /// GetKeyPolicy's answer.
    GetKeyPolicyResponse {
        pub key_id: String,
        /// The policy JSON (the default policy when none was set).
        pub policy: String,
    }
);

request!(
    /// CreatePolicy.
    CreatePolicyRequest {
        /// 1–128 characters: letters, digits and `-`.
        pub policy_name: String,
        /// The policy JSON, at most 32768 bytes.
        pub policy_document: String,
        pub description: Option<String>,
    }
);

request!(
    /// A request that names just a policy: GetPolicy, DeletePolicy.
    PolicyNameRequest {
        pub policy_name: String,
    }
);

request!(
    /// UpdatePolicy.
    UpdatePolicyRequest {
        pub policy_name: String,
        pub policy_document: String,
    }
);

response!(
    /// An identity policy.
    Policy {
        pub policy_name: String,
        /// Always `Custom`.
        pub policy_type: String,
        pub description: String,
        pub create_date: String,
        pub update_date: String,
        /// How many users and roles it is attached to.
        pub attachment_count: u64,
    }
);

response!(
    /// CreatePolicy's, GetPolicy's and UpdatePolicy's answer.
    PolicyResponse {
        pub policy: Policy,
        /// The document (GetPolicy only).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub policy_document: Option<String>,
    }
);

response!(
    /// A list of policies.
    PolicyList {
        pub policy: Vec<Policy>,
    }
);

response!(
    /// ListPolicies' and ListPoliciesFor*'s answer.
    ListPoliciesResponse {
        pub policies: PolicyList,
        pub total_count: u64,
        pub page_number: u32,
        pub page_size: u32,
    }
);

request!(
    /// AttachPolicyToUser, DetachPolicyFromUser.
    UserPolicyRequest {
        pub policy_name: String,
        /// Default `Custom` (the only kind here).
        pub policy_type: Option<String>,
        pub user_name: String,
        /// The user's account; default the store's own (another account's users are
        /// cross-account principals).
        pub account_id: Option<String>,
    }
);

request!(
    /// AttachPolicyToRole, DetachPolicyFromRole.
    RolePolicyRequest {
        pub policy_name: String,
        pub policy_type: Option<String>,
        pub role_name: String,
        pub account_id: Option<String>,
    }
);

request!(
    /// ListPoliciesForUser.
    UserRequest {
        pub user_name: String,
        pub account_id: Option<String>,
    }
);

request!(
    /// ListPoliciesForRole.
    RoleRequest {
        pub role_name: String,
        pub account_id: Option<String>,
    }
);

request!(
    /// LookupEvents: filters (all optional) and a page.
    LookupEventsRequest {
        /// Events of this key (id or alias).
        pub key_id: Option<String>,
        /// Events of this principal (ARN).
        pub principal: Option<String>,
        /// Events of this API action (`Encrypt`).
        pub action: Option<String>,
        /// Events at or after this time (ISO 8601, `2026-01-01T00:00:00Z`).
        pub start_time: Option<String>,
        /// Events before this time.
        pub end_time: Option<String>,
        #[serde(default, deserialize_with = "lenient::opt_u32")]
        pub page_number: Option<u32>,
        #[serde(default, deserialize_with = "lenient::opt_u32")]
        pub page_size: Option<u32>,
    }
);

response!(
    /// One audited call.
    AuditEvent {
        pub event_id: i64,
        pub event_time: String,
        pub principal: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub source_ip: Option<String>,
        pub action: String,
        pub resource: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub key_id: Option<String>,
        /// `Success` or `Failure`.
        pub result: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
        /// How many calls the event stands for: identical calls made one after another in the
        /// same millisecond (same caller, source, action, resources, key and outcome) are one
        /// event.
        pub count: u64,
    }
);

response!(
    /// A list of audit events.
    AuditEventList {
        pub event: Vec<AuditEvent>,
    }
);

response!(
    /// LookupEvents' answer, newest first.
    LookupEventsResponse {
        pub events: AuditEventList,
        pub total_count: u64,
        pub page_number: u32,
        pub page_size: u32,
    }
);
