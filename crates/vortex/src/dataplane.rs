//! Loader and map access for the XDP program (`bpf/vortex.bpf.c`), via aya.
//!
//! Maps are pinned by name under a directory of bpffs
//! (`/sys/fs/bpf/yunhan-vortex-<name>`) and reused when they exist, so a
//! restarted daemon keeps the conntrack table, the backend ids it refers to and
//! the live Maglev tables. The XDP attachment is a bpf_link pinned in the same
//! directory: a new daemon atomically swaps its program into it.

// unsafe is needed for (1) `aya::Pod` impls on the #[repr(C)] structs shared
// with the C program (they are plain integers/arrays, no padding holes that the
// kernel would misread), and (2) the raw bpf(2) BPF_PROG_TEST_RUN call, which
// aya 0.13 does not wrap.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{SchedClassifier, TcAttachType, Xdp, XdpFlags};
use aya::{Ebpf, EbpfLoader};

use crate::error::VortexError;

/// The compiled XDP load balancer.
pub static VORTEX_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vortex.bpf.o"));
/// A program that only returns XDP_PASS (for veth peers, see `bpf/pass.bpf.c`).
pub static PASS_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pass.bpf.o"));

pub const PROGRAM: &str = "vortex_xdp";
/// The tc ingress program (NAT mode: it translates, the kernel's NAT is its slow path).
pub const TC_PROGRAM: &str = "vortex_tc";
pub const MAX_BACKENDS: u32 = 4096;
pub const DEFAULT_MAX_VIPS: u32 = 16;
pub const DEFAULT_CONNTRACK: u32 = 262_144;
pub const NO_BACKEND: u32 = u32::MAX;
pub const BE_ACTIVE: u8 = 0;
pub const BE_DOWN: u8 = 1;
pub const MODE_DSR: u8 = 0;
pub const MODE_VXLAN: u8 = 1;
pub const MODE_NAT: u8 = 2;
/// `VipInfo::flags`: hash the client address only.
pub const VIP_HASH_SOURCE: u32 = 1;

/// Indices of the `counters` map (mirror of the enum in `bpf/vortex.h`).
pub const COUNTER_NAMES: [&str; 14] = [
    "pass",
    "tx",
    "ct_hit",
    "ct_miss",
    "no_backend",
    "fragment",
    "malformed",
    "icmp_ptb",
    "encap_fail",
    "nat_mark",
    "nat_forward",
    "nat_reply",
    "nat_icmp",
    "nat_no_port",
];

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16, // network order (as stored)
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CtValue {
    pub backend: u32,
    pub vip: u32,
    /// NAT mode: the flow's translated source port (network order), 0 if none yet.
    pub nat_port: u16,
    pub pad: [u8; 6],
}

/// NAT mode: the port of one backend behind one VIP (`nat_targets`, keyed by
/// `vip index << 12 | backend id`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatTarget {
    pub port: u16, // network order
    pub pad: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr: [u8; 16],
    pub port: u16, // network order
    pub proto: u8,
    pub family: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VipInfo {
    pub index: u32,
    pub active_slot: u32,
    /// `VIP_HASH_SOURCE` or 0.
    pub flags: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub addr: [u8; 16],
    pub family: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendEntry {
    pub addr: [u8; 16],
    pub mac: [u8; 6],
    pub inner_mac: [u8; 6],
    pub family: u8,
    pub mode: u8,
    pub state: u8,
    pub pad: u8,
    pub tunnel_ip: [u8; 4],
    pub vni: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigEntry {
    pub ring_size: u32,
    pub vxlan_src: [u8; 4],
    pub nat_src: [u8; 4],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub packets: u64,
    pub bytes: u64,
}

// SAFETY: all of these are #[repr(C)] plain-old-data made of integers and byte
// arrays with explicit padding fields; any bit pattern is valid.
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for CtValue {}
unsafe impl aya::Pod for VipKey {}
unsafe impl aya::Pod for VipInfo {}
unsafe impl aya::Pod for AddrKey {}
unsafe impl aya::Pod for BackendEntry {}
unsafe impl aya::Pod for ConfigEntry {}
unsafe impl aya::Pod for Stat {}
unsafe impl aya::Pod for NatTarget {}

const _: () = assert!(std::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(std::mem::size_of::<VipKey>() == 20);
const _: () = assert!(std::mem::size_of::<BackendEntry>() == 40);
const _: () = assert!(std::mem::size_of::<CtValue>() == 16);

/// How to load the data plane.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// bpffs directory for the pinned maps and link.
    pub pin_dir: PathBuf,
    /// Maglev table size M (prime).
    pub table_size: u32,
    pub max_vips: u32,
    pub conntrack_size: u32,
    /// Outer source IPv4 address for VXLAN encapsulation.
    pub vxlan_source: std::net::Ipv4Addr,
    /// NAT mode: the source address flows are translated to (the interface's).
    pub nat_source: std::net::Ipv4Addr,
    /// Remove the pin directory when dropped (tests).
    pub ephemeral: bool,
    /// Which program runs: XDP (DSR/VXLAN) or tc (NAT marks).
    pub hook: Hook,
}

/// Where the data plane runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Hook {
    /// XDP on the interface (native driver mode, or generic with `skb_mode`).
    #[default]
    Xdp,
    /// tc ingress on the interface: packets to a VIP are translated by Vortex (NAT mode).
    Tc,
}

impl LoadOptions {
    pub fn new(pin_dir: impl Into<PathBuf>) -> Self {
        Self {
            pin_dir: pin_dir.into(),
            table_size: crate::maglev::DEFAULT_TABLE_SIZE,
            max_vips: DEFAULT_MAX_VIPS,
            conntrack_size: DEFAULT_CONNTRACK,
            vxlan_source: std::net::Ipv4Addr::UNSPECIFIED,
            nat_source: std::net::Ipv4Addr::UNSPECIFIED,
            ephemeral: false,
            hook: Hook::Xdp,
        }
    }
}

/// Result of one BPF_PROG_TEST_RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// XDP verdict (`XDP_DROP` = 1, `XDP_PASS` = 2, `XDP_TX` = 3), or tc's (`TC_ACT_OK` = 0,
    /// `TC_ACT_SHOT` = 2, `TC_ACT_REDIRECT` = 7).
    pub verdict: u32,
    /// The packet as the program left it.
    pub data: Vec<u8>,
    /// Average run time per repetition, in ns (kernel-measured).
    pub duration_ns: u32,
}

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_REDIRECT: u32 = 7;

/// The loaded program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    opts: LoadOptions,
    link: Option<PinnedLink>,
}

fn missing(name: &str) -> VortexError {
    VortexError::Invalid(format!("program {name} missing from object"))
}

/// Mount bpffs on /sys/fs/bpf if it is not mounted (needed for pinning).
pub fn ensure_bpffs() -> Result<(), VortexError> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let root = Path::new("/sys/fs/bpf");
    if let Ok(st) = statfs_type(root) {
        if st == BPF_FS_MAGIC {
            return Ok(());
        }
    }
    std::fs::create_dir_all(root).map_err(|e| VortexError::io("creating /sys/fs/bpf", e))?;
    let src = c"bpf";
    let dst = c"/sys/fs/bpf";
    // SAFETY: plain mount(2) with valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(VortexError::io(
            "mounting bpffs on /sys/fs/bpf",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn statfs_type(p: &Path) -> std::io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())?;
    // SAFETY: zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path pointer and out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> VortexError {
    move |source| VortexError::Map { map, source }
}

impl Dataplane {
    /// Load the program, creating or reusing the pinned maps in `opts.pin_dir`.
    pub fn load(opts: LoadOptions) -> Result<Self, VortexError> {
        crate::maglev::validate_size(opts.table_size, 0)?;
        ensure_bpffs()?;
        std::fs::create_dir_all(&opts.pin_dir)
            .map_err(|e| VortexError::io(format!("creating {}", opts.pin_dir.display()), e))?;
        let ring = u64::from(opts.max_vips) * 2 * u64::from(opts.table_size);
        let ring = u32::try_from(ring)
            .map_err(|_| VortexError::Capacity("max_vips * 2 * table_size exceeds u32".into()))?;
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(&opts.pin_dir)
            .set_max_entries("ring", ring)
            .set_max_entries("vips", opts.max_vips)
            .set_max_entries("vip_addrs", opts.max_vips)
            .set_max_entries("vip_stats", opts.max_vips)
            .set_max_entries("vip_reply_stats", opts.max_vips)
            .set_max_entries("vip_flows", opts.max_vips)
            .set_max_entries("conntrack", opts.conntrack_size)
            .set_max_entries("nat_rev", opts.conntrack_size)
            .load(VORTEX_OBJ)?;
        match opts.hook {
            Hook::Xdp => {
                let prog: &mut Xdp =
                    (ebpf.program_mut(PROGRAM).ok_or_else(|| missing(PROGRAM))?).try_into()?;
                prog.load()?;
            }
            Hook::Tc => {
                let prog: &mut SchedClassifier = (ebpf.program_mut(TC_PROGRAM))
                    .ok_or_else(|| missing(TC_PROGRAM))?
                    .try_into()?;
                prog.load()?;
            }
        }
        let mut dp = Self {
            ebpf,
            opts,
            link: None,
        };
        dp.write_config()?;
        Ok(dp)
    }

    pub fn options(&self) -> &LoadOptions {
        &self.opts
    }

    fn write_config(&mut self) -> Result<(), VortexError> {
        let cfg = ConfigEntry {
            ring_size: self.opts.table_size,
            vxlan_src: self.opts.vxlan_source.octets(),
            nat_src: self.opts.nat_source.octets(),
        };
        let mut a: Array<&mut MapData, ConfigEntry> =
            Array::try_from(self.map_mut("config")?).map_err(map_err("config"))?;
        a.set(0, cfg, 0).map_err(map_err("config"))
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, VortexError> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| VortexError::Invalid(format!("map {name} missing from object")))
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, VortexError> {
        self.ebpf
            .map(name)
            .ok_or_else(|| VortexError::Invalid(format!("map {name} missing from object")))
    }

    /// Attach to `iface` (native XDP unless `skb_mode`), or — if a link is
    /// already pinned from a previous run — atomically replace the program in
    /// that link, so traffic never sees a gap.
    pub fn attach(&mut self, iface: &str, skb_mode: bool) -> Result<(), VortexError> {
        let link_path = self.opts.pin_dir.join("link");
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| VortexError::Invalid("program missing".into()))?
            .try_into()?;
        if link_path.exists() {
            let pinned = PinnedLink::from_pin(&link_path).map_err(|e| VortexError::Pin {
                path: link_path.clone(),
                msg: e.to_string(),
            })?;
            let fd: FdLink = pinned.into();
            let xdp_link = aya::programs::xdp::XdpLink::try_from(fd)?;
            let id = prog.attach_to_link(xdp_link)?;
            // Keep the link alive past our exit: it stays pinned.
            let link = prog.take_link(id)?;
            let fd = FdLink::try_from(link)?;
            self.link = Some(
                PinnedLink::from_pin(&link_path).map_err(|e| VortexError::Pin {
                    path: link_path.clone(),
                    msg: e.to_string(),
                })?,
            );
            drop(fd);
            tracing::info!(iface, "replaced program in pinned XDP link (restart)");
            return Ok(());
        }
        let flags = if skb_mode {
            XdpFlags::SKB_MODE
        } else {
            XdpFlags::default()
        };
        let id = prog.attach(iface, flags)?;
        let link = prog.take_link(id)?;
        let fd = FdLink::try_from(link)?;
        let pinned = fd.pin(&link_path).map_err(|e| VortexError::Pin {
            path: link_path.clone(),
            msg: e.to_string(),
        })?;
        self.link = Some(pinned);
        tracing::info!(iface, "attached XDP program");
        Ok(())
    }

    /// Attach the tc program to `iface`'s ingress (NAT mode). It stays attached while
    /// this data plane lives: dropping it detaches.
    pub fn attach_tc(&mut self, iface: &str) -> Result<(), VortexError> {
        // Kernels with tcx (6.6+) need no qdisc; older ones need clsact (there already
        // is fine).
        if let Err(e) = aya::programs::tc::qdisc_add_clsact(iface) {
            tracing::debug!(iface, error = %e, "no clsact qdisc added");
        }
        let prog: &mut SchedClassifier = (self.ebpf.program_mut(TC_PROGRAM))
            .ok_or_else(|| missing(TC_PROGRAM))?
            .try_into()?;
        prog.attach(iface, TcAttachType::Ingress)?;
        tracing::info!(iface, "attached the tc program (ingress)");
        Ok(())
    }

    /// Detach from the interface and forget all pinned state (maps, link).
    pub fn destroy(mut self) -> Result<(), VortexError> {
        if let Some(l) = self.link.take() {
            let fd = l
                .unpin()
                .map_err(|e| VortexError::io("unpinning link", e))?;
            drop(fd);
        }
        let dir = self.opts.pin_dir.clone();
        drop(self);
        remove_pin_dir(&dir)
    }

    /// Run the loaded program (XDP, or tc with [`Hook::Tc`]) once (or `repeat` times) on
    /// `pkt` with BPF_PROG_TEST_RUN.
    pub fn test_run(&self, pkt: &[u8], repeat: u32) -> Result<TestRun, VortexError> {
        let name = match self.opts.hook {
            Hook::Xdp => PROGRAM,
            Hook::Tc => TC_PROGRAM,
        };
        let prog = (self.ebpf.program(name)).ok_or_else(|| missing(name))?;
        let fd = match self.opts.hook {
            Hook::Xdp => <&Xdp>::try_from(prog)?.fd()?.as_fd().as_raw_fd(),
            Hook::Tc => <&SchedClassifier>::try_from(prog)?
                .fd()?
                .as_fd()
                .as_raw_fd(),
        };
        prog_test_run(fd, pkt, repeat)
    }

    // ---------- maps ----------

    /// NAT mode: makes `nat_targets` hold exactly `targets`, (`vip index << 12 | backend
    /// id`, backend port) pairs.
    pub fn set_nat_targets(&mut self, targets: &[(u32, u16)]) -> Result<(), VortexError> {
        let mut h: HashMap<&mut MapData, u32, NatTarget> =
            HashMap::try_from(self.map_mut("nat_targets")?).map_err(map_err("nat_targets"))?;
        let stale: Vec<u32> = (h.keys().flatten())
            .filter(|k| !targets.iter().any(|(t, _)| t == k))
            .collect();
        for k in stale {
            h.remove(&k).map_err(map_err("nat_targets"))?;
        }
        for (key, port) in targets {
            let t = NatTarget {
                port: port.to_be(),
                pad: 0,
            };
            h.insert(key, t, 0).map_err(map_err("nat_targets"))?;
        }
        Ok(())
    }

    pub fn set_backend(&mut self, id: u32, e: &BackendEntry) -> Result<(), VortexError> {
        let mut a: Array<&mut MapData, BackendEntry> =
            Array::try_from(self.map_mut("backends")?).map_err(map_err("backends"))?;
        a.set(id, e, 0).map_err(map_err("backends"))
    }

    /// All backend slots that are in use (family != 0), by id.
    pub fn backends(&self) -> Result<Vec<(u32, BackendEntry)>, VortexError> {
        let a: Array<&MapData, BackendEntry> =
            Array::try_from(self.map("backends")?).map_err(map_err("backends"))?;
        let mut out = Vec::new();
        for (i, e) in a.iter().enumerate() {
            let e = e.map_err(map_err("backends"))?;
            if e.family != 0 {
                out.push((i as u32, e));
            }
        }
        Ok(out)
    }

    pub fn vips(&self) -> Result<Vec<(VipKey, VipInfo)>, VortexError> {
        let h: HashMap<&MapData, VipKey, VipInfo> =
            HashMap::try_from(self.map("vips")?).map_err(map_err("vips"))?;
        h.iter().map(|r| r.map_err(map_err("vips"))).collect()
    }

    pub fn set_vip(&mut self, k: &VipKey, v: &VipInfo) -> Result<(), VortexError> {
        let mut h: HashMap<&mut MapData, VipKey, VipInfo> =
            HashMap::try_from(self.map_mut("vips")?).map_err(map_err("vips"))?;
        h.insert(k, v, 0).map_err(map_err("vips"))
    }

    pub fn remove_vip(&mut self, k: &VipKey) -> Result<(), VortexError> {
        let mut h: HashMap<&mut MapData, VipKey, VipInfo> =
            HashMap::try_from(self.map_mut("vips")?).map_err(map_err("vips"))?;
        h.remove(k).map_err(map_err("vips"))
    }

    pub fn vip_addrs(&self) -> Result<Vec<AddrKey>, VortexError> {
        let h: HashMap<&MapData, AddrKey, u32> =
            HashMap::try_from(self.map("vip_addrs")?).map_err(map_err("vip_addrs"))?;
        h.keys().map(|r| r.map_err(map_err("vip_addrs"))).collect()
    }

    pub fn set_vip_addr(&mut self, k: &AddrKey, present: bool) -> Result<(), VortexError> {
        let mut h: HashMap<&mut MapData, AddrKey, u32> =
            HashMap::try_from(self.map_mut("vip_addrs")?).map_err(map_err("vip_addrs"))?;
        if present {
            h.insert(k, 1, 0).map_err(map_err("vip_addrs"))
        } else {
            match h.remove(k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                Err(e) => Err(map_err("vip_addrs")(e)),
            }
        }
    }

    /// Write a whole Maglev table (backend ids) into `slot` of VIP `vip_index`.
    pub fn write_table(
        &mut self,
        vip_index: u32,
        slot: u32,
        table: &[u32],
    ) -> Result<(), VortexError> {
        let m = self.opts.table_size;
        if table.len() != m as usize {
            return Err(VortexError::Invalid(format!(
                "table has {} slots, data plane expects {m}",
                table.len()
            )));
        }
        let base = (vip_index * 2 + (slot & 1)) * m;
        let mut a: Array<&mut MapData, u32> =
            Array::try_from(self.map_mut("ring")?).map_err(map_err("ring"))?;
        for (i, &b) in table.iter().enumerate() {
            a.set(base + i as u32, b, 0).map_err(map_err("ring"))?;
        }
        Ok(())
    }

    pub fn read_table(&self, vip_index: u32, slot: u32) -> Result<Vec<u32>, VortexError> {
        let m = self.opts.table_size;
        let base = (vip_index * 2 + (slot & 1)) * m;
        let a: Array<&MapData, u32> =
            Array::try_from(self.map("ring")?).map_err(map_err("ring"))?;
        (0..m)
            .map(|i| a.get(&(base + i), 0).map_err(map_err("ring")))
            .collect()
    }

    pub fn conntrack_get(&self, k: &FlowKey) -> Result<Option<CtValue>, VortexError> {
        let h: HashMap<&MapData, FlowKey, CtValue> =
            HashMap::try_from(self.map("conntrack")?).map_err(map_err("conntrack"))?;
        match h.get(k, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("conntrack")(e)),
        }
    }

    pub fn conntrack_len(&self) -> Result<usize, VortexError> {
        let h: HashMap<&MapData, FlowKey, CtValue> =
            HashMap::try_from(self.map("conntrack")?).map_err(map_err("conntrack"))?;
        Ok(h.keys().count())
    }

    pub fn clear_conntrack(&mut self) -> Result<(), VortexError> {
        let mut h: HashMap<&mut MapData, FlowKey, CtValue> =
            HashMap::try_from(self.map_mut("conntrack")?).map_err(map_err("conntrack"))?;
        let keys: Vec<FlowKey> = h.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = h.remove(&k);
        }
        Ok(())
    }

    fn sum_stats(&self, map: &'static str, idx: u32) -> Result<Stat, VortexError> {
        let a: PerCpuArray<&MapData, Stat> =
            PerCpuArray::try_from(self.map(map)?).map_err(map_err(map))?;
        let v = a.get(&idx, 0).map_err(map_err(map))?;
        Ok(v.iter().fold(Stat::default(), |acc, s| Stat {
            packets: acc.packets + s.packets,
            bytes: acc.bytes + s.bytes,
        }))
    }

    pub fn vip_stats(&self, vip_index: u32) -> Result<Stat, VortexError> {
        self.sum_stats("vip_stats", vip_index)
    }

    /// Members' answers translated back to clients of VIP `vip_index` (tc NAT mode).
    pub fn vip_reply_stats(&self, vip_index: u32) -> Result<Stat, VortexError> {
        self.sum_stats("vip_reply_stats", vip_index)
    }

    pub fn backend_stats(&self, id: u32) -> Result<Stat, VortexError> {
        self.sum_stats("backend_stats", id)
    }

    /// New flows balanced to VIP `vip_index` (summed over CPUs).
    pub fn vip_flows(&self, vip_index: u32) -> Result<u64, VortexError> {
        let a: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map("vip_flows")?).map_err(map_err("vip_flows"))?;
        let v = a.get(&vip_index, 0).map_err(map_err("vip_flows"))?;
        Ok(v.iter().sum())
    }

    /// Global counters summed over CPUs, by name (see [`COUNTER_NAMES`]).
    pub fn counters(&self) -> Result<Vec<(&'static str, u64)>, VortexError> {
        let a: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map("counters")?).map_err(map_err("counters"))?;
        COUNTER_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let v = a.get(&(i as u32), 0).map_err(map_err("counters"))?;
                Ok((*n, v.iter().sum()))
            })
            .collect()
    }

    pub fn counter(&self, name: &str) -> Result<u64, VortexError> {
        Ok(self
            .counters()?
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or(0))
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if self.opts.ephemeral {
            if let Some(l) = self.link.take() {
                let _ = l.unpin();
            }
            let _ = remove_pin_dir(&self.opts.pin_dir);
        }
    }
}

/// Remove a pin directory (unlinks every pin in it).
pub fn remove_pin_dir(dir: &Path) -> Result<(), VortexError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(VortexError::io(format!("removing {}", dir.display()), e)),
    }
}

/// Load the XDP_PASS program, attach it to `iface` in the current netns and
/// pin the link at `pin` so it outlives this process (remove the pin, or the
/// interface, to detach).
pub fn attach_pass_program(iface: &str, pin: &Path) -> Result<(), VortexError> {
    ensure_bpffs()?;
    let mut ebpf = Ebpf::load(PASS_OBJ)?;
    let prog: &mut Xdp = ebpf
        .program_mut("vortex_pass")
        .ok_or_else(|| VortexError::Invalid("vortex_pass missing".into()))?
        .try_into()?;
    prog.load()?;
    let id = prog.attach(iface, XdpFlags::default())?;
    let link = prog.take_link(id)?;
    let fd = FdLink::try_from(link)?;
    fd.pin(pin).map_err(|e| VortexError::Pin {
        path: pin.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

fn prog_test_run(fd: i32, pkt: &[u8], repeat: u32) -> Result<TestRun, VortexError> {
    let mut out = vec![0u8; pkt.len() + 512];
    let mut attr = TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: pkt.len() as u32,
        data_size_out: out.len() as u32,
        data_in: pkt.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix for
    // BPF_PROG_TEST_RUN; the in/out buffers outlive the call and the kernel
    // writes at most data_size_out bytes to `out`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if rc != 0 {
        return Err(VortexError::TestRun(std::io::Error::last_os_error()));
    }
    out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        verdict: attr.retval,
        data: out,
        duration_ns: attr.duration,
    })
}
