//! Library, slot and token information; C_Initialize, C_Finalize, C_InitToken.

use cryptoki_sys::*;

use crate::config::Config;
use crate::error::{Ckr, Result};
use crate::mechanisms::{self, MECHANISMS};
use crate::state::{self, Module, SLOT_ID};

/// The Cryptoki version the module implements.
pub const CRYPTOKI_VERSION: CK_VERSION = CK_VERSION { major: 3, minor: 0 };
/// The module's own version.
pub const LIBRARY_VERSION: CK_VERSION = CK_VERSION { major: 0, minor: 1 };

/// `s` blank-padded into a fixed-size field (PKCS#11 strings are not NUL-terminated).
pub fn padded<const N: usize>(s: &str) -> [CK_UTF8CHAR; N] {
    let mut out = [b' '; N];
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}

/// C_Initialize: reads the configuration, starts the log, opens the store.
pub fn initialize() -> Result<()> {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            // No log file is known yet: standard error is the only place to say why.
            eprintln!("tessera-pkcs11: C_Initialize failed: {e}");
            crate::log::start(&Config::default());
            tracing::error!("C_Initialize failed: {e}");
            return Err(Ckr::CKR_GENERAL_ERROR);
        }
    };
    crate::log::start(&config);
    state::install(|| {
        let dir = config.store_dir();
        Module::open(config).map_err(|e| {
            tracing::error!(store = %dir.display(), code = e.code(), "C_Initialize cannot open the store: {e}");
            eprintln!("tessera-pkcs11: cannot open the store {}: {e}", dir.display());
            Ckr::CKR_GENERAL_ERROR
        })
    })?;
    tracing::info!("initialised");
    Ok(())
}

/// C_Finalize.
pub fn finalize() -> Result<()> {
    state::uninstall()?;
    tracing::info!("finalised");
    Ok(())
}

/// C_GetInfo.
pub fn info() -> Result<CK_INFO> {
    state::module()?;
    Ok(CK_INFO {
        cryptokiVersion: CRYPTOKI_VERSION,
        manufacturerID: padded("Tessera"),
        flags: 0,
        libraryDescription: padded("Tessera KMS PKCS#11 module"),
        libraryVersion: LIBRARY_VERSION,
    })
}

/// C_GetSlotList: the one slot, which always has its token.
pub fn slot_list() -> Result<Vec<CK_SLOT_ID>> {
    state::module()?;
    Ok(vec![SLOT_ID])
}

/// C_GetSlotInfo.
pub fn slot_info(slot: CK_SLOT_ID) -> Result<CK_SLOT_INFO> {
    let m = state::module()?;
    m.check_slot(slot)?;
    Ok(CK_SLOT_INFO {
        slotDescription: padded(&format!("Tessera KMS instance {}", m.instance())),
        manufacturerID: padded("Tessera"),
        flags: CKF_TOKEN_PRESENT,
        hardwareVersion: LIBRARY_VERSION,
        firmwareVersion: LIBRARY_VERSION,
    })
}

/// C_GetTokenInfo.
pub fn token_info(slot: CK_SLOT_ID) -> Result<CK_TOKEN_INFO> {
    let m = state::module()?;
    m.check_slot(slot)?;
    let token = m.kms.token_info(m.instance())?;
    let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED;
    if token.initialized {
        flags |= CKF_TOKEN_INITIALIZED;
    }
    if token.user_pin_initialized {
        flags |= CKF_USER_PIN_INITIALIZED;
    }
    let max_pin = CK_ULONG::try_from(kms_core::MAX_PIN_LEN).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
    let min_pin = CK_ULONG::try_from(kms_core::MIN_PIN_LEN).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
    // A serial that tells stores apart: the account id's last 16 characters.
    let account = m.kms.account_id();
    let serial = &account[account.len().saturating_sub(16)..];
    Ok(CK_TOKEN_INFO {
        label: padded(&token.label),
        manufacturerID: padded("Tessera"),
        model: padded("KMS token"),
        serialNumber: padded(serial),
        flags,
        ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
        ulSessionCount: CK_UNAVAILABLE_INFORMATION,
        ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
        ulRwSessionCount: CK_UNAVAILABLE_INFORMATION,
        ulMaxPinLen: max_pin,
        ulMinPinLen: min_pin,
        ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
        ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
        ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
        ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
        hardwareVersion: LIBRARY_VERSION,
        firmwareVersion: LIBRARY_VERSION,
        utcTime: [b' '; 16],
    })
}

/// C_GetMechanismList.
pub fn mechanism_list(slot: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>> {
    state::module()?.check_slot(slot)?;
    Ok(MECHANISMS.iter().map(|(m, ..)| *m).collect())
}

/// C_GetMechanismInfo.
pub fn mechanism_info(slot: CK_SLOT_ID, mechanism: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
    state::module()?.check_slot(slot)?;
    let (min, max, flags) = mechanisms::info(mechanism).ok_or(Ckr::CKR_MECHANISM_INVALID)?;
    Ok(CK_MECHANISM_INFO {
        ulMinKeySize: min,
        ulMaxKeySize: max,
        flags,
    })
}

/// C_InitToken: sets the label and SO PIN (with the current SO PIN when there is one). Keys are
/// never destroyed by it: they are the KMS's.
pub fn init_token(slot: CK_SLOT_ID, so_pin: &[u8], label: &[u8; 32]) -> Result<()> {
    let m = state::module()?;
    m.check_slot(slot)?;
    if m.sessions_open().0 {
        return Err(Ckr::CKR_SESSION_EXISTS);
    }
    let label = std::str::from_utf8(label).map_err(|_| Ckr::CKR_ARGUMENTS_BAD)?;
    m.kms
        .init_token(m.instance(), so_pin, label.trim_end_matches([' ', '\0']))?;
    tracing::info!("token initialised");
    Ok(())
}
