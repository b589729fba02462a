//! `yunhan vm console`: an interactive serial console in the terminal.

use std::io::Write;
use std::os::fd::AsFd;

use futures::{SinkExt, StreamExt};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{ClientError, ConsoleStream};

/// Ctrl-] leaves the console, as in telnet and virsh.
const ESCAPE: u8 = 0x1d;

/// Puts the terminal in raw mode and restores it when dropped.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enable() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Pipes the terminal to the console until Ctrl-] or the VM closes it.
pub async fn interactive(ws: ConsoleStream, name: &str) -> Result<(), ClientError> {
    eprintln!("connected to the console of {name}; press Enter for a prompt, Ctrl-] to leave\r");
    let _raw = RawMode::enable();
    let (mut tx, mut rx) = ws.split();
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            n = stdin.read(&mut buf) => {
                let n = n.unwrap_or(0);
                if n == 0 {
                    break;
                }
                if let Some(pos) = buf[..n].iter().position(|b| *b == ESCAPE) {
                    if pos > 0 {
                        let _ = tx.send(Message::Binary(buf[..pos].to_vec().into())).await;
                    }
                    break;
                }
                if tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                    break;
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&b);
                    let _ = out.flush();
                }
                Some(Ok(Message::Text(t))) => print!("{t}"),
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    eprintln!("\r\nleft the console of {name}\r");
    Ok(())
}
