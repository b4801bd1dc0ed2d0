//! Harness for tests against a real SoftHSM2: each [`SoftHsm`] is a fresh token in its own
//! temporary directory (its own `SOFTHSM2_CONF`), and [`Stores`] opens a Tessera store with a
//! software instance and a hardware instance bound to that token, so one behaviour suite can run
//! against both engines.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when a process loads it, and a process loads a PKCS#11 module
//! once: so every test binary that uses this harness must make ONE token per process (or run the
//! tests that need different tokens in child processes). [`SoftHsm::shared`] gives each test
//! binary one token, created at first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kms_core::api::CreateKmsInstanceRequest;
use kms_core::model::ProductVersion;
use kms_core::{Kms, KmsOptions};

/// SoftHSM2's module, as Debian installs it.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The SO PIN of every test token.
pub const SO_PIN: &str = "5678";
/// The user PIN of every test token.
pub const USER_PIN: &str = "1234";
/// The environment variable the hardware instances read their PIN from.
pub const PIN_ENV: &str = "TESSERA_TEST_HSM_PIN";

/// Whether SoftHSM2 is installed; under `CI=true` its absence fails the caller.
pub fn have_softhsm() -> bool {
    let found = Path::new(SOFTHSM_MODULE).is_file();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "SoftHSM2 is not installed, and CI=true requires it (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: SoftHSM2 is not installed ({SOFTHSM_MODULE})");
    }
    found
}

/// A SoftHSM2 token in a temporary directory.
pub struct SoftHsm {
    /// The directory holding `softhsm2.conf` and `tokens/`.
    pub dir: tempfile::TempDir,
    /// The token's label.
    pub label: String,
}

impl SoftHsm {
    /// A new token labelled `label`, and `SOFTHSM2_CONF` pointing at it for this process (set
    /// before anything in this process loads SoftHSM2).
    pub fn new(label: &str) -> SoftHsm {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("the token directory");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                USER_PIN,
            ])
            .output()
            .expect("run softhsm2-util");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SoftHSM2 reads its configuration when it is loaded; the hardware instances read the PIN
        // from this variable.
        set_env("SOFTHSM2_CONF", conf.as_os_str());
        set_env(PIN_ENV, USER_PIN.as_ref());
        SoftHsm {
            dir,
            label: label.to_owned(),
        }
    }

    /// This process's token, made at first use.
    pub fn shared() -> &'static SoftHsm {
        static SHARED: OnceLock<SoftHsm> = OnceLock::new();
        SHARED.get_or_init(|| SoftHsm::new("tessera-test"))
    }

    /// `SOFTHSM2_CONF` of this token.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// The token directory.
    pub fn token_dir(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// `pkcs11-tool` on SoftHSM2's own module, logged in to this token.
    pub fn pkcs11_tool(&self, args: &[&str]) -> std::process::Output {
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", self.conf())
            .args([
                "--module",
                SOFTHSM_MODULE,
                "--token-label",
                &self.label,
                "--login",
                "--pin",
                USER_PIN,
            ])
            .args(args)
            .output()
            .expect("run pkcs11-tool")
    }
}

fn set_env(name: &str, value: &std::ffi::OsStr) {
    // Edition 2024 makes `set_var` unsafe; the harness sets these two variables before any
    // thread of the test reads them, from the single place that makes the token.
    #[allow(unsafe_code)]
    // SAFETY: called before the module and the engines read the environment (see above).
    unsafe {
        std::env::set_var(name, value)
    };
}

/// A store with the default software instance and a hardware instance on a token.
pub struct Stores {
    /// The store directory.
    pub dir: tempfile::TempDir,
    /// The KMS over it.
    pub kms: Kms,
    /// The hardware instance's id.
    pub hardware: String,
}

impl Stores {
    /// A new store whose hardware instance is `hsm`'s token.
    pub fn new(hsm: &SoftHsm) -> Stores {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let kms = Kms::open_with(dir.path(), KmsOptions::default()).expect("open the store");
        let hardware = kms
            .create_kms_instance(&CreateKmsInstanceRequest {
                product_version: Some(ProductVersion::Hardware),
                hsm_module_path: Some(SOFTHSM_MODULE.into()),
                hsm_token_label: Some(hsm.label.clone()),
                hsm_pin_env: Some(PIN_ENV.into()),
                ..CreateKmsInstanceRequest::default()
            })
            .expect("CreateKmsInstance")
            .kms_instance_id;
        Stores { dir, kms, hardware }
    }

    /// The instance ids to run a behaviour suite on: software, then hardware.
    pub fn instances(&self) -> [&str; 2] {
        [kms_core::DEFAULT_INSTANCE_ID, &self.hardware]
    }
}
