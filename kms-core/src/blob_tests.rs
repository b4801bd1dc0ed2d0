use super::*;

#[test]
fn header_round_trips() {
    let (mut out, header_len) = begin(SymmetricAlgorithm::AesGcm, "key-1", "ver-2", &[9; 12], 3).expect("begin");
    out.extend_from_slice(b"abc");
    out.extend_from_slice(&[0xee; 16]);
    let blob = parse(&out).expect("parse");
    assert_eq!(blob.key_id, "key-1");
    assert_eq!(blob.version_id, "ver-2");
    assert_eq!(blob.iv, &[9; 12]);
    assert_eq!(blob.header.len(), header_len);
    assert_eq!(blob.ciphertext, b"abc");
    assert_eq!(blob.tag, &[0xee; 16]);
}

#[test]
fn every_truncation_and_garbage_is_an_error_not_a_panic() {
    let (mut out, _) = begin(SymmetricAlgorithm::Sm4Gcm, "k", "v", &[1; 12], 0).expect("begin");
    out.extend_from_slice(&[0; 16]);
    assert!(parse(&out).is_ok());
    for len in 0..out.len() {
        assert!(parse(&out[..len]).is_err(), "prefix of {len} bytes parsed");
    }
    // A deterministic sweep of mutated headers: must never panic.
    for i in 0..out.len() {
        for b in [0u8, 1, 2, 3, 0x7f, 0xff] {
            let mut m = out.clone();
            m[i] = b;
            let _ = parse(&m);
        }
    }
    let mut bad = out.clone();
    bad[0] = 2;
    assert!(parse(&bad).is_err());
    let mut bad = out;
    bad[1] = 9;
    assert!(parse(&bad).is_err());
}

#[test]
fn context_canonical_form_is_order_independent() {
    let mut a = EncryptionContext::new();
    a.insert("b".into(), "2".into());
    a.insert("a".into(), "1".into());
    assert_eq!(canonical_context(&a).expect("ctx"), br#"{"a":"1","b":"2"}"#);
    assert!(canonical_context(&EncryptionContext::new()).expect("ctx").is_empty());
}
