//! The Vortex configuration file (TOML). The same file on every LB node of an
//! ECMP group gives identical Maglev tables.
//!
//! ```toml
//! table_size = 65537            # prime, >= 100 x backends of the largest VIP
//!
//! [[vip]]
//! name = "web"
//! address = "10.0.1.1"
//! port = 80
//! protocol = "tcp"              # or "udp"
//! hash = "flow"                 # or "source": the client address only (source-IP persistence)
//! [vip.health]
//! kind = "http"                 # "tcp" (connect), "http" (GET), "https" (GET over TLS),
//!                               # "udp" (no ICMP port unreachable) or "none"
//! path = "/"
//! expect = "200-399"            # http/https: the status codes that count as healthy
//! interval_ms = 500
//! timeout_ms = 400
//! rise = 2                      # consecutive successes to come back
//! fall = 2                      # consecutive failures to be removed
//! [[vip.backend]]
//! address = "10.0.0.11"
//! mac = "02:00:00:00:00:11"     # optional for IPv4: read from the neighbour table
//! weight = 1                    # 0 = drain: no new flows, existing ones stay
//! port = 8080                   # --mode nat: the backend's port (default: the VIP's)
//! # vxlan = { remote = "192.168.1.11", vni = 7, inner_mac = "02:..." }  # L3 backends
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};
use yunhan_types::StatusCodes;

use crate::error::VortexError;
use crate::maglev::{validate_size, TableError, DEFAULT_TABLE_SIZE};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_table_size")]
    pub table_size: u32,
    #[serde(default, rename = "vip")]
    pub vips: Vec<VipConfig>,
}

fn default_table_size() -> u32 {
    DEFAULT_TABLE_SIZE
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    #[serde(default = "default_proto")]
    pub protocol: Protocol,
    #[serde(default)]
    pub hash: FlowHash,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
}

fn default_proto() -> Protocol {
    Protocol::Tcp
}

/// What picks a flow's slot in the Maglev table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowHash {
    /// The 5-tuple: flows spread, each stays on its backend.
    #[default]
    Flow,
    /// The client address only: a client's flows all go to one backend.
    Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    None,
    Tcp,
    Http,
    /// HTTP over TLS, the backend's certificate not verified.
    Https,
    /// A datagram draws no ICMP "port unreachable" within the timeout (UDP services).
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub kind: HealthKind,
    /// Port to check; defaults to the VIP port.
    pub port: Option<u16>,
    pub path: String,
    /// HTTP(S): the status codes that count as healthy (`200,300-302`).
    pub expect: StatusCodes,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            kind: HealthKind::Tcp,
            port: None,
            path: "/".into(),
            expect: StatusCodes::default(),
            interval_ms: 1000,
            timeout_ms: 800,
            rise: 2,
            fall: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub address: IpAddr,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `--mode nat`: the port connections go to (default: the VIP's); health checks too.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub vxlan: Option<VxlanConfig>,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanConfig {
    /// Underlay address of the VXLAN endpoint in front of the backend.
    pub remote: Ipv4Addr,
    pub vni: u32,
    /// MAC of the backend's VXLAN device (inner destination MAC).
    pub inner_mac: String,
}

/// What is wrong with a configuration (reported as `configuration <path>: …`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("duplicate VIP {address}:{port}/{protocol:?}")]
    DuplicateVip {
        address: IpAddr,
        port: u16,
        protocol: Protocol,
    },
    #[error("vip {vip}: {source}")]
    VipTable { vip: String, source: TableError },
    #[error("vip {vip}: duplicate backend {backend}")]
    DuplicateBackend { vip: String, backend: IpAddr },
    #[error(
        "vip {vip}: backend {backend} has another address family (only VXLAN can cross families)"
    )]
    AddressFamily { vip: String, backend: IpAddr },
    #[error("bad mac {0:?}")]
    BadMac(String),
    #[error("backend {0}: IPv6 backends need an explicit mac")]
    Ipv6NeedsMac(IpAddr),
    #[error("bad inner_mac {0:?}")]
    BadInnerMac(String),
    #[error("vni {0} does not fit 24 bits")]
    VniTooLarge(u32),
    #[error("backend {0}: VXLAN needs mac (next hop)")]
    VxlanNeedsMac(IpAddr),
    #[error("vip {0}: rise and fall must be >= 1")]
    RiseFall(String),
}

impl Config {
    pub fn parse(text: &str, path: &Path) -> Result<Self, VortexError> {
        let parsed = toml::from_str::<Config>(text)
            .map_err(ConfigError::from)
            .and_then(|c| c.validate().map(|()| c));
        parsed.map_err(|source| VortexError::Config {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn load(path: &Path) -> Result<Self, VortexError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| VortexError::io(format!("reading {}", path.display()), e))?;
        Self::parse(&text, path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_size(self.table_size, 0)?;
        let mut seen = std::collections::HashSet::new();
        for v in &self.vips {
            if !seen.insert((v.address, v.port, v.protocol)) {
                return Err(ConfigError::DuplicateVip {
                    address: v.address,
                    port: v.port,
                    protocol: v.protocol,
                });
            }
            validate_size(self.table_size, v.backends.len()).map_err(|source| {
                ConfigError::VipTable {
                    vip: v.name.clone(),
                    source,
                }
            })?;
            let mut addrs = std::collections::HashSet::new();
            for b in &v.backends {
                if !addrs.insert(b.address) {
                    return Err(ConfigError::DuplicateBackend {
                        vip: v.name.clone(),
                        backend: b.address,
                    });
                }
                if b.address.is_ipv4() != v.address.is_ipv4() && b.vxlan.is_none() {
                    return Err(ConfigError::AddressFamily {
                        vip: v.name.clone(),
                        backend: b.address,
                    });
                }
                if let Some(m) = &b.mac {
                    crate::packet::parse_mac(m).ok_or_else(|| ConfigError::BadMac(m.clone()))?;
                }
                if b.address.is_ipv6() && b.mac.is_none() && b.vxlan.is_none() {
                    return Err(ConfigError::Ipv6NeedsMac(b.address));
                }
                if let Some(x) = &b.vxlan {
                    crate::packet::parse_mac(&x.inner_mac)
                        .ok_or_else(|| ConfigError::BadInnerMac(x.inner_mac.clone()))?;
                    if x.vni >= 1 << 24 {
                        return Err(ConfigError::VniTooLarge(x.vni));
                    }
                    if b.mac.is_none() {
                        return Err(ConfigError::VxlanNeedsMac(b.address));
                    }
                }
            }
            if v.health.rise == 0 || v.health.fall == 0 {
                return Err(ConfigError::RiseFall(v.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_example() {
        let text = r#"
table_size = 1009
[[vip]]
name = "web"
address = "10.0.1.1"
port = 80
[vip.health]
kind = "http"
rise = 1
fall = 2
[[vip.backend]]
address = "10.0.0.11"
[[vip.backend]]
address = "10.0.0.12"
weight = 0
mac = "02:00:00:00:00:12"
"#;
        let c = Config::parse(text, Path::new("x")).unwrap();
        assert_eq!(c.vips[0].backends[1].weight, 0);
        assert_eq!(c.vips[0].health.kind, HealthKind::Http);
        assert_eq!(c.vips[0].health.interval_ms, 1000);
    }

    #[test]
    fn rejects_non_prime_and_unknown_fields() {
        assert!(Config::parse("table_size = 1000", Path::new("x")).is_err());
        assert!(Config::parse("tablesize = 1009", Path::new("x")).is_err());
    }
}
