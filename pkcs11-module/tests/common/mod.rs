//! Helpers shared by the integration tests that drive PKCS#11 modules through real client tools:
//! a [`Target`] (SoftHSM2 as the reference, or Tessera's `libtessera_pkcs11.so`) with its own
//! temporary token, tool runners with a timeout, the skipping policy for missing tools, parsers
//! for `pkcs11-tool` output, and [`side_by_side`], which runs one scenario against every target.
//!
//! Environment variables read here:
//! - `CI=true`: a missing tool fails the test instead of skipping it (`scripts/test.sh` sets it);
//! - `P11_TARGETS`: a comma-separated subset of `softhsm2,tessera` to run (default: both);
//! - `P11_KEEP_TMP=1`: keep each target's temporary directory (tokens, store, logs) for a look;
//! - `TESSERA_PKCS11_MODULE`: the Tessera module to load instead of the one cargo built;
//! - `P11_SPY=1`: put OpenSC's pkcs11-spy between the clients and the module (see [`Target::new`]).
#![allow(dead_code)] // each test crate uses its own subset

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

mod tools;
use tempfile::TempDir;
#[allow(unused_imports)]
pub use tools::*;

/// The token label every scenario initialises.
pub const TOKEN_LABEL: &str = "tessera-test";
/// The security officer's PIN.
pub const SO_PIN: &str = "5678";
/// The user's PIN.
pub const USER_PIN: &str = "1234";
/// The longest any one tool invocation may take.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// SoftHSM2's module (Debian's `softhsm2` package).
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// OpenSC's PKCS#11 call logger, handy to see what a tool asks of a module (`PKCS11SPY=module`).
pub const PKCS11_SPY: &str = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so";
/// The libp11 OpenSSL engine (Debian's `libengine-pkcs11-openssl`).
pub const LIBP11_ENGINE: &str = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so";

/// Variables that would let the caller's own setup leak into a client process.
const SCRUBBED_ENV: &[&str] = &[
    "SOFTHSM2_CONF",
    "TESSERA_PKCS11_CONFIG",
    "TESSERA_STORE",
    "TESSERA_PASSPHRASE",
    "TESSERA_ROOT_KEY_FILE",
    "TESSERA_LOG",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "PKCS11SPY",
    "PKCS11SPY_OUTPUT",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
];

// ---------------------------------------------------------------- skipping policy

/// Applies the skipping policy to `needed` (programs on PATH or absolute file paths): true if
/// all are there. Otherwise fails under `CI=true`, or prints `SKIPPED` naming what is missing and
/// returns false.
pub fn require(test: &str, needed: &[&str]) -> bool {
    let missing: Vec<&str> = needed.iter().copied().filter(|p| !on_path(p)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: missing {missing:?}, and CI=true requires them (Debian: softhsm2 opensc \
         libengine-pkcs11-openssl gnutls-bin openjdk-17-jdk-headless)"
    );
    eprintln!("SKIPPED {test}: missing {missing:?}");
    false
}

// ---------------------------------------------------------------- running tools

/// The last `lines` lines of a text file, or a note why there are none.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no {}: {e})", path.display()),
    }
}

// ---------------------------------------------------------------- targets

/// Which module a [`Target`] loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SoftHSM2, the reference implementation.
    SoftHsm2,
    /// Tessera's `libtessera_pkcs11.so`.
    Tessera,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SoftHsm2 => "SoftHSM2",
            Kind::Tessera => "Tessera",
        }
    }

    /// The spelling used in `P11_TARGETS`.
    pub fn key(self) -> &'static str {
        match self {
            Kind::SoftHsm2 => "softhsm2",
            Kind::Tessera => "tessera",
        }
    }
}

/// The targets `P11_TARGETS` selects (default: both, SoftHSM2 first).
pub fn selected_kinds() -> Vec<Kind> {
    let all = [Kind::SoftHsm2, Kind::Tessera];
    match std::env::var("P11_TARGETS") {
        Ok(list) if !list.trim().is_empty() => {
            let wanted: Vec<String> = list.split(',').map(|s| s.trim().to_ascii_lowercase()).collect();
            for w in &wanted {
                assert!(
                    all.iter().any(|k| k.key() == w),
                    "P11_TARGETS: unknown target {w:?} (known: softhsm2, tessera)"
                );
            }
            all.into_iter()
                .filter(|k| wanted.iter().any(|w| w == k.key()))
                .collect()
        }
        _ => all.to_vec(),
    }
}

/// Known ways SoftHSM2 2.6.1 differs from what the client tools expect; each scenario checks the
/// documented deviation instead of the normal behaviour where a flag is set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    /// No CKM_ECDSA_SHA256 (nor any ECDSA-SHAx): `C_SignInit` answers CKR_MECHANISM_INVALID, so
    /// signing goes through CKM_ECDSA over a digest computed outside.
    pub no_ecdsa_with_hash: bool,
    /// `C_DecryptInit(CKM_RSA_PKCS_OAEP)` with a label (CKZ_DATA_SPECIFIED) answers
    /// CKR_ARGUMENTS_BAD instead of CKR_MECHANISM_PARAM_INVALID, which `pkcs11-tool --test`
    /// treats as fatal whenever an RSA private key with CKA_DECRYPT exists.
    pub oaep_label_arguments_bad: bool,
}

/// One PKCS#11 module under test with its own token state in a temporary directory: the module
/// path, the environment a client process needs to find that state, and helpers to set up the
/// token. `Target::tessera()` also has a store directory that the `tessera` CLI can act on.
pub struct Target {
    pub kind: Kind,
    /// "SoftHSM2" or "Tessera", for messages.
    pub name: &'static str,
    /// The PKCS#11 module to load.
    pub module: PathBuf,
    /// Variables to set for every client process.
    pub env: Vec<(String, String)>,
    pub quirks: Quirks,
    /// Every asymmetric key comes with a certificate object (Tessera's `generate_certs = true`).
    pub generates_certs: bool,
    dir: TempDir,
    store: Option<PathBuf>,
    log_file: Option<PathBuf>,
}

/// A fresh temporary directory (kept when `P11_KEEP_TMP=1`).
fn temp_dir(prefix: &str) -> TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory");
    if std::env::var("P11_KEEP_TMP").as_deref() == Ok("1") {
        dir.disable_cleanup(true);
        eprintln!("P11_KEEP_TMP: keeping {}", dir.path().display());
    }
    dir
}

impl Target {
    /// A target of `kind` (see [`Target::softhsm`] and [`Target::tessera`]).
    /// Under `P11_SPY=1` the clients load OpenSC's pkcs11-spy in front of the module, which logs
    /// every call to `pkcs11-spy.log` in the work directory (use with `P11_KEEP_TMP=1`). OpenSC
    /// 0.23's spy has limits: it crashes the JVM on SunPKCS11's AES-GCM C_Encrypt, and it writes
    /// its own function list into the CK_INTERFACE that the module's C_GetInterface returns, so
    /// it segfaults on a module that keeps that structure in read-only memory.
    pub fn new(kind: Kind) -> Target {
        let mut target = match kind {
            Kind::SoftHsm2 => Target::softhsm(),
            Kind::Tessera => Target::tessera(),
        };
        if std::env::var("P11_SPY").as_deref() == Ok("1") && Path::new(PKCS11_SPY).exists() {
            let log = target.path("pkcs11-spy.log").display().to_string();
            let real = target.module.display().to_string();
            target.env.push(("PKCS11SPY".to_owned(), real));
            target.env.push(("PKCS11SPY_OUTPUT".to_owned(), log));
            target.module = PathBuf::from(PKCS11_SPY);
        }
        target
    }

    /// SoftHSM2 with an empty token directory of its own (`SOFTHSM2_CONF`).
    pub fn softhsm() -> Target {
        let dir = temp_dir("p11-softhsm2-");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("create the SoftHSM2 token directory");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = INFO\n",
                tokens.display()
            ),
        )
        .expect("write softhsm2.conf");
        Target {
            kind: Kind::SoftHsm2,
            name: Kind::SoftHsm2.name(),
            module: PathBuf::from(SOFTHSM2_MODULE),
            env: vec![("SOFTHSM2_CONF".to_owned(), conf.display().to_string())],
            quirks: Quirks {
                no_ecdsa_with_hash: true,
                oaep_label_arguments_bad: true,
            },
            generates_certs: false,
            dir,
            store: None,
            log_file: None,
        }
    }

    /// Tessera's module on a new store (`TESSERA_PKCS11_CONFIG` names its TOML configuration), with
    /// a certificate for every asymmetric key version and a debug log.
    pub fn tessera() -> Target {
        let dir = temp_dir("p11-tessera-");
        let store = dir.path().join("store");
        let log_file = dir.path().join("tessera-pkcs11.log");
        let config = dir.path().join("tessera-pkcs11.toml");
        std::fs::write(
            &config,
            format!(
                "store = {}\ngenerate_certs = true\nlog_level = \"debug\"\nlog_file = {}\n",
                toml_string(&store),
                toml_string(&log_file)
            ),
        )
        .expect("write the Tessera PKCS#11 configuration");
        Target {
            kind: Kind::Tessera,
            name: Kind::Tessera.name(),
            module: tessera_module(),
            env: vec![("TESSERA_PKCS11_CONFIG".to_owned(), config.display().to_string())],
            quirks: Quirks::default(),
            generates_certs: true,
            dir,
            store: Some(store),
            log_file: Some(log_file),
        }
    }

    /// The module behind the spy when `P11_SPY=1`, else [`Target::module`].
    pub fn real_module(&self) -> PathBuf {
        self.env
            .iter()
            .find(|(k, _)| k == "PKCS11SPY")
            .map_or_else(|| self.module.clone(), |(_, v)| PathBuf::from(v))
    }

    pub fn is_tessera(&self) -> bool {
        self.kind == Kind::Tessera
    }

    /// A directory for this target's scratch files (it also holds the token state).
    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path in [`Target::work_dir`].
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Tessera's store directory (None for SoftHSM2).
    pub fn store(&self) -> Option<&Path> {
        self.store.as_deref()
    }

    /// What helps to understand a failure: for Tessera, the tail of the module's log.
    pub fn diagnostics(&self) -> String {
        match &self.log_file {
            Some(log) => format!("--- last lines of {}\n{}", log.display(), tail(log, 80)),
            None => String::new(),
        }
    }

    /// `program` with the target's environment and a scrubbed caller environment.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.current_dir(self.work_dir());
        cmd
    }

    /// Runs `program args…` in the target's environment (with the timeout).
    pub fn run(&self, program: &str, args: &[&str]) -> ToolOutput {
        let mut cmd = self.command(program);
        cmd.args(args);
        run_with_timeout(cmd, TOOL_TIMEOUT)
    }

    /// Runs a tool that must succeed; `what` says what it was for.
    pub fn run_ok(&self, what: &str, program: &str, args: &[&str]) -> ToolOutput {
        let out = self.run(program, args);
        assert!(out.success(), "[{}] {what} failed:\n{}", self.name, out.describe());
        out
    }

    /// `pkcs11-tool --module <module> args…`.
    pub fn pkcs11_tool(&self, args: &[&str]) -> ToolOutput {
        let module = self.module.display().to_string();
        let mut all = vec!["--module", module.as_str()];
        all.extend_from_slice(args);
        self.run("pkcs11-tool", &all)
    }

    /// `pkcs11-tool --module <module> args…`, which must succeed.
    pub fn pkcs11_tool_ok(&self, what: &str, args: &[&str]) -> ToolOutput {
        let out = self.pkcs11_tool(args);
        assert!(out.success(), "[{}] {what} failed:\n{}", self.name, out.describe());
        out
    }

    /// `pkcs11-tool` on the test token, logged in as the user.
    pub fn user_tool(&self, args: &[&str]) -> ToolOutput {
        let mut all = vec!["--token-label", TOKEN_LABEL, "--login", "--pin", USER_PIN];
        all.extend_from_slice(args);
        self.pkcs11_tool(&all)
    }

    /// `pkcs11-tool` on the test token, logged in as the user, which must succeed.
    pub fn user_tool_ok(&self, what: &str, args: &[&str]) -> ToolOutput {
        let out = self.user_tool(args);
        assert!(out.success(), "[{}] {what} failed:\n{}", self.name, out.describe());
        out
    }

    /// Initialises the token as the scenarios expect it: label [`TOKEN_LABEL`], SO PIN
    /// [`SO_PIN`], user PIN [`USER_PIN`] (`pkcs11-tool --init-token`, then `--init-pin`).
    pub fn init_token(&self) {
        self.pkcs11_tool_ok(
            "pkcs11-tool --init-token",
            &["--init-token", "--label", TOKEN_LABEL, "--so-pin", SO_PIN],
        );
        self.pkcs11_tool_ok(
            "pkcs11-tool --init-pin",
            &[
                "--token-label",
                TOKEN_LABEL,
                "--login",
                "--login-type",
                "so",
                "--so-pin",
                SO_PIN,
                "--init-pin",
                "--pin",
                USER_PIN,
            ],
        );
    }

    /// The token's objects as `pkcs11-tool -O` lists them after a user login.
    pub fn list_objects(&self) -> Vec<P11Object> {
        parse_objects(&self.user_tool_ok("pkcs11-tool -O", &["-O"]).stdout)
    }

    /// The one object of `class` labelled `label` (panics naming the target otherwise).
    pub fn object(&self, class: ObjClass, label: &str) -> P11Object {
        let objects = self.list_objects();
        let found: Vec<&P11Object> = objects
            .iter()
            .filter(|o| o.class == class && o.label.as_deref() == Some(label))
            .collect();
        assert!(
            found.len() == 1,
            "[{}] expected exactly one {class:?} labelled {label:?}, found {}; all objects:\n{objects:#?}",
            self.name,
            found.len()
        );
        found[0].clone()
    }

    /// The hex CKA_ID of the private key labelled `label` (for `pkcs11-tool --id`; Tessera assigns
    /// its own ids, so a test never assumes the id it asked for).
    pub fn private_key_id(&self, label: &str) -> String {
        let key = self.object(ObjClass::PrivateKey, label);
        key.id
            .unwrap_or_else(|| panic!("[{}] the private key {label:?} has no CKA_ID", self.name))
    }

    /// The slot id (as `pkcs11-tool -L` shows it) whose token is labelled [`TOKEN_LABEL`].
    pub fn slot_id(&self) -> u64 {
        let out = self.pkcs11_tool_ok("pkcs11-tool -L", &["-L"]);
        slot_of_token(&out.stdout, TOKEN_LABEL)
            .map(|slot| slot.id)
            .unwrap_or_else(|| {
                panic!(
                    "[{}] no slot has the token {TOKEN_LABEL:?}:\n{}",
                    self.name,
                    out.describe()
                )
            })
    }

    /// The public key of the key pair labelled `label` as PEM, read from the token
    /// (`pkcs11-tool --read-object --type pubkey`, converted by openssl).
    pub fn token_public_key_pem(&self, label: &str) -> String {
        let der = self.path(&format!("{label}.token-pub.der"));
        let pem = self.path(&format!("{label}.token-pub.pem"));
        let der_s = der.display().to_string();
        let pem_s = pem.display().to_string();
        self.user_tool_ok(
            "pkcs11-tool --read-object --type pubkey",
            &["--read-object", "--type", "pubkey", "--label", label, "-o", &der_s],
        );
        self.run_ok(
            "openssl pkey (DER public key to PEM)",
            "openssl",
            &["pkey", "-pubin", "-inform", "DER", "-in", &der_s, "-out", &pem_s],
        );
        std::fs::read_to_string(&pem).expect("read the converted public key")
    }

    /// The public key of `label` in the form the scenarios verify with: for Tessera the PEM from
    /// `tessera GetPublicKey --KeyId alias/<label>`, for SoftHSM2 the token's public key object.
    pub fn reference_public_key_pem(&self, label: &str) -> String {
        if self.is_tessera() {
            let key = self.tessera_ok(&["GetPublicKey", "--KeyId", &format!("alias/{label}")]);
            key["PublicKey"]
                .as_str()
                .unwrap_or_else(|| panic!("[Tessera] GetPublicKey gave no PublicKey: {key}"))
                .to_owned()
        } else {
            self.token_public_key_pem(label)
        }
    }

    /// An OpenSSL configuration that loads the libp11 engine (`-engine pkcs11`) with this target's
    /// module, plus an empty `[req]` section so `openssl req -subj …` needs nothing else. Use it
    /// as `OPENSSL_CONF`.
    pub fn openssl_engine_config(&self) -> PathBuf {
        let path = self.path("openssl-pkcs11.cnf");
        std::fs::write(
            &path,
            format!(
                "openssl_conf = openssl_init\n\n\
                 [openssl_init]\nengines = engine_section\n\n\
                 [engine_section]\npkcs11 = pkcs11_section\n\n\
                 [pkcs11_section]\nengine_id = pkcs11\ndynamic_path = {LIBP11_ENGINE}\n\
                 MODULE_PATH = {}\ninit = 0\n\n\
                 [req]\ndistinguished_name = req_dn\n\n[req_dn]\n",
                self.module.display()
            ),
        )
        .expect("write the OpenSSL engine configuration");
        path
    }

    /// `openssl args…` with the libp11 engine configured for this target.
    pub fn openssl_engine(&self, args: &[&str]) -> ToolOutput {
        let mut cmd = self.command("openssl");
        cmd.env("OPENSSL_CONF", self.openssl_engine_config()).args(args);
        run_with_timeout(cmd, TOOL_TIMEOUT)
    }

    // ------------------------------------------------------------ the tessera CLI (Tessera only)

    /// `tessera --store <store> args…` (Tessera targets only).
    pub fn tessera_cli(&self, args: &[&str]) -> ToolOutput {
        let store = self
            .store
            .as_ref()
            .unwrap_or_else(|| panic!("[{}] has no Tessera store", self.name))
            .display()
            .to_string();
        let binary = tessera_binary();
        let mut all = vec!["--store", store.as_str()];
        all.extend_from_slice(args);
        self.run(&binary.display().to_string(), &all)
    }

    /// `tessera --store <store> args…`, which must succeed; its JSON answer.
    pub fn tessera_ok(&self, args: &[&str]) -> Value {
        let out = self.tessera_cli(args);
        assert!(
            out.success(),
            "[{}] tessera {args:?} failed:\n{}",
            self.name,
            out.describe()
        );
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "[{}] tessera {args:?} printed no JSON ({e}):\n{}",
                self.name,
                out.describe()
            )
        })
    }
}

/// A string (a path) as a TOML basic string.
fn toml_string(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("a JSON string is a TOML basic string")
}

/// The `tessera` binary of this profile, built once (`cargo build -p kms-cli --bin tessera`, same
/// target directory) if it is missing.
pub fn tessera_binary() -> PathBuf {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let binary = profile_dir().join("tessera");
            if binary.exists() {
                return Ok(binary);
            }
            let profile = profile_dir();
            let target_dir = profile.parent().expect("the target directory");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--locked", "-p", "kms-cli", "--bin", "tessera"])
                .env("CARGO_TARGET_DIR", target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let out = run_with_timeout(cmd, Duration::from_secs(900));
            if out.success() && binary.exists() {
                Ok(binary)
            } else {
                Err(format!(
                    "{} is missing and building it failed (build it with `cargo build -p kms-cli --bin \
                     tessera` and the same CARGO_TARGET_DIR):\n{}",
                    binary.display(),
                    out.describe()
                ))
            }
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------- running a scenario on every target

/// Runs `scenario` against each selected target (SoftHSM2, then Tessera), each on a fresh
/// target, so a failure says whose behaviour it is: every half runs even when the other fails,
/// and the test fails at the end naming the targets that failed (with Tessera's log tail).
/// SoftHSM2's half is skipped (failed under `CI=true`) when SoftHSM2 is not installed.
pub fn side_by_side(scenario_name: &str, scenario: fn(&Target)) {
    run_on(scenario_name, &selected_kinds(), scenario);
}

/// Runs `scenario` against a fresh Tessera target only, for behaviour SoftHSM2 has no counterpart
/// of (KMS-side rotation, disabling…), with the same reporting as [`side_by_side`]. Does nothing
/// (says so) when `P11_TARGETS` leaves Tessera out.
pub fn tessera_only(scenario_name: &str, scenario: fn(&Target)) {
    if !selected_kinds().contains(&Kind::Tessera) {
        eprintln!("SKIPPED {scenario_name}: P11_TARGETS leaves out tessera, the only target it has");
        return;
    }
    run_on(scenario_name, &[Kind::Tessera], scenario);
}

/// Runs `scenario` against a fresh target of each of `kinds` in turn (see [`side_by_side`]).
fn run_on(scenario_name: &str, kinds: &[Kind], scenario: fn(&Target)) {
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    for &kind in kinds {
        if kind == Kind::SoftHsm2 && !require(&format!("{scenario_name} [SoftHSM2]"), &[SOFTHSM2_MODULE]) {
            continue;
        }
        eprintln!("=== {scenario_name} [{}]", kind.name());
        let target = Target::new(kind);
        if !target.real_module().exists() {
            failures.push(format!(
                "[{}] the module {} does not exist (`cargo test -p pkcs11-module` builds the cdylib)",
                target.name,
                target.real_module().display()
            ));
            continue;
        }
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| scenario(&target)));
        let secs = started.elapsed().as_secs_f32();
        match result {
            Ok(()) => {
                eprintln!("=== {scenario_name} [{}]: PASSED in {secs:.1}s", target.name);
                ran.push(target.name);
            }
            Err(payload) => {
                let mut message = panic_message(payload.as_ref());
                if !message.starts_with(&format!("[{}]", target.name)) {
                    message = format!("[{}] {message}", target.name);
                }
                let diagnostics = target.diagnostics();
                if !diagnostics.is_empty() {
                    let _ = write!(message, "\n{diagnostics}");
                }
                eprintln!("=== {scenario_name} [{}]: FAILED in {secs:.1}s", target.name);
                failures.push(message);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{scenario_name}: failed against {} target(s) (passed: {ran:?})\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------- parsing pkcs11-tool output

/// One slot from `pkcs11-tool -L`: its id and the `name : value` lines under it.
#[derive(Clone, Debug)]
pub struct Slot {
    pub id: u64,
    pub fields: Vec<(String, String)>,
}

impl Slot {
    /// The value of the line `name` ("token label", "token flags"…), if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses `pkcs11-tool -L`.
pub fn parse_slots(list: &str) -> Vec<Slot> {
    let mut slots: Vec<Slot> = Vec::new();
    for line in list.lines() {
        if let Some(rest) = line.strip_prefix("Slot ") {
            // "Slot 0 (0x5b996e48): SoftHSM slot ID 0x5b996e48"
            let id = rest
                .split_once("(0x")
                .and_then(|(_, r)| r.split_once(')'))
                .and_then(|(hex, _)| u64::from_str_radix(hex, 16).ok());
            if let Some(id) = id {
                slots.push(Slot { id, fields: Vec::new() });
            }
        } else if line.starts_with(char::is_whitespace)
            && let Some(slot) = slots.last_mut()
            && let Some((name, value)) = line.trim().split_once(':')
        {
            slot.fields.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    slots
}

/// From `pkcs11-tool -L`: the slot whose token label is `label`.
pub fn slot_of_token(list: &str, label: &str) -> Option<Slot> {
    parse_slots(list)
        .into_iter()
        .find(|s| s.field("token label") == Some(label))
}

/// One mechanism from `pkcs11-tool -M`: "ECDSA, keySize={112,521}, sign, verify, …".
#[derive(Clone, Debug)]
pub struct Mechanism {
    pub name: String,
    /// (min, max) as C_GetMechanismInfo reports them.
    pub key_size: Option<(u64, u64)>,
    pub flags: Vec<String>,
}

/// Parses `pkcs11-tool -M`.
pub fn parse_mechanisms(text: &str) -> Vec<Mechanism> {
    let mut mechanisms = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("  ") else { continue };
        let mut name = rest;
        let mut key_size = None;
        let mut flags = Vec::new();
        if let Some((n, tail)) = rest.split_once(", ") {
            name = n;
            let mut tail = tail;
            if let Some(sizes) = tail.strip_prefix("keySize={")
                && let Some((range, after)) = sizes.split_once('}')
            {
                key_size = range
                    .split_once(',')
                    .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
                tail = after.trim_start_matches(',').trim_start();
            }
            flags = tail
                .split(',')
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty())
                .collect();
        }
        mechanisms.push(Mechanism {
            name: name.trim().to_owned(),
            key_size,
            flags,
        });
    }
    mechanisms
}

/// The base64 body of a PEM text, without its BEGIN/END lines and line breaks: two PEM texts of
/// the same DER compare equal this way however they were wrapped.
pub fn pem_body(pem: &str) -> String {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}
