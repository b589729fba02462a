//! Files inside a crate depend on each other in one direction: a core, one
//! module per resource family above it, the router or dispatch on top. This
//! test reads the sources of the crates that promise it and fails on any
//! file-level import cycle, naming the files on it.
//!
//! An edge `a → b` is any path `crate::b…` or `super::…` in `a` that resolves
//! to the module file `b` (the longest module path that exists). `mod b;`
//! declarations are not edges (a parent owns its children; what matters is
//! who uses whom), and inline `#[cfg(test)]` modules are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates whose files must form no cycle.
const LAYERED: &[&str] = &["api", "cli"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; `lib.rs`/`main.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without inline test modules.
fn production_part(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ")
        .map_or(text, |at| &text[..at])
}

/// Every `crate::x::y` / `super::x` path in `text` (braced groups such as
/// `crate::{a, b::C}` expanded), as absolute module segments.
fn paths_used(text: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for (anchor, relative) in [("crate::", false), ("super::", true)] {
        let mut from = 0;
        while let Some(i) = text[from..].find(anchor).map(|i| i + from) {
            from = i + anchor.len();
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
                continue;
            }
            // `super` of `a/b.rs` and of `a/b/mod.rs` alike is module `a`.
            let base = if relative {
                me[..me.len().saturating_sub(1)].to_vec()
            } else {
                Vec::new()
            };
            for tail in expand(&text[from..]) {
                let mut path = base.clone();
                path.extend(tail);
                out.push(path);
            }
        }
    }
    out
}

/// The path(s) at the start of `rest`: `a::b::C` → one, `{a, b::{C, D}}` → each.
fn expand(rest: &str) -> Vec<Vec<String>> {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let end = rest.find(|c: char| !word(c)).unwrap_or(rest.len());
    let head: Vec<String> = rest[..end]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !rest[..end].ends_with("::") && end > 0 || !rest[end..].starts_with('{') {
        return vec![head];
    }
    let group = &rest[end + 1..];
    let (mut depth, mut close) = (0, group.len());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                close = i;
                break;
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    let (mut items, mut depth, mut at) = (Vec::new(), 0, 0);
    let inner = &group[..close];
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[at..i]);
                at = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[at..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty() && *item != "self")
        .flat_map(expand)
        .map(|tail| head.iter().cloned().chain(tail).collect())
        .collect()
}

fn edges(krate: &str) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = workspace().join("crates").join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut graph = BTreeMap::new();
    for (me, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let mut to = BTreeSet::new();
        for path in paths_used(production_part(&text), me) {
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains_key(p))
                .unwrap_or_default();
            if &target != me && !target.is_empty() {
                to.insert(target);
            }
        }
        graph.insert(me.clone(), to);
    }
    graph
}

/// One cycle of `graph`, if any, as the modules along it.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|m| m.join("::")).collect();
            cycle.push(node.join("::"));
            return Some(cycle);
        }
        if !done.insert(node.clone()) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn layered_crates_have_no_file_import_cycles() {
    for krate in LAYERED {
        let graph = edges(krate);
        assert!(graph.len() > 3, "{krate}: read {} files", graph.len());
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "crates/{krate}: files import each other in a cycle: {}",
                cycle.join(" → ")
            );
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle_and_accepts_layers() {
    let m = |s: &str| vec![s.to_string()];
    let mut g: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    g.insert(m("router"), [m("vm"), m("core")].into());
    g.insert(m("vm"), [m("core")].into());
    g.insert(m("core"), BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
    g.get_mut(&m("core")).unwrap().insert(m("router"));
    let cycle = find_cycle(&g).expect("planted cycle");
    assert!(cycle.contains(&"core".to_string()) && cycle.contains(&"router".to_string()));
    let used = paths_used(
        "use crate::hooks::{A, B};\nuse super::x::Y; my_crate::z\nuse crate::{auth::P, error::{E, R}};",
        &["a".into(), "b".into()],
    );
    assert_eq!(
        used,
        vec![
            vec!["hooks".to_string(), "A".to_string()],
            vec!["hooks".to_string(), "B".to_string()],
            vec!["auth".to_string(), "P".to_string()],
            vec!["error".to_string(), "E".to_string()],
            vec!["error".to_string(), "R".to_string()],
            vec!["a".to_string(), "x".to_string(), "Y".to_string()]
        ]
    );
}
