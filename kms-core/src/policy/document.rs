//! Parsing a policy document into its compiled form.

use super::action_index::ActionIndex;
use super::condition::{Condition, Operator};
use super::json::Json;
use super::wildcard::{Case, Pattern};
use crate::error::{KmsError, Result};

/// The largest policy document, in bytes of its JSON text.
pub const MAX_POLICY_BYTES: usize = 32_768;

/// The only `Version` RAM and KMS know.
const VERSION: &str = "1";

/// Which of the two kinds of policy a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// A RAM policy attached to a user or role: no `Principal`.
    Identity,
    /// A key policy: every statement names its `Principal`.
    Key,
}

impl PolicyKind {
    /// The API parameter that carries a document of this kind, for error messages.
    fn parameter(self) -> &'static str {
        match self {
            PolicyKind::Identity => "PolicyDocument",
            PolicyKind::Key => "Policy",
        }
    }
}

/// A parsed and compiled policy document, with its source text kept for GetKeyPolicy and
/// GetPolicy.
#[derive(Clone, Debug)]
pub struct PolicyDocument {
    source: Box<str>,
    kind: PolicyKind,
    pub(super) statements: Box<[Statement]>,
    /// Which statements an action selects; `None` for documents too long to index.
    pub(super) action_index: Option<ActionIndex>,
}

/// Allow or Deny, as a statement says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StatementEffect {
    Allow,
    Deny,
}

/// Either the list itself (`Action`, `Resource`) or its complement (`NotAction`, `NotResource`).
#[derive(Clone, Debug)]
pub(super) struct PatternList {
    pub(super) patterns: Box<[Pattern]>,
    pub(super) complement: bool,
}

impl PatternList {
    /// Whether the list (or its complement) takes `candidate`.
    pub(super) fn matches(&self, candidate: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(candidate)) != self.complement
    }
}

/// One compiled statement.
#[derive(Clone, Debug)]
pub(super) struct Statement {
    pub(super) effect: StatementEffect,
    pub(super) actions: PatternList,
    pub(super) resources: PatternList,
    /// Key policies only; an identity policy's statements speak for whoever holds the policy.
    pub(super) principals: Option<Box<[Pattern]>>,
    pub(super) conditions: Box<[Condition]>,
}

impl PolicyDocument {
    /// Parses a RAM identity policy (attached to a user or role); `Principal` is refused.
    pub fn parse_identity(text: &str) -> Result<PolicyDocument> {
        Self::parse(text, PolicyKind::Identity)
    }

    /// Parses a key policy; every statement must have a `Principal`.
    pub fn parse_key_policy(text: &str) -> Result<PolicyDocument> {
        Self::parse(text, PolicyKind::Key)
    }

    /// Parses a document of either kind.
    pub fn parse(text: &str, kind: PolicyKind) -> Result<PolicyDocument> {
        let parser = Parser { kind };
        if text.len() > MAX_POLICY_BYTES {
            return Err(parser.error(
                "the document",
                format!("is {} bytes; at most {MAX_POLICY_BYTES} are allowed", text.len()),
            ));
        }
        if text.trim().is_empty() {
            return Err(parser.error("the document", "is empty"));
        }
        let json = Json::parse(text).map_err(|e| parser.error("the document", format!("is not valid JSON: {e}")))?;
        let statements = parser.document(&json)?;
        Ok(PolicyDocument {
            source: text.into(),
            kind,
            action_index: ActionIndex::build(&statements),
            statements,
        })
    }

    /// The text the document was parsed from, unchanged.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Identity or key policy.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// How many statements it has.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }
}

/// The key policy a key has when none was given: the account's root may do everything. Its
/// effect is exactly that of passing `None` as the key policy to [`super::authorize`]; this text
/// is what GetKeyPolicy shows for such a key.
pub fn default_key_policy(account: &str) -> String {
    format!(
        r#"{{"Version":"1","Statement":[{{"Sid":"Enable account root permissions","Effect":"Allow","Principal":{{"RAM":["acs:ram::{account}:root"]}},"Action":["kms:*"],"Resource":["*"]}}]}}"#
    )
}

/// The elements a statement may have, for the message that refuses another.
const STATEMENT_ELEMENTS: &str = "Sid, Effect, Action, NotAction, Resource, NotResource, Principal, Condition";

struct Parser {
    kind: PolicyKind,
}

impl Parser {
    fn error(&self, place: &str, why: impl std::fmt::Display) -> KmsError {
        KmsError::invalid(self.kind.parameter(), format!("{place}: {why}"))
    }

    fn document(&self, json: &Json) -> Result<Box<[Statement]>> {
        let Json::Object(members) = json else {
            return Err(self.error("the document", format!("is {}; a policy is a JSON object", json.kind())));
        };
        let (mut version, mut statements) = (None, None);
        for (name, value) in members {
            match name.as_str() {
                "Version" => version = Some(value),
                "Statement" => statements = Some(value),
                _ => {
                    return Err(self.error(
                        name,
                        "is not an element of a policy (a policy has Version and Statement)",
                    ));
                }
            }
        }
        match version {
            None => return Err(self.error("Version", format!("is missing (it must be \"{VERSION}\")"))),
            Some(Json::String(v)) if v == VERSION => {}
            Some(Json::String(v)) => {
                return Err(self.error("Version", format!("\"{v}\" is not supported; it must be \"{VERSION}\"")));
            }
            Some(other) => {
                return Err(self.error(
                    "Version",
                    format!("is {}; it must be the string \"{VERSION}\"", other.kind()),
                ));
            }
        }
        match statements {
            None => Err(self.error("Statement", "is missing")),
            Some(Json::Array(items)) if items.is_empty() => Err(self.error("Statement", "is an empty list")),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.statement(&format!("Statement[{i}]"), item))
                .collect(),
            Some(other) => Err(self.error("Statement", format!("is {}; it must be a list", other.kind()))),
        }
    }

    fn statement(&self, place: &str, json: &Json) -> Result<Statement> {
        let Json::Object(members) = json else {
            return Err(self.error(place, format!("is {}; a statement is an object", json.kind())));
        };
        let mut effect = None;
        let mut actions: Option<PatternList> = None;
        let mut resources: Option<PatternList> = None;
        let mut principals = None;
        let mut conditions = Vec::new();
        for (name, value) in members {
            let here = format!("{place}.{name}");
            match name.as_str() {
                "Sid" => {
                    if !matches!(value, Json::String(_)) {
                        return Err(self.error(&here, format!("is {}; it must be a string", value.kind())));
                    }
                }
                "Effect" => {
                    effect = Some(match value {
                        Json::String(e) if e == "Allow" => StatementEffect::Allow,
                        Json::String(e) if e == "Deny" => StatementEffect::Deny,
                        Json::String(e) => return Err(self.error(&here, format!("\"{e}\" is neither Allow nor Deny"))),
                        other => {
                            return Err(self.error(&here, format!("is {}; it must be Allow or Deny", other.kind())));
                        }
                    });
                }
                "Action" | "NotAction" => {
                    if actions.is_some() {
                        return Err(self.error(place, "has both Action and NotAction"));
                    }
                    actions = Some(self.pattern_list(&here, value, name == "NotAction", |p, s| self.action(p, s))?);
                }
                "Resource" | "NotResource" => {
                    if resources.is_some() {
                        return Err(self.error(place, "has both Resource and NotResource"));
                    }
                    resources =
                        Some(self.pattern_list(&here, value, name == "NotResource", |p, s| self.resource(p, s))?);
                }
                "Principal" => {
                    if self.kind == PolicyKind::Identity {
                        return Err(self.error(
                            &here,
                            "is not allowed in a RAM policy; it applies to whoever it is attached to",
                        ));
                    }
                    principals = Some(self.principals(&here, value)?);
                }
                "Condition" => conditions = self.conditions(&here, value)?,
                _ => {
                    return Err(self.error(
                        &here,
                        format!("is not an element of a statement (a statement has {STATEMENT_ELEMENTS})"),
                    ));
                }
            }
        }
        let missing = |element: &str| self.error(&format!("{place}.{element}"), "is missing");
        let effect = effect.ok_or_else(|| missing("Effect"))?;
        let actions = actions.ok_or_else(|| missing("Action"))?;
        let resources = resources.ok_or_else(|| missing("Resource"))?;
        if self.kind == PolicyKind::Key && principals.is_none() {
            return Err(self.error(
                &format!("{place}.Principal"),
                "is missing; every statement of a key policy names its principals",
            ));
        }
        Ok(Statement {
            effect,
            actions,
            resources,
            principals,
            conditions: conditions.into(),
        })
    }

    /// Calls `each` with every string of a string-or-list-of-strings element and its place.
    fn each_string<'j>(
        &self,
        place: &str,
        json: &'j Json,
        mut each: impl FnMut(&str, &'j str) -> Result<()>,
    ) -> Result<()> {
        match json {
            Json::String(s) => each(place, s),
            Json::Array(items) if items.is_empty() => Err(self.error(place, "is an empty list")),
            Json::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                let here = format!("{place}[{i}]");
                match item {
                    Json::String(s) => each(&here, s),
                    other => Err(self.error(&here, format!("is {}; it must be a string", other.kind()))),
                }
            }),
            other => Err(self.error(
                place,
                format!("is {}; it must be a string or a list of strings", other.kind()),
            )),
        }
    }

    fn pattern_list(
        &self,
        place: &str,
        json: &Json,
        complement: bool,
        compile: impl Fn(&str, &str) -> Result<Pattern>,
    ) -> Result<PatternList> {
        let mut patterns = Vec::new();
        self.each_string(place, json, |here, s| {
            patterns.push(compile(here, s)?);
            Ok(())
        })?;
        Ok(PatternList {
            patterns: patterns.into(),
            complement,
        })
    }

    /// `*`, or `{service}:{name}` where the service is letters, digits and `-` and the name is
    /// letters, digits and wildcards: `kms:Encrypt`, `kms:List*`, `kms:*`, `bss:CreateInstance`.
    fn action(&self, place: &str, action: &str) -> Result<Pattern> {
        let well_formed = action == "*"
            || action.split_once(':').is_some_and(|(service, name)| {
                !service.is_empty()
                    && service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
            });
        if !well_formed {
            return Err(self.error(
                place,
                format!("\"{action}\" is not an action such as kms:Encrypt or kms:List*"),
            ));
        }
        Ok(Pattern::new(action, Case::AsciiInsensitive))
    }

    /// `*`, or an ARN `acs:{service}:{region}:{account}:{resource}` (any part may use wildcards):
    /// `acs:kms:cn-hangzhou:123:key/…`, `…:key`, `…:alias/…`, `…:secret/…`.
    fn resource(&self, place: &str, resource: &str) -> Result<Pattern> {
        let well_formed = resource == "*"
            || resource
                .strip_prefix("acs:")
                .map(|rest| rest.splitn(4, ':').collect::<Vec<_>>())
                .is_some_and(|parts| parts.len() == 4 && !parts[0].is_empty() && !parts[3].is_empty());
        if !well_formed {
            return Err(self.error(
                place,
                format!("\"{resource}\" is not a resource such as * or acs:kms:{{region}}:{{account}}:key/{{key-id}}"),
            ));
        }
        Ok(Pattern::new(resource, Case::Sensitive))
    }

    /// `{"RAM": "…" | ["…", …]}` with `*`, `acs:ram::{account}:*`, `…:root`, `…:user/{name}`,
    /// `…:role/{name}` (names may use wildcards).
    fn principals(&self, place: &str, json: &Json) -> Result<Box<[Pattern]>> {
        let Json::Object(members) = json else {
            return Err(self.error(
                place,
                format!("is {}; it must be an object such as {{\"RAM\": [...]}}", json.kind()),
            ));
        };
        let mut patterns = Vec::new();
        for (name, value) in members {
            let here = format!("{place}.{name}");
            if name != "RAM" {
                return Err(self.error(&here, "is not a principal type (the only one is RAM)"));
            }
            self.each_string(&here, value, |here, principal| {
                if !principal_pattern_well_formed(principal) {
                    return Err(self.error(
                        here,
                        format!(
                            "\"{principal}\" is not a principal such as *, acs:ram::{{account}}:*, \
                             acs:ram::{{account}}:root, :user/{{name}} or :role/{{name}}"
                        ),
                    ));
                }
                patterns.push(Pattern::new(principal, Case::AsciiInsensitive));
                Ok(())
            })?;
        }
        if patterns.is_empty() {
            return Err(self.error(place, "names no principal"));
        }
        Ok(patterns.into())
    }

    /// `{"Operator": {"key": value | [values]}}`.
    fn conditions(&self, place: &str, json: &Json) -> Result<Vec<Condition>> {
        let Json::Object(operators) = json else {
            return Err(self.error(place, format!("is {}; it must be an object", json.kind())));
        };
        let mut conditions = Vec::new();
        for (operator_name, keys) in operators {
            let here = format!("{place}.{operator_name}");
            let operator = Operator::from_name(operator_name).ok_or_else(|| {
                let known = Operator::names().collect::<Vec<_>>().join(", ");
                self.error(&here, format!("is not a condition operator (known: {known})"))
            })?;
            let Json::Object(keys) = keys else {
                return Err(self.error(&here, format!("is {}; it must be an object of keys", keys.kind())));
            };
            if keys.is_empty() {
                return Err(self.error(&here, "names no condition key"));
            }
            for (key, values) in keys {
                let here = format!("{here}.{key}");
                let values = self.condition_values(&here, values)?;
                let condition = Condition::compile(operator, key, &values).map_err(|why| self.error(&here, why))?;
                conditions.push(condition);
            }
        }
        Ok(conditions)
    }

    /// A condition's values: a string, number or boolean, or a non-empty list of them.
    fn condition_values<'j>(&self, place: &str, json: &'j Json) -> Result<Vec<&'j str>> {
        let scalar = |json: &'j Json| match json {
            Json::String(s) | Json::Number(s) => Some(s.as_str()),
            Json::Bool(true) => Some("true"),
            Json::Bool(false) => Some("false"),
            Json::Null | Json::Array(_) | Json::Object(_) => None,
        };
        match json {
            Json::Array(items) if items.is_empty() => Err(self.error(place, "is an empty list")),
            Json::Array(items) => items
                .iter()
                .map(|item| {
                    scalar(item).ok_or_else(|| {
                        self.error(
                            place,
                            format!("has {} among its values; they must be strings", item.kind()),
                        )
                    })
                })
                .collect(),
            other => scalar(other)
                .map(|s| vec![s])
                .ok_or_else(|| self.error(place, format!("is {}; it must be a string or a list", other.kind()))),
        }
    }
}

/// Whether a key-policy principal is `*` or an `acs:ram::` ARN with an account (digits or `*`)
/// and `*`, `root`, `user/…` or `role/…`, in any case, since principals match ignoring case.
fn principal_pattern_well_formed(principal: &str) -> bool {
    if principal == "*" {
        return true;
    }
    let principal = principal.to_ascii_lowercase();
    let Some((account, identity)) = principal
        .strip_prefix("acs:ram::")
        .and_then(|rest| rest.split_once(':'))
    else {
        return false;
    };
    let account_ok = account == "*" || (!account.is_empty() && account.bytes().all(|b| b.is_ascii_digit()));
    let identity_ok = matches!(identity, "*" | "root")
        || identity
            .strip_prefix("user/")
            .or_else(|| identity.strip_prefix("role/"))
            .is_some_and(|name| !name.is_empty());
    account_ok && identity_ok
}
