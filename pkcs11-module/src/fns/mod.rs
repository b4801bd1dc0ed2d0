//! The PKCS#11 functions in safe Rust. The FFI edge (`crate::ffi`) turns pointers into the
//! types used here and back; everything that decides anything is here.

pub mod crypto;
pub mod general;
pub mod objects;
pub mod session;

use cryptoki_sys::*;

use crate::error::{Ckr, Result};
use crate::state::{self, Module, Session};

/// Runs `f` on the module and a session, locked.
pub fn with_session<T>(session: CK_SESSION_HANDLE, f: impl FnOnce(&Module, &mut Session) -> Result<T>) -> Result<T> {
    let m = state::module()?;
    m.with_session(session, |s| f(&m, s))
}

/// A caller's output buffer with PKCS#11's length conventions: no buffer asks for the length;
/// a short one gets `CKR_BUFFER_TOO_SMALL` and the length; either way the operation goes on.
pub struct OutBuf<'a> {
    buf: Option<&'a mut [u8]>,
    len: &'a mut CK_ULONG,
}

impl<'a> OutBuf<'a> {
    /// Wraps the caller's buffer (`None` for a length query) and length.
    pub fn new(buf: Option<&'a mut [u8]>, len: &'a mut CK_ULONG) -> Self {
        OutBuf { buf, len }
    }

    /// Whether the caller gave a buffer (false: a length query).
    pub fn has_buffer(&self) -> bool {
        self.buf.is_some()
    }

    /// Answers a length query with a length known without the data.
    pub fn deliver_len(&mut self, len: usize) -> Result<()> {
        *self.len = CK_ULONG::try_from(len).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
        Ok(())
    }

    /// Hands `data` over. `Ok(true)`: delivered, the operation is done; `Ok(false)`: a length
    /// query was answered.
    pub fn deliver(&mut self, data: &[u8]) -> Result<bool> {
        *self.len = CK_ULONG::try_from(data.len()).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
        match self.buf.as_deref_mut() {
            None => Ok(false),
            Some(buf) if buf.len() < data.len() => Err(Ckr::CKR_BUFFER_TOO_SMALL),
            Some(buf) => {
                buf[..data.len()].copy_from_slice(data);
                Ok(true)
            }
        }
    }
}

/// A template attribute (type and value bytes) as the caller gave it.
pub type Attribute = (CK_ATTRIBUTE_TYPE, Vec<u8>);

/// Reading typed values out of a template.
pub trait Template {
    /// The raw value of an attribute.
    fn raw(&self, t: CK_ATTRIBUTE_TYPE) -> Option<&[u8]>;

    /// A CK_BBOOL attribute; a wrong size is an invalid value.
    fn bool_attr(&self, t: CK_ATTRIBUTE_TYPE) -> Result<Option<bool>> {
        match self.raw(t) {
            None => Ok(None),
            Some([b]) => Ok(Some(*b != 0)),
            Some(_) => Err(Ckr::CKR_ATTRIBUTE_VALUE_INVALID),
        }
    }

    /// A CK_ULONG attribute.
    fn ulong_attr(&self, t: CK_ATTRIBUTE_TYPE) -> Result<Option<CK_ULONG>> {
        match self.raw(t) {
            None => Ok(None),
            Some(bytes) => Ok(Some(CK_ULONG::from_ne_bytes(
                bytes.try_into().map_err(|_| Ckr::CKR_ATTRIBUTE_VALUE_INVALID)?,
            ))),
        }
    }
}

impl Template for [Attribute] {
    fn raw(&self, t: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        self.iter().rev().find(|(a, _)| *a == t).map(|(_, v)| v.as_slice())
    }
}

/// A template as the caller holds it, borrowed for one call (a search copies nothing).
pub type AttributeRef<'a> = (CK_ATTRIBUTE_TYPE, &'a [u8]);

impl Template for [AttributeRef<'_>] {
    fn raw(&self, t: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        self.iter().rev().find(|(a, _)| *a == t).map(|(_, v)| *v)
    }
}
