//! One process per test. The module keeps one state per process, read at C_Initialize from the
//! environment, so each test runs its body in a fresh child process of this very test binary
//! (`<exe> <test> --exact`), with its own store, configuration file and log: tests stay
//! independent and can run in parallel, and no test sets environment variables in a
//! multi-threaded process.
#![allow(dead_code)] // not every test uses every helper

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set in a child: the role it plays (for most tests, the test's own name).
pub const ROLE_ENV: &str = "TESSERA_MODULE_TEST_ROLE";
/// Set in a child: its work directory (store, configuration, log).
pub const DIR_ENV: &str = "TESSERA_MODULE_TEST_DIR";
/// How long a child may take.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Variables of the caller's environment that would change what the module opens.
const SCRUBBED_ENV: &[&str] = &[
    "TESSERA_PKCS11_CONFIG",
    "TESSERA_STORE",
    "TESSERA_PASSPHRASE",
    "TESSERA_ROOT_KEY_FILE",
    "TESSERA_LOG",
];

/// The role of this process when it is a child, else None.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok().filter(|r| !r.is_empty())
}

/// A test's work directory: the store, the configuration file and the module's log.
pub struct Fixture {
    /// The work directory.
    pub dir: PathBuf,
}

impl Fixture {
    /// The store directory.
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("pkcs11.toml")
    }

    /// The module's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("module.log")
    }

    /// The fixture of this child process.
    pub fn of_child() -> Fixture {
        let dir = std::env::var_os(DIR_ENV).expect("a child knows its work directory");
        Fixture {
            dir: PathBuf::from(dir),
        }
    }

    /// A second `Kms` on the store: for visibility it is another process, as the module's own
    /// `Kms` sees changes only through the store.
    pub fn kms(&self) -> kms_core::Kms {
        kms_core::Kms::open(self.store()).expect("open the store with kms-core")
    }

    /// The module's log so far (empty if none).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

/// A path as a TOML basic string.
pub fn toml_string(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("a JSON string is a TOML basic string")
}

/// How a test's configuration differs from the default one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `generate_certs = true`.
    pub generate_certs: bool,
    /// `destroy_pending_days`, when set.
    pub destroy_pending_days: Option<u32>,
}

/// Runs `body` in a child process with a fresh store and a configuration file naming it (debug
/// log to `module.log`). In the parent, waits for the child and fails with its output if it
/// failed; in the child, runs `body`.
pub fn isolated(test: &str, options: Options, body: impl FnOnce(&Fixture)) {
    if let Some(role) = role() {
        assert_eq!(role, test, "a child runs only the test it was started for");
        body(&Fixture::of_child());
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!("tessera-module-{test}-"))
        .tempdir()
        .expect("a temporary directory");
    let fixture = Fixture {
        dir: tmp.path().to_path_buf(),
    };
    let mut config = format!(
        "store = {}\nlog_level = \"debug\"\nlog_file = {}\ngenerate_certs = {}\n",
        toml_string(&fixture.store()),
        toml_string(&fixture.log()),
        options.generate_certs
    );
    if let Some(days) = options.destroy_pending_days {
        config.push_str(&format!("destroy_pending_days = {days}\n"));
    }
    std::fs::write(fixture.config(), config).expect("write the configuration file");
    let out = run_child(
        test,
        test,
        &[
            ("TESSERA_PKCS11_CONFIG", fixture.config().into_os_string()),
            (DIR_ENV, fixture.dir.clone().into_os_string()),
        ],
    );
    if !out.passed() {
        let log = fixture.log_text();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        if std::env::var_os("TESSERA_MODULE_TEST_KEEP").is_some() {
            let kept = tmp.keep();
            eprintln!("kept {}", kept.display());
        }
        panic!(
            "{test} failed in its child process:\n{}\n--- module.log (last lines)\n{}",
            out.describe(),
            tail.join("\n")
        );
    }
}

/// What a child process left behind.
#[derive(Debug)]
pub struct ChildOutput {
    /// None when it was killed after [`CHILD_TIMEOUT`].
    pub status: Option<ExitStatus>,
    /// Its standard output (the test harness's and the test's).
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl ChildOutput {
    /// The child ran exactly one test and it passed.
    pub fn passed(&self) -> bool {
        self.status.is_some_and(|s| s.success()) && self.stdout.contains("test result: ok. 1 passed")
    }

    /// How it ended and what it printed.
    pub fn describe(&self) -> String {
        let ended = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {}s", CHILD_TIMEOUT.as_secs()),
        };
        format!(
            "{ended}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs the test `test` of this binary in a child process with `ROLE_ENV=role` and `envs`, the
/// caller's Tessera variables removed.
pub fn run_child(test: &str, role: &str, envs: &[(&str, OsString)]) -> ChildOutput {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the test binary");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    ChildOutput {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}
