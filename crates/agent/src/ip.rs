//! `ip` (iproute2), in a namespace or not, and what its JSON says of links: what the load
//! balancers' namespaces (`load_balancer/namespace.rs`) and object storage's VPC address
//! (`network/s3_service.rs`) share.

use std::io;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde::de::DeserializeOwned;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum IpError {
    #[error("cannot run ip: {0}")]
    Spawn(#[source] io::Error),
    #[error("ip {args}: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("unreadable output of ip {args}: {source}")]
    Json {
        args: String,
        source: serde_json::Error,
    },
}

impl IpError {
    /// The command ran and said the device (or namespace) does not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self, IpError::Ip { stderr, .. } if stderr.contains("does not exist"))
    }
}

/// A link as `ip -j addr show` lists it.
#[derive(Debug, Deserialize)]
pub struct Link {
    pub ifname: String,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub mtu: u32,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Deserialize)]
pub struct AddrInfo {
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub local: String,
    #[serde(default)]
    pub prefixlen: u8,
}

impl Link {
    pub fn up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }

    /// Whether the link holds IPv4 `addr`/`prefix`.
    pub fn holds(&self, addr: Ipv4Addr, prefix: u8) -> bool {
        let addr = addr.to_string();
        (self.addr_info.iter())
            .any(|a| a.family == "inet" && a.local == addr && a.prefixlen == prefix)
    }
}

/// Runs `ip [-n netns] args…`; its standard output.
pub fn ip(netns: Option<&str>, args: &[&str]) -> Result<String, IpError> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = (cmd.args(args).stdin(Stdio::null()).output()).map_err(IpError::Spawn)?;
    if !out.status.success() {
        let shown = netns.map(|ns| format!("-n {ns} ")).unwrap_or_default();
        return Err(IpError::Ip {
            args: format!("{shown}{}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`ip`] with `-j` output read as a `T`.
pub fn ip_json<T: DeserializeOwned>(netns: Option<&str>, args: &[&str]) -> Result<T, IpError> {
    parse_json(args, &ip(netns, args)?)
}

/// The `-j` output `out` of `ip args…` read as a `T`.
pub fn parse_json<T: DeserializeOwned>(args: &[&str], out: &str) -> Result<T, IpError> {
    serde_json::from_str(out).map_err(|source| IpError::Json {
        args: args.join(" "),
        source,
    })
}
