//! Hot-patching fixtures, shared by the engine's end-to-end tests (`crates/hotpatch/tests`)
//! and the `yunhan hotpatch` ones (`crates/yunhan/tests/e2e_hotpatch.rs`): C test programs
//! compiled with gcc into a tempdir, a child-process wrapper that reads the target's reports,
//! and answer tracking.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The target: `argv[1]` threads call `func()` in a tight loop, each reporting every change
/// of answer ("T<i> ANSWER <r> AT <n>") and every 2^20 calls ("T<i> TICK <n> ANSWER <r>").
/// `argv[2]` more threads sit in syscalls (nanosleep, read on a pipe, poll) all the time.
pub const TARGET_C: &str = r#"
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#ifdef FUNC_IN_LIB
extern int func(void);
#else
__attribute__((noinline)) int func(void) { volatile int one = 1; return one; }
#endif

/* Too short for any jump (3 bytes, with an exact ELF size); only here to be refused. */
__asm__(".text\n.globl tiny\n.type tiny, @function\ntiny:\n\txor %eax, %eax\n\tret\n.size tiny, .-tiny\n");
int tiny(void);

static void *worker(void *arg) {
    long id = (long)arg;
    int last = 0;
    unsigned long n = 0;
    for (;;) {
        int r = func();
        if (r != last) {
            printf("T%ld ANSWER %d AT %lu\n", id, r, n);
            fflush(stdout);
            last = r;
        }
        n++;
        if ((n & ((1UL << 20) - 1)) == 0) {
            printf("T%ld TICK %lu ANSWER %d\n", id, n, r);
            fflush(stdout);
        }
    }
    return 0;
}

static void *in_syscalls(void *arg) {
    long kind = (long)arg % 3;
    int p[2];
    if (pipe(p) != 0) abort();
    for (;;) {
        if (kind == 0) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, 0);
        } else if (kind == 1) {
            char c;
            if (read(p[0], &c, 1) < 0) abort();
        } else {
            struct pollfd f = {p[0], POLLIN, 0};
            poll(&f, 1, 5);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1;
    long s = argc > 2 ? atol(argv[2]) : 0;
    pthread_t t;
    for (long i = 0; i < s; i++) pthread_create(&t, 0, in_syscalls, (void *)i);
    for (long i = 1; i < n; i++) pthread_create(&t, 0, worker, (void *)i);
    if (tiny() != 0) abort();
    worker((void *)0);
    return 0;
}
"#;

/// The library variant: `func` lives in libfoo.so, which the target links.
pub const LIBFOO_C: &str =
    "__attribute__((noinline)) int func(void) { volatile int one = 1; return one; }\n";

/// Patch with a manifest section.
pub const PATCH_MANIFEST_C: &str = r#"
__attribute__((used, section(".yunhan_hotpatch")))
static const char yunhan_hotpatch_manifest[] = "func=func_v2\n";
int func_v2(void) { return 2; }
"#;

/// Patch relying on the NAME_vN naming convention.
pub const PATCH_CONVENTION_C: &str = "int func_v3(void) { return 3; }\n";

/// Patch whose "new function" is a data object.
pub const PATCH_OBJECT_C: &str = "int func_v2 = 2;\n";

/// How the target program is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Pie,
    NoPie,
    Static,
    /// PIE executable calling `func` in libfoo.so.
    SharedLib,
}

/// Runs gcc with `args`; its stderr becomes the error.
pub fn gcc(args: &[&str]) -> Result<()> {
    let out = Command::new("gcc")
        .args(args)
        .output()
        .context("running gcc (install gcc, libc6-dev)")?;
    if !out.status.success() {
        bail!(
            "gcc {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Compiles the target program; returns the executable path.
pub fn build_target(dir: &Path, link: Link) -> Result<PathBuf> {
    let src = write(dir, "target.c", TARGET_C);
    let src = src.to_str().unwrap();
    let exe = dir.join(format!("target-{link:?}").to_lowercase());
    let exe_s = exe.to_str().unwrap();
    let d = dir.to_str().unwrap();
    match link {
        Link::Pie => gcc(&["-O0", "-g", "-pie", "-fPIE", "-pthread", "-o", exe_s, src])?,
        Link::NoPie => gcc(&["-O0", "-no-pie", "-fno-pie", "-pthread", "-o", exe_s, src])?,
        Link::Static => gcc(&["-O0", "-static", "-pthread", "-o", exe_s, src])?,
        Link::SharedLib => {
            let lib = write(dir, "libfoo.c", LIBFOO_C);
            shared_library(&lib, &dir.join("libfoo.so"))?;
            let rpath = format!("-Wl,-rpath,{d}");
            gcc(&[
                "-O0",
                "-DFUNC_IN_LIB",
                "-pthread",
                "-o",
                exe_s,
                src,
                "-L",
                d,
                "-lfoo",
                &rpath,
            ])?;
        }
    }
    Ok(exe)
}

/// Compiles a patch library.
pub fn build_patch(dir: &Path, name: &str, c: &str) -> Result<PathBuf> {
    let src = write(dir, &format!("{name}.c"), c);
    let so = dir.join(format!("{name}.so"));
    shared_library(&src, &so)?;
    Ok(so)
}

/// Compiles C source `src` into shared library `so`.
fn shared_library(src: &Path, so: &Path) -> Result<()> {
    let (src, so) = (src.to_str().unwrap(), so.to_str().unwrap());
    gcc(&["-O0", "-shared", "-fPIC", "-o", so, src])
}

/// A running target; killed (by its pid) and reaped on drop.
pub struct Target {
    child: Child,
    rx: Receiver<String>,
    pub pid: i32,
    /// Per thread: (current answer, call count at which it was first seen).
    pub answer: BTreeMap<u32, (i32, u64)>,
    /// Per thread: last TICK count.
    pub tick: BTreeMap<u32, u64>,
    /// Per thread: the answer this thread must keep once it has switched to it.
    expect: Option<i32>,
    pub log: Vec<String>,
}

/// How long [`Target::pump`] waits for the target's reports.
pub const DEADLINE: Duration = Duration::from_secs(20);

impl Target {
    /// Starts `exe` with `workers` spinning threads and `syscall_threads` parked in
    /// syscalls; returns once every worker answers 1 (the old function).
    pub fn spawn(exe: &Path, workers: u32, syscall_threads: u32) -> Result<Target> {
        let mut cmd = Command::new(exe);
        cmd.arg(workers.to_string())
            .arg(syscall_threads.to_string())
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        let mut child =
            crate::spawn_owned(cmd).with_context(|| format!("spawning {}", exe.display()))?;
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id() as i32;
        let mut t = Target {
            child,
            rx,
            pid,
            answer: BTreeMap::new(),
            tick: BTreeMap::new(),
            expect: None,
            log: Vec::new(),
        };
        // Running and answering with the old function, all workers started.
        t.wait_all(workers, 1)?;
        Ok(t)
    }

    fn take(&mut self, line: &str) -> Result<()> {
        if self.log.len() < 10_000 {
            self.log.push(line.to_string());
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let tid: u32 = w
            .first()
            .and_then(|t| t.strip_prefix('T'))
            .and_then(|t| t.parse().ok())
            .with_context(|| format!("bad line {line:?}"))?;
        match w.get(1) {
            Some(&"ANSWER") => {
                let r: i32 = w[2].parse()?;
                let n: u64 = w[4].parse()?;
                if let (Some(exp), Some(&(cur, _))) = (self.expect, self.answer.get(&tid)) {
                    if cur == exp && r != exp {
                        bail!("thread {tid} went back from answer {exp} to {r} at call {n}");
                    }
                }
                self.answer.insert(tid, (r, n));
            }
            Some(&"TICK") => {
                let n: u64 = w[2].parse()?;
                let r: i32 = w[4].parse()?;
                if let Some(&(cur, _)) = self.answer.get(&tid) {
                    if cur != r {
                        bail!("thread {tid} ticked with answer {r} but reported {cur}");
                    }
                }
                self.tick.insert(tid, n);
            }
            _ => bail!("bad line {line:?}"),
        }
        Ok(())
    }

    /// Consumes output until `done` holds (polling with a deadline, no sleeps).
    pub fn pump(&mut self, what: &str, done: impl Fn(&Target) -> bool) -> Result<()> {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.take(&line)?,
                Err(RecvTimeoutError::Timeout) => bail!("timed out waiting for {what}"),
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.try_wait()?;
                    bail!("target exited ({st:?}) while waiting for {what}");
                }
            }
        }
        Ok(())
    }

    /// Waits until every worker answers `answer`; from then on, a worker that answers
    /// anything else fails the test.
    pub fn wait_all(&mut self, workers: u32, answer: i32) -> Result<()> {
        self.expect = Some(answer);
        self.pump(&format!("all {workers} workers to answer {answer}"), |t| {
            (0..workers).all(|i| t.answer.get(&i).is_some_and(|&(r, _)| r == answer))
        })
    }

    /// Waits until every worker made `calls` more calls since switching to its current
    /// answer (proves the process survives them with the new code).
    pub fn wait_calls(&mut self, workers: u32, calls: u64) -> Result<()> {
        self.pump(&format!("{calls} more calls on every worker"), |t| {
            (0..workers).all(|i| {
                let since = t.answer.get(&i).map_or(u64::MAX, |&(_, n)| n);
                t.tick
                    .get(&i)
                    .is_some_and(|&n| n >= since.saturating_add(calls))
            })
        })
    }

    /// Whether the target is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Reads `len` bytes of the target's memory.
    pub fn peek(&self, addr: u64, len: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(format!("/proc/{}/mem", self.pid)).unwrap();
        let mut b = vec![0; len];
        f.read_exact_at(&mut b, addr).unwrap();
        b
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value at percentile `p` (0..=100) of an ascending slice (0 when empty).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
