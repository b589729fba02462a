//! Calling a function inside the target: one thread is stopped, its registers saved, and
//! it is pointed at the function with a fake return address of 0. When the function
//! returns, the thread faults at address 0 (a SIGSEGV we intercept and suppress); we read
//! `rax` and restore the saved registers, so the thread resumes exactly where it was.
//!
//! Only the hijacked thread is stopped while the call runs; the others keep running, so a
//! lock they hold (malloc arenas, the loader lock) is released normally instead of
//! deadlocking the call.

use std::time::{Duration, Instant};

use crate::error::HotpatchError;
use crate::maps::{self, MapEntry};
use crate::procfs::{basename, Mem};
use crate::ptrace::{self, Regs, Status, Stopped};

/// How long a remote call (dlopen of the patch, running its constructors) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Objects whose internal locks the injected `dlopen` itself needs: a thread stopped
/// inside them (outside a blocking syscall) may hold such a lock and would deadlock.
const SYSTEM_OBJECTS: &[&str] = &["libc.so", "libc-", "ld-linux", "ld-", "libpthread", "libdl"];

/// Blocking syscalls that are not made while holding glibc-internal locks.
const SAFE_SYSCALLS: &[u64] = &[
    0,   // read
    7,   // poll
    16,  // ioctl (e.g. KVM_RUN in a QEMU vCPU thread)
    23,  // select
    34,  // pause
    35,  // nanosleep
    43,  // accept
    45,  // recvfrom
    47,  // recvmsg
    61,  // wait4
    202, // futex
    230, // clock_nanosleep
    232, // epoll_wait
    270, // pselect6
    271, // ppoll
    281, // epoll_pwait
    288, // accept4
    441, // epoll_pwait2
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Safety {
    Unsafe,
    SafeSyscall,
    UserCode,
}

fn classify(maps: &[MapEntry], regs: &Regs) -> Safety {
    let in_syscall =
        (regs.orig_rax as i64) >= 0 && (regs.rax as i64) < 0 && (regs.rax as i64) >= -4095;
    if in_syscall && SAFE_SYSCALLS.contains(&regs.orig_rax) {
        return Safety::SafeSyscall;
    }
    match maps::find(maps, regs.rip) {
        Some(m) if m.is_file() => {
            let b = basename(&m.path);
            if SYSTEM_OBJECTS.iter().any(|p| b.starts_with(p)) {
                Safety::Unsafe
            } else {
                Safety::UserCode
            }
        }
        Some(m) if m.path == "[vdso]" => Safety::UserCode,
        _ => Safety::Unsafe, // JIT code or unknown: be conservative
    }
}

/// A thread of the target, stopped and borrowed for remote calls. Dropping it restores the
/// thread's registers and lets it go.
pub struct Hijack {
    pid: i32,
    thread: Stopped,
    mem: Mem,
    /// Next free byte (growing down) of the scratch area below the thread's red zone.
    scratch: u64,
    /// Time the hijacked thread spent stopped.
    stopped_at: Instant,
}

impl Hijack {
    /// Stops a thread that is in a safe place to run `dlopen`: preferably in user code
    /// outside libc/ld.so, else in a blocking syscall that holds no libc lock. Threads
    /// caught elsewhere are released at once and tried again, a bounded number of times.
    pub fn new(pid: i32, maps: &[MapEntry]) -> Result<Hijack, HotpatchError> {
        const ROUNDS: usize = 200;
        let mem = Mem::open(pid)?;
        for round in 0..ROUNDS {
            let mut tids = ptrace::thread_ids(pid)?;
            // Prefer the main thread: its stack is the largest.
            tids.sort_by_key(|&t| t != pid);
            for tid in tids {
                let deadline = Instant::now() + Duration::from_secs(2);
                let Some(t) = ptrace::stop_one(pid, tid, deadline)? else {
                    continue;
                };
                if classify(maps, &t.regs) != Safety::Unsafe {
                    let scratch = t.regs.rsp.wrapping_sub(512) & !0xf;
                    return Ok(Hijack {
                        pid,
                        thread: t,
                        mem,
                        scratch,
                        stopped_at: Instant::now(),
                    });
                }
                let _ = ptrace::detach(t.tid, t.pending_sig);
            }
            if round > 10 {
                std::thread::sleep(Duration::from_micros(200));
            } else {
                std::thread::yield_now();
            }
        }
        Err(HotpatchError::RemoteCall {
            pid,
            reason: format!(
                "no thread reached a safe point (user code, or a blocking syscall) in {ROUNDS} attempts"
            ),
        })
    }

    pub fn tid(&self) -> i32 {
        self.thread.tid
    }

    pub fn mem(&self) -> &Mem {
        &self.mem
    }

    /// Copies bytes into the scratch area on the thread's stack; returns their address.
    pub fn push_data(&mut self, data: &[u8]) -> Result<u64, HotpatchError> {
        let len = (data.len() as u64 + 16) & !0xf;
        self.scratch -= len;
        self.mem.write(self.scratch, data)?;
        Ok(self.scratch)
    }

    /// Calls `func(args...)` (System V ABI, up to 6 integer arguments) in the target and
    /// returns `rax`.
    pub fn call(&mut self, func: u64, args: &[u64]) -> Result<u64, HotpatchError> {
        assert!(args.len() <= 6, "at most 6 register arguments");
        let pid = self.pid;
        let tid = self.thread.tid;
        let pt = |op: &'static str| move |e| HotpatchError::Ptrace { op, tid, source: e };
        let mut r = self.thread.regs;
        // Stack: 16-byte aligned below the scratch area, then the fake return address, so
        // that rsp % 16 == 8 at the callee's entry, as after a real `call`.
        let sp = ((self.scratch - 64) & !0xf) - 8;
        self.mem.write(sp, &0u64.to_le_bytes())?;
        r.rsp = sp;
        r.rip = func;
        r.rax = 0;
        // Not in a syscall any more: stops the kernel from "restarting" one at `func`.
        r.orig_rax = u64::MAX;
        let slots: [&mut u64; 6] = [
            &mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.rcx, &mut r.r8, &mut r.r9,
        ];
        for (slot, &a) in slots.into_iter().zip(args) {
            *slot = a;
        }
        ptrace::setregs(tid, &r).map_err(pt("setregs"))?;
        ptrace::cont(tid, 0).map_err(pt("cont"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match ptrace::wait_until(tid, deadline).map_err(pt("waitpid"))? {
                None => {
                    // Stuck (deadlock in the target?): take the thread back.
                    let _ = ptrace::interrupt(tid);
                    let _ = ptrace::wait_until(tid, Instant::now() + Duration::from_secs(1));
                    return Err(HotpatchError::RemoteCall {
                        pid,
                        reason: format!(
                            "the call did not return within {}s; the thread was put back where it was",
                            CALL_TIMEOUT.as_secs()
                        ),
                    });
                }
                Some(Status::Exited) => return Err(HotpatchError::ProcessDied { pid }),
                Some(Status::Running) => unreachable!(),
                Some(Status::Stopped { event, .. }) if event == libc::PTRACE_EVENT_STOP => {
                    ptrace::cont(tid, 0).map_err(pt("cont"))?;
                }
                Some(Status::Stopped { sig, .. }) if sig == libc::SIGSEGV => {
                    let now = ptrace::getregs(tid).map_err(pt("getregs"))?;
                    if now.rip == 0 {
                        return Ok(now.rax);
                    }
                    return Err(HotpatchError::RemoteCall {
                        pid,
                        reason: format!(
                            "the called function crashed at {:#x}; the fault was suppressed and the thread put back",
                            now.rip
                        ),
                    });
                }
                Some(Status::Stopped { sig, .. }) => {
                    // The target's own signal: let its handler run, as it would anyway.
                    ptrace::cont(tid, sig).map_err(pt("cont"))?;
                }
            }
        }
    }

    /// Restores the thread and lets it go; returns how long it was held.
    pub fn release(self) -> Duration {
        self.stopped_at.elapsed()
        // Drop restores and detaches.
    }
}

impl Drop for Hijack {
    fn drop(&mut self) {
        let _ = ptrace::setregs(self.thread.tid, &self.thread.regs);
        let _ = ptrace::detach(self.thread.tid, self.thread.pending_sig);
    }
}
