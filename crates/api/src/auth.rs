//! Bearer-token authentication. Tokens look like `yh_<key hex>_<secret hex>`:
//! the key part finds the ApiKey, the secret is checked against its argon2id
//! hash. Verified tokens are remembered (by SHA-256) for a short TTL because
//! argon2 is deliberately slow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use rand::RngCore;
use sha2::{Digest, Sha256};
use yunhan_model::{ApiError, ApiKey, ErrorCode, Role, User};
use yunhan_store::objects::Objects;
use yunhan_store::StoreExt;

use crate::error::HttpError;
use crate::Shared;

pub const TOKEN_PREFIX: &str = "yh_";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub key: String,
    pub project: String,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

fn secret_key(key_id: &str) -> String {
    format!("/yunhan/secrets/api-keys/{key_id}")
}

pub struct Authenticator {
    objects: Objects,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

/// A new token for key `key_id` and the hash to store for it.
pub fn mint_token(key_id: &str) -> (String, String) {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    let hex_id = key_id.trim_start_matches("key-");
    let token = format!("{TOKEN_PREFIX}{hex_id}_{secret}");
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 hashing with default parameters cannot fail")
        .to_string();
    (token, hash)
}

/// Stores the secret hash of a freshly minted key.
pub async fn store_secret(objects: &Objects, key_id: &str, hash: String) -> Result<(), HttpError> {
    objects
        .store()
        .put(&secret_key(key_id), hash.into_bytes())
        .await?;
    Ok(())
}

fn unauthenticated(msg: &str) -> HttpError {
    ApiError::new(ErrorCode::Unauthenticated, msg).into()
}

impl Authenticator {
    pub fn new(objects: Objects, ttl: Duration) -> Self {
        Authenticator {
            objects,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn forget_key(&self, key_id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (p, _)| p.key != key_id);
    }

    pub async fn authenticate(&self, token: &str) -> Result<Principal, HttpError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((p, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
        {
            if at.elapsed() < self.ttl {
                return Ok(p.clone());
            }
        }
        let bad = || {
            unauthenticated("the API token is not valid; create a new one with 'yunhan key create'")
        };
        let rest = token.strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?;
        let (hex_id, secret) = rest.split_once('_').ok_or_else(bad)?;
        if hex_id.len() != 16 || !hex_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let key_id = format!("key-{hex_id}");
        let key = self.objects.get::<ApiKey>(&key_id).await?.ok_or_else(bad)?;
        let hash = self
            .objects
            .store()
            .get(&secret_key(&key_id))
            .await?
            .ok_or_else(bad)?;
        let hash = String::from_utf8(hash.value).map_err(|_| bad())?;
        let secret = secret.to_string();
        // argon2 takes tens of milliseconds: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Err(bad());
        }
        let user = self
            .objects
            .get::<User>(&key.status.user)
            .await?
            .ok_or_else(|| unauthenticated("the user of this API key no longer exists"))?;
        let principal = Principal {
            user: user.metadata.id,
            key: key_id,
            project: user.spec.project,
            role: user.spec.role,
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(digest, (principal.clone(), Instant::now()));
        Ok(principal)
    }
}

impl FromRequestParts<Shared> for Principal {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthenticated("this endpoint needs 'Authorization: Bearer <token>'; 'yunhan up' writes a token to ~/.config/yunhan/config.toml"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthenticated("the Authorization header must be 'Bearer <token>'"))?;
        let principal = state.auth.authenticate(token).await?;
        if let Err(retry_after) = state.limiter.check(&principal.key) {
            return Err(HttpError {
                error: ApiError::new(
                    ErrorCode::RateLimited,
                    format!("too many requests for this API key; retry in {retry_after} s"),
                )
                .with_detail("retry_after_seconds", retry_after),
                retry_after: Some(retry_after),
            });
        }
        Ok(principal)
    }
}
