//! Authorization at the PKCS#11 edge: PINs that act as RAM principals, the KMS's policies deciding
//! what each may do with the token's keys, and the audit trail recording it.
//!
//! The store is prepared with `kms-core` in the test process (keys, RAM policies attached to users,
//! the token and its user PIN, all as the account root); the module then runs in child processes
//! of this test binary (see `module_support/harness.rs`) with a configuration that maps PINs to
//! principals:
//! - `alice-pin-1` acts as `user/alice`, whose policy allows `kms:AsymmetricSign` on one EC key
//!   and `kms:Encrypt`/`kms:Decrypt` on one AES key, and nothing else;
//! - `bob-pin-22` acts as `user/bob`, who has no policy at all;
//! - the token's own user PIN acts as the account root (no `principal` in the configuration) or
//!   as `user/carol` (`principal = …`), who may sign and verify with the other EC key only.
//!
//! Once the children are done (the module finalized, so its audit queue is stored), the test
//! process reads the audit trail with LookupEvents. The module carries its own copy of SQLite, so
//! the test process never has the store open while a child does, nor loads the module itself.
//!
//! Also: bob may not create or destroy token keys either (C_GenerateKey, C_GenerateKeyPair,
//! C_DestroyObject); a malformed `principal` or `pin_hash` makes C_Initialize fail; and
//! `pkcs11-tool --login --pin alice-pin-1 --sign` signs with the allowed key only, the hash coming
//! from `tessera token hash-pin`.
#![allow(unsafe_code)]

mod common;
#[path = "module_support/harness.rs"]
mod harness;
// This file calls the module only through p11's wrappers, not through its `call!` macro.
#[allow(unused_imports)]
#[path = "module_support/p11.rs"]
mod p11;

use std::collections::BTreeMap;
use std::path::Path;

use cryptoki_sys::*;
use harness::{Fixture, role, run_child, toml_string};
use kms_core::Kms;
use kms_core::api::{
    AuditEvent, CreateKeyRequest, CreatePolicyRequest, GetPublicKeyRequest, KeyIdRequest, LookupEventsRequest,
    UserPolicyRequest,
};
use kms_core::model::{KeySpec, KeyUsage};
use p11::{Attr, Library, Mech, assert_err, assert_rv, library, ok};
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey as _;
use serde_json::{Value, json};

// ---------------------------------------------------------------- constants

/// The security officer's PIN.
const SO_PIN: &[u8] = b"so-5678-policies-SO";
/// The token's own user PIN (set with `init_user_pin`).
const TOKEN_PIN: &[u8] = b"token-user-4321";
/// Alice's PIN (a `[[pin_principals]]` entry).
const ALICE_PIN: &str = "alice-pin-1";
/// Bob's PIN (a `[[pin_principals]]` entry).
const BOB_PIN: &str = "bob-pin-22";
/// A PIN nobody has.
const WRONG_PIN: &[u8] = b"nobodys-pin-0";
/// The token label.
const TOKEN: &str = "tessera-policies";
/// What the tests sign and encrypt.
const MESSAGE: &[u8] = b"Tessera PKCS#11 policies test: only the allowed key may sign this";
/// The error code of a denied call in the audit trail.
const NO_PERMISSION: &str = "Forbidden.NoPermission";

/// The keys every store has: (label = alias without `alias/`, spec, usage).
const KEYS: &[(&str, KeySpec, KeyUsage)] = &[
    ("alice-signer", KeySpec::EcP256, KeyUsage::SignVerify),
    ("team-signer", KeySpec::EcP256, KeyUsage::SignVerify),
    ("alice-vault", KeySpec::Aes256, KeyUsage::EncryptDecrypt),
    ("team-vault", KeySpec::Aes256, KeyUsage::EncryptDecrypt),
];

/// The file in the work directory where the parent leaves what the children need.
const SETUP_FILE: &str = "setup.json";

// ---------------------------------------------------------------- the store

/// One key of the store: id, ARN, primary version, and (EC keys) the public key PEM from
/// GetPublicKey.
#[derive(Clone, Debug)]
struct Key {
    id: String,
    arn: String,
    version: String,
    pem: String,
}

/// What the parent prepared: the account and the keys by label.
#[derive(Clone, Debug)]
struct Setup {
    account: String,
    keys: BTreeMap<String, Key>,
}

impl Setup {
    fn key(&self, label: &str) -> &Key {
        self.keys
            .get(label)
            .unwrap_or_else(|| panic!("no key labelled {label} in the setup"))
    }

    /// A RAM user of the store's account.
    fn user(&self, name: &str) -> String {
        format!("acs:ram::{}:user/{name}", self.account)
    }

    /// The account root.
    fn root(&self) -> String {
        format!("acs:ram::{}:root", self.account)
    }

    fn to_json(&self) -> Value {
        let keys: serde_json::Map<String, Value> = self
            .keys
            .iter()
            .map(|(label, k)| {
                (
                    label.clone(),
                    json!({"Id": k.id, "Arn": k.arn, "Version": k.version, "Pem": k.pem}),
                )
            })
            .collect();
        json!({"Account": self.account, "Keys": keys})
    }

    fn from_json(v: &Value) -> Setup {
        let s = |v: &Value, name: &str| -> String {
            v[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {v}"))
                .to_owned()
        };
        let keys = v["Keys"]
            .as_object()
            .expect("Keys")
            .iter()
            .map(|(label, k)| {
                (
                    label.clone(),
                    Key {
                        id: s(k, "Id"),
                        arn: s(k, "Arn"),
                        version: s(k, "Version"),
                        pem: s(k, "Pem"),
                    },
                )
            })
            .collect();
        Setup {
            account: s(v, "Account"),
            keys,
        }
    }

    /// Saves it for the children.
    fn save(&self, dir: &Path) {
        std::fs::write(dir.join(SETUP_FILE), self.to_json().to_string()).expect("write the setup");
    }

    /// What the parent saved (in a child).
    fn load(dir: &Path) -> Setup {
        let text = std::fs::read_to_string(dir.join(SETUP_FILE)).expect("read the setup");
        Setup::from_json(&serde_json::from_str(&text).expect("the setup's JSON"))
    }
}

/// An identity policy allowing `actions` on `resources`.
fn allow(actions: &[&str], resources: &[&str]) -> String {
    json!({
        "Version": "1",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}],
    })
    .to_string()
}

/// Creates the keys (as the account root, with kms-core in this process) and returns them; the
/// `Kms` stays open for the caller's further setup.
fn create_keys(kms: &Kms) -> Setup {
    let mut keys = BTreeMap::new();
    for (label, spec, usage) in KEYS {
        let meta = kms
            .create_key(&CreateKeyRequest {
                key_spec: Some(*spec),
                key_usage: Some(*usage),
                alias: Some(format!("alias/{label}")),
                ..CreateKeyRequest::default()
            })
            .unwrap_or_else(|e| panic!("CreateKey {label}: {e}"))
            .key_metadata;
        let version = meta.primary_key_version.expect("a new key has a primary version");
        let pem = if spec.is_symmetric() {
            String::new()
        } else {
            kms.get_public_key(&GetPublicKeyRequest {
                key_id: meta.key_id.clone(),
                key_version_id: Some(version.clone()),
            })
            .unwrap_or_else(|e| panic!("GetPublicKey {label}: {e}"))
            .public_key
        };
        keys.insert(
            (*label).to_owned(),
            Key {
                id: meta.key_id,
                arn: meta.arn,
                version,
                pem,
            },
        );
    }
    Setup {
        account: kms.account_id().to_owned(),
        keys,
    }
}

/// Creates an identity policy and attaches it to a user of the account.
fn give(kms: &Kms, user: &str, policy: &str, document: String) {
    kms.create_policy(&CreatePolicyRequest {
        policy_name: policy.to_owned(),
        policy_document: document,
        description: Some(format!("{user}'s keys")),
    })
    .unwrap_or_else(|e| panic!("CreatePolicy {policy}: {e}"));
    kms.attach_policy_to_user(&UserPolicyRequest {
        policy_name: policy.to_owned(),
        user_name: user.to_owned(),
        ..UserPolicyRequest::default()
    })
    .unwrap_or_else(|e| panic!("AttachPolicyToUser {policy} {user}: {e}"));
}

/// The whole store: keys; alice may sign with alice-signer and encrypt/decrypt with alice-vault;
/// carol may sign and verify with team-signer; bob has nothing. The token is initialised and has
/// its user PIN. The `Kms` is closed again before this returns.
fn prepare_store(store: &Path) -> Setup {
    let kms = Kms::open(store).expect("create the store");
    let setup = create_keys(&kms);
    give(
        &kms,
        "alice",
        "alice-keys",
        allow(
            &["kms:AsymmetricSign", "kms:Encrypt", "kms:Decrypt"],
            &[&setup.key("alice-signer").arn, &setup.key("alice-vault").arn],
        ),
    );
    give(
        &kms,
        "carol",
        "team-signing",
        allow(
            &["kms:AsymmetricSign", "kms:AsymmetricVerify"],
            &[&setup.key("team-signer").arn],
        ),
    );
    kms.init_token(kms_core::DEFAULT_INSTANCE_ID, SO_PIN, TOKEN)
        .expect("initialise the token");
    kms.init_user_pin(kms_core::DEFAULT_INSTANCE_ID, SO_PIN, TOKEN_PIN)
        .expect("set the token's user PIN");
    setup
}

/// A module configuration: the store, a debug log, whom the token's PIN acts as (None: the
/// account root), and the further user PINs as (principal, pin_hash).
fn config_text(fx: &Fixture, principal: Option<&str>, pins: &[(String, String)]) -> String {
    let mut text = format!(
        "store = {}\nlog_level = \"debug\"\nlog_file = {}\n",
        toml_string(&fx.store()),
        toml_string(&fx.log())
    );
    if let Some(p) = principal {
        text.push_str(&format!("principal = {}\n", json!(p)));
    }
    for (principal, hash) in pins {
        text.push_str(&format!(
            "\n[[pin_principals]]\nprincipal = {}\npin_hash = {}\n",
            json!(principal),
            json!(hash)
        ));
    }
    text
}

/// Alice's and bob's PINs as `[[pin_principals]]`, hashed with kms-core.
fn alice_and_bob(setup: &Setup) -> Vec<(String, String)> {
    [("alice", ALICE_PIN), ("bob", BOB_PIN)]
        .iter()
        .map(|(user, pin)| {
            (
                setup.user(user),
                kms_core::hash_pin(pin.as_bytes()).expect("hash a PIN"),
            )
        })
        .collect()
}

/// Runs `role` of `test` in a child with the configuration file `config`; fails with the child's
/// output and the module log's tail if it failed.
fn run_role(test: &str, role: &str, fx: &Fixture, config: &Path) {
    let out = run_child(
        test,
        role,
        &[
            ("TESSERA_PKCS11_CONFIG", config.as_os_str().to_owned()),
            (harness::DIR_ENV, fx.dir.clone().into_os_string()),
        ],
    );
    if !out.passed() {
        let log = fx.log_text();
        let lines: Vec<&str> = log.lines().collect();
        panic!(
            "{test} [{role}] failed in its child process:\n{}\n--- module.log (last lines)\n{}",
            out.describe(),
            lines[lines.len().saturating_sub(60)..].join("\n")
        );
    }
}

/// A fresh work directory: store, configurations, module log (kept for a look when
/// `TESSERA_MODULE_TEST_KEEP` is set).
fn work_dir(test: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("tessera-policies-{test}-"))
        .tempdir()
        .expect("a temporary directory");
    if std::env::var_os("TESSERA_MODULE_TEST_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    dir
}

// ---------------------------------------------------------------- module helpers (children)

/// The loaded module after a successful C_Initialize(NULL).
fn start() -> &'static Library {
    let p = library();
    assert_rv!(p.initialize(), CKR_OK, "C_Initialize(NULL) with {}", p.path.display());
    p
}

/// The one object of `class` labelled `label`.
fn find_one(p: &Library, s: CK_SESSION_HANDLE, label: &str, class: CK_OBJECT_CLASS) -> CK_OBJECT_HANDLE {
    let found = ok(
        p.find(s, &[Attr::label(label), Attr::class(class)]),
        &format!("C_FindObjects({label})"),
    );
    assert_eq!(found.len(), 1, "objects of class {class} labelled {label:?}: {found:?}");
    found[0]
}

/// The objects of a class the session sees.
fn count_class(p: &Library, s: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS) -> usize {
    ok(p.find(s, &[Attr::class(class)]), "C_FindObjects(class)").len()
}

/// Checks a raw `r || s` ECDSA P-256 signature of `message` (SHA-256) against a GetPublicKey PEM.
fn assert_ecdsa(pem: &str, message: &[u8], signature: &[u8], what: &str) {
    let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem).expect("a P-256 public key PEM");
    assert_eq!(signature.len(), 64, "{what}: an ECDSA P-256 signature is r || s");
    let sig = p256::ecdsa::Signature::from_slice(signature).unwrap_or_else(|e| panic!("{what}: not r || s: {e}"));
    key.verify(message, &sig)
        .unwrap_or_else(|e| panic!("{what}: p256 rejects the signature: {e}"));
}

/// CKM_ECDSA_SHA256.
fn ecdsa() -> Mech {
    Mech::new(CKM_ECDSA_SHA256)
}

/// AES-GCM with a fixed IV and AAD (the module takes the caller's IV).
fn gcm() -> Mech {
    Mech::gcm(&[0x42; 12], b"policies test", 128)
}

/// The token's key objects, found by label in a session (any login).
struct Handles {
    alice_signer: CK_OBJECT_HANDLE,
    alice_signer_pub: CK_OBJECT_HANDLE,
    team_signer: CK_OBJECT_HANDLE,
    team_signer_pub: CK_OBJECT_HANDLE,
    alice_vault: CK_OBJECT_HANDLE,
    team_vault: CK_OBJECT_HANDLE,
}

fn handles(p: &Library, s: CK_SESSION_HANDLE) -> Handles {
    Handles {
        alice_signer: find_one(p, s, "alice-signer", CKO_PRIVATE_KEY),
        alice_signer_pub: find_one(p, s, "alice-signer", CKO_PUBLIC_KEY),
        team_signer: find_one(p, s, "team-signer", CKO_PRIVATE_KEY),
        team_signer_pub: find_one(p, s, "team-signer", CKO_PUBLIC_KEY),
        alice_vault: find_one(p, s, "alice-vault", CKO_SECRET_KEY),
        team_vault: find_one(p, s, "team-vault", CKO_SECRET_KEY),
    }
}

// ---------------------------------------------------------------- audit helpers (parent)

/// Every call in the audit trail of a principal, oldest first.
fn events_of(kms: &Kms, principal: &str) -> Vec<AuditEvent> {
    let mut all = Vec::new();
    for page in 1.. {
        let answer = kms
            .lookup_events(&LookupEventsRequest {
                principal: Some(principal.to_owned()),
                page_number: Some(page),
                page_size: Some(100),
                ..LookupEventsRequest::default()
            })
            .unwrap_or_else(|e| panic!("LookupEvents --Principal {principal}: {e}"));
        let n = answer.events.event.len();
        all.extend(answer.events.event);
        if n < 100 {
            assert_eq!(all.len() as u64, answer.total_count, "TotalCount of {principal}");
            break;
        }
    }
    all.reverse();
    // An event of `Count` identical calls in a row (one millisecond) is that many calls.
    all.into_iter()
        .flat_map(|e| {
            let n = usize::try_from(e.count).expect("a count");
            assert!(n >= 1, "{e:?} stands for no call");
            std::iter::repeat_n(e, n)
        })
        .collect()
}

/// (Action, key label, Result, ErrorCode) of each event, for comparing with what the children did.
fn summary(setup: &Setup, events: &[AuditEvent]) -> Vec<(String, String, String, Option<String>)> {
    events
        .iter()
        .map(|e| {
            let label = setup
                .keys
                .iter()
                .find(|(_, k)| e.key_id.as_deref() == Some(k.id.as_str()))
                .map_or_else(|| format!("{:?}", e.key_id), |(l, _)| l.clone());
            (e.action.clone(), label, e.result.clone(), e.error_code.clone())
        })
        .collect()
}

/// An expected event.
fn ev(action: &str, label: &str, allowed: bool) -> (String, String, String, Option<String>) {
    (
        action.to_owned(),
        label.to_owned(),
        if allowed { "Success" } else { "Failure" }.to_owned(),
        (!allowed).then(|| NO_PERMISSION.to_owned()),
    )
}

/// Multiset view of events, in the order given.
fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

// ================================================================ 1. PINs as principals

const PINS_TEST: &str = "pins_act_as_their_principals_under_their_policies";

#[test]
fn pins_act_as_their_principals_under_their_policies() {
    if let Some(role) = role() {
        let fx = Fixture::of_child();
        let setup = Setup::load(&fx.dir);
        match role.as_str() {
            "root_token_pin" => alice_bob_and_the_root(&setup),
            "carol_token_pin" => carol_and_public_sessions(&setup),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let tmp = work_dir(PINS_TEST);
    let fx = Fixture {
        dir: tmp.path().to_path_buf(),
    };
    let setup = prepare_store(&fx.store());
    setup.save(&fx.dir);
    let pins = alice_and_bob(&setup);

    // The token's PIN acts as the account root (no `principal`).
    let root_config = fx.dir.join("root.toml");
    std::fs::write(&root_config, config_text(&fx, None, &pins)).expect("write the configuration");
    run_role(PINS_TEST, "root_token_pin", &fx, &root_config);

    // The token's PIN acts as carol.
    let carol_config = fx.dir.join("carol.toml");
    std::fs::write(&carol_config, config_text(&fx, Some(&setup.user("carol")), &pins))
        .expect("write the configuration");
    run_role(PINS_TEST, "carol_token_pin", &fx, &carol_config);

    // The audit trail, read after both children finalized the module.
    let kms = Kms::open(fx.store()).expect("open the store");
    let alice = events_of(&kms, &setup.user("alice"));
    let bob = events_of(&kms, &setup.user("bob"));
    let carol = events_of(&kms, &setup.user("carol"));
    let root = events_of(&kms, &setup.root());

    for (who, events) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        for e in events {
            assert_eq!(e.principal, setup.user(who), "{who}'s events name {who}: {e:?}");
            let key = setup
                .keys
                .values()
                .find(|k| e.key_id.as_deref() == Some(k.id.as_str()))
                .unwrap_or_else(|| panic!("{who}'s event names none of the keys: {e:?}"));
            assert!(
                e.resource.split(',').any(|r| r == key.arn),
                "{who}'s event's Resource is the key's ARN {}: {e:?}",
                key.arn
            );
            assert_eq!(
                e.result == "Success",
                e.error_code.is_none(),
                "a Failure and only a Failure has an ErrorCode: {e:?}"
            );
        }
    }

    let expected_alice = [
        // root_token_pin
        ev("AsymmetricSign", "alice-signer", true),
        ev("AsymmetricSign", "alice-signer", true),
        ev("AsymmetricSign", "team-signer", false),
        ev("AsymmetricSign", "team-signer", false),
        ev("AsymmetricSign", "team-signer", false),
        ev("AsymmetricVerify", "alice-signer", false),
        ev("Encrypt", "alice-vault", true),
        ev("Decrypt", "alice-vault", true),
        ev("Encrypt", "team-vault", false),
        ev("Decrypt", "team-vault", false),
        // carol_token_pin
        ev("AsymmetricSign", "alice-signer", true),
    ];
    assert_eq!(
        summary(&setup, &alice),
        expected_alice,
        "alice's audit trail, oldest first"
    );

    let expected_bob = [
        ev("AsymmetricSign", "alice-signer", false),
        ev("AsymmetricSign", "team-signer", false),
        ev("AsymmetricVerify", "alice-signer", false),
        ev("Encrypt", "alice-vault", false),
        ev("Decrypt", "alice-vault", false),
        ev("Encrypt", "team-vault", false),
    ];
    assert_eq!(summary(&setup, &bob), expected_bob, "bob's audit trail, oldest first");

    let expected_carol = [
        ev("AsymmetricSign", "team-signer", true),
        ev("AsymmetricSign", "alice-signer", false),
        ev("Encrypt", "alice-vault", false),
        ev("AsymmetricVerify", "team-signer", true),
        ev("AsymmetricVerify", "alice-signer", false),
    ];
    assert_eq!(
        summary(&setup, &carol),
        expected_carol,
        "carol's audit trail (token PIN and public session), oldest first"
    );

    // The root's key uses through the module (its setup calls are audited too, without these
    // actions on these keys).
    let root_uses: Vec<_> = summary(&setup, &root)
        .into_iter()
        .filter(|(action, ..)| ["AsymmetricSign", "AsymmetricVerify", "Encrypt", "Decrypt"].contains(&action.as_str()))
        .collect();
    assert_eq!(
        sorted(&root_uses),
        sorted(&[
            ev("AsymmetricSign", "alice-signer", true),
            ev("AsymmetricSign", "team-signer", true),
            ev("Decrypt", "alice-vault", true),
            ev("Encrypt", "team-vault", true),
            ev("AsymmetricVerify", "alice-signer", true),
        ]),
        "the root's key uses through the module"
    );

    // The filters combine: bob's denied Encrypts, and everything done with team-signer.
    let bob_encrypts = kms
        .lookup_events(&LookupEventsRequest {
            principal: Some(setup.user("bob")),
            action: Some("Encrypt".into()),
            ..LookupEventsRequest::default()
        })
        .expect("LookupEvents --Principal bob --Action Encrypt");
    let calls = |r: &kms_core::api::LookupEventsResponse| r.events.event.iter().map(|e| e.count).sum::<u64>();
    assert_eq!(calls(&bob_encrypts), 2, "{bob_encrypts:?}");
    assert!(
        bob_encrypts
            .events
            .event
            .iter()
            .all(|e| e.action == "Encrypt" && e.error_code.as_deref() == Some(NO_PERMISSION)),
        "{bob_encrypts:?}"
    );
    let team_signer = kms
        .lookup_events(&LookupEventsRequest {
            key_id: Some("alias/team-signer".into()),
            page_size: Some(100),
            ..LookupEventsRequest::default()
        })
        .expect("LookupEvents --KeyId alias/team-signer");
    let denied: Vec<&str> = team_signer
        .events
        .event
        .iter()
        .filter(|e| e.result == "Failure")
        .flat_map(|e| std::iter::repeat_n(e.principal.as_str(), usize::try_from(e.count).expect("a count")))
        .collect();
    assert_eq!(
        sorted(&denied),
        sorted(&[
            setup.user("alice").as_str(),
            setup.user("alice").as_str(),
            setup.user("alice").as_str(),
            setup.user("bob").as_str(),
        ]),
        "who was refused team-signer: {team_signer:?}"
    );
}

/// Child, with the token's PIN acting as the root: alice, bob, a wrong PIN, then the token PIN.
fn alice_bob_and_the_root(setup: &Setup) {
    let p = start();
    let s = ok(p.open_session(true), "C_OpenSession(RW)");
    let public_keys = count_class(p, s, CKO_PUBLIC_KEY);
    assert_eq!(public_keys, 2, "a public session sees the two EC public keys");

    // Wrong PINs: neither the token's nor a configured one; alice's PIN is no SO PIN.
    assert_rv!(
        p.login(s, CKU_USER, WRONG_PIN),
        CKR_PIN_INCORRECT,
        "C_Login(USER) with a PIN nobody has"
    );
    assert_rv!(
        p.login(s, CKU_SO, ALICE_PIN.as_bytes()),
        CKR_PIN_INCORRECT,
        "C_Login(SO) with alice's user PIN"
    );

    // ---- alice
    assert_rv!(
        p.login(s, CKU_USER, ALICE_PIN.as_bytes()),
        CKR_OK,
        "C_Login(USER) with alice's PIN"
    );
    assert_eq!(
        ok(p.session_info(s), "C_GetSessionInfo").state,
        CKS_RW_USER_FUNCTIONS,
        "alice is a normal user"
    );
    let h = handles(p, s);
    let sig = ok(
        p.sign(s, &ecdsa(), h.alice_signer, MESSAGE),
        "alice: C_Sign with alice-signer",
    );
    assert_ecdsa(
        &setup.key("alice-signer").pem,
        MESSAGE,
        &sig,
        "alice's signature with alice-signer",
    );
    let parts: [&[u8]; 2] = [&MESSAGE[..10], &MESSAGE[10..]];
    let multi = ok(
        p.sign_parts(s, &ecdsa(), h.alice_signer, &parts),
        "alice: multi-part signature with alice-signer",
    );
    assert_ecdsa(
        &setup.key("alice-signer").pem,
        MESSAGE,
        &multi,
        "alice's multi-part signature",
    );
    assert_err!(
        p.sign(s, &ecdsa(), h.team_signer, MESSAGE),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "alice: C_Sign with team-signer"
    );
    // The refusal ended the operation: a new one starts (and is refused again).
    assert_err!(
        p.sign(s, &ecdsa(), h.team_signer, MESSAGE),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "alice: C_Sign with team-signer, again"
    );
    assert_err!(
        p.sign_parts(s, &ecdsa(), h.team_signer, &parts),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "alice: multi-part signature with team-signer"
    );
    // Signing is allowed, verifying is not (her policy names AsymmetricSign only).
    assert_rv!(
        p.verify(s, &ecdsa(), h.alice_signer_pub, MESSAGE, &sig),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "alice: C_Verify with alice-signer (no kms:AsymmetricVerify)"
    );
    let ct = ok(
        p.encrypt(s, &gcm(), h.alice_vault, MESSAGE),
        "alice: C_Encrypt with alice-vault",
    );
    assert_eq!(
        ok(
            p.decrypt(s, &gcm(), h.alice_vault, &ct),
            "alice: C_Decrypt with alice-vault"
        ),
        MESSAGE
    );
    assert_err!(
        p.encrypt(s, &gcm(), h.team_vault, MESSAGE),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "alice: C_Encrypt with team-vault"
    );
    assert_err!(
        p.decrypt(s, &gcm(), h.team_vault, &ct),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "alice: C_Decrypt with team-vault (refused before the ciphertext is looked at)"
    );
    assert_rv!(p.logout(s), CKR_OK, "C_Logout(alice)");

    // ---- bob: every object is listed, every use refused.
    assert_rv!(
        p.login(s, CKU_USER, BOB_PIN.as_bytes()),
        CKR_OK,
        "C_Login(USER) with bob's PIN"
    );
    assert_eq!(count_class(p, s, CKO_PRIVATE_KEY), 2, "bob sees both private keys");
    assert_eq!(count_class(p, s, CKO_SECRET_KEY), 2, "bob sees both secret keys");
    assert_eq!(count_class(p, s, CKO_PUBLIC_KEY), 2, "bob sees both public keys");
    let hb = handles(p, s);
    assert_eq!(
        ok(p.attr(s, hb.alice_signer, CKA_ID), "bob: CKA_ID of alice-signer"),
        setup.key("alice-signer").version.as_bytes(),
        "bob reads the attributes"
    );
    assert!(
        !ok(p.attr(s, hb.alice_signer_pub, CKA_EC_POINT), "bob: CKA_EC_POINT").is_empty(),
        "bob reads the public key"
    );
    assert_err!(
        p.sign(s, &ecdsa(), hb.alice_signer, MESSAGE),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "bob: C_Sign with alice-signer"
    );
    assert_err!(
        p.sign(s, &ecdsa(), hb.team_signer, MESSAGE),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "bob: C_Sign with team-signer"
    );
    assert_rv!(
        p.verify(s, &ecdsa(), hb.alice_signer_pub, MESSAGE, &sig),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "bob: C_Verify with alice-signer"
    );
    assert_err!(
        p.encrypt(s, &gcm(), hb.alice_vault, MESSAGE),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "bob: C_Encrypt with alice-vault"
    );
    assert_err!(
        p.decrypt(s, &gcm(), hb.alice_vault, &ct),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "bob: C_Decrypt of alice's ciphertext"
    );
    assert_err!(
        p.encrypt(s, &gcm(), hb.team_vault, MESSAGE),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "bob: C_Encrypt with team-vault"
    );
    assert_rv!(p.logout(s), CKR_OK, "C_Logout(bob)");

    // ---- the token's PIN: the account root, who may do everything.
    assert_rv!(
        p.login(s, CKU_USER, TOKEN_PIN),
        CKR_OK,
        "C_Login(USER) with the token's PIN"
    );
    let hr = handles(p, s);
    let root_sig = ok(
        p.sign(s, &ecdsa(), hr.alice_signer, MESSAGE),
        "root: C_Sign with alice-signer",
    );
    assert_ecdsa(&setup.key("alice-signer").pem, MESSAGE, &root_sig, "root's signature");
    let team_sig = ok(
        p.sign(s, &ecdsa(), hr.team_signer, MESSAGE),
        "root: C_Sign with team-signer",
    );
    assert_ecdsa(
        &setup.key("team-signer").pem,
        MESSAGE,
        &team_sig,
        "root's team signature",
    );
    assert_eq!(
        ok(
            p.decrypt(s, &gcm(), hr.alice_vault, &ct),
            "root: C_Decrypt of alice's ciphertext"
        ),
        MESSAGE
    );
    ok(
        p.encrypt(s, &gcm(), hr.team_vault, MESSAGE),
        "root: C_Encrypt with team-vault",
    );
    assert_rv!(p.logout(s), CKR_OK, "C_Logout(root)");

    // A public session acts as the token's principal too: here the root, who may verify.
    assert_rv!(
        p.verify(s, &ecdsa(), hr.alice_signer_pub, MESSAGE, &sig),
        CKR_OK,
        "public session (root): C_Verify of alice's signature"
    );
    assert_rv!(p.close_session(s), CKR_OK, "C_CloseSession");
    assert_rv!(p.finalize(), CKR_OK, "C_Finalize");
}

/// Child, with the token's PIN acting as carol: carol, a public session, and alice again.
fn carol_and_public_sessions(setup: &Setup) {
    let p = start();
    let s = ok(p.open_session(true), "C_OpenSession(RW)");

    // The token's PIN is carol now.
    assert_rv!(
        p.login(s, CKU_USER, TOKEN_PIN),
        CKR_OK,
        "C_Login(USER) with the token's PIN (carol)"
    );
    let h = handles(p, s);
    let sig = ok(
        p.sign(s, &ecdsa(), h.team_signer, MESSAGE),
        "carol: C_Sign with team-signer",
    );
    assert_ecdsa(&setup.key("team-signer").pem, MESSAGE, &sig, "carol's signature");
    assert_err!(
        p.sign(s, &ecdsa(), h.alice_signer, MESSAGE),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "carol: C_Sign with alice-signer"
    );
    assert_err!(
        p.encrypt(s, &gcm(), h.alice_vault, MESSAGE),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "carol: C_Encrypt with alice-vault"
    );
    assert_rv!(p.logout(s), CKR_OK, "C_Logout(carol)");

    // A public session acts as carol: she may verify with team-signer only.
    assert_rv!(
        p.verify(s, &ecdsa(), h.team_signer_pub, MESSAGE, &sig),
        CKR_OK,
        "public session (carol): C_Verify with team-signer"
    );
    assert_rv!(
        p.verify(s, &ecdsa(), h.alice_signer_pub, MESSAGE, &sig),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "public session (carol): C_Verify with alice-signer"
    );

    // Alice's PIN still acts as alice whoever the token's PIN is.
    assert_rv!(
        p.login(s, CKU_USER, ALICE_PIN.as_bytes()),
        CKR_OK,
        "C_Login(USER) with alice's PIN"
    );
    let alice_sig = ok(
        p.sign(s, &ecdsa(), h.alice_signer, MESSAGE),
        "alice: C_Sign with alice-signer",
    );
    assert_ecdsa(&setup.key("alice-signer").pem, MESSAGE, &alice_sig, "alice's signature");
    assert_rv!(p.close_session(s), CKR_OK, "C_CloseSession");
    assert_rv!(p.finalize(), CKR_OK, "C_Finalize");
}

// ================================================================ 2. creating and destroying keys

const LIFECYCLE_TEST: &str = "creating_and_destroying_token_keys_is_authorized";

#[test]
fn creating_and_destroying_token_keys_is_authorized() {
    if let Some(role) = role() {
        assert_eq!(role, "bob_creates_and_destroys");
        bob_creates_and_destroys();
        return;
    }
    let tmp = work_dir(LIFECYCLE_TEST);
    let fx = Fixture {
        dir: tmp.path().to_path_buf(),
    };
    let setup = prepare_store(&fx.store());
    setup.save(&fx.dir);
    let config = fx.dir.join("pkcs11.toml");
    std::fs::write(&config, config_text(&fx, None, &alice_and_bob(&setup))).expect("write the configuration");
    run_role(LIFECYCLE_TEST, "bob_creates_and_destroys", &fx, &config);

    // Nothing changed in the KMS on bob's behalf.
    let kms = Kms::open(fx.store()).expect("open the store");
    let keys = kms
        .list_keys(&kms_core::api::PageRequest {
            page_number: None,
            page_size: Some(100),
        })
        .expect("ListKeys");
    assert_eq!(keys.total_count, KEYS.len() as u64, "bob created no KMS key: {keys:?}");
    for label in ["alice-signer", "alice-vault"] {
        let meta = kms
            .describe_key(&KeyIdRequest::new(&setup.key(label).id))
            .expect("DescribeKey")
            .key_metadata;
        assert_eq!(
            meta.key_state,
            Some(kms_core::model::KeyState::Enabled),
            "bob's C_DestroyObject left {label} alone"
        );
    }
    // What bob tried is in the audit trail under his name, refused.
    let bob = events_of(&kms, &setup.user("bob"));
    let actions: Vec<(&str, &str)> = bob
        .iter()
        .map(|e| (e.action.as_str(), e.error_code.as_deref().unwrap_or("Success")))
        .collect();
    for wanted in ["CreateKey", "ScheduleKeyDeletion"] {
        assert!(
            actions.contains(&(wanted, NO_PERMISSION)),
            "bob's refused {wanted} is audited under his name: {actions:?}"
        );
    }
    assert!(
        bob.iter().all(|e| e.result == "Failure"),
        "nothing bob tried succeeded: {actions:?}"
    );
}

/// Child: bob (no policy) tries to make and destroy token keys. Every attempt is made before
/// anything is asserted, so that a failure reports all of them.
fn bob_creates_and_destroys() {
    let p = start();
    let s = ok(p.open_session(true), "C_OpenSession(RW)");
    assert_rv!(
        p.login(s, CKU_USER, BOB_PIN.as_bytes()),
        CKR_OK,
        "C_Login(USER) with bob's PIN"
    );
    let aes = |token: bool, label: &str| {
        vec![
            Attr::class(CKO_SECRET_KEY),
            Attr::ulong(CKA_KEY_TYPE, CKK_AES),
            Attr::ulong(CKA_VALUE_LEN, 32),
            Attr::bool(CKA_TOKEN, token),
            Attr::bool(CKA_ENCRYPT, true),
            Attr::bool(CKA_DECRYPT, true),
            Attr::label(label),
        ]
    };
    let ec_params: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let ec_public = [
        Attr::bool(CKA_TOKEN, true),
        Attr::bool(CKA_VERIFY, true),
        Attr::bytes(CKA_EC_PARAMS, ec_params),
        Attr::label("bobs-pair"),
    ];
    let ec_private = [
        Attr::bool(CKA_TOKEN, true),
        Attr::bool(CKA_SIGN, true),
        Attr::bool(CKA_SENSITIVE, true),
        Attr::label("bobs-pair"),
    ];
    let generated = p.generate_key(s, &Mech::new(CKM_AES_KEY_GEN), &aes(true, "bobs-own"));
    let generated_pair = p.generate_key_pair(s, &Mech::new(CKM_EC_KEY_PAIR_GEN), &ec_public, &ec_private);
    let destroyed_private = p.destroy(s, find_one(p, s, "alice-signer", CKO_PRIVATE_KEY));
    let destroyed_secret = p.destroy(s, find_one(p, s, "alice-vault", CKO_SECRET_KEY));

    let mut wrong = Vec::new();
    let mut expect_refused = |what: &str, rv: CK_RV| {
        if rv != CKR_KEY_FUNCTION_NOT_PERMITTED {
            wrong.push(format!(
                "bob: {what}: got {}, expected CKR_KEY_FUNCTION_NOT_PERMITTED",
                p11::rv_name(rv)
            ));
        }
    };
    expect_refused(
        "C_GenerateKey of a token AES key (no kms:CreateKey)",
        generated.err().unwrap_or(CKR_OK),
    );
    expect_refused(
        "C_GenerateKeyPair of a token EC key pair (no kms:CreateKey)",
        generated_pair.err().unwrap_or(CKR_OK),
    );
    expect_refused(
        "C_DestroyObject of alice-signer (no kms:ScheduleKeyDeletion)",
        destroyed_private,
    );
    expect_refused(
        "C_DestroyObject of alice-vault (no kms:ScheduleKeyDeletion)",
        destroyed_secret,
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // What never reaches the KMS stays bob's to do: a session key, and cryptography with it.
    let session_key = ok(
        p.generate_key(s, &Mech::new(CKM_AES_KEY_GEN), &aes(false, "bobs-session")),
        "bob: C_GenerateKey of a session key",
    );
    let ct = ok(
        p.encrypt(s, &gcm(), session_key, MESSAGE),
        "bob: C_Encrypt with a session key",
    );
    assert_eq!(
        ok(
            p.decrypt(s, &gcm(), session_key, &ct),
            "bob: C_Decrypt with a session key"
        ),
        MESSAGE
    );
    assert_rv!(p.close_session(s), CKR_OK, "C_CloseSession");
    assert_rv!(p.finalize(), CKR_OK, "C_Finalize");
}

// ================================================================ 3. the configuration is checked

const CONFIG_TEST: &str = "malformed_principals_and_pin_hashes_fail_initialize";

#[test]
fn malformed_principals_and_pin_hashes_fail_initialize() {
    if let Some(role) = role() {
        let p = library();
        let config = std::env::var_os("TESSERA_PKCS11_CONFIG");
        match role.as_str() {
            "config_error" => {
                assert_rv!(p.initialize(), CKR_GENERAL_ERROR, "C_Initialize with {config:?}");
                assert_err!(
                    p.info(),
                    CKR_CRYPTOKI_NOT_INITIALIZED,
                    "C_GetInfo after a failed C_Initialize"
                );
            }
            "config_ok" => {
                assert_rv!(p.initialize(), CKR_OK, "C_Initialize with {config:?}");
                assert_rv!(p.finalize(), CKR_OK, "C_Finalize");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let tmp = work_dir(CONFIG_TEST);
    let fx = Fixture {
        dir: tmp.path().to_path_buf(),
    };
    // A store that opens, so that only the mapping can be wrong.
    let account = Kms::open(fx.store()).expect("create the store").account_id().to_owned();
    let alice = format!("acs:ram::{account}:user/alice");
    let hash = kms_core::hash_pin(ALICE_PIN.as_bytes()).expect("hash a PIN");
    let base = config_text(&fx, None, &[]);
    let entry = |principal: &str, pin_hash: &str| {
        format!(
            "\n[[pin_principals]]\nprincipal = {}\npin_hash = {}\n",
            json!(principal),
            json!(pin_hash)
        )
    };
    let with_principal =
        |principal: &str| base.replacen("log_level", &format!("principal = {}\nlog_level", json!(principal)), 1);

    let run = |name: &str, role: &str, contents: String| -> harness::ChildOutput {
        let path = fx.dir.join(format!("{name}.toml"));
        std::fs::write(&path, contents).expect("write the configuration");
        run_child(
            CONFIG_TEST,
            role,
            &[
                ("TESSERA_PKCS11_CONFIG", path.into_os_string()),
                (harness::DIR_ENV, fx.dir.clone().into_os_string()),
            ],
        )
    };

    // Well-formed mappings initialise (so the failures below are the mappings' doing).
    let good = format!(
        "{}{}",
        with_principal(&format!("acs:ram::{account}:role/ops")),
        entry(&alice, &hash)
    );
    let out = run("good", "config_ok", good);
    assert!(out.passed(), "a well-formed mapping:\n{}", out.describe());

    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "principal_not_an_arn",
            with_principal("alice"),
            vec!["principal", "\"alice\"", "not a RAM principal"],
        ),
        (
            "principal_bad_account",
            with_principal("acs:ram::12ab:user/alice"),
            vec!["principal", "12ab"],
        ),
        (
            "principal_bad_kind",
            with_principal(&format!("acs:ram::{account}:group/admins")),
            vec!["principal", "group/admins"],
        ),
        (
            "pin_principal_not_an_arn",
            format!("{base}{}", entry("user/alice", &hash)),
            vec!["pin_principals.principal", "user/alice"],
        ),
        (
            "pin_principal_empty",
            format!("{base}{}", entry("", &hash)),
            vec!["pin_principals.principal"],
        ),
        (
            "pin_hash_is_a_pin",
            format!("{base}{}", entry(&alice, ALICE_PIN)),
            vec!["pin_hash", "tessera token hash-pin"],
        ),
        (
            "pin_hash_not_hex",
            format!("{base}{}", entry(&alice, "argon2id-v19-m19456-t2-p1$zz$00")),
            vec!["pin_hash", &alice],
        ),
        (
            "pin_hash_other_scheme",
            format!("{base}{}", entry(&alice, &hash.replacen("argon2id", "argon2i", 1))),
            vec!["pin_hash"],
        ),
        (
            "pin_hash_missing",
            format!("{base}\n[[pin_principals]]\nprincipal = {}\n", json!(alice)),
            vec!["pin_hash"],
        ),
        (
            "pin_principal_unknown_field",
            format!("{base}{}pin = \"alice-pin-1\"\n", entry(&alice, &hash)),
            vec!["`pin`"],
        ),
    ];
    for (name, contents, says) in cases {
        let out = run(name, "config_error", contents);
        assert!(out.passed(), "configuration case {name}:\n{}", out.describe());
        for s in says {
            assert!(
                out.stderr.contains(s),
                "configuration case {name}: standard error does not say {s:?}:\n{}",
                out.stderr
            );
        }
        // The message names the mistake, never the hash's value (here: a PIN written in its place).
        if name != "pin_principal_unknown_field" {
            assert!(
                !out.stderr.contains(ALICE_PIN),
                "configuration case {name}: the PIN is in the error:\n{}",
                out.stderr
            );
        }
    }
}

// ================================================================ 4. pkcs11-tool

/// Runs `pkcs11-tool --module … --token-label … args…` with the target's environment.
fn pkcs11_tool(target: &common::Target, args: &[&str]) -> common::ToolOutput {
    let mut all = vec!["--token-label", common::TOKEN_LABEL];
    all.extend_from_slice(args);
    target.pkcs11_tool(&all)
}

#[test]
fn pkcs11_tool_signs_with_a_pin_principal_only_where_allowed() {
    const TEST: &str = "pkcs11_tool_signs_with_a_pin_principal_only_where_allowed";
    if !common::require(TEST, &["pkcs11-tool"]) {
        return;
    }
    let target = common::Target::tessera();
    let store = target.store().expect("a Tessera store").to_path_buf();
    let (account, signer, other) = {
        let kms = Kms::open(&store).expect("create the store");
        let setup = create_keys(&kms);
        give(
            &kms,
            "alice",
            "alice-signing",
            allow(&["kms:AsymmetricSign"], &[&setup.key("alice-signer").arn]),
        );
        (
            setup.account.clone(),
            setup.key("alice-signer").clone(),
            setup.key("team-signer").clone(),
        )
    };
    target.init_token();

    // alice's PIN, hashed by `tessera token hash-pin`.
    let hashed = target.tessera_ok(&["token", "hash-pin", "--pin", ALICE_PIN]);
    let hash = hashed["PinHash"]
        .as_str()
        .unwrap_or_else(|| panic!("no PinHash in {hashed}"))
        .to_owned();
    let config = target.path("tessera-pkcs11.toml");
    let mut text = std::fs::read_to_string(&config).expect("read the target's configuration");
    text.push_str(&format!(
        "\n[[pin_principals]]\nprincipal = {}\npin_hash = {}\n",
        json!(format!("acs:ram::{account}:user/alice")),
        json!(hash)
    ));
    std::fs::write(&config, text).expect("write the configuration");

    let data = target.path("data.bin");
    std::fs::write(&data, MESSAGE).expect("write the data");
    let sign = |key: &Key, pin: &str, out: &Path| {
        pkcs11_tool(
            &target,
            &[
                "--login",
                "--pin",
                pin,
                "--sign",
                "-m",
                "ECDSA-SHA256",
                "--id",
                &hex::encode(key.version.as_bytes()),
                "-i",
                &data.display().to_string(),
                "-o",
                &out.display().to_string(),
            ],
        )
    };

    let allowed_sig = target.path("allowed.sig");
    let out = sign(&signer, ALICE_PIN, &allowed_sig);
    assert!(
        out.success(),
        "alice signs with alice-signer:\n{}\n{}",
        out.describe(),
        target.diagnostics()
    );
    let signature = std::fs::read(&allowed_sig).expect("read the signature");
    assert_ecdsa(&signer.pem, MESSAGE, &signature, "pkcs11-tool's signature as alice");

    let denied_sig = target.path("denied.sig");
    let out = sign(&other, ALICE_PIN, &denied_sig);
    assert!(!out.success(), "alice signs with team-signer:\n{}", out.describe());
    assert!(
        out.all().contains("CKR_KEY_FUNCTION_NOT_PERMITTED"),
        "the refusal is CKR_KEY_FUNCTION_NOT_PERMITTED:\n{}",
        out.describe()
    );
    assert!(
        std::fs::read(&denied_sig).unwrap_or_default().is_empty(),
        "no signature was written"
    );

    let out = sign(&signer, "not-alices-pin", &target.path("wrong.sig"));
    assert!(!out.success(), "a wrong PIN signs:\n{}", out.describe());
    assert!(
        out.all().contains("CKR_PIN_INCORRECT"),
        "a wrong PIN is CKR_PIN_INCORRECT:\n{}",
        out.describe()
    );

    // The token's own PIN is the root's: it signs with either key.
    let root_sig = target.path("root.sig");
    let out = sign(&other, common::USER_PIN, &root_sig);
    assert!(
        out.success(),
        "the token's PIN signs with team-signer:\n{}",
        out.describe()
    );
    assert_ecdsa(
        &other.pem,
        MESSAGE,
        &std::fs::read(&root_sig).expect("read the signature"),
        "pkcs11-tool's signature as the root",
    );

    // The audit trail has alice's signature and her refusal, under her name.
    let kms = Kms::open(&store).expect("open the store");
    let events = events_of(&kms, &format!("acs:ram::{account}:user/alice"));
    let seen: Vec<(String, Option<String>, String, Option<String>)> = events
        .iter()
        .map(|e| {
            (
                e.action.clone(),
                e.key_id.clone(),
                e.result.clone(),
                e.error_code.clone(),
            )
        })
        .collect();
    assert!(
        seen.contains(&("AsymmetricSign".into(), Some(signer.id.clone()), "Success".into(), None)),
        "alice's signature is audited: {seen:?}"
    );
    assert!(
        seen.contains(&(
            "AsymmetricSign".into(),
            Some(other.id.clone()),
            "Failure".into(),
            Some(NO_PERMISSION.into())
        )),
        "alice's refused signature is audited, though pkcs11-tool exits right after it: {seen:?}"
    );
}
