//! Policies and the audit trail: SetKeyPolicy, GetKeyPolicy; RAM's CreatePolicy, GetPolicy,
//! UpdatePolicy, DeletePolicy, ListPolicies, Attach/Detach to users and roles, ListPoliciesFor*;
//! ActionTrail's LookupEvents.

use super::{Call, Kms, format_opt};
use crate::api::{
    AuditEvent, AuditEventList, CreatePolicyRequest, Empty, GetKeyPolicyResponse, KeyIdRequest, ListPoliciesResponse,
    LookupEventsRequest, LookupEventsResponse, PageRequest, Policy, PolicyList, PolicyNameRequest, PolicyResponse,
    RolePolicyRequest, RoleRequest, SetKeyPolicyRequest, UpdatePolicyRequest, UserPolicyRequest, UserRequest,
};
use crate::clock::format_time;
use crate::error::{KmsError, Result};
use crate::policy::{self, PolicyDocument};
use crate::store::{self, AuditFilter, PolicyRecord};
use crate::validate;

/// A key policy as given (CreateKey's `Policy`, SetKeyPolicy's): blank is none, anything else
/// must parse as a key policy and is kept as written.
pub(super) fn key_policy_text(given: Option<&str>) -> Result<Option<&str>> {
    match given.map(str::trim).filter(|p| !p.is_empty()) {
        Some(text) => {
            PolicyDocument::parse_key_policy(text)?;
            Ok(Some(text))
        }
        None => Ok(None),
    }
}

impl Kms {
    /// SetKeyPolicy.
    pub(super) fn set_key_policy_as(&self, call: &Call<'_>, req: &SetKeyPolicyRequest) -> Result<Empty> {
        let text = key_policy_text(Some(&req.policy))?;
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        self.write(|tx| {
            if !store::set_key_policy(tx, &key.key_id, text)? {
                return Err(KmsError::KeyNotFound(key.key_id.clone()));
            }
            Ok(())
        })?;
        Ok(Empty {})
    }

    /// GetKeyPolicy.
    pub(super) fn get_key_policy_as(&self, call: &Call<'_>, req: &KeyIdRequest) -> Result<GetKeyPolicyResponse> {
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        Ok(GetKeyPolicyResponse {
            key_id: key.key_id.clone(),
            policy: key
                .policy
                .clone()
                .unwrap_or_else(|| policy::default_key_policy(self.account_id())),
        })
    }

    fn policy_view(&self, record: &PolicyRecord, with_document: bool) -> Result<PolicyResponse> {
        let attachment_count = self.store.read(|c| store::attachment_count(c, &record.policy_name))?;
        Ok(PolicyResponse {
            policy: Policy {
                policy_name: record.policy_name.clone(),
                policy_type: "Custom".into(),
                description: record.description.clone(),
                create_date: format_time(record.created_ms),
                update_date: format_time(record.updated_ms),
                attachment_count,
            },
            policy_document: with_document.then(|| record.document.clone()),
        })
    }

    /// CreatePolicy.
    pub(super) fn create_policy_as(&self, call: &Call<'_>, req: &CreatePolicyRequest) -> Result<PolicyResponse> {
        validate::policy_name(&req.policy_name)?;
        let description = req.description.clone().unwrap_or_default();
        validate::description(&description)?;
        PolicyDocument::parse_identity(&req.policy_document)?;
        self.sync()?;
        self.authorize_resource(call, self.ram_policy_arn(&req.policy_name))?;
        let now = self.clock.now_ms();
        let record = PolicyRecord {
            policy_name: req.policy_name.clone(),
            description,
            document: req.policy_document.clone(),
            created_ms: now,
            updated_ms: now,
        };
        self.write(|tx| {
            if !store::insert_policy(tx, &record)? {
                return Err(KmsError::PolicyAlreadyExists(record.policy_name.clone()));
            }
            Ok(())
        })?;
        self.policy_view(&record, false)
    }

    fn policy_record(&self, name: &str) -> Result<PolicyRecord> {
        self.store
            .read(|c| store::get_policy(c, name))?
            .ok_or_else(|| KmsError::PolicyNotFound(name.to_owned()))
    }

    /// GetPolicy.
    pub(super) fn get_policy_as(&self, call: &Call<'_>, req: &PolicyNameRequest) -> Result<PolicyResponse> {
        self.sync()?;
        self.authorize_resource(call, self.ram_policy_arn(&req.policy_name))?;
        self.policy_view(&self.policy_record(&req.policy_name)?, true)
    }

    /// UpdatePolicy.
    pub(super) fn update_policy_as(&self, call: &Call<'_>, req: &UpdatePolicyRequest) -> Result<PolicyResponse> {
        PolicyDocument::parse_identity(&req.policy_document)?;
        self.sync()?;
        self.authorize_resource(call, self.ram_policy_arn(&req.policy_name))?;
        let now = self.clock.now_ms();
        self.write(|tx| {
            if !store::update_policy_document(tx, &req.policy_name, &req.policy_document, now)? {
                return Err(KmsError::PolicyNotFound(req.policy_name.clone()));
            }
            Ok(())
        })?;
        self.policy_view(&self.policy_record(&req.policy_name)?, false)
    }

    /// DeletePolicy.
    pub(super) fn delete_policy_as(&self, call: &Call<'_>, req: &PolicyNameRequest) -> Result<Empty> {
        self.sync()?;
        self.authorize_resource(call, self.ram_policy_arn(&req.policy_name))?;
        self.write(|tx| {
            let attached = store::attachment_count(tx, &req.policy_name)?;
            if attached > 0 {
                return Err(KmsError::PolicyInUse(attached));
            }
            if !store::delete_policy(tx, &req.policy_name)? {
                return Err(KmsError::PolicyNotFound(req.policy_name.clone()));
            }
            Ok(())
        })?;
        Ok(Empty {})
    }

    fn policy_page(
        &self,
        records: Vec<PolicyRecord>,
        total: u64,
        number: u32,
        size: u32,
    ) -> Result<ListPoliciesResponse> {
        let policy = records
            .iter()
            .map(|r| self.policy_view(r, false).map(|v| v.policy))
            .collect::<Result<Vec<_>>>()?;
        Ok(ListPoliciesResponse {
            policies: PolicyList { policy },
            total_count: total,
            page_number: number,
            page_size: size,
        })
    }

    /// ListPolicies.
    pub(super) fn list_policies_as(&self, call: &Call<'_>, req: &PageRequest) -> Result<ListPoliciesResponse> {
        self.sync()?;
        self.authorize_resource(call, self.ram_policy_arn("*"))?;
        let (offset, number, size) = validate::page(req.page_number, req.page_size)?;
        let (records, total) = self.store.read(|c| store::list_policies(c, offset, size))?;
        self.policy_page(records, total, number, size)
    }

    /// The ARN of a RAM user or role (`kind` is `user` or `role`).
    fn ram_principal(&self, account: Option<&str>, kind: &str, name: &str) -> Result<String> {
        validate::ram_name(kind, name)?;
        let account = account.filter(|a| !a.is_empty()).unwrap_or(self.account_id());
        let arn = format!("acs:ram::{account}:{kind}/{name}");
        // Parsing checks the account id's form too.
        policy::Principal::parse(&arn)?;
        Ok(arn)
    }

    fn attach(&self, call: &Call<'_>, principal: &str, policy_name: &str, policy_type: Option<&str>) -> Result<Empty> {
        if policy_type.is_some_and(|t| !t.eq_ignore_ascii_case("Custom")) {
            return Err(KmsError::invalid("PolicyType", "only Custom policies exist here"));
        }
        self.sync()?;
        self.authorize_resource(call, self.ram_policy_arn(policy_name))?;
        let now = self.clock.now_ms();
        self.write(|tx| {
            if store::get_policy(tx, policy_name)?.is_none() {
                return Err(KmsError::PolicyNotFound(policy_name.to_owned()));
            }
            // Attaching twice is not an error: the policy is attached, as asked.
            store::attach_policy(tx, principal, policy_name, now)?;
            Ok(())
        })?;
        Ok(Empty {})
    }

    fn detach(&self, call: &Call<'_>, principal: &str, policy_name: &str) -> Result<Empty> {
        self.sync()?;
        self.authorize_resource(call, self.ram_policy_arn(policy_name))?;
        self.write(|tx| {
            if !store::detach_policy(tx, principal, policy_name)? {
                return Err(KmsError::PolicyNotFound(format!(
                    "{policy_name} (attached to {principal})"
                )));
            }
            Ok(())
        })?;
        Ok(Empty {})
    }

    /// AttachPolicyToUser.
    pub(super) fn attach_policy_to_user_as(&self, call: &Call<'_>, req: &UserPolicyRequest) -> Result<Empty> {
        let user = self.ram_principal(req.account_id.as_deref(), "user", &req.user_name)?;
        self.attach(call, &user, &req.policy_name, req.policy_type.as_deref())
    }

    /// DetachPolicyFromUser.
    pub(super) fn detach_policy_from_user_as(&self, call: &Call<'_>, req: &UserPolicyRequest) -> Result<Empty> {
        let user = self.ram_principal(req.account_id.as_deref(), "user", &req.user_name)?;
        self.detach(call, &user, &req.policy_name)
    }

    /// AttachPolicyToRole.
    pub(super) fn attach_policy_to_role_as(&self, call: &Call<'_>, req: &RolePolicyRequest) -> Result<Empty> {
        let role = self.ram_principal(req.account_id.as_deref(), "role", &req.role_name)?;
        self.attach(call, &role, &req.policy_name, req.policy_type.as_deref())
    }

    /// DetachPolicyFromRole.
    pub(super) fn detach_policy_from_role_as(&self, call: &Call<'_>, req: &RolePolicyRequest) -> Result<Empty> {
        let role = self.ram_principal(req.account_id.as_deref(), "role", &req.role_name)?;
        self.detach(call, &role, &req.policy_name)
    }

    fn policies_for(&self, call: &Call<'_>, principal: &str) -> Result<ListPoliciesResponse> {
        self.sync()?;
        self.authorize_resource(call, self.ram_policy_arn("*"))?;
        let records = self.store.read(|c| store::policies_of(c, principal))?;
        let total = records.len() as u64;
        let size = u32::try_from(records.len()).unwrap_or(u32::MAX);
        self.policy_page(records, total, 1, size)
    }

    /// ListPoliciesForUser.
    pub(super) fn list_policies_for_user_as(&self, call: &Call<'_>, req: &UserRequest) -> Result<ListPoliciesResponse> {
        let user = self.ram_principal(req.account_id.as_deref(), "user", &req.user_name)?;
        self.policies_for(call, &user)
    }

    /// ListPoliciesForRole.
    pub(super) fn list_policies_for_role_as(&self, call: &Call<'_>, req: &RoleRequest) -> Result<ListPoliciesResponse> {
        let role = self.ram_principal(req.account_id.as_deref(), "role", &req.role_name)?;
        self.policies_for(call, &role)
    }

    /// LookupEvents.
    pub(super) fn lookup_events_as(&self, call: &Call<'_>, req: &LookupEventsRequest) -> Result<LookupEventsResponse> {
        let (offset, page_number, page_size) = validate::page(req.page_number, req.page_size)?;
        let time = |name: &'static str, text: &Option<String>| -> Result<Option<i64>> {
            match text.as_deref().filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) => policy::parse_time(t)
                    .map(Some)
                    .ok_or_else(|| KmsError::invalid(name, "not an ISO 8601 time like 2026-01-01T00:00:00Z")),
            }
        };
        let start_ms = time("StartTime", &req.start_time)?;
        let end_ms = time("EndTime", &req.end_time)?;
        self.sync()?;
        self.authorize_resource(call, "*".to_owned())?;
        // A key named by alias is found by its id; a purged key's events stay findable by id.
        let key_id = match req.key_id.as_deref().filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => Some(match self.resolve(k) {
                Ok(key) => key.key_id.clone(),
                Err(KmsError::KeyNotFound(_)) => k.trim().trim_start_matches("key/").to_owned(),
                Err(e) => return Err(e),
            }),
        };
        let filter = AuditFilter {
            key_id,
            principal: req.principal.clone().filter(|p| !p.is_empty()),
            action: req.action.clone().filter(|a| !a.is_empty()),
            start_ms,
            end_ms,
        };
        self.audit.flush()?;
        let (rows, total_count) = self.store.read(|c| store::query_audit(c, &filter, offset, page_size))?;
        let event = rows
            .into_iter()
            .map(|r| AuditEvent {
                event_id: r.event_id,
                event_time: format_time(r.time_ms),
                principal: r.principal,
                source_ip: r.source_ip,
                action: r.action,
                resource: r.resource,
                key_id: r.key_id,
                result: r.result,
                error_code: r.error_code,
                count: r.count,
            })
            .collect();
        Ok(LookupEventsResponse {
            events: AuditEventList { event },
            total_count,
            page_number,
            page_size,
        })
    }

    /// When a key last did cryptography: this process's own calls are counted at once, other
    /// processes' once their audit writers stored them (within about 20 ms).
    pub(super) fn last_used(&self, key_id: &str) -> Result<Option<String>> {
        let stored = self.store.read(|c| store::last_used(c, key_id))?;
        Ok(format_opt(stored.max(self.audit.last_use(key_id))))
    }
}
