//! Address management inside one subnet.
//!
//! The network address, the broadcast address and the gateway (by default the first host
//! address, `.1` in a /24) are reserved. Allocation is next-fit from a cursor, so a freed
//! address is not handed out again until the subnet wraps around (fewer stale-ARP surprises).
//! The allocator is plain data: rebuild it from the addresses in use with [`Ipam::with_used`].
use crate::addr::Ipv4Cidr;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("subnet {0} is too small (the largest prefix is /{max})", max = MAX_PREFIX)]
    TooSmall(Ipv4Cidr),
    #[error("gateway {gateway} is not a usable address of {cidr}")]
    BadGateway { cidr: Ipv4Cidr, gateway: Ipv4Addr },
    #[error("subnet {0} has no free address")]
    Exhausted(Ipv4Cidr),
    #[error("{ip} is outside subnet {cidr}")]
    OutOfSubnet { cidr: Ipv4Cidr, ip: Ipv4Addr },
    #[error("{ip} is reserved in {cidr} (network, broadcast or gateway)")]
    Reserved { cidr: Ipv4Cidr, ip: Ipv4Addr },
    #[error("{0} is already allocated")]
    Taken(Ipv4Addr),
}

/// Longest prefix a subnet may have: a /29 leaves 5 addresses for ports.
pub const MAX_PREFIX: u8 = 29;

/// The allocator of one subnet.
#[derive(Debug, Clone)]
pub struct Ipam {
    cidr: Ipv4Cidr,
    gateway: Ipv4Addr,
    used: BTreeSet<u64>,
    cursor: u64,
}

impl Ipam {
    /// The default gateway of a subnet: its first host address.
    pub fn default_gateway(cidr: Ipv4Cidr) -> Ipv4Addr {
        cidr.nth(1).unwrap_or(cidr.network())
    }

    /// An empty allocator; `gateway` defaults to the first host address.
    pub fn new(cidr: Ipv4Cidr, gateway: Option<Ipv4Addr>) -> Result<Self, IpamError> {
        if cidr.prefix_len() > MAX_PREFIX {
            return Err(IpamError::TooSmall(cidr));
        }
        let gateway = gateway.unwrap_or_else(|| Self::default_gateway(cidr));
        match cidr.offset_of(gateway) {
            Some(o) if o != 0 && o != cidr.size() - 1 => {}
            _ => return Err(IpamError::BadGateway { cidr, gateway }),
        }
        Ok(Ipam {
            cidr,
            gateway,
            used: BTreeSet::new(),
            cursor: 1,
        })
    }

    /// An allocator with `used` already taken (e.g. rebuilt from the ports in the store).
    pub fn with_used(
        cidr: Ipv4Cidr,
        gateway: Option<Ipv4Addr>,
        used: impl IntoIterator<Item = Ipv4Addr>,
    ) -> Result<Self, IpamError> {
        let mut ipam = Ipam::new(cidr, gateway)?;
        for ip in used {
            ipam.allocate_fixed(ip)?;
        }
        Ok(ipam)
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Whether `ip` is the network, broadcast or gateway address.
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        ip == self.gateway || ip == self.cidr.network() || ip == self.cidr.broadcast()
    }

    /// Addresses that can still be allocated.
    pub fn available(&self) -> u64 {
        self.cidr.size() - 3 - self.used.len() as u64
    }

    pub fn is_allocated(&self, ip: Ipv4Addr) -> bool {
        self.cidr
            .offset_of(ip)
            .is_some_and(|o| self.used.contains(&o))
    }

    /// The next free address after the cursor (wrapping), or `Exhausted`.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, IpamError> {
        if self.available() == 0 {
            return Err(IpamError::Exhausted(self.cidr));
        }
        let size = self.cidr.size();
        let gw = self.cidr.offset_of(self.gateway).unwrap_or(0);
        let usable = |o: u64| o != 0 && o != size - 1 && o != gw;
        // Walk the gaps of `used` from the cursor; at most one wrap.
        let mut o = self.cursor.clamp(1, size - 2);
        for _ in 0..2 {
            while o < size - 1 {
                if usable(o) && !self.used.contains(&o) {
                    self.used.insert(o);
                    self.cursor = o + 1;
                    return Ok(self.cidr.nth(o).expect("offset inside the subnet"));
                }
                // Skip a run of used offsets quickly.
                o = match self.used.range(o..).next() {
                    Some(&u) if u == o => {
                        let mut next = o + 1;
                        for &u in self.used.range(o + 1..) {
                            if u != next {
                                break;
                            }
                            next += 1;
                        }
                        next
                    }
                    _ => o + 1,
                };
            }
            o = 1;
        }
        Err(IpamError::Exhausted(self.cidr))
    }

    /// Takes a specific address (a fixed IP).
    pub fn allocate_fixed(&mut self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let o = self.cidr.offset_of(ip).ok_or(IpamError::OutOfSubnet {
            cidr: self.cidr,
            ip,
        })?;
        if self.is_reserved(ip) {
            return Err(IpamError::Reserved {
                cidr: self.cidr,
                ip,
            });
        }
        if !self.used.insert(o) {
            return Err(IpamError::Taken(ip));
        }
        Ok(())
    }

    /// Releases an address; `false` if it was not allocated.
    pub fn free(&mut self, ip: Ipv4Addr) -> bool {
        self.cidr
            .offset_of(ip)
            .is_some_and(|o| self.used.remove(&o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn reserved_and_exhaustion() {
        let mut ipam = Ipam::new(c("10.0.0.0/29"), None).unwrap();
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ipam.available(), 5);
        let got: Vec<_> = (0..5).map(|_| ipam.allocate().unwrap()).collect();
        assert_eq!(got[0], Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 0, 0, 6));
        assert_eq!(ipam.allocate(), Err(IpamError::Exhausted(c("10.0.0.0/29"))));
        assert!(ipam.free(Ipv4Addr::new(10, 0, 0, 4)));
        assert!(!ipam.free(Ipv4Addr::new(10, 0, 0, 4)));
        assert_eq!(ipam.allocate().unwrap(), Ipv4Addr::new(10, 0, 0, 4));
    }

    #[test]
    fn fixed_addresses() {
        let mut ipam = Ipam::new(c("10.0.0.0/24"), None).unwrap();
        assert!(matches!(
            ipam.allocate_fixed(Ipv4Addr::new(10, 0, 0, 1)),
            Err(IpamError::Reserved { .. })
        ));
        assert!(matches!(
            ipam.allocate_fixed(Ipv4Addr::new(10, 0, 0, 255)),
            Err(IpamError::Reserved { .. })
        ));
        assert!(matches!(
            ipam.allocate_fixed(Ipv4Addr::new(10, 0, 1, 3)),
            Err(IpamError::OutOfSubnet { .. })
        ));
        ipam.allocate_fixed(Ipv4Addr::new(10, 0, 0, 2)).unwrap();
        assert_eq!(
            ipam.allocate_fixed(Ipv4Addr::new(10, 0, 0, 2)),
            Err(IpamError::Taken(Ipv4Addr::new(10, 0, 0, 2)))
        );
        assert_eq!(ipam.allocate().unwrap(), Ipv4Addr::new(10, 0, 0, 3));
        assert!(Ipam::new(c("10.0.0.0/30"), None).is_err());
        assert!(Ipam::new(c("10.0.0.0/24"), Some(Ipv4Addr::new(10, 0, 0, 0))).is_err());
        let custom = Ipam::new(c("10.0.0.0/24"), Some(Ipv4Addr::new(10, 0, 0, 254))).unwrap();
        assert!(custom.is_reserved(Ipv4Addr::new(10, 0, 0, 254)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc,
        Fixed(u16),
        Free(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Alloc),
            1 => any::<u16>().prop_map(Op::Fixed),
            2 => any::<u16>().prop_map(Op::Free),
        ]
    }

    proptest! {
        /// Any sequence of operations: never a duplicate, never outside the subnet, never a
        /// reserved address; exhaustion only when every usable address is taken.
        #[test]
        fn never_duplicates_or_reserved(
            base in any::<u32>(),
            len in 24u8..=29,
            gw_off in 1u64..6,
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let cidr = Ipv4Cidr::containing(Ipv4Addr::from(base), len);
            let gw = cidr.nth(gw_off).unwrap();
            let mut ipam = Ipam::new(cidr, Some(gw)).unwrap();
            let mut live: HashSet<Ipv4Addr> = HashSet::new();
            let usable = cidr.size() - 3;
            for op in ops {
                match op {
                    Op::Alloc => match ipam.allocate() {
                        Ok(ip) => {
                            prop_assert!(cidr.contains(ip));
                            prop_assert!(ip != gw && ip != cidr.network() && ip != cidr.broadcast());
                            prop_assert!(live.insert(ip), "duplicate {}", ip);
                        }
                        Err(IpamError::Exhausted(_)) => prop_assert_eq!(live.len() as u64, usable),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    },
                    Op::Fixed(o) => {
                        let ip = cidr.nth(u64::from(o) % cidr.size()).unwrap();
                        match ipam.allocate_fixed(ip) {
                            Ok(()) => prop_assert!(live.insert(ip)),
                            Err(IpamError::Taken(_)) => prop_assert!(live.contains(&ip)),
                            Err(IpamError::Reserved { .. }) => prop_assert!(ipam.is_reserved(ip)),
                            Err(e) => prop_assert!(false, "unexpected {e}"),
                        }
                    }
                    Op::Free(i) => {
                        if let Some(&ip) = live.iter().nth(usize::from(i) % live.len().max(1)) {
                            prop_assert!(ipam.free(ip));
                            live.remove(&ip);
                        }
                    }
                }
                prop_assert_eq!(ipam.available(), usable - live.len() as u64);
            }
        }
    }
}
