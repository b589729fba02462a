//! The QMP conformance suite against a real `qemu-system-x86_64 -machine none`
//! (TCG), one process per check.
mod conformance;

use conformance::Target;

/// Owns the QEMU child: killed (only this PID) when dropped.
struct Qemu(#[allow(dead_code)] tokio::process::Child);

async fn start() -> Target {
    let scratch = tempfile::tempdir().unwrap();
    let socket = scratch.path().join("qmp.sock");
    let child = tokio::process::Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "none",
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn qemu-system-x86_64 (scripts/setup installs it)");
    Target {
        socket,
        scratch,
        guard: Box::new(Qemu(child)),
    }
}

/// In a module named `e2e_qemu` so that every test name carries the `e2e_`
/// prefix nextest uses to put it in the limited-concurrency group.
mod e2e_qemu {
    use super::conformance;
    crate::conformance_suite!(super::start);
}
