//! argon2id with a bounded cost: at most `concurrency` hashes run at once, each
//! in one of `concurrency` memory buffers allocated once and reused. Waiting
//! requests hold no argon2 memory, so a storm of logins costs a fixed
//! `concurrency × 19 MiB` and `concurrency` cores, never more.

use std::sync::Mutex;

use argon2::password_hash::{
    rand_core::OsRng, Ident, Output, ParamsString, PasswordHash, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

/// A PHC string no secret matches: unknown key ids are checked against it, so
/// they cost (and take) as long as known ones and reveal nothing.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$\
    6e6e+7cBdD85YNX/pi0Vxg$ehzl5RHaWHsRuokENzkRHJfzG69gma0vfKoU1GWzRUw";

pub struct Argon2Pool {
    permits: Semaphore,
    memory: Mutex<Vec<Vec<Block>>>,
}

impl Argon2Pool {
    pub fn new(concurrency: usize) -> Self {
        Argon2Pool {
            permits: Semaphore::new(concurrency.max(1)),
            memory: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with a permit and a buffer of the default argon2 size, off the
    /// async workers. None if the blocking task failed.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Option<T> {
        let _permit = self.permits.acquire().await.ok()?;
        let reuse = self.memory.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut blocks =
            reuse.unwrap_or_else(|| vec![Block::default(); Params::default().block_count()]);
        let (out, blocks) = tokio::task::spawn_blocking(move || (f(&mut blocks), blocks))
            .await
            .ok()?;
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(blocks);
        Some(out)
    }

    /// Does `secret` match the PHC string `phc`? (false on any malformed input)
    pub async fn verify(&self, secret: String, phc: String) -> bool {
        self.run(move |mem| verify_in(mem, secret.as_bytes(), &phc))
            .await
            .unwrap_or(false)
    }

    /// The PHC string of `secret` with the default parameters and a fresh salt.
    pub async fn hash(&self, secret: String) -> Option<String> {
        let salt = SaltString::generate(&mut OsRng);
        self.run(move |mem| hash_in(mem, secret.as_bytes(), &salt))
            .await
            .flatten()
    }
}

fn verify_in(mem: &mut [Block], secret: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) =
        (Params::try_from(&hash), Algorithm::try_from(hash.algorithm))
    else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    // A hash needing more memory than the buffer fails (MemoryTooLittle):
    // every key is hashed with the defaults, so only a damaged one can.
    let hashed = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(secret, salt, &mut out, mem)
        .is_ok();
    // `Output`'s equality is constant-time.
    hashed && Output::new(&out).is_ok_and(|o| o == expected)
}

fn hash_in(mem: &mut [Block], secret: &[u8], salt: &SaltString) -> Option<String> {
    let params = Params::default();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).ok()?;
    let mut out = vec![0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(secret, salt_bytes, &mut out, mem)
        .ok()?;
    let hash = PasswordHash {
        algorithm: Ident::new("argon2id").ok()?,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).ok()?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).ok()?),
    };
    Some(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[tokio::test]
    async fn agrees_with_the_argon2_crate() {
        let pool = Argon2Pool::new(2);
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"s3cret", &salt)
            .unwrap()
            .to_string();
        assert!(pool.verify("s3cret".into(), theirs.clone()).await);
        assert!(!pool.verify("wrong".into(), theirs).await);
        let ours = pool.hash("s3cret".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .is_ok());
        assert!(!pool.verify("s3cret".into(), "not a hash".into()).await);
    }

    #[tokio::test]
    async fn the_dummy_hash_parses_and_matches_nothing() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(
            Params::try_from(&parsed).unwrap().block_count(),
            Params::default().block_count()
        );
        let pool = Argon2Pool::new(1);
        assert!(!pool.verify(String::new(), DUMMY_HASH.into()).await);
        assert!(!pool.verify("0".repeat(64), DUMMY_HASH.into()).await);
    }

    #[tokio::test]
    async fn buffers_are_reused_not_multiplied() {
        let pool = std::sync::Arc::new(Argon2Pool::new(2));
        let runs = (0..3).map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.verify("x".into(), DUMMY_HASH.into()).await })
        });
        for r in runs {
            assert!(!r.await.unwrap());
        }
        let buffers = pool.memory.lock().unwrap().len();
        assert!((1..=2).contains(&buffers), "{buffers} buffers");
    }
}
