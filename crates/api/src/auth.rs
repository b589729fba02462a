//! Bearer-token authentication. Tokens look like `yh_<key hex>_<secret hex>`:
//! the key part finds the ApiKey, the secret is checked against its argon2id
//! hash. Verified tokens are remembered (by SHA-256) for a short TTL because
//! argon2 is deliberately slow.
//!
//! Guessing is bounded before any hashing: failed authentications are counted
//! per client address and per key id (token buckets; a success gives its
//! token back), argon2 runs at most `concurrent_verifications` at a time in
//! reused memory (`verify.rs`), and unknown key ids are checked against a
//! dummy hash so they cost as long as known ones. docs/auth.md has the numbers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{header, request::Parts};
use rand::RngCore;
use sha2::{Digest, Sha256};
use yunhan_model::{ApiError, ApiKey, ErrorCode, User};
use yunhan_store::objects::{api_key_secret_key, Doc, Objects};
use yunhan_store::StoreExt;

use crate::error::HttpError;
use crate::ratelimit::RateLimiter;
use crate::verify::{Argon2Pool, DUMMY_HASH};
use crate::Shared;

pub const TOKEN_PREFIX: &str = "yh_";

pub use crate::principal::Principal;

/// How hard guessing tokens is made.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthLimits {
    /// Failed authentications one client address may make in a burst…
    pub failures_per_addr_burst: f64,
    /// …and per second after that.
    pub failures_per_addr_rate: f64,
    /// Failed authentications for one key id in a burst (all addresses)…
    pub failures_per_key_burst: f64,
    /// …and per second after that.
    pub failures_per_key_rate: f64,
    /// argon2id verifications running at once (each holds 19 MiB and a core).
    pub concurrent_verifications: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            failures_per_addr_burst: 30.0,
            failures_per_addr_rate: 1.0,
            failures_per_key_burst: 10.0,
            failures_per_key_rate: 0.2,
            concurrent_verifications: 2,
        }
    }
}

enum Remembered {
    /// Verified within the TTL: the answer, without argon2.
    Fresh(Result<Principal, HttpError>),
    /// Verified before the TTL: the caller knows the secret, re-check it.
    Stale,
    No,
}

struct Cached {
    principal: Principal,
    at: Instant,
    /// When the key expires, and as written in its spec.
    expires: Option<(SystemTime, String)>,
}

pub struct Authenticator {
    objects: Objects,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    failures_by_addr: RateLimiter,
    failures_by_key: RateLimiter,
    argon2: Argon2Pool,
}

/// A new token for key `key_id` and its secret part.
fn new_token(key_id: &str) -> (String, String) {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    let hex_id = key_id.trim_start_matches("key-");
    (format!("{TOKEN_PREFIX}{hex_id}_{secret}"), secret)
}

/// A new token for key `key_id` and the hash to store for it (bootstrap; the
/// API mints through [`Authenticator::mint`], under the argon2 limit).
pub fn mint_token(key_id: &str) -> (String, String) {
    let (token, secret) = new_token(key_id);
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
        .put(&api_key_secret_key(key_id), hash.into_bytes())
        .await?;
    Ok(())
}

fn unauthenticated(msg: &str) -> HttpError {
    ApiError::new(ErrorCode::Unauthenticated, msg).into()
}

/// The 401 for any token that does not authenticate; the same for unknown
/// ids and wrong secrets.
fn bad_token() -> HttpError {
    unauthenticated("the API token is not valid; create a new one with 'yunhan key create'")
}

fn expired(at: &str) -> HttpError {
    unauthenticated(&format!(
        "this API key expired at {at}; create a new one with 'yunhan key create'"
    ))
}

/// `yh_<16 hex>_<64 hex>` → (key id, secret); None for anything else, which
/// is refused before any lookup or hashing.
fn parse_token(token: &str) -> Option<(String, &str)> {
    let (hex_id, secret) = token.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(hex_id, 16) && hex(secret, 64)).then(|| (format!("key-{hex_id}"), secret))
}

/// The bucket of a client address: IPv6 clients by their /64 (one host
/// usually has the whole prefix).
pub(crate) fn addr_bucket(client: Option<IpAddr>) -> String {
    match client.map(|ip| ip.to_canonical()) {
        None => "addr:unknown".into(),
        Some(IpAddr::V4(v4)) => format!("addr:{v4}"),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

fn too_many_failures(retry_after: u64) -> HttpError {
    HttpError {
        error: ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many failed authentications from this address or for this key; retry in {retry_after} s"
            ),
        )
        .with_detail("retry_after_seconds", retry_after)
        .with_detail("reason", "failed_authentications"),
        retry_after: Some(retry_after),
    }
}

impl Authenticator {
    pub fn new(objects: Objects, ttl: Duration, limits: &AuthLimits) -> Self {
        Authenticator {
            objects,
            ttl,
            cache: Mutex::new(HashMap::new()),
            failures_by_addr: RateLimiter::new(
                limits.failures_per_addr_rate,
                limits.failures_per_addr_burst,
            ),
            failures_by_key: RateLimiter::new(
                limits.failures_per_key_rate,
                limits.failures_per_key_burst,
            ),
            argon2: Argon2Pool::new(limits.concurrent_verifications),
        }
    }

    pub fn forget_key(&self, key_id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, c| c.principal.key != key_id);
    }

    /// A new token for `key_id` and the hash to store, hashed under the same
    /// concurrency limit as verifications.
    pub async fn mint(&self, key_id: &str) -> Result<(String, String), HttpError> {
        let (token, secret) = new_token(key_id);
        let hash = self.argon2.hash(secret).await.ok_or_else(|| {
            HttpError::from(ApiError::new(
                ErrorCode::Internal,
                "hashing the new key's secret failed",
            ))
        })?;
        Ok((token, hash))
    }

    /// What is remembered of a token (by its digest).
    fn remembered(&self, digest: &[u8; 32]) -> Remembered {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = cache.get(digest) else {
            return Remembered::No;
        };
        if c.at.elapsed() >= self.ttl {
            return Remembered::Stale;
        }
        match &c.expires {
            Some((t, stamp)) if *t <= SystemTime::now() => Remembered::Fresh(Err(expired(stamp))),
            _ => Remembered::Fresh(Ok(c.principal.clone())),
        }
    }

    fn forget_token(&self, digest: &[u8; 32]) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(digest);
    }

    fn remember(&self, digest: [u8; 32], principal: &Principal, key: &Doc<ApiKey>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        let expires = key.spec.expires().zip(key.spec.expires_at.clone());
        let principal = principal.clone();
        let at = Instant::now();
        cache.insert(
            digest,
            Cached {
                principal,
                at,
                expires,
            },
        );
    }

    /// Takes one failure token from the address's and the key id's buckets
    /// before any lookup or hashing; refused (429) when either is empty.
    pub(crate) fn admit(&self, addr: &str, key_id: &str) -> Result<(), HttpError> {
        self.failures_by_addr
            .check(addr)
            .map_err(too_many_failures)?;
        if let Err(retry) = self.failures_by_key.check(key_id) {
            self.failures_by_addr.refund(addr);
            return Err(too_many_failures(retry));
        }
        Ok(())
    }

    /// Gives back the failure tokens [`Self::admit`] took: the attempt was no guess.
    pub(crate) fn refund(&self, addr: &str, key_id: &str) {
        self.failures_by_addr.refund(addr);
        self.failures_by_key.refund(key_id);
    }

    /// The bounded argon2id pool (passwords are checked under the same limit as keys).
    pub(crate) fn argon2(&self) -> &Argon2Pool {
        &self.argon2
    }

    /// The key if `secret` is its secret. Unknown ids take the same path
    /// against [`DUMMY_HASH`], so they answer in the same time.
    async fn verify(&self, key_id: &str, secret: &str) -> Result<Option<Doc<ApiKey>>, HttpError> {
        let key = self.objects.get::<ApiKey>(key_id).await?;
        let hash = self
            .objects
            .store()
            .get(&api_key_secret_key(key_id))
            .await?;
        let hash = hash.and_then(|h| String::from_utf8(h.value).ok());
        let known = key.is_some() && hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
        let ok = self.argon2.verify(secret.to_string(), hash).await;
        Ok(key.filter(|_| ok && known))
    }

    pub async fn authenticate(
        &self,
        token: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, HttpError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // A token that was valid before is re-checked without the failure
        // limits: an attack on its key id cannot lock out a key in use.
        let proven = match self.remembered(&digest) {
            Remembered::Fresh(answer) => return answer,
            Remembered::Stale => true,
            Remembered::No => false,
        };
        let (key_id, secret) = parse_token(token).ok_or_else(bad_token)?;
        let addr = addr_bucket(client);
        if !proven {
            self.admit(&addr, &key_id)?;
        }
        let Some(key) = self.verify(&key_id, secret).await? else {
            tracing::debug!(%addr, key = %key_id, "failed authentication");
            self.forget_token(&digest);
            return Err(bad_token());
        };
        if !proven {
            // Not a guess: the attempt does not count against the caller.
            self.refund(&addr, &key_id);
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
        // Remembered even when expired, so retries are answered without argon2.
        self.remember(digest, &principal, &key);
        match key.spec.expires_at.as_deref() {
            Some(at) if key.spec.expired() => Err(expired(at)),
            _ => Ok(principal),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, RFC 7235).
fn bearer(parts: &Parts) -> Result<&str, HttpError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthenticated("this endpoint needs 'Authorization: Bearer <token>'; 'yunhan up' writes a token to ~/.config/yunhan/config.toml"))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| unauthenticated("the Authorization header must be 'Bearer <token>'"))
}

impl FromRequestParts<Shared> for Principal {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let principal = match crate::session_store::cookie(&parts.headers) {
            Some(cookie) if !parts.headers.contains_key(header::AUTHORIZATION) => {
                crate::session_store::authenticate(state, parts, cookie).await?
            }
            _ => {
                let token = bearer(parts)?;
                let client = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                state.auth.authenticate(token, client).await?
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use yunhan_store::MemStore;

    fn limits() -> AuthLimits {
        AuthLimits {
            failures_per_addr_burst: 3.0,
            failures_per_addr_rate: 0.001,
            failures_per_key_burst: 2.0,
            failures_per_key_rate: 0.001,
            concurrent_verifications: 1,
        }
    }

    /// An authenticator over a bootstrapped store, and the admin's token.
    async fn setup(ttl: Duration) -> (Authenticator, String) {
        let objects = Objects::new(Arc::new(MemStore::new()));
        let boot = crate::bootstrap(&objects).await.unwrap().unwrap();
        (
            Authenticator::new(objects, ttl, &limits()),
            boot.admin_token,
        )
    }

    fn code(r: Result<Principal, HttpError>) -> ErrorCode {
        r.expect_err("refused").error.code
    }

    #[test]
    fn tokens_and_addresses_parse_strictly() {
        let id = "0123456789abcdef";
        let secret = "a".repeat(64);
        let token = format!("yh_{id}_{secret}");
        let (key, s) = parse_token(&token).unwrap();
        assert_eq!((key.as_str(), s), ("key-0123456789abcdef", secret.as_str()));
        for bad in [
            format!("yh_{id}_00ff"),
            format!("yh_{id}x_{secret}"),
            format!("xx_{id}_{secret}"),
            format!("yh_{id}_{}", "g".repeat(64)),
        ] {
            assert_eq!(parse_token(&bad), None, "{bad}");
        }
        let v6 = |s: &str| addr_bucket(Some(s.parse().unwrap()));
        assert_eq!(v6("2001:db8:1:2:3::4"), v6("2001:db8:1:2:ffff::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(v6("::ffff:10.0.0.1"), v6("10.0.0.1"));
    }

    #[tokio::test]
    async fn failures_are_limited_per_key_and_address_before_hashing() {
        let (auth, token) = setup(Duration::from_secs(60)).await;
        let key_id = parse_token(&token).unwrap().0;
        let wrong = format!("yh_{}_{}", &key_id[4..], "0".repeat(64));
        let me = Some(IpAddr::from([10, 0, 0, 1]));
        // Valid tokens never use up the budget.
        for _ in 0..3 {
            auth.authenticate(&token, me).await.unwrap();
        }
        for _ in 0..2 {
            assert_eq!(
                code(auth.authenticate(&wrong, me).await),
                ErrorCode::Unauthenticated
            );
        }
        let r = auth.authenticate(&wrong, me).await.expect_err("limited");
        assert_eq!(
            (r.error.code, r.retry_after.is_some()),
            (ErrorCode::RateLimited, true)
        );
        // Another key id from the same address: one failure left for it.
        let other = format!("yh_{}_{}", "f".repeat(16), "0".repeat(64));
        assert_eq!(
            code(auth.authenticate(&other, me).await),
            ErrorCode::Unauthenticated
        );
        assert_eq!(
            code(auth.authenticate(&other, me).await),
            ErrorCode::RateLimited
        );
        // Malformed tokens are refused before counting; remembered ones still work.
        assert_eq!(
            code(auth.authenticate("yh_x", me).await),
            ErrorCode::Unauthenticated
        );
        auth.authenticate(&token, me).await.unwrap();
    }

    #[tokio::test]
    async fn a_key_in_use_is_not_locked_out_by_an_attack_on_its_id() {
        let (auth, token) = setup(Duration::ZERO).await;
        let key_id = parse_token(&token).unwrap().0;
        let wrong = format!("yh_{}_{}", &key_id[4..], "0".repeat(64));
        let (me, attacker) = (Some(IpAddr::from([10, 0, 0, 1])), None);
        auth.authenticate(&token, me).await.unwrap();
        let limited =
            futures::future::join_all((0..5).map(|_| auth.authenticate(&wrong, attacker)));
        let refusals: Vec<_> = limited.await.into_iter().map(code).collect();
        assert!(refusals.contains(&ErrorCode::RateLimited), "{refusals:?}");
        // TTL zero: every call re-verifies, the remembered token without limits.
        auth.authenticate(&token, me).await.unwrap();
        // Forgotten (key deleted), it is limited like any other attempt.
        auth.forget_key(&key_id);
        assert_eq!(
            code(auth.authenticate(&token, me).await),
            ErrorCode::RateLimited
        );
    }
}
