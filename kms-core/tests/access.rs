//! Authorization and audit, end to end through `Kms::as_caller`: the example policies of the
//! Alibaba Cloud KMS documents attached to RAM users, key policies, cross-account access, every
//! operation against exactly its own action, conditions that change with tags and the clock, and
//! the audit trail that every one of these calls must leave — without a byte of plaintext or key.
//!
//! Every call a test makes goes through [`Env::call`], which notes what the caller saw; each test
//! ends with [`Env::verify_audit`], which reads the trail back with LookupEvents (as a dedicated
//! auditor user) and checks that each call is there, in order, under the right principal, source
//! address, key, result and error code — and that nothing else is.

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kms_core::api::*;
use kms_core::blob::EncryptionContext;
use kms_core::clock::{Clock, ManualClock, format_time};
use kms_core::model::*;
use kms_core::policy::Principal;
use kms_core::{CallerContext, Client, DEFAULT_INSTANCE_ID, Kms, KmsError, KmsOptions, OPERATIONS};
use tempfile::TempDir;

// ------------------------------------------------------------------ the harness

type Res<T> = kms_core::Result<T>;

const NO_PERMISSION: &str = "Forbidden.NoPermission";
const DIGEST: [u8; 32] = [0x5a; 32];
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Another Alibaba Cloud account, for cross-account principals.
const OTHER_ACCOUNT: &str = "2222222222222222";

/// One call as its caller saw it: what the audit trail must say about it.
#[derive(Clone, Debug)]
struct Expected {
    principal: String,
    source_ip: Option<String>,
    action: &'static str,
    /// The key the record must name; `None` when the test does not check it.
    key_id: Option<String>,
    error_code: Option<&'static str>,
}

/// The calls a trail's events stand for: an event of `Count` identical calls is that many calls.
fn calls(events: Vec<AuditEvent>) -> Vec<AuditEvent> {
    events
        .into_iter()
        .flat_map(|e| {
            assert!(e.count >= 1, "{e:?} stands for no call");
            let n = usize::try_from(e.count).expect("a count");
            std::iter::repeat_n(e, n)
        })
        .collect()
}

/// A store in a temporary directory, a manual clock, a `Kms` over both, and the log of every
/// call made through it.
struct Env {
    dir: TempDir,
    clock: Arc<ManualClock>,
    kms: Kms,
    account: String,
    root: CallerContext,
    /// Reads the trail for [`Env::verify_audit`]; its own LookupEvents calls are not logged.
    auditor: CallerContext,
    log: RefCell<Vec<Expected>>,
    auditor_calls: Cell<u64>,
    policies: Cell<u32>,
}

fn env() -> Env {
    env_at(ManualClock::starting_now().now_ms())
}

fn env_at(now_ms: i64) -> Env {
    let dir = tempfile::tempdir().expect("make a temporary directory");
    let clock = Arc::new(ManualClock::new(now_ms));
    let kms = Kms::open_with(
        dir.path(),
        KmsOptions {
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            ..Default::default()
        },
    )
    .expect("open the store");
    let account = kms.account_id().to_owned();
    let root = kms.root_caller().clone();
    let auditor = CallerContext::new(Principal::user(&account, "auditor").expect("auditor principal"));
    let t = Env {
        dir,
        clock,
        kms,
        account,
        root,
        auditor,
        log: RefCell::new(Vec::new()),
        auditor_calls: Cell::new(0),
        policies: Cell::new(0),
    };
    t.grant(
        "auditor",
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"actiontrail:LookupEvents","Resource":"*"}]}"#,
    );
    t
}

impl Env {
    /// A RAM user of the store's account.
    fn user(&self, name: &str) -> CallerContext {
        CallerContext::new(Principal::user(&self.account, name).expect("user principal"))
    }

    /// `acs:kms:local:{account}:{resource}`.
    fn arn(&self, resource: &str) -> String {
        format!("acs:kms:local:{}:{resource}", self.account)
    }

    /// A seed policy with its placeholders filled in for this store.
    fn seed(&self, text: &str) -> String {
        text.replace("${region}", "local").replace("${account}", &self.account)
    }

    /// Runs one call as `who` and notes how it ended, for [`Env::verify_audit`].
    fn call<R>(
        &self,
        who: &CallerContext,
        action: &'static str,
        key: Option<&str>,
        f: impl FnOnce(Client<'_>) -> Res<R>,
    ) -> Res<R> {
        self.call_via(&self.kms, who, action, key, f)
    }

    /// [`Env::call`] through another `Kms` over the same store (another process, in effect).
    fn call_via<R>(
        &self,
        kms: &Kms,
        who: &CallerContext,
        action: &'static str,
        key: Option<&str>,
        f: impl FnOnce(Client<'_>) -> Res<R>,
    ) -> Res<R> {
        let out = f(kms.as_caller(who));
        self.log.borrow_mut().push(Expected {
            principal: who.principal().arn().to_owned(),
            source_ip: who.source_ip().map(|ip| ip.to_string()),
            action,
            key_id: key.map(str::to_owned),
            error_code: out.as_ref().err().map(KmsError::code),
        });
        out
    }

    /// A call that must succeed.
    #[track_caller]
    fn allow<R>(&self, who: &CallerContext, action: &'static str, f: impl FnOnce(Client<'_>) -> Res<R>) -> R {
        self.expect_ok(who, action, None, f)
    }

    /// A call on `key` that must succeed (and be audited under that key).
    #[track_caller]
    fn allow_on<R>(
        &self,
        who: &CallerContext,
        action: &'static str,
        key: &str,
        f: impl FnOnce(Client<'_>) -> Res<R>,
    ) -> R {
        self.expect_ok(who, action, Some(key), f)
    }

    /// A call that must be refused with Forbidden.NoPermission.
    #[track_caller]
    fn deny<R: Debug>(
        &self,
        who: &CallerContext,
        action: &'static str,
        f: impl FnOnce(Client<'_>) -> Res<R>,
    ) -> KmsError {
        self.expect_denied(who, action, None, f)
    }

    /// A call on `key` that must be refused with Forbidden.NoPermission (and be audited under
    /// that key).
    #[track_caller]
    fn deny_on<R: Debug>(
        &self,
        who: &CallerContext,
        action: &'static str,
        key: &str,
        f: impl FnOnce(Client<'_>) -> Res<R>,
    ) -> KmsError {
        self.expect_denied(who, action, Some(key), f)
    }

    #[track_caller]
    fn expect_ok<R>(
        &self,
        who: &CallerContext,
        action: &'static str,
        key: Option<&str>,
        f: impl FnOnce(Client<'_>) -> Res<R>,
    ) -> R {
        match self.call(who, action, key, f) {
            Ok(r) => r,
            Err(e) => panic!("{action} by {} should succeed, got {}: {e}", who.principal(), e.code()),
        }
    }

    #[track_caller]
    fn expect_denied<R: Debug>(
        &self,
        who: &CallerContext,
        action: &'static str,
        key: Option<&str>,
        f: impl FnOnce(Client<'_>) -> Res<R>,
    ) -> KmsError {
        match self.call(who, action, key, f) {
            Ok(r) => panic!("{action} by {} should be refused, got Ok({r:?})", who.principal()),
            Err(e) if e.code() == NO_PERMISSION => e,
            Err(e) => panic!(
                "{action} by {} should be refused with {NO_PERMISSION}, got {}: {e}",
                who.principal(),
                e.code()
            ),
        }
    }

    // -------------------------------------------------------------- setup as the account root

    /// Creates an identity policy and attaches it to a user of this account; returns its name.
    fn grant(&self, user: &str, document: &str) -> String {
        self.grant_in(None, user, document)
    }

    /// Creates an identity policy and attaches it to a user of `account` (this one by default).
    fn grant_in(&self, account: Option<&str>, user: &str, document: &str) -> String {
        let n = self.policies.get() + 1;
        self.policies.set(n);
        let name = format!("p{n}-{user}");
        self.create_policy(&name, document);
        self.allow(&self.root, "AttachPolicyToUser", |c| {
            c.attach_policy_to_user(&UserPolicyRequest {
                policy_name: name.clone(),
                policy_type: None,
                user_name: user.to_owned(),
                account_id: account.map(str::to_owned),
            })
        });
        name
    }

    fn create_policy(&self, name: &str, document: &str) {
        self.allow(&self.root, "CreatePolicy", |c| {
            c.create_policy(&CreatePolicyRequest {
                policy_name: name.to_owned(),
                policy_document: document.to_owned(),
                description: None,
            })
        });
    }

    fn update_policy(&self, name: &str, document: &str) {
        self.allow(&self.root, "UpdatePolicy", |c| {
            c.update_policy(&UpdatePolicyRequest {
                policy_name: name.to_owned(),
                policy_document: document.to_owned(),
            })
        });
    }

    fn key(&self, req: CreateKeyRequest) -> KeyMetadata {
        self.allow(&self.root, "CreateKey", |c| c.create_key(&req)).key_metadata
    }

    /// A new Aliyun_AES_256 key.
    fn aes(&self) -> String {
        self.key(CreateKeyRequest::default()).key_id
    }

    /// A new EC_P256 (SIGN/VERIFY) key.
    fn ec(&self) -> String {
        self.key(CreateKeyRequest {
            key_spec: Some(KeySpec::EcP256),
            ..Default::default()
        })
        .key_id
    }

    /// A new EC_SM2 ENCRYPT/DECRYPT key (fast, unlike RSA).
    fn sm2(&self) -> String {
        self.key(CreateKeyRequest {
            key_spec: Some(KeySpec::EcSm2),
            key_usage: Some(KeyUsage::EncryptDecrypt),
            ..Default::default()
        })
        .key_id
    }

    /// A new AES key carrying a key policy.
    fn aes_with_policy(&self, policy: &str) -> String {
        self.key(CreateKeyRequest {
            policy: Some(policy.to_owned()),
            ..Default::default()
        })
        .key_id
    }

    fn alias(&self, alias: &str, key: &str) {
        self.allow_on(&self.root, "CreateAlias", key, |c| {
            c.create_alias(&AliasRequest {
                alias_name: alias.to_owned(),
                key_id: key.to_owned(),
            })
        });
    }

    fn tag(&self, key: &str, tag_key: &str, value: &str) {
        self.allow_on(&self.root, "TagResource", key, |c| {
            c.tag_resource(&TagResourceRequest {
                key_id: key.to_owned(),
                tags: vec![Tag::new(tag_key, value)],
            })
        });
    }

    fn untag(&self, key: &str, tag_key: &str) {
        self.allow_on(&self.root, "UntagResource", key, |c| {
            c.untag_resource(&UntagResourceRequest {
                key_id: key.to_owned(),
                tag_keys: vec![tag_key.to_owned()],
            })
        });
    }

    fn set_key_policy(&self, key: &str, policy: &str) {
        self.allow_on(&self.root, "SetKeyPolicy", key, |c| {
            c.set_key_policy(&SetKeyPolicyRequest {
                key_id: key.to_owned(),
                policy: policy.to_owned(),
            })
        });
    }

    /// A blob of `plaintext` under `key`, made by the root.
    fn blob(&self, key: &str, plaintext: &[u8]) -> Vec<u8> {
        self.allow_on(&self.root, "Encrypt", key, encrypt(key, plaintext))
            .ciphertext_blob
            .0
    }

    fn describe(&self, key: &str) -> KeyMetadata {
        self.allow_on(&self.root, "DescribeKey", key, describe(key))
            .key_metadata
    }

    // -------------------------------------------------------------- reading the trail back

    /// Every event (record) matching `filter`, oldest first, as stored. The clock moves on a
    /// millisecond after each of the auditor's reads, so that no two of them are one record.
    fn records(&self, filter: &LookupEventsRequest) -> Vec<AuditEvent> {
        let mut events = Vec::new();
        for page in 1.. {
            let resp = self
                .kms
                .as_caller(&self.auditor)
                .lookup_events(&LookupEventsRequest {
                    page_number: Some(page),
                    page_size: Some(100),
                    ..filter.clone()
                })
                .expect("LookupEvents as the auditor");
            self.auditor_calls.set(self.auditor_calls.get() + 1);
            self.clock.advance(Duration::from_millis(1));
            let n = resp.events.event.len();
            events.extend(resp.events.event);
            if n == 0 || events.len() as u64 >= resp.total_count {
                break;
            }
        }
        events.sort_by_key(|e| e.event_id);
        events
    }

    /// Checks that the audit trail holds exactly the calls made, each under its principal, in
    /// order, with its source address, key, result and error code.
    #[track_caller]
    fn verify_audit(&self) {
        let log = self.log.borrow().clone();
        let mut principals: Vec<&str> = Vec::new();
        for e in &log {
            if !principals.contains(&e.principal.as_str()) {
                principals.push(&e.principal);
            }
        }
        let mut records = 0;
        for principal in principals {
            let want: Vec<&Expected> = log.iter().filter(|e| e.principal == principal).collect();
            let stored = self.records(&LookupEventsRequest {
                principal: Some(principal.to_owned()),
                ..Default::default()
            });
            records += stored.len() as u64;
            let got = calls(stored);
            let view = |action: &str, code: Option<&str>| format!("{action}:{}", code.unwrap_or("Success"));
            let got_view: Vec<String> = got.iter().map(|e| view(&e.action, e.error_code.as_deref())).collect();
            let want_view: Vec<String> = want.iter().map(|e| view(e.action, e.error_code)).collect();
            assert_eq!(got_view, want_view, "the audit trail of {principal}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.principal, principal, "{g:?}");
                let result = if w.error_code.is_some() { "Failure" } else { "Success" };
                assert_eq!(g.result, result, "result of {g:?}");
                assert_eq!(g.source_ip, w.source_ip, "source address of {g:?}");
                if let Some(key) = &w.key_id {
                    assert_eq!(g.key_id.as_ref(), Some(key), "key of {g:?}");
                }
                assert!(!g.resource.is_empty(), "{g:?} names no resource");
                assert!(!g.event_time.is_empty(), "{g:?} has no time");
            }
        }
        // Nothing was audited under anyone else (the auditor's own reads aside, one record each).
        let auditor_calls = self.auditor_calls.get();
        let total = self
            .kms
            .as_caller(&self.auditor)
            .lookup_events(&LookupEventsRequest {
                page_size: Some(1),
                ..Default::default()
            })
            .expect("count every event")
            .total_count;
        self.auditor_calls.set(auditor_calls + 1);
        self.clock.advance(Duration::from_millis(1));
        assert_eq!(
            total,
            records + auditor_calls,
            "events beyond the calls made (and the auditor's reads)"
        );
    }
}

// ------------------------------------------------------------------ requests

fn encrypt(key: &str, plaintext: &[u8]) -> impl FnOnce(Client<'_>) -> Res<EncryptResponse> {
    let req = EncryptRequest {
        key_id: key.to_owned(),
        plaintext: plaintext.into(),
        encryption_context: EncryptionContext::default(),
    };
    move |c| c.encrypt(&req)
}

fn decrypt(blob: &[u8]) -> impl FnOnce(Client<'_>) -> Res<DecryptResponse> {
    let req = DecryptRequest {
        ciphertext_blob: blob.into(),
        encryption_context: EncryptionContext::default(),
    };
    move |c| c.decrypt(&req)
}

fn data_key(key: &str) -> impl FnOnce(Client<'_>) -> Res<GenerateDataKeyResponse> {
    let req = GenerateDataKeyRequest {
        key_id: key.to_owned(),
        ..Default::default()
    };
    move |c| c.generate_data_key(&req)
}

fn data_key_without_plaintext(key: &str) -> impl FnOnce(Client<'_>) -> Res<EncryptResponse> {
    let req = GenerateDataKeyRequest {
        key_id: key.to_owned(),
        ..Default::default()
    };
    move |c| c.generate_data_key_without_plaintext(&req)
}

fn re_encrypt(blob: &[u8], destination: &str) -> impl FnOnce(Client<'_>) -> Res<ReEncryptResponse> {
    let req = ReEncryptRequest {
        ciphertext_blob: blob.into(),
        destination_key_id: destination.to_owned(),
        ..Default::default()
    };
    move |c| c.re_encrypt(&req)
}

fn describe(key: &str) -> impl FnOnce(Client<'_>) -> Res<KeyMetadataResponse> {
    let req = KeyIdRequest::new(key);
    move |c| c.describe_key(&req)
}

fn list_keys() -> impl FnOnce(Client<'_>) -> Res<ListKeysResponse> {
    |c| c.list_keys(&PageRequest::default())
}

fn list_aliases() -> impl FnOnce(Client<'_>) -> Res<ListAliasesResponse> {
    |c| c.list_aliases(&PageRequest::default())
}

fn sign(key: &str) -> impl FnOnce(Client<'_>) -> Res<AsymmetricSignResponse> {
    let req = AsymmetricSignRequest {
        key_id: key.to_owned(),
        key_version_id: None,
        algorithm: Some(SigningAlgorithm::EcdsaSha256),
        digest: DIGEST.as_slice().into(),
    };
    move |c| c.asymmetric_sign(&req)
}

fn verify(key: &str, signature: &[u8]) -> impl FnOnce(Client<'_>) -> Res<AsymmetricVerifyResponse> {
    let req = AsymmetricVerifyRequest {
        key_id: key.to_owned(),
        key_version_id: None,
        algorithm: Some(SigningAlgorithm::EcdsaSha256),
        digest: DIGEST.as_slice().into(),
        value: signature.into(),
    };
    move |c| c.asymmetric_verify(&req)
}

fn asym_encrypt(key: &str, plaintext: &[u8]) -> impl FnOnce(Client<'_>) -> Res<EncryptResponse> {
    let req = AsymmetricEncryptRequest {
        key_id: key.to_owned(),
        key_version_id: None,
        algorithm: Some(AsymmetricAlgorithm::Sm2Pke),
        plaintext: plaintext.into(),
    };
    move |c| c.asymmetric_encrypt(&req)
}

fn asym_decrypt(key: &str, blob: &[u8]) -> impl FnOnce(Client<'_>) -> Res<DecryptResponse> {
    let req = AsymmetricDecryptRequest {
        key_id: key.to_owned(),
        key_version_id: None,
        algorithm: Some(AsymmetricAlgorithm::Sm2Pke),
        ciphertext_blob: blob.into(),
    };
    move |c| c.asymmetric_decrypt(&req)
}

fn public_key(key: &str) -> impl FnOnce(Client<'_>) -> Res<GetPublicKeyResponse> {
    let req = GetPublicKeyRequest {
        key_id: key.to_owned(),
        key_version_id: None,
    };
    move |c| c.get_public_key(&req)
}

fn key_request(key: &str) -> KeyIdRequest {
    KeyIdRequest::new(key)
}

/// An identity policy allowing `actions` on every resource.
fn allow_policy(actions: &[&str]) -> String {
    serde_json::json!({
        "Version": "1",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": ["*"]}]
    })
    .to_string()
}

/// A key policy with one statement.
fn key_policy(effect: &str, principals: &[&str], actions: &[&str]) -> String {
    serde_json::json!({
        "Version": "1",
        "Statement": [{
            "Effect": effect,
            "Principal": {"RAM": principals},
            "Action": actions,
            "Resource": ["*"]
        }]
    })
    .to_string()
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

fn explicit(e: &KmsError) -> bool {
    matches!(e, KmsError::NoPermission { explicit: true, .. })
}

fn denied_resource(e: &KmsError) -> &str {
    match e {
        KmsError::NoPermission { resource, .. } => resource,
        other => panic!("not a denial: {other:?}"),
    }
}

// ------------------------------------------------------------------ the seeds' example policies

/// Seed 002 and 003: access to every KMS resource.
const FULL_ACCESS: &str = r#"{
  "Version": "1",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "kms:*"
      ],
      "Resource": [
        "*"
      ]
    }
  ]
}"#;

/// Seed 003: every KMS action, from two address ranges only.
const CIDR_ACCESS: &str = r#"{
  "Version": "1",
  "Statement": [{
    "Effect": "Allow",
    "Action": [
      "kms:*"
    ],
    "Resource": [
      "*"
    ],
    "Condition": {
      "IpAddress": {
        "acs:SourceIp": [
          "192.168.0.0/16",
          "172.16.215.218"
        ]
      }
    }
  }]
}"#;

/// Seed 003: key management.
const MANAGE_KEYS: &str = r#"{
  "Version": "1",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "kms:List*",
        "kms:Describe*",
        "kms:Create*",
        "kms:Enable*",
        "kms:Disable*",
        "kms:Get*",
        "kms:Set*",
        "kms:Update*",
        "kms:Delete*",
        "kms:Cancel*",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:TagResources",
        "kms:UntagResources",
        "kms:ImportKeyMaterial",
        "kms:ScheduleKeyDeletion"
      ],
      "Resource": [
        "acs:kms:${region}:${account}:key",
        "acs:kms:${region}:${account}:key/*",
        "acs:kms:${region}:${account}:alias",
        "acs:kms:${region}:${account}:alias/*"
      ]
    }
  ]
}"#;

/// Seed 003: read-only key inventory.
const QUERY_KEYS: &str = r#"{
  "Version": "1",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "kms:List*",
        "kms:Describe*"
      ],
      "Resource": [
        "acs:kms:${region}:${account}:key",
        "acs:kms:${region}:${account}:key/*"
      ]
    }
  ]
}"#;

/// Seed 002: query keys and aliases, and use keys.
const QUERY_AND_USE_KEYS: &str = r#"{
  "Version": "1",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "kms:List*", "kms:Describe*",
        "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"
      ],
      "Resource": [
        "*"
      ]
    }
  ]
}"#;

/// Seed 003: symmetric cryptographic operations, by key or alias.
const SYMMETRIC_CRYPTO: &str = r#"{
  "Version": "1",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey"
      ],
      "Resource": [
        "acs:kms:${region}:${account}:key/*",
        "acs:kms:${region}:${account}:alias/*"
      ]
    }
  ]
}"#;

/// Seed 003: cryptography with keys tagged Project=Apollo (any case).
const TAG_BASED: &str = r#"{
    "Version": "1",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:GenerateDataKey"
            ],
            "Resource": [
                "acs:kms:${region}:${account}:key/*"
            ],
            "Condition": {
                "StringEqualsIgnoreCase": {
                    "kms:tag/Project": [
                        "Apollo"
                    ]
                }
            }
        }
    ]
}"#;

/// Seed 002: the same, on every resource.
const TAG_BASED_ANY_RESOURCE: &str = r#"{
    "Version": "1",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"
            ],
            "Resource": [
                "*"
            ],
            "Condition": {
                "StringEqualsIgnoreCase": {
                    "kms:tag/Project": [
                        "Apollo"
                    ]
                }
            }
        }
    ]
}"#;

/// Seed 003: asymmetric encryption and decryption.
const ASYMMETRIC_CRYPTO: &str = r#"{
  "Version": "1",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "kms:AsymmetricEncrypt",
        "kms:AsymmetricDecrypt"
      ],
      "Resource": [
        "acs:kms:${region}:${account}:key/*",
        "acs:kms:${region}:${account}:alias/*"
      ]
    }
  ]
}"#;

/// Seed 003: asymmetric signing and verification.
const ASYMMETRIC_SIGN: &str = r#"{
  "Version": "1",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "kms:AsymmetricSign",
        "kms:AsymmetricVerify"
      ],
      "Resource": [
        "acs:kms:${region}:${account}:key/*",
        "acs:kms:${region}:${account}:alias/*"
      ]
    }
  ]
}"#;

/// Seed 003: retrieve one secret value, and Decrypt with the one key that protects it
/// (`${key}` is filled in by the test).
const SECRET_VALUE: &str = r#"{
    "Version": "1",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "kms:GetSecretValue",
            "Resource": "acs:kms:${region}:${account}:secret/example-secret"
        },
        {
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": "acs:kms:${region}:${account}:key/${key}"
        }
    ]
}"#;

/// Seed 003: the Deny that restricts KMS instance creation, verbatim.
const DENY_INSTANCE_CREATION: &str = r#"{
  "Version": "1",
  "Statement": [
    {
      "Effect": "Deny",
      "Action": [
        "bss:CreateInstance",
        "bss:ModifyInstance"
      ],
      "Resource": "*",
      "Condition": {
        "StringEquals": {
          "bssapi:ProductCode": [
            "kms"
          ]
        },
        "StringNotLike": {
          "Resource": [
            "acs:kms:ap-southeast-1:*:*",
            "acs:kms:ap-southeast-3:*:*"
          ]
        }
      }
    },
    {
      "Effect": "Deny",
      "Action": "kms:CreateInstance",
      "Resource": "*"
    }
  ]
}"#;

// The seeds' secrets policies (manage secrets, query secrets, and the GetSecretValue half of the
// secret-value policy) are not exercised: Tessera has no secrets yet. Only the Decrypt statement
// of the secret-value policy is, below.

// ------------------------------------------------------------------ 1. the example policies

#[test]
fn example_full_access_policy() {
    let t = env();
    t.grant("alice", FULL_ACCESS);
    let alice = t.user("alice");
    let nobody = t.user("nobody");

    let key = t.allow(&alice, "CreateKey", |c| c.create_key(&CreateKeyRequest::default()));
    let key = key.key_metadata.key_id;
    t.allow(&alice, "ListKeys", list_keys());
    let blob = t.allow_on(&alice, "Encrypt", &key, encrypt(&key, b"full access"));
    let back = t.allow_on(&alice, "Decrypt", &key, decrypt(&blob.ciphertext_blob.0));
    assert_eq!(back.plaintext.expose(), b"full access");
    t.allow_on(&alice, "DisableKey", &key, |c| c.disable_key(&key_request(&key)));
    t.allow(&alice, "GenerateRandom", |c| {
        c.generate_random(&GenerateRandomRequest::default())
    });
    t.allow(&alice, "ListKmsInstances", |c| {
        c.list_kms_instances(&PageRequest::default())
    });
    // kms:* is not ram:* or actiontrail:*.
    t.deny(&alice, "ListPolicies", |c| c.list_policies(&PageRequest::default()));
    t.deny(&alice, "LookupEvents", |c| {
        c.lookup_events(&LookupEventsRequest::default())
    });

    // Another user of the same account, without the policy.
    t.deny(&nobody, "CreateKey", |c| c.create_key(&CreateKeyRequest::default()));
    t.deny(&nobody, "ListKeys", list_keys());
    t.deny_on(&nobody, "DescribeKey", &key, describe(&key));
    t.deny_on(&nobody, "EnableKey", &key, |c| c.enable_key(&key_request(&key)));
    t.deny(&nobody, "GenerateRandom", |c| {
        c.generate_random(&GenerateRandomRequest::default())
    });
    t.verify_audit();
}

#[test]
fn example_cidr_restricted_policy() {
    let t = env();
    t.grant("alice", &t.seed(CIDR_ACCESS));
    let key = t.aes();
    let from = |addr: &str| t.user("alice").with_source_ip(ip(addr));

    for inside in ["192.168.0.1", "192.168.255.254", "172.16.215.218", "::ffff:192.168.7.7"] {
        let alice = from(inside);
        t.allow_on(&alice, "Encrypt", &key, encrypt(&key, b"from inside"));
        t.allow(&alice, "ListKeys", list_keys());
    }
    for outside in ["172.16.215.219", "192.169.0.1", "10.0.0.1", "2001:db8::1"] {
        let alice = from(outside);
        t.deny_on(&alice, "Encrypt", &key, encrypt(&key, b"from outside"));
        t.deny(&alice, "ListKeys", list_keys());
    }
    // No known address: the condition cannot hold.
    t.deny_on(&t.user("alice"), "Encrypt", &key, encrypt(&key, b"from nowhere"));
    // Another user, from inside the range, without the policy.
    let nobody = t.user("nobody").with_source_ip(ip("192.168.0.1"));
    t.deny_on(&nobody, "Encrypt", &key, encrypt(&key, b"not granted"));
    t.verify_audit();
}

#[test]
fn example_manage_keys_policy() {
    let t = env();
    t.grant("admin", &t.seed(MANAGE_KEYS));
    let admin = t.user("admin");
    let nobody = t.user("nobody");

    let meta = t.allow(&admin, "CreateKey", |c| c.create_key(&CreateKeyRequest::default()));
    let key = meta.key_metadata.key_id;
    let k = key.as_str();
    t.allow(&admin, "ListKeys", list_keys());
    t.allow_on(&admin, "DescribeKey", k, describe(k));
    t.allow_on(&admin, "UpdateKeyDescription", k, |c| {
        c.update_key_description(&UpdateKeyDescriptionRequest {
            key_id: key.clone(),
            description: "managed".into(),
        })
    });
    t.allow_on(&admin, "DisableKey", k, |c| c.disable_key(&key_request(k)));
    t.allow_on(&admin, "EnableKey", k, |c| c.enable_key(&key_request(k)));
    t.allow_on(&admin, "CreateAlias", k, |c| {
        c.create_alias(&AliasRequest {
            alias_name: "alias/managed".into(),
            key_id: key.clone(),
        })
    });
    t.allow(&admin, "ListAliases", list_aliases());
    t.allow_on(&admin, "DescribeKey", k, describe("alias/managed"));
    t.allow_on(&admin, "TagResource", k, |c| {
        c.tag_resource(&TagResourceRequest {
            key_id: key.clone(),
            tags: vec![Tag::new("Owner", "ops")],
        })
    });
    t.allow_on(&admin, "ListResourceTags", k, |c| c.list_resource_tags(&key_request(k)));
    t.allow_on(&admin, "UntagResource", k, |c| {
        c.untag_resource(&UntagResourceRequest {
            key_id: key.clone(),
            tag_keys: vec!["Owner".into()],
        })
    });
    t.allow_on(&admin, "GetKeyPolicy", k, |c| c.get_key_policy(&key_request(k)));
    t.allow_on(&admin, "CreateKeyVersion", k, |c| c.create_key_version(&key_request(k)));
    t.allow_on(&admin, "ListKeyVersions", k, |c| {
        c.list_key_versions(&KeyPageRequest {
            key_id: key.clone(),
            ..Default::default()
        })
    });
    t.allow_on(&admin, "UpdateRotationPolicy", k, |c| {
        c.update_rotation_policy(&UpdateRotationPolicyRequest {
            key_id: key.clone(),
            enable_automatic_rotation: Some(true),
            rotation_interval: Some("90d".into()),
        })
    });
    t.allow_on(&admin, "SetDeletionProtection", k, |c| {
        c.set_deletion_protection(&SetDeletionProtectionRequest {
            protected_resource_arn: t.arn(&format!("key/{key}")),
            enable_deletion_protection: Some(false),
            deletion_protection_description: None,
        })
    });
    t.allow_on(&admin, "ScheduleKeyDeletion", k, |c| {
        c.schedule_key_deletion(&ScheduleKeyDeletionRequest {
            key_id: key.clone(),
            pending_window_in_days: Some(7),
        })
    });
    t.allow_on(&admin, "CancelKeyDeletion", k, |c| {
        c.cancel_key_deletion(&key_request(k))
    });
    t.allow_on(&admin, "DeleteAlias", k, |c| {
        c.delete_alias(&DeleteAliasRequest {
            alias_name: "alias/managed".into(),
        })
    });
    let ec = t.ec();
    t.allow_on(&admin, "GetPublicKey", &ec, public_key(&ec));
    t.allow_on(&admin, "SetKeyPolicy", &ec, |c| {
        c.set_key_policy(&SetKeyPolicyRequest {
            key_id: ec.clone(),
            policy: String::new(),
        })
    });

    // Not key management: cryptography, instances, RAM, the trail, randomness.
    let usable = t.aes();
    t.deny_on(&admin, "Encrypt", &usable, encrypt(&usable, b"no crypto"));
    t.deny_on(&admin, "GenerateDataKey", &usable, data_key(&usable));
    t.deny_on(&admin, "AsymmetricSign", &ec, sign(&ec));
    // kms:List* and kms:Create* name these actions, but not their resources.
    t.deny(&admin, "ListKmsInstances", |c| {
        c.list_kms_instances(&PageRequest::default())
    });
    t.deny(&admin, "CreateKmsInstance", |c| {
        c.create_kms_instance(&CreateKmsInstanceRequest {
            product_version: Some(ProductVersion::Software),
            ..Default::default()
        })
    });
    t.deny(&admin, "GetKmsInstance", |c| {
        c.get_kms_instance(&KmsInstanceIdRequest {
            kms_instance_id: DEFAULT_INSTANCE_ID.into(),
        })
    });
    t.deny(&admin, "CreatePolicy", |c| {
        c.create_policy(&CreatePolicyRequest {
            policy_name: "escalate".into(),
            policy_document: FULL_ACCESS.into(),
            description: None,
        })
    });
    t.deny(&admin, "GenerateRandom", |c| {
        c.generate_random(&GenerateRandomRequest::default())
    });
    t.deny(&admin, "LookupEvents", |c| {
        c.lookup_events(&LookupEventsRequest::default())
    });

    // The same document written for another account grants nothing here.
    t.grant(
        "mallory",
        &MANAGE_KEYS
            .replace("${region}", "local")
            .replace("${account}", "9999999999999999"),
    );
    let mallory = t.user("mallory");
    t.deny_on(&mallory, "DescribeKey", k, describe(k));
    t.deny(&mallory, "CreateKey", |c| c.create_key(&CreateKeyRequest::default()));

    t.deny(&nobody, "CreateKey", |c| c.create_key(&CreateKeyRequest::default()));
    t.deny(&nobody, "ListAliases", list_aliases());
    t.deny_on(&nobody, "DisableKey", k, |c| c.disable_key(&key_request(k)));
    t.deny_on(&nobody, "ScheduleKeyDeletion", k, |c| {
        c.schedule_key_deletion(&ScheduleKeyDeletionRequest {
            key_id: key.clone(),
            pending_window_in_days: Some(7),
        })
    });
    t.verify_audit();
}

#[test]
fn example_read_only_inventory_policy() {
    let t = env();
    t.grant("reader", &t.seed(QUERY_KEYS));
    let reader = t.user("reader");
    let nobody = t.user("nobody");
    let meta = t.key(CreateKeyRequest::default());
    let key = meta.key_id.clone();
    let k = key.as_str();
    let version = meta.primary_key_version.expect("a primary version");
    t.alias("alias/inventory", k);

    t.allow(&reader, "ListKeys", list_keys());
    t.allow_on(&reader, "DescribeKey", k, describe(k));
    t.allow_on(&reader, "DescribeKey", k, describe(&t.arn(&format!("key/{key}"))));
    t.allow_on(&reader, "ListKeyVersions", k, |c| {
        c.list_key_versions(&KeyPageRequest {
            key_id: key.clone(),
            ..Default::default()
        })
    });
    t.allow_on(&reader, "DescribeKeyVersion", k, |c| {
        c.describe_key_version(&DescribeKeyVersionRequest {
            key_id: key.clone(),
            key_version_id: version.clone(),
        })
    });
    t.allow_on(&reader, "ListResourceTags", k, |c| {
        c.list_resource_tags(&key_request(k))
    });
    t.allow_on(&reader, "ListAliasesByKeyId", k, |c| {
        c.list_aliases_by_key_id(&KeyPageRequest {
            key_id: key.clone(),
            ..Default::default()
        })
    });

    // Aliases are not in the policy's resources: neither their container nor one alias.
    t.deny(&reader, "ListAliases", list_aliases());
    t.deny_on(&reader, "DescribeKey", k, describe("alias/inventory"));
    // Nothing beyond reading.
    t.deny_on(&reader, "Encrypt", k, encrypt(k, b"read only"));
    t.deny_on(&reader, "DisableKey", k, |c| c.disable_key(&key_request(k)));
    t.deny_on(&reader, "GetKeyPolicy", k, |c| c.get_key_policy(&key_request(k)));
    t.deny(&reader, "CreateKey", |c| c.create_key(&CreateKeyRequest::default()));
    t.deny(&reader, "ListKmsInstances", |c| {
        c.list_kms_instances(&PageRequest::default())
    });

    t.deny(&nobody, "ListKeys", list_keys());
    t.deny_on(&nobody, "DescribeKey", k, describe(k));
    t.verify_audit();
}

#[test]
fn example_query_and_use_keys_policy() {
    let t = env();
    t.grant("app", QUERY_AND_USE_KEYS);
    let app = t.user("app");
    let nobody = t.user("nobody");
    let key = t.aes();
    let k = key.as_str();
    t.alias("alias/app", k);

    t.allow(&app, "ListKeys", list_keys());
    t.allow(&app, "ListAliases", list_aliases());
    t.allow_on(&app, "DescribeKey", k, describe("alias/app"));
    t.allow(&app, "ListKmsInstances", |c| {
        c.list_kms_instances(&PageRequest::default())
    });
    let blob = t.allow_on(&app, "Encrypt", k, encrypt("alias/app", b"query and use"));
    let back = t.allow_on(&app, "Decrypt", k, decrypt(&blob.ciphertext_blob.0));
    assert_eq!(back.plaintext.expose(), b"query and use");
    t.allow_on(&app, "GenerateDataKey", k, data_key(k));

    // kms:GenerateDataKey is no prefix of kms:GenerateDataKeyWithoutPlaintext.
    t.deny_on(
        &app,
        "GenerateDataKeyWithoutPlaintext",
        k,
        data_key_without_plaintext(k),
    );
    t.deny_on(&app, "ReEncrypt", k, re_encrypt(&blob.ciphertext_blob.0, k));
    t.deny(&app, "CreateKey", |c| c.create_key(&CreateKeyRequest::default()));
    t.deny_on(&app, "DisableKey", k, |c| c.disable_key(&key_request(k)));
    // kms:List* is not ram:ListPolicies.
    t.deny(&app, "ListPolicies", |c| c.list_policies(&PageRequest::default()));

    t.deny_on(&nobody, "Encrypt", k, encrypt(k, b"not granted"));
    t.deny(&nobody, "ListKeys", list_keys());
    t.verify_audit();
}

#[test]
fn example_symmetric_crypto_policy() {
    let t = env();
    t.grant("app", &t.seed(SYMMETRIC_CRYPTO));
    let app = t.user("app");
    let nobody = t.user("nobody");
    let key = t.aes();
    let k = key.as_str();
    t.alias("alias/envelope", k);

    for named in [
        k,
        "alias/envelope",
        &t.arn(&format!("key/{key}")),
        &t.arn("alias/envelope"),
    ] {
        let blob = t.allow_on(&app, "Encrypt", k, encrypt(named, b"envelope"));
        let back = t.allow_on(&app, "Decrypt", k, decrypt(&blob.ciphertext_blob.0));
        assert_eq!(back.plaintext.expose(), b"envelope");
        let dk = t.allow_on(&app, "GenerateDataKey", k, data_key(named));
        assert_eq!(dk.plaintext.expose().len(), 32);
    }
    let blob = t.blob(k, b"by the root");
    let back = t.allow_on(&app, "Decrypt", k, decrypt(&blob));
    assert_eq!(back.plaintext.expose(), b"by the root");

    t.deny_on(
        &app,
        "GenerateDataKeyWithoutPlaintext",
        k,
        data_key_without_plaintext(k),
    );
    t.deny_on(&app, "ReEncrypt", k, re_encrypt(&blob, k));
    t.deny_on(&app, "DescribeKey", k, describe(k));
    t.deny(&app, "ListKeys", list_keys());

    t.deny_on(&nobody, "Encrypt", k, encrypt("alias/envelope", b"not granted"));
    t.deny_on(&nobody, "Decrypt", k, decrypt(&blob));
    t.deny_on(&nobody, "GenerateDataKey", k, data_key(k));
    t.verify_audit();
}

#[test]
fn example_tag_based_policies() {
    for (variant, policy) in [("key-resources", TAG_BASED), ("any-resource", TAG_BASED_ANY_RESOURCE)] {
        let t = env();
        t.grant("tagged", &t.seed(policy));
        let user = t.user("tagged");
        let nobody = t.user("nobody");
        let apollo = t.aes();
        t.tag(&apollo, "Project", "Apollo");
        let lower = t.aes();
        t.tag(&lower, "Project", "apollo");
        let key_case = t.aes();
        t.tag(&key_case, "project", "APOLLO");
        let zeus = t.aes();
        t.tag(&zeus, "Project", "Zeus");
        let untagged = t.aes();
        let other_tag = t.aes();
        t.tag(&other_tag, "Team", "Apollo");

        for key in [&apollo, &lower, &key_case] {
            let blob = t.allow_on(&user, "Encrypt", key, encrypt(key, variant.as_bytes()));
            let back = t.allow_on(&user, "Decrypt", key, decrypt(&blob.ciphertext_blob.0));
            assert_eq!(back.plaintext.expose(), variant.as_bytes());
            t.allow_on(&user, "GenerateDataKey", key, data_key(key));
        }
        for key in [&zeus, &untagged, &other_tag] {
            t.deny_on(&user, "Encrypt", key, encrypt(key, variant.as_bytes()));
            let blob = t.blob(key, variant.as_bytes());
            t.deny_on(&user, "Decrypt", key, decrypt(&blob));
            t.deny_on(&user, "GenerateDataKey", key, data_key(key));
        }
        // Only the three actions, even on an Apollo key.
        t.deny_on(&user, "DescribeKey", &apollo, describe(&apollo));
        t.deny_on(
            &user,
            "GenerateDataKeyWithoutPlaintext",
            &apollo,
            data_key_without_plaintext(&apollo),
        );
        t.deny(&user, "ListKeys", list_keys());

        t.deny_on(&nobody, "Encrypt", &apollo, encrypt(&apollo, b"not granted"));
        t.verify_audit();
    }
}

#[test]
fn example_asymmetric_encrypt_policy() {
    let t = env();
    t.grant("app", &t.seed(ASYMMETRIC_CRYPTO));
    let app = t.user("app");
    let nobody = t.user("nobody");
    let key = t.sm2();
    let k = key.as_str();
    t.alias("alias/sm2", k);

    for named in [k, "alias/sm2"] {
        let blob = t.allow_on(&app, "AsymmetricEncrypt", k, asym_encrypt(named, b"asymmetric"));
        let back = t.allow_on(
            &app,
            "AsymmetricDecrypt",
            k,
            asym_decrypt(named, &blob.ciphertext_blob.0),
        );
        assert_eq!(back.plaintext.expose(), b"asymmetric");
    }
    let blob = t.allow_on(&t.root, "AsymmetricEncrypt", k, asym_encrypt(k, b"by the root"));
    t.deny_on(&app, "GetPublicKey", k, public_key(k));
    t.deny_on(&app, "DescribeKey", k, describe(k));

    t.deny_on(&nobody, "AsymmetricEncrypt", k, asym_encrypt(k, b"not granted"));
    t.deny_on(
        &nobody,
        "AsymmetricDecrypt",
        k,
        asym_decrypt("alias/sm2", &blob.ciphertext_blob.0),
    );
    t.verify_audit();
}

#[test]
fn example_asymmetric_sign_policy() {
    let t = env();
    t.grant("signer", &t.seed(ASYMMETRIC_SIGN));
    let signer = t.user("signer");
    let nobody = t.user("nobody");
    let key = t.ec();
    let k = key.as_str();
    t.alias("alias/signing", k);

    for named in [k, "alias/signing"] {
        let signature = t.allow_on(&signer, "AsymmetricSign", k, sign(named)).value.0;
        let ok = t.allow_on(&signer, "AsymmetricVerify", k, verify(named, &signature));
        assert!(ok.value, "the signature verifies");
    }
    let signature = t.allow_on(&t.root, "AsymmetricSign", k, sign(k)).value.0;
    t.deny_on(&signer, "GetPublicKey", k, public_key(k));
    t.deny_on(&signer, "CreateKeyVersion", k, |c| {
        c.create_key_version(&key_request(k))
    });

    t.deny_on(&nobody, "AsymmetricSign", k, sign("alias/signing"));
    t.deny_on(&nobody, "AsymmetricVerify", k, verify(k, &signature));
    t.verify_audit();
}

#[test]
fn example_secret_value_policy_decrypts_with_its_one_key() {
    // Secrets do not exist yet: only the policy's Decrypt statement can be exercised; the
    // GetSecretValue statement must still parse.
    let t = env();
    let protecting = t.aes();
    let other = t.aes();
    t.grant("reader", &t.seed(SECRET_VALUE).replace("${key}", &protecting));
    let reader = t.user("reader");
    let nobody = t.user("nobody");

    let blob = t.blob(&protecting, b"secret value");
    let back = t.allow_on(&reader, "Decrypt", &protecting, decrypt(&blob));
    assert_eq!(back.plaintext.expose(), b"secret value");
    let other_blob = t.blob(&other, b"someone else's");
    t.deny_on(&reader, "Decrypt", &other, decrypt(&other_blob));
    t.deny_on(&reader, "Encrypt", &protecting, encrypt(&protecting, b"decrypt only"));

    t.deny_on(&nobody, "Decrypt", &protecting, decrypt(&blob));
    t.verify_audit();
}

#[test]
fn example_deny_policy_blocks_what_it_names() {
    let t = env();
    let create_instance = |c: Client<'_>| {
        c.create_kms_instance(&CreateKmsInstanceRequest {
            product_version: Some(ProductVersion::Software),
            ..Default::default()
        })
    };
    // The seed's Deny, verbatim, beside full access: it parses (its condition keys are unknown
    // here, its bss actions never asked) and blocks nothing Tessera asks for.
    t.grant("builder", FULL_ACCESS);
    t.grant("builder", DENY_INSTANCE_CREATION);
    let builder = t.user("builder");
    let key = t.aes();
    t.allow_on(&builder, "Encrypt", &key, encrypt(&key, b"still allowed"));
    t.allow(&builder, "ListKmsInstances", |c| {
        c.list_kms_instances(&PageRequest::default())
    });

    // The same Deny naming Tessera's own action: it beats the full-access Allow.
    let tessera_deny = DENY_INSTANCE_CREATION.replace("\"kms:CreateInstance\"", "\"kms:CreateKmsInstance\"");
    t.grant("restricted", FULL_ACCESS);
    t.grant("restricted", &tessera_deny);
    let restricted = t.user("restricted");
    let refused = t.deny(&restricted, "CreateKmsInstance", create_instance);
    assert!(explicit(&refused), "an explicit Deny: {refused:?}");
    t.allow_on(&restricted, "Encrypt", &key, encrypt(&key, b"still allowed"));
    t.allow(&restricted, "ListKmsInstances", |c| {
        c.list_kms_instances(&PageRequest::default())
    });
    t.allow(&restricted, "CreateKey", |c| c.create_key(&CreateKeyRequest::default()));

    // Full access alone may create instances; no policy at all may not.
    t.grant("builder2", FULL_ACCESS);
    t.allow(&t.user("builder2"), "CreateKmsInstance", create_instance);
    let nobody = t.deny(&t.user("nobody"), "CreateKmsInstance", create_instance);
    assert!(!explicit(&nobody), "an implicit denial: {nobody:?}");
    t.verify_audit();
}

#[test]
fn key_policy_example_allows_the_user_it_names() {
    let t = env();
    let bob_arn = format!("acs:ram::{}:user/bob", t.account);
    let key = t.aes_with_policy(&key_policy("Allow", &[&bob_arn], &["kms:Encrypt", "kms:Decrypt"]));
    let k = key.as_str();
    let plain = t.aes();
    let bob = t.user("bob");
    let carol = t.user("carol");

    // Bob has no identity policy at all.
    let blob = t.allow_on(&bob, "Encrypt", k, encrypt(k, b"for bob"));
    let back = t.allow_on(&bob, "Decrypt", k, decrypt(&blob.ciphertext_blob.0));
    assert_eq!(back.plaintext.expose(), b"for bob");
    t.deny_on(&bob, "GenerateDataKey", k, data_key(k));
    t.deny_on(&bob, "DescribeKey", k, describe(k));
    t.deny_on(&bob, "Encrypt", &plain, encrypt(&plain, b"no key policy"));

    t.deny_on(&carol, "Encrypt", k, encrypt(k, b"for carol"));
    t.deny_on(&carol, "Decrypt", k, decrypt(&blob.ciphertext_blob.0));
    // Bob of another account is not the bob the key policy names.
    let foreign_bob = CallerContext::new(Principal::user(OTHER_ACCOUNT, "bob").expect("principal"));
    t.deny_on(&foreign_bob, "Encrypt", k, encrypt(k, b"wrong account"));

    // The root is still allowed (the policy denies it nothing), and sees the policy.
    t.allow_on(&t.root, "Encrypt", k, encrypt(k, b"root"));
    let shown = t.allow_on(&t.root, "GetKeyPolicy", k, |c| c.get_key_policy(&key_request(k)));
    assert!(shown.policy.contains(&bob_arn), "{}", shown.policy);
    t.verify_audit();
}

#[test]
fn cross_account_needs_key_policy_and_identity_policy() {
    let t = env();
    let dave_arn = format!("acs:ram::{OTHER_ACCOUNT}:user/dave");
    let shared = t.aes_with_policy(&key_policy("Allow", &[&dave_arn], &["kms:Encrypt", "kms:Decrypt"]));
    let unshared = t.aes();
    let dave = CallerContext::new(Principal::user(OTHER_ACCOUNT, "dave").expect("principal"));
    let erin = CallerContext::new(Principal::user(OTHER_ACCOUNT, "erin").expect("principal"));
    let other_root = CallerContext::new(Principal::root(OTHER_ACCOUNT).expect("principal"));
    let local_dave = t.user("dave");

    // The key policy alone is not enough.
    t.deny_on(&dave, "Encrypt", &shared, encrypt(&shared, b"key policy only"));

    let identity = format!(
        r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt"],"Resource":["acs:kms:*:{}:key/*"]}}]}}"#,
        t.account
    );
    t.grant_in(Some(OTHER_ACCOUNT), "dave", &identity);
    t.grant_in(Some(OTHER_ACCOUNT), "erin", &identity);
    let listed = t.allow(&t.root, "ListPoliciesForUser", |c| {
        c.list_policies_for_user(&UserRequest {
            user_name: "dave".into(),
            account_id: Some(OTHER_ACCOUNT.into()),
        })
    });
    assert_eq!(listed.policies.policy.len(), 1);

    // Both: allowed.
    let blob = t.allow_on(&dave, "Encrypt", &shared, encrypt(&shared, b"both"));
    let back = t.allow_on(&dave, "Decrypt", &shared, decrypt(&blob.ciphertext_blob.0));
    assert_eq!(back.plaintext.expose(), b"both");
    // The identity policy alone is not enough.
    t.deny_on(&dave, "Encrypt", &unshared, encrypt(&unshared, b"identity only"));
    t.deny_on(&erin, "Encrypt", &shared, encrypt(&shared, b"identity only"));
    // Neither an action outside both, nor account-level operations.
    t.deny_on(&dave, "DescribeKey", &shared, describe(&shared));
    t.deny(&dave, "ListKeys", list_keys());
    // The other account's root holds its account's permissions but is not named by the key.
    t.deny_on(&other_root, "Encrypt", &shared, encrypt(&shared, b"other root"));
    // Nor is a user of this account that happens to share the name.
    t.deny_on(&local_dave, "Encrypt", &shared, encrypt(&shared, b"local dave"));

    // The key policy withdrawn: the identity policy alone is refused again.
    t.set_key_policy(&shared, "");
    t.deny_on(&dave, "Encrypt", &shared, encrypt(&shared, b"policy withdrawn"));
    t.verify_audit();
}

// ------------------------------------------------------------------ 2. every operation

/// One row of the operations table: the key the call names (for the audit check) and the call.
struct Case {
    key: Option<String>,
    call: Op,
}

/// A call, made as whoever the client acts for.
type Op = Box<dyn Fn(Client<'_>) -> Res<()>>;

fn keyed(key: String, call: impl Fn(Client<'_>) -> Res<()> + 'static) -> Option<Case> {
    Some(Case {
        key: Some(key),
        call: Box::new(call),
    })
}

fn unkeyed(call: impl Fn(Client<'_>) -> Res<()> + 'static) -> Option<Case> {
    Some(Case {
        key: None,
        call: Box::new(call),
    })
}

/// The actions an operation needs: its own, except ReEncrypt's two.
fn needed(api: &str, action: &'static str) -> Vec<&'static str> {
    if api == "ReEncrypt" {
        vec!["kms:ReEncryptFrom", "kms:ReEncryptTo"]
    } else {
        vec![action]
    }
}

/// A valid request for `api`, with whatever it acts on made by the root first; `None` for an
/// operation this table does not know.
fn operation_case(t: &Env, api: &str) -> Option<Case> {
    let fixture_policy = |name: &str| {
        t.create_policy(name, &allow_policy(&["kms:Encrypt"]));
        name.to_owned()
    };
    let attach = |name: &str, user: &str| {
        t.allow(&t.root, "AttachPolicyToUser", |c| {
            c.attach_policy_to_user(&UserPolicyRequest {
                policy_name: name.into(),
                user_name: user.into(),
                ..Default::default()
            })
        })
    };
    match api {
        "CreateKey" => unkeyed(|c| c.create_key(&CreateKeyRequest::default()).map(drop)),
        "DescribeKey" => {
            let k = t.aes();
            keyed(k.clone(), move |c| c.describe_key(&key_request(&k)).map(drop))
        }
        "ListKeys" => unkeyed(|c| c.list_keys(&PageRequest::default()).map(drop)),
        "UpdateKeyDescription" => {
            let k = t.aes();
            let req = UpdateKeyDescriptionRequest {
                key_id: k.clone(),
                description: "updated".into(),
            };
            keyed(k.clone(), move |c| c.update_key_description(&req).map(drop))
        }
        "EnableKey" => {
            let k = t
                .key(CreateKeyRequest {
                    enable: Some(false),
                    ..Default::default()
                })
                .key_id;
            keyed(k.clone(), move |c| c.enable_key(&key_request(&k)).map(drop))
        }
        "DisableKey" => {
            let k = t.aes();
            keyed(k.clone(), move |c| c.disable_key(&key_request(&k)).map(drop))
        }
        "SetDeletionProtection" => {
            let meta = t.key(CreateKeyRequest::default());
            let req = SetDeletionProtectionRequest {
                protected_resource_arn: meta.arn.clone(),
                enable_deletion_protection: Some(true),
                deletion_protection_description: Some("keep".into()),
            };
            keyed(meta.key_id.clone(), move |c| c.set_deletion_protection(&req).map(drop))
        }
        "ScheduleKeyDeletion" => {
            let k = t.aes();
            let req = ScheduleKeyDeletionRequest {
                key_id: k.clone(),
                pending_window_in_days: Some(7),
            };
            keyed(k.clone(), move |c| c.schedule_key_deletion(&req).map(drop))
        }
        "CancelKeyDeletion" => {
            let k = t.aes();
            t.allow_on(&t.root, "ScheduleKeyDeletion", &k, |c| {
                c.schedule_key_deletion(&ScheduleKeyDeletionRequest {
                    key_id: k.clone(),
                    pending_window_in_days: Some(7),
                })
            });
            keyed(k.clone(), move |c| c.cancel_key_deletion(&key_request(&k)).map(drop))
        }
        "CreateKeyVersion" => {
            let k = t.aes();
            keyed(k.clone(), move |c| c.create_key_version(&key_request(&k)).map(drop))
        }
        "DescribeKeyVersion" => {
            let meta = t.key(CreateKeyRequest::default());
            let req = DescribeKeyVersionRequest {
                key_id: meta.key_id.clone(),
                key_version_id: meta.primary_key_version.clone().expect("a primary version"),
            };
            keyed(meta.key_id.clone(), move |c| c.describe_key_version(&req).map(drop))
        }
        "ListKeyVersions" => {
            let k = t.aes();
            let req = KeyPageRequest {
                key_id: k.clone(),
                ..Default::default()
            };
            keyed(k.clone(), move |c| c.list_key_versions(&req).map(drop))
        }
        "UpdateRotationPolicy" => {
            let k = t.aes();
            let req = UpdateRotationPolicyRequest {
                key_id: k.clone(),
                enable_automatic_rotation: Some(true),
                rotation_interval: Some("30d".into()),
            };
            keyed(k.clone(), move |c| c.update_rotation_policy(&req).map(drop))
        }
        "CreateAlias" => {
            let k = t.aes();
            let req = AliasRequest {
                alias_name: "alias/op-create".into(),
                key_id: k.clone(),
            };
            keyed(k.clone(), move |c| c.create_alias(&req).map(drop))
        }
        "UpdateAlias" => {
            let first = t.aes();
            let second = t.aes();
            t.alias("alias/op-update", &first);
            let req = AliasRequest {
                alias_name: "alias/op-update".into(),
                key_id: second.clone(),
            };
            keyed(second.clone(), move |c| c.update_alias(&req).map(drop))
        }
        "DeleteAlias" => {
            let k = t.aes();
            t.alias("alias/op-delete", &k);
            let req = DeleteAliasRequest {
                alias_name: "alias/op-delete".into(),
            };
            keyed(k.clone(), move |c| c.delete_alias(&req).map(drop))
        }
        "ListAliases" => unkeyed(|c| c.list_aliases(&PageRequest::default()).map(drop)),
        "ListAliasesByKeyId" => {
            let k = t.aes();
            let req = KeyPageRequest {
                key_id: k.clone(),
                ..Default::default()
            };
            keyed(k.clone(), move |c| c.list_aliases_by_key_id(&req).map(drop))
        }
        "TagResource" => {
            let k = t.aes();
            let req = TagResourceRequest {
                key_id: k.clone(),
                tags: vec![Tag::new("Team", "blue")],
            };
            keyed(k.clone(), move |c| c.tag_resource(&req).map(drop))
        }
        "UntagResource" => {
            let k = t.aes();
            t.tag(&k, "Team", "blue");
            let req = UntagResourceRequest {
                key_id: k.clone(),
                tag_keys: vec!["Team".into()],
            };
            keyed(k.clone(), move |c| c.untag_resource(&req).map(drop))
        }
        "ListResourceTags" => {
            let k = t.aes();
            keyed(k.clone(), move |c| c.list_resource_tags(&key_request(&k)).map(drop))
        }
        "Encrypt" => {
            let k = t.aes();
            let key = k.clone();
            keyed(k.clone(), move |c| encrypt(&key, b"table")(c).map(drop))
        }
        "Decrypt" => {
            let k = t.aes();
            let blob = t.blob(&k, b"table");
            keyed(k.clone(), move |c| decrypt(&blob)(c).map(drop))
        }
        "ReEncrypt" => {
            let source = t.aes();
            let destination = t.aes();
            let blob = t.blob(&source, b"table");
            // Which key the record names is checked by re_encrypt_is_audited_under_its_source_key.
            unkeyed(move |c| re_encrypt(&blob, &destination)(c).map(drop))
        }
        "GenerateDataKey" => {
            let k = t.aes();
            let key = k.clone();
            keyed(k.clone(), move |c| data_key(&key)(c).map(drop))
        }
        "GenerateDataKeyWithoutPlaintext" => {
            let k = t.aes();
            let key = k.clone();
            keyed(k.clone(), move |c| data_key_without_plaintext(&key)(c).map(drop))
        }
        "AsymmetricSign" => {
            let k = t.ec();
            let key = k.clone();
            keyed(k.clone(), move |c| sign(&key)(c).map(drop))
        }
        "AsymmetricVerify" => {
            let k = t.ec();
            let signature = t.allow_on(&t.root, "AsymmetricSign", &k, sign(&k)).value.0;
            let key = k.clone();
            keyed(k.clone(), move |c| {
                let ok = verify(&key, &signature)(c)?;
                assert!(ok.value, "the signature verifies");
                Ok(())
            })
        }
        "AsymmetricEncrypt" => {
            let k = t.sm2();
            let key = k.clone();
            keyed(k.clone(), move |c| asym_encrypt(&key, b"table")(c).map(drop))
        }
        "AsymmetricDecrypt" => {
            let k = t.sm2();
            let blob = t
                .allow_on(&t.root, "AsymmetricEncrypt", &k, asym_encrypt(&k, b"table"))
                .ciphertext_blob
                .0;
            let key = k.clone();
            keyed(k.clone(), move |c| asym_decrypt(&key, &blob)(c).map(drop))
        }
        "GetPublicKey" => {
            let k = t.ec();
            let key = k.clone();
            keyed(k.clone(), move |c| public_key(&key)(c).map(drop))
        }
        "GenerateRandom" => unkeyed(|c| c.generate_random(&GenerateRandomRequest { length: Some(16) }).map(drop)),
        "CreateKmsInstance" => unkeyed(|c| {
            c.create_kms_instance(&CreateKmsInstanceRequest {
                product_version: Some(ProductVersion::Software),
                ..Default::default()
            })
            .map(drop)
        }),
        "GetKmsInstance" => unkeyed(|c| {
            c.get_kms_instance(&KmsInstanceIdRequest {
                kms_instance_id: DEFAULT_INSTANCE_ID.into(),
            })
            .map(drop)
        }),
        "ListKmsInstances" => unkeyed(|c| c.list_kms_instances(&PageRequest::default()).map(drop)),
        "CheckKmsInstance" => unkeyed(|c| {
            c.check_kms_instance(&KmsInstanceIdRequest {
                kms_instance_id: DEFAULT_INSTANCE_ID.into(),
            })
            .map(drop)
        }),
        "SetKeyPolicy" => {
            let k = t.aes();
            let root = t.root.principal().arn().to_owned();
            let req = SetKeyPolicyRequest {
                key_id: k.clone(),
                policy: key_policy("Allow", &[&root], &["kms:*"]),
            };
            keyed(k.clone(), move |c| c.set_key_policy(&req).map(drop))
        }
        "GetKeyPolicy" => {
            let k = t.aes();
            keyed(k.clone(), move |c| c.get_key_policy(&key_request(&k)).map(drop))
        }
        "CreatePolicy" => unkeyed(|c| {
            c.create_policy(&CreatePolicyRequest {
                policy_name: "made-by-the-table".into(),
                policy_document: allow_policy(&["kms:Encrypt"]),
                description: Some("made by a caller allowed ram:CreatePolicy".into()),
            })
            .map(drop)
        }),
        "GetPolicy" => {
            let req = PolicyNameRequest {
                policy_name: fixture_policy("fx-GetPolicy"),
            };
            unkeyed(move |c| c.get_policy(&req).map(drop))
        }
        "UpdatePolicy" => {
            let req = UpdatePolicyRequest {
                policy_name: fixture_policy("fx-UpdatePolicy"),
                policy_document: allow_policy(&["kms:Decrypt"]),
            };
            unkeyed(move |c| c.update_policy(&req).map(drop))
        }
        "DeletePolicy" => {
            let req = PolicyNameRequest {
                policy_name: fixture_policy("fx-DeletePolicy"),
            };
            unkeyed(move |c| c.delete_policy(&req).map(drop))
        }
        "ListPolicies" => unkeyed(|c| c.list_policies(&PageRequest::default()).map(drop)),
        "AttachPolicyToUser" => {
            let req = UserPolicyRequest {
                policy_name: fixture_policy("fx-AttachPolicyToUser"),
                user_name: "target".into(),
                ..Default::default()
            };
            unkeyed(move |c| c.attach_policy_to_user(&req).map(drop))
        }
        "DetachPolicyFromUser" => {
            let name = fixture_policy("fx-DetachPolicyFromUser");
            attach(&name, "target");
            let req = UserPolicyRequest {
                policy_name: name,
                user_name: "target".into(),
                ..Default::default()
            };
            unkeyed(move |c| c.detach_policy_from_user(&req).map(drop))
        }
        "AttachPolicyToRole" => {
            let req = RolePolicyRequest {
                policy_name: fixture_policy("fx-AttachPolicyToRole"),
                role_name: "worker".into(),
                ..Default::default()
            };
            unkeyed(move |c| c.attach_policy_to_role(&req).map(drop))
        }
        "DetachPolicyFromRole" => {
            let name = fixture_policy("fx-DetachPolicyFromRole");
            t.allow(&t.root, "AttachPolicyToRole", |c| {
                c.attach_policy_to_role(&RolePolicyRequest {
                    policy_name: name.clone(),
                    role_name: "worker".into(),
                    ..Default::default()
                })
            });
            let req = RolePolicyRequest {
                policy_name: name,
                role_name: "worker".into(),
                ..Default::default()
            };
            unkeyed(move |c| c.detach_policy_from_role(&req).map(drop))
        }
        "ListPoliciesForUser" => unkeyed(|c| {
            c.list_policies_for_user(&UserRequest {
                user_name: "auditor".into(),
                account_id: None,
            })
            .map(drop)
        }),
        "ListPoliciesForRole" => unkeyed(|c| {
            c.list_policies_for_role(&RoleRequest {
                role_name: "worker".into(),
                account_id: None,
            })
            .map(drop)
        }),
        "LookupEvents" => unkeyed(|c| {
            c.lookup_events(&LookupEventsRequest {
                page_size: Some(5),
                ..Default::default()
            })
            .map(drop)
        }),
        _ => None,
    }
}

#[test]
fn every_operation_needs_exactly_its_own_action() {
    let t = env();
    // Every action some operation needs (ReEncrypt's action is two: From and To).
    let mut all: Vec<&'static str> = Vec::new();
    for &(api, action) in OPERATIONS {
        for a in needed(api, action) {
            if !all.contains(&a) {
                all.push(a);
            }
        }
    }
    let mut missing = Vec::new();
    for &(api, action) in OPERATIONS {
        let Some(row) = operation_case(&t, api) else {
            missing.push(api);
            continue;
        };
        let own = needed(api, action);
        let others: Vec<&str> = all.iter().copied().filter(|a| !own.contains(a)).collect();
        let denial_key = row.key.as_deref().filter(|_| !api.ends_with("Alias"));

        // Everything but this operation's action(s): refused, and nothing happens.
        t.grant(&format!("except-{api}"), &allow_policy(&others));
        let refused = t.expect_denied(&t.user(&format!("except-{api}")), api, denial_key, |c| (row.call)(c));
        assert!(!explicit(&refused), "{api}: no Deny was written: {refused:?}");
        if api == "ReEncrypt" {
            // Each half alone is not enough either.
            for (half, lacking) in [("from", "kms:ReEncryptTo"), ("to", "kms:ReEncryptFrom")] {
                let user = format!("reencrypt-{half}-only");
                let others: Vec<&str> = all.iter().copied().filter(|a| *a != lacking).collect();
                t.grant(&user, &allow_policy(&others));
                t.expect_denied(&t.user(&user), api, None, |c| (row.call)(c));
            }
            // kms:ReEncrypt is no action of its own (kms:ReEncrypt* covers both halves).
            t.grant("reencrypt-literal", &allow_policy(&["kms:ReEncrypt"]));
            t.expect_denied(&t.user("reencrypt-literal"), api, None, |c| (row.call)(c));
            t.grant("reencrypt-star", &allow_policy(&["kms:ReEncrypt*"]));
            t.expect_ok(&t.user("reencrypt-star"), api, None, |c| (row.call)(c));
        }

        // Exactly this operation's action(s): allowed.
        t.grant(&format!("only-{api}"), &allow_policy(&own));
        t.expect_ok(&t.user(&format!("only-{api}")), api, row.key.as_deref(), |c| {
            (row.call)(c)
        });
    }
    assert!(missing.is_empty(), "operations without a row in the table: {missing:?}");
    t.verify_audit();
}

// ------------------------------------------------------------------ 3. conditions that change

#[test]
fn retagging_a_key_changes_who_may_use_it_at_the_next_call() {
    let t = env();
    t.grant("apollo", &t.seed(TAG_BASED));
    let user = t.user("apollo");
    let key = t.aes();
    let k = key.as_str();
    let blob = t.blob(k, b"mission data");

    t.deny_on(&user, "Encrypt", k, encrypt(k, b"untagged"));
    t.tag(k, "Project", "Apollo");
    t.allow_on(&user, "Encrypt", k, encrypt(k, b"tagged"));
    t.allow_on(&user, "Decrypt", k, decrypt(&blob));
    t.tag(k, "Project", "Zeus");
    t.deny_on(&user, "Encrypt", k, encrypt(k, b"retagged"));
    t.deny_on(&user, "Decrypt", k, decrypt(&blob));
    t.tag(k, "Project", "APOLLO");
    t.allow_on(&user, "Encrypt", k, encrypt(k, b"retagged back"));
    t.untag(k, "Project");
    t.deny_on(&user, "Encrypt", k, encrypt(k, b"untagged again"));
    t.deny_on(&user, "GenerateDataKey", k, data_key(k));
    t.tag(k, "project", "apollo");
    t.allow_on(&user, "GenerateDataKey", k, data_key(k));
    t.verify_audit();
}

#[test]
fn alias_named_calls_need_the_alias_resource_too() {
    let t = env();
    let key = t.aes();
    let k = key.as_str();
    t.alias("alias/x", k);
    t.alias("alias/y", k);
    let policy = |resources: &[&str]| {
        serde_json::json!({
            "Version": "1",
            "Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt"], "Resource": resources}]
        })
        .to_string()
    };
    let name = t.grant("user", &policy(&["acs:kms:*:*:key/*"]));
    let user = t.user("user");

    t.allow_on(&user, "Encrypt", k, encrypt(k, b"by id"));
    t.allow_on(
        &user,
        "Encrypt",
        k,
        encrypt(&t.arn(&format!("key/{key}")), b"by key ARN"),
    );
    let refused = t.deny_on(&user, "Encrypt", k, encrypt("alias/x", b"by alias"));
    assert_eq!(denied_resource(&refused), t.arn("alias/x"));
    t.deny_on(&user, "Encrypt", k, encrypt(&t.arn("alias/x"), b"by alias ARN"));

    t.update_policy(&name, &policy(&["acs:kms:*:*:key/*", "acs:kms:*:*:alias/x"]));
    t.allow_on(&user, "Encrypt", k, encrypt("alias/x", b"by alias"));
    t.allow_on(&user, "Encrypt", k, encrypt(&t.arn("alias/x"), b"by alias ARN"));
    t.deny_on(&user, "Encrypt", k, encrypt("alias/y", b"by the other alias"));

    // The alias alone, without the key, is not enough either.
    t.grant("alias-only", &policy(&["acs:kms:*:*:alias/x"]));
    let alias_only = t.user("alias-only");
    let refused = t.deny_on(&alias_only, "Encrypt", k, encrypt("alias/x", b"alias only"));
    assert_eq!(denied_resource(&refused), t.arn(&format!("key/{key}")));
    t.deny_on(&alias_only, "Encrypt", k, encrypt(k, b"alias only, by id"));
    t.verify_audit();
}

#[test]
fn time_window_condition_opens_and_closes_with_the_clock() {
    let at = |text: &str| kms_core::policy::parse_time(text).expect("a time");
    let start = at("2030-01-01T00:00:00Z");
    let end = at("2030-01-02T00:00:00Z");
    let t = env_at(at("2029-12-31T23:00:00Z"));
    t.grant(
        "shift",
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["kms:Encrypt"],"Resource":["*"],
            "Condition":{"DateGreaterThan":{"acs:CurrentTime":"2030-01-01T00:00:00Z"},
                         "DateLessThan":{"acs:CurrentTime":"2030-01-02T00:00:00Z"}}}]}"#,
    );
    let user = t.user("shift");
    let key = t.aes();
    let k = key.as_str();

    t.deny_on(&user, "Encrypt", k, encrypt(k, b"too early"));
    t.clock.set(start);
    t.deny_on(&user, "Encrypt", k, encrypt(k, b"at the opening instant"));
    t.clock.set(start + 1);
    t.allow_on(&user, "Encrypt", k, encrypt(k, b"just open"));
    t.clock.advance(12 * HOUR);
    t.allow_on(&user, "Encrypt", k, encrypt(k, b"midday"));
    t.clock.set(end - 1);
    t.allow_on(&user, "Encrypt", k, encrypt(k, b"last moment"));
    t.clock.set(end);
    t.deny_on(&user, "Encrypt", k, encrypt(k, b"closed"));
    t.clock.advance(DAY);
    t.deny_on(&user, "Encrypt", k, encrypt(k, b"long closed"));
    t.clock.set(start + 3_600_000);
    t.allow_on(&user, "Encrypt", k, encrypt(k, b"the clock set back"));

    // The trail, by time: the four allowed calls lie inside the window, the first refusal
    // before it.
    let principal = user.principal().arn().to_owned();
    let inside = t.allow(&t.root, "LookupEvents", |c| {
        c.lookup_events(&LookupEventsRequest {
            principal: Some(principal.clone()),
            start_time: Some("2030-01-01T00:00:00.001Z".into()),
            end_time: Some(format_time(end)),
            ..Default::default()
        })
    });
    assert_eq!(inside.total_count, 4, "{inside:?}");
    assert!(inside.events.event.iter().all(|e| e.result == "Success"), "{inside:?}");
    let before = t.allow(&t.root, "LookupEvents", |c| {
        c.lookup_events(&LookupEventsRequest {
            principal: Some(principal.clone()),
            end_time: Some(format_time(start)),
            ..Default::default()
        })
    });
    assert_eq!(before.total_count, 1, "{before:?}");
    assert_eq!(before.events.event[0].error_code.as_deref(), Some(NO_PERMISSION));
    assert_eq!(before.events.event[0].event_time, "2029-12-31T23:00:00Z");
    t.verify_audit();
}

#[test]
fn a_policy_detached_elsewhere_binds_at_the_next_call_of_every_operation() {
    // Two `Kms` over one store, as two processes: a permission withdrawn through one must be
    // refused by the other at its next call ("a call that starts after a change returned always
    // sees it"), whichever operation that call is.
    let t = env();
    t.grant("ram-admin", &allow_policy(&["ram:*"]));
    let other = Kms::open_with(
        t.dir.path(),
        KmsOptions {
            clock: Arc::clone(&t.clock) as Arc<dyn Clock>,
            ..Default::default()
        },
    )
    .expect("open the store a second time");
    let admin = t.user("ram-admin");
    let via_other = |action: &'static str, f: &dyn Fn(Client<'_>) -> Res<Empty>| {
        t.call_via(&other, &admin, action, None, f)
            .unwrap_or_else(|e| panic!("{action} through the other handle: {e}"));
    };
    let cases: [(&str, Op); 6] = [
        (
            "GenerateRandom",
            Box::new(|c| c.generate_random(&GenerateRandomRequest::default()).map(drop)),
        ),
        (
            "ListKmsInstances",
            Box::new(|c| c.list_kms_instances(&PageRequest::default()).map(drop)),
        ),
        (
            "GetKmsInstance",
            Box::new(|c| {
                c.get_kms_instance(&KmsInstanceIdRequest {
                    kms_instance_id: DEFAULT_INSTANCE_ID.into(),
                })
                .map(drop)
            }),
        ),
        (
            "CheckKmsInstance",
            Box::new(|c| {
                c.check_kms_instance(&KmsInstanceIdRequest {
                    kms_instance_id: DEFAULT_INSTANCE_ID.into(),
                })
                .map(drop)
            }),
        ),
        (
            "CreateKmsInstance",
            Box::new(|c| {
                c.create_kms_instance(&CreateKmsInstanceRequest {
                    product_version: Some(ProductVersion::Software),
                    ..Default::default()
                })
                .map(drop)
            }),
        ),
        // The control: an operation that brings its caches up to date first.
        ("ListKeys", Box::new(|c| c.list_keys(&PageRequest::default()).map(drop))),
    ];
    let mut stale = Vec::new();
    for (api, call) in &cases {
        let user = t.user(&format!("user-{api}"));
        let user_name = format!("user-{api}");
        let policy_name = format!("grant-{api}");
        let action = OPERATIONS
            .iter()
            .find(|(name, _)| name == api)
            .map(|(_, action)| *action)
            .expect("a listed operation");
        via_other("CreatePolicy", &|c| {
            c.create_policy(&CreatePolicyRequest {
                policy_name: policy_name.clone(),
                policy_document: allow_policy(&[action]),
                description: None,
            })
            .map(|_| Empty {})
        });
        via_other("AttachPolicyToUser", &|c| {
            c.attach_policy_to_user(&UserPolicyRequest {
                policy_name: policy_name.clone(),
                user_name: user_name.clone(),
                ..Default::default()
            })
        });
        // This handle sees the grant (each write returns only once every handle will see it).
        t.expect_ok(&user, api, None, call);
        // A call that writes (CreateKmsInstance) drops this handle's caches; one that only
        // reads loads the user's policies again, as any other call of theirs would.
        let reload = t.call(&user, "GenerateRandom", None, |c| {
            c.generate_random(&GenerateRandomRequest::default())
        });
        assert_eq!(reload.is_ok(), *api == "GenerateRandom", "{api}: {reload:?}");
        via_other("DetachPolicyFromUser", &|c| {
            c.detach_policy_from_user(&UserPolicyRequest {
                policy_name: policy_name.clone(),
                user_name: user_name.clone(),
                ..Default::default()
            })
        });
        if t.call(&user, api, None, call).is_ok() {
            stale.push(*api);
        }
    }
    drop(other);
    t.verify_audit();
    assert!(
        stale.is_empty(),
        "still allowed after the policy was detached through another handle: {stale:?}"
    );
}

// ------------------------------------------------------------------ 4. the audit trail

#[test]
fn lookup_events_filters_by_principal_key_action_and_time() {
    let t = env();
    t.grant("alice", &t.seed(SYMMETRIC_CRYPTO));
    let alice = t.user("alice").with_source_ip(ip("10.1.2.3"));
    let bob = t.user("bob").with_source_ip(ip("10.9.9.9"));
    let k1 = t.aes();
    let k2 = t.aes();
    t.alias("alias/audited", &k1);
    let t0 = t.kms.now_ms();

    t.allow_on(&alice, "Encrypt", &k1, encrypt("alias/audited", b"one"));
    t.deny_on(&bob, "Encrypt", &k1, encrypt(&k1, b"two"));
    t.clock.advance(HOUR);
    let t1 = t.kms.now_ms();
    t.allow_on(&alice, "GenerateDataKey", &k2, data_key(&k2));
    t.deny_on(&bob, "DescribeKey", &k2, describe(&k2));
    t.deny(&bob, "ListKeys", list_keys());
    // A key that does not exist: audited, by the name given.
    let missing = t.call(&alice, "Encrypt", None, encrypt("alias/nowhere", b"three"));
    assert_eq!(missing.map(drop).map_err(|e| e.code()), Err("Forbidden.AliasNotFound"));

    let lookup = |req: LookupEventsRequest| t.allow(&t.root, "LookupEvents", |c| c.lookup_events(&req));
    let alice_arn = alice.principal().arn().to_owned();
    let bob_arn = bob.principal().arn().to_owned();

    // By key (named by id or by alias): allowed and refused calls of every principal.
    let by_key = lookup(LookupEventsRequest {
        key_id: Some("alias/audited".into()),
        ..Default::default()
    });
    let seen: Vec<(&str, &str, &str)> = by_key
        .events
        .event
        .iter()
        .map(|e| (e.principal.as_str(), e.action.as_str(), e.result.as_str()))
        .collect();
    // Newest first: bob's refusal, alice's Encrypt (by alias), the root's CreateAlias. (CreateKey
    // names the key container, not the key it makes.)
    let root_arn = t.root.principal().arn().to_owned();
    assert_eq!(
        seen,
        [
            (bob_arn.as_str(), "Encrypt", "Failure"),
            (alice_arn.as_str(), "Encrypt", "Success"),
            (root_arn.as_str(), "CreateAlias", "Success"),
        ],
        "{by_key:?}"
    );
    let refusal = &by_key.events.event[0];
    assert_eq!(refusal.error_code.as_deref(), Some(NO_PERMISSION));
    assert_eq!(refusal.source_ip.as_deref(), Some("10.9.9.9"));
    assert_eq!(refusal.key_id.as_deref(), Some(k1.as_str()));
    assert!(refusal.resource.contains(&t.arn(&format!("key/{k1}"))), "{refusal:?}");
    let alias_call = &by_key.events.event[1];
    assert!(alias_call.resource.contains(&t.arn("alias/audited")), "{alias_call:?}");
    assert!(
        alias_call.resource.contains(&t.arn(&format!("key/{k1}"))),
        "{alias_call:?}"
    );

    // By principal.
    let by_bob = lookup(LookupEventsRequest {
        principal: Some(bob_arn.clone()),
        ..Default::default()
    });
    assert_eq!(by_bob.total_count, 3);
    assert!(
        by_bob
            .events
            .event
            .iter()
            .all(|e| e.result == "Failure" && e.error_code.as_deref() == Some(NO_PERMISSION) && e.principal == bob_arn)
    );
    let list_keys_refusal = by_bob.events.event.iter().find(|e| e.action == "ListKeys");
    let list_keys_refusal = list_keys_refusal.expect("bob's ListKeys");
    assert_eq!(list_keys_refusal.resource, t.arn("key"));
    assert_eq!(list_keys_refusal.key_id, None);

    // By action.
    let encrypts = lookup(LookupEventsRequest {
        action: Some("Encrypt".into()),
        ..Default::default()
    });
    assert_eq!(encrypts.total_count, 3, "{encrypts:?}");
    let not_found = &encrypts.events.event[0];
    assert_eq!(not_found.error_code.as_deref(), Some("Forbidden.AliasNotFound"));
    assert!(not_found.resource.contains("alias/nowhere"), "{not_found:?}");

    // By time: [t0, t1) holds the first two calls, [t1, …) the rest.
    let early = lookup(LookupEventsRequest {
        start_time: Some(format_time(t0)),
        end_time: Some(format_time(t1)),
        principal: Some(alice_arn.clone()),
        ..Default::default()
    });
    assert_eq!(early.total_count, 1, "{early:?}");
    assert_eq!(early.events.event[0].action, "Encrypt");
    let late = lookup(LookupEventsRequest {
        start_time: Some(format_time(t1)),
        key_id: Some(k2.clone()),
        ..Default::default()
    });
    let late: Vec<&str> = late.events.event.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(late, ["DescribeKey", "GenerateDataKey"]);

    // All filters at once.
    let narrow = lookup(LookupEventsRequest {
        key_id: Some(k2.clone()),
        principal: Some(bob_arn.clone()),
        action: Some("DescribeKey".into()),
        start_time: Some(format_time(t1)),
        // Times are written to the second.
        end_time: Some(format_time(t1 + 1000)),
        ..Default::default()
    });
    assert_eq!(narrow.total_count, 1, "{narrow:?}");

    // LookupEvents is itself audited.
    let lookups = lookup(LookupEventsRequest {
        action: Some("LookupEvents".into()),
        principal: Some(root_arn),
        ..Default::default()
    });
    assert_eq!(lookups.total_count, 6, "{lookups:?}");
    t.verify_audit();
}

#[test]
fn describe_key_last_used_time_follows_cryptographic_use() {
    let t = env();
    let key = t.aes();
    let k = key.as_str();
    let user = t.user("nobody");

    assert_eq!(t.describe(k).last_used_time, None, "a new key was never used");
    t.deny_on(&user, "Encrypt", k, encrypt(k, b"refused"));
    assert_eq!(t.describe(k).last_used_time, None, "a refused call is no use");
    t.clock.advance(HOUR);
    let used = t.kms.now_ms();
    let blob = t.blob(k, b"used");
    assert_eq!(t.describe(k).last_used_time, Some(format_time(used)));
    t.clock.advance(HOUR);
    // Management and failed decryption do not count as use.
    t.allow_on(&t.root, "ListResourceTags", k, |c| {
        c.list_resource_tags(&key_request(k))
    });
    let bad = t.call(&t.root, "Decrypt", Some(k), |c| {
        c.decrypt(&DecryptRequest {
            ciphertext_blob: blob.as_slice().into(),
            encryption_context: [("wrong".to_owned(), "context".to_owned())].into_iter().collect(),
        })
    });
    assert_eq!(bad.map(drop).map_err(|e| e.code()), Err("InvalidCiphertext"));
    assert_eq!(t.describe(k).last_used_time, Some(format_time(used)));
    t.clock.advance(HOUR);
    let decrypted = t.kms.now_ms();
    t.allow_on(&t.root, "Decrypt", k, decrypt(&blob));
    assert_eq!(t.describe(k).last_used_time, Some(format_time(decrypted)));
    t.verify_audit();
}

#[test]
fn re_encrypt_is_audited_under_its_source_key() {
    let t = env();
    let source = t.aes();
    let destination = t.aes();
    let blob = t.blob(&source, b"moving house");
    assert!(t.describe(&source).last_used_time.is_some());
    t.clock.advance(HOUR);
    let moved = t.kms.now_ms();
    // The record names the key the data was decrypted under (Call::used_key: "the first one
    // wins: ReEncrypt's source"), so that the source key's trail shows the data leaving it.
    t.allow_on(&t.root, "ReEncrypt", &source, re_encrypt(&blob, &destination));
    let from_source = t.allow(&t.root, "LookupEvents", |c| {
        c.lookup_events(&LookupEventsRequest {
            key_id: Some(source.clone()),
            action: Some("ReEncrypt".into()),
            ..Default::default()
        })
    });
    assert_eq!(from_source.total_count, 1, "the source key's trail shows the ReEncrypt");
    assert_eq!(t.describe(&source).last_used_time, Some(format_time(moved)));
    t.verify_audit();
}

/// Every form a secret could take in a file or a message: raw, base64 at each alignment, hex.
fn forms(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut forms = vec![("raw".to_owned(), secret.to_vec())];
    for shift in 0..3 {
        let b64 = BASE64.encode(&secret[shift..]);
        // Inner characters only: a base64 that starts elsewhere still contains these.
        let inner = &b64.as_bytes()[4..b64.len() - 4];
        forms.push((format!("base64+{shift}"), inner.to_vec()));
    }
    forms.push(("hex".to_owned(), hex::encode(secret).into_bytes()));
    forms.push(("HEX".to_owned(), hex::encode_upper(secret).into_bytes()));
    forms
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn store_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the store directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(store_files(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read a store file");
            files.push((path, bytes));
        }
    }
    files
}

#[track_caller]
fn assert_absent(place: &str, haystack: &[u8], secrets: &[(String, Vec<u8>)]) {
    for (label, secret) in secrets {
        for (form, needle) in forms(secret) {
            assert!(!contains(haystack, &needle), "{place} holds the {form} form of {label}");
        }
    }
}

#[test]
fn audit_store_holds_no_plaintext_or_key_bytes() {
    let t = env();
    t.grant("alice", &t.seed(SYMMETRIC_CRYPTO));
    let alice = t.user("alice").with_source_ip(ip("192.168.1.10"));
    let bob = t.user("bob");
    let key = t.aes();
    let k = key.as_str();
    let other = t.aes();
    let sm2 = t.sm2();
    let canary = |label: &str| {
        format!("tessera-canary:{label}:this-plaintext-must-never-reach-the-audit-trail;")
            .repeat(4)
            .into_bytes()
    };
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();

    let root_plain = canary("root-encrypt");
    let root_blob = t.blob(k, &root_plain);
    let alice_plain = canary("alice-encrypt");
    let alice_blob = t.allow_on(&alice, "Encrypt", k, encrypt(k, &alice_plain));
    let back = t.allow_on(&alice, "Decrypt", k, decrypt(&alice_blob.ciphertext_blob.0));
    assert_eq!(back.plaintext.expose(), alice_plain.as_slice());
    let bob_plain = canary("bob-refused");
    t.deny_on(&bob, "Encrypt", k, encrypt(k, &bob_plain));
    t.deny_on(&bob, "Decrypt", k, decrypt(&root_blob));
    let too_long = canary("too-long").repeat(40);
    let rejected = t.call(&alice, "Encrypt", None, encrypt(k, &too_long));
    assert_eq!(rejected.map(drop).map_err(|e| e.code()), Err("InvalidParameter"));
    t.allow_on(&t.root, "ReEncrypt", k, re_encrypt(&root_blob, &other));
    let asym_plain = canary("sm2")[..100].to_vec();
    let asym = t.allow_on(&t.root, "AsymmetricEncrypt", &sm2, asym_encrypt(&sm2, &asym_plain));
    t.allow_on(
        &t.root,
        "AsymmetricDecrypt",
        &sm2,
        asym_decrypt(&sm2, &asym.ciphertext_blob.0),
    );
    for (who, name) in [(&alice, "alice"), (&t.root, "root")] {
        let dk = t.allow_on(who, "GenerateDataKey", k, data_key(k));
        secrets.push((format!("{name}'s data key"), dk.plaintext.expose().to_vec()));
    }
    let random = t.allow(&t.root, "GenerateRandom", |c| {
        c.generate_random(&GenerateRandomRequest { length: Some(48) })
    });
    secrets.push(("GenerateRandom's bytes".into(), random.random.expose().to_vec()));
    for (label, plain) in [
        ("the root's plaintext", root_plain),
        ("alice's plaintext", alice_plain),
        ("bob's refused plaintext", bob_plain),
        ("an oversized plaintext", too_long),
        ("an SM2 plaintext", asym_plain),
    ] {
        secrets.push((label.into(), plain));
    }

    // LookupEvents answers, as a caller would print them.
    for filter in [
        LookupEventsRequest::default(),
        LookupEventsRequest {
            key_id: Some(key.clone()),
            page_size: Some(100),
            ..Default::default()
        },
        LookupEventsRequest {
            principal: Some(alice.principal().arn().to_owned()),
            ..Default::default()
        },
    ] {
        let events = t.allow(&t.root, "LookupEvents", |c| c.lookup_events(&filter));
        assert!(events.total_count > 0);
        assert_absent(
            "a LookupEvents answer's Debug",
            format!("{events:?}").as_bytes(),
            &secrets,
        );
        let json = serde_json::to_string(&events).expect("serialize LookupEvents' answer");
        assert_absent("a LookupEvents answer's JSON", json.as_bytes(), &secrets);
    }
    t.verify_audit();

    // The store's files while it is open (the trail may still sit in the WAL) ...
    let files = store_files(t.dir.path());
    assert!(
        files.iter().any(|(p, _)| p.ends_with("tessera.db")),
        "the store has no tessera.db: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (path, bytes) in &files {
        assert_absent(&path.display().to_string(), bytes, &secrets);
    }
    // ... and once it is closed and checkpointed.
    let Env { dir, kms, .. } = t;
    drop(kms);
    for (path, bytes) in store_files(dir.path()) {
        assert_absent(&path.display().to_string(), &bytes, &secrets);
    }
}

// ------------------------------------------------------------------ 5. explicit Deny

#[test]
fn explicit_deny_in_a_key_policy_beats_an_identity_allow() {
    let t = env();
    t.grant("alice", FULL_ACCESS);
    let alice = t.user("alice");
    let alice_arn = alice.principal().arn().to_owned();
    let guarded = t.aes_with_policy(&key_policy("Deny", &[&alice_arn], &["kms:Encrypt", "kms:Decrypt"]));
    let open = t.aes();

    let refused = t.deny_on(&alice, "Encrypt", &guarded, encrypt(&guarded, b"denied"));
    assert!(explicit(&refused), "{refused:?}");
    let blob = t.blob(&guarded, b"root may");
    let refused = t.deny_on(&alice, "Decrypt", &guarded, decrypt(&blob));
    assert!(explicit(&refused), "{refused:?}");
    // The Deny names two actions: the rest of kms:* stands, and so does every other key.
    t.allow_on(&alice, "DescribeKey", &guarded, describe(&guarded));
    t.allow_on(&alice, "Encrypt", &open, encrypt(&open, b"allowed"));
    // A key-policy Allow does not outvote an identity Deny either.
    let bob_arn = format!("acs:ram::{}:user/bob", t.account);
    let shared = t.aes_with_policy(&key_policy("Allow", &[&bob_arn], &["kms:*"]));
    t.grant(
        "bob",
        r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":"kms:Encrypt","Resource":"*"}]}"#,
    );
    let bob = t.user("bob");
    let refused = t.deny_on(&bob, "Encrypt", &shared, encrypt(&shared, b"denied"));
    assert!(explicit(&refused), "{refused:?}");
    t.allow_on(&bob, "GenerateDataKey", &shared, data_key(&shared));
    // Lifting the key policy's Deny lets the identity Allow through.
    t.set_key_policy(&guarded, "");
    t.allow_on(&alice, "Encrypt", &guarded, encrypt(&guarded, b"allowed now"));
    t.verify_audit();
}

#[test]
fn account_root_is_refused_only_by_a_key_policy_deny() {
    let t = env();
    let root_arn = t.root.principal().arn().to_owned();
    let guarded = t.aes_with_policy(&key_policy("Deny", &[&root_arn], &["kms:Encrypt"]));
    let plain = t.aes();

    let refused = t.deny_on(&t.root, "Encrypt", &guarded, encrypt(&guarded, b"denied"));
    assert!(explicit(&refused), "{refused:?}");
    // Through Kms's own methods (the root) too.
    let via_kms = t.kms.encrypt(&EncryptRequest {
        key_id: guarded.clone(),
        plaintext: b"denied"[..].into(),
        encryption_context: EncryptionContext::default(),
    });
    t.log.borrow_mut().push(Expected {
        principal: root_arn.clone(),
        source_ip: None,
        action: "Encrypt",
        key_id: Some(guarded.clone()),
        error_code: via_kms.as_ref().err().map(KmsError::code),
    });
    assert_eq!(via_kms.map(drop).map_err(|e| e.code()), Err(NO_PERMISSION));
    // Only what the Deny names.
    t.allow_on(&t.root, "DescribeKey", &guarded, describe(&guarded));
    t.allow_on(&t.root, "GenerateDataKey", &guarded, data_key(&guarded));
    // A key without a policy: the root may do anything.
    t.allow_on(&t.root, "Encrypt", &plain, encrypt(&plain, b"allowed"));
    t.allow_on(&t.root, "DisableKey", &plain, |c| c.disable_key(&key_request(&plain)));
    // A policy that allows someone else does not deny the root.
    let bob_arn = format!("acs:ram::{}:user/bob", t.account);
    let bobs = t.aes_with_policy(&key_policy("Allow", &[&bob_arn], &["kms:Encrypt"]));
    t.allow_on(&t.root, "Encrypt", &bobs, encrypt(&bobs, b"allowed"));
    // The root may still lift its own Deny (SetKeyPolicy is not denied), and is allowed again.
    t.set_key_policy(&guarded, "");
    let shown = t.allow_on(&t.root, "GetKeyPolicy", &guarded, |c| {
        c.get_key_policy(&key_request(&guarded))
    });
    assert_eq!(shown.policy, kms_core::policy::default_key_policy(&t.account));
    t.allow_on(&t.root, "Encrypt", &guarded, encrypt(&guarded, b"allowed again"));
    t.verify_audit();
}

/// `kms:EncryptionContext/{key}` conditions see the call's encryption context: Encrypt,
/// Decrypt and GenerateDataKey are allowed under the context the policy names and refused under
/// another (a negated operator must not allow everything because the context was never given).
#[test]
fn encryption_context_conditions_see_the_calls_context() {
    let t = env();
    let only_billing = r#"{"Version":"1","Statement":[{"Effect":"Allow",
        "Action":["kms:Encrypt","kms:Decrypt","kms:GenerateDataKey"],"Resource":"*",
        "Condition":{"StringEquals":{"kms:EncryptionContext/app":"billing"}}}]}"#;
    let not_payroll = r#"{"Version":"1","Statement":[{"Effect":"Allow",
        "Action":["kms:Encrypt"],"Resource":"*",
        "Condition":{"StringNotEquals":{"kms:EncryptionContext/app":"payroll"}}}]}"#;
    t.grant("billing", only_billing);
    t.grant("others", not_payroll);
    let billing = t.user("billing");
    let others = t.user("others");
    let k = t.aes();
    let k = k.as_str();
    let context = |app: &str| -> EncryptionContext { [("app".to_owned(), app.to_owned())].into_iter().collect() };
    let encrypt_in = |app: &str| {
        let req = EncryptRequest {
            key_id: k.to_owned(),
            plaintext: b"invoice".as_slice().into(),
            encryption_context: context(app),
        };
        move |c: Client<'_>| c.encrypt(&req)
    };

    let blob = t.allow_on(&billing, "Encrypt", k, encrypt_in("billing"));
    t.deny_on(&billing, "Encrypt", k, encrypt_in("payroll"));
    t.deny_on(&billing, "Encrypt", k, encrypt(k, b"no context"));
    let decrypt_in = |app: &str| {
        let req = DecryptRequest {
            ciphertext_blob: blob.ciphertext_blob.0.as_slice().into(),
            encryption_context: context(app),
        };
        move |c: Client<'_>| c.decrypt(&req)
    };
    let back = t.allow_on(&billing, "Decrypt", k, decrypt_in("billing"));
    assert_eq!(back.plaintext.expose(), b"invoice");
    t.deny_on(&billing, "Decrypt", k, decrypt_in("payroll"));
    let data_key_in = |app: &str| {
        let req = GenerateDataKeyRequest {
            key_id: k.to_owned(),
            encryption_context: context(app),
            ..Default::default()
        };
        move |c: Client<'_>| c.generate_data_key(&req)
    };
    t.allow_on(&billing, "GenerateDataKey", k, data_key_in("billing"));
    t.deny_on(&billing, "GenerateDataKey", k, data_key_in("hr"));

    t.allow_on(&others, "Encrypt", k, encrypt_in("billing"));
    t.deny_on(&others, "Encrypt", k, encrypt_in("payroll"));
    t.verify_audit();
}
