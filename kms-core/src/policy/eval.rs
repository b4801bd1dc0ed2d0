//! Evaluating policies against a request, and the decision that combines identity policies with
//! the key policy.
//!
//! Nothing here allocates: every pattern, network and date was compiled when the document was
//! parsed, and a request is a set of borrowed views.

use std::net::IpAddr;

use super::document::{PolicyDocument, Statement, StatementEffect};
use super::principal::Principal;
use crate::blob::EncryptionContext;
use crate::model::Tag;

/// The error code of a request that the policies do not allow.
pub const NO_PERMISSION_CODE: &str = "Forbidden.NoPermission";

/// What is being asked, by whom, and the facts that conditions may test.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// The RAM action, `kms:Encrypt`.
    pub action: &'a str,
    /// The full ARN of the resource, `acs:kms:{region}:{account}:key/{key-id}` (or `…:key` for
    /// ListKeys and CreateKey, `…:alias/{name}`, `…:secret/{name}`).
    pub resource: &'a str,
    /// The caller's address (`acs:SourceIp`), when known.
    pub source_ip: Option<IpAddr>,
    /// Now, in milliseconds since the epoch (`acs:CurrentTime`).
    pub now_ms: i64,
    /// Whether the request came over TLS (`acs:SecureTransport`).
    pub secure_transport: bool,
    /// The key's tags (`kms:tag/{TagKey}`); empty for resources without tags.
    pub tags: &'a [Tag],
    /// The request's encryption context (`kms:EncryptionContext/{key}`), for the operations that
    /// take one.
    pub encryption_context: Option<&'a EncryptionContext>,
}

impl<'a> Request<'a> {
    /// A request with no source address, no TLS, no tags and no encryption context; set the
    /// public fields for the rest.
    pub fn new(principal: &'a Principal, action: &'a str, resource: &'a str, now_ms: i64) -> Self {
        Request {
            principal,
            action,
            resource,
            source_ip: None,
            now_ms,
            secure_transport: false,
            tags: &[],
            encryption_context: None,
        }
    }
}

/// What one document says about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A statement allows it and none denies it.
    Allow,
    /// A statement explicitly denies it.
    Deny,
    /// No statement applies.
    NotApplicable,
}

impl Effect {
    /// The combined word of two documents: a Deny beats an Allow, which beats silence.
    fn and(self, other: Effect) -> Effect {
        match (self, other) {
            (Effect::Deny, _) | (_, Effect::Deny) => Effect::Deny,
            (Effect::Allow, _) | (_, Effect::Allow) => Effect::Allow,
            _ => Effect::NotApplicable,
        }
    }
}

/// The outcome of [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allowed,
    /// The request is refused with `Forbidden.NoPermission` ([`NO_PERMISSION_CODE`]);
    /// `explicit` when a Deny statement applied rather than no Allow.
    Denied {
        /// Whether a Deny statement applied.
        explicit: bool,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allowed
    }
}

impl PolicyDocument {
    /// What this document says about `request`: Deny if any applicable statement denies, else
    /// Allow if any allows, else NotApplicable. A statement applies when its action, resource,
    /// principal (key policies) and every condition match.
    pub fn evaluate(&self, request: &Request) -> Effect {
        let mut effect = Effect::NotApplicable;
        let mut consider = |statement: &Statement| {
            if statement.applies_beyond_action(request) {
                effect = match statement.effect {
                    StatementEffect::Deny => Effect::Deny,
                    StatementEffect::Allow => Effect::Allow,
                };
            }
            // Nothing can outvote a Deny, so the rest need not be looked at.
            effect != Effect::Deny
        };
        match &self.action_index {
            Some(index) => {
                let mut selected = index.statements_for(request.action);
                while selected != 0 {
                    let i = selected.trailing_zeros() as usize;
                    selected &= selected - 1;
                    if let Some(statement) = self.statements.get(i)
                        && !consider(statement)
                    {
                        break;
                    }
                }
            }
            None => {
                for statement in &self.statements {
                    if statement.actions.matches(request.action) && !consider(statement) {
                        break;
                    }
                }
            }
        }
        effect
    }
}

impl Statement {
    /// Whether the statement applies to `request`, its action being known to match: resource,
    /// principal (key policies) and every condition.
    fn applies_beyond_action(&self, request: &Request) -> bool {
        self.resources.matches(request.resource)
            && self.principals.as_ref().is_none_or(|principals| {
                let principal = request.principal.lowercased_arn();
                principals.iter().any(|p| p.matches_lowercased(principal))
            })
            && self.conditions.iter().all(|c| c.holds(request))
    }
}

/// Decides `request` on a resource of `resource_account`.
///
/// `identity_policies` are the RAM policies attached to the principal (and its groups) in the
/// principal's own account; `key_policy` is the key's policy, `None` for the default one, under
/// which only the resource account's root is allowed (exactly [`super::default_key_policy`]).
///
/// 1. An explicit Deny in any of them refuses the request, even for a root.
/// 2. The root of the resource account is allowed.
/// 3. A user or role of the resource account is allowed when an identity policy or the key
///    policy allows.
/// 4. A principal of another account is allowed when the key policy allows *and* its own account
///    does: an identity policy allows, or it is that account's root (which holds every permission
///    its account can give).
/// 5. Anything else is refused (implicitly).
pub fn authorize<P: std::ops::Deref<Target = PolicyDocument>>(
    request: &Request,
    resource_account: &str,
    identity_policies: &[P],
    key_policy: Option<&PolicyDocument>,
) -> Decision {
    let mut identity = Effect::NotApplicable;
    for policy in identity_policies {
        identity = identity.and(policy.evaluate(request));
        if identity == Effect::Deny {
            return Decision::Denied { explicit: true };
        }
    }
    let key = key_policy.map_or(Effect::NotApplicable, |policy| policy.evaluate(request));
    if key == Effect::Deny {
        return Decision::Denied { explicit: true };
    }
    let principal = request.principal;
    let allowed = if principal.account() == resource_account {
        principal.is_root() || identity == Effect::Allow || key == Effect::Allow
    } else {
        (principal.is_root() || identity == Effect::Allow) && key == Effect::Allow
    };
    if allowed {
        Decision::Allowed
    } else {
        Decision::Denied { explicit: false }
    }
}
