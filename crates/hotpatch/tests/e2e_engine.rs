//! End-to-end, through the library: real C targets compiled with gcc, patched through
//! ptrace. Needs root (or CAP_SYS_PTRACE) and gcc/libc6-dev (scripts/packages/hotpatch.txt).
//! The `yunhan hotpatch` command itself: crates/yunhan/tests/e2e_hotpatch.rs.

use std::path::Path;

use anyhow::{ensure, Result};
use yunhan_hotpatch::jump::JumpKind;
use yunhan_hotpatch::{ApplyOptions, HotpatchError, RevertOptions};
use yunhan_testkit::hotpatch::*;

fn opts(pid: i32, patch: &Path, state: &Path) -> ApplyOptions {
    let mut o = ApplyOptions::new(pid, patch);
    o.state_dir = state.to_path_buf();
    o
}

fn revert_opts(pid: i32, state: &Path) -> RevertOptions {
    let mut o = RevertOptions::new(pid);
    o.state_dir = state.to_path_buf();
    o
}

/// apply → every worker answers 2 and survives 10^6 more calls → revert → answers 1 again.
fn apply_revert_cycle(link: Link, workers: u32, allow_relay: bool, expect: JumpKind) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = build_target(dir.path(), link)?;
    let patch = build_patch(dir.path(), "fix", PATCH_MANIFEST_C)?;
    let state = dir.path().join("state");
    let mut t = Target::spawn(&exe, workers, 0)?;

    let mut o = opts(t.pid, &patch, &state);
    o.allow_relay = allow_relay;
    let r = yunhan_hotpatch::apply(&o)?;
    ensure!(r.loaded, "library should have been loaded");
    ensure!(r.patches.len() == 1);
    let p = &r.patches[0];
    ensure!(
        p.kind == expect,
        "jump kind {:?}, expected {expect:?}",
        p.kind
    );
    ensure!(r.stop.threads as u32 >= workers);
    eprintln!(
        "{link:?}/{workers} threads: {:?} stop {} us, {} attempts",
        p.kind, r.stop.stop_us, r.stop.attempts
    );
    t.wait_all(workers, 2)?;
    t.wait_calls(workers, 1_000_000)?;

    let listed = yunhan_hotpatch::list(t.pid, &state)?;
    ensure!(listed.len() == 1 && listed[0].status == "active");

    let rv = yunhan_hotpatch::revert(&revert_opts(t.pid, &state))?;
    ensure!(rv.reverted.len() == 1);
    t.wait_all(workers, 1)?;
    t.wait_calls(workers, 100_000)?;
    ensure!(yunhan_hotpatch::list(t.pid, &state)?.is_empty());
    let orig = yunhan_hotpatch::state::unhex(&p.original).unwrap();
    ensure!(
        t.peek(p.old_addr, orig.len()) == orig,
        "original bytes not restored"
    );
    ensure!(t.alive());
    Ok(())
}

#[test]
fn e2e_pie_four_threads() -> Result<()> {
    apply_revert_cycle(Link::Pie, 4, true, JumpKind::Relay)
}

#[test]
fn e2e_non_pie_relay() -> Result<()> {
    apply_revert_cycle(Link::NoPie, 4, true, JumpKind::Relay)
}

#[test]
fn e2e_non_pie_absolute_jump() -> Result<()> {
    apply_revert_cycle(Link::NoPie, 1, false, JumpKind::Abs64)
}

#[test]
fn e2e_shared_library_function() -> Result<()> {
    // func lives in libfoo.so, near where the patch library gets mapped: a direct rel32 jump.
    apply_revert_cycle(Link::SharedLib, 4, true, JumpKind::Rel32)
}

#[test]
fn e2e_naming_convention_and_map_override() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = build_target(dir.path(), Link::Pie)?;
    let conv = build_patch(dir.path(), "conv", PATCH_CONVENTION_C)?;
    let state = dir.path().join("state");
    let mut t = Target::spawn(&exe, 2, 1)?;
    let r = yunhan_hotpatch::apply(&opts(t.pid, &conv, &state))?;
    ensure!(r.patches[0].new_symbol == "func_v3");
    t.wait_all(2, 3)?;
    yunhan_hotpatch::revert(&revert_opts(t.pid, &state))?;
    t.wait_all(2, 1)?;
    // --map overrides the manifest of the other patch (and qualifies the object).
    let fix = build_patch(dir.path(), "fix", PATCH_MANIFEST_C)?;
    let mut o = opts(t.pid, &fix, &state);
    o.maps = vec![format!(
        "{}:func=func_v2",
        exe.file_name().unwrap().to_str().unwrap()
    )];
    yunhan_hotpatch::apply(&o)?;
    t.wait_all(2, 2)?;
    ensure!(t.alive());
    Ok(())
}

/// Every refusal leaves the target exactly as it was.
#[test]
fn e2e_refusals_change_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = build_target(dir.path(), Link::Pie)?;
    let fix = build_patch(dir.path(), "fix", PATCH_MANIFEST_C)?;
    let obj = build_patch(dir.path(), "obj", PATCH_OBJECT_C)?;
    let state = dir.path().join("state");
    let mut t = Target::spawn(&exe, 2, 1)?;
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", t.pid))?;

    // Missing process.
    let e = yunhan_hotpatch::apply(&opts(0x3fff_fff0, &fix, &state)).unwrap_err();
    ensure!(matches!(e, HotpatchError::ProcessNotFound { .. }), "{e}");
    // Symbol not found.
    let mut o = opts(t.pid, &fix, &state);
    o.maps = vec!["no_such_function=func_v2".into()];
    let e = yunhan_hotpatch::apply(&o).unwrap_err();
    ensure!(matches!(e, HotpatchError::SymbolNotFound { .. }), "{e}");
    o.maps = vec!["func=no_such_v2".into()];
    let e = yunhan_hotpatch::apply(&o).unwrap_err();
    ensure!(matches!(e, HotpatchError::SymbolNotFound { .. }), "{e}");
    // Function shorter than the jump.
    o.maps = vec!["tiny=func_v2".into()];
    let e = yunhan_hotpatch::apply(&o).unwrap_err();
    ensure!(
        matches!(e, HotpatchError::FunctionTooShort { size: 3, .. }),
        "{e}"
    );
    // New symbol of a different type.
    let mut o = opts(t.pid, &obj, &state);
    o.maps = vec!["func=func_v2".into()];
    let e = yunhan_hotpatch::apply(&o).unwrap_err();
    ensure!(matches!(e, HotpatchError::SymbolTypeMismatch { .. }), "{e}");
    // Nothing to revert.
    let e = yunhan_hotpatch::revert(&revert_opts(t.pid, &state)).unwrap_err();
    ensure!(matches!(e, HotpatchError::NotApplied { .. }), "{e}");

    let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", t.pid))?;
    ensure!(
        maps_before == maps_after,
        "address space changed by a refused apply"
    );
    ensure!(yunhan_hotpatch::list(t.pid, &state)?.is_empty());
    t.wait_calls(2, 1_000_000)?;

    // Applying the same patch twice.
    yunhan_hotpatch::apply(&opts(t.pid, &fix, &state))?;
    t.wait_all(2, 2)?;
    let e = yunhan_hotpatch::apply(&opts(t.pid, &fix, &state)).unwrap_err();
    ensure!(matches!(e, HotpatchError::AlreadyPatched { .. }), "{e}");
    ensure!(yunhan_hotpatch::list(t.pid, &state)?.len() == 1);
    // Even with the state file gone, the jump already in place is recognised.
    std::fs::remove_dir_all(&state)?;
    let e = yunhan_hotpatch::apply(&opts(t.pid, &fix, &state)).unwrap_err();
    ensure!(matches!(e, HotpatchError::AlreadyPatched { .. }), "{e}");
    t.wait_calls(2, 100_000)?;
    ensure!(t.alive());
    Ok(())
}

#[test]
fn e2e_refuses_static_target() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = build_target(dir.path(), Link::Static)?;
    let fix = build_patch(dir.path(), "fix", PATCH_MANIFEST_C)?;
    let mut t = Target::spawn(&exe, 1, 0)?;
    let e = yunhan_hotpatch::apply(&opts(t.pid, &fix, &dir.path().join("state"))).unwrap_err();
    ensure!(matches!(e, HotpatchError::UnsupportedTarget { .. }), "{e}");
    ensure!(e.to_string().contains("statically linked"), "{e}");
    t.wait_calls(1, 100_000)?;
    Ok(())
}
