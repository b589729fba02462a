//! A small, read-only ELF64 reader: just what hot patching needs (header checks, program
//! headers for load-base computation and static-binary detection, symbols from `.symtab` and
//! `.dynsym`, and raw section contents for the patch manifest). Pure: works on a byte slice.

use std::fmt;

pub const EM_X86_64: u16 = 62;
pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;
pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const SHT_NOBITS: u32 = 8;

/// Why a byte slice is not an ELF file we can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfError(pub String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, ElfError> {
    Err(ElfError(msg.into()))
}

/// The ELF symbol type (`STT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SymType {
    NoType,
    Object,
    Func,
    Section,
    File,
    Common,
    Tls,
    GnuIfunc,
    Other(u8),
}

impl SymType {
    fn from_info(info: u8) -> SymType {
        match info & 0xf {
            0 => SymType::NoType,
            1 => SymType::Object,
            2 => SymType::Func,
            3 => SymType::Section,
            4 => SymType::File,
            5 => SymType::Common,
            6 => SymType::Tls,
            10 => SymType::GnuIfunc,
            n => SymType::Other(n),
        }
    }
}

impl fmt::Display for SymType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymType::NoType => f.write_str("NOTYPE"),
            SymType::Object => f.write_str("OBJECT"),
            SymType::Func => f.write_str("FUNC"),
            SymType::Section => f.write_str("SECTION"),
            SymType::File => f.write_str("FILE"),
            SymType::Common => f.write_str("COMMON"),
            SymType::Tls => f.write_str("TLS"),
            SymType::GnuIfunc => f.write_str("GNU_IFUNC"),
            SymType::Other(n) => write!(f, "STT_{n}"),
        }
    }
}

/// A defined symbol (undefined ones are dropped while parsing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    /// `st_value`: a link-time virtual address (add the load base for ET_DYN).
    pub value: u64,
    pub size: u64,
    pub sym_type: SymType,
    /// STB_GLOBAL or STB_WEAK (as opposed to STB_LOCAL).
    pub global: bool,
    /// Found in `.dynsym` (exported) rather than only in `.symtab`.
    pub dynamic: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    pub p_type: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

#[derive(Debug, Clone)]
struct Section {
    name: String,
    sh_type: u32,
    size: u64,
}

/// A parsed ELF file.
#[derive(Debug, Clone)]
pub struct Elf {
    pub class64: bool,
    pub machine: u16,
    pub e_type: u16,
    pub program_headers: Vec<ProgramHeader>,
    pub symbols: Vec<Symbol>,
    sections: Vec<(Section, Vec<u8>)>,
}

fn rd_u16(b: &[u8], off: usize) -> Result<u16, ElfError> {
    match b.get(off..off + 2) {
        Some(s) => Ok(u16::from_le_bytes([s[0], s[1]])),
        None => bad("truncated ELF file"),
    }
}
fn rd_u32(b: &[u8], off: usize) -> Result<u32, ElfError> {
    match b.get(off..off + 4) {
        Some(s) => Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        None => bad("truncated ELF file"),
    }
}
fn rd_u64(b: &[u8], off: usize) -> Result<u64, ElfError> {
    match b.get(off..off + 8) {
        Some(s) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            Ok(u64::from_le_bytes(a))
        }
        None => bad("truncated ELF file"),
    }
}
fn slice(b: &[u8], off: u64, len: u64) -> Result<&[u8], ElfError> {
    let start = usize::try_from(off).map_err(|_| ElfError("offset overflow".into()))?;
    let len = usize::try_from(len).map_err(|_| ElfError("size overflow".into()))?;
    match start.checked_add(len).and_then(|end| b.get(start..end)) {
        Some(s) => Ok(s),
        None => bad("section or segment lies outside the file"),
    }
}
fn cstr(b: &[u8], off: usize) -> String {
    let tail = b.get(off..).unwrap_or(&[]);
    let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

/// Only the header: enough to refuse a non-x86-64 target without reading the whole file.
pub fn header_machine(b: &[u8]) -> Result<(bool, u16), ElfError> {
    if b.len() < 20 || &b[..4] != b"\x7fELF" {
        return bad("not an ELF file");
    }
    if b[5] != 1 {
        return bad("big-endian ELF is not supported");
    }
    Ok((b[4] == 2, rd_u16(b, 18)?))
}

impl Elf {
    /// Parses an ELF file. ELF32 files parse (header only) so callers can refuse them with
    /// a precise message; their symbols and program headers are left empty.
    pub fn parse(b: &[u8]) -> Result<Elf, ElfError> {
        Elf::parse_with(b, true)
    }

    /// Header and program headers only (cheap, even for a large executable).
    pub fn parse_headers(b: &[u8]) -> Result<Elf, ElfError> {
        Elf::parse_with(b, false)
    }

    fn parse_with(b: &[u8], full: bool) -> Result<Elf, ElfError> {
        let (class64, machine) = header_machine(b)?;
        let e_type = rd_u16(b, 16)?;
        let mut elf = Elf {
            class64,
            machine,
            e_type,
            program_headers: Vec::new(),
            symbols: Vec::new(),
            sections: Vec::new(),
        };
        if !class64 {
            return Ok(elf);
        }
        let phoff = rd_u64(b, 32)? as usize;
        let shoff = rd_u64(b, 40)? as usize;
        let phentsize = rd_u16(b, 54)? as usize;
        let phnum = rd_u16(b, 56)? as usize;
        let shentsize = rd_u16(b, 58)? as usize;
        let shnum = rd_u16(b, 60)? as usize;
        let shstrndx = rd_u16(b, 62)? as usize;
        if phnum > 0 && phentsize < 56 {
            return bad("bad program header size");
        }
        for i in 0..phnum {
            let o = phoff + i * phentsize;
            elf.program_headers.push(ProgramHeader {
                p_type: rd_u32(b, o)?,
                offset: rd_u64(b, o + 8)?,
                vaddr: rd_u64(b, o + 16)?,
                filesz: rd_u64(b, o + 32)?,
                memsz: rd_u64(b, o + 40)?,
            });
        }
        if !full || shnum == 0 || shoff == 0 {
            return Ok(elf);
        }
        if shentsize < 64 {
            return bad("bad section header size");
        }
        struct RawSh {
            name: u32,
            sh_type: u32,
            offset: u64,
            size: u64,
            link: u32,
        }
        let mut raw = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let o = shoff + i * shentsize;
            raw.push(RawSh {
                name: rd_u32(b, o)?,
                sh_type: rd_u32(b, o + 4)?,
                offset: rd_u64(b, o + 24)?,
                size: rd_u64(b, o + 32)?,
                link: rd_u32(b, o + 40)?,
            });
        }
        let shstr: &[u8] = match raw.get(shstrndx) {
            Some(s) if s.sh_type != SHT_NOBITS => slice(b, s.offset, s.size)?,
            _ => &[],
        };
        for sh in &raw {
            let name = cstr(shstr, sh.name as usize);
            // Keep only small, non-debug section contents (the manifest lives in one).
            let keep = sh.sh_type != SHT_NOBITS
                && sh.sh_type != SHT_SYMTAB
                && !name.starts_with(".debug")
                && !name.starts_with(".zdebug")
                && sh.size <= 1 << 20;
            let data = if keep {
                slice(b, sh.offset, sh.size)?.to_vec()
            } else {
                Vec::new()
            };
            elf.sections.push((
                Section {
                    name,
                    sh_type: sh.sh_type,
                    size: sh.size,
                },
                data,
            ));
        }
        // .dynsym first so that `dynamic` is known; .symtab adds the local/static ones.
        let mut exported: std::collections::HashSet<(String, u64)> = Default::default();
        for want in [SHT_DYNSYM, SHT_SYMTAB] {
            for sh in raw.iter().filter(|s| s.sh_type == want) {
                let strtab = match raw.get(sh.link as usize) {
                    Some(s) => slice(b, s.offset, s.size)?,
                    None => return bad("symbol table without string table"),
                };
                let data = slice(b, sh.offset, sh.size)?;
                for ent in data.chunks_exact(24) {
                    let shndx = u16::from_le_bytes([ent[6], ent[7]]);
                    let name = cstr(strtab, rd_u32(ent, 0)? as usize);
                    if shndx == 0 || name.is_empty() {
                        continue; // undefined or anonymous
                    }
                    let info = ent[4];
                    let sym = Symbol {
                        name,
                        value: rd_u64(ent, 8)?,
                        size: rd_u64(ent, 16)?,
                        sym_type: SymType::from_info(info),
                        global: matches!(info >> 4, 1 | 2),
                        dynamic: want == SHT_DYNSYM,
                    };
                    if want == SHT_DYNSYM {
                        exported.insert((sym.name.clone(), sym.value));
                    } else if exported.contains(&(sym.name.clone(), sym.value)) {
                        continue;
                    }
                    elf.symbols.push(sym);
                }
            }
        }
        Ok(elf)
    }

    /// A program without PT_INTERP has no dynamic loader, so there is no `dlopen` to call.
    pub fn is_static(&self) -> bool {
        !self.program_headers.iter().any(|p| p.p_type == PT_INTERP)
    }

    /// Contents of the first section with this name.
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(s, _)| s.name == name)
            .map(|(_, d)| d.as_slice())
    }

    /// Whether a section with this name exists (even if empty).
    pub fn has_section(&self, name: &str) -> bool {
        self.sections
            .iter()
            .any(|(s, _)| s.name == name && s.size > 0)
    }

    /// The link-time address that the mapping with file offset 0 corresponds to; the load
    /// base of an object is `start of its offset-0 mapping - first_load_vaddr()`.
    pub fn first_load_vaddr(&self) -> u64 {
        self.program_headers
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.vaddr.wrapping_sub(p.offset) & !0xfff)
            .min()
            .unwrap_or(0)
    }

    /// Looks up a defined symbol, preferring global/weak over local definitions and
    /// `.dynsym` (what the dynamic linker binds to) over `.symtab`.
    pub fn lookup(&self, name: &str) -> Option<&Symbol> {
        self.symbols
            .iter()
            .filter(|s| s.name == name && s.sym_type != SymType::Section)
            .max_by_key(|s| (s.global, s.dynamic, std::cmp::Reverse(s.value)))
    }

    /// Whether `.symtab` was present (the file is not stripped). Used only for messages.
    pub fn has_symtab(&self) -> bool {
        self.sections.iter().any(|(s, _)| s.sh_type == SHT_SYMTAB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf_and_truncated() {
        assert!(Elf::parse(b"hello").is_err());
        assert!(Elf::parse(b"\x7fELF\x02\x01\x01").is_err());
    }

    #[test]
    fn reads_machine_of_foreign_header() {
        // A minimal ELF32 ARM header: class 1, little-endian, e_machine = 40 (EM_ARM).
        let mut h = vec![0u8; 52];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 1;
        h[5] = 1;
        h[16] = 2;
        h[18] = 40;
        let e = Elf::parse(&h).unwrap();
        assert!(!e.class64);
        assert_eq!(e.machine, 40);
    }

    #[test]
    fn parses_own_test_binary_headers() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let e = Elf::parse_headers(&exe).unwrap();
        assert!(e.class64);
        assert_eq!(e.machine, EM_X86_64);
        assert!(!e.is_static());
        assert!(e.symbols.is_empty());
    }

    #[test]
    fn parses_libc_dynsym() {
        let Ok(b) = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6") else {
            return;
        };
        let e = Elf::parse(&b).unwrap();
        assert_eq!(e.e_type, ET_DYN);
        let s = e.lookup("dlopen").or_else(|| e.lookup("malloc")).unwrap();
        assert_eq!(s.sym_type, SymType::Func);
        assert!(s.size > 0 && s.global && s.dynamic);
        let errno = e.lookup("errno");
        assert!(errno.is_none_or(|s| s.sym_type == SymType::Tls));
        assert!(!e.is_static());
        assert!(e.first_load_vaddr() == 0);
    }
}
