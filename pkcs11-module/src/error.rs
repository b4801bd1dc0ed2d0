//! One error type for the module, `Ckr`: a PKCS#11 return value. KMS errors map onto it once,
//! here, so every function answers a refusal the same way.

use cryptoki_sys::*;
use kms_core::KmsError;

/// A PKCS#11 return value other than `CKR_OK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} (0x{:08x})", name(self.0), self.0)]
pub struct Ckr(pub CK_RV);

/// Result of a module function.
pub type Result<T, E = Ckr> = std::result::Result<T, E>;

impl Ckr {
    /// The return value.
    pub fn rv(self) -> CK_RV {
        self.0
    }
}

/// Shorthand constructors, named as the spec names the codes.
macro_rules! ckr_consts {
    ($($name:ident),* $(,)?) => {
        impl Ckr {
            $(
                #[allow(missing_docs)]
                pub const $name: Ckr = Ckr(cryptoki_sys::$name);
            )*
        }

        /// The name of a return value, for logs.
        pub fn name(rv: CK_RV) -> &'static str {
            match rv {
                $(cryptoki_sys::$name => stringify!($name),)*
                _ => "CKR_?",
            }
        }
    };
}

ckr_consts!(
    CKR_ACTION_PROHIBITED,
    CKR_ARGUMENTS_BAD,
    CKR_ATTRIBUTE_READ_ONLY,
    CKR_ATTRIBUTE_SENSITIVE,
    CKR_ATTRIBUTE_TYPE_INVALID,
    CKR_ATTRIBUTE_VALUE_INVALID,
    CKR_BUFFER_TOO_SMALL,
    CKR_CRYPTOKI_ALREADY_INITIALIZED,
    CKR_CRYPTOKI_NOT_INITIALIZED,
    CKR_CURVE_NOT_SUPPORTED,
    CKR_DATA_INVALID,
    CKR_DATA_LEN_RANGE,
    CKR_DEVICE_ERROR,
    CKR_DEVICE_MEMORY,
    CKR_DOMAIN_PARAMS_INVALID,
    CKR_ENCRYPTED_DATA_INVALID,
    CKR_ENCRYPTED_DATA_LEN_RANGE,
    CKR_FUNCTION_NOT_SUPPORTED,
    CKR_GENERAL_ERROR,
    CKR_HOST_MEMORY,
    CKR_KEY_FUNCTION_NOT_PERMITTED,
    CKR_KEY_HANDLE_INVALID,
    CKR_KEY_INDIGESTIBLE,
    CKR_KEY_SIZE_RANGE,
    CKR_KEY_TYPE_INCONSISTENT,
    CKR_MECHANISM_INVALID,
    CKR_MECHANISM_PARAM_INVALID,
    CKR_NEED_TO_CREATE_THREADS,
    CKR_OBJECT_HANDLE_INVALID,
    CKR_OK,
    CKR_OPERATION_ACTIVE,
    CKR_OPERATION_NOT_INITIALIZED,
    CKR_PIN_INCORRECT,
    CKR_PIN_INVALID,
    CKR_PIN_LEN_RANGE,
    CKR_RANDOM_SEED_NOT_SUPPORTED,
    CKR_SESSION_CLOSED,
    CKR_SESSION_EXISTS,
    CKR_SESSION_HANDLE_INVALID,
    CKR_SESSION_PARALLEL_NOT_SUPPORTED,
    CKR_SESSION_READ_ONLY,
    CKR_SESSION_READ_ONLY_EXISTS,
    CKR_SESSION_READ_WRITE_SO_EXISTS,
    CKR_SIGNATURE_INVALID,
    CKR_SIGNATURE_LEN_RANGE,
    CKR_SLOT_ID_INVALID,
    CKR_STATE_UNSAVEABLE,
    CKR_TEMPLATE_INCOMPLETE,
    CKR_TEMPLATE_INCONSISTENT,
    CKR_TOKEN_WRITE_PROTECTED,
    CKR_USER_ALREADY_LOGGED_IN,
    CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
    CKR_USER_NOT_LOGGED_IN,
    CKR_USER_PIN_NOT_INITIALIZED,
    CKR_USER_TYPE_INVALID,
);

impl From<KmsError> for Ckr {
    fn from(e: KmsError) -> Self {
        let rv = match &e {
            // The key behind a handle is gone or not Enabled: for PKCS#11 it no longer exists.
            KmsError::KeyNotFound(_)
            | KmsError::KeyVersionNotFound { .. }
            | KmsError::AliasNotFound(_)
            | KmsError::KeyStateRejected { .. } => Ckr::CKR_KEY_HANDLE_INVALID,
            KmsError::InvalidCiphertext => Ckr::CKR_ENCRYPTED_DATA_INVALID,
            KmsError::InvalidParameter { name, .. } => match *name {
                "Digest" | "Plaintext" => Ckr::CKR_DATA_LEN_RANGE,
                "CiphertextBlob" => Ckr::CKR_ENCRYPTED_DATA_LEN_RANGE,
                "Pin" => Ckr::CKR_PIN_LEN_RANGE,
                "AliasName" | "Alias" => Ckr::CKR_ATTRIBUTE_VALUE_INVALID,
                "Iv" => Ckr::CKR_MECHANISM_PARAM_INVALID,
                _ => Ckr::CKR_ARGUMENTS_BAD,
            },
            KmsError::MissingParameter(_) => Ckr::CKR_ARGUMENTS_BAD,
            KmsError::AliasAlreadyExists(_) => Ckr::CKR_ATTRIBUTE_VALUE_INVALID,
            KmsError::Unsupported { what, .. } => match *what {
                "KeyUsage" => Ckr::CKR_KEY_FUNCTION_NOT_PERMITTED,
                "Algorithm" => Ckr::CKR_KEY_TYPE_INCONSISTENT,
                _ => Ckr::CKR_KEY_TYPE_INCONSISTENT,
            },
            KmsError::LimitExceeded(_) => Ckr::CKR_DEVICE_MEMORY,
            KmsError::StateModifiedFailed(_) => Ckr::CKR_ACTION_PROHIBITED,
            KmsError::PinIncorrect => Ckr::CKR_PIN_INCORRECT,
            KmsError::NoPermission { .. } => Ckr::CKR_KEY_FUNCTION_NOT_PERMITTED,
            KmsError::TokenNotInitialized(_) => Ckr::CKR_USER_PIN_NOT_INITIALIZED,
            KmsError::InvalidRootKey(_) => Ckr::CKR_DEVICE_ERROR,
            _ => Ckr::CKR_GENERAL_ERROR,
        };
        // The KMS message names the reason (never secret data); the code alone often does not.
        tracing::debug!(code = e.code(), rv = name(rv.0), "{e}");
        rv
    }
}
