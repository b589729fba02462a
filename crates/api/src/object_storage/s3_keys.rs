//! S3 keys: a user's credentials for the S3 gateway. `POST` makes the key pair and
//! answers the secret key this once; it is kept beside the document (never in it)
//! for the controller to give the gateway. Members see and delete only their own
//! keys, admins every key; deleting a user deletes their keys.

use async_trait::async_trait;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use yunhan_model::{
    new_id, validate_labels, validate_name, ApiError, CreateRequest, Kind, Metadata, Resource,
    S3Key, S3KeySpec, S3KeyStatus, MAX_S3_KEYS_PER_USER,
};
use yunhan_store::objects::{s3_key_secret_key, Doc};
use yunhan_store::StoreExt;

use crate::auth::Principal;
use crate::crud::created;
use crate::error::Result;
use crate::extract::JsonBody;
use crate::keys::{check_key_limit, key_user, user_owned_routes, UserOwned};
use crate::resource::{delete_current, delete_or_mark, Deleted, Hooks};
use crate::{AppState, Shared};

pub(crate) fn routes(r: Router<Shared>) -> Router<Shared> {
    user_owned_routes::<S3Key>(r, post(create))
}

/// Response of `POST /v1/s3-keys`: the secret key is shown this once.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatedS3Key {
    pub s3_key: Resource<S3KeySpec, S3KeyStatus>,
    /// The access key id (also in `s3_key.status`).
    pub access_key: String,
    /// The secret key: it cannot be shown again.
    pub secret_key: String,
    /// The S3 endpoint (path-style URLs).
    pub endpoint: String,
}

impl UserOwned for S3Key {
    const MAX_PER_USER: usize = MAX_S3_KEYS_PER_USER;
    const WHAT: &'static str = "S3 keys";
    const CLI_NOUN: &'static str = "s3-key";
    fn user_of(doc: &Doc<Self>) -> &str {
        &doc.status.user
    }
}

/// A key the gateway may know goes through the controller (202), which takes it
/// out of the gateway, then deletes the document and its secret.
#[async_trait]
impl Hooks for S3Key {
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        if s.config.s3_endpoint.is_some() {
            return delete_or_mark::<Self>(s, doc, true).await;
        }
        delete_current::<Self>(s, doc.clone()).await?;
        let secret = s3_key_secret_key(&doc.metadata.id);
        s.objects.store().delete(&secret).await?;
        Ok(Deleted::Now)
    }
}

fn check_request(req: &CreateRequest<S3KeySpec>) -> Result<()> {
    validate_name("metadata.name", &req.metadata.name)?;
    validate_labels(&req.metadata.labels)?;
    S3Key::validate(&req.spec)?;
    if req.metadata.project.is_some() {
        return Err(ApiError::invalid_field(
            "metadata.project",
            "an S3 key belongs to its user's project; omit metadata.project",
        )
        .into());
    }
    Ok(())
}

/// A new key pair: an access key id of 20 upper-case letters and digits (`YK…`, as
/// S3 clients expect) and a 40-character secret.
fn key_pair() -> (String, String) {
    let mut rng = rand::thread_rng();
    let access: String = (0..18)
        .map(|_| {
            let c = rng.gen_range(0..36u8);
            char::from(if c < 10 { b'0' + c } else { b'A' + c - 10 })
        })
        .collect();
    (
        format!("YK{access}"),
        Alphanumeric.sample_string(&mut rng, 40),
    )
}

async fn create(
    State(s): State<Shared>,
    p: Principal,
    JsonBody(req): JsonBody<CreateRequest<S3KeySpec>>,
) -> Result<Response> {
    check_request(&req)?;
    let endpoint = super::endpoint(&s)?.to_string();
    let user = key_user(&s, &p, req.spec.user.as_deref()).await?;
    let id = new_id(S3Key::ID_PREFIX);
    let (access_key, secret_key) = key_pair();
    let doc = Resource {
        metadata: Metadata {
            labels: req.metadata.labels,
            ..Metadata::new(&id, req.metadata.name, Some(user.spec.project.clone()))
        },
        spec: S3KeySpec {
            user: Some(user.metadata.id.clone()),
            description: req.spec.description,
        },
        status: S3KeyStatus {
            user: user.metadata.id.clone(),
            access_key: access_key.clone(),
            endpoint: Some(endpoint.clone()),
            ..Default::default()
        },
    };
    let serial = s.key_create.lock().await;
    check_key_limit::<S3Key>(&s, &user).await?;
    let secret = s3_key_secret_key(&id);
    s.objects
        .store()
        .put(&secret, secret_key.clone().into_bytes())
        .await?;
    let made = s.objects.create::<S3Key>(doc).await;
    drop(serial);
    let s3_key = match made {
        Ok(k) => k,
        Err(e) => {
            s.objects.store().delete(&secret).await?;
            return Err(e.into());
        }
    };
    let body = CreatedS3Key {
        s3_key,
        access_key,
        secret_key,
        endpoint,
    };
    Ok(created(S3Key::PLURAL, &id, Json(body)))
}
