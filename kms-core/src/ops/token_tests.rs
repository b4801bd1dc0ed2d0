//! Token state and the token view, on a real store.

use super::*;
use crate::api::*;
use crate::engine::{SigEncoding, SignScheme};
use crate::model::*;
use crate::ops::DEFAULT_INSTANCE_ID as INSTANCE;

fn open() -> (tempfile::TempDir, Kms) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kms = Kms::open(dir.path()).expect("open");
    (dir, kms)
}

fn create(kms: &Kms, spec: KeySpec, alias: Option<&str>) -> String {
    kms.create_key(&CreateKeyRequest {
        key_spec: Some(spec),
        alias: alias.map(str::to_owned),
        ..Default::default()
    })
    .expect("CreateKey")
    .key_metadata
    .key_id
}

#[test]
fn pins_are_set_checked_and_changed() {
    let (dir, kms) = open();
    let info = kms.token_info(INSTANCE).expect("info");
    assert_eq!((info.label.as_str(), info.initialized), (INSTANCE, false));
    assert_eq!(
        kms.check_pin(INSTANCE, PinRole::User, b"1234")
            .expect_err("no PIN yet")
            .code(),
        "Rejected.TokenNotInitialized"
    );
    assert_eq!(
        kms.init_token(INSTANCE, b"123", "t").expect_err("short").code(),
        "InvalidParameter"
    );
    kms.init_token(INSTANCE, b"so-pin-1", "my token").expect("init");
    let info = kms.token_info(INSTANCE).expect("info");
    assert_eq!(
        (info.label.as_str(), info.initialized, info.user_pin_initialized),
        ("my token", true, false)
    );
    // Re-initialisation needs the SO PIN.
    assert_eq!(
        kms.init_token(INSTANCE, b"wrong-pin", "x")
            .expect_err("wrong SO PIN")
            .code(),
        "Forbidden.PinIncorrect"
    );
    assert_eq!(
        kms.init_user_pin(INSTANCE, b"wrong-pin", b"1234")
            .expect_err("wrong SO PIN")
            .code(),
        "Forbidden.PinIncorrect"
    );
    kms.init_user_pin(INSTANCE, b"so-pin-1", b"1234").expect("init pin");
    kms.check_pin(INSTANCE, PinRole::User, b"1234").expect("right PIN");
    assert_eq!(
        kms.check_pin(INSTANCE, PinRole::User, b"1235")
            .expect_err("wrong")
            .code(),
        "Forbidden.PinIncorrect"
    );
    kms.set_pin(INSTANCE, PinRole::User, b"1234", b"5678").expect("set pin");
    assert!(kms.check_pin(INSTANCE, PinRole::User, b"1234").is_err());
    // Another process sees the change, and no PIN is stored in clear.
    let other = Kms::open(dir.path()).expect("second open");
    other.check_pin(INSTANCE, PinRole::User, b"5678").expect("new PIN");
    let db = std::fs::read(dir.path().join(crate::store::DB_FILE)).expect("db");
    for pin in [b"so-pin-1".as_slice(), b"5678"] {
        assert!(
            !db.windows(pin.len()).any(|w| w == pin),
            "a PIN in clear in the database"
        );
    }
    // Re-initialising keeps the keys and clears the user PIN.
    let key = create(&kms, KeySpec::Aes256, Some("alias/kept"));
    kms.init_token(INSTANCE, b"so-pin-1", "again").expect("re-init");
    assert!(!kms.token_info(INSTANCE).expect("info").user_pin_initialized);
    assert!(kms.token_view(INSTANCE).expect("view").by_key_id(&key).is_some());
}

#[test]
fn the_view_shows_enabled_keys_by_label_with_the_primary_version_first() {
    let (_dir, kms) = open();
    let ec = create(&kms, KeySpec::EcP256, Some("alias/ec1"));
    let plain = create(&kms, KeySpec::Aes256, None);
    let view = kms.token_view(INSTANCE).expect("view");
    assert_eq!(view.keys.len(), 2);
    let at = view.with_label("ec1");
    assert_eq!(at.len(), 1);
    assert_eq!(view.keys[at[0]].key.key_id, ec);
    assert_eq!(view.keys[view.with_label(&plain)[0]].key.key_id, plain);
    // The same snapshot while nothing changes.
    assert!(Arc::ptr_eq(&view, &kms.token_view(INSTANCE).expect("view")));

    let v2 = kms
        .create_key_version(&KeyIdRequest::new(&ec))
        .expect("rotate")
        .key_version
        .key_version_id;
    let view = kms.token_view(INSTANCE).expect("view");
    let versions = &view.keys[view.with_label("ec1")[0]].versions;
    assert_eq!((versions.len(), &*versions[0]), (2, v2.as_str()));
    // Both versions sign; the raw encoding is r || s.
    for v in versions {
        let version = kms.token_version(&ec, v).expect("the version");
        assert_eq!((version.key_id(), version.version_id()), (ec.as_str(), &**v));
        let sig = kms
            .as_root()
            .sign_with(&version, SignScheme::Ecdsa(SigEncoding::Raw), &[7u8; 32])
            .expect("sign");
        assert_eq!(sig.len(), 64);
        assert!(
            kms.as_root()
                .verify_with(&version, SignScheme::Ecdsa(SigEncoding::Raw), &[7u8; 32], &sig)
                .expect("verify")
        );
    }

    // A version resolved before its key was disabled is checked again when used.
    let resolved_before = kms.token_version(&ec, &v2).expect("the version");
    kms.disable_key(&KeyIdRequest::new(&ec)).expect("disable");
    let view = kms.token_view(INSTANCE).expect("view");
    assert!(view.with_label("ec1").is_empty() && view.keys.len() == 1);
    assert_eq!(
        kms.as_root()
            .sign_with(&resolved_before, SignScheme::Ecdsa(SigEncoding::Raw), &[7u8; 32])
            .expect_err("disabled")
            .code(),
        "Rejected.Disabled"
    );
    assert_eq!(
        kms.token_version(&ec, &v2).expect_err("disabled").code(),
        "Rejected.Disabled"
    );
}

#[test]
fn raw_aead_round_trips_and_refuses_a_wrong_tag() {
    let (_dir, kms) = open();
    let key = create(&kms, KeySpec::Aes256, None);
    let version_id = kms.token_view(INSTANCE).expect("view").keys[0].versions[0].clone();
    let version = kms.token_version(&key, &version_id).expect("the version");
    let mut buf = b"attack at dawn".to_vec();
    let tag = kms
        .as_root()
        .aead_seal(&version, &[1u8; 12], b"aad", &mut buf)
        .expect("seal");
    assert_ne!(buf, b"attack at dawn");
    let mut bad = buf.clone();
    assert_eq!(
        kms.as_root()
            .aead_open(&version, &[1u8; 12], b"other", &mut bad, &tag)
            .expect_err("aad")
            .code(),
        "InvalidCiphertext"
    );
    kms.as_root()
        .aead_open(&version, &[1u8; 12], b"aad", &mut buf, &tag)
        .expect("open");
    assert_eq!(buf, b"attack at dawn");
    assert_eq!(
        kms.token_version(&key, "no-such-version").expect_err("version").code(),
        "Forbidden.KeyVersionNotFound"
    );
}

#[test]
fn a_pin_hash_is_recognised_by_its_form() {
    let hash = hash_pin(b"1234-pin").expect("hash");
    assert!(is_pin_hash(&hash));
    assert!(pin_matches(b"1234-pin", &hash).expect("match"));
    for bad in [
        "",
        "plain-pin",
        "argon2id-v19-m19456-t2-p1$zz$00",
        "other$00$00",
        &format!("{hash}$x"),
    ] {
        assert!(!is_pin_hash(bad), "{bad:?}");
        assert!(pin_matches(b"1234-pin", bad).is_err(), "{bad:?}");
    }
}
