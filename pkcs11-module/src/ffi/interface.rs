//! The function lists: `C_GetFunctionList` (v2.40) and `C_GetInterfaceList`/`C_GetInterface`
//! (v3.0), and the functions the token does not offer, which say so.

#![allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]

use cryptoki_sys::*;

use super::entry;
use super::functions::*;
use crate::error::Ckr;

/// A function the token does not offer: `CKR_CRYPTOKI_NOT_INITIALIZED` before C_Initialize,
/// then `rv`.
fn not_supported(name: &'static str, rv: CK_RV) -> CK_RV {
    entry!("not supported", {
        crate::state::module()?;
        tracing::debug!(function = name, "not supported");
        Err(Ckr(rv))
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetOperationState(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_BYTE,
    _arg3: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_GetOperationState", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetOperationState(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_BYTE,
    _arg3: CK_ULONG,
    _arg4: CK_OBJECT_HANDLE,
    _arg5: CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_SetOperationState", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CreateObject(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_ATTRIBUTE,
    _arg3: CK_ULONG,
    _arg4: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_CreateObject", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CopyObject(
    _arg1: CK_SESSION_HANDLE,
    _arg2: CK_OBJECT_HANDLE,
    _arg3: *mut CK_ATTRIBUTE,
    _arg4: CK_ULONG,
    _arg5: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_CopyObject", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetAttributeValue(
    _arg1: CK_SESSION_HANDLE,
    _arg2: CK_OBJECT_HANDLE,
    _arg3: *mut CK_ATTRIBUTE,
    _arg4: CK_ULONG,
) -> CK_RV {
    not_supported("C_SetAttributeValue", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignRecoverInit(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_MECHANISM,
    _arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_SignRecoverInit", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignRecover(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_BYTE,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_SignRecover", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyRecoverInit(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_MECHANISM,
    _arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_VerifyRecoverInit", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyRecover(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_BYTE,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_VerifyRecover", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestEncryptUpdate(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_BYTE,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_DigestEncryptUpdate", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptDigestUpdate(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_BYTE,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_DecryptDigestUpdate", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignEncryptUpdate(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_BYTE,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_SignEncryptUpdate", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptVerifyUpdate(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_BYTE,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_DecryptVerifyUpdate", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_WrapKey(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_MECHANISM,
    _arg3: CK_OBJECT_HANDLE,
    _arg4: CK_OBJECT_HANDLE,
    _arg5: *mut CK_BYTE,
    _arg6: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_WrapKey", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_UnwrapKey(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_MECHANISM,
    _arg3: CK_OBJECT_HANDLE,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_ATTRIBUTE,
    _arg7: CK_ULONG,
    _arg8: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_UnwrapKey", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DeriveKey(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_MECHANISM,
    _arg3: CK_OBJECT_HANDLE,
    _arg4: *mut CK_ATTRIBUTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_DeriveKey", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    _arg1: CK_FLAGS,
    _arg2: *mut CK_SLOT_ID,
    _arg3: *mut ::std::os::raw::c_void,
) -> CK_RV {
    not_supported("C_WaitForSlotEvent", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageEncryptInit(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_MECHANISM,
    _arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_MessageEncryptInit", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_EncryptMessage(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_BYTE,
    _arg7: CK_ULONG,
    _arg8: *mut CK_BYTE,
    _arg9: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_EncryptMessage", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_EncryptMessageBegin(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
) -> CK_RV {
    not_supported("C_EncryptMessageBegin", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_EncryptMessageNext(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_BYTE,
    _arg7: *mut CK_ULONG,
    _arg8: CK_FLAGS,
) -> CK_RV {
    not_supported("C_EncryptMessageNext", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageDecryptInit(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_MECHANISM,
    _arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_MessageDecryptInit", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptMessage(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_BYTE,
    _arg7: CK_ULONG,
    _arg8: *mut CK_BYTE,
    _arg9: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_DecryptMessage", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptMessageBegin(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
) -> CK_RV {
    not_supported("C_DecryptMessageBegin", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptMessageNext(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_BYTE,
    _arg7: *mut CK_ULONG,
    _arg8: CK_FLAGS,
) -> CK_RV {
    not_supported("C_DecryptMessageNext", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageSignInit(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_MECHANISM,
    _arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_MessageSignInit", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignMessage(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_BYTE,
    _arg7: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_SignMessage", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignMessageBegin(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
) -> CK_RV {
    not_supported("C_SignMessageBegin", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignMessageNext(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_BYTE,
    _arg7: *mut CK_ULONG,
) -> CK_RV {
    not_supported("C_SignMessageNext", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageVerifyInit(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut CK_MECHANISM,
    _arg3: CK_OBJECT_HANDLE,
) -> CK_RV {
    not_supported("C_MessageVerifyInit", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyMessage(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_BYTE,
    _arg7: CK_ULONG,
) -> CK_RV {
    not_supported("C_VerifyMessage", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyMessageBegin(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
) -> CK_RV {
    not_supported("C_VerifyMessageBegin", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyMessageNext(
    _arg1: CK_SESSION_HANDLE,
    _arg2: *mut ::std::os::raw::c_void,
    _arg3: CK_ULONG,
    _arg4: *mut CK_BYTE,
    _arg5: CK_ULONG,
    _arg6: *mut CK_BYTE,
    _arg7: CK_ULONG,
) -> CK_RV {
    not_supported("C_VerifyMessageNext", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionStatus(_arg1: CK_SESSION_HANDLE) -> CK_RV {
    not_supported("C_GetFunctionStatus", CKR_FUNCTION_NOT_PARALLEL)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CancelFunction(_arg1: CK_SESSION_HANDLE) -> CK_RV {
    not_supported("C_CancelFunction", CKR_FUNCTION_NOT_PARALLEL)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageEncryptFinal(_arg1: CK_SESSION_HANDLE) -> CK_RV {
    not_supported("C_MessageEncryptFinal", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageDecryptFinal(_arg1: CK_SESSION_HANDLE) -> CK_RV {
    not_supported("C_MessageDecryptFinal", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageSignFinal(_arg1: CK_SESSION_HANDLE) -> CK_RV {
    not_supported("C_MessageSignFinal", CKR_FUNCTION_NOT_SUPPORTED)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_MessageVerifyFinal(_arg1: CK_SESSION_HANDLE) -> CK_RV {
    not_supported("C_MessageVerifyFinal", CKR_FUNCTION_NOT_SUPPORTED)
}

/// The v2.40 function list.
static FUNCTION_LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION { major: 2, minor: 40 },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
};

/// The v3.0 function list.
static FUNCTION_LIST_3_0: CK_FUNCTION_LIST_3_0 = CK_FUNCTION_LIST_3_0 {
    version: CK_VERSION { major: 3, minor: 0 },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
    C_GetInterfaceList: Some(C_GetInterfaceList),
    C_GetInterface: Some(C_GetInterface),
    C_LoginUser: Some(C_LoginUser),
    C_SessionCancel: Some(C_SessionCancel),
    C_MessageEncryptInit: Some(C_MessageEncryptInit),
    C_EncryptMessage: Some(C_EncryptMessage),
    C_EncryptMessageBegin: Some(C_EncryptMessageBegin),
    C_EncryptMessageNext: Some(C_EncryptMessageNext),
    C_MessageEncryptFinal: Some(C_MessageEncryptFinal),
    C_MessageDecryptInit: Some(C_MessageDecryptInit),
    C_DecryptMessage: Some(C_DecryptMessage),
    C_DecryptMessageBegin: Some(C_DecryptMessageBegin),
    C_DecryptMessageNext: Some(C_DecryptMessageNext),
    C_MessageDecryptFinal: Some(C_MessageDecryptFinal),
    C_MessageSignInit: Some(C_MessageSignInit),
    C_SignMessage: Some(C_SignMessage),
    C_SignMessageBegin: Some(C_SignMessageBegin),
    C_SignMessageNext: Some(C_SignMessageNext),
    C_MessageSignFinal: Some(C_MessageSignFinal),
    C_MessageVerifyInit: Some(C_MessageVerifyInit),
    C_VerifyMessage: Some(C_VerifyMessage),
    C_VerifyMessageBegin: Some(C_VerifyMessageBegin),
    C_VerifyMessageNext: Some(C_VerifyMessageNext),
    C_MessageVerifyFinal: Some(C_MessageVerifyFinal),
};

/// The interface name both lists are offered under.
static INTERFACE_NAME: &[u8; 8] = b"PKCS 11\0";

/// The interfaces, newest first. They live in writable memory, as a C module's would: OpenSC's
/// pkcs11-spy writes its own function list into the `CK_INTERFACE` that `C_GetInterface` returns.
struct Interfaces(std::cell::UnsafeCell<[CK_INTERFACE; 2]>);

// SAFETY: the module itself only reads the array (through raw pointers, never references held
// across calls); a client that writes into what it was given owns the consequences, as with any
// C module.
unsafe impl Sync for Interfaces {}

static INTERFACES: Interfaces = Interfaces(std::cell::UnsafeCell::new([
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_CHAR,
        pFunctionList: &FUNCTION_LIST_3_0 as *const CK_FUNCTION_LIST_3_0 as *mut std::ffi::c_void,
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_CHAR,
        pFunctionList: &FUNCTION_LIST as *const CK_FUNCTION_LIST as *mut std::ffi::c_void,
        flags: 0,
    },
]));

/// The versions of the two interfaces, in [`INTERFACES`]' order (read from here, not from the
/// possibly client-written array).
const INTERFACE_VERSIONS: [CK_VERSION; 2] = [CK_VERSION { major: 3, minor: 0 }, CK_VERSION { major: 2, minor: 40 }];

/// A pointer to interface `i`.
fn interface_ptr(i: usize) -> *mut CK_INTERFACE {
    INTERFACES.0.get().cast::<CK_INTERFACE>().wrapping_add(i)
}

/// A fresh copy of the interfaces, for C_GetInterfaceList.
fn interfaces_copy() -> [CK_INTERFACE; 2] {
    [
        CK_INTERFACE {
            pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_CHAR,
            pFunctionList: &FUNCTION_LIST_3_0 as *const CK_FUNCTION_LIST_3_0 as *mut std::ffi::c_void,
            flags: 0,
        },
        CK_INTERFACE {
            pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_CHAR,
            pFunctionList: &FUNCTION_LIST as *const CK_FUNCTION_LIST as *mut std::ffi::c_void,
            flags: 0,
        },
    ]
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    entry!("C_GetFunctionList", {
        // SAFETY: PKCS#11 contract: a writable pointer.
        let list = unsafe { super::out(list) }?;
        *list = &FUNCTION_LIST as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterfaceList(list: *mut CK_INTERFACE, count: *mut CK_ULONG) -> CK_RV {
    entry!("C_GetInterfaceList", {
        // SAFETY: PKCS#11 contract: `count` writable, `list` null or `*count` long.
        unsafe { super::write_list(list, count, &interfaces_copy()) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterface(
    name: *mut CK_UTF8CHAR,
    version: *mut CK_VERSION,
    interface: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    entry!("C_GetInterface", {
        // SAFETY: PKCS#11 contract: a writable pointer.
        let interface = unsafe { super::out(interface) }?;
        if !name.is_null() {
            // SAFETY: PKCS#11 contract: a NUL-terminated name.
            let asked = unsafe { std::ffi::CStr::from_ptr(name as *const std::ffi::c_char) };
            if asked.to_bytes_with_nul() != INTERFACE_NAME {
                return Err(Ckr::CKR_ARGUMENTS_BAD);
            }
        }
        // SAFETY: PKCS#11 contract: null or a readable version.
        let version = unsafe { version.as_ref() };
        let chosen = INTERFACE_VERSIONS
            .iter()
            .position(|offered| version.is_none_or(|v| v.major == offered.major && v.minor == offered.minor))
            .filter(|_| flags == 0)
            .ok_or(Ckr::CKR_ARGUMENTS_BAD)?;
        *interface = interface_ptr(chosen);
        Ok(())
    })
}
