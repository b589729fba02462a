//! Parsing of `/proc/<pid>/maps` (pure) and the address-space queries hot patching needs.

/// One line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub offset: u64,
    pub inode: u64,
    /// Path or pseudo-name (`[stack]`, `[vdso]`); empty for anonymous mappings.
    pub path: String,
}

impl MapEntry {
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
    /// A file-backed mapping (not anonymous, not a `[pseudo]` one, not deleted).
    pub fn is_file(&self) -> bool {
        self.path.starts_with('/') && self.inode != 0 && !self.path.ends_with(" (deleted)")
    }
}

/// Parses one maps line; `None` for lines that do not have the expected shape.
pub fn parse_line(line: &str) -> Option<MapEntry> {
    // address perms offset dev inode [path]; the path may contain spaces.
    let mut rest = line;
    let mut field = || -> Option<&str> {
        let t = rest.trim_start();
        let end = t.find(' ').unwrap_or(t.len());
        let (f, r) = t.split_at(end);
        rest = r;
        if f.is_empty() {
            None
        } else {
            Some(f)
        }
    };
    let range = field()?;
    let perms = field()?;
    let offset = field()?;
    let _dev = field()?;
    let inode = field()?;
    let path = rest.trim_start().to_string();
    let (s, e) = range.split_once('-')?;
    let pb = perms.as_bytes();
    if pb.len() < 3 {
        return None;
    }
    Some(MapEntry {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        read: pb[0] == b'r',
        write: pb[1] == b'w',
        exec: pb[2] == b'x',
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        path,
    })
}

/// Parses a whole maps file, skipping malformed lines.
pub fn parse(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// A loaded object: a file with a mapping at file offset 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedObject {
    pub path: String,
    /// Address of the offset-0 mapping (the load base is this minus the ELF's first
    /// PT_LOAD page vaddr).
    pub map_start: u64,
    pub inode: u64,
}

/// Distinct loaded objects, in address-space order of first appearance.
pub fn objects(maps: &[MapEntry]) -> Vec<LoadedObject> {
    let mut out: Vec<LoadedObject> = Vec::new();
    for m in maps.iter().filter(|m| m.is_file() && m.offset == 0) {
        if out.iter().any(|o| o.path == m.path && o.inode == m.inode) {
            continue;
        }
        // Only count it if some mapping of the same file is executable (skips data files
        // mmapped by the program, e.g. locale archives).
        if maps
            .iter()
            .any(|x| x.path == m.path && x.inode == m.inode && x.exec)
        {
            out.push(LoadedObject {
                path: m.path.clone(),
                map_start: m.start,
                inode: m.inode,
            });
        }
    }
    out
}

/// The mapping containing `addr`.
pub fn find(maps: &[MapEntry], addr: u64) -> Option<&MapEntry> {
    maps.iter().find(|m| m.contains(addr))
}

/// Page-aligned candidate addresses for a `len`-byte mapping in the unmapped gaps of the
/// address space whose every byte is within `reach` of `near`, nearest first.
pub fn free_slots_near(maps: &[MapEntry], near: u64, len: u64, reach: u64) -> Vec<u64> {
    const PAGE: u64 = 4096;
    const LOW: u64 = 0x10000; // stay above vm.mmap_min_addr
    const HIGH: u64 = 0x7fff_ffff_f000; // top of the x86-64 user address space (4-level)
    let mut sorted: Vec<(u64, u64)> = maps.iter().map(|m| (m.start, m.end)).collect();
    sorted.sort_unstable();
    let mut gaps = Vec::new();
    let mut prev_end = LOW;
    for (s, e) in sorted {
        if s > prev_end {
            gaps.push((prev_end, s));
        }
        prev_end = prev_end.max(e);
    }
    if prev_end < HIGH {
        gaps.push((prev_end, HIGH));
    }
    let lo_ok = near.saturating_sub(reach);
    let hi_ok = near.saturating_add(reach);
    let mut out = Vec::new();
    for (gs, ge) in gaps {
        // Leave a guard page on each side so we never touch a neighbour's guard region.
        let gs = (gs + PAGE).div_ceil(PAGE) * PAGE;
        let ge = ge.saturating_sub(PAGE) & !(PAGE - 1);
        if ge < gs + len {
            continue;
        }
        let lo = gs.max(lo_ok.div_ceil(PAGE) * PAGE);
        let hi = ge.saturating_sub(len).min(hi_ok.saturating_sub(len)) & !(PAGE - 1);
        if lo > hi {
            continue;
        }
        // The point of [lo, hi] nearest to `near`.
        let best = if near < lo {
            lo
        } else if near > hi {
            hi
        } else {
            near & !(PAGE - 1)
        };
        out.push(best.clamp(lo, hi));
    }
    out.sort_by_key(|&a| a.abs_diff(near));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /tmp/x/target prog
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 1234 /tmp/x/target prog
55d0c1a3e000-55d0c1a5f000 rw-p 00000000 00:00 0 [heap]
7f1c2a000000-7f1c2a028000 r--p 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2a028000-7f1c2a1bd000 r-xp 00028000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2a300000-7f1c2a400000 r--p 00000000 08:01 77 /usr/lib/locale/locale-archive
7f1c2a500000-7f1c2a501000 r-xp 00000000 08:01 55 /tmp/gone.so (deleted)
7ffd1c5e0000-7ffd1c601000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn parses_sample() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 8);
        assert_eq!(m[0].start, 0x55d0c0a00000);
        assert_eq!(m[0].path, "/tmp/x/target prog");
        assert!(m[1].exec && !m[1].write);
        assert_eq!(m[1].offset, 0x1000);
        assert_eq!(m[7].path, "[stack]");
        let objs = objects(&m);
        let names: Vec<_> = objs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            names,
            ["/tmp/x/target prog", "/usr/lib/x86_64-linux-gnu/libc.so.6"]
        );
        assert_eq!(objs[1].map_start, 0x7f1c2a000000);
        assert_eq!(find(&m, 0x55d0c0a01004).unwrap().offset, 0x1000);
        assert!(find(&m, 0x10).is_none());
    }

    #[test]
    fn free_slot_is_in_a_gap_and_in_reach() {
        let m = parse(SAMPLE);
        let near = 0x55d0c0a01100;
        let slots = free_slots_near(&m, near, 4096, 0x7fff_0000);
        assert!(!slots.is_empty());
        for s in slots {
            assert_eq!(s % 4096, 0);
            assert!(s.abs_diff(near) <= 0x7fff_0000);
            assert!(m.iter().all(|e| s + 4096 <= e.start || s >= e.end));
        }
    }

    proptest! {
        #[test]
        fn roundtrip_formatted_lines(start in 0u64..0x7fff_0000_0000, len in 1u64..0x10000,
                                     off in 0u64..0xffff_ffff, inode in 0u64..1_000_000,
                                     r: bool, w: bool, x: bool,
                                     path in "(/[a-z0-9 ._-]{1,20}){0,3}") {
            let line = format!("{:x}-{:x} {}{}{}p {:08x} 08:01 {} {}", start, start + len,
                if r {'r'} else {'-'}, if w {'w'} else {'-'}, if x {'x'} else {'-'},
                off, inode, path);
            let e = parse_line(&line).unwrap();
            prop_assert_eq!(e.start, start);
            prop_assert_eq!(e.end, start + len);
            prop_assert_eq!((e.read, e.write, e.exec), (r, w, x));
            prop_assert_eq!(e.offset, off);
            prop_assert_eq!(e.inode, inode);
            prop_assert_eq!(e.path, path.trim_start().to_string());
        }

        #[test]
        fn free_slots_never_overlap(starts in proptest::collection::vec(0x10u64..0x7f_ffff, 0..20),
                                    near_page in 0x10u64..0x7f_ffff) {
            let maps: Vec<MapEntry> = starts.iter().map(|&p| MapEntry {
                start: p << 12, end: (p + 3) << 12, read: true, write: false, exec: false,
                offset: 0, inode: 0, path: String::new() }).collect();
            let near = near_page << 12;
            for s in free_slots_near(&maps, near, 4096, 1 << 30) {
                prop_assert!(s.abs_diff(near) <= 1 << 30);
                prop_assert!(maps.iter().all(|e| s + 4096 <= e.start || s >= e.end));
            }
        }
    }
}
