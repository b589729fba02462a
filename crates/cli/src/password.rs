//! Reading a new password on the terminal, not echoed, twice.

use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::AsFd;

use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};

use crate::client::ClientError;

fn usage(msg: &str) -> ClientError {
    ClientError::Usage(msg.to_string())
}

/// One line from the terminal with echo off (restored afterwards).
fn read_hidden(prompt: &str) -> Result<String, ClientError> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved =
        tcgetattr(stdin.as_fd()).map_err(|e| usage(&format!("cannot read the terminal: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet);
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &saved);
    eprintln!();
    read.map_err(|e| usage(&format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// A new password typed twice on the terminal.
pub fn prompt_new() -> Result<String, ClientError> {
    if !std::io::stdin().is_terminal() {
        return Err(usage(
            "standard input is not a terminal: pass the password with --password-stdin",
        ));
    }
    let first = read_hidden("New password: ")?;
    let again = read_hidden("Again: ")?;
    if first != again {
        return Err(usage("the two passwords differ; nothing was changed"));
    }
    Ok(first)
}
