//! /proc access: process identity, memory, address space, loaded objects and symbols.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::elf::{self, Elf, SymType};
use crate::error::HotpatchError;
use crate::maps::{self, LoadedObject, MapEntry};

fn io_err(pid: i32, path: &Path, e: std::io::Error) -> HotpatchError {
    match e.kind() {
        std::io::ErrorKind::NotFound => HotpatchError::ProcessNotFound { pid },
        std::io::ErrorKind::PermissionDenied => HotpatchError::PermissionDenied {
            pid,
            detail: format!("{}: {e}", path.display()),
        },
        _ => HotpatchError::io(path, e),
    }
}

/// The process start time (clock ticks since boot, field 22 of /proc/<pid>/stat): together
/// with the pid it identifies a process across pid reuse.
pub fn start_time(pid: i32) -> Result<u64, HotpatchError> {
    if pid <= 0 {
        return Err(HotpatchError::ProcessNotFound { pid });
    }
    let p = PathBuf::from(format!("/proc/{pid}/stat"));
    let s = std::fs::read_to_string(&p).map_err(|e| io_err(pid, &p, e))?;
    parse_start_time(&s).ok_or_else(|| HotpatchError::io(&p, std::io::Error::other("unparsable")))
}

pub fn parse_start_time(stat: &str) -> Option<u64> {
    // "pid (comm) S ppid ..." — comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub fn read_maps(pid: i32) -> Result<Vec<MapEntry>, HotpatchError> {
    let p = PathBuf::from(format!("/proc/{pid}/maps"));
    let s = std::fs::read_to_string(&p).map_err(|e| io_err(pid, &p, e))?;
    Ok(maps::parse(&s))
}

/// /proc/<pid>/mem, opened read-write. Writes go through the kernel's FOLL_FORCE path, so
/// read-only text pages are written copy-on-write without mprotect in the target.
pub struct Mem {
    pid: i32,
    file: File,
}

impl Mem {
    pub fn open(pid: i32) -> Result<Mem, HotpatchError> {
        let p = PathBuf::from(format!("/proc/{pid}/mem"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| io_err(pid, &p, e))?;
        Ok(Mem { pid, file })
    }

    fn err(&self, addr: u64, e: std::io::Error) -> HotpatchError {
        HotpatchError::io(format!("/proc/{}/mem @ {addr:#x}", self.pid), e)
    }

    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, HotpatchError> {
        let mut b = vec![0u8; len];
        self.file
            .read_exact_at(&mut b, addr)
            .map_err(|e| self.err(addr, e))?;
        Ok(b)
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), HotpatchError> {
        self.file
            .write_all_at(data, addr)
            .map_err(|e| self.err(addr, e))
    }

    /// Reads a NUL-terminated string (at most `max` bytes).
    pub fn read_cstr(&self, addr: u64, max: usize) -> String {
        let mut out = Vec::new();
        let mut chunk = [0u8; 64];
        while out.len() < max {
            let a = addr + out.len() as u64;
            let n = match self.file.read_at(&mut chunk, a) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(z) = chunk[..n].iter().position(|&c| c == 0) {
                out.extend_from_slice(&chunk[..z]);
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Checks that the target can be patched at all: an x86-64, dynamically linked program.
pub fn check_target(pid: i32) -> Result<(), HotpatchError> {
    let p = PathBuf::from(format!("/proc/{pid}/exe"));
    let bytes = std::fs::read(&p).map_err(|e| io_err(pid, &p, e))?;
    let unsupported = |reason: String| HotpatchError::UnsupportedTarget { pid, reason };
    let (class64, machine) = elf::header_machine(&bytes).map_err(|e| unsupported(e.0))?;
    if !class64 || machine != elf::EM_X86_64 {
        return Err(unsupported(format!(
            "its executable is {} with e_machine {machine}, only x86-64 (ELF64, e_machine 62) is supported",
            if class64 { "ELF64" } else { "ELF32" }
        )));
    }
    let e = Elf::parse_headers(&bytes).map_err(|e| unsupported(e.0))?;
    if e.is_static() {
        return Err(unsupported(
            "it is statically linked (no PT_INTERP): there is no dynamic loader to load a patch library with".into(),
        ));
    }
    Ok(())
}

/// A loaded object with its parsed ELF and load base.
pub struct LoadedElf {
    pub path: String,
    pub inode: u64,
    pub base: u64,
    pub elf: Elf,
}

/// Path through which the target's file can be read from our mount namespace.
fn host_path(pid: i32, path: &str) -> PathBuf {
    let via_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
    if via_root.exists() {
        via_root
    } else {
        PathBuf::from(path)
    }
}

pub fn parse_file(path: &Path) -> Result<Elf, HotpatchError> {
    let bytes = std::fs::read(path).map_err(|e| HotpatchError::io(path, e))?;
    Elf::parse(&bytes).map_err(|e| HotpatchError::Elf {
        path: path.to_path_buf(),
        reason: e.0,
    })
}

pub fn load_object(pid: i32, o: &LoadedObject) -> Result<LoadedElf, HotpatchError> {
    let elf = parse_file(&host_path(pid, &o.path))?;
    let base = if elf.e_type == elf::ET_DYN {
        o.map_start.wrapping_sub(elf.first_load_vaddr())
    } else {
        0
    };
    Ok(LoadedElf {
        path: o.path.clone(),
        inode: o.inode,
        base,
        elf,
    })
}

/// Loaded objects with the main executable first, then libraries in address order: the
/// order in which the dynamic linker searches for a global symbol.
pub fn objects_in_search_order(pid: i32, m: &[MapEntry]) -> Vec<LoadedObject> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let mut objs = maps::objects(m);
    if let Some(exe) = exe {
        if let Some(i) = objs.iter().position(|o| o.path == exe) {
            let e = objs.remove(i);
            objs.insert(0, e);
        }
    }
    objs
}

/// A symbol resolved to a run-time address in the target.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub object: String,
    pub addr: u64,
    pub size: u64,
    pub sym_type: SymType,
}

/// Lazily parsed objects of one target (parsing libc costs a few milliseconds; do it once).
pub struct Objects {
    pid: i32,
    list: Vec<LoadedObject>,
    parsed: Vec<Option<LoadedElf>>,
}

pub fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

impl Objects {
    pub fn new(pid: i32, m: &[MapEntry]) -> Objects {
        let list = objects_in_search_order(pid, m);
        let parsed = list.iter().map(|_| None).collect();
        Objects { pid, list, parsed }
    }

    pub fn list(&self) -> &[LoadedObject] {
        &self.list
    }

    pub fn get(&mut self, i: usize) -> Result<&LoadedElf, HotpatchError> {
        if self.parsed[i].is_none() {
            self.parsed[i] = Some(load_object(self.pid, &self.list[i])?);
        }
        Ok(self.parsed[i].as_ref().expect("just parsed"))
    }

    /// Finds a defined symbol. `object`: restrict to objects whose basename starts with it.
    /// `skip`: objects to ignore (the patch library itself).
    pub fn find(
        &mut self,
        name: &str,
        object: Option<&str>,
        skip: &dyn Fn(&LoadedObject) -> bool,
    ) -> Result<Option<Resolved>, HotpatchError> {
        for i in 0..self.list.len() {
            let o = &self.list[i];
            if skip(o) {
                continue;
            }
            if let Some(q) = object {
                if !basename(&o.path).starts_with(q) && o.path != q {
                    continue;
                }
            }
            let le = match self.get(i) {
                Ok(le) => le,
                Err(_) => continue, // unreadable object: cannot hold our symbol
            };
            if let Some(s) = le.elf.lookup(name) {
                return Ok(Some(Resolved {
                    name: name.to_string(),
                    object: le.path.clone(),
                    addr: le.base.wrapping_add(s.value),
                    size: s.size,
                    sym_type: s.sym_type,
                }));
            }
        }
        Ok(None)
    }

    /// Index of the first object whose basename starts with one of `prefixes`.
    pub fn position(&self, prefixes: &[&str]) -> Option<usize> {
        prefixes.iter().find_map(|p| {
            self.list
                .iter()
                .position(|o| basename(&o.path).starts_with(p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_with_odd_comm() {
        let stat =
            "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn self_process() {
        let pid = std::process::id() as i32;
        assert!(start_time(pid).unwrap() > 0);
        check_target(pid).unwrap();
        let m = read_maps(pid).unwrap();
        let mut objs = Objects::new(pid, &m);
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(objs.list()[0].path, exe.to_string_lossy());
        // A libc function resolves to the address our own process uses for it.
        let r = objs
            .find("getpid", Some("libc"), &|_| false)
            .unwrap()
            .unwrap();
        assert_eq!(r.sym_type, SymType::Func);
        assert!(r.object.contains("libc") && r.addr > 0, "{r:?}");
        assert!(objs
            .find("no_such_symbol_xyz", None, &|_| false)
            .unwrap()
            .is_none());
        assert!(matches!(
            start_time(-5),
            Err(HotpatchError::ProcessNotFound { .. })
        ));
    }
}
