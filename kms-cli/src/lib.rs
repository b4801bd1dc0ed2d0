//! The `tessera` command, shaped like `aliyun kms`: `tessera <Action> --Param value …` prints the
//! API's JSON response; an error prints `{"HttpStatus", "Code", "Message", "RequestId"}` on
//! stderr and exits non-zero. Actions and parameters have the API's names.

pub mod demo;

use std::path::PathBuf;

use kms_core::api::*;
use kms_core::{CallerContext, Client, Kms, KmsError, KmsOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// An error as the command prints it.
#[derive(Debug)]
pub struct CliError {
    /// HTTP status of the API error.
    pub http_status: u16,
    /// The API's error code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl From<KmsError> for CliError {
    fn from(e: KmsError) -> Self {
        CliError {
            http_status: e.http_status(),
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

impl CliError {
    fn usage(message: impl Into<String>) -> Self {
        CliError {
            http_status: 400,
            code: "InvalidParameter".into(),
            message: message.into(),
        }
    }

    /// The JSON printed on stderr.
    pub fn to_json(&self, request_id: &str) -> Value {
        json!({ "HttpStatus": self.http_status, "Code": self.code, "Message": self.message, "RequestId": request_id })
    }
}

/// Parses `--Name value` and `--Name=value` pairs into a JSON object of strings.
pub fn parse_params(args: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut params = Map::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(name) = arg.strip_prefix("--") else {
            return Err(CliError::usage(format!("expected --Name value, found '{arg}'")));
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => {
                let value = args
                    .next()
                    .ok_or_else(|| CliError::usage(format!("--{name} needs a value")))?;
                (name.to_owned(), value.clone())
            }
        };
        if name.is_empty() || params.insert(name.clone(), Value::String(value)).is_some() {
            return Err(CliError::usage(format!("--{name} is empty or given twice")));
        }
    }
    Ok(params)
}

/// Turns serde's complaint about a request into the API's error.
fn request_error(e: serde_json::Error) -> CliError {
    let text = e.to_string();
    if let Some(field) = text.strip_prefix("missing field `").and_then(|t| t.split('`').next()) {
        return CliError {
            http_status: 400,
            code: "MissingParameter".into(),
            message: format!("The parameter {field} is required"),
        };
    }
    if let Some(field) = text.strip_prefix("unknown field `").and_then(|t| t.split('`').next()) {
        return CliError::usage(format!("Unknown parameter {field}"));
    }
    CliError::usage(format!("The parameter is invalid: {text}"))
}

fn call<Req: DeserializeOwned, Resp: Serialize>(
    params: Map<String, Value>,
    op: impl FnOnce(&Req) -> kms_core::Result<Resp>,
) -> Result<Value, CliError> {
    let req: Req = serde_json::from_value(Value::Object(params)).map_err(request_error)?;
    let resp = op(&req)?;
    serde_json::to_value(resp).map_err(|e| CliError::from(KmsError::Internal(format!("response: {e}"))))
}

macro_rules! actions {
    ($($name:literal => $method:ident($req:ty)),+ $(,)?) => {
        /// Every API action the command knows, by its API name.
        pub const ACTIONS: &[&str] = &[$($name),+];

        /// Runs one API action with its parameters and returns the response JSON.
        pub fn run_action(kms: &Client<'_>, action: &str, params: Map<String, Value>) -> Result<Value, CliError> {
            match action {
                $($name => call(params, |r: &$req| kms.$method(r)),)+
                _ => Err(CliError {
                    http_status: 400,
                    code: "InvalidAction.NotFound".into(),
                    message: format!("Unknown action {action}; `tessera actions` lists them"),
                }),
            }
        }
    };
}

actions! {
    "CreateKey" => create_key(CreateKeyRequest),
    "DescribeKey" => describe_key(KeyIdRequest),
    "ListKeys" => list_keys(PageRequest),
    "UpdateKeyDescription" => update_key_description(UpdateKeyDescriptionRequest),
    "EnableKey" => enable_key(KeyIdRequest),
    "DisableKey" => disable_key(KeyIdRequest),
    "SetDeletionProtection" => set_deletion_protection(SetDeletionProtectionRequest),
    "ScheduleKeyDeletion" => schedule_key_deletion(ScheduleKeyDeletionRequest),
    "CancelKeyDeletion" => cancel_key_deletion(KeyIdRequest),
    "CreateKeyVersion" => create_key_version(KeyIdRequest),
    "DescribeKeyVersion" => describe_key_version(DescribeKeyVersionRequest),
    "ListKeyVersions" => list_key_versions(KeyPageRequest),
    "UpdateRotationPolicy" => update_rotation_policy(UpdateRotationPolicyRequest),
    "CreateAlias" => create_alias(AliasRequest),
    "UpdateAlias" => update_alias(AliasRequest),
    "DeleteAlias" => delete_alias(DeleteAliasRequest),
    "ListAliases" => list_aliases(PageRequest),
    "ListAliasesByKeyId" => list_aliases_by_key_id(KeyPageRequest),
    "TagResource" => tag_resource(TagResourceRequest),
    "UntagResource" => untag_resource(UntagResourceRequest),
    "ListResourceTags" => list_resource_tags(KeyIdRequest),
    "Encrypt" => encrypt(EncryptRequest),
    "Decrypt" => decrypt(DecryptRequest),
    "ReEncrypt" => re_encrypt(ReEncryptRequest),
    "GenerateDataKey" => generate_data_key(GenerateDataKeyRequest),
    "GenerateDataKeyWithoutPlaintext" => generate_data_key_without_plaintext(GenerateDataKeyRequest),
    "AsymmetricSign" => asymmetric_sign(AsymmetricSignRequest),
    "AsymmetricVerify" => asymmetric_verify(AsymmetricVerifyRequest),
    "AsymmetricEncrypt" => asymmetric_encrypt(AsymmetricEncryptRequest),
    "AsymmetricDecrypt" => asymmetric_decrypt(AsymmetricDecryptRequest),
    "GetPublicKey" => get_public_key(GetPublicKeyRequest),
    "GenerateRandom" => generate_random(GenerateRandomRequest),
    "CreateKmsInstance" => create_kms_instance(CreateKmsInstanceRequest),
    "GetKmsInstance" => get_kms_instance(KmsInstanceIdRequest),
    "ListKmsInstances" => list_kms_instances(PageRequest),
    "CheckKmsInstance" => check_kms_instance(KmsInstanceIdRequest),
    "SetKeyPolicy" => set_key_policy(SetKeyPolicyRequest),
    "GetKeyPolicy" => get_key_policy(KeyIdRequest),
    "CreatePolicy" => create_policy(CreatePolicyRequest),
    "GetPolicy" => get_policy(PolicyNameRequest),
    "UpdatePolicy" => update_policy(UpdatePolicyRequest),
    "DeletePolicy" => delete_policy(PolicyNameRequest),
    "ListPolicies" => list_policies(PageRequest),
    "AttachPolicyToUser" => attach_policy_to_user(UserPolicyRequest),
    "DetachPolicyFromUser" => detach_policy_from_user(UserPolicyRequest),
    "AttachPolicyToRole" => attach_policy_to_role(RolePolicyRequest),
    "DetachPolicyFromRole" => detach_policy_from_role(RolePolicyRequest),
    "ListPoliciesForUser" => list_policies_for_user(UserRequest),
    "ListPoliciesForRole" => list_policies_for_role(RoleRequest),
    "LookupEvents" => lookup_events(LookupEventsRequest),
}

/// The caller `--principal` and `--source-ip` name; the store's account root when neither is
/// given.
pub fn caller(kms: &Kms, principal: Option<&str>, source_ip: Option<&str>) -> Result<CallerContext, CliError> {
    let mut caller = match principal.filter(|p| !p.is_empty()) {
        Some(p) => CallerContext::new(kms_core::policy::Principal::parse(p)?),
        None => kms.root_caller().clone(),
    };
    if let Some(ip) = source_ip.filter(|ip| !ip.is_empty()) {
        let ip = ip
            .parse()
            .map_err(|_| CliError::usage(format!("--source-ip {ip:?} is not an IP address")))?;
        caller = caller.with_source_ip(ip);
    }
    Ok(caller)
}

/// Opens the store named by `--store`, else `TESSERA_STORE`, else the per-user default.
pub fn open_store(store: Option<PathBuf>) -> Result<Kms, CliError> {
    let dir = store.unwrap_or_else(kms_core::default_store_dir);
    Ok(Kms::open_with(dir, KmsOptions::from_env())?)
}

/// A request id for a response, in the API's UUID form.
pub fn request_id() -> String {
    let mut b = [0u8; 16];
    // A request id is no secret; if the OS generator fails we still answer.
    let _ = kms_core::engine::Engine::fill_random(&kms_core::engine::SoftwareEngine, &mut b);
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Adds the `RequestId` every API response carries.
pub fn with_request_id(mut response: Value, request_id: &str) -> Value {
    if let Value::Object(map) = &mut response {
        map.insert("RequestId".into(), Value::String(request_id.to_owned()));
    }
    response
}
