//! The `Condition` element: operators, keys, and their values compiled at parse time (CIDRs to
//! masks, dates to epoch milliseconds, `*Like` values to patterns).

use std::net::IpAddr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::eval::Request;
use super::wildcard::{Case, Pattern};

/// A condition operator, as RAM names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    IpAddress,
    NotIpAddress,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
}

const OPERATORS: &[(&str, Operator)] = &[
    ("StringEquals", Operator::StringEquals),
    ("StringNotEquals", Operator::StringNotEquals),
    ("StringEqualsIgnoreCase", Operator::StringEqualsIgnoreCase),
    ("StringNotEqualsIgnoreCase", Operator::StringNotEqualsIgnoreCase),
    ("StringLike", Operator::StringLike),
    ("StringNotLike", Operator::StringNotLike),
    ("IpAddress", Operator::IpAddress),
    ("NotIpAddress", Operator::NotIpAddress),
    ("DateEquals", Operator::DateEquals),
    ("DateNotEquals", Operator::DateNotEquals),
    ("DateLessThan", Operator::DateLessThan),
    ("DateLessThanEquals", Operator::DateLessThanEquals),
    ("DateGreaterThan", Operator::DateGreaterThan),
    ("DateGreaterThanEquals", Operator::DateGreaterThanEquals),
    ("Bool", Operator::Bool),
];

impl Operator {
    /// The operator called `name`, ignoring ASCII case.
    pub(super) fn from_name(name: &str) -> Option<Operator> {
        OPERATORS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, op)| op)
    }

    /// The operators' names, for the message that rejects an unknown one.
    pub(super) fn names() -> impl Iterator<Item = &'static str> {
        OPERATORS.iter().map(|&(name, _)| name)
    }

    /// Whether the operator holds when none of its values matches (and so when the request
    /// has no value for the key at all).
    fn negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::NotIpAddress
                | Operator::DateNotEquals
        )
    }

    fn value_kind(self) -> ValueKind {
        match self {
            Operator::StringEquals
            | Operator::StringNotEquals
            | Operator::StringEqualsIgnoreCase
            | Operator::StringNotEqualsIgnoreCase
            | Operator::StringLike
            | Operator::StringNotLike => ValueKind::String,
            Operator::IpAddress | Operator::NotIpAddress => ValueKind::Ip,
            Operator::DateEquals
            | Operator::DateNotEquals
            | Operator::DateLessThan
            | Operator::DateLessThanEquals
            | Operator::DateGreaterThan
            | Operator::DateGreaterThanEquals => ValueKind::Date,
            Operator::Bool => ValueKind::Bool,
        }
    }
}

/// What a condition key's value is, so that an operator of another kind is caught at parse time
/// rather than silently never matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueKind {
    String,
    Ip,
    Date,
    Bool,
}

impl ValueKind {
    fn operators(self) -> &'static str {
        match self {
            ValueKind::String => "string operators (StringEquals, StringLike, …)",
            ValueKind::Ip => "IP operators (IpAddress, NotIpAddress)",
            ValueKind::Date => "date operators (DateLessThan, DateGreaterThan, …)",
            ValueKind::Bool => "the Bool operator",
        }
    }
}

/// A condition key, resolved once.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ConditionKey {
    /// `acs:SourceIp`: the caller's address.
    SourceIp,
    /// `acs:CurrentTime`: when the request is made.
    CurrentTime,
    /// `acs:SecureTransport`: whether the request came over TLS.
    SecureTransport,
    /// `kms:tag/{TagKey}`: the value of a tag on the key.
    Tag(Box<str>),
    /// `kms:EncryptionContext/{key}`: a value of the request's encryption context.
    EncryptionContext(Box<str>),
    /// Any other key: the request never has a value for it.
    Unknown,
}

const TAG_PREFIX: &str = "kms:tag/";
const CONTEXT_PREFIX: &str = "kms:EncryptionContext/";

impl ConditionKey {
    fn parse(name: &str) -> Result<ConditionKey, String> {
        if name.is_empty() {
            return Err("a condition key is empty".to_owned());
        }
        let key = if name.eq_ignore_ascii_case("acs:SourceIp") {
            ConditionKey::SourceIp
        } else if name.eq_ignore_ascii_case("acs:CurrentTime") {
            ConditionKey::CurrentTime
        } else if name.eq_ignore_ascii_case("acs:SecureTransport") {
            ConditionKey::SecureTransport
        } else if let Some(tag_key) = strip_prefix_ignore_case(name, TAG_PREFIX) {
            if tag_key.is_empty() {
                return Err(format!("{TAG_PREFIX} needs a tag key, as in {TAG_PREFIX}Project"));
            }
            ConditionKey::Tag(tag_key.into())
        } else if let Some(context_key) = strip_prefix_ignore_case(name, CONTEXT_PREFIX) {
            if context_key.is_empty() {
                return Err(format!(
                    "{CONTEXT_PREFIX} needs a context key, as in {CONTEXT_PREFIX}app"
                ));
            }
            ConditionKey::EncryptionContext(context_key.into())
        } else {
            ConditionKey::Unknown
        };
        Ok(key)
    }

    /// The kind of value the key has; `None` for an unknown key, which any operator may test.
    fn value_kind(&self) -> Option<ValueKind> {
        match self {
            ConditionKey::SourceIp => Some(ValueKind::Ip),
            ConditionKey::CurrentTime => Some(ValueKind::Date),
            ConditionKey::SecureTransport => Some(ValueKind::Bool),
            ConditionKey::Tag(_) | ConditionKey::EncryptionContext(_) => Some(ValueKind::String),
            ConditionKey::Unknown => None,
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| text.get(prefix.len()..))
}

/// How a date value is compared with the request's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DateOrder {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// An IPv4 or IPv6 network; a bare address is a network of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Network {
    V4 { network: u32, mask: u32 },
    V6 { network: u128, mask: u128 },
}

impl Network {
    /// Parses `a.b.c.d`, `a.b.c.d/n` (n ≤ 32), an IPv6 address or `addr/n` (n ≤ 128). Host bits
    /// under the mask are ignored, as RAM does (`10.1.2.3/8` is `10.0.0.0/8`).
    fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().ok()?;
        let max_prefix = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max_prefix,
            // Digits only: `u32::from_str` would also take "+8".
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
        };
        if prefix > max_prefix {
            return None;
        }
        Some(match address {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                Network::V4 {
                    network: u32::from(v4) & mask,
                    mask,
                }
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                Network::V6 {
                    network: u128::from(v6) & mask,
                    mask,
                }
            }
        })
    }

    fn contains(&self, address: IpAddr) -> bool {
        match (*self, address) {
            (Network::V4 { network, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == network,
            (Network::V6 { network, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == network,
            _ => false,
        }
    }
}

/// An IPv4 client seen through an IPv6 socket arrives as `::ffff:a.b.c.d`; it must still match
/// the IPv4 networks a policy names.
fn unmap(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// Parses an ISO 8601 (RFC 3339) date-time with its offset — `2019-08-12T17:00:00+08:00`,
/// `2026-01-01T00:00:00Z`, fractions of a second allowed — to milliseconds since the epoch.
pub fn parse_date(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// The test a condition applies to one value of its key (before negation).
#[derive(Clone, Debug)]
enum Test {
    Equals(Box<[Box<str>]>),
    EqualsIgnoreCase(Box<[Box<str>]>),
    Like(Box<[Pattern]>),
    InNetwork(Box<[Network]>),
    Date { order: DateOrder, values: Box<[i64]> },
    Bool { accepts_true: bool, accepts_false: bool },
}

impl Test {
    fn matches_str(&self, value: &str) -> bool {
        match self {
            Test::Equals(wanted) => wanted.iter().any(|w| **w == *value),
            Test::EqualsIgnoreCase(wanted) => wanted.iter().any(|w| equal_ignoring_case(w, value)),
            Test::Like(patterns) => patterns.iter().any(|p| p.matches(value)),
            // Keys and operators of different kinds are refused at parse time.
            Test::InNetwork(_) | Test::Date { .. } | Test::Bool { .. } => false,
        }
    }

    fn matches_ip(&self, address: IpAddr) -> bool {
        match self {
            Test::InNetwork(networks) => {
                let address = unmap(address);
                networks.iter().any(|n| n.contains(address))
            }
            _ => false,
        }
    }

    fn matches_time(&self, now_ms: i64) -> bool {
        match self {
            Test::Date { order, values } => values.iter().any(|&v| match order {
                DateOrder::Equal => now_ms == v,
                DateOrder::Less => now_ms < v,
                DateOrder::LessOrEqual => now_ms <= v,
                DateOrder::Greater => now_ms > v,
                DateOrder::GreaterOrEqual => now_ms >= v,
            }),
            _ => false,
        }
    }

    fn matches_bool(&self, value: bool) -> bool {
        match self {
            Test::Bool {
                accepts_true,
                accepts_false,
            } => {
                if value {
                    *accepts_true
                } else {
                    *accepts_false
                }
            }
            _ => false,
        }
    }
}

/// Case-insensitive equality for any script, without allocating. Texts equal up to ASCII case
/// are equal (the usual case, decided in one pass); otherwise only text with non-ASCII letters
/// can still be equal, compared character by character through Unicode lowercase.
fn equal_ignoring_case(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    !(a.is_ascii() && b.is_ascii())
        && a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
}

/// One compiled `"Operator": {"key": values}` pair.
#[derive(Clone, Debug)]
pub(super) struct Condition {
    key: ConditionKey,
    test: Test,
    negated: bool,
}

impl Condition {
    /// Compiles `operator` on the key `key_name` with its values (at least one). The error is the
    /// reason only; the caller adds the place.
    pub(super) fn compile(operator: Operator, key_name: &str, values: &[&str]) -> Result<Condition, String> {
        let key = ConditionKey::parse(key_name)?;
        let kind = operator.value_kind();
        if let Some(key_kind) = key.value_kind()
            && key_kind != kind
        {
            return Err(format!(
                "{key_name} is tested with {}, not {operator:?}",
                key_kind.operators()
            ));
        }
        let test = match operator {
            Operator::StringEquals | Operator::StringNotEquals => {
                Test::Equals(values.iter().map(|&v| Box::from(v)).collect())
            }
            Operator::StringEqualsIgnoreCase | Operator::StringNotEqualsIgnoreCase => {
                Test::EqualsIgnoreCase(values.iter().map(|&v| Box::from(v)).collect())
            }
            Operator::StringLike | Operator::StringNotLike => {
                Test::Like(values.iter().map(|v| Pattern::new(v, Case::Sensitive)).collect())
            }
            Operator::IpAddress | Operator::NotIpAddress => Test::InNetwork(
                values
                    .iter()
                    .map(|v| Network::parse(v).ok_or_else(|| format!("\"{v}\" is not a CIDR")))
                    .collect::<Result<_, _>>()?,
            ),
            Operator::DateEquals
            | Operator::DateNotEquals
            | Operator::DateLessThan
            | Operator::DateLessThanEquals
            | Operator::DateGreaterThan
            | Operator::DateGreaterThanEquals => Test::Date {
                order: match operator {
                    Operator::DateLessThan => DateOrder::Less,
                    Operator::DateLessThanEquals => DateOrder::LessOrEqual,
                    Operator::DateGreaterThan => DateOrder::Greater,
                    Operator::DateGreaterThanEquals => DateOrder::GreaterOrEqual,
                    _ => DateOrder::Equal,
                },
                values: values
                    .iter()
                    .map(|v| {
                        parse_date(v)
                            .ok_or_else(|| format!("\"{v}\" is not an ISO 8601 date-time such as 2026-01-01T00:00:00Z"))
                    })
                    .collect::<Result<_, _>>()?,
            },
            Operator::Bool => {
                let (mut accepts_true, mut accepts_false) = (false, false);
                for v in values {
                    if v.eq_ignore_ascii_case("true") {
                        accepts_true = true;
                    } else if v.eq_ignore_ascii_case("false") {
                        accepts_false = true;
                    } else {
                        return Err(format!("\"{v}\" is not true or false"));
                    }
                }
                Test::Bool {
                    accepts_true,
                    accepts_false,
                }
            }
        };
        Ok(Condition {
            key,
            test,
            negated: operator.negated(),
        })
    }

    /// Whether the condition holds for `request`.
    pub(super) fn holds(&self, request: &Request) -> bool {
        let matched: Option<bool> = match &self.key {
            ConditionKey::SourceIp => request.source_ip.map(|ip| self.test.matches_ip(ip)),
            ConditionKey::CurrentTime => Some(self.test.matches_time(request.now_ms)),
            ConditionKey::SecureTransport => Some(self.test.matches_bool(request.secure_transport)),
            ConditionKey::Tag(tag_key) => self.any_value(
                request
                    .tags
                    .iter()
                    .filter(|tag| tag.tag_key.eq_ignore_ascii_case(tag_key))
                    .map(|tag| tag.tag_value.as_str()),
            ),
            ConditionKey::EncryptionContext(context_key) => request.encryption_context.and_then(|context| {
                self.any_value(
                    context
                        .iter()
                        .filter(|(name, _)| name.eq_ignore_ascii_case(context_key))
                        .map(|(_, value)| value.as_str()),
                )
            }),
            ConditionKey::Unknown => None,
        };
        match matched {
            Some(matched) => matched != self.negated,
            // No value: nothing can equal it, so a positive test fails and a negated one holds.
            None => self.negated,
        }
    }

    /// `None` when the request has no value for the key, else whether any value matches.
    fn any_value<'v>(&self, values: impl Iterator<Item = &'v str>) -> Option<bool> {
        let mut seen = false;
        for value in values {
            if self.test.matches_str(value) {
                return Some(true);
            }
            seen = true;
        }
        seen.then_some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net = |t: &str| Network::parse(t).expect(t);
        let ip = |t: &str| t.parse::<IpAddr>().expect(t);
        assert!(net("192.168.0.0/16").contains(ip("192.168.255.1")));
        assert!(!net("192.168.0.0/16").contains(ip("192.169.0.1")));
        assert!(net("10.1.2.3/8").contains(ip("10.200.0.0")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(net("172.16.215.218").contains(ip("172.16.215.218")));
        assert!(!net("172.16.215.218").contains(ip("172.16.215.219")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::5")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(
            !net("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")),
            "unmapping is the caller's step"
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0",
            "2001:db8::/129",
            "",
            "host",
            "10.0.0.0/0008",
        ] {
            assert!(Network::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date("1970-01-01T08:00:00+08:00"), Some(0));
        assert_eq!(parse_date("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
        assert_eq!(parse_date("2026-01-01T00:00:00.250Z"), Some(1_767_225_600_250));
        assert_eq!(parse_date("2019-08-12T17:00:00+08:00"), Some(1_565_600_400_000));
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn case_folding() {
        assert!(equal_ignoring_case("Apollo", "aPOLLO"));
        assert!(equal_ignoring_case("ÄPFEL", "äpfel"));
        assert!(!equal_ignoring_case("Apollo", "Apoll"));
        assert!(equal_ignoring_case("项目", "项目"));
    }
}
