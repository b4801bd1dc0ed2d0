//! `libtessera_pkcs11.so`: Tessera's KMS keys as a PKCS#11 token that pkcs11-tool, OpenSSL
//! (libp11), Java's SunPKCS11 and GnuTLS use as they are.
//!
//! The module holds no KMS logic: a token is a KMS instance, its objects are the Enabled key
//! versions `kms-core` shows it, and every operation is a `kms-core` call on a named version.
//! Layout: `ffi/` is the C edge (the only unsafe code), `fns/` the functions in safe Rust,
//! `state` the sessions and login, `objects` the object model and attributes, `mechanisms` what
//! the token offers, `config` the TOML file, `cert` the certificates of `generate_certs`.

pub mod cert;
pub mod config;
pub mod error;
mod ffi;
pub mod fns;
mod log;
pub mod mechanisms;
pub mod objects;
pub mod state;
