//! Health checks: TCP connect, HTTP GET, HTTPS GET (the backend's certificate not
//! verified, as load balancers' checks do not) or a UDP datagram, with rise/fall
//! thresholds.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{HealthConfig, HealthKind};

/// One probe. `true` = healthy.
pub async fn probe(cfg: &HealthConfig, target: SocketAddr) -> bool {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let http = |tls| tokio::time::timeout(timeout, http_get(cfg, target, tls));
    match cfg.kind {
        HealthKind::None => true,
        HealthKind::Tcp => matches!(
            tokio::time::timeout(timeout, TcpStream::connect(target)).await,
            Ok(Ok(_))
        ),
        HealthKind::Http => http(false).await.unwrap_or(false),
        HealthKind::Https => http(true).await.unwrap_or(false),
        HealthKind::Udp => udp_alive(target, timeout).await,
    }
}

/// Octavia's UDP-CONNECT: a datagram from a connected socket, and no ICMP "port
/// unreachable" (ECONNREFUSED on the socket) within `timeout`. An answer or silence is
/// up: a UDP service need not answer an empty probe.
async fn udp_alive(target: SocketAddr, timeout: Duration) -> bool {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(s) = tokio::net::UdpSocket::bind(any).await else {
        return false;
    };
    if s.connect(target).await.is_err() || s.send(b"\n").await.is_err() {
        return false;
    }
    match tokio::time::timeout(timeout, s.recv(&mut [0u8; 512])).await {
        Ok(Err(e)) => e.kind() != std::io::ErrorKind::ConnectionRefused,
        Ok(Ok(_)) | Err(_) => true,
    }
}

async fn http_get(cfg: &HealthConfig, target: SocketAddr, tls: bool) -> bool {
    let Ok(s) = TcpStream::connect(target).await else {
        return false;
    };
    let code = if tls {
        let name = ServerName::IpAddress(target.ip().into());
        match tls_connector().connect(name, s).await {
            Ok(s) => status_of(s, target, &cfg.path).await,
            Err(_) => None,
        }
    } else {
        status_of(s, target, &cfg.path).await
    };
    code.is_some_and(|c| cfg.expect.contains(c))
}

/// Sends `GET path` on `s` and reads the answer's status code.
async fn status_of<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    target: SocketAddr,
    path: &str,
) -> Option<u16> {
    let host = match target {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: yunhan-vortex-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
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
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One TLS client for every HTTPS check: TLS 1.2 or 1.3, any certificate.
fn tls_connector() -> TlsConnector {
    static CONNECTOR: OnceLock<TlsConnector> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            TlsConnector::from(Arc::new(config))
        })
        .clone()
}

/// A health check asks whether the backend answers, not who it is: any certificate goes,
/// but the handshake's signatures are still checked against it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
    use tokio::io::AsyncBufReadExt;

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
        cfg.expect = "404".parse().unwrap();
        assert!(!probe(&cfg, addr).await, "200 is not an expected code");
        cfg.expect = "200,404".parse().unwrap();
        assert!(probe(&cfg, addr).await);
        cfg.kind = HealthKind::Https;
        assert!(!probe(&cfg, addr).await, "no TLS there");
        cfg.kind = HealthKind::Http;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(!probe(&cfg, closed).await);
    }

    #[tokio::test]
    async fn probes_udp() {
        let cfg = HealthConfig {
            kind: HealthKind::Udp,
            timeout_ms: 300,
            ..Default::default()
        };
        let open = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(
            probe(&cfg, open.local_addr().unwrap()).await,
            "silence is up"
        );
        let answers = open.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 16];
            while let Ok((_, from)) = open.recv_from(&mut b).await {
                let _ = open.send_to(b"pong", from).await;
            }
        });
        assert!(probe(&cfg, answers).await, "an answer is up");
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        assert!(!probe(&cfg, closed).await, "port unreachable is down");
    }

    /// An HTTPS backend: `openssl s_server -www` with a throwaway self-signed certificate,
    /// on a loopback port it picks and prints.
    #[tokio::test]
    async fn probes_https() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        yunhan_testkit::tls::self_signed(&cert, &key, None);
        let mut server = tokio::process::Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-www", "-cert"])
            .args([&cert, std::path::Path::new("-key"), &key])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
        let addr: SocketAddr = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("s_server says ACCEPT");
            if let Some(a) = line.strip_prefix("ACCEPT ") {
                break a.parse().unwrap();
            }
        };
        let mut cfg = HealthConfig {
            kind: HealthKind::Https,
            timeout_ms: 2000,
            ..Default::default()
        };
        assert!(probe(&cfg, addr).await, "s_server -www answers 200");
        cfg.expect = "204".parse().unwrap();
        assert!(!probe(&cfg, addr).await, "200 is not 204");
        cfg.kind = HealthKind::Http;
        cfg.expect = "200-599".parse().unwrap();
        assert!(
            !probe(&cfg, addr).await,
            "plain HTTP to a TLS port gets no status"
        );
    }
}
