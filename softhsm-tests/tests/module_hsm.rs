//! The PKCS#11 module (`libtessera_pkcs11.so`) serves the keys of a hardware instance to
//! `pkcs11-tool` and to OpenSSL (libp11's engine) the same way it serves software keys: one
//! scenario, run against a token configured with `instance = "kst-default"` and against one
//! configured with `instance = "<hardware instance>"` over the same store, and the objects of
//! the two tokens must look alike. Tessera on top of SoftHSM2 adds what the HSM alone has not:
//! versions (a rotation adds objects, the old version stays reachable by its CKA_ID), aliases
//! (the label), and states (a disabled or pending-deletion key leaves the token, comes back
//! when enabled).
//!
//! Every signature is checked by plain `openssl` and by the RustCrypto crates against
//! GetPublicKey's PEM. The clients load our module in their own processes, which open SoftHSM2
//! with `SOFTHSM2_CONF` and the PIN variable the harness set in this process's environment.
//!
//! Skipped (SKIPPED on stderr) without SoftHSM2, pkcs11-tool, openssl or libp11's engine, failed
//! then under `CI=true`.

mod support;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kms_core::Kms;
use kms_core::api::*;
use kms_core::model::*;
use softhsm_tests::{SoftHsm, USER_PIN};
use support::*;

/// libp11's OpenSSL engine (Debian's `libengine-pkcs11-openssl`).
const LIBP11_ENGINE: &str = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so";
/// The SO PIN of the Tessera tokens.
const TOKEN_SO_PIN: &str = "87654321";
/// What the scenario signs.
const MESSAGE: &[u8] = b"served by Tessera, kept by an HSM\n";

/// Variables of this process that must not reach a client (they would change what it opens).
const SCRUBBED_ENV: &[&str] = &[
    "TESSERA_PKCS11_CONFIG",
    "TESSERA_STORE",
    "TESSERA_PASSPHRASE",
    "TESSERA_ROOT_KEY_FILE",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "PKCS11SPY",
];

/// One Tessera token: the module configured for one instance of the store.
struct Token {
    /// "software" or "hardware", for messages.
    name: &'static str,
    instance: String,
    label: String,
    /// Label prefix of its keys' aliases.
    prefix: String,
    module: PathBuf,
    config: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Token {
    fn new(name: &'static str, instance: &str, store: &Path) -> Token {
        let dir = tempfile::Builder::new()
            .prefix(&format!("module-hsm-{name}-"))
            .tempdir()
            .expect("a temporary directory");
        let config = dir.path().join("tessera-pkcs11.toml");
        let log = dir.path().join("tessera-pkcs11.log");
        let quoted = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("a TOML string");
        std::fs::write(
            &config,
            format!(
                "store = {}\ninstance = {}\nlog_level = \"debug\"\nlog_file = {}\n",
                quoted(store),
                serde_json::to_string(instance).expect("a TOML string"),
                quoted(&log)
            ),
        )
        .expect("write the module's configuration");
        Token {
            name,
            instance: instance.to_owned(),
            label: format!("tessera-{name}"),
            prefix: format!("{name}-key"),
            module: tessera_module(),
            config,
            log,
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write a scratch file");
        path
    }

    fn ec_label(&self) -> String {
        format!("{}-ec", self.prefix)
    }

    fn rsa_label(&self) -> String {
        format!("{}-rsa", self.prefix)
    }

    /// `program` with this token's configuration; SOFTHSM2_CONF and the HSM PIN variable come
    /// from this process (the harness set them).
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.env("TESSERA_PKCS11_CONFIG", &self.config)
            .current_dir(self.dir.path());
        cmd
    }

    fn tool(&self, args: &[&str]) -> ToolOutput {
        let mut cmd = self.command("pkcs11-tool");
        cmd.arg("--module").arg(&self.module).args(args);
        run(cmd)
    }

    #[track_caller]
    fn tool_ok(&self, what: &str, args: &[&str]) -> ToolOutput {
        let out = self.tool(args);
        assert!(out.success(), "[{}] {what} failed:\n{}", self.name, out.describe());
        out
    }

    /// `pkcs11-tool` logged in to this token as the user.
    fn user(&self, args: &[&str]) -> ToolOutput {
        let mut all = vec!["--token-label", self.label.as_str(), "--login", "--pin", USER_PIN];
        all.extend_from_slice(args);
        self.tool(&all)
    }

    #[track_caller]
    fn user_ok(&self, what: &str, args: &[&str]) -> ToolOutput {
        let out = self.user(args);
        assert!(out.success(), "[{}] {what} failed:\n{}", self.name, out.describe());
        out
    }

    fn objects(&self) -> Vec<P11Object> {
        parse_objects(&self.user_ok("pkcs11-tool -O", &["-O"]).stdout)
    }

    /// `openssl args…` with libp11's engine loading our module.
    fn openssl_engine(&self, args: &[&str]) -> ToolOutput {
        let conf = self.dir.path().join("openssl-pkcs11.cnf");
        std::fs::write(
            &conf,
            format!(
                "openssl_conf = openssl_init\n\n[openssl_init]\nengines = engine_section\n\n\
                 [engine_section]\npkcs11 = pkcs11_section\n\n[pkcs11_section]\nengine_id = pkcs11\n\
                 dynamic_path = {LIBP11_ENGINE}\nMODULE_PATH = {}\ninit = 0\n",
                self.module.display()
            ),
        )
        .expect("write the OpenSSL configuration");
        let mut cmd = self.command("openssl");
        cmd.env("OPENSSL_CONF", conf).args(args);
        run(cmd)
    }

    /// Signs `input` through libp11 with the private key `object=<label>`; the signature's path,
    /// or the failed invocation.
    fn libp11_sign(&self, label: &str, options: &[&str], input: &str, name: &str) -> Result<String, ToolOutput> {
        let uri = format!(
            "pkcs11:token={};object={label};type=private?pin-value={USER_PIN}",
            self.label
        );
        let sig = self.path(name);
        let _ = std::fs::remove_file(&sig);
        let mut args = vec![
            "pkeyutl", "-engine", "pkcs11", "-keyform", "engine", "-sign", "-inkey", &uri, "-in", input, "-out", &sig,
        ];
        args.extend_from_slice(options);
        let out = self.openssl_engine(&args);
        if out.success() && Path::new(&sig).exists() {
            Ok(sig)
        } else {
            Err(out)
        }
    }

    /// Plain openssl (no engine): verifies or must reject.
    fn openssl_verify(&self, what: &str, args: &[&str], ok: bool) {
        let out = run({
            let mut cmd = self.command("openssl");
            cmd.args(args);
            cmd
        });
        assert_eq!(
            out.success(),
            ok,
            "[{}] {what}: openssl {} it:\n{}",
            self.name,
            if ok { "did not verify" } else { "verified" },
            out.describe()
        );
    }

    /// The tail of the module's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The objects of `class` whose label is `label`.
fn labelled<'a>(objects: &'a [P11Object], class: ObjClass, label: &str) -> Vec<&'a P11Object> {
    objects
        .iter()
        .filter(|o| o.class == class && o.label.as_deref() == Some(label))
        .collect()
}

/// The one object of `class` labelled `label`, whose CKA_ID must be `version` (ASCII).
#[track_caller]
fn one_object<'a>(t: &Token, objects: &'a [P11Object], class: ObjClass, label: &str, version: &str) -> &'a P11Object {
    let found = labelled(objects, class, label);
    assert!(
        found.len() == 1,
        "[{}] expected one {class:?} labelled {label:?}, found {}; objects:\n{objects:#?}",
        t.name,
        found.len()
    );
    assert_eq!(
        found[0].id.as_deref(),
        Some(hex(version.as_bytes()).as_str()),
        "[{}] the {class:?} {label:?} has a CKA_ID other than its version id {version}",
        t.name
    );
    found[0]
}

/// What the scenario learns of the objects' shape, compared across the two tokens.
type Shape = Vec<(String, ObjClass, String, String, String)>;

/// The heading, Usage and Access of the objects of a key, by key kind.
fn shape(kind: &str, objects: &[&P11Object]) -> Shape {
    let mut out: Shape = objects
        .iter()
        .map(|o| {
            (
                kind.to_owned(),
                o.class,
                o.heading.clone(),
                o.field("Usage").unwrap_or_default().to_owned(),
                o.field("Access").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort_by_key(|s| format!("{s:?}"));
    out
}

/// The keys of one instance, made before the tokens are looked at.
struct Keys {
    ec: KeyMetadata,
    rsa: KeyMetadata,
}

fn make_keys(kms: &Kms, t: &Token) -> Keys {
    let create = |spec: KeySpec, label: String| {
        kms.create_key(&CreateKeyRequest {
            key_spec: Some(spec),
            dkms_instance_id: Some(t.instance.clone()),
            alias: Some(format!("alias/{label}")),
            ..CreateKeyRequest::default()
        })
        .unwrap_or_else(|e| panic!("[{}] CreateKey {spec}: {e}", t.name))
        .key_metadata
    };
    Keys {
        ec: create(KeySpec::EcP256, t.ec_label()),
        rsa: create(KeySpec::Rsa2048, t.rsa_label()),
    }
}

/// The scenario, for one token; returns the shape of its objects.
fn scenario(kms: &Kms, hsm: &SoftHsm, t: &Token, keys: &Keys, other: &Token) -> Shape {
    let ec_label = t.ec_label();
    let rsa_label = t.rsa_label();
    let v1 = keys.ec.primary_key_version.clone().expect("a version");
    let r1 = keys.rsa.primary_key_version.clone().expect("a version");

    // ---- the token: initialised as a SoftHSM2 token would be
    t.tool_ok(
        "pkcs11-tool --init-token",
        &["--init-token", "--label", &t.label, "--so-pin", TOKEN_SO_PIN],
    );
    t.tool_ok(
        "pkcs11-tool --init-pin",
        &[
            "--token-label",
            &t.label,
            "--login",
            "--login-type",
            "so",
            "--so-pin",
            TOKEN_SO_PIN,
            "--init-pin",
            "--pin",
            USER_PIN,
        ],
    );

    // ---- pkcs11-tool -O: the instance's keys, labelled by alias, identified by version
    let objects = t.objects();
    let mut shown = Vec::new();
    for (kind, label, version) in [("ec", &ec_label, &v1), ("rsa", &rsa_label, &r1)] {
        let private = one_object(t, &objects, ObjClass::PrivateKey, label, version);
        let public = one_object(t, &objects, ObjClass::PublicKey, label, version);
        let access = private.items("Access");
        assert!(
            access.iter().any(|a| a == "sensitive") && !access.iter().any(|a| a == "extractable"),
            "[{}] the private key {label} is not sensitive and unextractable: {access:?}",
            t.name
        );
        shown.extend(shape(kind, &[private, public]));
    }
    for foreign in [other.ec_label(), other.rsa_label()] {
        assert!(
            !objects.iter().any(|o| o.label.as_deref() == Some(foreign.as_str())),
            "[{}] the token of instance {} shows {foreign}, a key of instance {}",
            t.name,
            t.instance,
            other.instance
        );
    }

    // ---- signatures, checked by plain openssl and by the RustCrypto crates
    let digest = sha256(MESSAGE);
    let changed = sha256(&flipped(MESSAGE, 0));
    let message = t.write("message.txt", MESSAGE);
    let changed_message = t.write("changed.txt", &flipped(MESSAGE, 0));
    let digest_file = t.write("message.sha256", &digest);
    let changed_file = t.write("changed.sha256", &changed);
    let (_, ec_pem1) = public_pem(kms, &keys.ec.key_id, None).expect("GetPublicKey");
    let (_, rsa_pem) = public_pem(kms, &keys.rsa.key_id, None).expect("GetPublicKey");
    let ec_pub1 = t.write("ec1.pem", ec_pem1.as_bytes());
    let rsa_pub = t.write("rsa.pem", rsa_pem.as_bytes());
    let check_ec = |what: &str, sig_path: &str, public: &str, pem: &str, ok: bool| {
        for (input, bytes, want) in [(&digest_file, &digest, ok), (&changed_file, &changed, false)] {
            t.openssl_verify(
                what,
                &[
                    "pkeyutl", "-verify", "-pubin", "-inkey", public, "-in", input, "-sigfile", sig_path,
                ],
                want,
            );
            let sig = std::fs::read(sig_path).expect("the signature");
            assert_eq!(
                verify_outside(KeySpec::EcP256, SigningAlgorithm::EcdsaSha256, pem, bytes, &sig),
                want,
                "[{}] {what}: p256 disagrees",
                t.name
            );
        }
    };

    let sig = t.path("p11tool-ec.sig");
    let hex_v1 = hex(v1.as_bytes());
    t.user_ok(
        "pkcs11-tool --sign -m ECDSA",
        &[
            "--sign",
            "-m",
            "ECDSA",
            "--id",
            &hex_v1,
            "-i",
            &digest_file,
            "-o",
            &sig,
            "--signature-format",
            "openssl",
        ],
    );
    check_ec("pkcs11-tool ECDSA signature", &sig, &ec_pub1, &ec_pem1, true);

    let sig = t.path("p11tool-rsa.sig");
    t.user_ok(
        "pkcs11-tool --sign -m SHA256-RSA-PKCS",
        &[
            "--sign",
            "-m",
            "SHA256-RSA-PKCS",
            "--id",
            &hex(r1.as_bytes()),
            "-i",
            &message,
            "-o",
            &sig,
        ],
    );
    for (input, ok) in [(&message, true), (&changed_message, false)] {
        t.openssl_verify(
            "pkcs11-tool SHA256-RSA-PKCS signature",
            &["dgst", "-sha256", "-verify", &rsa_pub, "-signature", &sig, input],
            ok,
        );
    }
    let rsa_sig = std::fs::read(&sig).expect("the signature");
    assert!(
        verify_outside(
            KeySpec::Rsa2048,
            SigningAlgorithm::RsaPkcs1Sha256,
            &rsa_pem,
            &digest,
            &rsa_sig
        ),
        "[{}] the pkcs11-tool RSA signature does not verify with the rsa crate",
        t.name
    );

    let sig = t
        .libp11_sign(&ec_label, &[], &digest_file, "libp11-ec.sig")
        .unwrap_or_else(|out| panic!("[{}] libp11 signing with {ec_label}:\n{}", t.name, out.describe()));
    check_ec("libp11 ECDSA signature", &sig, &ec_pub1, &ec_pem1, true);
    let rsa_options = ["-pkeyopt", "digest:sha256"];
    let sig = t
        .libp11_sign(&rsa_label, &rsa_options, &digest_file, "libp11-rsa.sig")
        .unwrap_or_else(|out| panic!("[{}] libp11 signing with {rsa_label}:\n{}", t.name, out.describe()));
    for (input, ok) in [(&digest_file, true), (&changed_file, false)] {
        t.openssl_verify(
            "libp11 RSA signature",
            &[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                &rsa_pub,
                "-in",
                input,
                "-sigfile",
                &sig,
                "-pkeyopt",
                "digest:sha256",
            ],
            ok,
        );
    }
    let rsa_sig = std::fs::read(&sig).expect("the signature");
    assert!(
        verify_outside(
            KeySpec::Rsa2048,
            SigningAlgorithm::RsaPkcs1Sha256,
            &rsa_pem,
            &digest,
            &rsa_sig
        ),
        "[{}] the libp11 RSA signature does not verify with the rsa crate",
        t.name
    );

    // ---- rotation by the KMS: a new version appears, the old one stays reachable
    let v2 = kms
        .create_key_version(&KeyIdRequest::new(format!("alias/{ec_label}")))
        .expect("CreateKeyVersion")
        .key_version
        .key_version_id;
    let (_, ec_pem2) = public_pem(kms, &keys.ec.key_id, None).expect("GetPublicKey");
    let ec_pub2 = t.write("ec2.pem", ec_pem2.as_bytes());
    let objects = t.objects();
    let old_label = format!("{ec_label}@{v1}");
    for class in [ObjClass::PrivateKey, ObjClass::PublicKey] {
        one_object(t, &objects, class, &ec_label, &v2);
        one_object(t, &objects, class, &old_label, &v1);
    }
    let sig = t
        .libp11_sign(&ec_label, &[], &digest_file, "libp11-ec-rotated.sig")
        .unwrap_or_else(|out| panic!("[{}] libp11 signing after the rotation:\n{}", t.name, out.describe()));
    check_ec(
        "libp11 signature after the rotation, new key",
        &sig,
        &ec_pub2,
        &ec_pem2,
        true,
    );
    check_ec(
        "libp11 signature after the rotation, old key",
        &sig,
        &ec_pub1,
        &ec_pem1,
        false,
    );
    let sig = t.path("p11tool-ec-old.sig");
    t.user_ok(
        "pkcs11-tool --sign with the old version",
        &[
            "--sign",
            "-m",
            "ECDSA",
            "--id",
            &hex_v1,
            "-i",
            &digest_file,
            "-o",
            &sig,
            "--signature-format",
            "openssl",
        ],
    );
    check_ec(
        "pkcs11-tool signature by the old version",
        &sig,
        &ec_pub1,
        &ec_pem1,
        true,
    );
    if t.instance != kms_core::DEFAULT_INSTANCE_ID {
        // The new version is new objects in SoftHSM2 itself.
        let out = hsm.pkcs11_tool(&["-O"]);
        let in_hsm = parse_objects(&String::from_utf8_lossy(&out.stdout));
        for version in [&v1, &v2] {
            let id = hex(format!("tessera/{}/{version}", keys.ec.key_id).as_bytes());
            let found = in_hsm.iter().filter(|o| o.id.as_deref() == Some(id.as_str())).count();
            assert_eq!(
                found, 2,
                "[{}] SoftHSM2 should hold a key pair for version {version} of {ec_label}",
                t.name
            );
        }
    }

    // ---- states: a disabled or pending-deletion key leaves the token; enabled, it comes back
    let rsa_ref = KeyIdRequest::new(format!("alias/{rsa_label}"));
    let gone = |when: &str| {
        let objects = t.objects();
        assert!(
            labelled(&objects, ObjClass::PrivateKey, &rsa_label).is_empty()
                && labelled(&objects, ObjClass::PublicKey, &rsa_label).is_empty(),
            "[{}] {rsa_label} is still on the token {when}:\n{objects:#?}",
            t.name
        );
        let refused = t.libp11_sign(&rsa_label, &rsa_options, &digest_file, "libp11-rsa-gone.sig");
        assert!(refused.is_err(), "[{}] libp11 signed with {rsa_label} {when}", t.name);
    };
    let back = |when: &str| {
        let objects = t.objects();
        one_object(t, &objects, ObjClass::PrivateKey, &rsa_label, &r1);
        t.libp11_sign(&rsa_label, &rsa_options, &digest_file, "libp11-rsa-back.sig")
            .unwrap_or_else(|out| panic!("[{}] libp11 signing {when}:\n{}", t.name, out.describe()));
    };
    kms.disable_key(&rsa_ref).expect("DisableKey");
    gone("after DisableKey");
    kms.enable_key(&rsa_ref).expect("EnableKey");
    back("after EnableKey");
    kms.schedule_key_deletion(&ScheduleKeyDeletionRequest {
        key_id: rsa_ref.key_id.clone(),
        pending_window_in_days: Some(7),
    })
    .expect("ScheduleKeyDeletion");
    gone("while its deletion is pending");
    kms.cancel_key_deletion(&rsa_ref).expect("CancelKeyDeletion");
    gone("after CancelKeyDeletion (the key is Disabled)");
    kms.enable_key(&rsa_ref).expect("EnableKey");
    back("after CancelKeyDeletion and EnableKey");

    // ---- aliases: without its alias, a key is labelled by its id
    kms.delete_alias(&DeleteAliasRequest {
        alias_name: format!("alias/{rsa_label}"),
    })
    .expect("DeleteAlias");
    let objects = t.objects();
    one_object(t, &objects, ObjClass::PrivateKey, &keys.rsa.key_id, &r1);
    assert!(
        labelled(&objects, ObjClass::PrivateKey, &rsa_label).is_empty(),
        "[{}] the label of a deleted alias is still shown",
        t.name
    );
    shown
}

#[test]
fn module_serves_hardware_keys_like_software_keys() {
    let test = "module_serves_hardware_keys_like_software_keys";
    if !require(test, &["pkcs11-tool", "openssl", LIBP11_ENGINE]) {
        return;
    }
    let module = tessera_module();
    assert!(
        module.exists(),
        "{} does not exist (cargo builds it with this test: pkcs11-module is a dev-dependency)",
        module.display()
    );
    let hsm = SoftHsm::shared();
    let suite = Suite::new(hsm);
    let kms = &suite.kms;
    let store = suite.stores.dir.path();
    let tokens = [
        Token::new("software", kms_core::DEFAULT_INSTANCE_ID, store),
        Token::new("hardware", suite.hardware(), store),
    ];
    let keys: Vec<Keys> = tokens.iter().map(|t| make_keys(kms, t)).collect();
    for k in &keys[1..] {
        assert_eq!(k.ec.protection_level, Some(ProtectionLevel::Hsm));
    }

    let mut failures = Vec::new();
    let mut shapes = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let other = &tokens[1 - i];
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| scenario(kms, hsm, t, &keys[i], other)));
        let secs = started.elapsed().as_secs_f32();
        match result {
            Ok(shape) => {
                eprintln!("{test} [{} instance {}]: passed in {secs:.1}s", t.name, t.instance);
                shapes.push(shape);
            }
            Err(payload) => {
                eprintln!("{test} [{} instance {}]: FAILED in {secs:.1}s", t.name, t.instance);
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!(
                    "[{} instance {}] {message}\n--- last lines of the module's log {}\n{}",
                    t.name,
                    t.instance,
                    t.log.display(),
                    t.log_tail()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{test}: failed on {} of 2 tokens:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!(
        shapes[0], shapes[1],
        "the module shows hardware keys (right) otherwise than software keys (left)"
    );
}
