//! Versions and rotation: CreateKeyVersion, DescribeKeyVersion, ListKeyVersions,
//! UpdateRotationPolicy, and the due work (automatic rotation, purge after the pending window).

use super::{Call, Kms, new_id};
use crate::api::{
    DescribeKeyVersionRequest, Empty, KeyIdRequest, KeyPageRequest, KeyVersion, KeyVersionList, KeyVersionResponse,
    ListKeyVersionsResponse, UpdateRotationPolicyRequest,
};
use crate::clock::format_time;
use crate::engine::VersionRef;
use crate::error::{KmsError, Result};
use crate::model::{KeyState, Origin};
use crate::store::{self, KeyRecord, VersionRecord};
use crate::validate;

fn version_view(v: &VersionRecord) -> KeyVersion {
    KeyVersion {
        key_id: v.key_id.clone(),
        key_version_id: v.version_id.clone(),
        creation_date: format_time(v.created_ms),
    }
}

impl Kms {
    /// CreateKeyVersion: a new primary version (manual rotation; the only rotation for asymmetric keys).
    pub(super) fn create_key_version_as(&self, call: &Call<'_>, req: &KeyIdRequest) -> Result<KeyVersionResponse> {
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        if key.origin == Origin::External {
            return Err(KmsError::Unsupported {
                what: "Origin",
                reason: "keys with imported material cannot make new versions".into(),
            });
        }
        if key.state != KeyState::Enabled {
            return Err(KmsError::KeyStateRejected { state: key.state });
        }
        let now = self.clock.now_ms();
        let version = VersionRecord {
            key_id: key.key_id.clone(),
            version_id: new_id()?,
            created_ms: now,
        };
        let material = self.new_material(&key, &version.version_id)?;
        self.write(|tx| {
            let mut current =
                store::get_key(tx, &key.key_id)?.ok_or_else(|| KmsError::KeyNotFound(key.key_id.clone()))?;
            if current.state != KeyState::Enabled {
                return Err(KmsError::KeyStateRejected { state: current.state });
            }
            store::insert_version(tx, &version, &material)?;
            promote(&mut current, &version.version_id, now);
            store::update_key(tx, &current)
        })?;
        Ok(KeyVersionResponse {
            key_version: version_view(&version),
        })
    }

    /// DescribeKeyVersion.
    pub(super) fn describe_key_version_as(
        &self,
        call: &Call<'_>,
        req: &DescribeKeyVersionRequest,
    ) -> Result<KeyVersionResponse> {
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        if req.key_version_id.is_empty() {
            return Err(KmsError::MissingParameter("KeyVersionId"));
        }
        let (version, _) = self
            .store
            .read(|c| store::get_version(c, &key.key_id, &req.key_version_id))?
            .ok_or_else(|| KmsError::KeyVersionNotFound {
                key_id: key.key_id.clone(),
                version_id: req.key_version_id.clone(),
            })?;
        Ok(KeyVersionResponse {
            key_version: version_view(&version),
        })
    }

    /// ListKeyVersions.
    pub(super) fn list_key_versions_as(
        &self,
        call: &Call<'_>,
        req: &KeyPageRequest,
    ) -> Result<ListKeyVersionsResponse> {
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        let (offset, page_number, page_size) = validate::page(req.page_number, req.page_size)?;
        let (versions, total_count) = self
            .store
            .read(|c| store::list_versions(c, &key.key_id, offset, page_size))?;
        Ok(ListKeyVersionsResponse {
            key_versions: KeyVersionList {
                key_version: versions.iter().map(version_view).collect(),
            },
            total_count,
            page_number,
            page_size,
        })
    }

    /// UpdateRotationPolicy.
    pub(super) fn update_rotation_policy_as(
        &self,
        call: &Call<'_>,
        req: &UpdateRotationPolicyRequest,
    ) -> Result<Empty> {
        let enable = req
            .enable_automatic_rotation
            .ok_or(KmsError::MissingParameter("EnableAutomaticRotation"))?;
        let interval = req
            .rotation_interval
            .as_deref()
            .map(validate::rotation_interval)
            .transpose()?;
        self.modify_key(call, &req.key_id, |key| {
            if enable && !key.spec.is_symmetric() {
                return Err(KmsError::UnsupportedOperation(
                    "asymmetric keys rotate only on request (CreateKeyVersion), not automatically".into(),
                ));
            }
            if enable && key.origin == Origin::External {
                return Err(KmsError::Unsupported {
                    what: "Origin",
                    reason: "keys with imported material do not rotate automatically".into(),
                });
            }
            if let Some(seconds) = interval {
                key.rotation_interval_s = Some(seconds);
            }
            key.auto_rotation = enable;
            let interval_ms = key.rotation_interval_s.unwrap_or(validate::DEFAULT_ROTATION_INTERVAL_S) * 1000;
            // Due one interval after the last rotation: an overdue key rotates at the next call.
            key.next_rotation_ms = enable.then(|| key.last_rotation_ms.unwrap_or(key.created_ms) + interval_ms);
            Ok(())
        })
    }

    /// Applies the work due at `now`: purges keys whose pending window ended, then rotates keys
    /// whose interval passed. Every step re-checks inside its transaction, so processes that run
    /// this at the same time do each piece of work once.
    pub(super) fn apply_due_work(&self, now: i64) -> Result<(usize, usize)> {
        let purged = self.write(|tx| {
            let mut purged = Vec::new();
            for key_id in store::due_purges(tx, now)? {
                let instance_id = store::get_key(tx, &key_id)?.map(|k| k.instance_id).unwrap_or_default();
                let materials = store::version_materials(tx, &key_id)?;
                store::delete_key(tx, &key_id)?;
                purged.push((key_id, instance_id, materials));
            }
            Ok(purged)
        })?;
        for (key_id, instance_id, materials) in &purged {
            self.handles.write().remove(key_id);
            self.destroy_materials(instance_id, key_id, materials);
            tracing::info!(key_id = %key_id, "purged key after its pending-deletion window");
        }

        let mut rotated = 0;
        for key in self.store.read(|c| store::due_rotations(c, now))? {
            let version = VersionRecord {
                key_id: key.key_id.clone(),
                version_id: new_id()?,
                created_ms: now,
            };
            let material = self.new_material(&key, &version.version_id)?;
            let applied = self.write(|tx| {
                let Some(mut current) = store::get_key(tx, &key.key_id)? else {
                    return Ok(false);
                };
                let still_due = current.auto_rotation
                    && current.state == KeyState::Enabled
                    && current.next_rotation_ms.is_some_and(|t| t <= now);
                if !still_due {
                    return Ok(false);
                }
                store::insert_version(tx, &version, &material)?;
                promote(&mut current, &version.version_id, now);
                store::update_key(tx, &current)?;
                Ok(true)
            })?;
            if applied {
                rotated += 1;
                tracing::info!(key_id = %key.key_id, version_id = %version.version_id, "rotated key automatically");
            } else {
                self.destroy_materials(&key.instance_id, &key.key_id, &[(version.version_id, material)]);
            }
        }
        Ok((rotated, purged.len()))
    }

    /// Destroys material an engine holds outside the store (HSM objects). Software material
    /// lives only in the rows already deleted, so there is nothing more to do for it.
    pub(super) fn destroy_materials(&self, instance_id: &str, key_id: &str, materials: &[(String, Vec<u8>)]) {
        let engine = match self.engine_for(instance_id) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(key_id, instance_id, error = %e, "could not destroy key material: no engine");
                return;
            }
        };
        if engine.stored_keys_are_secret() {
            return;
        }
        for (version_id, stored) in materials {
            if let Err(e) = engine.destroy(VersionRef { key_id, version_id }, stored) {
                tracing::warn!(key_id, version_id = %version_id, error = %e, "could not destroy key material");
            }
        }
    }
}

/// Makes `version_id` the primary version of `key`, rotated at `now`.
fn promote(key: &mut KeyRecord, version_id: &str, now: i64) {
    key.primary_version = Some(version_id.to_owned());
    key.last_rotation_ms = Some(now);
    if key.auto_rotation {
        let interval_s = key.rotation_interval_s.unwrap_or(validate::DEFAULT_ROTATION_INTERVAL_S);
        key.next_rotation_ms = Some(now + interval_s * 1000);
    }
}
