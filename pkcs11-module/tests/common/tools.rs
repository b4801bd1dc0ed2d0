//! Running tools and reading `pkcs11-tool -O`: std only, shared by the PKCS#11 module's client
//! tests (as `common::tools`) and the SoftHSM2 tests (softhsm-tests/tests/support includes this
//! file by path), so that both read tool output the same way.
#![allow(dead_code)] // each test crate uses its own subset

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// True when `CI=true`: then missing tools are failures, not skips.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True if `program` can be found on PATH (or is an existing path).
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// What a finished (or timed-out) tool invocation left behind.
#[derive(Debug)]
pub struct ToolOutput {
    /// The command line, for messages.
    pub command: String,
    /// None when it was killed after its timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// The timeout it ran under.
    pub timeout: Duration,
}

impl ToolOutput {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// stdout followed by stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The command, how it ended, and everything it printed.
    pub fn describe(&self) -> String {
        let ended = match self.status {
            Some(status) => status.to_string(),
            None => format!("killed after the {}s timeout", self.timeout.as_secs()),
        };
        format!(
            "$ {}\n{ended}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Quotes an argument for display if it needs it.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=/.,:@+%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with stdin closed, collecting its output; kills it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> ToolOutput {
    let mut line = shell_word(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&shell_word(&arg.to_string_lossy()));
    }
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("cannot start `{line}`: {e}"),
    };
    let mut out_pipe = child.stdout.take().expect("a piped stdout");
    let mut err_pipe = child.stderr.take().expect("a piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("poll a child process") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill(); // this child only, by its pid
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let stdout = out_reader.join().expect("the stdout reader");
    let stderr = err_reader.join().expect("the stderr reader");
    ToolOutput {
        command: line,
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timeout,
    }
}

/// target/<profile>/, where cargo puts the cdylib and the binaries (the test runs from
/// target/<profile>/deps/).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's directory");
    deps.parent().expect("target/<profile>/").to_path_buf()
}

/// The Tessera module to test: `TESSERA_PKCS11_MODULE` if set, else the newer of
/// target/<profile>/deps/libtessera_pkcs11.so (what `cargo test -p pkcs11-module` builds along
/// with this test) and target/<profile>/libtessera_pkcs11.so (where only `cargo build` copies it,
/// so it can be stale).
pub fn tessera_module() -> PathBuf {
    if let Some(path) = std::env::var_os("TESSERA_PKCS11_MODULE") {
        return PathBuf::from(path);
    }
    let profile = profile_dir();
    let candidates = [
        profile.join("deps").join("libtessera_pkcs11.so"),
        profile.join("libtessera_pkcs11.so"),
    ];
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    candidates
        .iter()
        .filter(|p| p.exists())
        .max_by_key(|p| modified(p))
        .unwrap_or(&candidates[0])
        .clone()
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// An object class as `pkcs11-tool -O` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjClass {
    PrivateKey,
    PublicKey,
    SecretKey,
    Certificate,
    Data,
    Other,
}

/// One object from `pkcs11-tool -O`: the heading line and its `name: value` fields.
#[derive(Clone, Debug)]
pub struct P11Object {
    pub class: ObjClass,
    /// e.g. "Private Key Object; EC", "Public Key Object; RSA 2048 bits".
    pub heading: String,
    pub label: Option<String>,
    /// CKA_ID in lower-case hex.
    pub id: Option<String>,
    pub fields: Vec<(String, String)>,
}

impl P11Object {
    /// The value of the field `name` ("Usage", "Access", "EC_POINT"…), if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The comma-separated items of the field `name` ("sensitive", "never extractable"…).
    pub fn items(&self, name: &str) -> Vec<String> {
        self.field(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses `pkcs11-tool -O` (and `--keypairgen`/`--keygen`) output into objects.
pub fn parse_objects(text: &str) -> Vec<P11Object> {
    let mut objects: Vec<P11Object> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let class = if line.starts_with("Private Key Object") {
                ObjClass::PrivateKey
            } else if line.starts_with("Public Key Object") {
                ObjClass::PublicKey
            } else if line.starts_with("Secret Key Object") {
                ObjClass::SecretKey
            } else if line.starts_with("Certificate Object") {
                ObjClass::Certificate
            } else if line.starts_with("Data object") {
                ObjClass::Data
            } else if line.contains("Object") {
                ObjClass::Other
            } else {
                continue; // "Key pair generated:", "Using slot …" and the like
            };
            objects.push(P11Object {
                class,
                heading: line.trim().to_owned(),
                label: None,
                id: None,
                fields: Vec::new(),
            });
            continue;
        }
        let Some(current) = objects.last_mut() else { continue };
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        match name.as_str() {
            "label" => current.label = Some(value.clone()),
            "ID" => current.id = Some(value.to_ascii_lowercase()),
            _ => {}
        }
        current.fields.push((name, value));
    }
    objects
}
