//! Who calls, whether they may, and the record of it: every operation runs as a [`Call`] of a
//! [`CallerContext`] through a [`Client`], is authorized against identity and key policies on
//! each resource it touches, and leaves an audit record however it ends.
//!
//! `Kms`'s own operation methods act as the store's account root (what the `tessera` command
//! does without `--principal`); [`Kms::as_caller`] acts as anyone else.

use std::cell::{OnceCell, RefCell};
use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;
use zeroize::Zeroizing;

use super::audit::AuditEvent;
use super::{Kms, TokenVersion};
use crate::blob::EncryptionContext;
use crate::engine::{AEAD_TAG_LEN, CipherScheme, SignScheme};
use crate::error::{KmsError, Result};
use crate::policy::{self, Decision, PolicyDocument, Principal};
use crate::store::{self, KeyRecord};

/// Who makes a call, and from where.
#[derive(Debug, Clone)]
pub struct CallerContext {
    principal: Principal,
    /// The principal's ARN, shared by every audit record of this caller.
    principal_arn: Arc<str>,
    source_ip: Option<IpAddr>,
    secure_transport: bool,
}

impl CallerContext {
    /// A caller with no known source address.
    pub fn new(principal: Principal) -> CallerContext {
        CallerContext {
            principal_arn: Arc::from(principal.to_string()),
            principal,
            source_ip: None,
            secure_transport: false,
        }
    }

    /// The caller's source address (`acs:SourceIp` in policy conditions).
    pub fn with_source_ip(mut self, ip: IpAddr) -> CallerContext {
        self.source_ip = Some(ip);
        self
    }

    /// Whether the call came over an encrypted channel (`acs:SecureTransport`).
    pub fn with_secure_transport(mut self, secure: bool) -> CallerContext {
        self.secure_transport = secure;
        self
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The source address, if known.
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }
}

/// The operations of a [`Kms`] as one caller.
#[derive(Debug, Clone, Copy)]
pub struct Client<'k> {
    pub(super) kms: &'k Kms,
    pub(super) caller: &'k CallerContext,
}

impl Kms {
    /// The operations as `caller`: each is authorized for it and audited under its name.
    pub fn as_caller<'k>(&'k self, caller: &'k CallerContext) -> Client<'k> {
        Client { kms: self, caller }
    }

    /// The operations as the store's account root (which `Kms`'s own methods use).
    pub fn as_root(&self) -> Client<'_> {
        Client {
            kms: self,
            caller: &self.root,
        }
    }

    /// The store's account root, as a caller.
    pub fn root_caller(&self) -> &CallerContext {
        &self.root
    }
}

impl Client<'_> {
    /// Runs one operation as this caller and audits how it ended.
    ///
    /// `'r` is how long what the operation notes for the record lives: a version resolved before
    /// the call lends its key's ARN and id instead of having them copied (two threads copying one
    /// shared string move one reference count between their cores).
    fn run<'r, T>(
        &'r self,
        api: &'static str,
        action: &'static str,
        op: impl FnOnce(&Call<'r>) -> Result<T>,
    ) -> Result<T> {
        let call = Call::new(self.kms, self.caller, api, action);
        let outcome = op(&call);
        self.kms.audit.record(&call.audit_view(outcome.as_ref().err()));
        outcome
    }

    /// Signs pre-hashed data with one version of a SIGN/VERIFY key (PKCS#11 C_Sign; authorized
    /// and audited as AsymmetricSign).
    pub fn sign_with(&self, version: &TokenVersion, scheme: SignScheme, data: &[u8]) -> Result<Vec<u8>> {
        self.run("AsymmetricSign", "kms:AsymmetricSign", |call| {
            self.kms.sign_with_as(call, version, scheme, data)
        })
    }

    /// Verifies a signature with one version of a SIGN/VERIFY key (as AsymmetricVerify).
    pub fn verify_with(
        &self,
        version: &TokenVersion,
        scheme: SignScheme,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool> {
        self.run("AsymmetricVerify", "kms:AsymmetricVerify", |call| {
            self.kms.verify_with_as(call, version, scheme, data, signature)
        })
    }

    /// Encrypts with the public key of one version of an asymmetric key (as AsymmetricEncrypt).
    pub fn encrypt_with(&self, version: &TokenVersion, scheme: CipherScheme, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.run("AsymmetricEncrypt", "kms:AsymmetricEncrypt", |call| {
            self.kms.encrypt_with_as(call, version, scheme, plaintext)
        })
    }

    /// Decrypts with one version of an asymmetric key (as AsymmetricDecrypt).
    pub fn decrypt_with(
        &self,
        version: &TokenVersion,
        scheme: CipherScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.run("AsymmetricDecrypt", "kms:AsymmetricDecrypt", |call| {
            self.kms.decrypt_with_as(call, version, scheme, ciphertext)
        })
    }

    /// AEAD-encrypts `buf` in place with one version of a symmetric key under the caller's IV
    /// and AAD (PKCS#11 CKM_AES_GCM; as Encrypt). Returns the tag.
    pub fn aead_seal(
        &self,
        version: &TokenVersion,
        iv: &[u8],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; AEAD_TAG_LEN]> {
        self.run("Encrypt", "kms:Encrypt", |call| {
            self.kms.aead_seal_as(call, version, iv, aad, buf)
        })
    }

    /// AEAD-decrypts `buf` in place (as Decrypt); any failure is `InvalidCiphertext`.
    pub fn aead_open(&self, version: &TokenVersion, iv: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<()> {
        self.run("Decrypt", "kms:Decrypt", |call| {
            self.kms.aead_open_as(call, version, iv, aad, buf, tag)
        })
    }
}

/// One operation in progress: its caller, its action, its time, and the resources it touched
/// (for the audit record).
pub(crate) struct Call<'a> {
    pub caller: &'a CallerContext,
    /// The API name (`Encrypt`), as audited.
    pub api: &'static str,
    /// The policy action (`kms:Encrypt`).
    pub action: &'static str,
    pub now_ms: i64,
    resources: RefCell<SmallVec<[Noted<'a>; 2]>>,
    key_id: OnceCell<Noted<'a>>,
}

/// A string a call noted for its record: its own, or lent for the call.
#[derive(Debug)]
pub(crate) enum Noted<'a> {
    Owned(Arc<str>),
    Lent(&'a Arc<str>),
}

impl Noted<'_> {
    pub fn get(&self) -> &Arc<str> {
        match self {
            Noted::Owned(s) => s,
            Noted::Lent(s) => s,
        }
    }
}

/// A finished call as the audit trail needs it, borrowed from the call.
pub(crate) struct CallRecord<'v, 'a> {
    pub time_ms: i64,
    pub principal: &'v Arc<str>,
    pub source_ip: Option<IpAddr>,
    pub action: &'static str,
    pub resources: std::cell::Ref<'v, SmallVec<[Noted<'a>; 2]>>,
    pub key_id: Option<&'v Arc<str>>,
    pub error_code: Option<&'static str>,
}

impl CallRecord<'_, '_> {
    /// The record as it is queued (shared strings counted once more each).
    pub fn to_event(&self) -> AuditEvent {
        AuditEvent {
            time_ms: self.time_ms,
            principal: Arc::clone(self.principal),
            source_ip: self.source_ip,
            action: self.action,
            resources: self.resources.iter().map(|r| Arc::clone(r.get())).collect(),
            key_id: self.key_id.cloned(),
            error_code: self.error_code,
            count: 1,
        }
    }
}

impl<'a> Call<'a> {
    pub fn new(kms: &Kms, caller: &'a CallerContext, api: &'static str, action: &'static str) -> Call<'a> {
        Call {
            caller,
            api,
            action,
            now_ms: kms.clock.now_ms(),
            resources: RefCell::new(SmallVec::new()),
            key_id: OnceCell::new(),
        }
    }

    /// Notes a resource the call touched (or tried to).
    pub fn touched(&self, resource: Arc<str>) {
        self.note_resource(Noted::Owned(resource));
    }

    /// Notes a resource whose ARN outlives the call (it is not copied).
    pub fn touched_lent(&self, resource: &'a Arc<str>) {
        self.note_resource(Noted::Lent(resource));
    }

    fn note_resource(&self, resource: Noted<'a>) {
        let mut resources = self.resources.borrow_mut();
        if !resources.iter().any(|r| r.get() == resource.get()) {
            resources.push(resource);
        }
    }

    /// Notes the key the call used (the first one wins: ReEncrypt's source).
    pub fn used_key(&self, key_id: &Arc<str>) {
        self.note_key(Noted::Owned(Arc::clone(key_id)));
    }

    /// Notes the key the call used, by an id that outlives the call.
    pub fn used_key_lent(&self, key_id: &'a Arc<str>) {
        self.note_key(Noted::Lent(key_id));
    }

    fn note_key(&self, key_id: Noted<'a>) {
        // The first one wins; a later key is not recorded.
        let _ = self.key_id.set(key_id);
    }

    /// The call's audit record, with how it ended.
    pub fn audit_view(&self, error: Option<&KmsError>) -> CallRecord<'_, 'a> {
        CallRecord {
            time_ms: self.now_ms,
            principal: &self.caller.principal_arn,
            source_ip: self.caller.source_ip,
            action: self.api,
            resources: self.resources.borrow(),
            key_id: self.key_id.get().map(Noted::get),
            error_code: error.map(KmsError::code),
        }
    }
}

/// What authorizing a key needs, cached per key until the store changes.
pub(super) struct KeyAccess {
    pub arn: Arc<str>,
    pub key_id: Arc<str>,
    pub policy: Option<Arc<PolicyDocument>>,
    pub tags: Vec<crate::model::Tag>,
}

impl Kms {
    /// The compiled policy and tags of a key, from the cache or the store.
    ///
    /// The key policy comes from `key`, which the caller may have read before the cache was last
    /// dropped; the result is cached only if `key` is still the cached record, so that an older
    /// policy is never cached as the current one (nothing else would drop it until the next
    /// metadata write: the audit writer's commits no longer do).
    pub(super) fn key_access(&self, key: &Arc<KeyRecord>) -> Result<Arc<KeyAccess>> {
        let epoch = {
            let meta = self.meta.read();
            if let Some(a) = meta.access.get(&key.key_id) {
                return Ok(Arc::clone(a));
            }
            meta.epoch
        };
        let policy = match &key.policy {
            Some(text) => Some(Arc::new(PolicyDocument::parse_key_policy(text)?)),
            None => None,
        };
        let tags = self.store.read(|c| store::tags(c, &key.key_id))?;
        let access = Arc::new(KeyAccess {
            arn: Arc::from(self.key_arn(&key.key_id)),
            key_id: Arc::from(key.key_id.as_str()),
            policy,
            tags,
        });
        let mut meta = self.meta.write();
        let current = meta.keys.get(&key.key_id).is_some_and(|k| Arc::ptr_eq(k, key));
        if meta.epoch == epoch && current {
            meta.access.insert(key.key_id.clone(), Arc::clone(&access));
        }
        Ok(access)
    }

    /// The identity policies attached to a principal, from the cache or the store.
    fn identity_policies(&self, principal: &str) -> Result<Arc<[Arc<PolicyDocument>]>> {
        let epoch = {
            let meta = self.meta.read();
            if let Some(p) = meta.identity.get(principal) {
                return Ok(Arc::clone(p));
            }
            meta.epoch
        };
        let records = self.store.read(|c| store::policies_of(c, principal))?;
        let mut compiled = Vec::with_capacity(records.len());
        for r in records {
            compiled.push(Arc::new(PolicyDocument::parse_identity(&r.document)?));
        }
        let compiled: Arc<[Arc<PolicyDocument>]> = compiled.into();
        let mut meta = self.meta.write();
        if meta.epoch == epoch {
            meta.identity.insert(principal.to_owned(), Arc::clone(&compiled));
        }
        Ok(compiled)
    }

    /// Whether `call`'s caller may do `action` on `resource` (an ARN), under the key's policy
    /// and tags when the resource is (or goes with) a key.
    pub(super) fn authorize(
        &self,
        call: &Call<'_>,
        action: &'static str,
        resource: &str,
        key: Option<&KeyAccess>,
        context: Option<&EncryptionContext>,
    ) -> Result<()> {
        let caller = call.caller;
        let key_policy = key.and_then(|k| k.policy.as_deref());
        // The common case, decided without evaluating anything: the account root, on a key
        // without a policy that could deny it.
        if key_policy.is_none() && caller.principal.is_root() && caller.principal.account() == self.account_id() {
            return Ok(());
        }
        let identity = self.identity_policies(&caller.principal_arn)?;
        let request = policy::Request {
            principal: &caller.principal,
            action,
            resource,
            source_ip: caller.source_ip,
            now_ms: call.now_ms,
            secure_transport: caller.secure_transport,
            tags: key.map_or(&[][..], |k| &k.tags[..]),
            encryption_context: context,
        };
        match policy::authorize(&request, self.account_id(), &identity, key_policy) {
            Decision::Allowed => Ok(()),
            Decision::Denied { explicit } => Err(KmsError::NoPermission {
                action,
                resource: resource.to_owned(),
                explicit,
            }),
        }
    }

    /// Authorizes `call`'s own action on a resource that is not a key (a container, an alias,
    /// a policy), noting it for the audit record.
    pub(super) fn authorize_resource(&self, call: &Call<'_>, resource: String) -> Result<()> {
        let resource: Arc<str> = Arc::from(resource);
        call.touched(Arc::clone(&resource));
        self.authorize(call, call.action, &resource, None, None)
    }

    /// Resolves what the caller named — a key id, `alias/…`, or an ARN — and authorizes
    /// `action` on the key, and on the alias too when the key was named by one.
    pub(super) fn resolve_for(&self, call: &Call<'_>, action: &'static str, key_ref: &str) -> Result<Arc<KeyRecord>> {
        self.resolve_for_in(call, action, key_ref, None)
    }

    /// As [`Kms::resolve_for`], for a call that carries an encryption context (the
    /// `kms:EncryptionContext/{key}` condition keys are its entries).
    pub(super) fn resolve_for_in(
        &self,
        call: &Call<'_>,
        action: &'static str,
        key_ref: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<Arc<KeyRecord>> {
        let key = match self.resolve(key_ref) {
            Ok(key) => key,
            Err(e) => {
                call.touched(Arc::from(key_ref.trim()));
                return Err(e);
            }
        };
        let access = self.key_access(&key)?;
        call.touched(Arc::clone(&access.arn));
        call.used_key(&access.key_id);
        if let Some(alias) = self.alias_named(key_ref) {
            let alias_arn = self.alias_arn(alias);
            call.touched(Arc::from(alias_arn.as_str()));
            self.authorize(call, action, &alias_arn, Some(&access), context)?;
        }
        self.authorize(call, action, &access.arn, Some(&access), context)?;
        Ok(key)
    }

    /// The alias name (`alias/…`) a key reference names, if it names one.
    fn alias_named<'r>(&self, key_ref: &'r str) -> Option<&'r str> {
        self.key_ref_name(key_ref)
            .ok()
            .filter(|name| name.starts_with("alias/"))
    }

    /// The ARN of one of this account's KMS resources or containers (`key`, `alias`, …).
    pub(super) fn kms_arn(&self, resource: &str) -> String {
        format!("acs:kms:{}:{}:{resource}", self.store.region(), self.account_id())
    }

    /// The ARN of one of this account's RAM policies.
    pub(super) fn ram_policy_arn(&self, name: &str) -> String {
        format!("acs:ram:*:{}:policy/{name}", self.account_id())
    }
}

/// Declares the API operations once: each becomes a method of [`Client`] (authorized for its
/// caller and audited) and of [`Kms`] (the same as the account root). The table is also what
/// [`OPERATIONS`] lists.
macro_rules! operations {
    ($( $(#[$doc:meta])* $service:literal : $api:literal => $name:ident / $imp:ident ( $req:ty ) -> $resp:ty; )+) => {
        impl Client<'_> {
            $(
                $(#[$doc])*
                pub fn $name(&self, req: &$req) -> Result<$resp> {
                    self.run($api, concat!($service, ":", $api), |call| self.kms.$imp(call, req))
                }
            )+
        }

        impl Kms {
            $(
                $(#[$doc])*
                ///
                /// As the store's account root; see [`Kms::as_caller`] for anyone else.
                pub fn $name(&self, req: &$req) -> Result<$resp> {
                    self.as_root().$name(req)
                }
            )+
        }

        /// Every operation: its API name and the policy action it needs.
        pub const OPERATIONS: &[(&str, &str)] = &[$(($api, concat!($service, ":", $api))),+];
    };
}

use crate::api::*;

operations! {
    /// CreateKey.
    "kms": "CreateKey" => create_key / create_key_as(CreateKeyRequest) -> KeyMetadataResponse;
    /// DescribeKey.
    "kms": "DescribeKey" => describe_key / describe_key_as(KeyIdRequest) -> KeyMetadataResponse;
    /// ListKeys.
    "kms": "ListKeys" => list_keys / list_keys_as(PageRequest) -> ListKeysResponse;
    /// UpdateKeyDescription.
    "kms": "UpdateKeyDescription" => update_key_description / update_key_description_as(UpdateKeyDescriptionRequest) -> Empty;
    /// EnableKey.
    "kms": "EnableKey" => enable_key / enable_key_as(KeyIdRequest) -> Empty;
    /// DisableKey.
    "kms": "DisableKey" => disable_key / disable_key_as(KeyIdRequest) -> Empty;
    /// SetDeletionProtection.
    "kms": "SetDeletionProtection" => set_deletion_protection / set_deletion_protection_as(SetDeletionProtectionRequest) -> Empty;
    /// ScheduleKeyDeletion.
    "kms": "ScheduleKeyDeletion" => schedule_key_deletion / schedule_key_deletion_as(ScheduleKeyDeletionRequest) -> Empty;
    /// CancelKeyDeletion: the key comes back Disabled (PendingImport when it has no material yet).
    "kms": "CancelKeyDeletion" => cancel_key_deletion / cancel_key_deletion_as(KeyIdRequest) -> Empty;
    /// CreateKeyVersion: a new primary version (manual rotation; the only rotation for asymmetric keys).
    "kms": "CreateKeyVersion" => create_key_version / create_key_version_as(KeyIdRequest) -> KeyVersionResponse;
    /// DescribeKeyVersion.
    "kms": "DescribeKeyVersion" => describe_key_version / describe_key_version_as(DescribeKeyVersionRequest) -> KeyVersionResponse;
    /// ListKeyVersions.
    "kms": "ListKeyVersions" => list_key_versions / list_key_versions_as(KeyPageRequest) -> ListKeyVersionsResponse;
    /// UpdateRotationPolicy.
    "kms": "UpdateRotationPolicy" => update_rotation_policy / update_rotation_policy_as(UpdateRotationPolicyRequest) -> Empty;
    /// CreateAlias.
    "kms": "CreateAlias" => create_alias / create_alias_as(AliasRequest) -> Empty;
    /// UpdateAlias: points an existing alias at another key.
    "kms": "UpdateAlias" => update_alias / update_alias_as(AliasRequest) -> Empty;
    /// DeleteAlias.
    "kms": "DeleteAlias" => delete_alias / delete_alias_as(DeleteAliasRequest) -> Empty;
    /// ListAliases.
    "kms": "ListAliases" => list_aliases / list_aliases_as(PageRequest) -> ListAliasesResponse;
    /// ListAliasesByKeyId.
    "kms": "ListAliasesByKeyId" => list_aliases_by_key_id / list_aliases_by_key_id_as(KeyPageRequest) -> ListAliasesResponse;
    /// TagResource: adds tags, replacing the value of a tag key the key already has.
    "kms": "TagResource" => tag_resource / tag_resource_as(TagResourceRequest) -> Empty;
    /// UntagResource.
    "kms": "UntagResource" => untag_resource / untag_resource_as(UntagResourceRequest) -> Empty;
    /// ListResourceTags.
    "kms": "ListResourceTags" => list_resource_tags / list_resource_tags_as(KeyIdRequest) -> ListResourceTagsResponse;
    /// Encrypt.
    "kms": "Encrypt" => encrypt / encrypt_as(EncryptRequest) -> EncryptResponse;
    /// Decrypt.
    "kms": "Decrypt" => decrypt / decrypt_as(DecryptRequest) -> DecryptResponse;
    /// ReEncrypt: decrypt under the blob's key and source context, encrypt under the
    /// destination key and context; the plaintext never leaves the service. Needs
    /// `kms:ReEncryptFrom` on the source key and `kms:ReEncryptTo` on the destination.
    "kms": "ReEncrypt" => re_encrypt / re_encrypt_as(ReEncryptRequest) -> ReEncryptResponse;
    /// GenerateDataKey: a random data key, returned in clear and encrypted under the key.
    "kms": "GenerateDataKey" => generate_data_key / generate_data_key_as(GenerateDataKeyRequest) -> GenerateDataKeyResponse;
    /// GenerateDataKeyWithoutPlaintext: as GenerateDataKey, but only the encrypted data key.
    "kms": "GenerateDataKeyWithoutPlaintext" => generate_data_key_without_plaintext / generate_data_key_without_plaintext_as(GenerateDataKeyRequest) -> EncryptResponse;
    /// AsymmetricSign: signs a digest the caller computed.
    "kms": "AsymmetricSign" => asymmetric_sign / asymmetric_sign_as(AsymmetricSignRequest) -> AsymmetricSignResponse;
    /// AsymmetricVerify.
    "kms": "AsymmetricVerify" => asymmetric_verify / asymmetric_verify_as(AsymmetricVerifyRequest) -> AsymmetricVerifyResponse;
    /// AsymmetricEncrypt.
    "kms": "AsymmetricEncrypt" => asymmetric_encrypt / asymmetric_encrypt_as(AsymmetricEncryptRequest) -> EncryptResponse;
    /// AsymmetricDecrypt.
    "kms": "AsymmetricDecrypt" => asymmetric_decrypt / asymmetric_decrypt_as(AsymmetricDecryptRequest) -> DecryptResponse;
    /// GetPublicKey: the PEM SubjectPublicKeyInfo of an asymmetric key version.
    "kms": "GetPublicKey" => get_public_key / get_public_key_as(GetPublicKeyRequest) -> GetPublicKeyResponse;
    /// GenerateRandom: 1–1024 random bytes from the engine's generator.
    "kms": "GenerateRandom" => generate_random / generate_random_as(GenerateRandomRequest) -> GenerateRandomResponse;
    /// CreateKmsInstance.
    "kms": "CreateKmsInstance" => create_kms_instance / create_kms_instance_as(CreateKmsInstanceRequest) -> KmsInstanceIdResponse;
    /// GetKmsInstance.
    "kms": "GetKmsInstance" => get_kms_instance / get_kms_instance_as(KmsInstanceIdRequest) -> GetKmsInstanceResponse;
    /// ListKmsInstances.
    "kms": "ListKmsInstances" => list_kms_instances / list_kms_instances_as(PageRequest) -> ListKmsInstancesResponse;
    /// CheckKmsInstance: connects to the instance's HSM (a software instance is always reachable).
    "kms": "CheckKmsInstance" => check_kms_instance / check_kms_instance_as(KmsInstanceIdRequest) -> CheckKmsInstanceResponse;
    /// SetKeyPolicy: replaces the key's policy (an empty one restores the default: the account
    /// root may do everything).
    "kms": "SetKeyPolicy" => set_key_policy / set_key_policy_as(SetKeyPolicyRequest) -> Empty;
    /// GetKeyPolicy: the key's policy (the default one when none was set).
    "kms": "GetKeyPolicy" => get_key_policy / get_key_policy_as(KeyIdRequest) -> GetKeyPolicyResponse;
    /// CreatePolicy: an identity policy, to attach to users and roles.
    "ram": "CreatePolicy" => create_policy / create_policy_as(CreatePolicyRequest) -> PolicyResponse;
    /// GetPolicy.
    "ram": "GetPolicy" => get_policy / get_policy_as(PolicyNameRequest) -> PolicyResponse;
    /// UpdatePolicy (RAM's CreatePolicyVersion with SetAsDefault): replaces the document.
    "ram": "UpdatePolicy" => update_policy / update_policy_as(UpdatePolicyRequest) -> PolicyResponse;
    /// DeletePolicy: only a policy attached to no one.
    "ram": "DeletePolicy" => delete_policy / delete_policy_as(PolicyNameRequest) -> Empty;
    /// ListPolicies.
    "ram": "ListPolicies" => list_policies / list_policies_as(PageRequest) -> ListPoliciesResponse;
    /// AttachPolicyToUser.
    "ram": "AttachPolicyToUser" => attach_policy_to_user / attach_policy_to_user_as(UserPolicyRequest) -> Empty;
    /// DetachPolicyFromUser.
    "ram": "DetachPolicyFromUser" => detach_policy_from_user / detach_policy_from_user_as(UserPolicyRequest) -> Empty;
    /// AttachPolicyToRole.
    "ram": "AttachPolicyToRole" => attach_policy_to_role / attach_policy_to_role_as(RolePolicyRequest) -> Empty;
    /// DetachPolicyFromRole.
    "ram": "DetachPolicyFromRole" => detach_policy_from_role / detach_policy_from_role_as(RolePolicyRequest) -> Empty;
    /// ListPoliciesForUser.
    "ram": "ListPoliciesForUser" => list_policies_for_user / list_policies_for_user_as(UserRequest) -> ListPoliciesResponse;
    /// ListPoliciesForRole.
    "ram": "ListPoliciesForRole" => list_policies_for_role / list_policies_for_role_as(RoleRequest) -> ListPoliciesResponse;
    /// LookupEvents: the audit trail, newest first, filtered by key, principal, action and time.
    "actiontrail": "LookupEvents" => lookup_events / lookup_events_as(LookupEventsRequest) -> LookupEventsResponse;
}
