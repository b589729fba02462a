//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted, pure Rust.
//!
//! Each backend has a *preference list* — a permutation of the `M` table slots
//! given by `offset + j * skip (mod M)` where `offset` and `skip` come from the
//! version-1 hashes of the backend's identity (see [`crate::hash`]). Backends
//! take turns claiming their next free preferred slot until the table is full.
//!
//! Determinism: backends are sorted by identity before population, so the
//! table depends only on the *set* of (identity, weight) pairs and `M` — not on
//! configuration order, process, host or release (as long as the hash version
//! is unchanged).
//!
//! Weights: in every round each backend earns `weight` credits and claims one
//! slot per `max_weight` credits it holds, so slot counts are proportional to
//! weights. Weight 0 (draining) or unhealthy backends get no slots.

use crate::hash::{hash64, MAGLEV_OFFSET_SEED, MAGLEV_SKIP_SEED};

/// Default table size: a prime, as Maglev requires.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
/// Slot value meaning "no backend".
pub const EMPTY: u32 = u32::MAX;

/// Why a table could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("table size {0} is not a prime")]
    NotPrime(u32),
    #[error("table size {size} is too small for {backends} backends (need at least 100 slots per backend)")]
    TooSmall { size: u32, backends: usize },
    #[error("duplicate backend identity {0:?}")]
    Duplicate(String),
}

/// One backend as the table builder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Stable identity hashed into the preference list (Vortex uses the
    /// backend's canonical IP address text, e.g. `10.0.0.11` or `fd00::11`).
    pub identity: String,
    /// Relative weight; 0 means "no new flows" (draining).
    pub weight: u32,
}

impl Member {
    pub fn new(identity: impl Into<String>, weight: u32) -> Self {
        Self {
            identity: identity.into(),
            weight,
        }
    }
}

/// Deterministic primality test (trial division; table sizes are small).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let n = u64::from(n);
    let mut d = 3u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// Check `size` against the Vortex rules: prime and ≥ 100 slots per backend.
pub fn validate_size(size: u32, backends: usize) -> Result<(), TableError> {
    if !is_prime(size) {
        return Err(TableError::NotPrime(size));
    }
    if (size as u64) < 100 * backends as u64 {
        return Err(TableError::TooSmall { size, backends });
    }
    Ok(())
}

/// Build a lookup table of `size` slots. Each slot holds the index of a member
/// *in the `members` slice as given*, or [`EMPTY`] if every weight is 0.
pub fn build(members: &[Member], size: u32) -> Result<Vec<u32>, TableError> {
    validate_size(size, members.len())?;
    let m = u64::from(size);

    // Sort (by identity) the members that take new flows.
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| members[a].identity.cmp(&members[b].identity));
    for w in order.windows(2) {
        if members[w[0]].identity == members[w[1]].identity {
            return Err(TableError::Duplicate(members[w[0]].identity.clone()));
        }
    }
    order.retain(|&i| members[i].weight > 0);

    let mut table = vec![EMPTY; size as usize];
    if order.is_empty() {
        return Ok(table);
    }
    let max_w = order
        .iter()
        .map(|&i| u64::from(members[i].weight))
        .max()
        .unwrap_or(1);
    struct Perm {
        idx: u32,
        offset: u64,
        skip: u64,
        next: u64,
        weight: u64,
        credit: u64,
    }
    let mut perms: Vec<Perm> = order
        .iter()
        .map(|&i| {
            let id = members[i].identity.as_bytes();
            Perm {
                idx: i as u32,
                offset: hash64(MAGLEV_OFFSET_SEED, id) % m,
                skip: hash64(MAGLEV_SKIP_SEED, id) % (m - 1) + 1,
                next: 0,
                weight: u64::from(members[i].weight),
                credit: 0,
            }
        })
        .collect();

    let mut filled = 0u64;
    loop {
        for p in perms.iter_mut() {
            p.credit += p.weight;
            while p.credit >= max_w {
                p.credit -= max_w;
                loop {
                    let c = ((p.offset + p.next * p.skip) % m) as usize;
                    p.next += 1;
                    if table[c] == EMPTY {
                        table[c] = p.idx;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    return Ok(table);
                }
            }
        }
    }
}

/// Number of slots owned by each member index (length `n`).
pub fn counts(table: &[u32], n: usize) -> Vec<usize> {
    let mut c = vec![0usize; n];
    for &e in table {
        if e != EMPTY {
            c[e as usize] += 1;
        }
    }
    c
}

/// Smallest prime ≥ `n`.
pub fn next_prime(mut n: u32) -> u32 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member::new(format!("10.0.{}.{}", i / 250, i % 250 + 1), 1))
            .collect()
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert!(is_prime(2));
        assert!(!is_prime(65_535));
        assert_eq!(next_prime(1000), 1009);
        assert_eq!(validate_size(65_536, 1), Err(TableError::NotPrime(65_536)));
        assert!(matches!(
            validate_size(1009, 11),
            Err(TableError::TooSmall { .. })
        ));
    }

    #[test]
    fn equal_weights_are_exact() {
        let t = build(&members(7), 65_537).unwrap();
        let c = counts(&t, 7);
        let (lo, hi) = (c.iter().min().unwrap(), c.iter().max().unwrap());
        assert!(hi - lo <= 1, "{c:?}");
    }

    #[test]
    fn weights_are_proportional() {
        let mut ms = members(3);
        ms[0].weight = 2;
        ms[2].weight = 0;
        let t = build(&ms, 65_537).unwrap();
        let c = counts(&t, 3);
        assert_eq!(c[2], 0);
        let ratio = c[0] as f64 / c[1] as f64;
        assert!((ratio - 2.0).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn all_drained_is_empty() {
        let ms = vec![Member::new("a", 0)];
        assert!(build(&ms, 101).unwrap().iter().all(|&e| e == EMPTY));
    }

    #[test]
    fn duplicates_rejected() {
        let ms = vec![Member::new("a", 1), Member::new("a", 1)];
        assert_eq!(build(&ms, 1009), Err(TableError::Duplicate("a".into())));
    }

    #[test]
    fn golden_table_prefix_v1() {
        // Pinned: any change here means the table (and so ECMP agreement across
        // releases) changed — bump HASH_VERSION and document it.
        let t = build(&members(3), 1009).unwrap();
        let prefix: Vec<u32> = t[..16].to_vec();
        assert_eq!(prefix, GOLDEN_PREFIX.to_vec(), "{prefix:?}");
    }
    const GOLDEN_PREFIX: [u32; 16] = [1, 1, 2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1];
}
