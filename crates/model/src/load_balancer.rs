//! Load balancers (issue #16): a virtual address in a subnet (and, when external, an
//! elastic IP in front of it) with listeners that spread connections over members of the
//! VPC, checked by health monitors. One document per load balancer holds its listeners,
//! each with its pool of members and its health monitor (Octavia's LoadBalancer,
//! Listener, Pool, Member and HealthMonitor, nested). The API makes the virtual address a
//! NIC owned by the load balancer (`api/src/load_balancers.rs`); the controller places it
//! on a host (`controller/src/load_balancer.rs`); that host's agent realises it in a
//! namespace of its own on the VPC bridge with HAProxy (`agent/src/load_balancer/`) and
//! reports each member's health. Design note: `docs/load-balancer.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::network::parse_ip;
use crate::{validate_name, ApiError, Kind, Scope, Usage};

/// How many listeners a load balancer may have, and members a listener.
pub const MAX_LISTENERS: usize = 16;
pub const MAX_MEMBERS: usize = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LbProtocol {
    /// Layer 4: connections are passed through to a member.
    #[default]
    Tcp,
    /// Layer 7: HTTP requests are proxied to a member.
    Http,
    /// Layer 7 with TLS terminated here (`certificate` and `key`).
    Https,
    /// Layer 4 datagrams (not supported yet: refused).
    Udp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LbAlgorithm {
    #[default]
    RoundRobin,
    LeastConnections,
    /// The same client address goes to the same member (session persistence by source).
    SourceIp,
}

/// One backend: a VM's NIC in the load balancer's VPC (by VM or NIC), or an address in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LbMember {
    /// A VM (name or id; stored as the id): its NIC in the load balancer's VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// A NIC of the VPC (name or id; stored as the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<String>,
    /// The member's address: given for a plain address, else filled from the NIC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    pub port: u16,
    /// Relative share of new connections, 0–256; 0 drains it (open connections stay).
    #[serde(default = "one")]
    pub weight: u16,
}

fn one() -> u16 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// The member accepts a TCP connection.
    #[default]
    Tcp,
    /// `GET path` answers 2xx or 3xx.
    Http,
}

/// How members are checked; a member is down after `fall` failed checks in a row and up
/// again after `rise` good ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthMonitor {
    #[serde(rename = "type")]
    pub kind: HealthKind,
    /// With `type: http`: the path to GET.
    #[serde(default = "slash")]
    pub path: String,
    #[serde(default = "two")]
    pub interval_secs: u32,
    #[serde(default = "one32")]
    pub timeout_secs: u32,
    #[serde(default = "two")]
    pub rise: u32,
    #[serde(default = "two")]
    pub fall: u32,
}

fn slash() -> String {
    "/".into()
}
fn two() -> u32 {
    2
}
fn one32() -> u32 {
    1
}

impl Default for HealthMonitor {
    fn default() -> Self {
        HealthMonitor {
            kind: HealthKind::Tcp,
            path: slash(),
            interval_secs: 2,
            timeout_secs: 1,
            rise: 2,
            fall: 2,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique within the load balancer (letters, digits, '-', '_').
    pub name: String,
    pub protocol: LbProtocol,
    pub port: u16,
    #[serde(default)]
    pub algorithm: LbAlgorithm,
    /// At most this many connections at once (0: no limit).
    #[serde(default)]
    pub connection_limit: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<LbMember>,
    /// Without one, every member is taken as up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthMonitor>,
    /// HTTPS: the certificate chain (PEM) presented to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// HTTPS: the certificate's private key (PEM). Write-only: the API keeps it as a secret
    /// and never returns it; leave it out to keep the stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerSpec {
    /// The subnet of its virtual address (name or id; stored as the id). Cannot change.
    pub subnet: String,
    /// Also reachable from outside through an elastic IP (from the default external
    /// network) bound to its address. Cannot change.
    #[serde(default)]
    pub external: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LbPhase {
    /// Made, not yet serving (no host yet, or its host has not realised it).
    #[default]
    Provisioning,
    /// Serving on `host`.
    Active,
    /// Cannot be realised (`message` says why).
    Failed,
}

impl std::fmt::Display for LbPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LbPhase::Provisioning => "Provisioning",
            LbPhase::Active => "Active",
            LbPhase::Failed => "Failed",
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberHealth {
    /// Not checked yet (or no health monitor and not realised yet).
    #[default]
    Unknown,
    Up,
    Down,
    /// Weight 0: gets no new connections.
    Drained,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberStatus {
    pub address: String,
    pub port: u16,
    pub health: MemberHealth,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerStatus {
    pub name: String,
    /// What serves it (`haproxy`).
    #[serde(default)]
    pub engine: String,
    /// Connections (layer 4) or requests (layer 7) served since it started on its host.
    #[serde(default)]
    pub connections: u64,
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub members: Vec<MemberStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerStatus {
    #[serde(default)]
    pub phase: LbPhase,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default)]
    pub vpc: String,
    /// The virtual address in the subnet.
    #[serde(default)]
    pub address: String,
    /// The elastic IP's address (external load balancers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub external_address: String,
    /// The NIC holding `address` (owned by the load balancer) and its elastic IP.
    #[serde(default)]
    pub nic: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub elastic_ip: String,
    /// The port as the agent plugs it: host-side device, MAC, prefix, gateway.
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub prefix_len: u8,
    #[serde(default)]
    pub gateway: String,
    /// The host realising it (id), chosen by the controller.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The configuration its host serves (hash), as the agent reports it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub served: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}

/// A load balancer: listeners on a virtual address, members behind them.
pub struct LoadBalancer;
impl Kind for LoadBalancer {
    const KIND: &'static str = "LoadBalancer";
    const PLURAL: &'static str = "load-balancers";
    const ID_PREFIX: &'static str = "lb";
    const SCOPE: Scope = Scope::Project;
    const ADMIN_WRITE: bool = false;
    type Spec = LoadBalancerSpec;
    type Status = LoadBalancerStatus;
    fn usage(spec: &LoadBalancerSpec, _status: &LoadBalancerStatus) -> Usage {
        Usage {
            load_balancers: 1,
            listeners: spec.listeners.len() as u64,
            ..Usage::default()
        }
    }
    fn validate(spec: &LoadBalancerSpec) -> Result<(), ApiError> {
        validate_name("spec.subnet", &spec.subnet)?;
        if spec.listeners.len() > MAX_LISTENERS {
            return Err(ApiError::invalid_field(
                "spec.listeners",
                format!("at most {MAX_LISTENERS} listeners"),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut ports = std::collections::HashMap::new();
        for (i, l) in spec.listeners.iter().enumerate() {
            let field = format!("spec.listeners[{i}]");
            l.validate(&field)?;
            if !names.insert(l.name.as_str()) {
                return Err(ApiError::invalid_field(
                    &field,
                    format!("two listeners are named {:?}", l.name),
                ));
            }
            if let Some(other) = ports.insert(l.port, l.name.as_str()) {
                return Err(ApiError::invalid_field(
                    &field,
                    format!("port {} is already listener {other:?}'s", l.port),
                ));
            }
        }
        Ok(())
    }
}

impl Listener {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::invalid_field(field, m));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && (self.name.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return bad(format!(
                "listener name {:?}: 1–32 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.port == 0 {
            return bad("port must be 1–65535".into());
        }
        if self.protocol == LbProtocol::Udp {
            return bad("udp listeners are not supported yet; use tcp, http or https".into());
        }
        let https = self.protocol == LbProtocol::Https;
        if https && self.certificate.is_none() {
            return bad("an https listener needs a certificate and its key".into());
        }
        if !https && (self.certificate.is_some() || self.key.is_some()) {
            return bad("only an https listener takes a certificate and key".into());
        }
        for (what, pem) in [("certificate", &self.certificate), ("key", &self.key)] {
            if pem
                .as_ref()
                .is_some_and(|p| p.len() > 64 * 1024 || !p.contains("-----BEGIN "))
            {
                return bad(format!("the {what} is not PEM text (at most 64 KiB)"));
            }
        }
        if self.members.len() > MAX_MEMBERS {
            return bad(format!("at most {MAX_MEMBERS} members"));
        }
        let mut seen = std::collections::HashSet::new();
        for (j, m) in self.members.iter().enumerate() {
            let f = format!("{field}.members[{j}]");
            m.validate(&f)?;
            let key = (m.vm.clone(), m.nic.clone(), m.address.clone(), m.port);
            if !seen.insert(key) {
                return Err(ApiError::invalid_field(&f, "this member is already there"));
            }
        }
        if let Some(h) = &self.health {
            h.validate(&format!("{field}.health"))?;
        }
        Ok(())
    }
}

impl LbMember {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let given = [self.vm.is_some(), self.nic.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given > 1 {
            return Err(ApiError::invalid_field(
                field,
                "give a vm or a nic, not both",
            ));
        }
        if given == 0 && self.address.is_empty() {
            return Err(ApiError::invalid_field(
                field,
                "give a vm, a nic or an address",
            ));
        }
        if let Some(v) = &self.vm {
            validate_name(&format!("{field}.vm"), v)?;
        }
        if let Some(n) = &self.nic {
            validate_name(&format!("{field}.nic"), n)?;
        }
        if !self.address.is_empty() {
            parse_ip(&format!("{field}.address"), &self.address)?;
        }
        if self.port == 0 {
            return Err(ApiError::invalid_field(field, "port must be 1–65535"));
        }
        if self.weight > 256 {
            return Err(ApiError::invalid_field(field, "weight is 0–256"));
        }
        Ok(())
    }
}

impl HealthMonitor {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::invalid_field(field, m.to_string()));
        if !(1..=3600).contains(&self.interval_secs) || !(1..=3600).contains(&self.timeout_secs) {
            return bad("interval and timeout are 1–3600 s");
        }
        if !(1..=10).contains(&self.rise) || !(1..=10).contains(&self.fall) {
            return bad("rise and fall are 1–10");
        }
        let path_ok = self.path.starts_with('/')
            && self.path.len() <= 256
            && (self.path.bytes()).all(|b| b.is_ascii_graphic());
        if !path_ok {
            return bad("the path starts with / and has no spaces (at most 256 characters)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(name: &str, protocol: LbProtocol, port: u16) -> Listener {
        Listener {
            name: name.into(),
            protocol,
            port,
            ..Default::default()
        }
    }

    #[test]
    fn listeners_are_checked() {
        let spec = |listeners| LoadBalancerSpec {
            subnet: "s1".into(),
            external: true,
            listeners,
        };
        let mut http = listener("http", LbProtocol::Http, 80);
        http.members.push(LbMember {
            vm: Some("w1".into()),
            port: 80,
            weight: 1,
            ..Default::default()
        });
        http.health = Some(HealthMonitor::default());
        LoadBalancer::validate(&spec(vec![
            http.clone(),
            listener("tcp", LbProtocol::Tcp, 8080),
        ]))
        .unwrap();
        for (bad, why) in [
            (
                vec![http.clone(), listener("b", LbProtocol::Tcp, 80)],
                "already listener \"http\"",
            ),
            (
                vec![http.clone(), listener("http", LbProtocol::Tcp, 81)],
                "two listeners are named",
            ),
            (
                vec![listener("s", LbProtocol::Https, 443)],
                "needs a certificate",
            ),
            (
                vec![listener("u", LbProtocol::Udp, 53)],
                "udp listeners are not supported yet",
            ),
            (vec![listener("a b", LbProtocol::Tcp, 1)], "listener name"),
            (vec![listener("z", LbProtocol::Tcp, 0)], "port must be"),
        ] {
            let e = LoadBalancer::validate(&spec(bad)).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        let mut twice = http.clone();
        twice.members.push(twice.members[0].clone());
        let e = LoadBalancer::validate(&spec(vec![twice])).unwrap_err();
        assert!(e.to_string().contains("already there"), "{e}");
        let mut nothing = http;
        nothing.members[0].vm = None;
        let e = LoadBalancer::validate(&spec(vec![nothing])).unwrap_err();
        assert!(
            e.to_string().contains("give a vm, a nic or an address"),
            "{e}"
        );
    }

    #[test]
    fn the_contracts_json_reads() {
        let h: HealthMonitor =
            serde_json::from_value(serde_json::json!({"type": "http", "interval_secs": 2}))
                .unwrap();
        assert_eq!(
            (h.kind, h.path.as_str(), h.rise, h.fall),
            (HealthKind::Http, "/", 2, 2)
        );
    }
}
