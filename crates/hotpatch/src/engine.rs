//! apply / list / revert.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::elf::{self, SymType};
use crate::error::HotpatchError;
use crate::inject::Hijack;
use crate::jump::{self, JumpKind, PlanError};
use crate::manifest::{self, Mapping, MappingError, MappingSource};
use crate::maps::{self, MapEntry};
use crate::procfs::{self, Mem, Objects, Resolved};
use crate::ptrace::AllStopped;
use crate::state::{self, Locked, PatchRecord};

/// Default number of attempts to find every thread outside the bytes being rewritten.
pub const DEFAULT_ATTEMPTS: u32 = 100;
/// How long stopping all threads may take before we give up (threads in D state).
const STOP_DEADLINE: Duration = Duration::from_secs(2);
const RTLD_NOW: u64 = 2;
const RELAY_PAGE: u64 = 4096;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub pid: i32,
    pub patch: PathBuf,
    /// `old=new` overrides; empty: use the manifest / naming convention.
    pub maps: Vec<String>,
    /// Allow a relay trampoline near the old function when the new one is out of rel32
    /// reach; otherwise use the 14-byte absolute jump.
    pub allow_relay: bool,
    pub attempts: u32,
    pub state_dir: PathBuf,
}

impl ApplyOptions {
    pub fn new(pid: i32, patch: impl Into<PathBuf>) -> ApplyOptions {
        ApplyOptions {
            pid,
            patch: patch.into(),
            maps: Vec::new(),
            allow_relay: true,
            attempts: DEFAULT_ATTEMPTS,
            state_dir: state::default_dir(),
        }
    }
}

/// Timing of one stop-the-world window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StopStats {
    /// Time every thread was stopped in the successful attempt (first interrupt to last
    /// detach), microseconds.
    pub stop_us: u64,
    /// Time the process was entirely frozen (last thread stopped to first thread resumed),
    /// microseconds. The rest of `stop_us` is spent waiting for threads to reach their
    /// stop, which on a busy host is mostly scheduler latency.
    pub frozen_us: u64,
    /// Attempts needed (1 = no thread was in the way).
    pub attempts: u32,
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub pid: i32,
    pub patch: PathBuf,
    pub mapping_source: MappingSource,
    /// Whether this apply loaded the library (false: it was already loaded).
    pub loaded: bool,
    /// How long the one hijacked thread was held to run dlopen/mmap, microseconds.
    pub load_us: u64,
    pub stop: StopStats,
    pub patches: Vec<PatchRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevertReport {
    pub pid: i32,
    pub stop: StopStats,
    pub reverted: Vec<PatchRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    #[serde(flatten)]
    pub record: PatchRecord,
    /// `active`: the jump is in place; `modified`: the bytes no longer match.
    pub status: &'static str,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One planned rewrite of an old function's entry.
struct Site {
    addr: u64,
    bytes: Vec<u8>,
    /// Addresses that must hold no thread's pc: `(addr, addr + len)` plus the relay.
    busy: Vec<(u64, u64)>,
    label: String,
}

fn site_busy(sites: &[Site], stopped: &AllStopped) -> Option<String> {
    for t in &stopped.threads {
        for pc in t.pcs() {
            for s in sites {
                if s.busy.iter().any(|&(lo, hi)| lo < pc && pc < hi) {
                    return Some(s.label.clone());
                }
            }
        }
    }
    None
}

/// Stops every thread, checks that none is inside the bytes to rewrite (retrying a bounded
/// number of times), writes all sites, and lets the process go. Returns the original bytes.
fn stop_and_write(
    pid: i32,
    mem: &Mem,
    sites: &[Site],
    expect: &[Vec<u8>],
    attempts: u32,
) -> Result<(Vec<Vec<u8>>, StopStats), HotpatchError> {
    let mut busy_label = String::new();
    for attempt in 1..=attempts.max(1) {
        let t0 = Instant::now();
        let stopped = AllStopped::stop(pid, Instant::now() + STOP_DEADLINE)?;
        if let Some(l) = site_busy(sites, &stopped) {
            stopped.resume();
            busy_label = l;
            // Let the thread move on; back off a little more each time.
            if attempt < 10 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(100 * u64::from(attempt.min(50))));
            }
            continue;
        }
        let mut originals = Vec::with_capacity(sites.len());
        for (s, exp) in sites.iter().zip(expect) {
            let cur = mem.read(s.addr, s.bytes.len())?;
            if &cur != exp {
                return Err(HotpatchError::Modified {
                    symbol: s.label.clone(),
                    addr: s.addr,
                });
            }
            originals.push(cur);
        }
        for s in sites {
            mem.write(s.addr, &s.bytes)?;
        }
        let threads = stopped.threads.len();
        let frozen_us = stopped.stopped_at.elapsed().as_micros() as u64;
        stopped.resume();
        let stop_us = t0.elapsed().as_micros() as u64;
        // Read back after resuming (not part of the stop window).
        for s in sites {
            if mem.read(s.addr, s.bytes.len())? != s.bytes {
                return Err(HotpatchError::Modified {
                    symbol: s.label.clone(),
                    addr: s.addr,
                });
            }
        }
        return Ok((
            originals,
            StopStats {
                stop_us,
                frozen_us,
                attempts: attempt,
                threads,
            },
        ));
    }
    Err(HotpatchError::Busy {
        pid,
        symbol: busy_label,
        attempts,
    })
}

fn same_file(a: &Path, obj: &maps::LoadedObject) -> bool {
    use std::os::unix::fs::MetadataExt;
    let name = a.file_name().unwrap_or_default().to_string_lossy();
    obj.path == a.to_string_lossy()
        || (procfs::basename(&obj.path) == name
            && std::fs::metadata(a).is_ok_and(|m| m.ino() == obj.inode))
}

struct Planned {
    mapping: Mapping,
    old: Resolved,
    new_sym: elf::Symbol,
}

/// Applies a patch library to a running process.
pub fn apply(opts: &ApplyOptions) -> Result<ApplyReport, HotpatchError> {
    let pid = opts.pid;
    if cfg!(not(all(target_os = "linux", target_arch = "x86_64"))) {
        return Err(HotpatchError::UnsupportedPlatform);
    }
    let start_time = procfs::start_time(pid)?;
    procfs::check_target(pid)?;

    // The patch library, read from disk: everything that can be refused is refused before
    // the target is touched.
    let patch =
        std::fs::canonicalize(&opts.patch).map_err(|e| HotpatchError::io(&opts.patch, e))?;
    let pelf = procfs::parse_file(&patch)?;
    if !pelf.class64 || pelf.machine != elf::EM_X86_64 || pelf.e_type != elf::ET_DYN {
        return Err(HotpatchError::Elf {
            path: patch.clone(),
            reason: "not an x86-64 shared library (build it with -shared -fPIC)".into(),
        });
    }
    let (mappings, source) =
        manifest::resolve(&opts.maps, &pelf).map_err(HotpatchError::BadMapping)?;
    if mappings.is_empty() {
        return Err(HotpatchError::NoMapping { path: patch });
    }

    let mut lock = Locked::open(&opts.state_dir, pid, start_time)?;
    let mut m = procfs::read_maps(pid)?;
    let is_patch = |o: &maps::LoadedObject| same_file(&patch, o);
    let mut objs = Objects::new(pid, &m);

    let mut planned = Vec::new();
    for mp in &mappings {
        let where_ = match &mp.old_object {
            Some(o) => format!("objects named {o}* of process {pid}"),
            None => format!("the executable or loaded libraries of process {pid}"),
        };
        let old = objs
            .find(&mp.old, mp.old_object.as_deref(), &is_patch)?
            .ok_or_else(|| HotpatchError::SymbolNotFound {
                symbol: mp.old.clone(),
                place: where_,
            })?;
        let new_sym = pelf
            .lookup(&mp.new)
            .filter(|s| s.dynamic)
            .cloned()
            .ok_or_else(|| HotpatchError::SymbolNotFound {
                symbol: mp.new.clone(),
                place: format!("the exported symbols of {}", patch.display()),
            })?;
        if new_sym.sym_type != old.sym_type {
            return Err(HotpatchError::SymbolTypeMismatch {
                old: mp.old_display(),
                old_type: old.sym_type.to_string(),
                new: mp.new.clone(),
                new_type: new_sym.sym_type.to_string(),
            });
        }
        if old.sym_type != SymType::Func {
            return Err(HotpatchError::BadMapping(MappingError::NotAFunction {
                old: mp.old_display(),
                kind: old.sym_type.to_string(),
            }));
        }
        if old.size < jump::REL32_LEN as u64 {
            return Err(HotpatchError::FunctionTooShort {
                symbol: mp.old_display(),
                size: old.size,
                needed: jump::REL32_LEN,
            });
        }
        if let Some(r) = lock.state.patches.iter().find(|r| r.old_addr == old.addr) {
            return Err(HotpatchError::AlreadyPatched {
                symbol: mp.old_display(),
                patch: if r.patch == patch {
                    "this same patch".into()
                } else {
                    r.patch.display().to_string()
                },
                new: r.new_symbol.clone(),
            });
        }
        planned.push(Planned {
            mapping: mp.clone(),
            old,
            new_sym,
        });
    }

    // Load the library (unless already loaded) and place relays, with one thread hijacked.
    let mut hijack: Option<Hijack> = None;
    let mut loaded = false;
    let mut patch_base = objs
        .list()
        .iter()
        .find(|o| is_patch(o))
        .map(|o| o.map_start.wrapping_sub(pelf.first_load_vaddr()));
    if let Some(base) = patch_base {
        // Already loaded (e.g. applied, reverted, applied again). If an entry already jumps
        // to its new function, the state was lost: refuse rather than stack patches.
        let mem = Mem::open(pid)?;
        for p in &planned {
            let cur = mem.read(p.old.addr, jump::ABS64_LEN.min(p.old.size as usize))?;
            if let Some((_, t)) = jump::decode(p.old.addr, &cur) {
                let new = base.wrapping_add(p.new_sym.value);
                let via_relay = mem
                    .read(t, jump::ABS64_LEN)
                    .ok()
                    .and_then(|b| jump::decode(t, &b))
                    .map(|(_, t2)| t2);
                if t == new || via_relay == Some(new) {
                    return Err(HotpatchError::AlreadyPatched {
                        symbol: p.mapping.old_display(),
                        patch: patch.display().to_string(),
                        new: p.mapping.new.clone(),
                    });
                }
            }
        }
    }
    if patch_base.is_none() {
        let (dlopen, flags) = find_dlopen(&mut objs, pid)?;
        let mut h = Hijack::new(pid, &m)?;
        let mut path = patch.as_os_str().as_encoded_bytes().to_vec();
        path.push(0);
        let path_addr = h.push_data(&path)?;
        let handle = h.call(dlopen, &[path_addr, RTLD_NOW | flags])?;
        if handle == 0 {
            let message = match objs.find("dlerror", None, &|_| false)? {
                Some(de) => {
                    let p = h.call(de.addr, &[])?;
                    if p == 0 {
                        "unknown error".into()
                    } else {
                        h.mem().read_cstr(p, 1024)
                    }
                }
                None => "dlopen returned NULL".into(),
            };
            return Err(HotpatchError::DlopenFailed {
                pid,
                path: patch,
                message,
            });
        }
        loaded = true;
        m = procfs::read_maps(pid)?;
        let po = maps::objects(&m)
            .into_iter()
            .find(|o| is_patch(o))
            .ok_or_else(|| HotpatchError::DlopenFailed {
                pid,
                path: patch.clone(),
                message: "dlopen succeeded but the library is not in /proc/pid/maps".into(),
            })?;
        patch_base = Some(po.map_start.wrapping_sub(pelf.first_load_vaddr()));
        hijack = Some(h);
    }
    let patch_base = patch_base.expect("set above");

    // Plan the jumps.
    let mem = Mem::open(pid)?;
    let mut sites = Vec::new();
    let mut expect = Vec::new();
    let mut records = Vec::new();
    for p in &planned {
        let new_addr = patch_base.wrapping_add(p.new_sym.value);
        let mut kind = match jump::choose(p.old.addr, p.old.size, new_addr, opts.allow_relay) {
            Ok(k) => k,
            Err(PlanError::TooShort { size, needed }) => {
                return Err(HotpatchError::FunctionTooShort {
                    symbol: p.mapping.old_display(),
                    size,
                    needed,
                })
            }
        };
        let mut relay_addr = None;
        if kind == JumpKind::Relay {
            // A 16-byte slot within rel32 reach of the old function: one that already
            // jumps to the new function, else a free one, else one in a newly mapped page.
            let target = jump::encode_abs64(new_addr);
            let mut slot = None;
            for pg in &lock.state.relay_pages {
                for i in 0..pg.used {
                    let a = pg.addr + i * 16;
                    if jump::rel32_disp(p.old.addr, a).is_some()
                        && mem.read(a, target.len()).is_ok_and(|b| b == target)
                    {
                        slot = Some(a);
                    }
                }
            }
            if slot.is_none() {
                if let Some(pg) = lock.state.relay_pages.iter_mut().find(|pg| {
                    pg.used < RELAY_PAGE / 16
                        && jump::rel32_disp(p.old.addr, pg.addr + pg.used * 16).is_some()
                }) {
                    slot = Some(pg.addr + pg.used * 16);
                    pg.used += 1;
                }
            }
            if slot.is_none() {
                if hijack.is_none() {
                    hijack = Some(Hijack::new(pid, &m)?);
                }
                let h = hijack.as_mut().expect("set");
                if let Some(pg) = map_relay_page(h, &mut objs, &m, p.old.addr)? {
                    lock.state
                        .relay_pages
                        .push(state::RelayPage { addr: pg, used: 1 });
                    m = procfs::read_maps(pid)?;
                    slot = Some(pg);
                }
            }
            match slot {
                Some(a) => {
                    mem.write(a, &jump::encode_abs64(new_addr))?;
                    relay_addr = Some(a);
                }
                None if p.old.size >= jump::ABS64_LEN as u64 => kind = JumpKind::Abs64,
                None => {
                    return Err(HotpatchError::FunctionTooShort {
                        symbol: p.mapping.old_display(),
                        size: p.old.size,
                        needed: jump::ABS64_LEN,
                    })
                }
            }
        }
        let bytes: Vec<u8> = match kind {
            JumpKind::Rel32 => jump::encode_rel32(p.old.addr, new_addr)
                .expect("in reach")
                .to_vec(),
            JumpKind::Relay => jump::encode_rel32(p.old.addr, relay_addr.expect("relay"))
                .expect("relay in reach")
                .to_vec(),
            JumpKind::Abs64 => jump::encode_abs64(new_addr).to_vec(),
        };
        let len = bytes.len() as u64;
        let mut busy = vec![(p.old.addr, p.old.addr + len)];
        if let Some(r) = relay_addr {
            busy.push((r.wrapping_sub(1), r + jump::ABS64_LEN as u64));
        }
        expect.push(mem.read(p.old.addr, bytes.len())?);
        sites.push(Site {
            addr: p.old.addr,
            bytes: bytes.clone(),
            busy,
            label: p.mapping.old_display(),
        });
        records.push(PatchRecord {
            old_symbol: p.mapping.old_display(),
            old_object: p.old.object.clone(),
            old_addr: p.old.addr,
            old_size: p.old.size,
            sym_type: p.old.sym_type,
            new_symbol: p.mapping.new.clone(),
            new_addr,
            patch: patch.clone(),
            kind,
            relay_addr,
            original: String::new(),
            written: state::hex(&bytes),
            applied_at: now_unix(),
            stop_us: 0,
        });
    }
    let load_us = match hijack {
        Some(h) => h.release().as_micros() as u64,
        None => 0,
    };

    let (originals, stop) = match stop_and_write(pid, &mem, &sites, &expect, opts.attempts) {
        Ok(x) => x,
        Err(e) => {
            // Remember relay pages we mapped, so that a retry reuses them.
            let _ = lock.save();
            return Err(e);
        }
    };
    for (r, o) in records.iter_mut().zip(&originals) {
        r.original = state::hex(o);
        r.stop_us = stop.stop_us;
    }
    lock.state.patches.extend(records.iter().cloned());
    lock.save()?;
    Ok(ApplyReport {
        pid,
        patch,
        mapping_source: source,
        loaded,
        load_us,
        stop,
        patches: records,
    })
}

/// The target's `dlopen` (glibc ≥ 2.34: in libc; older: libdl), or glibc's internal
/// `__libc_dlopen_mode` when the program does not link libdl.
fn find_dlopen(objs: &mut Objects, pid: i32) -> Result<(u64, u64), HotpatchError> {
    if let Some(r) = objs.find("dlopen", None, &|_| false)? {
        if r.sym_type == SymType::Func {
            return Ok((r.addr, 0));
        }
    }
    if let Some(r) = objs.find("__libc_dlopen_mode", None, &|_| false)? {
        return Ok((r.addr, 0x8000_0000)); // __RTLD_DLOPEN
    }
    Err(HotpatchError::UnsupportedTarget {
        pid,
        reason: "no dlopen found in the process (not a glibc program?)".into(),
    })
}

/// Maps one read+exec page within rel32 reach of `near` by calling the target's `mmap`.
fn map_relay_page(
    h: &mut Hijack,
    objs: &mut Objects,
    m: &[MapEntry],
    near: u64,
) -> Result<Option<u64>, HotpatchError> {
    let Some(mmap) = objs.find("mmap", Some("libc"), &|_| false)? else {
        return Ok(None);
    };
    const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
    let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64 | MAP_FIXED_NOREPLACE;
    // Keep well inside ±2 GiB so every slot of the page is in reach.
    for cand in maps::free_slots_near(m, near, RELAY_PAGE, (1 << 31) - 2 * RELAY_PAGE)
        .into_iter()
        .take(8)
    {
        let r = h.call(mmap.addr, &[cand, RELAY_PAGE, prot, flags, u64::MAX, 0])?;
        if r == cand {
            return Ok(Some(r));
        }
        if r != u64::MAX && (r as i64) > 0 {
            // An old kernel ignoring MAP_FIXED_NOREPLACE put it elsewhere: accept only if
            // still in reach.
            if jump::rel32_disp(near, r).is_some() && jump::rel32_disp(near, r + 16 * 255).is_some()
            {
                return Ok(Some(r));
            }
        }
    }
    Ok(None)
}

/// What is applied to a process (records whose process is gone or was replaced are
/// dropped).
pub fn list(pid: i32, state_dir: &Path) -> Result<Vec<ListEntry>, HotpatchError> {
    let start_time = procfs::start_time(pid)?;
    let lock = Locked::open(state_dir, pid, start_time)?;
    if lock.state.patches.is_empty() {
        lock.save()?; // removes a stale file left by an earlier process with this pid
        return Ok(Vec::new());
    }
    let mem = Mem::open(pid)?;
    Ok(lock
        .state
        .patches
        .iter()
        .map(|r| {
            let w = state::unhex(&r.written).unwrap_or_default();
            let active = mem.read(r.old_addr, w.len()).is_ok_and(|b| b == w);
            ListEntry {
                record: r.clone(),
                status: if active { "active" } else { "modified" },
            }
        })
        .collect())
}

#[derive(Debug, Clone)]
pub struct RevertOptions {
    pub pid: i32,
    /// Only patches of this old function (as listed).
    pub func: Option<String>,
    /// Only patches from this library.
    pub patch: Option<PathBuf>,
    pub attempts: u32,
    pub state_dir: PathBuf,
}

impl RevertOptions {
    pub fn new(pid: i32) -> RevertOptions {
        RevertOptions {
            pid,
            func: None,
            patch: None,
            attempts: DEFAULT_ATTEMPTS,
            state_dir: state::default_dir(),
        }
    }
}

/// Restores the original bytes of the selected patches. The patch library stays loaded
/// (a thread may still be executing its code), as do relay pages.
pub fn revert(opts: &RevertOptions) -> Result<RevertReport, HotpatchError> {
    let pid = opts.pid;
    let start_time = procfs::start_time(pid)?;
    let mut lock = Locked::open(&opts.state_dir, pid, start_time)?;
    let want_patch = opts
        .patch
        .as_ref()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    let selected: Vec<usize> = (0..lock.state.patches.len())
        .filter(|&i| {
            let r = &lock.state.patches[i];
            opts.func.as_ref().is_none_or(|f| {
                r.old_symbol == *f || r.old_symbol.rsplit(':').next() == Some(f.as_str())
            }) && want_patch.as_ref().is_none_or(|p| r.patch == *p)
        })
        .collect();
    if selected.is_empty() {
        let mut filter = String::new();
        if let Some(f) = &opts.func {
            filter += &format!(" for function {f}");
        }
        if let Some(p) = &opts.patch {
            filter += &format!(" from {}", p.display());
        }
        return Err(HotpatchError::NotApplied { pid, filter });
    }
    let mem = Mem::open(pid)?;
    let mut sites = Vec::new();
    let mut expect = Vec::new();
    for &i in &selected {
        let r = &lock.state.patches[i];
        let bad = || HotpatchError::State {
            path: lock.path().to_path_buf(),
            reason: format!("corrupt record for {}", r.old_symbol),
        };
        let written = state::unhex(&r.written).ok_or_else(bad)?;
        let original = state::unhex(&r.original).ok_or_else(bad)?;
        if written.len() != original.len() {
            return Err(bad());
        }
        let mut busy = vec![(r.old_addr, r.old_addr + written.len() as u64)];
        if let Some(a) = r.relay_addr {
            busy.push((a.wrapping_sub(1), a + jump::ABS64_LEN as u64));
        }
        sites.push(Site {
            addr: r.old_addr,
            bytes: original,
            busy,
            label: r.old_symbol.clone(),
        });
        expect.push(written);
    }
    let (_, stop) = stop_and_write(pid, &mem, &sites, &expect, opts.attempts)?;
    let mut reverted = Vec::new();
    for &i in selected.iter().rev() {
        reverted.push(lock.state.patches.remove(i));
    }
    reverted.reverse();
    lock.save()?;
    Ok(RevertReport {
        pid,
        stop,
        reverted,
    })
}
