//! docs/ARCHITECTURE.md is the map of the code: every file or folder it names in
//! backticks must exist in the repository. A name is looked up as written from the
//! root or from `crates/` (the "Where is X" table's base), and otherwise as the tail of
//! some path in the tree, since a section about one crate names its files relative to
//! that crate (`realise/garp.rs` under `net/src/`). API paths (`/v1/…`), paths in a
//! user's home (`~/…`) and patterns (`{a,b}.rs`, `*`, `<kind>`) are not files of the
//! repository and are skipped.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file and folder below `dir` as a path relative to the workspace with a
/// leading `/` (`/crates/net/src/realise/`), leaving out build output and packages.
fn tree(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if matches!(name.as_ref(), "target" | "node_modules" | ".git") {
            continue;
        }
        let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
        if path.is_dir() {
            out.push(format!("{rel}/"));
            tree(root, &path, out);
        } else {
            out.push(rel);
        }
    }
}

/// The backticked names in `text` that look like a file or folder of the repository.
fn named_paths(text: &str) -> Vec<&str> {
    const ENDINGS: &[&str] = &[
        ".rs", ".md", ".sh", ".c", ".h", ".toml", ".ts", ".tsx", ".mjs", ".json", ".txt", "/",
    ];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.contains('/') && !t.contains(char::is_whitespace))
        .filter(|t| ENDINGS.iter().any(|e| t.ends_with(e)))
        .filter(|t| !t.starts_with('/') && !t.starts_with('~'))
        .filter(|t| !t.contains(['{', '*', '<']))
        .collect()
}

#[test]
fn every_path_the_architecture_names_exists() {
    let root = workspace().canonicalize().unwrap();
    let text = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let mut all = Vec::new();
    tree(&root, &root, &mut all);
    let names = named_paths(&text);
    assert!(names.len() > 100, "only {} paths found", names.len());
    let missing: Vec<&str> = (names.iter().copied())
        .filter(|n| {
            let rooted = [format!("/{n}"), format!("/crates/{n}")];
            let tail = format!("/{n}");
            !all.iter().any(|p| rooted.contains(p) || p.ends_with(&tail))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names paths that are not in the repository: {missing:?}"
    );
}

#[test]
fn names_are_picked_out_of_backticks() {
    let text =
        "a `net/src/realise/` b `x.rs` c `/v1/x.json` `~/a/b.toml` `{a,b}.rs` `api/src/x.rs`";
    assert_eq!(named_paths(text), ["net/src/realise/", "api/src/x.rs"]);
}
