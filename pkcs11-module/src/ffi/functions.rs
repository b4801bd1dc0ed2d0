//! The exported PKCS#11 functions. Each one converts its pointers (the only unsafe step) and
//! calls the safe implementation in `crate::fns`.

#![allow(non_snake_case, clippy::missing_safety_doc)]

use cryptoki_sys::*;

use super::mechanism::mechanism;
use super::{entry, input, input_mut, out, out_buf, template, template_ref, write_list};
use crate::error::Ckr;
use crate::fns::{self, crypto, general, objects, session};
use crate::objects::Attr;

// ------------------------------------------------------------------ general

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Initialize(init_args: *mut std::ffi::c_void) -> CK_RV {
    entry!("C_Initialize", {
        // SAFETY: the caller passes null or a CK_C_INITIALIZE_ARGS.
        if let Some(args) = unsafe { (init_args as *const CK_C_INITIALIZE_ARGS).as_ref() } {
            if !args.pReserved.is_null() {
                return Err(Ckr::CKR_ARGUMENTS_BAD);
            }
            let callbacks = [
                args.CreateMutex.is_some(),
                args.DestroyMutex.is_some(),
                args.LockMutex.is_some(),
                args.UnlockMutex.is_some(),
            ];
            if callbacks.iter().any(|c| *c) && !callbacks.iter().all(|c| *c) {
                return Err(Ckr::CKR_ARGUMENTS_BAD);
            }
            // The module locks with the OS's primitives; it cannot use the caller's instead.
            if callbacks[0] && args.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(Ckr(CKR_CANT_LOCK));
            }
        }
        general::initialize()
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Finalize(reserved: *mut std::ffi::c_void) -> CK_RV {
    entry!("C_Finalize", {
        if !reserved.is_null() {
            return Err(Ckr::CKR_ARGUMENTS_BAD);
        }
        general::finalize()
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    entry!("C_GetInfo", {
        // SAFETY: PKCS#11 contract: a writable CK_INFO.
        let info = unsafe { out(info) }?;
        *info = general::info()?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSlotList(_token_present: CK_BBOOL, list: *mut CK_SLOT_ID, count: *mut CK_ULONG) -> CK_RV {
    entry!("C_GetSlotList", {
        let slots = general::slot_list()?;
        // SAFETY: PKCS#11 contract: `count` writable, `list` null or `*count` long.
        unsafe { write_list(list, count, &slots) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    entry!("C_GetSlotInfo", {
        // SAFETY: PKCS#11 contract: a writable CK_SLOT_INFO.
        let info = unsafe { out(info) }?;
        *info = general::slot_info(slot)?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    entry!("C_GetTokenInfo", {
        // SAFETY: PKCS#11 contract: a writable CK_TOKEN_INFO.
        let info = unsafe { out(info) }?;
        *info = general::token_info(slot)?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry!("C_GetMechanismList", {
        let mechanisms = general::mechanism_list(slot)?;
        // SAFETY: PKCS#11 contract: `count` writable, `list` null or `*count` long.
        unsafe { write_list(list, count, &mechanisms) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    kind: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    entry!("C_GetMechanismInfo", {
        // SAFETY: PKCS#11 contract: a writable CK_MECHANISM_INFO.
        let info = unsafe { out(info) }?;
        *info = general::mechanism_info(slot, kind)?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_InitToken(
    slot: CK_SLOT_ID,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
    label: *mut CK_UTF8CHAR,
) -> CK_RV {
    entry!("C_InitToken", {
        // SAFETY: PKCS#11 contract: `pin_len` bytes at `pin`, 32 bytes at `label`.
        let (pin, label) = unsafe { (input(pin, pin_len)?, input(label, 32)?) };
        let label: &[u8; 32] = label.try_into().map_err(|_| Ckr::CKR_ARGUMENTS_BAD)?;
        general::init_token(slot, pin, label)
    })
}

// ------------------------------------------------------------------ sessions

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_InitPIN(h: CK_SESSION_HANDLE, pin: *mut CK_UTF8CHAR, pin_len: CK_ULONG) -> CK_RV {
    entry!("C_InitPIN", {
        // SAFETY: PKCS#11 contract: `pin_len` bytes at `pin`.
        let pin = unsafe { input(pin, pin_len) }?;
        session::init_pin(h, pin)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetPIN(
    h: CK_SESSION_HANDLE,
    old: *mut CK_UTF8CHAR,
    old_len: CK_ULONG,
    new: *mut CK_UTF8CHAR,
    new_len: CK_ULONG,
) -> CK_RV {
    entry!("C_SetPIN", {
        // SAFETY: PKCS#11 contract: each PIN as long as its length says.
        let (old, new) = unsafe { (input(old, old_len)?, input(new, new_len)?) };
        session::set_pin(h, old, new)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _application: *mut std::ffi::c_void,
    _notify: CK_NOTIFY,
    handle: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    entry!("C_OpenSession", {
        // SAFETY: PKCS#11 contract: a writable handle.
        let handle = unsafe { out(handle) }?;
        *handle = session::open(slot, flags)?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CloseSession(h: CK_SESSION_HANDLE) -> CK_RV {
    entry!("C_CloseSession", { session::close(h) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    entry!("C_CloseAllSessions", { session::close_all(slot) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSessionInfo(h: CK_SESSION_HANDLE, info: *mut CK_SESSION_INFO) -> CK_RV {
    entry!("C_GetSessionInfo", {
        // SAFETY: PKCS#11 contract: a writable CK_SESSION_INFO.
        let info = unsafe { out(info) }?;
        *info = session::info(h)?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Login(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
) -> CK_RV {
    entry!("C_Login", {
        // SAFETY: PKCS#11 contract: `pin_len` bytes at `pin`.
        let pin = unsafe { input(pin, pin_len) }?;
        session::login(h, user, pin)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_LoginUser(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
    _username: *mut CK_UTF8CHAR,
    _username_len: CK_ULONG,
) -> CK_RV {
    entry!("C_LoginUser", {
        // SAFETY: PKCS#11 contract: `pin_len` bytes at `pin`.
        let pin = unsafe { input(pin, pin_len) }?;
        // The token has one user; a user name names nobody else.
        session::login(h, user, pin)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Logout(h: CK_SESSION_HANDLE) -> CK_RV {
    entry!("C_Logout", { session::logout(h) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SessionCancel(h: CK_SESSION_HANDLE, flags: CK_FLAGS) -> CK_RV {
    entry!("C_SessionCancel", { crypto::cancel(h, flags) })
}

// ------------------------------------------------------------------ objects

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DestroyObject(h: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> CK_RV {
    entry!("C_DestroyObject", { objects::destroy(h, object) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetObjectSize(h: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE, size: *mut CK_ULONG) -> CK_RV {
    entry!("C_GetObjectSize", {
        // SAFETY: PKCS#11 contract: a writable CK_ULONG.
        let size = unsafe { out(size) }?;
        *size = objects::object_size(h, object)?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetAttributeValue(
    h: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    attributes: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    entry!("C_GetAttributeValue", {
        // SAFETY: PKCS#11 contract: `count` CK_ATTRIBUTEs, each with room for `ulValueLen`
        // bytes at a non-null `pValue`.
        let attributes = unsafe { super::input_mut(attributes, count) }?;
        let types: Vec<CK_ATTRIBUTE_TYPE> = attributes.iter().map(|a| a.type_).collect();
        let values = objects::attributes(h, object, &types)?;
        // When several attributes fail, the most telling reason wins.
        let mut outcome: Option<Ckr> = None;
        let mut fail = |a: &mut CK_ATTRIBUTE, rv: Ckr| {
            a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
            let rank = |r: Ckr| {
                [
                    Ckr::CKR_BUFFER_TOO_SMALL,
                    Ckr::CKR_ATTRIBUTE_TYPE_INVALID,
                    Ckr::CKR_ATTRIBUTE_SENSITIVE,
                ]
                .iter()
                .position(|x| *x == r)
            };
            if outcome.is_none_or(|o| rank(rv) > rank(o)) {
                outcome = Some(rv);
            }
        };
        for (a, value) in attributes.iter_mut().zip(values) {
            match value {
                Attr::Value(bytes) => {
                    let len = CK_ULONG::try_from(bytes.len()).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
                    if a.pValue.is_null() {
                        a.ulValueLen = len;
                    } else if a.ulValueLen < len {
                        fail(a, Ckr::CKR_BUFFER_TOO_SMALL);
                    } else {
                        // SAFETY: `pValue` has room for `ulValueLen >= len` bytes (contract above).
                        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), a.pValue as *mut u8, bytes.len()) };
                        a.ulValueLen = len;
                    }
                }
                Attr::Sensitive => fail(a, Ckr::CKR_ATTRIBUTE_SENSITIVE),
                Attr::Invalid => fail(a, Ckr::CKR_ATTRIBUTE_TYPE_INVALID),
            }
        }
        outcome.map_or(Ok(()), Err)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjectsInit(
    h: CK_SESSION_HANDLE,
    attributes: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    entry!("C_FindObjectsInit", {
        // SAFETY: PKCS#11 contract: `count` readable attributes.
        let template = unsafe { template_ref(attributes, count) }?;
        objects::find_init(h, &template)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjects(
    h: CK_SESSION_HANDLE,
    found: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry!("C_FindObjects", {
        // SAFETY: PKCS#11 contract: a writable count.
        let count = unsafe { out(count) }?;
        // SAFETY: PKCS#11 contract: room for `max` handles at `found` (`input_mut` refuses a
        // null array when `max` is not zero).
        let room = unsafe { input_mut(found, max) }?;
        let n = objects::find(h, room)?;
        *count = CK_ULONG::try_from(n).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjectsFinal(h: CK_SESSION_HANDLE) -> CK_RV {
    entry!("C_FindObjectsFinal", { objects::find_final(h) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateKey(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    attributes: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry!("C_GenerateKey", {
        // SAFETY: PKCS#11 contract: a mechanism, `count` attributes, a writable handle.
        let (mech, template, key) = unsafe { (mechanism(mech)?, template(attributes, count)?, out(key)?) };
        *key = objects::generate_key(h, &mech, &template)?;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateKeyPair(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    public_attributes: *mut CK_ATTRIBUTE,
    public_count: CK_ULONG,
    private_attributes: *mut CK_ATTRIBUTE,
    private_count: CK_ULONG,
    public_key: *mut CK_OBJECT_HANDLE,
    private_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry!("C_GenerateKeyPair", {
        // SAFETY: PKCS#11 contract: a mechanism, two templates, two writable handles.
        let (mech, public, private, public_key, private_key) = unsafe {
            (
                mechanism(mech)?,
                template(public_attributes, public_count)?,
                template(private_attributes, private_count)?,
                out(public_key)?,
                out(private_key)?,
            )
        };
        (*public_key, *private_key) = objects::generate_key_pair(h, &mech, &public, &private)?;
        Ok(())
    })
}

// ------------------------------------------------------------------ cryptography

/// The four functions of a multi-part operation family that takes data and gives output.
macro_rules! init_fn {
    ($name:ident, $call:expr) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(h: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) -> CK_RV {
            entry!(stringify!($name), {
                // SAFETY: PKCS#11 contract: a readable mechanism.
                let mech = unsafe { mechanism(mech) }?;
                $call(h, &mech, key)
            })
        }
    };
}

init_fn!(C_SignInit, crypto::sign_init);
init_fn!(C_VerifyInit, crypto::verify_init);
init_fn!(C_EncryptInit, |h, m, k| crypto::cipher_init(h, m, k, true));
init_fn!(C_DecryptInit, |h, m, k| crypto::cipher_init(h, m, k, false));

/// A single-part call: data in, output with the length conventions.
macro_rules! data_out_fn {
    ($name:ident, $call:expr) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            h: CK_SESSION_HANDLE,
            data: *mut CK_BYTE,
            data_len: CK_ULONG,
            output: *mut CK_BYTE,
            output_len: *mut CK_ULONG,
        ) -> CK_RV {
            entry!(stringify!($name), {
                // SAFETY: PKCS#11 contract: `data_len` readable bytes, an output buffer as its
                // length says (or null for a length query).
                let (data, mut out) = unsafe { (input(data, data_len)?, out_buf(output, output_len)?) };
                $call(h, data, &mut out)
            })
        }
    };
}

data_out_fn!(C_Sign, crypto::sign);
data_out_fn!(C_Encrypt, |h, d, o: &mut fns::OutBuf<'_>| crypto::cipher(h, true, d, o));
data_out_fn!(C_EncryptUpdate, |h, d, o: &mut fns::OutBuf<'_>| crypto::cipher_update(
    h, true, d, o
));
data_out_fn!(C_Decrypt, |h, d, o: &mut fns::OutBuf<'_>| crypto::cipher(
    h, false, d, o
));
data_out_fn!(C_DecryptUpdate, |h, d, o: &mut fns::OutBuf<'_>| crypto::cipher_update(
    h, false, d, o
));
data_out_fn!(C_Digest, crypto::digest);

/// A final call: output only.
macro_rules! out_fn {
    ($name:ident, $call:expr) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(h: CK_SESSION_HANDLE, output: *mut CK_BYTE, output_len: *mut CK_ULONG) -> CK_RV {
            entry!(stringify!($name), {
                // SAFETY: PKCS#11 contract: an output buffer as its length says, or null.
                let mut out = unsafe { out_buf(output, output_len) }?;
                $call(h, &mut out)
            })
        }
    };
}

out_fn!(C_SignFinal, crypto::sign_final);
out_fn!(C_EncryptFinal, |h, o: &mut fns::OutBuf<'_>| crypto::cipher_final(
    h, true, o
));
out_fn!(C_DecryptFinal, |h, o: &mut fns::OutBuf<'_>| crypto::cipher_final(
    h, false, o
));
out_fn!(C_DigestFinal, crypto::digest_final);

/// An update call: data in, nothing out.
macro_rules! data_fn {
    ($name:ident, $call:expr) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(h: CK_SESSION_HANDLE, data: *mut CK_BYTE, data_len: CK_ULONG) -> CK_RV {
            entry!(stringify!($name), {
                // SAFETY: PKCS#11 contract: `data_len` readable bytes.
                let data = unsafe { input(data, data_len) }?;
                $call(h, data)
            })
        }
    };
}

data_fn!(C_SignUpdate, crypto::sign_update);
data_fn!(C_VerifyUpdate, crypto::verify_update);
data_fn!(C_DigestUpdate, crypto::digest_update);
data_fn!(C_VerifyFinal, crypto::verify_final);
data_fn!(C_SeedRandom, |_, _| -> crate::error::Result<()> {
    crate::state::module()?;
    Err(Ckr::CKR_RANDOM_SEED_NOT_SUPPORTED)
});

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Verify(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    entry!("C_Verify", {
        // SAFETY: PKCS#11 contract: both buffers readable as their lengths say.
        let (data, signature) = unsafe { (input(data, data_len)?, input(signature, signature_len)?) };
        crypto::verify(h, data, signature)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestInit(h: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM) -> CK_RV {
    entry!("C_DigestInit", {
        // SAFETY: PKCS#11 contract: a readable mechanism.
        let mech = unsafe { mechanism(mech) }?;
        crypto::digest_init(h, &mech)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestKey(_h: CK_SESSION_HANDLE, _key: CK_OBJECT_HANDLE) -> CK_RV {
    entry!("C_DigestKey", {
        crate::state::module()?;
        // Every key here is sensitive.
        Err(Ckr::CKR_KEY_INDIGESTIBLE)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateRandom(h: CK_SESSION_HANDLE, buf: *mut CK_BYTE, len: CK_ULONG) -> CK_RV {
    entry!("C_GenerateRandom", {
        let n = usize::try_from(len).map_err(|_| Ckr::CKR_ARGUMENTS_BAD)?;
        if n > 0 && buf.is_null() {
            return Err(Ckr::CKR_ARGUMENTS_BAD);
        }
        let out: &mut [u8] = if n == 0 {
            &mut []
        } else {
            // SAFETY: non-null with `len` writable bytes (PKCS#11 contract).
            unsafe { std::slice::from_raw_parts_mut(buf, n) }
        };
        crypto::generate_random(h, out)
    })
}
