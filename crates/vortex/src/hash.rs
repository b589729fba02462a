//! Vortex hash functions, **version 1** (`HASH_VERSION`).
//!
//! Every Vortex node, and every release that keeps `HASH_VERSION == 1`, must
//! compute exactly these functions: that is what makes two load balancers behind
//! one ECMP group send the same flow to the same backend. Changing any constant
//! or the byte order here is a new hash version (see `docs/vortex.md`).
//!
//! * [`hash64`] — used by the Maglev table builder on backend identities:
//!   FNV-1a 64 over the bytes, starting from `FNV_OFFSET ^ seed`, followed by the
//!   MurmurHash3 64-bit finaliser (`fmix64`) for avalanche.
//! * [`flow_hash`] — used by the XDP data plane (and mirrored here) on the
//!   5-tuple: MurmurHash3 x86_32 block mixing over ten little-endian 32-bit
//!   words with seed [`FLOW_SEED`], then `fmix32`. The C twin lives in
//!   `bpf/vortex.bpf.c` (`flow_hash_v1`); the fixture tests check they agree.

/// Version of the hash definitions in this module.
pub const HASH_VERSION: u32 = 1;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Seed for the Maglev "offset" hash of a backend identity.
pub const MAGLEV_OFFSET_SEED: u64 = 0x5956_5831_6f66_6673; // "YVX1offs"
/// Seed for the Maglev "skip" hash of a backend identity.
pub const MAGLEV_SKIP_SEED: u64 = 0x5956_5831_736b_6970; // "YVX1skip"
/// Seed of the flow hash.
pub const FLOW_SEED: u32 = 0x5956_5831; // "YVX1"

/// MurmurHash3 64-bit finaliser.
pub const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Seeded 64-bit hash of a byte string (FNV-1a 64 + fmix64).
pub fn hash64(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

/// MurmurHash3 32-bit finaliser.
pub const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// MurmurHash3 x86_32 over 32-bit words (no tail), length = 4 * words.len().
pub fn murmur3_words(seed: u32, words: &[u32]) -> u32 {
    let mut h = seed;
    for &w in words {
        let mut k = w.wrapping_mul(0xcc9e_2d51);
        k = k.rotate_left(15);
        k = k.wrapping_mul(0x1b87_3593);
        h ^= k;
        h = h.rotate_left(13);
        h = h.wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    h ^= (words.len() as u32).wrapping_mul(4);
    fmix32(h)
}

/// A flow as the data plane sees it: addresses as 16 raw network-order bytes
/// (IPv4 uses the first 4, the rest are zero), ports in network order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl FlowTuple {
    /// Build from std addresses (both must be the same family).
    pub fn new(
        src: std::net::IpAddr,
        dst: std::net::IpAddr,
        sport: u16,
        dport: u16,
        proto: u8,
    ) -> Self {
        Self {
            src: addr_bytes(src),
            dst: addr_bytes(dst),
            sport,
            dport,
            proto,
        }
    }

    /// The ten words hashed by [`flow_hash`]: src (4), dst (4),
    /// `sport_be | dport_be << 16` read as one little-endian word, proto.
    pub fn words(&self) -> [u32; 10] {
        let w = |b: &[u8; 16], i: usize| {
            u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        };
        let sp = self.sport.to_be_bytes();
        let dp = self.dport.to_be_bytes();
        [
            w(&self.src, 0),
            w(&self.src, 1),
            w(&self.src, 2),
            w(&self.src, 3),
            w(&self.dst, 0),
            w(&self.dst, 1),
            w(&self.dst, 2),
            w(&self.dst, 3),
            u32::from_le_bytes([sp[0], sp[1], dp[0], dp[1]]),
            u32::from(self.proto),
        ]
    }
}

/// Addresses as the data plane stores them (IPv4 in the first 4 bytes).
pub fn addr_bytes(a: std::net::IpAddr) -> [u8; 16] {
    match a {
        std::net::IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// Flow hash, version 1. The data plane indexes the Maglev table with
/// `flow_hash(t) % table_size`.
pub fn flow_hash(t: &FlowTuple) -> u32 {
    murmur3_words(FLOW_SEED, &t.words())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: if these change, the hash changed and HASH_VERSION must be bumped.
    #[test]
    fn golden_values_v1() {
        assert_eq!(HASH_VERSION, 1);
        // MurmurHash3 x86_32 reference: empty input, seed 0 → 0; seed 1 → 0x514E28B7.
        assert_eq!(murmur3_words(0, &[]), 0);
        assert_eq!(murmur3_words(1, &[]), 0x514e_28b7);
        let t = FlowTuple::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.1.1".parse().unwrap(),
            40000,
            80,
            6,
        );
        let h = flow_hash(&t);
        let h64 = hash64(MAGLEV_OFFSET_SEED, b"10.0.0.11");
        // Pinned after first computation; see docs/vortex.md.
        assert_eq!((h, h64), (GOLDEN_FLOW, GOLDEN_H64), "{h:#x} {h64:#x}");
    }

    const GOLDEN_FLOW: u32 = 0xe1b2_883e;
    const GOLDEN_H64: u64 = 0xfac0_dee8_00d2_9cc1;
}
