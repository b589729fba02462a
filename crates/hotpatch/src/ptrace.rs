//! Thin wrappers over ptrace(2), waitpid(2) and flock(2), plus the "stop every thread"
//! machinery. This is the only module with `unsafe`: these syscalls have no safe wrapper in
//! std, and libc's `ptrace` is variadic. Each `unsafe` block is a single FFI call whose
//! pointer arguments point at live, correctly-sized locals.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::io;
use std::time::{Duration, Instant};

use crate::error::HotpatchError;

pub type Regs = libc::user_regs_struct;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn ptrace_req(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: plain syscall; `addr`/`data` are either integers or pointers to live locals
    // of the size the request expects (see callers).
    check(unsafe {
        libc::ptrace(
            req,
            tid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    })
}

pub fn seize(tid: i32) -> io::Result<()> {
    ptrace_req(libc::PTRACE_SEIZE, tid, 0, 0).map(drop)
}
pub fn interrupt(tid: i32) -> io::Result<()> {
    ptrace_req(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}
pub fn cont(tid: i32, sig: i32) -> io::Result<()> {
    ptrace_req(libc::PTRACE_CONT, tid, 0, sig as usize).map(drop)
}
pub fn detach(tid: i32, sig: i32) -> io::Result<()> {
    ptrace_req(libc::PTRACE_DETACH, tid, 0, sig as usize).map(drop)
}
pub fn getregs(tid: i32) -> io::Result<Regs> {
    // SAFETY: user_regs_struct is plain-old-data; all-zero is a valid value.
    let mut regs: Regs = unsafe { std::mem::zeroed() };
    ptrace_req(
        libc::PTRACE_GETREGS,
        tid,
        0,
        &mut regs as *mut Regs as usize,
    )?;
    Ok(regs)
}
pub fn setregs(tid: i32, regs: &Regs) -> io::Result<()> {
    ptrace_req(libc::PTRACE_SETREGS, tid, 0, regs as *const Regs as usize).map(drop)
}

/// What `waitpid` reported for a traced thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not stopped yet (WNOHANG).
    Running,
    /// ptrace-stop; `event` is `status >> 16` (PTRACE_EVENT_STOP = 128 for group/interrupt
    /// stops), otherwise this is a signal-delivery-stop for `sig`.
    Stopped {
        sig: i32,
        event: i32,
    },
    Exited,
}

pub fn wait(tid: i32, nohang: bool) -> io::Result<Status> {
    let mut status: libc::c_int = 0;
    let flags = libc::__WALL | if nohang { libc::WNOHANG } else { 0 };
    // SAFETY: `status` is a live c_int.
    let r = unsafe { libc::waitpid(tid, &mut status, flags) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ECHILD) {
            return Ok(Status::Exited);
        }
        return Err(e);
    }
    if r == 0 {
        return Ok(Status::Running);
    }
    if libc::WIFSTOPPED(status) {
        Ok(Status::Stopped {
            sig: libc::WSTOPSIG(status),
            event: status >> 16,
        })
    } else {
        Ok(Status::Exited)
    }
}

/// Waits for a stop (or exit) of `tid` until `deadline`, polling with short sleeps: a
/// busy-wait here would steal the very CPU the target's threads need to reach their stop.
pub fn wait_until(tid: i32, deadline: Instant) -> io::Result<Option<Status>> {
    set_fine_timer_slack();
    loop {
        match wait(tid, true)? {
            Status::Running => {}
            s => return Ok(Some(s)),
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_micros(10));
    }
}

/// Lets our short sleeps be short (the default 50 µs timer slack would dominate them).
fn set_fine_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes integer arguments and affects only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Takes an exclusive flock on an open file (released when the file is closed).
pub fn flock_exclusive(f: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: valid open fd for the duration of the call.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A thread in ptrace-stop.
#[derive(Debug)]
pub struct Stopped {
    pub tid: i32,
    pub regs: Regs,
    /// A signal that arrived while we were stopping it; re-delivered on detach.
    pub pending_sig: i32,
}

impl Stopped {
    /// `rip`, plus `rip - 2` if the thread sits right after a `syscall` instruction that
    /// the kernel may restart (the restart rewinds `rip` by 2).
    pub fn pcs(&self) -> Vec<u64> {
        let mut v = vec![self.regs.rip];
        if (self.regs.orig_rax as i64) >= 0 {
            v.push(self.regs.rip.wrapping_sub(2));
        }
        v
    }
}

fn map_seize_err(pid: i32, tid: i32, e: io::Error) -> HotpatchError {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => HotpatchError::PermissionDenied {
            pid,
            detail: format!("PTRACE_SEIZE of thread {tid}: {e}"),
        },
        _ => HotpatchError::Ptrace {
            op: "seize",
            tid,
            source: e,
        },
    }
}

/// Waits for the stop requested by PTRACE_INTERRUPT. `Ok(None)`: the thread is gone.
fn finish_stop(pid: i32, tid: i32, deadline: Instant) -> Result<Option<Stopped>, HotpatchError> {
    let st = wait_until(tid, deadline).map_err(|e| HotpatchError::Ptrace {
        op: "waitpid",
        tid,
        source: e,
    })?;
    let pending_sig = match st {
        None => {
            return Err(HotpatchError::RemoteCall {
                pid,
                reason: format!("thread {tid} did not stop within the deadline"),
            })
        }
        Some(Status::Exited) => return Ok(None),
        Some(Status::Running) => unreachable!(),
        Some(Status::Stopped { event, .. }) if event == libc::PTRACE_EVENT_STOP => 0,
        Some(Status::Stopped { sig, .. }) => sig,
    };
    match getregs(tid) {
        Ok(regs) => Ok(Some(Stopped {
            tid,
            regs,
            pending_sig,
        })),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
        Err(e) => Err(HotpatchError::Ptrace {
            op: "getregs",
            tid,
            source: e,
        }),
    }
}

/// Seizes and stops one thread. `Ok(None)`: it exited meanwhile.
pub fn stop_one(pid: i32, tid: i32, deadline: Instant) -> Result<Option<Stopped>, HotpatchError> {
    match seize(tid) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(map_seize_err(pid, tid, e)),
    }
    if let Err(e) = interrupt(tid) {
        let _ = detach(tid, 0);
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(None);
        }
        return Err(HotpatchError::Ptrace {
            op: "interrupt",
            tid,
            source: e,
        });
    }
    match finish_stop(pid, tid, deadline) {
        Ok(Some(s)) => Ok(Some(s)),
        Ok(None) => Ok(None),
        Err(e) => {
            let _ = detach(tid, 0);
            Err(e)
        }
    }
}

/// Lists the thread ids of a process.
pub fn thread_ids(pid: i32) -> Result<Vec<i32>, HotpatchError> {
    let dir = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            HotpatchError::ProcessNotFound { pid }
        } else {
            HotpatchError::io(&dir, e)
        }
    })?;
    let mut v: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Every thread of a process in ptrace-stop. Dropping it detaches them all (re-delivering
/// any signal that arrived meanwhile), so an error path can never leave the target frozen.
#[derive(Debug)]
pub struct AllStopped {
    pub pid: i32,
    pub threads: Vec<Stopped>,
    /// When the last thread reached its stop (the process is fully frozen from then on).
    pub stopped_at: Instant,
}

impl AllStopped {
    /// Seizes and interrupts every thread (all interrupts first, then all waits, so the
    /// threads stop in parallel), re-reading the task list until no new thread appears.
    pub fn stop(pid: i32, deadline: Instant) -> Result<AllStopped, HotpatchError> {
        let mut all = AllStopped {
            pid,
            threads: Vec::new(),
            stopped_at: Instant::now(),
        };
        let mut seen: BTreeSet<i32> = BTreeSet::new();
        loop {
            let fresh: Vec<i32> = thread_ids(pid)?
                .into_iter()
                .filter(|t| !seen.contains(t))
                .collect();
            if fresh.is_empty() {
                break;
            }
            let mut seized = Vec::new();
            let mut first_err = None;
            for &tid in &fresh {
                seen.insert(tid);
                match seize(tid) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
                    Err(e) => {
                        first_err = Some(map_seize_err(pid, tid, e));
                        break;
                    }
                }
                match interrupt(tid) {
                    Ok(()) => seized.push(tid),
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => {
                        let _ = detach(tid, 0);
                        first_err = Some(HotpatchError::Ptrace {
                            op: "interrupt",
                            tid,
                            source: e,
                        });
                        break;
                    }
                }
            }
            for tid in seized {
                match finish_stop(pid, tid, deadline) {
                    Ok(Some(s)) => all.threads.push(s),
                    Ok(None) => {}
                    Err(e) => {
                        let _ = detach(tid, 0);
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e); // Drop detaches what was stopped.
            }
        }
        if all.threads.is_empty() {
            return Err(HotpatchError::ProcessNotFound { pid });
        }
        all.stopped_at = Instant::now();
        Ok(all)
    }

    /// Detaches every thread; returns when they all run again.
    pub fn resume(mut self) {
        self.detach_all();
    }

    fn detach_all(&mut self) {
        for t in self.threads.drain(..) {
            let _ = detach(t.tid, t.pending_sig);
        }
    }
}

impl Drop for AllStopped {
    fn drop(&mut self) {
        self.detach_all();
    }
}
