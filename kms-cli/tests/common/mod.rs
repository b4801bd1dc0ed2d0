//! Helpers shared by the integration tests: run the real `tessera` binary on a store and read
//! its JSON answers.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// The environment variables that would let the caller's setup leak into a test.
const TESSERA_ENV: &[&str] = &[
    "TESSERA_STORE",
    "TESSERA_PASSPHRASE",
    "TESSERA_ROOT_KEY_FILE",
    "TESSERA_LOG",
];

/// A `tessera` command with a clean environment and no arguments yet.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    for var in TESSERA_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `tessera --store <store> <args…>` and returns its raw output.
pub fn run_raw(store: &Path, args: &[&str]) -> Output {
    command()
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run the tessera binary")
}

/// Text as JSON, or `Null` when it is empty or not JSON.
pub fn json_or_null(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    serde_json::from_str(text.trim()).unwrap_or(Value::Null)
}

/// Splits an output into (exit ok, stdout JSON or null, stderr JSON or null).
pub fn split(out: &Output) -> (bool, Value, Value) {
    (
        out.status.success(),
        json_or_null(&out.stdout),
        json_or_null(&out.stderr),
    )
}

/// Runs `tessera --store <store> <args…>`: (exit ok, stdout JSON or null, stderr JSON or null).
pub fn tessera(store: &Path, args: &[&str]) -> (bool, Value, Value) {
    split(&run_raw(store, args))
}

/// True if `id` has the API's request-id form: 8-4-4-4-12 upper-case hex digits.
pub fn is_request_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)))
}

/// Runs an API action that must succeed; checks the answer carries a RequestId and returns it.
pub fn ok(store: &Path, args: &[&str]) -> Value {
    let out = run_raw(store, args);
    let (success, stdout, _) = split(&out);
    assert!(
        success,
        "tessera {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "tessera {args:?} wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request_id = stdout["RequestId"].as_str().unwrap_or_default();
    assert!(is_request_id(request_id), "tessera {args:?}: no RequestId in {stdout}");
    stdout
}

/// Runs a command that must fail with the API error `code`; checks the exit status and the
/// shape of the error JSON on stderr, and returns that JSON.
pub fn err(store: &Path, args: &[&str], code: &str) -> Value {
    let out = run_raw(store, args);
    let (success, stdout, stderr) = split(&out);
    assert!(!success, "tessera {args:?} should fail, printed {stdout}");
    assert_eq!(out.status.code(), Some(1), "tessera {args:?}: exit status");
    assert!(
        out.stdout.is_empty(),
        "tessera {args:?} failed but wrote to stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.is_object(),
        "tessera {args:?}: stderr is not JSON: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stderr["Code"], code, "tessera {args:?}: {stderr}");
    let message = stderr["Message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "tessera {args:?}: no Message in {stderr}");
    assert!(
        is_request_id(stderr["RequestId"].as_str().unwrap_or_default()),
        "tessera {args:?}: no RequestId in {stderr}"
    );
    let status = stderr["HttpStatus"].as_u64().unwrap_or_default();
    assert!((400..600).contains(&status), "tessera {args:?}: HttpStatus in {stderr}");
    stderr
}

/// The string at a JSON pointer, which must be there.
pub fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
        .to_owned()
}

/// Base64 of bytes, as the API takes binary values.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The bytes of the base64 string at a JSON pointer.
pub fn bytes(value: &Value, pointer: &str) -> Vec<u8> {
    STANDARD
        .decode(text(value, pointer))
        .unwrap_or_else(|e| panic!("{pointer} in {value} is not base64: {e}"))
}

/// Creates a key with extra CreateKey arguments and returns its KeyId.
pub fn create_key(store: &Path, args: &[&str]) -> String {
    let mut all = vec!["CreateKey"];
    all.extend_from_slice(args);
    text(&ok(store, &all), "/KeyMetadata/KeyId")
}
