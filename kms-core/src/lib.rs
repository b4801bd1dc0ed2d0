//! Tessera `kms-core`: key management with the lifecycle of a cloud KMS (modelled on Alibaba
//! Cloud KMS), over a constant-time software engine and a sealed SQLite store.
//!
//! ```no_run
//! use kms_core::{Kms, api::*};
//! let kms = Kms::open("/tmp/tessera-store")?;
//! let key = kms.create_key(&CreateKeyRequest::default())?.key_metadata.key_id;
//! let blob = kms.encrypt(&EncryptRequest {
//!     key_id: key.clone(),
//!     plaintext: b"hello".as_slice().into(),
//!     encryption_context: [("app".into(), "demo".into())].into(),
//! })?;
//! let back = kms.decrypt(&DecryptRequest {
//!     ciphertext_blob: blob.ciphertext_blob,
//!     encryption_context: [("app".into(), "demo".into())].into(),
//! })?;
//! assert_eq!(back.plaintext.expose(), b"hello");
//! # Ok::<(), kms_core::KmsError>(())
//! ```
#![forbid(unsafe_code)]

pub mod api;
pub mod blob;
pub mod clock;
pub mod engine;
pub mod error;
pub mod model;
mod ops;
pub mod policy;
pub mod store;
pub mod validate;

pub use error::{KmsError, Result};
pub use ops::{
    CallerContext, Client, DEFAULT_INSTANCE_ID, DEFAULT_POLL_INTERVAL, Kms, KmsOptions, MAX_PIN_LEN, MIN_PIN_LEN,
    OPERATIONS, PASSPHRASE_ENV, PinRole, ROOT_KEY_FILE_ENV, STORE_ENV, TokenInfo, TokenKey, TokenVersion, TokenView,
    default_store_dir, hash_pin, is_pin_hash, pin_matches,
};
