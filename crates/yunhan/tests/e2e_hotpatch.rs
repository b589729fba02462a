//! End-to-end `yunhan hotpatch apply|list|revert` (the documented command, the real `yunhan`
//! binary, with the global `-o json`) against real C targets compiled with gcc. Needs root
//! (or CAP_SYS_PTRACE) and gcc/libc6-dev (scripts/packages/hotpatch.txt). The engine's own
//! cases (jump kinds, link modes, every refusal): crates/hotpatch/tests/e2e_engine.rs.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use yunhan_testkit::hotpatch::*;

/// `yunhan hotpatch ARGS…` with its own state dir.
fn hotpatch(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_yunhan"))
        .arg("hotpatch")
        .args(args)
        .env("YUNHAN_HOTPATCH_STATE_DIR", state_dir)
        .output()
        .expect("running yunhan hotpatch")
}

/// Runs it, requires success, returns stdout.
fn ok(state_dir: &Path, args: &[&str]) -> Result<String> {
    let out = hotpatch(state_dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "yunhan hotpatch {args:?} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// Runs it with `-o json`, requires success, parses stdout.
fn json(state_dir: &Path, args: &[&str]) -> Result<Value> {
    let out = ok(state_dir, &[args, &["-o", "json"]].concat())?;
    serde_json::from_str(&out).with_context(|| format!("JSON of {args:?}: {out}"))
}

#[test]
fn e2e_hotpatch_apply_list_revert_via_yunhan() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = build_target(dir.path(), Link::Pie)?;
    let patch = build_patch(dir.path(), "fix", PATCH_MANIFEST_C)?;
    let patch_s = patch.to_str().unwrap();
    let state = dir.path().join("state");
    let mut t = Target::spawn(&exe, 2, 1)?;
    let pid = t.pid.to_string();

    // People: a table and the stop time.
    let out = ok(&state, &["apply", "--pid", &pid, "--patch", patch_s])?;
    ensure!(out.contains("target stopped for"), "{out}");
    ensure!(out.contains("func_v2"), "{out}");
    t.wait_all(2, 2)?;
    t.wait_calls(2, 1_000_000)?;

    let v = json(&state, &["list", "--pid", &pid])?;
    ensure!(
        v.as_array().map(Vec::len) == Some(1)
            && v[0]["old_symbol"] == "func"
            && v[0]["new_symbol"] == "func_v2"
            && v[0]["status"] == "active",
        "{v}"
    );
    let out = ok(&state, &["list", "--pid", &pid])?;
    ensure!(out.contains("active"), "{out}");

    // The same patch twice: refused, nothing changes.
    let out = hotpatch(&state, &["apply", "--pid", &pid, "--patch", patch_s]);
    ensure!(!out.status.success());
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("already patched"),
        "{out:?}"
    );

    // Scripts: the revert report in JSON (`-o` before the subcommand works too).
    let out = ok(&state, &["-o", "json", "revert", "--pid", &pid])?;
    let v: Value = serde_json::from_str(&out).context("revert JSON")?;
    ensure!(
        v["pid"] == t.pid && v["reverted"][0]["old_symbol"] == "func",
        "{v}"
    );
    ensure!(v["stop"]["attempts"].as_u64() >= Some(1), "{v}");
    t.wait_all(2, 1)?;
    t.wait_calls(2, 100_000)?;
    let out = ok(&state, &["list", "--pid", &pid])?;
    ensure!(out.contains("no patches"), "{out}");
    ensure!(json(&state, &["list", "--pid", &pid])? == Value::Array(vec![]));

    // Applied again after a revert, in JSON: the library is already loaded (no dlopen).
    let v = json(&state, &["apply", "--pid", &pid, "--patch", patch_s])?;
    ensure!(
        v["loaded"] == false && v["patches"][0]["new_symbol"] == "func_v2",
        "{v}"
    );
    ensure!(v["mapping_source"].is_string(), "{v}");
    t.wait_all(2, 2)?;
    let v = json(&state, &["revert", "--pid", &pid, "--func", "func"])?;
    ensure!(v["reverted"].as_array().map(Vec::len) == Some(1), "{v}");
    t.wait_all(2, 1)?;
    ensure!(t.alive());
    Ok(())
}

#[test]
fn e2e_hotpatch_refuses_without_permission_via_yunhan() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir()?;
    let exe = build_target(dir.path(), Link::Pie)?;
    let fix = build_patch(dir.path(), "fix", PATCH_MANIFEST_C)?;
    let mut t = Target::spawn(&exe, 1, 0)?;
    // `yunhan hotpatch` as an unprivileged user against a root process.
    let out = Command::new(env!("CARGO_BIN_EXE_yunhan"))
        .args([
            "hotpatch",
            "apply",
            "--pid",
            &t.pid.to_string(),
            "--patch",
            fix.to_str().unwrap(),
            "-o",
            "json",
        ])
        .env("YUNHAN_HOTPATCH_STATE_DIR", dir.path().join("state"))
        .uid(65534)
        .gid(65534)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success());
    ensure!(err.contains("no permission"), "{err}");
    ensure!(out.stdout.is_empty(), "{out:?}");
    t.wait_calls(1, 100_000)?;
    ensure!(t.alive());
    Ok(())
}
