use super::*;

fn v() -> VersionRef<'static> {
    VersionRef {
        key_id: "k",
        version_id: "v",
    }
}

#[test]
fn symmetric_round_trip_every_spec() {
    let e = SoftwareEngine::new();
    for spec in [KeySpec::Aes128, KeySpec::Aes192, KeySpec::Aes256, KeySpec::Sm4] {
        let stored = e.generate(spec, v()).expect("generate");
        let key = e.load(spec, v(), &stored).expect("load");
        let mut buf = b"attack at dawn".to_vec();
        let tag = key.seal_in_place(&[7u8; 12], b"aad", &mut buf).expect("seal");
        assert_ne!(&buf[..], b"attack at dawn");
        key.open_in_place(&[7u8; 12], b"aad", &mut buf, &tag).expect("open");
        assert_eq!(&buf[..], b"attack at dawn");
        let mut again = buf.clone();
        let tag2 = key.seal_in_place(&[7u8; 12], b"aad", &mut again).expect("seal");
        assert!(key.open_in_place(&[7u8; 12], b"other", &mut again, &tag2).is_err());
    }
}
