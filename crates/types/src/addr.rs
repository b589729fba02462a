//! IPv4 CIDR blocks and MAC addresses, serialised as their usual text forms, and the
//! VXLAN network identifier range.
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// An address parse error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("invalid CIDR {0:?} (want a.b.c.d/len with len 0..=32)")]
    Cidr(String),
    #[error("CIDR {0} has host bits set (network is {1})")]
    HostBits(String, String),
    #[error("invalid MAC address {0:?} (want six hex octets separated by ':')")]
    Mac(String),
}

/// An IPv4 network: a base address with no host bits set and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Cidr {
    /// A CIDR; fails if `len > 32` or `addr` has host bits set.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, AddrError> {
        if len > 32 {
            return Err(AddrError::Cidr(format!("{addr}/{len}")));
        }
        let c = Ipv4Cidr { addr, len };
        if c.network_u32() != u32::from(addr) {
            return Err(AddrError::HostBits(
                format!("{addr}/{len}"),
                format!("{}/{len}", Ipv4Addr::from(c.network_u32())),
            ));
        }
        Ok(c)
    }

    /// The CIDR containing `addr` with prefix `len` (host bits cleared).
    pub fn containing(addr: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        let mask = mask(len);
        Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
    fn network_u32(&self) -> u32 {
        u32::from(self.addr) & mask(self.len)
    }
    /// Number of addresses in the block (2^(32-len)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }
    /// The last address of the block.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network_u32() | !mask(self.len))
    }
    /// The `i`-th address of the block (`None` past the end).
    pub fn nth(&self, i: u64) -> Option<Ipv4Addr> {
        (i < self.size()).then(|| Ipv4Addr::from(self.network_u32().wrapping_add(i as u32)))
    }
    /// Offset of `ip` inside the block.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u64> {
        self.contains(ip)
            .then(|| u64::from(u32::from(ip) - self.network_u32()))
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == self.network_u32()
    }
    /// Whether `other` lies entirely inside `self`.
    pub fn contains_cidr(&self, other: &Ipv4Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
    /// Whether the two blocks share at least one address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let (a, l) = s.split_once('/').ok_or_else(|| AddrError::Cidr(s.into()))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| AddrError::Cidr(s.into()))?;
        let len: u8 = l.parse().map_err(|_| AddrError::Cidr(s.into()))?;
        Ipv4Cidr::new(addr, len)
    }
}

serde_as_text!(Ipv4Cidr);

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A locally administered unicast address derived from 5 bytes
    /// (first octet 0x02; `b` fill the rest).
    pub fn local(b: [u8; 5]) -> Self {
        MacAddr([0x02, b[0], b[1], b[2], b[3], b[4]])
    }
    /// A locally administered unicast MAC derived from a string key (stable hash).
    pub fn from_key(key: &str) -> Self {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(key.as_bytes());
        MacAddr::local([h[0], h[1], h[2], h[3], h[4]])
    }
    /// The MAC a shared VIP is announced with by default (keepalived `use_vmac`), from
    /// its id: the API shows it, the network compiler plans it.
    pub fn of_vip(vip_id: &str) -> Self {
        MacAddr::from_key(&format!("vip/{vip_id}"))
    }
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.len() != 2 {
                return Err(AddrError::Mac(s.into()));
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| AddrError::Mac(s.into()))?;
            n += 1;
        }
        if n != 6 {
            return Err(AddrError::Mac(s.into()));
        }
        Ok(MacAddr(out))
    }
}

serde_as_text!(MacAddr);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_display() {
        let c: Ipv4Cidr = "10.1.0.0/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.1.0.0/16");
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 1, 255, 255));
        assert!("10.1.0.1/16".parse::<Ipv4Cidr>().is_err());
        assert!("10.1.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.1.0.0".parse::<Ipv4Cidr>().is_err());
        let z: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains(Ipv4Addr::new(8, 8, 8, 8)));
        let m: MacAddr = "02:aa:00:01:ff:10".parse().unwrap();
        assert_eq!(m.to_string(), "02:aa:00:01:ff:10");
        assert!("02:aa:00:01:ff".parse::<MacAddr>().is_err());
        assert!("02:aa:00:01:ff:10:11".parse::<MacAddr>().is_err());
        assert!(!MacAddr::from_key("x").is_multicast());
    }

    fn cidr() -> impl Strategy<Value = Ipv4Cidr> {
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Cidr::containing(Ipv4Addr::from(a), l))
    }

    proptest! {
        /// Overlap is symmetric and agrees with a brute-force check on the endpoints.
        #[test]
        fn overlap_matches_intervals(a in cidr(), b in cidr()) {
            let (a0, a1) = (u32::from(a.network()), u32::from(a.broadcast()));
            let (b0, b1) = (u32::from(b.network()), u32::from(b.broadcast()));
            let brute = a0 <= b1 && b0 <= a1;
            prop_assert_eq!(a.overlaps(&b), brute);
            prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
        }

        #[test]
        fn roundtrip(a in cidr()) {
            let s = a.to_string();
            prop_assert_eq!(s.parse::<Ipv4Cidr>().unwrap(), a);
        }
    }
}
