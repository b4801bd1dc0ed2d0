//! The key model: specs, usages, states and algorithms, named as the Alibaba Cloud KMS API names them.

use serde::{Deserialize, Serialize};

use crate::error::KmsError;

/// Generates `as_str`, `FromStr` and `Display` for an enum whose API names are given once.
macro_rules! api_enum {
    ($(#[$m:meta])* $name:ident, $param:literal { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name the API uses for this value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = KmsError;
            fn from_str(s: &str) -> Result<Self, KmsError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(KmsError::invalid($param, format!("'{s}' is not a valid value"))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

api_enum!(
    /// The type of a key (`KeySpec`).
    KeySpec, "KeySpec" {
        Aes256 => "Aliyun_AES_256",
        Aes192 => "Aliyun_AES_192",
        Aes128 => "Aliyun_AES_128",
        Sm4 => "Aliyun_SM4",
        Rsa2048 => "RSA_2048",
        Rsa3072 => "RSA_3072",
        Rsa4096 => "RSA_4096",
        EcP256 => "EC_P256",
        EcP256K => "EC_P256K",
        EcSm2 => "EC_SM2",
    }
);

api_enum!(
    /// The kind of a KMS instance (`ProductVersion` of `ALIYUN::KMS::Instance`): `software`
    /// keeps material in the software engine, `hardware` in an HSM reached over PKCS#11.
    ProductVersion, "ProductVersion" {
        Software => "software",
        Hardware => "hardware",
    }
);

api_enum!(
    /// What a key may be used for (`KeyUsage`).
    KeyUsage, "KeyUsage" {
        EncryptDecrypt => "ENCRYPT/DECRYPT",
        SignVerify => "SIGN/VERIFY",
    }
);

api_enum!(
    /// The lifecycle state of a key (`KeyState`).
    KeyState, "KeyState" {
        Enabled => "Enabled",
        Disabled => "Disabled",
        PendingDeletion => "PendingDeletion",
        PendingImport => "PendingImport",
    }
);

api_enum!(
    /// Where the key material is protected (`ProtectionLevel`).
    ProtectionLevel, "ProtectionLevel" {
        Software => "SOFTWARE",
        Hsm => "HSM",
    }
);

api_enum!(
    /// Where the key material came from (`Origin`).
    Origin, "Origin" {
        AliyunKms => "Aliyun_KMS",
        External => "EXTERNAL",
    }
);

api_enum!(
    /// Signature algorithms of AsymmetricSign / AsymmetricVerify (`Algorithm`).
    SigningAlgorithm, "Algorithm" {
        RsaPssSha256 => "RSA_PSS_SHA_256",
        RsaPkcs1Sha256 => "RSA_PKCS1_SHA_256",
        EcdsaSha256 => "ECDSA_SHA_256",
        Sm2Dsa => "SM2DSA",
    }
);

api_enum!(
    /// Encryption algorithms of AsymmetricEncrypt / AsymmetricDecrypt (`Algorithm`).
    AsymmetricAlgorithm, "Algorithm" {
        RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
        Sm2Pke => "SM2PKE",
    }
);

api_enum!(
    /// Data key specs of GenerateDataKey (`KeySpec`).
    DataKeySpec, "KeySpec" {
        Aes256 => "AES_256",
        Aes128 => "AES_128",
    }
);

/// The symmetric algorithm a symmetric key spec encrypts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymmetricAlgorithm {
    /// AES in Galois/Counter mode (128, 192 or 256-bit keys).
    AesGcm,
    /// SM4 in Galois/Counter mode.
    Sm4Gcm,
}

impl KeySpec {
    /// True for the specs that encrypt with a symmetric cipher.
    pub fn is_symmetric(self) -> bool {
        self.symmetric_algorithm().is_some()
    }

    /// The symmetric cipher of a symmetric spec.
    pub fn symmetric_algorithm(self) -> Option<SymmetricAlgorithm> {
        match self {
            KeySpec::Aes256 | KeySpec::Aes192 | KeySpec::Aes128 => Some(SymmetricAlgorithm::AesGcm),
            KeySpec::Sm4 => Some(SymmetricAlgorithm::Sm4Gcm),
            _ => None,
        }
    }

    /// Usages this spec supports, the API's default first (SIGN/VERIFY where the key can sign).
    pub fn usages(self) -> &'static [KeyUsage] {
        match self {
            KeySpec::Aes256 | KeySpec::Aes192 | KeySpec::Aes128 | KeySpec::Sm4 => &[KeyUsage::EncryptDecrypt],
            KeySpec::EcP256 | KeySpec::EcP256K => &[KeyUsage::SignVerify],
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 | KeySpec::EcSm2 => {
                &[KeyUsage::SignVerify, KeyUsage::EncryptDecrypt]
            }
        }
    }

    /// The usage a key of this spec gets when CreateKey names none.
    pub fn default_usage(self) -> KeyUsage {
        self.usages()[0]
    }

    /// Signature algorithms valid for this spec.
    pub fn signing_algorithms(self) -> &'static [SigningAlgorithm] {
        match self {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                &[SigningAlgorithm::RsaPssSha256, SigningAlgorithm::RsaPkcs1Sha256]
            }
            KeySpec::EcP256 | KeySpec::EcP256K => &[SigningAlgorithm::EcdsaSha256],
            KeySpec::EcSm2 => &[SigningAlgorithm::Sm2Dsa],
            _ => &[],
        }
    }

    /// Asymmetric encryption algorithms valid for this spec.
    pub fn asymmetric_algorithms(self) -> &'static [AsymmetricAlgorithm] {
        match self {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                &[AsymmetricAlgorithm::RsaesOaepSha1, AsymmetricAlgorithm::RsaesOaepSha256]
            }
            KeySpec::EcSm2 => &[AsymmetricAlgorithm::Sm2Pke],
            _ => &[],
        }
    }
}

impl DataKeySpec {
    /// Length of the data key in bytes.
    pub fn byte_len(self) -> usize {
        match self {
            DataKeySpec::Aes256 => 32,
            DataKeySpec::Aes128 => 16,
        }
    }
}

/// A tag on a key, as TagResource and ListResourceTags write it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// The tag key (1–128 characters).
    pub tag_key: String,
    /// The tag value (0–128 characters).
    #[serde(default)]
    pub tag_value: String,
}

impl Tag {
    /// A tag from a key and a value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            tag_key: key.into(),
            tag_value: value.into(),
        }
    }
}
