//! Interoperability with the real `openssl` binary (OpenSSL 3.0 or later): signatures made by
//! `tessera AsymmetricSign` verify with `openssl dgst`/`pkeyutl` against the PEM of
//! `tessera GetPublicKey`, and ciphertexts made by `openssl pkeyutl -encrypt` decrypt with
//! `tessera AsymmetricDecrypt`. (The private keys never leave Tessera, so the opposite
//! directions — openssl signing or decrypting — cannot be tested.)
//!
//! The tests skip with a message when `openssl` is not on PATH, except under `CI=true`, where
//! its absence is a failure (`scripts/test.sh` installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{b64, bytes, create_key, err, ok, text};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// True if `openssl` can be run; under `CI=true` its absence fails the test.
fn have_openssl() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openssl is not on PATH, and CI=true requires it (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: openssl is not on PATH; install it to run the openssl cross-checks");
    }
    found
}

/// Runs openssl with `args`, feeding `input` on stdin.
fn openssl(args: &[&str], input: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start openssl");
    {
        let mut stdin = child.stdin.take().expect("openssl stdin");
        stdin.write_all(input.unwrap_or_default()).expect("write to openssl");
    }
    child.wait_with_output().expect("wait for openssl")
}

/// Runs openssl and requires success; returns its stdout.
fn openssl_ok(args: &[&str]) -> Vec<u8> {
    let out = openssl(args, None);
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs openssl and requires failure.
fn openssl_fails(args: &[&str]) {
    let out = openssl(args, None);
    assert!(
        !out.status.success(),
        "openssl {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A working directory with the store in `store/` and scratch files beside it.
struct Work {
    dir: TempDir,
}

impl Work {
    fn new() -> Self {
        Work {
            dir: TempDir::new().expect("temp dir"),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Writes a scratch file and returns its path as a string for openssl's arguments.
    fn write(&self, name: &str, contents: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write a scratch file");
        path.to_str().expect("a UTF-8 temp path").to_owned()
    }

    /// A scratch path that openssl writes.
    fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("a UTF-8 temp path")
            .to_owned()
    }
}

/// GetPublicKey's PEM, written to `name`.
fn public_pem(work: &Work, key: &str, name: &str) -> String {
    let pem = text(&ok(&work.store(), &["GetPublicKey", "--KeyId", key]), "/PublicKey");
    work.write(name, pem.as_bytes())
}

/// AsymmetricSign of `digest` with `algorithm`; returns the signature.
fn sign(store: &Path, key: &str, algorithm: &str, digest: &[u8]) -> Vec<u8> {
    let signed = ok(
        store,
        &[
            "AsymmetricSign",
            "--KeyId",
            key,
            "--Algorithm",
            algorithm,
            "--Digest",
            &b64(digest),
        ],
    );
    bytes(&signed, "/Value")
}

/// The signature with one bit flipped in the middle.
fn tampered(signature: &[u8]) -> Vec<u8> {
    let mut bad = signature.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    bad
}

/// Signs SHA-256(message) in Tessera and checks `openssl dgst -sha256 -verify` with `sigopts`
/// accepts it over the message, and refuses a tampered signature and a different message.
fn check_sha256_signature(work: &Work, key: &str, algorithm: &str, pem: &str, sigopts: &[&str]) {
    let message = format!("a message signed with {algorithm}\n").into_bytes();
    let msg = work.write("msg.txt", &message);
    let other = work.write("other.txt", b"a different message\n");
    let signature = sign(&work.store(), key, algorithm, &Sha256::digest(&message));
    let sig = work.write("sig.bin", &signature);

    let verify = |sig: &str, msg: &str| -> Output {
        let mut args = vec!["dgst", "-sha256", "-verify", pem];
        args.extend_from_slice(sigopts);
        args.extend_from_slice(&["-signature", sig, msg]);
        openssl(&args, None)
    };

    let good = verify(&sig, &msg);
    assert!(
        good.status.success() && String::from_utf8_lossy(&good.stdout).contains("Verified OK"),
        "openssl does not verify {algorithm} ({sigopts:?}): {}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    let bad_sig = work.write("bad-sig.bin", &tampered(&signature));
    assert!(
        !verify(&bad_sig, &msg).status.success(),
        "openssl verifies a tampered {algorithm} signature"
    );
    assert!(
        !verify(&sig, &other).status.success(),
        "openssl verifies a {algorithm} signature over another message"
    );
}

/// A key of `spec` whose GetPublicKey PEM openssl reads as `expected` (a curve name, a size).
fn key_with_pem(work: &Work, spec: &str, expected: &str) -> (String, String) {
    let key = create_key(&work.store(), &["--KeySpec", spec]);
    let pem = public_pem(work, &key, "pub.pem");
    let described =
        String::from_utf8_lossy(&openssl_ok(&["pkey", "-pubin", "-in", &pem, "-noout", "-text"])).into_owned();
    assert!(described.contains(expected), "{described}");
    (key, pem)
}

#[test]
fn ecdsa_p256_signatures_verify_with_openssl() {
    if !have_openssl() {
        return;
    }
    let work = Work::new();
    let (key, pem) = key_with_pem(&work, "EC_P256", "prime256v1");
    check_sha256_signature(&work, &key, "ECDSA_SHA_256", &pem, &[]);
}

#[test]
fn ecdsa_secp256k1_signatures_verify_with_openssl() {
    if !have_openssl() {
        return;
    }
    let work = Work::new();
    let (key, pem) = key_with_pem(&work, "EC_P256K", "secp256k1");
    check_sha256_signature(&work, &key, "ECDSA_SHA_256", &pem, &[]);
}

#[test]
fn rsa_pkcs1_and_pss_signatures_verify_with_openssl() {
    if !have_openssl() {
        return;
    }
    let work = Work::new();
    let (key, pem) = key_with_pem(&work, "RSA_2048", "2048 bit");

    check_sha256_signature(&work, &key, "RSA_PKCS1_SHA_256", &pem, &[]);
    // PSS with MGF1-SHA-256 and a salt as long as the digest (32 bytes): `digest` (= -1) checks
    // exactly that length, `auto` (= -2) recovers it from the signature.
    for saltlen in ["rsa_pss_saltlen:digest", "rsa_pss_saltlen:-1", "rsa_pss_saltlen:auto"] {
        check_sha256_signature(
            &work,
            &key,
            "RSA_PSS_SHA_256",
            &pem,
            &["-sigopt", "rsa_padding_mode:pss", "-sigopt", saltlen],
        );
    }
    // A PKCS#1 v1.5 signature is no PSS signature.
    let message = b"cross-mode";
    let msg = work.write("cross.txt", message);
    let pkcs1 = work.write(
        "pkcs1.bin",
        &sign(&work.store(), &key, "RSA_PKCS1_SHA_256", &Sha256::digest(message)),
    );
    openssl_fails(&[
        "dgst",
        "-sha256",
        "-verify",
        &pem,
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:auto",
        "-signature",
        &pkcs1,
        &msg,
    ]);
}

#[test]
fn openssl_oaep_ciphertexts_decrypt_in_tessera() {
    if !have_openssl() {
        return;
    }
    let work = Work::new();
    let store = work.store();
    let key = create_key(&store, &["--KeySpec", "RSA_2048", "--KeyUsage", "ENCRYPT/DECRYPT"]);
    let pem = public_pem(&work, &key, "pub.pem");
    let plaintext = b"a 32-byte data key, give or take";
    let input = work.write("plain.bin", plaintext);

    for (algorithm, md, other) in [
        ("RSAES_OAEP_SHA_256", "sha256", "RSAES_OAEP_SHA_1"),
        ("RSAES_OAEP_SHA_1", "sha1", "RSAES_OAEP_SHA_256"),
    ] {
        let output = work.path(&format!("cipher-{md}.bin"));
        openssl_ok(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            &pem,
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &format!("rsa_oaep_md:{md}"),
            "-pkeyopt",
            &format!("rsa_mgf1_md:{md}"),
            "-in",
            &input,
            "-out",
            &output,
        ]);
        let ciphertext = std::fs::read(&output).expect("openssl's ciphertext");
        assert_eq!(ciphertext.len(), 256);
        let decrypted = ok(
            &store,
            &[
                "AsymmetricDecrypt",
                "--KeyId",
                &key,
                "--Algorithm",
                algorithm,
                "--CiphertextBlob",
                &b64(&ciphertext),
            ],
        );
        assert_eq!(bytes(&decrypted, "/Plaintext"), plaintext, "{algorithm}");
        // The other OAEP hash does not open it, and says nothing more than InvalidCiphertext.
        err(
            &store,
            &[
                "AsymmetricDecrypt",
                "--KeyId",
                &key,
                "--Algorithm",
                other,
                "--CiphertextBlob",
                &b64(&ciphertext),
            ],
            "InvalidCiphertext",
        );
        // Nor does a tampered ciphertext.
        err(
            &store,
            &[
                "AsymmetricDecrypt",
                "--KeyId",
                &key,
                "--Algorithm",
                algorithm,
                "--CiphertextBlob",
                &b64(&tampered(&ciphertext)),
            ],
            "InvalidCiphertext",
        );
    }
}

/// SM3 of `data`, computed by openssl.
fn sm3(data: &[u8]) -> Vec<u8> {
    let out = openssl(&["dgst", "-sm3", "-binary"], Some(data));
    assert!(
        out.status.success(),
        "openssl dgst -sm3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 32);
    out.stdout
}

/// True if this openssl has SM2 and SM3 (some builds leave the Chinese algorithms out).
fn have_sm2() -> bool {
    let digests = openssl(&["list", "-digest-algorithms"], None);
    let keys = openssl(&["list", "-public-key-algorithms"], None);
    let found = String::from_utf8_lossy(&digests.stdout)
        .to_ascii_uppercase()
        .contains("SM3")
        && String::from_utf8_lossy(&keys.stdout)
            .to_ascii_uppercase()
            .contains("SM2");
    if !found {
        eprintln!("SKIPPED: this openssl has no SM2/SM3");
    }
    found
}

/// The SM2 curve parameters a, b, xG, yG (GB/T 32918.5), which enter Z.
const SM2_CURVE: [&str; 4] = [
    "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC",
    "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93",
    "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7",
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0",
];

/// The default SM2 distinguishing identifier, the one Tessera signs with.
const SM2_ID: &[u8] = b"1234567812345678";

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The digest SM2DSA signs: SM3(Z ‖ M), Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA).
fn sm2_digest(public_pem: &str, message: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = public_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM base64");
    // The SubjectPublicKeyInfo ends with the uncompressed point 04 ‖ x ‖ y.
    let point = &der[der.len() - 65..];
    assert_eq!(point[0], 0x04, "an uncompressed SM2 point");
    let entl = u16::try_from(SM2_ID.len() * 8).expect("ENTL").to_be_bytes();
    let mut z_input = entl.to_vec();
    z_input.extend_from_slice(SM2_ID);
    for hex in SM2_CURVE {
        z_input.extend(unhex(hex));
    }
    z_input.extend_from_slice(&point[1..]);
    let mut e_input = sm3(&z_input);
    e_input.extend_from_slice(message);
    sm3(&e_input)
}

#[test]
fn sm2dsa_signatures_verify_with_openssl() {
    if !have_openssl() || !have_sm2() {
        return;
    }
    let work = Work::new();
    let store = work.store();
    let key = create_key(&store, &["--KeySpec", "EC_SM2"]);
    let pem_text = text(&ok(&store, &["GetPublicKey", "--KeyId", &key]), "/PublicKey");
    let pem = work.write("sm2pub.pem", pem_text.as_bytes());
    let described =
        String::from_utf8_lossy(&openssl_ok(&["pkey", "-pubin", "-in", &pem, "-noout", "-text"])).into_owned();
    assert!(described.contains("SM2"), "{described}");

    let message = b"a message signed with SM2DSA\n";
    let msg = work.write("msg.txt", message);
    let digest = sm2_digest(&pem_text, message);
    let digest_file = work.write("digest.bin", &digest);
    let signature = sign(&store, &key, "SM2DSA", &digest);
    let sig = work.write("sig.bin", &signature);
    let bad_sig = work.write("bad-sig.bin", &tampered(&signature));

    // Over the digest: pkeyutl without -rawin treats its input as the digest e.
    let over_digest = |sig: &str| {
        openssl(
            &[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                &pem,
                "-in",
                &digest_file,
                "-sigfile",
                sig,
            ],
            None,
        )
    };
    let good = over_digest(&sig);
    assert!(
        good.status.success(),
        "openssl pkeyutl does not verify SM2DSA: {}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        !over_digest(&bad_sig).status.success(),
        "a tampered SM2 signature verifies"
    );

    // Over the message: openssl computes Z ‖ M itself, given the same distinguishing identifier
    // (OpenSSL 3.0 uses no identifier unless told, so `distid` is required).
    let over_message = |sig: &str, msg: &str| {
        openssl(
            &[
                "dgst",
                "-sm3",
                "-verify",
                &pem,
                "-sigopt",
                "distid:1234567812345678",
                "-signature",
                sig,
                msg,
            ],
            None,
        )
    };
    let good = over_message(&sig, &msg);
    assert!(
        good.status.success() && String::from_utf8_lossy(&good.stdout).contains("Verified OK"),
        "openssl dgst -sm3 does not verify SM2DSA: {}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(!over_message(&bad_sig, &msg).status.success());
    let other = work.write("other.txt", b"another message\n");
    assert!(!over_message(&sig, &other).status.success());
}

#[test]
fn openssl_sm2_ciphertexts_decrypt_in_tessera() {
    if !have_openssl() || !have_sm2() {
        return;
    }
    let work = Work::new();
    let store = work.store();
    let key = create_key(&store, &["--KeySpec", "EC_SM2", "--KeyUsage", "ENCRYPT/DECRYPT"]);
    let pem = public_pem(&work, &key, "sm2pub.pem");
    let plaintext = b"an SM4 data key!";
    let input = work.write("plain.bin", plaintext);
    let output = work.path("cipher.bin");
    // OpenSSL writes the GM/T 0009 DER form: SEQUENCE { x, y, C3 (SM3 hash), C2 }.
    openssl_ok(&[
        "pkeyutl", "-encrypt", "-pubin", "-inkey", &pem, "-in", &input, "-out", &output,
    ]);
    let ciphertext = std::fs::read(&output).expect("openssl's ciphertext");
    let decrypted = ok(
        &store,
        &[
            "AsymmetricDecrypt",
            "--KeyId",
            &key,
            "--Algorithm",
            "SM2PKE",
            "--CiphertextBlob",
            &b64(&ciphertext),
        ],
    );
    assert_eq!(bytes(&decrypted, "/Plaintext"), plaintext);
    err(
        &store,
        &[
            "AsymmetricDecrypt",
            "--KeyId",
            &key,
            "--Algorithm",
            "SM2PKE",
            "--CiphertextBlob",
            &b64(&tampered(&ciphertext)),
        ],
        "InvalidCiphertext",
    );
}
