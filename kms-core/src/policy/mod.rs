//! The policy language of Alibaba Cloud RAM and KMS: parsing into a compiled form, and the
//! decision that authorizes one request.
//!
//! Two kinds of document share one grammar:
//! - an *identity policy* (a RAM policy attached to a user or role) has no `Principal`;
//! - a *key policy* (attached to a key) names in every statement whom it speaks for, as
//!   `"Principal": {"RAM": ["acs:ram::{account}:user/{name}", …]}`.
//!
//! ```text
//! {"Version": "1",
//!  "Statement": [{"Effect": "Allow" | "Deny",
//!                 "Action" | "NotAction": "kms:Encrypt" | ["kms:List*", …],
//!                 "Resource" | "NotResource": "acs:kms:{region}:{account}:key/{key-id}" | […],
//!                 "Principal": {"RAM": […]},            (key policies only, and required there)
//!                 "Condition": {"{Operator}": {"{key}": "value" | ["value", …]}},
//!                 "Sid": "free text"}]}
//! ```
//!
//! Parsing is strict: an unknown or repeated element, a wrong type, a bad CIDR or date, an unknown
//! condition operator, or a document over [`MAX_POLICY_BYTES`] is an `InvalidParameter` error
//! whose message names the place, e.g. `Statement[2].Condition.IpAddress.acs:SourceIp: "10.0.0.0/33"
//! is not a CIDR` (statements are counted from 0).
//!
//! Matching rules, all decided at parse time so that evaluation allocates nothing:
//! - actions compare ASCII case-insensitively (`kms:encrypt` = `kms:Encrypt`); resources and
//!   `StringLike` values compare case-sensitively; `*` matches any run of characters (`:` and `/`
//!   included), `?` exactly one character;
//! - principals in a key policy compare ASCII case-insensitively; `"*"` is anyone and
//!   `acs:ram::{account}:*` is every identity of that account;
//! - condition key names are case-insensitive (`acs:sourceip` = `acs:SourceIp`), and so is the tag
//!   key in `kms:tag/{TagKey}` and the context key in `kms:EncryptionContext/{key}`; condition
//!   operator names are case-insensitive too;
//! - several values under one key are ORed; several keys, and several operators, are ANDed;
//! - a key the request has no value for (an unknown key, a tag the key does not carry, a missing
//!   source IP) makes a positive operator false and a negated one (`StringNotEquals`,
//!   `StringNotEqualsIgnoreCase`, `StringNotLike`, `NotIpAddress`, `DateNotEquals`) true, as AWS and
//!   RAM evaluate them. A negated operator is "none of the values matches".
//!
//! Evaluation allocates nothing and is cheap enough to run before every Encrypt: each document
//! keeps an index from actions to the statements that name them (`action_index.rs`), so a request
//! looks at only those statements; principals carry a lowercased copy of their ARN for key-policy
//! matching. Ten statements cost about 10 ns when none names the action, 30–60 ns when one
//! applies (with an IP and a tag condition), under 100 ns when all ten name it (release build;
//! `policy::tests::evaluation_cost` measures it).
//!
//! The decision ([`authorize`]) follows the KMS documents: an explicit Deny anywhere wins; an
//! account's root may do anything to its own resources; a RAM user or role of the resource's
//! account needs an Allow from one of its identity policies or from the key policy; a principal
//! of another account needs an Allow from both (its root counting as allowed on its own side).

mod action_index;
mod condition;
mod document;
mod eval;
mod json;
mod principal;
mod wildcard;

pub use condition::parse_date as parse_time;
pub use document::{MAX_POLICY_BYTES, PolicyDocument, PolicyKind, default_key_policy};
pub use eval::{Decision, Effect, NO_PERMISSION_CODE, Request, authorize};
pub(crate) use principal::valid_name as valid_ram_name;
pub use principal::{Principal, PrincipalKind};

#[cfg(test)]
mod tests;
