//! Sessions and login.

use cryptoki_sys::*;
use std::sync::Arc;

use kms_core::PinRole;
use zeroize::Zeroizing;

use crate::error::{Ckr, Result};
use crate::state::{self, Login};

/// C_OpenSession.
pub fn open(slot: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE> {
    let m = state::module()?;
    m.check_slot(slot)?;
    if flags & CKF_SERIAL_SESSION == 0 {
        return Err(Ckr::CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    }
    m.open_session(flags & CKF_RW_SESSION != 0)
}

/// C_CloseSession.
pub fn close(session: CK_SESSION_HANDLE) -> Result<()> {
    state::module()?.close_session(session)
}

/// C_CloseAllSessions.
pub fn close_all(slot: CK_SLOT_ID) -> Result<()> {
    let m = state::module()?;
    m.check_slot(slot)?;
    m.close_all_sessions();
    Ok(())
}

/// C_GetSessionInfo.
pub fn info(session: CK_SESSION_HANDLE) -> Result<CK_SESSION_INFO> {
    let m = state::module()?;
    let rw = m.session(session)?.lock().rw;
    let state = match (&*m.login.read(), rw) {
        (Login::Public, false) => CKS_RO_PUBLIC_SESSION,
        (Login::Public, true) => CKS_RW_PUBLIC_SESSION,
        (Login::User(_), false) => CKS_RO_USER_FUNCTIONS,
        (Login::User(_), true) => CKS_RW_USER_FUNCTIONS,
        (Login::SecurityOfficer(_), _) => CKS_RW_SO_FUNCTIONS,
    };
    Ok(CK_SESSION_INFO {
        slotID: state::SLOT_ID,
        state,
        flags: CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 },
        ulDeviceError: 0,
    })
}

/// C_Login.
pub fn login(session: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
    let m = state::module()?;
    m.session(session)?;
    let role = match user_type {
        CKU_USER => PinRole::User,
        CKU_SO => PinRole::SecurityOfficer,
        // No key here needs a per-operation login.
        CKU_CONTEXT_SPECIFIC => return Err(Ckr::CKR_OPERATION_NOT_INITIALIZED),
        _ => return Err(Ckr::CKR_USER_TYPE_INVALID),
    };
    // Refused before the PIN check (tens of milliseconds) when it cannot succeed anyway.
    m.login_allowed(role == PinRole::SecurityOfficer)?;
    let checked = m.kms.check_pin(m.instance(), role, pin);
    // The token's user PIN acts as the configured principal; the other user PINs of the
    // configuration as theirs.
    let user = match (&checked, role) {
        (Ok(()), PinRole::User) => Some(Arc::clone(m.login.default_caller())),
        (Err(kms_core::KmsError::PinIncorrect), PinRole::User) => m.caller_for_pin(pin)?,
        _ => None,
    };
    let login = match (role, user) {
        (PinRole::User, Some(caller)) => Login::User(caller),
        (PinRole::SecurityOfficer, _) if checked.is_ok() => Login::SecurityOfficer(Zeroizing::new(pin.to_vec())),
        _ => {
            let e = checked.err().unwrap_or(kms_core::KmsError::PinIncorrect);
            tracing::warn!(role = ?role, code = e.code(), "login refused");
            return Err(e.into());
        }
    };
    let principal = match &login {
        Login::User(caller) => Some(caller.principal().to_string()),
        _ => None,
    };
    m.log_in(session, login)?;
    match principal {
        Some(principal) => tracing::info!(role = ?role, principal = %principal, "logged in"),
        None => tracing::info!(role = ?role, "logged in"),
    }
    Ok(())
}

/// C_Logout.
pub fn logout(session: CK_SESSION_HANDLE) -> Result<()> {
    let m = state::module()?;
    m.session(session)?;
    if m.login.logout() {
        Ok(())
    } else {
        Err(Ckr::CKR_USER_NOT_LOGGED_IN)
    }
}

/// C_InitPIN: the SO sets the user PIN.
pub fn init_pin(session: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
    let m = state::module()?;
    if !m.session(session)?.lock().rw {
        return Err(Ckr::CKR_SESSION_READ_ONLY);
    }
    let so_pin = match &*m.login.read() {
        Login::SecurityOfficer(so_pin) => so_pin.clone(),
        _ => return Err(Ckr::CKR_USER_NOT_LOGGED_IN),
    };
    m.kms.init_user_pin(m.instance(), &so_pin, pin)?;
    tracing::info!("user PIN initialised");
    Ok(())
}

/// C_SetPIN: the logged-in user (or SO; the user when nobody is logged in) changes their PIN.
pub fn set_pin(session: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
    let m = state::module()?;
    if !m.session(session)?.lock().rw {
        return Err(Ckr::CKR_SESSION_READ_ONLY);
    }
    let role = match &*m.login.read() {
        Login::SecurityOfficer(_) => PinRole::SecurityOfficer,
        _ => PinRole::User,
    };
    m.kms.set_pin(m.instance(), role, old, new)?;
    m.login.keep_so_pin(new);
    tracing::info!(role = ?role, "PIN changed");
    Ok(())
}
