use super::*;

#[test]
fn rotation_interval_units_and_bounds() {
    assert_eq!(rotation_interval("7d").expect("7d"), 604_800);
    assert_eq!(rotation_interval("604800s").expect("s"), 604_800);
    assert_eq!(rotation_interval("168h").expect("h"), 604_800);
    assert_eq!(rotation_interval("10080m").expect("m"), 604_800);
    assert_eq!(rotation_interval("730d").expect("730d"), 730 * 86_400);
    for bad in [
        "6d",
        "731d",
        "604799s",
        "",
        "d",
        "7x",
        "-7d",
        "7.5d",
        "99999999999999999999d",
    ] {
        let e = rotation_interval(bad).expect_err(bad);
        assert_eq!(e.code(), "InvalidParameter", "{bad}");
    }
}

#[test]
fn pending_window_bounds() {
    assert!(pending_window(Some(7)).is_ok());
    assert!(pending_window(Some(30)).is_ok());
    assert_eq!(pending_window(Some(6)).expect_err("6").code(), "InvalidParameter");
    assert_eq!(pending_window(Some(31)).expect_err("31").code(), "InvalidParameter");
    assert_eq!(pending_window(None).expect_err("none").code(), "MissingParameter");
}

#[test]
fn aliases() {
    for ok in ["alias/a", "alias/my-key_1/prod", &format!("alias/{}", "x".repeat(249))] {
        assert!(alias_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "a",
        "alias/",
        "alias/with space",
        "alias/é",
        "alias/a.b",
        "alias/acs/x",
        "Alias/x",
        &format!("alias/{}", "x".repeat(250)),
    ] {
        assert_eq!(alias_name(bad).expect_err(bad).code(), "InvalidParameter", "{bad}");
    }
}

#[test]
fn tags() {
    assert!(tag(&Tag::new("Project", "Apollo")).is_ok());
    assert!(tag(&Tag::new("k", "")).is_ok());
    assert!(tag(&Tag::new("项目", "阿波罗")).is_ok());
    for t in [
        Tag::new("", "v"),
        Tag::new("x".repeat(129), "v"),
        Tag::new("k", "v".repeat(129)),
        Tag::new("aliyun-x", "v"),
        Tag::new("ACS:x", "v"),
        Tag::new("k", "acs:v"),
        Tag::new("k", "see https://x"),
        Tag::new("a<b", "v"),
    ] {
        assert_eq!(tag(&t).expect_err("bad tag").code(), "InvalidParameter", "{t:?}");
    }
    assert!(tag_count(20).is_ok());
    assert_eq!(tag_count(21).expect_err("21").code(), "Rejected.LimitExceeded");
}

#[test]
fn descriptions_and_pages() {
    assert!(description(&"é".repeat(8192)).is_ok());
    assert_eq!(
        description(&"a".repeat(8193)).expect_err("8193").code(),
        "InvalidParameter"
    );
    assert_eq!(page(None, None).expect("default"), (0, 1, 10));
    assert_eq!(page(Some(3), Some(100)).expect("p3"), (200, 3, 100));
    assert!(page(Some(0), None).is_err());
    assert!(page(None, Some(101)).is_err());
}

#[test]
fn ram_names_are_the_names_a_principal_can_carry() {
    let account = "1234567890123456";
    for good in ["alice", "ops.team-1_b", &"a".repeat(64)] {
        ram_name("user", good).expect(good);
        crate::policy::Principal::user(account, good).expect(good);
        crate::policy::Principal::role(account, good).expect(good);
    }
    for bad in ["", "alice@example.com", "a b", "a/b", "ü", &"a".repeat(65)] {
        let e = ram_name("user", bad).expect_err(bad);
        assert_eq!(e.code(), "InvalidParameter", "{bad}");
        assert!(e.to_string().contains("UserName"), "{bad}: {e}");
        assert!(
            ram_name("role", bad).expect_err(bad).to_string().contains("RoleName"),
            "{bad}"
        );
        assert!(crate::policy::Principal::user(account, bad).is_err(), "{bad}");
    }
}
