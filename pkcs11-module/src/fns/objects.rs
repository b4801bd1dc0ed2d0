//! Objects: searching, reading attributes, generating keys, destroying.

use std::sync::Arc;

use cryptoki_sys::*;
use kms_core::api::{CreateKeyRequest, ScheduleKeyDeletionRequest};
use kms_core::engine::{Engine, SoftwareEngine, VersionRef};
use kms_core::model::{KeySpec, KeyUsage};

use super::{Attribute, AttributeRef, Template, with_session};
use crate::error::{Ckr, Result};
use crate::mechanisms::Mechanism;
use crate::objects::{
    Attr, EC_PARAMS_K256, EC_PARAMS_P256, EC_PARAMS_SM2, Kind, Object, ObjectView, SessionKey, TokenObject,
    split_label, version_label,
};
use crate::state::{self, Find, FindAsked, HandleList, Module, Target};

/// An object resolved for reading: its view and where its key is.
struct Resolved {
    kind: Kind,
    spec: KeySpec,
    usage: KeyUsage,
    label: String,
    id: Vec<u8>,
    token: bool,
    target: Target,
}

impl Resolved {
    fn view(&self) -> ObjectView<'_> {
        ObjectView {
            kind: self.kind,
            spec: self.spec,
            usage: self.usage,
            label: std::borrow::Cow::Borrowed(&self.label),
            id: &self.id,
            token: self.token,
        }
    }
}

/// What a handle names now; private objects only after login, token objects only while their
/// key is on the token.
fn resolve(m: &Module, handle: CK_OBJECT_HANDLE) -> Result<Resolved> {
    let resolved = match m.objects.get(handle)? {
        Object::Token(t) => {
            let view = m.view()?;
            let info = m.token_object_view(&view, &t).ok_or(Ckr::CKR_OBJECT_HANDLE_INVALID)?;
            Resolved {
                kind: t.kind,
                spec: info.spec,
                usage: info.usage,
                label: info.label.into_owned(),
                id: info.id.to_vec(),
                token: true,
                target: Target::Token {
                    key_id: Arc::clone(&t.key_id),
                    version_id: Arc::clone(&t.version_id),
                },
            }
        }
        Object::Session { key, kind, .. } => Resolved {
            kind,
            spec: key.spec,
            usage: key.usage,
            label: key.label.clone(),
            id: key.id.clone(),
            token: false,
            target: Target::Session(key),
        },
    };
    if resolved.kind.is_private() && !m.user_logged_in() {
        return Err(Ckr::CKR_OBJECT_HANDLE_INVALID);
    }
    Ok(resolved)
}

/// One attribute of an object.
fn attribute(m: &Module, view: &ObjectView<'_>, target: &Target, t: CK_ATTRIBUTE_TYPE) -> Result<Attr> {
    view.attr(
        t,
        || m.public_parts(target),
        || m.certificate(target, view.spec, &view.label),
    )
}

/// Whether an object has every attribute value of a template. The attributes clients search by
/// are compared in place; others are computed.
fn matches(
    m: &Module,
    view: &ObjectView<'_>,
    target: impl Fn() -> Target,
    template: &[AttributeRef<'_>],
) -> Result<bool> {
    // Made only for an attribute the view does not answer (most templates never need it).
    let mut made = None;
    for (t, wanted) in template {
        if let Some(same) = view.has_value(*t, wanted) {
            if !same {
                return Ok(false);
            }
            continue;
        }
        let target = made.get_or_insert_with(&target);
        match attribute(m, view, target, *t)? {
            Attr::Value(v) if v == *wanted => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// C_FindObjectsInit: the matches are found now; C_FindObjects hands them out.
pub fn find_init(session: CK_SESSION_HANDLE, template: &[AttributeRef<'_>]) -> Result<()> {
    with_session(session, |m, s| {
        if s.find.is_some() {
            return Err(Ckr::CKR_OPERATION_ACTIVE);
        }
        let user = m.user_logged_in();
        tracing::debug!(attributes = ?template.iter().map(|(t, v)| (*t, v.len())).collect::<Vec<_>>(), "find template");
        let view = match s.view.take() {
            Some(view) if m.kms.view_is_current(&view)? => view,
            _ => m.view()?,
        };
        // The last find's array is filled again (a find allocates nothing once warm).
        let mut handles = std::mem::take(&mut s.spare_handles);
        handles.clear();
        let asked = FindAsked {
            epoch: view.epoch(),
            user,
            session_objects: m.objects.session_generation(),
        };
        if s.last_find.answers(asked, template) {
            handles.extend_from_slice(&s.last_find.handles);
        } else {
            let found = find_matches(m, &view, user, template, &mut handles);
            if let Err(e) = found {
                s.view = Some(view);
                return Err(e);
            }
            s.last_find.remember(asked, template, &handles);
        }
        s.view = Some(view);
        s.find = Some(Find { handles, pos: 0 });
        Ok(())
    })
}

/// Appends the handles of the objects that match a template, token objects first.
fn find_matches(
    m: &Module,
    view: &kms_core::TokenView,
    user: bool,
    template: &[AttributeRef<'_>],
    handles: &mut HandleList,
) -> Result<()> {
    let wanted_id = template.raw(CKA_ID);
    // Use the view's indexes for the two attributes clients search by; scan otherwise. A label
    // names a key (its primary version) or, as `label@version`, an older version.
    let by_id;
    let every: Vec<usize>;
    let candidates: &[usize] = if let Some(label) = template.raw(CKA_LABEL) {
        std::str::from_utf8(label).map_or(&[], |l| view.with_label(split_label(l).0))
    } else if let Some(id) = wanted_id {
        by_id = std::str::from_utf8(id).ok().and_then(|id| view.by_version_id(id));
        by_id.as_slice()
    } else {
        every = (0..view.keys.len()).collect();
        &every
    };
    for &at in candidates {
        let key = &view.keys[at];
        let key_id = &key.key_id;
        for (at, version) in key.versions.iter().enumerate() {
            if wanted_id.is_some_and(|id| id != version.as_bytes()) {
                continue;
            }
            let label = version_label(&key.label, version, at == 0);
            let version_id = version;
            for &kind in Kind::of_spec(key.key.spec, m.config.generate_certs) {
                if kind.is_private() && !user {
                    continue;
                }
                let object_view = ObjectView {
                    kind,
                    spec: key.key.spec,
                    usage: key.key.usage,
                    label: label.clone(),
                    id: version.as_bytes(),
                    token: true,
                };
                let target = || Target::Token {
                    key_id: Arc::clone(key_id),
                    version_id: Arc::clone(version_id),
                };
                if matches(m, &object_view, target, template)? {
                    handles.push(m.objects.token_handle_of(key_id, version_id, kind));
                }
            }
        }
    }
    let session_objects = m.objects.session_objects();
    for (handle, key, kind) in session_objects {
        if kind.is_private() && !user {
            continue;
        }
        let object_view = ObjectView {
            kind,
            spec: key.spec,
            usage: key.usage,
            label: std::borrow::Cow::Borrowed(&key.label),
            id: &key.id,
            token: false,
        };
        if matches(m, &object_view, || Target::Session(Arc::clone(&key)), template)? {
            handles.push(handle);
        }
    }
    Ok(())
}

/// C_FindObjects: the next handles, as many as `room` holds; how many were written.
pub fn find(session: CK_SESSION_HANDLE, room: &mut [CK_OBJECT_HANDLE]) -> Result<usize> {
    with_session(session, |_, s| {
        let find = s.find.as_mut().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
        let next = find.handles.get(find.pos..).unwrap_or_default();
        let n = next.len().min(room.len());
        room[..n].copy_from_slice(&next[..n]);
        find.pos += n;
        Ok(n)
    })
}

/// C_FindObjectsFinal.
pub fn find_final(session: CK_SESSION_HANDLE) -> Result<()> {
    with_session(session, |_, s| {
        let find = s.find.take().ok_or(Ckr::CKR_OPERATION_NOT_INITIALIZED)?;
        s.spare_handles = find.handles;
        Ok(())
    })
}

/// C_GetAttributeValue: the value (or why none) of each attribute asked for.
pub fn attributes(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    types: &[CK_ATTRIBUTE_TYPE],
) -> Result<Vec<Attr>> {
    let m = state::module()?;
    m.session(session)?;
    let resolved = resolve(&m, object)?;
    let view = resolved.view();
    types
        .iter()
        .map(|t| attribute(&m, &view, &resolved.target, *t))
        .collect()
}

/// C_GetObjectSize: not meaningful for KMS keys.
pub fn object_size(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> Result<CK_ULONG> {
    let m = state::module()?;
    m.session(session)?;
    resolve(&m, object)?;
    Ok(CK_UNAVAILABLE_INFORMATION)
}

/// C_DestroyObject: a token key's deletion is scheduled (never immediate; `tessera
/// CancelKeyDeletion` brings it back); a session object goes at once.
pub fn destroy(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> Result<()> {
    let m = state::module()?;
    let rw = m.session(session)?.lock().rw;
    let resolved = resolve(&m, object)?;
    if !resolved.kind.is_private() {
        return Err(Ckr::CKR_ACTION_PROHIBITED);
    }
    match &resolved.target {
        Target::Session(_) => m.objects.remove_session_object(object),
        Target::Token { key_id, .. } => {
            if !rw {
                return Err(Ckr::CKR_SESSION_READ_ONLY);
            }
            m.kms
                .as_caller(&m.caller())
                .schedule_key_deletion(&ScheduleKeyDeletionRequest {
                    key_id: key_id.to_string(),
                    pending_window_in_days: Some(m.config.destroy_pending_days),
                })?;
            tracing::info!(key_id = %key_id, days = m.config.destroy_pending_days, "deletion scheduled by C_DestroyObject");
        }
    }
    Ok(())
}

/// Refuses template values the token cannot honour: a KMS key never leaves it. (`CKA_SENSITIVE`
/// false is not refused: pkcs11-tool asks for it by default, and a key that cannot be extracted
/// is no less safe for being sensitive too; the object says `CKA_SENSITIVE` true.)
fn check_key_template(template: &[Attribute]) -> Result<()> {
    tracing::debug!(attributes = ?template.iter().map(|(t, _)| *t).collect::<Vec<_>>(), "key template");
    if template.bool_attr(CKA_EXTRACTABLE)? == Some(true) {
        tracing::info!("refused: a KMS key is never extractable");
        return Err(Ckr::CKR_ATTRIBUTE_VALUE_INVALID);
    }
    if template.raw(CKA_VALUE).is_some() {
        return Err(Ckr::CKR_ATTRIBUTE_READ_ONLY);
    }
    Ok(())
}

/// A label as a KMS alias: labels become `alias/<label>`.
fn label_of(template: &[Attribute]) -> Result<Option<String>> {
    match template.raw(CKA_LABEL) {
        None | Some([]) => Ok(None),
        Some(bytes) => Ok(Some(
            std::str::from_utf8(bytes)
                .map_err(|_| Ckr::CKR_ATTRIBUTE_VALUE_INVALID)?
                .to_owned(),
        )),
    }
}

/// Token keys need a read/write session and a logged-in user.
fn check_may_create(m: &Module, session: CK_SESSION_HANDLE, token: bool) -> Result<()> {
    let rw = m.session(session)?.lock().rw;
    if !m.user_logged_in() {
        return Err(Ckr::CKR_USER_NOT_LOGGED_IN);
    }
    if token && !rw {
        return Err(Ckr::CKR_SESSION_READ_ONLY);
    }
    Ok(())
}

/// Creates a KMS key; returns its id and primary version.
fn create_token_key(m: &Module, spec: KeySpec, usage: KeyUsage, label: Option<&str>) -> Result<(Arc<str>, Arc<str>)> {
    let created = m.kms.as_caller(&m.caller()).create_key(&CreateKeyRequest {
        key_spec: Some(spec),
        key_usage: Some(usage),
        description: Some("created through PKCS#11".into()),
        dkms_instance_id: Some(m.instance().to_owned()),
        alias: label.map(|l| format!("alias/{l}")),
        ..CreateKeyRequest::default()
    })?;
    let meta = created.key_metadata;
    let version = meta.primary_key_version.ok_or(Ckr::CKR_GENERAL_ERROR)?;
    tracing::info!(key_id = %meta.key_id, spec = %spec, "key created through PKCS#11");
    Ok((Arc::from(meta.key_id.as_str()), Arc::from(version.as_str())))
}

/// Makes a key that lives only in this session.
fn session_key(spec: KeySpec, usage: KeyUsage, label: Option<String>, id: Option<&[u8]>) -> Result<Arc<SessionKey>> {
    let engine = SoftwareEngine::new();
    let version = VersionRef {
        key_id: "session",
        version_id: "session",
    };
    let stored = engine.generate(spec, version).map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
    let handle = engine
        .load(spec, version, &stored)
        .map_err(|_| Ckr::CKR_GENERAL_ERROR)?;
    Ok(Arc::new(SessionKey {
        spec,
        usage,
        label: label.unwrap_or_default(),
        id: id.map(<[u8]>::to_vec).unwrap_or_default(),
        handle,
    }))
}

/// C_GenerateKey: an AES key, a KMS key when `CKA_TOKEN` is true.
pub fn generate_key(
    session: CK_SESSION_HANDLE,
    mechanism: &Mechanism,
    template: &[Attribute],
) -> Result<CK_OBJECT_HANDLE> {
    let m = state::module()?;
    let Mechanism::AesKeyGen = mechanism else {
        return Err(Ckr::CKR_MECHANISM_INVALID);
    };
    if template.ulong_attr(CKA_CLASS)?.is_some_and(|c| c != CKO_SECRET_KEY)
        || template.ulong_attr(CKA_KEY_TYPE)?.is_some_and(|k| k != CKK_AES)
    {
        return Err(Ckr::CKR_TEMPLATE_INCONSISTENT);
    }
    check_key_template(template)?;
    let spec = match template.ulong_attr(CKA_VALUE_LEN)? {
        None => return Err(Ckr::CKR_TEMPLATE_INCOMPLETE),
        Some(16) => KeySpec::Aes128,
        Some(24) => KeySpec::Aes192,
        Some(32) => KeySpec::Aes256,
        Some(_) => return Err(Ckr::CKR_ATTRIBUTE_VALUE_INVALID),
    };
    if template.bool_attr(CKA_SIGN)? == Some(true) || template.bool_attr(CKA_VERIFY)? == Some(true) {
        tracing::info!("refused: secret keys here encrypt and decrypt, they do not sign");
        return Err(Ckr::CKR_ATTRIBUTE_VALUE_INVALID);
    }
    let token = template.bool_attr(CKA_TOKEN)?.unwrap_or(false);
    check_may_create(&m, session, token)?;
    let label = label_of(template)?;
    if token {
        let (key_id, version_id) = create_token_key(&m, spec, KeyUsage::EncryptDecrypt, label.as_deref())?;
        return Ok(m.objects.token_handle(&TokenObject {
            key_id,
            version_id,
            kind: Kind::Secret,
        }));
    }
    let key = session_key(spec, KeyUsage::EncryptDecrypt, label, template.raw(CKA_ID))?;
    let [secret] = m.add_session_objects(session, key, [Kind::Secret])?;
    Ok(secret)
}

/// C_GenerateKeyPair: an EC (P-256, secp256k1, SM2) or RSA (2048/3072/4096) key pair, a KMS key
/// when `CKA_TOKEN` is true. A KMS key has one usage: it signs unless only decryption is asked.
pub fn generate_key_pair(
    session: CK_SESSION_HANDLE,
    mechanism: &Mechanism,
    public: &[Attribute],
    private: &[Attribute],
) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    let m = state::module()?;
    check_key_template(private)?;
    let spec = match mechanism {
        Mechanism::EcKeyPairGen => match public.raw(CKA_EC_PARAMS).or_else(|| private.raw(CKA_EC_PARAMS)) {
            None => return Err(Ckr::CKR_TEMPLATE_INCOMPLETE),
            Some(p) if p == EC_PARAMS_P256 => KeySpec::EcP256,
            Some(p) if p == EC_PARAMS_K256 => KeySpec::EcP256K,
            Some(p) if p == EC_PARAMS_SM2 => KeySpec::EcSm2,
            Some(_) => return Err(Ckr::CKR_CURVE_NOT_SUPPORTED),
        },
        Mechanism::RsaKeyPairGen => {
            if let Some(e) = public.raw(CKA_PUBLIC_EXPONENT) {
                let significant: &[u8] = &e[e.iter().take_while(|b| **b == 0).count()..];
                if significant != [0x01, 0x00, 0x01] {
                    return Err(Ckr::CKR_ATTRIBUTE_VALUE_INVALID);
                }
            }
            match public.ulong_attr(CKA_MODULUS_BITS)? {
                None => return Err(Ckr::CKR_TEMPLATE_INCOMPLETE),
                Some(2048) => KeySpec::Rsa2048,
                Some(3072) => KeySpec::Rsa3072,
                Some(4096) => KeySpec::Rsa4096,
                Some(_) => return Err(Ckr::CKR_KEY_SIZE_RANGE),
            }
        }
        _ => return Err(Ckr::CKR_MECHANISM_INVALID),
    };
    let wants = |t: CK_ATTRIBUTE_TYPE, in_public: bool| -> Result<bool> {
        let template = if in_public { public } else { private };
        Ok(template.bool_attr(t)? == Some(true))
    };
    let signs = wants(CKA_SIGN, false)? || wants(CKA_VERIFY, true)?;
    let decrypts = wants(CKA_DECRYPT, false)? || wants(CKA_ENCRYPT, true)?;
    let usage = if decrypts && !signs && spec != KeySpec::EcP256 && spec != KeySpec::EcP256K {
        KeyUsage::EncryptDecrypt
    } else {
        KeyUsage::SignVerify
    };
    let token = private
        .bool_attr(CKA_TOKEN)?
        .or(public.bool_attr(CKA_TOKEN)?)
        .unwrap_or(false);
    check_may_create(&m, session, token)?;
    let label = match label_of(private)? {
        Some(l) => Some(l),
        None => label_of(public)?,
    };
    if token {
        let (key_id, version_id) = create_token_key(&m, spec, usage, label.as_deref())?;
        let handle = |kind| {
            m.objects.token_handle(&TokenObject {
                key_id: Arc::clone(&key_id),
                version_id: Arc::clone(&version_id),
                kind,
            })
        };
        return Ok((handle(Kind::Public), handle(Kind::Private)));
    }
    let id = private.raw(CKA_ID).or_else(|| public.raw(CKA_ID));
    let key = session_key(spec, usage, label, id)?;
    let [public, private] = m.add_session_objects(session, key, [Kind::Public, Kind::Private])?;
    Ok((public, private))
}
