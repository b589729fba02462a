//! Health checks: TCP connect or HTTP GET, with rise/fall thresholds.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{HealthConfig, HealthKind};

/// One probe. `true` = healthy.
pub async fn probe(cfg: &HealthConfig, target: SocketAddr) -> bool {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    match cfg.kind {
        HealthKind::None => true,
        HealthKind::Tcp => matches!(
            tokio::time::timeout(timeout, TcpStream::connect(target)).await,
            Ok(Ok(_))
        ),
        HealthKind::Http => tokio::time::timeout(timeout, http_get(target, &cfg.path))
            .await
            .unwrap_or(false),
    }
}

async fn http_get(target: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(target).await else {
        return false;
    };
    let host = match target {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: yunhan-vortex-health\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    // "HTTP/1.x 200 ..."
    let line = String::from_utf8_lossy(&buf[..n]);
    let code: Option<u16> = line.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    matches!(code, Some(200..=399))
}

/// Rise/fall state machine of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub healthy: bool,
    successes: u32,
    failures: u32,
}

impl Default for HealthState {
    /// Backends start healthy (like HAProxy): a restarted LB must not drop new
    /// flows while it re-learns health.
    fn default() -> Self {
        Self {
            healthy: true,
            successes: 0,
            failures: 0,
        }
    }
}

impl HealthState {
    /// Start unhealthy (e.g. a restarted daemon that finds the backend DOWN).
    pub fn down() -> Self {
        Self {
            healthy: false,
            successes: 0,
            failures: 0,
        }
    }

    /// Record a probe result; returns true if `healthy` flipped.
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> bool {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.healthy && self.successes >= rise {
                self.healthy = true;
                return true;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.healthy && self.failures >= fall {
                self.healthy = false;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall() {
        let mut s = HealthState::default();
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(true, 2, 3)); // resets failures
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(false, 2, 3));
        assert!(s.record(false, 2, 3));
        assert!(!s.healthy);
        assert!(!s.record(true, 2, 3));
        assert!(s.record(true, 2, 3));
        assert!(s.healthy);
    }

    #[tokio::test]
    async fn probes_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 256];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nok").await;
            }
        });
        let mut cfg = HealthConfig {
            timeout_ms: 1000,
            ..Default::default()
        };
        assert!(probe(&cfg, addr).await);
        cfg.kind = HealthKind::Http;
        assert!(probe(&cfg, addr).await);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(!probe(&cfg, closed).await);
    }
}
