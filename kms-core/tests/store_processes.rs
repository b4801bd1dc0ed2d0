//! The store with real processes and real SQLite files.
//!
//! * Two processes on one store: a write committed by another process is seen by the very next
//!   call of a `Kms` whose caches are warm (the `PRAGMA data_version` check), in both directions.
//! * Crash safety: a writer killed with SIGKILL at arbitrary points loses no acknowledged key,
//!   leaves no half-written key, and the store opens cleanly with a clean `integrity_check`.
//! * No key material in clear on disk: every stored form an engine made is looked for (raw,
//!   16-byte windows, hex, base64) in every file of the store directory except the root key.
//! * Root key: a wrong key file or passphrase is refused; `root.key` is made with mode 0600.
//!
//! Child processes are this test binary run again with one test selected (`child_*`) and
//! `TESSERA_TEST_ROLE` set; without that variable the `child_*` tests return at once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use kms_core::api::*;
use kms_core::clock::ManualClock;
use kms_core::engine::{Engine, EngineError, KeyHandle, SoftwareEngine, StoredKey, VersionRef};
use kms_core::model::*;
use kms_core::store::{DB_FILE, ROOT_KEY_FILE, RootKeySource};
use kms_core::{Kms, KmsError, KmsOptions};
use zeroize::Zeroizing;

// ------------------------------------------------------------------ child processes

/// Which child role this process plays (absent in the parent).
const ROLE_ENV: &str = "TESSERA_TEST_ROLE";
/// The store directory a child opens.
const DIR_ENV: &str = "TESSERA_TEST_DIR";
/// The role's argument.
const ARG_ENV: &str = "TESSERA_TEST_ARG";
/// Seeds the crash test's choices (printed by the test, to replay a failure).
const SEED_ENV: &str = "TESSERA_TEST_SEED";

/// The create-loop child stops after this many keys even if nobody kills it.
const CHILD_MAX_KEYS: usize = 500;
/// How long the parent waits for any one answer of a child.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Markers of what a child reports on stdout. The test harness writes `test name ... ` before
/// the first line without ending it, so a marker is looked for anywhere in a line.
const OUT: &str = "@@OUT ";
const REPLY: &str = "@@REPLY ";
const KEY: &str = "@@KEY ";

/// What follows `marker` in a line of a child's output.
fn after_marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.split_once(marker).map(|(_, rest)| rest)
}

/// The store directory when this process is the child playing `role`.
fn child_env(role: &str) -> Option<PathBuf> {
    if std::env::var(ROLE_ENV).ok()? != role {
        return None;
    }
    Some(PathBuf::from(
        std::env::var_os(DIR_ENV).expect("child: TESSERA_TEST_DIR"),
    ))
}

fn child_arg() -> String {
    std::env::var(ARG_ENV).expect("child: TESSERA_TEST_ARG")
}

/// This test binary, set to run only the test `test_name` as `role` on the store in `dir`.
fn child_command(test_name: &str, role: &str, dir: &Path, arg: &str) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir)
        .env(ARG_ENV, arg)
        .env_remove(SEED_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Reads complete lines (ending in `\n`) of a child's output on a thread; a line cut short by a
/// kill is dropped. The channel closes at end of file.
fn line_reader(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = BufReader::new(out);
        loop {
            let mut line = String::new();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if !line.ends_with('\n') => return,
                Ok(_) => {
                    if tx.send(line.trim_end().to_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Everything a reader thread collects until end of file.
fn collect(out: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(out).read_to_string(&mut text);
        text
    })
}

/// Waits for a child, killing it (and failing) when it outlives `timeout`.
fn wait_bounded(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child process {} did not finish within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a one-shot `child_act` on the store and returns the values it printed (`OUT …` lines).
fn run_act(dir: &Path, action: &str) -> Vec<String> {
    let mut child = child_command("child_act", "act", dir, action)
        .spawn()
        .expect("spawn child");
    let stdout = collect(child.stdout.take().expect("stdout"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child, CHILD_TIMEOUT);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success(),
        "child `{action}` failed: {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    stdout
        .lines()
        .filter_map(|l| after_marker(l, OUT))
        .map(str::to_owned)
        .collect()
}

/// Child: opens the store, does one action, exits.
#[test]
fn child_act() {
    let Some(dir) = child_env("act") else { return };
    let arg = child_arg();
    let kms = Kms::open(&dir).expect("child: open the store");
    let words: Vec<&str> = arg.split_whitespace().collect();
    let mut out = std::io::stdout().lock();
    match words.as_slice() {
        ["disable", key] => {
            kms.disable_key(&KeyIdRequest::new(*key)).expect("child: DisableKey");
        }
        ["enable", key] => {
            kms.enable_key(&KeyIdRequest::new(*key)).expect("child: EnableKey");
        }
        ["rotate", key] => {
            let v = kms
                .create_key_version(&KeyIdRequest::new(*key))
                .expect("child: CreateKeyVersion");
            writeln!(out, "{OUT}{}", v.key_version.key_version_id).expect("child: stdout");
        }
        ["schedule_deletion", key] => {
            kms.schedule_key_deletion(&ScheduleKeyDeletionRequest {
                key_id: (*key).to_owned(),
                pending_window_in_days: Some(7),
            })
            .expect("child: ScheduleKeyDeletion");
        }
        ["cancel_deletion", key] => {
            kms.cancel_key_deletion(&KeyIdRequest::new(*key))
                .expect("child: CancelKeyDeletion");
        }
        ["update_alias", alias, key] => {
            kms.update_alias(&AliasRequest {
                alias_name: (*alias).to_owned(),
                key_id: (*key).to_owned(),
            })
            .expect("child: UpdateAlias");
        }
        ["delete_alias", alias] => {
            kms.delete_alias(&DeleteAliasRequest {
                alias_name: (*alias).to_owned(),
            })
            .expect("child: DeleteAlias");
        }
        other => panic!("child: unknown action {other:?}"),
    }
    out.flush().expect("child: stdout");
}

/// Child: keeps the store open and answers `encrypt KEY` / `decrypt BASE64` lines on stdin, so
/// its caches stay warm while the parent writes.
#[test]
fn child_serve() {
    let Some(dir) = child_env("serve") else { return };
    let kms = Kms::open(&dir).expect("child: open the store");
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("child: stdin");
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["encrypt", key] => match encrypt(&kms, key, b"from the child") {
                Ok(r) => format!("OK {} {}", r.key_version_id, STANDARD.encode(&r.ciphertext_blob.0)),
                Err(e) => format!("ERR {}", e.code()),
            },
            ["decrypt", blob] => {
                let blob = STANDARD.decode(blob).expect("child: base64");
                match decrypt(&kms, &blob) {
                    Ok(r) => format!(
                        "OK {} {}",
                        r.key_version_id,
                        String::from_utf8_lossy(r.plaintext.expose())
                    ),
                    Err(e) => format!("ERR {}", e.code()),
                }
            }
            ["quit"] => break,
            other => panic!("child: unknown command {other:?}"),
        };
        if writeln!(out, "{REPLY}{reply}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

/// Child: creates AES keys (each with an alias and two tags, so one CreateKey writes several
/// rows) and prints `KEY index key_id` after each acknowledged CreateKey, until killed, until
/// [`CHILD_MAX_KEYS`], or until its stdout closes.
#[test]
fn child_create_loop() {
    let Some(dir) = child_env("create_loop") else { return };
    let round = child_arg();
    let kms = Kms::open(&dir).expect("child: open the store");
    let mut out = std::io::stdout().lock();
    for i in 0..CHILD_MAX_KEYS {
        let created = kms
            .create_key(&CreateKeyRequest {
                key_spec: Some(KeySpec::Aes256),
                description: Some(format!("crash round {round} key {i}")),
                alias: Some(crash_alias(&round, i)),
                tags: vec![Tag::new("round", round.as_str()), Tag::new("index", i.to_string())],
                ..Default::default()
            })
            .expect("child: CreateKey");
        if writeln!(out, "{KEY}{i} {}", created.key_metadata.key_id)
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

fn crash_alias(round: &str, index: usize) -> String {
    format!("alias/crash-r{round}-{index}")
}

// ------------------------------------------------------------------ helpers

fn context() -> kms_core::blob::EncryptionContext {
    [("purpose".to_owned(), "store-processes".to_owned())].into()
}

fn encrypt(kms: &Kms, key: &str, plaintext: &[u8]) -> Result<EncryptResponse, KmsError> {
    kms.encrypt(&EncryptRequest {
        key_id: key.to_owned(),
        plaintext: plaintext.into(),
        encryption_context: context(),
    })
}

fn decrypt(kms: &Kms, blob: &[u8]) -> Result<DecryptResponse, KmsError> {
    kms.decrypt(&DecryptRequest {
        ciphertext_blob: blob.into(),
        encryption_context: context(),
    })
}

fn create(kms: &Kms, spec: KeySpec, usage: Option<KeyUsage>) -> String {
    kms.create_key(&CreateKeyRequest {
        key_spec: Some(spec),
        key_usage: usage,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("CreateKey {spec}: {e}"))
    .key_metadata
    .key_id
}

fn state(kms: &Kms, key: &str) -> KeyState {
    kms.describe_key(&KeyIdRequest::new(key))
        .expect("DescribeKey")
        .key_metadata
        .key_state
        .expect("KeyState")
}

fn store_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tessera-store-processes")
        .tempdir()
        .expect("tempdir")
}

// ------------------------------------------------------------------ 1. two processes

#[test]
fn another_process_changes_are_seen_by_the_next_call() {
    let dir = store_dir();
    let kms = Kms::open(dir.path()).expect("open");
    let key = create(&kms, KeySpec::Aes256, None);
    let other = create(&kms, KeySpec::Aes256, None);
    kms.create_alias(&AliasRequest {
        alias_name: "alias/shared".into(),
        key_id: key.clone(),
    })
    .expect("CreateAlias");

    // Warm every cache: key metadata, the alias, the loaded key version.
    let first = encrypt(&kms, &key, b"before").expect("encrypt");
    let again = encrypt(&kms, "alias/shared", b"before").expect("encrypt through the alias");
    assert_eq!(again.key_id, key);
    assert_eq!(again.key_version_id, first.key_version_id);
    let v1 = first.key_version_id.clone();

    run_act(dir.path(), &format!("disable {key}"));
    let err = encrypt(&kms, &key, b"x").expect_err("the other process disabled the key");
    assert_eq!(err.code(), "Rejected.Disabled");
    let err = decrypt(&kms, &first.ciphertext_blob.0).expect_err("Decrypt needs an Enabled key too");
    assert_eq!(err.code(), "Rejected.Disabled");
    assert_eq!(state(&kms, &key), KeyState::Disabled);

    run_act(dir.path(), &format!("enable {key}"));
    let enabled = encrypt(&kms, &key, b"after enable").expect("the other process enabled the key");
    assert_eq!(enabled.key_version_id, v1);
    let back = decrypt(&kms, &first.ciphertext_blob.0).expect("decrypt");
    assert_eq!(back.plaintext.expose(), b"before");

    let rotated = run_act(dir.path(), &format!("rotate {key}"));
    let [v2] = rotated.as_slice() else {
        panic!("the rotating child printed {rotated:?}")
    };
    assert_ne!(*v2, v1);
    let after = encrypt(&kms, &key, b"after rotation").expect("encrypt after rotation");
    assert_eq!(
        after.key_version_id, *v2,
        "the next Encrypt must use the version another process made primary"
    );
    let back = decrypt(&kms, &first.ciphertext_blob.0).expect("the old version still decrypts");
    assert_eq!(
        (back.key_version_id.as_str(), back.plaintext.expose()),
        (v1.as_str(), b"before".as_slice())
    );
    let back = decrypt(&kms, &after.ciphertext_blob.0).expect("the new version decrypts");
    assert_eq!(back.key_version_id, *v2);

    run_act(dir.path(), &format!("update_alias alias/shared {other}"));
    let moved = encrypt(&kms, "alias/shared", b"x").expect("encrypt through the moved alias");
    assert_eq!(
        moved.key_id, other,
        "the alias cache must follow another process's UpdateAlias"
    );
    run_act(dir.path(), "delete_alias alias/shared");
    let err = encrypt(&kms, "alias/shared", b"x").expect_err("the other process deleted the alias");
    assert_eq!(err.code(), "Forbidden.AliasNotFound");

    run_act(dir.path(), &format!("schedule_deletion {key}"));
    let err = encrypt(&kms, &key, b"x").expect_err("the other process scheduled deletion");
    assert_eq!(err.code(), "Rejected.PendingDeletion");
    assert_eq!(state(&kms, &key), KeyState::PendingDeletion);

    run_act(dir.path(), &format!("cancel_deletion {key}"));
    let err = encrypt(&kms, &key, b"x").expect_err("a cancelled deletion leaves the key Disabled");
    assert_eq!(err.code(), "Rejected.Disabled");

    // The parent still writes fine after all that, and its own writes are seen by itself.
    kms.enable_key(&KeyIdRequest::new(&key)).expect("EnableKey");
    assert_eq!(encrypt(&kms, &key, b"x").expect("encrypt").key_version_id, *v2);
}

/// A long-lived child whose caches stay warm, driven over stdin/stdout.
struct Server {
    child: Child,
    stdin: std::process::ChildStdin,
    replies: Receiver<String>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = child_command("child_serve", "serve", dir, "")
            .stdin(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdin = child.stdin.take().expect("stdin");
        let replies = line_reader(child.stdout.take().expect("stdout"));
        Server { child, stdin, replies }
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .expect("write to the child");
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(line) => {
                    if let Some(reply) = after_marker(&line, REPLY) {
                        return reply.to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("the child did not answer `{command}`"),
                Err(RecvTimeoutError::Disconnected) => panic!("the child exited before answering `{command}`"),
            }
        }
    }

    /// `OK version …` → the version; `ERR code` → Err(code).
    fn encrypt(&mut self, key: &str) -> Result<(String, Vec<u8>), String> {
        let reply = self.ask(&format!("encrypt {key}"));
        match reply.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["OK", version, blob] => Ok(((*version).to_owned(), STANDARD.decode(blob).expect("base64"))),
            ["ERR", code] => Err((*code).to_owned()),
            _ => panic!("unexpected reply {reply:?}"),
        }
    }

    fn decrypt(&mut self, blob: &[u8]) -> Result<(String, String), String> {
        let reply = self.ask(&format!("decrypt {}", STANDARD.encode(blob)));
        match reply.split_once(' ') {
            Some(("OK", rest)) => {
                let (version, plaintext) = rest.split_once(' ').expect("version and plaintext");
                Ok((version.to_owned(), plaintext.to_owned()))
            }
            Some(("ERR", code)) => Err(code.to_owned()),
            _ => panic!("unexpected reply {reply:?}"),
        }
    }

    fn quit(mut self) {
        let _ = writeln!(self.stdin, "quit").and_then(|()| self.stdin.flush());
        let status = wait_bounded(&mut self.child, CHILD_TIMEOUT);
        assert!(status.success(), "the serving child failed: {status}");
    }
}

#[test]
fn a_warm_process_sees_the_parents_writes() {
    let dir = store_dir();
    let kms = Kms::open(dir.path()).expect("open");
    let key = create(&kms, KeySpec::Sm4, None);
    let mut server = Server::start(dir.path());

    let (v1, blob) = server.encrypt(&key).expect("the child encrypts");
    let (v, plaintext) = server.decrypt(&blob).expect("the child decrypts");
    assert_eq!((v.as_str(), plaintext.as_str()), (v1.as_str(), "from the child"));
    let mine = decrypt(&kms, &blob).expect("the parent decrypts the child's ciphertext");
    assert_eq!(mine.plaintext.expose(), b"from the child");

    kms.disable_key(&KeyIdRequest::new(&key)).expect("DisableKey");
    assert_eq!(server.encrypt(&key), Err("Rejected.Disabled".to_owned()));
    assert_eq!(server.decrypt(&blob), Err("Rejected.Disabled".to_owned()));

    kms.enable_key(&KeyIdRequest::new(&key)).expect("EnableKey");
    assert_eq!(server.encrypt(&key).expect("enabled again").0, v1);

    let v2 = kms
        .create_key_version(&KeyIdRequest::new(&key))
        .expect("CreateKeyVersion")
        .key_version
        .key_version_id;
    let (v, new_blob) = server.encrypt(&key).expect("encrypt after rotation");
    assert_eq!(v, v2, "the child must use the version the parent made primary");
    assert_eq!(server.decrypt(&blob).expect("old ciphertext").0, v1);
    assert_eq!(decrypt(&kms, &new_blob).expect("parent decrypts").key_version_id, v2);

    kms.schedule_key_deletion(&ScheduleKeyDeletionRequest {
        key_id: key.clone(),
        pending_window_in_days: Some(7),
    })
    .expect("ScheduleKeyDeletion");
    assert_eq!(server.encrypt(&key), Err("Rejected.PendingDeletion".to_owned()));
    server.quit();
}

// ------------------------------------------------------------------ 2. crash safety

/// xorshift64*: enough to vary the kill points; the seed is printed to replay a failure.
struct Rng(u64);

impl Rng {
    fn from_env_or_time() -> Rng {
        let seed = std::env::var(SEED_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                nanos ^ (u64::from(std::process::id()) << 32)
            });
        eprintln!("crash test seed: {SEED_ENV}={seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What SQLite itself says of the database file: integrity, foreign keys, journal mode.
fn check_database(dir: &Path) {
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).expect("rusqlite open");
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("integrity_check")
        .collect::<rusqlite::Result<_>>()
        .expect("integrity_check rows");
    assert_eq!(rows, ["ok"], "PRAGMA integrity_check");
    let violations: usize = conn
        .prepare("PRAGMA foreign_key_check")
        .expect("prepare")
        .query_map([], |_| Ok(()))
        .expect("foreign_key_check")
        .count();
    assert_eq!(violations, 0, "PRAGMA foreign_key_check");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
}

/// Every key of the store, by paging ListKeys.
fn all_keys(kms: &Kms) -> Vec<String> {
    let mut keys = Vec::new();
    for page in 1.. {
        let resp = kms
            .list_keys(&PageRequest {
                page_number: Some(page),
                page_size: Some(100),
            })
            .expect("ListKeys");
        let n = resp.keys.key.len();
        keys.extend(resp.keys.key.into_iter().map(|k| k.key_id));
        if n == 0 || keys.len() as u64 >= resp.total_count {
            break;
        }
    }
    keys
}

#[test]
fn a_killed_writer_loses_no_acknowledged_key() {
    const ROUNDS: usize = 5;
    let dir = store_dir();
    // The first open makes root.key and the schema; the children only ever find them.
    drop(Kms::open(dir.path()).expect("open"));
    let mut rng = Rng::from_env_or_time();
    // (round, index, key id) of every acknowledged CreateKey so far.
    let mut acked: Vec<(usize, usize, String)> = Vec::new();
    let mut summary = Vec::new();

    for round in 0..ROUNDS {
        let kill_after = 3 + rng.below(38) as usize; // 3..=40
        // Round 0 kills at once (the child is inside its next CreateKey); round 1 after a
        // pause; later rounds choose. A pause of up to 3 ms lands anywhere in a CreateKey:
        // key generation, the transaction, the WAL fsync, or the printing.
        let pause_us = match round {
            0 => 0,
            1 => 1 + rng.below(3000),
            _ if rng.below(2) == 0 => 0,
            _ => rng.below(3000),
        };
        let mut child = child_command("child_create_loop", "create_loop", dir.path(), &round.to_string())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let lines = line_reader(child.stdout.take().expect("stdout"));
        let parse = |line: &str| -> Option<(usize, String)> {
            let mut words = after_marker(line, KEY)?.split(' ');
            let index = words.next()?.parse().ok()?;
            Some((index, words.next()?.to_owned()))
        };
        let mut round_acked = 0;
        while round_acked < kill_after {
            let line = match lines.recv_timeout(CHILD_TIMEOUT) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("round {round}: no output from the child after {round_acked} keys: {e}");
                }
            };
            if let Some((index, key_id)) = parse(&line) {
                assert_eq!(index, round_acked, "the child acknowledges keys in order");
                acked.push((round, index, key_id));
                round_acked += 1;
            }
        }
        if pause_us > 0 {
            std::thread::sleep(Duration::from_micros(pause_us));
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("wait");
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}: the child must die of the SIGKILL, not exit on its own ({status})"
        );
        // Lines already in the pipe were acknowledged before the kill: they count too.
        for line in lines.iter() {
            if let Some((index, key_id)) = parse(&line) {
                assert_eq!(index, round_acked, "the child acknowledges keys in order");
                acked.push((round, index, key_id));
                round_acked += 1;
            }
        }

        check_database(dir.path());
        let kms = Kms::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: reopen after SIGKILL: {e}"));
        for (r, index, key_id) in &acked {
            let meta = kms
                .describe_key(&KeyIdRequest::new(key_id))
                .unwrap_or_else(|e| panic!("acknowledged key {key_id} (round {r}) is lost: {e}"))
                .key_metadata;
            assert_eq!(meta.key_state, Some(KeyState::Enabled), "key {key_id}");
            let alias = crash_alias(&r.to_string(), *index);
            let sealed = encrypt(&kms, &alias, key_id.as_bytes()).unwrap_or_else(|e| panic!("encrypt {alias}: {e}"));
            assert_eq!(sealed.key_id, *key_id, "{alias} names its key");
            let opened = decrypt(&kms, &sealed.ciphertext_blob.0).unwrap_or_else(|e| panic!("decrypt {key_id}: {e}"));
            assert_eq!(opened.plaintext.expose(), key_id.as_bytes());
        }
        // No half-written key: every key in the store (an unacknowledged one may have committed
        // just before the kill) has its alias and both tags, written in the same transaction.
        let keys = all_keys(&kms);
        assert!(
            keys.len() >= acked.len() && keys.len() <= acked.len() + round + 1,
            "round {round}: {} keys in the store, {} acknowledged",
            keys.len(),
            acked.len()
        );
        for key_id in &keys {
            assert_eq!(state(&kms, key_id), KeyState::Enabled, "key {key_id}");
            let tags = kms
                .list_resource_tags(&KeyIdRequest::new(key_id))
                .expect("ListResourceTags")
                .tags
                .tag;
            let [index, r] = tags.as_slice() else {
                panic!("key {key_id} has tags {tags:?}")
            };
            assert_eq!((index.tag_key.as_str(), r.tag_key.as_str()), ("index", "round"));
            let aliases = kms
                .list_aliases_by_key_id(&KeyPageRequest {
                    key_id: key_id.clone(),
                    ..Default::default()
                })
                .expect("ListAliasesByKeyId")
                .aliases
                .alias;
            let names: Vec<&str> = aliases.iter().map(|a| a.alias_name.as_str()).collect();
            let index: usize = index.tag_value.parse().expect("index tag");
            assert_eq!(names, [crash_alias(&r.tag_value, index)], "key {key_id}");
        }
        summary.push(format!(
            "round {round}: kill after {kill_after} (+{pause_us}us), {round_acked} acknowledged, {} keys stored",
            keys.len()
        ));
        drop(kms);
    }
    eprintln!("{}", summary.join("\n"));
    check_database(dir.path());
}

// ------------------------------------------------------------------ 3. no key material on disk

/// The software engine, keeping a copy of every stored form it makes (the raw key material).
#[derive(Default)]
struct RecordingEngine {
    inner: SoftwareEngine,
    made: Mutex<Vec<(KeySpec, StoredKey)>>,
}

impl RecordingEngine {
    fn made(&self) -> Vec<(KeySpec, StoredKey)> {
        self.made.lock().expect("lock").clone()
    }
}

impl Engine for RecordingEngine {
    fn name(&self) -> &'static str {
        "recording-software"
    }

    fn stored_keys_are_secret(&self) -> bool {
        self.inner.stored_keys_are_secret()
    }

    fn supports(&self, spec: KeySpec) -> bool {
        self.inner.supports(spec)
    }

    fn generate(&self, spec: KeySpec, version: VersionRef<'_>) -> Result<StoredKey, EngineError> {
        let stored = self.inner.generate(spec, version)?;
        self.made.lock().expect("lock").push((spec, stored.clone()));
        Ok(stored)
    }

    fn load(&self, spec: KeySpec, version: VersionRef<'_>, stored: &[u8]) -> Result<Arc<dyn KeyHandle>, EngineError> {
        self.inner.load(spec, version, stored)
    }

    fn destroy(&self, version: VersionRef<'_>, stored: &[u8]) -> Result<(), EngineError> {
        self.inner.destroy(version, stored)
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), EngineError> {
        self.inner.fill_random(out)
    }
}

/// Byte strings that must never be found, each with a description, indexed by their first
/// 16 bytes (every needle is at least 16 bytes long) for one pass over a file.
#[derive(Default)]
struct Needles {
    all: Vec<(String, Vec<u8>)>,
    by_prefix: HashMap<[u8; 16], Vec<usize>>,
}

impl Needles {
    fn add(&mut self, what: String, bytes: Vec<u8>) {
        let prefix: [u8; 16] = bytes
            .get(..16)
            .and_then(|p| p.try_into().ok())
            .expect("needles are at least 16 bytes");
        self.by_prefix.entry(prefix).or_default().push(self.all.len());
        self.all.push((what, bytes));
    }

    /// A secret in every form it could take on disk: its 16-byte windows (at `stride`, and the
    /// last one), each raw and in hex (lower and upper case), and the base64 (standard and URL
    /// alphabets) of the 12 bytes starting at each of the window's first three offsets, which
    /// covers base64 of any longer text holding the window whatever its alignment.
    fn add_secret(&mut self, what: &str, secret: &[u8], stride: usize) {
        assert!(
            secret.len() >= 16,
            "{what}: secrets shorter than 16 bytes are not scanned"
        );
        let last = secret.len() - 16;
        let mut starts: Vec<usize> = (0..=last).step_by(stride).collect();
        if starts.last() != Some(&last) {
            starts.push(last);
        }
        for start in starts {
            let window = &secret[start..start + 16];
            let label = format!("{what} [{start}..{}]", start + 16);
            self.add(format!("{label} raw"), window.to_vec());
            self.add(format!("{label} hex"), hex::encode(window).into_bytes());
            self.add(format!("{label} HEX"), hex::encode_upper(window).into_bytes());
            for shift in 0..3 {
                let part = &window[shift..shift + 12];
                self.add(format!("{label} base64+{shift}"), STANDARD.encode(part).into_bytes());
                self.add(format!("{label} base64url+{shift}"), URL_SAFE.encode(part).into_bytes());
            }
        }
        if secret.len() > 16 {
            self.add(format!("{what} whole raw"), secret.to_vec());
        }
    }

    /// Descriptions of the needles found in `haystack`.
    fn find_in(&self, haystack: &[u8]) -> Vec<String> {
        let mut found = Vec::new();
        for (at, window) in haystack.windows(16).enumerate() {
            let Some(candidates) = window.try_into().ok().and_then(|p: [u8; 16]| self.by_prefix.get(&p)) else {
                continue;
            };
            for &i in candidates {
                let (what, needle) = &self.all[i];
                if haystack[at..].starts_with(needle) {
                    found.push(format!("{what} at offset {at}"));
                }
            }
        }
        found
    }
}

/// Every file of the store directory except the root key, with its contents.
fn store_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ROOT_KEY_FILE {
            continue;
        }
        assert!(
            entry.file_type().expect("file type").is_file(),
            "unexpected {name} in the store"
        );
        files.push((name, std::fs::read(entry.path()).expect("read store file")));
    }
    files.sort();
    files
}

fn assert_clean(needles: &Needles, dir: &Path, when: &str) -> Vec<String> {
    let files = store_files(dir);
    assert!(files.iter().any(|(name, _)| name == DB_FILE), "{when}: no {DB_FILE}");
    for (name, bytes) in &files {
        let found = needles.find_in(bytes);
        assert!(found.is_empty(), "{when}: key material in clear in {name}: {found:#?}");
    }
    files
        .iter()
        .map(|(name, b)| format!("{name} ({} bytes)", b.len()))
        .collect()
}

#[test]
fn no_key_material_in_clear_on_disk() {
    let dir = store_dir();
    let engine = Arc::new(RecordingEngine::default());
    let clock = Arc::new(ManualClock::starting_now());
    let kms = Kms::open_with(
        dir.path(),
        KmsOptions {
            engine: engine.clone(),
            clock: clock.clone(),
            ..KmsOptions::default()
        },
    )
    .expect("open");
    let mut secrets: Vec<(String, Zeroizing<Vec<u8>>)> = Vec::new();

    // Every spec (RSA at 2048 bits only, for time), every usage of EC_SM2.
    let mut keys = Vec::new();
    for &spec in KeySpec::ALL {
        if matches!(spec, KeySpec::Rsa3072 | KeySpec::Rsa4096) {
            continue;
        }
        let usages: &[KeyUsage] = if spec == KeySpec::Rsa2048 {
            &spec.usages()[..1]
        } else {
            spec.usages()
        };
        for &usage in usages {
            keys.push((spec, usage, create(&kms, spec, Some(usage))));
        }
    }
    let auto = kms
        .create_key(&CreateKeyRequest {
            enable_automatic_rotation: Some(true),
            rotation_interval: Some("7d".into()),
            ..Default::default()
        })
        .expect("CreateKey with automatic rotation")
        .key_metadata
        .key_id;
    let doomed = create(&kms, KeySpec::Aes128, None);

    let digest = [0x5au8; 32];
    let use_key = |spec: KeySpec, usage: KeyUsage, key: &str, secrets: &mut Vec<(String, Zeroizing<Vec<u8>>)>| {
        if spec.is_symmetric() {
            let plaintext = kms
                .generate_random(&GenerateRandomRequest { length: Some(48) })
                .expect("GenerateRandom")
                .random;
            let sealed = encrypt(&kms, key, plaintext.expose()).expect("Encrypt");
            let opened = decrypt(&kms, &sealed.ciphertext_blob.0).expect("Decrypt");
            assert_eq!(opened.plaintext.expose(), plaintext.expose());
            secrets.push((format!("{spec} plaintext"), plaintext.0));
            let data_key = kms
                .generate_data_key(&GenerateDataKeyRequest {
                    key_id: key.to_owned(),
                    encryption_context: context(),
                    ..Default::default()
                })
                .expect("GenerateDataKey");
            secrets.push((format!("{spec} data key"), data_key.plaintext.0));
        } else if usage == KeyUsage::SignVerify {
            let algorithm = spec.signing_algorithms()[0];
            let signature = kms
                .asymmetric_sign(&AsymmetricSignRequest {
                    key_id: key.to_owned(),
                    algorithm: Some(algorithm),
                    digest: digest.as_slice().into(),
                    ..Default::default()
                })
                .expect("AsymmetricSign");
            let verified = kms
                .asymmetric_verify(&AsymmetricVerifyRequest {
                    key_id: key.to_owned(),
                    key_version_id: Some(signature.key_version_id),
                    algorithm: Some(algorithm),
                    digest: digest.as_slice().into(),
                    value: signature.value,
                })
                .expect("AsymmetricVerify");
            assert!(verified.value, "{spec} signature verifies");
        } else {
            let algorithm = spec.asymmetric_algorithms()[0];
            let sealed = kms
                .asymmetric_encrypt(&AsymmetricEncryptRequest {
                    key_id: key.to_owned(),
                    algorithm: Some(algorithm),
                    plaintext: b"asymmetric secret 0123456789abcdef".as_slice().into(),
                    ..Default::default()
                })
                .expect("AsymmetricEncrypt");
            let opened = kms
                .asymmetric_decrypt(&AsymmetricDecryptRequest {
                    key_id: key.to_owned(),
                    key_version_id: Some(sealed.key_version_id),
                    algorithm: Some(algorithm),
                    ciphertext_blob: sealed.ciphertext_blob,
                })
                .expect("AsymmetricDecrypt");
            assert_eq!(opened.plaintext.expose(), b"asymmetric secret 0123456789abcdef");
        }
        if !spec.is_symmetric() {
            kms.get_public_key(&GetPublicKeyRequest {
                key_id: key.to_owned(),
                key_version_id: None,
            })
            .expect("GetPublicKey");
        }
    };
    for (spec, usage, key) in &keys {
        use_key(*spec, *usage, key, &mut secrets);
        kms.create_key_version(&KeyIdRequest::new(key))
            .unwrap_or_else(|e| panic!("CreateKeyVersion {spec}: {e}"));
        use_key(*spec, *usage, key, &mut secrets);
    }
    // Automatic rotation and a purge, both applied when the clock passes their time.
    let before = encrypt(&kms, &auto, b"x").expect("encrypt").key_version_id;
    kms.schedule_key_deletion(&ScheduleKeyDeletionRequest {
        key_id: doomed.clone(),
        pending_window_in_days: Some(7),
    })
    .expect("ScheduleKeyDeletion");
    clock.advance(Duration::from_secs(8 * 86_400));
    let after = encrypt(&kms, &auto, b"x").expect("encrypt").key_version_id;
    assert_ne!(before, after, "the key rotated automatically");
    let err = kms.describe_key(&KeyIdRequest::new(&doomed)).expect_err("purged");
    assert_eq!(err.code(), "Forbidden.KeyNotFound");

    let made = engine.made();
    // Two versions of each key, two of the auto-rotated key, one of the purged key.
    assert_eq!(made.len(), 2 * keys.len() + 3, "versions made by the engine");

    let mut needles = Needles::default();
    for (i, (spec, material)) in made.iter().enumerate() {
        let stride = if matches!(spec, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096) {
            16
        } else {
            1
        };
        needles.add_secret(&format!("material #{i} ({spec})"), material, stride);
    }
    for (what, secret) in &secrets {
        needles.add_secret(what, secret, 1);
    }

    // Open (the WAL and its index hold the recent pages), then closed (checkpointed).
    let open_files = assert_clean(&needles, dir.path(), "while open");
    drop(kms);
    let closed_files = assert_clean(&needles, dir.path(), "after close");
    eprintln!(
        "scanned {} needles from {} materials; open: {open_files:?}; closed: {closed_files:?}",
        needles.all.len(),
        made.len()
    );

    // The scan can fail: plant the forms it looks for in a copy of the database.
    let db = std::fs::read(dir.path().join(DB_FILE)).expect("read db");
    assert!(needles.find_in(&db).is_empty());
    let planted = |what: &str, bytes: &[u8]| {
        let mut buf = db.clone();
        let at = buf.len() / 3 + 7; // odd offset, inside real pages
        buf.splice(at..at, bytes.iter().copied());
        assert!(
            !needles.find_in(&buf).is_empty(),
            "the scan misses {what} planted in the database"
        );
    };
    let (aes_spec, aes) = made
        .iter()
        .find(|(s, _)| *s == KeySpec::Aes256)
        .expect("an AES-256 key");
    let (_, rsa) = made.iter().find(|(s, _)| *s == KeySpec::Rsa2048).expect("an RSA key");
    let (_, ec) = made.iter().find(|(s, _)| *s == KeySpec::EcP256).expect("a P-256 key");
    planted(&format!("{aes_spec} raw"), aes);
    planted("AES-256 hex", hex::encode(aes.as_slice()).as_bytes());
    planted("AES-256 upper hex", hex::encode_upper(aes.as_slice()).as_bytes());
    planted("AES-256 base64", STANDARD.encode(aes.as_slice()).as_bytes());
    let mut shifted = vec![0xffu8];
    shifted.extend_from_slice(aes);
    planted(
        "AES-256 base64 at another alignment",
        STANDARD.encode(&shifted).as_bytes(),
    );
    planted("AES-256 middle 16 bytes", &aes[8..24]);
    planted("P-256 scalar, first half", &ec[..16]);
    planted(
        "P-256 scalar, URL-safe base64",
        URL_SAFE.encode(ec.as_slice()).as_bytes(),
    );
    planted("RSA PKCS#8 DER", rsa);
    planted("RSA PKCS#8 DER, 40 bytes from the middle", &rsa[301..341]);
    planted(
        "RSA PKCS#8 DER, hex of 48 bytes",
        hex::encode(&rsa[500..548]).as_bytes(),
    );
    let pem = STANDARD.encode(rsa.as_slice());
    planted("RSA PKCS#8 PEM body", pem.as_bytes());
    let (_, data_key) = secrets
        .iter()
        .find(|(w, _)| w.contains("data key"))
        .expect("a data key");
    planted("a data key", data_key);
}

// ------------------------------------------------------------------ 4. root key

fn open_with_root(dir: &Path, root: RootKeySource) -> Result<Kms, KmsError> {
    Kms::open_with(
        dir,
        KmsOptions {
            root,
            ..KmsOptions::default()
        },
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_wrong_root_key_is_refused() {
    let tmp = store_dir();
    let dir = tmp.path().join("store");
    let kms = Kms::open(&dir).expect("open a new store");
    let key = create(&kms, KeySpec::Aes256, None);
    let sealed = encrypt(&kms, &key, b"root key test").expect("encrypt");
    drop(kms);

    let root = dir.join(ROOT_KEY_FILE);
    assert_eq!(mode(&root), 0o600, "root.key must be private to its owner");
    assert_eq!(mode(&dir), 0o700, "the store directory must be private to its owner");
    let real = std::fs::read(&root).expect("read root.key");
    assert_eq!(real.len(), 32);

    // Another 32-byte key, and the real key with one bit flipped.
    let other = tmp.path().join("other.key");
    std::fs::write(&other, [0x42u8; 32]).expect("write other.key");
    let err = open_with_root(&dir, RootKeySource::KeyFile(Some(other))).expect_err("another root key");
    assert_eq!(err.code(), "Forbidden.InvalidRootKey");
    let mut flipped = real.clone();
    flipped[17] ^= 0x01;
    let near = tmp.path().join("near.key");
    std::fs::write(&near, &flipped).expect("write near.key");
    let err = open_with_root(&dir, RootKeySource::KeyFile(Some(near))).expect_err("a root key one bit off");
    assert_eq!(err.code(), "Forbidden.InvalidRootKey");
    let short = tmp.path().join("short.key");
    std::fs::write(&short, &real[..31]).expect("write short.key");
    let err = open_with_root(&dir, RootKeySource::KeyFile(Some(short))).expect_err("a 31-byte key file");
    assert_eq!(err.code(), "Forbidden.InvalidRootKey");
    // A key file named but absent is not made for a store that is already sealed.
    let absent = tmp.path().join("absent.key");
    let err = open_with_root(&dir, RootKeySource::KeyFile(Some(absent.clone()))).expect_err("an absent root key");
    assert_eq!(err.code(), "Forbidden.InvalidRootKey");
    assert!(!absent.exists(), "no useless root key is made for a sealed store");
    // For a new store it is made, with mode 0600, wherever it is named.
    let elsewhere = tmp.path().join("keys/elsewhere.key");
    std::fs::create_dir(tmp.path().join("keys")).expect("mkdir keys");
    let second = tmp.path().join("second");
    drop(open_with_root(&second, RootKeySource::KeyFile(Some(elsewhere.clone()))).expect("a new store"));
    assert_eq!(
        mode(&elsewhere),
        0o600,
        "a root key file made outside the store is private too"
    );
    assert!(
        !second.join(ROOT_KEY_FILE).exists(),
        "the named key file replaces root.key"
    );
    let err = open_with_root(&second, RootKeySource::KeyFile(Some(root.clone()))).expect_err("the first store's key");
    assert_eq!(err.code(), "Forbidden.InvalidRootKey");
    let err = open_with_root(&dir, RootKeySource::Passphrase(Zeroizing::new("guess".into())))
        .expect_err("a passphrase for a key-file store");
    assert_eq!(err.code(), "Forbidden.InvalidRootKey");

    // The refusals changed nothing: the real key still opens the store and its keys.
    assert_eq!(std::fs::read(&root).expect("read root.key"), real);
    let moved = tmp.path().join("moved.key");
    std::fs::copy(&root, &moved).expect("copy root.key");
    let kms = open_with_root(&dir, RootKeySource::KeyFile(Some(moved))).expect("the same key from elsewhere");
    let back = decrypt(&kms, &sealed.ciphertext_blob.0).expect("decrypt");
    assert_eq!(back.plaintext.expose(), b"root key test");
}

#[test]
fn a_wrong_passphrase_is_refused() {
    let tmp = store_dir();
    let dir = tmp.path().join("store");
    let pass = |p: &str| RootKeySource::Passphrase(Zeroizing::new(p.to_owned()));
    let kms = open_with_root(&dir, pass("correct horse battery staple")).expect("open a passphrase store");
    let key = create(&kms, KeySpec::EcP256, None);
    let signature = kms
        .asymmetric_sign(&AsymmetricSignRequest {
            key_id: key.clone(),
            algorithm: Some(SigningAlgorithm::EcdsaSha256),
            digest: [7u8; 32].as_slice().into(),
            ..Default::default()
        })
        .expect("sign");
    drop(kms);
    assert!(!dir.join(ROOT_KEY_FILE).exists(), "a passphrase store has no root.key");

    for wrong in ["correct horse battery stapl", "Correct horse battery staple", ""] {
        let err = open_with_root(&dir, pass(wrong)).expect_err("a wrong passphrase");
        assert_eq!(err.code(), "Forbidden.InvalidRootKey", "passphrase {wrong:?}");
    }
    let err = Kms::open(&dir).expect_err("a passphrase store opened with the default root.key");
    assert_eq!(err.code(), "Forbidden.InvalidRootKey");
    assert!(
        !dir.join(ROOT_KEY_FILE).exists(),
        "no root.key is minted for a passphrase store"
    );

    let kms = open_with_root(&dir, pass("correct horse battery staple")).expect("the right passphrase");
    let verified = kms
        .asymmetric_verify(&AsymmetricVerifyRequest {
            key_id: key,
            key_version_id: Some(signature.key_version_id),
            algorithm: Some(SigningAlgorithm::EcdsaSha256),
            digest: [7u8; 32].as_slice().into(),
            value: signature.value,
        })
        .expect("verify");
    assert!(verified.value);
}
