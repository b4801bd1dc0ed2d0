//! The module as a C library: `libtessera_pkcs11.so` loaded with `dlopen`, its v3.0 function
//! list, and thin wrappers that turn Rust values into the pointers PKCS#11 takes. The wrappers
//! decide nothing: every return value reaches the test, which asserts it.
#![allow(dead_code)] // not every test uses every wrapper

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;

use cryptoki_sys::*;

/// A PKCS#11 return value.
pub type Rv = CK_RV;

unsafe extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *mut c_char;
}

/// `RTLD_NOW` (glibc).
const RTLD_NOW: c_int = 2;

type GetFunctionList = unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV;
type GetInterfaceList = unsafe extern "C" fn(*mut CK_INTERFACE, *mut CK_ULONG) -> CK_RV;
type GetInterface = unsafe extern "C" fn(*mut CK_UTF8CHAR, *mut CK_VERSION, *mut *mut CK_INTERFACE, CK_FLAGS) -> CK_RV;

/// The interface name PKCS#11 v3.0 defines.
pub const INTERFACE_NAME: &[u8] = b"PKCS 11\0";

/// The loaded module.
pub struct Library {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The exported `C_GetFunctionList`.
    pub get_function_list: GetFunctionList,
    /// The exported `C_GetInterfaceList`.
    pub get_interface_list: GetInterfaceList,
    /// The exported `C_GetInterface`.
    pub get_interface: GetInterface,
    /// The v3.0 function list (`C_GetInterface("PKCS 11", 3.0)`), through which every other
    /// function is called.
    pub f: &'static CK_FUNCTION_LIST_3_0,
}

/// The module to test (see `common::tessera_module`: `TESSERA_PKCS11_MODULE`, else the newer
/// of the cdylib cargo built with this test and the copy in target/<profile>/).
pub fn module_path() -> PathBuf {
    crate::common::tessera_module()
}

fn symbol(handle: *mut c_void, name: &CStr) -> *mut c_void {
    // SAFETY: `handle` came from a successful dlopen and `name` is NUL-terminated.
    let sym = unsafe { dlsym(handle, name.as_ptr()) };
    assert!(!sym.is_null(), "the module exports no {name:?}");
    sym
}

/// The module, loaded once per process (never unloaded).
pub fn library() -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let path = module_path();
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("a path without NUL");
        // SAFETY: a NUL-terminated path; loading runs the module's (Rust) initialisers only.
        let handle = unsafe { dlopen(c_path.as_ptr(), RTLD_NOW) };
        if handle.is_null() {
            // SAFETY: dlerror returns null or a NUL-terminated message after a failed dlopen.
            let why = unsafe {
                dlerror()
                    .as_ref()
                    .map(|e| CStr::from_ptr(e).to_string_lossy().into_owned())
            };
            panic!("cannot load {}: {why:?}", path.display());
        }
        // SAFETY: the symbols are the PKCS#11 entry points with exactly these C signatures.
        let (get_function_list, get_interface_list, get_interface) = unsafe {
            (
                std::mem::transmute::<*mut c_void, GetFunctionList>(symbol(handle, c"C_GetFunctionList")),
                std::mem::transmute::<*mut c_void, GetInterfaceList>(symbol(handle, c"C_GetInterfaceList")),
                std::mem::transmute::<*mut c_void, GetInterface>(symbol(handle, c"C_GetInterface")),
            )
        };
        let mut version = CK_VERSION { major: 3, minor: 0 };
        let mut interface: *mut CK_INTERFACE = ptr::null_mut();
        // SAFETY: a NUL-terminated name, a readable version and a writable out-pointer.
        let rv = unsafe {
            get_interface(
                INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
                &mut version,
                &mut interface,
                0,
            )
        };
        assert_eq!(rv, CKR_OK, "C_GetInterface(\"PKCS 11\", 3.0) failed: {}", rv_name(rv));
        // SAFETY: on CKR_OK the module points at its static CK_INTERFACE, whose v3.0 function
        // list is a static CK_FUNCTION_LIST_3_0 that lives as long as the (never unloaded) module.
        let f = unsafe {
            let interface = interface.as_ref().expect("C_GetInterface gave a null interface");
            (interface.pFunctionList as *const CK_FUNCTION_LIST_3_0)
                .as_ref()
                .expect("a null function list")
        };
        Library {
            path,
            get_function_list,
            get_interface_list,
            get_interface,
            f,
        }
    })
}

/// Calls a function of the v3.0 list.
macro_rules! call {
    ($lib:expr, $name:ident ( $($arg:expr),* $(,)? )) => {{
        let function = $lib.f.$name.expect(concat!("the function list has no ", stringify!($name)));
        // SAFETY: every pointer the wrappers pass is null or points to live memory of the size
        // they give with it, as the PKCS#11 contract of `$name` asks.
        unsafe { function($($arg),*) }
    }};
}
pub(crate) use call;

// ---------------------------------------------------------------- return values

/// The name of a return value, for messages.
pub fn rv_name(rv: Rv) -> String {
    macro_rules! names {
        ($($n:ident),* $(,)?) => {
            match rv {
                $($n => stringify!($n).to_owned(),)*
                other => format!("CKR_0x{other:08x}"),
            }
        };
    }
    names!(
        CKR_OK,
        CKR_ACTION_PROHIBITED,
        CKR_ARGUMENTS_BAD,
        CKR_ATTRIBUTE_READ_ONLY,
        CKR_ATTRIBUTE_SENSITIVE,
        CKR_ATTRIBUTE_TYPE_INVALID,
        CKR_ATTRIBUTE_VALUE_INVALID,
        CKR_BUFFER_TOO_SMALL,
        CKR_CANT_LOCK,
        CKR_CRYPTOKI_ALREADY_INITIALIZED,
        CKR_CRYPTOKI_NOT_INITIALIZED,
        CKR_CURVE_NOT_SUPPORTED,
        CKR_DATA_INVALID,
        CKR_DATA_LEN_RANGE,
        CKR_DEVICE_ERROR,
        CKR_DEVICE_MEMORY,
        CKR_ENCRYPTED_DATA_INVALID,
        CKR_ENCRYPTED_DATA_LEN_RANGE,
        CKR_FUNCTION_FAILED,
        CKR_FUNCTION_NOT_PARALLEL,
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
        CKR_TEMPLATE_INCOMPLETE,
        CKR_TEMPLATE_INCONSISTENT,
        CKR_TOKEN_NOT_PRESENT,
        CKR_TOKEN_WRITE_PROTECTED,
        CKR_USER_ALREADY_LOGGED_IN,
        CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
        CKR_USER_NOT_LOGGED_IN,
        CKR_USER_PIN_NOT_INITIALIZED,
        CKR_USER_TYPE_INVALID,
    )
}

/// Asserts a return value, naming both sides on failure.
macro_rules! assert_rv {
    ($rv:expr, $want:expr, $($context:tt)+) => {{
        let got: $crate::p11::Rv = $rv;
        let want: $crate::p11::Rv = $want;
        assert!(
            got == want,
            "{}: got {}, expected {}",
            format!($($context)+),
            $crate::p11::rv_name(got),
            $crate::p11::rv_name(want)
        );
    }};
}
pub(crate) use assert_rv;

/// Asserts that a wrapper failed with `want`.
macro_rules! assert_err {
    ($result:expr, $want:expr, $($context:tt)+) => {{
        let want: $crate::p11::Rv = $want;
        match $result {
            Ok(_) => panic!("{}: succeeded, expected {}", format!($($context)+), $crate::p11::rv_name(want)),
            Err(got) => assert!(
                got == want,
                "{}: got {}, expected {}",
                format!($($context)+),
                $crate::p11::rv_name(got),
                $crate::p11::rv_name(want)
            ),
        }
    }};
}
pub(crate) use assert_err;

/// The value of a wrapper that must succeed.
pub fn ok<T>(result: Result<T, Rv>, what: &str) -> T {
    result.unwrap_or_else(|rv| panic!("{what}: {}", rv_name(rv)))
}

/// `CKR_OK` as a `Result`.
pub fn check(rv: Rv) -> Result<(), Rv> {
    if rv == CKR_OK { Ok(()) } else { Err(rv) }
}

// ---------------------------------------------------------------- templates and mechanisms

/// One template attribute: its type and value bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr(pub CK_ATTRIBUTE_TYPE, pub Vec<u8>);

impl Attr {
    /// A CK_ULONG attribute.
    pub fn ulong(t: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> Attr {
        Attr(t, v.to_ne_bytes().to_vec())
    }

    /// A CK_BBOOL attribute.
    pub fn bool(t: CK_ATTRIBUTE_TYPE, v: bool) -> Attr {
        Attr(t, vec![u8::from(v)])
    }

    /// A byte-string attribute.
    pub fn bytes(t: CK_ATTRIBUTE_TYPE, v: impl AsRef<[u8]>) -> Attr {
        Attr(t, v.as_ref().to_vec())
    }

    /// CKA_CLASS.
    pub fn class(c: CK_OBJECT_CLASS) -> Attr {
        Attr::ulong(CKA_CLASS, c)
    }

    /// CKA_LABEL.
    pub fn label(l: &str) -> Attr {
        Attr::bytes(CKA_LABEL, l)
    }
}

/// The C form of a template; it points into `attrs`, which must outlive its use.
pub fn raw_template(attrs: &[Attr]) -> Vec<CK_ATTRIBUTE> {
    attrs
        .iter()
        .map(|Attr(t, v)| CK_ATTRIBUTE {
            type_: *t,
            pValue: v.as_ptr() as *mut c_void,
            ulValueLen: v.len() as CK_ULONG,
        })
        .collect()
}

/// The bytes of a plain-old-data parameter structure without padding.
fn bytes_of<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: T is one of the CK_*_PARAMS structures used below: repr(C), every field 8 bytes
    // wide, so it has no padding and all size_of::<T>() bytes are initialised.
    unsafe { std::slice::from_raw_parts(value as *const T as *const u8, std::mem::size_of::<T>()) }.to_vec()
}

/// A mechanism with its parameter, owning every buffer the parameter points into.
#[derive(Clone, Debug)]
pub struct Mech {
    /// CKM_*.
    pub ty: CK_MECHANISM_TYPE,
    param: Vec<u8>,
    /// Buffers the parameter points into (heap buffers: they stay put when the Mech moves).
    kept: Vec<Vec<u8>>,
    /// Pass a null parameter pointer with this length instead of `param`.
    null_param_len: Option<CK_ULONG>,
}

impl Mech {
    /// A mechanism without parameter.
    pub fn new(ty: CK_MECHANISM_TYPE) -> Mech {
        Mech {
            ty,
            param: Vec::new(),
            kept: Vec::new(),
            null_param_len: None,
        }
    }

    /// A mechanism whose parameter pointer is null but whose length says `len`.
    pub fn null_param(ty: CK_MECHANISM_TYPE, len: usize) -> Mech {
        Mech {
            null_param_len: Some(len as CK_ULONG),
            ..Mech::new(ty)
        }
    }

    /// A mechanism with a parameter structure given as is (its pointers must stay valid).
    pub fn with_param<T: Copy>(ty: CK_MECHANISM_TYPE, param: &T) -> Mech {
        Mech {
            param: bytes_of(param),
            ..Mech::new(ty)
        }
    }

    /// CKM_AES_GCM with the v3.0 CK_GCM_PARAMS.
    pub fn gcm(iv: &[u8], aad: &[u8], tag_bits: CK_ULONG) -> Mech {
        let (mut iv, mut aad) = (iv.to_vec(), aad.to_vec());
        let params = CK_GCM_PARAMS {
            pIv: iv.as_mut_ptr(),
            ulIvLen: iv.len() as CK_ULONG,
            ulIvBits: 8 * iv.len() as CK_ULONG,
            pAAD: if aad.is_empty() {
                ptr::null_mut()
            } else {
                aad.as_mut_ptr()
            },
            ulAADLen: aad.len() as CK_ULONG,
            ulTagBits: tag_bits,
        };
        Mech {
            param: bytes_of(&params),
            kept: vec![iv, aad],
            ..Mech::new(CKM_AES_GCM)
        }
    }

    /// CKM_AES_GCM with CK_GCM_PARAMS as the v2.40 header printed it (no `ulIvBits`).
    pub fn gcm_v240(iv: &[u8], aad: &[u8]) -> Mech {
        let (mut iv, mut aad) = (iv.to_vec(), aad.to_vec());
        let params: [CK_ULONG; 5] = [
            iv.as_mut_ptr() as CK_ULONG,
            iv.len() as CK_ULONG,
            aad.as_mut_ptr() as CK_ULONG,
            aad.len() as CK_ULONG,
            128,
        ];
        Mech {
            param: bytes_of(&params),
            kept: vec![iv, aad],
            ..Mech::new(CKM_AES_GCM)
        }
    }

    /// An RSA-PSS mechanism.
    pub fn pss(ty: CK_MECHANISM_TYPE, hash: CK_MECHANISM_TYPE, mgf: CK_RSA_PKCS_MGF_TYPE, salt: usize) -> Mech {
        let params = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: hash,
            mgf,
            sLen: salt as CK_ULONG,
        };
        Mech {
            param: bytes_of(&params),
            ..Mech::new(ty)
        }
    }

    /// CKM_RSA_PKCS_OAEP with an empty label, or with `label`.
    pub fn oaep(hash: CK_MECHANISM_TYPE, mgf: CK_RSA_PKCS_MGF_TYPE, label: &[u8]) -> Mech {
        let mut label = label.to_vec();
        let params = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: hash,
            mgf,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: if label.is_empty() {
                ptr::null_mut()
            } else {
                label.as_mut_ptr() as *mut c_void
            },
            ulSourceDataLen: label.len() as CK_ULONG,
        };
        Mech {
            param: bytes_of(&params),
            kept: vec![label],
            ..Mech::new(CKM_RSA_PKCS_OAEP)
        }
    }

    /// The C form; it points into `self`.
    pub fn raw(&self) -> CK_MECHANISM {
        let (p, len) = match self.null_param_len {
            Some(len) => (ptr::null_mut(), len),
            None if self.param.is_empty() => (ptr::null_mut(), 0),
            None => (self.param.as_ptr() as *mut c_void, self.param.len() as CK_ULONG),
        };
        CK_MECHANISM {
            mechanism: self.ty,
            pParameter: p,
            ulParameterLen: len,
        }
    }
}

/// A PKCS#11 fixed-size string field, trailing blanks removed.
pub fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).trim_end_matches([' ', '\0']).to_owned()
}

/// A label padded to the 32 bytes C_InitToken reads.
pub fn token_label(label: &str) -> [u8; 32] {
    let mut out = [b' '; 32];
    out[..label.len()].copy_from_slice(label.as_bytes());
    out
}

/// Runs the two-call convention: a length query with a null buffer, then the call with a buffer
/// of that length. `f(buffer, &mut len)`.
pub fn two_calls(mut f: impl FnMut(*mut u8, &mut CK_ULONG) -> Rv) -> Result<Vec<u8>, Rv> {
    let mut len: CK_ULONG = 0;
    check(f(ptr::null_mut(), &mut len))?;
    let mut buf = vec![0u8; len as usize];
    check(f(buf.as_mut_ptr(), &mut len))?;
    buf.truncate(len as usize);
    Ok(buf)
}

// ---------------------------------------------------------------- the functions

impl Library {
    /// C_Initialize(NULL).
    pub fn initialize(&self) -> Rv {
        call!(self, C_Initialize(ptr::null_mut()))
    }

    /// C_Initialize with arguments.
    pub fn initialize_with(&self, args: &mut CK_C_INITIALIZE_ARGS) -> Rv {
        call!(self, C_Initialize(args as *mut CK_C_INITIALIZE_ARGS as *mut c_void))
    }

    /// C_Finalize(NULL).
    pub fn finalize(&self) -> Rv {
        call!(self, C_Finalize(ptr::null_mut()))
    }

    /// C_GetInfo.
    pub fn info(&self) -> Result<CK_INFO, Rv> {
        // SAFETY: CK_INFO is plain old data; all zeroes is a valid value.
        let mut info: CK_INFO = unsafe { std::mem::zeroed() };
        check(call!(self, C_GetInfo(&mut info)))?;
        Ok(info)
    }

    /// C_GetSlotList(TRUE).
    pub fn slots(&self) -> Result<Vec<CK_SLOT_ID>, Rv> {
        let mut n: CK_ULONG = 0;
        check(call!(self, C_GetSlotList(CK_TRUE, ptr::null_mut(), &mut n)))?;
        let mut slots = vec![0; n as usize];
        check(call!(self, C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), &mut n)))?;
        slots.truncate(n as usize);
        Ok(slots)
    }

    /// C_GetTokenInfo(0).
    pub fn token_info(&self) -> Result<CK_TOKEN_INFO, Rv> {
        // SAFETY: CK_TOKEN_INFO is plain old data; all zeroes is a valid value.
        let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        check(call!(self, C_GetTokenInfo(0, &mut info)))?;
        Ok(info)
    }

    /// C_GetMechanismList(0).
    pub fn mechanisms(&self) -> Result<Vec<CK_MECHANISM_TYPE>, Rv> {
        let mut n: CK_ULONG = 0;
        check(call!(self, C_GetMechanismList(0, ptr::null_mut(), &mut n)))?;
        let mut list = vec![0; n as usize];
        check(call!(self, C_GetMechanismList(0, list.as_mut_ptr(), &mut n)))?;
        list.truncate(n as usize);
        Ok(list)
    }

    /// C_GetMechanismInfo(0).
    pub fn mechanism_info(&self, m: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO, Rv> {
        let mut info = CK_MECHANISM_INFO {
            ulMinKeySize: 0,
            ulMaxKeySize: 0,
            flags: 0,
        };
        check(call!(self, C_GetMechanismInfo(0, m, &mut info)))?;
        Ok(info)
    }

    /// C_InitToken(0).
    pub fn init_token(&self, so_pin: &[u8], label: &str) -> Rv {
        let mut label = token_label(label);
        call!(
            self,
            C_InitToken(
                0,
                so_pin.as_ptr() as *mut u8,
                so_pin.len() as CK_ULONG,
                label.as_mut_ptr()
            )
        )
    }

    /// C_OpenSession(0) with CKF_SERIAL_SESSION (and CKF_RW_SESSION when `rw`).
    pub fn open_session(&self, rw: bool) -> Result<CK_SESSION_HANDLE, Rv> {
        let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
        let mut h: CK_SESSION_HANDLE = 0;
        check(call!(self, C_OpenSession(0, flags, ptr::null_mut(), None, &mut h)))?;
        Ok(h)
    }

    /// C_CloseSession.
    pub fn close_session(&self, s: CK_SESSION_HANDLE) -> Rv {
        call!(self, C_CloseSession(s))
    }

    /// C_CloseAllSessions(0).
    pub fn close_all_sessions(&self) -> Rv {
        call!(self, C_CloseAllSessions(0))
    }

    /// C_GetSessionInfo.
    pub fn session_info(&self, s: CK_SESSION_HANDLE) -> Result<CK_SESSION_INFO, Rv> {
        let mut info = CK_SESSION_INFO {
            slotID: 0,
            state: 0,
            flags: 0,
            ulDeviceError: 0,
        };
        check(call!(self, C_GetSessionInfo(s, &mut info)))?;
        Ok(info)
    }

    /// C_Login.
    pub fn login(&self, s: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) -> Rv {
        call!(self, C_Login(s, user, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG))
    }

    /// C_Logout.
    pub fn logout(&self, s: CK_SESSION_HANDLE) -> Rv {
        call!(self, C_Logout(s))
    }

    /// C_InitPIN.
    pub fn init_pin(&self, s: CK_SESSION_HANDLE, pin: &[u8]) -> Rv {
        call!(self, C_InitPIN(s, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG))
    }

    /// C_SetPIN.
    pub fn set_pin(&self, s: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Rv {
        call!(
            self,
            C_SetPIN(
                s,
                old.as_ptr() as *mut u8,
                old.len() as CK_ULONG,
                new.as_ptr() as *mut u8,
                new.len() as CK_ULONG
            )
        )
    }

    /// C_FindObjectsInit, C_FindObjects until it has no more, C_FindObjectsFinal.
    pub fn find(&self, s: CK_SESSION_HANDLE, template: &[Attr]) -> Result<Vec<CK_OBJECT_HANDLE>, Rv> {
        let mut raw = raw_template(template);
        check(call!(
            self,
            C_FindObjectsInit(s, raw.as_mut_ptr(), raw.len() as CK_ULONG)
        ))?;
        let mut found = Vec::new();
        loop {
            let mut batch = [0 as CK_OBJECT_HANDLE; 3];
            let mut n: CK_ULONG = 0;
            let rv = call!(
                self,
                C_FindObjects(s, batch.as_mut_ptr(), batch.len() as CK_ULONG, &mut n)
            );
            if rv != CKR_OK {
                call!(self, C_FindObjectsFinal(s));
                return Err(rv);
            }
            if n == 0 {
                break;
            }
            found.extend_from_slice(&batch[..n as usize]);
        }
        check(call!(self, C_FindObjectsFinal(s)))?;
        Ok(found)
    }

    /// C_GetAttributeValue of one attribute: the length query, then the value.
    pub fn attr(&self, s: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE, t: CK_ATTRIBUTE_TYPE) -> Result<Vec<u8>, Rv> {
        let mut a = CK_ATTRIBUTE {
            type_: t,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        };
        check(call!(self, C_GetAttributeValue(s, object, &mut a, 1)))?;
        let mut value = vec![0u8; a.ulValueLen as usize];
        a.pValue = value.as_mut_ptr() as *mut c_void;
        check(call!(self, C_GetAttributeValue(s, object, &mut a, 1)))?;
        value.truncate(a.ulValueLen as usize);
        Ok(value)
    }

    /// A CK_ULONG attribute.
    pub fn attr_ulong(
        &self,
        s: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        t: CK_ATTRIBUTE_TYPE,
    ) -> Result<CK_ULONG, Rv> {
        let v = self.attr(s, object, t)?;
        Ok(CK_ULONG::from_ne_bytes(
            v.as_slice().try_into().expect("a CK_ULONG attribute of 8 bytes"),
        ))
    }

    /// A CK_BBOOL attribute.
    pub fn attr_bool(&self, s: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE, t: CK_ATTRIBUTE_TYPE) -> Result<bool, Rv> {
        let v = self.attr(s, object, t)?;
        assert_eq!(v.len(), 1, "a CK_BBOOL attribute (0x{t:x}) of one byte");
        Ok(v[0] != 0)
    }

    /// C_GetAttributeValue of several attributes with buffers of the given sizes (None: a null
    /// pValue, a length query): the return value and each attribute's ulValueLen and value.
    pub fn attrs_raw(
        &self,
        s: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        asked: &[(CK_ATTRIBUTE_TYPE, Option<usize>)],
    ) -> (Rv, Vec<(CK_ULONG, Vec<u8>)>) {
        let mut buffers: Vec<Option<Vec<u8>>> = asked.iter().map(|(_, n)| n.map(|n| vec![0u8; n])).collect();
        let mut raw: Vec<CK_ATTRIBUTE> = asked
            .iter()
            .zip(buffers.iter_mut())
            .map(|((t, _), b)| CK_ATTRIBUTE {
                type_: *t,
                pValue: b.as_mut().map_or(ptr::null_mut(), |b| b.as_mut_ptr() as *mut c_void),
                ulValueLen: b.as_ref().map_or(0, |b| b.len() as CK_ULONG),
            })
            .collect();
        let rv = call!(
            self,
            C_GetAttributeValue(s, object, raw.as_mut_ptr(), raw.len() as CK_ULONG)
        );
        let out = raw
            .iter()
            .zip(buffers)
            .map(|(a, b)| {
                let mut b = b.unwrap_or_default();
                if a.ulValueLen != CK_UNAVAILABLE_INFORMATION {
                    b.truncate(a.ulValueLen as usize);
                }
                (a.ulValueLen, b)
            })
            .collect();
        (rv, out)
    }

    // ------------------------------------------------------------ signing

    /// C_SignInit.
    pub fn sign_init(&self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> Rv {
        let mut raw = m.raw();
        call!(self, C_SignInit(s, &mut raw, key))
    }

    /// C_Sign with a buffer of `buf.len()` bytes, or a length query (None). `len` is in and out.
    pub fn sign_call(&self, s: CK_SESSION_HANDLE, data: &[u8], buf: Option<&mut [u8]>, len: &mut CK_ULONG) -> Rv {
        let p = match buf {
            Some(b) => {
                *len = b.len() as CK_ULONG;
                b.as_mut_ptr()
            }
            None => ptr::null_mut(),
        };
        call!(
            self,
            C_Sign(s, data.as_ptr() as *mut u8, data.len() as CK_ULONG, p, len)
        )
    }

    /// C_SignUpdate.
    pub fn sign_update(&self, s: CK_SESSION_HANDLE, data: &[u8]) -> Rv {
        call!(self, C_SignUpdate(s, data.as_ptr() as *mut u8, data.len() as CK_ULONG))
    }

    /// C_SignFinal with a buffer, or a length query (None). `len` is in and out.
    pub fn sign_final_call(&self, s: CK_SESSION_HANDLE, buf: Option<&mut [u8]>, len: &mut CK_ULONG) -> Rv {
        let p = match buf {
            Some(b) => {
                *len = b.len() as CK_ULONG;
                b.as_mut_ptr()
            }
            None => ptr::null_mut(),
        };
        call!(self, C_SignFinal(s, p, len))
    }

    /// A single-part signature (C_SignInit, the length query, C_Sign).
    pub fn sign(&self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE, data: &[u8]) -> Result<Vec<u8>, Rv> {
        check(self.sign_init(s, m, key))?;
        two_calls(|p, len| {
            call!(
                self,
                C_Sign(s, data.as_ptr() as *mut u8, data.len() as CK_ULONG, p, len)
            )
        })
    }

    /// A multi-part signature.
    pub fn sign_parts(
        &self,
        s: CK_SESSION_HANDLE,
        m: &Mech,
        key: CK_OBJECT_HANDLE,
        parts: &[&[u8]],
    ) -> Result<Vec<u8>, Rv> {
        check(self.sign_init(s, m, key))?;
        for part in parts {
            check(self.sign_update(s, part))?;
        }
        two_calls(|p, len| call!(self, C_SignFinal(s, p, len)))
    }

    /// C_VerifyInit.
    pub fn verify_init(&self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> Rv {
        let mut raw = m.raw();
        call!(self, C_VerifyInit(s, &mut raw, key))
    }

    /// C_Verify.
    pub fn verify_call(&self, s: CK_SESSION_HANDLE, data: &[u8], signature: &[u8]) -> Rv {
        call!(
            self,
            C_Verify(
                s,
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                signature.as_ptr() as *mut u8,
                signature.len() as CK_ULONG
            )
        )
    }

    /// C_VerifyInit then C_Verify: the return value of whichever failed, or of C_Verify.
    pub fn verify(&self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE, data: &[u8], signature: &[u8]) -> Rv {
        match self.verify_init(s, m, key) {
            CKR_OK => self.verify_call(s, data, signature),
            rv => rv,
        }
    }

    /// A multi-part verification.
    pub fn verify_parts(
        &self,
        s: CK_SESSION_HANDLE,
        m: &Mech,
        key: CK_OBJECT_HANDLE,
        parts: &[&[u8]],
        signature: &[u8],
    ) -> Rv {
        let rv = self.verify_init(s, m, key);
        if rv != CKR_OK {
            return rv;
        }
        for part in parts {
            let rv = call!(
                self,
                C_VerifyUpdate(s, part.as_ptr() as *mut u8, part.len() as CK_ULONG)
            );
            if rv != CKR_OK {
                return rv;
            }
        }
        call!(
            self,
            C_VerifyFinal(s, signature.as_ptr() as *mut u8, signature.len() as CK_ULONG)
        )
    }

    // ------------------------------------------------------------ encryption

    /// C_EncryptInit.
    pub fn encrypt_init(&self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> Rv {
        let mut raw = m.raw();
        call!(self, C_EncryptInit(s, &mut raw, key))
    }

    /// C_DecryptInit.
    pub fn decrypt_init(&self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> Rv {
        let mut raw = m.raw();
        call!(self, C_DecryptInit(s, &mut raw, key))
    }

    /// A single-part encryption (init, length query, C_Encrypt).
    pub fn encrypt(&self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE, data: &[u8]) -> Result<Vec<u8>, Rv> {
        check(self.encrypt_init(s, m, key))?;
        two_calls(|p, len| {
            call!(
                self,
                C_Encrypt(s, data.as_ptr() as *mut u8, data.len() as CK_ULONG, p, len)
            )
        })
    }

    /// A single-part decryption.
    pub fn decrypt(&self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE, data: &[u8]) -> Result<Vec<u8>, Rv> {
        check(self.decrypt_init(s, m, key))?;
        two_calls(|p, len| {
            call!(
                self,
                C_Decrypt(s, data.as_ptr() as *mut u8, data.len() as CK_ULONG, p, len)
            )
        })
    }

    /// A multi-part encryption (`encrypt`) or decryption: what each update outputs, then the
    /// final part, concatenated.
    pub fn cipher_parts(
        &self,
        s: CK_SESSION_HANDLE,
        encrypt: bool,
        m: &Mech,
        key: CK_OBJECT_HANDLE,
        parts: &[&[u8]],
    ) -> Result<Vec<u8>, Rv> {
        check(if encrypt {
            self.encrypt_init(s, m, key)
        } else {
            self.decrypt_init(s, m, key)
        })?;
        let mut out = Vec::new();
        for part in parts {
            let mut buf = vec![0u8; part.len() + 64];
            let mut len = buf.len() as CK_ULONG;
            let (data, n) = (part.as_ptr() as *mut u8, part.len() as CK_ULONG);
            check(if encrypt {
                call!(self, C_EncryptUpdate(s, data, n, buf.as_mut_ptr(), &mut len))
            } else {
                call!(self, C_DecryptUpdate(s, data, n, buf.as_mut_ptr(), &mut len))
            })?;
            out.extend_from_slice(&buf[..len as usize]);
        }
        let last = two_calls(|p, len| {
            if encrypt {
                call!(self, C_EncryptFinal(s, p, len))
            } else {
                call!(self, C_DecryptFinal(s, p, len))
            }
        })?;
        out.extend_from_slice(&last);
        Ok(out)
    }

    // ------------------------------------------------------------ digests and random

    /// A single-part digest.
    pub fn digest(&self, s: CK_SESSION_HANDLE, m: CK_MECHANISM_TYPE, data: &[u8]) -> Result<Vec<u8>, Rv> {
        let mut raw = Mech::new(m).raw();
        check(call!(self, C_DigestInit(s, &mut raw)))?;
        two_calls(|p, len| {
            call!(
                self,
                C_Digest(s, data.as_ptr() as *mut u8, data.len() as CK_ULONG, p, len)
            )
        })
    }

    /// A multi-part digest.
    pub fn digest_parts(&self, s: CK_SESSION_HANDLE, m: CK_MECHANISM_TYPE, parts: &[&[u8]]) -> Result<Vec<u8>, Rv> {
        let mut raw = Mech::new(m).raw();
        check(call!(self, C_DigestInit(s, &mut raw)))?;
        for part in parts {
            check(call!(
                self,
                C_DigestUpdate(s, part.as_ptr() as *mut u8, part.len() as CK_ULONG)
            ))?;
        }
        two_calls(|p, len| call!(self, C_DigestFinal(s, p, len)))
    }

    /// C_GenerateRandom.
    pub fn random(&self, s: CK_SESSION_HANDLE, n: usize) -> Result<Vec<u8>, Rv> {
        let mut buf = vec![0u8; n];
        check(call!(self, C_GenerateRandom(s, buf.as_mut_ptr(), n as CK_ULONG)))?;
        Ok(buf)
    }

    // ------------------------------------------------------------ keys

    /// C_GenerateKey.
    pub fn generate_key(&self, s: CK_SESSION_HANDLE, m: &Mech, template: &[Attr]) -> Result<CK_OBJECT_HANDLE, Rv> {
        let mut raw_m = m.raw();
        let mut raw = raw_template(template);
        let mut h: CK_OBJECT_HANDLE = 0;
        check(call!(
            self,
            C_GenerateKey(s, &mut raw_m, raw.as_mut_ptr(), raw.len() as CK_ULONG, &mut h)
        ))?;
        Ok(h)
    }

    /// C_GenerateKeyPair: (public, private).
    pub fn generate_key_pair(
        &self,
        s: CK_SESSION_HANDLE,
        m: &Mech,
        public: &[Attr],
        private: &[Attr],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), Rv> {
        let mut raw_m = m.raw();
        let mut raw_public = raw_template(public);
        let mut raw_private = raw_template(private);
        let (mut pk, mut sk): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        check(call!(
            self,
            C_GenerateKeyPair(
                s,
                &mut raw_m,
                raw_public.as_mut_ptr(),
                raw_public.len() as CK_ULONG,
                raw_private.as_mut_ptr(),
                raw_private.len() as CK_ULONG,
                &mut pk,
                &mut sk
            )
        ))?;
        Ok((pk, sk))
    }

    /// C_DestroyObject.
    pub fn destroy(&self, s: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> Rv {
        call!(self, C_DestroyObject(s, object))
    }

    /// C_SessionCancel.
    pub fn cancel(&self, s: CK_SESSION_HANDLE, flags: CK_FLAGS) -> Rv {
        call!(self, C_SessionCancel(s, flags))
    }
}
