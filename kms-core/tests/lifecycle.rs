//! Lifecycle integration tests through the public `Kms` API, on a real SQLite store in a temporary
//! directory, with an injected `ManualClock`. Every limit is checked with the exact error code the
//! Alibaba Cloud KMS API answers with.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use kms_core::api::*;
use kms_core::blob::EncryptionContext;
use kms_core::clock::{Clock, DAY_MS, ManualClock, format_time};
use kms_core::model::*;
use kms_core::{Kms, KmsOptions};
use tempfile::TempDir;

// ------------------------------------------------------------------ helpers

const DAY: Duration = Duration::from_secs(86_400);
const SECOND: Duration = Duration::from_secs(1);
const DIGEST: [u8; 32] = [0x5a; 32];

/// A store in a temporary directory, a manual clock, and a `Kms` over both.
struct Env {
    dir: TempDir,
    clock: Arc<ManualClock>,
    kms: Kms,
}

fn open_at(dir: &Path, clock: Arc<ManualClock>) -> Kms {
    Kms::open_with(
        dir,
        KmsOptions {
            clock: clock as Arc<dyn Clock>,
            ..Default::default()
        },
    )
    .expect("open the store")
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("make a temporary directory");
    let clock = Arc::new(ManualClock::starting_now());
    let kms = open_at(dir.path(), Arc::clone(&clock));
    Env { dir, clock, kms }
}

impl Env {
    /// A second `Kms` over the same store, sharing the clock.
    fn reopen(&self) -> Kms {
        open_at(self.dir.path(), Arc::clone(&self.clock))
    }

    /// A second `Kms` over the same store with its own clock standing at `now_ms`.
    fn reopen_at(&self, now_ms: i64) -> Kms {
        open_at(self.dir.path(), Arc::new(ManualClock::new(now_ms)))
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The error code of a call that must fail.
#[track_caller]
fn code<T: Debug>(result: kms_core::Result<T>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.code(),
    }
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn create(kms: &Kms, req: CreateKeyRequest) -> KeyMetadata {
    kms.create_key(&req).expect("create key").key_metadata
}

fn spec(key_spec: KeySpec) -> CreateKeyRequest {
    CreateKeyRequest {
        key_spec: Some(key_spec),
        ..Default::default()
    }
}

/// A new Enabled Aliyun_AES_256 key's id.
fn aes(kms: &Kms) -> String {
    create(kms, CreateKeyRequest::default()).key_id
}

/// A new Enabled EC_P256 (SIGN/VERIFY) key's id.
fn ec(kms: &Kms) -> String {
    create(kms, spec(KeySpec::EcP256)).key_id
}

fn describe(kms: &Kms, key: &str) -> KeyMetadata {
    kms.describe_key(&KeyIdRequest::new(key))
        .expect("describe key")
        .key_metadata
}

fn encrypt(kms: &Kms, key: &str, plaintext: &[u8], context: &EncryptionContext) -> kms_core::Result<EncryptResponse> {
    kms.encrypt(&EncryptRequest {
        key_id: key.into(),
        plaintext: plaintext.into(),
        encryption_context: context.clone(),
    })
}

fn decrypt(kms: &Kms, blob: &[u8], context: &EncryptionContext) -> kms_core::Result<DecryptResponse> {
    kms.decrypt(&DecryptRequest {
        ciphertext_blob: blob.into(),
        encryption_context: context.clone(),
    })
}

fn data_key(kms: &Kms, key: &str) -> kms_core::Result<GenerateDataKeyResponse> {
    kms.generate_data_key(&GenerateDataKeyRequest {
        key_id: key.into(),
        ..Default::default()
    })
}

fn sign(kms: &Kms, key: &str, version: Option<&str>) -> kms_core::Result<AsymmetricSignResponse> {
    kms.asymmetric_sign(&AsymmetricSignRequest {
        key_id: key.into(),
        key_version_id: version.map(str::to_owned),
        algorithm: Some(SigningAlgorithm::EcdsaSha256),
        digest: DIGEST.as_slice().into(),
    })
}

fn verify(kms: &Kms, key: &str, version: Option<&str>, signature: &[u8]) -> kms_core::Result<bool> {
    kms.asymmetric_verify(&AsymmetricVerifyRequest {
        key_id: key.into(),
        key_version_id: version.map(str::to_owned),
        algorithm: Some(SigningAlgorithm::EcdsaSha256),
        digest: DIGEST.as_slice().into(),
        value: signature.into(),
    })
    .map(|r| r.value)
}

fn schedule(kms: &Kms, key: &str, days: Option<u32>) -> kms_core::Result<Empty> {
    kms.schedule_key_deletion(&ScheduleKeyDeletionRequest {
        key_id: key.into(),
        pending_window_in_days: days,
    })
}

fn cancel(kms: &Kms, key: &str) -> kms_core::Result<Empty> {
    kms.cancel_key_deletion(&KeyIdRequest::new(key))
}

fn create_alias(kms: &Kms, alias: &str, key: &str) -> kms_core::Result<Empty> {
    kms.create_alias(&AliasRequest {
        alias_name: alias.into(),
        key_id: key.into(),
    })
}

fn rotation_policy(kms: &Kms, key: &str, enable: bool, interval: Option<&str>) -> kms_core::Result<Empty> {
    kms.update_rotation_policy(&UpdateRotationPolicyRequest {
        key_id: key.into(),
        enable_automatic_rotation: Some(enable),
        rotation_interval: interval.map(str::to_owned),
    })
}

fn tags(n: usize, prefix: &str) -> Vec<Tag> {
    (0..n)
        .map(|i| Tag::new(format!("{prefix}{i}"), format!("v{i}")))
        .collect()
}

fn tag_key(kms: &Kms, key: &str, tags: Vec<Tag>) -> kms_core::Result<Empty> {
    kms.tag_resource(&TagResourceRequest {
        key_id: key.into(),
        tags,
    })
}

fn tag_count(kms: &Kms, key: &str) -> usize {
    kms.list_resource_tags(&KeyIdRequest::new(key))
        .expect("list tags")
        .tags
        .tag
        .len()
}

fn version_count(kms: &Kms, key: &str) -> u64 {
    kms.list_key_versions(&KeyPageRequest {
        key_id: key.into(),
        ..Default::default()
    })
    .expect("list key versions")
    .total_count
}

fn primary(kms: &Kms, key: &str) -> String {
    describe(kms, key)
        .primary_key_version
        .expect("an Enabled key has a primary version")
}

fn state(kms: &Kms, key: &str) -> KeyState {
    describe(kms, key).key_state.expect("a key has a state")
}

/// Every alias name, collected page by page with `page_size`.
fn all_alias_pages(page_size: u32, mut page: impl FnMut(u32) -> ListAliasesResponse) -> (Vec<String>, u64) {
    let mut names = Vec::new();
    let mut total = 0;
    for number in 1.. {
        let resp = page(number);
        assert_eq!(resp.page_number, number);
        assert_eq!(resp.page_size, page_size);
        total = resp.total_count;
        if resp.aliases.alias.is_empty() {
            break;
        }
        assert!(resp.aliases.alias.len() <= page_size as usize);
        names.extend(resp.aliases.alias.into_iter().map(|a| a.alias_name));
    }
    (names, total)
}

// ------------------------------------------------------------------ deletion window

#[test]
fn pending_window_must_be_7_to_30_days() {
    let e = env();
    let key = aes(&e.kms);
    assert_eq!(code(schedule(&e.kms, &key, None)), "MissingParameter");
    assert_eq!(code(schedule(&e.kms, &key, Some(6))), "InvalidParameter");
    assert_eq!(code(schedule(&e.kms, &key, Some(31))), "InvalidParameter");
    assert_eq!(code(schedule(&e.kms, &key, Some(0))), "InvalidParameter");
    assert_eq!(
        state(&e.kms, &key),
        KeyState::Enabled,
        "refused requests change nothing"
    );

    schedule(&e.kms, &key, Some(7)).expect("7 days is the shortest window");
    let meta = describe(&e.kms, &key);
    assert_eq!(meta.key_state, Some(KeyState::PendingDeletion));
    assert_eq!(meta.delete_date, Some(format_time(e.now() + 7 * DAY_MS)));

    cancel(&e.kms, &key).expect("cancel");
    schedule(&e.kms, &key, Some(30)).expect("30 days is the longest window");
    assert_eq!(
        describe(&e.kms, &key).delete_date,
        Some(format_time(e.now() + 30 * DAY_MS))
    );
    assert_eq!(
        code(schedule(&e.kms, &key, Some(7))),
        "Rejected.PendingDeletion",
        "a key already pending deletion cannot be scheduled again"
    );
}

// ------------------------------------------------------------------ rotation interval

#[test]
fn rotation_interval_must_be_7_to_730_days() {
    let e = env();
    for bad in ["6d", "731d", "604799s", "0d", "", "7x", "d", "-7d"] {
        let req = CreateKeyRequest {
            enable_automatic_rotation: Some(true),
            rotation_interval: Some(bad.into()),
            ..Default::default()
        };
        assert_eq!(
            code(e.kms.create_key(&req)),
            "InvalidParameter",
            "CreateKey RotationInterval {bad:?}"
        );
    }
    for (good, shown) in [
        ("7d", "604800s"),
        ("604800s", "604800s"),
        ("168h", "604800s"),
        ("10080m", "604800s"),
        ("730d", "63072000s"),
    ] {
        let meta = create(
            &e.kms,
            CreateKeyRequest {
                enable_automatic_rotation: Some(true),
                rotation_interval: Some(good.into()),
                ..Default::default()
            },
        );
        assert_eq!(
            meta.rotation_interval.as_deref(),
            Some(shown),
            "CreateKey RotationInterval {good}"
        );
        assert_eq!(meta.automatic_rotation, "Enabled");
        assert_eq!(describe(&e.kms, &meta.key_id).rotation_interval.as_deref(), Some(shown));
    }
    assert_eq!(
        e.kms.list_keys(&PageRequest::default()).expect("list").total_count,
        5,
        "no bad key was made"
    );

    let key = aes(&e.kms);
    for bad in ["6d", "731d"] {
        assert_eq!(
            code(rotation_policy(&e.kms, &key, true, Some(bad))),
            "InvalidParameter",
            "{bad}"
        );
    }
    assert_eq!(
        describe(&e.kms, &key).automatic_rotation,
        "Disabled",
        "refused updates change nothing"
    );
    for (good, shown) in [("7d", "604800s"), ("604800s", "604800s"), ("730d", "63072000s")] {
        rotation_policy(&e.kms, &key, true, Some(good)).expect("a valid interval");
        let meta = describe(&e.kms, &key);
        assert_eq!(
            meta.rotation_interval.as_deref(),
            Some(shown),
            "UpdateRotationPolicy {good}"
        );
        assert_eq!(meta.automatic_rotation, "Enabled");
    }
    let missing = e.kms.update_rotation_policy(&UpdateRotationPolicyRequest {
        key_id: key.clone(),
        ..Default::default()
    });
    assert_eq!(code(missing), "MissingParameter");
}

// ------------------------------------------------------------------ tags

#[test]
fn at_most_20_tags_per_key() {
    let e = env();
    let too_many = CreateKeyRequest {
        tags: tags(21, "k"),
        ..Default::default()
    };
    assert_eq!(code(e.kms.create_key(&too_many)), "Rejected.LimitExceeded");
    assert_eq!(e.kms.list_keys(&PageRequest::default()).expect("list").total_count, 0);

    let full = create(
        &e.kms,
        CreateKeyRequest {
            tags: tags(20, "k"),
            ..Default::default()
        },
    )
    .key_id;
    assert_eq!(tag_count(&e.kms, &full), 20);
    assert_eq!(code(tag_key(&e.kms, &full, tags(1, "extra"))), "Rejected.LimitExceeded");
    assert_eq!(tag_count(&e.kms, &full), 20, "the refused TagResource is rolled back");
    tag_key(&e.kms, &full, vec![Tag::new("k3", "replaced")]).expect("replacing a value adds no tag");
    assert_eq!(tag_count(&e.kms, &full), 20);

    let key = aes(&e.kms);
    tag_key(&e.kms, &key, tags(19, "a")).expect("19 tags");
    assert_eq!(code(tag_key(&e.kms, &key, tags(2, "b"))), "Rejected.LimitExceeded");
    assert_eq!(tag_count(&e.kms, &key), 19, "neither of the two tags was added");
    tag_key(&e.kms, &key, tags(1, "b")).expect("the 20th tag");
    assert_eq!(code(tag_key(&e.kms, &key, tags(21, "c"))), "Rejected.LimitExceeded");
    e.kms
        .untag_resource(&UntagResourceRequest {
            key_id: key.clone(),
            tag_keys: vec!["a0".into()],
        })
        .expect("untag");
    assert_eq!(tag_count(&e.kms, &key), 19);
}

#[test]
fn tag_keys_and_values_are_validated() {
    let e = env();
    let key = aes(&e.kms);
    let bad = [
        Tag::new("aliyun-team", "x"),
        Tag::new("Aliyun_team", "x"),
        Tag::new("acs:team", "x"),
        Tag::new("see http://example.com", "x"),
        Tag::new("see https://example.com", "x"),
        Tag::new("", "x"),
        Tag::new("k".repeat(129), "x"),
        Tag::new("team", "v".repeat(129)),
        Tag::new("team", "aliyun-x"),
        Tag::new("team", "http://example.com"),
    ];
    for tag in bad {
        assert_eq!(
            code(tag_key(&e.kms, &key, vec![tag.clone()])),
            "InvalidParameter",
            "TagResource {tag:?}"
        );
        let req = CreateKeyRequest {
            tags: vec![tag.clone()],
            ..Default::default()
        };
        assert_eq!(code(e.kms.create_key(&req)), "InvalidParameter", "CreateKey {tag:?}");
    }
    assert_eq!(tag_count(&e.kms, &key), 0);
    tag_key(
        &e.kms,
        &key,
        vec![
            Tag::new("k".repeat(128), "v".repeat(128)),
            Tag::new("empty", ""),
            Tag::new("team", "a:b/c=d+e-f@g.h"),
        ],
    )
    .expect("128 characters, an empty value and the allowed punctuation are fine");
    assert_eq!(tag_count(&e.kms, &key), 3);
    let no_tags = tag_key(&e.kms, &key, Vec::new());
    assert_eq!(code(no_tags), "MissingParameter");
}

// ------------------------------------------------------------------ description

#[test]
fn description_is_at_most_8192_characters() {
    let e = env();
    let too_long = "d".repeat(8193);
    let max = "d".repeat(8192);
    let req = CreateKeyRequest {
        description: Some(too_long.clone()),
        ..Default::default()
    };
    assert_eq!(code(e.kms.create_key(&req)), "InvalidParameter");
    let key = create(
        &e.kms,
        CreateKeyRequest {
            description: Some(max.clone()),
            ..Default::default()
        },
    )
    .key_id;
    assert_eq!(describe(&e.kms, &key).description, max);

    let update = |description: &str| {
        e.kms.update_key_description(&UpdateKeyDescriptionRequest {
            key_id: key.clone(),
            description: description.into(),
        })
    };
    assert_eq!(code(update(&too_long)), "InvalidParameter");
    assert_eq!(
        describe(&e.kms, &key).description,
        max,
        "the refused update changed nothing"
    );
    // Characters, not bytes: 8192 two-byte characters are fine.
    let wide = "é".repeat(8192);
    update(&wide).expect("8192 characters");
    assert_eq!(describe(&e.kms, &key).description, wide);
    update("").expect("an empty description");
    assert_eq!(describe(&e.kms, &key).description, "");
}

// ------------------------------------------------------------------ aliases

#[test]
fn alias_names_are_validated_and_unique() {
    let e = env();
    let key = aes(&e.kms);
    for bad in [
        "alias/a b",
        "alias/é",
        "myalias",
        "alias/",
        "Alias/x",
        "alias/a.b",
        "alias/acs-x",
    ] {
        assert_eq!(
            code(create_alias(&e.kms, bad, &key)),
            "InvalidParameter",
            "CreateAlias {bad:?}"
        );
        let req = CreateKeyRequest {
            alias: Some(bad.into()),
            ..Default::default()
        };
        assert_eq!(
            code(e.kms.create_key(&req)),
            "InvalidParameter",
            "CreateKey Alias {bad:?}"
        );
    }
    create_alias(&e.kms, "alias/app-1_x/y", &key).expect("letters, digits, _, - and /");
    let other = aes(&e.kms);
    assert_eq!(
        code(create_alias(&e.kms, "alias/app-1_x/y", &other)),
        "AliasAlreadyExists"
    );
    assert_eq!(
        code(create_alias(&e.kms, "alias/app-1_x/y", &key)),
        "AliasAlreadyExists"
    );

    let keys_before = e.kms.list_keys(&PageRequest::default()).expect("list").total_count;
    let req = CreateKeyRequest {
        alias: Some("alias/app-1_x/y".into()),
        ..Default::default()
    };
    assert_eq!(code(e.kms.create_key(&req)), "AliasAlreadyExists");
    assert_eq!(
        e.kms.list_keys(&PageRequest::default()).expect("list").total_count,
        keys_before,
        "CreateKey with a taken alias makes no key"
    );

    assert_eq!(
        code(e.kms.describe_key(&KeyIdRequest::new("alias/nope"))),
        "Forbidden.AliasNotFound"
    );
    assert_eq!(
        code(encrypt(&e.kms, "alias/nope", b"x", &ctx(&[]))),
        "Forbidden.AliasNotFound"
    );
    let update = e.kms.update_alias(&AliasRequest {
        alias_name: "alias/nope".into(),
        key_id: key.clone(),
    });
    assert_eq!(code(update), "Forbidden.AliasNotFound");
    let delete = e.kms.delete_alias(&DeleteAliasRequest {
        alias_name: "alias/nope".into(),
    });
    assert_eq!(code(delete), "Forbidden.AliasNotFound");
    assert_eq!(
        code(create_alias(&e.kms, "alias/fresh", "alias/nope")),
        "Forbidden.AliasNotFound"
    );
}

#[test]
fn alias_and_arn_work_wherever_a_key_id_does() {
    let e = env();
    let k = &e.kms;
    let key = create(
        k,
        CreateKeyRequest {
            alias: Some("alias/app".into()),
            ..Default::default()
        },
    );
    let arn = key.arn.clone();
    assert_eq!(arn, format!("acs:kms:local:{}:key/{}", k.account_id(), key.key_id));
    let alias_arn = k
        .list_aliases_by_key_id(&KeyPageRequest {
            key_id: key.key_id.clone(),
            ..Default::default()
        })
        .expect("aliases of the key")
        .aliases
        .alias[0]
        .alias_arn
        .clone();
    assert_eq!(alias_arn, format!("acs:kms:local:{}:alias/app", k.account_id()));

    for name in ["alias/app", arn.as_str(), alias_arn.as_str(), key.key_id.as_str()] {
        assert_eq!(describe(k, name).key_id, key.key_id, "DescribeKey {name}");
        let c = ctx(&[("via", name)]);
        let blob = encrypt(k, name, b"payload", &c).expect("encrypt");
        assert_eq!(blob.key_id, key.key_id, "Encrypt names the key by id");
        let back = decrypt(k, &blob.ciphertext_blob.0, &c).expect("decrypt");
        assert_eq!(back.plaintext.expose(), b"payload");
        let dk = data_key(k, name).expect("GenerateDataKey");
        assert_eq!(dk.key_id, key.key_id);
        assert_eq!(version_count(k, name), 1, "ListKeyVersions {name}");
        assert_eq!(primary(k, name), key.primary_key_version.clone().expect("primary"));
        let version = DescribeKeyVersionRequest {
            key_id: name.into(),
            key_version_id: blob.key_version_id.clone(),
        };
        k.describe_key_version(&version).expect("DescribeKeyVersion");
    }

    // State changes through an alias or an ARN.
    k.disable_key(&KeyIdRequest::new("alias/app"))
        .expect("DisableKey by alias");
    assert_eq!(state(k, &key.key_id), KeyState::Disabled);
    k.enable_key(&KeyIdRequest::new(arn.clone())).expect("EnableKey by ARN");
    assert_eq!(state(k, &key.key_id), KeyState::Enabled);
    k.disable_key(&KeyIdRequest::new(alias_arn.clone()))
        .expect("DisableKey by alias ARN");
    k.enable_key(&KeyIdRequest::new("alias/app"))
        .expect("EnableKey by alias");
    k.update_key_description(&UpdateKeyDescriptionRequest {
        key_id: "alias/app".into(),
        description: "by alias".into(),
    })
    .expect("UpdateKeyDescription by alias");
    assert_eq!(describe(k, &key.key_id).description, "by alias");
    tag_key(k, &arn, vec![Tag::new("team", "x")]).expect("TagResource by ARN");
    assert_eq!(tag_count(k, "alias/app"), 1);
    rotation_policy(k, "alias/app", true, Some("30d")).expect("UpdateRotationPolicy by alias");
    schedule(k, "alias/app", Some(7)).expect("ScheduleKeyDeletion by alias");
    cancel(k, &arn).expect("CancelKeyDeletion by ARN");
    k.enable_key(&KeyIdRequest::new("alias/app")).expect("enable again");

    // An asymmetric key through its alias and ARN.
    let signer = create(
        k,
        CreateKeyRequest {
            key_spec: Some(KeySpec::EcP256),
            alias: Some("alias/signer".into()),
            ..Default::default()
        },
    );
    let sig = sign(k, "alias/signer", None).expect("AsymmetricSign by alias");
    assert_eq!(sig.key_id, signer.key_id);
    assert!(verify(k, &signer.arn, None, &sig.value.0).expect("verify by ARN"));
    let public = k
        .get_public_key(&GetPublicKeyRequest {
            key_id: "alias/signer".into(),
            key_version_id: None,
        })
        .expect("GetPublicKey by alias");
    assert!(public.public_key.starts_with("-----BEGIN PUBLIC KEY-----"));
    k.create_key_version(&KeyIdRequest::new("alias/signer"))
        .expect("CreateKeyVersion by alias");
    assert_eq!(version_count(k, &signer.arn), 2);
}

#[test]
fn aliases_repoint_delete_and_page() {
    let e = env();
    let k = &e.kms;
    let first = aes(k);
    let second = aes(k);
    create_alias(k, "alias/app", &first).expect("create alias");
    assert_eq!(encrypt(k, "alias/app", b"x", &ctx(&[])).expect("encrypt").key_id, first);

    k.update_alias(&AliasRequest {
        alias_name: "alias/app".into(),
        key_id: second.clone(),
    })
    .expect("UpdateAlias");
    assert_eq!(
        encrypt(k, "alias/app", b"x", &ctx(&[])).expect("encrypt").key_id,
        second
    );
    assert_eq!(describe(k, "alias/app").key_id, second);
    let unknown = k.update_alias(&AliasRequest {
        alias_name: "alias/app".into(),
        key_id: "0c3c1c1e-0000-4000-8000-000000000000".into(),
    });
    assert_eq!(code(unknown), "Forbidden.KeyNotFound");
    assert_eq!(describe(k, "alias/app").key_id, second);

    k.delete_alias(&DeleteAliasRequest {
        alias_name: "alias/app".into(),
    })
    .expect("DeleteAlias");
    assert_eq!(
        code(k.describe_key(&KeyIdRequest::new("alias/app"))),
        "Forbidden.AliasNotFound"
    );
    assert_eq!(
        describe(k, &second).key_state,
        Some(KeyState::Enabled),
        "the key outlives its alias"
    );
    create_alias(k, "alias/app", &first).expect("a deleted alias name can be used again");

    // Paging: 3 aliases on `first`, 4 on `second`, one already on `first`.
    for i in 0..2 {
        create_alias(k, &format!("alias/first-{i}"), &first).expect("alias");
    }
    for i in 0..4 {
        create_alias(k, &format!("alias/second-{i}"), &second).expect("alias");
    }
    let (names, total) = all_alias_pages(2, |n| {
        k.list_aliases(&PageRequest {
            page_number: Some(n),
            page_size: Some(2),
        })
        .expect("ListAliases")
    });
    assert_eq!(total, 7);
    let expected = [
        "alias/app",
        "alias/first-0",
        "alias/first-1",
        "alias/second-0",
        "alias/second-1",
        "alias/second-2",
        "alias/second-3",
    ];
    assert_eq!(names, expected, "every alias exactly once, by name");

    let (names, total) = all_alias_pages(3, |n| {
        k.list_aliases_by_key_id(&KeyPageRequest {
            key_id: second.clone(),
            page_number: Some(n),
            page_size: Some(3),
        })
        .expect("ListAliasesByKeyId")
    });
    assert_eq!(total, 4);
    assert_eq!(names, expected[3..]);
    let page = k
        .list_aliases_by_key_id(&KeyPageRequest {
            key_id: first.clone(),
            page_number: Some(1),
            page_size: Some(100),
        })
        .expect("ListAliasesByKeyId");
    assert_eq!(page.total_count, 3);
    assert!(page.aliases.alias.iter().all(|a| a.key_id == first));
    assert_eq!(
        code(k.list_aliases(&PageRequest {
            page_number: Some(1),
            page_size: Some(0)
        })),
        "InvalidParameter"
    );
    assert_eq!(
        code(k.list_aliases(&PageRequest {
            page_number: Some(1),
            page_size: Some(101)
        })),
        "InvalidParameter"
    );
}

// ------------------------------------------------------------------ unknown ids

#[test]
fn unknown_keys_and_versions() {
    let e = env();
    let k = &e.kms;
    let missing = "3f0e6c1a-1b2c-4d3e-8f40-5a6b7c8d9e0f";
    assert_eq!(
        code(k.describe_key(&KeyIdRequest::new(missing))),
        "Forbidden.KeyNotFound"
    );
    assert_eq!(code(encrypt(k, missing, b"x", &ctx(&[]))), "Forbidden.KeyNotFound");
    assert_eq!(code(k.enable_key(&KeyIdRequest::new(missing))), "Forbidden.KeyNotFound");
    assert_eq!(code(schedule(k, missing, Some(7))), "Forbidden.KeyNotFound");
    assert_eq!(code(create_alias(k, "alias/x", missing)), "Forbidden.KeyNotFound");
    assert_eq!(code(tag_key(k, missing, tags(1, "t"))), "Forbidden.KeyNotFound");
    assert_eq!(code(sign(k, missing, None)), "Forbidden.KeyNotFound");
    let arn = format!("acs:kms:local:{}:key/{missing}", k.account_id());
    assert_eq!(code(k.describe_key(&KeyIdRequest::new(arn))), "Forbidden.KeyNotFound");
    assert_eq!(code(k.describe_key(&KeyIdRequest::new(""))), "MissingParameter");

    let key = aes(k);
    let version = primary(k, &key);
    let describe_version = |v: &str| {
        k.describe_key_version(&DescribeKeyVersionRequest {
            key_id: key.clone(),
            key_version_id: v.into(),
        })
    };
    let found = describe_version(&version).expect("the primary version exists");
    assert_eq!(found.key_version.key_version_id, version);
    assert_eq!(found.key_version.key_id, key);
    assert_eq!(code(describe_version(missing)), "Forbidden.KeyVersionNotFound");
    assert_eq!(code(describe_version("")), "MissingParameter");

    // A version of another key is not a version of this one.
    let other = aes(k);
    assert_eq!(
        code(describe_version(&primary(k, &other))),
        "Forbidden.KeyVersionNotFound"
    );
    let signer = ec(k);
    assert_eq!(code(sign(k, &signer, Some(missing))), "Forbidden.KeyVersionNotFound");
}

// ------------------------------------------------------------------ states

#[test]
fn disabled_keys_refuse_cryptography_until_enabled() {
    let e = env();
    let k = &e.kms;
    let key = aes(k);
    let signer = ec(k);
    let c = ctx(&[("app", "x")]);
    let blob = encrypt(k, &key, b"before", &c).expect("encrypt").ciphertext_blob;

    k.disable_key(&KeyIdRequest::new(key.clone())).expect("disable");
    k.disable_key(&KeyIdRequest::new(signer.clone())).expect("disable");
    assert_eq!(state(k, &key), KeyState::Disabled);
    assert_eq!(code(encrypt(k, &key, b"x", &c)), "Rejected.Disabled");
    assert_eq!(code(decrypt(k, &blob.0, &c)), "Rejected.Disabled");
    assert_eq!(code(data_key(k, &key)), "Rejected.Disabled");
    let without_plaintext = k.generate_data_key_without_plaintext(&GenerateDataKeyRequest {
        key_id: key.clone(),
        ..Default::default()
    });
    assert_eq!(code(without_plaintext), "Rejected.Disabled");
    assert_eq!(code(sign(k, &signer, None)), "Rejected.Disabled");
    assert_eq!(
        code(k.create_key_version(&KeyIdRequest::new(key.clone()))),
        "Rejected.Disabled"
    );

    k.enable_key(&KeyIdRequest::new(key.clone())).expect("enable");
    k.enable_key(&KeyIdRequest::new(signer.clone())).expect("enable");
    assert_eq!(decrypt(k, &blob.0, &c).expect("decrypt").plaintext.expose(), b"before");
    encrypt(k, &key, b"x", &c).expect("encrypt");
    data_key(k, &key).expect("GenerateDataKey");
    let sig = sign(k, &signer, None).expect("sign");
    assert!(verify(k, &signer, None, &sig.value.0).expect("verify"));

    let off = create(
        k,
        CreateKeyRequest {
            enable: Some(false),
            ..Default::default()
        },
    );
    assert_eq!(off.key_state, Some(KeyState::Disabled));
    assert!(off.primary_key_version.is_some(), "a Disabled key still has material");
    assert_eq!(code(encrypt(k, &off.key_id, b"x", &c)), "Rejected.Disabled");
    k.enable_key(&KeyIdRequest::new(off.key_id.clone())).expect("enable");
    encrypt(k, &off.key_id, b"x", &c).expect("encrypt after EnableKey");
}

#[test]
fn deletion_protection_blocks_scheduling() {
    let e = env();
    let k = &e.kms;
    let protected = create(
        k,
        CreateKeyRequest {
            deletion_protection: Some(true),
            ..Default::default()
        },
    );
    assert_eq!(protected.deletion_protection, "Enabled");
    assert_eq!(
        code(schedule(k, &protected.key_id, Some(7))),
        "Rejected.StateModifiedFailed"
    );
    assert_eq!(state(k, &protected.key_id), KeyState::Enabled);
    k.set_deletion_protection(&SetDeletionProtectionRequest {
        protected_resource_arn: protected.arn.clone(),
        enable_deletion_protection: Some(false),
        deletion_protection_description: None,
    })
    .expect("disable protection");
    assert_eq!(describe(k, &protected.key_id).deletion_protection, "Disabled");
    schedule(k, &protected.key_id, Some(7)).expect("schedule once unprotected");
    assert_eq!(state(k, &protected.key_id), KeyState::PendingDeletion);

    let key = create(k, CreateKeyRequest::default());
    assert_eq!(key.deletion_protection, "Disabled");
    k.set_deletion_protection(&SetDeletionProtectionRequest {
        protected_resource_arn: key.arn.clone(),
        enable_deletion_protection: Some(true),
        deletion_protection_description: Some("production".into()),
    })
    .expect("SetDeletionProtection by ARN");
    let meta = describe(k, &key.key_id);
    assert_eq!(meta.deletion_protection, "Enabled");
    assert_eq!(meta.deletion_protection_description, "production");
    assert_eq!(code(schedule(k, &key.key_id, Some(30))), "Rejected.StateModifiedFailed");
    let missing = k.set_deletion_protection(&SetDeletionProtectionRequest {
        protected_resource_arn: key.arn.clone(),
        ..Default::default()
    });
    assert_eq!(code(missing), "MissingParameter");
    k.set_deletion_protection(&SetDeletionProtectionRequest {
        protected_resource_arn: key.arn.clone(),
        enable_deletion_protection: Some(false),
        deletion_protection_description: None,
    })
    .expect("disable protection");
    schedule(k, &key.key_id, Some(30)).expect("schedule");
}

#[test]
fn scheduled_deletion_and_cancel() {
    let e = env();
    let k = &e.kms;
    let key = aes(k);
    let signer = ec(k);
    let c = ctx(&[]);
    let blob = encrypt(k, &key, b"x", &c).expect("encrypt").ciphertext_blob;
    assert_eq!(code(cancel(k, &key)), "Rejected.StateModifiedFailed", "an Enabled key");

    schedule(k, &key, Some(10)).expect("schedule");
    schedule(k, &signer, Some(10)).expect("schedule");
    let meta = describe(k, &key);
    assert_eq!(meta.key_state, Some(KeyState::PendingDeletion));
    assert_eq!(meta.delete_date, Some(format_time(e.now() + 10 * DAY_MS)));
    assert_eq!(code(encrypt(k, &key, b"x", &c)), "Rejected.PendingDeletion");
    assert_eq!(code(decrypt(k, &blob.0, &c)), "Rejected.PendingDeletion");
    assert_eq!(code(data_key(k, &key)), "Rejected.PendingDeletion");
    assert_eq!(code(sign(k, &signer, None)), "Rejected.PendingDeletion");
    assert_eq!(
        code(k.enable_key(&KeyIdRequest::new(key.clone()))),
        "Rejected.PendingDeletion"
    );
    assert_eq!(
        code(k.disable_key(&KeyIdRequest::new(key.clone()))),
        "Rejected.PendingDeletion"
    );

    cancel(k, &key).expect("cancel");
    let meta = describe(k, &key);
    assert_eq!(
        meta.key_state,
        Some(KeyState::Disabled),
        "a cancelled key comes back Disabled"
    );
    assert_eq!(meta.delete_date, None);
    assert_eq!(code(cancel(k, &key)), "Rejected.StateModifiedFailed", "a Disabled key");
    assert_eq!(code(decrypt(k, &blob.0, &c)), "Rejected.Disabled");
    k.enable_key(&KeyIdRequest::new(key.clone())).expect("enable");
    assert_eq!(decrypt(k, &blob.0, &c).expect("decrypt").plaintext.expose(), b"x");

    // A cancelled key is not purged when its old window would have ended.
    e.advance(11 * DAY);
    assert_eq!(state(k, &key), KeyState::Enabled);
    assert_eq!(
        code(k.describe_key(&KeyIdRequest::new(signer.clone()))),
        "Forbidden.KeyNotFound",
        "the other key was not cancelled"
    );
}

// ------------------------------------------------------------------ purge

#[test]
fn purge_after_the_pending_window() {
    let e = env();
    let k = &e.kms;
    let doomed = create(
        k,
        CreateKeyRequest {
            alias: Some("alias/doomed".into()),
            tags: tags(2, "t"),
            ..Default::default()
        },
    )
    .key_id;
    create_alias(k, "alias/doomed-2", &doomed).expect("alias");
    let survivor = create(
        k,
        CreateKeyRequest {
            alias: Some("alias/survivor".into()),
            ..Default::default()
        },
    )
    .key_id;
    let c = ctx(&[("k", "v")]);
    let blob = encrypt(k, &doomed, b"secret", &c).expect("encrypt").ciphertext_blob;
    let kept = encrypt(k, &survivor, b"kept", &c).expect("encrypt").ciphertext_blob;

    schedule(k, &doomed, Some(7)).expect("schedule");
    e.advance(7 * DAY - SECOND);
    assert_eq!(
        state(k, &doomed),
        KeyState::PendingDeletion,
        "one second before the window ends"
    );
    e.advance(2 * SECOND);

    assert_eq!(
        code(k.describe_key(&KeyIdRequest::new(doomed.clone()))),
        "Forbidden.KeyNotFound"
    );
    assert_eq!(code(decrypt(k, &blob.0, &c)), "Forbidden.KeyNotFound");
    assert_eq!(
        code(k.describe_key(&KeyIdRequest::new("alias/doomed"))),
        "Forbidden.AliasNotFound"
    );
    let aliases = k
        .list_aliases(&PageRequest {
            page_number: Some(1),
            page_size: Some(100),
        })
        .expect("ListAliases");
    let names: Vec<_> = aliases.aliases.alias.iter().map(|a| a.alias_name.as_str()).collect();
    assert_eq!(names, ["alias/survivor"], "the purged key's aliases are gone");
    let keys = k.list_keys(&PageRequest::default()).expect("ListKeys");
    assert_eq!(keys.total_count, 1);
    assert_eq!(keys.keys.key[0].key_id, survivor);
    assert_eq!(
        decrypt(k, &kept.0, &c)
            .expect("the other key is untouched")
            .plaintext
            .expose(),
        b"kept"
    );
    create_alias(k, "alias/doomed", &survivor).expect("the purged key's alias name is free again");

    // The purge is in the store, not only in this Kms.
    let again = e.reopen();
    assert_eq!(
        code(again.describe_key(&KeyIdRequest::new(doomed.clone()))),
        "Forbidden.KeyNotFound"
    );
    assert_eq!(code(decrypt(&again, &blob.0, &c)), "Forbidden.KeyNotFound");
    assert_eq!(describe(&again, "alias/doomed").key_id, survivor);
    let earlier = e.reopen_at(e.now() - 30 * DAY_MS);
    assert_eq!(
        code(earlier.describe_key(&KeyIdRequest::new(doomed))),
        "Forbidden.KeyNotFound",
        "a clock set back does not bring a purged key back"
    );
}

#[test]
fn purge_is_applied_when_a_store_is_opened() {
    let e = env();
    let start = e.now();
    let doomed = create(
        &e.kms,
        CreateKeyRequest {
            alias: Some("alias/doomed".into()),
            ..Default::default()
        },
    )
    .key_id;
    let survivor = aes(&e.kms);
    schedule(&e.kms, &doomed, Some(7)).expect("schedule");
    let Env { dir, clock, kms } = e;
    drop(kms);

    clock.advance(7 * DAY + SECOND);
    let later = open_at(dir.path(), Arc::clone(&clock));
    drop(later);
    // A store opened with a clock still at the start does no due work itself, so what it sees
    // is what the open above wrote.
    let before = open_at(dir.path(), Arc::new(ManualClock::new(start)));
    assert_eq!(
        code(before.describe_key(&KeyIdRequest::new(doomed))),
        "Forbidden.KeyNotFound"
    );
    assert_eq!(
        code(before.describe_key(&KeyIdRequest::new("alias/doomed"))),
        "Forbidden.AliasNotFound"
    );
    assert_eq!(describe(&before, &survivor).key_state, Some(KeyState::Enabled));
}

// ------------------------------------------------------------------ rotation

#[test]
fn automatic_rotation_of_a_symmetric_key() {
    let e = env();
    let k = &e.kms;
    let meta = create(
        k,
        CreateKeyRequest {
            enable_automatic_rotation: Some(true),
            rotation_interval: Some("7d".into()),
            ..Default::default()
        },
    );
    let key = meta.key_id.clone();
    let v1 = meta.primary_key_version.clone().expect("a primary version");
    assert_eq!(meta.next_rotation_date, Some(format_time(e.now() + 7 * DAY_MS)));
    let c = ctx(&[("app", "rot")]);
    let old = encrypt(k, &key, b"version one", &c).expect("encrypt");
    assert_eq!(old.key_version_id, v1);

    e.advance(7 * DAY - SECOND);
    assert_eq!(
        encrypt(k, &key, b"x", &c).expect("encrypt").key_version_id,
        v1,
        "not due yet"
    );
    e.advance(2 * SECOND);
    let new = encrypt(k, &key, b"version two", &c).expect("encrypt");
    assert_ne!(
        new.key_version_id, v1,
        "the first call after the interval sees a new version"
    );
    let meta = describe(k, &key);
    assert_eq!(meta.primary_key_version.as_deref(), Some(new.key_version_id.as_str()));
    assert_eq!(meta.last_rotation_date, Some(format_time(e.now())));
    assert_eq!(meta.next_rotation_date, Some(format_time(e.now() + 7 * DAY_MS)));
    assert_eq!(version_count(k, &key), 2);

    let back = decrypt(k, &old.ciphertext_blob.0, &c).expect("old ciphertext still decrypts");
    assert_eq!(back.plaintext.expose(), b"version one");
    assert_eq!(back.key_version_id, v1);
    let back = decrypt(k, &new.ciphertext_blob.0, &c).expect("new ciphertext decrypts");
    assert_eq!(back.plaintext.expose(), b"version two");

    // A Disabled key does not rotate, and its rotation is shown as suspended.
    k.disable_key(&KeyIdRequest::new(key.clone())).expect("disable");
    assert_eq!(describe(k, &key).automatic_rotation, "Suspended");
    e.advance(8 * DAY);
    assert_eq!(version_count(k, &key), 2);
}

#[test]
fn asymmetric_keys_rotate_only_on_request() {
    let e = env();
    let k = &e.kms;
    let auto = CreateKeyRequest {
        key_spec: Some(KeySpec::EcP256),
        enable_automatic_rotation: Some(true),
        ..Default::default()
    };
    assert_eq!(code(k.create_key(&auto)), "UnsupportedOperation");

    let signer = create(
        k,
        CreateKeyRequest {
            key_spec: Some(KeySpec::EcP256),
            alias: Some("alias/signer".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        signer.rotation_interval, None,
        "asymmetric keys show no rotation interval"
    );
    assert_eq!(
        code(rotation_policy(k, &signer.key_id, true, Some("30d"))),
        "UnsupportedOperation"
    );
    rotation_policy(k, &signer.key_id, false, None).expect("disabling rotation is always fine");

    let v1 = signer.primary_key_version.clone().expect("primary");
    let old_sig = sign(k, &signer.key_id, None).expect("sign");
    assert_eq!(old_sig.key_version_id, v1);

    let v2 = k
        .create_key_version(&KeyIdRequest::new(signer.key_id.clone()))
        .expect("CreateKeyVersion")
        .key_version
        .key_version_id;
    assert_ne!(v2, v1);
    assert_eq!(primary(k, &signer.key_id), v2, "the new version is the primary");
    assert_eq!(version_count(k, &signer.key_id), 2);

    let new_sig = sign(k, &signer.key_id, None).expect("sign");
    assert_eq!(new_sig.key_version_id, v2);
    assert!(verify(k, &signer.key_id, Some(&v1), &old_sig.value.0).expect("verify under v1"));
    assert!(verify(k, "alias/signer", Some(&v1), &old_sig.value.0).expect("verify by alias"));
    assert!(verify(k, &signer.key_id, None, &new_sig.value.0).expect("verify under the primary"));
    assert!(
        !verify(k, &signer.key_id, None, &old_sig.value.0).expect("verify"),
        "the old signature is not valid under the new version"
    );
    let resigned = sign(k, &signer.key_id, Some(&v1)).expect("the old version can still sign when named");
    assert_eq!(resigned.key_version_id, v1);
    let public = |v: &str| {
        k.get_public_key(&GetPublicKeyRequest {
            key_id: signer.key_id.clone(),
            key_version_id: Some(v.into()),
        })
        .expect("GetPublicKey")
        .public_key
    };
    assert_ne!(public(&v1), public(&v2), "each version has its own key pair");

    // CreateKeyVersion works on symmetric keys too, and old ciphertext still decrypts.
    let key = aes(k);
    let c = ctx(&[]);
    let old = encrypt(k, &key, b"old", &c).expect("encrypt");
    let v2 = k
        .create_key_version(&KeyIdRequest::new(key.clone()))
        .expect("CreateKeyVersion")
        .key_version
        .key_version_id;
    assert_eq!(encrypt(k, &key, b"new", &c).expect("encrypt").key_version_id, v2);
    assert_eq!(
        decrypt(k, &old.ciphertext_blob.0, &c)
            .expect("decrypt")
            .plaintext
            .expose(),
        b"old"
    );
}

#[test]
fn enabling_rotation_late_rotates_an_overdue_key_at_the_next_call() {
    let e = env();
    let k = &e.kms;
    let key = aes(k);
    let v1 = primary(k, &key);
    assert_eq!(describe(k, &key).automatic_rotation, "Disabled");
    assert_eq!(describe(k, &key).next_rotation_date, None);
    e.advance(10 * DAY);
    assert_eq!(primary(k, &key), v1, "no rotation while it is off");

    rotation_policy(k, &key, true, Some("7d")).expect("enable rotation");
    let meta = describe(k, &key);
    let v2 = meta.primary_key_version.clone().expect("primary");
    assert_ne!(v2, v1, "the key was 3 days overdue, so it rotated at the next call");
    assert_eq!(meta.last_rotation_date, Some(format_time(e.now())));
    assert_eq!(meta.next_rotation_date, Some(format_time(e.now() + 7 * DAY_MS)));
    assert_eq!(version_count(k, &key), 2);

    // Turned off again, it stays put however long the clock runs.
    rotation_policy(k, &key, false, None).expect("disable rotation");
    e.advance(30 * DAY);
    assert_eq!(primary(k, &key), v2);
    assert_eq!(version_count(k, &key), 2);
}

#[test]
fn rotation_is_applied_when_a_store_is_opened() {
    let e = env();
    let start = e.now();
    let meta = create(
        &e.kms,
        CreateKeyRequest {
            enable_automatic_rotation: Some(true),
            rotation_interval: Some("7d".into()),
            ..Default::default()
        },
    );
    let c = ctx(&[]);
    let old = encrypt(&e.kms, &meta.key_id, b"old", &c).expect("encrypt");
    let Env { dir, clock, kms } = e;
    drop(kms);

    clock.advance(8 * DAY);
    let later = open_at(dir.path(), Arc::clone(&clock));
    drop(later);
    let before = open_at(dir.path(), Arc::new(ManualClock::new(start)));
    let now = describe(&before, &meta.key_id);
    assert_ne!(
        now.primary_key_version, meta.primary_key_version,
        "rotated when the store was opened"
    );
    assert_eq!(now.last_rotation_date, Some(format_time(start + 8 * DAY_MS)));
    assert_eq!(version_count(&before, &meta.key_id), 2);
    assert_eq!(
        decrypt(&before, &old.ciphertext_blob.0, &c)
            .expect("decrypt")
            .plaintext
            .expose(),
        b"old"
    );
}

#[test]
fn a_second_kms_on_the_same_store_sees_changes() {
    let e = env();
    let other = e.reopen();
    let key = aes(&e.kms);
    let c = ctx(&[]);
    encrypt(&other, &key, b"x", &c).expect("the other Kms sees the new key");
    other.disable_key(&KeyIdRequest::new(key.clone())).expect("disable");
    assert_eq!(
        code(encrypt(&e.kms, &key, b"x", &c)),
        "Rejected.Disabled",
        "no stale cache"
    );
    other.enable_key(&KeyIdRequest::new(key.clone())).expect("enable");
    encrypt(&e.kms, &key, b"x", &c).expect("enabled again");
}

// ------------------------------------------------------------------ specs, usages, origins

#[test]
fn key_usage_defaults_and_mismatches() {
    let e = env();
    let k = &e.kms;
    let aes_meta = create(k, CreateKeyRequest::default());
    assert_eq!(aes_meta.key_spec, Some(KeySpec::Aes256));
    assert_eq!(aes_meta.key_usage, Some(KeyUsage::EncryptDecrypt));
    assert_eq!(aes_meta.origin, Some(Origin::AliyunKms));
    assert_eq!(aes_meta.protection_level, Some(ProtectionLevel::Software));
    let rsa = create(k, spec(KeySpec::Rsa2048));
    assert_eq!(rsa.key_usage, Some(KeyUsage::SignVerify));
    let sm2 = create(k, spec(KeySpec::EcSm2));
    assert_eq!(sm2.key_usage, Some(KeyUsage::SignVerify));
    let p256 = create(k, spec(KeySpec::EcP256));
    assert_eq!(p256.key_usage, Some(KeyUsage::SignVerify));

    let p256_encrypt = CreateKeyRequest {
        key_spec: Some(KeySpec::EcP256),
        key_usage: Some(KeyUsage::EncryptDecrypt),
        ..Default::default()
    };
    assert_eq!(code(k.create_key(&p256_encrypt)), "InvalidParameter");
    let aes_sign = CreateKeyRequest {
        key_usage: Some(KeyUsage::SignVerify),
        ..Default::default()
    };
    assert_eq!(code(k.create_key(&aes_sign)), "InvalidParameter");

    for signer in [&rsa.key_id, &sm2.key_id, &p256.key_id] {
        let refused = code(encrypt(k, signer, b"x", &ctx(&[])));
        assert!(
            refused.starts_with("Unsupported"),
            "Encrypt with a SIGN/VERIFY key: {refused}"
        );
        let refused = code(data_key(k, signer));
        assert!(
            refused.starts_with("Unsupported"),
            "GenerateDataKey with a SIGN/VERIFY key: {refused}"
        );
    }
    let refused = code(sign(k, &aes_meta.key_id, None));
    assert!(
        refused.starts_with("Unsupported"),
        "AsymmetricSign with an AES key: {refused}"
    );
    let wrong_alg = k.asymmetric_sign(&AsymmetricSignRequest {
        key_id: p256.key_id.clone(),
        key_version_id: None,
        algorithm: Some(SigningAlgorithm::RsaPssSha256),
        digest: DIGEST.as_slice().into(),
    });
    assert_eq!(code(wrong_alg), "Unsupported.Algorithm");
    let short_digest = k.asymmetric_sign(&AsymmetricSignRequest {
        key_id: p256.key_id.clone(),
        key_version_id: None,
        algorithm: Some(SigningAlgorithm::EcdsaSha256),
        digest: [1u8; 31].as_slice().into(),
    });
    assert_eq!(code(short_digest), "InvalidParameter");
}

#[test]
fn external_origin_and_hsm_protection() {
    let e = env();
    let k = &e.kms;
    let external = create(
        k,
        CreateKeyRequest {
            origin: Some(Origin::External),
            ..Default::default()
        },
    );
    assert_eq!(external.key_state, Some(KeyState::PendingImport));
    assert_eq!(external.origin, Some(Origin::External));
    assert_eq!(external.primary_key_version, None, "no material until it is imported");
    let id = external.key_id.clone();
    assert_eq!(code(encrypt(k, &id, b"x", &ctx(&[]))), "Rejected.PendingImport");
    assert_eq!(code(data_key(k, &id)), "Rejected.PendingImport");
    assert_eq!(
        code(k.enable_key(&KeyIdRequest::new(id.clone()))),
        "Rejected.PendingImport"
    );
    assert_eq!(
        code(k.create_key_version(&KeyIdRequest::new(id.clone()))),
        "Unsupported.Origin"
    );
    assert_eq!(code(rotation_policy(k, &id, true, Some("30d"))), "Unsupported.Origin");

    let external_rsa = CreateKeyRequest {
        key_spec: Some(KeySpec::Rsa2048),
        origin: Some(Origin::External),
        ..Default::default()
    };
    assert_eq!(code(k.create_key(&external_rsa)), "Unsupported.Origin");
    let hsm = CreateKeyRequest {
        protection_level: Some(ProtectionLevel::Hsm),
        ..Default::default()
    };
    assert_eq!(code(k.create_key(&hsm)), "Unsupported.ProtectionLevel");
    let instance = CreateKeyRequest {
        dkms_instance_id: Some("kst-other".into()),
        ..Default::default()
    };
    assert_eq!(code(k.create_key(&instance)), "InvalidParameter");
    assert_eq!(
        k.list_keys(&PageRequest::default()).expect("list").total_count,
        1,
        "only the EXTERNAL key"
    );
}

#[test]
fn external_keys_never_get_generated_material() {
    let e = env();
    let k = &e.kms;
    let auto = CreateKeyRequest {
        origin: Some(Origin::External),
        enable_automatic_rotation: Some(true),
        rotation_interval: Some("7d".into()),
        ..Default::default()
    };
    assert_eq!(
        code(k.create_key(&auto)),
        "Unsupported.Origin",
        "as UpdateRotationPolicy: imported keys do not rotate automatically"
    );

    // Cancelling the deletion of a key that never had material puts it back in PendingImport,
    // not Disabled, so EnableKey cannot make an Enabled key without material.
    let id = create(
        k,
        CreateKeyRequest {
            origin: Some(Origin::External),
            ..Default::default()
        },
    )
    .key_id;
    schedule(k, &id, Some(7)).expect("a PendingImport key can be scheduled for deletion");
    assert_eq!(state(k, &id), KeyState::PendingDeletion);
    cancel(k, &id).expect("cancel");
    assert_eq!(state(k, &id), KeyState::PendingImport);
    assert_eq!(
        code(k.enable_key(&KeyIdRequest::new(id.clone()))),
        "Rejected.PendingImport"
    );
    assert_eq!(code(encrypt(k, &id, b"x", &ctx(&[]))), "Rejected.PendingImport");
    e.advance(400 * DAY);
    assert_eq!(version_count(k, &id), 0, "no material appears by itself");
    assert_eq!(describe(k, &id).primary_key_version, None);
}

#[test]
fn re_encrypt_moves_ciphertext_between_keys() {
    let e = env();
    let k = &e.kms;
    let source = aes(k);
    let destination = create(k, spec(KeySpec::Sm4)).key_id;
    let (from, to) = (ctx(&[("side", "source")]), ctx(&[("side", "destination")]));
    let blob = encrypt(k, &source, b"moving", &from).expect("encrypt").ciphertext_blob;
    let re = |blob: &Bytes, key: &str, source_context: &EncryptionContext| {
        k.re_encrypt(&ReEncryptRequest {
            ciphertext_blob: blob.clone(),
            destination_key_id: key.into(),
            source_encryption_context: source_context.clone(),
            destination_encryption_context: to.clone(),
        })
    };
    let moved = re(&blob, &destination, &from).expect("ReEncrypt");
    assert_eq!(
        (moved.source_key_id.as_str(), moved.key_id.as_str()),
        (source.as_str(), destination.as_str())
    );
    assert_eq!(
        decrypt(k, &moved.ciphertext_blob.0, &to)
            .expect("decrypt")
            .plaintext
            .expose(),
        b"moving"
    );
    assert_eq!(code(decrypt(k, &moved.ciphertext_blob.0, &from)), "InvalidCiphertext");
    assert_eq!(
        code(re(&blob, &destination, &to)),
        "InvalidCiphertext",
        "wrong source context"
    );
    let signer = ec(k);
    assert!(code(re(&blob, &signer, &from)).starts_with("Unsupported"));
    k.disable_key(&KeyIdRequest::new(destination.clone())).expect("disable");
    assert_eq!(code(re(&blob, &destination, &from)), "Rejected.Disabled");
    k.disable_key(&KeyIdRequest::new(source.clone())).expect("disable");
    let other = aes(k);
    assert_eq!(
        code(re(&blob, &other, &from)),
        "Rejected.Disabled",
        "the source key is Disabled"
    );
}

// ------------------------------------------------------------------ ciphertext integrity

/// The layout of a v1 blob: (key id range, version id range, IV start, tag start).
fn blob_layout(blob: &[u8]) -> (std::ops::Range<usize>, std::ops::Range<usize>, usize, usize) {
    let k = usize::from(blob[2]);
    let v = usize::from(blob[3 + k]);
    (3..3 + k, 4 + k..4 + k + v, 4 + k + v, blob.len() - 16)
}

#[test]
fn tampered_ciphertext_is_refused() {
    let e = env();
    let k = &e.kms;
    let key = aes(k);
    let c = ctx(&[("tenant", "a"), ("purpose", "test")]);
    let good = encrypt(k, &key, b"a plaintext of some length", &c).expect("encrypt");
    let blob = good.ciphertext_blob.0.clone();
    let (key_range, version_range, iv_at, tag_at) = blob_layout(&blob);
    assert_eq!(&blob[key_range.clone()], key.as_bytes(), "the blob names its key");
    assert_eq!(&blob[version_range.clone()], good.key_version_id.as_bytes());
    assert_eq!(
        decrypt(k, &blob, &c)
            .expect("the untouched blob decrypts")
            .plaintext
            .expose(),
        b"a plaintext of some length"
    );

    let allowed = [
        "InvalidCiphertext",
        "InvalidParameter",
        "Forbidden.KeyNotFound",
        "Forbidden.KeyVersionNotFound",
    ];
    for at in 0..blob.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = blob.clone();
            bad[at] ^= mask;
            let got = code(decrypt(k, &bad, &c));
            assert!(allowed.contains(&got), "byte {at} ^ {mask:#x}: {got}");
            if at >= iv_at {
                assert_eq!(got, "InvalidCiphertext", "IV, body or tag byte {at} ^ {mask:#x}");
            } else if version_range.contains(&at) && mask == 0x01 {
                assert_eq!(got, "Forbidden.KeyVersionNotFound", "version id byte {at}");
            } else if key_range.contains(&at) && mask == 0x01 {
                assert_eq!(got, "Forbidden.KeyNotFound", "key id byte {at}");
            } else if at < 2 {
                assert!(
                    matches!(got, "InvalidParameter" | "InvalidCiphertext"),
                    "format byte {at}: {got}"
                );
            }
        }
    }
    assert!(tag_at > iv_at + 12, "the body lies between the IV and the tag");

    // Truncated and extended blobs.
    for len in [0, 1, 3, iv_at, tag_at, blob.len() - 1] {
        let got = code(decrypt(k, &blob[..len], &c));
        assert!(allowed.contains(&got), "truncated to {len}: {got}");
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert_eq!(code(decrypt(k, &longer, &c)), "InvalidCiphertext");

    // The EncryptionContext is bound.
    for other in [
        ctx(&[]),
        ctx(&[("tenant", "b"), ("purpose", "test")]),
        ctx(&[("tenant", "a")]),
    ] {
        assert_eq!(
            code(decrypt(k, &blob, &other)),
            "InvalidCiphertext",
            "context {other:?}"
        );
    }

    // The key id is bound: another existing AES key's id (same length) patched in.
    let other = aes(k);
    assert_eq!(other.len(), key.len());
    let mut moved = blob.clone();
    moved[key_range.clone()].copy_from_slice(other.as_bytes());
    assert_eq!(
        code(decrypt(k, &moved, &c)),
        "Forbidden.KeyVersionNotFound",
        "the other key has no such version"
    );
    let other_version = primary(k, &other);
    assert_eq!(other_version.len(), good.key_version_id.len());
    moved[version_range.clone()].copy_from_slice(other_version.as_bytes());
    assert_eq!(
        code(decrypt(k, &moved, &c)),
        "InvalidCiphertext",
        "the header is authenticated"
    );

    // Also across algorithms: an SM4 key's id and version in an AES blob.
    let sm4 = create(k, spec(KeySpec::Sm4));
    let mut moved = blob.clone();
    moved[key_range].copy_from_slice(sm4.key_id.as_bytes());
    moved[version_range].copy_from_slice(sm4.primary_key_version.expect("primary").as_bytes());
    assert_eq!(code(decrypt(k, &moved, &c)), "InvalidCiphertext");

    // None of the refused attempts harmed the original blob.
    assert_eq!(decrypt(k, &blob, &c).expect("still fine").key_id, key);
}

#[test]
fn plaintext_and_data_key_limits() {
    let e = env();
    let k = &e.kms;
    let key = aes(k);
    let c = ctx(&[]);
    assert_eq!(code(encrypt(k, &key, &[7u8; 6145], &c)), "InvalidParameter");
    let max = encrypt(k, &key, &[7u8; 6144], &c).expect("6144 bytes");
    assert_eq!(
        decrypt(k, &max.ciphertext_blob.0, &c)
            .expect("decrypt")
            .plaintext
            .expose(),
        [7u8; 6144]
    );
    let empty = encrypt(k, &key, b"", &c).expect("an empty plaintext");
    assert!(
        decrypt(k, &empty.ciphertext_blob.0, &c)
            .expect("decrypt")
            .plaintext
            .expose()
            .is_empty()
    );

    let gdk = |number_of_bytes: Option<u32>, key_spec: Option<DataKeySpec>| {
        k.generate_data_key(&GenerateDataKeyRequest {
            key_id: key.clone(),
            key_spec,
            number_of_bytes,
            encryption_context: c.clone(),
        })
    };
    assert_eq!(code(gdk(Some(0), None)), "InvalidParameter");
    assert_eq!(code(gdk(Some(1025), None)), "InvalidParameter");
    for (n, spec, len) in [
        (Some(1), None, 1),
        (Some(1024), None, 1024),
        (None, Some(DataKeySpec::Aes128), 16),
        (None, Some(DataKeySpec::Aes256), 32),
        (None, None, 32),
        (Some(24), Some(DataKeySpec::Aes128), 24),
    ] {
        let dk = gdk(n, spec).expect("GenerateDataKey");
        assert_eq!(
            dk.plaintext.expose().len(),
            len,
            "NumberOfBytes {n:?}, KeySpec {spec:?}"
        );
        let back = decrypt(k, &dk.ciphertext_blob.0, &c).expect("the data key decrypts");
        assert_eq!(back.plaintext.expose(), dk.plaintext.expose());
    }
    let without = k
        .generate_data_key_without_plaintext(&GenerateDataKeyRequest {
            key_id: key.clone(),
            key_spec: Some(DataKeySpec::Aes128),
            ..Default::default()
        })
        .expect("GenerateDataKeyWithoutPlaintext");
    assert_eq!(
        decrypt(k, &without.ciphertext_blob.0, &ctx(&[]))
            .expect("decrypt")
            .plaintext
            .expose()
            .len(),
        16
    );
}

// ------------------------------------------------------------------ listing

#[test]
fn list_keys_pages() {
    let e = env();
    let k = &e.kms;
    let mut made = BTreeSet::new();
    for i in 0..25 {
        made.insert(aes(k));
        if i % 3 == 0 {
            e.advance(SECOND);
        }
    }
    for bad in [0, 101] {
        let req = PageRequest {
            page_number: Some(1),
            page_size: Some(bad),
        };
        assert_eq!(code(k.list_keys(&req)), "InvalidParameter", "PageSize {bad}");
    }
    let req = PageRequest {
        page_number: Some(0),
        page_size: Some(10),
    };
    assert_eq!(code(k.list_keys(&req)), "InvalidParameter", "PageNumber 0");

    for size in [1, 7, 10, 25, 100] {
        let mut seen = Vec::new();
        for number in 1.. {
            let page = k
                .list_keys(&PageRequest {
                    page_number: Some(number),
                    page_size: Some(size),
                })
                .expect("ListKeys");
            assert_eq!(page.total_count, 25);
            assert_eq!((page.page_number, page.page_size), (number, size));
            if page.keys.key.is_empty() {
                break;
            }
            for entry in page.keys.key {
                assert_eq!(
                    entry.key_arn,
                    format!("acs:kms:local:{}:key/{}", k.account_id(), entry.key_id)
                );
                seen.push(entry.key_id);
            }
        }
        assert_eq!(seen.len(), 25, "page size {size}: each key exactly once");
        assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), made, "page size {size}");
    }
    let default = k.list_keys(&PageRequest::default()).expect("ListKeys");
    assert_eq!(
        (default.page_number, default.page_size, default.keys.key.len()),
        (1, 10, 10)
    );
}

// ------------------------------------------------------------------ secrets in Debug output

/// Every way a Debug string could leak `secret`: hex (both cases), base64, the bytes as text
/// and as a list of numbers.
#[track_caller]
fn assert_no_leak(debug: &str, secret: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let hex_lower = hex::encode(secret);
    let hex_upper = hex::encode_upper(secret);
    let numbers = format!("{secret:?}");
    let numbers = numbers.trim_start_matches('[').trim_end_matches(']');
    let mut forms = vec![b64.as_str(), hex_lower.as_str(), hex_upper.as_str(), numbers];
    let text = String::from_utf8_lossy(secret);
    forms.push(&text);
    for form in forms {
        assert!(
            !debug.contains(form),
            "Debug output leaks the secret as {form:?}: {debug}"
        );
    }
}

#[test]
fn debug_output_never_shows_plaintext() {
    let e = env();
    let k = &e.kms;
    let key = aes(k);
    let secret: &[u8] = b"Tessera-TOP-SECRET-\xde\xad\xbe\xef-plaintext";
    let c = ctx(&[]);
    let req = EncryptRequest {
        key_id: key.clone(),
        plaintext: secret.into(),
        encryption_context: c.clone(),
    };
    let debug = format!("{req:?} {req:#?}");
    assert!(debug.contains(&key), "the Debug output is otherwise useful");
    assert_no_leak(&debug, secret);

    let blob = k.encrypt(&req).expect("encrypt");
    let back = decrypt(k, &blob.ciphertext_blob.0, &c).expect("decrypt");
    assert_eq!(back.plaintext.expose(), secret);
    assert_no_leak(&format!("{back:?} {back:#?}"), secret);

    let dk = data_key(k, &key).expect("GenerateDataKey");
    let debug = format!("{dk:?} {dk:#?}");
    assert_no_leak(&debug, dk.plaintext.expose());
    let request = DecryptRequest {
        ciphertext_blob: dk.ciphertext_blob.clone(),
        encryption_context: c.clone(),
    };
    let opened = k.decrypt(&request).expect("decrypt the data key");
    assert_no_leak(&format!("{opened:?}"), dk.plaintext.expose());
}

#[test]
fn arns_of_another_account_or_region_do_not_resolve() {
    let env = env();
    let key = create(&env.kms, spec(KeySpec::Aes256));
    assert_eq!(describe(&env.kms, &key.arn).key_id, key.key_id);
    let foreign_account = key.arn.replace(env.kms.account_id(), "1234567890123456");
    let foreign_region = key.arn.replace(":local:", ":cn-hangzhou:");
    for arn in [foreign_account, foreign_region, format!("acs:kms:{}", key.key_id)] {
        assert_eq!(
            code(env.kms.describe_key(&KeyIdRequest::new(arn.clone()))),
            "Forbidden.KeyNotFound",
            "{arn}"
        );
    }
}

#[test]
fn a_key_pending_deletion_cannot_be_given_deletion_protection() {
    let env = env();
    let key = aes(&env.kms);
    schedule(&env.kms, &key, Some(7)).expect("schedule");
    let arn = describe(&env.kms, &key).arn;
    let protect = SetDeletionProtectionRequest {
        protected_resource_arn: arn,
        enable_deletion_protection: Some(true),
        deletion_protection_description: None,
    };
    assert_eq!(
        code(env.kms.set_deletion_protection(&protect)),
        "Rejected.PendingDeletion"
    );
    cancel(&env.kms, &key).expect("cancel");
    env.kms
        .set_deletion_protection(&protect)
        .expect("protect once cancelled");
}
