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

use crate::meta::{kind_consts, validate_optional_name};
use crate::network::parse_ip;
use crate::{validate_name, ApiError, Kind, Usage};
use yunhan_types::StatusCodes;

mod replicas;
pub use replicas::{LbReplica, MAX_REPLICAS};

/// How many listeners a load balancer may have, and members a listener.
pub const MAX_LISTENERS: usize = 16;
pub const MAX_MEMBERS: usize = 64;
/// How many layer-7 rules a listener may have.
pub const MAX_RULES: usize = 16;
/// The longest listener timeout: 24 days, in ms (HAProxy's ceiling is 2^31 - 1 ms).
pub const MAX_TIMEOUT_MS: u32 = 24 * 86_400_000;

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
    /// Layer 4 datagrams (served by Vortex: round-robin or source-IP, no health
    /// monitor yet, no connection limit).
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

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// The member accepts a TCP connection.
    #[default]
    Tcp,
    /// `GET path` answers one of the expected codes.
    Http,
    /// The same over TLS, for members of a tcp listener that speak TLS themselves (their
    /// certificate is not verified, as Octavia's amphorae do not).
    Https,
    /// For udp listeners (Octavia's UDP-CONNECT): a datagram to the member draws no ICMP
    /// "port unreachable" within the timeout.
    #[serde(rename = "udp_connect")]
    UdpConnect,
}

/// How members are checked; a member is down after `fall` failed checks in a row and up
/// again after `rise` good ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthMonitor {
    #[serde(rename = "type")]
    pub kind: HealthKind,
    /// With `type: http` or `https`: the path to GET.
    #[serde(default = "slash")]
    pub path: String,
    /// With `type: http` or `https`: the answers that count as up, Octavia's form
    /// (`200`, `200,202`, `200-204`).
    #[serde(default = "any_success")]
    pub expected_codes: String,
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
fn any_success() -> String {
    StatusCodes::default().to_string()
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
            expected_codes: any_success(),
            interval_secs: 2,
            timeout_secs: 1,
            rise: 2,
            fall: 2,
        }
    }
}

/// How a client is kept on the member it first reached (Octavia's session persistence).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    /// None beyond what the algorithm gives.
    #[default]
    None,
    /// A client address stays on its member for 30 minutes after its last connection,
    /// whatever the algorithm (any protocol).
    SourceIp,
    /// HTTP/HTTPS: the load balancer sets a cookie (`YUNHAN_LB`) naming the member;
    /// a browser that sends it back stays there.
    HttpCookie,
    /// HTTP/HTTPS: the application's own cookie (`persistence_cookie`, e.g. a session
    /// id): requests carrying the same value go to the same member, for 30 minutes after
    /// the value was last seen.
    AppCookie,
}

/// What a request matching a layer-7 rule gets (Octavia's L7 policy actions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum L7Action {
    /// It goes to the rule's own members (REDIRECT_TO_POOL).
    #[default]
    Forward,
    /// An HTTP redirect to `redirect_url` (REDIRECT_TO_URL), code `redirect_code`.
    Redirect,
    /// 403 Forbidden (REJECT).
    Reject,
}

/// The redirect codes a rule may answer with (Octavia's).
pub const REDIRECT_CODES: [u16; 5] = [301, 302, 303, 307, 308];

/// A layer-7 rule of an HTTP/HTTPS listener: requests whose Host header and path match
/// go to the rule's own members instead of the listener's, are redirected or are refused
/// (Octavia's L7 policies, with their HOST_NAME and PATH rules). Rules are tried in order;
/// the first that matches wins; none matching leaves the request to the listener's
/// members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct L7Rule {
    /// Unique within the listener (letters, digits, '-', '_').
    pub name: String,
    /// The request's host name, without its port, compared case-insensitively
    /// (`api.example.com`); empty: any host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The request's path starts with this (`/api/`); empty: any path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub action: L7Action,
    /// With `action: redirect`: where to (an absolute http:// or https:// URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// With `action: redirect`: 301, 302 (the default), 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_code: Option<u16>,
    /// With `action: forward`: where matching requests go (checked by the listener's
    /// health monitor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<LbMember>,
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
    /// How long a client may stay silent, in ms (Octavia's `timeout_client_data`;
    /// default 60,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_client_data_ms: Option<u32>,
    /// How long connecting to a member may take, in ms (default 5,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_member_connect_ms: Option<u32>,
    /// How long a member may stay silent, in ms (default 60,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_member_data_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<LbMember>,
    /// Without one, every member is taken as up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthMonitor>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub persistence: Persistence,
    /// With `persistence: app_cookie`: the application's cookie (Octavia's `cookie_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_cookie: Option<String>,
    /// HTTP/HTTPS: requests matching a rule go to its members (first match wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<L7Rule>,
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
    /// How many hosts serve it at once (1–4; left out: 1). With more than one, every
    /// router of the VPC spreads flows over the replicas (ECMP, by an L4 hash), each
    /// replica makes the same member choice for the same flow, and a lost replica's
    /// address moves with its flows to a surviving host (`replicas.rs`). Internal load
    /// balancers only, for now. Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u8>,
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
    /// The layer-7 rule whose member it is (empty: the listener's own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
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
#[serde(default, deny_unknown_fields)]
pub struct LoadBalancerStatus {
    pub phase: LbPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub vpc: String,
    /// The virtual address in the subnet.
    pub address: String,
    /// The elastic IP's address (external load balancers).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_address: String,
    /// The NIC holding `address` (owned by the load balancer) and its elastic IP.
    pub nic: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub elastic_ip: String,
    /// The port as the agent plugs it: host-side device, MAC, prefix, gateway.
    pub device: String,
    pub mac: String,
    pub prefix_len: u8,
    pub gateway: String,
    /// The host realising it (id), chosen by the controller.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The configuration its host serves (hash), as the agent reports it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub served: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
    /// With `spec.replicas` above 1: each replica, where it runs and what it serves (the
    /// fields above then sum them up: see `replicas.rs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<LbReplica>,
}

/// A load balancer: listeners on a virtual address, members behind them.
pub struct LoadBalancer;
impl Kind for LoadBalancer {
    kind_consts!("LoadBalancer", "load-balancers", "lb", Project, admin_write: false);
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
        spec.validate_replicas()?;
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
    /// Its member lists: the listener's own (rule `""`), then each forward rule's (a
    /// redirect or reject rule answers itself: it has none).
    pub fn pools(&self) -> impl Iterator<Item = (&str, &Vec<LbMember>)> {
        let forward = (self.rules.iter()).filter(|r| r.action == L7Action::Forward);
        std::iter::once(("", &self.members)).chain(forward.map(|r| (r.name.as_str(), &r.members)))
    }

    /// Every member list, the listener's then each rule's in order, to change them.
    pub fn pools_mut(&mut self) -> impl Iterator<Item = (&str, &mut Vec<LbMember>)> {
        std::iter::once(("", &mut self.members))
            .chain((self.rules.iter_mut()).map(|r| (r.name.as_str(), &mut r.members)))
    }

    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::invalid_field(field, m));
        if !short_name(&self.name) {
            return bad(format!(
                "listener name {:?}: 1–32 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.port == 0 {
            return bad("port must be 1–65535".into());
        }
        self.validate_udp(field)?;
        self.validate_tls(field)?;
        if self.timeouts().any(|t| !(1..=MAX_TIMEOUT_MS).contains(&t)) {
            return bad("timeouts are 1 ms to 24 days".into());
        }
        let layer7 = matches!(self.protocol, LbProtocol::Http | LbProtocol::Https);
        let cookie = matches!(
            self.persistence,
            Persistence::HttpCookie | Persistence::AppCookie
        );
        if !layer7 && cookie {
            return bad("cookie persistence needs an http or https listener".into());
        }
        let app = self.persistence == Persistence::AppCookie;
        match &self.persistence_cookie {
            Some(c) if !app => {
                return bad(format!(
                    "persistence_cookie {c:?} goes with app_cookie persistence"
                ))
            }
            Some(c) if !cookie_name(c) => {
                return bad(format!(
                    "persistence_cookie {c:?}: 1–64 letters, digits, '-', '_' or '.'"
                ))
            }
            None if app => return bad("app_cookie persistence needs persistence_cookie".into()),
            _ => {}
        }
        if !layer7 && !self.rules.is_empty() {
            return bad("layer-7 rules need an http or https listener".into());
        }
        validate_members(&format!("{field}.members"), &self.members)?;
        self.validate_rules(field)?;
        if let Some(h) = &self.health {
            h.validate(&format!("{field}.health"))?;
            if h.kind == HealthKind::Https && self.protocol != LbProtocol::Tcp {
                return bad(
                    "an https monitor is for tcp listeners whose members speak TLS; \
                     this listener's members speak plain http: use type http"
                        .into(),
                );
            }
            match (
                self.protocol == LbProtocol::Udp,
                h.kind == HealthKind::UdpConnect,
            ) {
                (true, false) => return bad("a udp listener is checked by type udp_connect".into()),
                (false, true) => {
                    return bad(
                        "udp_connect is for udp listeners (checked by type udp_connect \
                         alone); use type tcp, http or https here"
                            .into(),
                    )
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The timeouts set (left out: HAProxy's defaults).
    pub fn timeouts(&self) -> impl Iterator<Item = u32> {
        [
            self.timeout_client_data_ms,
            self.timeout_member_connect_ms,
            self.timeout_member_data_ms,
        ]
        .into_iter()
        .flatten()
    }

    /// UDP is Vortex's alone: what only HAProxy does is refused.
    fn validate_udp(&self, field: &str) -> Result<(), ApiError> {
        if self.protocol != LbProtocol::Udp {
            return Ok(());
        }
        let bad = |m: &str| Err(ApiError::invalid_field(field, m.to_string()));
        if self.algorithm == LbAlgorithm::LeastConnections {
            return bad("a udp listener spreads by round_robin or source_ip");
        }
        if self.connection_limit > 0 {
            return bad("a udp listener has no connection limit");
        }
        if self.timeouts().next().is_some() {
            return bad(
                "a udp listener takes no timeouts (a flow is forgotten 120 s after its \
                 last datagram)",
            );
        }
        Ok(())
    }

    fn validate_tls(&self, field: &str) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::invalid_field(field, m));
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
        Ok(())
    }

    fn validate_rules(&self, field: &str) -> Result<(), ApiError> {
        if self.rules.len() > MAX_RULES {
            return Err(ApiError::invalid_field(
                &format!("{field}.rules"),
                format!("at most {MAX_RULES} rules"),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (k, r) in self.rules.iter().enumerate() {
            let f = format!("{field}.rules[{k}]");
            r.validate(&f)?;
            if !names.insert(r.name.as_str()) {
                return Err(ApiError::invalid_field(
                    &f,
                    format!("two rules are named {:?}", r.name),
                ));
            }
        }
        Ok(())
    }
}

/// 1–32 letters, digits, '-' or '_' (listener and rule names).
fn short_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A cookie name HAProxy's configuration and HTTP both read as one word.
fn cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// At most [`MAX_MEMBERS`], each valid and there once.
fn validate_members(field: &str, members: &[LbMember]) -> Result<(), ApiError> {
    if members.len() > MAX_MEMBERS {
        return Err(ApiError::invalid_field(
            field,
            format!("at most {MAX_MEMBERS} members"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (j, m) in members.iter().enumerate() {
        let f = format!("{field}[{j}]");
        m.validate(&f)?;
        let key = (m.vm.clone(), m.nic.clone(), m.address.clone(), m.port);
        if !seen.insert(key) {
            return Err(ApiError::invalid_field(&f, "this member is already there"));
        }
    }
    Ok(())
}

impl L7Rule {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::invalid_field(field, m));
        if !short_name(&self.name) {
            return bad(format!(
                "rule name {:?}: 1–32 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.host.is_empty() && self.path_prefix.is_empty() {
            return bad("a rule matches a host, a path prefix or both; give at least one".into());
        }
        let host_ok = self.host.len() <= 253
            && (self.host.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
        if !host_ok {
            return bad(format!(
                "host {:?}: a host name (letters, digits, '-', '.'), without a port",
                self.host
            ));
        }
        if !self.path_prefix.is_empty() && !url_path(&self.path_prefix) {
            return bad(
                "the path prefix starts with / and has no spaces (at most 256 characters)".into(),
            );
        }
        self.validate_action(field)?;
        validate_members(&format!("{field}.members"), &self.members)
    }

    fn validate_action(&self, field: &str) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::invalid_field(field, m.to_string()));
        let redirect = self.action == L7Action::Redirect;
        if self.action != L7Action::Forward && !self.members.is_empty() {
            return bad("only a forward rule has members (a redirect or reject answers itself)");
        }
        if !redirect && (self.redirect_url.is_some() || self.redirect_code.is_some()) {
            return bad("redirect_url and redirect_code go with action redirect");
        }
        if redirect && !self.redirect_url.as_deref().is_some_and(redirect_url) {
            return bad(
                "a redirect needs redirect_url: an http:// or https:// URL, at most 2048 \
                 characters, without spaces, quotes, '\\' or '#'",
            );
        }
        if (self.redirect_code).is_some_and(|c| !REDIRECT_CODES.contains(&c)) {
            return bad("redirect_code is 301, 302, 303, 307 or 308");
        }
        Ok(())
    }
}

/// An absolute http(s) URL that HAProxy's configuration reads as one word.
fn redirect_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && (url.bytes()).all(|b| b.is_ascii_graphic() && !b"\"'\\#".contains(&b))
}

/// Starts with `/`, printable ASCII without spaces, at most 256 bytes.
fn url_path(path: &str) -> bool {
    path.starts_with('/') && path.len() <= 256 && (path.bytes()).all(|b| b.is_ascii_graphic())
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
        validate_optional_name(&format!("{field}.vm"), self.vm.as_deref())?;
        validate_optional_name(&format!("{field}.nic"), self.nic.as_deref())?;
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
        if !url_path(&self.path) {
            return bad("the path starts with / and has no spaces (at most 256 characters)");
        }
        let codes = (self.expected_codes.parse::<StatusCodes>())
            .map_err(|e| ApiError::invalid_field(field, e.to_string()))?;
        let http = matches!(self.kind, HealthKind::Http | HealthKind::Https);
        if !http && codes != StatusCodes::default() {
            return bad("expected codes are for http and https monitors");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates a load balancer in subnet `s1` with `listeners`.
    fn check(listeners: Vec<Listener>) -> Result<(), ApiError> {
        LoadBalancer::validate(&LoadBalancerSpec {
            subnet: "s1".into(),
            external: false,
            replicas: None,
            listeners,
        })
    }

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
        let mut http = listener("http", LbProtocol::Http, 80);
        http.members.push(LbMember {
            vm: Some("w1".into()),
            port: 80,
            weight: 1,
            ..Default::default()
        });
        http.health = Some(HealthMonitor::default());
        check(vec![
            http.clone(),
            listener("tcp", LbProtocol::Tcp, 8080),
            listener("dns", LbProtocol::Udp, 53),
        ])
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
                vec![Listener {
                    algorithm: LbAlgorithm::LeastConnections,
                    ..listener("u", LbProtocol::Udp, 53)
                }],
                "spreads by round_robin or source_ip",
            ),
            (
                vec![Listener {
                    health: Some(HealthMonitor::default()),
                    ..listener("u", LbProtocol::Udp, 53)
                }],
                "checked by type udp_connect",
            ),
            (vec![listener("a b", LbProtocol::Tcp, 1)], "listener name"),
            (vec![listener("z", LbProtocol::Tcp, 0)], "port must be"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        let mut twice = http.clone();
        twice.members.push(twice.members[0].clone());
        let e = check(vec![twice]).unwrap_err();
        assert!(e.to_string().contains("already there"), "{e}");
        let mut nothing = http;
        nothing.members[0].vm = None;
        let e = check(vec![nothing]).unwrap_err();
        assert!(
            e.to_string().contains("give a vm, a nic or an address"),
            "{e}"
        );
    }

    #[test]
    fn timeouts_are_checked() {
        let tcp = Listener {
            timeout_client_data_ms: Some(2_000),
            timeout_member_connect_ms: Some(MAX_TIMEOUT_MS),
            ..listener("t", LbProtocol::Tcp, 80)
        };
        check(vec![tcp.clone()]).unwrap();
        assert_eq!(tcp.timeouts().collect::<Vec<_>>(), [2_000, MAX_TIMEOUT_MS]);
        for (l, why) in [
            (
                Listener {
                    timeout_member_data_ms: Some(0),
                    ..tcp.clone()
                },
                "1 ms to 24 days",
            ),
            (
                Listener {
                    timeout_member_connect_ms: Some(MAX_TIMEOUT_MS + 1),
                    ..tcp.clone()
                },
                "1 ms to 24 days",
            ),
            (
                Listener {
                    protocol: LbProtocol::Udp,
                    ..tcp
                },
                "a udp listener takes no timeouts",
            ),
        ] {
            let e = check(vec![l]).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn monitors_are_checked() {
        let checked = |protocol, health| Listener {
            health: Some(health),
            ..listener("l", protocol, 443)
        };
        let monitor = |kind, codes: &str| HealthMonitor {
            kind,
            expected_codes: codes.into(),
            ..Default::default()
        };
        use HealthKind::*;
        check(vec![checked(LbProtocol::Tcp, monitor(Https, "200,204"))]).unwrap();
        check(vec![checked(LbProtocol::Http, monitor(Http, "404"))]).unwrap();
        check(vec![checked(LbProtocol::Tcp, monitor(Tcp, "200-399"))]).unwrap();
        check(vec![checked(
            LbProtocol::Udp,
            monitor(UdpConnect, "200-399"),
        )])
        .unwrap();
        for (protocol, health, why) in [
            (LbProtocol::Http, monitor(Https, "200"), "use type http"),
            (
                LbProtocol::Tcp,
                monitor(Tcp, "200"),
                "for http and https monitors",
            ),
            (LbProtocol::Tcp, monitor(Http, "2xx"), "codes are 100–599"),
            (
                LbProtocol::Udp,
                monitor(UdpConnect, "200"),
                "for http and https monitors",
            ),
            (
                LbProtocol::Tcp,
                monitor(UdpConnect, "200-399"),
                "checked by type udp_connect",
            ),
            (
                LbProtocol::Udp,
                monitor(Tcp, "200-399"),
                "checked by type udp_connect",
            ),
            (LbProtocol::Tcp, monitor(Http, "302-301"), "lower code"),
        ] {
            let e = check(vec![checked(protocol, health)]).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn rule_actions_are_checked() {
        let with_rule = |r: L7Rule| Listener {
            rules: vec![r],
            ..listener("web", LbProtocol::Http, 80)
        };
        let redirect = L7Rule {
            name: "old".into(),
            path_prefix: "/old/".into(),
            action: L7Action::Redirect,
            redirect_url: Some("https://new.example.com/x?a=%20".into()),
            redirect_code: Some(301),
            ..Default::default()
        };
        let reject = L7Rule {
            action: L7Action::Reject,
            redirect_url: None,
            redirect_code: None,
            ..redirect.clone()
        };
        check(vec![with_rule(redirect.clone())]).unwrap();
        check(vec![with_rule(reject.clone())]).unwrap();
        let member = LbMember {
            address: "10.0.0.5".into(),
            port: 80,
            weight: 1,
            ..Default::default()
        };
        for (r, why) in [
            (
                L7Rule {
                    members: vec![member],
                    ..reject.clone()
                },
                "only a forward rule has members",
            ),
            (
                L7Rule {
                    redirect_code: Some(302),
                    ..reject
                },
                "go with action redirect",
            ),
            (
                L7Rule {
                    redirect_url: Some("ftp://x".into()),
                    ..redirect.clone()
                },
                "an http:// or https:// URL",
            ),
            (
                L7Rule {
                    redirect_url: Some("https://x/#frag".into()),
                    ..redirect.clone()
                },
                "an http:// or https:// URL",
            ),
            (
                L7Rule {
                    redirect_code: Some(200),
                    ..redirect
                },
                "301, 302, 303, 307 or 308",
            ),
        ] {
            let e = check(vec![with_rule(r)]).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn rules_and_persistence_are_checked() {
        let rule = |name: &str, host: &str, path: &str| L7Rule {
            name: name.into(),
            host: host.into(),
            path_prefix: path.into(),
            members: vec![LbMember {
                address: "10.0.0.5".into(),
                port: 80,
                weight: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut http = listener("web", LbProtocol::Http, 80);
        http.rules = vec![
            rule("api", "api.example.com", "/v1/"),
            rule("img", "", "/img"),
        ];
        http.persistence = Persistence::HttpCookie;
        check(vec![http.clone()]).unwrap();
        let pools: Vec<_> = http.pools().map(|(r, m)| (r, m.len())).collect();
        assert_eq!(pools, [("", 0), ("api", 1), ("img", 1)]);
        let with = |f: &dyn Fn(&mut Listener)| {
            let mut l = http.clone();
            f(&mut l);
            check(vec![l]).unwrap_err().to_string()
        };
        let app = |l: &mut Listener| {
            l.persistence = Persistence::AppCookie;
            l.persistence_cookie = Some("JSESSIONID".into());
        };
        let mut ok = http.clone();
        app(&mut ok);
        check(vec![ok]).unwrap();
        for (e, why) in [
            (
                with(&|l| l.protocol = LbProtocol::Tcp),
                "cookie persistence needs",
            ),
            (
                with(&|l| {
                    app(l);
                    l.protocol = LbProtocol::Tcp;
                    l.rules.clear();
                }),
                "cookie persistence needs",
            ),
            (
                with(&|l| l.persistence_cookie = Some("SID".into())),
                "goes with app_cookie",
            ),
            (
                with(&|l| {
                    app(l);
                    l.persistence_cookie = None;
                }),
                "needs persistence_cookie",
            ),
            (
                with(&|l| {
                    app(l);
                    l.persistence_cookie = Some("a b".into());
                }),
                "1–64 letters",
            ),
            (
                with(&|l| {
                    l.protocol = LbProtocol::Tcp;
                    l.persistence = Persistence::SourceIp;
                }),
                "layer-7 rules need",
            ),
            (
                with(&|l| l.rules[1].name = "api".into()),
                "two rules are named",
            ),
            (
                with(&|l| l.rules[1].path_prefix.clear()),
                "give at least one",
            ),
            (
                with(&|l| l.rules[0].host = "a.com:80".into()),
                "without a port",
            ),
            (
                with(&|l| l.rules[1].path_prefix = "img".into()),
                "path prefix starts",
            ),
            (
                with(&|l| {
                    let m = l.rules[0].members[0].clone();
                    l.rules[0].members.push(m);
                }),
                "already there",
            ),
        ] {
            assert!(e.contains(why), "{why}: {e}");
        }
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
