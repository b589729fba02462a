//! Waiting for the cloud to catch up, with progress on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use serde::de::DeserializeOwned;
use yunhan_model::Doc;

use crate::client::{Answer, Client, ClientError};
use crate::kind::{Obj, Shown};

/// `--wait` and how long it waits.
#[derive(Args, Debug, Clone)]
pub struct WaitArgs {
    /// Wait until the agent has done it
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `90`, `90s`, `5m` or `500ms`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let bad = || format!("{s:?} is not a duration like 90s or 5m");
    let n: u64 = num.parse().map_err(|_| bad())?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs).ok_or_else(bad),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(bad()),
    }
}

/// What a wait decides on each look: `None` to go on, else its outcome
/// (an error message fails the command).
pub(crate) type Verdict = Option<Result<(), String>>;

/// Polls `path` until `done` says so, drawing a spinner with the current
/// phase on a terminal (plain lines on phase changes otherwise). `None`
/// when the object is gone.
pub(crate) async fn wait_for<K: Shown>(
    client: &Client,
    path: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(Option<&Doc<K>>) -> Verdict,
) -> Result<Option<Obj<K>>, ClientError> {
    wait_showing(client, path, what, timeout, K::phase, done).await
}

/// [`wait_for`] showing `progress` of the object instead of its phase.
pub(crate) async fn wait_showing<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    what: &str,
    timeout: Duration,
    progress: impl Fn(&T) -> String,
    done: impl Fn(Option<&T>) -> Verdict,
) -> Result<Option<Answer<T>>, ClientError> {
    let mut spinner = Spinner::new(what);
    loop {
        let current = match client.get_as::<T>(path).await {
            Ok(v) => Some(v),
            Err(ClientError::Api(e, 404)) if e.code == yunhan_model::ErrorCode::NotFound => None,
            Err(e) => return Err(e),
        };
        let now = current.as_deref();
        spinner.show(now.map_or("gone".to_string(), &progress));
        if let Some(result) = done(now) {
            spinner.end();
            return result.map(|_| current).map_err(ClientError::Usage);
        }
        if spinner.start.elapsed() > timeout {
            spinner.end();
            return Err(ClientError::Timeout(timeout, what.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The progress line of a wait: a spinner on a terminal, else a line per change.
struct Spinner<'a> {
    what: &'a str,
    tty: bool,
    start: Instant,
    last: String,
    turns: usize,
}

impl Spinner<'_> {
    fn new(what: &str) -> Spinner<'_> {
        Spinner {
            what,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            last: String::new(),
            turns: 0,
        }
    }

    fn show(&mut self, phase: String) {
        const SPIN: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
        let what = self.what;
        if self.tty {
            eprint!(
                "\r\x1b[2K{} waiting for {what}: {phase} ({}s)",
                SPIN[self.turns % SPIN.len()],
                self.start.elapsed().as_secs()
            );
            let _ = std::io::stderr().flush();
        } else if phase != self.last {
            eprintln!("waiting for {what}: {phase}");
        }
        self.last = phase;
        self.turns += 1;
    }

    fn end(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
        assert!(
            parse_duration("999999999999999999m").is_err(),
            "overflow is an error"
        );
    }
}
