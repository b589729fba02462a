//! Which old function is replaced by which new one (pure).
//!
//! Sources, in order of precedence:
//! 1. `--map old=new` on the command line;
//! 2. a `.yunhan_hotpatch` section in the patch library holding `old=new` entries separated
//!    by newlines or NUL bytes (`#` starts a comment), e.g. in C:
//!    `__attribute__((used, section(".yunhan_hotpatch"))) static const char m[] = "func=func_v2\n";`
//! 3. the naming convention: every global function `NAME_vN` (N a number) exported by the
//!    patch library replaces `NAME`; if several versions exist the highest N wins.
//!
//! `old` may be qualified with the object that defines it: `libfoo.so.1:func`.

use crate::elf::{Elf, SymType};

pub const MANIFEST_SECTION: &str = ".yunhan_hotpatch";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mapping {
    /// Object the old symbol must come from (basename, or a prefix of it), if qualified.
    pub old_object: Option<String>,
    pub old: String,
    pub new: String,
}

impl Mapping {
    pub fn old_display(&self) -> String {
        match &self.old_object {
            Some(o) => format!("{o}:{}", self.old),
            None => self.old.clone(),
        }
    }
}

/// Why a mapping is refused (reported as `invalid patch mapping: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("mapping {0:?} is not of the form OLD=NEW")]
    NotOldNew(String),
    #[error("mapping {0:?}: symbol names must be non-empty identifiers")]
    BadSymbol(String),
    /// The same old function (as displayed) appears in two entries.
    #[error("function {0} is mapped twice")]
    MappedTwice(String),
    /// The old symbol is not a function (`kind` is its ELF symbol type).
    #[error("`{old}` is {kind}, only FUNC symbols can be patched")]
    NotAFunction { old: String, kind: String },
}

/// Parses one `old=new` entry.
pub fn parse_entry(s: &str) -> Result<Mapping, MappingError> {
    let s = s.trim();
    let (old, new) = s
        .split_once('=')
        .ok_or_else(|| MappingError::NotOldNew(s.to_string()))?;
    let (old, new) = (old.trim(), new.trim());
    let (obj, old) = match old.rsplit_once(':') {
        Some((o, f)) => (Some(o.to_string()), f),
        None => (None, old),
    };
    let valid = |x: &str| {
        !x.is_empty()
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$' | '@'))
    };
    if !valid(old) || !valid(new) || obj.as_deref().is_some_and(str::is_empty) {
        return Err(MappingError::BadSymbol(s.to_string()));
    }
    Ok(Mapping {
        old_object: obj,
        old: old.to_string(),
        new: new.to_string(),
    })
}

/// Parses the contents of a manifest section.
pub fn parse_manifest(bytes: &[u8]) -> Result<Vec<Mapping>, MappingError> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for raw in text.split(['\n', '\0']) {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(parse_entry(line)?);
    }
    Ok(out)
}

/// `NAME_vN` → `(NAME, N)`.
pub fn convention_split(sym: &str) -> Option<(&str, u64)> {
    let (base, ver) = sym.rsplit_once("_v")?;
    if base.is_empty() || ver.is_empty() || !ver.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, ver.parse().ok()?))
}

/// Mappings by naming convention from the exported functions of the patch library.
pub fn by_convention(patch: &Elf) -> Vec<Mapping> {
    let mut best: Vec<(String, u64, String)> = Vec::new();
    for s in patch
        .symbols
        .iter()
        .filter(|s| s.dynamic && s.global && s.sym_type == SymType::Func)
    {
        if let Some((base, v)) = convention_split(&s.name) {
            match best.iter_mut().find(|(b, _, _)| b == base) {
                Some(e) if e.1 < v => *e = (base.to_string(), v, s.name.clone()),
                Some(_) => {}
                None => best.push((base.to_string(), v, s.name.clone())),
            }
        }
    }
    best.sort();
    best.into_iter()
        .map(|(old, _, new)| Mapping {
            old_object: None,
            old,
            new,
        })
        .collect()
}

/// Where the mapping came from (reported to the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MappingSource {
    CommandLine,
    Manifest,
    Convention,
}

/// Resolves the mapping for a patch library: command line, else manifest, else convention.
pub fn resolve(cli: &[String], patch: &Elf) -> Result<(Vec<Mapping>, MappingSource), MappingError> {
    let (maps, src) = if !cli.is_empty() {
        let m = cli
            .iter()
            .map(|s| parse_entry(s))
            .collect::<Result<Vec<_>, _>>()?;
        (m, MappingSource::CommandLine)
    } else if let Some(sec) = patch.section(MANIFEST_SECTION) {
        (parse_manifest(sec)?, MappingSource::Manifest)
    } else {
        (by_convention(patch), MappingSource::Convention)
    };
    for (i, a) in maps.iter().enumerate() {
        if maps[..i]
            .iter()
            .any(|b| b.old == a.old && b.old_object == a.old_object)
        {
            return Err(MappingError::MappedTwice(a.old_display()));
        }
    }
    Ok((maps, src))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entries() {
        assert_eq!(
            parse_entry(" func = func_v2 ").unwrap(),
            Mapping {
                old_object: None,
                old: "func".into(),
                new: "func_v2".into()
            }
        );
        let m = parse_entry("libfoo.so.1:func=fixed").unwrap();
        assert_eq!(m.old_object.as_deref(), Some("libfoo.so.1"));
        assert_eq!(m.old_display(), "libfoo.so.1:func");
        assert!(parse_entry("func").is_err());
        assert!(parse_entry("=x").is_err());
        assert!(parse_entry("a=b c").is_err());
        assert!(parse_entry(":a=b").is_err());
    }

    #[test]
    fn manifest_text() {
        let m = parse_manifest(b"# fixes\nfunc=func_v2\n\0other=other_fix # why\n\0\0").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].old, "other");
        assert_eq!(m[1].new, "other_fix");
        assert!(parse_manifest(b"broken\n").is_err());
    }

    #[test]
    fn convention() {
        assert_eq!(convention_split("func_v2"), Some(("func", 2)));
        assert_eq!(convention_split("do_thing_v10"), Some(("do_thing", 10)));
        assert_eq!(convention_split("func_v"), None);
        assert_eq!(convention_split("_v2"), None);
        assert_eq!(convention_split("func_vx"), None);
        assert_eq!(convention_split("func"), None);
    }

    proptest! {
        #[test]
        fn entry_roundtrip(obj in proptest::option::of("[a-z][a-z0-9._]{0,12}"),
                           old in "[A-Za-z_][A-Za-z0-9_]{0,20}", new in "[A-Za-z_][A-Za-z0-9_]{0,20}") {
            let m = Mapping { old_object: obj, old, new };
            let text = format!("{}={}", m.old_display(), m.new);
            prop_assert_eq!(parse_entry(&text).unwrap(), m);
        }
    }
}
