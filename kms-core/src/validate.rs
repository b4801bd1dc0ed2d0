//! The API's limits, each checked in one place with the error the API gives.

use crate::clock::DAY_MS;
use crate::error::{KmsError, Result};
use crate::model::Tag;

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 8192;
/// Most tags on one key.
pub const MAX_TAGS: usize = 20;
/// Longest tag key or value, in characters.
pub const MAX_TAG_CHARS: usize = 128;
/// Longest alias name, in characters, `alias/` included.
pub const MAX_ALIAS_CHARS: usize = 255;
/// Shortest and longest rotation interval, in days.
pub const ROTATION_DAYS: std::ops::RangeInclusive<i64> = 7..=730;
/// Shortest and longest pending-deletion window, in days.
pub const PENDING_WINDOW_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
/// The pending window when none is given (C_DestroyObject and friends).
pub const DEFAULT_PENDING_WINDOW_DAYS: u32 = 30;
/// The rotation interval when none is given.
pub const DEFAULT_ROTATION_INTERVAL_S: i64 = 365 * 86_400;
/// Largest Encrypt plaintext, in bytes.
pub const MAX_PLAINTEXT_BYTES: usize = 6 * 1024;
/// Range of NumberOfBytes (GenerateDataKey) and Length (GenerateRandom).
pub const RANDOM_BYTES: std::ops::RangeInclusive<u32> = 1..=1024;
/// Largest page.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Page size when none is given.
pub const DEFAULT_PAGE_SIZE: u32 = 10;

/// A description of 0–8192 characters.
pub fn description(text: &str) -> Result<()> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(KmsError::invalid(
            "Description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(())
}

/// An alias: `alias/` then 1 or more letters, digits, `_`, `-` or `/`; at most 255 characters;
/// not in the reserved `alias/acs` namespace.
pub fn alias_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(KmsError::invalid("AliasName", why.to_owned()));
    let Some(rest) = name.strip_prefix("alias/") else {
        return bad("an alias must start with alias/");
    };
    if rest.is_empty() || name.len() > MAX_ALIAS_CHARS {
        return bad("an alias is alias/ followed by 1 to 249 characters");
    }
    if !rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
    {
        return bad("an alias may contain only letters, digits, _, - and /");
    }
    if rest.starts_with("acs") {
        return bad("aliases beginning with alias/acs are reserved");
    }
    Ok(())
}

fn tag_text(name: &'static str, text: &str, min: usize) -> Result<()> {
    let n = text.chars().count();
    if n < min || n > MAX_TAG_CHARS {
        return Err(KmsError::invalid(
            name,
            format!("must be {min} to {MAX_TAG_CHARS} characters"),
        ));
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("aliyun") || lower.starts_with("acs:") {
        return Err(KmsError::invalid(name, "must not start with aliyun or acs:"));
    }
    if lower.contains("http://") || lower.contains("https://") {
        return Err(KmsError::invalid(name, "must not contain http:// or https://"));
    }
    // Letters and digits of any script, spaces, and the punctuation cloud tags allow.
    if !text.chars().all(|c| c.is_alphanumeric() || " _.:/=+-@".contains(c)) {
        return Err(KmsError::invalid(
            name,
            "may contain only letters, digits, spaces and _ . : / = + - @",
        ));
    }
    Ok(())
}

/// One tag: key of 1–128 characters, value of 0–128, neither starting with `aliyun` or `acs:`
/// nor containing `http://` or `https://`.
pub fn tag(tag: &Tag) -> Result<()> {
    tag_text("TagKey", &tag.tag_key, 1)?;
    tag_text("TagValue", &tag.tag_value, 0)
}

/// That a key would have at most 20 tags.
pub fn tag_count(count: usize) -> Result<()> {
    if count > MAX_TAGS {
        return Err(KmsError::LimitExceeded(format!(
            "a key may have at most {MAX_TAGS} tags"
        )));
    }
    Ok(())
}

/// Parses a RotationInterval (`30d`, `604800s`, `168h`, `10080m`) into seconds, 7–730 days.
pub fn rotation_interval(text: &str) -> Result<i64> {
    let bad = || {
        KmsError::invalid(
            "RotationInterval",
            format!("'{text}' is not 7 to 730 days written like 30d, 604800s, 720h or 43200m"),
        )
    };
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c),
        Some(_) => (text, 's'),
        None => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let per_unit = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    let seconds = n.checked_mul(per_unit).ok_or_else(bad)?;
    let day_s = DAY_MS / 1000;
    if seconds < ROTATION_DAYS.start() * day_s || seconds > ROTATION_DAYS.end() * day_s {
        return Err(bad());
    }
    Ok(seconds)
}

/// A PendingWindowInDays of 7–30.
pub fn pending_window(days: Option<u32>) -> Result<u32> {
    let days = days.ok_or(KmsError::MissingParameter("PendingWindowInDays"))?;
    if !PENDING_WINDOW_DAYS.contains(&days) {
        return Err(KmsError::invalid("PendingWindowInDays", "must be 7 to 30"));
    }
    Ok(days)
}

/// A page: returns (offset, page number, page size).
pub fn page(number: Option<u32>, size: Option<u32>) -> Result<(u64, u32, u32)> {
    let number = number.unwrap_or(1);
    let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
    if number == 0 {
        return Err(KmsError::invalid("PageNumber", "must be 1 or more"));
    }
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(KmsError::invalid("PageSize", format!("must be 1 to {MAX_PAGE_SIZE}")));
    }
    Ok((u64::from(number - 1) * u64::from(size), number, size))
}

/// A count of random bytes, 1–1024.
pub fn random_len(name: &'static str, n: u32) -> Result<usize> {
    if !RANDOM_BYTES.contains(&n) {
        return Err(KmsError::invalid(name, "must be 1 to 1024"));
    }
    usize::try_from(n).map_err(KmsError::internal)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;

/// A RAM policy name: 1–128 letters, digits and `-`.
pub fn policy_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(KmsError::invalid(
            "PolicyName",
            "a policy name is 1 to 128 letters, digits and -",
        ));
    }
    Ok(())
}

/// A RAM user or role name (`kind` is `user` or `role`): 1–64 letters, digits, `.`, `_` and `-`,
/// the names a principal ARN can carry.
pub fn ram_name(kind: &str, name: &str) -> Result<()> {
    let param = if kind == "role" { "RoleName" } else { "UserName" };
    if !crate::policy::valid_ram_name(name) {
        return Err(KmsError::invalid(
            param,
            "a name is 1 to 64 letters, digits, ., _ and -",
        ));
    }
    Ok(())
}
