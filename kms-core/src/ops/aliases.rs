//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases, ListAliasesByKeyId.

use super::{Call, Kms};
use crate::api::{
    Alias, AliasList, AliasRequest, DeleteAliasRequest, Empty, KeyPageRequest, ListAliasesResponse, PageRequest,
};
use crate::error::{KmsError, Result};
use crate::store::{self, AliasRecord};
use crate::validate;

impl Kms {
    /// CreateAlias.
    pub(super) fn create_alias_as(&self, call: &Call<'_>, req: &AliasRequest) -> Result<Empty> {
        validate::alias_name(&req.alias_name)?;
        self.sync()?;
        self.authorize_resource(call, self.alias_arn(&req.alias_name))?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        let now = self.clock.now_ms();
        self.write(|tx| {
            if store::get_key(tx, &key.key_id)?.is_none() {
                return Err(KmsError::KeyNotFound(key.key_id.clone()));
            }
            if !store::insert_alias(tx, &req.alias_name, &key.key_id, now)? {
                return Err(KmsError::AliasAlreadyExists(req.alias_name.clone()));
            }
            Ok(())
        })?;
        Ok(Empty {})
    }

    /// UpdateAlias: points an existing alias at another key.
    pub(super) fn update_alias_as(&self, call: &Call<'_>, req: &AliasRequest) -> Result<Empty> {
        validate::alias_name(&req.alias_name)?;
        self.sync()?;
        self.authorize_resource(call, self.alias_arn(&req.alias_name))?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        let now = self.clock.now_ms();
        self.write(|tx| {
            if store::get_key(tx, &key.key_id)?.is_none() {
                return Err(KmsError::KeyNotFound(key.key_id.clone()));
            }
            if !store::update_alias(tx, &req.alias_name, &key.key_id, now)? {
                return Err(KmsError::AliasNotFound(req.alias_name.clone()));
            }
            Ok(())
        })?;
        Ok(Empty {})
    }

    /// DeleteAlias.
    pub(super) fn delete_alias_as(&self, call: &Call<'_>, req: &DeleteAliasRequest) -> Result<Empty> {
        self.sync()?;
        // "Alias and key": the alias, and the key it points to.
        self.authorize_resource(call, self.alias_arn(&req.alias_name))?;
        self.resolve_for(call, call.action, &req.alias_name)?;
        if !self.write(|tx| store::delete_alias(tx, &req.alias_name))? {
            return Err(KmsError::AliasNotFound(req.alias_name.clone()));
        }
        Ok(Empty {})
    }

    /// ListAliases.
    pub(super) fn list_aliases_as(&self, call: &Call<'_>, req: &PageRequest) -> Result<ListAliasesResponse> {
        self.sync()?;
        self.authorize_resource(call, self.kms_arn("alias"))?;
        self.alias_page(None, req.page_number, req.page_size)
    }

    /// ListAliasesByKeyId.
    pub(super) fn list_aliases_by_key_id_as(
        &self,
        call: &Call<'_>,
        req: &KeyPageRequest,
    ) -> Result<ListAliasesResponse> {
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        self.alias_page(Some(&key.key_id), req.page_number, req.page_size)
    }

    fn alias_page(&self, key_id: Option<&str>, number: Option<u32>, size: Option<u32>) -> Result<ListAliasesResponse> {
        let (offset, page_number, page_size) = validate::page(number, size)?;
        let (rows, total_count) = self.store.read(|c| store::list_aliases(c, key_id, offset, page_size))?;
        let alias = rows
            .into_iter()
            .map(|AliasRecord { alias_name, key_id }| Alias {
                alias_arn: self.alias_arn(&alias_name),
                alias_name,
                key_id,
            })
            .collect();
        Ok(ListAliasesResponse {
            aliases: AliasList { alias },
            total_count,
            page_number,
            page_size,
        })
    }
}
