//! The one error type of `kms-core`, each variant with its stable Alibaba Cloud KMS error code.
//!
//! Messages never carry key material or plaintext; cryptographic failures are deliberately
//! opaque so that an error is no oracle.

use crate::model::KeyState;

/// An error of a KMS operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// No key has this id (or it was purged).
    #[error("The specified key does not exist: {0}")]
    KeyNotFound(String),
    /// The key has no version with this id.
    #[error("The specified key version does not exist: {key_id}/{version_id}")]
    KeyVersionNotFound {
        /// The key.
        key_id: String,
        /// The version asked for.
        version_id: String,
    },
    /// The caller may not do this: no policy allows it, or one denies it.
    #[error("{} is not allowed to do {action} on {resource}{}", "the caller", if *explicit { " (an explicit Deny)" } else { "" })]
    NoPermission {
        /// The policy action (`kms:Encrypt`).
        action: &'static str,
        /// The resource's ARN.
        resource: String,
        /// Whether a Deny statement decided it (rather than the absence of an Allow).
        explicit: bool,
    },
    /// A policy with this name already exists.
    #[error("The policy already exists: {0}")]
    PolicyAlreadyExists(String),
    /// No policy has this name.
    #[error("The policy does not exist: {0}")]
    PolicyNotFound(String),
    /// The policy is still attached to principals.
    #[error("The policy is still attached to {0} principal(s); detach it first")]
    PolicyInUse(u64),
    /// No alias has this name.
    #[error("The specified alias does not exist: {0}")]
    AliasNotFound(String),
    /// The alias name is taken.
    #[error("The specified alias already exists: {0}")]
    AliasAlreadyExists(String),
    /// A required parameter is absent.
    #[error("The parameter {0} is required")]
    MissingParameter(&'static str),
    /// A parameter's value is not valid.
    #[error("The parameter {name} is invalid: {reason}")]
    InvalidParameter {
        /// The parameter, by its API name.
        name: &'static str,
        /// Why, without secret detail.
        reason: String,
    },
    /// A resource limit would be exceeded.
    #[error("Limit exceeded: {0}")]
    LimitExceeded(String),
    /// The operation is not valid for this key or parameter (`Unsupported.*`).
    #[error("{reason}")]
    Unsupported {
        /// The code suffix: `Origin`, `Alias`, `ProtectionLevel`, `KeySpec`, `KeyUsage`, `Algorithm`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The operation is not supported at all in this configuration.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// A state change that is not allowed now.
    #[error("The key state cannot be modified: {0}")]
    StateModifiedFailed(String),
    /// The key is not Enabled, so it may not be used.
    #[error("The key is in state {state} and cannot be used for this operation")]
    KeyStateRejected {
        /// Its current state.
        state: KeyState,
    },
    /// The ciphertext does not decrypt under this key, version and context.
    #[error("The ciphertext is not valid for this key and encryption context")]
    InvalidCiphertext,
    /// The store's root key does not open this store (wrong key file or passphrase).
    #[error("The root key does not open this store: {0}")]
    InvalidRootKey(String),
    /// A PIN does not match.
    #[error("The PIN is incorrect")]
    PinIncorrect,
    /// The token has no SO PIN yet, or no user PIN yet.
    #[error("{0}")]
    TokenNotInitialized(&'static str),
    /// An instance's HSM cannot be reached; the message says what failed (module, token, PIN).
    #[error("The HSM of this instance is unavailable: {0}")]
    HsmUnavailable(String),
    /// Anything unexpected. The message names the failing part, never secret data.
    #[error("Internal failure: {0}")]
    Internal(String),
}

impl KmsError {
    /// Shorthand for [`KmsError::InvalidParameter`].
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        KmsError::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }

    /// The Alibaba Cloud KMS error code, stable across releases.
    pub fn code(&self) -> &'static str {
        match self {
            KmsError::KeyNotFound(_) => "Forbidden.KeyNotFound",
            KmsError::KeyVersionNotFound { .. } => "Forbidden.KeyVersionNotFound",
            KmsError::AliasNotFound(_) => "Forbidden.AliasNotFound",
            KmsError::NoPermission { .. } => "Forbidden.NoPermission",
            KmsError::PolicyAlreadyExists(_) => "EntityAlreadyExists.Policy",
            KmsError::PolicyNotFound(_) => "EntityNotExist.Policy",
            KmsError::PolicyInUse(_) => "DeleteConflict.Policy.User",
            KmsError::AliasAlreadyExists(_) => "AliasAlreadyExists",
            KmsError::MissingParameter(_) => "MissingParameter",
            KmsError::InvalidParameter { .. } => "InvalidParameter",
            KmsError::LimitExceeded(_) => "Rejected.LimitExceeded",
            KmsError::Unsupported { what, .. } => match *what {
                "Origin" => "Unsupported.Origin",
                "Alias" => "Unsupported.Alias",
                "ProtectionLevel" => "Unsupported.ProtectionLevel",
                "KeySpec" => "Unsupported.KeySpec",
                "Algorithm" => "Unsupported.Algorithm",
                _ => "Unsupported.KeyUsage",
            },
            KmsError::UnsupportedOperation(_) => "UnsupportedOperation",
            KmsError::StateModifiedFailed(_) => "Rejected.StateModifiedFailed",
            KmsError::KeyStateRejected { state } => match state {
                KeyState::Disabled => "Rejected.Disabled",
                KeyState::PendingDeletion => "Rejected.PendingDeletion",
                KeyState::PendingImport => "Rejected.PendingImport",
                KeyState::Enabled => "Rejected.KeyState",
            },
            KmsError::InvalidCiphertext => "InvalidCiphertext",
            KmsError::InvalidRootKey(_) => "Forbidden.InvalidRootKey",
            KmsError::PinIncorrect => "Forbidden.PinIncorrect",
            KmsError::TokenNotInitialized(_) => "Rejected.TokenNotInitialized",
            KmsError::HsmUnavailable(_) => "Rejected.HsmUnavailable",
            KmsError::Internal(_) => "InternalFailure",
        }
    }

    /// The HTTP status the Alibaba API answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            KmsError::KeyNotFound(_) | KmsError::KeyVersionNotFound { .. } | KmsError::AliasNotFound(_) => 404,
            KmsError::InvalidRootKey(_) | KmsError::PinIncorrect | KmsError::NoPermission { .. } => 403,
            KmsError::PolicyNotFound(_) => 404,
            KmsError::PolicyAlreadyExists(_) | KmsError::PolicyInUse(_) => 409,
            KmsError::TokenNotInitialized(_) => 409,
            KmsError::StateModifiedFailed(_) | KmsError::KeyStateRejected { .. } => 409,
            KmsError::Internal(_) => 500,
            KmsError::HsmUnavailable(_) => 503,
            _ => 400,
        }
    }

    pub(crate) fn internal(what: impl std::fmt::Display) -> Self {
        KmsError::Internal(what.to_string())
    }
}

impl From<rusqlite::Error> for KmsError {
    fn from(e: rusqlite::Error) -> Self {
        // SQLite errors name tables and constraints, never bound values, so they carry no secrets.
        KmsError::Internal(format!("store: {e}"))
    }
}

/// Result of a KMS operation.
pub type Result<T, E = KmsError> = std::result::Result<T, E>;
