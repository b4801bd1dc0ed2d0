//! KMS instances (`ALIYUN::KMS::Instance`): `software` ones keep key material in the software
//! engine, `hardware` ones in an HSM reached over PKCS#11. Every key belongs to one; the default
//! software instance `kst-default` always exists. An instance never changes once created, so its
//! engine is made once per process and kept.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Call, Kms, engine_error, new_id};
use crate::api::{
    CheckKmsInstanceResponse, CreateKmsInstanceRequest, GetKmsInstanceResponse, KmsInstance, KmsInstanceEntry,
    KmsInstanceIdRequest, KmsInstanceIdResponse, KmsInstanceList, ListKmsInstancesResponse, PageRequest,
};
use crate::clock::format_time;
use crate::engine::Engine;
use crate::engine::hsm::{HsmConfig, HsmEngine, PinSource};
use crate::error::{KmsError, Result};
use crate::model::ProductVersion;
use crate::store::{self, InstanceRecord};
use crate::validate;

/// Instance ids: `kst-` and 1 to 60 letters, digits or `-`.
fn check_instance_id(id: &str) -> bool {
    id.strip_prefix("kst-").is_some_and(|rest| {
        (1..=60).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// The HSM an instance record names.
fn hsm_config(record: &InstanceRecord) -> Result<HsmConfig> {
    let broken = || {
        KmsError::Internal(format!(
            "instance {} has an unreadable HSM configuration",
            record.instance_id
        ))
    };
    Ok(HsmConfig {
        module_path: PathBuf::from(record.hsm_module_path.as_deref().ok_or_else(broken)?),
        token_label: record.hsm_token_label.clone(),
        token_serial: record.hsm_token_serial.clone(),
        pin: record
            .hsm_pin_source
            .as_deref()
            .and_then(PinSource::from_stored)
            .ok_or_else(broken)?,
    })
}

fn optional(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Kms {
    /// An instance's record.
    pub(crate) fn instance(&self, instance_id: &str) -> Result<InstanceRecord> {
        self.store
            .read(|c| store::get_instance(c, instance_id))?
            .ok_or_else(|| KmsError::invalid("DKMSInstanceId", format!("no instance {instance_id}")))
    }

    /// The engine of an instance (made at first use, then kept).
    pub(crate) fn engine_for(&self, instance_id: &str) -> Result<Arc<dyn Engine>> {
        if let Some(engine) = self.engines.read().get(instance_id) {
            return Ok(Arc::clone(engine));
        }
        let record = self.instance(instance_id)?;
        let engine: Arc<dyn Engine> = match record.product_version {
            ProductVersion::Software => Arc::clone(&self.engine),
            ProductVersion::Hardware => Arc::new(HsmEngine::new(hsm_config(&record)?)),
        };
        Ok(Arc::clone(
            self.engines.write().entry(instance_id.to_owned()).or_insert(engine),
        ))
    }

    /// CreateKmsInstance.
    pub(super) fn create_kms_instance_as(
        &self,
        call: &Call<'_>,
        req: &CreateKmsInstanceRequest,
    ) -> Result<KmsInstanceIdResponse> {
        self.sync()?;
        self.authorize_resource(call, self.kms_arn("instance"))?;
        let product_version = req
            .product_version
            .ok_or(KmsError::MissingParameter("ProductVersion"))?;
        let description = req.description.clone().unwrap_or_default();
        validate::description(&description)?;
        let hsm_fields = [
            &req.hsm_module_path,
            &req.hsm_token_label,
            &req.hsm_token_serial,
            &req.hsm_pin_env,
            &req.hsm_pin_file,
        ];
        let mut record = InstanceRecord {
            instance_id: format!("kst-{}", &new_id()?[..23]),
            product_version,
            description,
            hsm_module_path: None,
            hsm_token_label: None,
            hsm_token_serial: None,
            hsm_pin_source: None,
            created_ms: self.now_ms(),
        };
        match product_version {
            ProductVersion::Software => {
                if hsm_fields.iter().any(|f| optional(f).is_some()) {
                    return Err(KmsError::invalid(
                        "ProductVersion",
                        "HSM parameters need ProductVersion hardware",
                    ));
                }
            }
            ProductVersion::Hardware => {
                let module = optional(&req.hsm_module_path).ok_or(KmsError::MissingParameter("HsmModulePath"))?;
                if !std::path::Path::new(&module).is_absolute() {
                    return Err(KmsError::invalid(
                        "HsmModulePath",
                        "an absolute path to the PKCS#11 module",
                    ));
                }
                let (label, serial) = (optional(&req.hsm_token_label), optional(&req.hsm_token_serial));
                if label.is_none() && serial.is_none() {
                    return Err(KmsError::MissingParameter("HsmTokenLabel"));
                }
                let pin = match (optional(&req.hsm_pin_env), optional(&req.hsm_pin_file)) {
                    (Some(name), None) => PinSource::Env(name),
                    (None, Some(path)) if std::path::Path::new(&path).is_absolute() => PinSource::File(path.into()),
                    (None, Some(_)) => return Err(KmsError::invalid("HsmPinFile", "an absolute path")),
                    (None, None) => return Err(KmsError::MissingParameter("HsmPinEnv")),
                    (Some(_), Some(_)) => {
                        return Err(KmsError::invalid(
                            "HsmPinFile",
                            "give HsmPinEnv or HsmPinFile, not both",
                        ));
                    }
                };
                record.hsm_module_path = Some(module);
                record.hsm_token_label = label;
                record.hsm_token_serial = serial;
                record.hsm_pin_source = Some(pin.to_stored());
            }
        }
        self.write(|tx| store::insert_instance(tx, &record))?;
        Ok(KmsInstanceIdResponse {
            kms_instance_id: record.instance_id,
        })
    }

    fn instance_by_request(&self, id: &str) -> Result<InstanceRecord> {
        if !check_instance_id(id) {
            return Err(KmsError::invalid(
                "KmsInstanceId",
                format!("{id:?} is not an instance id"),
            ));
        }
        self.instance(id)
    }

    /// GetKmsInstance.
    pub(super) fn get_kms_instance_as(
        &self,
        call: &Call<'_>,
        req: &KmsInstanceIdRequest,
    ) -> Result<GetKmsInstanceResponse> {
        self.sync()?;
        self.authorize_resource(call, self.kms_arn(&format!("instance/{}", req.kms_instance_id)))?;
        let r = self.instance_by_request(&req.kms_instance_id)?;
        Ok(GetKmsInstanceResponse {
            kms_instance: KmsInstance {
                kms_instance_id: r.instance_id,
                product_version: Some(r.product_version),
                description: r.description,
                create_time: format_time(r.created_ms),
                hsm_module_path: r.hsm_module_path,
                hsm_token_label: r.hsm_token_label,
                hsm_token_serial: r.hsm_token_serial,
                hsm_pin_source: r.hsm_pin_source,
            },
        })
    }

    /// ListKmsInstances.
    pub(super) fn list_kms_instances_as(&self, call: &Call<'_>, req: &PageRequest) -> Result<ListKmsInstancesResponse> {
        self.sync()?;
        self.authorize_resource(call, self.kms_arn("instance"))?;
        let (offset, page_number, page_size) = validate::page(req.page_number, req.page_size)?;
        let (rows, total_count) = self.store.read(|c| store::list_instances(c, offset, page_size))?;
        Ok(ListKmsInstancesResponse {
            kms_instances: KmsInstanceList {
                kms_instance: rows
                    .into_iter()
                    .map(|r| KmsInstanceEntry {
                        kms_instance_id: r.instance_id,
                        product_version: Some(r.product_version),
                    })
                    .collect(),
            },
            total_count,
            page_number,
            page_size,
        })
    }

    /// CheckKmsInstance: connects to the instance's HSM (a software instance is always
    /// reachable) and describes it, or says what failed.
    pub(super) fn check_kms_instance_as(
        &self,
        call: &Call<'_>,
        req: &KmsInstanceIdRequest,
    ) -> Result<CheckKmsInstanceResponse> {
        self.sync()?;
        self.authorize_resource(call, self.kms_arn(&format!("instance/{}", req.kms_instance_id)))?;
        let r = self.instance_by_request(&req.kms_instance_id)?;
        let mut out = CheckKmsInstanceResponse {
            kms_instance_id: r.instance_id.clone(),
            product_version: Some(r.product_version),
            reachable: true,
            ..CheckKmsInstanceResponse::default()
        };
        if r.product_version == ProductVersion::Hardware {
            let status = HsmEngine::new(hsm_config(&r)?)
                .status()
                .map_err(|e| engine_error(e, "KmsInstanceId"))?;
            out.library = status.library;
            out.token_label = status.token_label;
            out.token_serial = status.token_serial;
            out.token_model = status.token_model;
        }
        Ok(out)
    }
}
