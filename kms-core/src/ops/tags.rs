//! Tags: TagResource, UntagResource, ListResourceTags.

use super::{Call, Kms};
use crate::api::{Empty, KeyIdRequest, ListResourceTagsResponse, TagList, TagResourceRequest, UntagResourceRequest};
use crate::error::{KmsError, Result};
use crate::store;
use crate::validate;

impl Kms {
    /// TagResource: adds tags, replacing the value of a tag key the key already has.
    pub(super) fn tag_resource_as(&self, call: &Call<'_>, req: &TagResourceRequest) -> Result<Empty> {
        if req.tags.is_empty() {
            return Err(KmsError::MissingParameter("Tags"));
        }
        req.tags.iter().try_for_each(validate::tag)?;
        validate::tag_count(req.tags.len())?;
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        self.write(|tx| {
            if store::get_key(tx, &key.key_id)?.is_none() {
                return Err(KmsError::KeyNotFound(key.key_id.clone()));
            }
            for tag in &req.tags {
                store::put_tag(tx, &key.key_id, tag)?;
            }
            // Counted inside the transaction so that concurrent taggers cannot pass 20 together.
            validate::tag_count(store::tags(tx, &key.key_id)?.len())
        })?;
        Ok(Empty {})
    }

    /// UntagResource.
    pub(super) fn untag_resource_as(&self, call: &Call<'_>, req: &UntagResourceRequest) -> Result<Empty> {
        if req.tag_keys.is_empty() {
            return Err(KmsError::MissingParameter("TagKeys"));
        }
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        self.write(|tx| {
            for tag_key in &req.tag_keys {
                store::delete_tag(tx, &key.key_id, tag_key)?;
            }
            Ok(())
        })?;
        Ok(Empty {})
    }

    /// ListResourceTags.
    pub(super) fn list_resource_tags_as(
        &self,
        call: &Call<'_>,
        req: &KeyIdRequest,
    ) -> Result<ListResourceTagsResponse> {
        self.sync()?;
        let key = self.resolve_for(call, call.action, &req.key_id)?;
        let tag = self.store.read(|c| store::tags(c, &key.key_id))?;
        Ok(ListResourceTagsResponse { tags: TagList { tag } })
    }
}
