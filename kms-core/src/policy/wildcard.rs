//! Patterns with `*` (any run of characters, possibly empty) and `?` (exactly one character),
//! compiled once and matched on bytes without allocating.
//!
//! Most policy patterns are a literal (`kms:Encrypt`), a literal with one trailing star
//! (`kms:List*`, `acs:kms:cn-hangzhou:123:key/*`) or a lone star, so those shapes get a direct
//! comparison; only the rest run the general matcher.

/// Whether letters compare with their case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Case {
    /// `A` ≠ `a`: resources, `StringLike` values.
    Sensitive,
    /// `A` = `a` for ASCII letters: actions and principals.
    AsciiInsensitive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `*`: everything.
    Anything,
    /// No wildcard: the text itself.
    Exact,
    /// The text followed by anything (the pattern's one star was its last character).
    Prefix,
    /// Any other use of `*` and `?`.
    General,
}

/// A compiled pattern. Two patterns are equal when they match the same texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Pattern {
    /// The literal part for `Exact` and `Prefix` (the trailing star dropped), else the pattern;
    /// ASCII-lowercased when the case is ignored, so that one side of a comparison is folded
    /// already.
    text: Box<[u8]>,
    shape: Shape,
    case: Case,
}

impl Pattern {
    /// Compiles `pattern`; every string is a valid pattern.
    pub(super) fn new(pattern: &str, case: Case) -> Pattern {
        let first_wildcard = pattern.bytes().position(|b| b == b'*' || b == b'?');
        let (shape, text) = match first_wildcard {
            None => (Shape::Exact, pattern),
            Some(0) if pattern == "*" => (Shape::Anything, pattern),
            Some(at) if at + 1 == pattern.len() && pattern.ends_with('*') => (Shape::Prefix, &pattern[..at]),
            Some(_) => (Shape::General, pattern),
        };
        let text = match case {
            Case::Sensitive => text.as_bytes().into(),
            Case::AsciiInsensitive => text.to_ascii_lowercase().into_bytes().into(),
        };
        Pattern { text, shape, case }
    }

    /// Whether `candidate` matches.
    pub(super) fn matches(&self, candidate: &str) -> bool {
        self.matches_with(candidate.as_bytes(), self.case)
    }

    /// The text a wildcard-free pattern stands for (lowercased if the case is ignored); `None`
    /// when the pattern has a wildcard.
    pub(super) fn literal(&self) -> Option<&[u8]> {
        (self.shape == Shape::Exact).then_some(&*self.text)
    }

    /// Whether `candidate`, already ASCII-lowercased by the caller, matches a case-ignoring
    /// pattern: plain byte comparisons, with no folding per byte (principals keep a lowercased
    /// copy of their ARN for this).
    pub(super) fn matches_lowercased(&self, candidate: &[u8]) -> bool {
        debug_assert_eq!(self.case, Case::AsciiInsensitive);
        self.matches_with(candidate, Case::Sensitive)
    }

    fn matches_with(&self, candidate: &[u8], case: Case) -> bool {
        let text = &*self.text;
        match self.shape {
            Shape::Anything => true,
            Shape::Exact => bytes_equal(text, candidate, case),
            Shape::Prefix => candidate.len() >= text.len() && bytes_equal(text, &candidate[..text.len()], case),
            Shape::General => glob(text, candidate, case),
        }
    }
}

fn bytes_equal(a: &[u8], b: &[u8], case: Case) -> bool {
    // ARNs and actions share long beginnings (`acs:kms:{region}:{account}:`, `kms:`) and differ
    // near their ends, so the last byte rejects most mismatches before a full comparison.
    if a.len() != b.len() || !a.last().zip(b.last()).is_none_or(|(&x, &y)| byte_equal(x, y, case)) {
        return false;
    }
    match case {
        Case::Sensitive => a == b,
        Case::AsciiInsensitive => a.eq_ignore_ascii_case(b),
    }
}

fn byte_equal(a: u8, b: u8, case: Case) -> bool {
    match case {
        Case::Sensitive => a == b,
        Case::AsciiInsensitive => a.eq_ignore_ascii_case(&b),
    }
}

/// The length in bytes of the UTF-8 character that starts with `lead`, so that `?` consumes one
/// character, not one byte, of text such as a Chinese tag value.
fn char_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// The classic linear-time glob: on a mismatch, go back to just after the last star and let
/// that star swallow one more character. Only the last star needs remembering, because a later
/// star can absorb anything an earlier one would have.
fn glob(pattern: &[u8], text: &[u8], case: Case) -> bool {
    let (mut p, mut t) = (0, 0);
    // (position in the pattern after the last star, position in the text that star reached)
    let mut last_star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                last_star = Some((p, t));
                continue;
            }
            Some(b'?') => {
                p += 1;
                t = (t + char_len(text[t])).min(text.len());
                continue;
            }
            Some(&c) if byte_equal(c, text[t], case) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match last_star {
            Some((after_star, reached)) => {
                let reached = (reached + char_len(text[reached])).min(text.len());
                last_star = Some((after_star, reached));
                p = after_star;
                t = reached;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Pattern::new(pattern, Case::Sensitive).matches(text)
    }

    #[test]
    fn shapes() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abc", "ABC"));
        assert!(m("ab*", "ab"));
        assert!(m("ab*", "abzzz"));
        assert!(!m("ab*", "a"));
        assert!(Pattern::new("KMS:list*", Case::AsciiInsensitive).matches("kms:ListKeys"));
        assert!(Pattern::new("kms:encrypt", Case::AsciiInsensitive).matches("kms:Encrypt"));
        assert!(Pattern::new("KMS:?ncrypt", Case::AsciiInsensitive).matches("kms:ENCRYPT"));
    }

    #[test]
    fn lowercased_candidates() {
        let pattern = Pattern::new("ACS:RAM::1:User/*", Case::AsciiInsensitive);
        assert!(pattern.matches_lowercased(b"acs:ram::1:user/alice"));
        assert!(!pattern.matches_lowercased(b"acs:ram::1:role/alice"));
        assert_eq!(
            Pattern::new("kms:Encrypt", Case::AsciiInsensitive).literal(),
            Some(&b"kms:encrypt"[..])
        );
        assert_eq!(Pattern::new("kms:List*", Case::AsciiInsensitive).literal(), None);
        assert_eq!(
            Pattern::new("KMS:List*", Case::AsciiInsensitive),
            Pattern::new("kms:list*", Case::AsciiInsensitive)
        );
    }

    #[test]
    fn general_globs() {
        assert!(m("a*c", "abbbc"));
        assert!(m("a*c", "ac"));
        assert!(!m("a*c", "abcd"));
        assert!(m("*c", "abc"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("a*b*c", "a_b_b_c"));
        assert!(!m("a*b*c", "a_c_b"));
        assert!(m("acs:kms:*:*:key/*", "acs:kms:cn-hangzhou:123:key/k1"));
        assert!(!m("acs:kms:*:*:key/*", "acs:kms:cn-hangzhou:123:alias/a"));
        assert!(m("**", "x"));
        assert!(m("a**", "a"));
        // `?` consumes a whole character, however many bytes it takes.
        assert!(m("项?", "项目"));
        assert!(m("?目", "项目"));
        assert!(!m("项??", "项目"));
        assert!(m("*目", "项目"));
    }
}
