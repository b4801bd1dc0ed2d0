//! The `tessera` binary end to end: every API action through the command line, the error
//! contract (exit status 1, a JSON error with the API's code on stderr), and the admin commands.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{b64, bytes, command, create_key, err, is_request_id, ok, run_raw, split, tessera, text};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// A store plus the actions called successfully on it, to check that every action was covered.
struct Session {
    dir: TempDir,
    called: BTreeSet<String>,
}

impl Session {
    fn new() -> Self {
        Session {
            dir: TempDir::new().expect("temp dir"),
            called: BTreeSet::new(),
        }
    }

    fn store(&self) -> &Path {
        self.dir.path()
    }

    /// An action that must succeed; recorded as covered.
    fn ok(&mut self, args: &[&str]) -> Value {
        let value = ok(self.dir.path(), args);
        self.called.insert(args[0].to_owned());
        value
    }

    /// An action that must fail with `code`.
    fn err(&self, args: &[&str], code: &str) -> Value {
        err(self.dir.path(), args, code)
    }
}

/// The actions `tessera actions` lists.
fn listed_actions(store: &Path) -> BTreeSet<String> {
    let (success, out, _) = tessera(store, &["actions"]);
    assert!(success);
    out["Actions"]
        .as_array()
        .expect("an Actions list")
        .iter()
        .map(|a| a.as_str().expect("an action name").to_owned())
        .collect()
}

#[test]
fn every_action_succeeds_through_the_binary() {
    let mut s = Session::new();

    // ---- keys
    let created = s.ok(&[
        "CreateKey",
        "--Description",
        "first key",
        "--Tags",
        r#"[{"TagKey":"k","TagValue":"v"}]"#,
        "--Alias",
        "alias/app",
    ]);
    let key = text(&created, "/KeyMetadata/KeyId");
    let arn = text(&created, "/KeyMetadata/Arn");
    assert_eq!(created["KeyMetadata"]["KeySpec"], "Aliyun_AES_256");
    assert_eq!(created["KeyMetadata"]["KeyUsage"], "ENCRYPT/DECRYPT");
    assert_eq!(created["KeyMetadata"]["KeyState"], "Enabled");
    assert_eq!(created["KeyMetadata"]["Description"], "first key");
    assert!(
        arn.starts_with("acs:kms:") && arn.ends_with(&format!(":key/{key}")),
        "{arn}"
    );

    let described = s.ok(&["DescribeKey", "--KeyId", "alias/app"]);
    assert_eq!(text(&described, "/KeyMetadata/KeyId"), key);
    let by_arn = s.ok(&["DescribeKey", "--KeyId", &arn]);
    assert_eq!(text(&by_arn, "/KeyMetadata/KeyId"), key);

    s.ok(&["UpdateKeyDescription", "--KeyId", &key, "--Description", "renamed"]);
    let described = s.ok(&["DescribeKey", "--KeyId", &key]);
    assert_eq!(described["KeyMetadata"]["Description"], "renamed");

    s.ok(&["DisableKey", "--KeyId", &key]);
    let described = s.ok(&["DescribeKey", "--KeyId", &key]);
    assert_eq!(described["KeyMetadata"]["KeyState"], "Disabled");
    s.ok(&["EnableKey", "--KeyId", &key]);
    let described = s.ok(&["DescribeKey", "--KeyId", &key]);
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");

    // Deletion protection, then a scheduled and cancelled deletion.
    s.ok(&[
        "SetDeletionProtection",
        "--ProtectedResourceArn",
        &arn,
        "--EnableDeletionProtection",
        "true",
        "--DeletionProtectionDescription",
        "keep me",
    ]);
    let described = s.ok(&["DescribeKey", "--KeyId", &key]);
    assert_eq!(described["KeyMetadata"]["DeletionProtection"], "Enabled");
    assert_eq!(described["KeyMetadata"]["DeletionProtectionDescription"], "keep me");
    s.err(
        &["ScheduleKeyDeletion", "--KeyId", &key, "--PendingWindowInDays", "7"],
        "Rejected.StateModifiedFailed",
    );
    s.ok(&[
        "SetDeletionProtection",
        "--ProtectedResourceArn",
        &arn,
        "--EnableDeletionProtection",
        "false",
    ]);
    s.ok(&["ScheduleKeyDeletion", "--KeyId", &key, "--PendingWindowInDays", "7"]);
    let described = s.ok(&["DescribeKey", "--KeyId", &key]);
    assert_eq!(described["KeyMetadata"]["KeyState"], "PendingDeletion");
    assert!(described["KeyMetadata"]["DeleteDate"].is_string(), "{described}");
    s.err(
        &["Encrypt", "--KeyId", &key, "--Plaintext", &b64(b"x")],
        "Rejected.PendingDeletion",
    );
    s.ok(&["CancelKeyDeletion", "--KeyId", &key]);
    let described = s.ok(&["DescribeKey", "--KeyId", &key]);
    assert_eq!(described["KeyMetadata"]["KeyState"], "Disabled");
    assert!(described["KeyMetadata"].get("DeleteDate").is_none(), "{described}");
    s.ok(&["EnableKey", "--KeyId", &key]);

    // ---- symmetric cryptography, before and after a rotation
    let secret = b"attack at dawn";
    let context = r#"{"a":"b"}"#;
    let first = s.ok(&[
        "Encrypt",
        "--KeyId",
        "alias/app",
        "--Plaintext",
        &b64(secret),
        "--EncryptionContext",
        context,
    ]);
    assert_eq!(text(&first, "/KeyId"), key);
    let first_blob = text(&first, "/CiphertextBlob");
    let first_version = text(&first, "/KeyVersionId");

    let decrypted = s.ok(&[
        "Decrypt",
        "--CiphertextBlob",
        &first_blob,
        "--EncryptionContext",
        context,
    ]);
    assert_eq!(bytes(&decrypted, "/Plaintext"), secret);
    assert_eq!(text(&decrypted, "/KeyId"), key);
    s.err(
        &[
            "Decrypt",
            "--CiphertextBlob",
            &first_blob,
            "--EncryptionContext",
            r#"{"a":"c"}"#,
        ],
        "InvalidCiphertext",
    );
    s.err(&["Decrypt", "--CiphertextBlob", &first_blob], "InvalidCiphertext");

    // ---- versions and rotation
    let new_version = s.ok(&["CreateKeyVersion", "--KeyId", &key]);
    let version = text(&new_version, "/KeyVersion/KeyVersionId");
    assert_ne!(version, first_version);
    let described = s.ok(&["DescribeKeyVersion", "--KeyId", &key, "--KeyVersionId", &version]);
    assert_eq!(text(&described, "/KeyVersion/KeyVersionId"), version);
    assert_eq!(text(&described, "/KeyVersion/KeyId"), key);
    let versions = s.ok(&["ListKeyVersions", "--KeyId", &key]);
    assert_eq!(versions["TotalCount"], 2);
    let listed: BTreeSet<String> = versions["KeyVersions"]["KeyVersion"]
        .as_array()
        .expect("a KeyVersion list")
        .iter()
        .map(|v| text(v, "/KeyVersionId"))
        .collect();
    assert_eq!(listed, BTreeSet::from([first_version.clone(), version.clone()]));
    let described = s.ok(&["DescribeKey", "--KeyId", &key]);
    assert_eq!(text(&described, "/KeyMetadata/PrimaryKeyVersion"), version);

    s.ok(&[
        "UpdateRotationPolicy",
        "--KeyId",
        &key,
        "--EnableAutomaticRotation",
        "true",
        "--RotationInterval",
        "30d",
    ]);
    let described = s.ok(&["DescribeKey", "--KeyId", &key]);
    assert_eq!(described["KeyMetadata"]["AutomaticRotation"], "Enabled");
    assert_eq!(described["KeyMetadata"]["RotationInterval"], "2592000s");
    assert!(described["KeyMetadata"]["NextRotationDate"].is_string(), "{described}");

    // The ciphertext made before the rotation still decrypts, under its own version.
    let decrypted = s.ok(&[
        "Decrypt",
        "--CiphertextBlob",
        &first_blob,
        "--EncryptionContext",
        context,
    ]);
    assert_eq!(bytes(&decrypted, "/Plaintext"), secret);
    assert_eq!(text(&decrypted, "/KeyVersionId"), first_version);
    let second = s.ok(&["Encrypt", "--KeyId", &key, "--Plaintext", &b64(secret)]);
    assert_eq!(text(&second, "/KeyVersionId"), version);

    // ReEncrypt under another key (SM4) and another context.
    let sm4 = create_key(s.store(), &["--KeySpec", "Aliyun_SM4"]);
    s.called.insert("CreateKey".into());
    let moved = s.ok(&[
        "ReEncrypt",
        "--CiphertextBlob",
        &first_blob,
        "--DestinationKeyId",
        &sm4,
        "--SourceEncryptionContext",
        context,
        "--DestinationEncryptionContext",
        r#"{"x":"y"}"#,
    ]);
    assert_eq!(text(&moved, "/KeyId"), sm4);
    assert_eq!(text(&moved, "/SourceKeyId"), key);
    assert_eq!(text(&moved, "/SourceKeyVersionId"), first_version);
    let decrypted = s.ok(&[
        "Decrypt",
        "--CiphertextBlob",
        &text(&moved, "/CiphertextBlob"),
        "--EncryptionContext",
        r#"{"x":"y"}"#,
    ]);
    assert_eq!(bytes(&decrypted, "/Plaintext"), secret);
    assert_eq!(text(&decrypted, "/KeyId"), sm4);

    // Data keys.
    let data_key = s.ok(&[
        "GenerateDataKey",
        "--KeyId",
        &key,
        "--NumberOfBytes",
        "24",
        "--EncryptionContext",
        context,
    ]);
    let plain = bytes(&data_key, "/Plaintext");
    assert_eq!(plain.len(), 24);
    let decrypted = s.ok(&[
        "Decrypt",
        "--CiphertextBlob",
        &text(&data_key, "/CiphertextBlob"),
        "--EncryptionContext",
        context,
    ]);
    assert_eq!(bytes(&decrypted, "/Plaintext"), plain);
    let wrapped_only = s.ok(&[
        "GenerateDataKeyWithoutPlaintext",
        "--KeyId",
        &key,
        "--NumberOfBytes",
        "16",
    ]);
    assert!(wrapped_only.get("Plaintext").is_none(), "{wrapped_only}");
    let decrypted = s.ok(&["Decrypt", "--CiphertextBlob", &text(&wrapped_only, "/CiphertextBlob")]);
    assert_eq!(bytes(&decrypted, "/Plaintext").len(), 16);
    let default_len = s.ok(&["GenerateDataKey", "--KeyId", &key, "--KeySpec", "AES_128"]);
    assert_eq!(bytes(&default_len, "/Plaintext").len(), 16);

    // ---- aliases
    s.ok(&["CreateAlias", "--AliasName", "alias/second", "--KeyId", &key]);
    let by_key = s.ok(&["ListAliasesByKeyId", "--KeyId", &key]);
    assert_eq!(by_key["TotalCount"], 2);
    let names: BTreeSet<String> = by_key["Aliases"]["Alias"]
        .as_array()
        .expect("an Alias list")
        .iter()
        .map(|a| text(a, "/AliasName"))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["alias/app".to_owned(), "alias/second".to_owned()])
    );
    s.ok(&["UpdateAlias", "--AliasName", "alias/second", "--KeyId", &sm4]);
    let described = s.ok(&["DescribeKey", "--KeyId", "alias/second"]);
    assert_eq!(text(&described, "/KeyMetadata/KeyId"), sm4);
    let all = s.ok(&["ListAliases"]);
    assert_eq!(all["TotalCount"], 2);
    let arn_of_second = all["Aliases"]["Alias"]
        .as_array()
        .expect("an Alias list")
        .iter()
        .find(|a| a["AliasName"] == "alias/second")
        .map(|a| text(a, "/AliasArn"))
        .expect("alias/second is listed");
    assert!(arn_of_second.starts_with("acs:kms:") && arn_of_second.ends_with(":alias/second"));
    s.ok(&["DeleteAlias", "--AliasName", "alias/second"]);
    let all = s.ok(&["ListAliases", "--PageSize", "1"]);
    assert_eq!(all["TotalCount"], 1);
    assert_eq!(all["Aliases"]["Alias"][0]["AliasName"], "alias/app");
    s.err(&["DescribeKey", "--KeyId", "alias/second"], "Forbidden.AliasNotFound");
    s.err(
        &["DeleteAlias", "--AliasName", "alias/second"],
        "Forbidden.AliasNotFound",
    );
    s.err(
        &["CreateAlias", "--AliasName", "alias/app", "--KeyId", &sm4],
        "AliasAlreadyExists",
    );

    // ---- tags
    let tags = s.ok(&["ListResourceTags", "--KeyId", &key]);
    assert_eq!(tags["Tags"]["Tag"], json!([{"TagKey": "k", "TagValue": "v"}]));
    s.ok(&[
        "TagResource",
        "--KeyId",
        &key,
        "--Tags",
        r#"[{"TagKey":"team","TagValue":"blue"},{"TagKey":"k","TagValue":"w"}]"#,
    ]);
    let tags = s.ok(&["ListResourceTags", "--KeyId", &key]);
    let mut listed: Vec<(String, String)> = tags["Tags"]["Tag"]
        .as_array()
        .expect("a Tag list")
        .iter()
        .map(|t| (text(t, "/TagKey"), text(t, "/TagValue")))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [("k".to_owned(), "w".to_owned()), ("team".to_owned(), "blue".to_owned())]
    );
    s.ok(&["UntagResource", "--KeyId", &key, "--TagKeys", r#"["k"]"#]);
    let tags = s.ok(&["ListResourceTags", "--KeyId", &key]);
    assert_eq!(tags["Tags"]["Tag"], json!([{"TagKey": "team", "TagValue": "blue"}]));

    // ---- asymmetric keys
    let message = b"a message to sign";
    let digest = b64(&Sha256::digest(message));
    let other_digest = b64(&Sha256::digest(b"another message"));
    let ec = create_key(s.store(), &["--KeySpec", "EC_P256"]);
    let signed = s.ok(&[
        "AsymmetricSign",
        "--KeyId",
        &ec,
        "--Algorithm",
        "ECDSA_SHA_256",
        "--Digest",
        &digest,
    ]);
    assert_eq!(text(&signed, "/KeyId"), ec);
    let signature = text(&signed, "/Value");
    let verified = s.ok(&[
        "AsymmetricVerify",
        "--KeyId",
        &ec,
        "--Algorithm",
        "ECDSA_SHA_256",
        "--Digest",
        &digest,
        "--Value",
        &signature,
    ]);
    assert_eq!(verified["Value"], true);
    let verified = s.ok(&[
        "AsymmetricVerify",
        "--KeyId",
        &ec,
        "--Algorithm",
        "ECDSA_SHA_256",
        "--Digest",
        &other_digest,
        "--Value",
        &signature,
    ]);
    assert_eq!(verified["Value"], false);
    let public = s.ok(&["GetPublicKey", "--KeyId", &ec]);
    let pem = text(&public, "/PublicKey");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(pem.trim_end().ends_with("-----END PUBLIC KEY-----"), "{pem}");
    assert_eq!(text(&public, "/KeyVersionId"), text(&signed, "/KeyVersionId"));
    s.err(
        &["Encrypt", "--KeyId", &ec, "--Plaintext", &b64(b"x")],
        "Unsupported.KeyUsage",
    );

    let rsa = create_key(s.store(), &["--KeySpec", "RSA_2048", "--KeyUsage", "ENCRYPT/DECRYPT"]);
    let plaintext = b"sixteen byte key";
    let encrypted = s.ok(&[
        "AsymmetricEncrypt",
        "--KeyId",
        &rsa,
        "--Algorithm",
        "RSAES_OAEP_SHA_256",
        "--Plaintext",
        &b64(plaintext),
    ]);
    assert_eq!(bytes(&encrypted, "/CiphertextBlob").len(), 256);
    let decrypted = s.ok(&[
        "AsymmetricDecrypt",
        "--KeyId",
        &rsa,
        "--Algorithm",
        "RSAES_OAEP_SHA_256",
        "--CiphertextBlob",
        &text(&encrypted, "/CiphertextBlob"),
    ]);
    assert_eq!(bytes(&decrypted, "/Plaintext"), plaintext);
    s.err(
        &[
            "AsymmetricSign",
            "--KeyId",
            &rsa,
            "--Algorithm",
            "RSA_PSS_SHA_256",
            "--Digest",
            &digest,
        ],
        "Unsupported.KeyUsage",
    );

    let random = s.ok(&["GenerateRandom", "--Length", "16"]);
    assert_eq!(bytes(&random, "/Random").len(), 16);

    // ---- ListKeys, two at a time: the pages partition every key.
    let mut created = BTreeSet::from([key, sm4, ec, rsa]);
    created.insert(create_key(s.store(), &["--KeySpec", "Aliyun_AES_128"]));
    let mut seen = BTreeSet::new();
    for page in 1..=3 {
        let listed = s.ok(&["ListKeys", "--PageSize", "2", "--PageNumber", &page.to_string()]);
        assert_eq!(listed["TotalCount"], 5);
        assert_eq!(listed["PageNumber"], page);
        assert_eq!(listed["PageSize"], 2);
        let entries = listed["Keys"]["Key"].as_array().expect("a Key list");
        assert_eq!(entries.len(), if page < 3 { 2 } else { 1 }, "page {page}: {listed}");
        for entry in entries {
            let id = text(entry, "/KeyId");
            assert!(text(entry, "/KeyArn").ends_with(&format!(":key/{id}")));
            assert!(seen.insert(id), "a key on two pages: {listed}");
        }
    }
    assert_eq!(seen, created);
    let beyond = s.ok(&["ListKeys", "--PageSize", "2", "--PageNumber", "4"]);
    assert_eq!(beyond["Keys"]["Key"], json!([]));

    // Instances: a second software instance, described, listed and checked; a key in it.
    let made = s.ok(&[
        "CreateKmsInstance",
        "--ProductVersion",
        "software",
        "--Description",
        "team b",
    ]);
    let instance = text(&made, "/KmsInstanceId");
    assert!(instance.starts_with("kst-"), "{made}");
    let got = s.ok(&["GetKmsInstance", "--KmsInstanceId", &instance]);
    assert_eq!(got["KmsInstance"]["ProductVersion"], "software");
    assert_eq!(got["KmsInstance"]["Description"], "team b");
    let all = s.ok(&["ListKmsInstances"]);
    assert_eq!(all["TotalCount"], 2, "{all}");
    let checked = s.ok(&["CheckKmsInstance", "--KmsInstanceId", &instance]);
    assert_eq!(checked["Reachable"], true);
    let in_b = s.ok(&["CreateKey", "--DKMSInstanceId", &instance]);
    assert_eq!(in_b["KeyMetadata"]["DKMSInstanceId"], instance.as_str());
    assert_eq!(in_b["KeyMetadata"]["ProtectionLevel"], "SOFTWARE");

    // ---- key policies, RAM policies and the audit trail
    let (_, init, _) = tessera(s.store(), &["init"]);
    let account = text(&init, "/AccountId");
    let default_policy = s.ok(&["GetKeyPolicy", "--KeyId", "alias/app"]);
    assert!(
        text(&default_policy, "/Policy").contains(&format!("acs:ram::{account}:root")),
        "{default_policy}"
    );
    let key_policy = json!({"Version": "1", "Statement": [{
        "Effect": "Allow",
        "Principal": {"RAM": [format!("acs:ram::{account}:root"), format!("acs:ram::{account}:user/app-user")]},
        "Action": ["kms:*"],
        "Resource": ["*"],
    }]})
    .to_string();
    s.ok(&["SetKeyPolicy", "--KeyId", "alias/app", "--Policy", &key_policy]);
    let got = s.ok(&["GetKeyPolicy", "--KeyId", "alias/app"]);
    assert_eq!(
        serde_json::from_str::<Value>(&text(&got, "/Policy")).ok(),
        serde_json::from_str::<Value>(&key_policy).ok()
    );
    let encrypt_only = json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Encrypt"], "Resource": [arn.clone()]},
    ]})
    .to_string();
    let encrypt_and_decrypt = json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": [arn.clone()]},
    ]})
    .to_string();
    let made = s.ok(&[
        "CreatePolicy",
        "--PolicyName",
        "app-crypto",
        "--PolicyDocument",
        &encrypt_only,
        "--Description",
        "the app's cryptography",
    ]);
    assert_eq!(made["Policy"]["PolicyName"], "app-crypto");
    s.ok(&[
        "UpdatePolicy",
        "--PolicyName",
        "app-crypto",
        "--PolicyDocument",
        &encrypt_and_decrypt,
    ]);
    let got = s.ok(&["GetPolicy", "--PolicyName", "app-crypto"]);
    assert_eq!(
        serde_json::from_str::<Value>(&text(&got, "/PolicyDocument")).ok(),
        serde_json::from_str::<Value>(&encrypt_and_decrypt).ok()
    );
    s.ok(&[
        "AttachPolicyToUser",
        "--PolicyName",
        "app-crypto",
        "--UserName",
        "app-user",
    ]);
    s.ok(&[
        "AttachPolicyToRole",
        "--PolicyName",
        "app-crypto",
        "--RoleName",
        "app-role",
    ]);
    let for_user = s.ok(&["ListPoliciesForUser", "--UserName", "app-user"]);
    assert_eq!(for_user["Policies"]["Policy"][0]["PolicyName"], "app-crypto");
    let for_role = s.ok(&["ListPoliciesForRole", "--RoleName", "app-role"]);
    assert_eq!(for_role["Policies"]["Policy"][0]["PolicyName"], "app-crypto");
    let policies = s.ok(&["ListPolicies"]);
    assert_eq!(policies["TotalCount"], 1, "{policies}");
    assert_eq!(policies["Policies"]["Policy"][0]["AttachmentCount"], 2, "{policies}");
    s.err(
        &["DeletePolicy", "--PolicyName", "app-crypto"],
        "DeleteConflict.Policy.User",
    );
    s.ok(&[
        "DetachPolicyFromUser",
        "--PolicyName",
        "app-crypto",
        "--UserName",
        "app-user",
    ]);
    s.ok(&[
        "DetachPolicyFromRole",
        "--PolicyName",
        "app-crypto",
        "--RoleName",
        "app-role",
    ]);
    s.ok(&["DeletePolicy", "--PolicyName", "app-crypto"]);
    s.err(&["GetPolicy", "--PolicyName", "app-crypto"], "EntityNotExist.Policy");
    let deletions = s.ok(&["LookupEvents", "--Action", "DeletePolicy"]);
    let results: Vec<&str> = deletions["Events"]["Event"]
        .as_array()
        .expect("an Event list")
        .iter()
        .map(|e| e["Result"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(results, ["Success", "Failure"], "newest first: {deletions}");

    // Every listed action was called successfully at least once.
    let actions = listed_actions(s.store());
    let missing: Vec<&String> = actions.difference(&s.called).collect();
    assert!(missing.is_empty(), "actions never called successfully: {missing:?}");
}

#[test]
fn limits_give_the_api_error_codes() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let key = create_key(store, &[]);

    // Pending window: 7–30 days.
    for days in ["6", "31", "0"] {
        err(
            store,
            &["ScheduleKeyDeletion", "--KeyId", &key, "--PendingWindowInDays", days],
            "InvalidParameter",
        );
    }
    err(store, &["ScheduleKeyDeletion", "--KeyId", &key], "MissingParameter");
    err(
        store,
        &["ScheduleKeyDeletion", "--KeyId", &key, "--PendingWindowInDays", "seven"],
        "InvalidParameter",
    );

    // Rotation interval: 7–730 days.
    for interval in ["6d", "731d", "30x", "d", "-7d"] {
        let e = err(
            store,
            &[
                "UpdateRotationPolicy",
                "--KeyId",
                &key,
                "--EnableAutomaticRotation",
                "true",
                "--RotationInterval",
                interval,
            ],
            "InvalidParameter",
        );
        assert!(text(&e, "/Message").contains("RotationInterval"), "{e}");
    }
    err(
        store,
        &[
            "CreateKey",
            "--EnableAutomaticRotation",
            "true",
            "--RotationInterval",
            "731d",
        ],
        "InvalidParameter",
    );
    for interval in ["7d", "730d", "168h", "604800s", "10080m"] {
        ok(
            store,
            &[
                "UpdateRotationPolicy",
                "--KeyId",
                &key,
                "--EnableAutomaticRotation",
                "true",
                "--RotationInterval",
                interval,
            ],
        );
    }
    err(
        store,
        &["UpdateRotationPolicy", "--KeyId", &key, "--RotationInterval", "30d"],
        "MissingParameter",
    );
    let ec = create_key(store, &["--KeySpec", "EC_P256"]);
    err(
        store,
        &[
            "UpdateRotationPolicy",
            "--KeyId",
            &ec,
            "--EnableAutomaticRotation",
            "true",
        ],
        "UnsupportedOperation",
    );

    // Tags: at most 20 a key; the 21st is refused, whether added later or all at once.
    let twenty: Vec<Value> = (0..20)
        .map(|i| json!({"TagKey": format!("t{i}"), "TagValue": "v"}))
        .collect();
    let tagged = create_key(store, &["--Tags", &Value::Array(twenty.clone()).to_string()]);
    let e = err(
        store,
        &[
            "TagResource",
            "--KeyId",
            &tagged,
            "--Tags",
            r#"[{"TagKey":"t20","TagValue":"v"}]"#,
        ],
        "Rejected.LimitExceeded",
    );
    assert_eq!(e["HttpStatus"], 400);
    let tags = ok(store, &["ListResourceTags", "--KeyId", &tagged]);
    assert_eq!(tags["Tags"]["Tag"].as_array().map(Vec::len), Some(20));
    // Replacing the value of an existing tag key is no 21st tag.
    ok(
        store,
        &[
            "TagResource",
            "--KeyId",
            &tagged,
            "--Tags",
            r#"[{"TagKey":"t0","TagValue":"w"}]"#,
        ],
    );
    let mut twenty_one = twenty;
    twenty_one.push(json!({"TagKey": "t20", "TagValue": "v"}));
    err(
        store,
        &["CreateKey", "--Tags", &Value::Array(twenty_one.clone()).to_string()],
        "Rejected.LimitExceeded",
    );
    err(
        store,
        &[
            "TagResource",
            "--KeyId",
            &key,
            "--Tags",
            &Value::Array(twenty_one).to_string(),
        ],
        "Rejected.LimitExceeded",
    );

    // Tag keys and values in the reserved namespaces or with bad characters.
    for tags in [
        r#"[{"TagKey":"aliyun-x","TagValue":"v"}]"#,
        r#"[{"TagKey":"ACS:x","TagValue":"v"}]"#,
        r#"[{"TagKey":"k","TagValue":"https://example.com"}]"#,
        r#"[{"TagKey":"","TagValue":"v"}]"#,
        r#"[{"TagKey":"a<b","TagValue":"v"}]"#,
    ] {
        err(
            store,
            &["TagResource", "--KeyId", &key, "--Tags", tags],
            "InvalidParameter",
        );
    }
    err(
        store,
        &["CreateKey", "--Tags", r#"[{"TagKey":"aliyun-x","TagValue":"v"}]"#],
        "InvalidParameter",
    );
    err(
        store,
        &["TagResource", "--KeyId", &key, "--Tags", "not json"],
        "InvalidParameter",
    );
    err(
        store,
        &["TagResource", "--KeyId", &key, "--Tags", "[]"],
        "MissingParameter",
    );
    err(
        store,
        &["UntagResource", "--KeyId", &key, "--TagKeys", "[]"],
        "MissingParameter",
    );

    // Descriptions: at most 8192 characters (not bytes).
    let too_long = "d".repeat(8193);
    let e = err(
        store,
        &["UpdateKeyDescription", "--KeyId", &key, "--Description", &too_long],
        "InvalidParameter",
    );
    assert!(text(&e, "/Message").contains("Description"), "{e}");
    err(store, &["CreateKey", "--Description", &too_long], "InvalidParameter");
    let longest = "é".repeat(8192);
    ok(
        store,
        &["UpdateKeyDescription", "--KeyId", &key, "--Description", &longest],
    );
    let described = ok(store, &["DescribeKey", "--KeyId", &key]);
    assert_eq!(text(&described, "/KeyMetadata/Description"), longest);

    // Alias names.
    for alias in [
        "alias/bad name",
        "alias/bad!",
        "alias/é",
        "alias/",
        "app",
        "alias/acs-reserved",
    ] {
        err(
            store,
            &["CreateAlias", "--AliasName", alias, "--KeyId", &key],
            "InvalidParameter",
        );
    }
    err(store, &["CreateKey", "--Alias", "alias/bad*"], "InvalidParameter");
    ok(
        store,
        &["CreateAlias", "--AliasName", "alias/ok_name-1/x", "--KeyId", &key],
    );

    // Random lengths and data key sizes: 1–1024.
    for n in ["0", "1025"] {
        err(store, &["GenerateRandom", "--Length", n], "InvalidParameter");
        err(
            store,
            &["GenerateDataKey", "--KeyId", &key, "--NumberOfBytes", n],
            "InvalidParameter",
        );
    }
    // Plaintext: at most 6 KiB.
    err(
        store,
        &["Encrypt", "--KeyId", &key, "--Plaintext", &b64(&[0u8; 6145])],
        "InvalidParameter",
    );
    ok(store, &["Encrypt", "--KeyId", &key, "--Plaintext", &b64(&[0u8; 6144])]);
    // Pages: size 1–100, number 1 or more.
    err(store, &["ListKeys", "--PageSize", "0"], "InvalidParameter");
    err(store, &["ListKeys", "--PageSize", "101"], "InvalidParameter");
    err(store, &["ListKeys", "--PageNumber", "0"], "InvalidParameter");
}

#[test]
fn key_state_errors_give_the_api_codes() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let key = create_key(store, &[]);
    let plaintext = b64(b"hello");

    // Unknown keys, versions and aliases.
    let missing = "00000000-0000-4000-8000-000000000000";
    let e = err(store, &["DescribeKey", "--KeyId", missing], "Forbidden.KeyNotFound");
    assert_eq!(e["HttpStatus"], 404);
    err(
        store,
        &["Encrypt", "--KeyId", missing, "--Plaintext", &plaintext],
        "Forbidden.KeyNotFound",
    );
    err(
        store,
        &["DescribeKey", "--KeyId", "alias/none"],
        "Forbidden.AliasNotFound",
    );
    err(
        store,
        &["DescribeKeyVersion", "--KeyId", &key, "--KeyVersionId", missing],
        "Forbidden.KeyVersionNotFound",
    );

    // A disabled key cannot be used, and a cipher text of it cannot be decrypted.
    let blob = text(
        &ok(store, &["Encrypt", "--KeyId", &key, "--Plaintext", &plaintext]),
        "/CiphertextBlob",
    );
    ok(store, &["DisableKey", "--KeyId", &key]);
    let e = err(
        store,
        &["Encrypt", "--KeyId", &key, "--Plaintext", &plaintext],
        "Rejected.Disabled",
    );
    assert_eq!(e["HttpStatus"], 409);
    err(store, &["Decrypt", "--CiphertextBlob", &blob], "Rejected.Disabled");
    err(store, &["GenerateDataKey", "--KeyId", &key], "Rejected.Disabled");
    err(store, &["CreateKeyVersion", "--KeyId", &key], "Rejected.Disabled");
    ok(store, &["EnableKey", "--KeyId", &key]);
    let back = ok(store, &["Decrypt", "--CiphertextBlob", &blob]);
    assert_eq!(text(&back, "/Plaintext"), plaintext);

    // A key created disabled.
    let off = create_key(store, &["--Enable", "false"]);
    let described = ok(store, &["DescribeKey", "--KeyId", &off]);
    assert_eq!(described["KeyMetadata"]["KeyState"], "Disabled");

    // Deletion protection blocks a scheduled deletion; CreateKey can set it.
    let protected = create_key(store, &["--DeletionProtection", "true"]);
    let e = err(
        store,
        &[
            "ScheduleKeyDeletion",
            "--KeyId",
            &protected,
            "--PendingWindowInDays",
            "7",
        ],
        "Rejected.StateModifiedFailed",
    );
    assert_eq!(e["HttpStatus"], 409);
    let described = ok(store, &["DescribeKey", "--KeyId", &protected]);
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");

    // Deletion twice, cancel of a key not pending deletion, enable of a key pending deletion.
    ok(
        store,
        &["ScheduleKeyDeletion", "--KeyId", &key, "--PendingWindowInDays", "30"],
    );
    err(
        store,
        &["ScheduleKeyDeletion", "--KeyId", &key, "--PendingWindowInDays", "7"],
        "Rejected.PendingDeletion",
    );
    err(store, &["EnableKey", "--KeyId", &key], "Rejected.PendingDeletion");
    err(
        store,
        &["CancelKeyDeletion", "--KeyId", &protected],
        "Rejected.StateModifiedFailed",
    );
    err(
        store,
        &["Decrypt", "--CiphertextBlob", &blob],
        "Rejected.PendingDeletion",
    );

    // Asymmetric keys: automatic rotation is refused at creation; unsupported algorithms.
    err(
        store,
        &["CreateKey", "--KeySpec", "EC_P256", "--EnableAutomaticRotation", "true"],
        "UnsupportedOperation",
    );
    err(
        store,
        &["CreateKey", "--KeySpec", "EC_P256", "--KeyUsage", "ENCRYPT/DECRYPT"],
        "InvalidParameter",
    );
    err(
        store,
        &["CreateKey", "--ProtectionLevel", "HSM"],
        "Unsupported.ProtectionLevel",
    );
    let ec = create_key(store, &["--KeySpec", "EC_P256"]);
    let digest = b64(&Sha256::digest(b"m"));
    err(
        store,
        &[
            "AsymmetricSign",
            "--KeyId",
            &ec,
            "--Algorithm",
            "RSA_PSS_SHA_256",
            "--Digest",
            &digest,
        ],
        "Unsupported.Algorithm",
    );
    err(
        store,
        &["AsymmetricSign", "--KeyId", &ec, "--Digest", &digest],
        "MissingParameter",
    );
    err(
        store,
        &[
            "AsymmetricSign",
            "--KeyId",
            &ec,
            "--Algorithm",
            "ECDSA_SHA_256",
            "--Digest",
            &b64(b"short"),
        ],
        "InvalidParameter",
    );
    err(store, &["GetPublicKey", "--KeyId", &protected], "Unsupported.KeySpec");
}

#[test]
fn malformed_commands_give_json_errors() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let key = create_key(store, &[]);

    // Missing required parameters name the parameter.
    let e = err(store, &["Encrypt", "--Plaintext", &b64(b"x")], "MissingParameter");
    assert!(text(&e, "/Message").contains("KeyId"), "{e}");
    let e = err(store, &["Encrypt"], "MissingParameter");
    assert!(text(&e, "/Message").contains("KeyId"), "{e}");
    let e = err(store, &["Encrypt", "--KeyId", &key], "MissingParameter");
    assert!(text(&e, "/Message").contains("Plaintext"), "{e}");
    let e = err(store, &["DescribeKey"], "MissingParameter");
    assert!(text(&e, "/Message").contains("KeyId"), "{e}");
    err(store, &["DescribeKey", "--KeyId", ""], "MissingParameter");
    err(
        store,
        &["SetDeletionProtection", "--ProtectedResourceArn", &key],
        "MissingParameter",
    );

    // An unknown action.
    let e = err(store, &["NoSuchAction", "--KeyId", &key], "InvalidAction.NotFound");
    assert!(text(&e, "/Message").contains("NoSuchAction"), "{e}");
    err(store, &["encrypt", "--KeyId", &key], "InvalidAction.NotFound");

    // Malformed arguments.
    let e = err(store, &["Encrypt", "--KeyId"], "InvalidParameter");
    assert!(text(&e, "/Message").contains("KeyId"), "{e}");
    err(store, &["Encrypt", "KeyId", &key], "InvalidParameter");
    err(
        store,
        &["DescribeKey", "--KeyId", &key, "--KeyId", &key],
        "InvalidParameter",
    );
    err(store, &["DescribeKey", "--", &key], "InvalidParameter");
    let e = err(
        store,
        &["DescribeKey", "--KeyId", &key, "--Bogus", "1"],
        "InvalidParameter",
    );
    assert!(text(&e, "/Message").contains("Bogus"), "{e}");
    err(
        store,
        &["Encrypt", "--KeyId", &key, "--Plaintext", "not base64!"],
        "InvalidParameter",
    );
    err(
        store,
        &[
            "Encrypt",
            "--KeyId",
            &key,
            "--Plaintext",
            "eA==",
            "--EncryptionContext",
            "{bad",
        ],
        "InvalidParameter",
    );
    err(store, &["CreateKey", "--KeySpec", "AES_999"], "InvalidParameter");
    err(store, &["CreateKey", "--Enable", "maybe"], "InvalidParameter");
    err(store, &["ListKeys", "--PageSize", "-1"], "InvalidParameter");

    // `--Name=value` is accepted as well as `--Name value`.
    let described = ok(store, &["DescribeKey", &format!("--KeyId={key}")]);
    assert_eq!(text(&described, "/KeyMetadata/KeyId"), key);

    // Every failure has its own request id.
    let (_, _, first) = tessera(store, &["DescribeKey"]);
    let (_, _, second) = tessera(store, &["DescribeKey"]);
    assert_ne!(first["RequestId"], second["RequestId"]);
}

#[test]
fn responses_carry_fresh_request_ids() {
    let dir = TempDir::new().expect("temp dir");
    let first = ok(dir.path(), &["GenerateRandom"]);
    let second = ok(dir.path(), &["GenerateRandom"]);
    assert_eq!(bytes(&first, "/Random").len(), 32);
    assert_ne!(first["RequestId"], second["RequestId"]);
    assert_ne!(first["Random"], second["Random"]);
}

#[test]
fn demo_walks_through_on_a_fresh_store() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path().join("fresh");
    let out = run_raw(&store, &["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}\n{stdout}");
    assert!(stderr.is_empty(), "demo wrote to stderr: {stderr}");
    for step in [
        "Tessera demo on store",
        "1. CreateKey Aliyun_AES_256",
        "2. Encrypt via alias/demo-app-",
        "InvalidCiphertext",
        "3. CreateKeyVersion",
        "4. GenerateDataKey",
        "5. AsymmetricSign",
        "ECDSA_SHA_256",
        "RSA_PSS_SHA_256",
        "6. ScheduleKeyDeletion",
        "Rejected.PendingDeletion",
        "CancelKeyDeletion",
        "Done.",
    ] {
        assert!(stdout.contains(step), "the demo does not say {step:?}:\n{stdout}");
    }
    // Its four keys are left pending deletion.
    let keys = ok(&store, &["ListKeys", "--PageSize", "100"]);
    assert_eq!(keys["TotalCount"], 4);
    for entry in keys["Keys"]["Key"].as_array().expect("a Key list") {
        let described = ok(&store, &["DescribeKey", "--KeyId", &text(entry, "/KeyId")]);
        assert_eq!(described["KeyMetadata"]["KeyState"], "PendingDeletion");
    }
    // A second run on the same store works too (fresh aliases).
    let again = run_raw(&store, &["demo"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn init_describes_the_store() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path().join("new-store");
    let (success, out, stderr) = tessera(&store, &["init"]);
    assert!(success, "{stderr}");
    assert_eq!(text(&out, "/Store"), store.display().to_string());
    let account = text(&out, "/AccountId");
    assert!(
        !account.is_empty() && account.chars().all(|c| c.is_ascii_digit()),
        "{out}"
    );
    assert_eq!(out["DKMSInstanceId"], "kst-default");
    assert!(store.is_dir());
    // Idempotent: the same account on the second run, and keys carry it.
    let (success, again, _) = tessera(&store, &["init"]);
    assert!(success);
    assert_eq!(text(&again, "/AccountId"), account);
    let created = ok(&store, &["CreateKey"]);
    assert_eq!(text(&created, "/KeyMetadata/Creator"), account);
    assert!(text(&created, "/KeyMetadata/Arn").contains(&format!(":{account}:key/")));
}

#[test]
fn maintain_reports_its_work() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let key = create_key(store, &[]);
    ok(
        store,
        &[
            "UpdateRotationPolicy",
            "--KeyId",
            &key,
            "--EnableAutomaticRotation",
            "true",
            "--RotationInterval",
            "7d",
        ],
    );
    ok(
        store,
        &["ScheduleKeyDeletion", "--KeyId", &key, "--PendingWindowInDays", "7"],
    );
    let (success, out, stderr) = tessera(store, &["maintain"]);
    assert!(success, "{stderr}");
    // Nothing is due yet: the rotation is 7 days away, and so is the purge.
    assert_eq!(out, json!({"RotatedKeys": 0, "PurgedKeys": 0}));
    let described = ok(store, &["DescribeKey", "--KeyId", &key]);
    assert_eq!(described["KeyMetadata"]["KeyState"], "PendingDeletion");
}

#[test]
fn actions_lists_the_api() {
    let dir = TempDir::new().expect("temp dir");
    let (success, out, _) = tessera(dir.path(), &["actions"]);
    assert!(success);
    let listed = out["Actions"].as_array().expect("an Actions list");
    let actions = listed_actions(dir.path());
    assert_eq!(actions.len(), listed.len(), "an action is listed twice: {out}");
    for action in [
        "CreateKey",
        "Encrypt",
        "AsymmetricSign",
        "GenerateRandom",
        "UpdateRotationPolicy",
    ] {
        assert!(actions.contains(action), "{action} is not listed");
    }
    // Listing the actions opens no store.
    assert!(!dir.path().join("nothing").exists());
    let out = run_raw(&dir.path().join("nothing"), &["actions"]);
    assert!(out.status.success());
    assert!(!dir.path().join("nothing").exists());
}

#[test]
fn the_store_comes_from_tessera_store_without_store() {
    let dir = TempDir::new().expect("temp dir");
    let from_env = dir.path().join("from-env");
    let from_flag = dir.path().join("from-flag");

    let init = command()
        .env("TESSERA_STORE", &from_env)
        .arg("init")
        .output()
        .expect("run tessera");
    let (success, out, stderr) = split(&init);
    assert!(success, "{stderr}");
    assert_eq!(text(&out, "/Store"), from_env.display().to_string());
    assert!(from_env.is_dir());

    // An action on the environment's store; the key is then visible through --store.
    let created = command()
        .env("TESSERA_STORE", &from_env)
        .args(["CreateKey", "--Alias", "alias/env"])
        .output()
        .expect("run tessera");
    let (success, out, stderr) = split(&created);
    assert!(success, "{stderr}");
    assert!(is_request_id(&text(&out, "/RequestId")));
    let key = text(&out, "/KeyMetadata/KeyId");
    let described = ok(&from_env, &["DescribeKey", "--KeyId", "alias/env"]);
    assert_eq!(text(&described, "/KeyMetadata/KeyId"), key);

    // --store wins over the environment.
    let flagged = command()
        .env("TESSERA_STORE", &from_env)
        .arg("--store")
        .arg(&from_flag)
        .arg("init")
        .output()
        .expect("run tessera");
    let (success, out, _) = split(&flagged);
    assert!(success);
    assert_eq!(text(&out, "/Store"), from_flag.display().to_string());
    err(
        &from_flag,
        &["DescribeKey", "--KeyId", "alias/env"],
        "Forbidden.AliasNotFound",
    );
}

/// A `tessera token …` command that must succeed (token commands carry no RequestId).
fn token_ok(store: &Path, args: &[&str]) -> Value {
    let (success, out, stderr) = tessera(store, args);
    assert!(success, "tessera {args:?}: {stderr}");
    out
}

#[test]
fn token_commands_set_label_and_pins_as_pkcs11_tool_does() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let info = token_ok(store, &["token", "info"]);
    assert_eq!(
        (info["Label"].as_str(), info["TokenInitialized"].as_bool()),
        (Some("kst-default"), Some(false))
    );
    err(
        store,
        &["token", "init-pin", "--so-pin", "5678", "--pin", "1234"],
        "Rejected.TokenNotInitialized",
    );
    err(
        store,
        &["token", "init", "--label", "t", "--so-pin", "12"],
        "InvalidParameter",
    );
    let info = token_ok(store, &["token", "init", "--label", "ops-token", "--so-pin", "5678"]);
    assert_eq!(info["Label"], "ops-token");
    err(
        store,
        &["token", "init-pin", "--so-pin", "0000", "--pin", "1234"],
        "Forbidden.PinIncorrect",
    );
    let info = token_ok(store, &["token", "init-pin", "--so-pin", "5678", "--pin", "1234"]);
    assert_eq!(info["UserPinInitialized"], true);
    err(
        store,
        &["token", "set-pin", "--old-pin", "9999", "--new-pin", "4321"],
        "Forbidden.PinIncorrect",
    );
    token_ok(store, &["token", "set-pin", "--old-pin", "1234", "--new-pin", "4321"]);
    // Re-initialising needs the SO PIN and clears the user PIN; keys stay.
    let key = create_key(store, &[]);
    err(
        store,
        &["token", "init", "--label", "x", "--so-pin", "0000"],
        "Forbidden.PinIncorrect",
    );
    let info = token_ok(store, &["token", "init", "--label", "again", "--so-pin", "5678"]);
    assert_eq!(info["UserPinInitialized"], false);
    ok(store, &["DescribeKey", "--KeyId", &key]);
}

// ---------------------------------------------------------------- authorization

/// The store's account id, as `tessera init` reports it.
fn account_of(store: &Path) -> String {
    let (success, out, stderr) = tessera(store, &["init"]);
    assert!(success, "tessera init: {stderr}");
    text(&out, "/AccountId")
}

/// An identity or key policy document: its statements under Version 1.
fn policy_document(statements: Value) -> String {
    json!({"Version": "1", "Statement": statements}).to_string()
}

/// The JSON a policy text holds (documents compare as JSON, not as text).
fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not a JSON policy ({e}): {text}"))
}

/// A refusal of the policies: Forbidden.NoPermission, HTTP 403, naming the action.
fn denied(store: &Path, args: &[&str], action: &str) -> Value {
    let e = err(store, args, "Forbidden.NoPermission");
    assert_eq!(e["HttpStatus"], 403, "tessera {args:?}: {e}");
    assert!(
        text(&e, "/Message").contains(action),
        "tessera {args:?}: the message names {action}: {e}"
    );
    e
}

/// The calls LookupEvents lists with these filters, oldest first, as (Action, KeyId, Result,
/// ErrorCode); "" for a missing KeyId or ErrorCode.
fn audit(store: &Path, filters: &[&str]) -> Vec<(String, String, String, String)> {
    let mut args = vec!["LookupEvents", "--PageSize", "100"];
    args.extend_from_slice(filters);
    let answer = ok(store, &args);
    let events = answer["Events"]["Event"].as_array().expect("an Event list");
    assert_eq!(
        answer["TotalCount"].as_u64(),
        Some(events.len() as u64),
        "one page holds them all: {answer}"
    );
    let field = |e: &Value, name: &str| e[name].as_str().unwrap_or_default().to_owned();
    // An event of `Count` identical calls in a row is that many calls.
    let mut out: Vec<_> = events
        .iter()
        .flat_map(|e| {
            let count = e["Count"].as_u64().expect("a Count");
            assert!(count >= 1, "an event of no call: {e}");
            let call = (
                field(e, "Action"),
                field(e, "KeyId"),
                field(e, "Result"),
                field(e, "ErrorCode"),
            );
            std::iter::repeat_n(call, usize::try_from(count).expect("a count"))
        })
        .collect();
    out.reverse();
    out
}

/// An expected audit event: allowed (Success) or refused by the policies.
fn event(action: &str, key: &str, allowed: bool) -> (String, String, String, String) {
    (
        action.to_owned(),
        key.to_owned(),
        if allowed { "Success" } else { "Failure" }.to_owned(),
        if allowed { "" } else { "Forbidden.NoPermission" }.to_owned(),
    )
}

#[test]
fn principals_act_under_their_identity_policies() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let account = account_of(store);
    let alice = format!("acs:ram::{account}:user/alice");
    let bob = format!("acs:ram::{account}:user/bob");
    let key = create_key(store, &[]);
    let other = create_key(store, &[]);
    let key_arn = text(&ok(store, &["DescribeKey", "--KeyId", &key]), "/KeyMetadata/Arn");
    let other_arn = text(&ok(store, &["DescribeKey", "--KeyId", &other]), "/KeyMetadata/Arn");

    // The root writes alice a policy: Encrypt and Decrypt on one key, by its ARN.
    let document = policy_document(json!([{
        "Effect": "Allow",
        "Action": ["kms:Encrypt", "kms:Decrypt"],
        "Resource": [key_arn],
    }]));
    let created = ok(
        store,
        &[
            "CreatePolicy",
            "--PolicyName",
            "alice-encrypt",
            "--PolicyDocument",
            &document,
            "--Description",
            "alice encrypts with one key",
        ],
    );
    assert_eq!(created["Policy"]["PolicyName"], "alice-encrypt", "{created}");
    assert_eq!(created["Policy"]["PolicyType"], "Custom", "{created}");
    assert_eq!(created["Policy"]["AttachmentCount"], 0, "{created}");
    ok(
        store,
        &[
            "AttachPolicyToUser",
            "--PolicyName",
            "alice-encrypt",
            "--UserName",
            "alice",
        ],
    );
    let got = ok(store, &["GetPolicy", "--PolicyName", "alice-encrypt"]);
    assert_eq!(got["Policy"]["AttachmentCount"], 1, "{got}");
    assert_eq!(got["Policy"]["Description"], "alice encrypts with one key", "{got}");
    assert_eq!(parsed(&text(&got, "/PolicyDocument")), parsed(&document));
    let for_alice = ok(store, &["ListPoliciesForUser", "--UserName", "alice"]);
    assert_eq!(for_alice["TotalCount"], 1, "{for_alice}");
    assert_eq!(for_alice["Policies"]["Policy"][0]["PolicyName"], "alice-encrypt");
    let for_bob = ok(store, &["ListPoliciesForUser", "--UserName", "bob"]);
    assert_eq!(for_bob["TotalCount"], 0, "{for_bob}");

    // Alice encrypts and decrypts with that key…
    let secret = b"alice's secret";
    let encrypted = ok(
        store,
        &[
            "--principal",
            &alice,
            "Encrypt",
            "--KeyId",
            &key,
            "--Plaintext",
            &b64(secret),
        ],
    );
    assert_eq!(text(&encrypted, "/KeyId"), key);
    let blob = text(&encrypted, "/CiphertextBlob");
    let decrypted = ok(store, &["--principal", &alice, "Decrypt", "--CiphertextBlob", &blob]);
    assert_eq!(bytes(&decrypted, "/Plaintext"), secret);

    // …and with no other key, nor does anything else.
    let e = denied(
        store,
        &[
            "--principal",
            &alice,
            "Encrypt",
            "--KeyId",
            &other,
            "--Plaintext",
            &b64(secret),
        ],
        "kms:Encrypt",
    );
    assert!(
        text(&e, "/Message").contains(&other_arn),
        "the message names the key: {e}"
    );
    let other_blob = text(
        &ok(store, &["Encrypt", "--KeyId", &other, "--Plaintext", &b64(secret)]),
        "/CiphertextBlob",
    );
    denied(
        store,
        &["--principal", &alice, "Decrypt", "--CiphertextBlob", &other_blob],
        "kms:Decrypt",
    );
    denied(
        store,
        &["--principal", &alice, "DescribeKey", "--KeyId", &key],
        "kms:DescribeKey",
    );
    denied(
        store,
        &["--principal", &alice, "GenerateDataKey", "--KeyId", &key],
        "kms:GenerateDataKey",
    );
    denied(store, &["--principal", &alice, "CreateKey"], "kms:CreateKey");
    denied(store, &["--principal", &alice, "ListKeys"], "kms:ListKeys");

    // Bob has no policy; the alice of another account is not this account's alice.
    denied(
        store,
        &[
            "--principal",
            &bob,
            "Encrypt",
            "--KeyId",
            &key,
            "--Plaintext",
            &b64(secret),
        ],
        "kms:Encrypt",
    );
    let stranger = if account == "1111111111111111" {
        "acs:ram::2222222222222222:user/alice"
    } else {
        "acs:ram::1111111111111111:user/alice"
    };
    denied(
        store,
        &[
            "--principal",
            stranger,
            "Encrypt",
            "--KeyId",
            &key,
            "--Plaintext",
            &b64(secret),
        ],
        "kms:Encrypt",
    );

    // The account root, named or by default, may do everything.
    let root = format!("acs:ram::{account}:root");
    ok(
        store,
        &[
            "--principal",
            &root,
            "Encrypt",
            "--KeyId",
            &other,
            "--Plaintext",
            &b64(secret),
        ],
    );
    ok(store, &["--principal", &root, "ListKeys"]);

    // Detaching the policy takes the permission back.
    ok(
        store,
        &[
            "DetachPolicyFromUser",
            "--PolicyName",
            "alice-encrypt",
            "--UserName",
            "alice",
        ],
    );
    denied(
        store,
        &[
            "--principal",
            &alice,
            "Encrypt",
            "--KeyId",
            &key,
            "--Plaintext",
            &b64(secret),
        ],
        "kms:Encrypt",
    );

    // A malformed --principal or --source-ip is refused before anything runs.
    for bad in [
        "alice".to_owned(),
        "acs:ram::abc:user/alice".to_owned(),
        format!("acs:ram::{account}:group/alice"),
        format!("acs:ram::{account}:user/"),
        format!("acs:ram:cn-hangzhou:{account}:user/alice"),
    ] {
        let e = err(
            store,
            &[
                "--principal",
                &bad,
                "Encrypt",
                "--KeyId",
                &key,
                "--Plaintext",
                &b64(secret),
            ],
            "InvalidParameter",
        );
        assert_eq!(e["HttpStatus"], 400, "--principal {bad}: {e}");
    }
    for bad in ["10.0.0.256", "10.0.0.0/8", "localhost"] {
        err(
            store,
            &["--principal", &alice, "--source-ip", bad, "ListKeys"],
            "InvalidParameter",
        );
    }

    // The audit trail lists alice's calls, allowed and refused, oldest first.
    let expected = vec![
        event("Encrypt", &key, true),
        event("Decrypt", &key, true),
        event("Encrypt", &other, false),
        event("Decrypt", &other, false),
        event("DescribeKey", &key, false),
        event("GenerateDataKey", &key, false),
        event("CreateKey", "", false),
        event("ListKeys", "", false),
        event("Encrypt", &key, false),
    ];
    assert_eq!(audit(store, &["--Principal", &alice]), expected, "alice's events");
    assert_eq!(
        audit(store, &["--Principal", &alice, "--Action", "Encrypt"]),
        [
            event("Encrypt", &key, true),
            event("Encrypt", &other, false),
            event("Encrypt", &key, false)
        ],
        "alice's Encrypts"
    );
    assert_eq!(
        audit(store, &["--Principal", &alice, "--KeyId", &other]),
        [event("Encrypt", &other, false), event("Decrypt", &other, false)],
        "alice's events on the other key"
    );
    assert_eq!(
        audit(store, &["--Principal", &bob]),
        [event("Encrypt", &key, false)],
        "bob's events"
    );
    assert_eq!(
        audit(store, &["--Principal", stranger]),
        [event("Encrypt", &key, false)],
        "the other account's alice's events"
    );
    // The refused --principal values ran nothing, so recorded nothing.
    assert_eq!(audit(store, &["--Principal", "alice"]), []);
    // Every event of alice names her, her key's ARN among the resources of a key's event.
    let listed = ok(store, &["LookupEvents", "--Principal", &alice, "--PageSize", "100"]);
    for e in listed["Events"]["Event"].as_array().expect("an Event list") {
        assert_eq!(e["Principal"], alice.as_str(), "{e}");
        assert!(e.get("SourceIp").is_none(), "no --source-ip, no SourceIp: {e}");
        if e["KeyId"] == key.as_str() {
            assert!(text(e, "/Resource").contains(&key_arn), "{e}");
        }
    }
}

#[test]
fn source_ip_conditions_follow_source_ip() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let account = account_of(store);
    let ops = format!("acs:ram::{account}:user/ops");
    let key = create_key(store, &[]);
    let key_arn = text(&ok(store, &["DescribeKey", "--KeyId", &key]), "/KeyMetadata/Arn");
    let inside = policy_document(json!([{
        "Effect": "Allow",
        "Action": "kms:Encrypt",
        "Resource": key_arn,
        "Condition": {"IpAddress": {"acs:SourceIp": ["10.0.0.0/8", "192.168.7.7"]}},
    }]));
    ok(
        store,
        &[
            "CreatePolicy",
            "--PolicyName",
            "ops-inside",
            "--PolicyDocument",
            &inside,
        ],
    );
    ok(
        store,
        &["AttachPolicyToUser", "--PolicyName", "ops-inside", "--UserName", "ops"],
    );
    let encrypt_from = |ip: Option<&str>| -> Vec<String> {
        let mut args = vec!["--principal".to_owned(), ops.clone()];
        if let Some(ip) = ip {
            args.extend(["--source-ip".to_owned(), ip.to_owned()]);
        }
        args.extend(["Encrypt", "--KeyId", key.as_str(), "--Plaintext", "eA=="].map(str::to_owned));
        args
    };
    let run = |ip: Option<&str>, allowed: bool| {
        let args = encrypt_from(ip);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if allowed {
            ok(store, &args);
        } else {
            denied(store, &args, "kms:Encrypt");
        }
    };
    run(Some("10.1.2.3"), true);
    run(Some("10.255.255.255"), true);
    run(Some("192.168.7.7"), true);
    run(Some("192.168.7.8"), false);
    run(Some("11.0.0.1"), false);
    run(Some("::1"), false);
    // Without --source-ip the caller has no address, which no IpAddress condition matches.
    run(None, false);

    // An explicit Deny outside 10.0.0.0/16 wins over the Allow.
    let deny = policy_document(json!([{
        "Effect": "Deny",
        "Action": "kms:*",
        "Resource": "*",
        "Condition": {"NotIpAddress": {"acs:SourceIp": "10.0.0.0/16"}},
    }]));
    ok(
        store,
        &[
            "CreatePolicy",
            "--PolicyName",
            "ops-deny-outside",
            "--PolicyDocument",
            &deny,
        ],
    );
    ok(
        store,
        &[
            "AttachPolicyToUser",
            "--PolicyName",
            "ops-deny-outside",
            "--UserName",
            "ops",
        ],
    );
    run(Some("10.0.5.5"), true);
    run(Some("10.1.2.3"), false);
    run(Some("192.168.7.7"), false);
    let args = encrypt_from(Some("10.1.2.3"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = denied(store, &args, "kms:Encrypt");
    assert!(text(&e, "/Message").contains("explicit Deny"), "{e}");

    // The audit trail keeps each call's source address.
    let listed = ok(store, &["LookupEvents", "--Principal", &ops, "--PageSize", "100"]);
    let mut seen: Vec<(String, String)> = listed["Events"]["Event"]
        .as_array()
        .expect("an Event list")
        .iter()
        .map(|e| {
            (
                e["SourceIp"].as_str().unwrap_or("-").to_owned(),
                e["Result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.reverse();
    let expected: Vec<(String, String)> = [
        ("10.1.2.3", "Success"),
        ("10.255.255.255", "Success"),
        ("192.168.7.7", "Success"),
        ("192.168.7.8", "Failure"),
        ("11.0.0.1", "Failure"),
        ("::1", "Failure"),
        ("-", "Failure"),
        ("10.0.5.5", "Success"),
        ("10.1.2.3", "Failure"),
        ("192.168.7.7", "Failure"),
        ("10.1.2.3", "Failure"),
    ]
    .iter()
    .map(|(ip, r)| ((*ip).to_owned(), (*r).to_owned()))
    .collect();
    assert_eq!(seen, expected, "ops's events: (SourceIp, Result), oldest first");
}

#[test]
fn key_policies_round_trip_and_grant_access() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let account = account_of(store);
    let root = format!("acs:ram::{account}:root");
    let bob = format!("acs:ram::{account}:user/bob");
    let key = create_key(store, &["--Alias", "alias/shared"]);
    let other = create_key(store, &[]);

    // A key without a policy shows the default one: the account root may do everything.
    let default = ok(store, &["GetKeyPolicy", "--KeyId", &key]);
    assert_eq!(text(&default, "/KeyId"), key);
    let default_policy = parsed(&text(&default, "/Policy"));
    assert_eq!(
        default_policy,
        parsed(&kms_core::policy::default_key_policy(&account)),
        "the default key policy"
    );
    let statements = default_policy["Statement"].as_array().expect("statements");
    assert_eq!(statements.len(), 1, "{default_policy}");
    assert_eq!(statements[0]["Effect"], "Allow");
    assert_eq!(statements[0]["Principal"]["RAM"], json!([root]));
    assert!(
        statements[0]["Action"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("kms:*"))),
        "{default_policy}"
    );
    let by_alias = ok(store, &["GetKeyPolicy", "--KeyId", "alias/shared"]);
    assert_eq!(text(&by_alias, "/KeyId"), key, "GetKeyPolicy by alias");
    denied(
        store,
        &["--principal", &bob, "Encrypt", "--KeyId", &key, "--Plaintext", "eA=="],
        "kms:Encrypt",
    );

    // A key policy that lets bob encrypt, and nothing more.
    let policy = policy_document(json!([
        {"Sid": "root", "Effect": "Allow", "Principal": {"RAM": [root]}, "Action": ["kms:*"], "Resource": ["*"]},
        {"Sid": "bob encrypts", "Effect": "Allow", "Principal": {"RAM": [bob]}, "Action": ["kms:Encrypt"], "Resource": ["*"]},
    ]));
    ok(store, &["SetKeyPolicy", "--KeyId", &key, "--Policy", &policy]);
    let got = ok(store, &["GetKeyPolicy", "--KeyId", &key]);
    assert_eq!(parsed(&text(&got, "/Policy")), parsed(&policy), "the policy set");
    let other_policy = ok(store, &["GetKeyPolicy", "--KeyId", &other]);
    assert_eq!(
        parsed(&text(&other_policy, "/Policy")),
        default_policy,
        "another key keeps the default"
    );
    let blob = text(
        &ok(
            store,
            &["--principal", &bob, "Encrypt", "--KeyId", &key, "--Plaintext", "eA=="],
        ),
        "/CiphertextBlob",
    );
    denied(
        store,
        &["--principal", &bob, "Decrypt", "--CiphertextBlob", &blob],
        "kms:Decrypt",
    );
    denied(
        store,
        &["--principal", &bob, "Encrypt", "--KeyId", &other, "--Plaintext", "eA=="],
        "kms:Encrypt",
    );
    denied(
        store,
        &["--principal", &bob, "GetKeyPolicy", "--KeyId", &key],
        "kms:GetKeyPolicy",
    );
    denied(
        store,
        &["--principal", &bob, "SetKeyPolicy", "--KeyId", &key, "--Policy", ""],
        "kms:SetKeyPolicy",
    );
    // The root still may (it is in the policy), and decrypts bob's ciphertext.
    let back = ok(store, &["Decrypt", "--CiphertextBlob", &blob]);
    assert_eq!(bytes(&back, "/Plaintext"), b"x");

    // A key policy must name its principals; a bad one changes nothing.
    let no_principal = policy_document(json!([
        {"Effect": "Allow", "Action": ["kms:*"], "Resource": ["*"]},
    ]));
    err(
        store,
        &["SetKeyPolicy", "--KeyId", &key, "--Policy", &no_principal],
        "InvalidParameter",
    );
    err(
        store,
        &["SetKeyPolicy", "--KeyId", &key, "--Policy", "{not json"],
        "InvalidParameter",
    );
    let got = ok(store, &["GetKeyPolicy", "--KeyId", &key]);
    assert_eq!(parsed(&text(&got, "/Policy")), parsed(&policy), "unchanged");

    // An empty policy restores the default, and bob loses what it gave him.
    ok(store, &["SetKeyPolicy", "--KeyId", &key, "--Policy", ""]);
    let got = ok(store, &["GetKeyPolicy", "--KeyId", &key]);
    assert_eq!(parsed(&text(&got, "/Policy")), default_policy, "the default again");
    denied(
        store,
        &["--principal", &bob, "Encrypt", "--KeyId", &key, "--Plaintext", "eA=="],
        "kms:Encrypt",
    );

    // CreateKey takes a key policy too; an explicit Deny in it binds even the account root.
    let guarded = policy_document(json!([
        {"Effect": "Allow", "Principal": {"RAM": [root]}, "Action": ["kms:*"], "Resource": ["*"]},
        {"Effect": "Deny", "Principal": {"RAM": [root]}, "Action": ["kms:Decrypt"], "Resource": ["*"]},
    ]));
    let created = ok(store, &["CreateKey", "--Policy", &guarded]);
    let guarded_key = text(&created, "/KeyMetadata/KeyId");
    let got = ok(store, &["GetKeyPolicy", "--KeyId", &guarded_key]);
    assert_eq!(parsed(&text(&got, "/Policy")), parsed(&guarded), "CreateKey's policy");
    let blob = text(
        &ok(store, &["Encrypt", "--KeyId", &guarded_key, "--Plaintext", "eA=="]),
        "/CiphertextBlob",
    );
    let e = denied(store, &["Decrypt", "--CiphertextBlob", &blob], "kms:Decrypt");
    assert!(text(&e, "/Message").contains("explicit Deny"), "{e}");
    // The root may still change the policy (only Decrypt is denied), and then decrypt.
    ok(store, &["SetKeyPolicy", "--KeyId", &guarded_key, "--Policy", ""]);
    let back = ok(store, &["Decrypt", "--CiphertextBlob", &blob]);
    assert_eq!(bytes(&back, "/Plaintext"), b"x");
}

#[test]
fn principals_of_another_account_need_both_policies() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let account = account_of(store);
    let foreign_account = if account == "1111111111111111" {
        "2222222222222222"
    } else {
        "1111111111111111"
    };
    let partner = format!("acs:ram::{foreign_account}:user/partner");
    let key = create_key(store, &[]);
    let key_arn = text(&ok(store, &["DescribeKey", "--KeyId", &key]), "/KeyMetadata/Arn");
    let encrypt = [
        "--principal",
        &partner,
        "Encrypt",
        "--KeyId",
        &key,
        "--Plaintext",
        "eA==",
    ];

    // Only an identity policy (attached to the other account's user): not enough.
    let identity = policy_document(json!([
        {"Effect": "Allow", "Action": ["kms:Encrypt"], "Resource": [key_arn]},
    ]));
    ok(
        store,
        &[
            "CreatePolicy",
            "--PolicyName",
            "partner-encrypt",
            "--PolicyDocument",
            &identity,
        ],
    );
    ok(
        store,
        &[
            "AttachPolicyToUser",
            "--PolicyName",
            "partner-encrypt",
            "--UserName",
            "partner",
            "--AccountId",
            foreign_account,
        ],
    );
    let listed = ok(
        store,
        &[
            "ListPoliciesForUser",
            "--UserName",
            "partner",
            "--AccountId",
            foreign_account,
        ],
    );
    assert_eq!(listed["TotalCount"], 1, "{listed}");
    let here = ok(store, &["ListPoliciesForUser", "--UserName", "partner"]);
    assert_eq!(here["TotalCount"], 0, "this account's partner is another user: {here}");
    denied(store, &encrypt, "kms:Encrypt");

    // Identity policy and key policy: allowed.
    let key_policy = policy_document(json!([
        {"Effect": "Allow", "Principal": {"RAM": [format!("acs:ram::{account}:root")]}, "Action": ["kms:*"], "Resource": ["*"]},
        {"Effect": "Allow", "Principal": {"RAM": [partner]}, "Action": ["kms:Encrypt"], "Resource": ["*"]},
    ]));
    ok(store, &["SetKeyPolicy", "--KeyId", &key, "--Policy", &key_policy]);
    ok(store, &encrypt);

    // Only the key policy: not enough either.
    ok(
        store,
        &[
            "DetachPolicyFromUser",
            "--PolicyName",
            "partner-encrypt",
            "--UserName",
            "partner",
            "--AccountId",
            foreign_account,
        ],
    );
    denied(store, &encrypt, "kms:Encrypt");
    assert_eq!(
        audit(store, &["--Principal", &partner]),
        [
            event("Encrypt", &key, false),
            event("Encrypt", &key, true),
            event("Encrypt", &key, false)
        ],
        "the partner's events"
    );
}

#[test]
fn token_hash_pin_prints_a_hash_pin_matches_accepts() {
    let dir = TempDir::new().expect("temp dir");
    let store = dir.path();
    let (success, out, stderr) = tessera(store, &["token", "hash-pin", "--pin", "123456"]);
    assert!(success, "tessera token hash-pin: {stderr}");
    let fields: Vec<&String> = out.as_object().expect("a JSON object").keys().collect();
    assert_eq!(fields, ["PinHash"], "{out}");
    let hash = text(&out, "/PinHash");
    assert_eq!(kms_core::pin_matches(b"123456", &hash).ok(), Some(true), "{hash}");
    assert_eq!(kms_core::pin_matches(b"123457", &hash).ok(), Some(false), "{hash}");
    assert_eq!(kms_core::pin_matches(b"", &hash).ok(), Some(false), "{hash}");

    // Salted: the same PIN hashes differently each time, and each hash matches it.
    let (_, again, _) = tessera(store, &["token", "hash-pin", "--pin", "123456"]);
    let again = text(&again, "/PinHash");
    assert_ne!(again, hash, "a fresh salt each time");
    assert_eq!(kms_core::pin_matches(b"123456", &again).ok(), Some(true));

    // From TESSERA_PIN, to keep the PIN off the command line.
    let from_env = command()
        .env("TESSERA_PIN", "env-pin-9876")
        .arg("--store")
        .arg(store)
        .args(["token", "hash-pin"])
        .output()
        .expect("run tessera");
    let (success, out, stderr) = split(&from_env);
    assert!(success, "{stderr}");
    assert_eq!(
        kms_core::pin_matches(b"env-pin-9876", &text(&out, "/PinHash")).ok(),
        Some(true)
    );

    // A PIN the token would refuse is refused here too.
    err(store, &["token", "hash-pin", "--pin", "12"], "InvalidParameter");
    err(
        store,
        &["token", "hash-pin", "--pin", &"9".repeat(kms_core::MAX_PIN_LEN + 1)],
        "InvalidParameter",
    );
}

#[test]
fn actions_cover_every_operation() {
    let dir = TempDir::new().expect("temp dir");
    let actions = listed_actions(dir.path());
    let operations: BTreeSet<String> = kms_core::OPERATIONS.iter().map(|(api, _)| (*api).to_owned()).collect();
    let missing: Vec<&String> = operations.difference(&actions).collect();
    assert!(missing.is_empty(), "operations `tessera actions` lacks: {missing:?}");
    let unknown: Vec<&String> = actions.difference(&operations).collect();
    assert!(unknown.is_empty(), "actions that are no operation: {unknown:?}");
    for action in [
        "SetKeyPolicy",
        "GetKeyPolicy",
        "CreatePolicy",
        "AttachPolicyToUser",
        "LookupEvents",
    ] {
        assert!(actions.contains(action), "{action} is not listed");
    }
}
