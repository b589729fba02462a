//! Applies the desired state (VIPs, backends, weights, health) to the data
//! plane with minimal disruption and atomic table swaps.
//!
//! * Backend ids are stable: recovered from the pinned `backends` map on start
//!   and never reassigned while a conntrack entry could still refer to them.
//! * Each VIP has two table slots; a new table is written into the inactive
//!   slot and made live by one update of the VIP's map entry (`active_slot`),
//!   so the data plane only ever sees a complete table.
//! * Draining / unhealthy / MAC-less backends get weight 0 in the Maglev build.
//!   Unhealthy and removed backends are also marked DOWN, which makes the data
//!   plane ignore their conntrack entries (those flows are re-hashed), whereas
//!   drained backends keep their existing flows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::dataplane::{
    AddrKey, BackendEntry, Dataplane, VipInfo, VipKey, BE_ACTIVE, BE_DOWN, MAX_BACKENDS, MODE_DSR,
    MODE_NAT, MODE_VXLAN, NO_BACKEND, VIP_HASH_SOURCE,
};
use crate::error::VortexError;
use crate::hash::addr_bytes;
use crate::maglev::{self, Member};

/// How packets reach a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Same L2: rewrite the destination MAC.
    Dsr,
    /// Across L3: VXLAN to `remote` (`mac` is then the next hop's MAC).
    Vxlan {
        remote: Ipv4Addr,
        vni: u32,
        inner_mac: [u8; 6],
    },
    /// tc: Vortex translates the packet to the backend's address and port (no MAC needed).
    Nat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    pub addr: IpAddr,
    /// None: not resolved yet (gets no new flows).
    pub mac: Option<[u8; 6]>,
    pub weight: u32,
    pub healthy: bool,
    pub forward: Forward,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredVip {
    pub addr: IpAddr,
    pub port: u16,
    pub proto: u8,
    /// Hash the client address only (source-IP persistence), not the 5-tuple.
    pub hash_source: bool,
    pub backends: Vec<DesiredBackend>,
}

impl DesiredVip {
    pub fn key(&self) -> VipKey {
        vip_key(self.addr, self.port, self.proto)
    }
}

pub fn vip_key(addr: IpAddr, port: u16, proto: u8) -> VipKey {
    VipKey {
        addr: addr_bytes(addr),
        port: port.to_be(),
        proto,
        family: family(addr),
    }
}

fn family(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        4
    } else {
        6
    }
}

/// What an [`Controller::apply`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// VIPs whose table was swapped.
    pub swapped: usize,
    pub vips: usize,
}

/// Owns the data plane and the id bookkeeping.
pub struct Controller {
    dp: Dataplane,
    backend_ids: HashMap<IpAddr, u32>,
    backend_entries: HashMap<u32, BackendEntry>,
    vips: HashMap<VipKey, VipInfo>,
    tables: HashMap<u32, Vec<u32>>,
}

impl Controller {
    /// Take over a (possibly pinned, previously used) data plane.
    pub fn new(dp: Dataplane) -> Result<Self, VortexError> {
        let mut backend_ids = HashMap::new();
        let mut backend_entries = HashMap::new();
        for (id, e) in dp.backends()? {
            let addr = if e.family == 4 {
                IpAddr::from([e.addr[0], e.addr[1], e.addr[2], e.addr[3]])
            } else {
                IpAddr::from(e.addr)
            };
            backend_ids.insert(addr, id);
            backend_entries.insert(id, e);
        }
        let mut vips = HashMap::new();
        let mut tables = HashMap::new();
        for (k, v) in dp.vips()? {
            tables.insert(v.index, dp.read_table(v.index, v.active_slot)?);
            vips.insert(k, v);
        }
        if !vips.is_empty() {
            tracing::info!(
                vips = vips.len(),
                backends = backend_ids.len(),
                "recovered pinned state"
            );
        }
        Ok(Self {
            dp,
            backend_ids,
            backend_entries,
            vips,
            tables,
        })
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    pub fn dataplane_mut(&mut self) -> &mut Dataplane {
        &mut self.dp
    }

    pub fn into_dataplane(self) -> Dataplane {
        self.dp
    }

    pub fn backend_id(&self, addr: IpAddr) -> Option<u32> {
        self.backend_ids.get(&addr).copied()
    }

    /// Whether the (possibly recovered) data plane has this backend marked DOWN.
    pub fn is_down(&self, addr: IpAddr) -> bool {
        self.backend_ids
            .get(&addr)
            .and_then(|id| self.backend_entries.get(id))
            .map(|e| e.state == BE_DOWN)
            .unwrap_or(false)
    }

    pub fn vip_info(&self, k: &VipKey) -> Option<VipInfo> {
        self.vips.get(k).copied()
    }

    fn alloc_backend(&mut self, addr: IpAddr) -> Result<u32, VortexError> {
        if let Some(id) = self.backend_ids.get(&addr) {
            return Ok(*id);
        }
        let used: HashSet<u32> = self.backend_ids.values().copied().collect();
        let id = (0..MAX_BACKENDS)
            .find(|i| !used.contains(i))
            .ok_or_else(|| VortexError::Capacity(format!("more than {MAX_BACKENDS} backends")))?;
        self.backend_ids.insert(addr, id);
        Ok(id)
    }

    fn alloc_vip(&self) -> Result<u32, VortexError> {
        let used: HashSet<u32> = self.vips.values().map(|v| v.index).collect();
        let max = self.dp.options().max_vips;
        (0..max).find(|i| !used.contains(i)).ok_or_else(|| {
            VortexError::Capacity(format!("more than {max} VIPs (raise --max-vips)"))
        })
    }

    fn write_backend(&mut self, id: u32, e: BackendEntry) -> Result<(), VortexError> {
        if self.backend_entries.get(&id) != Some(&e) {
            self.dp.set_backend(id, &e)?;
            self.backend_entries.insert(id, e);
        }
        Ok(())
    }

    /// Make the data plane serve exactly `desired`.
    pub fn apply(&mut self, desired: &[DesiredVip]) -> Result<ApplyReport, VortexError> {
        let m = self.dp.options().table_size;
        let mut report = ApplyReport {
            vips: desired.len(),
            ..Default::default()
        };

        // 1. Backends that can take traffic (UP in at least one VIP) are ACTIVE.
        let mut up: BTreeMap<IpAddr, (bool, &DesiredBackend)> = BTreeMap::new();
        for v in desired {
            for b in &v.backends {
                let e = up.entry(b.addr).or_insert((false, b));
                e.0 |= b.healthy;
            }
        }
        for (addr, (healthy, b)) in &up {
            let id = self.alloc_backend(*addr)?;
            let entry = backend_entry(b, if *healthy { BE_ACTIVE } else { BE_DOWN });
            if *healthy {
                self.write_backend(id, entry)?;
            }
        }

        // 2. Tables: build, write to the inactive slot, flip.
        let mut live_keys = HashSet::new();
        for v in desired {
            let key = v.key();
            live_keys.insert(key);
            let members: Vec<Member> = v
                .backends
                .iter()
                .map(|b| {
                    let reachable = b.mac.is_some() || b.forward == Forward::Nat;
                    let w = if b.healthy && reachable { b.weight } else { 0 };
                    Member::new(b.addr.to_string(), w)
                })
                .collect();
            let idx = maglev::build(&members, m)?;
            let ids: Vec<u32> = idx
                .iter()
                .map(|&i| {
                    if i == maglev::EMPTY {
                        NO_BACKEND
                    } else {
                        self.backend_ids[&v.backends[i as usize].addr]
                    }
                })
                .collect();
            let flags = if v.hash_source { VIP_HASH_SOURCE } else { 0 };
            let info = match self.vips.get(&key) {
                Some(i) => *i,
                None => VipInfo {
                    index: self.alloc_vip()?,
                    active_slot: 1, // so the first write goes to slot 0
                    flags,
                },
            };
            let fresh = !self.vips.contains_key(&key);
            if fresh || info.flags != flags || self.tables.get(&info.index) != Some(&ids) {
                let slot = info.active_slot ^ 1;
                self.dp.write_table(info.index, slot, &ids)?;
                let new = VipInfo {
                    index: info.index,
                    active_slot: slot,
                    flags,
                };
                self.dp.set_vip(&key, &new)?; // the atomic swap
                self.vips.insert(key, new);
                self.tables.insert(info.index, ids);
                report.swapped += 1;
            }
            self.dp.set_vip_addr(
                &AddrKey {
                    addr: addr_bytes(v.addr),
                    family: u32::from(family(v.addr)),
                },
                true,
            )?;
        }

        // 3. VIPs no longer configured.
        let stale: Vec<VipKey> = self
            .vips
            .keys()
            .filter(|k| !live_keys.contains(k))
            .copied()
            .collect();
        for k in stale {
            self.dp.remove_vip(&k)?;
            if let Some(i) = self.vips.remove(&k) {
                self.tables.remove(&i.index);
            }
        }
        let live_addrs: HashSet<AddrKey> = desired
            .iter()
            .map(|v| AddrKey {
                addr: addr_bytes(v.addr),
                family: u32::from(family(v.addr)),
            })
            .collect();
        for a in self.dp.vip_addrs()? {
            if !live_addrs.contains(&a) {
                self.dp.set_vip_addr(&a, false)?;
            }
        }

        // 4. Unhealthy and removed backends: DOWN (after the tables stopped using them).
        let ids: Vec<(IpAddr, u32)> = self.backend_ids.iter().map(|(a, i)| (*a, *i)).collect();
        for (addr, id) in ids {
            let healthy = up.get(&addr).map(|(h, _)| *h).unwrap_or(false);
            if !healthy {
                let mut e = match up.get(&addr) {
                    Some((_, b)) => backend_entry(b, BE_DOWN),
                    None => self.backend_entries.get(&id).copied().unwrap_or_default(),
                };
                e.state = BE_DOWN;
                if e.family == 0 {
                    e.family = family(addr);
                    e.addr = addr_bytes(addr);
                }
                self.write_backend(id, e)?;
            }
        }
        Ok(report)
    }
}

fn backend_entry(b: &DesiredBackend, state: u8) -> BackendEntry {
    let mut e = BackendEntry {
        addr: addr_bytes(b.addr),
        mac: b.mac.unwrap_or_default(),
        family: family(b.addr),
        state,
        mode: MODE_DSR,
        ..Default::default()
    };
    match b.forward {
        Forward::Vxlan {
            remote,
            vni,
            inner_mac,
        } => {
            e.mode = MODE_VXLAN;
            e.tunnel_ip = remote.octets();
            e.vni = vni;
            e.inner_mac = inner_mac;
        }
        Forward::Nat => e.mode = MODE_NAT,
        Forward::Dsr => {}
    }
    e
}
