//! Children that cannot outlive the test process.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;

type Job = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` with `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it if
/// the test process dies without running destructors (a runner's timeout, a
/// SIGKILL, an abort). Drop guards remain the normal way to stop children.
///
/// The death signal follows the *thread* that forked, not the process, so the
/// fork happens on a spawner thread that lives as long as the process (not on
/// a tokio worker or blocking-pool thread that may exit early).
pub fn spawn_owned(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the testkit spawner thread");
        tx
    });
    // SAFETY: the hook runs in the forked child before exec and only calls
    // prctl(2), which is async-signal-safe and touches no shared memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let gone = || io::Error::other("the testkit spawner thread is gone");
    let (tx, rx) = mpsc::channel();
    spawner.send((cmd, tx)).map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

/// Spawns `cmd` like [`spawn_owned`], as the leader of a new process group,
/// so [`kill_group`] can also stop what it started (e.g. the `ceph`/`rbd`
/// commands a daemon was running when the test ended: they would otherwise
/// hang on a cluster that is gone). Processes that start their own session
/// (QEMU under the agent) are not in the group.
pub fn spawn_owned_group(mut cmd: Command) -> io::Result<Child> {
    cmd.process_group(0);
    spawn_owned(cmd)
}

/// SIGKILLs the process group led by `child` (started with
/// [`spawn_owned_group`]) and reaps the child. Call it once, before anything
/// else reaps the child (`wait`, `try_wait`): until then the child's pid, the
/// group id, cannot be reused.
pub fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) of the group our own unreaped child leads: its pid is
    // still reserved, so the group id names nobody else's processes.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}
