//! Who makes a request: an account's root, or a RAM user or role of an account, written as RAM
//! writes them: `acs:ram::{account}:root`, `acs:ram::{account}:user/{name}`,
//! `acs:ram::{account}:role/{name}`.

use std::fmt;
use std::str::FromStr;

use crate::error::{KmsError, Result};

/// Every principal ARN starts with this (RAM is global, so the region is empty).
const ARN_PREFIX: &str = "acs:ram::";
/// Longest account id we accept; Alibaba's are 16 digits.
const MAX_ACCOUNT_DIGITS: usize = 32;
/// Longest RAM user or role name.
const MAX_NAME_CHARS: usize = 64;

/// What kind of identity a principal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// The account itself (its root identity): full power over the account's own resources.
    Root,
    /// A RAM user.
    User,
    /// A RAM role (assumed through STS).
    Role,
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            PrincipalKind::Root => "root",
            PrincipalKind::User => "user",
            PrincipalKind::Role => "role",
        })
    }
}

/// A parsed principal. It keeps its ARN as written, so that key-policy principals match against
/// it without building a string per request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    arn: Box<str>,
    /// The ARN ASCII-lowercased, for matching key-policy principals (which ignore case) with
    /// plain byte comparisons.
    lowercased_arn: Box<[u8]>,
    kind: PrincipalKind,
    /// Where the account id ends in `arn` (it starts right after [`ARN_PREFIX`]).
    account_end: usize,
}

impl Principal {
    /// Parses `acs:ram::{account}:root`, `…:user/{name}` or `…:role/{name}`. The account is
    /// 1–32 digits; a name is 1–64 letters, digits, `.`, `_` or `-`.
    pub fn parse(arn: &str) -> Result<Principal> {
        let bad = |why: &str| KmsError::invalid("Principal", format!("\"{arn}\" {why}"));
        let rest = arn
            .strip_prefix(ARN_PREFIX)
            .ok_or_else(|| bad("is not a RAM principal (acs:ram::{account}:root, :user/{name} or :role/{name})"))?;
        let (account, identity) = rest
            .split_once(':')
            .ok_or_else(|| bad("has no identity after the account (root, user/{name} or role/{name})"))?;
        if account.is_empty() || account.len() > MAX_ACCOUNT_DIGITS || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("has an account id that is not 1 to 32 digits"));
        }
        let (kind, name) = match identity.split_once('/') {
            None if identity == "root" => (PrincipalKind::Root, None),
            Some(("user", name)) => (PrincipalKind::User, Some(name)),
            Some(("role", name)) => (PrincipalKind::Role, Some(name)),
            _ => return Err(bad("names no identity: expected root, user/{name} or role/{name}")),
        };
        if let Some(name) = name
            && !valid_name(name)
        {
            return Err(bad("has a name that is not 1 to 64 letters, digits, '.', '_' or '-'"));
        }
        Ok(Principal {
            arn: arn.into(),
            lowercased_arn: arn.to_ascii_lowercase().into_bytes().into(),
            kind,
            account_end: ARN_PREFIX.len() + account.len(),
        })
    }

    /// The root of `account`.
    pub fn root(account: &str) -> Result<Principal> {
        Self::parse(&format!("{ARN_PREFIX}{account}:root"))
    }

    /// The RAM user `name` of `account`.
    pub fn user(account: &str, name: &str) -> Result<Principal> {
        Self::parse(&format!("{ARN_PREFIX}{account}:user/{name}"))
    }

    /// The RAM role `name` of `account`.
    pub fn role(account: &str, name: &str) -> Result<Principal> {
        Self::parse(&format!("{ARN_PREFIX}{account}:role/{name}"))
    }

    /// The account the principal belongs to.
    pub fn account(&self) -> &str {
        &self.arn[ARN_PREFIX.len()..self.account_end]
    }

    /// Root, user or role.
    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// Whether this is an account's root.
    pub fn is_root(&self) -> bool {
        self.kind == PrincipalKind::Root
    }

    /// The user or role name; `None` for a root.
    pub fn name(&self) -> Option<&str> {
        match self.kind {
            PrincipalKind::Root => None,
            // Past the account, the ':' and "user/" or "role/" (both five bytes).
            PrincipalKind::User | PrincipalKind::Role => self.arn.get(self.account_end + 6..),
        }
    }

    /// The ARN, as parsed.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The ARN, ASCII-lowercased.
    pub(super) fn lowercased_arn(&self) -> &[u8] {
        &self.lowercased_arn
    }
}

/// A RAM user or role name: 1–64 letters, digits, `.`, `_` and `-` (also what
/// `validate::ram_name` checks, so that a name CreateUser takes is one a principal can carry).
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl FromStr for Principal {
    type Err = KmsError;

    fn from_str(arn: &str) -> Result<Principal> {
        Principal::parse(arn)
    }
}
