//! Commands and the runners that run them: [`SystemRunner`] (the real tools) and, for unit
//! tests (`cfg(test)` or the `test-util` feature), `RecordingRunner` (records commands,
//! answers observations from canned output).
use super::RealiseError;
use crate::addr::MacAddr;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
#[cfg(any(test, feature = "test-util"))]
use std::sync::Mutex;

/// One command: a program, its arguments, optional stdin, in a network namespace or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub netns: Option<String>,
    pub argv: Vec<String>,
    pub stdin: Option<String>,
    /// A failure is expected sometimes and not an error (e.g. nothing to delete).
    pub tolerate_failure: bool,
}

impl Cmd {
    pub fn new(netns: Option<&str>, argv: &[&str]) -> Cmd {
        Cmd {
            netns: netns.map(String::from),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: None,
            tolerate_failure: false,
        }
    }
    pub(super) fn stdin(mut self, s: String) -> Cmd {
        self.stdin = Some(s);
        self
    }
    pub(super) fn tolerant(mut self) -> Cmd {
        self.tolerate_failure = true;
        self
    }
    pub fn display(&self) -> String {
        match &self.netns {
            Some(ns) => format!("[{ns}] {}", self.argv.join(" ")),
            None => self.argv.join(" "),
        }
    }
}

/// Runs commands; returns stdout.
pub trait Runner: Send + Sync {
    fn run(&self, cmd: &Cmd) -> Result<String, RealiseError>;
    /// Sends a gratuitous ARP for `addr` out of `dev` (MAC `mac`) in `netns`.
    fn announce(
        &self,
        netns: Option<&str>,
        dev: &str,
        mac: MacAddr,
        addr: Ipv4Addr,
    ) -> std::io::Result<()>;
}

/// Runs the real tools. `ip`/`bridge` get `-n <netns>`; others run under `ip netns exec`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn announce(
        &self,
        netns: Option<&str>,
        dev: &str,
        mac: MacAddr,
        addr: Ipv4Addr,
    ) -> std::io::Result<()> {
        super::garp::announce(netns, dev, mac, addr)
    }

    fn run(&self, cmd: &Cmd) -> Result<String, RealiseError> {
        let argv = system_argv(cmd);
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_err = |source| RealiseError::Spawn {
            cmd: cmd.display(),
            source,
        };
        let mut child = c.spawn().map_err(spawn_err)?;
        if let Some(input) = &cmd.stdin {
            let mut si = child.stdin.take().expect("piped stdin");
            si.write_all(input.as_bytes()).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() && !cmd.tolerate_failure {
            let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if let Some(input) = &cmd.stdin {
                if stderr.len() < 2000 {
                    stderr.push_str(&format!("\n--- input ---\n{}", truncate(input, 4000)));
                }
            }
            return Err(RealiseError::Command {
                cmd: cmd.display(),
                stderr,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The real command line: `ip`/`bridge` get `-n <netns>`, others run under `ip netns exec`.
fn system_argv(cmd: &Cmd) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    match (&cmd.netns, cmd.argv[0].as_str()) {
        (Some(ns), "ip" | "bridge") => {
            argv.push(cmd.argv[0].clone());
            argv.extend(["-n".into(), ns.clone()]);
            argv.extend(cmd.argv[1..].iter().cloned());
        }
        (Some(ns), _) => {
            argv.extend(["ip", "netns", "exec"].map(String::from));
            argv.push(ns.clone());
            argv.extend(cmd.argv.iter().cloned());
        }
        (None, _) => argv.extend(cmd.argv.iter().cloned()),
    }
    argv
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Records every command; answers with canned stdout by command prefix (else `[]` for
/// JSON observations and empty text otherwise).
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct RecordingRunner {
    pub commands: Mutex<Vec<Cmd>>,
    pub answers: Mutex<Vec<(String, String)>>,
}

#[cfg(any(test, feature = "test-util"))]
impl RecordingRunner {
    pub fn answer(&self, prefix: &str, stdout: &str) {
        self.answers
            .lock()
            .unwrap()
            .push((prefix.into(), stdout.into()));
    }
    pub fn lines(&self) -> Vec<String> {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .map(|c| {
                let mut s = c.display();
                if let Some(i) = &c.stdin {
                    s.push_str(" <<\n");
                    s.push_str(i);
                }
                s
            })
            .collect()
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Runner for RecordingRunner {
    /// Recorded as the pseudo-command `garp <dev> <mac> <addr>`.
    fn announce(
        &self,
        netns: Option<&str>,
        dev: &str,
        mac: MacAddr,
        addr: Ipv4Addr,
    ) -> std::io::Result<()> {
        let argv = ["garp", dev, &mac.to_string(), &addr.to_string()];
        self.commands.lock().unwrap().push(Cmd::new(netns, &argv));
        Ok(())
    }

    fn run(&self, cmd: &Cmd) -> Result<String, RealiseError> {
        self.commands.lock().unwrap().push(cmd.clone());
        let line = cmd.argv.join(" ");
        for (p, out) in self.answers.lock().unwrap().iter() {
            if line.starts_with(p.as_str()) {
                return Ok(out.clone());
            }
        }
        Ok(if cmd.argv.iter().any(|a| a == "-j") {
            "[]".into()
        } else {
            String::new()
        })
    }
}
