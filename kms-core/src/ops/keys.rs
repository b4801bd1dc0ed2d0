//! Keys: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, EnableKey, DisableKey,
//! SetDeletionProtection, ScheduleKeyDeletion, CancelKeyDeletion.

use super::{Call, DEFAULT_INSTANCE_ID, Kms, engine_error, format_opt, new_id};
use crate::api::{
    CreateKeyRequest, Empty, KeyEntry, KeyIdRequest, KeyList, KeyMetadata, KeyMetadataResponse, ListKeysResponse,
    PageRequest, ScheduleKeyDeletionRequest, SetDeletionProtectionRequest, UpdateKeyDescriptionRequest,
};
use crate::clock::{DAY_MS, format_time};
use crate::error::{KmsError, Result};
use crate::model::{KeySpec, KeyState, Origin, ProductVersion, ProtectionLevel};
use crate::store::{self, KeyRecord, VersionRecord};
use crate::validate;

impl Kms {
    /// CreateKey.
    pub(super) fn create_key_as(&self, call: &Call<'_>, req: &CreateKeyRequest) -> Result<KeyMetadataResponse> {
        self.sync()?;
        self.authorize_resource(call, self.kms_arn("key"))?;
        // An alias made with the key is a CreateAlias too (on the alias; the key is new).
        if let Some(alias) = req.alias.as_deref().filter(|a| !a.is_empty()) {
            let alias_arn = self.alias_arn(alias);
            call.touched(std::sync::Arc::from(alias_arn.as_str()));
            self.authorize(call, "kms:CreateAlias", &alias_arn, None, None)?;
        }
        let spec = req.key_spec.unwrap_or(KeySpec::Aes256);
        let usage = req.key_usage.unwrap_or(spec.default_usage());
        if !spec.usages().contains(&usage) {
            return Err(KmsError::invalid(
                "KeyUsage",
                format!("{usage} is not valid for {spec}"),
            ));
        }
        let origin = req.origin.unwrap_or(Origin::AliyunKms);
        if origin == Origin::External && !spec.is_symmetric() {
            return Err(KmsError::Unsupported {
                what: "Origin",
                reason: "only symmetric keys can have imported (EXTERNAL) material".into(),
            });
        }
        let instance_id = req
            .dkms_instance_id
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| DEFAULT_INSTANCE_ID.to_owned());
        let instance = self.instance(&instance_id)?;
        let instance_level = match instance.product_version {
            ProductVersion::Software => ProtectionLevel::Software,
            ProductVersion::Hardware => ProtectionLevel::Hsm,
        };
        let protection_level = req.protection_level.unwrap_or(instance_level);
        if protection_level != instance_level {
            return Err(KmsError::Unsupported {
                what: "ProtectionLevel",
                reason: format!(
                    "instance {instance_id} keeps keys at ProtectionLevel {instance_level}, not {protection_level}"
                ),
            });
        }
        let engine = self.engine_for(&instance_id)?;
        engine.ready().map_err(|e| engine_error(e, "DKMSInstanceId"))?;
        if !engine.supports(spec) {
            return Err(KmsError::Unsupported {
                what: "KeySpec",
                reason: match instance.product_version {
                    ProductVersion::Hardware => format!("the HSM of instance {instance_id} cannot make {spec} keys"),
                    ProductVersion::Software => format!("{spec} is not supported here"),
                },
            });
        }
        let description = req.description.clone().unwrap_or_default();
        validate::description(&description)?;
        let policy = super::policies::key_policy_text(req.policy.as_deref())?.map(str::to_owned);
        let auto_rotation = req.enable_automatic_rotation.unwrap_or(false);
        if auto_rotation && !spec.is_symmetric() {
            return Err(KmsError::UnsupportedOperation(
                "asymmetric keys rotate only on request (CreateKeyVersion), not automatically".into(),
            ));
        }
        if auto_rotation && origin == Origin::External {
            return Err(KmsError::Unsupported {
                what: "Origin",
                reason: "keys with imported material do not rotate automatically".into(),
            });
        }
        let interval_s = match &req.rotation_interval {
            Some(text) => validate::rotation_interval(text)?,
            None => validate::DEFAULT_ROTATION_INTERVAL_S,
        };
        validate::tag_count(req.tags.len())?;
        req.tags.iter().try_for_each(validate::tag)?;
        if let Some(alias) = &req.alias {
            validate::alias_name(alias)?;
        }

        let now = self.clock.now_ms();
        let key_id = new_id()?;
        let state = if origin == Origin::External {
            KeyState::PendingImport
        } else if req.enable == Some(false) {
            KeyState::Disabled
        } else {
            KeyState::Enabled
        };
        let mut key = KeyRecord {
            key_id: key_id.clone(),
            spec,
            usage,
            origin,
            protection_level,
            instance_id,
            description,
            creator: self.store.account_id().to_owned(),
            created_ms: now,
            state,
            delete_ms: None,
            deletion_protection: req.deletion_protection.unwrap_or(false),
            deletion_protection_description: String::new(),
            auto_rotation,
            rotation_interval_s: Some(interval_s),
            primary_version: None,
            last_rotation_ms: None,
            next_rotation_ms: auto_rotation.then_some(now + interval_s * 1000),
            policy,
        };
        // Material is made before the write transaction: RSA-4096 takes seconds, and other
        // processes must not wait on the database lock meanwhile.
        let version = if origin == Origin::External {
            None
        } else {
            let version_id = new_id()?;
            let material = self.new_material(&key, &version_id)?;
            key.primary_version = Some(version_id.clone());
            key.last_rotation_ms = Some(now);
            Some((
                VersionRecord {
                    key_id: key_id.clone(),
                    version_id,
                    created_ms: now,
                },
                material,
            ))
        };
        let written = self.write(|tx| {
            store::insert_key(tx, &key)?;
            if let Some((v, material)) = &version {
                store::insert_version(tx, v, material)?;
            }
            for tag in &req.tags {
                store::put_tag(tx, &key_id, tag)?;
            }
            if let Some(alias) = &req.alias
                && !store::insert_alias(tx, alias, &key_id, now)?
            {
                return Err(KmsError::AliasAlreadyExists(alias.clone()));
            }
            Ok(())
        });
        if let Err(e) = written {
            // Material an HSM made for a key that was never stored would be orphaned.
            if let Some((v, material)) = version {
                self.destroy_materials(&key.instance_id, &key.key_id, &[(v.version_id, material)]);
            }
            return Err(e);
        }
        Ok(KeyMetadataResponse {
            key_metadata: self.metadata(&key),
        })
    }

    /// DescribeKey.
    pub(super) fn describe_key_as(&self, call: &Call<'_>, req: &KeyIdRequest) -> Result<KeyMetadataResponse> {
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        let mut key_metadata = self.metadata(&key);
        key_metadata.last_used_time = self.last_used(&key.key_id)?;
        Ok(KeyMetadataResponse { key_metadata })
    }

    /// ListKeys.
    pub(super) fn list_keys_as(&self, call: &Call<'_>, req: &PageRequest) -> Result<ListKeysResponse> {
        self.sync()?;
        self.authorize_resource(call, self.kms_arn("key"))?;
        let (offset, page_number, page_size) = validate::page(req.page_number, req.page_size)?;
        let (ids, total_count) = self.store.read(|c| store::list_keys(c, offset, page_size))?;
        let key = ids
            .into_iter()
            .map(|key_id| KeyEntry {
                key_arn: self.key_arn(&key_id),
                key_id,
            })
            .collect();
        Ok(ListKeysResponse {
            keys: KeyList { key },
            total_count,
            page_number,
            page_size,
        })
    }

    /// UpdateKeyDescription.
    pub(super) fn update_key_description_as(
        &self,
        call: &Call<'_>,
        req: &UpdateKeyDescriptionRequest,
    ) -> Result<Empty> {
        validate::description(&req.description)?;
        self.modify_key(call, &req.key_id, |key| {
            key.description = req.description.clone();
            Ok(())
        })
    }

    /// EnableKey.
    pub(super) fn enable_key_as(&self, call: &Call<'_>, req: &KeyIdRequest) -> Result<Empty> {
        self.set_enabled(call, &req.key_id, KeyState::Enabled)
    }

    /// DisableKey.
    pub(super) fn disable_key_as(&self, call: &Call<'_>, req: &KeyIdRequest) -> Result<Empty> {
        self.set_enabled(call, &req.key_id, KeyState::Disabled)
    }

    fn set_enabled(&self, call: &Call<'_>, key_ref: &str, state: KeyState) -> Result<Empty> {
        self.modify_key(call, key_ref, |key| {
            if matches!(key.state, KeyState::PendingDeletion | KeyState::PendingImport) {
                return Err(KmsError::KeyStateRejected { state: key.state });
            }
            key.state = state;
            Ok(())
        })
    }

    /// SetDeletionProtection.
    pub(super) fn set_deletion_protection_as(
        &self,
        call: &Call<'_>,
        req: &SetDeletionProtectionRequest,
    ) -> Result<Empty> {
        let enable = req
            .enable_deletion_protection
            .ok_or(KmsError::MissingParameter("EnableDeletionProtection"))?;
        let description = req.deletion_protection_description.clone().unwrap_or_default();
        validate::description(&description)
            .map_err(|_| KmsError::invalid("DeletionProtectionDescription", "at most 8192 characters"))?;
        self.modify_key(call, &req.protected_resource_arn, |key| {
            // Protection guards against scheduling; a key already pending must be cancelled first.
            if enable && key.state == KeyState::PendingDeletion {
                return Err(KmsError::KeyStateRejected { state: key.state });
            }
            key.deletion_protection = enable;
            key.deletion_protection_description = if enable { description.clone() } else { String::new() };
            Ok(())
        })
    }

    /// ScheduleKeyDeletion.
    pub(super) fn schedule_key_deletion_as(&self, call: &Call<'_>, req: &ScheduleKeyDeletionRequest) -> Result<Empty> {
        let days = validate::pending_window(req.pending_window_in_days)?;
        let now = self.clock.now_ms();
        self.modify_key(call, &req.key_id, |key| {
            if key.deletion_protection {
                return Err(KmsError::StateModifiedFailed(
                    "deletion protection is enabled for this key; disable it with SetDeletionProtection first".into(),
                ));
            }
            if key.state == KeyState::PendingDeletion {
                return Err(KmsError::KeyStateRejected { state: key.state });
            }
            key.state = KeyState::PendingDeletion;
            key.delete_ms = Some(now + i64::from(days) * DAY_MS);
            Ok(())
        })
    }

    /// CancelKeyDeletion: the key comes back Disabled (PendingImport when it has no material yet).
    pub(super) fn cancel_key_deletion_as(&self, call: &Call<'_>, req: &KeyIdRequest) -> Result<Empty> {
        self.modify_key(call, &req.key_id, |key| {
            if key.state != KeyState::PendingDeletion {
                return Err(KmsError::StateModifiedFailed(format!(
                    "the key is {}, not PendingDeletion",
                    key.state
                )));
            }
            // A key without material must not become Disabled: EnableKey would then make it an
            // Enabled key that cannot encrypt (and that automatic rotation would give material).
            key.state = if key.primary_version.is_none() {
                KeyState::PendingImport
            } else {
                KeyState::Disabled
            };
            key.delete_ms = None;
            Ok(())
        })
    }

    /// Reads a key afresh inside a write transaction, lets `change` edit it, and writes it back.
    pub(super) fn modify_key(
        &self,
        call: &Call<'_>,
        key_ref: &str,
        change: impl FnOnce(&mut KeyRecord) -> Result<()>,
    ) -> Result<Empty> {
        self.sync()?;
        let key_id = self.resolve_for(call, call.action, key_ref)?.key_id.clone();
        self.write(|tx| {
            let mut key = store::get_key(tx, &key_id)?.ok_or_else(|| KmsError::KeyNotFound(key_id.clone()))?;
            change(&mut key)?;
            store::update_key(tx, &key)
        })?;
        Ok(Empty {})
    }

    /// The API's view of a key.
    pub(super) fn metadata(&self, key: &KeyRecord) -> KeyMetadata {
        let enabled_or = |on: bool| if on { "Enabled" } else { "Disabled" }.to_owned();
        KeyMetadata {
            key_id: key.key_id.clone(),
            arn: self.key_arn(&key.key_id),
            key_spec: Some(key.spec),
            key_usage: Some(key.usage),
            key_state: Some(key.state),
            origin: Some(key.origin),
            protection_level: Some(key.protection_level),
            description: key.description.clone(),
            creator: key.creator.clone(),
            creation_date: format_time(key.created_ms),
            delete_date: format_opt(key.delete_ms),
            deletion_protection: enabled_or(key.deletion_protection),
            deletion_protection_description: key.deletion_protection_description.clone(),
            automatic_rotation: match (key.auto_rotation, key.state) {
                (false, _) => "Disabled".into(),
                (true, KeyState::Enabled) => "Enabled".into(),
                (true, _) => "Suspended".into(),
            },
            rotation_interval: key
                .rotation_interval_s
                .filter(|_| key.spec.is_symmetric())
                .map(|s| format!("{s}s")),
            primary_key_version: key.primary_version.clone(),
            last_rotation_date: format_opt(key.last_rotation_ms),
            next_rotation_date: format_opt(key.next_rotation_ms.filter(|_| key.auto_rotation)),
            dkms_instance_id: key.instance_id.clone(),
            last_used_time: None,
        }
    }
}
