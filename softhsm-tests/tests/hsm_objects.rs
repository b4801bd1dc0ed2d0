//! What a hardware instance leaves where, seen from outside Tessera: SoftHSM2 itself
//! (`pkcs11-tool` on SoftHSM2's own module, in another process) shows each version of a
//! hardware key as token objects labelled `tessera/<key id>/<version id>` with `CKA_SENSITIVE`
//! true and `CKA_EXTRACTABLE` false, whose secret cannot be read out; the store (read with
//! SQLite, read-only) keeps only those identifiers for hardware keys, where it keeps software
//! keys sealed under the root key; and once a hardware key is purged after its pending window,
//! its objects are gone from the token.
//!
//! One test (the phases share the token's object list, so they run in order). Skipped
//! (SKIPPED on stderr) without SoftHSM2 or pkcs11-tool, failed then under `CI=true`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kms_core::api::*;
use kms_core::model::*;
use kms_core::store::{DB_FILE, ROOT_KEY_FILE, Sealer};
use softhsm_tests::{SOFTHSM_MODULE, SoftHsm};
use support::*;

const DAY: Duration = Duration::from_secs(86_400);

/// The tests of this file run one at a time: they share SoftHSM2's library in this process, and
/// a hardware engine that reconnects finalizes it under the other's feet.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
const MINUTE: Duration = Duration::from_secs(60);

/// Every object of the token, as `pkcs11-tool -O` on SoftHSM2's module lists it after a login.
fn token_objects(hsm: &SoftHsm) -> Vec<P11Object> {
    let out = hsm.pkcs11_tool(&["-O"]);
    assert!(
        out.status.success(),
        "pkcs11-tool -O on SoftHSM2 failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_objects(&String::from_utf8_lossy(&out.stdout))
}

/// The CKA_ID (and CKA_LABEL) of a version's objects.
fn object_id(key_id: &str, version_id: &str) -> String {
    format!("tessera/{key_id}/{version_id}")
}

/// The objects whose CKA_ID is `id`.
fn with_id<'a>(objects: &'a [P11Object], id: &str) -> Vec<&'a P11Object> {
    let hex_id = hex(id.as_bytes());
    objects
        .iter()
        .filter(|o| o.id.as_deref() == Some(hex_id.as_str()))
        .collect()
}

/// Every regular file of the store directory but the root key file: the database, its WAL and
/// shared-memory files.
fn store_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the store directory") {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ROOT_KEY_FILE || !entry.file_type().expect("a file type").is_file() {
            continue;
        }
        files.push((name, std::fs::read(entry.path()).expect("read a store file")));
    }
    assert!(
        files.iter().any(|(name, _)| name == DB_FILE),
        "the store directory has no {DB_FILE}"
    );
    files
}

/// One row of `key_versions` with its key's instance and ProtectionLevel.
struct VersionRow {
    key_id: String,
    instance_id: String,
    protection_level: String,
    version_id: String,
    material: Vec<u8>,
}

/// The store's version rows, read with SQLite (read-only, as any other reader would).
fn version_rows(dir: &Path) -> Vec<VersionRow> {
    let db = rusqlite::Connection::open_with_flags(dir.join(DB_FILE), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the store read-only");
    let mut stmt = db
        .prepare(
            "SELECT k.key_id, k.instance_id, k.protection_level, v.version_id, v.material \
             FROM key_versions v JOIN keys k ON k.key_id = v.key_id",
        )
        .expect("the store's schema has keys and key_versions");
    stmt.query_map([], |r| {
        Ok(VersionRow {
            key_id: r.get(0)?,
            instance_id: r.get(1)?,
            protection_level: r.get(2)?,
            version_id: r.get(3)?,
            material: r.get(4)?,
        })
    })
    .expect("query the versions")
    .collect::<Result<_, _>>()
    .expect("read the versions")
}

/// The SubjectPublicKeyInfo DER of the public key object `id`, read from SoftHSM2.
fn token_public_key(hsm: &SoftHsm, id: &str) -> Vec<u8> {
    let file = hsm.dir.path().join(format!("{}.pub.der", id.replace('/', "_")));
    let file_s = file.display().to_string();
    let hex_id = hex(id.as_bytes());
    let out = hsm.pkcs11_tool(&["--read-object", "--type", "pubkey", "--id", &hex_id, "-o", &file_s]);
    assert!(
        out.status.success(),
        "pkcs11-tool --read-object --type pubkey --id {id}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&file).expect("the public key pkcs11-tool wrote")
}

/// Asserts that the public key SoftHSM2 holds for `id` is the one GetPublicKey gives.
fn same_public_key(spec: KeySpec, token_der: &[u8], pem: &str, what: &str) {
    use p256::pkcs8::DecodePublicKey as _;
    match spec {
        KeySpec::EcP256 => {
            let token = p256::PublicKey::from_public_key_der(token_der).expect("SoftHSM2's EC public key");
            let tessera = p256::PublicKey::from_public_key_pem(pem).expect("GetPublicKey's EC public key");
            assert_eq!(
                token, tessera,
                "{what}: SoftHSM2's public key differs from GetPublicKey's"
            );
        }
        KeySpec::Rsa2048 => {
            let token = rsa::PublicKey::from_public_key_der(token_der).expect("SoftHSM2's RSA public key");
            assert_eq!(
                token,
                rsa_public_key(spec, pem),
                "{what}: SoftHSM2's public key differs from GetPublicKey's"
            );
        }
        other => panic!("no comparison for {other}"),
    }
}

/// A hardware key version and the objects it must have.
struct Expected {
    what: String,
    spec: KeySpec,
    key_id: String,
    version_id: String,
}

impl Expected {
    fn id(&self) -> String {
        object_id(&self.key_id, &self.version_id)
    }
}

/// Checks the objects of one hardware key version: a secret key (AES) or a private and a public
/// key (EC, RSA), labelled and identified `tessera/<key>/<version>`, the secret ones sensitive,
/// never extractable and generated in the token; and the secret cannot be read out.
fn check_version_objects(hsm: &SoftHsm, objects: &[P11Object], v: &Expected) {
    let id = v.id();
    let found = with_id(objects, &id);
    let mut classes: Vec<ObjClass> = found.iter().map(|o| o.class).collect();
    classes.sort_by_key(|c| format!("{c:?}"));
    let want = if v.spec.is_symmetric() {
        vec![ObjClass::SecretKey]
    } else {
        vec![ObjClass::PrivateKey, ObjClass::PublicKey]
    };
    assert_eq!(classes, want, "{}: the objects with CKA_ID {id}:\n{found:#?}", v.what);
    for object in &found {
        assert_eq!(object.label.as_deref(), Some(id.as_str()), "{}: CKA_LABEL", v.what);
        let heading_has = match (v.spec, object.class) {
            (KeySpec::Aes256, _) => "AES length 32",
            (KeySpec::EcP256, ObjClass::PublicKey) => "EC_POINT 256 bits",
            (KeySpec::EcP256, _) => "EC",
            (KeySpec::Rsa2048, ObjClass::PublicKey) => "RSA 2048 bits",
            (KeySpec::Rsa2048, _) => "RSA",
            (other, _) => panic!("no expectation for {other}"),
        };
        assert!(
            object.heading.contains(heading_has),
            "{}: {:?} is not a {heading_has} object",
            v.what,
            object.heading
        );
        if object.class == ObjClass::PublicKey {
            continue;
        }
        let access = object.items("Access");
        for flag in ["sensitive", "always sensitive", "never extractable", "local"] {
            assert!(
                access.iter().any(|a| a == flag),
                "{}: the {:?} object is not {flag} (Access: {access:?})",
                v.what,
                object.class
            );
        }
        assert!(
            !access.iter().any(|a| a == "extractable"),
            "{}: the {:?} object has CKA_EXTRACTABLE true (Access: {access:?})",
            v.what,
            object.class
        );
        // And it really cannot be read out, by another process…
        if object.class == ObjClass::SecretKey {
            let file = hsm.dir.path().join("extracted.bin");
            let file_s = file.display().to_string();
            let hex_id = hex(id.as_bytes());
            let out = hsm.pkcs11_tool(&["--read-object", "--type", "secrkey", "--id", &hex_id, "-o", &file_s]);
            let extracted = std::fs::read(&file).unwrap_or_default();
            let _ = std::fs::remove_file(&file);
            assert!(
                !out.status.success() && extracted.is_empty(),
                "{}: pkcs11-tool --read-object --type secrkey read the key out of SoftHSM2 ({} bytes):\n{}",
                v.what,
                extracted.len(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // …nor by this one, asking SoftHSM2 for the attributes themselves.
    check_attributes_in_softhsm(hsm, v);
}

/// Reads, through SoftHSM2's own module in this process, CKA_SENSITIVE, CKA_EXTRACTABLE and
/// whether the secret (CKA_VALUE, or CKA_PRIVATE_EXPONENT for RSA) of the version's secret or
/// private key can be read. The engine loaded and initialised the module already; this context
/// shares it and never finalizes it.
fn check_attributes_in_softhsm(hsm: &SoftHsm, v: &Expected) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::error::{Error, RvError};
    use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let ctx = Pkcs11::new(SOFTHSM_MODULE).expect("load SoftHSM2's module");
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize of SoftHSM2: {e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .expect("SoftHSM2's slots")
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|t| t.label().trim_end() == hsm.label))
        .expect("the test token");
    let session = ctx.open_ro_session(slot).expect("a session with SoftHSM2");
    match session.login(UserType::User, Some(&AuthPin::from(softhsm_tests::USER_PIN))) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login to SoftHSM2: {e}"),
    }
    let class = if v.spec.is_symmetric() {
        ObjectClass::SECRET_KEY
    } else {
        ObjectClass::PRIVATE_KEY
    };
    let found = session
        .find_objects(&[Attribute::Class(class), Attribute::Id(v.id().into_bytes())])
        .expect("C_FindObjects");
    assert_eq!(found.len(), 1, "{}: the {class} objects with its CKA_ID", v.what);
    let attributes = session
        .get_attributes(found[0], &[AttributeType::Sensitive, AttributeType::Extractable])
        .expect("C_GetAttributeValue");
    let flag = |wanted: AttributeType| {
        attributes.iter().find_map(|a| match (a, wanted) {
            (Attribute::Sensitive(b), AttributeType::Sensitive)
            | (Attribute::Extractable(b), AttributeType::Extractable) => Some(*b),
            _ => None,
        })
    };
    assert_eq!(flag(AttributeType::Sensitive), Some(true), "{}: CKA_SENSITIVE", v.what);
    assert_eq!(
        flag(AttributeType::Extractable),
        Some(false),
        "{}: CKA_EXTRACTABLE",
        v.what
    );
    let secret = match v.spec {
        KeySpec::Rsa2048 => AttributeType::PrivateExponent,
        _ => AttributeType::Value,
    };
    let info = session
        .get_attribute_info(found[0], &[secret])
        .expect("C_GetAttributeValue of the secret");
    assert!(
        matches!(info.as_slice(), [AttributeInfo::Sensitive]),
        "{}: SoftHSM2 answers {info:?} for the {secret} of the key, not CKR_ATTRIBUTE_SENSITIVE",
        v.what
    );
}

#[test]
fn hardware_keys_live_only_in_the_hsm() {
    if !require("hardware_keys_live_only_in_the_hsm", &["pkcs11-tool"]) {
        return;
    }
    let _serial = one_at_a_time();
    let hsm = SoftHsm::shared();
    let suite = Suite::new(hsm);
    let kms = &suite.kms;
    let hw = suite.hardware().to_owned();
    let sw = kms_core::DEFAULT_INSTANCE_ID;
    let created = |instance: &str, spec: KeySpec| {
        create_key(kms, instance, spec, None).unwrap_or_else(|e| panic!("CreateKey {spec} in {instance}: {e}"))
    };

    // ---- keys: three in the HSM (the EC one rotated: two versions), two in software
    let hw_aes = created(&hw, KeySpec::Aes256);
    let hw_ec = created(&hw, KeySpec::EcP256);
    let hw_rsa = created(&hw, KeySpec::Rsa2048);
    let hw_ec_v1 = hw_ec.primary_key_version.clone().expect("a version");
    let hw_ec_v2 = kms
        .create_key_version(&KeyIdRequest::new(hw_ec.key_id.as_str()))
        .expect("CreateKeyVersion")
        .key_version
        .key_version_id;
    let sw_aes = created(sw, KeySpec::Aes256);
    let sw_ec = created(sw, KeySpec::EcP256);
    for key in [&hw_aes, &hw_ec, &hw_rsa] {
        assert_eq!(key.protection_level, Some(ProtectionLevel::Hsm), "{key:?}");
    }

    let expected = vec![
        Expected {
            what: "hardware AES-256".into(),
            spec: KeySpec::Aes256,
            key_id: hw_aes.key_id.clone(),
            version_id: hw_aes.primary_key_version.clone().expect("a version"),
        },
        Expected {
            what: "hardware EC P-256, first version".into(),
            spec: KeySpec::EcP256,
            key_id: hw_ec.key_id.clone(),
            version_id: hw_ec_v1.clone(),
        },
        Expected {
            what: "hardware EC P-256, second version".into(),
            spec: KeySpec::EcP256,
            key_id: hw_ec.key_id.clone(),
            version_id: hw_ec_v2.clone(),
        },
        Expected {
            what: "hardware RSA-2048".into(),
            spec: KeySpec::Rsa2048,
            key_id: hw_rsa.key_id.clone(),
            version_id: hw_rsa.primary_key_version.clone().expect("a version"),
        },
    ];

    // ---- 1. SoftHSM2 shows the objects, sensitive and not extractable
    let objects = token_objects(hsm);
    for v in &expected {
        check_version_objects(hsm, &objects, v);
        if !v.spec.is_symmetric() {
            let (_, pem) = public_pem(kms, &v.key_id, Some(&v.version_id)).expect("GetPublicKey");
            same_public_key(v.spec, &token_public_key(hsm, &v.id()), &pem, &v.what);
        }
    }
    for key in [&sw_aes, &sw_ec] {
        let theirs: Vec<&P11Object> = objects
            .iter()
            .filter(|o| o.label.as_deref().is_some_and(|l| l.contains(&key.key_id)))
            .collect();
        assert!(
            theirs.is_empty(),
            "the software key {} has objects in the HSM:\n{theirs:#?}",
            key.key_id
        );
    }
    // Without a login, only the public keys are visible (the others are CKA_PRIVATE).
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", hsm.conf())
        .args(["--module", SOFTHSM_MODULE, "--token-label", &hsm.label, "-O"])
        .output()
        .expect("run pkcs11-tool");
    assert!(out.status.success(), "pkcs11-tool -O without a login");
    let public_view = parse_objects(&String::from_utf8_lossy(&out.stdout));
    for v in &expected {
        let seen: Vec<ObjClass> = with_id(&public_view, &v.id()).iter().map(|o| o.class).collect();
        let want = if v.spec.is_symmetric() {
            vec![]
        } else {
            vec![ObjClass::PublicKey]
        };
        assert_eq!(seen, want, "{}: the objects a public session sees", v.what);
    }

    // ---- 2. the store keeps identifiers for hardware keys, sealed material for software keys
    let store = suite.stores.dir.path();
    let rows = version_rows(store);
    let root_key: [u8; 32] = std::fs::read(store.join(ROOT_KEY_FILE))
        .expect("the root key file")
        .try_into()
        .expect("a 32-byte root key");
    let sealer = Sealer::new(&root_key);
    let files = store_files(store);
    for v in &expected {
        let row = rows
            .iter()
            .find(|r| r.key_id == v.key_id && r.version_id == v.version_id)
            .unwrap_or_else(|| panic!("{}: no row in key_versions", v.what));
        assert_eq!(
            (row.instance_id.as_str(), row.protection_level.as_str()),
            (hw.as_str(), "HSM"),
            "{}: the key's row",
            v.what
        );
        assert_eq!(
            String::from_utf8_lossy(&row.material),
            v.id(),
            "{}: the store keeps more than the object identifier",
            v.what
        );
    }
    // Not even the hardware public keys are in the store files: only the identifiers.
    for v in expected.iter().filter(|v| !v.spec.is_symmetric()) {
        let (_, pem) = public_pem(kms, &v.key_id, Some(&v.version_id)).expect("GetPublicKey");
        let der = pem_to_der(&pem);
        let public_part = &der[der.len() - 64..];
        for (name, bytes) in &files {
            assert!(
                !contains(bytes, public_part),
                "{}: the store file {name} holds the HSM's public key",
                v.what
            );
        }
    }
    for (key, spec) in [(&sw_aes, KeySpec::Aes256), (&sw_ec, KeySpec::EcP256)] {
        let version = key.primary_key_version.clone().expect("a version");
        let row = rows
            .iter()
            .find(|r| r.key_id == key.key_id && r.version_id == version)
            .unwrap_or_else(|| panic!("software {spec}: no row in key_versions"));
        assert_eq!(
            (row.instance_id.as_str(), row.protection_level.as_str()),
            (sw, "SOFTWARE"),
            "software {spec}: the key's row"
        );
        // Sealed: format 1, a 12-byte IV, the 32-byte key, a 16-byte tag.
        assert_eq!(
            (row.material.first().copied(), row.material.len()),
            (Some(1), 1 + 12 + 32 + 16),
            "software {spec}: the material is not a sealed 32-byte key"
        );
        let material = sealer
            .unseal(&key.key_id, &version, &row.material)
            .unwrap_or_else(|e| panic!("software {spec}: the material does not unseal under the root key: {e}"));
        assert_eq!(material.len(), 32, "software {spec}: the unsealed key");
        if spec == KeySpec::EcP256 {
            // The sealed scalar is the key GetPublicKey describes.
            use p256::pkcs8::DecodePublicKey as _;
            let signing = p256::ecdsa::SigningKey::from_slice(&material).expect("a P-256 scalar");
            let (_, pem) = public_pem(kms, &key.key_id, None).expect("GetPublicKey");
            let public = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).expect("a P-256 key");
            assert_eq!(
                *signing.verifying_key(),
                public,
                "software EC: the sealed scalar is not the key's private key"
            );
        }
        for (name, bytes) in &files {
            assert!(
                !contains(bytes, &material),
                "software {spec}: the store file {name} holds the key in clear"
            );
        }
    }

    // ---- 3. a CreateKey that fails after the HSM made the material leaves no objects behind
    let alias = "alias/hsm-objects-taken";
    kms.create_alias(&AliasRequest {
        alias_name: alias.into(),
        key_id: hw_rsa.key_id.clone(),
    })
    .expect("CreateAlias");
    let ids_before: BTreeSet<Option<String>> = token_objects(hsm).into_iter().map(|o| o.id).collect();
    let refused = kms.create_key(&CreateKeyRequest {
        key_spec: Some(KeySpec::EcP256),
        dkms_instance_id: Some(hw.clone()),
        alias: Some(alias.into()),
        ..CreateKeyRequest::default()
    });
    assert_eq!(code(refused), "AliasAlreadyExists");
    let ids_after: BTreeSet<Option<String>> = token_objects(hsm).into_iter().map(|o| o.id).collect();
    assert_eq!(
        ids_after, ids_before,
        "a CreateKey refused after generating its key pair left objects in the HSM"
    );

    // ---- 4. purge: the objects go with the key, others stay
    for key in [&hw_aes, &hw_ec] {
        kms.schedule_key_deletion(&ScheduleKeyDeletionRequest {
            key_id: key.key_id.clone(),
            pending_window_in_days: Some(7),
        })
        .expect("ScheduleKeyDeletion");
    }
    suite.advance(7 * DAY - MINUTE);
    let (_, purged) = kms.maintain().expect("maintain");
    assert_eq!(purged, 0, "purged before the end of the pending window");
    let objects = token_objects(hsm);
    for v in &expected {
        check_version_objects(hsm, &objects, v);
    }
    suite.advance(2 * MINUTE);
    let (_, purged) = kms.maintain().expect("maintain");
    assert_eq!(purged, 2, "maintain after the pending window");
    let objects = token_objects(hsm);
    for v in &expected {
        let left = with_id(&objects, &v.id());
        if v.key_id == hw_rsa.key_id {
            assert_eq!(left.len(), 2, "{}: a key not deleted lost its objects", v.what);
        } else {
            assert!(
                left.is_empty(),
                "{}: objects left in SoftHSM2 after the key was purged:\n{left:#?}",
                v.what
            );
        }
    }
    let rows = version_rows(store);
    for key in [&hw_aes, &hw_ec] {
        assert!(
            !rows.iter().any(|r| r.key_id == key.key_id),
            "the purged key {} still has rows",
            key.key_id
        );
        assert_eq!(
            code(kms.describe_key(&KeyIdRequest::new(key.key_id.as_str()))),
            "Forbidden.KeyNotFound"
        );
    }
    // The key that stayed still works from its HSM objects.
    let digest = sha256(b"after the purge of other keys");
    let signed = sign(kms, &hw_rsa.key_id, None, SigningAlgorithm::RsaPssSha256, &digest).expect("sign");
    let (_, pem) = public_pem(kms, &hw_rsa.key_id, None).expect("GetPublicKey");
    assert!(verify_outside(
        KeySpec::Rsa2048,
        SigningAlgorithm::RsaPssSha256,
        &pem,
        &digest,
        &signed.value.0
    ));
}

/// A version whose objects were destroyed in the HSM behind Tessera's back fails on its own: an
/// internal failure for that key (not "HSM unavailable, retry", which a caller would retry
/// forever), while the other keys of the instance keep working on the same connection.
#[test]
fn a_version_destroyed_behind_the_kms_fails_alone() {
    if !require("a_version_destroyed_behind_the_kms_fails_alone", &["pkcs11-tool"]) {
        return;
    }
    let _serial = one_at_a_time();
    let hsm = SoftHsm::shared();
    let suite = Suite::new(hsm);
    let kms = &suite.kms;
    let hw = suite.hardware().to_owned();
    let encrypt = |key_id: &str| {
        kms.encrypt(&EncryptRequest {
            key_id: key_id.to_owned(),
            plaintext: b"still here".as_slice().into(),
            encryption_context: Default::default(),
        })
    };
    let gone = create_key(kms, &hw, KeySpec::Aes256, None).expect("CreateKey");
    let kept = create_key(kms, &hw, KeySpec::Aes256, None).expect("CreateKey");
    encrypt(&gone.key_id).expect("Encrypt before");
    encrypt(&kept.key_id).expect("Encrypt before");

    let id = object_id(&gone.key_id, gone.primary_key_version.as_deref().expect("a version"));
    let out = hsm.pkcs11_tool(&["--delete-object", "--type", "secrkey", "--id", &hex(id.as_bytes())]);
    assert!(
        out.status.success(),
        "pkcs11-tool --delete-object: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        with_id(&token_objects(hsm), &id).is_empty(),
        "the object is gone from the token"
    );

    // Twice: once with the handle cached before the deletion, once found afresh.
    for attempt in ["with the cached handle", "afresh"] {
        let e = encrypt(&gone.key_id).expect_err("a version without its object");
        assert_eq!(e.code(), "InternalFailure", "{attempt}: {e}");
    }
    encrypt(&kept.key_id).expect("another key of the instance works on");
}
