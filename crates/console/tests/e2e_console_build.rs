//! The committed console assets are exactly what the sources and the lock file build:
//! `scripts/console check` rebuilds them (npm ci from the lock, types from the OpenAPI
//! snapshot, tsc, esbuild) into a temporary directory and compares byte for byte. A change
//! to the app, its packages or the API's OpenAPI document without `scripts/console build`
//! fails here; so does a build that is not reproducible.

use std::process::Command;

#[test]
fn e2e_console_build_is_reproducible_and_committed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/console"))
        .arg("check")
        .current_dir(&root)
        .output()
        .expect("run scripts/console check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "scripts/console check failed:\n{text}"
    );
}

#[test]
fn the_embedded_console_has_its_page_and_compressed_scripts() {
    let index = yunhan_console::asset("index.html").expect("index.html is embedded");
    let html = std::str::from_utf8(index.body).unwrap();
    assert!(html.contains("/console/assets/"), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
    let scripts: Vec<_> = yunhan_console::ASSETS
        .iter()
        .filter(|a| a.path.ends_with(".js"))
        .collect();
    assert!(!scripts.is_empty());
    for s in scripts {
        assert!(s.gzip.is_some(), "{} has no .gz", s.path);
    }
}
