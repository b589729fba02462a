//! Throwaway TLS material for tests (openssl, from `scripts/packages/vortex.txt`).

use std::path::Path;

/// Writes a self-signed P-256 certificate (valid 2 days, for IP address `ip` when given)
/// to `cert` and its key to `key`; panics with openssl's words if it fails.
pub fn self_signed(cert: &Path, key: &Path, ip: Option<&str>) {
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "2", "-subj", "/CN=yunhan-test"]);
    if let Some(ip) = ip {
        cmd.arg("-addext").arg(format!("subjectAltName=IP:{ip}"));
    }
    let out = (cmd.arg("-keyout").arg(key).arg("-out").arg(cert))
        .output()
        .expect("openssl is installed (scripts/setup --test)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
